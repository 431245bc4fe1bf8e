//! The append-only `events` table: every state change drainctl makes or survives.
//!
//! Recording is also where notification starts: every event goes through [`record_event`],
//! which keeps one of a kind the notifier wants (with its id) in the invocation's
//! [`Outbox`]; [`Outbox::take_committed`] later hands over those whose insert has
//! committed, so every recorded event of such a kind is notified once and one rolled back
//! never is. `crate::notify` drains the outbox.

use std::cell::RefCell;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use postgres::{Client, GenericClient};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::EventKind;

/// An event this process recorded, as kept for the notifier.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub id: i64,
    pub event: Event,
    pub at: DateTime<Utc>,
    /// Its notification is a row of `notifications_due`, to claim before the notifier runs
    /// and to remove after: every event but a migration's (recorded while that table may
    /// not exist yet).
    pub is_due_row: bool,
}

/// The events of one invocation that wait for the notifier: owned by the invocation's
/// `Context` and passed to every [`record_event`]. Shared (`&Outbox`) so that it travels
/// next to a borrowed client or transaction; one thread uses it.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The kinds to keep; empty keeps nothing.
    kinds: Vec<EventKind>,
    pending: RefCell<Vec<RecordedEvent>>,
}

impl Outbox {
    /// An outbox that keeps every recorded event of these kinds (never `notify_failed`).
    pub fn keeping(kinds: &[EventKind]) -> Outbox {
        Outbox { kinds: kinds.to_vec(), pending: RefCell::default() }
    }

    /// An outbox that keeps nothing: for an invocation without a notifier.
    pub fn unwatched() -> Outbox {
        Outbox::default()
    }

    /// Does the notifier want events of this kind?
    fn wants(&self, kind: EventKind) -> bool {
        kind != EventKind::NotifyFailed && self.kinds.contains(&kind)
    }

    fn keep(&self, id: i64, event: &Event, at: DateTime<Utc>, is_due_row: bool) {
        if self.wants(event.kind) {
            self.pending.borrow_mut().push(RecordedEvent { id, event: event.clone(), at, is_due_row });
        }
    }

    /// The kept events whose insert has committed, oldest first; the outbox is emptied (an
    /// event whose transaction rolled back is forgotten). Takes a plain client: it must
    /// never run inside the transaction that recorded them.
    pub fn take_committed(&self, client: &mut Client) -> Result<Vec<RecordedEvent>> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if pending.is_empty() {
            return Ok(pending);
        }
        let ids: Vec<i64> = pending.iter().map(|recorded| recorded.id).collect();
        let rows = client.query("SELECT id FROM events WHERE id = ANY($1)", &[&ids])?;
        let committed: HashSet<i64> = rows.iter().map(|row| row.get(0)).collect();
        Ok(pending.into_iter().filter(|recorded| committed.contains(&recorded.id)).collect())
    }
}

/// One event to record. Build with [`Event::new`] and the `with_*` setters.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub message: String,
    pub drain: Option<String>,
    pub quota_group: Option<String>,
    pub run_id: Option<i64>,
    pub item_id: Option<i64>,
    pub data: Value,
}

impl Event {
    pub fn new(kind: EventKind, message: impl Into<String>) -> Event {
        Event {
            kind,
            message: message.into(),
            drain: None,
            quota_group: None,
            run_id: None,
            item_id: None,
            data: Value::Object(Default::default()),
        }
    }

    pub fn drain(mut self, drain: &str) -> Event {
        self.drain = Some(drain.to_string());
        self
    }

    pub fn quota_group(mut self, group: &str) -> Event {
        self.quota_group = Some(group.to_string());
        self
    }

    pub fn run(mut self, run_id: i64) -> Event {
        self.run_id = Some(run_id);
        self
    }

    pub fn item(mut self, item_id: i64) -> Event {
        self.item_id = Some(item_id);
        self
    }

    pub fn data(mut self, data: Value) -> Event {
        self.data = data;
        self
    }
}

/// Append an event, and keep it in `outbox` for the notifier when its kind is wanted: the
/// one way an event is recorded. A wanted event's notification is due from the moment the
/// event commits (a row of `notifications_due`, written by the same statement), so that it
/// is sent even when this process dies before it could send it (see
/// [`claim_left_behind`]).
pub fn record_event(
    client: &mut impl GenericClient,
    outbox: &Outbox,
    event: &Event,
    at: DateTime<Utc>,
) -> Result<()> {
    insert_event(client, outbox, event, at, outbox.wants(event.kind))
}

/// [`record_event`] for an event no notification is sent for: what an earlier event of
/// the same moment already announced (a limit's wait widened, docs/rate-limits.md).
pub fn record_unannounced_event(
    client: &mut impl GenericClient,
    event: &Event,
    at: DateTime<Utc>,
) -> Result<()> {
    insert_event(client, &Outbox::unwatched(), event, at, false)
}

/// [`record_event`] for a migration's event, recorded in the transaction that applies it,
/// when `notifications_due` may not exist yet: its notification is kept in memory only
/// (`migrate` sends it as soon as the migration committed).
pub fn record_migration_event(
    client: &mut impl GenericClient,
    outbox: &Outbox,
    event: &Event,
    at: DateTime<Utc>,
) -> Result<()> {
    insert_event(client, outbox, event, at, false)
}

fn insert_event(
    client: &mut impl GenericClient,
    outbox: &Outbox,
    event: &Event,
    at: DateTime<Utc>,
    is_due_row: bool,
) -> Result<()> {
    // A message or data quoting a worker or a setting may hold a password: neither the
    // row nor the notification shows it (docs/configuration.md).
    let event = &Event {
        message: crate::error::scrub(&event.message),
        data: super::map_strings(&event.data, &crate::error::scrub),
        ..event.clone()
    };
    // Nor U+0000, which neither column takes.
    let (message, data) = (super::storable_text(&event.message), super::storable_json(&event.data));
    // Without a due notification the statement names only `events`: a migration's event
    // is recorded before `notifications_due` exists.
    let statement = if is_due_row {
        "WITH event AS (
             INSERT INTO events (at, kind, drain, quota_group, run_id, item_id, message, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING id),
         due AS (
             INSERT INTO notifications_due (event_id) SELECT id FROM event)
         SELECT id FROM event"
    } else {
        "INSERT INTO events (at, kind, drain, quota_group, run_id, item_id, message, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id"
    };
    let row = client.query_one(
        statement,
        &[
            &at,
            &event.kind,
            &event.drain,
            &event.quota_group,
            &event.run_id,
            &event.item_id,
            &message.as_ref(),
            &data.as_ref(),
        ],
    )?;
    outbox.keep(row.get(0), event, at, is_due_row);
    Ok(())
}

/// Claim the due notification of event `event_id` for this process, at `now`: false when
/// another process has claimed it (the next `supervise` pass sends what a process left
/// behind) or it is not due.
pub fn claim_notification(client: &mut Client, event_id: i64, now: DateTime<Utc>) -> Result<bool> {
    let claimed = client.execute(
        "UPDATE notifications_due SET claimed_at = $2 WHERE event_id = $1 AND claimed_at IS NULL",
        &[&event_id, &now],
    )?;
    Ok(claimed > 0)
}

/// The notifier ran for event `event_id` (or failed, which a `notify_failed` event records):
/// its notification is no longer due.
pub fn notification_sent(client: &mut Client, event_id: i64) -> Result<()> {
    client.execute("DELETE FROM notifications_due WHERE event_id = $1", &[&event_id])?;
    Ok(())
}

/// Claim, at `now`, the oldest notification another process left due — never claimed (it
/// died before it could send it), or claimed before `claimed_before` (it died while
/// sending) — with its event; None when there is none.
pub fn claim_left_behind(
    client: &mut Client,
    claimed_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<RecordedEvent>> {
    let row = client.query_opt(
        "WITH taken AS (
             UPDATE notifications_due d SET claimed_at = $2
              WHERE d.event_id = (SELECT n.event_id FROM notifications_due n JOIN events e ON e.id = n.event_id
                                   WHERE n.claimed_at IS NULL OR n.claimed_at < $1
                                   ORDER BY n.event_id LIMIT 1 FOR UPDATE OF n SKIP LOCKED)
             RETURNING d.event_id)
         SELECT e.id, e.at, e.kind, e.drain, e.quota_group, e.run_id, e.item_id, e.message, e.data
           FROM events e JOIN taken t ON t.event_id = e.id",
        &[&claimed_before, &now],
    )?;
    let Some(row) = row else { return Ok(None) };
    let stored = EventRow::read(&row);
    Ok(Some(RecordedEvent {
        id: stored.id,
        at: stored.at,
        event: Event {
            kind: stored
                .kind
                .parse()
                .map_err(|error| Error::Internal(format!("event {}: {error}", stored.id)))?,
            drain: stored.drain,
            quota_group: stored.quota_group,
            run_id: stored.run_id,
            item_id: stored.item_id,
            message: stored.message,
            data: stored.data,
        },
        is_due_row: true,
    }))
}

/// Give back the claim on event `event_id`'s notification, unsent: due again for the next
/// `supervise` pass (its notifier was stopped with drainctl).
pub fn release_notification(client: &mut Client, event_id: i64) -> Result<()> {
    client.execute("UPDATE notifications_due SET claimed_at = NULL WHERE event_id = $1", &[&event_id])?;
    Ok(())
}

/// Append an event, logging (not failing) when it cannot be written: used on paths that
/// are already handling another failure.
pub fn record_event_or_log(
    client: &mut impl GenericClient,
    outbox: &Outbox,
    event: &Event,
    at: DateTime<Utc>,
) {
    if let Err(error) = record_event(client, outbox, event, at) {
        log::error!("could not record event {} ({}): {error}", event.kind, event.message);
    }
}

/// A recorded event, as `events` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub drain: Option<String>,
    pub quota_group: Option<String>,
    pub run_id: Option<i64>,
    pub item_id: Option<i64>,
    pub message: String,
    pub data: Value,
}

impl EventRow {
    /// Read from a row selected as `id, at, kind, drain, quota_group, run_id, item_id,
    /// message, data`.
    fn read(row: &postgres::Row) -> EventRow {
        EventRow {
            id: row.get(0),
            at: row.get(1),
            kind: row.get(2),
            drain: row.get(3),
            quota_group: row.get(4),
            run_id: row.get(5),
            item_id: row.get(6),
            message: row.get(7),
            data: row.get(8),
        }
    }
}

/// Which events [`list_events`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    pub drain: Option<&'a str>,
    /// A quota group: its own events and those of `group_drains`.
    pub group: Option<&'a str>,
    pub group_drains: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub kind: Option<&'a str>,
}

/// Events matching `filter`, newest first, at most `limit` (index `events_at` or
/// `events_drain_at`).
pub fn list_events(
    client: &mut impl GenericClient,
    filter: &EventFilter,
    limit: i64,
) -> Result<Vec<EventRow>> {
    let rows = client.query(
        "SELECT id, at, kind, drain, quota_group, run_id, item_id, message, data
           FROM events
          WHERE ($1::text IS NULL OR drain = $1)
            AND ($2::timestamptz IS NULL OR at >= $2)
            AND ($3::text IS NULL OR kind = $3)
            AND ($5::text IS NULL OR quota_group = $5 OR drain = ANY($6))
          ORDER BY at DESC, id DESC
          LIMIT $4",
        &[&filter.drain, &filter.since, &filter.kind, &limit, &filter.group, &filter.group_drains],
    )?;
    Ok(rows.iter().map(EventRow::read).collect())
}
