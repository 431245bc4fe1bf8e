//! `drainctl drain NAME`: one pass of one drain, run by [`crate::drain::run`].

use crate::cli::DrainArgs;
use crate::context::Context;
use crate::error::Result;
use crate::output::Report;

pub fn run(ctx: &mut Context, args: &DrainArgs) -> Result<Report> {
    let report = crate::drain::run(ctx, args)?;
    let run = report.json.get("run_id").and_then(serde_json::Value::as_i64);
    let now = ctx.clock.now();
    crate::output::record_lost_log_lines(&mut ctx.client, &ctx.outbox, Some(&args.name), run, now);
    Ok(report)
}
