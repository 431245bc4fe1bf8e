//! Scale: `enqueue` streams its input (constant memory, first line of a repeated key
//! wins), and the per-drain, per-state counts that `status`, `metrics` and `items` read
//! stay exact through every change of an item's state.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

fn config() -> String {
    "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n\
     [defaults.retention]\ndone_items = \"1d\"\n\n\
     [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nmax_attempts = 1\n\n\
     [[drain]]\nname = \"files\"\ncommand = [\"FAKE_WORKER\"]\nsource = { dir = \"data\", glob = \"*.txt\" }\n"
        .to_string()
}

const STATES: [&str; 5] = ["pending", "running", "done", "dead", "skipped_missing"];

/// drain → state → count, as `items` holds them (counted the slow way).
fn counted(fixture: &Fixture) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut all: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for drain in ["docs", "files"] {
        all.insert(drain.to_string(), STATES.iter().map(|state| (state.to_string(), 0)).collect());
    }
    for row in
        fixture.client().query("SELECT drain, state, count(*) FROM items GROUP BY drain, state", &[]).unwrap()
    {
        all.entry(row.get(0)).or_default().insert(row.get(1), row.get(2));
    }
    all
}

/// The counts `status --json`, `items NAME --json` and `item_counts` give agree with
/// counting the items, for every drain and state.
#[track_caller]
fn assert_counts_exact(fixture: &Fixture, step: &str) {
    let truth = counted(fixture);
    let status = fixture.drainctl(&["status", "--json"]).run();
    status.assert_code(0);
    let status = status.json();
    let mut client = fixture.client();
    for (drain, states) in &truth {
        let listed = fixture.drainctl(&["items", drain, "--json"]).run().json();
        let shown =
            status["drains"].as_array().unwrap().iter().find(|d| d["drain"] == drain.as_str()).unwrap();
        for (state, count) in states {
            assert_eq!(shown["counts"][state].as_i64(), Some(*count), "{step}: status {drain} {state}");
            assert_eq!(listed["counts"][state].as_i64(), Some(*count), "{step}: items {drain} {state}");
            let kept: i64 = client
                .query_one(
                    &format!("SELECT coalesce(sum({state}), 0)::bigint FROM item_counts WHERE drain = $1"),
                    &[drain],
                )
                .unwrap()
                .get(0);
            assert_eq!(kept, *count, "{step}: item_counts {drain} {state}");
        }
    }
}

#[test]
fn item_counts_stay_exact_through_enqueue_claim_done_dead_retry_prune_replace_delete_and_skipped_missing() {
    let fixture = Fixture::new(&config(), NOW);
    let ok = json!({"steps": [{"out": "ok"}]});
    let failing = json!({"steps": [{"err": "boom"}, {"exit": 3}]});
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), ok.clone()),
            ("b".into(), ok.clone()),
            ("c".into(), failing.clone()),
            ("d".into(), ok.clone()),
        ],
    );
    assert_counts_exact(&fixture, "enqueue");
    // A duplicate adds nothing.
    fixture.enqueue("docs", &[("a".into(), ok.clone()), ("e".into(), failing)]);
    assert_counts_exact(&fixture, "enqueue with a duplicate");
    // Claims, successes and dead letters (max_attempts = 1).
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    assert_eq!(fixture.item("docs", "c").0, "dead");
    assert_counts_exact(&fixture, "drain");
    // A claim held by a run (running), then released by the reaper of a crashed run.
    fixture.client().execute("UPDATE items SET state = 'running' WHERE key = 'd'", &[]).unwrap();
    assert_counts_exact(&fixture, "running");
    fixture.client().execute("UPDATE items SET state = 'done' WHERE key = 'd'", &[]).unwrap();
    fixture.drainctl(&["retry", "docs", "--dead"]).run().assert_code(0);
    assert_eq!(fixture.item("docs", "c").0, "pending");
    assert_counts_exact(&fixture, "retry");
    // --replace resets a finished item to pending.
    let replaced = fixture
        .drainctl(&["enqueue", "docs", "--replace", "--key", "a", "--payload", "{\"steps\": []}"])
        .run();
    replaced.assert_code(0);
    assert!(replaced.stdout.contains("1 replaced"), "{}", replaced.stdout);
    assert_counts_exact(&fixture, "replace");
    // Prune removes done items older than a day.
    fixture.set_now("2026-11-29T10:00:00Z");
    fixture.drainctl(&["prune"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 0);
    assert_counts_exact(&fixture, "prune");
    // An item deleted by hand.
    fixture.client().execute("DELETE FROM items WHERE key = 'e'", &[]).unwrap();
    assert_counts_exact(&fixture, "delete");
    // A file-backed item whose file vanished before it ran.
    fs::create_dir_all(fixture.path("data")).unwrap();
    fs::write(fixture.path("data/x.txt"), "x\n").unwrap();
    fs::write(fixture.path("data/y.txt"), "y\n").unwrap();
    fixture.drainctl(&["scan", "files"]).run().assert_code(0);
    fs::remove_file(fixture.path("data/x.txt")).unwrap();
    fixture.drainctl(&["scan", "files"]).run().assert_code(0);
    assert_eq!(fixture.item("files", "x.txt").0, "skipped_missing");
    assert_counts_exact(&fixture, "skipped_missing");
    // A failed batch changes nothing, counts included.
    fixture
        .drainctl(&["enqueue", "docs"])
        .stdin("{\"key\": \"z\", \"payload\": 1}\n{oops\n")
        .run()
        .assert_code(65);
    assert_counts_exact(&fixture, "failed batch");
}

#[test]
fn a_repeated_key_in_one_batch_keeps_its_first_line_and_counts_the_rest_as_duplicates() {
    let fixture = Fixture::new(&config(), NOW);
    fixture.drainctl(&["enqueue", "docs", "--key", "old", "--payload", "0"]).run().assert_code(0);
    let lines = "{\"key\": \"new\", \"payload\": 1}\n{\"key\": \"old\", \"payload\": 2}\n\n\
                 {\"key\": \"new\", \"payload\": 3}\n{\"key\": \"later\", \"payload\": 4}\n";
    let result = fixture.drainctl(&["enqueue", "docs", "--json"]).stdin(lines).run();
    result.assert_code(0);
    let json = result.json();
    assert_eq!((json["added"].as_i64(), json["duplicates"].as_i64()), (Some(2), Some(2)), "{json}");
    let payloads: Vec<serde_json::Value> =
        fixture.column("SELECT payload FROM items WHERE drain = 'docs' ORDER BY id");
    // Item ids follow the input order (and with them the claim order).
    assert_eq!(payloads, vec![json!(0), json!(1), json!(4)]);
    // With --replace the first line of a repeated key is the one that replaces.
    fixture.client().execute("UPDATE items SET state = 'done' WHERE key = 'old'", &[]).unwrap();
    let lines = "{\"key\": \"old\", \"payload\": 5}\n{\"key\": \"old\", \"payload\": 6}\n";
    let result = fixture.drainctl(&["enqueue", "docs", "--replace", "--json"]).stdin(lines).run();
    let json = result.json();
    assert_eq!((json["replaced"].as_i64(), json["duplicates"].as_i64()), (Some(1), Some(1)), "{json}");
    let payload: serde_json::Value =
        fixture.client().query_one("SELECT payload FROM items WHERE key = 'old'", &[]).unwrap().get(0);
    assert_eq!(payload, json!(5));
}

#[test]
fn enqueue_streams_a_large_batch_in_bounded_memory_and_a_late_bad_line_still_enqueues_nothing() {
    let fixture = Fixture::new(&config(), NOW);
    let items = 60_000;
    let filler = "x".repeat(900);
    // Written line by line: this process stays small (a child's peak RSS counts what it
    // shared with its parent before it started drainctl).
    let file = fixture.path("batch.jsonl");
    let mut out = std::io::BufWriter::new(fs::File::create(&file).unwrap());
    for index in 0..items {
        writeln!(out, "{{\"key\": \"k{index}\", \"payload\": {{\"n\": {index}, \"text\": \"{filler}\"}}}}")
            .unwrap();
    }
    out.flush().unwrap();
    drop(out);
    // About 56 MiB of JSON lines: held as values, the batch alone would exceed the bound.
    let child = fixture.drainctl(&["enqueue", "docs", "--file", file.to_str().unwrap()]).spawn();
    let (result, peak_kib) = wait_with_own_peak_memory(child);
    result.assert_code(0);
    assert!(result.stdout.contains(&format!("{items} added")), "{}", result.stdout);
    assert!(peak_kib < 32 * 1024, "peak RSS {peak_kib} KiB");
    assert_eq!(fixture.count("SELECT count(*) FROM items"), items as i64);
    // The last line of a second batch is bad: nothing of it is enqueued, its line named.
    let mut second: String =
        (0..1000).map(|index| format!("{{\"key\": \"m{index}\", \"payload\": {index}}}\n")).collect();
    second.push_str("{\"key\": \"m-last\"}\n");
    let result = fixture.drainctl(&["enqueue", "docs"]).stdin(second).run();
    result.assert_code(65);
    assert!(
        result.stderr.contains("stdin:1001: missing \"payload\"; nothing was enqueued"),
        "{}",
        result.stderr
    );
    assert_eq!(fixture.count("SELECT count(*) FROM items"), items as i64);
}

/// Wait for a child and return what it did plus the peak resident memory of the program
/// it runs, in KiB: `VmHWM` of its own address space, read until it exits. (`wait4`'s
/// peak also counts the memory it shared with this test process before it started the
/// program, which depends on what the other tests hold at that moment.)
fn wait_with_own_peak_memory(mut child: std::process::Child) -> (Finished, i64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    while child.try_wait().unwrap().is_none() {
        let status = fs::read_to_string(&status_path).unwrap_or_default();
        let hwm = status.lines().find_map(|line| line.strip_prefix("VmHWM:"));
        if let Some(kib) =
            hwm.and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (finished(child.wait_with_output().unwrap()), peak_kib)
}

/// Each prune batch reads its done items from an index in the order it deletes them: no
/// batch sorts every done item (which, over millions finished at the same instant, made a
/// batch of 1000 cost a scan of them all).
#[test]
fn a_prune_batch_reads_done_items_in_index_order_without_sorting_them() {
    let fixture = Fixture::new(&config(), NOW);
    fixture.drainctl(&["status"]).run().assert_code(0);
    let mut client = fixture.client();
    client.batch_execute("SET enable_seqscan = off; SET enable_sort = off").unwrap();
    let plan: serde_json::Value = client
        .query_one(
            "EXPLAIN (FORMAT JSON)
             SELECT id FROM items
              WHERE state IN ('done', 'skipped_missing') AND finished_at < now()
              ORDER BY finished_at, id
              LIMIT 1000",
            &[],
        )
        .unwrap()
        .get(0);
    let text = plan.to_string();
    // Neither a Sort nor an Incremental Sort node.
    assert!(!text.contains("Sort\""), "{plan:#}");
    assert!(text.contains("items_finished_id"), "{plan:#}");
}
