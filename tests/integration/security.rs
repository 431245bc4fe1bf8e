//! What drainctl keeps from the programs it starts and the files and terminals it writes:
//! the database credentials stay out of workers and notifiers, the metrics textfile is
//! written without following anyone's links, and text from workers and items is escaped
//! before it reaches a terminal or a log line.

use serde_json::json;

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";

fn config(defaults: &str, drain: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"UTC\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n{defaults}\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nmax_attempts = 1\n{drain}"
    )
}

/// The stored result of item `key` as text.
fn result_of(fixture: &Fixture, key: &str) -> String {
    let row = fixture.client().query_one("SELECT result FROM items WHERE key = $1", &[&key]).unwrap();
    String::from_utf8_lossy(&row.get::<_, Vec<u8>>(0)).into_owned()
}

// ---------------------------------------------------------------------------------------
// the database credentials

/// `drain docs` with the database URL in all three variables drainctl or libpq read, and
/// without the test harness's own copies of the cluster's URL, which are none of drainctl's
/// business.
fn drain_with_credentials_in_the_environment(fixture: &Fixture) -> Finished {
    let password = fixture.db.password();
    let mut command = fixture.drainctl(&["drain", "docs", "--json"]);
    for (name, value) in std::env::vars() {
        if value.contains(&password) {
            command = command.env_remove(&name);
        }
    }
    command.env("DATABASE_URL", &fixture.db.url).env("PGPASSWORD", &password).run()
}

#[test]
fn a_worker_that_prints_its_environment_stores_neither_the_database_url_nor_the_password() {
    let fixture = Fixture::new(&config("", "").replace("[\"FAKE_WORKER\"]", "[\"env\"]"), NOW);
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    drain_with_credentials_in_the_environment(&fixture).assert_code(0);
    let result = result_of(&fixture, "a");
    assert!(result.contains("DRAIN_ITEM_KEY=a"), "the worker printed its environment: {result}");
    let password = fixture.db.password();
    assert!(!result.contains(&password), "the password reached the worker: {result}");
    for name in ["DATABASE_URL=", "DRAINCTL_DATABASE_URL=", "PGPASSWORD="] {
        assert!(!result.lines().any(|line| line.starts_with(name)), "{name} reached the worker: {result}");
    }
}

#[test]
fn a_drain_env_that_sets_the_database_url_hands_it_to_the_worker() {
    let fixture = Fixture::new(
        &config(
            "",
            "env = { DATABASE_URL = \"postgres://app@db.example/app\", PGPASSWORD = \"given-on-purpose\" }\n",
        )
        .replace("[\"FAKE_WORKER\"]", "[\"env\"]"),
        NOW,
    );
    fixture.enqueue("docs", &[("a".into(), json!({}))]);
    drain_with_credentials_in_the_environment(&fixture).assert_code(0);
    let result = result_of(&fixture, "a");
    assert!(result.lines().any(|line| line == "DATABASE_URL=postgres://app@db.example/app"), "{result}");
    assert!(result.lines().any(|line| line == "PGPASSWORD=given-on-purpose"), "{result}");
    assert!(!result.contains(&fixture.db.password()), "drainctl's own password leaked: {result}");
    assert!(!result.lines().any(|line| line.starts_with("DRAINCTL_DATABASE_URL=")), "{result}");
}

#[test]
fn a_notifier_gets_neither_the_database_url_nor_the_password() {
    let fixture =
        Fixture::new(&config("notify_command = [\"sh\", \"-c\", \"env > TMPDIR/notifier.env\"]\n", ""), NOW);
    fixture.enqueue("docs", &[("bad".into(), json!({ "steps": [{ "exit": 4 }] }))]);
    drain_with_credentials_in_the_environment(&fixture).assert_code(0);
    let seen = std::fs::read_to_string(fixture.path("notifier.env")).expect("the notifier ran");
    assert!(seen.contains("PATH="), "the notifier printed its environment: {seen}");
    assert!(!seen.contains(&fixture.db.password()), "the password reached the notifier: {seen}");
    for name in ["DATABASE_URL=", "DRAINCTL_DATABASE_URL=", "PGPASSWORD="] {
        assert!(!seen.lines().any(|line| line.starts_with(name)), "{name} reached the notifier: {seen}");
    }
}
