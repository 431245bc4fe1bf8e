//! The command line, as clap derive types. Fields hold what the user typed; checking and
//! converting (durations, zones, times) happens in the commands' resolve steps.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::{ItemState, Trigger};

#[derive(Debug, Parser)]
#[command(
    name = "drainctl",
    version,
    about = "Keeps quota-bound backlog work moving: one-shot passes over drains of work items in PostgreSQL",
    propagate_version = true,
    color = clap::ColorChoice::Never
)]
pub struct Cli {
    /// Configuration file [default: $DRAINCTL_CONFIG, ./drainctl.toml, /etc/drainctl/drainctl.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Wait at most this long (up to 24d) for the migration lock before giving up with exit 75
    #[arg(long, global = true, value_name = "DURATION", default_value = "60s")]
    pub lock_timeout: String,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply missing database migrations (every command also does this first)
    Migrate(MigrateArgs),
    /// Run one pass of one drain: claim items and run the worker on each
    Drain(DrainArgs),
    /// Add items to a drain's backlog
    Enqueue(EnqueueArgs),
    /// Enqueue the new and changed files of a drain's source; settle vanished ones
    Scan(NameArg),
    /// One supervisor pass over every drain: reap, kill hung runs, start idle drains
    Supervise(SuperviseArgs),
    /// Run a drain flat out until a deadline, regardless of its window
    #[command(subcommand)]
    Burst(BurstCommand),
    /// Stop a drain from starting new items until `resume`
    Pause(PauseArgs),
    /// Undo `pause`
    Resume(NameArg),
    /// Show every drain: state, backlog, burst, backoff, last run
    Status(JsonArg),
    /// Tools for rate-limit classification
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Show recorded events, newest first
    Events(EventsArgs),
    /// List runs (passes of drains), newest first; `runs show ID` for one
    Runs(RunsArgs),
    /// List a drain's items; `items show NAME KEY` for one
    Items(ItemsArgs),
    /// Put dead items (or one dead or pending item) back to pending, attempts reset, available now
    Retry(RetryArgs),
    /// Check configuration, database, schema, workers, folders and clock
    Doctor(DoctorArgs),
    /// Print Prometheus metrics, or write them to a node_exporter textfile
    Metrics(MetricsArgs),
    /// Remove runs, events, logs (and done items) older than [defaults] retention
    Prune(PruneArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Drain name
    pub name: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// List every migration version and whether it is applied; change nothing
    #[arg(long, conflicts_with_all = ["dry_run", "repair_checksum"])]
    pub status: bool,
    /// Print what would be applied; change nothing
    #[arg(long, conflicts_with = "repair_checksum")]
    pub dry_run: bool,
    /// Accept the current file's checksum for an applied migration (after a harmless edit)
    #[arg(long, value_name = "VERSION")]
    pub repair_checksum: Option<i32>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Drain name
    pub name: String,
    /// Who started this pass (recorded on the run)
    #[arg(long, value_enum, default_value = "manual")]
    pub trigger: Trigger,
    /// Log file this pass writes to (recorded on the run; set by `supervise`)
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Drain name
    pub name: String,
    /// Key of a single item (with --payload); unique within the drain
    #[arg(long, requires = "payload", conflicts_with = "file")]
    pub key: Option<String>,
    /// JSON payload of a single item (with --key)
    #[arg(long, requires = "key")]
    pub payload: Option<String>,
    /// Read JSON lines ({"key": ..., "payload": ...}) from this file instead of stdin
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Reset an already finished (done, dead or skipped_missing) item with the same key to pending
    #[arg(long)]
    pub replace: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Print the decisions and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The cron slot this pass belongs to (RFC 3339); default: now rounded down to 15 minutes
    #[arg(long, value_name = "TIME")]
    pub slot: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BurstCommand {
    /// Start (or move) a burst: the drain runs continuously until the deadline
    On(BurstOnArgs),
    /// End a burst now
    Off(NameArg),
    /// Show bursts (all drains, or one)
    Status(BurstStatusArgs),
}

#[derive(Debug, Args)]
pub struct BurstOnArgs {
    /// Drain name
    pub name: String,
    /// Deadline: "sat 18:00", "18:00", "2026-11-28 18:00", RFC 3339, or "+6h" [default: burst_default_until]
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Why (shown in status and events)
    #[arg(long)]
    pub note: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BurstStatusArgs {
    /// Drain name (default: every drain)
    pub name: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Drain name
    pub name: String,
    /// Why (shown in status and events)
    #[arg(long)]
    pub note: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Classify worker output read from stdin and print the parsed reset time
    Test(QuotaTestArgs),
}

#[derive(Debug, Args)]
pub struct QuotaTestArgs {
    /// Pattern profile: claude, openai, gemini or http
    #[arg(long, default_value = "claude")]
    pub profile: String,
    /// Time zone for clock times without a zone [default: the configured one]
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// When the output was printed (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Exit code of the worker, if known
    #[arg(long)]
    pub exit_code: Option<i32>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Most rows a list command prints.
pub const MAX_LIST_LIMIT: i64 = 10_000;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this drain
    #[arg(long, value_name = "NAME")]
    pub drain: Option<String>,
    /// Only events from the last DURATION (e.g. "1d", "6h"; at most 36500d)
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only events of this kind (e.g. item_dead_lettered)
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Show at most this many events
    #[arg(
        long,
        value_name = "N",
        default_value = "50",
        value_parser = clap::value_parser!(i64).range(1..=MAX_LIST_LIMIT)
    )]
    pub limit: i64,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Only runs of this drain
    #[arg(long, value_name = "NAME")]
    pub drain: Option<String>,
    /// Show at most this many runs
    #[arg(
        long,
        value_name = "N",
        default_value = "20",
        value_parser = clap::value_parser!(i64).range(1..=MAX_LIST_LIMIT)
    )]
    pub limit: i64,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Everything recorded about one run
    Show(RunsShowArgs),
}

#[derive(Debug, Args)]
pub struct RunsShowArgs {
    /// Run id (from `drainctl runs`)
    pub id: i64,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ItemsArgs {
    #[command(subcommand)]
    pub command: Option<ItemsCommand>,
    /// Drain name
    #[arg(required = true)]
    pub name: Option<String>,
    /// Only items in this state
    #[arg(long, value_enum)]
    pub state: Option<ItemState>,
    /// Show at most this many items
    #[arg(
        long,
        value_name = "N",
        default_value = "50",
        value_parser = clap::value_parser!(i64).range(1..=MAX_LIST_LIMIT)
    )]
    pub limit: i64,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ItemsCommand {
    /// Everything recorded about one item, with its attempt history
    Show(ItemsShowArgs),
}

#[derive(Debug, Args)]
pub struct ItemsShowArgs {
    /// Drain name
    pub name: String,
    /// Item key
    pub key: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Drain name
    pub name: String,
    /// Retry every dead item of the drain
    #[arg(long, required_unless_present = "key", conflicts_with = "key")]
    pub dead: bool,
    /// Retry this one item (dead or pending)
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Count what would be removed; remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write to this textfile atomically instead of stdout; without PATH, to [defaults] metrics_textfile
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<Option<PathBuf>>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}
