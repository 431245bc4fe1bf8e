//! `drainctl metrics [--textfile [PATH]]`: the metrics of [`crate::metrics`] on stdout, or
//! written atomically to a node_exporter textfile.

use std::path::PathBuf;

use serde_json::json;

use crate::cli::MetricsArgs;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::{render_metrics, write_textfile};
use crate::output::Report;

pub fn run(ctx: &mut Context, args: &MetricsArgs) -> Result<Report> {
    let text = render_metrics(&mut ctx.client, &ctx.config, ctx.clock.now())?;
    // `--textfile -` is stdout, as `export -o -` is.
    let textfile =
        args.textfile.as_ref().filter(|file| !file.as_deref().is_some_and(crate::cli::is_standard_stream));
    let path: PathBuf = match textfile {
        None => return Ok(Report::the_output(text)),
        Some(None) => ctx.config.defaults.metrics_textfile.clone().ok_or_else(|| {
            Error::Usage(
                "--textfile without PATH writes to [defaults] metrics_textfile, which is not set; \
                     give a PATH or set it in the configuration"
                    .to_string(),
            )
        })?,
        Some(Some(path)) => path.clone(),
    };
    write_textfile(&path, &text)?;
    let samples = text.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).count();
    Ok(Report::new(
        format!("wrote {samples} samples to {}", path.display()),
        json!({ "textfile": path.display().to_string(), "samples": samples }),
    ))
}
