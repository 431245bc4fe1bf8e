//! Quota classification: telling a usage-limit ("quota") hit from a server error from
//! anything else in one worker run's output, and reading the reset time out of the
//! message. The classifier is pure: it sees the tail of stdout and stderr, the exit code,
//! the instant the output was printed and the configured zone, and returns an
//! `Outcome`. The output is cleaned first (terminal escapes, mojibake, literal `\uXXXX`
//! and `\n` escapes, separators, gutter glyphs, curly quotes, odd spaces), then matched
//! line by line, joining a line with the next one when a message was wrapped. A
//! server-error shape anywhere in a failed run wins over a quota shape; warnings, model
//! fallbacks, status panels, client retry countdowns and prose that merely mentions rate
//! limits are not hits, and a structured result that says it succeeded is a success
//! whatever it quotes. The caller decides what to do with the reset (margin,
//! fresh-gating); this module reports the instant exactly as the message states it.
//!
//! The parts: `clean` turns raw bytes into cleaned lines, `patterns` holds the built-in
//! shapes, `prose` tells a limit message from a sentence about limits, `reset` reads
//! relative resets, epochs and headers, `clock` reads absolute times, dates and zones, and
//! `waits` reads the waits a client announces before retrying by itself, `empty_answer`
//! tells a gemini-cli exit 0 without an answer.
//! How a worker's output is judged, for users: docs/rate-limits.md.

mod access;
mod clean;
pub(crate) use clean::{decoded_view, screen_text};
pub(crate) use empty_answer::{first_json_value, is_json_output};
mod clock;
mod empty_answer;
mod item_strings;
pub(crate) mod patterns;
mod prose;
#[cfg(test)]
mod real_clients;
mod reset;
mod waits;
mod window;

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use regex::Regex;

pub(crate) use self::clean::from_first_whole_line;
#[cfg(test)]
pub(crate) use self::clean::CUT_LINE;
use self::clean::{clean_lines, following_texts, next_line, spanning_join, Line, Origin};
use self::patterns::{
    is_countdown, HitKind, ATTEMPT_FAILED, BILLING_MENTION, ERROR_OBJECT, ERROR_OUTPUT_LINE, FALLBACK,
    FALLBACK_FOLLOWING, FILESYSTEM_QUOTA, HIT_HINT, IS_ERROR_FALSE, IS_ERROR_TRUE, NEEDS_ATTENTION,
    OVERSIZED_REQUEST, QUOTA_PATTERNS, RATE_LIMIT_EVENT, RESULT_METADATA, RESULT_STATUS_SUCCESS,
    SERVER_ERROR, STATUS_REJECTED, TURN_COMPLETED, WARNING, WORKSPACE_LIMIT_WITH_RETURN,
};
use self::prose::looks_like_limit_message;
use self::reset::{header_reset, reset_with_continuation, without_resets, RATELIMIT_RESET_KIND};
pub(crate) use self::waits::{
    client_wait_hit, env_tz, long_announced_wait, silent_wait_hit, tz_zone, worker_zone, StreamWaits,
};

/// `matched_line` is cut to about this many characters, keeping the match.
const MATCHED_LINE_MAX_CHARS: usize = 500;
/// Lines on either side of a hit that may carry its reset or its needs-attention detail.
const NEIGHBOURHOOD_LINES: usize = 3;
/// Only the last hits are weighed for the reset and the needs-attention flag.
const MAX_HITS_CONSIDERED: usize = 16;

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
    pub(crate) const ALL: [Profile; 4] = [Profile::Claude, Profile::OpenAi, Profile::Gemini, Profile::Http];

    pub(crate) fn name(&self) -> &'static str {
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
pub(crate) enum Outcome {
    QuotaHit(QuotaHit),
    ServerError {
        matched_line: String,
    },
    /// The worker exited 0 without an answer and reported an error beside it (gemini-cli
    /// on an empty or malformed reply): a transient failure with that `error`.
    NoAnswer {
        error: String,
    },
    Other,
}

impl Outcome {
    /// The outcome with every password masked in the lines it quotes: they are read with
    /// their escapes decoded, which joins a password an escape split in the output as it
    /// was masked (docs/guarantees.md, "Secrets stay secret").
    fn scrubbed(self) -> Outcome {
        let scrub = |text: String| crate::error::scrub(&text);
        match self {
            Outcome::QuotaHit(hit) => {
                Outcome::QuotaHit(QuotaHit { matched_line: scrub(hit.matched_line), ..hit })
            }
            Outcome::ServerError { matched_line } => {
                Outcome::ServerError { matched_line: scrub(matched_line) }
            }
            Outcome::NoAnswer { error } => Outcome::NoAnswer { error: scrub(error) },
            Outcome::Other => Outcome::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuotaHit {
    /// The reset the message states, and how it was written (which decides how far it
    /// is trusted); `None` when it states none (and always `None` when
    /// `needs_attention`: waiting does not help).
    pub(crate) reset: Option<crate::backoff::StatedReset>,
    /// The cleaned line that matched, trimmed, at most about 500 characters.
    pub(crate) matched_line: String,
    /// Quota that time does not fix: `insufficient_quota`, billing, a monthly spend
    /// limit, `limit: 0` — or access refused.
    pub(crate) needs_attention: bool,
    /// Access refused: the worker's key or login, or its model (see `access`). Always
    /// with `needs_attention`; in a group with accounts to switch to, it backs off the
    /// account alone (docs/accounts.md).
    pub(crate) access_refused: bool,
}

impl QuotaHit {
    /// Whether recording this hit parks its quota group: a hit that needs attention does,
    /// except access refused where the group has another account to switch to, which
    /// backs off that account alone (docs/accounts.md).
    pub(crate) fn parks_group(&self, can_switch_accounts: bool) -> bool {
        self.needs_attention && !self.backs_off_account_alone(can_switch_accounts)
    }

    /// Access refused where the group can switch accounts: the account alone backs off,
    /// confirmed at once — a refused key is no blip to wait out on the same account.
    pub(crate) fn backs_off_account_alone(&self, can_switch_accounts: bool) -> bool {
        self.access_refused && can_switch_accounts
    }

    /// The stated reset and its form, for [`crate::backoff::decide_backoff`].
    pub(crate) fn stated_reset(&self) -> Option<crate::backoff::StatedReset> {
        self.reset
    }

    /// The instant the stated reset resolves to (a clock time: its next occurrence).
    #[cfg(test)]
    pub(crate) fn reset_at(&self) -> Option<DateTime<Utc>> {
        self.reset.map(|stated| stated.at)
    }
}

/// A line of the worker's input shorter than this is not looked for in its output: a
/// brace or a word of the payload may well be the client's too.
const MIN_ECHOED_CHARS: usize = 12;

/// The lines of a worker's `input` a client may echo, cleaned as its output is.
fn echoed_lines(input: &[u8]) -> std::collections::HashSet<String> {
    clean_lines(input)
        .into_iter()
        .map(|line| line.text)
        .filter(|text| text.chars().count() >= MIN_ECHOED_CHARS)
        .collect()
}

/// Whether an output `line` only repeats a line of the worker's input ([`echoed_lines`]).
fn echoes(line: &str, echoed: &std::collections::HashSet<String>) -> bool {
    !echoed.is_empty() && clean_lines(line.as_bytes()).iter().any(|line| echoed.contains(&line.text))
}

/// A compiled profile plus the drain's extra patterns.
#[derive(Debug, Clone)]
pub(crate) struct Classifier {
    profile: Profile,
    extra_quota: Vec<Regex>,
    extra_veto: Vec<Regex>,
}

impl Classifier {
    /// `extra_quota` / `extra_veto` are the drain's own patterns, compiled
    /// case-insensitively by the configuration and matched against cleaned lines. A line
    /// matching a veto pattern is treated as a server error.
    pub(crate) fn new(profile: Profile, extra_quota: &[Regex], extra_veto: &[Regex]) -> Classifier {
        Classifier { profile, extra_quota: extra_quota.to_vec(), extra_veto: extra_veto.to_vec() }
    }

    /// `now` = when the output was printed (for the next occurrence of clock times),
    /// `zone` = the configured zone, used when the message names none.
    #[cfg(test)]
    pub(crate) fn classify(
        &self,
        stdout: &[u8],
        stderr: &[u8],
        exit_code: Option<i32>,
        now: DateTime<Utc>,
        zone: Tz,
    ) -> Outcome {
        self.classify_given(b"", stdout, stderr, exit_code, now, zone)
    }

    /// As [`Classifier::classify`], knowing the `input` the worker was given (its payload
    /// and its arguments): an output line that only repeats a line of it (codex echoes
    /// its prompt on stderr) is the item's content, never the client's message
    /// (docs/rate-limits.md, "How the output is read").
    pub(crate) fn classify_given(
        &self,
        input: &[u8],
        stdout: &[u8],
        stderr: &[u8],
        exit_code: Option<i32>,
        now: DateTime<Utc>,
        zone: Tz,
    ) -> Outcome {
        let mut outcome = self.classify_output(input, stdout, stderr, exit_code, now, zone);
        if matches!(outcome, Outcome::QuotaHit(_) | Outcome::ServerError { .. }) {
            // What affects the group is read again without the item's own words: a
            // wrapper's `cannot read $path` whose path spells a limit is no limit.
            let strings = item_strings::ItemStrings::of(input);
            let masked = [stdout, stderr].map(|stream| strings.masked_bytes(stream));
            if masked.iter().any(Option::is_some) {
                let [masked_stdout, masked_stderr] = masked;
                outcome = self.classify_output(
                    input,
                    masked_stdout.as_deref().unwrap_or(stdout),
                    masked_stderr.as_deref().unwrap_or(stderr),
                    exit_code,
                    now,
                    zone,
                );
            }
        }
        if outcome != Outcome::Other || exit_code != Some(0) || self.profile != Profile::Gemini {
            return outcome.scrubbed();
        }
        // gemini-cli exits 0 without an answer on an empty or malformed reply
        // (docs/rate-limits.md, "How the output is read").
        match empty_answer::gemini_failed_answer(stdout, stderr) {
            Some(error) => Outcome::NoAnswer { error }.scrubbed(),
            None => outcome,
        }
    }

    /// gemini-cli's answer cut short by the client itself (it exits 0 with its stdout a
    /// pipe once it has written 64 KiB, or before its stream's `result` event): "no
    /// answer", before any word of it is read (by [`Classifier::classify_given`]).
    /// `stdout` whole: the end a pass reads may lie inside one long line.
    pub(crate) fn cut_answer(&self, stdout: &[u8], exit_code: Option<i32>) -> Option<Outcome> {
        if exit_code != Some(0) || self.profile != Profile::Gemini {
            return None;
        }
        empty_answer::gemini_cut_answer(stdout).map(|error| Outcome::NoAnswer { error }.scrubbed())
    }

    fn classify_output(
        &self,
        input: &[u8],
        stdout: &[u8],
        stderr: &[u8],
        exit_code: Option<i32>,
        now: DateTime<Utc>,
        zone: Tz,
    ) -> Outcome {
        let failed = exit_code != Some(0);
        if !failed && is_json_answer(stdout) {
            // gemini prints its errors on stderr only: its answer is the item's content.
            return Outcome::Other;
        }
        let mut stdout_lines = clean::clean_lines_of_a_run(stdout, failed);
        let mut stderr_lines = clean::clean_lines_of_a_run(stderr, failed);
        // codex's text mode writes on stderr; a wrapper (or `quota test`) may hand it over
        // as stdout.
        clean::mark_codex_prompt(&mut stderr_lines);
        clean::mark_codex_prompt(&mut stdout_lines);
        if failed {
            clean::last_word_of_a_failed_run(&mut stdout_lines);
            clean::last_word_of_a_failed_run(&mut stderr_lines);
        }
        if !input.is_empty() {
            let echoed = echoed_lines(input);
            for line in stdout_lines.iter_mut().chain(stderr_lines.iter_mut()) {
                if echoed.contains(&line.text) {
                    line.origin = Origin::ToolOutput;
                }
            }
        }
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

        if !failed && verdict == ErrorVerdict::Success {
            // A structured result that says it succeeded is the item's content: whatever
            // it quotes about limits must never stall the group.
            return Outcome::Other;
        }
        let strict = !failed && !output_is_error;
        let mut hits = self.collect_hits(&streams, strict);
        if hits.is_empty() {
            // Access refused (a key, a login, a model): every item would meet it.
            return match access::refused_access(&streams).filter(|_| failed || output_is_error) {
                Some(matched_line) => Outcome::QuotaHit(QuotaHit {
                    reset: None,
                    matched_line,
                    needs_attention: true,
                    access_refused: true,
                }),
                None => Outcome::Other,
            };
        }
        // A limit message is near the end; output that repeats one thousands of times
        // need not be read thousands of times.
        hits.drain(..hits.len().saturating_sub(MAX_HITS_CONSIDERED));
        match self.quota_hit(&streams, &hits, now, zone) {
            // A run that exited 0 with no error object: a spent balance or a billing line
            // in it is the answer's text — the clients report theirs with a failure or an
            // error object — and would park the whole group again after every resume
            // (docs/rate-limits.md, "Needs attention").
            Outcome::QuotaHit(hit) if strict && hit.needs_attention => Outcome::Other,
            outcome => outcome,
        }
    }

    fn is_vetoed(&self, text: &str) -> Option<(usize, usize)> {
        // Blanked to spaces of the same length, so that offsets still point into `text`.
        let text_without_metadata =
            RESULT_METADATA.replace_all(text, |found: &regex::Captures<'_>| " ".repeat(found[0].len()));
        if let Some(found) = SERVER_ERROR.find(&text_without_metadata) {
            return Some((found.start(), found.end()));
        }
        self.extra_veto
            .iter()
            .find_map(|pattern| pattern.find(text))
            .map(|found| (found.start(), found.end()))
    }

    fn server_error_in(&self, text: &str) -> Option<(usize, usize)> {
        if text.is_empty() || is_countdown(text) {
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

    /// The hit `text` holds. `is_countdown`: it is (or ends with) a client's notice of a
    /// retry it goes on with, as the lines were judged ([`clean::Line::retried`]: a notice
    /// followed by the client's last word is none).
    fn find_hit(&self, text: &str, is_countdown: bool) -> Option<HitMatch> {
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
        if is_countdown
            || WARNING.is_match(text)
            || FALLBACK.is_match(text)
            || OVERSIZED_REQUEST.is_match(text)
            || FILESYSTEM_QUOTA.is_match(text)
        {
            return None;
        }
        // A client's report of its last attempt (`Attempt 3 failed with status 429.
        // Giving up.`) is read as the message after its `Attempt N failed`.
        let skip = ATTEMPT_FAILED.find(text).map_or(0, |prefix| prefix.end());
        let message = &text[skip..];
        QUOTA_PATTERNS.iter().find_map(|pattern| {
            pattern.regex.find_iter(message).find(|found| prose::accepts(pattern, message, found)).map(
                |found| HitMatch {
                    start: skip + found.start(),
                    end: skip + found.end(),
                    needs_attention: pattern.needs_attention,
                    kind: pattern.kind,
                },
            )
        })
    }

    /// Every hit line. `strict`: the run exited 0 without an error object, so a phrase
    /// counts only in the shape of a real limit message.
    fn collect_hits(&self, streams: &[&[Line]], strict: bool) -> Vec<Hit> {
        let mut hits = Vec::new();
        for (stream, lines) in streams.iter().enumerate() {
            let is_content = |line: &Line| line.origin != Origin::ToolOutput && !line.text.is_empty();
            let content_lines = lines.iter().filter(|line| is_content(line)).count();
            let last_content_line = lines.iter().rposition(is_content);
            // In a failed run, a limit the client retried past, and printed more after
            // (a refused key, another error), is not the run's verdict: gemini-cli prints
            // the limit first, then `Retrying after 5982ms...`.
            let retry_followed = last_retry_followed(lines);
            let retried_past = if strict { None } else { retry_followed };
            let after_retry = retry_followed.map_or(0, |countdown| countdown + 1);
            for (index, line) in lines.iter().enumerate() {
                if line.origin == Origin::ToolOutput || line.text.is_empty() || line.retried {
                    continue;
                }
                if retried_past.is_some_and(|countdown| index < countdown) {
                    continue;
                }
                let found = match self.find_hit(&line.text, false) {
                    Some(found) => Some((line.text.clone(), found, index)),
                    None => next_line(lines, index, true).and_then(|next| {
                        spanning_join(&line.text, &next.text, |text| {
                            self.find_hit(text, next.retried).map(|found| (found.start, found.end, found))
                        })
                        .map(|(joined, (_, _, found))| (joined, found, index + 1))
                    }),
                };
                let Some((text, matched, last_line)) = found else {
                    continue;
                };
                if matched.kind != HitKind::StreamEvent && fallback_follows(lines, last_line) {
                    continue;
                }
                let needs_shape =
                    strict && matches!(matched.kind, HitKind::Message | HitKind::Status | HitKind::Token);
                // A limit message is the whole of a short output, or its last line.
                let stands_alone = content_lines <= 5 || last_content_line == Some(last_line);
                if needs_shape
                    && !looks_like_limit_message(
                        &text,
                        matched.start,
                        matched.end,
                        line.structured,
                        stands_alone,
                    )
                {
                    continue;
                }
                hits.push(Hit { stream, first_line: index, last_line, text, matched, after_retry });
            }
        }
        hits
    }

    fn quota_hit(&self, streams: &[&[Line]], hits: &[Hit], now: DateTime<Utc>, zone: Tz) -> Outcome {
        let own_resets: Vec<Option<crate::backoff::StatedReset>> = hits
            .iter()
            .map(|hit| {
                let following = following_texts(streams[hit.stream], hit.last_line);
                reset_with_continuation(&hit.text, &following, now, zone)
            })
            .collect();
        // Several limits reported as spent (a weekly and a 5-hour one): the work resumes
        // only when all of them have reset, so the latest reset wins; of an exact instant
        // and a clock time naming the same moment (a `rate_limit_event`'s `resetsAt` and
        // its text, cut to the minute), the exact one.
        // The same message printed again later but for its reset (a client that retried
        // and met the limit again: `try again in 28.2s`, then `try again in 3.0s`) states
        // the same limit, as of its own printing: only its last statement counts.
        let shapes: Vec<String> =
            hits.iter().map(|hit| numbers_left_out(&without_resets(&hit.text, now, zone))).collect();
        let restated = |index: usize| {
            (index + 1..hits.len()).any(|later| {
                hits[later].stream == hits[index].stream
                    && own_resets[later].is_some()
                    && shapes[later] == shapes[index]
            })
        };
        let stated: Vec<(usize, crate::backoff::StatedReset)> = (0..hits.len())
            .filter(|&index| !restated(index))
            .filter_map(|index| own_resets[index].map(|stated| (index, stated)))
            .collect();
        let latest = stated
            .iter()
            .filter(|(_, reset)| !stated.iter().any(|(_, exact)| names_the_same_moment(exact, reset)))
            .max_by_key(|(index, reset)| {
                (reset.at, reset.form != crate::backoff::ResetForm::ClockTime, *index)
            })
            .map(|(index, _)| *index);
        let primary = latest
            .or_else(|| {
                (0..hits.len()).find(|&index| {
                    matches!(hits[index].matched.kind, HitKind::Message | HitKind::UserPattern)
                })
            })
            .unwrap_or(0);

        let mut reset = own_resets[primary];
        // The line the reset was read from when it is not the hit's own: what the
        // backoff shows (docs/rate-limits.md, "How the output is read").
        let mut reset_line: Option<&str> = None;
        if reset.is_none() {
            if let Some((found, line)) = self.neighbourhood_reset(streams, hits, now, zone) {
                (reset, reset_line) = (Some(found), Some(line));
            }
        }
        if reset.is_none() {
            let texts: Vec<&str> = streams
                .iter()
                .flat_map(|lines| lines.iter())
                .filter(|line| line.origin != Origin::ToolOutput && !line.text.is_empty())
                .map(|line| line.text.as_str())
                .collect();
            if let Some((found, line)) = header_reset(&texts, now, zone) {
                (reset, reset_line) = (Some(found), Some(line));
            }
        }

        let context = neighbourhood_texts(streams, hits);
        let needs_attention = hits.iter().any(|hit| hit.matched.needs_attention)
            || context.iter().any(|text| NEEDS_ATTENTION.is_match(text))
            || (self.profile.billing_mention_needs_attention()
                && reset.is_none()
                && context.iter().any(|text| BILLING_MENTION.is_match(text)));

        // No reset stated: a per-window limit ("requests per minute", "daily") lifts at
        // the window's next boundary.
        if reset.is_none() && !needs_attention {
            let own: Vec<&str> = hits.iter().map(|hit| hit.text.as_str()).collect();
            reset = self::window::window_reset(&own, &context, now, self.profile);
        }

        let hit = &hits[primary];
        // A limit that names the day access returns is lifted by time.
        let needs_attention = needs_attention
            && !(reset.is_some() && context.iter().any(|text| WORKSPACE_LIMIT_WITH_RETURN.is_match(text)));
        let reset = reset.filter(|_| !needs_attention);
        let matched_line = match reset_line.filter(|_| reset.is_some()) {
            Some(line) => excerpt(line, 0, 0),
            None => excerpt(&hit.text, hit.matched.start, hit.matched.end),
        };
        Outcome::QuotaHit(QuotaHit { reset, matched_line, needs_attention, access_refused: false })
    }

    /// The reset stated on a line around the hits, and that line.
    fn neighbourhood_reset<'l>(
        &self,
        streams: &[&'l [Line]],
        hits: &[Hit],
        now: DateTime<Utc>,
        zone: Tz,
    ) -> Option<(crate::backoff::StatedReset, &'l str)> {
        hits.iter().rev().find_map(|hit| {
            let lines = streams[hit.stream];
            // From after a retry the client went past: a reset stated before it is stale
            // (gemini-cli's `Please retry in 13.1s`, retried, then `… in 90s`, or a daily
            // limit); unless every hit after it is a bare status (`Attempt 2 failed with
            // status 429. Giving up.`), which restates the limit before the retry.
            let around = hit.first_line.saturating_sub(NEIGHBOURHOOD_LINES);
            let first = around.max(hit.after_retry);
            let last = (hit.last_line + NEIGHBOURHOOD_LINES).min(lines.len().saturating_sub(1));
            let only_statuses_after = hits
                .iter()
                .filter(|other| other.stream == hit.stream && other.first_line >= hit.after_retry)
                .all(|other| other.matched.kind == HitKind::Status);
            let restated = if only_statuses_after { around..first } else { first..first };
            (first..=last).chain(restated).find_map(|index| {
                let line = &lines[index];
                let usable = line.origin != Origin::ToolOutput
                    && !line.text.is_empty()
                    && !line.retried
                    && !is_countdown(&line.text)
                    && !RATE_LIMIT_EVENT.is_match(&line.text)
                    && !RATELIMIT_RESET_KIND.is_match(&line.text)
                    && self.is_vetoed(&line.text).is_none();
                if usable {
                    let following = following_texts(lines, index);
                    reset_with_continuation(&line.text, &following, now, zone)
                        .map(|reset| (reset, line.text.as_str()))
                } else {
                    None
                }
            })
        })
    }
}

/// `text` with the numbers of its number-only words (and of time stamps) as `#`: a limit
/// restated after a retry may count its use anew (`Used 29854`, later `Used 29100`) or
/// come with a log line's stamp; a word with letters in it (`gpt-4`, `gemini-2.0-flash`,
/// `o3`) is a name and kept whole, so two models' limits stay two.
fn numbers_left_out(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let is_stamp_or_number = word.chars().all(|c| !c.is_alphabetic() || c == 'T' || c == 'Z');
            if !is_stamp_or_number {
                return word.to_string();
            }
            let mut shape = String::with_capacity(word.len());
            for c in word.chars() {
                if !(c.is_ascii_digit() || matches!(c, '.' | ':' | '-' | 'T' | 'Z')) {
                    shape.push(c);
                } else if !shape.ends_with('#') {
                    shape.push('#');
                }
            }
            shape
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The part of `text` a hit matched at `start..end` shows: the message a client's JSON
/// line carries, else the whole line when it is short, else [`MATCHED_LINE_MAX_CHARS`]
/// around the match.
fn excerpt(text: &str, start: usize, end: usize) -> String {
    // A client's JSON line (a `claude -p` result of 3 KB, a stream-json event) is read by
    // the message it carries, not by the field names around the match; a dumped error's
    // field by its text (see `readable_message`).
    let matched = text.get(start..end).unwrap_or_default();
    let shown = match json_message(text, matched).filter(|_| !matched.is_empty()) {
        Some(message) => readable_message(&message),
        None => {
            let readable = readable_message(text);
            if readable == text.trim() {
                return excerpt_of_text(text, start, end);
            }
            readable
        }
    };
    match shown.find(matched).filter(|_| !matched.is_empty()) {
        Some(at) => excerpt_of_text(&shown, at, at + matched.len()),
        None => excerpt_of_text(&shown, 0, 0),
    }
}

/// [`excerpt`] of text that is no JSON line.
fn excerpt_of_text(text: &str, start: usize, end: usize) -> String {
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

/// The message a JSON object line carries — `result`, `message`, `error.message`, `error`,
/// the text of `message.content` — the one that holds `matched`, else the first.
pub(crate) fn json_message(text: &str, matched: &str) -> Option<String> {
    use serde_json::Value;
    let Ok(object) = serde_json::from_str::<Value>(text.trim()) else {
        return message_of_cleaned_json(text, matched);
    };
    let error = object.get("error");
    let message = object.get("message");
    // A stream-json `assistant` event carries its text in `message.content[].text`.
    let content = message.and_then(|message| message.get("content")).and_then(Value::as_array);
    let texts = content.into_iter().flatten().filter_map(|part| part.get("text"));
    let candidates: Vec<&str> =
        [object.get("result"), message, error.and_then(|error| error.get("message")), error]
            .into_iter()
            .flatten()
            .chain(texts)
            .filter_map(Value::as_str)
            .filter(|candidate| !candidate.trim().is_empty())
            .collect();
    let holding = candidates.iter().find(|candidate| candidate.contains(matched));
    holding.or(candidates.first()).map(|message| message.to_string())
}

/// `line` as a person reads it: a dumped field holding the message (`"message": "…",`,
/// `message: '…',` — gemini-cli's error dumps), or a line of such a dump's text alone
/// (`'Please retry in 33415.2s.',`), shows its text, and an API error body
/// inside it (`{"error":{"code":400,"message":"API key not valid…","status":…}}`) its
/// code, status and message: `400 INVALID_ARGUMENT: API key not valid…`.
pub(crate) fn readable_message(line: &str) -> String {
    static FIELD: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        patterns::compile(
            // A named field in either quotes, or a single-quoted line alone (a dump's text,
            // never a line of JSON or CSV).
            r#"^(?:["']?(?:message|result|error)["']?\s*:\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')|'((?:[^'\\]|\\.)*)')\s*,?$"#,
        )
    });
    let field_text = |text: &str| -> String {
        let trimmed = text.trim();
        match FIELD.captures(trimmed) {
            Some(found) => match (found.get(1), found.get(2).or_else(|| found.get(3))) {
                (Some(quoted), _) => serde_json::from_str::<String>(&format!("\"{}\"", quoted.as_str()))
                    .unwrap_or_else(|_| quoted.as_str().to_string()),
                (None, Some(single)) => single.as_str().to_string(),
                (None, None) => trimmed.to_string(),
            },
            None => trimmed.to_string(),
        }
    };
    let mut text = field_text(line);
    let mut body_shown = false;
    if let Some(at) = text.find("{\"error\":") {
        let mut values = serde_json::Deserializer::from_str(&text[at..]).into_iter::<serde_json::Value>();
        if let Some(Ok(body)) = values.next() {
            let end = at + values.byte_offset();
            let error = &body["error"];
            if let Some(message) = error["message"].as_str().filter(|message| !message.trim().is_empty()) {
                let label: Vec<String> = [&error["code"], &error["status"]]
                    .into_iter()
                    .filter_map(|part| match part {
                        serde_json::Value::Number(number) => Some(number.to_string()),
                        serde_json::Value::String(word) if !word.is_empty() => Some(word.clone()),
                        _ => None,
                    })
                    .collect();
                let shown = match label.is_empty() {
                    true => message.to_string(),
                    false => format!("{}: {message}", label.join(" ")),
                };
                text.replace_range(at..end, &shown);
                body_shown = true;
            }
        }
    }
    // The body was the value of a field whose quotes cleaning left undone; decoded, a
    // `\u0000` is a NUL, which a text column refuses.
    let text = if body_shown { field_text(&text) } else { text };
    crate::db::storable_text(&text).into_owned()
}

/// [`json_message`] of a JSON line cleaning left unparseable (its `\"` escapes undone,
/// for an error body quoted inside a message): the text of each `"result":"…"` and
/// `"message":"…"` up to where the next field begins, the one holding `matched`, else
/// the first.
fn message_of_cleaned_json(text: &str, matched: &str) -> Option<String> {
    static FIELD: std::sync::LazyLock<Regex> =
        std::sync::LazyLock::new(|| patterns::compile(r#""(?:result|message)"\s*:\s*""#));
    static NEXT_FIELD: std::sync::LazyLock<Regex> =
        std::sync::LazyLock::new(|| patterns::compile(r#""\s*[,}\]]+\s*"[A-Za-z_]+"\s*:|"\s*[}\]]*\s*$"#));
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let candidates: Vec<&str> = FIELD
        .find_iter(text)
        .map(|field| {
            let rest = &text[field.end()..];
            // The field ends where the next begins — not inside an error body the message
            // quotes, whose braces are still open there.
            let is_balanced = |part: &str| {
                part.matches('{').count() == part.matches('}').count()
                    && part.matches('[').count() == part.matches(']').count()
            };
            let end = NEXT_FIELD
                .find_iter(rest)
                .map(|next| next.start())
                .find(|end| is_balanced(&rest[..*end]))
                .unwrap_or(rest.len());
            rest[..end].trim()
        })
        .filter(|candidate| !candidate.is_empty())
        .collect();
    let holding = candidates.iter().find(|candidate| candidate.contains(matched));
    holding.or(candidates.first()).map(|message| message.to_string())
}

/// The last line of `lines` that announces the client's retry (a countdown still judged a
/// retry) and that the client's own output follows: it retried, and what it met after
/// is the run's outcome. None when the output ends with the notice (a client stopped
/// while it waited), or with only noise after it (a stack frame, `[object Object]`: what
/// the item's error passes over too), which tells of no other outcome.
fn last_retry_followed(lines: &[Line]) -> Option<usize> {
    let mut followed = false;
    for (index, line) in lines.iter().enumerate().rev() {
        if line.origin == Origin::ToolOutput || line.text.is_empty() {
            continue;
        }
        if line.retried && is_countdown(&line.text) {
            if followed {
                return Some(index);
            }
        } else if !line.retried && !tells_nothing(&line.text) {
            followed = true;
        }
    }
    None
}

/// A line that tells of no outcome of its own: noise as the item's error passes over it
/// (a stack frame, `[object Object]`, a dumped field, a brace or a bare number), or a
/// line of gemini-cli's helpers (`[ERROR] [IDEClient] …`, which fails nothing).
fn tells_nothing(text: &str) -> bool {
    static HELPER_ERROR: std::sync::LazyLock<Regex> =
        std::sync::LazyLock::new(|| patterns::compile(r"^\[ERROR\]\s*\[[A-Za-z]+\]"));
    !text.chars().any(char::is_alphabetic) || crate::drain::is_noise(text) || HELPER_ERROR.is_match(text)
}

fn fallback_follows(lines: &[Line], last_line: usize) -> bool {
    lines.iter().skip(last_line + 1).take(2).any(|line| FALLBACK_FOLLOWING.is_match(&line.text))
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
    /// The first line of its stream after the last retry the client went past and printed
    /// more after ([`last_retry_followed`]); 0 without one.
    after_retry: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorVerdict {
    /// `"is_error": true`, `{"type":"error"...}`, `API Error: ...` and the like.
    Error,
    /// A structured result that says `"is_error": false`.
    Success,
    Unknown,
}

/// Whether `stdout` is one JSON object with a `response` and no `error` (with whatever a
/// wrapper printed after it): gemini-cli's `--output-format json` answer
/// (docs/rate-limits.md, "How the output is read").
fn is_json_answer(stdout: &[u8]) -> bool {
    empty_answer::json_answer(&String::from_utf8_lossy(stdout.trim_ascii()))
        .is_some_and(|object| object.contains_key("response") && !object.contains_key("error"))
}

/// A JSON object inside a sentence (`the customer got {"type":"error",…} after the
/// upgrade`): words of prose before it and more words after it. The run's own error
/// object stands alone, after a log line's stamp and level (`2026-12-06T09:59:59Z ERROR
/// {…}`) or a label, and with at most a note after it (`{…} (request id: abc)`).
fn quoted_in_a_sentence(text: &str) -> bool {
    let (Some(start), Some(end)) = (text.find(['{', '[']), text.rfind(['}', ']'])) else { return false };
    let words_before = text[..start]
        .split_whitespace()
        .filter(|word| word.chars().all(|c| c.is_alphabetic() || c == ',' || c == '\''))
        .count();
    words_before >= 3 && text[end + 1..].chars().any(char::is_alphabetic)
}

fn error_verdict(lines: &[Line]) -> ErrorVerdict {
    // A client's notice of a retry it is making is not the run's verdict.
    let worker_lines = || {
        lines.iter().filter(|line| {
            line.origin == Origin::Worker && !line.text.is_empty() && !is_countdown(&line.text)
        })
    };
    // A result object the client printed says it, in its own field: read from the object,
    // not from its strings' text, where a model's answer may quote `"is_error": true`
    // (docs/rate-limits.md: a run whose structured result says it succeeded is a success).
    let parsed: Vec<bool> = worker_lines().filter_map(|line| line.is_error).collect();
    if !parsed.is_empty() {
        return match parsed.contains(&true) {
            true => ErrorVerdict::Error,
            false => ErrorVerdict::Success,
        };
    }
    if worker_lines().any(|line| IS_ERROR_TRUE.is_match(&line.text)) {
        ErrorVerdict::Error
    } else if worker_lines().any(|line| {
        IS_ERROR_FALSE.is_match(&line.text)
            || TURN_COMPLETED.is_match(&line.text)
            || RESULT_STATUS_SUCCESS.is_match(&line.text)
    }) {
        ErrorVerdict::Success
    } else if worker_lines()
        .any(|line| ERROR_OBJECT.is_match(&line.text) && !quoted_in_a_sentence(&line.text))
        || [worker_lines().next(), worker_lines().next_back()]
            .into_iter()
            .flatten()
            .any(|line| ERROR_OUTPUT_LINE.is_match(&line.text) && !quoted_in_a_sentence(&line.text))
    {
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

/// Does the exact instant `exact` name the moment of `clock`, a time of day whose stated
/// minute (or second) it falls in: `resetsAt` 21:25:30 and "resets 9:25pm"? Then the
/// exact one is the reset. A clock time that passed just now is compared by that moment,
/// not by its next occurrence a day or a week later.
fn names_the_same_moment(exact: &crate::backoff::StatedReset, clock: &crate::backoff::StatedReset) -> bool {
    use crate::backoff::ResetForm;
    if exact.form != ResetForm::Exact || clock.form.period().is_none() {
        return false;
    }
    use chrono::Timelike as _;
    let minute_start =
        |at: DateTime<Utc>| at.with_second(0).and_then(|at| at.with_nanosecond(0)).unwrap_or(at);
    [Some(clock.at), clock.just_passed].into_iter().flatten().any(|moment| {
        let minute = minute_start(moment);
        minute <= exact.at && exact.at < minute + chrono::Duration::minutes(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sunday 2025-11-23 10:00 UTC: 12:00 in Jerusalem, 02:00 in Los Angeles.
    pub(super) const NOW: &str = "2025-11-23T10:00:00Z";
    pub(super) const ZONE: Tz = chrono_tz::Asia::Jerusalem;

    pub(super) fn instant(text: &str) -> DateTime<Utc> {
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
        // --- Access refused: a key, a login, a model (docs/rate-limits.md, "Needs attention") ---
        ("Claude Code: a subscriber's login expired", Claude,
            "OAuth token has expired. Please obtain a new token or refresh your existing token.", Some(1), Attention),
        ("Claude Code: the key rejected, asked to log in", Claude,
            r#"Invalid API key · Please run /login"#, Some(1), Attention),
        ("Claude Code: API Error 401 with the error object", Claude,
            r#"API Error: 401 {"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            Some(1), Attention),
        ("codex: a login whose refresh token expired", OpenAi,
            "ERROR: Your access token could not be refreshed because your refresh token has expired. Please log out and sign in again.",
            Some(1), Attention),
        ("codex: a login that could not be refreshed", OpenAi,
            "ERROR: Your access token could not be refreshed. Please log out and sign in again.", Some(1), Attention),
        ("codex: no key in its environment", OpenAi,
            "ERROR: Missing environment variable: `OPENAI_API_KEY`.", Some(1), Attention),
        ("gemini-cli: no key in its environment", Gemini,
            "When using Gemini API, you must specify the GEMINI_API_KEY environment variable.\nUpdate your environment and try again (no reload needed if using .env)!",
            Some(41), Attention),
        ("a sentence about a missing key in an answer is the item's", OpenAi,
            "The deploy failed on a missing environment variable: OPENAI_API_KEY, says the log.", Some(0), Other),
        ("codex: a ChatGPT credential expired", OpenAi,
            "ERROR: Your ChatGPT credential expired. Reopen Codex to reconnect.", Some(1), Attention),
        ("codex: the workspace's spend cap", OpenAi,
            "ERROR: You hit your spend cap set in your workspace. Increase your spend cap to continue.", Some(1), Attention),
        ("codex: the spend cap an owner set", OpenAi,
            r#"{"type":"turn.failed","error":{"message":"You hit your spend cap set by the owner of your workspace. Ask an owner to increase your spend cap to continue."}}"#,
            Some(1), Attention),
        ("codex: high load is the server's", OpenAi,
            "ERROR: Codex is currently experiencing high load.", Some(1), Server),
        ("a sentence about a spend cap is the item's", OpenAi,
            "The finance report says the team hit the spend cap last month.", Some(0), Other),
        ("an answer that talks about an invalid API key is the item's content", Claude,
            "The ticket says: Invalid API key when the user logs in.", Some(0), Other),
        ("a worker's own fetch refused with 403 is the item's failure", Http,
            "curl: (22) The requested URL returned error: 403 Forbidden", Some(22), Other),
        ("a shell's permission denied is the item's failure", Http,
            "sh: 1: ./convert: Permission denied", Some(126), Other),
        // --- Claude Code and the Anthropic API ---
        ("claude -p json exits 0 with is_error and an epoch", Claude,
            r#"{"type":"result","subtype":"success","is_error":true,"duration_ms":812,"result":"Claude AI usage limit reached|1747353600","session_id":"4f1c"}"#,
            Some(0), Hit(Some("2025-05-16T00:00:00Z"))),
        ("plain epoch after a pipe", Claude, "Claude AI usage limit reached|1763744400", Some(1),
            Hit(Some("2025-11-21T17:00:00Z"))),
        ("epoch in milliseconds", Claude, "Claude AI usage limit reached|1763913600000", Some(1),
            Hit(Some("2025-11-23T16:00:00Z"))),
        ("a result that says is_error false is a success whatever it quotes", Claude,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Claude AI usage limit reached|1763913600"}"#,
            Some(0), Other),
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
            Some(1), Hit(Some("2025-11-23T10:01:00Z"))),
        ("Python SDK dict repr", Claude,
            "anthropic.RateLimitError: Error code: 429 - {'type': 'error', 'error': {'type': 'rate_limit_error', 'message': 'Number of request tokens has exceeded your per-minute rate limit'}}",
            Some(1), Hit(Some("2025-11-23T10:01:00Z"))),
        ("anthropic reset header of the exhausted kind", Claude,
            "HTTP/1.1 429 Too Many Requests\nanthropic-ratelimit-requests-remaining: 48\nanthropic-ratelimit-tokens-remaining: 0\nanthropic-ratelimit-requests-reset: 2025-11-23T10:00:30Z\nanthropic-ratelimit-tokens-reset: 2025-11-23T10:01:00Z\n\n{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Rate limited\"}}",
            Some(22), Hit(Some("2025-11-23T10:01:00Z"))),
        ("credit balance too low", Claude,
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            Some(1), Attention),
        ("workspace limit keeps the day access returns", Claude,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified API usage limits. You will regain access on 2025-12-01 at 00:00 UTC."}}"#,
            Some(1), Hit(Some("2025-12-01T00:00:00Z"))),
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
        ("a text answer with a client's error line inside it", Claude,
            "Summary of the ticket:\nThe customer reports the export fails.\nSteps tried:\n1. restart\n2. clear cache\n3. re-login\nThe log shows:\nAPI Error: 529 Overloaded\nThen it worked again.\nRoot cause: the upstream was busy.\nFix: none needed.\nThe customer asks for a fix by Friday.",
            Some(0), Other),
        ("a client's error line closing an exit-0 output", Claude, "Working on it\nAPI Error: 529 Overloaded", Some(0), Server),
        ("successful result that discusses errors", Claude,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"I fixed the retry loop: on API Error: 500 or a rate_limit_error we now wait, and when the usage limit is reached we stop."}"#,
            Some(0), Other),
        ("warning before the limit", Claude, "Approaching usage limit · resets at 5pm", Some(1), Other),
        ("percentage warning", Claude, "You've used 90% of your weekly limit · resets Oct 31, 9am", Some(1), Other),
        ("model fallback", Claude, "Opus 4 limit reached, now using Sonnet 4", Some(0), Other),
        ("status panel", Claude,
            "Current session\n█████████████████████████ 100% used\nResets 2:20pm (Europe/Paris)\nCurrent week (all models)\n███ 6% used\nResets Oct 31, 9am",
            Some(0), Other),
        // Claude Code's stream-json notice of a request it is retrying (here an overloaded
        // 529) is a retry countdown: the limit after it is the run's outcome.
        ("claude stream-json api_retry notice before the limit", Claude,
            "{\"type\":\"system\",\"subtype\":\"init\",\"model\":\"claude-sonnet-4\"}\n\
             {\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":1,\"max_retries\":10,\"retry_delay_ms\":549.5,\"error_status\":529,\"error\":\"overloaded\"}\n\
             {\"type\":\"rate_limit_event\",\"rate_limit_info\":{\"status\":\"rejected\",\"resetsAt\":1763928000,\"rateLimitType\":\"five_hour\"}}\n\
             {\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"result\":\"You've hit your limit · resets 8pm (UTC)\"}",
            Some(1), Hit(Some("2025-11-23T20:00:00Z"))),
        ("claude stream-json api_retry notices, then a server error", Claude,
            "{\"type\":\"system\",\"subtype\":\"api_retry\",\"attempt\":10,\"max_retries\":10,\"retry_delay_ms\":8000,\"error_status\":500,\"error\":\"server_error\"}\n\
             {\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"result\":\"API Error: 500 {\\\"type\\\":\\\"error\\\",\\\"error\\\":{\\\"type\\\":\\\"api_error\\\",\\\"message\\\":\\\"Internal server error\\\"}}\"}",
            Some(1), Server),
        ("a file system's quota is the host's, no vendor's", Claude,
            "cp: error writing '/data/x': Disk quota exceeded", Some(1), Other),
        ("node's EDQUOT", OpenAi, "Error: EDQUOT: disk quota exceeded, write", Some(1), Other),
        ("python's errno 122", Gemini, "OSError: [Errno 122] Disk quota exceeded: '/data/out.json'", Some(1), Other),
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
        ("a gemini json answer that is a limit's wording is the item's content", Gemini,
            r#"{"session_id":"x","response":"Quota exceeded for quota metric requests per minute","stats":{}}"#,
            Some(0), Other),
        ("a gemini json answer of one error code word is the item's content", Gemini,
            "{\n  \"response\": \"RESOURCE_EXHAUSTED\"\n}", Some(0), Other),
        ("a json object with a response and an error is not an answer", Gemini,
            r#"{"response":null,"error":{"code":429,"message":"Quota exceeded for quota metric requests per minute"}}"#,
            Some(0), Hit(Some("2025-11-23T10:01:00Z"))),
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
            Some(1), Hit(Some("2025-11-23T10:01:00Z"))),
        ("Gemini JSON escaped inside an API Error", Gemini,
            r#"[API Error: {"error":{"message":"{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"Resource has been exhausted (e.g. check quota).\",\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}\n","code":429,"status":"Too Many Requests"}}]"#,
            Some(1), Hit(None)),
        ("billing words are not attention on gemini", Gemini,
            "You exceeded your current quota, please check your plan and billing details. Please retry in 20s.",
            Some(1), Hit(Some("2025-11-23T10:00:20Z"))),
        // --- per-window limits without a stated reset: the window's next boundary ---
        ("OpenAI requests per day: next midnight UTC", OpenAi,
            "Error code: 429 - Rate limit reached for gpt-4o-mini in organization org-x on requests per day (RPD): Limit 200, Used 200, Requested 1.",
            Some(1), Hit(Some("2025-11-24T00:00:00Z"))),
        ("OpenAI tokens per minute: next whole minute", OpenAi,
            "Error code: 429 - Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 30000, Requested 900.",
            Some(1), Hit(Some("2025-11-23T10:01:00Z"))),
        ("a stated reset wins over the window", OpenAi,
            "Error code: 429 - Rate limit reached for gpt-4o in organization org-x on tokens per min (TPM): Limit 30000, Used 30000, Requested 900. Please try again in 1.8s.",
            Some(1), Hit(Some("2025-11-23T10:00:01.8Z"))),
        ("Gemini daily quota: next midnight Pacific", Gemini,
            "TerminalQuotaError: You have exhausted your daily quota on this model.",
            Some(1), Hit(Some("2025-11-24T08:00:00Z"))),
        ("hourly limit over HTTP: next whole hour", Http,
            "HTTP/1.1 429 Too Many Requests\n\n{\"error\":\"hourly request limit exceeded\"}",
            Some(1), Hit(Some("2025-11-23T11:00:00Z"))),
        ("limit: 0 needs attention whatever the window", Gemini,
            r#"{"error":{"code":429,"message":"Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro, quotaId: GenerateRequestsPerDayPerProjectPerModel-FreeTier","status":"RESOURCE_EXHAUSTED"}}"#,
            Some(1), Attention),
        // --- generic HTTP ---
        ("429 with Retry-After seconds", Http, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\n\r\n",
            Some(22), Hit(Some("2025-11-23T10:02:00Z"))),
        ("429 with Retry-After HTTP-date", Http,
            "HTTP/2 429\nretry-after: Sun, 23 Nov 2025 11:00:00 GMT\ncontent-type: application/json",
            Some(22), Hit(Some("2025-11-23T11:00:00Z"))),
        ("bare 429", Http, "curl: (22) The requested URL returned error: 429 Too Many Requests", Some(22), Hit(None)),
        ("curl 8 prints no reason phrase", Http, "curl: (22) The requested URL returned error: 429", Some(22), Hit(None)),
        ("curl 8 with the Retry-After it saw", Http, "< retry-after: 30\ncurl: (22) The requested URL returned error: 429", Some(22),
            Hit(Some("2025-11-23T10:00:30Z"))),
        ("a weekly and a 5-hour limit: the later reset", Claude,
            "Opus weekly limit reached ∙ resets Nov 26, 9am\n5-hour limit reached ∙ resets 3pm", Some(1),
            Hit(Some("2025-11-26T07:00:00Z"))),
        ("a 5-hour and a weekly limit: the later reset", Claude,
            "5-hour limit reached ∙ resets 3pm\nOpus weekly limit reached ∙ resets Nov 26, 9am", Some(1),
            Hit(Some("2025-11-26T07:00:00Z"))),
        ("two spent OpenAI limits: the later reset", OpenAi,
            "HTTP/1.1 429 Too Many Requests\nx-ratelimit-remaining-requests: 0\nx-ratelimit-reset-requests: 20s\nx-ratelimit-remaining-tokens: 0\nx-ratelimit-reset-tokens: 6m0s", Some(1),
            Hit(Some("2025-11-23T10:06:00Z"))),
        ("Retry-After of zero is now", Http, "HTTP/1.1 429 Too Many Requests\nRetry-After: 0", Some(1),
            Hit(Some("2025-11-23T10:00:00Z"))),
        ("an RFC 850 Retry-After", Http, "HTTP/1.1 429 Too Many Requests\nRetry-After: Sunday, 23-Nov-25 11:00:00 GMT", Some(1),
            Hit(Some("2025-11-23T11:00:00Z"))),
        ("an asctime Retry-After", Http, "HTTP/1.1 429 Too Many Requests\nRetry-After: Sun Nov 23 11:00:00 2025", Some(1),
            Hit(Some("2025-11-23T11:00:00Z"))),
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
        ("an epoch header with a fraction", Http,
            "HTTP/1.1 429 Too Many Requests\nX-RateLimit-Reset: 1763892020.5\nX-RateLimit-Reset-After: 20.5", Some(1),
            Hit(Some("2025-11-23T10:00:20.5Z"))),
        ("resetsAt with a fraction", Claude,
            r#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":1763892020.5}}"#, Some(1),
            Hit(Some("2025-11-23T10:00:20.5Z"))),
        ("reset_at in milliseconds with a fraction", Http,
            r#"{"error":"rate_limited","reset_at":1763892020500.0}"#, Some(1), Hit(Some("2025-11-23T10:00:20.5Z"))),
        ("an epoch in a sentence", Http, "429 Too Many Requests: rate limit exceeded, reset at 1763892020", Some(1),
            Hit(Some("2025-11-23T10:00:20Z"))),
        ("an epoch in a sentence with its unit named", Http, "429 Too Many Requests. Quota resets at 1763892020 (unix)",
            Some(1), Hit(Some("2025-11-23T10:00:20Z"))),
        ("httpx quotes the status it got", Http,
            "httpx.HTTPStatusError: Client error '429 Too Many Requests' for url 'http://127.0.0.1:8111/v1/messages'\nFor more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/429",
            Some(1), Hit(None)),
        ("httpx under the claude profile", Claude,
            "httpx.HTTPStatusError: Client error '429 Too Many Requests' for url 'https://api.example/v1'", Some(1), Hit(None)),
        ("a sentence quoting a status is prose", Http,
            "handling the error '429 Too Many Requests' from the API took 3 tries", Some(1), Other),
        ("a status quoted in a log line is prose", Http,
            "Got the error '429 Too Many Requests' once; retried and it worked", Some(1), Other),
        ("a status quoted after an error word is prose", Http,
            "Ignoring the error '429 Too Many Requests' from the mirror", Some(1), Other),
        ("a bare status inside a sentence is prose", Http,
            "Processed batch; saw HTTP 429 twice from the cache, all fine", Some(1), Other),
        ("two limits differing in their words: the later reset", Http,
            "Error: rate limit exceeded for this key, try again in 50s\nError: rate limit exceeded for the project, try again in 5s",
            Some(1), Hit(Some("2025-11-23T10:00:50Z"))),
        ("one limit restated with its use counted anew: its last wait", OpenAi,
            "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29854, Requested 1203. Please try again in 28.227s.\nRate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29100, Requested 1203. Please try again in 2.999s.",
            Some(1), Hit(Some("2025-11-23T10:00:02.999Z"))),
        ("one limit restated on stamped log lines: its last wait", Http,
            "2025-11-23T09:59:30Z ERROR 429 Too Many Requests: try again in 30s\n2025-11-23T09:59:58Z ERROR 429 Too Many Requests: try again in 2s",
            Some(1), Hit(Some("2025-11-23T10:00:02Z"))),
        ("a stamped log line holding the client's own error object", Claude,
            r#"2025-11-23T09:59:59Z ERROR {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            Some(0), Server),
        ("the client's own error object with a note after it", Claude,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}} (request id: req_011CVy)"#,
            Some(0), Server),
        ("two models' limits: the later reset", OpenAi,
            "Rate limit reached for gpt-4 in organization org-abc on tokens per min (TPM): Limit 10000, Used 9000, Requested 2000. Please try again in 50s.\nRate limit reached for gpt-5 in organization org-abc on tokens per min (TPM): Limit 30000, Used 29900, Requested 2000. Please try again in 5s.",
            Some(1), Hit(Some("2025-11-23T10:00:50Z"))),
        ("a Unix time after reset and a colon", Http, "429 Too Many Requests: rate limit exceeded. Reset: 1763892020",
            Some(1), Hit(Some("2025-11-23T10:00:20Z"))),
        ("one limit restated in another unit: its last wait", OpenAi,
            "Rate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 1m12s.\nRate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 45.3s.",
            Some(1), Hit(Some("2025-11-23T10:00:45.3Z"))),
        ("a number after availability words is no Unix time", Http,
            "429 Too Many Requests: tokens available 1500000000 soon", Some(1), Hit(None)),
        ("urllib3 gave up on 429s", Http,
            "requests.exceptions.RetryError: HTTPConnectionPool(host='127.0.0.1', port=8111): Max retries exceeded with url: /v1/chat (Caused by ResponseError('too many 429 error responses'))",
            Some(1), Hit(None)),
        ("a bare status 429 in a line of output is no limit", Http,
            "Error: Cannot find module \"./status 429.js\"", Some(1), Other),
        ("a success mentioning a status 429 is a success", Http,
            "ticket #88: HTTP 429 from upstream is now retried", Some(0), Other),
        ("an answer quoting an error object is the item's content", Claude,
            r#"Summary of ticket 12: the customer got {"type":"error","error":{"type":"not_found_error","message":"model: claude-2"}} after the upgrade, fixed by pinning."#,
            Some(0), Other),
        ("Anthropic's API: the model is gone", Claude,
            r#"API Error: 404 {"type":"error","error":{"type":"not_found_error","message":"model: claude-9-opus"}}"#,
            Some(1), Attention),
        ("the same limit met again after the client's retry: its last wait", OpenAi,
            "Rate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 28.227s.\nRate limit reached for gpt-4o on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 2.999s.\nGiving up after 2 tries.",
            Some(1), Hit(Some("2025-11-23T10:00:02.999Z"))),
        ("ordinary failure", Http, "Error: ENOENT: no such file or directory, open 'input.json'", Some(1), Other),
        ("a count of 429 is not a status", Http, "Processed 429 items in 12s", Some(0), Other),
    ];

    /// `None` when the outcome is what the case expects, else what went wrong.
    fn mismatch(case: &Case, outcome: &Outcome) -> Option<String> {
        let &(name, _, _, _, expect) = case;
        let matches = match (expect, outcome) {
            (Hit(expected), Outcome::QuotaHit(hit)) => {
                !hit.needs_attention && hit.reset_at() == expected.map(instant)
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
            let outcome =
                Classifier::new(profile, &[], &[]).classify(stdout.as_bytes(), b"", exit_code, now(), ZONE);
            failures.extend(mismatch(case, &outcome));
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn gemini_stream_json_judges_neither_its_repeated_prompt_nor_a_successful_answer() {
        // gemini-cli's stream-json repeats its prompt (the item) as a user message.
        let stream = |ticket: &str, tail: &str| {
            format!(
                "{{\"type\":\"init\",\"timestamp\":\"2026-12-02T03:43:06.751Z\",\"session_id\":\"1\",\"model\":\"gemini-2.5-pro\"}}\n\
                 {{\"type\":\"message\",\"timestamp\":\"2026-12-02T03:43:06.768Z\",\"role\":\"user\",\"content\":{}}}\n{tail}\n",
                serde_json::Value::String(format!("{ticket}\n\n\nSummarise the item on stdin."))
            )
        };
        let quoting =
            "Customer pasted: Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw).";
        let failed = r#"{"type":"result","timestamp":"2026-12-02T03:43:13.109Z","status":"error","error":{"type":"unknown","message":"[API Error: You exceeded your current quota]"}}"#;
        let stderr = "Attempt 2 failed: You exceeded your current quota, please check your plan and billing details.\n\
                      * Quota exceeded for metric: generate_content_free_tier_requests, limit: 5, model: gemini-2.5-pro\n\
                      Please retry in 2.5s.\n";
        // Before: the ticket's "reset at 5pm" was taken for gemini's own, a wait of hours.
        match classify(Gemini, stream(quoting, failed).as_bytes(), stderr.as_bytes(), Some(173)) {
            Outcome::QuotaHit(hit) => {
                assert!(!hit.matched_line.contains("5pm"), "{hit:?}");
                assert_eq!(hit.reset_at(), Some(now() + chrono::Duration::milliseconds(2500)), "{hit:?}");
            }
            other => panic!("{other:?}"),
        }
        // A refused key with the same ticket: access refused, not the ticket's limit.
        let fixture = "../../tests/fixtures/real-clients/gemini-stream-json-auth-invalid";
        let stdout = include_str!("../../tests/fixtures/real-clients/gemini-stream-json-auth-invalid/stdout");
        let stderr = include_str!("../../tests/fixtures/real-clients/gemini-stream-json-auth-invalid/stderr");
        let refused = stdout.lines().last().unwrap_or_default();
        match classify(Gemini, stream(quoting, refused).as_bytes(), stderr.as_bytes(), Some(144)) {
            Outcome::QuotaHit(hit) => {
                assert!(hit.access_refused && hit.reset.is_none(), "{fixture}: {hit:?}")
            }
            other => panic!("{fixture}: {other:?}"),
        }
        // A run that ended `"status":"success"` succeeded, whatever the ticket or the
        // answer says about limits.
        let answer = "{\"type\":\"message\",\"timestamp\":\"2026-12-02T03:43:07.140Z\",\"role\":\"assistant\",\"content\":\"429 Too Many Requests\",\"delta\":true}\n\
                      {\"type\":\"result\",\"timestamp\":\"2026-12-02T03:43:07.447Z\",\"status\":\"success\",\"stats\":{\"total_tokens\":37}}";
        let stdout = stream("Customer: our job hits 429 Too Many Requests", answer);
        assert_eq!(classify(Gemini, stdout.as_bytes(), b"", Some(0)), Outcome::Other);
        let stdout = stream(
            quoting,
            &answer.replace("429 Too Many Requests", "The ticket reports: usage limit reached, resets 8pm"),
        );
        assert_eq!(classify(Gemini, stdout.as_bytes(), b"", Some(0)), Outcome::Other);
    }

    #[test]
    fn an_error_object_on_one_line_or_several_counts_in_a_run_a_wrapper_made_exit_0() {
        // `client … | tee log` exits 0 whatever the client did: its error, on one line or
        // pretty-printed over several, with a wrapper's line after it, is still its error.
        let alone = "API Error: 401 {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"OAuth token has expired.\"}}\n";
        assert!(matches!(
            classify(Claude, alone.as_bytes(), b"", Some(0)),
            Outcome::QuotaHit(QuotaHit { access_refused: true, .. })
        ));
        let limit = "Claude AI usage limit reached|1796569559\n";
        assert!(matches!(classify(Claude, limit.as_bytes(), b"", Some(0)), Outcome::QuotaHit(_)));
        let pretty = "{\n  \"error\": {\n    \"message\": \"You exceeded your current quota, please check your plan and billing details.\",\n    \"type\": \"insufficient_quota\",\n    \"code\": \"insufficient_quota\"\n  }\n}\n";
        assert!(matches!(classify(OpenAi, pretty.as_bytes(), b"", Some(0)), Outcome::QuotaHit(_)));
        let wrapped = format!("{pretty}worker finished\n");
        assert!(matches!(classify(OpenAi, wrapped.as_bytes(), b"", Some(0)), Outcome::QuotaHit(_)));
        let pretty_auth = "{\n  \"type\": \"error\",\n  \"error\": {\"type\": \"authentication_error\", \"message\": \"invalid x-api-key\"}\n}\n";
        assert!(matches!(
            classify(Claude, pretty_auth.as_bytes(), b"", Some(0)),
            Outcome::QuotaHit(QuotaHit { access_refused: true, .. })
        ));
        // A limit message with a client's hint line after it (short output) is the client's.
        let hinted =
            "You've hit your 5-hour limit · resets 7am (UTC)\n/upgrade to increase your usage limit.\n";
        assert!(matches!(classify(Claude, hinted.as_bytes(), b"", Some(0)), Outcome::QuotaHit(_)));
    }

    #[test]
    fn every_json_fixture_of_a_real_client_reads_the_same_when_a_wrapper_makes_its_exit_0() {
        // `client … | tee log` exits 0: the client's JSON errors, on stdout or on stderr
        // beside no answer, are still all it printed.
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-clients");
        let mut checked = 0;
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let folder = entry.unwrap().path();
            let name = folder.file_name().unwrap().to_string_lossy().to_string();
            // A client that announces a long retry is stopped for it and read as failed,
            // whatever its exit (see `client_wait_hit`).
            if !(name.starts_with("codex-json-") || name.starts_with("gemini-json-"))
                || name.contains("long-retry")
            {
                continue;
            }
            let profile = if name.starts_with("codex") { OpenAi } else { Gemini };
            let meta = std::fs::read_to_string(folder.join("meta.toml")).unwrap();
            let code: i32 = meta
                .lines()
                .find_map(|line| line.strip_prefix("exit_code"))
                .and_then(|rest| rest.trim_start_matches([' ', '=']).trim().parse().ok())
                .unwrap_or(1);
            let (stdout, stderr) = (
                std::fs::read(folder.join("stdout")).unwrap(),
                std::fs::read(folder.join("stderr")).unwrap(),
            );
            let kind = |outcome: Outcome| match outcome {
                Outcome::QuotaHit(hit) => format!("hit {}", hit.access_refused),
                Outcome::ServerError { .. } => "server".to_string(),
                other => format!("{other:?}"),
            };
            let as_run = kind(classify(profile, &stdout, &stderr, Some(code)));
            let wrapped = kind(classify(profile, &stdout, &stderr, Some(0)));
            if as_run.starts_with("hit") || as_run == "server" {
                assert_eq!(wrapped, as_run, "{name}");
                checked += 1;
            }
        }
        assert!(checked >= 10, "{checked} fixtures checked");
    }

    #[test]
    fn a_line_that_repeats_the_workers_own_input_is_neither_a_server_error_nor_a_limit() {
        // A client that echoes its prompt (the payload) on stderr before its own errors.
        let echo =
            |ticket: &str, error: &str| format!("Summarise the item on stdin.\n{ticket}\n{error}\n{error}\n");
        // codex's text mode does so under its header.
        let codex = |ticket: &str, error: &str| {
            format!("OpenAI Codex v0.171.0\n--------\nuser\nSummarise the item on stdin.\n\n<stdin>\n{ticket}\n</stdin>\n{error}\n{error}\n")
        };
        let classify_given = |input: &str, stderr: &str| {
            Classifier::new(OpenAi, &[], &[]).classify_given(
                input.as_bytes(),
                b"",
                stderr.as_bytes(),
                Some(1),
                now(),
                ZONE,
            )
        };
        let ticket = "Ticket 4711: checkout returns 502 Bad Gateway after the deploy.";
        let limit = "ERROR: You've hit your usage limit. Upgrade to Pro or try again at 7:44 AM.";
        let stderr = echo(ticket, limit);
        assert!(matches!(classify(OpenAi, b"", stderr.as_bytes(), Some(1)), Outcome::ServerError { .. }));
        let outcome = classify_given(&format!("{ticket}\n"), &stderr);
        assert!(matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(_), .. })), "{outcome:?}");
        // A limit quoted by the item is not the client's: the run failed for its own reason.
        let quoted = "Claude usage limit reached. Your limit will reset at 5pm.";
        let stderr =
            echo(&format!("{{\"text\": \"{quoted}\"}}"), "ERROR: the model's answer could not be parsed");
        assert!(matches!(classify(OpenAi, b"", stderr.as_bytes(), Some(1)), Outcome::QuotaHit(_)));
        assert!(matches!(classify_given(&format!("{{\"text\": \"{quoted}\"}}"), &stderr), Outcome::Other));
        // A wrapper hands codex a string of the payload, decoded (`jq -r .text | codex exec
        // …`): codex's own echo of its prompt is the item's, whatever drainctl knows of it.
        let ticket = "Customer ticket 4711.\nThe export API answers 502 Bad Gateway every time.";
        let outcome = classify_given("", &codex(ticket, limit));
        assert!(matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(_), .. })), "{outcome:?}");
        assert!(matches!(classify_given("", &echo(ticket, limit)), Outcome::ServerError { .. }));
        // The prompt itself read from stdin (`codex exec -`): no <stdin> block.
        let stderr = codex(ticket, limit)
            .replace("Summarise the item on stdin.\n\n<stdin>\n", "")
            .replace("</stdin>\n", "");
        let outcome = classify_given("", &stderr);
        assert!(matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(_), .. })), "{outcome:?}");
        let quoted_then_failed = codex(quoted, "ERROR: the model's answer could not be parsed");
        assert!(matches!(classify_given("", &quoted_then_failed), Outcome::Other));
        // Inside the <stdin> block even a line like codex's own error is the item's.
        let outcome = classify_given(
            "",
            &codex("ERROR: 502 Bad Gateway", "ERROR: the model's answer could not be parsed"),
        );
        assert_eq!(outcome, Outcome::Other);
        // Short lines of the input are the client's too: `}` or `Error` stay in play.
        let outcome =
            classify_given("Error\n", "Error\nRate limit reached for gpt-4o. Please try again in 20s.\n");
        assert!(matches!(outcome, Outcome::QuotaHit(_)), "{outcome:?}");
    }

    #[test]
    fn what_a_command_codex_ran_printed_is_not_codexs_own_word() {
        // codex's text mode prints a command the model ran under `exec`, its status and up
        // to 20 lines of its output.
        let codex = |output: &str, error: &str| {
            format!(
                "OpenAI Codex v0.171.0 (research preview)\n--------\nmodel: gpt-5-codex\n--------\nuser\n\
                 Summarise ticket T-12.\nthinking\n**Checking the service**\nexec\n\
                 bash -lc 'curl -sS -i https://status.internal/api' in /srv/work succeeded in 212ms:\n\
                 {output}\nServer: nginx\ncodex\nThe status endpoint is down; continuing.\n{error}\n{error}\n"
            )
        };
        let limit = "ERROR: You've hit your usage limit. Upgrade to Pro or try again at 8:00 PM.";
        let network = "ERROR: stream disconnected before completion: error sending request";
        let outcome = classify(OpenAi, b"", codex("HTTP/1.1 502 Bad Gateway", limit).as_bytes(), Some(1));
        assert!(matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(_), .. })), "{outcome:?}");
        // The 429 is the command's; codex's own word is a cut connection: a server error.
        let outcome =
            classify(OpenAi, b"", codex("HTTP/1.1 429 Too Many Requests", network).as_bytes(), Some(1));
        assert!(
            matches!(outcome, Outcome::ServerError { ref matched_line } if matched_line.contains("stream disconnected")),
            "{outcome:?}"
        );
        // The block ends at codex's next word, or after 21 lines: what follows is judged.
        let long: String = (0..21).map(|i| format!("line {i}\n")).collect();
        let after = format!("{long}HTTP/1.1 502 Bad Gateway");
        let outcome = classify(OpenAi, b"", codex(&after, limit).as_bytes(), Some(1));
        assert!(matches!(outcome, Outcome::ServerError { .. }), "{outcome:?}");
        // Without codex's header, an `exec` line is anybody's…
        let plain = format!("exec\nHTTP/1.1 502 Bad Gateway\n{limit}\n");
        assert!(matches!(classify(OpenAi, b"", plain.as_bytes(), Some(1)), Outcome::ServerError { .. }));
        // …unless its command's status follows, as when a long session's header is cut off.
        let headless = codex("HTTP/1.1 502 Bad Gateway", limit);
        let headless = &headless[headless.find("thinking").unwrap()..];
        let outcome = classify(OpenAi, b"", headless.as_bytes(), Some(1));
        assert!(matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(_), .. })), "{outcome:?}");
        // A command that ran over a minute: `succeeded in 1m 05s:`.
        let minute =
            codex("HTTP/1.1 502 Bad Gateway", limit).replace("succeeded in 212ms:", "succeeded in 1m 05s:");
        let outcome = classify(OpenAi, b"", minute.as_bytes(), Some(1));
        assert!(matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(_), .. })), "{outcome:?}");
    }

    #[test]
    fn reads_the_limit_from_stderr_too() {
        let outcome = classify(Claude, b"", b"Error: Claude AI usage limit reached|1763744400\n", Some(1));
        assert!(matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(reset), .. })
            if reset.at == instant("2025-11-21T17:00:00Z")));
    }

    fn classify(profile: Profile, stdout: &[u8], stderr: &[u8], exit_code: Option<i32>) -> Outcome {
        Classifier::new(profile, &[], &[]).classify(stdout, stderr, exit_code, now(), ZONE)
    }

    #[test]
    fn a_limit_the_client_retried_past_is_its_verdict_only_when_nothing_but_noise_follows() {
        let retried = "Attempt 1 failed: You exceeded your current quota, please check your plan and billing details.\n\
            * Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 3\n\
            Please retry in 0.600000s.\n\
            Suggested retry after 5s.. Retrying after 5982ms...\n";
        let reset_of = |stderr: &str| match classify(Gemini, b"", stderr.as_bytes(), Some(1)) {
            Outcome::QuotaHit(hit) => (hit.reset_at(), hit.access_refused),
            other => panic!("{other:?}"),
        };
        // Ended with the notice, or with a stack frame and gemini's crash line after it:
        // the limit and its 0.6 s (before, the noise voided it).
        let soon = now().checked_add_signed(chrono::Duration::milliseconds(600));
        assert_eq!(reset_of(retried), (soon, false));
        let noise = "    at async GeminiClient.generateContent (file:///app/bundle.js:12:5)\n\
             An unexpected critical error occurred:[object Object]\n";
        assert_eq!(reset_of(&format!("{retried}{noise}")), (soon, false));
        // So do a dumped error's fields and brace, a bare number, a helper's `[ERROR] [Tag]`
        // line (before: the limit was lost, or its reset).
        for after in [
            "  code: 429,\n  status: 'RESOURCE_EXHAUSTED',\n}\n",
            "0\n",
            "[ERROR] [IDEClient] Failed to connect\n",
        ] {
            assert_eq!(reset_of(&format!("{retried}{after}")), (soon, false), "{after}");
        }
        // A client that gave up after the retry: no reset stated after it, so the one
        // before it is the last word on the limit (before: none, a 5-minute guess).
        assert_eq!(
            reset_of(&format!("{retried}Attempt 2 failed with status 429. Giving up.\n")),
            (soon, false)
        );
        // A different limit met on the retry, stating no reset: its own window, not the
        // first limit's 0.6 s (a daily quota called again seconds later).
        let daily = format!(
            "{retried}Attempt 2 failed: You have exhausted your daily quota on this model.. Max attempts reached\n"
        );
        let (reset, _) = reset_of(&daily);
        assert!(reset.is_some_and(|at| at - now() > chrono::Duration::hours(1)), "{reset:?}");
        // Also when a bare give-up follows the daily limit (before: the first's 0.6 s).
        let daily_then_gave_up = format!(
            "{retried}You have exhausted your daily quota on this model.\nAttempt 2 failed with status 429. Giving up.\n"
        );
        let (reset, _) = reset_of(&daily_then_gave_up);
        assert!(reset.is_some_and(|at| at - now() > chrono::Duration::hours(1)), "{reset:?}");
        // A refused key met on the retry is the verdict.
        let refused = format!(
            "{retried}Error when talking to Gemini API _ApiError: {{\"error\":{{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\",\"status\":\"INVALID_ARGUMENT\"}}}}\n{noise}"
        );
        assert_eq!(reset_of(&refused), (None, true));
        // Retried once, then stopped at the second notice: the second limit's reset, not
        // the first's (before: its 13.1 s, counted from the stop, a window lost).
        let twice = "Attempt 1 failed: You exceeded your current quota, please check your plan and billing details.\n\
            * Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 3\n\
            Please retry in 13.119000s.\n\
            Suggested retry after 13s.. Retrying after 14865ms...\n\
            Attempt 2 failed: You exceeded your current quota, please check your plan and billing details.\n\
            * Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 3\n\
            Please retry in 0.040000s.\n\
            Suggested retry after 60s.. Retrying after 71366ms...\n";
        assert_eq!(reset_of(twice), (now().checked_add_signed(chrono::Duration::milliseconds(40)), false));
    }

    #[test]
    fn gemini_json_with_a_wrappers_line_after_it_is_its_answer_and_one_line_json_is_text() {
        // Its `response` quoting a limit stalls nothing (before: a 20-hour backoff).
        let wrapped = b"{\n  \"session_id\": \"s\",\n  \"response\": \"You have exhausted your daily quota on this model.\"\n}\nwrapper: done\n";
        assert_eq!(classify(Gemini, wrapped, b"", Some(0)), Outcome::Other);
        // A model's JSON lines naming an `error` are its answer, not the client's word
        // (before: "gemini's answer is incomplete", dead-lettered).
        let lines = b"{\"id\": 1, \"response\": \"Refund issued\", \"error\": \"card declined on first try\"}\n{\"id\": 2, \"response\": \"Address updated\", \"error\": null}\n";
        assert_eq!(classify(Gemini, lines, b"", Some(0)), Outcome::Other);
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
                reset: Some(crate::backoff::StatedReset {
                    at: instant("2025-11-21T17:00:00Z"),
                    form: crate::backoff::ResetForm::Exact,
                    just_passed: None,
                }),
                matched_line: "Claude AI usage limit reached|1763744400".to_string(),
                needs_attention: false,
                access_refused: false,
            })
        );
    }

    #[test]
    fn a_claude_result_ending_on_an_api_error_is_judged_by_its_status_and_text() {
        // Claude Code 2.1.332 names every failed request's end `api_error`, a 429 included.
        let result = r#"{"type":"result","subtype":"success","is_error":true,"terminal_reason":"api_error","api_error_status":429,"api_error_type":"rate_limit_error","api_error":"usage_limit_reached","result":"You've hit your 5-hour limit · resets 6am (UTC)"}"#;
        let Outcome::QuotaHit(hit) = classify(Claude, result.as_bytes(), b"", Some(1)) else {
            panic!("expected a quota hit, not a server error");
        };
        assert_eq!(hit.reset_at().map(|at| at.format("%H:%M").to_string()).as_deref(), Some("06:00"));
        let overloaded = r#"{"type":"result","is_error":true,"terminal_reason":"api_error","api_error_status":529,"api_error_type":"overloaded_error","result":"API Error: 529 Overloaded."}"#;
        assert!(matches!(classify(Claude, overloaded.as_bytes(), b"", Some(1)), Outcome::ServerError { .. }));
    }

    #[test]
    fn an_answer_reporting_a_limit_after_a_colon_is_a_success() {
        let answer = "The ticket reports: usage limit reached, resets 8pm";
        assert_eq!(classify(Claude, answer.as_bytes(), b"", Some(0)), Outcome::Other);
        let gemini = r#"{"session_id":"1","response":"The ticket reports: usage limit reached, resets 8pm","stats":{}}"#;
        assert_eq!(classify(Gemini, gemini.as_bytes(), b"", Some(0)), Outcome::Other);
        // A client's own label before the colon is still its message.
        let labelled = "Error: usage limit reached, resets 8pm";
        assert!(matches!(classify(Claude, labelled.as_bytes(), b"", Some(0)), Outcome::QuotaHit(_)));
    }

    #[test]
    fn a_window_boundary_is_marked_as_such() {
        let stdout = "Error code: 429 - Rate limit reached for gpt-4o on requests per minute (RPM): Limit 3, Used 3, Requested 1.";
        let Outcome::QuotaHit(hit) = classify(OpenAi, stdout.as_bytes(), b"", Some(1)) else {
            panic!("expected a hit");
        };
        assert_eq!(hit.reset.map(|stated| stated.form), Some(crate::backoff::ResetForm::WindowBoundary));
        let stated = "Claude AI usage limit reached|1763744400";
        let Outcome::QuotaHit(hit) = classify(Claude, stated.as_bytes(), b"", Some(1)) else {
            panic!("expected a hit");
        };
        assert_eq!(hit.reset.map(|stated| stated.form), Some(crate::backoff::ResetForm::Exact));
    }

    #[test]
    fn resets_at_wins_over_its_text_cut_to_a_minute_that_has_begun() {
        // Claude Code's stream-json: `resetsAt` 21:25:30, the text "resets 9:25pm". Read at
        // 21:25:04 the clock time's minute has begun; before, its end (21:26) won over
        // the exact instant, and a limit of 30-second windows lost every other window.
        let stdout = "{\"type\":\"rate_limit_event\",\"rate_limit_info\":{\"status\":\"rejected\",\"resetsAt\":1796505930,\"rateLimitType\":\"five_hour\"}}\n\
                      {\"type\":\"result\",\"subtype\":\"success\",\"is_error\":true,\"api_error_status\":429,\"result\":\"You've hit your 5-hour limit · resets 9:25pm (UTC)\"}";
        for now in ["2026-12-05T21:24:04Z", "2026-12-05T21:25:04Z"] {
            let outcome = Classifier::new(Claude, &[], &[]).classify(
                stdout.as_bytes(),
                b"",
                Some(1),
                instant(now),
                chrono_tz::UTC,
            );
            let Outcome::QuotaHit(hit) = outcome else { panic!("{now}: expected a hit") };
            assert_eq!(hit.reset.map(|stated| stated.at), Some(instant("2026-12-05T21:25:30Z")), "{now}");
        }
        // A later limit still wins over an exact instant of another minute: the weekly one.
        let weekly = "{\"type\":\"rate_limit_event\",\"rate_limit_info\":{\"status\":\"rejected\",\"resetsAt\":1796505930}}\n\
                      You've hit your weekly limit · resets 11pm (UTC)";
        let Outcome::QuotaHit(hit) = Classifier::new(Claude, &[], &[]).classify(
            weekly.as_bytes(),
            b"",
            Some(1),
            instant("2026-12-05T21:25:04Z"),
            chrono_tz::UTC,
        ) else {
            panic!("expected a hit")
        };
        assert_eq!(hit.reset.map(|stated| stated.at), Some(instant("2026-12-05T23:00:00Z")));
    }

    #[test]
    fn a_dumped_error_field_is_read_by_its_text_and_nothing_else_is_changed() {
        assert_eq!(readable_message("message: 'The model is overloaded.',"), "The model is overloaded.");
        assert_eq!(
            readable_message(
                r#""message": "{\"error\":{\"code\":500,\"message\":\"Internal error encountered.\",\"status\":\"INTERNAL\"}}","#
            ),
            "500 INTERNAL: Internal error encountered."
        );
        // A `\u0000` decoded is a NUL, which the item's error (a text column) refuses.
        assert_eq!(readable_message(r#""message": "bad \u0000 thing","#), "bad \u{fffd} thing");
        // Not one field: left as it is.
        assert_eq!(readable_message("error: 'a', reason: 'b'"), "error: 'a', reason: 'b'");
        assert_eq!(readable_message("message: see the log"), "message: see the log");
        // A line of a dump's text alone (gemini-cli's multi-line message).
        assert_eq!(readable_message("'Please retry in 33415.2s.',"), "Please retry in 33415.2s.");
        // A double-quoted line alone is left as it is: its backslashes may be a path's.
        assert_eq!(readable_message(r#""C:\temp\new build failed""#), r#""C:\temp\new build failed""#);
        // A field's text is decoded once.
        assert_eq!(readable_message(r#""message": "error: \"x\"""#), r#"error: "x""#);
    }

    #[test]
    fn survives_non_utf8_bytes() {
        let stdout = b"\xff\xfe\x00garbage \xc3\x28 \x80\n5-hour limit reached \xe2\x88\x99 resets 3pm\xff\n";
        let outcome = classify(Claude, stdout, b"\xc0\xc1", Some(1));
        let Outcome::QuotaHit(hit) = outcome else {
            panic!("expected a hit, got {outcome:?}");
        };
        assert_eq!(hit.reset_at(), Some(instant("2025-11-23T13:00:00Z")));
        assert!(hit.matched_line.starts_with("5-hour limit reached · resets 3pm"));
    }

    #[test]
    fn a_retried_server_error_does_not_hide_the_final_quota_error() {
        let stderr = "Attempt 1 failed with status 429. Retrying with backoff... GaxiosError: [{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"No capacity available for model gemini-2.5-pro on the server\",\n    \"status\": \"RESOURCE_EXHAUSTED\",\n    \"details\": [{\"reason\": \"MODEL_CAPACITY_EXHAUSTED\"}]\n  }\n}\n]\nTerminalQuotaError: You have exhausted your daily quota on this model.\n";
        let outcome = classify(Gemini, b"", stderr.as_bytes(), Some(1));
        // The daily quota lifts at midnight Pacific (docs/rate-limits.md).
        assert!(
            matches!(outcome, Outcome::QuotaHit(QuotaHit { reset: Some(reset), needs_attention: false, .. })
                if reset.at == instant("2025-11-24T08:00:00Z")),
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
    fn a_connection_cut_mid_answer_is_a_server_error() {
        // Claude Code and codex when the stream is cut: transient, retried, not a failure.
        let claude = br#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: Connection to the API was lost (ECONNRESET). This is usually temporary - try again."}"#;
        assert!(matches!(classify(Claude, claude, b"", Some(1)), Outcome::ServerError { .. }));
        // What Claude Code 2.1.332 prints for a cut stream (and a reset before the headers).
        for text in [
            "API Error: Connection dropped (ECONNRESET). Check the gateway set in ANTHROPIC_BASE_URL, then try again.",
            "API Error: Connection dropped (ECONNRESET). A VPN, firewall, or security software can cause this.",
        ] {
            assert!(matches!(classify(Claude, text.as_bytes(), b"", Some(1)), Outcome::ServerError { .. }), "{text}");
        }
        // gemini-cli 0.61.0 with its stream reset mid-answer.
        let gemini = b"Error when talking to Gemini API TypeError: terminated\n    at Fetch.onAborted (node:internal/deps/undici/undici:11350:53)\n  [cause]: Error: read ECONNRESET\n";
        assert!(matches!(classify(Gemini, b"", gemini, Some(1)), Outcome::ServerError { .. }));
        let codex = br#"{"type":"turn.failed","error":{"message":"stream disconnected before completion: Transport error: network error: error decoding response body"}}"#;
        assert!(matches!(
            classify(OpenAi, codex, b"Reading additional input from stdin...\n", Some(1)),
            Outcome::ServerError { .. }
        ));
    }

    #[test]
    fn a_clients_json_line_is_shown_by_its_message() {
        let fixture = |name: &str| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/real-clients")
                .join(name);
            std::fs::read(dir.join("stdout")).unwrap()
        };
        // Claude Code's 500 matched in `"api_error_type":"api_error"`: its `result` is shown,
        // not the field names around the match.
        let Outcome::ServerError { matched_line } =
            classify(Claude, &fixture("claude-json-server-500"), b"", Some(1))
        else {
            panic!("a server error");
        };
        assert!(matched_line.starts_with("API Error: 500"), "{matched_line}");
        // A result quoting the API's error body, whose escapes cleaning undoes: still the
        // result, whole, not cut where the quoted body's fields begin.
        let mut result: serde_json::Value =
            serde_json::from_slice(&fixture("claude-json-rate-limit-reset")).unwrap();
        let quoted = r#"API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#;
        result["result"] = serde_json::Value::from(quoted);
        let Outcome::QuotaHit(hit) = classify(Claude, result.to_string().as_bytes(), b"", Some(1)) else {
            panic!("a quota hit");
        };
        assert_eq!(hit.matched_line, quoted);
        // A stream-json `assistant` event: the text it carries.
        let event = r#"{"type":"assistant","message":{"id":"m1","type":"message","role":"assistant","model":"<synthetic>","content":[{"type":"text","text":"API Error: Request rejected (429) · This request would exceed the rate limit"}],"stop_reason":"stop_sequence","usage":{"input_tokens":0,"output_tokens":0}},"session_id":"s1","error":"rate_limit"}"#;
        if let Outcome::QuotaHit(hit) = classify(Claude, event.as_bytes(), b"", Some(1)) {
            assert!(
                hit.matched_line.starts_with("API Error: Request rejected (429)"),
                "{}",
                hit.matched_line
            );
        } else {
            panic!("a quota hit");
        }
    }

    #[test]
    fn a_long_json_line_shows_the_message_that_matched() {
        // `claude -p --output-format json`: 3 KB of usage fields around the message.
        // Before: `...ound":0,"max_depth":0,…` around a cut message.
        let usage: String = (0..120).map(|i| format!("\"field_{i}\":0,")).collect();
        let stdout = format!(
            r#"{{"type":"result","subtype":"success","is_error":true,{usage}"result":"Claude AI usage limit reached|1763744400","session_id":"6b7c8d9e"}}"#
        );
        assert!(stdout.len() > 2 * MATCHED_LINE_MAX_CHARS);
        let Outcome::QuotaHit(hit) = classify(Claude, stdout.as_bytes(), b"", Some(1)) else {
            panic!("expected a hit");
        };
        assert_eq!(hit.matched_line, "Claude AI usage limit reached|1763744400");
    }

    #[test]
    fn extra_patterns_extend_the_profile() {
        let user = |pattern: &str| regex::RegexBuilder::new(pattern).case_insensitive(true).build().unwrap();
        let classifier =
            Classifier::new(Http, &[user(r"credits? (?:are )?exhausted")], &[user(r"maintenance window")]);
        let classify =
            |stdout: &str, exit_code| classifier.classify(stdout.as_bytes(), b"", exit_code, now(), ZONE);
        assert!(matches!(
            classify("job 12: Credits exhausted, try again in 10 minutes", Some(3)),
            Outcome::QuotaHit(QuotaHit { reset: Some(reset), .. }) if reset.at == instant("2025-11-23T10:10:00Z")
        ));
        assert!(matches!(
            classify("Maintenance window: rate limit exceeded, come back later", Some(1)),
            Outcome::ServerError { .. }
        ));
        assert_eq!(classify("Maintenance window: rate limit exceeded", Some(0)), Outcome::Other);
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

    #[test]
    fn a_billing_line_in_an_answer_that_succeeded_parks_nothing() {
        // Before: the last line of a text answer (exit 0) parked the group, again after
        // every resume, and the item was never charged as a poison one.
        let answer = b"Summary: the user cannot log in.\nCredit balance is too low\n";
        assert_eq!(classify(Claude, answer, b"", Some(0)), Outcome::Other);
        // The client's own report of it — a failure, or an error object — still does.
        assert!(matches!(
            classify(Claude, b"Credit balance is too low\n", b"", Some(1)),
            Outcome::QuotaHit(QuotaHit { needs_attention: true, .. })
        ));
        let error_object =
            br#"{"type":"result","subtype":"success","is_error":true,"result":"Credit balance is too low"}"#;
        assert!(matches!(
            classify(Claude, error_object, b"", Some(0)),
            Outcome::QuotaHit(QuotaHit { needs_attention: true, .. })
        ));
    }

    #[test]
    fn a_client_that_retried_a_limit_and_gave_up_met_the_limit() {
        // Before: every line read as a countdown, the run a plain failure that used an
        // attempt (the backlog dead-lettered during a real limit).
        let gave_up = [
            "Attempt 1 failed with status 429. Retrying in 2s...\nAttempt 2 failed with status 429. Retrying in 2s...\nAttempt 3 failed with status 429. Giving up.\n",
            "Error: 429 Too Many Requests (attempt 3/3)\n",
            "Error: 429 Too Many Requests: rate limit exceeded, not retrying\n",
            "Error: still rate limited (429 Too Many Requests) after retrying 3 times\n",
            "Attempt 2 failed: 429 Too Many Requests\nMax attempts reached\n",
            "Attempt 1 failed: Rate limit reached for gpt-4o on requests per min (RPM). Please try again in 12s.\n",
        ];
        for output in gave_up {
            let outcome = classify(Http, b"", output.as_bytes(), Some(1));
            assert!(matches!(outcome, Outcome::QuotaHit(_)), "{output:?}: {outcome:?}");
        }
        let Outcome::QuotaHit(hit) = classify(Http, b"", gave_up[0].as_bytes(), Some(1)) else {
            unreachable!()
        };
        assert_eq!(hit.matched_line, "Attempt 3 failed with status 429. Giving up.");
        let Outcome::QuotaHit(hit) = classify(OpenAi, b"", gave_up[5].as_bytes(), Some(1)) else {
            unreachable!()
        };
        assert_eq!(hit.reset_at(), Some(now() + chrono::Duration::seconds(12)));
        // A client that goes on retrying, and then succeeds, met no limit; one still
        // counting down when it failed is judged by its other lines.
        // Nor one that met a limit, went on, and gave up on another error.
        for last in [
            "Attempt 2 failed with status 400 Bad Request. Giving up.",
            "Network timeout. Giving up.",
            "Giving up: connect ETIMEDOUT",
        ] {
            let other_error = format!("Attempt 1 failed with status 429. Retrying with backoff...\n{last}\n");
            assert_eq!(classify(Gemini, b"", other_error.as_bytes(), Some(1)), Outcome::Other, "{last}");
        }
        // A bare stop with a number in it still counts with the notice before it.
        let bare = "Attempt 1 failed with status 429. Retrying with backoff...\nMax attempts reached after 120 seconds\n";
        assert!(matches!(classify(OpenAi, b"", bare.as_bytes(), Some(1)), Outcome::QuotaHit(_)));
        // A last attempt's count does not hide the reset the vendor states.
        let last = "Rate limit reached for gpt-4o. Please try again in 12s. (attempt 3/3)\n";
        let Outcome::QuotaHit(hit) = classify(OpenAi, b"", last.as_bytes(), Some(1)) else {
            panic!("{last}")
        };
        assert_eq!(hit.reset_at(), Some(now() + chrono::Duration::seconds(12)));
        for (output, exit) in [
            ("Attempt 1 failed with status 429. Retrying in 2s...\nfinal answer\n", Some(0)),
            ("Attempt 1 failed with status 429. Retrying in 2s...\n", Some(1)),
            ("Error: 429 Too Many Requests (attempt 2/3). Retrying in 4s\n", Some(1)),
        ] {
            assert_eq!(classify(Http, b"", output.as_bytes(), exit), Outcome::Other, "{output:?}");
        }
    }

    #[test]
    fn a_one_line_answer_longer_than_the_part_read_is_not_read_for_a_limit() {
        // `claude -p --output-format json`: one line of 84 KB whose `"is_error":false` lies
        // before the part read, and whose end quotes a limit and a billing message.
        for quoted in [
            "Claude AI usage limit reached|1797067500",
            "Your credit balance is too low to access the Anthropic API.",
        ] {
            let body = "lorem ipsum dolor sit amet\\n".repeat(3000);
            let answer = format!(
                "{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"result\":\"The report follows.\\n{body}{quoted}\", \"total_cost_usd\":0.12}}\n"
            );
            assert!(answer.len() > clean::TAIL_BYTES);
            assert_eq!(classify(Claude, answer.as_bytes(), b"", Some(0)), Outcome::Other, "{quoted}");
        }
        // A limit after a spinner's frames — carriage returns or cursor moves, no line end
        // for more than the part read — is the vendor's message: read.
        for frame in ["\r- Thinking... 45%", "\u{1b}[2K\u{1b}[1G- Thinking... 45%"] {
            let spinner = format!(
                "{}\rError: Rate limit reached for gpt-4o. Please try again in 12s.\n",
                frame.repeat(4500)
            );
            assert!(spinner.len() > clean::TAIL_BYTES);
            let outcome = classify(OpenAi, b"", spinner.as_bytes(), Some(1));
            assert!(
                matches!(&outcome, Outcome::QuotaHit(hit) if hit.reset_at() == Some(now() + chrono::Duration::seconds(12))),
                "{outcome:?}"
            );
        }
        let Outcome::QuotaHit(hit) = classify(
            OpenAi,
            b"",
            format!(
                "{}\u{1b}[2K\u{1b}[1GError: Rate limit reached for gpt-4o. Please try again in 12s.\n",
                "\u{1b}[2K\u{1b}[1G- Thinking... 45%".repeat(4500)
            )
            .as_bytes(),
            Some(1),
        ) else {
            panic!("no hit after the frames")
        };
        assert_eq!(hit.matched_line, "Error: Rate limit reached for gpt-4o. Please try again in 12s.");
        // In a run that succeeded the codes are the answer's: a long text answer with a
        // colour code or a carriage return before a quoted limit is a success.
        for code in ["\u{1b}[31mERROR\u{1b}[0m", "\rERROR"] {
            let answer = format!(
                "Here is the log summary: {}{code} Rate limit reached for gpt-4o. Please try again in 12s.\n",
                "ok ".repeat(25000)
            );
            assert_eq!(classify(OpenAi, answer.as_bytes(), b"", Some(0)), Outcome::Other, "{code:?}");
        }
        // A limit on a line of its own after such a line is still read.
        let long =
            format!("{}\nClaude AI usage limit reached|1763744400\n", "x".repeat(clean::TAIL_BYTES * 2));
        assert!(matches!(classify(Claude, long.as_bytes(), b"", Some(1)), Outcome::QuotaHit(_)));
    }

    #[test]
    fn only_the_tail_of_each_stream_is_read() {
        let mut stdout = b"Claude AI usage limit reached|1763744400\n".to_vec();
        stdout.resize(stdout.len() + clean::TAIL_BYTES, b'.');
        assert_eq!(classify(Claude, &stdout, b"", Some(1)), Outcome::Other);
    }
}
