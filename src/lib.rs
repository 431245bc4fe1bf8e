//! drainctl keeps quota-bound backlog work moving.
//!
//! A *drain* is a named backlog of items in PostgreSQL plus a worker command that
//! processes one item at a time. drainctl is a one-shot CLI: each invocation opens one
//! connection, brings the schema up to date under an advisory lock, does one pass of work
//! and exits. [`run`] is the whole program: parse, resolve, dispatch (see `commands`),
//! report.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub(crate) mod accounts;
pub(crate) mod atomic_file;
pub(crate) mod backoff;
pub(crate) mod cli;
pub mod cli_docs;
pub(crate) mod clock;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod db;
pub(crate) mod drain;
pub(crate) mod duration;
pub(crate) mod error;
#[cfg(test)]
mod fixtures;
pub(crate) mod glob;
pub(crate) mod hashing;
pub(crate) mod metrics;
pub(crate) mod migrate;
pub(crate) mod model;
pub(crate) mod notify;
pub(crate) mod output;
pub(crate) mod priority;
pub(crate) mod prune;
pub(crate) mod quota;
pub(crate) mod ratelimit;
pub(crate) mod reap;
pub(crate) mod report;
pub(crate) mod schedule;
pub(crate) mod sources;
pub(crate) mod supervise;
pub(crate) mod usage;
pub(crate) mod worker;

use std::ffi::OsString;

use clap::Parser;

use crate::cli::Cli;
use crate::error::{Error, EXIT_OK, EXIT_USAGE};

/// Run drainctl with these arguments; returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let mut cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => return parse_failed(&error),
    };
    // A pass writing to its own log file dates its log lines, and logs its summary.
    let (log_file, verbose) = match &cli.command {
        cli::Command::Supervise(args) => {
            (args.log_file.as_deref(), cli.verbose.max(u8::from(args.log_file.is_some())))
        }
        cli::Command::Drain(args) => (args.log_file.as_deref(), cli.verbose),
        _ => (None, cli.verbose),
    };
    init_logger(verbose, log_file.is_some());
    output::set_dated_lines(log_file.is_some());
    if let (cli::Command::Supervise(_), Some(path)) = (&cli.command, log_file) {
        if let Err(error) = output::redirect_stdio_to_log_file(path) {
            return failed(&error);
        }
        log::info!("supervise started as pid {}", std::process::id());
    }
    if let cli::Command::Drain(args) = &mut cli.command {
        claim_drain_log(args);
    }
    let output = cli.command.output();
    match commands::dispatch(cli) {
        Ok(report) => {
            report.print(output.json);
            report.exit_code
        }
        Err(error) => failed(&error),
    }
}

/// A drain `supervise` started writes to a log file named after supervise's pid until
/// one of them renames it after the drain's own pid; the run records the renamed path
/// (see `drain::log_file`). A rename that fails leaves the name, with a warning.
fn claim_drain_log(args: &mut cli::DrainArgs) {
    let Some(path) = args.log_file.take() else { return };
    let pid = std::process::id();
    args.log_file = Some(drain::log_file::rename_after(&path, pid).unwrap_or_else(|error| {
        log::warn!("cannot rename log file {} after drain pid {pid}: {error}", path.display());
        path
    }));
}

/// Report a failure on stderr, in one line; returns its exit code.
fn failed(error: &Error) -> u8 {
    eprintln!("{}drainctl: {}", output::line_date(), output::escape_controls(&error.display_scrubbed()));
    error.exit_code()
}

/// The command line did not parse, or asked for help or the version: clap prints help to
/// stdout and its errors to stderr; a value one of our parsers refused is reported like
/// every other error, `drainctl: --flag: message`. Help and version exit 0, the rest 64.
fn parse_failed(error: &clap::Error) -> u8 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use std::error::Error as _;
    let invalid = error.source().and_then(|source| source.downcast_ref::<cli::InvalidValue>());
    if let (ErrorKind::ValueValidation, Some(invalid)) = (error.kind(), invalid) {
        let flag = match error.get(ContextKind::InvalidArg) {
            // "--lock-timeout <DURATION>"
            Some(ContextValue::String(arg)) => arg.split_whitespace().next().unwrap_or_default().to_string(),
            _ => String::new(),
        };
        return failed(&Error::Usage(format!("{flag}: {invalid}")));
    }
    let is_info = matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    let _ = error.print();
    if is_info {
        EXIT_OK
    } else {
        EXIT_USAGE
    }
}

/// Log lines go to stderr as `drainctl: LEVEL: message`; with `is_dated` (a pass writing to
/// its own log file), prefixed with the UTC time.
fn init_logger(verbosity: u8, is_dated: bool) {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    builder.format(move |buf, record| {
        use std::io::Write;
        // Worker output and item keys reach log lines: never let them forge or reorder one.
        let message = crate::error::scrub(&record.args().to_string());
        let message = crate::output::escape_controls(&message);
        let level = record.level().as_str().to_lowercase();
        if is_dated {
            writeln!(buf, "{} drainctl: {level}: {message}", crate::output::utc_now_stamp())
        } else {
            writeln!(buf, "drainctl: {level}: {message}")
        }
    });
    let _ = builder.try_init();
}
