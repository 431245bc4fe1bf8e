//! The subcommands, one file each: parse the arguments, call the domain, render the
//! result as a [`crate::output::Report`]. [`dispatch`] picks the file for the command line
//! and opens what it needs: most commands run in a [`Context`] (configuration, clock, one
//! migrated connection); `migrate`, `quota test`, `doctor` and `completions` open what
//! they need themselves, or nothing.

pub(crate) mod burst;
pub(crate) mod completions;
pub(crate) mod controls;
pub(crate) mod discard;
pub(crate) mod doctor;
pub(crate) mod drain;
pub(crate) mod enqueue;
pub(crate) mod events;
pub(crate) mod export;
pub(crate) mod items;
pub(crate) mod metrics;
pub(crate) mod migrate;
pub(crate) mod passes;
pub(crate) mod prune;
pub(crate) mod quota;
pub(crate) mod report;
pub(crate) mod retry;
pub(crate) mod runs;
pub(crate) mod scan;
pub(crate) mod status;
pub(crate) mod supervise;

use std::path::Path;
use std::time::Duration;

use crate::cli::{self, Cli, Command};
use crate::context::Context;
use crate::error::Result;
use crate::output::Report;

/// Run the command of `cli`; returns its report (the caller prints it as
/// [`Command::output`] says).
pub(crate) fn dispatch(cli: Cli) -> Result<Report> {
    let lock_timeout = cli.lock_timeout;
    let config_path = cli.config.clone();
    let open =
        Opening { config_path: config_path.as_deref(), lock_timeout, changes_nothing: false, writes: false };
    // A dry run changes nothing, the schema included (docs/migrations.md).
    let dry = Opening { changes_nothing: true, ..open };
    // Commands whose work is to write: refused at once on a read-only database.
    let writing = Opening { writes: true, ..open };
    match cli.command {
        Command::Migrate(args) => migrate::run(config_path.as_deref(), lock_timeout, &args),
        Command::Quota(cli::QuotaCommand::Test(args)) => quota::run(config_path.as_deref(), &args),
        Command::Drain(args) => {
            // Test hook: a drain `supervise` started waits before it reads the configuration
            // until this file exists, so that a test may edit the file in between.
            #[cfg(feature = "testing")]
            if let Ok(gate) = std::env::var("DRAINCTL_TEST_DRAIN_GATE") {
                let started = std::time::Instant::now();
                while !Path::new(&gate).exists() && started.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            writing.run(|ctx| drain::run(ctx, &args))
        }
        Command::Enqueue(args) => {
            let given = enqueue::given_item(&args)?;
            writing.run(|ctx| enqueue::run(ctx, &args, given))
        }
        Command::Scan(args) => writing.run(|ctx| scan::run(ctx, &args)),
        Command::Supervise(args) => {
            // Before the configuration is read and the schema brought up to date.
            crate::supervise::refuse_a_configuration_read_once(config_path.as_deref())?;
            match args.dry_run {
                true => dry.run(|ctx| supervise::run(ctx, &args)),
                false => writing.run(|ctx| supervise::run(ctx, &args)),
            }
        }
        Command::Burst(command @ cli::BurstCommand::Status(_)) => open.run(|ctx| burst::run(ctx, &command)),
        Command::Burst(command) => writing.run(|ctx| burst::run(ctx, &command)),
        Command::Pause(args) => writing.run(|ctx| controls::pause(ctx, &args)),
        Command::Resume(args) => writing.run(|ctx| controls::resume(ctx, &args)),
        Command::Status(_) => open.run(status::run),
        Command::Events(args) => open.run(|ctx| events::run(ctx, &args)),
        Command::Runs(args) => open.run(|ctx| runs::run(ctx, &args)),
        Command::Passes(args) => open.run(|ctx| passes::run(ctx, &args)),
        Command::Items(args) => open.run(|ctx| items::run(ctx, &args)),
        Command::Retry(args) => writing.run(|ctx| retry::run(ctx, &args)),
        Command::Discard(args) if args.dry_run => dry.run(|ctx| discard::run(ctx, &args)),
        Command::Discard(args) => writing.run(|ctx| discard::run(ctx, &args)),
        Command::Export(args) => open.run(|ctx| export::run(ctx, &args)),
        Command::Doctor(args) => doctor::run(config_path.as_deref(), &args),
        Command::Metrics(args) => open.run(|ctx| metrics::run(ctx, &args)),
        Command::Prune(args) if args.dry_run => dry.run(|ctx| prune::run(ctx, &args)),
        Command::Prune(args) => writing.run(|ctx| prune::run(ctx, &args)),
        Command::Report(args) => open.run(|ctx| report::run(ctx, &args)),
        Command::Completions(args) => Ok(completions::run(&args)),
    }
}

/// How a database-backed command opens its context.
#[derive(Clone, Copy)]
struct Opening<'a> {
    config_path: Option<&'a Path>,
    lock_timeout: Duration,
    /// A dry run: refused while migrations are due, which it would otherwise apply.
    changes_nothing: bool,
    /// The command writes: on a read-only database (a standby, `default_transaction_read_only`)
    /// it is refused with one line before it does anything (exit 69).
    writes: bool,
}

impl Opening<'_> {
    /// Open the context, run `command` in it, then notify of the events it recorded —
    /// whether the command succeeded or not.
    fn run<T>(&self, command: impl FnOnce(&mut Context) -> Result<T>) -> Result<T> {
        let mut ctx = Context::open(self.config_path, self.lock_timeout, self.changes_nothing)?;
        if self.writes {
            crate::db::refuse_when_read_only(&mut ctx.client)?;
        }
        let result = command(&mut ctx);
        crate::notify::notify_recorded(&ctx.config, &mut ctx.client, &ctx.outbox, &ctx.clock);
        result
    }
}
