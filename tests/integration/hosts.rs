//! Several hosts against one database: each `supervise` probes and signals only its own
//! host's processes (same host name, boot and PID namespace), recovers another host's
//! hung run by liveness alone, and a host that dies mid-pass loses no item. The other
//! host is a real process in its own UTS and PID namespaces.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// Thursday 2026-11-26 23:00 in Jerusalem (UTC+2): inside `sun-thu 22:00-06:00`.
const INSIDE: &str = "2026-11-26T21:00:00Z";
/// 16 minutes later: past `liveness_timeout`.
const LATER: &str = "2026-11-26T21:16:00Z";

fn config() -> String {
    "[defaults]\ntimezone = \"Asia/Jerusalem\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
     [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nliveness_timeout = \"15m\"\nitem_timeout = \"1h\"\n\
     window = { days = \"sun-thu\", from = \"22:00\", to = \"06:00\" }\n"
        .to_string()
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

fn supervise(fixture: &Fixture) -> Vec<Value> {
    let result = fixture.drainctl(&["supervise", "--json"]).run();
    result.assert_code(0);
    result.json()["decisions"].as_array().cloned().unwrap_or_default()
}

fn actions(decisions: &[Value]) -> Vec<String> {
    decisions.iter().map(|d| d["action"].as_str().unwrap_or_default().to_string()).collect()
}

/// Items `a` (waits for `go`, then answers) and `b` (answers at once); returns `go`.
fn enqueue_waiting_item(fixture: &Fixture) -> std::path::PathBuf {
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    fixture.enqueue(
        "docs",
        &[
            (
                "a".into(),
                json!({ "steps": [{ "touch": started }, { "wait_for_file": go }, { "out": "result a" }] }),
            ),
            ("b".into(), json!({ "steps": [{ "out": "result b" }] })),
        ],
    );
    go
}

/// A fixture with [`enqueue_waiting_item`] done, or None (with the reason printed) when
/// this machine cannot run a second host.
fn fixture_for_two_hosts() -> Option<(Fixture, std::path::PathBuf)> {
    if !can_use_another_host() {
        eprintln!("skipped: this machine cannot create UTS and PID namespaces (unshare)");
        return None;
    }
    let fixture = Fixture::new(&config(), INSIDE);
    let go = enqueue_waiting_item(&fixture);
    Some((fixture, go))
}

/// A pass of host-b starts `a`; then the whole of host-b goes at once: its drain and its
/// worker.
fn host_b_dies_working_on_a(fixture: &Fixture) {
    let other = fixture.drainctl_on_host("host-b", true, &["drain", "docs"]).spawn();
    wait_for_a_to_start(fixture);
    signal(other.id(), libc::SIGKILL);
    let _ = other.wait_with_output();
}

fn wait_for_a_to_start(fixture: &Fixture) {
    let started = fixture.path("started");
    wait_until("a's worker to start", Duration::from_secs(30), || started.exists());
}

#[test]
fn a_drain_in_another_pid_namespace_under_the_same_host_name_is_not_reaped_while_alive() {
    let Some((fixture, go)) = fixture_for_two_hosts() else { return };
    let container = fixture.drainctl_on_host(&this_host(), true, &["drain", "docs"]).spawn();
    wait_for_a_to_start(&fixture);
    // Its pid means nothing in this PID namespace: it must not be probed, let alone reaped.
    let plan = supervise(&fixture);
    assert!(!actions(&plan).contains(&"reap_crashed".to_string()), "{plan:?}");
    assert_eq!(fixture.column::<String>("SELECT status FROM runs"), vec!["running".to_string()]);
    std::fs::write(&go, "").unwrap();
    finished(container.wait_with_output().unwrap()).assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 2);
}

#[test]
fn a_supervise_never_signals_another_hosts_drain_and_recovers_its_hung_run_by_liveness() {
    let Some((fixture, go)) = fixture_for_two_hosts() else { return };
    let other = fixture.drainctl_on_host("host-b", true, &["drain", "docs"]).spawn();
    wait_for_a_to_start(&fixture);
    // Within liveness_timeout: another host's run is left alone.
    let plan = supervise(&fixture);
    assert!(!actions(&plan).iter().any(|a| a == "reap_crashed" || a == "kill_hung"), "{plan:?}");
    // Past it: judged hung by liveness alone, its item released, and nothing signalled.
    fixture.set_now(LATER);
    let plan = supervise(&fixture);
    assert!(actions(&plan).contains(&"kill_hung".to_string()), "{plan:?}");
    assert!(pid_alive(other.id() as i32), "host-b's drain must not have been signalled");
    assert_eq!(
        fixture.column::<String>("SELECT status FROM runs ORDER BY id LIMIT 1"),
        vec!["hung".to_string()]
    );
    // Its slot, still held there, is named as such: before, "all 1 concurrency slot(s)
    // busy" beside a drain `status` called idle with nothing to say why.
    let skip = plan.iter().find(|d| d["action"] == "skip").cloned().unwrap_or_default();
    assert!(
        skip["reason"].as_str().unwrap_or_default().starts_with(
            "all 1 concurrency slot(s) busy (1 held by a pass whose run was ended, hung, but whose drain still runs"
        ),
        "{plan:?}"
    );
    let status = fixture.drainctl(&["status"]).run();
    assert!(
        status.stdout.contains(
            "docs   idle   2        0        0     0     hung now  1 slot(s) held by a hung run's live drain"
        ),
        "{}",
        status.stdout
    );
    assert_eq!(
        fixture.drainctl(&["status", "--json"]).run().json()["drains"][0]["slots_held_without_run"],
        1
    );

    // host-b's drain, fenced, commits nothing once its worker answers.
    std::fs::write(&go, "").unwrap();
    let result = finished(other.wait_with_output().unwrap());
    result.assert_code(75);
    // Its concurrency slot is free once it has gone: the next pass starts a drain here.
    supervise(&fixture);
    wait_until("this host's drain to finish both items", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE state = 'done'") == 2
    });
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'done'"), 2);
    let hosts = fixture.column::<String>(
        "SELECT DISTINCT r.host FROM attempts a JOIN runs r ON r.id = a.run_id WHERE a.outcome = 'done'",
    );
    assert_eq!(hosts, vec![this_host()]);
    // `runs` names the host of each run once runs of two hosts are listed.
    let runs = fixture.drainctl(&["runs"]).run();
    assert!(runs.stdout.starts_with("ID  DRAIN  HOST"), "{}", runs.stdout);
    assert!(runs.stdout.contains("host-b") && runs.stdout.contains(&this_host()), "{}", runs.stdout);
}

#[test]
fn a_host_that_dies_mid_pass_loses_no_item() {
    let Some((fixture, go)) = fixture_for_two_hosts() else { return };
    host_b_dies_working_on_a(&fixture);
    assert_eq!(fixture.column::<String>("SELECT status FROM runs"), vec!["running".to_string()]);
    std::fs::write(&go, "").unwrap();
    fixture.set_now(LATER);
    let plan = supervise(&fixture);
    let actions = actions(&plan);
    assert!(actions.contains(&"kill_hung".to_string()) && actions.contains(&"start".to_string()), "{plan:?}");
    wait_until("this host's drain to finish both items", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE state = 'done'") == 2
    });
    let results = fixture.column::<Vec<u8>>("SELECT result FROM items ORDER BY key");
    assert_eq!(results, vec![b"result a\n".to_vec(), b"result b\n".to_vec()]);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'done'"), 2);
}

#[test]
fn a_run_of_a_dead_host_whose_drain_this_configuration_lacks_is_said_to_be_that_hosts() {
    let Some((fixture, go)) = fixture_for_two_hosts() else { return };
    host_b_dies_working_on_a(&fixture);
    std::fs::write(&go, "").unwrap();
    // This host's configuration no longer has the drain.
    fixture.write_config(
        "[defaults]\ntimezone = \"Asia/Jerusalem\"\nlog_dir = \"TMPDIR/logs\"\n\n[[drain]]\nname = \"other\"\ncommand = [\"FAKE_WORKER\"]\n",
    );
    fixture.set_now(LATER);
    // Before: "its pass still running ends before its next item, as it reads the file
    // again" — of a pass dead on another host, which nothing here would ever end.
    for args in [&["status"][..], &["doctor"]] {
        let result = fixture.drainctl(args).run();
        assert!(
            result.stdout.contains(
                "drain docs has 1 pending, 1 running item(s) in the database and no [[drain]] table in this host's \
                 configuration, but host host-b ran it within the last day: its configuration has the drain, and \
                 this host's may be out of date — a run of it on host host-b is that host's, and should that host \
                 be gone, only a `supervise` whose configuration has the drain ends it; this host runs none of its \
                 items (to retire the drain, remove its table from every host's configuration first)"
            ),
            "{args:?}: {}",
            result.stdout
        );
        assert!(!result.stdout.contains("its pass still running"), "{}", result.stdout);
        // Before: "nothing runs them" and the `discard --all` that would delete the backlog
        // another host runs.
        assert!(!result.stdout.contains("discard"), "{}", result.stdout);
    }
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    assert_eq!(status["unconfigured_drains"][0]["running_elsewhere"], json!(["host-b"]));
    assert_eq!(status["unconfigured_drains"][0]["started_elsewhere"], json!(["host-b"]));
    assert_eq!(status["unconfigured_drains"][0]["running_passes"], json!(0));
    // Its run over, host b's start still says its configuration has the drain; a day on,
    // it no longer does.
    fixture.client().batch_execute("UPDATE runs SET status = 'drained', finished_at = started_at").unwrap();
    let status = fixture.drainctl(&["status"]).run();
    assert!(status.stdout.contains("but host host-b ran it within the last day"), "{}", status.stdout);
    fixture.set_now("2026-11-27T21:17:00Z");
    let status = fixture.drainctl(&["status"]).run();
    assert!(status.stdout.contains("nothing runs them until a [[drain]] table"), "{}", status.stdout);
}

#[test]
fn a_supervise_whose_clock_runs_ahead_does_not_end_the_operators_burst_early() {
    let fixture = Fixture::new(&config(), INSIDE);
    let server_now: chrono::DateTime<chrono::Utc> =
        fixture.client().query_one("SELECT now()", &[]).unwrap().get(0);
    let at = |hours: i64| (server_now + chrono::Duration::hours(hours)).to_rfc3339();
    fixture.set_now(&at(0));
    fixture.drainctl(&["burst", "on", "docs", "--until", &at(2)]).run().assert_code(0);
    // This host's clock (compared with the server's as if it were its own) runs 3 hours
    // ahead: past the deadline by it, an hour before it by the server's.
    fixture.set_now(&at(3));
    let result = fixture.drainctl(&["supervise", "--json"]).env("DRAINCTL_TEST_CLOCK_AS_OWN", "1").run();
    result.assert_code(0);
    let decisions = result.json()["decisions"].as_array().cloned().unwrap_or_default();
    // Before: expired, for every host, with a `burst_expired` sent.
    assert!(!actions(&decisions).contains(&"expire_burst".to_string()), "{decisions:?}");
    assert!(
        decisions.iter().filter_map(|d| d["reason"].as_str()).any(|reason| reason.contains(
            "ahead of the database server's: the burst is left on until the server's clock passes it"
        )),
        "{decisions:?}"
    );
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE burst_until IS NOT NULL"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'burst_expired'"), 0);
    // `burst status` and `burst off` on this host judge it by the server's clock too
    // (before: "expired 58m ago", and `burst off` recorded a false `burst_expired`).
    let as_own = |args: &[&str]| fixture.drainctl(args).env("DRAINCTL_TEST_CLOCK_AS_OWN", "1").run();
    let status = as_own(&["burst", "status", "docs", "--json"]);
    assert_eq!(status.json()["bursts"][0]["active"], true, "{}", status.stdout);
    let off = as_own(&["burst", "off", "docs", "--json"]);
    off.assert_code(0);
    assert!(off.json()["was_until"].is_string(), "{}", off.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'burst_expired'"), 0);
    // A clock that is right (an injected one is taken as right) ends one.
    fixture.set_now(&at(0));
    fixture.drainctl(&["burst", "on", "docs", "--until", &at(2)]).run().assert_code(0);
    fixture.set_now(&at(3));
    let plan = supervise(&fixture);
    assert!(actions(&plan).contains(&"expire_burst".to_string()), "{plan:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE burst_until IS NOT NULL"), 0);
}

#[test]
fn a_backoff_cleared_from_a_host_whose_clock_runs_ahead_is_said_and_recorded() {
    let fixture = Fixture::new(&config(), INSIDE);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let server_now: chrono::DateTime<chrono::Utc> =
        fixture.client().query_one("SELECT now()", &[]).unwrap().get(0);
    let backoff_until = server_now + chrono::Duration::hours(1);
    fixture
        .client()
        .execute(
            "INSERT INTO quota_backoffs (quota_group, account, backoff_until, reason, rule, updated_at)
             VALUES ('docs', '', $1, 'usage limit reached', 'parsed_reset', $2)",
            &[&backoff_until, &server_now],
        )
        .unwrap();
    // This host's clock runs 3 hours ahead: past the backoff by it, not by the server's.
    fixture.set_now(&(server_now + chrono::Duration::hours(3)).to_rfc3339());
    let resumed = fixture
        .drainctl(&["resume", "--group", "docs", "--clear-backoff", "--json"])
        .env("DRAINCTL_TEST_CLOCK_AS_OWN", "1")
        .run();
    resumed.assert_code(0);
    // Before: `"cleared_backoffs": []` and no event, for a backoff it did clear.
    assert_eq!(resumed.json()["cleared_backoffs"], json!([""]), "{}", resumed.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_cleared'"), 1);
}

#[test]
fn a_supervise_whose_clock_is_off_does_not_judge_another_hosts_run_hung() {
    let Some((fixture, go)) = fixture_for_two_hosts() else { return };
    let other = fixture.drainctl_on_host("host-b", true, &["drain", "docs"]).spawn();
    wait_for_a_to_start(&fixture);
    // This host's clock (here LATER, compared with the server's as if it were this host's
    // own, days away from it) reads host-b's run as 16 minutes silent. Before: judged hung,
    // its item run a second time on this host while host-b's worker still ran it.
    fixture.set_now(LATER);
    let result = fixture.drainctl(&["supervise", "--json"]).env("DRAINCTL_TEST_CLOCK_AS_OWN", "1").run();
    result.assert_code(0);
    let decisions = result.json()["decisions"].as_array().cloned().unwrap_or_default();
    assert!(!actions(&decisions).contains(&"kill_hung".to_string()), "{decisions:?}");
    let not_judged = decisions
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .find(|reason| reason.contains("of host host-b: silent for 16m"))
        .unwrap_or_default();
    assert!(
        not_judged.contains("by this host's clock, which is ")
            && not_judged
                .contains(" behind the database server's: not judged hung until this clock is set right"),
        "{decisions:?}"
    );
    assert_eq!(fixture.column::<String>("SELECT status FROM runs"), vec!["running".to_string()]);
    // With the clock right (an injected one is taken as right), the same silence is hung.
    let plan = supervise(&fixture);
    assert!(actions(&plan).contains(&"kill_hung".to_string()), "{plan:?}");
    std::fs::write(&go, "").unwrap();
    let _ = other.wait_with_output();
}
