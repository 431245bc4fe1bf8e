//! Waiting for a reset inside the pass: a pass whose quota group backs off for less than
//! `max_wait` holds no item, records that it waits, beats so that supervise never takes
//! it for hung, wakes early for a pause, the end of its burst or SIGTERM, and goes on
//! claiming at the reset; supervise starts a drain to wait for a reset that comes before
//! its next pass. The clock is injected: the wait ends when the test moves it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";
/// The limit answer: a reset 30 s ahead, so the wait ends at 10:00:33 (a tenth of the
/// wait as margin).
const LIMIT: &str = r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Rate limited. Please try again in 30s."}}"#;

fn config(extra: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n{extra}"
    )
}

/// Item `a` hits the limit on its first call only; `b` answers at once.
fn enqueue_limited_then_fine(fixture: &Fixture) {
    let marker = fixture.path("called-once");
    fixture.enqueue(
        "docs",
        &[
            (
                "a".into(),
                json!({ "steps": [{ "if_file": {
                    "path": marker,
                    "then": [{ "out": "result a" }],
                    "else": [{ "touch": marker }, { "err": LIMIT }, { "exit": 1 }],
                } }] }),
            ),
            ("b".into(), json!({ "steps": [{ "out": "result b" }] })),
        ],
    );
}

/// The pass `result` (of `drain --json`) ended `rate_limited`, its note saying `said`.
fn assert_rate_limited_saying(result: &Finished, said: &str) {
    let json = result.json();
    assert_eq!(json["status"], "rate_limited", "{json}");
    assert!(json["note"].as_str().unwrap_or_default().contains(said), "{json}");
}

fn waiting_until(fixture: &Fixture) -> Option<String> {
    fixture
        .client()
        .query_one("SELECT waiting_until::text FROM runs ORDER BY id DESC LIMIT 1", &[])
        .ok()
        .and_then(|row| row.get(0))
}

fn wait_for_the_wait(fixture: &Fixture) {
    wait_until("the pass to wait for the reset", Duration::from_secs(30), || {
        waiting_until(fixture).is_some()
    });
}

/// A fixture with `extra` in its drain, `a` limited and `b` fine, and `drainctl ARGS`
/// started and waiting for the reset.
fn waiting_pass(extra: &str, args: &[&str]) -> (Fixture, std::process::Child) {
    let fixture = Fixture::new(&config(extra), NOW);
    enqueue_limited_then_fine(&fixture);
    let pass = fixture.drainctl(args).spawn();
    wait_for_the_wait(&fixture);
    (fixture, pass)
}

#[test]
fn a_pass_waits_for_a_near_reset_then_goes_on_claiming_and_supervise_leaves_it_alone() {
    let (fixture, pass) = waiting_pass("liveness_timeout = \"10s\"\n", &["drain", "docs", "--json"]);
    assert_eq!(waiting_until(&fixture).as_deref(), Some("2026-11-27 10:00:33+00"));
    // It holds nothing while it waits, and says so.
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'running'"), 0);
    let status = fixture.drainctl(&["status", "--json"]).run();
    status.assert_code(0);
    assert_eq!(status.json()["drains"][0]["waiting_until"], "2026-11-27T10:00:33Z");
    // First in its notes, before the backoff's long limit message that the cell cuts.
    let table = fixture.drainctl(&["status"]).run().stdout;
    let row = table.lines().find(|line| line.starts_with("docs")).unwrap_or_default();
    assert!(row.contains("waiting: reset in 33s; backs off"), "{table}");
    let runs = fixture.drainctl(&["runs", "--json"]).run().json();
    assert!(
        runs["runs"][0]["waiting_reason"].as_str().unwrap_or_default().contains("backs off until"),
        "{runs}"
    );
    // Twenty seconds later, past liveness_timeout, supervise neither calls the waiting run
    // hung nor starts a second one: the wait beats.
    fixture.set_now("2026-11-27T10:00:20Z");
    std::thread::sleep(Duration::from_millis(1500));
    let plan = fixture.drainctl(&["supervise", "--json", "--dry-run"]).run().json();
    let decisions = plan["decisions"].as_array().cloned().unwrap_or_default();
    assert!(decisions.iter().all(|d| d["action"] != "kill_hung" && d["action"] != "start"), "{decisions:?}");
    // At the reset it goes on: a again (its attempt was given back), then b.
    fixture.set_now("2026-11-27T10:00:34Z");
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["status"], "drained", "{}", result.stdout);
    assert_eq!(result.json()["items_done"], 2);
    // Run by hand, it said why it went quiet (before: nothing until it ended).
    assert!(
        result.stderr.contains("drainctl: warn: drain docs: waiting for the reset: ")
            && result.stderr.contains("the pass goes on then (Ctrl-C ends it, what it did stays done)"),
        "{}",
        result.stderr
    );
    assert_eq!(fixture.item("docs", "a"), ("done".to_string(), 1, None));
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'quota_hit'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE waiting_until IS NOT NULL"), 0);
    // The 34 s of its run it held nothing do not count as running time (the clock stood
    // still while the workers ran): not 2 items in 34 s, 212 an hour.
    let idle = fixture.column::<f64>("SELECT idle_seconds FROM runs");
    assert!((33.0..=35.0).contains(&idle[0]), "{idle:?}");
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    let forecast = &status["drains"][0]["forecast"];
    assert!(forecast["running_seconds"].as_f64().is_some_and(|seconds| seconds < 1.0), "{forecast}");
}

#[test]
fn a_pass_waiting_when_the_clock_goes_back_ends_and_the_next_supervise_counts_the_wait_again() {
    // The clock ran an hour ahead when the limit came: set back, the wait would last an
    // hour more. Before, the pass waited until the clock caught up.
    let fixture = Fixture::new(&config(""), "2026-11-27T11:00:00Z");
    enqueue_limited_then_fine(&fixture);
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_for_the_wait(&fixture);
    fixture.set_now(NOW);
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["status"], "rate_limited", "{}", result.stdout);
    let note = result.json()["note"].as_str().unwrap_or_default().to_string();
    assert!(note.starts_with("the clock went back by 1h while the pass waited for the reset"), "{note}");
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE waiting_until IS NOT NULL"), 0);
    // The next supervise counts the 30-second wait from its own time.
    let plan = fixture.drainctl(&["supervise", "--json", "--dry-run"]).run().json();
    let reason = plan["decisions"][0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.contains("backs off until Fri 2026-11-27 10:00:3"), "{reason}");
    // Its items, enqueued and given back an hour ahead, are available from then on.
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    let available: Vec<String> =
        fixture.column("SELECT to_char(available_at AT TIME ZONE 'UTC', 'HH24:MI') FROM items ORDER BY key");
    assert_eq!(available, ["10:00", "10:00"]);
}

#[test]
fn a_pass_whose_session_the_server_ends_while_it_waits_reconnects_and_goes_on_at_the_reset() {
    let (fixture, pass) = waiting_pass("", &["drain", "docs", "--json"]);
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    // Its next beat finds the session gone: a new one, and the wait goes on.
    wait_until("the new session", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'") == 1
    });
    assert_eq!(waiting_until(&fixture).as_deref(), Some("2026-11-27 10:00:33+00"));
    fixture.set_now("2026-11-27T10:00:34Z");
    let result = finished(pass.wait_with_output().unwrap());
    // Before, the beat's error ended the pass with 69 and the wait with it.
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 2, "{}", result.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1);
}

#[test]
fn a_pause_sigterm_or_the_end_of_its_burst_wakes_a_waiting_pass() {
    // A pause: the pass ends at once, its item pending.
    let (fixture, pass) = waiting_pass("", &["drain", "docs", "--json"]);
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["status"], "window_closed", "{}", result.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 2);

    // SIGTERM: exit 75, nothing held.
    let (fixture, pass) = waiting_pass("", &["drain", "docs"]);
    signal(pass.id(), libc::SIGTERM);
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    assert!(result.stderr.contains("while waiting for the reset"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 2);

    // The configuration changed under it (the drain moved to another group, its group
    // gained an account): the run goes on with the new settings, whose group does not
    // back off (before: it waited on for a reset that was none of its business, while
    // `status` showed the new settings; then it ended, for the next supervise).
    let (fixture, pass) = waiting_pass("", &["drain", "docs", "--json"]);
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.write_config_settled(&format!("{text}quota_group = \"free\"\n"));
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(
        (result.json()["status"].as_str(), result.json()["items_done"].as_i64()),
        (Some("drained"), Some(2))
    );
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1);

    // A burst turned off while the window is closed: a burst pass stops.
    let closed_window = "window = { days = \"*\", from = \"00:00\", to = \"01:00\" }\n";
    let fixture = Fixture::new(&config(closed_window), NOW);
    enqueue_limited_then_fine(&fixture);
    fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run().assert_code(0);
    let pass = fixture.drainctl(&["drain", "docs", "--trigger", "burst", "--json"]).spawn();
    wait_for_the_wait(&fixture);
    fixture.drainctl(&["burst", "off", "docs"]).run().assert_code(0);
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["status"], "burst_ended", "{}", result.stdout);
}

#[test]
fn a_backoff_cleared_by_the_operator_wakes_a_pass_waiting_for_it() {
    let (fixture, mut pass) = waiting_pass("", &["drain", "docs", "--json"]);
    // The clock stands still: only the cleared backoff can end this wait.
    fixture.drainctl(&["resume", "--group", "docs", "--clear-backoff"]).run().assert_code(0);
    // Before: the pass waited on for the reset, its slot held, while `supervise` skipped
    // the drain as busy with both items available.
    wait_until("the pass to go on", Duration::from_secs(20), || pass.try_wait().unwrap().is_some());
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(
        (result.json()["status"].as_str(), result.json()["items_done"].as_i64()),
        (Some("drained"), Some(2)),
        "{}",
        result.stdout
    );
    assert_eq!(waiting_until(&fixture), None, "the wait is no longer recorded");
}

#[test]
fn a_waiting_pass_goes_on_when_its_file_is_only_rewritten_or_touched() {
    // A configuration tool writes the file again as it was, and another drain is added:
    // nothing this pass goes by changed. Before: the pass ended `rate_limited` at once and
    // the reset waited for was used only by the next supervise.
    let (fixture, pass) = waiting_pass("", &["drain", "docs", "--json"]);
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.write_config_settled(&text);
    fixture
        .write_config_settled(&format!("{text}\n[[drain]]\nname = \"other\"\ncommand = [\"FAKE_WORKER\"]\n"));
    fixture.set_now("2026-11-27T10:00:34Z");
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 2, "{}", result.stdout);
    assert_eq!(result.json()["status"], "drained", "{}", result.stdout);
}

#[test]
fn a_reset_beyond_max_wait_ends_the_pass_as_before() {
    let fixture = Fixture::new(&config("max_wait = \"10s\"\n"), NOW);
    enqueue_limited_then_fine(&fixture);
    let result = fixture.drainctl(&["drain", "docs", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "rate_limited", "{}", result.stdout);
    assert_eq!(fixture.item("docs", "a").0, "pending");
}

#[test]
fn a_pass_whose_time_budget_ends_before_a_near_reset_goes_on_as_a_new_pass_that_waits_for_it() {
    let fixture = Fixture::new(&config("max_seconds_per_pass = \"60s\"\n"), NOW);
    // `a` is limited 30 s into the pass, 40 s before the reset: the pass's budget ends at
    // 10:01:00, the backoff at 10:01:14.
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    let limit = LIMIT.replace("30s", "40s");
    fixture.enqueue(
        "docs",
        &[
            (
                "a".into(),
                json!({ "steps": [{ "if_file": {
                    "path": started,
                    "then": [{ "out": "result a" }],
                    "else": [{ "touch": started }, { "wait_for_file": go }, { "err": limit }, { "exit": 1 }],
                } }] }),
            ),
            ("b".into(), json!({ "steps": [{ "out": "result b" }] })),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--trigger", "supervisor", "--json"]).spawn();
    wait_until("the first worker", Duration::from_secs(30), || started.exists());
    fixture.set_now("2026-11-27T10:00:30Z");
    std::fs::write(&go, "").unwrap();
    // The first run ends, saying why; a new run (fresh budget) waits for the reset.
    wait_for_the_wait(&fixture);
    assert_eq!(waiting_until(&fixture).as_deref(), Some("2026-11-27 10:01:14+00"));
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 2);
    fixture.set_now("2026-11-27T10:01:14Z");
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    let json = result.json();
    assert_eq!((json["status"].as_str(), json["items_done"].as_i64()), (Some("drained"), Some(2)), "{json}");
    let first = &json["previous_runs"][0];
    assert_eq!(first["status"], "rate_limited", "{json}");
    assert!(
        first["note"]
            .as_str()
            .unwrap_or_default()
            .contains("max_seconds_per_pass (1m): a new pass waits for it"),
        "{json}"
    );
    let triggers = fixture.column::<String>("SELECT trigger FROM runs ORDER BY id");
    assert_eq!(triggers, ["supervisor", "supervisor"]);
    let continues = fixture.column::<Option<i64>>(
        "SELECT (data->>'continues_run')::bigint FROM events WHERE kind = 'run_started' ORDER BY id",
    );
    assert_eq!(continues, [None, Some(first["run_id"].as_i64().unwrap_or_default())]);
}

#[test]
fn a_reset_beyond_a_whole_time_budget_ends_the_pass_and_its_note_says_so() {
    // A 40 s wait, a 30 s budget: no pass can wait for it, so a later one picks up the work.
    let fixture = Fixture::new(&config("max_seconds_per_pass = \"30s\"\n"), NOW);
    let limit = LIMIT.replace("30s", "40s");
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "err": limit }, { "exit": 1 }] }))]);
    let result = fixture.drainctl(&["drain", "docs", "--json"]).run();
    result.assert_code(0);
    assert_rate_limited_saying(&result, "max_seconds_per_pass (30s): a later pass picks up the work");
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1);
}

fn supervise_plan(fixture: &Fixture) -> Vec<Value> {
    let result = fixture.drainctl(&["supervise", "--json", "--dry-run"]).run();
    result.assert_code(0);
    result.json()["decisions"].as_array().cloned().unwrap_or_default()
}

#[test]
fn supervise_starts_a_drain_to_wait_for_a_reset_that_comes_before_its_next_pass() {
    // `probe` shares the group and never waits: its hit sets the group's backoff.
    let extra = "quota_group = \"shared\"\n\n[[drain]]\nname = \"probe\"\ncommand = [\"FAKE_WORKER\"]\n\
                 quota_group = \"shared\"\nmax_wait = \"0s\"\n";
    let fixture = Fixture::new(&config(extra), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "result a" }] }))]);
    let (five_minutes, half_an_hour) = (LIMIT.replace("30s", "5m"), LIMIT.replace("30s", "30m"));
    let longer = fixture.path("longer");
    let probe = json!({ "steps": [{ "if_file": {
        "path": longer,
        "then": [{ "err": half_an_hour }, { "exit": 1 }],
        "else": [{ "err": five_minutes }, { "exit": 1 }],
    } }] });
    fixture.enqueue("probe", &[("p".into(), probe)]);
    fixture.drainctl(&["drain", "probe"]).run().assert_code(0);
    // The group backs off until 10:05:30, before the next pass (15 minutes away).
    let plan = supervise_plan(&fixture);
    let docs = plan.iter().find(|d| d["drain"] == "docs").cloned().unwrap_or_default();
    assert_eq!(docs["action"], "start", "{plan:?}");
    assert!(docs["reason"].as_str().unwrap_or_default().contains("waits for the reset"), "{docs}");
    // Said by how far away it is (before: "before the next pass", also when it was not).
    assert!(docs["reason"].as_str().unwrap_or_default().contains("soon enough for a pass to wait"), "{docs}");
    // A reset after the next pass is that pass's business.
    fixture.set_now("2026-11-27T10:06:00Z");
    std::fs::write(&longer, "").unwrap();
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    fixture.drainctl(&["drain", "probe"]).run().assert_code(0);
    fixture.drainctl(&["pause", "probe"]).run().assert_code(0);
    fixture.drainctl(&["resume", "docs"]).run().assert_code(0);
    let plan = supervise_plan(&fixture);
    let docs = plan.iter().find(|d| d["drain"] == "docs").cloned().unwrap_or_default();
    assert_eq!(docs["action"], "skip", "{plan:?}");
    assert!(docs["reason"].as_str().unwrap_or_default().contains("backs off until"), "{docs}");
}

/// A real vendor, not the injected clock: the fake worker's `vendor` step allows 2 calls
/// per 4 s window (windows aligned to the Unix epoch) and answers the third with OpenAI's
/// limit message stating the window's end. One pass of 4 items makes 2 calls, gets one
/// limit answer, waits for the reset (the smallest margin, 2 s, so the wait ends inside
/// the next window) and makes the other 2 calls in that next window.
#[test]
fn one_pass_uses_two_consecutive_windows_with_one_limit_answer_between_them() {
    const WINDOW_SECONDS: u64 = 4;
    let fixture = Fixture::new(
        "[defaults]\ntimezone = \"UTC\"\nreset_margin = \"2s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nquota_profile = \"openai\"\n",
        "2020-01-01T00:00:00Z",
    );
    let state = fixture.path("vendor.state");
    let call = json!({ "steps": [{ "vendor": {
        "state": state, "calls": 2, "window": WINDOW_SECONDS, "shape": "openai",
    } }] });
    fixture.enqueue("docs", &(1..=4).map(|number| (format!("k{number}"), call.clone())).collect::<Vec<_>>());
    // The vendor keeps real time, so the pass starts just after a window begins: its first
    // two calls and the limit answer then fall in one window.
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let next_window = Duration::from_secs((since_epoch.as_secs() / WINDOW_SECONDS + 1) * WINDOW_SECONDS);
    std::thread::sleep(next_window - since_epoch + Duration::from_millis(20));

    let pass = fixture.drainctl(&["drain", "docs"]).env_remove("DRAINCTL_NOW").run();

    pass.assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 4);
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1);
    let windows: Vec<Vec<u64>> = std::fs::read_to_string(&state)
        .unwrap()
        .lines()
        .map(|line| line.split_whitespace().map(|field| field.parse().unwrap()).collect())
        .collect();
    // [window start, calls answered, limit answers] per window.
    assert_eq!(windows.len(), 2, "{windows:?}");
    assert_eq!(windows[1][0], windows[0][0] + WINDOW_SECONDS, "consecutive windows: {windows:?}");
    assert_eq!((windows[0][1], windows[0][2]), (2, 1), "{windows:?}");
    assert_eq!((windows[1][1], windows[1][2]), (2, 0), "{windows:?}");
    assert_eq!(
        fixture.column::<String>("SELECT data->>'rule' FROM events WHERE kind = 'backoff_set'"),
        ["parsed_reset"]
    );
}

#[test]
fn a_waiting_run_frozen_and_judged_hung_by_a_pass_that_died_is_killed_by_the_next() {
    // Waiting for the reset, the pass has no worker; then it is frozen.
    let (fixture, pass) = waiting_pass("liveness_timeout = \"10s\"\n", &["drain", "docs"]);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL"), 0);
    signal(pass.id(), libc::SIGSTOP);
    // Twenty seconds on, its beat is stale: hung. The pass that ends it dies (as pm2's
    // SIGKILL would kill it) before it signals anything.
    fixture.set_now("2026-11-27T10:00:20Z");
    let dying = fixture.drainctl(&["supervise"]).env("DRAINCTL_FAULT", "die_after_ending_run").run();
    assert_ne!(dying.code, 0, "the supervise pass was to die: {}", dying.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'hung'"), 1);
    assert!(pid_alive(pass.id() as i32), "the frozen drain lives on, holding its slot");
    // The next pass finishes the kill, and the pass after finds nothing left. (Paused, so
    // that neither starts the drain again: it would wait for a reset the test's clock
    // never reaches, and outlive the test.)
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    wait_until("the drain to be killed", Duration::from_secs(10), || !pid_alive(pass.id() as i32));
    let _ = finished(pass.wait_with_output().unwrap());
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_processes_killed'"), 1);
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_processes_killed'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE kill_unconfirmed"), 0);
}

#[test]
fn supervise_does_not_start_a_pass_to_wait_for_a_reset_after_the_window_closes() {
    let window = "window = { days = \"daily\", from = \"08:00\", to = \"12:00\" }\n";
    let fixture = Fixture::new(&config(&format!("{window}max_wait = \"0s\"\n")), "2026-11-27T11:40:00Z");
    let limit =
        json!({ "steps": [{ "out": "You've hit your session limit · resets 12pm (UTC)" }, { "exit": 1 }] });
    fixture.enqueue("docs", &[("a".into(), limit)]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    assert_eq!(fixture.backoff_until("docs"), "2026-11-27T12:01:00Z");
    // A pass may wait for a reset now (the default max_wait).
    fixture.write_config(&config(window));
    fixture.set_now("2026-11-27T11:50:00Z");
    // Before: started to wait for 12:01, it held its slot until the window closed at 12:00.
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    assert_eq!(plan["decisions"][0]["action"], "skip", "{plan}");
    let reason = plan["decisions"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("after window daily 08:00-12:00 closes at"), "{reason}");
    // A reset before it closes is waited for.
    fixture
        .client()
        .execute("UPDATE quota_backoffs SET backoff_until = '2026-11-27T11:55:00Z'", &[])
        .unwrap();
    fixture.set_now("2026-11-27T11:50:00Z");
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    assert_eq!(plan["decisions"][0]["action"], "start", "{plan}");
}

#[test]
fn a_supervise_pass_does_not_wait_for_a_reset_at_or_after_its_windows_close() {
    // 09:59:50 in a window that closes at 10:00; the limit resets at 10:00:23. Before: the
    // pass waited, holding the drain's slot, until the window closed and took nothing
    // (here, with the clock held, for ever), while `status` said "reset in 33s".
    let fixture = Fixture::new(
        &config("window = { days = \"daily\", from = \"09:00\", to = \"10:00\" }\n"),
        "2026-11-27T09:59:50Z",
    );
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "err": LIMIT }, { "exit": 1 }] }))]);
    let mut pass = fixture.drainctl(&["drain", "docs", "--trigger", "supervisor", "--json"]).spawn();
    let ended = (0..1500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        pass.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = pass.kill();
    }
    let result = finished(pass.wait_with_output().unwrap());
    assert!(ended, "the pass waited for a reset after its window's close: {}", result.stderr);
    result.assert_code(0);
    assert_rate_limited_saying(&result, "the backoff (the reset and its margin) ends at or after the window's close (Fri 2026-11-27 10:00 UTC): the pass does not hold its slot until then");
    assert_eq!(waiting_until(&fixture), None);
    // The item waits, pending, for a later pass.
    let items = fixture.count("SELECT count(*) FROM items WHERE state = 'pending'");
    assert_eq!(items, 1);
}
