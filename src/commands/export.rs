//! `drainctl export NAME`: every item of a drain — key, state, payload, result, attempts,
//! finished time and the usage its attempts reported — as JSON lines or CSV
//! (docs/results.md#export, docs/json.md).
//!
//! Items are written as they are read, in id order, from one snapshot: memory holds one
//! fetch of rows, never the export. Each line names its item's `id`, and the summary names
//! the last one, so `--after-id` resumes exactly after what was written. When the output
//! fails, the error names the last item whose line the output accepted whole — not the
//! last one put in the buffer in front of it. With `--output`
//! the file is written beside its target under a temporary name (owner-only) and renamed
//! over it only when complete; on any error nothing is left behind. A CSV never holds a
//! cell a spreadsheet would run as a formula, nor a NUL byte; JSON lines are exact.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fs::Permissions;
use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use chrono::SecondsFormat;
use serde::Serialize;

use crate::cli::{ExportArgs, ExportFormat};
use crate::context::Context;
use crate::db::export::{for_each_item, ExportFilter, ExportRow};
use crate::error::{Error, Result};
use crate::model::ItemState;
use crate::output::Report;
use crate::worker::signals;

/// Mode of an `--output` file: results may be private.
const OUTPUT_MODE: u32 = 0o600;
/// Buffer between the rows and the file or pipe.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;
/// The CSV columns, in order; the JSON lines carry the same fields.
const CSV_HEADER: &str = "id,key,state,attempts,enqueued_at,finished_at,last_error,payload,result_encoding,\
                          result_bytes,result,cost_usd,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens";

pub fn run(ctx: &mut Context, args: &ExportArgs) -> Result<Report> {
    if args.no_header && args.format != ExportFormat::Csv {
        return Err(Error::Usage(
            "--no-header applies to --format csv only: JSON lines have no header".to_string(),
        ));
    }
    let drain = ctx.known_drain(&args.name)?;
    let now = ctx.clock.now();
    let filter = ExportFilter {
        drain: &drain,
        state: args.state,
        finished_since: args.since.map(|since| since.instant(now)),
        after_id: args.after_id.unwrap_or(0),
    };
    // `-o -` is stdout, as for most tools; a file named `-` is `-o ./-`.
    let output = args.output.as_deref().filter(|path| !crate::cli::is_standard_stream(path));
    let target = output.map(OutputTarget::check).transpose()?;
    // SIGTERM and SIGINT end the export between two items, or in a write a stalled
    // reader blocks, through the error path that removes an unfinished --output file.
    signals::install_interrupting_termination_handlers()
        .map_err(|error| Error::Internal(format!("cannot install signal handlers: {error}")))?;
    let mut progress = Progress::new(filter.after_id);
    match &target {
        Some(target) => {
            let (file, temporary) =
                crate::atomic_file::create_temporary(&target.pinned, &target.file_name, OUTPUT_MODE)
                    .map_err(|error| target.error("create a temporary file beside", error))?;
            // The umask may only have narrowed the mode; set it through the descriptor.
            file.set_permissions(Permissions::from_mode(OUTPUT_MODE))
                .map_err(|error| target.error("set the mode of the temporary file for", error))?;
            let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, Accepted::new(file));
            write_items(
                &mut ctx.client,
                &filter,
                args.format,
                !args.no_header,
                Shown::Exact,
                &mut out,
                &mut progress,
            )
            .map_err(|error| {
                error.context(&format!(
                    "export of drain {drain} to {} (nothing was written; {} is left as it was)",
                    target.path.display(),
                    target.path.display()
                ))
            })?;
            let file = out.into_inner().map_err(|error| target.error("write", error.into_error()))?.output;
            file.sync_all().map_err(|error| target.error("write", error))?;
            drop(file);
            temporary.rename_to(&target.file_name).map_err(|error| target.error("replace", error))?;
            target.pinned.sync();
            Ok(Report::new(
                progress.describe(&drain, &format!(" to {}", target.path.display())),
                serde_json::Value::Null,
            ))
        }
        None => {
            // Straight to descriptor 1, not through Rust's line-buffered stdout, whose own
            // buffer would count as written what never reached the output.
            let stdout = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|error| Error::Temporary(format!("cannot write to stdout: {error}")))?;
            // On a terminal, what a worker printed must not rewrite the operator's screen.
            let shown = match std::io::IsTerminal::is_terminal(&stdout) {
                true => Shown::OnATerminal,
                false => Shown::Exact,
            };
            let mut out =
                BufWriter::with_capacity(WRITE_BUFFER_BYTES, Accepted::new(std::fs::File::from(stdout)));
            let written = write_items(
                &mut ctx.client,
                &filter,
                args.format,
                !args.no_header,
                shown,
                &mut out,
                &mut progress,
            )
            .and_then(|()| out.flush().map_err(write_error));
            if written.is_err() && signals::termination_signal().is_none() {
                // What the output still takes is delivered (the database went away); after
                // a failed write this fails again at once. Not after SIGTERM or SIGINT: a
                // reader that stopped reading would block it for ever, and the lines left
                // in the buffer are not counted as delivered anyway.
                let _ = out.flush();
            }
            let (accepted, _unwritten) = out.into_parts();
            progress.accepted(accepted.bytes);
            written.map_err(|error| {
                let resume = progress.resume_id();
                error.context(&format!(
                    "export of drain {drain} stopped after item id {resume} (--after-id {resume} resumes there)"
                ))
            })?;
            // The summary is not data: it goes to stderr, stdout carries only items.
            crate::output::say_on_stderr(&format!("drainctl: {}", progress.describe(&drain, "")));
            Ok(Report::new(String::new(), serde_json::Value::Null))
        }
    }
}

/// How far an export got: what a resume needs.
struct Progress {
    /// Items put in the buffer.
    items: u64,
    /// The last item put in the buffer.
    last_id: Option<i64>,
    after_id: i64,
    /// Items in the buffer whose line the output has not accepted whole yet: the offset
    /// in the output where each line ends, and its id, in order.
    in_flight: VecDeque<(u64, i64)>,
    /// The last item whose line the output accepted whole.
    delivered_id: Option<i64>,
}

impl Progress {
    fn new(after_id: i64) -> Progress {
        Progress { items: 0, last_id: None, after_id, in_flight: VecDeque::new(), delivered_id: None }
    }

    /// Item `id` is in the buffer; its line ends at offset `line_end` of the output.
    fn queued(&mut self, id: i64, line_end: u64) {
        self.items += 1;
        self.last_id = Some(id);
        self.in_flight.push_back((line_end, id));
    }

    /// The output has accepted its first `bytes` bytes: every line that ends within them
    /// is delivered; a line cut by a partial write is not.
    fn accepted(&mut self, bytes: u64) {
        while let Some(&(line_end, id)) = self.in_flight.front() {
            if line_end > bytes {
                break;
            }
            self.delivered_id = Some(id);
            self.in_flight.pop_front();
        }
    }

    /// `exported 3 items of drain docs PLACE (ids up to 42; --after-id 42 resumes after them)`.
    fn describe(&self, drain: &str, place: &str) -> String {
        let noun = if self.items == 1 { "item" } else { "items" };
        let resume = match self.last_id {
            Some(last) => format!("ids up to {last}; --after-id {last} resumes after them"),
            // No `--after-id` given: nothing else (the state, `--since`) matched.
            None if self.after_id == 0 => "none matched".to_string(),
            None => format!("none after id {}", self.after_id),
        };
        format!("exported {} {noun} of drain {drain}{place} ({resume})", self.items)
    }

    /// Where a resume starts: after the last item the output accepted whole, else where
    /// this export started.
    fn resume_id(&self) -> i64 {
        self.delivered_id.unwrap_or(self.after_id)
    }
}

/// The output under the buffer, counting the bytes it accepted: a write returns how many
/// it took, a partial one included.
struct Accepted<W> {
    output: W,
    bytes: u64,
}

impl<W> Accepted<W> {
    fn new(output: W) -> Accepted<W> {
        Accepted { output, bytes: 0 }
    }
}

impl<W: Write> Write for Accepted<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        // A write blocked on a reader that stopped reading returns when SIGTERM or SIGINT
        // interrupts it: the export ends rather than write (and block) again.
        // (An interrupted write is retried by `BufWriter`, and so refused here.)
        if let Some(stop) = signals::stop_requested() {
            return Err(stop);
        }
        let written = self.output.write(buffer)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.output.flush()
    }
}

/// Write the header (CSV, unless `header` is false), then every item, as they are read,
/// noting in `progress` where each line ends and how much of the output was accepted.
/// How the items' text is written: exact, or shown on a terminal (docs/results.md#export).
#[derive(Clone, Copy, PartialEq)]
enum Shown {
    Exact,
    /// Every character [`crate::output::escape_controls`] escapes — an escape sequence, a
    /// carriage return, a bidirectional control — written as an escape: in JSON lines as
    /// a JSON escape (`\u001b`, `\u202e`), the same value; in a CSV cell as drainctl shows it
    /// elsewhere on a terminal (`\u{1b}`), line breaks and tabs kept.
    OnATerminal,
}

fn write_items<W: Write>(
    client: &mut postgres::Client,
    filter: &ExportFilter,
    format: ExportFormat,
    header: bool,
    shown: Shown,
    out: &mut BufWriter<Accepted<W>>,
    progress: &mut Progress,
) -> Result<()> {
    if format == ExportFormat::Csv && header {
        write!(out, "{CSV_HEADER}\r\n").map_err(write_error)?;
    }
    let result = for_each_item(client, filter, |row| {
        if let Some(stop) = signals::stop_requested() {
            return Err(Error::Temporary(stop.to_string()));
        }
        let written = match format {
            ExportFormat::Jsonl => write_json_line(out, &row, shown),
            ExportFormat::Csv => write_csv_record(out, &row, shown),
        };
        let accepted = out.get_ref().bytes;
        progress.accepted(accepted);
        written.map_err(write_error)?;
        progress.queued(row.id, accepted + out.buffer().len() as u64);
        Ok(())
    });
    result
}

/// A failed write: a closed pipe or a full disk is worth another try (exit 75).
fn write_error(error: std::io::Error) -> Error {
    match signals::stop_requested() {
        Some(stop) => Error::Temporary(stop.to_string()),
        None => Error::Temporary(format!("cannot write: {error}")),
    }
}

/// A result as it is exported: UTF-8 text as is, anything else as standard base64.
/// `is_nul_text` says whether UTF-8 text holding a NUL character is text (JSON lines,
/// where it is escaped) or base64 too (CSV, whose readers may cut a cell at a NUL).
fn encoded_result(result: Option<&[u8]>, is_nul_text: bool) -> (Option<&'static str>, Option<Cow<'_, str>>) {
    match result {
        None => (None, None),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) if is_nul_text || !text.contains('\0') => (Some("utf-8"), Some(Cow::Borrowed(text))),
            _ => (Some("base64"), Some(Cow::Owned(base64::engine::general_purpose::STANDARD.encode(bytes)))),
        },
    }
}

/// One exported item as JSON (docs/json.md#drainctl-export-name).
#[derive(Serialize)]
struct ExportLine<'a> {
    id: i64,
    key: &'a str,
    state: ItemState,
    attempts: i32,
    enqueued_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    last_error: Option<&'a str>,
    payload: &'a serde_json::Value,
    result_encoding: Option<&'static str>,
    result_bytes: Option<usize>,
    result: Option<Cow<'a, str>>,
    cost_usd: Option<f64>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    cache_read_tokens: Option<i64>,
    cache_write_tokens: Option<i64>,
}

impl<'a> ExportLine<'a> {
    /// The line of `row`; `format` decides only how a result holding a NUL is encoded.
    fn of(row: &'a ExportRow, format: ExportFormat) -> ExportLine<'a> {
        let (result_encoding, result) = encoded_result(row.result.as_deref(), format == ExportFormat::Jsonl);
        ExportLine {
            id: row.id,
            key: &row.key,
            state: row.state,
            attempts: row.attempts,
            enqueued_at: row.enqueued_at,
            finished_at: row.finished_at,
            last_error: row.last_error.as_deref(),
            payload: &row.payload,
            result_encoding,
            result_bytes: row.result.as_ref().map(Vec::len),
            result,
            cost_usd: row.usage.cost_usd,
            input_tokens: row.usage.input_tokens,
            output_tokens: row.usage.output_tokens,
            cache_read_tokens: row.usage.cache_read_tokens,
            cache_write_tokens: row.usage.cache_write_tokens,
        }
    }
}

fn write_json_line(out: &mut impl Write, row: &ExportRow, shown: Shown) -> std::io::Result<()> {
    let line = ExportLine::of(row, ExportFormat::Jsonl);
    match shown {
        Shown::Exact => serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from)?,
        Shown::OnATerminal => {
            let json = serde_json::to_string(&line).map_err(std::io::Error::from)?;
            out.write_all(crate::output::escape_json_text(&json).as_bytes())?;
        }
    }
    out.write_all(b"\n")
}

/// One CSV record (docs/json.md#drainctl-export-name): numbers as they are, every other
/// cell through [`csv_text`].
fn write_csv_record(out: &mut impl Write, row: &ExportRow, shown: Shown) -> std::io::Result<()> {
    let line = ExportLine::of(row, ExportFormat::Csv);
    let instant = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let number = |value: Option<i64>| value.map(|n| n.to_string()).unwrap_or_default();
    let fields: [Cow<str>; 16] = [
        Cow::Owned(line.id.to_string()),
        cell(Cow::Borrowed(line.key), shown),
        cell(Cow::Borrowed(line.state.as_str()), shown),
        Cow::Owned(line.attempts.to_string()),
        cell(Cow::Owned(instant(line.enqueued_at)), shown),
        cell(Cow::Owned(line.finished_at.map(instant).unwrap_or_default()), shown),
        cell(Cow::Borrowed(line.last_error.unwrap_or_default()), shown),
        cell(Cow::Owned(line.payload.to_string()), shown),
        cell(Cow::Borrowed(line.result_encoding.unwrap_or_default()), shown),
        Cow::Owned(line.result_bytes.map(|n| n.to_string()).unwrap_or_default()),
        cell(line.result.clone().unwrap_or_default(), shown),
        Cow::Owned(line.cost_usd.map(|cost| cost.to_string()).unwrap_or_default()),
        Cow::Owned(number(line.input_tokens)),
        Cow::Owned(number(line.output_tokens)),
        Cow::Owned(number(line.cache_read_tokens)),
        Cow::Owned(number(line.cache_write_tokens)),
    ];
    for (index, field) in fields.iter().enumerate() {
        if index > 0 {
            out.write_all(b",")?;
        }
        write_csv_field(out, field)?;
    }
    out.write_all(b"\r\n")
}

/// A CSV text cell ([`csv_text`]) as `shown`.
fn cell(text: Cow<'_, str>, shown: Shown) -> Cow<'_, str> {
    match shown {
        Shown::Exact => csv_text(text),
        Shown::OnATerminal => csv_text(Cow::Owned(crate::output::escape_lines(&text))),
    }
}

/// A CSV text cell that a spreadsheet would not run as a formula (OWASP, "CSV
/// Injection"): one that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
/// leading `'`. So does one that starts with `'` itself, so that the rule can be undone:
/// a text cell that starts with `'` lost exactly that first `'` (docs/json.md).
fn csv_text(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) {
        Cow::Owned(format!("'{text}"))
    } else {
        text
    }
}

/// A CSV field (RFC 4180): quoted, with its quotes doubled, when it holds a comma, a
/// quote, a line break or leading or trailing space — or a semicolon or a tab, the
/// separators a spreadsheet takes in other locales (Excel in German or French splits at
/// `;`), where `b;=1+1` would become a cell `=1+1` it runs; as is otherwise.
fn write_csv_field(out: &mut impl Write, field: &str) -> std::io::Result<()> {
    let needs_quotes = field.contains([',', '"', '\n', '\r', ';', '\t'])
        || field.starts_with(char::is_whitespace)
        || field.ends_with(char::is_whitespace);
    if !needs_quotes {
        return out.write_all(field.as_bytes());
    }
    out.write_all(b"\"")?;
    for (index, part) in field.split('"').enumerate() {
        if index > 0 {
            out.write_all(b"\"\"")?;
        }
        out.write_all(part.as_bytes())?;
    }
    out.write_all(b"\"")
}

/// The longest file name, in bytes, the file system of `folder` takes (255 when it does
/// not say).
fn longest_file_name(folder: &Path) -> usize {
    use std::os::unix::ffi::OsStrExt;
    let Ok(folder) = std::ffi::CString::new(folder.as_os_str().as_bytes()) else { return 255 };
    // SAFETY: pathconf reads the NUL-terminated path and returns a number or -1.
    let longest = unsafe { libc::pathconf(folder.as_ptr(), libc::_PC_NAME_MAX) };
    usize::try_from(longest).ok().filter(|longest| *longest > 0).unwrap_or(255)
}

/// A checked `--output` path: its folder exists and it is not something other than a
/// regular file (a link, a folder), which would never be replaced.
struct OutputTarget {
    path: PathBuf,
    /// Its folder, held open: the file is written there whatever its path names later.
    pinned: crate::pinned_folder::PinnedFolder,
    file_name: std::ffi::OsString,
}

impl OutputTarget {
    fn check(path: &Path) -> Result<OutputTarget> {
        let shown = path.display();
        let file_name = crate::atomic_file::file_name_of(path)
            .ok_or_else(|| Error::Usage(format!("--output {shown} does not name a file; give a file path")))?
            .to_os_string();
        let folder = crate::atomic_file::folder_of(path);
        // Its owner would choose the file replaced (docs/results.md).
        crate::output::refuse_foreign_links(path, "--output", "--output")
            .map_err(|refused| Error::Usage(refused.to_string()))?;
        if !folder.is_dir() {
            return Err(Error::Usage(format!(
                "--output {shown}: its folder {} does not exist or is not a directory; create it or choose another path",
                folder.display()
            )));
        }
        // Refused now, not by the rename once the whole export is written.
        let name_max = longest_file_name(&folder);
        if file_name.len() > name_max {
            return Err(Error::Usage(format!(
                "--output {shown}: its file name is {} bytes, more than the {name_max} its folder's file system allows; \
                 choose a shorter name",
                file_name.len()
            )));
        }
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if metadata.file_type().is_symlink() => Err(Error::Usage(format!(
                "--output {shown} is a symbolic link, and drainctl never writes through links; give the real path"
            ))),
            Ok(metadata) if !metadata.file_type().is_file() => Err(Error::Usage(format!(
                "--output {shown} exists and is not a regular file; choose another path"
            ))),
            _ => {
                let pinned = crate::pinned_folder::PinnedFolder::open(&folder).map_err(|refusal| {
                    let refused = refusal.into_error("--output", path, "--output", |error| {
                        OutputTarget::failed(path, "open the folder of", error)
                    });
                    match refused {
                        Error::Config(message) => Error::Usage(message),
                        other => other,
                    }
                })?;
                Ok(OutputTarget { path: path.to_path_buf(), pinned, file_name })
            }
        }
    }

    /// A failed file operation: one retrying cannot fix (the folder's permissions, a
    /// read-only file system, a name too long: crate::atomic_file::is_permanent) is the
    /// command line's to fix (64), anything else (a full disk) worth another try (75).
    fn error(&self, what: &str, error: std::io::Error) -> Error {
        Self::failed(&self.path, what, error)
    }

    fn failed(path: &Path, what: &str, error: std::io::Error) -> Error {
        let mut message = format!("cannot {what} {}: {error}", path.display());
        // The last writes (a full disk refusing what was buffered) leave it as the first
        // do: the temporary file goes, the file stays (docs/results.md).
        if matches!(what, "write" | "replace") {
            message.push_str(&format!(
                " (nothing was written; {} is left as it was: run the export again whole)",
                path.display()
            ));
        }
        if crate::atomic_file::is_permanent(&error) {
            Error::Usage(format!("{message}; choose a folder you may write to, or another path"))
        } else {
            Error::Temporary(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_disk_at_the_last_write_says_the_file_is_left_as_it_was() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let error = OutputTarget::failed(Path::new("/data/e.jsonl"), "write", full);
        assert_eq!(error.exit_code(), 75);
        assert_eq!(
            error.to_string(),
            "cannot write /data/e.jsonl: No space left on device (os error 28) (nothing was written; \
             /data/e.jsonl is left as it was: run the export again whole)"
        );
        let refused = OutputTarget::failed(
            Path::new("/data/e.jsonl"),
            "create a temporary file beside",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(!refused.to_string().contains("left as it was"), "{refused}");
    }

    fn csv(field: &str) -> String {
        let mut out = Vec::new();
        write_csv_field(&mut out, field).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_fields_are_quoted_only_when_they_must_be() {
        assert_eq!(csv("plain"), "plain");
        assert_eq!(csv(""), "");
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv(" padded"), "\" padded\"");
    }

    #[test]
    fn the_resume_id_is_the_last_line_the_output_accepted_whole() {
        let mut progress = Progress::new(40);
        assert_eq!(progress.resume_id(), 40);
        // Lines of 10 bytes after a 5-byte header: items 41, 42, 43 end at 15, 25, 35.
        for (id, end) in [(41, 15), (42, 25), (43, 35)] {
            progress.queued(id, end);
        }
        progress.accepted(14);
        assert_eq!(progress.resume_id(), 40, "line 41 cut by a partial write");
        progress.accepted(25);
        assert_eq!(progress.resume_id(), 42);
        progress.accepted(34);
        assert_eq!(progress.resume_id(), 42);
        assert_eq!((progress.items, progress.last_id), (3, Some(43)), "the summary counts what was queued");
        progress.accepted(35);
        assert_eq!(progress.resume_id(), 43);
    }

    #[test]
    fn results_are_text_when_they_are_utf8_and_base64_otherwise() {
        for is_nul_text in [true, false] {
            assert_eq!(encoded_result(None, is_nul_text), (None, None));
            let (encoding, text) = encoded_result(Some("résumé\n".as_bytes()), is_nul_text);
            assert_eq!((encoding, text.as_deref()), (Some("utf-8"), Some("résumé\n")));
            let (encoding, text) = encoded_result(Some(&[0xff, 0xfe, 0x00, 0x80]), is_nul_text);
            assert_eq!((encoding, text.as_deref()), (Some("base64"), Some("//4AgA==")));
        }
        // A NUL is text in JSON (escaped), base64 in CSV.
        let (encoding, text) = encoded_result(Some(b"a\0b"), true);
        assert_eq!((encoding, text.as_deref()), (Some("utf-8"), Some("a\0b")));
        let (encoding, text) = encoded_result(Some(b"a\0b"), false);
        assert_eq!((encoding, text.as_deref()), (Some("base64"), Some("YQBi")));
    }

    fn row(key: &str, result: &[u8], payload: serde_json::Value) -> ExportRow {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T09:00:00Z").unwrap().to_utc();
        ExportRow {
            id: 7,
            key: key.to_string(),
            state: ItemState::Done,
            attempts: 1,
            enqueued_at: at,
            finished_at: Some(at),
            last_error: Some("-bash: x: command not found".to_string()),
            payload,
            result: Some(result.to_vec()),
            usage: crate::db::usage::UsageSums { cost_usd: Some(-0.5), ..Default::default() },
        }
    }

    fn csv_record(row: &ExportRow) -> String {
        let mut out = Vec::new();
        write_csv_record(&mut out, row, Shown::Exact).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_as_formulas_start_with_a_quote() {
        assert_eq!(
            csv_record(&row("=cmd|' /C calc'!A0", b"=HYPERLINK(\"http://evil\",\"x\")", json!(-1))),
            "7,'=cmd|' /C calc'!A0,done,1,2026-11-27T09:00:00Z,2026-11-27T09:00:00Z,\
             '-bash: x: command not found,'-1,utf-8,29,\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",-0.5,,,,\r\n"
        );
        assert_eq!(
            csv_record(&row("+1+1", b"@SUM(1+1)", json!({"a": 1}))),
            "7,'+1+1,done,1,2026-11-27T09:00:00Z,2026-11-27T09:00:00Z,\
             '-bash: x: command not found,\"{\"\"a\"\":1}\",utf-8,9,'@SUM(1+1),-0.5,,,,\r\n"
        );
        // A tab or carriage return first, and a quote first (so that the rule can be undone).
        assert_eq!(csv_text(Cow::Borrowed("\t=1")), "'\t=1");
        assert_eq!(csv_text(Cow::Borrowed("\r=1")), "'\r=1");
        assert_eq!(csv_text(Cow::Borrowed("'=1")), "''=1");
        // A semicolon or a tab is another locale's separator: the cell is quoted, so a
        // spreadsheet splitting there keeps `b;=1+1` one text cell (before: `=1+1` ran).
        let split = csv_record(&row("b;=1+1", b"c\t=2+2", json!(null)));
        assert!(split.contains(",\"b;=1+1\",") && split.contains(",\"c\t=2+2\","), "{split}");
        for harmless in ["", "plain", "1+1", " =1", "a=b", "{\"n\":-1}"] {
            assert_eq!(csv_text(Cow::Borrowed(harmless)), harmless);
        }
    }

    #[test]
    fn a_result_with_a_nul_is_base64_in_csv_and_escaped_text_in_json() {
        let row = row("k", b"a\0b", json!(null));
        assert!(csv_record(&row).contains(",base64,3,YQBi,"), "{}", csv_record(&row));
        let mut out = Vec::new();
        write_json_line(&mut out, &row, Shown::Exact).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (line["result_encoding"].as_str(), line["result"].as_str()),
            (Some("utf-8"), Some("a\0b"))
        );
    }
}
