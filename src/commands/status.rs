//! `drainctl status`: the operator's snapshot of every drain — state, backlog counts,
//! burst, backoff, last run, last checkpoint age, the next window opening and cadence
//! start, and a forecast (throughput of recent passes, time to empty the backlog, whether
//! a burst finishes in time) — of every account of the quota groups that declare
//! accounts, and the supervisor's heartbeat, with relative times in the configured zone.
//! Counts come from `item_counts` (kept by triggers, at most 16 rows per drain).
//!
//! [`gather`] reads the database once, [`decide`] works out each drain's state from that
//! snapshot (no I/O), and [`render`] prints the result: a table for humans, or the
//! [`StatusView`] itself as the JSON of docs/json.md.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use postgres::Client;
use serde::Serialize;

use crate::accounts::{AccountState, GroupView, Selection};
use crate::backoff::BackoffRule;
use crate::config::{Config, DrainConfig};
use crate::context::Context;
use crate::db::backoffs::{read_group_backoffs, BackoffRow};
use crate::db::drains::{read_controls, DrainControls};
use crate::db::items::{count_by_state_of, StateCounts};
use crate::db::quota_groups::{read_groups, GroupState};
use crate::db::runs::RunHistory;
use crate::db::runs::{last_run, last_run_starts, running_runs, RunRow};
use crate::db::usage::{format_usd, usage_by_drain_since, UsageSums};
use crate::duration::format_relative;
use crate::error::{Error, Result};
use crate::output::{local_time, table, Report};
use crate::schedule::forecast::Forecast;
use crate::supervise::Heartbeat;

pub fn run(ctx: &mut Context) -> Result<Report> {
    let snapshot = gather(&mut ctx.client, &ctx.config, ctx.clock.now())?;
    let view = decide(&ctx.config, snapshot);
    render(&view, ctx.config.defaults.timezone)
}

/// The status of every drain at `now`, as `status --json` prints it (docs/json.md): what
/// the operations page (`crate::report`) shows of each drain, so that it and `status`
/// never disagree.
pub(crate) fn status_view(client: &mut Client, config: &Config, now: DateTime<Utc>) -> Result<StatusView> {
    Ok(decide(config, gather(client, config, now)?))
}

/// What `status` reads from the database, all of it before deciding anything.
struct Snapshot {
    now: DateTime<Utc>,
    controls: Vec<DrainControls>,
    running: Vec<RunRow>,
    backoff_rows: Vec<BackoffRow>,
    group_states: Vec<(String, GroupState)>,
    last_starts: Vec<(String, DateTime<Utc>)>,
    counts: HashMap<String, StateCounts>,
    histories: HashMap<String, RunHistory>,
    /// The latest run of each drain that has one.
    last_runs: HashMap<String, RunRow>,
    supervisor: Heartbeat,
    parked: Vec<crate::db::quota_groups::Parked>,
    /// Usage the workers reported, per drain: the last 24 hours and the last 7 days.
    usage_24h: HashMap<String, UsageSums>,
    usage_7d: HashMap<String, UsageSums>,
    /// What each drain with a `max_cost_per_day` spent today.
    cost_today: HashMap<String, f64>,
    unconfigured: Vec<UnconfiguredDrain>,
    /// When the database server started: no run is hung for its silence before that.
    server_started_at: Option<DateTime<Utc>>,
    /// The pace the quota group of each drain in a burst kept between its limits lately.
    quota_paces: HashMap<String, crate::schedule::forecast::QuotaPace>,
    /// How many of its concurrency slots each drain's sessions hold now.
    held_slots: HashMap<String, u32>,
}

fn gather(client: &mut Client, config: &Config, now: DateTime<Utc>) -> Result<Snapshot> {
    let names: Vec<String> = config.drains.iter().map(|d| d.name.clone()).collect();
    let group_names: Vec<String> = config.quota_groups.iter().map(|g| g.name.clone()).collect();
    let mut last_runs = HashMap::new();
    for name in &names {
        if let Some(run) = last_run(client, name)? {
            last_runs.insert(name.clone(), run);
        }
    }
    let cost_today = crate::db::usage::costs_today(client, config, now)?;
    let running = running_runs(client, None)?;
    // Only a running run is judged hung by it (`supervise::silent_beyond_liveness`).
    let server_started_at =
        if running.is_empty() { None } else { Some(crate::db::server_started_at(client)?) };
    let controls = read_controls(client, &names)?;
    let quota_paces = crate::schedule::forecast::quota_paces(client, config, &controls, now)?;
    let held_slots = crate::supervise::held_slots(client, config, &controls)?;
    Ok(Snapshot {
        now,
        controls,
        running,
        backoff_rows: read_group_backoffs(client, &group_names)?,
        group_states: read_groups(client, &group_names)?,
        last_starts: last_run_starts(client, &names)?,
        counts: count_by_state_of(client, &names)?,
        histories: crate::schedule::forecast::recent_histories(client, &names, now)?,
        last_runs,
        supervisor: Heartbeat::read(client, now, config.defaults.supervise_interval)?,
        parked: crate::db::quota_groups::read_parked(client, &group_names)?,
        usage_24h: usage_by_drain_since(client, &names, now - chrono::Duration::hours(24))?,
        usage_7d: usage_by_drain_since(client, &names, now - chrono::Duration::days(7))?,
        cost_today,
        unconfigured: unconfigured_drains(client, config, now)?,
        server_started_at,
        quota_paces,
        held_slots,
    })
}

/// Everything `status` shows; serialized, it is the JSON of `status --json`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    now: DateTime<Utc>,
    timezone: &'static str,
    pub(crate) drains: Vec<DrainView>,
    /// Usage per quota group: the sums of its drains.
    quota_groups: Vec<GroupUsageView>,
    pub(crate) supervisor: Heartbeat,
    /// Drains in the database with pending or running items and no `[[drain]]` in the
    /// configuration (renamed or removed): nothing runs their items.
    pub(crate) unconfigured_drains: Vec<UnconfiguredDrain>,
    /// The declared accounts of each quota group that has some (also under each drain).
    #[serde(skip)]
    groups: Vec<(String, Vec<AccountView>)>,
}

/// A drain with work in the database and none in the configuration.
#[derive(Debug, Serialize)]
pub(crate) struct UnconfiguredDrain {
    pub(crate) drain: String,
    pending: i64,
    running: i64,
    /// Its passes of this host still running, started before its table left the
    /// configuration.
    running_passes: i64,
    /// Other hosts with a run of it still `running`: theirs to end (docs/operations.md,
    /// "Several hosts").
    running_elsewhere: Vec<String>,
    /// Other hosts that started a run of it within the last day: their configuration has
    /// the drain, and this one's may be out of date.
    started_elsewhere: Vec<String>,
    /// Paused: a pass still running stops before its next item.
    #[serde(skip)]
    is_paused: bool,
}

impl UnconfiguredDrain {
    /// `orph has 2 pending items and no [[drain]] table in the configuration: …`, what
    /// `status` and `doctor` say.
    pub(crate) fn describe(&self) -> String {
        let mut counts = vec![format!("{} pending", self.pending)];
        if self.running > 0 {
            counts.push(format!("{} running", self.running));
        }
        let passes = match self.running_passes {
            0 => String::new(),
            1 if self.is_paused => {
                "its pass still running stops before its next item (the drain is paused); after that, "
                    .to_string()
            }
            n if self.is_paused => {
                format!("its {n} passes still running stop before their next item (the drain is paused); after that, ")
            }
            // Each pass looks at the file before its next item (docs/configuration.md,
            // "Changing the configuration while drains run").
            1 => format!(
                "its pass still running ends before its next item, as it reads the file again (`drainctl pause {}` \
                 stops it there too); after that, ",
                super::items::drain_argument(&self.drain)
            ),
            n => format!(
                "its {n} passes still running end before their next items, as they read the file again \
                 (`drainctl pause {}` stops them there too); after that, ",
                super::items::drain_argument(&self.drain)
            ),
        };
        // A run of another host is that host's to end, or, that host gone, a supervise's
        // whose configuration has the drain: this one judges no run of a drain it lacks.
        let elsewhere = match self.running_elsewhere.as_slice() {
            [] => String::new(),
            hosts => format!(
                "a run of it on host {} is that host's, and should that host be gone, only a `supervise` whose \
                 configuration has the drain ends it; ",
                hosts.join(", ")
            ),
        };
        // Another host runs it: that host's configuration has the drain, this one's may be
        // out of date — its backlog is no one's to discard.
        let mut others: Vec<&str> =
            self.running_elsewhere.iter().chain(&self.started_elsewhere).map(String::as_str).collect();
        others.sort_unstable();
        others.dedup();
        if !others.is_empty() {
            return format!(
                "drain {} has {} item(s) in the database and no [[drain]] table in this host's configuration, but \
                 host {} ran it within the last day: its configuration has the drain, and this host's may be out \
                 of date — {passes}{elsewhere}this host runs none of its items (to retire the drain, remove its table from \
                 every host's configuration first)",
                self.drain,
                counts.join(", "),
                others.join(", "),
            );
        }
        format!(
            "drain {} has {} item(s) in the database and no [[drain]] table in the configuration: \
             {passes}{elsewhere}nothing runs them until a [[drain]] table of that name is added back{} \
             (to retire the drain, `{}` deletes every item of it, the finished ones and their results too: \
             `drainctl export` keeps those first)",
            self.drain,
            counts.join(", "),
            if self.is_paused {
                format!(
                    " and `drainctl resume {}` undoes the pause",
                    super::items::drain_argument(&self.drain)
                )
            } else {
                String::new()
            },
            super::discard::discard_all_command(&self.drain)
        )
    }
}

/// The drains with work in the database that the configuration lacks.
pub(crate) fn unconfigured_drains(
    client: &mut Client,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Vec<UnconfiguredDrain>> {
    let names: Vec<String> = config.drains.iter().map(|drain| drain.name.clone()).collect();
    let lately = now - chrono::Duration::days(1);
    Ok(crate::db::items::unconfigured_with_work(client, &names, Some(lately))?
        .into_iter()
        .map(|work| UnconfiguredDrain {
            drain: work.drain,
            pending: work.counts.pending,
            running: work.counts.running,
            running_passes: work.running_passes,
            running_elsewhere: work.running_elsewhere,
            started_elsewhere: work.started_elsewhere,
            is_paused: work.is_paused,
        })
        .collect())
}

/// One drain as `status` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct DrainView {
    pub(crate) drain: String,
    /// `paused`, `hung`, `parked`, `running`, `backing-off`, `burst`, `out-of-window` or
    /// `idle`.
    pub(crate) state: &'static str,
    pub(crate) quota_group: String,
    /// Which drain of the quota group goes first when its quota returns (higher first;
    /// a drain in burst before all; docs/rate-limits.md).
    priority: i32,
    pub(crate) counts: StateCounts,
    paused: bool,
    pub(crate) pause_note: Option<String>,
    pub(crate) burst_until: Option<DateTime<Utc>>,
    pub(crate) burst_note: Option<String>,
    pub(crate) backoff_until: Option<DateTime<Utc>>,
    pub(crate) backoff_reason: Option<String>,
    /// The account whose suspected mark a success would clear is suspected.
    backoff_suspected: bool,
    needs_attention: bool,
    /// The quota group is parked since then until `resume --group` (docs/rate-limits.md).
    pub(crate) parked_at: Option<DateTime<Utc>>,
    /// The line that parked it.
    pub(crate) parked_reason: Option<String>,
    /// The declared account the next item runs on.
    pub(crate) account: Option<String>,
    accounts: Vec<AccountView>,
    pub(crate) running_runs: Vec<i64>,
    /// Concurrency slots held by sessions with no running run: a pass whose run was ended
    /// (hung) and whose drain still runs — on another host until that host stops it. No
    /// pass starts in them.
    pub(crate) slots_held_without_run: u32,
    /// A running pass waits inside itself for the group's reset until then.
    pub(crate) waiting_until: Option<DateTime<Utc>>,
    /// A running pass holds back for a higher-ranking drain of its quota group, and why
    /// (docs/rate-limits.md, "Priority within a group").
    pub(crate) yielding: Option<String>,
    /// That wait is for the vendor's servers, failing for items in a row, not a reset.
    #[serde(skip)]
    pub(crate) is_waiting_for_servers: bool,
    pub(crate) last_run: Option<LastRunView>,
    last_checkpoint_at: Option<DateTime<Utc>>,
    pub(crate) window: Option<String>,
    in_window: bool,
    pub(crate) next_window_opening: Option<DateTime<Utc>>,
    /// When the window closes, if it is open now (docs/configuration.md).
    window_closes: Option<DateTime<Utc>>,
    every_seconds: Option<f64>,
    cadence_next_start_at: Option<DateTime<Utc>>,
    /// When both the cadence and the window allow the next start.
    next_start_at: Option<DateTime<Utc>>,
    pub(crate) forecast: Forecast,
    /// What the drain's workers reported they used (docs/results.md).
    usage: UsageView,
    max_cost_per_pass: Option<f64>,
    max_cost_per_day: Option<f64>,
    /// With `max_cost_per_day`: what the drain's attempts cost since midnight in
    /// `[defaults] timezone`.
    cost_today_usd: Option<f64>,
    /// With `max_cost_per_day`: when the budget's day ends (the next midnight there).
    budget_day_ends_at: Option<DateTime<Utc>>,
}

/// Usage sums over the last 24 hours and 7 days; each null when no attempt reported any.
#[derive(Debug, Clone, Default, Serialize)]
struct UsageView {
    last_24h: Option<UsageSums>,
    last_7d: Option<UsageSums>,
}

impl UsageView {
    fn of(last_24h: Option<&UsageSums>, last_7d: Option<&UsageSums>) -> UsageView {
        let reported = |sums: Option<&UsageSums>| sums.filter(|sums| sums.attempts > 0).cloned();
        UsageView { last_24h: reported(last_24h), last_7d: reported(last_7d) }
    }

    /// `last 24h $0.0362 · …; last 7d …`, or none when nothing was reported.
    fn describe(&self) -> Option<String> {
        let parts: Vec<String> = [("last 24h", &self.last_24h), ("last 7d", &self.last_7d)]
            .iter()
            .filter_map(|(label, sums)| {
                sums.as_ref().and_then(UsageSums::describe).map(|text| format!("{label} {text}"))
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// One quota group's usage in `status`.
#[derive(Debug, Serialize)]
struct GroupUsageView {
    quota_group: String,
    usage: UsageView,
}

#[derive(Debug, Serialize)]
pub(crate) struct LastRunView {
    pub(crate) id: i64,
    pub(crate) status: crate::model::RunStatus,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    pub(crate) items_done: i32,
    pub(crate) items_failed: i32,
    note: Option<String>,
}

/// One account of a quota group as `status` shows it.
#[derive(Debug, Clone, Serialize)]
struct AccountView {
    name: String,
    /// `in-use` (the next item runs on it), `available`, `suspected`, `backing-off`, or
    /// `parked` (its group parked: none is used until `resume --group`).
    state: &'static str,
    backoff_until: Option<DateTime<Utc>>,
    backoff_reason: Option<String>,
    backoff_rule: Option<BackoffRule>,
    suspected: bool,
    needs_attention: bool,
    /// Why it needs attention, shown once its backoff has ended too: until a call on it
    /// succeeds, the refusal stands (docs/accounts.md).
    #[serde(skip)]
    attention_reason: Option<String>,
}

/// The state a drain is in, the first that applies.
fn drain_state(
    is_paused: bool,
    is_hung: bool,
    is_running: bool,
    is_backing_off: bool,
    is_bursting: bool,
    in_window: bool,
) -> &'static str {
    if is_paused {
        "paused"
    } else if is_hung {
        "hung"
    } else if is_running {
        "running"
    } else if is_backing_off {
        "backing-off"
    } else if is_bursting {
        "burst"
    } else if !in_window {
        "out-of-window"
    } else {
        "idle"
    }
}

fn decide(config: &Config, mut snapshot: Snapshot) -> StatusView {
    let now = snapshot.now;
    let zone = config.defaults.timezone;
    let group_states = std::mem::take(&mut snapshot.group_states);
    let views: Vec<GroupView> = config
        .quota_groups
        .iter()
        .zip(group_states)
        .map(|(group, (_, state))| GroupView::new(group, &snapshot.backoff_rows, state))
        .collect();
    let groups: Vec<(String, Vec<AccountView>)> = views
        .iter()
        .map(|view| {
            let is_parked = snapshot.parked.iter().any(|parked| parked.quota_group == view.group.name);
            (view.group.name.clone(), accounts(view, now, is_parked))
        })
        .collect();
    let mut drains = Vec::new();
    for drain in &config.drains {
        let Some((view, group_accounts)) =
            views.iter().zip(&groups).find(|(view, _)| view.group.name == drain.quota_group)
        else {
            continue;
        };
        drains.push(decide_drain(drain, view, group_accounts, &snapshot, zone));
    }
    let quota_groups = config
        .quota_groups
        .iter()
        .map(|group| {
            let mut last_24h = UsageSums::default();
            let mut last_7d = UsageSums::default();
            for drain in config.drains.iter().filter(|drain| drain.quota_group == group.name) {
                if let Some(sums) = snapshot.usage_24h.get(&drain.name) {
                    last_24h.add(sums);
                }
                if let Some(sums) = snapshot.usage_7d.get(&drain.name) {
                    last_7d.add(sums);
                }
            }
            GroupUsageView {
                quota_group: group.name.clone(),
                usage: UsageView::of(Some(&last_24h), Some(&last_7d)),
            }
        })
        .collect();
    StatusView {
        now,
        timezone: zone.name(),
        drains,
        quota_groups,
        supervisor: snapshot.supervisor.clone(),
        unconfigured_drains: std::mem::take(&mut snapshot.unconfigured),
        groups: groups.into_iter().filter(|(_, accounts)| !accounts.is_empty()).collect(),
    }
}

/// One drain's state, backlog, backoff, runs, window, cadence and forecast.
fn decide_drain(
    drain: &DrainConfig,
    view: &GroupView,
    group_accounts: &(String, Vec<AccountView>),
    snapshot: &Snapshot,
    zone: Tz,
) -> DrainView {
    let now = snapshot.now;
    let control = snapshot.controls.iter().find(|c| c.name == drain.name);
    let counts = snapshot.counts.get(&drain.name).copied().unwrap_or_default();
    let wait = view.wait(now);
    let next_account = match view.select(now) {
        Selection::Use { account, .. } => view.group.accounts.get(account),
        Selection::Wait { .. } => None,
    };
    // The account whose suspected mark a success would clear.
    let current = view.backoffs.get(view.active());
    let runs: Vec<&RunRow> = snapshot.running.iter().filter(|r| r.drain == drain.name).collect();
    let is_hung = runs.iter().any(|r| {
        crate::supervise::silent_beyond_liveness(drain, r.last_checkpoint_at, snapshot.server_started_at, now)
    });
    let burst_until = control.and_then(|c| c.active_burst(now));
    let is_paused = control.is_some_and(|c| c.is_paused());
    let in_window = drain.window.as_ref().is_none_or(|w| w.contains(now, zone));
    let state =
        drain_state(is_paused, is_hung, !runs.is_empty(), wait.is_some(), burst_until.is_some(), in_window);
    let parked = snapshot.parked.iter().find(|parked| parked.quota_group == drain.quota_group);
    let state = if parked.is_some() && !is_paused && !is_hung { "parked" } else { state };
    let next_window_opening = match &drain.window {
        Some(window) if !in_window => window.next_opening(now, zone),
        _ => None,
    };
    let window_closes = drain.window.as_ref().and_then(|window| window.closes_at(now, zone));
    let last_started_at =
        snapshot.last_starts.iter().find(|(name, _)| *name == drain.name).map(|(_, at)| *at);
    let cadence_next_start_at = crate::schedule::cadence::next_start(drain.every, last_started_at);
    let (backoff_until, backoff_reason) = wait.unzip();
    let cost_today_usd = snapshot.cost_today.get(&drain.name).copied();
    let budget_day_ends_at = drain.max_cost_per_day.map(|_| crate::usage::budget_day(now, zone).1);
    // A burst's drain works only once its backoff is over and its daily budget starts
    // afresh (docs/operations.md, "Status").
    let hold = crate::schedule::forecast::Hold::of_drain(
        backoff_until,
        drain.max_cost_per_day,
        cost_today_usd,
        now,
        zone,
    );
    let forecast = crate::schedule::forecast::forecast(
        snapshot.histories.get(&drain.name).copied().unwrap_or_default(),
        counts.pending + counts.running,
        drain.concurrency,
        burst_until,
        hold,
        crate::schedule::forecast::HoldReason::until_resumed(is_paused, parked.is_some()),
        now,
    )
    .paid_from(
        crate::schedule::forecast::DailyBudget::of_drain(
            drain.max_cost_per_day,
            cost_today_usd,
            snapshot.usage_7d.get(&drain.name),
            zone,
        ),
        now,
    )
    .held_to(snapshot.quota_paces.get(&drain.quota_group).copied());
    DrainView {
        drain: drain.name.clone(),
        state,
        quota_group: drain.quota_group.clone(),
        priority: drain.priority,
        counts,
        paused: is_paused,
        pause_note: control.and_then(|c| c.pause_note.clone()),
        burst_until,
        // The note of a burst that ended belongs to it, not to the drain now.
        burst_note: control.filter(|_| burst_until.is_some()).and_then(|c| c.burst_note.clone()),
        backoff_until,
        backoff_reason,
        backoff_suspected: current.is_some_and(|row| row.suspected_at.is_some()),
        needs_attention: view.backoffs.iter().any(|row| row.needs_attention),
        parked_at: parked.map(|parked| parked.parked_at),
        parked_reason: parked.map(|parked| parked.reason.clone()),
        account: next_account.filter(|a| !a.is_implicit()).map(|a| a.name.clone()),
        accounts: group_accounts.1.clone(),
        running_runs: runs.iter().map(|r| r.id).collect(),
        slots_held_without_run: snapshot
            .held_slots
            .get(&drain.name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(u32::try_from(runs.len()).unwrap_or(u32::MAX)),
        waiting_until: runs.iter().filter_map(|r| r.waiting_until).min(),
        // A yield is recorded as a wait without an end (`drain::wait`).
        yielding: runs.iter().filter(|r| r.waiting_until.is_none()).find_map(|r| r.waiting_reason.clone()),
        is_waiting_for_servers: runs
            .iter()
            .filter(|r| r.waiting_until.is_some())
            .any(|r| r.waiting_reason.as_deref().is_some_and(crate::drain::waits_for_the_servers)),
        last_run: snapshot.last_runs.get(&drain.name).map(last_run_view),
        last_checkpoint_at: runs.iter().map(|r| r.last_checkpoint_at).max(),
        window: drain.window.as_ref().map(|w| w.describe()),
        in_window,
        next_window_opening,
        window_closes,
        every_seconds: drain.every.map(|every| every.as_secs_f64()),
        cadence_next_start_at,
        next_start_at: crate::schedule::cadence::first_allowed_start(
            cadence_next_start_at,
            drain.window.as_ref(),
            zone,
        ),
        forecast,
        usage: UsageView::of(snapshot.usage_24h.get(&drain.name), snapshot.usage_7d.get(&drain.name)),
        max_cost_per_pass: drain.max_cost_per_pass,
        max_cost_per_day: drain.max_cost_per_day,
        cost_today_usd,
        budget_day_ends_at,
    }
}

impl DrainView {
    /// `daily budget spent ($0.2000 of $0.20) until Sat 2026-11-28 00:00 IST`, while its
    /// `max_cost_per_day` is spent.
    pub(crate) fn daily_budget_spent(&self, zone: Tz) -> Option<String> {
        let until = self.budget_spent_until()?;
        Some(format!(
            "daily budget spent ({} of {}) until {}",
            format_usd(self.cost_today_usd?),
            format_usd(self.max_cost_per_day?),
            local_time(until, zone)
        ))
    }

    /// With `max_cost_per_day` spent for today: when the budget's day ends.
    pub(crate) fn budget_spent_until(&self) -> Option<DateTime<Utc>> {
        crate::usage::spent_budget(self.max_cost_per_day, self.cost_today_usd).and(self.budget_day_ends_at)
    }
}

fn last_run_view(r: &RunRow) -> LastRunView {
    LastRunView {
        id: r.id,
        status: r.status,
        started_at: r.started_at,
        finished_at: r.finished_at,
        items_done: r.items_done,
        items_failed: r.items_failed,
        note: r.note.clone(),
    }
}

/// The declared accounts of a group (none for a group without accounts).
fn accounts(view: &GroupView, now: DateTime<Utc>, is_parked: bool) -> Vec<AccountView> {
    if view.group.accounts.iter().all(|account| account.is_implicit()) {
        return Vec::new();
    }
    let in_use = match view.select(now) {
        Selection::Use { account, .. } => Some(account),
        Selection::Wait { .. } => None,
    };
    view.group
        .accounts
        .iter()
        .zip(&view.backoffs)
        .zip(view.states(now))
        .enumerate()
        .map(|(index, ((account, row), state))| {
            // A parked group uses no account until `resume --group` (as the page says).
            let state = match (is_parked, in_use == Some(index)) {
                (true, _) => "parked",
                (false, true) => "in-use",
                (false, false) => state.as_str(),
            };
            let is_backing_off = !matches!(AccountState::of(row, now), AccountState::Usable);
            AccountView {
                name: account.name.clone(),
                state,
                backoff_until: row.backoff_until.filter(|_| is_backing_off),
                backoff_reason: row.reason.clone().filter(|_| is_backing_off),
                backoff_rule: row.rule.filter(|_| is_backing_off),
                suspected: row.suspected_at.is_some(),
                needs_attention: row.needs_attention,
                attention_reason: row.reason.clone().filter(|_| row.needs_attention),
            }
        })
        .collect()
}

fn render(view: &StatusView, zone: Tz) -> Result<Report> {
    let now = view.now;
    let (rows, forecast_lines) = drain_rows(view, zone);
    let mut human =
        table(&["DRAIN", "STATE", "PENDING", "RUNNING", "DONE", "DEAD", "LAST RUN", "NOTES"], &rows);
    if !forecast_lines.is_empty() {
        human.push_str("\nforecast (passes finished in the last 24h)\n");
        for line in forecast_lines {
            human.push_str(&crate::output::truncate(&line, crate::output::table_width()));
            human.push('\n');
        }
    }
    // Usage only where a worker reported some: never a guess, never a row of zeros.
    let mut usage_lines: Vec<String> = view
        .drains
        .iter()
        .filter_map(|drain| drain.usage.describe().map(|text| format!("  {}: {text}", drain.drain)))
        .collect();
    let shared_groups = view.quota_groups.iter().filter(|group| {
        view.drains.iter().filter(|drain| drain.quota_group == group.quota_group).count() > 1
    });
    usage_lines.extend(shared_groups.filter_map(|group| {
        group.usage.describe().map(|text| format!("  quota group {}: {text}", group.quota_group))
    }));
    if !usage_lines.is_empty() {
        human.push_str("\nusage reported by the workers\n");
        for line in usage_lines {
            human.push_str(&line);
            human.push('\n');
        }
    }
    // Parked groups, each once, with what to do: a line of its own, never cut to fit.
    let mut parked_groups: Vec<&DrainView> = Vec::new();
    for drain in view.drains.iter().filter(|drain| drain.parked_at.is_some()) {
        if parked_groups.iter().all(|seen| seen.quota_group != drain.quota_group) {
            parked_groups.push(drain);
        }
    }
    if !parked_groups.is_empty() {
        human.push('\n');
    }
    for drain in parked_groups {
        human.push_str(&format!(
            "quota group {} is parked since {} and calls no worker until `drainctl resume {}` (needs attention: {})\n",
            drain.quota_group,
            drain.parked_at.map(|at| local_time(at, zone)).unwrap_or_default(),
            super::items::group_option(&drain.quota_group),
            drain.parked_reason.as_deref().unwrap_or_default()
        ));
    }
    let account_table = account_rows(view, zone);
    if !account_table.is_empty() {
        if !human.ends_with('\n') {
            human.push('\n');
        }
        human.push('\n');
        human.push_str(&table(&["QUOTA GROUP", "ACCOUNT", "STATE", "BACKOFF"], &account_table));
    }
    if !view.unconfigured_drains.is_empty() {
        human.push('\n');
    }
    for drain in &view.unconfigured_drains {
        human.push_str(&drain.describe());
        human.push('\n');
    }
    human.push_str(&format!("\n{}\n", view.supervisor.describe(now, zone)));
    let json = serde_json::to_value(view).map_err(|error| Error::Internal(error.to_string()))?;
    Ok(Report::new(human, json))
}

/// A table row per drain, and its forecast lines.
fn drain_rows(view: &StatusView, zone: Tz) -> (Vec<Vec<String>>, Vec<String>) {
    let now = view.now;
    let relative = |at: DateTime<Utc>| format_relative(at - now);
    let mut rows = Vec::new();
    let mut forecast_lines = Vec::new();
    for drain in &view.drains {
        forecast_lines.push(format!("  {}: {}", drain.drain, drain.forecast.describe()));
        if let Some(burst) = drain.forecast.describe_burst() {
            forecast_lines.push(format!("  {}: {burst}", drain.drain));
        }
        if let Some(pace) = drain.forecast.describe_burst_pace() {
            forecast_lines.push(format!("  {}: {pace}", drain.drain));
        }
        if let Some(hold) = drain.forecast.describe_burst_hold(zone) {
            forecast_lines.push(format!("  {}: {hold}", drain.drain));
        }
        let notes = drain_notes(drain, now, zone);
        rows.push(vec![
            drain.drain.clone(),
            drain.state.to_string(),
            drain.counts.pending.to_string(),
            drain.counts.running.to_string(),
            drain.counts.done.to_string(),
            drain.counts.dead.to_string(),
            drain
                .last_run
                .as_ref()
                .map(|r| format!("{} {}", r.status, relative(r.finished_at.unwrap_or(r.started_at))))
                .unwrap_or_else(|| "-".into()),
            notes.join("; "),
        ]);
    }
    (rows, forecast_lines)
}

/// The NOTES cell of a drain: a slot held without a run, burst, wait, backoff, account,
/// priority, pause, checkpoint, window, cadence and skipped files.
fn drain_notes(drain: &DrainView, now: DateTime<Utc>, zone: Tz) -> Vec<String> {
    let relative = |at: DateTime<Utc>| format_relative(at - now);
    let mut notes = Vec::new();
    if drain.slots_held_without_run > 0 {
        // Short: the cell is cut at the table's width (`status --json`: slots_held_without_run).
        notes.push(format!("{} slot(s) held by a hung run's live drain", drain.slots_held_without_run));
    }
    if let Some(until) = drain.burst_until {
        notes.push(format!("burst until {} ({})", local_time(until, zone), relative(until)));
    }
    // The wait first: the backoff's note carries the whole limit message, and the cell is
    // cut at its width.
    if let Some(until) = drain.waiting_until {
        // Its instant first: with many drains the cell is cut to a few words.
        if drain.is_waiting_for_servers {
            notes.push(format!("waiting for servers: next item {}", relative(until)));
        } else {
            notes.push(format!("waiting: reset {}", relative(until)));
        }
    }
    if let Some(why) = &drain.yielding {
        notes.push(format!("yields: {why}"));
    }
    // A parked group waits for `resume --group`, not for its backoff to run out.
    if let (Some(until), Some(reason), None) = (drain.backoff_until, &drain.backoff_reason, drain.parked_at) {
        let left = (until - now).to_std().unwrap_or_default();
        notes.push(format!("backs off for {} more ({reason})", crate::duration::format_duration(left)));
    }
    if let Some(at) = drain.parked_at {
        notes.insert(0, format!("quota group parked {}", relative(at)));
    }
    if let Some(account) = &drain.account {
        notes.push(format!("account {account}"));
    }
    if drain.priority != 0 {
        notes.push(format!("priority {} in quota group {}", drain.priority, drain.quota_group));
    }
    if drain.paused {
        match drain.pause_note.as_deref().filter(|note| !note.trim().is_empty()) {
            Some(note) => notes.push(format!("paused: {note}")),
            None => notes.push("paused".to_string()),
        }
    }
    if let Some(at) = drain.last_checkpoint_at {
        notes.push(format!("checkpoint {}", relative(at)));
    }
    if let Some(at) = drain.next_window_opening {
        notes.push(format!("opens {}", relative(at)));
    }
    if let Some(at) = drain.window_closes {
        let local = at.with_timezone(&zone).format("%a %H:%M");
        notes.push(format!("window closes {local} ({})", relative(at)));
    }
    if let Some(at) = drain.next_start_at.filter(|at| *at > now && drain.burst_until.is_none()) {
        notes.push(format!("next start {}", relative(at)));
    }
    if drain.counts.skipped_missing > 0 {
        notes.push(format!("{} skipped (file missing)", drain.counts.skipped_missing));
    }
    if let Some(spent) = drain.daily_budget_spent(zone) {
        notes.push(spent);
    }
    notes
}

/// A table row per declared account of every quota group that has some.
fn account_rows(view: &StatusView, zone: Tz) -> Vec<Vec<String>> {
    let now = view.now;
    let relative = |at: DateTime<Utc>| format_relative(at - now);
    let mut account_table = Vec::new();
    for (group, accounts) in &view.groups {
        for account in accounts {
            // A parked account waits for `resume --group`, not for its backoff's end.
            let until = account.backoff_until.filter(|_| account.state != "parked");
            let backoff = match until {
                Some(until) => format!(
                    "until {} ({}): {}",
                    local_time(until, zone),
                    relative(until),
                    account.backoff_reason.clone().unwrap_or_default()
                ),
                None => match (&account.attention_reason, &account.backoff_reason) {
                    (Some(reason), _) => format!("needs attention: {reason}"),
                    (None, Some(reason)) if account.state == "parked" => reason.clone(),
                    _ => "-".to_string(),
                },
            };
            account_table.push(vec![group.clone(), account.name.clone(), account.state.to_string(), backoff]);
        }
    }
    account_table
}
