//! The `runs` table: one row per `drain` invocation, its liveness (checkpoints, the
//! worker it is running) and how it ended.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use postgres::types::Type;
use postgres::GenericClient;

use crate::db::PreparedStatements;
use crate::error::Result;
use crate::model::{RunStatus, Trigger};

/// What a new run row records about the process.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub drain: &'a str,
    pub trigger: Trigger,
    pub host: &'a str,
    /// Boot and PID namespace of the process (see `worker::process::host_id`).
    pub host_id: Option<&'a str>,
    pub pid: i32,
    pub process_start_time: Option<i64>,
    pub log_path: Option<&'a str>,
}

pub fn insert_run(client: &mut impl GenericClient, run: &NewRun, now: DateTime<Utc>) -> Result<i64> {
    insert(client, run, RunStatus::Running, None, now)
}

/// A run that never started work because every concurrency slot was taken.
pub fn insert_lock_skipped_run(
    client: &mut impl GenericClient,
    run: &NewRun,
    note: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    insert(client, run, RunStatus::LockSkipped, Some(note), now)
}

/// A new run row with `status`: finished at once unless it is `running`.
fn insert(
    client: &mut impl GenericClient,
    run: &NewRun,
    status: RunStatus,
    note: Option<&str>,
    now: DateTime<Utc>,
) -> Result<i64> {
    let finished_at = (status != RunStatus::Running).then_some(now);
    let row = client.query_one(
        "INSERT INTO runs (drain, trigger, host, pid, process_start_time, started_at,
                           last_checkpoint_at, status, finished_at, note, log_path, host_id)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11) RETURNING id",
        &[
            &run.drain,
            &run.trigger,
            &run.host,
            &run.pid,
            &run.process_start_time,
            &now,
            &status,
            &finished_at,
            &note,
            &run.log_path,
            &run.host_id,
        ],
    )?;
    Ok(row.get(0))
}

/// Record proof of progress: `checkpoints` more checkpoints at `now`.
pub fn record_checkpoint(
    client: &mut impl GenericClient,
    run_id: i64,
    checkpoints: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    client.query_typed(
        "UPDATE runs SET last_checkpoint_at = greatest(last_checkpoint_at, $2),
                checkpoints = checkpoints + $3
          WHERE id = $1 AND status = 'running'",
        &[(&run_id, Type::INT8), (&now, Type::TIMESTAMPTZ), (&checkpoints, Type::INT8)],
    )?;
    Ok(())
}

/// Record the worker process the run is waiting on (pid = process group id).
pub fn set_worker(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    run_id: i64,
    pid: i32,
    start_time: Option<i64>,
) -> Result<()> {
    statements.query(
        client,
        "UPDATE runs SET worker_pid = $2, worker_start_time = $3 WHERE id = $1",
        &[(&run_id, Type::INT8), (&pid, Type::INT4), (&start_time, Type::INT8)],
    )?;
    Ok(())
}

/// Set the last checkpoint of the running runs `ids` that is still later than `limit` to
/// `now`, leaving a row another transaction holds (see `supervise::clock_went_back`).
pub fn pull_back_checkpoints(
    client: &mut impl GenericClient,
    ids: &[i64],
    now: DateTime<Utc>,
    limit: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "UPDATE runs SET last_checkpoint_at = $2
          WHERE id IN (SELECT id FROM runs WHERE id = ANY($1) AND status = 'running' AND last_checkpoint_at > $3
                          FOR UPDATE SKIP LOCKED)",
        &[&ids, &now, &limit],
    )?;
    Ok(())
}

/// The start and end of `host`'s runs stamped after `limit` (while its clock ran ahead),
/// moved back to `now`, leaving a row another transaction holds; how many (see
/// `supervise::clock_went_back`).
pub fn pull_back_run_stamps(
    client: &mut impl GenericClient,
    host: &str,
    now: DateTime<Utc>,
    limit: DateTime<Utc>,
) -> Result<u64> {
    Ok(client.execute(
        "UPDATE runs SET started_at = CASE WHEN started_at > $3 THEN $2 ELSE started_at END,
                         finished_at = CASE WHEN finished_at > $3 THEN $2 ELSE finished_at END
          WHERE id IN (SELECT id FROM runs WHERE host = $1 AND (started_at > $3 OR finished_at > $3)
                          FOR UPDATE SKIP LOCKED)",
        &[&host, &now, &limit],
    )?)
}

/// The database server's clock and its start (`pg_postmaster_start_time`), and whether
/// `host` started a run, or fired a supervise pass, stamped after `after`: its clock went
/// back since. One round trip.
pub fn server_clock_and_host_stamped_after(
    client: &mut impl GenericClient,
    host: &str,
    after: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>, bool)> {
    let row = client.query_one(
        "SELECT now(), pg_postmaster_start_time(),
                EXISTS (SELECT 1 FROM runs WHERE started_at > $2 AND host = $1)
             OR EXISTS (SELECT 1 FROM supervisor_passes WHERE fired_at > $2 AND host = $1)",
        &[&host, &after],
    )?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// After an item that did not complete: the worker is gone, and the item's end is a
/// checkpoint.
pub fn item_finished(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    statements.query(
        client,
        "UPDATE runs SET worker_pid = NULL, worker_start_time = NULL,
                last_checkpoint_at = greatest(last_checkpoint_at, $2), checkpoints = checkpoints + 1
          WHERE id = $1 AND status = 'running'",
        &[(&run_id, Type::INT8), (&now, Type::TIMESTAMPTZ)],
    )?;
    Ok(())
}

/// Count one failed item on the run.
pub fn count_failed_item(client: &mut impl GenericClient, run_id: i64) -> Result<()> {
    client.query_typed(
        "UPDATE runs SET items_failed = items_failed + 1 WHERE id = $1",
        &[(&run_id, Type::INT8)],
    )?;
    Ok(())
}

/// What a pass waiting for its quota group's reset re-reads on every beat.
#[derive(Debug, Clone, Default)]
pub struct WaitingBeat {
    pub paused_at: Option<DateTime<Utc>>,
    pub pause_note: Option<String>,
    pub burst_until: Option<DateTime<Utc>>,
    /// The run is still `running` (not ended by supervise meanwhile).
    pub is_run_live: bool,
    /// The backoff of the account the beat watched (see [`beat_while_waiting`]), None when
    /// it has none: cleared (`resume --clear-backoff`), or never set.
    pub watched_backoff_until: Option<DateTime<Utc>>,
}

/// One beat of a pass waiting inside itself: record that it waits (`until`, `reason`; None
/// clears them) and a checkpoint at `now` — so supervise never takes it for hung — and
/// re-read the drain's pause and burst, and the backoff of `watched` (quota group,
/// account) when given, in one round trip.
pub fn beat_while_waiting(
    client: &mut impl GenericClient,
    drain: &str,
    run_id: i64,
    now: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    reason: Option<&str>,
    watched: Option<(&str, &str)>,
) -> Result<WaitingBeat> {
    let (group, account) = watched.unzip();
    let row = client.query_opt(
        "WITH beat AS (
             UPDATE runs SET waiting_until = $4, waiting_reason = $5,
                    last_checkpoint_at = greatest(last_checkpoint_at, $3)
              WHERE id = $2 AND status = 'running'
          RETURNING id)
         SELECT d.paused_at, d.pause_note, d.burst_until, EXISTS (SELECT 1 FROM beat),
                (SELECT b.backoff_until FROM quota_backoffs b WHERE b.quota_group = $6 AND b.account = $7)
           FROM drains d WHERE d.name = $1",
        &[&drain, &run_id, &now, &until, &reason, &group, &account],
    )?;
    Ok(row
        .map(|row| WaitingBeat {
            paused_at: row.get(0),
            pause_note: row.get(1),
            burst_until: row.get(2),
            is_run_live: row.get(3),
            watched_backoff_until: row.get(4),
        })
        .unwrap_or_default())
}

/// Lock the row of a run that is still `running` until the transaction ends; its last
/// checkpoint as the lock found it, none when it is not running (someone ended it first).
pub fn lock_running_run(client: &mut impl GenericClient, run_id: i64) -> Result<Option<DateTime<Utc>>> {
    let row = client.query_opt(
        "SELECT last_checkpoint_at FROM runs WHERE id = $1 AND status = 'running' FOR UPDATE",
        &[&run_id],
    )?;
    Ok(row.map(|row| row.get(0)))
}

/// Lock the pass's own run row before a transaction that changes its items and then the
/// run: `supervise` ending the run locks the run first and its items after, and the same
/// order on both sides leaves no deadlock.
pub fn lock_own_run(client: &mut impl GenericClient, run_id: i64) -> Result<()> {
    client.execute("SELECT 1 FROM runs WHERE id = $1 FOR NO KEY UPDATE", &[&run_id])?;
    Ok(())
}

/// End a run that is still `running`, with the seconds its pass held no item (waiting for
/// a reset, yielding), which its throughput does not count; false when someone else
/// (supervise) already ended it.
pub fn finish_run(
    client: &mut impl GenericClient,
    run_id: i64,
    status: RunStatus,
    note: Option<&str>,
    now: DateTime<Utc>,
    idle_seconds: f64,
) -> Result<bool> {
    // Shown by `runs` and `runs show` as written: never the database password.
    let note = note.map(crate::error::scrub);
    let updated = client.execute(
        "UPDATE runs SET status = $2, note = $3, finished_at = $4,
                worker_pid = CASE WHEN $2 IN ('hung', 'crashed') THEN worker_pid END,
                worker_start_time = CASE WHEN $2 IN ('hung', 'crashed') THEN worker_start_time END,
                kill_unconfirmed = $2 IN ('hung', 'crashed'),
                waiting_until = NULL, waiting_reason = NULL, idle_seconds = $5
          WHERE id = $1 AND status = 'running'",
        &[&run_id, &status, &note, &now, &idle_seconds],
    )?;
    Ok(updated == 1)
}

/// A run's status and note as recorded: for a pass that finds its run ended by another
/// process (`supervise` ended it as hung or crashed).
pub fn recorded_end(
    client: &mut impl GenericClient,
    run_id: i64,
) -> Result<Option<(RunStatus, Option<String>)>> {
    let row = client.query_opt("SELECT status, note FROM runs WHERE id = $1", &[&run_id])?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

/// A run row as the reaper and status see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub drain: String,
    pub trigger: Trigger,
    pub host: String,
    /// Boot and PID namespace of the run's process; None for runs recorded without one.
    pub host_id: Option<String>,
    pub pid: i32,
    pub process_start_time: Option<i64>,
    pub worker_pid: Option<i32>,
    pub worker_start_time: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub last_checkpoint_at: DateTime<Utc>,
    pub checkpoints: i64,
    pub items_done: i32,
    pub items_failed: i32,
    pub status: RunStatus,
    pub finished_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub log_path: Option<String>,
    /// While the pass waits inside itself for its quota group's reset: until when, and why.
    pub waiting_until: Option<DateTime<Utc>>,
    pub waiting_reason: Option<String>,
}

/// `SELECT` of every column [`run_from_row`] reads, `FROM runs`, for a query to go on
/// with its `WHERE`.
macro_rules! select_runs {
    () => {
        "SELECT id, drain, trigger, host, pid, process_start_time, worker_pid, worker_start_time,
                started_at, last_checkpoint_at, checkpoints, items_done, items_failed, status,
                finished_at, note, log_path, host_id, waiting_until, waiting_reason
           FROM runs "
    };
}

fn run_from_row(row: &postgres::Row) -> Result<RunRow> {
    Ok(RunRow {
        id: row.get(0),
        drain: row.get(1),
        trigger: row.try_get(2)?,
        host: row.get(3),
        pid: row.get(4),
        process_start_time: row.get(5),
        worker_pid: row.get(6),
        worker_start_time: row.get(7),
        started_at: row.get(8),
        last_checkpoint_at: row.get(9),
        checkpoints: row.get(10),
        items_done: row.get(11),
        items_failed: row.get(12),
        status: row.try_get(13)?,
        finished_at: row.get(14),
        note: row.get(15),
        log_path: row.get(16),
        host_id: row.get(17),
        waiting_until: row.get(18),
        waiting_reason: row.get(19),
    })
}

/// Runs still marked `running` (of one drain, or all).
pub fn running_runs(client: &mut impl GenericClient, drain: Option<&str>) -> Result<Vec<RunRow>> {
    let rows = client.query(
        concat!(
            select_runs!(),
            "WHERE status = 'running' AND ($1::text IS NULL OR drain = $1)
          ORDER BY id"
        ),
        &[&drain],
    )?;
    rows.iter().map(run_from_row).collect()
}

/// The runs of `host` ended `hung` or `crashed` at `since` or later whose processes were
/// not seen ended (`kill_unconfirmed`, and their worker stays recorded, until then: see
/// [`forget_worker`]), newest first, at most `limit`: what a later `supervise` may still
/// have to kill. Read through the partial index `runs_kill_unconfirmed` (migration 0015),
/// nearly always empty.
pub fn recently_ended_abnormally(
    client: &mut impl GenericClient,
    host: &str,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RunRow>> {
    let rows = client.query(
        concat!(
            select_runs!(),
            "WHERE kill_unconfirmed AND host = $1 AND finished_at >= $2
          ORDER BY finished_at DESC, id DESC LIMIT $3"
        ),
        &[&host, &since, &limit],
    )?;
    rows.iter().map(run_from_row).collect()
}

/// Forget the worker of an ended run once everything it left was seen ended: no later
/// pass looks at the run again.
pub fn forget_worker(client: &mut impl GenericClient, run_id: i64) -> Result<()> {
    client.execute(
        "UPDATE runs SET worker_pid = NULL, worker_start_time = NULL, kill_unconfirmed = false
          WHERE id = $1 AND status <> 'running'",
        &[&run_id],
    )?;
    Ok(())
}

/// The latest finished-or-running run of `drain` that did real work (not lock_skipped).
pub fn last_run(client: &mut impl GenericClient, drain: &str) -> Result<Option<RunRow>> {
    let row = client.query_opt(
        concat!(
            select_runs!(),
            "WHERE drain = $1 AND status <> 'lock_skipped'
          ORDER BY started_at DESC, id DESC LIMIT 1"
        ),
        &[&drain],
    )?;
    row.as_ref().map(run_from_row).transpose()
}

pub fn get_run(client: &mut impl GenericClient, run_id: i64) -> Result<Option<RunRow>> {
    let row = client.query_opt(concat!(select_runs!(), "WHERE id = $1"), &[&run_id])?;
    row.as_ref().map(run_from_row).transpose()
}

/// The latest runs (of one drain, or all), newest first, at most `limit`.
pub fn list_runs(client: &mut impl GenericClient, drain: Option<&str>, limit: i64) -> Result<Vec<RunRow>> {
    let rows = client.query(
        concat!(
            select_runs!(),
            "WHERE ($1::text IS NULL OR drain = $1)
          ORDER BY started_at DESC, id DESC LIMIT $2"
        ),
        &[&drain, &limit],
    )?;
    rows.iter().map(run_from_row).collect()
}

/// The runs a drain's `every` cadence counts from (`runs` unaliased): any pass but a
/// lock-skipped one, or one that took nothing and started no worker by what it met —
/// ended `rate_limited` (its group backing off for another drain's hit), `drained` (it
/// yielded to a higher-ranking drain of its group, or found nothing), `window_closed` (a
/// pause, a closing window) — which must not cost a higher-ranking drain its next start
/// (docs/configuration.md, "Cadence"). A pass that failed still counts.
macro_rules! starts_a_cadence {
    () => {
        "status <> 'lock_skipped' AND NOT (status IN ('rate_limited', 'drained', 'window_closed') \
         AND items_done = 0 AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = runs.id))"
    };
}

/// What the metrics say of a drain's latest runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestRuns {
    /// How the latest finished run (not lock_skipped) ended, and when.
    pub finished: Option<(RunStatus, DateTime<Utc>)>,
    /// When the latest run that completed at least one item ended (its last checkpoint
    /// while it still runs).
    pub last_success_at: Option<DateTime<Utc>>,
    /// When the latest run (not lock_skipped) started, whatever became of it: its cadence
    /// counts from it.
    pub last_started_at: Option<DateTime<Utc>>,
    /// Whether a run of the drain is running now.
    pub is_running: bool,
    /// Whether every run of the drain running now yields to a higher-ranking drain of its
    /// quota group (a wait recorded without an end).
    pub is_yielding: bool,
}

/// [`LatestRuns`] of each of `drains`, in one statement: three index-backed probes per
/// drain (`runs_drain_started`) and one of `runs_running`.
pub fn latest_runs(
    client: &mut impl GenericClient,
    drains: &[String],
) -> Result<HashMap<String, LatestRuns>> {
    let rows = client.query(
        concat!(
            "SELECT name, f.status, f.finished_at, s.at,
                (SELECT started_at FROM runs WHERE drain = name AND ",
            starts_a_cadence!(),
            "
                  ORDER BY started_at DESC LIMIT 1),
                r.is_running, coalesce(r.is_yielding, false)
           FROM unnest($1::text[]) AS name
           CROSS JOIN LATERAL (SELECT count(*) > 0 AS is_running,
                                      bool_and(waiting_reason IS NOT NULL AND waiting_until IS NULL)
                                          AS is_yielding
                                 FROM runs WHERE drain = name AND status = 'running') AS r
           LEFT JOIN LATERAL (SELECT status, finished_at FROM runs
                               WHERE drain = name AND finished_at IS NOT NULL AND status <> 'lock_skipped'
                               ORDER BY started_at DESC, id DESC LIMIT 1) AS f ON true
           LEFT JOIN LATERAL (SELECT coalesce(finished_at, last_checkpoint_at) AS at FROM runs
                               WHERE drain = name AND items_done > 0
                               ORDER BY started_at DESC, id DESC LIMIT 1) AS s ON true"
        ),
        &[&drains],
    )?;
    rows.iter()
        .map(|row| {
            let status: Option<RunStatus> = row.try_get(1)?;
            let finished_at: Option<DateTime<Utc>> = row.get(2);
            let latest = LatestRuns {
                finished: status.zip(finished_at),
                last_success_at: row.get(3),
                last_started_at: row.get(4),
                is_running: row.get(5),
                is_yielding: row.get(6),
            };
            Ok((row.get(0), latest))
        })
        .collect()
}

/// [`last_run_starts`] of `drains` as they will be once [`pull_back_run_stamps`] moved
/// `host`'s starts after `limit` back to `now`: for a dry run, which writes nothing.
pub fn last_run_starts_pulled_back(
    client: &mut impl GenericClient,
    drains: &[String],
    host: &str,
    now: DateTime<Utc>,
    limit: DateTime<Utc>,
) -> Result<Vec<(String, DateTime<Utc>)>> {
    let rows = client.query(
        concat!(
            "SELECT drain, max(CASE WHEN host = $2 AND started_at > $4 THEN $3 ELSE started_at END)
           FROM runs WHERE drain = ANY($1) AND ",
            starts_a_cadence!(),
            " GROUP BY drain"
        ),
        &[&drains, &host, &now, &limit],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// When the latest run (not lock_skipped) of each of these drains started — running,
/// finished, failed or crashed alike; drains without a run are absent. One index-backed
/// probe per drain (`runs_drain_started`).
pub fn last_run_starts(
    client: &mut impl GenericClient,
    drains: &[String],
) -> Result<Vec<(String, DateTime<Utc>)>> {
    let rows = client.query(
        concat!(
            "SELECT name, started_at FROM unnest($1::text[]) AS name
           CROSS JOIN LATERAL (SELECT started_at FROM runs
                                WHERE drain = name AND ",
            starts_a_cadence!(),
            "
                                ORDER BY started_at DESC LIMIT 1) AS latest"
        ),
        &[&drains],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The recent finished passes of a drain, summed: what a forecast of its throughput
/// works from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunHistory {
    pub runs: i64,
    pub items_done: i64,
    pub running_seconds: f64,
}

/// For each of `drains`, its latest `limit` passes that finished at or after `since`,
/// summed: their count, items done and running time — in one statement. Passes that
/// crashed or hung are left out (their end is when they were noticed), and so are
/// lock-skipped ones (no work). Index `runs_drain_started`.
pub fn recent_histories(
    client: &mut impl GenericClient,
    drains: &[String],
    since: DateTime<Utc>,
    limit: i64,
) -> Result<HashMap<String, RunHistory>> {
    let rows = client.query(
        "SELECT name, h.runs, h.items_done, h.running_seconds
           FROM unnest($1::text[]) AS name
           CROSS JOIN LATERAL (
               SELECT count(*) AS runs, coalesce(sum(items_done), 0)::bigint AS items_done,
                      coalesce(sum(greatest(extract(epoch FROM finished_at - started_at) - idle_seconds, 0)), 0)::float8
                          AS running_seconds
                 FROM (SELECT items_done, started_at, finished_at, idle_seconds FROM runs
                        WHERE drain = name AND finished_at >= $2
                          AND status NOT IN ('running', 'lock_skipped', 'crashed', 'hung')
                        ORDER BY started_at DESC LIMIT $3) AS recent) AS h",
        &[&drains, &since, &limit],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            let history =
                RunHistory { runs: row.get(1), items_done: row.get(2), running_seconds: row.get(3) };
            (row.get(0), history)
        })
        .collect())
}
