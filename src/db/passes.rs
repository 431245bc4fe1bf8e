//! The `supervisor_passes` table: one row per `supervise` invocation with every decision.

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::Value;

use crate::error::Result;
use crate::model::PassStatus;

#[derive(Debug, Clone)]
pub struct PassRecord<'a> {
    pub fired_at: DateTime<Utc>,
    pub scheduled_for: DateTime<Utc>,
    pub host: &'a str,
    pub pid: i32,
    pub status: PassStatus,
    pub duration_ms: i32,
    pub decisions: Value,
}

pub fn insert_pass(client: &mut impl GenericClient, pass: &PassRecord) -> Result<i64> {
    let row = client.query_one(
        "INSERT INTO supervisor_passes (fired_at, scheduled_for, host, pid, status, duration_ms, decisions)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        &[
            &pass.fired_at,
            &pass.scheduled_for,
            &pass.host,
            &pass.pid,
            &pass.status,
            &pass.duration_ms,
            &pass.decisions,
        ],
    )?;
    Ok(row.get(0))
}

/// This host's acting passes that fired at or after `since` with a start still awaiting
/// its run (`"awaiting_run": true`): id, when each fired and its recorded decisions,
/// oldest first.
pub fn recent_awaiting_passes(
    client: &mut impl GenericClient,
    host: &str,
    since: DateTime<Utc>,
) -> Result<Vec<(i64, DateTime<Utc>, Value)>> {
    let rows = client.query(
        "SELECT id, fired_at, decisions FROM supervisor_passes
          WHERE fired_at >= $2 AND host = $1 AND status = 'done'
            AND decisions @> '[{\"awaiting_run\": true}]'
          ORDER BY id",
        &[&host, &since],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect())
}

/// The recorded decisions of pass `id`, if it is there.
pub fn decisions_of(client: &mut impl GenericClient, id: i64) -> Result<Option<Value>> {
    let row = client.query_opt("SELECT decisions FROM supervisor_passes WHERE id = $1", &[&id])?;
    Ok(row.map(|row| row.get(0)))
}

/// Replace the recorded decisions of pass `id` (a start found to have ended without a
/// run is marked so, once).
pub fn set_decisions(client: &mut impl GenericClient, id: i64, decisions: &Value) -> Result<()> {
    client.execute("UPDATE supervisor_passes SET decisions = $2 WHERE id = $1", &[&id, decisions])?;
    Ok(())
}

/// When the acting pass recorded last fired and how long it took. The last recorded, not
/// the latest `fired_at`: after the clock went back, a pass recorded earlier can carry a
/// later instant, and it must not stand for the heartbeat (docs/operations.md, "Status").
pub fn last_pass(client: &mut impl GenericClient) -> Result<Option<(DateTime<Utc>, i32)>> {
    let row = client.query_opt(
        "SELECT fired_at, duration_ms FROM supervisor_passes WHERE status = 'done'
          ORDER BY id DESC LIMIT 1",
        &[],
    )?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

/// When the last pass on `host` fired, acting or skipped for the lock (its supervise runs
/// either way); None when it has none on record.
pub fn last_pass_on_host(client: &mut impl GenericClient, host: &str) -> Result<Option<DateTime<Utc>>> {
    let row = client.query_opt(
        "SELECT fired_at FROM supervisor_passes WHERE host = $1 ORDER BY id DESC LIMIT 1",
        &[&host],
    )?;
    Ok(row.map(|row| row.get(0)))
}

/// The failures recorded since the last acting pass fired (`supervise_error` events: its
/// failed steps, and those of the passes skipped after it); before any acting pass, all
/// of them (the passes skipped for a first one stuck holding the lock).
pub fn failures_since_last_pass(client: &mut impl GenericClient) -> Result<i64> {
    let row = client.query_one(
        "SELECT count(*) FROM events
          WHERE kind = 'supervise_error'
            AND at >= coalesce((SELECT fired_at FROM supervisor_passes WHERE status = 'done' ORDER BY id DESC LIMIT 1),
                               '-infinity')",
        &[],
    )?;
    Ok(row.get(0))
}

/// One recorded pass, as `drainctl passes` shows it.
#[derive(Debug, Clone)]
pub struct PassRow {
    pub id: i64,
    pub fired_at: DateTime<Utc>,
    pub scheduled_for: DateTime<Utc>,
    pub host: String,
    pub pid: i32,
    pub status: PassStatus,
    pub duration_ms: i32,
    /// The decisions as the pass recorded them (`supervise --json`'s `decisions`).
    pub decisions: Value,
}

/// The latest `limit` passes, newest first (index `supervisor_passes_fired`).
pub fn list_passes(client: &mut impl GenericClient, limit: i64) -> Result<Vec<PassRow>> {
    let rows = client.query(
        "SELECT id, fired_at, scheduled_for, host, pid, status, duration_ms, decisions
           FROM supervisor_passes ORDER BY fired_at DESC, id DESC LIMIT $1",
        &[&limit],
    )?;
    Ok(rows
        .into_iter()
        .map(|row| PassRow {
            id: row.get(0),
            fired_at: row.get(1),
            scheduled_for: row.get(2),
            host: row.get(3),
            pid: row.get(4),
            status: row.get(5),
            duration_ms: row.get(6),
            decisions: row.get(7),
        })
        .collect())
}

/// The `lock_skipped` passes since the last acting one: how many, and when the first of
/// them fired (None when there are none).
pub fn skipped_since_last_done(client: &mut impl GenericClient) -> Result<Option<(i64, DateTime<Utc>)>> {
    let row = client.query_one(
        // Recorded after the last acting pass (by id, as `last_pass`): after the clock
        // went back, an acting pass with a later instant must not hide them.
        "SELECT count(*), min(fired_at) FROM supervisor_passes
          WHERE status = 'lock_skipped'
            AND id > coalesce((SELECT max(id) FROM supervisor_passes WHERE status = 'done'), 0)",
        &[],
    )?;
    let first: Option<DateTime<Utc>> = row.get(1);
    Ok(first.map(|first| (row.get(0), first)))
}
