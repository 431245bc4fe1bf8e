//! What a running worker reports — checkpoints and resume tokens — recorded while it
//! runs, and the checks a resume token must pass before it is used.

use std::time::Instant;

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::json;

use crate::clock::Clock;
use crate::config::DrainConfig;
use crate::db::events::{record_event, Event, Outbox};
use crate::db::items::{self, ClaimRequest, ClaimedItem, Completion};
use crate::db::runs;
use crate::db::PreparedStatements;
use crate::error::Error;
use crate::model::{AttemptOutcome, EventKind};
use crate::worker::WorkerObserver;

use super::reconnect::{Session, WhileWorking};
use super::{StagedItem, Stop};

/// A resume token longer than this is never used, whatever `resume_token_format` allows.
const MAX_RESUME_TOKEN_CHARS: usize = 256;
/// Rejected resume tokens reported (event and log line) per item run; more are ignored
/// silently, so a worker that prints many cannot flood the events table.
const MAX_REJECTED_TOKENS_REPORTED: u32 = 5;
/// How often checkpoint lines may be written to the run row.
const CHECKPOINT_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a resume token printed by a worker may not be used, if it may not. Beyond the
/// drain's `resume_token_format`, a token never starts with `-` (it would read as an
/// option) and never holds whitespace, control characters or the invisible and
/// bidirectional ones a terminal would not show as they are ([`crate::output::is_unsafe_to_show`]).
pub(super) fn check_resume_token(token: &str, drain: &DrainConfig) -> std::result::Result<(), String> {
    if token.is_empty() {
        return Err("it is empty".into());
    }
    if token.chars().count() > MAX_RESUME_TOKEN_CHARS {
        return Err(format!("it is longer than {MAX_RESUME_TOKEN_CHARS} characters"));
    }
    if token.starts_with('-') {
        return Err("it starts with '-' and would read as an option".into());
    }
    if token.chars().any(|c| c.is_whitespace() || crate::output::is_unsafe_to_show(c)) {
        return Err(
            "it contains whitespace, control characters or invisible or bidirectional formatting characters"
                .into(),
        );
    }
    if !drain.resume_token_format.is_match(token) {
        return Err("it does not match resume_token_format".into());
    }
    Ok(())
}

/// Store a checked resume token on the item `run_id` holds; a run that no longer holds it
/// (ended as hung meanwhile) stores nothing, and says so.
pub(super) fn store_resume_token(
    client: &mut Client,
    drain: &DrainConfig,
    item: &ClaimedItem,
    run_id: i64,
    token: &str,
) -> Result<(), Error> {
    if items::set_resume_token(client, item.id, run_id, token)? {
        log::info!("drain {}: item {}: resume token stored", drain.name, item.key);
    } else {
        log::warn!(
            "drain {}: item {}: resume token not stored: run {run_id} no longer holds it",
            drain.name,
            item.key
        );
    }
    Ok(())
}

/// A token as it may appear in a message: at most 80 characters, escaped.
fn shown_token(token: &str) -> String {
    let short: String = token.chars().take(80).collect();
    let ellipsis = if token.chars().count() > 80 { "…" } else { "" };
    format!("{:?}{ellipsis}", short)
}

pub(super) fn rejected_token_event(
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

/// Records what a running worker reports: checkpoints and resume tokens, each at most
/// one database write per second. A valid new token is stored at once or, right after
/// another write, within a second — while the worker still runs, so a token printed
/// before a crash or a kill survives it.
pub(super) struct WorkerRecorder<'a> {
    pub(super) client: &'a mut Client,
    pub(super) outbox: &'a Outbox,
    pub(super) statements: &'a mut PreparedStatements,
    pub(super) clock: &'a Clock,
    pub(super) drain: &'a DrainConfig,
    pub(super) run_id: i64,
    pub(super) item: &'a ClaimedItem,
    pub(super) unwritten: i64,
    pub(super) last_write: Option<Instant>,
    /// The token stored on the item now.
    pub(super) resume_token: Option<String>,
    /// A checked token not stored yet.
    pub(super) unwritten_token: Option<String>,
    pub(super) last_token_write: Option<Instant>,
    pub(super) rejected_tokens: u32,
    /// The first write that failed while the worker ran.
    pub(super) error: Option<Error>,
    /// Checkpoint lines whose write failed: never recorded.
    pub(super) lost_checkpoints: i64,
    /// A checkpoint or resume token was written after `error`: recording resumed (on a
    /// new session, after the server ended the old one: see `reconnect`).
    pub(super) resumed_after_error: bool,
    /// The pass's staged result, committed as soon as the worker has started.
    pub(super) staged: Option<StagedItem>,
    /// That commit, how it went and when; a failed one leaves the item in `staged`.
    /// Its `item … done` line is logged at once; what else follows waits for the worker.
    pub(super) committed: Option<(StagedItem, Completion, DateTime<Utc>)>,
    /// The worker (pid, start time), until it is recorded on the run.
    pub(super) unrecorded_worker: Option<(i32, Option<i64>)>,
    /// The claim of the next item, made as soon as this worker has started when the pass
    /// claims ahead (see `Pass::claim_ahead`), and what it claimed.
    pub(super) next_claim: Option<ClaimRequest<'a>>,
    pub(super) claimed_ahead: Option<ClaimedItem>,
    /// Until when the item claimed ahead waits for this worker: after that it goes back
    /// (see [`WorkerRecorder::give_back_claimed_ahead`]).
    pub(super) claimed_ahead_held_until: Option<Instant>,
    /// What a new session needs when the server ends this one while the worker runs.
    pub(super) session: Session<'a>,
    pub(super) while_working: WhileWorking,
    /// The pass's stop when a new session came without a concurrency slot.
    pub(super) stop_after_item: Option<Stop>,
}

impl WorkerRecorder<'_> {
    /// Write what is not written yet.
    pub(super) fn flush(&mut self) {
        self.flush_token();
        if self.unwritten == 0 {
            return;
        }
        let result = runs::record_checkpoint(self.client, self.run_id, self.unwritten, self.clock.now());
        let written = std::mem::take(&mut self.unwritten);
        self.last_write = Some(Instant::now());
        match result {
            Ok(()) => self.resumed_after_error |= self.error.is_some(),
            Err(error) => {
                self.lost_checkpoints += written;
                self.error.get_or_insert(error);
            }
        }
    }

    /// What the log says, once the worker ended, of the writes that failed while it ran
    /// (see [`failed_writes`]).
    pub(super) fn failed_writes(&self) -> Option<String> {
        failed_writes(self.error.as_ref(), self.lost_checkpoints, self.resumed_after_error)
    }

    fn flush_token(&mut self) {
        let Some(token) = self.unwritten_token.take() else { return };
        self.last_token_write = Some(Instant::now());
        match store_resume_token(self.client, self.drain, self.item, self.run_id, &token) {
            Ok(()) => {
                self.resume_token = Some(token);
                self.resumed_after_error |= self.error.is_some();
            }
            Err(error) => {
                self.error.get_or_insert(error);
                // With the session gone, kept for the new one (see `reconnect`).
                if self.client.is_closed() {
                    self.unwritten_token = Some(token);
                }
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

impl WorkerRecorder<'_> {
    /// Keep `item`, just claimed ahead, for after this worker — while the worker stays
    /// quick.
    fn hold_claimed_ahead(&mut self, item: Option<ClaimedItem>) {
        self.claimed_ahead_held_until =
            item.as_ref().map(|_| Instant::now() + super::pass::claimed_ahead_held_at_most());
        self.claimed_ahead = item;
    }

    /// This worker turned out slow: the item claimed ahead for after it goes back,
    /// unstarted, its attempt refunded and its place in the queue kept, so that no item
    /// waits claimed behind a long worker, and another pass may take it
    /// (docs/worker-contract.md, "Quick workers"). One that cannot go back now (the session
    /// is gone) goes back, or starts, after the worker.
    fn give_back_claimed_ahead(&mut self) {
        self.claimed_ahead_held_until = None;
        let Some(item) = self.claimed_ahead.take() else { return };
        let note = "claimed ahead; given back while a long worker ran";
        let (run_id, now) = (self.run_id, self.clock.now());
        let given_back =
            super::item::give_back(self.client, item.id, run_id, AttemptOutcome::NotStarted, note, now);
        match given_back {
            Ok(()) => log::debug!("drain {}: item {} {note}", self.drain.name, item.key),
            Err(error) => {
                log::warn!(
                    "drain {}: could not give back item {}, claimed ahead of a long worker: {error}",
                    self.drain.name,
                    item.key
                );
                self.while_working.note_failed_statement();
                self.claimed_ahead = Some(item);
            }
        }
    }

    /// The previous item's `done` line, as soon as its commit beside this worker is in: a
    /// long worker does not hold it back (settling the rest waits for the worker).
    fn log_committed(&self) {
        if let Some((staged, Completion::Completed, _)) = &self.committed {
            super::staging::log_done(self.drain, staged);
        }
    }
}

/// How long a commit beside the running worker waits for a lock (an operator's open
/// transaction on the staged item): it runs on the thread that watches the worker, whose
/// `item_timeout` and stop it would otherwise hold up for as long as the lock is held
/// (docs/operations.md). One that cannot get its lock fails and is retried after the worker.
const BESIDE_THE_WORKER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Run `statement` in a transaction whose lock waits are bounded by
/// [`BESIDE_THE_WORKER_LOCK_WAIT`].
fn beside_the_worker<T>(
    client: &mut Client,
    statement: impl FnOnce(&mut postgres::Transaction<'_>) -> crate::error::Result<T>,
) -> crate::error::Result<T> {
    crate::db::in_transaction(client, |tx| {
        crate::db::set_lock_timeout_for(tx, BESIDE_THE_WORKER_LOCK_WAIT, true)?;
        statement(tx)
    })
}

impl WorkerObserver for WorkerRecorder<'_> {
    fn started(&mut self, pid: u32) {
        let worker = (pid as i32, crate::worker::process::process_start_time(pid).map(|t| t as i64));
        // A staged result and a claim ahead: one statement commits the one, makes the
        // other and records this worker.
        if let (Some(staged), Some(request)) = (&self.staged, &self.next_claim) {
            let (item_id, now) = (staged.id, self.clock.now());
            let statements = &mut *self.statements;
            let outcome = beside_the_worker(self.client, |tx| {
                items::complete_staged_and_claim_next_item(tx, statements, item_id, Some(worker), request)
            });
            self.next_claim = None;
            match outcome {
                Ok((_, item, completion)) => {
                    self.hold_claimed_ahead(item);
                    self.committed = self.staged.take().map(|staged| (staged, completion, now));
                    self.log_committed();
                }
                Err(error) => {
                    log::warn!(
                        "drain {}: item {}: commit failed, retried after the running worker; \
                         the next item is claimed after it: {error}",
                        self.drain.name,
                        staged.key
                    );
                    self.while_working.note_failed_statement();
                    self.unrecorded_worker = Some(worker);
                }
            }
            return;
        }
        // Claimed ahead first: the claim clears the run's worker, which the commit below
        // or the first look then records.
        if let Some(request) = self.next_claim.take() {
            match items::claim_next_item(self.client, self.statements, &request) {
                Ok((_, item)) => self.hold_claimed_ahead(item),
                Err(error) => {
                    log::warn!(
                        "drain {}: could not claim ahead, claiming after the worker: {error}",
                        self.drain.name
                    );
                    self.while_working.note_failed_statement();
                }
            }
        }
        // The previous item's commit, one statement that also records this worker, runs
        // while this worker does; what follows from it waits until the worker is done.
        if let Some(staged) = self.staged.take() {
            let now = self.clock.now();
            let (statements, run_id) = (&mut *self.statements, self.run_id);
            match beside_the_worker(self.client, |tx| {
                items::complete_item(
                    tx,
                    statements,
                    staged.id,
                    run_id,
                    now,
                    items::RunWorker::Set(Some(worker)),
                )
            }) {
                Ok(completion) => {
                    self.committed = Some((staged, completion, now));
                    self.log_committed();
                    return;
                }
                Err(error) => {
                    log::warn!(
                        "drain {}: item {}: commit failed, retried after the running worker: {error}",
                        self.drain.name,
                        staged.key
                    );
                    self.while_working.note_failed_statement();
                    self.staged = Some(staged);
                }
            }
        }
        // Nothing to commit: the worker is recorded at the first look at it while it
        // runs (see `WORKER_FIRST_LOOK` in `worker`); one that is done before is never
        // recorded, which spares the round trip between two quick workers.
        self.unrecorded_worker = Some(worker);
    }

    fn now(&mut self) -> DateTime<Utc> {
        self.clock.now()
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
        // A session the server ended is replaced while the worker runs, so that its
        // checkpoints are written again (see `reconnect`).
        if let Some(reopened) = self.while_working.retry(&self.session, self.client, self.statements) {
            let recorded =
                reopened.record(self.client, self.outbox, self.clock.now(), &mut self.stop_after_item);
            if let Err(error) = recorded {
                self.error.get_or_insert(error);
            }
        }
        if let Some((pid, start_time)) = self.unrecorded_worker.take() {
            if let Err(error) = runs::set_worker(self.client, self.statements, self.run_id, pid, start_time) {
                self.error.get_or_insert(error);
            }
        }
        if self.unwritten > 0 && self.last_write.is_none_or(|at| at.elapsed() >= CHECKPOINT_WRITE_INTERVAL) {
            self.flush();
        }
        if self.claimed_ahead_held_until.is_some_and(|until| Instant::now() >= until) {
            self.give_back_claimed_ahead();
        }
        if self.unwritten_token.is_some()
            && self.last_token_write.is_none_or(|at| at.elapsed() >= CHECKPOINT_WRITE_INTERVAL)
        {
            self.flush_token();
        }
        crate::worker::signals::termination_requested()
    }

    fn stopped_with_the_worker(
        &mut self,
        exit: crate::worker::WorkerExit,
        exited_at: std::time::Instant,
    ) -> bool {
        // The same stop as the pass's, reaching the worker first (pm2's `treekill`, a host
        // shutting down): no outcome of its own (docs/worker-contract.md).
        crate::worker::signals::stopped_with_drainctl(exit, exited_at)
    }
}

/// What the log says of the writes that failed while a worker ran (none when none did):
/// how many checkpoints were lost, and whether recording resumed after them — on a new
/// session, after the server ended the old one — or not (docs/operations.md, "When the
/// database goes away").
fn failed_writes(error: Option<&Error>, lost_checkpoints: i64, resumed: bool) -> Option<String> {
    let error = error?;
    let checkpoints = match lost_checkpoints {
        1 => "1 checkpoint".to_string(),
        lost => format!("{lost} checkpoints"),
    };
    Some(match (resumed, lost_checkpoints > 0) {
        (true, true) => format!("could not record {checkpoints} ({error}); recording resumed after them"),
        (true, false) => {
            format!("a write of the worker's progress failed ({error}); recording resumed after it")
        }
        (false, true) => format!("could not record {checkpoints}, nor any after them: {error}"),
        (false, false) => format!("could not record checkpoints or resume tokens: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn drain(extra: &str) -> Config {
        Config::from_text(&format!("[[drain]]\nname = \"a\"\ncommand = [\"w\"]\n{extra}"), None).unwrap()
    }

    #[test]
    fn failed_writes_say_what_was_lost_and_whether_recording_resumed() {
        let lost = Error::Unavailable("database connection lost: connection closed".into());
        assert_eq!(failed_writes(None, 0, false), None);
        assert_eq!(
            failed_writes(Some(&lost), 3, true).unwrap(),
            "could not record 3 checkpoints (database connection lost: connection closed); \
             recording resumed after them"
        );
        assert_eq!(
            failed_writes(Some(&lost), 1, false).unwrap(),
            "could not record 1 checkpoint, nor any after them: database connection lost: connection closed"
        );
        assert!(failed_writes(Some(&lost), 0, true).unwrap().ends_with("recording resumed after it"));
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
            // Bidirectional and invisible: the token is shown and passed on as it reads.
            ("tok\u{202e}abc", "bidirectional"),
            ("x\u{200f}y", "bidirectional"),
            ("x\u{200b}y", "invisible"),
            (&"x".repeat(257), "longer than 256"),
        ] {
            let error = check_resume_token(bad, permissive).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }
}
