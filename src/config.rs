//! Configuration: one TOML file, parsed strictly, then resolved into typed settings.
//!
//! [`RawConfig`] mirrors the file (strings, unknown keys refused); [`Config::resolve`]
//! turns it into [`Config`]: durations parsed, zones checked, regexes compiled, paths made
//! absolute against the file's folder, every default filled in. Every error names the file,
//! the line and column, and the bad value, before any database connection is opened.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use crate::duration::{parse_bounded_duration, parse_duration};
use crate::error::{register_secret, Error, Result};
use crate::model::EventKind;
use crate::quota::Profile;
use crate::window::Window;

/// Environment variables that name the configuration file and the database.
pub const CONFIG_ENV: &str = "DRAINCTL_CONFIG";
pub const DATABASE_URL_ENV: &str = "DRAINCTL_DATABASE_URL";
pub const FALLBACK_DATABASE_URL_ENV: &str = "DATABASE_URL";
/// Variables that carry drainctl's database credentials: removed from the environment of
/// every worker and notifier (a drain's own `env` may set them again), so that a child
/// never sees the password unless the configuration hands it over. See
/// docs/worker-contract.md.
pub const WITHHELD_ENV: [&str; 3] = [DATABASE_URL_ENV, FALLBACK_DATABASE_URL_ENV, "PGPASSWORD"];
/// Searched in this order when neither `--config` nor `$DRAINCTL_CONFIG` is given.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = ["./drainctl.toml", "/etc/drainctl/drainctl.toml"];

pub const DEFAULT_BURST_UNTIL: &str = "sat 18:00";
pub const DEFAULT_BURST_MAX: &str = "14d";
pub const DEFAULT_BACKOFF: &str = "1h";
pub const DEFAULT_RESET_MARGIN: &str = "1m";
pub const DEFAULT_SUSPECTED_BACKOFF: &str = "5m";
pub const DEFAULT_KILL_GRACE: &str = "10s";
pub const DEFAULT_SUPERVISE_INTERVAL: &str = "15m";
pub const DEFAULT_MAX_ITEMS_PER_PASS: u32 = 50;
pub const DEFAULT_MAX_SECONDS_PER_PASS: &str = "55m";
pub const DEFAULT_ITEM_TIMEOUT: &str = "20m";
pub const DEFAULT_LIVENESS_TIMEOUT: &str = "15m";
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_RETRY_BASE: &str = "1m";
pub const DEFAULT_RETRY_MAX: &str = "6h";
pub const DEFAULT_CHECKPOINT_PATTERN: &str = "^::checkpoint::";
pub const DEFAULT_CONCURRENCY: u32 = 1;
pub const DEFAULT_MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_STDERR_TAIL_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PROFILE: &str = "claude";
pub const DEFAULT_NOTIFY_ON: [EventKind; 5] = [
    EventKind::RunHung,
    EventKind::RunCrashed,
    EventKind::ItemDeadLettered,
    EventKind::BurstExpired,
    EventKind::BackoffSet,
];
pub const DEFAULT_NOTIFY_TIMEOUT: &str = "10s";
pub const DEFAULT_SWITCH_COOLDOWN: &str = "15m";
pub const DEFAULT_RESUME_PATTERN: &str = r"^::resume::\s*(\S+)";
/// A UUID: 36 characters of hex digits and dashes in 8-4-4-4-12 form.
pub const DEFAULT_RESUME_TOKEN_FORMAT: &str =
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
/// What `{token}` in `resume_args` is replaced with.
pub const RESUME_TOKEN_PLACEHOLDER: &str = "{token}";
pub const DEFAULT_SOURCE_GLOB: &str = "**/*";
pub const DEFAULT_MAX_FILES_PER_SCAN: u32 = 10_000;
pub const DEFAULT_RETENTION_RUNS: &str = "30d";
pub const DEFAULT_RETENTION_EVENTS: &str = "90d";
pub const DEFAULT_RETENTION_LOGS: &str = "14d";

// ---------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default, rename = "quota_group")]
    pub quota_groups: Vec<RawQuotaGroup>,
    #[serde(default, rename = "drain")]
    pub drains: Vec<RawDrain>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuotaGroup {
    pub name: Spanned<String>,
    pub switch_cooldown: Option<Spanned<String>>,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: Spanned<String>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub timezone: Option<Spanned<String>>,
    pub burst_default_until: Option<Spanned<String>>,
    pub burst_max: Option<Spanned<String>>,
    pub log_dir: Option<Spanned<String>>,
    pub metrics_textfile: Option<String>,
    pub notify_command: Option<Spanned<Vec<String>>>,
    pub default_backoff: Option<Spanned<String>>,
    pub reset_margin: Option<Spanned<String>>,
    pub suspected_backoff: Option<Spanned<String>>,
    pub kill_grace: Option<Spanned<String>>,
    pub supervise_interval: Option<Spanned<String>>,
    pub notify_on: Option<Spanned<Vec<String>>>,
    pub notify_timeout: Option<Spanned<String>>,
    pub retention: Option<Spanned<RawRetention>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub runs: Option<String>,
    pub events: Option<String>,
    pub logs: Option<String>,
    pub done_items: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrain {
    pub name: Spanned<String>,
    pub command: Spanned<Vec<String>>,
    pub workdir: Option<Spanned<String>>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    pub quota_group: Option<Spanned<String>>,
    pub quota_profile: Option<Spanned<String>>,
    pub quota_patterns: Option<Spanned<Vec<String>>>,
    pub veto_patterns: Option<Spanned<Vec<String>>>,
    pub window: Option<Spanned<RawWindow>>,
    pub max_items_per_pass: Option<Spanned<i64>>,
    pub max_seconds_per_pass: Option<Spanned<String>>,
    pub item_timeout: Option<Spanned<String>>,
    pub liveness_timeout: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub retry_backoff: Option<Spanned<RawRetryBackoff>>,
    pub checkpoint_pattern: Option<Spanned<String>>,
    pub resume_pattern: Option<Spanned<String>>,
    pub resume_token_format: Option<Spanned<String>>,
    pub resume_args: Option<Spanned<Vec<String>>>,
    pub concurrency: Option<Spanned<i64>>,
    pub max_result_bytes: Option<Spanned<i64>>,
    pub stderr_tail_bytes: Option<Spanned<i64>>,
    pub source: Option<Spanned<RawSource>>,
    pub every: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub dir: String,
    pub glob: Option<String>,
    pub max_files_per_scan: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub days: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBackoff {
    pub base: Option<String>,
    pub max: Option<String>,
}

// ---------------------------------------------------------------------------------------
// The resolved, typed configuration.

#[derive(Debug)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub database_url: Option<DatabaseUrl>,
    pub defaults: Defaults,
    /// Every quota group a drain names, declared (`[[quota_group]]`) or implicit, in the
    /// order declared, then the implicit ones in the order of their first drain.
    pub quota_groups: Vec<QuotaGroupConfig>,
    pub drains: Vec<DrainConfig>,
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
    /// Declared with `[[quota_group]]` (else implied by a drain's `quota_group`).
    pub is_declared: bool,
}

impl QuotaGroupConfig {
    fn implicit(name: String) -> QuotaGroupConfig {
        QuotaGroupConfig {
            name,
            switch_cooldown: parse_duration(DEFAULT_SWITCH_COOLDOWN).unwrap_or(Duration::from_secs(900)),
            accounts: vec![AccountConfig::implicit()],
            is_declared: false,
        }
    }

    /// The group has several accounts to switch between.
    pub fn has_accounts_to_switch(&self) -> bool {
        self.accounts.len() > 1
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
    pub notify_command: Option<Vec<String>>,
    pub default_backoff: Duration,
    pub reset_margin: Duration,
    pub suspected_backoff: Duration,
    pub kill_grace: Duration,
    pub supervise_interval: Duration,
    /// Event kinds that run `notify_command`.
    pub notify_on: Vec<EventKind>,
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
    pub quota_patterns: Vec<String>,
    pub veto_patterns: Vec<String>,
    pub window: Option<Window>,
    pub max_items_per_pass: u32,
    pub max_seconds_per_pass: Duration,
    pub item_timeout: Duration,
    pub liveness_timeout: Duration,
    pub max_attempts: u32,
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
}

/// A file-backed source: every regular file under `dir` matching `glob` is an item.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Absolute (resolved against the config file's folder).
    pub dir: PathBuf,
    pub glob: crate::glob::Glob,
    pub max_files_per_scan: u32,
}

impl Config {
    /// Find and load the configuration. `explicit` is `--config`. When no file is named
    /// and none of the default paths exists, an empty configuration is returned if
    /// `file_is_optional` (commands such as `migrate` that need only the database).
    pub fn discover(explicit: Option<&Path>, file_is_optional: bool) -> Result<Config> {
        match Config::locate(explicit) {
            Some(path) => Config::load(&path),
            None if file_is_optional => Config::from_text("", None),
            None => Err(Error::Config(format!(
                "no configuration file: pass --config PATH, set ${CONFIG_ENV}, or create {}",
                DEFAULT_CONFIG_PATHS.join(" or ")
            ))),
        }
    }

    /// The file [`Config::discover`] would read: `explicit`, else `$DRAINCTL_CONFIG`, else
    /// the first default path that exists.
    pub fn locate(explicit: Option<&Path>) -> Option<PathBuf> {
        let named = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from));
        match named {
            Some(path) => Some(path),
            None => DEFAULT_CONFIG_PATHS.iter().map(PathBuf::from).find(|p| p.is_file()),
        }
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            Error::Config(format!("cannot read configuration file {}: {error}", path.display()))
        })?;
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Config::from_text(&text, Some(&absolute))
    }

    /// Parse and resolve configuration text. `path` is used for messages and to resolve
    /// relative paths.
    pub fn from_text(text: &str, path: Option<&Path>) -> Result<Config> {
        let source = Source { text, path };
        let raw: RawConfig = toml::from_str(text).map_err(|error| {
            let message = error.message().trim().replace('\n', "; ");
            source.error_at(error.span(), &message)
        })?;
        Config::resolve(raw, &source)
    }

    fn resolve(raw: RawConfig, source: &Source) -> Result<Config> {
        let base_dir = source.base_dir();
        let database_url = resolve_database_url(raw.database.url, source);
        let defaults = resolve_defaults(raw.defaults, source, &base_dir)?;
        let mut quota_groups = Vec::with_capacity(raw.quota_groups.len());
        for raw_group in raw.quota_groups {
            quota_groups.push(resolve_quota_group(raw_group, source, &quota_groups)?);
        }
        let mut drains = Vec::with_capacity(raw.drains.len());
        let mut seen = HashSet::new();
        for raw_drain in raw.drains {
            let drain = resolve_drain(raw_drain, source, &base_dir, &mut seen)?;
            if !quota_groups.iter().any(|group| group.name == drain.quota_group) {
                quota_groups.push(QuotaGroupConfig::implicit(drain.quota_group.clone()));
            }
            drains.push(drain);
        }
        Ok(Config { path: source.path.map(Path::to_path_buf), database_url, defaults, quota_groups, drains })
    }

    /// The quota group called `name` (every drain's group is there, declared or implicit).
    pub fn quota_group(&self, name: &str) -> Result<&QuotaGroupConfig> {
        self.quota_groups.iter().find(|group| group.name == name).ok_or_else(|| {
            Error::Internal(format!("quota group {name:?} is not in the resolved configuration"))
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
            Error::Usage(format!("unknown drain {name:?}; {known}"))
        })
    }

    /// The database URL, or a configuration error that says how to provide one.
    pub fn require_database_url(&self) -> Result<&DatabaseUrl> {
        self.database_url.as_ref().ok_or_else(|| {
            Error::Config(format!(
                "no database URL: set [database] url in the configuration, or \
                 ${DATABASE_URL_ENV} or ${FALLBACK_DATABASE_URL_ENV}"
            ))
        })
    }
}

/// The configuration text and where it came from, for error locations.
struct Source<'a> {
    text: &'a str,
    path: Option<&'a Path>,
}

impl Source<'_> {
    fn name(&self) -> String {
        self.path.map(|p| p.display().to_string()).unwrap_or_else(|| "<configuration>".into())
    }

    fn base_dir(&self) -> PathBuf {
        self.path
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")))
    }

    /// `file:line:column: message` for a byte span of the text.
    fn error_at(&self, span: Option<std::ops::Range<usize>>, message: &str) -> Error {
        let location = match span {
            Some(span) => {
                let (line, column) = line_and_column(self.text, span.start);
                format!("{}:{line}:{column}", self.name())
            }
            None => self.name(),
        };
        Error::Config(format!("{location}: {message}"))
    }

    fn error_for<T>(&self, value: &Spanned<T>, message: &str) -> Error {
        self.error_at(Some(value.span()), message)
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn resolve_database_url(from_file: Option<String>, source: &Source) -> Option<DatabaseUrl> {
    let from_env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|url| DatabaseUrl { url, source: format!("${name}") })
    };
    let chosen = from_env(DATABASE_URL_ENV)
        .or_else(|| {
            from_file.map(|url| DatabaseUrl { url, source: format!("[database] url in {}", source.name()) })
        })
        .or_else(|| from_env(FALLBACK_DATABASE_URL_ENV));
    if let Some(url) = &chosen {
        if let Some(password) = password_of(&url.url) {
            register_secret(&password);
        }
    }
    chosen
}

/// The password inside a URL (`postgres://user:pw@host/db`) or a key/value connection
/// string (`password=pw`), so it can be scrubbed from every message.
pub fn password_of(url: &str) -> Option<String> {
    if let Ok(config) = url.parse::<postgres::Config>() {
        if let Some(password) = config.get_password() {
            return Some(String::from_utf8_lossy(password).into_owned());
        }
    }
    // A URL that does not parse may still carry a password: take what sits between the
    // user's ':' and the '@'.
    let rest = url.split_once("://").map(|(_, rest)| rest)?;
    let authority = rest.split_once('@').map(|(authority, _)| authority)?;
    authority.split_once(':').map(|(_, password)| password.to_string())
}

fn resolve_defaults(raw: RawDefaults, source: &Source, base_dir: &Path) -> Result<Defaults> {
    let timezone = match &raw.timezone {
        Some(zone) => parse_zone(zone.get_ref())
            .map_err(|message| source.error_for(zone, &format!("timezone: {message}")))?,
        None => local_zone(),
    };
    let duration = |value: &Option<Spanned<String>>, key: &str, default: &str| -> Result<Duration> {
        spanned_duration(value, key, default, source)
    };
    let burst_default_until = match &raw.burst_default_until {
        Some(when) => {
            let probe = chrono::Utc::now();
            crate::when::parse_when(when.get_ref(), probe, timezone)
                .map_err(|error| source.error_for(when, &format!("burst_default_until: {error}")))?;
            when.get_ref().clone()
        }
        None => DEFAULT_BURST_UNTIL.to_string(),
    };
    let notify_command = match raw.notify_command {
        Some(command) if command.get_ref().is_empty() => {
            return Err(source.error_for(&command, "notify_command: must name a program"))
        }
        Some(command) => {
            check_arguments(&command, "notify_command", source)?;
            Some(resolve_command(command.into_inner(), base_dir))
        }
        None => None,
    };
    let notify_on = match &raw.notify_on {
        Some(kinds) => {
            let mut list = Vec::with_capacity(kinds.get_ref().len());
            for kind in kinds.get_ref() {
                let kind: EventKind =
                    kind.parse().map_err(|error| source.error_for(kinds, &format!("notify_on: {error}")))?;
                if !list.contains(&kind) {
                    list.push(kind);
                }
            }
            list
        }
        None => DEFAULT_NOTIFY_ON.to_vec(),
    };
    let notify_timeout =
        spanned_positive_duration(&raw.notify_timeout, "notify_timeout", DEFAULT_NOTIFY_TIMEOUT, source)?;
    let retention = resolve_retention(raw.retention.as_ref(), source)?;
    Ok(Defaults {
        retention,
        notify_on,
        notify_timeout,
        timezone,
        burst_default_until,
        burst_max: duration(&raw.burst_max, "burst_max", DEFAULT_BURST_MAX)?,
        log_dir: match raw.log_dir {
            Some(dir) => {
                check_path(&dir, "log_dir", source)?;
                base_dir.join(dir.into_inner())
            }
            None => default_log_dir(),
        },
        metrics_textfile: raw.metrics_textfile.map(|file| base_dir.join(file)),
        notify_command,
        default_backoff: duration(&raw.default_backoff, "default_backoff", DEFAULT_BACKOFF)?,
        reset_margin: duration(&raw.reset_margin, "reset_margin", DEFAULT_RESET_MARGIN)?,
        suspected_backoff: duration(&raw.suspected_backoff, "suspected_backoff", DEFAULT_SUSPECTED_BACKOFF)?,
        kill_grace: duration(&raw.kill_grace, "kill_grace", DEFAULT_KILL_GRACE)?,
        supervise_interval: duration(
            &raw.supervise_interval,
            "supervise_interval",
            DEFAULT_SUPERVISE_INTERVAL,
        )?,
    })
}

fn resolve_quota_group(
    raw: RawQuotaGroup,
    source: &Source,
    earlier: &[QuotaGroupConfig],
) -> Result<QuotaGroupConfig> {
    let name = raw.name.get_ref().clone();
    if !is_valid_drain_name(&name) {
        return Err(source.error_for(
            &raw.name,
            &format!("invalid quota group name {name:?}: use 1 to 64 of a-z, 0-9, '_' and '-'"),
        ));
    }
    if earlier.iter().any(|group| group.name == name) {
        return Err(source.error_for(&raw.name, &format!("duplicate quota group name {name:?}")));
    }
    let switch_cooldown = spanned_duration(
        &raw.switch_cooldown,
        &format!("quota group {name:?}: switch_cooldown"),
        DEFAULT_SWITCH_COOLDOWN,
        source,
    )?;
    let mut accounts: Vec<AccountConfig> = Vec::with_capacity(raw.accounts.len());
    for account in raw.accounts {
        let account_name = account.name.get_ref().clone();
        if !is_valid_drain_name(&account_name) {
            return Err(source.error_for(
                &account.name,
                &format!(
                    "quota group {name:?}: invalid account name {account_name:?}: use 1 to 64 of a-z, 0-9, '_' and '-'"
                ),
            ));
        }
        if accounts.iter().any(|earlier| earlier.name == account_name) {
            return Err(source.error_for(
                &account.name,
                &format!("quota group {name:?}: duplicate account name {account_name:?}"),
            ));
        }
        let env = match account.env {
            Some(env) => {
                check_environment(
                    &env,
                    &format!("quota group {name:?}: account {account_name:?}: env"),
                    source,
                )?;
                env.into_inner().into_iter().collect()
            }
            None => Vec::new(),
        };
        accounts.push(AccountConfig { name: account_name, env });
    }
    if accounts.is_empty() {
        accounts.push(AccountConfig::implicit());
    }
    Ok(QuotaGroupConfig { name, switch_cooldown, accounts, is_declared: true })
}

fn resolve_retention(raw: Option<&Spanned<RawRetention>>, source: &Source) -> Result<Retention> {
    let horizon = |key: &str, value: Option<&String>| -> Result<Option<Duration>> {
        let (Some(raw), Some(text)) = (raw, value) else { return Ok(None) };
        let duration = parse_bounded_duration(text)
            .map_err(|message| source.error_for(raw, &format!("retention.{key}: {message}")))?;
        if duration.is_zero() {
            return Err(source.error_for(raw, &format!("retention.{key}: must be more than 0s")));
        }
        Ok(Some(duration))
    };
    let or_default = |value: Option<Duration>, default: &str| match value {
        Some(duration) => Ok(duration),
        None => parse_duration(default).map_err(Error::Internal),
    };
    let fields = raw.map(Spanned::get_ref);
    Ok(Retention {
        runs: or_default(horizon("runs", fields.and_then(|f| f.runs.as_ref()))?, DEFAULT_RETENTION_RUNS)?,
        events: or_default(
            horizon("events", fields.and_then(|f| f.events.as_ref()))?,
            DEFAULT_RETENTION_EVENTS,
        )?,
        logs: or_default(horizon("logs", fields.and_then(|f| f.logs.as_ref()))?, DEFAULT_RETENTION_LOGS)?,
        done_items: horizon("done_items", fields.and_then(|f| f.done_items.as_ref()))?,
    })
}

fn resolve_source(
    raw: &Spanned<RawSource>,
    drain: &str,
    source: &Source,
    base_dir: &Path,
) -> Result<SourceConfig> {
    let value = raw.get_ref();
    let error = |key: &str, message: String| {
        source.error_for(raw, &format!("drain {drain:?}: source.{key}: {message}"))
    };
    if value.dir.trim().is_empty() {
        return Err(error("dir", "is empty; name the folder whose files become items".to_string()));
    }
    if value.dir.contains('\0') {
        return Err(error(
            "dir",
            format!("{:?} has a NUL character, which no path can hold; remove it", value.dir),
        ));
    }
    let glob = crate::glob::Glob::parse(value.glob.as_deref().unwrap_or(DEFAULT_SOURCE_GLOB))
        .map_err(|message| error("glob", message))?;
    let max_files_per_scan = match value.max_files_per_scan {
        None => DEFAULT_MAX_FILES_PER_SCAN,
        Some(n) if (1..=10_000_000).contains(&n) => n as u32,
        Some(n) => {
            return Err(error("max_files_per_scan", format!("{n} is out of range; use 1 to 10000000")))
        }
    };
    Ok(SourceConfig { dir: base_dir.join(&value.dir), glob, max_files_per_scan })
}

fn resolve_drain(
    raw: RawDrain,
    source: &Source,
    base_dir: &Path,
    seen: &mut HashSet<String>,
) -> Result<DrainConfig> {
    let name = raw.name.get_ref().clone();
    if !is_valid_drain_name(&name) {
        return Err(source.error_for(
            &raw.name,
            &format!("invalid drain name {name:?}: use 1 to 64 of a-z, 0-9, '_' and '-'"),
        ));
    }
    if !seen.insert(name.clone()) {
        return Err(source.error_for(&raw.name, &format!("duplicate drain name {name:?}")));
    }
    let context = |key: &str| format!("drain {name:?}: {key}");
    if raw.command.get_ref().is_empty() || raw.command.get_ref()[0].trim().is_empty() {
        return Err(source.error_for(
            &raw.command,
            &format!("{}: must name a program, e.g. [\"claude\", \"-p\"]", context("command")),
        ));
    }
    check_arguments(&raw.command, &context("command"), source)?;
    if let Some(env) = &raw.env {
        check_environment(env, &context("env"), source)?;
    }
    if let Some(workdir) = &raw.workdir {
        check_path(workdir, &context("workdir"), source)?;
    }
    if let Some(resume_args) = &raw.resume_args {
        check_arguments(resume_args, &context("resume_args"), source)?;
    }
    let duration = |value: &Option<Spanned<String>>, key: &str, default: &str| {
        spanned_duration(value, &context(key), default, source)
    };
    let count = |value: &Option<Spanned<i64>>, key: &str, default: u32, min: i64, max: i64| {
        spanned_count(value, &context(key), default, min, max, source)
    };
    let quota_group = match &raw.quota_group {
        Some(group) if !is_valid_drain_name(group.get_ref()) => {
            return Err(source.error_for(
                group,
                &format!(
                    "{}: invalid name {:?}: use 1 to 64 of a-z, 0-9, '_' and '-'",
                    context("quota_group"),
                    group.get_ref()
                ),
            ))
        }
        Some(group) => group.get_ref().clone(),
        None => name.clone(),
    };
    let quota_profile_text =
        raw.quota_profile.as_ref().map(|p| p.get_ref().as_str()).unwrap_or(DEFAULT_PROFILE);
    let quota_profile: Profile =
        quota_profile_text.parse().map_err(|message: String| match &raw.quota_profile {
            Some(profile) => source.error_for(profile, &format!("{}: {message}", context("quota_profile"))),
            None => Error::Internal(message),
        })?;
    for (patterns, key) in [(&raw.quota_patterns, "quota_patterns"), (&raw.veto_patterns, "veto_patterns")] {
        let Some(patterns) = patterns else { continue };
        for pattern in patterns.get_ref() {
            if pattern.trim().is_empty() {
                return Err(source.error_for(
                    patterns,
                    &format!("{}: an empty pattern would match every line; remove it", context(key)),
                ));
            }
            if let Err(error) = regex::RegexBuilder::new(pattern).case_insensitive(true).build() {
                return Err(source
                    .error_for(patterns, &format!("{}: invalid regex {pattern:?}: {error}", context(key))));
            }
        }
    }
    let window =
        match &raw.window {
            Some(window) => {
                let w = window.get_ref();
                Some(Window::parse(&w.days, &w.from, &w.to).map_err(|message| {
                    source.error_for(window, &format!("{}: {message}", context("window")))
                })?)
            }
            None => None,
        };
    let retry_backoff = match &raw.retry_backoff {
        Some(retry) => {
            let parse = |value: &Option<String>, key: &str, default: &str| {
                let text = value.as_deref().unwrap_or(default);
                parse_bounded_duration(text)
                    .map_err(|message| source.error_for(retry, &format!("{}: {message}", context(key))))
            };
            RetryBackoff {
                base: parse(&retry.get_ref().base, "retry_backoff.base", DEFAULT_RETRY_BASE)?,
                max: parse(&retry.get_ref().max, "retry_backoff.max", DEFAULT_RETRY_MAX)?,
            }
        }
        None => RetryBackoff {
            base: parse_duration(DEFAULT_RETRY_BASE).map_err(Error::Internal)?,
            max: parse_duration(DEFAULT_RETRY_MAX).map_err(Error::Internal)?,
        },
    };
    let checkpoint_pattern = match &raw.checkpoint_pattern {
        Some(pattern) => Regex::new(pattern.get_ref()).map_err(|error| {
            source.error_for(
                pattern,
                &format!("{}: invalid regex {:?}: {error}", context("checkpoint_pattern"), pattern.get_ref()),
            )
        })?,
        None => Regex::new(DEFAULT_CHECKPOINT_PATTERN).map_err(|e| Error::Internal(e.to_string()))?,
    };
    let resume_pattern = match &raw.resume_pattern {
        Some(pattern) => {
            let compiled = Regex::new(pattern.get_ref()).map_err(|error| {
                source.error_for(
                    pattern,
                    &format!("{}: invalid regex {:?}: {error}", context("resume_pattern"), pattern.get_ref()),
                )
            })?;
            if compiled.captures_len() < 2 {
                return Err(source.error_for(
                    pattern,
                    &format!(
                        "{}: {:?} has no capture group; put the token in parentheses, e.g. '^::resume::\\s*(\\S+)'",
                        context("resume_pattern"),
                        pattern.get_ref()
                    ),
                ));
            }
            compiled
        }
        None => Regex::new(DEFAULT_RESUME_PATTERN).map_err(|e| Error::Internal(e.to_string()))?,
    };
    let resume_token_format = {
        let text = raw.resume_token_format.as_ref().map(|f| f.get_ref().as_str());
        let text = text.unwrap_or(DEFAULT_RESUME_TOKEN_FORMAT);
        // Anchored: a token must match as a whole, never just contain a match.
        Regex::new(&format!("^(?:{text})$")).map_err(|error| match &raw.resume_token_format {
            Some(format) => source.error_for(
                format,
                &format!("{}: invalid regex {text:?}: {error}", context("resume_token_format")),
            ),
            None => Error::Internal(error.to_string()),
        })?
    };
    let resume_args = raw.resume_args.map(Spanned::into_inner).unwrap_or_default();
    let positive = |value: &Option<Spanned<String>>, key: &str, default: &str| {
        spanned_positive_duration(value, &context(key), default, source)
    };
    let item_timeout = positive(&raw.item_timeout, "item_timeout", DEFAULT_ITEM_TIMEOUT)?;
    let liveness_timeout = positive(&raw.liveness_timeout, "liveness_timeout", DEFAULT_LIVENESS_TIMEOUT)?;
    let source_config = match &raw.source {
        Some(raw_source) => Some(resolve_source(raw_source, &name, source, base_dir)?),
        None => None,
    };
    // Without a value there is no cadence; the default is never used.
    let every = match &raw.every {
        Some(_) => Some(positive(&raw.every, "every", "1s")?),
        None => None,
    };
    Ok(DrainConfig {
        source: source_config,
        every,
        command: resolve_command(raw.command.get_ref().clone(), base_dir),
        workdir: raw.workdir.map(|dir| base_dir.join(dir.into_inner())),
        env: raw.env.map(Spanned::into_inner).unwrap_or_default().into_iter().collect(),
        quota_group,
        quota_profile,
        quota_patterns: raw.quota_patterns.map(Spanned::into_inner).unwrap_or_default(),
        veto_patterns: raw.veto_patterns.map(Spanned::into_inner).unwrap_or_default(),
        window,
        max_items_per_pass: count(
            &raw.max_items_per_pass,
            "max_items_per_pass",
            DEFAULT_MAX_ITEMS_PER_PASS,
            1,
            1_000_000,
        )?,
        max_seconds_per_pass: duration(
            &raw.max_seconds_per_pass,
            "max_seconds_per_pass",
            DEFAULT_MAX_SECONDS_PER_PASS,
        )?,
        item_timeout,
        liveness_timeout,
        max_attempts: count(&raw.max_attempts, "max_attempts", DEFAULT_MAX_ATTEMPTS, 1, 1000)?,
        retry_backoff,
        checkpoint_pattern,
        resume_pattern,
        resume_token_format,
        resume_args,
        concurrency: count(&raw.concurrency, "concurrency", DEFAULT_CONCURRENCY, 1, 64)?,
        max_result_bytes: count(&raw.max_result_bytes, "max_result_bytes", 0, 1, 1 << 30).map(|v| {
            if v == 0 {
                DEFAULT_MAX_RESULT_BYTES
            } else {
                v as usize
            }
        })?,
        stderr_tail_bytes: count(&raw.stderr_tail_bytes, "stderr_tail_bytes", 0, 1, 64 << 20).map(|v| {
            if v == 0 {
                DEFAULT_STDERR_TAIL_BYTES
            } else {
                v as usize
            }
        })?,
        name,
    })
}

fn spanned_duration(
    value: &Option<Spanned<String>>,
    key: &str,
    default: &str,
    source: &Source,
) -> Result<Duration> {
    match value {
        Some(text) => parse_bounded_duration(text.get_ref())
            .map_err(|message| source.error_for(text, &format!("{key}: {message}"))),
        None => parse_duration(default).map_err(Error::Internal),
    }
}

/// As [`spanned_duration`], refusing a zero duration the file states.
fn spanned_positive_duration(
    value: &Option<Spanned<String>>,
    key: &str,
    default: &str,
    source: &Source,
) -> Result<Duration> {
    let duration = spanned_duration(value, key, default, source)?;
    match value {
        Some(text) if duration.is_zero() => {
            Err(source.error_for(text, &format!("{key}: must be more than 0s")))
        }
        _ => Ok(duration),
    }
}

fn spanned_count(
    value: &Option<Spanned<i64>>,
    key: &str,
    default: u32,
    min: i64,
    max: i64,
    source: &Source,
) -> Result<u32> {
    match value {
        Some(number) => {
            let n = *number.get_ref();
            if n < min || n > max {
                return Err(
                    source.error_for(number, &format!("{key}: {n} is out of range; use {min} to {max}"))
                );
            }
            u32::try_from(n).map_err(|_| source.error_for(number, &format!("{key}: {n} is too large")))
        }
        None => Ok(default),
    }
}

/// Refuse an argument no program can receive: one with a NUL character (it would fail
/// only when the program is started).
fn check_arguments(arguments: &Spanned<Vec<String>>, key: &str, source: &Source) -> Result<()> {
    for (index, argument) in arguments.get_ref().iter().enumerate() {
        if argument.contains('\0') {
            return Err(source.error_for(
                arguments,
                &format!(
                    "{key}: argument {} {argument:?} has a NUL character, which no program can receive; remove it",
                    index + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Refuse an environment no program can receive: a variable name that is empty or has
/// `=` or a NUL character, or a value with a NUL character.
fn check_environment(env: &Spanned<BTreeMap<String, String>>, key: &str, source: &Source) -> Result<()> {
    for (name, value) in env.get_ref() {
        let problem = if name.is_empty() {
            Some("a variable name is empty".to_string())
        } else if name.contains('=') || name.contains('\0') {
            Some(format!("variable name {name:?} has a '=' or NUL character; rename it"))
        } else if value.contains('\0') {
            Some(format!("the value of {name} has a NUL character, which no program can receive; remove it"))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(source.error_for(env, &format!("{key}: {problem}")));
        }
    }
    Ok(())
}

/// Refuse a path with a NUL character: no file can have one.
fn check_path(path: &Spanned<String>, key: &str, source: &Source) -> Result<()> {
    if path.get_ref().contains('\0') {
        return Err(source.error_for(
            path,
            &format!("{key}: {:?} has a NUL character, which no path can hold; remove it", path.get_ref()),
        ));
    }
    Ok(())
}

/// `[a-z0-9_-]{1,64}`.
pub fn is_valid_drain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A program given with a slash (`./bin/worker`) is relative to the config's folder; a
/// bare name (`claude`) is looked up on PATH when the worker starts.
fn resolve_command(mut command: Vec<String>, base_dir: &Path) -> Vec<String> {
    if let Some(program) = command.first_mut() {
        if program.contains('/') && !program.starts_with('/') {
            *program = base_dir.join(&*program).display().to_string();
        }
    }
    command
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

/// `$XDG_STATE_HOME/drainctl/logs`, else `~/.local/state/drainctl/logs`.
fn default_log_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("drainctl/logs");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/drainctl/logs"),
        None => PathBuf::from("/var/log/drainctl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Config> {
        Config::from_text(text, Some(Path::new("/etc/drainctl/drainctl.toml")))
    }

    const MINIMAL: &str = "[[drain]]\nname = \"halacha\"\ncommand = [\"claude\", \"-p\"]\n";

    #[test]
    fn every_drain_setting_has_its_default() {
        let config = resolve(MINIMAL).unwrap();
        let drain = &config.drains[0];
        assert_eq!(drain.quota_group, "halacha");
        assert_eq!(drain.quota_profile, Profile::Claude);
        assert_eq!(drain.max_items_per_pass, 50);
        assert_eq!(drain.max_seconds_per_pass, Duration::from_secs(55 * 60));
        assert_eq!(drain.item_timeout, Duration::from_secs(20 * 60));
        assert_eq!(drain.liveness_timeout, Duration::from_secs(15 * 60));
        assert_eq!(drain.max_attempts, 5);
        assert_eq!(drain.retry_backoff.base, Duration::from_secs(60));
        assert_eq!(drain.retry_backoff.max, Duration::from_secs(6 * 3600));
        assert_eq!(drain.concurrency, 1);
        assert_eq!(drain.max_result_bytes, 16 << 20);
        assert_eq!(drain.stderr_tail_bytes, 1 << 20);
        assert!(drain.checkpoint_pattern.is_match("::checkpoint:: 3"));
        assert!(drain.window.is_none());
        assert_eq!(config.defaults.burst_max, Duration::from_secs(14 * 86400));
        assert_eq!(config.defaults.default_backoff, Duration::from_secs(3600));
        assert_eq!(config.defaults.notify_on, DEFAULT_NOTIFY_ON.to_vec());
        assert_eq!(config.defaults.notify_timeout, Duration::from_secs(10));
    }

    #[test]
    fn notify_settings_are_checked() {
        let config = resolve(
            "[defaults]\nnotify_command = [\"notify\"]\nnotify_on = [\"run_hung\", \"run_hung\", \"notify_failed\"]\nnotify_timeout = \"3s\"\n",
        )
        .unwrap();
        assert_eq!(config.defaults.notify_on, [EventKind::RunHung, EventKind::NotifyFailed]);
        assert_eq!(config.defaults.notify_timeout, Duration::from_secs(3));
        for (text, location, fragment) in [
            (
                "[defaults]\nnotify_on = [\"run_hang\"]\n",
                ":2:13:",
                "unknown event kind \"run_hang\"; known: ",
            ),
            ("[defaults]\nnotify_timeout = \"0s\"\n", ":2:18:", "notify_timeout: must be more than 0s"),
            ("[defaults]\nnotify_timeout = \"soon\"\n", ":2:18:", "invalid duration \"soon\""),
        ] {
            let message = resolve(text).unwrap_err().to_string();
            assert!(message.contains(location) && message.contains(fragment), "{message}");
        }
    }

    #[test]
    fn errors_name_file_line_column_and_value() {
        let cases = [
            ("[[drain]]\nname = \"Bad Name\"\ncommand = [\"x\"]\n", ":2:8:", "\"Bad Name\""),
            ("[defaults]\ntimezone = \"Mars/Olympus\"\n", ":2:12:", "\"Mars/Olympus\""),
            ("[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nitem_timeout = \"20x\"\n", ":4:16:", "\"20x\""),
            ("[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nwindw = 1\n", ":4:1:", "windw"),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n[[drain]]\nname = \"a\"\ncommand = [\"y\"]\n",
                ":5:8:",
                "duplicate drain name \"a\"",
            ),
            ("[defaults\n", ":1:", "drainctl.toml"),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nquota_patterns = [\"\"]\n",
                ":4:18:",
                "empty pattern",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nconcurrency = 0\n",
                ":4:15:",
                "concurrency: 0 is out of range",
            ),
        ];
        for (text, location, value) in cases {
            let error = resolve(text).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.exit_code(), 78, "{message}");
            assert!(message.starts_with("/etc/drainctl/drainctl.toml"), "{message}");
            assert!(message.contains(location), "{location} not in {message}");
            assert!(message.contains(value), "{value} not in {message}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let config = resolve(
            "[defaults]\nlog_dir = \"logs\"\n[[drain]]\nname = \"a\"\ncommand = [\"./bin/w\", \"x\"]\nworkdir = \"work\"\n",
        )
        .unwrap();
        assert_eq!(config.defaults.log_dir, PathBuf::from("/etc/drainctl/logs"));
        assert_eq!(config.drains[0].command[0], "/etc/drainctl/./bin/w");
        assert_eq!(config.drains[0].workdir, Some(PathBuf::from("/etc/drainctl/work")));
    }

    #[test]
    fn a_source_resolves_against_the_config_folder_with_its_defaults() {
        let config = resolve(&format!(
            "{MINIMAL}source = {{ dir = \"sessions\" }}\n\
             [[drain]]\nname = \"b\"\ncommand = [\"x\"]\n\
             source = {{ dir = \"/data\", glob = \"*/*.jsonl\", max_files_per_scan = 5 }}\n"
        ))
        .unwrap();
        let source = config.drains[0].source.as_ref().unwrap();
        assert_eq!(source.dir, PathBuf::from("/etc/drainctl/sessions"));
        assert_eq!((source.glob.as_str(), source.max_files_per_scan), ("**/*", 10_000));
        let source = config.drains[1].source.as_ref().unwrap();
        assert_eq!(
            (source.dir.as_path(), source.glob.as_str(), source.max_files_per_scan),
            (Path::new("/data"), "*/*.jsonl", 5)
        );
    }

    #[test]
    fn bad_sources_are_refused_where_they_are_written() {
        for (text, location, fragment) in [
            ("source = { dir = \"d\", glob = \"../*\" }\n", ":4:10:", "source.glob: glob \"../*\" must not"),
            ("source = { dir = \"d\", glob = \"/abs/*\" }\n", ":4:10:", "must be relative to dir"),
            ("source = { dir = \"\" }\n", ":4:10:", "source.dir: is empty"),
            ("source = { dir = \"d\", max_files_per_scan = 0 }\n", ":4:10:", "0 is out of range"),
            ("source = { dir = \"d\", globs = \"*\" }\n", ":4:23:", "unknown field `globs`"),
        ] {
            let error = resolve(&format!("{MINIMAL}{text}")).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.exit_code(), 78, "{message}");
            assert!(message.contains(location) && message.contains(fragment), "{text}: {message}");
        }
    }

    #[test]
    fn every_is_a_duration_of_more_than_zero() {
        let config = resolve(&format!("{MINIMAL}every = \"1h\"\n")).unwrap();
        assert_eq!(config.drains[0].every, Some(Duration::from_secs(3600)));
        assert_eq!(resolve(MINIMAL).unwrap().drains[0].every, None);
        for (text, fragment) in [
            ("every = \"0s\"\n", "every: must be more than 0s"),
            ("every = \"hourly\"\n", "invalid duration \"hourly\""),
        ] {
            let message = resolve(&format!("{MINIMAL}{text}")).unwrap_err().to_string();
            assert!(message.contains(":4:9:") && message.contains(fragment), "{text}: {message}");
        }
    }

    #[test]
    fn retention_has_defaults_and_horizons_of_more_than_zero() {
        let day = Duration::from_secs(86400);
        assert_eq!(
            resolve(MINIMAL).unwrap().defaults.retention,
            Retention { runs: day * 30, events: day * 90, logs: day * 14, done_items: None }
        );
        let config = resolve("[defaults]\nretention = { events = \"7d\", done_items = \"1w\" }\n").unwrap();
        assert_eq!(
            config.defaults.retention,
            Retention { runs: day * 30, events: day * 7, logs: day * 14, done_items: Some(day * 7) }
        );
        for (text, fragment) in [
            ("retention = { runs = \"0s\" }", "retention.runs: must be more than 0s"),
            ("retention = { logs = \"2 weeks\" }", "retention.logs: invalid duration"),
            ("retention = { items = \"1d\" }", "items"),
        ] {
            let message = resolve(&format!("[defaults]\n{text}\n")).unwrap_err().to_string();
            assert!(message.contains(":2:") && message.contains(fragment), "{text}: {message}");
        }
    }

    #[test]
    fn password_is_found_for_scrubbing() {
        assert_eq!(password_of("postgres://u:pw1@h/db").as_deref(), Some("pw1"));
        assert_eq!(password_of("host=h user=u password=pw2").as_deref(), Some("pw2"));
        assert_eq!(password_of("postgres://u@h/db"), None);
    }

    const TWO_ACCOUNTS: &str = "[[quota_group]]\nname = \"claude-chair\"\nswitch_cooldown = \"5m\"\naccounts = [\n  { name = \"chair\", env = { CLAUDE_CONFIG_DIR = \"/home/chair/.claude\" } },\n  { name = \"backup\", env = { CLAUDE_CONFIG_DIR = \"/home/chair/.claude-backup\" } },\n]\n\n[[drain]]\nname = \"halacha\"\ncommand = [\"claude\"]\nquota_group = \"claude-chair\"\n\n[[drain]]\nname = \"other\"\ncommand = [\"claude\"]\nquota_group = \"solo\"\n";

    #[test]
    fn quota_groups_are_declared_with_accounts_or_implied_by_drains() {
        let config = resolve(TWO_ACCOUNTS).unwrap();
        let group = config.quota_group("claude-chair").unwrap();
        assert!(group.is_declared && group.has_accounts_to_switch());
        assert_eq!(group.switch_cooldown, Duration::from_secs(300));
        let names: Vec<&str> = group.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["chair", "backup"]);
        assert_eq!(
            group.accounts[1].env,
            [("CLAUDE_CONFIG_DIR".to_string(), "/home/chair/.claude-backup".to_string())]
        );
        let solo = config.quota_group("solo").unwrap();
        assert!(!solo.is_declared && !solo.has_accounts_to_switch());
        assert_eq!(solo.accounts, [AccountConfig::implicit()]);
        assert_eq!(solo.switch_cooldown, Duration::from_secs(15 * 60));
        // A drain without quota_group is its own implicit group.
        let config = resolve(MINIMAL).unwrap();
        assert_eq!(config.quota_group("halacha").unwrap().accounts, [AccountConfig::implicit()]);
        // A declared group without accounts behaves as an implicit one.
        let config = resolve(&format!("[[quota_group]]\nname = \"halacha\"\n{MINIMAL}")).unwrap();
        let group = config.quota_group("halacha").unwrap();
        assert!(group.is_declared && !group.has_accounts_to_switch());
        assert_eq!(config.quota_groups.len(), 1);
    }

    #[test]
    fn quota_group_and_account_errors_name_the_place() {
        let group = |body: &str| format!("[[quota_group]]\nname = \"g\"\n{body}{MINIMAL}");
        let cases = [
            (
                group("accounts = [{ name = \"a\" }, { name = \"a\" }]\n"),
                ":3:38:",
                "duplicate account name \"a\"",
            ),
            (
                group("accounts = [{ name = \"Main Account\" }]\n"),
                ":3:22:",
                "invalid account name \"Main Account\"",
            ),
            (group("accounts = [{ name = \"a\", envv = {} }]\n"), ":3:", "envv"),
            (group("switch_cooldown = \"5 minutes\"\n"), ":3:19:", "switch_cooldown"),
            (group("acounts = []\n"), ":3:1:", "acounts"),
            (
                "[[quota_group]]\nname = \"g\"\n[[quota_group]]\nname = \"g\"\n".to_string(),
                ":4:8:",
                "duplicate quota group name \"g\"",
            ),
            ("[[quota_group]]\nname = \"G!\"\n".to_string(), ":2:8:", "invalid quota group name \"G!\""),
            (format!("{MINIMAL}resume_pattern = '^::resume::\\s*\\S+'\n"), ":4:18:", "has no capture group"),
            (
                format!("{MINIMAL}resume_token_format = '[a-'\n"),
                ":4:23:",
                "resume_token_format: invalid regex",
            ),
            (format!("{MINIMAL}resume_args = \"--resume\"\n"), ":4:15:", "expected a sequence"),
        ];
        for (text, location, value) in cases {
            let message = resolve(&text).unwrap_err().to_string();
            assert!(message.contains(location), "{location} not in {message}");
            assert!(message.contains(value), "{value} not in {message}");
        }
    }

    #[test]
    fn resume_settings_default_to_a_uuid_token_line_and_no_arguments() {
        let config = resolve(MINIMAL).unwrap();
        let drain = &config.drains[0];
        let token = "123e4567-e89b-12d3-a456-426614174000";
        let line = format!("::resume:: {token}");
        assert_eq!(&drain.resume_pattern.captures(&line).unwrap()[1], token);
        assert!(drain.resume_token_format.is_match(token));
        for bad in ["x; rm -rf /", "--config=/etc/passwd", "123e4567-e89b-12d3-a456-4266141740001", ""] {
            assert!(!drain.resume_token_format.is_match(bad), "{bad}");
        }
        assert!(drain.resume_args.is_empty());
        let config = resolve(&format!(
            "{MINIMAL}resume_args = [\"--resume\", \"{{token}}\"]\nresume_token_format = '[a-z]+'\n"
        ))
        .unwrap();
        assert_eq!(config.drains[0].resume_args, ["--resume", "{token}"]);
        assert!(config.drains[0].resume_token_format.is_match("abc"));
        assert!(!config.drains[0].resume_token_format.is_match("abc-"), "anchored at both ends");
    }

    #[test]
    fn nul_characters_in_what_is_handed_to_the_os_are_refused_where_they_are_written() {
        let drain = "[[drain]]\nname = \"a\"\n";
        let cases = [
            (
                format!("{drain}command = [\"w\", \"x\\u0000y\"]\n"),
                ":3:11:",
                "drain \"a\": command: argument 2 \"x\\0y\" has a NUL character, which no program can receive",
            ),
            (
                format!("{drain}command = [\"w\"]\nenv = {{ TOKEN = \"s\\u0000\" }}\n"),
                ":4:7:",
                "drain \"a\": env: the value of TOKEN has a NUL character",
            ),
            (
                format!("{drain}command = [\"w\"]\nenv = {{ \"A\\u0000B\" = \"1\" }}\n"),
                ":4:7:",
                "drain \"a\": env: variable name \"A\\0B\" has a '=' or NUL character",
            ),
            (
                format!("{drain}command = [\"w\"]\nenv = {{ \"A=B\" = \"1\" }}\n"),
                ":4:7:",
                "drain \"a\": env: variable name \"A=B\"",
            ),
            (
                format!("{drain}command = [\"w\"]\nresume_args = [\"--resume\\u0000\"]\n"),
                ":4:15:",
                "drain \"a\": resume_args: argument 1",
            ),
            (format!("{drain}command = [\"w\"]\nworkdir = \"/srv\\u0000\"\n"), ":4:11:", "drain \"a\": workdir:"),
            (
                format!("{drain}command = [\"w\"]\nsource = {{ dir = \"d\\u0000\" }}\n"),
                ":4:10:",
                "drain \"a\": source.dir:",
            ),
            (
                "[defaults]\nnotify_command = [\"notify\", \"\\u0000\"]\n".to_string(),
                ":2:18:",
                "notify_command: argument 2 \"\\0\" has a NUL character",
            ),
            ("[defaults]\nlog_dir = \"logs\\u0000\"\n".to_string(), ":2:11:", "log_dir:"),
            (
                "[[quota_group]]\nname = \"g\"\naccounts = [{ name = \"x\", env = { K = \"\\u0000\" } }]\n".to_string(),
                ":3:33:",
                "quota group \"g\": account \"x\": env: the value of K has a NUL character",
            ),
        ];
        for (text, location, fragment) in cases {
            let error = resolve(&text).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.exit_code(), 78, "{message}");
            assert!(message.contains(location) && message.contains(fragment), "{text}: {message}");
            assert!(!message.contains('\0') && !message.contains('\n'), "one printable line: {message:?}");
        }
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
    fn unknown_drain_lists_known_ones() {
        let config = resolve(MINIMAL).unwrap();
        let error = config.drain("halach").unwrap_err();
        assert_eq!(error.to_string(), "unknown drain \"halach\"; known: halacha");
    }
}
