//! Every captured output of a real client (tests/fixtures/real-clients/, described in
//! its README and in docs/rate-limits.md) fed through the classifier, and its verdict
//! checked against what the vendor meant.

use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::{client_wait_hit, Classifier, Outcome, Profile, StreamWaits};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    client: String,
    version: String,
    mode: String,
    /// Absent when drainctl stopped the client while it announced a wait.
    exit_code: Option<i32>,
    now: DateTime<Utc>,
    zone: String,
    expect: String,
    reset: Option<DateTime<Utc>>,
    announced_wait: Option<String>,
}

fn profile_of(client: &str) -> Profile {
    match client {
        "Claude Code" => Profile::Claude,
        "codex-cli" => Profile::OpenAi,
        "gemini-cli" => Profile::Gemini,
        other => panic!("unknown client {other:?} in a fixture"),
    }
}

/// The verdict for one fixture, as the drain would reach it: `None` when it matches.
fn mismatch(dir: &Path) -> Option<String> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let meta: Meta = toml::from_str(&std::fs::read_to_string(dir.join("meta.toml")).unwrap())
        .unwrap_or_else(|error| panic!("{name}/meta.toml: {error}"));
    assert!(!meta.version.is_empty() && !meta.mode.is_empty(), "{name}: client version and mode");
    let stdout = std::fs::read(dir.join("stdout")).unwrap();
    let stderr = std::fs::read(dir.join("stderr")).unwrap();
    let zone: Tz = meta.zone.parse().unwrap();
    let classifier = Classifier::new(profile_of(&meta.client), &[], &[]);
    let mut outcome = classifier.classify(&stdout, &stderr, meta.exit_code, meta.now, zone);
    if let Some(line) = &meta.announced_wait {
        // The worker was stopped on the line announcing the wait: each stream read as a
        // running client's is (its stdout for events only).
        let streams =
            [String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned()];
        let (line, wait) = streams
            .iter()
            .zip(StreamWaits::of_client(b""))
            .find_map(|(text, mut reader)| {
                text.lines().find_map(|candidate| {
                    reader
                        .read(candidate)
                        .filter(|_| candidate.contains(line.as_str()))
                        .map(|wait| (candidate.to_string(), wait))
                })
            })
            .unwrap_or_else(|| panic!("{name}: no line announces {line:?}"));
        assert!(wait > crate::worker::MAX_CLIENT_WAIT, "{name}: a wait the worker sits through");
        outcome = Outcome::QuotaHit(client_wait_hit(outcome, &line, wait, meta.now, zone));
    }
    let matches = match (meta.expect.as_str(), &outcome) {
        // A client that drops the reset leaves a hit without one (the fallback backoff).
        ("quota_hit", Outcome::QuotaHit(hit)) => hit.reset_at() == meta.reset && !hit.needs_attention,
        ("needs_attention", Outcome::QuotaHit(hit)) => hit.needs_attention,
        ("server_error", Outcome::ServerError { .. }) => true,
        ("success", Outcome::Other) => meta.exit_code == Some(0),
        ("failure", Outcome::Other) => meta.exit_code != Some(0),
        ("failure", Outcome::NoAnswer { .. }) => meta.exit_code == Some(0),
        _ => false,
    };
    (!matches).then(|| {
        format!("{name} ({} {}): expected {}, got {outcome:?}", meta.client, meta.version, meta.expect)
    })
}

#[test]
fn every_real_client_fixture_is_classified_as_the_vendor_meant() {
    let all = crate::fixtures::folders("real-clients");
    assert!(all.len() >= 18, "only {} fixtures", all.len());
    let failures: Vec<String> = all.iter().filter_map(|dir| mismatch(dir)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_hit_is_shown_by_the_vendors_message_not_its_error_body() {
    // What a park note, a backoff's reason and a notification show. Before, gemini-cli's
    // JSON mode gave `"message": "{"error":{"code":400,"message":"API key not valid…`.
    let mut shown = Vec::new();
    for dir in crate::fixtures::folders("real-clients") {
        let meta: Meta = toml::from_str(&std::fs::read_to_string(dir.join("meta.toml")).unwrap()).unwrap();
        let (stdout, stderr) =
            (std::fs::read(dir.join("stdout")).unwrap(), std::fs::read(dir.join("stderr")).unwrap());
        let classifier = Classifier::new(profile_of(&meta.client), &[], &[]);
        let zone: Tz = meta.zone.parse().unwrap();
        if let Outcome::QuotaHit(hit) = classifier.classify(&stdout, &stderr, meta.exit_code, meta.now, zone)
        {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            shown.push((name, hit.matched_line));
        }
    }
    let bodies: Vec<&(String, String)> = shown
        .iter()
        .filter(|(_, line)| line.contains("{\"error\":") || line.starts_with("\"message\""))
        .collect();
    assert!(bodies.is_empty(), "{bodies:#?}");
    let auth =
        shown.iter().find(|(name, _)| name == "gemini-json-auth-invalid").map(|(_, line)| line.as_str());
    assert_eq!(auth, Some("400 INVALID_ARGUMENT: API key not valid. Please pass a valid API key."));
}
