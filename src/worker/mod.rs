//! Workers: spawning and watching one worker for one item — the process side of the
//! worker contract (docs/worker-contract.md). [`process`] tells whether a recorded pid is
//! still the same process on this host and ends whole process groups; [`signals`] turns
//! drainctl's own termination signals into a flag the passes poll.
//!
//! The worker command is started directly (never through a shell) in its own process
//! group, so that stopping it also stops everything it started. Everything else happens
//! in the calling thread around one `poll`: the item's payload is written to the worker's
//! stdin as the pipe takes it, then stdin is closed (a worker that never reads stdin does
//! not block us); stdout and stderr are read as they come, split into lines, checkpoint
//! lines counted and resume tokens picked out on both streams, and the result (stdout, up
//! to a cap) and bounded tails kept. The item timeout, the output cap and the caller's
//! stop request are enforced by sending SIGTERM to the group and SIGKILL after a grace
//! period. The worker's exit is noticed (through a pidfd) without reaping it, so that
//! whatever is left of its group can be killed while the group id is still certainly ours
//! (leftovers holding the pipes open cannot hang us); then the worker is reaped and the
//! remaining output drained. No helper thread is started, memory stays bounded whatever
//! the worker prints, and output that is not UTF-8 is kept as bytes.

pub(crate) mod orphans;
pub(crate) mod process;
pub(crate) mod program;
pub(crate) mod signals;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How much of the end of stdout is kept in `WorkerReport::stdout_tail`.
pub const STDOUT_TAIL_BYTES: usize = 64 * 1024;
/// How much of the end of each stream the outcome and the error line are read from, at
/// least: a small `stderr_tail_bytes` bounds what is recorded, not what is read.
const READ_TAIL_BYTES: usize = 64 * 1024;
/// The clock is read for arriving output at most this often: when the last output came
/// is known to this much.
const OUTPUT_CLOCK_INTERVAL: Duration = Duration::from_millis(100);
/// A line longer than this is cut: its first bytes are matched, the rest is skipped.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Size of one read from a worker's pipe.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Longest wait for an event before re-checking deadlines.
const LOOP_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the observer is asked whether to stop (the contract promises 200 ms).
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// When the observer is first asked [`WorkerObserver::should_stop`] after the start: a
/// worker that is done sooner is never looked at while it runs.
pub const WORKER_FIRST_LOOK: Duration = Duration::from_millis(2);
/// Without a pidfd, how often the worker's exit is checked for.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// After the worker exited and its group was killed, how long output still in flight is
/// awaited. Only a descendant that left the group can keep a pipe open that long.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// After the worker exited on its own, how long what is left of its group (a `tee`, a
/// shell's process substitution) may go without writing into its stdout and stderr
/// before it is killed: the output a helper was passing on is part of the result
/// (docs/worker-contract.md). It ends as soon as both pipes are closed, and at the item's
/// timeout, which a helper still writing then meets as the worker would.
const LEFTOVER_OUTPUT_WAIT: Duration = Duration::from_secs(2);
/// A worker that failed by itself keeps no answer: what it left holding its output gets
/// at most this long after its exit to pass its last words on, however it keeps writing.
const FAILED_WORKER_LEFTOVER_WAIT: Duration = Duration::from_secs(10);
/// A client announcing a wait longer than this (or longer than what is left of the item
/// timeout) for its own retry is stopped at once: waiting is the drain's job
/// (docs/rate-limits.md, "Clients that wait for the reset").
pub const MAX_CLIENT_WAIT: Duration = Duration::from_secs(60);

/// The longest announced wait a client is left to sit through: [`MAX_CLIENT_WAIT`], or
/// the item's `time_left` when that is shorter (docs/rate-limits.md, "Clients that wait
/// for the reset").
pub(crate) fn client_wait_limit(time_left: Option<Duration>) -> Duration {
    time_left.map_or(MAX_CLIENT_WAIT, |left| left.min(MAX_CLIENT_WAIT))
}

/// How many lines of the same stream before a line the announced-wait reader sees with
/// it: a retry notice counts only when it or the lines just before it name a limit.
pub const CLIENT_WAIT_CONTEXT_LINES: usize = 3;

/// What to run for one item, and the limits that apply to it.
pub struct WorkerSpec<'a> {
    /// The command: `argv[0]` is the program (looked up on PATH), never a shell string.
    pub argv: &'a [String],
    /// Working directory of the worker; the current one when `None`.
    pub workdir: Option<&'a Path>,
    /// Variables added to the inherited environment.
    pub env: &'a [(String, String)],
    /// Variables removed from the inherited environment (before `env` is added, so `env`
    /// can set one of them again).
    pub env_remove: &'a [&'a str],
    /// Written to the worker's stdin, which is then closed.
    pub payload: &'a [u8],
    /// After this the group gets SIGTERM, then SIGKILL after `kill_grace`.
    pub item_timeout: Duration,
    /// Time between SIGTERM and SIGKILL whenever the worker is stopped.
    pub kill_grace: Duration,
    /// Largest accepted result (stdout); over it the worker is stopped. `None`: stdout is
    /// not a result, only its tail is kept, however much is printed (a notifier's).
    pub result_cap_bytes: Option<usize>,
    /// How much of the end of stderr is kept.
    pub stderr_tail_bytes: usize,
    /// Lines (either stream, lossy UTF-8) matching this are checkpoints.
    pub checkpoint_pattern: Option<&'a regex::Regex>,
    /// Lines (either stream, lossy UTF-8) matching this carry a resume token in the
    /// pattern's first capture group.
    pub resume_pattern: Option<&'a regex::Regex>,
    /// With what the worker was given (its payload and arguments, which a client may
    /// echo): read the waits the client announces before retrying by itself
    /// ([`crate::quota::StreamWaits`]); a wait beyond [`MAX_CLIENT_WAIT`] or the item
    /// timeout stops the worker with [`StopReason::ClientWaits`].
    pub announced_waits_given: Option<&'a [u8]>,
    /// How long output is still awaited once the worker exited.
    pub output_drain: OutputDrain,
    /// A session of its own, without a controlling terminal, instead of a process group
    /// in this process's session (see [`wants_a_session_of_its_own`]).
    pub session_of_its_own: bool,
}

/// Whether a worker (or a notifier) started by this process gets a session of its own:
/// when this process has a controlling terminal (run by hand in one). A worker there
/// would share the terminal from a background group: one that read it (`sudo` asking for
/// a password) was stopped by SIGTTIN until its timeout. Without a terminal (a pass
/// `supervise` started, cron) a worker stays in this process's session, where the reaper
/// of a crashed pass finds one it had not recorded yet (docs/worker-contract.md).
/// Asked once a process: a pass's terminal does not come or go.
pub fn wants_a_session_of_its_own() -> bool {
    static HAS_A_TERMINAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS_A_TERMINAL.get_or_init(|| std::fs::File::open("/dev/tty").is_ok())
}

/// After the worker exited and its group was killed, how long output still in flight is
/// awaited: only a descendant that left the group can keep a pipe open past the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputDrain {
    /// Up to [`OUTPUT_DRAIN_LIMIT`] after the exit, even past `item_timeout` (a worker:
    /// the end of its result is worth the wait).
    AfterExit,
    /// As `AfterExit`, but never past `item_timeout` after the start, so that the whole
    /// call takes no longer than its timeout (the notifier: docs/configuration.md,
    /// "Notifications").
    WithinTimeout,
}

/// What the caller hears while a worker runs.
pub trait WorkerObserver {
    /// Called once, right after spawn, with the worker's pid (= its process group id),
    /// once the payload (all of it when it fits the pipe) has been written to its stdin.
    fn started(&mut self, pid: u32);
    /// Called for every line (either stream) matching the checkpoint pattern.
    fn checkpoint(&mut self, line: &str);
    /// Called, as the line arrives, with the token of every line matching the resume
    /// pattern (unchecked: it is worker output).
    fn resume_token(&mut self, _token: &str) {}
    /// Polled at least every 200 ms; true = stop the worker now.
    fn should_stop(&mut self) -> bool;
    /// Asked once the worker ended by itself (`exit`, seen at `exited_at`): whether the
    /// stop the caller heard ended it too — the same stop reaching the worker first — so
    /// that its end is read as stopped, not as its own.
    fn stopped_with_the_worker(&mut self, _exit: WorkerExit, _exited_at: Instant) -> bool {
        false
    }
    /// The time now, by the clock the outcome is judged by: read when output arrives.
    fn now(&mut self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// How the worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// Exited with this code. `Code(-1)` means the status could not be collected.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// Why drainctl stopped the worker, when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The item timeout passed.
    TimedOut,
    /// Stdout grew past the result cap.
    OutputCapExceeded,
    /// The observer asked to stop.
    Interrupted,
    /// The client announced it would wait this long before retrying by itself.
    ClientWaits(Duration),
    /// The worker exited, but a process it left still held its stdout, silent for
    /// `LEFTOVER_OUTPUT_WAIT` or until the item's timeout, and was killed: the answer may
    /// be cut.
    OutputHeld,
}

/// Everything known about one finished worker.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub exit: WorkerExit,
    pub stop_reason: Option<StopReason>,
    /// The complete stdout when it stayed within the cap; over the cap, only its last
    /// `STDOUT_TAIL_BYTES` (the same bytes as `stdout_tail`).
    pub stdout: Vec<u8>,
    /// The last `STDOUT_TAIL_BYTES` of stdout, every password in it masked.
    pub stdout_tail: Vec<u8>,
    /// The last `stderr_tail_bytes` of stderr, every password in it masked.
    pub stderr_tail: Vec<u8>,
    /// The end of each stream as the outcome and the error line are read from it: the
    /// last [`READ_TAIL_BYTES`] of stdout, and of stderr that or `stderr_tail_bytes` if
    /// more, from its first whole line when the stream was longer (a line cut in half is
    /// no line of the worker's), every password masked.
    pub stdout_end: Vec<u8>,
    pub stderr_end: Vec<u8>,
    /// When it last printed output with limit wording
    /// ([`crate::quota::patterns::LIMIT_OR_RESET_HINT`]), and any output: a limit's reset
    /// is reckoned from when it was printed.
    pub last_worded: Option<Printed>,
    pub last_output: Option<Printed>,
    /// The line that announced the wait, when the worker was stopped for it — or stopped
    /// (interrupted) during a shorter wait it announced, whose rest is `client_wait_left`.
    pub client_wait_line: Option<String>,
    /// Interrupted while it waited for its own retry: that wait, and how long before the
    /// report it was announced.
    pub interrupted_wait: Option<(Duration, Duration)>,
    /// Interrupted after the last retry it announced had ended: it had retried by then.
    pub client_wait_was_over: bool,
}

/// When output arrived: by the observer's clock (read at most every
/// [`OUTPUT_CLOCK_INTERVAL`]), and how long before the report by the monotonic clock,
/// which a step of the wall clock does not move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Printed {
    pub at: chrono::DateTime<chrono::Utc>,
    pub ago: Duration,
}

/// A worker that could not be started: a configuration problem, not an item failure.
#[derive(Debug)]
pub enum SpawnError {
    EmptyCommand,
    WorkdirMissing {
        workdir: PathBuf,
    },
    /// The working directory is there, but this user may not enter it.
    WorkdirDenied {
        workdir: PathBuf,
    },
    /// The working directory is reached through a symbolic link `owner` owns, neither
    /// this user nor root: whoever owns it chooses where the worker runs.
    WorkdirForeignLink {
        workdir: PathBuf,
        link: PathBuf,
        owner: u32,
    },
    /// The folder opened as the working directory is not the one its path led to a moment
    /// later: a folder on the way was swapped meanwhile.
    WorkdirReplaced {
        workdir: PathBuf,
        reached: PathBuf,
        resolved: PathBuf,
    },
    /// `searched`: the PATH it was looked for on (its `env`'s, else drainctl's).
    NotFound {
        program: String,
        searched: String,
    },
    InterpreterMissing {
        program: String,
    },
    PermissionDenied {
        program: String,
        /// The path named is a folder, not a program.
        is_folder: bool,
    },
    Other {
        program: String,
        source: io::Error,
    },
}

impl SpawnError {
    /// The drain setting to fix.
    pub fn setting(&self) -> &'static str {
        match self {
            SpawnError::WorkdirMissing { .. }
            | SpawnError::WorkdirDenied { .. }
            | SpawnError::WorkdirForeignLink { .. }
            | SpawnError::WorkdirReplaced { .. } => "workdir",
            _ => "command",
        }
    }

    /// What went wrong, naming the command as `what` (`worker command` for a drain's
    /// worker, `notify_command` for the notifier).
    pub fn describe(&self, what: &str) -> String {
        // A path or program name from the configuration may hold the database password.
        crate::error::scrub(&self.describe_as_given(what))
    }

    fn describe_as_given(&self, what: &str) -> String {
        match self {
            SpawnError::EmptyCommand => {
                format!("{what} is empty; expected a program and its arguments, e.g. [\"claude\", \"-p\"]")
            }
            SpawnError::WorkdirMissing { workdir } => {
                format!("worker directory {workdir:?} does not exist or is not a directory")
            }
            SpawnError::WorkdirDenied { workdir } => {
                format!("worker directory {workdir:?} cannot be entered by this user (permission denied)")
            }
            SpawnError::WorkdirForeignLink { workdir, link, owner } => format!(
                "{}, who chooses where the worker runs and what it reads: make the link yours or root's, or name \
                 the folder itself",
                crate::ownership::reached_through("worker directory", workdir, link, *owner)
            ),
            SpawnError::WorkdirReplaced { workdir, reached, resolved } => format!(
                "worker directory {workdir:?}: the folder opened was {} while its path leads to {}: a folder on \
                 the way was replaced meanwhile; give workdir a path through folders only this user (or root) may \
                 write",
                reached.display(),
                resolved.display()
            ),
            // A name with a slash is a path: PATH is not searched for it.
            SpawnError::NotFound { program, .. } if program.contains('/') => {
                format!("{what} {program:?} not found (no such file)")
            }
            // Under cron the PATH is cron's, not the shell's the command was tried in.
            SpawnError::NotFound { program, searched } => {
                format!("{what} {program:?} not found on PATH ({searched})")
            }
            SpawnError::InterpreterMissing { program } => format!(
                "{what} {program:?} exists but cannot be run: the interpreter its #! line names, or a \
                 library it needs, is missing"
            ),
            SpawnError::PermissionDenied { program, is_folder: true } => {
                format!("{what} {program:?} is a folder, not a program")
            }
            SpawnError::PermissionDenied { program, is_folder: false } => {
                format!("{what} {program:?} is not executable (permission denied)")
            }
            SpawnError::Other { program, source } => {
                format!("{what} {program:?} could not be started: {source}")
            }
        }
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.describe("worker command"))
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::Other { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why `program` could not be started. "No such file" for a program that is there means
/// that what it needs to run is not: the interpreter of its `#!` line, or its loader.
fn spawn_error(program: &str, source: io::Error, spec: &WorkerSpec) -> SpawnError {
    let program = program.to_string();
    match source.kind() {
        io::ErrorKind::NotFound if is_there(&program, spec) => SpawnError::InterpreterMissing { program },
        io::ErrorKind::NotFound => SpawnError::NotFound { program, searched: searched_path(spec) },
        // The start enters `workdir` before it runs the program: a folder this user may
        // not enter fails it the same way.
        io::ErrorKind::PermissionDenied
            if spec.workdir.is_some_and(|workdir| !self::program::may_enter(workdir)) =>
        {
            SpawnError::WorkdirDenied { workdir: spec.workdir.map(Path::to_path_buf).unwrap_or_default() }
        }
        io::ErrorKind::PermissionDenied => {
            let is_folder = program.contains('/')
                && spec
                    .workdir
                    .map_or_else(|| PathBuf::from(&program), |folder| folder.join(&program))
                    .is_dir();
            SpawnError::PermissionDenied { program, is_folder }
        }
        _ => SpawnError::Other { program, source },
    }
}

/// Is `program` there, as the worker's start looked for it: a path from its `workdir`, or
/// on the PATH it gets (its `env`'s, else ours)?
fn is_there(program: &str, spec: &WorkerSpec) -> bool {
    self::program::locate(program, own_path(spec), spec.workdir).is_ok()
}

/// The PATH the worker's `env` sets, if it does.
fn own_path<'a>(spec: &WorkerSpec<'a>) -> Option<&'a OsStr> {
    spec.env.iter().rev().find(|(name, _)| name == "PATH").map(|(_, value)| OsStr::new(value.as_str()))
}

/// The PATH a program without a slash was looked for on, as a message shows it.
fn searched_path(spec: &WorkerSpec) -> String {
    match own_path(spec) {
        Some(path) => path.to_string_lossy().into_owned(),
        None => std::env::var_os("PATH")
            .map_or_else(|| "not set".to_string(), |path| path.to_string_lossy().into_owned()),
    }
}

fn worker_exit(status: ExitStatus) -> WorkerExit {
    match (status.code(), status.signal()) {
        (Some(code), _) => WorkerExit::Code(code),
        (None, Some(signal)) => WorkerExit::Signal(signal),
        (None, None) => WorkerExit::Code(-1),
    }
}

/// The working directory held open once its path resolved through no other user's link
/// to the folder opened ([`crate::pinned_folder`]); one that cannot be opened is judged
/// as missing or out of reach.
pub fn pin_workdir(workdir: &Path) -> Result<crate::pinned_folder::PinnedFolder, SpawnError> {
    use crate::pinned_folder::{PinnedFolder, Refusal};
    let workdir_of = || workdir.to_path_buf();
    match PinnedFolder::open(workdir) {
        Ok(held) => Ok(held),
        Err(Refusal::ForeignLink { link, owner }) => {
            Err(SpawnError::WorkdirForeignLink { workdir: workdir_of(), link, owner })
        }
        Err(Refusal::Replaced { reached, resolved }) => {
            Err(SpawnError::WorkdirReplaced { workdir: workdir_of(), reached, resolved })
        }
        // A folder above it this user may not enter: it is there, out of reach.
        Err(Refusal::Io(error)) if error.kind() == io::ErrorKind::PermissionDenied => {
            Err(SpawnError::WorkdirDenied { workdir: workdir_of() })
        }
        Err(Refusal::Io(_)) => Err(SpawnError::WorkdirMissing { workdir: workdir_of() }),
    }
}

/// Run one worker to its end and report what it did.
///
/// # Errors
/// Only when the worker could not be started: an empty command, a missing working
/// directory, a program not found or not executable, or another spawn failure. Everything
/// that happens after the start (exit codes, signals, timeouts, caps) is in the report.
pub fn run_worker(spec: &WorkerSpec, observer: &mut dyn WorkerObserver) -> Result<WorkerReport, SpawnError> {
    let program = spec.argv.first().ok_or(SpawnError::EmptyCommand)?;
    // Held open, checked, and entered by the descriptor: a folder on the way swapped for
    // another user's link after the check is not where the worker runs.
    let held_workdir = spec.workdir.map(pin_workdir).transpose()?;
    let mut command = Command::new(program);
    for name in spec.env_remove {
        command.env_remove(name);
    }
    command
        .args(&spec.argv[1..])
        .envs(spec.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match spec.session_of_its_own {
        // Its own process group too, and no controlling terminal (see
        // [`wants_a_session_of_its_own`]).
        // SAFETY: the closure runs in the forked child before exec and calls only setsid,
        // which is async-signal-safe; it allocates nothing.
        true => unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        },
        false => {
            command.process_group(0);
        }
    }
    if let Some(held) = &held_workdir {
        command.current_dir(held.held_path());
    }
    let started_at = Instant::now();
    let mut child = command.spawn().map_err(|source| spawn_error(program, source, spec))?;
    let pid = child.id();
    let Ok(group) = libc::pid_t::try_from(pid) else {
        // Cannot happen on Linux (pids fit in pid_t); never signal a wrapped-around group.
        let _ = child.kill();
        let _ = child.wait();
        let source = io::Error::new(io::ErrorKind::InvalidData, format!("pid {pid} out of range"));
        return Err(SpawnError::Other { program: program.clone(), source });
    };
    let mut pipes = match WorkerPipes::new(&mut child, spec.payload) {
        Ok(pipes) => pipes,
        Err(source) => {
            signal_group(group, libc::SIGKILL);
            let _ = child.wait();
            return Err(SpawnError::Other { program: program.clone(), source });
        }
    };
    // The payload goes into the pipe before the observer hears of the start: what the
    // observer does then (the next claim, the previous commit: a round trip each) runs
    // while the worker works on its payload, not while it waits for it. A payload that
    // fits the pipe is written whole here and stdin closed; the rest follows as the
    // worker reads.
    pipes.write_payload();
    observer.started(pid);
    Ok(supervise(spec, observer, child, group, pipes, started_at))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// What one descriptor in the poll set stands for.
#[derive(Clone, Copy)]
enum Watched {
    Stdin,
    Output(Stream),
    Exit,
}

/// The parent's ends of the worker's pipes, all non-blocking, and a descriptor that
/// becomes readable when the worker exits. One `poll` in the calling thread waits on all
/// of them, so a worker costs no helper thread, only its own process.
struct WorkerPipes<'p> {
    stdin: Option<File>,
    /// What is still to be written to stdin.
    payload: &'p [u8],
    /// The read ends of stdout and stderr (see `Stream::index`), until each ends.
    outputs: [Option<File>; 2],
    /// A pidfd of the worker (Linux 5.3 and later); without one, its exit is polled for.
    exit_fd: Option<OwnedFd>,
    buffer: Vec<u8>,
}

impl<'p> WorkerPipes<'p> {
    fn new(child: &mut Child, payload: &'p [u8]) -> io::Result<Self> {
        ignore_broken_pipe_signal();
        let stdin =
            child.stdin.take().filter(|_| !payload.is_empty()).map(|pipe| File::from(OwnedFd::from(pipe)));
        let stdout = child.stdout.take().map(|pipe| File::from(OwnedFd::from(pipe)));
        let stderr = child.stderr.take().map(|pipe| File::from(OwnedFd::from(pipe)));
        for pipe in [&stdin, &stdout, &stderr].into_iter().flatten() {
            set_nonblocking(pipe.as_fd())?;
        }
        let exit_fd = open_pidfd(child.id());
        Ok(WorkerPipes {
            stdin,
            payload,
            outputs: [stdout, stderr],
            exit_fd,
            buffer: vec![0; READ_CHUNK_BYTES],
        })
    }

    fn open_streams(&self) -> impl Iterator<Item = Stream> + '_ {
        [Stream::Stdout, Stream::Stderr].into_iter().filter(|stream| self.outputs[stream.index()].is_some())
    }

    /// Stop writing the payload: the worker exited, so nobody reads it any more.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Wait at most `timeout` for output, room in stdin, or (when `watch_exit`) the
    /// worker's exit. Writes what fits of the payload and hands each chunk read to
    /// `on_output` (`None`: the stream ended). Returns after the first of these, or on a
    /// signal; whether the worker exited is for the caller to check.
    fn wait(
        &mut self,
        timeout: Duration,
        watch_exit: bool,
        on_output: &mut dyn FnMut(Stream, Option<&[u8]>),
    ) {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(4);
        let mut watched: Vec<Watched> = Vec::with_capacity(4);
        let mut watch = |fd: BorrowedFd<'_>, events: libc::c_short, what: Watched| {
            fds.push(libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 });
            watched.push(what);
        };
        if let Some(stdin) = &self.stdin {
            watch(stdin.as_fd(), libc::POLLOUT, Watched::Stdin);
        }
        for stream in [Stream::Stdout, Stream::Stderr] {
            if let Some(pipe) = &self.outputs[stream.index()] {
                watch(pipe.as_fd(), libc::POLLIN, Watched::Output(stream));
            }
        }
        let mut timeout = timeout;
        if watch_exit {
            match &self.exit_fd {
                Some(exit_fd) => watch(exit_fd.as_fd(), libc::POLLIN, Watched::Exit),
                None => timeout = timeout.min(EXIT_POLL_INTERVAL),
            }
        }
        // Rounded up, so that a deadline less than a millisecond away is not polled for in a
        // busy loop.
        let millis = libc::c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if ready <= 0 {
            // A timeout, or EINTR (a signal): the caller re-checks its deadlines.
            return;
        }
        for (fd, what) in fds.iter().zip(watched) {
            if fd.revents == 0 {
                continue;
            }
            match what {
                Watched::Stdin => self.write_payload(),
                Watched::Output(stream) => self.read(stream, on_output),
                Watched::Exit => {}
            }
        }
    }

    fn write_payload(&mut self) {
        let Some(stdin) = &mut self.stdin else { return };
        match stdin.write(self.payload) {
            Ok(written) => {
                self.payload = &self.payload[written..];
                if self.payload.is_empty() {
                    // Closing stdin tells the worker the payload is complete.
                    self.stdin = None;
                }
            }
            Err(error) if is_retryable(&error) => {}
            // EPIPE: the worker closed stdin or exited; what it did not read is its business.
            Err(_) => self.stdin = None,
        }
    }

    fn read(&mut self, stream: Stream, on_output: &mut dyn FnMut(Stream, Option<&[u8]>)) {
        let slot = &mut self.outputs[stream.index()];
        let Some(pipe) = slot else { return };
        match pipe.read(&mut self.buffer) {
            Ok(0) => {}
            Ok(length) => return on_output(stream, Some(&self.buffer[..length])),
            Err(error) if is_retryable(&error) => return,
            Err(_) => {}
        }
        *slot = None;
        on_output(stream, None);
    }
}

fn is_retryable(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A descriptor that becomes readable when process `pid` (our unreaped child) exits.
/// `None` where pidfds are not available (before Linux 5.3, or another system).
#[cfg(target_os = "linux")]
fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes two integers and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(not(target_os = "linux"))]
fn open_pidfd(_pid: u32) -> Option<OwnedFd> {
    None
}

/// Rust programs ignore SIGPIPE from the start; make sure of it, so that writing to a
/// worker that closed its stdin fails with EPIPE instead of killing drainctl.
fn ignore_broken_pipe_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Whether the worker `pid`, seen exited and not reaped yet, failed by itself: exited
/// non-zero, or killed by a signal.
fn exited_unsuccessfully(pid: libc::pid_t) -> bool {
    peek_exit(pid) == Some(true)
}

/// Whether process `pid` (our child) has exited, leaving it unreaped (`WNOWAIT`), so its
/// pid, and with it its process group id, cannot be reused yet.
fn has_exited(pid: libc::pid_t) -> bool {
    peek_exit(pid).is_some()
}

/// The worker `pid` as `waitid` sees it without reaping it: None while it runs, and once
/// it has exited whether it failed (exited non-zero, killed by a signal). An error
/// (ECHILD) means there is nothing left to wait for: exited, not known to have failed.
fn peek_exit(pid: libc::pid_t) -> Option<bool> {
    let Ok(id) = libc::id_t::try_from(pid) else {
        return Some(false);
    };
    // SAFETY: a zeroed siginfo_t is a valid output buffer that outlives the call; its
    // fields are read only after waitid filled it (si_pid stays 0 when the child has not
    // exited).
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let result = libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        if result != 0 {
            return Some(false);
        }
        if info.si_pid() == 0 {
            return None;
        }
        Some(match info.si_code {
            libc::CLD_EXITED => info.si_status() != 0,
            code => code == libc::CLD_KILLED || code == libc::CLD_DUMPED,
        })
    }
}

/// Signal every member of the group, and the worker itself (its pid is the group's id): a
/// worker that moved itself into another group (`setpgid`) is still ours, and unreaped, so
/// its pid cannot name another process. Failures are ignored: the group may already be
/// gone, and the worker's own exit is awaited in any case.
fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    if group > 1 {
        // SAFETY: kill has no memory-safety preconditions; a negative pid addresses a group.
        unsafe {
            libc::kill(-group, signal);
            libc::kill(group, signal);
        }
    }
}

fn remaining(now: Instant, until: Option<Instant>) -> Option<Duration> {
    until.map(|until| until.saturating_duration_since(now))
}

/// The calling thread's loop: move output and payload, enforce limits, reap, drain.
fn supervise(
    spec: &WorkerSpec,
    observer: &mut dyn WorkerObserver,
    mut child: Child,
    group: libc::pid_t,
    mut pipes: WorkerPipes<'_>,
    started_at: Instant,
) -> WorkerReport {
    let mut running = Some(orphans::Running::started());
    let timeout_at = started_at.checked_add(spec.item_timeout);
    let mut capture = OutputCapture::new(spec);
    let mut exit: Option<WorkerExit> = None;
    let mut drain_until: Option<Instant> = None;
    let mut stop_reason: Option<StopReason> = None;
    let mut kill_at: Option<Instant> = None;
    let mut next_stop_poll = started_at + WORKER_FIRST_LOOK;

    // The worker ended after our SIGTERM while others of its group live on: they get the
    // rest of `kill_grace` to finish, as the worker did (docs/worker-contract.md).
    let mut awaits_leftovers = false;
    // The worker ended on its own (when it was seen) while others of its group hold its
    // stdout or stderr: until when they may still write into them.
    let mut exit_seen_at: Option<Instant> = None;
    // When the read that followed the first look ended: what it took was in the pipes
    // before the exit was seen (read only after it when the pass was busy — under load,
    // or committing the previous item while this worker ran), no leftover's write and
    // no heartbeat.
    let mut first_look_read_at: Option<Instant> = None;
    let mut leftovers_write_until: Option<Instant> = None;
    let mut awaits_leftover_output = false;
    // The worker exited non-zero or was killed by a signal, by itself (see
    // `FAILED_WORKER_LEFTOVER_WAIT`).
    let mut worker_failed = false;
    // A stop heard while only a heartbeat the worker left held its stderr: no more wait.
    let mut leftovers_stopped = false;
    loop {
        let leader_exited = exit.is_none() && has_exited(group);
        if leader_exited {
            let group_is_alive =
                || u32::try_from(group).is_ok_and(|group| process::group_is_alive(group).unwrap_or(false));
            awaits_leftovers =
                stop_reason.is_some() && kill_at.is_some_and(|at| Instant::now() < at) && group_is_alive();
            // The first look takes what is already in the pipes (their end, most often);
            // only pipes still open after it make the group worth a look in /proc.
            let is_first_look = exit_seen_at.is_none();
            let exited_at = *exit_seen_at.get_or_insert_with(Instant::now);
            if is_first_look {
                worker_failed = exited_unsuccessfully(group);
            }
            // Output over the cap is dropped already: the item fails on it at once. A pipe
            // still open after the first look is held by a process the worker left, in its
            // group or out of it (`setsid`): each may be passing the result on.
            // (A notifier's output is no result: a holder outside its group is not waited for.)
            let holds_output = stop_reason.is_none()
                && !leftovers_stopped
                && !capture.is_over_cap()
                && pipes.open_streams().next().is_some()
                && (is_first_look || spec.output_drain == OutputDrain::AfterExit || group_is_alive());
            // Each write of the result gives the helpers the wait again, up to the item's
            // timeout; stderr alone does not (a forgotten heartbeat is no result).
            let last_write =
                capture.last_stdout_at.filter(|at| *at > first_look_read_at.unwrap_or(exited_at));
            let quiet_until = last_write.unwrap_or(exited_at) + LEFTOVER_OUTPUT_WAIT;
            let until = timeout_at.map_or(quiet_until, |at| quiet_until.min(at));
            let until = match worker_failed {
                true => until.min(exited_at + FAILED_WORKER_LEFTOVER_WAIT),
                false => until,
            };
            leftovers_write_until = Some(until);
            let now = Instant::now();
            awaits_leftover_output = holds_output && now < until;
            if holds_output && now >= until && now < quiet_until && last_write.is_some() {
                // Still writing at the item's timeout: the result would be cut. A worker
                // that failed by itself is judged by its own exit, the held output noted.
                stop_reason = Some(match worker_failed {
                    true => StopReason::OutputHeld,
                    false => StopReason::TimedOut,
                });
            }
            // Still held, silent, after the wait (not the first look: its pipes may hold
            // no more than their end): the answer may be cut — a post-processor that
            // writes only at the end, a helper that paused (docs/worker-contract.md). One
            // that wrote on stderr meanwhile is a heartbeat left running, no result.
            let heartbeat =
                capture.last_stderr_at.is_some_and(|at| at > first_look_read_at.unwrap_or(exited_at));
            let stdout_held_after_the_wait = holds_output
                && !is_first_look
                && !heartbeat
                && now >= until
                && pipes.open_streams().any(|stream| stream == Stream::Stdout);
            if stdout_held_after_the_wait && stop_reason.is_none() {
                // Silent since the worker's exit: what holds stdout is the cause, whether
                // the wait ended at the item's timeout or after 2 s.
                stop_reason = Some(StopReason::OutputHeld);
            }
            if awaits_leftovers || awaits_leftover_output {
                pipes.close_stdin();
            }
        }
        if leader_exited && !awaits_leftovers && !awaits_leftover_output {
            // The exited leader still holds the group id: kill the leftovers before
            // reaping, so the group id cannot have been reused by then.
            signal_group(group, libc::SIGKILL);
            exit = Some(reap(&mut child));
            // Then its descendants that left the group, now ours (see `orphans`).
            drop(running.take());
            orphans::end_left_by(group);
            pipes.close_stdin();
            drain_until = Instant::now().checked_add(OUTPUT_DRAIN_LIMIT);
            if spec.output_drain == OutputDrain::WithinTimeout {
                drain_until = match (drain_until, timeout_at) {
                    (Some(until), Some(at)) => Some(until.min(at)),
                    (until, at) => until.or(at),
                };
            }
        }
        let now = Instant::now();
        if exit.is_some() {
            if pipes.open_streams().next().is_none() || drain_until.is_some_and(|until| now >= until) {
                break;
            }
            // A pipe still open is held by a descendant outside the group: one that
            // reaches us only as its parent dies is killed on a later turn.
            orphans::end_adopted(Some(group));
        } else if awaits_leftover_output {
            // The worker's own verdict stands while its helpers write, until they are quiet
            // for `LEFTOVER_OUTPUT_WAIT` or the item's timeout; a stop asked for (SIGTERM to
            // the pass) is still heard, and ends them as it would the worker.
            if now >= next_stop_poll {
                next_stop_poll = now + STOP_POLL_INTERVAL;
                orphans::reap_exited(group);
                if observer.should_stop() {
                    awaits_leftover_output = false;
                    if pipes.open_streams().any(|stream| stream == Stream::Stdout) {
                        // A helper still passing the answer on: it may be cut.
                        stop_reason = Some(StopReason::Interrupted);
                        signal_group(group, libc::SIGTERM);
                        kill_at = now.checked_add(spec.kill_grace);
                    } else {
                        // Only stderr held (a heartbeat left running): the answer is
                        // whole, the worker's verdict stands; what is left is killed.
                        leftovers_stopped = true;
                    }
                }
            }
        } else if stop_reason.is_none() {
            let reason = if capture.is_over_cap() {
                Some(StopReason::OutputCapExceeded)
            } else if let Some(wait) = capture.long_client_wait(remaining(now, timeout_at)) {
                Some(StopReason::ClientWaits(wait))
            } else if timeout_at.is_some_and(|at| now >= at) {
                Some(StopReason::TimedOut)
            } else if now >= next_stop_poll {
                next_stop_poll = now + STOP_POLL_INTERVAL;
                orphans::reap_exited(group);
                observer.should_stop().then_some(StopReason::Interrupted)
            } else {
                None
            };
            if let Some(reason) = reason {
                stop_reason = Some(reason);
                signal_group(group, libc::SIGTERM);
                kill_at = now.checked_add(spec.kill_grace);
            }
        } else if kill_at.is_some_and(|at| now >= at) {
            signal_group(group, libc::SIGKILL);
            kill_at = None;
        }

        let next_deadline = if exit.is_some() {
            drain_until
        } else if awaits_leftover_output {
            leftovers_write_until.map(|until| until.min(next_stop_poll))
        } else if stop_reason.is_none() {
            Some(timeout_at.map_or(next_stop_poll, |at| at.min(next_stop_poll)))
        } else {
            kill_at
        };
        let wait =
            remaining(now, next_deadline).map_or(LOOP_POLL_INTERVAL, |left| left.min(LOOP_POLL_INTERVAL));
        let watch_exit = exit.is_none() && !awaits_leftovers && !awaits_leftover_output;
        pipes.wait(wait, watch_exit, &mut |stream, bytes| match bytes {
            Some(bytes) => capture.accept(stream, bytes, observer),
            None => capture.finish(stream, observer),
        });
        if exit_seen_at.is_some() && first_look_read_at.is_none() {
            first_look_read_at = Some(Instant::now());
        }
    }
    // Streams still open here are held by a descendant that left the group: stop waiting.
    let still_open: Vec<Stream> = pipes.open_streams().collect();
    for stream in still_open {
        capture.finish(stream, observer);
    }
    let exit = exit.unwrap_or(WorkerExit::Code(-1));
    if stop_reason.is_none()
        && observer.stopped_with_the_worker(exit, exit_seen_at.unwrap_or_else(Instant::now))
    {
        stop_reason = Some(StopReason::Interrupted);
    }
    capture.into_report(exit, stop_reason)
}

fn reap(child: &mut Child) -> WorkerExit {
    match child.wait() {
        Ok(status) => worker_exit(status),
        Err(error) => {
            log::warn!("could not collect the exit status of worker pid {}: {error}", child.id());
            WorkerExit::Code(-1)
        }
    }
}

/// Grow `buffer` so that `needed` bytes fit, never reserving beyond `ceiling` unless
/// `needed` itself is larger: doubling, but clipped, so capacity stays near the limit.
fn reserve_within(buffer: &mut Vec<u8>, needed: usize, ceiling: usize) {
    if needed > buffer.capacity() {
        let target = buffer.capacity().saturating_mul(2).max(needed).min(ceiling.max(needed));
        buffer.reserve_exact(target - buffer.len());
    }
}

/// The last `limit` bytes of a stream, in at most `2 * keep` bytes of memory, where `keep`
/// is `limit` and the length of the longest registered secret: a password cut in half at
/// the tail's start would no longer be recognised, so the tail is masked with the bytes
/// before it and only then cut (docs/guarantees.md, "Secrets stay secret").
#[derive(Debug)]
struct TailBuffer {
    limit: usize,
    keep: usize,
    bytes: Vec<u8>,
    /// Bytes of the stream before `bytes` were dropped: its start may be a password's end.
    is_cut: bool,
}

impl TailBuffer {
    fn new(limit: usize) -> Self {
        // One byte more than the window: whether it starts at a line's start is known.
        let keep = limit.saturating_add(crate::error::longest_secret_len()).saturating_add(1);
        TailBuffer { limit, keep, bytes: Vec::new(), is_cut: false }
    }

    fn push(&mut self, data: &[u8]) {
        if data.len() > self.keep {
            self.is_cut = true;
        }
        let data = &data[data.len().saturating_sub(self.keep)..];
        if data.is_empty() || self.limit == 0 {
            return;
        }
        let ceiling = self.keep.saturating_mul(2);
        if self.bytes.len() + data.len() > ceiling {
            // data.len() <= keep, so this drains at most all of `bytes`.
            let excess = self.bytes.len() + data.len() - self.keep;
            self.bytes.drain(..excess);
            self.is_cut = true;
        }
        let needed = self.bytes.len() + data.len();
        reserve_within(&mut self.bytes, needed, ceiling);
        self.bytes.extend_from_slice(data);
    }

    /// The last `limit` bytes, with every password masked, and whether they start inside
    /// a line: after a byte that is no line end, or where bytes before them were dropped
    /// unseen. What is left of a password cut at the window's start is dropped first:
    /// masking would not recognise it, and the masking of whole ones after it may shorten
    /// the text enough to bring it into the cut.
    fn window(&self) -> (Vec<u8>, bool) {
        let start = self.bytes.len().saturating_sub(self.keep);
        let mut kept = &self.bytes[start..];
        let is_cut = self.is_cut || start > 0;
        let mut skipped = 0;
        if is_cut {
            skipped = crate::error::secret_end_at_start(kept);
            kept = &kept[skipped..];
        }
        let scrubbed = crate::error::scrub_bytes(kept);
        let text = scrubbed.as_deref().unwrap_or(kept);
        let from = text.len().saturating_sub(self.limit);
        // The byte before the window: in the text, or (masking shortened it to the window
        // or less) the one before what was kept, when it was kept.
        let before = match from {
            0 => (start + skipped).checked_sub(1).map(|at| self.bytes[at]),
            _ => Some(text[from - 1]),
        };
        let starts_inside_a_line = match before {
            Some(byte) => byte != b'\n',
            None => self.is_cut,
        };
        (text[from..].to_vec(), starts_inside_a_line)
    }
}

/// A [`TailBuffer::window`] from its first whole line: when it starts inside a line (the
/// stream was longer, and the byte before it is no line end), that line's rest is dropped;
/// a window that holds no whole line reads as one cut line ([`crate::quota::from_first_whole_line`]).
fn whole_lines(kept: Vec<u8>, starts_inside_a_line: bool, failed: bool) -> Vec<u8> {
    match crate::quota::from_first_whole_line(&kept, starts_inside_a_line, failed) {
        std::borrow::Cow::Borrowed(whole) if whole.len() == kept.len() => kept,
        whole => whole.into_owned(),
    }
}

/// Splits a byte stream into lines across chunk boundaries. A line longer than
/// `max_line_bytes` is reported cut to that length and the rest of it is skipped, so a
/// newline-free flood cannot grow memory. A trailing `\r` is dropped.
#[derive(Debug)]
struct LineSplitter {
    pending: Vec<u8>,
    max_line_bytes: usize,
    is_skipping_rest_of_line: bool,
}

impl LineSplitter {
    fn new(max_line_bytes: usize) -> Self {
        LineSplitter { pending: Vec::new(), max_line_bytes, is_skipping_rest_of_line: false }
    }

    fn push(&mut self, mut bytes: &[u8], on_line: &mut dyn FnMut(&[u8])) {
        while let Some(newline) = bytes.iter().position(|byte| *byte == b'\n') {
            self.append(&bytes[..newline], on_line);
            if self.is_skipping_rest_of_line {
                self.is_skipping_rest_of_line = false;
            } else {
                self.emit(on_line);
            }
            bytes = &bytes[newline + 1..];
        }
        self.append(bytes, on_line);
    }

    /// The stream ended: a last line without newline is still a line.
    fn finish(&mut self, on_line: &mut dyn FnMut(&[u8])) {
        if !self.is_skipping_rest_of_line && !self.pending.is_empty() {
            self.emit(on_line);
        }
        self.pending = Vec::new();
        self.is_skipping_rest_of_line = false;
    }

    fn append(&mut self, part: &[u8], on_line: &mut dyn FnMut(&[u8])) {
        if self.is_skipping_rest_of_line || part.is_empty() {
            return;
        }
        let room = self.max_line_bytes.saturating_sub(self.pending.len());
        if part.len() <= room {
            self.pending.extend_from_slice(part);
        } else {
            self.pending.extend_from_slice(&part[..room]);
            self.emit(on_line);
            self.is_skipping_rest_of_line = true;
        }
    }

    fn emit(&mut self, on_line: &mut dyn FnMut(&[u8])) {
        let line = self.pending.strip_suffix(b"\r").unwrap_or(&self.pending);
        on_line(line);
        self.pending.clear();
    }
}

/// Everything kept from the worker's two streams.
struct OutputCapture<'a> {
    patterns: LinePatterns<'a>,
    result_cap_bytes: Option<usize>,
    /// The whole stdout while within the cap; `None` once over it, or when it is no result.
    stdout: Option<Vec<u8>>,
    stdout_tail: TailBuffer,
    /// Stderr's end as it is read, at least [`READ_TAIL_BYTES`]; its last
    /// `stderr_tail_bytes` are recorded.
    stderr_tail: TailBuffer,
    stderr_tail_bytes: usize,
    stdout_lines: LineSplitter,
    stderr_lines: LineSplitter,
    /// The last lines of each stream, for the announced-wait reader.
    /// The readers of the waits the client announces on its stdout and its stderr.
    stream_waits: Option<[crate::quota::StreamWaits<'a>; 2]>,
    /// Waits announced by the client, in order, with their lines.
    client_waits: Vec<(String, Duration)>,
    wait_line: Option<String>,
    /// The last wait short enough to be left to the client, its line and when it was
    /// read: a stop asked for during it records the limit (see `into_report`).
    short_wait: Option<(String, Duration, Instant)>,
    /// The observer's clock, and when it was read, as output with limit wording and any
    /// output last arrived.
    last_worded: Option<(chrono::DateTime<chrono::Utc>, Instant)>,
    last_output: Option<(chrono::DateTime<chrono::Utc>, Instant)>,
    /// When bytes of the result (stdout), and of stderr, last arrived.
    last_stdout_at: Option<Instant>,
    last_stderr_at: Option<Instant>,
}

impl<'a> OutputCapture<'a> {
    fn new(spec: &WorkerSpec<'a>) -> Self {
        OutputCapture {
            patterns: LinePatterns { checkpoint: spec.checkpoint_pattern, resume: spec.resume_pattern },
            result_cap_bytes: spec.result_cap_bytes,
            stdout: spec.result_cap_bytes.map(|_| Vec::new()),
            stdout_tail: TailBuffer::new(STDOUT_TAIL_BYTES),
            stderr_tail: TailBuffer::new(spec.stderr_tail_bytes.max(READ_TAIL_BYTES)),
            stderr_tail_bytes: spec.stderr_tail_bytes,
            stdout_lines: LineSplitter::new(MAX_LINE_BYTES),
            stderr_lines: LineSplitter::new(MAX_LINE_BYTES),
            stream_waits: spec.announced_waits_given.map(crate::quota::StreamWaits::of_client),
            client_waits: Vec::new(),
            wait_line: None,
            short_wait: None,
            last_worded: None,
            last_output: None,
            last_stdout_at: None,
            last_stderr_at: None,
        }
    }

    /// Note when output arrived (see [`WorkerReport::last_worded`]); the clock read
    /// moments ago stands (to a tenth of a second).
    fn note_printed(&mut self, bytes: &[u8], observer: &mut dyn WorkerObserver) {
        let is_recent =
            |read: &Option<(_, Instant)>| read.is_some_and(|(_, at)| at.elapsed() < OUTPUT_CLOCK_INTERVAL);
        if !is_recent(&self.last_output) {
            self.last_output = Some((observer.now(), Instant::now()));
        }
        let is_worded = crate::quota::patterns::is_limit_or_reset_worded(bytes);
        if is_worded && !is_recent(&self.last_worded) {
            self.last_worded = self.last_output;
        }
    }

    /// The first announced wait longer than [`MAX_CLIENT_WAIT`] or than `time_left`;
    /// shorter ones are left to the client (its retry is worth waiting for), the last of
    /// them remembered while it lasts.
    fn long_client_wait(&mut self, time_left: Option<Duration>) -> Option<Duration> {
        let limit = client_wait_limit(time_left);
        let waits = std::mem::take(&mut self.client_waits);
        match waits.iter().position(|(_, wait)| *wait > limit) {
            Some(long) => {
                let (line, wait) = waits.into_iter().nth(long)?;
                self.wait_line = Some(line);
                Some(wait)
            }
            None => {
                if let Some((line, wait)) = waits.into_iter().last() {
                    log::info!(
                        "the worker waits {} for its own retry: left to it",
                        crate::duration::format_duration(wait)
                    );
                    self.short_wait = Some((line, wait, Instant::now()));
                }
                None
            }
        }
    }

    fn is_over_cap(&self) -> bool {
        self.result_cap_bytes.is_some() && self.stdout.is_none()
    }

    fn accept(&mut self, stream: Stream, bytes: &[u8], observer: &mut dyn WorkerObserver) {
        if !bytes.is_empty() {
            self.note_printed(bytes, observer);
        }
        match stream {
            Stream::Stdout => {
                if !bytes.is_empty() {
                    self.last_stdout_at = Some(Instant::now());
                }
                if let (Some(stdout), Some(cap)) = (&mut self.stdout, self.result_cap_bytes) {
                    let needed = stdout.len() + bytes.len();
                    if needed <= cap {
                        reserve_within(stdout, needed, cap);
                        stdout.extend_from_slice(bytes);
                    } else {
                        self.stdout = None;
                    }
                }
                self.stdout_tail.push(bytes);
            }
            Stream::Stderr => {
                if !bytes.is_empty() {
                    self.last_stderr_at = Some(Instant::now());
                }
                self.stderr_tail.push(bytes)
            }
        }
        if self.patterns.is_empty() && self.stream_waits.is_none() {
            return;
        }
        let (patterns, waits) = (&self.patterns, &mut self.client_waits);
        let reader = self.stream_waits.as_mut().map(|readers| &mut readers[stream.index()]);
        let lines = match stream {
            Stream::Stdout => &mut self.stdout_lines,
            Stream::Stderr => &mut self.stderr_lines,
        };
        let mut reader = reader;
        lines.push(bytes, &mut |line| patterns.check(line, reader.as_deref_mut(), waits, observer));
    }

    fn finish(&mut self, stream: Stream, observer: &mut dyn WorkerObserver) {
        if self.patterns.is_empty() && self.stream_waits.is_none() {
            return;
        }
        let (patterns, waits) = (&self.patterns, &mut self.client_waits);
        let mut reader = self.stream_waits.as_mut().map(|readers| &mut readers[stream.index()]);
        let lines = match stream {
            Stream::Stdout => &mut self.stdout_lines,
            Stream::Stderr => &mut self.stderr_lines,
        };
        lines.finish(&mut |line| patterns.check(line, reader.as_deref_mut(), waits, observer));
    }

    fn into_report(self, exit: WorkerExit, stop_reason: Option<StopReason>) -> WorkerReport {
        let (stdout_tail, stdout_inside_a_line) = self.stdout_tail.window();
        // Output over the cap fails the item even when the worker exited before the loop
        // saw the cap crossed (its last bytes and its exit can arrive in one poll): only
        // the tail is left, and a tail must never pass for the result.
        let stop_reason = match stop_reason {
            None if self.is_over_cap() => Some(StopReason::OutputCapExceeded),
            reason => reason,
        };
        // Stopped while it waited for its own retry: the limit it announced is still in
        // force for what is left of that wait (docs/worker-contract.md, "SIGTERM").
        let (wait_line, interrupted_wait, client_wait_was_over) = match (stop_reason, self.short_wait) {
            (Some(StopReason::Interrupted), Some((line, wait, at))) if self.wait_line.is_none() => {
                match at.elapsed() {
                    ago if ago < wait => (Some(line), Some((wait, ago)), false),
                    _ => (None, None, true),
                }
            }
            _ => (self.wait_line, None, false),
        };
        let (stderr_read, stderr_inside_a_line) = self.stderr_tail.window();
        // A run that failed is read for its error, a spinner's frames as lines.
        let failed = !matches!(exit, WorkerExit::Code(0));
        let stderr_tail = stderr_read[stderr_read.len().saturating_sub(self.stderr_tail_bytes)..].to_vec();
        WorkerReport {
            exit,
            stop_reason,
            stdout: self.stdout.unwrap_or_else(|| stdout_tail.clone()),
            stdout_end: whole_lines(stdout_tail.clone(), stdout_inside_a_line, failed),
            stdout_tail,
            stderr_tail,
            stderr_end: whole_lines(stderr_read, stderr_inside_a_line, failed),
            last_worded: self.last_worded.map(|(at, read)| Printed { at, ago: read.elapsed() }),
            last_output: self.last_output.map(|(at, read)| Printed { at, ago: read.elapsed() }),
            client_wait_line: wait_line,
            interrupted_wait,
            client_wait_was_over,
        }
    }
}

/// The patterns every output line is matched against.
struct LinePatterns<'a> {
    checkpoint: Option<&'a regex::Regex>,
    resume: Option<&'a regex::Regex>,
}

impl LinePatterns<'_> {
    fn is_empty(&self) -> bool {
        self.checkpoint.is_none() && self.resume.is_none()
    }

    /// Hand on a checkpoint line and a resume token, and note a wait the stream's
    /// `reader` finds announced.
    fn check(
        &self,
        line: &[u8],
        reader: Option<&mut crate::quota::StreamWaits<'_>>,
        waits: &mut Vec<(String, Duration)>,
        observer: &mut dyn WorkerObserver,
    ) {
        let line = String::from_utf8_lossy(line);
        if let Some(reader) = reader {
            if let Some(wait) = reader.read(&line) {
                waits.push((reader.announcement(&line), wait));
            }
        }
        if self.checkpoint.is_some_and(|pattern| pattern.is_match(&line)) {
            observer.checkpoint(&line);
        }
        if let Some(pattern) = self.resume {
            if let Some(token) = pattern.captures(&line).and_then(|c| c.get(1)) {
                // A line that holds a password (the database's, or one of a URL or a
                // `password=` setting: what `scrub` masks) hands on its masked token: a
                // password cut at a space would not be recognised in the token alone.
                let scrubbed = crate::error::scrub(&line);
                if scrubbed == line {
                    observer.resume_token(token.as_str());
                } else {
                    let masked =
                        pattern.captures(&scrubbed).and_then(|c| c.get(1)).map_or("***", |m| m.as_str());
                    observer.resume_token(masked);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max_line_bytes: usize) -> Vec<Vec<u8>> {
        let mut splitter = LineSplitter::new(max_line_bytes);
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, &mut |line| lines.push(line.to_vec()));
        }
        splitter.finish(&mut |line| lines.push(line.to_vec()));
        lines
    }

    /// Chunks pushed, maximum line length, lines expected.
    type SplitCase = (&'static [&'static [u8]], usize, Vec<&'static [u8]>);

    #[test]
    fn lines_are_split_across_chunks_and_cut_when_too_long() {
        let cases: Vec<SplitCase> = vec![
            (&[b"a\nb\n"], 10, vec![b"a", b"b"]),
            (&[b"ab", b"c\nd", b"e\n"], 10, vec![b"abc", b"de"]),
            (&[b"no newline at end"], 100, vec![b"no newline at end"]),
            (&[b"crlf\r\n", b"x\r"], 10, vec![b"crlf", b"x"]),
            (&[b"\n\n"], 10, vec![b"", b""]),
            (&[b""], 10, vec![]),
            (&[b"abcdefgh\nok\n"], 4, vec![b"abcd", b"ok"]),
            (&[b"ab", b"cd", b"ef", b"gh", b"\nok"], 4, vec![b"abcd", b"ok"]),
            (&[b"abcd\n"], 4, vec![b"abcd"]),
            (&[b"abcdefgh"], 4, vec![b"abcd"]),
            (&[b"\xff\xfe\n"], 10, vec![b"\xff\xfe"]),
        ];
        for (chunks, max_line_bytes, expected) in cases {
            let expected: Vec<Vec<u8>> = expected.into_iter().map(<[u8]>::to_vec).collect();
            assert_eq!(split(chunks, max_line_bytes), expected, "chunks {chunks:?} max {max_line_bytes}");
        }
    }

    #[test]
    fn an_endless_line_keeps_memory_bounded() {
        let mut splitter = LineSplitter::new(8);
        let mut lines = 0;
        for _ in 0..1000 {
            splitter.push(&[b'x'; 1000], &mut |_| lines += 1);
            assert!(splitter.pending.len() <= 8);
        }
        assert_eq!(lines, 1);
    }

    /// Limit, chunks pushed, tail expected.
    type TailCase = (usize, Vec<&'static [u8]>, &'static [u8]);

    #[test]
    fn tail_buffer_keeps_the_last_bytes() {
        let cases: Vec<TailCase> = vec![
            (4, vec![b"ab"], b"ab"),
            (4, vec![b"abc", b"def"], b"cdef"),
            (4, vec![b"abcdefghij"], b"ghij"),
            (4, vec![b"ab", b"cd", b"ef", b"gh", b"ij", b"k"], b"hijk"),
            (0, vec![b"abc"], b""),
            (3, vec![], b""),
        ];
        for (limit, chunks, expected) in cases {
            let mut tail = TailBuffer::new(limit);
            for chunk in &chunks {
                tail.push(chunk);
                assert!(tail.bytes.len() <= 2 * tail.keep);
            }
            assert_eq!(tail.window().0, expected, "limit {limit} chunks {chunks:?}");
        }
    }

    #[test]
    fn a_tail_keeps_no_piece_of_a_password_cut_at_its_start_even_when_masking_shortens_it() {
        crate::error::register_secret("Zq-secret-77");
        for chunks in [
            vec![&b"pw=Zq-secret-77 pw=Zq-secret-77 pw=Zq-secret-77 ok"[..]],
            vec![b"pw=Zq-sec", b"ret-77 pw=Zq-secret-77 pw=", b"Zq-secret-77 ok"],
        ] {
            for limit in 8..40 {
                let mut tail = TailBuffer::new(limit);
                for chunk in &chunks {
                    tail.push(chunk);
                }
                let kept = String::from_utf8(tail.window().0).unwrap();
                assert!(kept.len() <= limit, "{limit}: {kept:?}");
                for piece in ["ret-77", "et-77", "t-77", "-77"] {
                    assert!(!kept.contains(piece), "{limit}: {kept:?} keeps {piece:?}");
                }
            }
        }
    }

    #[test]
    fn tail_buffer_capacity_stays_near_twice_the_limit() {
        let mut tail = TailBuffer::new(1000);
        for _ in 0..10_000 {
            tail.push(&[b'y'; 333]);
        }
        assert!(tail.bytes.capacity() <= 2 * tail.keep, "capacity {}", tail.bytes.capacity());
        assert_eq!(tail.window().0, vec![b'y'; 1000]);
    }

    #[test]
    fn spawn_errors_are_classified_by_kind() {
        let cases = [
            (io::ErrorKind::NotFound, "NotFound"),
            (io::ErrorKind::PermissionDenied, "PermissionDenied"),
            (io::ErrorKind::InvalidInput, "Other"),
        ];
        for (kind, expected) in cases {
            let argv = ["tool-that-is-nowhere".to_string()];
            let error = spawn_error(&argv[0], io::Error::from(kind), &spec_with(&argv, None));
            let name = format!("{error:?}");
            assert!(name.starts_with(expected), "{kind:?} gave {name}");
            assert!(error.to_string().contains("\"tool-that-is-nowhere\""), "{error}");
        }
    }

    #[test]
    fn a_workdir_this_user_may_not_enter_is_blamed_not_the_program() {
        // A start refused with EACCES while `workdir` cannot be entered (here: gone since
        // it was checked; for another user, a folder without search permission). Before:
        // "worker command \"/bin/pwd\" is not executable", and `command` named to fix.
        let argv = ["/bin/pwd".to_string()];
        let gone = Path::new("/nonexistent/drainctl-workdir");
        let spec = WorkerSpec { workdir: Some(gone), ..spec_with(&argv, None) };
        let error = spawn_error(&argv[0], io::Error::from(io::ErrorKind::PermissionDenied), &spec);
        assert_eq!(error.setting(), "workdir");
        assert_eq!(
            error.to_string(),
            "worker directory \"/nonexistent/drainctl-workdir\" cannot be entered by this user (permission denied)"
        );
        // A folder it may enter leaves the program to blame.
        let dir = tempfile::tempdir().unwrap();
        let spec = WorkerSpec { workdir: Some(dir.path()), ..spec_with(&argv, None) };
        let error = spawn_error(&argv[0], io::Error::from(io::ErrorKind::PermissionDenied), &spec);
        assert_eq!(error.setting(), "command");
    }

    #[test]
    fn a_folder_named_as_the_worker_is_called_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let argv = vec![dir.path().display().to_string()];
        let error = run_worker(&spec_with(&argv, None), &mut Silent).unwrap_err();
        // Before: "is not executable (permission denied)".
        assert!(error.to_string().ends_with("is a folder, not a program"), "{error}");
        let file = dir.path().join("tool");
        std::fs::write(&file, "data").unwrap();
        let argv = vec![file.display().to_string()];
        let error = run_worker(&spec_with(&argv, None), &mut Silent).unwrap_err();
        assert!(error.to_string().ends_with("is not executable (permission denied)"), "{error}");
    }

    #[test]
    fn a_worker_whose_interpreter_is_missing_is_not_called_missing_itself() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("worker.sh");
        std::fs::write(&script, "#!/nonexistent/interpreter\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let argv = vec![script.display().to_string()];
        let error = run_worker(&spec_with(&argv, None), &mut Silent).unwrap_err();
        assert!(matches!(error, SpawnError::InterpreterMissing { .. }), "{error:?}");
        assert!(error.to_string().contains("the interpreter its #! line names"), "{error}");
        assert_eq!(error.setting(), "command");
        // On the worker's own PATH, by name.
        let env = vec![("PATH".to_string(), dir.path().display().to_string())];
        let by_name = ["worker.sh".to_string()];
        let spec = WorkerSpec { env: &env, ..spec_with(&by_name, None) };
        let error = spawn_error("worker.sh", io::Error::from(io::ErrorKind::NotFound), &spec);
        assert!(matches!(error, SpawnError::InterpreterMissing { .. }), "{error:?}");
        // A relative path is looked for from the worker's folder, not drainctl's.
        let relative = ["./worker.sh".to_string()];
        let elsewhere = WorkerSpec { workdir: Some(dir.path()), ..spec_with(&relative, None) };
        let error = spawn_error("./worker.sh", io::Error::from(io::ErrorKind::NotFound), &elsewhere);
        assert!(matches!(error, SpawnError::InterpreterMissing { .. }), "{error:?}");
        let error =
            spawn_error("./worker.sh", io::Error::from(io::ErrorKind::NotFound), &spec_with(&relative, None));
        assert!(matches!(error, SpawnError::NotFound { .. }), "{error:?}");
        let workdir = SpawnError::WorkdirMissing { workdir: dir.path().join("gone") };
        assert_eq!(workdir.setting(), "workdir");
    }

    #[test]
    fn exit_statuses_map_to_codes_and_signals() {
        let cases = [
            (ExitStatus::from_raw(0), WorkerExit::Code(0)),
            (ExitStatus::from_raw(3 << 8), WorkerExit::Code(3)),
            (ExitStatus::from_raw(9), WorkerExit::Signal(9)),
            (ExitStatus::from_raw(15), WorkerExit::Signal(15)),
        ];
        for (status, expected) in cases {
            assert_eq!(worker_exit(status), expected, "{status:?}");
        }
    }

    struct Silent;
    impl WorkerObserver for Silent {
        fn started(&mut self, _pid: u32) {}
        fn checkpoint(&mut self, _line: &str) {}
        fn should_stop(&mut self) -> bool {
            false
        }
    }

    fn spec_with<'a>(argv: &'a [String], pattern: Option<&'a regex::Regex>) -> WorkerSpec<'a> {
        WorkerSpec {
            argv,
            workdir: None,
            env: &[],
            env_remove: &[],
            payload: b"",
            item_timeout: Duration::from_secs(5),
            kill_grace: Duration::from_secs(1),
            result_cap_bytes: Some(10),
            stderr_tail_bytes: 4,
            checkpoint_pattern: pattern,
            resume_pattern: None,
            announced_waits_given: None,
            output_drain: OutputDrain::AfterExit,
            session_of_its_own: false,
        }
    }

    #[derive(Default)]
    struct Checkpoints(u64);
    impl WorkerObserver for Checkpoints {
        fn started(&mut self, _pid: u32) {}
        fn checkpoint(&mut self, _line: &str) {
            self.0 += 1;
        }
        fn should_stop(&mut self) -> bool {
            false
        }
    }

    #[test]
    fn capture_counts_checkpoints_and_drops_the_result_over_the_cap() {
        let pattern = regex::Regex::new("^cp").expect("pattern");
        let argv = ["unused".to_string()];
        let spec = spec_with(&argv, Some(&pattern));
        let mut capture = OutputCapture::new(&spec);
        let mut checkpoints = Checkpoints::default();
        capture.accept(Stream::Stdout, b"cp 1\nxx", &mut checkpoints);
        capture.accept(Stream::Stderr, b"cp 2\nstderr", &mut checkpoints);
        assert!(!capture.is_over_cap());
        capture.accept(Stream::Stdout, b"\ncp 3", &mut checkpoints);
        assert!(capture.is_over_cap());
        capture.finish(Stream::Stdout, &mut checkpoints);
        capture.finish(Stream::Stderr, &mut checkpoints);
        let report = capture.into_report(WorkerExit::Code(0), None);
        // Exited before the loop saw the cap crossed: still a failure, not a truncated result.
        assert_eq!(report.stop_reason, Some(StopReason::OutputCapExceeded));
        assert_eq!(checkpoints.0, 3);
        assert_eq!(report.stdout, b"cp 1\nxx\ncp 3");
        assert_eq!(report.stdout_tail, b"cp 1\nxx\ncp 3");
        assert_eq!(report.stderr_tail, b"derr");
        // The outcome and the error line read more than a small tail records.
        assert_eq!(report.stderr_end, b"cp 2\nstderr");
    }

    #[test]
    fn a_window_that_starts_at_a_line_start_keeps_that_line() {
        let mut tail = TailBuffer::new(13);
        tail.push(b"first line\nlimit hit 42\n");
        let (kept, inside) = tail.window();
        assert_eq!((kept.as_slice(), inside), (&b"limit hit 42\n"[..], false));
        // Before: dropped as if cut, and the limit line with it.
        assert_eq!(whole_lines(kept, inside, true), b"limit hit 42\n");
        // Cut through many pushes, the window exactly the limit line: kept whole (before,
        // with no password to mask the buffer held no byte before the window).
        let mut tail = TailBuffer::new(13);
        for _ in 0..50 {
            tail.push(&[b'y'; 7]);
        }
        tail.push(b"\n");
        tail.push(b"limit hit 42\n");
        let (kept, inside) = tail.window();
        assert_eq!(whole_lines(kept, inside, true), b"limit hit 42\n");
        let mut tail = TailBuffer::new(16);
        tail.push(b"first line\nlimit hit 42\n");
        let (kept, inside) = tail.window();
        assert!(inside);
        assert_eq!(whole_lines(kept, inside, true), b"limit hit 42\n");
    }

    #[test]
    fn the_end_read_starts_at_a_whole_line_whatever_the_recorded_tail() {
        let argv = ["unused".to_string()];
        let spec = spec_with(&argv, None);
        let mut capture = OutputCapture::new(&spec);
        let frame = "    at Object.fn (file:///usr/lib/node_modules/@tool/cli/dist/index.js:17:5)\n";
        let mut stderr = format!("{}\nError: could not open /data/input.csv\n", "x".repeat(READ_TAIL_BYTES));
        stderr.push_str(&frame.repeat(30));
        capture.accept(Stream::Stderr, stderr.as_bytes(), &mut Silent);
        capture.accept(Stream::Stdout, format!("{}a", "é".repeat(READ_TAIL_BYTES)).as_bytes(), &mut Silent);
        let report = capture.into_report(WorkerExit::Code(1), None);
        // Recorded: the last 4 bytes. Read: from the message's line, the cut line before it dropped.
        assert_eq!(report.stderr_tail, b":5)\n");
        let end = String::from_utf8(report.stderr_end).unwrap();
        assert!(end.starts_with("Error: could not open /data/input.csv\n"), "{end:.80}");
        // One line cut on the left, no whole line in the window: none of its words is read
        // (an 80 KiB one-line answer whose end quotes a limit is no limit message).
        assert_eq!(report.stdout_end, crate::quota::CUT_LINE);
    }

    #[derive(Default)]
    struct Tokens(Vec<String>);
    impl WorkerObserver for Tokens {
        fn started(&mut self, _pid: u32) {}
        fn checkpoint(&mut self, _line: &str) {}
        fn resume_token(&mut self, token: &str) {
            self.0.push(token.to_string());
        }
        fn should_stop(&mut self) -> bool {
            false
        }
    }

    #[test]
    fn resume_tokens_are_handed_on_as_their_lines_arrive() {
        let resume = regex::Regex::new(r"^::resume::\s*(\S+)").expect("pattern");
        let argv = ["unused".to_string()];
        let spec = WorkerSpec {
            resume_pattern: Some(&resume),
            result_cap_bytes: Some(1024),
            ..spec_with(&argv, None)
        };
        let mut capture = OutputCapture::new(&spec);
        let mut tokens = Tokens::default();
        capture.accept(Stream::Stdout, b"work\n::resume:: abc", &mut tokens);
        assert!(tokens.0.is_empty(), "not before the line is complete");
        capture.accept(Stream::Stdout, b"-1\n", &mut tokens);
        assert_eq!(tokens.0, ["abc-1"]);
        capture.accept(Stream::Stderr, b"say ::resume:: no\n::resume::\n::resume:: x; rm -rf /", &mut tokens);
        capture.finish(Stream::Stderr, &mut tokens);
        assert_eq!(tokens.0, ["abc-1", "x;"]);
    }

    #[test]
    fn a_resume_line_that_holds_the_database_password_hands_on_a_masked_token() {
        // Before: the token, cut at the password's space, was no longer recognised as it,
        // and the rejected-token event and warning held its first part.
        crate::error::register_secret("Rt5:x@y/%41 s#?&p");
        let resume = regex::Regex::new(r"^::resume::\s*(\S+)").expect("pattern");
        let argv = ["unused".to_string()];
        let spec = WorkerSpec { resume_pattern: Some(&resume), ..spec_with(&argv, None) };
        let mut capture = OutputCapture::new(&spec);
        let mut tokens = Tokens::default();
        capture.accept(
            Stream::Stdout,
            b"::resume:: Rt5:x@y/%41 s#?&p\n::resume:: Rt5:x@y/%41\n",
            &mut tokens,
        );
        assert_eq!(tokens.0, ["***", "Rt5:x@y/%41"], "only a line holding the whole password is masked");
    }

    #[test]
    fn empty_command_and_missing_workdir_are_refused_before_spawning() {
        let error = run_worker(&spec_with(&[], None), &mut Silent).expect_err("empty");
        assert!(matches!(error, SpawnError::EmptyCommand), "{error:?}");
        let argv = ["true".to_string()];
        let missing = Path::new("/nonexistent/drainctl-workdir");
        let spec = WorkerSpec { workdir: Some(missing), ..spec_with(&argv, None) };
        let error = run_worker(&spec, &mut Silent).expect_err("missing workdir");
        assert!(matches!(error, SpawnError::WorkdirMissing { .. }), "{error:?}");
        assert!(error.to_string().contains("/nonexistent/drainctl-workdir"), "{error}");
    }

    fn shell(script: &str) -> Vec<String> {
        vec!["sh".to_string(), "-c".to_string(), script.to_string()]
    }

    fn roomy<'a>(argv: &'a [String], payload: &'a [u8]) -> WorkerSpec<'a> {
        WorkerSpec {
            payload,
            result_cap_bytes: Some(crate::config::defaults::DEFAULT_MAX_RESULT_BYTES),
            stderr_tail_bytes: 1024,
            item_timeout: Duration::from_secs(30),
            ..spec_with(argv, None)
        }
    }

    #[test]
    fn a_silent_leftover_holding_stdout_at_the_timeout_is_named_as_the_cause() {
        // Done in time, a silent leftover holding stdout at the timeout: that is the cause
        // said (before: "timed out").
        let argv = shell("echo answer; ( sleep 30 ) & exit 0");
        let spec = WorkerSpec { item_timeout: Duration::from_secs(1), ..roomy(&argv, b"") };
        let report = run_worker(&spec, &mut Silent).expect("spawn");
        assert_eq!(report.stop_reason, Some(StopReason::OutputHeld));
    }

    #[test]
    fn a_worker_that_moves_itself_out_of_its_group_is_still_stopped_at_its_timeout() {
        // Into its parent's group (the pass's). Before: only its own, empty, group was
        // signalled, and the pass waited for it to exit by itself.
        let argv: Vec<String> =
            ["perl", "-e", "setpgrp(0, getpgrp(getppid())) or die; sleep 30"].map(String::from).to_vec();
        let spec = WorkerSpec {
            item_timeout: Duration::from_millis(500),
            kill_grace: Duration::from_millis(500),
            ..roomy(&argv, b"")
        };
        let started = Instant::now();
        let report = run_worker(&spec, &mut Silent).expect("spawn");
        assert_eq!(report.stop_reason, Some(StopReason::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
    }

    #[test]
    fn a_worker_in_a_session_of_its_own_cannot_move_itself_out_of_its_group() {
        // Into its parent's group (the pass's): it leads a session of its own, and neither
        // a session leader nor a process of another session may join that group.
        let argv: Vec<String> =
            ["perl", "-e", "setpgrp(0, getpgrp(getppid())) or die qq(refused\\n); sleep 30"]
                .map(String::from)
                .to_vec();
        let spec = WorkerSpec {
            item_timeout: Duration::from_secs(20),
            session_of_its_own: true,
            ..roomy(&argv, b"")
        };
        let started = Instant::now();
        let report = run_worker(&spec, &mut Silent).expect("spawn");
        assert_ne!(report.exit, WorkerExit::Code(0));
        assert!(String::from_utf8_lossy(&report.stderr_tail).contains("refused"), "{report:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "waited {:?}", started.elapsed());
    }

    #[test]
    fn a_large_payload_reaches_a_worker_that_reads_it_all() {
        let payload = vec![b'x'; 1024 * 1024 + 7];
        let argv = shell("wc -c");
        let report = run_worker(&roomy(&argv, &payload), &mut Silent).expect("spawn");
        assert_eq!(report.exit, WorkerExit::Code(0));
        assert_eq!(String::from_utf8_lossy(&report.stdout).trim(), "1048583");
    }

    /// Waits in `started`, as a pass does for its round trip between two workers, until
    /// the worker has read its whole payload and written it to `copy` (at most 10 s).
    struct WaitsForTheCopy {
        copy: std::path::PathBuf,
        seen: Option<Vec<u8>>,
    }
    impl WorkerObserver for WaitsForTheCopy {
        fn started(&mut self, _pid: u32) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(copy) = std::fs::read(&self.copy) {
                    self.seen = Some(copy);
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        fn checkpoint(&mut self, _line: &str) {}
        fn should_stop(&mut self) -> bool {
            false
        }
    }

    #[test]
    fn the_worker_has_its_payload_while_the_observer_handles_its_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("copy");
        // The copy appears (renamed into place) once stdin is read to its end.
        let argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            r#"cat > "$0.part" && mv "$0.part" "$0""#.to_string(),
            copy.display().to_string(),
        ];
        let mut observer = WaitsForTheCopy { copy, seen: None };
        let report = run_worker(&roomy(&argv, b"{\"n\": 1}"), &mut observer).expect("spawn");
        assert_eq!(report.exit, WorkerExit::Code(0));
        assert_eq!(
            observer.seen.as_deref(),
            Some(&b"{\"n\": 1}"[..]),
            "payload not delivered before `started`"
        );
    }

    /// Asks to stop once `after` has passed since it was made.
    struct StopsAfter(Instant);
    impl WorkerObserver for StopsAfter {
        fn started(&mut self, _pid: u32) {}
        fn checkpoint(&mut self, _line: &str) {}
        fn should_stop(&mut self) -> bool {
            Instant::now() >= self.0
        }
    }

    #[test]
    fn what_is_left_of_the_group_after_the_worker_is_stopped_when_asked_and_a_heartbeat_is_no_result() {
        // A child the worker leaves writing on stderr: before, its writes kept the pass
        // waiting until item_timeout (recorded as a timeout); a stop asked for meanwhile
        // (SIGTERM to the pass) was not heard.
        let argv = shell("(while :; do echo tick >&2; sleep 0.2; done) & echo answer; exit 0");
        let spec = WorkerSpec { item_timeout: Duration::from_secs(20), ..roomy(&argv, b"") };
        let started = Instant::now();
        let report = run_worker(&spec, &mut Silent).expect("spawn");
        assert_eq!((report.exit, report.stop_reason), (WorkerExit::Code(0), None));
        assert_eq!(report.stdout, b"answer\n");
        assert!(started.elapsed() < Duration::from_secs(15), "waited {:?}", started.elapsed());
        // A helper writing the result, slowly: a stop asked for ends it as it would the worker.
        let argv = shell("(while :; do echo more; sleep 0.2; done) & echo answer; exit 0");
        let spec = WorkerSpec { item_timeout: Duration::from_secs(20), ..roomy(&argv, b"") };
        let mut observer = StopsAfter(Instant::now() + Duration::from_millis(600));
        let report = run_worker(&spec, &mut observer).expect("spawn");
        assert_eq!(report.stop_reason, Some(StopReason::Interrupted));
    }

    #[test]
    fn a_worker_that_never_reads_its_large_payload_is_not_waited_for() {
        // Far more than a pipe holds: a blocking write would never return.
        let payload = vec![b'x'; 4 * 1024 * 1024];
        let argv = shell("echo done");
        let report = run_worker(&roomy(&argv, &payload), &mut Silent).expect("spawn");
        assert_eq!((report.exit, report.stop_reason), (WorkerExit::Code(0), None));
        assert_eq!(report.stdout, b"done\n");
    }

    #[test]
    fn without_a_pidfd_the_exit_and_all_output_are_still_seen() {
        let argv = shell("printf 'out\\n'; sleep 0.2; printf 'err\\n' >&2; exit 3");
        let spec = roomy(&argv, b"");
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn");
        let group = libc::pid_t::try_from(child.id()).expect("pid");
        let mut pipes = WorkerPipes::new(&mut child, spec.payload).expect("pipes");
        pipes.exit_fd = None;
        let report = supervise(&spec, &mut Silent, child, group, pipes, Instant::now());
        assert_eq!(report.exit, WorkerExit::Code(3));
        assert_eq!(report.stdout, b"out\n");
        assert_eq!(report.stderr_tail, b"err\n");
    }
}
