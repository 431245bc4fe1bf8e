//! One real `drain` per real client: `claude`, `codex` and `gemini`, installed from the npm
//! registry by scripts/real-clients, run as the worker against its mock API on 127.0.0.1
//! (scripts/real-clients-mock.py). One item succeeds; the next meets a 429 that states a
//! reset and is recorded as a quota hit with that reset.
//!
//! scripts/real-clients runs these tests with the clients installed, the mock started and
//! no network but loopback, and tells them where through `DRAINCTL_REAL_CLIENTS` (the
//! install folder), `DRAINCTL_REAL_CLIENTS_MOCK` (the mock's URL) and
//! `DRAINCTL_REAL_CLIENTS_MOCK_LOG` (its request log). Without them each test is skipped
//! with the reason.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::support::*;

struct Kit {
    clients: PathBuf,
    mock: String,
    mock_log: PathBuf,
}

fn kit(client: &str) -> Option<Kit> {
    let (Some(clients), Some(mock), Some(mock_log)) = (
        std::env::var_os("DRAINCTL_REAL_CLIENTS"),
        std::env::var("DRAINCTL_REAL_CLIENTS_MOCK").ok(),
        std::env::var_os("DRAINCTL_REAL_CLIENTS_MOCK_LOG"),
    ) else {
        eprintln!("real {client} test SKIPPED: the real clients are not installed here (scripts/real-clients installs them and runs this test)");
        return None;
    };
    let clients = PathBuf::from(clients);
    if !clients.join("node_modules/.bin").join(client).exists() {
        eprintln!("real {client} test SKIPPED: {client} is not installed in {}", clients.display());
        return None;
    }
    Some(Kit { clients, mock, mock_log: PathBuf::from(mock_log) })
}

/// The worker's command and environment, as scripts/real-clients-capture.py sets them up.
fn worker(
    kit: &Kit,
    client: &str,
    scenario: &str,
    home: &Path,
    run: &str,
) -> (Vec<String>, Vec<(String, String)>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/real-clients-capture.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .args(["--worker", kit.clients.to_str().unwrap(), client, "text", scenario])
        .args([home.to_str().unwrap(), &kit.mock, run])
        .output()
        .expect("run python3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let spec: Value = serde_json::from_slice(&output.stdout).unwrap();
    let command =
        spec["command"].as_array().unwrap().iter().map(|arg| arg.as_str().unwrap().to_string()).collect();
    let env = spec["env"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_string()))
        .collect();
    (command, env)
}

/// A TOML basic string (a JSON string of these characters is one).
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// The reset the mock announced to `run`'s rate-limited request.
fn announced_reset(kit: &Kit, run: &str) -> DateTime<Utc> {
    let log = std::fs::read_to_string(&kit.mock_log).unwrap();
    let reset = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry["run"] == run && entry["status"] == 429)
        .find_map(|entry| entry["reset"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("the mock announced no reset to {run}:\n{log}"));
    reset.parse().unwrap()
}

/// A fixture whose drain `real` runs `client` against the mock's `e2e-<scenario>`: a
/// request that carries the word RATE-LIMITED meets `scenario`, any other succeeds.
fn real_client_drain(kit: &Kit, client: &str, profile: &str, scenario: &str, run: &str) -> Fixture {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let fixture = Fixture::new("", &now);
    let (command, env) = worker(kit, client, &format!("e2e-{scenario}"), &fixture.path("home"), run);
    let command: Vec<String> = command.iter().map(|arg| toml_string(arg)).collect();
    let env: Vec<String> =
        env.iter().map(|(key, value)| format!("{} = {}", toml_string(key), toml_string(value))).collect();
    // Written as is: `write_config` would take the worker's `TMPDIR` for its placeholder.
    std::fs::write(&fixture.config_path, format!(
        "[defaults]\ntimezone = \"UTC\"\n\n[[drain]]\nname = \"real\"\ncommand = [{}]\nquota_group = \"{client}\"\n\
         quota_profile = \"{profile}\"\nmax_wait = \"0s\"\nitem_timeout = \"120s\"\nmax_attempts = 3\n\
         workdir = {}\nenv = {{ {} }}\n",
        command.join(", "),
        toml_string(fixture.dir.path().to_str().unwrap()),
        env.join(", "),
    ))
    .unwrap();
    fixture
}

/// A real `drain` of two items with `client` as the worker: the first succeeds, the second
/// meets `limit` (a mock scenario whose 429 states a reset).
fn drain_with_real_client(client: &str, profile: &str, limit: &str) {
    let Some(kit) = kit(client) else { return };
    let run = format!("e2e-{client}-{}", std::process::id());
    let fixture = real_client_drain(&kit, client, profile, limit, &run);
    fixture.enqueue(
        "real",
        &[
            ("a-ok".into(), json!({ "ticket": "The export button does nothing." })),
            ("b-limited".into(), json!({ "ticket": "RATE-LIMITED" })),
        ],
    );
    let result = fixture.drainctl(&["drain", "real", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "rate_limited", "{}\n{}", result.stdout, result.stderr);
    assert_eq!(fixture.item("real", "a-ok").0, "done", "{}", result.stderr);
    let (state, attempts, _) = fixture.item("real", "b-limited");
    assert_eq!((state.as_str(), attempts), ("pending", 0), "the quota hit is refunded");
    let outcomes: Vec<String> = fixture.column("SELECT outcome FROM attempts ORDER BY id");
    assert_eq!(outcomes, ["done", "quota_hit"]);
    let recorded: Vec<String> = fixture.column(
        "SELECT to_char(reset_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM quota_backoffs",
    );
    let recorded: DateTime<Utc> = recorded.first().expect("a backoff row").parse().unwrap();
    let announced = announced_reset(&kit, &run);
    // Relative resets are counted from drainctl's clock, a few seconds before the mock's.
    let apart = (recorded - announced).num_seconds().abs();
    assert!(apart <= 60, "recorded reset {recorded}, the mock announced {announced}");
}

#[test]
fn a_real_claude_drain_succeeds_then_records_the_session_limit_and_its_reset() {
    drain_with_real_client("claude", "claude", "subscription-limit");
}

#[test]
fn a_real_codex_drain_succeeds_then_records_the_usage_limit_and_its_reset() {
    drain_with_real_client("codex", "openai", "subscription-limit");
}

#[test]
fn a_real_gemini_drain_succeeds_then_records_the_daily_quota_and_its_reset() {
    drain_with_real_client("gemini", "gemini", "subscription-limit");
}

/// A real `drain` of three items with `client` as the worker: the first succeeds, the
/// second meets an API that refuses the key. The group is parked; neither that item nor
/// the third uses an attempt, and no worker is started for the third.
fn refused_key_parks_the_group(client: &str, profile: &str) {
    let Some(kit) = kit(client) else { return };
    let run = format!("e2e-{client}-refused-{}", std::process::id());
    let fixture = real_client_drain(&kit, client, profile, "auth-invalid", &run);
    fixture.enqueue(
        "real",
        &[
            ("a-ok".into(), json!({ "ticket": "The export button does nothing." })),
            ("b-refused".into(), json!({ "ticket": "RATE-LIMITED" })),
            ("c-untouched".into(), json!({ "ticket": "The import button does nothing." })),
        ],
    );
    let result = fixture.drainctl(&["drain", "real", "--json"]).run();
    result.assert_code(0);
    assert_eq!(result.json()["status"], "rate_limited", "{}\n{}", result.stdout, result.stderr);
    let note = result.json()["note"].as_str().unwrap_or_default().to_string();
    assert!(note.contains("resume --group"), "{note}");
    assert_eq!(fixture.item("real", "a-ok").0, "done", "{}", result.stderr);
    for key in ["b-refused", "c-untouched"] {
        let (state, attempts, _) = fixture.item("real", key);
        assert_eq!((state.as_str(), attempts), ("pending", 0), "{key}: a refused key uses no attempt");
    }
    let outcomes: Vec<String> = fixture.column("SELECT outcome FROM attempts ORDER BY id");
    assert_eq!(outcomes, ["done", "quota_hit"], "no worker for the third item");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'group_parked'"), 1);
    let status = fixture.drainctl(&["status", "--json"]).run().json();
    assert_eq!(status["drains"][0]["state"], "parked", "{status}");
}

#[test]
fn a_real_claude_drain_parks_its_group_when_the_key_is_refused() {
    refused_key_parks_the_group("claude", "claude");
}

#[test]
fn a_real_codex_drain_parks_its_group_when_the_key_is_refused() {
    refused_key_parks_the_group("codex", "openai");
}

#[test]
fn a_real_gemini_drain_parks_its_group_when_the_key_is_refused() {
    refused_key_parks_the_group("gemini", "gemini");
}
