//! `drainctl prune [--dry-run]`: apply the retention horizons now (see [`crate::prune`])
//! and show what was removed, or in a dry run what would be, with each horizon.

use chrono::{DateTime, Utc};

use crate::cli::PruneArgs;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::output::Report;
use crate::prune::{prune_now, PruneReport};

pub fn run(ctx: &mut Context, args: &PruneArgs) -> Result<Report> {
    let now = ctx.clock.now();
    // SIGTERM and SIGINT stop it between two batches, recording what was removed.
    crate::worker::signals::install_termination_handlers()
        .map_err(|error| Error::Internal(format!("cannot install signal handlers: {error}")))?;
    let report = prune_now(&mut ctx.client, &ctx.outbox, &ctx.config, now, args.dry_run)?;
    render(&report, ctx.config.defaults.timezone, ctx.schema_created)
}

fn render(report: &PruneReport, zone: chrono_tz::Tz, schema_created: bool) -> Result<Report> {
    let local = |at: DateTime<Utc>| crate::output::local_minute(at, zone);
    let mut human = String::new();
    match (report.dry_run, schema_created) {
        (false, _) => {}
        (true, false) => human.push_str("dry run: nothing was removed\n"),
        // "Nothing was removed but the schema" would read as the schema removed.
        (true, true) => {
            human.push_str(&format!("dry run: nothing was changed {}\n", crate::context::BUT_THE_SCHEMA))
        }
    }
    human.push_str(&format!("{}\n", report.summary()));
    human.push_str(&format!("  runs and supervisor passes before {}\n", local(report.runs_before)));
    human.push_str(&format!("  events before {}\n", local(report.events_before)));
    human.push_str(&format!("  log files last written before {}\n", local(report.logs_before)));
    if let Some(before) = report.done_items_before {
        human.push_str(&format!("  done items finished before {}\n", local(before)));
    }
    let json = serde_json::to_value(report).map_err(|error| Error::Internal(error.to_string()))?;
    Ok(Report::new(human, json))
}
