//! `drainctl status`: the operator's snapshot of every drain — state, backlog counts,
//! burst, backoff, last run, last checkpoint age and the next window opening — with
//! relative times in the configured zone. Counts come from the `(drain, state)` index.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::context::Context;
use crate::db::backoffs::read_backoff;
use crate::db::drains::read_controls;
use crate::db::items::count_by_state;
use crate::db::runs::{last_run, running_runs};
use crate::duration::format_relative;
use crate::error::Result;
use crate::output::{local_time, table, Report};

pub fn run(ctx: &mut Context) -> Result<Report> {
    let Context { config, clock, client } = ctx;
    let now = clock.now();
    let zone = config.defaults.timezone;
    let names: Vec<String> = config.drains.iter().map(|d| d.name.clone()).collect();
    let controls = read_controls(client, &names)?;
    let running = running_runs(client, None)?;
    let relative = |at: DateTime<Utc>| format_relative(at - now);
    let mut rows = Vec::new();
    let mut drains_json = Vec::new();
    for drain in &config.drains {
        let control = controls.iter().find(|c| c.name == drain.name);
        let counts = count_by_state(client, &drain.name)?;
        let backoff = read_backoff(client, &drain.quota_group)?;
        let last = last_run(client, &drain.name)?;
        let runs: Vec<_> = running.iter().filter(|r| r.drain == drain.name).collect();
        let liveness = chrono::Duration::from_std(drain.liveness_timeout).unwrap_or(chrono::Duration::MAX);
        let is_hung = runs.iter().any(|r| now - r.last_checkpoint_at > liveness);
        let burst_until = control.and_then(|c| c.burst_until).filter(|until| *until > now);
        let is_paused = control.is_some_and(|c| c.is_paused());
        let is_backing_off = backoff.is_backing_off(now);
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
        let mut notes = Vec::new();
        if let Some(until) = burst_until {
            notes.push(format!("burst until {} ({})", local_time(until, zone), relative(until)));
        }
        if is_backing_off {
            if let Some(until) = backoff.backoff_until {
                notes.push(format!(
                    "backoff {} ({})",
                    relative(until),
                    backoff.reason.clone().unwrap_or_default()
                ));
            }
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
            "backoff_until": backoff.backoff_until.filter(|_| is_backing_off),
            "backoff_reason": backoff.reason.clone().filter(|_| is_backing_off),
            "backoff_suspected": backoff.suspected_at.is_some(),
            "needs_attention": backoff.needs_attention,
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
        }));
    }
    let human = table(&["DRAIN", "STATE", "PENDING", "RUNNING", "DONE", "DEAD", "LAST RUN", "NOTES"], &rows);
    Ok(Report::new(human, json!({ "now": now, "timezone": zone.name(), "drains": drains_json })))
}
