//! A clock that went back (docs/operations.md, step 3; docs/rate-limits.md, "Backoff"):
//! what this host stamped while its clock ran ahead — a run's last checkpoint, the hit a
//! backoff counts from — would hold off a hung verdict, or a quota group, until the clock
//! caught up: an hour for a clock an hour off. `supervise` counts such a mark from its own
//! time instead. Only this host's marks: another host whose clock runs ahead judges its
//! runs and reads its backoffs by that clock, and moving them onto this one would end them
//! early there.

use chrono::{DateTime, Utc};
use postgres::Client;

use crate::db::backoffs::BackoffRow;
use crate::db::runs::RunRow;
use crate::error::Result;
use crate::output::rfc3339;

/// With this host's clock right ([`read`]): a run of this host whose last checkpoint is
/// stamped more than a minute ahead of `now` counts it as one at `now` — written back
/// (unless a dry run; a row another transaction holds is left for the next pass), so that
/// its silence counts from this pass.
pub(super) fn pull_back_checkpoints(
    client: &mut Client,
    runs: &mut [RunRow],
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<()> {
    let limit = now + crate::clock::WENT_BACK_TOLERANCE;
    let mut ahead = Vec::new();
    for run in runs.iter_mut().filter(|run| run.last_checkpoint_at > limit && crate::reap::is_this_hosts(run))
    {
        log::warn!(
            "run {} of drain {}: its last checkpoint is stamped {}, ahead of this clock (it went back): counted \
             as one now",
            run.id,
            run.drain,
            rfc3339(run.last_checkpoint_at)
        );
        run.last_checkpoint_at = now;
        ahead.push(run.id);
    }
    if !dry_run && !ahead.is_empty() {
        crate::db::runs::pull_back_checkpoints(client, &ahead, now, limit)?;
    }
    Ok(())
}

/// This host's clock as a pass finds it, and the database server's start.
pub(super) struct ClockState {
    /// It agrees with the database server's, within the tolerance: a clock wrongly set
    /// back (a virtual machine restored from a snapshot, a host booted before its time
    /// was set) must not count what the right clock stamped as ahead. An injected clock
    /// (`DRAINCTL_NOW`, tests) is taken as right.
    pub is_right: bool,
    /// By how much this host's clock is off from the database server's (this one minus
    /// the server's) when it is not right: another host's run is then not judged by it.
    pub off_by: Option<chrono::Duration>,
    /// It went back: one of this host's runs, or of its supervise passes, is stamped more
    /// than a minute ahead of `now`.
    pub went_back: bool,
    /// When the database server started: no run could record a checkpoint while it was
    /// down (see `supervise::silent_beyond_liveness`).
    pub server_started_at: DateTime<Utc>,
}

/// Test hook: an injected clock (DRAINCTL_NOW) is compared with the database server's as
/// this host's own clock is, so that a test can set a clock that is off. Compiled only
/// with the `testing` feature, never into a release build.
#[cfg(feature = "testing")]
const CLOCK_AS_OWN_ENV: &str = "DRAINCTL_TEST_CLOCK_AS_OWN";

/// Read [`ClockState`] at `now`, in one round trip.
pub(super) fn read(client: &mut Client, now: DateTime<Utc>, is_injected: bool) -> Result<ClockState> {
    let host = crate::worker::process::host_name();
    let tolerance = crate::clock::WENT_BACK_TOLERANCE;
    let (server_now, server_started_at, went_back) =
        crate::db::runs::server_clock_and_host_stamped_after(client, &host, now + tolerance)?;
    let off_by = off_by(now, server_now, is_injected);
    Ok(ClockState { is_right: off_by.is_none(), off_by, went_back, server_started_at })
}

/// By how much `now` is off from the server's clock `server_now`, when beyond the
/// tolerance and not injected (see [`ClockState::off_by`]).
fn off_by(now: DateTime<Utc>, server_now: DateTime<Utc>, is_injected: bool) -> Option<chrono::Duration> {
    // Test hook: judge an injected clock as this host's own (see `CLOCK_AS_OWN_ENV`).
    #[cfg(feature = "testing")]
    let is_injected = is_injected && std::env::var_os(CLOCK_AS_OWN_ENV).is_none();
    let is_right = is_injected || (now - server_now).abs() <= crate::clock::WENT_BACK_TOLERANCE;
    (!is_right).then_some(now - server_now)
}

/// The instant a deadline every host shares — a burst's, a quota group's backoff — is
/// judged at: `now`, or the database server's clock when this host's runs ahead of it by
/// `off_by` (beyond the tolerance): one clock running ahead does not end it early for all
/// of them (docs/operations.md, "Several hosts").
pub(crate) fn shared_now(now: DateTime<Utc>, off_by: Option<chrono::Duration>) -> DateTime<Utc> {
    match off_by {
        Some(ahead) if ahead > chrono::Duration::zero() => now - ahead,
        _ => now,
    }
}

/// [`shared_now`] for a command outside `supervise` (`burst on`, `off`, `status`,
/// `resume --group`), which reads the server's clock for it: one round trip.
pub(crate) fn read_shared_now(
    client: &mut impl postgres::GenericClient,
    now: DateTime<Utc>,
    is_injected: bool,
) -> Result<DateTime<Utc>> {
    let server_now: DateTime<Utc> = client.query_one("SELECT now()", &[])?.get(0);
    Ok(shared_now(now, off_by(now, server_now, is_injected)))
}

/// When this host's clock went back and is right now ([`read`]): a backoff whose hit is
/// stamped more than a minute ahead of `now` counts from `now`: the hit's instants move
/// back by as much — a wait until a stated instant can only come sooner, and a call then
/// meets the limit again if it stands. Written back (unless a dry run) only over the row
/// as read, and not when another transaction holds it.
pub(super) fn pull_back_backoffs(
    client: &mut Client,
    rows: &mut [BackoffRow],
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<()> {
    let limit = now + crate::clock::WENT_BACK_TOLERANCE;
    let is_ahead = |row: &BackoffRow| row.observed_at.is_some_and(|at| at > limit);
    for row in rows.iter_mut().filter(|row| is_ahead(row)) {
        let Some(observed_at) = row.observed_at else { continue };
        let shift = observed_at - now;
        let back = |at: Option<DateTime<Utc>>| at.map(|at| at - shift);
        let before = row.clone();
        row.backoff_until = back(row.backoff_until);
        row.reset_at = back(row.reset_at);
        row.suspected_at = row.suspected_at.map(|at| if at > limit { at - shift } else { at });
        row.observed_at = Some(now);
        log::warn!(
            "quota group {} (account {:?}): its last hit is stamped {}, ahead of this clock (it went back): its \
             backoff counts from now, until {}",
            row.quota_group,
            row.account,
            rfc3339(observed_at),
            row.backoff_until.map_or_else(|| "none".to_string(), rfc3339)
        );
        if !dry_run {
            crate::db::backoffs::pull_back(client, &before, row)?;
        }
    }
    Ok(())
}

/// When this host's clock went back and is right now ([`read`]): the start and end of
/// this host's runs stamped more than a minute ahead of `now` are moved back to `now`, so
/// that a drain's cadence (`every`, counted from its latest start) and the latest run
/// shown count from this pass, not from a time the clock has yet to reach. A dry run
/// writes nothing: [`last_starts_pulled_back`] counts the same.
pub(super) fn pull_back_run_stamps(client: &mut Client, now: DateTime<Utc>, dry_run: bool) -> Result<()> {
    if dry_run {
        return Ok(());
    }
    let limit = now + crate::clock::WENT_BACK_TOLERANCE;
    let moved =
        crate::db::runs::pull_back_run_stamps(client, &crate::worker::process::host_name(), now, limit)?;
    if moved > 0 {
        log::warn!(
            "{} stamped ahead of this clock (it went back) counted as started or ended now",
            crate::output::counted(moved, "run")
        );
    }
    Ok(())
}

/// The latest start of each of `drains` as [`pull_back_run_stamps`] would leave it: only
/// this host's starts move; another host's ahead keeps its stamp. For a dry run.
pub(super) fn last_starts_pulled_back(
    client: &mut Client,
    drains: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<(String, DateTime<Utc>)>> {
    let limit = now + crate::clock::WENT_BACK_TOLERANCE;
    crate::db::runs::last_run_starts_pulled_back(
        client,
        drains,
        &crate::worker::process::host_name(),
        now,
        limit,
    )
}

/// When this host's clock went back and is right now ([`read`]): a burst of `drains` one
/// of this host's supervise passes ended while its clock ran ahead, its deadline still to
/// come, is set again as it was, with a `burst_restored` event — its `burst_expired`
/// told of an end that had not come. In a dry run nothing is written. The bursts set
/// again (or in a dry run, that would be).
pub(super) fn restore_bursts(
    client: &mut Client,
    outbox: &crate::db::events::Outbox,
    drains: &[String],
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<crate::db::drains::BurstEndedAhead>> {
    let limit = now + crate::clock::WENT_BACK_TOLERANCE;
    let host = crate::worker::process::host_name();
    let ended = crate::db::drains::bursts_ended_ahead(client, drains, &host, now, limit)?;
    if dry_run {
        return Ok(ended);
    }
    let mut restored = Vec::with_capacity(ended.len());
    for burst in ended {
        let mut transaction = client.transaction()?;
        if !crate::db::drains::restore_burst(&mut transaction, &burst)? {
            continue;
        }
        let until = crate::output::local_time(burst.until, zone);
        let message = format!(
            "burst of {} restored until {until}: a pass ended it at {}, ahead of this clock (it went back)",
            burst.drain,
            crate::output::local_time(burst.ended_at, zone)
        );
        log::warn!("{message}");
        let event = crate::db::events::Event::new(crate::model::EventKind::BurstRestored, message)
            .drain(&burst.drain)
            .data(serde_json::json!({
                "burst_until": burst.until,
                "note": burst.note,
                "expired_event_id": burst.event_id,
            }));
        crate::db::events::record_event(&mut transaction, outbox, &event, now)?;
        transaction.commit()?;
        restored.push(burst);
    }
    Ok(restored)
}

/// When this host's clock went back and is right now ([`read`]): a pending item of
/// `drains` last changed more than a minute ahead of `now` (enqueued, given back after a
/// limit, retried) has its availability moved back by as much, so that an item available
/// then is available now and a retry delay stays as long. The items of each drain available now by it: written
/// back, or in a dry run only counted.
pub(super) fn pull_back_items(
    client: &mut Client,
    drains: &[String],
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<std::collections::HashMap<String, u32>> {
    let limit = now + crate::clock::WENT_BACK_TOLERANCE;
    let pulled = crate::db::items::pull_back_availability(client, drains, now, limit, dry_run)?;
    for (drain, count) in &pulled {
        log::warn!(
            "drain {drain}: {} last changed ahead of this clock (it went back) {} available now",
            crate::output::counted(*count, "pending item"),
            if *count == 1 { "is" } else { "are" }
        );
    }
    Ok(if dry_run { pulled } else { Default::default() })
}
