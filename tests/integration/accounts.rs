//! Accounts of a quota group and resume tokens, end to end: a hit backs off the account
//! in use; a stated reset switches to the next account at once and the pass goes on; hits
//! without a reset switch only when confirmed and at most once per switch_cooldown; the
//! group waits only when no account is usable; a resume token printed before a quota hit
//! or a crash reaches the next run, and a token that could smuggle arguments never does.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const UUID: &str = "123e4567-e89b-12d3-a456-426614174000";

/// Unix seconds of an RFC 3339 instant.
fn epoch(at: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at).unwrap().timestamp()
}

fn accounts_config(accounts: &[&str], switch_cooldown: &str, account_extra_env: &str) -> String {
    let accounts: Vec<String> = accounts
        .iter()
        .map(|name| {
            format!("  {{ name = \"{name}\", env = {{ CLAUDE_CONFIG_DIR = \"TMPDIR/{name}\"{account_extra_env} }} }},\n")
        })
        .collect();
    format!(
        "[defaults]\ntimezone = \"UTC\"\ndefault_backoff = \"1h\"\n\n\
         [[quota_group]]\nname = \"claude-chair\"\nswitch_cooldown = \"{switch_cooldown}\"\naccounts = [\n{}]\n\n\
         [[drain]]\nname = \"alpha\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"claude-chair\"\nmax_wait = \"0s\"\n\
         env = {{ CLAUDE_CONFIG_DIR = \"TMPDIR/drain\", OTHER = \"kept\" }}\n",
        accounts.concat()
    )
}

/// Steps that log the start, then hit a limit with `message` when `var` is `value`, and
/// otherwise print what the worker saw.
fn hit_when(fixture: &Fixture, var: &str, value: &str, message: &str) -> Value {
    json!({ "steps": [
        { "log": fixture.path("log") },
        { "if_env": { "var": var, "equals": value, "then": [{ "err": message }, { "exit": 1 }] } },
        { "env": "DRAIN_ACCOUNT" },
        { "env": "CLAUDE_CONFIG_DIR" },
        { "env": "OTHER" },
    ]})
}

fn plain(fixture: &Fixture) -> Value {
    json!({ "steps": [{ "log": fixture.path("log") }, { "env": "DRAIN_ACCOUNT" }] })
}

/// `key account` for every worker start, in order.
fn worker_log(fixture: &Fixture) -> Vec<String> {
    std::fs::read_to_string(fixture.path("log"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|part| part.strip_prefix(&format!("{name}=")))
                    .unwrap_or_default()
                    .to_string()
            };
            format!("{} {}", field("key"), field("account"))
        })
        .collect()
}

fn result_of(fixture: &Fixture, key: &str) -> String {
    let result: Option<Vec<u8>> =
        fixture.client().query_one("SELECT result FROM items WHERE key = $1", &[&key]).unwrap().get(0);
    String::from_utf8(result.unwrap_or_default()).unwrap()
}

fn backoff_until(fixture: &Fixture, account: &str) -> String {
    fixture
        .client()
        .query_one(
            "SELECT to_char(backoff_until AT TIME ZONE 'UTC', 'HH24:MI') FROM quota_backoffs
              WHERE quota_group = 'claude-chair' AND account = $1",
            &[&account],
        )
        .unwrap()
        .get(0)
}

/// (from, to, cause) of every account_switched event, in order.
fn switches(fixture: &Fixture) -> Vec<(String, String, String)> {
    fixture
        .client()
        .query(
            "SELECT data->>'from', data->>'to', data->>'cause' FROM events
              WHERE kind = 'account_switched' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

fn drain(fixture: &Fixture) -> Value {
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    result.json()
}

/// The supervise decision about `alpha` in a dry run.
fn supervise_decision(fixture: &Fixture) -> Value {
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run();
    plan.assert_code(0);
    plan.json()["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] != "expire_burst")
        .unwrap()
        .clone()
}

#[test]
fn a_stated_reset_switches_at_once_and_the_group_waits_only_when_every_account_is_out() {
    let fixture =
        Fixture::new(&accounts_config(&["a", "b"], "30m", ", B_SPENT = \"yes\""), "2026-11-27T09:00:00Z");
    let a_limit = format!("Claude AI usage limit reached|{}", epoch("2026-11-27T12:00:00Z"));
    fixture.enqueue(
        "alpha",
        &[("i1".into(), hit_when(&fixture, "DRAIN_ACCOUNT", "a", &a_limit)), ("i2".into(), plain(&fixture))],
    );
    fixture.set_now("2026-11-27T10:00:00Z");
    let b_limit = "5-hour limit reached ∙ resets 11am";
    let on_b_while_spent = json!({ "steps": [
        { "log": fixture.path("log") },
        { "if_env": { "var": "DRAIN_ACCOUNT", "equals": "b", "then": [
            { "if_env": { "var": "B_SPENT", "equals": "yes", "then": [{ "err": b_limit }, { "exit": 1 }] } },
        ] } },
        { "env": "DRAIN_ACCOUNT" },
    ]});
    fixture.enqueue("alpha", &[("i3".into(), on_b_while_spent), ("i4".into(), plain(&fixture))]);

    // One pass: i1 hits on a (reset 12:00), the pass goes on with b: i2, then i1 again,
    // then i3 hits on b (reset 11:00): every account is out, the pass stops.
    let pass = drain(&fixture);
    assert_eq!(pass["status"], "rate_limited", "{pass}");
    assert_eq!(pass["items_done"], 2, "{pass}");
    assert!(pass["note"].as_str().unwrap().contains("every account backs off"), "{pass}");
    assert_eq!(worker_log(&fixture), ["i1 a", "i2 b", "i1 b", "i3 b"]);
    let (state, attempts, _) = fixture.item("alpha", "i1");
    assert_eq!((state.as_str(), attempts), ("done", 1), "the hit on a did not use an attempt");
    let i1 = result_of(&fixture, "i1");
    let b_dir = fixture.path("b").display().to_string();
    for line in ["DRAIN_ACCOUNT=b", &format!("CLAUDE_CONFIG_DIR={b_dir}"), "OTHER=kept"] {
        assert!(i1.lines().any(|l| l == line), "{line:?} not in {i1}");
    }
    let attempts: Vec<(String, String)> = fixture
        .client()
        .query(
            "SELECT a.account, a.outcome FROM attempts a JOIN items i ON i.id = a.item_id
              WHERE i.key = 'i1' ORDER BY a.id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(attempts, [("a".to_string(), "quota_hit".to_string()), ("b".to_string(), "done".to_string())]);
    assert_eq!(switches(&fixture), [("a".into(), "b".into(), "stated_reset".into())]);
    let matched: String = fixture
        .client()
        .query_one("SELECT data->>'matched_line' FROM events WHERE kind = 'account_switched'", &[])
        .unwrap()
        .get(0);
    assert!(matched.contains("usage limit reached"), "{matched}");
    assert_eq!(
        (backoff_until(&fixture, "a"), backoff_until(&fixture, "b")),
        ("12:01".into(), "11:01".into())
    );

    // The group waits until the earlier reset: supervise skips it, a pass takes nothing.
    fixture.set_now("2026-11-27T10:30:00Z");
    let skip = supervise_decision(&fixture);
    assert_eq!(skip["action"], "skip", "{skip}");
    assert!(skip["reason"].as_str().unwrap().contains("every account backs off"), "{skip}");
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    let alpha = &status["drains"][0];
    assert_eq!(alpha["state"], "backing-off", "{alpha}");
    assert_eq!(alpha["backoff_until"], "2026-11-27T11:01:00Z", "{alpha}");
    let accounts: Vec<(Value, Value)> = alpha["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["state"].clone(), a["backoff_until"].clone()))
        .collect();
    assert_eq!(
        accounts,
        [
            (json!("backing-off"), json!("2026-11-27T12:01:00Z")),
            (json!("backing-off"), json!("2026-11-27T11:01:00Z"))
        ]
    );
    let human = fixture.drainctl(&["status"]).run();
    assert!(human.stdout.contains("QUOTA GROUP"), "{}", human.stdout);
    fixture.set_now("2026-11-27T11:00:59Z");
    assert_eq!(drain(&fixture)["status"], "rate_limited");
    assert_eq!(worker_log(&fixture).len(), 4, "nothing ran while every account backs off");

    // After b's reset (and with b's quota back), work resumes on b; a is still out.
    fixture.write_config(&accounts_config(&["a", "b"], "30m", ""));
    fixture.set_now("2026-11-27T11:01:00Z");
    assert_eq!(supervise_decision(&fixture)["action"], "start");
    let pass = drain(&fixture);
    assert_eq!((pass["status"].clone(), pass["items_done"].clone()), (json!("drained"), json!(2)), "{pass}");
    assert_eq!(worker_log(&fixture)[4..], ["i3 b", "i4 b"]);
    assert_eq!(switches(&fixture).len(), 1, "b was already in use");

    // Once a is back, the group returns to it: the first account in configuration order.
    fixture.set_now("2026-11-27T12:01:00Z");
    fixture.enqueue("alpha", &[("i5".into(), plain(&fixture))]);
    assert_eq!(drain(&fixture)["items_done"], 1);
    assert_eq!(worker_log(&fixture)[6..], ["i5 a"]);
    assert_eq!(switches(&fixture)[1], ("b".into(), "a".into(), "backoff_ended".into()));
}

#[test]
fn hits_without_a_reset_switch_only_when_confirmed_and_once_per_switch_cooldown() {
    let fixture = Fixture::new(&accounts_config(&["a", "b", "c"], "30m", ""), "2026-11-27T09:00:00Z");
    // Out of quota everywhere but on c, with no reset time in the message.
    let payload = json!({ "steps": [
        { "log": fixture.path("log") },
        { "if_env": { "var": "DRAIN_ACCOUNT", "equals": "c", "else": [
            { "err": "Claude AI usage limit reached" }, { "exit": 1 },
        ] } },
        { "env": "DRAIN_ACCOUNT" },
    ]});
    fixture.enqueue("alpha", &[("i1".into(), payload)]);

    // A first hit only suspects a: 5 minutes, the pass stops, no switch.
    fixture.set_now("2026-11-27T10:00:00Z");
    assert_eq!(drain(&fixture)["status"], "rate_limited");
    assert_eq!(backoff_until(&fixture, "a"), "10:05");
    fixture.set_now("2026-11-27T10:02:00Z");
    let skip = supervise_decision(&fixture);
    assert_eq!(skip["action"], "skip");
    assert!(skip["reason"].as_str().unwrap().contains("account a is suspected"), "{skip}");
    assert_eq!(drain(&fixture)["status"], "rate_limited");
    assert_eq!(worker_log(&fixture), ["i1 a"], "b is not used while a is only suspected");
    assert!(switches(&fixture).is_empty());

    // A second hit confirms a (1h) and switches to b; b's first hit only suspects b.
    fixture.set_now("2026-11-27T10:05:00Z");
    assert_eq!(drain(&fixture)["status"], "rate_limited");
    assert_eq!(worker_log(&fixture), ["i1 a", "i1 a", "i1 b"]);
    assert_eq!(switches(&fixture), [("a".into(), "b".into(), "confirmed_limit".into())]);
    assert_eq!(
        (backoff_until(&fixture, "a"), backoff_until(&fixture, "b")),
        ("11:05".into(), "10:10".into())
    );

    // b confirmed at 10:10: the switch to c waits for the cooldown (switched at 10:05).
    fixture.set_now("2026-11-27T10:10:00Z");
    let pass = drain(&fixture);
    assert_eq!(pass["status"], "rate_limited");
    assert!(pass["note"].as_str().unwrap().contains("switch_cooldown"), "{pass}");
    assert_eq!(worker_log(&fixture).len(), 4);
    assert_eq!(switches(&fixture).len(), 1, "no second switch within switch_cooldown");
    fixture.set_now("2026-11-27T10:34:59Z");
    assert!(supervise_decision(&fixture)["reason"].as_str().unwrap().contains("switch_cooldown"));
    assert_eq!(drain(&fixture)["status"], "rate_limited");
    assert_eq!(worker_log(&fixture).len(), 4);

    // After it, c takes over and the item succeeds; its quota hits used no attempt.
    fixture.set_now("2026-11-27T10:35:00Z");
    let pass = drain(&fixture);
    assert_eq!(pass["items_done"], 1, "{pass}");
    assert_eq!(worker_log(&fixture)[4..], ["i1 c"]);
    assert_eq!(switches(&fixture)[1], ("b".into(), "c".into(), "confirmed_limit".into()));
    assert_eq!(fixture.item("alpha", "i1"), ("done".into(), 1, None));
    let rules: Vec<String> = fixture.column("SELECT data->>'account' || ' ' || (data->>'rule') FROM events WHERE kind = 'backoff_set' ORDER BY id");
    assert_eq!(rules, ["a suspected", "a confirmed", "b suspected", "b confirmed"]);
}

#[test]
fn a_hit_on_a_limit_another_pass_just_confirmed_keeps_it_confirmed_and_goes_on_on_the_next_account() {
    let fixture = Fixture::new(&accounts_config(&["a", "b"], "1m", ""), "2026-11-27T10:00:00Z");
    let go = fixture.path("go");
    // On a, the worker was already running when another pass of the group met the same
    // limit, confirmed it and switched the group to b; its own hit comes after.
    let payload = json!({ "steps": [
        { "log": fixture.path("log") },
        { "if_env": { "var": "DRAIN_ACCOUNT", "equals": "a", "then": [
            { "wait_for_file": go.to_str().unwrap() },
            { "err": "Claude AI usage limit reached" }, { "exit": 1 },
        ] } },
        { "env": "DRAIN_ACCOUNT" },
    ]});
    fixture.enqueue("alpha", &[("i1".into(), payload), ("i2".into(), plain(&fixture))]);
    let pass = fixture.drainctl(&["drain", "alpha", "--json"]).spawn();
    wait_until("the worker on a", Duration::from_secs(20), || worker_log(&fixture) == ["i1 a"]);
    fixture
        .client()
        .batch_execute(
            "INSERT INTO quota_backoffs (quota_group, account, backoff_until, rule, reason, observed_at, updated_at)
             VALUES ('claude-chair', 'a', '2026-11-27T11:00:00Z', 'confirmed', 'Claude AI usage limit reached',
                     '2026-11-27T10:00:00Z', now())
             ON CONFLICT (quota_group, account) DO UPDATE
                SET backoff_until = EXCLUDED.backoff_until, rule = EXCLUDED.rule, suspected_at = NULL;
             UPDATE quota_groups SET account = 'b', switched_at = '2026-11-27T10:00:00Z'
              WHERE quota_group = 'claude-chair'",
        )
        .unwrap();
    std::fs::write(&go, "").unwrap();
    let pass = finished(pass.wait_with_output().unwrap());
    pass.assert_code(0);
    // Before: the hit marked a suspected again ("suspected, short backoff" until 11:00) and
    // stopped the pass, b unused, until the next supervise.
    assert_eq!(pass.json()["items_done"], 2, "{}", pass.stdout);
    assert_eq!(worker_log(&fixture), ["i1 a", "i1 b", "i2 b"]);
    let row = fixture
        .client()
        .query_one(
            "SELECT rule, suspected_at IS NULL FROM quota_backoffs WHERE quota_group = 'claude-chair' AND account = 'a'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, bool>(1)), ("confirmed".to_string(), true));
    // Seen again, it sets nothing new and says nothing (the other pass's event said it).
    let rules: Vec<String> = fixture.column("SELECT data->>'rule' FROM events WHERE kind = 'backoff_set'");
    assert_eq!(rules, Vec::<String>::new());
}

fn resume_config(extra: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\n\n[[drain]]\nname = \"alpha\"\ncommand = [\"FAKE_WORKER\", \"-p\"]\nmax_wait = \"0s\"\n\
         resume_args = [\"--resume\", \"{{token}}\"]\n{extra}"
    )
}

/// Prints its arguments and the resume token it got; then, unless it got [`UUID`], prints
/// `token` as a resume line and runs the steps `then`.
fn resumable(token: &str, then: Value) -> Value {
    let mut first_run = vec![json!({ "out": format!("::resume:: {token}") })];
    first_run.extend(then.as_array().unwrap().iter().cloned());
    json!({ "steps": [
        { "echo_args": true },
        { "env": "DRAIN_RESUME_TOKEN" },
        { "if_env": { "var": "DRAIN_RESUME_TOKEN", "equals": UUID, "else": first_run } },
    ]})
}

fn resume_token(fixture: &Fixture, key: &str) -> Option<String> {
    fixture.client().query_one("SELECT resume_token FROM items WHERE key = $1", &[&key]).unwrap().get(0)
}

#[test]
fn an_item_cut_off_by_a_quota_hit_resumes_with_its_token() {
    let fixture = Fixture::new(&resume_config(""), "2026-11-27T10:00:00Z");
    let limit = format!("Claude AI usage limit reached|{}", epoch("2026-11-27T11:00:00Z"));
    fixture.enqueue("alpha", &[("i1".into(), resumable(UUID, json!([{ "err": limit }, { "exit": 1 }])))]);
    assert_eq!(drain(&fixture)["status"], "rate_limited");
    assert_eq!(resume_token(&fixture, "i1").as_deref(), Some(UUID));

    fixture.set_now("2026-11-27T11:01:00Z");
    assert_eq!(drain(&fixture)["items_done"], 1);
    let result = result_of(&fixture, "i1");
    let lines: Vec<&str> = result.lines().collect();
    assert_eq!(lines, [format!("[\"-p\",\"--resume\",\"{UUID}\"]"), format!("DRAIN_RESUME_TOKEN={UUID}")]);
    assert_eq!(resume_token(&fixture, "i1"), None, "a success clears the token");
}

#[test]
fn tokens_that_could_smuggle_arguments_are_ignored_with_an_event() {
    // A permissive pattern takes the whole rest of the line as the token.
    let fixture =
        Fixture::new(&resume_config("resume_pattern = '^::resume::\\s*(.+)$'\n"), "2026-11-27T10:00:00Z");
    let limit = format!("Claude AI usage limit reached|{}", epoch("2026-11-27T11:00:00Z"));
    let payload = json!({ "steps": [
        { "echo_args": true },
        { "env": "DRAIN_RESUME_TOKEN" },
        { "if_env": { "var": "DRAIN_RUN_ID", "equals": "1", "then": [
            { "out": "::resume:: x; rm -rf /" },
            { "err": "::resume:: --config=/etc/passwd" },
            { "out": "::resume:: 123e4567-e89b-12d3-a456-42661417400" },
            { "err": limit },
            { "exit": 1 },
        ] } },
    ]});
    fixture.enqueue("alpha", &[("i1".into(), payload)]);
    assert_eq!(drain(&fixture)["status"], "rate_limited");
    assert_eq!(resume_token(&fixture, "i1"), None);
    // Both streams are read; their relative order is not defined.
    let mut rejected: Vec<String> = fixture
        .client()
        .query("SELECT data->>'token' FROM events WHERE kind = 'resume_token_rejected'", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    rejected.sort();
    assert_eq!(rejected, ["--config=/etc/passwd", "123e4567-e89b-12d3-a456-42661417400", "x; rm -rf /"]);

    fixture.set_now("2026-11-27T11:01:00Z");
    assert_eq!(drain(&fixture)["items_done"], 1);
    assert_eq!(result_of(&fixture, "i1"), "[\"-p\"]\nDRAIN_RESUME_TOKEN=\n");
}

#[test]
fn a_token_printed_before_a_crash_survives_it_and_a_failure_forgets_it() {
    let fixture = Fixture::new(&resume_config(""), "2026-11-27T10:00:00Z");
    let started = fixture.path("started");
    let go = fixture.path("go");
    fixture.enqueue(
        "alpha",
        &[(
            "i1".into(),
            resumable(UUID, json!([{ "touch": started }, { "wait_for_file": go }, { "exit": 1 }])),
        )],
    );
    let pass = fixture.drainctl(&["drain", "alpha"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    // Stored as soon as it was printed, while the worker still runs.
    wait_until("the token to be stored", Duration::from_secs(20), || resume_token(&fixture, "i1").is_some());
    signal(pass.id(), libc::SIGKILL);
    let _ = finished(pass.wait_with_output().unwrap());
    assert_eq!(resume_token(&fixture, "i1").as_deref(), Some(UUID));
    std::fs::write(&go, "").unwrap();
    // The next pass reaps the crashed run and resumes the item.
    assert_eq!(drain(&fixture)["items_done"], 1);
    assert!(result_of(&fixture, "i1").contains(&format!("\"--resume\",\"{UUID}\"")));

    // A worker that fails by itself (exit 1, not a limit or a crash) starts afresh next time.
    let other = "223e4567-e89b-12d3-a456-426614174000";
    fixture.enqueue("alpha", &[("i2".into(), resumable(other, json!([{ "exit": 1 }])))]);
    assert_eq!(drain(&fixture)["items_failed"], 1);
    assert_eq!(resume_token(&fixture, "i2"), None);
}

/// Steps that log the start, then answer on `account` and are refused access on any other.
fn refused_but_on(fixture: &Fixture, account: &str) -> Value {
    json!({ "steps": [
        { "log": fixture.path("log") },
        { "if_env": { "var": "DRAIN_ACCOUNT", "equals": account, "then": [{ "out": "done" }],
                      "else": [{ "err": "Invalid API key · Please run /login" }, { "exit": 1 }] } }
    ] })
}

#[test]
fn a_second_refused_key_within_the_switch_cooldown_switches_at_once_too() {
    let fixture = Fixture::new(&accounts_config(&["a", "b", "c"], "30m", ""), "2026-11-27T09:00:00Z");
    let refused_but_on_c = refused_but_on(&fixture, "c");
    fixture.enqueue("alpha", &[("i1".into(), refused_but_on_c.clone()), ("i2".into(), refused_but_on_c)]);
    let pass = drain(&fixture);
    // Before, b's refusal one switch after a's made the group wait out switch_cooldown.
    assert_eq!(pass["status"], "drained", "{pass}");
    assert_eq!(worker_log(&fixture), ["i1 a", "i1 b", "i1 c", "i2 c"]);
    let causes: Vec<String> = switches(&fixture).into_iter().map(|(_, _, cause)| cause).collect();
    assert_eq!(causes, ["access_refused", "access_refused"]);
}

#[test]
fn a_group_leaving_a_refused_account_passes_over_a_suspected_one_to_an_available_one() {
    let fixture = Fixture::new(&accounts_config(&["a", "b", "c"], "15m", ""), "2026-11-27T09:00:00Z");
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    // b hit a limit without a reset a minute ago: suspected for 5 minutes.
    fixture
        .client()
        .batch_execute(
            "INSERT INTO quota_backoffs (quota_group, account, backoff_until, reset_at, reason, observed_at,
                                         suspected_at, rule, updated_at)
             VALUES ('claude-chair', 'b', '2026-11-27T09:04:00Z', NULL, 'Claude AI usage limit reached',
                     '2026-11-27T08:59:00Z', '2026-11-27T08:59:00Z', 'suspected', '2026-11-27T08:59:00Z')",
        )
        .unwrap();
    let refused_but_on_c = refused_but_on(&fixture, "c");
    fixture.enqueue("alpha", &[("i1".into(), refused_but_on_c.clone()), ("i2".into(), refused_but_on_c)]);
    let pass = drain(&fixture);
    // Before: a refused, the group waited for b's suspicion to end (`rate_limited`,
    // "account b is suspected of a limit …") with c available.
    assert_eq!(pass["status"], "drained", "{pass}");
    assert_eq!(worker_log(&fixture), ["i1 a", "i1 c", "i2 c"]);
    assert_eq!(switches(&fixture), [("a".to_string(), "c".to_string(), "access_refused".to_string())]);
}

#[test]
fn an_account_in_use_that_leaves_the_configuration_is_forgotten_at_once() {
    let config = |accounts: &[&str]| accounts_config(accounts, "15m", "");
    let fixture = Fixture::new(&config(&["a", "b", "c"]), "2026-11-27T09:00:00Z");
    let hit = "Claude AI usage limit reached";
    // a's limit is confirmed (two hits without a reset), and the group switches to b.
    fixture.enqueue("alpha", &[("i1".into(), hit_when(&fixture, "DRAIN_ACCOUNT", "a", hit))]);
    drain(&fixture);
    fixture.set_now("2026-11-27T09:06:00Z");
    drain(&fixture);
    assert_eq!(switches(&fixture).last().map(|(_, to, _)| to.clone()), Some("b".to_string()));
    // b leaves the configuration while in use, within the cooldown of that switch.
    fixture.write_config(&config(&["a", "c"]));
    fixture.set_now("2026-11-27T09:08:00Z");
    fixture.enqueue("alpha", &[("i2".into(), plain(&fixture))]);
    let pass = drain(&fixture);
    // Before, the group waited out the cooldown for a switch away from a, unused since.
    assert_eq!(pass["items_done"], 1, "{pass}");
    assert_eq!(worker_log(&fixture).last().map(String::as_str), Some("i2 c"));
}

#[test]
fn resume_group_says_which_accounts_back_off_while_another_works() {
    let fixture = Fixture::new(&accounts_config(&["a", "b"], "0s", ""), "2026-11-27T09:00:00Z");
    // Account a backs off two hours, b takes over.
    let hit = format!("Claude AI usage limit reached|{}", epoch("2026-11-27T11:00:00Z"));
    fixture.enqueue("alpha", &[("i1".into(), hit_when(&fixture, "DRAIN_ACCOUNT", "a", &hit))]);
    assert_eq!(drain(&fixture)["items_done"], 1);
    let resumed = fixture.drainctl(&["resume", "--group", "claude-chair"]).run();
    resumed.assert_code(0);
    // Before: "it backs off until … 11:00", though b was working.
    assert!(
        resumed.stdout.contains(
            "quota group claude-chair: was not parked; account a backs off, another account works; \
             `drainctl resume --group claude-chair --clear-backoff`"
        ),
        "{}",
        resumed.stdout
    );
}

#[test]
fn an_account_refused_access_still_shows_it_needs_attention_once_its_backoff_ended() {
    let fixture = Fixture::new(&accounts_config(&["a", "b"], "30m", ""), "2026-11-27T09:00:00Z");
    let refused = "Invalid API key · Please run /login";
    fixture.enqueue("alpha", &[("i1".into(), hit_when(&fixture, "DRAIN_ACCOUNT", "a", refused))]);
    assert_eq!(drain(&fixture)["items_done"], 1);
    // Its default_backoff (1h) is over; the alert on drainctl_quota_needs_attention still
    // fires and sends the operator to status, which said only "a  available  -".
    fixture.set_now("2026-11-27T11:00:00Z");
    let status = fixture.drainctl(&["status"]).run();
    status.assert_code(0);
    let row = status
        .stdout
        .lines()
        .find(|line| line.starts_with("claude-chair") && line.contains(" a "))
        .unwrap_or_default();
    assert!(row.ends_with(&format!("needs attention: {refused}")), "{}", status.stdout);
    let metrics = fixture.drainctl(&["metrics"]).run();
    assert!(
        metrics
            .stdout
            .contains("drainctl_quota_needs_attention{quota_group=\"claude-chair\",account=\"a\"} 1"),
        "{}",
        metrics.stdout
    );
}

#[test]
fn a_refused_key_backs_off_its_account_and_the_group_goes_on_with_the_next() {
    let fixture = Fixture::new(&accounts_config(&["a", "b"], "30m", ""), "2026-11-27T09:00:00Z");
    let refused = "Invalid API key · Please run /login";
    let items: Vec<(String, Value)> =
        (1..=3).map(|i| (format!("i{i}"), hit_when(&fixture, "DRAIN_ACCOUNT", "a", refused))).collect();
    fixture.enqueue("alpha", &items);
    let pass = drain(&fixture);
    assert_eq!(pass["status"], "drained", "{pass}");
    assert_eq!(pass["items_done"], 3, "{pass}");
    // One call on the refused account, then the rest on the next one at once.
    assert_eq!(worker_log(&fixture), ["i1 a", "i1 b", "i2 b", "i3 b"]);
    assert_eq!(switches(&fixture), [("a".to_string(), "b".to_string(), "access_refused".to_string())]);
    assert_eq!(fixture.item("alpha", "i1").1, 1, "the refused call used no attempt");
    // Account a is out and needs attention; the group is not parked.
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'group_parked'"), 0);
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM quota_backoffs
              WHERE quota_group = 'claude-chair' AND account = 'a' AND needs_attention AND rule = 'confirmed'"
        ),
        1
    );
    let message: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'backoff_set'");
    assert!(
        message[0].contains("access refused, the group's other accounts are used meanwhile"),
        "{message:?}"
    );
    // a's key is replaced and resume --group clears its backoff: a is used at once, not
    // after the 30 minutes of switch_cooldown (before: i4 ran on b).
    let resumed = fixture.drainctl(&["resume", "--group", "claude-chair", "--json"]).run();
    assert_eq!(resumed.json()["cleared_backoffs"], json!(["a"]), "{}", resumed.stdout);
    fixture.enqueue("alpha", &[("i4".into(), plain(&fixture))]);
    assert_eq!(drain(&fixture)["items_done"], 1);
    assert_eq!(worker_log(&fixture).last().map(String::as_str), Some("i4 a"));
    assert_eq!(switches(&fixture)[1], ("b".to_string(), "a".to_string(), "backoff_ended".to_string()));
    // With every account refused, the group is parked and the pass stops, the item
    // untouched: one call per account, none per item, and none an hour later.
    let fixture = Fixture::new(&accounts_config(&["a", "b"], "0s", ""), "2026-11-27T09:00:00Z");
    let (log, fixed) = (fixture.path("log"), fixture.path("fixed"));
    // Refused until the file `fixed` exists (the keys replaced), then it works.
    let until_fixed = json!({ "steps": [
        { "log": log },
        { "if_file": { "path": fixed, "then": [{ "out": "done" }], "else": [{ "err": refused }, { "exit": 1 }] } }
    ] });
    fixture.enqueue("alpha", &[("i1".into(), until_fixed.clone()), ("i2".into(), until_fixed)]);
    let pass = drain(&fixture);
    assert_eq!(pass["status"], "rate_limited", "{pass}");
    let note = pass["note"].as_str().unwrap_or_default();
    assert!(note.contains("is parked") && note.contains("resume --group claude-chair"), "{note}");
    assert_eq!(worker_log(&fixture), ["i1 a", "i1 b"]);
    assert_eq!(fixture.item("alpha", "i1"), ("pending".to_string(), 0, None));
    let parked: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'group_parked'");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0].contains("every account of the group is refused access: Invalid API key"),
        "{parked:?}"
    );
    // While parked, status calls no account in use or available, and gives the drain no
    // countdown: time does not end a park (before: `in-use`, and "backs off for 59m …").
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    let states: Vec<&str> = status["drains"][0]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["parked", "parked"], "{status}");
    let human = fixture.drainctl(&["status"]).run();
    assert!(
        human.stdout.contains("quota group parked") && !human.stdout.contains("backs off for"),
        "{}",
        human.stdout
    );
    // Nor do its accounts (before: `parked  until … (in 59m 59s): …`).
    let rows: Vec<&str> = human.stdout.lines().filter(|line| line.starts_with("claude-chair")).collect();
    assert!(rows.len() == 2 && rows.iter().all(|row| !row.contains("until")), "{}", human.stdout);
    // The keys are replaced; resume --group clears the park and both backoffs (each
    // would hold its account out until 10:00), and the work goes on at once.
    fixture.set_now("2026-11-27T09:20:00Z");
    std::fs::write(&fixed, "").unwrap();
    let resumed = fixture.drainctl(&["resume", "--group", "claude-chair", "--json"]).run();
    resumed.assert_code(0);
    assert_eq!(resumed.json()["cleared_backoffs"], json!(["a", "b"]), "{}", resumed.stdout);
    assert_eq!(resumed.json()["was_parked"], true, "{}", resumed.stdout);
    let pass = drain(&fixture);
    assert_eq!(pass["status"], "drained", "{pass}");
    assert_eq!(pass["items_done"], 2, "{pass}");
}

#[test]
fn quota_test_tells_the_backoff_a_pass_gives_an_account_refused_access() {
    let fixture = Fixture::new(&accounts_config(&["a1", "a2"], "5m", ""), "2026-12-10T16:00:00Z");
    let refused = |fixture: &Fixture| {
        let test = fixture
            .drainctl(&["quota", "test", "--drain", "alpha", "--account", "a1", "--exit-code", "1", "--json"])
            .stdin("Invalid API key · Please run /login\n")
            .run();
        test.assert_code(0);
        test.json()
    };
    // With another account to switch to: this account backs off confirmed, at once, as a
    // pass has it (before: "suspected", 5 minutes).
    let json = refused(&fixture);
    assert_eq!(json["access_refused"], true, "{json}");
    assert_eq!(json["backoff_rule"], "confirmed", "{json}");
    assert_eq!(json["backoff_until"], "2026-12-10T17:00:00Z", "{json}");
    let human = fixture
        .drainctl(&["quota", "test", "--drain", "alpha", "--account", "a1", "--exit-code", "1"])
        .stdin("Invalid API key · Please run /login\n")
        .run();
    assert!(
        human.stdout.contains("this account backs off and the group's next account goes on"),
        "{}",
        human.stdout
    );
    // One account: the group is parked.
    fixture.write_config(&accounts_config(&["a1"], "5m", ""));
    let human = fixture
        .drainctl(&["quota", "test", "--drain", "alpha", "--exit-code", "1"])
        .stdin("Invalid API key · Please run /login\n")
        .run();
    assert!(
        human.stdout.contains("the quota group is parked until `drainctl resume --group`"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_confirmed_limit_switches_at_once_to_an_account_whose_stated_reset_passed_since_the_last_switch() {
    let fixture = Fixture::new(
        &format!("{}max_items_per_pass = 3\n", accounts_config(&["a1", "a2"], "15m", "")),
        "2026-12-08T10:00:00Z",
    );
    let (a1_stated, a2_stated, a1_no_reset) =
        (fixture.path("a1-stated"), fixture.path("a2-stated"), fixture.path("a1-no-reset"));
    let limit = |at: &str| format!("Claude AI usage limit reached|{}", epoch(at));
    let no_reset = "API Error: 429 {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"This request would exceed your rate limit.\"}}";
    let payload = json!({ "steps": [
        { "log": fixture.path("log") },
        { "if_env": { "var": "DRAIN_ACCOUNT", "equals": "a2",
            "then": [{ "if_file": { "path": a2_stated, "then": [{ "out": limit("2026-12-08T10:08:00Z") }, { "exit": 1 }] } }],
            "else": [
                { "if_file": { "path": a1_stated, "then": [{ "out": limit("2026-12-08T10:05:00Z") }, { "exit": 1 }] } },
                { "if_file": { "path": a1_no_reset, "then": [{ "out": no_reset }, { "exit": 1 }] } },
            ] } },
        { "env": "DRAIN_ACCOUNT" },
    ]});
    let items: Vec<(String, Value)> = (0..12).map(|i| (format!("k{i:02}"), payload.clone())).collect();
    fixture.enqueue("alpha", &items);
    // 10:00 a1 states 10:05: on to a2. 10:02 a2 states 10:08: every account out.
    std::fs::write(&a1_stated, "").unwrap();
    drain(&fixture);
    std::fs::write(&a2_stated, "").unwrap();
    fixture.set_now("2026-12-08T10:02:00Z");
    drain(&fixture);
    // 10:06 a1 is back while a2 is out: back to a1 (the switch the cooldown counts from),
    // whose limit now has no reset (suspected), then is confirmed at 10:12.
    std::fs::remove_file(&a1_stated).unwrap();
    std::fs::remove_file(&a2_stated).unwrap();
    std::fs::write(&a1_no_reset, "").unwrap();
    fixture.set_now("2026-12-08T10:06:00Z");
    drain(&fixture);
    fixture.set_now("2026-12-08T10:12:00Z");
    let pass = drain(&fixture);
    // a2's quota came back at its stated reset: used at once (before: the group waited for
    // switch_cooldown, until 10:21, with nothing run).
    let causes: Vec<String> =
        switches(&fixture).into_iter().map(|(from, to, cause)| format!("{from}>{to} {cause}")).collect();
    assert_eq!(causes.last().map(String::as_str), Some("a1>a2 quota_returned"), "{causes:?} {pass}");
    assert!(
        worker_log(&fixture).last().is_some_and(|last| last.ends_with(" a2")),
        "{:?}",
        worker_log(&fixture)
    );
    assert_eq!(pass["items_done"], 3, "{pass}");
}

#[test]
fn doctor_warns_of_a_drain_whose_quota_group_is_one_letter_from_an_unused_group_with_accounts() {
    // Before: `claude-chiar` ran as a group of its own, without the accounts, unsaid.
    let config = accounts_config(&["a1", "a2"], "15m", "")
        .replace("quota_group = \"claude-chair\"", "quota_group = \"claude-chiar\"");
    let fixture = Fixture::new(&config, "2026-12-08T10:00:00Z");
    let doctor = fixture.drainctl(&["doctor", "--json"]).run().json();
    let check = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["check"] == "quota_group")
        .cloned()
        .unwrap_or_default();
    assert_eq!(check["status"], "warn", "{doctor}");
    assert!(
        check["message"].as_str().unwrap_or_default().contains("did you mean \"claude-chair\"?"),
        "{check}"
    );
    // The drain it is about (before: null).
    assert!(check["drain"].is_string(), "{check}");
    crate::operator::assert_documented("drainctl doctor", &doctor);
}

#[test]
fn quota_test_reads_clock_times_in_the_zone_a_pass_gives_the_account_s_worker() {
    // The account's TZ (a blank after the name: no zone) wins over the drain's, as in the
    // worker's environment: a pass reads its clock times in [defaults] timezone (UTC).
    let config = accounts_config(&["a1"], "5m", ", TZ = \"America/Los_Angeles \"")
        .replace("OTHER = \"kept\"", "OTHER = \"kept\", TZ = \"Europe/Berlin\"");
    let fixture = Fixture::new(&config, "2026-12-01T12:00:00Z");
    let test = fixture
        .drainctl(&["quota", "test", "--drain", "alpha", "--exit-code", "1", "--now", "2026-12-01T12:00:00Z"])
        .stdin("You've hit your usage limit. Try again at 11:03 PM.\n")
        .run();
    test.assert_code(0);
    // Before: read in Berlin, the drain's zone (22:03Z), eight hours off the pass's.
    assert!(test.stdout.contains("2026-12-01T23:03:00+00:00"), "{}", test.stdout);
}
