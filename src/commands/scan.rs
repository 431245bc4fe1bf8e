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
    // SIGTERM, SIGINT and SIGHUP stop the hashing where it is; what the scan found is
    // recorded, its hashing so far kept for the next scan, and it exits 75 saying so.
    crate::worker::signals::install_termination_handlers()
        .map_err(|error| Error::Internal(format!("cannot install signal handlers: {error}")))?;
    let report = scan(&mut ctx.client, &ctx.outbox, drain, &ctx.clock, !args.no_budget)?;
    if let Some(signal) = crate::worker::signals::termination_signal() {
        return Err(Error::Temporary(format!(
            "scan of drain {} interrupted by {}: {}; what it hashed is kept, and the next scan goes on from there",
            report.drain,
            crate::worker::signals::signal_name(signal),
            report.summary()
        )));
    }
    let human = format!("{}: {}\n{}", report.drain, report.summary(), report.detail_lines());
    let json = serde_json::to_value(&report).map_err(|error| Error::Internal(error.to_string()))?;
    Ok(Report::new(human, json))
}
