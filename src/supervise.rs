//! `drainctl supervise`: one short pass over every configured drain — the command cron
//! runs every 15 minutes. It spends no worker quota.
//!
//! The pass first scans the source of every drain that has one (see `sources`), so the
//! decisions see the files it enqueued. It then takes a snapshot (controls, backoff,
//! running runs and whether each run's process is alive, whether an item is available,
//! when each drain's latest pass started — all index-backed, never counting the backlog),
//! turns it into a list of [`Decision`]s with a pure [`plan`], then applies them: expire
//! bursts, reap crashed runs, end hung runs (TERM, then KILL), and start idle drains as
//! detached `drainctl drain` processes — a drain with `every` at most once per interval
//! (not in burst). After recording the pass it prunes old history, at most once a day.
//! `--dry-run` prints the plan and changes nothing (no scan, no prune). Two overlapping
//! passes never both act: the second records `lock_skipped`.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::{DateTime, DurationRound, Utc};
use chrono_tz::Tz;
use postgres::Client;
use serde::Serialize;
use serde_json::json;

use crate::accounts::GroupView;
use crate::cli::SuperviseArgs;
use crate::config::{Config, DrainConfig};
use crate::context::Context;
use crate::db::backoffs::{read_group_backoffs, BackoffRow};
use crate::db::drains::{clear_burst, ensure_drain, ensure_drains, read_controls, DrainControls};
use crate::db::events::{record_event, record_event_or_log, Event, Outbox};
use crate::db::items::drains_with_available_items;
use crate::db::passes::{insert_pass, PassRecord};
use crate::db::runs::{last_run_starts, running_runs, RunRow};
use crate::db::{advisory_unlock, try_advisory_lock, SUPERVISE_LOCK_KEY};
use crate::error::{Error, Result, EXIT_INTERNAL, EXIT_OK};
use crate::model::{EventKind, PassStatus, RunStatus, Trigger};
use crate::output::{local_time as local, table, Report};
use crate::schedule::cadence;
use crate::worker::process;

/// The longest a pass waits for a row lock before it gives up on that decision.
const SUPERVISE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the pass does (or would do) about one drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    ExpireBurst,
    ReapCrashed,
    KillHung,
    Start,
    Skip,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub drain: String,
    pub action: Action,
    pub reason: String,
    pub run_id: Option<i64>,
    pub trigger: Option<Trigger>,
    /// Filled in when applied: the started process, or what went wrong.
    pub pid: Option<u32>,
    pub log_path: Option<String>,
    pub error: Option<String>,
}

impl Decision {
    fn new(drain: &str, action: Action, reason: impl Into<String>) -> Decision {
        Decision {
            drain: drain.to_string(),
            action,
            reason: reason.into(),
            run_id: None,
            trigger: None,
            pid: None,
            log_path: None,
            error: None,
        }
    }
}

/// A `running` run and whether its process is known to be gone.
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    pub run: RunRow,
    pub is_process_gone: bool,
}

/// Everything the plan needs about one drain.
#[derive(Debug)]
pub struct DrainSnapshot<'a> {
    pub drain: &'a DrainConfig,
    pub controls: Option<DrainControls>,
    /// The quota group's backoff as the plan sees it: until when no account of the group
    /// may be used, and why (empty when one may).
    pub backoff: BackoffRow,
    pub runs: Vec<RunSnapshot>,
    pub has_available_item: bool,
    /// When the drain's latest pass (not lock_skipped) started: what `every` counts from.
    pub last_started_at: Option<DateTime<Utc>>,
    /// A backoff ending within this long does not keep the drain from starting: the pass
    /// waits for the reset itself (the shorter of its `max_wait` and `supervise_interval`).
    pub wake_within: std::time::Duration,
    /// The quota group is parked until an operator clears it (docs/rate-limits.md).
    pub parked: Option<crate::db::quota_groups::Parked>,
}

/// Decide, without side effects, what to do about every drain at `now`: first what ends
/// (expired bursts, crashed and hung runs) for every drain, then what starts.
pub fn plan(snapshots: &[DrainSnapshot], now: DateTime<Utc>, zone: Tz) -> Vec<Decision> {
    let mut decisions = plan_recovery(snapshots, now, zone);
    decisions.extend(plan_starts(snapshots, now, zone));
    decisions
}

/// Is this run healthy (its process there, a checkpoint within `liveness_timeout`)?
fn is_healthy(run: &RunSnapshot, drain: &DrainConfig, now: DateTime<Utc>) -> bool {
    let liveness = chrono::Duration::from_std(drain.liveness_timeout).unwrap_or(chrono::Duration::MAX);
    !run.is_process_gone && now - run.run.last_checkpoint_at <= liveness
}

/// The decisions that end things: expired bursts, crashed runs to reap, hung runs to stop.
/// They are applied before [`plan_starts`] decides on a fresh view, so that an item a
/// hung run held is started again in the same pass (docs/guarantees.md).
pub fn plan_recovery(snapshots: &[DrainSnapshot], now: DateTime<Utc>, zone: Tz) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for snapshot in snapshots {
        let drain = snapshot.drain;
        let name = drain.name.as_str();
        if let Some(until) = snapshot.controls.as_ref().and_then(|c| c.expired_burst(now)) {
            decisions.push(Decision::new(
                name,
                Action::ExpireBurst,
                format!("burst deadline {} passed", local(until, zone)),
            ));
        }
        for run in snapshot.runs.iter().filter(|run| !is_healthy(run, drain, now)) {
            let mut decision = if run.is_process_gone {
                Decision::new(
                    name,
                    Action::ReapCrashed,
                    format!("run {}: process {} on {} is gone", run.run.id, run.run.pid, run.run.host),
                )
            } else {
                let silent_for = now - run.run.last_checkpoint_at;
                Decision::new(
                    name,
                    Action::KillHung,
                    format!(
                        "run {}: no checkpoint for {} (liveness_timeout {})",
                        run.run.id,
                        crate::duration::format_duration(silent_for.to_std().unwrap_or_default()),
                        crate::duration::format_duration(drain.liveness_timeout)
                    ),
                )
            };
            decision.run_id = Some(run.run.id);
            decisions.push(decision);
        }
    }
    decisions
}

/// Whether to start each drain, counting only its healthy runs as busy.
pub fn plan_starts(snapshots: &[DrainSnapshot], now: DateTime<Utc>, zone: Tz) -> Vec<Decision> {
    snapshots
        .iter()
        .map(|snapshot| {
            let busy = snapshot.runs.iter().filter(|run| is_healthy(run, snapshot.drain, now)).count();
            start_decision(snapshot, u32::try_from(busy).unwrap_or(u32::MAX), now, zone)
        })
        .collect()
}

fn start_decision(snapshot: &DrainSnapshot, busy: u32, now: DateTime<Utc>, zone: Tz) -> Decision {
    let drain = snapshot.drain;
    let name = drain.name.as_str();
    let controls = snapshot.controls.as_ref();
    let skip = |reason: String| Decision::new(name, Action::Skip, reason);
    if let Some(controls) = controls.filter(|c| c.is_paused()) {
        return skip(format!("paused ({})", controls.pause_note.as_deref().unwrap_or("no note")));
    }
    if let Some(parked) = &snapshot.parked {
        return skip(parked_reason(parked, zone));
    }
    // A backoff that ends before the next pass does not wait for that pass: the drain is
    // started now and waits for the reset itself (docs/rate-limits.md).
    let mut waits_for_reset = None;
    if let Some(until) = snapshot.backoff.backoff_until.filter(|until| now < *until) {
        let wait = (until - now).to_std().unwrap_or_default();
        if wait > snapshot.wake_within {
            return skip(format!(
                "quota group {} backs off until {} ({})",
                drain.quota_group,
                local(until, zone),
                snapshot.backoff.reason.as_deref().unwrap_or("no reason recorded")
            ));
        }
        waits_for_reset = Some(until);
    }
    if !snapshot.has_available_item {
        return skip("no item available now".to_string());
    }
    if busy >= drain.concurrency {
        return skip(format!("all {} concurrency slot(s) busy", drain.concurrency));
    }
    let start = |trigger: Trigger, reason: String| {
        let reason = match waits_for_reset {
            Some(until) => format!(
                "{reason}; quota group {} backs off until {}, before the next pass: it waits for the reset",
                drain.quota_group,
                local(until, zone)
            ),
            None => reason,
        };
        let mut decision = Decision::new(name, Action::Start, reason);
        decision.trigger = Some(trigger);
        decision
    };
    if let Some(until) = controls.and_then(|c| c.active_burst(now)) {
        return start(Trigger::Burst, format!("in burst until {}", local(until, zone)));
    }
    let reason = match &drain.window {
        None => "items available; no window configured".to_string(),
        Some(window) if window.contains(now, zone) => {
            format!("items available inside window {}", window.describe())
        }
        Some(window) => {
            let opens = window
                .next_opening(now, zone)
                .map(|at| format!("; opens {}", local(at, zone)))
                .unwrap_or_default();
            return skip(format!("outside window {}{opens}", window.describe()));
        }
    };
    let next_start = cadence::next_start(drain.every, snapshot.last_started_at);
    if let Some(next) = next_start.filter(|next| now < *next) {
        let every = drain.every.map(crate::duration::format_duration).unwrap_or_default();
        let wait = crate::duration::format_duration((next - now).to_std().unwrap_or_default());
        return skip(format!("cadence {every}: next start in {wait}"));
    }
    start(Trigger::Supervisor, reason)
}

/// The supervisor's heartbeat: when the last acting `supervise` pass fired, and whether
/// that is longer ago than twice `supervise_interval` — the sign of a broken crontab.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heartbeat {
    pub last_pass_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<f64>,
    pub interval_seconds: f64,
    /// No pass recorded, or the last one is older than twice the interval.
    pub is_late: bool,
}

impl Heartbeat {
    pub fn new(
        last_pass_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        interval: std::time::Duration,
    ) -> Heartbeat {
        let age = last_pass_at.map(|at| now - at);
        let limit = chrono::Duration::from_std(interval.saturating_mul(2)).unwrap_or(chrono::Duration::MAX);
        Heartbeat {
            last_pass_at,
            age_seconds: age.map(|age| age.num_milliseconds() as f64 / 1000.0),
            interval_seconds: interval.as_secs_f64(),
            is_late: age.is_none_or(|age| age > limit),
        }
    }

    /// `last supervise pass 4m ago`, with what to do when it is late.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let Some(at) = self.last_pass_at else {
            return "no supervise pass recorded yet: is its crontab (or pm2) entry installed?".to_string();
        };
        let ago = crate::duration::format_relative(at - now);
        if !self.is_late {
            return format!("last supervise pass {ago}");
        }
        let twice =
            crate::duration::format_duration(std::time::Duration::from_secs_f64(self.interval_seconds * 2.0));
        format!("last supervise pass {ago}, more than {twice} (twice supervise_interval): check its crontab")
    }
}

pub fn run(ctx: &mut Context, args: &SuperviseArgs) -> Result<Report> {
    let started = Instant::now();
    let Context { config, clock, client, outbox } = ctx;
    let outbox: &Outbox = outbox;
    let fired_at = clock.now();
    let scheduled_for = match args.slot {
        Some(at) => at,
        None => {
            let interval = chrono::Duration::from_std(config.defaults.supervise_interval)
                .unwrap_or(chrono::Duration::minutes(15));
            fired_at.duration_trunc(interval).unwrap_or(fired_at)
        }
    };
    let host = process::host_name();
    let pid = std::process::id();
    let record_pass = |client: &mut Client, status: PassStatus, decisions: serde_json::Value| {
        let duration_ms = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let record = PassRecord {
            fired_at,
            scheduled_for,
            host: &host,
            pid: pid as i32,
            status,
            duration_ms,
            decisions,
        };
        insert_pass(client, &record).map(|id| (id, duration_ms))
    };
    if !args.dry_run && !try_advisory_lock(client, SUPERVISE_LOCK_KEY)? {
        record_pass(client, PassStatus::LockSkipped, json!([]))?;
        return Ok(Report::new(
            "supervise: lock_skipped: another supervise pass is running",
            json!({
                "status": PassStatus::LockSkipped,
                "fired_at": fired_at,
                "scheduled_for": scheduled_for,
                "decisions": [],
                "scans": [],
                "prune": null,
            }),
        ));
    }
    // Never wait long behind a lock held by a frozen drain: fail that decision instead.
    crate::db::set_lock_timeout(client, SUPERVISE_LOCK_WAIT)?;
    let zone = config.defaults.timezone;
    let mut had_error = false;
    let mut textfile_exit_code = None;
    // Feed the drains with sources first, so the decisions see what the scans enqueued.
    let mut scans = Vec::new();
    if !args.dry_run {
        for drain in config.drains.iter().filter(|drain| drain.source.is_some()) {
            let scanned = crate::sources::scan(client, outbox, drain, clock.now());
            scans.push(scanned.unwrap_or_else(|error| {
                had_error = true;
                let message = error.display_scrubbed();
                let what = format!("could not scan the source of drain {}: {message}", drain.name);
                record_failure(client, outbox, Some(&drain.name), what, clock.now());
                crate::sources::ScanReport::failed(drain, message)
            }));
        }
    }
    let mut snapshots = take_snapshot(client, config, fired_at, args.dry_run)?;
    // End what must end first, then decide the starts on what that left.
    let mut decisions = plan_recovery(&snapshots, fired_at, zone);
    let mut pruned = None;
    if !args.dry_run {
        // The running runs the decisions were made on are the ones they act on.
        let runs: Vec<RunRow> = snapshots.iter().flat_map(|s| s.runs.iter().map(|r| r.run.clone())).collect();
        apply_all(client, outbox, config, clock, &runs, &mut decisions, fired_at, &mut had_error);
        let released = crate::reap::release_orphaned_items(client, outbox, config, clock, None)
            .unwrap_or_else(|error| {
                had_error = true;
                let what = format!("could not release orphaned items: {}", error.display_scrubbed());
                record_failure(client, outbox, None, what, clock.now());
                0
            });
        let has_ended_runs =
            decisions.iter().any(|d| matches!(d.action, Action::ReapCrashed | Action::KillHung));
        if has_ended_runs || released > 0 {
            // Items the ended runs held are pending again: see them before deciding starts.
            let names: Vec<String> = config.drains.iter().map(|d| d.name.clone()).collect();
            let available = drains_with_available_items(client, &names, clock.now())?;
            for snapshot in snapshots.iter_mut() {
                snapshot.has_available_item = available.contains(&snapshot.drain.name);
            }
        }
    }
    let first_start = decisions.len();
    decisions.extend(plan_starts(&snapshots, fired_at, zone));
    if !args.dry_run {
        apply_all(
            client,
            outbox,
            config,
            clock,
            &[],
            &mut decisions[first_start..],
            fired_at,
            &mut had_error,
        );
        let (pass_id, duration_ms) = record_pass(
            client,
            PassStatus::Done,
            serde_json::to_value(&decisions).unwrap_or_else(|_| json!([])),
        )?;
        // Retention, at most once a day.
        match crate::prune::prune_if_due(client, outbox, config, clock.now()) {
            Ok(report) => pruned = report,
            Err(error) => {
                had_error = true;
                let what = format!("could not prune old history: {}", error.display_scrubbed());
                record_failure(client, outbox, None, what, clock.now());
            }
        }
        if let Some(path) = &config.defaults.metrics_textfile {
            let written = crate::metrics::render_metrics(client, config, clock.now())
                .and_then(|text| crate::metrics::write_textfile(path, &text));
            if let Err(error) = written {
                // When nothing else failed, the pass exits with this error's code: 78 for
                // a missing folder or a path that is not a regular file.
                if !had_error {
                    textfile_exit_code = Some(error.exit_code());
                }
                had_error = true;
                let what = format!(
                    "could not write metrics_textfile {}: {}",
                    path.display(),
                    error.display_scrubbed()
                );
                record_failure(client, outbox, None, what, clock.now());
            }
        }
        advisory_unlock(client, SUPERVISE_LOCK_KEY)?;
        log::info!("supervise pass {pass_id}: {} decisions in {duration_ms} ms", decisions.len());
    }
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            let mut reason = d.reason.clone();
            if let Some(pid) = d.pid {
                reason.push_str(&format!(" [pid {pid}]"));
            }
            if let Some(error) = &d.error {
                reason.push_str(&format!(" — FAILED: {error}"));
            }
            let action = serde_json::to_value(d.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            vec![d.drain.clone(), action, reason]
        })
        .collect();
    let mut human = if args.dry_run { "dry run: nothing was changed\n".to_string() } else { String::new() };
    human.push_str(&table(&["DRAIN", "ACTION", "REASON"], &rows));
    for scan in &scans {
        human.push_str(&format!("scan {}: {}\n", scan.drain, scan.summary()));
        human.push_str(&scan.refused_lines());
    }
    if let Some(pruned) = &pruned {
        human.push_str(&format!("prune: {}\n", pruned.summary()));
    }
    let report = Report::new(
        human,
        json!({
            "status": if args.dry_run { "dry_run" } else { "done" },
            "fired_at": fired_at,
            "scheduled_for": scheduled_for,
            "decisions": decisions,
            "scans": scans,
            "prune": pruned,
        }),
    );
    let exit_code = match (had_error, textfile_exit_code) {
        (false, _) => EXIT_OK,
        (true, Some(code)) => code,
        (true, None) => EXIT_INTERNAL,
    };
    Ok(report.with_exit_code(exit_code))
}

/// A step of the pass that failed: it is logged and recorded as a `supervise_error`
/// event, and the pass goes on (it exits 70 at the end; when only the metrics textfile
/// failed, with that error's code).
fn record_failure(
    client: &mut Client,
    outbox: &Outbox,
    drain: Option<&str>,
    message: String,
    now: DateTime<Utc>,
) {
    log::error!("supervise: {message}");
    let mut event = Event::new(EventKind::SuperviseError, message);
    if let Some(drain) = drain {
        event = event.drain(drain);
    }
    record_event_or_log(client, outbox, &event, now);
}

fn take_snapshot<'a>(
    client: &mut Client,
    config: &'a Config,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<DrainSnapshot<'a>>> {
    let names: Vec<String> = config.drains.iter().map(|d| d.name.clone()).collect();
    if !dry_run {
        ensure_drains(client, &names, now)?;
    }
    let controls = read_controls(client, &names)?;
    let runs = running_runs(client, None)?;
    let groups: Vec<String> = config.quota_groups.iter().map(|g| g.name.clone()).collect();
    let backoff_rows = read_group_backoffs(client, &groups)?;
    // Only groups with accounts to switch between have a choice of account to read.
    let switching: Vec<String> =
        config.quota_groups.iter().filter(|g| g.has_accounts_to_switch()).map(|g| g.name.clone()).collect();
    let group_states = if switching.is_empty() {
        Vec::new()
    } else {
        crate::db::quota_groups::read_groups(client, &switching)?
    };
    let available = drains_with_available_items(client, &names, now)?;
    let parked = crate::db::quota_groups::read_parked(client, &groups)?;
    let last_starts = last_run_starts(client, &names)?;
    let mut snapshots = Vec::with_capacity(config.drains.len());
    for drain in &config.drains {
        let group = config.quota_group(&drain.quota_group)?;
        let state = group_states.iter().find(|(name, _)| *name == group.name).map(|(_, s)| s.clone());
        let view = GroupView::new(group, &backoff_rows, state.unwrap_or_default());
        let mut backoff = BackoffRow { quota_group: group.name.clone(), ..BackoffRow::default() };
        if let Some((until, reason)) = view.wait(now) {
            backoff.backoff_until = Some(until);
            backoff.reason = Some(reason);
        }
        snapshots.push(DrainSnapshot {
            drain,
            controls: controls.iter().find(|c| c.name == drain.name).cloned(),
            backoff,
            runs: runs
                .iter()
                .filter(|run| run.drain == drain.name)
                .map(|run| RunSnapshot { run: run.clone(), is_process_gone: crate::reap::is_crashed(run) })
                .collect(),
            has_available_item: available.contains(&drain.name),
            last_started_at: last_starts.iter().find(|(name, _)| *name == drain.name).map(|(_, at)| *at),
            wake_within: drain.max_wait.min(config.defaults.supervise_interval),
            parked: parked.iter().find(|parked| parked.quota_group == group.name).cloned(),
        });
    }
    Ok(snapshots)
}

/// Apply `decisions` in order; a failed one is recorded (see `record_failure`) and the
/// pass goes on.
#[allow(clippy::too_many_arguments)]
fn apply_all(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &crate::clock::Clock,
    runs: &[RunRow],
    decisions: &mut [Decision],
    now: DateTime<Utc>,
    had_error: &mut bool,
) {
    for decision in decisions.iter_mut() {
        if let Err(error) = apply(client, outbox, config, clock, runs, decision, now) {
            *had_error = true;
            let message = error.display_scrubbed();
            let what = format!("could not {:?} drain {}: {message}", decision.action, decision.drain);
            record_failure(client, outbox, Some(&decision.drain), what, clock.now());
            decision.error = Some(message);
        }
    }
}

fn apply(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &crate::clock::Clock,
    runs: &[RunRow],
    decision: &mut Decision,
    now: DateTime<Utc>,
) -> Result<()> {
    let find_run = |run_id: Option<i64>| runs.iter().find(|run| Some(run.id) == run_id);
    match decision.action {
        Action::Skip => Ok(()),
        Action::ExpireBurst => expire_burst(client, outbox, config, &decision.drain, now),
        Action::ReapCrashed => {
            if let Some(run) = find_run(decision.run_id) {
                crate::reap::end_run(
                    client,
                    outbox,
                    config,
                    clock,
                    run,
                    RunStatus::Crashed,
                    &decision.reason,
                )?;
            }
            Ok(())
        }
        Action::KillHung => {
            if let Some(run) = find_run(decision.run_id) {
                end_hung_run(client, outbox, config, clock, run, &decision.reason)?;
            }
            Ok(())
        }
        Action::Start => {
            let (pid, log_path) =
                start_drain(config, &decision.drain, decision.trigger.unwrap_or(Trigger::Supervisor), now)?;
            decision.pid = Some(pid);
            decision.log_path = Some(log_path.display().to_string());
            Ok(())
        }
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
    let Some(until) = controls.expired_burst(now) else { return Ok(()) };
    let mut transaction = client.transaction()?;
    if !clear_burst(&mut transaction, drain, Some(until))? {
        return Ok(());
    }
    let event = Event::new(
        EventKind::BurstExpired,
        format!("burst of {drain} expired at {}", local(until, config.defaults.timezone)),
    )
    .drain(drain)
    .data(json!({ "burst_until": until, "note": controls.burst_note }));
    record_event(&mut transaction, outbox, &event, now)?;
    transaction.commit()?;
    Ok(())
}

/// Mark a hung run `hung` and release its items (fencing refuses its late commits), then
/// stop its worker group and its own process if they are on this host.
fn end_hung_run(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &crate::clock::Clock,
    run: &RunRow,
    reason: &str,
) -> Result<()> {
    if crate::reap::end_run(client, outbox, config, clock, run, RunStatus::Hung, reason)?.is_none() {
        return Ok(());
    }
    if !crate::reap::is_this_hosts(run) {
        return Ok(());
    }
    let Ok(pid) = u32::try_from(run.pid) else { return Ok(()) };
    match process::terminate_process(
        pid,
        run.process_start_time.map(|t| t as u64),
        config.defaults.kill_grace,
    ) {
        Ok(outcome) => log::info!("hung run {}: drain process {pid} {outcome:?}", run.id),
        Err(error) => {
            let message = format!("hung run {}: could not stop drain process {pid}: {error}", run.id);
            log::error!("{message}");
            let event = Event::new(EventKind::KillFailed, message).drain(&run.drain).run(run.id);
            record_event_or_log(client, outbox, &event, clock.now());
        }
    }
    Ok(())
}

/// Spawn `drainctl drain NAME` detached: its own session (so cron or pm2 killing the
/// supervisor's process group does not reach it), stdin from /dev/null, stdout and stderr
/// to an owner-only log file. Returns at once with its pid.
fn start_drain(config: &Config, drain: &str, trigger: Trigger, now: DateTime<Utc>) -> Result<(u32, PathBuf)> {
    let log_path = create_log_file_path(config, drain, now)?;
    let log = OpenOptions::new().create(true).append(true).mode(0o600).open(&log_path).map_err(|error| {
        Error::Config(format!("cannot create log file {}: {error}; check log_dir", log_path.display()))
    })?;
    let log_for_stderr = log
        .try_clone()
        .map_err(|error| Error::Internal(format!("cannot duplicate log file handle: {error}")))?;
    let exe = std::env::current_exe()
        .map_err(|error| Error::Internal(format!("cannot find the drainctl executable: {error}")))?;
    let mut command = Command::new(exe);
    if let Some(path) = &config.path {
        command.arg("--config").arg(path);
    }
    command
        .args(["drain", drain, "--trigger", trigger.as_str(), "--log-file"])
        .arg(&log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_for_stderr));
    // SAFETY: setsid() is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|error| Error::Internal(format!("cannot start `drainctl drain {drain}`: {error}")))?;
    let pid = child.id();
    // Not waited for: the drain outlives this pass and is reparented when we exit.
    drop(child);
    log::info!("started drain {drain} ({trigger}) as pid {pid}, log {}", log_path.display());
    Ok((pid, log_path))
}

/// `log_dir/NAME/YYYYmmddTHHMMSSZ-PID.log`, folders created owner-only.
fn create_log_file_path(config: &Config, drain: &str, now: DateTime<Utc>) -> Result<PathBuf> {
    let dir = config.defaults.log_dir.join(drain);
    DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|error| {
        Error::Config(format!("cannot create log folder {}: {error}; check log_dir", dir.display()))
    })?;
    Ok(dir.join(format!("{}-{}.log", now.format("%Y%m%dT%H%M%SZ"), std::process::id())))
}

/// Why a drain of a parked group is not started.
fn parked_reason(parked: &crate::db::quota_groups::Parked, zone: Tz) -> String {
    format!(
        "quota group {} is parked since {} (needs attention: {}); `drainctl resume --group {}` once it is fixed",
        parked.quota_group,
        local(parked.parked_at, zone),
        parked.reason,
        parked.quota_group
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn config() -> Config {
        Config::from_text(
            "[defaults]\ntimezone = \"Asia/Jerusalem\"\n\
             [[drain]]\nname = \"a\"\ncommand = [\"w\"]\nwindow = { days = \"sun-thu\", from = \"22:00\", to = \"06:00\" }\n",
            None,
        )
        .unwrap()
    }

    fn snapshot(drain: &DrainConfig) -> DrainSnapshot<'_> {
        DrainSnapshot {
            drain,
            controls: None,
            backoff: BackoffRow::default(),
            runs: Vec::new(),
            has_available_item: true,
            last_started_at: None,
            wake_within: std::time::Duration::ZERO,
            parked: None,
        }
    }

    fn controls(burst_until: Option<DateTime<Utc>>, paused: bool) -> DrainControls {
        DrainControls {
            id: 1,
            name: "a".into(),
            paused_at: paused.then(Utc::now),
            pause_note: paused.then(|| "maintenance".into()),
            burst_until,
            burst_note: None,
            burst_started_at: None,
        }
    }

    // Thursday 2026-11-26 23:00 Jerusalem (UTC+2) = 21:00Z: inside sun-thu 22:00-06:00.
    fn inside() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 21, 0, 0).unwrap()
    }
    // Friday 2026-11-27 12:00 Jerusalem: outside.
    fn outside() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
    }

    fn only(decisions: Vec<Decision>) -> Decision {
        assert_eq!(decisions.len(), 1, "{decisions:?}");
        decisions.into_iter().next().unwrap()
    }

    #[test]
    fn window_decides_when_not_in_burst() {
        let config = config();
        let zone = config.defaults.timezone;
        let start = only(plan(&[snapshot(&config.drains[0])], inside(), zone));
        assert_eq!((start.action, start.trigger), (Action::Start, Some(Trigger::Supervisor)));
        let skip = only(plan(&[snapshot(&config.drains[0])], outside(), zone));
        assert_eq!(skip.action, Action::Skip);
        assert!(
            skip.reason.contains("outside window sun-thu 22:00-06:00; opens Sun 2026-11-29 22:00 IST"),
            "{}",
            skip.reason
        );
    }

    #[test]
    fn burst_overrides_the_window_until_its_deadline() {
        let config = config();
        let zone = config.defaults.timezone;
        let mut s = snapshot(&config.drains[0]);
        s.controls = Some(controls(Some(outside() + chrono::Duration::hours(1)), false));
        let start = only(plan(&[s], outside(), zone));
        assert_eq!((start.action, start.trigger), (Action::Start, Some(Trigger::Burst)));
        let mut s = snapshot(&config.drains[0]);
        s.controls = Some(controls(Some(outside() - chrono::Duration::minutes(1)), false));
        let decisions = plan(&[s], outside(), zone);
        assert_eq!(decisions[0].action, Action::ExpireBurst);
        assert_eq!(decisions[1].action, Action::Skip);
    }

    #[test]
    fn paused_backing_off_empty_and_busy_drains_are_skipped_with_reasons() {
        let config = config();
        let zone = config.defaults.timezone;
        let drain = &config.drains[0];
        let mut paused = snapshot(drain);
        paused.controls = Some(controls(None, true));
        assert!(only(plan(&[paused], inside(), zone)).reason.starts_with("paused (maintenance)"));
        let mut backing_off = snapshot(drain);
        backing_off.backoff.backoff_until = Some(inside() + chrono::Duration::minutes(30));
        backing_off.backoff.reason = Some("usage limit reached".into());
        assert!(only(plan(&[backing_off], inside(), zone)).reason.contains("backs off until"));
        let mut empty = snapshot(drain);
        empty.has_available_item = false;
        assert_eq!(only(plan(&[empty], inside(), zone)).reason, "no item available now");
        let mut parked = snapshot(drain);
        parked.parked = Some(crate::db::quota_groups::Parked {
            quota_group: drain.quota_group.clone(),
            parked_at: inside(),
            reason: "insufficient_quota".into(),
        });
        let decision = only(plan(&[parked], inside(), zone));
        assert_eq!(decision.action, Action::Skip);
        assert!(decision.reason.starts_with("quota group a is parked since"), "{}", decision.reason);
        assert!(decision.reason.contains("resume --group a"), "{}", decision.reason);
    }

    #[test]
    fn cadence_allows_one_start_per_interval_counted_from_the_last_start_except_in_burst() {
        let config = Config::from_text(
            "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"a\"\ncommand = [\"w\"]\nevery = \"1h\"\n\
             [[drain]]\nname = \"b\"\ncommand = [\"w\"]\nevery = \"1h\"\n\
             window = { days = \"sun-thu\", from = \"22:00\", to = \"06:00\" }\n",
            None,
        )
        .unwrap();
        let zone = config.defaults.timezone;
        let drain = &config.drains[0];
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let with_last_start = |last: Option<&str>| {
            let mut s = snapshot(drain);
            s.last_started_at = last.map(at);
            s
        };
        // Never ran: start.
        assert_eq!(only(plan(&[with_last_start(None)], inside(), zone)).action, Action::Start);
        // Started 23:00Z (whatever became of that pass): not again before midnight.
        for (now, expected) in [
            ("2026-11-26T23:37:00Z", "cadence 1h: next start in 23m"),
            ("2026-11-26T23:59:59Z", "cadence 1h: next start in 1s"),
        ] {
            let decision = only(plan(&[with_last_start(Some("2026-11-26T23:00:00Z"))], at(now), zone));
            assert_eq!((decision.action, decision.reason.as_str()), (Action::Skip, expected));
        }
        let due =
            only(plan(&[with_last_start(Some("2026-11-26T23:00:00Z"))], at("2026-11-27T00:00:00Z"), zone));
        assert_eq!(due.action, Action::Start);
        // A burst ignores the cadence.
        let mut burst = with_last_start(Some("2026-11-26T23:00:00Z"));
        burst.controls = Some(controls(Some(at("2026-11-27T06:00:00Z")), false));
        let started = only(plan(&[burst], at("2026-11-26T23:10:00Z"), zone));
        assert_eq!((started.action, started.trigger), (Action::Start, Some(Trigger::Burst)));
        // A closed window is the reason given, not the cadence.
        let mut windowed = snapshot(&config.drains[1]);
        windowed.last_started_at = Some(outside() - chrono::Duration::minutes(5));
        assert!(only(plan(&[windowed], outside(), zone)).reason.starts_with("outside window"));
    }
}
