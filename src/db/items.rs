//! The `items`, `attempts` and `staged_results` tables: the backlog, its claims (fenced
//! by the claiming run's id), the history of every attempt, and durable result staging.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Row};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::db::drains::{Ahead, PassControls};

/// The columns of an item a `retry`, an `enqueue --replace` or a changed source file
/// sets back to a fresh item's: pending, unclaimed, no attempt, no resume token and no
/// row of quota hits — the first limit after the reset counts 1, as a new item's does
/// (docs/rate-limits.md, "Poison items"). Its charges still open stop counting an
/// attempt (`db::poison::uncount_charges`).
macro_rules! starts_afresh {
    () => {
        "state = 'pending', attempts = 0, claimed_by = NULL, claimed_at = NULL, finished_at = NULL,
         resume_token = NULL, quota_hit_streak = 0, last_quota_hit_attempt = NULL"
    };
}
use crate::db::PreparedStatements;
use crate::error::{Error, Result};
use crate::model::{AttemptOutcome, ItemState};

/// Longest item key accepted (`enqueue`, and the relative paths `scan` turns into keys).
pub const MAX_KEY_BYTES: usize = 1024;

/// An item as a run holds it after claiming.
#[derive(Debug, Clone)]
pub struct ClaimedItem {
    pub id: i64,
    pub key: String,
    pub payload: Value,
    /// Attempts including this one.
    pub attempt: i32,
    /// The latest resume token a worker printed for this item (unchecked).
    pub resume_token: Option<String>,
}

/// One item to enqueue.
#[derive(Debug, Clone)]
pub struct NewItem {
    pub key: String,
    pub payload: Value,
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize, PartialEq, Eq)]
pub struct EnqueueCounts {
    pub added: u64,
    pub duplicates: u64,
    pub replaced: u64,
    /// Of the duplicates, the items finished (done, dead, skipped_missing) whose keys the
    /// input gives (once however many lines give one): `--replace` would run them again.
    #[serde(skip)]
    pub finished_duplicates: u64,
}

/// The temporary table a batch is streamed into with COPY before it meets `items`:
/// `line` numbers the input (the first occurrence of a key wins), `key` and `payload`
/// travel as bytes, so the COPY itself can refuse nothing and every refusal of the server
/// is found again with its line (see [`apply_staged_items`]).
const STAGING: &str = "CREATE TEMPORARY TABLE enqueue_staging (
                           line bigint PRIMARY KEY, key bytea NOT NULL, payload bytea NOT NULL
                       ) ON COMMIT DROP";

/// Open a batch: the staging table and a binary COPY into it. Write each item with
/// [`stage_item`], then [`finish_staging`]; dropping the writer aborts the COPY (and the
/// caller's transaction rolls back).
pub fn start_staging<'a>(
    client: &'a mut postgres::Transaction<'_>,
) -> Result<postgres::binary_copy::BinaryCopyInWriter<'a>> {
    client.batch_execute(STAGING)?;
    let writer = client.copy_in("COPY enqueue_staging (line, key, payload) FROM STDIN (FORMAT binary)")?;
    Ok(postgres::binary_copy::BinaryCopyInWriter::new(writer, &[Type::INT8, Type::BYTEA, Type::BYTEA]))
}

/// Stream one item of a batch: its input line, key and compact JSON payload.
pub fn stage_item(
    writer: &mut postgres::binary_copy::BinaryCopyInWriter<'_>,
    line: i64,
    key: &str,
    payload_json: &[u8],
) -> Result<()> {
    writer.write(&[&line, &key.as_bytes(), &payload_json])?;
    Ok(())
}

/// End the COPY; the number of items staged.
pub fn finish_staging(writer: postgres::binary_copy::BinaryCopyInWriter<'_>) -> Result<u64> {
    let staged = writer.finish()?;
    Ok(staged)
}

/// Move a staged batch into `drain`'s backlog: an existing `(drain, key)` is a duplicate,
/// or with `replace` a finished (done, dead or skipped_missing) item is reset to pending
/// with the new payload; a key repeated in the batch counts once, its first line wins.
/// When the server refuses a value (class 22 or 54), the batch is searched for the first
/// line it refuses and that line is named (`origin` turns a line into `stdin:3`).
pub fn apply_staged_items(
    tx: &mut postgres::Transaction<'_>,
    drain: &str,
    staged: u64,
    replace: bool,
    now: DateTime<Utc>,
    origin: &dyn Fn(i64) -> String,
) -> Result<EnqueueCounts> {
    if staged == 0 {
        return Ok(EnqueueCounts::default());
    }
    refuse_without_unique_keys(tx)?;
    // Without statistics a temporary table is planned blind; a sample is cheap.
    tx.batch_execute("ANALYZE enqueue_staging")?;
    // The move runs under a savepoint: when it loses a deadlock or a serialization
    // conflict with another session (two batches of overlapping keys in other orders, a
    // prune deleting the done items this batch replaces), only the move is rolled back and
    // run again; the staged rows stay, as the input (stdin) cannot be read twice
    // (docs/guarantees.md, "Concurrent commands").
    let mut retry = 0;
    let applied = loop {
        let mut attempt = tx.savepoint("enqueue_apply")?;
        match move_staged(&mut attempt, drain, replace, now) {
            Ok(counts) => {
                attempt.commit()?;
                break Ok(counts);
            }
            Err(error) if error.code().is_some_and(crate::error::is_conflict) => {
                // Dropping the savepoint rolls it back before anything else is sent.
                drop(attempt);
                if retry == crate::db::CONFLICT_RETRIES {
                    return Err(Error::from(error).noted(&format!(
                        "retried {retry} times; nothing was enqueued, it is safe to run the same enqueue again"
                    )));
                }
                log::info!("{}; moving the batch again", Error::from(error));
                std::thread::sleep(crate::db::conflict_pause(retry));
                retry += 1;
            }
            Err(error) => break Err(error),
        }
    };
    let (added, replaced, finished_duplicates) = match applied {
        Ok(counts) => counts,
        Err(error) => {
            let refused = error
                .as_db_error()
                .filter(|db| is_refused_data(db.code()))
                .map(|db| db.message().to_string());
            let Some(message) = refused else { return Err(Error::from(error)) };
            return Err(match first_refused_line(tx)? {
                Some((line, message)) => refused_item(&origin(line), &message),
                None => {
                    Error::Data(format!("the database refused the batch: {message}; nothing was enqueued"))
                }
            });
        }
    };
    Ok(EnqueueCounts {
        added,
        replaced,
        duplicates: staged.saturating_sub(added + replaced),
        finished_duplicates,
    })
}

/// Refuse a batch when no valid unique index on exactly `items (drain, key)` is there
/// (dropped, or made on other columns, by hand): the duplicate check below trusts it, and
/// two enqueues at once would each add every item (docs/migrations.md, "A schema changed
/// by hand").
fn refuse_without_unique_keys(tx: &mut postgres::Transaction<'_>) -> Result<()> {
    let is_there: bool = tx
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_index i
                  WHERE i.indrelid = to_regclass('items') AND i.indisunique AND i.indisvalid
                    AND i.indpred IS NULL AND i.indexprs IS NULL
                    AND (SELECT array_agg(a.attname::text ORDER BY k.n)
                           FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, n)
                           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
                        = ARRAY['drain', 'key'])",
            &[],
        )?
        .get(0);
    match is_there {
        true => Ok(()),
        false => Err(Error::Config(format!(
            "no valid unique index on items (drain, key) is there (items_drain_key_key), and without one an \
             item could be enqueued twice; nothing was enqueued: {}",
            crate::error::CHANGED_BY_HAND
        ))),
    }
}

/// The statements of [`apply_staged_items`] (inside its savepoint): (added, replaced,
/// duplicate lines whose key's item is finished).
fn move_staged(
    tx: &mut postgres::Transaction<'_>,
    drain: &str,
    replace: bool,
    now: DateTime<Utc>,
) -> std::result::Result<(u64, u64, u64), postgres::Error> {
    let replaced = if replace {
        // A replaced item's open poison charges no longer count an attempt, as
        // `db::poison::uncount_charges` has it.
        let row = tx.query_one(
            concat!(
                "WITH replaced AS (
                 UPDATE items i SET payload = convert_from(s.payload, 'UTF8')::jsonb, ",
                starts_afresh!(),
                ", available_at = $2,
                        last_error = NULL, stderr_tail = NULL, result = NULL, updated_at = $2
                   FROM (SELECT DISTINCT ON (key) key, line FROM enqueue_staging ORDER BY key, line) f
                   JOIN enqueue_staging s ON s.line = f.line
                  WHERE i.drain = $1 AND i.key = convert_from(f.key, 'UTF8')
                    AND i.state IN ('done', 'dead', 'skipped_missing')
                 RETURNING i.id),
             uncounted AS (
                 UPDATE open_charges c SET attempts_at_charge = NULL FROM replaced r WHERE c.item_id = r.id)
             SELECT count(*) FROM replaced"
            ),
            &[&drain, &now],
        )?;
        row.get::<_, i64>(0).unsigned_abs()
    } else {
        0
    };
    // What the drain already has stays as it is (a duplicate): its lines leave the
    // staging table first, so that the insert below never reads the table it writes (an
    // anti-join inside the insert would be planned against the rows it has just added).
    // Their payloads are read as jsonb all the same: one the server cannot store is
    // refused with its line, whether or not its key is new (docs/json.md).
    let gone = tx.query_one(
        "WITH gone AS (
             DELETE FROM enqueue_staging s USING items i
              WHERE i.drain = $1 AND i.key = convert_from(s.key, 'UTF8')
          RETURNING s.key, convert_from(s.payload, 'UTF8')::jsonb AS payload,
                    i.state IN ('done', 'dead', 'skipped_missing') AS finished)
         SELECT count(*) FILTER (WHERE payload IS NULL), count(DISTINCT key) FILTER (WHERE finished) FROM gone",
        &[&drain],
    )?;
    let finished_duplicates = gone.get::<_, i64>(1).unsigned_abs();
    // New keys in input order (item ids follow it, and so does the claim order). A key
    // repeated in the batch, or inserted meanwhile by another session, makes this plain
    // insert fail; then the slower insert that skips conflicts one by one does the work.
    let added = {
        let mut fast = tx.savepoint("enqueue_new_keys")?;
        let result = fast.execute(
            "INSERT INTO items (drain, key, payload, available_at, enqueued_at, updated_at)
             SELECT $1, convert_from(key, 'UTF8'), convert_from(payload, 'UTF8')::jsonb, $2, $2, $2
               FROM enqueue_staging
              ORDER BY line",
            &[&drain, &now],
        );
        match result {
            Ok(added) => {
                fast.commit()?;
                Some(added)
            }
            Err(error) if error.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => None,
            Err(error) => return Err(error),
        }
    };
    let added = match added {
        Some(added) => added,
        None => tx.execute(
            "INSERT INTO items (drain, key, payload, available_at, enqueued_at, updated_at)
             SELECT $1, convert_from(key, 'UTF8'), convert_from(payload, 'UTF8')::jsonb, $2, $2, $2
               FROM enqueue_staging
              ORDER BY line
             ON CONFLICT (drain, key) DO NOTHING",
            &[&drain, &now],
        )?,
    };
    Ok((added, replaced, finished_duplicates))
}

/// The error for the item at `at` (`stdin:3`) that the server refused with `message`.
pub fn refused_item(at: &str, message: &str) -> Error {
    Error::Data(format!("{at}: the database refused the item: {message}; nothing was enqueued"))
}

/// The first staged line whose key or payload the server refuses, and its message: a
/// bisection over line ranges, each probe in its own savepoint (a refusal aborts it).
pub fn first_refused_line(tx: &mut postgres::Transaction<'_>) -> Result<Option<(i64, String)>> {
    let bounds = tx.query_one("SELECT min(line), max(line) FROM enqueue_staging", &[])?;
    let (Some(mut low), Some(mut high)) = (bounds.get::<_, Option<i64>>(0), bounds.get::<_, Option<i64>>(1))
    else {
        return Ok(None);
    };
    let probe = |tx: &mut postgres::Transaction<'_>, from: i64, to: i64| -> Result<Option<String>> {
        let mut savepoint = tx.savepoint("enqueue_probe")?;
        let result = savepoint.query_one(
            "SELECT count(convert_from(key, 'UTF8')) + count(convert_from(payload, 'UTF8')::jsonb)
               FROM enqueue_staging WHERE line BETWEEN $1 AND $2",
            &[&from, &to],
        );
        match result {
            Ok(_) => Ok(None),
            Err(error) => match error.as_db_error() {
                Some(db) if is_refused_data(db.code()) => Ok(Some(db.message().to_string())),
                _ => Err(Error::from(error)),
            },
        }
    };
    if probe(tx, low, high)?.is_none() {
        return Ok(None);
    }
    while low < high {
        let middle = low + (high - low) / 2;
        if probe(tx, low, middle)?.is_some() {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(probe(tx, low, low)?.map(|message| (low, message)))
}

/// SQLSTATE classes of a value the server cannot take: 22 (data exception, e.g. an
/// untranslatable character) and 54 (program limit exceeded, e.g. a jsonb too large).
pub fn is_refused_data(code: &postgres::error::SqlState) -> bool {
    let code = code.code();
    code.starts_with("22") || code.starts_with("54")
}

/// Which account of the quota group a claim is for, and whether the group may start an
/// item on it at all (see [`crate::accounts::select`]).
#[derive(Debug, Clone, Copy)]
pub struct ClaimAccount<'a> {
    pub quota_group: &'a str,
    /// `""` for the group's only, implicit account.
    pub account: &'a str,
    /// False when the group as a whole must wait: nothing is claimed.
    pub is_allowed: bool,
}

/// Which of `keys` are items of `drain` (primary key lookups).
pub fn existing_keys(client: &mut impl GenericClient, drain: &str, keys: &[String]) -> Result<Vec<String>> {
    let rows = client.query("SELECT key FROM items WHERE drain = $1 AND key = ANY($2)", &[&drain, &keys])?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// An item's payload is still its source folder's: exactly what a scan of its drain
/// records for its key — `path`, `size`, `mtime` and `sha256` and nothing else, a `path`
/// ending in `/` and the key (the folder may have moved since: `source.dir` changed, a
/// link flipped), and the `size` and `sha256` that `source_files` holds for that drain
/// and key. An item enqueued by hand, or given another payload by `enqueue --replace`, is
/// the operator's, which no scan settles or replaces, whatever its `path` ends in
/// (docs/operations.md, "Items enqueued beside the folder's"). SQL over `items`.
macro_rules! is_the_folders {
    () => {
        "(right(items.payload->>'path', length(items.key) + 1) = '/' || items.key
          AND jsonb_typeof(items.payload->'mtime') = 'string'
          AND CASE WHEN jsonb_typeof(items.payload) = 'object'
                   THEN items.payload - '{path,size,mtime,sha256}'::text[] = '{}'::jsonb END
          AND EXISTS (SELECT 1 FROM source_files recorded
                       WHERE recorded.drain = items.drain AND recorded.path = items.key
                         AND items.payload->'sha256' = to_jsonb(recorded.sha256)
                         AND items.payload->'size' = to_jsonb(recorded.size)))"
    };
}
pub(crate) use is_the_folders;

/// Whether the item `item_id` is its source folder's (see [`is_the_folders`]): only then
/// does a claim check that its file is still there (docs/operations.md, "Items enqueued
/// beside the folder's").
pub fn is_the_folders_item(client: &mut impl GenericClient, item_id: i64) -> Result<bool> {
    let row = client.query_one(
        concat!("SELECT EXISTS (SELECT 1 FROM items WHERE id = $1 AND ", is_the_folders!(), ")"),
        &[&item_id],
    )?;
    Ok(row.get(0))
}

/// Which of `keys` are items of `drain` that are not their source folder's: enqueued by
/// hand, or given another payload by `enqueue --replace` (docs/operations.md, "Items
/// enqueued beside the folder's").
pub fn operators_keys(client: &mut impl GenericClient, drain: &str, keys: &[String]) -> Result<Vec<String>> {
    let rows = client.query(
        concat!(
            "SELECT key FROM items WHERE drain = $1 AND key = ANY($2) AND (",
            is_the_folders!(),
            ") IS NOT TRUE"
        ),
        &[&drain, &keys],
    )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// What became of a source file's item (see [`enqueue_source_item`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEnqueue {
    /// Inserted, or reset to pending with the new payload.
    Enqueued,
    /// Its item is running: left alone, looked at again by the next scan.
    Running,
    /// A file whose key is an item enqueued by hand — new to the scans, or given another
    /// payload by `enqueue --replace` — that item is left alone (its payload and result
    /// are not the folder's to replace).
    KeyTaken,
}

/// The item of a source file found with the same content in another folder (the
/// source's `dir` was changed) names the file there from now on, in whatever state it is;
/// false (nothing changed) while it is running, its worker reading the old file.
pub fn repoint_source_item(
    client: &mut impl GenericClient,
    drain: &str,
    key: &str,
    payload: &serde_json::Value,
) -> Result<bool> {
    // Only while its payload is the folder's: never over one the operator gave it since
    // the scan looked.
    let changed = client.execute(
        concat!(
            "UPDATE items SET payload = $3 WHERE drain = $1 AND key = $2 AND state <> 'running' AND ",
            is_the_folders!()
        ),
        &[&drain, &key, &postgres::types::Json(payload)],
    )?;
    Ok(changed == 1)
}

/// Enqueue the item of a source file: a new key is inserted; an existing item that is not
/// running is reset to pending with the new payload, attempts 0, available now (its
/// attempt history stays) — unless the file `is_new` to the scans, when an existing item
/// of that key was enqueued by hand and is left as it is.
pub fn enqueue_source_item(
    client: &mut impl GenericClient,
    drain: &str,
    key: &str,
    payload: &Value,
    is_new: bool,
    now: DateTime<Utc>,
) -> Result<SourceEnqueue> {
    if is_new {
        let row = client.query_opt(
            "INSERT INTO items (drain, key, payload, available_at, enqueued_at, updated_at)
             VALUES ($1, $2, $3, $4, $4, $4)
             ON CONFLICT (drain, key) DO NOTHING
             RETURNING id",
            &[&drain, &key, &payload, &now],
        )?;
        return Ok(if row.is_some() { SourceEnqueue::Enqueued } else { SourceEnqueue::KeyTaken });
    }
    let row = client.query_opt(
        concat!(
            "INSERT INTO items (drain, key, payload, available_at, enqueued_at, updated_at)
         VALUES ($1, $2, $3, $4, $4, $4)
         ON CONFLICT (drain, key) DO UPDATE
            SET payload = EXCLUDED.payload, ",
            starts_afresh!(),
            ", available_at = EXCLUDED.available_at,
                last_error = NULL, stderr_tail = NULL, result = NULL, updated_at = EXCLUDED.updated_at
          WHERE items.state <> 'running' AND ",
            is_the_folders!(),
            "
         RETURNING id"
        ),
        &[&drain, &key, &payload, &now],
    )?;
    if let Some(row) = row {
        crate::db::poison::uncount_charges(client, &[row.get::<_, i64>(0)])?;
        return Ok(SourceEnqueue::Enqueued);
    }
    // Not updated: its item runs, or is the operator's (enqueued by hand, `enqueue --replace`).
    let running = client.query_opt(
        "SELECT 1 FROM items WHERE drain = $1 AND key = $2 AND state = 'running'",
        &[&drain, &key],
    )?;
    Ok(if running.is_some() { SourceEnqueue::Running } else { SourceEnqueue::KeyTaken })
}

/// Settle a pending item whose source file vanished before it ran: `skipped_missing`, a
/// terminal state that is not a failure. False when the item is not pending.
pub fn settle_skipped_missing(
    client: &mut impl GenericClient,
    drain: &str,
    key: &str,
    note: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let updated = client.execute(
        concat!(
            "UPDATE items SET state = 'skipped_missing', finished_at = $4, last_error = $3, updated_at = $4
              WHERE drain = $1 AND key = $2 AND state = 'pending' AND ",
            is_the_folders!()
        ),
        &[&drain, &key, &note, &now],
    )?;
    Ok(updated == 1)
}

/// Settle an item this run holds without having run its worker, as `state` — its source
/// file vanished after it was scanned (`skipped_missing`), or it used `max_attempts`
/// before the setting was lowered (`dead`) —, with its claim's attempt given back and
/// closed as `outcome`, `note` its error. False when the run no longer held it.
pub fn settle_claimed_unrun(
    client: &mut impl GenericClient,
    item_id: i64,
    run_id: i64,
    state: ItemState,
    outcome: AttemptOutcome,
    note: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let updated = client.execute(
        "UPDATE items SET state = $5, attempts = greatest(attempts - 1, 0), finished_at = $4, last_error = $3,
                claimed_at = NULL, updated_at = $4
          WHERE id = $1 AND claimed_by = $2 AND state = 'running'",
        &[&item_id, &run_id, &note, &now, &state],
    )?;
    finish_attempt(client, item_id, run_id, outcome, None, Some(note), now)?;
    Ok(updated == 1)
}

/// What a claim needs to know besides the database: whose, for which account, when, and
/// what the caller's own limits say.
pub struct ClaimRequest<'a> {
    pub drain: &'a str,
    pub account: ClaimAccount<'a>,
    /// The run that claims (the fencing token).
    pub run_id: i64,
    pub now: DateTime<Utc>,
    /// Window and budget, checked by the caller, allow another item (ignored while a burst
    /// is on; a pass a burst started is held to them once it ends, docs/operations.md).
    pub local_limits_allow: bool,
    /// The claimer's priority and the other drains of its quota group.
    pub rivals: &'a GroupRivals,
}

/// A drain's priority and the other drains of its quota group, from the configuration:
/// what the claim needs to yield to a higher-ranking drain (docs/rate-limits.md,
/// "Priority within a group").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupRivals {
    pub priority: i32,
    pub names: Vec<String>,
    pub priorities: Vec<i32>,
    pub liveness_seconds: Vec<f64>,
}

impl GroupRivals {
    /// The other drains of `drain`'s quota group in `config`.
    pub fn of(config: &crate::config::Config, drain: &crate::config::DrainConfig) -> GroupRivals {
        let others =
            config.drains.iter().filter(|d| d.quota_group == drain.quota_group && d.name != drain.name);
        let mut rivals = GroupRivals { priority: drain.priority, ..GroupRivals::default() };
        for other in others {
            rivals.names.push(other.name.clone());
            rivals.priorities.push(other.priority);
            rivals.liveness_seconds.push(other.liveness_timeout.as_secs_f64());
        }
        rivals
    }
}

/// The fence of every claim and commit ($2 is the run): the run's row, share-locked, only
/// while the run is still `running`. A run that `supervise` ended (hung, crashed) can
/// neither claim nor commit, and the lock orders the two: a statement that saw the run
/// live finishes before the run is ended (whose release then sees what it claimed), and
/// one that waits for the ending sees the run ended (docs/guarantees.md).
macro_rules! fence_step {
    () => {
        "fence AS (SELECT id FROM runs WHERE id = $2 AND status = 'running' FOR SHARE)"
    };
}

/// The steps of a claim (parameters $1 to $11, see `claim_params`) up to its attempt row,
/// shared by the plain claim, the claim that also stages the previous result and the one
/// that commits it. They follow `fence_step`.
///
/// `ahead` is the drain of the same quota group the claimer yields to (docs/rate-limits.md,
/// "Priority within a group"): one that ranks higher — in burst when the claimer is not,
/// else the same burst state and a higher priority ($8 the claimer's, $9 to $11 the other
/// drains of the group with their priorities and liveness timeouts, from the
/// configuration) — is not paused, has a live run (running or waiting for the reset, with
/// a checkpoint within its liveness timeout) and an available item, while the claimer has
/// one too. The claimer's own check names the rival's row, so that it runs only for a
/// rival. `$group` is `in_group` for a drain with other drains in its quota group, `alone`
/// for one without: its statements leave the step's reads out (`no_ahead_step`).
macro_rules! claim_core_steps {
    ($group:ident) => {
        concat!(controls_step!(), ",", claim_after_controls_steps!($group))
    };
}

/// The controls a claim re-reads: pause, burst, the account's backoff, the group's park
/// ($1 drain, $4 quota group, $6 account).
macro_rules! controls_step {
    () => {
        "controls AS (
             SELECT d.paused_at, d.pause_note, d.burst_until, b.backoff_until, b.reason AS backoff_reason,
                    coalesce(b.suspected_at IS NOT NULL OR b.needs_attention, false) AS is_suspected,
                    g.parked_at, g.parked_reason
               FROM drains d
               LEFT JOIN quota_backoffs b ON b.quota_group = $4 AND b.account = $6
               LEFT JOIN quota_groups g ON g.quota_group = $4
              WHERE d.name = $1)"
    };
}

/// What `claim_core_steps` does after reading the controls: yield, check, claim, open the
/// attempt.
macro_rules! claim_after_controls_steps {
    ($group:ident) => {
        concat!(
            group_ahead_step!(
                $group,
                "
                AND EXISTS (SELECT 1 FROM items i
                             WHERE i.drain = $1 AND i.state = 'pending' AND i.available_at <= $3
                               AND r.name IS NOT NULL)"
            ),
            ",
         allowed AS (
             SELECT 1 FROM controls
              WHERE paused_at IS NULL AND $7 AND EXISTS (SELECT 1 FROM fence)
                AND (backoff_until IS NULL OR backoff_until <= $3)
                AND parked_at IS NULL
                AND (burst_until > $3 OR $5)
                AND NOT EXISTS (SELECT 1 FROM ahead)),
         claimed AS (
             UPDATE items SET state = 'running', claimed_by = $2, claimed_at = $3,
                    attempts = attempts + 1, updated_at = $3
              WHERE id = (SELECT id FROM items
                           WHERE drain = $1 AND state = 'pending' AND available_at <= $3
                             AND EXISTS (SELECT 1 FROM allowed)
                           ORDER BY available_at, id
                           LIMIT 1 FOR UPDATE SKIP LOCKED)
          RETURNING id, key, payload, attempts, resume_token),
         attempt AS (
             INSERT INTO attempts (item_id, run_id, attempt, started_at, account)
             SELECT id, $2, attempts, $3, $6 FROM claimed)"
        )
    };
}

/// The drain of the group the claimer yields to, after `controls_step` ($3 now, $8 to
/// $11 the claimer's priority and its rivals, see `claim_core_steps`): one that ranks
/// higher, is not paused, has a live run and an available item whose last three attempts
/// did not all meet a limit (docs/rate-limits.md, "Priority within a group") — and
/// `$also`, the
/// claim's own condition (that the claimer has an item too; none for the check of an
/// item already claimed ahead).
macro_rules! ahead_step {
    ($also:literal) => {
        concat!(
            "
         ahead AS (
             SELECT r.name, r.priority, coalesce(od.burst_until > $3, false) AS is_bursting
               FROM unnest($9::text[], $10::int4[], $11::float8[]) AS r (name, priority, liveness_seconds)
               JOIN drains od ON od.name = r.name
              WHERE od.paused_at IS NULL
                AND (coalesce(od.burst_until > $3, false), r.priority)
                    > ((SELECT coalesce(burst_until > $3, false) FROM controls), $8)
                AND EXISTS (SELECT 1 FROM runs o
                             WHERE o.drain = r.name AND o.status = 'running'
                               AND o.last_checkpoint_at >= $3 - make_interval(secs => r.liveness_seconds))
                AND EXISTS (SELECT 1 FROM items i
                             WHERE i.drain = r.name AND i.state = 'pending' AND i.available_at <= $3
                               -- not one whose last three attempts met a limit: a poison
                               -- item would take the first call of every window (a
                               -- healthy one that met a window's end once or twice —
                               -- claimed ahead into a spent window — is still counted)
                               AND CASE WHEN i.last_quota_hit_attempt IS NULL THEN true
                                        ELSE (SELECT count(*) FILTER (WHERE l.outcome = 'quota_hit') < 3
                                                FROM (SELECT outcome FROM attempts l
                                                       WHERE l.item_id = i.id
                                                         AND l.outcome IS DISTINCT FROM 'not_started'
                                                       ORDER BY l.id DESC LIMIT 3) l) END)",
            $also,
            "
              ORDER BY 3 DESC, 2 DESC, 1
              LIMIT 1)"
        )
    };
}

/// No drain to yield to, in the shape `ahead_step` gives: the step of a drain alone in its
/// quota group, and of a statement that claims nothing. It reads no table: a generic plan
/// sets up all its nodes at every execution, and the rivals' check brought a sort, joins
/// and index scans even for an empty list of rivals (docs/benchmarks.md, "A drain alone
/// in its group").
macro_rules! no_ahead_step {
    () => {
        "
         ahead AS (SELECT NULL::text AS name, NULL::int4 AS priority, NULL::bool AS is_bursting WHERE false)"
    };
}

/// `ahead_step` with `$also` for a drain with other drains in its quota group (`in_group`),
/// `no_ahead_step` for one alone (`alone`).
macro_rules! group_ahead_step {
    (in_group, $also:literal) => {
        ahead_step!($also)
    };
    (alone, $also:literal) => {
        no_ahead_step!()
    };
}

/// An item claimed by none, in the shape of `claimed`: for a statement that claims nothing.
/// It reads no table either.
macro_rules! nothing_claimed_step {
    () => {
        "
         claimed AS (SELECT NULL::int8 AS id, NULL::text AS key, NULL::jsonb AS payload,
                            NULL::int4 AS attempts, NULL::text AS resume_token WHERE false)"
    };
}

/// The statement of `$name` for a drain alone in its quota group or in one with other
/// drains (`$request`'s rivals): `$name` is a macro that takes `alone` or `in_group`.
macro_rules! by_group {
    ($request:expr, $name:ident) => {
        if $request.rivals.names.is_empty() {
            $name!(alone)
        } else {
            $name!(in_group)
        }
    };
}

/// The result row of a claim: the controls, the claimed item, whether the run is live,
/// the drain it yields to. Followed by the caller's columns, then `claim_from`.
macro_rules! claim_select {
    () => {
        " SELECT c.paused_at, c.pause_note, c.burst_until, c.backoff_until, c.backoff_reason,
                c.is_suspected, k.id, k.key, k.payload, k.attempts, k.resume_token,
                EXISTS (SELECT 1 FROM fence), c.parked_at, c.parked_reason,
                a.name, a.priority, a.is_bursting"
    };
}

/// The rows `claim_select` reads from.
macro_rules! claim_from {
    () => {
        "
           FROM controls c LEFT JOIN claimed k ON true LEFT JOIN ahead a ON true"
    };
}

/// The whole claim after `fence_step`. A claim is made between two workers, so it also
/// clears the run's worker: the previous one has exited and been reaped.
macro_rules! claim_steps {
    ($group:ident) => {
        concat!(
            claim_core_steps!($group),
            ",
         checkpoint AS (
             UPDATE runs SET worker_pid = NULL, worker_start_time = NULL,
                    last_checkpoint_at = CASE WHEN EXISTS (SELECT 1 FROM claimed)
                        THEN greatest(last_checkpoint_at, $3) ELSE last_checkpoint_at END,
                    checkpoints = checkpoints + (SELECT count(*) FROM claimed)
              WHERE id = $2 AND status = 'running')",
            claim_select!(),
            claim_from!()
        )
    };
}

/// Staging a result (parameters $2 run, $3 now, $12 to $15), committed with its length and
/// SHA-256 so that a reaper can verify it; only by a run the fence still lets through.
macro_rules! stage_step {
    () => {
        "INSERT INTO staged_results (item_id, run_id, result, result_bytes, result_sha256, staged_at)
         SELECT $12, $2, $13, $14, $15, $3 FROM fence
         ON CONFLICT (item_id, run_id) DO UPDATE
            SET result = EXCLUDED.result, result_bytes = EXCLUDED.result_bytes,
                result_sha256 = EXCLUDED.result_sha256, staged_at = EXCLUDED.staged_at"
    };
}

fn claim_params<'a>(request: &'a ClaimRequest<'a>) -> [(&'a (dyn ToSql + Sync), Type); 11] {
    let rivals = request.rivals;
    [
        (&request.drain, Type::TEXT),
        (&request.run_id, Type::INT8),
        (&request.now, Type::TIMESTAMPTZ),
        (&request.account.quota_group, Type::TEXT),
        (&request.local_limits_allow, Type::BOOL),
        (&request.account.account, Type::TEXT),
        (&request.account.is_allowed, Type::BOOL),
        (&rivals.priority, Type::INT4),
        (&rivals.names, Type::TEXT_ARRAY),
        (&rivals.priorities, Type::INT4_ARRAY),
        (&rivals.liveness_seconds, Type::FLOAT8_ARRAY),
    ]
}

/// Re-read the pass's controls and, when they allow it, claim the oldest available
/// pending item of the drain for the run (the fencing token) — one statement, one round
/// trip, so the check and the claim see the same state. A claim counts the attempt, opens
/// its attempt row (recording the account) and records the item-start checkpoint on the
/// run. An item may be claimed when the drain is not paused, its quota group not parked,
/// the account is allowed and not backing off, and either a burst is on or the caller's
/// local limits allow it. Concurrent claimers skip locked rows.
pub fn claim_next_item(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    request: &ClaimRequest,
) -> Result<(PassControls, Option<ClaimedItem>)> {
    macro_rules! claim_statement {
        ($group:ident) => {
            concat!("WITH ", fence_step!(), ", ", claim_steps!($group))
        };
    }
    let rows = statements.query(client, by_group!(request, claim_statement), &claim_params(request))?;
    Ok(read_claim(&rows))
}

/// Stage `result` for `item_id` (as `stage_result` does) and claim the next item (as
/// `claim_next_item` does) in one statement: the one round trip between two workers.
pub fn stage_and_claim_next_item(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    item_id: i64,
    result: &[u8],
    request: &ClaimRequest,
) -> Result<(PassControls, Option<ClaimedItem>)> {
    macro_rules! stage_and_claim_statement {
        ($group:ident) => {
            concat!("WITH ", fence_step!(), ", staged AS (", stage_step!(), "), ", claim_steps!($group))
        };
    }
    let sql = by_group!(request, stage_and_claim_statement);
    let rows = query_staging(client, statements, sql, item_id, result, request)?;
    Ok(read_claim(&rows))
}

/// Run `sql`, a statement with `stage_step` and a claim's parameters, for `result` of
/// `item_id`: the claim's parameters, then the item, the result, its length and SHA-256.
fn query_staging(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    sql: &'static str,
    item_id: i64,
    result: &[u8],
    request: &ClaimRequest,
) -> Result<Vec<Row>> {
    let (length, checksum) = staging_check(result);
    let mut params = claim_params(request).to_vec();
    params.extend([
        (&item_id as &(dyn ToSql + Sync), Type::INT8),
        (&result, Type::BYTEA),
        (&length, Type::INT8),
        (&checksum, Type::BYTEA),
    ]);
    statements.query(client, sql, &params)
}

/// Committing a small result ($12 the item, $13 the result) after `fence_step`: the item,
/// its attempt. The completion statements follow them with the controls, a claim (or
/// nothing claimed), then `complete_run_step`.
macro_rules! complete_steps {
    () => {
        "done AS (
             UPDATE items SET state = 'done', result = $13, finished_at = $3, updated_at = $3,
                    last_error = NULL, resume_token = NULL
              WHERE id = $12 AND claimed_by = $2 AND state = 'running' AND EXISTS (SELECT 1 FROM fence)
          RETURNING id),
         done_attempt AS (
             UPDATE attempts SET finished_at = $3, outcome = 'done', exit_code = 0
              WHERE item_id = $12 AND run_id = $2 AND finished_at IS NULL AND EXISTS (SELECT 1 FROM done))"
    };
}

/// Committing a staged result (`$item` the item's parameter, $2 the run, $3 now) after
/// `fence_step`: the item (only when the staged bytes verify), the staged row (removed in
/// every case), the attempt. `complete_item` follows it with the run; the commit beside a
/// worker with the claim steps and `complete_run_step`, as `complete_steps` is.
macro_rules! complete_staged_steps {
    ($item:literal) => {
        concat!(
            "done AS (
             UPDATE items i SET state = 'done', result = s.result, finished_at = $3, updated_at = $3,
                    last_error = NULL, resume_token = NULL
               FROM staged_results s
              WHERE i.id = ",
            $item,
            " AND i.claimed_by = $2 AND i.state = 'running'
                AND EXISTS (SELECT 1 FROM fence)
                AND s.item_id = i.id AND s.run_id = $2
                AND length(s.result) = s.result_bytes AND sha256(s.result) = s.result_sha256
          RETURNING i.id),
         dropped AS (
             DELETE FROM staged_results WHERE item_id = ",
            $item,
            " AND run_id = $2),
         done_attempt AS (
             UPDATE attempts SET finished_at = $3, outcome = 'done', exit_code = 0
              WHERE item_id = ",
            $item,
            " AND run_id = $2 AND finished_at IS NULL AND EXISTS (SELECT 1 FROM done))"
        )
    };
}

/// The run's side of a completion, and the statement's result: the claim's columns, then
/// whether the item was completed and whether the run still holds it. The run's worker
/// becomes `$worker_pid`, `$worker_start_time`: none between two workers, the worker that
/// just started for a commit made beside it.
macro_rules! complete_run_step {
    () => {
        complete_run_step!("NULL", "NULL")
    };
    ($worker_pid:literal, $worker_start_time:literal) => {
        concat!(
            "
         run AS (
             UPDATE runs SET items_done = items_done + (SELECT count(*) FROM done),
                    worker_pid = ", $worker_pid, ", worker_start_time = ", $worker_start_time, ",
                    last_checkpoint_at = CASE WHEN EXISTS (SELECT 1 FROM done) OR EXISTS (SELECT 1 FROM claimed)
                        THEN greatest(last_checkpoint_at, $3) ELSE last_checkpoint_at END,
                    checkpoints = checkpoints + (SELECT count(*) FROM done) + (SELECT count(*) FROM claimed)
              WHERE id = $2 AND status = 'running')",
            claim_select!(),
            ",
                (SELECT count(*) FROM done),
                EXISTS (SELECT 1 FROM fence)
                    AND EXISTS (SELECT 1 FROM items WHERE id = $12 AND claimed_by = $2 AND state = 'running'),
                (SELECT state FROM items WHERE id = $12), (SELECT claimed_by FROM items WHERE id = $12)",
            claim_from!()
        )
    };
}

/// The whole statement of a completion: fence, commit, the given controls and claim steps,
/// the run.
macro_rules! completion_statement {
    ($($claim:expr),+) => {
        concat!("WITH ", fence_step!(), ", ", complete_steps!(), ", ", $($claim),+, ",", complete_run_step!())
    };
}

/// A claim that claims nothing, in the shape `claim_select` reads: for a completion whose
/// pass already holds its next item (claimed ahead, docs/benchmarks.md).
macro_rules! nothing_claimed_steps {
    () => {
        concat!(no_ahead_step!(), ",", nothing_claimed_step!())
    };
}

/// Commit `result` as the result of `item_id` (as `complete_item` does with a staged one,
/// without staging it first) and claim the next item (as `claim_next_item` does) in one
/// statement and one transaction: the one round trip between two workers whose result is
/// small enough to send at once. The commit needs the claim and the fence like every
/// commit; the claim re-reads the controls after the previous worker ended. A request
/// whose account may not be used claims nothing, so the statement then leaves the claim's
/// steps out and reads the controls with the commit only (an item claimed ahead, a cost
/// budget reached).
pub fn complete_and_claim_next_item(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    item_id: i64,
    result: &[u8],
    request: &ClaimRequest,
) -> Result<(PassControls, Option<ClaimedItem>, Completion)> {
    let mut params = claim_params(request).to_vec();
    params.extend([(&item_id as &(dyn ToSql + Sync), Type::INT8), (&result, Type::BYTEA)]);
    macro_rules! complete_and_claim_statement {
        ($group:ident) => {
            completion_statement!(claim_core_steps!($group))
        };
    }
    let statement = if request.account.is_allowed {
        by_group!(request, complete_and_claim_statement)
    } else {
        completion_statement!(controls_step!(), ",", nothing_claimed_steps!())
    };
    let rows = statements.query(client, statement, &params)?;
    let (controls, item) = read_claim(&rows);
    // No controls row (the drain row is gone): nothing was claimed, and the commit is
    // judged by whether the run held the item.
    let completion = match rows.first() {
        Some(row) => match (row.get::<_, i64>(17), row.get::<_, bool>(18)) {
            (1.., _) => Completion::Completed,
            _ => HeldNow::read(row, 19, 20)?.completion(request.run_id),
        },
        None => Completion::ClaimLost(HeldNow { state: None, claimed_by: None }),
    };
    Ok((controls, item, completion))
}

/// Stage `result` for `item_id` (as `stage_result` does) and re-read the controls, claiming
/// nothing: the statement between two workers when the next item was claimed ahead. It
/// also names a higher-ranking drain of the group that has work now, which takes the item
/// claimed ahead back (docs/worker-contract.md). The
/// staged result is durable before the next worker starts; it becomes the item's result
/// beside that worker, in the statement that claims the item after it
/// ([`complete_staged_and_claim_next_item`], docs/benchmarks.md).
pub fn stage_and_read_controls(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    item_id: i64,
    result: &[u8],
    request: &ClaimRequest,
) -> Result<PassControls> {
    macro_rules! stage_and_read_controls_statement {
        ($group:ident) => {
            concat!(
                "WITH ",
                fence_step!(),
                ", staged AS (",
                stage_step!(),
                "), ",
                controls_step!(),
                ",",
                group_ahead_step!($group, ""),
                ",",
                nothing_claimed_step!(),
                claim_select!(),
                claim_from!()
            )
        };
    }
    let sql = by_group!(request, stage_and_read_controls_statement);
    let rows = query_staging(client, statements, sql, item_id, result, request)?;
    Ok(read_claim(&rows).0)
}

/// Commit the staged result of `item_id` (as `complete_item` does, recording `worker` as
/// the run's worker) and claim the next item (as `claim_next_item` does) in one statement:
/// the statement beside a worker whose item was claimed ahead, while the previous result
/// waits staged.
pub fn complete_staged_and_claim_next_item(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    item_id: i64,
    worker: Option<(i32, Option<i64>)>,
    request: &ClaimRequest,
) -> Result<(PassControls, Option<ClaimedItem>, Completion)> {
    let (worker_pid, worker_start_time) = worker_columns(worker);
    let mut params = claim_params(request).to_vec();
    params.extend([
        (&item_id as &(dyn ToSql + Sync), Type::INT8),
        (&worker_pid, Type::INT4),
        (&worker_start_time, Type::INT8),
    ]);
    macro_rules! complete_staged_and_claim_statement {
        ($group:ident) => {
            concat!(
                "WITH ",
                fence_step!(),
                ", ",
                complete_staged_steps!("$12"),
                ", ",
                claim_core_steps!($group),
                ",",
                complete_run_step!("$13", "$14")
            )
        };
    }
    let rows = statements.query(client, by_group!(request, complete_staged_and_claim_statement), &params)?;
    let (controls, item) = read_claim(&rows);
    let completion = match rows.first() {
        Some(row) => staged_completion(row, 17, request.run_id)?,
        None => Completion::ClaimLost(HeldNow { state: None, claimed_by: None }),
    };
    Ok((controls, item, completion))
}

/// A worker (pid, start time) as the run's `worker_pid` and `worker_start_time`.
fn worker_columns(worker: Option<(i32, Option<i64>)>) -> (Option<i32>, Option<i64>) {
    worker.map_or((None, None), |(pid, start)| (Some(pid), start))
}

/// How the commit of a staged result went, from four columns of its statement from
/// `first` on: the items completed, whether the run held the item (the snapshot before
/// the statement), then the item's state and `claimed_by` (see `complete_run_step`). Held
/// but not completed: the staged bytes did not verify.
fn staged_completion(row: &Row, first: usize, run_id: i64) -> Result<Completion> {
    Ok(match (row.get::<_, i64>(first), row.get::<_, bool>(first + 1)) {
        (1.., _) => Completion::Completed,
        (_, true) => Completion::StagedResultDamaged,
        (_, false) => HeldNow::read(row, first + 2, first + 3)?.completion(run_id),
    })
}

fn read_claim(rows: &[Row]) -> (PassControls, Option<ClaimedItem>) {
    let Some(row) = rows.first() else { return (PassControls::default(), None) };
    let controls = PassControls {
        paused_at: row.get(0),
        pause_note: row.get(1),
        burst_until: row.get(2),
        backoff_until: row.get(3),
        backoff_reason: row.get(4),
        is_suspected: row.get(5),
        is_run_live: row.get(11),
        parked_at: row.get(12),
        parked_reason: row.get(13),
        yields_to: row.get::<_, Option<String>>(14).map(|name| Ahead {
            name,
            priority: row.get::<_, Option<i32>>(15).unwrap_or_default(),
            is_bursting: row.get::<_, Option<bool>>(16).unwrap_or_default(),
        }),
    };
    let item = row.get::<_, Option<i64>>(6).map(|id| ClaimedItem {
        id,
        key: row.get(7),
        payload: row.get(8),
        attempt: row.get(9),
        resume_token: row.get(10),
    });
    (controls, item)
}

/// The length and SHA-256 a staged result is verified against.
fn staging_check(result: &[u8]) -> (i64, Vec<u8>) {
    (result.len() as i64, Sha256::digest(result).to_vec())
}

/// Remember the latest resume token of an item while `run_id` holds it.
pub fn set_resume_token(
    client: &mut impl GenericClient,
    item_id: i64,
    run_id: i64,
    token: &str,
) -> Result<bool> {
    let updated = client.execute(
        "UPDATE items SET resume_token = $3 WHERE id = $1 AND claimed_by = $2 AND state = 'running'",
        &[&item_id, &run_id, &token],
    )?;
    Ok(updated == 1)
}

/// Forget an item's resume token (its next run starts afresh).
pub fn clear_resume_token(client: &mut impl GenericClient, item_id: i64) -> Result<()> {
    client.execute(
        "UPDATE items SET resume_token = NULL WHERE id = $1 AND resume_token IS NOT NULL",
        &[&item_id],
    )?;
    Ok(())
}

/// Close the attempt row of `item_id` by `run_id`.
pub fn finish_attempt(
    client: &mut impl GenericClient,
    item_id: i64,
    run_id: i64,
    outcome: AttemptOutcome,
    exit_code: Option<i32>,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "UPDATE attempts SET finished_at = $3, outcome = $4, exit_code = $5, error = $6
          WHERE item_id = $1 AND run_id = $2 AND finished_at IS NULL",
        &[&item_id, &run_id, &now, &outcome, &exit_code, &error],
    )?;
    Ok(())
}

/// Durably stage a result with its length and checksum (its own statement, committed):
/// the statement of `stage_and_claim_next_item` with a claim that is never allowed.
pub fn stage_result(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    drain: &str,
    item_id: i64,
    run_id: i64,
    result: &[u8],
    now: DateTime<Utc>,
) -> Result<()> {
    let request = ClaimRequest {
        drain,
        account: ClaimAccount { quota_group: "", account: "", is_allowed: false },
        run_id,
        now,
        local_limits_allow: false,
        rivals: &GroupRivals::default(),
    };
    stage_and_claim_next_item(client, statements, item_id, result, &request)?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The staged result became the item's result; the item is done.
    Completed,
    /// The run no longer holds the item (released, reclaimed): nothing was committed.
    ClaimLost(HeldNow),
    /// The staged result is missing or does not match its length/checksum: discarded.
    StagedResultDamaged,
}

/// Where an item a run lost its claim on was when the commit looked: its state and the
/// run that claims it (None when the item is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldNow {
    pub state: Option<ItemState>,
    pub claimed_by: Option<i64>,
}

impl HeldNow {
    /// Read from two columns of a commit statement: the item's state and `claimed_by`
    /// as the statement's snapshot saw them.
    fn read(row: &Row, state: usize, claimed_by: usize) -> Result<HeldNow> {
        let unreadable =
            |error: postgres::Error| Error::Internal(format!("reading who holds the item: {error}"));
        Ok(HeldNow {
            state: row.try_get(state).map_err(unreadable)?,
            claimed_by: row.try_get(claimed_by).map_err(unreadable)?,
        })
    }

    /// What a commit of `run_id` that committed nothing means: the claim was lost — or
    /// the item is already done under this run's own claim, committed by an earlier
    /// statement of the run whose reply the ended session never delivered (or by the
    /// reaper, from the run's staged result), which a retry finds so.
    fn completion(self, run_id: i64) -> Completion {
        if self.state == Some(ItemState::Done) && self.claimed_by == Some(run_id) {
            Completion::Completed
        } else {
            Completion::ClaimLost(self)
        }
    }

    /// Who has the item now, for run `run_id`'s `claim_lost` message: `now held by run
    /// 12`, `now pending, held by nobody`…
    pub fn describe(&self, run_id: i64) -> String {
        match (self.state, self.claimed_by) {
            (None, _) => "the item no longer exists".to_string(),
            (Some(ItemState::Running), Some(other)) if other != run_id => format!("now held by run {other}"),
            (Some(ItemState::Running), _) => {
                "still marked running under this run, which is no longer running (ended as hung or crashed)"
                    .to_string()
            }
            (Some(state), Some(other)) if other != run_id => {
                format!("now {state}, last claimed by run {other}")
            }
            (Some(state), _) => format!("now {state}, held by nobody"),
        }
    }
}

/// What a commit does to the run's recorded worker.
#[derive(Debug, Clone, Copy)]
pub enum RunWorker {
    /// The pass records the worker it now waits on (pid and start time), or none.
    Set(Option<(i32, Option<i64>)>),
    /// The reaper commits for a run it ends: the worker the run recorded stays, for
    /// whoever must still stop it.
    Keep,
}

/// Move the staged result of `run_id` into the item and mark it done — only if `run_id`
/// still holds the claim and is still `running` (fencing) and the staged bytes verify against their recorded
/// length and SHA-256. In the same statement: the staged row is removed (in every case),
/// the attempt is closed, and the run counts the item, records a checkpoint and records
/// its worker as `worker` says.
pub fn complete_item(
    client: &mut impl GenericClient,
    statements: &mut PreparedStatements,
    item_id: i64,
    run_id: i64,
    now: DateTime<Utc>,
    worker: RunWorker,
) -> Result<Completion> {
    let (sets_worker, next_worker) = match worker {
        RunWorker::Set(next_worker) => (true, next_worker),
        RunWorker::Keep => (false, None),
    };
    let (worker_pid, worker_start_time) = worker_columns(next_worker);
    let rows = statements.query(
        client,
        concat!(
            "WITH ",
            fence_step!(),
            ", ",
            complete_staged_steps!("$1"),
            ",
         run AS (
             UPDATE runs SET items_done = items_done + (SELECT count(*) FROM done),
                    worker_pid = CASE WHEN $6 THEN $4 ELSE worker_pid END,
                    worker_start_time = CASE WHEN $6 THEN $5 ELSE worker_start_time END,
                    last_checkpoint_at = CASE WHEN status = 'running'
                        THEN greatest(last_checkpoint_at, $3) ELSE last_checkpoint_at END,
                    checkpoints = checkpoints + CASE WHEN status = 'running' THEN 1 ELSE 0 END
              WHERE id = $2 AND EXISTS (SELECT 1 FROM fence))
         SELECT (SELECT count(*) FROM done),
                EXISTS (SELECT 1 FROM fence)
                    AND EXISTS (SELECT 1 FROM items WHERE id = $1 AND claimed_by = $2 AND state = 'running'),
                (SELECT state FROM items WHERE id = $1), (SELECT claimed_by FROM items WHERE id = $1)"
        ),
        &[
            (&item_id, Type::INT8),
            (&run_id, Type::INT8),
            (&now, Type::TIMESTAMPTZ),
            (&worker_pid, Type::INT4),
            (&worker_start_time, Type::INT8),
            (&sets_worker, Type::BOOL),
        ],
    )?;
    let row = rows.first().ok_or_else(|| Error::Internal("completing an item returned no row".into()))?;
    staged_completion(row, 0, run_id)
}

/// Put a held item back to pending, available at `available_at` (at once: `now`), with its
/// attempt given back: a release that is not the item's fault (quota hit, worker not
/// startable, interruption, a staged result that did not verify, a file a scan has yet to
/// repoint). One that `never_ran` (claimed ahead, then the pass stopped: a budget, a
/// window, a signal) keeps its place in the claim order; one whose worker ran goes behind
/// the items already waiting.
pub fn release_item(
    client: &mut impl GenericClient,
    item_id: i64,
    run_id: i64,
    never_ran: bool,
    available_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool> {
    let updated = client.execute(
        "UPDATE items SET state = 'pending', attempts = greatest(attempts - 1, 0),
                available_at = CASE WHEN $4 THEN least(available_at, $5) ELSE $5 END,
                claimed_by = NULL, claimed_at = NULL, updated_at = $3
          WHERE id = $1 AND claimed_by = $2 AND state = 'running'",
        &[&item_id, &run_id, &now, &never_ran, &available_at],
    )?;
    Ok(updated == 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Back to pending, available again at this time.
    Retry(DateTime<Utc>),
    /// `max_attempts` reached: dead-lettered.
    Dead,
    /// The run no longer held the item: who did as the statement saw it.
    ClaimLost(HeldNow),
    /// This very failure was committed already, by the same statements sent again after
    /// the reply to their commit was lost (a failover, a restart): nothing more to record.
    RecordedBefore,
}

/// Record a failed attempt on a held item: retry at `retry_at`, or dead-letter it when
/// its attempts reached `max_attempts`.
#[allow(clippy::too_many_arguments)]
pub fn fail_item(
    client: &mut impl GenericClient,
    item_id: i64,
    run_id: i64,
    error: &str,
    stderr_tail: &[u8],
    max_attempts: i32,
    retry_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Failure> {
    // The outer SELECT sees the snapshot before the UPDATE: when the run no longer held
    // the item, who did (docs/worker-contract.md, "Claims are fenced").
    let row = client.query_one(
        "WITH failed AS (
             UPDATE items SET
                    state = CASE WHEN attempts >= $5 THEN 'dead' ELSE 'pending' END,
                    available_at = CASE WHEN attempts >= $5 THEN available_at ELSE $6::timestamptz END,
                    finished_at = CASE WHEN attempts >= $5 THEN $7::timestamptz ELSE NULL END,
                    claimed_by = CASE WHEN attempts >= $5 THEN claimed_by ELSE NULL END,
                    claimed_at = NULL, last_error = $3, stderr_tail = $4, updated_at = $7
              WHERE id = $1 AND claimed_by = $2 AND state = 'running'
          RETURNING state)
         SELECT (SELECT state FROM failed),
                (SELECT state FROM items WHERE id = $1), (SELECT claimed_by FROM items WHERE id = $1),
                EXISTS (SELECT 1 FROM attempts a
                         WHERE a.item_id = $1 AND a.run_id = $2 AND a.finished_at IS NOT NULL AND a.error = $3
                           AND a.attempt = (SELECT attempts FROM items WHERE id = $1))",
        &[&item_id, &run_id, &error, &stderr_tail, &max_attempts, &retry_at, &now],
    )?;
    Ok(match row.try_get::<_, Option<ItemState>>(0)? {
        // This run's attempt of the item's latest claim closed with this very error: the
        // same failure, committed before its reply was lost — not a claim another run took
        // (which would have counted an attempt more), nor one the reaper ended (whose error
        // names the run ended). Not by the instant: the pass sends it again later.
        None if row.try_get::<_, bool>(3)? => Failure::RecordedBefore,
        None => Failure::ClaimLost(HeldNow::read(&row, 1, 2)?),
        Some(ItemState::Dead) => Failure::Dead,
        Some(_) => Failure::Retry(retry_at),
    })
}

/// An item a dead or hung run still held, as released by [`release_run_items`].
#[derive(Debug, Clone)]
pub struct ReleasedItem {
    pub id: i64,
    pub key: String,
    pub is_dead: bool,
    /// Claimed ahead while the run's worker ran on another item it still held: its own
    /// worker never started, so its attempt was refunded (`not_started`).
    pub was_claimed_ahead: bool,
    /// Its attempts now, the released one counted unless refunded.
    pub attempts: i32,
}

/// Of the items a run holds, the one claimed ahead: its latest claim, when it holds an
/// earlier one too (docs/worker-contract.md). A pass holds the item its worker runs and
/// at most one claimed ahead, besides an item whose result waits staged — the earlier
/// one of the two when the pass died between staging it and starting the next worker:
/// the reaper reads which item was claimed ahead before it commits the staged result
/// ([`claimed_ahead_of_run`]). Selects `id, ahead` for `held AS (SELECT id, claimed_by
/// FROM …)` rows; used by [`release_run_items`], [`release_orphaned_items`] and
/// [`drains_recovery_would_free`].
macro_rules! claimed_ahead_step {
    () => {
        "opened AS (
             SELECT h.id, h.claimed_by,
                    (SELECT max(a.id) FROM attempts a
                      WHERE a.item_id = h.id AND a.run_id = h.claimed_by AND a.finished_at IS NULL) AS attempt
               FROM held h),
         ahead AS (
             SELECT id, coalesce(attempt = max(attempt) OVER run AND count(attempt) OVER run > 1, false) AS ahead
               FROM opened WINDOW run AS (PARTITION BY claimed_by))"
    };
}

/// The error of the attempt of an item given back as claimed ahead (see
/// [`claimed_ahead_step`]), as an SQL literal.
macro_rules! claimed_ahead_error {
    () => {
        "'claimed ahead; its run ended before its worker started'"
    };
}

/// The item `run_id` claimed ahead (see [`claimed_ahead_step`]), read while a result it
/// staged still waits: the reaper asks before it commits that result, which leaves the
/// item claimed ahead the only one held. Its worker may have started in the instant
/// between the staging and the statement that would have recorded it; the reaper cannot
/// tell, and gives it back refunded rather than charge an item that may never have run
/// (docs/worker-contract.md).
pub fn claimed_ahead_of_run(client: &mut impl GenericClient, run_id: i64) -> Result<Option<i64>> {
    let rows = client.query(
        concat!(
            "WITH held AS (SELECT id, claimed_by FROM items WHERE claimed_by = $1 AND state = 'running'),
         ",
            claimed_ahead_step!(),
            "
         SELECT id FROM ahead WHERE ahead"
        ),
        &[&run_id],
    )?;
    Ok(rows.first().map(|row| row.get(0)))
}

/// Release every item `run_id` still holds and close their attempts. With
/// `refund_attempt` (the run was stopped by an error that is not the items' fault) the
/// attempt is given back; otherwise (crashed, hung) it stays counted and an item that has
/// used `max_attempts` is dead — except an item claimed ahead, whose worker never started:
/// its attempt is refunded and recorded as `not_started`. `ahead`: the item claimed ahead
/// as read before the reaper committed a staged result ([`claimed_ahead_of_run`]), when
/// it no longer shows by the items held. A result the run staged for a released item and
/// never committed is discarded with it (the reaper commits verified ones before
/// releasing).
pub fn release_run_items(
    client: &mut impl GenericClient,
    run_id: i64,
    error: &str,
    max_attempts: i32,
    refund_attempt: bool,
    ahead: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Vec<ReleasedItem>> {
    let refund: i32 = if refund_attempt { 1 } else { 0 };
    let rows = client.query(
        concat!(
            "WITH held AS (SELECT id, claimed_by FROM items WHERE claimed_by = $1 AND state = 'running'),
         ",
            claimed_ahead_step!(),
            ",
         released AS (
             UPDATE items i SET
                    attempts = greatest(i.attempts - r.refund, 0),
                    state = CASE WHEN i.attempts - r.refund >= $3 THEN 'dead' ELSE 'pending' END,
                    finished_at = CASE WHEN i.attempts - r.refund >= $3 THEN $4::timestamptz ELSE NULL END,
                    claimed_by = CASE WHEN i.attempts - r.refund >= $3 THEN i.claimed_by ELSE NULL END,
                    available_at = $4, claimed_at = NULL, last_error = $2, updated_at = $4
               FROM (SELECT id, ahead, CASE WHEN ahead THEN 1 ELSE $5 END AS refund
                       FROM (SELECT id, ahead OR id IS NOT DISTINCT FROM $6 AS ahead FROM ahead) a) r
              WHERE i.id = r.id AND i.claimed_by = $1 AND i.state = 'running'
          RETURNING i.id, i.key, i.state, r.ahead, i.attempts),
         closed AS (
             UPDATE attempts a SET finished_at = $4,
                    outcome = CASE WHEN r.ahead THEN 'not_started' ELSE 'released' END,
                    error = CASE WHEN r.ahead THEN ",
            claimed_ahead_error!(),
            " ELSE $2 END
               FROM released r
              WHERE a.item_id = r.id AND a.run_id = $1 AND a.finished_at IS NULL),
         discarded AS (
             DELETE FROM staged_results WHERE run_id = $1 AND item_id IN (SELECT id FROM released))
         SELECT id, key, state, ahead, attempts FROM released ORDER BY id"
        ),
        &[&run_id, &error, &max_attempts, &now, &refund, &ahead],
    )?;
    // An attempt of the run whose item it no longer holds (none in practice) is closed too.
    client.execute(
        "UPDATE attempts SET finished_at = $2, outcome = 'released', error = $3
          WHERE run_id = $1 AND finished_at IS NULL",
        &[&run_id, &now, &error],
    )?;
    rows.iter()
        .map(|row| {
            Ok(ReleasedItem {
                id: row.get(0),
                key: row.get(1),
                is_dead: row.try_get::<_, ItemState>(2)? == ItemState::Dead,
                was_claimed_ahead: row.get(3),
                attempts: row.get(4),
            })
        })
        .collect()
}

/// An item left `running` under a run that is no longer `running` (or no longer exists),
/// as released by [`release_orphaned_items`].
#[derive(Debug, Clone)]
pub struct OrphanedItem {
    pub id: i64,
    pub drain: String,
    pub key: String,
    pub run_id: Option<i64>,
    pub is_dead: bool,
    /// Claimed ahead of another item the run still held: never started, attempt refunded.
    pub was_claimed_ahead: bool,
    /// Its attempts now, the released one counted unless refunded.
    pub attempts: i32,
}

/// How many items each of `drains` (each with its `max_attempts`) would have pending
/// again once `ending_runs` are ended and orphaned items released, as a supervise pass
/// does before it decides starts — read only, for `supervise --dry-run`: an item held by
/// an ending run without a staged result (one with a staged result is settled from it,
/// but counts in telling the item claimed ahead, as in [`claimed_ahead_of_run`]), or by a
/// run no longer `running`, and not on its last attempt (that one is dead-lettered) —
/// unless it was claimed ahead, whose attempt the release refunds (`claimed_ahead_step`,
/// as the release itself reads it).
pub fn drains_recovery_would_free(
    client: &mut impl GenericClient,
    drains: &[String],
    max_attempts: &[i32],
    ending_runs: &[i64],
) -> Result<HashMap<String, u32>> {
    let rows = client.query(
        concat!(
            "WITH held AS (
             SELECT i.id, i.claimed_by,
                    r.status = 'running' AND EXISTS (SELECT 1 FROM staged_results s
                                                      WHERE s.item_id = i.id AND s.run_id = i.claimed_by)
                        AS settles
               FROM items i
               JOIN unnest($1::text[]) AS l(drain) ON l.drain = i.drain
               LEFT JOIN runs r ON r.id = i.claimed_by
              WHERE i.state = 'running'
                AND (r.id IS NULL OR r.status <> 'running' OR i.claimed_by = ANY($3))),
         ",
            claimed_ahead_step!(),
            "
         SELECT i.drain, count(*) FROM ahead a
           JOIN held h ON h.id = a.id
           JOIN items i ON i.id = a.id
           JOIN unnest($1::text[], $2::int[]) AS l(drain, max_attempts) ON l.drain = i.drain
          WHERE h.settles IS NOT TRUE
            AND i.attempts - CASE WHEN a.ahead THEN 1 ELSE 0 END < l.max_attempts
          GROUP BY i.drain"
        ),
        &[&drains, &max_attempts, &ending_runs],
    )?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, String>(0), u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX)))
        .collect())
}

/// Release every item of these drains (each with its `max_attempts`, in the same order)
/// still `running` under a run that is not `running`, in one statement: the attempt
/// stays counted (its run was judged hung or crashed), and an item that has used
/// `max_attempts` is dead. Its open attempt is closed and a result its run staged is
/// discarded. Rows another transaction holds are skipped (the next sweep sees them).
pub fn release_orphaned_items(
    client: &mut impl GenericClient,
    drains: &[String],
    max_attempts: &[i32],
    now: DateTime<Utc>,
) -> Result<Vec<OrphanedItem>> {
    let rows = client.query(
        concat!(
            "WITH held AS (
             SELECT i.id, i.claimed_by, l.max_attempts FROM items i
               JOIN unnest($1::text[], $2::int[]) AS l(drain, max_attempts) ON l.drain = i.drain
               LEFT JOIN runs r ON r.id = i.claimed_by
              WHERE i.state = 'running' AND (r.id IS NULL OR r.status <> 'running')
                FOR UPDATE OF i SKIP LOCKED),
         ",
            claimed_ahead_step!(),
            ",
         orphaned AS (
             SELECT h.id, h.claimed_by, h.max_attempts, a.ahead, CASE WHEN a.ahead THEN 1 ELSE 0 END AS refund
               FROM held h JOIN ahead a USING (id)),
         released AS (
             UPDATE items i SET
                    attempts = greatest(i.attempts - o.refund, 0),
                    state = CASE WHEN i.attempts - o.refund >= o.max_attempts THEN 'dead' ELSE 'pending' END,
                    finished_at = CASE WHEN i.attempts - o.refund >= o.max_attempts THEN $3::timestamptz ELSE NULL END,
                    claimed_by = CASE WHEN i.attempts - o.refund >= o.max_attempts THEN i.claimed_by ELSE NULL END,
                    available_at = $3, claimed_at = NULL, updated_at = $3,
                    last_error = 'released: its run ' || coalesce(o.claimed_by::text, '(none)')
                                 || ' is no longer running'
               FROM orphaned o
              WHERE i.id = o.id
          RETURNING i.id, i.drain, i.key, o.claimed_by, i.state, o.ahead, i.attempts),
         attempts_closed AS (
             UPDATE attempts a SET finished_at = $3,
                    outcome = CASE WHEN r.ahead THEN 'not_started' ELSE 'released' END,
                    error = CASE WHEN r.ahead THEN ",
            claimed_ahead_error!(),
            " ELSE 'its run is no longer running' END
               FROM released r
              WHERE a.item_id = r.id AND a.run_id = r.claimed_by AND a.finished_at IS NULL),
         discarded AS (
             DELETE FROM staged_results s USING released r
              WHERE s.item_id = r.id AND s.run_id = r.claimed_by)
         SELECT id, drain, key, claimed_by, state, ahead, attempts FROM released ORDER BY id"
        ),
        &[&drains, &max_attempts, &now],
    )?;
    rows.iter()
        .map(|row| {
            Ok(OrphanedItem {
                id: row.get(0),
                drain: row.get(1),
                key: row.get(2),
                run_id: row.get(3),
                is_dead: row.try_get::<_, ItemState>(4)? == ItemState::Dead,
                was_claimed_ahead: row.get(5),
                attempts: row.get(6),
            })
        })
        .collect()
}

/// The items `run_id` holds (`running` under its claim), as (id, key), in claim order.
pub fn held_by_run(client: &mut impl GenericClient, run_id: i64) -> Result<Vec<(i64, String)>> {
    let rows = client.query(
        "SELECT id, key FROM items WHERE claimed_by = $1 AND state = 'running' ORDER BY claimed_at, id",
        &[&run_id],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Results staged by `run_id` that were never completed.
pub fn staged_item_ids(client: &mut impl GenericClient, run_id: i64) -> Result<Vec<i64>> {
    let rows =
        client.query("SELECT item_id FROM staged_results WHERE run_id = $1 ORDER BY item_id", &[&run_id])?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Which of these runs hold a `running` item now (index `items_running_claim`).
pub fn runs_holding_items(client: &mut impl GenericClient, runs: &[i64]) -> Result<Vec<i64>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client.query(
        "SELECT DISTINCT claimed_by FROM items WHERE state = 'running' AND claimed_by = ANY($1)",
        &[&runs],
    )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// When the first pending item of `drain` is available (now or later, its retry delay),
/// from the claim's index; `None` without a pending item.
pub fn first_available_at(client: &mut impl GenericClient, drain: &str) -> Result<Option<DateTime<Utc>>> {
    let row = client
        .query_one("SELECT min(available_at) FROM items WHERE drain = $1 AND state = 'pending'", &[&drain])?;
    Ok(row.get(0))
}

/// How many items each of these drains has available now, counted up to its limit (its
/// `concurrency`: how many passes those items could keep busy): one index-backed scan of at
/// most `limit` entries per drain, in a single statement. A drain without one is absent.
pub fn available_items_of(
    client: &mut impl GenericClient,
    drains: &[String],
    limits: &[i64],
    now: DateTime<Utc>,
) -> Result<HashMap<String, u32>> {
    let rows = client.query(
        "SELECT name, (SELECT count(*) FROM (SELECT 1 FROM items
                                              WHERE drain = name AND state = 'pending' AND available_at <= $3
                                              LIMIT lim) AS available)
           FROM unnest($1::text[], $2::bigint[]) AS drains(name, lim)",
        &[&drains, &limits, &now],
    )?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, String>(0), u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX)))
        .filter(|(_, available)| *available > 0)
        .collect())
}

/// Move back the availability of the pending items of `drains` last changed after `limit`
/// by how far each was changed ahead of `now` (see `supervise::clock_went_back`), leaving
/// an item another transaction holds; with `dry_run` only count. The items of each drain
/// that are (or would be) available by it.
pub fn pull_back_availability(
    client: &mut impl GenericClient,
    drains: &[String],
    now: DateTime<Utc>,
    limit: DateTime<Utc>,
    dry_run: bool,
) -> Result<HashMap<String, u32>> {
    // The pending items changed ahead, with their availability moved back.
    macro_rules! ahead {
        () => {
            "SELECT id, drain, available_at - (updated_at - $2) AS available_at FROM items
              WHERE drain = ANY($1) AND state = 'pending' AND updated_at > $3"
        };
    }
    let sql = if dry_run {
        concat!("SELECT drain, count(*) FROM (", ahead!(), ") ahead WHERE available_at <= $2 GROUP BY drain")
    } else {
        concat!(
            "WITH ahead AS (",
            ahead!(),
            " FOR UPDATE SKIP LOCKED),
             moved AS (
                 UPDATE items i SET available_at = a.available_at, updated_at = $2
                   FROM ahead a WHERE i.id = a.id)
             SELECT drain, count(*) FROM ahead WHERE available_at <= $2 GROUP BY drain"
        )
    };
    let rows = client.query(sql, &[&drains, &now, &limit])?;
    Ok(rows
        .iter()
        .map(|row| (row.get::<_, String>(0), u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX)))
        .collect())
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct StateCounts {
    pub pending: i64,
    pub running: i64,
    pub done: i64,
    pub dead: i64,
    /// Settled without running: the source file vanished first.
    pub skipped_missing: i64,
}

/// How many items of `drain` are in each state (from `item_counts`, see
/// [`count_by_state_of`]).
pub fn count_by_state(client: &mut impl GenericClient, drain: &str) -> Result<StateCounts> {
    let mut counts = count_by_state_of(client, &[drain.to_string()])?;
    Ok(counts.remove(drain).unwrap_or_default())
}

/// How many items each of `drains` has in each state, in one statement; a drain without
/// items is absent. The counts are kept exact by triggers in the transactions that change
/// items (migrations/0009_item_counts.sql): at most 16 rows per drain are read, whatever
/// the size of the backlog.
pub fn count_by_state_of(
    client: &mut impl GenericClient,
    drains: &[String],
) -> Result<HashMap<String, StateCounts>> {
    let rows = client.query(
        "SELECT drain, sum(pending)::bigint, sum(running)::bigint, sum(done)::bigint, sum(dead)::bigint,
                sum(skipped_missing)::bigint
           FROM item_counts WHERE drain = ANY($1) GROUP BY drain
         HAVING sum(pending) + sum(running) + sum(done) + sum(dead) + sum(skipped_missing) > 0",
        &[&drains],
    )?;
    Ok(rows.iter().map(drain_and_counts).collect())
}

/// A row of `drain` and its five state sums, in [`StateCounts`]'s order.
fn drain_and_counts(row: &Row) -> (String, StateCounts) {
    let counts = StateCounts {
        pending: row.get(1),
        running: row.get(2),
        done: row.get(3),
        dead: row.get(4),
        skipped_missing: row.get(5),
    };
    (row.get(0), counts)
}

/// Drains with items waiting (pending or running) that are not among `configured`: a
/// drain renamed or removed from the configuration, whose backlog nothing will run once
/// its passes still running have ended — with how many are, and whether it is paused.
/// `started_since`: from when another host's start of a run of it counts as its own
/// configuration having the drain (see [`UnconfiguredWork::started_elsewhere`]); None
/// looks for none.
pub fn unconfigured_with_work(
    client: &mut impl GenericClient,
    configured: &[String],
    started_since: Option<DateTime<Utc>>,
) -> Result<Vec<UnconfiguredWork>> {
    let rows = client.query(
        "SELECT c.drain, c.pending, c.running, c.done, c.dead, c.skipped_missing,
                (SELECT count(*) FROM runs r WHERE r.drain = c.drain AND r.status = 'running' AND r.host = $2),
                coalesce((SELECT d.paused_at IS NOT NULL FROM drains d WHERE d.name = c.drain), false),
                (SELECT coalesce(array_agg(DISTINCT r.host ORDER BY r.host), '{}') FROM runs r
                  WHERE r.drain = c.drain AND r.status = 'running' AND r.host <> $2),
                (SELECT coalesce(array_agg(DISTINCT r.host ORDER BY r.host), '{}') FROM runs r
                  WHERE $3::timestamptz IS NOT NULL AND r.drain = c.drain AND r.host <> $2
                    AND r.started_at >= $3)
           FROM (SELECT drain, sum(pending)::bigint AS pending, sum(running)::bigint AS running,
                        sum(done)::bigint AS done, sum(dead)::bigint AS dead,
                        sum(skipped_missing)::bigint AS skipped_missing
                   FROM item_counts WHERE drain <> ALL($1) GROUP BY drain
                 HAVING sum(pending) + sum(running) > 0) AS c
          ORDER BY c.drain",
        &[&configured, &crate::worker::process::host_name(), &started_since],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            let (drain, counts) = drain_and_counts(row);
            UnconfiguredWork {
                drain,
                counts,
                running_passes: row.get(6),
                is_paused: row.get(7),
                running_elsewhere: row.get(8),
                started_elsewhere: row.get(9),
            }
        })
        .collect())
}

/// A drain with work in the database and no `[[drain]]` table (see [`unconfigured_with_work`]).
pub struct UnconfiguredWork {
    pub drain: String,
    pub counts: StateCounts,
    /// Its passes of this host still running, started before its table left the
    /// configuration.
    pub running_passes: i64,
    pub is_paused: bool,
    /// The other hosts with a run of it still `running`.
    pub running_elsewhere: Vec<String>,
    /// The other hosts that started a run of it lately: their configuration has the drain.
    pub started_elsewhere: Vec<String>,
}

/// One line of `items NAME`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemRow {
    pub id: i64,
    pub key: String,
    pub state: ItemState,
    pub attempts: i32,
    pub available_at: DateTime<Utc>,
    pub claimed_by: Option<i64>,
    pub last_error: Option<String>,
    pub enqueued_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

fn item_row_from(row: &postgres::Row) -> Result<ItemRow> {
    Ok(ItemRow {
        id: row.get(0),
        key: row.get(1),
        state: row.try_get(2)?,
        attempts: row.get(3),
        available_at: row.get(4),
        claimed_by: row.get(5),
        last_error: row.get(6),
        enqueued_at: row.get(7),
        updated_at: row.get(8),
        finished_at: row.get(9),
    })
}

/// Items of `drain`, at most `limit`. Pending items come in claim order (index
/// `items_pending_available`); any other listing shows the most recently changed first.
pub fn list_items(
    client: &mut impl GenericClient,
    drain: &str,
    state: Option<ItemState>,
    limit: i64,
) -> Result<Vec<ItemRow>> {
    let rows = if state == Some(ItemState::Pending) {
        client.query(
            "SELECT id, key, state, attempts, available_at, claimed_by, last_error, enqueued_at,
                    updated_at, finished_at
               FROM items WHERE drain = $1 AND state = 'pending'
              ORDER BY available_at, id LIMIT $2",
            &[&drain, &limit],
        )?
    } else {
        // Per state, the latest `limit` from `items_drain_state_updated` read backwards,
        // then the latest of those: `limit` rows read per state, whatever the backlog.
        let states: Vec<&str> = match state {
            Some(state) => vec![state.as_str()],
            None => ItemState::NAMES.to_vec(),
        };
        client.query(
            "SELECT i.id, i.key, i.state, i.attempts, i.available_at, i.claimed_by, i.last_error,
                    i.enqueued_at, i.updated_at, i.finished_at
               FROM unnest($2::text[]) AS s (state)
               CROSS JOIN LATERAL (
                   SELECT * FROM items
                    WHERE drain = $1 AND state = s.state
                    ORDER BY updated_at DESC, id DESC LIMIT $3) AS i
              ORDER BY i.updated_at DESC, i.id DESC LIMIT $3",
            &[&drain, &states, &limit],
        )?
    };
    rows.iter().map(item_row_from).collect()
}

/// Everything stored about one item.
#[derive(Debug, Clone)]
pub struct ItemDetail {
    pub row: ItemRow,
    pub payload: Value,
    pub claimed_at: Option<DateTime<Utc>>,
    pub stderr_tail: Option<Vec<u8>>,
    pub result: Option<Vec<u8>>,
}

/// The item `key` of `drain`, if there is one.
pub fn get_item(client: &mut impl GenericClient, drain: &str, key: &str) -> Result<Option<ItemDetail>> {
    let row = client.query_opt(
        "SELECT id, key, state, attempts, available_at, claimed_by, last_error, enqueued_at,
                updated_at, finished_at, payload, claimed_at, stderr_tail, result
           FROM items WHERE drain = $1 AND key = $2",
        &[&drain, &key],
    )?;
    row.map(|row| {
        Ok(ItemDetail {
            row: item_row_from(&row)?,
            payload: row.get(10),
            claimed_at: row.get(11),
            stderr_tail: row.get(12),
            result: row.get(13),
        })
    })
    .transpose()
}

/// One attempt of an item, from the `attempts` table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRow {
    pub attempt: i32,
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

/// Every attempt of `item_id`, oldest first (index `attempts_item`).
pub fn list_attempts(client: &mut impl GenericClient, item_id: i64) -> Result<Vec<AttemptRow>> {
    let rows = client.query(
        "SELECT attempt, run_id, started_at, finished_at, outcome, exit_code, error
           FROM attempts WHERE item_id = $1 ORDER BY id",
        &[&item_id],
    )?;
    Ok(rows
        .iter()
        .map(|row| AttemptRow {
            attempt: row.get(0),
            run_id: row.get(1),
            started_at: row.get(2),
            finished_at: row.get(3),
            outcome: row.get(4),
            exit_code: row.get(5),
            error: row.get(6),
        })
        .collect())
}

/// An item put back to pending by `retry`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RetriedItem {
    pub id: i64,
    pub key: String,
    pub previous_state: ItemState,
    pub previous_attempts: i32,
}

/// Every dead item of `drain` back to pending, attempts 0, available at `now`. The last
/// error stays until the next attempt replaces it.
pub fn retry_dead_items(
    client: &mut impl GenericClient,
    drain: &str,
    now: DateTime<Utc>,
) -> Result<Vec<RetriedItem>> {
    let rows = client.query(
        concat!(
            "WITH old AS (SELECT id, attempts FROM items WHERE drain = $1 AND state = 'dead' FOR UPDATE)
         UPDATE items i SET ",
            starts_afresh!(),
            ", available_at = $2, updated_at = $2
           FROM old WHERE i.id = old.id
         RETURNING i.id, i.key, old.attempts"
        ),
        &[&drain, &now],
    )?;
    let mut retried: Vec<RetriedItem> = rows
        .iter()
        .map(|row| RetriedItem {
            id: row.get(0),
            key: row.get(1),
            previous_state: ItemState::Dead,
            previous_attempts: row.get(2),
        })
        .collect();
    retried.sort_by_key(|item| item.id);
    let ids: Vec<i64> = retried.iter().map(|item| item.id).collect();
    crate::db::poison::uncount_charges(client, &ids)?;
    Ok(retried)
}

/// What [`retry_item`] found.
#[derive(Debug, Clone)]
pub enum RetryOne {
    Retried(RetriedItem),
    /// The item is running or done: left alone.
    NotRetryable {
        state: ItemState,
    },
    Missing,
}

/// The item `key` back to pending (attempts 0, available at `now`) if it is dead or pending.
pub fn retry_item(
    client: &mut impl GenericClient,
    drain: &str,
    key: &str,
    now: DateTime<Utc>,
) -> Result<RetryOne> {
    // The item is locked first and its run read after, in a statement of its own: a
    // locking statement that waited for a claim sees the item as claimed, but the rows it
    // joins as they were before — the item's new run missing, so a live run's item would
    // look held by nobody.
    let Some(current) = client.query_opt(
        "SELECT id, state, attempts, claimed_by FROM items WHERE drain = $1 AND key = $2 FOR UPDATE",
        &[&drain, &key],
    )?
    else {
        return Ok(RetryOne::Missing);
    };
    let id: i64 = current.get(0);
    let state: ItemState = current.try_get(1)?;
    // A running item whose run is no longer running is held by nobody: it may be taken.
    let is_orphaned = state == ItemState::Running && {
        let claimed_by: Option<i64> = current.get(3);
        // Read, not locked: supervise ending a run locks it before its items, and a run that
        // is not running never runs again.
        let run = client.query_opt("SELECT status = 'running' FROM runs WHERE id = $1", &[&claimed_by])?;
        !run.is_some_and(|run| run.get::<_, bool>(0))
    };
    if state != ItemState::Dead && state != ItemState::Pending && !is_orphaned {
        return Ok(RetryOne::NotRetryable { state });
    }
    client.execute(
        concat!(
            "UPDATE items SET ",
            starts_afresh!(),
            ", available_at = $2, updated_at = $2
          WHERE id = $1"
        ),
        &[&id, &now],
    )?;
    crate::db::poison::uncount_charges(client, &[id])?;
    if is_orphaned {
        client.execute(
            "UPDATE attempts SET finished_at = $2, outcome = 'released', error = 'taken by retry: its run is no longer running'
              WHERE item_id = $1 AND finished_at IS NULL",
            &[&id, &now],
        )?;
        client.execute("DELETE FROM staged_results WHERE item_id = $1", &[&id])?;
    }
    Ok(RetryOne::Retried(RetriedItem {
        id,
        key: key.to_string(),
        previous_state: state,
        previous_attempts: current.get(2),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_that_finds_its_item_done_under_its_own_claim_was_committed_before() {
        let held = |state, claimed_by| HeldNow { state: Some(state), claimed_by };
        // Done under this run's claim: an earlier statement of the run committed it.
        assert_eq!(held(ItemState::Done, Some(7)).completion(7), Completion::Completed);
        // Done under another run's claim, released, or gone: the claim was lost.
        for lost in [
            held(ItemState::Done, Some(8)),
            held(ItemState::Pending, None),
            held(ItemState::Running, Some(8)),
            held(ItemState::Dead, Some(7)),
            HeldNow { state: None, claimed_by: None },
        ] {
            assert_eq!(lost.completion(7), Completion::ClaimLost(lost));
        }
    }
}
