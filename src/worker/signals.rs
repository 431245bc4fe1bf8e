//! drainctl's own termination requests: SIGTERM, SIGINT and SIGHUP only set a flag.
//!
//! A drain that is asked to stop must not die between staging a result and committing it,
//! and must not leave its worker running. So the handlers do the one async-signal-safe
//! thing, recording which signal arrived in an atomic, and the code between items (and the
//! worker loop, through its stop poll) reads the flag and winds down in an orderly way.
//! The first signal received is the one reported.

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The first termination signal received, 0 while none has arrived.
static TERMINATION_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// When it arrived, in nanoseconds of `CLOCK_MONOTONIC` (the clock of [`Instant`]).
static TERMINATION_AT_NS: AtomicU64 = AtomicU64::new(0);

/// The signals that request an orderly stop.
const TERMINATION_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn record_termination_signal(signal: libc::c_int) {
    // Only atomics and clock_gettime: async-signal-safe.
    if TERMINATION_SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        TERMINATION_AT_NS.store(monotonic_ns(), Ordering::SeqCst);
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds (at least 1), 0 if it cannot be read.
fn monotonic_ns() -> u64 {
    // SAFETY: a zeroed timespec is valid; clock_gettime writes it and is async-signal-safe.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return 0;
    }
    let ns = u64::try_from(now.tv_sec).unwrap_or(0).saturating_mul(1_000_000_000);
    ns.saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0)).max(1)
}

/// When the first termination signal arrived, if one did (and its time could be read).
fn termination_arrived_at() -> Option<Instant> {
    let at = TERMINATION_AT_NS.load(Ordering::SeqCst);
    if at == 0 {
        return None;
    }
    let (now, now_ns) = (Instant::now(), monotonic_ns());
    now.checked_sub(Duration::from_nanos(now_ns.saturating_sub(at)))
}

/// Install SIGTERM, SIGINT and SIGHUP handlers that only record the signal. Interrupted
/// system calls are restarted (`SA_RESTART`), so blocking reads and writes carry on and
/// the flag is seen at the next check.
///
/// # Errors
/// The OS error of `sigaction`, naming the signal whose handler could not be installed.
pub fn install_termination_handlers() -> Result<(), io::Error> {
    install(libc::SA_RESTART)
}

/// As [`install_termination_handlers`], but a system call the signal interrupts is not
/// restarted: for a command whose blocking call that matters is a write to a reader that
/// may have stopped reading (`export` to a stalled pipe). Such a write then returns —
/// `EINTR`, or the part it wrote — and the writer must see the flag rather than write
/// again and block for ever (see [`stop_requested`]).
///
/// # Errors
/// The OS error of `sigaction`, naming the signal whose handler could not be installed.
pub fn install_interrupting_termination_handlers() -> Result<(), io::Error> {
    install(0)
}

/// Once a termination signal arrived, the error a write returns instead of writing (or
/// retrying an interrupted write, as `write_all` and `BufWriter` do): `interrupted by
/// SIGTERM`. `None` while none arrived.
pub fn stop_requested() -> Option<io::Error> {
    termination_signal().map(|signal| io::Error::other(format!("interrupted by {}", signal_name(signal))))
}

/// From now until the process exits, ignore SIGTERM, SIGINT and SIGHUP (SIGKILL still
/// ends it): for a command past the point where being stopped would leave its caller wrong
/// about what was done — an `enqueue` committing its batch (docs/exit-codes.md). Ignored
/// rather than blocked, so that no thread of the process can take one. A failure is logged;
/// the signal then keeps its effect.
pub fn ignore_termination_signals() {
    for signal in TERMINATION_SIGNALS {
        // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety
        // preconditions.
        if unsafe { libc::signal(signal, libc::SIG_IGN) } == libc::SIG_ERR {
            log::warn!("cannot ignore {}: {}", signal_name(signal), io::Error::last_os_error());
        }
    }
}

/// Whether this process handles the termination signals itself (see [`install`]).
static HANDLERS_INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Install the handlers of [`install_termination_handlers`] unless some are installed:
/// for a command that runs a notifier, so that a stop reaching it then stops the
/// notifier's group and leaves the notification due, instead of ending drainctl alone
/// and orphaning the notifier with its claim (docs/configuration.md, "Notifications").
/// A failure is logged: the signal then keeps its default effect.
pub fn ensure_termination_handlers() {
    if HANDLERS_INSTALLED.load(Ordering::SeqCst) {
        return;
    }
    if let Err(error) = install_termination_handlers() {
        log::warn!("{error}");
    }
}

fn install(flags: libc::c_int) -> Result<(), io::Error> {
    HANDLERS_INSTALLED.store(true, Ordering::SeqCst);
    for signal in TERMINATION_SIGNALS {
        // SAFETY: a zeroed sigaction is a valid starting value; sa_mask is then initialised
        // by sigemptyset, and the handler is an extern "C" fn(c_int) that only touches an
        // atomic, which is async-signal-safe.
        let result = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction =
                record_termination_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = flags;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if result != 0 {
            let error = io::Error::last_os_error();
            return Err(io::Error::new(
                error.kind(),
                format!("cannot install a handler for signal {signal}: {error}"),
            ));
        }
    }
    Ok(())
}

/// True once SIGTERM, SIGINT or SIGHUP has been received (after the handlers were installed).
pub fn termination_requested() -> bool {
    termination_signal().is_some()
}

/// Which termination signal was received first, if any (for messages).
pub fn termination_signal() -> Option<i32> {
    match TERMINATION_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// How long before drainctl heard a stop a child may have ended by the same stop: one
/// sent to the whole tree (pm2's default `treekill`, a host shutting down, `kill` given
/// both pids) reaches the processes one by one.
const SAME_STOP_WAIT: Duration = Duration::from_millis(500);

/// Whether a child that ended as `exit` at `exited_at` was stopped by the same stop as
/// drainctl: drainctl heard one before it ended or within half a second after, or — for a
/// child that died of SIGTERM, SIGINT or SIGHUP, or exited 128 plus one of them, as a
/// shell or Node.js does — hears one within half a second of its end (waited for). A stop
/// heard later is no part of the child's end (docs/worker-contract.md, "What drainctl
/// guarantees about an item").
pub fn stopped_with_drainctl(exit: super::WorkerExit, exited_at: Instant) -> bool {
    let until = exited_at + SAME_STOP_WAIT;
    let heard_in_time = || match termination_arrived_at() {
        Some(at) => at <= until,
        // Its time unknown: heard now.
        None => termination_requested(),
    };
    if termination_requested() {
        return heard_in_time();
    }
    let signal = match exit {
        super::WorkerExit::Signal(signal) => signal,
        super::WorkerExit::Code(code) => code.wrapping_sub(128),
    };
    if !TERMINATION_SIGNALS.contains(&signal) {
        return false;
    }
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
        if termination_requested() {
            return heard_in_time();
        }
    }
    false
}

/// `SIGTERM`, `SIGINT` or `SIGHUP`, as a message names a termination signal.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGTERM => "SIGTERM".to_string(),
        libc::SIGINT => "SIGINT".to_string(),
        libc::SIGHUP => "SIGHUP".to_string(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test only: the flag is process-wide and cannot be reset.
    #[test]
    fn a_received_signal_is_recorded_and_the_first_one_wins() {
        install_termination_handlers().expect("install handlers");
        assert!(!termination_requested());
        assert_eq!(termination_signal(), None);
        // SAFETY: raise has no memory-safety preconditions; the handler is installed.
        unsafe {
            libc::raise(libc::SIGHUP);
            libc::raise(libc::SIGTERM);
        }
        assert!(termination_requested());
        assert_eq!(termination_signal(), Some(libc::SIGHUP));
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
    }
}
