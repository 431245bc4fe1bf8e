//! The `source_files` and `source_scans` tables: what each file of a drain's source looked
//! like when it was last hashed, and where a truncated scan stopped.

use chrono::{DateTime, Utc};
use postgres::{Client, GenericClient};

use crate::error::Result;
use crate::model::ItemState;

/// A file a previous scan recorded, with the state of its item (None: no such item).
#[derive(Debug, Clone)]
pub struct KnownFile {
    pub path: String,
    pub size: i64,
    pub mtime: DateTime<Utc>,
    pub sha256: String,
    pub missing_at: Option<DateTime<Utc>>,
    pub item_state: Option<ItemState>,
    /// The path its item's payload names while that payload is the folder's (none once
    /// the item is pruned, or when it is the operator's: see `items::is_the_folders`).
    pub item_path: Option<String>,
    /// That path is not this file's in the folder scanned now (set by the scan).
    pub moved: bool,
}

/// The recorded files of `drain` among `paths` (primary key lookups).
pub fn known_files(client: &mut impl GenericClient, drain: &str, paths: &[String]) -> Result<Vec<KnownFile>> {
    let rows = client.query(
        concat!(
            "SELECT f.path, f.size, f.mtime, f.sha256, f.missing_at, items.state,
                    CASE WHEN ",
            crate::db::items::is_the_folders!(),
            " THEN items.payload->>'path' END
               FROM source_files f
               LEFT JOIN items ON items.drain = f.drain AND items.key = f.path
              WHERE f.drain = $1 AND f.path = ANY($2)"
        ),
        &[&drain, &paths],
    )?;
    rows.iter()
        .map(|row| {
            Ok(KnownFile {
                path: row.get(0),
                size: row.get(1),
                mtime: row.get(2),
                sha256: row.get(3),
                missing_at: row.get(4),
                item_state: row.try_get(5)?,
                item_path: row.get(6),
                moved: false,
            })
        })
        .collect()
}

/// How many of `drain`'s recorded files were present at their last scan.
pub fn count_present(client: &mut impl GenericClient, drain: &str) -> Result<i64> {
    let row = client
        .query_one("SELECT count(*) FROM source_files WHERE drain = $1 AND missing_at IS NULL", &[&drain])?;
    Ok(row.get(0))
}

/// Each path of `drain`'s recorded files that were present at their last scan, in order,
/// given to `each` as the rows arrive, until it says `Break`: a folder of millions of
/// recorded files is never held in memory at once (`each` must not use the session).
pub fn each_present_path(
    client: &mut Client,
    drain: &str,
    mut each: impl FnMut(String) -> std::ops::ControlFlow<()>,
) -> Result<()> {
    use postgres::fallible_iterator::FallibleIterator;
    let mut rows = client.query_raw(
        "SELECT path FROM source_files WHERE drain = $1 AND missing_at IS NULL ORDER BY path",
        [&drain as &(dyn postgres::types::ToSql + Sync)],
    )?;
    while let Some(row) = rows.next()? {
        if each(row.try_get(0)?).is_break() {
            break;
        }
    }
    Ok(())
}

/// What a scan found about one file.
#[derive(Debug, Clone)]
pub struct FileRecord<'a> {
    pub path: &'a str,
    pub size: i64,
    pub mtime: DateTime<Utc>,
    pub sha256: &'a str,
}

/// Record a file as present with this size, mtime and hash. `was_enqueued`: its item was
/// just (re-)enqueued, so `changed_at` moves.
pub fn record_file(
    client: &mut impl GenericClient,
    drain: &str,
    file: &FileRecord,
    was_enqueued: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "INSERT INTO source_files (drain, path, size, mtime, sha256, first_seen_at, changed_at, missing_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6, NULL)
         ON CONFLICT (drain, path) DO UPDATE
            SET size = EXCLUDED.size, mtime = EXCLUDED.mtime, sha256 = EXCLUDED.sha256,
                missing_at = NULL,
                changed_at = CASE WHEN $7 THEN EXCLUDED.changed_at ELSE source_files.changed_at END",
        &[&drain, &file.path, &file.size, &file.mtime, &file.sha256, &now, &was_enqueued],
    )?;
    Ok(())
}

/// Record that a file is gone.
pub fn mark_missing(
    client: &mut impl GenericClient,
    drain: &str,
    path: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "UPDATE source_files SET missing_at = $3 WHERE drain = $1 AND path = $2 AND missing_at IS NULL",
        &[&drain, &path, &now],
    )?;
    Ok(())
}

/// Where the previous scan of `drain` stopped (None: it covered the rest of the tree).
pub fn resume_point(client: &mut impl GenericClient, drain: &str) -> Result<Option<String>> {
    let row = client.query_opt("SELECT resume_after FROM source_scans WHERE drain = $1", &[&drain])?;
    Ok(row.and_then(|row| row.get(0)))
}

pub fn set_resume_point(
    client: &mut impl GenericClient,
    drain: &str,
    resume_after: Option<&str>,
    now: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "INSERT INTO source_scans (drain, resume_after, scanned_at) VALUES ($1, $2, $3)
         ON CONFLICT (drain) DO UPDATE SET resume_after = EXCLUDED.resume_after, scanned_at = EXCLUDED.scanned_at",
        &[&drain, &resume_after, &now],
    )?;
    Ok(())
}

/// How far a scan got hashing a file it could not finish within its budget
/// (`source_hash_progress`): the SHA-256 state after `hashed_bytes` (whole 64-byte
/// blocks) of the file that had this device, inode, size and mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashProgress {
    pub path: String,
    pub device: i64,
    pub inode: i64,
    pub size: i64,
    pub mtime: DateTime<Utc>,
    pub hashed_bytes: i64,
    pub state: Vec<u8>,
}

/// Every file of `drain` whose hashing a scan left unfinished.
pub fn hash_progress(client: &mut impl GenericClient, drain: &str) -> Result<Vec<HashProgress>> {
    let rows = client.query(
        "SELECT path, device, inode, size, mtime, hashed_bytes, state
           FROM source_hash_progress WHERE drain = $1",
        &[&drain],
    )?;
    Ok(rows
        .iter()
        .map(|row| HashProgress {
            path: row.get(0),
            device: row.get(1),
            inode: row.get(2),
            size: row.get(3),
            mtime: row.get(4),
            hashed_bytes: row.get(5),
            state: row.get(6),
        })
        .collect())
}

/// Keep how far hashing a file got, for the next scan.
pub fn save_hash_progress(
    client: &mut impl GenericClient,
    drain: &str,
    progress: &HashProgress,
    now: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "INSERT INTO source_hash_progress
                (drain, path, device, inode, size, mtime, hashed_bytes, state, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (drain, path) DO UPDATE
            SET device = EXCLUDED.device, inode = EXCLUDED.inode, size = EXCLUDED.size,
                mtime = EXCLUDED.mtime, hashed_bytes = EXCLUDED.hashed_bytes,
                state = EXCLUDED.state, updated_at = EXCLUDED.updated_at",
        &[
            &drain,
            &progress.path,
            &progress.device,
            &progress.inode,
            &progress.size,
            &progress.mtime,
            &progress.hashed_bytes,
            &progress.state,
            &now,
        ],
    )?;
    Ok(())
}

/// Forget the unfinished hashing of a file: it was finished, it changed, or it is gone.
pub fn forget_hash_progress(client: &mut impl GenericClient, drain: &str, path: &str) -> Result<()> {
    client.execute("DELETE FROM source_hash_progress WHERE drain = $1 AND path = $2", &[&drain, &path])?;
    Ok(())
}
