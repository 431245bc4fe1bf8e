//! The command line, as clap derive types. Values are typed as they are parsed: durations,
//! instants, time zones and quota profiles go through the value parsers at the end of this
//! file, whose [`InvalidValue`] messages `run` reports as usage errors (exit 64) naming
//! the flag. What needs the configuration (a drain name, `--until`) is checked by the
//! command.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::{ItemState, Trigger};
use crate::quota::Profile;

/// `--version`: the release and the schema version it migrates to, so an operator can
/// tell which binary goes with which database (a test keeps the number right).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (schema 19)");

#[derive(Debug, Parser)]
#[command(
    name = "drainctl",
    version = VERSION,
    about = "Keeps quota-bound backlog work moving: one-shot passes over drains of work items in PostgreSQL",
    propagate_version = true,
    color = clap::ColorChoice::Never,
    // No styling in the text clap renders: an error keeps the words as typed, escape
    // sequences included, for drainctl to escape (a styled render strips them).
    styles = clap::builder::styling::Styles::plain()
)]
pub struct Cli {
    /// Configuration file [default: $DRAINCTL_CONFIG, ./drainctl.toml, /etc/drainctl/drainctl.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Wait at most this long (up to 24d) for the migration lock, and for the locks of the
    /// tables a due migration alters, before giving up with exit 75
    #[arg(long, global = true, value_name = "DURATION", default_value = "60s", value_parser = lock_timeout)]
    pub lock_timeout: Duration,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides, and alone shows the
    /// database driver's debug lines, which quote every parameter (payloads, results)
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
    Scan(ScanArgs),
    /// One supervisor pass over every drain: reap, kill hung runs, start idle drains
    Supervise(SuperviseArgs),
    /// Run a drain flat out until a deadline, regardless of its window
    #[command(subcommand)]
    Burst(BurstCommand),
    /// Stop a drain from starting new items until `resume`
    Pause(PauseArgs),
    /// Undo `pause`; with `--group`, clear a parked quota group
    Resume(ResumeArgs),
    /// Show every drain: state, backlog, burst, backoff, last run
    Status(OutputArgs),
    /// Tools for rate-limit classification
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Show recorded events, newest first
    Events(EventsArgs),
    /// List runs (passes of drains), newest first; `runs show ID` for one
    Runs(RunsArgs),
    /// The supervise history, newest first: each pass's decisions (what it started,
    /// ended and skipped, and why), errors and duration
    Passes(PassesArgs),
    /// List a drain's items; `items show NAME KEY` for one
    Items(ItemsArgs),
    /// Put dead items (or one dead or pending item) back to pending, attempts reset, available now
    Retry(RetryArgs),
    /// Delete items with their attempts and results: one by key, every dead one, or all of a
    /// drain being retired (items a running pass holds are left alone)
    Discard(DiscardArgs),
    /// Write a drain's items with their results and cost as JSON lines or CSV, streamed
    Export(ExportArgs),
    /// Check configuration, database, schema, workers, folders and clock
    Doctor(DoctorArgs),
    /// Print Prometheus metrics, or write them to a node_exporter textfile
    Metrics(MetricsArgs),
    /// Write the operations page: one self-contained HTML file with every drain's state,
    /// charts and cost, readable offline
    Report(ReportArgs),
    /// Remove runs, events, logs (and done items) older than [defaults] retention
    Prune(PruneArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
}

/// `--json`, of every command that has a JSON form (docs/json.md).
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// How this command's result is printed: the `--json` of the command (or subcommand)
    /// given; `metrics` and `completions` print text only.
    pub fn output(&self) -> OutputArgs {
        match self {
            Command::Migrate(args) => args.output,
            Command::Drain(args) => args.output,
            Command::Enqueue(args) => args.output,
            Command::Scan(args) => args.output,
            Command::Resume(args) => args.output,
            Command::Supervise(args) => args.output,
            Command::Burst(BurstCommand::On(args)) => args.output,
            Command::Burst(BurstCommand::Off(args)) => args.output,
            Command::Burst(BurstCommand::Status(args)) => args.output,
            Command::Pause(args) => args.output,
            Command::Status(output) => *output,
            Command::Quota(QuotaCommand::Test(args)) => args.output,
            Command::Events(args) => args.output,
            Command::Runs(RunsArgs { command: Some(RunsCommand::Show(show)), .. }) => show.output,
            Command::Runs(args) => args.output,
            Command::Passes(args) => args.output,
            Command::Items(ItemsArgs { command: Some(ItemsCommand::Show(show)), .. }) => show.output,
            Command::Items(args) => args.output,
            Command::Retry(args) => args.output,
            Command::Discard(args) => args.output,
            Command::Doctor(args) => args.output,
            Command::Prune(args) => args.output,
            Command::Metrics(_) | Command::Report(_) | Command::Completions(_) | Command::Export(_) => {
                OutputArgs::default()
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Drain name
    pub name: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Drain name
    pub name: String,
    /// Hash every file whole now, ignoring the source's max_hash_bytes_per_scan and
    /// max_hash_seconds_per_scan (for a file larger than the budget, without waiting for
    /// the scans that would hash it bit by bit)
    #[arg(long)]
    pub no_budget: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// List every migration version and whether it is applied; change nothing
    #[arg(long, conflicts_with_all = ["dry_run", "repair_checksum", "repair_counts"])]
    pub status: bool,
    /// Print what would be applied; change nothing
    #[arg(long, conflicts_with_all = ["repair_checksum", "repair_counts"])]
    pub dry_run: bool,
    /// Accept the current file's checksum for an applied migration (after a harmless edit)
    #[arg(long, value_name = "VERSION", conflicts_with = "repair_counts", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub repair_checksum: Option<i32>,
    /// Count every drain's items again and set the kept per-state counts right (after a
    /// trigger on `items` was disabled or dropped by hand; writers wait for the count)
    #[arg(long)]
    pub repair_counts: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    /// Drain name
    pub name: String,
    /// Who started this pass (recorded on the run)
    #[arg(long, value_enum, default_value = "manual")]
    pub trigger: Trigger,
    /// Append this pass's output and dated log lines to PATH (created owner-only, with its
    /// folder), as `supervise` sets it: a `YYYYmmddTHHMMSSZ-PID.log` name is renamed (or
    /// created) after this process's pid, and the run records the path (so it must be UTF-8)
    #[arg(long, value_name = "PATH", value_parser = clap::builder::NonEmptyStringValueParser::new().map(PathBuf::from))]
    pub log_file: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    /// Drain name
    pub name: String,
    /// Key of a single item (with --payload); unique within the drain. A key (here or in a
    /// line) is 1 to 1024 bytes of printed text: one with a control character (a newline, a
    /// tab, an escape) is refused with exit 65. A key that is one of this command's options
    /// (`--replace`) is given as --key=--replace
    #[arg(long, requires = "payload", conflicts_with = "file", allow_hyphen_values = true)]
    pub key: Option<String>,
    /// JSON payload of a single item (with --key)
    #[arg(long, requires = "key", allow_hyphen_values = true)]
    pub payload: Option<String>,
    /// Read JSON lines ({"key": ..., "payload": ...}) from this file instead of stdin (`-`: stdin; read from a terminal, it first says how to end the input; a named pipe is read once a writer opens it, said first; a path through another user's symbolic link is refused, 64)
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Reset an already finished (done, dead or skipped_missing) item with the same key to pending
    /// with the new payload; an item not finished (pending, running) keeps its payload and counts as a
    /// duplicate. Without it, a finished item given again stays finished and the output says how many
    /// of the duplicates are
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// Print the decisions and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// The cron slot this pass belongs to (RFC 3339); default: now rounded down to `supervise_interval` (15 minutes unless set) on the wall clock of `[defaults] timezone`, counted as cron counts its steps: an interval under an hour from the hour (`7m`: 11:00, 11:07, … 11:56, 12:00), one under a day from midnight
    #[arg(long, value_name = "TIME", value_parser = instant)]
    pub slot: Option<DateTime<Utc>>,
    /// Append this pass's output and dated log lines to PATH (created owner-only, with its
    /// folder) instead of stdout and stderr: a crontab line that works on a fresh machine
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
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
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Why (shown in status and events); moving a burst keeps its note, `--note ""` clears it
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct BurstStatusArgs {
    /// Drain name (default: every drain)
    pub name: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Drain name
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub name: Option<String>,
    /// Every configured drain (a maintenance switch)
    #[arg(long)]
    pub all: bool,
    /// Why (shown in status and events)
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["name", "all", "group"])))]
pub struct ResumeArgs {
    /// Drain name: undo its `pause`
    pub name: Option<String>,
    /// Every configured drain
    #[arg(long, conflicts_with_all = ["name", "group"])]
    pub all: bool,
    /// Clear the park of this quota group (set by a hit that needs attention) once the
    /// cause is fixed
    #[arg(long, value_name = "GROUP", conflicts_with = "name")]
    pub group: Option<String>,
    /// With --group: also end every backoff of the group now, on every account, when you
    /// know its limit is over (a reset stated far off by one item's output, a vendor that
    /// reset early)
    #[arg(long, conflicts_with_all = ["name", "all"])]
    pub clear_backoff: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Classify worker output read from stdin and print the parsed reset time
    Test(QuotaTestArgs),
}

#[derive(Debug, Args)]
pub struct QuotaTestArgs {
    /// Read the output as this drain does: its quota_profile, quota_patterns,
    /// veto_patterns, the TZ of its env (or of its quota group's account's), and its
    /// command's arguments as input
    #[arg(long, value_name = "NAME")]
    pub drain: Option<String>,
    /// With --drain: the account of its quota group the output was printed on, whose env's
    /// TZ reads clock times [default: the group's first account]
    #[arg(long, value_name = "NAME", requires = "drain")]
    pub account: Option<String>,
    /// Pattern profile: claude, openai, gemini or http [default: the drain's, else claude]
    #[arg(long, value_parser = profile)]
    pub profile: Option<Profile>,
    /// The payload the worker was given on stdin: a line of output that only repeats it is
    /// not the client's message
    #[arg(long, value_name = "FILE")]
    pub input: Option<std::path::PathBuf>,
    /// The worker's stderr, when stdin holds its stdout alone: a client whose verdict reads
    /// the two apart (gemini's `[ERROR]` line beside its answer)
    #[arg(long, value_name = "FILE")]
    pub stderr: Option<std::path::PathBuf>,
    /// Time zone for clock times without a zone [default: the drain's TZ, else the
    /// configured one]
    #[arg(long, value_name = "ZONE", value_parser = zone)]
    pub tz: Option<Tz>,
    /// When the output was printed (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME", value_parser = instant)]
    pub now: Option<DateTime<Utc>>,
    /// Exit code of the worker, if known (0 to 255; 128+N for a death by signal N)
    #[arg(long, value_name = "CODE", value_parser = exit_status, allow_negative_numbers = true)]
    pub exit_code: Option<i32>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Most rows a list command prints.
pub const MAX_LIST_LIMIT: i64 = 10_000;

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events of this drain
    #[arg(long, value_name = "NAME")]
    pub drain: Option<String>,
    /// Only events of this quota group: its own (backoffs set and cleared, parks) and its
    /// drains' (as the configuration assigns them)
    #[arg(long, value_name = "NAME", conflicts_with = "drain")]
    pub group: Option<String>,
    /// Only events from the last DURATION (e.g. "1d", "6h"; at most 36500d)
    #[arg(long, value_name = "DURATION", value_parser = bounded_duration)]
    pub since: Option<Duration>,
    /// Only events of this kind (e.g. item_dead_lettered)
    #[arg(long, value_name = "KIND", value_parser = event_kind)]
    pub kind: Option<String>,
    /// Show at most this many events (1 to 10000)
    #[arg(
        long,
        value_name = "N",
        default_value = "50",
        allow_negative_numbers = true,
        value_parser = list_limit
    )]
    pub limit: i64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    pub command: Option<RunsCommand>,
    /// Only runs of this drain
    #[arg(long, value_name = "NAME")]
    pub drain: Option<String>,
    /// Show at most this many runs (1 to 10000)
    #[arg(
        long,
        value_name = "N",
        default_value = "20",
        allow_negative_numbers = true,
        value_parser = list_limit
    )]
    pub limit: i64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct PassesArgs {
    /// Show at most this many passes (1 to 10000)
    #[arg(long, value_name = "N", default_value = "20", allow_negative_numbers = true, value_parser = list_limit)]
    pub limit: i64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Everything recorded about one run
    Show(RunsShowArgs),
}

#[derive(Debug, Args)]
pub struct RunsShowArgs {
    /// Run id (from `drainctl runs`)
    #[arg(allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(1..))]
    pub id: i64,
    #[command(flatten)]
    pub output: OutputArgs,
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
    /// Show at most this many items (1 to 10000)
    #[arg(
        long,
        value_name = "N",
        default_value = "50",
        allow_negative_numbers = true,
        value_parser = list_limit
    )]
    pub limit: i64,
    #[command(flatten)]
    pub output: OutputArgs,
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
    #[command(flatten)]
    pub output: OutputArgs,
}

// Either `--dead` or `--key KEY`: the error for neither names both.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("items").required(true).args(["dead", "key"])))]
pub struct RetryArgs {
    /// Drain name
    pub name: String,
    /// Retry every dead item of the drain
    #[arg(long)]
    pub dead: bool,
    /// Retry this one item (dead or pending)
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    pub key: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

// One of `--key KEY`, `--dead`, `--all`: the error for none names them.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("items").required(true).args(["key", "dead", "all"])))]
pub struct DiscardArgs {
    /// Drain name (also one that has left the configuration)
    pub name: String,
    /// Discard this one item, in any state but running under a running pass
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    pub key: Option<String>,
    /// Discard every dead item of the drain
    #[arg(long)]
    pub dead: bool,
    /// Discard every item of the drain: pending, dead and done (to retire the drain)
    #[arg(long)]
    pub all: bool,
    /// Say what would be discarded; change nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Drain name
    pub name: String,
    /// Only items in this state
    #[arg(long, value_enum)]
    pub state: Option<ItemState>,
    /// Only items that finished at or after WHEN: a duration ago ("7d", "6h") or an RFC 3339
    /// instant; pending and running items have not finished and are left out
    #[arg(long, value_name = "WHEN", value_parser = since)]
    pub since: Option<Since>,
    /// Only items whose id is above ID: resume after the last item a previous export wrote
    // A negative id is refused by its range, not read as an option (docs/exit-codes.md).
    #[arg(long, value_name = "ID", allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(0..))]
    pub after_id: Option<i64>,
    /// jsonl: one JSON object a line; csv: a header line, then one record an item
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// With --format csv: leave out the header line, to append a resumed export (--after-id) to a file that has it
    #[arg(long)]
    pub no_header: bool,
    /// Write to this file (created owner-only, replaced atomically when complete) instead of stdout (`-`: stdout)
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// How `export` writes items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// `export --since`: a length of time back from now, or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Ago(Duration),
    At(DateTime<Utc>),
}

impl Since {
    /// The instant it names, `now` being now.
    pub fn instant(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::Ago(duration) => crate::clock::earlier(now, duration),
            Since::At(at) => at,
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Look workers up as cron starts them: on cron's minimal PATH (/usr/bin:/bin), or the
    /// crontab's `--cron-path`, unless a drain's `env` sets PATH
    #[arg(long)]
    pub cron: bool,
    /// The PATH your crontab sets (e.g. /usr/local/bin:/usr/bin:/bin); implies --cron
    #[arg(long, value_name = "PATH")]
    pub cron_path: Option<std::ffi::OsString>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Count what would be removed; remove nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write to this textfile atomically instead of stdout (`-`: stdout); without PATH, to [defaults]
    /// metrics_textfile
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<Option<PathBuf>>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Write the page to FILE atomically (owner-only) instead of stdout (`-`: stdout); without
    /// FILE, to [defaults] report_html
    #[arg(long, value_name = "FILE")]
    pub html: Option<Option<PathBuf>>,
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

/// A flag value that does not parse; the message names the value and says what to write.
/// `run` prints it as `drainctl: --flag: message` and exits 64.
#[derive(Debug)]
pub struct InvalidValue(pub String);

impl std::fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidValue {}

/// Why a value that is one of the command's options was refused.
pub fn option_as_value(flag: &str, text: &str) -> String {
    format!(
        "{text:?} is an option of this command, not a value: the value is missing (quote a variable that \
         may be empty: {flag} \"$VALUE\"; a value that is an option's name is given as {flag}={text})"
    )
}

/// `--key`/`--payload` given, as a separate word, one of the options of the command the
/// words name (`enqueue docs --key --replace --payload 1`: an unquoted empty variable),
/// and that option. `--key=--replace` is the key `--replace`.
pub fn option_taken_as_value(args: &[std::ffi::OsString]) -> Option<(String, String)> {
    use clap::CommandFactory;
    // A word that is not UTF-8 keeps its place (as no option): `--key $'k\xff' --payload 1`
    // is a key that clap refuses as not UTF-8, not `--key --payload`.
    let words: Vec<&str> = args.iter().skip(1).map(|arg| arg.to_str().unwrap_or("")).collect();
    // Most invocations (every `supervise` and `drain`) have neither: no command to build.
    if !words.iter().any(|word| matches!(*word, "--key" | "--payload")) {
        return None;
    }
    let root = Cli::command();
    let command = words.iter().find_map(|word| root.find_subcommand(word)).unwrap_or(&root);
    let options: Vec<String> = root
        .get_arguments()
        .chain(command.get_arguments())
        .flat_map(|arg| {
            let long = arg.get_long().map(|long| format!("--{long}"));
            let short = arg.get_short().map(|short| format!("-{short}"));
            long.into_iter().chain(short)
        })
        .chain(["--help".to_string(), "-h".to_string()])
        .collect();
    let end = words.iter().position(|word| *word == "--").unwrap_or(words.len());
    words[..end].windows(2).find_map(|pair| {
        let takes_hyphen_values = matches!(pair[0], "--key" | "--payload");
        (takes_hyphen_values && options.iter().any(|option| option == pair[1]))
            .then(|| (pair[0].to_string(), pair[1].to_string()))
    })
}

/// `--lock-timeout`: a duration of at most [`crate::db::MAX_LOCK_TIMEOUT`].
fn lock_timeout(text: &str) -> Result<Duration, InvalidValue> {
    refuse_a_sign_of(text, "a lock wait")?;
    let timeout = crate::duration::parse_duration(text).map_err(InvalidValue)?;
    crate::duration::check_at_most(
        text,
        timeout,
        crate::db::MAX_LOCK_TIMEOUT,
        crate::db::MAX_LOCK_TIMEOUT_TEXT,
    )
    .map_err(InvalidValue)
}

/// A duration of at most [`crate::duration::MAX_DURATION`] (docs/configuration.md#durations).
fn bounded_duration(text: &str) -> Result<Duration, InvalidValue> {
    refuse_a_sign(text)?;
    crate::duration::parse_bounded_duration(text).map_err(InvalidValue)
}

/// A length of time back from now written with a sign (`-1d`, `+6h`): the sign is refused
/// with the value meant, not read as an option or as a wrong instant.
pub fn refuse_a_sign(text: &str) -> Result<(), InvalidValue> {
    refuse_a_sign_of(text, "a time back from now")
}

/// A duration (`what`) written with a sign: refused, naming the value meant.
pub fn refuse_a_sign_of(text: &str, what: &str) -> Result<(), InvalidValue> {
    let trimmed = text.trim();
    let Some(unsigned) = trimmed.strip_prefix(['-', '+']) else { return Ok(()) };
    match crate::duration::parse_bounded_duration(unsigned) {
        Ok(_) => Err(InvalidValue(format!(
            "invalid duration {text:?}: {what} has no sign: use {:?}",
            unsigned.trim()
        ))),
        Err(_) => Ok(()),
    }
}

/// How many rows a list shows: a whole number from 1 to [`MAX_LIST_LIMIT`].
fn list_limit(text: &str) -> Result<i64, InvalidValue> {
    text.trim().parse::<i64>().ok().filter(|limit| (1..=MAX_LIST_LIMIT).contains(limit)).ok_or_else(|| {
        InvalidValue(format!("invalid limit {text:?}: use a whole number from 1 to {MAX_LIST_LIMIT}"))
    })
}

/// An RFC 3339 instant, in UTC.
fn instant(text: &str) -> Result<DateTime<Utc>, InvalidValue> {
    crate::clock::parse_rfc3339(text).map_err(|_| {
        InvalidValue(format!("invalid instant {text:?}: use RFC 3339, e.g. 2026-11-27T10:00:00Z"))
    })
}

/// `--since`: a duration ("7d") or an RFC 3339 instant.
fn since(text: &str) -> Result<Since, InvalidValue> {
    refuse_a_sign(text)?;
    let not_a_duration = match crate::duration::parse_bounded_duration(text) {
        Ok(duration) => return Ok(Since::Ago(duration)),
        Err(why) => why,
    };
    crate::clock::parse_rfc3339(text).map(Since::At).map_err(|_| {
        // Digits and units only: meant as a duration, and what is wrong with it says more.
        if text.trim().starts_with(|c: char| c.is_ascii_digit()) && !text.contains(['-', ':']) {
            return InvalidValue(not_a_duration);
        }
        InvalidValue(format!(
            "{text:?} is neither a duration such as 7d or 6h nor an RFC 3339 instant such as 2026-11-27T10:00:00Z"
        ))
    })
}

/// An event kind drainctl records (docs/configuration.md lists them).
fn event_kind(text: &str) -> Result<String, InvalidValue> {
    let kind: crate::model::EventKind =
        text.trim().parse().map_err(|error| InvalidValue(format!("{error}")))?;
    Ok(kind.as_str().to_string())
}

/// An IANA time zone name.
fn zone(text: &str) -> Result<Tz, InvalidValue> {
    crate::config::parse_zone(text).map_err(InvalidValue)
}

/// A process's exit status as a shell shows it: 0 to 255.
fn exit_status(text: &str) -> Result<i32, InvalidValue> {
    match text.trim().parse::<i32>() {
        Ok(code) if (0..=255).contains(&code) => Ok(code),
        _ => Err(InvalidValue(format!(
            "invalid exit code {text:?}: a process exits with 0 to 255 (128+N when signal N ended it)"
        ))),
    }
}

/// A quota pattern profile name.
fn profile(text: &str) -> Result<Profile, InvalidValue> {
    text.parse().map_err(InvalidValue)
}

/// `-` as a file argument: standard input or output, never a file of that name.
pub fn is_standard_stream(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn values_are_typed_as_they_are_parsed() {
        let cli = Cli::try_parse_from([
            "drainctl",
            "--lock-timeout",
            "1m30s",
            "quota",
            "test",
            "--profile",
            "OpenAI",
            "--tz",
            "Asia/Jerusalem",
            "--now",
            "2026-11-27T12:00:00+02:00",
        ])
        .unwrap();
        assert_eq!(cli.lock_timeout, Duration::from_secs(90));
        let Command::Quota(QuotaCommand::Test(args)) = cli.command else { panic!("not quota test") };
        assert_eq!(args.profile, Some(Profile::OpenAi));
        assert_eq!(args.tz, Some(chrono_tz::Asia::Jerusalem));
        assert_eq!(args.now.map(|at| at.to_rfc3339()), Some("2026-11-27T10:00:00+00:00".to_string()));
    }

    #[test]
    fn a_refused_value_says_what_to_write() {
        for (args, expected) in [
            (&["--lock-timeout", "25d", "status"][..], "\"25d\" is too long; the largest allowed is 24d"),
            (&["events", "--since", "yesterday"], "invalid duration \"yesterday\""),
            (&["supervise", "--slot", "10:15"], "invalid instant \"10:15\": use RFC 3339"),
            (&["quota", "test", "--tz", "Mars"], "unknown time zone \"Mars\""),
            (&["quota", "test", "--profile", "nope"], "unknown quota profile \"nope\""),
            (&["passes", "--limit", "0"], "invalid limit \"0\": use a whole number from 1 to 10000"),
            (&["passes", "--limit", "-3"], "invalid limit \"-3\": use a whole number"),
            (&["passes", "--limit", "ten"], "invalid limit \"ten\": use a whole number"),
            (&["passes", "--limit", "10001"], "invalid limit \"10001\""),
            (&["events", "--kind", "item_deadlettered"], "unknown event kind \"item_deadlettered\""),
            (&["events", "--limit", "-1"], "invalid limit \"-1\": use a whole number from 1 to 10000"),
            (&["items", "docs", "--limit", "0"], "invalid limit \"0\""),
            (
                &["export", "docs", "--since", "36501d"],
                "\"36501d\" is too long; the largest allowed is 36500d",
            ),
            (
                &["events", "--since=-1d"],
                "invalid duration \"-1d\": a time back from now has no sign: use \"1d\"",
            ),
            (
                &["export", "docs", "--since=-6h"],
                "invalid duration \"-6h\": a time back from now has no sign: use \"6h\"",
            ),
            (
                &["export", "docs", "--since", "+7d"],
                "invalid duration \"+7d\": a time back from now has no sign: use \"7d\"",
            ),
            (&["export", "docs", "--since", "last week"], "\"last week\" is neither a duration such as 7d"),
        ] {
            let error =
                Cli::try_parse_from(std::iter::once("drainctl").chain(args.iter().copied())).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::ValueValidation, "{args:?}");
            let invalid = error.source().and_then(|source| source.downcast_ref::<InvalidValue>());
            assert!(invalid.is_some_and(|invalid| invalid.0.contains(expected)), "{args:?}: {error}");
        }
    }
}
