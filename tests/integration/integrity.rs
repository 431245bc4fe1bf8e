//! Integrity under attack: no truncated result, no item left `running` under a run that
//! is not, no start decided on a stale view — through the real binary, real processes
//! and a real PostgreSQL.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

use crate::support::windowed::{config, INSIDE, OUTSIDE};

fn steps(steps: Value) -> Value {
    json!({ "steps": steps })
}

fn supervise(command: Drainctl) -> Vec<Value> {
    let result = command.run();
    result.assert_code(0);
    result.json()["decisions"].as_array().cloned().unwrap_or_default()
}

fn has_action(decisions: &[Value], action: &str) -> bool {
    decisions.iter().any(|d| d["drain"] == "docs" && d["action"] == action)
}

#[test]
fn output_over_the_cap_fails_the_item_and_exactly_the_cap_is_kept_whole() {
    const CAP: usize = 16 << 20;
    let fixture = Fixture::new(&config(""), INSIDE);
    let source = fixture.path("bytes");
    std::fs::write(&source, vec![b'x'; CAP + 800_000]).unwrap();
    // One `head -c N` writes N bytes and exits at once: the exit and the last bytes can
    // arrive together, which is how a truncated tail was once committed as the result.
    let sizes = [CAP, CAP + 1, CAP + 1_000, CAP + 65_536, CAP + 800_000];
    for size in sizes {
        let key = format!("size-{size}");
        fixture.write_config(&format!(
            "[defaults]\ntimezone = \"UTC\"\n\n[[drain]]\nname = \"docs\"\n\
             command = [\"head\", \"-c\", \"{size}\", \"{}\"]\nmax_attempts = 1\n",
            source.display()
        ));
        fixture.enqueue("docs", &[(key.clone(), json!({}))]);
        fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
        let row = fixture
            .client()
            .query_one("SELECT state, length(result), last_error FROM items WHERE key = $1", &[&key])
            .unwrap();
        let (state, length, error): (String, Option<i32>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        if size == CAP {
            assert_eq!((state.as_str(), length), ("done", Some(CAP as i32)), "{key}: {error:?}");
        } else {
            assert_eq!((state.as_str(), length), ("dead", None), "{key}");
            assert!(
                error.as_deref().unwrap_or_default().contains("output exceeded the 16777216 byte result cap"),
                "{key}: {error:?}"
            );
        }
    }
}

#[test]
fn a_hung_run_whose_process_lives_on_neither_claims_nor_commits() {
    if !can_use_another_host() {
        eprintln!("skipped: this machine cannot create a UTS namespace (unshare --uts)");
        return;
    }
    let fixture = Fixture::new(&config("liveness_timeout = \"15m\"\nitem_timeout = \"1h\"\n"), INSIDE);
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    fixture.enqueue(
        "docs",
        &[
            (
                "a".into(),
                steps(json!([{ "touch": started }, { "wait_for_file": go }, { "out": "result a" }])),
            ),
            ("b".into(), steps(json!([{ "out": "result b" }]))),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).spawn();
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    // Another host's supervise judges the run hung by liveness: it cannot signal it, so the
    // drain process lives on. Outside the window, supervise starts nothing itself.
    fixture.set_now("2026-11-27T10:00:00Z");
    let plan = supervise(fixture.drainctl_on_host("other-host", false, &["supervise", "--json"]));
    assert!(has_action(&plan, "kill_hung"), "{plan:?}");
    assert!(pid_alive(pass.id() as i32), "the drain of this host must not be signalled");
    // The fenced run finishes a's worker: it may neither commit a nor claim b.
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(75);
    assert!(result.stderr.contains("was ended by another process"), "{}", result.stderr);
    assert_eq!(fixture.item("docs", "a").0, "pending");
    assert_eq!(fixture.item("docs", "b"), ("pending".to_string(), 0, None));
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'running'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM staged_results"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE finished_at IS NULL"), 0);
    // Both are then done exactly once by the next pass.
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 2);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'done'"), 2);
}

/// An item `running` under a run that is no longer `running`: what older versions left
/// when a run judged hung or crashed went on claiming and then died.
fn leave_an_orphan(fixture: &Fixture) {
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "out": "result a" }])))]);
    let mut client = fixture.client();
    client
        .batch_execute(
            "INSERT INTO runs (id, drain, trigger, host, pid, started_at, last_checkpoint_at, status, finished_at)
             OVERRIDING SYSTEM VALUE VALUES (9001, 'docs', 'manual', 'gone-host', 4242, now(), now(), 'hung', now());
             UPDATE items SET state = 'running', claimed_by = 9001, claimed_at = now(), attempts = 1
              WHERE key = 'a';
             INSERT INTO attempts (item_id, run_id, attempt, started_at, account)
             SELECT id, 9001, 1, now(), 'default' FROM items WHERE key = 'a';",
        )
        .unwrap();
}

#[test]
fn an_item_running_under_an_ended_run_is_released_by_the_next_supervise() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    leave_an_orphan(&fixture);
    supervise(fixture.drainctl(&["supervise", "--json"]));
    assert_eq!(
        fixture.item("docs", "a"),
        ("pending".to_string(), 1, Some("released: its run 9001 is no longer running".into()))
    );
    assert_eq!(
        fixture.count("SELECT count(*) FROM events WHERE kind = 'item_released' AND run_id = 9001"),
        1
    );
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE finished_at IS NULL"), 0);
}

#[test]
fn an_orphan_on_its_last_attempt_is_dead_lettered_with_the_fields_of_every_dead_letter() {
    let fixture = Fixture::new(&config("max_attempts = 1\n"), OUTSIDE);
    leave_an_orphan(&fixture);
    supervise(fixture.drainctl(&["supervise", "--json"]));
    assert_eq!(fixture.item("docs", "a").0, "dead");
    // Before: `{}`.
    let data = fixture
        .column::<serde_json::Value>("SELECT data FROM events WHERE kind = 'item_dead_lettered'")
        .remove(0);
    assert_eq!(
        data,
        json!({ "attempt": 1, "outcome": "released", "error": "its run is no longer running", "stderr_tail": null })
    );
}

#[test]
fn an_item_running_under_an_ended_run_is_released_by_the_next_drain_pass() {
    let fixture = Fixture::new(&config(""), INSIDE);
    leave_an_orphan(&fixture);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let (state, attempts, _) = fixture.item("docs", "a");
    assert_eq!((state.as_str(), attempts), ("done", 2));
}

#[test]
fn retry_key_takes_an_item_running_under_an_ended_run_but_not_one_under_a_live_run() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    leave_an_orphan(&fixture);
    fixture.drainctl(&["retry", "docs", "--key", "a"]).run().assert_code(0);
    assert_eq!(fixture.item("docs", "a").0, "pending");
    assert_eq!(fixture.item("docs", "a").1, 0);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE finished_at IS NULL"), 0);
    // Held by a run that is still running: left alone.
    fixture
        .client()
        .batch_execute(
            "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = 9001;
             UPDATE items SET state = 'running', claimed_by = 9001 WHERE key = 'a';",
        )
        .unwrap();
    let refused = fixture.drainctl(&["retry", "docs", "--key", "a"]).run();
    refused.assert_code(0);
    assert!(refused.stdout.contains("is running, not retried"), "{}", refused.stdout);
    assert_eq!(fixture.item("docs", "a").0, "running");
}

#[test]
fn retry_key_that_waited_for_a_claim_leaves_the_item_to_its_live_run() {
    let fixture = Fixture::new(&config(""), OUTSIDE);
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "out": "result a" }])))]);
    let mut claim = fixture.client();
    claim
        .batch_execute(
            "INSERT INTO runs (id, drain, trigger, host, pid, started_at, last_checkpoint_at, status)
             OVERRIDING SYSTEM VALUE VALUES (9002, 'docs', 'manual', 'other-host', 4242, now(), now(), 'running')",
        )
        .unwrap();
    // A live run's claim, not committed yet when retry looks at the item.
    let mut claiming = claim.transaction().unwrap();
    claiming
        .batch_execute(
            "UPDATE items SET state = 'running', claimed_by = 9002, claimed_at = now(), attempts = 1 WHERE key = 'a';
             INSERT INTO attempts (item_id, run_id, attempt, started_at, account)
             SELECT id, 9002, 1, now(), 'default' FROM items WHERE key = 'a';",
        )
        .unwrap();
    let retry = fixture.drainctl(&["retry", "docs", "--key", "a"]).spawn();
    wait_until("retry to wait for the claim's lock", Duration::from_secs(20), || {
        fixture.count(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drainctl' AND wait_event_type = 'Lock'",
        ) == 1
    });
    claiming.commit().unwrap();
    let retried = finished(retry.wait_with_output().unwrap());
    retried.assert_code(0);
    // Before, it read the item as claimed but the run as missing, and took the item.
    assert!(retried.stdout.contains("is running, not retried"), "{}", retried.stdout);
    assert_eq!(fixture.item("docs", "a").0, "running");
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE finished_at IS NULL"), 1);
}

#[test]
fn the_item_of_a_hung_run_is_started_again_in_the_same_supervise_pass() {
    let fixture = Fixture::new(&config("liveness_timeout = \"15m\"\nitem_timeout = \"1h\"\n"), INSIDE);
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    fixture.enqueue(
        "docs",
        &[("a".into(), steps(json!([{ "touch": started }, { "wait_for_file": go }, { "out": "result a" }])))],
    );
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("a's worker to start", Duration::from_secs(20), || started.exists());
    // 16 minutes later, still inside the window: the run is hung, and it held the only item.
    fixture.set_now("2026-11-26T21:16:00Z");
    let plan = supervise(fixture.drainctl(&["supervise", "--json"]));
    assert!(has_action(&plan, "kill_hung"), "{plan:?}");
    assert!(has_action(&plan, "start"), "the released item must start in the same pass: {plan:?}");
    let _ = finished(pass.wait_with_output().unwrap());
    std::fs::write(&go, "").unwrap();
    wait_until("the started drain to finish a", Duration::from_secs(30), || {
        fixture.item("docs", "a").0 == "done"
    });
    assert_eq!(fixture.item("docs", "a").1, 2);
}

#[test]
fn a_hung_run_whose_drain_and_worker_outlived_the_pass_that_ended_it_is_killed_by_the_next() {
    let fixture = Fixture::new(&config("liveness_timeout = \"15m\"\nitem_timeout = \"1h\"\n"), INSIDE);
    let started = fixture.path("started");
    let first_try = json!([{ "child_ignoring_term": 300 }, { "touch": started }, { "hang": true }]);
    let branch = json!({ "path": started, "then": [{ "out": "result a" }], "else": first_try });
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "if_file": branch }])))]);
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the worker recorded", Duration::from_secs(20), || {
        started.exists() && fixture.count("SELECT count(*) FROM runs WHERE worker_pid IS NOT NULL") == 1
    });
    let worker: i32 = fixture.client().query_one("SELECT worker_pid FROM runs", &[]).unwrap().get(0);
    // The pass that judged the run hung was killed after it ended the run and before it
    // signalled anything: the drain (holding the only slot) and its worker run on.
    fixture
        .client()
        .execute(
            "UPDATE runs SET status = 'hung', note = 'hung', finished_at = $1::text::timestamptz,
                    kill_unconfirmed = true",
            &[&INSIDE],
        )
        .unwrap();
    // A dry run plans the start the pass makes: the slot the drain holds is freed by its kill.
    let dry = supervise(fixture.drainctl(&["supervise", "--json", "--dry-run"]));
    assert!(has_action(&dry, "start"), "{dry:?}");
    let plan = supervise(fixture.drainctl(&["supervise", "--json"]));
    wait_until("the drain to be killed", Duration::from_secs(10), || !pid_alive(pass.id() as i32));
    let _ = finished(pass.wait_with_output().unwrap());
    assert!(live_processes_with(5, worker).is_empty(), "the worker group lives on");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_processes_killed'"), 1);
    // The item, given back, starts in the freed slot in the same pass.
    assert!(has_action(&plan, "start"), "{plan:?}");
    wait_until("the started drain to finish a", Duration::from_secs(30), || {
        fixture.item("docs", "a").0 == "done"
    });
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status = 'lock_skipped'"), 0);
    // Nothing is left for the pass after.
    supervise(fixture.drainctl(&["supervise", "--json"]));
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_processes_killed'"), 1);
}
