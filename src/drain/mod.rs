//! `drainctl drain NAME`: one pass of one drain.
//!
//! The pass takes a free concurrency slot (non-blocking advisory lock), records a run,
//! then claims items one at a time — re-reading pause, burst, backoff, window and budget
//! before each — runs the worker on each, classifies the outcome and settles the item:
//! a success is staged durably and then completed under the run's fencing token; a quota
//! hit gives the attempt back and backs off the account of the quota group it ran on; a
//! failure is retried with exponential backoff or dead-lettered at `max_attempts`.
//!
//! Between two workers there is one database round trip: a success of at most 64 KiB is
//! committed by the statement that claims the next item (one transaction); a larger one
//! is staged by it and committed (recording the next worker) while that worker runs. A
//! worker still running 2 ms after its start is recorded on the run; a quicker one costs
//! no statement of its own. After a worker quicker than 100 ms the next item is claimed
//! while the current worker runs (see `Pass::claim_ahead`): the statement between two
//! workers then stages the result and re-reads the controls only, and the statement beside
//! the next worker commits the staged result and makes the next claim ahead
//! (docs/benchmarks.md, "Staged between quick workers"). The per-item statements are
//! prepared once per pass.
//!
//! In a quota group with several accounts every claim first chooses the account (see
//! [`crate::accounts`]) under the group's row lock, and the worker runs with that account's
//! environment. A hit with a stated reset, or a confirmed one, lets the pass go on with the
//! next account; the item hit goes back to pending and is retried there.
//!
//! Resume tokens a worker prints are checked against `resume_token_format` and stored on
//! the item as they arrive; when the item runs again after an interruption the worker gets
//! `DRAIN_RESUME_TOKEN` and `resume_args`.
//!
//! Here the run is opened and closed; `pass` is the loop over the items, `item` runs the
//! worker on one and settles it, `staging` stages and commits successes, `wait` waits for
//! a reset inside the pass, `recorder` records what a running worker reports and
//! `reconnect` opens a new session when the server ended the pass's own.

mod failure_line;
pub(crate) use failure_line::is_noise;
mod item;
pub(crate) use item::worker_input;
pub mod log_file;
mod pass;
mod reconnect;
mod recorder;
mod staging;
mod wait;
pub(crate) use wait::waits_for_the_servers;

use chrono::{DateTime, Utc};
use postgres::Client;
use serde_json::json;

use crate::cli::DrainArgs;
use crate::clock::Clock;
use crate::config::{Config, DrainConfig, QuotaGroupConfig};
use crate::context::Context;
use crate::db::drains::{ensure_drain, DrainControls};
use crate::db::events::{record_event, Event, Outbox};
use crate::db::items;
use crate::db::runs::{self, NewRun};
use crate::db::{drain_slot_key, in_transaction, try_advisory_lock, PreparedStatements};
use crate::error::{Error, Result, EXIT_OK};
use crate::model::{EventKind, RunStatus, Trigger};
use crate::output::Report;
use crate::quota::Classifier;

/// Test hook: `DRAINCTL_FAULT=hang_after_stage` makes the pass stop dead between staging a
/// result and completing the item, so a test can `kill -9` it exactly there;
/// `slow_run_start` makes a drain wait 1.5 s before it records its run (`slow_run_start:NAME`:
/// only drain NAME); `no_run_after_8s` makes it wait 8 s and fail as a drain that could
/// not reach the database would, recording no run; `reconnect_for_3s` makes a pass wait
/// 3 s, not 60, for a new session;
/// `die_after_ending_run` kills the process that ended a hung or crashed run right after
/// it recorded that, before it signals anything; `orphan_kill_fails` makes the kill of a
/// process a worker left outside its group fail with EPERM; `slow_enqueue_commit` holds
/// `enqueue` 1.5 s right before its commit; `lose_failure_commit_reply` ends the session
/// right after the first failed attempt's record committed, as a failover that loses the
/// commit's reply would. Compiled only
/// with the `testing` feature, never into a release build (docs/configuration.md).
#[cfg(feature = "testing")]
pub const FAULT_ENV: &str = "DRAINCTL_FAULT";

/// How a pass ended.
#[derive(Debug, Clone)]
struct Stop {
    status: RunStatus,
    note: String,
    exit_code: u8,
}

impl Stop {
    fn normal(status: RunStatus, note: impl Into<String>) -> Stop {
        Stop { status, note: note.into(), exit_code: EXIT_OK }
    }

    /// Stopped between items by SIGTERM, SIGINT or SIGHUP.
    fn interrupted(signal: i32) -> Stop {
        Stop {
            status: RunStatus::Failed,
            note: format!("interrupted by {}", crate::worker::signals::signal_name(signal)),
            exit_code: crate::error::EXIT_TEMPORARY,
        }
    }
}

pub fn run(ctx: &mut Context, args: &DrainArgs) -> Result<Report> {
    let Context { config, clock, client, outbox, .. } = ctx;
    let outbox: &Outbox = outbox;
    crate::worker::signals::install_termination_handlers()
        .map_err(|error| Error::Internal(format!("cannot install signal handlers: {error}")))?;
    // Held to the end of the pass: a worker's child that left its group is killed once
    // the worker ends, and what is left of them when the pass ends (docs/worker-contract.md).
    let _adopted = crate::worker::orphans::adopt()
        .map_err(|error| log::warn!("cannot adopt what workers leave outside their process group: {error}"))
        .ok();
    let now = clock.now();
    let (drain_id, mut run_id) = {
        let drain = config.drain(&args.name)?;
        config.quota_group(&drain.quota_group)?;
        let controls = ensure_drain(client, &drain.name, now)?;
        crate::reap::reap_crashed_runs(client, outbox, config, clock, Some(&drain.name))?;
        crate::reap::release_orphaned_items(client, outbox, config, clock, Some(&drain.name))?;
        match open_run(client, outbox, drain, &controls, args, now)? {
            Opened::Run(run_id) => (controls.id, run_id),
            Opened::LockSkipped(report) => return Ok(report),
        }
    };
    crate::db::use_generic_plans(client)?;
    let mut previous_runs = Vec::new();
    let mut carried = Carried { started_at: now, ..Carried::default() };
    loop {
        let drain = config.drain(&args.name)?;
        let group = config.quota_group(&drain.quota_group)?;
        if !carried.is_reload {
            log::info!("drain {}: run {run_id} started", drain.name);
        }
        let mut pass = Pass {
            config,
            drain,
            group,
            clock,
            client,
            outbox,
            classifier: Classifier::new(drain.quota_profile, &drain.quota_patterns, &drain.veto_patterns),
            run_id,
            drain_id,
            trigger: args.trigger,
            started_at: carried.started_at,
            done: carried.done,
            failed: carried.failed,
            skipped: carried.skipped,
            dead_unrun: carried.dead_unrun,
            is_account_suspected: false,
            statements: std::mem::take(&mut carried.statements),
            unstaged: None,
            commit_failed: None,
            staged: None,
            rivals: std::rc::Rc::new(items::GroupRivals::of(config, drain)),
            yielding_since: None,
            idle_seconds: carried.idle_seconds,
            cost_picousd: carried.cost_picousd,
            cost_stop: None,
            last_worker_took: None,
            claimed_ahead: None,
            stop_after_item: None,
            session_lost_since: None,
            run_lost: None,
            is_continuation: carried.is_continuation,
            has_waited: carried.has_waited,
            server_errors_in_a_row: carried.server_errors_in_a_row,
            last_server_error_item: carried.last_server_error_item,
            servers_failing_until: carried.servers_failing_until.take(),
            continues_at: None,
            config_watch: crate::config::watch::ConfigWatch::of(config, drain),
            reloaded: None,
        };
        let stop = match pass.work() {
            Ok(stop) => stop,
            Err(error) => return Err(fail_run(&mut pass, error)),
        };
        // The configuration file changed in something the pass goes by: the run goes on
        // with the settings as they are now, in the slot it holds — unless the drain is
        // gone from it or runs more passes than its `concurrency` allows now
        // (docs/configuration.md, "Changing the configuration while drains run").
        let stop = match pass.reloaded.take() {
            Some(Reload { reloaded, slots }) => {
                let go_on = reloaded.may_go_on(&args.name, slots.own, &slots.held);
                match (crate::worker::signals::termination_signal(), pass.stop_after_item.take(), go_on) {
                    // Asked to stop meanwhile: as at any item's start.
                    (Some(signal), _, _) => Stop::interrupted(signal),
                    // It lost its slot with its session (see `reconnect`).
                    (None, Some(stop), _) => stop,
                    (None, None, Ok(())) => {
                        // In the drain's log: which item first ran on the new settings.
                        log::warn!(
                            "drain {}: run {run_id}: {}; it goes on with them",
                            drain.name,
                            reloaded.what
                        );
                        carried = pass.carried();
                        drop(pass);
                        *config = reloaded.config;
                        continue;
                    }
                    (None, None, Err(why)) => {
                        Stop::normal(RunStatus::WindowClosed, format!("{}; {why}", reloaded.what))
                    }
                }
            }
            None => stop,
        };
        let stop = close_run(&mut pass, stop)?;
        // The pass's time budget ended before a reset it could otherwise wait for: the
        // process goes on as a new pass that waits for it (docs/rate-limits.md, "Waiting
        // for the reset"), in the concurrency slot it holds. One that lost its slot (see
        // `reconnect`) or was told to stop does not.
        // Nor does one whose run another process ended (its status then says so).
        let is_ended_by_other = matches!(stop.status, RunStatus::Hung | RunStatus::Crashed);
        let continues = pass.continues_at.is_some()
            && !is_ended_by_other
            && pass.stop_after_item.is_none()
            && crate::worker::signals::termination_signal().is_none();
        if !continues {
            return Ok(render(&pass, stop, previous_runs));
        }
        previous_runs.push(pass_json(&pass, &stop));
        let (finished_run, now) = (pass.run_id, pass.clock.now());
        drop(pass);
        run_id = record_run(client, outbox, drain, args, Some(finished_run), now)?;
        carried = Carried { started_at: now, is_continuation: true, ..Carried::default() };
    }
}

/// What a pass hands on to the next one of the same process: to the rest of its run
/// when the configuration was read again (`is_reload`), its counts, clock and prepared
/// statements; a new run (see `continues_at`) starts afresh.
#[derive(Default)]
struct Carried {
    is_reload: bool,
    started_at: DateTime<Utc>,
    done: u32,
    failed: u32,
    skipped: u32,
    dead_unrun: u32,
    idle_seconds: f64,
    cost_picousd: i128,
    is_continuation: bool,
    has_waited: bool,
    statements: PreparedStatements,
    server_errors_in_a_row: u32,
    last_server_error_item: Option<i64>,
    servers_failing_until: Option<(DateTime<Utc>, String)>,
}

impl Pass<'_> {
    fn carried(&mut self) -> Carried {
        Carried {
            is_reload: true,
            started_at: self.started_at,
            done: self.done,
            failed: self.failed,
            skipped: self.skipped,
            dead_unrun: self.dead_unrun,
            idle_seconds: self.idle_seconds,
            cost_picousd: self.cost_picousd,
            is_continuation: self.is_continuation,
            has_waited: self.has_waited,
            statements: std::mem::take(&mut self.statements),
            server_errors_in_a_row: self.server_errors_in_a_row,
            last_server_error_item: self.last_server_error_item,
            servers_failing_until: self.servers_failing_until.take(),
        }
    }
}

/// How opening a run went: a run was recorded, or every concurrency slot was taken.
enum Opened {
    Run(i64),
    LockSkipped(Report),
}

/// What a run records of the process that makes it.
struct ThisProcess {
    host: String,
    host_id: Option<String>,
    pid: u32,
    log_path: Option<String>,
}

impl ThisProcess {
    fn of(args: &DrainArgs) -> ThisProcess {
        ThisProcess {
            host: crate::worker::process::host_name(),
            host_id: crate::worker::process::host_id(),
            pid: std::process::id(),
            log_path: args.log_file.as_ref().map(|p| p.display().to_string()),
        }
    }

    fn new_run<'a>(&'a self, drain: &'a DrainConfig, args: &DrainArgs) -> NewRun<'a> {
        NewRun {
            drain: &drain.name,
            trigger: args.trigger,
            host: &self.host,
            host_id: self.host_id.as_deref(),
            pid: self.pid as i32,
            process_start_time: crate::worker::process::process_start_time(self.pid).map(|t| t as i64),
            log_path: self.log_path.as_deref(),
        }
    }
}

/// Take a concurrency slot and record the run with its `run_started` event; when no
/// slot is free, record a `lock_skipped` run instead and report that.
fn open_run(
    client: &mut Client,
    outbox: &Outbox,
    drain: &DrainConfig,
    controls: &DrainControls,
    args: &DrainArgs,
    now: DateTime<Utc>,
) -> Result<Opened> {
    // Test hook: a drain slow to record its run (see `FAULT_ENV`).
    #[cfg(feature = "testing")]
    if std::env::var(FAULT_ENV)
        .is_ok_and(|fault| fault == "slow_run_start" || fault == format!("slow_run_start:{}", drain.name))
    {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    #[cfg(feature = "testing")]
    if std::env::var(FAULT_ENV).is_ok_and(|fault| fault == "no_run_after_8s") {
        std::thread::sleep(std::time::Duration::from_secs(8));
        return Err(Error::Unavailable(format!("{}: a fault of the test", crate::error::CANNOT_CONNECT)));
    }
    let process = ThisProcess::of(args);
    let new_run = process.new_run(drain, args);
    let slot = take_slot(client, controls.id, drain.concurrency)?;
    let live = match slot {
        Some(_) => live_runs(client, drain, now)?,
        None => 0,
    };
    if slot.is_none() || live >= drain.concurrency as usize {
        let mut note =
            format!("all {} concurrency slot(s) of drain {} are taken", drain.concurrency, drain.name);
        if slot.is_some() {
            // A slot is free, but not for long: the passes of those runs take theirs again.
            note.push_str(&format!(
                " by its {live} runs still running, some of whose sessions the server ended (a restart): each \
                 takes its slot again when its worker ends"
            ));
        }
        let run_id = runs::insert_lock_skipped_run(client, &new_run, &note, now)?;
        return Ok(Opened::LockSkipped(Report::new(
            format!("{}: lock_skipped: {note}", drain.name),
            json!({ "drain": drain.name, "run_id": run_id, "status": RunStatus::LockSkipped, "note": note }),
        )));
    }
    record_run(client, outbox, drain, args, None, now).map(Opened::Run)
}

/// The drain's runs that are live — `running`, silent for no longer than
/// `liveness_timeout` while the database server was up, and, on this host, their process
/// alive — as `supervise` counts them: each takes a slot, whether or not its session
/// holds one now (a database restart ended it, and its pass takes its slot again only when
/// its worker ends), so that a pass started by hand then does not run beyond
/// `concurrency` (docs/operations.md, "Several hosts").
fn live_runs(client: &mut Client, drain: &DrainConfig, now: DateTime<Utc>) -> Result<usize> {
    let running = runs::running_runs(client, Some(&drain.name))?;
    if running.is_empty() {
        return Ok(0);
    }
    let server_started_at = Some(crate::db::server_started_at(client)?);
    let is_live = |run: &&runs::RunRow| {
        !crate::supervise::silent_beyond_liveness(drain, run.last_checkpoint_at, server_started_at, now)
            && !crate::reap::is_crashed(run)
    };
    Ok(running.iter().filter(is_live).count())
}

/// Record a run of this process, which holds a concurrency slot of the drain, with its
/// `run_started` event; `continues`: the run whose time budget ended before the reset
/// this one waits for (docs/rate-limits.md, "Waiting for the reset").
fn record_run(
    client: &mut Client,
    outbox: &Outbox,
    drain: &DrainConfig,
    args: &DrainArgs,
    continues: Option<i64>,
    now: DateTime<Utc>,
) -> Result<i64> {
    let process = ThisProcess::of(args);
    let new_run = process.new_run(drain, args);
    let (host, pid) = (&process.host, process.pid);
    in_transaction(client, |tx| {
        let run_id = runs::insert_run(tx, &new_run, now)?;
        let continuing = continues
            .map(|previous| format!(", continuing run {previous}, whose time budget ended before the reset"))
            .unwrap_or_default();
        let event = Event::new(
            EventKind::RunStarted,
            format!("run {run_id} started ({}){continuing}", args.trigger.as_str()),
        )
        .drain(&drain.name)
        .run(run_id)
        .data(
            json!({ "trigger": args.trigger.as_str(), "host": host, "pid": pid, "continues_run": continues }),
        );
        record_event(tx, outbox, &event, now)?;
        Ok(run_id)
    })
}

/// The pass stopped on an error: give its items back and finish the run as failed;
/// returns the error.
fn fail_run(pass: &mut Pass, error: Error) -> Error {
    // The run is another pass's, or none, on the server the pass reconnected to: nothing
    // is written under it (see `reconnect`).
    if pass.run_lost.is_some() {
        return error;
    }
    let run_id = pass.run_id;
    // Record what we can, then report the error. If the database itself is gone the
    // run stays `running` and the next pass or supervise reaps it as crashed.
    let note = format!("stopped by an error: {}", error.display_scrubbed());
    let at = pass.clock.now();
    // A success still held in memory (the worker that ran beside a failed commit) is
    // staged first; then what the run staged is committed, as the reaper would
    // (docs/guarantees.md, "Results are committed whole or staged") — before, releasing
    // the items discarded it with no event. When that fails too (the server's disk still
    // full), the run is left `running` for the reaper, and the line says so.
    let mut lost = None;
    if let Some(unstaged) = pass.unstaged.as_ref().map(|succeeded| succeeded.item.key.clone()) {
        if let Err(stage_error) = pass.stage_unstaged() {
            log::debug!("run {run_id}: could not stage the result of item {unstaged}: {stage_error}");
            lost = Some(unstaged);
        }
    }
    let (outbox, drain_name) = (pass.outbox, pass.drain.name.as_str());
    let settled = in_transaction(pass.client, |tx| {
        runs::lock_own_run(tx, run_id)?;
        crate::reap::settle_staged(tx, outbox, run_id, drain_name, RunStatus::Failed, at)
    });
    let (ahead, error) = match settled {
        Ok(settled) => {
            let completed = settled.completed.len();
            pass.done = pass.done.saturating_add(u32::try_from(completed).unwrap_or(u32::MAX));
            let said = match completed {
                0 if settled.discarded.is_empty() => None,
                0 => Some(
                    "the result it staged did not verify and was discarded (staged_result_discarded)".into(),
                ),
                1 => Some(
                    "the result it staged was committed as the run ended (staged_result_completed)".into(),
                ),
                n => Some(format!(
                    "the {n} results it staged were committed as the run ended (staged_result_completed)"
                )),
            };
            match said {
                // The item claimed ahead, as read before the staged results went in.
                Some(said) => (settled.ahead, error.noted(&said)),
                None => (None, error),
            }
        }
        Err(settle_error) => {
            log::debug!("run {run_id}: could not commit its staged result after an error: {settle_error}");
            let stays = match pass.client.is_closed() {
                true => format!("run {run_id} stays running until supervise reaps it"),
                false => format!(
                    "run {run_id} stays running until supervise reaps it (a result it staged is committed then)"
                ),
            };
            return said_lost(error, lost.as_deref(), false, run_id).noted(&stays);
        }
    };
    let event = finished_event(pass, RunStatus::Failed, &note);
    // Stopped by an error, not by the items: give their attempts back.
    let max_attempts = pass.drain.max_attempts as i32;
    let released = in_transaction(pass.client, |tx| {
        // The run first, then its items, as `supervise` ending the run locks them.
        runs::lock_own_run(tx, run_id)?;
        items::release_run_items(tx, run_id, &note, max_attempts, true, ahead, at)?;
        if runs::finish_run(tx, run_id, RunStatus::Failed, Some(&note), at, pass.idle_seconds)? {
            record_event(tx, pass.outbox, &event, at)?;
        }
        Ok(())
    });
    match released {
        Ok(()) => said_lost(error, lost.as_deref(), true, run_id),
        // Nothing could be released: the error's one line says what happens to the run
        // instead of a line of its own (without a session, nothing else could be said).
        Err(release_error) => {
            match pass.client.is_closed() {
                true => log::debug!("run {run_id}: could not release items after an error: {release_error}"),
                false => log::error!("run {run_id}: could not release items after an error: {release_error}"),
            }
            said_lost(error, lost.as_deref(), false, run_id)
                .noted(&format!("run {run_id} stays running until supervise reaps it"))
        }
    }
}

/// `error` with what became of the result of item `lost` the pass could not write as it
/// ended: released here (its attempt given back) or left in run `run_id`, still
/// `running`, for the reaper (counted, as for a crash).
fn said_lost(error: Error, lost: Option<&str>, released: bool, run_id: i64) -> Error {
    let Some(key) = lost else { return error };
    let what = format!("the result of item {key}, held in memory, could not be written: it is lost");
    match released {
        true => error.noted(&format!("{what}, and the item runs again, its attempt given back")),
        false => error.noted(&format!("{what}; {}", staging::runs_again_once_reaped(key, run_id))),
    }
}

/// Record how the pass ended, with its `run_finished` event. Returns how it ended: as
/// `supervise` recorded it when that ended the run first (hung, crashed), else `stop`.
fn close_run(pass: &mut Pass, stop: Stop) -> Result<Stop> {
    let run_id = pass.run_id;
    let at = pass.clock.now();
    // Nothing is held now but an item claimed beside a worker by a statement whose reply
    // the ended session never delivered: it goes back unstarted, attempt refunded.
    if let Err(error) = pass.give_back_unknown_claims(&[], at) {
        log::error!(
            "drain {}: run {run_id}: could not give back the items it still holds: {error}",
            pass.drain.name
        );
    }
    let event = finished_event(pass, stop.status, &stop.note);
    // A pass stopped by a cost budget says so in its own event (docs/results.md).
    let budget_event = pass
        .cost_stop
        .as_ref()
        .filter(|(cost_stop, _)| cost_stop.status == stop.status && cost_stop.note == stop.note)
        .map(|(_, event)| event.clone().run(run_id));
    // A session the server ends here is replaced and the end recorded on the new one
    // (before, the run stayed `running`, reaped later as crashed, for a pass that had
    // finished). One whose commit went through, its reply lost, finds its own end.
    let ended_before = pass.on_a_lasting_session(|pass| {
        let (outbox, idle_seconds) = (pass.outbox, pass.idle_seconds);
        in_transaction(pass.client, |tx| {
            // Supervise may have ended this run already (hung): then it told the story.
            if runs::finish_run(tx, run_id, stop.status, Some(&stop.note), at, idle_seconds)? {
                if let Some(budget_event) = &budget_event {
                    record_event(tx, outbox, budget_event, at)?;
                }
                record_event(tx, outbox, &event, at)?;
                return Ok(None);
            }
            runs::recorded_end(tx, run_id)
        })
    })?;
    let ended_before = ended_before
        .filter(|(status, note)| !(*status == stop.status && note.as_deref() == Some(stop.note.as_str())));
    // The pass's line says what the run is: `run 17 hung: … — no checkpoint for 15m …;
    // this pass then: interrupted by SIGTERM …`, not "failed" beside a run shown hung.
    let stop = match ended_before {
        Some((status, note)) if status != RunStatus::Running => Stop {
            status,
            note: format!(
                "{}; this pass then: {}",
                note.as_deref().unwrap_or("ended by supervise"),
                stop.note
            ),
            // As any pass whose run another process ended (docs/exit-codes.md).
            exit_code: crate::error::worse_exit_code(stop.exit_code, crate::error::EXIT_TEMPORARY),
        },
        _ => stop,
    };
    log::info!("drain {}: run {run_id} finished: {} ({})", pass.drain.name, stop.status, stop.note);
    crate::metrics::write_textfile_after_drain_pass(
        pass.client,
        pass.outbox,
        pass.config,
        &pass.drain.name,
        at,
    );
    Ok(stop)
}

/// A finished pass as JSON.
fn pass_json(pass: &Pass, stop: &Stop) -> serde_json::Value {
    json!({
        "drain": pass.drain.name,
        "run_id": pass.run_id,
        "status": stop.status,
        "note": stop.note,
        "items_done": pass.done,
        "items_failed": pass.failed,
        "items_skipped": pass.skipped,
        "items_dead_without_attempt": pass.dead_unrun,
    })
}

/// The finished pass as a line and as JSON, after the passes this process made before it
/// (`previous_runs`, see `run`); a non-zero outcome also says why on stderr.
fn render(pass: &Pass, stop: Stop, previous_runs: Vec<serde_json::Value>) -> Report {
    let line = |run: &serde_json::Value| {
        // Items whose file was gone are named only when there were some.
        let mut skipped = match run["items_skipped"].as_u64() {
            Some(skipped) if skipped > 0 => format!(", {skipped} skipped (file missing)"),
            _ => String::new(),
        };
        // Items dead-lettered at their claim, likewise (before: "0 done, 0 failed
        // attempts" for a pass that dead-lettered them).
        if let Some(dead) = run["items_dead_without_attempt"].as_u64().filter(|dead| *dead > 0) {
            skipped.push_str(&format!(", {dead} dead-lettered without an attempt (max_attempts used)"));
        }
        format!(
            "{}: run {} {}: {}{skipped} — {}",
            pass.drain.name,
            run["run_id"],
            run["status"].as_str().unwrap_or_default(),
            crate::output::run_outcome(&run["items_done"], run["items_failed"].as_i64().unwrap_or_default()),
            run["note"].as_str().unwrap_or_default()
        )
    };
    let mut json = pass_json(pass, &stop);
    let human: Vec<String> = previous_runs.iter().chain([&json]).map(line).collect();
    json["previous_runs"] = serde_json::Value::Array(previous_runs);
    let report = Report::new(human.join("\n"), json);
    if stop.exit_code != EXIT_OK {
        // Non-zero outcomes also say why on stderr, in the one-line form; a run another
        // process ended is named with the status it gave it.
        let ended = match stop.status {
            RunStatus::Hung | RunStatus::Crashed => format!("run {} {}: ", pass.run_id, stop.status),
            _ => String::new(),
        };
        crate::output::say_on_stderr(&format!(
            "{}drainctl: drain {}: {ended}{}",
            crate::output::line_date(),
            pass.drain.name,
            stop.note
        ));
    }
    report.with_exit_code(stop.exit_code)
}

fn finished_event(pass: &Pass, status: RunStatus, note: &str) -> Event {
    Event::new(EventKind::RunFinished, format!("run {} finished: {status} ({note})", pass.run_id))
        .drain(&pass.drain.name)
        .run(pass.run_id)
        .data(json!({ "status": status, "items_done": pass.done, "items_failed": pass.failed, "note": note }))
}

/// Take the first free concurrency slot of the drain; the lock lives as long as the
/// connection, so a crashed pass frees its slot automatically. Passes started before
/// `concurrency` was lowered may hold slots above it: a slot is kept only while the
/// slots held in all, this one included, are at most `concurrency`. Two passes starting
/// together beside such a pass may each count the other and both let go: fewer passes,
/// never more, and the next `supervise` starts what is missing.
fn take_slot(client: &mut Client, drain_id: i32, concurrency: u32) -> Result<Option<u32>> {
    for slot in 0..concurrency {
        let key = drain_slot_key(drain_id, slot);
        if try_advisory_lock(client, key)? {
            let every_slot: Vec<i64> = (0..crate::config::defaults::MAX_CONCURRENCY)
                .map(|slot| drain_slot_key(drain_id, slot))
                .collect();
            let held = crate::db::held_advisory_locks(client, &every_slot)?.len();
            if held > concurrency as usize {
                crate::db::advisory_unlock(client, key)?;
                return Ok(None);
            }
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// The configuration read again by a pass, and the concurrency slots of its drain then:
/// the run goes on with it or ends (see `run`).
struct Reload {
    reloaded: crate::config::watch::Reloaded,
    slots: Slots,
}

/// The concurrency slots of a drain its passes hold, and the one this session holds (a
/// pass that reconnected may hold another than it took first, or none).
struct Slots {
    own: Option<u32>,
    held: Vec<u32>,
}

impl Slots {
    fn now(client: &mut Client, drain_id: i32) -> Result<Slots> {
        let slots: Vec<u32> = (0..crate::config::defaults::MAX_CONCURRENCY).collect();
        let keys: Vec<i64> = slots.iter().map(|slot| drain_slot_key(drain_id, *slot)).collect();
        let held = crate::db::held_advisory_locks_and_own(client, &keys)?;
        let slot_of = |key: i64| keys.iter().position(|k| *k == key).and_then(|at| slots.get(at).copied());
        Ok(Slots {
            own: held.iter().find(|(_, is_own)| *is_own).and_then(|(key, _)| slot_of(*key)),
            held: held.iter().filter_map(|(key, _)| slot_of(*key)).collect(),
        })
    }
}

/// How one item ended, for the pass loop.
enum ItemEnd {
    /// Succeeded: its result is staged and committed later, and the commit records the
    /// item's end on the run.
    Succeeded,
    /// Failed, released or lost: the pass goes on.
    Settled,
    /// The pass must stop.
    Stop(Stop),
}

struct Pass<'a> {
    config: &'a Config,
    drain: &'a DrainConfig,
    group: &'a QuotaGroupConfig,
    clock: &'a Clock,
    client: &'a mut Client,
    /// Where the events the notifier wants wait for it.
    outbox: &'a Outbox,
    classifier: Classifier,
    run_id: i64,
    /// The drain's row id: the keys of its concurrency slots.
    drain_id: i32,
    trigger: Trigger,
    started_at: DateTime<Utc>,
    done: u32,
    failed: u32,
    /// Items settled `skipped_missing` at their claim: their source file was gone.
    skipped: u32,
    /// Items dead-lettered at their claim without an attempt: they had used `max_attempts`.
    dead_unrun: u32,
    /// The account of the current item carries a suspected mark that a success clears.
    is_account_suspected: bool,
    /// The per-item statements, parsed and planned once per pass.
    statements: PreparedStatements,
    /// A succeeded item whose result is staged with the next claim.
    unstaged: Option<SucceededItem>,
    /// The previous item's commit that failed after the worker that ran beside it: the
    /// pass ends on it once that worker's end is settled (see `run_item`).
    commit_failed: Option<Error>,
    /// A staged result not committed yet (see `StagedItem`).
    staged: Option<StagedItem>,
    /// The drain's priority and the other drains of its quota group, for the claim.
    rivals: std::rc::Rc<items::GroupRivals>,
    /// Since when the pass yields to a higher-ranking drain of its group (see `wait`).
    yielding_since: Option<DateTime<Utc>>,
    /// Seconds spent holding no item: waiting for a reset, yielding (see `wait`).
    idle_seconds: f64,
    /// What this pass's attempts cost, as their workers reported it, in pico-dollars.
    cost_picousd: i128,
    /// The cost budget reached before the latest claim, with the `budget_reached` event
    /// recorded when the pass ends for it (docs/results.md).
    cost_stop: Option<(Stop, Event)>,
    /// How long the pass's latest worker ran, from its start to its end.
    last_worker_took: Option<std::time::Duration>,
    /// The next item, claimed while the latest worker ran (see `Pass::claim_ahead`).
    claimed_ahead: Option<items::ClaimedItem>,
    /// Why the pass stops once the item it holds is settled (see `reconnect`).
    stop_after_item: Option<Stop>,
    /// When the pass found its database session ended, until a step goes through on a
    /// new one: sessions that end again as soon as they are opened are replaced within
    /// one `RECONNECT_FOR` from here, not one each (see `reconnect`).
    session_lost_since: Option<std::time::Instant>,
    /// The run's row was found another pass's (or missing) on a new session: why. The pass
    /// writes nothing more (see `reconnect`).
    run_lost: Option<String>,
    /// This pass continues one whose time budget ended before the reset (see `run`).
    is_continuation: bool,
    /// The pass waited for a reset (see `wait`).
    has_waited: bool,
    /// Server errors of different items in a row in this pass, and the item of the last
    /// (see `wait::server_error_pause`).
    server_errors_in_a_row: u32,
    last_server_error_item: Option<i64>,
    /// Until when the next item waits for the vendor's servers, and why.
    servers_failing_until: Option<(DateTime<Utc>, String)>,
    /// The reset a new pass of this process waits for once this one ends: its time budget
    /// ended before it (see `wait`).
    continues_at: Option<DateTime<Utc>>,
    /// The configuration file as this pass read it (see [`crate::config::watch`]).
    config_watch: crate::config::watch::ConfigWatch,
    /// The file read again, changed in something the pass goes by: the run goes on with
    /// it (see `run`).
    reloaded: Option<Reload>,
}

struct SucceededItem {
    item: StagedItem,
    result: Vec<u8>,
}

/// A result this pass staged but has not committed yet. Its commit waits for the next
/// worker to start and then runs while that worker does, so the database round trip
/// costs no time of its own; when no worker follows (the pass stops, the next item does
/// not reach a worker), it is committed before anything else. Staging made it safe: a
/// crash before the commit leaves it to the reaper, which verifies and commits it.
struct StagedItem {
    id: i64,
    key: String,
    account: String,
    /// The account carried a suspected mark when the item was claimed: a success clears it.
    clears_suspicion: bool,
}
