//! Operator-facing output of every command: shell completions, the command reference
//! generated from the clap definitions, and the JSON fields documented in docs/json.md.

use std::path::Path;

use serde_json::Value;

use crate::support::*;

/// 10:00 UTC is 12:00 in Asia/Jerusalem in November (IST, UTC+2).
const NOW: &str = "2026-11-27T10:00:00Z";

fn config(defaults: &str, drain: &str) -> String {
    format!(
        "[defaults]\ntimezone = \"Asia/Jerusalem\"\nkill_grace = \"1s\"\nlog_dir = \"TMPDIR/logs\"\n{defaults}\n\
         [[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\nmax_attempts = 1\n{drain}"
    )
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
fn assert_documented(heading: &str, value: &Value) {
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
         DRAINCTL_UPDATE_DOCS=1 cargo test --test integration cli_reference"
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
    assert_documented("drainctl resume", &resume.json());
}
