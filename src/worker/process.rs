//! Processes seen from the outside: is a recorded pid still the process that was recorded,
//! is a recorded host this one, and how to end a whole process group politely and then
//! firmly.
//!
//! A run row records a pid together with the process start time (clock ticks since boot,
//! field 22 of `/proc/<pid>/stat`), so that a pid reused by an unrelated process is not
//! mistaken for the run. A zombie counts as dead: it does no work and holds no locks.
//! Ending a group means SIGTERM to every member, a grace period polled every 50 ms, then
//! SIGKILL to whatever is left. Linux only.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often `terminate_group` checks whether the group has vanished.
const GROUP_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Start `command` so that no supervisor of ours can take it down with it: a short-lived
/// intermediate child calls `setsid()` and forks the real process, which calls `setsid()`
/// again (so its pid is its own session and process group) and execs; the intermediate
/// writes the grandchild's pid into a pipe and exits at once, and is reaped here. The
/// started process is re-parented to init (or the nearest subreaper) before this returns,
/// so a tool that kills a process tree by parent pid (pm2's treekill) or a cgroup of ours
/// does not find it among our descendants (docs/operations.md). Returns the started
/// process's pid; an exec failure is reported as an error, as with `Command::spawn`.
pub fn spawn_detached(command: &mut std::process::Command) -> io::Result<u32> {
    use std::io::Read;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;

    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_fd = fds[1];
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (setsid, fork, write, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                0 => {
                    // The grandchild: its own session again, then exec. The pipe's write
                    // end closes on exec.
                    if libc::setsid() == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                }
                grandchild => {
                    let bytes = grandchild.to_ne_bytes();
                    let written = libc::write(write_fd, bytes.as_ptr().cast(), bytes.len());
                    libc::_exit(if written == bytes.len() as isize { 0 } else { 1 });
                }
            }
        });
    }
    let spawned = command.spawn();
    // Our copy of the write end must be closed before reading, or the read never ends.
    drop(write_end);
    let mut intermediate = spawned?;
    let status = intermediate.wait()?;
    let mut bytes = [0u8; std::mem::size_of::<libc::pid_t>()];
    let mut reader = std::fs::File::from(read_end);
    reader.read_exact(&mut bytes).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("the detached process did not report its pid ({status}): {error}"),
        )
    })?;
    let pid = libc::pid_t::from_ne_bytes(bytes);
    u32::try_from(pid).map_err(|_| io::Error::other(format!("the detached process reported pid {pid}")))
}

/// What `terminate_group` had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminateOutcome {
    /// No live member of the group existed when we looked.
    AlreadyGone,
    /// SIGTERM was sent and the group vanished within the grace period.
    Terminated,
    /// The group outlived the grace period and was sent SIGKILL.
    Killed,
}

/// The two fields of `/proc/<pid>/stat` that liveness checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    /// Field 3: R, S, D, Z, X, ...
    state: char,
    /// Field 4: the parent's pid.
    parent: i64,
    /// Field 5: the process group id.
    process_group: i64,
    /// Field 6: the session id.
    session: i64,
    /// Field 22: start time in clock ticks since boot.
    start_time_ticks: u64,
}

/// Parse the contents of `/proc/<pid>/stat`. The command name (field 2) is wrapped in
/// parentheses and may itself contain spaces and parentheses, so fields are counted from
/// the last `)`.
fn parse_stat(contents: &str) -> Option<StatFields> {
    let after_command = &contents[contents.rfind(')')? + 1..];
    // Fields after the command name start at field 3.
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    let field = |number: usize| fields.get(number.checked_sub(3)?).copied();
    let mut state_chars = field(3)?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    Some(StatFields {
        state,
        parent: field(4)?.parse().ok()?,
        process_group: field(5)?.parse().ok()?,
        session: field(6)?.parse().ok()?,
        start_time_ticks: field(22)?.parse().ok()?,
    })
}

/// Room for a whole `stat` line: 52 fields of at most 20 digits and a name of at most 64
/// bytes.
const STAT_LINE_BYTES: usize = 2048;

/// Read and parse a `stat` file, usually in one read: /proc reports no size, and reading it
/// as a string took a size query and six reads of a growing buffer for the line read
/// beside every worker. The line ends with a newline; a line that does not fit is no line.
fn read_stat(path: &Path) -> Option<StatFields> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut line = [0u8; STAT_LINE_BYTES];
    let mut len = 0;
    while len < line.len() && !line[..len].ends_with(b"\n") {
        match file.read(&mut line[len..]) {
            Ok(0) => break,
            Ok(read) => len += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    if !line[..len].ends_with(b"\n") {
        return None;
    }
    parse_stat(std::str::from_utf8(&line[..len]).ok()?)
}

/// The `stat` of process `pid`; None when it is gone (or unreadable).
fn stat_of(pid: impl std::fmt::Display) -> Option<StatFields> {
    read_stat(&Path::new("/proc").join(pid.to_string()).join("stat"))
}

/// The pids `/proc` lists, with their `stat` (those gone meanwhile left out).
fn processes() -> io::Result<impl Iterator<Item = (u32, StatFields)>> {
    Ok(std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, stat_of(pid)?))))
}

fn is_dead_state(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

/// Make this process's memory and environment unreadable to the other processes of its
/// user (`PR_SET_DUMPABLE` 0: its `/proc/<pid>/environ`, `mem` and `fd` become root's, and
/// no core file is written), so that a worker or notifier, which runs as the same user,
/// cannot read the database URL or password drainctl was started with from its parent
/// (docs/guarantees.md). The programs drainctl starts are dumpable again once they exec.
/// Called first thing, before anything else runs; returns the failure, for the caller to
/// log once logging is set up.
pub fn hide_from_other_processes() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) reads no pointers and changes only that flag.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mark every descriptor this process inherited beyond stdin, stdout and stderr (pm2's IPC
/// socket, a pipe of the calling shell) close-on-exec, so that neither a drain started by
/// `supervise`, nor a worker, nor a notifier receives it (docs/worker-contract.md). A
/// descriptor that cannot be read or marked is logged and left as it is.
pub fn keep_inherited_descriptors_from_children() {
    let entries = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries,
        Err(error) => {
            log::debug!("cannot list the inherited descriptors: {error}");
            return;
        }
    };
    let descriptors: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in descriptors {
        // SAFETY: F_GETFD/F_SETFD on a descriptor number; one that closed meanwhile (the
        // listing's own) fails with EBADF, which is ignored.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags < 0 || flags & libc::FD_CLOEXEC != 0 {
            continue;
        }
        if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
            log::warn!(
                "cannot keep inherited descriptor {fd} from child processes: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// Start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22),
/// `None` if the process does not exist.
pub fn process_start_time(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    stat_of(pid).map(|stat| stat.start_time_ticks)
}

/// Whether process group `pgid`, recorded as the group of the process `pgid` started at
/// `start_time`, can only be that process's group: its leader is still that process (alive
/// or a zombie), or it is gone — the kernel hands out no pid while it is still a process
/// group's id, so live members of a group whose leader is gone are the original group's.
/// False when a process with that pid but another start time exists: the pid was reused,
/// and the group, if any, is someone else's (docs/worker-contract.md, "Crashes are reaped").
pub fn is_recorded_group(pgid: u32, start_time: Option<u64>) -> bool {
    if pgid == 0 {
        return false;
    }
    match stat_of(pgid) {
        None => true,
        Some(stat) => start_time.is_none_or(|expected| expected == stat.start_time_ticks),
    }
}

/// The process groups with a live member in the session whose leader was the process
/// `sid` started at `start_time`, once that leader is gone (no process has the pid, or
/// only its zombie): the kernel hands out no pid while it is still a session's id, so
/// those members are the leader's — a drain started by `supervise` leads its own session,
/// and its workers' groups are in it. Empty while a live process has that pid (the leader
/// itself, or the pid reused) or a zombie of another start time does, and for a process
/// that never led a session (no process has a session id equal to its pid).
pub fn orphaned_session_groups(sid: u32, start_time: Option<u64>) -> Vec<u32> {
    if sid <= 1 {
        return Vec::new();
    }
    if let Some(stat) = stat_of(sid) {
        let is_leaders_zombie =
            is_dead_state(stat.state) && start_time.is_none_or(|expected| expected == stat.start_time_ticks);
        if !is_leaders_zombie {
            return Vec::new();
        }
    }
    let Ok(processes) = processes() else { return Vec::new() };
    let mut groups: Vec<u32> = processes
        .map(|(_, stat)| stat)
        .filter(|stat| stat.session == i64::from(sid) && !is_dead_state(stat.state))
        .filter_map(|stat| u32::try_from(stat.process_group).ok().filter(|group| *group > 1))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// The process group and session of process `pid`, by `/proc`; None when it is gone.
pub fn group_and_session_of(pid: libc::pid_t) -> Option<(i64, i64)> {
    stat_of(pid).map(|stat| (stat.process_group, stat.session))
}

/// The processes whose parent is `parent`, zombies included, by `/proc`.
pub fn children_of(parent: u32) -> io::Result<Vec<u32>> {
    Ok(processes()?.filter(|(_, stat)| stat.parent == i64::from(parent)).map(|(pid, _)| pid).collect())
}

/// True when `pid` is alive and, if `start_time` is given, still has that start time (a
/// different start time means the pid was reused). A zombie counts as dead.
pub fn is_process_alive(pid: u32, start_time: Option<u64>) -> bool {
    if pid == 0 {
        return false;
    }
    match stat_of(pid) {
        None => false,
        Some(stat) => {
            !is_dead_state(stat.state) && start_time.is_none_or(|expected| expected == stat.start_time_ticks)
        }
    }
}

/// Send `signal` to every member of process group `pgid`. `Ok(false)` when the group does
/// not exist (ESRCH); any other failure (EPERM) is an error naming the group.
fn signal_group(pgid: libc::pid_t, signal: libc::c_int) -> io::Result<bool> {
    // SAFETY: kill has no memory-safety preconditions; a negative pid addresses a group.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ESRCH) {
        return Ok(false);
    }
    Err(io::Error::new(error.kind(), format!("cannot send signal {signal} to process group {pgid}: {error}")))
}

/// True while the group has at least one member that is not a zombie. `kill(-pgid, 0)`
/// also counts zombies (a leader that its parent has not reaped yet), so when it says the
/// group exists, `/proc` is consulted to see whether any member is still running.
fn group_has_live_member(pgid: libc::pid_t) -> io::Result<bool> {
    if !signal_group(pgid, 0)? {
        return Ok(false);
    }
    // Without /proc the signal probe is all we have.
    Ok(live_members(i64::from(pgid)).is_none_or(|members| !members.is_empty()))
}

/// The live (not zombie) members of process group `pgid`, by `/proc`; None when `/proc`
/// cannot be read.
fn live_members(pgid: i64) -> Option<Vec<u32>> {
    Some(
        processes()
            .ok()?
            .filter(|(_, stat)| stat.process_group == pgid && !is_dead_state(stat.state))
            .map(|(pid, _)| pid)
            .collect(),
    )
}

/// The live (not zombie) members of process group `pgid`, by `/proc` (none when it cannot
/// be read).
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    live_members(i64::from(pgid)).unwrap_or_default()
}

/// Whether process `pid` was started with `entry` (`NAME=value`) in its environment; None
/// when that cannot be read (gone, or another user's, or not dumpable).
pub fn has_environment_entry(pid: u32, entry: &str) -> Option<bool> {
    has_environment_entries(pid, &[entry])
}

/// Whether process `pid` was started with every one of `wanted` in its environment.
fn has_environment_entries(pid: u32, wanted: &[&str]) -> Option<bool> {
    let environment = std::fs::read(Path::new("/proc").join(pid.to_string()).join("environ")).ok()?;
    Some(
        wanted
            .iter()
            .all(|entry| environment.split(|&byte| byte == 0).any(|found| found == entry.as_bytes())),
    )
}

/// The live processes (pid, start time) other than this one, started at `since` (clock
/// ticks since boot) or later, with all of `wanted` (`NAME=value` each) in their
/// environment, by `/proc`; only their environments are read. A process whose environment
/// cannot be read (another user's, not dumpable) is not among them.
pub fn processes_with_environment_entries(since: u64, wanted: &[&str]) -> Vec<(u32, u64)> {
    let Ok(processes) = processes() else { return Vec::new() };
    let own = std::process::id();
    processes
        .filter(|(pid, stat)| *pid != own && !is_dead_state(stat.state) && stat.start_time_ticks >= since)
        .filter(|(pid, _)| has_environment_entries(*pid, wanted) == Some(true))
        .map(|(pid, stat)| (pid, stat.start_time_ticks))
        .collect()
}

/// Whether process `pid` runs the program this process runs, by the name the kernel keeps
/// for it (`/proc/<pid>/comm`, readable whoever runs it).
pub fn runs_this_program(pid: u32) -> bool {
    let comm = |path: &Path| std::fs::read(path).ok();
    match (comm(Path::new("/proc/self/comm")), comm(&Path::new("/proc").join(pid.to_string()).join("comm"))) {
        (Some(own), Some(theirs)) => own == theirs,
        _ => false,
    }
}

/// True while process group `pgid` has a member that is not a zombie; an error (EPERM)
/// when it cannot be probed.
pub fn group_is_alive(pgid: u32) -> io::Result<bool> {
    match libc::pid_t::try_from(pgid) {
        Ok(group) if group > 1 => group_has_live_member(group),
        _ => Ok(false),
    }
}

/// Poll until the group has no live member or `deadline` passes; true when it vanished.
fn wait_for_group_to_vanish(pgid: libc::pid_t, deadline: Instant) -> io::Result<bool> {
    loop {
        if !group_has_live_member(pgid)? {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        std::thread::sleep(GROUP_POLL_INTERVAL.min(deadline - now));
    }
}

/// SIGTERM the process group `pgid`, wait up to `grace` (polling every 50 ms) for it to
/// vanish, then SIGKILL it. A permission error (EPERM) is returned, never swallowed.
///
/// # Errors
/// `InvalidInput` for group ids 0 and 1 (they would address our own group or every
/// process) and ids beyond `pid_t`; the OS error (typically EPERM) when a signal cannot be
/// sent, with the group id in the message.
pub fn terminate_group(pgid: u32, grace: Duration) -> Result<TerminateOutcome, io::Error> {
    let group = libc::pid_t::try_from(pgid).ok().filter(|group| *group > 1).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "process group id {pgid} cannot be signalled; expected a group id from 2 to {}",
                libc::pid_t::MAX
            ),
        )
    })?;
    if !group_has_live_member(group)? {
        return Ok(TerminateOutcome::AlreadyGone);
    }
    if !signal_group(group, libc::SIGTERM)? {
        return Ok(TerminateOutcome::AlreadyGone);
    }
    let now = Instant::now();
    // A grace too long to represent is capped at a year: effectively "wait for it".
    let deadline = now.checked_add(grace).unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
    let vanished = wait_for_group_to_vanish(group, deadline)?;
    if vanished || !signal_group(group, libc::SIGKILL)? {
        return Ok(TerminateOutcome::Terminated);
    }
    Ok(TerminateOutcome::Killed)
}

/// SIGTERM one process (checked against its recorded start time, so a reused pid is
/// never signalled), wait up to `grace` for it to exit, then SIGKILL it.
pub fn terminate_process(
    pid: u32,
    start_time: Option<u64>,
    grace: Duration,
) -> Result<TerminateOutcome, io::Error> {
    let target = libc::pid_t::try_from(pid).ok().filter(|pid| *pid > 1).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("process id {pid} cannot be signalled"))
    })?;
    let send = |signal: libc::c_int| -> Result<bool, io::Error> {
        if !is_process_alive(pid, start_time) {
            return Ok(false);
        }
        // SAFETY: kill(2) with a positive pid and a valid signal number has no memory effects.
        if unsafe { libc::kill(target, signal) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ESRCH) {
            Ok(false)
        } else {
            Err(io::Error::new(error.kind(), format!("cannot signal process {pid}: {error}")))
        }
    };
    if !send(libc::SIGTERM)? {
        return Ok(TerminateOutcome::AlreadyGone);
    }
    let now = Instant::now();
    // A grace too long to represent is capped at a year: effectively "wait for it".
    let deadline = now.checked_add(grace).unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
    while Instant::now() < deadline {
        if !is_process_alive(pid, start_time) {
            return Ok(TerminateOutcome::Terminated);
        }
        std::thread::sleep(GROUP_POLL_INTERVAL);
    }
    if send(libc::SIGKILL)? {
        Ok(TerminateOutcome::Killed)
    } else {
        Ok(TerminateOutcome::Terminated)
    }
}

/// This process as `<pid>:<start time>` (clock ticks since boot, as runs record it): the
/// `DRAIN_PROCESS` a drain hands its workers, which no other process of this host ever
/// has; None when `/proc` does not tell the start time.
pub fn own_process_mark() -> Option<String> {
    static MARK: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    MARK.get_or_init(|| {
        let pid = std::process::id();
        process_start_time(pid).map(|start| format!("{pid}:{start}"))
    })
    .clone()
}

/// This process's machine and PID namespace, `<boot id>/<pid namespace>` (for example
/// `afe8…5f39/pid:[4026531836]`): two hosts, or two containers, may share a host name, but
/// a pid means something only where both of these are the same. None when `/proc` does
/// not tell.
pub fn host_id() -> Option<String> {
    static HOST_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOST_ID
        .get_or_init(|| {
            let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
            Some(format!("{}/{}", boot.trim(), namespace.display()))
        })
        .clone()
}

/// Whether a process recorded as running on `host` (with `host_id`, when recorded) is one
/// this process can probe and signal: the same host name and, when the record has one, the
/// same boot and PID namespace. Anything else is another host's, judged by liveness alone
/// and never signalled (docs/operations.md, "Several hosts").
pub fn is_this_host(host: &str, host_id: Option<&str>) -> bool {
    host == host_name() && host_id.is_none_or(|recorded| Some(recorded) == self::host_id().as_deref())
}

/// This host's name (`gethostname`), `"unknown-host"` if it cannot be read.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the pointer and length describe `buffer`, which outlives the call.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return "unknown-host".to_string();
    }
    let length = buffer.iter().position(|byte| *byte == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..length]).trim().to_string();
    if name.is_empty() {
        "unknown-host".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_reads_state_parent_group_session_and_start_time() {
        // Fields 7 to 21, between the session id and the start time.
        let tail = "34816 123 4194560 100 0 0 0 1 2 0 0 20 0 1 0";
        let cases: Vec<(String, Option<StatFields>)> = vec![
            (
                format!("123 (bash) S 4242 123 123 {tail} 98765 1000 200"),
                Some(StatFields {
                    state: 'S',
                    parent: 4242,
                    process_group: 123,
                    session: 123,
                    start_time_ticks: 98765,
                }),
            ),
            (
                format!("77 (a b) c)) R 1 70 70 {tail} 42 1000 200"),
                Some(StatFields {
                    state: 'R',
                    parent: 1,
                    process_group: 70,
                    session: 70,
                    start_time_ticks: 42,
                }),
            ),
            (
                format!("9 ((x)) Z 1 9 9 {tail} 5 0 0"),
                Some(StatFields { state: 'Z', parent: 1, process_group: 9, session: 9, start_time_ticks: 5 }),
            ),
            ("".to_string(), None),
            ("12 (short) S 1 2".to_string(), None),
            ("12 no parenthesis S 1 2 3".to_string(), None),
            (format!("12 (bad) S 1 notanumber 3 {tail} 5 0 0"), None),
            (format!("12 (bad) S 1 12 3 {tail} -5 0 0"), None),
        ];
        for (contents, expected) in cases {
            assert_eq!(parse_stat(&contents), expected, "stat line {contents:?}");
        }
    }

    #[test]
    fn read_stat_reads_a_whole_line_and_nothing_else() {
        let own = Path::new("/proc/self/stat");
        let whole = std::fs::read_to_string(own).expect("/proc/self/stat");
        // Its state may change between the two reads (running, sleeping): the rest may not.
        let same_state =
            |fields: Option<StatFields>| fields.map(|fields| StatFields { state: 'R', ..fields });
        assert_eq!(
            same_state(read_stat(own)),
            same_state(parse_stat(&whole)),
            "this process's own stat line"
        );
        let tail = "34816 123 4194560 100 0 0 0 1 2 0 0 20 0 1 0";
        let line = format!("77 (a b) c)) R 1 70 70 {tail} 42 1000 200");
        let folder = tempfile::tempdir().expect("temporary folder");
        let file = folder.path().join("stat");
        let cases = [
            (format!("{line}\n"), parse_stat(&line)),
            // No newline: a line cut short is no line.
            (line.clone(), None),
            // Longer than any stat line: not read past the room for one.
            (format!("{line}{}\n", " 0".repeat(STAT_LINE_BYTES)), None),
        ];
        for (contents, expected) in cases {
            std::fs::write(&file, &contents).expect("write the stat file");
            assert_eq!(read_stat(&file), expected, "stat file of {} bytes", contents.len());
        }
        assert_eq!(read_stat(&folder.path().join("missing")), None);
    }

    #[test]
    fn dead_states_are_zombie_and_dead() {
        for (state, expected) in
            [('Z', true), ('X', true), ('x', true), ('R', false), ('S', false), ('D', false), ('T', false)]
        {
            assert_eq!(is_dead_state(state), expected, "state {state}");
        }
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let pid = std::process::id();
        let start_time = process_start_time(pid).expect("own start time");
        assert!(is_process_alive(pid, None));
        assert!(is_process_alive(pid, Some(start_time)));
        assert!(!is_process_alive(pid, Some(start_time + 1)));
        assert!(!is_process_alive(0, None));
        assert_eq!(process_start_time(0), None);
    }

    #[test]
    fn a_group_is_the_recorded_ones_unless_its_pid_was_reused() {
        let pid = std::process::id();
        let start_time = process_start_time(pid).expect("own start time");
        assert!(is_recorded_group(pid, Some(start_time)));
        assert!(is_recorded_group(pid, None));
        assert!(!is_recorded_group(pid, Some(start_time + 1)), "a reused pid leads another group");
        // A pid no process has: its group, if it has members, is the original one.
        let mut gone = std::process::Command::new("true").spawn().expect("spawn true");
        let gone_pid = gone.id();
        gone.wait().expect("wait for true");
        assert!(is_recorded_group(gone_pid, Some(start_time)));
        assert!(!is_recorded_group(0, None));
    }

    #[test]
    fn a_live_or_reused_session_leader_has_no_orphaned_groups() {
        let pid = std::process::id();
        let start_time = process_start_time(pid).expect("own start time");
        assert!(orphaned_session_groups(pid, Some(start_time)).is_empty(), "the leader lives");
        assert!(orphaned_session_groups(pid, Some(start_time + 1)).is_empty(), "the pid was reused");
        assert!(orphaned_session_groups(1, None).is_empty());
    }

    #[test]
    fn terminate_group_refuses_our_group_and_everyone() {
        for pgid in [0u32, 1, u32::MAX] {
            let error = terminate_group(pgid, Duration::ZERO).expect_err("must refuse");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "pgid {pgid}");
            assert!(error.to_string().contains(&pgid.to_string()), "{error}");
        }
    }

    #[test]
    fn a_run_of_another_boot_or_pid_namespace_is_not_this_hosts() {
        let host = host_name();
        let this = host_id().expect("/proc tells the boot id and PID namespace");
        assert!(is_this_host(&host, Some(&this)));
        assert!(is_this_host(&host, None), "a run recorded without an identity goes by its name");
        assert!(!is_this_host(&host, Some("another-boot/pid:[4026531836]")));
        assert!(!is_this_host("another-host", Some(&this)));
    }

    #[test]
    fn a_detached_process_is_not_our_child_and_reports_its_own_pid() {
        let mut command = std::process::Command::new("sleep");
        command.arg("5");
        let pid = spawn_detached(&mut command).unwrap();
        assert!(is_process_alive(pid, None));
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after.split(' ').collect();
        let parent: u32 = fields[1].parse().unwrap();
        let group: u32 = fields[2].parse().unwrap();
        let session: u32 = fields[3].parse().unwrap();
        assert_ne!(parent, std::process::id(), "the detached process is still our child");
        assert_eq!((group, session), (pid, pid), "its own process group and session");
        // SAFETY: plain kill of the pid we started.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }

    #[test]
    fn a_detached_program_that_does_not_exist_is_an_error() {
        let mut command = std::process::Command::new("/nonexistent/drainctl-test-program");
        assert!(spawn_detached(&mut command).is_err());
    }

    #[test]
    fn host_name_is_not_empty() {
        assert!(!host_name().is_empty());
    }
}
