//! A pass whose database session ended — the server restarted, failed over, or an
//! administrator ended the session — opens a new one and goes on, so that the result of
//! the worker it ran is committed instead of thrown away, and a wait for a reset goes on
//! (docs/operations.md, "When the database goes away").
//!
//! Everything a pass holds lives in the database, not in its session: the run, the
//! claim, a staged result. Only two things die with the session: the prepared
//! statements, prepared again on the new one, and the concurrency slot (an advisory
//! lock), taken again; when another pass took every slot meanwhile, this pass settles
//! the item it holds and stops.
//!
//! While a worker runs, the recorder tries once a second once a write found the session
//! gone, so that the worker's checkpoints are written again; after a worker of at least a
//! second the pass looks at the connection and waits up to `RECONNECT_FOR` for a new one;
//! a waiting pass does the same when a beat finds the session gone.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::json;

use crate::config::{DatabaseUrl, DrainConfig};
use crate::db::events::{record_event, Event, Outbox};
use crate::db::items::{self, ClaimedItem};
use crate::db::{in_transaction, PreparedStatements};
use crate::error::{Error, Result, EXIT_TEMPORARY};
use crate::model::{AttemptOutcome, EventKind, RunStatus};

use super::item::release_refunded;
use super::{take_slot, Pass, Stop};

/// Why an item the pass never learned it held goes back (see `give_back_unknown_claims`).
const UNKNOWN_CLAIM_NOTE: &str =
    "claimed by a statement whose reply was lost with the database session; its worker never started";

/// A worker that ran at least this long is followed by a look at the connection (one
/// round trip). A quicker one that succeeded is not worth it: its result goes into the
/// statement between two workers, which opens a new session when it finds the old one
/// gone. A quicker one whose output reads as anything else (a failure, a quota hit even
/// with exit 0, a timeout), or that reports its usage, is looked after too: those are
/// recorded by statements of their own (`Pass::reconnect_if_lost`).
const CHECK_AFTER_WORKER: Duration = Duration::from_secs(1);

/// How long the look at the connection may wait for the server. A server that does not
/// answer in time is left alone: only a session the server ended is replaced.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a pass waits for a new session after its worker, and how often it tries.
const RECONNECT_FOR: Duration = Duration::from_secs(60);

/// [`RECONNECT_FOR`]; 3 s under the test hook `DRAINCTL_FAULT=reconnect_for_3s` (see
/// `super::FAULT_ENV`), so that a test can outlast it.
fn reconnect_for() -> Duration {
    #[cfg(feature = "testing")]
    if std::env::var(super::FAULT_ENV).is_ok_and(|fault| fault == "reconnect_for_3s") {
        return Duration::from_secs(3);
    }
    RECONNECT_FOR
}
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// What opening a new session for a pass needs.
#[derive(Clone, Copy)]
pub(super) struct Session<'a> {
    pub(super) database: &'a DatabaseUrl,
    pub(super) drain: &'a DrainConfig,
    /// The drain's row id: the keys of its concurrency slots.
    pub(super) drain_id: i32,
    pub(super) run_id: i64,
}

/// A new session in place of the ended one: the event that records it, and the pass's
/// stop when it could not take a concurrency slot again.
pub(super) struct Reopened {
    event: Event,
    stop: Option<Stop>,
}

impl Reopened {
    /// Record the new session on it and, when it came without a slot, make `stop_after_item`
    /// the pass's stop once the item it holds is settled.
    pub(super) fn record(
        self,
        client: &mut Client,
        outbox: &Outbox,
        now: DateTime<Utc>,
        stop_after_item: &mut Option<Stop>,
    ) -> Result<()> {
        if let Some(stop) = self.stop {
            *stop_after_item = Some(stop);
        }
        record_event(client, outbox, &self.event, now)
    }
}

/// How long a new session tries again for a slot: the server process of a session closed
/// a moment ago may still hold its slot while it ends.
const SLOT_RELEASE_WAIT: Duration = Duration::from_secs(1);

/// [`take_slot`] on a new session, tried again for [`SLOT_RELEASE_WAIT`] while every slot
/// is held.
fn take_slot_again(client: &mut Client, drain_id: i32, concurrency: u32) -> Result<Option<u32>> {
    let since = Instant::now();
    loop {
        let slot = take_slot(client, drain_id, concurrency)?;
        if slot.is_some() || since.elapsed() >= SLOT_RELEASE_WAIT {
            return Ok(slot);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a pass says when its run's row is not its own on the new session (see
/// [`Session::reopen`]).
const RUN_LOST_IN_A_FAILOVER: &str =
    "the server it had written to was replaced by one that had not received the run (a failover)";

impl Session<'_> {
    /// One attempt: connect, and on success put the new session in `client`, forget the
    /// statements prepared on the old one and take a concurrency slot again. `lost_at`:
    /// when the old session was found gone.
    pub(super) fn reopen(
        &self,
        client: &mut Client,
        statements: &mut PreparedStatements,
        lost_at: Instant,
    ) -> Result<Reopened> {
        let mut new_client = crate::db::connect(self.database)?;
        // A failover's standby answers before it is promoted: a session there writes
        // nothing — the result, the event — so it is not back yet, and the lost session
        // stays in place to be replaced at the next attempt (docs/operations.md, "When the
        // database goes away").
        if let Some(why) = crate::db::read_only_reason(&mut new_client)? {
            return Err(Error::Unavailable(format!("the new session is read-only ({why})")));
        }
        // A failover to a standby that had not received the run's row: its id may be
        // another pass's there, the sequence having handed it out again. Nothing more is
        // written under it: not the items that run holds, not its end (docs/guarantees.md,
        // "What the database must keep").
        // Ours by drain, host and process (pid and start time): hosts of containers often
        // give a pass the same small pid.
        let pid = std::process::id();
        let start_time = crate::worker::process::process_start_time(pid).map(|time| time as i64);
        let row = new_client.query_opt(
            "SELECT drain, host, pid,
                    drain = $2 AND pid = $3 AND host_id IS NOT DISTINCT FROM $4
                    AND process_start_time IS NOT DISTINCT FROM $5 AND host = $6
               FROM runs WHERE id = $1",
            &[
                &self.run_id,
                &self.drain.name,
                &i32::try_from(pid).unwrap_or(i32::MAX),
                &crate::worker::process::host_id(),
                &start_time,
                &crate::worker::process::host_name(),
            ],
        )?;
        let whose = row.map(|row| {
            (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, i32>(2), row.get::<_, bool>(3))
        });
        if !whose.as_ref().is_some_and(|(_, _, _, ours)| *ours) {
            let what = match whose {
                None => "is not in the database it reconnected to".to_string(),
                Some((drain, host, pid, _)) => format!(
                    "is another pass's in the database it reconnected to (drain {drain}, host {host}, pid {pid})"
                ),
            };
            return Err(Error::Temporary(format!(
                "run {} {what}: {RUN_LOST_IN_A_FAILOVER}; the pass stops and writes nothing more under it, and \
                 its current item runs again",
                self.run_id
            )));
        }
        // The old session may live on (read-only, not ended): its slot is let go first, or
        // two passes replacing theirs at once could each find every slot still held.
        if !client.is_closed() {
            if let Err(error) = client.batch_execute("SELECT pg_advisory_unlock_all()") {
                log::debug!("drain {}: the old session kept its locks: {error}", self.drain.name);
            }
        }
        *client = new_client;
        *statements = PreparedStatements::default();
        crate::db::use_generic_plans(client)?;
        let slot = take_slot_again(client, self.drain_id, self.drain.concurrency)?;
        let seconds = lost_at.elapsed().as_secs_f64();
        let mut message = format!(
            "run {} reconnected to the database after {seconds:.1} s: the server had ended its session, or \
             it could no longer write",
            self.run_id
        );
        let stop = slot.is_none().then(|| {
            message
                .push_str("; every concurrency slot was taken meanwhile, so the pass stops after this item");
            Stop {
                status: RunStatus::Failed,
                note: format!(
                    "every concurrency slot of drain {} was taken while the database session was lost",
                    self.drain.name
                ),
                exit_code: EXIT_TEMPORARY,
            }
        });
        log::warn!("drain {}: {message}", self.drain.name);
        let event = Event::new(EventKind::DatabaseReconnected, message)
            .drain(&self.drain.name)
            .run(self.run_id)
            .data(json!({ "seconds": seconds, "slot_taken_again": slot.is_some() }));
        Ok(Reopened { event, stop })
    }

    pub(super) fn warn_lost(&self) {
        log::warn!(
            "drain {}: run {}: the database ended this pass's session; reconnecting",
            self.drain.name,
            self.run_id
        );
    }
}

impl<'a> Pass<'a> {
    /// What a new session of this pass needs.
    pub(super) fn session(&self) -> Result<Session<'a>> {
        Ok(Session {
            database: self.config.require_database_url()?,
            drain: self.drain,
            drain_id: self.drain_id,
            run_id: self.run_id,
        })
    }

    /// After a worker that ran `took`: when the server ended the session meanwhile, open a
    /// new one (see `reconnect`). `while_working`: what the recorder tried meanwhile. A
    /// session a statement found gone while the worker ran, or that a failed statement may
    /// have found so, is replaced whatever `took`; so is one after a worker the next claim
    /// does not settle alone (anything but a plain success, or one reporting its usage).
    /// `item`: the one whose worker ran, which the run holds. Once a new session is open,
    /// an item claimed ahead beside the worker by a statement whose reply was lost goes
    /// back at once (see `give_back_unknown_claims`), not at the pass's end: the pass may
    /// take it again, and its record does not say no item was left.
    pub(super) fn reconnect_if_lost(
        &mut self,
        item: &ClaimedItem,
        took: Duration,
        settled_by_next_claim: impl FnOnce() -> bool,
        while_working: &WhileWorking,
    ) -> Result<()> {
        // Asked last: reading the usage parses the output.
        let should_look =
            took >= CHECK_AFTER_WORKER || while_working.statement_failed || !settled_by_next_claim();
        let is_lost = self.client.is_closed() || (should_look && is_session_lost(self.client));
        if is_lost {
            self.reconnect(while_working.lost_at)?;
        } else if should_look && self.turned_read_only() {
            // Settling the item writes: its failure, its quota hit, its backoff.
            self.reconnect(Some(Instant::now()))?;
        } else if !while_working.reopened {
            return Ok(());
        }
        // A session replaced after the worker, or while it ran: a claim made beside it may
        // have lost its reply.
        let known = self.known_claims(Some(item), self.claimed_ahead.as_ref());
        self.give_back_on_a_lasting_session(&known)
    }

    /// [`Pass::give_back_unknown_claims`], on a new session each time the one in use turns
    /// out ended too (within the same minute, see `reconnect`).
    fn give_back_on_a_lasting_session(&mut self, known: &[i64]) -> Result<()> {
        loop {
            match self.give_back_unknown_claims(known, self.clock.now()) {
                Err(error) if is_session_gone(self.client) => {
                    log::debug!("drain {}: {error}", self.drain.name);
                    self.reconnect(None)?;
                }
                given_back => return given_back,
            }
        }
    }

    /// `step` taken again on a new session each time the server ended the one in use
    /// (see [`Pass::unless_session_lost`]), until it goes through or no new session lasts.
    pub(super) fn on_a_lasting_session<T>(
        &mut self,
        mut step: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<T> {
        loop {
            let result = step(self);
            if let Some(value) = self.unless_session_lost(result)? {
                return Ok(value);
            }
        }
    }

    /// The items the pass knows it holds: `item` (whose worker ran), the one claimed
    /// `ahead`, and those whose results wait to be staged or committed.
    fn known_claims(&self, item: Option<&ClaimedItem>, ahead: Option<&ClaimedItem>) -> Vec<i64> {
        [
            item.map(|item| item.id),
            ahead.map(|item| item.id),
            self.staged.as_ref().map(|staged| staged.id),
            self.unstaged.as_ref().map(|unstaged| unstaged.item.id),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// What a statement gave: its value, or — when it failed because the server ended the
    /// session — nothing, once a new session is open (see `reconnect`), so that the caller
    /// takes the same step again (a waiting pass's beat, the commit of a staged result).
    pub(super) fn unless_session_lost<T>(&mut self, result: Result<T>) -> Result<Option<T>> {
        match result {
            Ok(value) => {
                self.session_lost_since = None;
                Ok(Some(value))
            }
            // (A failure may be the first the client hears of the session's end: it is
            // looked at before the error is taken for another.)
            Err(error) if is_session_gone(self.client) => {
                log::debug!("drain {}: {error}", self.drain.name);
                self.reconnect(None)?;
                Ok(None)
            }
            Err(error) if error.is_read_only() => {
                let refused_at = self.refused_as_read_only();
                self.reconnect(Some(refused_at))?;
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Did the session, living on, turn read-only while the worker ran
    /// (`default_transaction_read_only` turned on and the configuration reloaded, a
    /// primary demoted)? Then the pass waits for a session that can write before it
    /// settles the item, as after a refused write (see [`Pass::refused_as_read_only`]). A
    /// look that fails says nothing: the write that follows meets what made it fail.
    fn turned_read_only(&mut self) -> bool {
        let Ok(Some(why)) = crate::db::read_only_reason(self.client) else { return false };
        log::warn!(
            "drain {}: run {}: the database session turned read-only ({why}) while the worker ran; waiting \
             for a session that can write",
            self.drain.name,
            self.run_id
        );
        true
    }

    /// A write the session refused as read-only, its session living on
    /// (`default_transaction_read_only` turned on and the configuration reloaded, a
    /// primary demoted): said, and the instant returned for [`Pass::reconnect`], which
    /// then opens a session that can write as after a failover — one attempt each second
    /// for a minute, the same step sent again on it (docs/operations.md, "When the
    /// database goes away").
    pub(super) fn refused_as_read_only(&self) -> Instant {
        log::warn!(
            "drain {}: run {}: the database refused a write as read-only; waiting for a session that can write",
            self.drain.name,
            self.run_id
        );
        Instant::now()
    }

    /// The statement between two workers failed because the server ended the session:
    /// open a new one (see `reconnect`); the pass then takes the same step again. The
    /// statement may have committed before the session ended, its reply lost: what it
    /// wrote the step writes again harmlessly (staging is an upsert, and a commit that
    /// finds the item done under the run's own claim counts it done), and an item it
    /// claimed goes back unstarted, attempt refunded (see `give_back_unknown_claims`).
    /// `ahead`: the item the pass had claimed ahead before it, which it still holds.
    /// `refused_at`: when the session refused it as read-only instead (see
    /// [`Pass::refused_as_read_only`]).
    pub(super) fn recover_lost_statement(
        &mut self,
        ahead: Option<&ClaimedItem>,
        refused_at: Option<Instant>,
    ) -> Result<()> {
        let known = self.known_claims(None, ahead);
        let recovered = self.reconnect(refused_at).and_then(|()| self.give_back_on_a_lasting_session(&known));
        recovered.map_err(|error| self.results_left(error))
    }

    /// A step went through on the session: the next loss of it starts a new minute.
    pub(super) fn session_is_in_use(&mut self) {
        self.session_lost_since = None;
    }

    /// `error`, with what becomes of the results the pass held when no new session could
    /// be opened: one staged is committed when the run is reaped; one held in memory was
    /// in the statement that was lost, which may have staged it — if it did not, it is
    /// lost and its item runs again (docs/operations.md, "When the database goes away").
    /// The results are the error's from then on: the pass's end does not try to write
    /// them again, nor says a second time what became of them.
    pub(super) fn results_left(&mut self, error: Error) -> Error {
        let reaped = super::staging::reaped(self.run_id);
        let mut error = error;
        if let Some(staged) = self.staged.take() {
            error = error.noted(&format!(
                "the staged result of item {} stays staged in the database: it is committed once {reaped}",
                staged.key
            ));
        }
        if let Some(unstaged) = self.unstaged.take() {
            let key = &unstaged.item.key;
            error = error.noted(&format!(
                "the result of item {key} ({} bytes) was on its way in the statement the session lost: \
                 if that statement staged it, it is committed once {reaped}; if not, it is lost: {}",
                unstaged.result.len(),
                super::staging::runs_again_once_reaped(key, self.run_id)
            ));
        }
        error
    }

    /// Give back every item the run holds but the pass does not know of (all but
    /// `known`): claimed by a statement whose reply the ended session never delivered, so
    /// its worker never started — `pending` again, attempt refunded (`not_started`), an
    /// `item_released` event each. A pass's end does it too, for a claim made beside a
    /// worker whose reply was lost.
    pub(super) fn give_back_unknown_claims(&mut self, known: &[i64], now: DateTime<Utc>) -> Result<()> {
        let (drain, run_id, outbox) = (&self.drain.name, self.run_id, self.outbox);
        for (id, key) in items::held_by_run(self.client, run_id)? {
            if known.contains(&id) {
                continue;
            }
            let message = format!("item {key} given back: {UNKNOWN_CLAIM_NOTE}");
            log::warn!("drain {drain}: run {run_id}: {message}");
            let event = Event::new(EventKind::ItemReleased, message).drain(drain).run(run_id).item(id);
            in_transaction(self.client, |tx| {
                release_refunded(tx, id, run_id, AttemptOutcome::NotStarted, None, UNKNOWN_CLAIM_NOTE, now)?;
                record_event(tx, outbox, &event, now)
            })?;
        }
        Ok(())
    }

    /// Open a new session in place of the one the server ended, trying every
    /// `RECONNECT_EVERY` for `RECONNECT_FOR` from the first call since a step last went
    /// through (a session ended again before a step went through on it counts from that
    /// first call, not from its own), and record it. `lost_at`: when the loss was found
    /// and said, if it was before (a write while the worker ran: the minute still starts
    /// now, when the worker has ended). Fails when none could be opened and used.
    fn reconnect(&mut self, lost_at: Option<Instant>) -> Result<()> {
        if let Some(why) = &self.run_lost {
            return Err(Error::Temporary(why.clone()));
        }
        let session = self.session()?;
        let found = Instant::now();
        let lost_at = lost_at.unwrap_or_else(|| {
            session.warn_lost();
            found
        });
        // Called again before a step went through on the last new session: that one ended
        // too. The minute counts from the first call whatever the new sessions did, and a
        // new session is not opened right after the last (no loop of sessions each ended
        // before the step is sent again).
        let is_again = self.session_lost_since.is_some();
        let since = *self.session_lost_since.get_or_insert(found);
        if is_again {
            if since.elapsed() >= reconnect_for() {
                return Err(Error::Unavailable(format!(
                    "the database ended the session of run {} again and again: no new one lasted a step within {}",
                    self.run_id,
                    crate::duration::format_duration(reconnect_for())
                )));
            }
            std::thread::sleep(RECONNECT_EVERY);
        }
        // Told to stop, the pass still tries once: a server back by then (a restart that
        // is over, a session ended alone) takes what the pass holds — the worker's end, a
        // limit it printed — instead of leaving it to the reaper, charged as a crash.
        let mut tried_after_the_stop = false;
        loop {
            // Before each attempt: one may wait for the connect timeout.
            if let Some(signal) = crate::worker::signals::termination_signal() {
                if tried_after_the_stop {
                    return Err(Error::Temporary(format!(
                        "interrupted by {} while reconnecting to the database",
                        crate::worker::signals::signal_name(signal)
                    )));
                }
                tried_after_the_stop = true;
            }
            let reopened = session.reopen(self.client, &mut self.statements, lost_at).and_then(|reopened| {
                reopened.record(self.client, self.outbox, self.clock.now(), &mut self.stop_after_item)
            });
            match reopened {
                Ok(()) => return Ok(()),
                Err(Error::Temporary(why)) if why.contains(RUN_LOST_IN_A_FAILOVER) => {
                    self.run_lost = Some(why.clone());
                    return Err(Error::Temporary(why));
                }
                Err(Error::Unavailable(why)) => {
                    if since.elapsed() >= reconnect_for() {
                        return Err(Error::Unavailable(format!(
                            "the database ended the session of run {} and no new one could be opened within {} \
                             ({why})",
                            self.run_id,
                            crate::duration::format_duration(reconnect_for())
                        )));
                    }
                    log::debug!("drain {}: not reconnected yet: {why}", self.drain.name);
                    if !tried_after_the_stop {
                        std::thread::sleep(RECONNECT_EVERY);
                    }
                }
                // The new session ended too before it was used (a second failover, a
                // pooler restarting again): another.
                Err(error) if is_session_gone(self.client) && since.elapsed() < reconnect_for() => {
                    log::debug!("drain {}: the new session ended too: {error}", self.drain.name);
                    if !tried_after_the_stop {
                        std::thread::sleep(RECONNECT_EVERY);
                    }
                }
                Err(error) => {
                    return Err(error.context(&format!(
                        "the database ended the session of run {} and the new one could not be used",
                        self.run_id
                    )))
                }
            }
        }
    }
}

/// Whether the session is gone, after a statement failed: the client may know (closed),
/// or learn it only now (a failure may be the first it hears of the session's end).
pub(super) fn is_session_gone(client: &mut Client) -> bool {
    client.is_closed() || is_session_lost(client)
}

/// Did the server end the session? A look that fails on a connection still open (a slow
/// server) is not a lost session.
pub(super) fn is_session_lost(client: &mut Client) -> bool {
    client.is_valid(LOOK_TIMEOUT).is_err() && client.is_closed()
}

/// While a worker runs: once a write found the session gone, try a new one at most every
/// `RECONNECT_EVERY`, one attempt each, so that the worker's output and deadlines wait
/// for at most one connection attempt.
#[derive(Default)]
pub(super) struct WhileWorking {
    lost_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// A statement made while the worker ran failed: the session is looked at after the
    /// worker however quick it was, as the failure may have been the session ending
    /// (the client learns that only at its next use).
    statement_failed: bool,
    /// A new session was opened while the worker ran.
    reopened: bool,
}

impl WhileWorking {
    /// A statement made while the worker ran failed (see `statement_failed`).
    pub(super) fn note_failed_statement(&mut self) {
        self.statement_failed = true;
    }

    /// A new session in `client` when the old one is gone and an attempt is due and works.
    pub(super) fn retry(
        &mut self,
        session: &Session,
        client: &mut Client,
        statements: &mut PreparedStatements,
    ) -> Option<Reopened> {
        if !client.is_closed() || self.last_attempt.is_some_and(|at| at.elapsed() < RECONNECT_EVERY) {
            return None;
        }
        let lost_at = *self.lost_at.get_or_insert_with(|| {
            session.warn_lost();
            Instant::now()
        });
        self.last_attempt = Some(Instant::now());
        match session.reopen(client, statements, lost_at) {
            Ok(reopened) => {
                self.lost_at = None;
                self.reopened = true;
                Some(reopened)
            }
            Err(why) => {
                log::debug!("drain {}: not reconnected yet: {why}", session.drain.name);
                None
            }
        }
    }
}
