//! Test support: a throwaway database per test (dropped on `Drop`), a fixture with a
//! config file and an injectable clock, and a small builder around the real binary.

#![allow(dead_code)]

pub mod windowed;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const DRAINCTL: &str = env!("CARGO_BIN_EXE_drainctl");
pub const FAKE_WORKER: &str = env!("CARGO_BIN_EXE_drainctl-fake-worker");

/// The superuser URL of the throwaway cluster `./scripts/test` starts.
pub fn admin_url() -> String {
    std::env::var("DRAINCTL_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("DRAINCTL_TEST_DATABASE_URL is not set: run the tests with ./scripts/test, which starts a throwaway PostgreSQL")
    })
}

pub fn url_with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL has a database part");
    format!("{base}/{database}")
}

/// A fresh, empty database that is dropped when the value goes out of scope.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    pub fn new() -> TestDb {
        let admin = admin_url();
        let name = format!(
            "drainctl_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        );
        let mut client =
            postgres::Client::connect(&admin, postgres::NoTls).expect("connect to the test cluster");
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create test database");
        let url = url_with_database(&admin, &name);
        TestDb { name, url, admin }
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }

    /// The password of the test cluster's URL (to prove it is never printed).
    pub fn password(&self) -> String {
        let config: postgres::Config = self.url.parse().unwrap();
        String::from_utf8(config.get_password().unwrap().to_vec()).unwrap()
    }

    /// Let sessions into the database, or refuse every new one (those open stay): a
    /// server that is down for new sessions, as during a restart, for this database only.
    pub fn allow_connections(&self, allow: bool) {
        let mut client = postgres::Client::connect(&self.admin, postgres::NoTls).expect("connect as admin");
        client
            .batch_execute(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}", self.name))
            .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// A database, a folder with `drainctl.toml`, and a clock file.
pub struct Fixture {
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub clock_path: PathBuf,
}

impl Fixture {
    /// A fixture whose config is `config` (TOML); the clock starts at `now` (RFC 3339).
    pub fn new(config: &str, now: &str) -> Fixture {
        let db = TestDb::new();
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("drainctl.toml");
        let clock_path = dir.path().join("now");
        let fixture = Fixture { db, dir, config_path, clock_path };
        fixture.write_config(config);
        fixture.set_now(now);
        fixture
    }

    /// Write `text` to `name` in the fixture's folder as an owner-only executable (a
    /// worker script); its path.
    pub fn script(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    pub fn write_config(&self, config: &str) {
        let text = config
            .replace("FAKE_WORKER", FAKE_WORKER)
            .replace("TMPDIR", &self.dir.path().display().to_string());
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// [`Fixture::write_config`], the file dated as written two seconds ago: a running pass
    /// reads a changed file again only once it has settled (docs/configuration.md,
    /// "Changing the configuration while drains run"), and this one has.
    pub fn write_config_settled(&self, config: &str) {
        self.write_config(config);
        let written = std::time::SystemTime::now() - Duration::from_secs(2);
        std::fs::File::options().write(true).open(&self.config_path).unwrap().set_modified(written).unwrap();
    }

    pub fn set_now(&self, now: &str) {
        std::fs::write(&self.clock_path, now).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `drainctl ARGS` with this fixture's config, database and clock.
    pub fn drainctl(&self, args: &[&str]) -> Drainctl {
        self.with_env(Drainctl::new(args))
    }

    /// `drainctl ARGS` run as another host named `host`: in its own UTS namespace (and,
    /// with `own_pids`, its own PID namespace, so that its pids mean nothing here).
    pub fn drainctl_on_host(&self, host: &str, own_pids: bool, args: &[&str]) -> Drainctl {
        let mut all: Vec<&str> = vec!["--uts"];
        if own_pids {
            all.extend(["--pid", "--fork", "--kill-child", "--mount-proc"]);
        }
        all.extend(["sh", "-c", "hostname \"$1\" && shift && exec \"$@\"", "sh", host, DRAINCTL]);
        all.extend_from_slice(args);
        self.with_env(Drainctl::program("unshare", &all))
    }

    pub fn with_env(&self, command: Drainctl) -> Drainctl {
        command
            .env("DRAINCTL_CONFIG", self.config_path.to_str().unwrap())
            .env("DRAINCTL_DATABASE_URL", &self.db.url)
            .env("DRAINCTL_NOW", &format!("@{}", self.clock_path.display()))
            .env("XDG_STATE_HOME", self.dir.path().join("state").to_str().unwrap())
    }

    pub fn client(&self) -> postgres::Client {
        self.db.client()
    }
}

/// A command line for the real binary.
pub struct Drainctl {
    command: Command,
    stdin: Option<Vec<u8>>,
}

/// What a finished command did.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Finished {
        assert_eq!(
            self.code, code,
            "exit code {} (wanted {code})\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        match serde_json::from_str(&self.stdout) {
            Ok(value) => value,
            Err(e) => panic!("stdout is not JSON ({e}): {}", self.stdout),
        }
    }
}

impl Drainctl {
    pub fn new(args: &[&str]) -> Drainctl {
        Drainctl::program(DRAINCTL, args)
    }

    /// `program ARGS` with the environment of a drainctl command (for a wrapper such as
    /// `unshare` that runs drainctl).
    pub fn program(program: &str, args: &[&str]) -> Drainctl {
        let mut command = Command::new(program);
        command.args(args);
        for var in [
            "DATABASE_URL",
            "DRAINCTL_DATABASE_URL",
            "DRAINCTL_CONFIG",
            "DRAINCTL_NOW",
            "DRAINCTL_FAULT",
            "RUST_LOG",
            // Tables are as wide as `COLUMNS` says: the tests read them at their default.
            "COLUMNS",
        ] {
            command.env_remove(var);
        }
        command.env("TZ", "UTC");
        Drainctl { command, stdin: None }
    }

    pub fn env(mut self, key: &str, value: &str) -> Drainctl {
        self.command.env(key, value);
        self
    }

    /// One more argument, which need not be UTF-8.
    pub fn arg_os(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Drainctl {
        self.command.arg(arg);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Drainctl {
        self.command.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Drainctl {
        self.command.current_dir(dir);
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Drainctl {
        self.stdin = Some(bytes.into());
        self
    }

    /// Run with stderr going to `stderr` (such as `/dev/full`); the exit code.
    pub fn code_with_stderr_to(mut self, stderr: std::fs::File) -> Option<i32> {
        self.command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        self.command.status().expect("run drainctl").code()
    }

    /// Run with stdout going to `stdout` (a file), of which the process may write only
    /// the first `max_bytes` bytes (see [`Drainctl::with_file_size_limit`]): the write that
    /// crosses the limit writes what fits, the next fails with EFBIG, as on a full disk.
    pub fn run_with_stdout_limited_to(self, stdout: std::fs::File, max_bytes: u64) -> Finished {
        let mut limited = self.with_file_size_limit(max_bytes);
        limited.command.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
        finished(limited.command.output().expect("run drainctl"))
    }

    /// Run with every file the process writes limited to `max_bytes`: a write beyond fails
    /// with EFBIG, as on a full disk.
    pub fn run_with_file_size_limit(self, max_bytes: u64) -> Finished {
        self.with_file_size_limit(max_bytes).run()
    }

    /// Every file the process writes limited to `max_bytes` (RLIMIT_FSIZE, with SIGXFSZ
    /// ignored, so that a write beyond fails instead of killing it).
    fn with_file_size_limit(mut self, max_bytes: u64) -> Drainctl {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit and signal are async-signal-safe; nothing is allocated.
        unsafe {
            self.command.pre_exec(move || {
                let limit = libc::rlimit { rlim_cur: max_bytes, rlim_max: max_bytes };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        self
    }

    pub fn spawn(mut self) -> std::process::Child {
        self.command.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        self.command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.command.spawn().expect("spawn drainctl");
        if let Some(bytes) = self.stdin.take() {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        child
    }

    /// Start drainctl with its stdin a pipe the caller writes to and closes.
    pub fn spawn_with_open_stdin(mut self) -> std::process::Child {
        self.command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        self.command.spawn().expect("spawn drainctl")
    }

    /// Run with stdin a terminal (a pseudo-terminal) on which `typed` is typed: a line
    /// ends at `\n`, and Ctrl-D (`\x04`) at a line's start ends the input.
    pub fn run_with_terminal_stdin(mut self, typed: &[u8]) -> Finished {
        let (master, terminal) = pseudo_terminal();
        self.command.stdin(terminal).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = self.command.spawn().expect("spawn drainctl");
        // The terminal echoes what is typed: read the echo so that it never fills up.
        let mut echo = master.try_clone().unwrap();
        std::thread::spawn(move || std::io::copy(&mut echo, &mut std::io::sink()));
        (&master).write_all(typed).unwrap();
        let output = child.wait_with_output().expect("wait for drainctl");
        drop(master);
        finished(output)
    }

    /// Run as a command typed in a terminal: in a session whose controlling terminal (a
    /// pseudo-terminal) is its stdin, as a shell's job is.
    pub fn run_in_a_terminal_session(mut self) -> Finished {
        use std::os::fd::AsRawFd as _;
        use std::os::unix::process::CommandExt as _;
        let (master, terminal) = pseudo_terminal();
        let fd = terminal.as_raw_fd();
        // SAFETY: setsid and ioctl are async-signal-safe; the descriptor stays open in the
        // child until exec (it is its stdin too).
        unsafe {
            self.command.pre_exec(move || {
                if libc::setsid() == -1 || libc::ioctl(fd, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.command.stdin(terminal).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = self.command.spawn().expect("spawn drainctl");
        let output = child.wait_with_output().expect("wait for drainctl");
        drop(master);
        finished(output)
    }

    /// Run with stdout a terminal (a pseudo-terminal): what drainctl printed there is
    /// `stdout`, each line end as the terminal sends it (`\r\n`).
    pub fn run_with_terminal_stdout(mut self) -> Finished {
        let (mut master, terminal) = pseudo_terminal();
        self.command.stdin(Stdio::null()).stdout(terminal).stderr(Stdio::piped());
        let child = self.command.spawn().expect("spawn drainctl");
        // Once the process has closed the terminal, reading it fails (EIO): its end.
        let shown = std::thread::spawn(move || {
            let mut shown = Vec::new();
            let _ = std::io::Read::read_to_end(&mut master, &mut shown);
            shown
        });
        // The command's copy of the terminal is closed once it is spawned.
        self.command.stdout(Stdio::null());
        let mut output = child.wait_with_output().expect("wait for drainctl");
        output.stdout = shown.join().unwrap();
        finished(output)
    }

    /// Run with stdin read from `file` (a shell's `< FILE`), not a pipe.
    pub fn run_with_stdin_from(mut self, file: std::fs::File) -> Finished {
        self.command.stdin(file).stdout(Stdio::piped()).stderr(Stdio::piped());
        finished(self.command.output().expect("run drainctl"))
    }

    pub fn run(self) -> Finished {
        let child = self.spawn();
        finished(child.wait_with_output().expect("wait for drainctl"))
    }
}

/// A new pseudo-terminal: its master side, and the terminal a process is given.
fn pseudo_terminal() -> (std::fs::File, std::fs::File) {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: posix_openpt returns a new descriptor we own; grantpt, unlockpt and
    // ptsname_r only read it and write into the buffer we pass.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = std::fs::File::from(OwnedFd::from_raw_fd(master));
        let fd = std::os::fd::AsRawFd::as_raw_fd(&master);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_string();
        (master, std::fs::OpenOptions::new().read(true).write(true).open(name).unwrap())
    }
}

pub fn finished(output: Output) -> Finished {
    Finished {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The pid of a fake worker that logged its start to `log` (its `{"log": PATH}` step).
#[track_caller]
pub fn logged_pid(log: &Path) -> u32 {
    let logged = std::fs::read_to_string(log).unwrap();
    logged.split_whitespace().find_map(|word| word.strip_prefix("pid=")).unwrap().parse().unwrap()
}

/// A line of a worker script: wait until its last background child (`$!`) has left the
/// script's process group (`setsid` done), so that it is outside the group when the
/// worker ends.
pub const UNTIL_CHILD_LEFT_GROUP: &str =
    "while [ \"$(cut -d ' ' -f 5 /proc/$!/stat)\" = \"$(cut -d ' ' -f 5 /proc/$$/stat)\" ]; do sleep 0.01; done\n";

/// Wait until process `pid` is gone and reaped (no `/proc` entry, not even a zombie).
#[track_caller]
pub fn wait_until_gone(what: &str, pid: u32) {
    let entry = Path::new("/proc").join(pid.to_string());
    wait_until(&format!("{what} (pid {pid}) to be gone"), Duration::from_secs(20), || !entry.exists());
}

/// Poll `condition` every 20 ms until it holds; panic with `what` after `limit`.
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A one-value query on a test database.
#[track_caller]
pub fn query_i64(client: &mut postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get::<_, i64>(0)
}

/// Is process `pid` alive (and not a zombie)?
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false)
        }
        Err(_) => false,
    }
}

/// The live (not zombie) processes whose `/proc/PID/stat` field `field` (5: process group,
/// 6: session) is `id`.
pub fn live_processes_with(field: usize, id: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let matches = fields.get(field - 3)?.parse::<i32>().ok()? == id && fields.first()? != &"Z";
            matches.then_some(pid)
        })
        .collect()
}

impl Fixture {
    /// Enqueue items (key, payload) through the real binary.
    #[track_caller]
    pub fn enqueue(&self, drain: &str, items: &[(String, serde_json::Value)]) {
        let lines: String = items
            .iter()
            .map(|(key, payload)| format!("{}\n", serde_json::json!({ "key": key, "payload": payload })))
            .collect();
        self.drainctl(&["enqueue", drain]).stdin(lines).run().assert_code(0);
    }

    /// (state, attempts, last_error) of one item.
    #[track_caller]
    pub fn item(&self, drain: &str, key: &str) -> (String, i32, Option<String>) {
        let row = self
            .client()
            .query_one(
                "SELECT state, attempts, last_error FROM items WHERE drain = $1 AND key = $2",
                &[&drain, &key],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }

    /// The first column of every row `sql` returns.
    #[track_caller]
    pub fn column<T: postgres::types::FromSqlOwned>(&self, sql: &str) -> Vec<T> {
        self.client().query(sql, &[]).unwrap().iter().map(|row| row.get(0)).collect()
    }

    /// Until when quota group `group` backs off, as `YYYY-MM-DDTHH:MM:SSZ`.
    #[track_caller]
    pub fn backoff_until(&self, group: &str) -> String {
        self.client()
            .query_one(
                "SELECT to_char(backoff_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                   FROM quota_backoffs WHERE quota_group = $1",
                &[&group],
            )
            .unwrap()
            .get(0)
    }

    #[track_caller]
    pub fn count(&self, sql: &str) -> i64 {
        query_i64(&mut self.client(), sql)
    }

    /// Items of `drain` (the one with `key`, or all) held by a `running` run of another
    /// host, as if a pass elsewhere had claimed them; that run's id.
    #[track_caller]
    pub fn hold_by_a_running_run(&self, drain: &str, key: Option<&str>) -> i64 {
        let mut client = self.client();
        let run: i64 = client
            .query_one(
                "INSERT INTO runs (drain, status, trigger, host, pid, started_at, last_checkpoint_at)
                 VALUES ($1, 'running', 'manual', 'elsewhere', 1, now(), now()) RETURNING id",
                &[&drain],
            )
            .unwrap()
            .get(0);
        client
            .execute(
                "UPDATE items SET state = 'running', claimed_by = $1, claimed_at = now()
                  WHERE drain = $2 AND ($3::text IS NULL OR key = $3)",
                &[&run, &drain, &key],
            )
            .unwrap();
        run
    }

    /// End every drainctl session of the fixture's database from the server side, as a
    /// restart, a failover or `pg_terminate_backend` does; wait until they are gone and
    /// return how many there were.
    #[track_caller]
    /// A `supervise` pass whose session ends in its daily prune (a failover): an event old
    /// enough for any retention, whose removal waits, and the drainctl sessions ended then.
    /// The pass as it ended; the wait is gone again.
    pub fn supervise_whose_session_ends_in_its_prune(&self) -> Finished {
        self.client()
            .batch_execute(
                "INSERT INTO events (at, kind, message) VALUES (now() - interval '400 days', 'old_event', 'old');
                 CREATE FUNCTION slow_delete() RETURNS trigger LANGUAGE plpgsql
                     AS $$ BEGIN PERFORM pg_sleep(20); RETURN OLD; END $$;
                 CREATE TRIGGER slow_events BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION slow_delete();",
            )
            .unwrap();
        let pass = self.drainctl(&["supervise"]).spawn();
        wait_until("the prune to remove the old event", Duration::from_secs(20), || {
            self.count(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'PgSleep'",
            ) == 1
        });
        self.end_drainctl_sessions();
        let ended = finished(pass.wait_with_output().unwrap());
        self.client().batch_execute("DROP TRIGGER slow_events ON events").unwrap();
        ended
    }

    pub fn end_drainctl_sessions(&self) -> usize {
        let ended: Vec<i32> = self.column(
            "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'drainctl'",
        );
        // Apart from the selection: in one query the planner may call the function on
        // rows of other databases before it filters them out.
        self.client()
            .execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int4[]) AS pid", &[&ended])
            .unwrap();
        // Those sessions: a new one the pass opens at once is not waited for.
        wait_until("the sessions to end", Duration::from_secs(10), || {
            self.client()
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", &[&ended])
                .map(|row| row.get::<_, i64>(0) == 0)
                .unwrap_or(false)
        });
        ended.len()
    }
}

/// Wait for a child and return what it did plus its peak resident memory in KiB.
pub fn wait_with_peak_memory(mut child: std::process::Child) -> (Finished, i64) {
    use std::io::Read;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    let finished = Finished {
        code,
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    };
    (finished, usage.ru_maxrss)
}

/// Whether this machine lets the tests run a command as another host (UTS and PID
/// namespaces, which need root or user namespaces).
pub fn can_use_another_host() -> bool {
    Command::new("unshare")
        .args(["--uts", "--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// The one run there is, still running: its drain is stopped (SIGTERM) and waited for.
pub fn stop_the_only_run(fixture: &Fixture) {
    assert_eq!(fixture.column::<String>("SELECT status FROM runs"), ["running"]);
    let pid: i32 = fixture.client().query_one("SELECT pid FROM runs", &[]).unwrap().get(0);
    signal(pid as u32, libc::SIGTERM);
    wait_until("the drain to stop", Duration::from_secs(20), || !pid_alive(pid));
}

/// Send a signal to a process.
pub fn signal(pid: u32, signal: i32) {
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

impl Drainctl {
    /// Run without the capabilities that let root ignore permission bits
    /// (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a test run as root sees the same
    /// "Permission denied" as anyone else. A no-op for other users.
    pub fn without_permission_override(mut self) -> Drainctl {
        use std::os::unix::process::CommandExt;
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        const DAC_OVERRIDE: u32 = 1;
        const DAC_READ_SEARCH: u32 = 2;
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            self.command.pre_exec(|| {
                if libc::geteuid() != 0 {
                    return Ok(());
                }
                for capability in [DAC_OVERRIDE, DAC_READ_SEARCH] {
                    // Out of the bounding set, or exec as root would give it back.
                    if libc::prctl(libc::PR_CAPBSET_DROP, capability as libc::c_ulong, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                let mut header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
                let mut data = [CapData::default(); 2];
                if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let keep = !((1 << DAC_OVERRIDE) | (1 << DAC_READ_SEARCH));
                data[0].effective &= keep;
                data[0].permitted &= keep;
                data[0].inheritable &= keep;
                if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }
}

impl Drainctl {
    /// Start drainctl with descriptor `fd` open (the read end of a pipe, not
    /// close-on-exec), as pm2 or a shell may leave one open in what it starts.
    pub fn with_inherited_descriptor(mut self, fd: i32) -> Drainctl {
        use std::os::unix::process::CommandExt;
        let mut ends = [0; 2];
        // SAFETY: a pipe whose two ends this process owns, both close-on-exec; the child
        // gets a copy of the read end at `fd` (dup2 clears close-on-exec on the copy).
        unsafe {
            assert_eq!(libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC), 0);
            self.command.pre_exec(move || {
                if libc::dup2(ends[0], fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }
}

impl Fixture {
    /// Run `command` into a deadlock it must lose, and what it did. Another session takes
    /// the row locks of `first_lock` (SQL), then — once the command waits for one of them —
    /// those of `second_lock`, which the command already holds. The command's session
    /// checks for the deadlock first (its `deadlock_timeout` is 2s, the other session's an
    /// hour), so the server ends the command's statement, not the other session's; the
    /// other session then commits.
    #[track_caller]
    pub fn lose_a_deadlock(&self, first_lock: &str, command: Drainctl, second_lock: &str) -> Finished {
        let mut admin = self.client();
        admin.batch_execute(&format!("ALTER DATABASE {} SET deadlock_timeout = '2s'", self.db.name)).unwrap();
        let mut other = self.client();
        other.batch_execute("SET deadlock_timeout = '1h'; BEGIN").unwrap();
        other.batch_execute(first_lock).unwrap();
        let child = command.spawn();
        wait_until("the command to wait for a row lock", Duration::from_secs(20), || {
            query_i64(
                &mut admin,
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name = 'drainctl'
                    AND wait_event_type = 'Lock'",
            ) > 0
        });
        // Waits until the server ended the command's side of the deadlock.
        other.batch_execute(second_lock).unwrap();
        other.batch_execute("COMMIT").unwrap();
        finished(child.wait_with_output().expect("wait for drainctl"))
    }
}

/// Make a named pipe at `path` with `mode` (a path the test owns).
pub fn make_fifo(path: &std::path::Path, mode: libc::mode_t) {
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path the test owns.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), mode) }, 0, "mkfifo {}", path.display());
}
