//! `drainctl scan NAME`: one scan of a drain's file source (see [`crate::sources`]) and
//! what it enqueued, settled and refused.

use crate::cli::NameArg;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::output::Report;
use crate::sources::scan;

pub fn run(ctx: &mut Context, args: &NameArg) -> Result<Report> {
    let drain = ctx.config.drain(&args.name)?;
    let now = ctx.clock.now();
    let report = scan(&mut ctx.client, &ctx.outbox, drain, now)?;
    let mut human = format!("{}: {}\n", report.drain, report.summary());
    if report.truncated {
        if let Some(source) = &drain.source {
            human.push_str(&format!(
                "  stopped at max_files_per_scan ({}); the next scan goes on from there\n",
                source.max_files_per_scan
            ));
        }
    }
    human.push_str(&report.refused_lines());
    let json = serde_json::to_value(&report).map_err(|error| Error::Internal(error.to_string()))?;
    Ok(Report::new(human, json))
}
