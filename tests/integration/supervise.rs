//! `supervise`, `burst`, `pause`/`resume` and `status` with an injected clock and real
//! processes.

use std::time::Duration;

use serde_json::{json, Value};

use crate::operator::assert_documented;
use crate::support::*;

use crate::support::windowed::{config, INSIDE, OUTSIDE};

fn decisions(fixture: &Fixture, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["supervise", "--json"];
    all.extend_from_slice(args);
    let result = fixture.drainctl(&all).run();
    result.assert_code(0);
    result.json()["decisions"].as_array().cloned().unwrap_or_default()
}

fn action_for<'a>(decisions: &'a [Value], drain: &str, action: &str) -> Option<&'a Value> {
    decisions.iter().find(|d| d["drain"] == drain && d["action"] == action)
}

fn start_reason(decisions: &[Value]) -> (String, String) {
    let d = decisions.iter().find(|d| d["action"] == "start" || d["action"] == "skip").unwrap();
    (d["action"].as_str().unwrap().to_string(), d["reason"].as_str().unwrap().to_string())
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

#[test]
fn the_window_burst_pause_and_backoff_decide_whether_a_drain_starts() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    // Inside the window with a backlog: started.
    let (action, reason) = start_reason(&decisions(&fixture, &["--dry-run"]));
    assert_eq!(action, "start", "{reason}");
    // Outside: not started, and the reason names the next opening.
    fixture.set_now(OUTSIDE);
    let (action, reason) = start_reason(&decisions(&fixture, &["--dry-run"]));
    assert_eq!(action, "skip");
    assert!(
        reason.contains("outside window sun-thu 22:00-06:00; opens Sun 2026-11-29 22:00 IST"),
        "{reason}"
    );
    // In burst outside the window: started with the burst trigger.
    fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run().assert_code(0);
    let plan = decisions(&fixture, &["--dry-run"]);
    let start = action_for(&plan, "docs", "start").expect("start in burst");
    assert_eq!(start["trigger"], "burst");
    // After the deadline: the burst is cleared and the drain is not started.
    fixture.set_now("2026-11-27T12:00:01Z");
    let plan = decisions(&fixture, &["--dry-run"]);
    assert!(action_for(&plan, "docs", "expire_burst").is_some(), "{plan:?}");
    assert!(action_for(&plan, "docs", "skip").is_some(), "{plan:?}");
    // --dry-run changed nothing; a real pass clears the burst and records it.
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE burst_until IS NOT NULL"), 1);
    decisions(&fixture, &[]);
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE burst_until IS NOT NULL"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'burst_expired'"), 1);
    // Paused: not started, even inside the window.
    fixture.set_now(INSIDE);
    fixture.drainctl(&["pause", "docs", "--note", "maintenance"]).run().assert_code(0);
    let (action, reason) = start_reason(&decisions(&fixture, &["--dry-run"]));
    assert_eq!((action.as_str(), reason.as_str()), ("skip", "paused (maintenance)"));
    fixture.drainctl(&["resume", "docs"]).run().assert_code(0);
    // Backing off: not started until the reset.
    back_off_until(&fixture, "2026-11-26T21:31:00Z");
    let (action, reason) = start_reason(&decisions(&fixture, &["--dry-run"]));
    assert_eq!(action, "skip");
    assert!(reason.contains("backs off until Thu 2026-11-26 23:31 IST"), "{reason}");
    fixture.set_now("2026-11-26T21:31:00Z");
    assert_eq!(start_reason(&decisions(&fixture, &["--dry-run"])).0, "start");
    // An empty backlog: nothing to start.
    fixture.client().execute("UPDATE items SET state = 'done'", &[]).unwrap();
    assert_eq!(start_reason(&decisions(&fixture, &["--dry-run"])).1, "no item available now");
}

#[test]
fn supervise_starts_a_detached_drain_that_does_the_work() {
    let fixture = Fixture::new(&config(""), INSIDE);
    let go = fixture.path("go");
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), json!({ "steps": [{ "wait_for_file": go }, { "out": "ok" }] })),
            ("b".into(), json!(2)),
        ],
    );
    let plan = decisions(&fixture, &[]);
    let start = action_for(&plan, "docs", "start").expect("started");
    let pid = start["pid"].as_u64().unwrap() as i32;
    let log_path = std::path::PathBuf::from(start["log_path"].as_str().unwrap());
    // Its own session, so killing the supervisor's process group cannot reach it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let session: i32 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(session, pid, "the drain leads its own session");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&log_path).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::write(&go, "").unwrap();
    wait_until("both items done", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE state = 'done'") == 2
    });
    wait_until("the run to finish", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE status = 'drained'") == 1
    });
    let row = fixture.client().query_one("SELECT trigger, log_path FROM runs", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "supervisor");
    assert_eq!(row.get::<_, String>(1), log_path.display().to_string());
    let passes = fixture.count("SELECT count(*) FROM supervisor_passes WHERE status = 'done'");
    assert_eq!(passes, 1);
    let scheduled: String = fixture
        .client()
        .query_one("SELECT to_char(scheduled_for AT TIME ZONE 'UTC', 'HH24:MI') FROM supervisor_passes", &[])
        .unwrap()
        .get(0);
    assert_eq!(scheduled, "21:00");
}

#[test]
fn the_default_slot_is_rounded_down_on_the_local_wall_clock() {
    let config = "[defaults]\ntimezone = \"Asia/Kolkata\"\nsupervise_interval = \"1h\"\n\
                  log_dir = \"TMPDIR/logs\"\n\n[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n";
    // 10:05 IST: cron fired for 10:00 IST (04:30 UTC); before, the slot was 09:30 IST.
    let fixture = Fixture::new(config, "2026-03-25T04:35:00Z");
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    let scheduled: String = fixture
        .client()
        .query_one("SELECT to_char(scheduled_for AT TIME ZONE 'UTC', 'HH24:MI') FROM supervisor_passes", &[])
        .unwrap()
        .get(0);
    assert_eq!(scheduled, "04:30");
}

#[test]
fn a_hung_run_is_killed_with_its_children_and_its_item_released() {
    let fixture = Fixture::new(&config("liveness_timeout = \"15m\"\nitem_timeout = \"1h\"\n"), INSIDE);
    let started = fixture.path("started");
    fixture.enqueue(
        "docs",
        &[(
            "a".into(),
            json!({ "steps": [{ "touch": started }, { "child_ignoring_term": 300 }, { "hang": true }] }),
        )],
    );
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    let worker_pid: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    // Keep the supervisor from starting the item again once it is released.
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    fixture.set_now("2026-11-26T21:16:00Z");
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "kill_hung").is_some(), "{plan:?}");
    let _ = finished(pass.wait_with_output().unwrap());
    wait_until("the worker group to be gone", Duration::from_secs(10), || !pid_alive(worker_pid));
    let status: String = fixture.client().query_one("SELECT status FROM runs", &[]).unwrap().get(0);
    assert_eq!(status, "hung");
    let (state, attempts, error) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert!(error.unwrap().contains("hung"));
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_hung'"), 1);
    // The child that ignored SIGTERM was in the worker's group and died with it; seen
    // ended, the worker is forgotten, so no later pass looks at the run again.
    assert!(live_processes_with(5, worker_pid).is_empty());
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL"), 0);
}

#[test]
fn a_pass_that_cannot_read_the_drains_state_records_why() {
    let notify = "[defaults]\nnotify_command = [\"sh\", \"-c\", \"cat >> TMPDIR/notified.jsonl\"]\n";
    let fixture = Fixture::new(&config("").replacen("[defaults]\n", notify, 1), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [] }))]);
    // A migration, VACUUM FULL or an operator's session holds an exclusive lock on runs.
    let mut holder = fixture.client();
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE").unwrap();
    let result = fixture.drainctl(&["supervise"]).run();
    lock.rollback().unwrap();
    // Before: a bare "database error: canceling statement due to lock timeout", nothing
    // recorded, so no notification.
    result.assert_code(75);
    assert_eq!(
        result.stderr.lines().last().unwrap_or_default(),
        "drainctl: supervise: could not read the drains' state: database error: canceling statement due to \
         lock timeout; the pass decided nothing; the next pass tries again",
        "{}",
        result.stderr
    );
    let message: String = fixture
        .client()
        .query_one("SELECT message FROM events WHERE kind = 'supervise_error'", &[])
        .unwrap()
        .get(0);
    assert!(message.starts_with("could not read the drains' state: "), "{message}");
    // Notified by this pass, not left for the next.
    let notified = std::fs::read_to_string(fixture.path("notified.jsonl")).unwrap_or_default();
    assert!(notified.contains("could not read the drains' state"), "{notified:?}");
}

#[test]
fn a_pass_whose_session_ends_while_it_reads_the_drains_state_says_so_in_one_line() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut holder = fixture.client();
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE").unwrap();
    let pass = fixture.drainctl(&["supervise"]).spawn();
    wait_for_a_pass_waiting_on_a_lock(&fixture, "the pass to wait for the lock");
    fixture.end_drainctl_sessions();
    let result = finished(pass.wait_with_output().unwrap());
    lock.rollback().unwrap();
    result.assert_code(69);
    // Before: a second line first, "could not record event supervise_error (…)".
    assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
    assert!(
        result.stderr.contains("could not read the drains' state")
            && result.stderr.contains("no supervise_error event could be recorded: the session had ended"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_pass_whose_binary_is_replaced_meanwhile_starts_drains_with_the_one_installed() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "a" }] }))]);
    let installed = fixture.path("bin/drainctl");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(DRAINCTL, &installed).unwrap();
    // The pass is held inside itself (the drains table locked) while the binary is
    // replaced the way `install` does it: a new file renamed over the path.
    let mut holder = fixture.client();
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE drains IN ACCESS EXCLUSIVE MODE").unwrap();
    let pass =
        fixture.with_env(Drainctl::program(installed.to_str().unwrap(), &["supervise", "--json"])).spawn();
    wait_for_a_pass_waiting_on_a_lock(&fixture, "the pass to wait for the lock");
    let new = fixture.path("bin/drainctl.new");
    std::fs::copy(DRAINCTL, &new).unwrap();
    std::fs::rename(&new, &installed).unwrap();
    lock.commit().unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    // Before: exit 70, "could not start drain docs: … No such file or directory".
    result.assert_code(0);
    let decisions = result.json()["decisions"].as_array().cloned().unwrap_or_default();
    let start = action_for(&decisions, "docs", "start").expect("a start");
    assert_eq!(start["error"], Value::Null, "{start}");
    wait_until("the drain to finish its item", Duration::from_secs(20), || {
        fixture.item("docs", "a").0 == "done"
    });
    // Started by a link the upgrade points at a new release, the old one removed: the
    // drains are started by the name it was started by.
    fixture.enqueue("docs", &[("b".into(), json!({ "steps": [{ "out": "b" }] }))]);
    let (v1, v2, link) =
        (fixture.path("v1/drainctl"), fixture.path("v2/drainctl"), fixture.path("bin/current"));
    for release in [&v1, &v2] {
        std::fs::create_dir_all(release.parent().unwrap()).unwrap();
        std::fs::copy(DRAINCTL, release).unwrap();
    }
    std::os::unix::fs::symlink(&v1, &link).unwrap();
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE drains IN ACCESS EXCLUSIVE MODE").unwrap();
    let pass = fixture.with_env(Drainctl::program(link.to_str().unwrap(), &["supervise", "--json"])).spawn();
    wait_for_a_pass_waiting_on_a_lock(&fixture, "the pass to wait for the lock");
    let new_link = fixture.path("bin/current.new");
    std::os::unix::fs::symlink(&v2, &new_link).unwrap();
    std::fs::rename(&new_link, &link).unwrap();
    std::fs::remove_file(&v1).unwrap();
    lock.commit().unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    let decisions = result.json()["decisions"].as_array().cloned().unwrap_or_default();
    assert_eq!(action_for(&decisions, "docs", "start").expect("a start")["error"], Value::Null);
    wait_until("the drain to finish b", Duration::from_secs(20), || fixture.item("docs", "b").0 == "done");
    // `install` over the link itself, its old target left in place: the file now at the
    // name cron uses is what the drains run.
    fixture.enqueue("docs", &[("c".into(), json!({ "steps": [{ "out": "c" }] }))]);
    let ran = fixture.path("new-binary-ran");
    let new_binary = fixture.script(
        "new-drainctl",
        &format!("#!/bin/sh\necho \"$*\" >> '{}'\nexec '{DRAINCTL}' \"$@\"\n", ran.display()),
    );
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE drains IN ACCESS EXCLUSIVE MODE").unwrap();
    let pass = fixture.with_env(Drainctl::program(link.to_str().unwrap(), &["supervise", "--json"])).spawn();
    wait_for_a_pass_waiting_on_a_lock(&fixture, "the pass to wait for the lock");
    let staged = fixture.path("bin/current.installing");
    std::fs::copy(&new_binary, &staged).unwrap();
    std::fs::rename(&staged, &link).unwrap();
    lock.commit().unwrap();
    finished(pass.wait_with_output().unwrap()).assert_code(0);
    wait_until("the drain to finish c", Duration::from_secs(20), || fixture.item("docs", "c").0 == "done");
    let said = std::fs::read_to_string(&ran).unwrap_or_default();
    // The drain's name last, after `--` (a name may start with `-`).
    assert!(
        said.contains("drain --trigger supervisor") && said.trim_end().ends_with("-- docs"),
        "the new binary started the drain: {said:?}"
    );
}

#[test]
fn a_pass_started_by_a_bare_name_starts_drains_with_the_file_the_shell_would_run() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "a" }] }))]);
    // A file named drainctl that may not be run comes first on PATH; the shell passes
    // over it to the real one.
    let (unrunnable, real) = (fixture.path("first/drainctl"), fixture.path("second/drainctl"));
    for file in [&unrunnable, &real] {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    }
    std::fs::write(&unrunnable, "not a program\n").unwrap();
    std::fs::set_permissions(&unrunnable, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::copy(DRAINCTL, &real).unwrap();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        unrunnable.parent().unwrap().display(),
        real.parent().unwrap().display()
    );
    let pass =
        fixture.with_env(Drainctl::program("drainctl", &["supervise", "--json"])).env("PATH", &path).run();
    // Before: exit 70, "cannot start `drainctl drain docs`: Permission denied".
    pass.assert_code(0);
    let decisions = pass.json()["decisions"].as_array().cloned().unwrap_or_default();
    assert_eq!(action_for(&decisions, "docs", "start").expect("a start")["error"], Value::Null);
    wait_until("the drain to finish its item", Duration::from_secs(20), || {
        fixture.item("docs", "a").0 == "done"
    });
}

/// Wait until a drainctl session waits for a lock another session holds.
fn wait_for_a_pass_waiting_on_a_lock(fixture: &Fixture, what: &str) {
    let mut watcher = fixture.client();
    wait_until(what, Duration::from_secs(20), || {
        query_i64(
            &mut watcher,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                AND application_name = 'drainctl' AND wait_event_type = 'Lock'",
        ) > 0
    });
}

#[test]
fn a_hung_run_whose_worker_ignores_sigterm_costs_one_kill_grace_not_two() {
    let config = config("liveness_timeout = \"15m\"\nitem_timeout = \"1h\"\n")
        .replace("kill_grace = \"1s\"", "kill_grace = \"4s\"");
    let fixture = Fixture::new(&config, INSIDE);
    let started = fixture.path("started");
    let steps = json!({ "steps": [{ "child_ignoring_term": 300 }, { "touch": started }, { "hang": true }] });
    fixture.enqueue("docs", &[("a".into(), steps)]);
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    fixture.set_now("2026-11-26T21:16:00Z");
    let began = std::time::Instant::now();
    let plan = decisions(&fixture, &[]);
    let took = began.elapsed();
    assert!(action_for(&plan, "docs", "kill_hung").is_some(), "{plan:?}");
    let ended = finished(pass.wait_with_output().unwrap());
    // The drain (which waits its own kill_grace for the child) and the worker's group are
    // stopped together. Before: the drain's grace, then the group's, 8 s and more.
    assert!(took < Duration::from_secs(7), "the pass took {took:?}");
    // Its line names the run as supervise ended it. Before: "run 1 failed: … interrupted
    // by SIGTERM", beside a run `runs` shows hung.
    assert!(
        ended.stdout.contains(
            "docs: run 1 hung: 0 done, 0 failed attempts — no checkpoint for 16m (liveness_timeout 15m); this pass \
             then: interrupted by SIGTERM while running item a"
        ),
        "{ended:?}"
    );
    assert_eq!(fixture.item("docs", "a").0, "pending");
}

#[test]
fn a_checkpoint_stamped_by_a_clock_that_went_back_holds_off_the_hung_verdict_one_pass_at_most() {
    let fixture = Fixture::new(&config("liveness_timeout = \"15m\"\nitem_timeout = \"3h\"\n"), INSIDE);
    let started = fixture.path("started");
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "touch": started }, { "hang": true }] }))]);
    // The clock is an hour ahead while the pass claims and starts the worker, then is set
    // back; the worker then says nothing.
    fixture.set_now("2026-11-26T22:00:00Z");
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    fixture.set_now(INSIDE);
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    // Another host's run is judged by its own clock: its checkpoint is left as it is.
    let checkpoint = || fixture.column::<String>("SELECT last_checkpoint_at::text FROM runs").remove(0);
    let host = |name: &str| {
        fixture.client().execute("UPDATE runs SET host = $1", &[&name]).unwrap();
    };
    host("elsewhere");
    fixture.set_now("2026-11-26T21:16:00Z");
    decisions(&fixture, &[]);
    assert_eq!(checkpoint(), "2026-11-26 22:00:00+00");
    host(&this_host());
    // The first pass counts the checkpoint an hour ahead as one now.
    let first = decisions(&fixture, &[]);
    assert!(action_for(&first, "docs", "kill_hung").is_none(), "{first:?}");
    // Silent for liveness_timeout since then: hung. Before, it stayed running until the
    // clock passed 22:00 plus liveness_timeout.
    fixture.set_now("2026-11-26T21:32:00Z");
    let second = decisions(&fixture, &[]);
    let hung = action_for(&second, "docs", "kill_hung").map(|d| d["reason"].clone());
    assert_eq!(hung, Some(json!("run 1: no checkpoint for 16m (liveness_timeout 15m)")), "{second:?}");
    finished(pass.wait_with_output().unwrap());
    assert_eq!(fixture.item("docs", "a").0, "pending");
}

/// A drain with `every = "1h"` whose one pass this host ran while its clock was a day
/// ahead (2026-11-27 21:00, `INSIDE` a day later); the clock is left there.
fn cadence_with_a_pass_a_day_ahead() -> Fixture {
    let fixture = Fixture::new(&config("every = \"1h\"\n"), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "a" }] }))]);
    fixture.set_now("2026-11-27T21:00:00Z");
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    fixture
}

#[test]
fn a_cadence_counted_from_a_start_stamped_by_a_clock_that_went_back_counts_from_the_pass() {
    let fixture = cadence_with_a_pass_a_day_ahead();
    // Then the clock was set back.
    fixture.set_now(INSIDE);
    fixture.enqueue("docs", &[("b".into(), json!({ "steps": [{ "out": "b" }] }))]);
    // Before: "cadence 1h: next start in 1d", the item waiting for the clock to catch up.
    let dry = decisions(&fixture, &["--dry-run"]);
    assert_eq!(
        start_reason(&dry),
        ("skip".to_string(), "cadence 1h: next start in 1h".to_string()),
        "{dry:?}"
    );
    let first = decisions(&fixture, &[]);
    assert_eq!(start_reason(&first), ("skip".to_string(), "cadence 1h: next start in 1h".to_string()));
    let stamps: Vec<String> = fixture.column("SELECT started_at::text || ' ' || finished_at::text FROM runs");
    assert_eq!(
        stamps,
        ["2026-11-26 21:00:00+00 2026-11-26 21:00:00+00"],
        "counted as started and ended at the pass"
    );
    // An hour after that pass, it starts again.
    fixture.set_now("2026-11-26T22:00:00Z");
    let (action, reason) = start_reason(&decisions(&fixture, &["--dry-run"]));
    assert_eq!(action, "start", "{reason}");
}

#[test]
fn a_dry_run_counts_the_cadence_as_the_pass_after_a_clock_went_back_keeping_another_hosts_start() {
    // Another host, whose clock runs ahead, ran a pass an hour after this host's.
    let fixture = cadence_with_a_pass_a_day_ahead();
    fixture.enqueue("docs", &[("b".into(), json!({ "steps": [{ "out": "b" }] }))]);
    fixture.set_now("2026-11-27T22:00:00Z");
    fixture.drainctl_on_host("elsewhere", false, &["drain", "docs"]).run().assert_code(0);
    fixture.set_now(INSIDE);
    fixture.enqueue("docs", &[("c".into(), json!({ "steps": [{ "out": "c" }] }))]);
    // Only this host's start moves; the other host's, the latest, still holds the cadence.
    // Before, the dry run moved it too and said "next start in 1h".
    let dry = start_reason(&decisions(&fixture, &["--dry-run"]));
    let real = start_reason(&decisions(&fixture, &[]));
    assert_eq!(dry, real);
    assert!(real.1.starts_with("cadence 1h: next start in 1d 2h"), "{real:?}");
}

/// A drain in a burst until 2026-11-27 16:00 (set at `OUTSIDE`, outside its window) whose
/// burst a pass on `host` ended while its clock ran a day ahead, then (when given) a pass
/// of this host an hour later still; the clock is then set right and an item enqueued.
fn burst_ended_a_day_ahead(host: Option<&str>) -> Fixture {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    fixture.drainctl(&["burst", "on", "docs", "--until", "+6h"]).run().assert_code(0);
    fixture.set_now("2026-11-28T10:00:00Z");
    let ended = match host {
        None => fixture.drainctl(&["supervise", "--json"]).run(),
        Some(host) => {
            let ended = fixture.drainctl_on_host(host, false, &["supervise", "--json"]).run();
            fixture.set_now("2026-11-28T11:00:00Z");
            decisions(&fixture, &[]);
            ended
        }
    };
    ended.assert_code(0);
    let ended = ended.json()["decisions"].as_array().cloned().unwrap_or_default();
    assert!(action_for(&ended, "docs", "expire_burst").is_some(), "{ended:?}");
    fixture.set_now("2026-11-27T10:15:00Z");
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    fixture
}

#[test]
fn a_burst_a_pass_ended_while_the_clock_ran_ahead_is_set_again_once_it_went_back() {
    let fixture = burst_ended_a_day_ahead(None);
    let bursts = "SELECT count(*) FROM drains WHERE burst_until IS NOT NULL";
    // Before: the burst stayed ended, hours before its deadline, and the drain waited
    // for its window.
    let dry = decisions(&fixture, &["--dry-run"]);
    assert_eq!(action_for(&dry, "docs", "start").expect("started in its burst")["trigger"], "burst");
    assert_eq!(fixture.count(bursts), 0, "a dry run writes nothing");
    let plan = decisions(&fixture, &[]);
    assert_eq!(action_for(&plan, "docs", "start").expect("started in its burst")["trigger"], "burst");
    let until: Vec<String> = fixture.column("SELECT burst_until::text FROM drains WHERE name = 'docs'");
    assert_eq!(until, ["2026-11-27 16:00:00+00"]);
    let restored: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'burst_restored'");
    assert_eq!(
        restored,
        ["burst of docs restored until Fri 2026-11-27 18:00 IST: a pass ended it at Sat 2026-11-28 12:00 IST, \
          ahead of this clock (it went back)"]
    );
    assert!(fixture.drainctl(&["burst", "status"]).run().stdout.contains("docs"));
    // Once: the next pass leaves it be.
    decisions(&fixture, &[]);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'burst_restored'"), 1);
    assert_eq!(fixture.count(bursts), 1);
}

#[test]
fn a_burst_turned_off_after_a_pass_ahead_ended_it_stays_off() {
    let fixture = burst_ended_a_day_ahead(None);
    let off = fixture.drainctl(&["burst", "off", "docs"]).run();
    off.assert_code(0);
    // Before: "no burst was on", nothing recorded, and the next pass set it again.
    let events: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'burst_off'");
    assert!(events.len() == 1 && events[0].contains("burst of docs stays off"), "{events:?}");
    assert!(off.stdout.contains("it stays off"), "{}", off.stdout);
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "start").is_none(), "{plan:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE burst_until IS NOT NULL"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'burst_restored'"), 0);
}

#[test]
fn a_burst_turned_off_while_the_clock_is_still_ahead_stays_off() {
    let fixture = burst_ended_a_day_ahead(None);
    // The operator turns it off on the host whose clock still runs ahead (before: nothing
    // was recorded and the next pass on the right clock set the burst again).
    fixture.set_now("2026-11-28T10:05:00Z");
    fixture.drainctl(&["burst", "off", "docs"]).run().assert_code(0);
    fixture.set_now("2026-11-27T10:20:00Z");
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "start").is_none(), "{plan:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'burst_restored'"), 0);
}

#[test]
fn a_burst_another_host_ended_by_its_clock_ahead_stays_ended() {
    // Its clock runs ahead: it judges the burst by it (this host's own pass ran later).
    let fixture = burst_ended_a_day_ahead(Some("elsewhere"));
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "start").is_none(), "{plan:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE burst_until IS NOT NULL"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'burst_restored'"), 0);
}

#[test]
fn runs_hung_behind_one_stalled_vendor_are_stopped_together_in_one_kill_grace() {
    let drains: String = ["a", "b", "c"]
        .iter()
        .map(|name| {
            format!(
                "[[drain]]\nname = \"{name}\"\ncommand = [\"FAKE_WORKER\"]\nliveness_timeout = \"15m\"\n\
                 item_timeout = \"1h\"\n\n"
            )
        })
        .collect();
    let config = format!("[defaults]\nkill_grace = \"4s\"\nlog_dir = \"TMPDIR/logs\"\n\n{drains}");
    let fixture = Fixture::new(&config, INSIDE);
    let mut passes = Vec::new();
    for name in ["a", "b", "c"] {
        let started = fixture.path(&format!("started-{name}"));
        // Each worker leaves a child that ignores SIGTERM: its drain waits all of
        // kill_grace before it kills the group.
        let steps =
            json!({ "steps": [{ "child_ignoring_term": 300 }, { "touch": started }, { "hang": true }] });
        fixture.enqueue(name, &[("x".into(), steps)]);
        passes.push(fixture.drainctl(&["drain", name]).spawn());
        wait_until("the worker to start", Duration::from_secs(20), || started.exists());
        fixture.drainctl(&["pause", name]).run().assert_code(0);
    }
    fixture.set_now("2026-11-26T21:16:00Z");
    let began = std::time::Instant::now();
    let plan = decisions(&fixture, &[]);
    let took = began.elapsed();
    for pass in passes {
        let _ = finished(pass.wait_with_output().unwrap());
    }
    for name in ["a", "b", "c"] {
        assert!(action_for(&plan, name, "kill_hung").is_some(), "{plan:?}");
        assert_eq!(fixture.item(name, "x").0, "pending");
    }
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'hung' AND worker_pid IS NULL"), 3);
    // Before: one drain after another, a kill_grace each, 12 s and more.
    assert!(took < Duration::from_secs(9), "the pass took {took:?}");
}

#[test]
fn a_drain_with_several_free_slots_gets_a_pass_for_each_in_one_supervise_pass() {
    // `concurrency = 3` and four items: three passes at once from the first supervise
    // pass. Before: one, and the second and third only from the next passes, 15 minutes
    // apart each.
    let fixture = Fixture::new(&config("concurrency = 3\n"), INSIDE);
    let go = fixture.path("go");
    let items: Vec<(String, Value)> = (1..=4)
        .map(|n| {
            let started = fixture.path(&format!("started-{n}"));
            (
                format!("k{n}"),
                json!({ "steps": [{ "touch": started }, { "wait_for_file": go }, { "out": "ok" }] }),
            )
        })
        .collect();
    fixture.enqueue("docs", &items);
    let plan = decisions(&fixture, &[]);
    let starts: Vec<&Value> = plan.iter().filter(|d| d["action"] == "start").collect();
    assert_eq!(starts.len(), 3, "{plan:#?}");
    for (n, start) in starts.iter().enumerate() {
        let reason = start["reason"].as_str().unwrap();
        assert!(reason.ends_with(&format!("; pass {} of 3", n + 1)), "{reason}");
        assert!(start["error"].is_null(), "{start}");
    }
    wait_until("three workers at once", Duration::from_secs(30), || {
        (1..=4).filter(|n| fixture.path(&format!("started-{n}")).exists()).count() == 3
    });
    // Each pass writes its own log, named after its own pid, and its run records it: the
    // three files were created under the same name one after another.
    let mut logged: Vec<(i32, String)> = fixture
        .client()
        .query("SELECT pid, log_path FROM runs ORDER BY pid", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut decided: Vec<(i32, String)> = starts
        .iter()
        .map(|start| (start["pid"].as_i64().unwrap() as i32, start["log_path"].as_str().unwrap().to_string()))
        .collect();
    logged.sort();
    decided.sort();
    assert_eq!(logged, decided);
    for (pid, path) in &logged {
        assert!(path.ends_with(&format!("-{pid}.log")), "{path}");
    }
    // With every slot busy the next pass starts none.
    let next = decisions(&fixture, &[]);
    assert_eq!(start_reason(&next).1, "all 3 concurrency slot(s) busy", "{next:#?}");
    std::fs::write(&go, "").unwrap();
    wait_until("every item done", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE state = 'done'") == 4
    });
    wait_until("the runs to finish", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE status = 'drained'") == 3
    });
    // Each file holds its own pass's closing line.
    for (pid, path) in &logged {
        let run: i64 =
            fixture.client().query_one("SELECT id FROM runs WHERE pid = $1", &[pid]).unwrap().get(0);
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(&format!("docs: run {run} drained: ")), "{path}: {text}");
        assert_eq!(text.matches(" drained: ").count(), 1, "{path}: {text}");
    }
}

/// `concurrency = 3`, and `items` items that each touch `started-N` and hang; one
/// supervise pass starts them; returns its start decisions.
fn three_hanging_passes(fixture: &Fixture, items: usize) -> Vec<Value> {
    let entries: Vec<(String, Value)> = (1..=items)
        .map(|n| {
            let started = fixture.path(&format!("started-{n}"));
            (format!("k{n}"), json!({ "steps": [{ "touch": started }, { "hang": true }] }))
        })
        .collect();
    fixture.enqueue("docs", &entries);
    let plan = decisions(fixture, &[]);
    let starts: Vec<Value> = plan.into_iter().filter(|d| d["action"] == "start").collect();
    assert_eq!(starts.len(), 3.min(items), "{starts:#?}");
    wait_until("the workers to start", Duration::from_secs(30), || {
        (1..=items).filter(|n| fixture.path(&format!("started-{n}")).exists()).count() == starts.len()
    });
    starts
}

fn running_pids(fixture: &Fixture) -> Vec<i32> {
    fixture.column("SELECT pid FROM runs WHERE status = 'running' ORDER BY id")
}

#[test]
fn a_drain_whose_first_pass_cannot_be_started_is_not_tried_again_in_the_same_pass() {
    let fixture = Fixture::new(&config("concurrency = 3\n"), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1)), ("b".into(), json!(2)), ("c".into(), json!(3))]);
    // The drain's log folder is a file: no pass of it can be started.
    std::fs::create_dir_all(fixture.path("logs")).unwrap();
    std::fs::write(fixture.path("logs/docs"), "").unwrap();
    let result = fixture.drainctl(&["supervise", "--json"]).run();
    result.assert_code(78);
    let starts: Vec<Value> = result.json()["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "start")
        .cloned()
        .collect();
    assert_eq!(starts.len(), 3, "{starts:#?}");
    assert!(starts[0]["error"].as_str().unwrap().contains("cannot create log folder"), "{starts:#?}");
    for later in &starts[1..] {
        assert_eq!(later["error"], "not applied: an earlier pass of this drain could not be started");
    }
    // One event (and notification) for the failure. Before: one a pass.
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'supervise_error'"), 1);
}

#[test]
fn a_dry_run_after_crashes_plans_as_many_passes_as_the_real_pass_starts() {
    let fixture = Fixture::new(&config("concurrency = 3\n"), INSIDE);
    three_hanging_passes(&fixture, 3);
    for pid in running_pids(&fixture) {
        signal(pid as u32, libc::SIGKILL);
        wait_until("the drain to be gone", Duration::from_secs(10), || !pid_alive(pid));
    }
    // Before: the dry run planned one start (it counted the items the crashed runs held
    // as one), the real pass three.
    let dry = decisions(&fixture, &["--dry-run"]);
    let real = decisions(&fixture, &[]);
    for plan in [&dry, &real] {
        let count = |action: &str| plan.iter().filter(|d| d["action"] == action).count();
        assert_eq!((count("reap_crashed"), count("start")), (3, 3), "{plan:#?}");
    }
    wait_until("three passes again", Duration::from_secs(30), || running_pids(&fixture).len() == 3);
    for pid in running_pids(&fixture) {
        signal(pid as u32, libc::SIGTERM);
        wait_until("the drain to stop", Duration::from_secs(20), || !pid_alive(pid));
    }
}

#[test]
fn a_hung_run_of_another_host_keeps_its_slot_and_no_pass_is_started_for_it() {
    let fixture = Fixture::new(&config("concurrency = 3\nliveness_timeout = \"15m\"\n"), INSIDE);
    three_hanging_passes(&fixture, 4);
    // One of the three runs is recorded as another host's: this host cannot stop it, so
    // its drain keeps its slot after the pass ends it as hung.
    let ghost: i32 = running_pids(&fixture)[0];
    fixture
        .client()
        .execute("UPDATE runs SET host = 'ghost', host_id = 'ghost-boot' WHERE pid = $1", &[&ghost])
        .unwrap();
    fixture.set_now("2026-11-26T21:16:00Z");
    let plan = decisions(&fixture, &[]);
    let count = |action: &str| plan.iter().filter(|d| d["action"] == action).count();
    // Before: three starts, one ending `lock_skipped` ("all 3 concurrency slot(s) … are taken").
    assert_eq!((count("kill_hung"), count("start")), (3, 2), "{plan:#?}");
    wait_until("the two new passes", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE status = 'running'") == 2
    });
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'lock_skipped'"), 0);
    for pid in running_pids(&fixture).into_iter().chain([ghost]) {
        signal(pid as u32, libc::SIGTERM);
        wait_until("the drain to stop", Duration::from_secs(20), || !pid_alive(pid));
    }
}

#[test]
fn a_waiting_pass_whose_run_another_host_ended_says_so_and_exits_75() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    back_off_until(&fixture, "2026-11-26T21:05:00Z");
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the pass to wait for the reset", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE waiting_until IS NOT NULL") == 1
    });
    // Another host's supervise judged it hung (this one cannot reach that host's processes).
    fixture
        .client()
        .execute("UPDATE runs SET status = 'hung', note = 'no checkpoint for 16m', finished_at = now()", &[])
        .unwrap();
    let ended = finished(pass.wait_with_output().unwrap());
    // 75, as any pass whose run another process ended; the run's status, not its own.
    ended.assert_code(75);
    assert!(
        ended.stdout.contains(
            "docs: run 1 hung: 0 done, 0 failed attempts — no checkpoint for 16m; this pass then: "
        ),
        "{ended:?}"
    );
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1, "it did not go on as a new pass");
    assert!(
        ended.stderr.contains("drainctl: drain docs: run 1 hung: no checkpoint for 16m; this pass then: "),
        "{ended:?}"
    );
}

#[test]
fn a_pass_waiting_for_the_reset_takes_the_available_item_and_no_pass_is_added_for_it() {
    let fixture = Fixture::new(&config("concurrency = 3\n"), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    back_off_until(&fixture, "2026-11-26T21:05:00Z");
    let first = decisions(&fixture, &[]);
    assert_eq!(first.iter().filter(|d| d["action"] == "start").count(), 1, "{first:#?}");
    wait_until("the pass to wait for the reset", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE waiting_until IS NOT NULL") == 1
    });
    // Before: each supervise pass added a pass for the same item, all waiting.
    let next = decisions(&fixture, &[]);
    assert_eq!(
        start_reason(&next),
        ("skip".to_string(), "its 1 running pass that holds no item takes the 1 item available".to_string())
    );
    for pid in running_pids(&fixture) {
        signal(pid as u32, libc::SIGTERM);
        wait_until("the drain to stop", Duration::from_secs(20), || !pid_alive(pid));
    }
}

#[test]
fn a_pass_right_after_the_one_that_started_a_drain_does_not_start_it_again() {
    let fixture = Fixture::new(&config(""), INSIDE);
    let started = fixture.path("started");
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "touch": started }, { "hang": true }] }))]);
    // Two passes back to back (cron's and pm2's on the same minute, or two hosts'), the
    // drain slow to record its run: the first pass holds the supervise lock until it has.
    let pass = |fixture: &Fixture| {
        let result = fixture.drainctl(&["supervise", "--json"]).env("DRAINCTL_FAULT", "slow_run_start").run();
        result.assert_code(0);
        result.json()["decisions"].as_array().cloned().unwrap_or_default()
    };
    let first = pass(&fixture);
    assert!(action_for(&first, "docs", "start").is_some(), "{first:?}");
    let second = pass(&fixture);
    assert!(action_for(&second, "docs", "start").is_none(), "started twice: {second:?}");
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1);
    let pid: i32 = fixture.client().query_one("SELECT pid FROM runs", &[]).unwrap().get(0);
    signal(pid as u32, libc::SIGTERM);
    wait_until("the drain to stop", Duration::from_secs(20), || !pid_alive(pid));
}

#[test]
fn a_drain_removed_from_the_file_before_its_started_pass_read_it_is_reported_as_the_configuration() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "a" }] }))]);
    let gate = fixture.path("gate");
    let without_docs = config("").replace("name = \"docs\"", "name = \"other\"");
    assert_ne!(without_docs, config(""));
    for (edit, said) in [
        // The drain taken out of the file.
        (without_docs, "is in the database but not in the configuration"),
        // The file broken (a misspelt key).
        (format!("{}max_attempt = 3\n", config("")), "max_attempt"),
    ] {
        fixture.write_config(&config(""));
        fixture.drainctl(&["resume", "docs"]).run().assert_code(0);
        let _ = std::fs::remove_file(&gate);
        let first = fixture
            .drainctl(&["supervise", "--json"])
            .env("DRAINCTL_TEST_DRAIN_GATE", gate.to_str().unwrap())
            .run();
        first.assert_code(0);
        let decisions = first.json()["decisions"].as_array().cloned().unwrap_or_default();
        let pid = action_for(&decisions, "docs", "start").expect("a start")["pid"].as_u64().unwrap() as u32;
        // The operator's edit lands between the pass's decision and the drain's reading.
        fixture.write_config(&edit);
        std::fs::write(&gate, "").unwrap();
        wait_until_gone("the drain", pid);
        fixture.write_config(&config(""));
        // (Paused, so that this pass starts no drain of its own.)
        fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
        // Before: exit 69, as if the database had failed.
        let second = fixture.drainctl(&["supervise"]).run();
        second.assert_code(78);
        let errors: Vec<String> = fixture
            .column("SELECT message FROM events WHERE kind = 'supervise_error' ORDER BY id DESC LIMIT 1");
        assert!(errors[0].contains(said), "{}", errors[0]);
    }
}

#[test]
fn a_drain_that_fails_to_connect_after_its_pass_stopped_waiting_is_reported_by_the_next_pass() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "a" }] }))]);
    // The drain waits for a connection longer than the pass waits for its run (a full
    // pool), then fails: the pass that started it has stopped waiting by then.
    let first = fixture.drainctl(&["supervise", "--json"]).env("DRAINCTL_FAULT", "no_run_after_8s").run();
    first.assert_code(0);
    let decisions = first.json()["decisions"].as_array().cloned().unwrap_or_default();
    let started = action_for(&decisions, "docs", "start").expect("a start");
    let pid = started["pid"].as_u64().unwrap() as u32;
    wait_until_gone("the drain", pid);
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'supervise_error'"), 0);
    // Before: nothing anywhere but the drain's own log.
    let second = fixture.drainctl(&["supervise"]).run();
    second.assert_code(69);
    let errors: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'supervise_error'");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!("drain docs (pid {pid}) started by the supervise pass of "))
            && errors[0].contains("ended without recording a run; its log ")
            && errors[0].contains("cannot connect to the database: a fault of the test"),
        "{}",
        errors[0]
    );
    // Once: the pass after that has nothing more to say of it — even when the start was
    // not marked (an older drainctl's pass, a mark that failed): its event tells.
    fixture
        .client()
        .execute(
            "UPDATE supervisor_passes SET decisions = (
                 SELECT jsonb_agg(d - 'error' || '{\"error\": null}') FROM jsonb_array_elements(decisions) d)",
            &[],
        )
        .unwrap();
    fixture.drainctl(&["supervise"]).run();
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'supervise_error'"), 1);
}

#[test]
fn a_pass_with_a_log_file_whose_session_ends_while_it_waits_tells_the_stderr_cron_mails() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "a" }] }))]);
    let log = fixture.path("supervise.log");
    let pass = fixture
        .drainctl(&["supervise", "--log-file", log.to_str().unwrap()])
        .env("DRAINCTL_FAULT", "slow_run_start")
        .spawn();
    wait_until("the pass to be recorded", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM supervisor_passes WHERE status = 'done'") == 1
    });
    fixture.end_drainctl_sessions();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(69);
    // No event can say it: the line reaches the stderr cron mails, not the log alone.
    assert!(result.stderr.contains("the session ended after the pass was recorded"), "{}", result.stderr);
    assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
}

#[test]
fn a_pass_whose_session_ends_while_it_waits_for_its_drains_still_shows_what_it_did() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "a" }] }))]);
    let pass = fixture.drainctl(&["supervise"]).env("DRAINCTL_FAULT", "slow_run_start").spawn();
    wait_until("the pass to be recorded", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM supervisor_passes WHERE status = 'done'") == 1
    });
    fixture.end_drainctl_sessions();
    let result = finished(pass.wait_with_output().unwrap());
    // Before: no table, and "what the command had not committed was rolled back: run it
    // again", though the start was committed and the drain ran on.
    result.assert_code(69);
    assert!(result.stdout.contains("docs") && result.stdout.contains("start"), "{}", result.stdout);
    assert!(
        result.stderr.contains("the session ended after the pass was recorded")
            && result
                .stderr
                .contains("the drains it started go on unless the database's going away stopped them too (")
            && !result.stderr.contains("rolled back"),
        "{}",
        result.stderr
    );
    assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
}

#[test]
fn a_pass_whose_session_ends_in_its_prune_says_so_and_names_no_drains_it_did_not_start() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let result = fixture.supervise_whose_session_ends_in_its_prune();
    result.assert_code(69);
    // Before: "… while the pass waited for the drains it started …; the drains it started
    // run on", for a pass that started none and ended in its prune.
    assert!(result.stderr.contains("the session ended after the pass was recorded"), "{}", result.stderr);
    assert!(!result.stderr.contains("the drains it started go on"), "{}", result.stderr);
}

#[test]
fn a_pass_that_overlaps_the_one_that_started_a_drain_does_not_start_it_again() {
    let fixture = Fixture::new(&config(""), INSIDE);
    let started = fixture.path("started");
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "touch": started }, { "hang": true }] }))]);
    // The first pass has recorded itself and now waits for its drain, slow to record its
    // run; the second one starts meanwhile.
    let first = fixture.drainctl(&["supervise", "--json"]).env("DRAINCTL_FAULT", "slow_run_start").spawn();
    wait_until("the first pass to have decided", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM supervisor_passes WHERE status = 'done'") == 1
    });
    let second = fixture.drainctl(&["supervise", "--json"]).run();
    second.assert_code(0);
    let second_starts = second.json()["decisions"].as_array().cloned().unwrap_or_default();
    assert!(action_for(&second_starts, "docs", "start").is_none(), "started twice: {second_starts:?}");
    let first = finished(first.wait_with_output().unwrap());
    first.assert_code(0);
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    // Before, the first pass let go of its lock before it waited: the second started the
    // drain again, and that drain found the slot taken (a `lock_skipped` run).
    stop_the_only_run(&fixture);
}

#[test]
fn a_worker_that_checkpoints_is_not_hung_however_long_it_runs() {
    let fixture = Fixture::new(&config("liveness_timeout = \"15m\"\nitem_timeout = \"1h\"\n"), INSIDE);
    let started = fixture.path("started");
    fixture.enqueue(
        "docs",
        &[(
            "a".into(),
            json!({ "steps": [{ "touch": started }, { "checkpoints": { "count": 2000, "every": 0.05 } }] }),
        )],
    );
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    let checkpoint_at = |fixture: &Fixture| -> String {
        fixture
            .client()
            .query_one("SELECT to_char(last_checkpoint_at AT TIME ZONE 'UTC', 'HH24:MI') FROM runs", &[])
            .unwrap()
            .get(0)
    };
    for (now, hh_mm) in [("2026-11-26T21:10:00Z", "21:10"), ("2026-11-26T21:20:00Z", "21:20")] {
        fixture.set_now(now);
        wait_until("a checkpoint at the new time", Duration::from_secs(10), || {
            checkpoint_at(&fixture) == hh_mm
        });
    }
    // 20 minutes after the start, more than liveness_timeout: not hung.
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "kill_hung").is_none(), "{plan:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'running'"), 1);
    signal(pass.id(), libc::SIGTERM);
    let _ = finished(pass.wait_with_output().unwrap());
}

#[test]
fn time_the_database_server_was_down_does_not_count_against_a_run() {
    let fixture = Fixture::new(&config("liveness_timeout = \"20s\"\nitem_timeout = \"1h\"\n"), INSIDE);
    // The clock is set from the test server's real start, the instant supervise reads.
    let after_server_start = |seconds: i32| -> String {
        fixture
            .client()
            .query_one(
                "SELECT to_char((date_trunc('second', pg_postmaster_start_time()) + make_interval(secs => $1))
                                AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                &[&f64::from(seconds)],
            )
            .unwrap()
            .get(0)
    };
    fixture.set_now(&after_server_start(10));
    let started = fixture.path("started");
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "touch": started }, { "hang": true }] }))]);
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    // Its last checkpoint was an hour before the server started: a run that checkpointed
    // until the server went down, and whose next checkpoint could not be written until
    // it came back.
    fixture
        .client()
        .execute("UPDATE runs SET last_checkpoint_at = pg_postmaster_start_time() - interval '1 hour'", &[])
        .unwrap();
    // 10 s after the start: silent for 10 s while the server was up, within liveness_timeout.
    // status judges it as supervise does (a paused drain shows as paused: for a moment,
    // not).
    let state = |fixture: &Fixture| {
        fixture.drainctl(&["resume", "docs"]).run().assert_code(0);
        let status = fixture.drainctl(&["status", "--json"]).run().json();
        fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
        status["drains"][0]["state"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(state(&fixture), "running");
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "kill_hung").is_none(), "{plan:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'running'"), 1);
    // 25 s after it: hung, and the reason says the silence counts from the server's start.
    fixture.set_now(&after_server_start(25));
    assert_eq!(state(&fixture), "hung");
    let plan = decisions(&fixture, &[]);
    let hung = action_for(&plan, "docs", "kill_hung").expect("judged hung");
    let reason = hung["reason"].as_str().unwrap();
    assert!(reason.contains("since the database server started at"), "{reason}");
    assert!(reason.contains("(last checkpoint 1h"), "{reason}");
    let _ = finished(pass.wait_with_output().unwrap());
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'hung'"), 1);
}

#[test]
fn sigterm_mid_pass_ends_supervise_at_the_next_step_with_75_and_records_it() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    // Another session holds `runs`: the pass blocks in its snapshot's statement.
    let mut locker = fixture.client();
    let mut lock = locker.transaction().unwrap();
    lock.batch_execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE").unwrap();
    let pass = fixture.drainctl(&["supervise"]).spawn();
    wait_until("supervise to wait for the lock", Duration::from_secs(20), || {
        fixture.count(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND application_name = 'drainctl' AND wait_event_type = 'Lock'",
        ) == 1
    });
    signal(pass.id(), libc::SIGTERM);
    lock.commit().unwrap();
    // The blocked statement finishes; the pass stops before its next step.
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    assert_eq!(
        result.stderr.trim_end(),
        "drainctl: supervise: pass interrupted by SIGTERM before it ended crashed and hung runs \
         and started drains; the next pass does the rest"
    );
    let recorded: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'supervise_error'");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(recorded[0].starts_with("pass interrupted by SIGTERM before"), "{recorded:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 0);
    // The next pass does the rest.
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "start").is_some(), "{plan:?}");
    wait_until("the item done", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE status = 'drained'") == 1
    });
}

/// A `running` run of `docs` on this host whose process is gone (a pid that has exited),
/// holding item `a` on its first attempt.
fn crashed_run_holding_a(fixture: &Fixture) -> i64 {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id() as i32;
    gone.wait().unwrap();
    let mut client = fixture.client();
    let run_id: i64 = client
        .query_one(
            "INSERT INTO runs (drain, trigger, host, pid, started_at, last_checkpoint_at, status)
             VALUES ('docs', 'supervisor', $1, $2, now(), now(), 'running') RETURNING id",
            &[&this_host(), &dead_pid],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            "UPDATE items SET state = 'running', claimed_by = $1, attempts = 1 WHERE key = 'a'",
            &[&run_id],
        )
        .unwrap();
    run_id
}

#[test]
fn an_item_dead_lettered_by_a_reap_carries_the_fields_of_every_dead_letter() {
    let fixture = Fixture::new(&config("max_attempts = 1\n"), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    crashed_run_holding_a(&fixture);
    decisions(&fixture, &[]);
    assert_eq!(fixture.item("docs", "a").0, "dead");
    // Before: `{}`, and a notifier formatting the attempt and the error printed blanks.
    let data = fixture.column::<Value>("SELECT data FROM events WHERE kind = 'item_dead_lettered'").remove(0);
    assert_eq!(data["attempt"], 1, "{data}");
    assert_eq!(data["outcome"], "released", "{data}");
    assert!(data["error"].as_str().is_some_and(|error| error.contains("is gone")), "{data}");
    assert!(data.get("stderr_tail").is_some_and(Value::is_null), "{data}");
}

#[test]
fn a_crashed_run_is_reaped_and_its_items_released() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1)), ("b".into(), json!(2))]);
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    let mut client = fixture.client();
    let run_id = crashed_run_holding_a(&fixture);
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "reap_crashed").is_some(), "{plan:?}");
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    let status: String =
        client.query_one("SELECT status FROM runs WHERE id = $1", &[&run_id]).unwrap().get(0);
    assert_eq!(status, "crashed");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_crashed'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'item_released'"), 1);
}

#[test]
fn a_crashed_runs_worker_group_is_killed_after_its_main_process_ended() {
    let fixture = Fixture::new(&config(""), INSIDE);
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    // The worker leaves a child in its group, then ends after its drain was killed.
    let steps = json!({"steps": [{"child_ignoring_term": 300}, {"touch": started}, {"wait_for_file": go}]});
    fixture.enqueue("docs", &[("a".into(), steps)]);
    let mut pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker recorded", Duration::from_secs(20), || {
        started.exists() && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    // Keep the supervisor from starting the item again once it is released.
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    let worker: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    pass.kill().unwrap();
    pass.wait().unwrap();
    std::fs::write(&go, "").unwrap();
    wait_until("the worker's main process to end", Duration::from_secs(10), || !pid_alive(worker));
    assert!(!live_processes_with(5, worker).is_empty(), "the worker's child lives on in its group");
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "reap_crashed").is_some(), "{plan:?}");
    wait_until("the worker group to be gone", Duration::from_secs(10), || {
        live_processes_with(5, worker).is_empty()
    });
}

#[test]
fn a_hung_runs_worker_group_is_killed_after_its_main_process_died() {
    let fixture = Fixture::new(&config("liveness_timeout = \"15m\"\nitem_timeout = \"1h\"\n"), INSIDE);
    let started = fixture.path("started");
    let steps = json!({"steps": [{"child_ignoring_term": 300}, {"touch": started}, {"hang": true}]});
    fixture.enqueue("docs", &[("a".into(), steps)]);
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker recorded", Duration::from_secs(20), || {
        started.exists() && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    let worker: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    // The drain is frozen and the worker's main process dies: only its child is left.
    signal(pass.id(), libc::SIGSTOP);
    signal(worker as u32, libc::SIGKILL);
    wait_until("the worker's main process to die", Duration::from_secs(10), || !pid_alive(worker));
    assert!(!live_processes_with(5, worker).is_empty(), "the worker's child lives on in its group");
    fixture.set_now("2026-11-26T21:16:00Z");
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "kill_hung").is_some(), "{plan:?}");
    let _ = finished(pass.wait_with_output().unwrap());
    wait_until("the worker group to be gone", Duration::from_secs(10), || {
        live_processes_with(5, worker).is_empty()
    });
}

#[test]
fn a_crashed_drain_started_by_supervise_leaves_no_worker_even_one_not_yet_recorded() {
    let fixture = Fixture::new(&config(""), INSIDE);
    let (log, started) = (fixture.path("log"), fixture.path("started"));
    let steps =
        json!({"steps": [{"log": log}, {"child_ignoring_term": 300}, {"touch": started}, {"hang": true}]});
    fixture.enqueue("docs", &[("a".into(), steps)]);
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "start").is_some(), "{plan:?}");
    wait_until("the worker recorded", Duration::from_secs(20), || {
        started.exists() && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    let worker = logged_pid(&log) as i32;
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    // The drain dies before it recorded its worker: only its session tells.
    let drain: i32 = fixture.client().query_one("SELECT pid FROM runs", &[]).unwrap().get(0);
    fixture.client().execute("UPDATE runs SET worker_pid = NULL, worker_start_time = NULL", &[]).unwrap();
    signal(drain as u32, libc::SIGKILL);
    wait_until("the drain to die", Duration::from_secs(10), || !pid_alive(drain));
    assert!(!live_processes_with(6, drain).is_empty(), "the worker lives on in the drain's session");
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "reap_crashed").is_some(), "{plan:?}");
    wait_until("the worker group to be gone", Duration::from_secs(10), || {
        live_processes_with(5, worker).is_empty() && live_processes_with(6, drain).is_empty()
    });
}

#[test]
fn a_crashed_drain_leaves_no_child_its_worker_started_outside_its_group() {
    let fixture = Fixture::new(&config(""), INSIDE);
    let (escaped, started) = (fixture.path("escaped"), fixture.path("started"));
    // The worker starts a child in a session of its own and, once it is there, hangs.
    let script = fixture.script(
        "escapes.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\nsetsid sleep 120 < /dev/null > /dev/null 2>&1 &\n\
             echo $! > {}\n\
             {until_out}\
             touch {}\nexec sleep 122\n",
            escaped.display(),
            started.display(),
            until_out = UNTIL_CHILD_LEFT_GROUP
        ),
    );
    fixture.write_config(&config("").replace("FAKE_WORKER", &script.display().to_string()));
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    let mut pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker recorded", Duration::from_secs(20), || {
        started.exists() && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    let child: i32 = std::fs::read_to_string(&escaped).unwrap().trim().parse().unwrap();
    let worker: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    // SIGKILL: the drain cannot end the child itself.
    pass.kill().unwrap();
    let _ = pass.wait();
    assert!(pid_alive(child), "the child lives on after its drain");
    // A worker of the same run id from another database's drain (another drain process).
    let run_id: i64 = fixture.client().query_one("SELECT id FROM runs", &[]).unwrap().get(0);
    let mut bystander = std::process::Command::new("sleep")
        .arg("123")
        .env("DRAIN_RUN_ID", run_id.to_string())
        .env("DRAIN_PROCESS", "1:1")
        .spawn()
        .unwrap();
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "reap_crashed").is_some(), "{plan:?}");
    // Before, its worker's group was killed and the child lived on.
    wait_until("the worker's group and the child outside it to be gone", Duration::from_secs(10), || {
        live_processes_with(5, worker).is_empty() && !pid_alive(child)
    });
    assert!(pid_alive(bystander.id() as i32), "another drain's worker was signalled");
    bystander.kill().unwrap();
    let _ = bystander.wait();
}

#[test]
fn a_dry_run_after_a_crash_plans_the_start_the_real_pass_makes() {
    let fixture = Fixture::new(&config("max_attempts = 3\n"), INSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    let mut client = fixture.client();
    crashed_run_holding_a(&fixture);
    let plan = decisions(&fixture, &["--dry-run"]);
    assert!(action_for(&plan, "docs", "reap_crashed").is_some(), "{plan:?}");
    // Before, it said "skip: no item available now", and the real pass started the drain.
    let start = action_for(&plan, "docs", "start").unwrap_or_else(|| panic!("{plan:?}"));
    assert!(start["reason"].as_str().unwrap().starts_with("items available"), "{start}");
    // Nothing was written.
    assert_eq!(fixture.item("docs", "a").0, "running");
    assert_eq!(fixture.column::<String>("SELECT status FROM runs"), ["running"]);
    // An item on its last attempt is dead-lettered by the reap, not started again.
    client.execute("UPDATE items SET attempts = 3 WHERE key = 'a'", &[]).unwrap();
    let plan = decisions(&fixture, &["--dry-run"]);
    assert!(action_for(&plan, "docs", "skip").is_some(), "{plan:?}");
    client.execute("UPDATE items SET attempts = 1 WHERE key = 'a'", &[]).unwrap();
    // The real pass: the same plan.
    let plan = decisions(&fixture, &[]);
    assert!(action_for(&plan, "docs", "reap_crashed").is_some(), "{plan:?}");
    assert!(action_for(&plan, "docs", "start").is_some(), "{plan:?}");
}

#[test]
fn a_crashed_run_of_a_drain_no_longer_configured_is_reaped_and_its_item_released() {
    let gone = "\n[[drain]]\nname = \"gone\"\ncommand = [\"FAKE_WORKER\"]\n";
    let fixture = Fixture::new(&config(gone), INSIDE);
    let (log, started) = (fixture.path("log"), fixture.path("started"));
    let steps = json!({"steps": [{"log": log}, {"touch": started}, {"hang": true}]});
    fixture.enqueue("gone", &[("a".into(), steps)]);
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    let mut pass = fixture.drainctl(&["drain", "gone"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    let worker = logged_pid(&log);
    // Recorded as the run's worker at its first look.
    wait_until("the worker recorded", Duration::from_secs(10), || {
        fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    pass.kill().unwrap();
    pass.wait().unwrap();
    // The drain leaves the configuration while its crashed run still holds the item, on
    // an attempt past the default max_attempts: its own limit is unknown now.
    fixture.client().execute("UPDATE items SET attempts = 9 WHERE key = 'a'", &[]).unwrap();
    fixture.write_config(&config(""));
    let plan = decisions(&fixture, &[]);
    let reaped = action_for(&plan, "gone", "reap_crashed").unwrap_or_else(|| panic!("{plan:?}"));
    assert!(reaped["reason"].as_str().unwrap().contains("no longer configured"), "{reaped}");
    assert_eq!(fixture.item("gone", "a").0, "pending", "given back, never dead-lettered");
    assert_eq!(fixture.column::<String>("SELECT status FROM runs"), ["crashed"]);
    wait_until_gone("the worker it left", worker);
    // Nothing is left for the next pass.
    assert!(action_for(&decisions(&fixture, &[]), "gone", "reap_crashed").is_none());
    // Back in the configuration, its own max_attempts decides (docs/operations.md): the
    // item is dead-lettered at its claim, and the pass says so (before: "0 done, 0 failed
    // attempts").
    fixture.write_config(&config(gone));
    let back = fixture.drainctl(&["drain", "gone"]).run();
    back.assert_code(0);
    assert!(
        back.stdout.contains("0 done, 0 failed attempts, 1 dead-lettered without an attempt"),
        "{}",
        back.stdout
    );
    assert_eq!(fixture.item("gone", "a").0, "dead");
    let json = fixture.drainctl(&["drain", "gone", "--json"]).run().json();
    assert_eq!(json["items_dead_without_attempt"], 0, "{json}");
}

#[test]
fn an_overlapping_supervise_records_lock_skipped_and_exits_zero() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut holder = fixture.client();
    holder.execute("SELECT pg_advisory_lock($1)", &[&(0x4452_4149_0000_0000_i64 + 1)]).unwrap();
    let second = fixture.drainctl(&["supervise", "--json"]).run();
    second.assert_code(0);
    assert_eq!(second.json()["status"], "lock_skipped");
    drop(holder);
    let first = fixture.drainctl(&["supervise", "--json"]).run();
    first.assert_code(0);
    assert_eq!(first.json()["status"], "done");
    let statuses: Vec<String> = fixture.column("SELECT status FROM supervisor_passes ORDER BY id");
    assert_eq!(statuses, ["lock_skipped", "done"]);
}

#[test]
fn a_supervise_lock_taken_by_a_new_session_is_not_counted_from_the_passes_skipped_before_it() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut holder = fixture.client();
    holder.execute("SELECT pg_advisory_lock($1)", &[&(0x4452_4149_0000_0000_i64 + 1)]).unwrap();
    let connected: chrono::DateTime<chrono::Utc> = holder
        .query_one("SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    // An acting pass an hour before this session connected, then one skipped for an
    // earlier holder 40 minutes before it connected.
    for (minutes, status) in [(60, "done"), (40, "lock_skipped")] {
        fixture
            .client()
            .execute(
                "INSERT INTO supervisor_passes (fired_at, scheduled_for, host, pid, status, duration_ms)
                 VALUES ($1, $1, 'h', 1, $2, 1)",
                &[&(connected - chrono::Duration::minutes(minutes)), &status],
            )
            .unwrap();
    }
    // 20 minutes after it connected: under twice supervise_interval for this holder.
    fixture.set_now(&(connected + chrono::Duration::minutes(20)).to_rfc3339());
    let pass = fixture.drainctl(&["supervise"]).run();
    pass.assert_code(0);
    assert!(!pass.stdout.contains("it is stuck"), "{}", pass.stdout);
    assert!(pass.stdout.contains("(20m ago)"), "since it connected: {}", pass.stdout);
    // status, whose heartbeat is late, does not advise ending a holder that came lately.
    let status = fixture.drainctl(&["status"]).run();
    assert!(
        status.stdout.contains("holds the lock") && status.stdout.contains("it took the lock lately"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("it is stuck"), "{}", status.stdout);
}

#[test]
fn a_frozen_supervise_holding_the_lock_is_named_and_reported_once_stuck() {
    let with_textfile =
        config("").replace("[defaults]\n", "[defaults]\nmetrics_textfile = \"TMPDIR/drainctl.prom\"\n");
    let fixture = Fixture::new(&with_textfile, "2026-11-27T06:00:00Z");
    let errors_in_textfile = || -> String {
        let text = std::fs::read_to_string(fixture.path("drainctl.prom")).unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix("drainctl_supervisor_last_pass_errors "))
            .unwrap_or_default()
            .to_string()
    };
    // A pass recorded before the clock went back: it must not hide the skipped passes
    // recorded after it (before, nothing below was reported).
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    fixture.set_now("2026-11-26T21:00:00Z");
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    // A pass held inside itself (the drains table locked), then stopped there.
    let mut table = fixture.client();
    table.batch_execute("BEGIN; LOCK TABLE drains IN ACCESS EXCLUSIVE MODE").unwrap();
    let mut frozen = fixture.drainctl(&["supervise"]).spawn();
    wait_for_a_pass_waiting_on_a_lock(&fixture, "the pass to hold the lock and wait inside itself");
    let mut watcher = fixture.client();
    signal(frozen.id(), libc::SIGSTOP);
    table.batch_execute("COMMIT").unwrap();
    let holder_pid: i32 = watcher
        .query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = 1
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .unwrap()
        .get(0);
    let holder = format!("backend pid {holder_pid} (drainctl of role ");

    // Cron goes on firing: the first passes name the holder and exit 0.
    fixture.set_now("2026-11-26T22:00:00Z");
    let first = fixture.drainctl(&["supervise", "--json"]).run();
    first.assert_code(0);
    assert_eq!(first.json()["status"], "lock_skipped");
    assert_eq!(first.json()["lock_holder"]["holder"]["pid"], holder_pid);
    let first = fixture.drainctl(&["supervise"]).run();
    assert!(first.stdout.contains(&holder), "{}", first.stdout);
    assert!(
        first.stdout.contains("since at least 2026-11-27 00:00:00 IST"),
        "in the configured zone: {}",
        first.stdout
    );
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'supervise_error'"), 0);
    // Held longer than twice supervise_interval: an event (and notification), exit 75.
    for now in ["2026-11-26T23:00:00Z", "2026-11-27T00:00:00Z"] {
        fixture.set_now(now);
        let stuck = fixture.drainctl(&["supervise"]).run();
        stuck.assert_code(75);
        assert!(stuck.stdout.contains(&holder), "{}", stuck.stdout);
        assert!(stuck.stdout.contains("it is stuck"), "{}", stuck.stdout);
    }
    let events: Vec<String> =
        fixture.column("SELECT message FROM events WHERE kind = 'supervise_error' ORDER BY id");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[1].contains(&holder) && events[1].contains("4 passes skipped"), "{}", events[1]);
    // The skipped passes rewrote the textfile: the alert on these errors can fire (before,
    // the file stayed as the last acting pass left it, with none).
    assert_eq!(errors_in_textfile(), "2");
    // status and doctor say why the heartbeat is late, not "check its crontab".
    for command in ["status", "doctor"] {
        let shown = fixture.drainctl(&[command]).run();
        assert!(
            shown.stdout.contains("skipped because another supervise pass holds the lock")
                && shown.stdout.contains(&holder)
                && !shown.stdout.contains("check its crontab"),
            "{command}: {}",
            shown.stdout
        );
    }
    signal(frozen.id(), libc::SIGKILL);
    frozen.wait().unwrap();
}

#[test]
fn a_first_supervise_pass_stuck_holding_the_lock_is_named_not_the_crontab() {
    let with_textfile =
        config("").replace("[defaults]\n", "[defaults]\nmetrics_textfile = \"TMPDIR/drainctl.prom\"\n");
    let fixture = Fixture::new(&with_textfile, "2026-11-26T21:00:00Z");
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    // The very first pass, held inside itself (the drains table locked), then stopped.
    let mut table = fixture.client();
    table.batch_execute("BEGIN; LOCK TABLE drains IN ACCESS EXCLUSIVE MODE").unwrap();
    let mut frozen = fixture.drainctl(&["supervise"]).spawn();
    wait_for_a_pass_waiting_on_a_lock(&fixture, "the first pass to hold the lock and wait inside itself");
    signal(frozen.id(), libc::SIGSTOP);
    table.batch_execute("COMMIT").unwrap();
    for now in ["2026-11-26T21:15:00Z", "2026-11-26T22:00:00Z", "2026-11-26T23:00:00Z"] {
        fixture.set_now(now);
        fixture.drainctl(&["supervise"]).run();
    }
    // Before: "no supervise pass recorded yet: is its crontab … installed", and the
    // failures of the skipped passes counted as none.
    for command in ["status", "doctor"] {
        let shown = fixture.drainctl(&[command]).run();
        assert!(
            shown.stdout.contains(
                "no supervise pass has acted yet: 3 passes so far were skipped because \
                 another supervise pass holds the lock: backend pid "
            ) && shown.stdout.contains("it is stuck")
                && !shown.stdout.contains("crontab"),
            "{command}: {}",
            shown.stdout
        );
    }
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    let errors = metrics
        .lines()
        .find_map(|line| line.strip_prefix("drainctl_supervisor_last_pass_errors "))
        .unwrap_or_default()
        .to_string();
    assert_ne!(errors, "0", "{metrics}");
    signal(frozen.id(), libc::SIGKILL);
    frozen.wait().unwrap();
}

#[test]
fn burst_on_defaults_to_the_upcoming_saturday_1800_across_dst() {
    let fixture = Fixture::new(&config(""), INSIDE);
    let cases = [
        // Thursday 2026-10-22 10:00 IDT (UTC+3) -> Saturday 2026-10-24 18:00 IDT.
        ("2026-10-22T07:00:00Z", "2026-10-24T15:00:00Z"),
        // Saturday 10:00 -> the same day.
        ("2026-10-24T07:00:00Z", "2026-10-24T15:00:00Z"),
        // Saturday 19:00 IDT -> next Saturday, after the change to IST (UTC+2).
        ("2026-10-24T16:00:00Z", "2026-10-31T16:00:00Z"),
    ];
    for (now, expected) in cases {
        fixture.set_now(now);
        let result = fixture.drainctl(&["burst", "on", "docs", "--json"]).run();
        result.assert_code(0);
        assert_eq!(result.json()["burst_until"], expected, "at {now}");
    }
}

#[test]
fn burst_on_refuses_bad_deadlines_with_clear_errors() {
    let fixture = Fixture::new(&config(""), INSIDE);
    for (until, expected) in [
        ("2026-11-20 18:00", "in the past (6d 5h ago); pick a later --until"),
        ("2026-12-30 18:00", "more than burst_max 14d; pick an earlier --until or raise burst_max"),
        ("next tuesday-ish", "invalid time"),
        // Before: clap's "unexpected argument '-1' found", as if it were an option.
        ("-1h", "--until: invalid time \"-1h\""),
    ] {
        let result = fixture.drainctl(&["burst", "on", "docs", "--until", until]).run();
        result.assert_code(64);
        assert!(result.stderr.contains(expected), "{until}: {}", result.stderr);
        assert!(result.stderr.contains("--until"), "{}", result.stderr);
    }
    // A default further than burst_max whatever the day: refused with the file (before:
    // loaded, and every `burst on` without --until refused).
    fixture.write_config(&config("").replace("[defaults]\n", "[defaults]\nburst_default_until = \"+15d\"\n"));
    let result = fixture.drainctl(&["burst", "on", "docs"]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("burst_default_until: +15d is further ahead than burst_max (14d)"),
        "{}",
        result.stderr
    );
    // Without --until the configured default is at fault (78, before 64), and the fix says so.
    fixture.write_config(
        &config("")
            .replace("[defaults]\n", "[defaults]\nburst_default_until = \"sat 18:00\"\nburst_max = \"1h\"\n"),
    );
    let result = fixture.drainctl(&["burst", "on", "docs"]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("burst_default_until: deadline")
            && result.stderr.contains("give --until WHEN, or change burst_default_until or burst_max"),
        "{}",
        result.stderr
    );
    let result = fixture.drainctl(&["burst", "on", "doc"]).run();
    result.assert_code(64);
    assert!(result.stderr.contains("unknown drain \"doc\""), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE burst_until IS NOT NULL"), 0);
}

#[test]
fn burst_status_and_off_read_and_clear_the_one_row() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture
        .drainctl(&["burst", "on", "docs", "--until", "sat 18:00", "--note", "deadline"])
        .run()
        .assert_code(0);
    let status = fixture.drainctl(&["burst", "status", "--json"]).run();
    status.assert_code(0);
    let burst = status.json()["bursts"][0].clone();
    assert_eq!(burst["active"], true);
    assert_eq!(burst["note"], "deadline");
    let human = fixture.drainctl(&["burst", "status"]).run();
    assert!(human.stdout.contains("until Sat 2026-11-28 18:00 IST (in 1d 19h)"), "{}", human.stdout);
    // Moved an hour later without a note: it keeps its note and when it started.
    fixture.set_now("2026-11-26T22:00:00Z");
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "sat 19:00", "--json"]).run();
    on.assert_code(0);
    // Its JSON gives the note it kept. Before: null, as if it had been cleared.
    assert_eq!(on.json()["note"], "deadline", "{}", on.stdout);
    let moved = fixture.drainctl(&["burst", "status", "--json"]).run().json()["bursts"][0].clone();
    assert_eq!((&moved["note"], &moved["started_at"]), (&burst["note"], &burst["started_at"]), "{moved}");
    let data: Vec<serde_json::Value> = fixture.column("SELECT data FROM events WHERE kind = 'burst_moved'");
    assert_eq!(data[0]["note"], "deadline");
    // A new note replaces it.
    fixture
        .drainctl(&["burst", "on", "docs", "--until", "sat 20:00", "--note", "later"])
        .run()
        .assert_code(0);
    let moved = fixture.drainctl(&["burst", "status", "--json"]).run().json()["bursts"][0].clone();
    assert_eq!((&moved["note"], &moved["started_at"]), (&json!("later"), &burst["started_at"]), "{moved}");
    // The same deadline again is a renewal, not a move "from X to X"; an empty note clears.
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "sat 20:00", "--note", ""]).run();
    on.assert_code(0);
    // Its line says so too. Before: ", moved from Sat 2026-11-28 20:00 IST", the same time.
    assert!(on.stdout.starts_with("docs: burst on until Sat 2026-11-28 20:00 IST (in "), "{}", on.stdout);
    assert!(on.stdout.contains("), renewed; ") && !on.stdout.contains("moved"), "{}", on.stdout);
    let renewed = fixture.drainctl(&["burst", "status", "--json"]).run().json()["bursts"][0].clone();
    assert_eq!(renewed["note"], Value::Null, "{renewed}");
    let messages: Vec<String> =
        fixture.column("SELECT message FROM events WHERE kind = 'burst_moved' ORDER BY id");
    assert_eq!(messages[2], "burst of docs renewed until Sat 2026-11-28 20:00 IST", "{messages:?}");
    fixture.drainctl(&["burst", "off", "docs"]).run().assert_code(0);
    let status = fixture.drainctl(&["burst", "status", "docs", "--json"]).run();
    assert_eq!(status.json()["bursts"][0]["active"], false);
    let kinds: Vec<String> = fixture.column("SELECT kind FROM events WHERE kind LIKE 'burst%' ORDER BY id");
    assert_eq!(kinds, ["burst_on", "burst_moved", "burst_moved", "burst_moved", "burst_off"]);
}

#[test]
fn a_burst_past_its_deadline_ends_as_expired_whoever_meets_it_first() {
    let fixture = Fixture::new(&config(""), INSIDE);
    fixture.drainctl(&["burst", "on", "docs", "--until", "+1h"]).run().assert_code(0);
    // Before the next supervise pass clears it: `burst off` said "burst off (was until
    // …)" and recorded burst_off, never burst_expired.
    fixture.set_now("2026-11-26T22:30:00Z");
    let off = fixture.drainctl(&["burst", "off", "docs", "--json"]).run();
    off.assert_code(0);
    assert_eq!(off.json()["was_until"], Value::Null, "{}", off.stdout);
    assert_eq!(off.json()["expired_until"], "2026-11-26T22:00:00Z", "{}", off.stdout);
    let said = fixture.drainctl(&["burst", "off", "docs"]).run();
    assert!(
        said.stdout.starts_with("docs: no burst was on: the burst until"),
        "cleared once: {}",
        said.stdout
    );
    assert!(said.stdout.contains("it stays off"), "{}", said.stdout);
    let again = fixture.drainctl(&["burst", "off", "docs"]).run();
    assert_eq!(again.stdout.trim(), "docs: no burst was on");
    // `burst on` over an expired burst records its end before the new one.
    fixture.drainctl(&["burst", "on", "docs", "--until", "+1h"]).run().assert_code(0);
    fixture.set_now("2026-11-27T00:00:00Z");
    fixture.drainctl(&["burst", "on", "docs", "--until", "+1h"]).run().assert_code(0);
    let kinds: Vec<String> = fixture.column("SELECT kind FROM events WHERE kind LIKE 'burst%' ORDER BY id");
    assert_eq!(kinds, ["burst_on", "burst_expired", "burst_off", "burst_on", "burst_expired", "burst_on"]);
}

#[test]
fn a_burst_pass_ignores_the_budget_and_stops_when_the_burst_is_turned_off() {
    let fixture = Fixture::new(&config("max_items_per_pass = 2\n"), OUTSIDE);
    let items: Vec<(String, Value)> = (0..5).map(|i| (format!("i{i}"), json!(i))).collect();
    fixture.enqueue("docs", &items);
    fixture.drainctl(&["burst", "on", "docs", "--until", "+6h"]).run().assert_code(0);
    let result = fixture.drainctl(&["drain", "docs", "--trigger", "burst", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 5);
    // A burst pass stops before the next item once the burst is off.
    let started = fixture.path("started");
    let go = fixture.path("go");
    fixture.enqueue(
        "docs",
        &[
            ("j0".into(), json!({ "steps": [{ "touch": started }, { "wait_for_file": go }] })),
            ("j1".into(), json!(1)),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--trigger", "burst", "--json"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    fixture.drainctl(&["burst", "off", "docs"]).run().assert_code(0);
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["status"], "burst_ended");
    assert_eq!(result.json()["items_done"], 1);
    assert_eq!(fixture.item("docs", "j1").0, "pending");
}

/// A drain `docs` of the fake worker, open every day 09:00-17:00 UTC, with `extra` lines.
fn day_window_config(extra: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n\
         window = {{ days = \"*\", from = \"09:00\", to = \"17:00\" }}\n{extra}"
    )
}

/// A burst pass on `fixture` over `before`, then an item that waits until the burst's
/// deadline has passed (the clock moved to `after`), then `items`; returns the pass's JSON.
fn burst_pass_across_its_deadline(
    fixture: &Fixture,
    before: &[(String, Value)],
    items: &[(String, Value)],
    after: &str,
) -> Value {
    let started = fixture.path("started");
    let go = fixture.path("go");
    let mut all = before.to_vec();
    all.push(("w0".to_string(), json!({ "steps": [{ "touch": started }, { "wait_for_file": go }] })));
    all.extend_from_slice(items);
    fixture.enqueue("docs", &all);
    fixture.drainctl(&["burst", "on", "docs", "--until", "10:00"]).run().assert_code(0);
    let pass = fixture.drainctl(&["drain", "docs", "--trigger", "burst", "--json"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    fixture.set_now(after);
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    result.json()
}

#[test]
fn a_burst_pass_goes_on_as_a_normal_pass_when_its_burst_ends_inside_the_window() {
    // Before, the pass ended `burst_ended` after the first item, the rest pending until
    // the next supervise, although the window was open.
    let fixture = Fixture::new(&day_window_config(""), "2026-11-27T09:30:00Z");
    let items: Vec<(String, Value)> = (1..5).map(|i| (format!("i{i}"), json!(i))).collect();
    let pass = burst_pass_across_its_deadline(&fixture, &[], &items, "2026-11-27T10:00:00Z");
    assert_eq!(pass["status"], "drained", "{pass}");
    assert_eq!(pass["items_done"], 5, "{pass}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 0);

    // Its budgets count from the pass's start: the burst took it past max_items_per_pass,
    // so it stops.
    let fixture = Fixture::new(&day_window_config("max_items_per_pass = 2\n"), "2026-11-27T09:30:00Z");
    let before: Vec<(String, Value)> = (0..2).map(|i| (format!("b{i}"), json!(i))).collect();
    let pass = burst_pass_across_its_deadline(&fixture, &before, &items, "2026-11-27T10:00:00Z");
    assert_eq!(pass["status"], "burst_ended", "{pass}");
    assert_eq!(pass["items_done"], 3, "{pass}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 4);
    assert!(pass["note"].as_str().unwrap_or_default().contains("max_items_per_pass (2)"), "{pass}");

    // A burst that ends after the window closed still stops the pass.
    let fixture = Fixture::new(&day_window_config(""), "2026-11-27T09:30:00Z");
    let pass = burst_pass_across_its_deadline(&fixture, &[], &items, "2026-11-27T17:00:00Z");
    assert_eq!(pass["status"], "burst_ended", "{pass}");
    assert_eq!(pass["items_done"], 1, "{pass}");
    assert!(pass["note"].as_str().unwrap_or_default().contains("outside window daily 09:00-17:00"), "{pass}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 4);
}

#[test]
fn pausing_a_paused_drain_keeps_its_note_and_when_it_was_paused() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    let note_and_since = || -> (Option<String>, String) {
        let row = fixture
            .client()
            .query_one("SELECT pause_note, paused_at::text FROM drains WHERE name = 'docs'", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    fixture.drainctl(&["pause", "docs", "--note", "db migration"]).run().assert_code(0);
    let (_, since) = note_and_since();
    // Before, a second pause without --note erased the note and moved paused_at.
    fixture.set_now("2026-11-27T11:00:00Z");
    let again = fixture.drainctl(&["pause", "docs"]).run();
    again.assert_code(0);
    assert_eq!(note_and_since(), (Some("db migration".to_string()), since.clone()));
    // It says it was paused already, with the note kept, and records no second event.
    // Before: "docs: paused; …" and another drain_paused event.
    assert!(
        again.stdout.starts_with("docs: already paused since 2026-11-27 12:00 IST; note: db migration; "),
        "{}",
        again.stdout
    );
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'drain_paused'"), 1);
    let json = fixture.drainctl(&["pause", "docs", "--json"]).run().json();
    assert_documented("drainctl pause NAME --json", &json);
    assert_eq!((&json["was_paused"], &json["note"]), (&Value::Bool(true), &Value::from("db migration")));
    let status = fixture.drainctl(&["status"]).run();
    assert!(status.stdout.contains("paused: db migration"), "{}", status.stdout);
    // --note replaces the note; the drain is still paused since the first pause. The same
    // note again changes nothing and records nothing.
    fixture.drainctl(&["pause", "docs", "--note", "reindexing"]).run().assert_code(0);
    assert_eq!(note_and_since(), (Some("reindexing".to_string()), since.clone()));
    fixture.drainctl(&["pause", "docs", "--note", "reindexing"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'drain_paused'"), 2);
    // An empty note leaves none, and nothing prints a dangling colon.
    let cleared = fixture.drainctl(&["pause", "docs", "--note", "", "--json"]).run();
    cleared.assert_code(0);
    assert_eq!(cleared.json()["note"], Value::Null, "as status has it: {}", cleared.stdout);
    assert_eq!(note_and_since(), (None, since));
    let status = fixture.drainctl(&["status"]).run();
    assert!(!status.stdout.contains("paused:"), "{}", status.stdout);
    let messages: Vec<String> =
        fixture.column("SELECT message FROM events WHERE kind = 'drain_paused' ORDER BY id");
    assert_eq!(
        messages,
        [
            "drain docs paused: db migration",
            "drain docs stays paused, its note now: reindexing",
            "drain docs stays paused, its note cleared"
        ],
    );
    // A note's line breaks and tabs are shown escaped, on the one line.
    fixture.drainctl(&["pause", "docs", "--note", "two\nlines\tand a tab"]).run().assert_code(0);
    let shown = fixture.drainctl(&["pause", "docs"]).run().stdout;
    assert!(shown.contains("note: two\\nlines\\tand a tab; "), "{shown}");
    let changed = fixture.drainctl(&["pause", "docs", "--note", "reindexing"]).run().stdout;
    assert!(changed.contains("; note now: reindexing; "), "{changed}");
}

#[test]
fn burst_on_a_paused_drain_says_it_needs_resume_to_start() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    fixture.drainctl(&["pause", "docs", "--note", "db migration"]).run().assert_code(0);
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run();
    on.assert_code(0);
    // Before, it said "the next supervise pass starts it if idle", and supervise skipped it.
    assert!(!on.stdout.contains("starts it if idle"), "{}", on.stdout);
    assert!(on.stdout.contains("the drain is paused: `drainctl resume docs`"), "{}", on.stdout);
    let json = fixture.drainctl(&["burst", "on", "docs", "--until", "+3h", "--json"]).run().json();
    assert_eq!(json["paused"], true);
    let status = fixture.drainctl(&["burst", "status"]).run();
    assert!(status.stdout.contains("(in 3h); drain paused: resume to start"), "{}", status.stdout);
    let status = fixture.drainctl(&["burst", "status", "--json"]).run().json();
    assert_eq!(status["bursts"][0]["paused"], true);
    // Resumed, with nothing to do: it says so.
    fixture.drainctl(&["resume", "docs"]).run().assert_code(0);
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+3h"]).run();
    assert!(
        on.stdout.contains("; it has no pending items: a supervise pass starts it once some are enqueued"),
        "{}",
        on.stdout
    );
}

#[test]
fn burst_on_says_whether_the_next_pass_or_the_running_one_works_in_burst() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    fixture.drainctl(&["enqueue", "docs", "--key", "a", "--payload", "{}"]).run().assert_code(0);
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+3h"]).run();
    on.assert_code(0);
    assert!(on.stdout.ends_with("; the next supervise pass starts it\n"), "{}", on.stdout);
    // A pass of it running (this process stands for it): before, "the next supervise pass
    // starts it if idle", where the running pass takes the burst on itself.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    fixture
        .client()
        .execute(
            "INSERT INTO runs (drain, trigger, host, pid, started_at, last_checkpoint_at, status)
             VALUES ('docs', 'supervisor', $1, $2, now(), now(), 'running')",
            &[&host, &(std::process::id() as i32)],
        )
        .unwrap();
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+4h"]).run();
    on.assert_code(0);
    assert!(
        on.stdout.ends_with("; its running pass works on in burst from its next item\n"),
        "{}",
        on.stdout
    );
}

#[test]
fn burst_on_says_when_items_waiting_out_their_retry_delay_can_start() {
    // Before: "the next supervise pass starts it", where every pass skipped the drain
    // (no item available now) until the burst had ended.
    let fixture = Fixture::new(&config(""), OUTSIDE);
    fixture.drainctl(&["enqueue", "docs", "--key", "a", "--payload", "{}"]).run().assert_code(0);
    fixture
        .client()
        .execute("UPDATE items SET available_at = $1::text::timestamptz + interval '4 hours'", &[&OUTSIDE])
        .unwrap();
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h", "--json"]).run();
    on.assert_code(0);
    let available = on.json()["items_available_at"].as_str().unwrap_or_default().to_string();
    assert!(!available.is_empty(), "{}", on.stdout);
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run();
    assert!(
        on.stdout.contains("its pending items wait out their retry delay until ")
            && on.stdout.ends_with(", after the burst's end: no pass starts during this burst\n"),
        "{}",
        on.stdout
    );
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+6h"]).run();
    assert!(on.stdout.ends_with(": the first supervise pass after that starts it\n"), "{}", on.stdout);
}

/// The drain's quota group backs off until `until` (a usage limit).
fn back_off_until(fixture: &Fixture, until: &str) {
    fixture
        .client()
        .execute(
            "INSERT INTO quota_backoffs (quota_group, backoff_until, reason, updated_at)
             VALUES ('docs', $1::text::timestamptz, 'usage limit reached', now())",
            &[&until],
        )
        .unwrap();
}

#[test]
fn burst_on_during_a_backoff_says_when_it_can_start() {
    let fixture = Fixture::new(&config(""), "2026-11-26T21:00:00Z");
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    back_off_until(&fixture, "2026-11-26T21:31:00Z");
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run();
    on.assert_code(0);
    // Before, it promised a start at the next pass, which skipped it for the backoff.
    assert!(
        on.stdout.contains(
            "its quota group backs off until Thu 2026-11-26 23:31 IST (in 31m): the last supervise pass before that starts it to wait for the reset (or the first after it)"
        ),
        "{}",
        on.stdout
    );
    let json = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h", "--json"]).run().json();
    assert_eq!(json["backoff_until"], "2026-11-26T21:31:00Z");
    // A pass already waiting inside itself for that reset goes on then: no start is
    // promised. Before: "the last supervise pass before that starts it".
    let pid = std::process::id() as i32;
    fixture
        .client()
        .execute(
            "INSERT INTO runs (drain, trigger, host, pid, started_at, last_checkpoint_at, status, waiting_until)
             VALUES ('docs', 'supervisor', 'h', $1, now(), now(), 'running', '2026-11-26T21:31:00Z')",
            &[&pid],
        )
        .unwrap();
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run();
    assert!(
        on.stdout.contains("(in 31m): a running pass waits for the reset and goes on then"),
        "{}",
        on.stdout
    );
    fixture.client().execute("DELETE FROM runs", &[]).unwrap();
    // With `max_wait = "0s"` no pass waits for the reset: the first after it starts.
    // Before: the early start to wait for it was promised too.
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.write_config(&text.replace("name = \"docs\"\n", "name = \"docs\"\nmax_wait = \"0s\"\n"));
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run();
    assert!(on.stdout.contains("(in 31m): the first supervise pass after that starts it"), "{}", on.stdout);
    fixture.write_config(&text);
    // A burst that ends before the backoff does gets no start at all.
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+10m"]).run();
    assert!(on.stdout.contains("after the burst's end: no pass starts during this burst"), "{}", on.stdout);
    fixture.set_now("2026-11-26T21:31:00Z");
    let json = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h", "--json"]).run().json();
    assert_eq!(json["backoff_until"], serde_json::Value::Null);
}

#[test]
fn a_burst_pass_never_runs_past_the_deadline() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    let started = fixture.path("started");
    let go = fixture.path("go");
    fixture.enqueue(
        "docs",
        &[
            ("k0".into(), json!({ "steps": [{ "touch": started }, { "wait_for_file": go }] })),
            ("k1".into(), json!(1)),
        ],
    );
    fixture.drainctl(&["burst", "on", "docs", "--until", "+1h"]).run().assert_code(0);
    let pass = fixture.drainctl(&["drain", "docs", "--trigger", "burst", "--json"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    // The deadline passes while the first item runs: no further item is taken.
    fixture.set_now("2026-11-27T11:00:00Z");
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["status"], "burst_ended");
    assert_eq!(fixture.item("docs", "k1").0, "pending");
    // And supervise neither restarts it in burst nor (outside the window) at all.
    let plan = decisions(&fixture, &["--dry-run"]);
    assert!(action_for(&plan, "docs", "expire_burst").is_some(), "{plan:?}");
    assert!(action_for(&plan, "docs", "start").is_none(), "{plan:?}");
}

#[test]
fn status_shows_when_an_open_window_closes() {
    let config = "[defaults]\ntimezone = \"Europe/Berlin\"\nlog_dir = \"TMPDIR/logs\"\n\n\
                  [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n\
                  window = { days = \"sun-thu\", from = \"22:00\", to = \"06:00\" }\n";
    // Thursday 26 March 23:00 CET: inside Thursday's night, which closes Friday 06:00.
    let fixture = Fixture::new(config, "2026-03-26T22:00:00Z");
    let result = fixture.drainctl(&["status", "--json"]).run();
    result.assert_code(0);
    let drain = &result.json()["drains"][0];
    assert_eq!(drain["in_window"], true);
    assert_eq!(drain["next_window_opening"], Value::Null);
    assert_eq!(drain["window_closes"], "2026-03-27T05:00:00Z");
    let human = fixture.drainctl(&["status"]).run();
    assert!(human.stdout.contains("window closes Fri 06:00 (in 7h)"), "{}", human.stdout);
    // Outside the window there is no closing, only the next opening.
    fixture.set_now("2026-03-27T12:00:00Z");
    let drain = fixture.drainctl(&["status", "--json"]).run().json()["drains"][0].clone();
    assert_eq!(drain["window_closes"], Value::Null);
    assert_eq!(drain["next_window_opening"], "2026-03-29T20:00:00Z");
}

#[test]
fn status_shows_state_counts_burst_backoff_and_next_opening() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    fixture.enqueue("docs", &[("a".into(), json!(1)), ("b".into(), json!(2))]);
    fixture.client().execute("UPDATE items SET state = 'dead' WHERE key = 'b'", &[]).unwrap();
    let result = fixture.drainctl(&["status", "--json"]).run();
    result.assert_code(0);
    let drain = &result.json()["drains"][0];
    assert_eq!(drain["state"], "out-of-window");
    assert_eq!(drain["counts"]["pending"], 1);
    assert_eq!(drain["counts"]["dead"], 1);
    assert_eq!(drain["next_window_opening"], "2026-11-29T20:00:00Z");
    let human = fixture.drainctl(&["status"]).run();
    assert!(human.stdout.contains("out-of-window"), "{}", human.stdout);
    assert!(human.stdout.contains("opens in 2d 10h"), "{}", human.stdout);
    fixture.drainctl(&["burst", "on", "docs", "--until", "+3h"]).run().assert_code(0);
    let drain = fixture.drainctl(&["status", "--json"]).run().json()["drains"][0].clone();
    assert_eq!(drain["state"], "burst");
    assert_eq!(drain["burst_until"], "2026-11-27T13:00:00Z");
}

#[test]
fn an_ended_bursts_note_is_not_shown_as_the_drains() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    fixture
        .drainctl(&["burst", "on", "docs", "--until", "+1h", "--note", "chair's deadline"])
        .run()
        .assert_code(0);
    let drain = |fixture: &Fixture| fixture.drainctl(&["status", "--json"]).run().json()["drains"][0].clone();
    assert_eq!(drain(&fixture)["burst_note"], "chair's deadline");
    // Ended, not yet cleared by a supervise pass: before, the note stayed beside a null
    // deadline.
    fixture.set_now("2026-11-27T11:00:01Z");
    let view = drain(&fixture);
    assert_eq!((view["burst_until"].clone(), view["burst_note"].clone()), (Value::Null, Value::Null));
}

#[test]
fn the_burst_of_a_drain_removed_from_the_configuration_expires_with_its_event() {
    let two = "[defaults]\ntimezone = \"UTC\"\n\n[[drain]]\nname = \"g1\"\ncommand = [\"FAKE_WORKER\"]\n\n\
               [[drain]]\nname = \"g2\"\ncommand = [\"FAKE_WORKER\"]\n";
    let fixture = Fixture::new(two, "2026-11-27T11:00:00Z");
    fixture.drainctl(&["burst", "on", "g2", "--until", "+2h"]).run().assert_code(0);
    fixture.write_config(
        "[defaults]\ntimezone = \"UTC\"\n\n[[drain]]\nname = \"g1\"\ncommand = [\"FAKE_WORKER\"]\n",
    );
    // Still in force: nothing to expire.
    fixture.set_now("2026-11-27T12:30:00Z");
    assert!(action_for(&decisions(&fixture, &["--dry-run"]), "g2", "expire_burst").is_none());
    // Before: no decision and no burst_expired, the default notification never sent.
    fixture.set_now("2026-11-27T13:30:00Z");
    let plan = decisions(&fixture, &["--dry-run"]);
    let expire = action_for(&plan, "g2", "expire_burst").expect("the removed drain's burst expires");
    assert!(expire["reason"].as_str().unwrap_or_default().contains("no longer configured"), "{expire}");
    decisions(&fixture, &[]);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'burst_expired' AND drain = 'g2'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE burst_until IS NOT NULL"), 0);
    // Once.
    fixture.set_now("2026-11-27T13:45:00Z");
    assert!(action_for(&decisions(&fixture, &[]), "g2", "expire_burst").is_none());
}

#[test]
fn a_lock_holders_application_name_is_shown_with_the_password_masked_and_controls_escaped() {
    let fixture =
        Fixture::new("[[drain]]\nname = \"a\"\ncommand = [\"FAKE_WORKER\"]\n", "2026-11-27T10:00:00Z");
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let password = fixture.db.password();
    let mut holder = fixture.db.client();
    // Any client names itself: here with the database password and a line break.
    holder
        .execute(
            "SELECT set_config('application_name', $1, false)",
            &[&format!("app {password}\nforged line")],
        )
        .unwrap();
    holder.execute("SELECT pg_advisory_lock($1)", &[&(0x4452_4149_0000_0000_i64 + 1)]).unwrap();
    let result = fixture.drainctl(&["supervise", "--json"]).run();
    result.assert_code(0);
    let held = result.stdout.clone();
    assert!(held.contains("app ***"), "{held}");
    let human = fixture.drainctl(&["supervise"]).run();
    // Before: the password in clear on stdout, in --json, the log file, status and the page.
    for output in [&result.stdout, &human.stdout, &human.stderr] {
        assert!(!output.contains(&password), "{output}");
        assert!(!output.contains("\nforged line"), "{output}");
    }
}

#[test]
fn a_configuration_emptied_by_a_deploy_prunes_nothing() {
    // Kept a year by the operator's retention; the file is then emptied.
    let fixture = Fixture::new(
        "[defaults]\ntimezone = \"UTC\"\nretention = { runs = \"365d\", events = \"365d\", logs = \"365d\" }\n\n\
         [[drain]]\nname = \"keep\"\ncommand = [\"/bin/cat\"]\n",
        "2026-06-01T10:00:00Z",
    );
    fixture.enqueue("keep", &[("a".into(), json!({}))]);
    fixture.drainctl(&["drain", "keep"]).run().assert_code(0);
    let events = fixture.count("SELECT count(*) FROM events");
    fixture.write_config("");
    fixture.set_now("2026-09-01T10:00:00Z");
    let pass = fixture.drainctl(&["supervise"]).run();
    pass.assert_code(78);
    // Before: the empty file's default retention (runs 30d, events 90d) removed them.
    assert!(
        pass.stderr.contains("old history not pruned: the configuration has no [[drain]] table"),
        "{}",
        pass.stderr
    );
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'retention_pruned'"), 0);
    assert!(fixture.count("SELECT count(*) FROM events") > events);
}

#[test]
fn a_configuration_without_a_drain_fails_the_pass_with_exit_78() {
    // Before: a file emptied by a deploy that failed half-way made passes that exited 0 and
    // looked healthy while nothing ran.
    let fixture = Fixture::new("[defaults]\ntimezone = \"UTC\"\n", "2026-12-07T10:00:00Z");
    let pass = fixture.drainctl(&["supervise"]).run();
    pass.assert_code(78);
    assert!(pass.stderr.contains("has no [[drain]] table: no drain runs; add one"), "{}", pass.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'supervise_error'"), 1);
    // A dry run says the same and records nothing.
    let dry = fixture.drainctl(&["supervise", "--dry-run"]).run();
    dry.assert_code(78);
    assert!(dry.stderr.contains("has no [[drain]] table"), "{}", dry.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'supervise_error'"), 1);
    // `doctor` fails it too (before: a warning, while every pass failed).
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(78);
    assert!(doctor.stdout.contains("fail  worker: no [[drain]] is configured"), "{}", doctor.stdout);
}
