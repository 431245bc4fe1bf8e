//! drainctl's own termination requests: SIGTERM, SIGINT and SIGHUP only set a flag.
//!
//! A drain that is asked to stop must not die between staging a result and committing it,
//! and must not leave its worker running. So the handlers do the one async-signal-safe
//! thing, recording which signal arrived in an atomic, and the code between items (and the
//! worker loop, through its stop poll) reads the flag and winds down in an orderly way.
//! The first signal received is the one reported.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// The first termination signal received, 0 while none has arrived.
static TERMINATION_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The signals that request an orderly stop.
const TERMINATION_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

extern "C" fn record_termination_signal(signal: libc::c_int) {
    // Only an atomic compare-and-swap: async-signal-safe.
    let _ = TERMINATION_SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
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

fn install(flags: libc::c_int) -> Result<(), io::Error> {
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

/// How long a child that a stop signal ended may have gone before drainctl heard the same
/// stop: a stop sent to the whole tree (pm2's default `treekill`, a host shutting down,
/// `kill` given both pids) reaches the processes one by one.
const SAME_STOP_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether a child that ended as `exit` was stopped by the same stop as drainctl: drainctl
/// has a stop signal already, or the child died of SIGTERM, SIGINT or SIGHUP (or exited
/// 128 plus one of them, as a shell or Node.js does) and drainctl gets one within half a
/// second. Then the child's end is no outcome of its own (docs/worker-contract.md, "What
/// drainctl guarantees about an item").
pub fn stopped_with_drainctl(exit: super::WorkerExit) -> bool {
    if termination_requested() {
        return true;
    }
    let signal = match exit {
        super::WorkerExit::Signal(signal) => signal,
        super::WorkerExit::Code(code) => code - 128,
    };
    if !TERMINATION_SIGNALS.contains(&signal) {
        return false;
    }
    let until = std::time::Instant::now() + SAME_STOP_WAIT;
    while std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(10));
        if termination_requested() {
            return true;
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
