//! File-backed sources: `drainctl scan NAME` (and `supervise`, before it decides) turns
//! the files of a drain's `source` into items.
//!
//! A scan walks `dir` in a fixed order (names sorted byte-wise, folder by folder), keeps
//! the regular files whose path relative to `dir` matches `glob`, and compares each with
//! what `source_files` recorded: a new path is hashed and enqueued (key = the relative
//! path, payload = absolute path, size, mtime and SHA-256); a known file whose size and
//! mtime are unchanged is not even opened; one whose size or mtime changed is hashed, and
//! re-enqueued only when the hash differs (a touch just updates the recorded mtime). A
//! recorded file that is gone is marked missing, and its item, if it is still pending, is
//! settled `skipped_missing`. Paths that would leave `dir` — symbolic links that resolve
//! outside it, or nowhere — are refused and counted, never opened; so is an entry that
//! cannot be looked at (its `stat` fails), with the OS error. Every refusal is logged.
//!
//! Hashing is bounded (see [`crate::hashing`]): a scan reads at most
//! `max_hash_bytes_per_scan` bytes and hashes for at most `max_hash_seconds_per_scan`. It
//! hashes the files with the least left to read first, so the larger ones get what the
//! others leave; a file it cannot finish keeps its SHA-256 state in
//! `source_hash_progress`, so the next scans go on from there instead of starting over. A
//! file not finished is deferred, listed in the report with how far it got; `scan
//! --no-budget` hashes everything at once.
//!
//! A scan looks at most `max_files_per_scan` matching files; when it stops there, it
//! records where, and the next scan goes on after that path (then starts over at the
//! top), so every file is reached however large the tree. One scan of a drain at a time
//! (a per-drain try-lock); all I/O happens before the database writes, which are done in
//! transactions of at most [`BATCH`] files.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, DurationRound, SecondsFormat, Utc};
use postgres::Client;
use serde::Serialize;
use serde_json::json;

use crate::config::{DrainConfig, SourceConfig};
use crate::db::events::{record_event, Event, Outbox};
use crate::db::items::{self, SourceEnqueue};
use crate::db::sources::{self, FileRecord, HashProgress, KnownFile};
use crate::db::{advisory_unlock, drains::ensure_drain, source_scan_key, try_advisory_lock};
use crate::error::{Error, Result};
use crate::glob::{Glob, States};
use crate::hashing::{HashAllowance, Sha256State, BLOCK_BYTES};
use crate::model::{EventKind, ItemState};

/// Files written to the database per transaction, so row locks stay short.
pub const BATCH: usize = 1000;
/// Refused paths listed (with their reason) in a scan's report; all are counted.
pub const MAX_REFUSED_LISTED: usize = 20;
/// Deferred files listed in a scan's report; all are counted.
pub const MAX_DEFERRED_LISTED: usize = 20;
/// How much of a file is read at a time to hash it (a multiple of the SHA-256 block).
const HASH_CHUNK_BYTES: u64 = 1 << 20;

/// What one scan found and did.
#[derive(Debug, Clone, Serialize)]
pub struct ScanReport {
    pub drain: String,
    /// The source folder, symbolic links resolved.
    pub dir: String,
    /// `done`, or `lock_skipped` when another scan of the drain was running.
    pub status: &'static str,
    /// Matching regular files looked at.
    pub files: u64,
    /// Paths seen for the first time, enqueued.
    pub new: u64,
    /// Known files re-enqueued: their content changed, or they came back after their item
    /// was settled skipped_missing.
    pub changed: u64,
    /// Known files left alone (including touched files whose content is the same).
    pub unchanged: u64,
    /// Of those, files whose item named them in another folder (`source.dir` was
    /// changed): the same content, so the item now names this one and keeps its state.
    pub moved: u64,
    /// Known files found gone.
    pub missing: u64,
    /// Of those, pending items settled as skipped_missing.
    pub skipped_missing: u64,
    /// Files looked at again next scan: their item is running, they changed while being
    /// hashed, or the hash budget did not reach their end.
    pub deferred: u64,
    /// Of those, files the hash budget did not reach the end of.
    pub deferred_by_budget: u64,
    /// Paths refused: symbolic links resolving outside dir (or nowhere), names that
    /// cannot be keys, entries that cannot be stat'ed, unreadable files or folders.
    pub refused: u64,
    /// Files hashed: whole, or some way further (as far as the hash budget reached).
    pub hashed: u64,
    /// What the scan may spend on hashing; null for `scan --no-budget`.
    pub hash_budget: Option<HashBudget>,
    /// Bytes read to hash files.
    pub hashed_bytes: u64,
    /// Time spent hashing, by the clock (first read to last).
    pub hash_seconds: f64,
    /// The first deferred files, with why and how far their hashing got.
    pub deferred_files: Vec<Deferral>,
    /// The scan stopped at max_files_per_scan; the next one goes on after the last file.
    pub truncated: bool,
    /// Where this scan started (after the previous truncated scan's last file), if not
    /// at the top.
    pub resumed_after: Option<String>,
    /// The first refused paths and why.
    pub refused_paths: Vec<Refusal>,
    /// Why the scan failed (status `failed`; only in `supervise`, which goes on).
    pub error: Option<String>,
}

/// A scan's hash budget: `max_hash_bytes_per_scan` and `max_hash_seconds_per_scan`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HashBudget {
    pub max_bytes: u64,
    pub max_seconds: f64,
}

/// A file looked at again by the next scan.
#[derive(Debug, Clone, Serialize)]
pub struct Deferral {
    pub path: String,
    pub size: i64,
    /// How far its hash got (kept for the next scan when the budget stopped it).
    pub hashed_bytes: i64,
    /// `hash_budget`, `item_running` or `changed_while_hashing`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    pub path: String,
    pub reason: String,
}

impl ScanReport {
    fn new(drain: &str, dir: &Path, status: &'static str) -> ScanReport {
        ScanReport {
            drain: drain.to_string(),
            dir: dir.display().to_string(),
            status,
            files: 0,
            new: 0,
            changed: 0,
            unchanged: 0,
            moved: 0,
            missing: 0,
            skipped_missing: 0,
            deferred: 0,
            deferred_by_budget: 0,
            refused: 0,
            hashed: 0,
            hash_budget: None,
            hashed_bytes: 0,
            hash_seconds: 0.0,
            deferred_files: Vec::new(),
            truncated: false,
            resumed_after: None,
            refused_paths: Vec::new(),
            error: None,
        }
    }

    /// The report of a scan that could not be done.
    pub fn failed(drain: &DrainConfig, message: String) -> ScanReport {
        let dir = drain.source.as_ref().map(|source| source.dir.clone()).unwrap_or_default();
        let mut report = ScanReport::new(&drain.name, &dir, "failed");
        report.error = Some(message);
        report
    }

    /// Did the scan change the backlog?
    pub fn changed_anything(&self) -> bool {
        self.new + self.changed + self.moved + self.missing > 0
    }

    fn refuse(&mut self, path: String, reason: String) {
        self.refused += 1;
        if self.refused_paths.len() < MAX_REFUSED_LISTED {
            log::warn!("drain {}: source: refused {path}: {reason}", self.drain);
            self.refused_paths.push(Refusal { path, reason });
        } else if self.refused == MAX_REFUSED_LISTED as u64 + 1 {
            log::warn!("drain {}: source: more paths refused; the scan report counts them all", self.drain);
        }
    }

    /// Refuse an entry whose `stat` failed — unless it vanished meanwhile, which is not
    /// a refusal (a recorded file that is gone is noticed as missing).
    fn refuse_unstatable(&mut self, path: String, error: &std::io::Error) {
        if error.kind() == std::io::ErrorKind::NotFound {
            log::debug!("drain {}: source: {path} vanished during the scan", self.drain);
            return;
        }
        self.refuse(path, format!("cannot stat: {error}"));
    }

    fn defer(&mut self, deferral: Deferral) {
        self.deferred += 1;
        if deferral.reason == DEFERRED_BY_BUDGET {
            self.deferred_by_budget += 1;
        }
        if self.deferred_files.len() < MAX_DEFERRED_LISTED {
            log::info!(
                "drain {}: source: deferred {} ({}, {} of {} bytes hashed)",
                self.drain,
                deferral.path,
                deferral.reason,
                deferral.hashed_bytes,
                deferral.size
            );
            self.deferred_files.push(deferral);
        }
    }

    /// What `scan` and `supervise` print under the summary line: where a truncated scan
    /// stopped, a spent hash budget and how to hash the rest at once, then the deferred
    /// and refused files.
    pub fn detail_lines(&self) -> String {
        let mut lines = String::new();
        if self.truncated {
            lines.push_str(&format!(
                "  stopped at max_files_per_scan ({}); the next scan goes on from there\n",
                self.files
            ));
        }
        if let Some(budget) = self.hash_budget.filter(|_| self.deferred_by_budget > 0) {
            lines.push_str(&format!(
                "  the hash budget (max_hash_bytes_per_scan {}, max_hash_seconds_per_scan {}) did not reach \
                 the end of {}; `{}` hashes the rest now\n",
                budget.max_bytes,
                crate::duration::format_duration(std::time::Duration::from_secs_f64(budget.max_seconds)),
                crate::output::counted(self.deferred_by_budget, "file"),
                crate::commands::items::command_for_drain("drainctl scan", &self.drain, "--no-budget")
            ));
        }
        lines.push_str(&self.deferred_lines());
        lines.push_str(&self.refused_lines());
        lines
    }

    /// The files deferred by the hash budget, one indented line each.
    fn deferred_lines(&self) -> String {
        let mut lines = String::new();
        for deferral in self.deferred_files.iter().filter(|deferral| deferral.reason == DEFERRED_BY_BUDGET) {
            lines.push_str(&format!(
                "  deferred {}: the hash budget did not reach its end ({} of {} bytes hashed; the next scan \
                 goes on)\n",
                crate::output::escape_controls(&deferral.path),
                deferral.hashed_bytes,
                deferral.size
            ));
        }
        let listed = self.deferred_files.iter().filter(|d| d.reason == DEFERRED_BY_BUDGET).count() as u64;
        if self.deferred_by_budget > listed {
            lines.push_str(&format!(
                "  … and {} more deferred by the hash budget\n",
                self.deferred_by_budget - listed
            ));
        }
        lines
    }

    /// The refused paths listed, one indented line each, then how many more there are.
    fn refused_lines(&self) -> String {
        let mut lines = String::new();
        for refusal in &self.refused_paths {
            // One line each: a tab or line break in a name is shown escaped, as in logs.
            let path = crate::output::escape_controls(&refusal.path);
            lines.push_str(&format!("  refused {path}: {}\n", refusal.reason));
        }
        if self.refused > self.refused_paths.len() as u64 {
            lines.push_str(&format!(
                "  … and {} more refused\n",
                self.refused - self.refused_paths.len() as u64
            ));
        }
        lines
    }

    /// One line for humans, without the drain's name.
    pub fn summary(&self) -> String {
        if self.status == "lock_skipped" {
            return "lock_skipped: another scan of this drain is running".to_string();
        }
        if let Some(error) = &self.error {
            return format!("FAILED: {error}");
        }
        format!(
            "{} new, {} changed, {} unchanged{}, {} missing ({} skipped), {} deferred, {} refused; \
             {} hashed of {} files ({} bytes{}){}",
            self.new,
            self.changed,
            self.unchanged,
            if self.moved > 0 { format!(" ({} in the new folder)", self.moved) } else { String::new() },
            self.missing,
            self.skipped_missing,
            self.deferred,
            self.refused,
            self.hashed,
            self.files,
            self.hashed_bytes,
            match self.hash_budget {
                Some(budget) => format!(" of a {}-byte budget", budget.max_bytes),
                None => String::new(),
            },
            if self.truncated { " (truncated)" } else { "" }
        )
    }
}

/// The `reason` of a file deferred because the hash budget did not reach its end.
pub const DEFERRED_BY_BUDGET: &str = "hash_budget";

/// The `reason` of a file deferred because drainctl was asked to stop (SIGTERM, SIGINT,
/// SIGHUP) before its hash was done: its progress is kept as for the budget.
pub const DEFERRED_BY_INTERRUPTION: &str = "interrupted";

/// Why a hash stopped short of a file's end: the budget, or a request to stop.
fn hash_stopped_reason() -> &'static str {
    if crate::worker::signals::termination_requested() {
        DEFERRED_BY_INTERRUPTION
    } else {
        DEFERRED_BY_BUDGET
    }
}

/// Scan the source of `drain` (an error when it has none), within the source's hash
/// budget when `is_bounded` (`scan --no-budget` is not). `clock` times the hashing.
pub fn scan(
    client: &mut Client,
    outbox: &Outbox,
    drain: &DrainConfig,
    clock: &crate::clock::Clock,
    is_bounded: bool,
) -> Result<ScanReport> {
    let now = clock.now();
    let source = drain.source.as_ref().ok_or_else(|| {
        Error::Usage(format!(
            "drain {} has no source; add `source = {{ dir = \"...\", glob = \"*/*.jsonl\" }}` to its [[drain]] table",
            drain.name
        ))
    })?;
    let root = resolve_root(drain, source)?;
    let controls = ensure_drain(client, &drain.name, now)?;
    let key = source_scan_key(controls.id);
    if !try_advisory_lock(client, key)? {
        return Ok(ScanReport::new(&drain.name, &root, "lock_skipped"));
    }
    let read_clock = || clock.now();
    let mut allowance = if is_bounded {
        HashAllowance::new(
            Some(source.max_hash_bytes_per_scan),
            Some(source.max_hash_seconds_per_scan),
            &read_clock,
        )
    } else {
        HashAllowance::new(None, None, &read_clock)
    };
    let outcome = scan_locked(client, outbox, drain, source, &root, &mut allowance, clock);
    let unlocked = advisory_unlock(client, key);
    let report = outcome?;
    unlocked?;
    Ok(report)
}

/// The source folder with symbolic links resolved, or a configuration error (`doctor`
/// checks it with this too).
pub(crate) fn resolve_root(drain: &DrainConfig, source: &SourceConfig) -> Result<PathBuf> {
    let problem = |what: String| {
        Error::Config(format!(
            "drain {}: source dir {} {what}; create it or fix source.dir",
            drain.name,
            source.dir.display()
        ))
    };
    // Another user's link on the way chooses what the drain reads, and its workers send on
    // (links inside the folder that lead out of it are refused as each file is met). The
    // folder is held open and checked, and its place is the one the kernel names for what
    // is held: a folder on the way swapped after the check is not read.
    let held = crate::pinned_folder::PinnedFolder::open(&source.dir).map_err(|refusal| match refusal {
        crate::pinned_folder::Refusal::ForeignLink { link, owner } => Error::Config(format!(
            "drain {}: {}, who chooses what the drain reads; make the link yours or root's, or point source.dir \
             at the folder itself",
            drain.name,
            crate::ownership::reached_through("source dir", &source.dir, &link, owner)
        )),
        crate::pinned_folder::Refusal::Io(error) if error.kind() == std::io::ErrorKind::NotFound => {
            problem("does not exist".to_string())
        }
        crate::pinned_folder::Refusal::Io(error) if error.raw_os_error() == Some(libc::ENOTDIR) => {
            problem("is not a folder".to_string())
        }
        crate::pinned_folder::Refusal::Io(error) => problem(format!("cannot be resolved: {error}")),
        replaced => replaced.into_error("source dir", &source.dir, "source.dir", |error| {
            Error::Config(format!("source dir {}: {error}", source.dir.display()))
        }),
    })?;
    let root = match held.reached() {
        Some(reached) => reached,
        None => {
            fs::canonicalize(&source.dir).map_err(|error| problem(format!("cannot be resolved: {error}")))?
        }
    };
    if !root.is_dir() {
        return Err(problem("is not a folder".to_string()));
    }
    if root.to_str().is_none() {
        // It exists: "create it" would be no fix (a link in it led to such a folder).
        return Err(Error::Config(format!(
            "drain {}: source dir {} resolves to {}, whose name is not valid UTF-8 (item keys are): rename that \
             folder, or point source.dir at another",
            drain.name,
            source.dir.display(),
            root.to_string_lossy()
        )));
    }
    Ok(root)
}

/// What a scan decided about one file, before the database writes.
enum Plan {
    Enqueue {
        is_new: bool,
        file: Hashed,
    },
    /// Same content: record the new mtime (and that it is present again).
    Touched(Hashed),
    /// Same content as the file its item names in another folder: the item names this
    /// one from now on.
    Moved(Hashed),
    Unchanged,
    /// Looked at again by the next scan; what to do with its saved hashing progress.
    Deferred(Deferral, ProgressChange),
    /// Could not be read, or its key is an item enqueued by hand; already counted as
    /// refused.
    Refused,
    /// A recorded path that is no longer a usable file, and why ("vanished", or what it
    /// is now: see [`unusable_file`]).
    Missing(String, String),
    /// Drop the hashing progress kept for a path that is gone.
    ForgetProgress(String),
}

struct Hashed {
    key: String,
    size: i64,
    mtime: DateTime<Utc>,
    sha256: String,
    /// A previous scan left hashing progress for it, now no longer needed.
    had_progress: bool,
}

/// What becomes of a deferred file's row in `source_hash_progress`.
enum ProgressChange {
    Keep,
    Save(HashProgress),
    Forget,
}

fn scan_locked(
    client: &mut Client,
    outbox: &Outbox,
    drain: &DrainConfig,
    source: &SourceConfig,
    root: &Path,
    allowance: &mut HashAllowance,
    clock: &crate::clock::Clock,
) -> Result<ScanReport> {
    let mut report = ScanReport::new(&drain.name, root, "done");
    // Before the event is recorded, which carries it.
    report.hash_budget = allowance
        .limits()
        .map(|(max_bytes, max_time)| HashBudget { max_bytes, max_seconds: max_time.as_secs_f64() });
    let resume_after = sources::resume_point(client, &drain.name)?;
    report.resumed_after = resume_after.clone();
    let after: Option<Vec<String>> = resume_after.as_deref().map(components);

    let found = find_files(drain, source, root, &after, &mut report)?;
    let plans = plan_files(client, drain, root, &found, &after, allowance, &mut report)?;
    report.hashed_bytes = allowance.spent_bytes();
    report.hash_seconds = crate::duration::to_milliseconds(allowance.elapsed().as_secs_f64());
    // Items and the event are dated when they are written, after the hashing (which may
    // take `max_hash_seconds_per_scan`, or minutes with `--no-budget`): not before the
    // runs and events that came meanwhile.
    let now = clock.now();
    apply_plans(client, drain, root, plans, &mut report, now)?;
    finish_scan(client, outbox, drain, &found, &report, now)?;
    Ok(report)
}

/// Walk the source folder from where the previous scan stopped: the files the glob
/// matches, at most `max_files_per_scan` of them.
fn find_files(
    drain: &DrainConfig,
    source: &SourceConfig,
    root: &Path,
    after: &Option<Vec<String>>,
    report: &mut ScanReport,
) -> Result<Vec<Candidate>> {
    let mut walker = Walker {
        glob: &source.glob,
        root,
        after: after.clone(),
        limit: source.max_files_per_scan as usize,
        found: Vec::new(),
        report,
    };
    let start = source.glob.start();
    if let Err(error) = walker.walk(root, &mut Vec::new(), &start) {
        return Err(Error::Config(format!(
            "drain {}: cannot read source dir {}: {error}; fix its permissions or source.dir",
            drain.name,
            root.display()
        )));
    }
    let found = std::mem::take(&mut walker.found);
    report.files = found.len() as u64;
    Ok(found)
}

/// Decide about every file found, then about the recorded files the walk did not see.
fn plan_files(
    client: &mut Client,
    drain: &DrainConfig,
    root: &Path,
    found: &[Candidate],
    after: &Option<Vec<String>>,
    allowance: &mut HashAllowance,
    report: &mut ScanReport,
) -> Result<Vec<Plan>> {
    // What the database knows about the files found.
    let mut known: HashMap<String, KnownFile> = HashMap::new();
    for chunk in found.chunks(BATCH) {
        let keys: Vec<String> = chunk.iter().map(|file| file.key.clone()).collect();
        for mut file in sources::known_files(client, &drain.name, &keys)? {
            let here = format!("{}/{}", root.to_str().unwrap_or_default(), file.path);
            // Its item names the file of this key in another folder. `item_path` is only
            // that of an item whose payload is the folder's: one enqueued by hand or given
            // another payload by `enqueue --replace` is left alone (docs/operations.md,
            // "Items enqueued beside the folder's").
            file.moved = file.item_path.as_ref().is_some_and(|path| *path != here);
            known.insert(file.path.clone(), file);
        }
    }

    // Files new to the scans whose key an item enqueued by hand already has, and changed
    // files whose item `enqueue --replace` made the operator's: refused before they are
    // hashed, not hashed again by every scan only to be refused.
    let mut taken: HashSet<String> = HashSet::new();
    for chunk in found.chunks(BATCH) {
        let (unknown, changed): (Vec<&Candidate>, Vec<&Candidate>) = chunk
            .iter()
            .filter(|file| needs_hashing(file, known.get(&file.key)))
            .partition(|file| !known.contains_key(&file.key));
        let keys =
            |files: Vec<&Candidate>| files.into_iter().map(|file| file.key.clone()).collect::<Vec<_>>();
        let (unknown, changed) = (keys(unknown), keys(changed));
        if !unknown.is_empty() {
            taken.extend(items::existing_keys(client, &drain.name, &unknown)?);
        }
        if !changed.is_empty() {
            taken.extend(items::operators_keys(client, &drain.name, &changed)?);
        }
    }

    let progress: HashMap<String, HashProgress> = sources::hash_progress(client, &drain.name)?
        .into_iter()
        .map(|progress| (progress.path.clone(), progress))
        .collect();

    // The files to hash go smallest rest first (ties in walk order), so a large file takes
    // only what the others leave of the budget and never holds them up.
    let mut plans = Vec::with_capacity(found.len());
    let mut to_hash = Vec::new();
    for file in found {
        let known_file = known.get(&file.key);
        if taken.contains(&file.key) {
            report.refuse(file.key.clone(), KEY_TAKEN.to_string());
            plans.push(Plan::Refused);
            // Hashed part-way before its item became the operator's: never needed again.
            if progress.contains_key(&file.key) {
                plans.push(Plan::ForgetProgress(file.key.clone()));
            }
        } else if needs_hashing(file, known_file) {
            let done = resume_point_of(file, progress.get(&file.key)).map_or(0, |p| p.hashed_bytes);
            to_hash.push((file.size.saturating_sub(done), plans.len(), file));
            plans.push(Plan::Unchanged);
        } else {
            plans.push(plan_file(file, known_file, None, allowance, report));
        }
    }
    to_hash.sort_by_key(|(rest, index, _)| (*rest, *index));
    for (_, index, file) in to_hash {
        plans[index] = plan_file(file, known.get(&file.key), progress.get(&file.key), allowance, report);
    }

    // Recorded files this scan did not see: gone (in the stretch it covered), or no longer
    // matching a narrowed `glob` (anywhere) — both settled as missing.
    let seen: HashSet<&str> = found.iter().map(|file| file.key.as_str()).collect();
    let end: Option<Vec<String>> =
        if report.truncated { found.last().map(|file| file.components.clone()) } else { None };
    if found.is_empty() && is_empty_folder(root) {
        let recorded = sources::count_present(client, &drain.name)?;
        if recorded > 0 {
            // Every recorded file gone at once, and the folder left without a single entry:
            // more likely a share or disk that is not mounted than a deliberate clean-out.
            report.refuse(".".to_string(), empty_folder_reason(recorded));
            return Ok(plans);
        }
    }
    // At most `max_files_per_scan` settled per scan, as many as it finds: the rest are
    // caught by the next scans (or at their claim), and no pass is held for long. The
    // recorded paths stream by: memory does not grow with the files recorded.
    let source = drain.source.as_ref();
    let mut missing_left = source.map_or(usize::MAX, |source| source.max_files_per_scan as usize);
    sources::each_present_path(client, &drain.name, |path| {
        if missing_left == 0 {
            return ControlFlow::Break(());
        }
        if seen.contains(path.as_str()) {
            return ControlFlow::Continue(());
        }
        let parts = components(&path);
        let is_in_stretch =
            after.as_ref().is_none_or(|after| parts > *after) && end.as_ref().is_none_or(|end| parts <= *end);
        // A file `glob` no longer matches (it was narrowed) is one the operator excluded:
        // settled as gone, wherever the scan's stretch is; taken again if `glob` is widened.
        let why = match source.map(|source| (source.glob.matches(&path), source)) {
            Some((false, source)) => Some(not_matching(source)),
            _ if is_in_stretch => unusable_file(root, &root.join(&path)),
            _ => None,
        };
        if let Some(why) = why {
            plans.push(Plan::Missing(path, why));
            missing_left -= 1;
        }
        ControlFlow::Continue(())
    })?;
    // Progress kept for a file that is gone or no longer matches: never needed again.
    for path in progress.keys().filter(|path| !seen.contains(path.as_str())) {
        if is_gone(&root.join(path)) {
            plans.push(Plan::ForgetProgress(path.clone()));
        }
    }
    Ok(plans)
}

/// Write the plans, a transaction per batch.
fn apply_plans(
    client: &mut Client,
    drain: &DrainConfig,
    root: &Path,
    plans: Vec<Plan>,
    report: &mut ScanReport,
    now: DateTime<Utc>,
) -> Result<()> {
    let root_text = root.to_str().unwrap_or_default().to_string();
    let mut pending = plans.into_iter().peekable();
    while pending.peek().is_some() {
        let mut transaction = client.transaction()?;
        for plan in pending.by_ref().take(BATCH) {
            apply(&mut transaction, drain, &root_text, plan, report, now)?;
        }
        transaction.commit()?;
    }
    Ok(())
}

/// Record where the next scan resumes and, when the scan changed anything, a
/// `source_scanned` event.
fn finish_scan(
    client: &mut Client,
    outbox: &Outbox,
    drain: &DrainConfig,
    found: &[Candidate],
    report: &ScanReport,
    now: DateTime<Utc>,
) -> Result<()> {
    let next = if report.truncated { found.last().map(|file| file.key.as_str()) } else { None };
    let mut transaction = client.transaction()?;
    sources::set_resume_point(&mut transaction, &drain.name, next, now)?;
    // A file the budget deferred is recorded too, so a pass that could not finish it
    // leaves a trace (docs/operations.md).
    let event = (report.changed_anything() || report.deferred_by_budget > 0).then(|| {
        Event::new(
            EventKind::SourceScanned,
            format!(
                "scan of {}: {} new, {} changed, {} missing ({} skipped), {} deferred by the hash budget",
                drain.name,
                report.new,
                report.changed,
                report.missing,
                report.skipped_missing,
                report.deferred_by_budget
            ),
        )
        .drain(&drain.name)
        .data(json!({
            "new": report.new,
            "changed": report.changed,
            "unchanged": report.unchanged,
            "moved": report.moved,
            "missing": report.missing,
            "skipped_missing": report.skipped_missing,
            "deferred": report.deferred,
            "deferred_by_budget": report.deferred_by_budget,
            "deferred_files": report.deferred_files,
            "refused": report.refused,
            "hashed": report.hashed,
            "hashed_bytes": report.hashed_bytes,
            "hash_budget": report.hash_budget,
            "truncated": report.truncated,
        }))
    });
    if let Some(event) = &event {
        record_event(&mut transaction, outbox, event, now)?;
    }
    transaction.commit()?;
    Ok(())
}

/// Must the file be read: it is new, its size or mtime changed, or its item names a file
/// of the same key in another folder (`source.dir` was changed; the new folder's file
/// may differ whatever its size and mtime)?
fn needs_hashing(file: &Candidate, known: Option<&KnownFile>) -> bool {
    !known.is_some_and(|k| k.size == file.size && k.mtime == file.mtime && !k.moved)
}

/// The saved progress of `file`, if it is for this very file as the walk saw it.
fn resume_point_of<'p>(file: &Candidate, saved: Option<&'p HashProgress>) -> Option<&'p HashProgress> {
    saved.filter(|p| {
        p.device as u64 == file.device
            && p.inode as u64 == file.inode
            && p.size == file.size
            && p.mtime == file.mtime
            && p.hashed_bytes <= p.size
    })
}

/// Decide about one found file, hashing it (as far as the allowance reaches) when needed.
fn plan_file(
    file: &Candidate,
    known: Option<&KnownFile>,
    saved: Option<&HashProgress>,
    allowance: &mut HashAllowance,
    report: &mut ScanReport,
) -> Plan {
    let is_same_metadata = !needs_hashing(file, known);
    // The precheck: same size and mtime, present last time — not opened at all. Not for
    // a file whose item was settled `skipped_missing` (it went away and came back between
    // two scans, a pass saw it gone): it is enqueued again below.
    if is_same_metadata
        && known.is_some_and(|k| k.missing_at.is_none() && k.item_state != Some(ItemState::SkippedMissing))
    {
        return Plan::Unchanged;
    }
    let hashed = match known {
        Some(k) if is_same_metadata => Hashed {
            key: file.key.clone(),
            size: file.size,
            mtime: file.mtime,
            sha256: k.sha256.clone(),
            had_progress: false,
        },
        _ => {
            let resume = resume_point_of(file, saved);
            let deferral = |reason, hashed_bytes| Deferral {
                path: file.key.clone(),
                size: file.size,
                hashed_bytes,
                reason,
            };
            if allowance.is_exhausted() {
                let hashed_bytes = resume.map_or(0, |p| p.hashed_bytes);
                return Plan::Deferred(deferral(hash_stopped_reason(), hashed_bytes), ProgressChange::Keep);
            }
            let forget = if saved.is_some() { ProgressChange::Forget } else { ProgressChange::Keep };
            let resumed_at = resume.map_or(0, |p| p.hashed_bytes);
            match hash_file(file, resume, allowance) {
                Ok(HashStep::Done(mut hashed)) => {
                    report.hashed += 1;
                    hashed.had_progress = saved.is_some();
                    hashed
                }
                Ok(HashStep::Unfinished(progress)) => {
                    let hashed_bytes = progress.hashed_bytes;
                    // Hashed only as far as it got: what is left of the budget may be
                    // less than one block of the hash, which is kept whole.
                    if hashed_bytes > resumed_at {
                        report.hashed += 1;
                    }
                    let change = if hashed_bytes > 0 { ProgressChange::Save(progress) } else { forget };
                    return Plan::Deferred(deferral(hash_stopped_reason(), hashed_bytes), change);
                }
                Ok(HashStep::Changed) => {
                    return Plan::Deferred(deferral("changed_while_hashing", 0), forget);
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Plan::Deferred(deferral("changed_while_hashing", 0), forget);
                }
                Err(error) => {
                    report.refuse(file.key.clone(), format!("cannot read: {error}"));
                    return Plan::Refused;
                }
            }
        }
    };
    match known {
        None => Plan::Enqueue { is_new: true, file: hashed },
        Some(k) if k.sha256 != hashed.sha256 => Plan::Enqueue { is_new: false, file: hashed },
        // It came back after its item was settled without running.
        Some(k) if k.item_state == Some(ItemState::SkippedMissing) => {
            Plan::Enqueue { is_new: false, file: hashed }
        }
        Some(k) if k.moved => Plan::Moved(hashed),
        Some(_) => Plan::Touched(hashed),
    }
}

/// Why a new file whose key an item enqueued by hand has is refused.
const KEY_TAKEN: &str =
    "its key is an item enqueued by hand (or given another payload by enqueue --replace), \
     not this folder's: every scan refuses the file while that item is there; rename the file to enqueue it";

fn apply(
    client: &mut postgres::Transaction<'_>,
    drain: &DrainConfig,
    root: &str,
    plan: Plan,
    report: &mut ScanReport,
    now: DateTime<Utc>,
) -> Result<()> {
    match plan {
        Plan::Unchanged => report.unchanged += 1,
        Plan::Deferred(deferral, change) => {
            match change {
                ProgressChange::Keep => {}
                ProgressChange::Save(progress) => {
                    sources::save_hash_progress(client, &drain.name, &progress, now)?
                }
                ProgressChange::Forget => sources::forget_hash_progress(client, &drain.name, &deferral.path)?,
            }
            report.defer(deferral);
        }
        Plan::ForgetProgress(path) => sources::forget_hash_progress(client, &drain.name, &path)?,
        Plan::Refused => {}
        Plan::Touched(file) => {
            if file.had_progress {
                sources::forget_hash_progress(client, &drain.name, &file.key)?;
            }
            sources::record_file(client, &drain.name, &record(&file), false, now)?;
            report.unchanged += 1;
        }
        Plan::Moved(file) => {
            if file.had_progress {
                sources::forget_hash_progress(client, &drain.name, &file.key)?;
            }
            // A running item's worker reads the old file: the next scan repoints it.
            if items::repoint_source_item(client, &drain.name, &file.key, &payload_of(root, &file))? {
                sources::record_file(client, &drain.name, &record(&file), false, now)?;
                report.moved += 1;
            }
            report.unchanged += 1;
        }
        Plan::Enqueue { is_new, file } => {
            let payload = payload_of(root, &file);
            match items::enqueue_source_item(client, &drain.name, &file.key, &payload, is_new, now)? {
                SourceEnqueue::Enqueued => {
                    // Its saved progress is spent only once the change is enqueued: while its
                    // item runs the next scans resume from it, not from the file's start.
                    if file.had_progress {
                        sources::forget_hash_progress(client, &drain.name, &file.key)?;
                    }
                    sources::record_file(client, &drain.name, &record(&file), true, now)?;
                    if is_new {
                        report.new += 1;
                    } else {
                        report.changed += 1;
                    }
                }
                // Its item is running: leave the recorded state as it was, so the next
                // scan sees the change again and enqueues it then.
                SourceEnqueue::Running => report.defer(Deferral {
                    path: file.key.clone(),
                    size: file.size,
                    hashed_bytes: file.size,
                    reason: "item_running",
                }),
                // Not recorded either: refused again by every scan while that item is there.
                // Enqueued by hand since the scan looked (see `plan_files`).
                SourceEnqueue::KeyTaken => report.refuse(file.key.clone(), KEY_TAKEN.to_string()),
            }
        }
        Plan::Missing(path, why) => {
            sources::mark_missing(client, &drain.name, &path, now)?;
            let note = format!("source file {root}/{path} {why} before the item was done");
            if items::settle_skipped_missing(client, &drain.name, &path, &note, now)? {
                report.skipped_missing += 1;
            }
            report.missing += 1;
        }
    }
    Ok(())
}

/// The payload of the item of a file of the source folder `root`.
fn payload_of(root: &str, file: &Hashed) -> serde_json::Value {
    json!({
        "path": format!("{root}/{}", file.key),
        "size": file.size,
        "mtime": file.mtime.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "sha256": file.sha256,
    })
}

fn record(file: &Hashed) -> FileRecord<'_> {
    FileRecord { path: &file.key, size: file.size, mtime: file.mtime, sha256: &file.sha256 }
}

/// A path's `/`-separated parts, compared part by part: the order of the walk.
fn components(path: &str) -> Vec<String> {
    path.split('/').map(str::to_string).collect()
}

/// Why the recorded file at `path`, under the source folder `root` (canonical), can no
/// longer be an item's file: nothing is there any more (it, or a folder above it, is
/// gone; a link swapped in that leads nowhere), or what is there is not a regular file
/// inside `root` (a link swapped in that leads out of it, a folder, a FIFO). None while
/// it is one, and when that cannot be told (a folder above it cannot be searched): such a
/// file is never settled on a guess (docs/operations.md, "Source folders").
pub fn unusable_file(root: &Path, path: &Path) -> Option<String> {
    match fs::canonicalize(path) {
        Err(error)
            if error.kind() == std::io::ErrorKind::NotFound
                || error.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Some("vanished".to_string())
        }
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            Some(format!("is a symbolic link that resolves to nothing: {error}"))
        }
        Err(_) => None,
        Ok(target) if !target.starts_with(root) => Some(match fs::symlink_metadata(path) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                format!("is a symbolic link that resolves outside dir, to {}", target.display())
            }
            // The folder itself moved (`dir` a link pointed elsewhere since the scan).
            _ => format!("is no longer inside dir, which now resolves to {}", root.display()),
        }),
        Ok(target) => match fs::metadata(&target) {
            Ok(metadata) if !metadata.is_file() => Some("is no longer a regular file".to_string()),
            _ => None,
        },
    }
}

/// Why a recorded file of `source` is no longer its item's: `glob` no longer matches it.
pub fn not_matching(source: &crate::config::SourceConfig) -> String {
    format!("no longer matches the source's glob {:?} (it was changed)", source.glob.as_str())
}

/// Whether a scan of the source folder `root` (canonical) would take the file of `key`
/// as the folder's: a regular file this user may read, reached through no link (the walk
/// follows none), matching `glob` — so that an item waiting for the scan to repoint it
/// (`Pass::wait_for_the_scan`) is not kept waiting for a file no scan will ever take.
pub fn will_be_scanned(root: &Path, source: &crate::config::SourceConfig, key: &str) -> bool {
    let path = root.join(key);
    source.glob.matches(key)
        && unusable_file(root, &path).is_none()
        && fs::canonicalize(&path).is_ok_and(|real| real == path)
        && fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .is_ok()
}

/// What a file type that is neither a regular file nor a folder is, for a refusal.
fn kind_of(file_type: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

/// Whether the source folder has no entry at all (not even one the glob skips).
pub fn is_empty_folder(root: &Path) -> bool {
    fs::read_dir(root).is_ok_and(|mut entries| entries.next().is_none())
}

/// Why nothing is settled missing in an empty folder that had `recorded` files.
pub fn empty_folder_reason(recorded: i64) -> String {
    format!(
        "the folder is empty, though {recorded} file(s) were recorded in it: none is settled missing — \
         is it mounted? (after a deliberate clean-out, any entry in it, such as a .keep file, lets the \
         scan settle them)"
    )
}

/// Is nothing at `path` any more (it, or a folder above it, is gone)?
fn is_gone(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(_) => false,
        Err(error) => {
            error.kind() == std::io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ENOTDIR)
        }
    }
}

/// A file's mtime as the database keeps it: to the microsecond.
fn mtime_of(metadata: &fs::Metadata) -> DateTime<Utc> {
    let at = metadata.modified().map(DateTime::<Utc>::from).unwrap_or(DateTime::UNIX_EPOCH);
    at.duration_trunc(chrono::Duration::microseconds(1)).unwrap_or(at)
}

/// A matching regular file the walk found.
struct Candidate {
    key: String,
    components: Vec<String>,
    /// What to open: the path itself, or the checked target of a symbolic link.
    open_path: PathBuf,
    /// The file the walk checked; a different one at open time is not read.
    device: u64,
    inode: u64,
    size: i64,
    mtime: DateTime<Utc>,
}

/// How far hashing a file got.
enum HashStep {
    Done(Hashed),
    /// The allowance ran out first: where to go on from.
    Unfinished(HashProgress),
    /// It is no longer the file the walk saw, or it changed while being read (it is looked
    /// at again next scan).
    Changed,
}

/// Hash a found file, from `resume` when a previous scan got that far, as far as the
/// allowance reaches.
fn hash_file(
    file: &Candidate,
    resume: Option<&HashProgress>,
    allowance: &mut HashAllowance,
) -> std::io::Result<HashStep> {
    let mut handle = fs::OpenOptions::new()
        .read(true)
        // Never follow a link swapped in since the walk; never block on a FIFO.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&file.open_path)?;
    let before = handle.metadata()?;
    if !before.is_file() || before.dev() != file.device || before.ino() != file.inode {
        return Ok(HashStep::Changed);
    }
    let size = before.len();
    let mtime = mtime_of(&before);
    let resume = resume.filter(|p| p.size as u64 == size && p.mtime == mtime);
    let mut state =
        resume.and_then(|p| Sha256State::from_bytes(&p.state, p.hashed_bytes as u64)).unwrap_or_default();
    let mut position = state.hashed_bytes();
    if position > 0 {
        handle.seek(SeekFrom::Start(position))?;
    }
    allowance.start();
    let mut buffer = vec![0u8; HASH_CHUNK_BYTES.min(size.saturating_sub(position)).max(1) as usize];
    let digest = loop {
        if allowance.is_out_of_time() {
            break None;
        }
        let rest = size - position;
        if rest <= HASH_CHUNK_BYTES && rest <= allowance.bytes_left() {
            // The end of the file: read it and finish.
            let read = read_full(&mut handle, &mut buffer[..rest as usize])?;
            allowance.spend(read as u64);
            if read as u64 != rest {
                return Ok(HashStep::Changed);
            }
            break Some(std::mem::take(&mut state).finish(&buffer[..read]));
        }
        // Whole blocks, never the last byte: the end is read by the branch above.
        let want = HASH_CHUNK_BYTES.min(allowance.bytes_left()).min(rest - 1) / BLOCK_BYTES * BLOCK_BYTES;
        if want == 0 {
            break None;
        }
        let read = read_full(&mut handle, &mut buffer[..want as usize])?;
        allowance.spend(read as u64);
        if read as u64 != want {
            return Ok(HashStep::Changed);
        }
        state.update_blocks(&buffer[..read]);
        position += want;
    };
    let after = handle.metadata()?;
    if after.len() != size || mtime_of(&after) != mtime {
        return Ok(HashStep::Changed);
    }
    Ok(match digest {
        Some(digest) => HashStep::Done(Hashed {
            key: file.key.clone(),
            size: size as i64,
            mtime,
            sha256: digest.iter().map(|byte| format!("{byte:02x}")).collect(),
            had_progress: false,
        }),
        None => HashStep::Unfinished(HashProgress {
            path: file.key.clone(),
            device: file.device as i64,
            inode: file.inode as i64,
            size: size as i64,
            mtime,
            hashed_bytes: state.hashed_bytes() as i64,
            state: state.to_bytes(),
        }),
    })
}

/// Read until `buffer` is full or the file ends; how many bytes were read.
fn read_full(handle: &mut fs::File, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match handle.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// The folder walk: sorted, pruned by the glob, resumable, bounded.
struct Walker<'a> {
    glob: &'a Glob,
    root: &'a Path,
    /// Skip everything up to and including this path (the previous scan's last file).
    after: Option<Vec<String>>,
    limit: usize,
    found: Vec<Candidate>,
    report: &'a mut ScanReport,
}

impl Walker<'_> {
    /// Walk `folder` (whose path below the root is `prefix`). Only the root's own read
    /// error is returned; a folder below it that cannot be read is refused. Returns
    /// true when the walk must stop (the limit was passed).
    fn walk(&mut self, folder: &Path, prefix: &mut Vec<String>, states: &States) -> std::io::Result<bool> {
        let entries = match fs::read_dir(folder) {
            Ok(entries) => entries,
            Err(error) if prefix.is_empty() => return Err(error),
            Err(error) => {
                self.report.refuse(prefix.join("/"), format!("cannot read folder: {error}"));
                return Ok(false);
            }
        };
        let mut listed = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => listed.push(entry),
                Err(error) => {
                    let folder = if prefix.is_empty() { ".".to_string() } else { prefix.join("/") };
                    self.report.refuse(folder, format!("cannot read an entry of the folder: {error}"));
                }
            }
        }
        let mut entries = listed;
        entries.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));
        for entry in entries {
            let name = entry.file_name();
            let lossy = name.to_string_lossy().into_owned();
            let next = self.glob.step(states, &lossy);
            let is_complete = self.glob.is_complete(&next);
            let can_go_deeper = self.glob.can_go_deeper(&next);
            if !is_complete && !can_go_deeper {
                continue;
            }
            prefix.push(lossy);
            let stop = self.visit(&entry, prefix, &next, is_complete, can_go_deeper);
            prefix.pop();
            if stop? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn visit(
        &mut self,
        entry: &fs::DirEntry,
        prefix: &mut Vec<String>,
        next: &States,
        is_complete: bool,
        can_go_deeper: bool,
    ) -> std::io::Result<bool> {
        // Already covered by the previous (truncated) scan?
        let is_file_done = self.after.as_ref().is_some_and(|after| *prefix <= *after);
        let is_folder_done = self
            .after
            .as_ref()
            .is_some_and(|after| prefix.as_slice() < &after[..prefix.len().min(after.len())]);
        let wants_file = is_complete && !is_file_done;
        let wants_folder = can_go_deeper && !is_folder_done;
        if !wants_file && !wants_folder {
            return Ok(false);
        }
        let key = prefix.join("/");
        let name = entry.file_name();
        if name.to_str().is_none() {
            self.report.refuse(key, "name is not valid UTF-8".to_string());
            return Ok(false);
        }
        if key.chars().any(char::is_control) {
            // The name as it is (JSON carries the raw text); human output and log lines
            // escape it.
            self.report.refuse(key, "name contains control characters".to_string());
            return Ok(false);
        }
        let file_type = match entry.file_type() {
            Ok(file_type) => file_type,
            Err(error) => {
                self.report.refuse_unstatable(key, &error);
                return Ok(false);
            }
        };
        let path = entry.path();
        if file_type.is_dir() {
            if wants_folder {
                return self.walk(&path, prefix, next);
            }
            return Ok(false);
        }
        if !wants_file {
            if file_type.is_symlink() {
                // A link to a folder is never followed; one that leaves dir is refused.
                if let Err(reason) = self.link_target(&path) {
                    self.report.refuse(key, reason);
                }
            }
            return Ok(false);
        }
        self.take_file(entry, prefix, key, file_type, path)
    }

    /// A file (or a link to one) the walk wants: found, unless it cannot be used; true
    /// when the limit was passed.
    fn take_file(
        &mut self,
        entry: &fs::DirEntry,
        prefix: &[String],
        key: String,
        file_type: fs::FileType,
        path: PathBuf,
    ) -> std::io::Result<bool> {
        let (open_path, metadata) = if file_type.is_symlink() {
            let target = match self.link_target(&path) {
                Ok(target) => target,
                Err(reason) => {
                    self.report.refuse(key, reason);
                    return Ok(false);
                }
            };
            match fs::metadata(&target) {
                Ok(metadata) if metadata.is_file() => (target, metadata),
                // A link to a folder is never walked (see above).
                Ok(metadata) if metadata.is_dir() => return Ok(false),
                Ok(metadata) => {
                    let what = kind_of(metadata.file_type());
                    self.report.refuse(key, format!("symbolic link to {what}, not a regular file"));
                    return Ok(false);
                }
                Err(error) => {
                    self.report.refuse_unstatable(key, &error);
                    return Ok(false);
                }
            }
        } else if file_type.is_file() {
            match entry.metadata() {
                Ok(metadata) => (path, metadata),
                Err(error) => {
                    self.report.refuse_unstatable(key, &error);
                    return Ok(false);
                }
            }
        } else {
            self.report.refuse(key, format!("{}, not a regular file", kind_of(file_type)));
            return Ok(false);
        };
        if key.len() > items::MAX_KEY_BYTES {
            self.report.refuse(key, format!("path is longer than {} bytes", items::MAX_KEY_BYTES));
            return Ok(false);
        }
        if self.found.len() >= self.limit {
            self.report.truncated = true;
            return Ok(true);
        }
        self.found.push(Candidate {
            components: prefix.to_vec(),
            key,
            open_path,
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.len() as i64,
            mtime: mtime_of(&metadata),
        });
        Ok(false)
    }

    /// Where a symbolic link leads, or why it may not be used: it resolves outside the
    /// root, or nowhere (dangling, a loop: the OS error says which).
    fn link_target(&self, link: &Path) -> std::result::Result<PathBuf, String> {
        match fs::canonicalize(link) {
            Err(error) => Err(format!("symbolic link that resolves to nothing: {error}")),
            Ok(target) if !target.starts_with(self.root) => {
                Err(format!("symbolic link resolves outside dir, to {}", target.display()))
            }
            Ok(target) => Ok(target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compare_part_by_part_as_the_walk_visits_them() {
        // "a/b" comes before "a.txt" in the walk ("a" < "a.txt"), though not byte-wise.
        assert!(components("a/b") < components("a.txt"));
        assert!(components("a/b") > components("a"));
        assert!(components("a/b/c") < components("a/c"));
    }

    #[test]
    fn a_missing_path_or_parent_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        assert!(!is_gone(&file));
        assert!(is_gone(&dir.path().join("g")));
        assert!(is_gone(&file.join("under-a-file")));
    }

    #[test]
    fn a_recorded_file_outside_a_folder_that_moved_is_not_called_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("r2"), dir.path().join("r3"));
        fs::create_dir_all(&old).unwrap();
        fs::create_dir_all(&new).unwrap();
        fs::write(old.join("b"), "x").unwrap();
        std::os::unix::fs::symlink(old.join("b"), new.join("link")).unwrap();
        let root = fs::canonicalize(&new).unwrap();
        let why = unusable_file(&root, &old.join("b")).unwrap();
        assert_eq!(why, format!("is no longer inside dir, which now resolves to {}", root.display()));
        let why = unusable_file(&root, &new.join("link")).unwrap();
        assert!(why.starts_with("is a symbolic link that resolves outside dir, to "), "{why}");
    }
}
