//! A success is staged durably with the next claim and committed under the run's fencing
//! token while the next worker runs; whatever is left is committed before the pass ends.

use chrono::{DateTime, Utc};

use crate::db::events::{record_event, Event};
use crate::db::in_transaction;
use crate::db::items::{self, Completion};
use crate::error::{Error, Result};
use crate::model::AttemptOutcome;
use crate::model::EventKind;

use super::item::release_refunded;
#[cfg(feature = "testing")]
use super::FAULT_ENV;
use super::{Pass, StagedItem};

impl Pass<'_> {
    /// Stage the result that waits for the next claim, on its own.
    pub(super) fn stage_unstaged(&mut self) -> Result<()> {
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
        self.mark_staged();
        Ok(())
    }

    /// The waiting result has been staged (committed): it waits in `staged` for its move
    /// into the item.
    pub(super) fn mark_staged(&mut self) {
        self.staged = self.unstaged.take().map(|succeeded| succeeded.item);
        #[cfg(feature = "testing")]
        self.after_staging();
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

    /// Stage and commit the waiting result now, if there is one. A failure says what
    /// became of the result: one still held in memory is lost, one staged is committed
    /// by the reaper (see [`uncommitted`]).
    pub(super) fn commit_staged(&mut self) -> Result<()> {
        if let Some(unstaged) = &self.unstaged {
            let (key, bytes) = (unstaged.item.key.clone(), unstaged.result.len());
            // A session the server ended is replaced and the result staged again on the
            // new one (staging is an upsert), as its commit below is: a second session
            // ended within the minute does not lose it either.
            if let Err(error) = self.on_a_lasting_session(Pass::stage_unstaged) {
                let session_lost = self.client.is_closed();
                return Err(uncommitted(error, &key, Some(bytes), self.run_id, session_lost));
            }
        }
        let Some(staged) = self.staged.take() else { return Ok(()) };
        #[cfg(feature = "testing")]
        before_commit();
        // A session the server ended is replaced and the same commit sent again: one whose
        // reply was lost finds the item done under the run's own claim and counts it done
        // (docs/operations.md, "When the database goes away").
        let run_id = self.run_id;
        let committed = self.on_a_lasting_session(|pass| {
            let now = pass.clock.now();
            let run_worker = items::RunWorker::Set(None);
            items::complete_item(pass.client, &mut pass.statements, staged.id, run_id, now, run_worker)
                .map(|completion| (completion, now))
        });
        let (completion, now) = committed
            .map_err(|error| uncommitted(error, &staged.key, None, run_id, self.client.is_closed()))?;
        self.settle_commit(&staged, completion, now, false)
    }

    /// After the commit of a staged result: count it (and log it, unless `logged`), clear
    /// the account's suspected mark when it carried one, or record why it could not be
    /// committed (releasing the item of a damaged one).
    pub(super) fn settle_commit(
        &mut self,
        staged: &StagedItem,
        completion: Completion,
        now: DateTime<Utc>,
        logged: bool,
    ) -> Result<()> {
        let (drain, run_id) = (self.drain, self.run_id);
        match completion {
            Completion::Completed => {
                self.done += 1;
                if !logged {
                    log_done(drain, staged);
                }
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
            Completion::ClaimLost(held_now) => {
                let message = format!(
                    "run {run_id} lost its claim on item {} ({}); result not committed",
                    staged.key,
                    held_now.describe(run_id)
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
}

/// The test hook `DRAINCTL_FAULT=wait_before_commit:PATH` (`testing` feature only): before
/// a staged result is committed on its own, create `PATH.waiting` and wait (up to a
/// minute) until `PATH` exists, so that a test can end the run meanwhile.
#[cfg(feature = "testing")]
fn before_commit() {
    let Some(path) = std::env::var(FAULT_ENV)
        .ok()
        .and_then(|fault| fault.strip_prefix("wait_before_commit:").map(str::to_string))
    else {
        return;
    };
    let _ = std::fs::write(format!("{path}.waiting"), "");
    let started = std::time::Instant::now();
    while !std::path::Path::new(&path).exists() && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The log line of an item whose result is committed.
pub(super) fn log_done(drain: &crate::config::DrainConfig, staged: &StagedItem) {
    log::info!("drain {}: item {} done", drain.name, staged.key);
}

/// The error of a result that could not be written or committed. With the session lost,
/// it says what became of the result: one held only in memory (`bytes`: it waited for the
/// next claim to stage it) is lost and its item runs again, its attempt counted; one
/// staged is kept, and the reaper commits it (docs/operations.md, "When the database goes
/// away"). On a session that lasts, the pass's end tries once more and says which
/// (`fail_run`).
fn uncommitted(error: Error, key: &str, bytes: Option<usize>, run_id: i64, session_lost: bool) -> Error {
    let (what, then) = match bytes {
        Some(bytes) => (
            format!("could not write the result of item {key} ({bytes} bytes) to the database"),
            format!("it was held only in memory: it is lost; {}", runs_again_once_reaped(key, run_id)),
        ),
        None => (
            format!("could not commit the staged result of item {key}"),
            format!("it stays staged in the database: it is committed once {}", reaped(run_id)),
        ),
    };
    match session_lost {
        true => error.context(&what).noted(&then),
        false => error.context(&what),
    }
}

/// When a run a pass left `running` is ended: "supervise or the drain's next pass reaps
/// run 12".
pub(super) fn reaped(run_id: i64) -> String {
    format!("supervise or the drain's next pass reaps run {run_id}")
}

/// What becomes of item `key`, whose outcome run `run_id` could not record: "once … reaps
/// run 12, item a runs again (the attempt counts, …)".
pub(super) fn runs_again_once_reaped(key: &str, run_id: i64) -> String {
    format!(
        "once {}, item {key} runs again (the attempt counts, as for a crash: on its last attempt it is dead; \
         it is given back instead when the run left an earlier item open too: the reaper cannot tell that this \
         one's worker started)",
        reaped(run_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_that_could_not_be_committed_says_whether_it_is_lost_or_kept() {
        let lost = || Error::Unavailable("database connection lost: connection closed".into());
        assert_eq!(
            uncommitted(lost(), "a", Some(11), 4, true).to_string(),
            "could not write the result of item a (11 bytes) to the database: database connection lost: \
             connection closed; it was held only in memory: it is lost; once supervise or the drain's \
             next pass reaps run 4, item a runs again (the attempt counts, as for a crash: on its last \
             attempt it is dead; it is given back instead when the run left an earlier item open too: the \
             reaper cannot tell that this one's worker started)"
        );
        let kept = uncommitted(lost(), "b", None, 4, true);
        assert_eq!(kept.exit_code(), lost().exit_code());
        assert_eq!(
            kept.to_string(),
            "could not commit the staged result of item b: database connection lost: connection closed; \
             it stays staged in the database: it is committed once supervise or the drain's next pass \
             reaps run 4"
        );
    }
}
