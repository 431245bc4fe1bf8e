//! What the plan sees: one index-backed read of every drain's controls, backoff,
//! running runs (and whether each holds an item), available items (up to its
//! concurrency), concurrency slots held and latest start.

use chrono::{DateTime, Utc};
use postgres::Client;

use crate::accounts::GroupView;
use crate::config::{Config, DrainConfig};
use crate::db::backoffs::{read_group_backoffs, BackoffRow};
use crate::db::drains::{ensure_drains, read_controls_and_expired_bursts, DrainControls};
use crate::db::runs::{last_run_starts, running_runs, RunRow};
use crate::error::Result;

/// A `running` run, whether its process is known to be gone, and whether it holds an
/// item now (one that holds none — waiting for a reset, yielding, between two items —
/// takes the next available item itself).
#[derive(Debug, Clone)]
pub struct RunSnapshot {
    pub run: RunRow,
    pub is_process_gone: bool,
    pub holds_item: bool,
    /// Its processes may be signalled from here (this host's, as the reaper judges it): a
    /// hung one is stopped by this pass, and its slot freed.
    pub may_be_stopped_here: bool,
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
    /// Items available now, counted up to the drain's `concurrency`: how many passes they
    /// could keep busy (docs/operations.md).
    pub available_items: u32,
    /// Its concurrency slots held, by whoever holds them — read again once the recovery
    /// stopped what it ends: a run of another host that this pass ends as hung keeps its
    /// slot until that host stops it (docs/operations.md, "Several hosts").
    pub held_slots: u32,
    /// When the drain's latest pass (not lock_skipped) started: what `every` counts from.
    pub last_started_at: Option<DateTime<Utc>>,
    /// A backoff ending within this long does not keep the drain from starting: the pass
    /// waits for the reset itself (the shorter of its `max_wait` and `supervise_interval`).
    pub wake_within: std::time::Duration,
    /// The quota group is parked until an operator clears it (docs/rate-limits.md).
    pub parked: Option<crate::db::quota_groups::Parked>,
    /// The drain's `max_cost_per_day` is spent for today (docs/results.md).
    pub budget_spent: Option<BudgetSpent>,
    /// When the database server started: a run's silence is counted from no earlier than
    /// this, since no run could record a checkpoint while the server was down
    /// (docs/operations.md, "When the database goes away").
    pub server_started_at: Option<DateTime<Utc>>,
    /// By how much this host's clock is off from the database server's, when beyond the
    /// tolerance: another host's run is not judged hung by a clock that is off.
    pub clock_off_by: Option<chrono::Duration>,
}

/// A daily cost budget spent: its limit, what the day's attempts cost, and the day (from
/// midnight to midnight in `[defaults] timezone`).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetSpent {
    pub max_usd: f64,
    pub spent_usd: f64,
    pub day_start: DateTime<Utc>,
    pub day_end: DateTime<Utc>,
}

/// What a pass finds of drains the configuration no longer names (one removed while its
/// pass ran, or before its crashed run was reaped or its burst expired).
#[derive(Debug, Default)]
pub(super) struct Unconfigured {
    pub runs: Vec<RunSnapshot>,
    /// Bursts whose deadline passed, with it.
    pub expired_bursts: Vec<(String, DateTime<Utc>)>,
}

/// Every configured drain's snapshot, and what is left of drains the configuration no
/// longer names.
pub(super) fn take_snapshot<'a>(
    client: &mut Client,
    outbox: &crate::db::events::Outbox,
    config: &'a Config,
    now: DateTime<Utc>,
    is_clock_injected: bool,
    dry_run: bool,
) -> Result<(Vec<DrainSnapshot<'a>>, Unconfigured)> {
    let names: Vec<String> = config.drains.iter().map(|d| d.name.clone()).collect();
    if !dry_run {
        ensure_drains(client, &names, now)?;
    }
    // What this host stamped while its clock ran ahead, when it went back since.
    let clock = super::clock_went_back::read(client, now, is_clock_injected)?;
    let restored = match clock.is_right && clock.went_back {
        true => super::clock_went_back::restore_bursts(
            client,
            outbox,
            &names,
            config.defaults.timezone,
            now,
            dry_run,
        )?,
        false => Vec::new(),
    };
    // A burst ends by the database server's clock when this host's runs ahead of it (see
    // `plan::plan_burst_expiry`).
    let burst_ended_by = super::clock_went_back::shared_now(now, clock.off_by);
    let (mut controls, others): (Vec<DrainControls>, Vec<DrainControls>) =
        read_controls_and_expired_bursts(client, &names, burst_ended_by)?
            .into_iter()
            .partition(|c| names.contains(&c.name));
    // (A dry run counts, unwritten, the bursts the real pass sets again.)
    for burst in restored.iter().filter(|_| dry_run) {
        if let Some(control) = controls.iter_mut().find(|c| c.name == burst.drain && c.burst_until.is_none())
        {
            control.burst_until = Some(burst.until);
            control.burst_note = burst.note.clone();
            control.burst_started_at = burst.started_at;
        }
    }
    let expired_bursts = others
        .iter()
        .filter_map(|c| c.expired_burst(burst_ended_by).map(|until| (c.name.clone(), until)))
        .collect();
    let mut runs = running_runs(client, None)?;
    if clock.is_right {
        super::clock_went_back::pull_back_checkpoints(client, &mut runs, now, dry_run)?;
    }
    // Only a running run is judged by it.
    let server_started_at = (!runs.is_empty()).then_some(clock.server_started_at);
    let groups: Vec<String> = config.quota_groups.iter().map(|g| g.name.clone()).collect();
    let mut backoff_rows = read_group_backoffs(client, &groups)?;
    let mut pulled_forward = std::collections::HashMap::new();
    if clock.is_right && clock.went_back {
        super::clock_went_back::pull_back_backoffs(client, &mut backoff_rows, now, dry_run)?;
        pulled_forward = super::clock_went_back::pull_back_items(client, &names, now, dry_run)?;
        super::clock_went_back::pull_back_run_stamps(client, now, dry_run)?;
    }
    // Only groups with accounts to switch between have a choice of account to read.
    let switching: Vec<String> =
        config.quota_groups.iter().filter(|g| g.has_accounts_to_switch()).map(|g| g.name.clone()).collect();
    let group_states = if switching.is_empty() {
        Vec::new()
    } else {
        crate::db::quota_groups::read_groups(client, &switching)?
    };
    let mut available = available_items(client, config, now)?;
    for drain in &config.drains {
        // (A dry run counts, unwritten, the items the real pass makes available.)
        if let Some(more) = pulled_forward.get(&drain.name) {
            let count = available.entry(drain.name.clone()).or_insert(0);
            *count = count.saturating_add(*more).min(drain.concurrency);
        }
    }
    let run_ids: Vec<i64> = runs.iter().map(|run| run.id).collect();
    let holding = crate::db::items::runs_holding_items(client, &run_ids)?;
    let held = held_slots(client, config, &controls)?;
    let parked = crate::db::quota_groups::read_parked(client, &groups)?;
    let last_starts = match clock.is_right && clock.went_back && dry_run {
        // What the real pass's pull_back_run_stamps would leave, unwritten.
        true => super::clock_went_back::last_starts_pulled_back(client, &names, now)?,
        false => last_run_starts(client, &names)?,
    };
    let (day_start, day_end) = crate::usage::budget_day(now, config.defaults.timezone);
    let costs_today = crate::db::usage::costs_today(client, config, now)?;
    let mut snapshots = Vec::with_capacity(config.drains.len());
    for drain in &config.drains {
        let budget_spent =
            crate::usage::spent_budget(drain.max_cost_per_day, costs_today.get(&drain.name).copied())
                .map(|(max_usd, spent_usd)| BudgetSpent { max_usd, spent_usd, day_start, day_end });
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
                .map(|run| RunSnapshot {
                    run: run.clone(),
                    is_process_gone: crate::reap::is_crashed(run),
                    holds_item: holding.contains(&run.id),
                    may_be_stopped_here: crate::reap::may_signal(run),
                })
                .collect(),
            available_items: available.get(&drain.name).copied().unwrap_or(0),
            held_slots: held.get(&drain.name).copied().unwrap_or(0),
            last_started_at: last_starts.iter().find(|(name, _)| *name == drain.name).map(|(_, at)| *at),
            wake_within: drain.max_wait.min(config.defaults.supervise_interval),
            parked: parked.iter().find(|parked| parked.quota_group == group.name).cloned(),
            budget_spent,
            server_started_at,
            clock_off_by: clock.off_by,
        });
    }
    let runs = runs
        .into_iter()
        .filter(|run| !names.contains(&run.drain))
        .map(|run| RunSnapshot {
            is_process_gone: crate::reap::is_crashed(&run),
            holds_item: holding.contains(&run.id),
            may_be_stopped_here: crate::reap::may_signal(&run),
            run,
        })
        .collect();
    Ok((snapshots, Unconfigured { runs, expired_bursts }))
}

/// How many items each configured drain has available now, up to its `concurrency`.
pub fn available_items(
    client: &mut Client,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, u32>> {
    let names: Vec<String> = config.drains.iter().map(|drain| drain.name.clone()).collect();
    let limits: Vec<i64> = config.drains.iter().map(|drain| i64::from(drain.concurrency)).collect();
    crate::db::items::available_items_of(client, &names, &limits, now)
}

/// How many of its concurrency slots each configured drain has held now (drains without a
/// row yet, as in a dry run before their first pass, hold none).
pub fn held_slots(
    client: &mut Client,
    config: &Config,
    controls: &[DrainControls],
) -> Result<std::collections::HashMap<String, u32>> {
    let mut keys = Vec::new();
    let mut owners = Vec::new();
    for drain in &config.drains {
        let Some(id) = controls.iter().find(|c| c.name == drain.name).map(|c| c.id) else { continue };
        for slot in 0..drain.concurrency {
            keys.push(crate::db::drain_slot_key(id, slot));
            owners.push(drain.name.clone());
        }
    }
    let held = crate::db::held_advisory_locks(client, &keys)?;
    let mut counts = std::collections::HashMap::new();
    for (key, owner) in keys.iter().zip(owners) {
        if held.contains(key) {
            *counts.entry(owner).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Read the slots held again after the recovery stopped runs of this host: a stopped
/// drain's session lets its slot go a moment after the process is gone, so the read is
/// repeated, briefly, while a drain holds more slots than it has running runs.
pub fn held_slots_after_recovery(
    client: &mut Client,
    config: &Config,
    snapshots: &mut [DrainSnapshot<'_>],
) -> Result<()> {
    let controls: Vec<DrainControls> =
        snapshots.iter().filter_map(|snapshot| snapshot.controls.clone()).collect();
    // The runs still running once the recovery is done: only the slots change meanwhile.
    let running = running_runs(client, None)?;
    let deadline = std::time::Instant::now() + SLOTS_RELEASED_WAIT;
    loop {
        let held = held_slots(client, config, &controls)?;
        let is_settled = config.drains.iter().all(|drain| {
            let runs = running.iter().filter(|run| run.drain == drain.name).count();
            held.get(&drain.name).map_or(0, |held| *held as usize) <= runs
        });
        if is_settled || std::time::Instant::now() >= deadline {
            for snapshot in snapshots.iter_mut() {
                snapshot.held_slots = held.get(&snapshot.drain.name).copied().unwrap_or(0);
            }
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// How long [`held_slots_after_recovery`] waits at most for the slots of stopped drains.
const SLOTS_RELEASED_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
