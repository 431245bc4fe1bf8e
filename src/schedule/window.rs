//! Schedule windows: the weekly hours in which a drain may run without a burst.
//!
//! A window is a set of weekdays and a from/to wall-clock time in the configured zone,
//! e.g. `sun-thu 22:00-06:00`. Each listed day contributes one *occurrence* that opens
//! at `from` on that day and closes at `to`: the same day when `to` is later than
//! `from`, else the next day — a window that crosses midnight belongs to the day it
//! opens, so Thu 22:00 -> Fri 06:00 is in when Thursday is listed. `from == to` means
//! the whole 24 hours starting at `from`. Occurrences are laid out in local time, so
//! the window stays 22:00-06:00 on the wall clock on a 23- or 25-hour day; a boundary
//! that falls in a DST gap moves forward to the first valid instant after the gap, and
//! one that occurs twice takes the earlier instant. Occurrences that touch (as in
//! `mon-fri 00:00-00:00`) read as one stretch: the window opens when it goes from
//! closed to open and closes when it goes from open to closed.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;

use crate::schedule::when::resolve_local;

/// The accepted day forms, quoted at the end of a day-list error.
const ACCEPTED_DAYS: &str = "use day names or ranges such as \"sun-thu\", \"mon,wed,fri\", \
     \"sat\", \"fri-mon\", \"mon-fri,sun\", or \"*\" (also \"all\", \"daily\") for every day";

/// The accepted time form, quoted at the end of a time error.
const ACCEPTED_TIME: &str = "use HH:MM in 24-hour time, e.g. \"22:00\" or \"06:00\"";

/// Short day names, indexed by days from Sunday.
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How many days ahead to look for the next opening before deciding the window never
/// opens, or never closes (a stretch of touching occurrences that outlasts a week). Two
/// weeks and a day: a window of one day a week whose occurrence this week lies wholly in
/// a DST gap (and so is empty) opens next on the same day a week later.
const HORIZON_DAYS: usize = 15;

/// A weekly schedule window (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Whether each weekday is listed, indexed by days from Sunday.
    days: [bool; 7],
    from: NaiveTime,
    to: NaiveTime,
}

/// One day's stretch of the window as instants: open at `open`, closed again at `close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Occurrence {
    open: DateTime<Utc>,
    close: DateTime<Utc>,
}

impl Occurrence {
    fn contains(&self, at: DateTime<Utc>) -> bool {
        self.open <= at && at < self.close
    }
}

impl Window {
    /// Parses the `days`, `from` and `to` settings of a window. Days are comma-separated
    /// names (`sun`, `sunday`, ...; any case) or ranges of them (`sun-thu`, wrapping as in
    /// `fri-mon`), or `*`/`all`/`daily` for every day. Times are 24-hour `HH:MM`; `to`
    /// may also be `24:00` (the same as `00:00`). The error is a one-line message naming
    /// the bad value and the accepted forms.
    #[cfg(test)]
    pub fn parse(days: &str, from: &str, to: &str) -> Result<Window, String> {
        Window::parse_fields(days, from, to).map_err(|(_, message)| message)
    }

    /// [`Window::parse`], saying which of the three fields (`0` days, `1` from, `2` to) a
    /// refusal is about, so that a configuration error can point at it.
    pub fn parse_fields(days: &str, from: &str, to: &str) -> Result<Window, (usize, String)> {
        Ok(Window {
            days: parse_days(days).map_err(|message| (0, message))?,
            from: parse_time("from", from, false).map_err(|message| (1, message))?,
            to: parse_time("to", to, true).map_err(|message| (2, message))?,
        })
    }

    /// Whether `at` is inside the window, evaluated as wall-clock time in `zone`.
    pub fn contains(&self, at: DateTime<Utc>, zone: Tz) -> bool {
        let local_date = at.with_timezone(&zone).date_naive();
        // An occurrence lasts at most about a day, so only the ones opening on the
        // local date or the two before it can hold `at`.
        self.occurrences(local_date, 2, 0, zone).iter().any(|occurrence| occurrence.contains(at))
    }

    /// The next instant strictly after `after` at which the window opens (goes from
    /// closed to open). If `after` is inside the window, this is the opening after the
    /// current one. `None` if the window never opens or never closes (every day with
    /// `from == to`).
    pub fn next_opening(&self, after: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local_date = after.with_timezone(&zone).date_naive();
        let occurrences = self.occurrences(local_date, 2, HORIZON_DAYS, zone);
        occurrences
            .iter()
            .filter(|occurrence| occurrence.open > after)
            .filter(|occurrence| {
                // An occurrence that starts while an earlier one is still open continues
                // that stretch rather than opening the window.
                !occurrences
                    .iter()
                    .any(|earlier| earlier.open < occurrence.open && occurrence.open <= earlier.close)
            })
            .map(|occurrence| occurrence.open)
            .min()
    }

    /// When the window closes (goes from open to closed) if `at` is inside it: the end of
    /// the stretch of touching occurrences that holds `at`. `None` outside the window, or
    /// when it does not close within the horizon (every day with `from == to`).
    pub fn closes_at(&self, at: DateTime<Utc>, zone: Tz) -> Option<DateTime<Utc>> {
        let local_date = at.with_timezone(&zone).date_naive();
        let occurrences = self.occurrences(local_date, 2, HORIZON_DAYS, zone);
        let mut close =
            occurrences.iter().filter(|occurrence| occurrence.contains(at)).map(|o| o.close).max()?;
        // Occurrences are in opening order: one that opens before (or as) the stretch
        // closes carries it on.
        for occurrence in &occurrences {
            if occurrence.open <= close && occurrence.close > close {
                close = occurrence.close;
            }
        }
        // Still open at the end of the horizon: it does not close within it.
        (!self.contains(close, zone)).then_some(close)
    }

    /// Human description in canonical form, e.g. `"sun-thu 22:00-06:00"`,
    /// `"fri-mon 09:00-17:00"`, `"daily 00:00-00:00"`.
    pub fn describe(&self) -> String {
        format!("{} {}-{}", self.describe_days(), self.from.format("%H:%M"), self.to.format("%H:%M"))
    }

    /// The listed days as runs of consecutive days (wrapping past Saturday), each run
    /// named by its first and last day, ordered by first day from Sunday.
    fn describe_days(&self) -> String {
        if self.days.iter().all(|is_listed| *is_listed) {
            return "daily".to_string();
        }
        let mut runs: Vec<String> = Vec::new();
        for (start, start_name) in DAY_NAMES.iter().enumerate() {
            let previous = (start + 6) % 7;
            if !self.days[start] || self.days[previous] {
                continue;
            }
            let mut end = start;
            while self.days[(end + 1) % 7] {
                end = (end + 1) % 7;
            }
            if end == start {
                runs.push((*start_name).to_string());
            } else {
                runs.push(format!("{start_name}-{}", DAY_NAMES[end]));
            }
        }
        runs.join(",")
    }

    /// The occurrences of listed days from `days_before` days before `local_date` to
    /// `days_after` days after it, in opening order; empty ones (both boundaries in the
    /// same DST gap) are left out.
    fn occurrences(
        &self,
        local_date: NaiveDate,
        days_before: usize,
        days_after: usize,
        zone: Tz,
    ) -> Vec<Occurrence> {
        let Some(first_date) = local_date.checked_sub_days(Days::new(days_before as u64)) else {
            return Vec::new();
        };
        let mut occurrences: Vec<Occurrence> = first_date
            .iter_days()
            .take(days_before + days_after + 1)
            .filter_map(|date| self.occurrence_on(date, zone))
            .collect();
        occurrences.sort_by_key(|occurrence| occurrence.open);
        occurrences
    }

    /// The occurrence opening on `date`, if that day is listed.
    fn occurrence_on(&self, date: NaiveDate, zone: Tz) -> Option<Occurrence> {
        if !self.days[day_index(date.weekday())] {
            return None;
        }
        let close_date = if self.to > self.from { date } else { date.checked_add_days(Days::new(1))? };
        let open = resolve_local(&zone, date.and_time(self.from))?;
        let close = resolve_local(&zone, close_date.and_time(self.to))?;
        (open < close).then_some(Occurrence { open, close })
    }
}

fn day_index(weekday: Weekday) -> usize {
    weekday.num_days_from_sunday() as usize
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let invalid = |detail: String| format!("invalid window days {text:?} ({detail}): {ACCEPTED_DAYS}");
    let mut days = [false; 7];
    if text.trim().is_empty() {
        return Err(invalid("no days listed".to_string()));
    }
    for given in text.split(',') {
        let item = given.trim().to_lowercase();
        if item.is_empty() {
            return Err(invalid("an empty item between commas".to_string()));
        }
        if item == "*" || item == "all" || item == "daily" {
            days = [true; 7];
            continue;
        }
        // Matched lower-cased, quoted as given.
        let day = |name: &str| {
            parse_day_name(name.trim()).ok_or_else(|| {
                let at = item.find(name).unwrap_or(0);
                let shown = given.trim().get(at..at + name.len()).unwrap_or(name);
                invalid(format!("{:?} is not a day", shown.trim()))
            })
        };
        match item.split_once('-') {
            Some((first, last)) => {
                let first = day(first)?;
                let last = day(last)?;
                let mut index = first;
                days[index] = true;
                while index != last {
                    index = (index + 1) % 7;
                    days[index] = true;
                }
            }
            None => days[day(&item)?] = true,
        }
    }
    Ok(days)
}

/// A day name, short or full, as days from Sunday.
fn parse_day_name(name: &str) -> Option<usize> {
    let index = match name {
        "sun" | "sunday" => 0,
        "mon" | "monday" => 1,
        "tue" | "tues" | "tuesday" => 2,
        "wed" | "weds" | "wednesday" => 3,
        "thu" | "thur" | "thurs" | "thursday" => 4,
        "fri" | "friday" => 5,
        "sat" | "saturday" => 6,
        _ => return None,
    };
    Some(index)
}

/// A 24-hour `H:MM`/`HH:MM` time; `24:00` (= `00:00`) only where `is_end` allows it.
fn parse_time(field: &str, text: &str, is_end: bool) -> Result<NaiveTime, String> {
    let invalid =
        |detail: String| format!("invalid window {field} time {text:?} ({detail}): {ACCEPTED_TIME}");
    let not_a_time = || invalid("not a time".to_string());
    let trimmed = text.trim();
    let (hour_text, minute_text) = trimmed.split_once(':').ok_or_else(not_a_time)?;
    let is_digits = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
    if !is_digits(hour_text) || hour_text.len() > 2 || !is_digits(minute_text) || minute_text.len() != 2 {
        return Err(not_a_time());
    }
    let hour: u32 = hour_text.parse().map_err(|_| not_a_time())?;
    let minute: u32 = minute_text.parse().map_err(|_| not_a_time())?;
    if is_end && hour == 24 && minute == 0 {
        return Ok(NaiveTime::MIN);
    }
    if hour > 23 {
        return Err(invalid(format!("hour {hour} is out of range 0-23")));
    }
    if minute > 59 {
        return Err(invalid(format!("minute {minute} is out of range 00-59")));
    }
    NaiveTime::from_hms_opt(hour, minute, 0).ok_or_else(not_a_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDateTime, TimeZone};
    use chrono_tz::{America::New_York, Asia::Jerusalem, Europe::Berlin, Europe::London};

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect(text).with_timezone(&Utc)
    }

    /// Wall-clock time in `zone`, e.g. "2026-11-26 22:00" (must be unambiguous).
    fn local(zone: Tz, text: &str) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect(text);
        zone.from_local_datetime(&naive).single().expect(text).with_timezone(&Utc)
    }

    fn window(days: &str, from: &str, to: &str) -> Window {
        Window::parse(days, from, to).expect(days)
    }

    /// The window is open at `at` and until just before `closing`, and shut at `closing`.
    fn assert_open_until(window: &Window, at: DateTime<Utc>, closing: DateTime<Utc>, zone: Tz) {
        assert!(window.contains(at, zone), "open at {at}");
        assert!(window.contains(closing - chrono::Duration::minutes(1), zone), "open just before {closing}");
        assert!(!window.contains(closing, zone), "shut at {closing}");
    }

    // 2026-11-22 is a Sunday, so 2026-11-26 is a Thursday and 2026-11-28 a Saturday.

    #[test]
    fn window_crossing_midnight_belongs_to_the_day_it_opens() {
        let night = window("sun-thu", "22:00", "06:00");
        let cases: &[(&str, bool)] = &[
            ("2026-11-26 22:00", true),  // Thu 22:00: opens
            ("2026-11-26 21:59", false), // Thu just before
            ("2026-11-27 03:00", true),  // Fri 03:00: Thursday's night
            ("2026-11-27 05:59", true),  // Fri just before closing
            ("2026-11-27 06:00", false), // Fri 06:00: closed
            ("2026-11-27 23:00", false), // Fri 23:00: Friday is not listed
            ("2026-11-28 23:00", false), // Sat 23:00: Saturday is not listed
            ("2026-11-29 05:00", false), // Sun 05:00: would be Saturday's night
            ("2026-11-29 22:30", true),  // Sun 22:30
            ("2026-11-30 05:00", true),  // Mon 05:00: Sunday's night
            ("2026-11-30 12:00", false), // Mon noon
        ];
        for (at, expected) in cases {
            assert_eq!(night.contains(local(Jerusalem, at), Jerusalem), *expected, "{at}");
        }
    }

    #[test]
    fn window_within_one_day() {
        let office = window("mon-fri", "09:00", "17:30");
        let cases: &[(&str, bool)] = &[
            ("2026-11-23 09:00", true), // Mon
            ("2026-11-23 08:59", false),
            ("2026-11-23 17:29", true),
            ("2026-11-23 17:30", false),
            ("2026-11-27 12:00", true),  // Fri
            ("2026-11-28 12:00", false), // Sat
            ("2026-11-22 12:00", false), // Sun
        ];
        for (at, expected) in cases {
            assert_eq!(office.contains(local(London, at), London), *expected, "{at}");
        }
    }

    #[test]
    fn every_day_and_whole_day_windows() {
        let nightly = window("*", "01:00", "05:00");
        for day in 22..=28 {
            let inside = format!("2026-11-{day} 03:00");
            let outside = format!("2026-11-{day} 06:00");
            assert!(nightly.contains(local(Jerusalem, &inside), Jerusalem), "{inside}");
            assert!(!nightly.contains(local(Jerusalem, &outside), Jerusalem), "{outside}");
        }
        assert_eq!(window("all", "01:00", "05:00"), nightly);
        assert_eq!(window("Daily", "01:00", "05:00"), nightly);

        // from == to: the whole 24 hours from `from` on each listed day.
        let saturday_day = window("sat", "06:00", "06:00");
        let cases: &[(&str, bool)] = &[
            ("2026-11-28 05:59", false), // Sat before it opens
            ("2026-11-28 06:00", true),
            ("2026-11-28 23:00", true),
            ("2026-11-29 05:59", true), // Sun morning: still Saturday's
            ("2026-11-29 06:00", false),
        ];
        for (at, expected) in cases {
            assert_eq!(saturday_day.contains(local(Jerusalem, at), Jerusalem), *expected, "{at}");
        }

        let always = window("*", "00:00", "00:00");
        let at = local(Jerusalem, "2026-11-26 12:00");
        assert!(always.contains(at, Jerusalem));
        assert_eq!(always.next_opening(at, Jerusalem), None);
    }

    #[test]
    fn parses_day_lists() {
        let cases: &[(&str, &str)] = &[
            ("sun-thu", "sun-thu"),
            ("Sunday-Thursday", "sun-thu"),
            ("sun,mon,tue,wed,thu", "sun-thu"),
            ("mon,wed,fri", "mon,wed,fri"),
            ("sat", "sat"),
            ("SAT", "sat"),
            ("mon-fri,sun", "sun-fri"),
            ("mon-fri, sat", "mon-sat"),
            ("fri-mon", "fri-mon"),
            ("fri - mon", "fri-mon"),
            ("fri-mon,wed", "wed,fri-mon"),
            ("sat-sun", "sat-sun"),
            ("tue-tue", "tue"),
            ("*", "daily"),
            ("all", "daily"),
            ("daily", "daily"),
            ("mon-sun", "daily"),
            ("sun-sat", "daily"),
            ("thu-wed", "daily"),
            ("tues,thurs", "tue,thu"),
        ];
        for (days, expected) in cases {
            assert_eq!(
                window(days, "22:00", "06:00").describe(),
                format!("{expected} 22:00-06:00"),
                "{days}"
            );
        }
        assert_eq!(window("sun-thu", "9:05", "24:00").describe(), "sun-thu 09:05-00:00");
        assert_eq!(
            window("sun-thu", "22:00", "06:00"),
            window("sunday,monday,tuesday,wednesday,thursday", " 22:00 ", "06:00")
        );
    }

    #[test]
    fn rejects_bad_inputs_naming_the_value() {
        let cases: &[(&str, &str, &str, &str)] = &[
            ("sun-xyz", "22:00", "06:00", "invalid window days \"sun-xyz\" (\"xyz\" is not a day): "),
            ("", "22:00", "06:00", "invalid window days \"\" (no days listed): "),
            ("  ", "22:00", "06:00", "invalid window days \"  \" (no days listed): "),
            ("mon,,tue", "22:00", "06:00", "(an empty item between commas): "),
            ("mon,", "22:00", "06:00", "(an empty item between commas): "),
            ("weekdays", "22:00", "06:00", "(\"weekdays\" is not a day): "),
            ("Mon-XyZ", "22:00", "06:00", "(\"XyZ\" is not a day): "),
            ("mon-", "22:00", "06:00", "(\"\" is not a day): "),
            (
                "sun-thu",
                "25:00",
                "06:00",
                "invalid window from time \"25:00\" (hour 25 is out of range 0-23): ",
            ),
            ("sun-thu", "24:00", "06:00", "invalid window from time \"24:00\" (hour 24"),
            ("sun-thu", "22:00", "24:30", "invalid window to time \"24:30\" (hour 24"),
            ("sun-thu", "22:00", "06:60", "(minute 60 is out of range 00-59): "),
            ("sun-thu", "22", "06:00", "invalid window from time \"22\" (not a time): "),
            ("sun-thu", "10pm", "06:00", "invalid window from time \"10pm\" (not a time): "),
            ("sun-thu", "22:00", "6:0", "invalid window to time \"6:0\" (not a time): "),
            ("sun-thu", "22:00", "", "invalid window to time \"\" (not a time): "),
        ];
        for (days, from, to, expected_fragment) in cases {
            let message = Window::parse(days, from, to).expect_err(days);
            assert!(
                message.contains(expected_fragment),
                "{days:?} {from:?} {to:?}: {message:?} lacks {expected_fragment:?}"
            );
            assert!(message.ends_with(ACCEPTED_DAYS) || message.ends_with(ACCEPTED_TIME), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn next_opening_wraps_the_week() {
        let night = window("sun-thu", "22:00", "06:00");
        // Each case: (after, expected opening) in Jerusalem wall-clock time.
        let cases: &[(&str, &str)] = &[
            ("2026-11-26 12:00", "2026-11-26 22:00"), // Thu noon -> tonight
            ("2026-11-26 22:00", "2026-11-29 22:00"), // at the opening -> the next one
            ("2026-11-27 03:00", "2026-11-29 22:00"), // inside Thu's night -> Sun
            ("2026-11-28 23:00", "2026-11-29 22:00"), // Sat night -> Sun
            ("2026-11-29 22:30", "2026-11-30 22:00"), // inside Sun's night -> Mon
        ];
        for (after, expected) in cases {
            assert_eq!(
                night.next_opening(local(Jerusalem, after), Jerusalem),
                Some(local(Jerusalem, expected)),
                "{after}"
            );
        }
        let weekend = window("fri-sat", "00:00", "00:00");
        // Mon -> Fri 00:00; inside Friday the opening is a week on, not Saturday 00:00
        // (Saturday continues Friday's stretch).
        let after_monday = local(London, "2026-11-23 12:00");
        assert_eq!(weekend.next_opening(after_monday, London), Some(local(London, "2026-11-27 00:00")));
        let inside_friday = local(London, "2026-11-27 12:00");
        assert_eq!(weekend.next_opening(inside_friday, London), Some(local(London, "2026-12-04 00:00")));
        assert_open_until(&weekend, inside_friday, local(London, "2026-11-29 00:00"), London);
    }

    #[test]
    fn next_opening_across_dst_changes() {
        let night = window("sun-thu", "22:00", "06:00");
        // Israel leaves DST on Sunday 2026-10-25 02:00: Thu 22 Oct is summer time
        // (UTC+3), Sun 25 Oct evening is standard time (UTC+2).
        let thursday_night = utc("2026-10-22T22:00:00Z"); // Fri 01:00 IDT, inside
        assert!(night.contains(thursday_night, Jerusalem));
        assert_eq!(night.next_opening(thursday_night, Jerusalem), Some(utc("2026-10-25T20:00:00Z")));
        assert_open_until(&night, thursday_night, utc("2026-10-23T03:00:00Z"), Jerusalem);
        // Israel enters DST on Friday 2026-03-27 02:00: Thu 26 Mar opens in winter time,
        // Sun 29 Mar in summer time.
        assert_eq!(
            night.next_opening(utc("2026-03-26T12:00:00Z"), Jerusalem),
            Some(utc("2026-03-26T20:00:00Z"))
        );
        assert_eq!(
            night.next_opening(utc("2026-03-26T20:00:00Z"), Jerusalem),
            Some(utc("2026-03-29T19:00:00Z"))
        );
        // Thursday's night spans the spring-forward gap: 22:00 IST to 06:00 IDT is 7 h.
        assert_open_until(&night, utc("2026-03-26T23:00:00Z"), utc("2026-03-27T03:00:00Z"), Jerusalem);

        // London leaves BST on Sunday 2026-10-25 02:00 (back to 01:00).
        let evenings = window("sat-sun", "18:00", "23:00");
        assert_eq!(
            evenings.next_opening(utc("2026-10-24T18:00:00Z"), London),
            Some(utc("2026-10-25T18:00:00Z"))
        );
        assert_eq!(
            evenings.next_opening(utc("2026-10-24T12:00:00Z"), London),
            Some(utc("2026-10-24T17:00:00Z"))
        );
        // A night window over the 25-hour night is still 22:00-06:00 on the wall clock.
        let saturday_night = window("sat", "22:00", "06:00");
        let opening = utc("2026-10-24T21:00:00Z"); // 22:00 BST
        assert_eq!(saturday_night.next_opening(utc("2026-10-24T12:00:00Z"), London), Some(opening));
        // It closes at 06:00 GMT: 9 h later.
        assert_open_until(&saturday_night, opening, utc("2026-10-25T06:00:00Z"), London);
        // London enters BST on Sunday 2026-03-29 01:00 (to 02:00).
        assert_eq!(
            saturday_night.next_opening(utc("2026-03-28T12:00:00Z"), London),
            Some(utc("2026-03-28T22:00:00Z"))
        );
        // It closes at 06:00 BST: 7 h later.
        assert_open_until(&saturday_night, utc("2026-03-28T22:00:00Z"), utc("2026-03-29T05:00:00Z"), London);
    }

    #[test]
    fn closes_at_is_the_end_of_the_stretch_that_holds_the_instant() {
        let night = window("sun-thu", "22:00", "06:00");
        // Thursday 26 March 23:00 CET in Berlin: Thursday's night closes Friday 06:00 CET.
        assert_eq!(night.closes_at(utc("2026-03-26T22:00:00Z"), Berlin), Some(utc("2026-03-27T05:00:00Z")));
        assert_eq!(night.closes_at(utc("2026-03-27T05:00:00Z"), Berlin), None, "closed at 06:00");
        assert_eq!(night.closes_at(utc("2026-03-27T12:00:00Z"), Berlin), None, "outside");
        // Touching occurrences read as one stretch: Monday 00:00 to Saturday 00:00.
        let weekdays = window("mon-fri", "00:00", "00:00");
        assert_eq!(
            weekdays.closes_at(local(Jerusalem, "2026-11-24 12:00"), Jerusalem),
            Some(local(Jerusalem, "2026-11-28 00:00"))
        );
        // A window that is always open never closes.
        assert_eq!(window("*", "00:00", "00:00").closes_at(utc("2026-11-24T12:00:00Z"), Jerusalem), None);
    }

    #[test]
    fn boundaries_in_a_dst_gap_move_to_the_first_valid_instant() {
        // New York skips 02:00-03:00 on Sunday 2026-03-08.
        let early = window("sun", "02:30", "04:00");
        assert_eq!(
            early.next_opening(utc("2026-03-07T12:00:00Z"), New_York),
            Some(utc("2026-03-08T07:00:00Z")) // 03:00 EDT
        );
        assert!(early.contains(utc("2026-03-08T07:00:00Z"), New_York));
        assert!(!early.contains(utc("2026-03-08T06:59:00Z"), New_York));
        // A window lying wholly inside the gap does not open that day.
        let lost = window("sun", "02:00", "02:45");
        assert_eq!(
            lost.next_opening(utc("2026-03-07T12:00:00Z"), New_York),
            Some(utc("2026-03-15T06:00:00Z")) // the next Sunday, 02:00 EDT
        );
        // Seen from Thursday, that Sunday's occurrence is empty: the next is a week later.
        assert_eq!(
            lost.next_opening(utc("2026-03-05T12:00:00Z"), New_York),
            Some(utc("2026-03-15T06:00:00Z"))
        );
        // Berlin skips 02:00-03:00 on Sunday 2026-03-29: `sun 02:00-03:00` lies in the gap,
        // so from Thursday 26 March it next opens on Sunday 5 April, 02:00 CEST.
        let berlin = window("sun", "02:00", "03:00");
        assert_eq!(
            berlin.next_opening(utc("2026-03-26T12:00:00Z"), Berlin),
            Some(utc("2026-04-05T00:00:00Z"))
        );
        // A whole-day window on the 23-hour day.
        let sunday = window("sun", "00:00", "00:00");
        let midday = utc("2026-03-08T16:00:00Z");
        // It closes on Monday 00:00 EDT.
        assert_open_until(&sunday, midday, utc("2026-03-09T04:00:00Z"), New_York);
    }
}
