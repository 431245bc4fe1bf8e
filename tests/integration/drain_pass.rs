//! `drain NAME`: the worker contract, crash safety, fencing, retries and dead letters,
//! through the real binary, real processes and a real PostgreSQL.

use std::time::Duration;

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

fn config(extra: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\n\n[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n{extra}"
    )
}

fn steps(steps: serde_json::Value) -> serde_json::Value {
    json!({ "steps": steps })
}

#[test]
fn two_concurrent_passes_do_two_hundred_items_exactly_once() {
    let fixture = Fixture::new(&config("concurrency = 2\nmax_items_per_pass = 1000\n"), NOW);
    let items: Vec<(String, serde_json::Value)> = (0..200)
        .map(|i| (format!("item-{i:03}"), json!({ "n": i, "text": format!("payload {i} ✓") })))
        .collect();
    fixture.enqueue("docs", &items);
    let passes: Vec<_> = (0..2).map(|_| fixture.drainctl(&["drain", "docs", "--json"]).spawn()).collect();
    let mut done_by_pass = Vec::new();
    for pass in passes {
        let result = finished(pass.wait_with_output().unwrap());
        result.assert_code(0);
        let json = result.json();
        assert_eq!(json["status"], "drained", "{json}");
        done_by_pass.push(json["items_done"].as_i64().unwrap());
    }
    assert_eq!(done_by_pass.iter().sum::<i64>(), 200);
    assert!(done_by_pass.iter().all(|&n| n > 0), "both passes worked: {done_by_pass:?}");
    let mut client = fixture.client();
    for row in client.query("SELECT key, payload, result, attempts FROM items", &[]).unwrap() {
        let payload: serde_json::Value = row.get(1);
        let result: Vec<u8> = row.get(2);
        let echoed: serde_json::Value = serde_json::from_slice(&result).unwrap();
        assert_eq!(echoed, payload, "result of {}", row.get::<_, String>(0));
        assert_eq!(row.get::<_, i32>(3), 1);
    }
    assert_eq!(query_i64(&mut client, "SELECT count(*) FROM items WHERE state = 'done'"), 200);
    assert_eq!(query_i64(&mut client, "SELECT count(*) FROM attempts WHERE outcome = 'done'"), 200);
    assert_eq!(query_i64(&mut client, "SELECT count(*) FROM staged_results"), 0);
    assert_eq!(query_i64(&mut client, "SELECT count(*) FROM runs WHERE status = 'drained'"), 2);
}

#[test]
fn kill_nine_during_an_item_loses_nothing() {
    let fixture = Fixture::new(&config(""), NOW);
    let started = fixture.path("started");
    let go = fixture.path("go");
    fixture.enqueue(
        "docs",
        &[
            (
                "a".into(),
                steps(json!([{ "touch": started }, { "wait_for_file": go }, { "out": "result a" }])),
            ),
            ("b".into(), json!({ "plain": "b" })),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    let worker_pid: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    signal(pass.id(), libc::SIGKILL);
    let _ = finished(pass.wait_with_output().unwrap());
    assert_eq!(fixture.item("docs", "a").0, "running");
    std::fs::write(&go, "").unwrap();
    // The next pass reaps the crashed run (and its orphaned worker), then does both items.
    let next = fixture.drainctl(&["drain", "docs", "--json"]).run();
    next.assert_code(0);
    assert_eq!(next.json()["items_done"], 2);
    wait_until("the orphaned worker to be gone", Duration::from_secs(10), || !pid_alive(worker_pid));
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("done", 2));
    let result: Vec<u8> =
        fixture.client().query_one("SELECT result FROM items WHERE key = 'a'", &[]).unwrap().get(0);
    assert_eq!(result, b"result a\n");
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'crashed'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_crashed'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 2);
}

/// Start a pass over item `first` (prints "result FIRST") and item `second` (hangs), and
/// wait until the second worker runs and the run has recorded it; its pid.
fn hang_in_the_second_item(fixture: &Fixture, first: &str, second: &str) -> (std::process::Child, i32) {
    let started = fixture.path("started");
    fixture.enqueue(
        "docs",
        &[
            (first.into(), steps(json!([{ "out": format!("result {first}") }]))),
            (second.into(), steps(json!([{ "touch": started }, { "hang": true }]))),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the second worker to start and be recorded", Duration::from_secs(20), || {
        started.exists() && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    let worker_pid: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    (pass, worker_pid)
}

#[test]
fn a_result_is_committed_while_the_next_worker_runs_and_that_worker_is_recorded() {
    let fixture = Fixture::new(&config(""), NOW);
    let (log, go) = (fixture.path("starts.log"), fixture.path("go"));
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), steps(json!([{ "out": "result a" }]))),
            ("b".into(), steps(json!([{ "log": log }, { "wait_for_file": go }, { "out": "result b" }]))),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    // While b's worker waits, a is already done and the run names b's worker.
    wait_until("a to be done and b's worker recorded", Duration::from_secs(20), || {
        fixture.item("docs", "a").0 == "done"
            && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
            && log.exists()
    });
    let logged = std::fs::read_to_string(&log).unwrap();
    let worker_pid: i64 = logged.split("pid=").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let recorded: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    assert_eq!(i64::from(recorded), worker_pid);
    assert_eq!(fixture.item("docs", "b").0, "running");
    assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 2);
    assert_eq!(fixture.count("SELECT items_done::bigint FROM runs"), 2);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL"), 0);
    let results: Vec<Vec<u8>> = fixture.column("SELECT result FROM items ORDER BY key");
    assert_eq!(results, vec![b"result a\n".to_vec(), b"result b\n".to_vec()]);
}

#[test]
fn kill_nine_while_the_next_worker_runs_loses_nothing() {
    let fixture = Fixture::new(&config(""), NOW);
    let (pass, worker_pid) = hang_in_the_second_item(&fixture, "a", "b");
    signal(pass.id(), libc::SIGKILL);
    let _ = finished(pass.wait_with_output().unwrap());
    // b's worker now runs a quick step instead of hanging.
    fixture
        .client()
        .execute("UPDATE items SET payload = '{\"steps\": [{\"out\": \"result b\"}]}' WHERE key = 'b'", &[])
        .unwrap();
    let next = fixture.drainctl(&["drain", "docs", "--json"]).run();
    next.assert_code(0);
    for (key, result) in [("a", "result a\n"), ("b", "result b\n")] {
        let row =
            fixture.client().query_one("SELECT state, result FROM items WHERE key = $1", &[&key]).unwrap();
        assert_eq!(row.get::<_, String>(0), "done", "item {key}");
        assert_eq!(row.get::<_, Vec<u8>>(1), result.as_bytes(), "item {key}");
    }
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'done'"), 2);
    assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
    // The reaper killed the hanging worker the crashed run had recorded.
    wait_until("the orphaned worker to be gone", Duration::from_secs(10), || !pid_alive(worker_pid));
}

/// Run a pass of `docs` that stops dead once it has staged a result, and SIGKILL it there.
fn kill_nine_once_a_result_is_staged(fixture: &Fixture) {
    let pass = fixture.drainctl(&["drain", "docs"]).env("DRAINCTL_FAULT", "hang_after_stage").spawn();
    wait_until("a result to be staged", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM staged_results") == 1
    });
    signal(pass.id(), libc::SIGKILL);
    let _ = finished(pass.wait_with_output().unwrap());
}

#[test]
fn kill_nine_between_staging_and_completion_commits_the_staged_result_once() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({ "big": "x".repeat(100_000) }))]);
    kill_nine_once_a_result_is_staged(&fixture);
    assert_eq!(fixture.item("docs", "a").0, "running");
    let next = fixture.drainctl(&["drain", "docs", "--json"]).run();
    next.assert_code(0);
    // Completed from staging by the reaper, not run again.
    assert_eq!(next.json()["items_done"], 0);
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("done", 1));
    let result: Vec<u8> =
        fixture.client().query_one("SELECT result FROM items WHERE key = 'a'", &[]).unwrap().get(0);
    let echoed: serde_json::Value = serde_json::from_slice(&result).unwrap();
    assert_eq!(echoed["big"].as_str().map(str::len), Some(100_000));
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'staged_result_completed'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
}

#[test]
fn kill_nine_after_staging_gives_the_next_item_back_unstarted_even_on_its_last_attempt() {
    let fixture = Fixture::new(&config("max_attempts = 1\n"), NOW);
    let log = fixture.path("starts.log");
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), json!({ "big": "x".repeat(100_000) })),
            ("b".into(), steps(json!([{ "log": log }, { "out": "result b" }]))),
        ],
    );
    // a's large result is staged by the statement that claims b; the pass dies before
    // b's worker starts.
    kill_nine_once_a_result_is_staged(&fixture);
    assert_eq!(fixture.item("docs", "b").0, "running");
    assert!(!log.exists(), "b's worker never started");
    let next = fixture.drainctl(&["drain", "docs", "--json"]).run();
    next.assert_code(0);
    // Before: the reaper committed a's staged result first, then took b for the item the
    // run was working on and charged it: dead on its only attempt, never run.
    assert_eq!(next.json()["items_done"], 1, "{}", next.stdout);
    for key in ["a", "b"] {
        let (state, attempts, _) = fixture.item("docs", key);
        assert_eq!((state.as_str(), attempts), ("done", 1), "item {key}");
    }
    assert_eq!(
        fixture.column::<String>(
            "SELECT outcome FROM attempts WHERE item_id = (SELECT id FROM items WHERE key = 'b') ORDER BY id"
        ),
        ["not_started", "done"]
    );
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM events WHERE kind = 'item_released'
                AND message LIKE '%it was claimed ahead and its worker was never recorded as started (it may have run): attempt refunded'"
        ),
        1
    );
}

/// As a claim made beside a's worker whose reply the session lost would leave it: b held
/// by run 1, its attempt open, the pass unaware of it.
fn hold_b_as_a_lost_claim(fixture: &Fixture) {
    fixture
        .client()
        .batch_execute(
            "UPDATE items SET state = 'running', claimed_by = 1, claimed_at = now(), attempts = attempts + 1
              WHERE key = 'b';
             INSERT INTO attempts (item_id, run_id, attempt, started_at)
             SELECT id, 1, attempts, now() FROM items WHERE key = 'b';",
        )
        .unwrap();
}

#[test]
fn an_item_a_pass_holds_without_knowing_it_goes_back_unstarted_when_the_pass_ends() {
    let fixture = Fixture::new(&config("max_attempts = 1\n"), NOW);
    let (pass, go) = a_pass_in_a_slow_first_item(&fixture);
    hold_b_as_a_lost_claim(&fixture);
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["status"], "drained", "{}", result.stdout);
    // Before: the run ended holding b; the next sweep released it with its attempt
    // counted, and on its only attempt it was dead without ever running.
    let (state, attempts, _) = fixture.item("docs", "b");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    assert_eq!(
        fixture.column::<String>(
            "SELECT outcome FROM attempts WHERE item_id = (SELECT id FROM items WHERE key = 'b')"
        ),
        ["not_started"]
    );
    assert!(
        result.stderr.contains("item b given back: claimed by a statement whose reply was lost"),
        "{}",
        result.stderr
    );
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    assert_eq!(fixture.item("docs", "b").0, "done");
}

#[test]
fn a_damaged_staged_result_is_discarded_and_the_item_runs_again() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({ "v": 1 }))]);
    kill_nine_once_a_result_is_staged(&fixture);
    // Cut the staged bytes short, as a torn write would.
    fixture
        .client()
        .execute("UPDATE staged_results SET result = substring(result from 1 for 3)", &[])
        .unwrap();
    let next = fixture.drainctl(&["drain", "docs", "--json"]).run();
    next.assert_code(0);
    assert_eq!(next.json()["items_done"], 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'staged_result_discarded'"), 1);
    let result: Vec<u8> =
        fixture.client().query_one("SELECT result FROM items WHERE key = 'a'", &[]).unwrap().get(0);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&result).unwrap(), json!({ "v": 1 }));
}

#[test]
fn a_run_that_lost_its_claim_cannot_commit() {
    let fixture = Fixture::new(&config(""), NOW);
    let started = fixture.path("started");
    let go = fixture.path("go");
    fixture.enqueue(
        "docs",
        &[(
            "a".into(),
            steps(json!([{ "touch": started }, { "wait_for_file": go }, { "out": "stale result" }])),
        )],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    // Another run (id 424242) took the item over, as after a hung-run release.
    fixture.client().execute("UPDATE items SET claimed_by = 424242 WHERE key = 'a'", &[]).unwrap();
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 0);
    let row = fixture
        .client()
        .query_one("SELECT state, claimed_by, result FROM items WHERE key = 'a'", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "running");
    assert_eq!(row.get::<_, Option<i64>>(1), Some(424242));
    assert_eq!(row.get::<_, Option<Vec<u8>>>(2), None);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'claim_lost'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
    let message: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'claim_lost'");
    assert!(message[0].contains("lost its claim on item a (now held by run 424242)"), "{}", message[0]);
}

#[test]
fn a_lost_claim_says_nobody_holds_an_item_released_to_pending() {
    let fixture = Fixture::new(&config(""), NOW);
    let started = fixture.path("started");
    let go = fixture.path("go");
    // A large result (over 64 KiB) is staged, then committed on its own.
    for (round, (key, out)) in
        [("small", "stale result".to_string()), ("large", "x".repeat(70_000))].into_iter().enumerate()
    {
        let _ = std::fs::remove_file(&started);
        let _ = std::fs::remove_file(&go);
        fixture.enqueue(
            "docs",
            &[(key.into(), steps(json!([{ "touch": started }, { "wait_for_file": go }, { "out": out }])))],
        );
        let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
        wait_until("the worker to start", Duration::from_secs(20), || started.exists());
        // Released by supervise after its run was judged hung: pending, claimed by nobody
        // (and not available before the pass ends, so that it does not take it again).
        fixture
            .client()
            .execute(
                "UPDATE items SET state = 'pending', claimed_by = NULL, available_at = 'infinity' WHERE key = $1",
                &[&key],
            )
            .unwrap();
        std::fs::write(&go, "").unwrap();
        let result = finished(pass.wait_with_output().unwrap());
        result.assert_code(0);
        let message: Vec<String> =
            fixture.column("SELECT message FROM events WHERE kind = 'claim_lost' ORDER BY id");
        assert_eq!(message.len(), round + 1, "{key}: {message:?}");
        assert!(
            message[round].contains(&format!("lost its claim on item {key} (now pending, held by nobody)")),
            "{}",
            message[round]
        );
        fixture.client().execute("DELETE FROM items WHERE key = $1", &[&key]).unwrap();
    }
}

#[test]
fn a_failure_after_a_lost_claim_says_who_holds_the_item() {
    let fixture = Fixture::new(&config(""), NOW);
    let started = fixture.path("started");
    let go = fixture.path("go");
    for (round, (key, taken_over, holder)) in [
        ("a", "UPDATE items SET claimed_by = 424242 WHERE key = $1", "now held by run 424242"),
        (
            "b",
            "UPDATE items SET state = 'pending', claimed_by = NULL, available_at = 'infinity' WHERE key = $1",
            "now pending, held by nobody",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = std::fs::remove_file(&started);
        let _ = std::fs::remove_file(&go);
        fixture.enqueue(
            "docs",
            &[(key.into(), steps(json!([{ "touch": started }, { "wait_for_file": go }, { "exit": 1 }])))],
        );
        let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
        wait_until("the worker to start", Duration::from_secs(20), || started.exists());
        // Its run was judged hung and the item given to another run, or back to pending.
        fixture.client().execute(taken_over, &[&key]).unwrap();
        std::fs::write(&go, "").unwrap();
        let result = finished(pass.wait_with_output().unwrap());
        result.assert_code(0);
        assert_eq!(result.json()["items_failed"], 0, "{key}: the failure is not recorded");
        let message: Vec<String> =
            fixture.column("SELECT message FROM events WHERE kind = 'claim_lost' ORDER BY id");
        assert_eq!(message.len(), round + 1, "{key}: {message:?}");
        // Before, it said only "lost its claim on item a; failure not recorded".
        assert!(
            message[round]
                .contains(&format!("lost its claim on item {key} ({holder}); failure not recorded")),
            "{}",
            message[round]
        );
        fixture.client().execute("DELETE FROM items WHERE key = $1", &[&key]).unwrap();
    }
}

#[test]
fn item_timeout_kills_the_whole_process_group_including_a_term_ignoring_child() {
    let fixture = Fixture::new(&config("item_timeout = \"1s\"\n"), NOW);
    fixture
        .enqueue("docs", &[("a".into(), steps(json!([{ "child_ignoring_term": 300 }, { "hang": true }])))]);
    let result = fixture.drainctl(&["drain", "docs", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["items_failed"], 1);
    let row = fixture
        .client()
        .query_one("SELECT state, last_error, stderr_tail FROM items WHERE key = 'a'", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pending");
    assert!(row.get::<_, String>(1).contains("timed out after item_timeout 1s"));
    let stderr = String::from_utf8(row.get::<_, Vec<u8>>(2)).unwrap();
    let child: i32 = stderr
        .lines()
        .find_map(|line| line.strip_prefix("child_pid="))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no child_pid in {stderr}"));
    wait_until("the TERM-ignoring child to die", Duration::from_secs(5), || !pid_alive(child));
    let outcome: String = fixture.client().query_one("SELECT outcome FROM attempts", &[]).unwrap().get(0);
    assert_eq!(outcome, "transient");
}

#[test]
fn a_child_that_cleans_up_after_sigterm_gets_kill_grace_when_its_worker_exits_at_once() {
    let fixture = Fixture::new(&config(""), NOW);
    let cleaned = fixture.path("cleaned");
    // The worker dies on SIGTERM at once; its child takes half a second to clean up.
    let script = fixture.script(
        "cleans-up.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\n\
             ( trap 'sleep 0.5; echo done > {}; exit 0' TERM; while true; do sleep 0.05; done ) &\n\
             sleep 1000\n",
            cleaned.display()
        ),
    );
    fixture.write_config(&format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"30s\"\n\n[[drain]]\nname = \"docs\"\n\
         command = [\"{}\"]\nitem_timeout = \"1s\"\n",
        script.display()
    ));
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    let result = fixture.drainctl(&["drain", "docs", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["items_failed"], 1, "{}", result.stdout);
    // Before, the group got SIGKILL the moment the worker itself had exited.
    assert_eq!(std::fs::read_to_string(&cleaned).unwrap_or_default(), "done\n");
    assert!(fixture.item("docs", "a").2.unwrap_or_default().contains("timed out after item_timeout 1s"));
}

/// Make drain `docs` run the script `text` (written as `name`) as its worker.
fn script_worker(fixture: &Fixture, name: &str, text: &str) {
    fixture.write_config(&script_config(&fixture.script(name, text)));
}

/// The configuration of drain `docs` whose worker is `script`.
fn script_config(script: &std::path::Path) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\n\n[[drain]]\nname = \"docs\"\ncommand = [\"{}\"]\n",
        script.display()
    )
}

/// The pids a worker wrote to `path`, one per line.
fn pids_in(path: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

#[test]
fn children_a_worker_started_outside_its_group_end_with_it() {
    let fixture = Fixture::new(&config(""), NOW);
    let pids = fixture.path("escaped");
    // Two children leave the worker's group and session: one keeps the worker's stdout
    // open, the other is a daemon with its output closed, started through a shell that
    // exits at once (its parent gone before the worker is). The one holding stdout, silent
    // for 2 s, could be a helper that has not written the answer yet: the attempt fails.
    script_worker(
        &fixture,
        "escapes.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\n\
             setsid sleep 120 &\necho $! >> {pids}\n\
             {until_out}\
             ( setsid sh -c 'echo $$ >> {pids}; exec sleep 121' < /dev/null > /dev/null 2>&1 & )\n\
             while [ \"$(wc -l < {pids})\" -lt 2 ]; do sleep 0.01; done\n\
             echo '{{\"ok\": true}}'\n",
            pids = pids.display(),
            until_out = UNTIL_CHILD_LEFT_GROUP
        ),
    );
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let (state, _, error) = fixture.item("docs", "a");
    assert_eq!(state, "pending", "{error:?}");
    assert!(error.as_deref().unwrap_or_default().contains("still held its stdout"), "{error:?}");
    let escaped = pids_in(&pids);
    assert_eq!(escaped.len(), 2, "{escaped:?}");
    // Before, both lived on.
    for pid in escaped {
        wait_until(
            &format!("process {pid}, outside the worker's group, to end"),
            Duration::from_secs(10),
            || !pid_alive(pid),
        );
    }
}

#[test]
fn output_a_helper_of_the_worker_passes_on_after_it_exits_is_all_in_the_result() {
    let fixture = Fixture::new(&config(""), NOW);
    // The shell's output goes through a process substitution (as `exec > >(tee log)`
    // does), which writes each line a little after the shell wrote it: when the shell
    // exits, most of its output is still in the helper. Before: the helper was killed with
    // the rest of the group at the worker's exit, and the item was done with a part of its
    // result, or none.
    script_worker(
        &fixture,
        "through-a-helper.sh",
        "#!/bin/bash
cat > /dev/null
         exec > >(while IFS= read -r line; do sleep 0.005; echo \"$line\"; done)
         seq 1 50
exit 0
",
    );
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let (state, _, error) = fixture.item("docs", "a");
    assert_eq!(state, "done", "{error:?}");
    let result: Vec<Vec<u8>> = fixture.column("SELECT result FROM items WHERE key = 'a'");
    let expected: String = (1..=50).map(|n| format!("{n}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&result[0]), expected);

    // A helper slower than the wait between two lines but writing on: each line gives it
    // the wait again (before this: its first lines only, the item done).
    let slow = fixture.script(
        "through-a-slow-helper.sh",
        "#!/bin/bash\ncat > /dev/null\n\
         exec > >(while IFS= read -r line; do sleep 0.4; echo \"T:$line\"; done)\n\
         seq 1 8\nexit 0\n",
    );
    let big = fixture.script(
        "a-helper-over-the-cap.sh",
        "#!/bin/bash\ncat > /dev/null\n\
         exec > >(while IFS= read -r line; do echo \"$line\"; sleep 0.3; done)\n\
         for i in $(seq 1 30); do printf 'line %03d %0200d\\n' $i 0; done\nexit 0\n",
    );
    fixture.write_config(&format!(
        "{}item_timeout = \"30s\"\n\n[[drain]]\nname = \"short\"\ncommand = [\"{}\"]\nitem_timeout = \"2s\"\n\n\
         [[drain]]\nname = \"capped\"\ncommand = [\"{}\"]\nmax_result_bytes = 1000\nitem_timeout = \"5s\"\n",
        script_config(&slow),
        slow.display(),
        big.display()
    ));
    fixture.enqueue("docs", &[("b".into(), json!({}))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let result: Vec<Vec<u8>> = fixture.column("SELECT result FROM items WHERE key = 'b'");
    let expected: String = (1..=8).map(|n| format!("T:{n}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&result[0]), expected);
    // Still writing at the item's timeout: the result would be cut, and the attempt times
    // out as the worker would have.
    fixture.enqueue("short", &[("c".into(), json!({}))]);
    fixture.drainctl(&["drain", "short"]).run().assert_code(0);
    let (state, _, error) = fixture.item("short", "c");
    assert_eq!(state, "pending", "{error:?}");
    assert!(error.as_deref().unwrap_or_default().contains("timed out"), "{error:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'c' AND result IS NOT NULL"), 0);
    // A helper passing on more than max_result_bytes fails the item on the cap at once,
    // as the worker would (before: the helper was waited for until item_timeout, and the
    // attempt recorded as timed out).
    fixture.enqueue("capped", &[("d".into(), json!({}))]);
    fixture.drainctl(&["drain", "capped"]).run().assert_code(0);
    let (_, _, error) = fixture.item("capped", "d");
    assert!(error.as_deref().unwrap_or_default().contains("result cap (max_result_bytes)"), "{error:?}");
}

#[test]
fn an_answer_whose_stdout_a_silent_leftover_still_held_is_not_kept_and_one_outside_the_group_is_waited_for() {
    let fixture = Fixture::new(&config(""), NOW);
    // A post-processor that writes its first line, then pauses longer than the wait for a
    // silent holder. Before: killed, and the item done with half a JSON answer.
    let paused = fixture.script(
        "paused-helper.sh",
        "#!/bin/bash\ncat > /dev/null\n\
         exec > >(IFS= read -r first; printf '%s\\n' \"$first\"; sleep 4; cat)\n\
         printf '{\"part\": 1,\\n\"part2\": 2}\\n'\nexit 0\n",
    );
    // A helper that left the session (`setsid`) passing the output on, slowly. Before:
    // killed as soon as the worker exited, and the item done with an empty result.
    let outside = fixture.script(
        "helper-outside-the-group.sh",
        "#!/bin/bash\ncat > /dev/null\n\
         exec > >(exec setsid bash -c 'while IFS= read -r l; do sleep 0.3; printf \"%s\\n\" \"$l\"; done')\n\
         seq 1 5\nexit 0\n",
    );
    fixture.write_config(&format!(
        "{}item_timeout = \"30s\"\n\n[[drain]]\nname = \"outside\"\ncommand = [\"{}\"]\nitem_timeout = \"30s\"\n",
        script_config(&paused),
        outside.display()
    ));
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let (state, attempts, error) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("pending", 1), "{error:?}");
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .contains("a process it left still held its stdout, silent since, and was killed"),
        "{error:?}"
    );
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'a' AND result IS NOT NULL"), 0);
    fixture.enqueue("outside", &[("b".into(), json!({}))]);
    fixture.drainctl(&["drain", "outside"]).run().assert_code(0);
    let (state, _, error) = fixture.item("outside", "b");
    assert_eq!(state, "done", "{error:?}");
    let result: Vec<Vec<u8>> = fixture.column("SELECT result FROM items WHERE key = 'b'");
    assert_eq!(String::from_utf8_lossy(&result[0]), "1\n2\n3\n4\n5\n");
}

#[test]
fn a_half_answer_a_silent_leftover_held_is_not_kept_after_quick_items_either() {
    // The worker writes a line on stderr, half its answer on stdout, and exits; a child it
    // left writes the rest 3 s later. After quick items the pass reads the worker's
    // output only once it has seen the exit (it was committing the previous result while
    // the worker ran): the stderr line read then was taken for a heartbeat, and the item
    // done with half its answer (2 of 3 such items, before).
    let fixture = Fixture::new(&config(""), NOW);
    script_worker(
        &fixture,
        "half.sh",
        "#!/bin/sh
p=$(cat)
case \"$p\" in
*quick*) echo quick-ok ;;
         *) (sleep 3; echo ' second half\"}') & echo child >&2; echo '{\"answer\": \"first half,' ;;
esac
",
    );
    let mut items = Vec::new();
    for set in 1..=3 {
        items.push((format!("q{set}-a"), json!("quick")));
        items.push((format!("q{set}-b"), json!("quick")));
        items.push((format!("h{set}"), json!("half")));
    }
    fixture.enqueue("docs", &items);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    for set in 1..=3 {
        let (state, attempts, error) = fixture.item("docs", &format!("h{set}"));
        assert_eq!((state.as_str(), attempts), ("pending", 1), "h{set}: {error:?}");
        assert!(
            error.as_deref().unwrap_or_default().contains("a process it left still held its stdout"),
            "h{set}: {error:?}"
        );
    }
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key LIKE 'h%' AND result IS NOT NULL"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key LIKE 'q%' AND state = 'done'"), 6);
}

#[test]
fn a_worker_that_failed_by_itself_keeps_its_own_error_when_a_leftover_held_its_stdout() {
    // The worker fails with exit 3 and leaves `child` holding its stdout; its error is
    // what the dead item says.
    let dead_item_error = |child: &str| {
        let fixture = Fixture::new(&config(""), NOW);
        let script = fixture.script(
            "fails.sh",
            &format!("#!/bin/sh\ncat >/dev/null\n({child}) &\necho 'fatal: disk on fire' >&2\nexit 3\n"),
        );
        fixture
            .write_config(&format!("{}max_attempts = 1\nitem_timeout = \"120s\"\n", script_config(&script)));
        fixture.enqueue("docs", &[("a".into(), json!({}))]);
        fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
        let (state, _, error) = fixture.item("docs", "a");
        assert_eq!(state, "dead", "{error:?}");
        let outcome: Vec<String> = fixture.column("SELECT outcome FROM attempts");
        assert_eq!(outcome, ["failure"]);
        error.unwrap_or_default()
    };
    let own = "exit code 3: fatal: disk on fire (a process it left still held its stdout";
    // Silent. Before: `transient`, "the worker exited, but a process it left still held
    // its stdout …", its exit code and its own error line gone.
    let error = dead_item_error("sleep 30");
    assert!(error.starts_with(own), "{error}");
    // Writing on: a failed worker's answer is not kept, so it is not waited for up to
    // item_timeout either. Before: `transient`, "timed out after item_timeout".
    let error = dead_item_error("while :; do echo more; sleep 0.5; done");
    assert!(error.starts_with(own), "{error}");
}

#[test]
fn a_child_outside_the_group_that_cannot_be_killed_is_recorded() {
    let fixture = Fixture::new(&config(""), NOW);
    let pids = fixture.path("escaped");
    script_worker(
        &fixture,
        "escapes.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\nsetsid sleep 126 < /dev/null > /dev/null 2>&1 &\necho $! > {}\n\
             {until_out}\
             echo ok\n",
            pids.display(),
            until_out = UNTIL_CHILD_LEFT_GROUP
        ),
    );
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    // The worker ends once its child has left its group; the kill of the child then fails
    // as one that changed its user would (EPERM).
    let result = fixture.drainctl(&["drain", "docs"]).env("DRAINCTL_FAULT", "orphan_kill_fails").run();
    let child = pids_in(&pids)[0];
    signal(child as u32, libc::SIGKILL);
    result.assert_code(0);
    assert_eq!(fixture.item("docs", "a").0, "done");
    let message: String = fixture
        .client()
        .query_one("SELECT message FROM events WHERE kind = 'kill_failed' AND item_id IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(message.contains(&format!("could not kill process {child}")), "{message}");
    assert!(result.stderr.contains(&format!("could not kill process {child}")), "{}", result.stderr);
    // Nor is it waited for: before, every sweep after it (the item's, the pass's end) waited
    // its whole limit for it to die.
    assert!(!result.stderr.contains("did not end within"), "{}", result.stderr);
}

#[test]
fn a_child_outside_the_group_whose_parent_was_in_it_is_gone_before_the_next_item() {
    let fixture = Fixture::new(&config(""), NOW);
    let pids = fixture.path("escaped");
    // Item a leaves a child in its group which has started one outside it; item b checks
    // for 5 s that the one outside is gone.
    script_worker(
        &fixture,
        "escapes.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\n\
             if [ \"$DRAIN_ITEM_KEY\" = a ]; then\n\
               sh -c 'setsid sh -c \"echo \\$\\$ >> {pids}; exec sleep 124\" < /dev/null > /dev/null 2>&1 & exec sleep 125' \
                 < /dev/null > /dev/null 2>&1 &\n\
               while [ ! -s {pids} ]; do sleep 0.01; done\n\
               echo a; exit 0\n\
             fi\n\
             pid=$(cat {pids}); i=0\n\
             while kill -0 \"$pid\" 2> /dev/null; do\n\
               i=$((i + 1)); [ $i -gt 500 ] && {{ echo \"process $pid lives on\" >&2; exit 1; }}; sleep 0.01\n\
             done\n\
             echo b\n",
            pids = pids.display()
        ),
    );
    fixture.enqueue("docs", &[("a".into(), json!({})), ("b".into(), json!({}))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    // Before, it was found only once item b's worker had ended.
    for key in ["a", "b"] {
        let (state, _, error) = fixture.item("docs", key);
        assert_eq!(state, "done", "item {key}: {error:?}");
    }
}

#[test]
fn a_worker_starting_short_lived_daemons_leaves_no_zombies_while_it_runs() {
    let fixture = Fixture::new(&config(""), NOW);
    // 20 daemons that exit at once, each through a shell that exits first; then the
    // worker waits up to 5 s for its drain to have no zombie child left.
    script_worker(
        &fixture,
        "daemons.sh",
        "#!/bin/sh\ncat > /dev/null\n\
         for n in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do\n\
           ( setsid sh -c 'exit 0' < /dev/null > /dev/null 2>&1 & )\n\
         done\n\
         zombies() {\n\
           n=0; for child in $(cat /proc/$PPID/task/$PPID/children); do\n\
             [ \"$(cut -d ' ' -f 3 /proc/$child/stat 2> /dev/null)\" = Z ] && n=$((n + 1))\n\
           done; echo $n\n\
         }\n\
         i=0; sleep 0.2\n\
         while [ \"$(zombies)\" != 0 ]; do\n\
           i=$((i + 1)); [ $i -gt 100 ] && { echo \"$(zombies) zombies\" >&2; exit 1; }; sleep 0.05\n\
         done\n\
         echo ok\n",
    );
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    // Before, the 20 stayed zombies of the pass until the worker ended.
    let (state, _, error) = fixture.item("docs", "a");
    assert_eq!(state, "done", "{error:?}");
}

#[test]
fn twenty_mib_of_output_fails_the_item_with_bounded_memory() {
    let fixture = Fixture::new(&config(""), NOW);
    // What a pass of one small item takes on this build: the base the 20 MiB adds to.
    fixture.enqueue("docs", &[("small".into(), steps(json!([{ "out": "ok" }])))]);
    let (result, base_kib) = wait_with_peak_memory(fixture.drainctl(&["drain", "docs", "--json"]).spawn());
    result.assert_code(0);
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "mib": 20 }])))]);
    let (result, peak_kib) = wait_with_peak_memory(fixture.drainctl(&["drain", "docs", "--json"]).spawn());
    result.assert_code(0);
    let (state, _, error) = fixture.item("docs", "a");
    assert_eq!(state, "pending");
    assert!(error.unwrap().contains("output exceeded the 16777216 byte result cap"));
    // Default cap is 16 MiB; the pass must not have held the 20 MiB: it adds at most the
    // cap and a little.
    assert!(peak_kib - base_kib < 20 * 1024, "peak RSS {peak_kib} KiB, {base_kib} KiB for a small item");
}

#[test]
fn non_utf8_output_is_kept_as_bytes() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "binary": true }])))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let result: Vec<u8> =
        fixture.client().query_one("SELECT result FROM items WHERE key = 'a'", &[]).unwrap().get(0);
    assert_eq!(result, vec![0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x0a]);
}

#[test]
fn a_missing_worker_binary_exits_78_and_the_item_keeps_its_attempts() {
    let fixture =
        Fixture::new("[[drain]]\nname = \"docs\"\ncommand = [\"/nonexistent/worker-bin\", \"-p\"]\n", NOW);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    let result = fixture.drainctl(&["drain", "docs"]).run();
    result.assert_code(78);
    assert!(result.stderr.contains("/nonexistent/worker-bin"), "{}", result.stderr);
    assert!(result.stderr.contains("not found"), "{}", result.stderr);
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    let status: String = fixture.client().query_one("SELECT status FROM runs", &[]).unwrap().get(0);
    assert_eq!(status, "failed");
}

#[test]
fn a_worker_not_found_on_path_is_named_with_the_path_searched() {
    // Under cron the PATH is the crontab's, not the shell's the worker was tried in:
    // before, the line said only "not on PATH" and sent the operator to `command`.
    let fixture = Fixture::new("[[drain]]\nname = \"docs\"\ncommand = [\"drainctl-no-such-worker\"]\n", NOW);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    fixture.drainctl(&["drain", "docs"]).env("PATH", "/usr/bin:/bin").run().assert_code(78);
    let said: Vec<String> = fixture.column("SELECT message FROM events WHERE kind = 'worker_not_started'");
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with(
            "worker command \"drainctl-no-such-worker\" not found on PATH (/usr/bin:/bin); fix `command`"
        ),
        "{said:?}"
    );
    // A drain's own `env` PATH is the one searched.
    fixture.write_config(
        "[[drain]]\nname = \"docs\"\ncommand = [\"drainctl-no-such-worker\"]\nenv = { PATH = \"/opt/llm/bin\" }\n",
    );
    fixture.drainctl(&["drain", "docs"]).env("PATH", "/usr/bin:/bin").run().assert_code(78);
    let said: Vec<String> = fixture
        .column("SELECT message FROM events WHERE kind = 'worker_not_started' ORDER BY id DESC LIMIT 1");
    assert!(said[0].contains("not found on PATH (/opt/llm/bin)"), "{said:?}");
}

#[test]
fn failures_retry_on_the_backoff_schedule_then_dead_letter() {
    let fixture =
        Fixture::new(&config("max_attempts = 3\nretry_backoff = { base = \"1m\", max = \"90s\" }\n"), NOW);
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "err": "boom: bad input" }, { "exit": 3 }])))]);
    let available_after = |fixture: &Fixture| -> i64 {
        fixture.count("SELECT extract(epoch FROM available_at - '2026-11-27T10:00:00Z'::timestamptz)::bigint FROM items")
    };
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let first = available_after(&fixture);
    assert!((48..=60).contains(&first), "first retry after {first}s");
    // Not available yet: the next pass finds nothing.
    let idle = fixture.drainctl(&["drain", "docs", "--json"]).run();
    assert_eq!(idle.json()["items_failed"], 0);
    fixture.set_now("2026-11-27T10:01:00Z");
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let second = available_after(&fixture) - 60;
    assert!((72..=90).contains(&second), "second retry after {second}s (capped at 90s)");
    fixture.set_now("2026-11-27T10:03:00Z");
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let (state, attempts, error) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("dead", 3));
    assert_eq!(error.as_deref(), Some("exit code 3: boom: bad input"));
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'item_dead_lettered'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'failure'"), 3);
}

#[test]
fn a_worker_that_prints_a_nul_byte_is_dead_lettered_not_rerun_for_ever() {
    // PostgreSQL's text and jsonb take no U+0000; a failure quoting one used to fail its
    // own record, so the item went back and the worker ran again on every pass.
    let script = r#"if [ "$DRAIN_ITEM_KEY" = a ]; then printf 'a\000b\nlast\000line\n' >&2;
        else printf 'Claude AI usage limit reached\000|1764237600\n' >&2; fi; exit 1"#;
    let config = format!(
        "[defaults]\ntimezone = \"UTC\"\n\n[[drain]]\nname = \"docs\"\ncommand = [\"/bin/sh\", \"-c\", {}]\nmax_attempts = 1\nmax_wait = \"0s\"\n",
        serde_json::to_string(script).unwrap()
    );
    let fixture = Fixture::new(&config, NOW);
    fixture.enqueue("docs", &[("a".into(), json!(1)), ("b".into(), json!(2))]);
    let first = fixture.drainctl(&["drain", "docs"]).run();
    first.assert_code(0);
    let (state, attempts, error) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("dead", 1), "{}", first.stderr);
    assert_eq!(error.as_deref(), Some("exit code 1: last\u{fffd}line"));
    let tails: Vec<String> =
        fixture.column("SELECT data->>'stderr_tail' FROM events WHERE kind = 'item_dead_lettered'");
    assert_eq!(tails, vec!["a\u{fffd}b\nlast\u{fffd}line\n".to_string()]);
    // The quota hit quoting a NUL is recorded as one, with its backoff.
    let reasons: Vec<String> = fixture.column("SELECT reason FROM quota_backoffs");
    assert_eq!(reasons.len(), 1, "{}", first.stderr);
    assert!(reasons[0].contains('\u{fffd}'), "{reasons:?}");
    assert_eq!(fixture.item("docs", "b").0, "pending");
}

#[test]
fn a_worker_runs_in_the_configured_zone_unless_its_env_sets_tz() {
    // drainctl reads a limit message's bare clock time ("try again at 6:44 PM") in that
    // zone, so the worker must print it there, whatever zone drainctl itself runs in.
    let text = config("").replace("timezone = \"UTC\"", "timezone = \"Europe/Warsaw\"")
        + "\n[[drain]]\nname = \"ny\"\ncommand = [\"FAKE_WORKER\"]\nenv = { TZ = \"America/New_York\" }\n";
    let fixture = Fixture::new(&text, NOW);
    let item = steps(json!([{ "env": "TZ" }]));
    fixture.enqueue("docs", &[("a".into(), item.clone())]);
    fixture.enqueue("ny", &[("a".into(), item)]);
    for drain in ["docs", "ny"] {
        fixture.drainctl(&["drain", drain]).env("TZ", "Asia/Tokyo").run().assert_code(0);
    }
    let results: Vec<String> =
        fixture.column("SELECT drain || ' ' || convert_from(result, 'UTF8') FROM items ORDER BY drain");
    assert_eq!(results, vec!["docs TZ=Europe/Warsaw\n".to_string(), "ny TZ=America/New_York\n".to_string()]);
}

#[test]
fn a_second_pass_with_no_free_slot_is_lock_skipped() {
    let fixture = Fixture::new(&config(""), NOW);
    let started = fixture.path("started");
    let go = fixture.path("go");
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "touch": started }, { "wait_for_file": go }])))]);
    let first = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    let second = fixture.drainctl(&["drain", "docs", "--json"]).run();
    second.assert_code(0);
    assert_eq!(second.json()["status"], "lock_skipped");
    std::fs::write(&go, "").unwrap();
    finished(first.wait_with_output().unwrap()).assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'lock_skipped'"), 1);
}

#[test]
fn a_pass_started_under_a_higher_concurrency_still_counts_after_it_is_lowered() {
    let fixture = Fixture::new(&config("concurrency = 2\nmax_items_per_pass = 1\n"), NOW);
    let (go_first, go_second) = (fixture.path("go-first"), fixture.path("go-second"));
    let mut started = Vec::new();
    let mut items = Vec::new();
    for (key, go) in [("a", &go_first), ("b", &go_second), ("c", &go_first)] {
        let touched = fixture.path(&format!("started-{key}"));
        items.push((key.to_string(), steps(json!([{ "touch": touched }, { "wait_for_file": go }]))));
        started.push(touched);
    }
    fixture.enqueue("docs", &items);
    let first = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the first worker to start", Duration::from_secs(20), || started[0].exists());
    let second = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the second worker to start", Duration::from_secs(20), || started[1].exists());
    // The operator lowers concurrency to 1; the first pass, in slot 0, ends.
    fixture.write_config(&config("concurrency = 1\nmax_items_per_pass = 1\n"));
    std::fs::write(&go_first, "").unwrap();
    finished(first.wait_with_output().unwrap()).assert_code(0);
    // The second pass, in slot 1, still runs: it is the one pass concurrency 1 allows.
    let third = fixture.drainctl(&["drain", "docs", "--json"]).run();
    third.assert_code(0);
    assert_eq!(third.json()["status"], "lock_skipped", "{}", third.stdout);
    assert!(!started[2].exists(), "a third item started beside the second pass");
    std::fs::write(&go_second, "").unwrap();
    finished(second.wait_with_output().unwrap()).assert_code(0);
    // With the second pass gone, the slot is free again.
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    assert_eq!(fixture.item("docs", "c").0, "done");
}

#[test]
fn a_pass_stopped_while_its_commit_waits_for_a_row_lock_starts_no_worker_after() {
    // Before: the commit of `a` waited for another session's row lock, the SIGTERM came
    // meanwhile, and once the lock was let go the pass claimed `b` and started its worker
    // (a paid call) before stopping it.
    let fixture = Fixture::new(&config(""), NOW);
    let (started, go, b_started) = (fixture.path("started"), fixture.path("go"), fixture.path("b-started"));
    fixture.enqueue(
        "docs",
        &[
            (
                "a".into(),
                steps(json!([{ "touch": started }, { "wait_for_file": go }, { "out": "result a" }])),
            ),
            ("b".into(), steps(json!([{ "touch": b_started }, { "out": "result b" }]))),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    let mut holder = fixture.client();
    let mut lock = holder.transaction().unwrap();
    lock.execute("SELECT 1 FROM items WHERE key = 'a' FOR UPDATE", &[]).unwrap();
    std::fs::write(&go, "").unwrap();
    wait_until("the pass to wait for the row lock", Duration::from_secs(20), || {
        fixture.count(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name LIKE 'drainctl%'",
        ) == 1
    });
    signal(pass.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    lock.commit().unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    assert!(result.stderr.contains("interrupted by SIGTERM"), "{}", result.stderr);
    assert!(!b_started.exists(), "b's worker started after the stop");
    assert_eq!(fixture.item("docs", "a").0, "done");
    assert_eq!(fixture.item("docs", "b"), ("pending".to_string(), 0, None));
    assert_eq!(
        fixture.column::<Option<String>>(
            "SELECT outcome FROM attempts WHERE item_id = (SELECT id FROM items WHERE key = 'b')"
        ),
        [Some("not_started".to_string())]
    );
}

#[test]
fn sigterm_stops_the_worker_releases_the_item_and_finishes_the_run() {
    let fixture = Fixture::new(&config(""), NOW);
    let (pass, worker_pid) = hang_in_the_second_item(&fixture, "first", "a");
    signal(pass.id(), libc::SIGTERM);
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    assert!(result.stderr.contains("interrupted by SIGTERM"), "{}", result.stderr);
    assert!(!pid_alive(worker_pid), "worker still alive");
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    // The item before it keeps its result.
    let (state, attempts, _) = fixture.item("docs", "first");
    assert_eq!((state.as_str(), attempts), ("done", 1));
    let row = fixture.client().query_one("SELECT status, note, items_done FROM runs", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row.get::<_, String>(1).contains("interrupted"));
    assert_eq!(row.get::<_, i32>(2), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
}

#[test]
fn a_stop_that_reaches_the_worker_and_the_pass_together_keeps_no_answer_and_charges_no_attempt() {
    // A host shutting down, pm2's default `treekill`, `kill` given both pids: the worker
    // may end before the pass hears the same stop. Before: a worker that exits 0 on
    // SIGTERM (as gemini-cli does) had its half answer committed as the item's result, and
    // one killed by the signal was charged its attempt, dead at `max_attempts = 1`.
    let stopped_together = |trap: &str, pause_before_the_pass: Duration| {
        let fixture = Fixture::new(&config(""), NOW);
        let started = fixture.path("started");
        let worker = fixture.script(
            "worker",
            &format!(
                "#!/bin/sh\n{trap}\ncat >/dev/null\ntouch {}\nsleep 60 &\nwait\necho full answer\n",
                started.display()
            ),
        );
        fixture.write_config(&format!("{}max_attempts = 1\n", script_config(&worker)));
        fixture.enqueue("docs", &[("a".into(), json!({})), ("b".into(), json!({}))]);
        let pass = fixture.drainctl(&["drain", "docs"]).spawn();
        wait_until("the worker to start and be recorded", Duration::from_secs(20), || {
            started.exists() && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
        });
        let worker_pid: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
        // The worker's whole group first, then the pass.
        unsafe {
            libc::kill(-worker_pid, libc::SIGTERM);
        }
        std::thread::sleep(pause_before_the_pass);
        signal(pass.id(), libc::SIGTERM);
        let result = finished(pass.wait_with_output().unwrap());
        result.assert_code(75);
        assert!(result.stderr.contains("interrupted by SIGTERM while running item a"), "{}", result.stderr);
        let (state, attempts, _) = fixture.item("docs", "a");
        assert_eq!((state.as_str(), attempts), ("pending", 0), "{}", result.stderr);
        assert_eq!(fixture.count("SELECT count(*) FROM items WHERE result IS NOT NULL"), 0);
        // No second worker was started after the stop began.
        let (state, attempts, _) = fixture.item("docs", "b");
        assert_eq!((state.as_str(), attempts), ("pending", 0), "{}", result.stderr);
        assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome <> 'interrupted'"), 0);
    };
    // Exits 0 on SIGTERM with what it has so far.
    stopped_together("trap 'echo partial; exit 0' TERM", Duration::ZERO);
    // Dies of the signal; the pass hears its own a moment later.
    stopped_together("", Duration::from_millis(100));
}

#[test]
fn a_stop_that_reaches_a_client_waiting_for_its_retry_and_the_pass_together_records_the_limit() {
    // gemini-cli prints its per-minute limit, waits out its own retry, and exits 0 on
    // SIGTERM; a host shutting down signals it and the pass. Before: the attempt was
    // `interrupted`, the limit not recorded, and the next pass called inside the window.
    let fixture = Fixture::new(&config(""), NOW);
    let started = fixture.path("started");
    let script = gemini_waiting_for_its_retry("34.101299s", "34625ms", "printf 'partial answer'\n", &started);
    let worker = fixture.script("gemini-like", &script);
    fixture.write_config(&format!("{}quota_profile = \"gemini\"\n", script_config(&worker)));
    fixture.enqueue("docs", &[("g".into(), json!({}))]);
    let pass = PassWithItsClientWaiting::start(&fixture);
    wait_until("the worker recorded", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    let worker_pid: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    unsafe {
        libc::kill(-worker_pid, libc::SIGTERM);
    }
    signal(pass.pass.id(), libc::SIGTERM);
    let result = pass.finished();
    assert!(started.exists());
    assert_stopped_with_the_limit_recorded(&fixture, &result);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE result IS NOT NULL"), 0);
}

/// The pass ended 75 on its stop, item `g` given back (attempt refunded) and the limit its
/// worker printed recorded as a backoff.
fn assert_stopped_with_the_limit_recorded(fixture: &Fixture, result: &Finished) {
    result.assert_code(75);
    assert!(result.stderr.contains("its quota hit is recorded"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 1);
    assert_eq!(fixture.item("docs", "g"), ("pending".to_string(), 0, None));
}

#[test]
fn a_pass_stopped_after_the_server_ended_its_session_reconnects_once_and_records_what_it_holds() {
    // The session ended while a client waited for its own retry (a restart that is over
    // by now), then the pass is stopped. Before: "interrupted by SIGTERM while
    // reconnecting", no try at all: the limit dropped, the run left `running`, the item
    // charged as a crash when reaped.
    let fixture = Fixture::new(&config(""), NOW);
    let started = fixture.path("started");
    let worker =
        fixture.script("gemini-like", &gemini_waiting_for_its_retry("34.101299s", "34625ms", "", &started));
    fixture.write_config(&format!("{}quota_profile = \"gemini\"\n", script_config(&worker)));
    fixture.enqueue("docs", &[("g".into(), json!({}))]);
    let pass = PassWithItsClientWaiting::start(&fixture);
    wait_until("the client to wait for its retry", Duration::from_secs(20), || {
        started.exists() && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    let ended = fixture.count(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'drainctl'",
    );
    assert_eq!(ended, 1, "the pass's session");
    std::thread::sleep(Duration::from_millis(200));
    signal(pass.pass.id(), libc::SIGTERM);
    let result = pass.finished();
    assert_stopped_with_the_limit_recorded(&fixture, &result);
    assert_eq!(fixture.column::<String>("SELECT status FROM runs"), ["failed"], "{}", result.stderr);
}

#[test]
fn a_stop_that_comes_while_a_heartbeat_the_worker_left_runs_keeps_the_whole_answer() {
    // The worker printed its whole answer and exited 0; a child it left writes on stderr
    // only (a forgotten heartbeat), which the pass waits out for 2 s. A stop a second
    // after the worker's exit is no part of its end. Before: the answer was thrown away
    // and the item given back, to be paid for again.
    let fixture = Fixture::new(&config(""), NOW);
    let exited = fixture.path("exited");
    let script = format!(
        "#!/bin/bash\ncat >/dev/null\n( exec >/dev/null; while :; do echo heartbeat >&2; sleep 0.3; done ) &\n\
         echo '{{\"answer\":\"complete\"}}'\ntouch {}\nexit 0\n",
        exited.display()
    );
    let worker = fixture.script("heartbeat", &script);
    fixture.write_config(&script_config(&worker));
    fixture.enqueue("docs", &[("k".into(), json!({}))]);
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to exit", Duration::from_secs(20), || exited.exists());
    std::thread::sleep(Duration::from_millis(1200));
    signal(pass.id(), libc::SIGTERM);
    let result = finished(pass.wait_with_output().unwrap());
    let (state, attempts, _) = fixture.item("docs", "k");
    assert_eq!((state.as_str(), attempts), ("done", 1), "{}", result.stderr);
    let answer: Vec<u8> = fixture.client().query_one("SELECT result FROM items", &[]).unwrap().get(0);
    assert_eq!(answer, b"{\"answer\":\"complete\"}\n");
}

/// Start a pass of `docs`, wait for its worker to make `file` (as `what`), give the pass a
/// beat to read what the worker printed before, and stop it with SIGTERM.
fn sigterm_the_pass_once(fixture: &Fixture, file: &std::path::Path, what: &str) -> Finished {
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until(what, Duration::from_secs(20), || file.exists());
    std::thread::sleep(Duration::from_millis(300));
    signal(pass.id(), libc::SIGTERM);
    finished(pass.wait_with_output().unwrap())
}

#[test]
fn sigterm_while_a_client_waits_for_its_own_retry_records_the_limit_it_printed() {
    let fixture = Fixture::new(&config("quota_profile = \"http\"\n"), NOW);
    let started = fixture.path("started");
    fixture.enqueue(
        "docs",
        &[(
            "r30".into(),
            steps(json!([
                { "err": "Error: got status 429 Too Many Requests from the API." },
                { "err": "Retrying in 30s" },
                { "touch": started },
                { "sleep": 30 },
                { "out": "ok" }
            ])),
        )],
    );
    let result = sigterm_the_pass_once(&fixture, &started, "the client to wait for its retry");
    result.assert_code(75);
    // Before: the 429 was dropped with the attempt, and the next pass called the vendor
    // again at once, inside the window the client announced.
    assert!(result.stderr.contains("its quota hit is recorded"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 1);
    let (state, attempts, _) = fixture.item("docs", "r30");
    assert_eq!((state.as_str(), attempts), ("pending", 0));

    // Stopped once its wait was over, it had retried: nothing is recorded. Before: the
    // 429 it printed before its retry, a 5-minute backoff.
    let fixture = Fixture::new(&config("quota_profile = \"http\"\n"), NOW);
    let retried = fixture.path("retried");
    fixture.enqueue(
        "docs",
        &[(
            "r1".into(),
            steps(json!([
                { "err": "Error: got status 429 Too Many Requests from the API." },
                { "err": "Retrying in 0.2s" },
                { "sleep": 0.2 },
                { "touch": retried },
                { "sleep": 30 },
                { "out": "ok" }
            ])),
        )],
    );
    let result = sigterm_the_pass_once(&fixture, &retried, "the client to retry");
    result.assert_code(75);
    assert!(!result.stderr.contains("its quota hit is recorded"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
}

#[test]
fn sigterm_while_codex_sleeps_out_a_429_it_named_no_wait_for_records_the_limit() {
    // codex exec --json given a long `retry-after`: one notice naming no wait, then silence.
    let fixture = Fixture::new(&config("quota_profile = \"openai\"\n"), NOW);
    let started = fixture.path("started");
    let notice = r#"{"type":"error","message":"Reconnecting... 1/2 (exceeded retry limit, last status: 429 Too Many Requests, request id: req_x)"}"#;
    fixture.enqueue(
        "docs",
        &[(
            "c1".into(),
            steps(json!([{ "out": notice }, { "touch": started }, { "sleep": 30 }, { "out": "ok" }])),
        )],
    );
    let result = sigterm_the_pass_once(&fixture, &started, "the client to sleep");
    result.assert_code(75);
    // Before: nothing recorded, the next pass calling the vendor again at once.
    assert!(result.stderr.contains("its quota hit is recorded"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 1);
    let (state, attempts, _) = fixture.item("docs", "c1");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
}

/// A gemini-cli stand-in: it prints a per-minute limit stating `wait`, then `then` (a
/// start of its answer, say), makes `started`, sits its retry out (`retry`), and exits 0
/// on SIGTERM.
fn gemini_waiting_for_its_retry(wait: &str, retry: &str, then: &str, started: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\ntrap 'exit 0' TERM\ncat >/dev/null\n\
         echo 'Attempt 1 failed: You exceeded your current quota, please check your plan and billing details.' >&2\n\
         echo '* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, \
         limit: 5, model: gemini-2.5-pro' >&2\n\
         echo 'Please retry in {wait}.' >&2\n\
         echo 'Suggested retry after 34s.. Retrying after {retry}...' >&2\n\
         {then}touch {}\nsleep 60 &\nwait\n",
        started.display()
    )
}

/// A pass of drain `docs` logging (`-v`) to its own file, once it has read its client's
/// notice of a short wait: signalled before, under load, the pass would not know of it yet.
struct PassWithItsClientWaiting {
    pass: std::process::Child,
    log: std::path::PathBuf,
}

impl PassWithItsClientWaiting {
    fn start(fixture: &Fixture) -> PassWithItsClientWaiting {
        let log = fixture.path("pass.log");
        let pass = fixture.drainctl(&["-v", "drain", "docs", "--log-file", log.to_str().unwrap()]).spawn();
        wait_until("the pass to read the client's wait", Duration::from_secs(20), || {
            std::fs::read_to_string(&log).is_ok_and(|logged| logged.contains("for its own retry: left to it"))
        });
        PassWithItsClientWaiting { pass, log }
    }

    /// The pass's end, its log read as its stderr.
    fn finished(self) -> Finished {
        let mut result = finished(self.pass.wait_with_output().unwrap());
        result.stderr = std::fs::read_to_string(&self.log).unwrap_or_default();
        result
    }
}

#[test]
fn sigterm_during_a_short_retry_a_client_waits_out_itself_records_the_limit_for_the_rest_of_it() {
    // gemini-cli on a per-minute limit: it states the wait, sleeps it out itself (short
    // enough for the pass to let it), and exits 0 on SIGTERM. Claude Code's `api_retry`
    // events are read the same way. Before: the attempt was `interrupted`, no backoff, and
    // the next pass called the vendor inside the window.
    // A client that states a wait of `wait`, sits it out, and is sent SIGTERM `after` it
    // said so.
    let stopped_during_its_wait = |wait: &str, retry: &str, after: Duration| {
        let fixture = Fixture::new(&config(""), NOW);
        let started = fixture.path("started");
        let script = gemini_waiting_for_its_retry(wait, retry, "", &started);
        let worker = fixture.script("gemini-like", &script);
        fixture.write_config(&format!("{}quota_profile = \"gemini\"\n", script_config(&worker)));
        fixture.enqueue("docs", &[("g".into(), json!({}))]);
        let pass = PassWithItsClientWaiting::start(&fixture);
        assert!(started.exists());
        std::thread::sleep(after);
        signal(pass.pass.id(), libc::SIGTERM);
        let result = pass.finished();
        result.assert_code(75);
        (fixture, result)
    };
    let (fixture, result) = stopped_during_its_wait("34.101299s", "34625ms", Duration::from_millis(300));
    assert!(result.stderr.contains("its quota hit is recorded"), "{}", result.stderr);
    let until: String = fixture
        .client()
        .query_one("SELECT to_char(backoff_until AT TIME ZONE 'UTC', 'HH24:MI:SS') FROM quota_backoffs", &[])
        .unwrap()
        .get(0);
    // The rest of the 34 s, from the injected 10:00:00, and its margin.
    assert!(("10:00:30".."10:00:45").contains(&until.as_str()), "{until}");
    let (state, attempts, _) = fixture.item("docs", "g");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    // A stop once the client's wait is over records nothing: it has retried by then.
    let (fixture, result) = stopped_during_its_wait("0.2s", "200ms", Duration::from_millis(600));
    assert!(!result.stderr.contains("its quota hit is recorded"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM quota_backoffs WHERE backoff_until IS NOT NULL"), 0);
}

#[test]
fn the_worker_gets_payload_on_stdin_and_the_drain_environment() {
    let fixture = Fixture::new(&config("env = { EXTRA = \"yes\" }\n"), NOW);
    fixture.enqueue(
        "docs",
        &[(
            "k1".into(),
            steps(json!([{ "env": "DRAIN_NAME" }, { "env": "DRAIN_ITEM_KEY" }, { "env": "DRAIN_ATTEMPT" }, { "env": "EXTRA" }, { "checkpoints": { "count": 3, "every": 0.0 } }])),
        )],
    );
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let result: Vec<u8> = fixture.client().query_one("SELECT result FROM items", &[]).unwrap().get(0);
    let text = String::from_utf8(result).unwrap();
    for expected in ["DRAIN_NAME=docs", "DRAIN_ITEM_KEY=k1", "DRAIN_ATTEMPT=1", "EXTRA=yes"] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
    // Item start + finish + at least the first checkpoint line (writes are throttled).
    let checkpoints: i64 = fixture.client().query_one("SELECT checkpoints FROM runs", &[]).unwrap().get(0);
    assert!(checkpoints >= 3, "checkpoints {checkpoints}");
}

/// A pass of `docs --json` whose worker on item `a` has started: `a` runs over a second
/// and waits for the file `go`, which is returned with the pass; item `b` is quick.
fn a_pass_in_a_slow_first_item(fixture: &Fixture) -> (std::process::Child, std::path::PathBuf) {
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    fixture.enqueue(
        "docs",
        &[
            (
                "a".into(),
                steps(json!([{ "touch": started }, { "sleep": 1.2 }, { "wait_for_file": go }, { "out": "result a" }])),
            ),
            ("b".into(), steps(json!([{ "out": "result b" }]))),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    (pass, go)
}

#[test]
fn a_pass_whose_run_is_another_passs_after_a_failover_writes_nothing_more_under_it() {
    // A failover to a standby that had not received run 1: there the sequence handed the
    // id to another pass, which holds item b. Before, the old pass reconnected, gave b
    // back as "never started" while b's worker ran, and ended the other pass's run.
    let fixture = Fixture::new(&config(""), NOW);
    let (pass, go) = a_pass_in_a_slow_first_item(&fixture);
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    fixture
        .client()
        .batch_execute(
            // Another host's pass, of the same drain and pid (containers give a pass the same
            // small pid on every host).
            "UPDATE runs SET host = 'host-b', host_id = 'other-host-id' WHERE id = 1;
             UPDATE items SET state = 'pending', claimed_by = NULL, claimed_at = NULL WHERE key = 'a';
             UPDATE items SET state = 'running', claimed_by = 1, claimed_at = now() WHERE key = 'b'",
        )
        .unwrap();
    let before: Vec<String> =
        fixture.column("SELECT format('%s %s %s', status, items_done, finished_at IS NULL) FROM runs");
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    assert!(
        result.stderr.contains(
            "run 1 is another pass's in the database it reconnected to (drain docs, host host-b, pid"
        ),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("a failover"), "{}", result.stderr);
    // The other pass's run and item are as it left them.
    assert_eq!(
        fixture
            .column::<String>("SELECT format('%s %s %s', status, items_done, finished_at IS NULL) FROM runs"),
        before
    );
    assert_eq!(fixture.item("docs", "b").0, "running");
    assert_eq!(fixture.item("docs", "a").0, "pending");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'item_released'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE finished_at IS NOT NULL"), 0);
}

#[test]
fn a_pass_whose_session_the_server_ends_while_a_worker_runs_reconnects_and_keeps_the_result() {
    let fixture = Fixture::new(&config(""), NOW);
    let (pass, go) = a_pass_in_a_slow_first_item(&fixture);
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    // Before, the pass died with 69 and the worker's result with it.
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 2, "{}", result.stdout);
    assert!(result.stderr.contains("reconnected to the database"), "{}", result.stderr);
    let mut client = fixture.client();
    for (key, expected) in [("a", &b"result a\n"[..]), ("b", b"result b\n")] {
        let row =
            client.query_one("SELECT state, attempts, result FROM items WHERE key = $1", &[&key]).unwrap();
        assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1)), ("done".to_string(), 1), "item {key}");
        assert_eq!(row.get::<_, Vec<u8>>(2), expected, "item {key}");
    }
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'drained'"), 1);
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM events WHERE kind = 'database_reconnected'
                AND (data->>'slot_taken_again')::boolean AND run_id = 1"
        ),
        1
    );
}

/// The pass's stderr, read as it comes: a message once a line holds `needle`, and the
/// whole log when the pass ends.
fn watch_stderr(
    pass: &mut std::process::Child,
    needle: &'static str,
) -> (std::sync::mpsc::Receiver<()>, std::thread::JoinHandle<String>) {
    let stderr = pass.stderr.take().unwrap();
    let (met, seen) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut log = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(needle) {
                let _ = met.send(());
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    });
    (seen, log)
}

#[test]
fn a_pass_whose_new_session_is_read_only_waits_for_one_that_writes_and_keeps_the_result() {
    let fixture = Fixture::new(&config(""), NOW);
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    // A worker that writes checkpoints (each a write of the pass) until told to finish.
    script_worker(
        &fixture,
        "ticks.sh",
        &format!(
            "#!/bin/sh\ncat > /dev/null\ntouch {started}\n\
             while [ ! -e {go} ]; do echo '::checkpoint:: tick'; sleep 0.05; done\necho 'result a'\n",
            started = started.display(),
            go = go.display()
        ),
    );
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    let mut pass = fixture.drainctl(&["-vv", "drain", "docs", "--json"]).spawn();
    // The pass's log, read as it comes: it says when it met a read-only session.
    let (read_only_met, log) = watch_stderr(&mut pass, "not reconnected yet: the new session is read-only");
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    // A failover: the address leads to a standby not promoted yet (new sessions read-only).
    let mut client = fixture.client();
    let database = fixture.db.name.replace('"', "\"\"");
    client
        .batch_execute(&format!("ALTER DATABASE \"{database}\" SET default_transaction_read_only = on"))
        .unwrap();
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    // The pass finds its session gone at a checkpoint, while the worker runs, and opens
    // another: read-only. (Before, it took that one and said nothing of it.)
    read_only_met
        .recv_timeout(Duration::from_secs(20))
        .expect("the pass to meet a read-only session and wait");
    // Promoted; then the worker ends.
    client
        .batch_execute(&format!("ALTER DATABASE \"{database}\" RESET default_transaction_read_only"))
        .unwrap();
    std::fs::write(&go, "").unwrap();
    let mut result = finished(pass.wait_with_output().unwrap());
    result.stderr = log.join().unwrap();
    // Before: taken for the new session, the read-only one failed the result's write (and
    // the reconnection's event): the result was lost, the pass exited 69, and the item ran
    // again once supervise had reaped the run.
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 1, "{}", result.stdout);
    let row = client.query_one("SELECT state, attempts, result FROM items WHERE key = 'a'", &[]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1)), ("done".to_string(), 1));
    assert!(row.get::<_, Vec<u8>>(2).ends_with(b"result a\n"));
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'"), 1);
}

#[test]
fn a_session_that_turns_read_only_under_a_pass_waits_for_one_that_writes_and_keeps_the_result() {
    let fixture = Fixture::new(&config(""), NOW);
    let (mut pass, go) = a_pass_in_a_slow_first_item(&fixture);
    let (read_only_met, log) = watch_stderr(
        &mut pass,
        "the database refused a write as read-only; waiting for a session that can write",
    );
    // The pass's session lives on but may no longer write (as after `ALTER SYSTEM SET
    // default_transaction_read_only = on` and a reload, which would reach every test's
    // sessions): here every write of an item is refused so, for as long as the flag stands.
    let mut client = fixture.client();
    client
        .batch_execute(
            "CREATE TABLE test_read_only (flag boolean);
             INSERT INTO test_read_only VALUES (true);
             CREATE FUNCTION test_read_only() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN
                    IF EXISTS (SELECT 1 FROM test_read_only) THEN
                      RAISE EXCEPTION 'cannot execute UPDATE in a read-only transaction'
                        USING ERRCODE = 'read_only_sql_transaction';
                    END IF;
                    RETURN NEW;
                  END $$;
             CREATE TRIGGER test_read_only BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION test_read_only();",
        )
        .unwrap();
    std::fs::write(&go, "").unwrap();
    read_only_met
        .recv_timeout(Duration::from_secs(20))
        .expect("the pass to meet the read-only refusal and wait");
    client.batch_execute("DELETE FROM test_read_only").unwrap();
    let mut result = finished(pass.wait_with_output().unwrap());
    result.stderr = log.join().unwrap();
    // Before: `could not write the result of item a … it was held only in memory: it is
    // lost`, exit 69, the run left running and the item run again once reaped.
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 2, "{}\n{}", result.stdout, result.stderr);
    for (key, expected) in [("a", &b"result a\n"[..]), ("b", b"result b\n")] {
        let row =
            client.query_one("SELECT state, attempts, result FROM items WHERE key = $1", &[&key]).unwrap();
        assert_eq!((row.get::<_, String>(0), row.get::<_, i32>(1)), ("done".to_string(), 1), "item {key}");
        assert_eq!(row.get::<_, Vec<u8>>(2), expected, "item {key}");
    }
    assert!(!result.stderr.contains("ended this pass's session"), "{}", result.stderr);
}

/// Each drainctl session turns read-only when it records its worker's start, as after
/// `ALTER SYSTEM SET default_transaction_read_only = on` and a reload (which would reach
/// every test's sessions).
fn sessions_turn_read_only_once_their_worker_runs(fixture: &Fixture) {
    fixture
        .client()
        .batch_execute(
            "CREATE FUNCTION test_read_only() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN
                    PERFORM set_config('default_transaction_read_only', 'on', false);
                    RETURN NEW;
                  END $$;
             CREATE TRIGGER test_read_only AFTER UPDATE OF worker_pid ON runs
               FOR EACH ROW WHEN (NEW.worker_pid IS NOT NULL) EXECUTE FUNCTION test_read_only();",
        )
        .unwrap();
}

/// `drain docs` whose one item, `a`, hits a limit (`limit`) or fails while the pass's own
/// session, living on, turns read-only (as after `ALTER SYSTEM SET
/// default_transaction_read_only = on` and a reload, which would reach every test's
/// sessions: here the pass's session sets it on itself when it records its worker).
fn a_worker_ends_while_its_session_is_read_only(limit: Option<&str>) -> (Fixture, Finished) {
    let fixture = Fixture::new(&config(""), NOW);
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    let end = match limit {
        Some(line) => json!([{ "err": line }, { "exit": 1 }]),
        None => json!([{ "err": "Error: the input is malformed" }, { "exit": 3 }]),
    };
    let mut worker = vec![json!({ "touch": started }), json!({ "wait_for_file": go })];
    worker.extend(end.as_array().cloned().unwrap_or_default());
    fixture.enqueue("docs", &[("a".into(), steps(serde_json::Value::Array(worker)))]);
    sessions_turn_read_only_once_their_worker_runs(&fixture);
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    assert!(result.stderr.contains("read-only"), "the session turned read-only: {}", result.stderr);
    (fixture, result)
}

#[test]
fn a_limit_met_while_the_session_turned_read_only_is_recorded_on_one_that_writes() {
    let reset = "2026-11-27T11:00:00Z";
    let epoch = chrono::DateTime::parse_from_rfc3339(reset).unwrap().timestamp();
    let (fixture, result) =
        a_worker_ends_while_its_session_is_read_only(Some(&format!("Claude AI usage limit reached|{epoch}")));
    // Before: exit 69 ("cannot execute SELECT FOR NO KEY UPDATE in a read-only
    // transaction"), the run left running and the hit lost: reaped as a crash, its
    // attempt charged, and the next pass called the vendor again inside the window.
    assert!(!result.stderr.contains("read-only transaction"), "{}", result.stderr);
    assert_eq!(result.json()["status"], "rate_limited", "{}\n{}", result.stdout, result.stderr);
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("pending", 0), "the hit's attempt given back");
    assert_eq!(
        fixture
            .count(&format!("SELECT count(*) FROM quota_backoffs WHERE reset_at = '{reset}'::timestamptz")),
        1
    );
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'running'"), 0);
}

#[test]
fn a_failure_met_while_the_session_turned_read_only_is_recorded_on_one_that_writes() {
    let (fixture, result) = a_worker_ends_while_its_session_is_read_only(None);
    // Before: exit 69 and the failure lost, recorded later as the run's crash.
    result.assert_code(0);
    assert_eq!(result.json()["items_failed"], 1, "{}\n{}", result.stdout, result.stderr);
    let (state, attempts, error) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert!(error.as_deref().unwrap_or_default().contains("the input is malformed"), "{error:?}");
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'running'"), 0);
}

#[test]
fn two_passes_whose_sessions_turned_read_only_both_take_their_slots_again() {
    let fixture = Fixture::new(&config("concurrency = 2\n"), NOW);
    let go = fixture.path("go");
    let item = |key: &str| {
        let started = fixture.path(&format!("started-{key}"));
        (key.to_string(), steps(json!([{ "touch": started }, { "wait_for_file": go }, { "out": "ok" }])))
    };
    fixture.enqueue("docs", &[item("a"), item("b")]);
    let mut client = fixture.client();
    let database = fixture.db.name.replace('"', "\"\"");
    // Each pass's own session turns read-only once its worker runs, and new sessions are
    // read-only too until the database is set right (a primary demoted, then promoted).
    sessions_turn_read_only_once_their_worker_runs(&fixture);
    let passes: Vec<_> = (0..2).map(|_| fixture.drainctl(&["drain", "docs", "--json"]).spawn()).collect();
    wait_until("both workers to start", Duration::from_secs(20), || {
        ["a", "b"].iter().all(|key| fixture.path(&format!("started-{key}")).exists())
    });
    client
        .batch_execute(&format!("ALTER DATABASE \"{database}\" SET default_transaction_read_only = on"))
        .unwrap();
    std::fs::write(&go, "").unwrap();
    // Both passes find their sessions read-only and try new ones each second.
    std::thread::sleep(Duration::from_millis(1500));
    client
        .batch_execute(&format!("ALTER DATABASE \"{database}\" RESET default_transaction_read_only"))
        .unwrap();
    for pass in passes {
        let result = finished(pass.wait_with_output().unwrap());
        // Before, sometimes: "every concurrency slot was taken meanwhile, so the pass stops
        // after this item", exit 75 — its own old session, or the other pass's, still held
        // the slots it found taken.
        result.assert_code(0);
        assert!(!result.stderr.contains("every concurrency slot was taken"), "{}", result.stderr);
    }
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 2);
    assert_eq!(
        fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected' AND (data->>'slot_taken_again')::boolean"),
        2
    );
}

#[test]
fn a_pass_started_by_hand_counts_the_runs_whose_sessions_a_restart_ended() {
    let fixture = Fixture::new(&config(""), NOW);
    let (pass, go) = a_pass_in_a_slow_first_item(&fixture);
    // As a database restart would: the pass's session, and with it its slot, is gone
    // while its worker runs; the pass takes its slot again when the worker ends.
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    let by_hand = fixture.drainctl(&["drain", "docs", "--json"]).run();
    // Before: it took the free slot and ran `b` beside `a`, beyond concurrency 1.
    by_hand.assert_code(0);
    assert_eq!(by_hand.json()["status"], "lock_skipped", "{}", by_hand.stdout);
    assert!(
        by_hand.json()["note"].as_str().is_some_and(
            |note| note.contains("by its 1 runs still running, some of whose sessions the server ended")
        ),
        "{}",
        by_hand.stdout
    );
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert_eq!(result.json()["items_done"], 2, "{}", result.stdout);
}

#[test]
fn a_pass_whose_session_ends_while_it_records_its_end_records_it_on_a_new_one() {
    let fixture = Fixture::new(&config(""), NOW);
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    fixture.enqueue(
        "docs",
        &[("a".into(), steps(json!([{ "touch": started }, { "wait_for_file": go }, { "out": "result a" }])))],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    // The run's end waits behind another session's lock on the events, and its session is
    // ended there (as an administrator's pg_terminate_backend would).
    let mut holder = fixture.client();
    let mut transaction = holder.transaction().unwrap();
    transaction.batch_execute("LOCK TABLE events IN SHARE MODE").unwrap();
    std::fs::write(&go, "").unwrap();
    let mut admin = fixture.client();
    let waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                   AND application_name = 'drainctl' AND wait_event_type = 'Lock' AND query LIKE '%events%'";
    let mut pid = None;
    wait_until("the pass to wait for the events", Duration::from_secs(20), || {
        pid = admin.query_opt(waiting, &[]).unwrap().map(|row| row.get::<_, i32>(0));
        pid.is_some()
    });
    let running: i64 =
        admin.query_one("SELECT count(*) FROM runs WHERE status = 'running'", &[]).unwrap().get(0);
    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    transaction.rollback().unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    // Before: exit 69, the run left `running`, then reaped as crashed (a false
    // `run_crashed` notification) for a pass that had done its item.
    result.assert_code(0);
    assert_eq!(running, 1, "the wait was the run's end");
    assert_eq!(result.json()["items_done"], 1, "{}", result.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'drained'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_finished'"), 1);
}

#[test]
fn sessions_that_end_again_as_soon_as_they_are_opened_are_replaced_until_one_lasts() {
    let fixture = Fixture::new(&config(""), NOW);
    let started = fixture.path("started");
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), steps(json!([{ "out": "result a" }]))),
            ("b".into(), steps(json!([{ "touch": started }, { "sleep": 2.0 }, { "out": "result b" }]))),
            ("c".into(), steps(json!([{ "out": "result c" }]))),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_until("b's worker to start", Duration::from_secs(20), || started.exists());
    // A flapping server: for 5 seconds from 0.3 s into b's worker, every drainctl session
    // is ended as soon as it shows, the pass's own and each new one it opens.
    std::thread::sleep(Duration::from_millis(300));
    let mut client = fixture.client();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let mut ended = 0;
    while std::time::Instant::now() < until {
        let pids: Vec<i32> = client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'drainctl'",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        for pid in pids {
            client.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
            ended += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = finished(pass.wait_with_output().unwrap());
    assert!(ended >= 2, "sessions ended: {ended}");
    // Before: exit 69 once a new session was ended too before its first step, and the
    // finished worker's result lost with it, its item to run again. Where the killing
    // lands is the machine's timing: a pass that still gave up (69) must have left every
    // finished result staged, so that the reaper commits it and no item runs twice.
    assert!(matches!(result.code, 0 | 69), "{}: {}", result.code, result.stderr);
    if result.code == 69 {
        fixture.drainctl(&["supervise"]).run();
        wait_until("the items to be done", Duration::from_secs(30), || {
            fixture.count("SELECT count(*) FROM items WHERE state = 'done'") == 3
        });
    } else {
        assert_eq!(result.json()["items_done"], 3, "{}\n{}", result.stdout, result.stderr);
    }
    for key in ["a", "b", "c"] {
        let (state, attempts, _) = fixture.item("docs", key);
        assert_eq!((state.as_str(), attempts), ("done", 1), "item {key}: {}", result.stderr);
    }
}

/// Item a's worker: it touches `started`, writes `checkpoints` checkpoints a tenth of a
/// second apart, waits for the file `go` and prints `result a`. (worker, started, go)
fn checkpoints_until_go(
    fixture: &Fixture,
    checkpoints: u32,
) -> (serde_json::Value, std::path::PathBuf, std::path::PathBuf) {
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    let worker = json!([
        { "touch": started },
        { "checkpoints": { "count": checkpoints, "every": 0.1 } },
        { "wait_for_file": go },
        { "out": "result a" }
    ]);
    (worker, started, go)
}

#[test]
fn the_wait_for_a_new_session_counts_from_the_workers_end_not_from_the_loss_it_ran_through() {
    let fixture = Fixture::new(&config(""), NOW);
    let (worker, started, go) = checkpoints_until_go(&fixture, 30);
    fixture.enqueue("docs", &[("a".into(), steps(worker))]);
    // A pass that waits 3 s, not 60, for a new session.
    let pass =
        fixture.drainctl(&["drain", "docs", "--json"]).env("DRAINCTL_FAULT", "reconnect_for_3s").spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    // The server goes away while the worker runs: the pass's session ends and no new one
    // is let in; a checkpoint write finds it gone at once.
    let mut admin = fixture.client();
    fixture.db.allow_connections(false);
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'drainctl'",
            &[],
        )
        .unwrap();
    // Longer than the 3 s after the loss was found, and then the worker ends.
    std::thread::sleep(Duration::from_secs(5));
    std::fs::write(&go, "").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    fixture.db.allow_connections(true);
    let result = finished(pass.wait_with_output().unwrap());
    // Before: exit 69 right at the worker's end after one attempt, "no new one could be
    // opened within 3s", and the worker's result lost.
    result.assert_code(0);
    assert!(result.stderr.contains("reconnected to the database"), "{}", result.stderr);
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("done", 1));
}

/// `drain docs --json` on one item `a`, whose worker, quicker than a second, ends the
/// pass's database session on its way (as a restart would) and then runs the shell line
/// `then`: no statement of the pass finds the session gone while it runs. `settings` end
/// the drain's configuration.
fn drain_with_a_worker_ending_the_session(then: &str, settings: &str) -> (Fixture, Finished) {
    let fixture = Fixture::new(&config(""), NOW);
    let script = fixture.script(
        "end-session.sh",
        &format!(
            "#!/bin/sh\nsleep 0.2\n\
             psql=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql | head -n 1)\n\
             \"$psql\" -qAt '{}' -c \"SELECT pg_terminate_backend(pid, 10000) FROM (SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'drainctl' OFFSET 0) AS s\" >/dev/null || exit 9\n\
             {then}\n",
            fixture.db.url
        ),
    );
    fixture.write_config(&format!("{}{settings}", script_config(&script)));
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    let result = fixture.drainctl(&["drain", "docs", "--json"]).run();
    (fixture, result)
}

#[test]
fn a_session_lost_during_the_statement_between_workers_is_replaced_and_the_result_kept() {
    let (fixture, result) = drain_with_a_worker_ending_the_session("printf 'result a'", "max_attempts = 1\n");
    // Before: exit 69, "it was held only in memory: it is lost", and on its last attempt
    // the item was dead once the run was reaped, though its worker had succeeded.
    result.assert_code(0);
    assert!(result.stderr.contains("reconnected to the database"), "{}", result.stderr);
    assert_eq!(result.json()["items_done"], 1, "{}", result.stdout);
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("done", 1));
    assert_eq!(fixture.column::<Option<Vec<u8>>>("SELECT result FROM items"), [Some(b"result a".to_vec())]);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'done'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'drained'"), 1);
}

#[test]
fn a_session_lost_while_a_quick_worker_fails_is_replaced_and_the_failure_recorded() {
    let (fixture, result) =
        drain_with_a_worker_ending_the_session("echo 'upstream said no' >&2; exit 3", "max_attempts = 5\n");
    // Before: exit 69, the failure unrecorded, and the attempt charged as a crash once
    // the run was reaped.
    result.assert_code(0);
    assert!(result.stderr.contains("reconnected to the database"), "{}", result.stderr);
    assert_eq!(result.json()["items_failed"], 1, "{}", result.stdout);
    let (state, attempts, error) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("pending", 1));
    assert_eq!(error.as_deref(), Some("exit code 3: upstream said no"));
    let outcomes: Vec<String> = fixture.column("SELECT outcome FROM attempts");
    assert_eq!(outcomes, ["failure"]);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'running'"), 0);
}

#[test]
fn a_session_the_server_ends_while_a_failure_is_being_recorded_is_replaced_and_the_failure_recorded() {
    // A restart between the look at the session after the worker and the statements that
    // record its failure. Before: exit 69, the run left `running`, and the item charged
    // as a crash once reaped (dead at `max_attempts = 1`, with the crash's words).
    let fixture = Fixture::new(&config("max_attempts = 1\n"), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    fixture
        .client()
        .batch_execute(
            "CREATE SEQUENCE end_once;
             CREATE FUNCTION end_session_once() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.outcome = 'failure' AND nextval('end_once') = 1 THEN
                 PERFORM pg_terminate_backend(pg_backend_pid());
               END IF;
               RETURN NEW;
             END $$;
             CREATE TRIGGER end_session_once BEFORE UPDATE ON attempts
               FOR EACH ROW EXECUTE FUNCTION end_session_once();",
        )
        .unwrap();
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "err": "upstream said no" }, { "exit": 3 }])))]);
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run();
    pass.assert_code(0);
    assert!(pass.stderr.contains("reconnected to the database"), "{}", pass.stderr);
    assert_eq!(fixture.count("SELECT last_value FROM end_once"), 2, "the failure was written twice");
    let (state, attempts, error) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("dead", 1));
    assert_eq!(error.as_deref(), Some("exit code 3: upstream said no"));
    let outcomes: Vec<String> = fixture.column("SELECT outcome FROM attempts");
    assert_eq!(outcomes, ["failure"]);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'running'"), 0);
}

#[test]
fn a_session_lost_while_a_quick_worker_reports_its_usage_is_replaced_and_the_result_kept() {
    let result = r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","total_cost_usd":0.01,"usage":{"input_tokens":3,"output_tokens":5}}"#;
    let (fixture, pass) = drain_with_a_worker_ending_the_session(&format!("printf '%s\\n' '{result}'"), "");
    // Before: exit 69, the usage's statement the first to meet the ended session.
    pass.assert_code(0);
    assert!(pass.stderr.contains("reconnected to the database"), "{}", pass.stderr);
    assert_eq!(fixture.item("docs", "a").0, "done");
    assert_eq!(
        fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'done' AND usage_at IS NOT NULL"),
        1
    );
}

#[test]
fn a_session_lost_while_a_quick_worker_exits_0_with_a_limit_is_replaced_and_the_hit_recorded() {
    // Claude Code's answer to a limit: exit 0, an error result, no usage.
    let hit = r#"{"type":"result","subtype":"success","is_error":true,"result":"Claude AI usage limit reached|1796414400"}"#;
    let (fixture, pass) = drain_with_a_worker_ending_the_session(&format!("printf '%s\\n' '{hit}'"), "");
    // Before: exit 69, the quota hit's own statement the first to meet the ended session.
    pass.assert_code(0);
    assert!(pass.stderr.contains("reconnected to the database"), "{}", pass.stderr);
    assert_eq!(fixture.item("docs", "a"), ("pending".to_string(), 0, None), "a hit costs no attempt");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'backoff_set'"), 1);
}

#[test]
fn checkpoints_recorded_again_after_a_reconnect_are_not_reported_as_lost_for_good() {
    let fixture = Fixture::new(&config(""), NOW);
    let (started, ended) = (fixture.path("started"), fixture.path("ended"));
    let worker = json!([
        { "touch": started },
        { "wait_for_file": ended },
        { "checkpoints": { "count": 40, "every": 0.1 } },
        { "out": "result a" }
    ]);
    fixture.enqueue("docs", &[("a".into(), steps(worker))]);
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    std::fs::write(&ended, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert!(result.stderr.contains("reconnected to the database"), "{}", result.stderr);
    // Before: "could not record checkpoints or resume tokens", as if none were after.
    assert!(!result.stderr.contains("could not record checkpoints or resume tokens"), "{}", result.stderr);
    let said = result.stderr.lines().find(|line| line.contains("drain docs: item a: could not record"));
    assert!(
        said.is_some_and(
            |line| line.contains(" checkpoint") && line.ends_with("recording resumed after them")
        ),
        "{}",
        result.stderr
    );
    assert_eq!(fixture.item("docs", "a").0, "done");
}

#[test]
fn a_pass_that_finds_every_slot_taken_after_reconnecting_keeps_the_result_and_stops() {
    let fixture = Fixture::new(&config(""), NOW);
    let (pass, go) = a_pass_in_a_slow_first_item(&fixture);
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    // Another session takes the drain's only concurrency slot meanwhile.
    let mut holder = fixture.client();
    let drain_id: i32 = holder.query_one("SELECT id FROM drains WHERE name = 'docs'", &[]).unwrap().get(0);
    let slot_key = 0x4452_4149_0000_0000_i64 + (i64::from(drain_id) << 16);
    assert!(holder.query_one("SELECT pg_try_advisory_lock($1)", &[&slot_key]).unwrap().get::<_, bool>(0));
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    assert!(result.stderr.contains("every concurrency slot of drain docs was taken"), "{}", result.stderr);
    assert_eq!(fixture.item("docs", "a").0, "done");
    let kept: Vec<u8> = holder.query_one("SELECT result FROM items WHERE key = 'a'", &[]).unwrap().get(0);
    assert_eq!(kept, b"result a\n");
    // Nothing more was claimed without a slot.
    assert_eq!(fixture.item("docs", "b"), ("pending".to_string(), 0, None));
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'failed'"), 1);
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM events WHERE kind = 'database_reconnected'
                AND NOT (data->>'slot_taken_again')::boolean"
        ),
        1
    );
}

/// `drain docs`, whose worker logs to `log`, touches `started` and waits for `ended`:
/// once the worker runs, the pass's session is ended and new ones refused, the worker
/// goes on, and the pass has reaped it on return, the database still refusing it.
fn a_pass_whose_worker_ends_while_the_database_refuses_it(
    fixture: &Fixture,
    log: &std::path::Path,
    started: &std::path::Path,
    ended: &std::path::Path,
) -> std::process::Child {
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    let worker = logged_pid(log);
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    fixture.db.allow_connections(false);
    std::fs::write(ended, "").unwrap();
    wait_until_gone("the worker", worker);
    pass
}

#[test]
fn a_resume_token_printed_while_the_database_is_away_is_stored_once_it_is_back() {
    let fixture = Fixture::new(&config(""), NOW);
    let (log, started, ended) = (fixture.path("log"), fixture.path("started"), fixture.path("ended"));
    let token = "123e4567-e89b-12d3-a456-426614174000";
    let reset = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z").unwrap().timestamp();
    fixture.enqueue(
        "docs",
        &[(
            "a".into(),
            steps(json!([
                { "log": log },
                { "touch": started },
                { "wait_for_file": ended },
                // The session the worker started with is gone, and no new one can be
                // opened: the token, then the limit that makes it worth keeping.
                { "out": format!("::resume:: {token}") },
                { "err": format!("Claude AI usage limit reached|{reset}") },
                { "exit": 1 }
            ])),
        )],
    );
    let pass = a_pass_whose_worker_ends_while_the_database_refuses_it(&fixture, &log, &started, &ended);
    fixture.db.allow_connections(true);
    let result = finished(pass.wait_with_output().unwrap());
    assert_eq!(
        fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'"),
        1,
        "{result:?}"
    );
    assert_eq!(fixture.item("docs", "a").0, "pending", "{result:?}");
    assert_eq!(
        fixture.column::<Option<String>>("SELECT resume_token FROM items WHERE key = 'a'"),
        [Some(token.to_string())],
        "{result:?}"
    );
}

/// The last line of `drain docs` whose one item runs `then` after the pass's session was
/// ended, the database refusing new sessions for longer than the pass's minute of trying.
fn last_line_when_the_database_stays_away(then: serde_json::Value) -> String {
    let fixture = Fixture::new(&config(""), NOW);
    let (log, started, ended) = (fixture.path("log"), fixture.path("started"), fixture.path("ended"));
    let mut worker =
        vec![json!({ "log": log }), json!({ "touch": started }), json!({ "wait_for_file": ended })];
    worker.extend(then.as_array().cloned().unwrap_or_default());
    fixture.enqueue("docs", &[("a".into(), steps(serde_json::Value::Array(worker)))]);
    let pass = a_pass_whose_worker_ends_while_the_database_refuses_it(&fixture, &log, &started, &ended);
    let result = finished(pass.wait_with_output().unwrap());
    fixture.db.allow_connections(true);
    result.assert_code(69);
    assert_eq!(fixture.item("docs", "a").0, "running", "left for the reaper");
    // One account of the result, not "it is lost" and then "it may be staged".
    assert!(!result.stderr.contains("held only in memory"), "{}", result.stderr);
    let last = result.stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.contains("no new one could be opened within 1m"), "{}", result.stderr);
    last
}

#[test]
fn a_database_away_past_the_reconnect_minute_ends_the_pass_saying_the_result_is_lost() {
    // A worker a second long: the pass looks at its session once the worker ended.
    // Before: only "… no new one could be opened within 1m (…); run 1 stays running until
    // supervise reaps it", nothing of item a's result.
    let last = last_line_when_the_database_stays_away(json!([{ "sleep": 1.0 }, { "out": "result a" }]));
    assert!(
        last.contains("item a's worker ended (9 bytes of output) while the database was away: its outcome was not recorded and is lost")
            && last.contains("item a runs again (the attempt counts"),
        "{last}"
    );
}

#[test]
fn a_result_on_its_way_when_the_session_was_lost_is_said_to_be_staged_or_lost() {
    // A quick worker: its result goes with the statement that claims the next item, which
    // meets the ended session and may or may not have staged it.
    let last = last_line_when_the_database_stays_away(json!([{ "out": "result a" }]));
    let on_its_way =
        "the result of item a (9 bytes) was on its way in the statement the session lost: if that \
                      statement staged it, it is committed once";
    // Under load the worker may outlast the pass's look at its session (it then knows the
    // session was gone before the worker ended): the other account, never both.
    let lost = "item a's worker ended (9 bytes of output) while the database was away: its outcome was not \
                recorded and is lost";
    assert!(last.contains(on_its_way) != last.contains(lost), "{last}");
}

#[test]
fn sigterm_while_a_pass_waits_for_the_database_exits_75_saying_so() {
    let fixture = Fixture::new(&config(""), NOW);
    let (log, started, ended) = (fixture.path("log"), fixture.path("started"), fixture.path("ended"));
    let worker = json!([{ "log": log }, { "touch": started }, { "wait_for_file": ended }, { "sleep": 1.0 }]);
    fixture.enqueue("docs", &[("a".into(), steps(worker))]);
    // A worker of a second: the pass looks at its session after it, finds it gone and
    // tries every second for a new one, which the database refuses.
    let pass = a_pass_whose_worker_ends_while_the_database_refuses_it(&fixture, &log, &started, &ended);
    signal(pass.id(), libc::SIGTERM);
    let result = finished(pass.wait_with_output().unwrap());
    fixture.db.allow_connections(true);
    result.assert_code(75);
    let last = result.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("interrupted by SIGTERM while reconnecting to the database")
            && last.contains("run 1 stays running until supervise reaps it"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("within 1m"), "{}", result.stderr);
    assert_eq!(fixture.column::<String>("SELECT status FROM runs"), ["running"], "left for supervise");
}

#[test]
fn a_worker_s_checkpoints_and_resume_token_are_written_on_a_new_session_while_it_runs() {
    let fixture = Fixture::new(&config(""), NOW);
    let (started, ended, go) = (fixture.path("started"), fixture.path("ended"), fixture.path("go"));
    let token = "123e4567-e89b-12d3-a456-426614174000";
    fixture.enqueue(
        "docs",
        &[(
            "a".into(),
            steps(json!([
                { "touch": started },
                { "wait_for_file": ended },
                // Printed while the session is gone: kept for the new one.
                { "out": format!("::resume:: {token}") },
                { "checkpoints": { "count": 40, "every": 0.1 } },
                { "wait_for_file": go },
                { "checkpoints": { "count": 1, "every": 0 } },
                { "out": "result a" }
            ])),
        )],
    );
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    std::fs::write(&ended, "").unwrap();
    // The worker still runs (it waits for `go`) when the pass has its new session.
    wait_until("a new session while the worker runs", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'") == 1
    });
    wait_until("the resume token on the new session", Duration::from_secs(10), || {
        fixture.column::<Option<String>>("SELECT resume_token FROM items WHERE key = 'a'")
            == [Some(token.to_string())]
    });
    assert_eq!(fixture.item("docs", "a").0, "running");
    let beats = fixture.count("SELECT checkpoints FROM runs");
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert!(fixture.count("SELECT checkpoints FROM runs") > beats, "the last checkpoint was written");
    assert_eq!(fixture.item("docs", "a").0, "done");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'"), 1);
}

#[test]
fn a_small_stderr_tail_bounds_what_is_recorded_not_how_the_outcome_and_error_are_read() {
    let fixture =
        Fixture::new(&config("max_attempts = 1\nmax_wait = \"0s\"\nstderr_tail_bytes = 1024\n"), NOW);
    let frame = "    at Object.fn (file:///usr/lib/node_modules/@tool/cli/dist/index.js:170:17)";
    let mut failing = vec![json!({ "err": "Error: could not open /data/input.csv: permission denied" })];
    failing.extend((0..30).map(|_| json!({ "err": frame })));
    failing.push(json!({ "exit": 1 }));
    // A limit with its reset, then more than the recorded tail of a client's dump.
    let mut limited = vec![json!({ "err": "Rate limit reached for requests. Please try again in 20m0s." })];
    limited.extend((0..30).map(|_| json!({ "err": frame })));
    limited.push(json!({ "exit": 1 }));
    fixture.enqueue("docs", &[("a".into(), steps(json!(failing))), ("b".into(), steps(json!(limited)))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let (state, attempts, error) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("dead", 1));
    // Before: "exit code 1: sr/lib/node_modules/@tool/cli/dist/index.js:170:17)", half a
    // stack frame from the cut start of the 1,024 recorded bytes.
    assert_eq!(
        error.as_deref(),
        Some("exit code 1: Error: could not open /data/input.csv: permission denied")
    );
    let tail: Vec<i64> = fixture.column("SELECT length(stderr_tail)::bigint FROM items WHERE key = 'a'");
    assert_eq!(tail, vec![1024]);
    // Before: a failure charged to the item, and the next item started into the limit.
    let (state, attempts, _) = fixture.item("docs", "b");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    let reasons: Vec<String> = fixture.column("SELECT reason FROM quota_backoffs");
    assert_eq!(reasons.len(), 1, "{reasons:?}");
}

#[test]
fn an_item_claimed_beside_a_worker_whose_reply_the_ended_session_lost_goes_back_once_a_new_session_is_open() {
    let fixture = Fixture::new(&config("max_attempts = 1\n"), NOW);
    let (pass, go) = a_pass_in_a_slow_first_item(&fixture);
    hold_b_as_a_lost_claim(&fixture);
    // And the session ended.
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    // Before: b was held without a worker until the pass ended, which then said
    // "drained: no item is available now" with b pending; now it goes back once the new
    // session is open and the same pass runs it.
    assert_eq!(result.json()["items_done"], 2, "{}\n{}", result.stdout, result.stderr);
    assert!(
        result.stderr.contains("item b given back: claimed by a statement whose reply was lost"),
        "{}",
        result.stderr
    );
    let (state, attempts, _) = fixture.item("docs", "b");
    assert_eq!((state.as_str(), attempts), ("done", 1));
    assert_eq!(
        fixture.column::<String>(
            "SELECT outcome FROM attempts WHERE item_id = (SELECT id FROM items WHERE key = 'b') ORDER BY id"
        ),
        ["not_started", "done"]
    );
}

#[test]
fn an_item_claimed_beside_a_worker_goes_back_when_the_session_was_replaced_while_the_worker_ran() {
    let fixture = Fixture::new(&config("max_attempts = 1\n"), NOW);
    let (worker, started, go) = checkpoints_until_go(&fixture, 40);
    fixture
        .enqueue("docs", &[("a".into(), steps(worker)), ("b".into(), steps(json!([{ "out": "result b" }])))]);
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    hold_b_as_a_lost_claim(&fixture);
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    // A checkpoint finds the session gone and a new one is opened while the worker runs.
    wait_until("a new session", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'") == 1
    });
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    // Before: the session was open again after the worker, nothing was given back, and b
    // waited without a worker for the pass's end.
    assert_eq!(result.json()["items_done"], 2, "{}\n{}", result.stdout, result.stderr);
    assert_eq!(fixture.item("docs", "b").0, "done");
}

/// The ```sh block of `doc` (under docs/) whose text contains `marker`.
fn documented_script(doc: &str, marker: &str) -> String {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(doc))
            .unwrap();
    text.split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(script, _)| script))
        .find(|script| script.contains(marker))
        .unwrap_or_else(|| panic!("no ```sh block with {marker} in docs/{doc}"))
        .to_string()
}

#[test]
fn the_documented_summarise_wrapper_fails_an_item_whose_file_is_missing_without_a_call() {
    // Before: `cat "$path"` failing on the left of the pipe did not stop `claude`, paid to
    // summarise the instruction alone, and the item was stored done.
    let fixture = Fixture::new(&config("max_attempts = 1\n"), NOW);
    let bin = fixture.path("bin");
    std::fs::create_dir(&bin).unwrap();
    let wrapper =
        fixture.script("bin/summarise.sh", &documented_script("worker-contract.md", "summarise.sh"));
    // A stand-in `claude` that counts its calls and answers as `--output-format json` does.
    let calls = fixture.path("calls");
    fixture.script(
        "bin/claude",
        &format!(
            "#!/bin/sh\necho call >> {}\nwc -c | tr -d ' ' | \
             xargs printf '{{\"type\":\"result\",\"is_error\":false,\"result\":\"summary of %s bytes\"}}\\n'\n",
            calls.display()
        ),
    );
    let text = std::fs::read_to_string(&fixture.config_path)
        .unwrap()
        .replace(&format!("[\"{FAKE_WORKER}\"]"), &format!("[\"{}\"]", wrapper.display()))
        + &format!("env = {{ PATH = \"{}:/usr/bin:/bin\" }}\n", bin.display());
    std::fs::write(&fixture.config_path, text).unwrap();
    let document = fixture.path("doc.txt");
    std::fs::write(&document, "A document to summarise.\n").unwrap();
    fixture.enqueue(
        "docs",
        &[
            ("present".into(), json!({ "path": document.display().to_string() })),
            ("missing".into(), json!({ "path": fixture.path("gone.txt").display().to_string() })),
            ("no-path".into(), json!({ "file": document.display().to_string() })),
        ],
    );
    fixture.drainctl(&["drain", "docs"]).run();
    assert_eq!(fixture.item("docs", "present").0, "done");
    for key in ["missing", "no-path"] {
        assert_eq!(fixture.item("docs", key).0, "dead", "{key}");
    }
    let calls = std::fs::read_to_string(&calls).unwrap_or_default();
    assert_eq!(calls.lines().count(), 1, "claude was called only for the file that exists");
}

#[test]
fn a_failed_attempt_whose_commit_reply_was_lost_is_recorded_once_not_as_a_lost_claim() {
    for (max_attempts, state) in [(1, "dead"), (2, "pending")] {
        let fixture = Fixture::new(&config(&format!("max_attempts = {max_attempts}\n")), NOW);
        fixture.enqueue(
            "docs",
            &[("k1".into(), steps(json!([{ "err": "fatal: broken item" }, { "exit": 2 }])))],
        );
        // The record of the failure commits; the session ends before its reply arrives,
        // and the pass sends the same statements again on a new one.
        let result = fixture
            .drainctl(&["drain", "docs", "--json"])
            .env("DRAINCTL_FAULT", "lose_failure_commit_reply")
            .run();
        result.assert_code(0);
        // Before: a claim_lost event ("failure not recorded") and 0 failed attempts.
        assert_eq!(result.json()["items_failed"], 1, "{}", result.stdout);
        assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'claim_lost'"), 0);
        assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'"), 1);
        let (now_state, attempts, error) = fixture.item("docs", "k1");
        assert_eq!((now_state.as_str(), attempts), (state, 1), "{error:?}");
        let dead_letters = fixture.count("SELECT count(*) FROM events WHERE kind = 'item_dead_lettered'");
        assert_eq!(dead_letters, i64::from(state == "dead"));
        assert_eq!(fixture.count("SELECT items_failed::bigint FROM runs"), 1);
        assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'failure'"), 1);
    }
}
