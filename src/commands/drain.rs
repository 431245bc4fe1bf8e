//! `drainctl drain NAME`: one pass of one drain, run by [`crate::drain::run`].

use crate::cli::DrainArgs;
use crate::context::Context;
use crate::error::Result;
use crate::output::Report;

pub fn run(ctx: &mut Context, args: &DrainArgs) -> Result<Report> {
    crate::drain::run(ctx, args)
}
