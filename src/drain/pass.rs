//! The pass loop: before each item, stage the last success, choose the account, claim
//! the next item and re-read the controls; stop for the first reason there is, or wait
//! for a reset near enough (see `wait`).

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::accounts::{GroupView, Selection, Switch};
use crate::config::DrainConfig;
use crate::db::drains::PassControls;
use crate::db::events::{record_event, Event, Outbox};
use crate::db::in_transaction;
use crate::db::items::{self, ClaimAccount, ClaimRequest, ClaimedItem};
use crate::db::runs;
use crate::error::{Result, EXIT_TEMPORARY};
use crate::model::{AttemptOutcome, EventKind, RunStatus, Trigger};

use super::{ItemEnd, Pass, Stop};

impl<'a> Pass<'a> {
    pub(super) fn work(&mut self) -> Result<Stop> {
        let stop = self.work_items();
        // An item claimed ahead whose worker did not start goes back, attempt refunded.
        if let Some(item) = self.claimed_ahead.take() {
            let note = match self.reloaded {
                Some(_) => "claimed ahead; the configuration changed before its worker started",
                None => "claimed ahead; the pass ended before its worker started",
            };
            if let Err(error) = self.release(&item, AttemptOutcome::NotStarted, note, self.clock.now()) {
                // The run's end (or, if that fails too, the orphan sweep) releases it.
                log::error!("drain {}: could not give back item {}: {error}", self.drain.name, item.key);
            }
        }
        // The last result is committed before the pass ends, whatever ended it; when it
        // cannot be, the error says whether it is lost or stays staged for the reaper.
        let committed = self.commit_staged();
        match (stop, committed) {
            (Ok(stop), Ok(())) => Ok(stop),
            (Err(error), Ok(())) | (Ok(_), Err(error)) => Err(error),
            (Err(error), Err(commit_error)) => {
                log::error!("drain {}: {commit_error}", self.drain.name);
                Err(error)
            }
        }
    }

    /// Whether the pass sends its notifications while its run is open: not when one
    /// notifier may run as long as `liveness_timeout` (with 5 s to spare), as the pass
    /// records no checkpoint while it waits for it.
    fn may_notify_while_running(&self) -> bool {
        let spare = std::time::Duration::from_secs(5);
        self.config.defaults.notify_timeout.saturating_add(spare) < self.drain.liveness_timeout
    }

    fn work_items(&mut self) -> Result<Stop> {
        loop {
            // What the last item recorded is notified now, not at the end of the pass —
            // unless a notifier could outlast `liveness_timeout` (the run would read as
            // hung): then once the run has ended (docs/configuration.md, "Notifications").
            if self.may_notify_while_running() {
                let (run_id, clock) = (self.run_id, self.clock);
                crate::notify::notify_recorded_beating(
                    self.config,
                    self.client,
                    self.outbox,
                    self.clock,
                    &mut |client| {
                        if let Err(error) = runs::record_checkpoint(client, run_id, 0, clock.now()) {
                            log::warn!("could not record a checkpoint before notifying: {error}");
                        }
                    },
                );
            }
            if let Some(signal) = crate::worker::signals::termination_signal() {
                return Ok(Stop::interrupted(signal));
            }
            // The pass's end commits the result it holds (see `work`).
            if let Some(stop) = self.stop_after_item.take() {
                return Ok(stop);
            }
            // Its window narrowed, its worker changed, it was removed: the next item is not
            // started on the settings as read; the run goes on with the new ones (see
            // `run`; docs/configuration.md, "Changing the configuration while drains run").
            if let Some(reloaded) = self.config_watch.change() {
                return self.reload(reloaded);
            }
            let now = self.clock.now();
            // An item claimed ahead still needs the controls read after the last worker
            // ended: the same statement, claiming nothing.
            let ahead = self.claimed_ahead.take();
            let (controls, claimed, account) = match self.stage_and_claim_next_item(now, ahead.is_none()) {
                // The server ended the session during the statement: on a new one, what it
                // did is read back, and the same step is taken again (docs/operations.md,
                // "When the database goes away").
                // (A failure may be the first the client hears of the session's end: it
                // is looked at before the error is taken for another.)
                Err(error) if error.is_read_only() || super::reconnect::is_session_gone(self.client) => {
                    log::debug!("drain {}: {error}", self.drain.name);
                    let refused_at = error.is_read_only().then(|| self.refused_as_read_only());
                    self.recover_lost_statement(ahead.as_ref(), refused_at)?;
                    self.claimed_ahead = ahead;
                    continue;
                }
                result => result?,
            };
            self.session_is_in_use();
            let is_claimed_ahead = ahead.is_some();
            let claimed = ahead.or(claimed);
            // Stopped while the statement ran (it may wait for a row lock): the item it
            // claimed goes back unstarted — no worker is started after a stop.
            if let Some(signal) = crate::worker::signals::termination_signal() {
                if let Some(item) = &claimed {
                    let note = "claimed as the pass was stopped; its worker never started";
                    self.release(item, AttemptOutcome::NotStarted, note, now)?;
                }
                return Ok(Stop::interrupted(signal));
            }
            self.is_account_suspected = controls.is_suspected;
            // A parked group is not waited for: only an operator clears it.
            let backoff_until = controls.backoff_until.filter(|_| controls.parked_at.is_none());
            let yields_to = controls.yields_to.clone();
            if let Some(stop) = self.reason_to_stop(controls, now) {
                if let Some(item) = claimed {
                    // Claimed ahead before pause, burst's end or backoff: never started.
                    self.release(&item, AttemptOutcome::NotStarted, &stop.note, now)?;
                }
                // A reset near enough is waited for inside the pass (docs/rate-limits.md).
                if let Some(until) = backoff_until
                    .filter(|until| stop.status == RunStatus::RateLimited && self.may_wait_until(*until, now))
                {
                    self.commit_staged()?;
                    match self.wait_for_reset(until, account, &stop.note)? {
                        None => continue,
                        Some(stop) => return Ok(stop),
                    }
                }
                let mut stop = stop;
                if let Some(until) = backoff_until.filter(|_| stop.status == RunStatus::RateLimited) {
                    stop.note.push_str(&self.budget_cut_wait(until, now));
                }
                return Ok(stop);
            }
            if let (true, Some(ahead), Some(item)) = (is_claimed_ahead, &yields_to, &claimed) {
                // A higher-ranking drain of the group has work now: it goes first.
                let note = format!("claimed ahead; drain {} of the group ranks higher", ahead.name);
                self.release(item, AttemptOutcome::NotStarted, &note, now)?;
                continue;
            }
            let Some(item) = claimed else {
                // A higher-ranking drain of the group goes first (docs/rate-limits.md).
                if let Some(ahead) = yields_to {
                    match self.yield_to(&ahead, now)? {
                        None => continue,
                        Some(stop) => return Ok(stop),
                    }
                }
                return Ok(Stop::normal(RunStatus::Drained, "no item is available now"));
            };
            // The vendor's servers failed for items in a row: this one waits, unstarted.
            if self.servers_are_failing(now) {
                match self.wait_for_the_servers(&item, now)? {
                    None => continue,
                    Some(stop) => return Ok(stop),
                }
            }
            if self.yielding_since.take().is_some() {
                // It no longer yields: the wait recorded ends.
                runs::beat_while_waiting(self.client, &self.drain.name, self.run_id, now, None, None, None)?;
            }
            match self.process(&item, account)? {
                // Its commit records the item's end on the run in the same statement.
                ItemEnd::Succeeded => {}
                ItemEnd::Settled => {
                    runs::item_finished(self.client, &mut self.statements, self.run_id, self.clock.now())?
                }
                ItemEnd::Stop(stop) => {
                    runs::item_finished(self.client, &mut self.statements, self.run_id, self.clock.now())?;
                    return Ok(stop);
                }
            }
        }
    }

    /// Commit (or, when large, stage) the previous item's result, if one waits, then choose
    /// the account (in a group with several), re-read the controls and claim the next
    /// item on it: for a group with one account, all in one statement and one transaction,
    /// the one round trip between two workers.
    /// Returns the controls — their backoff is the group's wait when no account may be
    /// used — the item, and the account's index in the group.
    /// With `claim` false the statement claims nothing: the controls for an item claimed
    /// ahead.
    fn stage_and_claim_next_item(
        &mut self,
        now: DateTime<Utc>,
        claim: bool,
    ) -> Result<(PassControls, Option<ClaimedItem>, usize)> {
        let local_limits_allow = self.local_limit(now, 0).is_none();
        // Cost budgets hold in a burst too: a burst spends quota, not money.
        self.cost_stop = self.cost_budget(now)?;
        let cost_allows = self.cost_stop.is_none() && claim;
        let (drain, group, run_id) = (self.drain, self.group, self.run_id);
        // Shared, not copied: the claim between two workers reads it (docs/rate-limits.md).
        let rivals = &std::rc::Rc::clone(&self.rivals);
        let request =
            |account| ClaimRequest { drain: &drain.name, account, run_id, now, local_limits_allow, rivals };
        if !group.has_accounts_to_switch() {
            let account = ClaimAccount {
                quota_group: &group.name,
                account: &group.accounts[0].name,
                is_allowed: cost_allows,
            };
            let request = request(account);
            let (controls, item) = match &self.unstaged {
                Some(succeeded) if claim && !must_stage(&succeeded.result) => {
                    let (controls, item, completion) = items::complete_and_claim_next_item(
                        self.client,
                        &mut self.statements,
                        succeeded.item.id,
                        &succeeded.result,
                        &request,
                    )?;
                    if let Some(succeeded) = self.unstaged.take() {
                        self.settle_commit(&succeeded.item, completion, now, false)?;
                    }
                    (controls, item)
                }
                // A large result, or any result when the next item is claimed ahead: staged
                // now and committed beside the next worker, with the claim after it when the
                // pass claims ahead (docs/benchmarks.md).
                Some(succeeded) => {
                    let (id, result) = (succeeded.item.id, &succeeded.result);
                    let claimed = if claim {
                        items::stage_and_claim_next_item(
                            self.client,
                            &mut self.statements,
                            id,
                            result,
                            &request,
                        )?
                    } else {
                        let controls = items::stage_and_read_controls(
                            self.client,
                            &mut self.statements,
                            id,
                            result,
                            &request,
                        )?;
                        (controls, None)
                    };
                    // Only once it is staged: on an error the pass's end still stages it.
                    self.mark_staged();
                    claimed
                }
                None => items::claim_next_item(self.client, &mut self.statements, &request)?,
            };
            return Ok((controls, item, 0));
        }
        self.stage_unstaged()?;
        let (statements, outbox) = (&mut self.statements, self.outbox);
        in_transaction(self.client, |tx| {
            let state = crate::db::quota_groups::lock_group(tx, &group.name, now)?;
            let rows = crate::db::backoffs::read_group_backoffs(tx, std::slice::from_ref(&group.name))?;
            let view = GroupView::new(group, &rows, state);
            let selection = view.select(now);
            let (index, wait) = match selection {
                Selection::Use { account, .. } => (account, None),
                Selection::Wait { until, cause } => (view.active(), Some((until, view.describe_wait(cause)))),
            };
            let account = ClaimAccount {
                quota_group: &group.name,
                account: &group.accounts[index].name,
                is_allowed: wait.is_none() && cost_allows,
            };
            let (mut controls, item) = items::claim_next_item(tx, statements, &request(account))?;
            if let Some((until, reason)) = wait {
                controls.backoff_until = Some(until);
                controls.backoff_reason = Some(reason);
            }
            if let (Some(item), Selection::Use { account, switch: Some(switch) }) = (&item, selection) {
                record_switch(tx, outbox, &view, switch, account, item, drain, run_id, now)?;
            }
            Ok((controls, item, index))
        })
    }

    /// Why the pass must stop before the next item, given the controls read with the
    /// claim: its run ended by someone else, pause, end of burst, backoff, then (outside a burst) window and budget.
    /// A pass a burst started goes on after the burst ends as a supervise pass would, so
    /// it stops then only when the window or its budgets (counted from the pass's start)
    /// would stop one (docs/operations.md, "Burst").
    pub(super) fn reason_to_stop(&self, controls: PassControls, now: DateTime<Utc>) -> Option<Stop> {
        if !controls.is_run_live {
            // Fenced: supervise ended this run (hung, crashed) and released its items.
            return Some(Stop {
                status: RunStatus::Failed,
                note: format!(
                    "run {} was ended by another process (see `drainctl runs show {}`): it claims and commits nothing more",
                    self.run_id, self.run_id
                ),
                exit_code: EXIT_TEMPORARY,
            });
        }
        if controls.paused_at.is_some() {
            let note = controls.pause_note.as_deref().unwrap_or("no note");
            return Some(Stop::normal(RunStatus::WindowClosed, format!("drain paused ({note})")));
        }
        if let Some(stop) = parked_stop(&self.drain.quota_group, &controls, self.config.defaults.timezone) {
            return Some(stop);
        }
        let is_bursting = controls.burst_until.is_some_and(|until| now < until);
        if self.trigger == Trigger::Burst && !is_bursting {
            if let Some(limit) = self.local_limit(now, 0) {
                return Some(Stop::normal(
                    RunStatus::BurstEnded,
                    format!("the burst ended (deadline passed or turned off) and {}", limit.note),
                ));
            }
        }
        if let Some(until) = controls.backoff_until.filter(|until| now < *until) {
            return Some(Stop::normal(
                RunStatus::RateLimited,
                format!(
                    "quota group {} backs off until {}: {}",
                    self.drain.quota_group,
                    crate::output::local_time(until, self.config.defaults.timezone),
                    controls.backoff_reason.unwrap_or_default()
                ),
            ));
        }
        if let Some((stop, _)) = &self.cost_stop {
            return Some(stop.clone());
        }
        if is_bursting {
            return None;
        }
        self.local_limit(now, 0)
    }

    /// The cost budget that keeps the pass from starting another item, with its
    /// `budget_reached` event: `max_cost_per_pass` against what this pass's attempts cost,
    /// `max_cost_per_day` against what the drain's attempts cost since midnight in
    /// `[defaults] timezone` (docs/results.md). Only reported costs count.
    fn cost_budget(&mut self, now: DateTime<Utc>) -> Result<Option<(Stop, Event)>> {
        use crate::db::usage::format_usd;
        let drain = self.drain;
        let reached = |max: &f64| self.cost_picousd >= crate::usage::usd_to_picousd(*max);
        if let Some(max) = drain.max_cost_per_pass.filter(reached) {
            let spent = self.cost_picousd as f64 / crate::usage::PICOUSD_PER_USD as f64;
            let note = format!(
                "max_cost_per_pass ({}) reached: this pass's attempts cost {}",
                format_usd(max),
                format_usd(spent)
            );
            let event = crate::usage::budget_event(drain, "max_cost_per_pass", max, spent, &note, None);
            return Ok(Some((Stop::normal(RunStatus::Budget, note), event)));
        }
        let Some(max) = drain.max_cost_per_day else { return Ok(None) };
        let zone = self.config.defaults.timezone;
        let (day_start, day_end) = crate::usage::budget_day(now, zone);
        let spent = crate::db::usage::cost_since(self.client, &drain.name, day_start)?;
        if spent < max {
            return Ok(None);
        }
        let note = format!(
            "max_cost_per_day ({}) reached: the drain's attempts cost {} since {}; items start again from {}",
            format_usd(max),
            format_usd(spent),
            crate::output::local_time(day_start, zone),
            crate::output::local_time(day_end, zone)
        );
        let event = crate::usage::budget_event(
            drain,
            "max_cost_per_day",
            max,
            spent,
            &note,
            Some((day_start, day_end)),
        );
        Ok(Some((Stop::normal(RunStatus::Budget, note), event)))
    }

    /// The claim of the next item to make as soon as the current worker has started, while
    /// it runs (docs/worker-contract.md): only when the pass's previous worker
    /// took less than `CLAIM_AHEAD_BELOW`, the group has one account, no cost budget is
    /// reached and the window and the item and time budgets allow one item more. A slow
    /// worker's pass claims after it, so an item never waits claimed for a long worker.
    /// The controls are read again after the worker ended, before the claimed item's
    /// worker starts.
    pub(super) fn claim_ahead<'r>(
        &self,
        rivals: &'r items::GroupRivals,
        now: DateTime<Utc>,
    ) -> Option<ClaimRequest<'r>>
    where
        'a: 'r,
    {
        let is_quick = self.last_worker_took.is_some_and(|took| took < claim_ahead_below());
        if !is_quick || self.group.has_accounts_to_switch() || self.cost_stop.is_some() {
            return None;
        }
        if self.budget_limit(now, 1).is_some() {
            return None;
        }
        // A burst's pass claims ahead outside its window: the claim takes an item only while
        // the burst is on, or once it has ended while the window allows it.
        let is_window_open = self.window_limit(now).is_none();
        if !is_window_open && self.trigger != Trigger::Burst {
            return None;
        }
        let (drain, group): (&'a DrainConfig, &'a crate::config::QuotaGroupConfig) = (self.drain, self.group);
        Some(ClaimRequest {
            drain: &drain.name,
            account: ClaimAccount {
                quota_group: &group.name,
                account: &group.accounts[0].name,
                is_allowed: true,
            },
            run_id: self.run_id,
            now,
            local_limits_allow: is_window_open,
            rivals,
        })
    }

    /// The limits checked without the database: the window (for passes `supervise`
    /// started) and the item and time budgets, with `more` items besides those begun. Not
    /// applied during a burst.
    fn local_limit(&self, now: DateTime<Utc>, more: u32) -> Option<Stop> {
        self.window_limit(now).or_else(|| self.budget_limit(now, more))
    }

    /// The window of a pass `supervise` started (for a supervise pass, or for a burst's
    /// once the burst has ended), when it is closed at `now`.
    fn window_limit(&self, now: DateTime<Utc>) -> Option<Stop> {
        if !matches!(self.trigger, Trigger::Supervisor | Trigger::Burst) {
            return None;
        }
        let window = self.drain.window.as_ref()?;
        if window.contains(now, self.config.defaults.timezone) {
            return None;
        }
        Some(Stop::normal(RunStatus::WindowClosed, format!("outside window {}", window.describe())))
    }

    /// The pass ends here for the configuration `reloaded`, which the run goes on with
    /// (see `run`), as the concurrency slots are now. A wait for a higher-ranking drain it
    /// recorded ends: the next pass decides afresh.
    pub(super) fn reload(&mut self, reloaded: crate::config::watch::Reloaded) -> Result<Stop> {
        if self.yielding_since.take().is_some() {
            self.clear_waiting_mark(self.clock.now());
        }
        let drain_id = self.drain_id;
        let slots = self.on_a_lasting_session(|pass| super::Slots::now(pass.client, drain_id))?;
        let stop = Stop::normal(RunStatus::Running, reloaded.what.clone());
        self.reloaded = Some(super::Reload { reloaded, slots });
        Ok(stop)
    }

    /// The item and time budgets, with `more` items besides those begun; the time counted
    /// from the pass's start.
    fn budget_limit(&self, now: DateTime<Utc>, more: u32) -> Option<Stop> {
        let waiting = u32::from(self.unstaged.is_some()) + u32::from(self.staged.is_some()) + more;
        if self.done + self.failed + waiting >= self.drain.max_items_per_pass {
            return Some(Stop::normal(
                RunStatus::Budget,
                format!("max_items_per_pass ({}) reached", self.drain.max_items_per_pass),
            ));
        }
        let elapsed = (now - self.started_at).to_std().unwrap_or_default();
        if elapsed >= self.drain.max_seconds_per_pass {
            return Some(Stop::normal(
                RunStatus::Budget,
                format!(
                    "max_seconds_per_pass ({}) used",
                    crate::duration::format_duration(self.drain.max_seconds_per_pass)
                ),
            ));
        }
        None
    }
}

/// A pass whose previous worker took less than this claims the next item while the
/// current worker runs (see `Pass::claim_ahead`).
const CLAIM_AHEAD_BELOW: std::time::Duration = std::time::Duration::from_millis(100);

/// `CLAIM_AHEAD_BELOW`, or in a test build `DRAINCTL_CLAIM_AHEAD_BELOW_MS` when set, so that
/// a test can make every worker count as quick (docs/configuration.md).
fn claim_ahead_below() -> std::time::Duration {
    #[cfg(feature = "testing")]
    if let Some(ms) = std::env::var(CLAIM_AHEAD_ENV).ok().and_then(|ms| ms.parse().ok()) {
        return std::time::Duration::from_millis(ms);
    }
    CLAIM_AHEAD_BELOW
}

/// How long an item claimed ahead waits for the worker running when it was claimed:
/// two and a half times `CLAIM_AHEAD_BELOW` — a worker running longer is no quick one, and
/// the item goes back (see `WorkerRecorder::give_back_claimed_ahead`).
pub(super) fn claimed_ahead_held_at_most() -> std::time::Duration {
    claim_ahead_below().saturating_mul(5) / 2
}

/// Test hook: overrides `CLAIM_AHEAD_BELOW` (milliseconds). Compiled only with the
/// `testing` feature, never into a release build.
#[cfg(feature = "testing")]
const CLAIM_AHEAD_ENV: &str = "DRAINCTL_CLAIM_AHEAD_BELOW_MS";

/// Results up to this size are committed by the statement that claims the next item;
/// larger ones are staged with it and committed while the next worker runs, so the
/// commit's copy of the bytes costs the pass no time of its own (docs/benchmarks.md).
const MAX_DIRECT_COMMIT_BYTES: usize = 64 * 1024;

/// Must this result be staged (and committed while the next worker runs) rather than
/// committed by the next claim? The test hook `hang_after_stage` stages every result so
/// that a test can stop the pass between staging and commit.
fn must_stage(result: &[u8]) -> bool {
    #[cfg(feature = "testing")]
    if std::env::var(super::FAULT_ENV).is_ok_and(|fault| fault == "hang_after_stage") {
        return true;
    }
    result.len() > MAX_DIRECT_COMMIT_BYTES
}

/// Record that the group now uses account `to`, with an `account_switched` event.
#[allow(clippy::too_many_arguments)]
fn record_switch(
    client: &mut impl postgres::GenericClient,
    outbox: &Outbox,
    view: &GroupView,
    switch: Switch,
    to: usize,
    item: &ClaimedItem,
    drain: &DrainConfig,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    let group = view.group;
    let (from, to) = (&group.accounts[switch.from].name, &group.accounts[to].name);
    crate::db::quota_groups::record_switch(client, &group.name, to, now)?;
    let matched_line = match switch.cause {
        crate::accounts::SwitchCause::BackoffEnded => None,
        _ => view.backoffs.get(switch.from).and_then(|row| row.reason.clone()),
    };
    let why = match switch.cause {
        crate::accounts::SwitchCause::StatedReset => "it stated when its limit resets",
        crate::accounts::SwitchCause::ConfirmedLimit => "its limit was confirmed",
        crate::accounts::SwitchCause::AccessRefused => "it was refused access",
        crate::accounts::SwitchCause::BackoffEnded => "the preferred account's backoff ended",
        crate::accounts::SwitchCause::QuotaReturned => {
            "it is out, and the stated reset of the account switched to has passed"
        }
    };
    let message = format!(
        "quota group {} switched from account {from} to {to}: {why}{}",
        group.name,
        matched_line.as_deref().map(|line| format!(" ({line})")).unwrap_or_default()
    );
    log::info!("{message}");
    let event = Event::new(EventKind::AccountSwitched, message)
        .drain(&drain.name)
        .quota_group(&group.name)
        .run(run_id)
        .item(item.id)
        .data(json!({
            "from": from,
            "to": to,
            "cause": switch.cause,
            "matched_line": matched_line,
        }));
    record_event(client, outbox, &event, now)
}

/// The stop of a pass whose quota group is parked (docs/rate-limits.md, "Parked groups").
fn parked_stop(quota_group: &str, controls: &PassControls, zone: chrono_tz::Tz) -> Option<Stop> {
    let parked_at = controls.parked_at?;
    Some(Stop::normal(
        RunStatus::RateLimited,
        format!(
            "quota group {quota_group} is parked since {} (needs attention: {}); `drainctl resume {}` once it is fixed",
            crate::output::local_time(parked_at, zone),
            controls.parked_reason.as_deref().unwrap_or("no reason recorded"),
            crate::commands::items::group_option(quota_group)
        ),
    ))
}
