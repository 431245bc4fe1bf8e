//! Priority within a quota group: when the group's quota returns, the drain that ranks
//! highest — in burst before every drain that is not, then by `priority` — gets it; a
//! lower-ranking pass yields (claims nothing) while that drain works and has items, and
//! takes over when it has none. Equal ranks share the group as before
//! (docs/rate-limits.md, "Priority within a group").
//!
//! Two drains, `low` and `high`, share the quota group `shared`, each with one slot
//! (`concurrency = 1`). `low`'s first item gets a limit answer stating a reset 30 s
//! ahead; `low`'s pass waits for it, `high`'s pass is started and waits for the same
//! reset; then the injected clock moves past the reset and both wake.

use std::process::Child;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";
/// Past the reset the limit answer states (10:00:30, plus a 3 s margin).
const AFTER_RESET: &str = "2026-11-27T10:00:34Z";
const LIMIT: &str = r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Rate limited. Please try again in 30s."}}"#;

fn config(low: &str, high: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"low\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\n{low}\n\n\
         [[drain]]\nname = \"high\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\n{high}\n"
    )
}

/// An item that logs its start, then works for a second.
fn item(fixture: &Fixture) -> Value {
    json!({ "steps": [{ "log": fixture.path("log") }, { "sleep": 1.0 }, { "out": "done" }] })
}

/// `low` gets `l0` (a limit answer on its first call, fine after), `l1`, `l2`; `high`
/// gets `h1` to `h3`.
fn enqueue(fixture: &Fixture) {
    let marker = fixture.path("limited-once");
    let limited_once = json!({ "steps": [
        { "log": fixture.path("log") },
        { "if_file": {
            "path": marker,
            "then": [{ "sleep": 1.0 }, { "out": "done" }],
            "else": [{ "touch": marker }, { "err": LIMIT }, { "exit": 1 }],
        } },
    ] });
    let work = item(fixture);
    fixture.enqueue(
        "low",
        &[("l0".into(), limited_once), ("l1".into(), work.clone()), ("l2".into(), work.clone())],
    );
    fixture.enqueue("high", &[("h1".into(), work.clone()), ("h2".into(), work.clone()), ("h3".into(), work)]);
}

fn waiting_runs(fixture: &Fixture) -> i64 {
    fixture.count("SELECT count(*) FROM runs WHERE status = 'running' AND waiting_until IS NOT NULL")
}

/// Both passes waiting for the same reset, then the clock past it; returns when both
/// passes ended, with the keys in the order their workers started after the reset.
fn both_wait_then_reset(fixture: &Fixture) -> Vec<String> {
    let low = fixture.drainctl(&["drain", "low", "--json"]).spawn();
    wait_until("low to wait for the reset", Duration::from_secs(30), || waiting_runs(fixture) == 1);
    let high = fixture.drainctl(&["drain", "high", "--json"]).spawn();
    wait_until("high to wait for the same reset", Duration::from_secs(30), || waiting_runs(fixture) == 2);
    fixture.set_now(AFTER_RESET);
    for (name, pass) in [("low", low), ("high", high)] {
        let result = ended(pass);
        result.assert_code(0);
        assert_eq!(result.json()["status"], "drained", "{name}: {}", result.stdout);
    }
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 6);
    let started = started_keys(fixture);
    // The first start was l0's limit answer, before the reset.
    assert_eq!(started.first().map(String::as_str), Some("l0"), "{started:?}");
    started[1..].to_vec()
}

fn ended(pass: Child) -> Finished {
    finished(pass.wait_with_output().unwrap())
}

/// The item keys in the order their workers started (the fake worker's `log` lines).
fn started_keys(fixture: &Fixture) -> Vec<String> {
    std::fs::read_to_string(fixture.path("log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().find_map(|field| field.strip_prefix("key=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn after_a_reset_the_higher_priority_drain_s_items_are_worked_first() {
    let fixture = Fixture::new(&config("", "priority = 5"), NOW);
    enqueue(&fixture);
    let order = both_wait_then_reset(&fixture);
    // high's three items first; low yields, then takes over with its own.
    assert_eq!(&order[..3], ["h1", "h2", "h3"], "{order:?}");
    let mut rest = order[3..].to_vec();
    rest.sort();
    assert_eq!(rest, ["l0", "l1", "l2"], "{order:?}");
}

#[test]
fn sigterm_while_a_lower_drain_waits_its_turn_to_start_names_the_start_left_out() {
    let fixture = Fixture::new(&config("", "priority = 5"), NOW);
    enqueue(&fixture);
    // `high` is slow to record its run: the pass waits for it before it starts `low`.
    let pass =
        fixture.drainctl(&["supervise", "--json"]).env("DRAINCTL_FAULT", "slow_run_start:high").spawn();
    wait_until("high to be started", Duration::from_secs(20), || {
        fixture.path("logs/high").read_dir().is_ok_and(|mut entries| entries.next().is_some())
    });
    signal(pass.id(), libc::SIGTERM);
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    let low = fixture.column::<serde_json::Value>(
        "SELECT d FROM supervisor_passes, jsonb_array_elements(decisions) d WHERE d->>'drain' = 'low'",
    );
    assert_eq!(low[0]["error"], "not applied: the pass was interrupted by SIGTERM", "{low:?}");
    // Before: "before it pruned old history and wrote the metrics textfile", as if every
    // drain had been started.
    assert!(
        result
            .stderr
            .contains("pass interrupted by SIGTERM before it started every drain and pruned old history;"),
        "{}",
        result.stderr
    );
    // Its decisions are printed all the same (before: nothing on stdout).
    let started: Vec<serde_json::Value> = result.json()["decisions"].as_array().cloned().unwrap_or_default();
    assert!(started.iter().any(|d| d["drain"] == "high" && d["action"] == "start"), "{}", result.stdout);
    wait_until("high's pass to record its run", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM runs WHERE drain = 'high'") == 1
    });
}

#[test]
fn a_drain_in_burst_beats_a_higher_priority() {
    let fixture = Fixture::new(&config("", "priority = 5"), NOW);
    enqueue(&fixture);
    fixture.drainctl(&["burst", "on", "low", "--until", "+2h"]).run().assert_code(0);
    let order = both_wait_then_reset(&fixture);
    let mut first = order[..3].to_vec();
    first.sort();
    assert_eq!(first, ["l0", "l1", "l2"], "{order:?}");
    assert_eq!(&order[3..], ["h1", "h2", "h3"], "{order:?}");
}

#[test]
fn equal_priorities_share_the_group_as_before() {
    // Both at 3: nobody yields, by name or otherwise; the two passes work side by side.
    let fixture = Fixture::new(&config("priority = 3", "priority = 3"), NOW);
    enqueue(&fixture);
    let order = both_wait_then_reset(&fixture);
    let first_low = order.iter().position(|key| key.starts_with('l')).unwrap();
    let last_high = order.iter().rposition(|key| key.starts_with('h')).unwrap();
    assert!(first_low < last_high, "the drains did not share the group: {order:?}");
}

#[test]
fn supervise_starts_the_higher_priority_first_and_status_shows_the_priority() {
    let fixture = Fixture::new(&config("", "priority = 5"), NOW);
    enqueue(&fixture);
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run();
    plan.assert_code(0);
    let decisions = plan.json()["decisions"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = decisions.iter().filter_map(|d| d["drain"].as_str()).collect();
    assert_eq!(names, ["high", "low"], "{decisions:?}");
    assert!(decisions.iter().all(|d| d["action"] == "start"), "{decisions:?}");
    let low_reason = decisions[1]["reason"].as_str().unwrap_or_default();
    assert!(
        low_reason.contains("drain high has priority 5 (this drain 0) in quota group shared: it yields"),
        "{low_reason}"
    );

    let status = fixture.drainctl(&["status", "--json"]).run();
    status.assert_code(0);
    let json = status.json();
    crate::operator::assert_documented("drainctl status", &json);
    let priority = |name: &str| {
        json["drains"].as_array().unwrap().iter().find(|d| d["drain"] == name).map(|d| d["priority"].clone())
    };
    assert_eq!((priority("high"), priority("low")), (Some(json!(5)), Some(json!(0))), "{json}");
    let text = fixture.drainctl(&["status"]).run();
    assert!(text.stdout.contains("priority 5 in quota group shared"), "{}", text.stdout);
    assert_eq!(text.stdout.matches("priority ").count(), 1, "priority 0 is not shown: {}", text.stdout);
}

#[test]
fn started_by_one_supervise_pass_the_lower_drain_never_takes_the_first_items() {
    let fixture = Fixture::new(&config("", "priority = 5"), NOW);
    let work = item(&fixture);
    fixture.enqueue("low", &[("l1".into(), work.clone()), ("l2".into(), work.clone())]);
    fixture.enqueue("high", &[("h1".into(), work.clone()), ("h2".into(), work)]);
    // high is slow to record its run (as on a loaded host). Before: both were started at
    // once, and low's first claim came before high's run existed.
    fixture.drainctl(&["supervise"]).env("DRAINCTL_FAULT", "slow_run_start:high").run().assert_code(0);
    wait_until("every item done", Duration::from_secs(60), || {
        fixture.count("SELECT count(*) FROM items WHERE state = 'done'") == 4
    });
    let order = started_keys(&fixture);
    assert_eq!(&order[..2], ["h1", "h2"], "{order:?}");
}

#[test]
fn a_priority_out_of_range_is_refused_naming_the_value() {
    let fixture = Fixture::new(&config("priority = 5000", ""), NOW);
    let result = fixture.drainctl(&["status"]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("drain \"low\": priority: 5000 is out of range; use -1000 to 1000"),
        "{}",
        result.stderr
    );
    assert_eq!(result.stderr.trim().lines().count(), 1, "{}", result.stderr);
}

#[test]
fn a_pass_yields_to_a_working_higher_priority_drain_and_ends_after_max_wait() {
    let fixture = Fixture::new(&config("max_wait = \"0s\"", "priority = 5"), NOW);
    let gate = fixture.path("gate");
    let held = json!({ "steps": [{ "wait_for_file": gate }, { "out": "done" }] });
    fixture.enqueue("high", &[("h1".into(), held), ("h2".into(), json!("fine"))]);
    fixture.enqueue("low", &[("l1".into(), json!("fine"))]);
    let high = fixture.drainctl(&["drain", "high", "--json"]).spawn();
    wait_until("high to work on h1", Duration::from_secs(30), || fixture.item("high", "h1").0 == "running");
    // high works and has h2 waiting: low claims nothing, and with max_wait 0s ends at once.
    let low = fixture.drainctl(&["drain", "low", "--json"]).run();
    low.assert_code(0);
    assert_eq!(low.json()["status"], "drained", "{}", low.stdout);
    assert_eq!(
        low.json()["note"],
        "drain high of quota group shared has priority 5 (this drain 0) and has items: this pass yields to it"
    );
    assert_eq!(fixture.item("low", "l1"), ("pending".to_string(), 0, None));
    std::fs::write(&gate, "").unwrap();
    ended(high).assert_code(0);
    // high has nothing left: low works.
    let low = fixture.drainctl(&["drain", "low", "--json"]).run();
    assert_eq!(low.json()["items_done"], 1, "{}", low.stdout);
}

#[test]
fn a_pass_yielding_to_a_higher_priority_drain_cannot_work_by_the_metrics_until_it_claims() {
    let fixture = Fixture::new(&config("max_wait = \"5m\"", "priority = 5"), NOW);
    let (gate, gate_low) = (fixture.path("gate"), fixture.path("gate-low"));
    let held = json!({ "steps": [{ "wait_for_file": gate }, { "out": "done" }] });
    fixture.enqueue("high", &[("h1".into(), held), ("h2".into(), json!("fine"))]);
    let held_low = json!({ "steps": [{ "wait_for_file": gate_low }, { "out": "done" }] });
    fixture.enqueue("low", &[("l1".into(), held_low)]);
    let can_work = |drain: &str| -> String {
        let metrics = fixture.drainctl(&["metrics"]).run();
        metrics.assert_code(0);
        let series = format!("drainctl_can_work{{drain=\"{drain}\"}} ");
        metrics.stdout.lines().find_map(|line| line.strip_prefix(&series)).unwrap_or_default().to_string()
    };
    let high = fixture.drainctl(&["drain", "high", "--json"]).spawn();
    wait_until("high to work on h1", Duration::from_secs(30), || fixture.item("high", "h1").0 == "running");
    let low = fixture.drainctl(&["drain", "low", "--json"]).spawn();
    wait_until("low to yield", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE drain = 'low' AND status = 'running' AND waiting_reason IS NOT NULL")
            == 1
    });
    // Before: 1, as for any running pass — a drain yielding for hours paged "stalled".
    assert_eq!((can_work("low"), can_work("high")), ("0".to_string(), "1".to_string()));
    // status says so too (before: `running`, nothing about the wait).
    let yielding = |status: &serde_json::Value| {
        status["drains"].as_array().unwrap().iter().find(|d| d["drain"] == "low").unwrap()["yielding"].clone()
    };
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    let why = yielding(&status);
    assert!(why.as_str().unwrap_or_default().contains("drain high of quota group"), "{status}");
    assert!(fixture.drainctl(&["status"]).run().stdout.contains("yields: drain high of quota group"));
    std::fs::write(&gate, "").unwrap();
    ended(high).assert_code(0);
    wait_until("low to work on l1", Duration::from_secs(30), || fixture.item("low", "l1").0 == "running");
    assert_eq!(can_work("low"), "1", "it works: the wait it recorded ended");
    assert_eq!(yielding(&fixture.drainctl(&["status", "--json"]).run().json()), serde_json::Value::Null);
    std::fs::write(&gate_low, "").unwrap();
    assert_eq!(ended(low).json()["items_done"], 1);
}

#[test]
fn an_item_that_met_a_limit_three_times_in_a_row_does_not_make_a_lower_drain_yield() {
    // A higher drain whose only items left keep reading as a limit (poison items) took the
    // first call of every window, and the lower drain, yielding to it, never ran: no
    // success between the hits, so they were never charged, and the group's quota went
    // unused. An item that met a window's end once or twice (claimed ahead into a spent
    // window) is still the higher drain's.
    // (Never charged here, as in a group where nothing succeeds between its hits.)
    let high = "priority = 5\nmax_wait = \"0s\"\npoison_after = 0";
    let fixture = Fixture::new(&config("max_wait = \"0s\"", high), NOW);
    fixture.enqueue("high", &[("p".into(), json!({ "steps": [{ "err": LIMIT }, { "exit": 1 }] }))]);
    fixture.enqueue("low", &[("l1".into(), json!("fine")), ("l2".into(), json!("fine"))]);
    let gate = fixture.path("gate");
    let held = || json!({ "steps": [{ "wait_for_file": gate }, { "out": "done" }] });
    // high works on another item while p waits its turn (available at `p_at`); low then
    // claims at `low_at` and does `low_done` items.
    let round = |key: &str, p_at: &str, low_at: &str, low_done: i64| {
        fixture.enqueue("high", &[(key.into(), held())]);
        fixture
            .client()
            .execute("UPDATE items SET available_at = $1::text::timestamptz WHERE key = 'p'", &[&p_at])
            .unwrap();
        let high = fixture.drainctl(&["drain", "high", "--json"]).spawn();
        wait_until("high to work", Duration::from_secs(30), || fixture.item("high", key).0 == "running");
        fixture.set_now(low_at);
        let low = fixture.drainctl(&["drain", "low", "--json"]).run();
        low.assert_code(0);
        assert_eq!(low.json()["items_done"], low_done, "{}", low.stdout);
        std::fs::write(&gate, "").unwrap();
        // high's pass then meets p's limit (again).
        ended(high).assert_code(0);
        std::fs::remove_file(&gate).unwrap();
    };
    fixture.drainctl(&["drain", "high"]).run().assert_code(0);
    assert_eq!(fixture.item("high", "p").0, "pending");
    fixture.set_now("2026-11-27T10:00:40Z");
    round("h1", "2026-11-27T10:00:45Z", "2026-11-27T10:00:50Z", 0);
    fixture.set_now("2026-11-27T10:02:00Z");
    round("h2", "2026-11-27T10:02:05Z", "2026-11-27T10:02:10Z", 0);
    // Three times in a row now, where nothing else met a limit. Before, low yielded here.
    fixture.set_now("2026-11-27T10:04:00Z");
    round("h3", "2026-11-27T10:04:05Z", "2026-11-27T10:04:10Z", 2);
}

#[test]
fn an_item_claimed_ahead_goes_back_when_a_higher_priority_drain_has_work_as_its_worker_ends() {
    let fixture = Fixture::new(&config("max_wait = \"0s\"", "priority = 5"), NOW);
    let (low_gate, high_gate, log) =
        (fixture.path("low-gate"), fixture.path("high-gate"), fixture.path("log"));
    let logged = |then: Value| json!({ "steps": [{ "log": log }, then, { "out": "done" }] });
    fixture.enqueue(
        "low",
        &[
            ("l0".into(), logged(json!({ "sleep": 0.0 }))),
            ("l1".into(), logged(json!({ "wait_for_file": low_gate }))),
            ("l2".into(), logged(json!({ "sleep": 0.0 }))),
        ],
    );
    // Every worker counts as quick: l2 is claimed while l1 runs.
    let low =
        fixture.drainctl(&["drain", "low", "--json"]).env("DRAINCTL_CLAIM_AHEAD_BELOW_MS", "600000").spawn();
    wait_until("l2 to be claimed ahead while l1 runs", Duration::from_secs(30), || {
        fixture.item("low", "l1").0 == "running" && fixture.item("low", "l2").0 == "running"
    });
    // Meanwhile high starts working, with more items waiting.
    fixture.enqueue(
        "high",
        &[("h1".into(), logged(json!({ "wait_for_file": high_gate }))), ("h2".into(), json!("fine"))],
    );
    let high = fixture.drainctl(&["drain", "high", "--json"]).spawn();
    wait_until("high to work on h1", Duration::from_secs(30), || fixture.item("high", "h1").0 == "running");
    std::fs::write(&low_gate, "").unwrap();
    let low = ended(low);
    low.assert_code(0);
    assert_eq!(low.json()["items_done"], 2, "{}", low.stdout);
    assert!(
        low.json()["note"].as_str().unwrap_or_default().contains("this pass yields to it"),
        "{}",
        low.stdout
    );
    // l2 never ran: back to pending, its attempt refunded and recorded as not started.
    assert_eq!(fixture.item("low", "l2"), ("pending".to_string(), 0, None));
    let attempts: Vec<(String, String)> = fixture
        .client()
        .query(
            "SELECT a.outcome, coalesce(a.error, '') FROM attempts a JOIN items i ON i.id = a.item_id
              WHERE i.key = 'l2'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        attempts,
        [("not_started".to_string(), "claimed ahead; drain high of the group ranks higher".to_string())]
    );
    assert!(!started_keys(&fixture).contains(&"l2".to_string()), "{:?}", started_keys(&fixture));
    std::fs::write(&high_gate, "").unwrap();
    ended(high).assert_code(0);
}
