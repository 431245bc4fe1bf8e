//! The configuration changed while work is in flight: a running pass stops before its
//! next item when its drain's settings changed (not when the file was only rewritten),
//! an item over a lowered `max_attempts` is not run again, and a narrowed source `glob`
//! excludes the files it no longer matches (docs/configuration.md, "Changing the
//! configuration while drains run").

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

fn config(extra: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n{extra}"
    )
}

/// Item `first` runs until the file `go` exists; `second` and `third` answer at once. A
/// pass as `supervise` starts one is started and `first` is running when this returns.
fn pass_in_its_first_item(fixture: &Fixture) -> std::process::Child {
    let go = fixture.path("go");
    fixture.enqueue(
        "docs",
        &[
            ("first".into(), json!({ "steps": [{ "wait_for_file": go }, { "out": "1" }] })),
            ("second".into(), json!({ "steps": [{ "out": "2" }] })),
            ("third".into(), json!({ "steps": [{ "out": "3" }] })),
        ],
    );
    let pass = fixture.drainctl(&["drain", "docs", "--trigger", "supervisor", "--json"]).spawn();
    wait_until("the first item to run", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE key = 'first' AND state = 'running'") == 1
    });
    pass
}

fn let_the_first_item_end(fixture: &Fixture, pass: std::process::Child) -> Value {
    std::fs::write(fixture.path("go"), "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    result.json()
}

fn edit_config(fixture: &Fixture, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.write_config_settled(&edit(text));
}

#[test]
fn a_running_pass_goes_on_with_the_settings_the_file_has_now() {
    // The window closed by an edit while the first item ran. Before: the pass read the
    // file once and ran the other two items outside the new window.
    let fixture = Fixture::new(&config(""), NOW);
    let pass = pass_in_its_first_item(&fixture);
    edit_config(&fixture, |text| {
        format!("{text}window = {{ days = \"*\", from = \"12:00\", to = \"13:00\" }}\n")
    });
    let json = let_the_first_item_end(&fixture, pass);
    assert_eq!(json["status"], "window_closed", "{json}");
    assert_eq!(json["items_done"], 1, "{json}");
    assert!(json["note"].as_str().unwrap_or_default().starts_with("outside window"), "{json}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 2);
    assert_eq!(fixture.count("SELECT count(*) FROM runs"), 1, "one run, gone on with the new settings");

    // The worker changed: the next items run the new one, in the same pass. Before: the
    // old one ran them all.
    let fixture = Fixture::new(&config(""), NOW);
    let pass = pass_in_its_first_item(&fixture);
    edit_config(&fixture, |text| text.replace("command = [\"", "command = [\"/bin/echo\", \""));
    let json = let_the_first_item_end(&fixture, pass);
    assert_eq!((json["status"].as_str(), json["items_done"].as_i64()), (Some("drained"), Some(3)), "{json}");
    let results: Vec<String> =
        fixture.column("SELECT convert_from(result, 'UTF8') FROM items WHERE key <> 'first' ORDER BY key");
    assert!(results.iter().all(|result| result.contains("drainctl-fake-worker")), "{results:?}");

    // The drain removed: the pass ends before its next item.
    let fixture = Fixture::new(&config(""), NOW);
    let pass = pass_in_its_first_item(&fixture);
    edit_config(&fixture, |text| text.replace("name = \"docs\"", "name = \"renamed\""));
    let json = let_the_first_item_end(&fixture, pass);
    assert_eq!(
        (json["status"].as_str(), json["items_done"].as_i64()),
        (Some("window_closed"), Some(1)),
        "{json}"
    );
    let note = json["note"].as_str().unwrap_or_default();
    assert_eq!(note, "the configuration file changed: drain docs is no longer in it; the pass ends");
}

#[test]
fn a_file_rewritten_unchanged_or_changed_for_another_drain_lets_the_pass_go_on() {
    let fixture = Fixture::new(&config(""), NOW);
    let pass = pass_in_its_first_item(&fixture);
    // A configuration tool writes it again as it was, and a drain of another group is added.
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.write_config_settled(&text);
    fixture
        .write_config_settled(&format!("{text}\n[[drain]]\nname = \"other\"\ncommand = [\"FAKE_WORKER\"]\n"));
    let json = let_the_first_item_end(&fixture, pass);
    assert_eq!(json["status"], "drained", "{json}");
    assert_eq!(json["items_done"], 3, "{json}");
}

#[test]
fn an_item_over_a_lowered_max_attempts_is_dead_lettered_without_another_call() {
    let fixture =
        Fixture::new(&config("max_attempts = 5\nretry_backoff = { base = \"1s\", max = \"1s\" }\n"), NOW);
    let calls = fixture.path("calls");
    fixture.enqueue("docs", &[("k".into(), json!({ "steps": [{ "log": calls }, { "exit": 3 }] }))]);
    for second in ["10:00:00", "10:00:05"] {
        fixture.set_now(&format!("2026-11-27T{second}Z"));
        fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    }
    assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 2);
    // Lowered to 1: the item has used 2. Before: a third call, then dead.
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.write_config_settled(&text.replace("max_attempts = 5", "max_attempts = 1"));
    fixture.set_now("2026-11-27T10:00:10Z");
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run();
    pass.assert_code(0);
    // No attempt ran: none failed.
    assert_eq!(pass.json()["items_failed"], 0, "{}", pass.stdout);
    assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 2, "no third call");
    let item = fixture.drainctl(&["items", "show", "docs", "k", "--json"]).run().json();
    assert_eq!(item["state"], "dead", "{item}");
    assert_eq!(item["attempts"], 2, "{item}");
    let events = fixture.drainctl(&["events", "--kind", "item_dead_lettered", "--json"]).run().json();
    let message = events["events"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("max_attempts is 1 and the item used 2 attempts already"), "{message}");
    // `retry` runs it again, as any dead item.
    fixture.drainctl(&["retry", "docs", "--key", "k"]).run().assert_code(0);
    fixture.drainctl(&["drain", "docs"]).run().assert_code(0);
    assert_eq!(std::fs::read_to_string(&calls).unwrap().lines().count(), 3);
}

#[test]
fn a_narrowed_glob_excludes_the_files_it_no_longer_matches() {
    let extra = "source = { dir = \"data\", glob = \"*\" }\n";
    let fixture = Fixture::new(&config(extra), NOW);
    let data = fixture.path("data");
    std::fs::create_dir_all(&data).unwrap();
    for name in ["a.md", "secret.txt", "b.md", "other.txt"] {
        std::fs::write(data.join(name), name).unwrap();
    }
    fixture.drainctl(&["scan", "docs"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 4);
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.write_config(&text.replace("glob = \"*\"", "glob = \"*.md\""));
    // The pass does not run an excluded file's item (before: it ran secret.txt).
    let pass = fixture.drainctl(&["drain", "docs", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(pass.json()["items_done"], 2, "{}", pass.stdout);
    let states: Vec<(String, String)> = fixture
        .client()
        .query("SELECT key, state FROM items ORDER BY key", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let skipped = |key: &str| (key.to_string(), "skipped_missing".to_string());
    let done = |key: &str| (key.to_string(), "done".to_string());
    assert_eq!(states, [done("a.md"), done("b.md"), skipped("other.txt"), skipped("secret.txt")]);
    let item = fixture.drainctl(&["items", "show", "docs", "secret.txt", "--json"]).run().json();
    let error = item["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("no longer matches the source's glob \"*.md\""), "{item}");
    // A scan settles them too, and widening the glob again takes them back.
    let fixture = Fixture::new(&config(extra), NOW);
    let data = fixture.path("data");
    std::fs::create_dir_all(&data).unwrap();
    for name in ["a.md", "secret.txt"] {
        std::fs::write(data.join(name), name).unwrap();
    }
    fixture.drainctl(&["scan", "docs"]).run().assert_code(0);
    let text = std::fs::read_to_string(&fixture.config_path).unwrap();
    fixture.write_config(&text.replace("glob = \"*\"", "glob = \"*.md\""));
    let scan = fixture.drainctl(&["scan", "docs", "--json"]).run().json();
    assert_eq!((scan["missing"].as_u64(), scan["skipped_missing"].as_u64()), (Some(1), Some(1)), "{scan}");
    fixture.write_config(&text);
    let scan = fixture.drainctl(&["scan", "docs", "--json"]).run().json();
    assert_eq!(scan["changed"].as_u64(), Some(1), "{scan}");
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'pending'"), 2);
}

#[test]
fn a_pass_that_yielded_and_goes_on_with_new_settings_no_longer_says_it_yields() {
    let config = |low: &str| {
        format!(
            "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n\n\
             [[drain]]\nname = \"low\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\nmax_wait = \"10m\"\n{low}\n\
             [[drain]]\nname = \"high\"\ncommand = [\"FAKE_WORKER\"]\nquota_group = \"shared\"\npriority = 5\n"
        )
    };
    let fixture = Fixture::new(&config(""), NOW);
    let (go_high, go_low) = (fixture.path("go-high"), fixture.path("go-low"));
    let wait_high = json!({ "steps": [{ "wait_for_file": go_high }, { "out": "h" }] });
    fixture.enqueue("high", &[("h1".into(), wait_high.clone()), ("h2".into(), wait_high)]);
    fixture
        .enqueue("low", &[("l1".into(), json!({ "steps": [{ "wait_for_file": go_low }, { "out": "l" }] }))]);
    let high = fixture.drainctl(&["drain", "high", "--json"]).spawn();
    wait_until("h1 to run", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE key = 'h1' AND state = 'running'") == 1
    });
    let low = fixture.drainctl(&["drain", "low", "--json"]).spawn();
    let yielding = "SELECT count(*) FROM runs WHERE drain = 'low' AND status = 'running' \
                    AND waiting_reason IS NOT NULL AND waiting_until IS NULL";
    wait_until("low to yield", Duration::from_secs(30), || fixture.count(yielding) == 1);
    // Low now outranks high: it takes its item, and its run no longer says it yields.
    // Before: the mark stayed while it worked (`drainctl_can_work` 0).
    fixture.write_config_settled(&config("priority = 9\n"));
    wait_until("l1 to run", Duration::from_secs(30), || {
        fixture.count("SELECT count(*) FROM items WHERE key = 'l1' AND state = 'running'") == 1
    });
    assert_eq!(fixture.count(yielding), 0);
    std::fs::write(&go_low, "").unwrap();
    std::fs::write(&go_high, "").unwrap();
    finished(low.wait_with_output().unwrap()).assert_code(0);
    finished(high.wait_with_output().unwrap()).assert_code(0);
}
