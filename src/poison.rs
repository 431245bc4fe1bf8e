//! Poison charges taken back (docs/rate-limits.md, "Poison items"): settling the open
//! charges of an account at a quota hit, or once the window a charge met has ended (a
//! `supervise` pass), with a `quota_hit_refunded` event for each charge taken back.

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::json;

use crate::backoff::{ResetForm, MAX_TRUSTED_RESET_AHEAD};
use crate::config::Config;
use crate::db::events::{record_event, record_unannounced_event, Event, Outbox};
use crate::db::poison::{self, OpenCharge, Settler, SettlingHit, TakenBack};
use crate::error::Result;
use crate::model::EventKind;
use crate::quota::QuotaHit;

/// The end of the window a charged hit met, when its line says: a reset that leaves
/// nothing to guess (not a bare clock time, which names its next occurrence — maybe the
/// wrong day), in the future and trusted that far ahead.
pub fn window_end(hit: &QuotaHit, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let horizon = chrono::Duration::from_std(MAX_TRUSTED_RESET_AHEAD).unwrap_or(chrono::Duration::MAX);
    hit.stated_reset()
        .filter(|stated| {
            matches!(stated.form, ResetForm::Exact | ResetForm::DateTime | ResetForm::WindowBoundary)
        })
        .map(|stated| stated.at)
        .filter(|at| *at > now && *at - now <= horizon)
}

/// Settle the open charges of `account` of `group` at `hit` (see
/// [`crate::db::poison::settle_charges`]); the charges taken back.
pub fn settle_at_hit(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    group: &str,
    account: &str,
    hit: SettlingHit,
    now: DateTime<Utc>,
) -> Result<Vec<TakenBack>> {
    let charges = poison::open_charges_of(client, group, account)?;
    settle(client, outbox, config, &charges, Settler::Hit(hit), now)
}

/// Settle every open charge whose window has ended (see
/// [`crate::db::poison::ended_charges`]); the charges taken back.
pub fn settle_ended_windows(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<TakenBack>> {
    let charges = poison::ended_charges(client, now)?;
    settle(client, outbox, config, &charges, Settler::WindowEnded, now)
}

/// The drain of each item [`settle_ended_windows`] would make pending again, changing
/// nothing: for `supervise --dry-run`.
pub fn revivals_at_window_end(
    client: &mut Client,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let drains_of = |group: &str| config.group_drains(group);
    let max_attempts_of = |drain: &str| crate::reap::max_attempts_of(config, drain);
    poison::revivals_at_window_end(client, &drains_of, &max_attempts_of, now)
}

/// Settle `charges` in one transaction, with an event for each taken back; none: no
/// transaction at all (almost every quota hit and `supervise` pass).
fn settle(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    charges: &[OpenCharge],
    settler: Settler,
    now: DateTime<Utc>,
) -> Result<Vec<TakenBack>> {
    if charges.is_empty() {
        return Ok(Vec::new());
    }
    let drains_of = |group: &str| config.group_drains(group);
    let max_attempts_of = |drain: &str| crate::reap::max_attempts_of(config, drain);
    crate::db::in_transaction_retrying(client, "the charges stay open for a later limit or pass", |tx| {
        let taken = poison::settle_charges(
            tx,
            charges,
            settler,
            &drains_of,
            &max_attempts_of,
            config.defaults.timezone,
            now,
        )?;
        for one in &taken {
            record_taken_back(tx, outbox, one, settler, now)?;
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
    settler: Settler,
    now: DateTime<Utc>,
) -> Result<()> {
    let hit = match settler {
        Settler::Hit(hit) => Some(hit),
        Settler::WindowEnded => None,
    };
    let again = match (taken.revived, taken.given_back) {
        (true, _) => ", and it is pending again",
        (false, true) => "",
        (false, false) => " (its attempts were reset since: it gets nothing back)",
    };
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
        "given_back": taken.given_back,
    }));
    log::info!("drain {}: item {}'s charged quota hit is taken back: {}", taken.drain, taken.key, taken.why);
    if taken.revived {
        record_event(tx, outbox, &event, now)
    } else {
        record_unannounced_event(tx, &event, now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::backoff::StatedReset;

    fn hit(at: DateTime<Utc>, form: ResetForm) -> QuotaHit {
        QuotaHit {
            reset: Some(StatedReset { at, form, just_passed: None }),
            matched_line: "limit".to_string(),
            needs_attention: false,
            access_refused: false,
        }
    }

    #[test]
    fn only_a_reset_that_leaves_nothing_to_guess_ends_a_charged_window() {
        let now = Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap();
        let soon = now + chrono::Duration::seconds(20);
        assert_eq!(window_end(&hit(soon, ResetForm::Exact), now), Some(soon));
        assert_eq!(window_end(&hit(soon, ResetForm::WindowBoundary), now), Some(soon));
        // A bare clock time may name tomorrow; a reset past or now bounds nothing.
        assert_eq!(window_end(&hit(soon, ResetForm::ClockTime), now), None);
        assert_eq!(window_end(&hit(now, ResetForm::Exact), now), None);
        assert_eq!(window_end(&hit(now + chrono::Duration::days(9), ResetForm::DateTime), now), None);
    }
}
