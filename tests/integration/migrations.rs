//! Migrations: concurrent first runs, checksums, schema newer than the binary, lock wait.

use crate::support::*;

const TABLES: [&str; 13] = [
    "drains",
    "items",
    "runs",
    "attempts",
    "staged_results",
    "quota_backoffs",
    "events",
    "supervisor_passes",
    "quota_groups",
    "source_files",
    "source_scans",
    "maintenance",
    "counters",
];
/// Migrations this build ships.
/// The newest migration: the highest number among the files in `migrations/`.
fn latest_version() -> i64 {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    std::fs::read_dir(folder)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".sql").and_then(|stem| stem.get(..4)).and_then(|n| n.parse::<i64>().ok())
        })
        .max()
        .unwrap()
}

/// How many migrations this build ships: the files in `migrations/`.
fn migration_count() -> i64 {
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    std::fs::read_dir(folder)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|e| e == "sql"))
        .count() as i64
}

fn migrate(db: &TestDb, args: &[&str]) -> Drainctl {
    let mut all = vec!["migrate"];
    all.extend_from_slice(args);
    Drainctl::new(&all).env("DATABASE_URL", &db.url).current_dir(std::env::temp_dir().as_path())
}

fn assert_schema_complete(db: &TestDb) {
    let mut client = db.client();
    for table in TABLES {
        let exists: bool = client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).unwrap().get(0);
        assert!(exists, "table {table} missing");
    }
    assert_eq!(
        query_i64(&mut client, "SELECT max(version)::bigint FROM schema_migrations"),
        latest_version()
    );
}

/// 16 processes started at the same instant must all succeed on an empty database.
fn sixteen_at_once(args: &[&str]) {
    for round in 0..10 {
        let db = TestDb::new();
        let children: Vec<_> = (0..16).map(|_| migrate(&db, args).spawn()).collect();
        for child in children {
            let result = finished(child.wait_with_output().unwrap());
            assert_eq!(result.code, 0, "round {round}: {result:?}");
            for bad in ["deadlock", "already exists", "duplicate"] {
                assert!(!result.stderr.contains(bad), "round {round}: {bad} in {}", result.stderr);
            }
        }
        assert_schema_complete(&db);
    }
}

#[test]
fn sixteen_concurrent_migrates_on_an_empty_database_all_succeed() {
    sixteen_at_once(&[]);
}

#[test]
fn sixteen_concurrent_other_subcommands_on_an_empty_database_all_succeed() {
    // Every database command migrates first; `migrate --status` only reports.
    let config = "[[drain]]\nname = \"a\"\ncommand = [\"true\"]\n";
    for round in 0..10 {
        let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
        let children: Vec<_> = (0..16)
            .map(|i| {
                let key = format!("k{i}");
                let args: Vec<&str> = match i % 4 {
                    0 => vec!["migrate", "--status"],
                    1 => vec!["resume", "a"],
                    2 => vec!["pause", "a", "--note", "x"],
                    _ => vec!["enqueue", "a", "--key", &key, "--payload", "{}"],
                };
                fixture.drainctl(&args).spawn()
            })
            .collect();
        for child in children {
            let result = finished(child.wait_with_output().unwrap());
            assert_eq!(result.code, 0, "round {round}: {result:?}");
            for bad in ["deadlock", "already exists", "duplicate key"] {
                assert!(!result.stderr.contains(bad), "round {round}: {bad} in {}", result.stderr);
            }
        }
        assert_schema_complete(&fixture.db);
        assert_eq!(query_i64(&mut fixture.client(), "SELECT count(*) FROM items"), 4);
    }
}

#[test]
fn a_current_schema_runs_no_ddl_and_status_lists_versions() {
    let db = TestDb::new();
    migrate(&db, &[]).run().assert_code(0);
    let second = migrate(&db, &[]).run();
    second.assert_code(0);
    let current = format!("schema is current (version {})", latest_version());
    assert!(second.stdout.contains(&current), "{}", second.stdout);
    let status = migrate(&db, &["--status", "--json"]).run();
    status.assert_code(0);
    let json = status.json();
    assert_eq!(json["migrations"][0]["version"], 1);
    assert_eq!(json["migrations"][0]["state"], "applied");
    // Humans read the times in the configured zone, as everywhere else (before: RFC 3339 UTC).
    let human = migrate(&db, &["--status"]).env("TZ", "Asia/Kolkata").run();
    human.assert_code(0);
    let first = human.stdout.lines().find(|line| line.starts_with("0001")).unwrap_or_default();
    assert!(first.ends_with(" IST"), "{}", human.stdout);
    let mut client = db.client();
    assert_eq!(
        query_i64(&mut client, "SELECT count(*) FROM events WHERE kind = 'migration_applied'"),
        migration_count()
    );
}

#[test]
fn a_tampered_applied_migration_is_refused_with_exit_78_naming_it() {
    let db = TestDb::new();
    migrate(&db, &[]).run().assert_code(0);
    db.client().execute("UPDATE schema_migrations SET checksum = 'abc123' WHERE version = 1", &[]).unwrap();
    let result = migrate(&db, &[]).run();
    result.assert_code(78);
    assert!(result.stderr.contains("0001_init.sql was changed after it was applied"), "{}", result.stderr);
    assert!(result.stderr.contains("--repair-checksum 1"), "{}", result.stderr);
    assert_eq!(result.stderr.lines().count(), 1, "one line: {}", result.stderr);
    // The explicit way out.
    let repaired = migrate(&db, &["--repair-checksum", "1"]).run();
    repaired.assert_code(0);
    assert!(repaired.stdout.contains("checksum updated to"), "{}", repaired.stdout);
    migrate(&db, &[]).run().assert_code(0);
    // Again, on a checksum that is right: nothing to change, and it says so.
    let again = migrate(&db, &["--repair-checksum", "1"]).run();
    again.assert_code(0);
    assert!(again.stdout.contains("already matches this build; nothing changed"), "{}", again.stdout);
    let json = migrate(&db, &["--repair-checksum", "1", "--json"]).run();
    json.assert_code(0);
    assert_eq!(json.json(), serde_json::json!({"repaired": 1, "changed": false}));
    let repairs =
        query_i64(&mut db.client(), "SELECT count(*) FROM events WHERE kind = 'migration_checksum_repaired'");
    assert_eq!(repairs, 1);
}

#[test]
fn a_schema_newer_than_the_binary_is_refused() {
    let db = TestDb::new();
    migrate(&db, &[]).run().assert_code(0);
    db.client()
        .batch_execute(
            "INSERT INTO schema_migrations VALUES (98, 'next', 'x', now());
             INSERT INTO schema_migrations VALUES (99, 'future', 'x', now())",
        )
        .unwrap();
    let result = migrate(&db, &[]).run();
    // The newest applied one names the release to install (before: 0098, which a release
    // that ships only 0098 refuses too).
    result.assert_code(78);
    assert!(result.stderr.contains("schema is at version 99"), "{}", result.stderr);
    assert!(result.stderr.contains("migration 0099"), "{}", result.stderr);
}

#[test]
fn a_checksum_is_not_repaired_in_a_schema_a_newer_release_migrated() {
    let db = TestDb::new();
    migrate(&db, &[]).run().assert_code(0);
    db.client()
        .batch_execute(
            "INSERT INTO schema_migrations VALUES (99, 'future', 'x', now());
             UPDATE schema_migrations SET checksum = 'of-the-newer-release' WHERE version = 3",
        )
        .unwrap();
    // Before: this older build wrote its own checksum over the newer release's (exit 0),
    // and the newer release refused the database from then on.
    let repair = migrate(&db, &["--repair-checksum", "3"]).run();
    repair.assert_code(78);
    assert!(repair.stderr.contains("schema is at version 99"), "{}", repair.stderr);
    let checksum: String = db
        .client()
        .query_one("SELECT checksum FROM schema_migrations WHERE version = 3", &[])
        .unwrap()
        .get(0);
    assert_eq!(checksum, "of-the-newer-release");
    let repairs =
        query_i64(&mut db.client(), "SELECT count(*) FROM events WHERE kind = 'migration_checksum_repaired'");
    assert_eq!(repairs, 0);
}

#[test]
fn a_migrate_whose_session_the_server_ended_while_it_was_paused_exits_69() {
    let config = "[[drain]]\nname = \"a\"\ncommand = [\"true\"]\n";
    let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
    let _client = at_version_1(&fixture);
    let mut reader = fixture.client();
    let mut dump = reader.transaction().unwrap();
    dump.batch_execute("SELECT count(*) FROM quota_backoffs").unwrap();
    // Every session of this migrate may idle in a transaction for 300 ms (as released, 60 s).
    let child = fixture
        .drainctl(&["--lock-timeout", "30s", "migrate"])
        .env("DRAINCTL_IDLE_IN_TRANSACTION_TIMEOUT_MS", "300")
        .spawn();
    let waiting =
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()";
    wait_until("the migrate to wait for the table lock", std::time::Duration::from_secs(20), || {
        fixture.count(waiting) == 1
    });
    // A paused VM: the process stops while its statement waits; the lock comes free, the
    // statement ends, and the session sits idle in its transaction until the server ends it.
    let backend = fixture.count(
        "SELECT pid::bigint FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
    );
    signal(child.id(), libc::SIGSTOP);
    dump.rollback().unwrap();
    let gone = format!("SELECT count(*) FROM pg_stat_activity WHERE pid = {backend}");
    wait_until("the server to end the paused session", std::time::Duration::from_secs(20), || {
        fixture.count(&gone) == 0
    });
    signal(child.id(), libc::SIGCONT);
    let result = finished(child.wait_with_output().unwrap());
    // Before: exit 70, "a bug", for what pg_terminate_backend answers with 69.
    result.assert_code(69);
    assert!(result.stderr.contains("idle-in-transaction timeout"), "{}", result.stderr);
    assert!(result.stderr.contains("run it again"), "{}", result.stderr);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
}

#[test]
fn a_held_migration_lock_times_out_with_exit_75_naming_the_holder() {
    let db = TestDb::new();
    let mut holder = db.client();
    holder.batch_execute("SET application_name = 'lock-holder-test'").unwrap();
    holder.execute("SELECT pg_advisory_lock($1)", &[&0x4452_4149_0000_0000_i64]).unwrap();
    let result = migrate(&db, &["--lock-timeout", "300ms"]).run();
    result.assert_code(75);
    assert!(result.stderr.contains("waiting for the migration lock"), "{}", result.stderr);
    assert!(result.stderr.contains("lock-holder-test"), "{}", result.stderr);
}

#[test]
fn an_unreachable_database_exits_69_without_the_password() {
    let db = TestDb::new();
    let password = db.password();
    // Wrong password on the real server.
    let wrong = db.url.replace(&password, "not-the-password-Zq9");
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &wrong).run();
    result.assert_code(69);
    assert!(!result.stderr.contains("not-the-password-Zq9"), "{}", result.stderr);
    assert!(result.stderr.contains("password authentication failed"), "{}", result.stderr);
    // With the fix (before: the server's words alone).
    assert!(result.stderr.contains("fix them in the database URL"), "{}", result.stderr);
    // A database that does not exist: how to make it.
    let missing = url_with_database(&db.url, "no_such_db_9");
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &missing).run();
    result.assert_code(69);
    assert!(
        result.stderr.contains("database \"no_such_db_9\" does not exist; create it"),
        "{}",
        result.stderr
    );
    // A NUL in a setting sent at login: no retry mends it (before: 69, "unreachable").
    let in_host = db.url.replacen("@127.0.0.1", "@127.0.0.1%00", 1);
    assert_ne!(in_host, db.url);
    for url in [url_with_database(&db.url, "x%00y"), format!("{}?application_name=a%00b", db.url), in_host] {
        let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &url).run();
        result.assert_code(78);
        assert!(result.stderr.contains("holds a NUL character (%00); remove it"), "{}", result.stderr);
    }
    // A one-letter password: hidden where it stands alone, the words around it intact (not
    // `c***nnot connect to the d***t***b***se`, which would spell the password out).
    let short = db.url.replace(&format!(":{password}@"), ":a@");
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &short).run();
    result.assert_code(69);
    assert!(
        result.stderr.contains("cannot connect to the database (URL from $DATABASE_URL)"),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("password authentication failed for user"), "{}", result.stderr);
    assert!(!result.stderr.contains("***"), "nothing to hide here: {}", result.stderr);
    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = format!("postgres://someone:hunter2-secret@127.0.0.1:{port}/x");
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &down).run();
    result.assert_code(69);
    assert!(!result.stderr.contains("hunter2-secret"), "{}", result.stderr);
    assert!(result.stderr.contains("cannot connect to the database"), "{}", result.stderr);
    assert!(result.stderr.contains("$DATABASE_URL"), "{}", result.stderr);
    assert!(
        result.stderr.contains("; check that the server runs and that the URL's host and port are its own"),
        "how to fix it: {}",
        result.stderr
    );
    // A socket folder with no server's socket in it: the socket file is named.
    let folder = tempfile::tempdir().unwrap();
    let nosocket = format!("postgres://someone:hunter2-secret@/x?host={}&port=5999", folder.path().display());
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &nosocket).run();
    result.assert_code(69);
    let socket = format!("there is no socket {}/.s.PGSQL.5999: check", folder.path().display());
    assert!(result.stderr.contains(&socket), "{}", result.stderr);
    assert!(!result.stderr.contains("hunter2-secret"), "{}", result.stderr);
    // A password and no user is the URL's fault (before: 69, the server's "no PostgreSQL
    // user name specified in startup packet").
    let userless = db.url.replacen("postgres://postgres:", "postgres://:", 1);
    assert_ne!(userless, db.url);
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &userless).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("the database URL (from $DATABASE_URL) names no user"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains(&password), "{}", result.stderr);
}

#[test]
fn a_database_url_without_a_host_or_a_needed_password_exits_78() {
    for url in ["postgres://u:S3CRET-no-host@", "password=S3CRET-no-host"] {
        let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", url).run();
        result.assert_code(78);
        assert!(!result.stderr.contains("S3CRET-no-host"), "{}", result.stderr);
        assert!(result.stderr.contains("host and hostaddr are missing"), "{}", result.stderr);
    }
    // The server asks for a password; PGPASSWORD is not read.
    let db = TestDb::new();
    let password = db.password();
    let without = db.url.replace(&format!(":{password}@"), "@");
    assert_ne!(without, db.url);
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &without).env("PGPASSWORD", &password).run();
    result.assert_code(78);
    assert!(!result.stderr.contains(&password), "{}", result.stderr);
    assert!(result.stderr.contains("password missing"), "{}", result.stderr);
    assert!(result.stderr.contains("PGPASSWORD and ~/.pgpass are not read"), "{}", result.stderr);
    // The hint's placeholder is shown as written (before: `password=***`).
    assert!(result.stderr.contains("or password=PASSWORD (docs/configuration.md)"), "{}", result.stderr);
    // A password with an @ written as it is: the host after it does not resolve, and the
    // URL's reserved characters are named.
    let with_at = db.url.replace(&format!(":{password}@"), &format!(":{password}@x@"));
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &with_at).run();
    result.assert_code(69);
    assert!(!result.stderr.contains(&password), "{}", result.stderr);
    assert!(result.stderr.contains("percent-encode it (@ as %40"), "{}", result.stderr);
    // A variable for the password alone, never expanded (before: "password authentication
    // failed" and nothing more).
    let with_variable = db.url.replace(&format!(":{password}@"), ":${PGPASS}@");
    let result = Drainctl::new(&["migrate"]).env("DATABASE_URL", &with_variable).run();
    assert!(
        result.stderr.contains("the URL holds a variable (${NAME}), which is not expanded"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_version_1_database_keeps_its_backoffs_when_upgraded_to_accounts() {
    let config = "[[drain]]\nname = \"a\"\ncommand = [\"true\"]\nquota_group = \"g\"\n";
    let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
    let mut client = at_version_1(&fixture);
    client
        .batch_execute(
            "INSERT INTO quota_backoffs (quota_group, backoff_until, reason, updated_at)
             VALUES ('g', '2026-11-27T11:00:00Z', 'usage limit reached', now());
             INSERT INTO items (drain, key, payload, available_at, enqueued_at, updated_at)
             VALUES ('a', 'k', '{}', now() - interval '1 day', now(), now())",
        )
        .unwrap();
    let migrated = fixture.drainctl(&["migrate"]).run();
    migrated.assert_code(0);
    assert!(migrated.stdout.contains("0002"), "{}", migrated.stdout);
    // The group's backoff still holds: nothing is claimed before 11:00.
    let pass = fixture.drainctl(&["drain", "a", "--json"]).run();
    pass.assert_code(0);
    assert_eq!(pass.json()["status"], "rate_limited", "{}", pass.stdout);
    assert_eq!(fixture.item("a", "k").0, "pending");
}

#[test]
fn a_command_that_upgrades_the_schema_says_so_on_stderr() {
    let config = "[[drain]]\nname = \"a\"\ncommand = [\"true\"]\n";
    // A fresh database gets its schema without a word: no older drainctl uses it.
    let fresh = Fixture::new(config, "2026-11-27T10:00:00Z").drainctl(&["status"]).run();
    fresh.assert_code(0);
    assert!(!fresh.stderr.contains("upgraded"), "{}", fresh.stderr);
    // One an older drainctl migrated: `status` applies the rest (one-way) and says so.
    // Before, it said nothing without -v.
    let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
    at_version_1(&fixture);
    let upgraded = fixture.drainctl(&["status"]).run();
    upgraded.assert_code(0);
    assert!(
        upgraded.stderr.contains("drainctl: upgraded the database schema: applied migration(s) 0002_")
            && upgraded
                .stderr
                .contains("drainctl releases older than this one refuse the database from now on"),
        "{}",
        upgraded.stderr
    );
    let again = fixture.drainctl(&["status"]).run();
    assert!(!again.stderr.contains("upgraded"), "{}", again.stderr);
}

#[test]
fn a_dry_run_applies_no_migration_and_says_to_migrate_first() {
    let config =
        "[defaults]\ntimezone = \"UTC\"\n\n[[drain]]\nname = \"docs\"\ncommand = [\"FAKE_WORKER\"]\n";
    let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
    // A database migrated by an older drainctl (here: up to 0001): the newer one's dry run
    // must not lock that one out.
    let mut client = at_version_1(&fixture);
    // Before: the dry run said "nothing was changed" and had applied every migration,
    // after which an older drainctl refused the database.
    for args in [["supervise", "--dry-run"], ["prune", "--dry-run"]] {
        let result = fixture.drainctl(&args).run();
        result.assert_code(78);
        assert!(
            result.stderr.contains("are not applied to the database yet, and a dry run changes nothing")
                && result.stderr.contains("run `drainctl migrate` first"),
            "{args:?}: {}",
            result.stderr
        );
        let version: i32 =
            client.query_one("SELECT max(version) FROM schema_migrations", &[]).unwrap().get(0);
        assert_eq!(version, 1, "{args:?} applied migrations");
    }
    // Another session holds the migration lock: refused at once, not after the lock
    // timeout with "retry later" (before: 75 once `--lock-timeout` ran out).
    let mut holder = fixture.client();
    holder.execute("SELECT pg_advisory_lock($1)", &[&0x4452_4149_0000_0000_i64]).unwrap();
    let held = fixture.drainctl(&["--lock-timeout", "20s", "supervise", "--dry-run"]).run();
    held.assert_code(78);
    assert!(held.stderr.contains("run `drainctl migrate` first"), "{}", held.stderr);
    let listed = fixture.drainctl(&["--lock-timeout", "20s", "migrate", "--dry-run"]).run();
    listed.assert_code(0);
    assert!(listed.stdout.starts_with("would apply: 0002, "), "{}", listed.stdout);
    drop(holder);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let migrated = fixture.drainctl(&["supervise", "--dry-run"]).run();
    migrated.assert_code(0);
    assert!(migrated.stdout.starts_with("dry run: nothing was changed\n"), "{}", migrated.stdout);
    fixture.drainctl(&["prune", "--dry-run"]).run().assert_code(0);
    // A database with no drainctl schema yet gets it from a dry run as from any command,
    // and the dry run says so (before: "nothing was changed").
    let fresh = Fixture::new(config, "2026-11-27T10:00:00Z");
    let first = fresh.drainctl(&["supervise", "--dry-run"]).run();
    first.assert_code(0);
    assert!(
        first.stdout.starts_with(
            "dry run: nothing was changed but drainctl's schema, created in this database that had none\n"
        ),
        "{}",
        first.stdout
    );
    // So do the other dry runs (before: "nothing was removed", "a: no dead items").
    for (args, said) in [
        (&["prune", "--dry-run"][..], "dry run: nothing was changed but drainctl's schema, created"),
        (
            &["discard", "docs", "--dead", "--dry-run"][..],
            "dry run: nothing was changed but drainctl's schema, created",
        ),
    ] {
        let fresh = Fixture::new(config, "2026-11-27T10:00:00Z");
        let first = fresh.drainctl(args).run();
        first.assert_code(0);
        assert!(first.stdout.starts_with(said), "{args:?}: {}", first.stdout);
        let again = fresh.drainctl(args).run();
        assert!(!again.stdout.contains("drainctl's schema"), "{args:?}: {}", again.stdout);
    }
}

#[test]
fn a_migration_waits_for_a_table_lock_at_most_the_lock_timeout() {
    let config = "[[drain]]\nname = \"a\"\ncommand = [\"true\"]\n";
    let fixture = Fixture::new(config, "2026-11-27T10:00:00Z");
    let mut client = at_version_1(&fixture);
    // A pg_dump (or any long transaction) reads a table migration 0002 alters.
    let mut reader = fixture.client();
    let mut dump = reader.transaction().unwrap();
    dump.batch_execute("SELECT count(*) FROM quota_backoffs").unwrap();
    let started = std::time::Instant::now();
    let result = fixture.drainctl(&["--lock-timeout", "1s", "migrate"]).run();
    // Before: it waited for as long as the reader's transaction lasted.
    result.assert_code(75);
    assert!(
        result
            .stderr
            .contains("migration 0002_accounts could not take the locks of the tables it alters within 1s"),
        "{}",
        result.stderr
    );
    // The reader is named, as the holder of the migration lock would be.
    let reader_pid: i32 = dump.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    assert!(result.stderr.contains(&format!("held by: backend pid {reader_pid} (")), "{}", result.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let version: i32 = client.query_one("SELECT max(version) FROM schema_migrations", &[]).unwrap().get(0);
    assert_eq!(version, 1, "nothing of 0002 applied");
    dump.rollback().unwrap();
    // A table only a later migration alters: the ones before it are not applied either, so
    // that an older drainctl still running is not locked out by half an upgrade (before:
    // 0002 and 0003 were, and every older drainctl refused the database from then on).
    let mut dump = reader.transaction().unwrap();
    dump.batch_execute("SELECT count(*) FROM runs").unwrap();
    let result = fixture.drainctl(&["--lock-timeout", "1s", "migrate"]).run();
    result.assert_code(75);
    let latest = std::fs::read_dir("migrations").unwrap().count();
    let none = format!("none of the {} migrations 0002–{latest:04} was applied", latest - 1);
    assert!(result.stderr.contains(&none), "{}", result.stderr);
    let version: i32 = client.query_one("SELECT max(version) FROM schema_migrations", &[]).unwrap().get(0);
    assert_eq!(version, 1, "no migration applied");
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'migration_applied'"), 0);
    dump.rollback().unwrap();
    fixture.drainctl(&["migrate"]).run().assert_code(0);
}

/// The fixture's database as the first release left it: migration 0001 applied alone.
fn at_version_1(fixture: &Fixture) -> postgres::Client {
    let init = include_str!("../../migrations/0001_init.sql");
    let checksum: String = {
        use sha2::Digest;
        sha2::Sha256::digest(init.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
    };
    let mut client = fixture.client();
    client.batch_execute(init).unwrap();
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                             checksum text NOT NULL, applied_at timestamptz NOT NULL)",
        )
        .unwrap();
    client.execute("INSERT INTO schema_migrations VALUES (1, 'init', $1, now())", &[&checksum]).unwrap();
    client
}

#[test]
fn another_applications_database_is_refused_with_exit_78_and_left_as_it_was() {
    let tables = |db: &TestDb| -> Vec<String> {
        db.client()
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    for (theirs, says) in [
        // Tables of drainctl's names, no record of migrations: before, migration 0001 failed
        // with exit 70 and left a schema_migrations table behind.
        (
            "CREATE TABLE items (id serial PRIMARY KEY, name text); CREATE TABLE runs (id serial PRIMARY KEY)",
            "table items, table runs that drainctl did not create",
        ),
        // Named as what they are, as `\d` lists them (before: "table(s) events, items, runs").
        (
            "CREATE SEQUENCE items; CREATE TYPE runs AS (a int); CREATE VIEW events AS SELECT 1 AS one",
            "view events, sequence items, type runs that drainctl did not create",
        ),
        // Rails' and golang-migrate's record of migrations: before, exit 70 `column "name" does not exist`.
        ("CREATE TABLE schema_migrations (version varchar PRIMARY KEY)", "a schema_migrations table of another tool"),
        ("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)", "of another tool"),
        (
            "CREATE TABLE schema_migrations (version text PRIMARY KEY, name text, checksum text, applied_at timestamptz);
             INSERT INTO schema_migrations VALUES ('20240101', 'x', 'y', now())",
            "of another tool",
        ),
        // Of drainctl's very shape, without drainctl's tables beside it: before, every command
        // said migration 0001 was changed and to repair its checksum, which then exited 70.
        (
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text, checksum text, applied_at timestamptz);
             INSERT INTO schema_migrations VALUES (1, 'create_users', 'abc', now())",
            "of another tool (no drains table beside it)",
        ),
    ] {
        let db = TestDb::new();
        db.client().batch_execute(theirs).unwrap();
        let before = tables(&db);
        // --repair-checksum too (before: exit 70 or 69, `column "checksum" does not exist`).
        for args in [&[][..], &["--status"], &["--dry-run"], &["--repair-checksum", "1"]] {
            let result = migrate(&db, args).run();
            result.assert_code(78);
            assert!(result.stderr.contains(says), "{theirs}: {args:?}: {}", result.stderr);
            // Not "or a schema of its own": two installations in one database share its
            // advisory locks (docs/migrations.md).
            assert!(
                result.stderr.contains("give drainctl a database of its own (CREATE DATABASE drainctl); nothing was changed"),
                "{}",
                result.stderr
            );
            assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
        }
        let doctor = Drainctl::new(&["doctor"]).env("DATABASE_URL", &db.url).current_dir(std::env::temp_dir().as_path()).run();
        doctor.assert_code(78);
        assert!(doctor.stdout.contains(says), "{theirs}: {}", doctor.stdout);
        assert_eq!(tables(&db), before, "{theirs}: something was created");
    }
    // Only an index and a function of drainctl's names: before, migration 0001 failed with
    // exit 70 ("a bug") on the index — and a function of another application's would have
    // been replaced.
    let db = TestDb::new();
    db.client()
        .batch_execute(
            "CREATE TABLE audit (at timestamptz); CREATE INDEX events_at ON audit (at);
             CREATE FUNCTION counters_bump() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        )
        .unwrap();
    let result = migrate(&db, &[]).run();
    result.assert_code(78);
    let says =
        "this database already holds function counters_bump, index events_at that drainctl did not create";
    assert!(result.stderr.contains(says), "{}", result.stderr);
    assert_eq!(tables(&db), ["audit"]);
    let doctor = Drainctl::new(&["doctor"])
        .env("DATABASE_URL", &db.url)
        .current_dir(std::env::temp_dir().as_path())
        .run();
    doctor.assert_code(78);
    assert!(
        doctor.stdout.contains("cannot be applied: this database already holds function counters_bump"),
        "{}",
        doctor.stdout
    );
    // An index and a table of the names PostgreSQL gives the indexes of a new table's key:
    // it named drainctl's `items_pkey1`, and doctor then said the schema was changed by hand.
    let db = TestDb::new();
    db.client()
        .batch_execute(
            "CREATE TABLE audit (drain text, key text); CREATE INDEX items_drain_key_key ON audit (drain, key);
             CREATE TABLE items_pkey (id int)",
        )
        .unwrap();
    let result = migrate(&db, &[]).run();
    result.assert_code(78);
    let says =
        "this database already holds index items_drain_key_key, table items_pkey that drainctl did not create";
    assert!(result.stderr.contains(says), "{}", result.stderr);
    assert_eq!(tables(&db), ["audit", "items_pkey"]);
    // An enum and a domain of drainctl's table names: a table's row type would take the
    // name (before: exit 70, `type "items" already exists`, and doctor said healthy).
    let db = TestDb::new();
    db.client()
        .batch_execute("CREATE TYPE items AS ENUM ('new', 'old'); CREATE DOMAIN attempts AS int")
        .unwrap();
    let result = migrate(&db, &[]).run();
    result.assert_code(78);
    let says = "this database already holds type attempts, type items that drainctl did not create";
    // (Before: named "table", which `\dt` does not list.)
    assert!(result.stderr.contains(says), "{}", result.stderr);
    assert!(tables(&db).is_empty(), "{:?}", tables(&db));
    let doctor = Drainctl::new(&["doctor"])
        .env("DATABASE_URL", &db.url)
        .current_dir(std::env::temp_dir().as_path())
        .run();
    doctor.assert_code(78);
    assert!(doctor.stdout.contains(says), "{}", doctor.stdout);
    // A database without drainctl's schema: its migration 1 is not applied yet (before:
    // exit 70, `relation "schema_migrations" does not exist`).
    let db = TestDb::new();
    let result = migrate(&db, &["--repair-checksum", "1"]).run();
    result.assert_code(64);
    assert_eq!(
        result.stderr,
        "drainctl: --repair-checksum 1: migration 0001_init is not applied yet; run `drainctl migrate`\n"
    );
    assert!(tables(&db).is_empty(), "{:?}", tables(&db));
}

#[test]
fn the_shape_the_migrations_leave_is_the_one_doctor_expects() {
    // A migration that adds, drops or changes an object must say so in the expected shape,
    // or `doctor` checks an old one.
    let db = TestDb::new();
    migrate(&db, &[]).run().assert_code(0);
    let (unexpected, missing) = drainctl::schema_shape_drift(&mut db.client()).unwrap();
    assert!(
        unexpected.is_empty() && missing.is_empty(),
        "add to src/schema_shape.txt: {unexpected:?}; remove: {missing:?}"
    );
}

#[test]
fn a_schema_changed_by_hand_is_named_by_doctor_and_refused_with_exit_78() {
    // Before: `doctor` said "schema current" while every enqueue exited 70 with no fix, and a
    // trigger dropped by hand left the counts wrong unsaid.
    let fixture =
        Fixture::new("[[drain]]\nname = \"d\"\ncommand = [\"FAKE_WORKER\"]\n", "2026-12-07T10:00:00Z");
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    fixture.drainctl(&["doctor"]).run().assert_code(0);
    let mut client = fixture.db.client();
    client.batch_execute("ALTER TABLE items RENAME COLUMN payload TO payload_x").unwrap();
    let enqueue = fixture.drainctl(&["enqueue", "d", "--key", "a", "--payload", "{}"]).run();
    enqueue.assert_code(78);
    assert!(enqueue.stderr.contains("column \"payload\""), "{}", enqueue.stderr);
    assert!(
        enqueue.stderr.contains("changed by hand?); `drainctl doctor` names what differs"),
        "{}",
        enqueue.stderr
    );
    assert_eq!(enqueue.stderr.lines().count(), 1, "{}", enqueue.stderr);
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(78);
    assert!(
        doctor.stdout.contains("changed by hand: missing or changed column items.payload jsonb not null;"),
        "{}",
        doctor.stdout
    );
    client.batch_execute("ALTER TABLE items RENAME COLUMN payload_x TO payload").unwrap();
    fixture.drainctl(&["doctor"]).run().assert_code(0);
    // A supervise pass whose drain meets it before it records a run: 78 as the drain (before:
    // 69, "database unreachable", with the database up).
    fixture.drainctl(&["enqueue", "d", "--key", "s", "--payload", "{}"]).run().assert_code(0);
    client.batch_execute("ALTER TABLE items RENAME COLUMN last_error TO last_err").unwrap();
    let supervise = fixture.drainctl(&["supervise"]).run();
    supervise.assert_code(78);
    let said: Vec<String> =
        fixture.column("SELECT message FROM events WHERE kind = 'supervise_error' ORDER BY id");
    assert!(
        said.iter().any(|m| m.contains("ended without recording a run") && m.contains("changed by hand?")),
        "{said:?}"
    );
    client.batch_execute("ALTER TABLE items RENAME COLUMN last_err TO last_error").unwrap();
    fixture.drainctl(&["discard", "d", "--all"]).run().assert_code(0);
    // A trigger disabled and an index dropped: nothing fails, the counts or the keys go wrong.
    client
        .batch_execute(
            "ALTER TABLE items DISABLE TRIGGER items_counted_insert; DROP INDEX items_drain_state_updated",
        )
        .unwrap();
    let doctor = fixture.drainctl(&["doctor", "--json"]).run();
    doctor.assert_code(78);
    let text = doctor.stdout;
    assert!(
        text.contains("index items.items_drain_state_updated (drain, state, updated_at, id), trigger items.items_counted_insert"),
        "{text}"
    );
    // The disabled trigger is named as such, with the statement that enables it (before:
    // "missing or changed", and a migrations/ folder an installed binary does not have).
    assert!(
        text.contains("(trigger items.items_counted_insert is disabled: ALTER TABLE items ENABLE TRIGGER items_counted_insert; then `drainctl migrate --repair-counts`)"),
        "{text}"
    );
    // Without the unique index, an enqueue could add an item twice: refused, nothing written
    // (before: two enqueues at once each added every item); a key found twice is named as
    // a schema changed, not as a database unreachable (exit 69).
    fixture.drainctl(&["enqueue", "d", "--key", "a", "--payload", "{}"]).run().assert_code(0);
    client
        .batch_execute(
            "ALTER TABLE items ENABLE TRIGGER items_counted_insert;
             CREATE INDEX items_drain_state_updated ON items (drain, state, updated_at, id);
             ALTER TABLE items DROP CONSTRAINT items_drain_key_key",
        )
        .unwrap();
    let enqueue = fixture.drainctl(&["enqueue", "d", "--key", "b", "--payload", "{}"]).run();
    enqueue.assert_code(78);
    assert!(
        enqueue.stderr.contains("no valid unique index on items (drain, key) is there (items_drain_key_key)"),
        "{}",
        enqueue.stderr
    );
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'b'"), 0);
    // Nor does a unique index of its name on other columns keep a key once.
    client.batch_execute("CREATE UNIQUE INDEX items_drain_key_key ON items (drain, key, id)").unwrap();
    fixture.drainctl(&["enqueue", "d", "--key", "b", "--payload", "{}"]).run().assert_code(78);
    client.batch_execute("DROP INDEX items_drain_key_key").unwrap();
    fixture.drainctl(&["enqueue", "d", "--key", "a", "--payload", "{}"]).run().assert_code(78);
    client
        .batch_execute(
            "INSERT INTO items (drain, key, payload, available_at, enqueued_at, updated_at)
             SELECT drain, key, payload, available_at, enqueued_at, updated_at FROM items",
        )
        .unwrap();
    let show = fixture.drainctl(&["items", "show", "d", "a"]).run();
    show.assert_code(70);
    assert!(show.stderr.contains("were drainctl's tables changed by hand?"), "{}", show.stderr);
    client
        .batch_execute(
            "DELETE FROM items WHERE id NOT IN (SELECT min(id) FROM items GROUP BY drain, key);
             ALTER TABLE items ADD CONSTRAINT items_drain_key_key UNIQUE (drain, key)",
        )
        .unwrap();
    fixture.drainctl(&["migrate", "--repair-counts"]).run().assert_code(0);
    fixture.drainctl(&["doctor"]).run().assert_code(0);
    // What the operator added beside drainctl's objects is no concern of its.
    client
        .batch_execute("ALTER TABLE items ADD COLUMN note text; CREATE INDEX mine ON items (note)")
        .unwrap();
    fixture.drainctl(&["doctor"]).run().assert_code(0);
}

#[test]
fn counts_a_disabled_trigger_left_wrong_are_named_by_doctor_and_set_right_by_repair_counts() {
    // Before: after the trigger was enabled again, status, items and metrics stayed wrong
    // for good while doctor said healthy, and nothing could recount.
    let fixture =
        Fixture::new("[[drain]]\nname = \"d\"\ncommand = [\"FAKE_WORKER\"]\n", "2026-12-07T10:00:00Z");
    fixture.drainctl(&["enqueue", "d", "--key", "a", "--payload", "{}"]).run().assert_code(0);
    let mut client = fixture.db.client();
    client.batch_execute("ALTER TABLE items DISABLE TRIGGER items_counted_insert").unwrap();
    fixture.drainctl(&["enqueue", "d", "--key", "b", "--payload", "{}"]).run().assert_code(0);
    client.batch_execute("ALTER TABLE items ENABLE TRIGGER items_counted_insert").unwrap();
    let pending = |fixture: &Fixture| {
        let status = fixture.drainctl(&["status", "--json"]).run().json();
        status["drains"][0]["counts"]["pending"].clone()
    };
    assert_eq!(pending(&fixture), 1, "the item enqueued without its trigger is not counted");
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(78);
    assert!(
        doctor
            .stdout
            .contains("the kept item counts differ from the items (drain d: 1 pending counted, 2 there)"),
        "{}",
        doctor.stdout
    );
    // Not while the trigger is still off: the next write would make them wrong again.
    client.batch_execute("ALTER TABLE items DISABLE TRIGGER items_counted_insert").unwrap();
    let refused = fixture.drainctl(&["migrate", "--repair-counts"]).run();
    refused.assert_code(78);
    assert!(
        refused.stderr.contains(
            "trigger items.items_counted_insert (trigger items.items_counted_insert is disabled: ALTER TABLE items \
             ENABLE TRIGGER items_counted_insert; then `drainctl migrate --repair-counts`); restore it"
        ),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("nothing was recounted"), "{}", refused.stderr);
    client.batch_execute("ALTER TABLE items ENABLE TRIGGER items_counted_insert").unwrap();
    // A transaction holding items keeps it waiting --lock-timeout at most (before: for
    // ever, every writer waiting behind it).
    let mut holder = fixture.db.client();
    let mut holding = holder.transaction().unwrap();
    holding.execute("UPDATE items SET updated_at = updated_at WHERE key = 'a'", &[]).unwrap();
    let waited = fixture.drainctl(&["--lock-timeout", "1s", "migrate", "--repair-counts"]).run();
    waited.assert_code(75);
    assert!(
        waited.stderr.contains("kept --repair-counts waiting 1s; nothing was recounted"),
        "{}",
        waited.stderr
    );
    holding.rollback().unwrap();
    // Two at once set it right once (before: both added the same difference).
    let mut both: Vec<_> =
        (0..2).map(|_| fixture.drainctl(&["migrate", "--repair-counts", "--json"]).spawn()).collect();
    let outputs: Vec<_> = both.drain(..).map(|child| child.wait_with_output().unwrap()).collect();
    assert!(outputs.iter().all(|output| output.status.success()), "{outputs:?}");
    assert_eq!(pending(&fixture), 2);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'counts_repaired'"), 1);
    client.batch_execute("ALTER TABLE items DISABLE TRIGGER items_counted_insert").unwrap();
    fixture.drainctl(&["enqueue", "d", "--key", "c", "--payload", "{}"]).run().assert_code(0);
    client.batch_execute("ALTER TABLE items ENABLE TRIGGER items_counted_insert").unwrap();
    let repaired = fixture.drainctl(&["migrate", "--repair-counts"]).run();
    repaired.assert_code(0);
    assert!(
        repaired.stdout.contains("set the item counts right: drain d: 2 pending counted, 3 there"),
        "{}",
        repaired.stdout
    );
    assert_eq!(pending(&fixture), 3);
    fixture.drainctl(&["doctor"]).run().assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'counts_repaired'"), 2);
    // Again: nothing to set right, and it says so.
    let again = fixture.drainctl(&["migrate", "--repair-counts", "--json"]).run();
    again.assert_code(0);
    assert_eq!(again.json(), serde_json::json!({ "repaired_counts": [] }));
    // The counts kept working after the repair.
    fixture.drainctl(&["drain", "d"]).run().assert_code(0);
    fixture.drainctl(&["doctor"]).run().assert_code(0);
}

#[test]
fn doctor_checks_the_shape_in_a_schema_whose_name_is_quoted() {
    // Before: `schema "drainctl" does not exist`, the name read unquoted.
    let fixture =
        Fixture::new("[[drain]]\nname = \"d\"\ncommand = [\"FAKE_WORKER\"]\n", "2026-12-07T10:00:00Z");
    // The schema in `public` the fixture made moves there: one installation a database.
    fixture
        .db
        .client()
        .batch_execute("ALTER SCHEMA public RENAME TO \"DrainCtl\"; CREATE SCHEMA public")
        .unwrap();
    let url = format!("{}?options=-c%20search_path%3D%22DrainCtl%22", fixture.db.url);
    fixture.drainctl(&["migrate"]).env("DRAINCTL_DATABASE_URL", &url).run().assert_code(0);
    let doctor = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &url).run();
    doctor.assert_code(0);
    assert!(doctor.stdout.contains("ok    schema: schema current"), "{}", doctor.stdout);
}

#[test]
fn a_search_path_away_from_drainctls_schema_is_refused_rather_than_a_second_schema_made() {
    // Before: the role's search_path set to another schema made the next command create a
    // second, empty installation there; `status` showed an empty backlog, exit 0.
    let fixture =
        Fixture::new("[[drain]]\nname = \"d\"\ncommand = [\"FAKE_WORKER\"]\n", "2026-12-07T10:00:00Z");
    fixture.enqueue("d", &[("a".to_string(), serde_json::json!({}))]);
    fixture.db.client().batch_execute("CREATE SCHEMA app").unwrap();
    let url = format!("{}?options=-c%20search_path%3Dapp", fixture.db.url);
    let says = "this database holds drainctl's schema already, in schema public, but this session's current \
                schema (the first of its search_path, app, that exists) is app: drainctl would create a second, \
                empty one there";
    for args in [&["status"][..], &["migrate"], &["enqueue", "d", "--key", "b", "--payload", "{}"]] {
        let result = fixture.drainctl(args).env("DRAINCTL_DATABASE_URL", &url).run();
        result.assert_code(78);
        assert!(result.stderr.contains(says), "{args:?}: {}", result.stderr);
        assert!(result.stderr.contains("SET search_path = public"), "{}", result.stderr);
        assert!(result.stderr.contains("nothing was changed"), "{}", result.stderr);
    }
    // A schema in front of drainctl's (a `"$user"` schema made later): the next migration
    // would make its new tables there while reading drainctl's behind it.
    let in_front = format!("{}?options=-c%20search_path%3Dapp%2Cpublic", fixture.db.url);
    let result = fixture.drainctl(&["migrate"]).env("DRAINCTL_DATABASE_URL", &in_front).run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("(the first of its search_path, app,public, that exists) is app"),
        "{}",
        result.stderr
    );
    let doctor = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &url).run();
    doctor.assert_code(78);
    assert!(doctor.stdout.contains(says), "{}", doctor.stdout);
    assert_eq!(
        fixture.count("SELECT count(*) FROM pg_class WHERE relnamespace = 'app'::regnamespace"),
        0,
        "something was created in schema app"
    );
    // The installation itself is as it was.
    fixture.drainctl(&["status"]).run().assert_code(0);
    assert_eq!(fixture.item("d", "a").0, "pending");
}
