//! `drainctl enqueue NAME`: add items to a drain's backlog, one (`--key --payload`) or
//! many (JSON lines on stdin or `--file`). A batch is all or nothing: a malformed line is
//! reported with its line number and nothing of that batch is inserted.
//!
//! A payload is checked before it is sent against what PostgreSQL's jsonb can store: no
//! NUL character (`\u0000`) in any string or object key, and at most [`MAX_PAYLOAD_BYTES`]
//! of JSON. A value the server still refuses is reported the same way, with its line.
//! Numbers keep their digits, however many (serde_json's `arbitrary_precision`): jsonb
//! stores them as `numeric`, exactly as enqueued (docs/json.md).

use std::io::{BufRead, BufReader};

use serde_json::{json, Value};

use crate::cli::EnqueueArgs;
use crate::context::Context;
use crate::db::drains::ensure_drain;
use crate::db::events::{record_event, Event};
use crate::db::items::{
    apply_staged_items, finish_staging, first_refused_line, refused_item, stage_item, start_staging, NewItem,
    MAX_KEY_BYTES,
};
use crate::error::{Error, Result};
use crate::model::EventKind;
use crate::output::Report;

/// What a batch whose commit's outcome is unknown asks (see `db::in_transaction_told`).
const ENQUEUE_AGAIN: &str = "run the same enqueue again once the database answers: the items already \
                             enqueued count as duplicates, the rest are added";

/// Longest payload accepted, as compact JSON: 256 MiB − 1, the most PostgreSQL's jsonb
/// holds in one string or in the elements of one array or object.
pub const MAX_PAYLOAD_BYTES: usize = (1 << 28) - 1;

/// The item `--key`/`--payload` give, checked before anything connects: a wrong one is
/// refused (65) whether the database is up or not, and an empty database is not migrated
/// for it. `None` when the items come from a file or stdin.
pub fn given_item(args: &EnqueueArgs) -> Result<Option<NewItem>> {
    let (Some(key), Some(payload)) = (&args.key, &args.payload) else { return Ok(None) };
    let payload: Value = serde_json::from_str(payload).map_err(|error| {
                Error::Data(if is_too_deep(&error) {
                    format!("--payload is nested more than {MAX_JSON_DEPTH} levels deep, more than drainctl reads: flatten it")
                } else if error.is_syntax() && !payload.trim_start().starts_with(['{', '[', '"']) {
                    // Text meant as the payload: a JSON string is quoted.
                    format!(
                        "--payload is not valid JSON: {error}; text is a JSON string in double quotes \
                         (--payload '\"...\"'), or an object (--payload '{{\"prompt\": \"...\"}}')"
                    )
                } else {
                    format!("--payload is not valid JSON: {error}")
                })
            })?;
    check_payload(&payload).map_err(|problem| Error::Data(format!("--payload: {problem}")))?;
    Ok(Some(NewItem { key: check_key(key, None)?, payload }))
}

/// `given`: the item of `--key`/`--payload`, checked by [`given_item`].
pub fn run(ctx: &mut Context, args: &EnqueueArgs, given: Option<NewItem>) -> Result<Report> {
    let drain = ctx.configured_drain(&args.name)?.name.clone();
    let input = match given {
        Some(item) => Input::One(item),
        None => match args.file.as_ref().filter(|path| !crate::cli::is_standard_stream(path)) {
            Some(path) => {
                // A path it cannot open is a wrong command line, not bad data (docs/exit-codes.md).
                let cannot_open = |why: &dyn std::fmt::Display| {
                    Error::Usage(format!("--file {}: cannot be opened: {why}", path.display()))
                };
                // Another user's link chooses what is read — a file of root's they may not
                // read themselves, into a payload (docs/configuration.md).
                if let Some((link, owner)) = crate::ownership::foreign_link_on_the_way(path) {
                    return Err(Error::Usage(format!(
                        "{}; drainctl does not read through another user's links: give --file a path through \
                         folders and links of yours",
                        crate::ownership::reached_through("--file", path, &link, owner)
                    )));
                }
                // A named pipe is read once a writer opens it: said, or the command waits in
                // silence. Not a shell's pipe (`<(…)`, /dev/stdin: a link to one whose writer
                // is there already).
                if std::fs::symlink_metadata(path)
                    .is_ok_and(|metadata| std::os::unix::fs::FileTypeExt::is_fifo(&metadata.file_type()))
                {
                    crate::output::say_on_stderr(&format!(
                        "drainctl: --file {} is a named pipe: reading it once a writer opens it (Ctrl-C enqueues \
                         nothing)",
                        path.display()
                    ));
                }
                let file = std::fs::File::open(path).map_err(|error| cannot_open(&error))?;
                // A folder opens; it is the path that is wrong, not a line of data.
                if file.metadata().is_ok_and(|metadata| metadata.is_dir()) {
                    return Err(cannot_open(&"it is a folder; give the file of JSON lines"));
                }
                Input::Lines(Box::new(BufReader::with_capacity(1 << 16, file)), path.display().to_string())
            }
            None => {
                let stdin = std::io::stdin();
                crate::output::say_when_stdin_is_a_terminal(
                    "drainctl: reading JSON lines from the terminal, one {\"key\": …, \"payload\": …} a line; end \
                     with Ctrl-D (Ctrl-C enqueues nothing)",
                );
                Input::Lines(Box::new(BufReader::with_capacity(1 << 16, stdin.lock())), "stdin".to_string())
            }
        },
    };
    let now = ctx.clock.now();
    // The drain's control row is committed on its own, before the batch: created inside
    // a long batch (a slow producer on stdin), it would hold every `supervise` pass,
    // which creates the rows of all configured drains, until the batch ends.
    ensure_drain(&mut ctx.client, &drain, now)?;
    let counts = crate::db::in_transaction_told(&mut ctx.client, ENQUEUE_AGAIN, |tx| {
        let (staged, source) = stage(tx, input)?;
        let origin = |line: i64| match &source {
            Some(source) => format!("{source}:{line}"),
            None => "--payload".to_string(),
        };
        let counts = apply_staged_items(tx, &drain, staged, args.replace, now, &origin)?;
        if counts.added + counts.replaced > 0 {
            let event = Event::new(
                EventKind::ItemsEnqueued,
                format!(
                    "enqueued {} new, {} replaced, {}",
                    counts.added,
                    counts.replaced,
                    crate::output::counted(counts.duplicates, "duplicate")
                ),
            )
            .drain(&drain)
            .data(json!(counts));
            record_event(tx, &ctx.outbox, &event, now)?;
        }
        // From the commit on, a signal no longer ends the command: one that came after
        // the server committed would leave the batch enqueued and the caller told nothing
        // (docs/exit-codes.md).
        crate::worker::signals::ignore_termination_signals();
        #[cfg(feature = "testing")]
        if std::env::var(crate::drain::FAULT_ENV).is_ok_and(|fault| fault == "slow_enqueue_commit") {
            std::thread::sleep(std::time::Duration::from_millis(1500));
        }
        Ok(counts)
    })?;
    let human = format!(
        "{drain}: {} added, {} duplicate{}{}",
        counts.added,
        counts.duplicates,
        if counts.duplicates == 1 { "" } else { "s" },
        if args.replace { format!(", {} replaced", counts.replaced) } else { String::new() }
    );
    // `--replace` resets finished items only: say why an item given with it was not.
    // Without it, a finished item given again is left finished: say so, and what runs it.
    let human = if counts.finished_duplicates > 0 && !args.replace {
        format!(
            "{human}; {} and left so: --replace runs {} again with the new payload{}",
            match counts.finished_duplicates {
                1 => "1 of them is an item finished (done, dead or skipped_missing)".to_string(),
                n => format!("{n} of them are items finished (done, dead or skipped_missing)"),
            },
            if counts.finished_duplicates == 1 { "it" } else { "them" },
            // One item given by --key and --payload has no lines.
            if args.key.is_some() { "" } else { " (the first line of a key given twice)" }
        )
    } else {
        human
    };
    let human = if args.replace && counts.duplicates > 0 {
        format!(
            "{human} (a duplicate is an item not finished yet, or a key repeated in the input: left as it is; \
             --replace resets done, dead and skipped_missing items)"
        )
    } else {
        human
    };
    Ok(Report::new(
        human,
        json!({
            "drain": drain,
            "added": counts.added,
            "duplicates": counts.duplicates,
            // The text's "finished … and left so", which `--replace` does not leave.
            "finished_duplicates": if args.replace { 0 } else { counts.finished_duplicates },
            "replaced": counts.replaced,
        }),
    ))
}

/// What `enqueue` reads: one item from the command line, or JSON lines from a reader
/// named `source` in messages.
enum Input<'a> {
    One(NewItem),
    Lines(Box<dyn BufRead + 'a>, String),
}

/// Stream the input into the staging table, checking each line as it goes: memory stays
/// that of one line whatever the input's size. The first bad line ends the batch (the
/// COPY is abandoned and the transaction rolls back). Returns how many items were staged,
/// and the source name that line numbers belong to.
fn stage(tx: &mut postgres::Transaction<'_>, input: Input<'_>) -> Result<(u64, Option<String>)> {
    let mut writer = start_staging(tx)?;
    let mut encoded = Vec::new();
    match input {
        Input::One(item) => {
            encode_payload(&item.payload, MAX_PAYLOAD_BYTES, &mut encoded)
                .map_err(|problem| Error::Data(format!("--payload: {problem}")))?;
            stage_item(&mut writer, 1, &item.key, &encoded)?;
            Ok((finish_staging(writer)?, None))
        }
        Input::Lines(mut reader, source) => {
            match stream_lines(&mut writer, &mut reader, &source, &mut encoded) {
                Ok(()) => Ok((finish_staging(writer)?, Some(source))),
                Err(bad @ Error::Data(_)) => {
                    // A line before it may hold a value only the server refuses (a number
                    // beyond numeric's range): the first bad line is the one named.
                    finish_staging(writer)?;
                    match first_refused_line(tx)? {
                        Some((line, message)) => Err(refused_item(&format!("{source}:{line}"), &message)),
                        None => Err(bad),
                    }
                }
                Err(error) => Err(error),
            }
        }
    }
}

/// Stream the lines of `reader` into the staging COPY, each checked; the first bad one is
/// an `Error::Data` naming it.
fn stream_lines(
    writer: &mut postgres::binary_copy::BinaryCopyInWriter<'_>,
    reader: &mut impl BufRead,
    source: &str,
    encoded: &mut Vec<u8>,
) -> Result<()> {
    let mut line = Vec::new();
    let mut number = 0;
    while next_line(reader, &mut line, &mut number, source)? {
        let Some((key, payload)) = parse_line(&line, source, number)? else { continue };
        encode_payload(&payload, MAX_PAYLOAD_BYTES, encoded)
            .map_err(|problem| bad_line(source, number, problem))?;
        stage_item(writer, number as i64, &key, encoded)?;
    }
    Ok(())
}

fn bad_line(source: &str, number: usize, problem: String) -> Error {
    Error::Data(format!("{source}:{number}: {problem}; nothing was enqueued"))
}

fn check_key(key: &str, line: Option<(&str, usize)>) -> Result<String> {
    let problem = if key.is_empty() {
        Some("key is empty".to_string())
    } else if key.len() > MAX_KEY_BYTES {
        Some(format!("key is {} bytes, longer than the {MAX_KEY_BYTES} a key may have", key.len()))
    } else if let Some((at, control)) = key.char_indices().find(|(_, c)| c.is_control()) {
        Some(format!(
            "key contains a control character (U+{:04X} at byte {at}); keys are printed text",
            control as u32
        ))
    } else {
        None
    };
    match (problem, line) {
        (None, _) => Ok(key.to_string()),
        (Some(problem), Some((source, number))) => {
            Err(Error::Data(format!("{source}:{number}: {problem}; nothing was enqueued")))
        }
        (Some(problem), None) => Err(Error::Data(format!("--key: {problem}"))),
    }
}

/// Parse JSON lines `{"key": "...", "payload": ...}`; blank lines are skipped. The key may
/// be a string or an integer. Any bad line fails the whole batch with its line number.
#[cfg(test)]
pub fn parse_lines(mut reader: impl BufRead, source: &str) -> Result<Vec<NewItem>> {
    let mut items = Vec::new();
    let (mut line, mut number) = (Vec::new(), 0);
    while next_line(&mut reader, &mut line, &mut number, source)? {
        if let Some((key, payload)) = parse_line(&line, source, number)? {
            check_payload(&payload).map_err(|problem| bad_line(source, number, problem))?;
            items.push(NewItem { key, payload });
        }
    }
    Ok(items)
}

/// Longest line read: a payload at its limit, its key, and room for the line's own
/// whitespace. A longer line is refused when this much of it has been read, never held
/// whole.
const MAX_LINE_BYTES: usize = MAX_PAYLOAD_BYTES + 64 * 1024;

/// Read the next line of `reader` into `line`, without its `\n`, and count it in
/// `number`; false at the end of the input. The first line loses a UTF-8 byte order mark.
fn next_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    number: &mut usize,
    source: &str,
) -> Result<bool> {
    next_line_within(reader, line, number, source, MAX_LINE_BYTES)
}

/// [`next_line`] with the longest line `max_bytes`.
fn next_line_within(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    number: &mut usize,
    source: &str,
    max_bytes: usize,
) -> Result<bool> {
    line.clear();
    *number += 1;
    let bad = |problem: String| bad_line(source, *number, problem);
    // Room for the limit and a CRLF line end.
    let read = std::io::Read::take(reader, max_bytes as u64 + 2)
        .read_until(b'\n', line)
        .map_err(|error| bad(format!("cannot read: {error}")))?;
    if read == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    let content = line.len() - usize::from(line.last() == Some(&b'\r'));
    if content > max_bytes {
        return Err(bad(format!("the line is longer than {max_bytes} bytes, the most a line may hold")));
    }
    if *number == 1 && line.starts_with(b"\xEF\xBB\xBF") {
        line.drain(..3);
    }
    Ok(true)
}

/// The fields of a line's object as given; a field given twice is refused.
struct LineFields {
    key: Option<Value>,
    payload: Option<Value>,
    unknown: Option<String>,
}

impl<'de> serde::Deserialize<'de> for LineFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = LineFields;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str(LINE_SHAPE)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<LineFields, A::Error> {
                use serde::de::Error as _;
                let mut fields = LineFields { key: None, payload: None, unknown: None };
                while let Some(name) = map.next_key::<String>()? {
                    let slot = match name.as_str() {
                        "key" => &mut fields.key,
                        "payload" => &mut fields.payload,
                        _ => {
                            fields.unknown.get_or_insert(name);
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(A::Error::custom(format!("{name:?} is given twice")));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// The deepest nesting serde_json reads (its recursion limit), in levels of arrays and
/// objects.
const MAX_JSON_DEPTH: usize = 127;

/// Whether serde_json gave up on JSON nested beyond [`MAX_JSON_DEPTH`].
fn is_too_deep(error: &serde_json::Error) -> bool {
    error.to_string().starts_with("recursion limit exceeded")
}

/// What a line holds.
const LINE_SHAPE: &str = "an object {\"key\": ..., \"payload\": ...}";

/// What is wrong with a line serde_json refused, without its "line 1" (the line is named
/// by its number in the input).
fn json_problem(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let message = text.rsplit_once(" at line ").map_or(text.as_str(), |(message, _)| message);
    match error.classify() {
        serde_json::error::Category::Data if message.starts_with("invalid type") => {
            format!("expected {LINE_SHAPE}")
        }
        _ if is_too_deep(error) => format!(
            "JSON nested more than {MAX_JSON_DEPTH} levels deep at column {} (the line's own object is the \
             first level), more than drainctl reads: flatten the payload",
            error.column()
        ),
        serde_json::error::Category::Data => message.to_string(),
        _ => format!("invalid JSON: {message} at column {}", error.column()),
    }
}

/// One JSON line: its key (checked) and payload (not yet checked against jsonb's limits),
/// or `None` for a blank line. A repeated key is not an error here: the first line wins.
fn parse_line(line: &[u8], source: &str, number: usize) -> Result<Option<(String, Value)>> {
    let bad = |problem: String| bad_line(source, number, problem);
    let line = std::str::from_utf8(line).map_err(|_| bad("not valid UTF-8".to_string()))?;
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let fields: LineFields = serde_json::from_str(line).map_err(|error| {
        match line.starts_with('\u{feff}') {
        // Invisible, so the line looks valid: a file joined after another with one, say.
        true => bad(
            "starts with U+FEFF, a byte order mark, which only the input's first line may carry; remove it \
             (e.g. sed 's/^\\xEF\\xBB\\xBF//')"
                .to_string(),
        ),
        false => bad(json_problem(&error)),
    }
    })?;
    if let Some(extra) = &fields.unknown {
        return Err(bad(format!("unknown field {extra:?}; a line has only \"key\" and \"payload\"")));
    }
    let key = match fields.key {
        Some(Value::String(key)) => key,
        Some(Value::Number(number)) if number.is_i64() || number.is_u64() => number.to_string(),
        Some(Value::Number(number)) if !number.to_string().contains(['.', 'e', 'E']) => {
            return Err(bad(format!("integer key {number} does not fit in 64 bits; give it as a string")))
        }
        Some(_) => return Err(bad("\"key\" must be a string or an integer".to_string())),
        None => return Err(bad("missing \"key\"".to_string())),
    };
    let key = check_key(&key, Some((source, number)))?;
    let payload = fields.payload.ok_or_else(|| bad("missing \"payload\"".to_string()))?;
    Ok(Some((key, payload)))
}

/// Refuse a payload PostgreSQL's jsonb cannot store: a NUL character in a string or an
/// object key (named by its JSON path), or more than [`MAX_PAYLOAD_BYTES`] of JSON.
pub fn check_payload(payload: &Value) -> std::result::Result<(), String> {
    check_payload_within(payload, MAX_PAYLOAD_BYTES)
}

/// [`check_payload`] with the size limit `max_bytes`.
fn check_payload_within(payload: &Value, max_bytes: usize) -> std::result::Result<(), String> {
    if let Some(path) = nul_path(payload, "$") {
        return Err(nul_problem(&path));
    }
    let mut size = ByteCount(0);
    serde_json::to_writer(&mut size, payload).map_err(|error| format!("payload: {error}"))?;
    size_problem(size.0, max_bytes)
}

/// Check `payload` as [`check_payload_within`] does and leave its compact JSON in `out`.
fn encode_payload(payload: &Value, max_bytes: usize, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    if let Some(path) = nul_path(payload, "$") {
        return Err(nul_problem(&path));
    }
    out.clear();
    serde_json::to_writer(&mut *out, payload).map_err(|error| format!("payload: {error}"))?;
    size_problem(out.len(), max_bytes)
}

fn nul_problem(path: &str) -> String {
    format!("payload has a NUL character (\\u0000) at {path}, which PostgreSQL cannot store; remove it")
}

fn size_problem(bytes: usize, max_bytes: usize) -> std::result::Result<(), String> {
    if bytes > max_bytes {
        return Err(format!(
            "payload is {bytes} bytes of JSON, more than the {max_bytes} an item can hold (jsonb's limit); \
             put large data in a file and enqueue its path"
        ));
    }
    Ok(())
}

/// The JSON path (`$.a[2]`) of the first string or object key with a NUL character.
fn nul_path(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(text) if text.contains('\0') => Some(path.to_string()),
        Value::Array(values) => {
            values.iter().enumerate().find_map(|(index, value)| nul_path(value, &format!("{path}[{index}]")))
        }
        Value::Object(map) => map.iter().find_map(|(key, value)| {
            let here = format!("{path}.{}", key.escape_debug());
            if key.contains('\0') {
                Some(here)
            } else {
                nul_path(value, &here)
            }
        }),
        _ => None,
    }
}

/// A writer that only counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_string_or_integer_keys() {
        let text = "{\"key\": \"a\", \"payload\": {\"x\": 1}}\n\n{\"key\": 7, \"payload\": \"s\"}\n";
        let items = parse_lines(text.as_bytes(), "stdin").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].key, "7");
    }

    #[test]
    fn a_key_too_long_is_told_its_length() {
        let error = check_key(&"é".repeat(513), None).unwrap_err();
        assert_eq!(error.to_string(), "--key: key is 1026 bytes, longer than the 1024 a key may have");
        assert!(check_key(&"é".repeat(512), None).is_ok());
    }

    #[test]
    fn a_bad_line_names_its_number() {
        for (text, expected) in [
            ("{\"key\": \"a\", \"payload\": 1}\n{\"key\": \"b\", \"payload\": \n", "stdin:2: invalid JSON"),
            ("{\"key\": \"a\"}\n", "stdin:1: missing \"payload\""),
            ("[1]\n", "stdin:1: expected an object"),
            ("{\"key\": \"\", \"payload\": 1}\n", "stdin:1: key is empty"),
            ("{\"key\": \"a\", \"payload\": 1, \"x\": 2}\n", "stdin:1: unknown field \"x\""),
            ("{\"key\": \"a\", \"key\": \"b\", \"payload\": 1}\n", "stdin:1: \"key\" is given twice"),
            ("\"text\"\n", "stdin:1: expected an object {\"key\": ..., \"payload\": ...}"),
            ("{\"key\": \"a\", \"payload\": tru}\n", "stdin:1: invalid JSON: expected ident at column 28;"),
            (
                "{\"key\": \"a\", \"payload\": 1}\n{\"key\": \"b\", \"payload\": {\"x\": [\"ok\", \"a\\u0000b\"]}}\n",
                "stdin:2: payload has a NUL character (\\u0000) at $.x[1]",
            ),
            ("{\"key\": \"a\", \"payload\": {\"k\\u0000\": 1}}\n", "stdin:1: payload has a NUL character (\\u0000) at $.k\\0"),
            ("{\"key\": \"a\", \"payload\": \"\\u0000\"}\n", "stdin:1: payload has a NUL character (\\u0000) at $,"),
            // What is wrong is named: the misspelt field, the 64-bit limit, the character.
            ("{\"Key\": \"a\", \"payload\": 1}\n", "stdin:1: unknown field \"Key\""),
            (
                "{\"key\": 123456789012345678901234567890, \"payload\": 1}\n",
                "stdin:1: integer key 123456789012345678901234567890 does not fit in 64 bits; give it as a string",
            ),
            ("{\"key\": \"ab\\ncd\", \"payload\": 1}\n", "stdin:1: key contains a control character (U+000A at byte 2)"),
        ] {
            let error = parse_lines(text.as_bytes(), "stdin").unwrap_err();
            assert_eq!(error.exit_code(), 65);
            assert!(error.to_string().starts_with(expected), "{error}");
        }
    }

    #[test]
    fn a_byte_order_mark_opens_the_first_line_only() {
        let text = "\u{feff}{\"key\": \"a\", \"payload\": 1}\r\n{\"key\": \"b\", \"payload\": 2}\n";
        let items = parse_lines(text.as_bytes(), "stdin").unwrap();
        assert_eq!(items.iter().map(|item| item.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let error =
            parse_lines("{\"key\": \"a\", \"payload\": 1}\n\u{feff}{}\n".as_bytes(), "stdin").unwrap_err();
        // Named, not "expected value at column 1" on a line that looks valid.
        assert!(error.to_string().starts_with("stdin:2: starts with U+FEFF, a byte order mark"), "{error}");
    }

    #[test]
    fn a_line_longer_than_any_item_is_refused_without_being_read_whole() {
        let text = format!("{{\"key\": \"a\", \"payload\": 1}}\n{}\nnot read\n", "x".repeat(100));
        let mut reader = text.as_bytes();
        let (mut line, mut number) = (Vec::new(), 0);
        assert!(next_line_within(&mut reader, &mut line, &mut number, "stdin", 40).unwrap());
        let error = next_line_within(&mut reader, &mut line, &mut number, "stdin", 40).unwrap_err();
        assert_eq!(error.exit_code(), 65);
        assert_eq!(
            error.to_string(),
            "stdin:2: the line is longer than 40 bytes, the most a line may hold; nothing was enqueued"
        );
        assert_eq!(line.len(), 42, "read no further than the limit and a line end");
        assert!(reader.starts_with(b"x"), "the rest of the line is left unread");
        // A line of exactly the limit is read.
        let exact = format!("{}\n", "y".repeat(40));
        let (mut reader, mut number) = (exact.as_bytes(), 0);
        assert!(next_line_within(&mut reader, &mut line, &mut number, "stdin", 40).unwrap());
        assert_eq!(line.len(), 40);
        let crlf = format!("{}\r\n{}\r\n", "z".repeat(40), "z".repeat(41));
        let (mut reader, mut number) = (crlf.as_bytes(), 0);
        assert!(
            next_line_within(&mut reader, &mut line, &mut number, "stdin", 40).unwrap(),
            "CRLF at the limit"
        );
        assert!(next_line_within(&mut reader, &mut line, &mut number, "stdin", 40).is_err());
    }

    #[test]
    fn a_payload_over_the_limit_is_refused_with_its_size() {
        // ["xxxx",null] is 13 bytes of compact JSON.
        let payload = serde_json::json!(["xxxx", null]);
        assert_eq!(check_payload_within(&payload, 13), Ok(()));
        assert_eq!(
            check_payload_within(&payload, 12),
            Err("payload is 13 bytes of JSON, more than the 12 an item can hold (jsonb's limit); \
                 put large data in a file and enqueue its path"
                .to_string())
        );
        assert_eq!(MAX_PAYLOAD_BYTES, 268_435_455);
    }

    #[test]
    fn the_servers_refusals_of_data_are_bad_input() {
        use postgres::error::SqlState;
        for refused in
            [SqlState::UNTRANSLATABLE_CHARACTER, SqlState::PROGRAM_LIMIT_EXCEEDED, SqlState::DATA_EXCEPTION]
        {
            assert!(crate::db::items::is_refused_data(&refused), "{refused:?}");
        }
        for other in
            [SqlState::T_R_SERIALIZATION_FAILURE, SqlState::UNDEFINED_TABLE, SqlState::ADMIN_SHUTDOWN]
        {
            assert!(!crate::db::items::is_refused_data(&other), "{other:?}");
        }
    }
}
