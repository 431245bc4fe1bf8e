//! Configuration: one TOML file, parsed strictly, then resolved into typed settings.
//!
//! [`raw`] mirrors the file (strings, unknown keys refused); [`resolve`] turns it into
//! [`Config`]: durations parsed, zones checked, regexes compiled, paths made absolute
//! against the file's folder, every default (from [`defaults`]) filled in. Every error
//! names the file, the line and column, and the bad value, before any database
//! connection is opened. This module holds the resolved types and how the file is found
//! and read.

pub(crate) mod defaults;
mod key_path;
pub(crate) use key_path::is_near;
mod raw;
mod resolve;
pub mod watch;
pub use resolve::register_environment_secrets;

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use regex::Regex;

use crate::error::{Error, Result};
use crate::quota::Profile;
use crate::schedule::window::Window;
use raw::RawConfig;
use resolve::Source;

/// Environment variables that name the configuration file and the database.
pub const CONFIG_ENV: &str = "DRAINCTL_CONFIG";
pub const DATABASE_URL_ENV: &str = "DRAINCTL_DATABASE_URL";
pub const FALLBACK_DATABASE_URL_ENV: &str = "DATABASE_URL";
/// Variables removed from the environment of every worker and notifier (a drain's own
/// `env` may set them again): those that carry drainctl's database credentials, so that a
/// child never sees the password unless the configuration hands it over; and those naming
/// the IPC channel of a Node.js parent (pm2 sets `NODE_CHANNEL_FD=3`), whose descriptor is
/// withheld from children — a Node.js worker (gemini-cli, codex) given the variable
/// without the descriptor aborts at its start. See docs/worker-contract.md.
pub const WITHHELD_ENV: [&str; 5] = [
    DATABASE_URL_ENV,
    FALLBACK_DATABASE_URL_ENV,
    "PGPASSWORD",
    "NODE_CHANNEL_FD",
    "NODE_CHANNEL_SERIALIZATION_MODE",
];
/// Searched in this order when neither `--config` nor `$DRAINCTL_CONFIG` is given.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = ["./drainctl.toml", "/etc/drainctl/drainctl.toml"];
/// What `{token}` in `resume_args` is replaced with.
pub const RESUME_TOKEN_PLACEHOLDER: &str = "{token}";
/// A worker's environment from its drain's `env` with its account's merged over it (the
/// account wins): what a pass hands the worker, and what `quota test` reads its `TZ` from.
pub(crate) fn merged_env(drain: &[(String, String)], account: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        drain.iter().filter(|(name, _)| !account.iter().any(|(other, _)| other == name)).cloned().collect();
    env.extend(account.iter().cloned());
    env
}

/// How a configuration without a database URL is refused.
pub const NO_DATABASE_URL: &str = "no database URL";

/// How a drain name the configuration does not know begins to be refused.
pub const UNKNOWN_DRAIN: &str = "unknown drain";

#[derive(Debug)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub database_url: Option<DatabaseUrl>,
    /// The file's `[database] url` carries a password (used or overridden).
    pub file_holds_password: bool,
    /// The file sets `[database] url` (used or not: an environment variable may win).
    pub file_has_database_url: bool,
    pub defaults: Defaults,
    /// Every quota group a drain names, declared (`[[quota_group]]`) or implicit, in the
    /// order declared, then the implicit ones in the order of their first drain.
    pub quota_groups: Vec<QuotaGroupConfig>,
    pub drains: Vec<DrainConfig>,
    /// The file as it was when read (not of a descriptor's): what a running pass compares
    /// it with to notice a change (see [`watch`]).
    pub read_stamp: Option<watch::FileStamp>,
}

/// A quota group: the drains that share it share its accounts' backoffs.
#[derive(Debug)]
pub struct QuotaGroupConfig {
    pub name: String,
    /// At most one switch to another account per this long, unless a stated reset forces it.
    pub switch_cooldown: Duration,
    /// In order of preference; never empty. A group without declared accounts has the one
    /// implicit account `""`.
    pub accounts: Vec<AccountConfig>,
}

impl Config {
    /// Drains whose `quota_group` names no group with accounts while one or two letters
    /// from a group declared with accounts that no drain uses (`claude-chiar` beside
    /// `claude-chair`): a misspelling would run them on the wrong account. What `doctor`
    /// warns of, one line each, with the drain it is about.
    pub fn misspelled_quota_groups(&self) -> Vec<(String, String)> {
        let has_accounts =
            |group: &QuotaGroupConfig| group.accounts.iter().any(|account| !account.is_implicit());
        let unused_with_accounts: Vec<&QuotaGroupConfig> = self
            .quota_groups
            .iter()
            .filter(|group| has_accounts(group))
            .filter(|group| !self.drains.iter().any(|drain| drain.quota_group == group.name))
            .collect();
        let mut warnings = Vec::new();
        for drain in &self.drains {
            let Ok(group) = self.quota_group(&drain.quota_group) else { continue };
            if has_accounts(group) {
                continue;
            }
            if let Some(meant) =
                unused_with_accounts.iter().find(|meant| is_near(&drain.quota_group, &meant.name))
            {
                warnings.push((drain.name.clone(), format!(
                    "drain {}: quota_group {:?} has no accounts, and {:?}, declared with accounts, is used by no \
                     drain: did you mean {:?}? (a name no [[quota_group]] declares is a group of its own; declare \
                     it to keep the name)",
                    drain.name, drain.quota_group, meant.name, meant.name
                )));
            }
        }
        warnings
    }
}

impl QuotaGroupConfig {
    /// The group has several accounts to switch between.
    pub fn has_accounts_to_switch(&self) -> bool {
        self.accounts.len() > 1
    }

    /// The names of the group's accounts other than `name`: those a hit on `name` can
    /// switch to (docs/accounts.md).
    pub fn other_accounts(&self, name: &str) -> Vec<String> {
        self.accounts
            .iter()
            .filter(|account| account.name != name)
            .map(|account| account.name.clone())
            .collect()
    }

    /// Position of the account called `name`, if it is configured.
    pub fn account_index(&self, name: &str) -> Option<usize> {
        self.accounts.iter().position(|account| account.name == name)
    }
}

/// One account of a quota group: its name and the environment that selects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountConfig {
    /// `""` for the implicit account of a group that declares none.
    pub name: String,
    /// Merged over the drain's `env` for every item run on this account.
    pub env: Vec<(String, String)>,
}

impl AccountConfig {
    pub fn implicit() -> AccountConfig {
        AccountConfig { name: String::new(), env: Vec::new() }
    }

    pub fn is_implicit(&self) -> bool {
        self.name.is_empty()
    }
}

/// The database URL and where it came from (for messages; the URL itself is never shown).
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    pub url: String,
    pub source: String,
}

#[derive(Debug)]
pub struct Defaults {
    pub timezone: Tz,
    pub burst_default_until: String,
    pub burst_max: Duration,
    pub log_dir: PathBuf,
    pub metrics_textfile: Option<PathBuf>,
    /// The operations page every `supervise` pass rewrites (docs/results.md).
    pub report_html: Option<PathBuf>,
    pub notify_command: Option<Vec<String>>,
    pub default_backoff: Duration,
    pub reset_margin: Duration,
    pub suspected_backoff: Duration,
    pub kill_grace: Duration,
    pub supervise_interval: Duration,
    /// Event kinds that run `notify_command`.
    pub notify_on: Vec<crate::model::EventKind>,
    /// The notifier's process group is killed after this.
    pub notify_timeout: Duration,
    pub retention: Retention,
}

/// How long history is kept (see `prune`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Finished runs (with their attempts) and supervisor passes older than this go.
    pub runs: Duration,
    pub events: Duration,
    /// Log files under `log_dir` not written to for this long go.
    pub logs: Duration,
    /// Done and skipped_missing items finished longer ago than this go; kept when None.
    pub done_items: Option<Duration>,
}

impl Defaults {
    /// How long a quota group waits after a hit (see `backoff`).
    pub fn backoff_policy(&self) -> crate::backoff::BackoffPolicy {
        crate::backoff::BackoffPolicy {
            reset_margin: self.reset_margin,
            suspected_backoff: self.suspected_backoff,
            default_backoff: self.default_backoff,
            // A per-minute window is routine whatever the cadence: with `supervise_interval
            // = "15s"` each minute's wait was notified (docs/rate-limits.md).
            short_wait: self.supervise_interval.max(crate::backoff::ROUTINE_WAIT),
            zone: self.timezone,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RetryBackoff {
    pub base: Duration,
    pub max: Duration,
}

#[derive(Debug)]
pub struct DrainConfig {
    pub name: String,
    pub command: Vec<String>,
    pub workdir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub quota_group: String,
    pub quota_profile: Profile,
    /// Compiled case-insensitively, checked when the configuration is read.
    pub quota_patterns: Vec<Regex>,
    pub veto_patterns: Vec<Regex>,
    pub window: Option<Window>,
    pub max_items_per_pass: u32,
    pub max_seconds_per_pass: Duration,
    pub item_timeout: Duration,
    pub liveness_timeout: Duration,
    /// The longest a pass waits inside itself for its quota group's reset
    /// (docs/rate-limits.md); `0s` never waits.
    pub max_wait: Duration,
    pub max_attempts: u32,
    /// An item whose output reads as a limit this many times in a row, while other items
    /// of its quota group succeed, is charged an attempt for its hits (docs/rate-limits.md,
    /// "Poison items"); 0 never charges.
    pub poison_after: u32,
    /// Which drain of a shared quota group goes first when its quota returns: the higher
    /// (docs/rate-limits.md, "Priority within a group"); a drain in burst goes before all.
    pub priority: i32,
    pub retry_backoff: RetryBackoff,
    pub checkpoint_pattern: Regex,
    /// Worker output lines that carry a resume token in their first capture group.
    pub resume_pattern: Regex,
    /// A token is used only when it matches this whole (anchored here).
    pub resume_token_format: Regex,
    /// Appended to `command` when the item resumes, `{token}` replaced.
    pub resume_args: Vec<String>,
    pub concurrency: u32,
    pub max_result_bytes: usize,
    pub stderr_tail_bytes: usize,
    /// Files whose paths become items (`drainctl scan`).
    pub source: Option<SourceConfig>,
    /// `supervise` starts the drain at most once per this interval (not in burst).
    pub every: Option<Duration>,
    /// A pass stops once its attempts cost this many US dollars (docs/results.md).
    pub max_cost_per_pass: Option<f64>,
    /// No item starts once the drain's attempts cost this many US dollars since midnight
    /// in `[defaults] timezone` (docs/results.md).
    pub max_cost_per_day: Option<f64>,
}

/// A file-backed source: every regular file under `dir` matching `glob` is an item.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Absolute (resolved against the config file's folder).
    pub dir: PathBuf,
    pub glob: crate::glob::Glob,
    pub max_files_per_scan: u32,
    /// A scan reads at most this many bytes to hash files; a file it could not finish is
    /// hashed on by the next scans (docs/configuration.md, "File-backed sources").
    pub max_hash_bytes_per_scan: u64,
    /// And hashes for at most this long.
    pub max_hash_seconds_per_scan: Duration,
}

/// A configuration file's text, read once, and where it came from.
#[derive(Debug)]
pub struct ConfigText {
    /// Absolute, as given (a descriptor's path is not followed).
    pub path: PathBuf,
    pub text: String,
    /// Read from a descriptor drainctl was handed ([`is_descriptor_path`]).
    pub is_descriptor: bool,
    /// The file as read (None for a descriptor's text).
    pub stamp: Option<watch::FileStamp>,
}

/// `/dev/stdin`, `/dev/fd/N`, `/proc/self/fd/N`, `/proc/PID/fd/N`, or a path whose links
/// lead to one: a descriptor the caller opened and handed over, not a file in the file
/// system anyone else could have put there, and one with no folder of its own
/// (docs/configuration.md). Its links are followed one at a time, as the kernel does, and
/// each step is judged before it is followed: `/proc/self/fd/0` is itself a link, to the
/// file (or pipe) the descriptor reads.
pub fn is_descriptor_path(path: &Path) -> bool {
    descriptor_number(path).is_some()
}

/// The number of the descriptor of this process `path` names ([`is_descriptor_path`]):
/// 0 for `/dev/stdin`, N for `/dev/fd/N` or `/proc/self/fd/N`.
fn descriptor_number(path: &Path) -> Option<u32> {
    descriptor_walk(path)?
}

/// Whether `path` leads through a descriptor of this process: a folder one names, its
/// file inside (`/proc/self/fd/3/drainctl.toml`), or the descriptor itself
/// ([`is_descriptor_path`]). Another process cannot open either by that path: `supervise`
/// refuses both, as the drains it starts read the configuration again by its path.
pub fn leads_through_a_descriptor(path: &Path) -> bool {
    descriptor_walk(path).is_some()
}

/// Walk `path` as the kernel resolves it: `Some(Some(N))` at descriptor N of this process
/// that ends the path, `Some(None)` through one with more after it, `None` past none.
fn descriptor_walk(path: &Path) -> Option<Option<u32>> {
    crate::ownership::walk_resolving(path, |step| match names_a_descriptor(step.path) {
        true if step.names_left => std::ops::ControlFlow::Break(None),
        true => std::ops::ControlFlow::Break(step.path.file_name().and_then(|name| match name.to_str()? {
            "stdin" => Some(0),
            "stdout" => Some(1),
            "stderr" => Some(2),
            number => number.parse().ok(),
        })),
        false => std::ops::ControlFlow::Continue(()),
    })
    .stopped()
}

/// A path, its links already followed, that names a descriptor of this process:
/// `/dev/stdin` (`stdout`, `stderr`), `/dev/fd/N`, `/proc/P/fd/N` or `/proc/P/task/T/fd/N`
/// with P this process (`self`, or its pid). Another process's descriptor is a file like
/// any other: whoever runs that process must not pass for the caller, so its owner and
/// mode are checked.
fn names_a_descriptor(path: &Path) -> bool {
    let parts: Vec<&std::ffi::OsStr> = path.iter().skip(1).collect();
    let own = std::process::id().to_string();
    let is_own = |pid: &std::ffi::OsStr| pid == "self" || pid == "thread-self" || pid == own.as_str();
    match parts.as_slice() {
        [dev, name] => *dev == "dev" && (*name == "stdin" || *name == "stdout" || *name == "stderr"),
        [dev, fd, _] => *dev == "dev" && *fd == "fd",
        [proc, pid, fd, _] => *proc == "proc" && is_own(pid) && *fd == "fd",
        [proc, pid, task, _, fd, _] => *proc == "proc" && is_own(pid) && *task == "task" && *fd == "fd",
        _ => false,
    }
}

/// A folder or a device named as the configuration file (`--config /dev/null`, to run a
/// command without one) is refused for what it is, not for its mode: `chmod go-w
/// /dev/null` would be the wrong advice. A descriptor drainctl was handed and a named pipe
/// are read.
fn refuse_what_is_no_file(path: &Path, metadata: &std::fs::Metadata, is_descriptor: bool) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    let shown = path.display();
    if kind.is_dir() {
        return Err(Error::Config(format!(
            "configuration file {shown} is a folder, not a file: name the file in it (--config {})",
            path.join("drainctl.toml").display()
        )));
    }
    if !is_descriptor && (kind.is_char_device() || kind.is_block_device()) {
        return Err(Error::Config(format!(
            "configuration file {shown} is a device, not a file: name a regular file, or name none (migrate and \
             quota test run without one)"
        )));
    }
    Ok(())
}

/// The refusal of a configuration file that is not UTF-8 text, naming where the first
/// byte that is not stands, as TOML's own errors do.
fn not_utf8(path: &Path, bytes: &[u8], error: std::str::Utf8Error) -> Error {
    let before = &bytes[..error.valid_up_to()];
    let line = before.iter().filter(|&&byte| byte == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&byte| byte == b'\n').map_or(0, |at| at + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    Error::Config(format!(
        "{}:{line}:{column}: the configuration file is not UTF-8 text (a byte 0x{:02x} there); save it as UTF-8",
        path.display(),
        bytes[error.valid_up_to()]
    ))
}

/// The configuration names the programs drainctl runs, often as root from cron: a file
/// another user may change is refused, as cron and logrotate refuse theirs
/// (docs/configuration.md): world-writable, or owned by neither the user running
/// drainctl nor root.
fn refuse_others_writing(path: &Path, metadata: &std::fs::Metadata) -> Result<()> {
    use crate::ownership::{chown_owner, effective_uid, foreign_owner, other_writer, OtherWriter};
    let shown = path.display();
    let acl = crate::ownership::acl_writers(path);
    if !acl.is_empty() {
        return Err(Error::Config(format!(
            "configuration file {shown} has an ACL that lets {} write it, who could change the programs \
             drainctl runs; remove it: setfacl -b {shown}",
            acl.join(", ")
        )));
    }
    match other_writer(metadata) {
        None => Ok(()),
        Some(OtherWriter::EveryUser { mode }) => Err(Error::Config(format!(
            "configuration file {shown} is writable by every user (mode {mode:04o}), who could change the \
             programs drainctl runs; make it writable by its owner only: chmod go-w {shown}"
        ))),
        Some(OtherWriter::Owner { uid }) => {
            let euid = effective_uid();
            // Reached through a link: where it leads is what belongs to the other user.
            let named = match std::fs::symlink_metadata(path).is_ok_and(|link| link.file_type().is_symlink())
            {
                true => match std::fs::canonicalize(path) {
                    Ok(target) => format!("{shown} (a link to {})", target.display()),
                    Err(_) => shown.to_string(),
                },
                false => shown.to_string(),
            };
            // In a folder its owner may replace it in, a chown alone would be refused next
            // for that folder: the fix is a copy of the file's own.
            let fix = match crate::ownership::others_may_replace(path, false) {
                Some(_) => format!(
                    "run drainctl as its owner, or copy it into a folder only {} may write, and name that copy",
                    match euid {
                        0 => "root".to_string(),
                        _ => format!("{} and root", chown_owner(euid)),
                    }
                ),
                None => format!("run drainctl as its owner, or chown {} {shown}", chown_owner(euid)),
            };
            Err(Error::Config(format!(
                "configuration file {named} {}, and its owner could change the programs drainctl runs; {fix}",
                foreign_owner(uid),
            )))
        }
    }
}

/// Refuse a configuration file reached through another user's symbolic link: its owner
/// chooses where it leads (docs/configuration.md).
fn refuse_foreign_link(path: &Path) -> Result<()> {
    match crate::ownership::foreign_link_on_the_way(path) {
        Some((link, owner)) => Err(Error::Config(format!(
            "{}, who could change the programs drainctl runs; make the link yours or root's, or name the file \
             itself",
            crate::ownership::reached_through("configuration file", path, &link, owner)
        ))),
        None => Ok(()),
    }
}

/// Refuse a configuration file in a folder, or below one, where another user may rename
/// entries: they could swap it for another (docs/configuration.md).
fn refuse_replaceable(path: &Path) -> Result<()> {
    match crate::ownership::others_may_replace(path, false) {
        Some(why) => Err(Error::Config(format!(
            "configuration file {why}; whoever replaces it could change the programs drainctl runs"
        ))),
        None => Ok(()),
    }
}

/// The named pipe `file`, opened without waiting for a writer and looked at: wait for its
/// writer's first bytes (or its close) on that descriptor, and read it as usual from then
/// on. Opened again instead, a writer already waiting would write into the first opening
/// and leave the second waiting for ever.
fn wait_for_writer(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut ready = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd of this frame, its count given; the descriptor is open.
    if unsafe { libc::poll(&mut ready, 1, -1) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl on an open descriptor of this process, with integer arguments.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Config {
    /// The names of the drains of quota group `group`.
    pub fn group_drains(&self, group: &str) -> Vec<String> {
        self.drains
            .iter()
            .filter(|drain| drain.quota_group == group)
            .map(|drain| drain.name.clone())
            .collect()
    }

    /// Find and load the configuration. `explicit` is `--config`. When no file is named
    /// and none of the default paths exists, an empty configuration is returned if
    /// `file_is_optional` (commands such as `migrate` that need only the database).
    pub fn discover(explicit: Option<&Path>, file_is_optional: bool) -> Result<Config> {
        match Config::locate(explicit) {
            // A file that cannot be read says where its name came from, when not from the
            // command line (as a database URL says `(URL from $DATABASE_URL)`).
            Some(path)
                if explicit.is_none() && std::env::var_os(CONFIG_ENV).is_some_and(|v| !v.is_empty()) =>
            {
                let read = Config::read(&path)
                    .map_err(|error| error.noted(&format!("the path is ${CONFIG_ENV}'s")))?;
                Config::from_read(&read)
            }
            Some(path) => Config::load(&path),
            None if file_is_optional => Config::from_text("", None),
            None => Err(Error::Config(format!(
                "no configuration file: pass --config PATH, set ${CONFIG_ENV}, or create {}",
                DEFAULT_CONFIG_PATHS.join(" or ")
            ))),
        }
    }

    /// The file [`Config::discover`] would read: `explicit`, else `$DRAINCTL_CONFIG`, else
    /// the first default path where anything is — a folder, a named pipe or a link leading
    /// nowhere included, refused by the reading for what it is: skipped, a broken
    /// `./drainctl.toml` handed the run to `/etc/drainctl/drainctl.toml` without a word
    /// (docs/configuration.md).
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        let named = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
        match named {
            // `-` is stdin, as for every other path drainctl takes.
            Some(path) if path == Path::new("-") => Some(PathBuf::from("/dev/stdin")),
            Some(path) => Some(path),
            None => {
                DEFAULT_CONFIG_PATHS.iter().map(PathBuf::from).find(|p| std::fs::symlink_metadata(p).is_ok())
            }
        }
    }

    pub fn load(path: &Path) -> Result<Config> {
        Config::from_read(&Config::read(path)?)
    }

    /// Read the configuration file at `path` once, refusing one another user may change
    /// (docs/configuration.md). A descriptor (`--config /dev/stdin`) cannot be read twice:
    /// what needs the text again uses this.
    pub fn read(path: &Path) -> Result<ConfigText> {
        Config::read_checked(path, false)
    }

    /// [`Config::load`] of a regular file only, as a running pass reads its file again.
    pub fn load_regular(path: &Path) -> Result<Config> {
        Config::from_read(&Config::read_checked(path, true)?)
    }

    fn read_checked(path: &Path, only_regular: bool) -> Result<ConfigText> {
        use std::io::Read;
        let cannot_read = |error: std::io::Error| {
            // Usually a file kept mode 0600 by another user (docs/operations.md, "A service
            // user instead of root").
            // A folder above the file this user may not enter denies it too: name that one
            // — above the file a symbolic link leads to as well.
            let mut target = path.to_path_buf();
            for _ in 0..8 {
                match std::fs::read_link(&target) {
                    Ok(link) => target = target.parent().map_or(link.clone(), |folder| folder.join(&link)),
                    Err(_) => break,
                }
            }
            let closed_folder = [path, target.as_path()]
                .into_iter()
                .flat_map(|file| file.ancestors().skip(1))
                .filter(|folder| !folder.as_os_str().is_empty())
                .find(|folder| !crate::worker::program::may_enter(folder))
                .map(std::path::Path::to_path_buf);
            let fix = match (error.kind() == std::io::ErrorKind::PermissionDenied, closed_folder) {
                (true, Some(folder)) => format!(
                    "; the folder {} cannot be entered by this user: give it search (x) permission, or keep \
                     the file where the user drainctl runs as can reach it",
                    folder.display()
                ),
                (true, None) => {
                    "; run drainctl as the user the file belongs to, or give this user read access \
                                 to it (a group of its own: chgrp GROUP FILE && chmod 640 FILE)"
                        .to_string()
                }
                (false, _) if error.kind() == std::io::ErrorKind::NotFound => {
                    "; create it (see docs/configuration.md), or name the right file with --config or \
                     $DRAINCTL_CONFIG"
                        .to_string()
                }
                (false, _) => String::new(),
            };
            Error::Config(format!("cannot read configuration file {}: {error}{fix}", path.display()))
        };
        // A descriptor drainctl was handed (`--config /dev/stdin`, `<(…)`) is its caller's
        // to fill; anything else, a named pipe too, must be no other user's — and so must
        // the links and folders that lead to it.
        // The descriptor is opened by its number, not by the path again: a link swapped
        // meanwhile must not lead elsewhere, past the checks a file gets.
        let descriptor = descriptor_number(path);
        let is_descriptor = descriptor.is_some();
        if !is_descriptor {
            refuse_foreign_link(path)?;
        }
        // Not blocked by a named pipe before it is looked at: opened without waiting for
        // a writer, then, when it may be read, again as before.
        let mut file = match descriptor {
            Some(number) => std::fs::File::open(format!("/proc/self/fd/{number}")),
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::File::options().read(true).custom_flags(libc::O_NONBLOCK).open(path)
            }
        }
        .map_err(cannot_read)?;
        let metadata = file.metadata().map_err(cannot_read)?;
        // A running pass reads a regular file again, never what took its place: a named pipe
        // would hold it until a writer came (docs/configuration.md).
        if only_regular && !metadata.is_file() {
            return Err(Error::Config(format!(
                "configuration file {} is no longer a regular file",
                path.display()
            )));
        }
        refuse_what_is_no_file(path, &metadata, is_descriptor)?;
        if !is_descriptor {
            refuse_others_writing(path, &metadata)?;
            refuse_replaceable(path)?;
            if std::os::unix::fs::FileTypeExt::is_fifo(&metadata.file_type()) {
                wait_for_writer(&file).map_err(cannot_read)?;
            }
        }
        let stamp = watch::FileStamp::of(&metadata).filter(|_| !is_descriptor);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(cannot_read)?;
        let text =
            String::from_utf8(bytes).map_err(|error| not_utf8(path, error.as_bytes(), error.utf8_error()))?;
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(ConfigText { path, text, is_descriptor, stamp })
    }

    /// Parse and resolve a file's text as [`Config::read`] read it.
    pub fn from_read(read: &ConfigText) -> Result<Config> {
        let folder = Source::folder_of(Some(&read.path), read.is_descriptor);
        let config = Config::parse(&read.text, Some(&read.path), folder)?;
        Ok(Config { read_stamp: read.stamp, ..config })
    }

    /// Parse and resolve configuration text. `path` is used for messages and to resolve
    /// relative paths.
    pub fn from_text(text: &str, path: Option<&Path>) -> Result<Config> {
        Config::parse(text, path, Source::folder_of(path, false))
    }

    /// [`Config::from_text`], relative paths resolved against `folder` (refused without one).
    fn parse(text: &str, path: Option<&Path>, folder: Option<PathBuf>) -> Result<Config> {
        let source = Source { text, path, folder };
        let raw: RawConfig = toml::from_str(text).map_err(|error| {
            // A text that fails to parse is quoted back in its error: its password first.
            resolve::register_secrets_in(text);
            let message = error
                .message()
                .trim()
                .replace('\n', "; ")
                .replace("expected i64", "expected an integer")
                .replace("expected f64", "expected a number")
                .replace("expected a sequence", "expected an array ([...])");
            let message = hide_an_env_value(text, error.span(), message);
            let message = name_a_refused_number(text, error.span(), message);
            let message = name_a_date_literal(text, error.span(), message);
            let message = name_a_duplicate_key(text, error.span(), message);
            // A value of the wrong type or out of range fails here, before `resolve` can
            // name its key: name it from the text at the value, or the table from its header.
            let message = match error.span() {
                Some(span) => match key_path::describe(text, span.start) {
                    Some(key) => {
                        format!("{key}: {}", show_a_table(&key, bracket_a_lone_string(&key, message)))
                    }
                    None => key_path::explain_unknown_key(text, span.start, &message)
                        .or_else(|| key_path::explain_at_header(text, span.start, &message))
                        .or_else(|| key_path::explain_missing_field(text, span.start, &message))
                        .unwrap_or(message),
                },
                None => message,
            };
            source.error_at(error.span(), &message)
        })?;
        Config::resolve(raw, &source)
    }

    /// The quota group called `name` (every drain's group is there, declared or implicit),
    /// or a usage error that lists the known ones.
    pub fn quota_group(&self, name: &str) -> Result<&QuotaGroupConfig> {
        self.quota_groups.iter().find(|group| group.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.quota_groups.iter().map(|group| group.name.as_str()).collect();
            let known = match known.is_empty() {
                true => "none are configured".to_string(),
                false => format!("known: {}", known.join(", ")),
            };
            Error::Usage(format!("unknown quota group {name:?}; {known}"))
        })
    }

    /// The drain called `name`, or a usage error that lists the known ones.
    pub fn drain(&self, name: &str) -> Result<&DrainConfig> {
        self.drains.iter().find(|d| d.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.drains.iter().map(|d| d.name.as_str()).collect();
            let known = if known.is_empty() {
                "none are configured".to_string()
            } else {
                format!("known: {}", known.join(", "))
            };
            Error::Usage(format!("{UNKNOWN_DRAIN} {name:?}; {known}"))
        })
    }

    /// The database URL, or a configuration error that says how to provide one.
    pub fn require_database_url(&self) -> Result<&DatabaseUrl> {
        self.database_url.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "{NO_DATABASE_URL}: set [database] url in the configuration, or \
                 ${DATABASE_URL_ENV} or ${FALLBACK_DATABASE_URL_ENV}"
            ))
        })
    }
}

/// A value of the wrong type in a worker's environment (`env = "API_KEY=sk-…"`) is not
/// quoted back, in a drain's `env`, an account's or one of their variables: `env` is
/// where a worker's keys live, and the message goes to cron's mail and `doctor`'s report.
fn hide_an_env_value(text: &str, span: Option<std::ops::Range<usize>>, message: String) -> String {
    static ENV_VALUE_NEXT: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\benv\s*=\s*$").ok());
    static QUOTED_STRING: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r#"string "(?:[^"\\]|\\.)*""#).ok());
    let Some(start) = span.map(|span| span.start) else { return message };
    let in_env = key_path::describe(text, start)
        .is_some_and(|key| key.split([' ', '.']).any(|part| part == "env"))
        || text.get(..start).is_some_and(|before| {
            ENV_VALUE_NEXT.as_ref().is_some_and(|env_value_next| env_value_next.is_match(before))
        });
    match QUOTED_STRING.as_ref() {
        Some(quoted) if in_env => {
            quoted.replace_all(&message, "string (not shown, as it may be a secret)").into_owned()
        }
        _ => message,
    }
}

/// An `env` given as a string or an array (`env = "A=1"`, `env = ["A=1"]`): the parser's
/// `expected a map` is said with the form to write.
fn show_a_table(key: &str, message: String) -> String {
    let setting = key.rsplit([' ', '.']).next().unwrap_or(key);
    if setting == "env" && message.ends_with("expected a map") {
        return format!("{message}: write it as a table of names and values, env = {{ NAME = \"value\" }}");
    }
    message
}

/// A list setting given one string (`command = "claude -p"`): the parser's `expected an
/// array` says nothing of how to write it. Said with the value in brackets — split into its
/// words for the settings that name a program and its arguments, which no shell reads
/// (docs/configuration.md), so a pipeline goes through `sh -c`.
fn bracket_a_lone_string(key: &str, message: String) -> String {
    let quoted_value = message
        .strip_prefix("invalid type: string \"")
        .and_then(|rest| rest.strip_suffix("\", expected an array ([...])"));
    // The parser's message quotes the value with `\"` and `\\`; any other escape (a line
    // end, a control character) is not written back into a suggestion.
    // A backslash is not suggested either way: a shell would take it away, exec keep it.
    let value =
        quoted_value.map(|quoted| quoted.replace("\\\"", "\"")).filter(|unescaped| !unescaped.contains('\\'));
    let Some(value) = value else { return message };
    let value = value.as_str();
    let setting = key.rsplit([' ', '.']).next().unwrap_or(key);
    // Each word as a TOML string.
    let quoted = |words: &[&str]| {
        words
            .iter()
            .map(|word| format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let is_program = matches!(setting, "command" | "notify_command" | "resume_args");
    // What only a shell reads: operators, variables, quotes, `~`, a leading `NAME=value`.
    let sets_a_variable = value.split_whitespace().next().is_some_and(|first| first.contains('='));
    let needs_a_shell = value
        .contains(['|', '&', ';', '<', '>', '$', '`', '*', '?', '[', '#', '\'', '"', '~'])
        || sets_a_variable;
    // A pipe's status is its last command's: `claude -p | tee log` would exit 0 whatever
    // the client did, its failures and limits stored as done. bash's `pipefail` keeps the
    // first failure (dash, Debian's `sh`, has none).
    let has_a_pipe = value.replace("||", "").contains('|');
    let written = if is_program && has_a_pipe {
        let piped = format!("set -o pipefail; {value}");
        format!(
            "[{}] (no shell reads it; pipefail keeps the client's exit status, which the pipe's last command \
             would replace)",
            quoted(&["bash", "-c", &piped])
        )
    } else if is_program && needs_a_shell {
        format!("[{}] (no shell reads it)", quoted(&["sh", "-c", value]))
    } else if is_program {
        format!("[{}], each argument its own string", quoted(&value.split_whitespace().collect::<Vec<_>>()))
    } else {
        format!("[{}]", quoted(&[value]))
    };
    format!("{message}: write {setting} = {written}")
}

/// The TOML parser refuses a number it cannot hold in its own words ("number too large
/// to fit in target type"), which name neither the number nor the limit: say both.
/// A date or time written without quotes (`from = 09:00`, `item_timeout = 00:20:00`,
/// `burst_default_until = 2026-12-05T18:00:00Z`) is a TOML date-time, which the parser hands
/// over as a table: `invalid type: map` says nothing of it. Said with the value and the
/// quotes every setting wants.
fn name_a_date_literal(text: &str, span: Option<std::ops::Range<usize>>, message: String) -> String {
    if !message.starts_with("invalid type: map") {
        return message;
    }
    let rest = span.and_then(|span| text.get(span.start..)).unwrap_or_default();
    let end = rest.find([',', ']', '}', '#', '\n']).unwrap_or(rest.len());
    let value = rest[..end].trim_end();
    let shape = regex::Regex::new(
        r"^(\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?)?|\d{2}:\d{2}(:\d{2}(\.\d+)?)?)$",
    );
    match shape {
        // `09:00`, `00:20:00`: a time of day, or meant as a length of time.
        Ok(shape) if shape.is_match(value) && !value.contains('-') => format!(
            "{value} without quotes is a TOML time, not text: write a time of day in quotes (\"{value}\"), \
             a length of time as a duration (\"20m\", \"1h30m\")"
        ),
        Ok(shape) if shape.is_match(value) && value.len() == "2026-12-05".len() => format!(
            "{value} without quotes is a TOML date, not text: write it in quotes, with a time where a \
             moment is meant (\"{value} 18:00\")"
        ),
        Ok(shape) if shape.is_match(value) => {
            format!("{value} without quotes is a TOML date, not text: write it in quotes (\"{value}\")")
        }
        _ => message,
    }
}

fn name_a_refused_number(text: &str, span: Option<std::ops::Range<usize>>, message: String) -> String {
    // The parser's span is the number's first character: the number runs to the next
    // space, comma, bracket or comment.
    let value = {
        let rest = span.and_then(|span| text.get(span.start..)).unwrap_or_default();
        let end = rest.find(|c: char| c.is_whitespace() || ",]}#".contains(c)).unwrap_or(rest.len());
        &rest[..end]
    };
    // An integer beyond 64 bits is given to the reader as a 128-bit one it refuses.
    let is_whole = |text: &str| {
        let digits = text.trim_start_matches(['-', '+']);
        !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    };
    let beyond_64_bits = message.contains("as i128")
        || message.contains("as u128")
        || message.contains("integer number overflowed")
        // 2^63 to 2^64 − 1 is read as an unsigned number the setting refuses.
        || (message.contains("invalid value: integer") && is_whole(value) && value.replace('_', "").parse::<i64>().is_err());
    let is_negative = value.starts_with('-');
    if message.contains("number too large to fit in target type") || (beyond_64_bits && !is_negative) {
        format!("{} is too large: a whole number here is at most {}", value, i64::MAX)
    } else if message.contains("number too small to fit in target type") || beyond_64_bits {
        format!("{} is too small: a whole number here is at least {}", value, i64::MIN)
    } else if message.contains("invalid floating-point number")
        || message.contains("floating-point number overflowed")
    {
        format!("{} is too large for a number", value)
    } else {
        message
    }
}

/// The reader's `duplicate key`, at the key's line, with the key it found twice:
/// ``duplicate key `max_attempts` (given twice in one table)``.
fn name_a_duplicate_key(text: &str, span: Option<std::ops::Range<usize>>, message: String) -> String {
    if message.trim() != "duplicate key" {
        return message;
    }
    let line =
        span.and_then(|span| text.get(span.start..)).and_then(|rest| rest.lines().next()).unwrap_or_default();
    let key = line.split_once('=').map(|(key, _)| key.trim()).unwrap_or_else(|| line.trim());
    let key = key.trim_start_matches('[').trim_end_matches(']').trim();
    if key.is_empty() {
        return message;
    }
    format!("duplicate key `{key}` (given twice in one table; keep one)")
}

/// An IANA zone name, or a one-line message naming it.
pub fn parse_zone(name: &str) -> std::result::Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!("unknown time zone {name:?}: use an IANA name such as \"Asia/Jerusalem\" or \"UTC\"")
    })
}

/// The machine's zone: `$TZ`, else the `/etc/localtime` link, else `/etc/timezone`, else
/// UTC. A `$TZ` that names no zone drainctl knows is logged as a warning that says which
/// zone is used instead (`doctor` reports it too).
pub fn local_zone() -> Tz {
    let machine = machine_zone();
    if let Some(problem) = &machine.problem {
        log::warn!("{problem}");
    }
    machine.zone
}

/// The machine's zone, where it came from, and what was wrong with `$TZ`, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineZone {
    pub zone: Tz,
    /// `$TZ`, `/etc/localtime`, `/etc/timezone` or `the default`.
    pub source: &'static str,
    /// `$TZ` is set but names no known zone: what it says and what is used instead.
    pub problem: Option<String>,
}

/// See [`local_zone`]; nothing is logged.
pub fn machine_zone() -> MachineZone {
    let tz = std::env::var("TZ").ok();
    let etc_localtime = std::fs::read_link("/etc/localtime").ok().map(|target| target.display().to_string());
    let etc_timezone = std::fs::read_to_string("/etc/timezone").ok();
    machine_zone_from(tz.as_deref(), etc_localtime.as_deref(), etc_timezone.as_deref())
}

/// [`machine_zone`] from the value of `$TZ`, the target of the `/etc/localtime` link and
/// the text of `/etc/timezone`.
fn machine_zone_from(
    tz: Option<&str>,
    etc_localtime: Option<&str>,
    etc_timezone: Option<&str>,
) -> MachineZone {
    let in_zoneinfo = |path: &str| path.split_once("zoneinfo/").and_then(|(_, name)| name.parse::<Tz>().ok());
    // `TZ=:Europe/Paris`, `TZ=Europe/Paris`, or a zoneinfo file; an empty TZ (and one that
    // names /etc/localtime) means the machine's zone.
    let mut ignored_tz = None;
    if let Some(value) = tz.map(str::trim).filter(|value| !value.is_empty()) {
        let name = value.trim_start_matches(':');
        match name.parse::<Tz>().ok().or_else(|| in_zoneinfo(name)) {
            Some(zone) => return MachineZone { zone, source: "$TZ", problem: None },
            None if name == "/etc/localtime" => {}
            None => ignored_tz = Some(value.to_string()),
        }
    }
    let (zone, source) = if let Some(zone) = etc_localtime.and_then(in_zoneinfo) {
        (zone, "/etc/localtime")
    } else if let Some(zone) = etc_timezone.and_then(|name| name.trim().parse::<Tz>().ok()) {
        (zone, "/etc/timezone")
    } else {
        (Tz::UTC, "the default")
    };
    let problem = ignored_tz.map(|value| {
        format!(
            "TZ={value:?} is not a known time zone; using {zone} (from {source}) instead: set TZ to an IANA \
             name such as \"Asia/Jerusalem\", or set [defaults] timezone"
        )
    });
    MachineZone { zone, source, problem }
}

/// What the unit tests of the configuration share: reading a file's text as if it were
/// `/etc/drainctl/drainctl.toml`, and the smallest configuration there is.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    use super::Config;
    use crate::error::Result;

    pub(crate) fn resolve(text: &str) -> Result<Config> {
        Config::from_text(text, Some(Path::new("/etc/drainctl/drainctl.toml")))
    }

    pub(crate) const MINIMAL: &str = "[[drain]]\nname = \"halacha\"\ncommand = [\"claude\", \"-p\"]\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_env_wins_over_the_drain_env() {
        let pair = |name: &str, value: &str| (name.to_string(), value.to_string());
        let merged = merged_env(
            &[pair("CLAUDE_CONFIG_DIR", "/drain"), pair("OTHER", "kept")],
            &[pair("CLAUDE_CONFIG_DIR", "/account")],
        );
        assert_eq!(merged, [pair("OTHER", "kept"), pair("CLAUDE_CONFIG_DIR", "/account")]);
    }

    use crate::config::testing::{resolve, MINIMAL};

    #[test]
    fn a_setting_under_the_wrong_header_names_the_table_that_takes_it() {
        let cases = [
            (format!("notify_command = [\"page\"]\n{MINIMAL}"), "1:1: unknown field `notify_command` (a setting of [defaults], not of this table), expected one of `database`"),
            (format!("url = \"postgres://h/db\"\n{MINIMAL}"), "unknown field `url` (a setting of [database], not of this table)"),
            (format!("[defaults]\nitem_timeout = \"20m\"\n{MINIMAL}"), "[defaults]: unknown field `item_timeout` (a setting of [[drain]], not of this table)"),
            (format!("{MINIMAL}timezone = \"UTC\"\n"), "drain \"halacha\": unknown field `timezone` (a setting of [defaults], not of this table)"),
            (format!("[database]\nurl = \"postgres://h/db\"\nname = \"x\"\n{MINIMAL}"), "unknown field `name` (a setting of [[quota_group]] and of [[drain]], not of this table)"),
        ];
        for (text, expected) in cases {
            let message = resolve(&text).unwrap_err().to_string();
            assert!(message.contains(expected), "{expected}\nnot in\n{message}");
        }
        // A key no table takes is told of none; one a letter off is still offered its spelling.
        let message = resolve(&format!("{MINIMAL}bogus = 1\n")).unwrap_err().to_string();
        assert!(!message.contains("a setting of"), "{message}");
        let message = resolve(&format!("{MINIMAL}max_atempts = 1\n")).unwrap_err().to_string();
        assert!(
            message.contains("(did you mean `max_attempts`?)") && !message.contains("a setting of"),
            "{message}"
        );
    }

    #[test]
    fn a_list_setting_given_one_string_is_told_how_to_write_it_in_brackets() {
        let config = |drain_lines: &str| format!("[[drain]]\nname = \"docs\"\n{drain_lines}\n");
        let cases = [
            ("command = \"claude -p\"", "drain \"docs\": command: invalid type: string \"claude -p\", expected an array ([...]): write command = [\"claude\", \"-p\"], each argument its own string"),
            ("command = \"claude -p > out\"", "write command = [\"sh\", \"-c\", \"claude -p > out\"] (no shell reads it)"),
            ("command = [\"w\"]\nquota_patterns = \"usage cap\"", "write quota_patterns = [\"usage cap\"]"),
        ];
        for (lines, expected) in cases {
            let message = resolve(&config(lines)).unwrap_err().to_string();
            assert!(message.contains(expected), "{expected}\nnot in\n{message}");
        }
        let defaults = format!("[defaults]\nnotify_command = \"/usr/local/bin/page me\"\n{MINIMAL}");
        let message = resolve(&defaults).unwrap_err().to_string();
        let expected = "notify_command: invalid type: string \"/usr/local/bin/page me\", expected an array \
                        ([...]): write notify_command = [\"/usr/local/bin/page\", \"me\"]";
        assert!(message.contains(expected), "{expected}\nnot in\n{message}");
        // What only a shell reads — quotes, `~`, a variable set before the program — goes
        // through `sh -c`, the quotes written back as TOML writes them.
        for (lines, expected) in [
            ("command = \"say \\\"hi $NAME\\\"\"", r#"write command = ["sh", "-c", "say \"hi $NAME\""]"#),
            ("command = \"~/bin/worker --flag\"", r#"write command = ["sh", "-c", "~/bin/worker --flag"]"#),
            ("command = \"FOO=1 claude -p\"", r#"write command = ["sh", "-c", "FOO=1 claude -p"]"#),
            // A pipe keeps the client's status (before: `sh -c`, the pipe exiting 0 after a
            // failed client, its item stored as done).
            (
                "command = \"claude -p | tee log\"",
                r#"write command = ["bash", "-c", "set -o pipefail; claude -p | tee log"] (no shell reads it; pipefail"#,
            ),
        ] {
            let message = resolve(&config(lines)).unwrap_err().to_string();
            assert!(message.contains(expected), "{expected}\nnot in\n{message}");
        }
        // A value the message escapes otherwise (a line end) is not rewritten into a
        // suggestion that would differ.
        let message = resolve(&config("command = \"say\\nhi\"")).unwrap_err().to_string();
        assert!(
            message.contains("expected an array ([...])") && !message.contains("write command"),
            "{message}"
        );
    }

    #[test]
    fn the_machine_zone_comes_from_tz_and_a_bad_tz_is_a_problem_naming_what_is_used() {
        let localtime = Some("/usr/share/zoneinfo/Europe/Paris");
        let zone = |tz: Option<&str>, localtime: Option<&str>| machine_zone_from(tz, localtime, None);
        for tz in ["Asia/Jerusalem", ":Asia/Jerusalem", "/usr/share/zoneinfo/Asia/Jerusalem"] {
            assert_eq!(
                zone(Some(tz), localtime),
                MachineZone { zone: chrono_tz::Asia::Jerusalem, source: "$TZ", problem: None },
                "{tz}"
            );
        }
        for tz in [None, Some(""), Some(":/etc/localtime")] {
            assert_eq!(
                zone(tz, localtime),
                MachineZone { zone: chrono_tz::Europe::Paris, source: "/etc/localtime", problem: None },
                "{tz:?}"
            );
        }
        assert_eq!(machine_zone_from(None, None, Some("Asia/Tokyo\n")).zone, chrono_tz::Asia::Tokyo);
        let bogus = zone(Some("Bogus/Zone"), None);
        assert_eq!((bogus.zone, bogus.source), (Tz::UTC, "the default"));
        assert_eq!(
            bogus.problem.as_deref(),
            Some(
                "TZ=\"Bogus/Zone\" is not a known time zone; using UTC (from the default) instead: set TZ to an \
                 IANA name such as \"Asia/Jerusalem\", or set [defaults] timezone"
            )
        );
        let bogus = zone(Some("Bogus/Zone"), localtime);
        assert_eq!(bogus.zone, chrono_tz::Europe::Paris);
        assert!(bogus.problem.unwrap().contains("using Europe/Paris (from /etc/localtime) instead"));
    }

    #[test]
    fn a_date_or_time_without_quotes_and_a_sub_table_missing_a_field_are_named() {
        let message = |text: &str| Config::from_text(text, None).unwrap_err().to_string();
        let drain =
            |name: &str, lines: &str| format!("[[drain]]\nname = \"{name}\"\ncommand = [\"x\"]\n{lines}");
        // Before: "invalid type: map, expected a string".
        for (line, says) in [
            (
                "item_timeout = 00:20:00\n",
                "drain \"d\": item_timeout: 00:20:00 without quotes is a TOML time, not text: write a time of day in \
                 quotes (\"00:20:00\"), a length of time as a duration (\"20m\", \"1h30m\")",
            ),
            ("window = { days = \"mon-fri\", from = 09:00, to = \"17:00\" }\n", "drain \"d\": window.from: 09:00 without quotes"),
        ] {
            let got = message(&drain("d", line));
            assert!(got.contains(says), "{got}");
        }
        let got =
            message(&format!("[defaults]\nburst_default_until = 2026-12-05T18:00:00Z\n{}", drain("d", "")));
        assert!(
            got.contains(
                "burst_default_until: 2026-12-05T18:00:00Z without quotes is a TOML date, not text: write it in quotes"
            ),
            "{got}"
        );
        // Further than burst_max: every `burst on` without --until would fail (before: loaded).
        let got = message(&format!("[defaults]\nburst_default_until = \"+20d\"\n{}", drain("d", "")));
        assert!(got.contains("burst_default_until: +20d is further ahead than burst_max (14d)"), "{got}");
        let got = message(&format!("[defaults]\nburst_default_until = 2026-12-05\n{}", drain("d", "")));
        assert!(
            got.contains("write it in quotes, with a time where a moment is meant (\"2026-12-05 18:00\")"),
            "{got}"
        );
        // A sub-table's key names the drain or group above it (before: the account's name
        // as the group's, or `[[drain]]` with no name).
        let group = "[[quota_group]]\nname = \"chair\"\n[[quota_group.accounts]]\n";
        let in_chair = drain("d", "quota_group = \"chair\"\n");
        let got = message(&format!("{in_chair}{group}name = \"backup\"\nenv = 5\n"));
        assert!(got.contains("quota group \"chair\": accounts.env: invalid type"), "{got}");
        // A worker's environment of the wrong type is not quoted back: it may hold a key
        // (before: `invalid type: string "API_KEY=sk-…"` on stderr and in doctor's report).
        for text in [
            format!("{in_chair}{group}name = \"backup\"\nenv = \"API_KEY=sk-Rk7secret\"\n"),
            format!(
                "{in_chair}[[quota_group]]\nname = \"chair\"\naccounts = [ {{ name = \"w\", env = 'API_KEY=sk-Rk7secret' }} ]\n"
            ),
            drain("d", "env = \"API_KEY=sk-Rk7secret\"\n"),
            drain("d", "env = { \"API_KEY=sk-Rk7secret\" = \"x\" }\n"),
        ] {
            let got = message(&text);
            assert!(!got.contains("Rk7secret") && got.contains("not shown, as it may be a secret"), "{got}");
        }
        let got = message(&drain("d", "max_items_per_pass = \"50\"\n"));
        assert!(got.contains("string \"50\""), "other values are quoted back: {got}");
        let got = message(&format!("{in_chair}{group}env = {{ A = \"b\" }}\n"));
        assert!(got.contains("quota group \"chair\": accounts: missing field `name`"), "{got}");
        let got = message(&drain("a", "[drain.source]\ndir = \"/tmp\"\nmax_files_per_scan = \"x\"\n"));
        assert!(got.contains("drain \"a\": source.max_files_per_scan: invalid type"), "{got}");
        // Before: a bare "missing field `to`", with no drain and no table named.
        let first = drain("a", "");
        for (lines, says) in [
            (
                "[drain.window]\ndays = \"mon-fri\"\nfrom = \"09:00\"\n",
                "drain \"b\": window: missing field `to`",
            ),
            (
                "window.days = \"mon-fri\"\nwindow.from = \"09:00\"\n",
                "drain \"b\": window: missing field `to`",
            ),
            ("[drain.source]\nglob = \"*\"\n", "drain \"b\": source: missing field `dir`"),
        ] {
            let got = message(&format!("{first}{}", drain("b", lines)));
            assert!(got.contains(says), "{lines}: {got}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_or_too_large_names_its_drain_and_key() {
        let path = Path::new("/etc/drainctl/c.toml");
        let drain = |line: &str| format!("[[drain]]\nname = \"halacha\"\ncommand = [\"x\"]\n{line}\n");
        let message = |text: &str| Config::from_text(text, Some(path)).unwrap_err().to_string();
        assert_eq!(
            message(&drain("max_items_per_pass = \"50\"")),
            "/etc/drainctl/c.toml:4:22: drain \"halacha\": max_items_per_pass: invalid type: string \"50\", \
             expected an integer"
        );
        let too_large = message(&drain("max_attempts = 99999999999999999999"));
        assert!(
            too_large.starts_with("/etc/drainctl/c.toml:4:16: drain \"halacha\": max_attempts: "),
            "{too_large}"
        );
        let defaults = message("[defaults]\nkill_grace = 30\n");
        assert!(
            defaults.starts_with("/etc/drainctl/c.toml:2:14: kill_grace: invalid type: integer"),
            "{defaults}"
        );
    }

    #[test]
    fn descriptor_paths_are_told_from_files_by_where_their_links_lead() {
        let own = format!("/proc/{}/fd/4", std::process::id());
        // A file inside a folder a descriptor names is a file like any other, whose owner
        // is checked; but no other process opens it by that path.
        assert!(!is_descriptor_path(Path::new("/proc/self/fd/0/drainctl.toml")));
        assert!(leads_through_a_descriptor(Path::new("/proc/self/fd/0/drainctl.toml")));
        assert!(leads_through_a_descriptor(Path::new("/dev/stdin")));
        assert!(!leads_through_a_descriptor(Path::new("/etc/drainctl/drainctl.toml")));
        for path in ["/dev/stdin", "/dev/fd/0", "/dev/fd/3", "/proc/self/fd/0", &own, "/dev/fd/../fd/0"] {
            assert!(is_descriptor_path(Path::new(path)), "{path}");
        }
        // Another process's descriptor is a file whose owner is checked: before, a link to
        // `/proc/PID/fd/0` of another user's process skipped the check.
        for path in [
            "/etc/drainctl/drainctl.toml",
            "/dev/null",
            "/dev/fd",
            "/proc/self/status",
            "drainctl.toml",
            "/proc/1/fd/4",
        ] {
            assert!(!is_descriptor_path(Path::new(path)), "{path}");
        }
        let folder = tempfile::tempdir().unwrap();
        let link = folder.path().join("link");
        std::os::unix::fs::symlink("/dev/stdin", &link).unwrap();
        assert!(is_descriptor_path(&link));
        let link_to_folder = folder.path().join("fds");
        std::os::unix::fs::symlink("/proc/self/fd", &link_to_folder).unwrap();
        assert!(is_descriptor_path(&link_to_folder.join("0")));
    }

    #[test]
    fn unknown_drain_lists_known_ones() {
        let config = resolve(MINIMAL).unwrap();
        let error = config.drain("halach").unwrap_err();
        assert_eq!(error.to_string(), "unknown drain \"halach\"; known: halacha");
    }
}
