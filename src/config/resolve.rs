//! Resolution: the file as written becomes the typed configuration, checked.
//!
//! Durations are parsed and bounded, zones looked up, regexes compiled, names checked,
//! paths made absolute against the file's folder, and whatever the file leaves out taken
//! from [`super::defaults`]. Every error names the file, the line and column, the key and
//! the bad value (see docs/configuration.md), and exits 78 before any database connection
//! is opened.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use toml::Spanned;

use super::defaults::*;
use super::raw::{
    RawConfig, RawDefaults, RawDrain, RawQuotaGroup, RawRetention, RawRetryBackoff, RawSource, RawWindow,
};
use super::{
    local_zone, parse_zone, AccountConfig, Config, DatabaseUrl, Defaults, DrainConfig, QuotaGroupConfig,
    Retention, RetryBackoff, SourceConfig, DATABASE_URL_ENV, FALLBACK_DATABASE_URL_ENV,
};
use crate::duration::parse_bounded_duration;
use crate::error::{register_secret, Error, Result};
use crate::quota::Profile;
use crate::schedule::window::Window;

impl Config {
    pub(super) fn resolve(raw: RawConfig, source: &Source) -> Result<Config> {
        // Whatever URL is used, the file's own may hold a password (doctor warns when
        // others may read the file).
        let file_holds_password = raw.database.url.as_deref().and_then(password_of).is_some();
        // Before any setting is resolved: a refused one is quoted back (the environment's
        // passwords are known from the start, `register_environment_secrets`).
        if let Some(url) = raw.database.url.as_deref() {
            register_password_of(url);
        }
        let file_has_database_url = raw.database.url.as_deref().is_some_and(|url| !url.trim().is_empty());
        let database_url = resolve_database_url(raw.database.url, source);
        let defaults = resolve_defaults(raw.defaults, source)?;
        let mut quota_groups = Vec::with_capacity(raw.quota_groups.len());
        for raw_group in raw.quota_groups {
            quota_groups.push(resolve_quota_group(raw_group, source, &quota_groups)?);
        }
        let mut drains = Vec::with_capacity(raw.drains.len());
        let mut seen = HashSet::new();
        for raw_drain in raw.drains {
            let drain = resolve_drain(raw_drain, source, &mut seen, &defaults)?;
            if !quota_groups.iter().any(|group| group.name == drain.quota_group) {
                quota_groups.push(QuotaGroupConfig::implicit(drain.quota_group.clone()));
            }
            drains.push(drain);
        }
        Ok(Config {
            path: source.path.map(Path::to_path_buf),
            database_url,
            file_holds_password,
            file_has_database_url,
            defaults,
            quota_groups,
            drains,
            read_stamp: None,
        })
    }
}

impl QuotaGroupConfig {
    /// The group a drain names without a `[[quota_group]]`: one implicit account.
    fn implicit(name: String) -> QuotaGroupConfig {
        QuotaGroupConfig {
            name,
            switch_cooldown: DEFAULT_SWITCH_COOLDOWN,
            accounts: vec![AccountConfig::implicit()],
        }
    }
}

/// The configuration text and where it came from, for error locations.
pub(super) struct Source<'a> {
    pub(super) text: &'a str,
    pub(super) path: Option<&'a Path>,
    /// What relative paths are resolved against: the file's folder (the working directory
    /// for text that came from no file), or none for a descriptor drainctl was handed
    /// (`--config /dev/stdin`), whose folder is `/dev` or `/proc`: a relative path there is
    /// refused (docs/configuration.md).
    pub(super) folder: Option<PathBuf>,
}

impl Source<'_> {
    fn name(&self) -> String {
        self.path.map(|p| p.display().to_string()).unwrap_or_else(|| "<configuration>".into())
    }

    /// The folder relative paths of text read from `path` resolve against: its own, or
    /// the working directory for text that came from no file; none for a descriptor.
    pub(super) fn folder_of(path: Option<&Path>, is_descriptor: bool) -> Option<PathBuf> {
        if is_descriptor {
            return None;
        }
        Some(
            path.and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_else(|| std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))),
        )
    }

    /// `path`, the value of `key` at `span`, made absolute against the file's folder; a
    /// relative one in text read from a descriptor is refused, naming the fix.
    fn absolute(&self, path: &str, key: &str, span: std::ops::Range<usize>) -> Result<PathBuf> {
        // No shell reads the file: `~` and `$HOME` would name folders of those names.
        if let Some(named) = shell_reference(path, |_| true) {
            return Err(self.error_at(
                Some(span),
                &format!(
                    "{key}: {path:?} uses {named}, which drainctl does not expand (no shell reads this file); \
                     write the path out, absolute or relative to the configuration file"
                ),
            ));
        }
        if Path::new(path).is_absolute() {
            return Ok(PathBuf::from(path));
        }
        match &self.folder {
            Some(folder) => Ok(folder.join(path)),
            None => Err(self.error_at(
                Some(span),
                &format!(
                    "{key}: {path:?} is relative, and a configuration read from a descriptor ({}) has no \
                     folder to resolve it against; write the path absolute, or give --config the file itself",
                    self.name()
                ),
            )),
        }
    }

    /// `file:line:column: message` for a byte span of the text.
    pub(super) fn error_at(&self, span: Option<std::ops::Range<usize>>, message: &str) -> Error {
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
            // Empty is unset; blanks alone are a value, refused as one with blanks around
            // it (a secret that came out blank must not reach the next source's database).
            .filter(|v| !v.is_empty())
            .map(|url| DatabaseUrl { url, source: format!("${name}") })
    };
    let chosen = from_env(DATABASE_URL_ENV)
        .or_else(|| {
            from_file.map(|url| DatabaseUrl { url, source: format!("[database] url in {}", source.name()) })
        })
        .or_else(|| from_env(FALLBACK_DATABASE_URL_ENV));
    // Its password is a known secret already: the environment's since the start
    // ([`register_environment_secrets`]), the file's since it was parsed.
    chosen
}

/// Register the password of connection URL (or key/value string) `url` as a secret, as
/// it means and as it is written: `p%40ss` is the password `p@ss` to anyone who reads it.
fn register_password_of(url: &str) {
    if let Some(password) = password_of(url) {
        register_secret(&password);
    }
    for written in passwords_as_written(url) {
        // Decoded too: a URL that does not parse (a bad `sslmode` holding the password, a
        // paste error) is quoted back decoded (`Tr0ub!dor`), where it was written `Tr0ub%21dor`.
        register_secret(&crate::db::tls::percent_decode(&written));
        register_secret(&written);
    }
}

/// Register every database password drainctl may come to know before it has parsed its
/// command line and configuration, so that no message about either shows one
/// (docs/configuration.md, `[database]`): those of `$DATABASE_URL`, `$DRAINCTL_DATABASE_URL`
/// and `$PGPASSWORD`.
pub fn register_environment_secrets() {
    for name in [DATABASE_URL_ENV, FALLBACK_DATABASE_URL_ENV] {
        if let Some(url) = std::env::var(name).ok().filter(|url| !url.trim().is_empty()) {
            register_password_of(&url);
        }
    }
    if let Ok(password) = std::env::var("PGPASSWORD") {
        register_secret(&password);
    }
}

/// Register the password of every connection string a configuration text that failed to
/// parse into its settings holds: a value of the wrong type is quoted back, and the file
/// may hold its password elsewhere too (`env = "PGPASSWORD=…"`). The `[database] url`
/// however written (a header, an inline table, dotted or quoted keys, a multi-line
/// string), read as plain TOML; and, should the text not even be TOML, every `url = …`
/// line and every `postgres://user:password@` in it.
pub fn register_secrets_in(text: &str) {
    if let Ok(table) = text.parse::<toml::Table>() {
        let url = table.get("database").and_then(|database| database.get("url"));
        if let Some(url) = url.and_then(toml::Value::as_str) {
            register_password_of(url);
        }
        // Other URLs (another service's, in a drain's `env`) are not drainctl's secret.
        return;
    }
    static URL_SETTING: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        crate::quota::patterns::compile(
            r#"(?m)^\s*(?:database\s*\.\s*)?url\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')"#,
        )
    });
    for found in URL_SETTING.captures_iter(text) {
        if let Some(url) = found.get(1).or_else(|| found.get(2)) {
            register_password_of(url.as_str());
        }
    }
    static ANY_URL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        crate::quota::patterns::compile(r#"(?i)postgres(?:ql)?://[^\s/?#@:'"]*:[^\s'"]*@[^\s'"]*"#)
    });
    for found in ANY_URL.find_iter(text) {
        register_password_of(found.as_str());
    }
}

/// The password inside a URL (`postgres://user:pw@host/db`) or a key/value connection
/// string (`password=pw`), so it can be scrubbed from every message.
fn password_of(url: &str) -> Option<String> {
    // The postgres crate refuses `sslmode=verify-full` and `sslrootcert`, which drainctl
    // reads itself (docs/operations.md, "TLS to the database"): parse without them.
    let without_tls = crate::db::tls::split_tls_settings(url, "").map(|(rest, _)| rest);
    if let Ok(config) = without_tls.as_deref().unwrap_or(url).parse::<postgres::Config>() {
        if let Some(password) = config.get_password() {
            return Some(String::from_utf8_lossy(password).into_owned());
        }
    }
    // A URL that does not parse may still carry a password: the one used, the last.
    passwords_as_written(url).pop()
}

/// Every password a URL holds as it is written, percent-encoding and all: what sits
/// between the user's ':' and the last '@' (an unencoded '@' in a password is what often
/// breaks a URL), and each `password` of its query. In the key/value form, each of its
/// `password=` values as libpq reads them (the last is the one used). A string that does
/// not parse (a bad `sslmode`) may quote any of them back in another setting.
fn passwords_as_written(url: &str) -> Vec<String> {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return crate::db::tls::key_value_settings(url, "password");
    };
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.rsplit_once('@').map(|(authority, _)| authority);
    let mut found: Vec<String> = authority
        .and_then(|authority| authority.split_once(':'))
        .map(|(_, password)| password.to_string())
        .into_iter()
        .collect();
    found.extend(
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, _)| crate::db::tls::percent_decode(key) == "password")
            .map(|(_, value)| value.to_string()),
    );
    found
}

fn resolve_defaults(raw: RawDefaults, source: &Source) -> Result<Defaults> {
    let timezone = match &raw.timezone {
        Some(zone) => parse_zone(zone.get_ref())
            .map_err(|message| source.error_for(zone, &format!("timezone: {message}")))?,
        None => local_zone(),
    };
    let duration = |value: &Option<Spanned<String>>, key: &str, default: Duration| -> Result<Duration> {
        spanned_duration(value, key, default, source)
    };
    // A zero backoff would have a pass call a spent limit again at once, for ever.
    let backoff = |value: &Option<Spanned<String>>, key: &str, default: Duration| -> Result<Duration> {
        spanned_positive_duration(value, key, default, source)
    };
    // Zero would refuse every `burst on`.
    let burst_max = backoff(&raw.burst_max, "burst_max", DEFAULT_BURST_MAX)?;
    let burst_default_until = match &raw.burst_default_until {
        Some(when) => {
            let probe = chrono::Utc::now();
            let deadline = crate::schedule::when::parse_when(when.get_ref(), probe, timezone)
                .map_err(|error| source.error_for(when, &format!("burst_default_until: {error}")))?;
            // A time from now further than burst_max would fail every `burst on` without
            // --until (a clock time or a weekday is within a week, and is checked then).
            let ahead = (deadline - probe).to_std().unwrap_or_default();
            if when.get_ref().trim_start().starts_with('+') && ahead > burst_max {
                return Err(source.error_for(
                    when,
                    &format!(
                        "burst_default_until: {} is further ahead than burst_max ({}), so every `burst on` \
                         without --until would be refused; shorten it or raise burst_max",
                        when.get_ref(),
                        crate::duration::format_duration(burst_max)
                    ),
                ));
            }
            when.get_ref().clone()
        }
        None => DEFAULT_BURST_UNTIL.to_string(),
    };
    let notify_command = match raw.notify_command {
        Some(command) if command.get_ref().first().is_none_or(|program| program.trim().is_empty()) => {
            return Err(source.error_for(&command, "notify_command: must name a program"))
        }
        Some(command) => {
            check_arguments(&command, "notify_command", source)?;
            Some(resolve_command(command, "notify_command", source)?)
        }
        None => None,
    };
    let notify_on = match &raw.notify_on {
        Some(kinds) => {
            let mut list = Vec::with_capacity(kinds.get_ref().len());
            for kind in kinds.get_ref() {
                let kind: crate::model::EventKind =
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
        burst_max,
        log_dir: match raw.log_dir {
            Some(dir) => {
                check_path(
                    &dir,
                    "log_dir",
                    "name the folder of the drains' logs, or remove the key for the default",
                    source,
                )?;
                source.absolute(dir.get_ref(), "log_dir", dir.span())?
            }
            None => default_log_dir(),
        },
        metrics_textfile: match raw.metrics_textfile {
            Some(file) => {
                check_file_path(
                    &file,
                    "metrics_textfile",
                    "name the file to write, or remove the key to write none",
                    source,
                )?;
                Some(source.absolute(file.get_ref(), "metrics_textfile", file.span())?)
            }
            None => None,
        },
        report_html: match raw.report_html {
            Some(file) => {
                check_file_path(
                    &file,
                    "report_html",
                    "name the file to write, or remove the key to write none",
                    source,
                )?;
                Some(source.absolute(file.get_ref(), "report_html", file.span())?)
            }
            None => None,
        },
        notify_command,
        default_backoff: backoff(&raw.default_backoff, "default_backoff", DEFAULT_BACKOFF)?,
        reset_margin: duration(&raw.reset_margin, "reset_margin", DEFAULT_RESET_MARGIN)?,
        suspected_backoff: backoff(&raw.suspected_backoff, "suspected_backoff", DEFAULT_SUSPECTED_BACKOFF)?,
        kill_grace: duration(&raw.kill_grace, "kill_grace", DEFAULT_KILL_GRACE)?,
        // The slot a pass belongs to and the heartbeat's age are counted in it.
        supervise_interval: spanned_positive_duration(
            &raw.supervise_interval,
            "supervise_interval",
            DEFAULT_SUPERVISE_INTERVAL,
            source,
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
    Ok(QuotaGroupConfig { name, switch_cooldown, accounts })
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
    let fields = raw.map(Spanned::get_ref);
    Ok(Retention {
        runs: horizon("runs", fields.and_then(|f| f.runs.as_ref()))?.unwrap_or(DEFAULT_RETENTION_RUNS),
        events: horizon("events", fields.and_then(|f| f.events.as_ref()))?
            .unwrap_or(DEFAULT_RETENTION_EVENTS),
        logs: horizon("logs", fields.and_then(|f| f.logs.as_ref()))?.unwrap_or(DEFAULT_RETENTION_LOGS),
        done_items: horizon("done_items", fields.and_then(|f| f.done_items.as_ref()))?,
    })
}

fn resolve_source(raw: &Spanned<RawSource>, drain: &str, source: &Source) -> Result<SourceConfig> {
    let value = raw.get_ref();
    // Each error points at its value (a dotted `source.glob` may sit lines below the
    // table's first key).
    let error = |at: std::ops::Range<usize>, key: &str, message: String| {
        source.error_at(Some(at), &format!("drain {drain:?}: source.{key}: {message}"))
    };
    let dir = value.dir.get_ref();
    if dir.trim().is_empty() {
        return Err(error(
            value.dir.span(),
            "dir",
            "is empty; name the folder whose files become items".to_string(),
        ));
    }
    if dir.contains('\0') {
        return Err(error(
            value.dir.span(),
            "dir",
            format!("{dir:?} has a NUL character, which no path can hold; remove it"),
        ));
    }
    let glob = match &value.glob {
        Some(glob) => {
            crate::glob::Glob::parse(glob.get_ref()).map_err(|message| error(glob.span(), "glob", message))?
        }
        None => crate::glob::Glob::parse(DEFAULT_SOURCE_GLOB)
            .map_err(|message| error(raw.span(), "glob", message))?,
    };
    let max_files_per_scan = match &value.max_files_per_scan {
        None => DEFAULT_MAX_FILES_PER_SCAN,
        Some(n) if (1..=10_000_000).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            return Err(error(
                n.span(),
                "max_files_per_scan",
                format!("{} is out of range; use 1 to 10000000", n.get_ref()),
            ))
        }
    };
    let max_hash_bytes_per_scan = match &value.max_hash_bytes_per_scan {
        None => DEFAULT_MAX_HASH_BYTES_PER_SCAN,
        Some(n) if *n.get_ref() >= 64 => *n.get_ref() as u64,
        Some(n) => {
            return Err(error(
                n.span(),
                "max_hash_bytes_per_scan",
                format!("{} is out of range; use at least 64 (bytes; 268435456 is 256 MiB)", n.get_ref()),
            ))
        }
    };
    let max_hash_seconds_per_scan = match &value.max_hash_seconds_per_scan {
        None => DEFAULT_MAX_HASH_SECONDS_PER_SCAN,
        Some(text) => match parse_bounded_duration(text.get_ref()) {
            Ok(duration) if !duration.is_zero() => duration,
            Ok(_) => {
                return Err(error(
                    text.span(),
                    "max_hash_seconds_per_scan",
                    "must be more than 0s".to_string(),
                ))
            }
            Err(message) => return Err(error(text.span(), "max_hash_seconds_per_scan", message)),
        },
    };
    Ok(SourceConfig {
        dir: source.absolute(dir, &format!("drain {drain:?}: source.dir"), value.dir.span())?,
        glob,
        max_files_per_scan,
        max_hash_bytes_per_scan,
        max_hash_seconds_per_scan,
    })
}

/// One drain's settings as they are resolved: every message names the drain, then the key.
struct DrainScope<'a> {
    name: &'a str,
    source: &'a Source<'a>,
}

impl DrainScope<'_> {
    /// `drain "a": key`.
    fn key(&self, key: &str) -> String {
        format!("drain {:?}: {key}", self.name)
    }

    /// `file:line:column: drain "a": key: message`, at the value.
    fn error_for<T>(&self, value: &Spanned<T>, key: &str, message: &str) -> Error {
        self.source.error_for(value, &format!("{}: {message}", self.key(key)))
    }
}

/// `liveness_timeout` when the file does not set it: 15 minutes, or, when the drain's
/// `item_timeout` is longer, that timeout with its `kill_grace` and a minute more — a worker
/// that prints no checkpoint (`claude -p`) is ended by its own `item_timeout`, never judged
/// hung first (docs/configuration.md).
pub fn default_liveness_timeout(item_timeout: Duration, kill_grace: Duration) -> Duration {
    let after_item_timeout = item_timeout.saturating_add(kill_grace).saturating_add(Duration::from_secs(60));
    DEFAULT_LIVENESS_TIMEOUT.max(after_item_timeout)
}

/// What one pass of the drain may take on, and how much of a worker's output is kept.
struct PassLimits {
    max_items_per_pass: u32,
    max_seconds_per_pass: Duration,
    max_attempts: u32,
    poison_after: u32,
    concurrency: u32,
    max_result_bytes: usize,
    stderr_tail_bytes: usize,
}

/// A `[[drain]]`, checked in the order its settings are listed here, so the first bad
/// one is the one reported.
/// `defaults`: `supervise_interval` is the default of `max_wait`, `kill_grace` part of
/// that of `liveness_timeout`.
fn resolve_drain(
    raw: RawDrain,
    source: &Source,
    seen: &mut HashSet<String>,
    defaults: &Defaults,
) -> Result<DrainConfig> {
    let name = check_drain_name(&raw.name, source, seen)?;
    let scope = DrainScope { name: &name, source };
    check_drain_inputs(&raw, &scope)?;
    let quota_group = resolve_drain_quota_group(&raw, &scope)?;
    let quota_profile = resolve_quota_profile(&raw, &scope)?;
    let quota_patterns = compile_user_patterns(&raw.quota_patterns, "quota_patterns", &scope)?;
    let veto_patterns = compile_user_patterns(&raw.veto_patterns, "veto_patterns", &scope)?;
    let window = raw.window.as_ref().map(|window| resolve_window(window, &scope)).transpose()?;
    let retry_backoff = match &raw.retry_backoff {
        Some(retry) => resolve_retry_backoff(retry, &scope)?,
        None => DEFAULT_RETRY_BACKOFF,
    };
    let checkpoint_pattern = compile_checkpoint_pattern(&raw.checkpoint_pattern, &scope)?;
    let resume_pattern = compile_resume_pattern(&raw.resume_pattern, &scope)?;
    let resume_token_format = compile_resume_token_format(&raw.resume_token_format, &scope)?;
    let positive = |value: &Option<Spanned<String>>, key: &str, default: Duration| {
        spanned_positive_duration(value, &scope.key(key), default, source)
    };
    let item_timeout = positive(&raw.item_timeout, "item_timeout", DEFAULT_ITEM_TIMEOUT)?;
    let liveness_timeout = positive(
        &raw.liveness_timeout,
        "liveness_timeout",
        default_liveness_timeout(item_timeout, defaults.kill_grace),
    )?;
    let max_wait =
        spanned_duration(&raw.max_wait, &scope.key("max_wait"), defaults.supervise_interval, source)?;
    let source_config =
        raw.source.as_ref().map(|raw_source| resolve_source(raw_source, &name, source)).transpose()?;
    // Without a value there is no cadence.
    let every = raw
        .every
        .as_ref()
        .map(|every| parse_spanned_positive_duration(every, &scope.key("every"), source))
        .transpose()?;
    let limits = resolve_pass_limits(&raw, &scope)?;
    let priority = resolve_priority(&raw.priority, &scope)?;
    let max_cost_per_pass = resolve_cost(&raw.max_cost_per_pass, "max_cost_per_pass", &scope)?;
    let max_cost_per_day = resolve_cost(&raw.max_cost_per_day, "max_cost_per_day", &scope)?;
    Ok(DrainConfig {
        max_cost_per_pass,
        max_cost_per_day,
        source: source_config,
        every,
        command: resolve_command(raw.command, &scope.key("command"), source)?,
        workdir: match &raw.workdir {
            Some(dir) => Some(source.absolute(dir.get_ref(), &scope.key("workdir"), dir.span())?),
            None => None,
        },
        env: raw.env.map(Spanned::into_inner).unwrap_or_default().into_iter().collect(),
        quota_group,
        quota_profile,
        quota_patterns,
        veto_patterns,
        window,
        max_items_per_pass: limits.max_items_per_pass,
        max_seconds_per_pass: limits.max_seconds_per_pass,
        item_timeout,
        liveness_timeout,
        max_wait,
        max_attempts: limits.max_attempts,
        poison_after: limits.poison_after,
        priority,
        retry_backoff,
        checkpoint_pattern,
        resume_pattern,
        resume_token_format,
        resume_args: raw.resume_args.map(Spanned::into_inner).unwrap_or_default(),
        concurrency: limits.concurrency,
        max_result_bytes: limits.max_result_bytes,
        stderr_tail_bytes: limits.stderr_tail_bytes,
        name,
    })
}

/// The drain's name: valid, and not taken by an earlier drain.
fn check_drain_name(name: &Spanned<String>, source: &Source, seen: &mut HashSet<String>) -> Result<String> {
    let text = name.get_ref();
    if !is_valid_drain_name(text) {
        return Err(source
            .error_for(name, &format!("invalid drain name {text:?}: use 1 to 64 of a-z, 0-9, '_' and '-'")));
    }
    if !seen.insert(text.clone()) {
        return Err(source.error_for(name, &format!("duplicate drain name {text:?}")));
    }
    Ok(text.clone())
}

/// Refuse what the operating system cannot hand a worker: a command without a program,
/// and NUL characters in the command, `env`, `workdir` or `resume_args`.
fn check_drain_inputs(raw: &RawDrain, scope: &DrainScope) -> Result<()> {
    let command = raw.command.get_ref();
    if command.is_empty() || command[0].trim().is_empty() {
        return Err(scope.error_for(
            &raw.command,
            "command",
            "must name a program, e.g. [\"claude\", \"-p\"]",
        ));
    }
    check_arguments(&raw.command, &scope.key("command"), scope.source)?;
    if let Some(env) = &raw.env {
        check_environment(env, &scope.key("env"), scope.source)?;
    }
    if let Some(workdir) = &raw.workdir {
        check_path(
            workdir,
            &scope.key("workdir"),
            "name the worker's working folder, or remove the key for drainctl's own",
            scope.source,
        )?;
    }
    if let Some(resume_args) = &raw.resume_args {
        check_arguments(resume_args, &scope.key("resume_args"), scope.source)?;
    }
    Ok(())
}

/// The quota group the drain names, else its own name.
fn resolve_drain_quota_group(raw: &RawDrain, scope: &DrainScope) -> Result<String> {
    match &raw.quota_group {
        Some(group) if !is_valid_drain_name(group.get_ref()) => Err(scope.error_for(
            group,
            "quota_group",
            &format!("invalid name {:?}: use 1 to 64 of a-z, 0-9, '_' and '-'", group.get_ref()),
        )),
        Some(group) => Ok(group.get_ref().clone()),
        None => Ok(scope.name.to_string()),
    }
}

fn resolve_quota_profile(raw: &RawDrain, scope: &DrainScope) -> Result<Profile> {
    match &raw.quota_profile {
        Some(profile) => profile
            .get_ref()
            .parse()
            .map_err(|message: String| scope.error_for(profile, "quota_profile", &message)),
        None => Ok(DEFAULT_QUOTA_PROFILE),
    }
}

/// `quota_patterns` or `veto_patterns`: each a regex, matched case-insensitively, that
/// cannot match every line; compiled once here for every pass's classifier.
fn compile_user_patterns(
    patterns: &Option<Spanned<Vec<String>>>,
    key: &str,
    scope: &DrainScope,
) -> Result<Vec<Regex>> {
    let Some(patterns) = patterns else { return Ok(Vec::new()) };
    let mut compiled = Vec::with_capacity(patterns.get_ref().len());
    for pattern in patterns.get_ref() {
        if pattern.trim().is_empty() {
            return Err(scope.error_for(patterns, key, "an empty pattern would match every line; remove it"));
        }
        let regex = match regex::RegexBuilder::new(pattern).case_insensitive(true).build() {
            Ok(regex) => regex,
            Err(error) => return Err(scope.error_for(patterns, key, &invalid_regex(pattern, &error))),
        };
        // One that matches an empty line (`.*`, `^`, `x*`), or any line at all (`.`), reads
        // every answer as a limit (or no limit as one), as an empty one would.
        const ANY_LINES: [&str; 3] = ["0", "Done.", "Here is the summary you asked for."];
        if regex.is_match("") || ANY_LINES.iter().all(|line| regex.is_match(line)) {
            return Err(scope.error_for(
                patterns,
                key,
                &format!("{pattern:?} matches any line, so every line would read as one; give the words the messages hold"),
            ));
        }
        compiled.push(regex);
    }
    Ok(compiled)
}

fn resolve_window(window: &Spanned<RawWindow>, scope: &DrainScope) -> Result<Window> {
    let w = window.get_ref();
    // The error points at the field it is about (a dotted `window.from` may sit lines
    // below the first of them).
    Window::parse_fields(w.days.get_ref(), w.from.get_ref(), w.to.get_ref()).map_err(|(field, message)| {
        let at = [&w.days, &w.from, &w.to][field];
        scope.error_for(at, "window", &message)
    })
}

/// `retry_backoff = { base, max }`, each defaulted on its own.
fn resolve_retry_backoff(retry: &Spanned<RawRetryBackoff>, scope: &DrainScope) -> Result<RetryBackoff> {
    let parse = |value: &Option<Spanned<String>>, key: &str, default: Duration| match value {
        Some(text) => {
            parse_bounded_duration(text.get_ref()).map_err(|message| scope.error_for(text, key, &message))
        }
        None => Ok(default),
    };
    Ok(RetryBackoff {
        base: parse(&retry.get_ref().base, "retry_backoff.base", DEFAULT_RETRY_BACKOFF.base)?,
        max: parse(&retry.get_ref().max, "retry_backoff.max", DEFAULT_RETRY_BACKOFF.max)?,
    })
}

/// The one line that refuses `pattern`: the regex crate's problem (`unclosed group`) and,
/// for a pattern of one line, the character it points at, instead of its multi-line
/// drawing of the pattern.
fn invalid_regex(pattern: &str, error: &regex::Error) -> String {
    let text = error.to_string();
    let Some(problem) = text.lines().rev().find_map(|line| line.strip_prefix("error: ")) else {
        let text: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
        return format!("invalid regex {pattern:?}: {}", text.join(" "));
    };
    // The drawing indents the pattern by 4 and marks the spot with `^` on the next line.
    let at = text.lines().find_map(|line| {
        let marked = line.strip_prefix("    ")?;
        marked.trim_end().chars().all(|c| c == ' ' || c == '^' || c == '-').then(|| marked.find('^'))?
    });
    match at {
        Some(at) if !pattern.contains('\n') => {
            format!("invalid regex {pattern:?}: {problem} (at character {})", at + 1)
        }
        _ => format!("invalid regex {pattern:?}: {problem}"),
    }
}

/// A pattern the file states, compiled once for every pass; an invalid one is refused.
fn compile_pattern(pattern: &Spanned<String>, key: &str, scope: &DrainScope) -> Result<Regex> {
    Regex::new(pattern.get_ref())
        .map_err(|error| scope.error_for(pattern, key, &invalid_regex(pattern.get_ref(), &error)))
}

fn compile_checkpoint_pattern(pattern: &Option<Spanned<String>>, scope: &DrainScope) -> Result<Regex> {
    let Some(pattern) = pattern else {
        return Regex::new(DEFAULT_CHECKPOINT_PATTERN).map_err(|e| Error::Internal(e.to_string()));
    };
    let compiled = compile_pattern(pattern, "checkpoint_pattern", scope)?;
    if compiled.is_match("") {
        return Err(scope.error_for(
            pattern,
            "checkpoint_pattern",
            &format!(
                "{:?} matches every line, an empty one too, so any output would prove progress; give the \
                 prefix your worker prints, e.g. \"^::checkpoint::\" (or \".\" for any line with text)",
                pattern.get_ref()
            ),
        ));
    }
    Ok(compiled)
}

/// The resume pattern, whose first capture group is the token.
fn compile_resume_pattern(pattern: &Option<Spanned<String>>, scope: &DrainScope) -> Result<Regex> {
    let Some(pattern) = pattern else {
        return Regex::new(DEFAULT_RESUME_PATTERN).map_err(|e| Error::Internal(e.to_string()));
    };
    let compiled = compile_pattern(pattern, "resume_pattern", scope)?;
    if compiled.captures_len() < 2 {
        return Err(scope.error_for(
            pattern,
            "resume_pattern",
            &format!(
                "{:?} has no capture group; put the token in parentheses, e.g. '^::resume::\\s*(\\S+)'",
                pattern.get_ref()
            ),
        ));
    }
    Ok(compiled)
}

fn compile_resume_token_format(format: &Option<Spanned<String>>, scope: &DrainScope) -> Result<Regex> {
    let text = format.as_ref().map_or(DEFAULT_RESUME_TOKEN_FORMAT, |format| format.get_ref().as_str());
    if let Some(format) = format.as_ref().filter(|format| format.get_ref().trim().is_empty()) {
        return Err(scope.error_for(
            format,
            "resume_token_format",
            "is empty, so no token could match; leave it out for the default or give the tokens' shape",
        ));
    }
    // Anchored: a token must match as a whole, never just contain a match.
    // Compiled alone first, so that an error's position counts in the pattern as written.
    Regex::new(text).and_then(|_| Regex::new(&format!("^(?:{text})$"))).map_err(|error| match format {
        Some(format) => scope.error_for(format, "resume_token_format", &invalid_regex(text, &error)),
        None => Error::Internal(error.to_string()),
    })
}

/// `priority`: an integer in [`PRIORITY_RANGE`], higher goes first.
fn resolve_priority(value: &Option<Spanned<i64>>, scope: &DrainScope) -> Result<i32> {
    let Some(priority) = value else { return Ok(DEFAULT_PRIORITY) };
    let n = *priority.get_ref();
    match i32::try_from(n) {
        Ok(valid) if PRIORITY_RANGE.contains(&n) => Ok(valid),
        _ => Err(scope.error_for(
            priority,
            "priority",
            &format!(
                "{n} is out of range; use {} to {} (higher goes first, default {DEFAULT_PRIORITY})",
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            ),
        )),
    }
}

fn resolve_pass_limits(raw: &RawDrain, scope: &DrainScope) -> Result<PassLimits> {
    let source = scope.source;
    let count = |value: &Option<Spanned<i64>>, key: &str, default: u32, min: i64, max: i64| {
        spanned_count(value, &scope.key(key), default, min, max, source)
    };
    let bytes = |value: &Option<Spanned<i64>>, key: &str, default: usize, max: i64| -> Result<usize> {
        Ok(spanned_number(value, &scope.key(key), 1, max, source)?.map_or(default, |bytes| bytes as usize))
    };
    Ok(PassLimits {
        max_items_per_pass: count(
            &raw.max_items_per_pass,
            "max_items_per_pass",
            DEFAULT_MAX_ITEMS_PER_PASS,
            1,
            1_000_000,
        )?,
        // A pass with no time would start, stop at once and be started again.
        max_seconds_per_pass: spanned_positive_duration(
            &raw.max_seconds_per_pass,
            &scope.key("max_seconds_per_pass"),
            DEFAULT_MAX_SECONDS_PER_PASS,
            source,
        )?,
        max_attempts: count(&raw.max_attempts, "max_attempts", DEFAULT_MAX_ATTEMPTS, 1, 1000)?,
        poison_after: poison_after(&raw.poison_after, &scope.key("poison_after"), source)?,
        concurrency: count(
            &raw.concurrency,
            "concurrency",
            DEFAULT_CONCURRENCY,
            1,
            i64::from(MAX_CONCURRENCY),
        )?,
        max_result_bytes: bytes(
            &raw.max_result_bytes,
            "max_result_bytes",
            DEFAULT_MAX_RESULT_BYTES,
            1 << 30,
        )?,
        stderr_tail_bytes: bytes(
            &raw.stderr_tail_bytes,
            "stderr_tail_bytes",
            DEFAULT_STDERR_TAIL_BYTES,
            64 << 20,
        )?,
    })
}

/// Largest cost budget accepted, in US dollars.
const MAX_COST_USD: f64 = 1_000_000.0;

/// A cost budget in US dollars (`max_cost_per_pass`, `max_cost_per_day`): more than 0, at
/// most [`MAX_COST_USD`].
fn resolve_cost(value: &Option<Spanned<f64>>, key: &str, scope: &DrainScope) -> Result<Option<f64>> {
    let Some(cost) = value else { return Ok(None) };
    let usd = *cost.get_ref();
    if !(usd.is_finite() && usd > 0.0 && usd <= MAX_COST_USD) {
        return Err(scope.error_for(
            cost,
            key,
            &format!(
                "{usd} is out of range; give US dollars above 0 and at most {MAX_COST_USD}, e.g. 25 or 2.5"
            ),
        ));
    }
    Ok(Some(usd))
}

/// A duration the file states, at most the longest one allowed.
fn parse_spanned_duration(text: &Spanned<String>, key: &str, source: &Source) -> Result<Duration> {
    parse_bounded_duration(text.get_ref())
        .map_err(|message| source.error_for(text, &format!("{key}: {message}")))
}

/// As [`parse_spanned_duration`], refusing a zero duration.
fn parse_spanned_positive_duration(text: &Spanned<String>, key: &str, source: &Source) -> Result<Duration> {
    let duration = parse_spanned_duration(text, key, source)?;
    if duration.is_zero() {
        return Err(source.error_for(text, &format!("{key}: must be more than 0s")));
    }
    Ok(duration)
}

/// The duration the file states, else `default`.
fn spanned_duration(
    value: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
    source: &Source,
) -> Result<Duration> {
    value.as_ref().map_or(Ok(default), |text| parse_spanned_duration(text, key, source))
}

/// As [`spanned_duration`], refusing a zero duration the file states.
fn spanned_positive_duration(
    value: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
    source: &Source,
) -> Result<Duration> {
    value.as_ref().map_or(Ok(default), |text| parse_spanned_positive_duration(text, key, source))
}

/// The number the file states, from `min` to `max`.
fn spanned_number(
    value: &Option<Spanned<i64>>,
    key: &str,
    min: i64,
    max: i64,
    source: &Source,
) -> Result<Option<u32>> {
    let Some(number) = value else { return Ok(None) };
    let n = *number.get_ref();
    if n < min || n > max {
        return Err(source.error_for(number, &format!("{key}: {n} is out of range; use {min} to {max}")));
    }
    u32::try_from(n).map(Some).map_err(|_| source.error_for(number, &format!("{key}: {n} is too large")))
}

/// `poison_after`: 0 (never charge) or 2 to 1000. A streak of 1 has no hit before it to
/// tell the group's real limit from the item's own: every quota hit would be charged
/// (docs/rate-limits.md, "Poison items").
fn poison_after(value: &Option<Spanned<i64>>, key: &str, source: &Source) -> Result<u32> {
    let Some(number) = value else { return Ok(DEFAULT_POISON_AFTER) };
    match *number.get_ref() {
        1 => Err(source.error_for(
            number,
            &format!(
                "{key}: 1 would charge every quota hit, the group's real limits included; use 2 to 1000, or 0 to never charge"
            ),
        )),
        n @ (0 | 2..=1000) => Ok(n as u32),
        n => Err(source.error_for(number, &format!("{key}: {n} is out of range; use 2 to 1000, or 0 to never charge"))),
    }
}

/// As [`spanned_number`], else `default`.
fn spanned_count(
    value: &Option<Spanned<i64>>,
    key: &str,
    default: u32,
    min: i64,
    max: i64,
    source: &Source,
) -> Result<u32> {
    Ok(spanned_number(value, key, min, max, source)?.unwrap_or(default))
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
            // What follows is most likely a value (`"KEY=sk-…" = "x"`): not quoted back.
            let shown = name.split(['=', '\0']).next().unwrap_or_default();
            Some(format!(
                "variable name {:?} has a '=' or NUL character (what follows is not shown, as it may be a \
                 secret); rename it",
                format!("{shown}…")
            ))
        } else if value.contains('\0') {
            Some(format!("the value of {name} has a NUL character, which no program can receive; remove it"))
        } else {
            // `PATH = "$PATH:/opt/bin"` would give the worker the text `$PATH`, and with it
            // none of the folders it needs. A secret's `$` stays its own.
            shell_reference(value, |variable| {
                variable.starts_with("XDG_") || SHELL_SET_VARIABLES.contains(&variable)
            })
            .map(|named| {
                format!(
                    "the value of {name} uses {named}, which drainctl does not expand (the worker would get \
                         the text {named}); write the value out"
                )
            })
        };
        if let Some(problem) = problem {
            return Err(source.error_for(env, &format!("{key}: {problem}")));
        }
    }
    Ok(())
}

/// Variables every login shell sets, whose `$NAME` in an `env` value is a shell's habit,
/// not a secret's text.
const SHELL_SET_VARIABLES: [&str; 9] =
    ["PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "TMPDIR", "LANG", "TERM"];

/// The shell reference in `text` a reader might expect expanded: a leading `~`, a
/// `${NAME}`, or a `$NAME` whose NAME `counts`.
fn shell_reference(text: &str, counts: impl Fn(&str) -> bool) -> Option<String> {
    if text == "~" || text.starts_with("~/") {
        return Some("~".to_string());
    }
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices('$').find_map(|(at, _)| {
        let rest = &text[at + 1..];
        if let Some(braced) = rest.strip_prefix('{') {
            let name = &braced[..braced.find('}')?];
            let valid = !name.is_empty() && name.chars().all(is_name_char);
            return valid.then(|| format!("${{{name}}}"));
        }
        let name: String = rest.chars().take_while(|c| is_name_char(*c)).collect();
        let starts_a_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        (starts_a_name && counts(&name)).then(|| format!("${name}"))
    })
}

/// Refuse an empty path setting, and a path with a NUL character: no file can have one.
fn check_path(path: &Spanned<String>, key: &str, fix: &str, source: &Source) -> Result<()> {
    // Joined to the file's folder, an empty path would name that folder: a file setting
    // then fails every pass ("is a directory"), a folder setting writes beside the file
    // (docs/configuration.md).
    if path.get_ref().trim().is_empty() {
        return Err(source.error_for(path, &format!("{key}: is empty; {fix}")));
    }
    if path.get_ref().contains('\0') {
        return Err(source.error_for(
            path,
            &format!("{key}: {:?} has a NUL character, which no path can hold; remove it", path.get_ref()),
        ));
    }
    Ok(())
}

/// [`check_path`] for a file drainctl writes, and refuse a path that can only name a
/// folder (`.`, `..`, a trailing `/`): every pass would fail on it ("is a directory").
fn check_file_path(path: &Spanned<String>, key: &str, fix: &str, source: &Source) -> Result<()> {
    check_path(path, key, fix, source)?;
    let last = path.get_ref().trim_end().rsplit('/').next().unwrap_or_default();
    if matches!(last, "" | "." | "..") {
        return Err(
            source.error_for(path, &format!("{key}: {:?} names a folder, not a file; {fix}", path.get_ref()))
        );
    }
    Ok(())
}

/// `[a-z0-9_-]{1,64}`.
fn is_valid_drain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A program given with a slash (`./bin/worker`) is relative to the config's folder; a
/// bare name (`claude`) is looked up on PATH when the worker starts. Its `.` steps are
/// dropped, so messages name it as the operator would (`/etc/drainctl/bin/worker`).
fn resolve_command(command: Spanned<Vec<String>>, key: &str, source: &Source) -> Result<Vec<String>> {
    let span = command.span();
    let mut command = command.into_inner();
    if let Some(program) = command.first_mut() {
        if program.contains('/') && !program.starts_with('/') {
            let joined = source.absolute(program, key, span)?;
            // (A trailing slash is kept: it names a folder, which `exec` refuses.)
            let path: std::path::PathBuf =
                if program.ends_with('/') { joined } else { joined.components().collect() };
            *program = path.display().to_string();
        }
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::testing::{resolve, MINIMAL};

    #[test]
    fn notify_settings_are_checked() {
        let config = resolve(
            "[defaults]\nnotify_command = [\"notify\"]\nnotify_on = [\"run_hung\", \"run_hung\", \"notify_failed\"]\nnotify_timeout = \"3s\"\n",
        )
        .unwrap();
        assert_eq!(
            config.defaults.notify_on,
            [crate::model::EventKind::RunHung, crate::model::EventKind::NotifyFailed]
        );
        assert_eq!(config.defaults.notify_timeout, Duration::from_secs(3));
        for (text, location, fragment) in [
            (
                "[defaults]\nnotify_on = [\"run_hang\"]\n",
                ":2:13:",
                "unknown event kind \"run_hang\"; known: ",
            ),
            ("[defaults]\nnotify_timeout = \"0s\"\n", ":2:18:", "notify_timeout: must be more than 0s"),
            (
                "[defaults]\nsupervise_interval = \"0s\"\n",
                ":2:22:",
                "supervise_interval: must be more than 0s",
            ),
            ("[defaults]\nnotify_timeout = \"soon\"\n", ":2:18:", "invalid duration \"soon\""),
            ("[defaults]\ndefault_backoff = \"0s\"\n", ":2:19:", "default_backoff: must be more than 0s"),
            ("[defaults]\nsuspected_backoff = \"0m\"\n", ":2:21:", "suspected_backoff: must be more than 0s"),
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
            // Settings that could never work (before: accepted without a word).
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\ncheckpoint_pattern = \"\"\n",
                ":4:22:",
                "checkpoint_pattern: \"\" matches every line",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\ncheckpoint_pattern = \".*\"\n",
                ":4:22:",
                "matches every line",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nresume_token_format = \"\"\n",
                ":4:23:",
                "resume_token_format: is empty, so no token could match",
            ),
            ("[defaults]\nburst_max = \"0s\"\n", ":2:13:", "burst_max: must be more than 0s"),
            // Patterns that read every answer as a limit, or no limit as one.
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nquota_patterns = [\"usage limit\", \".*\"]\n",
                ":4:18:",
                "quota_patterns: \".*\" matches any line",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nveto_patterns = [\".\"]\n",
                ":4:17:",
                "veto_patterns: \".\" matches any line",
            ),
            ("[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nquota_patterns = [\"^\"]\n", ":4:18:", "matches any line"),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nveto_patterns = [\"maintenance\", \"[z-a]\"]\n",
                ":4:17:",
                "invalid regex \"[z-a]\": invalid character class range, the start must be <= the end (at character 2)",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\ncheckpoint_pattern = \"(unclosed\"\n",
                ":4:22:",
                "checkpoint_pattern: invalid regex \"(unclosed\": unclosed group (at character 1)",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nresume_token_format = \"ab[\"\n",
                ":4:23:",
                "resume_token_format: invalid regex \"ab[\": unclosed character class (at character 3)",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\nconcurrency = 0\n",
                ":4:15:",
                "concurrency: 0 is out of range",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\npriority = 5000\n",
                ":4:12:",
                "drain \"a\": priority: 5000 is out of range; use -1000 to 1000",
            ),
            (
                "[[drain]]\nname = \"a\"\ncommand = [\"x\"]\npriority = -9999999999\n",
                ":4:12:",
                "priority: -9999999999 is out of range",
            ),
        ];
        for (text, location, value) in cases {
            let error = resolve(text).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.exit_code(), 78, "{message}");
            assert!(message.starts_with("/etc/drainctl/drainctl.toml"), "{message}");
            assert!(message.contains(location), "{location} not in {message}");
            assert!(message.contains(value), "{value} not in {message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let config = resolve(
            "[defaults]\nlog_dir = \"logs\"\nnotify_command = [\"./bin/./notify\"]\n\
             [[drain]]\nname = \"a\"\ncommand = [\"./bin/w\", \"x\"]\nworkdir = \"work\"\n",
        )
        .unwrap();
        assert_eq!(config.defaults.log_dir, PathBuf::from("/etc/drainctl/logs"));
        // Named as an operator would look for it. Before: "/etc/drainctl/./bin/w".
        assert_eq!(config.drains[0].command[0], "/etc/drainctl/bin/w");
        assert_eq!(config.defaults.notify_command, Some(vec!["/etc/drainctl/bin/notify".to_string()]));
        // A trailing slash names a folder, which `exec` refuses: it is kept to say so.
        let folder = resolve("[[drain]]\nname = \"a\"\ncommand = [\"./bin/w/\"]\n").unwrap();
        assert_eq!(folder.drains[0].command[0], "/etc/drainctl/./bin/w/");
        assert_eq!(config.drains[0].workdir, Some(PathBuf::from("/etc/drainctl/work")));
    }

    #[test]
    fn a_source_resolves_against_the_config_folder_with_its_defaults() {
        let config = resolve(&format!(
            "{MINIMAL}source = {{ dir = \"sessions\" }}\n\
             [[drain]]\nname = \"b\"\ncommand = [\"x\"]\n\
             source = {{ dir = \"/data\", glob = \"*/*.jsonl\", max_files_per_scan = 5, \
             max_hash_bytes_per_scan = 1024, max_hash_seconds_per_scan = \"1m\" }}\n"
        ))
        .unwrap();
        let source = config.drains[0].source.as_ref().unwrap();
        assert_eq!(source.dir, PathBuf::from("/etc/drainctl/sessions"));
        assert_eq!((source.glob.as_str(), source.max_files_per_scan), ("**/*", 10_000));
        assert_eq!(
            (source.max_hash_bytes_per_scan, source.max_hash_seconds_per_scan),
            (256 << 20, Duration::from_secs(5))
        );
        let source = config.drains[1].source.as_ref().unwrap();
        assert_eq!(
            (source.dir.as_path(), source.glob.as_str(), source.max_files_per_scan),
            (Path::new("/data"), "*/*.jsonl", 5)
        );
        assert_eq!(
            (source.max_hash_bytes_per_scan, source.max_hash_seconds_per_scan),
            (1024, Duration::from_secs(60))
        );
    }

    #[test]
    fn bad_sources_are_refused_where_they_are_written() {
        // At the value itself (before: the table's brace, column 10).
        for (text, location, fragment) in [
            ("source = { dir = \"d\", glob = \"../*\" }\n", ":4:30:", "source.glob: glob \"../*\" must not"),
            ("source = { dir = \"d\", glob = \"/abs/*\" }\n", ":4:30:", "must be relative to dir"),
            ("source = { dir = \"\" }\n", ":4:18:", "source.dir: is empty"),
            ("source = { dir = \"d\", max_files_per_scan = 0 }\n", ":4:44:", "0 is out of range"),
            ("source = { dir = \"d\", globs = \"*\" }\n", ":4:23:", "unknown field `globs`"),
            ("source = { dir = \"d\", max_hash_bytes_per_scan = 63 }\n", ":4:49:", "63 is out of range"),
            ("source = { dir = \"d\", max_hash_seconds_per_scan = \"0s\" }\n", ":4:51:", "more than 0s"),
            (
                "source = { dir = \"d\", max_hash_seconds_per_scan = \"soon\" }\n",
                ":4:51:",
                "max_hash_seconds_per_scan",
            ),
        ] {
            let error = resolve(&format!("{MINIMAL}{text}")).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.exit_code(), 78, "{message}");
            assert!(message.contains(location) && message.contains(fragment), "{text}: {message}");
        }
    }

    #[test]
    fn a_list_of_windows_is_refused_saying_a_drain_has_one() {
        let text = "window = [{ days = \"sun-thu\", from = \"22:00\", to = \"06:00\" }, { days = \"sat\", from = \"00:00\", to = \"00:00\" }]\n";
        let message = resolve(&format!("{MINIMAL}{text}")).unwrap_err().to_string();
        assert!(
            message.contains(":4:10:")
                && message.contains("window: invalid type: sequence, expected one table such as")
                && message.contains("(a drain has one window)"),
            "{message}"
        );
        // One table is read as before.
        let window = "window = { days = \"sun-thu\", from = \"22:00\", to = \"06:00\" }\n";
        assert!(resolve(&format!("{MINIMAL}{window}")).is_ok());
        // Written as an array of tables, with the drain named (before: neither it nor `window`).
        let text = "[[drain.window]]\ndays = \"mon-fri\"\n";
        let message = resolve(&format!("{MINIMAL}{text}")).unwrap_err().to_string();
        assert!(
            message.contains(
                ":4:1: drain \"halacha\": window: invalid type: sequence, expected one table such as"
            ),
            "{message}"
        );
    }

    #[test]
    fn an_env_written_as_a_string_or_an_array_is_shown_the_table_to_write() {
        for text in ["env = \"A=1\"\n", "env = [\"A=1\"]\n"] {
            let message = resolve(&format!("{MINIMAL}{text}")).unwrap_err().to_string();
            assert!(
                message.contains(":4:7: drain \"halacha\": env: invalid type:")
                    && message.ends_with(
                        "expected a map: write it as a table of names and values, env = { NAME = \"value\" }"
                    ),
                "{message}"
            );
        }
    }

    #[test]
    fn a_pass_with_no_time_is_refused() {
        let error = resolve(&format!("{MINIMAL}max_seconds_per_pass = \"0s\"\n")).unwrap_err();
        let message = error.to_string();
        assert_eq!(error.exit_code(), 78, "{message}");
        assert!(
            message.contains(":4:24:") && message.contains("max_seconds_per_pass: must be more than 0s"),
            "{message}"
        );
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
    fn the_password_of_a_key_value_string_that_does_not_parse_is_a_secret() {
        assert_eq!(password_of("host=h password=Kv9-bare sslmode=Kv9-bare").as_deref(), Some("Kv9-bare"));
        assert_eq!(
            password_of(r"host=h password = 'Kv9 it\'s \\ quoted' sslmode=bad").as_deref(),
            Some(r"Kv9 it's \ quoted")
        );
        assert_eq!(password_of("host=h sslmode=bad"), None);
        assert_eq!(password_of("host=h mypassword=x sslmode=bad"), None);
    }

    #[test]
    fn the_files_url_is_a_secret_however_written_and_another_services_is_not() {
        use crate::error::scrub;
        // Not even TOML (a syntax error below it): its `url =` line still is.
        register_secrets_in("[database]\nurl = \"postgres://u:Rk7-unparsed-pw@h/db\"\n[[drain\nname =\n");
        assert_eq!(scrub("env: Rk7-unparsed-pw"), "env: ***");
        // An inline table.
        register_secrets_in("database = { url = \"postgres://u:Rk7-inline-pw@h/db\" }\n");
        assert_eq!(scrub("env: Rk7-inline-pw"), "env: ***");
        // A drain's env naming another service's database: not drainctl's password.
        register_secrets_in(
            "[[drain]]\nname = \"reader\"\ncommand = [\"w\"]\nenv = { ANALYTICS_URL = \"postgres://reader:Rk7-other-pw@a/x\" }\n",
        );
        assert_eq!(scrub("reader: Rk7-other-pw"), "reader: Rk7-other-pw");
    }

    #[test]
    fn password_is_found_for_scrubbing() {
        assert_eq!(password_of("postgres://u:pw1@h/db").as_deref(), Some("pw1"));
        assert_eq!(password_of("host=h user=u password=pw2").as_deref(), Some("pw2"));
        assert_eq!(password_of("postgres://u@h/db"), None);
        // Not a URL the driver parses (an unencoded '@', ':' and '/'): still the whole password.
        assert_eq!(password_of("postgres://u:p@ss:w/rd@127.0.0.1:5432/db").as_deref(), Some("p@ss:w/rd"));
        // Percent-encoded, it is masked both as it is and as it is written.
        assert_eq!(password_of("postgres://u:p%40ss%2Fw@h/db").as_deref(), Some("p@ss/w"));
        assert_eq!(
            passwords_as_written("postgres://u:p%40ss%2Fw@h/db?password=q%21&x=1"),
            ["p%40ss%2Fw", "q%21"]
        );
    }

    const TWO_ACCOUNTS: &str = "[[quota_group]]\nname = \"claude-chair\"\nswitch_cooldown = \"5m\"\naccounts = [\n  { name = \"chair\", env = { CLAUDE_CONFIG_DIR = \"/home/chair/.claude\" } },\n  { name = \"backup\", env = { CLAUDE_CONFIG_DIR = \"/home/chair/.claude-backup\" } },\n]\n\n[[drain]]\nname = \"halacha\"\ncommand = [\"claude\"]\nquota_group = \"claude-chair\"\n\n[[drain]]\nname = \"other\"\ncommand = [\"claude\"]\nquota_group = \"solo\"\n";

    #[test]
    fn quota_groups_are_declared_with_accounts_or_implied_by_drains() {
        let config = resolve(TWO_ACCOUNTS).unwrap();
        let group = config.quota_group("claude-chair").unwrap();
        assert!(group.has_accounts_to_switch());
        assert_eq!(group.switch_cooldown, Duration::from_secs(300));
        let names: Vec<&str> = group.accounts.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["chair", "backup"]);
        assert_eq!(
            group.accounts[1].env,
            [("CLAUDE_CONFIG_DIR".to_string(), "/home/chair/.claude-backup".to_string())]
        );
        let solo = config.quota_group("solo").unwrap();
        assert!(!solo.has_accounts_to_switch());
        assert_eq!(solo.accounts, [AccountConfig::implicit()]);
        assert_eq!(solo.switch_cooldown, Duration::from_secs(15 * 60));
        // A drain without quota_group is its own implicit group.
        let config = resolve(MINIMAL).unwrap();
        assert_eq!(config.quota_group("halacha").unwrap().accounts, [AccountConfig::implicit()]);
        // A declared group without accounts behaves as an implicit one, with its own settings.
        let config =
            resolve(&format!("[[quota_group]]\nname = \"halacha\"\nswitch_cooldown = \"5m\"\n{MINIMAL}"))
                .unwrap();
        let group = config.quota_group("halacha").unwrap();
        assert_eq!(group.accounts, [AccountConfig::implicit()]);
        assert_eq!(group.switch_cooldown, Duration::from_secs(300));
        assert_eq!(config.quota_groups.len(), 1);
        // Misspelled, while the group meant, with accounts, is used by no drain: doctor
        // warns (before: nothing said the drain ran without the accounts).
        let misspelled =
            TWO_ACCOUNTS.replace("quota_group = \"claude-chair\"", "quota_group = \"claude-chiar\"");
        let warnings: Vec<String> = resolve(&misspelled)
            .unwrap()
            .misspelled_quota_groups()
            .into_iter()
            .map(|(drain, warning)| {
                assert_eq!(drain, "halacha");
                warning
            })
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with(
                "drain halacha: quota_group \"claude-chiar\" has no accounts, and \"claude-chair\""
            ),
            "{warnings:?}"
        );
        assert!(resolve(TWO_ACCOUNTS).unwrap().misspelled_quota_groups().is_empty());
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
            (
                format!("{MINIMAL}resume_args = \"--resume\"\n"),
                ":4:15:",
                "expected an array ([...]): write resume_args = [\"--resume\"], each argument its own string",
            ),
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
                "drain \"a\": env: variable name \"A…\" has a '=' or NUL character",
            ),
            (
                format!("{drain}command = [\"w\"]\nenv = {{ \"A=B\" = \"1\" }}\n"),
                ":4:7:",
                "drain \"a\": env: variable name \"A…\" has a '=' or NUL character (what follows is not shown",
            ),
            (
                format!("{drain}command = [\"w\"]\nresume_args = [\"--resume\\u0000\"]\n"),
                ":4:15:",
                "drain \"a\": resume_args: argument 1",
            ),
            (format!("{drain}command = [\"w\"]\nworkdir = \"/srv\\u0000\"\n"), ":4:11:", "drain \"a\": workdir:"),
            (
                format!("{drain}command = [\"w\"]\nsource = {{ dir = \"d\\u0000\" }}\n"),
                ":4:18:",
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
    fn a_shell_habit_that_drainctl_would_take_literally_is_refused_where_it_is_written() {
        // Before: `doctor` said ok and created `./$HOME/logs`; the worker's PATH was the text
        // `$PATH:/opt/bin`, without any folder it needed.
        let drain = "[[drain]]\nname = \"a\"\n";
        let cases = [
            ("[defaults]\nlog_dir = \"$HOME/logs\"\n".to_string(), ":2:11:", "log_dir: \"$HOME/logs\" uses $HOME, which drainctl does not expand"),
            ("[defaults]\nlog_dir = \"~/logs\"\n".to_string(), ":2:11:", "log_dir: \"~/logs\" uses ~"),
            ("[defaults]\nmetrics_textfile = \"${STATE}/m.prom\"\n".to_string(), ":2:20:", "uses ${STATE}"),
            (format!("{drain}command = [\"w\"]\nworkdir = \"~/proj\"\n"), ":4:11:", "drain \"a\": workdir: \"~/proj\" uses ~"),
            (format!("{drain}command = [\"$HOME/bin/w\"]\n"), ":3:", "uses $HOME"),
            (
                format!("{drain}command = [\"w\"]\nenv = {{ PATH = \"$PATH:/opt/bin\" }}\n"),
                ":4:7:",
                "drain \"a\": env: the value of PATH uses $PATH, which drainctl does not expand (the worker would \
                 get the text $PATH); write the value out",
            ),
            (format!("{drain}command = [\"w\"]\nenv = {{ CACHE = \"${{XDG_CACHE_HOME}}/w\" }}\n"), ":4:7:", "uses ${XDG_CACHE_HOME}"),
        ];
        for (text, location, fragment) in cases {
            let error = resolve(&text).unwrap_err();
            let message = error.to_string();
            assert_eq!(error.exit_code(), 78, "{message}");
            assert!(message.contains(location) && message.contains(fragment), "{text}: {message}");
        }
        // A secret's own `$`, and a `$` that starts no name, stay as written.
        for value in ["pa$$w0rd", "$ecret", "$HOME1", "cost $5", "a$"] {
            let text = format!("{drain}command = [\"w\"]\nenv = {{ TOKEN = \"{value}\" }}\n");
            let config = resolve(&text).unwrap();
            assert_eq!(config.drains[0].env, [("TOKEN".to_string(), value.to_string())]);
        }
    }
}
