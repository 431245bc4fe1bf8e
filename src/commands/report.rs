//! `drainctl report [--html [FILE]]`: the operations page of [`crate::report`] on stdout,
//! or written atomically (owner-only) to FILE or `[defaults] report_html`.

use std::path::PathBuf;

use serde_json::json;

use crate::cli::ReportArgs;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::output::Report;
use crate::report::{render_page, write_page};

pub fn run(ctx: &mut Context, args: &ReportArgs) -> Result<Report> {
    // `--html -` is stdout, as `export -o -` is.
    let html = args.html.as_ref().filter(|file| !file.as_deref().is_some_and(crate::cli::is_standard_stream));
    let path: PathBuf = match html {
        None => {
            let html = render_page(&mut ctx.client, &ctx.config, ctx.clock.now())?;
            return Ok(Report::the_output(html));
        }
        Some(None) => ctx.config.defaults.report_html.clone().ok_or_else(|| {
            Error::Usage(
                "--html without FILE writes to [defaults] report_html, which is not set; give a FILE or set it \
                 in the configuration"
                    .to_string(),
            )
        })?,
        Some(Some(path)) => path.clone(),
    };
    let html = render_page(&mut ctx.client, &ctx.config, ctx.clock.now())?;
    write_page(&path, &html)?;
    Ok(Report::new(
        format!(
            "wrote the operations page of {} to {}",
            crate::output::counted(ctx.config.drains.len(), "drain"),
            path.display()
        ),
        json!({ "html": path.display().to_string(), "bytes": html.len() }),
    ))
}
