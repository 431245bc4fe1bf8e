//! Reaping: runs still marked `running` whose process is gone.
//!
//! A run on this host whose pid is dead — or alive but with a different process start
//! time (the pid was reused) — crashed. Reaping it marks it `crashed`, kills a worker it
//! left behind, completes any result it staged but never committed (if the staged bytes
//! verify against their recorded length and checksum) or discards it, and releases every
//! item it still held (the attempt stays counted; at `max_attempts` the item is dead).
//! Runs on other hosts cannot be probed and are judged by liveness alone (`supervise`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::json;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::events::{record_event, record_event_or_log, Event, Outbox};
use crate::db::in_transaction;
use crate::db::items::{self, Completion};
use crate::db::runs::{self, RunRow};
use crate::error::Result;
use crate::model::{EventKind, RunStatus};
use crate::worker::process;

/// What reaping one run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reaped {
    pub run_id: i64,
    pub drain: String,
    pub completed_from_staging: Vec<i64>,
    pub discarded_staging: Vec<i64>,
    pub released: Vec<String>,
    pub dead_lettered: Vec<String>,
}

/// Is this run's process (on this host) gone?
pub fn is_crashed(run: &RunRow) -> bool {
    if !is_this_hosts(run) {
        return false;
    }
    let Ok(pid) = u32::try_from(run.pid) else { return true };
    !process::is_process_alive(pid, run.process_start_time.map(|t| t as u64))
}

/// Was this run's process started on this host (and in this PID namespace)?
pub fn is_this_hosts(run: &RunRow) -> bool {
    process::is_this_host(&run.host, run.host_id.as_deref())
}

/// May this process signal what the run left? Only when the run records this host's boot
/// and PID namespace, not just its name: a row that lacks them (written by hand, by
/// another host, or where `/proc` told no boot id) gets nothing signalled, so that a
/// database writer cannot turn `supervise` against processes that are not drainctl's
/// (docs/guarantees.md). Each pid and group is then also checked against its recorded
/// start time.
pub fn may_signal(run: &RunRow) -> bool {
    run.host_id.is_some() && is_this_hosts(run)
}

/// The run's drain process and its recorded start time, when both are known.
fn drain_process(run: &RunRow) -> Option<(u32, u64)> {
    let pid = u32::try_from(run.pid).ok()?;
    Some((pid, u64::try_from(run.process_start_time?).ok()?))
}

/// The run's drain process when it is still alive and still drainctl: the same start time
/// and the same program (a row that names another process, with its start time read from
/// `/proc`, names no drain).
fn live_drain_process(run: &RunRow) -> Option<u32> {
    drain_process(run)
        .filter(|&(pid, start_time)| {
            process::is_process_alive(pid, Some(start_time)) && process::runs_this_program(pid)
        })
        .map(|(pid, _)| pid)
}

/// Whether process group `pgid` is one of the run's workers': a live member of it was
/// started with the run's `DRAIN_RUN_ID` in its environment, as every worker of the run
/// and the children it leaves are. A group of anyone else's (a daemon whose leader
/// exited, named by a row written by hand) carries no such mark and is left alone. A group
/// `identified` otherwise — its leader the run's recorded worker, by pid and start time —
/// whose members' environments cannot be read (a non-dumpable worker, `sudo -u`, seen by
/// a drainctl that is not root) is the run's too: leaving it running would run its item
/// twice.
fn is_runs_group(run: &RunRow, pgid: u32, identified: bool) -> bool {
    let mark = format!("DRAIN_RUN_ID={}", run.id);
    let members = process::live_group_members(pgid);
    let marks: Vec<Option<bool>> =
        members.iter().map(|&pid| process::has_environment_entry(pid, &mark)).collect();
    if marks.contains(&Some(true)) {
        return true;
    }
    if marks.is_empty() {
        return false;
    }
    if identified && marks.iter().all(Option::is_none) {
        log::info!(
            "run {}: process group {pgid}'s environment cannot be read; its leader is the run's worker \
             by pid and start time",
            run.id
        );
        return true;
    }
    let why = if marks.contains(&Some(false)) {
        format!("no member has {mark}")
    } else {
        "its members' environments cannot be read and its leader is not the run's recorded worker".to_string()
    };
    log::warn!("run {}: process group {pgid} is not its worker's ({why}): left alone", run.id);
    false
}

/// The run's worker group, when recorded with its leader's start time, still that
/// leader's (see [`process::is_recorded_group`]) and marked as the run's.
fn worker_group(run: &RunRow) -> Option<u32> {
    let pgid = u32::try_from(run.worker_pid?).ok()?;
    let start_time = u64::try_from(run.worker_start_time?).ok()?;
    (process::is_recorded_group(pgid, Some(start_time)) && is_runs_group(run, pgid, true)).then_some(pgid)
}

/// The groups left in the session the run's drain led, once it is gone, that are the
/// run's workers' (see [`process::orphaned_session_groups`], [`is_runs_group`]).
fn session_groups(run: &RunRow) -> Vec<u32> {
    drain_process(run).map_or_else(Vec::new, |(pid, start_time)| {
        process::orphaned_session_groups(pid, Some(start_time))
            .into_iter()
            .filter(|&pgid| is_runs_group(run, pgid, false))
            .collect()
    })
}

/// Reap every crashed run of this host (of one drain, or all).
pub fn reap_crashed_runs(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &Clock,
    drain: Option<&str>,
) -> Result<Vec<Reaped>> {
    let mut reaped = Vec::new();
    let mut ended = Vec::new();
    for run in runs::running_runs(client, drain)? {
        if is_crashed(&run) {
            let note = format!("process {} on {} is gone", run.pid, run.host);
            if let Some(result) = end_run(client, outbox, config, clock, &run, RunStatus::Crashed, &note)? {
                reaped.push(result);
                ended.push(EndedRun { run, stop_drain: false });
            }
        }
    }
    stop_ended_runs(client, outbox, config, &ended, clock.now());
    Ok(reaped)
}

/// Said of a released item that was claimed ahead and whose worker was never recorded as
/// started: it may have run in the moment before the statement that would have recorded it
/// (docs/worker-contract.md).
const CLAIMED_AHEAD_NOTE: &str =
    "; it was claimed ahead and its worker was never recorded as started (it may have run): attempt refunded";

/// Release the items of configured drains (one, or all) that are still `running` under a
/// run that is no longer `running` — left by a run ended while its process went on, or
/// one that died between a claim and its ending — with an event for each, in one
/// statement and one transaction. Returns how many were released.
pub fn release_orphaned_items(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &Clock,
    drain: Option<&str>,
) -> Result<usize> {
    let chosen: Vec<_> = config.drains.iter().filter(|d| drain.is_none_or(|name| name == d.name)).collect();
    let names: Vec<String> = chosen.iter().map(|d| d.name.clone()).collect();
    let max_attempts: Vec<i32> = chosen.iter().map(|d| d.max_attempts as i32).collect();
    let now = clock.now();
    in_transaction(client, |tx| {
        let orphans = items::release_orphaned_items(tx, &names, &max_attempts, now)?;
        for item in &orphans {
            let run = item.run_id.map_or("(none)".to_string(), |id| id.to_string());
            let (kind, what) = if item.is_dead {
                (EventKind::ItemDeadLettered, "dead")
            } else {
                (EventKind::ItemReleased, "released")
            };
            let mut message = format!("item {} {what}: its run {run} is no longer running", item.key);
            if item.was_claimed_ahead {
                message.push_str(CLAIMED_AHEAD_NOTE);
            }
            let mut event = Event::new(kind, message).drain(&item.drain).item(item.id);
            if item.is_dead {
                event = event.data(dead_letter_data(item.attempts, "its run is no longer running"));
            }
            if let Some(run_id) = item.run_id {
                event = event.run(run_id);
            }
            record_event(tx, outbox, &event, now)?;
        }
        Ok(orphans.len())
    })
}

/// The drain's `max_attempts`; for a drain the configuration no longer names its limit is
/// unknown, so an item it held is never dead-lettered by a reap, only given back.
pub(crate) fn max_attempts_of(config: &Config, drain: &str) -> i32 {
    config.drains.iter().find(|d| d.name == drain).map_or(i32::MAX, |d| d.max_attempts as i32)
}

/// A run ended `crashed` or `hung` whose processes are still to be stopped (see
/// [`stop_ended_runs`]); `stop_drain` for a hung one, whose drain process lives on.
#[derive(Debug, Clone)]
pub struct EndedRun {
    pub run: RunRow,
    pub stop_drain: bool,
}

/// End a `running` run that will never finish by itself (`crashed` or `hung`): settle
/// staged results, release its items, record events. What it left alive (a hung run's
/// drain process too) is for [`stop_ended_runs`], given every run a pass ended at once; a
/// pass that dies before that leaves it to the next (see [`finish_ended_runs`]). None if
/// someone else ended it first.
pub fn end_run(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &Clock,
    run: &RunRow,
    status: RunStatus,
    note: &str,
) -> Result<Option<Reaped>> {
    let now = clock.now();
    let max_attempts = max_attempts_of(config, &run.drain);
    let result = in_transaction(client, |tx| {
        // Held to the end: the staged results commit under the run's own fence, and a
        // second ender waits, then finds the run ended.
        let Some(last_checkpoint_at) = runs::lock_running_run(tx, run.id)? else {
            return Ok(None);
        };
        // Judged hung on the checkpoint the pass read; one written since shows it alive.
        if status == RunStatus::Hung && last_checkpoint_at > run.last_checkpoint_at {
            log::info!("run {} checkpointed since it was judged hung; left running", run.id);
            return Ok(None);
        }
        let mut reaped = Reaped {
            run_id: run.id,
            drain: run.drain.clone(),
            completed_from_staging: Vec::new(),
            discarded_staging: Vec::new(),
            released: Vec::new(),
            dead_lettered: Vec::new(),
        };
        let settled = settle_staged(tx, outbox, run.id, &run.drain, status, now)?;
        reaped.completed_from_staging.extend(settled.completed);
        reaped.discarded_staging.extend(settled.discarded);
        let ahead = settled.ahead;
        let release = Release { error: format!("run {} {status}: {note}", run.id), max_attempts, ahead };
        release_items(tx, outbox, run, &release, now, &mut reaped)?;
        // A crashed or hung run is left out of throughput: its idle time does not matter.
        runs::finish_run(tx, run.id, status, Some(note), now, 0.0)?;
        record_run_ended(tx, outbox, run, status, note, &reaped, now)?;
        Ok(Some(reaped))
    })?;
    Ok(result)
}

/// Stop what the runs ended by this pass left alive, all at once: each run's drain
/// process and groups are signalled and waited for on a thread of their own (see
/// [`kill_run_processes`]), so that ten runs hung behind one stalled vendor cost one
/// `kill_grace`, not ten. Failures and forgetting are then recorded one run at a time.
/// Returns, run by run, whether everything it left was stopped.
pub fn stop_ended_runs(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    ended: &[EndedRun],
    now: DateTime<Utc>,
) -> Vec<bool> {
    if ended.is_empty() {
        return Vec::new();
    }
    #[cfg(feature = "testing")]
    if std::env::var(crate::drain::FAULT_ENV).is_ok_and(|fault| fault == "die_after_ending_run") {
        // As a process SIGKILLed right here (pm2 after 1.6 s): the runs are ended, nothing
        // of them signalled.
        // SAFETY: raise has no preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    let outcomes: Vec<Vec<String>> = std::thread::scope(|scope| {
        let stopping: Vec<_> = ended
            .iter()
            .map(|ended| {
                let stop = move || kill_run_processes(config, &ended.run, ended.stop_drain);
                // A thread that cannot be made stops its run here, one after another.
                std::thread::Builder::new().spawn_scoped(scope, stop).map_err(|_| stop)
            })
            .collect();
        stopping
            .into_iter()
            .map(|stopping| match stopping {
                Ok(thread) => thread
                    .join()
                    .unwrap_or_else(|_| vec!["stopping its processes failed unexpectedly".to_string()]),
                Err(stop) => stop(),
            })
            .collect()
    });
    let mut stopped = Vec::with_capacity(ended.len());
    for (ended, failures) in ended.iter().zip(outcomes) {
        let run = &ended.run;
        for failure in &failures {
            let message = format!("run {}: {failure}", run.id);
            log::error!("{message}");
            let event = Event::new(EventKind::KillFailed, message).drain(&run.drain).run(run.id);
            record_event_or_log(client, outbox, &event, now);
        }
        if failures.is_empty() && may_signal(run) {
            forget_ended(client, run.id);
        }
        stopped.push(failures.is_empty());
    }
    stopped
}

/// What became of a run's staged results as it ended ([`settle_staged`]).
pub(crate) struct SettledStaging {
    /// The item the run claimed ahead, read before the staged results were committed
    /// (it shows only while one still waits): to release as never started.
    pub ahead: Option<i64>,
    pub completed: Vec<i64>,
    pub discarded: Vec<i64>,
}

/// Commit the staged results of run `run_id` (of `drain`) that verify, discard the
/// others, with an event each. The reaper's, and a pass's own when an error ends it
/// ([`crate::drain`]).
pub(crate) fn settle_staged(
    tx: &mut postgres::Transaction<'_>,
    outbox: &Outbox,
    run_id: i64,
    drain: &str,
    status: RunStatus,
    now: DateTime<Utc>,
) -> Result<SettledStaging> {
    let ahead = items::claimed_ahead_of_run(tx, run_id)?;
    let mut statements = crate::db::PreparedStatements::default();
    let (mut completed, mut discarded) = (Vec::new(), Vec::new());
    for item_id in items::staged_item_ids(tx, run_id)? {
        match items::complete_item(tx, &mut statements, item_id, run_id, now, items::RunWorker::Keep)? {
            Completion::Completed => {
                completed.push(item_id);
                let event = Event::new(
                    EventKind::StagedResultCompleted,
                    format!("run {run_id} ended ({status}) after staging item {item_id}: the staged result verified and was committed"),
                )
                .drain(drain)
                .run(run_id)
                .item(item_id);
                record_event(tx, outbox, &event, now)?;
            }
            outcome => {
                discarded.push(item_id);
                let why = match outcome {
                    Completion::ClaimLost(_) => "the run no longer held the item",
                    _ => "the staged bytes did not match their length and checksum",
                };
                let event = Event::new(
                    EventKind::StagedResultDiscarded,
                    format!(
                        "run {} ended ({status}): staged result of item {item_id} discarded: {why}",
                        run_id
                    ),
                )
                .drain(drain)
                .run(run_id)
                .item(item_id);
                record_event(tx, outbox, &event, now)?;
            }
        }
    }
    Ok(SettledStaging { ahead, completed, discarded })
}

/// The `data` of a dead letter the reaper made: the fields of every dead letter's event
/// (docs/json.md); no stderr is kept of a run that was ended.
fn dead_letter_data(attempt: i32, error: &str) -> serde_json::Value {
    serde_json::json!({ "attempt": attempt, "outcome": "released", "error": error, "stderr_tail": null })
}

/// How an ended run's items go back: the error they carry, the drain's `max_attempts`,
/// and the item claimed ahead as read before its staged result was committed.
struct Release {
    error: String,
    max_attempts: i32,
    ahead: Option<i64>,
}

/// Give the run's items back (dead-lettered on their last attempt), with an event each.
fn release_items(
    tx: &mut postgres::Transaction<'_>,
    outbox: &Outbox,
    run: &RunRow,
    release: &Release,
    now: DateTime<Utc>,
    reaped: &mut Reaped,
) -> Result<()> {
    let Release { error, max_attempts, ahead } = release;
    for item in items::release_run_items(tx, run.id, error, *max_attempts, false, *ahead, now)? {
        let event = if item.is_dead {
            reaped.dead_lettered.push(item.key.clone());
            Event::new(
                EventKind::ItemDeadLettered,
                format!("item {} dead: {error} on its last attempt", item.key),
            )
            .data(dead_letter_data(item.attempts, error))
        } else {
            reaped.released.push(item.key.clone());
            let ahead = if item.was_claimed_ahead { CLAIMED_AHEAD_NOTE } else { "" };
            Event::new(EventKind::ItemReleased, format!("item {} released: {error}{ahead}", item.key))
        };
        let event = event.drain(&run.drain).run(run.id).item(item.id);
        record_event(tx, outbox, &event, now)?;
    }
    Ok(())
}

/// The `run_hung` or `run_crashed` event, with what ending the run did.
fn record_run_ended(
    tx: &mut postgres::Transaction<'_>,
    outbox: &Outbox,
    run: &RunRow,
    status: RunStatus,
    note: &str,
    reaped: &Reaped,
    now: DateTime<Utc>,
) -> Result<()> {
    let kind = if status == RunStatus::Hung { EventKind::RunHung } else { EventKind::RunCrashed };
    let event = Event::new(kind, format!("run {} {status}: {note}", run.id))
        .drain(&run.drain)
        .run(run.id)
        .data(json!({
            "pid": run.pid,
            "host": run.host,
            "last_checkpoint_at": run.last_checkpoint_at,
            "released": reaped.released,
            "dead_lettered": reaped.dead_lettered,
            "completed_from_staging": reaped.completed_from_staging,
            "discarded_staging": reaped.discarded_staging,
        }));
    record_event(tx, outbox, &event, now)?;
    Ok(())
}

/// How many recently ended runs a `supervise` pass looks at, at most, for processes left
/// alive (see [`finish_ended_runs`]).
const ENDED_RUNS_LIMIT: i64 = 50;

/// A hung or crashed run ended less than this (plus the longest `item_timeout`) ago is
/// looked at again; a drain that lives on fenced stops on its own within `item_timeout`.
const ENDED_RUNS_MARGIN: std::time::Duration = std::time::Duration::from_secs(3600);

/// The runs of this host ended earlier whose drain process still lives, that the next
/// [`finish_ended_runs`] kills (its slot then free): for `supervise --dry-run`.
pub fn ended_runs_left_alive(client: &mut Client, config: &Config, clock: &Clock) -> Result<Vec<RunRow>> {
    let ended = ended_runs_to_finish(client, config, clock)?;
    Ok(ended.into_iter().filter(|run| live_drain_process(run).is_some()).collect())
}

/// The runs of this host ended `hung` or `crashed` recently enough that something of
/// theirs may live on, whose processes this process may signal: what
/// [`finish_ended_runs`] looks at.
fn ended_runs_to_finish(client: &mut Client, config: &Config, clock: &Clock) -> Result<Vec<RunRow>> {
    let longest = config.drains.iter().map(|d| d.item_timeout).max().unwrap_or_default();
    let since = crate::clock::earlier(clock.now(), longest.saturating_add(ENDED_RUNS_MARGIN));
    let ended = runs::recently_ended_abnormally(client, &process::host_name(), since, ENDED_RUNS_LIMIT)?;
    Ok(ended.into_iter().filter(may_signal).collect())
}

/// Finish the kill of runs of this host that were ended `hung` or `crashed` while
/// something of theirs lives on — the drain process (same pid and start time), the
/// recorded worker group, or a group in the drain's session — because the process that
/// ended them died before it killed them (a `supervise` SIGKILLed between ending a hung
/// run and signalling it), or the kill failed. Looks at the recent ones only (ended within
/// the longest `item_timeout` plus an hour, at most 50) not yet seen through — with or
/// without a worker recorded: one whose kill was seen through, or that has nothing left,
/// is forgotten (see [`kill_run_processes`]). Each kill is recorded as a
/// `run_processes_killed` event; a kill that fails as `kill_failed` (docs/operations.md).
/// Returns how many runs had something to kill.
pub fn finish_ended_runs(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &Clock,
) -> Result<usize> {
    let ended = ended_runs_to_finish(client, config, clock)?;
    let (mut left_alive, mut killed_events) = (Vec::new(), Vec::new());
    for run in &ended {
        // Without its start time a live pid may be anyone's: the drain is left alone.
        let drain = live_drain_process(run);
        let worker = worker_group(run);
        let worker_alive = match worker.map(process::group_is_alive).transpose() {
            Ok(alive) => alive.unwrap_or(false),
            Err(error) => {
                let message = format!("run {}: cannot probe worker process group: {error}", run.id);
                log::error!("{message}");
                let event = Event::new(EventKind::KillFailed, message).drain(&run.drain).run(run.id);
                record_event_or_log(client, outbox, &event, clock.now());
                false
            }
        };
        let session = session_groups(run);
        if drain.is_none() && !worker_alive && session.is_empty() {
            // Nothing of it is left: no later pass looks at it again.
            forget_ended(client, run.id);
            continue;
        }
        let mut left = Vec::new();
        if let Some(pid) = drain {
            left.push(format!("drain process {pid}"));
        }
        if let (true, Some(pid)) = (worker_alive, worker) {
            left.push(format!("worker process group {pid}"));
        }
        if !session.is_empty() {
            left.push(format!("process group(s) {session:?} of its drain's session"));
        }
        let message = format!(
            "run {} ({}) had ended, but its {} still ran: killed now",
            run.id,
            run.status,
            left.join(", ")
        );
        // Said as done only once it is (the event below); a kill refused is a kill_failed.
        log::warn!(
            "run {} ({}) had ended, but its {} still ran: stopping it",
            run.id,
            run.status,
            left.join(", ")
        );
        killed_events.push(
            Event::new(EventKind::RunProcessesKilled, message).drain(&run.drain).run(run.id).data(
                json!({ "drain_pid": drain, "worker_pid": worker.filter(|_| worker_alive), "session_groups": session }),
            ),
        );
        left_alive.push(EndedRun { run: run.clone(), stop_drain: drain.is_some() });
    }
    // Recorded once the kill is seen through: one that failed is a `kill_failed` instead.
    let stopped = stop_ended_runs(client, outbox, config, &left_alive, clock.now());
    for (event, _) in killed_events.iter().zip(&stopped).filter(|(_, stopped)| **stopped) {
        record_event(client, outbox, event, clock.now())?;
    }
    Ok(left_alive.len())
}

/// How much longer than `kill_grace` a drain process is given to stop its own worker.
const DRAIN_STOP_MARGIN: Duration = Duration::from_secs(2);

/// End what an ended run left alive, once: when `stop_drain` (a hung run), its drain
/// process (checked against its start time, so a reused pid is never signalled), then its
/// worker group — whether or not the worker's main process still lives, as a child it
/// started in the background outlives it — then, the drain being gone, every group left in the
/// drain's session: a drain started by `supervise` leads one, and a worker whose pid the
/// run had not recorded yet (it is written a round trip after the worker starts) is in it
/// (docs/worker-contract.md, "Crashes are reaped"; docs/operations.md). Each is SIGTERM,
/// then SIGKILL after `kill_grace` (the drain: a little longer, to stop its worker
/// itself; a group it left after exiting on its own: at once). Returns what could not be
/// done; [`stop_ended_runs`] records it, or forgets the run when nothing failed, so that
/// no later pass looks at it again (see [`finish_ended_runs`]).
fn kill_run_processes(config: &Config, run: &RunRow, stop_drain: bool) -> Vec<String> {
    if !may_signal(run) {
        return Vec::new();
    }
    let grace = config.defaults.kill_grace;
    let mut failures = Vec::new();
    let group = |pgid: u32, grace: Duration, failures: &mut Vec<String>| match process::terminate_group(
        pgid, grace,
    ) {
        Ok(outcome) => log::info!("run {}: process group {pgid} ended ({outcome:?})", run.id),
        Err(error) => failures.push(format!("could not kill process group {pgid}: {error}")),
    };
    let worker = worker_group(run);
    // The drain process is stopped first: it stops its worker itself, giving it
    // `kill_grace` and handing its item back as interrupted, so it gets that grace and a
    // little more. A group still alive after a drain that exited on its own has had its
    // SIGTERM and its grace: it is killed at once. Waiting the same grace for the drain
    // cut its own kill short, and the group then waited a second grace.
    let mut group_grace = grace;
    if let Some((pid, start_time)) =
        drain_process(run).filter(|&(pid, _)| stop_drain && process::runs_this_program(pid))
    {
        match process::terminate_process(pid, Some(start_time), grace.saturating_add(DRAIN_STOP_MARGIN)) {
            Ok(outcome) => {
                log::info!("run {}: drain process {pid} {outcome:?}", run.id);
                if outcome == process::TerminateOutcome::Terminated {
                    group_grace = Duration::ZERO;
                }
            }
            Err(error) => failures.push(format!("could not stop drain process {pid}: {error}")),
        }
    }
    if let Some(pgid) = worker {
        group(pgid, group_grace, &mut failures);
    }
    for pgid in session_groups(run) {
        group(pgid, group_grace, &mut failures);
    }
    // Last, what a worker started outside its group and session (`setsid`, a daemon) and
    // the run's drain could not end itself: it still carries the run's marks — its id, and
    // the drain process (pid and start time, which no other process of this host has: run
    // ids of another database may be the same), and started after that drain. It has had
    // the groups' grace; it is killed at once (docs/worker-contract.md).
    let left = drain_process(run).map_or_else(Vec::new, |(pid, start_time)| {
        let marks = [format!("DRAIN_RUN_ID={}", run.id), format!("DRAIN_PROCESS={pid}:{start_time}")];
        process::processes_with_environment_entries(start_time, &[&marks[0], &marks[1]])
    });
    for (pid, start_time) in left {
        match process::terminate_process(pid, Some(start_time), Duration::ZERO) {
            Ok(outcome) => {
                log::info!("run {}: process {pid}, outside its worker's group, {outcome:?}", run.id)
            }
            Err(error) => failures.push(format!("could not kill process {pid}: {error}")),
        }
    }
    failures
}

/// Record that nothing of an ended run is left alive (see [`runs::forget_worker`]). When
/// that cannot be written it is logged: the next pass looks at the run again and finds
/// nothing left, no harm.
fn forget_ended(client: &mut Client, run_id: i64) {
    if let Err(error) = runs::forget_worker(client, run_id) {
        log::warn!("run {run_id}: cannot record that its processes ended: {}", error.display_scrubbed());
    }
}
