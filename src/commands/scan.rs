//! `drainctl scan NAME`: one scan of a drain's file source (see [`crate::sources`]) and
//! what it enqueued, settled and refused.

use crate::cli::ScanArgs;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::output::Report;
use crate::sources::scan;

pub fn run(ctx: &mut Context, args: &ScanArgs) -> Result<Report> {
    ctx.configured_drain(&args.name)?;
    let drain = ctx.config.drain(&args.name)?;
    let report = scan(&mut ctx.client, &ctx.outbox, drain, &ctx.clock, !args.no_budget)?;
    let human = format!("{}: {}\n{}", report.drain, report.summary(), report.detail_lines());
    let json = serde_json::to_value(&report).map_err(|error| Error::Internal(error.to_string()))?;
    Ok(Report::new(human, json))
}
