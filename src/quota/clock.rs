//! Reading an absolute reset time: RFC 3339 and ISO timestamps, HTTP dates, clock times
//! (`8pm`, `15:00`, `noon`), dates with or without a year (`Nov 27`, `Sep 20th, 2026`),
//! weekdays and `tomorrow`, each optionally followed by a zone — an IANA name
//! (`(Europe/Warsaw)`), an abbreviation (`PST`, `CET`, an ambiguous `IST` read as the
//! configured zone's when it uses it), or an offset (`UTC+2`). A time without a date is
//! its next occurrence; a time without a zone is in the configured zone, resolved on the
//! day of the reset (daylight saving time).

use std::sync::LazyLock;

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::{OffsetName, Tz};
use regex::Regex;

use super::patterns::compile;
use crate::schedule::when::{resolve_local, resolve_local_ahead};

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

    /// The first instant at or after `now` at which the local clock reads `local`: of a
    /// time that happens twice (clocks going back), the earlier one when it is still
    /// ahead, else the later one; None when every instant of it has passed.
    fn resolve_ahead(self, local: NaiveDateTime, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Zone::Named(tz) => resolve_local_ahead(&tz, local, now),
            Zone::Fixed(offset) => resolve_local_ahead(&offset, local, now),
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

pub(super) static ISO_DATETIME: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:(?:t|\s+)([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?)?(?:\s*(z\b|[+-][0-9]{2}(?::?[0-9]{2})?\b))?",
    )
});
static MONTH_DAY: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)([a-z]*)\.?\s+([0-9]{1,2})(?:st|nd|rd|th)?\b(?:\s*,?\s*([0-9]{4})\b)?",
    )
});
static DAY_MONTH: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^([0-9]{1,2})(?:st|nd|rd|th)?\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)([a-z]*)\.?(?:\s*,?\s*([0-9]{4})\b)?",
    )
});
static WEEKDAY: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)^(mon|tue|wed|thu|fri|sat|sun)([a-z]*)\.?,?"));
static RELATIVE_DAY: LazyLock<Regex> = LazyLock::new(|| compile(r"(?i)^(today|tonight|tomorrow)\b"));
static CLOCK: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?i)^([0-9]{1,2})(?:[:.]([0-9]{2}))?(?::([0-9]{2}))?(?:\s*([ap])\.?\s?m\b\.?)?")
});
static NOON_MIDNIGHT: LazyLock<Regex> = LazyLock::new(|| compile(r"(?i)^(noon|midnight)\b"));
static ZONE_PARENTHESIZED: LazyLock<Regex> = LazyLock::new(|| compile(r"^\s*\(\s*([^()]{1,60}?)\s*\)"));
static ZONE_UTC_OFFSET: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)^\s*(?:utc|gmt|z)?\s*([+-])\s*([0-9]{1,2})(?::?([0-9]{2}))?\b"));
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
pub(super) fn parse_absolute(
    text: &str,
    now: DateTime<Utc>,
    configured: Tz,
) -> Option<(DateTime<Utc>, usize)> {
    let fillers = ["at", "on", "around", "about", "approximately", "approx.", "~", ":"];
    let position = skip_fillers(text, 0, &fillers);
    if let Some((instant, length)) = parse_obsolete_http_date(&text[position..], now) {
        return Some((instant, position + length));
    }
    let mut parts = parse_leading_date(text, position)?;
    parse_clock_and_zone(text, &mut parts, now, configured);
    if parts.time.is_some() && matches!(parts.date, DateSpec::Unspecified) {
        parse_trailing_date(text, &mut parts, now, configured);
    }
    if matches!(parts.date, DateSpec::Unspecified) && parts.time.is_none() {
        return None;
    }
    let instant = resolve_parts(&parts, now, configured)?;
    Some((instant, parts.position))
}

/// The two obsolete HTTP-date forms RFC 9110 (section 5.6.7) asks recipients to accept,
/// always in GMT: RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` — a two-digit year more than
/// 50 years ahead of `now` is the most recent past year with those digits — and asctime
/// `Sun Nov  6 08:49:37 1994`.
fn parse_obsolete_http_date(text: &str, now: DateTime<Utc>) -> Option<(DateTime<Utc>, usize)> {
    let (captures, day, month, year, first_time_group) = if let Some(captures) = RFC850_DATE.captures(text) {
        let two_digits: i32 = captures[3].parse().ok()?;
        let mut year = now.year() / 100 * 100 + two_digits;
        if year > now.year() + 50 {
            year -= 100;
        }
        let day: u32 = captures[1].parse().ok()?;
        let month = month_number(&captures[2], "")?;
        (captures, day, month, year, 4)
    } else if let Some(captures) = ASCTIME_DATE.captures(text) {
        let month = month_number(&captures[1], "")?;
        let day: u32 = captures[2].parse().ok()?;
        let year: i32 = captures[6].parse().ok()?;
        (captures, day, month, year, 3)
    } else {
        return None;
    };
    let number = |index: usize| -> Option<u32> { captures.get(index)?.as_str().parse().ok() };
    let time = NaiveTime::from_hms_opt(
        number(first_time_group)?,
        number(first_time_group + 1)?,
        number(first_time_group + 2)?,
    )?;
    let instant = NaiveDate::from_ymd_opt(year, month, day)?.and_time(time).and_utc();
    Some((instant, captures.get(0)?.end()))
}

static RFC850_DATE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^(?:mon|tues|wednes|thurs|fri|satur|sun)day,\s*([0-9]{2})-(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)-([0-9]{2})\s+([0-9]{2}):([0-9]{2}):([0-9]{2})\s+gmt\b",
    )
});
static ASCTIME_DATE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)^(?:mon|tue|wed|thu|fri|sat|sun)\s+(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\s+([0-9]{1,2})\s+([0-9]{2}):([0-9]{2}):([0-9]{2})\s+([0-9]{4})\b",
    )
});

/// What [`parse_absolute`] has read so far, and the byte offset where it stopped.
struct Parts {
    date: DateSpec,
    time: Option<NaiveTime>,
    zone: Option<Zone>,
    position: usize,
}

/// An ISO date-time at `position`, else a weekday, a relative day or a calendar date
/// (each optional); `None` when an ISO date-time names no valid date, time or offset.
fn parse_leading_date(text: &str, position: usize) -> Option<Parts> {
    if let Some(captures) = ISO_DATETIME.captures(&text[position..]) {
        return parse_iso(&captures, position);
    }
    let mut parts = Parts { date: DateSpec::Unspecified, time: None, zone: None, position };
    if let Some((weekday, length)) = parse_weekday(&text[parts.position..]) {
        parts.date = DateSpec::Weekday(weekday);
        parts.position = skip_fillers(text, parts.position + length, &[","]);
    }
    if let Some((days, length)) = parse_relative_day(&text[parts.position..]) {
        parts.date = DateSpec::DaysFromToday(days);
        parts.position += length;
    } else if let Some((calendar, length)) = parse_calendar_date(&text[parts.position..]) {
        parts.date = calendar;
        parts.position += length;
    }
    Some(parts)
}

/// The date, optional time and optional offset of an ISO date-time matched at `position`.
fn parse_iso(captures: &regex::Captures<'_>, position: usize) -> Option<Parts> {
    let number = |index: usize| -> Option<u32> { captures.get(index)?.as_str().parse().ok() };
    let year: i32 = captures[1].parse().ok()?;
    let date = DateSpec::Full(NaiveDate::from_ymd_opt(year, number(2)?, number(3)?)?);
    let mut time = None;
    if captures.get(4).is_some() {
        let nanosecond = match captures.get(7) {
            Some(fraction) => {
                let digits = fraction.as_str();
                let value: u32 = digits.parse().ok()?;
                value * 10u32.pow(9 - u32::try_from(digits.len()).ok()?)
            }
            None => 0,
        };
        time =
            Some(NaiveTime::from_hms_nano_opt(number(4)?, number(5)?, number(6).unwrap_or(0), nanosecond)?);
    }
    let mut zone = None;
    if let Some(offset) = captures.get(8) {
        let written = offset.as_str();
        zone = if written.eq_ignore_ascii_case("z") {
            Some(Zone::Fixed(FixedOffset::east_opt(0)?))
        } else {
            let digits: String = written.get(1..)?.chars().filter(char::is_ascii_digit).collect();
            let minutes = (digits.len() == 4).then(|| digits.get(2..)).flatten();
            fixed_offset(written.get(..1)?, digits.get(..2)?, minutes)
        };
    }
    Some(Parts { date, time, zone, position: position + captures.get(0)?.end() })
}

/// A clock time (when the date-time gave none), then a zone (when it gave none).
fn parse_clock_and_zone(text: &str, parts: &mut Parts, now: DateTime<Utc>, configured: Tz) {
    if parts.time.is_none() {
        let start = skip_fillers(text, parts.position, &[",", "at", "@"]);
        if let Some((clock, length)) = parse_clock(&text[start..]) {
            parts.time = Some(clock);
            parts.position = start + length;
        }
    }
    parse_missing_zone(text, parts, now, configured);
}

/// A zone at the current position, when none was read yet.
fn parse_missing_zone(text: &str, parts: &mut Parts, now: DateTime<Utc>, configured: Tz) {
    if parts.zone.is_none() {
        if let Some((found, length)) = parse_zone(&text[parts.position..], now, configured) {
            parts.zone = Some(found);
            parts.position += length;
        }
    }
}

/// A date after the clock time (`9am tomorrow`, `3pm on Friday`), then a zone.
fn parse_trailing_date(text: &str, parts: &mut Parts, now: DateTime<Utc>, configured: Tz) {
    let start = skip_fillers(text, parts.position, &[",", "on"]);
    let rest = &text[start..];
    let trailing_date = if let Some((days, length)) = parse_relative_day(rest) {
        Some((DateSpec::DaysFromToday(days), length))
    } else if let Some((weekday, length)) = parse_weekday(rest) {
        Some((DateSpec::Weekday(weekday), length))
    } else {
        parse_calendar_date(rest)
    };
    if let Some((found, length)) = trailing_date {
        parts.date = found;
        parts.position = start + length;
        parse_missing_zone(text, parts, now, configured);
    }
}

/// The first instant at or after `now` that matches the parts read (a full date gives
/// exactly one: the first of its instants still ahead, else its earlier one); the zone
/// defaults to `configured`, the time to midnight.
fn resolve_parts(parts: &Parts, now: DateTime<Utc>, configured: Tz) -> Option<DateTime<Utc>> {
    let zone = parts.zone.unwrap_or(Zone::Named(configured));
    let time = parts.time.unwrap_or(NaiveTime::MIN);
    let today = zone.local(now).date();
    let ahead = |date: NaiveDate| zone.resolve_ahead(date.and_time(time), now);
    let at = |date: NaiveDate| ahead(date).or_else(|| zone.resolve(date.and_time(time)));
    match parts.date {
        DateSpec::Full(date) => at(date),
        DateSpec::MonthDay(month, day) => (today.year()..=today.year() + 8)
            .find_map(|year| ahead(NaiveDate::from_ymd_opt(year, month, day)?)),
        DateSpec::DaysFromToday(days) => at(today.checked_add_signed(Duration::days(days))?),
        DateSpec::Weekday(weekday) => (0..=7).find_map(|days| {
            let date = today.checked_add_signed(Duration::days(days))?;
            if date.weekday() != weekday {
                return None;
            }
            ahead(date)
        }),
        DateSpec::Unspecified => {
            (0..=2).find_map(|days| ahead(today.checked_add_signed(Duration::days(days))?))
        }
    }
}

// --- scanning helpers, shared with reset.rs ------------------------------------

pub(super) fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

pub(super) fn skip_spaces(text: &str, position: usize) -> usize {
    position + text[position..].find(|c: char| !c.is_whitespace()).unwrap_or(text.len() - position)
}

/// Skips spaces and any of `fillers` (symbols, or words followed by a non-letter).
pub(super) fn skip_fillers(text: &str, mut position: usize, fillers: &[&str]) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::reset::parse_reset;
    use crate::quota::tests::{instant, NOW, ZONE};

    #[rustfmt::skip]
    #[test]
    fn parses_every_absolute_reset_form() {
        let cases: &[(&str, Tz, &str, Option<&str>)] = &[
            // Timestamps.
            (NOW, ZONE, "anthropic-ratelimit-tokens-reset: 2025-11-23T10:01:00Z", Some("2025-11-23T10:01:00Z")),
            (NOW, ZONE, "rate limited until 2025-11-23T12:00:00.5+01:00", Some("2025-11-23T11:00:00.5Z")),
            (NOW, ZONE, "Retry-After: Sun, 23 Nov 2025 11:00:00 GMT", Some("2025-11-23T11:00:00Z")),
            // The obsolete HTTP-date forms (RFC 9110): RFC 850 and asctime, in GMT.
            ("2026-06-10T12:00:00Z", ZONE, "Retry-After: Wednesday, 10-Jun-26 13:00:00 GMT", Some("2026-06-10T13:00:00Z")),
            ("2026-06-10T12:00:00Z", ZONE, "Retry-After: Wed Jun 10 13:00:00 2026", Some("2026-06-10T13:00:00Z")),
            ("2026-06-10T12:00:00Z", ZONE, "Retry-After: Wed Jun  9 13:00:00 2026", Some("2026-06-09T13:00:00Z")),
            ("2026-06-10T12:00:00Z", ZONE, "Retry-After: Sunday, 06-Nov-94 08:49:37 GMT", Some("1994-11-06T08:49:37Z")),
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
            // After the first 02:30 passed, the second one (an hour later) is still ahead.
            ("2026-10-25T01:05:00Z", chrono_tz::Europe::Warsaw, "resets 2:30am", Some("2026-10-25T01:30:00Z")),
            ("2026-11-01T09:10:00Z", ZONE, "resets 1:30am (America/Los_Angeles)", Some("2026-11-01T09:30:00Z")),
            // A weekday time just passed is its next occurrence (the backoff reads it as "just now").
            ("2026-06-10T03:05:00Z", chrono_tz::Europe::Warsaw, "resets Wed 5am", Some("2026-06-17T03:00:00Z")),
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
    fn digits_of_other_scripts_are_not_digits_and_never_panic() {
        // Arabic-Indic, fullwidth and mathematical digits match a Unicode `\d`: an offset
        // `+١٢` left fewer than two ASCII digits to slice, and the pass panicked.
        for line in [
            "Your limit will reset at 2026-12-05 10:00 +١٢",
            "Your limit will reset at 2026-12-05 10:00 +0١",
            "Your limit will reset at 2026-12-05T10:00:00.١٢Z",
            "resets at ١٠:٠٠ (UTC)",
            "resets ０９:３０am",
            "try again in 𝟘.𝟝s",
        ] {
            let parsed = parse_reset(line, instant(NOW), ZONE);
            assert!(parsed.is_none_or(|at| at.to_rfc3339().starts_with("2026-12-05T")), "{line}: {parsed:?}");
        }
        assert_eq!(parse_reset("resets at ١٠:٠٠ (UTC)", instant(NOW), ZONE), None);
    }

    #[test]
    fn built_in_patterns_compile() {
        let patterns: [&Regex; 14] = [
            &RFC850_DATE,
            &ASCTIME_DATE,
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
        ];
        assert!(patterns.iter().all(|pattern| !pattern.as_str().is_empty()));
    }
}
