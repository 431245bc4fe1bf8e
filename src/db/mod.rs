//! The database layer: one blocking connection per invocation, advisory-lock keys, and
//! one file of named queries per table family. All SQL of drainctl lives below here and
//! is always parameterized.

pub mod backoffs;
pub mod counters;
pub mod discard;
pub mod drains;
pub mod events;
pub mod export;
pub mod items;
pub mod passes;
pub mod poison;
pub mod quota_groups;
pub mod recount;
pub mod report;
pub mod retention;
pub mod runs;
pub mod sources;
pub mod tls;
pub mod usage;

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, Row, Statement};
use postgres_native_tls::MakeTlsConnector;

use crate::config::DatabaseUrl;
use crate::error::{classify_database_error, Error, Result, CANNOT_CONNECT};

/// `text` as PostgreSQL can store it: a `text` column, and a string in a `jsonb` one,
/// cannot hold U+0000, which a worker may print; it becomes U+FFFD, as an invalid byte of
/// its output already does (docs/json.md). Everything else is unchanged.
pub fn storable_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `value` with [`storable_text`] applied to every string in it, keys included.
pub fn storable_json(value: &serde_json::Value) -> std::borrow::Cow<'_, serde_json::Value> {
    use serde_json::Value;
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(values) => values.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(key, value)| key.contains('\0') || has_nul(value)),
            _ => false,
        }
    }
    if has_nul(value) {
        std::borrow::Cow::Owned(map_strings(value, &|text| storable_text(text).into_owned()))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// `value` with `change` applied to every string in it, keys included.
pub fn map_strings(value: &serde_json::Value, change: &dyn Fn(&str) -> String) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(change(text)),
        Value::Array(values) => Value::Array(values.iter().map(|value| map_strings(value, change)).collect()),
        Value::Object(map) => {
            map.iter().map(|(key, value)| (change(key), map_strings(value, change))).collect()
        }
        other => other.clone(),
    }
}

/// Every advisory lock of drainctl lives in one 64-bit key space whose high 32 bits spell
/// "DRAI" (0x44524149), so it cannot collide with another application's small keys.
pub const LOCK_NAMESPACE: i64 = 0x4452_4149_0000_0000;
/// Held (session level) while migrations are checked and applied.
pub const MIGRATION_LOCK_KEY: i64 = LOCK_NAMESPACE;
/// Held (try-lock) by one `supervise` pass at a time.
pub const SUPERVISE_LOCK_KEY: i64 = LOCK_NAMESPACE + 1;

/// The first key of the two-key advisory locks (a key space apart from the 64-bit keys
/// above), "DRAQ": with `hashtext` of a quota group's name, held while a quota hit of the
/// group is counted towards its item's poison row (transaction level).
pub const QUOTA_HIT_LOCK_CLASS: i32 = 0x4452_4151;

/// The key of concurrency slot `slot` (0-based) of the drain with numeric id `drain_id`.
pub fn drain_slot_key(drain_id: i32, slot: u32) -> i64 {
    LOCK_NAMESPACE + ((drain_id as i64) << 16) + slot as i64
}

/// The key of the lock one scan of the drain's source holds (try-lock): the slot range's
/// last key, far above the highest concurrency slot.
pub fn source_scan_key(drain_id: i32) -> i64 {
    drain_slot_key(drain_id, 0xFFFF)
}

/// How long to wait for the server to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a login may take in all, per host, when the URL sets no `connect_timeout`.
const DEFAULT_LOGIN_WAIT: Duration = Duration::from_secs(60);

type Login = std::result::Result<Client, postgres::Error>;

/// A login still under way after its caller stopped waiting for it: the next one waits for
/// it instead of starting another, so a server that never answers costs one thread and one
/// socket, however often a pass tries again (it reconnects every second while a worker
/// runs: docs/operations.md, "When the database goes away").
static PENDING_LOGIN: std::sync::Mutex<Option<std::sync::mpsc::Receiver<Login>>> =
    std::sync::Mutex::new(None);

/// Connect with `config`, waiting at most `wait` (see [`PENDING_LOGIN`]).
fn log_in(config: &postgres::Config, connector: MakeTlsConnector, wait: Duration) -> Bounded<Login> {
    let mut pending = PENDING_LOGIN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let receiver = match pending.take() {
        Some(receiver) => receiver,
        None => {
            let config = config.clone();
            match on_its_own_thread(move || config.connect(connector)) {
                Ok(receiver) => receiver,
                Err(error) => return Bounded::NoThread(error),
            }
        }
    };
    let answer = answer_within(&receiver, wait);
    if matches!(answer, Bounded::TimedOut) {
        *pending = Some(receiver);
    }
    answer
}

/// A session closed after its first statement waited this long was most likely given up
/// by a pooler's queue; a server that goes away closes it at once.
const QUEUE_GAVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// The error pgbouncer sends a client its queue gave up on.
const QUEUE_WAIT_TIMEOUT: &str = "query_wait_timeout";

/// A URL in quotes, or with a line break or space around it, as an env file or a `$(cat
/// file)` leaves it: the parser would blame an option, the server a database named
/// `postgres\n` (69, as if to be retried). Said without the URL, which holds the password.
fn refuse_a_wrapped_url(database: &DatabaseUrl) -> Result<()> {
    let url = database.url.as_str();
    let problem = if url.trim().is_empty() {
        "is empty or blank: give postgres://USER:PASSWORD@HOST:PORT/DATABASE, or leave it out"
    } else if url.trim() != url {
        "begins or ends with a space or a line break: remove it"
    } else if url.len() >= 2
        && (url.starts_with('"') && url.ends_with('"') || url.starts_with('\'') && url.ends_with('\''))
    {
        "is wrapped in quotes, which are not part of it (docker's --env-file keeps them): remove them"
    } else {
        return Ok(());
    };
    Err(Error::Config(format!("the database URL (from {}) {problem}", database.source)))
}

/// Open the one connection of this invocation.
pub fn connect(database: &DatabaseUrl) -> Result<Client> {
    refuse_a_wrapped_url(database)?;
    let (url, tls) = tls::split_tls_settings(&database.url, &database.source)?;
    let mut config: postgres::Config = url.parse().map_err(|error: postgres::Error| {
        // Only a known option whose value is refused is named: any other text of the
        // parser's (an unknown option, an unexpected character) may be a piece of an
        // unquoted password.
        let cause = std::error::Error::source(&error).map(|cause| cause.to_string()).unwrap_or_default();
        // A URL of another scheme (`mysql://`) reads as key=value settings to the parser.
        let scheme = url.split_once("://").map(|(scheme, _)| scheme).filter(|scheme| {
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        });
        let why = if url.trim_start().starts_with('$') {
            ": a variable ($NAME) is not expanded: give the URL itself (or leave `url` out of the \
             configuration and set DRAINCTL_DATABASE_URL or DATABASE_URL in the environment)"
                .to_string()
        } else if let Some(scheme) = scheme.filter(|scheme| !matches!(*scheme, "postgres" | "postgresql"))
        {
            format!(
                ": a {scheme}:// URL; drainctl speaks to PostgreSQL only, with postgres:// or postgresql://"
            )
        } else if let Some(option) = unsupported_libpq_option(&url) {
            match option {
                "passfile" | "service" => format!(
                    ": libpq's {option} is not supported: drainctl takes the host, user and password from the URL \
                     only (no ~/.pgpass, pg_service.conf or PG* variables); write them into it and remove {option}"
                ),
                _ => format!(": libpq's {option} is not supported by drainctl; remove it"),
            }
        } else if cause.starts_with("invalid value for option `") {
            format!(": {cause}")
        } else {
            ": an unknown option, or a value with a space or & that is not quoted or percent-encoded"
                .to_string()
        };
        Error::Config(format!(
            "invalid database URL (from {}): {error}{why}{}; give postgres://USER:PASSWORD@HOST:PORT/DATABASE \
             or key=value settings such as \"host=HOST dbname=DATABASE user=USER\"",
            database.source,
            url_hints(&url)
        ))
    })?;
    // `postgres://:PASSWORD@HOST/DATABASE`: the server would refuse the empty user name
    // as if it were down (69); it is the URL that is wrong.
    if config.get_user().is_some_and(str::is_empty) {
        return Err(Error::Config(format!(
            "the database URL (from {}) names no user; give postgres://USER:PASSWORD@HOST:PORT/DATABASE",
            database.source
        )));
    }
    if config.get_application_name().is_none() {
        config.application_name("drainctl");
    }
    config.ssl_mode(tls.crate_mode());
    let connector = tls.connector(&database.source)?;
    // The socket a URL of one Unix-socket folder dials, named when it is not there.
    let socket_file = match (config.get_hosts(), config.get_ports()) {
        ([postgres::config::Host::Unix(folder)], [] | [_]) => {
            let port = config.get_ports().first().copied().unwrap_or(5432);
            Some(folder.join(format!(".s.PGSQL.{port}")))
        }
        _ => None,
    };
    let unavailable = |error: postgres::Error| {
        // A setting the URL passes to the server (`options=-c…`) that the server refuses at
        // login: unknown, a bad value, or one the role may not set. Trying again cannot
        // help; the URL must change (78).
        use postgres::error::SqlState;
        let refused_setting = error.as_db_error().filter(|db| {
            *db.code() == SqlState::UNDEFINED_OBJECT
                || *db.code() == SqlState::INVALID_PARAMETER_VALUE
                || (*db.code() == SqlState::INSUFFICIENT_PRIVILEGE
                    && db.message().contains("to set parameter"))
        });
        if let Some(db) = refused_setting {
            return Error::Config(format!(
                "{CANNOT_CONNECT} (URL from {}): the server refused a setting the URL gives it: {}; fix or \
                 remove it in the URL's options (options=-cNAME%3DVALUE)",
                database.source,
                crate::output::one_line(db.message())
            ));
        }
        let detail = match classify_database_error(&error) {
            // Settings the client cannot use are the configuration's fault (78).
            Error::Config(message) => {
                let hint = if message.contains("password missing") {
                    "; the server asks for a password and drainctl takes it from the database URL \
                     only (PGPASSWORD and ~/.pgpass are not read): give postgres://USER:PASSWORD@HOST/DATABASE \
                     or password=PASSWORD (docs/configuration.md)"
                } else {
                    "; give postgres://USER:PASSWORD@HOST:PORT/DATABASE or key=value settings with a host"
                };
                return Error::Config(format!(
                    "{CANNOT_CONNECT} (URL from {}): {message}{hint}",
                    database.source
                ));
            }
            Error::Internal(message) => message,
            other => other.to_string(),
        };
        // A NUL in a setting the client sends at login (`%00` in the URL's database, user or
        // `application_name`): no server could take it, whenever it is tried (78, not 69).
        if detail.contains("string contains embedded null") || detail.contains("unexpected NUL byte") {
            return Error::Config(format!(
                "{CANNOT_CONNECT} (URL from {}): {detail}: a setting of the database URL holds a NUL \
                 character (%00); remove it",
                database.source
            ));
        }
        let no_socket = socket_file
            .as_ref()
            .filter(|_| detail.contains("error connecting to server") && detail.contains("No such file or directory"))
            .map(|socket| {
                format!(
                    "; there is no socket {}: check that the server runs and that the URL's host (a folder of \
                     the server's unix_socket_directories) and port are its own",
                    socket.display()
                )
            });
        // No server answered at all (refused, no route, a name that does not resolve).
        // target_session_attrs=read-write found servers, none taking writes (a failover
        // under way, standbys only): they run.
        let hint = if detail.contains("does not allow writes") {
            "; every host of the URL answered, none takes writes now (standbys, or a failover under way): \
             the primary's address belongs in the URL; a promoted standby takes writes once promoted"
        } else if let Some(socket) = &no_socket {
            socket
        } else if detail.contains("error connecting to server") {
            "; check that the server runs and that the URL's host and port are its own"
        } else if detail.contains("password authentication failed")
            || detail.contains("SASL authentication failed")
        {
            // The second, pgbouncer's words for a wrong password.
            "; the URL's user or password is not the server's: fix them in the database URL (percent-encode \
             @, :, / and % in the password: %40, %3A, %2F, %25)"
        } else if detail.contains("does not exist") && detail.contains("database \"") {
            "; create it (createdb, or CREATE DATABASE as superuser) or name an existing one in the \
             database URL: drainctl creates its tables, not the database"
        } else if detail.contains("role \"") && detail.contains("does not exist") {
            "; create that user on the server (CREATE ROLE … LOGIN PASSWORD …) or name an existing one in \
             the database URL"
        } else if detail.contains("server does not support TLS") {
            // It answered: it (or the pooler in front of it) takes no TLS, and sslmode
            // asks for it (docs/operations.md, "TLS to the database").
            "; the URL's sslmode asks for TLS and the server (or a pooler in front of it) offers none: \
             turn ssl on there, or give sslmode=prefer or sslmode=disable"
        } else {
            ""
        };
        Error::Unavailable(format!(
            "{CANNOT_CONNECT} (URL from {}): {detail}{hint}{}",
            database.source,
            url_hints(&url)
        ))
    };
    // Each TCP connection waits connect_timeout; the whole login (TLS, authentication, a
    // pooler's queue) is bounded too: a server or pooler that takes the connection and
    // never answers (stopped, frozen) would hold the command — and cron's next passes
    // behind it — for ever.
    let hosts = config.get_hosts().len().max(1) as u32;
    let login_wait = match config.get_connect_timeout() {
        Some(timeout) => timeout.saturating_mul(hosts + 1),
        None => DEFAULT_LOGIN_WAIT.saturating_mul(hosts),
    };
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let mut client = match log_in(&config, connector.clone(), login_wait) {
        Bounded::Done(connected) => connected.map_err(unavailable)?,
        Bounded::NoThread(error) => {
            return Err(Error::Internal(format!("cannot start a thread to connect to the database: {error}")))
        }
        Bounded::TimedOut => {
            return Err(Error::Unavailable(format!(
                "{CANNOT_CONNECT} (URL from {}): no connection completed within {}: the server, or a pooler \
                 before it, did not answer in time (stopped, frozen or overloaded); connect_timeout in the \
                 URL sets the wait",
                database.source,
                crate::duration::format_duration(login_wait)
            )))
        }
    };
    // Until the checks below passed, only the simple query protocol is used: it works
    // through any pooler, where a prepared statement may not.
    let asked = std::time::Instant::now();
    let identity = backend_identity(&mut client).map_err(|error| {
        let waited = asked.elapsed();
        let closed = error.is_closed() || crate::error::is_broken_session(&error);
        match unavailable(error) {
            // The pooler's error line is lost with the closed socket: say what it was most
            // likely to have been (docs/operations.md, "Connection poolers").
            // Or it came through: pgbouncer names its setting only.
            Error::Unavailable(message) if message.ends_with(QUEUE_WAIT_TIMEOUT) => Error::Unavailable(format!(
                "{message}: a pooler whose pool is full gave up on the client in its queue (pgbouncer: \
                 query_wait_timeout); give the pool more server connections (docs/operations.md, \
                 \"Connection poolers\")"
            )),
            Error::Unavailable(message) if closed && waited >= QUEUE_GAVE_UP_AFTER => Error::Unavailable(format!(
                "{message} after the first statement waited {} for an answer: a pooler whose pool is full \
                 closes a client its queue gave up on this way (pgbouncer: query_wait_timeout); give the pool \
                 more server connections (docs/operations.md, \"Connection poolers\")",
                crate::duration::format_duration(std::time::Duration::from_secs(waited.as_secs()))
            )),
            other => other,
        }
    })?;
    check_server_version(&identity.version, &identity.version_num)?;
    refuse_transaction_pooler(&config, connector, &mut client, &identity)?;
    // A process frozen (SIGSTOP, a paused VM) in the middle of a transaction must not hold
    // its locks for ever: the server ends such a session, and the run is reaped. A host
    // that vanishes (power, network) closes no socket: without keepalives the server would
    // keep its session — and the concurrency slot and locks it holds — for the system's
    // two hours and more; probed after a minute of silence, the session of a dead host ends
    // within about two (docs/operations.md, "Several hosts").
    client.batch_execute(SESSION_SETTINGS_SQL)?;
    // PostgreSQL 14 added an idle timeout of whole sessions: one a role or database sets
    // would end a pass's session while its worker runs, and with it the concurrency slot
    // (a second pass would run beside the first).
    if identity.version_num.parse::<i32>().is_ok_and(|number| number >= 140_000) {
        client.batch_execute("SET idle_session_timeout = 0")?;
    }
    #[cfg(feature = "testing")]
    if let Some(ms) =
        std::env::var(IDLE_IN_TRANSACTION_TIMEOUT_ENV).ok().and_then(|ms| ms.parse::<u32>().ok())
    {
        client.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', $1, false)",
            &[&format!("{ms}ms")],
        )?;
    }
    Ok(client)
}

/// What may be wrong with a URL the server or the parser refused, which their error does
/// not say: a variable that was never expanded, a reserved character not percent-encoded.
fn url_hints(url: &str) -> String {
    let variable = if !url.trim_start().starts_with('$') && url.contains("${") {
        "; the URL holds a variable (${NAME}), which is not expanded: write its value"
    } else {
        ""
    };
    format!("{variable}{}", reserved_in_user_or_password(url))
}

/// `; the URL's user or password holds …` when the part of a `postgres://` URL before
/// its last `@` holds a character URLs reserve (`@`, `/`, `?`, `#`): a password written as
/// it is splits the URL elsewhere, and the error (an unknown host, a port that is not a
/// number, a refused password) points away from it. Empty otherwise. Nothing of the URL
/// is quoted.
fn reserved_in_user_or_password(url: &str) -> &'static str {
    let Some((_, rest)) = url.trim().split_once("://") else { return "" };
    let Some((user_and_password, _)) = rest.rsplit_once('@') else { return "" };
    if user_and_password.contains(['@', '/', '?', '#']) {
        "; the URL's user or password holds a character URLs reserve: percent-encode it (@ as %40, \
         / as %2F, ? as %3F, # as %23, : as %3A)"
    } else {
        ""
    }
}

/// A libpq connection option the driver does not know, written in the URL (`?passfile=`)
/// or the key=value settings (`service=`): named in the error, where an unknown word is
/// not (it may be a piece of an unquoted password).
fn unsupported_libpq_option(url: &str) -> Option<&'static str> {
    const LIBPQ_ONLY: [&str; 12] = [
        "passfile",
        "service",
        "gssencmode",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "requirepeer",
        "require_auth",
        "sslcrl",
        "sslcrldir",
        "sslcompression",
        "ssl_min_protocol_version",
    ];
    let settings = url.split_once('?').map_or(url, |(_, query)| query);
    let names =
        settings.split(['&', ' ']).filter_map(|setting| setting.split_once('=').map(|(name, _)| name.trim()));
    let found: Vec<&str> = names.collect();
    LIBPQ_ONLY.into_iter().find(|option| found.contains(option))
}

/// What to do about a database [`read_only_reason`] found read-only (`why`): a standby's
/// address is the wrong one; a primary set read-only is fixed where it was set.
pub fn read_only_fix(why: &str) -> &'static str {
    if why.starts_with("default_transaction_read_only") {
        "turn it off where it was set, in a transaction that may write (BEGIN READ WRITE; ALTER DATABASE or \
         ALTER ROLE … RESET default_transaction_read_only; COMMIT), or in postgresql.conf (and SELECT \
         pg_reload_conf()), or point the database URL at a server that takes writes"
    } else {
        "point the database URL at the primary"
    }
}

/// Refuse, with one line, a command that writes on a database [`read_only_reason`] finds
/// read-only (exit 69), before it does anything.
pub fn refuse_when_read_only(client: &mut impl GenericClient) -> Result<()> {
    match read_only_reason(client)? {
        Some(why) => Err(Error::Unavailable(format!(
            "the database is read-only ({why}); nothing was done: {}",
            read_only_fix(why)
        ))),
        None => Ok(()),
    }
}

/// Why the session cannot write, if it cannot: a standby in recovery (before its
/// promotion, after a failover), or `default_transaction_read_only = on`.
pub fn read_only_reason(client: &mut impl GenericClient) -> Result<Option<&'static str>> {
    let row = client
        .query_one("SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'", &[])?;
    Ok(match (row.get::<_, bool>(0), row.get::<_, bool>(1)) {
        (true, _) => Some("a standby in recovery"),
        (false, true) => Some("default_transaction_read_only = on"),
        (false, false) => None,
    })
}

/// Test hook: overrides the 60 s idle in a transaction of `SESSION_SETTINGS_SQL` (milliseconds).
/// Compiled only with the `testing` feature, never into a release build.
#[cfg(feature = "testing")]
const IDLE_IN_TRANSACTION_TIMEOUT_ENV: &str = "DRAINCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS";

/// The oldest PostgreSQL major version drainctl runs on: older ones lack functions the
/// schema and the queries use (`sha256(bytea)` came with 11). See docs/operations.md.
pub const OLDEST_SUPPORTED_MAJOR: i32 = 11;
/// The newest PostgreSQL major version drainctl was tested with; newer ones are allowed,
/// with a warning.
pub const NEWEST_TESTED_MAJOR: i32 = 18;

/// What drainctl makes of the server's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerVersionVerdict {
    /// Between [`OLDEST_SUPPORTED_MAJOR`] and [`NEWEST_TESTED_MAJOR`].
    Supported,
    /// Newer than [`NEWEST_TESTED_MAJOR`]: allowed, with a warning.
    NewerThanTested,
    /// Older than [`OLDEST_SUPPORTED_MAJOR`]: refused.
    TooOld,
}

/// Judge a `server_version_num` (e.g. `150004` for 15.4, `100023` for 10.23).
pub fn judge_server_version(version_num: i32) -> ServerVersionVerdict {
    let major = version_num / 10_000;
    if major < OLDEST_SUPPORTED_MAJOR {
        ServerVersionVerdict::TooOld
    } else if major > NEWEST_TESTED_MAJOR {
        ServerVersionVerdict::NewerThanTested
    } else {
        ServerVersionVerdict::Supported
    }
}

/// The supported range, for messages: `11 through 18`.
pub fn supported_versions() -> String {
    format!("{OLDEST_SUPPORTED_MAJOR} through {NEWEST_TESTED_MAJOR}")
}

/// Refuse a server older than drainctl supports (exit 78); warn about one newer than it
/// was tested with.
fn check_server_version(version: &str, version_num: &str) -> Result<()> {
    let Ok(number) = version_num.parse::<i32>() else {
        return Err(Error::Config(format!(
            "the database server reports server_version_num \"{version_num}\" (server_version \
             \"{version}\"), not a PostgreSQL version number: drainctl needs PostgreSQL {}",
            supported_versions()
        )));
    };
    match judge_server_version(number) {
        ServerVersionVerdict::Supported => Ok(()),
        ServerVersionVerdict::NewerThanTested => {
            log::warn!(
                "PostgreSQL {version} is newer than drainctl was tested with (PostgreSQL {}); \
                 report any problem with the server version",
                supported_versions()
            );
            Ok(())
        }
        ServerVersionVerdict::TooOld => Err(Error::Config(format!(
            "the database server runs PostgreSQL {version} (server_version_num {version_num}), which \
             drainctl does not support: it needs PostgreSQL {OLDEST_SUPPORTED_MAJOR} or newer \
             (supported: {}); upgrade the server",
            supported_versions()
        ))),
    }
}

/// Which server process serves a connection, where the server says the session arrived,
/// and the server's version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct BackendIdentity {
    /// `pg_backend_pid()`.
    pid: String,
    /// `pg_postmaster_start_time()`: with the pid, unique among the sessions open at one
    /// instant, across servers too.
    server_start: String,
    /// `server_version`, e.g. `15.4`.
    version: String,
    /// `server_version_num`, e.g. `150004`.
    version_num: String,
    /// The address and port the session arrived at: `inet_server_addr()` and
    /// `inet_server_port()`, none over a Unix socket.
    arrived_at: Option<(String, String)>,
    /// The server's `port` and `unix_socket_directories` settings; the latter only a role
    /// that may read every setting sees (superuser, `pg_read_all_settings`): empty for
    /// others, whose Unix-socket sessions the second step checks instead.
    port_setting: String,
    socket_directories: String,
}

/// Read [`BackendIdentity`] with one simple-protocol query.
fn backend_identity(client: &mut Client) -> std::result::Result<BackendIdentity, postgres::Error> {
    let messages = client.simple_query(
        "SELECT pg_backend_pid(), pg_postmaster_start_time(), \
                current_setting('server_version'), current_setting('server_version_num'), \
                host(inet_server_addr()), inet_server_port(), \
                current_setting('port'), \
                CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') \
                     THEN current_setting('unix_socket_directories') END",
    )?;
    let row = messages.iter().find_map(|message| match message {
        postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    let value = |index: usize| row.and_then(|row| row.get(index)).map(str::to_string);
    let text = |index: usize| value(index).unwrap_or_default();
    Ok(BackendIdentity {
        pid: text(0),
        server_start: text(1),
        version: text(2),
        version_num: text(3),
        arrived_at: value(4).zip(value(5)),
        port_setting: text(6),
        socket_directories: text(7),
    })
}

/// Could something stand between drainctl and the server? True unless the server saw
/// the session arrive where drainctl dialled: over TCP at one of the dialled host's
/// addresses and the dialled port, over a Unix socket in one of the server's socket
/// folders with the dialled port. A pooler (like any proxy or address translation) makes
/// the server see its own connection instead, at another address, port or socket. With
/// several hosts to try, drainctl cannot tell which one answered: true.
fn may_be_proxied(config: &postgres::Config, server: &BackendIdentity) -> bool {
    use postgres::config::Host;
    let ([host], port) = (config.get_hosts(), config.get_ports()) else { return true };
    let port = match port {
        [] => 5432,
        [port] => *port,
        _ => return true,
    };
    match (host, &server.arrived_at) {
        (Host::Tcp(name), Some((address, arrived_port))) => {
            let Ok(address) = address.parse::<std::net::IpAddr>() else { return true };
            let dialled: Vec<std::net::IpAddr> = match config.get_hostaddrs() {
                [] => match std::net::ToSocketAddrs::to_socket_addrs(&(name.as_str(), port)) {
                    Ok(found) => found.map(|socket| socket.ip().to_canonical()).collect(),
                    Err(_) => return true,
                },
                [hostaddr] => vec![hostaddr.to_canonical()],
                _ => return true,
            };
            *arrived_port != port.to_string() || !dialled.contains(&address.to_canonical())
        }
        (Host::Unix(folder), None) => {
            let is_server_folder = server
                .socket_directories
                .split(',')
                .map(str::trim)
                .any(|listed| std::path::Path::new(listed) == folder.as_path());
            server.port_setting != port.to_string() || !is_server_folder
        }
        _ => true,
    }
}

/// How long the pooler check waits for its second connection to answer.
const POOLER_CHECK_WAIT: Duration = Duration::from_secs(3);

/// Refuse a connection through a pooler in transaction (or statement) mode, exit 78.
///
/// drainctl needs one server session for the whole invocation: its migration lock,
/// concurrency slots and scan locks are session-level advisory locks, and its statements
/// are prepared once per connection. A transaction pooler (pgbouncer `pool_mode =
/// transaction`) hands each transaction to whichever server connection is free, so locks
/// stay behind on idle server connections, `lock_timeout` is set on one session and used
/// on another, and prepared statement names collide.
///
/// Poolers do not announce themselves or their mode (pgbouncer sends PostgreSQL's own
/// parameters and its own cancel key), so the check observes what pooling does: with the
/// first connection idle and still open, a second connection asks which server process
/// serves it. Directly and in session mode every open client has its own server process,
/// so the two always differ. In transaction mode the first connection's server process
/// went back to the pool when its query finished, and pgbouncer by default reuses the
/// most recently released server connection first (`server_round_robin = 0`): the second
/// connection lands on the same process, and the check refuses. Limits: the check
/// cannot fail a good setup (two open sessions never share a process), but it can miss a
/// transaction pooler that gives the second connection another server connection —
/// under load, with `server_round_robin = 1`, or a pooler with other reuse rules. When
/// the second connection cannot connect or gets no server connection within
/// [`POOLER_CHECK_WAIT`] (a full session pool) the check passes. The second connection is
/// opened only when [`may_be_proxied`] says the server saw the session arrive elsewhere
/// than drainctl dialled, so a direct connection pays nothing (docs/operations.md).
fn refuse_transaction_pooler(
    config: &postgres::Config,
    connector: MakeTlsConnector,
    client: &mut Client,
    first: &BackendIdentity,
) -> Result<()> {
    if !may_be_proxied(config, first) {
        return Ok(());
    }
    served_by_two_processes(config.clone(), connector, first)?;
    // A pooler that gave the second connection another server connection (a busy pool,
    // `server_round_robin = 1`) may hand this one's next transactions to others too.
    for _ in 0..SAME_SESSION_LOOKS {
        let pid = backend_identity(client)?.pid;
        if pid != first.pid {
            return Err(Error::Config(format!(
                "the database connection goes through a connection pooler in transaction or statement mode (one \
                 connection was served by two server processes, pid {} then {pid}): {NEEDS_A_SESSION}",
                first.pid
            )));
        }
    }
    Ok(())
}

/// How many times the pooler check asks again which server process serves the connection.
const SAME_SESSION_LOOKS: usize = 2;

/// What a transaction pooler breaks, and the fix (docs/operations.md, "Connection poolers").
pub(crate) const NEEDS_A_SESSION: &str =
    "drainctl needs a whole server session per invocation for its advisory locks \
     and prepared statements; connect directly to PostgreSQL, or through a pool in session mode (pgbouncer: \
     pool_mode = session), see docs/operations.md";

/// The first half of [`refuse_transaction_pooler`]: a second connection served by the
/// first one's server process.
fn served_by_two_processes(
    mut config: postgres::Config,
    connector: MakeTlsConnector,
    first: &BackendIdentity,
) -> Result<()> {
    config.application_name("drainctl pooler check");
    // A session pool with no free server connection makes it wait in the pooler's queue.
    let second = within(POOLER_CHECK_WAIT, move || {
        config.connect(connector).and_then(|mut client| {
            let identity = backend_identity(&mut client);
            if let Err(error) = client.close() {
                log::debug!("closing the pooler check's connection: {}", classify_database_error(&error));
            }
            identity
        })
    });
    match second {
        Bounded::Done(Ok(second))
            if (&second.pid, &second.server_start) == (&first.pid, &first.server_start) =>
        {
            Err(Error::Config(format!(
                "the database connection goes through a connection pooler in transaction or statement mode \
                 (two open connections were served by the same server process, pid {}): {NEEDS_A_SESSION}",
                first.pid
            )))
        }
        Bounded::Done(Ok(_)) => Ok(()),
        Bounded::Done(Err(error)) => {
            log::info!(
                "pooler check skipped: a second connection failed: {}",
                classify_database_error(&error)
            );
            Ok(())
        }
        Bounded::TimedOut => {
            log::info!(
                "pooler check skipped: a second connection got no answer within {}",
                crate::duration::format_duration(POOLER_CHECK_WAIT)
            );
            Ok(())
        }
        Bounded::NoThread(error) => {
            log::info!("pooler check skipped: cannot start a thread for a second connection: {error}");
            Ok(())
        }
    }
}

/// What became of work given a time limit (see [`within`]).
enum Bounded<T> {
    Done(T),
    TimedOut,
    NoThread(std::io::Error),
}

/// `work` on a thread of its own, waited for at most `wait`.
fn within<T: Send + 'static>(wait: Duration, work: impl FnOnce() -> T + Send + 'static) -> Bounded<T> {
    match on_its_own_thread(work) {
        Ok(receiver) => answer_within(&receiver, wait),
        Err(error) => Bounded::NoThread(error),
    }
}

/// `work` started on a thread of its own, its answer to come on the receiver. The thread
/// is not joined: it ends when `work` does, or with the process.
fn on_its_own_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::sync::mpsc::Receiver<T>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("connect".to_string()).spawn(move || {
        // Fails only when nobody waits any more: the process is ending.
        let _ = sender.send(work());
    })?;
    Ok(receiver)
}

/// The answer on `receiver`, waited for at most `wait`.
fn answer_within<T>(receiver: &std::sync::mpsc::Receiver<T>, wait: Duration) -> Bounded<T> {
    match receiver.recv_timeout(wait) {
        Ok(answer) => Bounded::Done(answer),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Bounded::TimedOut,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Bounded::NoThread(std::io::Error::other("the connecting thread ended without an answer"))
        }
    }
}

/// Every session's settings: how long it may sit idle inside a transaction before the
/// server ends it; no `statement_timeout` or `lock_timeout` a role or database may set
/// (drainctl bounds its own waits: `lock_timeout` where it sets one, `--lock-timeout`; a
/// timeout of the role's would cut a lock wait, an enqueue beside another, an export or a
/// migration short as an error); READ COMMITTED, whatever isolation a role or database
/// makes the default (every statement is written for it: under SERIALIZABLE two passes
/// fail each other's transactions); the server's keepalive probes of its TCP connection —
/// the first after 60 s without traffic, then every 10 s, the connection dropped after 6
/// unanswered (over a Unix socket they do nothing).
const SESSION_SETTINGS_SQL: &str =
    "SET idle_in_transaction_session_timeout = '60s'; SET statement_timeout = 0; SET lock_timeout = 0; \
     SET default_transaction_isolation = 'read committed'; \
     SET tcp_keepalives_idle = 60; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 6";

/// Make lock waits of this session fail after `timeout` instead of blocking (supervise must
/// never hang behind a frozen process).
/// The longest `--lock-timeout`: PostgreSQL's `lock_timeout` holds at most 2^31 − 1
/// milliseconds (24d 20h 31m).
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 60 * 60);
/// [`MAX_LOCK_TIMEOUT`] as the messages spell it.
pub const MAX_LOCK_TIMEOUT_TEXT: &str = "24d";

pub fn set_lock_timeout(client: &mut Client, timeout: Duration) -> Result<()> {
    set_lock_timeout_for(client, timeout, false)
}

/// [`set_lock_timeout`] for the transaction `client` is in only (`is_local`), or for the
/// session. Never 0, which would mean no limit.
pub fn set_lock_timeout_for(
    client: &mut impl GenericClient,
    timeout: Duration,
    is_local: bool,
) -> Result<()> {
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    client.execute("SELECT set_config('lock_timeout', $1, $2)", &[&format!("{millis}ms"), &is_local])?;
    Ok(())
}

/// Plan the session's parameterized statements once, generically, instead of re-planning
/// them for each execution. The drain pass's statements probe indexes by id, drain and
/// run; the server's default re-plans a statement on every execution once it judges the
/// custom plans cheaper, and at a large backlog planning the claim cost more than running
/// it (1.8 ms of planning per claim at 1,000,000 items, docs/benchmarks.md). PostgreSQL 11
/// has no such setting and keeps its default.
pub fn use_generic_plans(client: &mut Client) -> Result<()> {
    client.execute(
        "SELECT set_config('plan_cache_mode', 'force_generic_plan', false)
          WHERE current_setting('server_version_num')::int >= 120000",
        &[],
    )?;
    Ok(())
}

/// Try to take a session-level advisory lock without waiting.
pub fn try_advisory_lock(client: &mut Client, key: i64) -> Result<bool> {
    let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&key])?;
    Ok(row.get(0))
}

/// Release a session-level advisory lock taken with [`try_advisory_lock`].
pub fn advisory_unlock(client: &mut Client, key: i64) -> Result<()> {
    client.query_one("SELECT pg_advisory_unlock($1)", &[&key])?;
    Ok(())
}

/// A session holding an advisory lock, as `pg_locks` and `pg_stat_activity` show it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LockHolder {
    /// The server process (backend) of the session.
    pub pid: i32,
    /// Its `application_name` (`drainctl` for drainctl's own sessions); None when not shown.
    pub application: Option<String>,
    /// Its client address (`local` for a Unix socket); None when not shown.
    pub client: Option<String>,
    /// When the session connected; None when not shown (another role's session without
    /// `pg_read_all_stats`).
    pub connected_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `active`, `idle`, `idle in transaction`…
    pub state: Option<String>,
    /// The role it logged in as (shown to every role).
    pub role: Option<String>,
}

impl LockHolder {
    /// A row of `pid, application_name, client, backend_start, state, role`. Any client
    /// sets its own application name (cut to 63 bytes by the server), and a role's name
    /// may hold any character: a password in them is masked, a control character escaped,
    /// before any output shows them.
    fn from_row(row: &Row) -> LockHolder {
        let shown = |name: Option<String>| {
            name.map(|name| crate::output::escape_controls(&crate::error::scrub_cut(&name)).into_owned())
        };
        LockHolder {
            pid: row.get(0),
            application: shown(row.get(1)),
            client: row.get(2),
            connected_at: row.get(3),
            state: row.get(4),
            role: shown(row.get(5)),
        }
    }

    /// Who held a lock, for a message: each holder described, `none` when they let go
    /// before they were asked, `unknown (…)` when asking failed.
    pub fn describe_all(holders: Result<Vec<LockHolder>>, zone: chrono_tz::Tz) -> String {
        match holders {
            Ok(holders) if holders.is_empty() => "none by now".to_string(),
            Ok(holders) => holders.iter().map(|holder| holder.describe(zone)).collect::<Vec<_>>().join("; "),
            Err(error) => format!("unknown ({error})"),
        }
    }

    /// `backend pid 4242 (drainctl of role drainctl from local, connected 2026-11-27
    /// 12:00:00 IST, idle)`, the instant in `zone`. The server shows another role's
    /// address, start and state only to that role's members, `pg_read_all_stats` and
    /// superusers: such a holder is named by its application and role, saying so.
    pub fn describe(&self, zone: chrono_tz::Tz) -> String {
        let unknown = || "?".to_string();
        let who = format!(
            "{} of role {}",
            self.application.clone().filter(|name| !name.is_empty()).unwrap_or_else(unknown),
            self.role.clone().unwrap_or_else(unknown)
        );
        if self.client.is_none() && self.connected_at.is_none() && self.state.is_none() {
            return format!(
                "backend pid {} ({who}; its address, start and state are shown only to that role, \
                 pg_read_all_stats and superusers)",
                self.pid
            );
        }
        format!(
            "backend pid {} ({who} from {}, connected {}, {})",
            self.pid,
            self.client.clone().unwrap_or_else(unknown),
            self.connected_at.map(|at| crate::output::local_second(at, zone)).unwrap_or_else(unknown),
            self.state.clone().unwrap_or_else(unknown),
        )
    }
}

/// Who holds advisory lock `key` in the current database (advisory locks are per database:
/// the same key held in another database of the cluster blocks nobody here), for a "timed
/// out waiting" or "skipped" message.
pub fn advisory_lock_holders(client: &mut Client, key: i64) -> Result<Vec<LockHolder>> {
    // A bigint advisory key is stored as classid = high 32 bits, objid = low 32 bits.
    let classid = (key >> 32) as u32 as i64;
    let objid = key as u32 as i64;
    let rows = client.query(
        "SELECT a.pid, a.application_name,
                coalesce(a.client_addr::text, CASE WHEN a.client_port = -1 THEN 'local' END),
                a.backend_start, a.state, a.usename::text
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1
          ORDER BY l.pid",
        &[&classid, &objid],
    )?;
    Ok(rows.iter().map(LockHolder::from_row).collect())
}

/// The other sessions that hold a lock on a table of drainctl's schema (the first in
/// `search_path`) now: who keeps a migration from altering it (a `pg_dump`, a long
/// transaction).
pub fn table_lock_holders(client: &mut Client) -> Result<Vec<LockHolder>> {
    let rows = client.query(
        "SELECT DISTINCT a.pid, a.application_name,
                coalesce(a.client_addr::text, CASE WHEN a.client_port = -1 THEN 'local' END),
                a.backend_start, a.state, a.usename::text
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           JOIN pg_class c ON c.oid = l.relation
          WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
          ORDER BY a.pid",
        &[],
    )?;
    Ok(rows.iter().map(LockHolder::from_row).collect())
}

/// Which of `keys` some session of the current database holds as an advisory lock now.
pub fn held_advisory_locks(client: &mut Client, keys: &[i64]) -> Result<Vec<i64>> {
    Ok(held_advisory_locks_and_own(client, keys)?.into_iter().map(|(key, _)| key).collect())
}

/// [`held_advisory_locks`], each with whether this session is one that holds it.
pub fn held_advisory_locks_and_own(client: &mut Client, keys: &[i64]) -> Result<Vec<(i64, bool)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // A bigint advisory key is stored as classid = high 32 bits, objid = low 32 bits.
    let rows = client.query(
        "SELECT (l.classid::bigint << 32) | l.objid::bigint, bool_or(l.pid = pg_backend_pid())
           FROM pg_locks l
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY($1)
          GROUP BY 1",
        &[&keys],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// How many times a step that lost a deadlock or a serialization conflict is run again
/// before the error is given up (docs/guarantees.md, "Concurrent commands"): enough for
/// four producers of the same keys in opposite orders, which lost with 4.
pub const CONFLICT_RETRIES: u32 = 10;

/// The pause before retry `retry` (0-based) of a step that lost a conflict: 50 ms,
/// doubling up to 800 ms, plus up to as much again at random so that two losers do not
/// meet again in step.
pub fn conflict_pause(retry: u32) -> Duration {
    let base = 50u64 << retry.min(4);
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::from(elapsed.subsec_nanos()) ^ u64::from(std::process::id()))
        .unwrap_or(0)
        % base.max(1);
    Duration::from_millis(base + jitter)
}

/// Run `step` again while it fails with [`Error::Conflict`] (a deadlock or serialization
/// failure), at most [`CONFLICT_RETRIES`] times; each run must be a whole transaction,
/// rolled back when it failed. When the last run still fails, `gave_up` (what was left
/// unchanged, and that it is safe to run the command again) is added to the error.
pub fn retry_conflicts<T>(gave_up: &str, mut step: impl FnMut() -> Result<T>) -> Result<T> {
    let mut retry = 0;
    loop {
        match step() {
            Err(Error::Conflict(message)) if retry < CONFLICT_RETRIES => {
                log::info!("{message}; trying again (retry {} of {CONFLICT_RETRIES})", retry + 1);
                std::thread::sleep(conflict_pause(retry));
                retry += 1;
            }
            Err(error @ Error::Conflict(_)) => {
                return Err(error.noted(&format!("retried {CONFLICT_RETRIES} times; {gave_up}")))
            }
            other => return other,
        }
    }
}

/// [`in_transaction`], run again by [`retry_conflicts`] while it loses a deadlock or a
/// serialization conflict.
pub fn in_transaction_retrying<T>(
    client: &mut Client,
    gave_up: &str,
    mut body: impl FnMut(&mut postgres::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    retry_conflicts(gave_up, || in_transaction(client, &mut body))
}

/// Run `body` in a transaction and commit it.
pub fn in_transaction<T>(
    client: &mut Client,
    body: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut transaction = client.transaction()?;
    let value = body(&mut transaction)?;
    transaction.commit()?;
    Ok(value)
}

/// [`in_transaction`], for a command whose work is safe to do again: a session lost at
/// the commit itself leaves its outcome unknown — the server may have committed before
/// the session ended — and the error says so and `what_then`, instead of "rolled back"
/// (as `enqueue` was told: its batch was there).
pub fn in_transaction_told<T>(
    client: &mut Client,
    what_then: &str,
    body: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let mut transaction = client.transaction()?;
    let value = body(&mut transaction)?;
    match transaction.commit().map_err(Error::from) {
        Ok(()) => Ok(value),
        Err(Error::Unavailable(message)) if message.contains(crate::error::CONNECTION_LOST) => {
            Err(Error::Unavailable(format!(
                "{message}: the session was {}, so it may have been committed or not; {what_then}",
                crate::error::COMMIT_OUTCOME_UNKNOWN
            )))
        }
        Err(error) => Err(error),
    }
}

/// Statements of the drain's per-item path, prepared once on the connection and reused:
/// the server parses and plans each of them once per pass instead of once per item,
/// and every later use is still a single round trip. A statement belongs to the
/// connection it was prepared on, so a cache must never outlive or change its client.
///
/// A statement is found by where its text lives, not by its text: the texts are static,
/// and hashing one of several kilobytes before each item cost more than the lookup.
#[derive(Default)]
pub struct PreparedStatements {
    statements: HashMap<(usize, usize), Statement>,
}

impl PreparedStatements {
    /// Run `sql` with `params` (each with its type), preparing it on first use.
    pub fn query(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>> {
        let key = (sql.as_ptr() as usize, sql.len());
        let statement = match self.statements.get(&key) {
            Some(statement) => statement.clone(),
            None => {
                let types: Vec<Type> = params.iter().map(|(_, ty)| ty.clone()).collect();
                let statement = client.prepare_typed(sql, &types)?;
                self.statements.insert(key, statement.clone());
                statement
            }
        };
        let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(value, _)| *value).collect();
        Ok(client.query(&statement, &values)?)
    }
}

/// The database server's clock (`now()`), for the clock-skew check of `doctor`.
pub fn server_now(client: &mut Client) -> Result<chrono::DateTime<chrono::Utc>> {
    let row = client.query_one("SELECT now()", &[])?;
    Ok(row.get(0))
}

/// When the database server started (`pg_postmaster_start_time()`): `supervise` counts
/// no run's silence from before it (docs/operations.md, "When the database goes away").
pub fn server_started_at(client: &mut Client) -> Result<chrono::DateTime<chrono::Utc>> {
    let row = client.query_one("SELECT pg_postmaster_start_time()", &[])?;
    Ok(row.get(0))
}

/// The server's version string (`server_version`, e.g. `16.4`) and number
/// (`server_version_num`, e.g. `160004`).
pub fn server_version(client: &mut Client) -> Result<(String, i32, Option<String>)> {
    let row = client.query_one(
        "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
                (SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl)",
        &[],
    )?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_seen_at(address: Option<&str>, port: &str) -> BackendIdentity {
        BackendIdentity {
            arrived_at: address.map(|address| (address.to_string(), port.to_string())),
            port_setting: "5432".into(),
            socket_directories: "/var/run/postgresql, /tmp".into(),
            ..BackendIdentity::default()
        }
    }

    #[test]
    fn a_session_that_arrived_elsewhere_than_dialled_may_be_proxied() {
        let config = |url: &str| -> postgres::Config { url.parse().unwrap() };
        // Direct: the server saw the session arrive where drainctl dialled.
        let direct = config("postgres://u@127.0.0.1:5433/db");
        assert!(!may_be_proxied(&direct, &server_seen_at(Some("127.0.0.1"), "5433")));
        assert!(!may_be_proxied(
            &config("postgres://u@localhost/db"),
            &server_seen_at(Some("127.0.0.1"), "5432")
        ));
        assert!(!may_be_proxied(
            &config("host=/var/run/postgresql port=5432 user=u"),
            &server_seen_at(None, "")
        ));
        // A pooler on another port, another address, or another socket.
        let pooler = config("postgres://u@127.0.0.1:6432/db");
        assert!(may_be_proxied(&pooler, &server_seen_at(Some("127.0.0.1"), "5432")));
        assert!(may_be_proxied(&direct, &server_seen_at(Some("10.0.0.7"), "5433")));
        assert!(may_be_proxied(&direct, &server_seen_at(None, "")));
        assert!(may_be_proxied(
            &config("host=/var/run/pgbouncer port=5432 user=u"),
            &server_seen_at(None, "")
        ));
        assert!(may_be_proxied(
            &config("host=/var/run/postgresql port=6432 user=u"),
            &server_seen_at(None, "")
        ));
        assert!(may_be_proxied(
            &config("host=/var/run/postgresql port=5432 user=u"),
            &server_seen_at(Some("127.0.0.1"), "5432")
        ));
        // Several hosts: which one answered is unknown.
        assert!(may_be_proxied(&config("host=a,b user=u"), &server_seen_at(Some("127.0.0.1"), "5432")));
    }

    #[test]
    fn a_step_that_keeps_losing_conflicts_is_retried_then_says_it_is_safe_to_run_again() {
        let mut runs = 0;
        let error = retry_conflicts("nothing changed", || -> Result<()> {
            runs += 1;
            Err(Error::Conflict("database error: deadlock detected".into()))
        })
        .unwrap_err();
        assert_eq!(runs, CONFLICT_RETRIES + 1);
        assert_eq!(error.exit_code(), 75);
        assert_eq!(
            error.to_string(),
            format!("database error: deadlock detected; retried {CONFLICT_RETRIES} times; nothing changed")
        );
        // Anything else is not run again.
        let mut runs = 0;
        let error = retry_conflicts("x", || -> Result<()> {
            runs += 1;
            Err(Error::Temporary("lock timeout".into()))
        })
        .unwrap_err();
        assert_eq!((runs, error.to_string()), (1, "lock timeout".to_string()));
    }

    #[test]
    fn server_versions_from_11_through_18_are_supported_older_refused_newer_warned() {
        use ServerVersionVerdict::*;
        for (version_num, verdict) in [
            (90_624, TooOld),
            (100_023, TooOld),
            (109_999, TooOld),
            (110_000, Supported),
            (110_022, Supported),
            (150_004, Supported),
            (180_000, Supported),
            (189_999, Supported),
            (190_000, NewerThanTested),
            (200_001, NewerThanTested),
        ] {
            assert_eq!(judge_server_version(version_num), verdict, "{version_num}");
        }
    }

    #[test]
    fn an_unsupported_server_version_is_refused_with_78_naming_it_and_the_range() {
        let error = check_server_version("10.23", "100023").unwrap_err();
        assert_eq!(error.exit_code(), 78);
        let message = error.to_string();
        assert!(message.contains("PostgreSQL 10.23 (server_version_num 100023)"), "{message}");
        assert!(message.contains("supported: 11 through 18"), "{message}");
        let error = check_server_version("weird", "x").unwrap_err();
        assert_eq!(error.exit_code(), 78);
        assert!(check_server_version("15.4", "150004").is_ok());
        assert!(check_server_version("19.0", "190000").is_ok());
    }
}
