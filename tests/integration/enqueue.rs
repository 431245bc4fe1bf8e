//! `enqueue`: single items, JSON lines, duplicates, --replace, all-or-nothing batches.

use crate::support::*;

const CONFIG: &str = "[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n";

#[test]
fn json_lines_are_enqueued_and_duplicates_counted() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let lines = "{\"key\": \"a\", \"payload\": {\"n\": 1}}\n{\"key\": \"b\", \"payload\": [1, 2]}\n\n{\"key\": 3, \"payload\": \"x\"}\n";
    let first = fixture.drainctl(&["enqueue", "docs", "--json"]).stdin(lines).run();
    first.assert_code(0);
    assert_eq!(first.json()["added"], 3);
    let again = fixture.drainctl(&["enqueue", "docs"]).stdin(lines).run();
    again.assert_code(0);
    assert!(again.stdout.contains("0 added, 3 duplicates"), "{}", again.stdout);
    let single = fixture.drainctl(&["enqueue", "docs", "--key", "c", "--payload", "{\"q\": true}"]).run();
    single.assert_code(0);
    assert!(single.stdout.contains("1 added"), "{}", single.stdout);
    let mut client = fixture.client();
    assert_eq!(
        query_i64(&mut client, "SELECT count(*) FROM items WHERE drain = 'docs' AND state = 'pending'"),
        4
    );
    let payload: serde_json::Value =
        client.query_one("SELECT payload FROM items WHERE key = 'b'", &[]).unwrap().get(0);
    assert_eq!(payload, serde_json::json!([1, 2]));
}

#[test]
fn a_malformed_line_exits_65_with_its_number_and_inserts_nothing() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let lines = "{\"key\": \"a\", \"payload\": 1}\n{\"key\": \"b\", \"payload\": 2}\n{\"key\": \"c\", \"payload\": {oops}\n";
    let result = fixture.drainctl(&["enqueue", "docs"]).stdin(lines).run();
    result.assert_code(65);
    assert!(result.stderr.contains("stdin:3: invalid JSON"), "{}", result.stderr);
    assert!(result.stderr.contains("nothing was enqueued"), "{}", result.stderr);
    assert_eq!(query_i64(&mut fixture.client(), "SELECT count(*) FROM items"), 0);
    // The same from a file names the file.
    let file = fixture.path("batch.jsonl");
    std::fs::write(&file, lines).unwrap();
    let result = fixture.drainctl(&["enqueue", "docs", "--file", file.to_str().unwrap()]).run();
    result.assert_code(65);
    assert!(result.stderr.contains("batch.jsonl:3:"), "{}", result.stderr);
    let bad_payload = fixture.drainctl(&["enqueue", "docs", "--key", "k", "--payload", "{nope"]).run();
    bad_payload.assert_code(65);
    assert!(!bad_payload.stderr.contains("double quotes"), "{}", bad_payload.stderr);
    // Text given as the payload is told how JSON writes text.
    let text = fixture.drainctl(&["enqueue", "docs", "--key", "k", "--payload", "summarise doc 1"]).run();
    text.assert_code(65);
    assert!(
        text.stderr.contains("--payload is not valid JSON: expected value at line 1 column 1; text is a JSON string in double quotes (--payload '\"...\"')"),
        "{}",
        text.stderr
    );
    assert_eq!(query_i64(&mut fixture.client(), "SELECT count(*) FROM items"), 0);
}

#[test]
fn replace_resets_a_finished_item_only() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    fixture.drainctl(&["enqueue", "docs", "--key", "a", "--payload", "1"]).run().assert_code(0);
    fixture.drainctl(&["enqueue", "docs", "--key", "b", "--payload", "1"]).run().assert_code(0);
    let mut client = fixture.client();
    client.execute("UPDATE items SET state = 'dead', attempts = 5 WHERE key = 'a'", &[]).unwrap();
    let result = fixture
        .drainctl(&["enqueue", "docs", "--replace", "--json"])
        .stdin("{\"key\": \"a\", \"payload\": 2}\n{\"key\": \"b\", \"payload\": 2}\n")
        .run();
    result.assert_code(0);
    let json = result.json();
    assert_eq!(
        (json["added"].as_i64(), json["replaced"].as_i64(), json["duplicates"].as_i64()),
        (Some(0), Some(1), Some(1))
    );
    let row = client.query_one("SELECT state, attempts, payload FROM items WHERE key = 'a'", &[]).unwrap();
    assert_eq!(row.get::<_, String>(0), "pending");
    assert_eq!(row.get::<_, i32>(1), 0);
    assert_eq!(row.get::<_, serde_json::Value>(2), serde_json::json!(2));
    // The pending item kept its payload, and the line says why. Before: "1 duplicate" alone.
    let kept = fixture.drainctl(&["enqueue", "docs", "--replace", "--key", "b", "--payload", "3"]).run();
    kept.assert_code(0);
    assert!(
        kept.stdout.contains("0 added, 1 duplicate, 0 replaced (a duplicate is an item not finished yet")
            && kept.stdout.contains("--replace resets done, dead and skipped_missing items"),
        "{}",
        kept.stdout
    );
    assert_eq!(fixture.column::<String>("SELECT payload::text FROM items WHERE key = 'b'"), ["1"]);
}

#[test]
fn enqueue_to_an_unknown_drain_is_refused() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let result = fixture.drainctl(&["enqueue", "doc", "--key", "a", "--payload", "1"]).run();
    result.assert_code(64);
    assert!(result.stderr.contains("unknown drain \"doc\"; known: docs"), "{}", result.stderr);
}

#[test]
fn numbers_too_large_for_64_bits_are_kept_exactly_from_enqueue_to_export_and_the_worker() {
    // `cat` as the worker: its result is the payload as the worker got it.
    let fixture = Fixture::new("[[drain]]\nname = \"docs\"\ncommand = [\"cat\"]\n", "2026-11-27T10:00:00Z");
    let exact = r#"{"n": 12345678901234567890123, "negative": -98765432109876543210987, "decimal": 0.1000000000000000000000000001}"#;
    let expected: serde_json::Value = serde_json::from_str(exact).unwrap();
    fixture.drainctl(&["enqueue", "docs", "--key", "n2", "--payload", exact]).run().assert_code(0);
    fixture
        .drainctl(&["enqueue", "docs"])
        .stdin(format!("{{\"key\": \"stdin\", \"payload\": {exact}}}\n"))
        .run()
        .assert_code(0);
    let file = fixture.path("batch.jsonl");
    std::fs::write(&file, format!("{{\"key\": \"file\", \"payload\": {exact}}}\n")).unwrap();
    fixture.drainctl(&["enqueue", "docs", "--file", file.to_str().unwrap()]).run().assert_code(0);

    let mut client = fixture.client();
    for row in client.query("SELECT key, payload::text FROM items ORDER BY id", &[]).unwrap() {
        let (key, text): (String, String) = (row.get(0), row.get(1));
        assert!(text.contains("\"n\": 12345678901234567890123"), "{key}: {text}");
        assert!(text.contains("-98765432109876543210987"), "{key}: {text}");
        assert!(text.contains("0.1000000000000000000000000001"), "{key}: {text}");
    }
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let export = fixture.drainctl(&["export", "docs"]).run();
    export.assert_code(0);
    assert_eq!(export.stdout.matches("\"n\":12345678901234567890123").count(), 3, "{}", export.stdout);
    for line in export.stdout.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["payload"], expected, "{line}");
        assert_eq!(line["state"], "done", "{line}");
        let worker_got: serde_json::Value = serde_json::from_str(line["result"].as_str().unwrap()).unwrap();
        assert_eq!(worker_got, expected, "what the worker read");
    }

    // A number beyond what PostgreSQL's numeric holds is refused with its line.
    let result = fixture
        .drainctl(&["enqueue", "docs"])
        .stdin("{\"key\": \"ok\", \"payload\": 1}\n{\"key\": \"huge\", \"payload\": {\"n\": 1e1000000}}\n")
        .run();
    result.assert_code(65);
    assert!(
        result.stderr.contains("stdin:2: the database refused the item: value overflows numeric format"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_slow_batch_into_a_new_drain_does_not_hold_supervise() {
    let fixture = Fixture::new(
        "[[drain]]\nname = \"old\"\ncommand = [\"FAKE_WORKER\"]\n\n[[drain]]\nname = \"new\"\ncommand = [\"FAKE_WORKER\"]\n",
        "2026-11-27T10:00:00Z",
    );
    fixture.drainctl(&["enqueue", "old", "--key", "a", "--payload", "{}"]).run().assert_code(0);
    fixture.client().execute("DELETE FROM drains WHERE name = 'new'", &[]).unwrap();
    // A producer that sends one line and then keeps the batch open.
    let mut producer = fixture.drainctl(&["enqueue", "new"]).spawn_with_open_stdin();
    let mut stdin = producer.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"{\"key\": \"x\", \"payload\": {}}\n").unwrap();
    std::io::Write::flush(&mut stdin).unwrap();
    wait_until("the batch to be open", std::time::Duration::from_secs(30), || {
        fixture.count(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drainctl' \
               AND xact_start IS NOT NULL AND query ILIKE 'COPY%'",
        ) == 1
    });
    // Before, the pass waited 10 s on the batch's uncommitted row of `new` and exited 75,
    // starting nothing.
    let pass = fixture.drainctl(&["supervise"]).run();
    pass.assert_code(0);
    assert!(pass.stdout.contains("old    start"), "{}", pass.stdout);
    wait_until("the started pass of old to do its item", std::time::Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE drain = 'old' AND state = 'done'") == 1
    });
    drop(stdin);
    let enqueued = finished(producer.wait_with_output().unwrap());
    enqueued.assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE drain = 'new'"), 1);
}

#[test]
fn a_file_that_cannot_be_opened_is_a_wrong_command_line() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let missing = fixture.path("no-such.jsonl");
    let result = fixture.drainctl(&["enqueue", "docs", "--file", missing.to_str().unwrap()]).run();
    result.assert_code(64);
    assert!(
        result.stderr.contains("--file") && result.stderr.contains("cannot be opened"),
        "{}",
        result.stderr
    );
    // A folder opens, but it is the path that is wrong, not a line of data.
    let folder = fixture.path("");
    let result = fixture.drainctl(&["enqueue", "docs", "--file", folder.to_str().unwrap()]).run();
    result.assert_code(64);
    assert!(result.stderr.contains("cannot be opened: it is a folder"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
}

#[test]
fn the_first_bad_line_is_named_even_when_only_the_server_refuses_it() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    // Line 2 is a number beyond numeric's range (the server's refusal), line 4 bad JSON
    // (the client's): line 2 is named. Before, line 4 was.
    let lines = "{\"key\": \"a\", \"payload\": 1}\n{\"key\": \"b\", \"payload\": 1e1000000}\n\
                 {\"key\": \"c\", \"payload\": 1}\n{\"key\": \"d\", \"payload\": [}\n";
    let result = fixture.drainctl(&["enqueue", "docs"]).stdin(lines).run();
    result.assert_code(65);
    assert!(result.stderr.contains("stdin:2: the database refused the item"), "{}", result.stderr);
    assert_eq!(query_i64(&mut fixture.client(), "SELECT count(*) FROM items"), 0);
}

#[test]
fn a_payload_the_database_cannot_store_is_refused_under_an_existing_key_too() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    fixture.drainctl(&["enqueue", "docs", "--key", "a", "--payload", "1"]).run().assert_code(0);
    for args in [&["enqueue", "docs"][..], &["enqueue", "docs", "--replace"][..]] {
        let result = fixture.drainctl(args).stdin("{\"key\": \"a\", \"payload\": 1e1000000}\n").run();
        // Before, it was counted as a duplicate (exit 0).
        result.assert_code(65);
        assert!(result.stderr.contains("stdin:1: the database refused the item"), "{}", result.stderr);
    }
    let payload: serde_json::Value =
        fixture.client().query_one("SELECT payload FROM items WHERE key = 'a'", &[]).unwrap().get(0);
    assert_eq!(payload, serde_json::json!(1));
}

#[test]
fn a_payload_nested_too_deep_is_refused_as_such() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    let enqueue_line = |payload: &str| {
        fixture
            .drainctl(&["enqueue", "docs"])
            .stdin(format!("{{\"key\": \"a\", \"payload\": {payload}}}\n"))
            .run()
    };
    let deep = nested(200);
    let result = enqueue_line(&deep);
    result.assert_code(65);
    assert!(result.stderr.contains("stdin:1: JSON nested more than 127 levels deep"), "{}", result.stderr);
    let result = fixture.drainctl(&["enqueue", "docs", "--key", "a", "--payload", &deep]).run();
    result.assert_code(65);
    assert!(result.stderr.contains("--payload is nested more than 127 levels deep"), "{}", result.stderr);
    // The deepest nesting read, the line's own object included.
    enqueue_line(&nested(126)).assert_code(0);
}

/// Whether process `pid` ignores SIGTERM (`SigIgn` of `/proc/<pid>/status`).
fn ignores_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

/// `enqueue docs --file` of `items` lines (keys k0, k1, …), held by the test hook for
/// 1.5 s right before its commit, once it is there; and the file.
fn an_enqueue_held_at_its_commit(fixture: &Fixture, items: usize) -> (std::process::Child, String) {
    let lines: String = (0..items).map(|n| format!("{{\"key\": \"k{n}\", \"payload\": {n}}}\n")).collect();
    std::fs::write(fixture.path("batch.jsonl"), lines).unwrap();
    let file = fixture.path("batch.jsonl").display().to_string();
    let enqueue = fixture
        .drainctl(&["enqueue", "docs", "--file", &file])
        .env("DRAINCTL_FAULT", "slow_enqueue_commit")
        .spawn();
    let pid = enqueue.id();
    wait_until("enqueue to reach its commit", std::time::Duration::from_secs(20), || ignores_sigterm(pid));
    (enqueue, file)
}

#[test]
fn a_signal_while_the_batch_commits_does_not_hide_that_it_was_enqueued() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let (enqueue, _) = an_enqueue_held_at_its_commit(&fixture, 100);
    signal(enqueue.id(), libc::SIGTERM);
    let output = enqueue.wait_with_output().unwrap();
    // Before, a signal at that point ended it silently, its batch committed.
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("docs: 100 added"));
    assert_eq!(query_i64(&mut fixture.client(), "SELECT count(*) FROM items"), 100);
}

#[test]
fn a_session_lost_at_the_commit_says_the_batch_may_be_there_and_to_enqueue_again() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let (enqueue, file) = an_enqueue_held_at_its_commit(&fixture, 10);
    // The session ends at the commit (here just before it: nothing is committed; ended
    // during it, the server may have committed the batch, as a terminate test found).
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    let output = enqueue.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(69), "{stderr}");
    // Before: "what the command had not committed was rolled back", of a batch found there.
    assert!(
        stderr.contains("lost while its transaction was committing, so it may have been committed or not")
            && stderr.contains("run the same enqueue again once the database answers")
            && !stderr.contains("rolled back"),
        "{stderr}"
    );
    let again = fixture.drainctl(&["enqueue", "docs", "--file", &file]).run();
    again.assert_code(0);
    assert_eq!(query_i64(&mut fixture.client(), "SELECT count(*) FROM items"), 10);
}

#[test]
fn file_dash_reads_stdin() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let result = fixture
        .drainctl(&["enqueue", "docs", "--file", "-"])
        .stdin("{\"key\": \"a\", \"payload\": 1}\n")
        .run();
    // Before, 64: "--file -: cannot be opened".
    result.assert_code(0);
    assert!(result.stdout.contains("docs: 1 added"), "{}", result.stdout);
}

#[test]
fn a_summary_that_cannot_be_written_is_said_on_stderr() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let out = std::fs::File::create(fixture.path("out")).unwrap();
    // As on a full disk: the summary's write fails.
    let result = fixture
        .drainctl(&["enqueue", "docs", "--key", "a", "--payload", "1"])
        .run_with_stdout_limited_to(out, 0);
    // The item is enqueued whatever became of the summary; before, nothing was said.
    result.assert_code(0);
    assert!(result.stderr.contains("could not write the output to stdout"), "{}", result.stderr);
    assert_eq!(query_i64(&mut fixture.client(), "SELECT count(*) FROM items"), 1);
}

#[test]
fn a_finished_item_given_again_without_replace_is_named_with_the_option_that_runs_it_again() {
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let lines = "{\"key\": \"a\", \"payload\": 1}\n{\"key\": \"b\", \"payload\": 1}\n{\"key\": \"c\", \"payload\": 1}\n";
    fixture.drainctl(&["enqueue", "docs"]).stdin(lines).run().assert_code(0);
    let mut client = fixture.client();
    client.execute("UPDATE items SET state = 'done' WHERE key = 'a'", &[]).unwrap();
    client.execute("UPDATE items SET state = 'dead', attempts = 5 WHERE key = 'b'", &[]).unwrap();
    // Given again, `a` twice: three lines of finished items, one of a pending one. Before:
    // "0 added, 4 duplicates" alone, and the operator took the new payloads for queued.
    let again = "{\"key\": \"a\", \"payload\": 2}\n{\"key\": \"a\", \"payload\": 3}\n{\"key\": \"b\", \"payload\": 2}\n{\"key\": \"c\", \"payload\": 2}\n";
    let result = fixture.drainctl(&["enqueue", "docs"]).stdin(again).run();
    result.assert_code(0);
    assert_eq!(
        result.stdout,
        "docs: 0 added, 4 duplicates; 2 of them are items finished (done, dead or skipped_missing) and left so: \
         --replace runs them again with the new payload (the first line of a key given twice)\n"
    );
    assert_eq!(fixture.column::<String>("SELECT state FROM items ORDER BY key"), ["done", "dead", "pending"]);
    // --json says it too (before: only added, duplicates and replaced).
    let json = fixture.drainctl(&["enqueue", "docs", "--json"]).stdin(again).run().json();
    assert_eq!(
        json,
        serde_json::json!({"drain": "docs", "added": 0, "duplicates": 4, "finished_duplicates": 2, "replaced": 0})
    );
    // One item by --key and --payload has no lines to speak of (before: "the first line of
    // a key given twice").
    let one = fixture.drainctl(&["enqueue", "docs", "--key", "a", "--payload", "4"]).run();
    assert_eq!(
        one.stdout,
        "docs: 0 added, 1 duplicate; 1 of them is an item finished (done, dead or skipped_missing) and left so: \
         --replace runs it again with the new payload\n"
    );
    // One finished item given on three lines is one item.
    let thrice = "{\"key\": \"a\", \"payload\": 4}\n".repeat(3);
    let result = fixture.drainctl(&["enqueue", "docs"]).stdin(thrice).run();
    assert!(
        result.stdout.contains("1 of them is an item finished (done, dead or skipped_missing) and left so: --replace runs it again"),
        "{}",
        result.stdout
    );
    // Nothing finished among the duplicates: the line as before.
    let pending = fixture.drainctl(&["enqueue", "docs", "--key", "c", "--payload", "3"]).run();
    assert_eq!(pending.stdout, "docs: 0 added, 1 duplicate\n");
}

#[test]
fn a_malformed_item_on_the_command_line_is_refused_before_anything_connects() {
    // Before: checked after connecting, so with the database down it was 69 ("retry"),
    // and an empty database was migrated for an item then refused.
    let fixture = Fixture::new(CONFIG, "2026-11-27T10:00:00Z");
    let bad = |args: &[&str]| {
        fixture.drainctl(args).env("DRAINCTL_DATABASE_URL", "postgres://u@127.0.0.1:1/x").run()
    };
    let result = bad(&["enqueue", "docs", "--key", "a", "--payload", "not json"]);
    result.assert_code(65);
    assert!(result.stderr.contains("--payload is not valid JSON"), "{}", result.stderr);
    bad(&["enqueue", "docs", "--key", "", "--payload", "{}"]).assert_code(65);
    fixture.drainctl(&["enqueue", "docs", "--key", "a", "--payload", "not json"]).run().assert_code(65);
    assert_eq!(fixture.count("SELECT count(*) FROM pg_tables WHERE tablename = 'items'"), 0);
}
