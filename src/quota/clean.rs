//! Cleaning a worker's output before it is matched: only the tail of each stream is read,
//! decoded leniently, and split into lines; terminal escapes, literal JSON / Python
//! escapes, mojibake (`Â·`, `â€™`), HTML entities, separators, quotes, dashes, odd spaces,
//! gutter glyphs and emoji are brought to one plain spelling, and runs of spaces
//! collapsed. Each line remembers where it came from in stream-json output (the worker,
//! the model, or a tool the model ran) and whether it belongs to a client's retry
//! countdown. A message wrapped across lines is joined back by the helpers at the end.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use super::patterns::{compile, is_countdown, GAVE_UP, HIT_HINT, RETRY_ANNOUNCED};

/// Only this many bytes at the end of each stream are examined.
pub(super) const TAIL_BYTES: usize = 64 * 1024;

/// Where a line came from inside structured (stream-json) output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// The worker's own words: results, errors, events.
    Worker,
    /// Model text relayed by the worker (assistant messages): may carry the limit
    /// message itself, never a server error.
    Conversation,
    /// Output of tools the model ran: whatever a `curl` printed is not our limit. Also a
    /// line that repeats the worker's own input (its prompt, its payload).
    ToolOutput,
}

#[derive(Debug, Clone)]
pub(super) struct Line {
    pub(super) text: String,
    pub(super) origin: Origin,
    /// The physical line was a JSON object or array.
    pub(super) structured: bool,
    /// A client's retry countdown, or the error body printed with it: the client
    /// went on retrying, so neither counts.
    pub(super) retried: bool,
    /// The physical line was a JSON object whose own top-level `is_error` said this
    /// (Claude Code's result): the client's verdict, read from the object, never from the
    /// text of its strings — a model's answer quoting `"is_error":true` is no error.
    pub(super) is_error: Option<bool>,
}

/// What stands for a line whose start was cut off with everything before it: the rest
/// of a line longer than the part of the stream read (a one-line answer of 80 KiB) is no
/// message of the worker's, and read as one its words would be taken for the client's.
pub(crate) const CUT_LINE: &[u8] = b"[the end of a line too long to read]\n";

/// `window`, the end of a longer stream, from its first whole line: when it starts inside
/// a line (`starts_inside_a_line`), that line's rest is dropped — and when the window
/// holds no whole line (its only line end is its last byte, or it has none), it is all
/// the end of one line, read as [`CUT_LINE`]. Of a run that failed (`screen_lines`), what
/// a terminal shows as a new line counts as one too — a carriage return, a control
/// sequence (`ESC [`, a spinner's cursor moves) — so a progress spinner's frames do not
/// make one long line of the error after them; of a run that succeeded, only a line end:
/// its answer's text is no message, whatever codes it holds.
pub(crate) fn from_first_whole_line(
    window: &[u8],
    starts_inside_a_line: bool,
    screen_lines: bool,
) -> std::borrow::Cow<'_, [u8]> {
    if !starts_inside_a_line {
        return std::borrow::Cow::Borrowed(window);
    }
    let break_at = window.iter().enumerate().find_map(|(at, &byte)| match byte {
        b'\n' => Some(at + 1),
        b'\r' if screen_lines => Some(at + 1),
        0x1b if screen_lines && window.get(at + 1) == Some(&b'[') => Some(at),
        _ => None,
    });
    match break_at {
        Some(start) if start < window.len() => std::borrow::Cow::Borrowed(&window[start..]),
        _ if window.is_empty() => std::borrow::Cow::Borrowed(window),
        _ => std::borrow::Cow::Borrowed(CUT_LINE),
    }
}

fn tail(bytes: &[u8], screen_lines: bool) -> std::borrow::Cow<'_, [u8]> {
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    from_first_whole_line(&bytes[start..], start > 0 && bytes[start - 1] != b'\n', screen_lines)
}

/// A cursor move to a line's start or a whole line erased (`ESC [1G`, `ESC [G`, `ESC [2K`):
/// where a spinner draws its next frame, a new line on the screen. Not an erase to the
/// line's end (`ESC [K`, which gcc and `grep --color` put after each colour inside a
/// line) nor a move to a column further on (`ESC [40G`, an aligned field).
static SCREEN_LINE_START: LazyLock<Regex> = LazyLock::new(|| compile("\x1b\\[(?:2K|[01]?G)"));

/// `text` of a failed run as its screen showed it: a spinner's cursor moves start lines
/// (carriage returns), and no other terminal escape is left (see [`from_first_whole_line`]).
pub(crate) fn screen_text(text: &str) -> String {
    strip_terminal_escapes(&SCREEN_LINE_START.replace_all(text, "\r"))
}

/// [`clean_lines_of_a_run`] of output a run that succeeded printed.
pub(super) fn clean_lines(bytes: &[u8]) -> Vec<Line> {
    clean_lines_of_a_run(bytes, false)
}

/// The cleaned lines of the end of one stream of a run; `failed`: the run failed, so its
/// spinner's frames are screen lines (see [`from_first_whole_line`]).
pub(super) fn clean_lines_of_a_run(bytes: &[u8], failed: bool) -> Vec<Line> {
    let window = tail(bytes, failed);
    let decoded = String::from_utf8_lossy(&window);
    // A limit message is stored with its backoff: as text, which cannot hold U+0000.
    let decoded = crate::db::storable_text(&decoded);
    let stripped = if failed { screen_text(&decoded) } else { strip_terminal_escapes(&decoded) };
    let mut lines = Vec::new();
    let mut retry_body_depth: i64 = 0;
    for physical in stripped.split(['\n', '\r']) {
        let retried = if retry_body_depth > 0 {
            retry_body_depth += bracket_balance(physical);
            true
        } else if is_countdown(physical) {
            retry_body_depth = bracket_balance(physical).max(0);
            true
        } else {
            false
        };
        if physical.trim().is_empty() {
            lines.push(Line {
                text: String::new(),
                origin: Origin::Worker,
                structured: false,
                retried: false,
                is_error: None,
            });
            continue;
        }
        let structured = physical.trim_start().starts_with(['{', '[']);
        let is_error = structured.then(|| top_level_is_error(physical)).flatten();
        let unescaped = unescape_literal_escapes(physical);
        let unescaped = unescape_literal_escapes(&unescaped);
        let unescaped = if unescaped.contains('\u{1b}') {
            Cow::Owned(strip_terminal_escapes(&unescaped))
        } else {
            unescaped
        };
        let repaired = repair_mojibake(&unescaped);
        let repaired = repair_mojibake(&repaired);
        let decoded_entities = replace_html_entities(&repaired);
        let normalized = normalize_characters(&decoded_entities);
        let origin = origin_of(physical, &normalized);
        for logical in normalized.split(['\n', '\r']) {
            lines.push(Line { text: collapse_whitespace(logical), origin, structured, retried, is_error });
        }
    }
    // A result printed over several lines (a wrapper's `jq .`) is one object too: read
    // whole only when no line of it was one.
    if lines.iter().all(|line| line.is_error.is_none()) {
        if let Some(is_error) = top_level_is_error(&stripped) {
            lines.iter_mut().for_each(|line| line.is_error = Some(is_error));
        }
    }
    last_attempts_told(&mut lines);
    lines
}

/// A retry notice followed by the client's bare last word (`Attempt 2 failed: 429 Too Many
/// Requests`, then `Max attempts reached`) told of the last attempt: it, and the error body
/// printed with it, are the run's verdict, not a countdown. A last word that reports the
/// attempt itself (`Attempt 3 failed with status 429. Giving up.`) is the verdict alone.
fn last_attempts_told(lines: &mut [Line]) {
    for index in 0..lines.len() {
        let line = &lines[index];
        if line.retried || line.text.is_empty() || !GAVE_UP.is_match(&line.text) || !is_bare(&line.text) {
            continue;
        }
        for earlier in lines[..index].iter_mut().rev() {
            if earlier.text.is_empty() {
                continue;
            }
            if !earlier.retried {
                break;
            }
            earlier.retried = false;
            // The notice itself, above its body: the attempt before it went on.
            if is_countdown(&earlier.text) {
                break;
            }
        }
    }
}

/// A last word that says only that the client stopped (`Max attempts reached`, `Giving
/// up.`): no limit, no error, status or attempt of its own — one that reports another
/// failure (`Attempt 2 failed with status 400 Bad Request. Giving up.`) is the verdict.
fn is_bare(text: &str) -> bool {
    // Words of a failure, an errno name (`ETIMEDOUT`), or an HTTP status (`status 400`,
    // `400 Bad Request`) — not any number (`after 120 seconds`).
    static REPORT: LazyLock<Regex> = LazyLock::new(|| {
        compile(
            r"(?i:\b(?:errors?|exception|failed|failure|timeout|timed\s+out|refused|unreachable|network|connect(?:ion)?|socket|dns|reset)\b)|\bE[A-Z]{4,}\b|(?i:\b(?:status|code|http)\W{0,3}[1-5][0-9]{2}\b)|\b[1-5][0-9]{2}\s+[A-Z][a-z]+",
        )
    });
    !HIT_HINT.is_match(text) && !REPORT.is_match(text)
}

/// In a failed run, a stream's last line that reports an attempt (`Attempt 1 failed:
/// Rate limit reached … Please try again in 12s.`, `429 Too Many Requests (attempt 2/3)`)
/// without announcing another try is the client's last word: the run's verdict, not a
/// countdown (docs/rate-limits.md, "How the output is read").
pub(super) fn last_word_of_a_failed_run(lines: &mut [Line]) {
    let Some(last) =
        lines.iter().rposition(|line| line.origin != Origin::ToolOutput && !line.text.is_empty())
    else {
        return;
    };
    let line = &mut lines[last];
    if line.retried && is_countdown(&line.text) && !RETRY_ANNOUNCED.is_match(&line.text) {
        line.retried = false;
    }
}

/// codex's text mode prints its prompt on stderr, under its header (`OpenAI Codex v…`,
/// `--------`, settings, `--------`, `user`), before its own lines (`warning:`, `ERROR:`,
/// `codex`, `thinking`, `exec`, `tokens used`): the prompt, with the item inside a
/// `<stdin>` … `</stdin>` block or as the prompt itself (`codex exec -`), is the item's
/// content, however a wrapper decoded it. After the header, a command the model ran is
/// printed under `exec` — the command, `succeeded in 212ms:` or `exited 1 in …:`, and up
/// to 20 lines of its output — which is a tool's output, as in stream-json
/// (docs/rate-limits.md, "How the output is read").
pub(super) fn mark_codex_prompt(lines: &mut [Line]) {
    let mut layout = CodexLayout::default();
    for index in 0..lines.len() {
        // Without the header (a long session's is beyond the tail read), an `exec` line is
        // codex's when its command's status line follows within two lines.
        let exec_status_follows =
            lines[index + 1..].iter().take(2).any(|next| EXEC_STATUS.is_match(&next.text));
        if layout.is_content(&lines[index].text, exec_status_follows) {
            lines[index].origin = Origin::ToolOutput;
        }
    }
}

/// Where codex's text mode is in its output, read line by line ([`mark_codex_prompt`]
/// for a whole output, the announced-wait rule while the client runs).
#[derive(Debug, Default)]
pub(crate) struct CodexLayout {
    seen: Seen,
    is_codex: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Seen {
    #[default]
    Nothing,
    Header,
    Prompt,
    Stdin,
    /// The model's answer, under a `codex` line.
    Answer,
    /// Inside an `exec` block: how many lines it may still hold.
    Exec(usize),
}

impl CodexLayout {
    /// Whether the line `text` (cleaned, or at least trimmed) is the item's content: codex's
    /// prompt (with its `<stdin>` block), the model's answer under a `codex` line, or a
    /// command's output under `exec`.
    /// `exec_status_follows`: a command's status line comes within the next two lines
    /// (unknown while the client runs: false).
    pub(crate) fn is_content(&mut self, text: &str, exec_status_follows: bool) -> bool {
        /// codex prints at most this many lines of a command's output, after the command.
        const EXEC_BLOCK_LINES: usize = 1 + 20;
        let codex_own = |text: &str| {
            text.starts_with("warning:")
                || text.starts_with("ERROR:")
                || matches!(text, "codex" | "thinking" | "exec" | "tokens used")
        };
        let opens_exec = text == "exec" && (self.is_codex || exec_status_follows);
        let mut is_content = false;
        self.seen = match self.seen {
            Seen::Nothing if text.starts_with("OpenAI Codex v") => {
                self.is_codex = true;
                Seen::Header
            }
            Seen::Nothing | Seen::Exec(_) if opens_exec => Seen::Exec(EXEC_BLOCK_LINES),
            Seen::Nothing | Seen::Exec(_) | Seen::Answer if self.is_codex && text == "codex" => Seen::Answer,
            Seen::Nothing => Seen::Nothing,
            Seen::Exec(_) if codex_own(text) => Seen::Nothing,
            Seen::Answer if text == "exec" => Seen::Exec(EXEC_BLOCK_LINES),
            Seen::Answer if codex_own(text) => Seen::Nothing,
            Seen::Answer => {
                is_content = true;
                Seen::Answer
            }
            Seen::Exec(left) => {
                is_content = true;
                // The line that ends the command (`… succeeded in 212ms:`) does not count.
                let ends_command = EXEC_STATUS.is_match(text);
                match left.saturating_sub(usize::from(!ends_command)) {
                    0 => Seen::Nothing,
                    left => Seen::Exec(left),
                }
            }
            Seen::Header if text == "user" => Seen::Prompt,
            Seen::Header => Seen::Header,
            Seen::Prompt if codex_own(text) => match text {
                "exec" => Seen::Exec(EXEC_BLOCK_LINES),
                "codex" => Seen::Answer,
                _ => Seen::Nothing,
            },
            seen @ (Seen::Prompt | Seen::Stdin) => {
                is_content = true;
                match (seen, text) {
                    (Seen::Prompt, "<stdin>") => Seen::Stdin,
                    (Seen::Stdin, "</stdin>") => Seen::Prompt,
                    _ => seen,
                }
            }
        };
        is_content
    }
}

/// The end of the line that names a command codex ran: `… succeeded in 212ms:`,
/// `… exited 1 in 1.2s:`.
static EXEC_STATUS: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?:^|\s)(?:succeeded|exited\s+-?[0-9]+)\s+in\s+(?:[0-9]+m\s*)?[0-9][0-9.]*\s*[a-z]*:$")
});

/// The top-level `is_error` of a text (a physical line, or a whole stream) that is a JSON
/// object holding one (parsed only when the text names it).
fn top_level_is_error(text: &str) -> Option<bool> {
    let text = text.trim();
    if !text.starts_with('{') || !text.contains("\"is_error\"") {
        return None;
    }
    super::empty_answer::json_answer(text)?.get("is_error")?.as_bool()
}

/// Opening minus closing brackets: how far a line leaves a JSON body open.
fn bracket_balance(physical: &str) -> i64 {
    physical.chars().fold(0, |balance, c| match c {
        '{' | '[' => balance + 1,
        '}' | ']' => balance - 1,
        _ => balance,
    })
}

/// Whose words a physical line holds, by the client's JSON event it is (`text`: the line
/// with its strings' escapes decoded, a line break for each `\n`). A model's answer
/// relayed in an event the client never reports its own limit in is the item's content,
/// as a tool's output is: codex's `agent_message` and `reasoning` items (its limits come
/// as `error` and `turn.failed` events), gemini's `message` events (its prompt, the item,
/// as the user's; the model's answer as the assistant's; its errors come as `error` events
/// or on stderr), and a Claude Code `assistant` message of more than one line (its own
/// limit message is one line: `Claude AI usage limit reached|…`, `API Error: … 429 …`).
/// Before, an answer quoting a limit, followed by a failure (`--max-turns`,
/// `item_timeout`), stalled the group (docs/rate-limits.md, "How the output is read").
fn origin_of(physical: &str, text: &str) -> Origin {
    let Some(captures) = JSON_EVENT_TYPE.captures(physical) else {
        return Origin::Worker;
    };
    let event_type = captures[1].to_ascii_lowercase();
    match event_type.as_str() {
        "user" | "tool_result" | "function_call_output" | "message" => Origin::ToolOutput,
        "item.started" | "item.updated" | "item.completed" => {
            if TOOL_ITEM.is_match(physical) || MODEL_ITEM.is_match(physical) {
                Origin::ToolOutput
            } else {
                Origin::Conversation
            }
        }
        "assistant" if text.split(['\n', '\r']).filter(|line| !line.trim().is_empty()).count() > 1 => {
            Origin::ToolOutput
        }
        "assistant" | "tool_use" | "stream_event" | "thinking" | "reasoning" => Origin::Conversation,
        _ => Origin::Worker,
    }
}

/// codex's items that hold the model's own text.
static MODEL_ITEM: LazyLock<Regex> =
    LazyLock::new(|| compile(r#""item"\s*:\s*\{[^{}]*"type"\s*:\s*"(?:agent_message|reasoning)""#));

static JSON_EVENT_TYPE: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"^\s*\{\s*"type"\s*:\s*"([A-Za-z_.]+)""#));

/// The type of the JSON event `physical` opens with (`{"type":"error",…}`), if it is one.
pub(super) fn event_type(physical: &str) -> Option<&str> {
    JSON_EVENT_TYPE.captures(physical).and_then(|captures| captures.get(1)).map(|found| found.as_str())
}
static TOOL_ITEM: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#""type"\s*:\s*"(?:command_execution|file_change|mcp_tool_call|web_search|tool_call|function_call_output)""#,
    )
});

/// `text` as drainctl reads and shows it — terminal escapes removed, a JSON string's
/// escapes decoded, as the lines of [`clean_lines_of_a_run`] and an item's error are —
/// when that differs from `text`: a secret an escape splits (`pa\x1b[0mss`, `pa\u0073s`)
/// is whole again there, and is masked in it (docs/guarantees.md, "Secrets stay secret").
pub(crate) fn decoded_view(text: &str) -> Option<String> {
    if !text.contains(['\u{1b}', '\\']) && !text.chars().any(|c| c.is_control() && !"\n\r\t".contains(c)) {
        return None;
    }
    let screen = screen_text(text);
    let unescaped = unescape_literal_escapes(&screen);
    let unescaped = unescape_literal_escapes(&unescaped);
    let decoded = strip_terminal_escapes(&unescaped);
    (decoded != text).then_some(decoded)
}

/// Removes CSI (`ESC [ ... final`), OSC / DCS / APC / PM strings (up to BEL or
/// `ESC \`), charset designations and other two-character escapes, and C0 controls
/// other than newline, carriage return and tab.
fn strip_terminal_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.peek().copied() {
                Some('[') => {
                    chars.next();
                    while chars.peek().is_some_and(|&next| ('\u{20}'..='\u{3f}').contains(&next)) {
                        chars.next();
                    }
                    if chars.peek().is_some_and(|&next| ('\u{40}'..='\u{7e}').contains(&next)) {
                        chars.next();
                    }
                }
                Some(']' | 'P' | 'X' | '^' | '_') => {
                    chars.next();
                    while let Some(&next) = chars.peek() {
                        if next == '\n' {
                            break;
                        }
                        chars.next();
                        if next == '\u{7}' {
                            break;
                        }
                        if next == '\u{1b}' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                Some('(' | ')' | '*' | '+' | '-' | '.' | '/' | '#' | '%') => {
                    chars.next();
                    chars.next();
                }
                Some(next) if next != '\n' => {
                    chars.next();
                }
                _ => {}
            },
            '\n' | '\r' | '\t' => out.push(c),
            c if c.is_ascii_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Decodes the escapes a JSON (or Python repr) string leaves behind when printed raw:
/// `\n`, `\t`, `\"`, `\\`, `\/`, `\uXXXX` (with surrogate pairs) and `\xHH`.
fn unescape_literal_escapes(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if c != '\\' || index + 1 >= chars.len() {
            out.push(c);
            index += 1;
            continue;
        }
        let escaped = chars[index + 1];
        match escaped {
            'n' | 'r' => {
                out.push('\n');
                index += 2;
            }
            't' => {
                out.push(' ');
                index += 2;
            }
            '"' | '\'' | '/' | '\\' => {
                out.push(escaped);
                index += 2;
            }
            'u' => match hex_value(&chars, index + 2, 4) {
                Some(high @ 0xD800..=0xDBFF) => {
                    let low = (chars.get(index + 6) == Some(&'\\') && chars.get(index + 7) == Some(&'u'))
                        .then(|| hex_value(&chars, index + 8, 4))
                        .flatten()
                        .filter(|low| (0xDC00..=0xDFFF).contains(low));
                    match low {
                        Some(low) => {
                            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            index += 12;
                        }
                        None => {
                            out.push('\u{fffd}');
                            index += 6;
                        }
                    }
                }
                Some(code) => {
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    index += 6;
                }
                None => {
                    out.push(c);
                    index += 1;
                }
            },
            'x' => match hex_value(&chars, index + 2, 2) {
                Some(code) => {
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    index += 4;
                }
                None => {
                    out.push(c);
                    index += 1;
                }
            },
            _ => {
                out.push(c);
                index += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn hex_value(chars: &[char], start: usize, digits: usize) -> Option<u32> {
    let slice = chars.get(start..start + digits)?;
    slice.iter().try_fold(0u32, |value, c| Some(value * 16 + c.to_digit(16)?))
}

/// The byte a character stands for when UTF-8 text was decoded as Windows-1252 (or
/// Latin-1) by mistake.
fn mojibake_byte(c: char) -> Option<u8> {
    let code = u32::from(c);
    if (0x80..=0xFF).contains(&code) {
        return u8::try_from(code).ok();
    }
    Some(match c {
        '€' => 0x80,
        '‚' => 0x82,
        'ƒ' => 0x83,
        '„' => 0x84,
        '…' => 0x85,
        '†' => 0x86,
        '‡' => 0x87,
        'ˆ' => 0x88,
        '‰' => 0x89,
        'Š' => 0x8A,
        '‹' => 0x8B,
        'Œ' => 0x8C,
        'Ž' => 0x8E,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '•' => 0x95,
        '–' => 0x96,
        '—' => 0x97,
        '˜' => 0x98,
        '™' => 0x99,
        'š' => 0x9A,
        '›' => 0x9B,
        'œ' => 0x9C,
        'ž' => 0x9E,
        'Ÿ' => 0x9F,
        _ => return None,
    })
}

/// Turns `Â·`, `âˆ™`, `â€™` and friends back into the characters they were.
fn repair_mojibake(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| ('\u{c2}'..='\u{f4}').contains(&c)) {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let continuation_count = match u32::from(c) {
            0xC2..=0xDF => 1,
            0xE0..=0xEF => 2,
            0xF0..=0xF4 => 3,
            _ => 0,
        };
        if continuation_count > 0 {
            let mut bytes = Vec::with_capacity(4);
            bytes.extend(mojibake_byte(c));
            for offset in 1..=continuation_count {
                match chars.get(index + offset).and_then(|&next| mojibake_byte(next)) {
                    Some(byte @ 0x80..=0xBF) => bytes.push(byte),
                    _ => break,
                }
            }
            if bytes.len() == continuation_count + 1 {
                if let Ok(repaired) = std::str::from_utf8(&bytes) {
                    out.push_str(repaired);
                    index += continuation_count + 1;
                    continue;
                }
            }
        }
        out.push(c);
        index += 1;
    }
    Cow::Owned(out)
}

fn replace_html_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for (entity, replacement) in [
        ("&middot;", "·"),
        ("&#183;", "·"),
        ("&bull;", "·"),
        ("&nbsp;", " "),
        ("&quot;", "\""),
        ("&#34;", "\""),
        ("&apos;", "'"),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&rsquo;", "'"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
    ] {
        if out.contains(entity) {
            out = out.replace(entity, replacement);
        }
    }
    Cow::Owned(out)
}

/// One spelling for separators, quotes, dashes and spaces; gutter glyphs, box drawing,
/// emoji and stray controls become spaces.
fn normalize_characters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{2219}' | '\u{00b7}' | '\u{2022}' | '\u{2027}' | '\u{22c5}' | '\u{30fb}' | '\u{ff65}'
            | '\u{2981}' | '\u{2043}' => out.push('·'),
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' | '\u{2032}' | '\u{02bc}' | '\u{ff07}' => {
                out.push('\'')
            }
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' | '\u{2033}' | '\u{00ab}' | '\u{00bb}'
            | '\u{ff02}' => out.push('"'),
            '\u{2026}' => out.push_str("..."),
            '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{fe63}' | '\u{ff0d}' => out.push('-'),
            '\u{2028}' | '\u{2029}' => out.push('\n'),
            '\u{00a0}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\t' => {
                out.push(' ')
            }
            '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{fe0e}' | '\u{fe0f}' => {}
            '\u{2300}'..='\u{23ff}'
            | '\u{2500}'..='\u{27bf}'
            | '\u{2b00}'..='\u{2bff}'
            | '\u{1f000}'..='\u{1faff}' => out.push(' '),
            '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// The non-empty line after `index`, if it may continue a wrapped message.
pub(super) fn next_line(lines: &[Line], index: usize, allow_conversation: bool) -> Option<&Line> {
    lines.get(index + 1).filter(|line| {
        !line.text.is_empty()
            && !line.retried
            && match line.origin {
                Origin::Worker => true,
                Origin::Conversation => allow_conversation,
                Origin::ToolOutput => false,
            }
    })
}

/// A match found in `first + " " + second` or `first + second` (a message wrapped
/// mid-word or between words) that starts in `first` and ends in `second`.
pub(super) fn spanning_join<T>(
    first: &str,
    second: &str,
    find: impl Fn(&str) -> Option<(usize, usize, T)>,
) -> Option<(String, (usize, usize, T))> {
    for separator in [" ", ""] {
        let joined = format!("{first}{separator}{second}");
        if let Some((start, end, value)) = find(&joined) {
            if start < first.len() && end > first.len() + separator.len() {
                return Some((joined, (start, end, value)));
            }
        }
    }
    None
}

/// Up to two lines after `index` that may continue a wrapped message.
pub(super) fn following_texts(lines: &[Line], index: usize) -> Vec<&str> {
    lines
        .iter()
        .skip(index + 1)
        .take(2)
        .take_while(|line| !line.text.is_empty() && line.origin != Origin::ToolOutput)
        .map(|line| line.text.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    #[test]
    fn cleaning_normalises_separators_quotes_and_escapes() {
        let cases: &[(&[u8], &str)] = &[
            ("a Â· b".as_bytes(), "a · b"),
            ("a Ã‚Â· b".as_bytes(), "a · b"),
            ("a âˆ™ b".as_bytes(), "a · b"),
            ("a • b ∙ c".as_bytes(), "a · b · c"),
            (br"a \u00b7 b", "a · b"),
            (br"a \\u00b7 b", "a · b"),
            ("You’ve".as_bytes(), "You've"),
            ("Youâ€™ve".as_bytes(), "You've"),
            ("⎿ ⏺ ● ■ ✗ │ done".as_bytes(), "done"),
            ("3:30\u{202f}PM\u{a0}(UTC)".as_bytes(), "3:30 PM (UTC)"),
            (b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07plain \x1b(Bend", "red plain end"),
            ("it’s \u{200b}fine…".as_bytes(), "it's fine..."),
            (b"a &middot; b", "a · b"),
        ];
        for &(input, expected) in cases {
            let lines = clean_lines(input);
            let texts: Vec<&str> = lines.iter().map(|line| line.text.as_str()).collect();
            assert_eq!(texts, vec![expected], "{:?}", String::from_utf8_lossy(input));
        }
        let texts: Vec<String> = clean_lines(br#"{"result":"first\nsecond"}"#)
            .into_iter()
            .map(|line| line.text)
            .collect();
        assert_eq!(texts, vec![r#"{"result":"first"#, r#"second"}"#]);
    }

    #[test]
    fn built_in_patterns_compile() {
        let patterns: [&Regex; 2] = [&JSON_EVENT_TYPE, &TOOL_ITEM];
        assert!(patterns.iter().all(|pattern| !pattern.as_str().is_empty()));
    }
}
