//! The database layer: one blocking connection per invocation, advisory-lock keys, and
//! one file of named queries per table family. All SQL of drainctl lives below here and
//! is always parameterized.

pub mod backoffs;
pub mod drains;
pub mod events;
pub mod items;
pub mod passes;
pub mod quota_groups;
pub mod retention;
pub mod runs;
pub mod sources;

use std::collections::HashMap;
use std::time::Duration;

use postgres::types::{ToSql, Type};
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use crate::config::DatabaseUrl;
use crate::error::{classify_database_error, Error, Result};

/// Every advisory lock of drainctl lives in one 64-bit key space whose high 32 bits spell
/// "DRAI" (0x44524149), so it cannot collide with another application's small keys.
pub const LOCK_NAMESPACE: i64 = 0x4452_4149_0000_0000;
/// Held (session level) while migrations are checked and applied.
pub const MIGRATION_LOCK_KEY: i64 = LOCK_NAMESPACE;
/// Held (try-lock) by one `supervise` pass at a time.
pub const SUPERVISE_LOCK_KEY: i64 = LOCK_NAMESPACE + 1;

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

/// Open the one connection of this invocation.
pub fn connect(database: &DatabaseUrl) -> Result<Client> {
    let mut config: postgres::Config = database.url.parse().map_err(|error| {
        // The parser's message never includes the URL, but scrub anyway.
        Error::Config(format!("invalid database URL (from {}): {error}", database.source))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("drainctl");
    }
    let mut client = config.connect(NoTls).map_err(|error| {
        let detail = match classify_database_error(&error) {
            Error::Internal(message) => message,
            other => other.to_string(),
        };
        Error::Unavailable(format!("cannot connect to the database (URL from {}): {detail}", database.source))
    })?;
    // A process frozen (SIGSTOP, a paused VM) in the middle of a transaction must not hold
    // its locks for ever: the server ends such a session, and the run is reaped.
    client.batch_execute(IDLE_IN_TRANSACTION_TIMEOUT_SQL)?;
    Ok(client)
}

/// How long a session may sit idle inside a transaction before the server ends it.
const IDLE_IN_TRANSACTION_TIMEOUT_SQL: &str = "SET idle_in_transaction_session_timeout = '60s'";

/// Make lock waits of this session fail after `timeout` instead of blocking (supervise must
/// never hang behind a frozen process).
/// The longest `--lock-timeout`: PostgreSQL's `lock_timeout` holds at most 2^31 − 1
/// milliseconds (24d 20h 31m).
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(24 * 24 * 60 * 60);
/// [`MAX_LOCK_TIMEOUT`] as the messages spell it.
pub const MAX_LOCK_TIMEOUT_TEXT: &str = "24d";

pub fn set_lock_timeout(client: &mut Client, timeout: Duration) -> Result<()> {
    let millis = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    client.execute("SELECT set_config('lock_timeout', $1, false)", &[&format!("{millis}ms")])?;
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

/// Who holds advisory lock `key`, for a "timed out waiting" message.
pub fn advisory_lock_holders(client: &mut Client, key: i64) -> Result<Vec<String>> {
    // A bigint advisory key is stored as classid = high 32 bits, objid = low 32 bits.
    let classid = (key >> 32) as u32 as i64;
    let objid = key as u32 as i64;
    let rows = client.query(
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'),
                coalesce(a.backend_start::text, ''), coalesce(a.state, '')
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted
            AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1",
        &[&classid, &objid],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            let pid: i32 = row.get(0);
            let application: String = row.get(1);
            let client: String = row.get(2);
            let since: String = row.get(3);
            let state: String = row.get(4);
            format!("backend pid {pid} ({application} from {client}, connected {since}, {state})")
        })
        .collect())
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

/// Statements of the drain's per-item path, prepared once on the connection and reused:
/// the server parses and plans each of them once per pass instead of once per item,
/// and every later use is still a single round trip. A statement belongs to the
/// connection it was prepared on, so a cache must never outlive or change its client.
#[derive(Default)]
pub struct PreparedStatements {
    statements: HashMap<&'static str, Statement>,
}

impl PreparedStatements {
    /// Run `sql` with `params` (each with its type), preparing it on first use.
    pub fn query(
        &mut self,
        client: &mut impl GenericClient,
        sql: &'static str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>> {
        let statement = match self.statements.get(sql) {
            Some(statement) => statement.clone(),
            None => {
                let types: Vec<Type> = params.iter().map(|(_, ty)| ty.clone()).collect();
                let statement = client.prepare_typed(sql, &types)?;
                self.statements.insert(sql, statement.clone());
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

/// The server's version string (`server_version`), e.g. `16.4`.
pub fn server_version(client: &mut Client) -> Result<String> {
    let row = client.query_one("SELECT current_setting('server_version')", &[])?;
    Ok(row.get(0))
}
