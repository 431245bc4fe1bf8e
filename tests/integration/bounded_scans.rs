//! Bounded scans: a scan inside `supervise` spends at most `max_hash_bytes_per_scan` on
//! hashing, so a huge file (a 10 GiB sparse file here) never holds up the pass; a file
//! larger than the budget is hashed on across passes, or at once by `scan --no-budget`.

use std::fs;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";
const BUDGET: u64 = 1 << 20;

fn config() -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"sessions\"\ncommand = [\"FAKE_WORKER\"]\n\
         source = {{ dir = \"data\", glob = \"*/*.jsonl\", max_hash_bytes_per_scan = {BUDGET} }}\n"
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// One supervise pass (the drain is paused: it only scans); its scan report.
fn supervise_scan(fixture: &Fixture) -> Value {
    let result = fixture.drainctl(&["supervise", "--json"]).run();
    result.assert_code(0);
    let pass = result.json();
    pass["scans"][0].clone()
}

fn keys(fixture: &Fixture) -> Vec<String> {
    fixture.column("SELECT key FROM items WHERE drain = 'sessions' ORDER BY key")
}

fn deferred<'a>(scan: &'a Value, path: &str) -> &'a Value {
    scan["deferred_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|deferral| deferral["path"] == path)
        .unwrap_or_else(|| panic!("{path} not deferred in {scan:#}"))
}

#[test]
fn a_huge_sparse_file_never_holds_up_supervise_and_larger_files_are_hashed_across_passes() {
    let fixture = Fixture::new(&config(), NOW);
    let data = fixture.path("data");
    for folder in ["a", "b", "c"] {
        fs::create_dir_all(data.join(folder)).unwrap();
    }
    // 10 GiB that take no disk space (`truncate -s 10G`), first in walk order.
    fs::File::create(data.join("a/huge.jsonl")).unwrap().set_len(10 << 30).unwrap();
    // 2.5 MiB of real content: hashed over three passes.
    let medium: Vec<u8> = (0..(5u32 << 19)).map(|i| (i % 251) as u8).collect();
    fs::write(data.join("a/medium.jsonl"), &medium).unwrap();
    fs::write(data.join("b/1.jsonl"), "one\n").unwrap();
    fs::write(data.join("b/2.jsonl"), "two\n").unwrap();
    fs::File::create(data.join("c/sparse.jsonl")).unwrap().set_len(8 << 20).unwrap();
    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);

    // Pass 1: the small files are enqueued; the budget is spent and the rest deferred.
    let first = supervise_scan(&fixture);
    assert_eq!(first["status"], "done", "{first:#}");
    assert_eq!(
        (first["new"].as_u64(), first["deferred_by_budget"].as_u64()),
        (Some(2), Some(3)),
        "{first:#}"
    );
    assert_eq!(first["hash_budget"]["max_bytes"].as_u64(), Some(BUDGET));
    assert_eq!(first["hash_budget"]["max_seconds"].as_f64(), Some(5.0), "the default time budget");
    let spent = first["hashed_bytes"].as_u64().unwrap();
    assert!(spent <= BUDGET && spent > BUDGET - 128, "spent {spent} of {BUDGET}");
    assert_eq!(keys(&fixture), ["b/1.jsonl", "b/2.jsonl"]);
    let huge = deferred(&first, "a/huge.jsonl");
    assert_eq!((huge["reason"].as_str(), huge["size"].as_i64()), (Some("hash_budget"), Some(10 << 30)));
    assert_eq!(huge["hashed_bytes"], 0, "the smaller files go first");
    let medium_progress = deferred(&first, "a/medium.jsonl")["hashed_bytes"].as_i64().unwrap();
    assert_eq!(medium_progress, (BUDGET as i64 - 8) / 64 * 64, "what the small files left, in whole blocks");
    // supervise records what the budget deferred.
    let recorded: Value = fixture
        .client()
        .query_one("SELECT data FROM events WHERE kind = 'source_scanned' ORDER BY id DESC LIMIT 1", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded["deferred_by_budget"], 3, "{recorded:#}");
    assert_eq!(recorded["hash_budget"], first["hash_budget"], "the event has the budget the scan had");

    // Pass 2: the medium file goes on from where it stopped, not from its start.
    let second = supervise_scan(&fixture);
    assert_eq!(second["new"], 0, "{second:#}");
    assert_eq!(
        deferred(&second, "a/medium.jsonl")["hashed_bytes"].as_i64(),
        Some(medium_progress + BUDGET as i64)
    );
    assert!(second["hashed_bytes"].as_u64().unwrap() <= BUDGET);

    // Pass 3: it is finished and enqueued with the SHA-256 of its whole content.
    let third = supervise_scan(&fixture);
    assert_eq!(third["new"], 1, "{third:#}");
    let payload: Value = fixture
        .client()
        .query_one("SELECT payload FROM items WHERE key = 'a/medium.jsonl'", &[])
        .unwrap()
        .get(0);
    assert_eq!(payload["sha256"], sha256_hex(&medium));
    assert_eq!(payload["size"], medium.len());
    assert_eq!(deferred(&third, "c/sparse.jsonl")["reason"], "hash_budget");
    // supervise says how to hash the rest at once, as scan does (before: only scan did).
    let pass = fixture.drainctl(&["supervise"]).run();
    assert!(
        pass.stdout.contains("`drainctl scan sessions --no-budget` hashes the rest now"),
        "{}",
        pass.stdout
    );

    // The documented path for a file larger than the budget: `scan --no-budget`. The huge
    // file is gone by then: its saved progress goes with it.
    fs::remove_file(data.join("a/huge.jsonl")).unwrap();
    let human = fixture.drainctl(&["scan", "sessions"]).run();
    human.assert_code(0);
    assert!(
        human.stdout.contains("`drainctl scan sessions --no-budget` hashes the rest now"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("deferred c/sparse.jsonl: the hash budget did not reach its end"),
        "{}",
        human.stdout
    );
    let whole = fixture.drainctl(&["scan", "sessions", "--no-budget", "--json"]).run();
    whole.assert_code(0);
    let whole = whole.json();
    assert_eq!((whole["new"].as_u64(), whole["deferred"].as_u64()), (Some(1), Some(0)), "{whole:#}");
    assert_eq!(whole["hash_budget"], Value::Null);
    let payload: Value = fixture
        .client()
        .query_one("SELECT payload FROM items WHERE key = 'c/sparse.jsonl'", &[])
        .unwrap()
        .get(0);
    assert_eq!(payload["sha256"], sha256_hex(&vec![0u8; 8 << 20]));
    assert_eq!(fixture.count("SELECT count(*) FROM source_hash_progress"), 0, "nothing left half-hashed");
    assert_eq!(keys(&fixture), ["a/medium.jsonl", "b/1.jsonl", "b/2.jsonl", "c/sparse.jsonl"]);
}

#[test]
fn a_file_that_changes_between_passes_is_hashed_again_from_its_start() {
    let fixture = Fixture::new(&config(), NOW);
    let path = fixture.path("data/a/grows.jsonl");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut content = vec![7u8; (3 << 20) / 2];
    fs::write(&path, &content).unwrap();
    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);
    let first = supervise_scan(&fixture);
    assert_eq!(deferred(&first, "a/grows.jsonl")["hashed_bytes"].as_u64(), Some(BUDGET));
    // Appended to: the saved state is for another file now and is not used.
    content.extend_from_slice(b"more\n");
    fs::write(&path, &content).unwrap();
    let second = supervise_scan(&fixture);
    assert_eq!(deferred(&second, "a/grows.jsonl")["hashed_bytes"].as_u64(), Some(BUDGET), "{second:#}");
    let third = supervise_scan(&fixture);
    assert_eq!(third["new"], 1, "{third:#}");
    let payload: Value = fixture
        .client()
        .query_one("SELECT payload FROM items WHERE key = 'a/grows.jsonl'", &[])
        .unwrap()
        .get(0);
    assert_eq!(payload["sha256"], sha256_hex(&content));
}

#[test]
fn a_changed_file_whose_item_runs_is_not_hashed_again_from_its_start_while_it_runs() {
    let fixture = Fixture::new(&config(), NOW);
    let path = fixture.path("data/a/log.jsonl");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, b"first\n").unwrap();
    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);
    assert_eq!(supervise_scan(&fixture)["new"], 1);
    // Its item runs (a pass elsewhere holds it) while the file grows past two budgets.
    let mut client = fixture.client();
    let run = fixture.hold_by_a_running_run("sessions", None);
    let content = vec![7u8; (5 << 20) / 2];
    fs::write(&path, &content).unwrap();
    let hashed = |scan: &Value| deferred(scan, "a/log.jsonl")["hashed_bytes"].as_u64();
    let reason = |scan: &Value| deferred(scan, "a/log.jsonl")["reason"].as_str().map(str::to_string);
    assert_eq!(hashed(&supervise_scan(&fixture)), Some(BUDGET));
    assert_eq!(hashed(&supervise_scan(&fixture)), Some(2 * BUDGET));
    let done = supervise_scan(&fixture);
    assert_eq!((hashed(&done), reason(&done).as_deref()), (Some(content.len() as u64), Some("item_running")));
    // Still running: the next scans hash from where the last budget left off, not from
    // byte 0 (before: the whole file again, a budget a scan, for every change).
    for _ in 0..2 {
        let again = supervise_scan(&fixture);
        assert_eq!(reason(&again).as_deref(), Some("item_running"), "{again:#}");
        assert!(again["hashed_bytes"].as_u64().unwrap() <= BUDGET, "{again:#}");
    }
    // Done: the next scan enqueues the change.
    client.execute("UPDATE runs SET status = 'drained', finished_at = now() WHERE id = $1", &[&run]).unwrap();
    client.execute("UPDATE items SET state = 'done', finished_at = now(), claimed_by = NULL", &[]).unwrap();
    let enqueued = supervise_scan(&fixture);
    assert_eq!(enqueued["changed"], 1, "{enqueued:#}");
    let payload: Value = client.query_one("SELECT payload FROM items", &[]).unwrap().get(0);
    assert_eq!(payload["sha256"], sha256_hex(&content));
}

#[test]
fn a_hash_budget_out_of_range_is_refused_naming_the_key() {
    let fixture = Fixture::new(&config().replace(&format!("= {BUDGET}"), "= 10"), NOW);
    let result = fixture.drainctl(&["scan", "sessions"]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("source.max_hash_bytes_per_scan: 10 is out of range; use at least 64"),
        "{}",
        result.stderr
    );
    let fixture = Fixture::new(&config().replace(" }", ", max_hash_seconds_per_scan = \"0s\" }"), NOW);
    let result = fixture.drainctl(&["scan", "sessions"]).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("source.max_hash_seconds_per_scan: must be more than 0s"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_budget_left_too_small_for_a_block_hashes_nothing_and_says_so() {
    // 64 bytes: the 6-byte file takes 6, and the 58 left are less than one 64-byte block
    // of the hash, which progress is kept in. Before: "4 hashed" and "was used up".
    let text =
        config().replace(&format!("max_hash_bytes_per_scan = {BUDGET}"), "max_hash_bytes_per_scan = 64");
    let fixture = Fixture::new(&text, NOW);
    let data = fixture.path("data/a");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("small.jsonl"), "small\n").unwrap();
    for name in ["x.jsonl", "y.jsonl", "z.jsonl"] {
        fs::write(data.join(name), vec![b'x'; 200]).unwrap();
    }
    let scan = fixture.drainctl(&["scan", "sessions", "--json"]).run();
    scan.assert_code(0);
    let json = scan.json();
    assert_eq!((json["hashed"].as_u64(), json["hashed_bytes"].as_u64()), (Some(1), Some(6)), "{json:#}");
    assert_eq!(json["deferred_by_budget"], 3);
    let human = fixture.drainctl(&["scan", "sessions"]).run();
    assert!(human.stdout.contains("did not reach the end of 3 files"), "{}", human.stdout);
}

#[test]
fn an_item_whose_folder_moved_waits_for_the_scan_that_repoints_it_instead_of_being_skipped() {
    let fixture = Fixture::new(&config(), NOW);
    let data = fixture.path("data");
    fs::create_dir_all(data.join("a")).unwrap();
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    fs::write(data.join("a/big.jsonl"), &big).unwrap();
    fixture.drainctl(&["scan", "sessions", "--no-budget"]).run().assert_code(0);
    assert_eq!(fixture.item("sessions", "a/big.jsonl").0, "pending");
    // The folder moves and `dir` follows it; the next scan's budget defers the big file,
    // so its item still names the old path when a pass claims it.
    fs::rename(&data, fixture.path("moved")).unwrap();
    let text = fs::read_to_string(&fixture.config_path).unwrap().replace("dir = \"data\"", "dir = \"moved\"");
    fs::write(&fixture.config_path, text).unwrap();
    fixture.drainctl(&["scan", "sessions"]).run().assert_code(0);
    let pass = fixture.drainctl(&["drain", "sessions", "--json"]).run();
    pass.assert_code(0);
    // Before: settled skipped_missing ("vanished") and counted as finished.
    assert_eq!(fixture.item("sessions", "a/big.jsonl").0, "pending", "{}", pass.stdout);
    let note: String = fixture.column("SELECT error FROM attempts ORDER BY id DESC LIMIT 1").remove(0);
    assert!(note.contains("left for a scan to repoint the item"), "{note}");
    assert_eq!(
        fixture.count("SELECT attempts::bigint FROM items WHERE key = 'a/big.jsonl'"),
        0,
        "not charged"
    );
    // A scan that hashes it repoints it; once its wait is over the next pass runs it.
    fixture.drainctl(&["scan", "sessions", "--no-budget"]).run().assert_code(0);
    fixture.set_now("2026-11-27T10:16:00Z");
    fixture.drainctl(&["drain", "sessions"]).run().assert_code(0);
    assert_eq!(fixture.item("sessions", "a/big.jsonl").0, "done");
}

#[test]
fn a_scan_stopped_by_sigterm_keeps_what_it_hashed_and_says_so() {
    let fixture = Fixture::new(&config(), NOW);
    let data = fixture.path("data");
    fs::create_dir_all(data.join("a")).unwrap();
    fs::File::create(data.join("a/huge.jsonl")).unwrap().set_len(64 << 30).unwrap();
    let scan = fixture.drainctl(&["scan", "sessions", "--no-budget"]).spawn();
    // Once it has read some of the file (its own count of bytes read), it is asked to stop.
    let read_bytes = |pid: u32| -> u64 {
        let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
        io.lines().find_map(|line| line.strip_prefix("rchar: ")).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    wait_until("the scan hashes", std::time::Duration::from_secs(60), || read_bytes(scan.id()) > 64 << 20);
    signal(scan.id(), libc::SIGTERM);
    let stopped = finished(scan.wait_with_output().unwrap());
    // Before: killed by the signal (143) without a word, its hashing lost.
    stopped.assert_code(75);
    assert!(stopped.stderr.contains("scan of drain sessions interrupted by SIGTERM"), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("what it hashed is kept"), "{}", stopped.stderr);
    let kept: Vec<i64> = fixture.column("SELECT hashed_bytes FROM source_hash_progress");
    assert!(kept.len() == 1 && kept[0] > 0, "{kept:?}");
    // Not blamed on a budget (there is none with --no-budget).
    assert!(!stopped.stderr.contains("hash budget"), "{}", stopped.stderr);
}

#[test]
fn an_item_whose_file_no_scan_will_take_after_a_move_is_settled_not_kept_waiting() {
    // The folder moved and the glob narrowed: the file of the item's key is there, but no
    // scan will ever take it, so nothing would repoint the item (found in review: it was
    // given back every 15 minutes for ever).
    let fixture = Fixture::new(&config(), NOW);
    let data = fixture.path("data");
    fs::create_dir_all(data.join("a")).unwrap();
    fs::write(data.join("a/small.jsonl"), "one\n").unwrap();
    fixture.drainctl(&["scan", "sessions"]).run().assert_code(0);
    fs::rename(&data, fixture.path("moved")).unwrap();
    let text = fs::read_to_string(&fixture.config_path)
        .unwrap()
        .replace("dir = \"data\"", "dir = \"moved\"")
        .replace("glob = \"*/*.jsonl\"", "glob = \"*/*.txt\"");
    fs::write(&fixture.config_path, text).unwrap();
    fixture.drainctl(&["drain", "sessions"]).run().assert_code(0);
    assert_eq!(fixture.item("sessions", "a/small.jsonl").0, "skipped_missing");
}
