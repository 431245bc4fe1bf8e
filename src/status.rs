//! `drainctl status`: the operator's snapshot of every drain — state, backlog counts,
//! burst, backoff, last run, last checkpoint age, the next window opening and cadence
//! start, and a forecast (throughput of recent passes, time to empty the backlog, whether
//! a burst finishes in time) — of every account of the quota groups that declare
//! accounts, and the supervisor's heartbeat, with relative times in the configured zone.
//! Counts come from the `(drain, state)` index.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::accounts::{AccountState, GroupView, Selection};
use crate::context::Context;
use crate::db::backoffs::read_group_backoffs;
use crate::db::drains::read_controls;
use crate::db::items::count_by_state_of;
use crate::db::quota_groups::read_groups;
use crate::db::runs::{last_run, last_run_starts, running_runs};
use crate::duration::format_relative;
use crate::error::Result;
use crate::output::{local_time, table, Report};

pub fn run(ctx: &mut Context) -> Result<Report> {
    let Context { config, clock, client, .. } = ctx;
    let now = clock.now();
    let zone = config.defaults.timezone;
    let names: Vec<String> = config.drains.iter().map(|d| d.name.clone()).collect();
    let controls = read_controls(client, &names)?;
    let running = running_runs(client, None)?;
    let group_names: Vec<String> = config.quota_groups.iter().map(|g| g.name.clone()).collect();
    let backoff_rows = read_group_backoffs(client, &group_names)?;
    let group_states = read_groups(client, &group_names)?;
    let views: Vec<GroupView> = config
        .quota_groups
        .iter()
        .zip(group_states)
        .map(|(group, (_, state))| GroupView::new(group, &backoff_rows, state))
        .collect();
    let last_starts = last_run_starts(client, &names)?;
    let all_counts = count_by_state_of(client, &names)?;
    let histories = crate::forecast::recent_histories(client, &names, now)?;
    let mut forecast_lines = Vec::new();
    let relative = |at: DateTime<Utc>| format_relative(at - now);
    let mut rows = Vec::new();
    let mut drains_json = Vec::new();
    for drain in &config.drains {
        let control = controls.iter().find(|c| c.name == drain.name);
        let counts = all_counts.get(&drain.name).copied().unwrap_or_default();
        let Some(view) = views.iter().find(|view| view.group.name == drain.quota_group) else {
            continue;
        };
        let wait = view.wait(now);
        let next_account = match view.select(now) {
            Selection::Use { account, .. } => view.group.accounts.get(account),
            Selection::Wait { .. } => None,
        };
        // The account whose suspected mark a success would clear.
        let current = view.backoffs.get(view.active());
        let last = last_run(client, &drain.name)?;
        let runs: Vec<_> = running.iter().filter(|r| r.drain == drain.name).collect();
        let liveness = chrono::Duration::from_std(drain.liveness_timeout).unwrap_or(chrono::Duration::MAX);
        let is_hung = runs.iter().any(|r| now - r.last_checkpoint_at > liveness);
        let burst_until = control.and_then(|c| c.active_burst(now));
        let is_paused = control.is_some_and(|c| c.is_paused());
        let is_backing_off = wait.is_some();
        let in_window = drain.window.as_ref().is_none_or(|w| w.contains(now, zone));
        let state = if is_paused {
            "paused"
        } else if is_hung {
            "hung"
        } else if !runs.is_empty() {
            "running"
        } else if is_backing_off {
            "backing-off"
        } else if burst_until.is_some() {
            "burst"
        } else if !in_window {
            "out-of-window"
        } else {
            "idle"
        };
        let next_opening = match &drain.window {
            Some(window) if !in_window => window.next_opening(now, zone),
            _ => None,
        };
        let last_checkpoint = runs.iter().map(|r| r.last_checkpoint_at).max();
        let last_started_at = last_starts.iter().find(|(name, _)| *name == drain.name).map(|(_, at)| *at);
        let cadence_next_start = crate::supervise::cadence_next_start(drain, last_started_at);
        let forecast = crate::forecast::forecast(
            histories.get(&drain.name).copied().unwrap_or_default(),
            counts.pending + counts.running,
            drain.concurrency,
            burst_until,
            now,
        );
        forecast_lines.push(format!("  {}: {}", drain.name, forecast.describe()));
        if let Some(burst) = forecast.describe_burst() {
            forecast_lines.push(format!("  {}: {burst}", drain.name));
        }
        let mut notes = Vec::new();
        if let Some(until) = burst_until {
            notes.push(format!("burst until {} ({})", local_time(until, zone), relative(until)));
        }
        if let Some((until, reason)) = &wait {
            notes.push(format!("backoff {} ({reason})", relative(*until)));
        }
        if let Some(account) = next_account.filter(|account| !account.is_implicit()) {
            notes.push(format!("account {}", account.name));
        }
        if is_paused {
            notes.push(format!("paused: {}", control.and_then(|c| c.pause_note.clone()).unwrap_or_default()));
        }
        if let Some(at) = last_checkpoint {
            notes.push(format!("checkpoint {}", relative(at)));
        }
        if let Some(at) = next_opening {
            notes.push(format!("opens {}", relative(at)));
        }
        if let Some(at) = cadence_next_start.filter(|at| *at > now && burst_until.is_none()) {
            notes.push(format!("next start {}", relative(at)));
        }
        if counts.skipped_missing > 0 {
            notes.push(format!("{} skipped (file missing)", counts.skipped_missing));
        }
        rows.push(vec![
            drain.name.clone(),
            state.to_string(),
            counts.pending.to_string(),
            counts.running.to_string(),
            counts.done.to_string(),
            counts.dead.to_string(),
            last.as_ref()
                .map(|r| format!("{} {}", r.status, relative(r.finished_at.unwrap_or(r.started_at))))
                .unwrap_or_else(|| "-".into()),
            notes.join("; "),
        ]);
        drains_json.push(json!({
            "drain": drain.name,
            "state": state,
            "quota_group": drain.quota_group,
            "counts": counts,
            "paused": is_paused,
            "pause_note": control.and_then(|c| c.pause_note.clone()),
            "burst_until": burst_until,
            "burst_note": control.and_then(|c| c.burst_note.clone()),
            "backoff_until": wait.as_ref().map(|(until, _)| until),
            "backoff_reason": wait.as_ref().map(|(_, reason)| reason),
            "backoff_suspected": current.is_some_and(|row| row.suspected_at.is_some()),
            "needs_attention": view.backoffs.iter().any(|row| row.needs_attention),
            "account": next_account.filter(|a| !a.is_implicit()).map(|a| a.name.clone()),
            "accounts": account_rows(view, now).into_iter().map(|row| row.json).collect::<Vec<_>>(),
            "running_runs": runs.iter().map(|r| r.id).collect::<Vec<_>>(),
            "last_run": last.as_ref().map(|r| json!({
                "id": r.id,
                "status": r.status,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "items_done": r.items_done,
                "items_failed": r.items_failed,
                "note": r.note,
            })),
            "last_checkpoint_at": last_checkpoint,
            "window": drain.window.as_ref().map(|w| w.describe()),
            "in_window": in_window,
            "next_window_opening": next_opening,
            "every_seconds": drain.every.map(|every| every.as_secs_f64()),
            "cadence_next_start_at": cadence_next_start,
            "forecast": forecast,
        }));
    }
    let heartbeat = crate::supervise::Heartbeat::new(
        crate::db::passes::last_pass(client)?.map(|(at, _)| at),
        now,
        config.defaults.supervise_interval,
    );
    let mut human =
        table(&["DRAIN", "STATE", "PENDING", "RUNNING", "DONE", "DEAD", "LAST RUN", "NOTES"], &rows);
    if !forecast_lines.is_empty() {
        human.push_str("\nforecast (passes finished in the last 24h)\n");
        for line in forecast_lines {
            human.push_str(&crate::output::truncate(&line, crate::output::TABLE_WIDTH));
            human.push('\n');
        }
    }
    let mut account_table = Vec::new();
    for view in &views {
        for row in account_rows(view, now) {
            let backoff = match row.backoff_until {
                Some(until) => format!(
                    "until {} ({}): {}",
                    local_time(until, zone),
                    relative(until),
                    row.reason.unwrap_or_default()
                ),
                None => "-".to_string(),
            };
            account_table.push(vec![view.group.name.clone(), row.name, row.state.to_string(), backoff]);
        }
    }
    if !account_table.is_empty() {
        if !human.ends_with('\n') {
            human.push('\n');
        }
        human.push('\n');
        human.push_str(&table(&["QUOTA GROUP", "ACCOUNT", "STATE", "BACKOFF"], &account_table));
    }
    human.push_str(&format!("\n{}\n", heartbeat.describe(now)));
    Ok(Report::new(
        human,
        json!({ "now": now, "timezone": zone.name(), "drains": drains_json, "supervisor": heartbeat }),
    ))
}

/// One account of a quota group as `status` shows it.
struct AccountRow {
    name: String,
    /// `in-use` (the next item runs on it), `available`, `suspected` or `backing-off`.
    state: &'static str,
    backoff_until: Option<DateTime<Utc>>,
    reason: Option<String>,
    json: serde_json::Value,
}

/// The declared accounts of a group (none for a group without accounts).
fn account_rows(view: &GroupView, now: DateTime<Utc>) -> Vec<AccountRow> {
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
            let state = if in_use == Some(index) { "in-use" } else { state.as_str() };
            let is_backing_off = !matches!(AccountState::of(row, now), AccountState::Usable);
            let backoff_until = row.backoff_until.filter(|_| is_backing_off);
            let reason = row.reason.clone().filter(|_| is_backing_off);
            let json = json!({
                "name": account.name,
                "state": state,
                "backoff_until": backoff_until,
                "backoff_reason": reason,
                "backoff_rule": row.rule.filter(|_| is_backing_off),
                "suspected": row.suspected_at.is_some(),
                "needs_attention": row.needs_attention,
            });
            AccountRow { name: account.name.clone(), state, backoff_until, reason, json }
        })
        .collect()
}
