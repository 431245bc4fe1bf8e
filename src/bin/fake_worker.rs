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
                          if_env, if_file";

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
        "checkpoints" => {
            let count = value.get("count").map_or(Ok(1), |count| count_value("checkpoints.count", count))?;
            let every = value
                .get("every")
                .map_or(Ok(Duration::ZERO), |every| seconds_value("checkpoints.every", every))?;
            for number in 1..=count {
                if number > 1 {
                    std::thread::sleep(every);
                }
                write_stdout(&text_line(&format!("::checkpoint:: {number}")));
            }
        }
        "mib" => {
            let mut chunk = vec![b'x'; MIB_BYTES];
            for line_end in (MIB_LINE_BYTES - 1..MIB_BYTES).step_by(MIB_LINE_BYTES) {
                chunk[line_end] = b'\n';
            }
            for _ in 0..count_value(name, value)? {
                write_stdout(&chunk);
            }
        }
        "binary" => write_stdout(BINARY_BYTES),
        "child_ignoring_term" => spawn_child_ignoring_term(seconds_value(name, value)?)?,
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "wait_for_file" => {
            let path = Path::new(string_value(name, value)?);
            while !path.exists() {
                std::thread::sleep(FILE_POLL_INTERVAL);
            }
        }
        "touch" => {
            let path = string_value(name, value)?;
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|error| format!("cannot create {path:?}: {error}"))?;
        }
        "exit" => {
            let code = value
                .as_i64()
                .and_then(|code| i32::try_from(code).ok())
                .ok_or_else(|| format!("bad exit code {value}; expected an integer"))?;
            std::process::exit(code);
        }
        "signal" => {
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
            return Err(format!("signal {signal} did not end the process"));
        }
        "cut_off" => {
            write_stdout(CUT_OFF_TEXT);
            std::process::exit(1);
        }
        "log" => append_start_line(Path::new(string_value(name, value)?))?,
        "env" => {
            let variable = string_value(name, value)?;
            let value = std::env::var_os(variable).unwrap_or_default();
            write_stdout(&text_line(&format!("{variable}={}", value.to_string_lossy())));
        }
        "echo_args" => {
            let arguments: Vec<String> =
                std::env::args_os().skip(1).map(|argument| argument.to_string_lossy().into_owned()).collect();
            let json = serde_json::to_string(&arguments)
                .map_err(|error| format!("cannot encode arguments: {error}"))?;
            write_stdout(&text_line(&json));
        }
        "echo_payload" => write_stdout(payload),
        "choose" => {
            for step in choose_option(value)? {
                run_step(step, payload)?;
            }
        }
        "if_env" => {
            let field = |key: &str| value.get(key).ok_or_else(|| format!("step \"if_env\" needs {key:?}"));
            let variable = string_value("if_env.var", field("var")?)?;
            let expected = string_value("if_env.equals", field("equals")?)?;
            let is_equal = std::env::var_os(variable).is_some_and(|actual| actual == expected);
            run_branch(name, value.get(if is_equal { "then" } else { "else" }), payload)?;
        }
        "if_file" => {
            let path = value.get("path").ok_or("step \"if_file\" needs \"path\"")?;
            let exists = Path::new(string_value("if_file.path", path)?).exists();
            run_branch(name, value.get(if exists { "then" } else { "else" }), payload)?;
        }
        other => return Err(format!("unknown step {other:?}; known steps: {STEP_NAMES}")),
    }
    Ok(())
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
