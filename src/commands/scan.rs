//! `drainctl scan NAME`: one scan of a drain's file source (see [`crate::sources`]) and
//! what it enqueued, settled and refused.

use crate::cli::ScanArgs;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::output::Report;
use crate::sources::scan;

pub fn run(ctx: &mut Context, args: &ScanArgs) -> Result<Report> {
    let drain = ctx.config.drain(&args.name)?;
    let report = scan(&mut ctx.client, &ctx.outbox, drain, &ctx.clock, !args.no_budget)?;
    let mut human = format!("{}: {}\n", report.drain, report.summary());
    if report.truncated {
        if let Some(source) = &drain.source {
            human.push_str(&format!(
                "  stopped at max_files_per_scan ({}); the next scan goes on from there\n",
                source.max_files_per_scan
            ));
        }
    }
    if report.deferred_by_budget > 0 {
        if let Some(source) = &drain.source {
            human.push_str(&format!(
                "  the hash budget (max_hash_bytes_per_scan {}, max_hash_seconds_per_scan {}) was used up; \
                 `drainctl scan {} --no-budget` hashes the rest now\n",
                source.max_hash_bytes_per_scan,
                crate::duration::format_duration(source.max_hash_seconds_per_scan),
                drain.name
            ));
        }
    }
    human.push_str(&report.deferred_lines());
    human.push_str(&report.refused_lines());
    let json = serde_json::to_value(&report).map_err(|error| Error::Internal(error.to_string()))?;
    Ok(Report::new(human, json))
}
