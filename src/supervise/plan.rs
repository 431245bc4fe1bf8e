//! The pure half of the pass: from a snapshot and the time, the list of decisions —
//! what ends (expired bursts, crashed and hung runs), then what starts.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::DrainConfig;
use crate::model::Trigger;
use crate::output::local_time as local;
use crate::priority::Rank;
use crate::schedule::cadence;

use super::snapshot::{DrainSnapshot, RunSnapshot};

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

impl Action {
    /// What the action does to a drain, as a message says it: "could not {verb} drain docs".
    pub fn verb(self) -> &'static str {
        match self {
            Action::ExpireBurst => "expire the burst of",
            Action::ReapCrashed => "reap the crashed run of",
            Action::KillHung => "end the hung run of",
            Action::Start => "start",
            Action::Skip => "skip",
        }
    }
}

/// A decision's reason as a table shows it: what failed first, where the table's cut of a
/// long cell cannot hide it (docs/operations.md, "The supervise history").
pub fn shown_reason(reason: &str, error: Option<&str>) -> String {
    match error {
        Some(error) => format!("FAILED: {error} — {reason}"),
        None => reason.to_string(),
    }
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
    /// For a start: the higher-ranking drains of its quota group this pass starts, whose
    /// runs it is started after (see `apply::apply_all`).
    #[serde(skip)]
    pub after_starts_of: Vec<String>,
    /// For a start: how many passes of the drain to start — one per free concurrency slot
    /// an available item can fill (see [`one_decision_a_pass`]).
    #[serde(skip)]
    passes: u32,
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
            after_starts_of: Vec::new(),
            passes: 1,
        }
    }
}

/// Decide, without side effects, what to do about every drain at `now`: first what ends
/// (expired bursts, crashed and hung runs) for every drain, then what starts. The pass
/// itself applies the recovery before it plans the starts; the tests plan both at once.
/// Why a drain of a parked group is not started.
fn parked_reason(parked: &crate::db::quota_groups::Parked, zone: Tz) -> String {
    format!(
        "quota group {} is parked since {} (needs attention: {}); `drainctl resume {}` once it is fixed",
        parked.quota_group,
        local(parked.parked_at, zone),
        parked.reason,
        crate::commands::items::group_option(&parked.quota_group)
    )
}

/// Why a drain whose daily budget is spent is not started.
pub fn budget_reason(spent: &super::snapshot::BudgetSpent, zone: Tz) -> String {
    use crate::db::usage::format_usd;
    format!(
        "max_cost_per_day ({}) reached: the drain's attempts cost {} since {}; starts again from {}",
        format_usd(spent.max_usd),
        format_usd(spent.spent_usd),
        local(spent.day_start, zone),
        local(spent.day_end, zone)
    )
}

#[cfg(test)]
pub fn plan(snapshots: &[DrainSnapshot], now: DateTime<Utc>, zone: Tz) -> Vec<Decision> {
    let mut decisions = plan_recovery(snapshots, now, zone);
    decisions.extend(plan_starts(snapshots, now, zone));
    decisions
}

/// Since when a run counts as silent: its last checkpoint, or the database server's start
/// when that is later — no run can record a checkpoint while the server is down, so that
/// time does not count against it (docs/operations.md, "When the database goes away").
/// A server start later than `now` (this host's clock behind the server's, or a clock set
/// with DRAINCTL_NOW) is not counted. The flag says whether the server start was used.
fn silent_since(run: &RunSnapshot, snapshot: &DrainSnapshot, now: DateTime<Utc>) -> (DateTime<Utc>, bool) {
    silence_started_at(run.run.last_checkpoint_at, snapshot.server_started_at, now)
}

/// [`silent_since`] from a run's last checkpoint and the server's start (see
/// [`silent_beyond_liveness`], which `status` judges a hung run by too).
fn silence_started_at(
    last_checkpoint: DateTime<Utc>,
    server_started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, bool) {
    match server_started_at {
        Some(started) if started > last_checkpoint && started <= now => (started, true),
        _ => (last_checkpoint, false),
    }
}

/// Is this run healthy (its process there, silent for no longer than `liveness_timeout`
/// while the database server was up)?
fn is_healthy(run: &RunSnapshot, snapshot: &DrainSnapshot, now: DateTime<Utc>) -> bool {
    !run.is_process_gone && (!is_silent_too_long(run, snapshot, now) || is_not_judged(run, snapshot))
}

fn is_silent_too_long(run: &RunSnapshot, snapshot: &DrainSnapshot, now: DateTime<Utc>) -> bool {
    silent_beyond_liveness(snapshot.drain, run.run.last_checkpoint_at, snapshot.server_started_at, now)
}

/// Whether a run last heard from at `last_checkpoint` has been silent for longer than its
/// drain's `liveness_timeout` while the database server was up ([`silence_started_at`]):
/// the one rule `supervise`, `status` and a `drain` started by hand judge a run by.
pub(crate) fn silent_beyond_liveness(
    drain: &DrainConfig,
    last_checkpoint: DateTime<Utc>,
    server_started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let liveness = chrono::Duration::from_std(drain.liveness_timeout).unwrap_or(chrono::Duration::MAX);
    now - silence_started_at(last_checkpoint, server_started_at, now).0 > liveness
}

/// Another host's run is judged by its checkpoints, stamped by that host's clock, against
/// this one's: with this clock off from the database server's, the silence it reads is
/// that error (docs/operations.md, "Several hosts"), and the run is not judged.
fn is_not_judged(run: &RunSnapshot, snapshot: &DrainSnapshot) -> bool {
    snapshot.clock_off_by.is_some() && !crate::reap::is_this_hosts(&run.run)
}

/// Why a crashed run is reaped.
fn process_gone(run: &RunSnapshot) -> String {
    format!("run {}: process {} on {} is gone", run.run.id, run.run.pid, run.run.host)
}

/// Reap the crashed runs of drains the configuration no longer names: their items would
/// otherwise stay `running` for ever. A live one is left to finish; one on another host
/// cannot be judged without its drain's `liveness_timeout` (docs/operations.md).
pub fn plan_unconfigured(runs: &[RunSnapshot]) -> Vec<Decision> {
    let crashed = runs.iter().filter(|run| run.is_process_gone);
    crashed
        .map(|run| {
            let reason = format!("{} (the drain is no longer configured)", process_gone(run));
            Decision {
                run_id: Some(run.run.id),
                ..Decision::new(&run.run.drain, Action::ReapCrashed, reason)
            }
        })
        .collect()
}

/// Expire the drain's burst when its deadline passed — unless only by this host's clock,
/// `off_by` ahead of the database server's: the operator's burst is every host's, and one
/// clock running ahead does not end it for all of them (docs/operations.md, "Several
/// hosts").
fn plan_burst_expiry(
    name: &str,
    controls: &crate::db::drains::DrainControls,
    off_by: Option<chrono::Duration>,
    now: DateTime<Utc>,
    zone: Tz,
) -> Option<Decision> {
    let until = controls.expired_burst(now)?;
    let shared_now = super::clock_went_back::shared_now(now, off_by);
    let ahead = off_by.filter(|_| controls.expired_burst(shared_now).is_none());
    Some(match ahead {
        Some(off_by) => {
            let reason = format!(
                "burst deadline {} passed by this host's clock, which is {} ahead of the database server's: the \
                 burst is left on until the server's clock passes it (`drainctl doctor`: clock_skew)",
                local(until, zone),
                crate::duration::format_duration(off_by.to_std().unwrap_or_default())
            );
            log::warn!("drain {name}: {reason}");
            Decision::new(name, Action::Skip, reason)
        }
        None => {
            Decision::new(name, Action::ExpireBurst, format!("burst deadline {} passed", local(until, zone)))
        }
    })
}

/// Expire the bursts of drains the configuration no longer names, whose deadline passed.
pub fn plan_unconfigured_bursts(expired: &[(String, DateTime<Utc>)], zone: Tz) -> Vec<Decision> {
    expired
        .iter()
        .map(|(name, until)| {
            let reason =
                format!("burst deadline {} passed (the drain is no longer configured)", local(*until, zone));
            Decision::new(name, Action::ExpireBurst, reason)
        })
        .collect()
}

/// The decisions that end things: expired bursts, crashed runs to reap, hung runs to stop.
/// They are applied before [`plan_starts`] decides on a fresh view, so that an item a
/// hung run held is started again in the same pass (docs/guarantees.md).
pub fn plan_recovery(snapshots: &[DrainSnapshot], now: DateTime<Utc>, zone: Tz) -> Vec<Decision> {
    let mut decisions = Vec::new();
    for snapshot in snapshots {
        let drain = snapshot.drain;
        let name = drain.name.as_str();
        if let Some(controls) = snapshot.controls.as_ref() {
            decisions.extend(plan_burst_expiry(name, controls, snapshot.clock_off_by, now, zone));
        }
        // A crashed run is reaped; a silent one is hung — unless this clock cannot judge it.
        for run in
            snapshot.runs.iter().filter(|run| run.is_process_gone || is_silent_too_long(run, snapshot, now))
        {
            let format = |since: DateTime<Utc>| {
                crate::duration::format_duration((now - since).to_std().unwrap_or_default())
            };
            let (since, is_server_start) = silent_since(run, snapshot, now);
            let decision = if run.is_process_gone {
                Decision::new(name, Action::ReapCrashed, process_gone(run))
            } else if let Some(off_by) = snapshot.clock_off_by.filter(|_| is_not_judged(run, snapshot)) {
                let reason = format!(
                    "run {} of host {}: silent for {} by this host's clock, which is {} {} the database server's: \
                     not judged hung until this clock is set right (`drainctl doctor`: clock_skew)",
                    run.run.id,
                    run.run.host,
                    format(since),
                    crate::duration::format_duration(off_by.abs().to_std().unwrap_or_default()),
                    if off_by > chrono::Duration::zero() { "ahead of" } else { "behind" }
                );
                log::warn!("{reason}");
                Decision::new(name, Action::Skip, reason)
            } else {
                let liveness = crate::duration::format_duration(drain.liveness_timeout);
                let detail = if is_server_start {
                    format!(
                        " since the database server started at {} (last checkpoint {} ago; liveness_timeout {liveness})",
                        local(since, zone),
                        format(run.run.last_checkpoint_at)
                    )
                } else {
                    format!(" (liveness_timeout {liveness})")
                };
                Decision::new(
                    name,
                    Action::KillHung,
                    format!("run {}: no checkpoint for {}{detail}", run.run.id, format(since)),
                )
            };
            decisions.push(Decision { run_id: Some(run.run.id), ..decision });
        }
    }
    decisions
}

/// Whether to start each drain, counting only its healthy runs as busy. The drains of
/// one quota group are decided in rank order (burst, then priority, then name), so the
/// highest-ranking one is started first; a drain started while a higher-ranking drain of
/// its group works and has items says that it will yield to it (docs/rate-limits.md,
/// "Priority within a group").
pub fn plan_starts(snapshots: &[DrainSnapshot], now: DateTime<Utc>, zone: Tz) -> Vec<Decision> {
    let slots: Vec<Slots> = snapshots.iter().map(|snapshot| Slots::of(snapshot, now)).collect();
    let busy: Vec<u32> = slots.iter().map(|slots| slots.busy).collect();
    let mut decisions: Vec<Decision> = snapshots
        .iter()
        .zip(slots)
        .map(|(snapshot, slots)| start_decision(snapshot, slots, now, zone))
        .collect();
    let ranks: Vec<Rank> = snapshots.iter().map(|snapshot| rank(snapshot, now)).collect();
    // A drain that works now: started by this plan, or with a healthy run.
    let works: Vec<bool> = decisions
        .iter()
        .zip(&busy)
        .map(|(decision, busy)| decision.action == Action::Start || *busy > 0)
        .collect();
    let same_group = |a: usize, b: usize| snapshots[a].drain.quota_group == snapshots[b].drain.quota_group;
    let started: Vec<bool> = decisions.iter().map(|decision| decision.action == Action::Start).collect();
    for (index, decision) in decisions.iter_mut().enumerate().filter(|(_, d)| d.action == Action::Start) {
        // Started to wait for its group's reset while a higher-ranking drain of the group,
        // held back now, may run by then (its window opens, its budget renews): the quota
        // that returns is that drain's first, not this one's until the next pass.
        let reset = snapshots[index].backoff.backoff_until.filter(|until| now < *until);
        let first_by_then = reset.and_then(|until| {
            (0..snapshots.len())
                .filter(|&other| {
                    same_group(index, other) && ranks[other].outranks(&ranks[index]) && !works[other]
                })
                // Held back now by what ends by then, not by the backoff alone: one that
                // only the reset holds (a `max_wait` too short to wait for it) leaves the
                // waiting to this drain, as before.
                .filter_map(|other| {
                    let held = held_back_at(&snapshots[other], now, zone);
                    (!held.is_empty() && may_run_at(&snapshots[other], until, zone)).then_some((other, held))
                })
                .max_by_key(|(other, _)| ranks[*other])
                .map(|(other, held)| (other, held, until))
        });
        if let Some((other, held, until)) = first_by_then {
            decision.action = Action::Skip;
            decision.trigger = None;
            decision.reason = format!(
                "quota group {} backs off until {}; {} and may run by then ({}): no pass of this drain is started \
                 to wait for the reset, leaving the quota that returns to that drain, started by a later supervise \
                 pass (a pass of this drain already waiting takes it meanwhile)",
                snapshots[index].drain.quota_group,
                local(until, zone),
                ranks[other].describe_over(&ranks[index]),
                held.join(", ")
            );
            continue;
        }
        // Started only once these recorded their runs, so that its first claim sees them
        // and yields (docs/rate-limits.md, "Priority within a group").
        decision.after_starts_of = (0..snapshots.len())
            .filter(|&other| {
                started[other] && same_group(index, other) && ranks[other].outranks(&ranks[index])
            })
            .map(|other| snapshots[other].drain.name.clone())
            .collect();
        let ahead = (0..snapshots.len())
            .filter(|&other| same_group(index, other) && ranks[other].outranks(&ranks[index]))
            .filter(|&other| works[other] && snapshots[other].available_items > 0)
            .max_by_key(|&other| ranks[other]);
        if let Some(ahead) = ahead {
            // It takes no item while that drain works: one pass waits for its turn, and a
            // drain with a pass running already gets none.
            decision.passes = 1;
            decision.reason.push_str(&format!(
                "; {} in quota group {}: it yields while that drain has items",
                ranks[ahead].describe_over(&ranks[index]),
                snapshots[index].drain.quota_group
            ));
            if busy[index] > 0 {
                decision.action = Action::Skip;
                decision.trigger = None;
                decision.after_starts_of.clear();
                decision.reason.push_str("; its running pass waits its turn");
            }
        }
    }
    one_decision_a_pass(in_rank_order(snapshots, &ranks, decisions))
}

/// Whether the drain of `snapshot` may run at `at` with items to run: not paused or
/// parked, and nothing of [`held_back_at`] holds it then.
fn may_run_at(snapshot: &DrainSnapshot, at: DateTime<Utc>, zone: Tz) -> bool {
    snapshot.available_items > 0
        && snapshot.controls.as_ref().is_none_or(|controls| !controls.is_paused())
        && snapshot.parked.is_none()
        && held_back_at(snapshot, at, zone).is_empty()
}

/// What holds the drain of `snapshot` back at `at` that ends later, in words: its window
/// (closed then), its daily budget (spent for that day), its cadence (`every`, not due).
fn held_back_at(snapshot: &DrainSnapshot, at: DateTime<Utc>, zone: Tz) -> Vec<String> {
    let mut held = Vec::new();
    if let Some(window) = snapshot.drain.window.as_ref().filter(|window| !window.contains(at, zone)) {
        let opens = window
            .next_opening(at, zone)
            .map(|next| format!(" at {}", local(next, zone)))
            .unwrap_or_default();
        held.push(format!("its window opens{opens}"));
    }
    if let Some(spent) = snapshot.budget_spent.as_ref().filter(|spent| at < spent.day_end) {
        held.push(format!("its daily budget renews at {}", local(spent.day_end, zone)));
    }
    if let Some(next) =
        cadence::next_start(snapshot.drain.every, snapshot.last_started_at).filter(|next| at < *next)
    {
        held.push(format!("its cadence is due at {}", local(next, zone)));
    }
    held
}

/// A start of several passes as one decision a pass, each started as its own process
/// (docs/operations.md): a drain with `concurrency` 4 and items for all four slots gets
/// its four passes from this supervise pass, not one a pass over the next hour.
fn one_decision_a_pass(decisions: Vec<Decision>) -> Vec<Decision> {
    let mut each = Vec::with_capacity(decisions.len());
    for decision in decisions {
        let passes = decision.passes;
        if decision.action != Action::Start || passes <= 1 {
            each.push(decision);
            continue;
        }
        for pass in 1..=passes {
            let mut one = decision.clone();
            one.passes = 1;
            one.reason = format!("{}; pass {pass} of {passes}", decision.reason);
            each.push(one);
        }
    }
    each
}

/// A drain's rank in its quota group at `now`.
fn rank<'a>(snapshot: &'a DrainSnapshot, now: DateTime<Utc>) -> Rank<'a> {
    Rank {
        is_bursting: snapshot.controls.as_ref().and_then(|c| c.active_burst(now)).is_some(),
        priority: snapshot.drain.priority,
        name: &snapshot.drain.name,
    }
}

/// The decisions with each quota group's drains in rank order, highest first, in the
/// places the group's drains hold in the configuration (other groups do not move).
fn in_rank_order(snapshots: &[DrainSnapshot], ranks: &[Rank], decisions: Vec<Decision>) -> Vec<Decision> {
    let group = |index: usize| snapshots[index].drain.quota_group.as_str();
    let mut order: Vec<usize> = (0..decisions.len()).collect();
    for first in 0..decisions.len() {
        if (0..first).any(|earlier| group(earlier) == group(first)) {
            continue;
        }
        let places: Vec<usize> = (first..decisions.len()).filter(|&i| group(i) == group(first)).collect();
        let mut members = places.clone();
        members.sort_by(|a, b| ranks[*b].cmp(&ranks[*a]));
        for (place, member) in places.into_iter().zip(members) {
            order[place] = member;
        }
    }
    let mut decisions: Vec<Option<Decision>> = decisions.into_iter().map(Some).collect();
    order.into_iter().filter_map(|index| decisions[index].take()).collect()
}

/// A drain's concurrency slots as [`plan_starts`] counts them.
#[derive(Clone, Copy)]
struct Slots {
    /// Taken, by healthy runs or by sessions that hold them.
    busy: u32,
    /// Healthy runs that hold no item: each takes the next available item itself.
    idle: u32,
    /// Held by passes whose runs were ended (hung) but whose drains still run.
    held_by_ended: u32,
}

impl Slots {
    /// The drain's slots at `now`: taken by its healthy runs, or held by sessions (after
    /// the recovery) — whichever is more. A hung run of another host keeps its slot until
    /// that host stops it. Another host's healthy run counts whether or not its session
    /// holds a slot now: a pass whose session the server ended (a restart) holds none
    /// until its worker ends and it reconnects, and this host cannot tell it from a host
    /// that vanished (docs/operations.md, "Several hosts").
    fn of(snapshot: &DrainSnapshot, now: DateTime<Utc>) -> Slots {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let healthy: Vec<&RunSnapshot> =
            snapshot.runs.iter().filter(|run| is_healthy(run, snapshot, now)).collect();
        let busy = count(healthy.len());
        Slots {
            busy: busy.max(snapshot.held_slots),
            idle: count(healthy.iter().filter(|run| !run.holds_item).count()),
            // Held beyond its healthy runs: by passes whose runs were ended (hung).
            held_by_ended: snapshot.held_slots.saturating_sub(busy),
        }
    }
}

fn start_decision(snapshot: &DrainSnapshot, slots: Slots, now: DateTime<Utc>, zone: Tz) -> Decision {
    let Slots { busy, idle, held_by_ended } = slots;
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
    // A spent daily budget holds in a burst too (docs/results.md).
    if let Some(spent) = &snapshot.budget_spent {
        return skip(budget_reason(spent, zone));
    }
    let backoff_until = snapshot.backoff.backoff_until.filter(|until| now < *until);
    // A burst that ends before its group's reset can run nothing: the drain is decided as
    // outside it, as `burst on` said (no pass starts during this burst).
    let burst_until = controls
        .and_then(|c| c.active_burst(now))
        .filter(|burst_until| backoff_until.is_none_or(|reset| reset < *burst_until));
    // A backoff that ends before the next pass does not wait for that pass: the drain is
    // started now and waits for the reset itself (docs/rate-limits.md).
    let mut waits_for_reset = None;
    if let Some(until) = backoff_until {
        let wait = (until - now).to_std().unwrap_or_default();
        // Outside a burst a pass waits only within its time budget (`may_wait_until`):
        // one started for a reset beyond it would end at once, holding nothing. A pass
        // whose budget ends before such a reset goes on as a new pass by the same rule
        // (`budget_cut_wait`, docs/rate-limits.md).
        let budget = if burst_until.is_some() { snapshot.wake_within } else { drain.max_seconds_per_pass };
        if wait > snapshot.wake_within.min(budget) {
            return skip(format!(
                "quota group {} backs off until {} ({})",
                drain.quota_group,
                local(until, zone),
                snapshot.backoff.reason.as_deref().unwrap_or("no reason recorded")
            ));
        }
        waits_for_reset = Some(until);
    }
    if snapshot.available_items == 0 {
        return skip("no item available now".to_string());
    }
    if busy >= drain.concurrency {
        // Slots held by sessions whose runs no longer run (ended as hung, on a host that
        // still runs their drain): said, or the drain looks idle and blocked for no reason.
        let ended = match held_by_ended {
            0 => String::new(),
            n => format!(
                " ({n} held by a pass whose run was ended, hung, but whose drain still runs — on another host it \
                 keeps its slot until that host stops it; `drainctl runs --drain{}{name}` names the run and its host)",
                // `--drain -x` would read `-x` as an option.
                if name.starts_with('-') { "=" } else { " " }
            ),
        };
        // Lowered below the passes still running: say how many run.
        return skip(match busy > drain.concurrency {
            true => {
                format!("{busy} passes running, more than concurrency {} allows{ended}", drain.concurrency)
            }
            false => format!("all {} concurrency slot(s) busy{ended}", drain.concurrency),
        });
    }
    // One pass for each free slot an available item can fill, beyond the items its
    // running passes that hold none (waiting for a reset, between items) take themselves.
    let wanting = snapshot.available_items.saturating_sub(idle);
    if wanting == 0 {
        return skip(format!(
            "its {} that hold{} no item take{} the {} available",
            crate::output::counted(idle, "running pass"),
            if idle == 1 { "s" } else { "" },
            if idle == 1 { "s" } else { "" },
            crate::output::counted(snapshot.available_items, "item"),
        ));
    }
    let passes = (drain.concurrency - busy).min(wanting);
    let start = |trigger: Trigger, reason: String| {
        let reason = match waits_for_reset {
            Some(until) => format!(
                "{reason}; quota group {} backs off until {} ({}), soon enough for a pass to wait: it waits for \
                 the reset",
                drain.quota_group,
                local(until, zone),
                crate::duration::format_relative(until - now)
            ),
            None => reason,
        };
        let mut decision = Decision::new(name, Action::Start, reason);
        decision.trigger = Some(trigger);
        decision.passes = passes;
        decision
    };
    if let Some(until) = burst_until {
        return start(Trigger::Burst, format!("in burst until {}", local(until, zone)));
    }
    let reason = match &drain.window {
        None => "items available; no window configured".to_string(),
        Some(window) if window.contains(now, zone) => {
            // A pass started for a reset after the window closes would hold its slot
            // until then and take nothing (docs/rate-limits.md, "Supervise wakes drains
            // at the reset": when everything else allows it).
            let closes_first = waits_for_reset.and_then(|until| {
                window.closes_at(now, zone).filter(|closes| until >= *closes).map(|c| (until, c))
            });
            if let Some((until, closes)) = closes_first {
                return skip(format!(
                    "quota group {} backs off until {}, after window {} closes at {}",
                    drain.quota_group,
                    local(until, zone),
                    window.describe(),
                    local(closes, zone)
                ));
            }
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
        let wait =
            |at: DateTime<Utc>| crate::duration::format_duration((at - now).to_std().unwrap_or_default());
        // The window closed by then: the start waits for its next opening.
        return match cadence::first_allowed_start(Some(next), drain.window.as_ref(), zone) {
            Some(first) if first != next => skip(format!(
                "cadence {every}: next start in {}, when the window is closed; then at its opening {} (in {})",
                wait(next),
                local(first, zone),
                wait(first)
            )),
            _ => skip(format!("cadence {every}: next start in {}", wait(next))),
        };
    }
    start(Trigger::Supervisor, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::db::backoffs::BackoffRow;
    use crate::db::drains::DrainControls;
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
            available_items: 1,
            held_slots: 0,
            last_started_at: None,
            wake_within: std::time::Duration::ZERO,
            parked: None,
            budget_spent: None,
            server_started_at: None,
            clock_off_by: None,
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

    fn running_run(last_checkpoint_at: DateTime<Utc>) -> RunSnapshot {
        RunSnapshot {
            run: crate::db::runs::RunRow {
                id: 7,
                drain: "a".into(),
                trigger: Trigger::Supervisor,
                host: "h".into(),
                host_id: None,
                pid: 1,
                process_start_time: None,
                worker_pid: None,
                worker_start_time: None,
                started_at: last_checkpoint_at,
                last_checkpoint_at,
                checkpoints: 3,
                items_done: 0,
                items_failed: 0,
                status: crate::model::RunStatus::Running,
                finished_at: None,
                note: None,
                log_path: None,
                waiting_until: None,
                waiting_reason: None,
            },
            is_process_gone: false,
            holds_item: true,
            may_be_stopped_here: true,
        }
    }

    #[test]
    fn time_the_database_server_was_down_does_not_count_against_a_run() {
        let config = Config::from_text(
            "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"a\"\ncommand = [\"w\"]\nliveness_timeout = \"20s\"\n",
            None,
        )
        .unwrap();
        let (zone, drain) = (config.defaults.timezone, &config.drains[0]);
        let seconds = |s: i64| inside() + chrono::Duration::seconds(s);
        // Last checkpoint at 0 s; the server went down and started again at 28 s.
        let judged = |now: i64, server_started_at: Option<i64>| {
            let mut s = snapshot(drain);
            s.available_items = 0;
            s.runs = vec![running_run(seconds(0))];
            s.server_started_at = server_started_at.map(seconds);
            plan_recovery(&[s], seconds(now), zone)
        };
        // Supervise at once after the start (29 s after the checkpoint): not hung.
        assert_eq!(judged(29, Some(28)), []);
        // Nor while the server has been up for liveness_timeout or less.
        assert_eq!(judged(48, Some(28)), []);
        // Silent for longer than that while the server was up: hung, and the reason says
        // what the silence was counted from.
        let hung = only(judged(49, Some(28)));
        assert_eq!(hung.action, Action::KillHung);
        assert_eq!(
            hung.reason,
            "run 7: no checkpoint for 21s since the database server started at Thu 2026-11-26 21:00:28 UTC \
             (last checkpoint 49s ago; liveness_timeout 20s)"
        );
        // A server that started before the last checkpoint changes nothing.
        assert_eq!(only(judged(29, Some(-60))).reason, "run 7: no checkpoint for 29s (liveness_timeout 20s)");
        assert_eq!(only(judged(29, None)).action, Action::KillHung);
        // A server start after now (a host clock behind the server's) is not counted.
        assert_eq!(only(judged(29, Some(30))).action, Action::KillHung);
        // A run judged healthy that way takes its concurrency slot.
        let mut s = snapshot(drain);
        s.runs = vec![running_run(seconds(0))];
        s.server_started_at = Some(seconds(28));
        assert_eq!(only(plan_starts(&[s], seconds(29), zone)).reason, "all 1 concurrency slot(s) busy");
    }

    #[test]
    fn another_hosts_run_takes_its_slot_even_when_its_session_holds_none() {
        let config = Config::from_text(
            "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"a\"\ncommand = [\"w\"]\nconcurrency = 2\n",
            None,
        )
        .unwrap();
        let (zone, drain) = (config.defaults.timezone, &config.drains[0]);
        let elsewhere = |holds_item: bool| {
            let mut run = running_run(inside());
            run.run.host = "host-b".into();
            run.holds_item = holds_item;
            run
        };
        let mut s = snapshot(drain);
        s.runs = vec![elsewhere(true), elsewhere(true)];
        s.available_items = 1;
        // Their sessions ended (the database server restarted) while their workers run:
        // their passes hold no slot until they reconnect. Counting only held slots started
        // two more passes, beyond `concurrency`.
        s.held_slots = 0;
        assert_eq!(
            only(plan_starts(&[s], inside() + chrono::Duration::seconds(30), zone)).reason,
            "all 2 concurrency slot(s) busy"
        );
    }

    #[test]
    fn a_reset_beyond_the_pass_s_time_budget_is_not_waited_for_except_in_a_burst() {
        let config = Config::from_text(
            "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"a\"\ncommand = [\"w\"]\nmax_seconds_per_pass = \"1m\"\n",
            None,
        )
        .unwrap();
        let (zone, drain) = (config.defaults.timezone, &config.drains[0]);
        let backing_off = |minutes: i64, burst: Option<DateTime<Utc>>| {
            let mut s = snapshot(drain);
            s.wake_within = std::time::Duration::from_secs(15 * 60);
            s.backoff.backoff_until = Some(inside() + chrono::Duration::minutes(minutes));
            s.backoff.reason = Some("usage limit reached".into());
            s.controls = Some(controls(burst, false));
            only(plan(&[s], inside(), zone))
        };
        // A pass may spend one minute: a reset in five is the next pass's, not this one's.
        let skip = backing_off(5, None);
        assert_eq!(skip.action, Action::Skip, "{}", skip.reason);
        assert!(skip.reason.contains("backs off until"), "{}", skip.reason);
        assert!(backing_off(1, None).reason.contains("it waits for the reset"));
        // A burst pass waits whatever its time budget.
        let burst = backing_off(5, Some(inside() + chrono::Duration::hours(2)));
        assert_eq!(burst.action, Action::Start);
        assert!(burst.reason.contains("it waits for the reset"), "{}", burst.reason);
    }

    /// One drain `a`, in UTC, whose window is 08:00-12:00 every day.
    fn daily_window_config() -> Config {
        Config::from_text(
            "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"a\"\ncommand = [\"w\"]\n\
             window = { days = \"daily\", from = \"08:00\", to = \"12:00\" }\n",
            None,
        )
        .unwrap()
    }

    fn on_nov_27(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, hour, minute, 0).unwrap()
    }

    #[test]
    fn a_burst_that_ends_before_the_reset_starts_no_pass_to_wait_for_it() {
        let config = daily_window_config();
        let (zone, drain, at) = (config.defaults.timezone, &config.drains[0], on_nov_27);
        let decide = |now: DateTime<Utc>, burst_until: DateTime<Utc>, reset: DateTime<Utc>| {
            let mut s = snapshot(drain);
            s.wake_within = std::time::Duration::from_secs(15 * 60);
            s.backoff.backoff_until = Some(reset);
            s.backoff.reason = Some("try again in 3h10m".into());
            s.controls = Some(controls(Some(burst_until), false));
            only(plan(&[s], now, zone))
        };
        // Before: started at 05:58, outside its window, to wait for 06:11; the burst ended
        // at 06:00 and so did the pass, having taken nothing.
        let skip = decide(at(5, 58), at(6, 0), at(6, 11));
        assert_eq!(skip.action, Action::Skip, "{}", skip.reason);
        assert!(skip.reason.starts_with("outside window daily 08:00-12:00"), "{}", skip.reason);
        // Inside the window it is a normal pass that waits for the reset.
        let normal = decide(at(9, 58), at(10, 0), at(10, 11));
        assert_eq!(
            (normal.action, normal.trigger),
            (Action::Start, Some(Trigger::Supervisor)),
            "{}",
            normal.reason
        );
        assert!(normal.reason.contains("it waits for the reset"), "{}", normal.reason);
        // A reset before the burst's end is the burst's to wait for.
        let burst = decide(at(5, 58), at(7, 0), at(6, 11));
        assert_eq!((burst.action, burst.trigger), (Action::Start, Some(Trigger::Burst)), "{}", burst.reason);
    }

    #[test]
    fn a_reset_after_the_window_closes_is_not_waited_for() {
        let config = daily_window_config();
        let (zone, drain, at) = (config.defaults.timezone, &config.drains[0], on_nov_27);
        let backing_off = |until: DateTime<Utc>| {
            let mut s = snapshot(drain);
            s.wake_within = std::time::Duration::from_secs(15 * 60);
            s.backoff.backoff_until = Some(until);
            s.backoff.reason = Some("resets 12pm".into());
            only(plan(&[s], at(11, 50), zone))
        };
        // Before: started at 11:50 to wait for 12:01; it held its slot until the window
        // closed at 12:00 and took nothing.
        let skip = backing_off(at(12, 1));
        assert_eq!(skip.action, Action::Skip, "{}", skip.reason);
        assert!(skip.reason.contains("after window daily 08:00-12:00 closes at"), "{}", skip.reason);
        let start = backing_off(at(11, 55));
        assert_eq!(start.action, Action::Start, "{}", start.reason);
        assert!(start.reason.contains("it waits for the reset"), "{}", start.reason);
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
        empty.available_items = 0;
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
        // Inside the window, the cadence's next start after it closes (06:00 Friday): the
        // start waits for the next opening, Sunday 22:00, and the reason says so.
        let mut closing = snapshot(&config.drains[1]);
        closing.last_started_at = Some(at("2026-11-27T05:30:00Z"));
        let decision = only(plan(&[closing], at("2026-11-27T05:40:00Z"), zone));
        assert_eq!(
            decision.reason,
            "cadence 1h: next start in 50m, when the window is closed; then at its opening \
             Sun 2026-11-29 22:00 UTC (in 2d 16h)"
        );
    }

    fn shared_config(priorities: &str) -> Config {
        // `low`, `other` (its own group) and `high`, in that order; `priorities` sets them.
        let [low, high]: [&str; 2] = match priorities.split_once(',') {
            Some((low, high)) => [low, high],
            None => ["", ""],
        };
        Config::from_text(
            &format!(
                "[defaults]\ntimezone = \"UTC\"\n\
                 [[drain]]\nname = \"low\"\ncommand = [\"w\"]\nquota_group = \"g\"\n{low}\n\
                 [[drain]]\nname = \"other\"\ncommand = [\"w\"]\n\
                 [[drain]]\nname = \"high\"\ncommand = [\"w\"]\nquota_group = \"g\"\n{high}\n"
            ),
            None,
        )
        .unwrap()
    }

    fn names(decisions: &[Decision]) -> Vec<&str> {
        decisions.iter().map(|d| d.drain.as_str()).collect()
    }

    #[test]
    fn a_lower_drain_is_not_started_for_a_reset_a_higher_drain_may_take_by_then() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let now = at("2026-11-27T21:50:00Z");
        // What `low` is told, with group `g` backing off until `until`.
        let low = |config: &Config, until: &str, last_started: Option<&str>| -> Decision {
            let snapshots: Vec<DrainSnapshot> = config
                .drains
                .iter()
                .map(|drain| {
                    let mut snapshot = snapshot(drain);
                    snapshot.wake_within = std::time::Duration::from_secs(15 * 60);
                    snapshot.last_started_at = last_started.map(at);
                    if drain.quota_group == "g" {
                        snapshot.backoff.backoff_until = Some(at(until));
                    }
                    snapshot
                })
                .collect();
            let decisions = plan_starts(&snapshots, now, config.defaults.timezone);
            decisions.into_iter().find(|d| d.drain == "low").unwrap()
        };
        // `high` has a window opening at 22:00; the group backs off until 22:01. Before:
        // `low` was started to wait for the reset and took the quota until the next pass
        // started `high` (22:05).
        let windowed = shared_config(
            "priority = 0,priority = 10\nwindow = { days = \"mon-sun\", from = \"22:00\", to = \"06:00\" }",
        );
        let skipped = low(&windowed, "2026-11-27T22:01:00Z", None);
        assert_eq!(skipped.action, Action::Skip, "{skipped:?}");
        assert!(
            skipped.reason.contains(
                "drain high has priority 10 (this drain 0) and may run by then (its window opens at"
            ),
            "{}",
            skipped.reason
        );
        // A reset before the window opens: `low` takes the quota meanwhile, as before.
        assert_eq!(low(&windowed, "2026-11-27T21:55:00Z", None).action, Action::Start);
        // Held back by nothing but the reset (its own max_wait too short to wait for it):
        // this drain waits for the reset, as before (found in review: both idled).
        let plain = shared_config("priority = 0,priority = 10");
        assert_eq!(low(&plain, "2026-11-27T22:01:00Z", None).action, Action::Start);
        // A higher drain whose cadence holds it past the reset takes nothing by then.
        let cadenced = shared_config("priority = 0,priority = 10\nevery = \"6h\"");
        assert_eq!(
            low(&cadenced, "2026-11-27T22:01:00Z", Some("2026-11-27T20:50:00Z")).action,
            Action::Start
        );
    }

    #[test]
    fn the_drains_of_a_group_are_started_highest_rank_first_in_the_group_s_places() {
        let config = shared_config("priority = 0,priority = 5");
        let zone = config.defaults.timezone;
        let snapshots: Vec<DrainSnapshot> = config.drains.iter().map(snapshot).collect();
        let decisions = plan_starts(&snapshots, inside(), zone);
        // `other` keeps its place; `high` takes the group's first place.
        assert_eq!(names(&decisions), ["high", "other", "low"]);
        // `low` is started once `high` recorded its run; the others wait for nobody.
        let after: Vec<&[String]> = decisions.iter().map(|d| d.after_starts_of.as_slice()).collect();
        assert_eq!(after, [&[][..], &[][..], &["high".to_string()][..]]);
        assert!(decisions.iter().all(|d| d.action == Action::Start), "{decisions:?}");
        let low = &decisions[2];
        assert!(
            low.reason.ends_with(
                "; drain high has priority 5 (this drain 0) in quota group g: it yields while that drain has items"
            ),
            "{}",
            low.reason
        );
        assert!(!decisions[0].reason.contains("yields"), "{}", decisions[0].reason);
        assert!(!decisions[1].reason.contains("yields"), "{}", decisions[1].reason);
    }

    #[test]
    fn a_pass_is_started_for_each_free_slot_an_available_item_can_fill() {
        let config = shared_config("priority = 0\nconcurrency = 4,priority = 5\nconcurrency = 3");
        let zone = config.defaults.timezone;
        let starts = |available: [u32; 2], busy: usize| {
            let mut snapshots: Vec<DrainSnapshot> = config.drains.iter().map(snapshot).collect();
            snapshots[0].available_items = available[0];
            snapshots[2].available_items = available[1];
            snapshots[2].runs = vec![running_run(inside()); busy];
            let decisions = plan_starts(&snapshots, inside(), zone);
            let count = |name: &str| {
                decisions.iter().filter(|d| d.drain == name && d.action == Action::Start).count()
            };
            (count("high"), count("low"), decisions)
        };
        // `high`: 3 slots, as many passes as items can fill.
        assert_eq!(starts([0, 1], 0).0, 1);
        assert_eq!(starts([0, 2], 0).0, 2);
        assert_eq!(starts([0, 3], 0).0, 3);
        let (high, _, decisions) = starts([0, 9], 1);
        assert_eq!(high, 2, "one slot is busy: {decisions:?}");
        assert_eq!(
            decisions.iter().filter(|d| d.drain == "high").map(|d| d.reason.as_str()).collect::<Vec<_>>(),
            [
                "items available; no window configured; pass 1 of 2",
                "items available; no window configured; pass 2 of 2"
            ]
        );
        // Every slot busy: none.
        let (high, _, decisions) = starts([0, 9], 3);
        assert_eq!(high, 0);
        assert!(decisions.iter().any(|d| d.reason == "all 3 concurrency slot(s) busy"), "{decisions:?}");
        // `low` yields to `high`, which works and has items: one pass waits its turn; once
        // `high` has nothing, all four slots.
        assert_eq!(starts([9, 9], 0).1, 1);
        assert_eq!(starts([9, 0], 0).1, 4);
        // A pass that holds no item (waiting for the reset) takes one available item
        // itself: a pass more only for the items beyond. Before: one more pass for the
        // same item every supervise pass.
        let with = |available: u32, idle: usize, held_slots: u32| {
            let mut snapshots: Vec<DrainSnapshot> = config.drains.iter().map(snapshot).collect();
            snapshots[2].available_items = available;
            snapshots[2].runs = vec![RunSnapshot { holds_item: false, ..running_run(inside()) }; idle];
            snapshots[2].held_slots = held_slots;
            plan_starts(&snapshots, inside(), zone)
                .into_iter()
                .filter(|d| d.drain == "high")
                .collect::<Vec<_>>()
        };
        let waiting = with(1, 1, 0);
        assert_eq!(waiting.len(), 1);
        assert_eq!(
            (waiting[0].action, waiting[0].reason.as_str()),
            (Action::Skip, "its 1 running pass that holds no item takes the 1 item available")
        );
        assert_eq!(with(3, 1, 0).iter().filter(|d| d.action == Action::Start).count(), 2);
        // Slots held by runs this pass could not stop (another host's) are not free.
        // Before: counted free, and the passes started for them ended `lock_skipped`.
        let held = with(3, 0, 2);
        assert_eq!(held.iter().filter(|d| d.action == Action::Start).count(), 1, "{held:?}");
        let full = with(3, 0, 3);
        assert!(
            full[0]
                .reason
                .starts_with("all 3 concurrency slot(s) busy (3 held by a pass whose run was ended, hung"),
            "{}",
            full[0].reason
        );
        // A yielding drain with a pass running gets no other. Before: one more a pass.
        let mut snapshots: Vec<DrainSnapshot> = config.drains.iter().map(snapshot).collect();
        snapshots[0].available_items = 9;
        snapshots[0].runs = vec![RunSnapshot { holds_item: false, ..running_run(inside()) }];
        snapshots[2].available_items = 9;
        let low = plan_starts(&snapshots, inside(), zone).into_iter().find(|d| d.drain == "low").unwrap();
        assert_eq!(low.action, Action::Skip);
        assert!(
            low.reason.ends_with("it yields while that drain has items; its running pass waits its turn"),
            "{}",
            low.reason
        );
    }

    #[test]
    fn a_drain_in_burst_is_started_before_a_higher_priority() {
        let config = shared_config("priority = 0,priority = 5");
        let zone = config.defaults.timezone;
        let mut snapshots: Vec<DrainSnapshot> = config.drains.iter().map(snapshot).collect();
        snapshots[0].controls = Some(controls(Some(inside() + chrono::Duration::hours(1)), false));
        let decisions = plan_starts(&snapshots, inside(), zone);
        assert_eq!(names(&decisions), ["low", "other", "high"]);
        assert!(
            decisions[2].reason.contains("drain low is in burst in quota group g"),
            "{}",
            decisions[2].reason
        );
    }

    #[test]
    fn equal_priorities_are_ordered_by_name_and_nobody_yields() {
        let config = shared_config("priority = 3,priority = 3");
        let zone = config.defaults.timezone;
        let snapshots: Vec<DrainSnapshot> = config.drains.iter().map(snapshot).collect();
        let decisions = plan_starts(&snapshots, inside(), zone);
        assert_eq!(names(&decisions), ["high", "other", "low"]);
        assert!(decisions.iter().all(|d| d.action == Action::Start && !d.reason.contains("yields")));
        // Equal ranks are started together: nobody waits for another's run.
        assert!(decisions.iter().all(|d| d.after_starts_of.is_empty()), "{decisions:?}");
    }

    #[test]
    fn a_higher_rank_without_items_or_work_holds_nobody_back() {
        let config = shared_config("priority = 0,priority = 5");
        let zone = config.defaults.timezone;
        // `high` has nothing to do: `low` starts with no yield note.
        let mut snapshots: Vec<DrainSnapshot> = config.drains.iter().map(snapshot).collect();
        snapshots[2].available_items = 0;
        let decisions = plan_starts(&snapshots, inside(), zone);
        let low = decisions.iter().find(|d| d.drain == "low").unwrap();
        assert_eq!(low.action, Action::Start);
        assert!(!low.reason.contains("yields"), "{}", low.reason);
        // `high` is paused (not started, no run): nobody yields to it.
        let mut snapshots: Vec<DrainSnapshot> = config.drains.iter().map(snapshot).collect();
        snapshots[2].controls = Some(controls(None, true));
        let decisions = plan_starts(&snapshots, inside(), zone);
        let low = decisions.iter().find(|d| d.drain == "low").unwrap();
        assert!(!low.reason.contains("yields"), "{}", low.reason);
    }
}
