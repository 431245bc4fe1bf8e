//! Clients that wait for a reset by themselves. gemini-cli, told its quota resets in
//! hours, prints `Retrying after 31733994ms...` and sleeps; codex prints `Reconnecting...
//! 1/2 (… Please try again in 1.662s …)` before a retry. The worker watches every output
//! line with [`announced_wait`] while the client runs and stops a client announcing a
//! long wait at once; [`client_wait_hit`] turns that stop into a quota hit. The zone a
//! zone-less wall-clock time is read in is the worker's own ([`worker_zone`]).
//! For users: docs/rate-limits.md, "Clients that wait for the reset".

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use regex::Regex;

use super::patterns::{compile, FILESYSTEM_QUOTA};
use super::reset::parse_stated_reset;
use super::{Outcome, QuotaHit};
use crate::backoff::{ResetForm, StatedReset};

/// A retry notice with its wait: `Retrying after 31733994ms...`, `Retrying in 4
/// seconds… (attempt 4/10)`, `Reconnecting... 1/2 (… Please try again in 1.662s …)`.
/// The notice must open the line or a sentence, so prose ("we kept waiting for 5
/// minutes") is not taken for one.
static ANNOUNCED_WAIT: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?ix)
          (?: ^ | [.:;!?…"(·] ) \s* (?:retrying|reconnecting)\b .*?
          \b(?:after|in|for)\s+
          ([0-9]{1,12}(?:\.[0-9]{1,9})?)\s*
          (?:milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b
        "#,
    )
});

/// Claude Code's stream-json notice of a request it retries after a rate limit, with its
/// wait: `{"type":"system","subtype":"api_retry",…,"retry_delay_ms":3600000,
/// "error_status":429,"error":"rate_limit"}` — it names the limit itself.
static API_RETRY_FOR_A_LIMIT: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#""subtype"\s*:\s*"api_retry".*(?:"error"\s*:\s*"rate_limit"|"error_status"\s*:\s*429\b)"#)
});
static API_RETRY_DELAY: LazyLock<Regex> =
    LazyLock::new(|| compile(r#""retry_delay_ms"\s*:\s*([0-9]{1,15}(?:\.[0-9]{1,9})?)"#));

/// Lines that carry the item's content (a result, an assistant message, a tool's output)
/// never announce the client's own wait.
static CONTENT_LINE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"(?i)"type"\s*:\s*"(?:assistant|user|result|item\.completed|tool_result|message)""#)
});

/// Words of a limit: a retry notice counts as the client waiting for its quota only
/// when it, or a line just before it, says so. `database is locked. Retrying in 2
/// minutes.` is not a limit, nor is it after `Imported 429 rows` or `storage quota: 12%
/// used`, nor `Job 429: started`: a 429 counts as a status (`HTTP 429`, `status: 429`,
/// `error (429`, `429 Too Many`), a quota when it is exceeded, exhausted, reached, out,
/// insufficient or resets.
static LIMIT_WORDING: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?ix)
          \b(?:http(?:/[0-9.]+|error)?|status(?:[\s_]?code)?|code|error|response)\W{0,3}429\b
        | \b429\W{0,3}(?:too\W+many\b|error\b|status\b)
        | quota\W{0,3}(?:\w+\W{1,3}){0,2}?(?:exceeded|exhausted|reached|limit|will\s+reset|resets?)\b
        | \b(?:exceeded|exhausted|reached|out\s+of|insufficient)\W{0,3}(?:\w+\W{1,3}){0,3}?quota
        | insufficient_quota
        | rate[\s_-]?limit
        | \blimit\s+(?:reached|exceeded|hit)\b
        | \b(?:usage|session|weekly|daily|hourly|request|token)s?[\s_-]limits?\b
        | too[\s_]many[\s_]requests
        | throttl
        | resource[\s_]?exhausted
        | \bexhausted\s+(?:your|the|its)\b
        ",
    )
});

/// The wait a client announces on `line` before retrying by itself, if it names one and
/// `line` or one of the `before` lines (the lines of its stream just before it) has limit
/// wording (docs/rate-limits.md, "Clients that wait for the reset").
pub(crate) fn announced_wait(line: &str, before: &[String]) -> Option<Duration> {
    if API_RETRY_FOR_A_LIMIT.is_match(line) {
        let delay: f64 = API_RETRY_DELAY.captures(line)?.get(1)?.as_str().parse().ok()?;
        return Duration::try_from_secs_f64(delay / 1000.0).ok();
    }
    if CONTENT_LINE.is_match(line) {
        return None;
    }
    let captures = ANNOUNCED_WAIT.captures_iter(line).last()?;
    // A file system's quota (`Disk quota exceeded`) is the host's, no vendor's limit.
    let is_limit = |text: &str| LIMIT_WORDING.is_match(text) && !FILESYSTEM_QUOTA.is_match(text);
    let names_a_limit =
        is_limit(line) || before.iter().any(|earlier| !CONTENT_LINE.is_match(earlier) && is_limit(earlier));
    if !names_a_limit {
        return None;
    }
    // Read on from its first part as a stated reset's wait is: `1m 50s` is a minute and
    // fifty seconds, as Claude Code writes its waits.
    let (nanoseconds, _) = super::reset::parse_duration(&line[captures.get(1)?.start()..])?;
    Some(Duration::from_nanos(u64::try_from(nanoseconds).ok()?))
}

/// The first wait longer than `limit` announced in a captured `output`, with its line:
/// the output read line by line by `reader`, as the worker runner reads a running
/// client's stream (`drainctl quota test`; docs/rate-limits.md, "Clients that wait for
/// the reset").
pub(crate) fn long_announced_wait(
    output: &[u8],
    limit: Duration,
    reader: &mut StreamWaits<'_>,
) -> Option<(String, Duration)> {
    let text = String::from_utf8_lossy(output);
    text.split('\n').find_map(|line| {
        reader.read(line).filter(|wait| *wait > limit).map(|wait| (reader.announcement(line), wait))
    })
}

/// How many of a stream's latest lines a reader keeps: a notice is read with the last
/// [`crate::worker::CLIENT_WAIT_CONTEXT_LINES`] of them, and for the payload's strings with
/// all of them (a path with this many line breaks, begun by a wrapper's line, is still the
/// item's).
const LINES_KEPT: usize = 64;

/// One output stream of a client, read line by line for the waits it announces
/// ([`announced_wait`], each line with the [`crate::worker::CLIENT_WAIT_CONTEXT_LINES`]
/// lines before it). The item's content announces none: codex's echo of its prompt (its
/// `<stdin>` block) and a command's output under `exec`, a line that repeats the worker's
/// input, and on stdout any line that is not a JSON event — a text answer is the result,
/// and the clients print their retry notices on stderr, or as events (docs/rate-limits.md,
/// "Clients that wait for the reset").
pub(crate) struct StreamWaits<'a> {
    /// What the worker was given ([`crate::drain::worker_input`]).
    input: &'a [u8],
    /// Its lines a client may echo, read at the first notice.
    echoed: Option<std::collections::HashSet<String>>,
    /// Its payload's strings, read at the first notice.
    strings: Option<super::item_strings::ItemStrings>,
    events_only: bool,
    layout: super::clean::CodexLayout,
    recent: Vec<String>,
    /// For a stdout reader: whether the stream's first line was a client's event (set at
    /// its first non-empty line).
    is_event_stream: Option<bool>,
}

impl<'a> StreamWaits<'a> {
    /// The readers of a client's stdout and of its stderr.
    pub(crate) fn of_client(input: &'a [u8]) -> [StreamWaits<'a>; 2] {
        [StreamWaits::new(input, true), StreamWaits::new(input, false)]
    }

    /// A reader of a stream that may hold both (`quota test` given its stdin alone).
    pub(crate) fn of_merged_output(input: &'a [u8]) -> StreamWaits<'a> {
        StreamWaits::new(input, false)
    }

    fn new(input: &'a [u8], events_only: bool) -> StreamWaits<'a> {
        StreamWaits {
            input,
            echoed: None,
            strings: None,
            events_only,
            layout: Default::default(),
            recent: Vec::new(),
            is_event_stream: None,
        }
    }

    /// `line`, just read as announcing a wait, as the hit it makes is read from: with the
    /// nearest line before it that names the limit when it names none itself — the limit's
    /// own line may state the vendor's reset (gemini-cli: `… Your quota will reset after
    /// 16s.`, then `Retrying after 90000ms...`), which comes before the client's wait
    /// (docs/rate-limits.md, "Clients that wait for the reset").
    pub(crate) fn announcement(&self, line: &str) -> String {
        let line = line.trim();
        let is_limit = |text: &str| LIMIT_WORDING.is_match(text) && !FILESYSTEM_QUOTA.is_match(text);
        if is_limit(line) {
            return line.to_string();
        }
        // `recent` ends with `line` itself.
        let before = context(&self.recent[..self.recent.len().saturating_sub(1)]);
        match before.iter().rev().find(|earlier| !CONTENT_LINE.is_match(earlier) && is_limit(earlier)) {
            Some(earlier) => format!("{earlier} {line}"),
            None => line.to_string(),
        }
    }

    /// The wait announced on the stream's next `line`, if it announces one.
    pub(crate) fn read(&mut self, line: &str) -> Option<Duration> {
        let text = line.trim();
        // On stdout only a client's own event may announce its wait: codex's `--json`
        // `{"type":"error","message":"Reconnecting... …"}`, Claude Code's stream-json
        // `{"type":"system","subtype":"api_retry",…}`; any other line there (a text or
        // one-line JSON answer) is the result.
        if self.layout.is_content(text, false) {
            return None;
        }
        if self.events_only {
            return self.read_event(text);
        }
        let wait = announced_wait(line, context(&self.recent))
            .filter(|_| {
                let input = self.input;
                let echoed = self.echoed.get_or_insert_with(|| super::echoed_lines(input));
                !super::echoes(line, echoed)
            })
            .and_then(|wait| {
                // Read with the lines before it: a payload string with a line break that a
                // wrapper's line began (`summarising $path`) is the item's on this line too.
                let mut lines: Vec<&str> = self.recent.iter().map(String::as_str).collect();
                lines.push(text);
                match item_strings(&mut self.strings, self.input).masked_lines(&lines) {
                    None => Some(wait),
                    Some(mut masked) => {
                        let last = masked.pop().unwrap_or_default();
                        announced_wait(&last, context(&masked))
                    }
                }
            });
        if self.recent.len() == LINES_KEPT {
            self.recent.remove(0);
        }
        self.recent.push(text.to_string());
        wait
    }
}

/// The last [`crate::worker::CLIENT_WAIT_CONTEXT_LINES`] of a stream's `lines`, which a
/// notice is read with.
fn context(lines: &[String]) -> &[String] {
    &lines[lines.len().saturating_sub(crate::worker::CLIENT_WAIT_CONTEXT_LINES)..]
}

/// The strings of the payload in `input`, read into `slot` the first time they are asked
/// for: a wait their words announce is the item's content ([`super::item_strings`]).
fn item_strings<'s>(
    slot: &'s mut Option<super::item_strings::ItemStrings>,
    input: &[u8],
) -> &'s super::item_strings::ItemStrings {
    slot.get_or_insert_with(|| super::item_strings::ItemStrings::of(input))
}

impl StreamWaits<'_> {
    /// The wait a client's event on stdout announces: an event stream's (its first line an
    /// event — a text answer is the result, whatever lines of it look like events) Claude
    /// Code `{"type":"system","subtype":"api_retry",…}` for a limit, read by its fields, or
    /// codex `{"type":"error","message":"Reconnecting... …"}`, read in its `message` alone.
    /// Nothing else an event carries (an `init` event's tool and command names, the
    /// working folder) is read as a notice.
    fn read_event(&mut self, text: &str) -> Option<Duration> {
        if text.is_empty() {
            return None;
        }
        let kind = super::clean::event_type(text);
        if !*self.is_event_stream.get_or_insert(kind.is_some()) {
            return None;
        }
        let event_wait = |text: &str| match kind {
            Some("system") if API_RETRY_FOR_A_LIMIT.is_match(text) => announced_wait(text, &[]),
            Some("error") => serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|event| event.get("message")?.as_str().map(str::to_string))
                .and_then(|message| announced_wait(&message, &[])),
            _ => None,
        };
        event_wait(text)
            .filter(|_| {
                let input = self.input;
                let echoed = self.echoed.get_or_insert_with(|| super::echoed_lines(input));
                !super::echoes(text, echoed)
            })
            .and_then(|wait| match item_strings(&mut self.strings, self.input).masked(text) {
                Some(masked) => event_wait(&masked),
                None => Some(wait),
            })
    }
}

/// The quota hit for a client stopped while it announced a `wait` (on `line`) before
/// retrying: the output's own limit message and reset when it states one, else the reset
/// the announcing line itself states (gemini-cli quotes "Your quota will reset after
/// 8h44m7s" before its own, longer, countdown), else the announced wait from `now`;
/// `zone` reads a clock time without one. A stop for a wait is always a quota hit: a client does not
/// sleep for minutes on a server error.
pub(crate) fn client_wait_hit(
    outcome: Outcome,
    line: &str,
    wait: Duration,
    now: DateTime<Utc>,
    zone: Tz,
) -> QuotaHit {
    notice_hit(outcome, line, Some(wait), now, zone)
}

/// The quota hit for a client that `item_timeout` stopped while it waited, silent, after
/// a retry notice for a limit that names no wait: codex's `{"type":"error","message":
/// "Reconnecting... 1/1 (exceeded retry limit, last status: 429 Too Many Requests, …)"}`,
/// after which it sleeps out the server's `retry-after` saying nothing more. The notice
/// must be the last line of its stream (a client that went on working after it was not
/// waiting), on stdout a client's `error` event, on stderr not an echo of the worker's
/// `input`. Its reset is the one it states, if any (docs/rate-limits.md, "Clients that
/// wait for the reset").
pub(crate) fn silent_wait_hit(
    stdout: &[u8],
    stderr: &[u8],
    input: &[u8],
    now: DateTime<Utc>,
    zone: Tz,
) -> Option<QuotaHit> {
    let last_line = |stream: &[u8]| -> Option<String> {
        let text = String::from_utf8_lossy(stream);
        text.lines().rev().map(str::trim).find(|line| !line.is_empty()).map(str::to_string)
    };
    let is_limit_notice = |text: &str| {
        super::patterns::RETRY_ANNOUNCED.is_match(text)
            && LIMIT_WORDING.is_match(text)
            && !FILESYSTEM_QUOTA.is_match(text)
    };
    // Read without the payload's own words ([`super::item_strings`]), each stream whole: a
    // payload string with a line break may end on its last line.
    let strings = super::item_strings::ItemStrings::of(input);
    let [masked_stdout, masked_stderr] = [stdout, stderr].map(|stream| strings.masked_bytes(stream));
    let (stdout, stderr) =
        (masked_stdout.as_deref().unwrap_or(stdout), masked_stderr.as_deref().unwrap_or(stderr));
    let from_stdout = last_line(stdout).filter(|line| {
        super::clean::event_type(line) == Some("error")
            && serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|event| event.get("message")?.as_str().map(is_limit_notice))
                .unwrap_or(false)
    });
    let from_stderr = || {
        last_line(stderr).filter(|line| {
            is_limit_notice(line)
                && !CONTENT_LINE.is_match(line)
                && !super::echoes(line, &super::echoed_lines(input))
        })
    };
    let line = from_stdout.or_else(from_stderr)?;
    Some(notice_hit(Outcome::Other, &line, None, now, zone))
}

/// [`client_wait_hit`], and with no `wait` [`silent_wait_hit`]'s: without a reset stated
/// anywhere, the hit states none.
fn notice_hit(
    outcome: Outcome,
    line: &str,
    wait: Option<Duration>,
    now: DateTime<Utc>,
    zone: Tz,
) -> QuotaHit {
    match outcome {
        Outcome::QuotaHit(hit) if hit.reset.is_some() || hit.needs_attention => hit,
        other => {
            let matched_line = match other {
                Outcome::QuotaHit(hit) => hit.matched_line,
                // codex's `{"type":"error","message":"Reconnecting... …"}` by its message.
                _ if super::clean::event_type(line.trim()) == Some("error") => {
                    super::excerpt(line, 0, line.len())
                }
                // Claude Code's `api_retry` event by its fields.
                _ => api_retry_in_words(line)
                    .unwrap_or_else(|| line.chars().take(super::MATCHED_LINE_MAX_CHARS).collect()),
            };
            if let Some(stated) = parse_stated_reset(line, now, zone) {
                return QuotaHit {
                    reset: Some(stated),
                    matched_line,
                    needs_attention: false,
                    access_refused: false,
                };
            }
            let reset = wait
                .and_then(|wait| chrono::Duration::from_std(wait).ok())
                .and_then(|wait| now.checked_add_signed(wait));
            let reset = reset.map(|at| StatedReset { at, form: ResetForm::Exact, just_passed: None });
            QuotaHit { reset, matched_line, needs_attention: false, access_refused: false }
        }
    }
}

/// Claude Code's stream-json `api_retry` event in words, as a backoff shows the line it
/// was read from: `API retry 1 of 10 in 600s after rate_limit (HTTP 429)`.
fn api_retry_in_words(line: &str) -> Option<String> {
    let event: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    if event.get("subtype")?.as_str()? != "api_retry" {
        return None;
    }
    let mut words = String::from("API retry");
    if let Some(attempt) = event.get("attempt").and_then(serde_json::Value::as_u64) {
        words.push_str(&format!(" {attempt}"));
        if let Some(most) = event.get("max_retries").and_then(serde_json::Value::as_u64) {
            words.push_str(&format!(" of {most}"));
        }
    }
    if let Some(delay) = event.get("retry_delay_ms").and_then(serde_json::Value::as_f64) {
        let wait = Duration::try_from_secs_f64(delay / 1000.0).unwrap_or_default();
        words.push_str(&format!(" in {}", crate::duration::format_duration(wait)));
    }
    let error = event.get("error").and_then(serde_json::Value::as_str);
    let status = event.get("error_status").and_then(serde_json::Value::as_u64);
    match (error, status) {
        (Some(error), Some(status)) => words.push_str(&format!(" after {error} (HTTP {status})")),
        (Some(error), None) => words.push_str(&format!(" after {error}")),
        (None, Some(status)) => words.push_str(&format!(" after HTTP {status}")),
        (None, None) => {}
    }
    Some(words.chars().take(super::MATCHED_LINE_MAX_CHARS).collect())
}

/// The zone a worker reads wall-clock times in: the `TZ` its environment sets (a tz
/// database name, with or without the leading `:`), else the configured zone.
pub(crate) fn worker_zone(env: &[(String, String)], configured: Tz) -> Tz {
    env_tz(env).and_then(tz_zone).unwrap_or(configured)
}

/// The `TZ` an `env` sets (its last one), as written.
pub(crate) fn env_tz(env: &[(String, String)]) -> Option<&str> {
    env.iter().rev().find(|(name, _)| name == "TZ").map(|(_, value)| value.as_str())
}

/// The zone a `TZ` value names (`Europe/Berlin`, `:Europe/Berlin`), if drainctl knows it:
/// a POSIX rule (`CET-1`) it does not read. Nor a name with blanks around it, which the
/// worker's C library and Node do not read as that zone either (they run in UTC): read
/// as the name, its clock times would be hours off (before: `America/Los_Angeles `).
pub(crate) fn tz_zone(value: &str) -> Option<Tz> {
    value.strip_prefix(':').unwrap_or(value).parse::<Tz>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_waits_clients_announce() {
        let cases = [
            (
                "Attempt 1 failed: You have exhausted your capacity on this model. Your quota will reset after 8h44m7s.. Retrying after 31733994ms...",
                Some(Duration::from_millis(31_733_994)),
            ),
            ("API Error (429 …) · Retrying in 4 seconds… (attempt 4/10)", Some(Duration::from_secs(4))),
            (
                r#"{"type":"error","message":"Reconnecting... 1/2 (rate limit exceeded: Please try again in 1.662s. Visit …)"}"#,
                Some(Duration::from_millis(1662)),
            ),
            ("Rate limited. Retrying in 2 minutes", Some(Duration::from_secs(120))),
            ("Rate limit reached. Please try again in 20s.", None),
            ("Retrying the request", None),
            ("We kept retrying for 5 minutes before it worked.", None),
            (r#"{"type":"result","is_error":false,"result":"Done. Retrying in 10 minutes is advised."}"#, None),
            ("ok: waiting for 2 hours", None),
        ];
        for (line, expected) in cases {
            assert_eq!(announced_wait(line, &[]), expected, "{line}");
        }
    }

    #[test]
    fn a_retry_notice_without_limit_wording_around_it_is_not_a_limit() {
        let none: &[String] = &[];
        for line in [
            "ConnectionError: database is locked. Retrying in 2 minutes.",
            "Retrying in 90 seconds...",
            "Request failed. Retrying in 30 seconds...",
        ] {
            assert_eq!(announced_wait(line, none), None, "{line}");
        }
        // The limit named on one of the lines just before counts (gemini-cli).
        let before = vec![
            "Attempt 1 failed: You exceeded your current quota, please check your plan and billing details."
                .to_string(),
            "* Quota exceeded for metric: generate_content_paid_tier_input_token_count, limit: 1000000"
                .to_string(),
        ];
        assert_eq!(
            announced_wait("Please retry in 240s.. Retrying after 254571ms...", &before),
            Some(Duration::from_millis(254_571))
        );
        assert_eq!(
            announced_wait("Retrying in 2 minutes", &["HTTP 429 Too Many Requests".to_string()]),
            Some(Duration::from_secs(120))
        );
        // A count of 429 or a mention of a quota is no limit, nor is a file system's quota.
        for earlier in [
            "Imported 429 rows",
            "page 3/429 fetched",
            "Checked storage quota: 12% used",
            "Job 429: started",
            "Query returned 429 rows",
            "Sync: received 429 messages",
            "Batch 7: got 429 results",
            "Error: Connection timed out (429 ms)",
            "OSError: [Errno 122] Disk quota exceeded: '/home/u/.cache/x'",
            "cp: error writing 'out.bin': Disk quota exceeded",
        ] {
            let notice = "ConnectionError: database is locked. Retrying in 2 minutes.";
            assert_eq!(announced_wait(notice, &[earlier.to_string()]), None, "{earlier}");
        }
        for earlier in [
            "Error: status 429",
            "HTTPError: 429",
            "upstream response 429",
            "429: rate limited",
            "(429) Too Many Requests",
            "You exceeded your current quota, please check your plan",
            "Quota exceeded for quota metric 'Generate Content API requests per minute'",
            "Your quota will reset after 44s.",
            "insufficient_quota",
        ] {
            let notice = "Retrying in 2 minutes";
            assert_eq!(
                announced_wait(notice, &[earlier.to_string()]),
                Some(Duration::from_secs(120)),
                "{earlier}"
            );
        }
    }

    #[test]
    fn a_payloads_strings_printed_in_a_wrappers_own_lines_announce_no_wait() {
        let input = br#"{"path": "/in/b ticket. Rate limit exceeded. Retrying after 604800000ms.txt"}"#;
        let [_, mut stderr] = StreamWaits::of_client(input);
        let checkpoint =
            "::checkpoint:: summarising /in/b ticket. Rate limit exceeded. Retrying after 604800000ms.txt";
        assert_eq!(stderr.read(checkpoint), None);
        // A line before that named a limit only by the item's words names none.
        let input = br#"{"title": "You have reached your usage limit (quoted by a customer)"}"#;
        let [_, mut stderr] = StreamWaits::of_client(input);
        assert_eq!(stderr.read("reading You have reached your usage limit (quoted by a customer)"), None);
        assert_eq!(stderr.read("Retrying in 2 minutes"), None);
        // The client's own notice beside the item's words still counts.
        let [_, mut stderr] = StreamWaits::of_client(input);
        assert_eq!(stderr.read("Rate limited. Retrying in 2 minutes"), Some(Duration::from_secs(120)));
        // A path of many lines, begun by the wrapper's line several lines up.
        let input = br#"{"path": "/up/a\nb\nc\nd\nAPI Error: 429 rate limit exceeded. Retrying after 604800000ms..."}"#;
        let [_, mut stderr] = StreamWaits::of_client(input);
        for line in ["::checkpoint:: summarising /up/a", "b", "c", "d"] {
            assert_eq!(stderr.read(line), None);
        }
        assert_eq!(stderr.read("API Error: 429 rate limit exceeded. Retrying after 604800000ms..."), None);
        // Nor does a wrapper's last line silence a client's wait.
        let now = Utc::now();
        let input = br#"{"path": "/in/429 Too Many Requests. Retrying after the limit.txt"}"#;
        let line = b"summarising /in/429 Too Many Requests. Retrying after the limit.txt\n";
        assert!(silent_wait_hit(b"", line, input, now, chrono_tz::UTC).is_none());
        assert!(silent_wait_hit(b"", line, b"{}", now, chrono_tz::UTC).is_some());
    }

    #[test]
    fn the_items_content_announces_no_wait_on_either_stream() {
        let read_all = |reader: &mut StreamWaits<'_>, text: &str| -> Vec<Duration> {
            text.lines().filter_map(|line| reader.read(line)).collect()
        };
        let log = "- 10:03 the API answered HTTP 429 Too Many Requests\nRetrying in 2 minutes.\n";
        // A text answer on stdout quoting a client's log is the result (before: a hit, the
        // answer dropped); the same lines on stderr are a client's own.
        let [mut stdout, mut stderr] = StreamWaits::of_client(b"");
        assert_eq!(read_all(&mut stdout, log), []);
        assert_eq!(read_all(&mut stderr, log), [Duration::from_secs(120)]);
        // On stdout a client's event still announces its wait (codex --json); a one-line
        // JSON answer quoting one does not.
        let event = r#"{"type":"error","message":"Reconnecting... 1/2 (rate limit exceeded: Please try again in 90s.)"}"#;
        let [mut stdout, _] = StreamWaits::of_client(b"");
        assert_eq!(read_all(&mut stdout, event), [Duration::from_secs(90)]);
        for answer in [
            r#"{"summary": "The API answered 429 Too Many Requests. Retrying in 2 minutes."}"#,
            // An event's shape inside an answer is the answer's.
            r#"{"findings":[{"type":"error","message":"The API answered 429 Too Many Requests. Retrying in 2 minutes."}]}"#,
        ] {
            let [mut stdout, _] = StreamWaits::of_client(b"");
            assert_eq!(read_all(&mut stdout, answer), [], "{answer}");
        }
        // codex's text mode prints the model's answer on stderr too, under `codex`.
        let codex_answer = format!(
            "OpenAI Codex v0.171.0\n--------\nmodel: gpt-5-codex\n--------\nuser\nSummarise it.\ncodex\n{log}tokens used\n1,902\n"
        );
        let [_, mut stderr] = StreamWaits::of_client(b"");
        assert_eq!(read_all(&mut stderr, &codex_answer), []);
        // codex's own notice after its answer still counts.
        let [_, mut stderr] = StreamWaits::of_client(b"");
        let after = format!(
            "{codex_answer}ERROR: Reconnecting... 1/2 (rate limit exceeded: Please try again in 90s.)\n"
        );
        assert_eq!(read_all(&mut stderr, &after), [Duration::from_secs(90)]);
        // codex's echo of its prompt, with the item in its <stdin> block, is the item's.
        let payload = r#"{"t":"Attempt 1 failed with status 429. Retrying after 90000ms..."}"#;
        let codex = format!(
            "OpenAI Codex v0.171.0\n--------\nmodel: gpt-5-codex\n--------\nuser\nSummarise it.\n\n<stdin>\n{payload}\n</stdin>\ncodex\nDone.\n"
        );
        let [_, mut stderr] = StreamWaits::of_client(b"");
        assert_eq!(read_all(&mut stderr, &codex), []);
        // A line that repeats the worker's input, whatever the client, is the item's too.
        let [_, mut stderr] = StreamWaits::of_client(payload.as_bytes());
        assert_eq!(read_all(&mut stderr, &format!("Prompt:\n{payload}\n")), []);
        let [_, mut stderr] = StreamWaits::of_client(b"");
        assert_eq!(read_all(&mut stderr, &format!("Prompt:\n{payload}\n")), [Duration::from_secs(90)]);
        // Read as one stream that may hold both (`quota test` given stdin alone).
        let mut merged = StreamWaits::of_merged_output(b"");
        assert_eq!(read_all(&mut merged, log), [Duration::from_secs(120)]);
    }

    #[test]
    fn a_wait_of_several_parts_counts_them_all() {
        let limited = ["Rate limit exceeded.".to_string()];
        for (line, seconds) in [
            ("Rate limited · retrying in 1m 50s · attempt 1 of 10", 110),
            ("Retrying in 2m 30s.", 150),
            ("Retrying in 9m 47s · attempt 2 of 10", 587),
            ("Retrying after 1h 2m 3s...", 3723),
            ("Retrying in 4 seconds… (attempt 4/10)", 4),
        ] {
            assert_eq!(announced_wait(line, &limited), Some(Duration::from_secs(seconds)), "{line}");
        }
    }

    #[test]
    fn claude_codes_stream_json_retry_after_a_rate_limit_announces_its_wait() {
        let event = |delay: &str, error: &str| {
            format!(
                "{{\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":1,\"max_retries\":10,\"retry_delay_ms\":{delay},{error},\"session_id\":\"s\"}}"
            )
        };
        let limit = "\"error_status\":429,\"error\":\"rate_limit\"";
        assert_eq!(announced_wait(&event("3600000", limit), &[]), Some(Duration::from_secs(3600)));
        assert_eq!(announced_wait(&event("549.5", limit), &[]), Some(Duration::from_micros(549_500)));
        // An overloaded server retried is no limit's wait.
        let overloaded = "\"error_status\":529,\"error\":\"overloaded\"";
        assert_eq!(announced_wait(&event("3600000", overloaded), &[]), None);
    }

    #[test]
    fn the_worker_zone_comes_from_its_tz() {
        let configured = chrono_tz::UTC;
        let env = |value: &str| vec![("TZ".to_string(), value.to_string())];
        assert_eq!(worker_zone(&env("Europe/Warsaw"), configured), chrono_tz::Europe::Warsaw);
        assert_eq!(worker_zone(&env(":America/New_York"), configured), chrono_tz::America::New_York);
        assert_eq!(worker_zone(&env("CET-1CEST"), configured), configured);
        assert_eq!(worker_zone(&env("America/Los_Angeles "), configured), configured);
        assert_eq!(worker_zone(&env(" Europe/Warsaw"), chrono_tz::Asia::Tokyo), chrono_tz::Asia::Tokyo);
        assert_eq!(worker_zone(&[], chrono_tz::Asia::Tokyo), chrono_tz::Asia::Tokyo);
    }

    #[test]
    fn on_stdout_only_an_event_streams_retry_events_announce_a_wait_and_only_by_their_fields() {
        let api_retry = r#"{"type":"system","subtype":"api_retry","attempt":1,"retry_delay_ms":600000,"error_status":429,"error":"rate_limit"}"#;
        let reconnecting = r#"{"type":"error","message":"Reconnecting... 1/2 (rate limit exceeded: Please try again in 300s)"}"#;
        // An init event naming a command (or a folder) in retry words announces nothing.
        let init = r#"{"type":"system","subtype":"init","cwd":"/srv/repo","slash_commands":["compact","Retrying in 300 minutes after the rate limit"]}"#;
        let [mut stdout, _] = StreamWaits::of_client(b"");
        assert_eq!(stdout.read(init), None);
        assert_eq!(
            stdout.read(r#"{"type":"error","note":"Retrying in 300 minutes after the rate limit"}"#),
            None
        );
        assert_eq!(stdout.read(api_retry), Some(Duration::from_secs(600)));
        assert_eq!(stdout.read(reconnecting), Some(Duration::from_secs(300)));
        // Its hit shows the message, not the JSON around it.
        let now =
            DateTime::parse_from_rfc3339("2026-12-06T09:15:04Z").map(|at| at.with_timezone(&Utc)).unwrap();
        let hit =
            client_wait_hit(Outcome::Other, reconnecting, Duration::from_secs(300), now, chrono_tz::UTC);
        assert_eq!(hit.matched_line, "Reconnecting... 1/2 (rate limit exceeded: Please try again in 300s)");
        let hit = client_wait_hit(Outcome::Other, api_retry, Duration::from_secs(600), now, chrono_tz::UTC);
        assert_eq!(hit.matched_line, "API retry 1 in 10m after rate_limit (HTTP 429)");
        assert_eq!(hit.reset.map(|reset| reset.at), now.checked_add_signed(chrono::Duration::seconds(600)));
        // A text answer whose lines look like events is the result.
        let [mut text, _] = StreamWaits::of_client(b"");
        assert_eq!(text.read("Here is the log you asked for:"), None);
        assert_eq!(text.read(api_retry), None);
        assert_eq!(text.read(reconnecting), None);
    }

    #[test]
    fn a_reset_the_limit_line_states_before_a_longer_announced_wait_is_the_one_taken() {
        let now =
            DateTime::parse_from_rfc3339("2026-12-06T09:15:04Z").map(|at| at.with_timezone(&Utc)).unwrap();
        let mut reader = StreamWaits::of_merged_output(b"");
        let limit = "Attempt 1 failed: You have exhausted your capacity on this model. Your quota will reset after 16s.";
        assert_eq!(reader.read(limit), None);
        let notice = "Retrying after 90000ms...";
        let wait = reader.read(notice).expect("the notice announces a wait");
        let line = reader.announcement(notice);
        assert_eq!(line, format!("{limit} {notice}"));
        // Before: the announced 90 s, where the vendor's limit resets in 16 s.
        let hit = client_wait_hit(Outcome::Other, &line, wait, now, chrono_tz::UTC);
        assert_eq!(hit.reset_at(), Some(now + chrono::Duration::seconds(16)));
        // A notice that names the limit itself stands alone.
        let own = "429 Too Many Requests. Retrying in 300 seconds";
        assert!(reader.read(own).is_some());
        assert_eq!(reader.announcement(own), own);
    }

    #[test]
    fn a_stop_without_a_stated_reset_waits_the_announced_time() {
        let now =
            DateTime::parse_from_rfc3339("2026-12-02T01:00:00Z").map(|at| at.with_timezone(&Utc)).unwrap();
        let hit = client_wait_hit(
            Outcome::Other,
            "Retrying after 120000ms...",
            Duration::from_secs(120),
            now,
            chrono_tz::UTC,
        );
        assert_eq!(hit.reset_at(), Some(now + chrono::Duration::seconds(120)));
        assert_eq!(hit.matched_line, "Retrying after 120000ms...");
        assert!(!hit.needs_attention);
    }
}
