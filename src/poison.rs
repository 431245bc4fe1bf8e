//! Poison charges taken back (docs/rate-limits.md, "Poison items"): settling the open
//! charges of an account at a quota hit, or once the window a charge met has ended (a
//! `supervise` pass), with a `quota_hit_refunded` event for each charge taken back.

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::json;

use crate::config::Config;
use crate::db::events::{record_event, record_unannounced_event, Event, Outbox};
use crate::db::poison::{SettlingHit, TakenBack};
use crate::error::Result;
use crate::model::EventKind;

/// The drains of `group`, from the configuration.
fn group_drains(config: &Config, group: &str) -> Vec<String> {
    config.drains.iter().filter(|drain| drain.quota_group == group).map(|drain| drain.name.clone()).collect()
}

/// The `max_attempts` of a configured drain; `None` for one no longer configured.
fn max_attempts(config: &Config, drain: &str) -> Option<i32> {
    config.drains.iter().find(|candidate| candidate.name == drain).map(|found| found.max_attempts as i32)
}

/// Settle the open charges of `account` of `group` at `hit` (see
/// [`crate::db::poison::take_back_charges`]); the charges taken back.
pub fn settle_at_hit(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    group: &str,
    account: &str,
    hit: SettlingHit,
    now: DateTime<Utc>,
) -> Result<Vec<TakenBack>> {
    let drains = group_drains(config, group);
    let max_attempts_of = |drain: &str| max_attempts(config, drain);
    crate::db::in_transaction_retrying(client, "the charges stay open for a later hit of the group", |tx| {
        let taken =
            crate::db::poison::take_back_charges(tx, group, account, hit, &drains, &max_attempts_of, now)?;
        for one in &taken {
            record_taken_back(tx, outbox, one, Some(hit), now)?;
        }
        Ok(taken)
    })
}

/// Settle every open charge whose window has ended (see
/// [`crate::db::poison::settle_ended_windows`]); the charges taken back.
pub fn settle_ended_windows(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<TakenBack>> {
    let drains_of = |group: &str| group_drains(config, group);
    let max_attempts_of = |drain: &str| max_attempts(config, drain);
    crate::db::in_transaction_retrying(client, "the charges stay open for the next pass", |tx| {
        let taken = crate::db::poison::settle_ended_windows(tx, &drains_of, &max_attempts_of, now)?;
        for one in &taken {
            record_taken_back(tx, outbox, one, None, now)?;
        }
        Ok(taken)
    })
}

/// The `quota_hit_refunded` event of a charge taken back, and its log line. Notified
/// (when `notify_on` has it) only when it makes a dead item pending again: the news after
/// an `item_dead_lettered` the operator was told of.
fn record_taken_back(
    tx: &mut postgres::Transaction<'_>,
    outbox: &Outbox,
    taken: &TakenBack,
    hit: Option<SettlingHit>,
    now: DateTime<Utc>,
) -> Result<()> {
    let again = if taken.revived { ", and it is pending again" } else { "" };
    let event = Event::new(
        EventKind::QuotaHitRefunded,
        format!(
            "item {} of drain {}: its quota hit charged as a failure (attempt {}) is taken back{again}: {}; the window was spent, not the item",
            taken.key, taken.drain, taken.attempt, taken.why
        ),
    )
    .drain(&taken.drain)
    .quota_group(&taken.quota_group)
    .run(taken.run_id)
    .item(taken.item_id)
    .data(json!({
        "attempt": taken.attempt,
        "by_item": hit.map(|hit| hit.key),
        "by_drain": hit.map(|hit| hit.drain),
        "by_run": hit.map(|hit| hit.run_id),
        "revived": taken.revived,
    }));
    log::info!("drain {}: item {}'s charged quota hit is taken back: {}", taken.drain, taken.key, taken.why);
    if taken.revived {
        record_event(tx, outbox, &event, now)
    } else {
        record_unannounced_event(tx, &event, now)
    }
}
