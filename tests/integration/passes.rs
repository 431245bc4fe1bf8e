//! `drainctl passes` (the supervise history with every decision) and the log file of a
//! drain `supervise` started: named after the drain's own pid, every line dated.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// Three drains without a window: `docs` starts, `meta` is paused, `late` cannot get its
/// log folder.
const CONFIG: &str =
    "[defaults]\ntimezone = \"Asia/Jerusalem\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\
     EXTRA\n\
     [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n\n\
     [[drain]]\nname = \"meta\"\ncommand = [\"FAKE_WORKER\"]\n\n\
     [[drain]]\nname = \"late\"\ncommand = [\"FAKE_WORKER\"]\n";

const FIRST: &str = "2026-11-26T21:00:00Z";
const SECOND: &str = "2026-11-26T21:15:00Z";

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// Wait for the run `supervise` started to finish; returns its (pid, log_path, id).
fn finished_supervisor_run(fixture: &Fixture) -> (i32, String, i64) {
    wait_until("the started drain to finish", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE trigger = 'supervisor' AND status = 'drained'") == 1
    });
    let row = fixture
        .client()
        .query_one(
            "SELECT pid, log_path, id FROM runs WHERE trigger = 'supervisor' AND status = 'drained'",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn passes_shows_each_supervise_pass_newest_first_with_what_it_started_ended_skipped_and_failed() {
    let fixture = Fixture::new(&CONFIG.replace("EXTRA", ""), FIRST);
    for drain in ["docs", "meta", "late"] {
        fixture.enqueue(drain, &[("a".into(), json!(1))]);
    }
    fixture.drainctl(&["pause", "meta", "--note", "maintenance"]).run().assert_code(0);
    // `late` cannot have its log folder: a file is in the way.
    std::fs::create_dir_all(fixture.path("logs")).unwrap();
    std::fs::write(fixture.path("logs/late"), "").unwrap();
    // A run of `docs` whose process is gone: reaped by the pass.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id() as i32;
    gone.wait().unwrap();
    fixture
        .client()
        .execute(
            "INSERT INTO runs (drain, trigger, host, pid, started_at, last_checkpoint_at, status)
             VALUES ('docs', 'manual', $1, $2, now(), now(), 'running')",
            &[&this_host(), &dead_pid],
        )
        .unwrap();

    // `late`'s log folder is a configuration problem: 78.
    fixture.drainctl(&["supervise"]).run().assert_code(78);
    let (run_pid, run_log, run_id) = finished_supervisor_run(&fixture);
    // A second pass finds the supervise lock held.
    fixture.set_now(SECOND);
    let mut holder = fixture.client();
    holder.execute("SELECT pg_advisory_lock($1)", &[&(0x4452_4149_0000_0000_i64 + 1)]).unwrap();
    fixture.drainctl(&["supervise", "--slot", "2026-11-26T21:15:07Z"]).run().assert_code(0);
    drop(holder);

    let passes = fixture.drainctl(&["passes", "--json"]).run().assert_code(0).json();
    let passes = passes["passes"].as_array().unwrap();
    assert_eq!(passes.len(), 2, "{passes:?}");
    let (skipped, done) = (&passes[0], &passes[1]);
    assert_eq!(
        (skipped["status"].as_str(), skipped["fired_at"].as_str()),
        (Some("lock_skipped"), Some(SECOND))
    );
    assert_eq!(skipped["decisions"], json!([]));
    assert_eq!(done["status"], "done");
    assert_eq!(done["scheduled_for"], FIRST);
    assert_eq!(done["host"], this_host());
    assert!(done["duration_seconds"].as_f64().unwrap() >= 0.0);
    let counts: Vec<&Value> =
        ["started", "ended", "skipped", "errors"].iter().map(|key| &done[*key]).collect();
    assert_eq!(counts, [&json!(1), &json!(1), &json!(1), &json!(1)], "{done}");
    let decision = |drain: &str, action: &str| {
        done["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["drain"] == drain && d["action"] == action)
            .unwrap_or_else(|| panic!("no {action} of {drain}: {done}"))
            .clone()
    };
    assert!(decision("docs", "reap_crashed")["reason"].as_str().unwrap().contains("is gone"));
    // The run's event names it once (before: "run 2 crashed: run 2: process …").
    let crashed: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'run_crashed'");
    assert!(crashed.len() == 1 && !crashed[0].contains(": run "), "{crashed:?}");
    assert_eq!(decision("meta", "skip")["reason"], "paused (maintenance)");
    assert!(decision("late", "start")["error"].as_str().unwrap().contains("cannot create log folder"));
    // The start names the drain's own process and log file, as its run row does.
    let start = decision("docs", "start");
    assert_eq!(start["pid"].as_i64(), Some(run_pid as i64));
    assert_eq!(start["log_path"].as_str(), Some(run_log.as_str()));

    let human = fixture.drainctl(&["passes"]).run().assert_code(0).stdout.clone();
    let first_line = human.lines().next().unwrap();
    assert!(first_line.starts_with(&format!("pass {}: lock_skipped", skipped["id"])), "{human}");
    // A slot given to the second shows its seconds (before: cut to 23:15).
    assert!(first_line.contains("for slot 2026-11-26 23:15:07 IST"), "{human}");
    assert!(human.contains(&format!("pass {}: done", done["id"])), "{human}");
    assert!(human.contains("1 started, 1 ended, 1 skipped, 1 error"), "{human}");
    assert!(human.contains("paused (maintenance)"), "{human}");
    assert!(human.contains("FAILED: cannot create log folder"), "{human}");
    assert!(human.contains(&format!("[pid {run_pid}, log ")), "{human}");

    let newest = fixture.drainctl(&["passes", "--limit", "1", "--json"]).run().assert_code(0).json();
    assert_eq!(newest["passes"].as_array().unwrap().len(), 1);
    assert_eq!(newest["passes"][0]["status"], "lock_skipped");
    // `runs show` finds the same log file.
    let run = fixture.drainctl(&["runs", "show", &run_id.to_string(), "--json"]).run().assert_code(0).json();
    assert_eq!(run["log_path"].as_str(), Some(run_log.as_str()));
}

#[test]
fn passes_without_history_says_where_passes_come_from() {
    let fixture = Fixture::new(&CONFIG.replace("EXTRA", ""), FIRST);
    let result = fixture.drainctl(&["passes"]).run();
    result.assert_code(0);
    assert!(result.stdout.contains("no supervise pass recorded yet"), "{}", result.stdout);
    assert_eq!(fixture.drainctl(&["passes", "--json"]).run().json(), json!({ "passes": [] }));
}

#[test]
fn passes_refuses_a_limit_that_is_not_a_positive_whole_number_with_64_in_one_line() {
    let fixture = Fixture::new(&CONFIG.replace("EXTRA", ""), FIRST);
    for limit in ["0", "-3", "ten", "10001"] {
        let result = fixture.drainctl(&["passes", "--limit", limit]).run();
        result.assert_code(64);
        assert_eq!(
            result.stderr,
            format!("drainctl: --limit: invalid limit \"{limit}\": use a whole number from 1 to 10000\n"),
            "{limit}"
        );
    }
}

#[test]
fn a_started_drains_log_is_named_after_its_own_pid_and_every_line_is_dated() {
    // The textfile's folder is missing: the drain logs a warning at its end.
    let extra = "metrics_textfile = \"TMPDIR/missing/drainctl.prom\"\n";
    let fixture = Fixture::new(&CONFIG.replace("EXTRA", extra), FIRST);
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "out": "ok" }] }))]);
    let result = fixture.drainctl(&["supervise", "--json"]).run();
    result.assert_code(78);
    let supervise_pid = result.json()["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "start")
        .map(|d| d["pid"].as_i64().unwrap())
        .unwrap();
    let (run_pid, run_log, _) = finished_supervisor_run(&fixture);
    assert_eq!(run_pid as i64, supervise_pid, "supervise reports the drain's own pid");
    // One file, named after the drain's start and pid; nothing left under another pid.
    let folder = fixture.path("logs/docs");
    let names: Vec<String> =
        std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, [format!("20261126T210000Z-{run_pid}.log")]);
    assert_eq!(run_log, folder.join(&names[0]).display().to_string());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&run_log).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&run_log).unwrap();
    assert!(text.contains("metrics_textfile") || text.contains("missing"), "the warning: {text}");
    assert!(text.contains("docs: run "), "the pass's summary: {text}");
    let dated = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z ").unwrap();
    assert!(text.lines().count() >= 2, "{text}");
    for line in text.lines() {
        assert!(dated.is_match(line), "an undated line {line:?} in\n{text}");
    }
}
