//! Retention: delete history older than its horizon, one bounded batch per statement (and
//! so per transaction), and the `maintenance` table that remembers when it last ran.
//!
//! Every function takes a `limit` and `dry_run`. The same query picks the candidates of a
//! dry run and of a real one, so a dry run counts exactly what a real one would remove; a
//! dry run's statement only reads (it runs on a read-only database or for a role that may
//! only read). Each returns (candidates, deleted, related rows: the attempts that go with
//! deleted runs).

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::error::Result;

/// What one batch statement found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Batch {
    pub candidates: i64,
    pub deleted: i64,
    /// Attempts deleted with their runs (counted, not deleted, in a dry run).
    pub related: i64,
}

/// One batch statement of this file, whole (`$1` the horizon, `$2` the limit), as a real
/// batch and as a dry run: each selects (candidates, deleted, related).
struct BatchStatement {
    real: &'static str,
    dry_run: &'static str,
}

/// A [`BatchStatement`] from its three parts, joined at compile time: the query that picks
/// the `candidates`, the data-modifying CTEs that delete them (ending in `gone`, one row
/// per deleted row), and the expression that counts their related rows. The dry run
/// leaves the deletes out, so it only reads.
macro_rules! batch_statement {
    (candidates: $candidates:expr, deletes: $deletes:expr, related: $related:expr $(,)?) => {
        BatchStatement {
            real: concat!(
                "WITH candidates AS (",
                $candidates,
                "), ",
                $deletes,
                " SELECT (SELECT count(*) FROM candidates), (SELECT count(*) FROM gone), ",
                $related
            ),
            dry_run: concat!(
                "WITH candidates AS (",
                $candidates,
                ") SELECT (SELECT count(*) FROM candidates), 0::bigint, ",
                $related
            ),
        }
    };
}

/// Run `statement` as a real batch, or as a dry run.
fn run_batch(
    client: &mut impl GenericClient,
    statement: &BatchStatement,
    before: DateTime<Utc>,
    limit: i64,
    dry_run: bool,
) -> Result<Batch> {
    let sql = if dry_run { statement.dry_run } else { statement.real };
    let row = client.query_one(sql, &[&before, &limit])?;
    Ok(Batch { candidates: row.get(0), deleted: row.get(1), related: row.get(2) })
}

/// Finished runs that started before `before`, with their attempts — except a run that
/// still has a staged result, holds a running item, or made an attempt of an item that is
/// pending, running or dead (a dead letter's history explains it until `retry`).
pub fn prune_runs(
    client: &mut impl GenericClient,
    before: DateTime<Utc>,
    limit: i64,
    dry_run: bool,
) -> Result<Batch> {
    const STATEMENT: BatchStatement = batch_statement! {
        candidates: "SELECT r.id FROM runs r
              WHERE r.started_at < $1 AND r.status <> 'running'
                -- a drain's latest run: its `every` cadence counts from it
                AND (r.status = 'lock_skipped'
                     OR EXISTS (SELECT 1 FROM runs n
                                 WHERE n.drain = r.drain AND n.status <> 'lock_skipped'
                                   AND (n.started_at, n.id) > (r.started_at, r.id)))
                AND NOT EXISTS (SELECT 1 FROM staged_results s WHERE s.run_id = r.id)
                AND NOT EXISTS (SELECT 1 FROM items i WHERE i.claimed_by = r.id AND i.state = 'running')
                AND NOT EXISTS (SELECT 1 FROM attempts a JOIN items i ON i.id = a.item_id
                                 WHERE a.run_id = r.id AND i.state IN ('pending', 'running', 'dead'))
              ORDER BY r.started_at, r.id
              LIMIT $2",
        deletes: "gone_attempts AS (
             DELETE FROM attempts WHERE run_id IN (SELECT id FROM candidates)),
         gone AS (
             DELETE FROM runs WHERE id IN (SELECT id FROM candidates) AND status <> 'running'
             RETURNING 1)",
        related: "(SELECT count(*) FROM attempts WHERE run_id IN (SELECT id FROM candidates))",
    };
    run_batch(client, &STATEMENT, before, limit, dry_run)
}

/// Supervisor passes that fired before `before`, except the latest acting one (the
/// heartbeat `status` and `doctor` read).
pub fn prune_supervisor_passes(
    client: &mut impl GenericClient,
    before: DateTime<Utc>,
    limit: i64,
    dry_run: bool,
) -> Result<Batch> {
    const STATEMENT: BatchStatement = batch_statement! {
        candidates: "SELECT id FROM supervisor_passes
              WHERE fired_at < $1
                AND id NOT IN (SELECT id FROM supervisor_passes WHERE status = 'done'
                                ORDER BY fired_at DESC, id DESC LIMIT 1)
              ORDER BY fired_at, id
              LIMIT $2",
        deletes:
            "gone AS (DELETE FROM supervisor_passes WHERE id IN (SELECT id FROM candidates) RETURNING 1)",
        related: "0::bigint",
    };
    run_batch(client, &STATEMENT, before, limit, dry_run)
}

/// Events recorded before `before` (index `events_at`), with a notification still due
/// for one (`notifications_due`, migration 0016).
pub fn prune_events(
    client: &mut impl GenericClient,
    before: DateTime<Utc>,
    limit: i64,
    dry_run: bool,
) -> Result<Batch> {
    const STATEMENT: BatchStatement = batch_statement! {
        candidates: "SELECT id FROM events WHERE at < $1 ORDER BY at, id LIMIT $2",
        deletes: "gone AS (
             DELETE FROM events WHERE id IN (SELECT id FROM candidates) RETURNING id),
         undue AS (
             DELETE FROM notifications_due WHERE event_id IN (SELECT id FROM gone))",
        related: "0::bigint",
    };
    run_batch(client, &STATEMENT, before, limit, dry_run)
}

/// Done and skipped_missing items that finished before `before`, with their attempts
/// (index `items_finished_id`, in its order). The state is checked again as each row is deleted, so an
/// item reset to pending meanwhile stays. A removed `skipped_missing` item never ran: its
/// source file is forgotten too, so that the file, should it come back, is enqueued as new
/// (a file whose done item was removed is remembered and not enqueued again).
pub fn prune_done_items(
    client: &mut impl GenericClient,
    before: DateTime<Utc>,
    limit: i64,
    dry_run: bool,
) -> Result<Batch> {
    const STATEMENT: BatchStatement = batch_statement! {
        candidates: "SELECT id FROM items
              WHERE state IN ('done', 'skipped_missing') AND finished_at < $1
              ORDER BY finished_at, id
              LIMIT $2",
        deletes: "gone AS (
             DELETE FROM items
              WHERE id IN (SELECT id FROM candidates)
                AND state IN ('done', 'skipped_missing') AND finished_at < $1
             RETURNING drain, key, state),
         forgotten AS (
             DELETE FROM source_files f USING gone g
              WHERE g.state = 'skipped_missing' AND f.drain = g.drain AND f.path = g.key)",
        related: "0::bigint",
    };
    run_batch(client, &STATEMENT, before, limit, dry_run)
}

/// Log files of runs still running (never removed, however old).
pub fn running_log_paths(client: &mut impl GenericClient) -> Result<Vec<String>> {
    let rows =
        client.query("SELECT log_path FROM runs WHERE status = 'running' AND log_path IS NOT NULL", &[])?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Is `task` due: never run, or last run at or before `due_if_before` ([`claim_task`]
/// without the claim)?
pub fn is_task_due(
    client: &mut impl GenericClient,
    task: &str,
    due_if_before: DateTime<Utc>,
) -> Result<bool> {
    let row = client
        .query_opt("SELECT last_run_at <= $2 FROM maintenance WHERE task = $1", &[&task, &due_if_before])?;
    Ok(row.is_none_or(|row| row.get(0)))
}

/// Claim housekeeping `task` if it last ran at or before `due_if_before` (or never):
/// records `now` as its last run and returns true; false when it ran more recently.
pub fn claim_task(
    client: &mut impl GenericClient,
    task: &str,
    due_if_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let row = client.query_opt(
        "INSERT INTO maintenance (task, last_run_at) VALUES ($1, $2)
         ON CONFLICT (task) DO UPDATE SET last_run_at = EXCLUDED.last_run_at
          WHERE maintenance.last_run_at <= $3
         RETURNING task",
        &[&task, &now, &due_if_before],
    )?;
    Ok(row.is_some())
}

/// Record a claim of `task` made as of `claimed_at` as a run at `counted_at` instead: a
/// prune claimed as one that failed, done.
pub fn count_task_as_run_at(
    client: &mut impl GenericClient,
    task: &str,
    claimed_at: DateTime<Utc>,
    counted_at: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "UPDATE maintenance SET last_run_at = $3 WHERE task = $1 AND last_run_at = $2",
        &[&task, &claimed_at, &counted_at],
    )?;
    Ok(())
}
