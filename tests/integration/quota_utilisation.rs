//! Quota utilisation end to end: a hit that needs a person parks its quota group until an
//! operator clears it; an item whose own output reads as a limit while the rest of its
//! group works is charged attempts instead of stalling the group (docs/rate-limits.md).

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

fn config() -> String {
    "[defaults]\ntimezone = \"UTC\"\n\n\
     [[drain]]\nname = \"alpha\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\nquota_profile = \"openai\"\nmax_wait = \"0s\"\n\n\
     [[drain]]\nname = \"beta\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\nquota_profile = \"openai\"\nmax_wait = \"0s\"\n"
        .to_string()
}

/// Worker starts so far (one `log` line each).
fn calls(fixture: &Fixture) -> usize {
    std::fs::read_to_string(fixture.path("log")).unwrap_or_default().lines().count()
}

fn logged(fixture: &Fixture, steps: serde_json::Value) -> serde_json::Value {
    let mut all = vec![json!({ "log": fixture.path("log") })];
    all.extend(steps.as_array().cloned().unwrap_or_default());
    json!({ "steps": all })
}

const INSUFFICIENT_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;

#[test]
fn a_parked_group_makes_no_worker_calls_until_resume_group() {
    let fixture = Fixture::new(&config(), NOW);
    let spent = logged(&fixture, json!([{ "err": INSUFFICIENT_QUOTA }, { "exit": 1 }]));
    let fine = logged(&fixture, json!([{ "out": "done" }]));
    fixture.enqueue("alpha", &[("a1".into(), spent), ("a2".into(), fine.clone())]);
    fixture.enqueue("beta", &[("b1".into(), fine)]);
    let hit = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    hit.assert_code(0);
    assert_eq!(hit.json()["status"], "rate_limited", "{}", hit.stdout);
    assert_eq!(calls(&fixture), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'group_parked'"), 1);

    // Long after any backoff, no drain of the group calls a worker.
    fixture.set_now("2026-11-28T10:00:00Z");
    for drain in ["alpha", "beta"] {
        let refused = fixture.drainctl(&["drain", drain, "--json"]).run();
        refused.assert_code(0);
        assert_eq!(refused.json()["status"], "rate_limited", "{}", refused.stdout);
        let note = refused.json()["note"].as_str().unwrap_or_default().to_string();
        assert!(note.contains("parked") && note.contains("resume --group shared"), "{note}");
    }
    assert_eq!(calls(&fixture), 1, "a parked group called a worker");
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    let decisions = plan["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 2, "{plan}");
    for decision in decisions {
        assert_eq!(decision["action"], "skip", "{plan}");
        assert!(decision["reason"].as_str().unwrap().contains("quota group shared is parked"), "{plan}");
    }
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    for drain in status["drains"].as_array().unwrap() {
        assert_eq!(drain["state"], "parked", "{status}");
        // The message of the JSON body the client printed, not the body.
        assert!(
            drain["parked_reason"].as_str().unwrap().starts_with("You exceeded your current quota"),
            "{status}"
        );
    }
    let human = fixture.drainctl(&["status"]).run();
    assert!(human.stdout.contains("resume --group shared"), "{}", human.stdout);

    // Clearing it lets the group work again.
    let resumed = fixture.drainctl(&["resume", "--group", "shared", "--json"]).run();
    resumed.assert_code(0);
    crate::operator::assert_documented("drainctl resume --group", &resumed.json());
    crate::operator::assert_documented("drainctl status", &status);
    assert_eq!(resumed.json()["was_parked"], true);
    assert_eq!(resumed.json()["cleared_backoffs"], json!([]), "the hit's backoff ended a day ago");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'group_resumed'"), 1);
    // Its message gives the time as every human line does. Before: RFC 3339.
    let message: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'group_resumed'");
    assert!(
        message[0].starts_with("quota group shared resumed (parked since Fri 2026-11-27 "),
        "{message:?}"
    );
    assert!(message[0].contains(" UTC: You exceeded your current quota"), "{message:?}");
    let worked = fixture.drainctl(&["drain", "beta", "--json"]).run();
    worked.assert_code(0);
    assert_eq!(worked.json()["items_done"], 1, "{}", worked.stdout);
    assert_eq!(calls(&fixture), 2);
    let again = fixture.drainctl(&["resume", "--group", "shared", "--json"]).run();
    assert_eq!(again.json()["was_parked"], false);
}

#[test]
fn resume_group_clear_backoff_ends_a_backoff_the_operator_knows_is_over() {
    let fixture = Fixture::new(&config(), NOW);
    // One item's output states a reset an hour away (a poison item, or a limit the
    // vendor lifted early): the whole group backs off for it.
    let far = logged(
        &fixture,
        json!([{ "err": "Rate limit reached for requests. Please try again in 1h." }, { "exit": 1 }]),
    );
    let fine = logged(&fixture, json!([{ "out": "done" }]));
    fixture.enqueue("alpha", &[("a1".into(), far), ("a2".into(), fine.clone())]);
    fixture.enqueue("beta", &[("b1".into(), fine)]);
    let hit = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    assert_eq!(hit.json()["status"], "rate_limited", "{}", hit.stdout);
    // Not parked: resume --group alone clears nothing, and says how to end the backoff.
    let resumed = fixture.drainctl(&["resume", "--group", "shared"]).run();
    resumed.assert_code(0);
    assert!(
        resumed.stdout.contains(
            "quota group shared: was not parked; it backs off until Fri 2026-11-27 11:01 UTC: Rate limit \
             reached for requests. Please try again in 1h.; `drainctl resume --group shared --clear-backoff` \
             ends that now"
        ),
        "{}",
        resumed.stdout
    );
    let refused = fixture.drainctl(&["drain", "beta", "--json"]).run();
    assert_eq!(refused.json()["status"], "rate_limited", "{}", refused.stdout);
    // Before: no command could end it; beta waited the hour.
    let cleared = fixture.drainctl(&["resume", "--group", "shared", "--clear-backoff", "--json"]).run();
    cleared.assert_code(0);
    crate::operator::assert_documented("drainctl resume --group", &cleared.json());
    assert_eq!(cleared.json()["cleared_backoffs"], json!([""]), "{}", cleared.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_cleared'"), 1);
    let worked = fixture.drainctl(&["drain", "beta", "--json"]).run();
    assert_eq!(worked.json()["items_done"], 1, "{}", worked.stdout);
    // --clear-backoff needs a group.
    fixture.drainctl(&["resume", "alpha", "--clear-backoff"]).run().assert_code(64);
}

#[test]
fn a_refused_key_parks_the_group_instead_of_dead_lettering_the_backlog() {
    // Every item would meet the same answer: none of them may use an attempt on it.
    let fixture =
        Fixture::new(&config().replace("max_wait = \"0s\"", "max_wait = \"0s\"\nmax_attempts = 1"), NOW);
    let refused = logged(
        &fixture,
        json!([{ "err": "ERROR: unexpected status 401 Unauthorized: Incorrect API key provided: sk-old." }, { "exit": 1 }]),
    );
    let items: Vec<(String, serde_json::Value)> =
        (1..=3).map(|i| (format!("a{i}"), refused.clone())).collect();
    fixture.enqueue("alpha", &items);
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "rate_limited", "{}", result.stdout);
    let note = result.json()["note"].as_str().unwrap_or_default().to_string();
    assert!(
        note.contains("quota group shared is parked")
            && note.contains("Incorrect API key provided")
            && note.contains("`drainctl resume --group shared`"),
        "{note}"
    );
    assert_eq!(calls(&fixture), 1, "one worker call, not one per item");
    for (key, _) in &items {
        let (state, attempts, _) = fixture.item("alpha", key);
        assert_eq!((state.as_str(), attempts), ("pending", 0), "{key}");
    }
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'dead'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'group_parked'"), 1);
    // The other drain of the group calls nothing either, however long after.
    fixture.set_now("2026-11-28T10:00:00Z");
    fixture.enqueue("beta", &[("b1".into(), logged(&fixture, json!([{ "out": "done" }])))]);
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    assert_eq!(calls(&fixture), 1, "a parked group called a worker");
    let quota = fixture
        .drainctl(&["quota", "test", "--profile", "openai", "--exit-code", "1"])
        .stdin("ERROR: unexpected status 401 Unauthorized: Incorrect API key provided: sk-old.\n")
        .run();
    quota.assert_code(0);
    assert!(quota.stdout.starts_with("quota hit: access refused"), "{}", quota.stdout);
    assert!(
        quota.stdout.contains("needs attention: the key, login or model was refused"),
        "{}",
        quota.stdout
    );
}

#[test]
fn resume_group_names_an_unknown_group() {
    let fixture = Fixture::new(&config(), NOW);
    let result = fixture.drainctl(&["resume", "--group", "shraed"]).run();
    result.assert_code(64);
    assert!(result.stderr.contains("unknown quota group \"shraed\"; known: shared"), "{}", result.stderr);
    fixture.write_config("[defaults]\ntimezone = \"UTC\"\n");
    let none = fixture.drainctl(&["resume", "--group", "shared"]).run();
    none.assert_code(64);
    assert!(
        none.stderr.ends_with("unknown quota group \"shared\"; none are configured\n"),
        "{}",
        none.stderr
    );
}

fn poison_config() -> String {
    "[defaults]\ntimezone = \"UTC\"\n\n\
     [[drain]]\nname = \"alpha\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\nmax_wait = \"0s\"\n\n\
     [[drain]]\nname = \"beta\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\nmax_wait = \"0s\"\n"
        .to_string()
}

/// Move the clock just past the group's backoff.
fn after_backoff(fixture: &Fixture) {
    let until: String = fixture
        .client()
        .query_one(
            "SELECT to_char((max(backoff_until) + interval '1 second') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM quota_backoffs",
            &[],
        )
        .unwrap()
        .get(0);
    fixture.set_now(&until);
}

fn poison(fixture: &Fixture) {
    let steps = json!({ "steps": [{ "err": "Claude AI usage limit reached" }, { "exit": 1 }] });
    fixture.set_now("2026-11-27T09:00:00Z");
    fixture.enqueue("alpha", &[("p".into(), steps)]);
    fixture.set_now(NOW);
}

#[test]
fn an_item_that_hits_while_the_group_works_is_charged_from_the_third_hit() {
    let fixture = Fixture::new(&poison_config(), NOW);
    poison(&fixture);
    let charged = || fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'");
    for round in 1..=3 {
        let pass = fixture.drainctl(&["drain", "alpha", "--json"]).run();
        pass.assert_code(0);
        if round < 3 {
            // Refunded, and the group backs off as for any hit.
            assert_eq!(pass.json()["status"], "rate_limited", "round {round}: {}", pass.stdout);
            assert_eq!(fixture.item("alpha", "p").1, 0, "round {round}");
            assert_eq!(charged(), 0, "round {round}");
            // The rest of the group works after the hit.
            after_backoff(&fixture);
            fixture.enqueue("beta", &[(format!("b{round}"), json!("fine"))]);
            let worked = fixture.drainctl(&["drain", "beta", "--json"]).run();
            assert_eq!(worked.json()["items_done"], 1, "{}", worked.stdout);
        }
    }
    // The third hit in a row, with successes after each, uses an attempt and backs nothing off.
    let (state, attempts, _) = fixture.item("alpha", "p");
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert_eq!(charged(), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 2);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'failure'"), 1);
    let message: String =
        fixture.column("SELECT message FROM events WHERE kind = 'quota_hit_charged'").remove(0);
    assert!(message.contains("3 times in a row"), "{message}");
}

/// Three hits of `p` in a row, each followed by a success of beta: the third is charged.
fn charge_poison(fixture: &Fixture) {
    for round in 1..=3 {
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
        if round < 3 {
            after_backoff(fixture);
            fixture.enqueue("beta", &[(format!("b{round}"), json!("fine"))]);
            let worked = fixture.drainctl(&["drain", "beta", "--json"]).run();
            assert_eq!(worked.json()["items_done"], 1, "{}", worked.stdout);
        }
    }
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'"), 1);
}

/// Move the clock a second past the last attempt's end.
fn after_last_attempt(fixture: &Fixture) {
    seconds_after_last_attempt(fixture, 1);
}

/// Move the clock `seconds` past the last attempt's end.
fn seconds_after_last_attempt(fixture: &Fixture, seconds: i32) {
    let next: String = fixture
        .client()
        .query_one(
            "SELECT to_char((max(finished_at) + make_interval(secs => $1)) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM attempts",
            &[&f64::from(seconds)],
        )
        .unwrap()
        .get(0);
    fixture.set_now(&next);
}

/// The worker's steps of an item that meets a limit with `message`.
fn limit_steps(message: &str) -> serde_json::Value {
    json!({ "steps": [{ "err": message }, { "exit": 1 }] })
}

/// `poison_config` with a 1-second `retry_backoff` for alpha and `extra` settings.
fn quick_retry_config(extra: &str) -> String {
    poison_config().replacen(
        "max_wait",
        &format!("{extra}retry_backoff = {{ base = \"1s\", max = \"1s\" }}\nmax_wait"),
        1,
    )
}

/// Enqueue alpha's item `p`, meeting `message` every time, an hour before `NOW`.
fn poison_with(fixture: &Fixture, message: &str) {
    fixture.set_now("2026-11-27T09:00:00Z");
    fixture.enqueue("alpha", &[("p".into(), limit_steps(message))]);
    fixture.set_now(NOW);
}

#[test]
fn a_charge_is_taken_back_when_the_groups_next_hit_comes_before_any_success() {
    // Several passes of a group meet a window together; the item that reaches the vendor
    // last — its worker reads a large file first, say — gets the window's limit answer
    // each time, and is charged like a poison item. The window was spent: the next item
    // of the group meets the limit too, before anything started since works. Before, the
    // charge stood and, with its last attempt gone, the healthy item was dead.
    let notifier = "notify_command = [\"sh\", \"-c\", \"cat >> TMPDIR/notified.jsonl\"]\n";
    let config = poison_config().replacen("max_wait", "max_attempts = 1\nmax_wait", 1).replacen(
        "[defaults]\n",
        &format!("[defaults]\n{notifier}"),
        1,
    );
    let fixture = Fixture::new(&config, NOW);
    poison(&fixture);
    charge_poison(&fixture);
    assert_eq!(fixture.item("alpha", "p").0, "dead");
    after_last_attempt(&fixture);
    let limit = limit_steps("Claude AI usage limit reached");
    fixture.enqueue("beta", &[("late".into(), limit)]);
    let hit = fixture.drainctl(&["drain", "beta", "--json"]).run();
    hit.assert_code(0);
    assert_eq!(hit.json()["status"], "rate_limited", "{}", hit.stdout);
    let (state, attempts, _) = fixture.item("alpha", "p");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM items WHERE key = 'p' AND available_at <= (SELECT max(finished_at) FROM attempts)"
        ),
        1
    );
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'failure'"), 0);
    let error: String = fixture
        .column("SELECT error FROM attempts a JOIN items i ON i.id = a.item_id WHERE i.key = 'p' ORDER BY a.id DESC")
        .remove(0);
    assert!(error.starts_with("charge taken back (item late of drain beta met the limit next"), "{error}");
    let last_error = fixture.item("alpha", "p").2.unwrap_or_default();
    assert!(last_error.starts_with("charge taken back"), "{last_error}");
    let message: String =
        fixture.column("SELECT message FROM events WHERE kind = 'quota_hit_refunded'").remove(0);
    assert!(message.contains("item p of drain alpha"), "{message}");
    assert!(message.contains("is taken back, and it is pending again: item late of drain beta"), "{message}");
    // Notified: it corrects the dead letter the operator was told of.
    let notified = std::fs::read_to_string(fixture.path("notified.jsonl")).unwrap();
    let kinds: Vec<&str> =
        notified.lines().filter_map(|line| line.split("\"kind\":\"").nth(1)?.split('"').next()).collect();
    assert_eq!(kinds.iter().filter(|kind| **kind == "item_dead_lettered").count(), 1, "{notified}");
    assert_eq!(kinds.iter().filter(|kind| **kind == "quota_hit_refunded").count(), 1, "{notified}");
    // The group backs off for the hit that showed the window spent.
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 3);
    // The item's row starts again: its next hit is not charged.
    after_backoff(&fixture);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.item("alpha", "p").0, "pending");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'"), 1);
}

#[test]
fn a_charge_stands_once_an_item_started_after_it_succeeds() {
    let fixture = Fixture::new(&poison_config(), NOW);
    poison(&fixture);
    charge_poison(&fixture);
    after_last_attempt(&fixture);
    let limit = limit_steps("Claude AI usage limit reached");
    fixture.enqueue("beta", &[("works".into(), json!("fine")), ("late".into(), limit)]);
    let pass = fixture.drainctl(&["drain", "beta", "--json"]).run();
    assert_eq!(
        (pass.json()["items_done"].clone(), pass.json()["status"].clone()),
        (json!(1), json!("rate_limited"))
    );
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_refunded'"), 0);
    assert_eq!(fixture.item("alpha", "p").1, 1);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'failure'"), 1);
    // Settled: a later hit, with no success since, does not take it back either.
    after_backoff(&fixture);
    fixture.client().execute("UPDATE items SET available_at = '2030-01-01' WHERE key = 'p'", &[]).unwrap();
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'quota_hit'"), 4);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_refunded'"), 0);
}

#[test]
fn a_charge_is_taken_back_when_its_window_ended_with_nothing_succeeding_in_it() {
    // A small, steady backlog: the slow item meets each spent window last, and nothing
    // else calls before the window's reset. Before, the successes of the next window
    // confirmed each charge, and the healthy item was dead after `max_attempts`.
    let config = quick_retry_config("max_attempts = 2\n");
    let fixture = Fixture::new(&config, NOW);
    poison_with(&fixture, "Rate limit reached. Please try again in 20s.");
    charge_poison(&fixture);
    let charged_at: String = fixture
        .column("SELECT to_char(max(finished_at) AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM attempts WHERE outcome = 'failure'")
        .remove(0);
    // The window it met ends 20 s after the charge; the next window's items work.
    after_last_attempt(&fixture);
    seconds_after_last_attempt(&fixture, 30);
    fixture.enqueue("beta", &[("next-window".into(), json!("fine"))]);
    let worked = fixture.drainctl(&["drain", "beta", "--json"]).run();
    assert_eq!(worked.json()["items_done"], 1, "{}", worked.stdout);
    // The slow item meets the next window's limit last again: the charge before is taken
    // back, and this hit starts its row again (not charged).
    let again = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    assert_eq!(again.json()["status"], "rate_limited", "{}", again.stdout);
    let message: String =
        fixture.column("SELECT message FROM events WHERE kind = 'quota_hit_refunded'").remove(0);
    assert!(message.contains("the window it met ended at"), "{message} (charged at {charged_at})");
    // The instant in the configured zone, as in every message (before: RFC 3339 in UTC).
    assert!(message.contains(" UTC with no other item"), "{message}");
    let (state, attempts, _) = fixture.item("alpha", "p");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'"), 1);
    assert_eq!(fixture.count("SELECT quota_hit_streak::int8 FROM items WHERE key = 'p'"), 1);
    let last_error = fixture.item("alpha", "p").2.unwrap_or_default();
    assert!(last_error.starts_with("charge taken back (the window it met ended at"), "{last_error}");
}

#[test]
fn supervise_takes_back_a_charge_whose_window_ended_with_nothing_succeeding_in_it() {
    // The charge used the healthy item's last attempt: dead, it meets no later limit, and
    // a backlog that fits its windows brings none either. Before, it stayed dead.
    let fixture = Fixture::new(&quick_retry_config("max_attempts = 1\n"), NOW);
    poison_with(&fixture, "Rate limit reached. Please try again in 20s.");
    charge_poison(&fixture);
    assert_eq!(fixture.item("alpha", "p").0, "dead");
    for drain in ["alpha", "beta"] {
        fixture.drainctl(&["pause", drain]).run().assert_code(0);
    }
    // Inside the window nothing is decided.
    seconds_after_last_attempt(&fixture, 10);
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    assert_eq!(fixture.item("alpha", "p").0, "dead");
    seconds_after_last_attempt(&fixture, 30);
    // A dry run shows the start the revived item brings, and changes nothing. Before, it
    // skipped alpha with no item available while the real pass started it.
    fixture.drainctl(&["resume", "alpha"]).run().assert_code(0);
    let dry = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run();
    dry.assert_code(0);
    let decisions = dry.json()["decisions"].as_array().cloned().unwrap_or_default();
    let alpha = decisions.iter().find(|d| d["drain"] == "alpha").map(|d| d["action"].clone());
    assert_eq!(alpha, Some(json!("start")), "{}", dry.stdout);
    assert_eq!(fixture.item("alpha", "p").0, "dead");
    assert_eq!(fixture.count("SELECT count(*) FROM open_charges"), 1);
    fixture.drainctl(&["pause", "alpha"]).run().assert_code(0);
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    let (state, attempts, _) = fixture.item("alpha", "p");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    let event: serde_json::Value = serde_json::from_str(
        &fixture.drainctl(&["events", "--kind", "quota_hit_refunded", "--json"]).run().stdout,
    )
    .unwrap();
    let event = &event["events"][0];
    assert_eq!(
        (event["data"]["revived"].clone(), event["data"]["by_item"].clone()),
        (json!(true), json!(null))
    );
    assert!(event["run_id"].is_i64(), "{event}");
    assert_eq!(fixture.count("SELECT count(*) FROM open_charges"), 0);
}

#[test]
fn a_charge_taken_back_after_a_retry_or_replace_gives_the_item_nothing_back() {
    // Charged to death, then reset by the operator, then dead again of real failures:
    // the end of the charged window relabels the charged attempt but gives the item
    // neither an attempt nor its life. Before, it was pending again for a third run.
    // "retry-before-0019": the retry was made by a release before migration 0019, which
    // left the charge's attempt count as it was; before, that item was revived.
    for reset in ["retry", "retry-key", "replace", "retry-before-0019"] {
        let fixture = Fixture::new(&quick_retry_config("max_attempts = 1\n"), NOW);
        let marker = fixture.path("failing");
        let steps = json!({ "steps": [{ "if_file": {
            "path": marker,
            "then": [{ "err": "boom" }, { "exit": 1 }],
            "else": [{ "err": "Rate limit reached. Please try again in 20s." }, { "exit": 1 }],
        } }] });
        fixture.set_now("2026-11-27T09:00:00Z");
        fixture.enqueue("alpha", &[("p".into(), steps.clone())]);
        fixture.set_now(NOW);
        charge_poison(&fixture);
        assert_eq!(fixture.item("alpha", "p").0, "dead", "{reset}");
        std::fs::write(&marker, "").unwrap();
        after_last_attempt(&fixture);
        let payload = steps.to_string();
        let args = match reset {
            "retry" | "retry-before-0019" => vec!["retry", "alpha", "--dead"],
            "retry-key" => vec!["retry", "alpha", "--key", "p"],
            _ => vec!["enqueue", "alpha", "--replace", "--key", "p", "--payload", &payload],
        };
        fixture.drainctl(&args).run().assert_code(0);
        if reset == "retry-before-0019" {
            fixture.client().execute("UPDATE open_charges SET attempts_at_charge = 1", &[]).unwrap();
        }
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
        assert_eq!(fixture.item("alpha", "p").0, "dead", "{reset}: dead again of its own failure");
        fixture.drainctl(&["pause", "--all"]).run().assert_code(0);
        seconds_after_last_attempt(&fixture, 30);
        fixture.drainctl(&["supervise"]).run().assert_code(0);
        let (state, attempts, last_error) = fixture.item("alpha", "p");
        assert_eq!((state.as_str(), attempts), ("dead", 1), "{reset}: {last_error:?}");
        assert!(last_error.unwrap_or_default().contains("boom"), "{reset}");
        // The charged attempt's own record is corrected all the same.
        let outcomes: Vec<String> = fixture.column("SELECT outcome FROM attempts WHERE outcome = 'failure'");
        assert_eq!(outcomes, ["failure"], "{reset}: only the real failure is one");
        let revived: Vec<(bool, bool)> = fixture
            .client()
            .query(
                "SELECT (data->>'revived')::bool, (data->>'given_back')::bool FROM events
                  WHERE kind = 'quota_hit_refunded' AND message LIKE '%attempts were reset since: it gets nothing back%'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        assert_eq!(revived, [(false, false)], "{reset}");
        assert_eq!(fixture.count("SELECT count(*) FROM open_charges"), 0, "{reset}");
    }
}

#[test]
fn a_retry_or_replace_starts_an_items_row_of_quota_hits_again() {
    // Charged to death, the charge confirmed by a success after it, then reset by the
    // operator: its first limit since counts 1, as a new item's does, and backs the group
    // off. Before, the row ran on across the reset: the hit was charged (4 in a row), the
    // item dead at once and the group left calling into the limit.
    for reset in ["retry", "retry-key", "replace"] {
        let fixture =
            Fixture::new(&poison_config().replacen("max_wait", "max_attempts = 1\nmax_wait", 1), NOW);
        poison(&fixture);
        charge_poison(&fixture);
        assert_eq!(fixture.item("alpha", "p").0, "dead", "{reset}");
        after_last_attempt(&fixture);
        fixture.enqueue("beta", &[("b3".into(), json!("fine"))]);
        let worked = fixture.drainctl(&["drain", "beta", "--json"]).run();
        assert_eq!(worked.json()["items_done"], 1, "{reset}: {}", worked.stdout);
        let payload = limit_steps("Claude AI usage limit reached").to_string();
        let args = match reset {
            "retry" => vec!["retry", "alpha", "--dead"],
            "retry-key" => vec!["retry", "alpha", "--key", "p"],
            _ => vec!["enqueue", "alpha", "--replace", "--key", "p", "--payload", &payload],
        };
        fixture.drainctl(&args).run().assert_code(0);
        let pass = fixture.drainctl(&["drain", "alpha", "--json"]).run();
        assert_eq!(pass.json()["status"], "rate_limited", "{reset}: {}", pass.stdout);
        let (state, attempts, _) = fixture.item("alpha", "p");
        assert_eq!((state.as_str(), attempts), ("pending", 0), "{reset}");
        assert_eq!(fixture.count("SELECT quota_hit_streak::int8 FROM items WHERE key = 'p'"), 1, "{reset}");
        assert_eq!(
            fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'"),
            1,
            "{reset}"
        );
        assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 3, "{reset}");
    }
}

#[test]
fn a_backoff_counted_on_a_clock_that_went_back_counts_from_supervises_clock() {
    // A hit while the clock ran an hour ahead: "try again in 20s" held the group until
    // the clock, set back, caught up — an hour. Before, supervise skipped its drains.
    let fixture = Fixture::new(&poison_config(), NOW);
    fixture.enqueue("alpha", &[("p".into(), limit_steps("Rate limit reached. Please try again in 20s."))]);
    fixture.enqueue("beta", &[("b".into(), json!("fine"))]);
    fixture.set_now("2026-11-27T11:00:00Z");
    let hit = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    assert_eq!(hit.json()["status"], "rate_limited", "{}", hit.stdout);
    fixture.set_now("2026-11-27T10:01:00Z");
    let decide = |args: &[&str]| -> (String, String) {
        let mut all = vec!["supervise", "--json"];
        all.extend_from_slice(args);
        let pass = fixture.drainctl(&all).run();
        pass.assert_code(0);
        let decisions = pass.json()["decisions"].as_array().cloned().unwrap_or_default();
        let beta = decisions.iter().find(|d| d["drain"] == "beta").cloned().unwrap_or_default();
        (
            beta["action"].as_str().unwrap_or_default().into(),
            beta["reason"].as_str().unwrap_or_default().into(),
        )
    };
    // Only when this host's clock went back: another host's hits are read by its clock.
    fixture.client().execute("UPDATE runs SET host = 'elsewhere'", &[]).unwrap();
    let (_, reason) = decide(&["--dry-run"]);
    assert!(reason.contains("backs off until Fri 2026-11-27 11:00:2"), "{reason}");
    let this_host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    fixture.client().execute("UPDATE runs SET host = $1", &[&this_host.trim()]).unwrap();
    let (_, reason) = decide(&["--dry-run"]);
    assert!(reason.contains("backs off until Fri 2026-11-27 10:01:2"), "{reason}");
    fixture.drainctl(&["pause", "alpha"]).run().assert_code(0);
    fixture.drainctl(&["pause", "beta"]).run().assert_code(0);
    decide(&[]);
    let until: String = fixture
        .column("SELECT to_char(backoff_until AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM quota_backoffs")
        .remove(0);
    assert!(("10:01:00".."10:02:00").contains(&until.as_str()), "{until}");
    fixture.drainctl(&["resume", "beta"]).run().assert_code(0);
    fixture.set_now("2026-11-27T10:02:00Z");
    assert_eq!(decide(&["--dry-run"]).0, "start");
}

#[test]
fn a_success_inside_the_charged_window_confirms_the_charge() {
    let config = quick_retry_config("");
    let fixture = Fixture::new(&config, NOW);
    poison_with(&fixture, "Rate limit reached. Please try again in 20s.");
    charge_poison(&fixture);
    // Inside the window the charged hit stated: the window had room.
    after_last_attempt(&fixture);
    fixture.enqueue("beta", &[("same-window".into(), json!("fine"))]);
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    seconds_after_last_attempt(&fixture, 30);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_refunded'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'failure'"), 2);
}

#[test]
fn a_take_back_revives_an_item_that_died_of_a_later_failure_with_an_attempt_to_spare() {
    // Charged (attempt 1 of 2), then a real failure (attempt 2): dead. The charge taken
    // back leaves it one real attempt of two.
    let config = quick_retry_config("max_attempts = 2\n");
    let fixture = Fixture::new(&config, NOW);
    let marker = fixture.path("charged");
    let steps = json!({ "steps": [{ "if_file": {
        "path": marker,
        "then": [{ "err": "boom" }, { "exit": 1 }],
        "else": [{ "err": "Claude AI usage limit reached" }, { "exit": 1 }],
    } }] });
    fixture.set_now("2026-11-27T09:00:00Z");
    fixture.enqueue("alpha", &[("p".into(), steps)]);
    fixture.set_now(NOW);
    charge_poison(&fixture);
    std::fs::write(&marker, "").unwrap();
    after_last_attempt(&fixture);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.item("alpha", "p").0, "dead");
    after_last_attempt(&fixture);
    let limit = limit_steps("Claude AI usage limit reached");
    fixture.enqueue("beta", &[("late".into(), limit)]);
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    let (state, attempts, last_error) = fixture.item("alpha", "p");
    assert_eq!((state.as_str(), attempts), ("pending", 1), "{last_error:?}");
    // The real failure stays the item's last error.
    assert!(last_error.unwrap_or_default().contains("boom"));
}

#[test]
fn poison_after_1_is_refused() {
    let fixture = Fixture::new(&poison_config().replacen("max_wait", "poison_after = 1\nmax_wait", 1), NOW);
    let result = fixture.drainctl(&["status"]).run();
    result.assert_code(78);
    assert!(result.stderr.contains("poison_after: 1 would charge every quota hit"), "{}", result.stderr);
}

#[test]
fn an_item_still_running_that_started_after_the_charge_decides_it() {
    // With slow workers beside it, the attempt that started after the charge is often
    // still running when the next limit comes. Before, it counted as "nothing succeeded"
    // and a real poison item's charge was taken back again and again.
    let config = poison_config().replacen("name = \"beta\"\n", "name = \"beta\"\nconcurrency = 2\n", 1);
    let fixture = Fixture::new(&config, NOW);
    poison(&fixture);
    charge_poison(&fixture);
    after_last_attempt(&fixture);
    let (go, started) = (fixture.path("go"), fixture.path("started"));
    let slow = json!({ "steps": [{ "touch": started }, { "wait_for_file": go }, { "out": "fine" }] });
    fixture.enqueue("beta", &[("slow".into(), slow)]);
    let running = fixture.drainctl(&["drain", "beta"]).spawn();
    wait_until("the slow worker to start", std::time::Duration::from_secs(20), || started.exists());
    fixture.enqueue("beta", &[("late".into(), limit_steps("Claude AI usage limit reached"))]);
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    // Open: the slow item's outcome decides.
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_refunded'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM open_charges"), 1);
    std::fs::write(&go, "").unwrap();
    finished(running.wait_with_output().unwrap()).assert_code(0);
    // It worked: the window had room after the charge, which stands at the next limit.
    after_backoff(&fixture);
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_refunded'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM open_charges"), 0);
    assert_eq!(fixture.item("alpha", "p").1, 1);
}

#[test]
fn a_hit_another_pass_is_recording_starts_the_row_again() {
    // Two passes of the group meet the limit together: the other pass has counted its hit
    // and not yet recorded it when this one counts. Before, the item was charged as if
    // the group had worked since its last hit.
    let config = poison_config().replacen("name = \"beta\"\n", "name = \"beta\"\nconcurrency = 2\n", 1);
    let fixture = Fixture::new(&config, NOW);
    poison(&fixture);
    for round in 1..=2 {
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
        after_backoff(&fixture);
        fixture.enqueue("beta", &[(format!("b{round}"), json!("fine"))]);
        let worked = fixture.drainctl(&["drain", "beta", "--json"]).run();
        assert_eq!(worked.json()["items_done"], 1, "{}", worked.stdout);
    }
    let (go, started) = (fixture.path("go"), fixture.path("started"));
    let other = json!({ "steps": [{ "touch": started }, { "wait_for_file": go }, { "out": "fine" }] });
    fixture.enqueue("beta", &[("other".into(), other)]);
    let running = fixture.drainctl(&["drain", "beta"]).spawn();
    wait_until("the other worker to start", std::time::Duration::from_secs(20), || started.exists());
    // Where the other pass stands between counting its hit and recording it.
    fixture
        .client()
        .execute(
            "UPDATE items SET last_quota_hit_attempt = (SELECT max(id) FROM attempts WHERE item_id = items.id)
              WHERE key = 'other'",
            &[],
        )
        .unwrap();
    let third = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    assert_eq!(third.json()["status"], "rate_limited", "{}", third.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'"), 0);
    assert_eq!(fixture.item("alpha", "p").1, 0);
    assert_eq!(fixture.count("SELECT quota_hit_streak::int8 FROM items WHERE key = 'p'"), 1);
    std::fs::write(&go, "").unwrap();
    finished(running.wait_with_output().unwrap()).assert_code(0);
}

#[test]
fn a_success_staged_and_not_yet_committed_confirms_a_charge() {
    // A quick worker's result waits staged until its pass starts the next worker: the
    // window had room for it after the charge, so the charge stands.
    let fixture = Fixture::new(&poison_config(), NOW);
    poison(&fixture);
    charge_poison(&fixture);
    after_last_attempt(&fixture);
    let limit = limit_steps("Claude AI usage limit reached");
    // Held by a pass of alpha that is still running (here, by its rows alone).
    fixture.enqueue("alpha", &[("staged".into(), json!("fine"))]);
    fixture.enqueue("beta", &[("late".into(), limit)]);
    fixture
        .client()
        .batch_execute(
            "UPDATE items SET state = 'running', claimed_by = 999999, claimed_at = now() WHERE key = 'staged';
             INSERT INTO attempts (item_id, run_id, attempt, started_at, account)
             SELECT id, 999999, 1, (SELECT max(finished_at) + interval '1 second' FROM attempts), ''
               FROM items WHERE key = 'staged';
             INSERT INTO staged_results (item_id, run_id, result, result_bytes, result_sha256, staged_at)
             SELECT id, 999999, 'fine', 4, sha256('fine'), now() FROM items WHERE key = 'staged';",
        )
        .unwrap();
    let pass = fixture.drainctl(&["drain", "beta", "--json"]).run();
    assert_eq!(pass.json()["status"], "rate_limited", "{}", pass.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_refunded'"), 0);
    assert_eq!(fixture.item("alpha", "p").1, 1);
}

#[test]
fn a_charge_that_was_not_recorded_as_a_failure_is_never_taken_back() {
    // The charging pass lost its claim (a supervise pass ended its run): the attempt was
    // released, not charged. Nothing to give back.
    let fixture = Fixture::new(&poison_config(), NOW);
    poison(&fixture);
    charge_poison(&fixture);
    fixture
        .client()
        .execute("UPDATE attempts SET outcome = 'released' WHERE outcome = 'failure'", &[])
        .unwrap();
    after_last_attempt(&fixture);
    let limit = limit_steps("Claude AI usage limit reached");
    fixture.enqueue("beta", &[("late".into(), limit)]);
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_refunded'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'released'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM open_charges"), 0);
}

#[test]
fn an_item_whose_hits_came_with_other_items_hits_between_is_never_charged() {
    // A group-wide limit met again and again (a vendor's short windows): each window some
    // calls succeed and the last one hits, on whichever item came up. Before, an item met
    // that way three times, with successes between, was charged as a poison item.
    let fixture = Fixture::new(&poison_config(), NOW);
    poison(&fixture);
    let limit = limit_steps("Claude AI usage limit reached");
    for round in 1..=3 {
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
        after_backoff(&fixture);
        fixture.enqueue(
            "beta",
            &[(format!("ok{round}"), json!("fine")), (format!("hit{round}"), limit.clone())],
        );
        // One of beta's items works, the next meets the limit.
        let worked = fixture.drainctl(&["drain", "beta", "--json"]).run();
        assert_eq!(worked.json()["items_done"], 1, "{}", worked.stdout);
        fixture
            .client()
            .execute("UPDATE items SET available_at = '2030-01-01' WHERE drain = 'beta'", &[])
            .unwrap();
        after_backoff(&fixture);
    }
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'"), 0);
    assert_eq!(fixture.item("alpha", "p").1, 0);
}

#[test]
fn a_success_that_started_before_the_items_hit_and_ended_after_it_counts() {
    // The group's backoff ends; the poison item and a healthy one are claimed together,
    // the poison fails at once, the healthy one finishes later. Before: the healthy
    // attempt, numbered before the hit, never counted, and the poison item stalled its
    // group for good.
    let fixture = Fixture::new(&poison_config().replacen("max_wait", "poison_after = 2\nmax_wait", 1), NOW);
    poison(&fixture);
    for round in 1..=2 {
        let go = fixture.path(&format!("go{round}"));
        let started = fixture.path(&format!("started{round}"));
        let steps = json!({ "steps": [{ "touch": started }, { "wait_for_file": go }, { "out": "fine" }] });
        fixture.enqueue("beta", &[(format!("b{round}"), steps)]);
        let healthy = fixture.drainctl(&["drain", "beta"]).spawn();
        wait_until("the healthy worker to start", std::time::Duration::from_secs(20), || started.exists());
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
        after_backoff(&fixture);
        std::fs::write(&go, "").unwrap();
        finished(healthy.wait_with_output().unwrap()).assert_code(0);
    }
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'"), 1);
    assert_eq!(fixture.item("alpha", "p").1, 1);
}

#[test]
fn hits_while_the_rest_of_the_group_does_not_work_are_never_charged() {
    let fixture = Fixture::new(&poison_config(), NOW);
    poison(&fixture);
    for round in 1..=4 {
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
        assert_eq!(fixture.item("alpha", "p").1, 0, "round {round}");
        after_backoff(&fixture);
    }
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'quota_hit_charged'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 4);
}
