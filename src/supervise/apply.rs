//! Carrying out decisions: expire a burst, reap a crashed run, end a hung one, start a
//! drain as a detached process. A decision that fails is recorded and the pass goes on.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::json;

use crate::config::Config;
use crate::db::drains::ensure_drain;
use crate::db::events::Outbox;
use crate::db::runs::RunRow;
use crate::drain::log_file;
use crate::error::{Error, Result};
use crate::model::{RunStatus, Trigger};
use crate::reap::EndedRun;
use crate::worker::process;

use super::{record_failure, Action, Decision, StepFailures};

/// How a decision the pass was stopped before begins its error (`… by SIGTERM`).
pub(super) const NOT_APPLIED_INTERRUPTED: &str = "not applied: the pass was interrupted by ";

/// Apply `decisions` in order; a failed one is recorded (see `record_failure`) and the
/// pass goes on. Once SIGTERM or SIGINT arrived the rest are not applied, and say so: the
/// pass stops at its next step boundary (see `Interruption`).
#[allow(clippy::too_many_arguments)]
pub(super) fn apply_all(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &crate::clock::Clock,
    runs: &[RunRow],
    decisions: &mut [Decision],
    now: DateTime<Utc>,
    failures: &mut StepFailures,
) {
    // Runs ended by this pass, stopped together before the first start (a hung run's drain
    // is started again only once it is gone) and at the end.
    let mut ended = Vec::new();
    // Drains one of whose passes could not be started: their other passes of this
    // supervise pass would fail the same way (a log folder, the executable), so they are
    // not tried, and the failure is recorded once.
    let mut not_started: Vec<String> = Vec::new();
    for index in 0..decisions.len() {
        let (earlier, rest) = decisions.split_at_mut(index);
        let decision = &mut rest[0];
        if decision.action == Action::Start && !ended.is_empty() {
            crate::reap::stop_ended_runs(client, outbox, config, &std::mem::take(&mut ended), clock.now());
        }
        // A group's drains are started highest rank first; a lower one only once the
        // higher ones recorded their runs, so its first claim sees them and yields
        // (docs/rate-limits.md, "Priority within a group"). Started together, the lower
        // one's claim could come first and take the window's first calls.
        if !decision.after_starts_of.is_empty() {
            let higher = earlier.iter().filter(|earlier| decision.after_starts_of.contains(&earlier.drain));
            let without_run = await_started_runs(client, higher, clock.now()).ended;
            report_ended_without_run(client, outbox, config, &without_run, failures, clock.now());
            for drain in &without_run {
                // Reported here, not again when the pass ends.
                if let Some(started) = earlier.iter_mut().find(|earlier| earlier.pid == Some(drain.pid)) {
                    started.error = Some(ENDED_WITHOUT_RUN.to_string());
                }
            }
        }
        if let Some(signal) = crate::worker::signals::termination_signal() {
            if decision.action != Action::Skip {
                let signal = crate::worker::signals::signal_name(signal);
                decision.error = Some(format!("{NOT_APPLIED_INTERRUPTED}{signal}"));
            }
            continue;
        }
        if decision.action == Action::Start && not_started.contains(&decision.drain) {
            decision.error =
                Some("not applied: an earlier pass of this drain could not be started".to_string());
            continue;
        }
        if let Err(error) = apply(client, outbox, config, clock, runs, decision, now, &mut ended) {
            failures.add(&error);
            let message = error.display_scrubbed();
            let what = format!("could not {} drain {}: {message}", decision.action.verb(), decision.drain);
            record_failure(client, outbox, Some(&decision.drain), what, clock.now());
            decision.error = Some(message);
            if decision.action == Action::Start {
                not_started.push(decision.drain.clone());
            }
        }
    }
    crate::reap::stop_ended_runs(client, outbox, config, &ended, clock.now());
}

#[allow(clippy::too_many_arguments)]
fn apply(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &crate::clock::Clock,
    runs: &[RunRow],
    decision: &mut Decision,
    now: DateTime<Utc>,
    ended: &mut Vec<EndedRun>,
) -> Result<()> {
    let mut end = |status: RunStatus| -> Result<()> {
        let Some(run) = runs.iter().find(|run| Some(run.id) == decision.run_id) else { return Ok(()) };
        // The run's own note and events name the run already: `run 26 crashed: process …`.
        let prefix = format!("run {}: ", run.id);
        let note = decision.reason.strip_prefix(&prefix).unwrap_or(&decision.reason);
        if crate::reap::end_run(client, outbox, config, clock, run, status, note)?.is_some() {
            ended.push(EndedRun { run: run.clone(), stop_drain: status == RunStatus::Hung });
        }
        Ok(())
    };
    match decision.action {
        Action::Skip => Ok(()),
        Action::ExpireBurst => expire_burst(client, outbox, config, &decision.drain, now),
        Action::ReapCrashed => end(RunStatus::Crashed),
        // Marked `hung` and its items released (fencing refuses its late commits), then
        // its worker group, its drain process and what is left in its session are stopped
        // with the other runs this pass ended (`reap::stop_ended_runs`).
        Action::KillHung => end(RunStatus::Hung),
        Action::Start => {
            let trigger = decision.trigger.unwrap_or(Trigger::Supervisor);
            let started = start_drain(config, &decision.drain, trigger, now)?;
            decision.pid = Some(started.pid);
            decision.log_path = started.log_path.as_ref().map(|path| path.display().to_string());
            if let Some(why) = started.without_log {
                // The work goes on; only its lines are lost (docs/operations.md, "Logs").
                let message = format!(
                    "drain {} started without a log file: {why}; its lines are lost until log_dir has room",
                    decision.drain
                );
                log::error!("{message}");
                let event = crate::db::events::Event::new(crate::model::EventKind::LogWriteFailed, message)
                    .drain(&decision.drain);
                crate::db::events::record_event_or_log(client, outbox, &event, now);
            }
            Ok(())
        }
    }
}

/// How long a pass waits, at most, for the drains it started to record their runs.
const STARTED_RUNS_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A drain this pass started whose process ended without recording a run: it could not
/// connect, or failed before its pass began.
pub(super) struct EndedWithoutRun {
    pub drain: String,
    pub pid: u32,
    pub log_path: Option<String>,
    /// Started by an earlier pass (which fired then, in the configured zone's words),
    /// not this one.
    pub started_by_pass_of: Option<String>,
}

impl EndedWithoutRun {
    /// What the drain's log says last (its error line), or where to look.
    pub fn describe(&self) -> String {
        let last_line = self.log_path.as_deref().and_then(|path| {
            let text = std::fs::read(path).ok()?;
            let text = String::from_utf8_lossy(&text[text.len().saturating_sub(4096)..]).into_owned();
            let line = text.lines().rev().find(|line| !line.trim().is_empty())?.trim().to_string();
            Some(line.chars().take(400).collect::<String>())
        });
        let log = self.log_path.as_deref().unwrap_or("-");
        let pass = match &self.started_by_pass_of {
            Some(fired) => format!("the supervise pass of {fired}"),
            None => "this pass".to_string(),
        };
        match last_line {
            Some(line) => format!(
                "drain {} (pid {}) started by {pass} ended without recording a run; its log {log} ends: {line}",
                self.drain, self.pid
            ),
            None => format!(
                "drain {} (pid {}) started by {pass} ended without recording a run; see its log {log}",
                self.drain, self.pid
            ),
        }
    }

    /// The error the pass counts for it ([`EndedWithoutRun::describe`] its message): such
    /// a drain almost always could not reach the database (69), unless its log ends on a
    /// refusal no retry mends — a schema changed by hand, a path reached through another
    /// user's link or below a folder another user may replace (78, as the drain exited),
    /// or a drain the configuration no longer names, or a refusal of the configuration file
    /// itself, `config_file` (edited since this pass read it: broken, moved, made writable
    /// by others — 78, where 69 said the database failed).
    pub fn error(&self, config_file: Option<&std::path::Path>) -> Error {
        let message = self.describe();
        // Its refusal names the file (`PATH:12:1: …`, `… PATH is writable by every user`),
        // not only as where the database URL came from (a database that cannot be reached).
        let names_the_file = config_file.is_some_and(|file| message.contains(&file.display().to_string()))
            && !message.contains(crate::error::CANNOT_CONNECT);
        let is_configuration = [
            crate::context::NOT_IN_THE_CONFIGURATION,
            crate::config::UNKNOWN_DRAIN,
            crate::config::NO_DATABASE_URL,
            crate::error::CHANGED_BY_HAND,
            crate::ownership::REACHED_THROUGH_A_LINK,
            crate::ownership::ITS_OWNER_MAY_REPLACE,
            crate::ownership::EVERY_USER_MAY_REPLACE,
            crate::ownership::ITS_ACL_LETS_REPLACE,
            crate::pinned_folder::NEVER_THROUGH_FOREIGN_LINKS,
            log_file::ONLY_INTO_ITS_OWN_FOLDER,
        ]
        .iter()
        .any(|phrase| message.contains(phrase))
            || names_the_file;
        match is_configuration {
            true => Error::Config(message),
            false => Error::Unavailable(message),
        }
    }
}

/// What [`await_started_runs`] saw of the drains a pass started.
#[derive(Default)]
pub(super) struct Awaited {
    /// Ended without recording a run: the pass reports them (nothing else would).
    pub ended: Vec<EndedWithoutRun>,
    /// Still running with no run recorded when the wait ended: the next passes look again.
    pub unseen: Vec<u32>,
}

/// Wait until every drain this pass started has recorded its run, or has ended: the
/// supervise lock is held until then, so a pass that follows at once (another host's, or
/// cron's and pm2's on the same minute) sees the drain busy instead of starting it again
/// (docs/operations.md, "Two passes at once"). Bounded by [`STARTED_RUNS_WAIT`] and
/// SIGTERM; a drain still unseen then is logged and left to its slot lock.
pub(super) fn await_started_runs<'a>(
    client: &mut Client,
    decisions: impl IntoIterator<Item = &'a Decision>,
    now: DateTime<Utc>,
) -> Awaited {
    let mut unseen: Vec<(i32, &Decision)> = decisions
        .into_iter()
        .filter(|decision| decision.action == Action::Start && decision.error.is_none())
        .filter_map(|decision| {
            decision.pid.and_then(|pid| i32::try_from(pid).ok()).map(|pid| (pid, decision))
        })
        .collect();
    let mut awaited = Awaited::default();
    let host = process::host_name();
    // A run a drain of this pass recorded started after this; an older one of the same pid
    // is another process's.
    let since = now - chrono::Duration::hours(1);
    let deadline = std::time::Instant::now() + STARTED_RUNS_WAIT;
    let unseen_pids = |unseen: &[(i32, &Decision)]| unseen.iter().map(|(pid, _)| *pid as u32).collect();
    loop {
        // Which had ended before the look at their runs: one that recorded a run and ended
        // in between is seen in the runs.
        let gone: Vec<i32> = unseen
            .iter()
            .map(|(pid, _)| *pid)
            .filter(|&pid| !process::is_process_alive(pid as u32, None))
            .collect();
        let pids: Vec<i32> = unseen.iter().map(|(pid, _)| *pid).collect();
        if pids.is_empty() {
            return awaited;
        }
        match pids_with_runs(client, &host, &pids, since) {
            Ok(seen) => {
                unseen.retain(|(pid, decision)| {
                    if seen.contains(pid) {
                        return false;
                    }
                    if gone.contains(pid) {
                        awaited.ended.push(EndedWithoutRun {
                            drain: decision.drain.clone(),
                            pid: *pid as u32,
                            log_path: decision.log_path.clone(),
                            started_by_pass_of: None,
                        });
                        return false;
                    }
                    true
                });
            }
            Err(error) => {
                // A session that ended is said once, by the step that finds it gone.
                if !client.is_closed() {
                    log::warn!("cannot tell whether the drains started have recorded their runs: {error}");
                }
                awaited.unseen = unseen_pids(&unseen);
                return awaited;
            }
        }
        // A termination signal does not cut the wait short: it is a step under way, at most
        // STARTED_RUNS_WAIT, and a pass started right after the signal (`pm2 restart`)
        // must still find the lock held (docs/operations.md, "Stopping a pass").
        if unseen.is_empty() {
            awaited.unseen = unseen_pids(&unseen);
            return awaited;
        }
        if std::time::Instant::now() >= deadline {
            awaited.unseen = unseen_pids(&unseen);
            log::warn!(
                "drain process(es) {:?} started by this pass have not recorded a run after {}s",
                awaited.unseen,
                STARTED_RUNS_WAIT.as_secs()
            );
            return awaited;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Which of `pids` recorded a run on `host` that started at or after `since`.
fn pids_with_runs(client: &mut Client, host: &str, pids: &[i32], since: DateTime<Utc>) -> Result<Vec<i32>> {
    let rows = client.query(
        "SELECT pid FROM runs WHERE host = $1 AND pid = ANY($2) AND started_at >= $3",
        &[&host, &pids, &since],
    )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// What a start decision is marked with once its drain was seen to end without a run.
pub(super) const ENDED_WITHOUT_RUN: &str = "ended without recording a run";

/// The mark of a start in its pass's record while its drain had not recorded a run when
/// the pass ended (docs/json.md, `passes`): the next passes look at it again.
const AWAITING_RUN: &str = "awaiting_run";

/// How long after its pass a start awaiting its run is looked at.
const LATE_STARTS_LOOKBACK: chrono::Duration = chrono::Duration::hours(2);

/// What becomes of a start in its pass's recorded decisions.
#[derive(Clone, Copy, PartialEq)]
enum StartMark {
    /// It ended without recording a run (and was reported): `error`, no longer awaited.
    EndedWithoutRun,
    /// Still running without a run at its pass's end: awaited by the next passes.
    AwaitingRun,
    /// Its run was seen since: no longer awaited.
    RunSeen,
}

/// Mark the starts of pass `pass_id` by pid, in its recorded decisions. A failure is
/// logged: at worst a start is looked at again, or not reported late.
fn mark_starts(client: &mut Client, pass_id: i64, marks: &[(u32, StartMark)]) {
    if marks.is_empty() {
        return;
    }
    let marked = crate::db::passes::decisions_of(client, pass_id).and_then(|decisions| {
        let Some(mut decisions) = decisions else { return Ok(()) };
        for decision in decisions.as_array_mut().into_iter().flatten() {
            let pid = decision
                .get("pid")
                .and_then(serde_json::Value::as_u64)
                .and_then(|pid| u32::try_from(pid).ok());
            let is_start = decision.get("action").and_then(serde_json::Value::as_str) == Some("start");
            let Some(mark) = marks.iter().find(|(marked, _)| Some(*marked) == pid).map(|(_, mark)| *mark)
            else {
                continue;
            };
            if !is_start || !decision.get("error").is_none_or(serde_json::Value::is_null) {
                continue;
            }
            let Some(fields) = decision.as_object_mut() else { continue };
            match mark {
                StartMark::EndedWithoutRun => {
                    fields.insert("error".to_string(), json!(ENDED_WITHOUT_RUN));
                    fields.remove(AWAITING_RUN);
                }
                StartMark::AwaitingRun => {
                    fields.insert(AWAITING_RUN.to_string(), json!(true));
                }
                StartMark::RunSeen => {
                    fields.remove(AWAITING_RUN);
                }
            }
        }
        crate::db::passes::set_decisions(client, pass_id, &decisions)
    });
    if let Err(error) = marked {
        log::warn!("could not mark the drains started by pass {pass_id}: {error}");
    }
}

/// Record in pass `pass_id` what its wait saw: the starts that ended without a run
/// (reported), and those still awaiting their run.
pub(super) fn mark_awaited(client: &mut Client, pass_id: i64, awaited: &Awaited) {
    let ended = awaited.ended.iter().map(|drain| (drain.pid, StartMark::EndedWithoutRun));
    let unseen = awaited.unseen.iter().map(|pid| (*pid, StartMark::AwaitingRun));
    mark_starts(client, pass_id, &ended.chain(unseen).collect::<Vec<_>>());
}

/// The drains earlier passes of this host started (in the last [`LATE_STARTS_LOOKBACK`])
/// that had not recorded a run when their pass ended and have ended since without one (a
/// drain that waited for its connection longer than [`STARTED_RUNS_WAIT`] — a full pool
/// — and then failed): reported now, as that pass would have (a `supervise_error` each,
/// exit 69), and marked in the pass that started them, so once. One whose run came is no
/// longer awaited; one still alive is left to a later pass. Only the starts so marked are
/// read: none, as a rule.
pub(super) fn report_late_ended_without_run(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    failures: &mut StepFailures,
    now: DateTime<Utc>,
) -> Result<()> {
    let host = process::host_name();
    let passes = crate::db::passes::recent_awaiting_passes(client, &host, now - LATE_STARTS_LOOKBACK)?;
    for (pass_id, fired_at, decisions) in passes {
        let Ok(decisions) = serde_json::from_value::<Vec<RecordedStart>>(decisions) else { continue };
        let awaiting: Vec<RecordedStart> = decisions
            .into_iter()
            .filter(|start| {
                start.action == "start" && start.error.is_none() && start.awaiting_run == Some(true)
            })
            .collect();
        let pids: Vec<i32> =
            awaiting.iter().filter_map(|start| start.pid.and_then(|pid| i32::try_from(pid).ok())).collect();
        let seen = pids_with_runs(client, &host, &pids, fired_at - chrono::Duration::minutes(1))?;
        let mut marks = Vec::new();
        let mut ended = Vec::new();
        for start in awaiting {
            let Some(pid) = start.pid else { continue };
            if i32::try_from(pid).is_ok_and(|pid| seen.contains(&pid)) {
                marks.push((pid, StartMark::RunSeen));
            } else if !process::is_process_alive(pid, None) {
                marks.push((pid, StartMark::EndedWithoutRun));
                ended.push(EndedWithoutRun {
                    drain: start.drain,
                    pid,
                    log_path: start.log_path,
                    started_by_pass_of: Some(crate::output::local_second(fired_at, config.defaults.timezone)),
                });
            }
        }
        report_ended_without_run(client, outbox, config, &ended, failures, now);
        mark_starts(client, pass_id, &marks);
    }
    Ok(())
}

/// A start decision as a pass recorded it.
#[derive(serde::Deserialize)]
struct RecordedStart {
    drain: String,
    action: String,
    pid: Option<u32>,
    log_path: Option<String>,
    error: Option<String>,
    awaiting_run: Option<bool>,
}

/// Record the drains this pass started that ended without a run: a `supervise_error`
/// each (so a notification goes out), and the pass exits 69 — such a drain almost always
/// could not reach the database — or 78 ([`EndedWithoutRun::error`]).
pub(super) fn report_ended_without_run(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    ended: &[EndedWithoutRun],
    failures: &mut StepFailures,
    now: DateTime<Utc>,
) {
    for drain in ended {
        let error = drain.error(config.path.as_deref());
        failures.add(&error);
        record_failure(client, outbox, Some(&drain.drain), error.to_string(), now);
    }
}

fn expire_burst(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    drain: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let controls = ensure_drain(client, drain, now)?;
    if controls.expired_burst(now).is_none() {
        return Ok(());
    }
    let mut transaction = client.transaction()?;
    crate::commands::burst::clear_expired_burst(
        &mut transaction,
        outbox,
        &controls,
        config.defaults.timezone,
        now,
    )?;
    transaction.commit()?;
    Ok(())
}

/// The drainctl to start drains with: the one now installed under the name this pass was
/// started by — a path, or a name the shell found on PATH — so that an upgrade during the
/// pass (`install` over that path or over the link it names, a link pointed at a new
/// release) is what the drains run (docs/operations.md, "Upgrading"); else this
/// executable, or the file now at its path when it was replaced (Linux names a replaced
/// executable `PATH (deleted)`).
fn installed_exe() -> Result<PathBuf> {
    // A file this process may run, as the shell takes it (it passes over one it may not).
    let runnable = |path: &PathBuf| {
        use std::os::unix::ffi::OsStrExt;
        path.is_file()
            && std::ffi::CString::new(path.as_os_str().as_bytes())
                // SAFETY: access reads the NUL-terminated path and returns 0 or -1.
                .is_ok_and(|path| unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0)
    };
    let invoked = || {
        let name = PathBuf::from(std::env::args_os().next()?);
        if name.components().count() > 1 {
            return std::path::absolute(&name).ok().filter(runnable);
        }
        std::env::split_paths(&std::env::var_os("PATH")?).map(|folder| folder.join(&name)).find(runnable)
    };
    if let Some(path) = invoked() {
        return Ok(path);
    }
    let exe = std::env::current_exe()
        .map_err(|error| Error::Internal(format!("cannot find the drainctl executable: {error}")))?;
    if exe.exists() {
        return Ok(exe);
    }
    let replaced = exe
        .to_str()
        .and_then(|path| path.strip_suffix(" (deleted)"))
        .map(PathBuf::from)
        .filter(|path| path.is_file());
    Ok(replaced.unwrap_or(exe))
}

/// A drain `start_drain` started: its pid, its log file, and why it has none (its log
/// folder's file system is full).
struct StartedDrain {
    pid: u32,
    log_path: Option<PathBuf>,
    without_log: Option<String>,
}

/// Spawn `drainctl drain NAME` detached: its own session (so cron or pm2 killing the
/// supervisor's process group does not reach it), stdin from /dev/null, stdout and stderr
/// to an owner-only log file — or, when the log folder's file system is full, to nowhere:
/// the work goes on without its lines. Returns at once with its pid.
fn start_drain(config: &Config, drain: &str, trigger: Trigger, now: DateTime<Utc>) -> Result<StartedDrain> {
    // A full file system (the one failure to make the log that is temporary) is no reason
    // to hold the work back: the drain starts without its lines.
    let opened = match create_log_file_path(config, drain, now).and_then(|(folder, name, path)| {
        crate::output::open_log_file_in(&folder, &name, &path, "log_dir").map(|file| (path, file))
    }) {
        Ok(opened) => Ok(opened),
        Err(Error::Temporary(full)) => Err(full),
        Err(error) => return Err(error),
    };
    let exe = installed_exe()?;
    let mut command = Command::new(exe);
    if let Some(path) = &config.path {
        command.arg("--config").arg(path);
    }
    command.args(["drain", "--trigger", trigger.as_str()]).stdin(Stdio::null());
    let (log_path, without_log) = match opened {
        Ok((log_path, log)) => {
            let log_for_stderr = log
                .try_clone()
                .map_err(|error| Error::Internal(format!("cannot duplicate log file handle: {error}")))?;
            command
                .arg("--log-file")
                .arg(&log_path)
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_for_stderr));
            (Some(log_path), None)
        }
        Err(full) => {
            command.stdout(Stdio::null()).stderr(Stdio::null());
            (None, Some(full))
        }
    };
    // The name last, after `--`: one that starts with `-` is no option (docs/configuration.md
    // allows `-x`).
    command.args(["--", drain]);
    // Detached twice over: re-parented away from this pass before it goes on.
    let pid = process::spawn_detached(&mut command).map_err(|error| {
        Error::Internal(format!(
            "cannot start `{} drain {drain}`: {error}",
            command.get_program().to_string_lossy()
        ))
    })?;
    // The file was named after this process; it carries the drain's own pid from now on
    // (the drain renames it too when it starts first: see `drain::log_file`).
    let log_path = log_path.map(|log_path| {
        log_file::rename_after(&log_path, pid).unwrap_or_else(|error| {
            log::warn!("cannot rename log file {} after drain pid {pid}: {error}", log_path.display());
            log_path
        })
    });
    let shown = log_path.as_ref().map_or_else(|| "none".to_string(), |path| path.display().to_string());
    log::info!("started drain {drain} ({trigger}) as pid {pid}, log {shown}");
    Ok(StartedDrain { pid, log_path, without_log })
}

/// `log_dir/NAME/YYYYmmddTHHMMSSZ-PID.log` with this process's pid until the drain's is
/// known, folders created owner-only: the folder held open (and checked as held), the
/// file's name and its path.
fn create_log_file_path(
    config: &Config,
    drain: &str,
    now: DateTime<Utc>,
) -> Result<(crate::pinned_folder::PinnedFolder, std::ffi::OsString, PathBuf)> {
    let dir = config.defaults.log_dir.join(drain);
    // Made one folder at a time below the deepest that exists, pinned: never where a link
    // swapped in meanwhile would lead.
    let folder = crate::pinned_folder::PinnedFolder::create_all(&dir, 0o700).map_err(|refusal| {
        refusal.into_error("log folder", &dir, "log_dir", |error| {
            let message = format!("cannot create log folder {}: {error}", dir.display());
            if crate::output::is_full_file_system(&error) {
                Error::Temporary(message)
            } else {
                Error::Config(format!("{message}; check log_dir"))
            }
        })
    })?;
    log_file::refuse_foreign_folder(&dir)?;
    let name = std::ffi::OsString::from(log_file::file_name(now, std::process::id()));
    let path = dir.join(&name);
    // Checked as held: a folder of another user swapped in after the check above is refused.
    let held = folder.metadata().map_err(|error| {
        Error::Config(format!("cannot inspect log folder {}: {error}; check log_dir", dir.display()))
    })?;
    log_file::refuse_others_folder(&dir, &held)?;
    Ok((folder, name, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a drain whose log ends on `line` is reported with, its configuration file
    /// being `/etc/drainctl/drainctl.toml`.
    fn reported(line: &str) -> u8 {
        let folder = std::env::temp_dir().join(format!("drainctl-ended-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let log = folder.join("drain.log");
        std::fs::write(&log, format!("earlier line\n{line}\n")).unwrap();
        let ended = EndedWithoutRun {
            drain: "docs".into(),
            pid: 4711,
            log_path: Some(log.display().to_string()),
            started_by_pass_of: None,
        };
        let code = ended.error(Some(std::path::Path::new("/etc/drainctl/drainctl.toml"))).exit_code();
        let _ = std::fs::remove_file(&log);
        code
    }

    #[test]
    fn a_drain_that_ended_on_its_configuration_is_78_and_on_its_database_69() {
        let file = "/etc/drainctl/drainctl.toml";
        assert_eq!(
            reported(&format!("drainctl: {file}:12:1: drain \"docs\": unknown field `max_attempt`")),
            78
        );
        assert_eq!(reported(&format!("drainctl: configuration file {file} is writable by every user")), 78);
        assert_eq!(
            reported("drainctl: no database URL: set [database] url in the configuration, or $DRAINCTL_DATABASE_URL"),
            78
        );
        // The file named only as where the URL came from: the database's failure.
        assert_eq!(
            reported(&format!(
                "drainctl: cannot connect to the database (URL from [database] url in {file}): database \"nodb\" does not exist"
            )),
            69
        );
        assert_eq!(reported("drainctl: cannot connect to the database: too many connections for role"), 69);
    }
}
