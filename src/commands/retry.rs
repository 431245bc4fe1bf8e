//! `drainctl retry NAME (--dead | --key K)`: give dead letters another chance.
//!
//! `--dead` puts every dead item of the drain back to pending; `--key K` does it for one
//! item that is dead or pending (a pending item waiting out its retry delay becomes
//! available at once), or `running` under a run that is no longer running (its run was
//! ended as hung or crashed and nobody holds it). Either way the item's attempts start again from 0 and it is
//! available now; its last error stays visible until the next attempt replaces it. A
//! running or done item is left alone (`enqueue --replace` runs a done item again). One
//! `items_retried` event records what was retried, in the same transaction.

use serde_json::json;

use crate::cli::RetryArgs;
use crate::context::Context;
use crate::db::events::{record_event, Event};
use crate::db::in_transaction_retrying;
use crate::db::items::{retry_dead_items, retry_item, RetriedItem, RetryOne};
use crate::error::{Error, Result};
use crate::model::{EventKind, ItemState};
use crate::output::Report;

/// Keys listed in one `items_retried` event; the count is always complete.
pub const EVENT_KEY_LIMIT: usize = 100;

pub fn run(ctx: &mut Context, args: &RetryArgs) -> Result<Report> {
    let drain = ctx.configured_drain(&args.name)?.name.clone();
    let now = ctx.clock.now();
    // Losing a deadlock to another command (an `enqueue --replace` locking the same items
    // in another order) rolls the whole retry back; it is run again (docs/guarantees.md).
    let gave_up = "no item was changed; it is safe to run the same retry again";
    let outcome = in_transaction_retrying(&mut ctx.client, gave_up, |tx| {
        let (retried, skipped_state) = match &args.key {
            Some(key) => match retry_item(tx, &drain, key, now)? {
                RetryOne::Retried(item) => (vec![item], None),
                RetryOne::NotRetryable { state } => (Vec::new(), Some(state)),
                RetryOne::Missing => {
                    return Err(Error::Data(format!(
                        "drain {drain} has no item with key {key:?}; `{}` lists them",
                        super::items::listing_command(&drain)
                    )))
                }
            },
            None => (retry_dead_items(tx, &drain, now)?, None),
        };
        if !retried.is_empty() {
            record_event(tx, &ctx.outbox, &retried_event(&drain, &retried, args.key.is_some()), now)?;
        }
        Ok((retried, skipped_state))
    })?;
    let (retried, skipped_state) = outcome;
    let human = match (&args.key, &skipped_state) {
        (Some(key), Some(state)) => format!(
            "{drain}: item {key:?} is {state}, not retried; only dead or pending items are (and running ones whose run has ended){}",
            if *state == ItemState::Done {
                format!(
                    " (`{}` runs a done item again, PAYLOAD its JSON)",
                    super::items::command_for_drain(
                        "drainctl enqueue",
                        &drain,
                        &format!("--replace --key={} --payload PAYLOAD", crate::output::shell_word(key))
                    )
                )
            } else {
                String::new()
            }
        ),
        (Some(key), None) => format!("{drain}: item {key:?} back to pending, attempts reset, available now"),
        (None, _) if retried.is_empty() => format!("{drain}: no dead items"),
        (None, _) => format!(
            "{drain}: {} dead item{} back to pending, attempts reset, available now",
            retried.len(),
            if retried.len() == 1 { "" } else { "s" }
        ),
    };
    Ok(Report::new(
        human,
        json!({
            "drain": drain,
            "retried": retried.len(),
            "items": retried,
            "skipped": skipped_state.as_ref().map(|state| json!({ "key": args.key, "state": state })),
        }),
    ))
}

fn retried_event(drain: &str, retried: &[RetriedItem], by_key: bool) -> Event {
    let keys: Vec<&str> = retried.iter().take(EVENT_KEY_LIMIT).map(|item| item.key.as_str()).collect();
    let message = match retried {
        [only] if by_key => {
            format!("item {} retried by the operator (was {})", only.key, only.previous_state)
        }
        _ => format!("{} dead item(s) retried by the operator", retried.len()),
    };
    let mut event = Event::new(EventKind::ItemsRetried, message).drain(drain).data(json!({
        "count": retried.len(),
        "keys": keys,
        "keys_truncated": retried.len() > EVENT_KEY_LIMIT,
        "mode": if by_key { "key" } else { "dead" },
    }));
    if let [only] = retried {
        event = event.item(only.id);
    }
    event
}
