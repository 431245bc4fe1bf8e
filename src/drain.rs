//! `drainctl drain NAME`: one pass of one drain.
//!
//! The pass takes a free concurrency slot (non-blocking advisory lock), records a run,
//! then claims items one at a time — re-reading pause, burst, backoff, window and budget
//! before each — runs the worker on each, classifies the outcome and settles the item:
//! a success is staged durably and then completed under the run's fencing token; a quota
//! hit gives the attempt back and backs off the account of the quota group it ran on; a
//! failure is retried with exponential backoff or dead-lettered at `max_attempts`.
//!
//! Between two workers there is one database round trip: a success is staged by the
//! statement that claims the next item, and committed (recording the next worker) while
//! that worker runs. The per-item statements are prepared once per pass.
//!
//! In a quota group with several accounts every claim first chooses the account (see
//! [`crate::accounts`]) under the group's row lock, and the worker runs with that account's
//! environment. A hit with a stated reset, or a confirmed one, lets the pass go on with the
//! next account; the item hit goes back to pending and is retried there.
//!
//! Resume tokens a worker prints are checked against `resume_token_format` and stored on
//! the item as they arrive; when the item runs again after an interruption the worker gets
//! `DRAIN_RESUME_TOKEN` and `resume_args`.

use std::time::Instant;

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::json;

use crate::accounts::{GroupView, Selection, Switch};
use crate::backoff::BackoffRule;
use crate::cli::DrainArgs;
use crate::clock::Clock;
use crate::config::{AccountConfig, Config, DrainConfig, QuotaGroupConfig, RESUME_TOKEN_PLACEHOLDER};
use crate::context::Context;
use crate::db::drains::{ensure_drain, DrainControls, PassControls};
use crate::db::events::{record_event, Event, Outbox};
use crate::db::items::{self, ClaimAccount, ClaimRequest, ClaimedItem, Committer, Completion, Failure};
use crate::db::runs::{self, NewRun};
use crate::db::{drain_slot_key, in_transaction, try_advisory_lock, PreparedStatements};
use crate::error::{Error, Result, EXIT_CONFIG, EXIT_OK, EXIT_TEMPORARY};
use crate::model::EventKind;
use crate::model::{AttemptOutcome, RunStatus, Trigger};
use crate::output::Report;
use crate::quota::{Classifier, Outcome};
use crate::worker::{run_worker, StopReason, WorkerExit, WorkerObserver, WorkerReport, WorkerSpec};

/// A resume token longer than this is never used, whatever `resume_token_format` allows.
const MAX_RESUME_TOKEN_CHARS: usize = 256;
/// Rejected resume tokens reported (event and log line) per item run; more are ignored
/// silently, so a worker that prints many cannot flood the events table.
const MAX_REJECTED_TOKENS_REPORTED: u32 = 5;
/// How often checkpoint lines may be written to the run row.
const CHECKPOINT_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// A pass waiting for a reset beats (and looks for a pause, a burst's end, SIGTERM) at
/// least this often, and sleeps at least this long between two beats.
const WAIT_POLL_MAX: std::time::Duration = std::time::Duration::from_secs(1);
const WAIT_POLL_MIN: std::time::Duration = std::time::Duration::from_millis(20);
/// Test hook: `DRAINCTL_FAULT=hang_after_stage` makes the pass stop dead between staging a
/// result and completing the item, so a test can `kill -9` it exactly there. Compiled only
/// with the `testing` feature, never into a release build (docs/configuration.md).
#[cfg(feature = "testing")]
pub const FAULT_ENV: &str = "DRAINCTL_FAULT";

/// How a pass ended.
#[derive(Debug, Clone)]
struct Stop {
    status: RunStatus,
    note: String,
    exit_code: u8,
}

impl Stop {
    fn normal(status: RunStatus, note: impl Into<String>) -> Stop {
        Stop { status, note: note.into(), exit_code: EXIT_OK }
    }
}

pub fn run(ctx: &mut Context, args: &DrainArgs) -> Result<Report> {
    let Context { config, clock, client, outbox } = ctx;
    let outbox: &Outbox = outbox;
    let drain = config.drain(&args.name)?;
    let group = config.quota_group(&drain.quota_group)?;
    let classifier = Classifier::new(drain.quota_profile, &drain.quota_patterns, &drain.veto_patterns)
        .map_err(|message| Error::Config(format!("drain {:?}: {message}", drain.name)))?;
    crate::worker::signals::install_termination_handlers()
        .map_err(|error| Error::Internal(format!("cannot install signal handlers: {error}")))?;
    let now = clock.now();
    let controls = ensure_drain(client, &drain.name, now)?;
    crate::reap::reap_crashed_runs(client, outbox, config, clock, Some(&drain.name))?;
    crate::reap::release_orphaned_items(client, outbox, config, clock, Some(&drain.name))?;

    let host = crate::worker::process::host_name();
    let host_id = crate::worker::process::host_id();
    let pid = std::process::id();
    let log_path = args.log_file.as_ref().map(|p| p.display().to_string());
    let new_run = NewRun {
        drain: &drain.name,
        trigger: args.trigger,
        host: &host,
        host_id: host_id.as_deref(),
        pid: pid as i32,
        process_start_time: crate::worker::process::process_start_time(pid).map(|t| t as i64),
        log_path: log_path.as_deref(),
    };
    if take_slot(client, &controls, drain.concurrency)?.is_none() {
        let note = format!("all {} concurrency slot(s) of drain {} are taken", drain.concurrency, drain.name);
        let run_id = runs::insert_lock_skipped_run(client, &new_run, &note, now)?;
        return Ok(Report::new(
            format!("{}: lock_skipped: {note}", drain.name),
            json!({ "drain": drain.name, "run_id": run_id, "status": RunStatus::LockSkipped, "note": note }),
        ));
    }
    let run_id = in_transaction(client, |tx| {
        let run_id = runs::insert_run(tx, &new_run, now)?;
        let event =
            Event::new(EventKind::RunStarted, format!("run {run_id} started ({})", args.trigger.as_str()))
                .drain(&drain.name)
                .run(run_id)
                .data(json!({ "trigger": args.trigger.as_str(), "host": host, "pid": pid }));
        record_event(tx, outbox, &event, now)?;
        Ok(run_id)
    })?;
    log::info!("drain {}: run {run_id} started", drain.name);

    let mut pass = Pass {
        config,
        drain,
        group,
        clock,
        client,
        outbox,
        classifier,
        run_id,
        trigger: args.trigger,
        started_at: now,
        done: 0,
        failed: 0,
        is_account_suspected: false,
        statements: PreparedStatements::default(),
        unstaged: None,
        staged: None,
    };
    let stop = match pass.work() {
        Ok(stop) => stop,
        Err(error) => {
            // Record what we can, then report the error. If the database itself is gone the
            // run stays `running` and the next pass or supervise reaps it as crashed.
            let note = format!("stopped by an error: {}", error.display_scrubbed());
            let at = pass.clock.now();
            let event = finished_event(&pass, RunStatus::Failed, &note);
            // Stopped by an error, not by the items: give their attempts back.
            let max_attempts = pass.drain.max_attempts as i32;
            let released = in_transaction(pass.client, |tx| {
                items::release_run_items(tx, run_id, &note, max_attempts, true, at)?;
                if runs::finish_run(tx, run_id, RunStatus::Failed, Some(&note), at)? {
                    record_event(tx, pass.outbox, &event, at)?;
                }
                Ok(())
            });
            if let Err(release_error) = released {
                log::error!("run {run_id}: could not release items after an error: {release_error}");
            }
            return Err(error);
        }
    };
    let at = pass.clock.now();
    let event = finished_event(&pass, stop.status, &stop.note);
    in_transaction(pass.client, |tx| {
        // Supervise may have ended this run already (hung): then it told the story.
        if runs::finish_run(tx, run_id, stop.status, Some(&stop.note), at)? {
            record_event(tx, pass.outbox, &event, at)?;
        }
        Ok(())
    })?;
    log::info!("drain {}: run {run_id} finished: {} ({})", pass.drain.name, stop.status, stop.note);
    let human = format!(
        "{}: run {run_id} {}: {} done, {} failed — {}",
        pass.drain.name, stop.status, pass.done, pass.failed, stop.note
    );
    let report = Report::new(
        human,
        json!({
            "drain": pass.drain.name,
            "run_id": run_id,
            "status": stop.status,
            "note": stop.note,
            "items_done": pass.done,
            "items_failed": pass.failed,
        }),
    );
    if stop.exit_code != EXIT_OK {
        // Non-zero outcomes also say why on stderr, in the one-line form.
        eprintln!("drainctl: drain {}: {}", pass.drain.name, crate::output::escape_controls(&stop.note));
    }
    Ok(report.with_exit_code(stop.exit_code))
}

fn finished_event(pass: &Pass, status: RunStatus, note: &str) -> Event {
    Event::new(EventKind::RunFinished, format!("run {} finished: {status} ({note})", pass.run_id))
        .drain(&pass.drain.name)
        .run(pass.run_id)
        .data(json!({ "status": status, "items_done": pass.done, "items_failed": pass.failed, "note": note }))
}

/// Take the first free concurrency slot of the drain; the lock lives as long as the
/// connection, so a crashed pass frees its slot automatically.
fn take_slot(client: &mut Client, controls: &DrainControls, concurrency: u32) -> Result<Option<u32>> {
    for slot in 0..concurrency {
        if try_advisory_lock(client, drain_slot_key(controls.id, slot))? {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// How one item ended, for the pass loop.
enum ItemEnd {
    /// Succeeded: its result is staged and committed later, and the commit records the
    /// item's end on the run.
    Succeeded,
    /// Failed, released or lost: the pass goes on.
    Settled,
    /// The pass must stop.
    Stop(Stop),
}

struct Pass<'a> {
    config: &'a Config,
    drain: &'a DrainConfig,
    group: &'a QuotaGroupConfig,
    clock: &'a Clock,
    client: &'a mut Client,
    /// Where the events the notifier wants wait for it.
    outbox: &'a Outbox,
    classifier: Classifier,
    run_id: i64,
    trigger: Trigger,
    started_at: DateTime<Utc>,
    done: u32,
    failed: u32,
    /// The account of the current item carries a suspected mark that a success clears.
    is_account_suspected: bool,
    /// The per-item statements, parsed and planned once per pass.
    statements: PreparedStatements,
    /// A succeeded item whose result is staged with the next claim.
    unstaged: Option<SucceededItem>,
    /// A staged result not committed yet (see `StagedItem`).
    staged: Option<StagedItem>,
}

struct SucceededItem {
    item: StagedItem,
    result: Vec<u8>,
}

/// A result this pass staged but has not committed yet. Its commit waits for the next
/// worker to start and then runs while that worker does, so the database round trip
/// costs no time of its own; when no worker follows (the pass stops, the next item does
/// not reach a worker), it is committed before anything else. Staging made it safe: a
/// crash before the commit leaves it to the reaper, which verifies and commits it.
struct StagedItem {
    id: i64,
    key: String,
    account: String,
    /// The account carried a suspected mark when the item was claimed: a success clears it.
    clears_suspicion: bool,
}

impl Pass<'_> {
    fn work(&mut self) -> Result<Stop> {
        let stop = self.work_items();
        // The last staged result is committed before the pass ends, whatever ended it.
        let committed = self.commit_staged();
        match (stop, committed) {
            (Ok(stop), Ok(())) => Ok(stop),
            (Err(error), Ok(())) | (Ok(_), Err(error)) => Err(error),
            (Err(error), Err(commit_error)) => {
                log::error!(
                    "drain {}: could not commit the last staged result: {commit_error}",
                    self.drain.name
                );
                Err(error)
            }
        }
    }

    fn work_items(&mut self) -> Result<Stop> {
        loop {
            // What the last item recorded is notified now, not at the end of the pass.
            crate::notify::notify_recorded(self.config, self.client, self.outbox, self.clock.now());
            if let Some(signal) = crate::worker::signals::termination_signal() {
                return Ok(Stop {
                    status: RunStatus::Failed,
                    note: format!("interrupted by signal {signal}"),
                    exit_code: EXIT_TEMPORARY,
                });
            }
            let now = self.clock.now();
            let (controls, claimed, account) = self.stage_and_claim_next_item(now)?;
            self.is_account_suspected = controls.is_suspected;
            // A parked group is not waited for: only an operator clears it.
            let backoff_until = controls.backoff_until.filter(|_| controls.parked_at.is_none());
            if let Some(stop) = self.reason_to_stop(controls, now) {
                if let Some(item) = claimed {
                    // Cannot happen (the claim checks the same conditions); never keep it.
                    self.release(&item, AttemptOutcome::NotStarted, &stop.note, now)?;
                }
                // A reset near enough is waited for inside the pass (docs/rate-limits.md).
                if let Some(until) = backoff_until
                    .filter(|until| stop.status == RunStatus::RateLimited && self.may_wait_until(*until, now))
                {
                    self.commit_staged()?;
                    match self.wait_for_reset(until, &stop.note)? {
                        None => continue,
                        Some(stop) => return Ok(stop),
                    }
                }
                return Ok(stop);
            }
            let Some(item) = claimed else {
                return Ok(Stop::normal(RunStatus::Drained, "no item is available now"));
            };
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

    /// Stage the previous item's result, if one waits, then choose the account (in a group
    /// with several), re-read the controls and claim the next item on it: for a group
    /// with one account, all in one statement, the one round trip between two workers.
    /// Returns the controls — their backoff is the group's wait when no account may be
    /// used — the item, and the account's index in the group.
    fn stage_and_claim_next_item(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(PassControls, Option<ClaimedItem>, usize)> {
        let local_limits_allow = self.local_limit(now).is_none();
        let (drain, group, run_id) = (self.drain, self.group, self.run_id);
        let is_burst_trigger = self.trigger == Trigger::Burst;
        let request = |account| ClaimRequest {
            drain: &drain.name,
            account,
            run_id,
            now,
            is_burst_trigger,
            local_limits_allow,
        };
        if !group.has_accounts_to_switch() {
            let account =
                ClaimAccount { quota_group: &group.name, account: &group.accounts[0].name, is_allowed: true };
            let request = request(account);
            let (controls, item) = match &self.unstaged {
                Some(succeeded) => {
                    let claim = items::stage_and_claim_next_item(
                        self.client,
                        &mut self.statements,
                        succeeded.item.id,
                        &succeeded.result,
                        &request,
                    )?;
                    // Only once it is staged: on an error the pass's end still stages it.
                    self.staged = self.unstaged.take().map(|succeeded| succeeded.item);
                    #[cfg(feature = "testing")]
                    self.after_staging();
                    claim
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
                is_allowed: wait.is_none(),
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

    /// For a drain fed from a source folder: the item's file, if it no longer exists.
    fn vanished_source_file(&self, item: &ClaimedItem) -> Option<String> {
        self.drain.source.as_ref()?;
        let path = item.payload.get("path")?.as_str()?;
        match std::fs::symlink_metadata(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some(path.to_string()),
            _ => None,
        }
    }

    /// Why the pass must stop before the next item, given the controls read with the
    /// claim: its run ended by someone else, pause, end of burst, backoff, then (outside a burst) window and budget.
    fn reason_to_stop(&self, controls: PassControls, now: DateTime<Utc>) -> Option<Stop> {
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
        if let Some(stop) = parked_stop(&self.drain.quota_group, &controls) {
            return Some(stop);
        }
        let is_bursting = controls.burst_until.is_some_and(|until| now < until);
        if self.trigger == Trigger::Burst && !is_bursting {
            return Some(Stop::normal(
                RunStatus::BurstEnded,
                "the burst ended (deadline passed or turned off)",
            ));
        }
        if let Some(until) = controls.backoff_until.filter(|until| now < *until) {
            return Some(Stop::normal(
                RunStatus::RateLimited,
                format!(
                    "quota group {} backs off until {}: {}",
                    self.drain.quota_group,
                    until.to_rfc3339(),
                    controls.backoff_reason.unwrap_or_default()
                ),
            ));
        }
        if is_bursting {
            return None;
        }
        self.local_limit(now)
    }

    /// The longest a pass waits inside itself for its quota group's reset.
    fn max_wait(&self) -> std::time::Duration {
        self.drain.max_wait
    }

    /// Whether the pass may wait for a backoff that ends at `until`: within `max_wait`,
    /// and (outside a burst, whose budgets do not apply) ending inside
    /// `max_seconds_per_pass`, which the wait counts against.
    fn may_wait_until(&self, until: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let wait = (until - now).to_std().unwrap_or_default();
        if wait > self.max_wait() {
            return false;
        }
        let pass_ends = crate::clock::later(self.started_at, self.drain.max_seconds_per_pass);
        self.trigger == Trigger::Burst || until <= pass_ends
    }

    /// Wait, holding no item, until the quota group's backoff ends at `until` (`why` says
    /// whose and why): the run records that it waits and beats — a checkpoint about every
    /// second, so supervise never takes it for hung — and wakes early for SIGTERM, a
    /// pause, the end of its burst or its run being ended. None when the wait is over and
    /// the pass goes on claiming; otherwise why it stops.
    fn wait_for_reset(&mut self, until: DateTime<Utc>, why: &str) -> Result<Option<Stop>> {
        log::info!("drain {}: waiting for the reset: {why}", self.drain.name);
        let reason = format!("waiting for the reset: {why}");
        loop {
            let now = self.clock.now();
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
            )?;
            if let Some(signal) = interrupted {
                return Ok(Some(Stop {
                    status: RunStatus::Failed,
                    note: format!("interrupted by signal {signal} while waiting for the reset"),
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
                let waiting_cleared =
                    runs::beat_while_waiting(self.client, &self.drain.name, self.run_id, now, None, None);
                if let Err(error) = waiting_cleared {
                    log::warn!("drain {}: could not clear the waiting mark: {error}", self.drain.name);
                }
                return Ok(Some(stop));
            }
            if is_over {
                return Ok(None);
            }
            let left = (until - now).to_std().unwrap_or_default();
            std::thread::sleep(left.clamp(WAIT_POLL_MIN, WAIT_POLL_MAX));
        }
    }

    /// The limits checked without the database: the window (for supervisor passes) and
    /// the item and time budgets. Not applied during a burst.
    fn local_limit(&self, now: DateTime<Utc>) -> Option<Stop> {
        if self.trigger == Trigger::Supervisor {
            if let Some(window) = &self.drain.window {
                if !window.contains(now, self.config.defaults.timezone) {
                    return Some(Stop::normal(
                        RunStatus::WindowClosed,
                        format!("outside window {}", window.describe()),
                    ));
                }
            }
        }
        let waiting = u32::from(self.unstaged.is_some()) + u32::from(self.staged.is_some());
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

    /// Run the worker on one claimed item, on account number `account_index` of the
    /// group, and settle it.
    fn process(&mut self, item: &ClaimedItem, account_index: usize) -> Result<ItemEnd> {
        if let Some(path) = self.vanished_source_file(item) {
            self.commit_staged()?;
            let now = self.clock.now();
            let note = format!("source file {path} vanished before the item ran");
            let settled = in_transaction(self.client, |tx| {
                let settled = items::settle_claimed_skipped_missing(tx, item.id, self.run_id, &note, now)?;
                if settled {
                    let event =
                        Event::new(EventKind::ItemSkippedMissing, format!("item {}: {note}", item.key))
                            .drain(&self.drain.name)
                            .run(self.run_id)
                            .item(item.id);
                    record_event(tx, self.outbox, &event, now)?;
                }
                Ok(settled)
            })?;
            log::info!("drain {}: item {}: {note} (settled: {settled})", self.drain.name, item.key);
            return Ok(ItemEnd::Settled);
        }
        let account = self.group.accounts.get(account_index).cloned().unwrap_or_else(AccountConfig::implicit);
        let payload = serde_json::to_vec(&item.payload).map_err(|error| {
            Error::Internal(format!("cannot encode payload of item {}: {error}", item.key))
        })?;
        let resume_token = self.usable_resume_token(item)?;
        let mut env = merged_env(&self.drain.env, &account.env);
        env.push(("DRAIN_NAME".into(), self.drain.name.clone()));
        env.push(("DRAIN_ITEM_KEY".into(), item.key.clone()));
        env.push(("DRAIN_RUN_ID".into(), self.run_id.to_string()));
        env.push(("DRAIN_ATTEMPT".into(), item.attempt.to_string()));
        // The drain's `env` is added after these removals, so it can set them again.
        let mut env_remove: Vec<&str> = crate::config::WITHHELD_ENV.to_vec();
        if account.is_implicit() {
            env_remove.push("DRAIN_ACCOUNT");
        } else {
            env.push(("DRAIN_ACCOUNT".into(), account.name.clone()));
        }
        let mut argv = self.drain.command.clone();
        match &resume_token {
            Some(token) => {
                env.push(("DRAIN_RESUME_TOKEN".into(), token.clone()));
                argv.extend(
                    self.drain.resume_args.iter().map(|arg| arg.replace(RESUME_TOKEN_PLACEHOLDER, token)),
                );
            }
            None => env_remove.push("DRAIN_RESUME_TOKEN"),
        }
        let spec = WorkerSpec {
            argv: &argv,
            workdir: self.drain.workdir.as_deref(),
            env: &env,
            env_remove: &env_remove,
            payload: &payload,
            item_timeout: self.drain.item_timeout,
            kill_grace: self.config.defaults.kill_grace,
            result_cap_bytes: self.drain.max_result_bytes,
            stderr_tail_bytes: self.drain.stderr_tail_bytes,
            checkpoint_pattern: Some(&self.drain.checkpoint_pattern),
            resume_pattern: Some(&self.drain.resume_pattern),
        };
        log::info!(
            "drain {}: item {} attempt {} starting{}{}",
            self.drain.name,
            item.key,
            item.attempt,
            if account.is_implicit() { String::new() } else { format!(" on account {}", account.name) },
            if resume_token.is_some() { " (resuming)" } else { "" }
        );
        let mut observer = WorkerRecorder {
            staged: self.staged.take(),
            client: self.client,
            outbox: self.outbox,
            statements: &mut self.statements,
            clock: self.clock,
            drain: self.drain,
            run_id: self.run_id,
            item,
            unwritten: 0,
            last_write: None,
            resume_token,
            unwritten_token: None,
            last_token_write: None,
            rejected_tokens: 0,
            error: None,
            committed: None,
        };
        let result = run_worker(&spec, &mut observer);
        observer.flush();
        if let Some(error) = observer.error.take() {
            log::warn!("drain {}: could not record checkpoints or resume tokens: {error}", self.drain.name);
        }
        // The previous result was committed when the worker started; without a start, or
        // when that commit failed, it is committed now.
        let (not_committed, committed) = (observer.staged.take(), observer.committed.take());
        self.staged = not_committed;
        if let Some((staged, completion, at)) = committed {
            self.settle_commit(&staged, completion, at)?;
        }
        self.commit_staged()?;
        let report = match result {
            Ok(report) => report,
            Err(spawn_error) => {
                return self.worker_not_started(item, &spawn_error.to_string()).map(ItemEnd::Stop)
            }
        };
        let now = self.clock.now();
        if report.stop_reason == Some(StopReason::Interrupted) {
            let note = match crate::worker::signals::termination_signal() {
                Some(signal) => format!("interrupted by signal {signal} while running item {}", item.key),
                None => format!("interrupted while running item {}", item.key),
            };
            self.release(item, AttemptOutcome::Interrupted, &note, now)?;
            return Ok(ItemEnd::Stop(Stop { status: RunStatus::Failed, note, exit_code: EXIT_TEMPORARY }));
        }
        let exit_code = match report.exit {
            WorkerExit::Code(code) => Some(code),
            WorkerExit::Signal(_) => None,
        };
        let outcome = self.classifier.classify(
            &report.stdout_tail,
            &report.stderr_tail,
            exit_code,
            now,
            self.config.defaults.timezone,
        );
        match outcome {
            Outcome::QuotaHit(hit) => {
                if self.charge_poison_hit(item, &report, &hit, now)? {
                    return Ok(ItemEnd::Settled);
                }
                let group = self.drain.quota_group.clone();
                let account_name = account.name.clone();
                let decision = in_transaction(self.client, |tx| {
                    release_refunded(
                        tx,
                        item.id,
                        self.run_id,
                        AttemptOutcome::QuotaHit,
                        exit_code,
                        &hit.matched_line,
                        now,
                    )?;
                    crate::ratelimit::record_quota_hit(
                        tx,
                        self.outbox,
                        crate::ratelimit::HitSource {
                            drain: &self.drain.name,
                            quota_group: &group,
                            account: &account_name,
                            run_id: Some(self.run_id),
                            item_id: Some(item.id),
                        },
                        &hit,
                        now,
                        self.config.defaults.backoff_policy(),
                    )
                })?;
                if self.may_wait_until(decision.until, now) {
                    // The next claim sees the backoff and waits for its end.
                    log::info!(
                        "drain {}: quota hit on item {}: its group backs off until {} ({})",
                        self.drain.name,
                        item.key,
                        decision.until.to_rfc3339(),
                        hit.matched_line
                    );
                    return Ok(ItemEnd::Settled);
                }
                if self.group.has_accounts_to_switch() && decision.rule != BackoffRule::Suspected {
                    // The next claim chooses another account, or stops the pass.
                    log::info!(
                        "drain {}: quota hit on item {} on account {}: it backs off until {} ({}); going on",
                        self.drain.name,
                        item.key,
                        account.name,
                        decision.until.to_rfc3339(),
                        hit.matched_line
                    );
                    return Ok(ItemEnd::Settled);
                }
                let subject = if account.is_implicit() {
                    format!("group {group}")
                } else {
                    format!("account {} of group {group}", account.name)
                };
                Ok(ItemEnd::Stop(Stop::normal(
                    RunStatus::RateLimited,
                    format!(
                        "quota hit on item {}: {subject} backs off until {} ({})",
                        item.key,
                        decision.until.to_rfc3339(),
                        hit.matched_line
                    ),
                )))
            }
            Outcome::Other if report.exit == WorkerExit::Code(0) && report.stop_reason.is_none() => {
                self.succeed(item, &account, report)
            }
            Outcome::ServerError { matched_line } => {
                self.fail(
                    item,
                    &report,
                    AttemptOutcome::Transient,
                    &format!("server error: {matched_line}"),
                    now,
                )?;
                Ok(ItemEnd::Settled)
            }
            Outcome::Other => {
                let (kind, error) = describe_failure(&report, self.drain);
                self.fail(item, &report, kind, &error, now)?;
                Ok(ItemEnd::Settled)
            }
        }
    }

    /// The item's stored resume token when it may be used now; a stored token that no
    /// longer passes the checks (the configuration changed) is dropped with an event.
    fn usable_resume_token(&mut self, item: &ClaimedItem) -> Result<Option<String>> {
        let Some(token) = &item.resume_token else { return Ok(None) };
        let Err(why) = check_resume_token(token, self.drain) else { return Ok(Some(token.clone())) };
        let now = self.clock.now();
        in_transaction(self.client, |tx| {
            items::clear_resume_token(tx, item.id)?;
            let event = rejected_token_event(self.drain, self.run_id, item, token, &why);
            record_event(tx, self.outbox, &event, now)
        })?;
        Ok(None)
    }

    fn worker_not_started(&mut self, item: &ClaimedItem, why: &str) -> Result<Stop> {
        let now = self.clock.now();
        let note = format!(
            "{why}; fix `command` of drain {} in the configuration (item {} keeps its attempts)",
            self.drain.name, item.key
        );
        let event = Event::new(EventKind::WorkerNotStarted, note.clone())
            .drain(&self.drain.name)
            .run(self.run_id)
            .item(item.id);
        in_transaction(self.client, |tx| {
            release_refunded(tx, item.id, self.run_id, AttemptOutcome::NotStarted, None, &note, now)?;
            record_event(tx, self.outbox, &event, now)
        })?;
        Ok(Stop { status: RunStatus::Failed, note, exit_code: EXIT_CONFIG })
    }

    /// Give the item back with its attempt refunded.
    fn release(
        &mut self,
        item: &ClaimedItem,
        outcome: AttemptOutcome,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        in_transaction(self.client, |tx| release_refunded(tx, item.id, self.run_id, outcome, None, note, now))
    }

    /// Keep the result for staging with the next claim; its commit follows when the next
    /// worker starts (see `StagedItem`).
    fn succeed(
        &mut self,
        item: &ClaimedItem,
        account: &AccountConfig,
        report: WorkerReport,
    ) -> Result<ItemEnd> {
        self.commit_staged()?;
        self.unstaged = Some(SucceededItem {
            item: StagedItem {
                id: item.id,
                key: item.key.clone(),
                account: account.name.clone(),
                clears_suspicion: self.is_account_suspected,
            },
            result: report.stdout,
        });
        Ok(ItemEnd::Succeeded)
    }

    /// Stage the result that waits for the next claim, on its own.
    fn stage_unstaged(&mut self) -> Result<()> {
        let Some(succeeded) = &self.unstaged else { return Ok(()) };
        let now = self.clock.now();
        items::stage_result(
            self.client,
            &mut self.statements,
            &self.drain.name,
            succeeded.item.id,
            self.run_id,
            &succeeded.result,
            now,
        )?;
        self.staged = self.unstaged.take().map(|succeeded| succeeded.item);
        #[cfg(feature = "testing")]
        self.after_staging();
        Ok(())
    }

    /// The test hook `DRAINCTL_FAULT=hang_after_stage` (`testing` feature only).
    #[cfg(feature = "testing")]
    fn after_staging(&self) {
        if std::env::var(FAULT_ENV).is_ok_and(|fault| fault == "hang_after_stage") {
            let key = self.staged.as_ref().map_or("", |staged| staged.key.as_str());
            log::warn!("{FAULT_ENV}=hang_after_stage: stopping dead after staging item {key}");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }

    /// Stage and commit the waiting result now, if there is one.
    fn commit_staged(&mut self) -> Result<()> {
        self.stage_unstaged()?;
        let Some(staged) = self.staged.take() else { return Ok(()) };
        let now = self.clock.now();
        let completion = items::complete_item(
            self.client,
            &mut self.statements,
            staged.id,
            self.run_id,
            now,
            None,
            Committer::Run,
        )?;
        self.settle_commit(&staged, completion, now)
    }

    /// After the commit of a staged result: count it, clear the account's suspected mark
    /// when it carried one, or record why it could not be committed (releasing the item of
    /// a damaged one).
    fn settle_commit(
        &mut self,
        staged: &StagedItem,
        completion: Completion,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (drain, run_id) = (self.drain, self.run_id);
        match completion {
            Completion::Completed => {
                self.done += 1;
                log::info!("drain {}: item {} done", drain.name, staged.key);
                if staged.clears_suspicion {
                    in_transaction(self.client, |tx| {
                        crate::ratelimit::record_success(
                            tx,
                            self.outbox,
                            &drain.name,
                            &drain.quota_group,
                            &staged.account,
                            now,
                        )
                    })?;
                }
            }
            Completion::ClaimLost => {
                let message = format!(
                    "run {run_id} lost its claim on item {} (released by supervise, now owned by another run); result not committed",
                    staged.key
                );
                log::warn!("{message}");
                let event =
                    Event::new(EventKind::ClaimLost, message).drain(&drain.name).run(run_id).item(staged.id);
                record_event(self.client, self.outbox, &event, now)?;
            }
            Completion::StagedResultDamaged => {
                let message = format!("staged result of item {} did not verify; item released", staged.key);
                log::error!("{message}");
                let event = Event::new(EventKind::StagedResultDiscarded, message.clone())
                    .drain(&drain.name)
                    .run(run_id)
                    .item(staged.id);
                in_transaction(self.client, |tx| {
                    release_refunded(
                        tx,
                        staged.id,
                        run_id,
                        AttemptOutcome::StagingFailed,
                        None,
                        &message,
                        now,
                    )?;
                    record_event(tx, self.outbox, &event, now)
                })?;
            }
        }
        Ok(())
    }

    fn fail(
        &mut self,
        item: &ClaimedItem,
        report: &WorkerReport,
        kind: AttemptOutcome,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let delay = crate::backoff::retry_delay(
            item.attempt.max(1) as u32,
            self.drain.retry_backoff.base,
            self.drain.retry_backoff.max,
            crate::backoff::jitter_seed(),
        );
        let retry_at = crate::clock::later(now, delay);
        let exit_code = match report.exit {
            WorkerExit::Code(code) => Some(code),
            WorkerExit::Signal(_) => None,
        };
        let max_attempts = self.drain.max_attempts as i32;
        let failure = in_transaction(self.client, |tx| {
            let failure = items::fail_item(
                tx,
                item.id,
                self.run_id,
                error,
                &report.stderr_tail,
                max_attempts,
                retry_at,
                now,
            )?;
            items::finish_attempt(tx, item.id, self.run_id, kind, exit_code, Some(error), now)?;
            if failure != Failure::ClaimLost {
                runs::count_failed_item(tx, self.run_id)?;
                if kind == AttemptOutcome::Failure {
                    // The worker failed by itself: its session is not worth resuming.
                    items::clear_resume_token(tx, item.id)?;
                }
            }
            let event = match failure {
                Failure::Dead => Some(Event::new(
                    EventKind::ItemDeadLettered,
                    format!("item {} dead after {} attempts: {error}", item.key, item.attempt),
                )),
                Failure::ClaimLost => Some(Event::new(
                    EventKind::ClaimLost,
                    format!("run {} lost its claim on item {}; failure not recorded", self.run_id, item.key),
                )),
                Failure::Retry(_) => None,
            };
            if let Some(event) = event {
                let event = event.drain(&self.drain.name).run(self.run_id).item(item.id).data(json!({
                    "attempt": item.attempt,
                    "outcome": kind,
                    "error": error,
                    "stderr_tail": String::from_utf8_lossy(tail(&report.stderr_tail, 2048)),
                }));
                record_event(tx, self.outbox, &event, now)?;
            }
            Ok(failure)
        })?;
        if failure != Failure::ClaimLost {
            self.failed += 1;
        }
        log::info!(
            "drain {}: item {} attempt {} failed ({kind}): {error}",
            self.drain.name,
            item.key,
            item.attempt
        );
        Ok(())
    }
}

/// Give an item back with its attempt refunded and close the attempt with `outcome`, in
/// the caller's transaction.
fn release_refunded(
    tx: &mut impl postgres::GenericClient,
    item_id: i64,
    run_id: i64,
    outcome: AttemptOutcome,
    exit_code: Option<i32>,
    note: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    items::release_item(tx, item_id, run_id, now)?;
    items::finish_attempt(tx, item_id, run_id, outcome, exit_code, Some(note), now)
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
        crate::accounts::SwitchCause::BackoffEnded => "the preferred account's backoff ended",
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

/// The drain's environment with the account's merged over it (the account wins).
fn merged_env(drain: &[(String, String)], account: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        drain.iter().filter(|(name, _)| !account.iter().any(|(other, _)| other == name)).cloned().collect();
    env.extend(account.iter().cloned());
    env
}

/// Why a resume token printed by a worker may not be used, if it may not. Beyond the
/// drain's `resume_token_format`, a token never starts with `-` (it would read as an
/// option) and never holds whitespace or control characters.
pub fn check_resume_token(token: &str, drain: &DrainConfig) -> std::result::Result<(), String> {
    if token.is_empty() {
        return Err("it is empty".into());
    }
    if token.chars().count() > MAX_RESUME_TOKEN_CHARS {
        return Err(format!("it is longer than {MAX_RESUME_TOKEN_CHARS} characters"));
    }
    if token.starts_with('-') {
        return Err("it starts with '-' and would read as an option".into());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters".into());
    }
    if !drain.resume_token_format.is_match(token) {
        return Err("it does not match resume_token_format".into());
    }
    Ok(())
}

/// A token as it may appear in a message: at most 80 characters, escaped.
fn shown_token(token: &str) -> String {
    let short: String = token.chars().take(80).collect();
    let ellipsis = if token.chars().count() > 80 { "…" } else { "" };
    format!("{:?}{ellipsis}", short)
}

fn tail(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[bytes.len().saturating_sub(max)..]
}

/// The outcome kind and error text of a failed attempt.
fn describe_failure(report: &WorkerReport, drain: &DrainConfig) -> (AttemptOutcome, String) {
    let last_line = String::from_utf8_lossy(&report.stderr_tail)
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .map(|line| line.trim().chars().take(300).collect::<String>());
    let with_stderr = |text: String| match &last_line {
        Some(line) => format!("{text}: {line}"),
        None => text,
    };
    match (report.stop_reason, report.exit) {
        (Some(StopReason::TimedOut), _) => (
            AttemptOutcome::Transient,
            format!("timed out after item_timeout {}", crate::duration::format_duration(drain.item_timeout)),
        ),
        (Some(StopReason::OutputCapExceeded), _) => (
            AttemptOutcome::Failure,
            format!("output exceeded the {} byte result cap (max_result_bytes)", drain.max_result_bytes),
        ),
        (_, WorkerExit::Signal(signal)) => {
            (AttemptOutcome::Transient, with_stderr(format!("killed by signal {signal}")))
        }
        (_, WorkerExit::Code(code)) => (AttemptOutcome::Failure, with_stderr(format!("exit code {code}"))),
    }
}

fn rejected_token_event(
    drain: &DrainConfig,
    run_id: i64,
    item: &ClaimedItem,
    token: &str,
    why: &str,
) -> Event {
    Event::new(
        EventKind::ResumeTokenRejected,
        format!("resume token {} of item {} ignored: {why}", shown_token(token), item.key),
    )
    .drain(&drain.name)
    .run(run_id)
    .item(item.id)
    .data(json!({ "token": token.chars().take(MAX_RESUME_TOKEN_CHARS).collect::<String>(), "why": why }))
}

/// Poison items (docs/rate-limits.md): an item whose own output reads as a limit while the
/// rest of its quota group works must not stall the group.
impl Pass<'_> {
    /// Count the quota hit towards the item's streak; once the streak reaches
    /// `poison_after`, charge the hit as a failure attempt (with a `quota_hit_charged`
    /// event) instead of refunding it and backing the group off. True when charged.
    fn charge_poison_hit(
        &mut self,
        item: &ClaimedItem,
        report: &WorkerReport,
        hit: &crate::quota::QuotaHit,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let poison_after = self.drain.poison_after;
        let group_drains: Vec<String> = self
            .config
            .drains
            .iter()
            .filter(|drain| drain.quota_group == self.drain.quota_group)
            .map(|drain| drain.name.clone())
            .collect();
        let (drain, run_id, outbox) = (self.drain, self.run_id, self.outbox);
        let charged = in_transaction(self.client, |tx| {
            let streak = items::count_quota_hit(tx, item.id, run_id, &group_drains)?;
            let charged = poison_after > 0 && i64::from(streak) >= i64::from(poison_after);
            if charged {
                let event = Event::new(
                    EventKind::QuotaHitCharged,
                    format!(
                        "item {} read as a quota hit {streak} times in a row while other items of quota group {} succeeded: this hit uses an attempt ({})",
                        item.key, drain.quota_group, hit.matched_line
                    ),
                )
                .drain(&drain.name)
                .quota_group(&drain.quota_group)
                .run(run_id)
                .item(item.id)
                .data(json!({ "streak": streak, "poison_after": poison_after, "matched_line": hit.matched_line }));
                record_event(tx, outbox, &event, now)?;
            }
            Ok(charged)
        })?;
        if charged {
            let error =
                format!("quota hit charged as a failure (poison_after {poison_after}): {}", hit.matched_line);
            self.fail(item, report, AttemptOutcome::Failure, &error, now)?;
        }
        Ok(charged)
    }
}

/// Records what a running worker reports: checkpoints and resume tokens, each at most
/// one database write per second. A valid new token is stored at once or, right after
/// another write, within a second — while the worker still runs, so a token printed
/// before a crash or a kill survives it.
struct WorkerRecorder<'a> {
    client: &'a mut Client,
    outbox: &'a Outbox,
    statements: &'a mut PreparedStatements,
    clock: &'a Clock,
    drain: &'a DrainConfig,
    run_id: i64,
    item: &'a ClaimedItem,
    unwritten: i64,
    last_write: Option<Instant>,
    /// The token stored on the item now.
    resume_token: Option<String>,
    /// A checked token not stored yet.
    unwritten_token: Option<String>,
    last_token_write: Option<Instant>,
    rejected_tokens: u32,
    error: Option<Error>,
    /// The pass's staged result, committed as soon as the worker has started.
    staged: Option<StagedItem>,
    /// That commit, how it went and when; a failed one leaves the item in `staged`.
    committed: Option<(StagedItem, Completion, DateTime<Utc>)>,
}

impl WorkerRecorder<'_> {
    /// Write what is not written yet.
    fn flush(&mut self) {
        self.flush_token();
        if self.unwritten == 0 {
            return;
        }
        let result = runs::record_checkpoint(self.client, self.run_id, self.unwritten, self.clock.now());
        self.unwritten = 0;
        self.last_write = Some(Instant::now());
        if let Err(error) = result {
            self.error.get_or_insert(error);
        }
    }

    fn flush_token(&mut self) {
        let Some(token) = self.unwritten_token.take() else { return };
        self.last_token_write = Some(Instant::now());
        match items::set_resume_token(self.client, self.item.id, self.run_id, &token) {
            Ok(_) => {
                log::info!("drain {}: item {}: resume token stored", self.drain.name, self.item.key);
                self.resume_token = Some(token);
            }
            Err(error) => {
                self.error.get_or_insert(error);
            }
        }
    }

    fn reject_token(&mut self, token: &str, why: &str) {
        self.rejected_tokens += 1;
        if self.rejected_tokens > MAX_REJECTED_TOKENS_REPORTED {
            return;
        }
        let (drain, key) = (&self.drain.name, &self.item.key);
        log::warn!("drain {drain}: item {key}: resume token {} ignored: {why}", shown_token(token));
        if self.rejected_tokens == MAX_REJECTED_TOKENS_REPORTED {
            log::warn!("drain {drain}: item {key}: further rejected resume tokens are not reported");
        }
        let event = rejected_token_event(self.drain, self.run_id, self.item, token, why);
        if let Err(error) = record_event(self.client, self.outbox, &event, self.clock.now()) {
            self.error.get_or_insert(error);
        }
    }
}

impl WorkerObserver for WorkerRecorder<'_> {
    fn started(&mut self, pid: u32) {
        let worker = (pid as i32, crate::worker::process::process_start_time(pid).map(|t| t as i64));
        // The previous item's commit, one statement that also records this worker, runs
        // while this worker does; what follows from it waits until the worker is done.
        if let Some(staged) = self.staged.take() {
            let now = self.clock.now();
            match items::complete_item(
                self.client,
                self.statements,
                staged.id,
                self.run_id,
                now,
                Some(worker),
                Committer::Run,
            ) {
                Ok(completion) => {
                    self.committed = Some((staged, completion, now));
                    return;
                }
                Err(error) => {
                    log::warn!(
                        "drain {}: item {}: commit failed, retried after the running worker: {error}",
                        self.drain.name,
                        staged.key
                    );
                    self.staged = Some(staged);
                }
            }
        }
        if let Err(error) = runs::set_worker(self.client, self.statements, self.run_id, worker.0, worker.1) {
            self.error.get_or_insert(error);
        }
    }

    fn checkpoint(&mut self, _line: &str) {
        self.unwritten += 1;
        if self.last_write.is_none_or(|at| at.elapsed() >= CHECKPOINT_WRITE_INTERVAL) {
            self.flush();
        }
    }

    fn resume_token(&mut self, token: &str) {
        let latest = self.unwritten_token.as_ref().or(self.resume_token.as_ref());
        if latest.is_some_and(|latest| latest == token) {
            return;
        }
        if let Err(why) = check_resume_token(token, self.drain) {
            return self.reject_token(token, &why);
        }
        self.unwritten_token = Some(token.to_string());
        if self.last_token_write.is_none_or(|at| at.elapsed() >= CHECKPOINT_WRITE_INTERVAL) {
            self.flush_token();
        }
    }

    fn should_stop(&mut self) -> bool {
        if self.unwritten > 0 && self.last_write.is_none_or(|at| at.elapsed() >= CHECKPOINT_WRITE_INTERVAL) {
            self.flush();
        }
        if self.unwritten_token.is_some()
            && self.last_token_write.is_none_or(|at| at.elapsed() >= CHECKPOINT_WRITE_INTERVAL)
        {
            self.flush_token();
        }
        crate::worker::signals::termination_requested()
    }
}

/// The stop of a pass whose quota group is parked (docs/rate-limits.md, "Parked groups").
fn parked_stop(quota_group: &str, controls: &PassControls) -> Option<Stop> {
    let parked_at = controls.parked_at?;
    Some(Stop::normal(
        RunStatus::RateLimited,
        format!(
            "quota group {quota_group} is parked since {} (needs attention: {}); `drainctl resume --group {quota_group}` once it is fixed",
            parked_at.to_rfc3339(),
            controls.parked_reason.as_deref().unwrap_or("no reason recorded")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(extra: &str) -> Config {
        Config::from_text(&format!("[[drain]]\nname = \"a\"\ncommand = [\"w\"]\n{extra}"), None).unwrap()
    }

    #[test]
    fn resume_tokens_must_match_the_format_and_never_read_as_options() {
        let config = drain("");
        let uuid = "123e4567-e89b-12d3-a456-426614174000";
        assert_eq!(check_resume_token(uuid, &config.drains[0]), Ok(()));
        assert_eq!(check_resume_token(&uuid.to_uppercase(), &config.drains[0]), Ok(()));
        for bad in ["x; rm -rf /", "--config=/etc/passwd", "123e4567e89b12d3a456426614174000", "", "$(id)"] {
            assert!(check_resume_token(bad, &config.drains[0]).is_err(), "{bad:?}");
        }
        // Even a format that allows anything refuses options, whitespace and control
        // characters, and overlong tokens.
        let config = drain("resume_token_format = '.*'\n");
        let permissive = &config.drains[0];
        assert_eq!(check_resume_token("session-7", permissive), Ok(()));
        for (bad, why) in [
            ("--config=/etc/passwd", "starts with '-'"),
            ("-x", "starts with '-'"),
            ("a b", "whitespace"),
            ("a\u{1b}[2J", "control"),
            (&"x".repeat(257), "longer than 256"),
        ] {
            let error = check_resume_token(bad, permissive).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }

    #[test]
    fn account_env_wins_over_the_drain_env() {
        let pair = |name: &str, value: &str| (name.to_string(), value.to_string());
        let merged = merged_env(
            &[pair("CLAUDE_CONFIG_DIR", "/drain"), pair("OTHER", "kept")],
            &[pair("CLAUDE_CONFIG_DIR", "/account")],
        );
        assert_eq!(merged, [pair("OTHER", "kept"), pair("CLAUDE_CONFIG_DIR", "/account")]);
    }
}
