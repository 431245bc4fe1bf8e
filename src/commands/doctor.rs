//! `drainctl doctor`: is this deployment able to work? One line per check.
//!
//! Unlike every other command, doctor opens nothing in advance: it loads the configuration
//! itself (so a bad file is a failed check, not an early exit), connects, reads the schema
//! state without applying anything, checks the supervisor's heartbeat (a warning when the
//! last `supervise` pass is older than twice `supervise_interval`: a broken crontab), and
//! looks at what the drains need on this machine: worker programs on PATH (the worker's
//! own PATH when its `env` sets one), working folders, source folders, the time zone, a
//! writable log folder (created owner-only when missing), the folders of the metrics
//! textfile and of the operations page (`report_html`), and
//! the clock compared with the database's. With `--cron`, workers are looked up on cron's
//! minimal PATH (`/usr/bin:/bin`), as a crontab that sets no PATH starts them; with
//! `--cron-path PATH`, on the PATH the crontab sets. The exit code is that of the first failed
//! check in the order shown: 78 for configuration, workers, zone and folders, and for a
//! server older than supported or a transaction pooler (refused by `db::connect`), 69 when
//! the database cannot be reached; 0 when nothing failed (warnings, such as a pending
//! migration, a server newer than tested, a late supervisor, clock skew or a `$TZ` that
//! names no known zone, do not fail). The schema is read without waiting for the migration
//! lock (docs/migrations.md).
//!
//! [`gather`] runs the checks in that order, each judging what it found; [`Verdict`]
//! decides what they add up to; [`render`] prints the lines and the summary, or the JSON
//! of docs/json.md.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::clock::Clock;
use crate::config::{machine_zone, parse_zone, Config, ConfigText};
use crate::error::{EXIT_CONFIG, EXIT_OK, EXIT_TEMPORARY};
use crate::output::Report;
use crate::worker::program;

/// More clock difference than this between drainctl and the database is a warning.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone)]
struct Check {
    name: &'static str,
    drain: Option<String>,
    status: Status,
    message: String,
    /// The exit code this check asks for when it failed.
    exit_code: u8,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn push(&mut self, name: &'static str, status: Status, message: impl Into<String>) {
        self.0.push(Check { name, drain: None, status, message: message.into(), exit_code: EXIT_OK });
    }

    fn fail(&mut self, name: &'static str, exit_code: u8, message: impl Into<String>) {
        self.0.push(Check { name, drain: None, status: Status::Fail, message: message.into(), exit_code });
    }

    fn for_drain(&mut self, drain: &str) {
        if let Some(last) = self.0.last_mut() {
            last.drain = Some(drain.to_string());
        }
    }
}

pub fn run(config_path: Option<&Path>, args: &DoctorArgs) -> crate::error::Result<Report> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let crontabs = args.cron_path.as_ref().map(|path| from_home(path.as_os_str(), home.as_deref()));
    let cron_path = match &crontabs {
        Some((path, _)) => Some(CronPath { path: path.as_os_str(), is_the_crontabs: true }),
        None => args.cron.then_some(CronPath { path: OsStr::new(CRON_PATH), is_the_crontabs: false }),
    };
    let mut checks = gather(config_path, cron_path);
    if let Some((_, relative)) = crontabs.filter(|(_, relative)| !relative.is_empty()) {
        let shown: Vec<String> = relative.iter().map(|entry| format!("{entry:?}")).collect();
        let looked_up = match &home {
            Some(home) => format!("looked up from HOME ({}) here", home.display()),
            None => "left out here (HOME is not set)".to_string(),
        };
        checks.push(Check {
            name: "cron_path",
            status: Status::Warn,
            drain: None,
            message: format!(
                "--cron-path has relative entries {} (an empty one is the current folder): cron runs a job in \
                 its owner's home folder, so they are {looked_up}; give the crontab's PATH absolute folders",
                shown.join(", ")
            ),
            exit_code: EXIT_OK,
        });
    }
    // A message quotes paths and values the operator gave, any of which may hold the
    // database password (docs/configuration.md, `[database]`).
    for check in &mut checks {
        check.message = crate::error::scrub(&check.message);
    }
    let verdict = Verdict::of(&checks);
    if let Some(line) = verdict.failure_line(&checks) {
        // The one stderr line of a non-zero exit.
        crate::output::say_on_stderr(&format!("drainctl: {line}"));
    }
    render(&checks, &verdict)
}

/// Run every check, in the order shown. A check that needs what an earlier one could not
/// provide (the configuration, the connection, a current schema) is skipped, saying why.
///
/// With `cron_path` (`--cron`, `--cron-path`), workers are looked up as cron would start
/// them: on that PATH unless the drain's `env` sets its own.
fn gather(config_path: Option<&Path>, cron_path: Option<CronPath>) -> Vec<Check> {
    let mut checks = Checks::default();
    let clock = check_clock_source(&mut checks);
    let (config, text) = check_config(&mut checks, config_path);
    let (mut client, is_read_only) = match check_database(&mut checks, config.as_ref()) {
        Some((client, is_read_only)) => (Some(client), is_read_only),
        None => (None, false),
    };
    match client.as_mut() {
        Some(client) => check_schema(&mut checks, client, is_read_only),
        None => {
            checks.push("durability", Status::Skip, "durability not checked: no database connection");
            checks.push("schema", Status::Skip, "schema not checked: no database connection");
        }
    }
    let defaults = config.as_ref().map(|config| &config.defaults);
    let is_schema_current = checks.0.iter().any(|check| check.name == "schema" && check.status == Status::Ok);
    match (client.as_mut(), defaults) {
        (Some(client), Some(defaults)) if is_schema_current => {
            check_supervisor(&mut checks, client, clock.now(), defaults.supervise_interval, defaults.timezone)
        }
        _ => checks.push(
            "supervisor",
            Status::Skip,
            "supervisor heartbeat not checked: needs the database, a current schema and the configuration",
        ),
    }
    if let (Some(client), Some(config)) = (client.as_mut(), config.as_ref()) {
        if is_schema_current {
            check_unconfigured_drains(&mut checks, client, config, clock.now());
        }
    }
    match &config {
        Some(config) => check_programs_and_folders(&mut checks, config, cron_path),
        None => checks.push("worker", Status::Skip, "workers not checked: the configuration did not load"),
    }
    if let Some(cron) = cron_path {
        // A configuration `supervise` refuses (a descriptor, a pipe) fails every pass
        // cron starts: nothing else of it matters for cron (docs/operations.md).
        match crate::supervise::refuse_a_configuration_read_once(config_path) {
            Err(refused) => checks.fail("cron_env", EXIT_CONFIG, refused.to_string()),
            Ok(()) => {
                check_cron_environment(&mut checks, config.as_ref(), cron);
                check_cron_finds_the_configuration(&mut checks, config.as_ref(), config_path);
            }
        }
    }
    check_zone(&mut checks, text.as_ref(), config_path);
    match &config {
        Some(config) => {
            check_log_dir(&mut checks, &config.defaults.log_dir);
            check_drain_log_folders(&mut checks, config);
            if let Some(textfile) = &config.defaults.metrics_textfile {
                let refused = crate::metrics::check_textfile(textfile);
                check_file_folder(&mut checks, "metrics_textfile", textfile, refused);
            }
            if let Some(page) = &config.defaults.report_html {
                let refused = crate::report::check_page(page);
                check_file_folder(&mut checks, "report_html", page, refused);
            }
        }
        None => checks.push("log_dir", Status::Skip, "log_dir not checked: the configuration did not load"),
    }
    match client.as_mut() {
        Some(client) => check_clock(&mut checks, client),
        None => checks.push("clock_skew", Status::Skip, "clock not compared: no database connection"),
    }
    if let (Some(client), Some(zone)) = (client.as_mut(), defaults.map(|defaults| defaults.timezone)) {
        check_locks(&mut checks, client, zone);
    }
    if clock.is_injected() {
        checks.push(
            "injected_clock",
            Status::Warn,
            format!(
                "{} is set: drainctl's time is injected; never set it in production",
                crate::clock::NOW_ENV
            ),
        );
    }
    checks.0
}

/// What cron's job does not have that this shell does: a database URL from the
/// environment (cron passes none of it on; the crontab keeps no secrets), and drainctl
/// itself on the crontab's PATH, as the crontab line names it by its bare name.
fn check_cron_environment(checks: &mut Checks, config: Option<&Config>, cron: CronPath) {
    let url = config.and_then(|config| config.require_database_url().ok());
    if let (Some(url), Some(config)) = (url.filter(|url| url.source.starts_with('$')), config) {
        let file = config
            .path
            .as_ref()
            .map_or_else(|| "the configuration file".to_string(), |path| path.display().to_string());
        let under_cron = if config.file_has_database_url {
            format!(
                "cron's passes use [database] url of {file} instead: make sure it names the same database"
            )
        } else {
            format!(
                "unless the crontab sets it, every pass exits 78 (no database URL); put it in [database] url of \
                 {file} (mode 0600)"
            )
        };
        checks.push(
            "cron_env",
            Status::Warn,
            format!(
                "the database URL comes from {}, which cron does not pass on to its jobs: {under_cron}",
                url.source
            ),
        );
    }
    if let Err(problem) = program::locate("drainctl", Some(cron.path), None) {
        let here = std::env::current_exe().map(|exe| exe.display().to_string()).unwrap_or_default();
        checks.push(
            "cron_env",
            Status::Warn,
            format!(
                "under cron (PATH={}), {problem}: a crontab line naming `drainctl` fails with \
                 \"drainctl: not found\" before anything is recorded; install it in a folder of that PATH, or \
                 name it by its absolute path ({here}) in the crontab",
                cron.path.to_string_lossy()
            ),
        );
    }
}

/// The configuration file this shell read that cron's job would not: a relative
/// `--config` (cron starts its jobs in their owner's home folder), or, without
/// `--config`, one named by `$DRAINCTL_CONFIG` (cron passes none of this shell's
/// environment on) or `./drainctl.toml` of another folder — unless what cron's job reads
/// there (the relative path from the home folder; else its own search, `./drainctl.toml`
/// of the home folder, then `/etc/drainctl/drainctl.toml`) is the same file. Under cron
/// every pass would otherwise exit 78 (no configuration file) or read another file.
fn check_cron_finds_the_configuration(checks: &mut Checks, config: Option<&Config>, named: Option<&Path>) {
    let Some(path) = config.and_then(|config| config.path.as_ref()) else { return };
    if named.is_some_and(Path::is_absolute) {
        return;
    }
    let home = std::env::var_os("HOME").and_then(|home| PathBuf::from(home).canonicalize().ok());
    // Where cron's job starts is not known here without HOME.
    if named.is_some() && home.is_none() {
        return;
    }
    let candidates: Vec<PathBuf> = match named {
        Some(named) => home.iter().map(|home| home.join(named)).collect(),
        None => home
            .iter()
            .map(|home| home.join(crate::config::DEFAULT_CONFIG_PATHS[0]))
            .chain([PathBuf::from(crate::config::DEFAULT_CONFIG_PATHS[1])])
            .collect(),
    };
    let crons = candidates.into_iter().find(|candidate| candidate.is_file());
    let file = path.canonicalize().ok();
    if file.is_some() && crons.as_ref().and_then(|found| found.canonicalize().ok()) == file {
        return;
    }
    let in_home = home.as_ref().map(|home| format!(" ({})", home.display())).unwrap_or_default();
    let message = match named {
        Some(named) => {
            let there = match &crons {
                Some(other) => format!("it names {} instead", other.display()),
                None => "it names no file, and every pass exits 78".to_string(),
            };
            format!(
                "--config {} is relative, and cron starts its jobs in their owner's home folder{in_home}: \
                 {there}; give the crontab line the absolute path {}",
                named.display(),
                // As written from here, links kept: a `current` link to a release folder.
                std::path::absolute(named).unwrap_or_else(|_| path.clone()).display()
            )
        }
        None => {
            let fix = format!("name it in the crontab line with --config {}", path.display());
            let under_cron = match &crons {
                Some(other) => format!("cron's passes read {} instead", other.display()),
                None => "every pass exits 78 (no configuration file)".to_string(),
            };
            if std::env::var_os(crate::config::CONFIG_ENV).is_some_and(|value| !value.is_empty()) {
                format!(
                    "the configuration file {} comes from ${}, which cron does not pass on to its jobs: unless \
                     the crontab sets it, {under_cron}; {fix}",
                    path.display(),
                    crate::config::CONFIG_ENV
                )
            } else {
                let here = std::env::current_dir()
                    .and_then(|dir| dir.join(crate::config::DEFAULT_CONFIG_PATHS[0]).canonicalize());
                let found_as = match here.ok() == file {
                    true => format!("was found as {} of this folder", crate::config::DEFAULT_CONFIG_PATHS[0]),
                    false => "was found here".to_string(),
                };
                format!(
                    "the configuration file {} {found_as}, and cron starts its jobs in their owner's home \
                     folder{in_home}: there {under_cron}; {fix}",
                    path.display()
                )
            }
        }
    };
    checks.push("cron_env", Status::Warn, message);
}

/// The PATH cron gives a job that sets none (Debian's cron, Vixie cron, cronie).
const CRON_PATH: &str = "/usr/bin:/bin";

/// The crontab's PATH as cron's jobs search it: they start in their owner's home folder,
/// so a relative entry (an empty one is the current folder) is a folder of `home` — left
/// out when HOME is unknown. Also the relative entries, as written.
fn from_home(path: &OsStr, home: Option<&Path>) -> (OsString, Vec<String>) {
    let mut relative = Vec::new();
    let folders: Vec<PathBuf> = std::env::split_paths(path)
        .filter_map(|folder| {
            if folder.is_absolute() {
                return Some(folder);
            }
            relative.push(folder.to_string_lossy().into_owned());
            home.map(|home| home.join(&folder))
        })
        .collect();
    (std::env::join_paths(folders).unwrap_or_default(), relative)
}

/// The PATH workers are looked up on under cron: cron's own, or the one the crontab sets
/// (`--cron-path`).
#[derive(Clone, Copy)]
struct CronPath<'a> {
    path: &'a OsStr,
    is_the_crontabs: bool,
}

/// The clock `DRAINCTL_NOW` asks for; the system clock (and a failed check) when it is bad.
fn check_clock_source(checks: &mut Checks) -> Clock {
    match Clock::from_env() {
        Ok(clock) => clock,
        Err(error) => {
            checks.fail("clock", error.exit_code(), error.to_string());
            Clock::system()
        }
    }
}

/// The configuration, and its text as read: a descriptor (`--config /dev/stdin`) can be
/// read only once, so the checks that need the text again use this one.
fn check_config(checks: &mut Checks, config_path: Option<&Path>) -> (Option<Config>, Option<ConfigText>) {
    let (loaded, text) = match Config::locate(config_path) {
        Some(path) => match Config::read(&path) {
            Ok(text) => (Config::from_read(&text), Some(text)),
            Err(error) => (Err(error), None),
        },
        None => (Config::discover(config_path, false), None),
    };
    let config = match loaded {
        Ok(config) => {
            let source = config.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            checks.push(
                "config",
                Status::Ok,
                format!("configuration {source} is valid ({} drain(s))", config.drains.len()),
            );
            check_config_secrecy(checks, &config);
            Some(config)
        }
        Err(error) => {
            checks.fail("config", error.exit_code(), error.display_scrubbed());
            None
        }
    };
    (config, text)
}

/// Warnings about who else may use the file: read it when it holds the database password
/// (docs/operations.md: keep such a file at mode 0600), or, through its group, change the
/// programs drainctl runs (one every user may change is refused at load).
fn check_config_secrecy(checks: &mut Checks, config: &Config) {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = config.path.as_ref() else { return };
    let Ok(metadata) = std::fs::metadata(path) else { return };
    let mode = metadata.permissions().mode() & 0o777;
    let shown = path.display();
    // A file of root's that its group may read is how a service user is given it (as
    // libpq allows for a key file); one of this user's is for this user alone.
    use std::os::unix::fs::MetadataExt;
    let (is_roots, caller) = (metadata.uid() == 0, crate::ownership::effective_uid());
    let is_roots_for_a_group = is_roots && (caller != 0 || metadata.gid() != 0);
    if config.file_holds_password && mode & 0o004 != 0 {
        // Others lose their read: the user who reads it must keep it, as owner or through
        // the file's group (root's file given to a service user's group, mode 0640).
        let group_reads_for_caller =
            metadata.gid() != 0 && (caller == 0 || crate::ownership::is_in_group(metadata.gid()));
        let fixed = if is_roots && group_reads_for_caller {
            format!("chmod 640 {shown}")
        } else if is_roots && caller != 0 {
            format!(
                "chgrp GROUP {shown} && chmod 640 {shown}, GROUP a group that holds only {}",
                crate::ownership::user_named(caller)
            )
        } else {
            format!("chmod 600 {shown}")
        };
        checks.push(
            "config",
            Status::Warn,
            format!(
                "{shown} holds the database password and every user may read it (mode {mode:04o}): {fixed}"
            ),
        );
    } else if config.file_holds_password && mode & 0o040 != 0 && !is_roots_for_a_group {
        checks.push(
            "config",
            Status::Warn,
            format!("{shown} holds the database password and its group may read it (mode {mode:04o}): chmod 600 {shown}"),
        );
    }
    if mode & 0o020 != 0 {
        checks.push(
            "config",
            Status::Warn,
            format!(
                "{shown} names the programs drainctl runs and its group may write it (mode {mode:04o}): \
                 chmod g-w {shown} unless every member of its group may run programs as this user"
            ),
        );
    }
    // A folder above it its group may write: a member may swap the file for another (one
    // any other user may replace is refused at load).
    if let Some(why) = crate::ownership::others_may_replace(path, true) {
        checks.push(
            "config",
            Status::Warn,
            format!(
                "configuration file {why}; whoever replaces it could change the programs drainctl runs, unless \
                 every member of that group may run programs as this user"
            ),
        );
    }
}

/// Connect (refused for a server older than supported) and judge the server's version.
/// How long a check waits for a lock on one of drainctl's tables.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The message of a statement that waited [`LOCK_WAIT`] in vain.
const LOCK_TIMED_OUT: &str = "canceling statement due to lock timeout";

/// After checks that gave up waiting for a lock on drainctl's tables: who holds one, and
/// what it blocks (every pass, `enqueue`, `status` wait behind it).
fn check_locks(checks: &mut Checks, client: &mut postgres::Client, zone: chrono_tz::Tz) {
    if !checks.0.iter().any(|check| check.message.contains(LOCK_TIMED_OUT)) {
        return;
    }
    let holders = crate::db::LockHolder::describe_all(crate::db::table_lock_holders(client), zone);
    checks.fail(
        "locks",
        crate::error::EXIT_TEMPORARY,
        format!(
            "another session holds a lock on drainctl's tables that the checks waited {} for (a LOCK TABLE, a \
             VACUUM FULL, a migration): passes, enqueue and status wait behind it too; held by: {holders}",
            crate::duration::format_duration(LOCK_WAIT)
        ),
    );
}

/// The database check; the connection, and whether the database was found read-only.
fn check_database(checks: &mut Checks, config: Option<&Config>) -> Option<(postgres::Client, bool)> {
    // Without a usable file, the database URL may still come from the environment.
    let database_url = match config {
        Some(config) => config.require_database_url().cloned(),
        None => Config::from_text("", None).and_then(|empty| empty.require_database_url().cloned()),
    };
    let url = match database_url {
        Ok(url) => url,
        // The file may set one: it did not load, so it was not read.
        Err(_) if config.is_none() => {
            checks.push(
                "database",
                Status::Skip,
                "database not checked: the configuration did not load, and no $DRAINCTL_DATABASE_URL or \
                 $DATABASE_URL is set",
            );
            return None;
        }
        Err(error) => {
            checks.fail("database", error.exit_code(), error.display_scrubbed());
            return None;
        }
    };
    let mut client = match crate::db::connect(&url) {
        Ok(client) => client,
        Err(error) => {
            checks.fail("database", error.exit_code(), error.display_scrubbed());
            return None;
        }
    };
    // The checks read drainctl's tables: one held by another session (a `LOCK TABLE`, a
    // `VACUUM FULL`, a migration) fails them after a while, named by the `locks` check,
    // instead of hanging the command meant to find the cause.
    if let Err(error) = crate::db::set_lock_timeout(&mut client, LOCK_WAIT) {
        checks.fail("database", error.exit_code(), error.display_scrubbed());
        return None;
    }
    match check_writable(checks, &mut client) {
        Some(true) => {}
        Some(false) => return Some((client, true)),
        None => return Some((client, false)),
    }
    match crate::db::server_version(&mut client) {
        Ok((version, number, tls)) => {
            let newer =
                crate::db::judge_server_version(number) == crate::db::ServerVersionVerdict::NewerThanTested;
            checks.push(
                "database",
                if newer { Status::Warn } else { Status::Ok },
                format!(
                    "database reachable (PostgreSQL {version}{}; supported: {}; {}; URL from {})",
                    if newer { ", newer than drainctl was tested with" } else { "" },
                    crate::db::supported_versions(),
                    match tls {
                        Some(protocol) => format!("encrypted with {protocol}"),
                        None => "not encrypted".to_string(),
                    },
                    url.source
                ),
            );
        }
        Err(error) => checks.fail("database", error.exit_code(), error.display_scrubbed()),
    }
    check_durability(checks, &mut client);
    Some((client, false))
}

/// A server that may lose commits it confirmed (`synchronous_commit = off`, `fsync =
/// off`) loses, in a crash, a worker's committed result or the claim of an item whose
/// worker then runs again (docs/guarantees.md, "What the database must keep").
fn check_durability(checks: &mut Checks, client: &mut postgres::Client) {
    // Each setting with where it was set (`pg_settings.source`), which is where it is
    // turned on again: a role's setting wins over the database's.
    let rows = client.query(
        "SELECT name, setting,
                CASE WHEN source = 'configuration file' AND sourcefile LIKE '%postgresql.auto.conf'
                     THEN 'alter system' ELSE source END
           FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync') ORDER BY name DESC",
        &[],
    );
    let settings: Vec<(String, String, String)> = match rows {
        Ok(rows) => rows.iter().map(|row| (row.get(0), row.get(1), row.get(2))).collect(),
        Err(error) => {
            let error = crate::error::Error::from(error);
            return checks.push(
                "durability",
                Status::Warn,
                format!("not checked: {}", error.display_scrubbed()),
            );
        }
    };
    // Advice for the operator to run, never a statement drainctl sends. fsync is the
    // server's alone; synchronous_commit may also be set for a database or a role.
    let fix = |name: &str, source: &str| -> &'static str {
        match (name, source) {
            ("fsync", "alter system") => "ALTER SYSTEM RESET fsync and SELECT pg_reload_conf()",
            ("fsync", _) => "fsync = on in the server's postgresql.conf (or its command line)",
            (_, "database") => "ALTER DATABASE … SET synchronous_commit = on",
            (_, "user") => {
                "ALTER ROLE … SET synchronous_commit = on (the role's setting wins over the database's)"
            }
            (_, "database user") => "ALTER ROLE … IN DATABASE … SET synchronous_commit = on",
            (_, "client") => "synchronous_commit = on in the URL's options, or remove it from them",
            (_, "alter system") => "ALTER SYSTEM RESET synchronous_commit and SELECT pg_reload_conf()",
            _ => "synchronous_commit = on in the server's postgresql.conf (or its command line)",
        }
    };
    let lax: Vec<_> = settings.iter().filter(|(_, value, _)| value.as_str() == "off").collect();
    if lax.is_empty() {
        let values: Vec<String> =
            settings.iter().map(|(name, value, _)| format!("{name} = {value}")).collect();
        checks.push("durability", Status::Ok, values.join(", "));
    } else {
        let values: Vec<String> = lax.iter().map(|(name, value, _)| format!("{name} = {value}")).collect();
        let fixes: Vec<&str> = lax.iter().map(|(name, _, source)| fix(name, source)).collect();
        checks.push(
            "durability",
            Status::Warn,
            format!(
                "{}: a crash of the server may lose commits it confirmed — a worker's result, or the claim \
                 of an item whose worker then runs again; set {}",
                values.join(", "),
                fixes.join(", and ")
            ),
        );
    }
}

/// A standby (after a failover) or `default_transaction_read_only` lets every command
/// connect and read, and every one that writes exit 69: say so before any of them does.
/// Whether the database takes writes; None when that could not be asked (a failed check).
fn check_writable(checks: &mut Checks, client: &mut postgres::Client) -> Option<bool> {
    match crate::db::read_only_reason(client) {
        Ok(None) => Some(true),
        Ok(Some(why)) => {
            checks.fail(
                "database",
                crate::error::EXIT_UNAVAILABLE,
                format!(
                    "the database is read-only ({why}): every command that writes (enqueue, drain, supervise, \
                     pause, burst, retry, discard, prune) exits 69; {}",
                    crate::db::read_only_fix(why)
                ),
            );
            Some(false)
        }
        Err(error) => {
            checks.fail("database", error.exit_code(), error.display_scrubbed());
            None
        }
    }
}

/// Each drain's worker program, workdir and source folder, and the notifier's program.
fn check_programs_and_folders(checks: &mut Checks, config: &Config, cron_path: Option<CronPath>) {
    for group in &config.quota_groups {
        for account in group.accounts.iter().filter(|account| !account.is_implicit()) {
            let whose = format!("quota group {} account {}", group.name, account.name);
            check_worker_zone(checks, &whose, &account.env, config.defaults.timezone);
        }
    }
    for (drain, warning) in config.misspelled_quota_groups() {
        checks.push("quota_group", Status::Warn, warning);
        checks.for_drain(&drain);
    }
    for drain in &config.drains {
        let path_override =
            drain.env.iter().find(|(name, _)| name == "PATH").map(|(_, value)| OsStr::new(value.as_str()));
        let program = drain.command.first().map(String::as_str).unwrap_or_default();
        match find_program(program, path_override.or(cron_path.map(|cron| cron.path)), "command") {
            Ok(found) => match others_may_change_program(&found, path_override.or(cron_path.map(|cron| cron.path))) {
                None => checks.push("worker", Status::Ok, format!("drain {}: worker {}", drain.name, found.display())),
                Some(who) => checks.push("worker", Status::Warn, format!("drain {}: worker {who}", drain.name)),
            },
            Err(problem) => checks.fail(
                "worker",
                EXIT_CONFIG,
                // Only a bare name is looked up on cron's PATH: a path fails alike anywhere.
                match cron_path.filter(|_| path_override.is_none() && !program.contains('/')) {
                    Some(cron) if cron.is_the_crontabs => format!(
                        "drain {}: worker {problem} under cron (PATH={}, from --cron-path); give `command` an \
                         absolute path, or add its folder to PATH in the crontab (and to --cron-path) or in \
                         the drain's `env`",
                        drain.name,
                        cron.path.to_string_lossy()
                    ),
                    Some(cron) => format!(
                        "drain {}: worker {problem} under cron (PATH={}); give `command` an absolute path, \
                         or set PATH in the drain's `env` or in the crontab (then check with \
                         `drainctl doctor --cron-path` and the crontab's PATH)",
                        drain.name,
                        cron.path.to_string_lossy()
                    ),
                    None => format!(
                        "drain {}: worker {}; fix `command` in the configuration",
                        drain.name,
                        with_path_searched(problem, path_override)
                    ),
                },
            ),
        }
        checks.for_drain(&drain.name);
        check_worker_zone(checks, &format!("drain {}", drain.name), &drain.env, config.defaults.timezone);
        if let Some(workdir) = &drain.workdir {
            // A folder above it this user may not enter hides it: out of reach, not missing.
            let is_out_of_reach = std::fs::metadata(workdir).map_or_else(
                |error| error.kind() == std::io::ErrorKind::PermissionDenied,
                |metadata| metadata.is_dir() && !crate::worker::program::may_enter(workdir),
            );
            // As the worker's start opens it: through no other user's link.
            let pinned = crate::worker::pin_workdir(workdir);
            if let Err(
                refused @ (crate::worker::SpawnError::WorkdirForeignLink { .. }
                | crate::worker::SpawnError::WorkdirReplaced { .. }),
            ) = pinned
            {
                checks.fail(
                    "workdir",
                    EXIT_CONFIG,
                    format!("drain {}: {}", drain.name, refused.describe("worker command")),
                );
            } else if is_out_of_reach {
                checks.fail(
                    "workdir",
                    EXIT_CONFIG,
                    format!(
                        "drain {}: workdir {} cannot be entered by this user (no search permission); give \
                         the user drainctl runs as x permission on it (and on the folders above it), or fix \
                         `workdir` of drain {} in the configuration",
                        drain.name,
                        workdir.display(),
                        drain.name
                    ),
                );
            } else if workdir.is_dir() {
                checks.push(
                    "workdir",
                    Status::Ok,
                    format!("drain {}: workdir {}", drain.name, workdir.display()),
                );
            } else {
                checks.fail(
                    "workdir",
                    EXIT_CONFIG,
                    format!(
                        "drain {}: workdir {} does not exist or is not a folder; create it or fix `workdir` of \
                         drain {} in the configuration",
                        drain.name,
                        workdir.display(),
                        drain.name
                    ),
                );
            }
            checks.for_drain(&drain.name);
        }
        if let Some(source) = &drain.source {
            // What every scan and supervise pass would refuse (before: `ok`, and each pass
            // exited 78 on it).
            let refused = crate::sources::resolve_root(drain, source).err();
            match std::fs::read_dir(&source.dir) {
                Ok(_) if refused.is_some() => {
                    checks.fail("source", EXIT_CONFIG, refused.map(|error| error.to_string()).unwrap_or_default())
                }
                Ok(_) => checks.push(
                    "source",
                    Status::Ok,
                    format!("drain {}: source dir {} is readable", drain.name, source.dir.display()),
                ),
                Err(error) => checks.fail(
                    "source",
                    EXIT_CONFIG,
                    format!(
                        "drain {}: source dir {} cannot be read: {error}; create it, fix its permissions or fix source.dir",
                        drain.name,
                        source.dir.display()
                    ),
                ),
            }
            checks.for_drain(&drain.name);
        }
    }
    check_shared_source_folders(checks, config);
    if config.drains.is_empty() {
        // What every `supervise` pass fails on (docs/operations.md, "Who hears of errors").
        checks.fail(
            "worker",
            EXIT_CONFIG,
            "no [[drain]] is configured: no drain runs, and every supervise pass fails (78); add a [[drain]] table",
        );
    }
    if let Some(command) = &config.defaults.notify_command {
        let program = command.first().map(String::as_str).unwrap_or_default();
        // Started with drainctl's own environment: under cron, cron's PATH.
        match find_program(program, cron_path.map(|cron| cron.path), "notify_command") {
            Ok(found) => match others_may_change_program(&found, cron_path.map(|cron| cron.path)) {
                None => {
                    checks.push("notify_command", Status::Ok, format!("notify_command {}", found.display()))
                }
                Some(who) => checks.push("notify_command", Status::Warn, format!("notify_command {who}")),
            },
            Err(problem) => checks.fail(
                "notify_command",
                EXIT_CONFIG,
                match cron_path.filter(|_| !program.contains('/')) {
                    Some(cron) => format!(
                        "notify_command {problem} under cron (PATH={}{}); give `notify_command` an absolute path, \
                         or add its folder to PATH in the crontab{}",
                        cron.path.to_string_lossy(),
                        if cron.is_the_crontabs { ", from --cron-path" } else { "" },
                        if cron.is_the_crontabs { " (and to --cron-path)" } else { "" },
                    ),
                    None => format!("notify_command {}", with_path_searched(problem, None)),
                },
            ),
        }
    }
    // Accepted, as files that list it worked before, but it has no effect: a notifier that
    // fails could not be told of its own failure (docs/configuration.md).
    if config.defaults.notify_on.contains(&crate::model::EventKind::NotifyFailed) {
        checks.push(
            "notify_on",
            Status::Warn,
            "notify_on lists notify_failed, which is never sent to the notifier (it could not be told of its own \
             failure): watch `drainctl events --kind notify_failed` or the metrics instead, and remove it"
                .to_string(),
        );
    }
}

/// What the checks add up to: healthy unless one failed, and then the exit code of the
/// first failure.
struct Verdict {
    failures: usize,
    warnings: usize,
    exit_code: u8,
}

impl Verdict {
    fn of(checks: &[Check]) -> Verdict {
        let failed = checks.iter().filter(|check| check.status == Status::Fail);
        Verdict {
            failures: failed.clone().count(),
            warnings: checks.iter().filter(|check| check.status == Status::Warn).count(),
            exit_code: failed.map(|check| check.exit_code).next().unwrap_or(EXIT_OK),
        }
    }

    fn is_healthy(&self) -> bool {
        self.failures == 0
    }

    /// The summary under the checks.
    fn summary(&self) -> String {
        match (self.failures, self.warnings) {
            (0, 0) => "healthy".to_string(),
            (0, warnings) => format!("healthy, with {warnings} warning(s)"),
            (failures, _) => format!("{failures} check(s) failed"),
        }
    }

    /// The stderr line when a check failed: how many, and the first.
    fn failure_line(&self, checks: &[Check]) -> Option<String> {
        let first = checks.iter().find(|check| check.status == Status::Fail)?;
        Some(format!("doctor: {} check(s) failed; first: {}: {}", self.failures, first.name, first.message))
    }
}

/// `doctor --json`.
#[derive(Serialize)]
struct DoctorView<'a> {
    healthy: bool,
    exit_code: u8,
    checks: Vec<CheckView<'a>>,
}

#[derive(Serialize)]
struct CheckView<'a> {
    check: &'static str,
    drain: Option<&'a str>,
    status: Status,
    message: &'a str,
}

fn render(checks: &[Check], verdict: &Verdict) -> crate::error::Result<Report> {
    let mut human = String::new();
    for check in checks {
        human.push_str(&format!("{:<4}  {}: {}\n", check.status.as_str(), check.name, check.message));
    }
    human.push_str(&verdict.summary());
    human.push('\n');
    let view = DoctorView {
        healthy: verdict.is_healthy(),
        exit_code: verdict.exit_code,
        checks: checks
            .iter()
            .map(|check| CheckView {
                check: check.name,
                drain: check.drain.as_deref(),
                status: check.status,
                message: &check.message,
            })
            .collect(),
    };
    let json =
        serde_json::to_value(&view).map_err(|error| crate::error::Error::Internal(error.to_string()))?;
    Ok(Report::new(human, json).with_exit_code(verdict.exit_code))
}

fn check_schema(checks: &mut Checks, client: &mut postgres::Client, is_read_only: bool) {
    let rows = match crate::migrate::status(client) {
        Ok(rows) => rows,
        // A role without even SELECT cannot read which migrations were applied: what to
        // grant is what the error of every command sends the operator here for.
        Err(error) if error.display_scrubbed().contains("permission denied for table") => {
            return match crate::migrate::missing_table_rights(client) {
                Ok(Some(why)) => checks.fail(
                    "schema",
                    EXIT_CONFIG,
                    format!("the applied migrations cannot be read: {why}"),
                ),
                _ => checks.fail("schema", error.exit_code(), error.display_scrubbed()),
            };
        }
        Err(error) => return checks.fail("schema", error.exit_code(), error.display_scrubbed()),
    };
    let named = |state: &str| -> Vec<String> {
        rows.iter()
            .filter(|row| row.state == state)
            .map(|row| format!("{:04}_{}", row.version, row.name))
            .collect()
    };
    let (changed, unknown, pending) = (named("changed"), named("unknown"), named("pending"));
    if !changed.is_empty() {
        checks.fail(
            "schema",
            EXIT_CONFIG,
            format!(
                "applied migration(s) {} changed since they were applied; restore the file(s) or run `drainctl migrate --repair-checksum VERSION`",
                changed.join(", ")
            ),
        );
    } else if !unknown.is_empty() {
        checks.fail(
            "schema",
            EXIT_CONFIG,
            format!(
                "the database has migration(s) {} this drainctl does not know: install a newer drainctl",
                unknown.join(", ")
            ),
        );
    } else if !pending.is_empty() {
        // Read-only (a standby, default_transaction_read_only): `database` failed for it.
        if is_read_only {
            return checks.fail(
                "schema",
                crate::error::EXIT_UNAVAILABLE,
                format!(
                    "migration(s) {} not applied yet, and no command can apply them while the database is read-only",
                    pending.join(", ")
                ),
            );
        }
        match crate::migrate::foreign_objects(client) {
            Ok(None) => {}
            Ok(Some(taken)) => {
                return checks.fail(
                    "schema",
                    EXIT_CONFIG,
                    format!(
                        "migration(s) {} cannot be applied: this database already holds {taken}; give drainctl a \
                         database of its own (CREATE DATABASE drainctl)",
                        pending.join(", ")
                    ),
                )
            }
            Err(error) => return checks.fail("schema", error.exit_code(), error.display_scrubbed()),
        }
        let cannot = match crate::migrate::cannot_apply(client) {
            Ok(cannot) => cannot,
            Err(error) => return checks.fail("schema", error.exit_code(), error.display_scrubbed()),
        };
        if let Some(why) = cannot {
            // Every command applies pending migrations first: each would fail as `migrate`.
            return checks.fail(
                "schema",
                EXIT_CONFIG,
                format!(
                    "migration(s) {} not applied yet, and this role cannot apply them: {why}",
                    pending.join(", ")
                ),
            );
        }
        checks.push(
            "schema",
            Status::Warn,
            format!(
                "migration(s) {} not applied yet; `drainctl migrate` (or any other command) applies them",
                pending.join(", ")
            ),
        );
    } else {
        match crate::migrate::missing_table_rights(client) {
            Err(error) => checks.fail("schema", error.exit_code(), error.display_scrubbed()),
            Ok(Some(why)) => checks.fail(
                "schema",
                EXIT_CONFIG,
                format!("schema current (version {}), but {why}", crate::migrate::latest_version()),
            ),
            Ok(None) => match crate::migrate::changed_by_hand(client) {
                Err(error) => checks.fail("schema", error.exit_code(), error.display_scrubbed()),
                Ok(Some(why)) => checks.fail("schema", EXIT_CONFIG, why),
                Ok(None) => match crate::db::recount::drifts(client) {
                    Err(error) => checks.fail("schema", error.exit_code(), error.display_scrubbed()),
                    // A trigger disabled for a while left them wrong (docs/migrations.md).
                    Ok(drifts) if !drifts.is_empty() => checks.fail(
                        "schema",
                        EXIT_CONFIG,
                        format!(
                            "schema current (version {}), but the kept item counts differ from the items ({}): \
                             `drainctl migrate --repair-counts` sets them right",
                            crate::migrate::latest_version(),
                            crate::db::recount::describe(&drifts)
                        ),
                    ),
                    Ok(_) => checks.push(
                        "schema",
                        Status::Ok,
                        format!("schema current (version {})", crate::migrate::latest_version()),
                    ),
                },
            },
        }
    }
}

/// The age of the last acting `supervise` pass: a warning when it is older than twice
/// `supervise_interval` (cron or pm2 stopped running it), or when there is none.
fn check_supervisor(
    checks: &mut Checks,
    client: &mut postgres::Client,
    now: chrono::DateTime<chrono::Utc>,
    interval: Duration,
    zone: chrono_tz::Tz,
) {
    let heartbeat = match crate::supervise::Heartbeat::read(client, now, interval) {
        Ok(heartbeat) => heartbeat,
        Err(error) => {
            return checks.push(
                "supervisor",
                Status::Skip,
                format!("supervisor heartbeat not checked: {}", error.display_scrubbed()),
            )
        }
    };
    // The heartbeat is any host's: a host whose own crontab or pm2 entry is missing looks
    // healthy by it, while its crashed runs wait for its own supervise to reap them.
    let host = crate::worker::process::host_name();
    let here = match heartbeat.is_late {
        true => None,
        false => match crate::db::passes::last_pass_on_host(client, &host) {
            Ok(here) => Some(crate::supervise::Heartbeat::new(here, now, interval)),
            Err(error) => {
                log::warn!("doctor: the passes of this host were not read: {}", error.display_scrubbed());
                None
            }
        },
    };
    match here.filter(|here| here.is_late) {
        Some(here) => {
            let last_here = match here.last_pass_at {
                Some(at) => format!("its last {}", crate::duration::format_relative(at - now)),
                None => "none on record".to_string(),
            };
            checks.push(
                "supervisor",
                Status::Warn,
                format!(
                    "{} on another host; this host ({host}) has no recent pass ({last_here}): if drains run \
                     here, install its crontab or pm2 entry — each host's supervise reaps its own crashed runs",
                    heartbeat.describe(now, zone)
                ),
            );
        }
        None => {
            let status = if heartbeat.is_late { Status::Warn } else { Status::Ok };
            checks.push("supervisor", status, heartbeat.describe(now, zone));
        }
    }
}

/// A warning for each drain whose source folder (links resolved) an earlier drain scans
/// too with a glob that matches a file there the other's matches as well: that file is
/// an item of each, run by each (docs/configuration.md, "File-backed sources"). Drains
/// that split a folder between them (`*.pdf`, `*.txt`) are not warned of; the first
/// [`SHARED_FOLDER_FILES`] files are looked at, and the same glob twice is warned of
/// whatever the folder holds.
fn check_shared_source_folders(checks: &mut Checks, config: &Config) {
    let mut seen: Vec<(PathBuf, &crate::config::DrainConfig)> = Vec::new();
    for drain in &config.drains {
        let Some(source) = &drain.source else { continue };
        let folder = std::fs::canonicalize(&source.dir).unwrap_or_else(|_| source.dir.clone());
        for (_, first) in seen.iter().filter(|(earlier, _)| *earlier == folder) {
            let Some(first_source) = &first.source else { continue };
            let both = |path: &str| first_source.glob.matches(path) && source.glob.matches(path);
            let globs = [first_source.glob.as_str(), source.glob.as_str()];
            let shared = if globs[0] == globs[1] {
                Some(format!("the same glob {}", globs[0]))
            } else {
                first_file_matching(&folder, both).map(|path| format!("{path}, for one, matches both globs"))
            };
            let Some(shared) = shared else { continue };
            checks.push(
                "source",
                Status::Warn,
                format!(
                    "drains {} and {} both scan source dir {} ({shared}): a file both globs match is \
                     enqueued and run by each; give each drain a folder or glob of its own",
                    first.name,
                    drain.name,
                    folder.display()
                ),
            );
            checks.for_drain(&drain.name);
        }
        seen.push((folder, drain));
    }
}

/// How many files [`first_file_matching`] looks at, at most.
const SHARED_FOLDER_FILES: usize = 10_000;

/// The first regular file under `folder` (or link to one inside it, as a scan takes it;
/// links to folders not followed; its path relative to it) that `matches`, among the
/// first [`SHARED_FOLDER_FILES`].
fn first_file_matching(folder: &Path, matches: impl Fn(&str) -> bool) -> Option<String> {
    let mut folders = vec![folder.to_path_buf()];
    let mut looked = 0;
    while let Some(next) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                folders.push(entry.path());
                continue;
            }
            let is_file = kind.is_file()
                || (kind.is_symlink()
                    && std::fs::canonicalize(entry.path())
                        .is_ok_and(|target| target.starts_with(folder) && target.is_file()));
            if !is_file {
                continue;
            }
            looked += 1;
            if looked > SHARED_FOLDER_FILES {
                return None;
            }
            let path = entry.path();
            let Some(relative) = path.strip_prefix(folder).ok().and_then(Path::to_str) else { continue };
            if matches(relative) {
                return Some(relative.to_string());
            }
        }
    }
    None
}

/// A warning per drain whose items wait in the database with no `[[drain]]` to run them.
fn check_unconfigured_drains(
    checks: &mut Checks,
    client: &mut postgres::Client,
    config: &Config,
    now: chrono::DateTime<chrono::Utc>,
) {
    match crate::commands::status::unconfigured_drains(client, config, now) {
        Ok(drains) => {
            for drain in drains {
                checks.push("drains", Status::Warn, drain.describe());
            }
        }
        Err(error) => checks.push(
            "drains",
            Status::Skip,
            format!("drains not in the configuration not checked: {}", error.display_scrubbed()),
        ),
    }
}

/// A bare name not found on PATH said with the PATH searched (`path_variable`, else
/// drainctl's own), as a pass says it: the PATH is what to fix or to look in.
fn with_path_searched(problem: String, path_variable: Option<&OsStr>) -> String {
    if !problem.ends_with("not found on PATH") {
        return problem;
    }
    format!("{problem} ({})", program::search_path(path_variable).to_string_lossy())
}

/// Find `program` as the worker would: a name with a slash is a path, a bare name is
/// looked up on `path_variable` (the worker's own PATH) or drainctl's PATH. The error says
/// what is wrong with it.
fn find_program(program: &str, path_variable: Option<&OsStr>, setting: &str) -> Result<PathBuf, String> {
    let path = program::locate(program, path_variable, None)?;
    match program::interpreter_of(&path) {
        Some(interpreter) if interpreter.ends_with('\r') => Err(format!(
            "{program:?} has Windows line endings: its #! line names {interpreter:?}, which the system cannot \
             find; convert it to Unix line endings (e.g. sed -i 's/\\r$//')"
        )),
        None if program::runnable_format(&path) == Some(false) => Err(format!(
            "{program:?} is neither a program nor a script starting with a #! line, so the system cannot run it; \
             add a #! line (e.g. #!/bin/sh) or name the program that runs it in `{setting}`"
        )),
        Some(interpreter) if interpreter.ends_with("/env") => Ok(path),
        Some(interpreter) if program::executable(Path::new(&interpreter)) != Some(true) => Err(format!(
            "{program:?} names {interpreter:?} on its #! line, which is not an executable file; install it \
             or fix the #! line"
        )),
        _ => Ok(path),
    }
}

/// A `TZ` in a drain's or an account's `env` that is not a zone name drainctl knows: the
/// worker reads it (a POSIX rule such as `CET-1` included), but drainctl cannot, and reads
/// the clock times the worker prints in `[defaults] timezone` instead — a reset an hour
/// off, say (docs/rate-limits.md, "Reset times").
fn check_worker_zone(checks: &mut Checks, whose: &str, env: &[(String, String)], configured: chrono_tz::Tz) {
    let Some(value) = crate::quota::env_tz(env) else { return };
    if crate::quota::tz_zone(value).is_none() {
        let fix = match crate::quota::tz_zone(value.trim()) {
            // The worker's C library and Node read no zone from it either: they run in UTC.
            Some(_) => "remove the blanks around the name (the worker reads no zone from it and runs in UTC)",
            None => "use an IANA name such as \"Europe/Berlin\"",
        };
        checks.push(
            "worker_zone",
            Status::Warn,
            format!(
                "{whose}: env TZ = {value:?} is not a zone name drainctl knows; the worker's clock times \
                 (\"resets 8pm\") are read in {configured} instead: {fix}"
            ),
        );
    }
}

/// The configured zone, read from the file on its own so that an unknown zone is reported
/// here even when it made the whole configuration fail. Without a file to read, the zone
/// drainctl would use — the machine's — is checked; only a file that is not TOML leaves
/// the zone unknown.
fn check_zone(checks: &mut Checks, read: Option<&ConfigText>, config_path: Option<&Path>) {
    // The text the configuration was read from; a file refused at load (another user may
    // change it) is read here on its own. A descriptor (`--config /dev/stdin`) is never
    // read again: a pipe would wait for a writer that never comes.
    let text = match read {
        Some(read) => Some(read.text.clone()),
        None => Config::locate(config_path)
            .filter(|path| !crate::config::is_descriptor_path(path))
            .filter(|path| std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file()))
            .and_then(|path| std::fs::read_to_string(path).ok()),
    };
    let Some(text) = text else {
        return check_machine_zone(checks, "no configuration file was read");
    };
    let Ok(raw) = text.parse::<toml::Table>() else {
        return checks.push(
            "timezone",
            Status::Skip,
            "time zone not checked: the configuration file is not valid TOML, so its [defaults] timezone is unknown",
        );
    };
    let configured = raw.get("defaults").and_then(|defaults| defaults.get("timezone"));
    match configured {
        Some(toml::Value::String(name)) => match parse_zone(name) {
            Ok(zone) => {
                checks.push("timezone", Status::Ok, format!("time zone {zone} (from [defaults] timezone)"))
            }
            Err(message) => checks.fail("timezone", EXIT_CONFIG, format!("[defaults] timezone: {message}")),
        },
        Some(_) => checks.fail(
            "timezone",
            EXIT_CONFIG,
            "[defaults] timezone must be a string such as \"Asia/Jerusalem\"",
        ),
        None => check_machine_zone(checks, "set [defaults] timezone to be explicit"),
    }
}

/// The machine's zone (`$TZ`, `/etc/localtime`, `/etc/timezone`), which drainctl uses
/// without `[defaults] timezone`; `note` says why it is the one checked.
fn check_machine_zone(checks: &mut Checks, note: &str) {
    let machine = machine_zone();
    match machine.problem {
        // drainctl still works, in the zone it fell back to: a warning, not a failure.
        Some(problem) => checks.push("timezone", Status::Warn, problem),
        None => checks.push(
            "timezone",
            Status::Ok,
            format!("time zone {} (the machine's, from {}; {note})", machine.zone, machine.source),
        ),
    }
}

/// The log folder exists (created owner-only when missing) and a file can be made in it.
fn check_log_dir(checks: &mut Checks, log_dir: &Path) {
    // Checked before anything is created: the folders would be made where the link's
    // owner chose, and every start of a drain refuses it.
    if let Err(error) = crate::output::refuse_foreign_links(log_dir, "log_dir", "log_dir") {
        return checks.fail("log_dir", EXIT_CONFIG, error.to_string());
    }
    if let Some(metadata) = std::fs::metadata(log_dir).ok().filter(|metadata| !metadata.is_dir()) {
        let what = if metadata.is_file() { "a file" } else { "not a directory (a device, fifo or socket)" };
        return checks.fail(
            "log_dir",
            EXIT_CONFIG,
            format!(
                "log_dir {} is {what}, not a folder; remove it, or change log_dir to a folder",
                log_dir.display()
            ),
        );
    }
    if std::fs::metadata(log_dir).is_err_and(|error| error.kind() == std::io::ErrorKind::PermissionDenied) {
        // There, or not: a folder above it may not be entered by this user.
        return checks.fail(
            "log_dir",
            EXIT_CONFIG,
            format!(
                "log_dir {} cannot be reached by this user (permission denied: a folder above it may not be \
                 entered); give this user access to the folders above it, or change log_dir",
                log_dir.display()
            ),
        );
    }
    if !log_dir.is_dir() {
        // Missing: the first pass creates it, as the user it runs as. A doctor run as
        // another (root, for a service user's deployment) must not make it theirs, which
        // the service could then not write: it says whether this user could.
        return check_log_dir_to_create(checks, log_dir);
    }
    match probe_writable(log_dir) {
        // The drains' logs would be theirs to swap (a drain whose folder is not this
        // user's is refused at its start).
        Ok(()) if let Some(who) = crate::ownership::others_may_replace(log_dir, true) => checks.push(
            "log_dir",
            Status::Warn,
            format!("log_dir {who}; another user could swap the drains' logs and stop drains from starting"),
        ),
        Ok(()) if others_may_write(log_dir) => checks.push(
            "log_dir",
            Status::Warn,
            format!(
                "log_dir {} is writable, by other users too: a link or folder they plant at a drain's name \
                 stops that drain from being started; set log_dir to a folder only this user may write",
                log_dir.display()
            ),
        ),
        Ok(()) => checks.push("log_dir", Status::Ok, format!("log_dir {} is writable", log_dir.display())),
        Err(error) if crate::output::is_full_file_system(&error) => log_dir_full(checks, log_dir, &error),
        Err(error) => checks.fail(
            "log_dir",
            EXIT_CONFIG,
            format!(
                "log_dir {} is not writable: {error}; fix its owner or mode, or change log_dir",
                log_dir.display()
            ),
        ),
    }
}

/// `log_dir` (or the folder that would take it) on a full file system: 75.
fn log_dir_full(checks: &mut Checks, log_dir: &Path, error: &std::io::Error) {
    checks.fail(
        "log_dir",
        EXIT_TEMPORARY,
        format!(
            "log_dir {} is on a full file system: {error}; the drains' log lines are lost until space is freed",
            log_dir.display()
        ),
    );
}

/// A `log_dir` not there yet: the nearest folder above it that is must let this user make
/// it (a probe file written and removed there); nothing is created.
fn check_log_dir_to_create(checks: &mut Checks, log_dir: &Path) {
    let Some(nearest) = log_dir.ancestors().skip(1).find(|folder| std::fs::symlink_metadata(folder).is_ok())
    else {
        return checks.fail(
            "log_dir",
            EXIT_CONFIG,
            format!("log_dir {} has no folder above it", log_dir.display()),
        );
    };
    let nearest = if nearest.as_os_str().is_empty() { Path::new(".") } else { nearest };
    match probe_writable(nearest) {
        Ok(()) => checks.push(
            "log_dir",
            Status::Ok,
            format!(
                "log_dir {} is not there yet: the first pass creates it (mode 0700) in {}, which this user may \
                 write (run doctor as the user drainctl runs as: it is theirs to create)",
                log_dir.display(),
                nearest.display()
            ),
        ),
        Err(error) if crate::output::is_full_file_system(&error) => log_dir_full(checks, log_dir, &error),
        Err(error) => checks.fail(
            "log_dir",
            EXIT_CONFIG,
            format!(
                "log_dir {} cannot be created: {} is not writable by this user: {error}; create log_dir for the \
                 user drainctl runs as, or change log_dir",
                log_dir.display(),
                nearest.display()
            ),
        ),
    }
}

/// Each drain's log folder that exists already (`log_dir/NAME`, left by an earlier
/// deployment, another user's): one `supervise` would refuse, or could not write into,
/// fails here first, so that no pass finds every start of the drain failing.
fn check_drain_log_folders(checks: &mut Checks, config: &Config) {
    for drain in &config.drains {
        let folder = config.defaults.log_dir.join(&drain.name);
        if std::fs::symlink_metadata(&folder).is_err() {
            continue;
        }
        // A full file system is the log_dir check's to report, not a folder to fix.
        if let Err(error) = crate::drain::log_file::refuse_foreign_folder(&folder) {
            checks.fail("log_dir", error.exit_code(), error.display_scrubbed());
        } else if let Err(error) = probe_writable(&folder).or_else(|error| {
            if crate::output::is_full_file_system(&error) {
                Ok(())
            } else {
                Err(error)
            }
        }) {
            checks.fail(
                "log_dir",
                EXIT_CONFIG,
                format!(
                    "drain {}'s log folder {} is not writable: {error}; every start of the drain would fail: \
                     fix its owner or mode (chown it to this user)",
                    drain.name,
                    folder.display()
                ),
            );
        }
    }
}

/// Who besides this user and root may change what runs when drainctl runs the program at
/// `path` (often as root), in words with the fix: see [`others_may_change_file`], for the
/// program and, for a script, the interpreter its `#!` line names (found on
/// `path_variable` for `#!/usr/bin/env NAME`), and so on for an interpreter that is a
/// script. None when nobody may.
fn others_may_change_program(path: &Path, path_variable: Option<&OsStr>) -> Option<String> {
    let mut program = path.to_path_buf();
    // The kernel follows at most a few interpreters that are scripts themselves.
    for _ in 0..5 {
        if let Some(who) = others_may_change_file(&program) {
            return Some(match program.as_path() == path {
                true => who,
                false => format!("{} runs {} (its #! line): {who}", path.display(), program.display()),
            });
        }
        program = script_interpreter(&program, path_variable)?;
    }
    None
}

/// The program a script's `#!` line runs: its interpreter, or the program `env` finds on
/// `path_variable` for `#!/usr/bin/env NAME`.
fn script_interpreter(script: &Path, path_variable: Option<&OsStr>) -> Option<PathBuf> {
    let words = program::shebang_words(script)?;
    let (interpreter, arguments) = words.split_first()?;
    if !interpreter.ends_with("/env") {
        return Some(PathBuf::from(interpreter));
    }
    let name = arguments.iter().find(|word| !word.starts_with('-'))?;
    program::locate(name, path_variable, None).ok()
}

/// Who besides this user and root may change the file at `path`, in words with the fix:
/// the file's owner, every user or a group other than root's; or anyone who may replace
/// it or a folder above it — in the folders of its path as named, of the links on the
/// way, and of the path it resolves to — unless that folder is sticky (`/tmp`). None
/// when nobody may.
fn others_may_change_file(path: &Path) -> Option<String> {
    use crate::ownership::{foreign_owner, other_writer, OtherWriter};
    use std::os::unix::fs::MetadataExt as _;
    let shown = path.display();
    let metadata = std::fs::metadata(path).ok()?;
    match other_writer(&metadata) {
        Some(OtherWriter::EveryUser { mode }) => {
            return Some(format!(
                "{shown} may be changed by every user (mode {mode:04o}), and drainctl runs it: chmod go-w {shown}"
            ))
        }
        Some(OtherWriter::Owner { uid }) => {
            return Some(format!("{shown} {}, who may change what drainctl runs: chown it", foreign_owner(uid)))
        }
        None if metadata.mode() & 0o020 != 0 && !crate::ownership::is_trusted_group(metadata.gid()) => {
            return Some(format!(
                "{shown} may be changed by its group (gid {}, mode {:04o}), and drainctl runs it: chmod g-w {shown}",
                metadata.gid(),
                metadata.mode() & 0o7777
            ))
        }
        None => {}
    }
    crate::ownership::others_may_replace(path, true)
}

/// Whether users other than this one (and root) may create entries in `dir`.
fn others_may_write(dir: &Path) -> bool {
    std::fs::metadata(dir).is_ok_and(|metadata| crate::ownership::other_writer(&metadata).is_some())
}

/// A file drainctl replaces atomically (`metrics_textfile`, `report_html`, named by `key`):
/// its folder must exist and be writable, as drainctl does not create it, and the write's
/// own refusals (`refused`: a symbolic link, a directory) must not apply.
fn check_file_folder(checks: &mut Checks, key: &'static str, file: &Path, refused: crate::error::Result<()>) {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Its next version is written beside it before it replaces it: room for as much as
    // it holds now (a page of 100 KiB on a disk with 32 KiB free fails every write).
    let size = std::fs::metadata(file).map_or(0, |metadata| metadata.len());
    let probe_bytes = usize::try_from(size).unwrap_or(usize::MAX).clamp(PROBE_BYTES, MAX_PROBE_BYTES);
    match probe_writable_bytes(folder, probe_bytes) {
        Ok(()) => match refused {
            Ok(()) => checks.push(key, Status::Ok, format!("{key} {} can be written", file.display())),
            Err(error) => checks.fail(key, error.exit_code(), error.display_scrubbed()),
        },
        Err(_) if !folder.is_dir() => checks.fail(
            key,
            EXIT_CONFIG,
            format!(
                "{key} {}: its folder {} does not exist; create it or change {key}",
                file.display(),
                folder.display()
            ),
        ),
        Err(error) if crate::output::is_full_file_system(&error) => checks.fail(
            key,
            EXIT_TEMPORARY,
            format!(
                "{key} {}: its folder {} is on a full file system: {error}; every write of it fails until \
                 space is freed",
                file.display(),
                folder.display()
            ),
        ),
        Err(error) => checks.fail(
            key,
            EXIT_CONFIG,
            format!(
                "{key} {}: its folder {} is not writable: {error}; create it, fix its owner or mode, or change {key}",
                file.display(),
                folder.display()
            ),
        ),
    }
}

/// Create a file in `folder`, write a block into it and remove it: a full disk, which
/// lets an empty file be made, refuses the block (as it would the file drainctl writes).
fn probe_writable(folder: &Path) -> std::io::Result<()> {
    probe_writable_bytes(folder, PROBE_BYTES)
}

/// [`probe_writable`] with `bytes` written.
fn probe_writable_bytes(folder: &Path, bytes: usize) -> std::io::Result<()> {
    use std::io::Write as _;
    // Written and removed in the folder held open: never where a link swapped in would lead.
    let pinned = crate::pinned_folder::PinnedFolder::open(folder)
        .map_err(crate::pinned_folder::Refusal::into_io_error)?;
    // A name no other user can guess ahead (and make first, failing the probe): random,
    // tried again should one exist all the same.
    let mut tries = 0;
    let (probe, mut file) = loop {
        use std::hash::{BuildHasher as _, Hasher as _};
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let probe =
            std::ffi::OsString::from(format!(".drainctl-doctor-{}-{random:016x}", std::process::id()));
        match pinned.create_new(&probe, 0o600) {
            Ok(file) => break (probe, file),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
            Err(error) => return Err(error),
        }
    };
    let block = [0u8; PROBE_BYTES];
    let mut written = Ok(());
    let mut left = bytes;
    while left > 0 && written.is_ok() {
        let now = left.min(PROBE_BYTES);
        written = file.write_all(&block[..now]);
        left -= now;
    }
    let written = written.and_then(|()| file.sync_all());
    drop(file);
    let removed = pinned.remove(&probe);
    written.and(removed)
}

/// How much the write probe writes at least: one file system block.
const PROBE_BYTES: usize = 4096;
/// At most: a file's own size beyond this is not written out to check for room.
const MAX_PROBE_BYTES: usize = 64 << 20;

/// The system clock (not an injected one) against the database's `now()`.
fn check_clock(checks: &mut Checks, client: &mut postgres::Client) {
    let system = Clock::system();
    let before = system.now();
    let server = match crate::db::server_now(client) {
        Ok(server) => server,
        Err(error) => return checks.fail("clock_skew", error.exit_code(), error.display_scrubbed()),
    };
    let after = system.now();
    let local = before + (after - before) / 2;
    let skew = server - local;
    let size = crate::duration::format_duration(skew.abs().to_std().unwrap_or_default());
    let direction = if skew > chrono::Duration::zero() { "behind" } else { "ahead of" };
    let limit = chrono::Duration::from_std(MAX_CLOCK_SKEW).unwrap_or(chrono::Duration::MAX);
    if skew.abs() > limit {
        checks.push(
            "clock_skew",
            Status::Warn,
            format!(
                "this machine's clock is {size} {direction} the database's (more than {}); fix NTP on one of them",
                crate::duration::format_duration(MAX_CLOCK_SKEW)
            ),
        );
    } else {
        checks.push("clock_skew", Status::Ok, format!("clock within {size} of the database's"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_write_probe_is_not_failed_by_a_file_made_ahead_at_its_name() {
        // Before: `.drainctl-doctor-PID`, which another user could make first (File exists).
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!(".drainctl-doctor-{}", std::process::id())), "").unwrap();
        probe_writable(dir.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "the probe removes its file");
    }

    #[test]
    fn programs_are_found_on_the_given_path() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        let path = dir.path().as_os_str();
        assert_eq!(find_program("tool", Some(path), "command").unwrap(), tool);
        assert!(find_program("plain", Some(path), "command").unwrap_err().contains("not executable"));
        assert!(find_program("nope", Some(path), "command").unwrap_err().contains("not found on PATH"));
        assert_eq!(find_program(tool.to_str().unwrap(), None, "command").unwrap(), tool);
        assert!(find_program("/nonexistent/x", None, "command").unwrap_err().contains("does not exist"));
        // A script whose interpreter is missing cannot run either; `env` is not followed.
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/nonexistent/interpreter -x\necho\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = find_program(script.to_str().unwrap(), None, "command").unwrap_err();
        assert!(error.contains("names \"/nonexistent/interpreter\" on its #! line"), "{error}");
        std::fs::write(&script, "#!/bin/sh\necho\n").unwrap();
        assert_eq!(find_program(script.to_str().unwrap(), None, "command").unwrap(), script);
        std::fs::write(&script, "#!/usr/bin/env some-interpreter\n").unwrap();
        assert_eq!(find_program(script.to_str().unwrap(), None, "command").unwrap(), script);
        std::fs::write(&script, "#!/bin/sh\r\necho\r\n").unwrap();
        let error = find_program(script.to_str().unwrap(), None, "command").unwrap_err();
        assert!(error.contains("Windows line endings"), "{error}");
        // Neither a program nor a script with a #! line: exec refuses it (ENOEXEC).
        std::fs::write(&script, "echo no interpreter line\n").unwrap();
        let error = find_program(script.to_str().unwrap(), None, "command").unwrap_err();
        assert!(error.contains("is neither a program nor a script starting with a #! line"), "{error}");
        assert_eq!(
            find_program("/bin/sh", None, "command").unwrap(),
            Path::new("/bin/sh"),
            "an ELF program runs"
        );
    }
}
