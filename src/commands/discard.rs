//! `drainctl discard NAME (--key K | --dead | --all) [--dry-run]`: delete items an operator
//! wants gone, with their attempts and results (docs/operations.md, "Discarding items").
//!
//! `--key K` one item in any state, `--dead` every dead letter, `--all` every item — for a
//! drain being retired, whose table may already have left the configuration. An item a
//! run still running holds is left alone and named. One `items_discarded` event records
//! the count by state and the keys (the first 100), in the same transaction.

use std::collections::BTreeMap;

use serde_json::json;

use crate::cli::DiscardArgs;
use crate::context::Context;
use crate::db::discard::{discard_items, Discarded, SelectedItem, Selection};
use crate::db::events::{record_event, Event};
use crate::db::in_transaction_retrying;
use crate::error::{Error, Result};
use crate::model::EventKind;
use crate::output::{counted, Report};

/// The command that discards every item of `drain`, as it can be pasted: a name that
/// starts with `-` goes after `--`, where no option is looked for.
pub fn discard_all_command(drain: &str) -> String {
    if drain.starts_with('-') {
        format!("drainctl discard --all {}", super::items::drain_argument(drain))
    } else {
        format!("drainctl discard {drain} --all")
    }
}

/// Keys listed in one `items_discarded` event, and items listed in the JSON output; the
/// counts are always complete.
pub const LISTED_LIMIT: usize = 100;

pub fn run(ctx: &mut Context, args: &DiscardArgs) -> Result<Report> {
    // A drain that left the configuration is the usual one to clear.
    let drain = ctx.known_drain(&args.name)?;
    let selection = match (&args.key, args.all) {
        (Some(key), _) => Selection::Key(key),
        (None, true) => Selection::All,
        (None, false) => Selection::Dead,
    };
    let now = ctx.clock.now();
    let (budget_day_start, _) = crate::usage::budget_day(now, ctx.config.defaults.timezone);
    let gave_up = "no item was discarded; it is safe to run the same discard again";
    let found = in_transaction_retrying(&mut ctx.client, gave_up, |tx| {
        let found = discard_items(tx, &drain, selection, args.dry_run, budget_day_start)?;
        if let (Selection::Key(key), true) = (selection, found.items.is_empty() && found.held.is_empty()) {
            return Err(Error::Data(format!(
                "drain {drain} has no item with key {key:?}; `{}` lists them",
                super::items::listing_command(&drain)
            )));
        }
        if !args.dry_run && !found.items.is_empty() {
            record_event(
                tx,
                &ctx.outbox,
                &discarded_event(&drain, &found, selection, budget_day_start),
                now,
            )?;
        }
        Ok(found)
    })?;
    let mut said = human(&drain, &found, selection, args.dry_run);
    if args.dry_run && ctx.schema_created {
        said = format!("dry run: nothing was changed {}\n{said}", crate::context::BUT_THE_SCHEMA);
    }
    Ok(Report::new(
        said,
        json!({
            "drain": drain,
            "dry_run": args.dry_run,
            "discarded": found.items.len(),
            "by_state": by_state(&found.items),
            "items": found.items.iter().take(LISTED_LIMIT).collect::<Vec<_>>(),
            "items_truncated": found.items.len() > LISTED_LIMIT,
            "held": found.held.iter().take(LISTED_LIMIT).collect::<Vec<_>>(),
            "held_count": found.held.len(),
        }),
    ))
}

/// How many items of each state (`{"dead": 2, "pending": 1}`).
fn by_state(items: &[SelectedItem]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item.state.to_string()).or_insert(0) += 1;
    }
    counts
}

fn human(drain: &str, found: &Discarded, selection: Selection<'_>, dry_run: bool) -> String {
    let verb = if dry_run { "would be discarded" } else { "discarded" };
    let held = match found.held.as_slice() {
        [] => String::new(),
        held => {
            let mut runs: Vec<i64> = held.iter().filter_map(|item| item.run_id).collect();
            runs.sort_unstable();
            runs.dedup();
            let runs: Vec<String> = runs.iter().map(i64::to_string).collect();
            format!(
                "; {} left alone: run {} recorded as running {} ({} first, so that no pass takes \
                 {} again; then let the pass end — one that died is reaped by the next `drainctl \
                 supervise` — and discard again)",
                counted(held.len() as i64, "running item"),
                runs.join(", run "),
                if held.len() == 1 { "holds it" } else { "holds them" },
                format_args!("`drainctl pause {}`", super::items::drain_argument(drain)),
                if held.len() == 1 { "it" } else { "them" }
            )
        }
    };
    match (selection, found.items.as_slice()) {
        (Selection::Key(key), []) => format!("{drain}: item {key:?} is running, not discarded{held}"),
        (Selection::Key(key), [only]) => {
            format!("{drain}: item {key:?} ({}) {verb}, with its attempts and result", only.state)
        }
        (Selection::Dead, []) if found.held.is_empty() => format!("{drain}: no dead items"),
        (Selection::All, []) if found.held.is_empty() => format!("{drain}: no items"),
        (_, items) => {
            let states: Vec<String> =
                by_state(items).iter().map(|(state, n)| format!("{n} {state}")).collect();
            let states = if states.is_empty() { String::new() } else { format!(" ({})", states.join(", ")) };
            // A dry run names them (docs/operations.md), the first LISTED_LIMIT.
            let named = match dry_run {
                true if items.is_empty() => String::new(),
                true => {
                    let keys: Vec<String> =
                        items.iter().take(LISTED_LIMIT).map(|item| format!("{:?}", item.key)).collect();
                    let more = items.len().saturating_sub(LISTED_LIMIT);
                    let more = if more > 0 { format!(" and {more} more") } else { String::new() };
                    format!(": {}{more}", keys.join(", "))
                }
                false => String::new(),
            };
            format!(
                "{drain}: {} {verb}{states}, with their attempts and results{named}{held}",
                counted(items.len() as i64, "item")
            )
        }
    }
}

fn discarded_event(
    drain: &str,
    found: &Discarded,
    selection: Selection<'_>,
    budget_day_start: chrono::DateTime<chrono::Utc>,
) -> Event {
    let keys: Vec<&str> = found.items.iter().take(LISTED_LIMIT).map(|item| item.key.as_str()).collect();
    let message = match (selection, found.items.as_slice()) {
        (Selection::Key(_), [only]) => {
            format!("item {} discarded by the operator (was {})", only.key, only.state)
        }
        (_, items) => format!("{} discarded by the operator", counted(items.len() as i64, "item")),
    };
    let mut event = Event::new(EventKind::ItemsDiscarded, message).drain(drain).data(json!({
        "count": found.items.len(),
        "by_state": by_state(&found.items),
        "keys": keys,
        "keys_truncated": found.items.len() > LISTED_LIMIT,
        "mode": match selection {
            Selection::Key(_) => "key",
            Selection::Dead => "dead",
            Selection::All => "all",
        },
        // What their attempts cost today: the drain's daily budget still counts it
        // (db::usage::cost_since).
        "spent_today_usd": found.spent_today_usd,
        "budget_day_start": budget_day_start,
    }));
    // The item is gone: its id stays in the event as the one it had.
    if let [only] = found.items.as_slice() {
        event = event.item(only.id);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::{discard_all_command, human, Discarded, Selection};
    use crate::db::discard::SelectedItem;
    use crate::model::ItemState;

    #[test]
    fn a_dry_run_that_would_discard_nothing_lists_no_keys() {
        let held = SelectedItem { id: 1, key: "k".into(), state: ItemState::Running, run_id: Some(3) };
        let found = Discarded { held: vec![held], ..Discarded::default() };
        let said = human("a", &found, Selection::All, true);
        // Before: "… with their attempts and results: ; 1 running item …".
        assert!(
            said.starts_with(
                "a: 0 items would be discarded, with their attempts and results; 1 running item"
            ),
            "{said}"
        );
    }

    #[test]
    fn the_discard_command_told_runs_as_pasted_whatever_the_name() {
        assert_eq!(discard_all_command("old"), "drainctl discard old --all");
        // Before the name, `-old` was read as options (`-o`).
        assert_eq!(discard_all_command("-old"), "drainctl discard --all -- -old");
    }
}
