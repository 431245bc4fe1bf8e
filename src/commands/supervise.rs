//! `drainctl supervise`: one supervisor pass over every drain, run by
//! [`crate::supervise::run`].

use crate::cli::SuperviseArgs;
use crate::context::Context;
use crate::error::Result;
use crate::output::Report;

pub fn run(ctx: &mut Context, args: &SuperviseArgs) -> Result<Report> {
    crate::supervise::run(ctx, args)
}
