//! `drainctl supervise`: one supervisor pass over every drain, run by
//! [`crate::supervise::run`]; after a pass that acted, the operations page of
//! [`crate::report`] is rewritten when `[defaults] report_html` is set, and then the
//! notifications are sent.

use std::path::Path;

use crate::cli::SuperviseArgs;
use crate::context::Context;
use crate::db::events::{record_event_or_log, Event};
use crate::error::{worse_exit_code, Result};
use crate::model::{EventKind, PassStatus};
use crate::output::Report;

pub fn run(ctx: &mut Context, args: &SuperviseArgs) -> Result<Report> {
    let mut done = pass(ctx, args);
    if !args.dry_run {
        // Its summary into its log file first: a full disk refusing it is recorded too.
        crate::output::print_into_log_file(&mut done, args.output.json);
        let now = ctx.clock.now();
        crate::output::record_lost_log_lines(&mut ctx.client, &ctx.outbox, None, None, now);
    }
    done
}

/// The pass, the page, then its notifications.
fn pass(ctx: &mut Context, args: &SuperviseArgs) -> Result<Report> {
    let report = crate::supervise::run(ctx, args)?;
    if report.was_interrupted {
        return Ok(report);
    }
    let has_acted = !args.dry_run
        && report.json.get("status").and_then(|status| status.as_str()) == Some(PassStatus::Done.as_str());
    if !has_acted {
        return Ok(report);
    }
    // A termination signal ends the pass at the next step, recorded, with exit 75: what
    // is left is the next pass's (docs/operations.md, "Stopping a pass").
    let interrupted = crate::supervise::Interruption { dry_run: args.dry_run };
    // The page before the notifications: a notifier that hangs (up to `notify_timeout`
    // each) must not leave it, and the heartbeat it shows, stale (docs/results.md).
    let report = match ctx.config.defaults.report_html.clone() {
        Some(path) => {
            let left = match ctx.config.defaults.notify_command.is_some() {
                true => "it rewrote report_html and sent every notification",
                false => "it rewrote report_html",
            };
            // The decisions are printed all the same: drains were started and runs ended.
            if let Err(error) = interrupted.check(&mut ctx.client, &ctx.outbox, &ctx.clock, left) {
                return Ok(report.stopped(&error));
            }
            rewrite_page(ctx, &path, report)
        }
        None => report,
    };
    // Its own notifications first, then those a process that died left unsent
    // (docs/configuration.md, "Notifications").
    crate::notify::notify_recorded(&ctx.config, &mut ctx.client, &ctx.outbox, &ctx.clock);
    crate::notify::notify_left_behind(&ctx.config, &mut ctx.client, &ctx.outbox, &ctx.clock);
    // A session lost on the way: no event could be recorded (docs/exit-codes.md, 69).
    let report = match ctx.client.is_closed() {
        true => {
            let exit_code = worse_exit_code(report.exit_code, crate::error::EXIT_UNAVAILABLE);
            report.with_exit_code(exit_code)
        }
        false => report,
    };
    // With no notifier there was nothing left to do: a signal that came during the last
    // step, which finished, interrupted nothing.
    if ctx.config.defaults.notify_command.is_none() {
        return Ok(report);
    }
    // One that stopped a notifier under way included. The pass's decisions are printed
    // all the same: drains were started and runs ended, and the operator should see which.
    match interrupted.check(&mut ctx.client, &ctx.outbox, &ctx.clock, "it sent every notification") {
        Ok(()) => Ok(report),
        Err(error) => Ok(report.stopped(&error)),
    }
}

/// Rewrite the operations page after the pass, which it shows as the supervisor's
/// heartbeat. A page that cannot be written is logged and recorded as a
/// `supervise_error` event, and the pass exits with the worse of its own code and that
/// error's (78 for a missing folder), as for the metrics textfile (docs/exit-codes.md).
fn rewrite_page(ctx: &mut Context, path: &Path, report: Report) -> Report {
    let now = ctx.clock.now();
    let written = crate::report::render_page(&mut ctx.client, &ctx.config, now)
        .and_then(|html| crate::report::write_page(path, &html));
    let Err(error) = written else { return report };
    let message = format!("could not write report_html {}: {}", path.display(), error.display_scrubbed());
    log::error!("supervise: {message}");
    record_event_or_log(&mut ctx.client, &ctx.outbox, &Event::new(EventKind::SuperviseError, message), now);
    let mut exit_code = worse_exit_code(report.exit_code, error.exit_code());
    // The textfile the pass wrote before counted its errors without this one: written
    // again, `drainctl_supervisor_last_pass_errors` alerts on it (docs/operations.md). One
    // that cannot be written failed the pass's own write, recorded then: logged only.
    if let Some(textfile) = &ctx.config.defaults.metrics_textfile {
        let written = crate::metrics::render_metrics(&mut ctx.client, &ctx.config, now)
            .and_then(|text| crate::metrics::write_textfile(textfile, &text));
        if let Err(error) = written {
            log::warn!("supervise: could not write metrics_textfile {} again: {error}", textfile.display());
            exit_code = worse_exit_code(exit_code, error.exit_code());
        }
    }
    report.with_exit_code(exit_code)
}
