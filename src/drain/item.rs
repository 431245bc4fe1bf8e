//! One claimed item: run the worker on it, classify what it reported and settle it — a
//! success waits to be staged with the next claim, a quota hit gives the attempt back and
//! backs off, a failure is retried later or dead-lettered.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::backoff::BackoffRule;
use crate::config::{AccountConfig, DrainConfig, RESUME_TOKEN_PLACEHOLDER};
use crate::db::events::{record_event, record_event_or_log, Event};
use crate::db::in_transaction;
use crate::db::items::{self, ClaimedItem, Failure};
use crate::db::poison;
use crate::db::runs;
use crate::db::usage::Usage;
use crate::error::{Error, Result, EXIT_CONFIG, EXIT_TEMPORARY};
use crate::model::{AttemptOutcome, EventKind, ItemState, RunStatus};
use crate::quota::{Outcome, QuotaHit};
use crate::worker::{
    run_worker, OutputDrain, Printed, SpawnError, StopReason, WorkerExit, WorkerReport, WorkerSpec,
};

use super::recorder::{check_resume_token, rejected_token_event, store_resume_token, WorkerRecorder};
use super::{ItemEnd, Pass, StagedItem, Stop, SucceededItem};

impl Pass<'_> {
    /// Run the worker on one claimed item, on account number `account_index` of the
    /// group, and settle it.
    pub(super) fn process(&mut self, item: &ClaimedItem, account_index: usize) -> Result<ItemEnd> {
        // `max_attempts` lowered below what the item already used: no further call.
        let max_attempts = i32::try_from(self.drain.max_attempts).unwrap_or(i32::MAX);
        if item.attempt > max_attempts {
            return self.dead_without_an_attempt(item, max_attempts);
        }
        match self.source_file(item)? {
            SourceFile::Usable => {}
            SourceFile::Unusable { path, why } => return self.skip_vanished(item, &path, &why),
            SourceFile::NotRepointed { path, now_at } => return self.wait_for_the_scan(item, &path, &now_at),
            SourceFile::FolderUnmounted(why) => {
                return self.worker_not_started(item, &why, "source").map(ItemEnd::Stop)
            }
        }
        let account = self.group.accounts.get(account_index).cloned().unwrap_or_else(AccountConfig::implicit);
        let payload = serde_json::to_vec(&item.payload).map_err(|error| {
            Error::Internal(format!("cannot encode payload of item {}: {error}", item.key))
        })?;
        let ended = match self.run_worker_on(item, &account, &payload)? {
            Ok(ended) => ended,
            Err(spawn_error) => {
                let (why, setting) = (spawn_error.to_string(), spawn_error.setting());
                return self.worker_not_started(item, &why, setting).map(ItemEnd::Stop);
            }
        };
        // A plain success writes nothing here: the next claim commits it. Anything else
        // settles with statements of its own, which may meet a session the server ended
        // just after the look at it following the worker (a restart at that moment): on a
        // new session they are taken again, what the first try added to the pass's own
        // figures taken back (docs/operations.md, "When the database goes away").
        let settled = if ended.is_settled_by_next_claim() {
            self.settle(item, &account, ended)
        } else {
            let (cost, server_errors, last_server_error) =
                (self.cost_picousd, self.server_errors_in_a_row, self.last_server_error_item);
            self.on_a_lasting_session(|pass| {
                (pass.cost_picousd, pass.server_errors_in_a_row, pass.last_server_error_item) =
                    (cost, server_errors, last_server_error);
                pass.settle(item, &account, ended.clone())
            })
        };
        match self.commit_failed.take() {
            // The pass ends on the previous item's failed commit, this one settled first.
            Some(error) => settled.and(Err(error)),
            None => settled,
        }
    }

    /// The item used `max_attempts` or more before the setting was lowered: dead-lettered
    /// as it would have been at its last failure, without running the worker again
    /// (docs/configuration.md, "Changing the configuration while drains run"). No attempt
    /// ran: counted in no `items_failed` (failed attempts), nor in the pass's item budget.
    fn dead_without_an_attempt(&mut self, item: &ClaimedItem, max_attempts: i32) -> Result<ItemEnd> {
        let used = item.attempt - 1;
        let note = format!(
            "max_attempts is {max_attempts} and the item used {} already: dead-lettered without another attempt \
             (`drainctl retry` runs it again)",
            crate::output::counted(used, "attempt")
        );
        let event = Event::new(EventKind::ItemDeadLettered, format!("item {}: {note}", item.key))
            .data(json!({ "attempt": used, "outcome": AttemptOutcome::NotStarted, "error": note }));
        if self.settle_unrun(item, ItemState::Dead, AttemptOutcome::NotStarted, &note, event)? {
            self.dead_unrun += 1;
        }
        Ok(ItemEnd::Settled)
    }

    /// The item's source file is gone: settle it as skipped without running the worker.
    fn skip_vanished(&mut self, item: &ClaimedItem, path: &str, why: &str) -> Result<ItemEnd> {
        let note = format!("source file {path} {why} before the item was done");
        let event = Event::new(EventKind::ItemSkippedMissing, format!("item {}: {note}", item.key));
        let (state, outcome) = (ItemState::SkippedMissing, AttemptOutcome::SkippedMissing);
        if self.settle_unrun(item, state, outcome, &note, event)? {
            self.skipped += 1;
        }
        Ok(ItemEnd::Settled)
    }

    /// Settle `item` without having run its worker, as `state`, its claim's attempt closed
    /// as `outcome` with `note`, and record `event` of it; false when the run no longer
    /// held it.
    fn settle_unrun(
        &mut self,
        item: &ClaimedItem,
        state: ItemState,
        outcome: AttemptOutcome,
        note: &str,
        event: Event,
    ) -> Result<bool> {
        self.commit_staged()?;
        let now = self.clock.now();
        let event = event.drain(&self.drain.name).run(self.run_id).item(item.id);
        let settled = in_transaction(self.client, |tx| {
            // The run first, then its item, as `supervise` ending the run locks them.
            runs::lock_own_run(tx, self.run_id)?;
            let settled = items::settle_claimed_unrun(tx, item.id, self.run_id, state, outcome, note, now)?;
            if settled {
                record_event(tx, self.outbox, &event, now)?;
            }
            Ok(settled)
        })?;
        log::info!("drain {}: item {}: {note} (settled: {settled})", self.drain.name, item.key);
        Ok(settled)
    }

    /// The item's file is gone from its recorded path while a file of its key is in the
    /// source folder (the folder moved, or `dir` now names another: a scan has not
    /// repointed the item yet, a large file still being hashed): not settled on a guess,
    /// given back unstarted and left until [`SCAN_REPOINT_WAIT`] from now, for the scan.
    fn wait_for_the_scan(&mut self, item: &ClaimedItem, path: &str, now_at: &str) -> Result<ItemEnd> {
        self.commit_staged()?;
        let now = self.clock.now();
        let until = crate::clock::later(now, SCAN_REPOINT_WAIT);
        let note = format!(
            "source file {path} is gone, but {now_at} has its key: left for a scan to repoint the item (the \
             folder moved, or `dir` changed), tried again after {}",
            crate::output::local_time(until, self.config.defaults.timezone)
        );
        in_transaction(self.client, |tx| {
            items::release_item(tx, item.id, self.run_id, false, until, now)?;
            items::finish_attempt(
                tx,
                item.id,
                self.run_id,
                AttemptOutcome::NotStarted,
                None,
                Some(&note),
                now,
            )
        })?;
        log::info!("drain {}: item {}: {note}", self.drain.name, item.key);
        Ok(ItemEnd::Settled)
    }

    /// Run the worker on the item with the account's environment, resuming its session
    /// when it has a usable resume token. While it runs, its checkpoints and resume tokens
    /// are recorded and the previous result is committed; the error is the worker's that
    /// did not start. The report comes back read (see [`Pass::read_report`]), with the
    /// usage it reports.
    fn run_worker_on(
        &mut self,
        item: &ClaimedItem,
        account: &AccountConfig,
        payload: &[u8],
    ) -> Result<std::result::Result<WorkerEnd, SpawnError>> {
        let resume_token = self.usable_resume_token(item)?;
        let (argv, env, env_remove) = self.worker_command(item, account, resume_token.as_deref());
        let input = worker_input(payload, &self.drain.command);
        let spec = WorkerSpec {
            argv: &argv,
            workdir: self.drain.workdir.as_deref(),
            env: &env,
            env_remove: &env_remove,
            payload,
            item_timeout: self.drain.item_timeout,
            kill_grace: self.config.defaults.kill_grace,
            result_cap_bytes: Some(self.drain.max_result_bytes),
            stderr_tail_bytes: self.drain.stderr_tail_bytes,
            checkpoint_pattern: Some(&self.drain.checkpoint_pattern),
            resume_pattern: Some(&self.drain.resume_pattern),
            announced_waits_given: Some(&input),
            output_drain: OutputDrain::AfterExit,
            session_of_its_own: crate::worker::wants_a_session_of_its_own(),
        };
        log::info!(
            "drain {}: item {} attempt {} starting{}{}",
            self.drain.name,
            item.key,
            item.attempt,
            if account.is_implicit() { String::new() } else { format!(" on account {}", account.name) },
            if resume_token.is_some() { " (resuming)" } else { "" }
        );
        let rivals = std::rc::Rc::clone(&self.rivals);
        let next_claim = self.claim_ahead(&rivals, self.clock.now());
        let session = self.session()?;
        let mut observer = WorkerRecorder {
            next_claim,
            claimed_ahead: None,
            claimed_ahead_held_until: None,
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
            lost_checkpoints: 0,
            resumed_after_error: false,
            committed: None,
            unrecorded_worker: None,
            session,
            while_working: Default::default(),
            stop_after_item: None,
        };
        let started = std::time::Instant::now();
        let result = run_worker(&spec, &mut observer);
        let took = started.elapsed();
        let unkilled = crate::worker::orphans::take_failures();
        observer.flush();
        if let Some(failed) = observer.failed_writes() {
            log::warn!("drain {}: item {}: {failed}", self.drain.name, item.key);
        }
        // The previous result was committed when the worker started; without a start, or
        // when that commit failed, it is committed now.
        let (not_committed, committed) = (observer.staged.take(), observer.committed.take());
        let mut while_working = std::mem::take(&mut observer.while_working);
        if observer.error.is_some() {
            // A checkpoint, a resume token or the worker's record could not be written.
            while_working.note_failed_statement();
        }
        let unwritten_token = observer.unwritten_token.take();
        self.claimed_ahead = observer.claimed_ahead.take();
        self.stop_after_item = self.stop_after_item.take().or(observer.stop_after_item.take());
        self.staged = not_committed;
        if result.is_ok() {
            self.last_worker_took = Some(took);
        }
        let whose = format!("drain {}: item {}", self.drain.name, item.key);
        let result = result.map(|mut report| {
            let outcome = self.read_report(account, payload, &mut report);
            let usage = crate::usage::read_usage(&report.stdout, &whose);
            WorkerEnd { report, outcome, usage }
        });
        // A session the server ended while the worker ran is replaced before the first
        // statement that settles the worker (see `reconnect`).
        let settled_by_next_claim = || result.as_ref().is_ok_and(WorkerEnd::is_settled_by_next_claim);
        if let Err(error) = self.reconnect_if_lost(item, took, settled_by_next_claim, &while_working) {
            // The run is not this pass's on the new server: nothing of it is reaped there.
            if self.run_lost.is_some() {
                return Err(match &result {
                    Ok(WorkerEnd { report, .. }) => error.noted(&format!(
                        "item {}'s worker ended ({} bytes of output): its outcome was not recorded and is lost",
                        item.key,
                        report.stdout.len().max(report.stdout_tail.len()),
                    )),
                    Err(_) => error,
                });
            }
            // Nothing of this worker's end reached the database: say what becomes of it
            // (docs/operations.md, "When the database goes away").
            let again = super::staging::runs_again_once_reaped(&item.key, self.run_id);
            let ended = match &result {
                // Stopped by the pass's own SIGTERM or SIGINT, not ended by itself.
                Ok(WorkerEnd { report, .. }) if report.stop_reason == Some(StopReason::Interrupted) => format!(
                    "item {}'s worker was stopped, as the pass was, while the database was away (it had printed \
                     {} bytes): its attempt was not recorded; {again}",
                    item.key,
                    report.stdout.len().max(report.stdout_tail.len()),
                ),
                Ok(WorkerEnd { report, .. }) => format!(
                    "item {}'s worker ended ({} bytes of output) while the database was away: its outcome \
                     was not recorded and is lost; {again}",
                    item.key,
                    report.stdout.len().max(report.stdout_tail.len()),
                ),
                Err(_) => again,
            };
            return Err(self.results_left(error).noted(&ended));
        }
        // A resume token printed while the session was gone, kept for the new one: the
        // item's next run resumes from it (a quota hit, a timeout).
        if let Some(token) = unwritten_token {
            if let Err(error) = store_resume_token(self.client, self.drain, item, self.run_id, &token) {
                log::warn!(
                    "drain {}: item {}: could not store its resume token: {error}",
                    self.drain.name,
                    item.key
                );
            }
        }
        if let Some((staged, completion, at)) = committed {
            // Its `done` line was logged when the commit came in.
            self.settle_commit(&staged, completion, at, true)?;
        }
        // What the worker left outside its group that could not be killed (docs/worker-contract.md).
        for failure in unkilled {
            let event = Event::new(EventKind::KillFailed, failure)
                .drain(&self.drain.name)
                .run(self.run_id)
                .item(item.id);
            record_event_or_log(self.client, self.outbox, &event, self.clock.now());
        }
        // The previous item's commit, retried after this worker: when it fails, this
        // worker's end is settled all the same before the pass ends on that error — its
        // answer staged, the limit it met recorded — instead of going with it
        // (docs/operations.md, "When the database goes away").
        if let Err(error) = self.commit_staged() {
            self.commit_failed = Some(error);
        }
        Ok(result)
    }

    /// The environment the worker gets from the configuration: the drain's `env` with the
    /// account's merged over it, and `TZ` = `[defaults] timezone` when neither sets it, so
    /// that the worker prints wall-clock times in the zone its limit messages are read in
    /// (docs/rate-limits.md, "Reset times").
    fn worker_env(&self, account: &AccountConfig) -> Vec<(String, String)> {
        let mut env = crate::config::merged_env(&self.drain.env, &account.env);
        if !env.iter().any(|(name, _)| name == "TZ") {
            env.push(("TZ".into(), self.config.defaults.timezone.name().into()));
        }
        env
    }

    /// The worker's command line, environment and the variables removed from the
    /// environment it inherits.
    fn worker_command(
        &self,
        item: &ClaimedItem,
        account: &AccountConfig,
        resume_token: Option<&str>,
    ) -> (Vec<String>, Vec<(String, String)>, Vec<&'static str>) {
        let mut env = self.worker_env(account);
        env.push(("DRAIN_NAME".into(), self.drain.name.clone()));
        env.push(("DRAIN_ITEM_KEY".into(), item.key.clone()));
        env.push(("DRAIN_RUN_ID".into(), self.run_id.to_string()));
        env.push(("DRAIN_ATTEMPT".into(), item.attempt.to_string()));
        // The drain's `env` is added after these removals, so it can set them again.
        let mut env_remove: Vec<&str> = crate::config::WITHHELD_ENV.to_vec();
        // Finds what the worker leaves outside its group once this process is gone.
        match crate::worker::process::own_process_mark() {
            Some(mark) => env.push(("DRAIN_PROCESS".into(), mark)),
            None => env_remove.push("DRAIN_PROCESS"),
        }
        if account.is_implicit() {
            env_remove.push("DRAIN_ACCOUNT");
        } else {
            env.push(("DRAIN_ACCOUNT".into(), account.name.clone()));
        }
        let mut argv = self.drain.command.clone();
        match resume_token {
            Some(token) => {
                env.push(("DRAIN_RESUME_TOKEN".into(), token.to_string()));
                argv.extend(
                    self.drain.resume_args.iter().map(|arg| arg.replace(RESUME_TOKEN_PLACEHOLDER, token)),
                );
            }
            None => env_remove.push("DRAIN_RESUME_TOKEN"),
        }
        (argv, env, env_remove)
    }

    /// Read what the worker reported, before anything of it is written: what its output
    /// says — a quota hit, a server error, or other. Its tails come without a password
    /// (`worker`: a worker may print the database URL, and nothing drainctl keeps or sends
    /// of its output but the result holds one, docs/configuration.md), and so does the
    /// line of a client's announced wait. `payload` is what the worker got on stdin, which
    /// it may echo.
    fn read_report(&self, account: &AccountConfig, payload: &[u8], report: &mut WorkerReport) -> Outcome {
        report.client_wait_line = report.client_wait_line.take().map(|line| crate::error::scrub(&line));
        let now = self.clock.now();
        let zone = crate::quota::worker_zone(&self.worker_env(account), self.config.defaults.timezone);
        let input = worker_input(payload, &self.drain.command);
        // A client stopped for the wait it announced failed, whatever its exit status
        // says: gemini-cli exits 0 on SIGTERM. (A timeout or an output over the cap is
        // judged by its stop, not by words in its output.)
        let exit = match report.stop_reason {
            Some(StopReason::ClientWaits(_)) => None,
            _ => exit_code(report.exit),
        };
        // Read whole: the end read below may lie inside its last, long line.
        // A worker stopped by its timeout (or the cap) that exited 0 on the signal left a
        // half-written answer: its stop is the outcome, not words in it.
        if let Some(cut) = self.classifier.cut_answer(&report.stdout, exit) {
            return if report.stop_reason.is_none() { cut } else { Outcome::Other };
        }
        let classify = |at: DateTime<Utc>| {
            let (stdout, stderr) = (&report.stdout_end, &report.stderr_end);
            self.classifier.classify_given(&input, stdout, stderr, exit, at, zone)
        };
        // A reset is reckoned from when its message was printed (docs/rate-limits.md,
        // "Reset times"): a worker may linger, print a goodbye, or hang until item_timeout.
        // Read as of its last output with limit wording; a hit on a line without any (a
        // drain's own pattern) as of its last output.
        let as_of = |printed: Option<Printed>| printed_at(printed, self.clock.is_injected(), now);
        let worded_at = as_of(report.last_worded.or(report.last_output));
        let mut outcome = classify(worded_at);
        let mut read_at = worded_at;
        if let Outcome::QuotaHit(hit) = &outcome {
            let unworded_at = as_of(report.last_output);
            if unworded_at != worded_at
                && !crate::quota::patterns::LIMIT_OR_RESET_HINT.is_match(hit.matched_line.as_bytes())
            {
                outcome = classify(unworded_at);
                read_at = unworded_at;
            }
        }
        if let Outcome::QuotaHit(hit) = &mut outcome {
            hit.reset = hit.reset.map(|reset| crate::backoff::as_read_now(reset, read_at, now));
        }
        // A client stopped while it announced a long wait hit its quota: see
        // docs/rate-limits.md, "Clients that wait for the reset".
        match (report.stop_reason, &report.client_wait_line, report.interrupted_wait) {
            (Some(StopReason::ClientWaits(wait)), Some(line), _) => {
                Outcome::QuotaHit(crate::quota::client_wait_hit(outcome, line, wait, now, zone))
            }
            // Stopped (SIGTERM to the pass) while it waited for its own retry: the limit
            // holds until that wait ends, whatever the exit status of a client that exits
            // 0 on SIGTERM says (docs/worker-contract.md).
            (Some(StopReason::Interrupted), Some(line), Some((wait, ago))) => {
                let announced = now - chrono::Duration::from_std(ago).unwrap_or_default();
                Outcome::QuotaHit(crate::quota::client_wait_hit(outcome, line, wait, announced, zone))
            }
            // Stopped after that wait ended: it had retried, and the limit it announced
            // says nothing of the call it was making.
            (Some(StopReason::Interrupted), _, _) if report.client_wait_was_over => match outcome {
                Outcome::QuotaHit(_) => Outcome::Other,
                outcome => outcome,
            },
            // Timed out, or stopped (SIGTERM to the pass), silent since a retry notice for a
            // limit that named no wait (codex sleeping out a long `retry-after`): it was
            // waiting out the limit, a quota hit that uses no attempt (docs/rate-limits.md,
            // "Clients that wait for the reset").
            (Some(StopReason::TimedOut | StopReason::Interrupted), _, _)
                if matches!(outcome, Outcome::Other) =>
            {
                let (stdout, stderr) = (&report.stdout_end, &report.stderr_end);
                match crate::quota::silent_wait_hit(stdout, stderr, &input, now, zone) {
                    Some(hit) => Outcome::QuotaHit(hit),
                    None => outcome,
                }
            }
            // A timeout or an output over the cap is judged by its stop, whatever answer a
            // worker that exited 0 on the signal left half-written (docs/worker-contract.md).
            (Some(_), _, _) if matches!(outcome, Outcome::NoAnswer { .. }) => Outcome::Other,
            _ => outcome,
        }
    }

    /// Settle the item as its worker's report was read ([`Pass::read_report`]):
    /// interrupted, a quota hit, a success, a server error or another failure.
    fn settle(&mut self, item: &ClaimedItem, account: &AccountConfig, ended: WorkerEnd) -> Result<ItemEnd> {
        let WorkerEnd { report, outcome, usage } = ended;
        // Every attempt that ran a worker costs what it reports, whatever its outcome.
        if let Some(usage) = usage {
            self.record_usage(item, &usage)?;
        }
        let now = self.clock.now();
        if report.stop_reason == Some(StopReason::Interrupted) {
            let note = match crate::worker::signals::termination_signal() {
                Some(signal) => format!(
                    "interrupted by {} while running item {}",
                    crate::worker::signals::signal_name(signal),
                    item.key
                ),
                None => format!("interrupted while running item {}", item.key),
            };
            // A limit the client printed before it was stopped (waiting for its own retry)
            // is recorded all the same, its attempt given back as a hit's: the next pass
            // must not call the vendor inside the window it announced.
            if let Outcome::QuotaHit(hit) = &outcome {
                self.settle_quota_hit(item, account, hit, exit_code(report.exit), now)?;
                let note = format!("{note} (its quota hit is recorded: {})", hit.matched_line);
                return Ok(ItemEnd::Stop(Stop {
                    status: RunStatus::Failed,
                    note,
                    exit_code: EXIT_TEMPORARY,
                }));
            }
            self.release(item, AttemptOutcome::Interrupted, &note, now)?;
            return Ok(ItemEnd::Stop(Stop { status: RunStatus::Failed, note, exit_code: EXIT_TEMPORARY }));
        }
        let exit_code = exit_code(report.exit);
        if !matches!(outcome, Outcome::ServerError { .. }) {
            // The vendor's servers answered: no outage (see `wait::server_error_pause`).
            self.server_errors_in_a_row = 0;
            self.last_server_error_item = None;
        }
        match outcome {
            Outcome::QuotaHit(hit) => {
                if !hit.needs_attention {
                    // Open charges of the account: this hit may show their window was
                    // spent. First, so that a charge taken back no longer counts in the
                    // item's row. A hit that needs attention says nothing of the window.
                    self.take_back_charges(item, &account.name, now)?;
                }
                if self.charge_poison_hit(item, &account.name, &report, &hit, now)? {
                    return Ok(ItemEnd::Settled);
                }
                self.settle_quota_hit(item, account, &hit, exit_code, now)
            }
            Outcome::Other if is_plain_success(&report, &outcome) => self.succeed(item, account, report),
            Outcome::ServerError { matched_line } => {
                // A field of a dumped error (gemini's `"code": 500`) says less than the
                // line that says what went wrong.
                let said = if super::failure_line::is_noise(matched_line.trim()) {
                    super::failure_line::failure_line(
                        &report.stdout_end,
                        &report.stderr_end,
                        &self.drain.checkpoint_pattern,
                    )
                } else {
                    None
                };
                let error = format!("server error: {}", said.unwrap_or(matched_line));
                self.fail(item, &report, AttemptOutcome::Transient, &error, None, now)?;
                self.count_server_error(item, &error, now);
                Ok(ItemEnd::Settled)
            }
            Outcome::NoAnswer { error } => {
                self.fail(item, &report, AttemptOutcome::Transient, &error, None, now)?;
                Ok(ItemEnd::Settled)
            }
            Outcome::Other => {
                let (kind, error) = describe_failure(&report, self.drain);
                self.fail(item, &report, kind, &error, None, now)?;
                Ok(ItemEnd::Settled)
            }
        }
    }

    /// Record the usage the worker's output reports on its attempt and count its cost
    /// towards the pass's budget (docs/results.md).
    fn record_usage(&mut self, item: &ClaimedItem, usage: &Usage) -> Result<()> {
        // Summed in pico-dollars: ten attempts of $0.10 make $1.00 exactly.
        self.cost_picousd = self.cost_picousd.saturating_add(usage.cost_picousd());
        crate::db::usage::record_usage(self.client, item.id, self.run_id, usage, self.clock.now())
    }

    /// A quota hit: give the attempt back and back off the account it ran on. The pass
    /// goes on when it may wait for the reset or another account may be chosen; otherwise
    /// it stops.
    fn settle_quota_hit(
        &mut self,
        item: &ClaimedItem,
        account: &AccountConfig,
        hit: &QuotaHit,
        exit_code: Option<i32>,
        now: DateTime<Utc>,
    ) -> Result<ItemEnd> {
        let group = self.drain.quota_group.clone();
        let account_name = account.name.clone();
        let other_accounts = self.group.other_accounts(&account_name);
        let group_drains = self.group_drains();
        let recorded = in_transaction(self.client, |tx| {
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
                    group_drains: &group_drains,
                    other_accounts: &other_accounts,
                },
                hit,
                now,
                self.config.defaults.backoff_policy(),
                self.config.defaults.timezone,
            )
        })?;
        let decision = recorded.decision;
        if recorded.parks_group {
            // The hit parked the group: waiting does not fix it (docs/rate-limits.md,
            // "Parked groups").
            return Ok(ItemEnd::Stop(Stop::normal(
                RunStatus::RateLimited,
                format!(
                    "quota hit on item {}: quota group {group} is parked (needs attention: {}); `drainctl resume {}` once it is fixed",
                    item.key, hit.matched_line, crate::commands::items::group_option(&group)
                ),
            )));
        }
        if self.may_wait_until(decision.until, now) {
            // The next claim sees the backoff and waits for its end.
            log::info!(
                "drain {}: quota hit on item {}: its group backs off until {} ({})",
                self.drain.name,
                item.key,
                crate::output::local_time(decision.until, self.config.defaults.timezone),
                hit.matched_line
            );
            return Ok(ItemEnd::Settled);
        }
        if !other_accounts.is_empty() && decision.rule != BackoffRule::Suspected {
            // The next claim chooses another account, or stops the pass.
            log::info!(
                "drain {}: quota hit on item {} on account {}: it backs off until {} ({}); going on",
                self.drain.name,
                item.key,
                account.name,
                crate::output::local_time(decision.until, self.config.defaults.timezone),
                hit.matched_line
            );
            return Ok(ItemEnd::Settled);
        }
        let subject = if account.is_implicit() {
            format!("group {group}")
        } else {
            format!("account {} of group {group}", account.name)
        };
        let budget_cut = self.budget_cut_wait(decision.until, now);
        Ok(ItemEnd::Stop(Stop::normal(
            RunStatus::RateLimited,
            format!(
                "quota hit on item {}: {subject} backs off until {} ({}){budget_cut}",
                item.key,
                crate::output::local_time(decision.until, self.config.defaults.timezone),
                hit.matched_line
            ),
        )))
    }

    /// For a drain fed from a source folder: whether the item's file may be handed to the
    /// worker — not when it is no longer a regular file inside the folder (gone, or a link
    /// swapped in that leads out of it, nowhere, or to a FIFO: see
    /// [`crate::sources::unusable_file`]), unless the folder itself does not exist or is
    /// empty, as an unmounted share looks: then nothing is settled on a guess. Only an
    /// item whose payload is what a scan recorded for its key is the folder's (see
    /// `items::is_the_folders`): one enqueued beside them with a `path` of its own runs as
    /// any enqueued item, whatever that path ends in (docs/operations.md, "Items enqueued
    /// beside the folder's"). The database is asked only when the file is not usable: no
    /// round trip for the items that run.
    fn source_file(&mut self, item: &ClaimedItem) -> Result<SourceFile> {
        let (Some(source), Some(path)) =
            (&self.drain.source, item.payload.get("path").and_then(serde_json::Value::as_str))
        else {
            return Ok(SourceFile::Usable);
        };
        if !path.strip_suffix(item.key.as_str()).is_some_and(|folder| folder.ends_with('/')) {
            return Ok(SourceFile::Usable);
        }
        let unmounted = |state: &str| {
            SourceFile::FolderUnmounted(format!(
                "source file {path} of item {} is gone and its folder {} {state}: is it mounted?",
                item.key,
                source.dir.display()
            ))
        };
        let verdict = match std::fs::canonicalize(&source.dir) {
            // `glob` narrowed since the scan took it: the operator excluded the file.
            Ok(_) if !source.glob.matches(&item.key) => {
                SourceFile::Unusable { path: path.to_string(), why: crate::sources::not_matching(source) }
            }
            Ok(root) => match crate::sources::unusable_file(&root, std::path::Path::new(path)) {
                None => SourceFile::Usable,
                Some(_) if crate::sources::is_empty_folder(&root) => unmounted("is empty"),
                Some(_) if crate::sources::will_be_scanned(&root, source, &item.key) => {
                    let now_at = root.join(&item.key).display().to_string();
                    SourceFile::NotRepointed { path: path.to_string(), now_at }
                }
                Some(why) => SourceFile::Unusable { path: path.to_string(), why },
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => unmounted("does not exist"),
            // What cannot be told is never settled.
            Err(_) => SourceFile::Usable,
        };
        if matches!(verdict, SourceFile::Usable) || items::is_the_folders_item(self.client, item.id)? {
            return Ok(verdict);
        }
        Ok(SourceFile::Usable)
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

    fn worker_not_started(&mut self, item: &ClaimedItem, why: &str, setting: &str) -> Result<Stop> {
        let now = self.clock.now();
        let note = format!(
            "{why}; fix `{setting}` of drain {} in the configuration (item {} keeps its attempts)",
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
    pub(super) fn release(
        &mut self,
        item: &ClaimedItem,
        outcome: AttemptOutcome,
        note: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        give_back(self.client, item.id, self.run_id, outcome, note, now)
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

    fn fail(
        &mut self,
        item: &ClaimedItem,
        report: &WorkerReport,
        kind: AttemptOutcome,
        error: &str,
        charged_on: Option<(&str, Option<DateTime<Utc>>)>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let delay = crate::backoff::retry_delay(
            item.attempt.max(1) as u32,
            self.drain.retry_backoff.base,
            self.drain.retry_backoff.max,
            crate::backoff::jitter_seed(),
        );
        let retry_at = crate::clock::later(now, delay);
        let exit_code = exit_code(report.exit);
        let max_attempts = self.drain.max_attempts as i32;
        let failure = in_transaction(self.client, |tx| {
            // The run first, then its item, as `supervise` ending the run locks them.
            runs::lock_own_run(tx, self.run_id)?;
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
            if !matches!(failure, Failure::ClaimLost(_) | Failure::RecordedBefore) {
                if let Some((account, stated_reset)) = charged_on {
                    // A poison charge, open until a later hit of the group settles it.
                    poison::open_charge(
                        tx,
                        &self.drain.quota_group,
                        account,
                        item.id,
                        self.run_id,
                        stated_reset,
                    )?;
                }
                runs::count_failed_item(tx, self.run_id)?;
                if kind == AttemptOutcome::Failure {
                    // The worker failed by itself: its session is not worth resuming.
                    items::clear_resume_token(tx, item.id)?;
                }
            }
            let event = match failure {
                Failure::Dead => Some(Event::new(
                    EventKind::ItemDeadLettered,
                    format!(
                        "item {} dead after {}: {error}",
                        item.key,
                        crate::output::counted(item.attempt, "attempt")
                    ),
                )),
                Failure::ClaimLost(held_now) => Some(Event::new(
                    EventKind::ClaimLost,
                    format!(
                        "run {} lost its claim on item {} ({}); failure not recorded",
                        self.run_id,
                        item.key,
                        held_now.describe(self.run_id)
                    ),
                )),
                // Its event, charge and count were committed with it.
                Failure::Retry(_) | Failure::RecordedBefore => None,
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
        #[cfg(feature = "testing")]
        {
            static LOST_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            let fault =
                std::env::var(super::FAULT_ENV).is_ok_and(|fault| fault == "lose_failure_commit_reply");
            if fault && !LOST_ONCE.swap(true, std::sync::atomic::Ordering::Relaxed) {
                // The server ends the session right after the commit; its reply is lost. The
                // statements go again a second later by a test's clock file, as by a real one.
                if let Some(path) = std::env::var(crate::clock::NOW_ENV)
                    .ok()
                    .and_then(|now| now.strip_prefix('@').map(std::path::PathBuf::from))
                {
                    let later = now + chrono::Duration::seconds(1);
                    let _ = std::fs::write(path, crate::output::rfc3339(later));
                }
                let ended = self.client.batch_execute("SELECT pg_terminate_backend(pg_backend_pid())");
                return Err(ended.err().map_or_else(
                    || Error::Unavailable("database connection lost: a fault of the test".into()),
                    Error::from,
                ));
            }
        }
        if !matches!(failure, Failure::ClaimLost(_)) {
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

/// [`release_refunded`] in a transaction of its own: an item the run holds goes back, its
/// attempt ended with `outcome` and `note`.
pub(super) fn give_back(
    client: &mut postgres::Client,
    item_id: i64,
    run_id: i64,
    outcome: AttemptOutcome,
    note: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    in_transaction(client, |tx| release_refunded(tx, item_id, run_id, outcome, None, note, now))
}

/// Give an item back with its attempt refunded and close the attempt with `outcome`, in
/// the caller's transaction.
pub(super) fn release_refunded(
    tx: &mut impl postgres::GenericClient,
    item_id: i64,
    run_id: i64,
    outcome: AttemptOutcome,
    exit_code: Option<i32>,
    note: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    items::release_item(tx, item_id, run_id, outcome == AttemptOutcome::NotStarted, now, now)?;
    items::finish_attempt(tx, item_id, run_id, outcome, exit_code, Some(note), now)
}

/// What the worker was given, which it may echo (codex prints its prompt and its stdin):
/// the payload as it was sent, then the command's arguments, a line each. The strings
/// inside the payload count only inside a line of the worker's own
/// ([`crate::quota::Classifier::classify_given`]): a worker may well print one alone as
/// its own message.
pub(crate) fn worker_input(payload: &[u8], command: &[String]) -> Vec<u8> {
    let mut input = payload.to_vec();
    for arg in command {
        input.push(b'\n');
        input.extend_from_slice(arg.as_bytes());
    }
    input
}

fn tail(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[bytes.len().saturating_sub(max)..]
}

/// When the worker printed output, as of `now`; now when it printed nothing. An injected
/// clock (tests) is read as output arrives; the system clock's now is taken back by the
/// monotonic time since, which a step of the wall clock while the worker ran (NTP, a
/// resumed machine) does not move.
fn printed_at(printed: Option<Printed>, is_injected: bool, now: DateTime<Utc>) -> DateTime<Utc> {
    let at = printed.and_then(|printed| match is_injected {
        true => Some(printed.at),
        false => chrono::Duration::from_std(printed.ago).ok().map(|ago| now - ago),
    });
    at.map_or(now, |at| at.min(now))
}

/// A worker's end as the pass read it: its report, what its output says, and the usage it
/// reports (read once, warned of once).
#[derive(Clone)]
pub(super) struct WorkerEnd {
    report: WorkerReport,
    outcome: Outcome,
    usage: Option<Usage>,
}

impl WorkerEnd {
    /// Only a plain success that reports no usage is settled by the next claim alone:
    /// usage to record, a failure, a hit or a timeout takes statements of its own first.
    fn is_settled_by_next_claim(&self) -> bool {
        is_plain_success(&self.report, &self.outcome) && self.usage.is_none()
    }
}

/// Whether the worker succeeded as nothing but the next claim settles: exit 0, not
/// stopped, and nothing in its output that reads otherwise.
fn is_plain_success(report: &WorkerReport, outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Other) && report.exit == WorkerExit::Code(0) && report.stop_reason.is_none()
}

/// The outcome kind and error text of a failed attempt.
fn describe_failure(report: &WorkerReport, drain: &DrainConfig) -> (AttemptOutcome, String) {
    // The line that says what went wrong (docs/worker-contract.md).
    let last_line =
        super::failure_line::failure_line(&report.stdout_end, &report.stderr_end, &drain.checkpoint_pattern);
    let with_stderr = |text: String| match &last_line {
        Some(line) => format!("{text}: {line}"),
        None => text,
    };
    match (report.stop_reason, report.exit) {
        (Some(StopReason::TimedOut), _) => (
            AttemptOutcome::Transient,
            format!("timed out after item_timeout {}", crate::duration::format_duration(drain.item_timeout)),
        ),
        // Only an answer the worker gave as a success may be cut: a worker that failed by
        // itself is judged by its own exit, the held stdout noted after its error.
        (Some(StopReason::OutputHeld), WorkerExit::Code(0)) => (
            AttemptOutcome::Transient,
            format!("the worker exited, but {HELD_STDOUT}: its answer may be cut, so it was not kept (a process a \
                     worker leaves running must not hold its stdout: redirect it, >/dev/null)"),
        ),
        (Some(StopReason::OutputCapExceeded), _) => (
            AttemptOutcome::Failure,
            format!("output exceeded the {} byte result cap (max_result_bytes)", drain.max_result_bytes),
        ),
        (stop, exit) => {
            let (outcome, error) = match exit {
                WorkerExit::Signal(signal) => {
                    (AttemptOutcome::Transient, with_stderr(format!("killed by signal {signal}")))
                }
                WorkerExit::Code(code) => (AttemptOutcome::Failure, with_stderr(format!("exit code {code}"))),
            };
            match stop {
                Some(StopReason::OutputHeld) => (outcome, format!("{error} ({HELD_STDOUT})")),
                _ => (outcome, error),
            }
        }
    }
}

/// What became of a process a worker left holding its stdout (docs/worker-contract.md).
const HELD_STDOUT: &str = "a process it left still held its stdout, silent since, and was killed";

/// The exit code of a worker that exited by itself; none when a signal killed it.
fn exit_code(exit: WorkerExit) -> Option<i32> {
    match exit {
        WorkerExit::Code(code) => Some(code),
        WorkerExit::Signal(_) => None,
    }
}

/// Poison items (docs/rate-limits.md): an item whose own output reads as a limit while the
/// rest of its quota group works must not stall the group.
impl Pass<'_> {
    /// The drains of this drain's quota group, this one included.
    fn group_drains(&self) -> Vec<String> {
        self.config.group_drains(&self.drain.quota_group)
    }

    /// Count the quota hit towards the item's streak; once the streak reaches
    /// `poison_after`, charge the hit as a failure attempt (with a `quota_hit_charged`
    /// event) instead of refunding it and backing the group off. True when charged.
    fn charge_poison_hit(
        &mut self,
        item: &ClaimedItem,
        account: &str,
        report: &WorkerReport,
        hit: &crate::quota::QuotaHit,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let poison_after = self.drain.poison_after;
        let group_drains = self.group_drains();
        let (drain, run_id, outbox) = (self.drain, self.run_id, self.outbox);
        let charged = in_transaction(self.client, |tx| {
            let streak = poison::count_quota_hit(tx, &drain.quota_group, item.id, run_id, &group_drains)?;
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
            // Open until a later limit of the group settles it, with the end of the window
            // it met when its line says.
            let stated_reset = crate::poison::window_end(hit, now);
            self.fail(item, report, AttemptOutcome::Failure, &error, Some((account, stated_reset)), now)?;
        }
        Ok(charged)
    }
}

impl Pass<'_> {
    /// This item met a limit: open charges of the account's group may have been the
    /// window's limit, not their items' own (see [`crate::poison::settle_at_hit`]): take them
    /// back, each with a `quota_hit_refunded` event — notified (when `notify_on` has it)
    /// only when it makes a dead item pending again, the news after an
    /// `item_dead_lettered`. Settling is an extra to the hit: when it fails with the
    /// session still open, the hit is settled all the same and a later hit settles the
    /// charges.
    fn take_back_charges(&mut self, item: &ClaimedItem, account: &str, now: DateTime<Utc>) -> Result<()> {
        let (group, drain) = (&self.drain.quota_group, &self.drain.name);
        let hit = poison::SettlingHit { item_id: item.id, run_id: self.run_id, key: &item.key, drain };
        let settled =
            crate::poison::settle_at_hit(self.client, self.outbox, self.config, group, account, hit, now);
        match settled {
            Ok(_) => Ok(()),
            Err(error) if !self.client.is_closed() => {
                log::warn!(
                    "drain {}: the open poison charges of quota group {group} were not settled ({}); a later hit settles them",
                    self.drain.name,
                    error.display_scrubbed()
                );
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// What a claim found of a source-backed item's file (see `Pass::source_file`).
enum SourceFile {
    Usable,
    /// No longer a regular file inside the folder: settled `skipped_missing`, with why.
    Unusable {
        path: String,
        why: String,
    },
    /// The folder does not exist or is empty: the pass stops, settling nothing.
    FolderUnmounted(String),
    /// Gone from its recorded `path`, while the folder holds a file of its key, `now_at`:
    /// left for a scan to repoint.
    NotRepointed {
        path: String,
        now_at: String,
    },
}

/// How long an item whose file a scan has yet to repoint waits before a pass looks again
/// (`Pass::wait_for_the_scan`): a supervise interval.
const SCAN_REPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);
