//! `drainctl supervise`: one short pass over every configured drain — the command cron
//! runs every 15 minutes. It spends no worker quota.
//!
//! The pass first scans the source of every drain that has one (see `sources`), so the
//! decisions see the files it enqueued. It then takes a snapshot (controls, backoff,
//! running runs and whether each run's process is alive, whether an item is available,
//! when each drain's latest pass started — all index-backed, never counting the backlog),
//! turns it into a list of [`Decision`]s with the pure functions of `plan`, then applies
//! them (`apply`): expire bursts, reap crashed runs, end hung runs (TERM, then KILL), and
//! start idle drains as detached `drainctl drain` processes — a drain with `every` at most
//! once per interval (not in burst). After recording the pass it prunes old history, at
//! most once a day. `--dry-run` prints the plan and changes nothing (no scan, no prune).
//! Two overlapping passes never both act: the second records `lock_skipped`, naming the
//! holder, and reports one holding the lock too long (docs/operations.md).

mod apply;
pub(crate) mod clock_went_back;
mod plan;
pub(crate) use plan::silent_beyond_liveness;
pub(crate) use snapshot::held_slots;
mod snapshot;

use std::time::Instant;

use chrono::{DateTime, DurationRound, Timelike, Utc};
use postgres::Client;
use serde::Serialize;
use serde_json::json;

use crate::cli::SuperviseArgs;
use crate::clock::Clock;
use crate::config::Config;
use crate::context::Context;
use crate::db::events::{record_event_or_log, Event, Outbox};
use crate::db::passes::{insert_pass, PassRecord};
use crate::db::runs::RunRow;
use crate::db::{advisory_unlock, try_advisory_lock, SUPERVISE_LOCK_KEY};
use crate::error::{worse_exit_code, Error, Result};
use crate::model::{EventKind, PassStatus};
use crate::output::{table, Report};
use crate::worker::{process, signals};

use apply::apply_all;
use plan::{plan_recovery, plan_starts, plan_unconfigured, plan_unconfigured_bursts};
pub use plan::{shown_reason, Action, Decision};
use snapshot::take_snapshot;

/// The longest a pass waits for a row lock before it gives up on that decision.
const SUPERVISE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The supervisor's heartbeat: when the last acting `supervise` pass fired, and whether
/// that is longer ago than twice `supervise_interval` — the sign of a broken crontab.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heartbeat {
    pub last_pass_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<f64>,
    pub interval_seconds: f64,
    /// No pass recorded, or the last one is older than twice the interval.
    pub is_late: bool,
    /// The passes since the last acting one were skipped because another pass holds the
    /// supervise lock (None when none was skipped, or nobody holds the lock now).
    pub lock_held: Option<LockHeld>,
}

/// Another `supervise` pass holds the supervise lock, and the passes since the last
/// acting one were skipped for it (docs/operations.md, "A stuck supervise pass").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockHeld {
    /// The session holding the lock.
    pub holder: crate::db::LockHolder,
    /// Since when it holds the lock at the latest: when the first pass skipped since the
    /// last acting one fired (drainctl's clock, as the heartbeat; the holder's session
    /// may have connected earlier, on the server's clock: see `holder`).
    pub since: DateTime<Utc>,
    /// How many passes were skipped since the last acting one.
    pub skipped_passes: i64,
}

impl LockHeld {
    /// Read who holds the supervise lock and the passes skipped since the last acting
    /// one; None when nobody holds it or no pass was skipped.
    pub fn read(client: &mut Client) -> Result<Option<LockHeld>> {
        let Some((skipped_passes, first_skipped)) = crate::db::passes::skipped_since_last_done(client)?
        else {
            return Ok(None);
        };
        let holders = crate::db::advisory_lock_holders(client, SUPERVISE_LOCK_KEY)?;
        let Some(holder) = holders.into_iter().next() else { return Ok(None) };
        Ok(Some(LockHeld { holder, since: first_skipped, skipped_passes }))
    }

    /// Since when the holder has held the lock at the latest: the first skipped pass, or
    /// when its session connected if that was later (the passes before were skipped for
    /// another holder) — on the server's clock, so only when that is not after `now`.
    fn held_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.holder.connected_at {
            Some(connected) if connected > self.since && connected <= now => connected,
            _ => self.since,
        }
    }

    /// Has it held the lock longer than twice `interval` (it is stuck: stopped, frozen)?
    pub fn is_stuck(&self, now: DateTime<Utc>, interval: std::time::Duration) -> bool {
        let limit = chrono::Duration::from_std(interval.saturating_mul(2)).unwrap_or(chrono::Duration::MAX);
        now - self.held_since(now) > limit
    }

    /// What to do about it once it is stuck.
    fn advice(&self) -> String {
        format!(
            "it is stuck (a stopped or frozen process?): end that process, or its session with \
             SELECT pg_terminate_backend({}), and the next pass acts (docs/operations.md)",
            self.holder.pid
        )
    }

    /// `backend pid 4242 (…) has held the supervise lock since at least 2026-11-27 12:00:00
    /// IST (3h ago)`, instants in `zone`. Not since before its session connected: the
    /// passes skipped before it may have been skipped for another holder.
    pub fn describe(&self, now: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
        let since = self.held_since(now);
        format!(
            "{} has held the supervise lock since at least {} ({})",
            self.holder.describe(zone),
            crate::output::local_second(since, zone),
            crate::duration::format_relative(since - now)
        )
    }
}

/// How far ahead of the clock the last pass may be before the heartbeat no longer trusts
/// it: beyond the skew of two hosts' clocks.
const FUTURE_PASS_TOLERANCE: chrono::Duration = crate::clock::WENT_BACK_TOLERANCE;

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
            // A last pass ahead of this clock (it went back) tells nothing of whether cron
            // still runs supervise: late until a pass is recorded on this clock.
            is_late: age.is_none_or(|age| age > limit || -age > FUTURE_PASS_TOLERANCE),
            lock_held: None,
        }
    }

    /// The heartbeat as the database has it: the last acting pass and, only when that is
    /// late, who holds the supervise lock the passes since were skipped for (what
    /// `status`, `doctor` and the page show).
    pub fn read(client: &mut Client, now: DateTime<Utc>, interval: std::time::Duration) -> Result<Heartbeat> {
        let last = crate::db::passes::last_pass(client)?.map(|(at, _)| at);
        let mut heartbeat = Heartbeat::new(last, now, interval);
        if heartbeat.is_late {
            heartbeat.lock_held = LockHeld::read(client)?;
        }
        Ok(heartbeat)
    }

    /// What to do of `held`: end it when it is stuck; else wait, as it took the lock lately
    /// (a new holder, when the passes before were skipped for another one).
    fn what_to_do(&self, held: &LockHeld, now: DateTime<Utc>) -> String {
        if held.is_stuck(now, std::time::Duration::from_secs_f64(self.interval_seconds)) {
            held.advice()
        } else {
            "it took the lock lately: the passes after it act once it is done".to_string()
        }
    }

    /// `last supervise pass 4m ago`, with what to do when it is late; an instant in `zone`.
    pub fn describe(&self, now: DateTime<Utc>, zone: chrono_tz::Tz) -> String {
        let Some(at) = self.last_pass_at else {
            // Passes ran, and were skipped for a first one that holds the lock: not cron's fault.
            if let Some(held) = &self.lock_held {
                return format!(
                    "no supervise pass has acted yet: {} so far {} skipped because another supervise pass holds \
                     the lock: {}; {}",
                    crate::output::counted(held.skipped_passes, "pass"),
                    if held.skipped_passes == 1 { "was" } else { "were" },
                    held.describe(now, zone),
                    self.what_to_do(held, now)
                );
            }
            return "no supervise pass recorded yet: is its crontab (or pm2) entry installed, and does it reach \
                    the database (see its --log-file)?"
                .to_string();
        };
        let ago = crate::duration::format_relative(at - now);
        if !self.is_late {
            return format!("last supervise pass {ago}");
        }
        if at - now > FUTURE_PASS_TOLERANCE {
            return format!(
                "last supervise pass recorded at {}, {} ahead of this clock: the clock went back; \
                 the heartbeat counts again from the next pass (check its crontab if none comes)",
                crate::output::local_second(at, zone),
                crate::duration::format_duration((at - now).to_std().unwrap_or_default())
            );
        }
        let twice =
            crate::duration::format_duration(std::time::Duration::from_secs_f64(self.interval_seconds * 2.0));
        match &self.lock_held {
            Some(held) => format!(
                "last supervise pass {ago}, more than {twice} (twice supervise_interval): the {} passes since \
                 were skipped because another supervise pass holds the lock: {}; {}",
                held.skipped_passes,
                held.describe(now, zone),
                self.what_to_do(held, now)
            ),
            None => format!(
                "last supervise pass {ago}, more than {twice} (twice supervise_interval): check its crontab \
                 and its --log-file"
            ),
        }
    }
}

/// The drains a pass starts read the configuration again, by its path: one that can be
/// read only by this process — a descriptor it was handed (`--config /dev/stdin`,
/// `/dev/fd/N`, whatever it reads: a file redirected to stdin too), or a pipe — is refused
/// (78) before anything is written (docs/configuration.md). `path` is `--config`, or
/// `None` for the file drainctl looks for.
pub fn refuse_a_configuration_read_once(path: Option<&std::path::Path>) -> Result<()> {
    let Some(path) = crate::config::Config::locate(path) else { return Ok(()) };
    let shown = path.display();
    if crate::config::leads_through_a_descriptor(&path) {
        return Err(Error::Config(format!(
            "supervise hands its configuration file to the drains it starts, and {shown} names a descriptor \
             handed to this process, or a file in a folder one names, which they cannot open by that path; \
             give --config the file itself"
        )));
    }
    // A missing or unreadable file, a folder and a device are named by the load that
    // follows, for what they are.
    let is_read_once = |metadata: std::fs::Metadata| {
        use std::os::unix::fs::FileTypeExt;
        metadata.file_type().is_fifo() || metadata.file_type().is_socket()
    };
    if std::fs::metadata(&path).is_ok_and(is_read_once) {
        return Err(Error::Config(format!(
            "supervise hands its configuration file to the drains it starts, and {shown} is not a regular \
             file (a pipe is read once); give --config a file"
        )));
    }
    Ok(())
}

pub fn run(ctx: &mut Context, args: &SuperviseArgs) -> Result<Report> {
    let started = Instant::now();
    let schema_created = ctx.schema_created;
    let Context { config, clock, client, outbox, .. } = ctx;
    let outbox: &Outbox = outbox;
    let fired_at = clock.now();
    let scheduled_for = scheduled_slot(config, args, fired_at);
    // SIGTERM and SIGINT (cron, pm2, systemd stopping the pass) end it at the next step
    // boundary, recorded, with exit 75 (docs/operations.md, "Stopping a pass").
    signals::install_termination_handlers()
        .map_err(|error| Error::Internal(format!("cannot install signal handlers: {error}")))?;
    let recorder = PassRecorder {
        started,
        fired_at,
        scheduled_for,
        host: process::host_name(),
        pid: std::process::id(),
    };
    if !args.dry_run && !try_advisory_lock(client, SUPERVISE_LOCK_KEY)? {
        recorder.record(client, PassStatus::LockSkipped, json!([]))?;
        return lock_skipped(client, outbox, config, fired_at, scheduled_for);
    }
    // Never wait long behind a lock held by a frozen drain: fail that decision instead.
    crate::db::set_lock_timeout(client, SUPERVISE_LOCK_WAIT)?;
    let zone = config.defaults.timezone;
    let mut failures = StepFailures::default();
    // A file emptied by a deploy that failed half-way: the pass would look healthy while
    // nothing runs (docs/operations.md, "Who hears of errors").
    if config.drains.is_empty() {
        let file = config.path.as_ref().map(|path| format!(" {}", path.display())).unwrap_or_default();
        let error = Error::Config(format!(
            "the configuration{file} has no [[drain]] table: no drain runs; add one (docs/configuration.md), or \
             stop calling supervise"
        ));
        failures.add(&error);
        match args.dry_run {
            true => log::error!("supervise: {error}"),
            false => record_failure(client, outbox, None, error.to_string(), clock.now()),
        }
    }
    // Feed the drains with sources first, so the decisions see what the scans enqueued.
    let mut scans = Vec::new();
    if !args.dry_run {
        scans = scan_sources(client, outbox, config, clock, &mut failures)?;
    }
    let interrupted = Interruption { dry_run: args.dry_run };
    interrupted.check(client, outbox, clock, "it decided anything")?;
    // Decided as of the scans' end: an item they enqueued is available by then, and is
    // started by this pass (docs/operations.md).
    let decided_at = if scans.is_empty() { fired_at } else { clock.now().max(fired_at) };
    let (mut snapshots, unconfigured) =
        match take_snapshot(client, outbox, config, decided_at, clock.is_injected(), args.dry_run) {
            Ok(taken) => taken,
            Err(error) => return Err(snapshot_failed(client, outbox, clock, &interrupted, error)),
        };
    interrupted.check(client, outbox, clock, "it ended crashed and hung runs and started drains")?;
    // End what must end first, then decide the starts on what that left.
    let mut decisions = plan_recovery(&snapshots, decided_at, zone);
    decisions.extend(plan_unconfigured(&unconfigured.runs));
    decisions.extend(plan_unconfigured_bursts(&unconfigured.expired_bursts, zone));
    let mut pruned = None;
    let mut stopped = None;
    if !args.dry_run {
        let unconfigured: Vec<RunRow> = unconfigured.runs.into_iter().map(|run| run.run).collect();
        recover(
            client,
            outbox,
            config,
            clock,
            &mut snapshots,
            &unconfigured,
            &mut decisions,
            decided_at,
            &mut failures,
        )?;
        interrupted.check(client, outbox, clock, "it started drains")?;
    } else {
        preview_recovery(client, config, clock, &mut snapshots, &decisions)?;
    }
    let first_start = decisions.len();
    decisions.extend(plan_starts(&snapshots, decided_at, zone));
    if !args.dry_run {
        record_spent_budgets(client, outbox, &snapshots, decided_at, zone);
        apply_all(
            client,
            outbox,
            config,
            clock,
            &[],
            &mut decisions[first_start..],
            decided_at,
            &mut failures,
        );
        match finish_pass(
            client,
            outbox,
            config,
            clock,
            &recorder,
            &mut decisions,
            &mut failures,
            &interrupted,
        ) {
            Ok(report) => pruned = report,
            // Stopped after the pass was recorded: its decisions are printed all the same
            // (drains were started, runs ended), then the line (docs/operations.md).
            Err(error) if signals::termination_signal().is_some() => stopped = Some(error),
            Err(error) => return Err(error),
        }
    }
    let report = render(args, schema_created, fired_at, scheduled_for, &decisions, &scans, &pruned)?;
    if let Some(error) = stopped {
        return Ok(report.stopped(&error));
    }
    Ok(report.with_exit_code(failures.exit_code))
}

/// A pass that could not read the drains' state (a lock held past the pass's lock wait
/// by a migration, `VACUUM FULL` or another session's exclusive lock; the database gone)
/// can decide nothing: the failure is recorded as a `supervise_error` event, so
/// `notify_command` hears of it, and the pass ends with its code. A termination signal
/// that came meanwhile is reported as the interruption it is (docs/operations.md).
fn snapshot_failed(
    client: &mut Client,
    outbox: &Outbox,
    clock: &Clock,
    interrupted: &Interruption,
    error: Error,
) -> Error {
    if let Err(interruption) = interrupted.check(client, outbox, clock, "it read the drains' state") {
        return interruption;
    }
    // A missing privilege or a schema of another application stays until someone acts.
    let lasts = matches!(error, Error::Config(_));
    let mut error = error.context("supervise: could not read the drains' state").noted(if lasts {
        "the pass decided nothing, and no pass can until that is fixed"
    } else {
        "the pass decided nothing; the next pass tries again"
    });
    if interrupted.dry_run {
        return error;
    }
    let message = error.display_scrubbed().trim_start_matches("supervise: ").to_string();
    let event = Event::new(EventKind::SuperviseError, message);
    let recorded =
        (!client.is_closed()).then(|| crate::db::events::record_event(client, outbox, &event, clock.now()));
    match recorded {
        Some(Ok(())) => {}
        // One line says both (docs/exit-codes.md): what kept the pass from reading, and that
        // its event could not be recorded either (most often for the same cause).
        Some(Err(record)) if !client.is_closed() => {
            error = error.noted(&format!(
                "no supervise_error event could be recorded either ({})",
                record.display_scrubbed().split(": ").take(2).collect::<Vec<_>>().join(": ")
            ))
        }
        // The failure was the session ending: one line says both.
        _ => error = error.noted("no supervise_error event could be recorded: the session had ended"),
    }
    error
}

/// SIGTERM or SIGINT ends a pass at the next step boundary: a step under way (a statement
/// blocked on a lock, a decision being applied) finishes first, what is left is the next
/// pass's. The interruption is recorded as a `supervise_error` event (not by `--dry-run`,
/// which changes nothing) and the pass exits 75 with one line saying so
/// (docs/operations.md, "Stopping a pass"; docs/exit-codes.md).
pub(crate) struct Interruption {
    pub(crate) dry_run: bool,
}

impl Interruption {
    /// Err (exit 75) once a termination signal arrived; `left` says what the pass had not
    /// done yet: "before {left}".
    pub(crate) fn check(
        &self,
        client: &mut Client,
        outbox: &Outbox,
        clock: &Clock,
        left: &str,
    ) -> Result<()> {
        let Some(signal) = signals::termination_signal() else { return Ok(()) };
        let message = format!(
            "pass interrupted by {} before {left}; the next pass does the rest",
            signals::signal_name(signal)
        );
        if !self.dry_run && !client.is_closed() {
            record_event_or_log(
                client,
                outbox,
                &Event::new(EventKind::SuperviseError, message.clone()),
                clock.now(),
            );
        }
        Err(Error::Temporary(format!("supervise: {message}")))
    }
}

/// The steps of a pass that failed, each recorded and gone past: the pass exits with the
/// worst class among them (docs/exit-codes.md) — 78 when only configuration problems
/// failed (a missing source folder, an unwritable textfile or log folder), 70 when one
/// was a bug or an unexpected database error — and 0 when none failed.
#[derive(Debug, Default)]
struct StepFailures {
    exit_code: u8,
}

impl StepFailures {
    fn add(&mut self, error: &Error) {
        self.exit_code = worse_exit_code(self.exit_code, error.exit_code());
    }
}

/// Record a `budget_reached` event for each drain kept from starting by its spent daily
/// budget, once per drain and day (docs/results.md). A failure is logged: it does not
/// change what the pass decided.
fn record_spent_budgets(
    client: &mut postgres::Client,
    outbox: &Outbox,
    snapshots: &[snapshot::DrainSnapshot],
    now: DateTime<Utc>,
    zone: chrono_tz::Tz,
) {
    for snapshot in snapshots {
        let Some(spent) = &snapshot.budget_spent else { continue };
        let drain = snapshot.drain;
        let recorded = crate::db::usage::has_event_since(
            client,
            crate::model::EventKind::BudgetReached,
            &drain.name,
            spent.day_start,
        );
        match recorded {
            Ok(true) => continue,
            Ok(false) => {}
            Err(error) => {
                log::warn!("drain {}: could not look for a budget_reached event: {error}", drain.name);
                continue;
            }
        }
        let note = plan::budget_reason(spent, zone);
        let event = crate::usage::budget_event(
            drain,
            "max_cost_per_day",
            spent.max_usd,
            spent.spent_usd,
            &note,
            Some((spent.day_start, spent.day_end)),
        );
        record_event_or_log(client, outbox, &event, now);
    }
}

/// The slot the pass stands for: `--slot`, or the start of the `supervise_interval`
/// the pass fired in.
fn scheduled_slot(config: &Config, args: &SuperviseArgs, fired_at: DateTime<Utc>) -> DateTime<Utc> {
    match args.slot {
        Some(at) => at,
        None => {
            let interval = chrono::Duration::from_std(config.defaults.supervise_interval)
                .unwrap_or(chrono::Duration::minutes(15));
            local_slot(fired_at, interval, config.defaults.timezone)
        }
    }
}

/// `fired_at` rounded down to `interval` on the wall clock of `zone`, where cron counts
/// its slots (docs/cli.md, `supervise --slot`): 10:05 IST with `1h` is 10:00 IST. As
/// cron's steps (`*/7` in the minute field) start again each hour, an interval under an
/// hour counts from the hour and one under a day from midnight: with `7m`, 11:20 is the
/// 11:14 slot and 12:02 the 12:00 one. In the hour repeated when the clocks go back, the
/// slot is the instant of that wall-clock time at or before `fired_at`; one in a skipped
/// hour moves to the gap's end.
fn local_slot(fired_at: DateTime<Utc>, interval: chrono::Duration, zone: chrono_tz::Tz) -> DateTime<Utc> {
    use chrono::{LocalResult, TimeZone};
    let local = fired_at.with_timezone(&zone).naive_local();
    let counted_from = if interval < chrono::Duration::hours(1) {
        local.date().and_hms_opt(local.hour(), 0, 0)
    } else if interval < chrono::Duration::days(1) {
        local.date().and_hms_opt(0, 0, 0)
    } else {
        None
    };
    let start = match counted_from {
        Some(from) => {
            let steps = (local - from).num_milliseconds() / interval.num_milliseconds().max(1);
            from + interval * steps as i32
        }
        None => match local.duration_trunc(interval) {
            Ok(start) => start,
            Err(_) => return fired_at,
        },
    };
    let slot = match zone.from_local_datetime(&start) {
        LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(earlier, later) => {
            let (earlier, later) = (earlier.with_timezone(&Utc), later.with_timezone(&Utc));
            Some(if later <= fired_at { later } else { earlier })
        }
        LocalResult::None => crate::schedule::when::resolve_local(&zone, start),
    };
    slot.filter(|slot| *slot <= fired_at).unwrap_or(fired_at)
}

/// What a pass records of itself in `supervise_passes`: when it fired, for which slot, where.
struct PassRecorder {
    started: Instant,
    fired_at: DateTime<Utc>,
    scheduled_for: DateTime<Utc>,
    host: String,
    pid: u32,
}

impl PassRecorder {
    /// Record the pass; returns its id and how long it took.
    fn record(
        &self,
        client: &mut Client,
        status: PassStatus,
        decisions: serde_json::Value,
    ) -> Result<(i64, i32)> {
        let duration_ms = self.started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let record = PassRecord {
            fired_at: self.fired_at,
            scheduled_for: self.scheduled_for,
            host: &self.host,
            pid: self.pid as i32,
            status,
            duration_ms,
            decisions,
        };
        insert_pass(client, &record).map(|id| (id, duration_ms))
    }
}

/// The JSON of a pass: the same fields whether it acted, only planned, or was skipped.
#[derive(Serialize)]
struct PassView<'a, S: Serialize> {
    status: S,
    fired_at: DateTime<Utc>,
    scheduled_for: DateTime<Utc>,
    decisions: &'a [Decision],
    scans: &'a [crate::sources::ScanReport],
    prune: &'a Option<crate::prune::PruneReport>,
    /// For `lock_skipped`: who holds the lock (None otherwise, or when it was gone).
    lock_holder: Option<&'a LockHeld>,
}

impl<S: Serialize> PassView<'_, S> {
    fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self).map_err(|error| Error::Internal(error.to_string()))
    }
}

/// Another pass holds the lock: this one says who, and since when. When the holder has
/// held it longer than twice `supervise_interval` nothing has been supervised since: the
/// pass records a `supervise_error` event (so a notification goes out) and exits 75
/// (docs/exit-codes.md); else it exits 0.
fn lock_skipped(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    fired_at: DateTime<Utc>,
    scheduled_for: DateTime<Utc>,
) -> Result<Report> {
    let held = LockHeld::read(client)?;
    let view = PassView {
        status: PassStatus::LockSkipped,
        fired_at,
        scheduled_for,
        decisions: &[],
        scans: &[],
        prune: &None,
        lock_holder: held.as_ref(),
    };
    let json = view.to_json()?;
    let (human, exit_code) = match held {
        None => {
            ("supervise: lock_skipped: another supervise pass is running".to_string(), crate::error::EXIT_OK)
        }
        Some(held) if !held.is_stuck(fired_at, config.defaults.supervise_interval) => {
            let human = format!(
                "supervise: lock_skipped: another supervise pass is running: {}",
                held.describe(fired_at, config.defaults.timezone)
            );
            (human, crate::error::EXIT_OK)
        }
        Some(held) => {
            let twice =
                crate::duration::format_duration(config.defaults.supervise_interval.saturating_mul(2));
            let message = format!(
                "{} passes skipped since the last acting one: {}, more than {twice} (twice supervise_interval); {}",
                held.skipped_passes,
                held.describe(fired_at, config.defaults.timezone),
                held.advice()
            );
            record_failure(client, outbox, None, message.clone(), fired_at);
            (format!("supervise: lock_skipped: {message}"), crate::error::EXIT_TEMPORARY)
        }
    };
    // The textfile too: what the passes skipped recorded (a stuck pass's error) and what
    // happened meanwhile reach the alerts while the holder keeps the lock.
    let exit_code = match write_metrics_textfile(client, outbox, config, fired_at) {
        Ok(()) => exit_code,
        Err(error) => exit_code.max(error.exit_code()),
    };
    Ok(Report::new(human, json).with_exit_code(exit_code))
}

/// Rewrite `metrics_textfile`, when it is set (docs/operations.md, "Metrics"); a failure
/// is recorded as a `supervise_error` and returned.
fn write_metrics_textfile(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    now: DateTime<Utc>,
) -> std::result::Result<(), Error> {
    let Some(path) = &config.defaults.metrics_textfile else { return Ok(()) };
    let written = crate::metrics::render_metrics(client, config, now)
        .and_then(|text| crate::metrics::write_textfile(path, &text));
    if let Err(error) = &written {
        // 78 for a missing folder or a path that is not a regular file.
        let what =
            format!("could not write metrics_textfile {}: {}", path.display(), error.display_scrubbed());
        record_failure(client, outbox, None, what, now);
    }
    written
}

/// Scan the source of every drain that has one; a failed scan is recorded and reported,
/// and the pass goes on.
fn scan_sources(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &Clock,
    failures: &mut StepFailures,
) -> Result<Vec<crate::sources::ScanReport>> {
    let mut scans = Vec::new();
    let interrupted = Interruption { dry_run: false };
    for drain in config.drains.iter().filter(|drain| drain.source.is_some()) {
        interrupted.check(
            client,
            outbox,
            clock,
            &format!("it scanned the source of drain {}", drain.name),
        )?;
        let scanned = crate::sources::scan(client, outbox, drain, clock, true);
        scans.push(scanned.unwrap_or_else(|error| {
            failures.add(&error);
            let message = error.display_scrubbed();
            let what = format!("could not scan the source of drain {}: {message}", drain.name);
            record_failure(client, outbox, Some(&drain.name), what, clock.now());
            crate::sources::ScanReport::failed(drain, message)
        }));
    }
    Ok(scans)
}

/// Finish killing what runs ended earlier left alive, apply the recovery decisions (reap
/// crashed runs, end hung ones), release orphaned items, and refresh which drains have an
/// available item when that changed anything.
#[allow(clippy::too_many_arguments)]
fn recover(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &Clock,
    snapshots: &mut [snapshot::DrainSnapshot<'_>],
    unconfigured: &[RunRow],
    decisions: &mut [Decision],
    fired_at: DateTime<Utc>,
    failures: &mut StepFailures,
) -> Result<()> {
    // The running runs the decisions were made on are the ones they act on.
    let mut runs: Vec<RunRow> = snapshots.iter().flat_map(|s| s.runs.iter().map(|r| r.run.clone())).collect();
    runs.extend_from_slice(unconfigured);
    // Runs ended earlier whose kill never finished (the pass that ended them died first).
    let killed = crate::reap::finish_ended_runs(client, outbox, config, clock).unwrap_or_else(|error| {
        failures.add(&error);
        let what = format!("could not kill what ended runs left alive: {}", error.display_scrubbed());
        record_failure(client, outbox, None, what, clock.now());
        0
    });
    apply_all(client, outbox, config, clock, &runs, decisions, fired_at, failures);
    // Drains earlier passes started that failed to connect after those stopped waiting.
    if let Err(error) = apply::report_late_ended_without_run(client, outbox, config, failures, clock.now()) {
        failures.add(&error);
        let what = format!(
            "could not look for drains earlier passes started that ended without a run: {}",
            error.display_scrubbed()
        );
        record_failure(client, outbox, None, what, clock.now());
    }
    let released =
        crate::reap::release_orphaned_items(client, outbox, config, clock, None).unwrap_or_else(|error| {
            failures.add(&error);
            let what = format!("could not release orphaned items: {}", error.display_scrubbed());
            record_failure(client, outbox, None, what, clock.now());
            0
        });
    // Poison charges whose window has ended: a dead item meets no later limit to settle
    // its own (docs/rate-limits.md, "Poison items").
    let revived = crate::poison::settle_ended_windows(client, outbox, config, clock.now())
        .map(|taken| taken.iter().filter(|one| one.revived).count())
        .unwrap_or_else(|error| {
            failures.add(&error);
            let what = format!("could not settle poison charges: {}", error.display_scrubbed());
            record_failure(client, outbox, None, what, clock.now());
            0
        });
    let has_ended_runs = decisions.iter().any(|d| matches!(d.action, Action::ReapCrashed | Action::KillHung));
    let has_freed = has_ended_runs || released > 0 || killed > 0;
    if has_freed || revived > 0 {
        // Items the ended runs held (or a killed drain gave back, or a charge taken back
        // revived) are pending again: see them before deciding starts.
        let available = snapshot::available_items(client, config, clock.now())?;
        for snapshot in snapshots.iter_mut() {
            snapshot.available_items = available.get(&snapshot.drain.name).copied().unwrap_or(0);
        }
    }
    if has_freed {
        // The slots the stopped runs held are free now; another host's are not. (An item
        // a charge taken back revived frees no slot.)
        snapshot::held_slots_after_recovery(client, config, snapshots)?;
    }
    Ok(())
}

/// What [`recover`] would change in the snapshots, without writing anything (a dry run):
/// the runs it would end already leave their slots free (the plan counts only healthy
/// runs), and the items they or ended runs hold, and would give back, are available, as
/// are dead items a poison charge taken back at the end of its window would revive — so
/// the dry run plans the starts the real pass would (docs/operations.md).
fn preview_recovery(
    client: &mut Client,
    config: &Config,
    clock: &Clock,
    snapshots: &mut [snapshot::DrainSnapshot<'_>],
    decisions: &[Decision],
) -> Result<()> {
    let ending: Vec<i64> = decisions
        .iter()
        .filter(|d| matches!(d.action, Action::ReapCrashed | Action::KillHung))
        .filter_map(|d| d.run_id)
        .collect();
    let names: Vec<String> = config.drains.iter().map(|d| d.name.clone()).collect();
    let max_attempts: Vec<i32> =
        config.drains.iter().map(|d| i32::try_from(d.max_attempts).unwrap_or(i32::MAX)).collect();
    let freed = crate::db::items::drains_recovery_would_free(client, &names, &max_attempts, &ending)?;
    let left_alive = crate::reap::ended_runs_left_alive(client, config, clock)?;
    // Dead items the charges whose window has ended would make pending again.
    let revived = crate::poison::revivals_at_window_end(client, config, clock.now())?;
    for snapshot in snapshots.iter_mut() {
        let freed = freed.get(&snapshot.drain.name).copied().unwrap_or(0)
            + revived.iter().filter(|drain| **drain == snapshot.drain.name).count() as u32;
        snapshot.available_items =
            snapshot.available_items.saturating_add(freed).min(snapshot.drain.concurrency);
        // The slots of this host's runs it would stop (ended now, or earlier and left
        // alive) would be free; another host's not.
        let stopped_here = snapshot
            .runs
            .iter()
            .filter(|run| ending.contains(&run.run.id) && run.may_be_stopped_here && !run.is_process_gone)
            .count()
            + left_alive.iter().filter(|run| run.drain == snapshot.drain.name).count();
        snapshot.held_slots =
            snapshot.held_slots.saturating_sub(u32::try_from(stopped_here).unwrap_or(u32::MAX));
    }
    Ok(())
}

/// After the decisions: record the pass, prune history when due, write the metrics
/// textfile, wait for the drains it started to record their runs, release the lock.
/// Returns what was pruned. Once the pass is recorded, a termination signal leaves the
/// prune and the textfile to the next pass — never the wait for the drains it started:
/// a pass started right after the signal (`pm2 restart`) must find them busy.
#[allow(clippy::too_many_arguments)]
fn finish_pass(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &Clock,
    recorder: &PassRecorder,
    decisions: &mut [Decision],
    failures: &mut StepFailures,
    interrupted: &Interruption,
) -> Result<Option<crate::prune::PruneReport>> {
    let (pass_id, duration_ms) = recorder.record(
        client,
        PassStatus::Done,
        serde_json::to_value(&*decisions).unwrap_or_else(|_| json!([])),
    )?;
    let steps = prune_and_write_textfile(client, outbox, config, clock, decisions, failures, interrupted);
    // Held until the drains started have recorded their runs: a pass right after this
    // one sees them busy instead of starting them again (docs/operations.md).
    let awaited = apply::await_started_runs(client, decisions.iter(), clock.now());
    apply::report_ended_without_run(client, outbox, config, &awaited.ended, failures, clock.now());
    // The pass's own table shows them failed, as its record (`passes`) does.
    for decision in decisions.iter_mut() {
        let ended = awaited.ended.iter().any(|ended| Some(ended.pid) == decision.pid);
        if ended && decision.action == Action::Start && decision.error.is_none() {
            decision.error = Some(apply::ENDED_WITHOUT_RUN.to_string());
        }
    }
    if client.is_closed() {
        // The session ended after the pass was recorded — in the prune, the textfile or
        // the wait for its drains: the supervise lock went with it, and all the pass
        // decided is committed — its table is still printed. (Before, it always said it
        // ended in the wait, and that the drains it started "run on", started or not.)
        let started = decisions.iter().any(|d| d.action == Action::Start && d.error.is_none());
        let drains = match started {
            true => {
                "; the drains it started go on unless the database's going away stopped them too (`drainctl runs`)"
            }
            false => "",
        };
        let error = Error::Unavailable(format!(
            "{}: the session ended after the pass was recorded (while it pruned old history, wrote the \
             metrics textfile or waited for the drains it started to record their runs); what it decided \
             was committed{drains}; the next pass does the rest",
            crate::error::CONNECTION_LOST
        ));
        failures.add(&error);
        record_failure(client, outbox, None, error.to_string(), clock.now());
    } else {
        apply::mark_awaited(client, pass_id, &awaited);
        advisory_unlock(client, SUPERVISE_LOCK_KEY)?;
    }
    log::info!(
        "supervise pass {pass_id}: {} in {duration_ms} ms",
        crate::output::counted(decisions.len(), "decision")
    );
    steps
}

/// The steps of a recorded pass a termination signal leaves to the next one: the prune
/// when due, the metrics textfile when set. A signal names those of them left, and
/// interrupts nothing when none is (no prune due, no textfile, every drain started).
fn prune_and_write_textfile(
    client: &mut Client,
    outbox: &Outbox,
    config: &Config,
    clock: &Clock,
    decisions: &[Decision],
    failures: &mut StepFailures,
    interrupted: &Interruption,
) -> Result<Option<crate::prune::PruneReport>> {
    let (mut pruned, mut prune_stopped) = (None, false);
    if crate::worker::signals::termination_signal().is_some() {
        // A start the signal kept from being made is named too (its decision says "not applied").
        let left_out_starts = decisions.iter().any(|decision| {
            decision.action == Action::Start
                && decision
                    .error
                    .as_deref()
                    .is_some_and(|error| error.starts_with(apply::NOT_APPLIED_INTERRUPTED))
        });
        let prune_due = crate::prune::is_due(client, clock.now())?;
        let left: Vec<&str> = [
            (left_out_starts, "started every drain"),
            (prune_due, "pruned old history"),
            (config.defaults.metrics_textfile.is_some(), "wrote the metrics textfile"),
        ]
        .into_iter()
        .filter_map(|(is_left, step)| is_left.then_some(step))
        .collect();
        if left.is_empty() {
            return Ok(None);
        }
        interrupted.check(client, outbox, clock, &format!("it {}", crate::output::listed(&left)))?;
    }
    // Retention, at most once a day — not by a file with no drain: one emptied by a deploy
    // that failed half-way (the failure recorded above) sets no retention, and its
    // defaults would remove history the operator's own kept (docs/operations.md,
    // "Retention").
    let prune = match config.drains.is_empty() {
        true => {
            log::warn!("supervise: old history not pruned: the configuration has no [[drain]] table");
            Ok(None)
        }
        false => crate::prune::prune_if_due(client, outbox, config, clock.now()),
    };
    match prune {
        Ok(report) => pruned = report,
        // Stopped between two batches by SIGTERM or SIGINT (what it removed is recorded):
        // the pass is interrupted, not failed; the check below says so.
        Err(_) if crate::worker::signals::termination_signal().is_some() => prune_stopped = true,
        Err(error) => {
            failures.add(&error);
            let what = format!("could not prune old history: {}", error.display_scrubbed());
            record_failure(client, outbox, None, what, clock.now());
        }
    }
    if config.defaults.metrics_textfile.is_some() {
        interrupted.check(client, outbox, clock, "it wrote the metrics textfile")?;
        if let Err(error) = write_metrics_textfile(client, outbox, config, clock.now()) {
            failures.add(&error);
        }
    } else if prune_stopped {
        // Stopped inside the prune: that is what was cut short.
        interrupted.check(
            client,
            outbox,
            clock,
            "it finished pruning old history (what it removed is in its retention_pruned event)",
        )?;
    }
    Ok(pruned)
}

/// The pass as a table of decisions, then the scans and the prune, and as JSON.
fn render(
    args: &SuperviseArgs,
    schema_created: bool,
    fired_at: DateTime<Utc>,
    scheduled_for: DateTime<Utc>,
    decisions: &[Decision],
    scans: &[crate::sources::ScanReport],
    pruned: &Option<crate::prune::PruneReport>,
) -> Result<Report> {
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|d| {
            let mut reason = plan::shown_reason(&d.reason, d.error.as_deref());
            if let Some(pid) = d.pid {
                reason.push_str(&format!(" [pid {pid}]"));
            }
            let action = serde_json::to_value(d.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            vec![d.drain.clone(), action, reason]
        })
        .collect();
    let mut human = match (args.dry_run, schema_created) {
        (false, _) => String::new(),
        (true, false) => "dry run: nothing was changed\n".to_string(),
        // A database with no schema gets it from its first command, a dry run too.
        (true, true) => format!("dry run: nothing was changed {}\n", crate::context::BUT_THE_SCHEMA),
    };
    human.push_str(&table(&["DRAIN", "ACTION", "REASON"], &rows));
    for scan in scans {
        human.push_str(&format!("scan {}: {}\n", scan.drain, scan.summary()));
        human.push_str(&scan.detail_lines());
    }
    if let Some(pruned) = pruned {
        human.push_str(&format!("prune: {}\n", pruned.summary()));
    }
    let view = PassView {
        status: if args.dry_run { "dry_run" } else { "done" },
        fired_at,
        scheduled_for,
        decisions,
        scans,
        prune: pruned,
        lock_holder: None,
    };
    Ok(Report::new(human, view.to_json()?))
}

/// A step of the pass that failed: it is logged and recorded as a `supervise_error`
/// event, and the pass goes on (it exits with the worst class of what failed: see
/// [`StepFailures`]).
fn record_failure(
    client: &mut Client,
    outbox: &Outbox,
    drain: Option<&str>,
    message: String,
    now: DateTime<Utc>,
) {
    log::error!("supervise: {message}");
    if client.is_closed() {
        // No event can say it: the stderr cron mails does (docs/operations.md).
        crate::output::tell_starting_stderr(&format!("supervise: {message}"));
        // The session is gone: the line above is all that can be said, not a second one
        // about the event that could not be written.
        return;
    }
    let mut event = Event::new(EventKind::SuperviseError, message);
    if let Some(drain) = drain {
        event = event.drain(drain);
    }
    record_event_or_log(client, outbox, &event, now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Asia::Kolkata, Europe::Berlin};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect(text).with_timezone(&Utc)
    }

    #[test]
    fn the_default_slot_is_rounded_down_on_the_local_wall_clock() {
        let hour = chrono::Duration::hours(1);
        let quarter = chrono::Duration::minutes(15);
        let cases = [
            // 10:05 IST (UTC+5:30): the 10:00 IST slot, not 09:30 IST (04:00 UTC).
            ("2026-03-25T04:35:00Z", hour, Kolkata, "2026-03-25T04:30:00Z"),
            ("2026-03-25T04:35:00Z", quarter, Kolkata, "2026-03-25T04:30:00Z"),
            ("2026-03-25T04:29:00Z", hour, Kolkata, "2026-03-25T03:30:00Z"),
            // New York falls back on 2026-11-01: 01:10 EDT and 01:10 EST each belong to
            // their own 01:00.
            ("2026-11-01T05:10:00Z", hour, New_York, "2026-11-01T05:00:00Z"),
            ("2026-11-01T06:10:00Z", hour, New_York, "2026-11-01T06:00:00Z"),
            // Berlin springs forward on 2026-03-29 at 02:00: 03:10 CEST is the 03:00 slot.
            ("2026-03-29T01:10:00Z", hour, Berlin, "2026-03-29T01:00:00Z"),
            ("2026-03-29T00:59:00Z", hour, Berlin, "2026-03-29T00:00:00Z"),
        ];
        for (fired, interval, zone, expected) in cases {
            assert_eq!(local_slot(utc(fired), interval, zone), utc(expected), "{fired} in {zone}");
        }
        // An interval that does not divide the hour starts again on the hour, as cron's
        // `*/7` does; one that does not divide the day, at midnight.
        let seven = chrono::Duration::minutes(7);
        assert_eq!(local_slot(utc("2026-12-01T10:20:00Z"), seven, Berlin), utc("2026-12-01T10:14:00Z"));
        assert_eq!(local_slot(utc("2026-12-01T10:59:30Z"), seven, Berlin), utc("2026-12-01T10:56:00Z"));
        assert_eq!(local_slot(utc("2026-12-01T11:02:00Z"), seven, Berlin), utc("2026-12-01T11:00:00Z"));
        let five_hours = chrono::Duration::hours(5);
        assert_eq!(local_slot(utc("2026-12-01T23:30:00Z"), five_hours, Berlin), utc("2026-12-01T23:00:00Z"));
        assert_eq!(local_slot(utc("2026-12-01T22:30:00Z"), five_hours, Berlin), utc("2026-12-01T19:00:00Z"));
        // A slot of 2h whose start lies in the gap (02:00 on 2026-03-29 in Berlin) moves to
        // the gap's end, never after the pass.
        let two_hours = chrono::Duration::hours(2);
        assert_eq!(local_slot(utc("2026-03-29T01:10:00Z"), two_hours, Berlin), utc("2026-03-29T01:00:00Z"));
    }
}
