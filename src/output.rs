//! What a command prints: a [`Report`] carries both the human text and the JSON value,
//! and [`Report::print`] writes one of them to stdout — the only place commands print.
//! Human text never carries a control or bidi character raw: [`escape_controls`] is the one
//! function that makes text from workers, items and the database safe for a terminal and a
//! log line (see docs/operations.md#what-a-terminal-shows); JSON stays exact.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::Value;

/// The result of a command: human text, the same data as JSON, and the exit code.
#[derive(Debug)]
pub struct Report {
    pub human: String,
    pub json: Value,
    pub exit_code: u8,
    /// The text is what the command is run for (`metrics`, `report` to stdout), not a
    /// summary of work done: when it cannot be written, the command failed.
    pub is_the_output: bool,
    /// Already printed (into a pass's log file, by [`print_into_log_file`]).
    printed: bool,
    /// A termination signal stopped the command, which said so: nothing more is done.
    pub was_interrupted: bool,
}

impl Report {
    pub fn new(human: impl Into<String>, json: Value) -> Report {
        Report {
            human: human.into(),
            json,
            exit_code: crate::error::EXIT_OK,
            is_the_output: false,
            printed: false,
            was_interrupted: false,
        }
    }

    /// Stopped by a termination signal after it did what it shows: `error` (the
    /// interruption, exit 75) is said on stderr and is the exit code, and the report is
    /// still printed (see [`Report::was_interrupted`]).
    pub fn stopped(mut self, error: &crate::error::Error) -> Report {
        say_failure(error);
        self.exit_code = error.exit_code();
        self.was_interrupted = true;
        self
    }

    /// A report whose text is the command's whole output (see [`Report::is_the_output`]).
    pub fn the_output(human: impl Into<String>) -> Report {
        Report { is_the_output: true, ..Report::new(human, Value::Null) }
    }

    pub fn with_exit_code(mut self, exit_code: u8) -> Report {
        self.exit_code = exit_code;
        self
    }

    /// Write the JSON (when `as_json`) or the human text to stdout; the exit code, 75 when
    /// a report that is the command's output could not be written (a full disk: what was
    /// written is cut short; docs/exit-codes.md).
    pub fn print(&self, as_json: bool) -> u8 {
        if self.printed {
            return self.exit_code;
        }
        let mut stdout = std::io::stdout().lock();
        let text = if as_json {
            // What a terminal would act on (C1 controls, bidirectional and invisible
            // characters, which serde_json leaves raw) as JSON escapes: the same values to
            // a JSON reader (docs/json.md).
            escape_json_text(&serde_json::to_string_pretty(&self.json).unwrap_or_else(|_| "null".to_string()))
        } else if is_dated_lines() {
            date_lines(&escape_lines(&self.human), &utc_now_stamp())
        } else {
            escape_lines(&self.human)
        };
        let result = if text.is_empty() || text.ends_with('\n') {
            stdout.write_all(text.as_bytes())
        } else {
            writeln!(stdout, "{text}")
        };
        match result.and_then(|_| stdout.flush()) {
            // A closed pipe (`drainctl status | head`) is not worth a word.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                log::debug!("could not write to stdout: {error}");
                self.exit_code
            }
            Err(error) if self.is_the_output => {
                log::error!("could not write the output to stdout: {error}; what was written is incomplete");
                crate::error::worse_exit_code(self.exit_code, crate::error::EXIT_TEMPORARY)
            }
            // Anything else (a full disk) loses what the command did: it is said on stderr,
            // and a pass writing its own log file records it.
            Err(error) => {
                if is_dated_lines() {
                    let _ = LOG_WRITE_FAILURE.set(error.to_string());
                }
                log::warn!("could not write the output to stdout: {error}");
                self.exit_code
            }
            Ok(()) => self.exit_code,
        }
    }
}

/// An instant as RFC 3339 to the second, in UTC (`2026-11-27T10:00:20Z`): how a message
/// states an exact instant.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `a`, `a and b`, `a, b and c`.
/// `word` as one word of a shell command the operator may paste: as it is when it holds
/// nothing a shell reads, else in single quotes (a quote inside as `'\''`).
pub fn shell_word(word: &str) -> String {
    let is_plain =
        !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@%+=,".contains(c));
    if is_plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

pub fn listed(parts: &[&str]) -> String {
    match parts {
        [] => String::new(),
        [only] => only.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `1 drain`, `2 drains`: a count with its noun, `s` added unless it is one.
pub fn counted(count: impl TryInto<i64>, noun: &str) -> String {
    let count = count.try_into().unwrap_or(i64::MAX);
    if count == 1 {
        format!("1 {noun}")
    } else if noun.ends_with('s') {
        format!("{count} {noun}es")
    } else {
        format!("{count} {noun}s")
    }
}

/// A run's outcome as a pass, `runs show` and the operations page say it: items done,
/// then attempts that failed — an item retried twice counts twice (docs/json.md
/// `items_failed`), so the count is never read as items.
pub fn run_outcome(items_done: impl std::fmt::Display, attempts_failed: impl TryInto<i64>) -> String {
    format!("{items_done} done, {}", counted(attempts_failed, "failed attempt"))
}

/// Whether output goes to a log file, where every line carries its UTC time.
static IS_DATED_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Date every human line from now on: the command writes to its own log file
/// (`supervise --log-file`, or a drain `supervise` started; docs/operations.md).
pub fn set_dated_lines(is_dated: bool) {
    IS_DATED_LINES.store(is_dated, std::sync::atomic::Ordering::Relaxed);
}

fn is_dated_lines() -> bool {
    IS_DATED_LINES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The wall-clock time in UTC as log lines show it: `2026-11-27T10:00:05Z`.
pub fn utc_now_stamp() -> String {
    crate::clock::Clock::system().now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// What starts a line on stderr: the time and a space when lines are dated, else nothing.
pub fn line_date() -> String {
    if is_dated_lines() {
        format!("{} ", utc_now_stamp())
    } else {
        String::new()
    }
}

/// Every line of `text` prefixed with `stamp` and a space.
fn date_lines(text: &str, stamp: &str) -> String {
    let mut dated = String::with_capacity(text.len() + 24);
    for line in text.lines() {
        let _ = writeln!(dated, "{stamp} {line}");
    }
    dated
}

/// Widest line a table prints when neither `COLUMNS` nor a terminal says otherwise;
/// wider cells are cut with "…".
pub const TABLE_WIDTH: usize = 100;
/// The narrowest and widest a table is made, whatever `COLUMNS` or the terminal says.
const TABLE_WIDTH_RANGE: std::ops::RangeInclusive<usize> = 40..=1000;

/// How wide a table may be: `COLUMNS` when it is set to a number, else the width of the
/// terminal stdout is, else [`TABLE_WIDTH`] (docs/cli.md).
pub fn table_width() -> usize {
    // Unit tests read tables at their default, whatever terminal runs them.
    if cfg!(test) {
        return TABLE_WIDTH;
    }
    static WIDTH: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *WIDTH.get_or_init(|| {
        let from_env = std::env::var("COLUMNS").ok().and_then(|value| value.trim().parse::<usize>().ok());
        from_env
            .or_else(terminal_width)
            .map_or(TABLE_WIDTH, |width| width.clamp(*TABLE_WIDTH_RANGE.start(), *TABLE_WIDTH_RANGE.end()))
    })
}

/// The width of the terminal stdout is, if it is one.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own; on a descriptor that is
    // no terminal it fails and writes nothing.
    let read = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
    (read == 0 && size.ws_col > 0).then_some(usize::from(size.ws_col))
}
/// Columns never shrink below this (or their header), however wide the table.
const MIN_COLUMN_WIDTH: usize = 6;
/// Spaces between columns.
const COLUMN_GAP: usize = 2;

/// Render rows as an aligned table with a header, at most [`table_width`] columns wide:
/// the widest columns are narrowed first and their cells cut with "…". Control characters
/// inside a cell, line breaks and tabs included, are escaped (see [`one_line`]). The last
/// column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    table_fitted(header, rows, false)
}

/// [`table`] whose last column (a free-text note) is narrowed first, down to its floor,
/// so that the columns before it stay whole as long as it can give way.
pub fn table_cutting_last(header: &[&str], rows: &[Vec<String>]) -> String {
    table_fitted(header, rows, true)
}

fn table_fitted(header: &[&str], rows: &[Vec<String>], last_first: bool) -> String {
    let columns = header.len();
    let rows: Vec<Vec<String>> =
        rows.iter().map(|row| row.iter().take(columns).map(|cell| one_line(cell)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    let limit = table_width();
    if last_first {
        fit_last_column(&mut widths, header, limit);
    }
    fit_widths(&mut widths, header, limit);
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            let cell = truncate(cell, widths[index]);
            line.push_str(&cell);
            if index + 1 < cells.len() {
                let pad = widths[index].saturating_sub(cell.chars().count()) + COLUMN_GAP;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(header.to_vec());
    for row in &rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    out
}

/// An instant as the operator reads it: `Sat 2026-11-28 18:00 IST`, with its seconds when
/// it does not fall on a whole minute (`20:37:58`): a backoff of a few seconds shown cut
/// to its minute reads as over while it still runs.
pub fn local_time(at: DateTime<Utc>, zone: Tz) -> String {
    let format = if at.second() == 0 { "%a %Y-%m-%d %H:%M %Z" } else { "%a %Y-%m-%d %H:%M:%S %Z" };
    at.with_timezone(&zone).format(format).to_string()
}

/// Narrow the last column alone, as far as its floor, until the line fits `limit`.
fn fit_last_column(widths: &mut [usize], header: &[&str], limit: usize) {
    let Some(last) = widths.len().checked_sub(1) else { return };
    let total = widths.iter().sum::<usize>() + COLUMN_GAP * last;
    let floor = widths[last].min(header[last].chars().count().max(MIN_COLUMN_WIDTH));
    widths[last] = widths[last].saturating_sub(total.saturating_sub(limit)).max(floor);
}

/// Narrow the widest column, one character at a time, until the line fits `limit` or no
/// column can shrink any further.
fn fit_widths(widths: &mut [usize], header: &[&str], limit: usize) {
    let total = |widths: &[usize]| widths.iter().sum::<usize>() + COLUMN_GAP * widths.len().saturating_sub(1);
    let floor: Vec<usize> = header
        .iter()
        .zip(widths.iter())
        .map(|(h, w)| (*w).min(h.chars().count().max(MIN_COLUMN_WIDTH)))
        .collect();
    while total(widths) > limit {
        let widest = widths
            .iter()
            .enumerate()
            .filter(|(index, width)| **width > floor[*index])
            .max_by_key(|(index, width)| (**width, std::cmp::Reverse(*index)))
            .map(|(index, _)| index);
        match widest {
            Some(index) => widths[index] -= 1,
            None => break,
        }
    }
}

/// `key  value` lines with the values aligned; values are made one line each.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(key, _)| key.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let line = format!("{key:<width$}  {}", one_line(value));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `text` cut to `width` characters, ending in "…" when it was cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(width - 1).collect();
    cut.push('…');
    cut
}

/// Text for one table cell or one `key: value` line: line breaks, tabs and every other
/// character [`escape_controls`] escapes are shown escaped, so a value can neither start a
/// new line nor reorder or overwrite what surrounds it.
pub fn one_line(text: &str) -> String {
    escape_controls(text).into_owned()
}

/// Whether `c` must not reach a terminal or a log line raw: C0 and C1 control characters
/// (line breaks, `\r`, escape sequences, DEL) and the invisible bidirectional controls
/// that reorder what a reader sees (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069),
/// the Unicode line and paragraph separators, and the invisible characters that make two
/// keys look the same: the default-ignorable code points (the soft hyphen U+00AD, U+034F,
/// the Hangul fillers, U+17B4–U+17B5, U+180B–U+180F, U+200B, U+2060–U+206F, U+FEFF,
/// U+FFF0–U+FFFB, U+1BCA0–U+1BCA3, U+1D173–U+1D17A, the tags U+E0000–U+E007F) and the
/// blank U+2800. The joiners U+200C and U+200D and the variation selectors stay: Persian
/// words and emoji need them.
pub fn is_unsafe_to_show(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fffb}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// Before a command reads its input from stdin: say `line` on stderr when stdin is a
/// terminal, where the command would otherwise wait in silence for what is typed.
pub fn say_when_stdin_is_a_terminal(line: &str) {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        say_on_stderr(line);
    }
}

/// The first error writing a log line met (a full disk under the log file), kept so that
/// the pass can record that its log lost lines (see [`record_lost_log_lines`]).
static LOG_WRITE_FAILURE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Where log lines go: stderr (the log file, for a pass that has one), noting the first
/// write that fails. A closed pipe is not a failure worth recording.
pub struct WatchedStderr;

impl std::io::Write for WatchedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        watched(std::io::stderr().write(bytes))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        watched(std::io::stderr().flush())
    }
}

fn watched<T>(result: std::io::Result<T>) -> std::io::Result<T> {
    if let Err(error) = &result {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = LOG_WRITE_FAILURE.set(error.to_string());
        }
    }
    result
}

/// A pass writing its own log file prints its summary there at once, while it can still
/// record that the disk took none of it (see [`record_lost_log_lines`]); the report is then
/// not printed again. Nothing for a command printing to stdout.
pub fn print_into_log_file(report: &mut crate::error::Result<Report>, as_json: bool) {
    if let (true, Ok(report)) = (is_dated_lines(), report) {
        report.exit_code = report.print(as_json);
        report.printed = true;
    }
}

/// Record, as a `log_write_failed` event of `drain` and `run` (a pass's) or of no drain
/// (`supervise`), that log lines of this process could not be written; nothing when all
/// were. Logged too, in case some other line gets through.
pub fn record_lost_log_lines(
    client: &mut postgres::Client,
    outbox: &crate::db::events::Outbox,
    drain: Option<&str>,
    run: Option<i64>,
    now: chrono::DateTime<chrono::Utc>,
) {
    let Some(failure) = LOG_WRITE_FAILURE.get() else { return };
    // Which disk to free: the file stderr writes to, on this host (several hosts may share
    // the database, each with its own log folder).
    let log = std::fs::read_link("/proc/self/fd/2").ok().filter(|path| path.is_absolute());
    let host = crate::worker::process::host_name();
    let written_to = match &log {
        Some(path) => format!(" to {}", escape_controls(&path.to_string_lossy())),
        None => String::new(),
    };
    let message = format!(
        "could not write every log line{written_to} on host {}: {failure}; the lines it could not write are lost",
        escape_controls(&host)
    );
    log::error!("{message}");
    let mut event = crate::db::events::Event::new(crate::model::EventKind::LogWriteFailed, message).data(
        serde_json::json!({ "host": host, "log": log.map(|path| path.to_string_lossy().into_owned()) }),
    );
    if let Some(drain) = drain {
        event = event.drain(drain);
    }
    if let Some(run) = run {
        event = event.run(run);
    }
    crate::db::events::record_event_or_log(client, outbox, &event, now);
}

/// A failure's one line on stderr: `drainctl: …`, dated when the output is. A failure
/// no event can record — before the database was reached (a configuration that does not
/// load, a server that cannot be reached), or the session lost — of a pass writing to
/// `--log-file` is also told on the stderr the process started with, when that is another
/// file: no notifier and no log reader hears of it otherwise, and cron mails it
/// (docs/operations.md, "Who hears of errors").
pub fn say_failure(error: &crate::error::Error) {
    say_on_stderr(&format!("{}drainctl: {}", line_date(), error.final_line()));
    // Lost with the database, it could not be recorded either.
    let is_lost = matches!(error, crate::error::Error::Unavailable(_));
    if is_lost || !ERRORS_RECORDABLE.load(std::sync::atomic::Ordering::Relaxed) {
        tell_starting_stderr(&error.final_line());
    }
}

/// Say `line` (`drainctl: ` before it) on the stderr this process started with, when
/// `--log-file` took its place (see [`say_failure`]): a failure no event could record.
pub fn tell_starting_stderr(line: &str) {
    if let Some(mut starting) = STARTING_STDERR.get() {
        use std::io::Write as _;
        let _ = starting.write_all(whole_line(&escape_controls(&format!("drainctl: {line}"))).as_bytes());
    }
}

/// The stderr this process started with, when `--log-file` took its place and it is
/// another file (see [`say_failure`]).
static STARTING_STDERR: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// Set once the command is connected and its schema current: from then on its failures
/// can be recorded as events.
static ERRORS_RECORDABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The command reached its database: a failure from now on can be recorded.
pub fn errors_are_recordable() {
    ERRORS_RECORDABLE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Keep a copy of stderr before `log` takes its place, unless it is `log` already (a
/// drain `supervise` started writes to its log file from the start).
fn keep_starting_stderr(log: &std::fs::File) {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::MetadataExt;
    // SAFETY: fcntl duplicates this process's stderr onto a new close-on-exec descriptor,
    // which the File below then owns alone.
    let copy = unsafe { libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 3) };
    if copy == -1 {
        return;
    }
    // SAFETY: `copy` was just created and nothing else owns it.
    let starting = unsafe { std::fs::File::from_raw_fd(copy) };
    let is_log = match (starting.metadata(), log.metadata()) {
        (Ok(starting), Ok(log)) => starting.dev() == log.dev() && starting.ino() == log.ino(),
        _ => true,
    };
    if !is_log {
        let _ = STARTING_STDERR.set(starting);
    }
}

/// Write `line` (and a newline) to stderr, with its control characters escaped. A stderr
/// that cannot take it — closed, or a log file on a full disk — loses the line, never the
/// exit code: nothing is left to tell.
pub fn say_on_stderr(line: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_all(whole_line(&escape_controls(line)).as_bytes());
}

/// `line` and its line break, to be written in one `write`: stderr is unbuffered, and
/// `writeln!` writes the break apart — a reader that stamps what each write brings (pm2's
/// dated log) shows an empty stamped line after every message.
fn whole_line(line: &str) -> String {
    let mut whole = String::with_capacity(line.len() + 1);
    whole.push_str(line);
    whole.push('\n');
    whole
}

/// `text` safe to show on one line of a terminal or a log: `\r`, `\n` and `\t` become
/// `\\r`, `\\n` and `\\t`, every other character of [`is_unsafe_to_show`] becomes
/// `\u{…}` (U+202E is `\u{202e}`); everything else, backslashes included, is unchanged.
/// The one escaping function of human output and log lines; JSON output is never escaped
/// this way.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_to_show) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe_to_show(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Text of several lines safe for a terminal: line breaks and tabs stay, everything else
/// [`escape_controls`] escapes is escaped.
pub fn escape_lines(text: &str) -> String {
    text.split('\n')
        .map(|line| line.split('\t').map(escape_controls).collect::<Vec<_>>().join("\t"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// JSON text (serde_json's, whose line breaks are its layout) safe for a terminal and
/// still JSON: every character [`escape_controls`] escapes becomes a JSON escape
/// (`\u2028`), valid where it can be — inside a string — so that a payload copied from
/// `items show` parses as it was stored.
pub fn escape_json_text(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c == '\n' || !is_unsafe_to_show(c) {
            out.push(c);
            continue;
        }
        // Above U+FFFF (the tags U+E0000–U+E007F), a surrogate pair, as JSON spells it.
        let mut units = [0u16; 2];
        for unit in c.encode_utf16(&mut units) {
            let _ = write!(out, "\\u{unit:04x}");
        }
    }
    out
}

/// An instant as humans read it in a table: `2026-11-27 12:00 IST` in `zone`.
pub fn local_minute(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// An instant with seconds, for detail views: `2026-11-27 12:00:05 IST`.
pub fn local_second(at: DateTime<Utc>, zone: Tz) -> String {
    at.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z").to_string()
}

/// `4m ago` / `in 2d 3h` for `at` seen from `now`.
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    crate::duration::format_relative(at - now)
}

/// `2026-11-27 12:00:05 IST (4m ago)`, or `-` when there is no instant.
pub fn instant_and_age(at: Option<DateTime<Utc>>, now: DateTime<Utc>, zone: Tz) -> String {
    match at {
        Some(at) => format!("{} ({})", local_second(at, zone), relative(at, now)),
        None => "-".to_string(),
    }
}

/// Whether a file system refused `error` for want of room (no space, no inodes, over a
/// quota): worth another try once space is freed (75), not a path to fix (78).
pub fn is_full_file_system(error: &std::io::Error) -> bool {
    matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
}

/// Open the log file `name` in `folder` (`path` names it in messages) for appending,
/// created owner-only (0600); a file that exists keeps its mode. Never through a symbolic link, and only a regular file: a link,
/// a directory, a fifo or a device is refused (exit 78), as every file drainctl writes.
/// `named_by`: the option or setting that names it, for the message. A full file system
/// is a temporary failure (exit 75).
pub fn open_log_file_in(
    folder: &crate::pinned_folder::PinnedFolder,
    name: &std::ffi::OsStr,
    path: &std::path::Path,
    named_by: &str,
) -> crate::error::Result<std::fs::File> {
    use crate::error::Error;
    use std::os::unix::fs::FileTypeExt as _;

    let shown = path.display();
    let opened = folder.open_append(name, 0o600);
    let file = opened.map_err(|error| match error.raw_os_error() {
        _ if is_full_file_system(&error) => {
            Error::Temporary(format!("cannot open log file {shown}: {error}"))
        }
        Some(libc::ELOOP) => Error::Config(format!(
            "log file {shown} is a symbolic link, and drainctl never writes through links; \
                 remove it, or give {named_by} the real file"
        )),
        Some(libc::EISDIR) => {
            Error::Config(format!("log file {shown} is a directory; give {named_by} the path of a file"))
        }
        // A fifo nobody reads (one that is read is refused below).
        Some(libc::ENXIO) => Error::Config(format!(
            "log file {shown} is a fifo or socket, and drainctl appends only to regular files; give \
                 {named_by} another path"
        )),
        _ => Error::Config(format!("cannot open log file {shown}: {error}; check its folder and owner")),
    })?;
    let metadata = file
        .metadata()
        .map_err(|error| Error::Config(format!("cannot inspect log file {shown}: {error}")))?;
    // Another user's file: its owner could read what drainctl logs and forge lines in it.
    {
        use std::os::unix::fs::MetadataExt as _;
        let owner = metadata.uid();
        if owner != crate::ownership::effective_uid() && owner != 0 {
            return Err(Error::Config(format!(
                "log file {shown} {}, and its owner could read and forge its lines; remove it, or give \
                 {named_by} a file of yours",
                crate::ownership::foreign_owner(owner)
            )));
        }
        // A second name: a user who may write to some folder of the file system could
        // have linked a file of drainctl's user there (`/etc/shadow` on a host without
        // `fs.protected_hardlinks`) for it to append to.
        if metadata.is_file() && metadata.nlink() > 1 {
            return Err(Error::Config(format!(
                "log file {shown} has {} names (hard links), and drainctl appends only to a file of one name: \
                 another could be a file a user linked there for drainctl to write into; remove it, or give \
                 {named_by} another path",
                metadata.nlink()
            )));
        }
    }
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let what = if file_type.is_fifo() || file_type.is_socket() { "a fifo or socket" } else { "a device" };
        return Err(Error::Config(format!(
            "log file {shown} is {what}, and drainctl appends only to regular files; give {named_by} another path"
        )));
    }
    set_blocking(&file).map_err(|error| Error::Config(format!("cannot open log file {shown}: {error}")))?;
    Ok(file)
}

/// Refuse (78) a file or folder `path` drainctl writes (`what`: "log file", "metrics
/// textfile", …) that resolves through a symbolic link of another user than root and the
/// one running drainctl — in its folders as written or inside a link's target: its owner
/// would choose where drainctl creates folders and writes (the operator's own links, and
/// root's, are followed).
pub fn refuse_foreign_links(path: &std::path::Path, what: &str, named_by: &str) -> crate::error::Result<()> {
    match crate::ownership::foreign_link_on_the_way(path) {
        None => Ok(()),
        Some((link, owner)) => Err(crate::pinned_folder::foreign_link(what, path, named_by, &link, owner)),
    }
}

/// Clear `O_NONBLOCK` on a file opened with it.
fn set_blocking(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns for the call.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Send this process's stdout and stderr to `path`, opened for appending and created
/// owner-only (0600), its folder created owner-only (0700) when missing — what
/// `supervise --log-file` does so that a crontab line needs no shell redirect into a
/// folder that may not exist (docs/operations.md). An error names the path and what to
/// do; it is reported on the original stderr.
pub fn redirect_stdio_to_log_file(path: &std::path::Path) -> crate::error::Result<()> {
    use crate::error::Error;
    use std::os::fd::AsRawFd;

    refuse_foreign_links(path, "log file", "--log-file")?;
    let name = crate::atomic_file::file_name_of(path).ok_or_else(|| {
        Error::Config(format!("--log-file {} does not name a file; give a file path", path.display()))
    })?;
    let folder = crate::atomic_file::folder_of(path);
    // Made one folder at a time below the deepest that exists, pinned: never where a link
    // swapped in meanwhile would lead.
    let pinned = crate::pinned_folder::PinnedFolder::create_all(&folder, 0o700).map_err(|refusal| {
        refusal.into_error("log file", path, "--log-file", |error| {
            // A file where a folder of the path should be cannot be fixed by creating it.
            let not_a_folder = folder.ancestors().find(|part| part.exists() && !part.is_dir());
            match not_a_folder {
                // No room for a folder (no space, no inodes): a later pass gets it once
                // room is made (75), as the log file itself would.
                _ if is_full_file_system(&error) => Error::Temporary(format!(
                    "cannot create the folder of --log-file {}: {error}; free space on its file system",
                    path.display()
                )),
                Some(part) => Error::Config(format!(
                    "cannot create the folder of --log-file {}: {} is a file, not a folder; choose another path",
                    path.display(),
                    part.display()
                )),
                None => Error::Config(format!(
                    "cannot create the folder of --log-file {}: {error}; create it or choose another path",
                    path.display()
                )),
            }
        })
    })?;
    // Its folder, as held: one another user may write (or owns) lets them remove the log,
    // or put a file of theirs in its place, between two passes (docs/operations.md). A
    // sticky folder of root's or this user's (/tmp) lets nobody else touch this user's file.
    let held = pinned.metadata().map_err(|error| {
        Error::Config(format!("cannot inspect the folder of --log-file {}: {error}", path.display()))
    })?;
    if let Some(writer) = crate::ownership::folder_replacer(&held) {
        return Err(Error::Config(format!(
            "log file {} is in {}, {}; its lines could be removed or forged: give --log-file a path in a folder \
             of yours",
            path.display(),
            folder.display(),
            writer.may_replace()
        )));
    }
    let file = open_log_file_in(&pinned, name, path, "--log-file")?;
    keep_starting_stderr(&file);
    for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: dup2 onto the standard descriptors of this process; `file` stays open
        // for the call.
        if unsafe { libc::dup2(file.as_raw_fd(), target) } == -1 {
            let error = std::io::Error::last_os_error();
            return Err(Error::Internal(format!(
                "cannot send output to --log-file {}: {error}",
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_word_is_quoted_only_when_a_shell_would_read_it() {
        assert_eq!(shell_word("doc-17/a.pdf"), "doc-17/a.pdf");
        assert_eq!(shell_word("my doc"), "'my doc'");
        assert_eq!(shell_word("it's $HOME"), "'it'\\''s $HOME'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn dated_lines_carry_the_stamp_on_every_line() {
        let text = date_lines("DRAIN  ACTION\ndocs   start\n", "2026-11-27T10:00:05Z");
        assert_eq!(text, "2026-11-27T10:00:05Z DRAIN  ACTION\n2026-11-27T10:00:05Z docs   start\n");
        assert_eq!(date_lines("one line", "T"), "T one line\n");
    }

    #[test]
    fn table_aligns_columns() {
        let text = table(
            &["DRAIN", "STATE", "NOTE"],
            &[
                vec!["halacha".into(), "idle".into(), "x".into()],
                vec!["m".into(), "running".into(), "".into()],
            ],
        );
        assert_eq!(text, "DRAIN    STATE    NOTE\nhalacha  idle     x\nm        running\n");
    }

    #[test]
    fn wide_tables_fit_by_cutting_the_widest_cells() {
        let long = "x".repeat(300);
        let text = table(
            &["ID", "KIND", "MESSAGE"],
            &[
                vec!["1".into(), "item_dead_lettered".into(), long.clone()],
                vec!["22".into(), "k".into(), "short\nline".into()],
            ],
        );
        for line in text.lines() {
            assert!(line.chars().count() <= TABLE_WIDTH, "{line:?} is too wide");
        }
        assert!(text.contains("item_dead_lettered"), "{text}");
        assert!(text.lines().nth(1).unwrap().ends_with('…'), "{text}");
        assert!(text.contains("short\\nline"), "{text}");
    }

    #[test]
    fn a_table_cutting_its_last_column_keeps_the_others_whole() {
        let burst = "until Sat 2026-12-05 17:57:24 CET (in 5h 56m)".to_string();
        let rows = [vec!["summaries-of-sessions".into(), burst.clone(), "n".repeat(200)]];
        let text = table_cutting_last(&["DRAIN", "BURST", "NOTE"], &rows);
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains(&burst) && row.ends_with('…'), "{text}");
        assert!(row.chars().count() <= TABLE_WIDTH, "{text}");
        // Cut by the widest first, the deadline lost its unit.
        assert!(!table(&["DRAIN", "BURST", "NOTE"], &rows).contains(&burst));
    }

    #[test]
    fn narrow_columns_keep_their_header_width() {
        let mut widths = vec![2, 200, 200];
        fit_widths(&mut widths, &["ID", "A", "BBBBBBBBBB"], 40);
        assert_eq!(widths[0], 2);
        assert!(widths[2] >= 10);
        assert_eq!(widths.iter().sum::<usize>() + 4, 40);
    }

    #[test]
    fn controls_and_bidi_overrides_are_escaped_and_other_text_is_not() {
        assert_eq!(escape_controls("real\rFAKE"), "real\\rFAKE");
        assert_eq!(escape_controls("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape_controls("key\u{202e}txt.exe"), "key\\u{202e}txt.exe");
        assert_eq!(escape_controls("\u{1b}[2J\u{7f}\u{85}\0"), "\\u{1b}[2J\\u{7f}\\u{85}\\u{0}");
        // Invisible: `report\u{200b}.pdf` would read as `report.pdf` (before: shown raw).
        for c in [
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202d}',
            '\u{2066}',
            '\u{2069}',
            '\u{061c}',
            '\u{2028}',
            '\u{200b}',
            '\u{2060}',
            '\u{feff}',
            '\u{180e}',
            // Default-ignorable too (before: shown raw, `rep\u{ad}ort` read as `report`).
            '\u{ad}',
            '\u{34f}',
            '\u{115f}',
            '\u{17b4}',
            '\u{180b}',
            '\u{206a}',
            '\u{206f}',
            '\u{2800}',
            '\u{3164}',
            '\u{fff9}',
            '\u{1d173}',
            '\u{e0072}',
        ] {
            assert_eq!(escape_controls(&c.to_string()), format!("\\u{{{:x}}}", u32::from(c)));
        }
        for plain in
            ["שלום עולם", "C:\\path", "x → y ✓", "מִשְׁנָה", "👍🏽", "❤\u{fe0f}", "a\u{a0}b", "می\u{200c}خواهم"]
        {
            assert!(matches!(escape_controls(plain), Cow::Borrowed(_)), "{plain} is left alone");
        }
    }

    #[test]
    fn json_text_is_escaped_as_json() {
        let json = serde_json::to_string_pretty(&serde_json::json!({"k": "a\u{2028}b\u{7f}\u{85}\u{202e}"}));
        let shown = escape_json_text(&json.unwrap_or_default());
        assert_eq!(shown, "{\n  \"k\": \"a\\u2028b\\u007f\\u0085\\u202e\"\n}");
        let parsed: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
        assert_eq!(parsed["k"], "a\u{2028}b\u{7f}\u{85}\u{202e}");
        // Above U+FFFF, a surrogate pair (before: `\ue0041`, read as U+E004 and a `1`).
        let json =
            serde_json::to_string(&serde_json::json!({"k\u{e0041}": "x\u{1d173}y"})).unwrap_or_default();
        let shown = escape_json_text(&json);
        assert_eq!(shown, "{\"k\\udb40\\udc41\":\"x\\ud834\\udd73y\"}");
        let parsed: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
        assert_eq!(parsed["k\u{e0041}"], "x\u{1d173}y");
    }

    #[test]
    fn several_lines_keep_their_breaks_and_tabs() {
        assert_eq!(escape_lines("a\tb\nc\r\n\u{202e}d\n"), "a\tb\nc\\r\n\\u{202e}d\n");
    }

    #[test]
    fn a_table_cell_cannot_start_a_line_or_reorder_its_row() {
        let text = table(&["KEY", "STATE"], &[vec!["a\u{202e}b\rc\nd".into(), "pending".into()]]);
        assert_eq!(text, "KEY               STATE\na\\u{202e}b\\rc\\nd  pending\n");
    }

    #[test]
    fn truncate_marks_the_cut() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("שלום עולם", 5), "שלום…");
    }
}
