//! The operator commands — `events`, `runs`, `items`, `retry`, `doctor`, `metrics`,
//! `completions` — and notifications, on a seeded database through the real binary. JSON
//! outputs are checked against the fields documented in docs/json.md, and docs/cli.md
//! against the clap definitions.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// 10:00 UTC is 12:00 in Asia/Jerusalem in November (IST, UTC+2).
const NOW: &str = "2026-11-27T10:00:00Z";
const BINARY_BYTES: &[u8] = &[0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, b'\n'];

fn config(defaults: &str, drain: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"Asia/Jerusalem\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n{defaults}\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nmax_attempts = 1\n{drain}"
    )
}

fn steps(steps: Value) -> Value {
    json!({ "steps": steps })
}

/// A database with history: at 10:00 items a (done), b (dead: exit 3 with "boom" on
/// stderr), c (done, binary result) went through one run; d was enqueued at 10:01 and is
/// pending. The clock then stands at 10:05.
fn seeded() -> Fixture {
    let fixture = Fixture::new(&config("", ""), NOW);
    fixture.enqueue(
        "docs",
        &[
            ("a".into(), steps(json!([{ "out": "result a" }]))),
            ("b".into(), steps(json!([{ "err": "boom" }, { "exit": 3 }]))),
            ("c".into(), steps(json!([{ "binary": true }]))),
        ],
    );
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    fixture.set_now("2026-11-27T10:01:00Z");
    fixture.enqueue("docs", &[("d".into(), json!({ "plain": "d" }))]);
    fixture.set_now("2026-11-27T10:05:00Z");
    fixture
}

/// Every line of human output fits the documented 100 columns.
fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(line.chars().count() <= 100, "line wider than 100 columns: {line:?}");
    }
}

/// The rows of the table in `text` whose first cell is `first`.
fn row<'a>(text: &'a str, first: &str) -> &'a str {
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row starting with {first:?} in\n{text}"))
}

// ---------------------------------------------------------------------------------------
// docs/json.md: the documented fields of each command.

/// Field paths (`events[].kind`) listed in the table under the docs/json.md heading that
/// contains `heading`.
fn documented_fields(heading: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json.md")).unwrap();
    let mut in_section = false;
    let mut fields = Vec::new();
    for line in text.lines() {
        if line.starts_with("## ") {
            in_section = line.contains(heading);
            continue;
        }
        if in_section && line.starts_with("| `") {
            let field = line.trim_start_matches("| `").split('`').next().unwrap();
            fields.push(field.to_string());
        }
    }
    assert!(!fields.is_empty(), "docs/json.md has no field table under a heading with {heading:?}");
    fields
}

/// Assert that every documented field of `heading` is present in `value` (null allowed).
/// `a[].b` looks into every element of array `a`, which must not be empty.
pub(crate) fn assert_documented(heading: &str, value: &Value) {
    for path in documented_fields(heading) {
        assert_path(value, &path, &path, heading);
    }
}

fn assert_path(value: &Value, path: &str, full: &str, heading: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let (name, is_array) = match head.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (head, false),
    };
    let child = value.get(name).unwrap_or_else(|| panic!("{heading}: field {full} is missing in {value:#}"));
    match (is_array, rest) {
        (true, rest) => {
            let elements =
                child.as_array().unwrap_or_else(|| panic!("{heading}: {full}: {name} is not an array"));
            assert!(!elements.is_empty(), "{heading}: {full}: {name} is empty; seed it");
            if let Some(rest) = rest {
                for element in elements {
                    assert_path(element, rest, full, heading);
                }
            }
        }
        (false, Some(rest)) => {
            if !child.is_null() {
                assert_path(child, rest, full, heading);
            }
        }
        (false, None) => {}
    }
}

// ---------------------------------------------------------------------------------------
// events

#[test]
fn events_are_listed_newest_first_with_age_and_local_time() {
    let fixture = seeded();
    let result = fixture.drainctl(&["events"]).run();
    result.assert_code(0);
    assert_fits(&result.stdout);
    let lines: Vec<&str> = result.stdout.lines().collect();
    assert!(lines[0].starts_with("AGE") && lines[0].contains("MESSAGE"), "{}", result.stdout);
    assert!(lines[1].starts_with("4m ago") && lines[1].contains("items_enqueued"), "{}", result.stdout);
    assert!(lines[1].contains("2026-11-27 12:01 IST"), "{}", result.stdout);
    let dead = lines.iter().find(|line| line.contains("item_dead_lettered")).unwrap();
    assert!(dead.starts_with("5m ago") && dead.contains("2026-11-27 12:00 IST"), "{dead}");
    assert!(dead.contains("item b dead after 1 attempt:"), "{dead}");

    let json = fixture.drainctl(&["events", "--json"]).run();
    json.assert_code(0);
    let events = json.json();
    assert_documented("drainctl events", &events);
    let kinds: Vec<&str> =
        events["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "items_enqueued");
    assert!(kinds.contains(&"run_started") && kinds.contains(&"run_finished"), "{kinds:?}");
    let ids: Vec<i64> =
        events["events"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first, "same-instant events come newest id first");
}

#[test]
fn events_filter_by_kind_drain_age_and_count() {
    let fixture = seeded();
    let dead = fixture.drainctl(&["events", "--kind", "item_dead_lettered", "--json"]).run();
    dead.assert_code(0);
    let dead = dead.json();
    assert_eq!(dead["events"].as_array().unwrap().len(), 1);
    let event = &dead["events"][0];
    assert_eq!(event["drain"], "docs");
    assert_eq!(event["at"], "2026-11-27T10:00:00Z");
    assert!(event["item_id"].as_i64().is_some() && event["run_id"].as_i64().is_some(), "{event}");
    assert_eq!(event["data"]["outcome"], "failure");

    let recent = fixture.drainctl(&["events", "--since", "4m", "--json"]).run().json();
    let kinds: Vec<&str> =
        recent["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["items_enqueued"]);
    let none = fixture.drainctl(&["events", "--since", "2m"]).run();
    none.assert_code(0);
    assert_eq!(none.stdout.trim(), "no events match");

    let two = fixture.drainctl(&["events", "--limit", "2", "--drain", "docs", "--json"]).run().json();
    assert_eq!(two["events"].as_array().unwrap().len(), 2);

    let unknown = fixture.drainctl(&["events", "--drain", "doc"]).run();
    unknown.assert_code(64);
    assert!(unknown.stderr.contains("unknown drain \"doc\"; known: docs"), "{}", unknown.stderr);
    let bad_since = fixture.drainctl(&["events", "--since", "yesterday"]).run();
    bad_since.assert_code(64);
    assert!(bad_since.stderr.contains("--since: invalid duration \"yesterday\""), "{}", bad_since.stderr);
    fixture.drainctl(&["events", "--limit", "0"]).run().assert_code(64);
}

// ---------------------------------------------------------------------------------------
// runs

#[test]
fn runs_list_and_show_one_run() {
    let fixture = seeded();
    let list = fixture.drainctl(&["runs"]).run();
    list.assert_code(0);
    assert_fits(&list.stdout);
    assert!(list.stdout.starts_with("ID"), "{}", list.stdout);
    let line = list.stdout.lines().nth(1).unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["docs", "drained", "manual"], "{line}");
    assert!(line.contains("5m ago"), "{line}");

    let json = fixture.drainctl(&["runs", "--json", "--drain", "docs"]).run().json();
    assert_documented("drainctl runs --json", &json);
    let run = &json["runs"][0];
    assert_eq!((run["items_done"].as_i64(), run["items_failed"].as_i64()), (Some(2), Some(1)));
    assert_eq!(run["status"], "drained");
    let id = run["id"].as_i64().unwrap().to_string();

    let show = fixture.drainctl(&["runs", "show", &id]).run();
    show.assert_code(0);
    for expected in [
        format!("run              {id} of drain docs\n"),
        "status           drained\n".to_string(),
        "trigger          manual\n".to_string(),
        "started          2026-11-27 12:00:00 IST (5m ago)\n".to_string(),
        "finished         2026-11-27 12:00:00 IST (5m ago)\n".to_string(),
        "duration         0s\n".to_string(),
        "items            2 done, 1 failed attempt\n".to_string(),
        "checkpoints      6\n".to_string(),
        "last checkpoint  2026-11-27 12:00:00 IST (5m ago)\n".to_string(),
        "note             no item is available now\n".to_string(),
        "log file         - (not started by supervise)\n".to_string(),
    ] {
        assert!(show.stdout.contains(&expected), "{expected:?} not in\n{}", show.stdout);
    }
    let show_json = fixture.drainctl(&["runs", "show", &id, "--json"]).run().json();
    assert_documented("drainctl runs show", &show_json);
    assert_eq!(show_json["last_checkpoint_age_seconds"], 300.0);

    let missing = fixture.drainctl(&["runs", "show", "999999"]).run();
    missing.assert_code(65);
    assert!(missing.stderr.contains("no run with id 999999"), "{}", missing.stderr);
}

// ---------------------------------------------------------------------------------------
// items

#[test]
fn items_are_listed_with_counts_and_filtered_by_state() {
    let fixture = seeded();
    let list = fixture.drainctl(&["items", "docs"]).run();
    list.assert_code(0);
    assert_fits(&list.stdout);
    assert!(list.stdout.starts_with("docs: 1 pending, 0 running, 2 done, 1 dead\n"), "{}", list.stdout);
    assert!(row(&list.stdout, "b").contains("dead"), "{}", list.stdout);
    assert!(row(&list.stdout, "b").contains("exit code 3: boom"), "{}", list.stdout);
    assert!(row(&list.stdout, "d").contains("pending"), "{}", list.stdout);
    assert!(row(&list.stdout, "d").contains("now"), "{}", list.stdout);
    // Most recently changed first: d (10:01) before the items of the 10:00 run.
    assert_eq!(list.stdout.lines().nth(2).unwrap().split_whitespace().next(), Some("d"));

    let dead = fixture.drainctl(&["items", "docs", "--state", "dead", "--json"]).run().json();
    assert_documented("drainctl items NAME", &dead);
    let keys: Vec<&str> =
        dead["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["b"]);
    assert_eq!(
        dead["counts"],
        json!({ "pending": 1, "running": 0, "done": 2, "dead": 1, "skipped_missing": 0 })
    );
    let none = fixture.drainctl(&["items", "docs", "--state", "running"]).run();
    none.assert_code(0);
    assert!(none.stdout.ends_with("no running items\n"), "{}", none.stdout);
    fixture.drainctl(&["items", "docs", "--state", "zombie"]).run().assert_code(64);
}

#[test]
fn items_show_has_payload_error_stderr_result_and_attempt_history() {
    let fixture = seeded();
    let show = fixture.drainctl(&["items", "show", "docs", "b"]).run();
    show.assert_code(0);
    assert_fits(&show.stdout);
    for expected in [
        "state       dead",
        "attempts    1 of max_attempts 1",
        "last error  exit code 3: boom",
        "\npayload\n  {\n    \"steps\": [",
        "\nstderr tail of the last failed attempt, 5 bytes\n  boom\n",
        "\nresult: none\n",
        "\nattempts\n  #  RUN",
        "failure  3     exit code 3: boom",
    ] {
        assert!(show.stdout.contains(expected), "{expected:?} not in\n{}", show.stdout);
    }
    let json = fixture.drainctl(&["items", "show", "docs", "b", "--json"]).run().json();
    assert_documented("drainctl items show", &json);
    assert_eq!(json["stderr_tail"], "boom\n");
    assert_eq!(json["attempt_history"][0]["outcome"], "failure");
    assert_eq!(json["attempt_history"][0]["exit_code"], 3);
    assert!(json["result"].is_null() && json["result_encoding"].is_null());

    let text = fixture.drainctl(&["items", "show", "docs", "a", "--json"]).run().json();
    assert_eq!(
        (text["result_encoding"].as_str(), text["result"].as_str()),
        (Some("utf-8"), Some("result a\n"))
    );
    let binary = fixture.drainctl(&["items", "show", "docs", "c", "--json"]).run().json();
    assert_eq!(binary["result_encoding"], "base64");
    assert_eq!(binary["result_bytes"], BINARY_BYTES.len());
    use base64::Engine;
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(binary["result"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, BINARY_BYTES);
    let human = fixture.drainctl(&["items", "show", "docs", "c"]).run();
    human.assert_code(0);
    assert!(
        human.stdout.contains("result, 7 bytes\n  \u{fffd}\u{fffd}\\u{0}\u{fffd}\u{fffd}("),
        "{}",
        human.stdout
    );

    let missing = fixture.drainctl(&["items", "show", "docs", "zz"]).run();
    missing.assert_code(65);
    assert!(missing.stderr.contains("no item with key \"zz\""), "{}", missing.stderr);
}

#[test]
fn a_long_result_is_cut_for_humans_and_whole_in_json() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let long = "word ".repeat(1000);
    fixture.enqueue("docs", &[("long".into(), steps(json!([{ "out": long }, { "err": "x".repeat(400) }])))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let human = fixture.drainctl(&["items", "show", "docs", "long"]).run();
    human.assert_code(0);
    assert!(
        human.stdout.contains("result, 5001 bytes (its first 2000 characters; --json has all)"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("payload (its first 2000 characters; --json has all)"), "{}", human.stdout);
    assert!(human.stdout.len() < 6000, "{}", human.stdout.len());
    let json = fixture.drainctl(&["items", "show", "docs", "long", "--json"]).run().json();
    assert_eq!(json["result"].as_str().unwrap().len(), 5001);
}

// ---------------------------------------------------------------------------------------
// retry

#[test]
fn retry_dead_puts_dead_letters_back_with_attempts_reset_and_one_event() {
    let fixture = seeded();
    let result = fixture.drainctl(&["retry", "docs", "--dead", "--json"]).run();
    result.assert_code(0);
    let json = result.json();
    assert_documented("drainctl retry", &json);
    assert_eq!(json["retried"], 1);
    assert_eq!(json["items"][0]["key"], "b");
    assert_eq!(json["items"][0]["previous_state"], "dead");
    let row = fixture
        .client()
        .query_one(
            "SELECT state, attempts, available_at = $1::timestamptz, finished_at FROM items WHERE key = 'b'",
            &[&chrono::DateTime::parse_from_rfc3339("2026-11-27T10:05:00Z").unwrap()],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pending");
    assert_eq!(row.get::<_, i32>(1), 0);
    assert!(row.get::<_, bool>(2), "available now");
    assert!(row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(3).is_none());
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'items_retried'"), 1);
    let data: Value = fixture
        .client()
        .query_one("SELECT data FROM events WHERE kind = 'items_retried'", &[])
        .unwrap()
        .get(0);
    assert_eq!(data, json!({ "count": 1, "keys": ["b"], "keys_truncated": false, "mode": "dead" }));

    let again = fixture.drainctl(&["retry", "docs", "--dead"]).run();
    again.assert_code(0);
    assert_eq!(again.stdout.trim(), "docs: no dead items");
    assert_eq!(
        fixture.count("SELECT count(*) FROM events WHERE kind = 'items_retried'"),
        1,
        "no event for nothing"
    );
}

#[test]
fn retry_key_takes_dead_or_pending_items_and_names_a_missing_key() {
    let fixture = seeded();
    let dead = fixture.drainctl(&["retry", "docs", "--key", "b"]).run();
    dead.assert_code(0);
    assert_eq!(dead.stdout.trim(), "docs: item \"b\" back to pending, attempts reset, available now");
    assert_eq!(fixture.item("docs", "b"), ("pending".to_string(), 0, Some("exit code 3: boom".to_string())));
    fixture.drainctl(&["retry", "docs", "--key", "d"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'items_retried'"), 2);

    let done = fixture.drainctl(&["retry", "docs", "--key", "a", "--json"]).run();
    done.assert_code(0);
    let done = done.json();
    assert_eq!(done["retried"], 0);
    assert_eq!(done["skipped"], json!({ "key": "a", "state": "done" }));
    assert_eq!(fixture.item("docs", "a").0, "done");
    // The way to run it again is told as a command that runs as printed (before: without
    // --key and --payload, `enqueue --replace` waited for JSON lines on stdin).
    let told = fixture.drainctl(&["retry", "docs", "--key", "a"]).run();
    assert!(
        told.stdout
            .contains("(`drainctl enqueue docs --replace --key=a --payload PAYLOAD` runs a done item again"),
        "{}",
        told.stdout
    );

    let missing = fixture.drainctl(&["retry", "docs", "--key", "no-such-key"]).run();
    missing.assert_code(65);
    assert!(missing.stderr.contains("no item with key \"no-such-key\""), "{}", missing.stderr);
    assert_eq!(missing.stderr.lines().count(), 1);
    fixture.drainctl(&["retry", "docs"]).run().assert_code(64);
    fixture.drainctl(&["retry", "docs", "--dead", "--key", "b"]).run().assert_code(64);
}

#[test]
fn discard_deletes_dead_letters_or_one_item_with_their_attempts_and_records_one_event() {
    let fixture = seeded();
    assert_eq!(fixture.item("docs", "b").0, "dead");
    // A dry run says what would go and changes nothing.
    let dry = fixture.drainctl(&["discard", "docs", "--dead", "--dry-run", "--json"]).run();
    dry.assert_code(0);
    let dry = dry.json();
    assert_eq!((dry["dry_run"].clone(), dry["discarded"].clone()), (json!(true), json!(1)), "{dry}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'b'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'items_discarded'"), 0);
    // Told a person, it names them (before: a count only).
    let said = fixture.drainctl(&["discard", "docs", "--dead", "--dry-run"]).run();
    assert!(
        said.stdout.contains("1 item would be discarded (1 dead), with their attempts and results: \"b\""),
        "{}",
        said.stdout
    );

    let dead = fixture.drainctl(&["discard", "docs", "--dead", "--json"]).run();
    dead.assert_code(0);
    let json = dead.json();
    assert_documented("drainctl discard", &json);
    assert_eq!(json["discarded"], 1);
    assert_eq!(json["by_state"], json!({ "dead": 1 }));
    assert_eq!(json["items"][0]["key"], "b");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'b'"), 0);
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM attempts a WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.id = a.item_id)"
        ),
        0
    );
    let data: Value = fixture
        .client()
        .query_one("SELECT data FROM events WHERE kind = 'items_discarded'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        data,
        json!({
            "count": 1,
            "by_state": { "dead": 1 },
            "keys": ["b"],
            "keys_truncated": false,
            "mode": "dead",
            "spent_today_usd": 0.0,
            "budget_day_start": "2026-11-26T22:00:00Z",
        })
    );
    // The dead-letter alert's series falls to 0.
    let metrics = fixture.drainctl(&["metrics"]).run();
    assert!(
        metrics.stdout.contains("drainctl_items{drain=\"docs\",state=\"dead\"} 0\n"),
        "{}",
        metrics.stdout
    );
    let again = fixture.drainctl(&["discard", "docs", "--dead"]).run();
    again.assert_code(0);
    assert_eq!(again.stdout.trim(), "docs: no dead items");

    // One item by key, in any state: an item enqueued by mistake, before it runs.
    let one = fixture.drainctl(&["discard", "docs", "--key", "d"]).run();
    one.assert_code(0);
    assert_eq!(one.stdout.trim(), "docs: item \"d\" (pending) discarded, with its attempts and result");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'd'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'items_discarded'"), 2);
    let missing = fixture.drainctl(&["discard", "docs", "--key", "nope"]).run();
    missing.assert_code(65);
    assert!(missing.stderr.contains("drain docs has no item with key \"nope\""), "{}", missing.stderr);
    let neither = fixture.drainctl(&["discard", "docs"]).run();
    neither.assert_code(64);
    assert!(neither.stderr.contains("--key <KEY>|--dead|--all"), "{}", neither.stderr);
}

#[test]
fn discard_leaves_an_item_a_running_pass_holds_and_takes_one_whose_run_has_ended() {
    let fixture = seeded();
    let mut client = fixture.client();
    let run = fixture.hold_by_a_running_run("docs", Some("d"));
    let all = fixture.drainctl(&["discard", "docs", "--all", "--json"]).run();
    all.assert_code(0);
    let all = all.json();
    assert_eq!(all["held_count"], 1, "{all}");
    assert_eq!(all["held"][0]["key"], "d");
    assert_eq!(all["held"][0]["run_id"], run, "{all}");
    assert_eq!(all["by_state"], json!({ "dead": 1, "done": 2 }), "{all}");
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 1);
    let held = fixture.drainctl(&["discard", "docs", "--key", "d"]).run();
    held.assert_code(0);
    assert!(
        held.stdout.contains(&format!(
                "docs: item \"d\" is running, not discarded; 1 running item left alone: run {run} recorded as running \
                 holds it (`drainctl pause docs` first, so that no pass takes it again;"
            )),
        "{}",
        held.stdout
    );
    assert_eq!(fixture.item("docs", "d").0, "running");
    // Its run ended (crashed): nobody holds it.
    client.execute("UPDATE runs SET status = 'crashed', finished_at = now() WHERE id = $1", &[&run]).unwrap();
    let taken = fixture.drainctl(&["discard", "docs", "--key", "d"]).run();
    taken.assert_code(0);
    assert!(taken.stdout.contains("item \"d\" (running) discarded"), "{}", taken.stdout);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
}

#[test]
fn discard_all_retires_a_drain_whose_table_has_left_the_configuration() {
    let with_old = format!("{}\n[[drain]]\nname = \"old\"\ncommand = [\"FAKE_WORKER\"]\n", config("", ""));
    let fixture = Fixture::new(&with_old, NOW);
    for key in ["a", "b"] {
        fixture.drainctl(&["enqueue", "old", "--key", key, "--payload", "{}"]).run().assert_code(0);
    }
    fixture.drainctl(&["enqueue", "docs", "--key", "c", "--payload", "{}"]).run().assert_code(0);
    fixture.write_config(&config("", ""));
    let status = fixture.drainctl(&["status"]).run();
    assert!(
        // Every item, not "them", the pending ones just counted (before, and the finished
        // ones' results went too).
        status.stdout.contains(
            "(to retire the drain, `drainctl discard old --all` deletes every item of it, the finished ones and \
             their results too: `drainctl export` keeps those first)"
        ),
        "{}",
        status.stdout
    );
    let refused = fixture.drainctl(&["retry", "old", "--dead"]).run();
    assert!(
        refused.stderr.contains("(`drainctl discard old --all` deletes every item of it, results too)"),
        "{}",
        refused.stderr
    );

    let retired = fixture.drainctl(&["discard", "old", "--all"]).run();
    retired.assert_code(0);
    assert_eq!(retired.stdout.trim(), "old: 2 items discarded (2 pending), with their attempts and results");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE drain = 'old'"), 0);
    assert_eq!(
        fixture.count("SELECT count(*) FROM items WHERE drain = 'docs'"),
        1,
        "another drain's item stays"
    );
    let status = fixture.drainctl(&["status"]).run();
    assert!(!status.stdout.contains("no [[drain]] table"), "{}", status.stdout);
    let metrics = fixture.drainctl(&["metrics"]).run();
    assert!(
        !metrics.stdout.contains("drainctl_unconfigured_drain_items{drain=\"old\",state=\"pending\"} 2"),
        "{}",
        metrics.stdout
    );
    let unknown = fixture.drainctl(&["discard", "never", "--all"]).run();
    unknown.assert_code(64);
}

// ---------------------------------------------------------------------------------------
// metrics

/// A small checker of the Prometheus text exposition format: every sample line is
/// `name{labels} value` with a known family, every family has HELP and TYPE before its
/// samples, and no series appears twice. Returns the samples (series -> value).
fn check_exposition(text: &str) -> std::collections::HashMap<String, f64> {
    let name = regex::Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$").unwrap();
    let sample = regex::Regex::new(
        r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? (\S+)$"#,
    )
    .unwrap();
    let mut help = HashSet::new();
    let mut kind = HashSet::new();
    let mut series = std::collections::HashMap::new();
    assert!(text.ends_with('\n'), "exposition ends with a line feed");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let family = rest.split(' ').next().unwrap();
            assert!(name.is_match(family), "bad family name in {line:?}");
            assert!(help.insert(family.to_string()), "HELP twice for {family}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind_name) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter", "untyped", "histogram", "summary"].contains(&kind_name), "{line}");
            assert!(help.contains(family), "TYPE before HELP for {family}");
            assert!(kind.insert(family.to_string()), "TYPE twice for {family}");
        } else {
            let captures = sample.captures(line).unwrap_or_else(|| panic!("bad sample line {line:?}"));
            let family = &captures[1];
            assert!(help.contains(family) && kind.contains(family), "{family} has no HELP/TYPE before it");
            let value = captures.get(5).unwrap().as_str();
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let key = line.rsplit_once(' ').unwrap().0.to_string();
            assert!(series.insert(key, value).is_none(), "duplicate series {line:?}");
        }
    }
    for family in &help {
        assert!(kind.contains(family), "{family} has HELP but no TYPE");
    }
    series
}

#[test]
fn the_exposition_checker_rejects_bad_text() {
    for bad in [
        "drainctl_x 1\n",
        "# HELP a h\n# TYPE a gauge\na{b=\"c\"} 1\na{b=\"c\"} 2\n",
        "# HELP a h\n# TYPE a gauge\na{b=c} 1\n",
        "# HELP a h\n# TYPE a gauge\na 1 2 3\n",
    ] {
        assert!(std::panic::catch_unwind(|| check_exposition(bad)).is_err(), "{bad:?} passed");
    }
}

#[test]
fn metrics_describe_every_drain_in_valid_exposition_format() {
    let fixture = Fixture::new(
        &config(
            "metrics_textfile = \"TMPDIR/textfile/drainctl.prom\"\n",
            "quota_group = \"claude-chair\"\n\n[[drain]]\nname = \"idle\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"claude-chair\"\n",
        ),
        NOW,
    );
    fixture.enqueue(
        "docs",
        &[("a".into(), json!("a")), ("b".into(), steps(json!([{ "exit": 1 }]))), ("c".into(), json!("c"))],
    );
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    fixture.drainctl(&["pause", "idle", "--note", "maintenance"]).run().assert_code(0);
    let mut client = fixture.client();
    client
        .execute(
            "INSERT INTO quota_backoffs (quota_group, backoff_until, reason, updated_at)
             VALUES ('claude-chair', '2026-11-27T13:00:00Z', 'usage limit \"reached\"', now())",
            &[],
        )
        .unwrap();
    client
        .execute("UPDATE drains SET burst_until = '2026-11-28T16:00:00Z' WHERE name = 'docs'", &[])
        .unwrap();
    client
        .execute(
            "INSERT INTO supervisor_passes (fired_at, scheduled_for, host, pid, status, duration_ms)
             VALUES ('2026-11-27T09:50:00Z', '2026-11-27T09:50:00Z', 'h', 1, 'done', 1500)",
            &[],
        )
        .unwrap();

    let result = fixture.drainctl(&["metrics"]).run();
    result.assert_code(0);
    let series = check_exposition(&result.stdout);
    let expect = |key: &str, value: f64| {
        assert_eq!(series.get(key), Some(&value), "{key} in\n{}", result.stdout);
    };
    let ten_o_clock = 1_795_773_600.0; // 2026-11-27T10:00:00Z
    expect("drainctl_items{drain=\"docs\",state=\"done\"}", 2.0);
    expect("drainctl_items{drain=\"docs\",state=\"dead\"}", 1.0);
    expect("drainctl_items{drain=\"docs\",state=\"pending\"}", 0.0);
    expect("drainctl_items{drain=\"idle\",state=\"pending\"}", 0.0);
    expect(
        "drainctl_backoff_until_timestamp_seconds{quota_group=\"claude-chair\"}",
        ten_o_clock + 3.0 * 3600.0,
    );
    expect("drainctl_burst_until_timestamp_seconds{drain=\"docs\"}", ten_o_clock + 30.0 * 3600.0);
    expect("drainctl_burst_until_timestamp_seconds{drain=\"idle\"}", 0.0);
    expect("drainctl_paused{drain=\"idle\"}", 1.0);
    expect("drainctl_paused{drain=\"docs\"}", 0.0);
    expect("drainctl_last_run_finished_timestamp_seconds{drain=\"docs\"}", ten_o_clock);
    expect("drainctl_last_success_timestamp_seconds{drain=\"docs\"}", ten_o_clock);
    expect("drainctl_last_success_timestamp_seconds{drain=\"idle\"}", 0.0);
    expect("drainctl_supervisor_last_pass_timestamp_seconds", ten_o_clock - 600.0);
    expect("drainctl_supervisor_last_pass_duration_seconds", 1.5);
    assert!(
        !series.keys().any(|key| key.contains("last_run_finished") && key.contains("idle")),
        "no run, no series"
    );
    assert!(!result.stdout.contains("=\"\""), "no empty label: {}", result.stdout);
    expect("drainctl_items_finished_total{drain=\"docs\",outcome=\"done\"}", 2.0);
    expect("drainctl_items_finished_total{drain=\"docs\",outcome=\"dead\"}", 1.0);
    expect("drainctl_items_finished_total{drain=\"idle\",outcome=\"done\"}", 0.0);
    expect("drainctl_worker_starts_total{drain=\"docs\"}", 3.0);
    expect("drainctl_worker_starts_total{drain=\"idle\"}", 0.0);
    expect("drainctl_quota_hits_total{group=\"claude-chair\"}", 0.0);
    // Backing off now (until 13:00), each drain of the group: the stall alert leaves them
    // be; the heartbeat alert is late at twice the interval.
    expect("drainctl_backing_off{drain=\"docs\"}", 1.0);
    expect("drainctl_backing_off{drain=\"idle\"}", 1.0);
    expect("drainctl_supervise_interval_seconds", 900.0);

    // --textfile without a value writes the configured file atomically, world-readable.
    let written = fixture.drainctl(&["metrics", "--textfile"]).run();
    written.assert_code(78);
    assert!(written.stderr.contains("drainctl.prom"), "the missing folder is named: {}", written.stderr);
    std::fs::create_dir(fixture.path("textfile")).unwrap();
    let written = fixture.drainctl(&["metrics", "--textfile"]).run();
    written.assert_code(0);
    let path = fixture.path("textfile/drainctl.prom");
    assert!(written.stdout.contains(&path.display().to_string()), "{}", written.stdout);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), result.stdout);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
    let other = fixture.path("other.prom");
    fixture.drainctl(&["metrics", "--textfile", other.to_str().unwrap()]).run().assert_code(0);
    check_exposition(&std::fs::read_to_string(&other).unwrap());
    // Once the backoff has passed, not backing off.
    fixture.set_now("2026-11-27T13:00:01Z");
    let later = fixture.drainctl(&["metrics"]).run();
    assert!(later.stdout.contains("drainctl_backing_off{drain=\"docs\"} 0\n"), "{}", later.stdout);
    // A parked group waits for a person, whatever its backoff's time says.
    fixture
        .client()
        .execute(
            "INSERT INTO quota_groups (quota_group, updated_at, parked_at, parked_reason)
             VALUES ('claude-chair', now(), now(), 'billing')",
            &[],
        )
        .unwrap();
    let parked = fixture.drainctl(&["metrics"]).run();
    assert!(parked.stdout.contains("drainctl_backing_off{drain=\"docs\"} 1\n"), "{}", parked.stdout);
}

// ---------------------------------------------------------------------------------------
// notifications

fn dead_letter_with_notifier(notifier: &str, extra_defaults: &str) -> (Fixture, Finished, Duration) {
    let fixture = Fixture::new(&config(&format!("notify_command = {notifier}\n{extra_defaults}"), ""), NOW);
    fixture.enqueue("docs", &[("bad".into(), steps(json!([{ "err": "no good" }, { "exit": 4 }])))]);
    let started = Instant::now();
    let result = fixture.drainctl(&["drain", "docs", "--json"]).run();
    (fixture, result, started.elapsed())
}

/// A run of this host whose process is gone, holding item `key` (pending before): the
/// next `supervise` reaps it as crashed.
fn crashed_run_holding(fixture: &Fixture, key: &str) -> i64 {
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = gone.id() as i32;
    gone.wait().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let mut client = fixture.client();
    let run_id: i64 = client
        .query_one(
            "INSERT INTO runs (drain, trigger, host, pid, started_at, last_checkpoint_at, status)
             VALUES ('docs', 'supervisor', $1, $2, now(), now(), 'running') RETURNING id",
            &[&host, &dead_pid],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            "UPDATE items SET state = 'running', claimed_by = $1, attempts = 1 WHERE key = $2",
            &[&run_id, &key],
        )
        .unwrap();
    run_id
}

/// A paused drain with `keys` for items, and a notifier appending each `run_crashed` event
/// to `notified.jsonl`.
fn crash_notified_fixture(keys: &[&str]) -> Fixture {
    let notifier = r#"["sh", "-c", "cat >> TMPDIR/notified.jsonl"]"#;
    let fixture = Fixture::new(
        &config(&format!("notify_command = {notifier}\nnotify_on = [\"run_crashed\"]\n"), ""),
        NOW,
    );
    let items: Vec<(String, Value)> =
        keys.iter().enumerate().map(|(n, key)| (key.to_string(), json!(n + 1))).collect();
    fixture.enqueue("docs", &items);
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    fixture
}

#[test]
fn notifications_a_dead_supervise_left_unsent_are_sent_by_the_next_pass() {
    let fixture = crash_notified_fixture(&["a", "b"]);
    let notified = || -> Vec<i64> {
        std::fs::read_to_string(fixture.path("notified.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["run_id"].as_i64().unwrap())
            .collect()
    };

    // The pass that reaps run a is killed (SIGKILL: pm2's kill timeout, the OOM killer)
    // after the event committed, before it claimed its notification: the next pass sends it.
    let a = crashed_run_holding(&fixture, "a");
    let dying = fixture.drainctl(&["supervise"]).env("DRAINCTL_FAULT", "die_before_notifying").run();
    assert_ne!(dying.code, 0, "the pass was to die: {}", dying.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_crashed'"), 1);
    assert_eq!(notified(), Vec::<i64>::new());
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    assert_eq!(notified(), [a]);

    // Killed while its notifier ran (claimed, never sent): not sent again while the claim
    // is recent — it may still be on its way — then sent by the first pass after
    // notify_timeout (10 s) and a minute.
    let b = crashed_run_holding(&fixture, "b");
    let dying = fixture.drainctl(&["supervise"]).env("DRAINCTL_FAULT", "die_while_notifying").run();
    assert_ne!(dying.code, 0, "the pass was to die: {}", dying.stderr);
    fixture.set_now("2026-11-27T10:01:00Z");
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    assert_eq!(notified(), [a]);
    fixture.set_now("2026-11-27T10:01:11Z");
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    assert_eq!(notified(), [a, b]);
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    assert_eq!(notified(), [a, b], "each sent once");
    assert_eq!(fixture.count("SELECT count(*) FROM notifications_due"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'notify_failed'"), 0);
}

#[test]
fn a_failure_of_a_notification_sent_late_is_recorded_when_it_happened() {
    let fixture =
        Fixture::new(&config("notify_command = [\"sh\", \"-c\", \"cat >/dev/null; exit 3\"]\n", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    crashed_run_holding(&fixture, "a");
    let dying = fixture.drainctl(&["supervise"]).env("DRAINCTL_FAULT", "die_before_notifying").run();
    assert_ne!(dying.code, 0, "the pass was to die: {}", dying.stderr);
    // Sent an hour later, and failing then: before, its failure was dated at the event's
    // time, where `events --since 15m` does not look.
    fixture.set_now("2026-11-27T11:00:00Z");
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    let at: Vec<String> = fixture.column(
        "SELECT at::text FROM events WHERE kind = 'notify_failed' AND data->>'event_kind' = 'run_crashed'",
    );
    assert_eq!(at, ["2026-11-27 11:00:00+00"]);
    let recent = fixture.drainctl(&["events", "--since", "15m", "--kind", "notify_failed", "--json"]).run();
    recent.assert_code(0);
    assert!(recent.stdout.contains("run_crashed"), "{}", recent.stdout);
}

#[test]
fn pruning_an_event_removes_the_notification_left_due_for_it() {
    let fixture = crash_notified_fixture(&["a"]);
    crashed_run_holding(&fixture, "a");
    let dying = fixture.drainctl(&["supervise"]).env("DRAINCTL_FAULT", "die_before_notifying").run();
    assert_ne!(dying.code, 0, "the pass was to die: {}", dying.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM notifications_due"), 1);
    // Past the events' 90 days, prune removes the event and what was due for it.
    fixture.set_now("2027-03-01T10:00:00Z");
    fixture.drainctl(&["prune"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'run_crashed'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM notifications_due"), 0);
}

#[test]
fn the_notifier_gets_the_dead_letter_event_as_json_on_stdin() {
    let (fixture, result, _) = dead_letter_with_notifier(r#"["sh", "-c", "cat > TMPDIR/notified.json"]"#, "");
    result.assert_code(0);
    let text = std::fs::read_to_string(fixture.path("notified.json")).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object on one line: {text}");
    let event: Value = serde_json::from_str(&text).unwrap();
    assert_documented("Notifier input", &event);
    assert_eq!(event["kind"], "item_dead_lettered");
    assert_eq!(event["drain"], "docs");
    assert_eq!(event["at"], "2026-11-27T10:00:00Z");
    assert_eq!(event["message"], "item bad dead after 1 attempt: exit code 4: no good");
    assert_eq!(event["data"]["attempt"], 1);
    let (item_id, run_id): (i64, i64) = {
        let row =
            fixture.client().query_one("SELECT id, claimed_by FROM items WHERE key = 'bad'", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((event["item_id"].as_i64(), event["run_id"].as_i64()), (Some(item_id), Some(run_id)));
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'notify_failed'"), 0);
}

#[test]
fn every_kind_in_notify_on_is_sent_once_by_whichever_command_records_it() {
    let notifier = r#"["sh", "-c", "cat >> TMPDIR/notified.jsonl"]"#;
    let fixture = Fixture::new(
        &config(
            &format!("notify_command = {notifier}\nnotify_on = [\"drain_paused\", \"run_finished\", \"item_dead_lettered\"]\n"),
            "",
        ),
        NOW,
    );
    fixture.drainctl(&["pause", "docs", "--note", "maintenance"]).run().assert_code(0);
    fixture.drainctl(&["resume", "docs"]).run().assert_code(0);
    fixture.enqueue("docs", &[("bad".into(), steps(json!([{ "exit": 4 }])))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let text = std::fs::read_to_string(fixture.path("notified.jsonl")).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["drain_paused", "item_dead_lettered", "run_finished"], "{text}");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'notify_failed'"), 0);
}

/// Migration events were inserted past `record_event`: `notify_on` accepted them, but
/// they were never sent.
#[test]
fn migration_events_in_notify_on_are_sent() {
    let notifier = r#"["sh", "-c", "cat >> TMPDIR/notified.jsonl"]"#;
    let fixture = Fixture::new(
        &config(
            &format!(
                "notify_command = {notifier}\nnotify_on = [\"migration_applied\", \"migration_checksum_repaired\"]\n"
            ),
            "",
        ),
        NOW,
    );
    let notified = || -> Vec<Value> {
        std::fs::read_to_string(fixture.path("notified.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    // Any command brings the schema up to date, and notifies of what it applied.
    fixture.drainctl(&["status"]).run().assert_code(0);
    let applied = fixture.count("SELECT count(*) FROM schema_migrations");
    let sent = notified();
    assert_eq!(sent.len() as i64, applied, "{sent:?}");
    let versions: Vec<i32> = fixture.column("SELECT version FROM schema_migrations ORDER BY version");
    for (event, version) in sent.iter().zip(versions) {
        assert_eq!(event["kind"], "migration_applied");
        assert_eq!(event["data"]["version"], version);
    }
    // A repair is recorded only when the checksum needed one.
    fixture
        .client()
        .execute("UPDATE schema_migrations SET checksum = 'abc123' WHERE version = 1", &[])
        .unwrap();
    fixture.drainctl(&["migrate", "--repair-checksum", "1"]).run().assert_code(0);
    let sent = notified();
    assert_eq!(sent.len() as i64, applied + 1, "{sent:?}");
    assert_eq!(sent[sent.len() - 1]["kind"], "migration_checksum_repaired");
    assert_eq!(sent[sent.len() - 1]["data"], json!({ "version": 1 }));
    fixture.drainctl(&["status"]).run().assert_code(0);
    assert_eq!(notified().len() as i64, applied + 1);
}

#[test]
fn events_not_in_notify_on_are_not_sent() {
    let (fixture, result, _) = dead_letter_with_notifier(
        r#"["sh", "-c", "cat >> TMPDIR/notified.json"]"#,
        "notify_on = [\"run_hung\"]\n",
    );
    result.assert_code(0);
    assert!(!fixture.path("notified.json").exists());
}

#[test]
fn a_failing_notifier_is_recorded_and_does_not_fail_the_pass() {
    let (fixture, result, _) =
        dead_letter_with_notifier(r#"["sh", "-c", "echo pager down >&2; exit 7"]"#, "");
    result.assert_code(0);
    assert_eq!(result.json()["status"], "drained");
    assert_eq!(fixture.item("docs", "bad").0, "dead");
    let row = fixture
        .client()
        .query_one("SELECT message, data, drain, item_id FROM events WHERE kind = 'notify_failed'", &[])
        .unwrap();
    let message: String = row.get(0);
    let data: Value = row.get(1);
    assert_eq!(message, "notify_command failed for event item_dead_lettered: exit code 7: pager down");
    assert_eq!(data["reason"], "exit_code");
    assert_eq!(data["exit_code"], 7);
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("docs"));
    assert!(row.get::<_, Option<i64>>(3).is_some());

    let (fixture, result, _) = dead_letter_with_notifier(r#"["/nonexistent/notifier"]"#, "");
    result.assert_code(0);
    let data: Value = fixture
        .client()
        .query_one("SELECT data FROM events WHERE kind = 'notify_failed'", &[])
        .unwrap()
        .get(0);
    assert_eq!(data["reason"], "not_started");
}

#[test]
fn a_notifier_printing_megabytes_on_stdout_is_left_to_finish_and_not_called_failed() {
    // Three MiB on stdout (a verbose `curl`, say), then the delivery it was run for.
    let (fixture, result, _) = dead_letter_with_notifier(
        r#"["sh", "-c", "head -c 3145728 /dev/zero; cat >> TMPDIR/notified.json"]"#,
        "",
    );
    result.assert_code(0);
    let delivered = std::fs::read_to_string(fixture.path("notified.json")).expect("the notifier finished");
    assert!(delivered.contains("item_dead_lettered"), "{delivered}");
    let failed: i64 = fixture
        .client()
        .query_one("SELECT count(*) FROM events WHERE kind = 'notify_failed'", &[])
        .unwrap()
        .get(0);
    assert_eq!(failed, 0, "stdout is ignored, however long");
}

/// A notifier that writes its pid to `notifier.pid`, then sleeps two minutes and writes
/// `late`, as `notify_command`.
const SLOW_NOTIFIER: &str =
    r#"["sh", "-c", "echo $$ > TMPDIR/notifier.pid; sleep 120; echo late > TMPDIR/late"]"#;

/// The pid of the [`SLOW_NOTIFIER`] once it started.
fn slow_notifier_started(fixture: &Fixture) -> i32 {
    let pid_file = fixture.path("notifier.pid");
    wait_until("the notifier to start", Duration::from_secs(20), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|text| text.ends_with('\n'))
    });
    std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap()
}

#[test]
fn a_hanging_notifier_is_killed_after_notify_timeout() {
    let (fixture, result, elapsed) = dead_letter_with_notifier(SLOW_NOTIFIER, "notify_timeout = \"1s\"\n");
    result.assert_code(0);
    assert!(elapsed < Duration::from_secs(15), "the pass took {elapsed:?}");
    let data: Value = fixture
        .client()
        .query_one("SELECT data FROM events WHERE kind = 'notify_failed'", &[])
        .unwrap()
        .get(0);
    assert_eq!(data["reason"], "timed_out");
    let pid: i32 = std::fs::read_to_string(fixture.path("notifier.pid")).unwrap().trim().parse().unwrap();
    wait_until("the notifier to be gone", Duration::from_secs(10), || !pid_alive(pid));
    assert!(!fixture.path("late").exists());
}

/// A notifier that hangs ([`SLOW_NOTIFIER`]) for at most `timeout`, and a metrics
/// textfile whose folder is missing: every `supervise` pass records a supervise_error (78)
/// and runs the notifier for it. `extra`: more `[defaults]`.
fn slow_notifier_fixture(timeout: &str, extra: &str) -> Fixture {
    let defaults = format!(
        "notify_command = {SLOW_NOTIFIER}\nnotify_timeout = \"{timeout}\"\n\
         metrics_textfile = \"TMPDIR/missing/drainctl.prom\"\n{extra}"
    );
    Fixture::new(&config(&defaults, ""), NOW)
}

#[test]
fn a_supervise_pass_stopped_while_its_notifier_runs_says_it_was_interrupted_and_exits_75() {
    let fixture = slow_notifier_fixture("10m", "report_html = \"TMPDIR/page.html\"\n");
    // The textfile's folder is missing: the pass records a supervise_error (78), and the
    // notifier runs for it.
    let pass = fixture.drainctl(&["supervise"]).spawn();
    slow_notifier_started(&fixture);
    // The page was written before the notifier started. Before: after every notification,
    // so a hanging notifier left it (and the heartbeat it shows) stale.
    assert!(fixture.path("page.html").exists(), "the page waits for the notifications");
    signal(pass.id(), libc::SIGTERM);
    let result = finished(pass.wait_with_output().unwrap());
    // Before: the next notification's notifier was started and waited for (2 minutes),
    // then exit 78 (the textfile's), no word of the interruption.
    assert!(!fixture.path("late").exists(), "a notifier ran to its end");
    result.assert_code(75);
    // Its decisions are printed all the same. Before: nothing on stdout.
    assert!(result.stdout.starts_with("DRAIN"), "{}", result.stdout);
    let last = result.stderr.lines().last().unwrap_or_default().to_string();
    assert_eq!(
        last,
        "drainctl: supervise: pass interrupted by SIGTERM before it sent every notification; the next pass does the rest",
        "{}",
        result.stderr
    );
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM events WHERE kind = 'supervise_error' AND message LIKE 'pass interrupted by SIGTERM%'"
        ),
        1
    );
}

#[test]
fn a_supervise_pass_whose_session_ends_while_its_notifier_runs_exits_69() {
    let fixture = slow_notifier_fixture("2s", "");
    let pass = fixture.drainctl(&["supervise"]).spawn();
    slow_notifier_started(&fixture);
    fixture.end_drainctl_sessions();
    let result = finished(pass.wait_with_output().unwrap());
    // Before: exit 78 (the textfile's) though no notification could be recorded as sent
    // and no event written: the server ended the session (docs/exit-codes.md).
    result.assert_code(69);
    assert!(result.stderr.contains("database connection lost"), "{}", result.stderr);
}

/// A `supervise` pass sent SIGTERM once it has recorded itself, while it waits for the
/// drain it started (slow to record its run): the day's prune is done first, so that no
/// due prune is what the signal cuts short.
fn supervise_stopped_once_recorded(fixture: &Fixture) -> std::process::Child {
    fixture.drainctl(&["prune"]).run().assert_code(0);
    let pass = fixture.drainctl(&["supervise"]).env("DRAINCTL_FAULT", "slow_run_start").spawn();
    wait_until("the pass to be recorded", Duration::from_secs(20), || {
        fixture.count("SELECT count(*) FROM supervisor_passes WHERE status = 'done'") == 1
    });
    signal(pass.id(), libc::SIGTERM);
    pass
}

#[test]
fn a_signal_while_supervise_waits_for_its_drains_lets_the_wait_finish() {
    // No notifier, no textfile and the day's prune done: nothing is left once the drains
    // it started have recorded their runs, wherever after its record the signal lands.
    let fixture = Fixture::new(&config("", ""), NOW);
    let started = fixture.path("started");
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "touch": started }, { "hang": true }])))]);
    let pass = supervise_stopped_once_recorded(&fixture);
    // `pm2 restart`: the next pass at once. Before, the signal ended the wait and let go
    // of the lock, and this pass started the drain again (a `lock_skipped` run).
    let next = fixture.drainctl(&["supervise", "--json"]).run();
    let first = finished(pass.wait_with_output().unwrap());
    // Before: "interrupted … before it sent every notification", with no notifier at all.
    first.assert_code(0);
    assert_eq!(first.stderr, "", "nothing was left undone");
    let starts = next.json()["decisions"].as_array().cloned().unwrap_or_default();
    assert!(
        !starts.iter().any(|d| d["drain"] == "docs" && d["action"] == "start"),
        "started twice: {starts:?}"
    );
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    stop_the_only_run(&fixture);
}

#[test]
fn a_signal_before_the_page_is_rewritten_still_prints_the_decisions() {
    let fixture = Fixture::new(&config("report_html = \"TMPDIR/page.html\"\n", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "out": "a" }])))]);
    let pass = supervise_stopped_once_recorded(&fixture);
    let result = finished(pass.wait_with_output().unwrap());
    // Before: nothing on stdout, and "… and sent every notification" with no notifier.
    result.assert_code(75);
    assert!(result.stdout.starts_with("DRAIN") && result.stdout.contains("start"), "{}", result.stdout);
    assert_eq!(
        result.stderr.lines().last().unwrap_or_default(),
        "drainctl: supervise: pass interrupted by SIGTERM before it rewrote report_html; the next pass does the rest",
        "{}",
        result.stderr
    );
    wait_until("the drain to finish", Duration::from_secs(20), || fixture.item("docs", "a").0 == "done");
}

#[test]
fn a_notifier_that_may_outlast_liveness_timeout_runs_once_the_run_has_ended() {
    // A pass records no checkpoint while it waits for its notifier: with a notifier of up
    // to 20 s and `liveness_timeout = "15s"`, supervise took the waiting run for hung and
    // killed it (before). Such a pass notifies once its run has ended.
    let notifier = r#"["sh", "-c", "cat > TMPDIR/notified.json; touch TMPDIR/notifying; sleep 3"]"#;
    let fixture = Fixture::new(
        &config(
            &format!("notify_command = {notifier}\nnotify_timeout = \"20s\"\n"),
            "liveness_timeout = \"15s\"\n",
        ),
        NOW,
    );
    fixture.enqueue(
        "docs",
        &[("bad".into(), steps(json!([{ "exit": 4 }]))), ("b".into(), steps(json!([{ "out": "b" }])))],
    );
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    wait_until("the notifier to run", Duration::from_secs(20), || fixture.path("notifying").exists());
    let status: Vec<String> = fixture.column("SELECT status FROM runs");
    assert_eq!(status, ["drained"], "the run is over before its notifier runs");
    finished(pass.wait_with_output().unwrap()).assert_code(0);
    let event: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.path("notified.json")).unwrap()).unwrap();
    assert_eq!(event["kind"], "item_dead_lettered");
}

/// The notifier of `kind`'s event was stopped with drainctl (`notify_failed`,
/// `interrupted`) and its notification is due again, unclaimed: the next supervise pass
/// sends it.
fn assert_notification_left_due(fixture: &Fixture, kind: &str) {
    let data: Value = fixture
        .client()
        .query_one("SELECT data FROM events WHERE kind = 'notify_failed'", &[])
        .unwrap()
        .get(0);
    assert_eq!(data["reason"], "interrupted", "{data}");
    let due = fixture.client().query_one(
        "SELECT count(*) FROM notifications_due d JOIN events e ON e.id = d.event_id
          WHERE d.claimed_at IS NULL AND e.kind = $1",
        &[&kind],
    );
    assert_eq!(due.unwrap().get::<_, i64>(0), 1, "{kind} left due");
}

#[test]
fn a_notifier_the_stop_signal_reaches_before_drainctl_leaves_its_notification_due() {
    // pm2's default `treekill` signals every process of the tree: the notifier may die of
    // it before drainctl hears it. Before: "killed by signal 2", and the notification lost.
    let notifier = r#"["sh", "-c", "kill -INT $PPID; kill -INT $$; sleep 5"]"#;
    let fixture = Fixture::new(&config(&format!("notify_command = {notifier}\n"), ""), NOW);
    fixture.enqueue("docs", &[("bad".into(), steps(json!([{ "exit": 4 }])))]);
    let result = fixture.drainctl(&["drain", "docs"]).run();
    assert_eq!(fixture.item("docs", "bad").0, "dead", "{}", result.stderr);
    assert_notification_left_due(&fixture, "item_dead_lettered");
}

#[test]
fn a_notifier_running_when_drainctl_is_told_to_stop_is_stopped_with_it() {
    let fixture = Fixture::new(
        &config(&format!("notify_command = {SLOW_NOTIFIER}\nnotify_timeout = \"10m\"\n"), ""),
        NOW,
    );
    fixture.enqueue("docs", &[("bad".into(), steps(json!([{ "exit": 4 }])))]);
    let pass = fixture.drainctl(&["drain", "docs"]).spawn();
    let pid = slow_notifier_started(&fixture);
    signal(pass.id(), libc::SIGTERM);
    // Not the notifier's 10 minutes: the pass ends at once, the notifier's group killed.
    let result = finished(pass.wait_with_output().unwrap());
    assert!(!pid_alive(pid), "the notifier {pid} still runs");
    assert!(!fixture.path("late").exists());
    let (message, data): (String, Value) = {
        let row = fixture
            .client()
            .query_one("SELECT message, data FROM events WHERE kind = 'notify_failed'", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(data["reason"], "interrupted", "{message}");
    assert_eq!(
        message,
        "notify_command failed for event item_dead_lettered: stopped: drainctl received SIGTERM while it \
         ran; its process group was killed"
    );
    assert_eq!(fixture.item("docs", "bad").0, "dead", "{}", result.stderr);
    result.assert_code(75);
    assert!(result.stderr.ends_with("drainctl: drain docs: interrupted by SIGTERM\n"), "{}", result.stderr);
    // Not delivered, so due again, unclaimed: the next supervise pass sends it.
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM notifications_due d JOIN events e ON e.id = d.event_id
              WHERE d.claimed_at IS NULL AND e.kind = 'item_dead_lettered'"
        ),
        1
    );
    fixture.write_config(&config(r#"notify_command = ["sh", "-c", "cat >> TMPDIR/notified.jsonl"]"#, ""));
    fixture.drainctl(&["supervise"]).run().assert_code(0);
    let sent = std::fs::read_to_string(fixture.path("notified.jsonl")).unwrap();
    let kinds: Vec<String> = sent
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["kind"].as_str().unwrap().into())
        .collect();
    assert_eq!(kinds, ["item_dead_lettered"], "{sent}");
    assert_eq!(fixture.count("SELECT count(*) FROM notifications_due"), 0);
}

#[test]
fn a_notifier_of_pause_is_stopped_with_it_and_its_notification_stays_due() {
    // Before: `pause` died of the SIGTERM alone, its notifier orphaned (no timeout on it
    // any more) and its notification left claimed, to be sent again, perhaps twice.
    let fixture = Fixture::new(
        &config(
            &format!(
                "notify_command = {SLOW_NOTIFIER}\nnotify_timeout = \"10m\"\nnotify_on = [\"drain_paused\"]\n"
            ),
            "",
        ),
        NOW,
    );
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let pause = fixture.drainctl(&["pause", "docs"]).spawn();
    let pid = slow_notifier_started(&fixture);
    signal(pause.id(), libc::SIGTERM);
    let result = finished(pause.wait_with_output().unwrap());
    assert!(!pid_alive(pid), "the notifier {pid} still runs");
    result.assert_code(0);
    let paused: Vec<bool> = fixture.column("SELECT paused_at IS NOT NULL FROM drains WHERE name = 'docs'");
    assert_eq!(paused, [true], "the pause itself is done: {}", result.stderr);
    assert_notification_left_due(&fixture, "drain_paused");
}

// ---------------------------------------------------------------------------------------
// doctor

#[test]
fn doctor_passes_on_a_healthy_setup_and_applies_nothing() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let result = fixture.drainctl(&["doctor"]).run();
    result.assert_code(0);
    for expected in [
        "ok    config: configuration ",
        "ok    database: database reachable (PostgreSQL ",
        "warn  schema: migration(s) 0001_init, 0002_accounts, 0003_sources, 0004_host_identity",
        &format!("ok    worker: drain docs: worker {FAKE_WORKER}"),
        "ok    timezone: time zone Asia/Jerusalem (from [defaults] timezone)",
        "ok    log_dir: ",
        "is not there yet: the first pass creates it (mode 0700) in ",
        "ok    clock_skew: clock within ",
        "warn  injected_clock: DRAINCTL_NOW is set",
    ] {
        assert!(result.stdout.contains(expected), "{expected:?} not in\n{}", result.stdout);
    }
    // It creates nothing (before: it made log_dir, as whoever ran it — root, in a service
    // user's folder, where that user's passes could then not start a drain).
    assert!(!fixture.path("logs").exists(), "doctor created log_dir");
    // A third warning where the server may lose confirmed commits (a throwaway test cluster).
    let lax: bool = fixture
        .client()
        .query_one(
            "SELECT current_setting('synchronous_commit') = 'off' OR current_setting('fsync') = 'off'",
            &[],
        )
        .unwrap()
        .get(0);
    let warnings = if lax { 3 } else { 2 };
    let expected = format!("healthy, with {warnings} warning(s)");
    assert!(result.stdout.contains(&expected), "{expected:?} not in\n{}", result.stdout);
    assert!(result.stderr.is_empty(), "{}", result.stderr);
    assert_eq!(
        fixture.count("SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"),
        0,
        "doctor reports, it does not migrate"
    );

    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let json = fixture.drainctl(&["doctor", "--json"]).run();
    json.assert_code(0);
    let json = json.json();
    assert_documented("drainctl doctor", &json);
    assert_eq!(json["healthy"], true);
    assert_eq!(json["exit_code"], 0);
    let schema = json["checks"].as_array().unwrap().iter().find(|c| c["check"] == "schema").unwrap().clone();
    assert_eq!(schema["status"], "ok");
    let worker = json["checks"].as_array().unwrap().iter().find(|c| c["check"] == "worker").unwrap().clone();
    assert_eq!(worker["drain"], "docs");
}

#[test]
fn doctor_warns_of_a_database_that_may_lose_commits_it_confirmed() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let database = fixture.db.name.replace('"', "\"\"");
    let mut client = fixture.client();
    client.batch_execute(&format!("ALTER DATABASE \"{database}\" SET synchronous_commit = off")).unwrap();
    let durability = |fixture: &Fixture| {
        let doctor = fixture.drainctl(&["doctor", "--json"]).run();
        let json = doctor.json();
        json["checks"].as_array().unwrap().iter().find(|c| c["check"] == "durability").cloned().unwrap()
    };
    let lax = durability(&fixture);
    assert_eq!(lax["status"], "warn", "{lax}");
    assert!(
        lax["message"].as_str().unwrap().contains("synchronous_commit = off")
            && lax["message"]
                .as_str()
                .unwrap()
                .contains("a crash of the server may lose commits it confirmed")
            && lax["message"].as_str().unwrap().contains("ALTER DATABASE … SET synchronous_commit = on"),
        "{lax}"
    );
    // A role's setting wins over the database's: the fix names the role.
    let role: String = client.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    let role = role.replace('"', "\"\"");
    client
        .batch_execute(&format!(
            "ALTER ROLE \"{role}\" IN DATABASE \"{database}\" SET synchronous_commit = off"
        ))
        .unwrap();
    client.batch_execute(&format!("ALTER DATABASE \"{database}\" SET synchronous_commit = on")).unwrap();
    let by_role = durability(&fixture);
    assert!(
        by_role["message"]
            .as_str()
            .unwrap()
            .contains("ALTER ROLE … IN DATABASE … SET synchronous_commit = on"),
        "{by_role}"
    );
    client
        .batch_execute(&format!("ALTER ROLE \"{role}\" IN DATABASE \"{database}\" RESET synchronous_commit"))
        .unwrap();
    let kept = durability(&fixture);
    assert!(!kept["message"].as_str().unwrap().contains("synchronous_commit = off"), "{kept}");
    // The server's own fsync decides the rest (a throwaway test cluster may run without it).
    let fsync: String = client.query_one("SELECT current_setting('fsync')", &[]).unwrap().get(0);
    assert_eq!(kept["status"], if fsync == "off" { "warn" } else { "ok" }, "{kept}");
}

#[test]
fn doctor_reports_a_missing_worker_binary_with_exit_78() {
    let fixture = Fixture::new(
        &config("", "\n[[drain]]\nname = \"gone\"\ncommand = [\"no-such-worker-xyz\", \"-p\"]\nworkdir = \"missing\"\n"),
        NOW,
    );
    let result = fixture.drainctl(&["doctor"]).env("PATH", "/usr/bin:/bin").run();
    result.assert_code(78);
    // The PATH searched is named, as a pass names it.
    assert!(
        result.stdout.contains(
            "fail  worker: drain gone: worker \"no-such-worker-xyz\" not found on PATH (/usr/bin:/bin); fix `command` \
             in the configuration"
        ),
        "{}",
        result.stdout
    );
    assert!(result.stdout.contains("fail  workdir: drain gone: workdir "), "{}", result.stdout);
    // And how to fix it, as the pass says.
    assert!(
        result
            .stdout
            .contains("/missing does not exist or is not a folder; create it or fix `workdir` of drain gone"),
        "{}",
        result.stdout
    );
    assert!(
        result.stdout.contains("ok    worker: drain docs"),
        "other drains are still checked: {}",
        result.stdout
    );
    assert!(result.stdout.ends_with("2 check(s) failed\n"), "{}", result.stdout);
    assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
    assert!(result.stderr.contains("no-such-worker-xyz"), "{}", result.stderr);
    let json = fixture.drainctl(&["doctor", "--json"]).run();
    json.assert_code(78);
    assert_eq!(json.json()["healthy"], false);
}

#[test]
fn doctor_reports_an_unknown_zone_with_exit_78() {
    let fixture = Fixture::new(
        "[defaults]\ntimezone = \"Mars/Olympus\"\n\n[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n",
        NOW,
    );
    let result = fixture.drainctl(&["doctor"]).run();
    result.assert_code(78);
    assert!(result.stdout.contains("fail  config: "), "{}", result.stdout);
    assert!(
        result.stdout.contains("fail  timezone: [defaults] timezone: unknown time zone \"Mars/Olympus\""),
        "{}",
        result.stdout
    );
    // The database is still checked, from the environment's URL.
    assert!(result.stdout.contains("ok    database: "), "{}", result.stdout);
}

#[test]
fn doctor_warns_of_notify_on_listing_what_is_never_sent() {
    let fixture = Fixture::new(&config("notify_on = [\"run_hung\", \"notify_failed\"]", ""), NOW);
    let result = fixture.drainctl(&["doctor"]).run();
    // Before: accepted without a word, by every command and by doctor.
    result.assert_code(0);
    assert!(
        result
            .stdout
            .contains("warn  notify_on: notify_on lists notify_failed, which is never sent to the notifier"),
        "{}",
        result.stdout
    );
    let fixture = Fixture::new(&config("notify_on = [\"run_hung\"]", ""), NOW);
    assert!(!fixture.drainctl(&["doctor"]).run().stdout.contains("notify_on"));
}

#[test]
fn doctor_warns_of_a_worker_tz_drainctl_cannot_read() {
    // A POSIX rule the worker's C library reads, but drainctl cannot: a clock time the
    // worker prints ("try again at 1:44 AM") would be read in Asia/Jerusalem instead.
    let fixture = Fixture::new(&config("", "env = { TZ = \"CET-1\" }\n"), NOW);
    let result = fixture.drainctl(&["doctor"]).run();
    result.assert_code(0);
    assert!(
        result.stdout.contains(
            "warn  worker_zone: drain docs: env TZ = \"CET-1\" is not a zone name drainctl knows; the worker's \
             clock times (\"resets 8pm\") are read in Asia/Jerusalem instead"
        ),
        "{}",
        result.stdout
    );
    let fixture = Fixture::new(&config("", "env = { TZ = \":Europe/Berlin\" }\n"), NOW);
    let result = fixture.drainctl(&["doctor"]).run();
    assert!(!result.stdout.contains("worker_zone"), "{}", result.stdout);
    // A name with a blank after it: the worker runs in UTC, and drainctl read its clock
    // times in Los Angeles, eight hours off, without a word (before).
    let fixture = Fixture::new(&config("", "env = { TZ = \"America/Los_Angeles \" }\n"), NOW);
    let result = fixture.drainctl(&["doctor"]).run();
    assert!(
        result.stdout.contains("env TZ = \"America/Los_Angeles \" is not a zone name drainctl knows")
            && result.stdout.contains("remove the blanks around the name"),
        "{}",
        result.stdout
    );
    let test = fixture
        .drainctl(&["quota", "test", "--drain", "docs", "--now", "2026-12-07T22:40:00Z"])
        .stdin("ERROR: You've hit your usage limit. Upgrade to Pro or try again at 11:44 PM.\n")
        .run();
    assert!(test.stdout.contains("reset: ") && !test.stdout.contains("PST"), "{}", test.stdout);
}

#[test]
fn doctor_exits_69_when_the_database_is_unreachable_and_hides_the_password() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let result = fixture
        .drainctl(&["doctor"])
        .env(
            "DRAINCTL_DATABASE_URL",
            "postgres://drainctl:hunter2-secret@127.0.0.1:1/drainctl?connect_timeout=2",
        )
        .run();
    result.assert_code(69);
    assert!(result.stdout.contains("fail  database: cannot connect to the database"), "{}", result.stdout);
    assert!(result.stdout.contains("skip  schema"), "{}", result.stdout);
    // Said, not left out (before: no durability line at all).
    assert!(
        result.stdout.contains("skip  durability: durability not checked: no database connection"),
        "{}",
        result.stdout
    );
    assert!(!result.stdout.contains("hunter2") && !result.stderr.contains("hunter2"));
}

// ---------------------------------------------------------------------------------------
// completions and the generated reference

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let result = Drainctl::new(&["completions", shell]).run();
        result.assert_code(0);
        assert!(result.stdout.contains("enqueue") && result.stdout.contains("lock-timeout"), "{shell}");
        assert!(!result.stdout.contains('\u{1b}'), "no terminal colour");
    }
    Drainctl::new(&["completions", "tcsh"]).run().assert_code(64);
}

#[test]
fn cli_reference_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md");
    let generated = drainctl::cli_docs::markdown();
    if std::env::var_os("DRAINCTL_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/cli.md is out of date with the clap definitions; regenerate it with\n  \
         DRAINCTL_UPDATE_DOCS=1 cargo test --features testing --test integration cli_reference"
    );
}

#[test]
fn help_has_no_colour() {
    let result = Drainctl::new(&["--help"]).env("CLICOLOR_FORCE", "1").run();
    result.assert_code(0);
    assert!(!result.stdout.contains('\u{1b}'), "{}", result.stdout);
}

// ---------------------------------------------------------------------------------------
// documented JSON of the commands that existed before

#[test]
fn existing_commands_print_their_documented_json() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let migrate = fixture.drainctl(&["migrate", "--json"]).run();
    migrate.assert_code(0);
    assert_documented("drainctl migrate --json", &migrate.json());
    let status = fixture.drainctl(&["migrate", "--status", "--json"]).run();
    assert_documented("drainctl migrate --status", &status.json());
    let dry_run = fixture.drainctl(&["migrate", "--dry-run", "--json"]).run();
    assert_documented("drainctl migrate --dry-run", &dry_run.json());
    let enqueue = fixture.drainctl(&["enqueue", "docs", "--key", "a", "--payload", "{}", "--json"]).run();
    assert_documented("drainctl enqueue", &enqueue.json());
    let drain = fixture.drainctl(&["drain", "docs", "--json"]).run();
    assert_documented("drainctl drain", &drain.json());
    let pause = fixture.drainctl(&["pause", "docs", "--note", "x", "--json"]).run();
    assert_documented("drainctl pause", &pause.json());
    let resume = fixture.drainctl(&["resume", "docs", "--json"]).run();
    assert_documented("drainctl resume NAME", &resume.json());
}

#[test]
fn supervise_status_and_burst_print_their_documented_json() {
    let fixture = Fixture::new(&config("", ""), NOW);
    fixture.enqueue("docs", &[("a".into(), json!(1))]);
    let burst_on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h", "--json"]).run();
    burst_on.assert_code(0);
    assert_documented("drainctl burst on", &burst_on.json());
    let burst_status = fixture.drainctl(&["burst", "status", "--json"]).run();
    assert_documented("drainctl burst status", &burst_status.json());
    let supervise = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run();
    supervise.assert_code(0);
    assert_documented("drainctl supervise", &supervise.json());
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    let status = fixture.drainctl(&["status", "--json"]).run();
    status.assert_code(0);
    assert_documented("drainctl status", &status.json());
    let burst_off = fixture.drainctl(&["burst", "off", "docs", "--json"]).run();
    assert_documented("drainctl burst off", &burst_off.json());
}

#[test]
fn tables_are_as_wide_as_columns_says() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let long_key = format!("k-{}", "x".repeat(150));
    fixture.enqueue("docs", &[(long_key.clone(), steps(json!([{ "err": "e".repeat(300) }, { "exit": 1 }])))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    // Before, 100 columns whatever COLUMNS or the terminal said: the key was always cut.
    let wide = fixture.drainctl(&["items", "docs"]).env("COLUMNS", "1000").run();
    wide.assert_code(0);
    assert!(wide.stdout.contains(&long_key), "{}", wide.stdout);
    let narrow = fixture.drainctl(&["items", "docs"]).env("COLUMNS", "60").run();
    assert!(narrow.stdout.lines().all(|line| line.chars().count() <= 60), "{}", narrow.stdout);
    // Nonsense is the default.
    let default = fixture.drainctl(&["items", "docs"]).env("COLUMNS", "wide").run();
    assert_fits(&default.stdout);
    assert!(!default.stdout.contains(&long_key), "{}", default.stdout);
}

#[test]
fn long_cells_are_cut_so_tables_fit_100_columns() {
    let fixture = Fixture::new(&config("", ""), NOW);
    let long_key = format!("k-{}", "x".repeat(150));
    fixture.enqueue("docs", &[(long_key.clone(), steps(json!([{ "err": "e".repeat(300) }, { "exit": 1 }])))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    for args in [vec!["items", "docs"], vec!["events"]] {
        let result = fixture.drainctl(&args).run();
        result.assert_code(0);
        assert_fits(&result.stdout);
        assert!(result.stdout.contains('…'), "{args:?}: nothing was cut:\n{}", result.stdout);
    }
    let runs = fixture.drainctl(&["runs"]).run();
    runs.assert_code(0);
    assert_fits(&runs.stdout);
    let json = fixture.drainctl(&["items", "docs", "--json"]).run().json();
    assert_eq!(json["items"][0]["key"], long_key, "JSON is never cut");
}

#[test]
fn status_and_doctor_name_a_drain_whose_items_wait_with_no_table_in_the_configuration() {
    let with_old = format!("{}\n[[drain]]\nname = \"old\"\ncommand = [\"FAKE_WORKER\"]\n", config("", ""));
    let fixture = Fixture::new(&with_old, NOW);
    fixture.drainctl(&["enqueue", "old", "--key", "a", "--payload", "{}"]).run().assert_code(0);
    fixture.drainctl(&["enqueue", "old", "--key", "b", "--payload", "{}"]).run().assert_code(0);
    fixture.drainctl(&["enqueue", "docs", "--key", "c", "--payload", "{}"]).run().assert_code(0);
    let status = fixture.drainctl(&["status"]).run();
    status.assert_code(0);
    assert!(!status.stdout.contains("no [[drain]] table"), "{}", status.stdout);
    // `old` renamed away: before, its two items vanished from every view.
    fixture.write_config(&config("", ""));
    let status = fixture.drainctl(&["status"]).run();
    status.assert_code(0);
    let expected =
        "drain old has 2 pending item(s) in the database and no [[drain]] table in the configuration";
    assert!(status.stdout.contains(expected), "{}", status.stdout);
    let json = fixture.drainctl(&["status", "--json"]).run().json();
    assert_eq!(
        json["unconfigured_drains"],
        serde_json::json!([{
            "drain": "old", "pending": 2, "running": 0, "running_passes": 0, "running_elsewhere": [],
            "started_elsewhere": []
        }])
    );
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(0);
    assert!(doctor.stdout.contains(&format!("warn  drains: {expected}")), "{}", doctor.stdout);
    // The operations page names it too (before: not at all).
    let page = fixture.drainctl(&["report"]).run();
    page.assert_code(0);
    assert!(
        page.stdout.contains("<section class=\"card\" data-unconfigured><h2>Not configured</h2>")
            && page.stdout.contains("<li data-drain=\"old\">"),
        "{}",
        page.stdout
    );
    assert!(page.stdout.contains(expected), "{}", page.stdout);
    // Metrics carry the backlog nothing starts (alert DrainctlDrainNotConfigured).
    let metrics = fixture.drainctl(&["metrics"]).run();
    metrics.assert_code(0);
    assert!(
        metrics.stdout.contains("drainctl_unconfigured_drain_items{drain=\"old\",state=\"pending\"} 2\n"),
        "{}",
        metrics.stdout
    );
    // Commands that need its settings say why they cannot run it, and how to bring it back.
    for args in [
        vec!["drain", "old"],
        vec!["enqueue", "old", "--key", "c", "--payload", "{}"],
        vec!["retry", "old", "--dead"],
        vec!["scan", "old"],
    ] {
        let refused = fixture.drainctl(&args).run();
        refused.assert_code(64);
        assert!(
            refused.stderr.contains("drain \"old\" is in the database but not in the configuration (",)
                && refused.stderr.contains("add a [[drain]] table named \"old\" back"),
            "{args:?}: {}",
            refused.stderr
        );
    }
    let unknown = fixture.drainctl(&["drain", "never"]).run();
    unknown.assert_code(64);
    assert!(unknown.stderr.contains("unknown drain \"never\"; known: docs"), "{}", unknown.stderr);
    // Its burst is shown, as `burst off` ends it (before: "unknown drain").
    let burst = fixture.drainctl(&["burst", "status", "old", "--json"]).run();
    burst.assert_code(0);
    assert_eq!(burst.json()["bursts"][0]["drain"], "old", "{}", burst.stdout);
    fixture
        .client()
        // An hour after the injected clock's now, not the server's: the line's length then
        // does not depend on the time of day the test runs at.
        .execute(
            "UPDATE drains SET burst_until = $1::text::timestamptz + interval '1 hour' WHERE name = 'old'",
            &[&NOW],
        )
        .unwrap();
    let all = fixture.drainctl(&["burst", "status", "--json"]).run().json();
    let listed: Vec<&str> =
        all["bursts"].as_array().unwrap().iter().map(|b| b["drain"].as_str().unwrap()).collect();
    assert_eq!(listed, ["docs", "old"], "{all}");
    // Paused as well, it is not told to resume: nothing runs it without its table.
    fixture.client().execute("UPDATE drains SET paused_at = now() WHERE name = 'old'", &[]).unwrap();
    let human = fixture.drainctl(&["burst", "status"]).run();
    let line = human.stdout.lines().find(|line| line.starts_with("old")).unwrap_or_default();
    assert!(
        line.contains("not in the configuration: nothing runs it") && !line.contains("resume"),
        "{}",
        human.stdout
    );
    fixture.client().execute("UPDATE drains SET paused_at = NULL WHERE name = 'old'", &[]).unwrap();
    // A pass it started before still runs on this host: status says so, and a pause
    // reaches it.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    fixture
        .client()
        .execute(
            "INSERT INTO runs (drain, status, trigger, host, pid, started_at, last_checkpoint_at)
             VALUES ('old', 'running', 'manual', $1, 1, now(), now())",
            &[&host],
        )
        .unwrap();
    let status = fixture.drainctl(&["status"]).run();
    assert!(
        status.stdout.contains(
            "no [[drain]] table in the configuration: its pass still running ends before its next item, as it \
             reads the file again (`drainctl pause old` stops it there too); after that, nothing runs them"
        ),
        "{}",
        status.stdout
    );
    fixture.drainctl(&["pause", "old", "--note", "removed"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE name = 'old' AND paused_at IS NOT NULL"), 1);
    let status = fixture.drainctl(&["status"]).run();
    assert!(
        status.stdout.contains("its pass still running stops before its next item (the drain is paused)")
            && status.stdout.contains("and `drainctl resume old` undoes the pause"),
        "{}",
        status.stdout
    );
    fixture.drainctl(&["resume", "old"]).run().assert_code(0);
    fixture.client().execute("DELETE FROM runs WHERE drain = 'old'", &[]).unwrap();
    // Done items are history, not a backlog: no warning for them.
    fixture
        .client()
        .execute("UPDATE items SET state = 'done', finished_at = now() WHERE drain = 'old'", &[])
        .unwrap();
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(!doctor.stdout.contains("drains:"), "{}", doctor.stdout);
}

#[test]
fn doctor_warns_when_a_file_others_can_read_holds_the_database_password() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new(&config("", ""), NOW);
    let with_url = format!("[database]\nurl = \"{}\"\n{}", fixture.db.url, config("", ""));
    fixture.write_config(&with_url);
    let doctor =
        |fixture: &Fixture| fixture.drainctl(&["doctor"]).env_remove("DRAINCTL_DATABASE_URL").run().stdout;
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = doctor(&fixture);
    let path = fixture.config_path.display().to_string();
    assert!(
        out.contains(&format!(
            "warn  config: {path} holds the database password and every user may read it (mode 0644): chmod 600 {path}"
        )),
        "{out}"
    );
    // Its group only, the file being this user's: for this user alone.
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = doctor(&fixture);
    assert!(
        out.contains("holds the database password and its group may read it (mode 0640): chmod 600"),
        "{out}"
    );
    assert!(!out.contains(&fixture.db.password()), "{out}");
    // Overridden by $DRAINCTL_DATABASE_URL, or with a TLS setting the postgres crate does
    // not know, the file still holds the password.
    let verify_full = format!(
        "[database]\nurl = \"{}?sslmode=verify-full&sslrootcert=/nonexistent.pem\"\n{}",
        fixture.db.url,
        config("", "")
    );
    for text in [&with_url, &verify_full] {
        fixture.write_config(text);
        std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = fixture.drainctl(&["doctor"]).run().stdout;
        assert!(out.contains("holds the database password and every user may read it"), "{out}");
    }
    fixture.write_config(&with_url);
    std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!doctor(&fixture).contains("may read it"));
    // Root's file given to a service user's group (docs/operations.md): every user's read
    // goes, the group's stays. Before: `chmod 600`, and the service user's passes could
    // no longer read it (exit 78); at 0640, a warning to take the group's read too.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&fixture.config_path, Some(0), Some(65534)).unwrap();
        std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = doctor(&fixture);
        assert!(out.contains(&format!("every user may read it (mode 0644): chmod 640 {path}")), "{out}");
        std::fs::set_permissions(&fixture.config_path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(!doctor(&fixture).contains("may read it"), "{}", doctor(&fixture));
    }
}

#[test]
fn an_instant_a_command_prints_is_the_one_the_next_command_reads_back() {
    let config = "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"docs\"\ncommand = [\"true\"]\n";
    // A clock with nanoseconds: PostgreSQL keeps microseconds, and so does every instant printed.
    let fixture = Fixture::new(config, "2026-11-27T10:00:00.123456789Z");
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+1h", "--json"]).run().json();
    let status = fixture.drainctl(&["burst", "status", "--json"]).run().json();
    let printed = on["burst_until"].as_str().unwrap_or_default().to_string();
    assert_eq!(printed, "2026-11-27T11:00:00.123456Z", "{on}");
    assert!(status.to_string().contains(&printed), "{status}");
    let supervise = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    assert_eq!(supervise["fired_at"], "2026-11-27T10:00:00.123456Z", "{supervise}");
}

#[test]
fn burst_on_for_a_drain_whose_quota_group_is_parked_says_no_pass_starts_it() {
    let fixture = Fixture::new(&config("", "quota_profile = \"openai\"\nmax_wait = \"0s\"\n"), NOW);
    let refused = r#"Error code: 429 - {"error": {"message": "You exceeded your current quota, please check your plan and billing details.", "type": "insufficient_quota", "code": "insufficient_quota"}}"#;
    fixture.enqueue("docs", &[("a".into(), steps(json!([{ "err": refused }, { "exit": 1 }])))]);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    fixture.set_now("2026-11-27T10:01:00Z");
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run();
    on.assert_code(0);
    // Before: "the next supervise pass starts it if idle", and supervise skipped it.
    assert!(
        on.stdout.contains(
            "its quota group docs is parked: no pass starts it until `drainctl resume --group docs`"
        ),
        "{}",
        on.stdout
    );
    let json = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h", "--json"]).run().json();
    assert_eq!(json["parked"], true, "{json}");
    let status = fixture.drainctl(&["burst", "status", "docs"]).run();
    assert!(status.stdout.contains("(in 2h); group parked: resume --group to start"), "{}", status.stdout);
    assert_eq!(fixture.drainctl(&["burst", "status", "--json"]).run().json()["bursts"][0]["parked"], true);
    let plan = fixture.drainctl(&["supervise", "--dry-run", "--json"]).run().json();
    assert_eq!(plan["decisions"][0]["action"], "skip", "{plan}");
    // Resumed, it is a burst like any other.
    fixture.drainctl(&["resume", "--group", "docs"]).run().assert_code(0);
    let on = fixture.drainctl(&["burst", "on", "docs", "--until", "+2h"]).run();
    assert!(on.stdout.contains("the next supervise pass starts it"), "{}", on.stdout);
}

#[test]
fn metrics_tell_a_drain_waiting_for_its_window_and_a_pass_that_failed_and_doctor_a_host_without_supervise() {
    // 11:00 UTC is 13:00 in Jerusalem: `nightly`'s window is closed, `cadenced` started
    // two hours ago and may start again in four, `burst` is outside its window in a
    // burst, and `ended` had a burst whose deadline passed an hour ago (not cleared yet).
    let fixture = Fixture::new(
        &config(
            "",
            "\n[[drain]]\nname = \"nightly\"\ncommand = [\"FAKE_WORKER\"]\n\
             window = { days = \"daily\", from = \"22:00\", to = \"06:00\" }\n\
             [[drain]]\nname = \"cadenced\"\ncommand = [\"FAKE_WORKER\"]\nevery = \"6h\"\n\
             [[drain]]\nname = \"burst\"\ncommand = [\"FAKE_WORKER\"]\n\
             window = { days = \"daily\", from = \"22:00\", to = \"06:00\" }\n\
             [[drain]]\nname = \"ended\"\ncommand = [\"FAKE_WORKER\"]\n",
        ),
        NOW,
    );
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    fixture.drainctl(&["burst", "on", "burst", "--until", "+2h"]).run().assert_code(0);
    fixture.drainctl(&["burst", "on", "ended", "--until", "+1h"]).run().assert_code(0);
    let mut client = fixture.client();
    client
        .execute(
            "INSERT INTO runs (drain, trigger, host, pid, started_at, last_checkpoint_at, status, finished_at, items_done)
             VALUES ('cadenced', 'supervisor', 'h', 1, '2026-11-27T09:00:00Z', '2026-11-27T09:00:00Z', 'drained',
                     '2026-11-27T09:01:00Z', 1)",
            &[],
        )
        .unwrap();
    // Passes on another host only: the last at 09:58; a failure recorded after it (a drain
    // it could not start), one before it (an earlier pass's, already followed by a pass).
    client
        .execute(
            "INSERT INTO supervisor_passes (fired_at, scheduled_for, host, pid, status, duration_ms)
             VALUES ('2026-11-27T09:43:00Z', '2026-11-27T09:43:00Z', 'elsewhere', 1, 'done', 10),
                    ('2026-11-27T09:58:00Z', '2026-11-27T09:58:00Z', 'elsewhere', 1, 'done', 10)",
            &[],
        )
        .unwrap();
    client
        .execute(
            "INSERT INTO events (at, kind, message) VALUES
                 ('2026-11-27T09:50:00Z', 'supervise_error', 'an earlier pass failed'),
                 ('2026-11-27T09:58:01Z', 'supervise_error', 'could not start drain docs')",
            &[],
        )
        .unwrap();
    fixture.set_now("2026-11-27T11:00:00Z");
    let result = fixture.drainctl(&["metrics"]).run();
    result.assert_code(0);
    let series = check_exposition(&result.stdout);
    let expect =
        |key: &str, value: f64| assert_eq!(series.get(key), Some(&value), "{key} in\n{}", result.stdout);
    // Before: no such series, and the stall alert paged every afternoon for a drain
    // waiting for its night window with a backlog.
    expect("drainctl_can_work{drain=\"docs\"}", 1.0);
    expect("drainctl_can_work{drain=\"nightly\"}", 0.0);
    expect("drainctl_can_work{drain=\"cadenced\"}", 0.0);
    expect("drainctl_can_work{drain=\"burst\"}", 1.0);
    // Before: a pass that failed a step refreshed the heartbeat and nothing said so.
    expect("drainctl_supervisor_last_pass_errors", 1.0);
    // Before: the passed deadline, while `status` said no burst.
    expect("drainctl_burst_until_timestamp_seconds{drain=\"ended\"}", 0.0);
    expect("drainctl_burst_until_timestamp_seconds{drain=\"burst\"}", 1_795_780_800.0);
    // 00:30 in Jerusalem: the night window is open, the cadence due again.
    fixture.set_now("2026-11-27T22:30:00Z");
    let later = fixture.drainctl(&["metrics"]).run();
    assert!(later.stdout.contains("drainctl_can_work{drain=\"nightly\"} 1\n"), "{}", later.stdout);
    assert!(later.stdout.contains("drainctl_can_work{drain=\"cadenced\"} 1\n"), "{}", later.stdout);
    // A pass of it running: working, whatever its window says.
    fixture.set_now("2026-11-27T11:00:00Z");
    client
        .execute(
            "INSERT INTO runs (drain, trigger, host, pid, started_at, last_checkpoint_at, status)
             VALUES ('nightly', 'burst', 'h', 1, '2026-11-27T10:59:00Z', '2026-11-27T10:59:00Z', 'running')",
            &[],
        )
        .unwrap();
    let running = fixture.drainctl(&["metrics"]).run();
    assert!(running.stdout.contains("drainctl_can_work{drain=\"nightly\"} 1\n"), "{}", running.stdout);
    client.execute("DELETE FROM runs WHERE drain = 'nightly'", &[]).unwrap();
    // Paused, it waits for a person: before, 1 all through a long pause, and the stalled
    // alert fired a quarter of an hour after the resume, while the drain was starting.
    fixture.drainctl(&["pause", "docs"]).run().assert_code(0);
    let paused = fixture.drainctl(&["metrics"]).run();
    assert!(paused.stdout.contains("drainctl_can_work{drain=\"docs\"} 0\n"), "{}", paused.stdout);
    fixture.drainctl(&["resume", "docs"]).run().assert_code(0);
    let resumed = fixture.drainctl(&["metrics"]).run();
    assert!(resumed.stdout.contains("drainctl_can_work{drain=\"docs\"} 1\n"), "{}", resumed.stdout);

    // doctor: the heartbeat is fresh (another host's), but this host has none.
    fixture.set_now("2026-11-27T10:05:00Z");
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(
        doctor.stdout.contains("warn  supervisor: last supervise pass 7m ago on another host; this host (")
            && doctor
                .stdout
                .contains("has no recent pass (none on record): if drains run here, install its crontab"),
        "{}",
        doctor.stdout
    );
    // A pass here skipped for the lock another host held: its supervise runs, healthy.
    // Before: the host was warned of as without a pass.
    let doctor_json = fixture.drainctl(&["doctor", "--json"]).run().json();
    let here = doctor_json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["check"] == "supervisor")
        .and_then(|check| check["message"].as_str())
        .and_then(|message| message.split("this host (").nth(1))
        .and_then(|rest| rest.split(')').next())
        .unwrap()
        .to_string();
    client
        .execute(
            "INSERT INTO supervisor_passes (fired_at, scheduled_for, host, pid, status, duration_ms)
             VALUES ('2026-11-27T09:59:00Z', '2026-11-27T09:58:00Z', $1, 1, 'lock_skipped', 5000)",
            &[&here],
        )
        .unwrap();
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(doctor.stdout.contains("ok    supervisor: last supervise pass"), "{}", doctor.stdout);
    // A pass here: healthy.
    fixture.drainctl(&["supervise"]).run();
    let doctor = fixture.drainctl(&["doctor"]).run();
    assert!(doctor.stdout.contains("ok    supervisor: last supervise pass"), "{}", doctor.stdout);
    // And a pass without failures since: none counted.
    let metrics = fixture.drainctl(&["metrics"]).run();
    assert!(metrics.stdout.contains("drainctl_supervisor_last_pass_errors 0\n"), "{}", metrics.stdout);
}
