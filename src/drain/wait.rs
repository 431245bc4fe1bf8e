//! Waiting inside the pass for the quota group's reset, or for a higher-ranking drain
//! of the group to run out of items (docs/rate-limits.md).

use chrono::{DateTime, Utc};

use crate::db::drains::{Ahead, PassControls};
use crate::db::runs;
use crate::error::{Result, EXIT_TEMPORARY};
use crate::model::{RunStatus, Trigger};

use super::{Pass, Stop};

/// A pass waiting for a reset beats (and looks for a pause, a burst's end, SIGTERM) at
/// least this often, and sleeps at least this long between two beats.
const WAIT_POLL_MAX: std::time::Duration = std::time::Duration::from_secs(1);
const WAIT_POLL_MIN: std::time::Duration = std::time::Duration::from_millis(20);

impl Pass<'_> {
    /// The longest a pass waits inside itself for its quota group's reset.
    fn max_wait(&self) -> std::time::Duration {
        self.drain.max_wait
    }

    /// Whether the pass may wait for a backoff that ends at `until`: within `max_wait`,
    /// and (outside a burst, whose budgets do not apply) ending inside
    /// `max_seconds_per_pass`, which the wait counts against.
    pub(super) fn may_wait_until(&self, until: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.could_wait_until(until, now, self.started_at)
    }

    /// [`Pass::may_wait_until`] for a pass of this drain and trigger started at `started_at`.
    fn could_wait_until(&self, until: DateTime<Utc>, now: DateTime<Utc>, started_at: DateTime<Utc>) -> bool {
        let wait = (until - now).to_std().unwrap_or_default();
        if wait > self.max_wait() || self.window_closes_by(until, now).is_some() {
            return false;
        }
        let pass_ends = crate::clock::later(started_at, self.drain.max_seconds_per_pass);
        self.trigger == Trigger::Burst || until <= pass_ends
    }

    /// For a pass `supervise` started, the close of the drain's window when it comes at or
    /// before `until`: such a pass would hold its slot until the window closed and take
    /// nothing, so it does not wait (docs/rate-limits.md, "Waiting for the reset"), as
    /// `supervise` does not start one to wait. A burst's pass ignores the window.
    fn window_closes_by(&self, until: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.trigger != Trigger::Supervisor {
            return None;
        }
        let window = self.drain.window.as_ref()?;
        window.closes_at(now, self.config.defaults.timezone).filter(|closes| until >= *closes)
    }

    /// The pass ends without waiting for a backoff that ends at `until`. When only its
    /// `max_seconds_per_pass` kept it from waiting (the reset is within `max_wait`), say
    /// so in the run's note, which this returns the end of; and when a new pass started
    /// now could wait for the reset, the process goes on as one (see `run`) — unless this
    /// pass is such a continuation that neither waited nor settled an item, so that the
    /// chain never goes round without waiting (docs/rate-limits.md, "Waiting for the
    /// reset"). Empty when the budget is not what keeps it from waiting.
    pub(super) fn budget_cut_wait(&mut self, until: DateTime<Utc>, now: DateTime<Utc>) -> String {
        let wait = (until - now).to_std().unwrap_or_default();
        if self.trigger == Trigger::Burst || wait > self.max_wait() || self.may_wait_until(until, now) {
            return String::new();
        }
        if let Some(closes) = self.window_closes_by(until, now) {
            return format!(
                "; the backoff (the reset and its margin) ends at or after the window's close ({}): the pass does not \
                 hold its slot until then",
                crate::output::local_time(closes, self.config.defaults.timezone)
            );
        }
        let budget = crate::duration::format_duration(self.drain.max_seconds_per_pass);
        let has_gone_round = self.is_continuation && !self.has_waited && self.done + self.failed == 0;
        if self.could_wait_until(until, now, now) && !has_gone_round {
            self.continues_at = Some(until);
            format!(
                "; the reset is beyond this pass's max_seconds_per_pass ({budget}): a new pass waits for it"
            )
        } else {
            format!(
                "; the wait does not fit in max_seconds_per_pass ({budget}): a later pass picks up the work"
            )
        }
    }

    /// Wait, holding no item, until the quota group's backoff ends at `until` (`why` says
    /// whose and why): the run records that it waits and beats — a checkpoint about every
    /// second, so supervise never takes it for hung — and wakes early for SIGTERM, a
    /// pause, the end of its burst or its run being ended. None when the wait is over and
    /// the pass goes on claiming; otherwise why it stops.
    /// `account`: the index of the account in the group whose backoff it is; a backoff
    /// of it cleared or shortened meanwhile (`resume --clear-backoff`, a charge taken
    /// back) ends the wait there, and the pass claims again.
    pub(super) fn wait_for_reset(
        &mut self,
        until: DateTime<Utc>,
        account: usize,
        why: &str,
    ) -> Result<Option<Stop>> {
        let group = self.group;
        let watched = group.accounts.get(account).map(|account| (group.name.as_str(), account.name.as_str()));
        self.wait_for(until, "the reset", why, watched)
    }

    fn wait_for(
        &mut self,
        until: DateTime<Utc>,
        what: &str,
        why: &str,
        watched: Option<(&str, &str)>,
    ) -> Result<Option<Stop>> {
        let entered = self.clock.now();
        self.has_waited = true;
        let waited = self.wait_until(until, what, why, watched);
        self.count_idle_since(entered);
        waited
    }

    /// A server error of `item` (its attempt charged as a transient failure): when it
    /// follows one of another item, the vendor's servers are failing, not this item, and
    /// the next item waits (docs/rate-limits.md, "Server errors").
    pub(super) fn count_server_error(
        &mut self,
        item: &crate::db::items::ClaimedItem,
        error: &str,
        now: DateTime<Utc>,
    ) {
        if self.last_server_error_item != Some(item.id) {
            self.server_errors_in_a_row = self.server_errors_in_a_row.saturating_add(1);
            self.last_server_error_item = Some(item.id);
        }
        let in_a_row = self.server_errors_in_a_row;
        let Some(pause) = server_error_pause(in_a_row) else { return };
        let wait = crate::duration::format_duration(pause);
        let why = format!(
            "the vendor's servers failed for {in_a_row} items in a row (last: {error}); the next item waits {wait}, \
             longer each time they fail again (a server error is no quota hit: each of those items was charged its attempt)"
        );
        let until = now + chrono::Duration::from_std(pause).unwrap_or_else(|_| chrono::Duration::minutes(15));
        self.servers_failing_until = Some((until, why));
    }

    /// Whether the vendor's servers were failing lately enough that the next item waits
    /// (see `count_server_error`).
    pub(super) fn servers_are_failing(&self, now: DateTime<Utc>) -> bool {
        self.servers_failing_until.as_ref().is_some_and(|(until, _)| *until > now)
    }

    /// The servers are failing ([`Pass::servers_are_failing`]), and the item `claimed`
    /// after its controls let it run goes back unstarted: the pass waits, holding nothing.
    /// None once the wait is over and the pass goes on claiming, or why it stops: a wait
    /// beyond `max_wait` or the time budget ends it (`rate_limited`), and the next pass
    /// tries again.
    pub(super) fn wait_for_the_servers(
        &mut self,
        claimed: &crate::db::items::ClaimedItem,
        now: DateTime<Utc>,
    ) -> Result<Option<Stop>> {
        let Some((until, why)) = self.servers_failing_until.take() else { return Ok(None) };
        let note = "claimed; the pass waits for the vendor's servers";
        self.release(claimed, crate::model::AttemptOutcome::NotStarted, note, now)?;
        if !self.may_wait_until(until, now) {
            return Ok(Some(Stop::normal(
                RunStatus::RateLimited,
                format!("{why}; the next pass tries again"),
            )));
        }
        self.commit_staged()?;
        if self.trigger != Trigger::Manual {
            // In the drain's log; a pass run by hand says it on stderr as it waits.
            log::warn!("drain {}: {why}", self.drain.name);
        }
        let waited = self.wait_for(until, THE_SERVERS, &why, None);
        if self.reloaded.is_some() {
            // Its run goes on with the configuration read again: the servers still fail.
            self.servers_failing_until = Some((until, why));
        }
        waited
    }

    /// Time from `since` to now held no item: not counted in the run's throughput.
    fn count_idle_since(&mut self, since: DateTime<Utc>) {
        self.idle_seconds += (self.clock.now() - since).to_std().unwrap_or_default().as_secs_f64();
    }

    /// The run no longer waits (`waiting_until` cleared); a failure to say so is logged.
    pub(super) fn clear_waiting_mark(&mut self, now: DateTime<Utc>) {
        let cleared =
            runs::beat_while_waiting(self.client, &self.drain.name, self.run_id, now, None, None, None);
        if let Err(error) = cleared {
            log::warn!("drain {}: could not clear the waiting mark: {error}", self.drain.name);
        }
    }

    fn wait_until(
        &mut self,
        until: DateTime<Utc>,
        what: &str,
        why: &str,
        watched: Option<(&str, &str)>,
    ) -> Result<Option<Stop>> {
        // Someone who ran the pass by hand is told why it goes quiet (docs/rate-limits.md);
        // supervise's passes say it in their log with -v.
        if self.trigger == Trigger::Manual {
            log::warn!(
                "drain {}: waiting for {what}: {why}; the pass goes on then (Ctrl-C ends it, what it did stays done)",
                self.drain.name
            );
        } else {
            log::info!("drain {}: waiting for {what}: {why}", self.drain.name);
        }
        let reason = waiting_reason(what, why);
        let entered = self.clock.now();
        loop {
            let now = self.clock.now();
            // The drain moved to another group, its group gained an account: the reset
            // waited for may be none of its business any more, and `status` already shows
            // the new settings. The pass gives its slot back; the next one reads them.
            // The run goes on with the new settings (see `run`), and waits again if they
            // still have it wait.
            if let Some(reloaded) = self.config_watch.change() {
                self.clear_waiting_mark(now);
                log::info!("drain {}: {} while the pass waited for {what}", self.drain.name, reloaded.what);
                return self.reload(reloaded).map(Some);
            }
            if now + crate::clock::WENT_BACK_TOLERANCE < entered {
                // The wait was counted on a clock that ran ahead: waiting on would last
                // until it caught up. The next supervise pass counts the backoff from its
                // own time (docs/rate-limits.md, "Backoff").
                self.clear_waiting_mark(now);
                return Ok(Some(Stop::normal(
                    RunStatus::RateLimited,
                    format!(
                        "the clock went back by {} while the pass waited for {what}: {why}",
                        crate::duration::format_duration((entered - now).to_std().unwrap_or_default())
                    ),
                )));
            }
            let is_over = now >= until;
            let interrupted = crate::worker::signals::termination_signal();
            let waiting = (!is_over && interrupted.is_none()).then_some(until);
            let beat = runs::beat_while_waiting(
                self.client,
                &self.drain.name,
                self.run_id,
                now,
                waiting,
                waiting.map(|_| reason.as_str()),
                watched,
            );
            // A session the server ended is replaced and the wait goes on (see `reconnect`).
            let Some(beat) = self.unless_session_lost(beat)? else { continue };
            if let Some(signal) = interrupted {
                return Ok(Some(Stop {
                    status: RunStatus::Failed,
                    note: format!(
                        "interrupted by {} while waiting for {what}",
                        crate::worker::signals::signal_name(signal)
                    ),
                    exit_code: EXIT_TEMPORARY,
                }));
            }
            let controls = PassControls {
                paused_at: beat.paused_at,
                pause_note: beat.pause_note,
                burst_until: beat.burst_until,
                is_run_live: beat.is_run_live,
                ..PassControls::default()
            };
            if let Some(stop) =
                self.reason_to_stop(controls, now).filter(|stop| stop.status != RunStatus::Budget)
            {
                self.clear_waiting_mark(now);
                return Ok(Some(stop));
            }
            if is_over {
                return Ok(None);
            }
            if watched.is_some()
                && beat.watched_backoff_until.is_none_or(|backoff_until| backoff_until < until)
            {
                // Cleared or shortened by someone else: the next claim reads it.
                self.clear_waiting_mark(now);
                log::info!("drain {}: the backoff it waited for was cleared or shortened", self.drain.name);
                return Ok(None);
            }
            let left = (until - now).to_std().unwrap_or_default();
            std::thread::sleep(left.clamp(WAIT_POLL_MIN, WAIT_POLL_MAX));
        }
    }

    /// The claim took nothing because `ahead`, a higher-ranking drain of the quota group,
    /// works and has items. Holding no item, the pass beats (so supervise never takes it
    /// for hung), sleeps about a second and claims again — None — so that it takes over
    /// the moment `ahead` has nothing left. It stops once it has yielded for `max_wait`
    /// (at once with `0s`); pause, burst, budget and signals are checked by the next claim.
    pub(super) fn yield_to(&mut self, ahead: &Ahead, now: DateTime<Utc>) -> Result<Option<Stop>> {
        let why = if ahead.is_bursting {
            format!(
                "drain {} of quota group {} is in burst and has items",
                ahead.name, self.drain.quota_group
            )
        } else {
            format!(
                "drain {} of quota group {} has priority {} (this drain {}) and has items",
                ahead.name, self.drain.quota_group, ahead.priority, self.drain.priority
            )
        };
        let is_first = self.yielding_since.is_none();
        let since = *self.yielding_since.get_or_insert(now);
        if (now - since).to_std().unwrap_or_default() >= self.max_wait() {
            return Ok(Some(Stop::normal(RunStatus::Drained, format!("{why}: this pass yields to it"))));
        }
        if is_first {
            log::info!("drain {}: yields: {why}", self.drain.name);
        }
        self.commit_staged()?;
        // Recorded as a wait without an end: the drain cannot work while it yields
        // (`drainctl_can_work`, docs/operations.md).
        let beat =
            runs::beat_while_waiting(self.client, &self.drain.name, self.run_id, now, None, Some(&why), None);
        // A session the server ended is replaced and the pass claims again (see `reconnect`).
        if self.unless_session_lost(beat)?.is_none() {
            return Ok(None);
        }
        std::thread::sleep(WAIT_POLL_MAX);
        self.count_idle_since(now);
        Ok(None)
    }
}

/// What a pass waits for when the vendor's servers failed for items in a row.
const THE_SERVERS: &str = "the vendor's servers";

/// A waiting run's `waiting_reason`: what it waits for, and why.
fn waiting_reason(what: &str, why: &str) -> String {
    format!("waiting for {what}: {why}")
}

/// Whether a run's `waiting_reason` is a wait for the vendor's servers, not for a reset.
pub(crate) fn waits_for_the_servers(reason: &str) -> bool {
    reason.strip_prefix("waiting for ").is_some_and(|rest| rest.starts_with(THE_SERVERS))
}

/// How long the next item waits after server errors of `in_a_row` different items in a
/// row: none after one (an item's own failure), then 30 s, doubling up to 15 minutes.
pub(super) fn server_error_pause(in_a_row: u32) -> Option<std::time::Duration> {
    const FIRST: u64 = 30;
    const LONGEST: u64 = 15 * 60;
    let doublings = in_a_row.checked_sub(2)?;
    let seconds = FIRST.checked_shl(doublings.min(16)).unwrap_or(LONGEST).min(LONGEST);
    Some(std::time::Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::server_error_pause;
    use std::time::Duration;

    #[test]
    fn the_wait_after_server_errors_doubles_from_30_seconds_to_15_minutes() {
        assert_eq!(server_error_pause(0), None);
        assert_eq!(server_error_pause(1), None, "one item's server error is its own failure");
        let waits: Vec<u64> = (2..=9).filter_map(server_error_pause).map(|wait| wait.as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(server_error_pause(u32::MAX), Some(Duration::from_secs(900)));
    }
}
