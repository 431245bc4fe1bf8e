//! Quota classification: telling a usage-limit ("quota") hit from a server error from
//! anything else in one worker run's output, and reading the reset time out of the
//! message. The classifier is pure: it sees the tail of stdout and stderr, the exit code,
//! the instant the output was printed and the configured zone, and returns an
//! [`Outcome`]. The output is cleaned first (terminal escapes, mojibake, literal `\uXXXX`
//! and `\n` escapes, separators, gutter glyphs, curly quotes, odd spaces), then matched
//! line by line, joining a line with the next one when a message was wrapped. A
//! server-error shape anywhere in a failed run wins over a quota shape; warnings, model
//! fallbacks, status panels, client retry countdowns and prose that merely mentions rate
//! limits are not hits. The caller decides what to do with the reset (margin,
//! fresh-gating); this module reports the instant exactly as the message states it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::{OffsetName, Tz};
use regex::{Match, Regex};

use crate::schedule::when::resolve_local;

/// Only this many bytes at the end of each stream are examined.
pub const TAIL_BYTES: usize = 64 * 1024;
/// `matched_line` is cut to about this many characters, keeping the match.
pub const MATCHED_LINE_MAX_CHARS: usize = 500;
/// Lines on either side of a hit that may carry its reset or its needs-attention detail.
const NEIGHBOURHOOD_LINES: usize = 3;
/// Only the last hits are weighed for the reset and the needs-attention flag.
const MAX_HITS_CONSIDERED: usize = 16;
/// Relative resets longer than this are nonsense and are ignored.
const MAX_RELATIVE_SECONDS: i64 = 400 * 24 * 3600;

/// Which family of worker messages a drain expects. Every profile recognises every
/// built-in shape (a worker is often a wrapper around several tools); the profile
/// decides the few rules where the vendors disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Claude,
    OpenAi,
    Gemini,
    Http,
}

impl Profile {
    pub const ALL: [Profile; 4] = [Profile::Claude, Profile::OpenAi, Profile::Gemini, Profile::Http];

    pub fn name(&self) -> &'static str {
        match self {
            Profile::Claude => "claude",
            Profile::OpenAi => "openai",
            Profile::Gemini => "gemini",
            Profile::Http => "http",
        }
    }

    /// OpenAI answers a spent prepaid balance with "You exceeded your current quota,
    /// please check your plan and billing details" and no reset; Gemini prints the same
    /// words for an ordinary per-minute or per-day quota, with a retry delay.
    fn billing_mention_needs_attention(self) -> bool {
        matches!(self, Profile::OpenAi | Profile::Http)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(text: &str) -> Result<Profile, String> {
        let wanted = text.trim();
        Profile::ALL
            .into_iter()
            .find(|profile| profile.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| format!("unknown quota profile {text:?}; accepted: claude, openai, gemini, http"))
    }
}

/// What one worker run's output says.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    QuotaHit(QuotaHit),
    ServerError { matched_line: String },
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuotaHit {
    /// The reset instant the message states, `None` when it states none (and always
    /// `None` when `needs_attention`: waiting does not help).
    pub reset: Option<DateTime<Utc>>,
    /// The cleaned line that matched, trimmed, at most about 500 characters.
    pub matched_line: String,
    /// Quota that time does not fix: `insufficient_quota`, billing, a monthly spend
    /// limit, `limit: 0`.
    pub needs_attention: bool,
}

/// A compiled profile plus the drain's extra patterns.
#[derive(Debug, Clone)]
pub struct Classifier {
    profile: Profile,
    extra_quota: Vec<Regex>,
    extra_veto: Vec<Regex>,
}

impl Classifier {
    /// `extra_quota` / `extra_veto` are user regexes from the config, matched
    /// case-insensitively against cleaned lines. A line matching a veto pattern is
    /// treated as a server error. `Err` names the bad pattern.
    pub fn new(
        profile: Profile,
        extra_quota: &[String],
        extra_veto: &[String],
    ) -> Result<Classifier, String> {
        Ok(Classifier {
            profile,
            extra_quota: compile_user_patterns("quota_patterns", extra_quota)?,
            extra_veto: compile_user_patterns("veto_patterns", extra_veto)?,
        })
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// `now` = when the output was printed (for the next occurrence of clock times),
    /// `zone` = the configured zone, used when the message names none.
    pub fn classify(
        &self,
        stdout: &[u8],
        stderr: &[u8],
        exit_code: Option<i32>,
        now: DateTime<Utc>,
        zone: Tz,
    ) -> Outcome {
        let stdout_lines = clean_lines(stdout);
        let stderr_lines = clean_lines(stderr);
        let failed = exit_code != Some(0);
        // Whether the output is itself an error object: judged on stdout, or on stderr
        // when stdout is empty.
        let stdout_is_empty = stdout_lines.iter().all(|line| line.text.is_empty());
        let verdict = error_verdict(if stdout_is_empty { &stderr_lines } else { &stdout_lines });
        let output_is_error = verdict == ErrorVerdict::Error;
        let stdout_has_result = !failed
            && !output_is_error
            && stdout_lines.iter().any(|line| line.origin != Origin::ToolOutput && !line.text.is_empty());

        // A run that exited 0 with a real result on stdout succeeded: what its stderr
        // says about retries it survived does not matter.
        let mut streams: Vec<&[Line]> = Vec::with_capacity(2);
        if !stdout_has_result {
            streams.push(&stderr_lines);
        }
        streams.push(&stdout_lines);

        if failed || output_is_error {
            if let Some(matched_line) = self.last_server_error(&streams) {
                return Outcome::ServerError { matched_line };
            }
        }

        let successful_result = !failed && verdict == ErrorVerdict::Success;
        let strict = !failed && !output_is_error;
        let mut hits = self.collect_hits(&streams, successful_result, strict);
        if hits.is_empty() {
            return Outcome::Other;
        }
        // A limit message is near the end; output that repeats one thousands of times
        // need not be read thousands of times.
        hits.drain(..hits.len().saturating_sub(MAX_HITS_CONSIDERED));
        self.quota_hit(&streams, &hits, now, zone)
    }

    fn is_vetoed(&self, text: &str) -> Option<(usize, usize)> {
        if let Some(found) = SERVER_ERROR.find(text) {
            return Some((found.start(), found.end()));
        }
        self.extra_veto
            .iter()
            .find_map(|pattern| pattern.find(text))
            .map(|found| (found.start(), found.end()))
    }

    fn server_error_in(&self, text: &str) -> Option<(usize, usize)> {
        if text.is_empty() || COUNTDOWN.is_match(text) {
            return None;
        }
        self.is_vetoed(text)
    }

    fn last_server_error(&self, streams: &[&[Line]]) -> Option<String> {
        let mut found = None;
        for lines in streams {
            for (index, line) in lines.iter().enumerate() {
                if line.origin != Origin::Worker || line.retried {
                    continue;
                }
                if let Some((start, end)) = self.server_error_in(&line.text) {
                    found = Some(excerpt(&line.text, start, end));
                    continue;
                }
                if let Some(next) = next_line(lines, index, false) {
                    if let Some((joined, (start, end, ()))) = spanning_join(&line.text, &next.text, |text| {
                        self.server_error_in(text).map(|(start, end)| (start, end, ()))
                    }) {
                        found = Some(excerpt(&joined, start, end));
                    }
                }
            }
        }
        found
    }

    fn find_hit(&self, text: &str) -> Option<HitMatch> {
        if text.is_empty() || (self.extra_quota.is_empty() && !HIT_HINT.is_match(text)) {
            return None;
        }
        if self.is_vetoed(text).is_some() {
            return None;
        }
        if RATE_LIMIT_EVENT.is_match(text) {
            // Stream-json: only a rejected request is a hit; allowed and
            // allowed_warning events are informational.
            return STATUS_REJECTED.is_match(text).then_some(HitMatch {
                start: 0,
                end: text.len(),
                needs_attention: false,
                kind: HitKind::StreamEvent,
            });
        }
        if let Some(found) = self.extra_quota.iter().find_map(|pattern| pattern.find(text)) {
            return Some(HitMatch {
                start: found.start(),
                end: found.end(),
                needs_attention: false,
                kind: HitKind::UserPattern,
            });
        }
        if COUNTDOWN.is_match(text)
            || WARNING.is_match(text)
            || FALLBACK.is_match(text)
            || OVERSIZED_REQUEST.is_match(text)
        {
            return None;
        }
        QUOTA_PATTERNS.iter().find_map(|pattern| {
            pattern.regex.find_iter(text).find(|found| pattern.accepts(text, found)).map(|found| HitMatch {
                start: found.start(),
                end: found.end(),
                needs_attention: pattern.needs_attention,
                kind: pattern.kind,
            })
        })
    }

    /// Every hit line. `successful_result`: stdout holds a result that says
    /// `"is_error": false`. `strict`: the run exited 0 without an error object, so a
    /// phrase counts only in the shape of a real limit message.
    fn collect_hits(&self, streams: &[&[Line]], successful_result: bool, strict: bool) -> Vec<Hit> {
        let mut hits = Vec::new();
        for (stream, lines) in streams.iter().enumerate() {
            let is_content = |line: &Line| line.origin != Origin::ToolOutput && !line.text.is_empty();
            let content_lines = lines.iter().filter(|line| is_content(line)).count();
            let last_content_line = lines.iter().rposition(is_content);
            for (index, line) in lines.iter().enumerate() {
                if line.origin == Origin::ToolOutput || line.text.is_empty() || line.retried {
                    continue;
                }
                let found = match self.find_hit(&line.text) {
                    Some(found) => Some((line.text.clone(), found, index)),
                    None => next_line(lines, index, true).and_then(|next| {
                        spanning_join(&line.text, &next.text, |text| {
                            self.find_hit(text).map(|found| (found.start, found.end, found))
                        })
                        .map(|(joined, (_, _, found))| (joined, found, index + 1))
                    }),
                };
                let Some((text, matched, last_line)) = found else {
                    continue;
                };
                if matched.kind == HitKind::StreamEvent && successful_result {
                    continue;
                }
                if matched.kind != HitKind::StreamEvent && fallback_follows(lines, last_line) {
                    continue;
                }
                let needs_shape =
                    strict && matches!(matched.kind, HitKind::Message | HitKind::Status | HitKind::Token);
                // A limit message is the whole of a short output, or its last line.
                let stands_alone = content_lines <= 5 || last_content_line == Some(last_line);
                if needs_shape && !looks_like_limit_message(&text, &matched, line.structured, stands_alone) {
                    continue;
                }
                hits.push(Hit { stream, first_line: index, last_line, text, matched });
            }
        }
        hits
    }

    fn quota_hit(&self, streams: &[&[Line]], hits: &[Hit], now: DateTime<Utc>, zone: Tz) -> Outcome {
        let own_resets: Vec<Option<DateTime<Utc>>> = hits
            .iter()
            .map(|hit| {
                let following = following_texts(streams[hit.stream], hit.last_line);
                reset_with_continuation(&hit.text, &following, now, zone)
            })
            .collect();
        let primary = (0..hits.len())
            .rev()
            .find(|&index| own_resets[index].is_some())
            .or_else(|| {
                (0..hits.len()).find(|&index| {
                    matches!(hits[index].matched.kind, HitKind::Message | HitKind::UserPattern)
                })
            })
            .unwrap_or(0);

        let mut reset = own_resets[primary];
        if reset.is_none() {
            reset = self.neighbourhood_reset(streams, hits, now, zone);
        }
        if reset.is_none() {
            reset = header_reset(streams, now, zone);
        }

        let context = neighbourhood_texts(streams, hits);
        let needs_attention = hits.iter().any(|hit| hit.matched.needs_attention)
            || context.iter().any(|text| NEEDS_ATTENTION.is_match(text))
            || (self.profile.billing_mention_needs_attention()
                && reset.is_none()
                && context.iter().any(|text| BILLING_MENTION.is_match(text)));

        let hit = &hits[primary];
        Outcome::QuotaHit(QuotaHit {
            reset: if needs_attention { None } else { reset },
            matched_line: excerpt(&hit.text, hit.matched.start, hit.matched.end),
            needs_attention,
        })
    }

    fn neighbourhood_reset(
        &self,
        streams: &[&[Line]],
        hits: &[Hit],
        now: DateTime<Utc>,
        zone: Tz,
    ) -> Option<DateTime<Utc>> {
        hits.iter().rev().find_map(|hit| {
            let lines = streams[hit.stream];
            let first = hit.first_line.saturating_sub(NEIGHBOURHOOD_LINES);
            let last = (hit.last_line + NEIGHBOURHOOD_LINES).min(lines.len().saturating_sub(1));
            (first..=last).find_map(|index| {
                let line = &lines[index];
                let usable = line.origin != Origin::ToolOutput
                    && !line.text.is_empty()
                    && !line.retried
                    && !COUNTDOWN.is_match(&line.text)
                    && !RATE_LIMIT_EVENT.is_match(&line.text)
                    && !RATELIMIT_RESET_KIND.is_match(&line.text)
                    && self.is_vetoed(&line.text).is_none();
                if usable {
                    let following = following_texts(lines, index);
                    reset_with_continuation(&line.text, &following, now, zone)
                } else {
                    None
                }
            })
        })
    }
}

fn compile_user_patterns(setting: &str, patterns: &[String]) -> Result<Vec<Regex>, String> {
    patterns
        .iter()
        .map(|pattern| {
            if pattern.trim().is_empty() {
                return Err(format!(
                    "empty {setting} entry; expected a regular expression (matched case-insensitively against each output line)"
                ));
            }
            Regex::new(&format!("(?i){pattern}")).map_err(|error| {
                let reason = error
                    .to_string()
                    .lines()
                    .rev()
                    .find(|line| !line.trim().is_empty())
                    .unwrap_or("invalid syntax")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                format!(
                    "invalid {setting} entry {pattern:?}: {reason}; expected a regular expression (matched case-insensitively against each output line)"
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Cleaning
// ---------------------------------------------------------------------------

/// Where a line came from inside structured (stream-json) output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The worker's own words: results, errors, events.
    Worker,
    /// Model text relayed by the worker (assistant messages): may carry the limit
    /// message itself, never a server error.
    Conversation,
    /// Output of tools the model ran: whatever a `curl` printed is not our limit.
    ToolOutput,
}

#[derive(Debug, Clone)]
struct Line {
    text: String,
    origin: Origin,
    /// The physical line was a JSON object or array.
    structured: bool,
    /// A client's retry countdown, or the error body printed with it: the client
    /// went on retrying, so neither counts.
    retried: bool,
}

fn tail(bytes: &[u8]) -> &[u8] {
    &bytes[bytes.len().saturating_sub(TAIL_BYTES)..]
}

fn clean_lines(bytes: &[u8]) -> Vec<Line> {
    let decoded = String::from_utf8_lossy(tail(bytes));
    let stripped = strip_terminal_escapes(&decoded);
    let mut lines = Vec::new();
    let mut retry_body_depth: i64 = 0;
    for physical in stripped.split(['\n', '\r']) {
        let retried = if retry_body_depth > 0 {
            retry_body_depth += bracket_balance(physical);
            true
        } else if COUNTDOWN.is_match(physical) {
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
            });
            continue;
        }
        let origin = origin_of(physical);
        let structured = physical.trim_start().starts_with(['{', '[']);
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
        for logical in normalized.split(['\n', '\r']) {
            lines.push(Line { text: collapse_whitespace(logical), origin, structured, retried });
        }
    }
    lines
}

/// Opening minus closing brackets: how far a line leaves a JSON body open.
fn bracket_balance(physical: &str) -> i64 {
    physical.chars().fold(0, |balance, c| match c {
        '{' | '[' => balance + 1,
        '}' | ']' => balance - 1,
        _ => balance,
    })
}

fn origin_of(physical: &str) -> Origin {
    let Some(captures) = JSON_EVENT_TYPE.captures(physical) else {
        return Origin::Worker;
    };
    let event_type = captures[1].to_ascii_lowercase();
    match event_type.as_str() {
        "user" | "tool_result" | "function_call_output" => Origin::ToolOutput,
        "item.started" | "item.updated" | "item.completed" => {
            if TOOL_ITEM.is_match(physical) {
                Origin::ToolOutput
            } else {
                Origin::Conversation
            }
        }
        "assistant" | "message" | "tool_use" | "stream_event" | "thinking" | "reasoning" => {
            Origin::Conversation
        }
        _ => Origin::Worker,
    }
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
fn next_line(lines: &[Line], index: usize, allow_conversation: bool) -> Option<&Line> {
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
fn spanning_join<T>(
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

fn excerpt(text: &str, start: usize, end: usize) -> String {
    let total = text.chars().count();
    if total <= MATCHED_LINE_MAX_CHARS {
        return text.to_string();
    }
    let start_char = text[..start.min(text.len())].chars().count();
    let end_char = text[..end.min(text.len())].chars().count();
    let begin = if end_char <= MATCHED_LINE_MAX_CHARS - 3 {
        0
    } else {
        start_char.saturating_sub(100).min(total.saturating_sub(MATCHED_LINE_MAX_CHARS - 6))
    };
    let body: String = text.chars().skip(begin).take(MATCHED_LINE_MAX_CHARS - 6).collect();
    let prefix = if begin > 0 { "..." } else { "" };
    let suffix = if begin + MATCHED_LINE_MAX_CHARS - 6 < total { "..." } else { "" };
    format!("{prefix}{}{suffix}", body.trim())
}

// ---------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------

fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|error| panic!("built-in pattern {pattern:?}: {error}"))
}

/// A cheap first look: a line without any of these words holds no built-in quota shape.
static HIT_HINT: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)limit|quota|429|rate|exhaust|too[\s_]*many|throttl|credit|billing|payment|insufficient|capacity|usage|allowance",
    )
});

static JSON_EVENT_TYPE: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"^\s*\{\s*"type"\s*:\s*"([A-Za-z_.]+)""#));
static TOOL_ITEM: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#""type"\s*:\s*"(?:command_execution|file_change|mcp_tool_call|web_search|tool_call|function_call_output)""#,
    )
});

static IS_ERROR_TRUE: LazyLock<Regex> = LazyLock::new(|| compile(r#"(?i)"is_error"\s*:\s*true\b"#));
static IS_ERROR_FALSE: LazyLock<Regex> = LazyLock::new(|| compile(r#"(?i)"is_error"\s*:\s*false\b"#));
/// Output that is itself an error object, so a server-error shape in it counts even
/// when the worker exited 0.
static ERROR_OBJECT: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          "type"\s*:\s*"error"
        | "subtype"\s*:\s*"error
        | ^\s*[\[{]?\s*["']error["']\s*:\s*[{\[]
        | ^\s*\[?\s*api\s+error\b
        | "result"\s*:\s*"\s*\[?\s*api\s+error\b
        | ^\s*http/\d(?:\.\d)?\s+[45]\d\d\b
        "#,
    )
});

/// Server-side failures: retried as transient, never a quota hit, even when the body
/// mentions rate limits.
static SERVER_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          \bapi_error\b
        | \boverloaded_error\b
        | \binternal[\s_]server[\s_]error\b
        | \bapi\s*error\s*[:(]?\s*\(?\s*5\d\d\b
        | \b(?:http/\d(?:\.\d)?|status(?:[\s_]?code)?|error[\s_]code|code)["']?\s*[:=]?\s*["']?5\d\d\b
        | \berror\s+5\d\d\b
        | \b5\d\d\s*[-:]?\s*(?:internal|bad\s+gateway|service\s+unavailable|gateway\s+time-?out|overloaded|server\s+error)
        | \bbad\s+gateway\b
        | \bservice\s+(?:is\s+)?(?:temporarily\s+)?unavailable\b
        | \bgateway\s+time-?out\b
        | \bmodel_capacity_exhausted\b
        | \bno\s+capacity\s+available\b
        | \bserver_error\b
        | \bthe\s+server\s+had\s+an\s+error\b
        | \b(?:engine|server)_overloaded\b
        | \b(?:is|are|currently|server|servers|model|engine|api|service)\s+(?:currently\s+|temporarily\s+)?overloaded\b
        | "overloaded"
        | :\s*overloaded\b
        | "status"\s*:\s*"(?:internal|unavailable)"
        | \ban\s+internal\s+error\s+(?:has\s+)?occurred\b
        | \bupstream\s+connect\s+error\b
        | \bnot\s+your\s+usage\s+limit\b
        "#,
    )
});

/// A client's own retry loop: its countdown is not a reset and its line is not the
/// final word.
static COUNTDOWN: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \bretrying\b
        | \(\s*attempt\s+\d+\s*(?:/|of)\s*\d+\s*\)
        | \battempt\s+\d+\s*(?:/\s*\d+\s*|of\s+\d+\s+)?failed\b
        | \bwill\s+retry\b
        | \bretry\s+attempt\b
        | \bretry\s+\d+\s*/\s*\d+\b
        ",
    )
});

/// Warnings before the limit, and usage meters.
static WARNING: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \bapproaching\b
        | \b\d{1,3}(?:\.\d+)?\s*%\s*(?:of\b|used\b)
        | \bused\s+(?:over\s+|about\s+|nearly\s+|almost\s+|more\s+than\s+)?\d{1,3}(?:\.\d+)?\s*%
        | \bheads\s+up\b
        | \b(?:almost|nearly|close\s+to)\s+(?:reaching\s+|hitting\s+)?(?:your|the|a)\b
        | \bwill\s+(?:soon\s+)?(?:be\s+)?(?:reach|hit)
        ",
    )
});

/// Model fallbacks: the work goes on with another model.
static FALLBACK: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \bnow\s+using\b
        | \bswitch(?:ing|ed)\s+(?:you\s+)?(?:to|from)\b
        | \bautomatically\s+switch
        | \bfall(?:ing|s)?\s*back\b
        | \bfell\s+back\b
        | \bfallback\b
        | \bfor\s+the\s+remainder\s+of\s+(?:this|the)\s+session\b
        | \busing\s+[\w.\-\s]{1,30}\s+instead\b
        | \bdowngrad(?:e|ed|ing)\s+to\b
        ",
    )
});

/// A request too big for the limit fails the same way on every retry: it is the
/// item's failure, not a quota to wait for.
static OVERSIZED_REQUEST: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \brequest\s+too\s+large\b
        | \btokens\s+must\s+be\s+reduced\b
        | \bprompt\s+is\s+too\s+long\b
        | \bmaximum\s+context\s+length\b
        ",
    )
});

/// The same, looked for on the lines that follow a hit (Gemini CLI prints the
/// fallback notice on its own line).
static FALLBACK_FOLLOWING: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \bnow\s+using\b
        | \bswitching\s+(?:to|from)\b
        | \bswitched\s+(?:you\s+)?to\b
        | \bautomatically\s+switch
        | \bfalling\s+back\b
        | \bfallback\s+model\b
        | \bfor\s+the\s+remainder\s+of\s+(?:this|the)\s+session\b
        ",
    )
});

fn fallback_follows(lines: &[Line], last_line: usize) -> bool {
    lines.iter().skip(last_line + 1).take(2).any(|line| FALLBACK_FOLLOWING.is_match(&line.text))
}

static RATE_LIMIT_EVENT: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?i)"type"\s*:\s*"rate_limit_event""#));
static STATUS_REJECTED: LazyLock<Regex> = LazyLock::new(|| compile(r#"(?i)"status"\s*:\s*"rejected""#));

/// Quota that waiting does not fix.
static NEEDS_ATTENTION: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          \binsufficient_quota\b
        | \bbilling[\s_]hard[\s_]limit
        | \bcredit\s+balance\s+is\s+too\s+low\b
        | \bout\s+of\s+credits\b
        | \bspecified\s+(?:[\w-]+\s+){0,2}usage\s+limits?\b
        | \bmonthly\s+(?:[\w-]+\s+){0,3}?(?:limit|cap|quota|budget)s?\b
        | \b(?:spend|spending|budget)\s+limit\b
        | \blimit["']?\s*:\s*["']?0(?:[^.\d]|$)
        | \bquota_limit_value["']?\s*:\s*["']?0["']?(?:[^.\d]|$)
        | \bpayment\s+required\b
        | \binsufficient\s+(?:credits?|balance|funds)\b
        "#,
    )
});
static BILLING_MENTION: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)\bbilling\b|\bexceeded\s+your\s+current\s+quota\b"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// English wording: must start the message (at most `max_prefix_words` words after
    /// the last separator, none of them prose connectives) and not run on as prose.
    Phrase { max_prefix_words: usize, requires_reset: bool },
    /// An error identifier (`rate_limit_error`): must stand as a value, a key or the
    /// start of a message, never inside a sentence or backticks.
    Token,
}

struct QuotaPattern {
    regex: Regex,
    shape: Shape,
    kind: HitKind,
    needs_attention: bool,
}

impl QuotaPattern {
    fn phrase(pattern: &str, max_prefix_words: usize) -> QuotaPattern {
        QuotaPattern {
            regex: compile(pattern),
            shape: Shape::Phrase { max_prefix_words, requires_reset: false },
            kind: HitKind::Message,
            needs_attention: false,
        }
    }

    /// An HTTP status shape (`429 Too Many Requests`): a phrase, reported after the
    /// English message when a run prints both.
    fn status(pattern: &str, max_prefix_words: usize) -> QuotaPattern {
        QuotaPattern { kind: HitKind::Status, ..QuotaPattern::phrase(pattern, max_prefix_words) }
    }

    fn token(pattern: &str, needs_attention: bool) -> QuotaPattern {
        QuotaPattern { regex: compile(pattern), shape: Shape::Token, kind: HitKind::Token, needs_attention }
    }

    fn accepts(&self, text: &str, found: &Match<'_>) -> bool {
        match self.shape {
            Shape::Phrase { max_prefix_words, requires_reset } => {
                starts_message(&text[..found.start()], max_prefix_words)
                    && !runs_on_as_prose(&text[found.end()..])
                    && !EXCLUDED_LIMIT_KINDS.is_match(found.as_str())
                    && (!requires_reset || RESET_KEYWORD.is_match(&text[found.end()..]))
            }
            Shape::Token => token_stands_alone(text, found.start()),
        }
    }
}

/// Limits that are not quota: context windows, turns, recursion, timeouts, sizes.
static EXCLUDED_LIMIT_KINDS: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)\b(?:context|length|recursion|turns?|steps?|depth|size|memory|time|timeout|retry|retries|files?|output|input|characters?|payload|upload|storage|disk|stack|iterations?|max_tokens|maximum|conversation|prompt|tools?|loop|budget_tokens)\b",
    )
});

static QUOTA_PATTERNS: LazyLock<Vec<QuotaPattern>> = LazyLock::new(|| {
    vec![
        // "Claude AI usage limit reached|1763744400", "5-hour limit reached ∙ resets
        // 12pm", "Opus weekly limit reached", "Rate limit reached for gpt-4o in ...",
        // "API rate limit exceeded for user ID 1", "Usage limit reached for all Pro models"
        QuotaPattern::phrase(
            r"(?i)\b(?:usage|rate|requests?|api|daily|weekly|monthly|hourly|session|(?:\d+|five)[\s-]?(?:hours?|hr|h)|model|quota|plan|account|spend(?:ing)?|opus|sonnet|haiku)(?:\s+[\d.]+)?\s+limits?\s+(?:has\s+been\s+|have\s+been\s+|was\s+|is\s+)?(?:reached|exceeded|hit)\b",
            3,
        ),
        // "You've hit your session limit", "You've hit your usage limit", "You exceeded
        // your current quota", "you've hit a rate limit", "You have exhausted your
        // capacity on this model", "You have reached your daily gemini-2.5-pro quota limit"
        QuotaPattern::phrase(
            r"(?i)\b(?:hit|reached|exceeded|exhausted|used\s+up|run\s+out\s+of|ran\s+out\s+of)\s+(?:your|the|a|an|its|this|our)\s+(?:[\w.'/-]+\s+){0,4}?(?:limits?|quotas?|capacity|allowance)\b",
            3,
        ),
        // "You're out of extra usage · resets Feb 4, 8pm (Europe/Budapest)"
        QuotaPattern::phrase(
            r"(?i)\bout\s+of\s+(?:extra\s+|included\s+|your\s+)?(?:usage|credits?|quota)\b",
            3,
        ),
        // "Quota exceeded for quota metric 'Gemini 2.5 Pro Requests' ..."
        QuotaPattern::phrase(
            r"(?i)\bquotas?\s+(?:limit\s+)?(?:has\s+been\s+|was\s+)?(?:exceeded|exhausted|reached|hit)\b",
            3,
        ),
        // "Resource has been exhausted (e.g. check quota)."
        QuotaPattern::phrase(r"(?i)\bresource\s+(?:has\s+been\s+)?exhausted\b", 3),
        // "Your quota will reset after 8h44m7s."
        QuotaPattern::phrase(r"(?i)\bquota\s+will\s+reset\b", 3),
        // "Your credit balance is too low to access the Anthropic API."
        QuotaPattern {
            regex: compile(r"(?i)\bcredit\s+balance\s+is\s+too\s+low\b"),
            shape: Shape::Phrase { max_prefix_words: 3, requires_reset: false },
            kind: HitKind::Message,
            needs_attention: true,
        },
        // "Insufficient credits. Add more using ...", "402 Payment Required"
        QuotaPattern {
            regex: compile(r"(?i)\binsufficient\s+(?:credits?|balance|funds)\b|\bpayment\s+required\b"),
            shape: Shape::Phrase { max_prefix_words: 3, requires_reset: false },
            kind: HitKind::Message,
            needs_attention: true,
        },
        // "429 Too Many Requests"
        QuotaPattern::status(r"(?i)\btoo\s+many\s+requests\b", 3),
        // "Request was throttled. Expected available in 37 seconds."
        QuotaPattern::phrase(
            r"(?i)\b(?:(?:requests?|calls?)\s+(?:was|were|is|are|has\s+been|have\s+been)\s+|been\s+|being\s+)?throttled\b",
            0,
        ),
        // "Error: rate limited", "You are being rate limited."
        QuotaPattern::phrase(
            r"(?i)\b(?:you(?:'re|\s+are|\s+have\s+been)\s+(?:being\s+|currently\s+|temporarily\s+)?)?rate[\s-]limited\b",
            0,
        ),
        // HTTP 429 in its usual spellings.
        QuotaPattern::status(
            r#"(?i)(?:\bhttp/\d(?:\.\d)?\s+429\b|\b(?:status|error)[\s_]?(?:code)?["']?\s*[:=]\s*["']?429\b|\bstatus\s+code\s+429\b|\bapi\s*error\s*[:(]?\s*\(?\s*429\b|\brequest\s+rejected\s*\(\s*429\s*\)|\bcode["']?\s*:\s*429\b|\b429\s*(?:-\s*\{|\{|[:-]?\s*(?:too\s+many|rate[\s_-]?limit|resource[\s_]exhausted|quota)))"#,
            3,
        ),
        // A bare "Limit reached · resets 3pm" at the start of a line, with a reset.
        QuotaPattern {
            regex: compile(r"(?i)\blimit\s+reached\b"),
            shape: Shape::Phrase { max_prefix_words: 0, requires_reset: true },
            kind: HitKind::Message,
            needs_attention: false,
        },
        QuotaPattern::token(
            r"(?i)\b(?:rate_limit_error|rate_limit_exceeded|rate_limited|ratelimit(?:ed|error|exceeded(?:error|exception)?)|too_many_requests|toomanyrequests(?:error|exception)?|resource_exhausted|resourceexhausted|quota_exceeded|quotaexceeded|userratelimitexceeded|dailylimitexceeded|terminalquotaerror|retryablequotaerror|usage_limit_(?:reached|exceeded))\b",
            false,
        ),
        QuotaPattern::token(r"(?i)\b(?:insufficient_quota|billing_hard_limit_reached)\b", true),
    ]
});

/// Words that, just before a limit phrase, show a sentence talking about limits
/// rather than a limit message.
const PROSE_PREFIX_WORDS: &[&str] = &[
    "if",
    "when",
    "whenever",
    "once",
    "until",
    "unless",
    "before",
    "after",
    "avoid",
    "avoids",
    "avoiding",
    "avoided",
    "prevent",
    "prevents",
    "preventing",
    "handle",
    "handles",
    "handling",
    "handled",
    "whether",
    "detect",
    "detects",
    "detecting",
    "detected",
    "catch",
    "catches",
    "catching",
    "about",
    "mention",
    "mentions",
    "mentioned",
    "like",
    "such",
    "as",
    "could",
    "might",
    "may",
    "would",
    "should",
    "not",
    "no",
    "never",
    "without",
    "for",
    "test",
    "tests",
    "testing",
    "simulate",
    "simulates",
    "simulated",
    "log",
    "logs",
    "logged",
    "print",
    "prints",
    "printed",
    "show",
    "shows",
    "showed",
    "shown",
    "display",
    "displays",
    "says",
    "said",
    "say",
    "return",
    "returns",
    "returned",
    "throw",
    "throws",
    "raise",
    "raises",
    "of",
    "on",
    "we",
    "they",
    "i",
    "it",
    "to",
    "what",
    "how",
    "why",
    "which",
    "explain",
    "explains",
    "describe",
    "describes",
];

/// Words that, just after a limit phrase, show it is the subject of a sentence.
const PROSE_SUFFIX_WORDS: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "means",
    "meant",
    "message",
    "messages",
    "error",
    "errors",
    "banner",
    "banners",
    "text",
    "string",
    "strings",
    "handling",
    "handler",
    "handlers",
    "logic",
    "case",
    "cases",
    "when",
    "if",
    "which",
    "should",
    "would",
    "could",
    "can",
    "scenario",
    "scenarios",
    "response",
    "responses",
    "detection",
    "check",
    "checks",
];

fn is_separator(previous: Option<char>, c: char, next: Option<char>) -> bool {
    let inside_word = previous.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric);
    match c {
        '\'' | '-' | '.' | '/' => !inside_word,
        ':' | '"' | '|' | '·' | '[' | ']' | '{' | '}' | '>' | '<' | ',' | ';' | '!' | '?' | '*' | '='
        | '#' | '~' | '\u{fffd}' => true,
        _ => false,
    }
}

/// The text before a phrase leaves it at the start of a message: nothing, a
/// separator (`Error:`, `·`, `"message": "`), or a few words that are not prose.
fn starts_message(prefix: &str, max_prefix_words: usize) -> bool {
    let trimmed = prefix.trim_end();
    let chars: Vec<(usize, char)> = trimmed.char_indices().collect();
    let separator = (0..chars.len()).rev().find(|&index| {
        let previous = index.checked_sub(1).map(|before| chars[before].1);
        let next = chars.get(index + 1).map(|&(_, c)| c);
        is_separator(previous, chars[index].1, next)
    });
    let remainder = match separator {
        Some(index) => {
            let (offset, c) = chars[index];
            if c == '"' || c == '\'' {
                // A quotation inside a sentence (`says "usage limit reached"`) is prose;
                // a JSON or dict value (`"message": "...`) is not.
                let before_quote = trimmed[..offset].trim_end();
                if before_quote.chars().last().is_some_and(|last| last.is_alphanumeric()) {
                    return false;
                }
            }
            &trimmed[offset + c.len_utf8()..]
        }
        None => trimmed,
    };
    let words: Vec<String> = remainder
        .split_whitespace()
        .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|word| !word.is_empty())
        .collect();
    if remainder.contains('`') {
        return false;
    }
    words.len() <= max_prefix_words && !words.iter().any(|word| PROSE_PREFIX_WORDS.contains(&word.as_str()))
}

fn runs_on_as_prose(suffix: &str) -> bool {
    if suffix.starts_with('`') {
        return true;
    }
    let rest = suffix.trim_start();
    if !suffix.starts_with(char::is_whitespace) && !suffix.is_empty() {
        return false;
    }
    let word: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect::<String>().to_lowercase();
    PROSE_SUFFIX_WORDS.contains(&word.as_str())
}

/// An identifier counts when it is a value (`"type":"rate_limit_error"`,
/// `type: RESOURCE_EXHAUSTED`), a qualified name (`openai.RateLimitError`) or starts
/// the line; not inside a sentence or backticks.
fn token_stands_alone(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end();
    match before.chars().last() {
        None => true,
        Some(quote @ ('"' | '\'')) => {
            let before_quote = before[..before.len() - quote.len_utf8()].trim_end();
            matches!(before_quote.chars().last(), None | Some(':' | '=' | '[' | '{' | ',' | '(' | '|'))
        }
        Some(':' | '=' | '[' | ']' | '{' | '(' | '|' | '.' | '>' | '*' | '-' | '·') => true,
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HitKind {
    /// English wording ("usage limit reached").
    Message,
    /// An HTTP status shape ("429 Too Many Requests").
    Status,
    /// An error identifier (`rate_limit_error`).
    Token,
    /// A stream-json `rate_limit_event` with `"status": "rejected"`.
    StreamEvent,
    /// A drain's own `quota_patterns` entry.
    UserPattern,
}

#[derive(Debug, Clone, Copy)]
struct HitMatch {
    start: usize,
    end: usize,
    needs_attention: bool,
    kind: HitKind,
}

#[derive(Debug, Clone)]
struct Hit {
    stream: usize,
    first_line: usize,
    last_line: usize,
    text: String,
    matched: HitMatch,
}

/// For a run that exited 0 without an error object: the hit is the shape of a real
/// limit message (a short line or JSON value of its own, in a short output), not a
/// sentence of a result that talks about limits.
fn looks_like_limit_message(text: &str, matched: &HitMatch, structured: bool, stands_alone: bool) -> bool {
    let before = &text[..matched.start];
    let quote = before
        .char_indices()
        .rev()
        .find(|&(offset, c)| c == '"' || (c == '\'' && !apostrophe_inside_word(text, offset)));
    let json_value = quote.and_then(|(open, quote)| {
        let key_end = text[..open].trim_end();
        let is_value =
            key_end.ends_with(':') && key_end[..key_end.len() - 1].trim_end().ends_with(['"', '\'']);
        is_value.then(|| {
            let close = text[matched.end..].find(quote).map_or(text.len(), |offset| matched.end + offset);
            &text[open + 1..close]
        })
    });
    let message = match json_value {
        Some(value) => value,
        None => {
            // Inside a quotation in a sentence: `the logs say "Rate limit exceeded"`.
            if before.matches('"').count() % 2 == 1 {
                return false;
            }
            if !structured && !stands_alone {
                return false;
            }
            text
        }
    };
    let trimmed = message.trim_start();
    let is_list_item = MARKDOWN_ITEM.is_match(trimmed);
    message.chars().count() <= 300 && !is_list_item
}

fn apostrophe_inside_word(text: &str, offset: usize) -> bool {
    let previous = text[..offset].chars().last();
    let next = text[offset + 1..].chars().next();
    previous.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric)
}

static MARKDOWN_ITEM: LazyLock<Regex> = LazyLock::new(|| compile(r"^(?:[-*+>]\s|#{1,6}\s|\d{1,3}[.)]\s)"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorVerdict {
    /// `"is_error": true`, `{"type":"error"...}`, `API Error: ...` and the like.
    Error,
    /// A structured result that says `"is_error": false`.
    Success,
    Unknown,
}

fn error_verdict(lines: &[Line]) -> ErrorVerdict {
    let worker_lines = || lines.iter().filter(|line| line.origin == Origin::Worker && !line.text.is_empty());
    if worker_lines().any(|line| IS_ERROR_TRUE.is_match(&line.text)) {
        ErrorVerdict::Error
    } else if worker_lines().any(|line| IS_ERROR_FALSE.is_match(&line.text)) {
        ErrorVerdict::Success
    } else if worker_lines().any(|line| ERROR_OBJECT.is_match(&line.text)) {
        ErrorVerdict::Error
    } else {
        ErrorVerdict::Unknown
    }
}

fn neighbourhood_texts<'a>(streams: &[&'a [Line]], hits: &'a [Hit]) -> Vec<&'a str> {
    let mut texts: Vec<&str> = hits.iter().map(|hit| hit.text.as_str()).collect();
    for hit in hits {
        let lines = streams[hit.stream];
        let first = hit.first_line.saturating_sub(NEIGHBOURHOOD_LINES);
        let last = (hit.last_line + NEIGHBOURHOOD_LINES).min(lines.len().saturating_sub(1));
        for line in lines.iter().take(last + 1).skip(first) {
            if line.origin != Origin::ToolOutput && !line.text.is_empty() {
                texts.push(&line.text);
            }
        }
    }
    texts
}

// ---------------------------------------------------------------------------
// Reset times
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
struct ResetMatch {
    instant: DateTime<Utc>,
    start: usize,
    end: usize,
}

/// Parse a reset time out of one already-cleaned line: the first one the line states.
/// Clock times and dates without a year are their next occurrence after `now`, in the
/// zone the message names, else `zone`.
pub fn parse_reset(line: &str, now: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    find_resets(line, now, zone).first().map(|found| found.instant)
}

/// The reset of a line, extended into the following lines when the message was
/// wrapped inside its reset (`resets 12:50am (America/Los_` + `Angeles)`, or `reset at
/// 5pm` + `(Europe/Warsaw).`).
fn reset_with_continuation(
    text: &str,
    following: &[&str],
    now: DateTime<Utc>,
    zone: Tz,
) -> Option<DateTime<Utc>> {
    let mut current = text.to_string();
    let mut own = find_resets(&current, now, zone).first().copied();
    for next in following {
        let mut best: Option<(ResetMatch, String, usize)> = None;
        for separator in [" ", ""] {
            let joined = format!("{current}{separator}{next}");
            let boundary = current.len() + separator.len();
            let spanning = find_resets(&joined, now, zone)
                .into_iter()
                .find(|found| found.start < current.len() && found.end > boundary);
            if let Some(found) = spanning {
                let extends_own = match own {
                    Some(own) => found.start <= own.start,
                    None => true,
                };
                let reach = found.end - boundary;
                let reaches_further = match &best {
                    Some((_, _, best_reach)) => reach > *best_reach,
                    None => true,
                };
                if extends_own && reaches_further {
                    best = Some((found, joined, reach));
                }
            }
        }
        let Some((found, joined, _)) = best else {
            break;
        };
        let reached_end = found.end >= joined.len();
        own = Some(found);
        current = joined;
        if !reached_end {
            break;
        }
    }
    own.map(|found| found.instant)
}

/// Up to two lines after `index` that may continue a wrapped message.
fn following_texts(lines: &[Line], index: usize) -> Vec<&str> {
    lines
        .iter()
        .skip(index + 1)
        .take(2)
        .take_while(|line| !line.text.is_empty() && line.origin != Origin::ToolOutput)
        .map(|line| line.text.as_str())
        .collect()
}

/// Every reset the line states, in order of position.
fn find_resets(line: &str, now: DateTime<Utc>, zone: Tz) -> Vec<ResetMatch> {
    let mut found = Vec::new();
    let mut push = |instant: Option<DateTime<Utc>>, start: usize, end: usize| {
        if let Some(instant) = instant {
            found.push(ResetMatch { instant, start, end });
        }
    };

    // "usage limit reached|1763744400" (seconds or milliseconds)
    for captures in EPOCH_AFTER_PIPE.captures_iter(line) {
        if let (Some(whole), Some(digits)) = (captures.get(0), captures.get(1)) {
            push(epoch_instant(digits.as_str()), whole.start(), whole.end());
        }
    }
    // "resetsAt":1747353600, "reset_at": "2025-11-23T12:00:00Z"
    for key in RESET_KEY.find_iter(line) {
        let rest = &line[key.end()..];
        if let Some((instant, length)) = parse_header_value(rest, now, zone, true) {
            push(Some(instant), key.start(), key.end() + length);
        }
    }
    // Retry-After: 120 / Retry-After: <HTTP-date> / retry-after-ms: 1500
    for header in RETRY_AFTER.captures_iter(line) {
        let Some(whole) = header.get(0) else { continue };
        let rest = &line[whole.end()..];
        let parsed = if header.get(1).is_some() {
            parse_seconds(rest)
                .and_then(|(nanoseconds, length)| Some((add_nanoseconds(now, nanoseconds / 1000)?, length)))
        } else {
            parse_header_value(rest, now, zone, false)
        };
        if let Some((instant, length)) = parsed {
            push(Some(instant), whole.start(), whole.end() + length);
        }
    }
    // x-ratelimit-reset-tokens: 6m0s, anthropic-ratelimit-tokens-reset: <RFC 3339>
    for header in RATELIMIT_RESET_HEADER.captures_iter(line) {
        let Some(whole) = header.get(0) else { continue };
        let rest = &line[whole.end()..];
        if let Some((instant, length)) = parse_header_value(rest, now, zone, true) {
            push(Some(instant), whole.start(), whole.end() + length);
        }
    }
    // "resets_in_seconds": 3600
    for key in RESET_IN_KEY.find_iter(line) {
        let rest = &line[key.end()..];
        let parsed = parse_duration(rest).or_else(|| {
            parse_seconds(rest)
                .filter(|&(_, length)| !rest[length..].starts_with(|c: char| c.is_alphanumeric()))
        });
        if let Some((nanoseconds, length)) = parsed {
            push(add_nanoseconds(now, nanoseconds), key.start(), key.end() + length);
        }
    }
    // "retryDelay": "38s"
    for delay in RETRY_DELAY.find_iter(line) {
        let rest = &line[delay.end()..];
        if let Some((nanoseconds, length)) = parse_duration(rest) {
            push(add_nanoseconds(now, nanoseconds), delay.start(), delay.end() + length);
        }
    }
    // "resets 8pm", "try again in 20s", "Access resets at 2:55 PM PST."
    for keyword in RESET_KEYWORD.find_iter(line) {
        let rest = &line[keyword.end()..];
        if let Some((instant, length)) = parse_after_keyword(rest, now, zone) {
            let after = &line[keyword.end() + length..];
            if !is_countdown_tail(after) {
                push(Some(instant), keyword.start(), keyword.end() + length);
            }
        }
    }
    found.sort_by_key(|found| (found.start, std::cmp::Reverse(found.end)));
    found
}

static EPOCH_AFTER_PIPE: LazyLock<Regex> = LazyLock::new(|| compile(r"\|\s*(\d{9,14})(?:[^\d]|$)"));
static RESET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"(?i)\b(?:resets?_?at|reset_?time(?:stamp)?|reset_?timestamp|resets?_?on)["']?\s*[:=]\s*["']?"#)
});
static RETRY_AFTER: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?i)\bretry[-_]?after(?:(-ms|_ms)|_seconds|-seconds)?["']?\s*[:=]\s*["']?"#));
static RATELIMIT_RESET_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"(?i)\b(?:x-|anthropic-)?ratelimit-(?:[a-z]+-){0,3}reset(?:-[a-z]+){0,2}["']?\s*:\s*["']?"#)
});
static RESET_IN_KEY: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?i)\b(?:resets?_?in(?:_?seconds)?|reset_?after(?:_?seconds)?|retry_?after_?seconds|seconds_?until_?reset)["']?\s*[:=]\s*["']?"#,
    )
});
static RETRY_DELAY: LazyLock<Regex> = LazyLock::new(|| compile(r#"(?i)\bretry_?delay["']?\s*[:=]\s*["']?"#));
/// Words that introduce a reset in a message.
static RESET_KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)\b(?:resets?|try\s+again|retry|available(?:\s+again)?|regains?\s+access|access\s+again|until|renews?|refresh(?:es)?|reset\s+time\s+is|please\s+wait|wait\s+for)\b",
    )
});

fn is_countdown_tail(after: &str) -> bool {
    let window: String = after.chars().take(40).collect::<String>().to_lowercase();
    window.contains("attempt")
}

/// After a reset keyword: `in <duration>`, `after <duration>`, or an absolute time.
fn parse_after_keyword(rest: &str, now: DateTime<Utc>, zone: Tz) -> Option<(DateTime<Utc>, usize)> {
    let position = skip_fillers(rest, 0, &[":", "-"]);
    let word_end =
        rest[position..].find(|c: char| !c.is_alphabetic()).map_or(rest.len(), |offset| position + offset);
    let word = rest[position..word_end].to_ascii_lowercase();
    match word.as_str() {
        "in" | "within" | "after" | "for" => {
            let after_word = skip_fillers(
                rest,
                word_end,
                &["about", "approximately", "approx.", "approx", "around", "roughly", "~", "another"],
            );
            if let Some((nanoseconds, length)) = parse_duration(&rest[after_word..]) {
                return Some((add_nanoseconds(now, nanoseconds)?, after_word + length));
            }
            if word == "after" {
                return parse_absolute(&rest[word_end..], now, zone)
                    .map(|(instant, length)| (instant, word_end + length));
            }
            None
        }
        _ => {
            if let Some((nanoseconds, length)) = parse_duration(&rest[position..]) {
                return Some((add_nanoseconds(now, nanoseconds)?, position + length));
            }
            parse_absolute(&rest[position..], now, zone).map(|(instant, length)| (instant, position + length))
        }
    }
}

/// A header or JSON value: epoch seconds or milliseconds (when `allow_epoch`), a
/// number of seconds, a duration (`6m0s`), or a timestamp / HTTP-date.
fn parse_header_value(
    rest: &str,
    now: DateTime<Utc>,
    zone: Tz,
    allow_epoch: bool,
) -> Option<(DateTime<Utc>, usize)> {
    if let Some(found) = ISO_DATETIME.find(rest) {
        if let Some((instant, length)) = parse_absolute(rest, now, zone) {
            if length >= found.end() {
                return Some((instant, length));
            }
        }
    }
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let after_digits = rest[digits.len()..].chars().next();
    if allow_epoch && digits.len() >= 9 && !after_digits.is_some_and(|c| c == '.' || c.is_alphabetic()) {
        return epoch_instant(&digits).map(|instant| (instant, digits.len()));
    }
    if let Some((nanoseconds, length)) = parse_duration(rest) {
        return Some((add_nanoseconds(now, nanoseconds)?, length));
    }
    if let Some((nanoseconds, length)) = parse_seconds(rest) {
        let next = rest[length..].chars().next();
        if !next.is_some_and(|c| c.is_alphanumeric() || c == ':') {
            return Some((add_nanoseconds(now, nanoseconds)?, length));
        }
    }
    parse_absolute(rest, now, zone)
}

fn epoch_instant(digits: &str) -> Option<DateTime<Utc>> {
    let value: i64 = digits.parse().ok()?;
    if value >= 100_000_000_000 {
        DateTime::from_timestamp_millis(value)
    } else {
        DateTime::from_timestamp(value, 0)
    }
}

fn add_nanoseconds(now: DateTime<Utc>, nanoseconds: i128) -> Option<DateTime<Utc>> {
    if nanoseconds < 0 || nanoseconds > i128::from(MAX_RELATIVE_SECONDS) * 1_000_000_000 {
        return None;
    }
    let nanoseconds = i64::try_from(nanoseconds).ok()?;
    now.checked_add_signed(Duration::nanoseconds(nanoseconds))
}

/// A decimal number of seconds at the start of `text`, as nanoseconds.
fn parse_seconds(text: &str) -> Option<(i128, usize)> {
    parse_decimal(text, 1_000_000_000)
}

/// `digits[.digits]` at the start of `text`, multiplied by `unit` exactly.
fn parse_decimal(text: &str, unit: i128) -> Option<(i128, usize)> {
    let integer_length = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if integer_length == 0 || integer_length > 12 {
        return None;
    }
    let integer: i128 = text[..integer_length].parse().ok()?;
    let mut value = integer * unit;
    let mut length = integer_length;
    if text[length..].starts_with('.') {
        let fraction = &text[length + 1..];
        let fraction_length = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if fraction_length > 0 {
            let used = &fraction[..fraction_length.min(12)];
            let numerator: i128 = used.parse().ok()?;
            let denominator = 10i128.pow(u32::try_from(used.len()).ok()?);
            value += numerator * unit / denominator;
            length += 1 + fraction_length;
        }
    }
    Some((value, length))
}

/// `20s`, `3.89s`, `644ms`, `8h44m7s`, `45 minutes`, `2 days 17 hours 14 minutes`,
/// `an hour`: nanoseconds and the length read.
fn parse_duration(text: &str) -> Option<(i128, usize)> {
    let mut total: i128 = 0;
    let mut position = 0;
    let mut components = 0;
    loop {
        let cursor = if components > 0 {
            skip_fillers(text, position, &[",", "and", "&"])
        } else {
            skip_spaces(text, position)
        };
        let rest = &text[cursor..];
        let (amount_length, is_article) = if rest.starts_with(|c: char| c.is_ascii_digit()) {
            let length = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
            (length, false)
        } else if components == 0 {
            match ["an ", "a ", "one "].iter().find(|article| starts_with_ignore_case(rest, article)) {
                Some(article) => (article.len(), true),
                None => break,
            }
        } else {
            break;
        };
        let unit_position = skip_spaces(text, cursor + amount_length);
        let unit: String = text[unit_position..].chars().take_while(char::is_ascii_alphabetic).collect();
        let Some(per_unit) = unit_nanoseconds(&unit.to_ascii_lowercase()) else {
            break;
        };
        let value = if is_article { per_unit } else { parse_decimal(rest, per_unit)?.0 };
        total = total.checked_add(value)?;
        position = unit_position + unit.len();
        components += 1;
    }
    (components > 0).then_some((total, position))
}

fn unit_nanoseconds(unit: &str) -> Option<i128> {
    const SECOND: i128 = 1_000_000_000;
    Some(match unit {
        "ms" | "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "us" | "microsecond" | "microseconds" => 1_000,
        "s" | "sec" | "secs" | "second" | "seconds" => SECOND,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * SECOND,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600 * SECOND,
        "d" | "day" | "days" => 86_400 * SECOND,
        "w" | "wk" | "wks" | "week" | "weeks" => 7 * 86_400 * SECOND,
        _ => return None,
    })
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn skip_spaces(text: &str, position: usize) -> usize {
    position + text[position..].find(|c: char| !c.is_whitespace()).unwrap_or(text.len() - position)
}

/// Skips spaces and any of `fillers` (symbols, or words followed by a non-letter).
fn skip_fillers(text: &str, mut position: usize, fillers: &[&str]) -> usize {
    loop {
        position = skip_spaces(text, position);
        let rest = &text[position..];
        let filler = fillers.iter().find(|filler| {
            starts_with_ignore_case(rest, filler)
                && (!filler.chars().all(char::is_alphabetic)
                    || !rest[filler.len()..].chars().next().is_some_and(char::is_alphanumeric))
        });
        match filler {
            Some(filler) => position += filler.len(),
            None => return position,
        }
    }
}

// --- absolute times --------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

impl Zone {
    fn local(self, instant: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Named(tz) => instant.with_timezone(&tz).naive_local(),
            Zone::Fixed(offset) => instant.with_timezone(&offset).naive_local(),
        }
    }

    /// A local time as an instant: an ambiguous time (clocks going back) takes the
    /// earlier instant; a time in a spring-forward gap moves to the first valid
    /// instant after it.
    fn resolve(self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self {
            Zone::Named(tz) => resolve_local(&tz, local),
            Zone::Fixed(offset) => resolve_local(&offset, local),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum DateSpec {
    Unspecified,
    Full(NaiveDate),
    MonthDay(u32, u32),
    DaysFromToday(i64),
    Weekday(Weekday),
}

static ISO_DATETIME: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^(\d{4})-(\d{2})-(\d{2})(?:(?:t|\s+)(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(?:\s*(z\b|[+-]\d{2}(?::?\d{2})?\b))?",
    )
});
static MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)([a-z]*)\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b(?:\s*,?\s*(\d{4})\b)?",
    )
});
static DAY_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^(\d{1,2})(?:st|nd|rd|th)?\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)([a-z]*)\.?(?:\s*,?\s*(\d{4})\b)?",
    )
});
static WEEKDAY: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)^(mon|tue|wed|thu|fri|sat|sun)([a-z]*)\.?,?"));
static RELATIVE_DAY: LazyLock<Regex> = LazyLock::new(|| compile(r"(?i)^(today|tonight|tomorrow)\b"));
static CLOCK: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)^(\d{1,2})(?:[:.](\d{2}))?(?::(\d{2}))?(?:\s*([ap])\.?\s?m\b\.?)?"));
static NOON_MIDNIGHT: LazyLock<Regex> = LazyLock::new(|| compile(r"(?i)^(noon|midnight)\b"));
static ZONE_PARENTHESIZED: LazyLock<Regex> = LazyLock::new(|| compile(r"^\s*\(\s*([^()]{1,60}?)\s*\)"));
static ZONE_UTC_OFFSET: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)^\s*(?:utc|gmt|z)?\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?\b"));
static ZONE_UTC_NAME: LazyLock<Regex> = LazyLock::new(|| compile(r"(?i)^\s*(utc|gmt|z)\b"));
static ZONE_IANA: LazyLock<Regex> = LazyLock::new(|| compile(r"^\s*([A-Za-z]+(?:/[A-Za-z0-9_+\-]+)+)"));
static ZONE_ABBREVIATION: LazyLock<Regex> = LazyLock::new(|| compile(r"^\s*([A-Za-z]{1,5})\b"));

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [(&str, Weekday); 7] = [
    ("monday", Weekday::Mon),
    ("tuesday", Weekday::Tue),
    ("wednesday", Weekday::Wed),
    ("thursday", Weekday::Thu),
    ("friday", Weekday::Fri),
    ("saturday", Weekday::Sat),
    ("sunday", Weekday::Sun),
];

fn month_number(abbreviation: &str, suffix: &str) -> Option<u32> {
    let written = format!("{abbreviation}{suffix}").to_ascii_lowercase();
    let index = MONTHS.iter().position(|month| month.starts_with(&abbreviation.to_ascii_lowercase()))?;
    (MONTHS[index].starts_with(&written) || written == "sept")
        .then(|| u32::try_from(index + 1).ok())
        .flatten()
}

fn parse_weekday(text: &str) -> Option<(Weekday, usize)> {
    let captures = WEEKDAY.captures(text)?;
    let whole = captures.get(0)?;
    let written = format!("{}{}", &captures[1], &captures[2]).to_ascii_lowercase();
    let (_, weekday) = WEEKDAYS.iter().find(|(name, _)| name.starts_with(&written))?;
    if text[whole.end()..].chars().next().is_some_and(char::is_alphanumeric) {
        return None;
    }
    Some((*weekday, whole.end()))
}

fn parse_calendar_date(text: &str) -> Option<(DateSpec, usize)> {
    let (month, day, year, length) = if let Some(captures) = MONTH_DAY.captures(text) {
        let month = month_number(&captures[1], &captures[2])?;
        let day: u32 = captures[3].parse().ok()?;
        let year = captures.get(4).and_then(|year| year.as_str().parse::<i32>().ok());
        (month, day, year, captures.get(0)?.end())
    } else if let Some(captures) = DAY_MONTH.captures(text) {
        let month = month_number(&captures[2], &captures[3])?;
        let day: u32 = captures[1].parse().ok()?;
        let year = captures.get(4).and_then(|year| year.as_str().parse::<i32>().ok());
        (month, day, year, captures.get(0)?.end())
    } else {
        return None;
    };
    if !(1..=31).contains(&day) {
        return None;
    }
    let spec = match year {
        Some(year) => DateSpec::Full(NaiveDate::from_ymd_opt(year, month, day)?),
        None => DateSpec::MonthDay(month, day),
    };
    Some((spec, length))
}

fn parse_clock(text: &str) -> Option<(NaiveTime, usize)> {
    if let Some(captures) = NOON_MIDNIGHT.captures(text) {
        let hour = if captures[1].eq_ignore_ascii_case("noon") { 12 } else { 0 };
        return Some((NaiveTime::from_hms_opt(hour, 0, 0)?, captures.get(0)?.end()));
    }
    let captures = CLOCK.captures(text)?;
    let end = captures.get(0)?.end();
    let hour: u32 = captures[1].parse().ok()?;
    let minute: u32 = match captures.get(2) {
        Some(minute) => minute.as_str().parse().ok()?,
        None => 0,
    };
    let second: u32 = match captures.get(3) {
        Some(second) => second.as_str().parse().ok()?,
        None => 0,
    };
    let meridiem = captures.get(4).map(|meridiem| meridiem.as_str().to_ascii_lowercase());
    if captures.get(2).is_none() && meridiem.is_none() {
        return None;
    }
    if text[end..].chars().next().is_some_and(char::is_alphanumeric) {
        return None;
    }
    let hour = match meridiem.as_deref() {
        Some("a") => match hour {
            12 => 0,
            1..=11 => hour,
            _ => return None,
        },
        Some(_) => match hour {
            12 => 12,
            1..=11 => hour + 12,
            _ => return None,
        },
        None => hour,
    };
    Some((NaiveTime::from_hms_opt(hour, minute, second)?, end))
}

/// Fixed offsets of common zone abbreviations, in minutes east of UTC.
const ZONE_ABBREVIATIONS: &[(&str, i32)] = &[
    ("UTC", 0),
    ("UT", 0),
    ("GMT", 0),
    ("Z", 0),
    ("WET", 0),
    ("WEST", 60),
    ("BST", 60),
    ("CET", 60),
    ("MET", 60),
    ("CEST", 120),
    ("MEST", 120),
    ("EET", 120),
    ("EEST", 180),
    ("MSK", 180),
    ("IDT", 180),
    ("IST", 330),
    ("PKT", 300),
    ("ICT", 420),
    ("WIB", 420),
    ("HKT", 480),
    ("SGT", 480),
    ("PHT", 480),
    ("AWST", 480),
    ("JST", 540),
    ("KST", 540),
    ("ACST", 570),
    ("ACDT", 630),
    ("AEST", 600),
    ("AEDT", 660),
    ("NZST", 720),
    ("NZDT", 780),
    ("HST", -600),
    ("HDT", -540),
    ("AKST", -540),
    ("AKDT", -480),
    ("PST", -480),
    ("PDT", -420),
    ("MST", -420),
    ("MDT", -360),
    ("CST", -360),
    ("CDT", -300),
    ("EST", -300),
    ("EDT", -240),
    ("AST", -240),
    ("ADT", -180),
    ("NST", -210),
    ("NDT", -150),
    ("BRT", -180),
    ("ART", -180),
];
/// Generic names that follow daylight saving time.
const ZONE_GENERIC_NAMES: &[(&str, Tz)] = &[
    ("PT", chrono_tz::America::Los_Angeles),
    ("MT", chrono_tz::America::Denver),
    ("CT", chrono_tz::America::Chicago),
    ("ET", chrono_tz::America::New_York),
];
/// Abbreviations that mean different zones in different countries: the configured zone
/// wins when it uses the abbreviation.
const AMBIGUOUS_ABBREVIATIONS: &[&str] = &["IST", "CST", "BST", "AST", "EST", "CDT"];

fn zone_by_name(name: &str) -> Option<Tz> {
    let trimmed = name.trim();
    if let Ok(tz) = trimmed.parse::<Tz>() {
        return Some(tz);
    }
    chrono_tz::TZ_VARIANTS.iter().copied().find(|tz| tz.name().eq_ignore_ascii_case(trimmed))
}

fn configured_zone_uses(abbreviation: &str, configured: Tz, now: DateTime<Utc>) -> bool {
    [0i64, 91, 182, 273].iter().any(|days| {
        let probe = now + Duration::days(*days);
        configured
            .offset_from_utc_datetime(&probe.naive_utc())
            .abbreviation()
            .is_some_and(|name| name.eq_ignore_ascii_case(abbreviation))
    })
}

fn zone_by_abbreviation(abbreviation: &str, now: DateTime<Utc>, configured: Tz) -> Option<Zone> {
    let upper = abbreviation.to_ascii_uppercase();
    if AMBIGUOUS_ABBREVIATIONS.contains(&upper.as_str()) && configured_zone_uses(&upper, configured, now) {
        return Some(Zone::Named(configured));
    }
    if let Some((_, tz)) = ZONE_GENERIC_NAMES.iter().find(|(name, _)| *name == upper) {
        return Some(Zone::Named(*tz));
    }
    let (_, minutes) = ZONE_ABBREVIATIONS.iter().find(|(name, _)| *name == upper)?;
    FixedOffset::east_opt(minutes * 60).map(Zone::Fixed)
}

fn fixed_offset(sign: &str, hours: &str, minutes: Option<&str>) -> Option<Zone> {
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = match minutes {
        Some(minutes) => minutes.parse().ok()?,
        None => 0,
    };
    if hours > 14 || minutes > 59 {
        return None;
    }
    let total = (hours * 60 + minutes) * 60;
    FixedOffset::east_opt(if sign == "-" { -total } else { total }).map(Zone::Fixed)
}

/// A zone right after a time: `(Europe/Paris)`, `(UTC)`, `PST`, `UTC+2`, `+05:30`,
/// `America/New_York`.
fn parse_zone(text: &str, now: DateTime<Utc>, configured: Tz) -> Option<(Zone, usize)> {
    if let Some(captures) = ZONE_PARENTHESIZED.captures(text) {
        let inner = captures[1].trim();
        let zone = zone_by_name(inner)
            .map(Zone::Named)
            .or_else(|| zone_by_abbreviation(inner, now, configured))
            .or_else(|| {
                let offset = ZONE_UTC_OFFSET.captures(inner)?;
                if offset.get(0)?.end() != inner.len() {
                    return None;
                }
                fixed_offset(&offset[1], &offset[2], offset.get(3).map(|m| m.as_str()))
            });
        if let Some(zone) = zone {
            return Some((zone, captures.get(0)?.end()));
        }
        return None;
    }
    if let Some(captures) = ZONE_UTC_OFFSET.captures(text) {
        let whole = captures.get(0)?;
        let named = whole.as_str().trim_start();
        // A bare "+2" is not an offset; "+02:00", "UTC+2" and "GMT-5" are.
        let has_prefix = named.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if has_prefix || captures[2].len() == 2 {
            if let Some(zone) = fixed_offset(&captures[1], &captures[2], captures.get(3).map(|m| m.as_str()))
            {
                return Some((zone, whole.end()));
            }
        }
    }
    if let Some(captures) = ZONE_UTC_NAME.captures(text) {
        let whole = captures.get(0)?;
        let name = captures[1].to_ascii_uppercase();
        if name != "Z" || captures[1].starts_with('Z') {
            return Some((Zone::Fixed(FixedOffset::east_opt(0)?), whole.end()));
        }
    }
    if let Some(captures) = ZONE_IANA.captures(text) {
        if let Some(tz) = zone_by_name(&captures[1]) {
            return Some((Zone::Named(tz), captures.get(0)?.end()));
        }
    }
    if let Some(captures) = ZONE_ABBREVIATION.captures(text) {
        let written = &captures[1];
        // Outside parentheses only upper-case abbreviations count ("at", "or", "et"
        // are words).
        if written.chars().all(|c| c.is_ascii_uppercase()) {
            if let Some(zone) = zone_by_abbreviation(written, now, configured) {
                return Some((zone, captures.get(0)?.end()));
            }
        }
    }
    None
}

fn parse_relative_day(text: &str) -> Option<(i64, usize)> {
    let captures = RELATIVE_DAY.captures(text)?;
    let days = if captures[1].eq_ignore_ascii_case("tomorrow") { 1 } else { 0 };
    Some((days, captures.get(0)?.end()))
}

/// An absolute time: RFC 3339 / ISO, `Oct 31, 9am`, `Sep 20th, 2026 4:00 PM`,
/// `Wed, 21 Oct 2015 07:28:00 GMT`, `3:30 PM (Europe/Paris)`, `tomorrow at 9am`,
/// `Friday 9am`, optionally followed by a zone.
fn parse_absolute(text: &str, now: DateTime<Utc>, configured: Tz) -> Option<(DateTime<Utc>, usize)> {
    let fillers = ["at", "on", "around", "about", "approximately", "approx.", "~", ":"];
    let mut position = skip_fillers(text, 0, &fillers);
    let mut date = DateSpec::Unspecified;
    let mut time: Option<NaiveTime> = None;
    let mut zone: Option<Zone> = None;

    if let Some(captures) = ISO_DATETIME.captures(&text[position..]) {
        let number = |index: usize| -> Option<u32> { captures.get(index)?.as_str().parse().ok() };
        let year: i32 = captures[1].parse().ok()?;
        date = DateSpec::Full(NaiveDate::from_ymd_opt(year, number(2)?, number(3)?)?);
        if captures.get(4).is_some() {
            let nanosecond = match captures.get(7) {
                Some(fraction) => {
                    let digits = fraction.as_str();
                    let value: u32 = digits.parse().ok()?;
                    value * 10u32.pow(9 - u32::try_from(digits.len()).ok()?)
                }
                None => 0,
            };
            time = Some(NaiveTime::from_hms_nano_opt(
                number(4)?,
                number(5)?,
                number(6).unwrap_or(0),
                nanosecond,
            )?);
        }
        if let Some(offset) = captures.get(8) {
            let written = offset.as_str();
            zone = if written.eq_ignore_ascii_case("z") {
                Some(Zone::Fixed(FixedOffset::east_opt(0)?))
            } else {
                let digits: String = written[1..].chars().filter(char::is_ascii_digit).collect();
                let minutes = (digits.len() == 4).then(|| &digits[2..]);
                fixed_offset(&written[..1], &digits[..2], minutes)
            };
        }
        position += captures.get(0)?.end();
    } else {
        if let Some((weekday, length)) = parse_weekday(&text[position..]) {
            date = DateSpec::Weekday(weekday);
            position = skip_fillers(text, position + length, &[","]);
        }
        if let Some((days, length)) = parse_relative_day(&text[position..]) {
            date = DateSpec::DaysFromToday(days);
            position += length;
        } else if let Some((calendar, length)) = parse_calendar_date(&text[position..]) {
            date = calendar;
            position += length;
        }
    }

    if time.is_none() {
        let start = skip_fillers(text, position, &[",", "at", "@"]);
        if let Some((clock, length)) = parse_clock(&text[start..]) {
            time = Some(clock);
            position = start + length;
        }
    }
    if zone.is_none() {
        if let Some((found, length)) = parse_zone(&text[position..], now, configured) {
            zone = Some(found);
            position += length;
        }
    }
    if time.is_some() && matches!(date, DateSpec::Unspecified) {
        let start = skip_fillers(text, position, &[",", "on"]);
        let rest = &text[start..];
        let trailing_date = if let Some((days, length)) = parse_relative_day(rest) {
            Some((DateSpec::DaysFromToday(days), length))
        } else if let Some((weekday, length)) = parse_weekday(rest) {
            Some((DateSpec::Weekday(weekday), length))
        } else {
            parse_calendar_date(rest)
        };
        if let Some((found, length)) = trailing_date {
            date = found;
            position = start + length;
            if zone.is_none() {
                if let Some((found, length)) = parse_zone(&text[position..], now, configured) {
                    zone = Some(found);
                    position += length;
                }
            }
        }
    }
    if matches!(date, DateSpec::Unspecified) && time.is_none() {
        return None;
    }

    let zone = zone.unwrap_or(Zone::Named(configured));
    let time = time.unwrap_or(NaiveTime::MIN);
    let today = zone.local(now).date();
    let at = |date: NaiveDate| zone.resolve(date.and_time(time));
    let instant = match date {
        DateSpec::Full(date) => at(date),
        DateSpec::MonthDay(month, day) => (today.year()..=today.year() + 8).find_map(|year| {
            let instant = at(NaiveDate::from_ymd_opt(year, month, day)?)?;
            (instant >= now).then_some(instant)
        }),
        DateSpec::DaysFromToday(days) => at(today.checked_add_signed(Duration::days(days))?),
        DateSpec::Weekday(weekday) => (0..=7).find_map(|days| {
            let date = today.checked_add_signed(Duration::days(days))?;
            if date.weekday() != weekday {
                return None;
            }
            let instant = at(date)?;
            (instant >= now).then_some(instant)
        }),
        DateSpec::Unspecified => (0..=2).find_map(|days| {
            let instant = at(today.checked_add_signed(Duration::days(days))?)?;
            (instant >= now).then_some(instant)
        }),
    }?;
    Some((instant, position))
}

/// Reset headers anywhere in the output, for a hit whose own message states none:
/// `Retry-After` first, then the rate-limit reset of the exhausted kind
/// (`anthropic-ratelimit-tokens-remaining: 0`), else the latest reset header.
fn header_reset(streams: &[&[Line]], now: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    let lines = || {
        streams
            .iter()
            .flat_map(|lines| lines.iter())
            .filter(|line| line.origin != Origin::ToolOutput && !line.text.is_empty())
    };
    let retry_after = lines()
        .filter(|line| RETRY_AFTER.is_match(&line.text) || RETRY_DELAY.is_match(&line.text))
        .filter_map(|line| parse_reset(&line.text, now, zone))
        .next_back();
    if retry_after.is_some() {
        return retry_after;
    }
    let exhausted: Vec<String> = lines()
        .filter_map(|line| EXHAUSTED_KIND.captures(&line.text))
        .filter_map(|captures| captures.get(1).or(captures.get(2)))
        .map(|kind| kind.as_str().to_ascii_lowercase())
        .collect();
    let mut latest: Option<DateTime<Utc>> = None;
    for line in lines() {
        let Some(captures) = RATELIMIT_RESET_KIND.captures(&line.text) else {
            continue;
        };
        let Some(instant) = parse_reset(&line.text, now, zone) else {
            continue;
        };
        let kind = captures
            .get(1)
            .or(captures.get(2))
            .map(|kind| kind.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        if exhausted.contains(&kind) {
            return Some(instant);
        }
        latest = Some(latest.map_or(instant, |latest| latest.max(instant)));
    }
    latest
}

static EXHAUSTED_KIND: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?i)\b(?:x-|anthropic-)?ratelimit-(?:([a-z-]+?)-remaining|remaining-([a-z-]+))["']?\s*:\s*["']?0(?:[^.\d]|$)"#,
    )
});
static RATELIMIT_RESET_KIND: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"(?i)\b(?:x-|anthropic-)?ratelimit-(?:([a-z-]+?)-reset|reset(?:-([a-z-]+))?)["']?\s*:"#)
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Sunday 2025-11-23 10:00 UTC: 12:00 in Jerusalem, 02:00 in Los Angeles.
    const NOW: &str = "2025-11-23T10:00:00Z";
    const ZONE: Tz = chrono_tz::Asia::Jerusalem;

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn now() -> DateTime<Utc> {
        instant(NOW)
    }

    #[derive(Debug, Clone, Copy)]
    enum Expect {
        /// A hit with exactly this reset (RFC 3339), or none.
        Hit(Option<&'static str>),
        /// A hit that time does not fix: no reset, `needs_attention`.
        Attention,
        Server,
        Other,
    }

    use Expect::{Attention, Hit, Other, Server};
    use Profile::{Claude, Gemini, Http, OpenAi};

    /// (what, profile, stdout, exit code, expected); stderr stays empty.
    type Case = (&'static str, Profile, &'static str, Option<i32>, Expect);

    #[rustfmt::skip]
    const CASES: &[Case] = &[
        // --- Claude Code and the Anthropic API ---
        ("claude -p json exits 0 with is_error and an epoch", Claude,
            r#"{"type":"result","subtype":"success","is_error":true,"duration_ms":812,"result":"Claude AI usage limit reached|1747353600","session_id":"4f1c"}"#,
            Some(0), Hit(Some("2025-05-16T00:00:00Z"))),
        ("plain epoch after a pipe", Claude, "Claude AI usage limit reached|1763744400", Some(1),
            Hit(Some("2025-11-21T17:00:00Z"))),
        ("epoch in milliseconds", Claude, "Claude AI usage limit reached|1763913600000", Some(1),
            Hit(Some("2025-11-23T16:00:00Z"))),
        ("is_error false still carries the limit as its result", Claude,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Claude AI usage limit reached|1763913600"}"#,
            Some(0), Hit(Some("2025-11-23T16:00:00Z"))),
        ("zone in parentheses", Claude,
            "Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw).", Some(1),
            Hit(Some("2025-11-23T16:00:00Z"))),
        ("5-hour limit, no zone: the configured zone", Claude, "5-hour limit reached ∙ resets 3pm", Some(1),
            Hit(Some("2025-11-23T13:00:00Z"))),
        ("12pm is noon", Claude, "5-hour limit reached ∙ resets 12pm (America/New_York)", Some(1),
            Hit(Some("2025-11-23T17:00:00Z"))),
        ("12am is midnight, next occurrence", Claude, "Weekly limit reached · resets 12am (UTC)", Some(1),
            Hit(Some("2025-11-24T00:00:00Z"))),
        ("clock time already passed today is tomorrow", Claude, "5-hour limit reached ∙ resets 9am", Some(1),
            Hit(Some("2025-11-24T07:00:00Z"))),
        ("session limit with minutes, passed today", Claude,
            "You've hit your session limit · resets 12:50am (America/Los_Angeles)", Some(1),
            Hit(Some("2025-11-24T08:50:00Z"))),
        ("24-hour clock", Claude, "Session limit reached ∙ resets 15:00 (Europe/Berlin)", Some(1),
            Hit(Some("2025-11-23T14:00:00Z"))),
        ("at h:mm PM", Claude, "Claude usage limit reached · resets at 3:30 PM (Europe/Paris)", Some(1),
            Hit(Some("2025-11-23T14:30:00Z"))),
        ("date without a year, this year", Claude, "Opus weekly limit reached ∙ resets Nov 27, 9am", Some(1),
            Hit(Some("2025-11-27T07:00:00Z"))),
        ("date without a year already passed: next year", Claude,
            "Opus weekly limit reached ∙ resets Oct 31, 9am", Some(1), Hit(Some("2026-10-31T07:00:00Z"))),
        ("out of extra usage with date and zone", Claude,
            "You're out of extra usage · resets Feb 4, 8pm (Europe/Budapest)", Some(1),
            Hit(Some("2026-02-04T19:00:00Z"))),
        ("legacy zone alias", Claude, "You've hit your limit · resets 6pm (Asia/Calcutta)", Some(1),
            Hit(Some("2025-11-23T12:30:00Z"))),
        ("Etc/GMT+5 is UTC-5", Claude, "You've hit your limit · resets 8pm (Etc/GMT+5)", Some(1),
            Hit(Some("2025-11-24T01:00:00Z"))),
        ("relative minutes", Claude, "Usage limit reached · resets in 45 minutes", Some(1),
            Hit(Some("2025-11-23T10:45:00Z"))),
        ("bare limit reached with a reset", Claude,
            "Limit reached · resets 10pm (UTC) · /upgrade to Max or turn on /extra-usage", Some(1),
            Hit(Some("2025-11-23T22:00:00Z"))),
        ("hit without a reset", Claude, "Claude AI usage limit reached", Some(1), Hit(None)),
        ("stream-json rejected event", Claude,
            "{\"type\":\"system\",\"subtype\":\"init\",\"model\":\"claude-sonnet-4\"}\n{\"type\":\"rate_limit_event\",\"rate_limit_info\":{\"status\":\"rejected\",\"resetsAt\":1763917200,\"rateLimitType\":\"five_hour\"}}",
            Some(1), Hit(Some("2025-11-23T17:00:00Z"))),
        ("stream-json allowed event, overage rejected", Claude,
            "{\"type\":\"rate_limit_event\",\"rate_limit_info\":{\"status\":\"allowed\",\"resetsAt\":1763917200,\"overageStatus\":\"rejected\"}}\n{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"Done.\"}",
            Some(0), Other),
        ("stream-json allowed_warning event", Claude,
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed_warning","resetsAt":1763917200,"utilization":0.91}}"#,
            Some(0), Other),
        ("API rate_limit_error body", Claude,
            r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization (4f1c) of 50,000 input tokens per minute."}}"#,
            Some(1), Hit(None)),
        ("Python SDK dict repr", Claude,
            "anthropic.RateLimitError: Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error', 'message': 'Number of request tokens has exceeded your per-minute rate limit'}}",
            Some(1), Hit(None)),
        ("anthropic reset header of the exhausted kind", Claude,
            "HTTP/1.1 429 Too Many Requests\nanthropic-ratelimit-requests-remaining: 48\nanthropic-ratelimit-tokens-remaining: 0\nanthropic-ratelimit-requests-reset: 2025-11-23T10:00:30Z\nanthropic-ratelimit-tokens-reset: 2025-11-23T10:01:00Z\n\n{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Rate limited\"}}",
            Some(22), Hit(Some("2025-11-23T10:01:00Z"))),
        ("credit balance too low", Claude,
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            Some(1), Attention),
        ("monthly spend limit", Claude,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified API usage limits. You will regain access on 2025-12-01 at 00:00 UTC."}}"#,
            Some(1), Attention),
        ("529 overloaded", Claude,
            r#"API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            Some(1), Server),
        ("500 that says rate limited", Claude,
            r#"API Error: 500 {"type":"error","error":{"type":"api_error","message":"Internal server error"}} (not your usage limit) · Rate limited"#,
            Some(1), Server),
        ("500 inside an is_error result of an exit-0 run", Claude,
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 500 {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error: rate limit exceeded upstream\"}}"}"#,
            Some(0), Server),
        ("pretty-printed 500 whose body mentions the rate limit", Http,
            "{\n  \"type\": \"error\",\n  \"error\": {\n    \"type\": \"api_error\",\n    \"message\": \"Rate limit exceeded while contacting upstream\"\n  }\n}",
            Some(1), Server),
        ("successful result that discusses errors", Claude,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"I fixed the retry loop: on API Error: 500 or a rate_limit_error we now wait, and when the usage limit is reached we stop."}"#,
            Some(0), Other),
        ("warning before the limit", Claude, "Approaching usage limit · resets at 5pm", Some(1), Other),
        ("percentage warning", Claude, "You've used 90% of your weekly limit · resets Oct 31, 9am", Some(1), Other),
        ("model fallback", Claude, "Opus 4 limit reached, now using Sonnet 4", Some(0), Other),
        ("status panel", Claude,
            "Current session\n█████████████████████████ 100% used\nResets 2:20pm (Europe/Paris)\nCurrent week (all models)\n███ 6% used\nResets Oct 31, 9am",
            Some(0), Other),
        ("client retry countdown", Claude,
            r#"  ⎿  API Error (429 {"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}}) · Retrying in 4 seconds… (attempt 4/10)"#,
            Some(0), Other),
        ("prose mentioning rate limits", Http,
            "I added exponential backoff so the client handles HTTP 429 Too Many Requests and rate limit exceeded responses gracefully.",
            Some(0), Other),
        ("prose quoting a limit message", Claude,
            "When the CLI says \"Claude AI usage limit reached\" the wrapper waits for the reset.", Some(0), Other),
        ("prose with a quoted log line", Http,
            "I checked the logs: \"Rate limit exceeded\" appears 14 times yesterday.", Some(0), Other),
        ("markdown list item in a result", Http, "- Rate limit exceeded → retry with backoff", Some(0), Other),
        ("prose about a fixed error", Gemini, "Fixed: the quota exceeded error no longer crashes the worker.", Some(0), Other),
        ("a request too large for the limit is the item's failure", OpenAi,
            "openai.RateLimitError: Error code: 429 - {'error': {'message': 'Request too large for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Requested 45000. The input or output tokens must be reduced in order to run successfully.', 'type': 'tokens', 'param': None, 'code': 'rate_limit_exceeded'}}",
            Some(1), Other),
        ("context limit is not quota", Claude, "Context limit reached · /compact or /clear to continue", Some(1), Other),
        ("mojibake separator", Claude, "5-hour limit reached Â· resets 3pm", Some(1),
            Hit(Some("2025-11-23T13:00:00Z"))),
        ("literal \\u00b7 in a JSON string", Claude,
            r#"{"type":"result","is_error":true,"result":"You\u2019ve hit your limit \u00b7 resets 3pm (Europe/London)"}"#,
            Some(0), Hit(Some("2025-11-23T15:00:00Z"))),
        ("ANSI codes and gutter glyphs", Claude,
            "\u{1b}[31m⏺\u{1b}[0m \u{1b}[1mClaude usage limit reached.\u{1b}[22m Your limit will reset at 5pm (Europe/Warsaw).\u{1b}]8;;\u{7}",
            Some(1), Hit(Some("2025-11-23T16:00:00Z"))),
        ("wrapped inside the zone name", Claude,
            "You've hit your session limit · resets 12:50am (America/Los_\nAngeles)", Some(1),
            Hit(Some("2025-11-24T08:50:00Z"))),
        ("wrapped inside the phrase", Claude, "Claude AI usage lim\nit reached|1763744400", Some(1),
            Hit(Some("2025-11-21T17:00:00Z"))),
        ("wrapped between keyword and time", Claude, "5-hour limit reached ∙ resets\n3pm", Some(1),
            Hit(Some("2025-11-23T13:00:00Z"))),
        ("JSON string with embedded newlines", Claude,
            r#"{"type":"result","is_error":true,"result":"Claude usage limit reached.\nYour limit will reset at 5pm\n(Europe/Warsaw)."}"#,
            Some(0), Hit(Some("2025-11-23T16:00:00Z"))),
        ("curly apostrophe", Claude, "You’ve hit your session limit · resets 8pm", Some(1),
            Hit(Some("2025-11-23T18:00:00Z"))),
        // --- OpenAI API, Codex CLI, Copilot CLI ---
        ("OpenAI TPM limit with a retry delay", OpenAi,
            "openai.RateLimitError: Error code: 429 - {'error': {'message': 'Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29500, Requested 1200. Please try again in 1.4s. Visit https://platform.openai.com/account/rate-limits to learn more.', 'type': 'tokens', 'param': None, 'code': 'rate_limit_exceeded'}}",
            Some(1), Hit(Some("2025-11-23T10:00:01.4Z"))),
        ("milliseconds", OpenAi,
            r#"{"error":{"message":"Rate limit reached for requests. Please try again in 644ms.","type":"requests","code":"rate_limit_exceeded"}}"#,
            Some(1), Hit(Some("2025-11-23T10:00:00.644Z"))),
        ("fractional seconds", OpenAi,
            "Error: 429 Rate limit reached for gpt-4.1-mini on requests per min (RPM): Limit 500. Please try again in 3.89s.",
            Some(1), Hit(Some("2025-11-23T10:00:03.89Z"))),
        ("insufficient_quota needs attention", OpenAi,
            "Error code: 429 - {'error': {'message': 'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.', 'type': 'insufficient_quota', 'param': None, 'code': 'insufficient_quota'}}",
            Some(1), Attention),
        ("current quota without the code still needs attention on openai", OpenAi,
            "You exceeded your current quota, please check your plan and billing details.", Some(1), Attention),
        ("billing hard limit", OpenAi,
            r#"{"error":{"message":"Billing hard limit has been reached","type":"invalid_request_error","code":"billing_hard_limit_reached"}}"#,
            Some(1), Attention),
        ("insufficient credits", OpenAi,
            "openai.APIStatusError: Error code: 402 - {'error': {'message': 'Insufficient credits. Add more using https://openrouter.ai/settings/credits'}}",
            Some(1), Attention),
        ("Codex days hours minutes", OpenAi,
            "■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in 2 days 17 hours 14 minutes.",
            Some(1), Hit(Some("2025-11-26T03:14:00Z"))),
        ("Codex clock time in the host zone", OpenAi,
            "You've hit your usage limit. Visit https://chatgpt.com/codex/settings/usage to purchase more credits or try again at 6:44 PM.",
            Some(1), Hit(Some("2025-11-23T16:44:00Z"))),
        ("Codex date with ordinal and year", OpenAi,
            "You've hit your usage limit. To get more access now, send a request to your admin or try again at Sep 20th, 2026 4:00 PM.",
            Some(1), Hit(Some("2026-09-20T13:00:00Z"))),
        ("Codex structured usage limit", OpenAi,
            r#"stream error: unexpected status 429 Too Many Requests: {"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_in_seconds":3600}}"#,
            Some(1), Hit(Some("2025-11-23T11:00:00Z"))),
        ("Codex retry exhaustion", OpenAi,
            "ERROR: stream error: exceeded retry limit, last status: 429 Too Many Requests, request id: 9a1f",
            Some(1), Hit(None)),
        ("Codex usage warning", OpenAi,
            "⚠ Heads up, you've used over 75% of your 5h limit. Run /status for a breakdown.", Some(0), Other),
        ("Codex retrying", OpenAi,
            "⚠️ stream error: exceeded retry limit, last status: 429 Too Many Requests; retrying 3/5 in 1.6s…",
            Some(0), Other),
        ("OpenAI server_error", OpenAi,
            r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
            Some(1), Server),
        ("OpenAI overloaded 503", OpenAi,
            "Error code: 503 - That model is currently overloaded with other requests. You can retry your request.",
            Some(1), Server),
        ("Copilot hours and minutes", OpenAi,
            "Sorry, you've hit a rate limit that restricts the number of Copilot model requests you can make within a specific time period. Please try again in 15 hours 23 minutes.",
            Some(1), Hit(Some("2025-11-24T01:23:00Z"))),
        // --- Gemini API and Gemini CLI ---
        ("Gemini API quota with retry delay", Gemini,
            "{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, model: gemini-2.5-flash\\nPlease retry in 38.804097346s.\",\n    \"status\": \"RESOURCE_EXHAUSTED\",\n    \"details\": [\n      {\n        \"@type\": \"type.googleapis.com/google.rpc.RetryInfo\",\n        \"retryDelay\": \"38s\"\n      }\n    ]\n  }\n}",
            Some(1), Hit(Some("2025-11-23T10:00:38.804097346Z"))),
        ("Gemini limit: 0 needs attention", Gemini,
            r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_input_token_count, limit: 0, model: gemini-2.5-pro\nPlease retry in 19.2s.","status":"RESOURCE_EXHAUSTED"}}"#,
            Some(1), Attention),
        ("Gemini model capacity is a server error", Gemini,
            r#"{"error":{"code":429,"message":"No capacity available for model gemini-2.5-pro on the server","errors":[{"message":"No capacity available for model gemini-2.5-pro on the server","domain":"global","reason":"rateLimitExceeded"}],"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"MODEL_CAPACITY_EXHAUSTED","domain":"cloudcode-pa.googleapis.com"}]}}"#,
            Some(1), Server),
        ("Gemini 503 overloaded", Gemini,
            r#"[API Error: got status: 503 Service Unavailable. {"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}]"#,
            Some(1), Server),
        ("Gemini CLI quota reset after", Gemini,
            "✕ [API Error: You have exhausted your capacity on this model. Your quota will reset after 8h44m7s.]",
            Some(1), Hit(Some("2025-11-23T18:44:07Z"))),
        ("Gemini CLI access resets with abbreviation", Gemini,
            "Usage limit reached for all Pro models. Access resets at 2:55 PM PST. /stats for usage details.",
            Some(1), Hit(Some("2025-11-23T22:55:00Z"))),
        ("Gemini CLI fallback on the next line", Gemini,
            "⚡ You have reached your daily gemini-2.5-pro quota limit.\n⚡ Automatically switching from gemini-2.5-pro to gemini-2.5-flash for the remainder of this session.",
            Some(0), Other),
        ("gRPC resource exhausted", Gemini,
            "google.api_core.exceptions.ResourceExhausted: 429 Quota exceeded for quota metric 'Generate Content API requests per minute' and limit 'GenerateContent request limit per minute for a region'",
            Some(1), Hit(None)),
        ("Gemini JSON escaped inside an API Error", Gemini,
            r#"[API Error: {"error":{"message":"{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"Resource has been exhausted (e.g. check quota).\",\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}\n","code":429,"status":"Too Many Requests"}}]"#,
            Some(1), Hit(None)),
        ("billing words are not attention on gemini", Gemini,
            "You exceeded your current quota, please check your plan and billing details. Please retry in 20s.",
            Some(1), Hit(Some("2025-11-23T10:00:20Z"))),
        // --- generic HTTP ---
        ("429 with Retry-After seconds", Http, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\n\r\n",
            Some(22), Hit(Some("2025-11-23T10:02:00Z"))),
        ("429 with Retry-After HTTP-date", Http,
            "HTTP/2 429\nretry-after: Sun, 23 Nov 2025 11:00:00 GMT\ncontent-type: application/json",
            Some(22), Hit(Some("2025-11-23T11:00:00Z"))),
        ("bare 429", Http, "curl: (22) The requested URL returned error: 429 Too Many Requests", Some(22), Hit(None)),
        ("GitHub rate limit with an epoch header", Http,
            "HTTP/2 403\nx-ratelimit-remaining: 0\nx-ratelimit-reset: 1763917200\n\n{\"message\":\"API rate limit exceeded for user ID 1.\"}",
            Some(1), Hit(Some("2025-11-23T17:00:00Z"))),
        ("throttled with available in", Http,
            r#"{"detail":"Request was throttled. Expected available in 37 seconds."}"#, Some(1),
            Hit(Some("2025-11-23T10:00:37Z"))),
        ("503 whose body mentions rate limits", Http,
            "HTTP/1.1 503 Service Unavailable\n\n{\"error\":\"upstream rate limit exceeded\"}", Some(1), Server),
        ("reset as RFC 3339", Http, "Error: rate limited; reset at 2025-11-23T12:30:00+01:00", Some(1),
            Hit(Some("2025-11-23T11:30:00Z"))),
        ("ordinary failure", Http, "Error: ENOENT: no such file or directory, open 'input.json'", Some(1), Other),
        ("a count of 429 is not a status", Http, "Processed 429 items in 12s", Some(0), Other),
    ];

    /// `None` when the outcome is what the case expects, else what went wrong.
    fn mismatch(case: &Case, outcome: &Outcome) -> Option<String> {
        let &(name, _, _, _, expect) = case;
        let matches = match (expect, outcome) {
            (Hit(expected), Outcome::QuotaHit(hit)) => {
                !hit.needs_attention && hit.reset == expected.map(instant)
            }
            (Attention, Outcome::QuotaHit(hit)) => hit.needs_attention && hit.reset.is_none(),
            (Server, Outcome::ServerError { matched_line }) => !matched_line.is_empty(),
            (Other, Outcome::Other) => true,
            _ => false,
        };
        let well_formed = match outcome {
            Outcome::QuotaHit(hit) => {
                !hit.matched_line.is_empty() && hit.matched_line.chars().count() <= MATCHED_LINE_MAX_CHARS
            }
            _ => true,
        };
        (!matches || !well_formed).then(|| format!("{name}: expected {expect:?}, got {outcome:?}"))
    }

    #[test]
    fn classifies_real_world_messages() {
        assert!(CASES.len() >= 60, "only {} cases", CASES.len());
        let mut failures = Vec::new();
        for case in CASES {
            let &(_, profile, stdout, exit_code, _) = case;
            let outcome = Classifier::new(profile, &[], &[]).unwrap().classify(
                stdout.as_bytes(),
                b"",
                exit_code,
                now(),
                ZONE,
            );
            failures.extend(mismatch(case, &outcome));
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn reads_the_limit_from_stderr_too() {
        let outcome = classify(Claude, b"", b"Error: Claude AI usage limit reached|1763744400\n", Some(1));
        assert!(matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(reset), .. })
            if reset == instant("2025-11-21T17:00:00Z")));
    }

    #[rustfmt::skip]
    #[test]
    fn parses_every_reset_form() {
        let cases: &[(&str, Tz, &str, Option<&str>)] = &[
            // Relative offsets are added to the instant the output was printed.
            (NOW, ZONE, "try again in 20s", Some("2025-11-23T10:00:20Z")),
            (NOW, ZONE, "resets in 45 minutes", Some("2025-11-23T10:45:00Z")),
            (NOW, ZONE, "retry in 56.2s", Some("2025-11-23T10:00:56.2Z")),
            (NOW, ZONE, "Please try again in 3.89s.", Some("2025-11-23T10:00:03.89Z")),
            (NOW, ZONE, "Please try again in 644ms.", Some("2025-11-23T10:00:00.644Z")),
            (NOW, ZONE, "try again in 2 days 17 hours 14 minutes.", Some("2025-11-26T03:14:00Z")),
            (NOW, ZONE, "Please try again in 15 hours 23 minutes.", Some("2025-11-24T01:23:00Z")),
            (NOW, ZONE, "Your quota will reset after 8h44m7s.", Some("2025-11-23T18:44:07Z")),
            (NOW, ZONE, "Please retry in 38.804097346s.", Some("2025-11-23T10:00:38.804097346Z")),
            (NOW, ZONE, "try again in an hour", Some("2025-11-23T11:00:00Z")),
            (NOW, ZONE, "Please wait 60 seconds.", Some("2025-11-23T10:01:00Z")),
            (NOW, ZONE, "Retry-After: 120", Some("2025-11-23T10:02:00Z")),
            (NOW, ZONE, "retry-after-ms: 1500", Some("2025-11-23T10:00:01.5Z")),
            (NOW, ZONE, "x-ratelimit-reset-tokens: 6m0s", Some("2025-11-23T10:06:00Z")),
            (NOW, ZONE, r#""retryDelay": "38s""#, Some("2025-11-23T10:00:38Z")),
            (NOW, ZONE, r#"{"type":"usage_limit_reached","resets_in_seconds":3600}"#, Some("2025-11-23T11:00:00Z")),
            // A client's own countdown is never a reset.
            (NOW, ZONE, "Retrying in 4 seconds... (attempt 4/10)", None),
            (NOW, ZONE, "retry in 5 seconds (attempt 2/10)", None),
            (NOW, ZONE, "resets soon", None),
            (NOW, ZONE, "Resets: unknown", None),
            // Epochs, seconds or milliseconds.
            (NOW, ZONE, "Claude AI usage limit reached|1763744400", Some("2025-11-21T17:00:00Z")),
            (NOW, ZONE, "Claude AI usage limit reached|1763913600000", Some("2025-11-23T16:00:00Z")),
            (NOW, ZONE, r#"{"status":"rejected","resetsAt":1763917200}"#, Some("2025-11-23T17:00:00Z")),
            (NOW, ZONE, "x-ratelimit-reset: 1763917200", Some("2025-11-23T17:00:00Z")),
            // Timestamps.
            (NOW, ZONE, "anthropic-ratelimit-tokens-reset: 2025-11-23T10:01:00Z", Some("2025-11-23T10:01:00Z")),
            (NOW, ZONE, "rate limited until 2025-11-23T12:00:00.5+01:00", Some("2025-11-23T11:00:00.5Z")),
            (NOW, ZONE, "Retry-After: Sun, 23 Nov 2025 11:00:00 GMT", Some("2025-11-23T11:00:00Z")),
            (NOW, ZONE, "You will regain access on 2025-12-01 at 00:00 UTC.", Some("2025-12-01T00:00:00Z")),
            // Clock times: next occurrence, in the configured zone unless the message names one.
            (NOW, ZONE, "resets 8pm", Some("2025-11-23T18:00:00Z")),
            (NOW, ZONE, "resets 5 p.m.", Some("2025-11-23T15:00:00Z")),
            (NOW, ZONE, "resets 12am", Some("2025-11-23T22:00:00Z")),
            (NOW, ZONE, "resets 12pm (UTC)", Some("2025-11-23T12:00:00Z")),
            (NOW, ZONE, "resets 15:00", Some("2025-11-23T13:00:00Z")),
            (NOW, ZONE, "resets 12:50am", Some("2025-11-23T22:50:00Z")),
            (NOW, ZONE, "resets 9am", Some("2025-11-24T07:00:00Z")),
            (NOW, ZONE, "Resets 2:20pm", Some("2025-11-23T12:20:00Z")),
            (NOW, ZONE, "resets at 3:30 PM (Europe/Paris)", Some("2025-11-23T14:30:00Z")),
            (NOW, ZONE, "try again at 6:44 PM.", Some("2025-11-23T16:44:00Z")),
            (NOW, ZONE, "Access resets at 2:55 PM PST.", Some("2025-11-23T22:55:00Z")),
            (NOW, ZONE, "Access resets at 12:00 AM PDT.", Some("2025-11-24T07:00:00Z")),
            (NOW, ZONE, "resets 9am EST", Some("2025-11-23T14:00:00Z")),
            (NOW, ZONE, "resets 5pm CET", Some("2025-11-23T16:00:00Z")),
            (NOW, ZONE, "resets 5pm GMT", Some("2025-11-23T17:00:00Z")),
            (NOW, ZONE, "resets 5pm (UTC+2)", Some("2025-11-23T15:00:00Z")),
            (NOW, ZONE, "resets 8pm (Etc/GMT+5)", Some("2025-11-24T01:00:00Z")),
            (NOW, ZONE, "resets 6pm (Asia/Calcutta)", Some("2025-11-23T12:30:00Z")),
            (NOW, ZONE, "resets 6pm (asia/kolkata)", Some("2025-11-23T12:30:00Z")),
            // IST is Israel's in Jerusalem, India's elsewhere.
            (NOW, ZONE, "resets 4pm IST", Some("2025-11-23T14:00:00Z")),
            (NOW, chrono_tz::UTC, "resets 4pm IST", Some("2025-11-23T10:30:00Z")),
            (NOW, ZONE, "resets tomorrow at 9am", Some("2025-11-24T07:00:00Z")),
            (NOW, ZONE, "resets Mon 9am", Some("2025-11-24T07:00:00Z")),
            (NOW, ZONE, "resets at midnight", Some("2025-11-23T22:00:00Z")),
            // Dates: a date without a year is its next occurrence.
            (NOW, ZONE, "resets Nov 27, 9am", Some("2025-11-27T07:00:00Z")),
            (NOW, ZONE, "resets 9am on Nov 27", Some("2025-11-27T07:00:00Z")),
            (NOW, ZONE, "resets Nov 28 at 4pm (Asia/Tokyo)", Some("2025-11-28T07:00:00Z")),
            (NOW, ZONE, "resets Oct 31, 9am", Some("2026-10-31T07:00:00Z")),
            (NOW, ZONE, "resets Feb 4, 8pm (Europe/Budapest)", Some("2026-02-04T19:00:00Z")),
            (NOW, ZONE, "try again at Sep 20th, 2026 4:00 PM.", Some("2026-09-20T13:00:00Z")),
            ("2025-12-30T12:00:00Z", ZONE, "resets Jan 2, 9am", Some("2026-01-02T07:00:00Z")),
            ("2025-12-31T23:30:00Z", chrono_tz::UTC, "resets 12am", Some("2026-01-01T00:00:00Z")),
            // DST: the zone's offset on the day of the reset, not on the day of the message.
            ("2025-03-29T22:30:00Z", ZONE, "resets 10am (Europe/Paris)", Some("2025-03-30T08:00:00Z")),
            ("2025-03-08T20:00:00Z", ZONE, "resets 9am (America/Los_Angeles)", Some("2025-03-09T16:00:00Z")),
            ("2025-03-08T20:00:00Z", chrono_tz::America::Los_Angeles, "resets 9am", Some("2025-03-09T16:00:00Z")),
            // 02:30 does not exist on 2025-03-30 in Paris: the first valid instant after it.
            ("2025-03-29T23:30:00Z", ZONE, "resets 2:30am (Europe/Paris)", Some("2025-03-30T01:00:00Z")),
            // 02:30 happens twice on 2025-10-26 in Paris: the earlier one.
            ("2025-10-25T22:00:00Z", ZONE, "resets 2:30am (Europe/Paris)", Some("2025-10-26T00:30:00Z")),
        ];
        let mut failures = Vec::new();
        for &(printed_at, zone, line, expected) in cases {
            let parsed = parse_reset(line, instant(printed_at), zone);
            if parsed != expected.map(instant) {
                failures.push(format!("{line:?} at {printed_at}: expected {expected:?}, got {parsed:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    fn classify(profile: Profile, stdout: &[u8], stderr: &[u8], exit_code: Option<i32>) -> Outcome {
        Classifier::new(profile, &[], &[]).unwrap().classify(stdout, stderr, exit_code, now(), ZONE)
    }

    #[test]
    fn finds_the_hit_at_the_end_of_huge_output() {
        let mut stdout = Vec::with_capacity(11 << 20);
        while stdout.len() < 10 << 20 {
            stdout.extend_from_slice(b"item 429: API Error: 500, rate limits are fine, retrying\n");
        }
        stdout.extend_from_slice("Claude AI usage limit reached|1763744400\n".as_bytes());
        let outcome = classify(Claude, &stdout, b"", Some(1));
        assert_eq!(
            outcome,
            Outcome::QuotaHit(QuotaHit {
                reset: Some(instant("2025-11-21T17:00:00Z")),
                matched_line: "Claude AI usage limit reached|1763744400".to_string(),
                needs_attention: false,
            })
        );
    }

    #[test]
    fn survives_non_utf8_bytes() {
        let stdout = b"\xff\xfe\x00garbage \xc3\x28 \x80\n5-hour limit reached \xe2\x88\x99 resets 3pm\xff\n";
        let outcome = classify(Claude, stdout, b"\xc0\xc1", Some(1));
        let Outcome::QuotaHit(hit) = outcome else {
            panic!("expected a hit, got {outcome:?}");
        };
        assert_eq!(hit.reset, Some(instant("2025-11-23T13:00:00Z")));
        assert!(hit.matched_line.starts_with("5-hour limit reached · resets 3pm"));
    }

    #[test]
    fn a_retried_server_error_does_not_hide_the_final_quota_error() {
        let stderr = "Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"No capacity available for model gemini-2.5-pro on the server\",\n    \"status\": \"RESOURCE_EXHAUSTED\",\n    \"details\": [{\"reason\": \"MODEL_CAPACITY_EXHAUSTED\"}]\n  }\n}\n]\nTerminalQuotaError: You have exhausted your daily quota on this model.\n";
        let outcome = classify(Gemini, b"", stderr.as_bytes(), Some(1));
        assert!(
            matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: None, needs_attention: false, .. })),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_successful_run_ignores_retries_on_stderr() {
        let stderr = "Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"Resource has been exhausted (e.g. check quota).\",\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}\n]\nQuota exceeded for quota metric 'Gemini 2.5 Pro Requests'\n";
        let outcome = classify(Gemini, b"The summary of the document is ...\n", stderr.as_bytes(), Some(0));
        assert_eq!(outcome, Outcome::Other);
    }

    #[test]
    fn tool_output_inside_stream_json_is_not_our_limit() {
        let stdout = concat!(
            r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_1","type":"tool_result","content":"HTTP/1.1 429 Too Many Requests\nRetry-After: 30"}]}}"#,
            "\n",
            r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_2","type":"tool_result","content":"HTTP/1.1 500 Internal Server Error"}]}}"#,
            "\n",
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"result":"Reached max turns"}"#,
        );
        assert_eq!(classify(Claude, stdout.as_bytes(), b"", Some(1)), Outcome::Other);
    }

    #[test]
    fn matched_line_keeps_the_match_of_a_long_line() {
        let stdout = format!(
            "{} Error: Claude AI usage limit reached|1763744400 {}",
            "x".repeat(3000),
            "y".repeat(3000)
        );
        let Outcome::QuotaHit(hit) = classify(Claude, stdout.as_bytes(), b"", Some(1)) else {
            panic!("expected a hit");
        };
        assert!(hit.matched_line.contains("usage limit reached|1763744400"), "{}", hit.matched_line);
        assert!(hit.matched_line.chars().count() <= MATCHED_LINE_MAX_CHARS);
    }

    #[test]
    fn extra_patterns_extend_the_profile() {
        let classifier = Classifier::new(
            Http,
            &[r"credits? (?:are )?exhausted".to_string()],
            &[r"maintenance window".to_string()],
        )
        .unwrap();
        let classify =
            |stdout: &str, exit_code| classifier.classify(stdout.as_bytes(), b"", exit_code, now(), ZONE);
        assert!(matches!(
            classify("job 12: Credits exhausted, try again in 10 minutes", Some(3)),
            Outcome::QuotaHit(QuotaHit { reset: Some(reset), .. }) if reset == instant("2025-11-23T10:10:00Z")
        ));
        assert!(matches!(
            classify("Maintenance window: rate limit exceeded, come back later", Some(1)),
            Outcome::ServerError { .. }
        ));
        assert_eq!(classify("Maintenance window: rate limit exceeded", Some(0)), Outcome::Other);
    }

    #[test]
    fn bad_extra_patterns_are_named() {
        let error = Classifier::new(Claude, &["(unclosed".to_string()], &[]).unwrap_err();
        assert!(error.contains("quota_patterns") && error.contains("\"(unclosed\""), "{error}");
        let veto = ["maintenance".to_string(), "[z-a]".to_string()];
        let error = Classifier::new(Claude, &[], &veto).unwrap_err();
        assert!(error.contains("veto_patterns") && error.contains("\"[z-a]\""), "{error}");
        let error = Classifier::new(Claude, &["  ".to_string()], &[]).unwrap_err();
        assert!(error.contains("empty quota_patterns entry"), "{error}");
    }

    #[test]
    fn profiles_parse_by_name() {
        for profile in Profile::ALL {
            assert_eq!(profile.name().parse::<Profile>(), Ok(profile));
            assert_eq!(profile.name().to_uppercase().parse::<Profile>(), Ok(profile));
            assert_eq!(profile.to_string(), profile.name());
        }
        assert_eq!(
            "anthropic".parse::<Profile>(),
            Err("unknown quota profile \"anthropic\"; accepted: claude, openai, gemini, http".to_string())
        );
    }

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
    fn only_the_tail_of_each_stream_is_read() {
        let mut stdout = b"Claude AI usage limit reached|1763744400\n".to_vec();
        stdout.resize(stdout.len() + TAIL_BYTES, b'.');
        assert_eq!(classify(Claude, &stdout, b"", Some(1)), Outcome::Other);
    }

    #[test]
    fn built_in_patterns_compile() {
        assert!(!QUOTA_PATTERNS.is_empty());
        let patterns: [&Regex; 39] = [
            &HIT_HINT,
            &JSON_EVENT_TYPE,
            &TOOL_ITEM,
            &IS_ERROR_TRUE,
            &IS_ERROR_FALSE,
            &ERROR_OBJECT,
            &SERVER_ERROR,
            &COUNTDOWN,
            &WARNING,
            &FALLBACK,
            &FALLBACK_FOLLOWING,
            &OVERSIZED_REQUEST,
            &RATE_LIMIT_EVENT,
            &STATUS_REJECTED,
            &NEEDS_ATTENTION,
            &BILLING_MENTION,
            &EXCLUDED_LIMIT_KINDS,
            &MARKDOWN_ITEM,
            &EPOCH_AFTER_PIPE,
            &RESET_KEY,
            &RETRY_AFTER,
            &RATELIMIT_RESET_HEADER,
            &RETRY_DELAY,
            &RESET_KEYWORD,
            &RESET_IN_KEY,
            &ISO_DATETIME,
            &MONTH_DAY,
            &DAY_MONTH,
            &WEEKDAY,
            &RELATIVE_DAY,
            &CLOCK,
            &NOON_MIDNIGHT,
            &ZONE_PARENTHESIZED,
            &ZONE_UTC_OFFSET,
            &ZONE_UTC_NAME,
            &ZONE_IANA,
            &ZONE_ABBREVIATION,
            &EXHAUSTED_KIND,
            &RATELIMIT_RESET_KIND,
        ];
        assert!(patterns.iter().all(|pattern| !pattern.as_str().is_empty()));
    }
}
