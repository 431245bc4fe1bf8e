//! The `burst on --until WHEN` grammar: a point in time as an operator types it.
//!
//! A WHEN is resolved against an injected "now" and the configured time zone, never the
//! machine's clock or zone. It is an absolute RFC 3339 instant, a local date and time
//! (`2026-11-28 18:00`), a clock time (`18:00`, `6pm`: its next occurrence), a weekday
//! and time (`sat 18:00`: the upcoming such weekday, today if the time is still ahead),
//! `today`/`tomorrow` and a time, or a distance from now (`+6h`, `+1h30m`). Local times
//! are DST-correct: one that falls in a DST gap moves forward to the first valid instant
//! after the gap, and an ambiguous one (the repeated hour) is the first of its two
//! instants that is still ahead (docs/configuration.md, as resets in docs/rate-limits.md).
//! [`parse_when`] only reads the text; [`check_deadline`] refuses a deadline that is
//! already past or further away than the configured maximum.

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

use crate::duration::{format_duration, format_relative, parse_duration};

/// The accepted forms, quoted at the end of every parse error.
const ACCEPTED_FORMS: &str = "use RFC 3339 (\"2026-11-28T18:00:00+02:00\"), \
     \"YYYY-MM-DD HH:MM\", \"HH:MM\" or \"6pm\", a weekday and time (\"sat 18:00\"), \
     \"today\" or \"tomorrow\" and a time, or a relative \"+6h\"";

/// The longest DST gap searched for the first valid local time after it (some zones
/// have skipped a whole calendar day).
const MAX_GAP_MINUTES: u32 = 48 * 60;

/// Why a WHEN was not accepted. `Display` is the one-line message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    /// The text matches none of the accepted forms; `reason` says what was wrong when
    /// that is known.
    #[error("invalid time {text:?}{}: {}", reason_suffix(.reason.as_deref()), ACCEPTED_FORMS)]
    Unparseable { text: String, reason: Option<String> },
    /// The deadline is not after now.
    #[error("deadline {} is in the past ({})", local_label(.deadline, .zone), format_relative(*.deadline - *.now))]
    InPast { deadline: DateTime<Utc>, now: DateTime<Utc>, zone: Tz },
    /// The deadline is further ahead than the configured maximum.
    #[error(
        "deadline {} is {} away, {} more than burst_max {}",
        local_label(.deadline, .zone),
        format_duration(*.away),
        format_duration(.away.saturating_sub(*.max_ahead)),
        format_duration(*.max_ahead)
    )]
    TooFar { deadline: DateTime<Utc>, zone: Tz, away: std::time::Duration, max_ahead: std::time::Duration },
}

fn reason_suffix(reason: Option<&str>) -> String {
    match reason {
        Some(reason) => format!(" ({reason})"),
        None => String::new(),
    }
}

/// `Sat 2026-11-28 18:00 IST`: an instant as wall-clock time in `zone`.
fn local_label(instant: &DateTime<Utc>, zone: &Tz) -> String {
    crate::output::local_time(*instant, *zone)
}

/// Resolves WHEN against `now` in `zone` (see the module documentation for the forms;
/// matching is case-insensitive). Past and far-away results are returned as they are:
/// [`check_deadline`] refuses them.
pub fn parse_when(text: &str, now: DateTime<Utc>, zone: Tz) -> Result<DateTime<Utc>, WhenError> {
    let trimmed = text.trim();
    // The words are matched lower-cased; a reason quotes a word as it was given.
    let unparseable = |reason: Option<String>| WhenError::Unparseable {
        text: text.to_string(),
        reason: reason.map(|reason| as_given(&reason, trimmed)),
    };
    if trimmed.is_empty() {
        return Err(unparseable(Some("it is empty".to_string())));
    }

    if let Some(relative) = trimmed.strip_prefix('+') {
        let duration = parse_duration(relative).map_err(|_| {
            let relative = relative.trim();
            // `+1M` could be a month or a minute: units are lower-case, as in every duration.
            let lowered = relative.to_lowercase();
            if lowered != relative && parse_duration(&lowered).is_ok() {
                unparseable(Some(format!("units are lower-case, as in every duration: write +{lowered}")))
            } else {
                unparseable(Some(format!("{relative:?} is not a duration like 6h, 90m or 1h30m")))
            }
        })?;
        return chrono::Duration::from_std(duration)
            .ok()
            .and_then(|delta| now.checked_add_signed(delta))
            .ok_or_else(|| unparseable(Some("it is too far in the future".to_string())));
    }

    if let Ok(instant) = crate::clock::parse_rfc3339(trimmed) {
        return Ok(instant);
    }

    let lowered = trimmed.to_lowercase();
    let tokens = split_tokens(&lowered);
    let local_today = now.with_timezone(&zone).date_naive();
    match tokens.as_slice() {
        [single] => {
            if looks_like_date(single) {
                return Err(unparseable(Some(format!("a date needs a time, e.g. \"{single} 18:00\""))));
            }
            if parse_weekday(single).is_some() || single == "today" || single == "tomorrow" {
                return Err(unparseable(Some(format!("a day needs a time, e.g. \"{single} 18:00\""))));
            }
            let time = parse_clock(single).map_err(|reason| unparseable(Some(reason)))?;
            match resolve_after(&zone, local_today.and_time(time), now) {
                Some(instant) => Ok(instant),
                None => local_today
                    .checked_add_days(Days::new(1))
                    .and_then(|tomorrow| resolve_local(&zone, tomorrow.and_time(time)))
                    .ok_or_else(|| unparseable(None)),
            }
        }
        [day, clock] => {
            let time = parse_clock(clock).map_err(|reason| unparseable(Some(reason)))?;
            let date = if looks_like_date(day) {
                parse_date(day).map_err(|reason| unparseable(Some(reason)))?
            } else if day == "today" {
                local_today
            } else if day == "tomorrow" {
                local_today.checked_add_days(Days::new(1)).ok_or_else(|| unparseable(None))?
            } else if let Some(weekday) = parse_weekday(day) {
                return upcoming_weekday_at(weekday, time, now, zone).ok_or_else(|| unparseable(None));
            } else {
                return Err(unparseable(Some(format!(
                    "{day:?} is not a weekday, a date, \"today\" or \"tomorrow\""
                ))));
            };
            // Passed: the later of a time the clocks repeat is the one just lived through,
            // and the refusal names it.
            resolve_after(&zone, date.and_time(time), now)
                .or_else(|| {
                    zone.from_local_datetime(&date.and_time(time)).latest().map(|at| at.with_timezone(&Utc))
                })
                .or_else(|| resolve_local(&zone, date.and_time(time)))
                .ok_or_else(|| unparseable(None))
        }
        _ => Err(unparseable(None)),
    }
}

/// Refuses a deadline that is not after `now` or is further than `max_ahead` from it.
/// The messages show the deadline as wall-clock time in `zone`.
pub fn check_deadline(
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
    zone: Tz,
    max_ahead: std::time::Duration,
) -> Result<(), WhenError> {
    if deadline <= now {
        return Err(WhenError::InPast { deadline, now, zone });
    }
    let away = (deadline - now).to_std().unwrap_or(std::time::Duration::MAX);
    if away > max_ahead {
        return Err(WhenError::TooFar { deadline, zone, away, max_ahead });
    }
    Ok(())
}

/// Splits lower-cased text into words, joining a detached `am`/`pm` to the clock time
/// before it (`6 pm` -> `6pm`) and splitting `YYYY-MM-DDTHH:MM` at the `t`.
/// `reason` with each quoted word that `text` holds in another case quoted as `text` has
/// it (`"pw"` of `sat PW` is `"PW"`).
fn as_given(reason: &str, text: &str) -> String {
    let lowered = text.to_lowercase();
    if lowered.len() != text.len() {
        return reason.to_string();
    }
    let mut shown = reason.to_string();
    for word in text.split_whitespace() {
        let lower = word.to_lowercase();
        if lower != word && lower.len() == word.len() {
            shown = shown.replace(&format!("{lower:?}"), &format!("{word:?}"));
        }
    }
    shown
}

fn split_tokens(lowered: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    for word in lowered.split_whitespace() {
        let is_meridiem = word == "am" || word == "pm";
        match tokens.last_mut() {
            Some(previous) if is_meridiem && previous.starts_with(|c: char| c.is_ascii_digit()) => {
                previous.push_str(word);
            }
            _ => tokens.push(word.to_string()),
        }
    }
    if let [single] = tokens.as_slice() {
        if let Some((date, time)) = single.split_once('t') {
            if looks_like_date(date) {
                return vec![date.to_string(), time.to_string()];
            }
        }
    }
    tokens
}

/// Whether a word is shaped like `YYYY-MM-DD` (digits and dashes, starting with a digit).
fn looks_like_date(word: &str) -> bool {
    word.starts_with(|c: char| c.is_ascii_digit())
        && word.contains('-')
        && word.chars().all(|c| c.is_ascii_digit() || c == '-')
}

fn parse_date(word: &str) -> Result<NaiveDate, String> {
    let parts: Vec<&str> = word.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return Err(format!("{word:?} is not a date like 2026-11-28"));
    };
    let is_well_formed = year.len() == 4 && (1..=2).contains(&month.len()) && (1..=2).contains(&day.len());
    let numbers = (year.parse::<i32>(), month.parse::<u32>(), day.parse::<u32>());
    match numbers {
        (Ok(year), Ok(month), Ok(day)) if is_well_formed => {
            NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| format!("there is no date {word}"))
        }
        _ => Err(format!("{word:?} is not a date like 2026-11-28")),
    }
}

/// A clock time: 24-hour `H:MM`/`HH:MM`, or 12-hour `6pm`, `6:30pm`, `12am` (= 00:00).
fn parse_clock(word: &str) -> Result<NaiveTime, String> {
    let not_a_time = || format!("{word:?} is not a time like 18:00 or 6pm");
    let (body, meridiem) = if let Some(body) = word.strip_suffix("am") {
        (body, Some(false))
    } else if let Some(body) = word.strip_suffix("pm") {
        (body, Some(true))
    } else {
        (word, None)
    };
    let (hour_text, minute_text) = match body.split_once(':') {
        Some((hour, minute)) => (hour, Some(minute)),
        None if meridiem.is_some() => (body, None),
        None => return Err(not_a_time()),
    };
    let is_digits = |text: &str| !text.is_empty() && text.chars().all(|c| c.is_ascii_digit());
    if !is_digits(hour_text) || hour_text.len() > 2 {
        return Err(not_a_time());
    }
    let minute = match minute_text {
        Some(minute_text) if is_digits(minute_text) && minute_text.len() == 2 => {
            minute_text.parse::<u32>().map_err(|_| not_a_time())?
        }
        Some(_) => return Err(not_a_time()),
        None => 0,
    };
    let hour = hour_text.parse::<u32>().map_err(|_| not_a_time())?;
    if minute > 59 {
        return Err(format!("minute {minute} is out of range 00-59"));
    }
    let hour_24 = match meridiem {
        None if hour > 23 => return Err(format!("hour {hour} is out of range 0-23")),
        None => hour,
        Some(_) if !(1..=12).contains(&hour) => {
            return Err(format!("hour {hour} is out of range 1-12 for am/pm"))
        }
        Some(is_pm) => hour % 12 + if is_pm { 12 } else { 0 },
    };
    NaiveTime::from_hms_opt(hour_24, minute, 0).ok_or_else(not_a_time)
}

fn parse_weekday(word: &str) -> Option<Weekday> {
    let weekday = match word {
        "sun" | "sunday" => Weekday::Sun,
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tues" | "tuesday" => Weekday::Tue,
        "wed" | "weds" | "wednesday" => Weekday::Wed,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        _ => return None,
    };
    Some(weekday)
}

/// The upcoming `weekday` at `time` in `zone`: today if today is that weekday and the
/// time is still ahead, else the next such day (up to a week away).
fn upcoming_weekday_at(
    weekday: Weekday,
    time: NaiveTime,
    now: DateTime<Utc>,
    zone: Tz,
) -> Option<DateTime<Utc>> {
    let today = now.with_timezone(&zone).date_naive();
    let days_ahead = (7 + weekday.num_days_from_sunday() - today.weekday().num_days_from_sunday()) % 7;
    let date = today.checked_add_days(Days::new(u64::from(days_ahead)))?;
    if let Some(instant) = resolve_after(&zone, date.and_time(time), now) {
        return Some(instant);
    }
    let next_week = date.checked_add_days(Days::new(7))?;
    resolve_local(&zone, next_week.and_time(time))
}

/// The first instant strictly after `now` at which the clock in `zone` reads `local` (see
/// [`resolve_local_ahead`]); None when every instant of it is at or before `now`.
fn resolve_after(zone: &Tz, local: NaiveDateTime, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    resolve_local_ahead(zone, local, now + TimeDelta::nanoseconds(1))
}

/// The first instant at or after `now` at which the local clock in `zone` reads `local`:
/// of a time that happens twice (clocks going back), the earlier one when it is still
/// ahead, else the later one; a time in a gap moves to the first valid instant after it
/// (docs/rate-limits.md). None when every instant of it has passed.
pub(crate) fn resolve_local_ahead<Z: TimeZone>(
    zone: &Z,
    local: NaiveDateTime,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let earlier = resolve_local(zone, local)?;
    if earlier >= now {
        return Some(earlier);
    }
    let later = zone.from_local_datetime(&local).latest().map(|at| at.with_timezone(&Utc));
    later.filter(|later| *later >= now)
}

/// The instant of a wall-clock time in `zone`: the earlier one when the time occurs
/// twice, the first valid instant after the gap when it does not occur at all.
pub(crate) fn resolve_local<Z: TimeZone>(zone: &Z, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let earliest = |result: LocalResult<DateTime<Z>>| match result {
        LocalResult::Single(instant) => Some(instant.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, second) => {
            Some(first.with_timezone(&Utc).min(second.with_timezone(&Utc)))
        }
        LocalResult::None => None,
    };
    let mut candidate = local;
    for _ in 0..=MAX_GAP_MINUTES {
        if let Some(instant) = earliest(zone.from_local_datetime(&candidate)) {
            return Some(instant);
        }
        let whole_minute = candidate.with_second(0)?.with_nanosecond(0)?;
        candidate = whole_minute.checked_add_signed(TimeDelta::minutes(1))?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America::New_York, Asia::Jerusalem, Europe::London};
    use std::time::Duration;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect(text).with_timezone(&Utc)
    }

    /// `now` given as wall-clock time in Jerusalem, e.g. "2026-11-26 10:00".
    fn jerusalem(text: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect(text);
        Jerusalem.from_local_datetime(&naive).single().expect(text).with_timezone(&Utc)
    }

    /// Cases of (WHEN, now, zone, expected instant).
    fn assert_resolves(cases: &[(&str, DateTime<Utc>, Tz, &str)]) {
        for (text, now, zone, expected) in cases {
            assert_eq!(parse_when(text, *now, *zone), Ok(utc(expected)), "{text:?} at {now} in {zone}");
        }
    }

    #[test]
    fn default_burst_deadline_is_the_upcoming_saturday_evening() {
        // 2026-11-26 is a Thursday; Israel is on standard time (UTC+2) in November.
        assert_resolves(&[
            // Thursday -> the Saturday after.
            ("sat 18:00", jerusalem("2026-11-26 10:00"), Jerusalem, "2026-11-28T16:00:00Z"),
            // Saturday before 18:00 -> the same day.
            ("sat 18:00", jerusalem("2026-11-28 10:00"), Jerusalem, "2026-11-28T16:00:00Z"),
            // Saturday after 18:00 -> next Saturday.
            ("sat 18:00", jerusalem("2026-11-28 19:00"), Jerusalem, "2026-12-05T16:00:00Z"),
            // Exactly 18:00 on Saturday is no longer ahead -> next Saturday.
            ("sat 18:00", jerusalem("2026-11-28 18:00"), Jerusalem, "2026-12-05T16:00:00Z"),
            // Saturday just after midnight (Friday evening in UTC) -> that Saturday.
            ("sat 18:00", jerusalem("2026-11-28 00:30"), Jerusalem, "2026-11-28T16:00:00Z"),
        ]);
    }

    #[test]
    fn default_burst_deadline_across_the_october_dst_change() {
        // Israel leaves DST on Sunday 2026-10-25 (last Sunday of October) at 02:00.
        assert_resolves(&[
            // Thursday 2026-10-22: Saturday 2026-10-24 is still summer time (UTC+3).
            ("sat 18:00", jerusalem("2026-10-22 12:00"), Jerusalem, "2026-10-24T15:00:00Z"),
            // A week later the Saturday is on standard time (UTC+2).
            ("sat 18:00", jerusalem("2026-10-29 12:00"), Jerusalem, "2026-10-31T16:00:00Z"),
            // Saturday evening in summer time -> the next Saturday, after the change.
            ("sat 18:00", jerusalem("2026-10-24 19:00"), Jerusalem, "2026-10-31T16:00:00Z"),
        ]);
    }

    #[test]
    fn weekday_spellings_and_twelve_hour_times() {
        let thursday = jerusalem("2026-11-26 10:00");
        let saturday_evening = "2026-11-28T16:00:00Z";
        for text in [
            "sat 18:00",
            "Sat 18:00",
            "SATURDAY 18:00",
            "saturday 6pm",
            "Sat 6pm",
            "sat 6 PM",
            "  sat   18:00  ",
            "sat 6:00pm",
        ] {
            assert_resolves(&[(text, thursday, Jerusalem, saturday_evening)]);
        }
        assert_resolves(&[
            ("thu 09:00", thursday, Jerusalem, "2026-12-03T07:00:00Z"),
            ("thu 11:00", thursday, Jerusalem, "2026-11-26T09:00:00Z"),
            ("thurs 11:00", thursday, Jerusalem, "2026-11-26T09:00:00Z"),
            ("fri 12am", thursday, Jerusalem, "2026-11-26T22:00:00Z"),
            ("sun 12pm", thursday, Jerusalem, "2026-11-29T10:00:00Z"),
            ("wed 23:59", thursday, Jerusalem, "2026-12-02T21:59:00Z"),
        ]);
    }

    #[test]
    fn clock_time_is_its_next_occurrence() {
        let morning = jerusalem("2026-11-26 10:00");
        let evening = jerusalem("2026-11-26 20:00");
        assert_resolves(&[
            ("18:00", morning, Jerusalem, "2026-11-26T16:00:00Z"),
            ("18:00", evening, Jerusalem, "2026-11-27T16:00:00Z"),
            ("6pm", morning, Jerusalem, "2026-11-26T16:00:00Z"),
            ("6:30pm", evening, Jerusalem, "2026-11-27T16:30:00Z"),
            ("9:05", morning, Jerusalem, "2026-11-27T07:05:00Z"),
            ("10:00", morning, Jerusalem, "2026-11-27T08:00:00Z"),
            ("10:01", morning, Jerusalem, "2026-11-26T08:01:00Z"),
            ("00:00", morning, Jerusalem, "2026-11-26T22:00:00Z"),
            ("12am", morning, Jerusalem, "2026-11-26T22:00:00Z"),
            ("12pm", morning, Jerusalem, "2026-11-26T10:00:00Z"),
        ]);
    }

    #[test]
    fn dates_today_tomorrow_and_rfc3339() {
        let now = jerusalem("2026-11-26 10:00");
        assert_resolves(&[
            ("2026-11-28 18:00", now, Jerusalem, "2026-11-28T16:00:00Z"),
            ("2026-11-28T18:00", now, Jerusalem, "2026-11-28T16:00:00Z"),
            ("2026-11-28t18:00", now, Jerusalem, "2026-11-28T16:00:00Z"),
            ("2026-11-28 6pm", now, Jerusalem, "2026-11-28T16:00:00Z"),
            ("2026-07-01 18:00", now, Jerusalem, "2026-07-01T15:00:00Z"),
            ("today 18:00", now, Jerusalem, "2026-11-26T16:00:00Z"),
            ("tomorrow 9am", now, Jerusalem, "2026-11-27T07:00:00Z"),
            ("2026-11-28T18:00:00+02:00", now, Jerusalem, "2026-11-28T16:00:00Z"),
            ("2026-11-28T16:00:00Z", now, Jerusalem, "2026-11-28T16:00:00Z"),
            ("2026-11-28t16:00:00z", now, Jerusalem, "2026-11-28T16:00:00Z"),
            ("2026-11-28T16:00:00.5Z", now, New_York, "2026-11-28T16:00:00.5Z"),
            ("2026-11-28T11:00:00-05:00", now, London, "2026-11-28T16:00:00Z"),
        ]);
    }

    #[test]
    fn relative_deadlines() {
        let now = utc("2026-11-26T08:00:00Z");
        assert_resolves(&[
            ("+6h", now, Jerusalem, "2026-11-26T14:00:00Z"),
            ("+2d", now, Jerusalem, "2026-11-28T08:00:00Z"),
            ("+1h30m", now, Jerusalem, "2026-11-26T09:30:00Z"),
            ("+ 90m", now, Jerusalem, "2026-11-26T09:30:00Z"),
            ("+0s", now, Jerusalem, "2026-11-26T08:00:00Z"),
        ]);
    }

    #[test]
    fn local_times_across_dst_gaps_and_folds() {
        let now = utc("2026-03-01T12:00:00Z");
        assert_resolves(&[
            // 02:30 does not exist in New York on 2026-03-08: first valid instant is
            // 03:00 EDT (UTC-4).
            ("2026-03-08 02:30", now, New_York, "2026-03-08T07:00:00Z"),
            ("2026-03-08 03:00", now, New_York, "2026-03-08T07:00:00Z"),
            ("2026-03-08 01:59", now, New_York, "2026-03-08T06:59:00Z"),
            // 01:30 occurs twice on 2026-11-01: the earlier one is EDT (UTC-4).
            ("2026-11-01 01:30", now, New_York, "2026-11-01T05:30:00Z"),
            // Jerusalem springs forward on Friday 2026-03-27 at 02:00.
            ("2026-03-27 02:30", now, Jerusalem, "2026-03-27T00:00:00Z"),
            // London springs forward on 2026-03-29 at 01:00.
            ("2026-03-29 01:15", now, London, "2026-03-29T01:00:00Z"),
        ]);
        // The clock time "02:30" on the morning of the gap resolves to the gap's end.
        let before_gap = utc("2026-03-08T05:00:00Z"); // 00:00 EST
        assert_resolves(&[("02:30", before_gap, New_York, "2026-03-08T07:00:00Z")]);
    }

    #[test]
    fn a_time_in_the_repeated_hour_is_its_first_instant_still_ahead() {
        // New York falls back on Sunday 2026-11-01 at 02:00 EDT: 01:00-01:59 happens
        // twice, first in EDT (UTC-4), then in EST (UTC-5).
        let after_the_change = utc("2026-11-01T06:10:00Z"); // 01:10 EST, the second pass
        let second_half_hour = "2026-11-01T06:30:00Z"; // 01:30 EST, 20 minutes ahead
        assert_resolves(&[
            ("01:30", after_the_change, New_York, second_half_hour),
            ("1:30am", after_the_change, New_York, second_half_hour),
            ("sun 1:30am", after_the_change, New_York, second_half_hour),
            ("today 1:30am", after_the_change, New_York, second_half_hour),
            ("2026-11-01 01:30", after_the_change, New_York, second_half_hour),
            // 01:05 has passed in both offsets: tomorrow, next week.
            ("01:05", after_the_change, New_York, "2026-11-02T06:05:00Z"),
            ("sun 01:05", after_the_change, New_York, "2026-11-08T06:05:00Z"),
        ]);
        // At 01:40 EDT the first 01:30 has passed, the second (EST) is 50 minutes ahead.
        let in_the_first_pass = utc("2026-11-01T05:40:00Z");
        assert_resolves(&[
            ("01:30", in_the_first_pass, New_York, second_half_hour),
            ("today 01:30", in_the_first_pass, New_York, second_half_hour),
            // Still ahead in the first pass: the earlier instant.
            ("01:50", in_the_first_pass, New_York, "2026-11-01T05:50:00Z"),
        ]);
        // Exactly at the first 01:30 the deadline is the second one, never "now".
        assert_resolves(&[("01:30", utc("2026-11-01T05:30:00Z"), New_York, second_half_hour)]);
        // Both passed: the past-deadline error still shows the day's time.
        let later = utc("2026-11-01T07:00:00Z");
        let past = parse_when("today 01:30", later, New_York).expect("a time");
        assert!(matches!(
            check_deadline(past, later, New_York, Duration::from_secs(86_400)),
            Err(WhenError::InPast { .. })
        ));
        // A word is quoted as it was given, not lower-cased (it may be a pasted secret).
        let error = parse_when("sat XyZ", later, New_York).expect_err("no time");
        assert!(error.to_string().contains("\"XyZ\" is not a time"), "{error}");
        // It names the 01:30 just lived through (EST, 30 minutes ago), not the first one.
        assert_eq!(past, utc(second_half_hour));
    }

    #[test]
    fn unparseable_text_names_the_value_and_the_accepted_forms() {
        let now = jerusalem("2026-11-26 10:00");
        let cases: &[(&str, Option<&str>)] = &[
            ("garbage", Some("\"garbage\" is not a time like 18:00 or 6pm")),
            ("", Some("it is empty")),
            ("   ", Some("it is empty")),
            ("sat", Some("a day needs a time, e.g. \"sat 18:00\"")),
            ("Tomorrow", Some("a day needs a time, e.g. \"tomorrow 18:00\"")),
            ("sat 25:00", Some("hour 25 is out of range 0-23")),
            ("sat 18:60", Some("minute 60 is out of range 00-59")),
            ("sat 13pm", Some("hour 13 is out of range 1-12 for am/pm")),
            ("sat 0am", Some("hour 0 is out of range 1-12 for am/pm")),
            ("sat 18", Some("\"18\" is not a time like 18:00 or 6pm")),
            ("sat 18:0", Some("\"18:0\" is not a time like 18:00 or 6pm")),
            ("sat 018:00", Some("\"018:00\" is not a time like 18:00 or 6pm")),
            ("xyz 18:00", Some("\"xyz\" is not a weekday, a date, \"today\" or \"tomorrow\"")),
            ("2026-11-28", Some("a date needs a time, e.g. \"2026-11-28 18:00\"")),
            ("2026-02-30 10:00", Some("there is no date 2026-02-30")),
            ("26-11-28 10:00", Some("\"26-11-28\" is not a date like 2026-11-28")),
            ("+6x", Some("\"6x\" is not a duration like 6h, 90m or 1h30m")),
            ("+1H", Some("units are lower-case, as in every duration: write +1h")),
            ("+1H30M", Some("units are lower-case, as in every duration: write +1h30m")),
            ("+", Some("\"\" is not a duration like 6h, 90m or 1h30m")),
            ("+9999999999999999ms", None),
            ("next sat 18:00", None),
            ("-6h", Some("\"-6h\" is not a time like 18:00 or 6pm")),
        ];
        for (text, reason) in cases {
            let error = parse_when(text, now, Jerusalem).expect_err(text);
            let message = error.to_string();
            match reason {
                Some(reason) => assert_eq!(
                    error,
                    WhenError::Unparseable { text: text.to_string(), reason: Some(reason.to_string()) },
                    "{text:?}: {message}"
                ),
                None => assert!(matches!(error, WhenError::Unparseable { .. }), "{text:?}"),
            }
            assert!(message.starts_with(&format!("invalid time {text:?}")), "{message}");
            assert!(message.ends_with(ACCEPTED_FORMS), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn unparseable_message_reads_as_one_line() {
        let error = parse_when("sat 25:00", utc("2026-11-26T08:00:00Z"), Jerusalem).expect_err("hour 25");
        assert_eq!(
            error.to_string(),
            "invalid time \"sat 25:00\" (hour 25 is out of range 0-23): use RFC 3339 \
             (\"2026-11-28T18:00:00+02:00\"), \"YYYY-MM-DD HH:MM\", \"HH:MM\" or \"6pm\", \
             a weekday and time (\"sat 18:00\"), \"today\" or \"tomorrow\" and a time, \
             or a relative \"+6h\""
        );
    }

    #[test]
    fn check_deadline_refuses_past_and_too_far() {
        let now = jerusalem("2026-11-26 10:00");
        let fourteen_days = Duration::from_secs(14 * 86_400);

        let past = parse_when("2026-11-20 18:00", now, Jerusalem).expect("a date");
        let error = check_deadline(past, now, Jerusalem, fourteen_days).expect_err("past");
        assert_eq!(error.to_string(), "deadline Fri 2026-11-20 18:00 IST is in the past (5d 16h ago)");
        assert!(matches!(error, WhenError::InPast { .. }));

        let today_earlier = parse_when("today 09:00", now, Jerusalem).expect("today");
        assert!(matches!(
            check_deadline(today_earlier, now, Jerusalem, fourteen_days),
            Err(WhenError::InPast { .. })
        ));
        assert!(matches!(check_deadline(now, now, Jerusalem, fourteen_days), Err(WhenError::InPast { .. })));

        let far = parse_when("2026-12-16 10:00", now, Jerusalem).expect("a date");
        let error = check_deadline(far, now, Jerusalem, fourteen_days).expect_err("far");
        assert_eq!(
            error.to_string(),
            "deadline Wed 2026-12-16 10:00 IST is 20d away, 6d more than burst_max 14d"
        );

        let summer = parse_when("2026-06-01 10:00", utc("2026-05-20T00:00:00Z"), Jerusalem).expect("a date");
        let error =
            check_deadline(summer, utc("2026-05-10T00:00:00Z"), Jerusalem, fourteen_days).expect_err("far");
        assert!(error.to_string().starts_with("deadline Mon 2026-06-01 10:00 IDT is 22d 7h away"));

        let ok_cases = ["sat 18:00", "+1s", "+14d", "2026-12-10 10:00"];
        for text in ok_cases {
            let deadline = parse_when(text, now, Jerusalem).expect(text);
            assert_eq!(check_deadline(deadline, now, Jerusalem, fourteen_days), Ok(()), "{text}");
        }
        let just_beyond = parse_when("+14d1s", now, Jerusalem).expect("+14d1s");
        let error = check_deadline(just_beyond, now, Jerusalem, fourteen_days).expect_err("just beyond");
        assert!(matches!(error, WhenError::TooFar { .. }));
        // Rounded to two units both would read "14d": the excess says why it is refused.
        assert!(error.to_string().ends_with("is 14d away, 1s more than burst_max 14d"), "{error}");
    }
}
