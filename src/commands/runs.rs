//! `drainctl runs` and `drainctl runs show ID`: the history of drain passes.
//!
//! Every `drain` invocation is a run row: who started it and where, how long it took, how
//! many items it finished or failed, its checkpoints (proof of progress), how it ended and
//! the log file `supervise` gave it. The list shows the newest first; `show` shows one run
//! with every field.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::cli::{RunsArgs, RunsCommand, RunsShowArgs};
use crate::context::Context;
use crate::db::runs::{get_run, list_runs, RunRow};
use crate::db::usage::usage_of_run;
use crate::duration::format_duration;
use crate::error::{Error, Result};
use crate::output::{fields, instant_and_age, relative, table, Report};

pub fn run(ctx: &mut Context, args: &RunsArgs) -> Result<Report> {
    match &args.command {
        Some(RunsCommand::Show(show_args)) => show(ctx, show_args),
        None => list(ctx, args),
    }
}

fn list(ctx: &mut Context, args: &RunsArgs) -> Result<Report> {
    let now = ctx.clock.now();
    let drain = match &args.drain {
        Some(name) => Some(ctx.known_drain(name)?),
        None => None,
    };
    let runs = list_runs(&mut ctx.client, drain.as_deref(), args.limit)?;
    // Runs of other hosts (one database, several machines) say which ran where.
    let this_host = crate::worker::process::host_name();
    let several_hosts = runs.iter().any(|run| run.host != this_host);
    let human = if runs.is_empty() {
        "no runs yet".to_string()
    } else {
        let rows: Vec<Vec<String>> = runs
            .iter()
            .map(|run| {
                let mut row = vec![
                    run.id.to_string(),
                    run.drain.clone(),
                    run.status.to_string(),
                    run.trigger.to_string(),
                    relative(run.started_at, now),
                    format_duration(elapsed(run, now)),
                    run.items_done.to_string(),
                    run.items_failed.to_string(),
                    run.note.clone().unwrap_or_default(),
                ];
                if several_hosts {
                    row.insert(2, crate::output::one_line(&run.host));
                }
                row
            })
            .collect();
        let mut header = vec![
            "ID",
            "DRAIN",
            "STATUS",
            "TRIGGER",
            "STARTED",
            "DURATION",
            "DONE",
            "FAILED ATTEMPTS",
            "NOTE",
        ];
        if several_hosts {
            header.insert(2, "HOST");
        }
        table(&header, &rows)
    };
    let json_runs: Vec<Value> = runs.iter().map(|run| run_json(run, now)).collect();
    Ok(Report::new(human, json!({ "runs": json_runs })))
}

fn show(ctx: &mut Context, args: &RunsShowArgs) -> Result<Report> {
    let now = ctx.clock.now();
    let zone = ctx.config.defaults.timezone;
    let run = get_run(&mut ctx.client, args.id)?
        .ok_or_else(|| Error::Data(format!("no run with id {}; `drainctl runs` lists them", args.id)))?;
    let duration = format_duration(elapsed(&run, now));
    let mut pairs: Vec<(&str, String)> = vec![
        ("run", format!("{} of drain {}", run.id, run.drain)),
        ("status", run.status.to_string()),
        ("trigger", run.trigger.to_string()),
        ("host", run.host.clone()),
        ("pid", run.pid.to_string()),
        ("started", instant_and_age(Some(run.started_at), now, zone)),
        ("finished", instant_and_age(run.finished_at, now, zone)),
        (
            "duration",
            if run.finished_at.is_some() { duration } else { format!("{duration} so far (still running)") },
        ),
        ("items", crate::output::run_outcome(run.items_done, run.items_failed)),
        ("checkpoints", run.checkpoints.to_string()),
        ("last checkpoint", instant_and_age(Some(run.last_checkpoint_at), now, zone)),
    ];
    if let Some(worker_pid) = run.worker_pid {
        pairs.push(("worker pid", worker_pid.to_string()));
    }
    pairs.push(("note", run.note.clone().unwrap_or_else(|| "-".into())));
    if let (Some(until), Some(reason)) = (run.waiting_until, &run.waiting_reason) {
        pairs.push(("waiting", format!("until {} ({reason})", instant_and_age(Some(until), now, zone))));
    }
    pairs.push(("log file", run.log_path.clone().unwrap_or_else(|| "- (not started by supervise)".into())));
    // Only what the workers reported: a run whose workers reported nothing shows nothing.
    let usage = usage_of_run(&mut ctx.client, run.id)?;
    if let Some(text) = usage.describe() {
        pairs.push(("usage", text));
    }
    let mut json = run_json(&run, now);
    json["usage"] = usage.to_json();
    Ok(Report::new(fields(&pairs), json))
}

/// From start to finish, or to `now` while the run is still open.
fn elapsed(run: &RunRow, now: DateTime<Utc>) -> std::time::Duration {
    (run.finished_at.unwrap_or(now) - run.started_at).to_std().unwrap_or_default()
}

fn seconds(duration: chrono::Duration) -> f64 {
    duration.num_milliseconds() as f64 / 1000.0
}

/// One run as `runs --json` and `runs show --json` print it (see docs/json.md).
fn run_json(run: &RunRow, now: DateTime<Utc>) -> Value {
    json!({
        "id": run.id,
        "drain": run.drain,
        "status": run.status,
        "trigger": run.trigger,
        "host": run.host,
        "host_id": run.host_id,
        "pid": run.pid,
        "worker_pid": run.worker_pid,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_seconds": seconds(run.finished_at.unwrap_or(now) - run.started_at),
        "items_done": run.items_done,
        "items_failed": run.items_failed,
        "checkpoints": run.checkpoints,
        "last_checkpoint_at": run.last_checkpoint_at,
        "last_checkpoint_age_seconds": seconds(now - run.last_checkpoint_at),
        "note": run.note,
        "log_path": run.log_path,
        "waiting_until": run.waiting_until,
        "waiting_reason": run.waiting_reason,
    })
}
