//! Rate limits end to end: a quota hit returns the item without using an attempt and
//! backs the whole quota group off until the parsed reset; no reset means a short,
//! suspected backoff that a second hit confirms; a success clears the suspicion.

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

/// The tests here look at the backoff a hit sets: the pass must not wait for its end.
fn config() -> String {
    "[defaults]\ntimezone = \"Europe/Paris\"\ndefault_backoff = \"1h\"\n\n\
     [[drain]]\nname = \"alpha\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\nquota_profile = \"claude\"\nmax_wait = \"0s\"\n\n\
     [[drain]]\nname = \"beta\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\nquota_profile = \"claude\"\nmax_wait = \"0s\"\n"
        .to_string()
}

fn limit(message: &str) -> serde_json::Value {
    json!({ "steps": [{ "err": message }, { "exit": 1 }] })
}

#[test]
fn a_429_with_a_reset_backs_off_the_whole_group_until_reset_plus_a_minute() {
    let fixture = Fixture::new(&config(), NOW);
    let body = r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your rate limit. Resets in 30 minutes."}}"#;
    fixture.enqueue("alpha", &[("a1".into(), limit(body)), ("a2".into(), json!(2))]);
    fixture.enqueue("beta", &[("b1".into(), json!(1))]);
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "rate_limited", "{}", result.stdout);
    // The item is back, its attempt not used; the pass stopped before a2.
    let (state, attempts, _) = fixture.item("alpha", "a1");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    assert_eq!(fixture.item("alpha", "a2").0, "pending");
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:31:00Z");
    let reason: String = fixture.client().query_one("SELECT reason FROM quota_backoffs", &[]).unwrap().get(0);
    assert!(reason.contains("rate_limit_error") || reason.to_lowercase().contains("rate limit"), "{reason}");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 1);
    // Another drain of the same group refuses to start until then...
    fixture.set_now("2026-11-27T10:30:59Z");
    let refused = fixture.drainctl(&["drain", "beta", "--json"]).run();
    refused.assert_code(0);
    assert_eq!(refused.json()["status"], "rate_limited");
    assert_eq!(fixture.item("beta", "b1").0, "pending");
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    let skipped: Vec<&serde_json::Value> =
        plan["decisions"].as_array().unwrap().iter().filter(|d| d["action"] == "skip").collect();
    assert_eq!(skipped.len(), 2, "{plan}");
    // ...and starts after.
    fixture.set_now("2026-11-27T10:31:00Z");
    let after = fixture.drainctl(&["drain", "beta", "--json"]).run();
    after.assert_code(0);
    assert_eq!(after.json()["items_done"], 1);
}

#[test]
fn backoff_messages_show_the_instant_in_the_configured_zone() {
    let fixture = Fixture::new(&config(), NOW);
    let body = r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your rate limit. Resets in 30 minutes."}}"#;
    fixture.enqueue("alpha", &[("a1".into(), limit(body))]);
    fixture.enqueue("beta", &[("b1".into(), json!(1))]);
    // 10:31 UTC is 11:31 in Europe/Paris.
    let local = "backs off until Fri 2026-11-27 11:31 CET";
    let hit = fixture.drainctl(&["drain", "alpha"]).run();
    hit.assert_code(0);
    assert!(hit.stdout.contains(local), "{}", hit.stdout);
    let refused = fixture.drainctl(&["drain", "beta"]).run();
    assert!(refused.stdout.contains(&format!("quota group shared {local}")), "{}", refused.stdout);
    for run in ["1", "2"] {
        let shown = fixture.drainctl(&["runs", "show", run]).run();
        assert!(shown.stdout.contains(local) && !shown.stdout.contains("+00:00"), "{}", shown.stdout);
    }
    let events = fixture.drainctl(&["events", "--kind", "backoff_set", "--json"]).run().json();
    let message = events["events"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(local), "{events}");
    // JSON keeps the instant in RFC 3339 UTC.
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    assert_eq!(status["drains"][0]["backoff_until"], "2026-11-27T10:31:00Z", "{status}");
    // The status note says how much of the backoff is left, not when one starts.
    let table = fixture.drainctl(&["status"]).run().stdout;
    assert!(table.contains("backs off for 31m more ("), "{table}");
    assert!(!table.contains("backoff in"), "{table}");
}

#[test]
fn hits_without_a_reset_back_off_five_minutes_then_the_default() {
    let fixture = Fixture::new(&config(), NOW);
    fixture.enqueue("alpha", &[("a1".into(), limit("Claude AI usage limit reached"))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:05:00Z");
    fixture.set_now("2026-11-27T10:06:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    // A second hit within 30 minutes confirms: default_backoff (1h).
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T11:06:00Z");
    assert_eq!(fixture.item("alpha", "a1").1, 0, "quota hits never use attempts");
    let rules: Vec<String> =
        fixture.column("SELECT data->>'rule' FROM events WHERE kind = 'backoff_set' ORDER BY id");
    assert_eq!(rules, ["suspected", "confirmed"]);
}

/// Start a pass of each drain whose worker starts, waits for the file `go-DRAIN`, then
/// prints its message and exits 1: passes already running when the vendor's limit arrives.
fn held_passes(fixture: &Fixture, hits: &[(&str, &str)]) -> Vec<std::process::Child> {
    let mut passes = Vec::new();
    for (drain, message) in hits {
        let (started, go) = (fixture.path(&format!("started-{drain}")), fixture.path(&format!("go-{drain}")));
        let steps = json!({ "steps": [
            { "touch": started }, { "wait_for_file": go }, { "err": message }, { "exit": 1 }
        ] });
        fixture.enqueue(drain, &[("x".into(), steps)]);
        passes.push(fixture.drainctl(&["drain", drain]).spawn());
        wait_until("the worker to start", std::time::Duration::from_secs(20), || started.exists());
    }
    passes
}

/// Let the held worker of `drain` meet its limit, and wait until its hit is recorded: the
/// first of the group's `backoff_set` events.
fn release_first(fixture: &Fixture, drain: &str) {
    release(fixture, drain);
    wait_until(&format!("{drain}'s hit"), std::time::Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'") == 1
    });
}

/// Let the held worker of `drain` meet its limit.
fn release(fixture: &Fixture, drain: &str) {
    std::fs::write(fixture.path(&format!("go-{drain}")), "").unwrap();
}

/// Wait for the held passes to end, each with 0.
fn all_finished(passes: Vec<std::process::Child>) {
    for pass in passes {
        finished(pass.wait_with_output().unwrap()).assert_code(0);
    }
}

#[test]
fn two_passes_refused_at_once_for_something_time_will_not_fix_record_and_notify_it_once() {
    let fixture = Fixture::new(&config(), NOW);
    let refusal = "Your credit balance is too low to access the Anthropic API";
    let passes = held_passes(&fixture, &[("alpha", refusal), ("beta", refusal)]);
    release_first(&fixture, "alpha");
    let until = fixture.backoff_until("shared");
    fixture.set_now("2026-11-27T10:00:01Z");
    release(&fixture, "beta");
    all_finished(passes);
    // Before: a second announced backoff_set (a second notification), its backoff moved.
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'group_parked'"), 1);
    assert_eq!(fixture.backoff_until("shared"), until);
    assert_eq!(fixture.item("beta", "x").1, 0, "a refusal uses no attempt");
}

#[test]
fn two_passes_meeting_one_limit_at_once_are_one_suspected_hit_not_a_confirmed_one() {
    let fixture = Fixture::new(&config(), NOW);
    // Both workers are running when the vendor's limit arrives; both see it.
    let limit = "Claude AI usage limit reached";
    let passes = held_passes(&fixture, &[("alpha", limit), ("beta", limit)]);
    release(&fixture, "alpha");
    release(&fixture, "beta");
    all_finished(passes);
    // Before: the second pass's hit confirmed the first's, an hour's backoff for a limit
    // nobody had retried yet.
    // The second hit is the first seen again: one backoff_set, one notification.
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:05:00Z");
    assert_eq!(backoff_rules(&fixture), ["suspected"]);
    // A hit after the suspected backoff ended (the item was given back) still confirms.
    fixture.set_now("2026-11-27T10:06:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T11:06:00Z");
    assert_eq!(backoff_rules(&fixture), ["suspected", "confirmed"]);
}

#[test]
fn two_passes_meeting_one_stated_reset_at_once_record_it_once() {
    let fixture = Fixture::new(&config(), NOW);
    // 10:30 as an epoch, as Claude Code states its reset.
    let message = "Claude AI usage limit reached|1795775400";
    let passes = held_passes(&fixture, &[("alpha", message), ("beta", message)]);
    release(&fixture, "alpha");
    release(&fixture, "beta");
    all_finished(passes);
    // Before: two `backoff_set` events (two notifications) for the one limit.
    assert_eq!(backoff_rules(&fixture), ["parsed_reset"]);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:31:00Z");
}

#[test]
fn a_hit_stating_a_reset_the_backoff_in_force_outlasts_is_not_announced() {
    // alpha meets 10:30; beta, already running, meets a message stating 10:20 a moment
    // later: the backoff in force outlasts it, nothing changes. Before: a second
    // notification, "until 10:31 (stated reset + margin)" beside a stated 10:20.
    let fixture = Fixture::new(&config(), NOW);
    let passes = held_passes(
        &fixture,
        &[
            ("alpha", "Claude AI usage limit reached|1795775400"),
            ("beta", "Claude AI usage limit reached|1795774800"),
        ],
    );
    release_first(&fixture, "alpha");
    release(&fixture, "beta");
    all_finished(passes);
    assert_eq!(backoff_rules(&fixture), ["parsed_reset"]);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:31:00Z");
}

#[test]
fn a_pass_already_running_that_meets_the_stated_minute_again_keeps_its_longer_wait() {
    // codex cuts 00:24:28Z to "1:24 AM" (Paris). Pass alpha meets it at 00:23:20; pass
    // beta, whose worker was already running, meets it again at 00:24:02, inside the
    // stated minute: the group waits for the minute's end, announced once. Before: the
    // shorter backoff in force was kept, and the next pass called into the limit again.
    let fixture = Fixture::new(&config(), "2026-12-03T00:23:20Z");
    let message = "You've hit your usage limit. Upgrade to Pro or try again at 1:24 AM.";
    let passes = held_passes(&fixture, &[("alpha", message), ("beta", message)]);
    release_first(&fixture, "alpha");
    assert_eq!(fixture.backoff_until("shared"), "2026-12-03T00:24:04Z");
    fixture.set_now("2026-12-03T00:24:02Z");
    release(&fixture, "beta");
    all_finished(passes);
    assert_eq!(fixture.backoff_until("shared"), "2026-12-03T00:25:05Z");
    // Recorded (the events say why the wait widened), notified once.
    assert_eq!(backoff_rules(&fixture), ["parsed_reset", "parsed_reset"]);
    assert_eq!(announced_rules(&fixture), ["parsed_reset"]);
}

#[test]
fn passes_meeting_a_reset_of_now_together_wait_once_not_twice_as_long() {
    // "reset at 10:00:00" seen at 10:00 by two passes already running. Before: the second
    // doubled the first's 2 s retry (and each announced it).
    let fixture = Fixture::new(&config(), NOW);
    let now = "Claude AI usage limit reached|1795773600";
    let passes = held_passes(&fixture, &[("alpha", now), ("beta", now)]);
    release_first(&fixture, "alpha");
    release(&fixture, "beta");
    all_finished(passes);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:00:02Z");
    assert_eq!(backoff_rules(&fixture), ["parsed_reset"]);
    assert_eq!(fixture.count("SELECT now_hits::int8 FROM quota_backoffs WHERE quota_group = 'shared'"), 1);
}

#[test]
fn a_relative_reset_a_moment_later_than_another_passes_widens_the_wait_unannounced() {
    // `try again in 20.371s` and, from the other pass, `20.377s`: one limit.
    let fixture = Fixture::new(&config(), NOW);
    let passes = held_passes(
        &fixture,
        &[
            ("alpha", "Rate limit reached. Please try again in 20.371s."),
            ("beta", "Rate limit reached. Please try again in 20.377s."),
        ],
    );
    release_first(&fixture, "alpha");
    release(&fixture, "beta");
    all_finished(passes);
    assert_eq!(backoff_rules(&fixture), ["parsed_reset", "parsed_reset"]);
    assert_eq!(announced_rules(&fixture), ["parsed_reset"], "one notification");
}

#[test]
fn a_minutes_window_is_notified_once_an_hour_where_supervise_runs_every_15_seconds() {
    // Before: every wait longer than supervise_interval was notified, so with supervise
    // every 15 s a per-minute limit met under a full backlog notified every minute.
    let config = config().replace("[defaults]\n", "[defaults]\nsupervise_interval = \"15s\"\n");
    let fixture = Fixture::new(&config, NOW);
    fixture.enqueue("alpha", &[("a".into(), limit("Rate limit reached. Please try again in 50s."))]);
    for at in ["2026-11-27T10:00:00Z", "2026-11-27T10:01:00Z", "2026-11-27T10:02:00Z"] {
        fixture.set_now(at);
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    }
    let announced: Vec<bool> = fixture
        .column("SELECT (data->>'announced')::boolean FROM events WHERE kind = 'backoff_set' ORDER BY id");
    assert_eq!(announced, [true, false, false]);
}

#[test]
fn a_short_windows_limit_met_again_within_the_hour_is_notified_once_an_hour() {
    // A vendor's 20-second windows under a full backlog: each pass waits the window out by
    // itself, and a limit met every window was notified every window (180 an hour).
    let fixture = Fixture::new(&config(), NOW);
    let short = limit("Rate limit reached. Please try again in 20s.");
    let long = limit(
        r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your rate limit. Resets in 30 minutes."}}"#,
    );
    fixture.enqueue("alpha", &[("short".into(), short), ("long".into(), long)]);
    let only = |key: &str| {
        fixture
            .client()
            .execute(
                "UPDATE items SET available_at = CASE WHEN key = $1 THEN '2026-01-01'::timestamptz ELSE '2030-01-01' END",
                &[&key],
            )
            .unwrap();
    };
    only("short");
    for at in ["2026-11-27T10:00:00Z", "2026-11-27T10:01:00Z", "2026-11-27T10:02:00Z"] {
        fixture.set_now(at);
        fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    }
    // A long wait is always notified; a short one an hour after the last notified is too.
    only("long");
    fixture.set_now("2026-11-27T10:03:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    only("short");
    fixture.set_now("2026-11-27T10:50:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    fixture.set_now("2026-11-27T11:04:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    let announced: Vec<bool> = fixture
        .column("SELECT (data->>'announced')::boolean FROM events WHERE kind = 'backoff_set' ORDER BY id");
    assert_eq!(announced, [true, false, false, true, false, true]);
}

/// Run one pass of alpha at `at` whose only available item meets `message`.
fn hit_at(fixture: &Fixture, at: &str, message: &str) {
    fixture.set_now(at);
    fixture.enqueue("alpha", &[(format!("hit-{at}"), limit(message))]);
    // The earlier items wait: only this one is claimed.
    fixture
        .client()
        .execute(
            "UPDATE items SET available_at = '2030-01-01' WHERE state = 'pending' AND key <> $1",
            &[&format!("hit-{at}")],
        )
        .unwrap();
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
}

#[test]
fn a_stated_reset_between_two_hits_without_one_does_not_clear_the_suspicion() {
    // A vendor mixing 429s without a reset and per-window ones: before, the stated reset
    // cleared the suspicion, so the limit was never confirmed and the group was called
    // again every 5 minutes.
    let fixture = Fixture::new(&config(), NOW);
    hit_at(&fixture, "2026-11-27T10:00:00Z", "Claude AI usage limit reached");
    hit_at(&fixture, "2026-11-27T10:06:00Z", "Rate limit reached. Please try again in 20s.");
    hit_at(&fixture, "2026-11-27T10:08:00Z", "Claude AI usage limit reached");
    assert_eq!(backoff_rules(&fixture), ["suspected", "parsed_reset", "confirmed"]);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T11:08:00Z");
}

#[test]
fn a_short_wait_after_a_guess_that_ended_is_not_news() {
    // The guess (a hit without a reset) ended; a short wait after it is not one that
    // replaces it, and the hour's throttle holds.
    let fixture = Fixture::new(&config(), NOW);
    hit_at(&fixture, "2026-11-27T10:00:00Z", "Rate limit reached. Please try again in 20s.");
    hit_at(&fixture, "2026-11-27T10:05:00Z", "Claude AI usage limit reached");
    hit_at(&fixture, "2026-11-27T10:20:00Z", "Rate limit reached. Please try again in 20s.");
    let announced: Vec<bool> = fixture
        .column("SELECT (data->>'announced')::boolean FROM events WHERE kind = 'backoff_set' ORDER BY id");
    assert_eq!(backoff_rules(&fixture), ["parsed_reset", "suspected", "parsed_reset"]);
    assert_eq!(announced, [true, true, false]);
}

#[test]
fn a_trusted_reset_replaces_the_guess_of_a_hit_without_one() {
    // alpha's hit states no reset (a 5-minute suspected backoff); beta's, a moment later,
    // `try again in 20s`. Before: the group waited the 5 minutes, the 20 s ignored.
    let fixture = Fixture::new(&config(), NOW);
    let passes = held_passes(
        &fixture,
        &[
            ("alpha", "Claude AI usage limit reached"),
            ("beta", "Rate limit reached. Please try again in 20s."),
        ],
    );
    release_first(&fixture, "alpha");
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:05:00Z");
    release(&fixture, "beta");
    all_finished(passes);
    assert_eq!(announced_rules(&fixture), ["suspected", "parsed_reset"]);
    let until = fixture.backoff_until("shared");
    assert!(until.starts_with("2026-11-27T10:00:2"), "{until}");
}

#[test]
fn a_success_after_a_suspected_hit_clears_the_suspicion() {
    let fixture = Fixture::new(&config(), NOW);
    fixture.enqueue("alpha", &[("a1".into(), limit("Claude AI usage limit reached"))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    fixture.client().execute("UPDATE items SET state = 'done' WHERE key = 'a1'", &[]).unwrap();
    fixture.enqueue("alpha", &[("a2".into(), json!("fine"))]);
    fixture.set_now("2026-11-27T10:06:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE suspected_at IS NULL"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_cleared'"), 1);
    // A later hit is a first, suspected one again: 5 minutes, not the default.
    fixture.enqueue("alpha", &[("a3".into(), limit("Claude AI usage limit reached"))]);
    fixture.set_now("2026-11-27T10:10:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:15:00Z");
}

#[test]
fn a_server_error_that_mentions_rate_limits_is_a_transient_failure_not_a_quota_hit() {
    let fixture = Fixture::new(&config(), NOW);
    fixture.enqueue(
        "alpha",
        &[("a1".into(), limit("API Error: 500 {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error (not your usage limit) · Rate limited\"}}"))],
    );
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    let (state, attempts, error) = fixture.item("alpha", "a1");
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert!(error.unwrap().starts_with("server error"));
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
    let outcome: String = fixture.client().query_one("SELECT outcome FROM attempts", &[]).unwrap().get(0);
    assert_eq!(outcome, "transient");
}

const OVERLOADED: &str =
    r#"API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;

#[test]
fn server_errors_of_two_items_in_a_row_stop_the_pass_instead_of_spending_every_items_attempts() {
    // A vendor outage: every call answers 529. Before, the pass went through the whole
    // backlog charging each item an attempt, and passes soon after dead-lettered it.
    let fixture = Fixture::new(&config(), NOW);
    let items: Vec<_> = (1..=6).map(|i| (format!("a{i}"), limit(OVERLOADED))).collect();
    fixture.enqueue("alpha", &items);
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    let json = result.json();
    assert_eq!(json["status"], "rate_limited", "{json}");
    let note = json["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("the vendor's servers failed for 2 items in a row (last: server error: ")
            && note.contains("the next item waits 30s")
            && note.ends_with("; the next pass tries again"),
        "{note}"
    );
    // Two items were charged their attempt; the others were not called.
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'transient'"), 2);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE attempts = 0 AND state = 'pending'"), 4);
    // No quota backoff: a server error is no usage limit.
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
}

#[test]
fn a_pass_whose_budget_ends_with_server_errors_ends_for_its_budget_not_for_the_servers() {
    let config = config().replacen("max_wait = \"0s\"\n", "max_wait = \"5m\"\nmax_items_per_pass = 2\n", 1);
    let fixture = Fixture::new(&config, NOW);
    let items: Vec<_> = (1..=4).map(|i| (format!("a{i}"), limit(OVERLOADED))).collect();
    fixture.enqueue("alpha", &items);
    // Before: the pass waited 30 s for the servers first, its budget spent.
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "budget", "{}", result.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'transient'"), 2);
}

#[test]
fn a_single_items_server_errors_do_not_stop_the_pass() {
    // One item failing with a 500 is that item's failure: the next item runs.
    let fixture = Fixture::new(&config(), NOW);
    fixture.enqueue(
        "alpha",
        &[("bad".into(), limit(OVERLOADED)), ("ok1".into(), json!(1)), ("ok2".into(), json!(2))],
    );
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "drained", "{}", result.stdout);
    assert_eq!(result.json()["items_done"], 2, "{}", result.stdout);
}

#[test]
fn a_pass_waits_for_the_vendors_servers_and_goes_on_when_they_answer() {
    let config =
        config().replace("max_wait = \"0s\"\n\n[[drain]]\nname = \"beta\"", "\n[[drain]]\nname = \"beta\"");
    let fixture = Fixture::new(&config, NOW);
    let marker = fixture.path("servers-back");
    // Items fail with a 529 until the servers are back (the marker), then answer.
    let flaky = |key: &str| {
        (
            key.to_string(),
            json!({ "steps": [{ "if_file": {
                "path": marker,
                "then": [{ "out": format!("result {key}") }],
                "else": [{ "err": OVERLOADED }, { "exit": 1 }],
            } }] }),
        )
    };
    fixture.enqueue("alpha", &[flaky("a1"), flaky("a2"), flaky("a3"), flaky("a4")]);
    let pass = fixture.drainctl(&["drain", "alpha", "--json"]).spawn();
    wait_until("the pass to wait for the servers", std::time::Duration::from_secs(30), || {
        fixture
            .client()
            .query_one("SELECT waiting_until::text FROM runs ORDER BY id DESC LIMIT 1", &[])
            .ok()
            .and_then(|row| row.get::<_, Option<String>>(0))
            .is_some()
    });
    let waiting: (String, String) = {
        let row = fixture
            .client()
            .query_one("SELECT waiting_until::text, waiting_reason FROM runs ORDER BY id DESC LIMIT 1", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(waiting.0, "2026-11-27 10:00:30+00");
    assert!(
        waiting.1.starts_with("waiting for the vendor's servers: the vendor's servers failed for 2 items"),
        "{}",
        waiting.1
    );
    // status says what it waits for (before: "waiting: reset in 30s", of no reset).
    let table = fixture.drainctl(&["status"]).run().stdout;
    let row = table.lines().find(|line| line.starts_with("alpha")).unwrap_or_default();
    assert!(row.contains("waiting for servers: next item in 30s"), "{table}");
    let page = fixture.drainctl(&["report"]).run().stdout;
    assert!(page.contains("a pass waits for the vendor's servers until "), "{page}");
    // It holds nothing while it waits: the item claimed ahead went back unstarted.
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'running'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'transient'"), 2);
    // The servers answer again; at the end of the wait the pass goes on.
    std::fs::write(&marker, "").unwrap();
    fixture.set_now("2026-11-27T10:00:31Z");
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["status"], "drained", "{}", result.stdout);
    assert_eq!(result.json()["items_done"], 2, "{}", result.stdout);
    assert!(
        result
            .stderr
            .contains("drainctl: warn: drain alpha: waiting for the vendor's servers: the vendor's servers failed for 2 items in a row"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_reset_in_the_past_is_distrusted_and_the_event_says_why() {
    let fixture = Fixture::new(&config(), NOW);
    // An epoch reset an hour before now.
    let past = chrono::DateTime::parse_from_rfc3339("2026-11-27T09:00:00Z").unwrap().timestamp();
    fixture.enqueue("alpha", &[("a1".into(), limit(&format!("Claude AI usage limit reached|{past}")))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:05:00Z");
    let why: String = fixture
        .client()
        .query_one("SELECT message FROM events WHERE kind = 'backoff_distrusted'", &[])
        .unwrap()
        .get(0);
    assert!(why.contains("in the past"), "{why}");
}

#[test]
fn quota_test_prints_the_classification_and_the_reset() {
    let result = Drainctl::new(&["quota", "test", "--tz", "UTC", "--now", "2026-11-27T10:00:00Z", "--json"])
        .stdin("You've hit your session limit · resets 12:50am (America/Los_Angeles)\n")
        .run();
    result.assert_code(0);
    let json = result.json();
    assert_eq!(json["outcome"], "quota_hit");
    // 00:50 in Los Angeles (UTC-8 in November) is 08:50Z on the next day. Today's
    // passed 70 minutes ago: not "just now", whatever a DST change could make of it.
    assert_eq!(json["reset"], "2026-11-28T08:50:00Z");
    assert_eq!(
        (&json["backoff_rule"], &json["backoff_until"]),
        (&json!("parsed_reset"), &json!("2026-11-28T08:51:00Z"))
    );
    // Five minutes after it, the message names the moment just passed: a short retry.
    let result = Drainctl::new(&["quota", "test", "--tz", "UTC", "--now", "2026-11-27T08:55:00Z", "--json"])
        .stdin("You've hit your session limit · resets 12:50am (America/Los_Angeles)\n")
        .run();
    result.assert_code(0);
    let json = result.json();
    assert_eq!(json["reset"], "2026-11-27T08:50:00Z");
    assert_eq!(json["backoff_until"], "2026-11-27T08:55:02Z");
    // For humans, both instants also in the zone given.
    let human = Drainctl::new(&["quota", "test", "--tz", "Asia/Jerusalem", "--now", "2026-11-27T08:55:00Z"])
        .stdin("You've hit your session limit · resets 12:50am (America/Los_Angeles)\n")
        .run();
    assert!(human.stdout.contains("(Fri 2026-11-27 10:50 IST, 5m ago)"), "{}", human.stdout);
    assert!(
        human
            .stdout
            .contains("backoff: until 2026-11-27T08:55:02+00:00 (Fri 2026-11-27 10:55:02 IST, in 2s)"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_date_without_a_year_seen_in_its_own_minute_waits_for_the_minute_not_next_year() {
    let quota_test = |now: &str| {
        let result = Drainctl::new(&[
            "quota",
            "test",
            "--profile",
            "claude",
            "--tz",
            "Europe/Warsaw",
            "--now",
            now,
            "--json",
        ])
        .stdin("You have hit your weekly limit · resets Nov 25, 5am\n")
        .run();
        result.assert_code(0);
        result.json()
    };
    // 05:00:30 in Warsaw: the minute the message names still lasts.
    let json = quota_test("2026-11-25T04:00:30Z");
    assert_eq!(json["distrusted"], serde_json::Value::Null, "{json}");
    assert_eq!(json["reset"], "2026-11-25T04:00:00Z", "{json}");
    assert_eq!(json["backoff_until"], "2026-11-25T04:01:03Z", "{json}");
    // Five minutes later: just now, one short retry — not a year ahead, nor distrusted.
    let json = quota_test("2026-11-25T04:05:00Z");
    assert_eq!(json["backoff_until"], "2026-11-25T04:05:02Z", "{json}");
    assert_eq!(json["distrusted"], serde_json::Value::Null, "{json}");
}

#[test]
fn a_wait_of_years_is_a_reset_distrusted_with_its_reason_not_dropped() {
    for (retry_after, reset) in
        [("99999999", "2030-01-27T19:46:39Z"), ("99999999999999999999999", "9999-12-31T23:59:59Z")]
    {
        let result =
            Drainctl::new(&["quota", "test", "--profile", "http", "--now", NOW, "--tz", "UTC", "--json"])
                .stdin(format!("HTTP/1.1 429 Too Many Requests\nRetry-After: {retry_after}\n"))
                .run();
        result.assert_code(0);
        let json = result.json();
        assert_eq!(json["reset"], reset, "{json}");
        assert_eq!(json["matched_line"], format!("Retry-After: {retry_after}"), "{json}");
        assert!(json["distrusted"].as_str().unwrap_or_default().contains("more than 8 days ahead"), "{json}");
        assert_eq!(json["backoff_rule"], "suspected", "{json}");
    }
}

#[test]
fn quota_test_reads_the_output_as_the_named_drain_does() {
    let config = "[defaults]\ntimezone = \"UTC\"\n\n\
                  [[drain]]\nname = \"alpha\"\ncommand = [\"FAKE_WORKER\", \"--ticket-note=upstream 502 Bad Gateway\"]\n\
                  quota_profile = \"openai\"\nquota_patterns = [\"credits? exhausted\"]\n\
                  veto_patterns = [\"maintenance window\"]\nenv = { TZ = \"America/New_York\" }\n";
    let fixture = Fixture::new(config, NOW);
    let outcome = |args: &[&str], output: &str| -> serde_json::Value {
        let mut argv = vec!["quota", "test", "--now", NOW, "--json"];
        argv.extend_from_slice(args);
        let result = fixture.drainctl(&argv).stdin(output).run();
        result.assert_code(0);
        result.json()
    };
    // The drain's own patterns: a quota hit by its quota_patterns, a server error by its
    // veto_patterns; neither means anything to the built-in profile alone.
    assert_eq!(outcome(&["--drain", "alpha"], "error: credits exhausted\n")["outcome"], "quota_hit");
    assert_eq!(outcome(&[], "error: credits exhausted\n")["outcome"], "other");
    let vetoed = "Rate limit reached for gpt-4o. Please try again in 20s. (maintenance window)\n";
    assert_eq!(outcome(&["--drain", "alpha"], vetoed)["outcome"], "server_error");
    assert_eq!(outcome(&[], vetoed)["outcome"], "quota_hit");
    // Its zone: 5pm is New York's (22:00Z), not the configured UTC.
    let json = outcome(&["--drain", "alpha"], "Rate limit reached. Your limit resets 5pm.\n");
    assert_eq!(json["reset"], "2026-11-27T22:00:00Z");
    assert_eq!(
        outcome(&["--drain", "alpha", "--tz", "UTC"], "Rate limit reached. Your limit resets 5pm.\n")
            ["reset"],
        "2026-11-27T17:00:00Z"
    );
    // A line that only repeats the worker's input (its payload, its command's arguments)
    // is not the client's message.
    let ticket = "Customer says: usage limit reached, please try again in 20s.";
    let payload = fixture.path("payload.json");
    std::fs::write(&payload, format!("{ticket}\n")).unwrap();
    let echoed = format!("{ticket}\nERROR: the ticket has no attachment\n");
    assert_eq!(outcome(&[], &echoed)["outcome"], "quota_hit");
    assert_eq!(outcome(&["--input", payload.to_str().unwrap()], &echoed)["outcome"], "other");
    let argument_echoed =
        "--ticket-note=upstream 502 Bad Gateway\nRate limit reached for gpt-4o. Please try again in 20s.\n";
    assert_eq!(outcome(&[], argument_echoed)["outcome"], "server_error");
    assert_eq!(outcome(&["--drain", "alpha"], argument_echoed)["outcome"], "quota_hit");
    // A wrong drain or input file: usage errors naming it.
    let unknown = fixture.drainctl(&["quota", "test", "--drain", "gamma"]).stdin("").run();
    unknown.assert_code(64);
    assert!(unknown.stderr.contains("unknown drain \"gamma\"; known: alpha"), "{}", unknown.stderr);
    let missing = fixture.drainctl(&["quota", "test", "--input", "/nonexistent/payload"]).stdin("").run();
    missing.assert_code(64);
    assert!(missing.stderr.contains("--input /nonexistent/payload: cannot be read"), "{}", missing.stderr);
}

#[test]
fn quota_test_reads_clock_times_in_the_zone_of_the_account_a_pass_uses() {
    let config = "[defaults]\ntimezone = \"Asia/Kathmandu\"\n\n\
                  [[drain]]\nname = \"acct\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"g\"\n\n\
                  [[quota_group]]\nname = \"g\"\naccounts = [\
                  { name = \"a1\", env = { TZ = \"America/Sao_Paulo\" } }, \
                  { name = \"a2\", env = { TZ = \"Pacific/Chatham\" } }]\n";
    let fixture = Fixture::new(config, NOW);
    let reset = |args: &[&str]| -> serde_json::Value {
        let mut argv = vec![
            "quota",
            "test",
            "--drain",
            "acct",
            "--exit-code",
            "1",
            "--now",
            "2026-12-06T12:00:00Z",
            "--json",
        ];
        argv.extend_from_slice(args);
        let result = fixture.drainctl(&argv).stdin("You've hit your session limit · resets 3am\n").run();
        result.assert_code(0);
        result.json()["reset"].clone()
    };
    // The first account's zone, as a pass's first attempt (before: Kathmandu's 03:00,
    // which no pass used), or the one named.
    assert_eq!(reset(&[]), "2026-12-07T06:00:00Z", "03:00 in São Paulo");
    assert_eq!(reset(&["--account", "a2"]), "2026-12-06T13:15:00Z", "03:00 in Chatham");
    let unknown = fixture.drainctl(&["quota", "test", "--drain", "acct", "--account", "a3"]).stdin("").run();
    unknown.assert_code(64);
    assert!(
        unknown.stderr.contains("--account \"a3\": quota group g of drain acct has the accounts a1, a2"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn quota_test_stops_a_client_announcing_a_long_wait_as_a_drain_does() {
    // Captured runs of gemini-cli that a drain stopped while they announced a wait of
    // hours and of four minutes: quota hits with the reset the drain reads.
    for (name, now, reset) in [
        ("gemini-text-capacity-exhausted", "2026-12-02T03:42:08Z", "2026-12-02T12:26:15Z"),
        ("gemini-text-long-retry", "2026-12-02T03:42:09Z", "2026-12-02T03:46:09Z"),
    ] {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-clients").join(name);
        let mut output = std::fs::read(dir.join("stdout")).unwrap();
        output.extend(std::fs::read(dir.join("stderr")).unwrap());
        let result =
            Drainctl::new(&["quota", "test", "--profile", "gemini", "--tz", "UTC", "--now", now, "--json"])
                .stdin(output)
                .run();
        result.assert_code(0);
        let json = result.json();
        assert_eq!(
            (&json["outcome"], &json["reset"]),
            (&json!("quota_hit"), &json!(reset)),
            "{name}: {json}"
        );
    }
    // A wait the client is left to sit through is no hit, unless the drain's
    // item_timeout is shorter than it.
    let short = "Attempt 1 failed with status 429. Too many requests.\nRetrying in 30 seconds...\n";
    let result =
        Drainctl::new(&["quota", "test", "--profile", "gemini", "--now", NOW, "--json"]).stdin(short).run();
    assert_eq!(result.json()["outcome"], "other", "{}", result.stdout);
    let config = "[[drain]]\nname = \"alpha\"\ncommand = [\"FAKE_WORKER\"]\nquota_profile = \"gemini\"\nitem_timeout = \"20s\"\n";
    let fixture = Fixture::new(config, NOW);
    let result =
        fixture.drainctl(&["quota", "test", "--drain", "alpha", "--now", NOW, "--json"]).stdin(short).run();
    let json = result.json();
    assert_eq!(
        (&json["outcome"], &json["reset"]),
        (&json!("quota_hit"), &json!("2026-11-27T10:00:30Z")),
        "{json}"
    );
}

/// The rules of the `backoff_set` events, in order.
fn backoff_rules(fixture: &Fixture) -> Vec<String> {
    fixture.column("SELECT data->>'rule' FROM events WHERE kind = 'backoff_set' ORDER BY id")
}

/// The `backoff_set` events that were notified (`announced`), by rule.
fn announced_rules(fixture: &Fixture) -> Vec<String> {
    fixture.column(
        "SELECT data->>'rule' FROM events WHERE kind = 'backoff_set' AND (data->>'announced')::boolean ORDER BY id",
    )
}

#[test]
fn a_doubted_clock_time_hit_again_within_thirty_minutes_confirms_instead_of_waiting_a_day() {
    // 8pm in Paris is 19:00Z.
    let fixture = Fixture::new(&config(), "2026-11-27T12:00:00Z");
    fixture.enqueue("alpha", &[("a1".into(), limit("5-hour limit reached ∙ resets 8pm"))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T19:01:00Z");
    // Hit again 20 minutes after the reset: "8pm" now reads as tomorrow and is doubted.
    fixture.set_now("2026-11-27T19:20:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T19:25:00Z");
    // And again: still within 30 minutes of the reset, so the no-reset rule confirms.
    fixture.set_now("2026-11-27T19:26:00Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T20:26:00Z");
    assert_eq!(backoff_rules(&fixture), ["parsed_reset", "suspected", "confirmed"]);
}

#[test]
fn a_retry_after_of_zero_means_now_and_seen_again_with_no_success_between_waits_longer() {
    let fixture = Fixture::new(&config(), NOW);
    fixture.enqueue("alpha", &[("a1".into(), limit("HTTP/1.1 429 Too Many Requests\nRetry-After: 0"))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:00:02Z");
    // Still limited at the retry: twice the first wait. Before: 2 s every time, a call
    // every two seconds for as long as the vendor stayed limited.
    fixture.set_now("2026-11-27T10:00:02Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:00:06Z");
    // An epoch reset ten seconds ago (clock skew) is now too, and still no success.
    let skewed = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").unwrap().timestamp();
    fixture.enqueue("beta", &[("b1".into(), limit(&format!("Claude AI usage limit reached|{skewed}")))]);
    fixture.set_now("2026-11-27T10:00:10Z");
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:00:18Z");
    assert_eq!(backoff_rules(&fixture), ["parsed_reset", "parsed_reset", "parsed_reset"]);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_distrusted'"), 0);
    // An item of the group done since: a reset of now is believed at once again.
    fixture.enqueue("beta", &[("b2".into(), json!("fine"))]);
    fixture.client().execute("UPDATE items SET available_at = '2027-01-01' WHERE key = 'b1'", &[]).unwrap();
    fixture.set_now("2026-11-27T10:00:30Z");
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    assert_eq!(fixture.item("beta", "b2").0, "done");
    fixture.set_now("2026-11-27T10:00:40Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:00:42Z");
}

#[test]
fn a_clock_time_just_passed_is_retried_once_then_backs_off_by_the_no_reset_rule() {
    // "resets 8pm" (19:00Z) seen from 20:05 Paris time on.
    let fixture = Fixture::new(&config(), "2026-11-27T19:05:00Z");
    fixture.enqueue("alpha", &[("a1".into(), limit("5-hour limit reached ∙ resets 8pm"))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T19:05:02Z");
    fixture.set_now("2026-11-27T19:05:02Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T19:10:02Z");
    fixture.set_now("2026-11-27T19:10:02Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T20:10:02Z");
    assert_eq!(backoff_rules(&fixture), ["parsed_reset", "suspected", "confirmed"]);
}

#[test]
fn a_worker_that_echoes_its_item_is_judged_by_its_own_words_not_the_items() {
    // codex text mode prints its prompt (built from the item) on stderr before its error:
    // a ticket about a 502 made a real limit look like a server error (every item spent
    // its attempts during the limit), and a ticket quoting a limit invented one.
    // It echoes its stdin as it got it, as codex does inside its prompt.
    let script =
        r#"{ printf 'user\n<stdin>\n'; cat; printf '\n</stdin>\nERROR: %s\n' "$ERROR"; } >&2; exit 1"#;
    let drain = |name: &str, error: &str| {
        format!(
            "[[drain]]\nname = \"{name}\"\ncommand = [\"/bin/sh\", \"-c\", {}]\nquota_group = \"{name}\"\nquota_profile = \"openai\"\nmax_wait = \"0s\"\nmax_attempts = 1\nenv = {{ ERROR = {} }}\n",
            serde_json::to_string(script).unwrap(),
            serde_json::to_string(error).unwrap()
        )
    };
    let config = format!(
        "[defaults]\ntimezone = \"UTC\"\n\n{}\n{}",
        drain("limited", "You've hit your usage limit. Upgrade to Pro or try again at 7:44 PM."),
        drain("failing", "stream disconnected before completion: error sending request")
    );
    let fixture = Fixture::new(&config, NOW);
    let ticket = json!({ "text": "Ticket 4711: checkout returns 502 Bad Gateway after the deploy." });
    let quoting = json!({ "text": "Claude usage limit reached. Your limit will reset at 5pm." });
    fixture.enqueue("limited", &[("t".into(), ticket)]);
    fixture.enqueue("failing", &[("t".into(), quoting)]);
    for drain in ["limited", "failing"] {
        fixture.drainctl(&["drain", drain]).run().assert_code(0);
    }
    // The limit is the client's: the item is back, its attempt not used, the group waits.
    assert_eq!(fixture.item("limited", "t").0, "pending");
    assert_eq!(fixture.backoff_until("limited"), "2026-11-27T19:45:00Z");
    // The client's own error is a failure of the item; the limit it quotes backs nothing off.
    let (state, _, error) = fixture.item("failing", "t");
    assert_eq!(state, "dead", "{error:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE quota_group = 'failing'"), 0);
}

#[test]
fn a_per_minute_limit_met_again_right_after_its_boundary_is_retried_in_seconds() {
    // A rolling window (3 calls in any 60 s) frees the calls made just after the whole
    // minute a moment after the next one: the retry at the boundary is refused. Before,
    // the group then waited for the following boundary and lost every second window.
    let fixture = Fixture::new(&config(), "2026-11-27T10:00:12Z");
    let message = "API Error: 429 This request would exceed the rate limit for your organization of 3 requests per minute.";
    fixture.enqueue("alpha", &[("a1".into(), limit(message))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:01:04Z");
    // Another pass's item (concurrency 2) finished after that hit, in the window before
    // the boundary: it says nothing of the window since (before, it turned the short
    // retry off).
    fixture.enqueue("beta", &[("b1".into(), json!(1))]);
    fixture
        .client()
        .execute(
            "UPDATE items SET state = 'done', finished_at = '2026-11-27T10:00:20Z', result = 'x' WHERE key = 'b1'",
            &[],
        )
        .unwrap();
    fixture.set_now("2026-11-27T10:01:05Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:01:07Z");
    fixture.set_now("2026-11-27T10:01:07Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T10:01:11Z");
    let said: Vec<String> =
        fixture.column("SELECT message FROM events WHERE kind = 'backoff_set' ORDER BY id DESC LIMIT 1");
    assert!(said[0].contains("the window's boundary met again at once"), "{said:?}");
    // The item was never charged.
    assert_eq!(fixture.item("alpha", "a1"), ("pending".to_string(), 0, fixture.item("alpha", "a1").2));
}

#[test]
fn a_wrapper_printing_its_items_path_is_not_limited_by_the_words_of_that_path() {
    // docs/worker-contract.md's summarise.sh prints `cannot read $path` and
    // `::checkpoint:: summarising $path` on stderr. Before, a path (a web form's payload,
    // a file dropped into a source folder) spelling a limit backed the group off for the
    // days it named, and one spelling a client's long wait stopped the worker as a hit.
    let wrapper = r#"#!/bin/sh
path=$(sed -n 's/.*"path": *"\([^"]*\)".*/\1/p')
[ -f "$path" ] && [ -r "$path" ] || { echo "cannot read $path" >&2; exit 1; }
printf '::checkpoint:: summarising %s\n' "$path" >&2
sleep 0.2
[ -z "$LIMIT" ] || { echo "$LIMIT" >&2; exit 1; }
echo "- a summary of $(basename "$path")"
"#;
    let drain = |name: &str, limit: &str| {
        format!(
            "[[drain]]\nname = \"{name}\"\ncommand = [\"TMPDIR/summarise.sh\"]\nquota_group = \"{name}\"\n\
             quota_profile = \"openai\"\nmax_wait = \"0s\"\nmax_attempts = 1\nenv = {{ LIMIT = \"{limit}\" }}\n"
        )
    };
    let config = format!(
        "[defaults]\ntimezone = \"UTC\"\n\n{}\n{}",
        drain("docs", ""),
        drain(
            "limited",
            "Rate limit reached for gpt-4o-2024-08-06 on requests per min. Please try again in 20s."
        )
    );
    let fixture = Fixture::new(&config, NOW);
    fixture.script("summarise.sh", wrapper);
    let folder = fixture.path("in");
    std::fs::create_dir(&folder).unwrap();
    let file = |name: &str| {
        let path = folder.join(name);
        std::fs::write(&path, "a document").unwrap();
        path.display().to_string()
    };
    let waits = file("b ticket. Rate limit exceeded. Retrying after 604800000ms.txt");
    let plain = file("c-normal.txt");
    fixture.enqueue(
        "docs",
        &[
            (
                "a-missing".into(),
                json!({ "path": "/uploads/17. You have reached your usage limit, resets in 6 days" }),
            ),
            ("b-waits".into(), json!({ "path": waits })),
            ("c-plain".into(), json!({ "path": plain })),
        ],
    );
    let result = fixture.drainctl(&["drain", "docs", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "drained", "{}", result.stdout);
    // The missing file is the item's own failure; the other two are summarised.
    let (state, attempts, error) = fixture.item("docs", "a-missing");
    assert_eq!((state.as_str(), attempts), ("dead", 1), "{error:?}");
    assert!(error.unwrap_or_default().contains("cannot read /uploads/17."));
    assert_eq!(fixture.item("docs", "b-waits").0, "done");
    assert_eq!(fixture.item("docs", "c-plain").0, "done");
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 0);
    // A client's own limit message that names the payload's model, or whose heading a
    // ticket in the payload quotes, is still a limit.
    let ticket = json!({
        "path": plain,
        "model": "gpt-4o-2024-08-06",
        "subject": "Rate limit reached for gpt-4o-2024-08-06",
    });
    fixture.enqueue("limited", &[("m".into(), ticket)]);
    fixture.drainctl(&["drain", "limited"]).run().assert_code(0);
    assert_eq!(fixture.item("limited", "m").0, "pending");
    assert_eq!(fixture.backoff_until("limited"), "2026-11-27T10:00:22Z");
}

#[test]
fn a_clock_time_hit_within_its_minute_in_the_hour_the_clocks_repeat_is_that_minute() {
    // 02:30:20 CEST on the night Paris goes back at 03:00 to 02:00 CET: "resets 2:30am"
    // names the minute under way, as on any other night — not 02:30 CET an hour later.
    let fixture = Fixture::new(&config(), "2026-10-25T00:30:20Z");
    fixture.enqueue("alpha", &[("a1".into(), limit("You've hit your 5-hour limit · resets 2:30am"))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    // Before: 2026-10-25T01:31:00Z.
    assert_eq!(fixture.backoff_until("shared"), "2026-10-25T00:31:04Z");
    // Past that minute, the repeat is the reset still ahead (docs/rate-limits.md).
    fixture.set_now("2026-10-25T00:35:00Z");
    fixture.enqueue("beta", &[("b1".into(), limit("You've hit your 5-hour limit · resets 2:30am"))]);
    fixture.drainctl(&["drain", "beta"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-10-25T01:31:00Z");
}

#[test]
fn a_clock_time_without_seconds_hit_within_its_minute_waits_for_the_minute_to_end() {
    // codex truncates: "try again at 1:24 AM" (00:24Z in Paris) for a reset at 00:24:28Z.
    let fixture = Fixture::new(&config(), "2026-12-03T00:23:20Z");
    let message = "You've hit your usage limit. Upgrade to Pro or try again at 1:24 AM.";
    fixture.enqueue("alpha", &[("a1".into(), limit(message))]);
    // The first retry: the stated time + a tenth of the 40 s wait.
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-12-03T00:24:04Z");
    // Limited again at 00:24:10 with the same stated minute: it is not over yet, so the
    // group waits for its end (+ 5 s), not 2 s and then the suspected 5 minutes.
    fixture.set_now("2026-12-03T00:24:10Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-12-03T00:25:05Z");
    // The same limit met again in its stated minute: recorded, saying why, and notified
    // once (the first).
    assert_eq!(backoff_rules(&fixture), ["parsed_reset", "parsed_reset"]);
    assert_eq!(announced_rules(&fixture), ["parsed_reset"]);
    let widened: Vec<String> =
        fixture.column("SELECT message FROM events WHERE kind = 'backoff_set' ORDER BY id DESC LIMIT 1");
    assert!(widened[0].contains("the stated minute is not over"), "{widened:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_distrusted'"), 0);
    // Limited once more after the minute is over: the no-reset rule, as before.
    fixture.set_now("2026-12-03T00:25:05Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("shared"), "2026-12-03T00:30:05Z");
    assert_eq!(announced_rules(&fixture), ["parsed_reset", "suspected"]);
}

#[test]
fn the_events_of_a_just_now_retry_show_the_moment_stated_and_say_it_is_a_short_retry() {
    // "resets 8pm" (19:00Z) seen at 20:05 Paris time: it passed just now.
    let fixture = Fixture::new(&config(), "2026-11-27T19:05:00Z");
    fixture.enqueue("alpha", &[("a1".into(), limit("5-hour limit reached ∙ resets 8pm"))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    fixture.set_now("2026-11-27T19:05:02Z");
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    let stated = fixture.column::<String>(
        "SELECT kind || ' ' || (data->>'stated_reset') FROM events \
         WHERE kind IN ('backoff_set', 'backoff_distrusted') ORDER BY id",
    );
    // Not tomorrow's 8pm, the next occurrence the clock time resolves to.
    assert_eq!(
        stated,
        [
            "backoff_set 2026-11-27T19:00:00Z",
            "backoff_distrusted 2026-11-27T19:00:00Z",
            "backoff_set 2026-11-27T19:00:00Z"
        ]
    );
    let messages =
        fixture.column::<String>("SELECT message FROM events WHERE kind = 'backoff_set' ORDER BY id");
    assert!(messages[0].contains("(the stated reset passed just now: one short retry)"), "{messages:?}");
    assert!(!messages[0].contains("stated reset + margin"), "{messages:?}");
}

#[test]
fn the_backoff_shows_the_line_its_reset_was_read_from() {
    // The messages come from the worker's environment: a payload line is never its own.
    let drain = |name: &str, profile: &str, error: &str| {
        format!(
            "[[drain]]\nname = \"{name}\"\ncommand = [\"/bin/sh\", \"-c\", 'printf \"%s\\n\" \"$ERROR\" >&2; exit 1']\n\
             quota_group = \"{name}\"\nquota_profile = \"{profile}\"\nmax_wait = \"0s\"\nenv = {{ ERROR = {} }}\n",
            serde_json::to_string(error).unwrap()
        )
    };
    let http = "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 30\r\n\r\n\
                {\"error\":{\"message\":\"rate limited\"}}\r";
    let gemini = r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10\nPlease retry in 38.8s.","status":"RESOURCE_EXHAUSTED"}}"#;
    let config = format!(
        "[defaults]\ntimezone = \"UTC\"\n\n{}\n{}",
        drain("http", "http", http),
        drain("gemini", "gemini", gemini)
    );
    let fixture = Fixture::new(&config, NOW);
    fixture.enqueue("http", &[("a".into(), json!(1))]);
    fixture.enqueue("gemini", &[("b".into(), json!(2))]);
    let matched = |group: &str| {
        let reason: String = fixture
            .client()
            .query_one("SELECT reason FROM quota_backoffs WHERE quota_group = $1", &[&group])
            .unwrap()
            .get(0);
        let event = fixture.column::<String>(&format!(
            "SELECT data->>'matched_line' FROM events WHERE kind = 'backoff_set' AND quota_group = '{group}'"
        ));
        (reason, event[0].clone())
    };
    for drain in ["http", "gemini"] {
        fixture.drainctl(&["drain", drain]).run().assert_code(0);
    }
    // Not the body `{"error":{"message":"rate limited"}}`.
    assert_eq!(fixture.backoff_until("http"), "2026-11-27T10:00:33Z");
    assert_eq!(matched("http"), ("retry-after: 30".to_string(), "retry-after: 30".to_string()));
    // Not "… please check your plan and billing details.", cut at the message's `\n`.
    let (reason, event) = matched("gemini");
    assert!(reason.starts_with("Please retry in 38.8s."), "{reason}");
    assert_eq!(reason, event);
}

/// Run item `key` of `drain`, whose worker prints `limit` (on `stream`) at `printed_at`, then
/// waits until the clock reads `ended_at`, prints `goodbye` (if any) and exits 1.
fn printed_then_ended(
    fixture: &Fixture,
    (drain, key): (&str, &str),
    (stream, limit): (&str, &str),
    goodbye: Option<&str>,
    (printed_at, ended_at): (&str, &str),
) {
    let (printed, gone) = (fixture.path(&format!("printed-{key}")), fixture.path(&format!("gone-{key}")));
    // A checkpoint after the limit, on its stream: once the pass has recorded it, it has
    // read the limit (as of `printed_at`) — the clock moves on only then.
    let mut steps = vec![
        json!({ stream: limit }),
        json!({ stream: "::checkpoint:: limit printed" }),
        json!({ "touch": printed }),
        json!({ "wait_for_file": gone }),
    ];
    // Printed a moment later in real time too: when output arrived is read to a tenth of
    // a second.
    steps.extend(goodbye.into_iter().flat_map(|text| [json!({ "sleep": 0.3 }), json!({ "err": text })]));
    steps.push(json!({ "exit": 1 }));
    fixture.enqueue(drain, &[(key.into(), json!({ "steps": steps }))]);
    // The items a hit before gave back would run first.
    fixture.client().execute("DELETE FROM items WHERE state = 'pending' AND key <> $1", &[&key]).unwrap();
    fixture.set_now(printed_at);
    let pass = fixture.drainctl(&["drain", drain]).spawn();
    wait_until("the pass to read the limit", std::time::Duration::from_secs(20), || {
        printed.exists()
            && fixture.count("SELECT coalesce(max(checkpoints), 0) FROM runs WHERE status = 'running'") > 0
    });
    fixture.set_now(ended_at);
    std::fs::write(&gone, "").unwrap();
    finished(pass.wait_with_output().unwrap()).assert_code(0);
}

#[test]
fn a_reset_is_reckoned_from_when_the_worker_printed_it_not_when_it_ended() {
    let fixture = Fixture::new(&config(), "2026-11-27T18:59:00Z");
    // Printed at 19:59 Paris time ("resets 8pm", a minute away); the worker lingers until
    // 20:15, and only then exits: a client that waits for input after its limit.
    let session = "You've hit your session limit · resets 8pm (Europe/Paris)";
    let times = ("2026-11-27T18:59:00Z", "2026-11-27T19:15:00Z");
    printed_then_ended(&fixture, ("alpha", "a1"), ("out", session), None, times);
    // Before: the next 8pm after 20:15 — tomorrow, a day of quota lost.
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T19:15:02Z");
    let (state, attempts, _) = fixture.item("alpha", "a1");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    // A relative reset likewise: "in 30 minutes" printed at 20:15, read at 20:40.
    let relative = r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your rate limit. Resets in 30 minutes."}}"#;
    let times = ("2026-11-27T19:15:03Z", "2026-11-27T19:40:00Z");
    printed_then_ended(&fixture, ("beta", "b1"), ("err", relative), None, times);
    // 20:45:03 and a tenth of the 5 minutes left; before: 21:10:00 and its margin, half
    // an hour after the worker's exit.
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T19:45:33Z");
    // A goodbye printed as the worker leaves, at 22:15, does not move "10pm" printed at
    // 21:59 to the next day either; its events name the moment the message named.
    let session = "You've hit your session limit · resets 10pm (Europe/Paris)";
    let times = ("2026-11-27T20:59:00Z", "2026-11-27T21:15:00Z");
    printed_then_ended(&fixture, ("alpha", "a3"), ("out", session), Some("shutting down"), times);
    assert_eq!(fixture.backoff_until("shared"), "2026-11-27T21:15:02Z");
    let stated: Vec<String> = fixture.column(
        "SELECT data->>'stated_reset' FROM events WHERE kind = 'backoff_set' ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(stated, vec!["2026-11-27T21:00:00Z".to_string()]);
    // A client's last word reporting the limit again after its retry (`… status 429.
    // Giving up.`) states no reset: "in 30 minutes" counts from its own line at 21:20, not
    // from the give-up at 21:25 (before: 21:55, the client's retry delay too late).
    let times = ("2026-11-27T21:20:00Z", "2026-11-27T21:25:00Z");
    let gave_up = Some("Attempt 2 failed with status 429. Giving up.");
    printed_then_ended(&fixture, ("beta", "b2"), ("err", relative), gave_up, times);
    let stated: Vec<String> = fixture.column(
        "SELECT data->>'stated_reset' FROM events WHERE kind = 'backoff_set' ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(stated, vec!["2026-11-27T21:50:00Z".to_string()]);
}

#[test]
fn a_json_result_that_says_it_succeeded_is_a_success_whatever_its_text_quotes() {
    // `claude -p --output-format json` (and stream-json's last event): the model's answer
    // is a string inside the client's own result. An answer quoting a client's error
    // object, a limit or a refused key is the item's text, not the client's verdict.
    let fixture = Fixture::new(&config(), NOW);
    let quoted = [
        r#"{"is_error":true,"result":"Invalid API key · Please run /login"}"#,
        r#"{"is_error":true,"result":"Claude AI usage limit reached|1797000000"}"#,
        "The user pasted:\n{\"is_error\": true, \"result\": \"You've hit your limit · resets 3pm (UTC)\"}",
    ];
    let items: Vec<(String, serde_json::Value)> = quoted
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let result = json!({
                "type": "result", "subtype": "success", "is_error": false,
                "result": format!("Summary: {text}"), "total_cost_usd": 0.02,
            });
            (format!("t{index}"), json!({ "steps": [{ "out": result.to_string() }] }))
        })
        .collect();
    let mut items = items;
    // The same over several lines, as a wrapper's `jq .` prints it.
    let pretty = json!({
        "type": "result", "subtype": "success", "is_error": false,
        "result": format!("Summary: {}", quoted[0]),
    });
    items.push((
        "pretty".into(),
        json!({ "steps": [{ "out": serde_json::to_string_pretty(&pretty).unwrap() }] }),
    ));
    fixture.enqueue("alpha", &items);
    let result = fixture.drainctl(&["drain", "alpha", "--json"]).run();
    result.assert_code(0);
    // Before: the group parked on the first ("needs attention"), or backed off for days.
    assert_eq!(result.json()["items_done"], 4, "{}", result.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind IN ('backoff_set', 'group_parked')"), 0);
    // The client's own verdict still counts: a result that says it failed is a limit.
    let refused = json!({
        "type": "result", "subtype": "success", "is_error": true,
        "result": "Claude AI usage limit reached|1797000000",
    });
    fixture.enqueue(
        "alpha",
        &[("own".into(), json!({ "steps": [{ "out": refused.to_string() }, { "exit": 1 }] }))],
    );
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.item("alpha", "own").0, "pending");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 1);
}

#[test]
fn a_models_answer_quoting_a_limit_in_a_run_that_then_failed_is_the_items_content() {
    // The model's text relayed in a client's JSON event that the client never reports its
    // own limit in: codex's agent_message, a Claude Code assistant message of several
    // lines. Then the run failed (--max-turns, item_timeout). Before: the group backed
    // off for the week the quote names.
    let fixture = Fixture::new(&config(), NOW);
    // As the clients print them, "type" first.
    let claude = [
        r#"{"type":"system","subtype":"init","session_id":"s1"}"#,
        r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"The customer pasted this from their terminal:\n\nClaude AI usage limit reached|1797249600\n\nLet me look into it."}]}}"#,
        r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":3}"#,
    ];
    let codex = [
        r#"{"type":"thread.started","thread_id":"t1"}"#,
        r#"{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"The ticket says:\nYou've hit your usage limit. Upgrade to Pro or try again in 6 days 17 hours 14 minutes.\n"}}"#,
    ];
    let output = |lines: &[&str]| -> String { lines.iter().map(|line| format!("{line}\n")).collect() };
    let test = |lines: &[&str], profile: &str| {
        fixture
            .drainctl(&["quota", "test", "--profile", profile, "--exit-code", "1", "--now", NOW])
            .stdin(output(lines))
            .run()
    };
    for (lines, profile) in [(&claude[..], "claude"), (&codex[..], "openai")] {
        let result = test(lines, profile);
        result.assert_code(0);
        assert!(result.stdout.starts_with("no quota hit"), "{profile}: {}", result.stdout);
    }
    // Claude Code's own limit, its one-line assistant message, is still read as one.
    let own = [
        r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Claude AI usage limit reached|1797249600"}]}}"#,
    ];
    let result = test(&own, "claude");
    assert!(result.stdout.starts_with("quota hit"), "{}", result.stdout);
    // Through a pass: the item's own failure, no backoff.
    fixture
        .enqueue("alpha", &[("t1".into(), json!({ "steps": [{ "out": output(&claude) }, { "exit": 1 }] }))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
    assert_eq!(fixture.item("alpha", "t1").1, 1, "the attempt counts: the item's own failure");
}

#[test]
fn an_events_instants_are_to_the_microsecond_on_the_hosts_clock() {
    // Before: a reset stated relative to the host's clock (which has nanoseconds; an
    // injected one has microseconds at most) kept nine digits in the event.
    let fixture = Fixture::new(&config(), NOW);
    fixture.enqueue("alpha", &[("a1".into(), limit("Rate limit exceeded. Please try again in 60s."))]);
    fixture.drainctl(&["drain", "alpha"]).env_remove("DRAINCTL_NOW").run().assert_code(0);
    let events = fixture.drainctl(&["events", "--kind", "backoff_set", "--json"]).run();
    events.assert_code(0);
    let data = &events.json()["events"][0]["data"];
    for field in ["stated_reset", "trusted_reset", "backoff_until"] {
        let at = data[field].as_str().unwrap_or_default();
        let fraction = at.split_once('.').map_or("", |(_, rest)| rest.trim_end_matches('Z'));
        assert!(!at.is_empty() && fraction.len() <= 6, "{field}: {data}");
    }
}

#[test]
fn events_of_a_group_hold_its_backoffs_its_clears_and_its_drains_events() {
    // Before: the clear of a backoff (recorded without a drain) showed under no drain, and
    // no filter found a group's history.
    let fixture = Fixture::new(&config(), NOW);
    fixture.enqueue("alpha", &[("a1".into(), limit("Rate limit exceeded. Please try again in 60s."))]);
    fixture.drainctl(&["drain", "alpha"]).run().assert_code(0);
    fixture.drainctl(&["resume", "--group", "shared", "--clear-backoff"]).run().assert_code(0);
    let kinds = |args: &[&str]| -> Vec<String> {
        let result = fixture.drainctl(args).run();
        result.assert_code(0);
        result.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let of_group = kinds(&["events", "--group", "shared", "--json"]);
    for kind in ["backoff_cleared", "backoff_set", "run_started", "items_enqueued"] {
        assert!(of_group.iter().any(|found| found == kind), "{kind}: {of_group:?}");
    }
    assert!(!kinds(&["events", "--drain", "alpha", "--json"]).iter().any(|found| found == "backoff_cleared"));
    let unknown = fixture.drainctl(&["events", "--group", "nosuch"]).run();
    unknown.assert_code(64);
    assert!(unknown.stderr.contains("unknown quota group \"nosuch\"; known: shared"), "{}", unknown.stderr);
    fixture.drainctl(&["events", "--group", "shared", "--drain", "alpha"]).run().assert_code(64);
}
