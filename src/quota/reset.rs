//! Finding the reset a cleaned line states — after a keyword (`resets`, `try again`,
//! `please wait`), in a header (`Retry-After`, `x-ratelimit-reset-tokens`) or a JSON key
//! (`resetsAt`, `retryDelay`, `resets_in_seconds`), or as an epoch after a pipe — and
//! reading it when it is relative or a number: `in 2.5s`, `after 8h44m7s`, `120`, epoch
//! seconds or milliseconds. Absolute times and zones (`resets 8pm (Europe/Warsaw)`) are
//! read by `clock`. A client's own retry countdown is never a reset.

use std::sync::LazyLock;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use regex::Regex;

use super::clock::{parse_absolute, skip_fillers, skip_spaces, starts_with_ignore_case, ISO_DATETIME};
use super::patterns::compile;
use crate::backoff::{ResetForm, StatedReset, JUST_PASSED};

#[derive(Debug, Clone, Copy, PartialEq)]
struct ResetMatch {
    instant: DateTime<Utc>,
    start: usize,
    end: usize,
    form: ResetForm,
}

impl ResetMatch {
    /// The reset as stated in `text` (the line this match was found in, read at `now` in
    /// `zone`). A clock time is its next occurrence; the one before it counts when it
    /// passed at most [`JUST_PASSED`] ago: the same words read that much earlier name
    /// it, in their own zone, so a DST change between the two is no guess.
    fn stated(self, text: &str, now: DateTime<Utc>, zone: Tz) -> StatedReset {
        let just_passed = self.form.period().and_then(|period| {
            let earlier = now.checked_sub_signed(Duration::from_std(JUST_PASSED).ok()?)?;
            let words = text.get(self.start..self.end)?;
            // The occurrence before the next one, not the first of a time the clocks going
            // back repeat an hour later: that later one is the reset still ahead (the first
            // of its instants still ahead, docs/rate-limits.md) — unless the first one's
            // minute still lasts: "resets 2:30am" read at 2:30:20 names the minute under
            // way, as on any other night (before: the repeat, an hour's wait).
            let minute = Duration::seconds(60);
            find_resets(words, earlier, zone).first().map(|found| found.instant).filter(|&passed| {
                passed <= now
                    && passed < self.instant
                    && (self.instant - passed > period / 2 || now - passed < minute)
            })
        });
        StatedReset { at: self.instant, form: self.form, just_passed }
    }
}

/// How a reset was written: a clock time that names no date ("resets 8pm", "at 2:55 PM
/// PST") is a bare clock time, resolved to its next occurrence, one after a weekday
/// ("resets Wed 5am") its next occurrence in the week, and one with a date but no year
/// ("resets Nov 25, 5am") its next occurrence in the year; everything else (an epoch, a
/// duration, a date with its year) states its instant exactly.
fn form_of(text: &str) -> ResetForm {
    let names_month_and_day = NAMES_A_MONTH_AND_DAY.is_match(text);
    if !CLOCK_TIME.is_match(text) {
        ResetForm::Exact
    } else if names_month_and_day && !NAMES_A_YEAR.is_match(text) {
        ResetForm::DateTime
    } else if names_month_and_day || NAMES_ANOTHER_DATE.is_match(text) {
        ResetForm::Exact
    } else if NAMES_A_WEEKDAY.is_match(text) {
        ResetForm::WeekdayTime
    } else {
        ResetForm::ClockTime
    }
}

static NAMES_A_WEEKDAY: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?i)\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|sday|urday|rsday)?\b\.?")
});
static CLOCK_TIME: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?i)\b[0-9]{1,2}(?::[0-9]{2})?\s*[ap]\.?m\b|\b[0-9]{1,2}:[0-9]{2}\b|\bnoon\b|\bmidnight\b")
});
/// A month and day (`Nov 25`, `25 Nov`, `11/25`), as a date without a year is written.
static NAMES_A_MONTH_AND_DAY: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+[0-9]|\b[0-9]{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)|\b[0-9]{1,2}/[0-9]{1,2}\b",
    )
});
/// A year: four digits, or the third part of `11/25/26`.
static NAMES_A_YEAR: LazyLock<Regex> =
    LazyLock::new(|| compile(r"\b[0-9]{4}\b|\b[0-9]{1,2}/[0-9]{1,2}/[0-9]{2,4}\b"));
/// A date written otherwise: ISO, or `tomorrow`.
static NAMES_ANOTHER_DATE: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)[0-9]{4}-[0-9]{2}-[0-9]{2}|\btomorrow\b"));

/// Parse a reset time out of one already-cleaned line: the first one the line states.
/// Clock times and dates without a year are their next occurrence after `now`, in the
/// zone the message names, else `zone`.
#[cfg(test)]
pub(super) fn parse_reset(line: &str, now: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
    parse_stated_reset(line, now, zone).map(|stated| stated.at)
}

/// [`parse_reset`] with the form the reset was written in.
pub(super) fn parse_stated_reset(line: &str, now: DateTime<Utc>, zone: Tz) -> Option<StatedReset> {
    find_resets(line, now, zone).first().map(|found| found.stated(line, now, zone))
}

/// The reset of a line, extended into the following lines when the message was
/// wrapped inside its reset (`resets 12:50am (America/Los_` + `Angeles)`, or `reset at
/// 5pm` + `(Europe/Warsaw).`).
pub(super) fn reset_with_continuation(
    text: &str,
    following: &[&str],
    now: DateTime<Utc>,
    zone: Tz,
) -> Option<StatedReset> {
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
    own.map(|found| found.stated(&current, now, zone))
}

/// `line` with every reset it states left out: the same message stated again with
/// another reset (`try again in 1m12s`, later `try again in 45.3s`) reads the same.
pub(super) fn without_resets(line: &str, now: DateTime<Utc>, zone: Tz) -> String {
    let mut kept = String::with_capacity(line.len());
    let mut from = 0;
    for found in find_resets(line, now, zone) {
        if found.start >= from {
            kept.push_str(&line[from..found.start]);
            kept.push('\u{fffc}');
            from = found.end;
        }
    }
    kept.push_str(&line[from..]);
    kept
}

/// Every reset the line states, in order of position.
fn find_resets(line: &str, now: DateTime<Utc>, zone: Tz) -> Vec<ResetMatch> {
    let mut found = Vec::new();
    let mut push = |instant: Option<DateTime<Utc>>, start: usize, end: usize| {
        if let Some(instant) = instant {
            found.push(ResetMatch { instant, start, end, form: form_of(&line[start..end]) });
        }
    };

    // "usage limit reached|1763744400" (seconds or milliseconds)
    for captures in EPOCH_AFTER_PIPE.captures_iter(line) {
        if let (Some(whole), Some(digits)) = (captures.get(0), captures.get(1)) {
            push(
                epoch_with_fraction(digits.as_str()).map(|(instant, _)| instant),
                whole.start(),
                whole.end(),
            );
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
        // "Quota resets at 1796526020 (unix)": after a word of resetting only (`retry 12`,
        // `available 1500000000` are no instants).
        if starts_with_ignore_case(keyword.as_str(), "reset") {
            if let Some((instant, length)) = plain_epoch(rest) {
                push(Some(instant), keyword.start(), keyword.end() + length);
                continue;
            }
        }
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

static EPOCH_AFTER_PIPE: LazyLock<Regex> = LazyLock::new(|| compile(r"\|\s*([0-9]{9,14})(?:[^0-9]|$)"));
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
pub(super) static RESET_KEYWORD: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)\b(?:resets?|try\s+again|retry|available(?:\s+again)?|regains?\s+access|access\s+again|until|renews?|refresh(?:es)?|reset\s+time\s+is|please\s+wait|wait\s+for)\b",
    )
});

/// A wait followed by an attempt's count (`in 4 seconds… (attempt 4/10)`): a client's own
/// countdown, not a reset — unless it counts the last attempt (`(attempt 3/3)`): the
/// client gave up, and the wait is the vendor's.
fn is_countdown_tail(after: &str) -> bool {
    let window: String = after.chars().take(40).collect::<String>().to_lowercase();
    window.contains("attempt") && !super::patterns::names_the_last_attempt(&window)
}

/// A Unix time after a reset's words, `at 1796526020`: ten digits (seconds) or thirteen
/// (milliseconds), with any fraction.
fn plain_epoch(rest: &str) -> Option<(DateTime<Utc>, usize)> {
    let start = skip_fillers(rest, 0, &[":", "-", "at", "on"]);
    let digits = rest[start..].find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len() - start);
    if digits != 10 && digits != 13 {
        return None;
    }
    epoch_with_fraction(&rest[start..]).map(|(instant, length)| (instant, start + length))
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
    if allow_epoch && digits.len() >= 9 {
        // An epoch, whole or with a fraction (`X-RateLimit-Reset: 1796526020.123`): nine
        // digits and more are no number of seconds to wait.
        if let Some((instant, length)) = epoch_with_fraction(rest) {
            return Some((instant, length));
        }
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

/// Epoch seconds or milliseconds at the start of `text`, with any fraction
/// (`1796526020.5`, `1796526020123.4`), and the length read; none when a letter follows
/// (`1796526020abc` is no epoch).
fn epoch_with_fraction(text: &str) -> Option<(DateTime<Utc>, usize)> {
    let (nanoseconds, length) = parse_seconds(text)?;
    if text[length..].starts_with(|c: char| c.is_alphanumeric()) {
        return None;
    }
    // From 100,000,000,000 on, milliseconds (seconds that many are the year 5138).
    let nanoseconds =
        if nanoseconds >= 100_000_000_000 * 1_000_000_000 { nanoseconds / 1000 } else { nanoseconds };
    let seconds = i64::try_from(nanoseconds / 1_000_000_000).ok()?;
    let fraction = u32::try_from(nanoseconds % 1_000_000_000).ok()?;
    Some((DateTime::from_timestamp(seconds, fraction)?, length))
}

/// `now` plus a stated wait. A wait of centuries is still a stated reset, far ahead (the
/// backoff distrusts it and says why, docs/rate-limits.md): the instant saturates at the
/// end of the calendar instead of the reset being dropped.
fn add_nanoseconds(now: DateTime<Utc>, nanoseconds: i128) -> Option<DateTime<Utc>> {
    let latest = crate::clock::latest_instant();
    let Ok(nanoseconds) = i64::try_from(nanoseconds.max(0)) else {
        return Some(latest);
    };
    Some(now.checked_add_signed(Duration::nanoseconds(nanoseconds)).map_or(latest, |at| at.min(latest)))
}

/// A decimal number of seconds at the start of `text`, as nanoseconds.
fn parse_seconds(text: &str) -> Option<(i128, usize)> {
    parse_decimal(text, 1_000_000_000)
}

/// `digits[.digits]` at the start of `text`, multiplied by `unit` exactly.
fn parse_decimal(text: &str, unit: i128) -> Option<(i128, usize)> {
    let integer_length = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if integer_length == 0 {
        return None;
    }
    // More digits than a wait can have: as long as the longest (see `add_nanoseconds`).
    let integer: i128 = text[..integer_length].parse().unwrap_or(i128::MAX);
    let mut value = integer.saturating_mul(unit);
    let mut length = integer_length;
    if text[length..].starts_with('.') {
        let fraction = &text[length + 1..];
        let fraction_length = fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len());
        if fraction_length > 0 {
            let used = &fraction[..fraction_length.min(12)];
            let numerator: i128 = used.parse().ok()?;
            let denominator = 10i128.pow(u32::try_from(used.len()).ok()?);
            value = value.saturating_add(numerator * unit / denominator);
            length += 1 + fraction_length;
        }
    }
    Some((value, length))
}

/// `20s`, `3.89s`, `644ms`, `8h44m7s`, `45 minutes`, `2 days 17 hours 14 minutes`,
/// `an hour`: nanoseconds and the length read.
pub(super) fn parse_duration(text: &str) -> Option<(i128, usize)> {
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

/// Reset headers anywhere in the output, for a hit whose own message states none:
/// `Retry-After` first, then the rate-limit resets of the exhausted kinds
/// (`anthropic-ratelimit-tokens-remaining: 0`) — the latest of them, as work resumes only
/// when every spent limit has reset — else the latest reset header. `lines`: the
/// output's non-empty lines, tool output left out.
pub(super) fn header_reset<'a>(
    lines: &[&'a str],
    now: DateTime<Utc>,
    zone: Tz,
) -> Option<(StatedReset, &'a str)> {
    let retry_after = lines
        .iter()
        .filter(|line| RETRY_AFTER.is_match(line) || RETRY_DELAY.is_match(line))
        .filter_map(|line| parse_stated_reset(line, now, zone).map(|reset| (reset, *line)))
        .next_back();
    if retry_after.is_some() {
        return retry_after;
    }
    let exhausted: Vec<String> = lines
        .iter()
        .filter_map(|line| EXHAUSTED_KIND.captures(line))
        .filter_map(|captures| captures.get(1).or(captures.get(2)))
        .map(|kind| kind.as_str().to_ascii_lowercase())
        .collect();
    type Found<'a> = Option<(StatedReset, &'a str)>;
    let later = |latest: Found<'a>, found: (StatedReset, &'a str)| {
        Some(latest.map_or(found, |latest| if found.0.at > latest.0.at { found } else { latest }))
    };
    let mut latest: Found<'a> = None;
    let mut latest_exhausted: Found<'a> = None;
    for line in lines {
        let Some(captures) = RATELIMIT_RESET_KIND.captures(line) else {
            continue;
        };
        let Some(instant) = parse_stated_reset(line, now, zone) else {
            continue;
        };
        let kind = captures
            .get(1)
            .or(captures.get(2))
            .map(|kind| kind.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        if exhausted.contains(&kind) {
            latest_exhausted = later(latest_exhausted, (instant, line));
        }
        latest = later(latest, (instant, line));
    }
    latest_exhausted.or(latest)
}

static EXHAUSTED_KIND: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r#"(?i)\b(?:x-|anthropic-)?ratelimit-(?:([a-z-]+?)-remaining|remaining-([a-z-]+))["']?\s*:\s*["']?0(?:[^.0-9]|$)"#,
    )
});
pub(super) static RATELIMIT_RESET_KIND: LazyLock<Regex> = LazyLock::new(|| {
    compile(r#"(?i)\b(?:x-|anthropic-)?ratelimit-(?:([a-z-]+?)-reset|reset(?:-([a-z-]+))?)["']?\s*:"#)
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::tests::{instant, NOW, ZONE};

    #[rustfmt::skip]
    #[test]
    fn parses_every_relative_reset_form() {
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
            // A wait of zero is now.
            (NOW, ZONE, "Retry-After: 0", Some("2025-11-23T10:00:00Z")),
            (NOW, ZONE, "Please try again in 0s.", Some("2025-11-23T10:00:00Z")),
            // A wait of years is still a stated reset (distrusted by the backoff, which says
            // why), the longest ones at the end of the calendar.
            (NOW, ZONE, "Retry-After: 99999999", Some("2029-01-23T19:46:39Z")),
            (NOW, ZONE, "Please try again in 1000 days.", Some("2028-08-19T10:00:00Z")),
            (NOW, ZONE, "Retry-After: 99999999999999999999999", Some("9999-12-31T23:59:59Z")),
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

    #[test]
    fn a_bare_clock_time_is_told_from_resets_that_state_their_instant() {
        use crate::backoff::ResetForm::{ClockTime, DateTime, Exact, WeekdayTime};
        let now = instant(NOW);
        for (line, form) in [
            ("You've hit your session limit · resets 2am (Europe/Warsaw)", ClockTime),
            ("Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw).", ClockTime),
            ("Access resets at 2:55 PM PST.", ClockTime),
            ("Opus weekly limit reached ∙ resets Wed 5am", WeekdayTime),
            ("resets Monday at 9:00", WeekdayTime),
            ("You've hit your session limit · resets Dec 5, 5am (Europe/Warsaw)", DateTime),
            ("You have hit your weekly limit · resets 5 Dec at 05:00", DateTime),
            ("You've hit your session limit · resets Dec 5, 2026 5am (Europe/Warsaw)", Exact),
            ("You will regain access on 2027-01-01 at 00:00 UTC.", Exact),
            ("Claude AI usage limit reached|1763744400", Exact),
            ("Rate limit reached. Please try again in 2.5s.", Exact),
            ("Your quota will reset after 8h44m7s.", Exact),
            (r#"{"resetsAt": 1763744400}"#, Exact),
        ] {
            let stated = parse_stated_reset(line, now, ZONE).unwrap_or_else(|| panic!("no reset in {line}"));
            let spans: Vec<&str> =
                find_resets(line, now, ZONE).iter().map(|f| &line[f.start..f.end]).collect();
            assert_eq!(stated.form, form, "{line}: {spans:?}");
        }
    }

    #[test]
    fn a_clock_time_just_passed_is_found_in_its_own_zone_across_dst() {
        use chrono_tz::America::Los_Angeles;
        use chrono_tz::Europe::Warsaw;
        // (read at, zone, line, the occurrence just passed, or none)
        let cases: &[(&str, Tz, &str, Option<&str>)] = &[
            // 12:50am in Los Angeles was 08:50Z, 70 minutes before 10:00Z: not "just now",
            // though the next one (tomorrow) is 23 hours 50 minutes ahead.
            ("2026-12-03T10:00:00Z", Warsaw, "resets 12:50am (America/Los_Angeles)", None),
            (
                "2026-12-03T08:55:00Z",
                Warsaw,
                "resets 12:50am (America/Los_Angeles)",
                Some("2026-12-03T08:50:00Z"),
            ),
            // Autumn change in Warsaw (2026-10-25): 3am on the 24th, read at 03:05; the
            // next one is 25 hours later.
            ("2026-10-24T01:05:00Z", Warsaw, "resets 3am", Some("2026-10-24T01:00:00Z")),
            // Spring change (2026-03-29): the next 3am is 23 hours later.
            ("2026-03-28T02:01:00Z", Warsaw, "resets 3am", Some("2026-03-28T02:00:00Z")),
            // Ten minutes is the bound.
            ("2026-10-26T01:10:00Z", Warsaw, "resets 2am", Some("2026-10-26T01:00:00Z")),
            ("2026-10-26T01:10:01Z", Warsaw, "resets 2am", None),
            ("2026-11-25T05:04:00Z", Los_Angeles, "resets Tue 9pm", Some("2026-11-25T05:00:00Z")),
            ("2026-11-25T05:11:00Z", Los_Angeles, "resets Tue 9pm", None),
            // The clocks going back repeat 1:30am (05:30Z EDT, then 06:30Z EST): five
            // minutes after the first, the second is still ahead, not "just now".
            ("2026-11-01T05:35:00Z", chrono_tz::America::New_York, "resets 1:30am", None),
            ("2026-10-25T00:35:00Z", Warsaw, "resets 2:30am (Europe/Berlin)", None),
            // Within the first one's own minute, that minute is meant, as on any other night.
            ("2026-10-25T00:30:20Z", Warsaw, "resets 2:30am (Europe/Berlin)", Some("2026-10-25T00:30:00Z")),
            (
                "2026-11-01T05:30:59Z",
                chrono_tz::America::New_York,
                "resets 1:30am",
                Some("2026-11-01T05:30:00Z"),
            ),
            ("2026-11-01T05:31:00Z", chrono_tz::America::New_York, "resets 1:30am", None),
            ("2026-04-04T14:50:00Z", Warsaw, "resets 1:45am (Australia/Lord_Howe)", None),
            ("2026-11-01T05:35:00Z", chrono_tz::America::New_York, "resets Sun 1:30am", None),
            ("2026-11-01T05:35:00Z", chrono_tz::America::New_York, "try again at Nov 1, 1:30 AM", None),
            // A time that states its instant has nothing just passed.
            ("2026-12-03T10:00:00Z", Warsaw, "try again in 20s", None),
        ];
        for &(read_at, zone, line, expected) in cases {
            let stated = parse_stated_reset(line, instant(read_at), zone).unwrap_or_else(|| panic!("{line}"));
            assert_eq!(stated.just_passed, expected.map(instant), "{line:?} read at {read_at}");
            assert!(stated.at > instant(read_at), "{line:?}: {stated:?}");
        }
    }

    #[test]
    fn several_spent_limits_wait_for_the_latest_reset() {
        let now = instant(NOW);
        let openai = [
            "x-ratelimit-remaining-requests: 0",
            "x-ratelimit-reset-requests: 20s",
            "x-ratelimit-remaining-tokens: 0",
            "x-ratelimit-reset-tokens: 6m0s",
        ];
        assert_eq!(
            header_reset(&openai, now, ZONE).map(|(r, _)| r.at),
            Some(instant("2025-11-23T10:06:00Z"))
        );
        let anthropic = [
            "anthropic-ratelimit-tokens-remaining: 0",
            "anthropic-ratelimit-tokens-reset: 2025-11-23T12:05:00Z",
            "anthropic-ratelimit-input-tokens-remaining: 0",
            "anthropic-ratelimit-input-tokens-reset: 2025-11-23T12:10:00Z",
            "anthropic-ratelimit-requests-remaining: 40",
            "anthropic-ratelimit-requests-reset: 2025-11-23T12:30:00Z",
        ];
        assert_eq!(
            header_reset(&anthropic, now, ZONE).map(|(r, _)| r.at),
            Some(instant("2025-11-23T12:10:00Z"))
        );
    }

    #[test]
    fn built_in_patterns_compile() {
        let patterns: [&Regex; 10] = [
            &NAMES_A_WEEKDAY,
            &EPOCH_AFTER_PIPE,
            &RESET_KEY,
            &RETRY_AFTER,
            &RATELIMIT_RESET_HEADER,
            &RETRY_DELAY,
            &RESET_KEYWORD,
            &RESET_IN_KEY,
            &EXHAUSTED_KIND,
            &RATELIMIT_RESET_KIND,
        ];
        assert!(patterns.iter().all(|pattern| !pattern.as_str().is_empty()));
    }
}
