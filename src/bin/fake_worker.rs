//! drainctl-fake-worker: a real worker program, driven by its payload, for tests and demos.
//!
//! It reads its whole stdin as the payload. When the payload is a JSON object with a
//! `"steps"` array, it runs the steps in order and exits 0; any other payload (including
//! text that is not JSON) is echoed to stdout unchanged. Each step is an object with one key:
//!
//! - `{"out": "text"}` / `{"err": "text"}`: the text and a newline on stdout / stderr
//! - `{"sleep": 1.5}`: sleep that many seconds
//! - `{"checkpoints": {"count": 3, "every": 0.2}}`: `::checkpoint:: N` lines on stdout,
//!   `every` seconds apart
//! - `{"mib": 20}`: that many MiB of `x` lines (1024 bytes each) on stdout
//! - `{"binary": true}`: bytes that are not UTF-8 on stdout (`ff fe 00 80 c3 28 0a`)
//! - `{"child_ignoring_term": 300}`: fork a child that ignores SIGTERM and sleeps that many
//!   seconds, holding stdout open; `child_pid=N` goes to stderr
//! - `{"hang": true}`: sleep forever, silently
//! - `{"wait_for_file": "/path"}`: wait (polling every 20 ms) until the file exists
//! - `{"touch": "/path"}`: create the file
//! - `{"exit": 3}`: exit with that code now; `{"signal": 9}`: die by that signal now
//! - `{"cut_off": true}`: print a partial line without newline, then exit 1
//! - `{"log": "/path"}`: append `start <unix seconds> pid=<pid> drain=<DRAIN_NAME>
//!   key=<DRAIN_ITEM_KEY> run=<DRAIN_RUN_ID> attempt=<DRAIN_ATTEMPT> account=<DRAIN_ACCOUNT
//!   or ->` to the file in one write
//! - `{"env": "VAR"}`: `VAR=<value>` on stdout (empty when unset)
//! - `{"echo_args": true}`: the arguments after the program name, as a JSON array
//! - `{"echo_payload": true}`: the payload, byte for byte
//! - `{"choose": {"seed": 7, "options": [{"weight": 3, "steps": [...]}, ...]}}`: run the
//!   steps of one option, picked by weight from a hash of the seed, `DRAIN_ITEM_KEY`,
//!   `DRAIN_ATTEMPT` and `DRAIN_RUN_ID` — random-looking, but the same for the same item,
//!   attempt and run
//! - `{"if_env": {"var": "DRAIN_ACCOUNT", "equals": "a", "then": [...], "else": [...]}}`:
//!   run the `then` steps when the variable is set to exactly that value, else the `else`
//!   steps (optional); e.g. a quota hit on one account only
//! - `{"if_file": {"path": "/path", "then": [...], "else": [...]}}`: the `then` steps when
//!   the file exists, else the `else` steps; with `touch`, a hit on the first call only
//! - `{"vendor": {"state": "/path", "calls": 5, "window": 10, "shape": "openai"}}`: one call
//!   to a simulated vendor with a fixed-window limit of `calls` calls per `window` seconds,
//!   windows aligned to the Unix epoch, shared by every process that names the same state
//!   file (locked with `flock`). A call inside the allowance prints `vendor call N of M in
//!   window W` and goes on; a call over it prints the vendor's limit message stating the
//!   window's end and exits 1. Shapes: `openai` (`… Please try again in 2.500s.`, on
//!   stderr), `claude_epoch` (`Claude AI usage limit reached|<epoch>`, on stdout),
//!   `claude_clock` (`You've hit your session limit · resets 10:15am (UTC)`, on stdout;
//!   minutes only, so `window` must be a multiple of 60), `gemini` (`… Your quota will
//!   reset after 7s.`, whole seconds rounded up, on stderr). The state file holds one line
//!   per window: `<window start> <calls answered> <limit answers>`
//!
//! An unknown or malformed step prints a message on stderr and exits 2. When
//! `FAKE_WORKER_LOG=/path` is set, the `log` step runs first, before stdin is read.

use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exit code for a step the fake worker does not understand.
const EXIT_BAD_STEP: i32 = 2;
/// What `{"binary": true}` writes: invalid UTF-8, a NUL and a newline.
const BINARY_BYTES: &[u8] = &[0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, b'\n'];
/// What `{"cut_off": true}` writes before exiting.
const CUT_OFF_TEXT: &[u8] = b"partial output cut off mid-li";
/// Interval of `wait_for_file` polls.
const FILE_POLL_INTERVAL: Duration = Duration::from_millis(20);
const MIB_BYTES: usize = 1024 * 1024;
const MIB_LINE_BYTES: usize = 1024;
const STEP_NAMES: &str = "out, err, sleep, checkpoints, mib, binary, child_ignoring_term, hang, \
                          wait_for_file, touch, exit, signal, cut_off, log, env, echo_args, echo_payload, choose, \
                          if_env, if_file, vendor";

fn main() {
    if let Some(path) = std::env::var_os("FAKE_WORKER_LOG") {
        if let Err(message) = append_start_line(Path::new(&path)) {
            fail(&message);
        }
    }
    let mut payload = Vec::new();
    if let Err(error) = io::stdin().read_to_end(&mut payload) {
        fail(&format!("cannot read the payload from stdin: {error}"));
    }
    let steps = match serde_json::from_slice::<serde_json::Value>(&payload) {
        Ok(serde_json::Value::Object(mut object)) => match object.remove("steps") {
            Some(serde_json::Value::Array(steps)) => steps,
            _ => return write_stdout(&payload),
        },
        _ => return write_stdout(&payload),
    };
    for step in &steps {
        if let Err(message) = run_step(step, &payload) {
            fail(&message);
        }
    }
}

/// Report a bad step on stderr and exit 2.
fn fail(message: &str) -> ! {
    write_stderr(format!("drainctl-fake-worker: {message}\n").as_bytes());
    std::process::exit(EXIT_BAD_STEP);
}

/// Write and flush stdout; a closed stdout ends the worker with exit code 1.
fn write_stdout(bytes: &[u8]) {
    let mut stdout = io::stdout().lock();
    if stdout.write_all(bytes).and_then(|()| stdout.flush()).is_err() {
        std::process::exit(1);
    }
}

fn write_stderr(bytes: &[u8]) {
    let mut stderr = io::stderr().lock();
    let _ = stderr.write_all(bytes).and_then(|()| stderr.flush());
}

fn text_line(text: &str) -> Vec<u8> {
    format!("{text}\n").into_bytes()
}

fn run_step(step: &serde_json::Value, payload: &[u8]) -> Result<(), String> {
    let (name, value) = match step.as_object() {
        Some(object) if object.len() == 1 => object.iter().next().ok_or("empty step")?,
        _ => {
            return Err(format!("bad step {step}; expected an object with exactly one key of: {STEP_NAMES}"))
        }
    };
    match name.as_str() {
        "out" => write_stdout(&text_line(string_value(name, value)?)),
        "err" => write_stderr(&text_line(string_value(name, value)?)),
        "sleep" => std::thread::sleep(seconds_value(name, value)?),
        "checkpoints" => run_checkpoints(value)?,
        "mib" => run_mib(name, value)?,
        "binary" => write_stdout(BINARY_BYTES),
        "child_ignoring_term" => spawn_child_ignoring_term(seconds_value(name, value)?)?,
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "wait_for_file" => run_wait_for_file(name, value)?,
        "touch" => run_touch(name, value)?,
        "exit" => run_exit(value)?,
        "signal" => run_signal(value)?,
        "cut_off" => {
            write_stdout(CUT_OFF_TEXT);
            std::process::exit(1);
        }
        "log" => append_start_line(Path::new(string_value(name, value)?))?,
        "env" => run_env(name, value)?,
        "echo_args" => run_echo_args()?,
        "echo_payload" => write_stdout(payload),
        "choose" => {
            for step in choose_option(value)? {
                run_step(step, payload)?;
            }
        }
        "if_env" => run_if_env(name, value, payload)?,
        "if_file" => run_if_file(name, value, payload)?,
        "vendor" => vendor_call(value)?,
        other => return Err(format!("unknown step {other:?}; known steps: {STEP_NAMES}")),
    }
    Ok(())
}

/// `{"checkpoints": {"count": N, "every": S}}`: N checkpoint lines, S seconds apart.
fn run_checkpoints(value: &serde_json::Value) -> Result<(), String> {
    let count = value.get("count").map_or(Ok(1), |count| count_value("checkpoints.count", count))?;
    let every =
        value.get("every").map_or(Ok(Duration::ZERO), |every| seconds_value("checkpoints.every", every))?;
    for number in 1..=count {
        if number > 1 {
            std::thread::sleep(every);
        }
        write_stdout(&text_line(&format!("::checkpoint:: {number}")));
    }
    Ok(())
}

/// `{"mib": N}`: N mebibytes of text lines on stdout.
fn run_mib(name: &str, value: &serde_json::Value) -> Result<(), String> {
    let mut chunk = vec![b'x'; MIB_BYTES];
    for line_end in (MIB_LINE_BYTES - 1..MIB_BYTES).step_by(MIB_LINE_BYTES) {
        chunk[line_end] = b'\n';
    }
    for _ in 0..count_value(name, value)? {
        write_stdout(&chunk);
    }
    Ok(())
}

/// `{"wait_for_file": PATH}`: poll until PATH exists.
fn run_wait_for_file(name: &str, value: &serde_json::Value) -> Result<(), String> {
    let path = Path::new(string_value(name, value)?);
    while !path.exists() {
        std::thread::sleep(FILE_POLL_INTERVAL);
    }
    Ok(())
}

/// `{"touch": PATH}`: create PATH when it does not exist.
fn run_touch(name: &str, value: &serde_json::Value) -> Result<(), String> {
    let path = string_value(name, value)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| format!("cannot create {path:?}: {error}"))?;
    Ok(())
}

/// `{"exit": CODE}`: end the process with CODE.
fn run_exit(value: &serde_json::Value) -> Result<(), String> {
    let code = value
        .as_i64()
        .and_then(|code| i32::try_from(code).ok())
        .ok_or_else(|| format!("bad exit code {value}; expected an integer"))?;
    std::process::exit(code);
}

/// `{"signal": NUMBER}`: end the process by that signal, with its default disposition.
fn run_signal(value: &serde_json::Value) -> Result<(), String> {
    let signal = value
        .as_i64()
        .and_then(|signal| i32::try_from(signal).ok())
        .ok_or_else(|| format!("bad signal {value}; expected a signal number such as 9"))?;
    // SAFETY: resetting a disposition and raising a signal have no memory-safety
    // preconditions; the default is restored because Rust programs ignore SIGPIPE.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    Err(format!("signal {signal} did not end the process"))
}

/// `{"env": VARIABLE}`: print `VARIABLE=value` (empty when unset).
fn run_env(name: &str, value: &serde_json::Value) -> Result<(), String> {
    let variable = string_value(name, value)?;
    let value = std::env::var_os(variable).unwrap_or_default();
    write_stdout(&text_line(&format!("{variable}={}", value.to_string_lossy())));
    Ok(())
}

/// `{"echo_args": true}`: print the worker's arguments as a JSON array.
fn run_echo_args() -> Result<(), String> {
    let arguments: Vec<String> =
        std::env::args_os().skip(1).map(|argument| argument.to_string_lossy().into_owned()).collect();
    let json =
        serde_json::to_string(&arguments).map_err(|error| format!("cannot encode arguments: {error}"))?;
    write_stdout(&text_line(&json));
    Ok(())
}

/// `{"if_env": {"var", "equals", "then", "else"}}`: run a branch by an environment variable.
fn run_if_env(name: &str, value: &serde_json::Value, payload: &[u8]) -> Result<(), String> {
    let field = |key: &str| value.get(key).ok_or_else(|| format!("step \"if_env\" needs {key:?}"));
    let variable = string_value("if_env.var", field("var")?)?;
    let expected = string_value("if_env.equals", field("equals")?)?;
    let is_equal = std::env::var_os(variable).is_some_and(|actual| actual == expected);
    run_branch(name, value.get(if is_equal { "then" } else { "else" }), payload)
}

/// `{"if_file": {"path", "then", "else"}}`: run a branch by whether a file exists.
fn run_if_file(name: &str, value: &serde_json::Value, payload: &[u8]) -> Result<(), String> {
    let path = value.get("path").ok_or("step \"if_file\" needs \"path\"")?;
    let exists = Path::new(string_value("if_file.path", path)?).exists();
    run_branch(name, value.get(if exists { "then" } else { "else" }), payload)
}

/// Run the steps of one branch of `if_env` / `if_file` (none when it is missing).
fn run_branch(name: &str, branch: Option<&serde_json::Value>, payload: &[u8]) -> Result<(), String> {
    let steps = match branch {
        None => &[][..],
        Some(serde_json::Value::Array(steps)) => steps.as_slice(),
        Some(other) => return Err(format!("bad value {other} in step {name:?}; expected a list of steps")),
    };
    for step in steps {
        run_step(step, payload)?;
    }
    Ok(())
}

fn string_value<'a>(name: &str, value: &'a serde_json::Value) -> Result<&'a str, String> {
    value.as_str().ok_or_else(|| format!("bad value {value} for step {name:?}; expected a string"))
}

fn count_value(name: &str, value: &serde_json::Value) -> Result<u64, String> {
    value.as_u64().ok_or_else(|| format!("bad value {value} for {name:?}; expected a whole number >= 0"))
}

fn seconds_value(name: &str, value: &serde_json::Value) -> Result<Duration, String> {
    value
        .as_f64()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("bad value {value} for {name:?}; expected seconds >= 0, such as 1.5"))
}

/// Fork a child that ignores SIGTERM, sleeps, and holds our stdout and stderr meanwhile.
fn spawn_child_ignoring_term(sleep: Duration) -> Result<(), String> {
    let _ = io::stdout().flush();
    // SAFETY: this program is single-threaded, so the child may run ordinary code after fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(format!("cannot fork: {}", io::Error::last_os_error())),
        0 => {
            // SAFETY: ignoring SIGTERM and leaving with _exit have no memory-safety preconditions.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
            }
            std::thread::sleep(sleep);
            // SAFETY: _exit ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        child => {
            write_stderr(format!("child_pid={child}\n").as_bytes());
            Ok(())
        }
    }
}

/// The steps of the option `{"choose": ...}` picks for this item and attempt.
fn choose_option(value: &serde_json::Value) -> Result<&Vec<serde_json::Value>, String> {
    let seed = value.get("seed").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let options = value
        .get("options")
        .and_then(serde_json::Value::as_array)
        .filter(|options| !options.is_empty())
        .ok_or("choose needs a non-empty \"options\" array")?;
    let weight_of =
        |option: &serde_json::Value| option.get("weight").and_then(serde_json::Value::as_u64).unwrap_or(1);
    let total: u64 = options.iter().map(weight_of).sum();
    if total == 0 {
        return Err("choose: the weights add up to 0".to_string());
    }
    // FNV-1a over the seed, the item key, the attempt and the run.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let variable = |name: &str| std::env::var(name).unwrap_or_default();
    let text =
        format!("{}/{}/{}", variable("DRAIN_ITEM_KEY"), variable("DRAIN_ATTEMPT"), variable("DRAIN_RUN_ID"));
    for byte in seed.to_le_bytes().iter().chain(text.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut pick = hash % total;
    for option in options {
        let weight = weight_of(option);
        if pick < weight {
            return option
                .get("steps")
                .and_then(serde_json::Value::as_array)
                .ok_or_else(|| "choose: every option needs a \"steps\" array".to_string());
        }
        pick -= weight;
    }
    Err("choose: no option picked".to_string())
}

/// Append one `start ...` line describing this invocation, in a single append write.
fn append_start_line(path: &Path) -> Result<(), String> {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let variable = |name: &str| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned());
    let line = format!(
        "start {}.{:06} pid={} drain={} key={} run={} attempt={} account={}\n",
        since_epoch.as_secs(),
        since_epoch.subsec_micros(),
        std::process::id(),
        variable("DRAIN_NAME").unwrap_or_default(),
        variable("DRAIN_ITEM_KEY").unwrap_or_default(),
        variable("DRAIN_RUN_ID").unwrap_or_default(),
        variable("DRAIN_ATTEMPT").unwrap_or_default(),
        variable("DRAIN_ACCOUNT").unwrap_or_else(|| "-".to_string()),
    );
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| format!("cannot open log {path:?}: {error}"))?;
    file.write_all(line.as_bytes()).map_err(|error| format!("cannot append to log {path:?}: {error}"))
}

/// The limit message shapes the `vendor` step can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VendorShape {
    OpenAi,
    ClaudeEpoch,
    ClaudeClock,
    Gemini,
}

impl VendorShape {
    fn parse(text: &str) -> Result<VendorShape, String> {
        match text {
            "openai" => Ok(VendorShape::OpenAi),
            "claude_epoch" => Ok(VendorShape::ClaudeEpoch),
            "claude_clock" => Ok(VendorShape::ClaudeClock),
            "gemini" => Ok(VendorShape::Gemini),
            other => Err(format!(
                "unknown vendor shape {other:?}; known shapes: openai, claude_epoch, claude_clock, gemini"
            )),
        }
    }

    /// The vendor's limit message for a window ending at `window_end` (Unix seconds), seen
    /// at `now` (since the epoch), and whether it goes to stdout.
    fn limit_message(self, calls: u64, now: Duration, window_end: u64) -> (String, bool) {
        let remaining = Duration::from_secs(window_end).saturating_sub(now);
        match self {
            VendorShape::OpenAi => {
                let millis = remaining.as_nanos().div_ceil(1_000_000);
                let message = format!(
                    "Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): \
                     Limit {calls}, Used {calls}, Requested 1. Please try again in {}.{:03}s.",
                    millis / 1000,
                    millis % 1000
                );
                (message, false)
            }
            VendorShape::ClaudeEpoch => (format!("Claude AI usage limit reached|{window_end}"), true),
            VendorShape::ClaudeClock => {
                let minute_end = window_end.div_ceil(60) * 60;
                let minutes_of_day = minute_end % 86_400 / 60;
                let (hour, minute) = (minutes_of_day / 60, minutes_of_day % 60);
                let hour_12 = if hour % 12 == 0 { 12 } else { hour % 12 };
                let half = if hour < 12 { "am" } else { "pm" };
                (format!("You've hit your session limit · resets {hour_12}:{minute:02}{half} (UTC)"), true)
            }
            VendorShape::Gemini => {
                let seconds = remaining.as_nanos().div_ceil(1_000_000_000);
                let (hours, minutes, seconds) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
                let mut after = String::new();
                if hours > 0 {
                    after.push_str(&format!("{hours}h"));
                }
                if hours > 0 || minutes > 0 {
                    after.push_str(&format!("{minutes}m"));
                }
                after.push_str(&format!("{seconds}s"));
                let message = format!(
                    "You have exhausted your capacity on this model. Your quota will reset after {after}."
                );
                (message, false)
            }
        }
    }
}

/// One line of the vendor's state file: a window and what it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VendorWindow {
    start: u64,
    answered: u64,
    limited: u64,
}

fn parse_vendor_state(text: &str) -> Result<Vec<VendorWindow>, String> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<u64> = line.split_whitespace().filter_map(|field| field.parse().ok()).collect();
            match fields[..] {
                [start, answered, limited] if line.split_whitespace().count() == 3 => {
                    Ok(VendorWindow { start, answered, limited })
                }
                _ => Err(format!(
                    "bad vendor state line {line:?}; expected <window start> <calls> <limit answers>"
                )),
            }
        })
        .collect()
}

/// One call to the simulated vendor (see the module documentation).
fn vendor_call(value: &serde_json::Value) -> Result<(), String> {
    use std::io::Seek;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;

    let field = |key: &str| value.get(key).ok_or_else(|| format!("step \"vendor\" needs {key:?}"));
    let state_path = string_value("vendor.state", field("state")?)?;
    let calls = count_value("vendor.calls", field("calls")?)?;
    let window = count_value("vendor.window", field("window")?)?;
    let shape = VendorShape::parse(string_value("vendor.shape", field("shape")?)?)?;
    if window == 0 {
        return Err("bad value 0 for \"vendor.window\"; expected seconds >= 1".to_string());
    }
    if shape == VendorShape::ClaudeClock && window % 60 != 0 {
        return Err(format!(
            "bad value {window} for \"vendor.window\"; the claude_clock shape states minutes, so use a multiple of 60"
        ));
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(state_path)
        .map_err(|error| format!("cannot open vendor state {state_path:?}: {error}"))?;
    // SAFETY: flock on a descriptor this function owns; the lock ends when `file` is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("cannot lock vendor state {state_path:?}: {}", io::Error::last_os_error()));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let start = now.as_secs() / window * window;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|error| format!("cannot read vendor state {state_path:?}: {error}"))?;
    let mut windows = parse_vendor_state(&text).map_err(|error| format!("{state_path:?}: {error}"))?;
    if windows.last().is_none_or(|last| last.start != start) {
        windows.push(VendorWindow { start, answered: 0, limited: 0 });
    }
    let current = windows.last_mut().ok_or("vendor state has no window")?;
    let is_allowed = current.answered < calls;
    if is_allowed {
        current.answered += 1;
    } else {
        current.limited += 1;
    }
    let answered = current.answered;
    let text: String = windows
        .iter()
        .map(|window| format!("{} {} {}\n", window.start, window.answered, window.limited))
        .collect();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(text.as_bytes()))
        .map_err(|error| format!("cannot write vendor state {state_path:?}: {error}"))?;
    drop(file);
    if is_allowed {
        write_stdout(&text_line(&format!("vendor call {answered} of {calls} in window {start}")));
        return Ok(());
    }
    let (message, is_stdout) = shape.limit_message(calls, now, start + window);
    if is_stdout {
        write_stdout(&text_line(&message));
    } else {
        write_stderr(&text_line(&message));
    }
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_states_the_end_of_the_window() {
        // 2026-11-27T10:14:57.5Z, in a window ending at 10:15:00.
        let end = 1_795_774_500;
        let now = Duration::from_millis(end * 1000 - 2500);
        let message = |shape| VendorShape::limit_message(shape, 5, now, end).0;
        assert!(message(VendorShape::OpenAi)
            .ends_with("Limit 5, Used 5, Requested 1. Please try again in 2.500s."));
        assert_eq!(message(VendorShape::ClaudeEpoch), "Claude AI usage limit reached|1795774500");
        assert_eq!(message(VendorShape::ClaudeClock), "You've hit your session limit · resets 10:15am (UTC)");
        assert_eq!(
            message(VendorShape::Gemini),
            "You have exhausted your capacity on this model. Your quota will reset after 3s."
        );
        let midnight = 1_795_824_000;
        assert_eq!(
            VendorShape::ClaudeClock.limit_message(5, Duration::from_secs(midnight - 30), midnight).0,
            "You've hit your session limit · resets 12:00am (UTC)"
        );
    }

    #[test]
    fn the_state_file_is_read_back_and_a_bad_line_is_refused() {
        assert_eq!(
            parse_vendor_state("10 5 1\n20 2 0\n"),
            Ok(vec![
                VendorWindow { start: 10, answered: 5, limited: 1 },
                VendorWindow { start: 20, answered: 2, limited: 0 }
            ])
        );
        assert!(parse_vendor_state("10 5\n").is_err());
        assert!(parse_vendor_state("10 5 x\n").is_err());
    }
}
