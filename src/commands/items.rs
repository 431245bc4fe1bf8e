//! `drainctl items NAME` and `drainctl items show NAME KEY`: a drain's backlog as stored.
//!
//! The list shows each item's state, attempts and when it is next available; `show` shows
//! one item whole: its payload, last error, the kept end of the worker's stderr, its result
//! and every attempt from the `attempts` table. Worker output is bytes: humans see it as
//! lossy UTF-8 with control characters made visible and long results cut; `--json` carries
//! the whole result, as a string when it is valid UTF-8 and as base64 otherwise.

use base64::Engine;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::cli::{ItemsArgs, ItemsCommand, ItemsShowArgs};
use crate::context::Context;
use crate::db::items::{
    count_by_state, get_item, list_attempts, list_items, AttemptRow, ItemDetail, ItemRow,
};
use crate::db::usage::{usage_of_item, UsageSums};
use crate::duration::format_duration;
use crate::error::{Error, Result};
use crate::model::ItemState;
use crate::output::{escape_lines, fields, instant_and_age, local_minute, relative, table, Report};

/// How much of the payload (pretty JSON) `items show` prints for humans.
pub const HUMAN_PAYLOAD_CHARS: usize = 2000;
/// How much of a result `items show` prints for humans.
pub const HUMAN_RESULT_CHARS: usize = 2000;
/// How much of the end of the kept stderr `items show` prints for humans.
pub const HUMAN_STDERR_CHARS: usize = 2000;

pub fn run(ctx: &mut Context, args: &ItemsArgs) -> Result<Report> {
    match &args.command {
        Some(ItemsCommand::Show(show_args)) => show(ctx, show_args),
        None => list(ctx, args),
    }
}

fn list(ctx: &mut Context, args: &ItemsArgs) -> Result<Report> {
    let name = args.name.as_deref().ok_or_else(|| Error::Usage("items: give a drain name".into()))?;
    let drain = ctx.known_drain(name)?;
    let now = ctx.clock.now();
    let state = args.state;
    let counts = count_by_state(&mut ctx.client, &drain)?;
    let items = list_items(&mut ctx.client, &drain, state, args.limit)?;
    let mut human = format!(
        "{drain}: {} pending, {} running, {} done, {} dead",
        counts.pending, counts.running, counts.done, counts.dead
    );
    if counts.skipped_missing > 0 {
        human.push_str(&format!(", {} skipped (file missing)", counts.skipped_missing));
    }
    human.push('\n');
    if items.is_empty() {
        human.push_str(&match state {
            Some(state) => format!("no {state} items\n"),
            None => "no items\n".to_string(),
        });
    } else {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|item| {
                vec![
                    item.key.clone(),
                    item.state.to_string(),
                    item.attempts.to_string(),
                    availability(item, now),
                    relative(item.updated_at, now),
                    item.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        human.push_str(&table(&["KEY", "STATE", "ATTEMPTS", "AVAILABLE", "UPDATED", "LAST ERROR"], &rows));
    }
    Ok(Report::new(human, json!({ "drain": drain, "counts": counts, "items": items })))
}

/// When a pending item may be claimed: `now` once it is due, else `in 4m`.
fn availability(item: &ItemRow, now: DateTime<Utc>) -> String {
    match item.state {
        ItemState::Pending if item.available_at <= now => "now".to_string(),
        ItemState::Pending => relative(item.available_at, now),
        _ => "-".to_string(),
    }
}

fn show(ctx: &mut Context, args: &ItemsShowArgs) -> Result<Report> {
    let shown = gather(ctx, args)?;
    let now = ctx.clock.now();
    let zone = ctx.config.defaults.timezone;
    let mut human = render_fields(&shown, now, zone);
    human.push_str(&render_output(&shown.item));
    human.push_str(&render_attempts(&shown.attempts, zone));
    Ok(Report::new(human, render_json(&shown)))
}

/// One item whole, as `items show` reads it.
struct ShownItem {
    drain: String,
    item: ItemDetail,
    attempts: Vec<AttemptRow>,
    /// What its attempts' workers reported they used.
    usage: UsageSums,
    /// `None` when the drain has left the configuration.
    max_attempts: Option<u32>,
}

fn gather(ctx: &mut Context, args: &ItemsShowArgs) -> Result<ShownItem> {
    let drain = ctx.known_drain(&args.name)?;
    let item = get_item(&mut ctx.client, &drain, &args.key)?.ok_or_else(|| {
        Error::Data(format!(
            "drain {drain} has no item with key {:?}; `{}` lists them",
            args.key,
            listing_command(&drain)
        ))
    })?;
    let attempts = list_attempts(&mut ctx.client, item.row.id)?;
    let usage = usage_of_item(&mut ctx.client, item.row.id)?;
    let max_attempts = ctx.config.drain(&drain).ok().map(|d| d.max_attempts);
    Ok(ShownItem { drain, item, attempts, usage, max_attempts })
}

/// The item's state and times, one field a line, ending with its last error.
fn render_fields(shown: &ShownItem, now: DateTime<Utc>, zone: Tz) -> String {
    let ShownItem { drain, item, max_attempts, .. } = shown;
    let row = &item.row;
    let mut pairs: Vec<(&str, String)> = vec![
        ("item", format!("{} (id {}) of drain {drain}", row.key, row.id)),
        ("state", row.state.to_string()),
        (
            "attempts",
            match max_attempts {
                Some(max) => format!("{} of max_attempts {max}", row.attempts),
                None => row.attempts.to_string(),
            },
        ),
        (
            "available",
            if row.state == ItemState::Pending {
                instant_and_age(Some(row.available_at), now, zone)
            } else {
                "-".into()
            },
        ),
        ("enqueued", instant_and_age(Some(row.enqueued_at), now, zone)),
        ("updated", instant_and_age(Some(row.updated_at), now, zone)),
        ("finished", instant_and_age(row.finished_at, now, zone)),
    ];
    if row.state == ItemState::Running {
        if let Some(run_id) = row.claimed_by {
            pairs.push((
                "claimed by",
                format!("run {run_id} ({})", instant_and_age(item.claimed_at, now, zone)),
            ));
        }
    }
    // Only what the workers reported: an item whose workers reported nothing shows nothing.
    if let Some(text) = shown.usage.describe() {
        pairs.push(("usage", text));
    }
    pairs.push(("last error", row.last_error.clone().unwrap_or_else(|| "-".into())));
    fields(&pairs)
}

/// The payload, the end of the kept stderr and the result, each cut for a terminal.
fn render_output(item: &ItemDetail) -> String {
    let mut human = String::new();
    let payload = serde_json::to_string_pretty(&item.payload).unwrap_or_else(|_| item.payload.to_string());
    // Escaped as JSON, not as text: the payload shown still parses.
    let payload = crate::output::escape_json_text(&payload);
    let (payload, note) = first_chars(&payload, HUMAN_PAYLOAD_CHARS);
    human.push_str(&format!("\npayload{note}\n"));
    human.push_str(&indent(&payload));

    if let Some(stderr) = item.stderr_tail.as_deref().filter(|bytes| !bytes.is_empty()) {
        let text = escape_lines(&String::from_utf8_lossy(stderr));
        let shown = last_chars(&text, HUMAN_STDERR_CHARS);
        let note = if shown.len() < text.len() {
            format!(" (its last {HUMAN_STDERR_CHARS} characters; --json has all)")
        } else {
            String::new()
        };
        // Kept from the last attempt that failed: on a done item, an earlier one's.
        human.push_str(&format!("\nstderr tail of the last failed attempt, {} bytes{note}\n", stderr.len()));
        human.push_str(&indent(shown));
    }

    match item.result.as_deref() {
        Some(result) => {
            let (shown, note) =
                first_chars(&escape_lines(&String::from_utf8_lossy(result)), HUMAN_RESULT_CHARS);
            human.push_str(&format!("\nresult, {} bytes{note}\n", result.len()));
            human.push_str(&indent(&shown));
        }
        None => human.push_str("\nresult: none\n"),
    }
    human
}

/// Every attempt of the item, as an indented table.
fn render_attempts(attempts: &[AttemptRow], zone: Tz) -> String {
    let mut human = String::new();
    human.push_str("\nattempts\n");
    if attempts.is_empty() {
        human.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = attempts
            .iter()
            .map(|attempt| {
                vec![
                    attempt.attempt.to_string(),
                    attempt.run_id.to_string(),
                    local_minute(attempt.started_at, zone),
                    match attempt.finished_at {
                        Some(finished) => {
                            format_duration((finished - attempt.started_at).to_std().unwrap_or_default())
                        }
                        None => "-".into(),
                    },
                    attempt.outcome.clone().unwrap_or_else(|| "(open)".into()),
                    attempt.exit_code.map(|code| code.to_string()).unwrap_or_else(|| "-".into()),
                    attempt.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        human.push_str(&indent(&table(&["#", "RUN", "STARTED", "TOOK", "OUTCOME", "EXIT", "ERROR"], &rows)));
    }
    human
}

/// The item whole as JSON: the result exact, as UTF-8 text or base64.
fn render_json(shown: &ShownItem) -> Value {
    let ShownItem { drain, item, attempts, usage, max_attempts } = shown;
    let row = &item.row;
    let (result_encoding, result_text) = match item.result.as_deref() {
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Value::from("utf-8"), Value::from(text)),
            Err(_) => {
                (Value::from("base64"), Value::from(base64::engine::general_purpose::STANDARD.encode(bytes)))
            }
        },
        None => (Value::Null, Value::Null),
    };
    json!({
        "drain": drain,
        "id": row.id,
        "key": row.key,
        "state": row.state,
        "attempts": row.attempts,
        "max_attempts": max_attempts,
        "available_at": row.available_at,
        "claimed_by": row.claimed_by,
        "claimed_at": item.claimed_at,
        "enqueued_at": row.enqueued_at,
        "updated_at": row.updated_at,
        "finished_at": row.finished_at,
        "last_error": row.last_error,
        "payload": item.payload,
        "stderr_tail": item.stderr_tail.as_deref().map(|bytes| String::from_utf8_lossy(bytes).into_owned()),
        "result_bytes": item.result.as_ref().map(Vec::len),
        "result_encoding": result_encoding,
        "result": result_text,
        "attempt_history": attempts,
        "usage": usage.to_json(),
    })
}

/// Every line indented by two spaces.
fn indent(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The first `count` characters of `text`, and a note for the heading when it was cut.
fn first_chars(text: &str, count: usize) -> (String, String) {
    if text.chars().count() <= count {
        return (text.to_string(), String::new());
    }
    let head: String = text.chars().take(count).collect();
    (head, format!(" (its first {count} characters; --json has all)"))
}

/// The last `count` characters of `text`.
fn last_chars(text: &str, count: usize) -> &str {
    let total = text.chars().count();
    if total <= count {
        return text;
    }
    let start = text.char_indices().nth(total - count).map(|(index, _)| index).unwrap_or(0);
    &text[start..]
}

/// The command that lists a drain's items: `drainctl items NAME`, and `drainctl items --
/// show` for a drain named `show`, which `items show` would take for its subcommand (and
/// a name that starts with `-` after `--` too: see [`drain_argument`]).
pub fn listing_command(drain: &str) -> String {
    if drain == "show" {
        "drainctl items -- show".to_string()
    } else {
        format!("drainctl items {}", drain_argument(drain))
    }
}

/// `command` for `drain` with `options`, as told to the operator: `drainctl scan docs
/// --no-budget`, or `drainctl scan --no-budget -- -x` for a name that starts with `-`
/// (after `--` no option is looked for, so the options come before it).
pub fn command_for_drain(command: &str, drain: &str, options: &str) -> String {
    match (drain.starts_with('-'), options.is_empty()) {
        (false, true) => format!("{command} {drain}"),
        (false, false) => format!("{command} {drain} {options}"),
        (true, true) => format!("{command} -- {drain}"),
        (true, false) => format!("{command} {options} -- {drain}"),
    }
}

/// `--group NAME` as told to the operator: `--group=-g` for a name that starts with `-`,
/// which would be read as an option after a space.
pub fn group_option(group: &str) -> String {
    match group.starts_with('-') {
        true => format!("--group={group}"),
        false => format!("--group {group}"),
    }
}

/// A drain's name as the last argument of a command told to the operator: after `--` when
/// it starts with `-`, where no option is looked for.
pub fn drain_argument(drain: &str) -> String {
    if drain.starts_with('-') {
        format!("-- {drain}")
    } else {
        drain.to_string()
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_chars_respects_character_boundaries() {
        assert_eq!(last_chars("αβγδ", 2), "γδ");
        assert_eq!(last_chars("ab", 5), "ab");
    }
}
