//! `drainctl enqueue NAME`: add items to a drain's backlog, one (`--key --payload`) or
//! many (JSON lines on stdin or `--file`). A batch is all or nothing: a malformed line is
//! reported with its line number and nothing of that batch is inserted.

use std::io::{BufRead, BufReader};

use serde_json::{json, Value};

use crate::cli::EnqueueArgs;
use crate::context::Context;
use crate::db::events::{record_event, Event};
use crate::db::items::{insert_items, NewItem};
use crate::db::{drains::ensure_drain, in_transaction};
use crate::error::{Error, Result};
use crate::output::Report;

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 1024;

pub fn run(ctx: &mut Context, args: &EnqueueArgs) -> Result<Report> {
    let drain = ctx.config.drain(&args.name)?.name.clone();
    let items = match (&args.key, &args.payload) {
        (Some(key), Some(payload)) => {
            let payload: Value = serde_json::from_str(payload)
                .map_err(|error| Error::Data(format!("--payload is not valid JSON: {error}")))?;
            vec![NewItem { key: check_key(key, None)?, payload }]
        }
        _ => match &args.file {
            Some(path) => {
                let file = std::fs::File::open(path)
                    .map_err(|error| Error::Data(format!("cannot read {}: {error}", path.display())))?;
                parse_lines(BufReader::new(file), &path.display().to_string())?
            }
            None => parse_lines(BufReader::new(std::io::stdin().lock()), "stdin")?,
        },
    };
    let now = ctx.clock.now();
    let counts = in_transaction(&mut ctx.client, |tx| {
        ensure_drain(tx, &drain, now)?;
        let counts = insert_items(tx, &drain, &items, args.replace, now)?;
        if counts.added + counts.replaced > 0 {
            let event = Event::new(
                "items_enqueued",
                format!(
                    "enqueued {} new, {} replaced, {} duplicate",
                    counts.added, counts.replaced, counts.duplicates
                ),
            )
            .drain(&drain)
            .data(json!(counts));
            record_event(tx, &event, now)?;
        }
        Ok(counts)
    })?;
    let human = format!(
        "{drain}: {} added, {} duplicate{}{}",
        counts.added,
        counts.duplicates,
        if counts.duplicates == 1 { "" } else { "s" },
        if args.replace { format!(", {} replaced", counts.replaced) } else { String::new() }
    );
    Ok(Report::new(
        human,
        json!({ "drain": drain, "added": counts.added, "duplicates": counts.duplicates, "replaced": counts.replaced }),
    ))
}

fn check_key(key: &str, line: Option<(&str, usize)>) -> Result<String> {
    let problem = if key.is_empty() {
        Some("key is empty".to_string())
    } else if key.len() > MAX_KEY_BYTES {
        Some(format!("key is longer than {MAX_KEY_BYTES} bytes"))
    } else if key.chars().any(char::is_control) {
        Some("key contains control characters".to_string())
    } else {
        None
    };
    match (problem, line) {
        (None, _) => Ok(key.to_string()),
        (Some(problem), Some((source, number))) => {
            Err(Error::Data(format!("{source}:{number}: {problem}; nothing was enqueued")))
        }
        (Some(problem), None) => Err(Error::Data(format!("--key: {problem}"))),
    }
}

/// Parse JSON lines `{"key": "...", "payload": ...}`; blank lines are skipped. The key may
/// be a string or an integer. Any bad line fails the whole batch with its line number.
pub fn parse_lines(reader: impl BufRead, source: &str) -> Result<Vec<NewItem>> {
    let mut items = Vec::new();
    for (index, line) in reader.split(b'\n').enumerate() {
        let number = index + 1;
        let bad =
            |problem: String| Error::Data(format!("{source}:{number}: {problem}; nothing was enqueued"));
        let line = line.map_err(|error| bad(format!("cannot read: {error}")))?;
        let line = String::from_utf8(line).map_err(|_| bad("not valid UTF-8".to_string()))?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).map_err(|error| bad(format!("invalid JSON: {error}")))?;
        let Value::Object(mut object) = value else {
            return Err(bad("expected an object {\"key\": ..., \"payload\": ...}".to_string()));
        };
        let key = match object.remove("key") {
            Some(Value::String(key)) => key,
            Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
            Some(_) => return Err(bad("\"key\" must be a string or an integer".to_string())),
            None => return Err(bad("missing \"key\"".to_string())),
        };
        let key = check_key(&key, Some((source, number)))?;
        let payload = object.remove("payload").ok_or_else(|| bad("missing \"payload\"".to_string()))?;
        if let Some(extra) = object.keys().next() {
            return Err(bad(format!("unknown field {extra:?}; a line has only \"key\" and \"payload\"")));
        }
        // A key repeated within one batch: the first wins, the rest count as duplicates.
        items.push(NewItem { key, payload });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_string_or_integer_keys() {
        let text = "{\"key\": \"a\", \"payload\": {\"x\": 1}}\n\n{\"key\": 7, \"payload\": \"s\"}\n";
        let items = parse_lines(text.as_bytes(), "stdin").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].key, "7");
    }

    #[test]
    fn a_bad_line_names_its_number() {
        for (text, expected) in [
            ("{\"key\": \"a\", \"payload\": 1}\n{\"key\": \"b\", \"payload\": \n", "stdin:2: invalid JSON"),
            ("{\"key\": \"a\"}\n", "stdin:1: missing \"payload\""),
            ("[1]\n", "stdin:1: expected an object"),
            ("{\"key\": \"\", \"payload\": 1}\n", "stdin:1: key is empty"),
            ("{\"key\": \"a\", \"payload\": 1, \"x\": 2}\n", "stdin:1: unknown field \"x\""),
        ] {
            let error = parse_lines(text.as_bytes(), "stdin").unwrap_err();
            assert_eq!(error.exit_code(), 65);
            assert!(error.to_string().starts_with(expected), "{error}");
        }
    }
}
