//! Retention (`drainctl prune`, and `supervise` once a day): remove history older than the
//! horizons of `[defaults] retention`, and nothing a live drain still needs.
//!
//! Finished runs (with their attempts) and supervisor passes older than `runs`, events
//! older than `events`, log files under `log_dir` not written to for `logs`, and — only
//! when `done_items` is set — done and skipped_missing items finished before it. A running
//! run, a run holding a running item or a staged result, the runs and attempts of items
//! that are pending, running or dead, the latest supervisor pass and the log of a running
//! run are never removed. Rows go in batches of [`BATCH`], each its own short transaction.
//! `--dry-run` counts with the same statements and removes nothing. `supervise` prunes at
//! most once a day ([`prune_if_due`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::Client;
use serde::Serialize;
use serde_json::json;

use crate::config::Config;
use crate::db::events::{record_event, Event, Outbox};
use crate::db::retention::{self, Batch};
use crate::error::{Error, Result};
use crate::model::EventKind;

/// Rows deleted per statement (and transaction).
pub const BATCH: i64 = 1000;
/// The `maintenance` task name of the prune.
const TASK: &str = "prune";

/// What a prune removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub runs_before: DateTime<Utc>,
    pub events_before: DateTime<Utc>,
    pub logs_before: DateTime<Utc>,
    pub done_items_before: Option<DateTime<Utc>>,
    pub runs: u64,
    pub attempts: u64,
    pub supervisor_passes: u64,
    pub events: u64,
    pub done_items: u64,
    pub log_files: u64,
}

impl PruneReport {
    fn removed_anything(&self) -> bool {
        self.runs + self.attempts + self.supervisor_passes + self.events + self.done_items + self.log_files
            > 0
    }

    /// One line for humans.
    pub fn summary(&self) -> String {
        use crate::output::counted as count;
        let done_items = match self.done_items_before {
            Some(_) => count(self.done_items, "done item"),
            None => "no done items (retention.done_items is not set)".to_string(),
        };
        format!(
            "{} {} ({}), {}, {}, {done_items}, {}",
            if self.dry_run { "would remove" } else { "removed" },
            count(self.runs, "run"),
            count(self.attempts, "attempt"),
            count(self.supervisor_passes, "supervisor pass"),
            count(self.events, "event"),
            count(self.log_files, "log file")
        )
    }
}

/// `drainctl prune`: [`prune`] at `now`; unless a dry run, it counts as the daily prune
/// `supervise` would otherwise do.
pub fn prune_now(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport> {
    let report = prune(client, outbox, config, now, dry_run)?;
    if !dry_run {
        retention::claim_task(client, TASK, now, now)?;
    }
    Ok(report)
}

/// How long after a prune that failed `supervise` tries again.
const RETRY_FAILED_PRUNE_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// Is the daily prune due at `now` (no claim made: `prune_if_due` makes it)?
pub fn is_due(client: &mut Client, now: DateTime<Utc>) -> Result<bool> {
    retention::is_task_due(client, TASK, due_if_before(now))
}

/// The daily prune is due when the last one ran at or before this.
fn due_if_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::days(1)
}

/// `supervise`'s daily prune: runs it when the last one (by `supervise` or `prune`) is at
/// least a day old, else returns None.
pub fn prune_if_due(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Option<PruneReport>> {
    let due_if_before = due_if_before(now);
    // Claimed as a prune that failed — due again an hour later —, and counted as the
    // day's only once it is done: a prune that failed or was stopped is not the day's, and
    // the first pass an hour later tries again (not every pass, as a lasting cause would
    // fail them all), also when the session it would have said so on is gone (before:
    // then the next prune was a day later) (docs/operations.md, "Retention").
    let claimed_at = due_if_before + RETRY_FAILED_PRUNE_AFTER;
    if !retention::claim_task(client, TASK, due_if_before, claimed_at)? {
        return Ok(None);
    }
    let pruned = prune(client, outbox, config, now, false)?;
    if let Err(error) = retention::count_task_as_run_at(client, TASK, claimed_at, now) {
        log::warn!(
            "could not count the prune as the day's; the next pass an hour later prunes again: {error}"
        );
    }
    Ok(Some(pruned))
}

/// Apply (or with `dry_run`, count) every retention horizon at `now`.
pub fn prune(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<PruneReport> {
    let retention = &config.defaults.retention;
    // A horizon too far back for the calendar keeps everything.
    let horizon = |length: Duration| crate::clock::earlier(now, length);
    // The attempts of the budget day are what `max_cost_per_day` sums: no horizon that
    // removes attempts reaches into it (docs/configuration.md, "Retention").
    let (day_start, _) = crate::usage::budget_day(now, config.defaults.timezone);
    let mut report = PruneReport {
        dry_run,
        runs_before: horizon(retention.runs).min(day_start),
        events_before: horizon(retention.events),
        logs_before: horizon(retention.logs),
        done_items_before: retention.done_items.map(horizon).map(|before| before.min(day_start)),
        runs: 0,
        attempts: 0,
        supervisor_passes: 0,
        events: 0,
        done_items: 0,
        log_files: 0,
    };
    // SIGTERM or SIGINT stops it between two batches (see `in_batches`), as a failed step
    // does: what was removed is recorded either way — and when the step failed for want
    // of the database, which takes the event with it, the error says it.
    let steps = prune_steps(client, config, dry_run, &mut report);
    // A signal that came once the last file was looked at cut nothing short: the prune
    // is done, not interrupted (before: said interrupted, and done again the next hour).
    let cut_short = matches!(steps, Ok(true));
    let steps = steps.map(|_| ());
    let removed = !dry_run && report.removed_anything();
    let recorded = if removed {
        let event = Event::new(EventKind::RetentionPruned, report.summary()).data(json!({
            "runs": report.runs,
            "attempts": report.attempts,
            "supervisor_passes": report.supervisor_passes,
            "events": report.events,
            "done_items": report.done_items,
            "log_files": report.log_files,
        }));
        record_event(client, outbox, &event, now)
    } else {
        Ok(())
    };
    match (steps, recorded) {
        // Everything removed, the session gone before the event could say so (before: the
        // line said only that what had not committed was rolled back).
        (Ok(()), Err(error)) if removed => {
            return Err(error.noted(&format!(
                "the prune had removed, and that stays removed: {} (no retention_pruned event could be recorded)",
                report.summary()
            )));
        }
        (Err(error), recorded) if removed => {
            let event = match recorded {
                Ok(()) => "recorded in its retention_pruned event",
                Err(error) => {
                    log::warn!("could not record the retention_pruned event: {}", error.display_scrubbed());
                    "no retention_pruned event could be recorded"
                }
            };
            return Err(error.noted(&format!(
                "the prune's batches before it committed, and stay: {} ({event})",
                report.summary()
            )));
        }
        (steps, recorded) => {
            recorded?;
            steps?;
        }
    }
    if let Some(signal) = crate::worker::signals::termination_signal().filter(|_| cut_short) {
        return Err(Error::Temporary(format!(
            "prune interrupted by {}: {}; the next prune goes on",
            crate::worker::signals::signal_name(signal),
            report.summary()
        )));
    }
    Ok(report)
}

/// The steps of [`prune`], in order, until one fails; `report` counts what the batches
/// committed before it, which stays removed. Whether SIGTERM or SIGINT cut one short (a
/// batch not run, or the log files not looked at).
fn prune_steps(
    client: &mut Client,
    config: &Config,
    dry_run: bool,
    report: &mut PruneReport,
) -> Result<bool> {
    let (runs_before, events_before) = (report.runs_before, report.events_before);
    let mut unrelated = 0;
    let mut cut_short = in_batches(dry_run, (&mut report.runs, &mut report.attempts), |limit, dry| {
        retention::prune_runs(client, runs_before, limit, dry)
    })?;
    cut_short |= in_batches(dry_run, (&mut report.supervisor_passes, &mut unrelated), |limit, dry| {
        retention::prune_supervisor_passes(client, runs_before, limit, dry)
    })?;
    if let Some(before) = report.done_items_before {
        cut_short |= in_batches(dry_run, (&mut report.done_items, &mut unrelated), |limit, dry| {
            retention::prune_done_items(client, before, limit, dry)
        })?;
    }
    cut_short |= in_batches(dry_run, (&mut report.events, &mut unrelated), |limit, dry| {
        retention::prune_events(client, events_before, limit, dry)
    })?;
    if crate::worker::signals::termination_signal().is_some() {
        return Ok(true);
    }
    let keep: Vec<PathBuf> = retention::running_log_paths(client)?.into_iter().map(PathBuf::from).collect();
    let (log_files, logs_cut_short) =
        prune_logs(&config.defaults.log_dir, report.logs_before, &keep, dry_run);
    report.log_files = log_files;
    Ok(cut_short || logs_cut_short)
}

/// Run `batch` until it deletes less than a full batch or SIGTERM/SIGINT arrived (a dry run counts everything in one
/// go); a batch that lost a deadlock is run again (docs/guarantees.md). Adds each
/// committed batch's rows and related rows to `counts` as it goes, so that a batch that
/// fails leaves the count of those before it. Whether the signal kept a batch from running.
fn in_batches(
    dry_run: bool,
    counts: (&mut u64, &mut u64),
    mut batch: impl FnMut(i64, bool) -> Result<Batch>,
) -> Result<bool> {
    let (rows, related) = counts;
    if dry_run {
        let counted = batch(i64::MAX, true)?;
        (*rows, *related) = (counted.candidates as u64, counted.related as u64);
        return Ok(false);
    }
    loop {
        // No batch starts once SIGTERM or SIGINT arrived.
        if crate::worker::signals::termination_signal().is_some() {
            return Ok(true);
        }
        // A batch that loses a deadlock with another command (an `enqueue --replace` of
        // the done items it deletes) was rolled back whole, and is run again.
        let done = crate::db::retry_conflicts(
            "this batch removed nothing (earlier batches stay removed); it is safe to prune again",
            || batch(BATCH, false),
        )?;
        *rows += done.deleted as u64;
        *related += done.related as u64;
        if done.deleted < BATCH {
            return Ok(false);
        }
    }
}

/// Remove (or count) the log files drainctl wrote — `log_dir/NAME/YYYYmmddTHHMMSSZ-PID.log`
/// — last modified before `before`, except those in `keep`. Other files are never touched.
/// A file that cannot be removed, and a folder that cannot be read (another user's, left
/// by an earlier deployment), is logged and left: retention must not stop in silence.
/// How many, and whether SIGTERM or SIGINT stopped it between two files.
fn prune_logs(log_dir: &Path, before: DateTime<Utc>, keep: &[PathBuf], dry_run: bool) -> (u64, bool) {
    use crate::pinned_folder::{PinnedFolder, Refusal};
    // Every folder is opened once and its files looked at and removed through it: another
    // user who may write a folder on the way and swaps it meanwhile (for a link, or a
    // folder of theirs) chooses nothing that is removed.
    let root = match PinnedFolder::open(log_dir) {
        Ok(root) => root,
        Err(Refusal::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => return (0, false),
        Err(refusal) => {
            let refused = refusal.into_error("log_dir", log_dir, "log_dir", |error| {
                crate::error::Error::Config(format!("cannot open log_dir {}: {error}", log_dir.display()))
            });
            log::warn!("prune: {refused}; its log files are kept");
            return (0, false);
        }
    };
    // Another user's folder at log_dir's name (swapped in, or left there) is not drainctl's.
    if let Err(refused) = root.metadata().map_err(|error| error.to_string()).and_then(|metadata| {
        use std::os::unix::fs::MetadataExt as _;
        let owner = metadata.uid();
        match owner == crate::ownership::effective_uid() || owner == 0 {
            true => Ok(()),
            false => Err(crate::ownership::foreign_owner(owner)),
        }
    }) {
        log::warn!("prune: log_dir {} {refused}; its log files are kept", log_dir.display());
        return (0, false);
    }
    let folders = match root.names() {
        Ok(folders) => folders,
        Err(error) => {
            log::warn!("prune: cannot read log_dir {}: {error}; its log files are kept", log_dir.display());
            return (0, false);
        }
    };
    let mut removed = 0;
    for name in folders {
        // A link or anything but a folder is no drain's log folder.
        let Ok(folder) = root.subfolder(&name) else { continue };
        let shown = log_dir.join(&name);
        let held = folder.metadata().map_err(|error| error.to_string());
        if let Err(refused) = held.and_then(|metadata| {
            crate::drain::log_file::refuse_others_folder(&shown, &metadata).map_err(|error| error.to_string())
        }) {
            log::warn!("prune: {refused}; its log files are kept");
            continue;
        }
        let files = match folder.names() {
            Ok(files) => files,
            Err(error) => {
                log::warn!(
                    "prune: cannot read log folder {}: {error}; its log files are kept",
                    shown.display()
                );
                continue;
            }
        };
        for file in files {
            // SIGTERM or SIGINT stops it between two files, as between two batches.
            if !dry_run && crate::worker::signals::termination_signal().is_some() {
                return (removed, true);
            }
            let path = shown.join(&file);
            // Old by its name's start too (the clock drainctl reads, `DRAINCTL_NOW` in
            // tests): a pass started just now by that clock keeps its log, whatever the
            // file system's clock dated the file (docs/configuration.md, "Retention").
            let started = file.to_str().filter(|name| is_log_file_name(name)).and_then(log_file_started);
            let is_old = started.is_some_and(|started| started < before)
                && folder
                    .entry_metadata(&file)
                    .ok()
                    .filter(|metadata| metadata.is_file())
                    .and_then(|metadata| metadata.modified().ok())
                    .is_some_and(|modified| DateTime::<Utc>::from(modified) < before);
            if !is_old || keep.contains(&path) {
                continue;
            }
            if dry_run {
                removed += 1;
                continue;
            }
            match folder.remove(&file) {
                Ok(()) => removed += 1,
                Err(error) => log::warn!("prune: cannot remove log file {}: {error}", path.display()),
            }
        }
    }
    (removed, false)
}

/// When the pass whose log is `name` (`20261127T100000Z-4711.log`) started.
fn log_file_started(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok().map(|at| at.and_utc())
}

/// `20261127T100000Z-4711.log`, as `supervise` names a drain's log.
fn is_log_file_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".log") else { return false };
    let Some((stamp, pid)) = stem.split_once('-') else { return false };
    let bytes = stamp.as_bytes();
    bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes.iter().enumerate().all(|(i, b)| i == 8 || i == 15 || b.is_ascii_digit())
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_drainctl_log_names_are_candidates() {
        assert!(is_log_file_name("20261127T100000Z-4711.log"));
        for other in
            ["supervise.log", "20261127T100000Z.log", "20261127T100000Z-47a.log", "notes.txt", "x-1.log"]
        {
            assert!(!is_log_file_name(other), "{other}");
        }
    }

    #[test]
    fn the_summary_counts_one_in_the_singular() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let report = PruneReport {
            dry_run: false,
            runs_before: at,
            events_before: at,
            logs_before: at,
            done_items_before: Some(at),
            runs: 1,
            attempts: 1,
            supervisor_passes: 2,
            events: 0,
            done_items: 1,
            log_files: 1,
        };
        assert_eq!(
            report.summary(),
            "removed 1 run (1 attempt), 2 supervisor passes, 0 events, 1 done item, 1 log file"
        );
    }
}
