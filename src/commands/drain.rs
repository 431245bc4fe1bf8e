//! `drainctl drain NAME`: one pass of one drain, run by [`crate::drain::run`].

use crate::cli::DrainArgs;
use crate::context::Context;
use crate::error::Result;
use crate::output::Report;

pub fn run(ctx: &mut Context, args: &DrainArgs) -> Result<Report> {
    let mut ran = ctx.configured_drain(&args.name).map(|_| ()).and_then(|()| crate::drain::run(ctx, args));
    let run = ran.as_ref().ok().and_then(|report| report.json.get("run_id")?.as_i64());
    crate::output::print_into_log_file(&mut ran, args.output.json);
    let now = ctx.clock.now();
    crate::output::record_lost_log_lines(&mut ctx.client, &ctx.outbox, Some(&args.name), run, now);
    ran
}
