//! Feeding and keeping drains: file-backed sources (`scan`), cadence (`every`), forecasts
//! and the supervisor heartbeat in `status`, and retention (`prune`) — real files in a
//! temporary folder, a real PostgreSQL and an injected clock.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::operator::assert_documented;
use crate::support::*;

/// Friday 2026-11-27 12:00 in Jerusalem (UTC+2).
const NOW: &str = "2026-11-27T10:00:00Z";

fn config(drain: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"Asia/Jerusalem\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"sessions\"\ncommand = [\"FAKE_WORKER\"]\n{drain}"
    )
}

fn source_config(extra: &str) -> String {
    config(&format!("source = {{ dir = \"data\", glob = \"*/*.jsonl\"{extra} }}\n"))
}

fn write(fixture: &Fixture, relative: &str, text: &str) {
    let path = fixture.path("data").join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn set_mtime(path: &Path, at: SystemTime) {
    fs::File::options().write(true).open(path).unwrap().set_modified(at).unwrap();
}

fn scan(fixture: &Fixture) -> Value {
    let result = fixture.drainctl(&["scan", "sessions", "--json"]).run();
    result.assert_code(0);
    result.json()
}

/// (new, changed, unchanged, missing, refused, hashed) of a scan report.
fn counts(report: &Value) -> [u64; 6] {
    ["new", "changed", "unchanged", "missing", "refused", "hashed"]
        .map(|field| report[field].as_u64().unwrap_or_else(|| panic!("{field} in {report}")))
}

fn payload(fixture: &Fixture, key: &str) -> Value {
    fixture
        .client()
        .query_one("SELECT payload FROM items WHERE drain = 'sessions' AND key = $1", &[&key])
        .unwrap()
        .get(0)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn events(fixture: &Fixture, kind: &str) -> i64 {
    fixture.client().query_one("SELECT count(*) FROM events WHERE kind = $1", &[&kind]).unwrap().get(0)
}

fn supervise(fixture: &Fixture) -> Value {
    let result = fixture.drainctl(&["supervise", "--json"]).run();
    result.assert_code(0);
    result.json()
}

/// The action and reason of the pass's start-or-skip decision.
fn start_decision(pass: &Value) -> (String, String) {
    let decision = pass["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["action"] == "start" || d["action"] == "skip")
        .unwrap_or_else(|| panic!("no start/skip decision in {pass:#}"));
    (decision["action"].as_str().unwrap().to_string(), decision["reason"].as_str().unwrap().to_string())
}

// ---------------------------------------------------------------------------------------
// Sources

#[test]
fn a_scan_enqueues_new_files_once_and_hashes_only_what_changed() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "alice/1.jsonl", "{\"turn\": 1}\n");
    write(&fixture, "bob/2.jsonl", "{\"turn\": 2}\n");
    write(&fixture, "bob/notes.txt", "not matched by the glob\n");
    write(&fixture, "bob/.3.jsonl", "hidden: being written, renamed when complete\n");
    write(&fixture, "bob/deep/4.jsonl", "too deep for */*.jsonl\n");

    let first = scan(&fixture);
    assert_eq!(counts(&first), [2, 0, 0, 0, 0, 2], "{first:#}");
    assert_eq!((first["files"].as_u64(), first["truncated"].as_bool()), (Some(2), Some(false)));
    let data = fs::canonicalize(fixture.path("data")).unwrap();
    let alice = payload(&fixture, "alice/1.jsonl");
    assert_eq!(alice["path"], data.join("alice/1.jsonl").display().to_string());
    assert_eq!(alice["size"], 12);
    assert_eq!(alice["sha256"], sha256_hex("{\"turn\": 1}\n"));
    let mtime = chrono::DateTime::parse_from_rfc3339(alice["mtime"].as_str().unwrap()).unwrap();
    assert!(alice["mtime"].as_str().unwrap().ends_with('Z'), "{alice}");
    let on_disk = chrono::DateTime::<chrono::Utc>::from(
        fs::metadata(data.join("alice/1.jsonl")).unwrap().modified().unwrap(),
    );
    assert!((on_disk - mtime.with_timezone(&chrono::Utc)).num_milliseconds().abs() < 1, "{alice}");
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 2);
    assert_eq!(events(&fixture, "source_scanned"), 1);

    // Untouched files are not even opened, and nothing is recorded.
    let again = scan(&fixture);
    assert_eq!(counts(&again), [0, 0, 2, 0, 0, 0], "{again:#}");
    assert_eq!(events(&fixture, "source_scanned"), 1, "a scan that changed nothing records no event");

    // A touch without a change: hashed once, not re-enqueued; then not hashed again.
    let updated_before: String = fixture
        .client()
        .query_one("SELECT updated_at::text FROM items WHERE key = 'alice/1.jsonl'", &[])
        .unwrap()
        .get(0);
    set_mtime(&data.join("alice/1.jsonl"), SystemTime::now() + Duration::from_secs(60));
    let touched = scan(&fixture);
    assert_eq!(counts(&touched), [0, 0, 2, 0, 0, 1], "{touched:#}");
    let updated_after: String = fixture
        .client()
        .query_one("SELECT updated_at::text FROM items WHERE key = 'alice/1.jsonl'", &[])
        .unwrap()
        .get(0);
    assert_eq!(updated_before, updated_after, "the item was not touched");
    assert_eq!(counts(&scan(&fixture)), [0, 0, 2, 0, 0, 0]);

    // The worker runs both; then bob's file grows: re-enqueued, attempts reset.
    fixture.drainctl(&["drain", "sessions"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 2);
    fs::OpenOptions::new()
        .append(true)
        .open(data.join("bob/2.jsonl"))
        .unwrap()
        .write_all(b"{\"turn\": 3}\n")
        .unwrap();
    let appended = scan(&fixture);
    assert_eq!(counts(&appended), [0, 1, 1, 0, 0, 1], "{appended:#}");
    let (state, attempts, _) = fixture.item("sessions", "bob/2.jsonl");
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    let bob = payload(&fixture, "bob/2.jsonl");
    assert_eq!(bob["size"], 24);
    assert_eq!(bob["sha256"], sha256_hex("{\"turn\": 2}\n{\"turn\": 3}\n"));
    assert_eq!(fixture.item("sessions", "alice/1.jsonl").0, "done");
    assert_eq!(events(&fixture, "source_scanned"), 2);
}

#[test]
fn a_source_dir_that_resolves_to_a_folder_whose_name_is_not_utf8_fails_doctor_as_it_fails_every_scan() {
    use std::os::unix::ffi::OsStrExt;
    let fixture = Fixture::new(&source_config(""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    // `data` is a link (a release's `current`) to a folder whose name is Latin-1.
    let target = fixture.dir.path().join(std::ffi::OsStr::from_bytes(b"rel\xe9ase"));
    fs::create_dir_all(target.join("alice")).unwrap();
    fs::write(target.join("alice/a.jsonl"), "{}\n").unwrap();
    std::os::unix::fs::symlink(&target, fixture.path("data")).unwrap();
    let scanned = fixture.drainctl(&["scan", "sessions"]).run();
    scanned.assert_code(78);
    // It exists: not "create it".
    assert!(
        scanned.stderr.contains("whose name is not valid UTF-8 (item keys are): rename that folder")
            && !scanned.stderr.contains("create it"),
        "{}",
        scanned.stderr
    );
    // Before: `ok source: … is readable`, exit 0.
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(78);
    assert!(doctor.stdout.contains("whose name is not valid UTF-8"), "{}", doctor.stdout);
}

#[test]
fn a_source_dir_changed_to_another_folder_keeps_what_is_the_same_and_runs_what_differs() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "a/done.jsonl", "done\n");
    write(&fixture, "a/pending.jsonl", "pending\n");
    write(&fixture, "a/differs.jsonl", "old\n");
    scan(&fixture);
    fixture
        .client()
        .execute("UPDATE items SET state = 'done', attempts = 1, result = 'paid for' WHERE key <> 'a/pending.jsonl'", &[])
        .unwrap();
    // The operator copies the folder, keeping mtimes, and points `dir` at the copy; one
    // file of the copy has other content of the same size and mtime.
    let old = fixture.path("data");
    let new = fixture.path("moved");
    for name in ["done", "pending", "differs"] {
        let (from, to) = (old.join(format!("a/{name}.jsonl")), new.join(format!("a/{name}.jsonl")));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(
            &to,
            if name == "differs" { "new\n".to_string() } else { fs::read_to_string(&from).unwrap() },
        )
        .unwrap();
        set_mtime(&to, fs::metadata(&from).unwrap().modified().unwrap());
    }
    fixture.write_config(&config("source = { dir = \"moved\", glob = \"*/*.jsonl\" }\n"));
    let report = scan(&fixture);
    assert_eq!(counts(&report), [0, 1, 2, 0, 0, 3], "{report:#}");
    assert_eq!(report["moved"], 2, "{report:#}");
    let moved = fs::canonicalize(&new).unwrap();
    for key in ["a/done.jsonl", "a/pending.jsonl", "a/differs.jsonl"] {
        assert_eq!(payload(&fixture, key)["path"], moved.join(key).display().to_string(), "{key}");
    }
    // The same content keeps its state and result; the other content runs again.
    let state_and_result = |key: &str| -> (String, Option<Vec<u8>>) {
        let row =
            fixture.client().query_one("SELECT state, result FROM items WHERE key = $1", &[&key]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(state_and_result("a/done.jsonl"), ("done".to_string(), Some(b"paid for".to_vec())));
    assert_eq!(state_and_result("a/differs.jsonl").0, "pending");
    // The pending item runs from the new folder, not skipped as gone.
    fixture.drainctl(&["drain", "sessions"]).run().assert_code(0);
    assert_eq!(fixture.item("sessions", "a/pending.jsonl").0, "done");
    assert_eq!(counts(&scan(&fixture)), [0, 0, 3, 0, 0, 0], "settled: nothing read again");
    // An item the operator gave another payload is theirs: not moved back, nor refused.
    let mine = json!({ "path": "/elsewhere/other.jsonl", "note": "mine" });
    let replace =
        ["enqueue", "sessions", "--replace", "--key", "a/done.jsonl", "--payload", &mine.to_string()];
    fixture.drainctl(&replace).run().assert_code(0);
    assert_eq!(counts(&scan(&fixture)), [0, 0, 3, 0, 0, 0]);
    assert_eq!(payload(&fixture, "a/done.jsonl"), mine);
}

#[test]
fn doctor_warns_of_two_drains_scanning_one_folder_for_the_same_files() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "a/1.jsonl", "one\n");
    write(&fixture, "a/2.csv", "two\n");
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(!doctor.stdout.contains("both scan"), "{}", doctor.stdout);
    let folder = fs::canonicalize(fixture.path("data")).unwrap();
    let with_copies = |glob: &str| {
        format!(
            "{}\n[[drain]]\nname = \"copies\"\ncommand = [\"FAKE_WORKER\"]\nsource = {{ dir = \"data/\", glob = \"{glob}\" }}\n",
            source_config("")
        )
    };
    // The same glob, the folder reached by another path.
    fixture.write_config(&with_copies("*/*.jsonl"));
    let doctor = fixture.drainctl(&["doctor"]).run();
    let said = format!("warn  source: drains sessions and copies both scan source dir {}", folder.display());
    assert!(
        doctor.stdout.contains(&format!("{said} (the same glob */*.jsonl): a file both globs match")),
        "{}",
        doctor.stdout
    );
    // A folder split between them by extension: nothing to warn of.
    fixture.write_config(&with_copies("*/*.csv"));
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(!doctor.stdout.contains("both scan"), "{}", doctor.stdout);
    // Globs that differ but both match a file there (a link to one, as a scan takes it).
    fixture.write_config(&with_copies("*.txt"));
    assert!(!fixture.drainctl(&["doctor"]).run().stdout.contains("both scan"));
    std::os::unix::fs::symlink("a/1.jsonl", fixture.path("data/inlink.txt")).unwrap();
    fixture.write_config(&with_copies("*.txt").replace("glob = \"*/*.jsonl\"", "glob = \"*.*\""));
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(
        doctor.stdout.contains(&format!("{said} (inlink.txt, for one, matches both globs)")),
        "{}",
        doctor.stdout
    );
    // A link that leads out of the folder is no file of it (a scan refuses it).
    std::os::unix::fs::symlink("/etc/hostname", fixture.path("data/outside.txt")).unwrap();
    std::fs::remove_file(fixture.path("data/inlink.txt")).unwrap();
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(!doctor.stdout.contains("both scan"), "{}", doctor.stdout);
}

#[test]
fn a_file_deleted_after_the_scan_is_skipped_missing_when_its_item_is_claimed() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "dave/1.jsonl", "one\n");
    scan(&fixture);
    // Gone between the scan and the pass: the worker never runs and no attempt is spent.
    fs::remove_file(fixture.path("data/dave/1.jsonl")).unwrap();
    let pass = fixture.drainctl(&["drain", "sessions", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(
        (pass.json()["items_done"].as_i64(), pass.json()["items_failed"].as_i64()),
        (Some(0), Some(0))
    );
    let (state, attempts, note) = fixture.item("sessions", "dave/1.jsonl");
    assert_eq!((state.as_str(), attempts), ("skipped_missing", 0));
    assert!(note.unwrap().contains("vanished before the item was done"));
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'item_skipped_missing'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts WHERE outcome = 'skipped_missing'"), 1);
    // The file comes back as it was (moved away and back keeps its mtime): no scan saw it
    // gone, yet its item never ran, so it is enqueued again — not `unchanged` for good.
    write(&fixture, "dave/1.jsonl", "one\n");
    let recorded: chrono::DateTime<chrono::Utc> = fixture
        .client()
        .query_one("SELECT mtime FROM source_files WHERE path = 'dave/1.jsonl'", &[])
        .unwrap()
        .get(0);
    set_mtime(&fixture.path("data/dave/1.jsonl"), SystemTime::from(recorded));
    let back = scan(&fixture);
    assert_eq!(counts(&back), [0, 1, 0, 0, 0, 0], "{back:#}");
    assert_eq!(fixture.item("sessions", "dave/1.jsonl").0, "pending");
}

#[test]
fn a_file_swapped_for_a_link_out_of_the_folder_is_never_handed_to_the_worker() {
    let fixture = Fixture::new(&source_config(""), NOW);
    let secret = fixture.path("secret.txt");
    fs::write(&secret, "the host's secret\n").unwrap();
    write(&fixture, "gina/1.jsonl", "one\n");
    write(&fixture, "hank/1.jsonl", "two\n");
    scan(&fixture);
    // Replaced by links that lead out of dir: one after the scan, one before the next.
    for name in ["gina/1.jsonl", "hank/1.jsonl"] {
        fs::remove_file(fixture.path("data").join(name)).unwrap();
        std::os::unix::fs::symlink(&secret, fixture.path("data").join(name)).unwrap();
    }
    let report = scan(&fixture);
    // Before: refused, yet not missing, and its item stayed pending.
    assert_eq!(
        (report["missing"].as_u64(), report["skipped_missing"].as_u64()),
        (Some(2), Some(2)),
        "{report:#}"
    );
    let (state, attempts, note) = fixture.item("sessions", "gina/1.jsonl");
    assert_eq!((state.as_str(), attempts), ("skipped_missing", 0));
    assert!(note.unwrap_or_default().contains("is a symbolic link that resolves outside dir"));
    // One swapped after the scan is caught at its claim: the worker never reads the link.
    write(&fixture, "ivy/1.jsonl", "three\n");
    scan(&fixture);
    fs::remove_file(fixture.path("data/ivy/1.jsonl")).unwrap();
    std::os::unix::fs::symlink(&secret, fixture.path("data/ivy/1.jsonl")).unwrap();
    let pass = fixture.drainctl(&["drain", "sessions", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(pass.json()["items_done"].as_i64(), Some(0), "{}", pass.stdout);
    let (state, attempts, note) = fixture.item("sessions", "ivy/1.jsonl");
    assert_eq!((state.as_str(), attempts), ("skipped_missing", 0));
    assert!(note.unwrap_or_default().contains("resolves outside dir"));
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE result IS NOT NULL"), 0);
}

#[test]
fn items_enqueued_beside_a_source_folder_run_and_keep_their_result() {
    let fixture = Fixture::new(&source_config(""), NOW);
    let outside = fixture.path("outside.txt");
    fs::write(&outside, "elsewhere\n").unwrap();
    // A path of its own, outside the folder: it runs as any enqueued item.
    let own = serde_json::json!({ "path": outside.to_str().unwrap(), "steps": [{ "out": "ran" }] });
    let kept = serde_json::json!({ "steps": [{ "out": "by hand" }] });
    // One whose path ends in its key, as a folder item's does, but that no scan recorded
    // (and that names no file at all).
    let lookalike = fixture.path("elsewhere/nia/1.jsonl");
    let lookalike = serde_json::json!({ "path": lookalike.to_str().unwrap(), "steps": [{ "out": "ran" }] });
    fixture.enqueue(
        "sessions",
        &[("doc-1".into(), own), ("kim/1.jsonl".into(), kept), ("nia/1.jsonl".into(), lookalike)],
    );
    let pass = fixture.drainctl(&["drain", "sessions", "--json"]).run();
    pass.assert_code(0);
    // Before: doc-1 was settled skipped_missing, "a symbolic link that resolves outside dir".
    assert_eq!(fixture.item("sessions", "doc-1").0, "done", "{}", pass.stdout);
    assert_eq!(fixture.item("sessions", "nia/1.jsonl").0, "done", "{}", pass.stdout);
    assert_eq!(fixture.item("sessions", "kim/1.jsonl").0, "done");
    // A file whose key an enqueued item has is refused, that item left with its result.
    write(&fixture, "kim/1.jsonl", "a file\n");
    write(&fixture, "lee/1.jsonl", "another\n");
    let report = scan(&fixture);
    assert_eq!((report["new"].as_u64(), report["refused"].as_u64()), (Some(1), Some(1)), "{report:#}");
    // Refused before it is read: only lee's file is hashed, by this scan and by none after.
    assert_eq!(report["hashed"].as_u64(), Some(1), "{report:#}");
    assert_eq!(report["refused_paths"][0]["path"], "kim/1.jsonl");
    assert!(
        report["refused_paths"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("its key is an item enqueued by hand"),
        "{report:#}"
    );
    let row = fixture
        .client()
        .query_one("SELECT state, convert_from(result, 'UTF8') FROM items WHERE key = 'kim/1.jsonl'", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("done".to_string(), "by hand\n".to_string())
    );
    assert_eq!(payload(&fixture, "kim/1.jsonl"), serde_json::json!({ "steps": [{ "out": "by hand" }] }));
    // And again by the next scan, while that item is there, still without reading it.
    let again = scan(&fixture);
    assert_eq!((again["refused"].as_u64(), again["hashed"].as_u64()), (Some(1), Some(0)), "{again:#}");
    // A folder item the operator gives another payload is theirs: its file going or
    // changing neither settles nor replaces it. Before: skipped_missing by the next scan.
    fixture.drainctl(&["drain", "sessions"]).run().assert_code(0);
    assert_eq!(fixture.item("sessions", "lee/1.jsonl").0, "done");
    let replaced = serde_json::json!({ "steps": [{ "out": "the operator's" }] });
    fixture
        .drainctl(&[
            "enqueue",
            "sessions",
            "--replace",
            "--key",
            "lee/1.jsonl",
            "--payload",
            &replaced.to_string(),
        ])
        .run()
        .assert_code(0);
    fs::remove_file(fixture.path("data/lee/1.jsonl")).unwrap();
    scan(&fixture);
    assert_eq!(fixture.item("sessions", "lee/1.jsonl").0, "pending");
    write(&fixture, "lee/1.jsonl", "back, and changed\n");
    // Refused before it is read, by this scan and every one after. Before: each scan
    // hashed the whole file again only to refuse it (a large one deferred by the budget
    // scan after scan).
    for _ in 0..2 {
        let report = scan(&fixture);
        // kim's file, refused above, and lee's.
        assert_eq!((report["refused"].as_u64(), report["hashed"].as_u64()), (Some(2), Some(0)), "{report:#}");
        assert_eq!(report["refused_paths"][1]["path"], "lee/1.jsonl", "{report:#}");
    }
    assert_eq!(payload(&fixture, "lee/1.jsonl"), replaced);
}

/// A drain fed from `data` whose done items are pruned a day after they finish.
fn pruning_source_config() -> String {
    source_config("").replace(
        "kill_grace",
        "retention = { runs = \"1d\", events = \"1d\", done_items = \"1d\" }\nkill_grace",
    )
}

/// Scan `keys`' files (and a file that stays, so the folder is never left empty), run
/// their items and prune them four days later: their `source_files` records stay.
fn scanned_run_and_pruned(fixture: &Fixture, keys: &[&str]) {
    write(fixture, "stays/1.jsonl", "stays\n");
    for key in keys {
        write(fixture, key, "e\n");
    }
    scan(fixture);
    fixture.drainctl(&["drain", "sessions"]).run().assert_code(0);
    fixture.set_now("2026-12-01T10:00:00Z");
    fixture.drainctl(&["prune"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM source_files"), keys.len() as i64 + 1);
}

/// An item enqueued by hand under `key`, with a `path` of its own (outside the folder,
/// ending in the key as a folder item's does) and a note.
fn enqueue_by_hand(fixture: &Fixture, key: &str, note: &str) -> Value {
    let own = fixture.path("x").join(key);
    fs::create_dir_all(own.parent().unwrap()).unwrap();
    fs::write(&own, "keep\n").unwrap();
    let payload = json!({ "path": own.to_str().unwrap(), "note": note, "steps": [{ "out": note }] });
    let added =
        fixture.drainctl(&["enqueue", "sessions", "--key", key, "--payload", &payload.to_string()]).run();
    added.assert_code(0);
    payload
}

/// (state, result as text) of one item.
fn state_and_result(fixture: &Fixture, key: &str) -> (String, Option<String>) {
    let row = fixture
        .client()
        .query_one("SELECT state, convert_from(result, 'UTF8') FROM items WHERE key = $1", &[&key])
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn an_item_enqueued_by_hand_under_a_recorded_files_key_is_not_settled_when_that_file_goes() {
    let fixture = Fixture::new(&pruning_source_config(), NOW);
    scanned_run_and_pruned(&fixture, &["a/1.jsonl"]);
    let mine = enqueue_by_hand(&fixture, "a/1.jsonl", "operator");
    fs::remove_file(fixture.path("data/a/1.jsonl")).unwrap();
    let report = scan(&fixture);
    // The folder's file is missing; the operator's item, whose own file is there, is not
    // the folder's. Before: "skipped_missing": 1, the item settled with "source file
    // …/data/a/1.jsonl vanished before the item was done" though it never ran.
    assert_eq!(
        (report["missing"].as_u64(), report["skipped_missing"].as_u64()),
        (Some(1), Some(0)),
        "{report:#}"
    );
    assert_eq!(fixture.item("sessions", "a/1.jsonl"), ("pending".to_string(), 0, None));
    assert_eq!(payload(&fixture, "a/1.jsonl"), mine);
    // It runs as any enqueued item: its claim does not check it as a file of the folder.
    let pass = fixture.drainctl(&["drain", "sessions", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(
        state_and_result(&fixture, "a/1.jsonl"),
        ("done".to_string(), Some("operator\n".to_string())),
        "{}",
        pass.stdout
    );
}

#[test]
fn an_item_enqueued_by_hand_under_a_recorded_files_key_is_neither_repointed_nor_replaced_by_the_folder() {
    let fixture = Fixture::new(&pruning_source_config(), NOW);
    // e's file stays as it was; f's changes.
    scanned_run_and_pruned(&fixture, &["e/1.jsonl", "f/1.jsonl"]);
    let retry_e = enqueue_by_hand(&fixture, "e/1.jsonl", "operator retry");
    let retry_f = enqueue_by_hand(&fixture, "f/1.jsonl", "operator retry f");
    let report = scan(&fixture);
    // Before: "moved": 2, the payloads replaced by the folder's
    // ({"mtime": …, "path": "…/data/e/1.jsonl", "sha256": …, "size": 2}).
    assert_eq!(report["moved"].as_u64(), Some(0), "{report:#}");
    assert_eq!(counts(&report), [0, 0, 3, 0, 0, 0], "not read, by this scan or the next: {report:#}");
    assert_eq!(counts(&scan(&fixture)), [0, 0, 3, 0, 0, 0]);
    assert_eq!(
        (payload(&fixture, "e/1.jsonl"), payload(&fixture, "f/1.jsonl")),
        (retry_e.clone(), retry_f.clone())
    );
    // A changed file of a key the operator's item has is refused before it is read, that
    // item left with its payload. Before: re-enqueued with the folder's payload.
    write(&fixture, "f/1.jsonl", "f, changed\n");
    let refused_f = |fixture: &Fixture| {
        let report = scan(fixture);
        assert_eq!(counts(&report), [0, 0, 2, 0, 1, 0], "{report:#}");
        assert_eq!(report["refused_paths"][0]["path"], "f/1.jsonl", "{report:#}");
        let reason = report["refused_paths"][0]["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("its key is an item enqueued by hand"), "{report:#}");
    };
    refused_f(&fixture);
    assert_eq!(payload(&fixture, "f/1.jsonl"), retry_f);
    // They run as any enqueued item: a claim does not take their paths for the folder's
    // files. Before: settled skipped_missing, their paths not inside dir.
    fixture.drainctl(&["drain", "sessions"]).run().assert_code(0);
    for (key, said) in [("e/1.jsonl", "operator retry\n"), ("f/1.jsonl", "operator retry f\n")] {
        assert_eq!(state_and_result(&fixture, key), ("done".to_string(), Some(said.to_string())), "{key}");
    }
    // Changed again: refused again, the item keeping its result. Before: back to pending,
    // the result cleared.
    write(&fixture, "f/1.jsonl", "f, changed again\n");
    refused_f(&fixture);
    assert_eq!(payload(&fixture, "f/1.jsonl"), retry_f);
    assert_eq!(
        state_and_result(&fixture, "f/1.jsonl"),
        ("done".to_string(), Some("operator retry f\n".to_string()))
    );
    assert_eq!(payload(&fixture, "e/1.jsonl"), retry_e);
}

#[test]
fn items_a_scan_enqueued_follow_a_source_dir_link_flipped_to_a_new_release() {
    let fixture = Fixture::new(&config("source = { dir = \"current\", glob = \"*/*.jsonl\" }\n"), NOW);
    let (r1, r2) = (fixture.path("r1"), fixture.path("r2"));
    for (release, differs) in [(&r1, "old\n"), (&r2, "new\n")] {
        for (name, text) in [("same", "same\n"), ("differs", differs)] {
            fs::create_dir_all(release.join("a")).unwrap();
            fs::write(release.join(format!("a/{name}.jsonl")), text).unwrap();
        }
    }
    std::os::unix::fs::symlink("r1", fixture.path("current")).unwrap();
    assert_eq!(counts(&scan(&fixture)), [2, 0, 0, 0, 0, 2]);
    fixture.client().execute("UPDATE items SET state = 'done', result = 'kept'", &[]).unwrap();
    fs::remove_file(fixture.path("current")).unwrap();
    std::os::unix::fs::symlink("r2", fixture.path("current")).unwrap();
    let report = scan(&fixture);
    // The same content is repointed and keeps its result; the other runs again.
    assert_eq!((report["moved"].as_u64(), report["changed"].as_u64()), (Some(1), Some(1)), "{report:#}");
    let r2 = fs::canonicalize(&r2).unwrap();
    assert_eq!(payload(&fixture, "a/same.jsonl")["path"], r2.join("a/same.jsonl").display().to_string());
    assert_eq!(state_and_result(&fixture, "a/same.jsonl"), ("done".to_string(), Some("kept".to_string())));
    assert_eq!(state_and_result(&fixture, "a/differs.jsonl"), ("pending".to_string(), None));
    assert_eq!(payload(&fixture, "a/differs.jsonl")["sha256"], sha256_hex("new\n"));
}

#[test]
fn a_name_with_control_characters_is_refused_with_its_raw_name_in_json_and_escaped_for_humans() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "kim/a\u{1}b.jsonl", "one\n");
    write(&fixture, "kim/fine.jsonl", "two\n");
    let report = scan(&fixture);
    assert_eq!((report["new"].as_u64(), report["refused"].as_u64()), (Some(1), Some(1)), "{report:#}");
    // A tab too, which the multi-line human report would otherwise keep raw.
    write(&fixture, "kim/t\tb.jsonl", "three\n");
    let tabbed = fixture.drainctl(&["scan", "sessions"]).run();
    assert!(
        tabbed.stdout.contains("refused kim/t\\tb.jsonl: name contains control characters"),
        "{}",
        tabbed.stdout
    );
    std::fs::remove_file(fixture.path("data/kim/t\tb.jsonl")).unwrap();
    // The name a script can match against the folder. Before: "kim/a\\u{1}b.jsonl", the
    // terminal's escape with a literal backslash.
    assert_eq!(report["refused_paths"][0]["path"], "kim/a\u{1}b.jsonl", "{report:#}");
    let human = fixture.drainctl(&["scan", "sessions"]).run();
    human.assert_code(0);
    assert!(
        human.stdout.contains("refused kim/a\\u{1}b.jsonl: name contains control characters"),
        "{}",
        human.stdout
    );
    assert!(!human.stdout.contains('\u{1}') && !human.stderr.contains('\u{1}'), "{human:?}");
}

#[test]
fn a_file_whose_skipped_item_was_pruned_is_enqueued_again_when_it_comes_back() {
    let with_retention =
        source_config("").replace("kill_grace", "retention = { done_items = \"30d\" }\nkill_grace");
    let fixture = Fixture::new(&with_retention, NOW);
    write(&fixture, "erin/1.jsonl", "one\n");
    write(&fixture, "frank/1.jsonl", "two\n");
    scan(&fixture);
    // frank's item runs; erin's file goes before hers does.
    fs::remove_file(fixture.path("data/erin/1.jsonl")).unwrap();
    let pass = fixture.drainctl(&["drain", "sessions"]).run();
    pass.assert_code(0);
    // The pass's line counts the item it settled. Before: "1 done, 0 failed" alone.
    assert!(
        pass.stdout.contains(": 1 done, 0 failed attempts, 1 skipped (file missing) — "),
        "{}",
        pass.stdout
    );
    assert_eq!(fixture.item("sessions", "erin/1.jsonl").0, "skipped_missing");
    assert_eq!(fixture.item("sessions", "frank/1.jsonl").0, "done");
    fixture.set_now("2027-06-01T10:00:00Z");
    fixture.drainctl(&["prune"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
    // Both files are there again: erin's never ran and is enqueued as new; frank's ran,
    // and its removed done item is not enqueued again (docs/configuration.md).
    write(&fixture, "erin/1.jsonl", "one\n");
    let back = scan(&fixture);
    assert_eq!((back["new"].as_u64(), back["changed"].as_u64()), (Some(1), Some(0)), "{back:#}");
    assert_eq!(fixture.item("sessions", "erin/1.jsonl").0, "pending");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'frank/1.jsonl'"), 0);
}

#[test]
fn a_file_that_vanishes_before_its_item_ran_is_skipped_missing_and_one_that_ran_stays_done() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "alice/1.jsonl", "one\n");
    scan(&fixture);
    fixture.drainctl(&["drain", "sessions"]).run().assert_code(0);
    write(&fixture, "carol/2.jsonl", "two\n");
    assert_eq!(counts(&scan(&fixture)), [1, 0, 1, 0, 0, 1]);

    fs::remove_file(fixture.path("data/alice/1.jsonl")).unwrap();
    fs::remove_dir_all(fixture.path("data/carol")).unwrap();
    let report = scan(&fixture);
    assert_eq!(counts(&report), [0, 0, 0, 2, 0, 0], "{report:#}");
    assert_eq!(report["skipped_missing"], 1);
    assert_eq!(fixture.item("sessions", "alice/1.jsonl").0, "done", "it ran before its file went");
    let (state, attempts, note) = fixture.item("sessions", "carol/2.jsonl");
    assert_eq!((state.as_str(), attempts), ("skipped_missing", 0));
    assert!(note.unwrap().contains("vanished before the item was done"));

    // Reported in the counts, not as a failure; listed by `items --state`.
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    let counts_json = &status["drains"][0]["counts"];
    assert_eq!((counts_json["skipped_missing"].as_i64(), counts_json["dead"].as_i64()), (Some(1), Some(0)));
    let listed =
        fixture.drainctl(&["items", "sessions", "--state", "skipped_missing", "--json"]).run().json();
    assert_eq!(listed["items"][0]["key"], "carol/2.jsonl");
    let human = fixture.drainctl(&["items", "sessions"]).run();
    assert!(
        human.stdout.starts_with("sessions: 0 pending, 0 running, 1 done, 0 dead, 1 skipped (file missing)"),
        "{}",
        human.stdout
    );
    // Nothing is left to run, and a second scan has nothing new to say.
    assert_eq!(counts(&scan(&fixture)), [0, 0, 0, 0, 0, 0]);

    // The file comes back: its item never ran, so it is enqueued again.
    write(&fixture, "carol/2.jsonl", "two\n");
    let back = scan(&fixture);
    assert_eq!((back["changed"].as_u64(), back["new"].as_u64()), (Some(1), Some(0)), "{back:#}");
    assert_eq!(fixture.item("sessions", "carol/2.jsonl").0, "pending");
}

#[test]
fn a_fifo_or_a_link_to_one_that_the_glob_matches_is_refused_not_skipped_silently() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "alice/1.jsonl", "one\n");
    let fifo = fixture.path("data/alice/pipe.jsonl");
    make_fifo(&fifo, 0o600);
    std::os::unix::fs::symlink("pipe.jsonl", fixture.path("data/alice/to-pipe.jsonl")).unwrap();
    let report = scan(&fixture);
    // Before: in neither count, as if they were not there.
    assert_eq!((report["new"].as_u64(), report["refused"].as_u64()), (Some(1), Some(2)), "{report:#}");
    let reasons: Vec<&str> =
        report["refused_paths"].as_array().unwrap().iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["a FIFO, not a regular file", "symbolic link to a FIFO, not a regular file"]);
}

#[test]
fn paths_that_leave_the_source_folder_are_refused_and_never_read() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "alice/1.jsonl", "one\n");
    let secret = fixture.path("secret.jsonl");
    fs::write(&secret, "outside the source\n").unwrap();
    fs::create_dir_all(fixture.path("data/mallory")).unwrap();
    std::os::unix::fs::symlink(&secret, fixture.path("data/mallory/evil.jsonl")).unwrap();
    std::os::unix::fs::symlink("../../..", fixture.path("data/mallory/up.jsonl")).unwrap();
    std::os::unix::fs::symlink(fixture.path("nowhere"), fixture.path("data/mallory/dangling.jsonl")).unwrap();
    // A folder link that leads out is not walked either.
    std::os::unix::fs::symlink(fixture.dir.path(), fixture.path("data/outside")).unwrap();
    // A link that stays inside is fine.
    std::os::unix::fs::symlink("../alice/1.jsonl", fixture.path("data/mallory/inside.jsonl")).unwrap();

    let report = scan(&fixture);
    assert_documented("drainctl scan", &report);
    assert_eq!(report["new"], 2, "{report:#}");
    assert_eq!(report["refused"], 4, "{report:#}");
    let refused: Vec<(&str, &str)> = report["refused_paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["path"].as_str().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    let paths: Vec<&str> = refused.iter().map(|(path, _)| *path).collect();
    assert_eq!(paths, ["mallory/dangling.jsonl", "mallory/evil.jsonl", "mallory/up.jsonl", "outside"]);
    assert!(refused[1].1.contains("resolves outside dir"), "{refused:?}");
    let keys: Vec<String> = fixture.column("SELECT key FROM items ORDER BY key");
    assert_eq!(keys, ["alice/1.jsonl", "mallory/inside.jsonl"]);
    let human = fixture.drainctl(&["scan", "sessions"]).run();
    human.assert_code(0);
    assert!(
        human.stdout.contains("refused mallory/evil.jsonl: symbolic link resolves outside dir"),
        "{}",
        human.stdout
    );
}

#[test]
fn a_scan_is_bounded_and_the_next_one_goes_on_where_it_stopped() {
    let fixture = Fixture::new(&source_config(", max_files_per_scan = 2"), NOW);
    for name in ["a/1.jsonl", "a/2.jsonl", "b/1.jsonl", "c/1.jsonl", "c/2.jsonl"] {
        write(&fixture, name, name);
    }
    let first = scan(&fixture);
    assert_eq!((first["new"].as_u64(), first["truncated"].as_bool()), (Some(2), Some(true)), "{first:#}");
    assert_eq!(first["resumed_after"], Value::Null);
    let second = scan(&fixture);
    assert_eq!((second["new"].as_u64(), second["truncated"].as_bool()), (Some(2), Some(true)), "{second:#}");
    assert_eq!(second["resumed_after"], "a/2.jsonl");
    // A file removed from a stretch already passed is noticed when the walk comes round.
    fs::remove_file(fixture.path("data/a/1.jsonl")).unwrap();
    let third = scan(&fixture);
    assert_eq!((third["new"].as_u64(), third["missing"].as_u64()), (Some(1), Some(0)), "{third:#}");
    assert_eq!(third["truncated"], false);
    let fourth = scan(&fixture);
    assert_eq!(fourth["resumed_after"], Value::Null, "starts over at the top");
    assert_eq!((fourth["unchanged"].as_u64(), fourth["missing"].as_u64()), (Some(2), Some(1)), "{fourth:#}");
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 5);
}

#[test]
fn scan_errors_say_what_to_fix() {
    let fixture = Fixture::new(&source_config(""), NOW);
    let missing = fixture.drainctl(&["scan", "sessions"]).run();
    missing.assert_code(78);
    assert!(
        missing.stderr.contains("source dir") && missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
    fixture.write_config(&config(""));
    let no_source = fixture.drainctl(&["scan", "sessions"]).run();
    no_source.assert_code(64);
    assert!(no_source.stderr.contains("drain sessions has no source"), "{}", no_source.stderr);
    fixture.write_config(&config("source = { dir = \"data\", glob = \"../*\" }\n"));
    let bad_glob = fixture.drainctl(&["scan", "sessions"]).run();
    bad_glob.assert_code(78);
    assert!(bad_glob.stderr.contains(":9:33: drain \"sessions\": source.glob:"), "{}", bad_glob.stderr);
}

#[test]
fn supervise_scans_sources_before_it_decides() {
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "alice/1.jsonl", "one\n");
    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);
    let pass = supervise(&fixture);
    assert_documented("drainctl supervise", &pass);
    let scans = pass["scans"].as_array().unwrap();
    assert_eq!(scans.len(), 1, "{pass:#}");
    assert_eq!((scans[0]["drain"].as_str(), scans[0]["new"].as_u64()), (Some("sessions"), Some(1)));
    assert_eq!(start_decision(&pass), ("skip".to_string(), "paused (no note)".to_string()));
    fixture.drainctl(&["resume", "sessions"]).run().assert_code(0);
    let dry = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    assert_eq!(dry["scans"], serde_json::json!([]), "a dry run does not scan");
    assert_eq!(start_decision(&dry).0, "start", "the scanned file is available");
    // A source that cannot be read fails that scan, not the pass: the rest goes on, and
    // the pass exits 78 as `scan` does for the same configuration problem, not 70.
    fs::rename(fixture.path("data"), fixture.path("moved")).unwrap();
    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);
    let broken = fixture.drainctl(&["supervise", "--json"]).run();
    broken.assert_code(78);
    fixture.drainctl(&["scan", "sessions"]).run().assert_code(78);
    let report = broken.json();
    assert_eq!(report["scans"][0]["status"], "failed");
    assert!(report["scans"][0]["error"].as_str().unwrap().contains("does not exist"), "{report:#}");
    assert_eq!(start_decision(&report).0, "skip");
    assert_eq!(events(&fixture, "supervise_error"), 1);
}

#[test]
fn a_file_supervise_scans_in_is_started_by_the_same_pass_on_the_real_clock() {
    // On the real clock the scan runs after the pass fired, so its items became available
    // a moment after the instant the pass decided at: they waited for the next pass.
    let fixture = Fixture::new(&source_config(""), NOW);
    write(&fixture, "alice/1.jsonl", "one\n");
    let pass = fixture.drainctl(&["supervise", "--json"]).env_remove("DRAINCTL_NOW").run();
    pass.assert_code(0);
    let pass = pass.json();
    assert_eq!(pass["scans"][0]["new"], 1, "{pass:#}");
    assert_eq!(start_decision(&pass).0, "start", "{pass:#}");
    wait_until("the started pass to finish its item", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE state = 'done'") == 1
    });
}

// ---------------------------------------------------------------------------------------
// Cadence

#[test]
fn cadence_starts_a_drain_at_most_once_per_interval_even_when_every_pass_fails() {
    // The worker cannot start: every pass fails at once and the item stays available —
    // without a cadence, each supervise pass would start it again.
    let fixture =
        Fixture::new(&config("every = \"1h\"\n").replace("FAKE_WORKER", "/nonexistent/worker"), NOW);
    fixture.drainctl(&["enqueue", "sessions", "--key", "k", "--payload", "{}"]).run().assert_code(0);
    let failed_runs = |fixture: &Fixture| fixture.count("SELECT count(*) FROM runs WHERE status = 'failed'");

    assert_eq!(start_decision(&supervise(&fixture)).0, "start");
    wait_until("the first pass to fail", Duration::from_secs(30), || failed_runs(&fixture) == 1);

    for (now, wait) in [("2026-11-27T10:15:00Z", "45m"), ("2026-11-27T10:59:59Z", "1s")] {
        fixture.set_now(now);
        let (action, reason) = start_decision(&supervise(&fixture));
        assert_eq!((action.as_str(), reason), ("skip", format!("cadence 1h: next start in {wait}")));
    }
    fixture.set_now("2026-11-27T11:00:00Z");
    assert_eq!(start_decision(&supervise(&fixture)).0, "start");
    wait_until("the second pass to fail", Duration::from_secs(30), || failed_runs(&fixture) == 2);
    fixture.set_now("2026-11-27T11:30:00Z");
    assert_eq!(start_decision(&supervise(&fixture)).0, "skip");
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 2, "one start per hour");

    // A burst ignores the cadence.
    fixture.drainctl(&["burst", "on", "sessions", "--until", "+2h"]).run().assert_code(0);
    let pass = supervise(&fixture);
    let start = pass["decisions"].as_array().unwrap().iter().find(|d| d["action"] == "start").cloned();
    assert_eq!(start.expect("started in burst")["trigger"], "burst");
    wait_until("the burst pass to fail", Duration::from_secs(30), || failed_runs(&fixture) == 3);
}

/// Seed a run of `status` started at `at` that took nothing, check that `supervise` starts
/// the drain all the same, and undo what the started pass did (its run, its attempts, the
/// item it finished); the seeded run's id.
fn started_despite(
    fixture: &Fixture,
    client: &mut postgres::Client,
    at: chrono::DateTime<chrono::Utc>,
    status: &str,
) -> i64 {
    let run = seed_run(client, at, Some(at), status, 0, None);
    assert_eq!(start_decision(&supervise(fixture)).0, "start", "{status}");
    wait_until("the pass to end", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM runs WHERE status = 'running'") == 0
    });
    client
        .batch_execute(
            "DELETE FROM attempts; UPDATE items SET state = 'pending', result = NULL, finished_at = NULL",
        )
        .unwrap();
    client.execute("DELETE FROM runs WHERE id > $1", &[&run]).unwrap();
    run
}

#[test]
fn a_pass_that_met_its_group_backing_off_and_took_nothing_costs_no_cadence() {
    let fixture = Fixture::new(&config("every = \"1h\"\n"), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut client = fixture.client();
    seed_pending(&mut client, 1);
    seed_run(&mut client, days_before_now(1), Some(days_before_now(1)), "drained", 1, None);
    let empty = at(NOW) - chrono::Duration::minutes(5);
    // Started 5 minutes ago, it yielded to a higher-ranking drain (`drained`) or met a pause
    // (`window_closed`), taking nothing. Before: each cost the drain its hour.
    for status in ["drained", "window_closed"] {
        let other = started_despite(&fixture, &mut client, empty, status);
        client.execute("DELETE FROM runs WHERE id = $1", &[&other]).unwrap();
    }
    // It met the group backing off (another drain's hit) before it claimed anything.
    // Before: it counted, and the drain waited 55 more minutes while its group's
    // lower-ranking drains took the quota at the reset.
    let run = started_despite(&fixture, &mut client, empty, "rate_limited");
    // One that started a worker (its attempt met the limit) counts.
    client.execute("DELETE FROM runs WHERE id <> $1", &[&run]).unwrap();
    client
        .execute(
            "INSERT INTO attempts (item_id, run_id, attempt, started_at, finished_at, outcome)
             SELECT id, $1, 1, $2, $2, 'quota_hit' FROM items LIMIT 1",
            &[&run, &empty],
        )
        .unwrap();
    let (action, reason) = start_decision(&supervise(&fixture));
    assert_eq!((action.as_str(), reason.as_str()), ("skip", "cadence 1h: next start in 55m"));
}

// ---------------------------------------------------------------------------------------
// Forecasts and the supervisor heartbeat

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&chrono::Utc)
}

fn days_before_now(days: i64) -> chrono::DateTime<chrono::Utc> {
    at(NOW) - chrono::Duration::days(days)
}

/// A run of drain `sessions` as if a pass had recorded it.
fn seed_run(
    client: &mut postgres::Client,
    started: chrono::DateTime<chrono::Utc>,
    finished: Option<chrono::DateTime<chrono::Utc>>,
    status: &str,
    items_done: i32,
    log_path: Option<&str>,
) -> i64 {
    client
        .query_one(
            "INSERT INTO runs (drain, trigger, host, pid, started_at, last_checkpoint_at, status,
                               finished_at, items_done, log_path)
             VALUES ('sessions', 'supervisor', 'seeded', 1, $1, coalesce($2::timestamptz, $1::timestamptz), $3, $2, $4, $5)
             RETURNING id",
            &[&started, &finished, &status, &items_done, &log_path],
        )
        .unwrap()
        .get(0)
}

/// `count` pending items of `sessions`, enqueued at NOW.
fn seed_pending(client: &mut postgres::Client, count: i32) {
    client
        .execute(
            "INSERT INTO items (drain, key, payload, available_at, enqueued_at, updated_at)
             SELECT 'sessions', 'k' || n, '{}', $1, $1, $1 FROM generate_series(1, $2) AS n",
            &[&at(NOW), &count],
        )
        .unwrap();
}

#[test]
fn a_burst_verdict_counts_the_pace_its_quota_group_kept_between_its_limits() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut client = fixture.client();
    seed_pending(&mut client, 20);
    // Its own rate: 10 items in 6 minutes of running, 100 items/h.
    seed_run(
        &mut client,
        at("2026-11-27T05:00:00Z"),
        Some(at("2026-11-27T05:06:00Z")),
        "rate_limited",
        10,
        None,
    );
    // Its vendor let it finish 2, 3 and 1 items in the hours between its limit hits of this
    // morning — 2 items/h, the median, waits for the resets included — after a hit of
    // yesterday followed by idle hours, whose span counts for one (before: the whole day,
    // 0.3 items/h, "will not finish" whatever the burst).
    for hour in ["26T11", "27T06", "27T07", "27T08", "27T09"] {
        let hit = at(&format!("2026-11-{hour}:00:00Z"));
        client
            .execute(
                "INSERT INTO events (at, kind, drain, quota_group, message, data)
                 VALUES ($1, 'backoff_set', 'sessions', 'sessions', 'limit', '{}')",
                &[&hit],
            )
            .unwrap();
    }
    client
        .execute(
            "INSERT INTO items (drain, key, payload, state, attempts, available_at, enqueued_at, updated_at, finished_at)
             SELECT 'sessions', 'done' || n, '{}', 'done', 1, $1, $1, $1, $1::timestamptz + n * interval '20 minutes'
               FROM generate_series(1, 6) AS n",
            &[&at("2026-11-27T06:00:00Z")],
        )
        .unwrap();
    fixture.drainctl(&["burst", "on", "sessions", "--until", "+5h"]).run().assert_code(0);
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    assert_documented("drainctl status", &status);
    let forecast = status["drains"][0]["forecast"].clone();
    // Before: 20 items at 100 items/h, 12 minutes: "finishes before the deadline".
    assert_eq!(forecast["finishes_before_burst_deadline"], false, "{forecast}");
    assert_eq!(forecast["burst_quota_pace"], serde_json::json!({ "hits": 5, "items_per_hour": 1.5 }));
    let human = fixture.drainctl(&["status"]).run().stdout;
    assert!(
        human.contains(
            "  sessions: burst needs ~13h, 5h left: will not finish before the deadline\n  sessions: at the ~1.5 \
             items/h its quota group kept between its 5 limit hits of the last 24h\n"
        ),
        "{human}"
    );
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    assert!(metrics.contains("drainctl_burst_will_finish{drain=\"sessions\"} 0\n"), "{metrics}");
    // A burst long enough for that pace finishes.
    fixture.drainctl(&["burst", "on", "sessions", "--until", "+14h"]).run().assert_code(0);
    let forecast = fixture.drainctl(&["status", "--json"]).run().json()["drains"][0]["forecast"].clone();
    assert_eq!(forecast["finishes_before_burst_deadline"], true, "{forecast}");
}

#[test]
fn status_and_metrics_forecast_from_recent_runs_and_say_when_a_burst_will_not_finish() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut client = fixture.client();
    seed_pending(&mut client, 140);
    // Two passes in the last day: 10 items in 1 hour of running.
    seed_run(&mut client, at("2026-11-27T06:00:00Z"), Some(at("2026-11-27T06:30:00Z")), "budget", 4, None);
    seed_run(
        &mut client,
        at("2026-11-27T08:00:00Z"),
        Some(at("2026-11-27T08:30:00Z")),
        "rate_limited",
        6,
        None,
    );
    // Left out: older than a day, crashed (its end is when it was noticed), lock-skipped.
    seed_run(
        &mut client,
        days_before_now(2),
        Some(days_before_now(2) + chrono::Duration::hours(1)),
        "drained",
        500,
        None,
    );
    seed_run(&mut client, at("2026-11-27T09:00:00Z"), Some(at("2026-11-27T09:50:00Z")), "crashed", 0, None);
    seed_run(
        &mut client,
        at("2026-11-27T09:55:00Z"),
        Some(at("2026-11-27T09:55:00Z")),
        "lock_skipped",
        0,
        None,
    );

    let status = fixture.drainctl(&["status", "--json"]).run();
    status.assert_code(0);
    let forecast = status.json()["drains"][0]["forecast"].clone();
    assert_eq!(
        forecast,
        serde_json::json!({
            "runs": 2, "items_done": 10, "running_seconds": 3600.0, "items_per_hour": 10.0,
            "backlog": 140, "seconds_to_empty": 50400.0, "burst_budget_days": null,
            "burst_seconds_left": null, "finishes_before_burst_deadline": null,
            "burst_held_until": null, "burst_held_by": null, "burst_quota_pace": null,
        })
    );
    let human = fixture.drainctl(&["status"]).run().stdout;
    assert!(human.contains("  sessions: ~10 items/h over 2 runs; 140 left: ~14h of running\n"), "{human}");

    // A burst of 9 hours: 14 hours of work will not fit.
    fixture.drainctl(&["burst", "on", "sessions", "--until", "+9h"]).run().assert_code(0);
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    assert_documented("drainctl status", &status);
    let forecast = status["drains"][0]["forecast"].clone();
    assert_eq!(forecast["burst_seconds_left"], 32400.0);
    assert_eq!(forecast["finishes_before_burst_deadline"], false);
    let human = fixture.drainctl(&["status"]).run().stdout;
    assert!(
        human.contains("  sessions: burst needs ~14h, 9h left: will not finish before the deadline\n"),
        "{human}"
    );
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    for line in [
        format!("drainctl_throughput_items_per_second{{drain=\"sessions\"}} {}\n", 10.0 / 3600.0),
        "drainctl_time_to_empty_seconds{drain=\"sessions\"} 50400\n".to_string(),
        "drainctl_burst_will_finish{drain=\"sessions\"} 0\n".to_string(),
    ] {
        assert!(metrics.contains(&line), "{line:?} not in\n{metrics}");
    }
    // A longer burst will.
    fixture.drainctl(&["burst", "on", "sessions", "--until", "+15h"]).run().assert_code(0);
    let forecast = fixture.drainctl(&["status", "--json"]).run().json()["drains"][0]["forecast"].clone();
    assert_eq!(forecast["finishes_before_burst_deadline"], true);
    assert_eq!(
        (forecast["burst_held_until"].clone(), forecast["burst_held_by"].clone()),
        (Value::Null, Value::Null)
    );
}

#[test]
fn a_burst_whose_quota_group_backs_off_past_the_deadline_does_not_finish() {
    let fixture = Fixture::new(&config(""), NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut client = fixture.client();
    seed_pending(&mut client, 50);
    // 10 items per hour: 5 hours of work, 11 hours before the deadline.
    seed_run(&mut client, at("2026-11-27T06:00:00Z"), Some(at("2026-11-27T07:00:00Z")), "drained", 10, None);
    fixture.drainctl(&["burst", "on", "sessions", "--until", "+11h"]).run().assert_code(0);
    let forecast = fixture.drainctl(&["status", "--json"]).run().json()["drains"][0]["forecast"].clone();
    assert_eq!(forecast["finishes_before_burst_deadline"], true);
    // The quota group backs off until a day later: nothing runs before the deadline.
    client
        .execute(
            "INSERT INTO quota_backoffs (quota_group, backoff_until, reason, updated_at)
             VALUES ('sessions', '2026-11-28T12:01:00Z', 'usage limit reached', now())",
            &[],
        )
        .unwrap();
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    assert_documented("drainctl status", &status);
    let forecast = status["drains"][0]["forecast"].clone();
    // Before, it said the burst finishes before the deadline.
    assert_eq!(forecast["finishes_before_burst_deadline"], false);
    assert_eq!(forecast["burst_held_until"], "2026-11-28T12:01:00Z");
    assert_eq!(forecast["burst_held_by"], "backoff");
    let human = fixture.drainctl(&["status"]).run().stdout;
    assert!(
        human.contains(
            "  sessions: burst needs ~5h, 11h left: will not finish before the deadline\n  \
             sessions: its quota group backs off until Sat 2026-11-28 14:01 IST, after the deadline\n"
        ),
        "{human}"
    );
    let page = fixture.drainctl(&["report"]).run().stdout;
    assert!(page.contains("will not finish before the deadline"), "{page}");
    assert!(page.contains("backs off until Sat 2026-11-28 14:01 IST, after the deadline"), "{page}");
    assert!(!page.contains("finishes before the deadline</span>"), "{page}");
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    assert!(metrics.contains("drainctl_burst_will_finish{drain=\"sessions\"} 0\n"), "{metrics}");
    // A backoff that ends 7 hours before the deadline leaves 4 hours: not enough for 5.
    client.execute("UPDATE quota_backoffs SET backoff_until = '2026-11-27T17:00:00Z'", &[]).unwrap();
    let forecast = fixture.drainctl(&["status", "--json"]).run().json()["drains"][0]["forecast"].clone();
    assert_eq!(forecast["finishes_before_burst_deadline"], false);
    let human = fixture.drainctl(&["status"]).run().stdout;
    // The time after the backoff is what it has (before: "11h left", from now).
    assert!(
        human.contains("burst needs ~5h, 4h left to work: will not finish before the deadline\n"),
        "{human}"
    );
    assert!(
        human.contains("backs off until Fri 2026-11-27 19:00 IST: the burst works from then\n"),
        "{human}"
    );
    // One that ends in an hour leaves time enough.
    client.execute("UPDATE quota_backoffs SET backoff_until = '2026-11-27T11:00:00Z'", &[]).unwrap();
    let forecast = fixture.drainctl(&["status", "--json"]).run().json()["drains"][0]["forecast"].clone();
    assert_eq!(forecast["finishes_before_burst_deadline"], true);
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    assert!(metrics.contains("drainctl_burst_will_finish{drain=\"sessions\"} 1\n"), "{metrics}");
    // Paused, it will not finish, however much time is left: nothing starts it until resume.
    fixture.drainctl(&["pause", "sessions", "--note", "hold"]).run().assert_code(0);
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    assert_documented("drainctl status", &status);
    let forecast = status["drains"][0]["forecast"].clone();
    assert_eq!(forecast["finishes_before_burst_deadline"], false);
    assert_eq!(
        (forecast["burst_held_until"].clone(), forecast["burst_held_by"].clone()),
        (Value::Null, json!("paused"))
    );
    let human = fixture.drainctl(&["status"]).run().stdout;
    assert!(
        human.contains("11h left: will not finish before the deadline\n  sessions: it is paused: no pass starts it in this burst until `drainctl resume`\n"),
        "{human}"
    );
    let metrics = fixture.drainctl(&["metrics"]).run().stdout;
    assert!(metrics.contains("drainctl_burst_will_finish{drain=\"sessions\"} 0\n"), "{metrics}");
    fixture.drainctl(&["resume", "sessions"]).run().assert_code(0);
    let forecast = fixture.drainctl(&["status", "--json"]).run().json()["drains"][0]["forecast"].clone();
    assert_eq!(forecast["finishes_before_burst_deadline"], true);
}

#[test]
fn status_and_doctor_show_the_supervisor_heartbeat_and_doctor_warns_when_it_is_late() {
    let fixture = Fixture::new(&config(""), NOW);
    let heartbeat =
        |fixture: &Fixture| fixture.drainctl(&["status", "--json"]).run().json()["supervisor"].clone();
    let supervisor_check = |fixture: &Fixture| -> Value {
        let doctor = fixture.drainctl(&["doctor", "--json"]).run();
        doctor.assert_code(0);
        doctor.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "supervisor")
            .cloned()
            .unwrap()
    };
    let never = heartbeat(&fixture);
    assert_eq!((never["last_pass_at"].clone(), never["is_late"].clone()), (Value::Null, Value::Bool(true)));
    assert!(fixture.drainctl(&["status"]).run().stdout.contains("no supervise pass recorded yet"));
    assert_eq!(supervisor_check(&fixture)["status"], "warn");

    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);
    supervise(&fixture);
    fixture.set_now("2026-11-27T10:20:00Z");
    let recent = heartbeat(&fixture);
    assert_eq!(recent["last_pass_at"], NOW);
    assert_eq!(
        (recent["age_seconds"].as_f64(), recent["interval_seconds"].as_f64()),
        (Some(1200.0), Some(900.0))
    );
    assert_eq!(recent["is_late"], false);
    assert!(fixture.drainctl(&["status"]).run().stdout.contains("last supervise pass 20m ago\n"));
    let check = supervisor_check(&fixture);
    assert_eq!(
        (check["status"].as_str(), check["message"].as_str()),
        (Some("ok"), Some("last supervise pass 20m ago"))
    );

    // More than twice supervise_interval (15m) without a pass: cron is broken.
    fixture.set_now("2026-11-27T10:31:00Z");
    assert_eq!(heartbeat(&fixture)["is_late"], true);
    let check = supervisor_check(&fixture);
    assert_eq!(check["status"], "warn");
    assert_eq!(
        check["message"],
        "last supervise pass 31m ago, more than 30m (twice supervise_interval): check its crontab and its --log-file"
    );

    // The clock goes back an hour: the pass recorded at 10:00 lies ahead of it. Before,
    // the heartbeat read "last supervise pass in 20m" and stayed healthy for the whole
    // step, whether cron ran or not.
    fixture.set_now("2026-11-27T09:40:00Z");
    assert_eq!(heartbeat(&fixture)["is_late"], true);
    let check = supervisor_check(&fixture);
    assert_eq!(check["status"], "warn");
    assert!(
        check["message"].as_str().unwrap().starts_with(
            "last supervise pass recorded at 2026-11-27 12:00:00 IST, 20m ahead of this clock: the clock went back"
        ),
        "{check}"
    );
    // (In the configured zone, Asia/Jerusalem: before, in UTC.)
    // A pass on the new clock is the heartbeat again, though an earlier instant.
    fixture.set_now("2026-11-27T09:41:00Z");
    supervise(&fixture);
    fixture.set_now("2026-11-27T09:45:00Z");
    let after = heartbeat(&fixture);
    assert_eq!(
        (after["last_pass_at"].as_str(), after["is_late"].as_bool()),
        (Some("2026-11-27T09:41:00Z"), Some(false))
    );
}

// ---------------------------------------------------------------------------------------
// Retention

fn seed_item(
    client: &mut postgres::Client,
    key: &str,
    state: &str,
    finished: Option<chrono::DateTime<chrono::Utc>>,
) -> i64 {
    client
        .query_one(
            "INSERT INTO items (drain, key, payload, state, attempts, available_at, enqueued_at, updated_at, finished_at)
             VALUES ('sessions', $1, '{}', $2, 1, $3, $3, $3, $4) RETURNING id",
            &[&key, &state, &days_before_now(100), &finished],
        )
        .unwrap()
        .get(0)
}

fn seed_attempt(client: &mut postgres::Client, item: i64, run: i64) {
    client
        .execute(
            "INSERT INTO attempts (item_id, run_id, attempt, started_at, finished_at, outcome)
             SELECT $1, $2, 1, started_at, finished_at, 'done' FROM runs WHERE id = $2",
            &[&item, &run],
        )
        .unwrap();
}

#[test]
fn prune_removes_only_what_is_older_than_its_horizon_and_a_dry_run_removes_nothing() {
    let fixture = Fixture::new(
        &format!(
            "{}\n",
            config("").replace(
                "log_dir = \"TMPDIR/logs\"\n",
                "log_dir = \"TMPDIR/logs\"\nretention = { runs = \"30d\", events = \"90d\", logs = \"14d\", done_items = \"60d\" }\n"
            )
        ),
        NOW,
    );
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut client = fixture.client();
    let logs = fixture.path("logs/sessions");
    fs::create_dir_all(&logs).unwrap();
    let running_log = logs.join("20261001T000000Z-3.log");
    let running_log_text = running_log.display().to_string();

    // Runs older than 30 days: prunable unless something live refers to them.
    let old_done = seed_run(&mut client, days_before_now(40), Some(days_before_now(40)), "drained", 1, None);
    let old_dead = seed_run(&mut client, days_before_now(40), Some(days_before_now(40)), "drained", 0, None);
    let old_pending =
        seed_run(&mut client, days_before_now(40), Some(days_before_now(40)), "failed", 0, None);
    let old_running = seed_run(&mut client, days_before_now(40), None, "running", 0, Some(&running_log_text));
    let recent = seed_run(&mut client, days_before_now(10), Some(days_before_now(10)), "drained", 1, None);
    let ancient = seed_run(&mut client, days_before_now(70), Some(days_before_now(70)), "drained", 1, None);
    let done_recently = seed_item(&mut client, "done-40d", "done", Some(days_before_now(40)));
    seed_attempt(&mut client, done_recently, old_done);
    let dead = seed_item(&mut client, "dead", "dead", Some(days_before_now(40)));
    seed_attempt(&mut client, dead, old_dead);
    let pending = seed_item(&mut client, "pending", "pending", None);
    seed_attempt(&mut client, pending, old_pending);
    client
        .execute(
            "UPDATE items SET available_at = $1 WHERE id = $2",
            &[&(at(NOW) + chrono::Duration::days(9)), &pending],
        )
        .unwrap();
    // Done items older than 60 days go, with their attempts; younger ones stay.
    let done_old = seed_item(&mut client, "done-70d", "done", Some(days_before_now(70)));
    seed_attempt(&mut client, done_old, ancient);
    seed_item(&mut client, "skipped-61d", "skipped_missing", Some(days_before_now(61)));
    seed_item(&mut client, "done-59d", "done", Some(days_before_now(59)));
    for (days, kind) in [(100, "old_event"), (80, "kept_event")] {
        client
            .execute(
                "INSERT INTO events (at, kind, message) VALUES ($1, $2, 'seeded')",
                &[&days_before_now(days), &kind],
            )
            .unwrap();
    }
    for days in [45, 40] {
        client
            .execute(
                "INSERT INTO supervisor_passes (fired_at, scheduled_for, host, pid, status, duration_ms)
                 VALUES ($1, $1, 'seeded', 1, 'done', 10)",
                &[&days_before_now(days)],
            )
            .unwrap();
    }
    // Log files: old and new drain logs, the running run's log, files drainctl did not write.
    let old_log = logs.join("20261001T000000Z-1.log");
    let new_log = logs.join("20261120T000000Z-2.log");
    let foreign = logs.join("notes.txt");
    let supervise_log = fixture.path("logs/supervise.log");
    // Started a day ago by drainctl's clock (an injected one ahead of the file system's),
    // the file dated 20 days back: a pass just started, before its run row is written.
    let started_now = logs.join("20261126T000000Z-5.log");
    for (path, days) in [
        (&old_log, 20),
        (&new_log, 5),
        (&running_log, 20),
        (&foreign, 20),
        (&supervise_log, 20),
        (&started_now, 20),
    ] {
        fs::write(path, "log\n").unwrap();
        set_mtime(path, days_before_now(days).into());
    }

    let table_counts = |client: &mut postgres::Client| -> Vec<i64> {
        ["runs", "attempts", "items", "events", "supervisor_passes"]
            .iter()
            .map(|table| {
                client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get::<_, i64>(0)
            })
            .collect()
    };
    let before = table_counts(&mut client);
    let expected = |dry_run: bool| {
        serde_json::json!({
            "dry_run": dry_run,
            "runs_before": "2026-10-28T10:00:00Z",
            "events_before": "2026-08-29T10:00:00Z",
            "logs_before": "2026-11-13T10:00:00Z",
            "done_items_before": "2026-09-28T10:00:00Z",
            "runs": 2, "attempts": 2, "supervisor_passes": 1, "events": 1, "done_items": 2, "log_files": 1,
        })
    };

    let dry = fixture.drainctl(&["prune", "--dry-run", "--json"]).run();
    dry.assert_code(0);
    assert_documented("drainctl prune", &dry.json());
    assert_eq!(dry.json(), expected(true));
    assert_eq!(table_counts(&mut client), before, "a dry run removes nothing");
    assert!(old_log.exists());
    let human = fixture.drainctl(&["prune", "--dry-run"]).run().stdout;
    assert!(human.starts_with("dry run: nothing was removed\nwould remove 2 runs (2 attempts)"), "{human}");

    let real = fixture.drainctl(&["prune", "--json"]).run();
    real.assert_code(0);
    assert_eq!(real.json(), expected(false));
    let remaining_runs: Vec<i64> =
        client.query("SELECT id FROM runs ORDER BY id", &[]).unwrap().iter().map(|row| row.get(0)).collect();
    assert_eq!(remaining_runs, [old_dead, old_pending, old_running, recent]);
    let remaining_items: Vec<String> = client
        .query("SELECT key FROM items ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(remaining_items, ["dead", "done-40d", "done-59d", "pending"]);
    let attempts_left = client.query_one("SELECT count(*) FROM attempts", &[]).unwrap().get::<_, i64>(0);
    assert_eq!(attempts_left, 2, "the dead and the pending item keep theirs");
    assert_eq!(events(&fixture, "old_event"), 0);
    assert_eq!(events(&fixture, "kept_event"), 1);
    assert_eq!(events(&fixture, "retention_pruned"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM supervisor_passes"), 1, "the latest pass stays");
    assert!(!old_log.exists());
    for kept in [&new_log, &running_log, &foreign, &supervise_log, &started_now] {
        assert!(kept.exists(), "{} was removed", kept.display());
    }

    // Nothing left to remove; and supervise prunes at most once a day.
    let again = fixture.drainctl(&["prune", "--json"]).run().json();
    assert_eq!((again["runs"].as_u64(), again["events"].as_u64()), (Some(0), Some(0)));
    assert_eq!(events(&fixture, "retention_pruned"), 1, "nothing removed, nothing recorded");
    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);
    fixture.set_now("2026-11-27T20:00:00Z");
    assert_eq!(supervise(&fixture)["prune"], Value::Null, "pruned less than a day ago");
    fixture.set_now("2026-11-28T10:00:00Z");
    let pass = supervise(&fixture);
    assert_eq!(pass["prune"]["dry_run"], false, "{pass:#}");
    fixture.set_now("2026-11-28T10:15:00Z");
    assert_eq!(supervise(&fixture)["prune"], Value::Null);
}

#[test]
fn prune_keeps_a_drains_latest_run_and_everything_of_the_budget_day() {
    let retention = "retention = { runs = \"1h\", done_items = \"1h\" }\n";
    let fixture = Fixture::new(
        &config("every = \"60d\"\n").replace("kill_grace", &format!("{retention}kill_grace")),
        "2026-11-27T08:00:00Z",
    );
    fixture.enqueue("sessions", &[("a".into(), serde_json::json!("one"))]);
    fixture.drainctl(&["drain", "sessions", "--trigger", "supervisor"]).run().assert_code(0);
    // Two hours later, the same day in Jerusalem: today's run and its attempt stay, as
    // `max_cost_per_day` sums them. Before: both gone, the day's spending forgotten.
    fixture.set_now("2026-11-27T10:00:00Z");
    fixture.drainctl(&["prune"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM attempts"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 1);
    // 45 days on: the run is the drain's latest, which its 60-day cadence counts from.
    // Before: pruned, and supervise started the drain 15 days early.
    fixture.enqueue("sessions", &[("b".into(), serde_json::json!("two"))]);
    fixture.set_now("2027-01-11T10:00:00Z");
    fixture.drainctl(&["prune"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1);
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    let decision = &plan["decisions"][0];
    assert_eq!(decision["action"], "skip", "{plan:#}");
    assert!(decision["reason"].as_str().unwrap_or_default().contains("cadence"), "{plan:#}");
}

#[test]
fn a_daily_prune_whose_session_ended_is_tried_again_an_hour_later() {
    let fixture =
        Fixture::new(&config("").replace("kill_grace", "retention = { events = \"30d\" }\nkill_grace"), NOW);
    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);
    // A failover: the session, and with it any word of the prune's failure, is gone.
    fixture.supervise_whose_session_ends_in_its_prune().assert_code(69);
    // Before: "the next one is a day later".
    fixture.set_now("2026-11-27T10:45:00Z");
    assert_eq!(supervise(&fixture)["prune"], Value::Null, "tried again only an hour later");
    fixture.set_now("2026-11-27T11:00:00Z");
    let pass = supervise(&fixture);
    assert_eq!(pass["prune"]["events"], 1, "{pass:#}");
    fixture.set_now("2026-11-27T11:15:00Z");
    assert_eq!(supervise(&fixture)["prune"], Value::Null, "pruned less than a day ago");
}

#[test]
fn a_daily_prune_that_failed_is_tried_again_by_the_next_supervise() {
    let fixture =
        Fixture::new(&config("").replace("kill_grace", "retention = { events = \"30d\" }\nkill_grace"), NOW);
    fixture.drainctl(&["pause", "sessions"]).run().assert_code(0);
    let mut client = fixture.client();
    client
        .batch_execute(
            "INSERT INTO events (at, kind, message) VALUES (now() - interval '90 days', 'old_event', 'old');
             CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql
                 AS $$ BEGIN RAISE EXCEPTION 'events are kept today'; END $$;
             CREATE TRIGGER keep_events BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION refuse_delete();",
        )
        .unwrap();
    let failed = fixture.drainctl(&["supervise", "--json"]).run();
    assert_ne!(failed.code, 0, "{}", failed.stderr);
    assert!(failed.stderr.contains("could not prune old history"), "{}", failed.stderr);
    client.batch_execute("DROP TRIGGER keep_events ON events").unwrap();
    // Not every pass tries again, the first an hour later does: before, the failed prune
    // counted as the day's.
    fixture.set_now("2026-11-27T10:45:00Z");
    assert_eq!(supervise(&fixture)["prune"], Value::Null, "tried again only an hour later");
    fixture.set_now("2026-11-27T11:00:00Z");
    let pass = supervise(&fixture);
    assert_eq!(pass["prune"]["events"], 1, "{pass:#}");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'old_event'"), 0);
    fixture.set_now("2026-11-27T11:15:00Z");
    assert_eq!(supervise(&fixture)["prune"], Value::Null, "pruned less than a day ago");
}

/// A fixture keeping runs and events 30 days, with three finished runs 40 days old and one
/// a day old, and a client of its database.
fn three_old_runs_and_a_new_one() -> (Fixture, postgres::Client) {
    let fixture = Fixture::new(
        &config("").replace("kill_grace", "retention = { runs = \"30d\", events = \"30d\" }\nkill_grace"),
        NOW,
    );
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut client = fixture.client();
    for _ in 0..3 {
        seed_run(&mut client, days_before_now(40), Some(days_before_now(40)), "drained", 0, None);
    }
    seed_run(&mut client, days_before_now(1), Some(days_before_now(1)), "drained", 0, None);
    (fixture, client)
}

#[test]
fn a_prune_stopped_by_sigterm_records_what_it_removed_and_exits_75() {
    let (fixture, mut client) = three_old_runs_and_a_new_one();
    client
        .execute(
            "INSERT INTO events (at, kind, message) VALUES ($1, 'supervise_error', 'old')",
            &[&days_before_now(40)],
        )
        .unwrap();
    // The events step waits for a lock while the runs are already removed.
    let mut holder = fixture.client();
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").unwrap();
    let prune = fixture.drainctl(&["prune"]).spawn();
    wait_until("the old runs removed", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM runs") == 1
    });
    signal(prune.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    lock.rollback().unwrap();
    let result = finished(prune.wait_with_output().unwrap());
    // Before: killed by the signal (143), no line, nothing recorded of what it removed.
    result.assert_code(75);
    assert!(
        result.stderr.trim_end().ends_with("the next prune goes on")
            && result.stderr.contains("interrupted by SIGTERM"),
        "{}",
        result.stderr
    );
    let recorded: Vec<String> =
        fixture.column("SELECT data->>'runs' FROM events WHERE kind = 'retention_pruned'");
    assert_eq!(recorded, ["3"]);
}

#[test]
fn a_prune_stopped_by_sigterm_in_its_log_files_step_stops_there_and_says_so() {
    let (fixture, _client) = three_old_runs_and_a_new_one();
    let logs = fixture.path("logs/docs");
    fs::create_dir_all(&logs).unwrap();
    let old_log = logs.join("20261001T000000Z-1.log");
    fs::write(&old_log, "log\n").unwrap();
    set_mtime(&old_log, days_before_now(40).into());
    // Held at the events step, then at the log files' step (it reads the running runs).
    let mut holder = fixture.client();
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE").unwrap();
    let prune = fixture.drainctl(&["prune"]).spawn();
    wait_until("the old runs removed", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM runs") == 1
    });
    let mut runs_holder = fixture.client();
    let mut runs_lock = runs_holder.transaction().unwrap();
    runs_lock.batch_execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE").unwrap();
    lock.rollback().unwrap();
    let waiting_for_runs = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                            WHERE c.relname = 'runs' AND NOT l.granted \
                            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    wait_until("the log files' step to wait for the runs", Duration::from_secs(20), || {
        fixture.count(waiting_for_runs) == 1
    });
    signal(prune.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    runs_lock.rollback().unwrap();
    let result = finished(prune.wait_with_output().unwrap());
    // It stops between two files, as between two batches, and says what it removed
    // (before: it removed every file, then said it was interrupted, or said nothing).
    result.assert_code(75);
    assert!(
        result.stderr.contains("prune interrupted by SIGTERM: removed 3 runs")
            && result.stderr.contains("the next prune goes on"),
        "{}",
        result.stderr
    );
    assert!(old_log.exists(), "the log files left to the next prune");
    let recorded: Vec<String> =
        fixture.column("SELECT data->>'runs' FROM events WHERE kind = 'retention_pruned'");
    assert_eq!(recorded, ["3"]);
    fixture.drainctl(&["prune"]).run().assert_code(0);
    assert!(!old_log.exists(), "the next prune removed it");
}

#[test]
fn a_prune_that_fails_midway_says_what_its_committed_batches_removed() {
    // The events step fails after the runs are removed: with the session still there (the
    // event records the removal), and with the session gone (nothing can record it).
    // Before, the line said only that what had not committed was rolled back.
    for (refusal, code, recorded) in [
        ("RAISE EXCEPTION 'events are kept today'", 70, "recorded in its retention_pruned event"),
        ("PERFORM pg_terminate_backend(pg_backend_pid())", 69, "no retention_pruned event could be recorded"),
    ] {
        let (fixture, mut client) = three_old_runs_and_a_new_one();
        client
            .batch_execute(&format!(
                "INSERT INTO events (at, kind, message) VALUES (now() - interval '90 days', 'old_event', 'old');
                 CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql
                     AS $$ BEGIN {refusal}; RETURN OLD; END $$;
                 CREATE TRIGGER keep_events BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION refuse_delete();"
            ))
            .unwrap();
        let prune = fixture.drainctl(&["prune"]).run();
        prune.assert_code(code);
        let line = prune.stderr.trim_end();
        assert!(
            line.contains("the prune's batches before it committed, and stay: removed 3 runs (0 attempts)"),
            "{line}"
        );
        assert!(line.contains(recorded), "{line}");
        assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1);
        let events = fixture.count("SELECT count(*) FROM events WHERE kind = 'retention_pruned'");
        assert_eq!(events, i64::from(recorded.starts_with("recorded")), "{line}");
    }
}

#[test]
fn a_source_folder_left_empty_settles_nothing_until_it_has_an_entry_then_a_slice_per_scan() {
    let fixture = Fixture::new(&source_config(", max_files_per_scan = 2"), NOW);
    for name in ["a/1.jsonl", "b/1.jsonl", "c/1.jsonl"] {
        write(&fixture, name, "one\n");
    }
    scan(&fixture);
    scan(&fixture);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 3);
    // The share is not mounted, below its mount point: the folder is not there. A pass
    // settles nothing (before: every item skipped_missing at its claim) and stops, 78.
    fs::rename(fixture.path("data"), fixture.path("data.away")).unwrap();
    let pass = fixture.drainctl(&["drain", "sessions"]).run();
    pass.assert_code(78);
    assert!(pass.stderr.contains("does not exist: is it mounted?"), "{}", pass.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending' AND attempts = 0"), 3);
    // Mounted there: the folder is there, and empty.
    fs::create_dir(fixture.path("data")).unwrap();
    let report = scan(&fixture);
    // Before: every pending item settled skipped_missing, in one scan.
    assert_eq!((report["missing"].as_u64(), report["refused"].as_u64()), (Some(0), Some(1)), "{report:#}");
    assert!(report["refused_paths"][0]["reason"].as_str().unwrap_or_default().contains("is it mounted?"));
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 3);
    // A pass does not settle them either, nor spend an attempt: it stops, exit 78.
    let pass = fixture.drainctl(&["drain", "sessions"]).run();
    pass.assert_code(78);
    assert!(pass.stderr.contains("is empty: is it mounted?"), "{}", pass.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending' AND attempts = 0"), 3);
    // Cleaned out on purpose: any entry says so, and the scans settle a slice each.
    fs::write(fixture.path("data/.keep"), "").unwrap();
    let first = scan(&fixture);
    assert_eq!(first["skipped_missing"].as_u64(), Some(2), "{first:#}");
    let second = scan(&fixture);
    assert_eq!(second["skipped_missing"].as_u64(), Some(1), "{second:#}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'skipped_missing'"), 3);
}

#[test]
fn prune_keeps_the_logs_of_a_log_folder_other_users_may_write() {
    use std::os::unix::fs::PermissionsExt;
    // Another user who may write the folder may swap its entries between prune's look and
    // its removal (found in review: a recent log of root's removed), so prune removes only
    // through folders no one else may change; such a folder's logs are kept, with a line.
    let fixture = Fixture::new(
        &format!(
            "{}\n",
            config("").replace(
                "log_dir = \"TMPDIR/logs\"\n",
                "log_dir = \"TMPDIR/logs\"\nretention = { logs = \"14d\" }\n"
            )
        ),
        NOW,
    );
    let (own, shared) = (fixture.path("logs/sessions"), fixture.path("logs/shared"));
    for folder in [&own, &shared] {
        fs::create_dir_all(folder).unwrap();
        let log = folder.join("20261001T000000Z-1.log");
        fs::write(&log, "log\n").unwrap();
        set_mtime(&log, days_before_now(20).into());
    }
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    let pruned = fixture.drainctl(&["prune"]).run();
    pruned.assert_code(0);
    assert!(!own.join("20261001T000000Z-1.log").exists(), "its own old log goes");
    assert!(shared.join("20261001T000000Z-1.log").exists(), "kept: {}", pruned.stderr);
    assert!(pruned.stderr.contains("is writable by every user"), "{}", pruned.stderr);
}
