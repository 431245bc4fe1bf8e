//! drainctl keeps quota-bound backlog work moving.
//!
//! A *drain* is a named backlog of items in PostgreSQL plus a worker command that
//! processes one item at a time. drainctl is a one-shot CLI: each invocation opens one
//! connection, brings the schema up to date under an advisory lock, does one pass of work
//! and exits. [`run`] is the whole program: parse, resolve, dispatch, report.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod accounts;
pub mod backoff;
pub mod burst;
pub mod cli;
pub mod cli_docs;
pub mod clock;
pub mod config;
pub mod context;
pub mod controls;
pub mod db;
pub mod doctor;
pub mod drain;
pub mod duration;
pub mod enqueue;
pub mod error;
pub mod events;
pub mod forecast;
pub mod glob;
pub mod items;
pub mod metrics;
pub mod migrate;
pub mod migrate_command;
pub mod model;
pub mod notify;
pub mod output;
pub mod process;
pub mod prune;
pub mod quota;
pub mod quota_command;
pub mod ratelimit;
pub mod reap;
pub mod retry;
pub mod runs;
pub mod signals;
pub mod sources;
pub mod status;
pub mod supervise;
pub mod when;
pub mod window;
pub mod worker;

use std::ffi::OsString;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{Error, EXIT_OK, EXIT_USAGE};
use crate::output::Report;

/// Run drainctl with these arguments; returns the process exit code.
pub fn run(args: impl IntoIterator<Item = OsString>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            let is_info = matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            // clap prints help to stdout and errors to stderr.
            let _ = error.print();
            return if is_info && error.kind() != ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                EXIT_OK
            } else {
                EXIT_USAGE
            };
        }
    };
    init_logger(cli.verbose);
    match dispatch(cli) {
        Ok((report, as_json)) => {
            report.print(as_json);
            report.exit_code
        }
        Err(error) => {
            eprintln!("drainctl: {}", output::escape_controls(&error.display_scrubbed()));
            error.exit_code()
        }
    }
}

fn init_logger(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    builder.format(|buf, record| {
        use std::io::Write;
        // Worker output and item keys reach log lines: never let them forge or reorder one.
        let message = crate::error::scrub(&record.args().to_string());
        let message = crate::output::escape_controls(&message);
        writeln!(buf, "drainctl: {}: {message}", record.level().as_str().to_lowercase())
    });
    let _ = builder.try_init();
}

fn dispatch(cli: Cli) -> Result<(Report, bool), Error> {
    let lock_timeout = duration::parse_duration(&cli.lock_timeout)
        .and_then(|timeout| {
            duration::check_at_most(
                &cli.lock_timeout,
                timeout,
                db::MAX_LOCK_TIMEOUT,
                db::MAX_LOCK_TIMEOUT_TEXT,
            )
        })
        .map_err(|message| Error::Usage(format!("--lock-timeout: {message}")))?;
    let config_path = cli.config.clone();
    let open = Opening { config_path: config_path.as_deref(), lock_timeout };
    match cli.command {
        Command::Migrate(args) => {
            let as_json = args.json;
            migrate_command::run(config_path.as_deref(), lock_timeout, &args).map(|r| (r, as_json))
        }
        Command::Quota(cli::QuotaCommand::Test(args)) => {
            let as_json = args.json;
            quota_command::run(config_path.as_deref(), &args).map(|r| (r, as_json))
        }
        Command::Drain(args) => open.run(|ctx| drain::run(ctx, &args)).map(|r| (r, args.json)),
        Command::Enqueue(args) => open.run(|ctx| enqueue::run(ctx, &args)).map(|r| (r, args.json)),
        Command::Scan(args) => open.run(|ctx| sources::run(ctx, &args)).map(|r| (r, args.json)),
        Command::Supervise(args) => open.run(|ctx| supervise::run(ctx, &args)).map(|r| (r, args.json)),
        Command::Burst(command) => open.run(|ctx| burst::run(ctx, &command)),
        Command::Pause(args) => open.run(|ctx| controls::pause(ctx, &args)).map(|r| (r, args.json)),
        Command::Resume(args) => open.run(|ctx| controls::resume(ctx, &args)).map(|r| (r, args.json)),
        Command::Status(args) => open.run(status::run).map(|r| (r, args.json)),
        Command::Events(args) => open.run(|ctx| events::run(ctx, &args)).map(|r| (r, args.json)),
        Command::Runs(args) => {
            let as_json = match &args.command {
                Some(cli::RunsCommand::Show(show)) => show.json,
                None => args.json,
            };
            open.run(|ctx| runs::run(ctx, &args)).map(|r| (r, as_json))
        }
        Command::Items(args) => {
            let as_json = match &args.command {
                Some(cli::ItemsCommand::Show(show)) => show.json,
                None => args.json,
            };
            open.run(|ctx| items::run(ctx, &args)).map(|r| (r, as_json))
        }
        Command::Retry(args) => open.run(|ctx| retry::run(ctx, &args)).map(|r| (r, args.json)),
        Command::Doctor(args) => doctor::run(config_path.as_deref(), &args).map(|r| (r, args.json)),
        Command::Metrics(args) => open.run(|ctx| metrics::run(ctx, &args)).map(|r| (r, false)),
        Command::Prune(args) => open.run(|ctx| prune::run(ctx, &args)).map(|r| (r, args.json)),
        Command::Completions(args) => Ok((cli_docs::completions(&args), false)),
    }
}

/// How a database-backed command opens its context.
struct Opening<'a> {
    config_path: Option<&'a std::path::Path>,
    lock_timeout: std::time::Duration,
}

impl Opening<'_> {
    /// Open the context, run `command` in it, then notify of the events it recorded —
    /// whether the command succeeded or not.
    fn run<T>(&self, command: impl FnOnce(&mut context::Context) -> Result<T, Error>) -> Result<T, Error> {
        let mut ctx = context::Context::open(self.config_path, self.lock_timeout)?;
        let result = command(&mut ctx);
        notify::notify_recorded(&ctx.config, &mut ctx.client, &ctx.outbox, ctx.clock.now());
        result
    }
}
