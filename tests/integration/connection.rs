//! The connection and what drainctl makes sure of before it works: a frozen holder of the
//! migration lock, the holders a lock-timeout message names, the server version, and a
//! connection pooler (the real pgbouncer) in transaction or session mode.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const NOW: &str = "2026-11-27T10:00:00Z";
const MIGRATION_LOCK_KEY: i64 = 0x4452_4149_0000_0000;
const CONFIG: &str = "[[drain]]\nname = \"a\"\ncommand = [\"FAKE_WORKER\"]\n";

/// A plain client that holds the migration lock, as a stopped drainctl would.
fn hold_migration_lock(db: &TestDb, application: &str) -> postgres::Client {
    let mut holder = db.client();
    holder.batch_execute(&format!("SET application_name = '{application}'")).unwrap();
    holder.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY]).unwrap();
    holder
}

#[test]
fn a_frozen_migration_lock_holder_does_not_block_commands_on_a_current_schema() {
    let fixture = Fixture::new(CONFIG, NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let _holder = hold_migration_lock(&fixture.db, "frozen-drainctl");
    // Before, each of these waited the whole --lock-timeout and exited 75.
    for args in [
        &["status", "--lock-timeout", "20s"][..],
        &["supervise", "--lock-timeout", "20s"],
        &["enqueue", "a", "--key", "k1", "--payload", "{}", "--lock-timeout", "20s"],
        &["migrate", "--lock-timeout", "20s"],
        &["migrate", "--status", "--lock-timeout", "20s"],
        &["migrate", "--dry-run", "--lock-timeout", "20s"],
        &["doctor", "--lock-timeout", "20s"],
    ] {
        let started = Instant::now();
        let result = fixture.drainctl(args).run();
        result.assert_code(0);
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} waited {:?}", started.elapsed());
    }
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE key = 'k1'"), 1);
    assert_eq!(fixture.count("SELECT count(*) FROM supervisor_passes"), 1);
}

#[test]
fn a_held_migration_lock_still_times_out_with_75_when_migrations_are_due() {
    let fixture = Fixture::new(CONFIG, NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    // Migration 0003 looks missing: it is due, so the lock must be waited for.
    fixture.client().execute("DELETE FROM schema_migrations WHERE version = 3", &[]).unwrap();
    let _holder = hold_migration_lock(&fixture.db, "busy-migrator");
    let result = fixture.drainctl(&["status", "--lock-timeout", "300ms"]).run();
    result.assert_code(75);
    assert!(
        result.stderr.contains("timed out after 300ms waiting for the migration lock"),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("busy-migrator"), "{}", result.stderr);
    // An edited migration is refused at once (78), whoever holds the lock.
    fixture
        .client()
        .execute("UPDATE schema_migrations SET checksum = 'abc123' WHERE version = 1", &[])
        .unwrap();
    let result = fixture.drainctl(&["status", "--lock-timeout", "20s"]).run();
    result.assert_code(78);
    assert!(result.stderr.contains("0001_init.sql was changed after it was applied"), "{}", result.stderr);
}

#[test]
fn the_lock_timeout_message_names_only_holders_in_this_database() {
    let here = TestDb::new();
    let elsewhere = TestDb::new();
    // Advisory locks are per database: both sessions hold the same key at once.
    let _other = hold_migration_lock(&elsewhere, "holder-elsewhere");
    let _holder = hold_migration_lock(&here, "holder-here");
    let result = Drainctl::new(&["migrate", "--lock-timeout", "300ms"])
        .env("DATABASE_URL", &here.url)
        .current_dir(std::env::temp_dir().as_path())
        .run();
    result.assert_code(75);
    assert!(result.stderr.contains("holder-here"), "{}", result.stderr);
    assert!(!result.stderr.contains("holder-elsewhere"), "{}", result.stderr);
    assert_eq!(result.stderr.matches("backend pid").count(), 1, "{}", result.stderr);
}

#[test]
fn doctor_shows_the_server_version_and_the_supported_range() {
    let fixture = Fixture::new(CONFIG, NOW);
    let result = fixture.drainctl(&["doctor"]).run();
    result.assert_code(0);
    let version: String =
        fixture.client().query_one("SELECT current_setting('server_version')", &[]).unwrap().get(0);
    // The test cluster offers TLS (tests/integration/tls.rs).
    let expected = format!(
        "ok    database: database reachable (PostgreSQL {version}; supported: 11 through 18; encrypted with TLSv1."
    );
    assert!(result.stdout.contains(&expected), "{expected:?} not in\n{}", result.stdout);
}

/// A real pgbouncer in front of the test cluster, with two names for one database:
/// `txn` (pool_mode = transaction) and `sess` (pool_mode = session), and `tiny` (session,
/// one server connection; a client waits for it at most 3 s). Stopped on drop.
struct Pgbouncer {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    user: String,
    password: String,
}

/// The pgbouncer program: `$DRAINCTL_TEST_PGBOUNCER` (set by `./scripts/test`, which
/// installs the package when missing), else the usual places.
fn pgbouncer_program() -> Option<String> {
    if let Ok(program) = std::env::var("DRAINCTL_TEST_PGBOUNCER") {
        if !program.is_empty() {
            return Some(program);
        }
    }
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"]
        .iter()
        .find(|path| std::path::Path::new(path).exists())
        .map(|path| path.to_string())
}

impl Pgbouncer {
    fn start(db: &TestDb) -> Option<Pgbouncer> {
        Pgbouncer::start_with(db, "")
    }

    /// As [`Pgbouncer::start`], with `settings` added to its `[pgbouncer]` section.
    fn start_with(db: &TestDb, settings: &str) -> Option<Pgbouncer> {
        let Some(program) = pgbouncer_program() else {
            eprintln!("SKIPPED: pgbouncer is not installed and ./scripts/test could not install it");
            return None;
        };
        let server: postgres::Config = db.url.parse().unwrap();
        let host = match &server.get_hosts()[0] {
            postgres::config::Host::Tcp(host) => host.clone(),
            other => panic!("the test cluster is reached over TCP, not {other:?}"),
        };
        let server_port = server.get_ports()[0];
        let user = server.get_user().unwrap().to_string();
        let password = String::from_utf8(server.get_password().unwrap().to_vec()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let target = format!("host={host} port={server_port} dbname={}", db.name);
        std::fs::write(
            path("pgbouncer.ini"),
            format!(
                "[databases]\ntxn = {target} pool_mode=transaction\nsess = {target} pool_mode=session\n\
                 tiny = {target} pool_mode=session pool_size=1\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 query_wait_timeout = 3\n{settings}\
                 auth_type = scram-sha-256\nauth_file = {}\npidfile = {}\nlogfile = {}\n",
                path("userlist.txt"),
                path("pgbouncer.pid"),
                path("pgbouncer.log"),
            ),
        )
        .unwrap();
        std::fs::write(path("userlist.txt"), format!("\"{user}\" \"{password}\"\n")).unwrap();
        // pgbouncer refuses to run as root: run it as the cluster's user.
        let is_root = unsafe { libc::geteuid() } == 0;
        let mut command = if is_root {
            let status = Command::new("chown").args(["-R", "postgres:", &path("")]).status().unwrap();
            assert!(status.success(), "chown the pgbouncer folder");
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", &program]);
            command
        } else {
            Command::new(&program)
        };
        command.arg(path("pgbouncer.ini")).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = command.spawn().expect("start pgbouncer");
        let bouncer = Pgbouncer { dir, child, port, user, password };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                let log =
                    std::fs::read_to_string(bouncer.dir.path().join("pgbouncer.log")).unwrap_or_default();
                panic!("pgbouncer did not listen on port {port} within 10s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(bouncer)
    }

    /// The URL of pool `name` (`txn` or `sess`).
    fn url(&self, name: &str) -> String {
        format!("postgres://{}:{}@127.0.0.1:{}/{name}", self.user, self.password, self.port)
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")) {
            if let Ok(pid) = pid.trim().parse::<u32>() {
                signal(pid, libc::SIGTERM);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_transaction_pooler_is_refused_with_78_and_a_session_pool_works() {
    let fixture = Fixture::new(CONFIG, NOW);
    let Some(bouncer) = Pgbouncer::start(&fixture.db) else { return };
    let through = |pool: &str, args: &[&str]| {
        fixture.drainctl(args).env("DRAINCTL_DATABASE_URL", &bouncer.url(pool)).run()
    };

    for args in [&["status"][..], &["migrate"], &["supervise"]] {
        let result = through("txn", args);
        result.assert_code(78);
        assert!(
            result.stderr.contains("connection pooler in transaction or statement mode"),
            "{}",
            result.stderr
        );
        assert!(result.stderr.contains("pool_mode = session"), "{}", result.stderr);
        assert!(result.stderr.contains("connect directly to PostgreSQL"), "{}", result.stderr);
        assert!(!result.stderr.contains(&bouncer.password), "{}", result.stderr);
        assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
    }
    let doctor = through("txn", &["doctor"]);
    doctor.assert_code(78);
    assert!(
        doctor.stdout.contains("fail  database: the database connection goes through a connection pooler"),
        "{}",
        doctor.stdout
    );
    // Refused before anything was written.
    assert_eq!(fixture.count("SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"), 0);

    through("sess", &["migrate"]).assert_code(0);
    through("sess", &["enqueue", "a", "--key", "k1", "--payload", "{}"]).assert_code(0);
    through("sess", &["status"]).assert_code(0);
    through("sess", &["doctor"]).assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 1);
    // A wrong password the pooler refuses is named with its fix, as the server's refusal
    // is (before: a bare "SASL authentication failed").
    let wrong = bouncer.url("sess").replace(&format!(":{}@", bouncer.password), ":not-the-password@");
    let refused = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &wrong).run();
    refused.assert_code(69);
    assert!(refused.stderr.contains("the URL's user or password is not the server's"), "{}", refused.stderr);
}

#[test]
fn a_transaction_pooler_that_hands_out_its_server_connections_in_turn_is_refused() {
    // `server_round_robin = 1`: the pooler's check at connect sees the second connection
    // on another server process, as under a busy pool. Before: it passed, and the
    // statements that followed went to one process and another — `prepared statement
    // "s0" already exists`, exit 70 — or a migration lock stayed behind on one of them.
    let fixture = Fixture::new(CONFIG, NOW);
    let Some(bouncer) = Pgbouncer::start_with(&fixture.db, "server_round_robin = 1\n") else { return };
    // Three server connections in the pool: three clients in a transaction at once.
    let mut warm: Vec<postgres::Client> =
        (0..3).map(|_| postgres::Client::connect(&bouncer.url("txn"), postgres::NoTls).unwrap()).collect();
    for client in &mut warm {
        client.batch_execute("BEGIN; SELECT 1").unwrap();
    }
    for client in &mut warm {
        client.batch_execute("COMMIT").unwrap();
    }
    for args in [&["status"][..], &["migrate"], &["enqueue", "a", "--key", "k", "--payload", "{}"]] {
        let result = fixture.drainctl(args).env("DRAINCTL_DATABASE_URL", &bouncer.url("txn")).run();
        result.assert_code(78);
        assert!(
            result.stderr.contains("connection pooler in transaction or statement mode"),
            "{}",
            result.stderr
        );
        assert!(result.stderr.contains("pool_mode = session"), "{}", result.stderr);
        assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
    }
    assert_eq!(fixture.count("SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"), 0);
    assert_eq!(fixture.count("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), 0);
}

#[test]
fn a_full_pool_is_named_when_its_queue_gives_up() {
    let fixture = Fixture::new(CONFIG, NOW);
    let Some(bouncer) = Pgbouncer::start(&fixture.db) else { return };
    // Another client holds the pool's one server connection (a session pool keeps it for
    // the client's whole session) longer than the queue waits.
    let (held, holding) = std::sync::mpsc::channel();
    let holder = {
        let url = bouncer.url("tiny");
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client.batch_execute("SELECT 1").unwrap();
            held.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(6));
            drop(client);
        })
    };
    holding.recv_timeout(Duration::from_secs(20)).expect("the holder to get the server connection");
    let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &bouncer.url("tiny")).run();
    result.assert_code(69);
    // pgbouncer's own line (query_wait_timeout) is often lost with the socket it closes;
    // either way the line says what happened and what to do. Before: "connection closed"
    // alone, or the bare setting's name.
    assert!(
        result.stderr.contains("(pgbouncer: query_wait_timeout); give the pool more server connections"),
        "{}",
        result.stderr
    );
    assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
    holder.join().unwrap();
}

#[test]
fn a_drain_pass_and_a_supervise_pass_work_through_a_session_pool() {
    // No URL in the configuration file: every process, the drain that supervise starts
    // included (it inherits the environment), can reach the database only through the pool.
    let fixture = Fixture::new(CONFIG, NOW);
    let Some(bouncer) = Pgbouncer::start(&fixture.db) else { return };
    let pool = bouncer.url("sess");
    let through = |args: &[&str]| fixture.drainctl(args).env("DRAINCTL_DATABASE_URL", &pool).run();
    let enqueue = |keys: &[&str]| {
        for key in keys {
            let payload = r#"{"steps": [{"out": "ok"}]}"#;
            through(&["enqueue", "a", "--key", key, "--payload", payload]).assert_code(0);
        }
    };

    through(&["migrate"]).assert_code(0);
    enqueue(&["d1", "d2", "d3"]);
    through(&["drain", "a"]).assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 3);
    assert_eq!(
        fixture.count(
            "SELECT count(*) FROM runs WHERE trigger = 'manual' AND status = 'drained' AND items_done = 3"
        ),
        1
    );

    enqueue(&["s1", "s2"]);
    through(&["supervise"]).assert_code(0);
    assert_eq!(fixture.count("SELECT count(*) FROM supervisor_passes WHERE status = 'done'"), 1);
    wait_until("the drain supervise started to finish its items", Duration::from_secs(30), || {
        fixture.count(
            "SELECT count(*) FROM runs WHERE trigger = 'supervisor' AND status = 'drained' AND items_done = 2",
        ) == 1
    });
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 5);
    assert_eq!(fixture.count("SELECT count(*) FROM runs WHERE status <> 'drained'"), 0);
    // Every one of them logged in to the session pool.
    let log = std::fs::read_to_string(bouncer.dir.path().join("pgbouncer.log")).unwrap_or_default();
    assert!(log.contains("login attempt: db=sess"), "no login through the session pool in:\n{log}");
    assert!(!log.contains("db=txn"), "{log}");
}

#[test]
fn a_pass_through_a_session_pool_reconnects_when_the_server_ends_its_session() {
    let fixture = Fixture::new(CONFIG, NOW);
    let Some(bouncer) = Pgbouncer::start(&fixture.db) else { return };
    let pool = bouncer.url("sess");
    fixture.drainctl(&["migrate"]).env("DRAINCTL_DATABASE_URL", &pool).run().assert_code(0);
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    let slow = serde_json::json!({ "steps": [
        { "touch": started }, { "sleep": 1.2 }, { "wait_for_file": go }, { "out": "result s" }
    ] });
    fixture.enqueue(
        "a",
        &[("s".into(), slow), ("t".into(), serde_json::json!({ "steps": [{ "out": "result t" }] }))],
    );
    let pass = fixture.drainctl(&["drain", "a"]).env("DRAINCTL_DATABASE_URL", &pool).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    // The server ends the pass's session behind the pool; the pool drops the client.
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    std::fs::write(&go, "").unwrap();
    let result = finished(pass.wait_with_output().unwrap());
    result.assert_code(0);
    assert!(result.stderr.contains("reconnected to the database"), "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items WHERE state = 'done'"), 2);
    assert_eq!(fixture.count("SELECT count(*) FROM events WHERE kind = 'database_reconnected'"), 1);
}

#[test]
fn a_malformed_database_url_is_78_naming_what_is_wrong_and_never_its_password() {
    for (url, says) in [
        ("postgres://u:Secret-7x@127.0.0.1:99999/x", "invalid value for option `port`"),
        ("postgres://u:Secret-7x@127.0.0.1/x?sslmode=bogus", "invalid value for option `sslmode`"),
        ("postgres://u:Secret-7x@127.0.0.1/x?bogusparam=1", "an unknown option, or a value with a space"),
        ("host=h bogus=1 password=Secret-7x", "an unknown option, or a value with a space"),
        // An unquoted password with a space: the parser's "unknown option `7x`" would
        // show a piece of it.
        ("host=h user=u password=Secret 7x=1", "an unknown option, or a value with a space"),
        ("postgres://u@127.0.0.1/x?password=Secret&7x=1", "an unknown option, or a value with a space"),
        // Another database's URL is told so, not taken for key=value settings.
        ("mysql://u:Secret-7x@127.0.0.1/x", "a mysql:// URL; drainctl speaks to PostgreSQL only"),
        // A libpq option the driver lacks is named (before: "an unknown option").
        ("postgres://u:Secret-7x@127.0.0.1/x?passfile=/etc/pgpass", "libpq's passfile is not supported"),
        ("host=h service=batch password=Secret-7x", "libpq's service is not supported"),
        (
            "postgres://u:Secret-7x@127.0.0.1/x?gssencmode=disable",
            "libpq's gssencmode is not supported by drainctl",
        ),
        // A password with @ and : written as it is: the port is refused, and the URL's
        // reserved characters are named (before: the port alone).
        (
            "postgres://u:Secret:Pa@ss:7x@127.0.0.1:5432/x",
            "the URL's user or password holds a character URLs reserve: percent-encode it (@ as %40",
        ),
        // A variable the shell or the file did not expand.
        ("${DATABASE_URL}", "a variable ($NAME) is not expanded: give the URL itself"),
    ] {
        let result = Drainctl::new(&["migrate"]).env("DRAINCTL_DATABASE_URL", url).run();
        result.assert_code(78);
        assert!(result.stderr.contains(says), "{url}: {}", result.stderr);
        assert!(
            result.stderr.contains("give postgres://USER:PASSWORD@HOST:PORT/DATABASE"),
            "{}",
            result.stderr
        );
        assert!(!result.stderr.contains("Secret") && !result.stderr.contains("7x"), "{}", result.stderr);
        assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
    }
    // In quotes, or with a line end after it, as env files and `$(cat file)` leave it.
    // Before: "an unknown option, or a value with a space", and `database "x\n" does not
    // exist` (69, as if to retry).
    for (url, says) in [
        ("\"postgres://u:Secret-7x@127.0.0.1/x\"", "is wrapped in quotes, which are not part of it"),
        ("'postgres://u:Secret-7x@127.0.0.1/x'", "is wrapped in quotes, which are not part of it"),
        ("postgres://u:Secret-7x@127.0.0.1/x\n", "begins or ends with a space or a line break: remove it"),
        // Blanks alone: before, taken as unset, and the next source's database used.
        (" \n", "is empty or blank: give postgres://USER:PASSWORD@HOST:PORT/DATABASE, or leave it out"),
    ] {
        let result = Drainctl::new(&["migrate"])
            .env("DRAINCTL_DATABASE_URL", url)
            .env("DATABASE_URL", "postgres://u:Secret-7x@127.0.0.1:1/x")
            .run();
        result.assert_code(78);
        assert_eq!(
            result.stderr,
            format!(
                "drainctl: the database URL (from $DRAINCTL_DATABASE_URL) {says}{}\n",
                if says.starts_with("is wrapped") {
                    " (docker's --env-file keeps them): remove them"
                } else {
                    ""
                }
            ),
        );
    }
    // `url = ""` in the file: before, "both host and hostaddr are missing" from libpq.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("drainctl.toml");
    std::fs::write(&config, "[database]\nurl = \"\"\n[[drain]]\nname = \"a\"\ncommand = [\"x\"]\n").unwrap();
    let result = Drainctl::new(&["migrate"])
        .env("DRAINCTL_CONFIG", config.to_str().unwrap())
        .env_remove("DRAINCTL_DATABASE_URL")
        .env("DATABASE_URL", "postgres://u:Secret-7x@127.0.0.1:1/x")
        .run();
    result.assert_code(78);
    assert!(
        result.stderr.contains("(from [database] url in ") && result.stderr.contains("is empty or blank"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_session_the_server_ends_mid_command_says_what_was_kept_and_what_to_do() {
    let fixture = Fixture::new(CONFIG, NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut producer = fixture.drainctl(&["enqueue", "a"]).spawn_with_open_stdin();
    let mut stdin = producer.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"{\"key\": \"x\", \"payload\": {}}\n").unwrap();
    std::io::Write::flush(&mut stdin).unwrap();
    wait_until("the batch to be open", Duration::from_secs(30), || {
        fixture.count(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'drainctl' AND query ILIKE 'COPY%'",
        ) == 1
    });
    assert_eq!(fixture.end_drainctl_sessions(), 1);
    // More lines than the socket holds: the client writes into the closed session (a
    // broken pipe, not a reply saying it is closed).
    let lines: String = (0..20_000)
        .map(|i| format!("{{\"key\": \"y{i}\", \"payload\": {{\"pad\": \"{}\"}}}}\n", "x".repeat(100)))
        .collect();
    std::io::Write::write_all(&mut stdin, lines.as_bytes()).unwrap_or(());
    drop(stdin);
    let result = finished(producer.wait_with_output().unwrap());
    result.assert_code(69);
    assert!(result.stderr.contains("database connection lost"), "{}", result.stderr);
    assert!(
        result.stderr.contains("what the command had not committed was rolled back: run it again"),
        "{}",
        result.stderr
    );
    assert_eq!(result.stderr.trim().lines().count(), 1, "{}", result.stderr);
    assert_eq!(fixture.count("SELECT count(*) FROM items"), 0);
}

#[test]
fn a_statement_an_administrator_cancels_is_temporary_not_a_bug() {
    let fixture = Fixture::new(CONFIG, NOW);
    fixture.drainctl(&["pause", "a"]).run().assert_code(0);
    // Another session holds the drain's row: `resume` waits for it.
    let mut holder = fixture.client();
    let mut transaction = holder.transaction().unwrap();
    transaction.execute("SELECT 1 FROM drains WHERE name = 'a' FOR UPDATE", &[]).unwrap();
    let resume = fixture.drainctl(&["resume", "a"]).spawn();
    let mut admin = fixture.client();
    let waiting = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                   AND application_name = 'drainctl' AND wait_event_type = 'Lock'";
    let mut pid = None;
    wait_until("resume to wait for the row", Duration::from_secs(20), || {
        pid = admin.query_opt(waiting, &[]).unwrap().map(|row| row.get::<_, i32>(0));
        pid.is_some()
    });
    admin.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    let result = finished(resume.wait_with_output().unwrap());
    // Before: 70, "a bug or an unexpected database error".
    result.assert_code(75);
    assert!(
        result.stderr.contains("canceling statement due to user request: the statement was cancelled")
            && result.stderr.contains("run it again"),
        "{}",
        result.stderr
    );
    transaction.rollback().unwrap();
    assert_eq!(fixture.count("SELECT count(*) FROM drains WHERE name = 'a' AND paused_at IS NOT NULL"), 1);
}

#[test]
fn a_database_server_out_of_room_is_temporary_not_a_bug() {
    let fixture = Fixture::new(CONFIG, NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    // The server's disk fills as the drain's row is written (`could not extend file …`):
    // SQLSTATE 53100, raised here by a trigger.
    fixture
        .client()
        .batch_execute(
            "CREATE FUNCTION test_disk_full() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$;
             CREATE TRIGGER test_disk_full BEFORE INSERT OR UPDATE ON drains
               FOR EACH ROW EXECUTE FUNCTION test_disk_full();",
        )
        .unwrap();
    let result = fixture.drainctl(&["pause", "a"]).run();
    // Before: 70, "a bug or an unexpected database error".
    result.assert_code(75);
    assert!(
        result.stderr.contains("No space left on device: the database server is out of room")
            && result.stderr.contains("free space on the server, then run it again"),
        "{}",
        result.stderr
    );
    assert_eq!(result.stderr.trim().lines().count(), 1, "{}", result.stderr);
}

#[test]
fn a_read_only_database_is_unavailable_not_a_bug() {
    let fixture = Fixture::new(CONFIG, NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    fixture
        .client()
        .batch_execute(&format!("ALTER DATABASE {} SET default_transaction_read_only = on", fixture.db.name))
        .unwrap();
    let result = fixture.drainctl(&["enqueue", "a", "--key", "k", "--payload", "{}"]).run();
    // Before: 70, "a bug or an unexpected database error".
    result.assert_code(69);
    assert!(
        result.stderr.contains("the database is read-only")
            && result.stderr.contains("turn it off where it was set"),
        "{}",
        result.stderr
    );
    // doctor says so first. Before: `ok database`, `healthy`, exit 0.
    let doctor = fixture.drainctl(&["doctor"]).run();
    doctor.assert_code(69);
    assert!(
        doctor
            .stdout
            .contains("fail  database: the database is read-only (default_transaction_read_only = on)"),
        "{}",
        doctor.stdout
    );
    assert!(!doctor.stdout.contains("ok    database"), "one verdict for the database: {}", doctor.stdout);
    // Every command that writes says so in one line before it does anything (before:
    // supervise printed two, the second "the next pass tries again"); those that read
    // work on, dry runs of discard included.
    for args in [
        &["supervise"][..],
        &["drain", "a"],
        &["pause", "a"],
        &["burst", "on", "a", "--until", "+1h"],
        &["discard", "a", "--all"],
        // Before: the raw "cannot execute SELECT FOR UPDATE in a read-only transaction".
        &["migrate", "--repair-checksum", "1"],
        &["migrate", "--repair-counts"],
    ] {
        let refused = fixture.drainctl(args).run();
        refused.assert_code(69);
        assert_eq!(
            refused.stderr,
            // The fix is where it was set, not another address (before: "point the
            // database URL at the primary", which it already was).
            "drainctl: the database is read-only (default_transaction_read_only = on); nothing was done: turn it \
             off where it was set, in a transaction that may write (BEGIN READ WRITE; ALTER DATABASE or ALTER \
             ROLE … RESET default_transaction_read_only; COMMIT), or in postgresql.conf (and SELECT \
             pg_reload_conf()), or point the database URL at a server that takes writes\n",
            "{args:?}"
        );
    }
    // Asked for a session that writes (`target_session_attrs=read-write`, for failovers),
    // the driver finds none: it runs, so not "check that the server runs".
    let separator = if fixture.db.url.contains('?') { '&' } else { '?' };
    let writes_only = format!("{}{separator}target_session_attrs=read-write", fixture.db.url);
    let refused = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &writes_only).run();
    refused.assert_code(69);
    assert!(
        refused.stderr.contains("every host of the URL answered, none takes writes now")
            && !refused.stderr.contains("check that the server runs"),
        "{}",
        refused.stderr
    );
    // prune's dry run too (before: exit 69, "cannot execute SELECT in a read-only transaction").
    for args in [
        &["status"][..],
        &["burst", "status"],
        &["discard", "a", "--all", "--dry-run"],
        &["items", "a"],
        &["prune", "--dry-run"],
    ] {
        fixture.drainctl(args).run().assert_code(0);
    }
    // The fix as the line gives it, in a new (read-only) session. Before, it said only
    // `ALTER DATABASE … RESET`, which such a session refuses.
    let mut admin = fixture.client();
    admin
        .batch_execute(&format!(
            "BEGIN READ WRITE; ALTER DATABASE {} RESET default_transaction_read_only; COMMIT",
            fixture.db.name
        ))
        .unwrap();
    fixture.drainctl(&["pause", "a"]).run().assert_code(0);
}

#[test]
fn a_server_that_takes_the_connection_and_never_answers_is_unavailable_not_a_hang() {
    // A listener that accepts and then says nothing, as a stopped server or pooler does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let fixture = Fixture::new(CONFIG, NOW);
    let url = format!("postgres://drainctl:Silent-pw-4@127.0.0.1:{port}/drainctl?connect_timeout=1");
    let started = Instant::now();
    let mut status = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &url).spawn();
    // Before: no output, no exit, until killed.
    while status.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            status.kill().unwrap();
            panic!("drainctl status still waits after {:?}", started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = finished(status.wait_with_output().unwrap());
    result.assert_code(69);
    assert!(
        result
            .stderr
            .contains("no connection completed within 2s: the server, or a pooler before it, did not answer"),
        "{}",
        result.stderr
    );
    assert!(!result.stderr.contains("Silent-pw-4"), "{}", result.stderr);
}

#[test]
fn timeouts_a_database_sets_for_its_sessions_do_not_cut_drainctls_short() {
    let fixture = Fixture::new(CONFIG, NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut admin = fixture.client();
    let db = fixture.db.name.clone();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} SET lock_timeout = '200ms'; \
             ALTER DATABASE {db} SET default_transaction_isolation = 'serializable'"
        ))
        .unwrap();
    // idle_session_timeout came with PostgreSQL 14.
    let version: i32 =
        admin.query_one("SELECT current_setting('server_version_num')::int", &[]).unwrap().get(0);
    let has_idle_session_timeout = version >= 140_000;
    if has_idle_session_timeout {
        admin.batch_execute(&format!("ALTER DATABASE {db} SET idle_session_timeout = '500ms'")).unwrap();
    }
    // An enqueue that waits for a lock another session holds waits, as it would without
    // the database's lock_timeout. Before: exit 75 after 200 ms, "canceling statement due
    // to lock timeout".
    let mut holder = fixture.client();
    holder.batch_execute("BEGIN; LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE").unwrap();
    let mut enqueue = fixture.drainctl(&["enqueue", "a", "--key", "k1", "--payload", "{}"]).spawn();
    wait_until("the enqueue to wait for the lock, or to end", Duration::from_secs(20), || {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = $1",
                &[&db],
            )
            .unwrap()
            .get(0);
        waiting > 0 || enqueue.try_wait().unwrap().is_some()
    });
    // Held five times the database's lock_timeout: the enqueue is still waiting.
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(1) && enqueue.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    holder.batch_execute("COMMIT").unwrap();
    let status = enqueue.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the enqueue waited for the lock and went on");
    // A worker that runs longer than the database's idle_session_timeout keeps its pass's
    // session (and the concurrency slot it holds). Before: "the database ended this
    // pass's session; reconnecting" after every such worker.
    fixture.enqueue(
        "a",
        &[("slow".into(), serde_json::json!({ "steps": [{ "sleep": 1.5 }, { "out": "ok" }] }))],
    );
    let pass = fixture.drainctl(&["-v", "drain", "a"]).run();
    pass.assert_code(0);
    assert!(!pass.stderr.contains("reconnect"), "{}", pass.stderr);
    assert_eq!(fixture.item("a", "slow").0, "done");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} RESET lock_timeout; ALTER DATABASE {db} RESET default_transaction_isolation{}",
            if has_idle_session_timeout { format!("; ALTER DATABASE {db} RESET idle_session_timeout") } else { String::new() }
        ))
        .unwrap();
}

/// The keepalive timer the kernel keeps for the TCP socket bound to `local_port` and
/// connected to `remote_port` (loopback, /proc/net/tcp and tcp6): the seconds until its
/// next probe, or None when no such socket has a keepalive timer armed.
fn keepalive_timer_seconds(local_port: u16, remote_port: u16) -> Option<f64> {
    let port_of =
        |address: &str| address.rsplit(':').next().and_then(|hex| u16::from_str_radix(hex, 16).ok());
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(table).ok()?;
        text.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, timer) = (fields.get(1)?, fields.get(2)?, fields.get(5)?);
            if port_of(local)? != local_port || port_of(remote)? != remote_port {
                return None;
            }
            // "02:00001770": timer 2 is keepalive; its expiry in clock ticks (USER_HZ, 100).
            let (kind, ticks) = timer.split_once(':')?;
            (kind == "02").then(|| u64::from_str_radix(ticks, 16).ok()).flatten().map(|t| t as f64 / 100.0)
        })
    })
}

#[test]
fn the_server_probes_a_drainctl_session_so_that_a_vanished_host_frees_its_slot() {
    let fixture = Fixture::new(CONFIG, NOW);
    let (started, go) = (fixture.path("started"), fixture.path("go"));
    let slow =
        serde_json::json!({ "steps": [{ "touch": started }, { "wait_for_file": go }, { "out": "r" }] });
    fixture.enqueue("a", &[("s".into(), slow)]);
    let pass = fixture.drainctl(&["drain", "a"]).spawn();
    wait_until("the worker to start", Duration::from_secs(20), || started.exists());
    // The pass's session, from the server's side of its TCP connection.
    let mut client = fixture.db.client();
    let row = client
        .query_one(
            "SELECT inet_server_port(), (SELECT client_port FROM pg_stat_activity
                                          WHERE application_name = 'drainctl' AND datname = current_database()
                                            AND pid <> pg_backend_pid())",
            &[],
        )
        .unwrap();
    let (server_port, client_port): (Option<i32>, Option<i32>) = (row.get(0), row.get(1));
    let (Some(server_port), Some(client_port)) = (server_port, client_port) else {
        std::fs::write(&go, "").unwrap();
        finished(pass.wait_with_output().unwrap()).assert_code(0);
        eprintln!("SKIPPED: the test database is reached over a Unix socket, where no keepalive applies");
        return;
    };
    let (server_port, client_port) = (server_port as u16, client_port as u16);
    // Idle while the worker runs, the session has its keepalive timer armed (a moment
    // after a write, the retransmission timer shows instead): the first probe within a
    // minute, where an ordinary session's comes after the system's two hours.
    wait_until("the keepalive timer of the pass's session", Duration::from_secs(10), || {
        keepalive_timer_seconds(server_port, client_port).is_some()
    });
    let probed = keepalive_timer_seconds(server_port, client_port);
    std::fs::write(&go, "").unwrap();
    finished(pass.wait_with_output().unwrap()).assert_code(0);
    assert!(probed.is_some_and(|seconds| seconds <= 60.0), "drainctl's session: {probed:?}");
}

/// A new login role `<prefix>_<database>` with no rights, its URL over TCP to the
/// fixture's database, and a superuser session to grant or drop with.
fn login_role(fixture: &Fixture, prefix: &str) -> (String, String, postgres::Client) {
    let (db, role) = (&fixture.db.name, format!("{prefix}_{}", fixture.db.name));
    let mut admin = postgres::Client::connect(&admin_url(), postgres::NoTls).unwrap();
    admin.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'Role-pw-9'")).unwrap();
    let port = fixture.db.url.parse::<postgres::Config>().unwrap().get_ports()[0];
    let url = format!("postgres://{role}:Role-pw-9@127.0.0.1:{port}/{db}");
    (role, url, admin)
}

#[test]
fn a_drain_supervise_started_that_cannot_connect_is_reported_not_counted_as_started() {
    let fixture = Fixture::new(CONFIG, NOW);
    let db = fixture.db.name.clone();
    let (role, url, mut admin) = login_role(&fixture, "lone");
    admin.batch_execute(&format!("ALTER DATABASE {db} OWNER TO {role}")).unwrap();
    fixture.drainctl(&["migrate"]).env("DRAINCTL_DATABASE_URL", &url).run().assert_code(0);
    fixture
        .drainctl(&["enqueue", "a", "--key", "k", "--payload", "{}"])
        .env("DRAINCTL_DATABASE_URL", &url)
        .run()
        .assert_code(0);
    // One session for the role: supervise's own. The drain it starts cannot connect.
    admin.batch_execute(&format!("ALTER ROLE {role} CONNECTION LIMIT 1")).unwrap();
    let result = fixture.drainctl(&["supervise"]).env("DRAINCTL_DATABASE_URL", &url).run();
    // Before: exit 0, "2 started, 0 errors", and only the drain's own log knew.
    result.assert_code(69);
    assert!(result.stderr.contains("drain a (pid "), "{}", result.stderr);
    assert!(
        result.stderr.contains("started by this pass ended without recording a run; its log "),
        "{}",
        result.stderr
    );
    assert!(result.stderr.contains("too many connections for role"), "{}", result.stderr);
    // Its table, and the pass's record, say which start failed and why (before: the table
    // showed it started; `passes` cut the reason at the log path, before "FAILED").
    let row = result.stdout.lines().find(|line| line.starts_with("a ")).unwrap_or_default();
    assert!(
        row.contains(" start ") && row.contains(" FAILED: ended without recording a run — "),
        "{}",
        result.stdout
    );
    admin.batch_execute(&format!("ALTER ROLE {role} CONNECTION LIMIT -1")).unwrap();
    let passes = fixture.drainctl(&["passes"]).env("DRAINCTL_DATABASE_URL", &url).run();
    passes.assert_code(0);
    assert!(passes.stdout.contains("0 started, 0 ended, 0 skipped, 1 error"), "{}", passes.stdout);
    let row = passes.stdout.lines().find(|line| line.starts_with("  a ")).unwrap_or_default();
    assert!(
        row.contains(" start ") && row.contains(" FAILED: ended without recording a run — "),
        "{}",
        passes.stdout
    );
    let recorded: Vec<String> = fixture.column(
        "SELECT message FROM events WHERE kind = 'supervise_error' AND drain = 'a' AND message LIKE '%without recording a run%'",
    );
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(fixture.item("a", "k").0, "pending");
    let mut owner = fixture.client();
    owner.batch_execute(&format!("REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}")).unwrap();
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();
}

#[test]
fn the_owner_of_its_database_needs_no_superuser_nor_any_grant() {
    let fixture = Fixture::new(CONFIG, NOW);
    let db = fixture.db.name.clone();
    let (role, over_tcp, mut admin) = login_role(&fixture, "owner");
    admin.batch_execute(&format!("ALTER DATABASE {db} OWNER TO {role}")).unwrap();
    let port = fixture.db.url.parse::<postgres::Config>().unwrap().get_ports()[0];
    let socket_folder: String = admin.query_one("SHOW unix_socket_directories", &[]).unwrap().get(0);
    let over_socket = format!("host={socket_folder} port={port} user={role} dbname={db}");
    for (round, url) in [over_tcp, over_socket].iter().enumerate() {
        let key = format!("k{round}");
        let steps: [&[&str]; 6] = [
            &["migrate"],
            &["enqueue", "a", "--key", &key, "--payload", "{}"],
            &["drain", "a"],
            &["supervise"],
            &["status"],
            &["doctor"],
        ];
        for args in steps {
            // Before, every command exited 69: "must be superuser or have privileges of
            // pg_read_all_settings to examine \"unix_socket_directories\"".
            let result = fixture.drainctl(args).env("DRAINCTL_DATABASE_URL", url).run();
            result.assert_code(0);
        }
        assert_eq!(fixture.item("a", &key).0, "done", "over {url}");
    }
    let mut owned = fixture.client();
    owned.batch_execute(&format!("REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}")).unwrap();
    admin.batch_execute(&format!("ALTER DATABASE {db} OWNER TO CURRENT_USER; DROP ROLE {role}")).unwrap();
}

#[test]
fn a_role_without_rights_is_told_what_to_grant_and_a_roles_statement_timeout_does_not_apply() {
    let fixture = Fixture::new(CONFIG, NOW);
    let db = fixture.db.name.clone();
    let (role, guest, mut admin) = login_role(&fixture, "guest");
    // Before: exit 70, "database error: permission denied for schema public" and nothing more.
    let result = fixture.drainctl(&["migrate"]).env("DRAINCTL_DATABASE_URL", &guest).run();
    result.assert_code(78);
    assert!(result.stderr.contains("permission denied for schema public"), "{}", result.stderr);
    // The table of applied migrations is created in the first migration's transaction:
    // the right it lacks is named, as for any migration.
    assert!(
        result.stderr.contains(&format!(
            "may not create in schema public; connect as the owner of the database, or GRANT CREATE ON SCHEMA public TO {role}"
        )),
        "{}",
        result.stderr
    );
    assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
    // A search_path naming no schema: 78, saying what to set (before: a bare 70).
    let nowhere = format!("{}?options=-c%20search_path%3Dnosuch", fixture.db.url);
    let result = fixture.drainctl(&["migrate"]).env("DRAINCTL_DATABASE_URL", &nowhere).run();
    result.assert_code(78);
    assert!(result.stderr.contains("search_path names no schema it can use"), "{}", result.stderr);
    // A statement_timeout on the database cuts no lock wait short: --lock-timeout holds.
    admin.batch_execute(&format!("ALTER DATABASE {db} SET statement_timeout = '200ms'")).unwrap();
    let _holder = hold_migration_lock(&fixture.db, "lock-holder");
    let result = fixture.drainctl(&["migrate", "--lock-timeout", "1s"]).run();
    // Before: exit 70 after 0.2 s, "canceling statement due to statement timeout".
    result.assert_code(75);
    assert!(result.stderr.contains("waiting for the migration lock"), "{}", result.stderr);
    drop(_holder);
    // Migrated by the owner, the role without rights is told by doctor what to grant, as
    // every command's error says (before: doctor repeated that error).
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &guest).run();
    result.assert_code(78);
    assert!(result.stderr.contains("`drainctl doctor` prints the GRANT"), "{}", result.stderr);
    let doctor = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &guest).run();
    doctor.assert_code(78);
    assert!(
        doctor.stdout.contains(&format!(
            "fail  schema: the applied migrations cannot be read: the role {role} lacks SELECT, INSERT, UPDATE, \
             DELETE on all of drainctl's tables"
        )) && doctor.stdout.contains(&format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")),
        "{}",
        doctor.stdout
    );
    // An option of the URL the server refuses at login: the URL is wrong, 78 saying so
    // (before: 69, "cannot connect", as if the server were down).
    for option in ["bogus%3D1", "work_mem%3Dabc"] {
        let refused = format!("{}?options=-c{option}", fixture.db.url);
        let result = fixture.drainctl(&["status"]).env("DRAINCTL_DATABASE_URL", &refused).run();
        result.assert_code(78);
        assert!(
            result.stderr.contains("the server refused a setting the URL gives it: "),
            "{}",
            result.stderr
        );
        assert!(result.stderr.contains("fix or remove it in the URL's options"), "{}", result.stderr);
    }
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();
}

#[test]
fn doctor_fails_when_the_role_cannot_apply_the_pending_migrations() {
    let fixture = Fixture::new(CONFIG, NOW);
    let (role, late, mut admin) = login_role(&fixture, "late");
    // Before: "warn schema: migration(s) … not applied yet", then `healthy`, exit 0 — and
    // every command after it exited 78 on the first migration.
    let result = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &late).run();
    result.assert_code(78);
    assert!(result.stdout.contains("fail  schema: migration(s) 0001_init"), "{}", result.stdout);
    assert!(
        result.stdout.contains(&format!("may not create in schema public; connect as the owner of the database, or GRANT CREATE ON SCHEMA public TO {role}")),
        "{}",
        result.stdout
    );
    // Allowed to create and to use drainctl's tables, but they are another role's: a
    // pending migration (a newer drainctl's) that alters them would fail just the same.
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let mut owned = fixture.client();
    let row = owned
        .query_one(
            "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations) \
             RETURNING version, current_user::text",
            &[],
        )
        .unwrap();
    let (latest, owner): (i32, String) = (row.get(0), row.get(1));
    owned
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        ))
        .unwrap();
    let advice = format!("drainctl's tables belong to the role {owner}, whose rights {role} lacks");
    // Without the right to create as well, the owner is named first: a migration alters
    // the tables, which a right to create would not allow (before: GRANT CREATE, which
    // then failed as "must be owner").
    let result = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &late).run();
    result.assert_code(78);
    assert!(result.stdout.contains(&advice) && !result.stdout.contains("GRANT CREATE"), "{}", result.stdout);
    owned.batch_execute(&format!("GRANT CREATE ON SCHEMA public TO {role}")).unwrap();
    let result = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &late).run();
    result.assert_code(78);
    assert!(result.stdout.contains(&advice), "{}", result.stdout);
    // Every other command says the same when the migration fails. Before: "grant the
    // role the right to create in its schema and to use drainctl's tables", which it had.
    for args in [&["migrate"][..], &["status"]] {
        let result = fixture.drainctl(args).env("DRAINCTL_DATABASE_URL", &late).run();
        result.assert_code(78);
        assert!(result.stderr.contains("must be owner of table"), "{}", result.stderr);
        assert!(result.stderr.contains(&advice), "{}", result.stderr);
        assert!(!result.stderr.contains("grant the role the right to create"), "{}", result.stderr);
        assert_eq!(result.stderr.lines().count(), 1, "{}", result.stderr);
    }
    // Given those rights, the same role is told only that a migration is pending.
    admin.batch_execute(&format!("GRANT {owner} TO {role}")).unwrap();
    let result = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &late).run();
    result.assert_code(0);
    assert!(result.stdout.contains(&format!("warn  schema: migration(s) {latest:04}_")), "{}", result.stdout);
    owned.batch_execute(&format!("REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}")).unwrap();
    admin.batch_execute(&format!("REVOKE {owner} FROM {role}; DROP ROLE {role}")).unwrap();
}

#[test]
fn doctor_fails_a_role_that_may_only_read_drainctls_tables() {
    let fixture = Fixture::new(CONFIG, NOW);
    fixture.drainctl(&["migrate"]).run().assert_code(0);
    let (role, reader, mut admin) = login_role(&fixture, "reader");
    let mut owned = fixture.client();
    owned.batch_execute(&format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")).unwrap();
    // Before: every check `ok`, "healthy", exit 0 — and every command that writes exited 78.
    let result = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &reader).run();
    result.assert_code(78);
    assert!(
        result.stdout.contains(&format!(
            "), but the role {role} lacks INSERT, UPDATE, DELETE on all of drainctl's tables: every command that writes would exit 78"
        )),
        "{}",
        result.stdout
    );
    assert!(result.stdout.contains("fail  schema: schema current (version "), "{}", result.stdout);
    assert!(result.stdout.contains(&format!("TO {role}")), "{}", result.stdout);
    let refused = fixture
        .drainctl(&["enqueue", "a", "--key", "k", "--payload", "{}"])
        .env("DRAINCTL_DATABASE_URL", &reader)
        .run();
    refused.assert_code(78);
    // Told what to grant (before: "the right to create in its schema", which is no fix).
    assert!(
        refused.stderr.contains(
            "database error: permission denied for table drains: the database role lacks a privilege drainctl needs; connect as the \
             tables' owner, or grant the role SELECT, INSERT, UPDATE and DELETE on drainctl's tables (`drainctl \
             doctor` prints the GRANT)"
        ),
        "{}",
        refused.stderr
    );
    // A dry run reads only (before: exit 78, "permission denied for table attempts").
    let dry = fixture.drainctl(&["prune", "--dry-run"]).env("DRAINCTL_DATABASE_URL", &reader).run();
    dry.assert_code(0);
    // supervise says it in one line, without promising that the next pass will do better
    // (before: two lines, the second "the next pass tries again").
    let pass = fixture.drainctl(&["supervise"]).env("DRAINCTL_DATABASE_URL", &reader).run();
    pass.assert_code(78);
    assert_eq!(pass.stderr.lines().count(), 1, "{}", pass.stderr);
    assert!(
        pass.stderr.contains("the pass decided nothing, and no pass can until that is fixed")
            && pass.stderr.contains("no supervise_error event could be recorded either (database error: permission denied for table"),
        "{}",
        pass.stderr
    );
    // Only what it lacks is named: a grant of all but DELETE on events.
    owned
        .batch_execute(&format!(
            "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; REVOKE DELETE ON events FROM {role}"
        ))
        .unwrap();
    let result = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &reader).run();
    result.assert_code(78);
    assert!(result.stdout.contains(&format!("the role {role} lacks DELETE on events:")), "{}", result.stdout);
    owned.batch_execute(&format!("GRANT DELETE ON events TO {role}")).unwrap();
    fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &reader).run().assert_code(0);
    owned.batch_execute(&format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")).unwrap();
    admin.batch_execute(&format!("DROP ROLE {role}")).unwrap();
}

#[test]
fn a_lock_holder_of_another_role_is_named_by_its_role_and_the_hidden_rest_said_so() {
    let fixture = Fixture::new(CONFIG, NOW);
    let (role, guest, mut admin) = login_role(&fixture, "peer");
    let db = fixture.db.name.clone();
    admin.batch_execute(&format!("ALTER DATABASE {db} OWNER TO {role}")).unwrap();
    let mut holder = hold_migration_lock(&fixture.db, "nightly-backup");
    let holder_role: String = holder.query_one("SELECT current_user::text", &[]).unwrap().get(0);
    let result =
        fixture.drainctl(&["migrate", "--lock-timeout", "1s"]).env("DRAINCTL_DATABASE_URL", &guest).run();
    result.assert_code(75);
    // Before: "(nightly-backup from ?, connected ?, ?)", the role left out.
    assert!(
        result.stderr.contains(&format!(
            "(nightly-backup of role {holder_role}; its address, start and state are shown only to that role"
        )),
        "{}",
        result.stderr
    );
    // Its own role's holder is described in full.
    let result = fixture.drainctl(&["migrate", "--lock-timeout", "1s"]).run();
    result.assert_code(75);
    assert!(
        result.stderr.contains(&format!("(nightly-backup of role {holder_role} from ")),
        "{}",
        result.stderr
    );
    drop(holder);
    admin.batch_execute(&format!("ALTER DATABASE {db} OWNER TO CURRENT_USER; DROP ROLE {role}")).unwrap();
}

#[test]
fn doctor_on_a_read_only_database_does_not_promise_that_a_command_applies_the_migrations() {
    let fixture = Fixture::new(CONFIG, NOW);
    let db = fixture.db.name.clone();
    let (role, url, mut admin) = login_role(&fixture, "ro");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {db} OWNER TO {role}; ALTER ROLE {role} SET default_transaction_read_only = on"
        ))
        .unwrap();
    // Before: "warn schema: … `drainctl migrate` (or any other command) applies them",
    // which none could.
    let doctor = fixture.drainctl(&["doctor"]).env("DRAINCTL_DATABASE_URL", &url).run();
    doctor.assert_code(69);
    assert!(doctor.stdout.contains("fail  database: the database is read-only"), "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains("fail  schema: migration(s) 0001_init")
            && doctor
                .stdout
                .contains("not applied yet, and no command can apply them while the database is read-only"),
        "{}",
        doctor.stdout
    );
    let migrate = fixture.drainctl(&["migrate"]).env("DRAINCTL_DATABASE_URL", &url).run();
    migrate.assert_code(69);
    assert!(migrate.stderr.contains("the database is read-only"), "{}", migrate.stderr);
    admin.batch_execute(&format!("ALTER DATABASE {db} OWNER TO CURRENT_USER; DROP ROLE {role}")).unwrap();
}
