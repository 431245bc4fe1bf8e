//! The drain hot path: a small result is committed by the statement that claims the next
//! item (one round trip and one transaction between two workers), or — when that item was
//! claimed ahead — staged and committed beside the next worker; a large one is still
//! staged first; and the controls read between two workers still stop the pass before the
//! next worker starts.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

fn config() -> String {
    "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\n\n[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n\
     max_items_per_pass = 1000\n"
        .to_string()
}

/// Rows inserted into `table` as the statistics see them, once the pass's backend has
/// reported them (it does when it ends): waits until `attempts` shows `attempts` rows.
fn inserted_rows(fixture: &Fixture, table: &str, attempts: i64) -> i64 {
    let inserted = |table: &str| {
        fixture.count(&format!("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = '{table}'"))
    };
    wait_until("the pass's statistics to be reported", Duration::from_secs(20), || {
        inserted("attempts") >= attempts
    });
    inserted(table)
}

#[test]
fn small_results_are_committed_by_the_next_claim_without_staging_and_large_ones_are_staged() {
    // With workers too slow to claim ahead (every one counts as slow here), each small
    // result is committed by the statement that claims the next item, never staged; with
    // quick ones (every one counts as quick), the result of an item whose successor was
    // claimed ahead is staged between the two workers and committed beside the next one.
    for (claim_ahead_below_ms, staged) in [("0", 0), ("600000", 18)] {
        let fixture = Fixture::new(&config(), NOW);
        let items: Vec<(String, serde_json::Value)> = (0..20)
            .map(|i| (format!("item-{i:02}"), json!({ "steps": [{ "out": format!("result {i}") }] })))
            .collect();
        fixture.enqueue("docs", &items);
        let pass = fixture
            .drainctl(&["drain", "docs", "--json"])
            .env("DRAINCTL_CLAIM_AHEAD_BELOW_MS", claim_ahead_below_ms)
            .run();
        pass.assert_code(0);
        assert_eq!(pass.json()["items_done"], 20);
        let results: Vec<Vec<u8>> = fixture.column("SELECT result FROM items ORDER BY key");
        let expected: Vec<Vec<u8>> = (0..20).map(|i| format!("result {i}\n").into_bytes()).collect();
        assert_eq!(results, expected);
        assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'done'"), 20);
        assert_eq!(fixture.count("SELECT items_done::bigint FROM runs"), 20);
        // The first worker has no predecessor to judge quick, and the last one's successor
        // is nothing: results 2 to 19 (18) waited staged.
        assert_eq!(
            inserted_rows(&fixture, "staged_results", 20),
            staged,
            "claim ahead below {claim_ahead_below_ms} ms"
        );
        assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
    }

    // A result over 64 KiB is staged, then committed while the next worker runs.
    let fixture = Fixture::new(&config(), NOW);
    fixture.enqueue(
        "docs",
        &[
            ("big".into(), json!({ "steps": [{ "mib": 1 }] })),
            ("small".into(), json!({ "steps": [{ "out": "small" }] })),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(pass.json()["items_done"], 2);
    assert_eq!(fixture.count("SELECT length(result)::bigint FROM items WHERE key = 'big'"), 1 << 20);
    assert_eq!(inserted_rows(&fixture, "staged_results", 2), 1, "the large result was staged");
    assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
}

#[test]
fn a_pause_while_a_worker_runs_stops_the_pass_before_the_next_worker_and_keeps_the_result() {
    let fixture = Fixture::new(&config(), NOW);
    let (started, go, log) = (fixture.path("started"), fixture.path("go"), fixture.path("starts.log"));
    fixture.enqueue(
        "docs",
        &[
            (
                "a".into(),
                json!({ "steps": [{ "touch": started }, { "wait_for_file": go }, { "out": "result a" }] }),
            ),
            ("b".into(), json!({ "steps": [{ "log": log }, { "out": "result b" }] })),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    // The running worker is recorded on the run, for the reaper.
    wait_until("a's worker to be recorded", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    fixture.drainctl(&["pause", "docs", "--note", "maintenance"]).run().assert_code(0);
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    let json = result.json();
    assert_eq!(
        (json["status"].as_str(), json["items_done"].as_i64()),
        (Some("window_closed"), Some(1)),
        "{json}"
    );
    assert!(json["note"].as_str().unwrap_or_default().contains("drain paused (maintenance)"), "{json}");
    assert_eq!(fixture.item("docs", "a").0, "done");
    let (state, attempts, _) = fixture.item("docs", "b");
    assert_eq!((state.as_str(), attempts), ("pending", 0), "b was never claimed");
    assert!(!log.exists(), "b's worker never started");
}

/// Items a (quick), b (waits for the file `go`, then reports `b_output`) and c (touches
/// `c-ran` if its worker ever starts), on a drain that claims ahead after every worker.
fn claimed_ahead_fixture(b_output: serde_json::Value) -> (Fixture, std::process::Child) {
    let fixture =
        Fixture::new(&config().replace("max_items_per_pass", "max_wait = \"0s\"\nmax_items_per_pass"), NOW);
    let go = fixture.path("go");
    let c_ran = fixture.path("c-ran");
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), json!({ "steps": [{ "out": "a" }] })),
            ("b".into(), json!({ "steps": [{ "wait_for_file": go }, b_output] })),
            ("c".into(), json!({ "steps": [{ "touch": c_ran }, { "out": "c" }] })),
        ],
    );
    let pass =
        fixture.drainctl(&["drain", "docs", "--json"]).env("DRAINCTL_CLAIM_AHEAD_BELOW_MS", "600000").spawn();
    // c is claimed while b's worker runs: the pass claims ahead.
    wait_until("c to be claimed ahead while b runs", Duration::from_secs(20), || {
        fixture.item("docs", "c").0 == "running" && fixture.item("docs", "b").0 == "running"
    });
    (fixture, pass)
}

/// The item claimed ahead went back unstarted: pending, its attempt refunded and recorded
/// as not started, its worker never run.
#[track_caller]
fn assert_given_back_unstarted(fixture: &Fixture) {
    assert_eq!(fixture.item("docs", "c").0, "pending");
    assert_eq!(fixture.item("docs", "c").1, 0, "the attempt is refunded");
    let outcomes: Vec<String> = fixture.column(
        "SELECT a.outcome FROM attempts a JOIN items i ON i.id = a.item_id WHERE i.key = 'c' ORDER BY a.id",
    );
    assert_eq!(outcomes, vec!["not_started".to_string()]);
    assert!(!fixture.path("c-ran").exists(), "c's worker never started");
}

/// The claimed-ahead fixture with its pass killed while b's worker runs, and the drain
/// paused so that the next pass only recovers.
fn killed_while_claimed_ahead() -> Fixture {
    let (fixture, pass) = claimed_ahead_fixture(json!({ "out": "b" }));
    signal(pass.id(), libc::SIGKILL);
    let _ = finished(pass.wait_with_output().unwrap());
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    fixture
}

/// After recovery: b's worker ran, so its attempt counts; c's never started, so it went
/// back as it would at the end of a pass, and its event says so.
#[track_caller]
fn assert_b_counted_and_c_given_back(fixture: &Fixture) {
    let (state, attempts, _) = fixture.item("docs", "b");
    assert_eq!((state.as_str(), attempts), ("pending", 1), "b's worker started: its attempt counts");
    assert_given_back_unstarted(fixture);
    let events: Vec<String> = fixture.column(
        "SELECT e.message FROM events e JOIN items i ON i.id = e.item_id
          WHERE e.kind = 'item_released' AND i.key = 'c'",
    );
    assert!(
        events.len() == 1 && events[0].contains("claimed ahead and its worker was never recorded as started"),
        "{events:?}"
    );
}

#[test]
fn a_drain_killed_while_its_worker_runs_refunds_the_item_it_claimed_ahead() {
    let fixture = killed_while_claimed_ahead();
    // The next pass reaps the crashed run.
    let next = fixture.drainctl(&["drain", "docs", "--json"]).run();
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'crashed'"), 1, "{}", next.stderr);
    assert_b_counted_and_c_given_back(&fixture);
}

#[test]
fn items_a_run_no_longer_running_still_holds_are_released_with_the_one_claimed_ahead_refunded() {
    let fixture = killed_while_claimed_ahead();
    // Its run ended without releasing what it held (as by a reaper that stopped b's worker,
    // ended the run and died right after): the next pass releases the orphans.
    let worker_pid: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    signal(worker_pid as u32, libc::SIGKILL);
    wait_until("b's worker to be gone", Duration::from_secs(10), || !pid_alive(worker_pid));
    fixture.client().execute("UPDATE runs SET status = 'crashed', finished_at = now()", &[]).unwrap();
    fixture.drainctl(&["drain", "docs", "--json"]).run();
    assert_b_counted_and_c_given_back(&fixture);
}

#[test]
fn a_dry_run_plans_the_start_the_refund_of_the_item_claimed_ahead_makes() {
    let fixture = killed_while_claimed_ahead();
    fixture.drainctl(&["resume", "docs"]).run().assert_code(0);
    // Both on their last attempt (the default max_attempts, 5): the recovery dead-letters
    // b, whose worker ran, and gives c back with its attempt refunded — the drain has work.
    fixture.client().execute("UPDATE items SET attempts = 5 WHERE key IN ('b', 'c')", &[]).unwrap();
    let plan = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["supervise", "--json"];
        all.extend_from_slice(args);
        let result = fixture.drainctl(&all).run();
        result.assert_code(0);
        let decisions = result.json()["decisions"].as_array().cloned().unwrap_or_default();
        decisions
            .iter()
            .map(|d| format!("{} {}", d["drain"].as_str().unwrap(), d["action"].as_str().unwrap()))
            .collect()
    };
    let dry = plan(&["--dry-run"]);
    assert!(dry.contains(&"docs start".to_string()), "{dry:?}");
    assert_eq!(fixture.item("docs", "c").0, "running", "a dry run writes nothing");
    let real = plan(&[]);
    assert!(real.contains(&"docs start".to_string()), "{real:?}");
    assert_eq!(fixture.item("docs", "b").0, "dead");
    wait_until("c to be done by the drain started", Duration::from_secs(20), || {
        fixture.item("docs", "c").0 == "done"
    });
}

#[test]
fn an_item_claimed_ahead_of_a_worker_that_turns_out_slow_goes_back_while_it_runs() {
    // A worker counts as quick under 2 s here, so an item claimed ahead waits for it 5 s.
    let fixture = Fixture::new(&config(), NOW);
    let go = fixture.path("go");
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), json!({ "steps": [{ "out": "a" }] })),
            ("b".into(), json!({ "steps": [{ "wait_for_file": go }, { "out": "b" }] })),
            ("c".into(), json!({ "steps": [{ "out": "c" }] })),
        ],
    );
    let pass =
        fixture.drainctl(&["drain", "docs", "--json"]).env("DRAINCTL_CLAIM_AHEAD_BELOW_MS", "2000").spawn();
    let outcomes = "SELECT coalesce(a.outcome, 'running') || ' ' || coalesce(a.error, '')
                      FROM attempts a JOIN items i ON i.id = a.item_id WHERE i.key = 'c' ORDER BY a.id";
    // Before: c stayed claimed (`running`, an attempt charged) for all of b's run.
    wait_until("c to go back while b runs", Duration::from_secs(30), || {
        fixture.count(
            "SELECT count(*) FROM attempts a JOIN items i ON i.id = a.item_id
              WHERE i.key = 'c' AND a.outcome = 'not_started'",
        ) == 1
    });
    assert_eq!(fixture.item("docs", "b").0, "running");
    assert_eq!((fixture.item("docs", "c").0.as_str(), fixture.item("docs", "c").1), ("pending", 0));
    assert_eq!(
        fixture.column::<String>(outcomes),
        ["not_started claimed ahead; given back while a long worker ran"]
    );
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 3, "{}", result.stdout);
    assert_eq!((fixture.item("docs", "c").0.as_str(), fixture.item("docs", "c").1), ("done", 1));
}

#[test]
fn a_pause_during_a_worker_stops_the_pass_before_the_item_claimed_ahead_starts() {
    let (fixture, pass) = claimed_ahead_fixture(json!({ "out": "b" }));
    fixture.drainctl(&["pause", "docs", "--note", "chair"]).run().assert_code(0);
    std::fs::write(fixture.path("go"), "").unwrap();
    let pass = finished(pass.wait_with_output().unwrap());
    pass.assert_code(0);
    let json = pass.json();
    assert_eq!(json["status"], "window_closed", "{json}");
    assert!(json["note"].as_str().unwrap().contains("paused"), "{json}");
    assert_eq!(json["items_done"], 2);
    assert_eq!(fixture.item("docs", "b").0, "done");
    assert_given_back_unstarted(&fixture);
}

#[test]
fn a_quota_hit_stops_the_pass_before_the_item_claimed_ahead_starts() {
    let hit = json!({ "err": "Claude usage limit reached. Your limit will reset at 5pm (UTC)." });
    let (fixture, pass) = claimed_ahead_fixture(hit);
    std::fs::write(fixture.path("go"), "").unwrap();
    let pass = finished(pass.wait_with_output().unwrap());
    let json = pass.json();
    assert_eq!(json["status"], "rate_limited", "{json}");
    assert_eq!(fixture.item("docs", "b").0, "pending", "the hit item goes back");
    assert_given_back_unstarted(&fixture);
}

/// Every completion finds the run's attempt of its item (`item_id = $1 AND run_id = $2`)
/// with a plan made once per pass. Whichever index that plan takes, it reads that one
/// attempt: here the run's index alone, after 1,000 attempts of the same run, as a pass
/// finds it at its 1,000th item. Read by the run alone, every completion read every
/// attempt of its run, and a pass slowed with every item it finished.
#[test]
fn a_completion_reads_one_attempt_however_many_its_run_has_made() {
    let fixture = Fixture::new(&config(), NOW);
    let items: Vec<(String, serde_json::Value)> =
        (0..1000).map(|i| (format!("item-{i:04}"), json!({}))).collect();
    fixture.enqueue("docs", &items);
    let mut client = fixture.client();
    client
        .batch_execute(
            "INSERT INTO attempts (item_id, run_id, attempt, started_at, finished_at, outcome)
             SELECT id, 7, 1, now(), CASE WHEN key <> 'item-0999' THEN now() END,
                    CASE WHEN key <> 'item-0999' THEN 'done' END
               FROM items;
             ANALYZE attempts",
        )
        .unwrap();
    let last: i64 = client.query_one("SELECT id FROM items WHERE key = 'item-0999'", &[]).unwrap().get(0);
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(
        "DROP INDEX attempts_item;
         SET LOCAL plan_cache_mode = force_generic_plan;
         PREPARE finish (bigint, bigint) AS
             UPDATE attempts SET finished_at = now(), outcome = 'done'
              WHERE item_id = $1 AND run_id = $2 AND finished_at IS NULL",
    )
    .unwrap();
    let plan: serde_json::Value = tx
        .query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE finish({last}, 7)"), &[])
        .unwrap()
        .get(0);
    tx.rollback().unwrap();
    let mut scans = Vec::new();
    collect_scans(&plan, &mut scans);
    assert!(!scans.is_empty(), "the attempt was not found through an index: {plan:#}");
    let read: f64 = scans.iter().sum();
    assert_eq!(read, 1.0, "{read} index entries read to find one attempt: {plan:#}");
}

/// The rows each index scan node of an EXPLAIN (ANALYZE, FORMAT JSON) plan returned.
fn collect_scans(node: &serde_json::Value, rows: &mut Vec<f64>) {
    match node {
        serde_json::Value::Object(map) => {
            let index_scan = map
                .get("Node Type")
                .and_then(|kind| kind.as_str())
                .is_some_and(|kind| kind == "Index Scan" || kind == "Bitmap Index Scan");
            if index_scan {
                rows.push(map.get("Actual Rows").and_then(|n| n.as_f64()).unwrap_or(f64::NAN));
            }
            map.values().for_each(|value| collect_scans(value, rows));
        }
        serde_json::Value::Array(values) => values.iter().for_each(|value| collect_scans(value, rows)),
        _ => {}
    }
}

/// Claiming ahead stays inside the item budget: a pass allowed 3 items does 3, and claims
/// none of the others, not even to give them back.
#[test]
fn items_claimed_ahead_never_exceed_max_items_per_pass() {
    let fixture = Fixture::new(&config().replace("max_items_per_pass = 1000", "max_items_per_pass = 3"), NOW);
    let items: Vec<(String, serde_json::Value)> =
        (0..7).map(|i| (format!("item-{i}"), json!({ "steps": [{ "out": "ok" }] }))).collect();
    fixture.enqueue("docs", &items);
    let pass =
        fixture.drainctl(&["drain", "docs", "--json"]).env("DRAINCTL_CLAIM_AHEAD_BELOW_MS", "600000").run();
    pass.assert_code(0);
    let json = pass.json();
    assert_eq!((json["status"].as_str(), json["items_done"].as_i64()), (Some("budget"), Some(3)), "{json}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 3);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts"), 3, "no item beyond the budget was claimed");
}

#[test]
fn an_item_claimed_ahead_and_given_back_unstarted_keeps_its_place_in_the_queue() {
    let fixture =
        Fixture::new(&config().replace("max_items_per_pass = 1000", "max_cost_per_pass = 0.2"), NOW);
    let costs_a_dime = json!({ "steps": [{ "out": r#"{"type":"result","total_cost_usd":0.1,"usage":{"input_tokens":5}}"# }] });
    let items: Vec<(String, serde_json::Value)> =
        (0..5).map(|i| (format!("r{i}"), costs_a_dime.clone())).collect();
    fixture.enqueue("docs", &items);
    // The pass runs later than the enqueue: given back "now", an item would go last.
    fixture.set_now("2026-11-27T10:30:00Z");
    let pass =
        fixture.drainctl(&["drain", "docs", "--json"]).env("DRAINCTL_CLAIM_AHEAD_BELOW_MS", "600000").run();
    pass.assert_code(0);
    assert_eq!(
        (pass.json()["status"].as_str(), pass.json()["items_done"].as_i64()),
        (Some("budget"), Some(2))
    );
    assert_eq!(fixture.item("docs", "r2"), ("pending".to_string(), 0, None), "claimed ahead, given back");
    let listed = fixture.drainctl(&["items", "docs", "--state", "pending", "--json"]).run().json();
    let keys: Vec<&str> =
        listed["items"].as_array().unwrap().iter().map(|item| item["key"].as_str().unwrap()).collect();
    // Before: r3, r4, r2 — and the next pass's budget stop sent r4 behind r2 in turn.
    assert_eq!(keys, ["r2", "r3", "r4"]);
}

#[test]
fn an_items_done_line_is_logged_when_its_commit_is_in_not_when_the_next_worker_ends() {
    // A result over 64 KiB is committed beside the next worker, not by the next claim.
    let fixture = Fixture::new(&config(), NOW);
    let go = fixture.path("go");
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), json!({ "steps": [{ "mib": 1 }] })),
            ("b".into(), json!({ "steps": [{ "wait_for_file": go }, { "out": "b" }] })),
        ],
    );
    let log = fixture.path("pass.log");
    let pass = fixture.drainctl(&["-v", "drain", "docs", "--log-file", log.to_str().unwrap()]).spawn();
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    // Before, the line waited for b's worker, however long it took.
    let started = std::time::Instant::now();
    while !logged().contains("drain docs: item a done") && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (early, a, b) = (logged(), fixture.item("docs", "a").0, fixture.item("docs", "b").0);
    // Let b's worker end whatever happened, so that no pass is left waiting for it.
    std::fs::write(&go, "").unwrap();
    finished(pass.wait_with_output().unwrap()).assert_code(0);
    assert!(early.contains("drain docs: item a done"), "not logged while b's worker ran: {early}");
    assert_eq!((a.as_str(), b.as_str()), ("done", "running"), "b's worker still waited then");
    let logged = logged();
    assert_eq!(logged.matches("item a done").count(), 1, "{logged}");
    assert_eq!(logged.matches("item b done").count(), 1, "{logged}");
}

#[test]
fn a_commit_that_finds_its_run_ended_says_the_claim_was_lost_not_that_the_result_is_damaged() {
    // A result over 64 KiB waits staged for its commit at the pass's end.
    let fixture = Fixture::new(&config(), NOW);
    let (pass, gate, waiting) = a_pass_held_before_its_last_commit(&fixture);
    // Meanwhile the run is ended, as supervise ending it as hung would.
    let ended = fixture.client().execute("UPDATE runs SET status = 'hung', finished_at = now()", &[]);
    std::fs::write(&gate, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    assert!(waiting.exists(), "the pass never reached its commit: {}", result.stderr);
    assert_eq!(ended.unwrap(), 1);
    // Before, the commit read the item as held from before its wait and called the
    // staged result damaged.
    assert!(!result.stderr.contains("did not verify"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'staged_result_discarded'"), 0);
    assert_eq!(
        fixture.count("SELECT count(*) FROM events WHERE kind = 'claim_lost'"),
        1,
        "{}",
        result.stderr
    );
}

#[test]
fn a_staged_result_whose_commit_fails_on_a_lasting_session_is_committed_as_the_run_ends() {
    // The server refuses the commit itself (its disk full; here the statement cancelled)
    // and keeps the session. Before, the pass's end released the item, discarding the
    // staged result with no event, where the error said it stays staged.
    let fixture = Fixture::new(&config(), NOW);
    let (pass, gate, waiting) = a_pass_held_before_its_last_commit(&fixture);
    // The item's row held, the commit waits for it and is cancelled there.
    let mut holder = fixture.client();
    let mut held = holder.transaction().unwrap();
    held.execute("SELECT 1 FROM items WHERE key = 'a' FOR UPDATE", &[]).unwrap();
    std::fs::write(&gate, "").unwrap();
    cancel_the_commit_waiting_for_a_row(&fixture);
    assert!(waiting.exists());
    held.commit().unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    assert!(result.stderr.contains("committed as the run ended"), "{}", result.stderr);
    assert!(!result.stderr.contains("stays staged"), "{}", result.stderr);
    assert_eq!(fixture.item("docs", "a").0, "done");
    assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'staged_result_completed'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'failed'"), 1);
}

/// A pass over one item `a` whose result (over 64 KiB) waits staged for its commit at
/// the pass's end, held just before that commit until the returned gate is written; the
/// pass, the gate and the file that says it waits.
fn a_pass_held_before_its_last_commit(
    fixture: &Fixture,
) -> (std::process::Child, std::path::PathBuf, std::path::PathBuf) {
    fixture.enqueue("docs", &[("a".into(), json!({ "steps": [{ "mib": 1 }] }))]);
    let gate = fixture.path("gate");
    let waiting = fixture.path("gate.waiting");
    let pass = fixture
        .drainctl(&["drain", "docs"])
        .env("DRAINCTL_FAULT", &format!("wait_before_commit:{}", gate.display()))
        .spawn();
    let started = std::time::Instant::now();
    while !waiting.exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    (pass, gate, waiting)
}

/// Wait until a statement of drainctl's waits for a row lock, and cancel it.
fn cancel_the_commit_waiting_for_a_row(fixture: &Fixture) {
    let mut watcher = fixture.client();
    let waiting = "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' \
         AND application_name LIKE 'drainctl%'";
    wait_until("a commit to wait for a row", Duration::from_secs(20), || {
        query_i64(&mut watcher, &format!("SELECT count(*) {waiting}")) == 1
    });
    // That statement, by its start: the next one may wait for the row again at once.
    let started: String =
        watcher.query_one(&format!("SELECT query_start::text {waiting}"), &[]).unwrap().get(0);
    watcher.execute(&format!("SELECT pg_cancel_backend(pid) {waiting}"), &[]).unwrap();
    wait_until("the cancel", Duration::from_secs(20), || {
        let still = format!("SELECT count(*) {waiting} AND query_start::text = '{started}'");
        query_i64(&mut watcher, &still) == 0
    });
}

/// Run a pass over `a` (a result over 64 KiB, staged) and `next`, `a`'s row held so that
/// its commit beside `next`'s worker and again after it both wait and are cancelled; the
/// pass's result, once the row is let go.
fn both_commits_of_a_cancelled(fixture: &Fixture, next: serde_json::Value) -> Finished {
    let (pass, mut holder) = a_pass_whose_staged_row_is_held(fixture, next);
    for _ in 0..2 {
        cancel_the_commit_waiting_for_a_row(fixture);
    }
    holder.batch_execute("COMMIT").unwrap();
    finished(pass.wait_with_output().unwrap())
}

/// A pass over `a` (a result over 64 KiB, staged) and `next`, `a`'s row held by another
/// session (the returned one, in its transaction) from before `a`'s worker ends: every
/// commit of `a` waits for it.
fn a_pass_whose_staged_row_is_held(
    fixture: &Fixture,
    next: serde_json::Value,
) -> (std::process::Child, postgres::Client) {
    let go = fixture.path("go");
    let a = json!({ "steps": [{ "wait_for_file": go }, { "mib": 1 }] });
    fixture.enqueue("docs", &[("a".into(), a), ("b".into(), next)]);
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    let mut holder = fixture.client();
    wait_until("a's worker", Duration::from_secs(20), || {
        query_i64(&mut holder, "SELECT count(*) FROM items WHERE key = 'a' AND state = 'running'") == 1
    });
    holder.batch_execute("BEGIN; SELECT 1 FROM items WHERE key = 'a' FOR NO KEY UPDATE").unwrap();
    std::fs::write(&go, "").unwrap();
    (pass, holder)
}

#[test]
fn the_worker_beside_a_failed_commit_is_settled_before_the_pass_ends() {
    // Before: b's answer, or the limit it met, went with the pass, b given back as never
    // started and called again by the next pass (inside the limit).
    let fixture = Fixture::new(&config(), NOW);
    let result = both_commits_of_a_cancelled(
        &fixture,
        json!({ "steps": [{ "sleep": 1.0 }, { "out": "b's answer" }] }),
    );
    result.assert_code(75);
    assert!(
        result.stderr.contains("the result it staged was committed as the run ended"),
        "{}",
        result.stderr
    );
    assert_eq!(fixture.item("docs", "a").0, "done");
    assert_eq!(fixture.item("docs", "b").0, "done");
    let answer: Vec<Vec<u8>> = fixture.column("SELECT result FROM items WHERE key = 'b'");
    assert_eq!(String::from_utf8_lossy(&answer[0]).trim_end(), "b's answer");

    let fixture = Fixture::new(&config(), NOW);
    let limit = "Claude AI usage limit reached|1795780800";
    let result = both_commits_of_a_cancelled(
        &fixture,
        json!({ "steps": [{ "sleep": 1.0 }, { "err": limit }, { "exit": 1 }] }),
    );
    result.assert_code(75);
    assert_eq!(fixture.item("docs", "a").0, "done");
    let (state, attempts, _) = fixture.item("docs", "b");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 1);
}

#[test]
fn a_commit_beside_a_worker_waiting_for_a_lock_does_not_hold_up_the_workers_timeout() {
    // An operator's open transaction holds the staged item's row. Before: the commit
    // beside the next worker waited for it on the thread that watches that worker, whose
    // item_timeout was not kept for as long as the lock was held.
    let fixture = Fixture::new(&format!("{}item_timeout = \"2s\"\n", config()), NOW);
    let (pass, mut holder) =
        a_pass_whose_staged_row_is_held(&fixture, json!({ "steps": [{ "sleep": 30.0 }] }));
    let mut watcher = fixture.client();
    let mut b_worker = 0;
    wait_until("b's worker", Duration::from_secs(20), || {
        b_worker = query_i64(
            &mut watcher,
            "SELECT coalesce(max(r.worker_pid), 0)::bigint FROM runs r JOIN items i ON i.claimed_by = r.id
              WHERE i.key = 'b' AND i.state = 'running'",
        );
        b_worker != 0
    });
    // b's 2 s timeout is kept while the row is still held.
    wait_until("b's worker to be stopped by its timeout", Duration::from_secs(10), || {
        !pid_alive(b_worker as i32)
    });
    holder.batch_execute("COMMIT").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(fixture.item("docs", "a").0, "done");
    let (_, _, error) = fixture.item("docs", "b");
    assert_eq!(error.as_deref(), Some("timed out after item_timeout 2s"));
}
