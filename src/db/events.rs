//! The append-only `events` table: every state change drainctl makes or survives.

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::Value;

use crate::error::Result;

/// One event to record. Build with [`Event::new`] and the `with_*` setters.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: &'static str,
    pub message: String,
    pub drain: Option<String>,
    pub quota_group: Option<String>,
    pub run_id: Option<i64>,
    pub item_id: Option<i64>,
    pub data: Value,
}

impl Event {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Event {
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

/// Append an event.
pub fn record_event(client: &mut impl GenericClient, event: &Event, at: DateTime<Utc>) -> Result<()> {
    client.execute(
        "INSERT INTO events (at, kind, drain, quota_group, run_id, item_id, message, data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &at,
            &event.kind,
            &event.drain,
            &event.quota_group,
            &event.run_id,
            &event.item_id,
            &event.message,
            &event.data,
        ],
    )?;
    Ok(())
}

/// Append an event, logging (not failing) when it cannot be written: used on paths that
/// are already handling another failure.
pub fn record_event_or_log(client: &mut impl GenericClient, event: &Event, at: DateTime<Utc>) {
    if let Err(error) = record_event(client, event, at) {
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

/// Which events [`list_events`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    pub drain: Option<&'a str>,
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
          ORDER BY at DESC, id DESC
          LIMIT $4",
        &[&filter.drain, &filter.since, &filter.kind, &limit],
    )?;
    Ok(rows
        .iter()
        .map(|row| EventRow {
            id: row.get(0),
            at: row.get(1),
            kind: row.get(2),
            drain: row.get(3),
            quota_group: row.get(4),
            run_id: row.get(5),
            item_id: row.get(6),
            message: row.get(7),
            data: row.get(8),
        })
        .collect())
}
