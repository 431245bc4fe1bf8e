//! The descendants a worker leaves outside its process group. A child that calls `setsid`
//! (Node's `detached: true`, a daemon's double fork) leaves the worker's group, so the
//! group's signals miss it; it would live on after its worker, holding the worker's
//! output pipes open or its item's files. A drain pass therefore becomes the reaper of
//! its descendants' orphans (`PR_SET_CHILD_SUBREAPER`): such a child becomes the pass's
//! own child once its parent exits, instead of init's, and is killed once the worker has
//! been reaped (docs/worker-contract.md, "Process group").
//!
//! The pass starts its workers one at a time from its main thread, and asks for its
//! adopted children only after it reaped the worker it started — never while a worker
//! (or a notifier) runs — so every child it has then is a worker's descendant. An adopted
//! child cannot be reaped by anyone else, so its pid (and the id of a group it leads)
//! stays ours until we reap it: signalling it can never hit a process that merely reused
//! the pid.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether this process adopts orphaned descendants ([`adopt`]). Only a drain pass does:
/// another process's children (a test harness's, `supervise`'s) are never swept.
static ADOPTS: AtomicBool = AtomicBool::new(false);

/// Kills that failed, for the pass to record ([`take_failures`]).
static FAILURES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Workers started and not reaped yet ([`Running`]). While one runs, its children are not
/// orphans and it is not one: nothing is swept.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A worker from its start until it has been reaped: no sweep meanwhile.
pub struct Running {
    _private: (),
}

impl Running {
    pub fn started() -> Running {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running { _private: () }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long a pass's last sweep waits for adopted children to die and for their own
/// children, orphaned in turn, to reach it.
const LAST_SWEEP_LIMIT: Duration = Duration::from_millis(500);
/// The same wait after each worker: a child killed in the worker's group may have started
/// one outside it, which reaches the pass only as its parent dies.
const WORKER_SWEEP_LIMIT: Duration = Duration::from_millis(200);
const SWEEP_POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Make this process the reaper of its descendants' orphans, for the rest of its life.
/// Returns a guard whose drop makes the last sweep ([`Adopted::drop`]).
///
/// # Errors
/// The `prctl` failure; the caller logs it and runs without (children that leave their
/// worker's group are then out of reach, as they were before).
pub fn adopt() -> io::Result<Adopted> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) reads no pointers and sets only that flag.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    ADOPTS.store(true, Ordering::SeqCst);
    Ok(Adopted { _private: () })
}

/// The pass's adoption; dropping it (the pass ends, however) kills what is left and waits
/// up to [`LAST_SWEEP_LIMIT`] for it to be gone, so that nothing is handed on to init.
pub struct Adopted {
    _private: (),
}

impl Drop for Adopted {
    fn drop(&mut self) {
        sweep(None, LAST_SWEEP_LIMIT);
    }
}

/// Once a worker (leader of process group `group`) has been reaped: kill what it left
/// that is now this process's, and wait up to [`WORKER_SWEEP_LIMIT`] for all of it to be
/// gone — killing, meanwhile, what reaches us as its parent dies.
pub fn end_left_by(group: libc::pid_t) {
    sweep(Some(group), WORKER_SWEEP_LIMIT);
}

/// [`end_adopted`] until nothing adopted is left or `limit` passes; what is left then is
/// logged, and ended by a later sweep.
fn sweep(group: Option<libc::pid_t>, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let left = end_adopted(group);
        if left == 0 {
            return;
        }
        if Instant::now() >= deadline {
            log::warn!("{left} process(es) left by workers did not end within {limit:?}; they are killed again later");
            return;
        }
        std::thread::sleep(SWEEP_POLL_INTERVAL);
    }
}

/// Kill every child this process adopted (SIGKILL; a child that leads its own process
/// group takes its group with it) and reap those that have died. A child in `group` (the
/// worker's, already sent SIGKILL whole) is only reaped. Does nothing while a worker runs
/// (see [`Running`]). Returns how many children are still to die: those signalled (or in
/// `group`) and not reaped yet; 0 when this process does not adopt orphans. A child the
/// kernel will not let us kill is logged and recorded once ([`take_failures`]) and not
/// waited for.
pub fn end_adopted(group: Option<libc::pid_t>) -> usize {
    if !ADOPTS.load(Ordering::SeqCst) || RUNNING.load(Ordering::SeqCst) > 0 {
        return 0;
    }
    let children = match children() {
        Ok(children) => children,
        Err(error) => {
            log::warn!("cannot list the processes workers left behind: {error}");
            return 0;
        }
    };
    // The children already dealt with and not reaped yet, each with whether it is to die
    // (signalled, or in the worker's group) or could not be killed: each is signalled and
    // logged once.
    static HANDLED: Mutex<Vec<(libc::pid_t, bool)>> = Mutex::new(Vec::new());
    let mut handled = HANDLED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    handled.retain(|(pid, _)| children.contains(pid));
    let (mut left, mut signalled) = (0, Vec::new());
    for child in children {
        if reap(child) {
            handled.retain(|&(pid, _)| pid != child);
            continue;
        }
        let dies = match handled.iter().find(|(pid, _)| *pid == child) {
            Some(&(_, dies)) => dies,
            None => {
                let dies = end_child(child, group, &mut signalled);
                handled.push((child, dies));
                dies
            }
        };
        left += usize::from(dies);
    }
    if !signalled.is_empty() {
        const NAMED: usize = 10;
        let more = signalled.len().saturating_sub(NAMED);
        signalled.truncate(NAMED);
        log::info!(
            "killed {} process(es) left by a worker outside its process group: {}{}",
            signalled.len() + more,
            signalled.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        );
    }
    left
}

/// Kill `child` with its process group where that group is the worker's descendants'
/// alone, else `child` alone — unless it is in `group`, already killed; its description
/// goes to `signalled`. False when the kill failed: it will not die.
///
/// A group is theirs alone when `child` leads it, or when it lies in a session other than
/// this process's: a session cannot be joined, only made (`setsid`), so every process of
/// a session an adopted child is in descends from a worker. Killing that group whole ends a
/// process that forks and exits to change its pid (the kernel delivers a group's signal
/// to the children it is forking too), which a kill of the pid seen would miss as it
/// moves on. A group of this process's own session may be another's (a child may join
/// any group of its session): only the child is killed there.
fn end_child(child: libc::pid_t, group: Option<libc::pid_t>, signalled: &mut Vec<String>) -> bool {
    let found = super::process::group_and_session_of(child);
    let child_group = found.map(|(group, _)| group);
    if group.is_some_and(|group| child_group == Some(i64::from(group))) {
        return true;
    }
    // SAFETY: getsid(0) and getpgrp() read this process's own ids; no pointers.
    let own = unsafe { (i64::from(libc::getpgrp()), i64::from(libc::getsid(0))) };
    let whole_group = found.and_then(|ids| group_to_kill(child, ids, own));
    match kill(whole_group.map_or(child, |group| -group)) {
        Ok(()) => {
            signalled.push(match whole_group {
                Some(group) if group == child => format!("{child} with its group"),
                Some(group) => format!("{child} with its group {group}"),
                None => child.to_string(),
            });
            true
        }
        // Gone meanwhile: reaped on the next look.
        Err(error) if error.raw_os_error() == Some(libc::ESRCH) => true,
        Err(error) => {
            let message = format!(
                "could not kill process {child}, left by a worker outside its process group: {error}"
            );
            log::warn!("{message}");
            FAILURES.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(message);
            false
        }
    }
}

/// The process group to kill with adopted `child`, whose (group, session) are `ids`, this
/// process's `own`: its group when it leads it, or when the group lies in a session other
/// than this process's (see [`end_child`]); None: the child alone.
fn group_to_kill(child: libc::pid_t, ids: (i64, i64), own: (i64, i64)) -> Option<libc::pid_t> {
    let ((group, session), (own_group, own_session)) = (ids, own);
    let is_theirs = group == i64::from(child) || (session != own_session && group != own_group && group > 1);
    is_theirs.then(|| libc::pid_t::try_from(group).ok()).flatten()
}

/// Kills that failed (other than for a process already gone) since the last call: the
/// pass records each as a `kill_failed` event.
pub fn take_failures() -> Vec<String> {
    std::mem::take(&mut *FAILURES.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// SIGKILL to `target` (a pid, or a group as its negative).
fn kill(target: libc::pid_t) -> io::Result<()> {
    #[cfg(feature = "testing")]
    if std::env::var(crate::drain::FAULT_ENV).is_ok_and(|fault| fault == "orphan_kill_fails") {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    // SAFETY: kill has no memory-safety preconditions; the caller names our unreaped
    // child (or the group it leads), so the id cannot have been reused.
    if unsafe { libc::kill(target, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// While `worker` runs: reap the adopted children that have exited by themselves (a
/// worker that starts many short-lived daemons would otherwise leave a zombie for each
/// until it ends). Nothing is signalled, and `worker` itself is left to its caller.
pub fn reap_exited(worker: libc::pid_t) {
    if !ADOPTS.load(Ordering::SeqCst) || RUNNING.load(Ordering::SeqCst) != 1 {
        return;
    }
    match children() {
        Ok(children) => children.into_iter().filter(|&child| child != worker).for_each(|child| {
            reap(child);
        }),
        Err(error) => log::debug!("cannot list the processes workers left behind: {error}"),
    }
}

/// Reap `child` if it has exited; true when it is gone.
fn reap(child: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: waitpid writes the status into a local we own.
    let reaped = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
    reaped == child || (reaped == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// This process's children: those of its main thread (`/proc/self/task/<pid>/children`),
/// which starts the workers and to which the kernel hands orphans; without that file (a
/// kernel built without it) the processes whose parent is this one, from `/proc`.
fn children() -> io::Result<Vec<libc::pid_t>> {
    use std::io::Read;
    let pid = std::process::id();
    let mut file = match std::fs::File::open(format!("/proc/self/task/{pid}/children")) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(super::process::children_of(pid)?
                .into_iter()
                .filter_map(|child| child.try_into().ok())
                .collect())
        }
        Err(error) => return Err(error),
    };
    // Read by hand: the file is read once per item and is almost always empty, and
    // `read_to_string` would first ask for a size procfs does not report.
    let (mut text, mut chunk) = (Vec::new(), [0u8; 512]);
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => text.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(String::from_utf8_lossy(&text).split_whitespace().filter_map(|child| child.parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::group_to_kill;

    #[test]
    fn a_childs_whole_group_is_killed_only_where_no_other_process_can_be_in_it() {
        let own = (100, 100);
        // It leads its group: the group, wherever it is.
        assert_eq!(group_to_kill(500, (500, 100), own), Some(500));
        assert_eq!(group_to_kill(500, (500, 400), own), Some(500));
        // It left this process's session (setsid) and no longer leads its group, having
        // forked and exited: the group, all of it the worker's descendants.
        assert_eq!(group_to_kill(501, (400, 400), own), Some(400));
        // In this process's session, in a group it does not lead: the child alone — it may
        // have joined another's group there, this process's own included.
        assert_eq!(group_to_kill(502, (300, 100), own), None);
        assert_eq!(group_to_kill(502, (100, 100), own), None);
        // Never group 0 or 1 (init's), whatever /proc said.
        assert_eq!(group_to_kill(503, (1, 400), own), None);
        assert_eq!(group_to_kill(503, (0, 400), own), None);
    }
}
