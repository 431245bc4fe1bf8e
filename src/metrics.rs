//! The state of every drain in the Prometheus text exposition format (`drainctl metrics`).
//!
//! [`render_metrics`] reads one snapshot — items per state, quota-group backoffs, bursts,
//! pauses, the last run and the last successful run of each drain, its throughput and
//! forecast (see `forecast`), the last supervisor pass — with index-backed queries, one
//! small set per configured drain. The text goes to
//! stdout, or [`write_textfile`] replaces a node_exporter textfile atomically (a temporary
//! file in the same folder, fsynced, renamed over the old one), so the collector never
//! reads half a file. `supervise` and every `drain` pass write it at their end when
//! `metrics_textfile` is set. Timestamps are Unix seconds; 0 means "never" or "none".

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::config::{Config, DrainConfig};
use crate::db::{backoffs, counters, drains, items, passes, runs};
use crate::error::Result;
use crate::schedule::forecast::{DailyBudget, Hold, HoldReason};

/// The textfile is world-readable, unlike drainctl's other files (0600): node_exporter
/// runs as its own user and must read it, and it holds only counts and timestamps.
pub const TEXTFILE_MODE: u32 = 0o644;

/// One metric family: its name, help text and samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    /// `gauge` or `counter`.
    kind: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Family {
        Family { name, help, kind: "gauge", samples: Vec::new() }
    }

    /// A monotonic counter: its name ends in `_total`.
    fn counter(name: &'static str, help: &'static str) -> Family {
        Family { name, help, kind: "counter", samples: Vec::new() }
    }

    /// Set the sample with exactly these labels, adding it when missing.
    fn set(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        match self.samples.iter_mut().find(|(existing, _)| *existing == labels) {
            Some(sample) => sample.1 = value,
            None => self.samples.push((labels, value)),
        }
    }

    fn sample(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }

    /// A family without samples is left out whole: every declared metric has samples.
    fn render(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, value) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
                    .collect();
                let _ = write!(out, "{{{}}}", pairs.join(","));
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// Unix seconds (millisecond precision) of an instant; 0 for none.
fn timestamp(at: Option<DateTime<Utc>>) -> f64 {
    at.map(|at| at.timestamp_millis() as f64 / 1000.0).unwrap_or(0.0)
}

/// A label value as the exposition format wants it: `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Render every metric of every configured drain at `now`.
pub fn render_metrics(
    client: &mut impl GenericClient,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<String> {
    let names: Vec<String> = config.drains.iter().map(|drain| drain.name.clone()).collect();
    let holds = GroupHolds::read(client, config, now)?;
    let snapshot = DrainSnapshot::read(client, config, &names, &holds, now)?;
    let mut drain_families = DrainFamilies::new();
    for drain in &config.drains {
        drain_families.sample(drain, &snapshot, holds.holds(drain), now, config.defaults.timezone);
    }
    let [backoff, attention, backing_off] = group_families(config, &holds);
    let [pass_at, pass_duration, pass_errors, generated, interval] =
        supervisor_families(client, config, now)?;
    let [finished, starts, hits, cost, tokens] = counter_families(client, config)?;
    let unconfigured = unconfigured_family(client, &names)?;

    let DrainFamilies {
        items: items_family,
        burst,
        paused,
        last_run,
        last_success,
        throughput,
        time_to_empty,
        burst_will_finish,
        can_work,
    } = drain_families;
    let mut out = String::new();
    for family in [
        items_family,
        unconfigured,
        backoff,
        attention,
        backing_off,
        burst,
        paused,
        can_work,
        last_run,
        last_success,
        throughput,
        time_to_empty,
        burst_will_finish,
        pass_at,
        pass_duration,
        pass_errors,
        interval,
        generated,
        finished,
        starts,
        hits,
        cost,
        tokens,
    ] {
        family.render(&mut out);
    }
    Ok(out)
}

/// What the database holds of the configured drains, read once for all of them.
struct DrainSnapshot {
    controls: Vec<drains::DrainControls>,
    counts: HashMap<String, items::StateCounts>,
    latest: HashMap<String, runs::LatestRuns>,
    histories: HashMap<String, runs::RunHistory>,
    /// What keeps each drain in a burst from working now (a backoff, a spent daily
    /// budget), as `status`'s forecast counts it.
    holds: HashMap<String, Hold>,
    /// The drains in a burst whose quota group is parked.
    parked: std::collections::HashSet<String>,
    /// The daily cost budget each drain in a burst is paid from, when it has one and its
    /// workers reported costs lately.
    budgets: HashMap<String, DailyBudget>,
    /// What today's attempts of each drain with a `max_cost_per_day` cost.
    costs_today: HashMap<String, f64>,
    /// The pace the quota group of each drain in a burst kept between its limits lately.
    quota_paces: HashMap<String, crate::schedule::forecast::QuotaPace>,
}

impl DrainSnapshot {
    fn read(
        client: &mut impl GenericClient,
        config: &Config,
        names: &[String],
        holds: &GroupHolds,
        now: DateTime<Utc>,
    ) -> Result<DrainSnapshot> {
        let controls = drains::read_controls(client, names)?;
        let counts = items::count_by_state_of(client, names)?;
        let latest = runs::latest_runs(client, names)?;
        let histories = crate::schedule::forecast::recent_histories(client, names, now)?;
        let costs_today = crate::db::usage::costs_today(client, config, now)?;
        let BurstLimits { holds, parked, budgets } =
            burst_limits(client, config, &controls, holds, &costs_today, now)?;
        let quota_paces = crate::schedule::forecast::quota_paces(client, config, &controls, now)?;
        Ok(DrainSnapshot {
            controls,
            counts,
            latest,
            histories,
            holds,
            parked,
            budgets,
            costs_today,
            quota_paces,
        })
    }
}

/// What limits the drains in a burst, as `status`'s forecast counts it.
#[derive(Default)]
struct BurstLimits {
    holds: HashMap<String, Hold>,
    parked: std::collections::HashSet<String>,
    budgets: HashMap<String, DailyBudget>,
}

/// The [`Hold`] of each drain in a burst that cannot work now: its quota group backs off,
/// or its `max_cost_per_day` is spent (docs/operations.md, "Status"); the drains in a
/// burst whose quota group is parked; and the daily budgets they are paid from. The
/// groups' holds come from `group_holds`; the costs are read only when a burst is on.
fn burst_limits(
    client: &mut impl GenericClient,
    config: &Config,
    controls: &[drains::DrainControls],
    group_holds: &GroupHolds,
    costs_today: &HashMap<String, f64>,
    now: DateTime<Utc>,
) -> Result<BurstLimits> {
    let bursting: Vec<&DrainConfig> = config
        .drains
        .iter()
        .filter(|drain| controls.iter().any(|c| c.name == drain.name && c.active_burst(now).is_some()))
        .collect();
    let mut holds = HashMap::new();
    if bursting.is_empty() {
        return Ok(BurstLimits::default());
    }
    let parked = bursting
        .iter()
        .filter(|drain| group_holds.is_parked(drain))
        .map(|drain| drain.name.clone())
        .collect();
    let zone = config.defaults.timezone;
    let budgeted: Vec<String> = bursting
        .iter()
        .filter(|drain| drain.max_cost_per_day.is_some())
        .map(|drain| drain.name.clone())
        .collect();
    let recent_usage = if budgeted.is_empty() {
        HashMap::new()
    } else {
        crate::db::usage::usage_by_drain_since(client, &budgeted, now - chrono::Duration::days(7))?
    };
    let mut budgets = HashMap::new();
    for drain in bursting {
        let backoff_until = group_holds.waits.get(&drain.name).copied();
        let cost_today = costs_today.get(&drain.name).copied();
        if let Some(hold) = Hold::of_drain(backoff_until, drain.max_cost_per_day, cost_today, now, zone) {
            holds.insert(drain.name.clone(), hold);
        }
        let recent = recent_usage.get(&drain.name);
        if let Some(budget) = DailyBudget::of_drain(drain.max_cost_per_day, cost_today, recent, zone) {
            budgets.insert(drain.name.clone(), budget);
        }
    }
    Ok(BurstLimits { holds, parked, budgets })
}

/// The metric families with one series (or several, for items) per drain.
struct DrainFamilies {
    items: Family,
    burst: Family,
    paused: Family,
    last_run: Family,
    last_success: Family,
    throughput: Family,
    time_to_empty: Family,
    burst_will_finish: Family,
    can_work: Family,
}

impl DrainFamilies {
    fn new() -> DrainFamilies {
        DrainFamilies {
            items: Family::new("drainctl_items", "Items of a drain per state."),
            burst: Family::new(
                "drainctl_burst_until_timestamp_seconds",
                "Deadline of the drain's burst (Unix seconds); 0 when none is set.",
            ),
            paused: Family::new("drainctl_paused", "1 when the drain is paused, else 0."),
            last_run: Family::new(
                "drainctl_last_run_finished_timestamp_seconds",
                "When the drain's latest finished run (not lock_skipped) ended (Unix seconds).",
            ),
            last_success: Family::new(
                "drainctl_last_success_timestamp_seconds",
                "When the drain's latest run that completed at least one item ended; 0 when none did.",
            ),
            throughput: Family::new(
                "drainctl_throughput_items_per_second",
                "Items completed per second of running time by the drain's recent finished passes (last 24h, at most 20).",
            ),
            time_to_empty: Family::new(
                "drainctl_time_to_empty_seconds",
                "Running time the drain needs to empty its backlog (pending and running items) at that throughput.",
            ),
            can_work: Family::new(
                "drainctl_can_work",
                "1 when a pass of the drain runs (not yielding to a higher-ranking drain of its quota group), or it is neither paused, held by its quota group nor out of today's budget and its schedule lets it work now or within the hour (a burst, or its window open and its every cadence due within the hour, before the window closes), else 0.",
            ),
            burst_will_finish: Family::new(
                "drainctl_burst_will_finish",
                "During a burst: 1 when the backlog empties before the deadline at that throughput, counting only the time after a backoff or a spent daily budget and none while the drain is paused or its quota group parked, else 0.",
            ),
        }
    }

    /// Append the samples of one configured drain.
    fn sample(
        &mut self,
        drain: &DrainConfig,
        snapshot: &DrainSnapshot,
        is_held: bool,
        now: DateTime<Utc>,
        zone: chrono_tz::Tz,
    ) {
        let name = &drain.name;
        let counts = snapshot.counts.get(name).copied().unwrap_or_default();
        for (state, count) in [
            ("pending", counts.pending),
            ("running", counts.running),
            ("done", counts.done),
            ("dead", counts.dead),
            ("skipped_missing", counts.skipped_missing),
        ] {
            self.items.sample(vec![("drain", name.clone()), ("state", state.to_string())], count as f64);
        }
        let control = snapshot.controls.iter().find(|control| &control.name == name);
        // A burst whose deadline passed is over, as `status` has it, though the next
        // `supervise` clears it.
        self.burst
            .sample(vec![("drain", name.clone())], timestamp(control.and_then(|c| c.active_burst(now))));
        let is_paused = control.is_some_and(|c| c.is_paused());
        self.paused.sample(vec![("drain", name.clone())], if is_paused { 1.0 } else { 0.0 });
        // What the stalled-drain alert needs to tell a drain waiting — for its window, its
        // next start, a resume, its quota group or tomorrow's budget — from a stuck one: a
        // drain resumed after a long pause is not stalled the moment it may work again.
        let latest = snapshot.latest.get(name).cloned().unwrap_or_default();
        let is_bursting = control.and_then(|c| c.active_burst(now)).is_some();
        let cost_today = snapshot.costs_today.get(name).copied();
        let is_budget_spent = crate::usage::spent_budget(drain.max_cost_per_day, cost_today).is_some();
        let is_waiting = is_paused || is_held || is_budget_spent;
        // A pass that yields to a higher-ranking drain of its group is no work done.
        let can_work = (latest.is_running && !latest.is_yielding)
            || (!latest.is_running
                && !is_waiting
                && crate::schedule::schedule_allows_work(
                    drain,
                    is_bursting,
                    latest.last_started_at,
                    now,
                    zone,
                ));
        self.can_work.sample(vec![("drain", name.clone())], if can_work { 1.0 } else { 0.0 });
        // No label for how it ended: a label whose value changes makes a new series.
        if let Some((_, finished_at)) = latest.finished {
            self.last_run.sample(vec![("drain", name.clone())], timestamp(Some(finished_at)));
        }
        self.last_success.sample(vec![("drain", name.clone())], timestamp(latest.last_success_at));
        let burst_until = control.and_then(|c| c.burst_until);
        let forecast = crate::schedule::forecast::forecast(
            snapshot.histories.get(name).copied().unwrap_or_default(),
            counts.pending + counts.running,
            drain.concurrency,
            burst_until,
            snapshot.holds.get(name).copied(),
            HoldReason::until_resumed(is_paused, snapshot.parked.contains(name)),
            now,
        )
        .paid_from(snapshot.budgets.get(name).copied(), now)
        .held_to(snapshot.quota_paces.get(&drain.quota_group).copied());
        if let Some(rate) = forecast.items_per_hour {
            self.throughput.sample(vec![("drain", name.clone())], rate / 3600.0);
        }
        if let Some(seconds) = forecast.seconds_to_empty {
            self.time_to_empty.sample(vec![("drain", name.clone())], seconds);
        }
        if let Some(finishes) = forecast.finishes_before_burst_deadline {
            self.burst_will_finish.sample(vec![("drain", name.clone())], if finishes { 1.0 } else { 0.0 });
        }
    }
}

/// The items waiting in drains that have left the configuration: a series per state
/// (pending, running) of each such drain with work (docs/operations.md, "Status").
fn unconfigured_family(client: &mut impl GenericClient, configured: &[String]) -> Result<Family> {
    let mut family = Family::new(
        "drainctl_unconfigured_drain_items",
        "Pending and running items of a drain that has no [[drain]] table in the configuration: nothing starts a pass of it.",
    );
    for work in items::unconfigured_with_work(client, configured, None)? {
        for (state, count) in [("pending", work.counts.pending), ("running", work.counts.running)] {
            family.sample(vec![("drain", work.drain.clone()), ("state", state.to_string())], count as f64);
        }
    }
    Ok(family)
}

/// How the quota groups hold the drains now, read once for the families and the burst
/// forecasts that need it: the groups' backoff rows, until when each drain's group backs
/// off as its next pass would find it (the account it would use), and the parked groups.
struct GroupHolds {
    rows: Vec<backoffs::BackoffRow>,
    waits: HashMap<String, DateTime<Utc>>,
    parked: Vec<crate::db::quota_groups::Parked>,
}

impl GroupHolds {
    fn read(client: &mut impl GenericClient, config: &Config, now: DateTime<Utc>) -> Result<GroupHolds> {
        let groups: Vec<String> = config.quota_groups.iter().map(|group| group.name.clone()).collect();
        let rows = backoffs::read_group_backoffs(client, &groups)?;
        // Only groups with accounts to switch between have a choice of account to read.
        let switching: Vec<String> = config
            .quota_groups
            .iter()
            .filter(|g| g.has_accounts_to_switch())
            .map(|g| g.name.clone())
            .collect();
        let states = match switching.is_empty() {
            true => Vec::new(),
            false => crate::db::quota_groups::read_groups(client, &switching)?,
        };
        let mut waits = HashMap::new();
        for drain in &config.drains {
            let group = config.quota_group(&drain.quota_group)?;
            let state = states.iter().find(|(name, _)| *name == group.name).map(|(_, state)| state.clone());
            let view = crate::accounts::GroupView::new(group, &rows, state.unwrap_or_default());
            if let Some((until, _)) = view.wait(now) {
                waits.insert(drain.name.clone(), until);
            }
        }
        let parked = crate::db::quota_groups::read_parked(client, &groups)?;
        Ok(GroupHolds { rows, waits, parked })
    }

    fn is_parked(&self, drain: &DrainConfig) -> bool {
        self.parked.iter().any(|parked| parked.quota_group == drain.quota_group)
    }

    /// Whether the drain's group holds it now: backs off (every account it may use) or is
    /// parked (a parked group waits for a person, whatever its backoff's time says).
    fn holds(&self, drain: &DrainConfig) -> bool {
        self.waits.contains_key(&drain.name) || self.is_parked(drain)
    }
}

/// The backoff and needs-attention families: one series per account of each quota group;
/// and whether each drain's group holds it now ([`GroupHolds::holds`]), for the stall
/// alert (monitoring/drainctl.rules.yml).
fn group_families(config: &Config, holds: &GroupHolds) -> [Family; 3] {
    let rows = &holds.rows;
    let mut backing_off = Family::new(
        "drainctl_backing_off",
        "1 when the drain's quota group backs off now (every account it may use) or is parked, else 0.",
    );
    for drain in &config.drains {
        let held = holds.holds(drain);
        backing_off.sample(vec![("drain", drain.name.clone())], if held { 1.0 } else { 0.0 });
    }
    let mut backoff = Family::new(
        "drainctl_backoff_until_timestamp_seconds",
        "Until when the account of the quota group backs off (Unix seconds; may be past); 0 when it never did.",
    );
    let mut attention = Family::new(
        "drainctl_quota_needs_attention",
        "1 when the account of the quota group backs off for a reason time will not fix (billing, login), else 0.",
    );
    for group in &config.quota_groups {
        let accounts = group.accounts.iter().map(|account| account.name.as_str());
        for row in backoffs::rows_for_accounts(rows, &group.name, accounts) {
            // A group without accounts has no `account` label rather than an empty one.
            let mut labels = vec![("quota_group", row.quota_group.clone())];
            if !row.account.is_empty() {
                labels.push(("account", row.account.clone()));
            }
            attention.sample(labels.clone(), if row.needs_attention { 1.0 } else { 0.0 });
            backoff.sample(labels, timestamp(row.backoff_until));
        }
    }
    [backoff, attention, backing_off]
}

/// The families without labels: the last supervisor pass, when these metrics were rendered
/// and the supervise interval.
fn supervisor_families(
    client: &mut impl GenericClient,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<[Family; 5]> {
    let last_pass = passes::last_pass(client)?;
    let mut pass_at = Family::new(
        "drainctl_supervisor_last_pass_timestamp_seconds",
        "When the last supervise pass that acted fired (Unix seconds); 0 when none has.",
    );
    pass_at.sample(Vec::new(), timestamp(last_pass.map(|(at, _)| at)));
    let mut pass_duration = Family::new(
        "drainctl_supervisor_last_pass_duration_seconds",
        "How long the last supervise pass that acted took.",
    );
    pass_duration.sample(Vec::new(), last_pass.map(|(_, ms)| f64::from(ms) / 1000.0).unwrap_or(0.0));
    let mut failures = Family::new(
        "drainctl_supervisor_last_pass_errors",
        "Failures recorded since the last supervise pass that acted fired: its failed steps (a drain it could not start, a scan, the prune) and those of passes skipped after it.",
    );
    failures.sample(Vec::new(), passes::failures_since_last_pass(client)? as f64);
    let mut generated = Family::new(
        "drainctl_metrics_generated_timestamp_seconds",
        "When drainctl rendered these metrics (Unix seconds).",
    );
    generated.sample(Vec::new(), timestamp(Some(now)));
    // The heartbeat alert is late at twice this, as `status` and `doctor` are.
    let mut interval = Family::new(
        "drainctl_supervise_interval_seconds",
        "The configured supervise_interval: how often supervise is expected to run.",
    );
    interval.sample(Vec::new(), config.defaults.supervise_interval.as_secs_f64());
    Ok([pass_at, pass_duration, failures, generated, interval])
}

/// The monotonic counters: zero for every configured drain, outcome and quota group, then
/// what the `counters` table holds (also for drains and groups no longer configured, so a
/// counter never goes back). Cost and tokens have no zero series: a drain has them once a
/// worker of it reported usage, so "nothing reported" never reads as "cost nothing".
fn counter_families(client: &mut impl GenericClient, config: &Config) -> Result<[Family; 5]> {
    let mut finished = Family::counter(
        "drainctl_items_finished_total",
        "Items that became done, dead or skipped_missing; pruning does not lower it.",
    );
    let mut starts = Family::counter(
        "drainctl_worker_starts_total",
        "Attempts that started a worker, counted when they end; pruning does not lower it.",
    );
    let mut hits = Family::counter(
        "drainctl_quota_hits_total",
        "Quota hits that set a backoff of the quota group; pruning does not lower it.",
    );
    let mut cost = Family::counter(
        "drainctl_cost_usd_total",
        "US dollars the drain's workers reported their attempts cost (docs/results.md); pruning does not lower it.",
    );
    let mut tokens = Family::counter(
        "drainctl_tokens_total",
        "Tokens the drain's workers reported, by kind: input, output, cache_read, cache_write; pruning does not lower it.",
    );
    for drain in &config.drains {
        for outcome in ["done", "dead", "skipped_missing"] {
            finished.set(vec![("drain", drain.name.clone()), ("outcome", outcome.to_string())], 0.0);
        }
        starts.set(vec![("drain", drain.name.clone())], 0.0);
    }
    for group in &config.quota_groups {
        hits.set(vec![("group", group.name.clone())], 0.0);
    }
    let label = |row: &counters::CounterRow, name: &str| row.labels.get(name).cloned().unwrap_or_default();
    for row in counters::read_counters(client)? {
        let value = row.value as f64;
        match row.metric.as_str() {
            "items_finished_total" => finished
                .set(vec![("drain", label(&row, "drain")), ("outcome", label(&row, "outcome"))], value),
            "worker_starts_total" => starts.set(vec![("drain", label(&row, "drain"))], value),
            "quota_hits_total" => hits.set(vec![("group", label(&row, "group"))], value),
            // Kept in micro-dollars so that the trigger adds integers.
            "cost_microusd_total" => cost.set(vec![("drain", label(&row, "drain"))], value / 1_000_000.0),
            "tokens_total" => {
                tokens.set(vec![("drain", label(&row, "drain")), ("kind", label(&row, "kind"))], value)
            }
            other => log::debug!("counter {other} is not exported"),
        }
    }
    Ok([finished, starts, hits, cost, tokens])
}

/// At the end of a drain pass, replace `metrics_textfile` (when set) so it does not show
/// the pass's items as pending until the next `supervise`. A failure is logged to the
/// pass's log and recorded as a `metrics_write_failed` event, and does not change how the
/// pass ended: the items are committed (docs/operations.md#metrics).
pub fn write_textfile_after_drain_pass(
    client: &mut impl GenericClient,
    outbox: &crate::db::events::Outbox,
    config: &Config,
    drain: &str,
    now: DateTime<Utc>,
) {
    let Some(path) = &config.defaults.metrics_textfile else { return };
    let written = render_metrics(client, config, now).and_then(|text| write_textfile(path, &text));
    if let Err(error) = written {
        // The pass's work is done and stays done; the failure is said, not swallowed.
        let message =
            format!("could not write metrics_textfile {}: {}", path.display(), error.display_scrubbed());
        log::warn!("{message}");
        let event = crate::db::events::Event::new(crate::model::EventKind::MetricsWriteFailed, message)
            .drain(drain)
            .data(serde_json::json!({ "path": path.display().to_string() }));
        crate::db::events::record_event_or_log(client, outbox, &event, now);
    }
}

/// How the textfile is replaced (crate::atomic_file): readable by node_exporter.
const TEXTFILE: crate::atomic_file::Target<'static> = crate::atomic_file::Target {
    what: "metrics textfile",
    named_by: "--textfile or metrics_textfile",
    example: "drainctl.prom",
    mode: TEXTFILE_MODE,
};

/// Replace `path` atomically with `text` (crate::atomic_file): a temporary file in the
/// same folder whose name does not end in `.prom`, so node_exporter never reads it, then
/// a rename. No link is ever followed: a `path` that exists and is not a regular file, or
/// whose folder is missing, is refused with a configuration error (exit 78) that names
/// the path. See docs/operations.md#metrics.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    crate::atomic_file::replace(path, text.as_bytes(), &TEXTFILE)
}

/// What [`write_textfile`] would refuse about `path`, without writing (for `doctor`).
pub fn check_textfile(path: &Path) -> Result<()> {
    crate::atomic_file::check(path, &TEXTFILE).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_family_renders_help_type_and_samples() {
        let mut family = Family::new("drainctl_paused", "1 when paused.");
        family.sample(vec![("drain", "a\"b".to_string())], 1.0);
        family.sample(Vec::new(), 1_764_237_600.5);
        let mut out = String::new();
        family.render(&mut out);
        assert_eq!(
            out,
            "# HELP drainctl_paused 1 when paused.\n# TYPE drainctl_paused gauge\n\
             drainctl_paused{drain=\"a\\\"b\"} 1\ndrainctl_paused 1764237600.5\n"
        );
    }

    #[test]
    fn the_textfile_is_replaced_whole_and_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drainctl.prom");
        std::fs::write(&path, "old").unwrap();
        write_textfile(&path, "drainctl_paused 0\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "drainctl_paused 0\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["drainctl.prom"], "no temporary file is left");
        let error = write_textfile(&dir.path().join("missing/drainctl.prom"), "x").unwrap_err();
        assert_eq!(error.exit_code(), 78);
    }

    #[test]
    fn a_symlink_planted_at_the_old_predictable_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let private = tempfile::tempdir().unwrap();
        let victim = private.path().join("shadow");
        std::fs::write(&victim, "root only\n").unwrap();
        std::fs::set_permissions(&victim, Permissions::from_mode(0o600)).unwrap();
        // The name every earlier version used: `.NAME.tmp<PID>`, with this process's pid.
        let planted = dir.path().join(format!(".drainctl.prom.tmp{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let path = dir.path().join("drainctl.prom");
        write_textfile(&path, "drainctl_paused 0\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root only\n", "the victim is unchanged");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the victim's mode is unchanged");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "drainctl_paused 0\n");
        assert!(!std::fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [planted.file_name().unwrap().to_str().unwrap(), "drainctl.prom"]);
    }
}
