//! A pass whose database session ended while a worker ran — the server restarted, failed
//! over, or an administrator ended the session — opens a new one and goes on, so that
//! the worker's result is committed instead of thrown away (docs/operations.md, "When
//! the database goes away").
//!
//! Everything a pass holds lives in the database, not in its session: the run, the
//! claim, a staged result. Only two things die with the session: the prepared
//! statements, prepared again on the new one, and the concurrency slot (an advisory
//! lock), taken again; when another pass took every slot meanwhile, this pass settles
//! the item it holds and stops.

use std::time::{Duration, Instant};

use postgres::Client;
use serde_json::json;

use crate::db::events::{record_event, Event};
use crate::db::PreparedStatements;
use crate::error::{Error, Result, EXIT_TEMPORARY};
use crate::model::{EventKind, RunStatus};

use super::{take_slot, Pass, Stop};

/// A worker that ran at least this long is followed by a look at the connection (one
/// round trip); a quicker one is not worth it, and a session lost then ends the pass as
/// before (the run is reaped, the item runs again).
const CHECK_AFTER_WORKER: Duration = Duration::from_secs(1);

/// How long the look at the connection may wait for the server. A server that does not
/// answer in time is left alone: only a session the server ended is replaced.
const LOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a pass tries to open a new session, and how often.
pub const RECONNECT_FOR: Duration = Duration::from_secs(60);
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

impl Pass<'_> {
    /// Replace the session the server ended while a worker ran: open a new one (trying for
    /// `RECONNECT_FOR`), prepare the statements again and take a concurrency slot again,
    /// with a `database_reconnected` event. Fails when no new session could be opened.
    pub(super) fn reconnect(&mut self) -> Result<()> {
        let lost_at = Instant::now();
        log::warn!(
            "drain {}: run {}: the database ended this pass's session while the worker ran; reconnecting",
            self.drain.name,
            self.run_id
        );
        let database = self.config.require_database_url()?;
        let client = loop {
            match crate::db::connect(database) {
                Ok(client) => break client,
                Err(Error::Unavailable(why))
                    if lost_at.elapsed() < RECONNECT_FOR
                        && crate::worker::signals::termination_signal().is_none() =>
                {
                    log::debug!("drain {}: not reconnected yet: {why}", self.drain.name);
                    std::thread::sleep(RECONNECT_EVERY);
                }
                Err(error) => {
                    return Err(error.context(&format!(
                        "the database ended the session of run {} and no new one could be opened within {}",
                        self.run_id,
                        crate::duration::format_duration(RECONNECT_FOR)
                    )))
                }
            }
        };
        *self.client = client;
        self.statements = PreparedStatements::default();
        crate::db::use_generic_plans(self.client)?;
        let slot = take_slot(self.client, self.drain_id, self.drain.concurrency)?;
        let seconds = lost_at.elapsed().as_secs_f64();
        let mut message = format!(
            "run {} reconnected to the database after {seconds:.1} s: the server had ended its session while a worker ran",
            self.run_id
        );
        if slot.is_none() {
            message
                .push_str("; every concurrency slot was taken meanwhile, so the pass stops after this item");
            self.stop_after_item = Some(Stop {
                status: RunStatus::Failed,
                note: format!(
                    "every concurrency slot of drain {} was taken while the database session was lost",
                    self.drain.name
                ),
                exit_code: EXIT_TEMPORARY,
            });
        }
        log::warn!("drain {}: {message}", self.drain.name);
        let event = Event::new(EventKind::DatabaseReconnected, message)
            .drain(&self.drain.name)
            .run(self.run_id)
            .data(json!({ "seconds": seconds, "slot_taken_again": slot.is_some() }));
        record_event(self.client, self.outbox, &event, self.clock.now())
    }
}

/// After a worker that ran `took`: did the server end the session meanwhile? A look that
/// fails on a connection still open (a slow server) is not a lost session.
pub(super) fn is_session_lost(client: &mut Client, took: Duration) -> bool {
    took >= CHECK_AFTER_WORKER && client.is_valid(LOOK_TIMEOUT).is_err() && client.is_closed()
}
