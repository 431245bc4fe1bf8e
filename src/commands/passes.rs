//! `drainctl passes`: the supervise history, newest first.
//!
//! Every `supervise` invocation records itself in `supervisor_passes`: when it fired, the
//! cron slot it stands for, host and pid, how long it took, and every decision with its
//! reason — the drains it started (with the drain's pid and log file), the runs it reaped
//! or ended, the bursts it expired, the drains it skipped and why, and what failed. A pass
//! that found another holding the supervise lock is recorded as `lock_skipped`. This
//! command shows them, each with a summary line and its decisions.

use serde_json::{json, Value};

use crate::cli::PassesArgs;
use crate::context::Context;
use crate::db::passes::{list_passes, PassRow};
use crate::duration::format_duration;
use crate::error::Result;
use crate::model::PassStatus;
use crate::output::{instant_and_age, local_minute, local_second, table, Report};

pub fn run(ctx: &mut Context, args: &PassesArgs) -> Result<Report> {
    let now = ctx.clock.now();
    let zone = ctx.config.defaults.timezone;
    let passes = list_passes(&mut ctx.client, args.limit)?;
    let human = if passes.is_empty() {
        "no supervise pass recorded yet: is its crontab, timer or pm2 entry installed, and does it reach the \
         database (see its --log-file)?"
            .to_string()
    } else {
        passes
            .iter()
            .map(|pass| {
                let summary = Summary::of(&pass.decisions);
                let took = format_duration(duration(pass));
                let fired = instant_and_age(Some(pass.fired_at), now, zone);
                // Its seconds when it has any (a `--slot` given to the second).
                let slot = if chrono::Timelike::second(&pass.scheduled_for) == 0 {
                    local_minute(pass.scheduled_for, zone)
                } else {
                    local_second(pass.scheduled_for, zone)
                };
                let mut text = match pass.status {
                    PassStatus::LockSkipped => format!(
                        "pass {}: lock_skipped, fired {fired} for slot {slot} on {} (pid {}): another supervise pass held the lock\n",
                        pass.id, pass.host, pass.pid
                    ),
                    PassStatus::Done => format!(
                        "pass {}: done, fired {fired} for slot {slot} on {} (pid {}), took {took}: {}\n",
                        pass.id,
                        pass.host,
                        pass.pid,
                        summary.describe()
                    ),
                };
                let rows = decision_rows(&pass.decisions);
                if !rows.is_empty() {
                    for line in table(&["DRAIN", "ACTION", "REASON"], &rows).lines() {
                        text.push_str(&format!("  {line}\n"));
                    }
                }
                text
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let json_passes: Vec<Value> = passes.iter().map(pass_json).collect();
    Ok(Report::new(human, json!({ "passes": json_passes })))
}

fn duration(pass: &PassRow) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(pass.duration_ms).unwrap_or(0))
}

/// How many decisions of a pass did what: the summary line and the JSON counts.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    started: usize,
    ended: usize,
    skipped: usize,
    errors: usize,
}

impl Summary {
    /// Count the recorded decisions; one that failed counts only as an error.
    fn of(decisions: &Value) -> Summary {
        let mut summary = Summary::default();
        for decision in decisions.as_array().into_iter().flatten() {
            if decision.get("error").is_some_and(|error| !error.is_null()) {
                summary.errors += 1;
                continue;
            }
            match decision.get("action").and_then(Value::as_str) {
                Some("start") => summary.started += 1,
                Some("expire_burst" | "reap_crashed" | "kill_hung") => summary.ended += 1,
                Some("skip") => summary.skipped += 1,
                _ => {}
            }
        }
        summary
    }

    /// `1 started, 2 ended, 0 skipped, 1 error`.
    fn describe(&self) -> String {
        let errors = if self.errors == 1 { "error" } else { "errors" };
        format!(
            "{} started, {} ended, {} skipped, {} {errors}",
            self.started, self.ended, self.skipped, self.errors
        )
    }
}

/// One row per recorded decision: drain, action, and the reason — after what failed, if
/// anything did — with the started drain's pid and log file.
fn decision_rows(decisions: &Value) -> Vec<Vec<String>> {
    let text = |decision: &Value, field: &str| {
        decision.get(field).and_then(Value::as_str).map(str::to_string).unwrap_or_default()
    };
    decisions
        .as_array()
        .into_iter()
        .flatten()
        .map(|decision| {
            let error = decision.get("error").and_then(Value::as_str);
            let mut reason = crate::supervise::shown_reason(&text(decision, "reason"), error);
            if let Some(pid) = decision.get("pid").and_then(Value::as_u64) {
                let log = decision.get("log_path").and_then(Value::as_str).unwrap_or("-");
                reason.push_str(&format!(" [pid {pid}, log {log}]"));
            }
            vec![text(decision, "drain"), text(decision, "action"), reason]
        })
        .collect()
}

/// One pass as `passes --json` prints it (see docs/json.md).
fn pass_json(pass: &PassRow) -> Value {
    let summary = Summary::of(&pass.decisions);
    json!({
        "id": pass.id,
        "fired_at": pass.fired_at,
        "scheduled_for": pass.scheduled_for,
        "host": pass.host,
        "pid": pass.pid,
        "status": pass.status,
        "duration_seconds": pass.duration_ms as f64 / 1000.0,
        "started": summary.started,
        "ended": summary.ended,
        "skipped": summary.skipped,
        "errors": summary.errors,
        "decisions": pass.decisions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions() -> Value {
        json!([
            { "drain": "old", "action": "reap_crashed", "reason": "run 3: process 77 on h is gone",
              "run_id": 3, "trigger": null, "pid": null, "log_path": null, "error": null },
            { "drain": "docs", "action": "start", "reason": "inside window",
              "run_id": null, "trigger": "supervisor", "pid": 4242, "log_path": "/logs/docs/x-4242.log", "error": null },
            { "drain": "meta", "action": "skip", "reason": "paused (maintenance)",
              "run_id": null, "trigger": null, "pid": null, "log_path": null, "error": null },
            { "drain": "late", "action": "start", "reason": "inside window",
              "run_id": null, "trigger": "supervisor", "pid": null, "log_path": null, "error": "cannot create log folder" },
        ])
    }

    #[test]
    fn a_pass_is_summed_up_by_what_its_decisions_did() {
        let summary = Summary::of(&decisions());
        assert_eq!(summary, Summary { started: 1, ended: 1, skipped: 1, errors: 1 });
        assert_eq!(summary.describe(), "1 started, 1 ended, 1 skipped, 1 error");
        assert_eq!(Summary::of(&json!([])).describe(), "0 started, 0 ended, 0 skipped, 0 errors");
    }

    #[test]
    fn a_decision_row_names_the_started_drain_and_what_failed() {
        let rows = decision_rows(&decisions());
        assert_eq!(rows[1], ["docs", "start", "inside window [pid 4242, log /logs/docs/x-4242.log]"]);
        assert_eq!(rows[2], ["meta", "skip", "paused (maintenance)"]);
        assert_eq!(rows[3], ["late", "start", "FAILED: cannot create log folder — inside window"]);
    }

    #[test]
    fn a_failed_start_with_a_long_log_path_shows_that_it_failed_in_the_table() {
        let decisions = json!([
            { "drain": "docs", "action": "start", "reason": "items available; no window configured",
              "run_id": null, "trigger": "supervisor", "pid": 4242, "error": "ended without recording a run",
              "log_path": "/var/lib/drainctl/state/drainctl/logs/docs/20261127T100000Z-4242.log" },
        ]);
        let text = table(&["DRAIN", "ACTION", "REASON"], &decision_rows(&decisions));
        let row = text.lines().nth(1).unwrap_or_default();
        assert!(row.contains("start   FAILED: ended without recording a run — items available"), "{text}");
    }
}
