//! Embedded, checksummed migrations applied under a session-level advisory lock.
//!
//! Every invocation of drainctl calls [`ensure_current`]: it takes
//! `pg_advisory_lock(MIGRATION_LOCK_KEY)`, refuses a database whose applied migrations
//! were edited (checksum changed) or that is newer than this binary, applies the missing
//! files in one transaction, each together with its `schema_migrations` row, and releases
//! the lock on every path. When nothing is missing no DDL runs at all.
//!
//! When another session holds the lock, the schema is read without it: the migrations
//! commit with their `schema_migrations` rows, so a read sees whole migrations only. If
//! every migration of this binary is there with its checksum, there is nothing to wait
//! for and the invocation goes on without the lock — a frozen holder (a stopped process)
//! blocks nobody on a current schema. Only when migrations are due does it wait for the
//! lock, at most the lock timeout (see docs/migrations.md).

use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::error::SqlState;
use postgres::Client;
use sha2::{Digest, Sha256};

use crate::db::events::{record_migration_event, Event, Outbox};
use crate::db::{advisory_lock_holders, LockHolder, MIGRATION_LOCK_KEY};
use crate::error::{Error, Result};
use crate::model::EventKind;

/// One migration file, embedded at build time.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this binary knows, in order. File `migrations/NNNN_name.sql`.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "init", sql: include_str!("../migrations/0001_init.sql") },
    Migration { version: 2, name: "accounts", sql: include_str!("../migrations/0002_accounts.sql") },
    Migration { version: 3, name: "sources", sql: include_str!("../migrations/0003_sources.sql") },
    Migration {
        version: 4,
        name: "host_identity",
        sql: include_str!("../migrations/0004_host_identity.sql"),
    },
    Migration { version: 5, name: "waiting", sql: include_str!("../migrations/0005_waiting.sql") },
    Migration {
        version: 6,
        name: "poison_and_park",
        sql: include_str!("../migrations/0006_poison_and_park.sql"),
    },
    Migration { version: 7, name: "counters", sql: include_str!("../migrations/0007_counters.sql") },
    Migration { version: 8, name: "usage", sql: include_str!("../migrations/0008_usage.sql") },
    Migration { version: 9, name: "item_counts", sql: include_str!("../migrations/0009_item_counts.sql") },
    Migration {
        version: 10,
        name: "hash_progress",
        sql: include_str!("../migrations/0010_hash_progress.sql"),
    },
    Migration {
        version: 11,
        name: "counted_with_states",
        sql: include_str!("../migrations/0011_counted_with_states.sql"),
    },
    Migration {
        version: 12,
        name: "attempts_by_run_and_item",
        sql: include_str!("../migrations/0012_attempts_by_run_and_item.sql"),
    },
    Migration {
        version: 13,
        name: "run_idle_seconds",
        sql: include_str!("../migrations/0013_run_idle_seconds.sql"),
    },
    Migration {
        version: 14,
        name: "runs_kill_unconfirmed",
        sql: include_str!("../migrations/0014_runs_kill_unconfirmed.sql"),
    },
    Migration {
        version: 15,
        name: "runs_kill_unconfirmed_without_worker",
        sql: include_str!("../migrations/0015_runs_kill_unconfirmed_without_worker.sql"),
    },
    Migration {
        version: 16,
        name: "notifications_due",
        sql: include_str!("../migrations/0016_notifications_due.sql"),
    },
    Migration {
        version: 17,
        name: "backoff_done_at_hit",
        sql: include_str!("../migrations/0017_backoff_done_at_hit.sql"),
    },
    Migration { version: 18, name: "open_charges", sql: include_str!("../migrations/0018_open_charges.sql") },
    Migration {
        version: 19,
        name: "open_charges_reset",
        sql: include_str!("../migrations/0019_open_charges_reset.sql"),
    },
];

/// The newest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

/// Hex SHA-256 of a migration's text.
pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// One row of `migrate --status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationStatus {
    pub version: i32,
    pub name: String,
    pub state: &'static str,
    pub applied_at: Option<DateTime<Utc>>,
}

/// What [`ensure_current`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MigrationReport {
    pub applied: Vec<i32>,
    pub current_version: i32,
}

/// How long to wait for the migration lock (`--lock-timeout`), and the zone a message
/// about its holder shows instants in (`[defaults] timezone`).
#[derive(Debug, Clone, Copy)]
pub struct LockWait {
    pub timeout: Duration,
    pub zone: chrono_tz::Tz,
}

/// Take the migration lock, run `body`, and release the lock whatever happened.
pub fn with_migration_lock<T>(
    client: &mut Client,
    lock_wait: LockWait,
    body: impl FnOnce(&mut Client) -> Result<T>,
) -> Result<T> {
    acquire_migration_lock(client, lock_wait)?;
    run_and_release(client, body)
}

/// How [`lock_unless_current`] let the caller go on.
enum MigrationLock {
    /// This session holds the migration lock: release it with [`run_and_release`].
    Held,
    /// Another session holds the lock, and the schema, read without it, is current.
    NotNeeded,
}

/// Take the migration lock if it is free. If another session holds it, read the schema
/// without the lock: refuse an edited or newer schema at once, go on without the lock when
/// it is current, and wait for the lock (at most `lock_timeout`) only when migrations are due.
fn lock_unless_current(client: &mut Client, lock_wait: LockWait) -> Result<MigrationLock> {
    if crate::db::try_advisory_lock(client, MIGRATION_LOCK_KEY)? {
        return Ok(MigrationLock::Held);
    }
    let applied = read_applied(client)?;
    check_applied(&applied)?;
    if missing(&applied).is_empty() {
        log::info!(
            "another session holds the migration lock and the schema is current (version {}): going on without the lock",
            latest_version()
        );
        return Ok(MigrationLock::NotNeeded);
    }
    acquire_migration_lock(client, lock_wait)?;
    Ok(MigrationLock::Held)
}

/// Run `body` while holding the migration lock, then release it whatever happened.
fn run_and_release<T>(client: &mut Client, body: impl FnOnce(&mut Client) -> Result<T>) -> Result<T> {
    let outcome = body(client);
    let released = client.query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY]);
    match (outcome, released) {
        // Taken on one server process and released on another: a transaction pooler the
        // check at connect missed, and the lock stays on that process until it ends.
        (Ok(_), Ok(row)) if !row.try_get::<_, bool>(0).unwrap_or(true) => Err(Error::Config(format!(
            "the migration lock was not this session's when it was released (it stays with the server process \
             that took it, until that process ends): the connection goes through a connection pooler in \
             transaction mode: {}",
            crate::db::NEEDS_A_SESSION
        ))),
        (Ok(value), Ok(_)) => Ok(value),
        (Ok(_), Err(error)) => Err(Error::from(error).context("releasing the migration lock")),
        (Err(error), _) => Err(error),
    }
}

fn acquire_migration_lock(client: &mut Client, lock_wait: LockWait) -> Result<()> {
    crate::db::set_lock_timeout(client, lock_wait.timeout)?;
    let taken = client.query_one("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]);
    // Back to the session's own setting (docs/operations.md): RESET would bring back a
    // lock_timeout the role or database sets.
    client.batch_execute("SET lock_timeout = 0")?;
    match taken {
        Ok(_) => Ok(()),
        Err(error) if error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
            let holders =
                LockHolder::describe_all(advisory_lock_holders(client, MIGRATION_LOCK_KEY), lock_wait.zone);
            Err(Error::Temporary(format!(
                "timed out after {} waiting for the migration lock (advisory key {MIGRATION_LOCK_KEY}); \
                 held by: {holders}; retry later or raise --lock-timeout",
                crate::duration::format_duration(lock_wait.timeout)
            )))
        }
        Err(error) => Err(error.into()),
    }
}

/// Apply whatever is missing; refuse edited or unknown newer migrations.
pub fn ensure_current(
    client: &mut Client,
    outbox: &Outbox,
    lock_wait: LockWait,
    now: DateTime<Utc>,
) -> Result<MigrationReport> {
    match lock_unless_current(client, lock_wait)? {
        MigrationLock::NotNeeded => {
            Ok(MigrationReport { applied: Vec::new(), current_version: latest_version() })
        }
        MigrationLock::Held => {
            run_and_release(client, |client| apply_missing(client, outbox, lock_wait, now))
        }
    }
}

/// The line a command other than `migrate` says after applying `applied` to a database an
/// older drainctl had migrated: the names, and that the step is one-way.
pub fn upgrade_notice(applied: &[i32]) -> String {
    let names: Vec<String> = MIGRATIONS
        .iter()
        .filter(|m| applied.contains(&m.version))
        .map(|m| format!("{:04}_{}", m.version, m.name))
        .collect();
    format!(
        "upgraded the database schema: applied migration(s) {}; drainctl releases older than this \
         one refuse the database from now on (docs/migrations.md)",
        names.join(", ")
    )
}

/// What `ensure_current` would apply, without applying it. While another session holds
/// the migration lock the schema is read without it: a dry run applies nothing, and waits
/// for no lock it would not use (what is due may then be being applied).
pub fn pending(client: &mut Client) -> Result<Vec<i32>> {
    let due = |client: &mut Client| {
        let applied = read_applied(client)?;
        check_applied(&applied)?;
        Ok(missing(&applied).iter().map(|m| m.version).collect())
    };
    if crate::db::try_advisory_lock(client, MIGRATION_LOCK_KEY)? {
        run_and_release(client, due)
    } else {
        due(client)
    }
}

struct Applied {
    version: i32,
    name: String,
    checksum: String,
    applied_at: DateTime<Utc>,
}

/// The table of applied migrations, created in the first migration's transaction.
const SCHEMA_TABLE: &str = "CREATE TABLE schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL
);
";

/// Whether the current schema (the first of `search_path` that exists), where migrations
/// create their tables, holds `schema_migrations` — not a schema later in the path: its
/// tables would be read while the next migration made new ones here.
fn schema_table_exists(client: &mut Client) -> Result<bool> {
    let row = client.query_one(
        "SELECT coalesce(to_regclass(quote_ident(current_schema()) || '.schema_migrations') IS NOT NULL, false)",
        &[],
    )?;
    Ok(row.get(0))
}

/// Why the connected role could not apply pending migrations, if it could not: it may
/// not create in its schema, or the tables an earlier migration made belong to a role
/// whose rights it does not have (a migration alters them). `doctor` says so before any
/// command fails on it (docs/operations.md, "The role and its settings").
pub fn cannot_apply(client: &mut Client) -> Result<Option<String>> {
    let row = client.query_one(
        "SELECT quote_ident(current_user), quote_ident(current_schema()), \
                coalesce(has_schema_privilege(current_schema(), 'CREATE'), false), \
                (SELECT quote_ident(pg_get_userbyid(c.relowner)::text) FROM pg_class c \
                  WHERE c.oid = to_regclass('schema_migrations') \
                    AND NOT pg_has_role(c.relowner, 'USAGE'))",
        &[],
    )?;
    let (role, schema, can_create, owner): (String, Option<String>, bool, Option<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    Ok(match (schema, can_create, owner) {
        (None, _, _) => Some(format!("the role {role}'s {}", crate::error::NO_SCHEMA)),
        // A migration alters the tables, which only their owner may: a right to create
        // would not help.
        (Some(_), _, Some(owner)) => Some(format!(
            "drainctl's tables belong to the role {owner}, whose rights {role} lacks; connect as \
             {owner} to migrate, or GRANT {owner} TO {role}"
        )),
        (Some(schema), false, None) => Some(format!(
            "the role {role} may not create in schema {schema}; connect as the owner of the database, \
             or GRANT CREATE ON SCHEMA {schema} TO {role}"
        )),
        _ => None,
    })
}

/// The tables drainctl's migrations create: commands read and write each of them.
pub const TABLES: [&str; 17] = [
    "attempts",
    "counters",
    "drains",
    "events",
    "item_counts",
    "items",
    "maintenance",
    "notifications_due",
    "open_charges",
    "quota_backoffs",
    "quota_groups",
    "runs",
    "source_files",
    "source_hash_progress",
    "source_scans",
    "staged_results",
    "supervisor_passes",
];

/// What the migrations leave in the schema, one line per column (with its type and
/// whether it may be null), index, enabled trigger and function: what [`schema_shape`]
/// reads from a database at the latest version (docs/migrations.md, "A schema changed by
/// hand").
pub const EXPECTED_SHAPE: &str = include_str!("schema_shape.txt");

/// The shape of drainctl's objects in the connected role's schema, in the lines of
/// [`EXPECTED_SHAPE`], sorted. Columns, indexes and triggers of other tables and
/// functions of other names are not read.
pub fn schema_shape(client: &mut Client) -> Result<Vec<String>> {
    let functions: Vec<&str> = EXPECTED_SHAPE
        .lines()
        .filter_map(|line| line.strip_prefix("function ")?.split_whitespace().next())
        .collect();
    // An index by whether it is unique and its columns, a function by its body's digest:
    // one recreated otherwise is changed (an index's predicate is left out: servers of
    // other versions print it otherwise). The schema by name, as a quoted one
    // (`"DrainCtl"`) is no `regnamespace` text.
    let rows = client.query(
        "WITH here AS (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
         SELECT 'column ' || table_name || '.' || column_name || ' ' || udt_name
                || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END
           FROM information_schema.columns
          WHERE table_schema = current_schema() AND table_name = ANY($1)
         UNION ALL
         SELECT 'index ' || tablename || '.' || indexname
                || CASE WHEN indexdef LIKE 'CREATE UNIQUE %' THEN ' unique' ELSE '' END
                || ' (' || substring(indexdef FROM ' USING \\w+ \\(([^)]*)\\)') || ')'
           FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ANY($1)
         UNION ALL
         SELECT 'trigger ' || c.relname || '.' || t.tgname
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
          WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'
            AND c.relnamespace = (SELECT oid FROM here) AND c.relname = ANY($1)
         UNION ALL
         SELECT 'function ' || proname || ' ' || md5(prosrc)
           FROM pg_proc WHERE pronamespace = (SELECT oid FROM here) AND proname = ANY($2)",
        &[&TABLES.as_slice(), &functions],
    )?;
    let mut shape: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    shape.sort_unstable();
    Ok(shape)
}

/// What a database at the latest version lacks of what its migrations made (a column
/// dropped, renamed or of another type, an index or trigger dropped or disabled, a
/// function dropped), in words with what to do; None when nothing is missing. What the
/// operator added beside drainctl's objects is no concern of its.
pub fn changed_by_hand(client: &mut Client) -> Result<Option<String>> {
    let (_, missing) = shape_drift(client)?;
    if missing.is_empty() {
        return Ok(None);
    }
    // A trigger there but disabled is undone by one statement: said as such.
    let triggers: Vec<String> =
        missing.iter().filter_map(|line| line.strip_prefix("trigger ")).map(str::to_string).collect();
    let disabled: Vec<String> = client
        .query(
            "SELECT c.relname || '.' || t.tgname, format('ALTER TABLE %I ENABLE TRIGGER %I', c.relname, t.tgname)
               FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE NOT t.tgisinternal AND t.tgenabled = 'D'
                AND c.relnamespace = to_regnamespace(quote_ident(current_schema()))
                AND c.relname || '.' || t.tgname = ANY($1)
              ORDER BY 1",
            &[&triggers],
        )?
        .iter()
        .map(|row| format!("{} is disabled: {}", row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect();
    let enable = match disabled.is_empty() {
        true => String::new(),
        false => format!(" (trigger {}; then `drainctl migrate --repair-counts`)", disabled.join("; ")),
    };
    Ok(Some(format!(
        "the schema is at version {}, but what its migrations made was changed by hand: missing or changed \
         {}{enable}; restore it from a backup, or undo the change (the migrations/ folder of drainctl's source \
         has how each object was made)",
        latest_version(),
        missing.join(", ")
    )))
}

/// The lines of [`schema_shape`] that [`EXPECTED_SHAPE`] does not hold (what the operator
/// added, or a migration that did not say what it made), and those it holds that are not
/// there.
pub fn shape_drift(client: &mut Client) -> Result<(Vec<String>, Vec<String>)> {
    let live = schema_shape(client)?;
    let expected: Vec<&str> = EXPECTED_SHAPE.lines().filter(|line| !line.is_empty()).collect();
    let unexpected = live.iter().filter(|line| !expected.contains(&line.as_str())).cloned().collect();
    let missing = expected
        .iter()
        .filter(|line| !live.iter().any(|have| have == *line))
        .map(|line| line.to_string())
        .collect();
    Ok((unexpected, missing))
}

/// The rights on drainctl's tables the connected role lacks, as one sentence with what to
/// grant; none when it has them all. A role granted only `SELECT` can read `status`, but
/// every command that writes would fail on it with exit 78, so `doctor` asks first
/// (docs/operations.md, "The role and its settings").
pub fn missing_table_rights(client: &mut Client) -> Result<Option<String>> {
    let rows = client.query(
        "SELECT quote_ident(current_user), quote_ident(current_schema()), r.privilege,
                array_agg(t ORDER BY t) FILTER (WHERE NOT has_table_privilege(q.name, r.privilege)),
                count(*)
           FROM unnest($1::text[]) AS t
          CROSS JOIN LATERAL (SELECT to_regclass(quote_ident(current_schema()) || '.' || quote_ident(t)) AS name) q
          CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) WITH ORDINALITY AS r(privilege, n)
          WHERE q.name IS NOT NULL
          GROUP BY r.privilege, r.n
          ORDER BY r.n",
        &[&TABLES.as_slice()],
    )?;
    let mut lacking: Vec<(String, String)> = Vec::new();
    let (mut role, mut schema) = (String::new(), String::new());
    for row in &rows {
        role = row.get(0);
        schema = row.get::<_, Option<String>>(1).unwrap_or_default();
        let privilege: String = row.get(2);
        let missing: Option<Vec<String>> = row.get(3);
        let present: i64 = row.get(4);
        let Some(missing) = missing else { continue };
        let on = if missing.len() as i64 == present {
            "all of drainctl's tables".to_string()
        } else {
            missing.join(", ")
        };
        match lacking.iter_mut().find(|(_, tables)| *tables == on) {
            Some((privileges, _)) => privileges.push_str(&format!(", {privilege}")),
            None => lacking.push((privilege, on)),
        }
    }
    if lacking.is_empty() {
        return Ok(None);
    }
    let what: Vec<String> = lacking.iter().map(|(privileges, on)| format!("{privileges} on {on}")).collect();
    Ok(Some(format!(
        "the role {role} lacks {}: every command that writes would exit 78; connect as the tables' owner, \
         or GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
        what.join("; ")
    )))
}

/// The kind of the relation the SQL expression `$name` names in the current schema, in
/// words (`table`, `view`, `sequence`, `type` for a composite type, …): what a refusal
/// calls an object in the way, as `\d` lists it.
macro_rules! relation_kind {
    ($name:literal) => {
        concat!(
            "(SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view' \
             WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'c' THEN 'type' \
             WHEN 'f' THEN 'foreign table' WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' ELSE 'relation' END \
             FROM pg_class c WHERE c.oid = to_regclass(quote_ident(current_schema()) || '.' || quote_ident(",
            $name,
            ")))"
        )
    };
}

/// The migrations applied, read from `schema_migrations`. A database that holds another
/// application's tables — a `schema_migrations` of another tool (Rails, golang-migrate), or
/// tables of drainctl's names with no `schema_migrations` — is refused before anything is
/// created in it (docs/migrations.md).
fn read_applied(client: &mut Client) -> Result<Vec<Applied>> {
    if !schema_table_exists(client)? {
        let taken: Vec<String> = client
            .query_one(
                concat!(
                    "SELECT coalesce(array_agg(",
                    relation_kind!("t"),
                    " || ' ' || t ORDER BY t), '{}') FROM unnest($1::text[]) AS t \
                      WHERE to_regclass(quote_ident(current_schema()) || '.' || quote_ident(t)) IS NOT NULL"
                ),
                &[&TABLES.as_slice()],
            )?
            .get(0);
        // The first migration creates schema_migrations and the tables in one
        // transaction: tables seen without it were committed after it was looked for by
        // a session migrating beside this one (which reads without the lock), unless it is
        // still missing now.
        if !taken.is_empty() && schema_table_exists(client)? {
            return read_applied(client);
        }
        if !taken.is_empty() {
            return Err(another_applications(&format!(
                "{} that drainctl did not create (no schema_migrations)",
                taken.join(", ")
            )));
        }
        refuse_second_installation(client)?;
        return Ok(Vec::new());
    }
    let rows = client
        .query("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version", &[])
        .map_err(|error| match error.code() {
            Some(&SqlState::UNDEFINED_COLUMN) => {
                another_applications("a schema_migrations table of another tool")
            }
            _ => Error::from(error),
        })?;
    // Migration 1 creates `drains` in the transaction that records it: a table of
    // drainctl's shape that lists migrations without it is another tool's.
    if !rows.is_empty()
        && !client.query_one("SELECT to_regclass('drains') IS NOT NULL", &[])?.get::<_, bool>(0)
    {
        return Err(another_applications(
            "a schema_migrations table of another tool (no drains table beside it)",
        ));
    }
    rows.iter()
        .map(|row| {
            let read = || -> std::result::Result<Applied, postgres::Error> {
                Ok(Applied {
                    version: row.try_get(0)?,
                    name: row.try_get(1)?,
                    checksum: row.try_get(2)?,
                    applied_at: row.try_get(3)?,
                })
            };
            read().map_err(|_| another_applications("a schema_migrations table of another tool"))
        })
        .collect()
}

/// The refusal of a database (its current schema) another application uses.
/// Refuses to create drainctl's schema in the session's current schema when another
/// schema of this database holds drainctl's already: a `search_path` changed on the role
/// (or in the URL) would otherwise make a second, empty installation there, its backlog
/// apart from the first's, sharing the database's advisory locks (docs/operations.md,
/// "The role and its settings").
fn refuse_second_installation(client: &mut Client) -> Result<()> {
    let row = client.query_one(
        "SELECT (SELECT array_agg(quote_ident(n.nspname) ORDER BY n.nspname)
                   FROM pg_namespace n
                  WHERE n.nspname <> current_schema()
                    AND (SELECT count(*) FROM pg_class c
                          WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
                            AND c.relname IN ('schema_migrations', 'drains', 'items', 'runs')) = 4),
                quote_ident(current_schema()), current_setting('search_path')",
        &[],
    )?;
    // No current schema (a search_path naming none): the migration's own error says so.
    let (Some(others), Some(here)) = (row.get::<_, Option<Vec<String>>>(0), row.get::<_, Option<String>>(1))
    else {
        return Ok(());
    };
    let search_path: String = row.get(2);
    let theirs = others.first().cloned().unwrap_or_default();
    Err(Error::Config(format!(
        "this database holds drainctl's schema already, in schema {}, but this session's current schema \
         (the first of its search_path, {search_path}, that exists) is {here}: drainctl would create a second, \
         empty one there, apart from the first's backlog; put drainctl's first where the search_path is set \
         (ALTER ROLE ... SET search_path = {theirs}, ALTER DATABASE ... SET search_path = {theirs}, or \
         options=-c search_path={theirs} in the URL), or give this installation a database of its own \
         (CREATE DATABASE ...); nothing was changed",
        others.join(", ")
    )))
}

fn another_applications(what: &str) -> Error {
    Error::Config(format!(
        "this database already holds {what}: it belongs to another application; give drainctl a \
         database of its own (CREATE DATABASE drainctl); nothing was changed"
    ))
}

/// The refusal of a schema a newer release migrated: the newest applied names the release
/// to install, the one that ships it.
fn refuse_newer(applied: &[Applied]) -> Result<()> {
    if let Some(newest) =
        applied.iter().filter(|row| row.version > latest_version()).max_by_key(|row| row.version)
    {
        return Err(Error::Config(format!(
            "the database schema is at version {} ({}), newer than this drainctl knows \
             (up to {}): install the drainctl release that ships migration {:04}",
            newest.version,
            newest.name,
            latest_version(),
            newest.version
        )));
    }
    Ok(())
}

fn check_applied(applied: &[Applied]) -> Result<()> {
    refuse_newer(applied)?;
    for row in applied {
        match MIGRATIONS.iter().find(|m| m.version == row.version) {
            None => {
                return Err(Error::Config(format!(
                    "applied migration {:04}_{} is unknown to this drainctl: the database was \
                     migrated by a different build",
                    row.version, row.name
                )))
            }
            Some(known) if checksum(known.sql) != row.checksum => {
                return Err(Error::Config(format!(
                    "migration {:04}_{}.sql was changed after it was applied (checksum {} in the \
                     database, {} in this build); restore the file, or if the change is harmless \
                     (e.g. whitespace) run `drainctl migrate --repair-checksum {}`",
                    known.version,
                    known.name,
                    short(&row.checksum),
                    short(&checksum(known.sql)),
                    known.version
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

fn missing(applied: &[Applied]) -> Vec<Migration> {
    MIGRATIONS.iter().filter(|m| !applied.iter().any(|a| a.version == m.version)).copied().collect()
}

/// Apply what is missing, all of it in one transaction — each migration with its
/// `schema_migrations` row and event — that waits at most `lock_wait` for the locks of
/// the tables it alters: a session holding one (a `pg_dump`, a long transaction) must not
/// hold the migrations — and every command queued behind their lock request — for as long
/// as it lasts. All or none: one migration that cannot be applied (a right the role
/// lacks, a lock not taken in time) leaves the schema as it was, so that an older
/// drainctl still running against it is not locked out by a half-done upgrade
/// (docs/migrations.md).
fn apply_missing(
    client: &mut Client,
    outbox: &Outbox,
    lock_wait: LockWait,
    now: DateTime<Utc>,
) -> Result<MigrationReport> {
    let applied = read_applied(client)?;
    check_applied(&applied)?;
    let to_apply = missing(&applied);
    let mut report = MigrationReport {
        applied: Vec::new(),
        current_version: applied.iter().map(|a| a.version).max().unwrap_or(0),
    };
    if to_apply.is_empty() {
        return Ok(report);
    }
    if let Some(taken) = foreign_objects(client)? {
        return Err(another_applications(&taken));
    }
    let mut has_schema_table = schema_table_exists(client)?;
    let mut transaction = client.transaction()?;
    crate::db::set_lock_timeout_for(&mut transaction, lock_wait.timeout, true)?;
    for migration in &to_apply {
        // Its event is recorded in the schema this migration leaves (a migration may add a
        // column to `events` only with a default), its notification kept in memory: the
        // table of due notifications may not exist yet (see `record_migration_event`).
        // Created with the first migration.
        let schema_table = if has_schema_table { "" } else { SCHEMA_TABLE };
        if let Err(error) = transaction.batch_execute(&format!("{schema_table}{}", migration.sql)) {
            let applying = format!(
                "applying migration {:04}_{} ({})",
                migration.version,
                migration.name,
                none_applied(&to_apply)
            );
            drop(transaction);
            if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                // Rolled back: say which right is missing, as `doctor` does (the general
                // advice to grant the schema and the tables cannot make a role the
                // owner of tables another role made).
                let why = cannot_apply(client).unwrap_or_else(|asking| {
                    log::warn!("{applying}: could not ask why the role may not: {asking}");
                    None
                });
                if let Some(why) = why {
                    let message = error.as_db_error().map(|db| db.message().to_string()).unwrap_or_default();
                    return Err(Error::Config(format!("{applying}: database error: {message}: {why}")));
                }
                return Err(Error::from(error).context(&applying));
            }
            if error.code() != Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(Error::from(error).context(&applying));
            }
            // Rolled back: this session can ask who holds the table.
            let holders = LockHolder::describe_all(crate::db::table_lock_holders(client), lock_wait.zone);
            return Err(Error::Temporary(format!(
                "migration {:04}_{} could not take the locks of the tables it alters within {}: another \
                 session holds one (a pg_dump, a long transaction; held by: {holders}); {}; retry later or \
                 raise --lock-timeout",
                migration.version,
                migration.name,
                crate::duration::format_duration(lock_wait.timeout),
                none_applied(&to_apply)
            )));
        }
        transaction.execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
            &[&migration.version, &migration.name, &checksum(migration.sql), &now],
        )?;
        let event = Event::new(
            EventKind::MigrationApplied,
            format!("applied migration {:04}_{}", migration.version, migration.name),
        )
        .data(serde_json::json!({ "version": migration.version, "name": migration.name }));
        record_migration_event(&mut transaction, outbox, &event, now)?;
        has_schema_table = true;
    }
    transaction.commit()?;
    for migration in to_apply {
        log::info!("applied migration {:04}_{}", migration.version, migration.name);
        report.applied.push(migration.version);
        report.current_version = migration.version;
    }
    Ok(report)
}

/// Objects of drainctl's names that the due migrations would create but that are there
/// already, made by another application sharing the schema (an index `events_at`, a
/// function `counters_bump`, whatever its arguments): in words, or None. Such a migration
/// would fail half-way on the name taken, or make a function of the other application's
/// name beside it (docs/migrations.md).
pub fn foreign_objects(client: &mut Client) -> Result<Option<String>> {
    let applied: Vec<i32> = match schema_table_exists(client)? {
        true => {
            client.query("SELECT version FROM schema_migrations", &[])?.iter().map(|row| row.get(0)).collect()
        }
        false => Vec::new(),
    };
    let (done, due): (Vec<Migration>, Vec<Migration>) =
        MIGRATIONS.iter().copied().partition(|migration| applied.contains(&migration.version));
    let ours = created_objects(&done);
    let mut wanted: Vec<(&str, String)> =
        created_objects(&due).into_iter().filter(|object| !ours.contains(object)).collect();
    // The indexes PostgreSQL makes for a new table's primary key and unique constraints
    // take names it derives (`items_pkey`, `items_drain_key_key`): one of those names taken
    // would make it name drainctl's otherwise, and `doctor` call the schema changed by hand.
    let tables: Vec<String> =
        wanted.iter().filter(|(kind, _)| *kind == "table").map(|(_, name)| name.clone()).collect();
    for line in EXPECTED_SHAPE.lines() {
        let Some((table, index)) =
            line.strip_prefix("index ").and_then(|rest| rest.split_whitespace().next()?.split_once('.'))
        else {
            continue;
        };
        let object = ("index", index.to_string());
        if tables.iter().any(|name| name == table) && !wanted.contains(&object) && !ours.contains(&object) {
            wanted.push(object);
        }
    }
    let (kinds, names): (Vec<&str>, Vec<String>) = wanted.into_iter().unzip();
    let taken: Vec<String> = client
        .query_one(
            concat!(
                "SELECT coalesce(array_agg(
                        -- What is in a table's or an index's way is named as what it is: an
                        -- enum or a domain (no relation) a type, a relation by its kind.
                        CASE WHEN w.kind = 'function' THEN w.kind
                             WHEN to_regclass(quote_ident(current_schema()) || '.' || quote_ident(w.name)) IS NULL
                             THEN 'type' ELSE ",
                relation_kind!("w.name"),
                " END
                        || ' ' || w.name ORDER BY w.kind, w.name), '{}')
               FROM unnest($1::text[], $2::text[]) AS w(kind, name)
              WHERE CASE w.kind
                      WHEN 'function' THEN EXISTS (
                          SELECT 1 FROM pg_proc p
                           WHERE p.proname = w.name
                             AND p.pronamespace = to_regnamespace(quote_ident(current_schema())))
                      -- A table's row type takes its name among the types too: an enum or
                      -- a domain of that name is in the way as much as a table.
                      WHEN 'table' THEN EXISTS (
                          SELECT 1 FROM pg_type t
                           WHERE t.typname = w.name
                             AND t.typnamespace = to_regnamespace(quote_ident(current_schema())))
                      ELSE to_regclass(quote_ident(current_schema()) || '.' || quote_ident(w.name)) IS NOT NULL
                    END"
            ),
            &[&kinds, &names],
        )?
        .get(0);
    Ok((!taken.is_empty()).then(|| format!("{} that drainctl did not create", taken.join(", "))))
}

/// The tables, indexes and functions `migrations` create, by kind (`table`, `index`, `function`)
/// and name, read from their SQL (comments left out).
fn created_objects(migrations: &[Migration]) -> Vec<(&'static str, String)> {
    static CREATE: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)\bcreate\s+(?:or\s+replace\s+)?(?:unique\s+)?(table|index|function)\s+(?:if\s+not\s+exists\s+)?([a-z_][a-z_0-9]*)",
        )
        .ok()
    });
    let Some(create) = CREATE.as_ref() else { return Vec::new() };
    let mut objects = Vec::new();
    for migration in migrations {
        let code: String = migration
            .sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        for found in create.captures_iter(&code) {
            let kind = match found[1].to_ascii_lowercase().as_str() {
                "function" => "function",
                "table" => "table",
                _ => "index",
            };
            let object = (kind, found[2].to_ascii_lowercase());
            if !objects.contains(&object) {
                objects.push(object);
            }
        }
    }
    objects
}

/// That none of the migrations `due` was applied, in words: `it was not applied`, `none
/// of the 4 migrations 0016–0019 was applied`.
fn none_applied(due: &[Migration]) -> String {
    match due {
        [first, .., last] => {
            format!(
                "none of the {} migrations {:04}–{:04} was applied",
                due.len(),
                first.version,
                last.version
            )
        }
        _ => "it was not applied".to_string(),
    }
}

/// `migrate --status`: every known or applied version with its state. Read under the
/// migration lock, or without it when another session holds it: a read sees whole
/// migrations only, so a held lock delays nobody here.
pub fn status(client: &mut Client) -> Result<Vec<MigrationStatus>> {
    // An edited or newer schema is reported here (`changed`, `unknown`), not refused.
    if crate::db::try_advisory_lock(client, MIGRATION_LOCK_KEY)? {
        run_and_release(client, |client| Ok(status_rows(&read_applied(client)?)))
    } else {
        Ok(status_rows(&read_applied(client)?))
    }
}

fn status_rows(applied: &[Applied]) -> Vec<MigrationStatus> {
    let mut rows = Vec::new();
    for migration in MIGRATIONS {
        let row = applied.iter().find(|a| a.version == migration.version);
        let state = match row {
            None => "pending",
            Some(a) if a.checksum != checksum(migration.sql) => "changed",
            Some(_) => "applied",
        };
        rows.push(MigrationStatus {
            version: migration.version,
            name: migration.name.to_string(),
            state,
            applied_at: row.map(|a| a.applied_at),
        });
    }
    for a in applied.iter().filter(|a| !MIGRATIONS.iter().any(|m| m.version == a.version)) {
        rows.push(MigrationStatus {
            version: a.version,
            name: a.name.clone(),
            state: "unknown",
            applied_at: Some(a.applied_at),
        });
    }
    rows.sort_by_key(|r| r.version);
    rows
}

/// `migrate --repair-checksum VERSION`: accept the current file's checksum for an
/// applied migration (after a harmless edit). One whose checksum already matches is left
/// alone, and the message says so. The message, and whether the checksum was changed.
pub fn repair_checksum(
    client: &mut Client,
    outbox: &Outbox,
    lock_wait: LockWait,
    version: i32,
    now: DateTime<Utc>,
) -> Result<(String, bool)> {
    let migration = MIGRATIONS.iter().find(|m| m.version == version).ok_or_else(|| {
        Error::Usage(format!(
            "--repair-checksum {version}: no such migration in this build (known: 1 to {})",
            latest_version()
        ))
    })?;
    with_migration_lock(client, lock_wait, |client| {
        // A database without drainctl's schema, or with another tool's schema_migrations,
        // is answered as every other command answers it (before: exit 70, a raw error).
        let applied = read_applied(client)?;
        // A newer release's schema is that release's to repair: this build's checksum
        // written over its own would have it refuse the database from then on.
        refuse_newer(&applied)?;
        if !applied.iter().any(|applied| applied.version == version) {
            return Err(not_applied_yet(version, migration.name));
        }
        let new_checksum = checksum(migration.sql);
        let mut transaction = client.transaction()?;
        let recorded: Option<String> = transaction
            .query_opt("SELECT checksum FROM schema_migrations WHERE version = $1 FOR UPDATE", &[&version])?
            .map(|row| row.get(0));
        match recorded {
            None => return Err(not_applied_yet(version, migration.name)),
            Some(recorded) if recorded == new_checksum => {
                let message = format!(
                    "migration {version:04}_{}: checksum {} already matches this build; nothing changed",
                    migration.name,
                    short(&new_checksum)
                );
                return Ok((message, false));
            }
            Some(_) => {}
        }
        transaction.execute(
            "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
            &[&version, &new_checksum],
        )?;
        let event = Event::new(
            EventKind::MigrationChecksumRepaired,
            format!("accepted the new checksum of migration {version:04}_{}", migration.name),
        )
        .data(serde_json::json!({ "version": version }));
        record_migration_event(&mut transaction, outbox, &event, now)?;
        transaction.commit()?;
        let message = format!(
            "migration {version:04}_{}: checksum updated to {}",
            migration.name,
            short(&new_checksum)
        );
        Ok((message, true))
    })
}

fn not_applied_yet(version: i32, name: &str) -> Error {
    Error::Usage(format!(
        "--repair-checksum {version}: migration {version:04}_{name} is not applied yet; run `drainctl migrate`"
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_names_the_schema_it_migrates_to() {
        assert!(
            crate::cli::VERSION.ends_with(&format!(" (schema {})", super::latest_version())),
            "update crate::cli::VERSION: {}",
            crate::cli::VERSION
        );
    }

    use super::*;

    #[test]
    fn the_objects_a_migration_creates_are_read_from_its_code_not_its_comments() {
        let sql = "-- create table not_this (a int)\nCREATE TABLE t (a int);\nCREATE UNIQUE INDEX IF NOT EXISTS \
                   t_a ON t (a); -- create index nor_this\nCREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ \
                   LANGUAGE sql;\n";
        let migration = Migration { version: 1, name: "x", sql };
        let expected = [("table", "t"), ("index", "t_a"), ("function", "f")];
        assert_eq!(created_objects(&[migration]), expected.map(|(kind, name)| (kind, name.to_string())));
        // Every table drainctl reads is one its migrations create.
        let all = created_objects(MIGRATIONS);
        assert!(TABLES.iter().all(|table| all.contains(&("table", table.to_string()))), "{all:?}");
    }

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        assert_eq!(MIGRATIONS.first().map(|m| m.version), Some(1));
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version, "{} then {}", pair[0].version, pair[1].version);
        }
    }

    #[test]
    fn the_tables_doctor_checks_are_those_the_migrations_create() {
        let create = regex::Regex::new(r"(?i)CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)").unwrap();
        let mut created: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|migration| create.captures_iter(migration.sql).map(|found| found[1].to_string()))
            .collect();
        created.sort();
        created.dedup();
        assert_eq!(created, TABLES.to_vec());
    }

    #[test]
    fn migration_files_on_disk_are_all_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<String> =
            MIGRATIONS.iter().map(|m| format!("{:04}_{}.sql", m.version, m.name)).collect();
        assert_eq!(files, embedded);
    }
}
