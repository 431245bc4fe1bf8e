//! Per-window limits that state no reset: "tokens per minute", "requests per day" (RPM,
//! TPM, RPD), "daily quota". Such a limit lifts at the next boundary of the window its
//! wording names, so the reset is that boundary (`ResetForm::WindowBoundary`): per
//! minute the next whole minute (UTC), per hour the next whole hour (UTC), per day the
//! next midnight in the vendor's zone — Pacific time for Gemini, whose daily quota resets
//! at midnight there, UTC otherwise. A reset the message states always wins; this is read
//! only when it states none (docs/rate-limits.md, "Per-window limits").

use std::sync::LazyLock;

use chrono::{DateTime, Days, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use regex::Regex;

use super::patterns::compile;
use super::Profile;
use crate::backoff::{ResetForm, StatedReset};

/// The window a limit's wording names, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Window {
    Minute,
    Hour,
    Day,
}

// "per minute" as words, or inside a CamelCase quota id ("RequestsPerMinutePerProject").
static PER_MINUTE: LazyLock<Regex> = LazyLock::new(|| {
    compile(r"(?i)(?:\b|_)per[ _-]?min(?:ute)?s?(?:\b|_)|(?-i:PerMinute)|\b[rti]pm\b|\bminutely\b")
});
static PER_HOUR: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)(?:\b|_)per[ _-]?hour|(?-i:PerHour)|\b[rt]ph\b|\bhourly\b"));
static PER_DAY: LazyLock<Regex> =
    LazyLock::new(|| compile(r"(?i)(?:\b|_)per[ _-]?day|(?-i:PerDay)|\b[rt]pd\b|\bdaily\b"));

/// The longest window one text names (a message naming several limits waits for the
/// longest: retrying every minute against a spent daily quota only wastes calls).
pub(super) fn window_named(text: &str) -> Option<Window> {
    [(Window::Day, &*PER_DAY), (Window::Hour, &*PER_HOUR), (Window::Minute, &*PER_MINUTE)]
        .into_iter()
        .find(|(_, pattern)| pattern.is_match(text))
        .map(|(window, _)| window)
}

/// The zone whose midnight ends a daily quota of this profile's vendor.
fn day_zone(profile: Profile) -> Tz {
    match profile {
        Profile::Gemini => chrono_tz::America::Los_Angeles,
        Profile::Claude | Profile::OpenAi | Profile::Http => chrono_tz::UTC,
    }
}

/// The first boundary of `window` strictly after `now`.
pub(super) fn next_boundary(window: Window, now: DateTime<Utc>, profile: Profile) -> DateTime<Utc> {
    let start_of_minute = now.with_nanosecond(0).and_then(|at| at.with_second(0)).unwrap_or(now);
    match window {
        Window::Minute => start_of_minute + chrono::Duration::minutes(1),
        Window::Hour => {
            start_of_minute.with_minute(0).unwrap_or(start_of_minute) + chrono::Duration::hours(1)
        }
        Window::Day => {
            let zone = day_zone(profile);
            let local_date = now.with_timezone(&zone).date_naive();
            let next_date = local_date.checked_add_days(Days::new(1)).unwrap_or(local_date);
            // Midnight exists in every zone drainctl names here; `earliest` takes the
            // first instant when it happens twice.
            zone.from_local_datetime(&next_date.and_time(NaiveTime::MIN))
                .earliest()
                .map(|at| at.with_timezone(&Utc))
                .unwrap_or_else(|| now + chrono::Duration::days(1))
        }
    }
}

/// The reset a window's wording implies: the longest window the first texts (the hits'
/// own lines) name, else the longest the others (the lines around them) name.
pub(super) fn window_reset(
    own: &[&str],
    around: &[&str],
    now: DateTime<Utc>,
    profile: Profile,
) -> Option<StatedReset> {
    let longest = |texts: &[&str]| texts.iter().filter_map(|text| window_named(text)).max();
    let window = longest(own).or_else(|| longest(around))?;
    Some(StatedReset {
        at: next_boundary(window, now, profile),
        form: ResetForm::WindowBoundary,
        just_passed: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::tests::instant;

    #[rustfmt::skip]
    const WORDINGS: &[(&str, Option<Window>)] = &[
        ("Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 30000", Some(Window::Minute)),
        ("Rate limit reached on requests per minute (RPM): Limit 3", Some(Window::Minute)),
        ("429 Quota exceeded for quota metric 'Generate Content API requests per minute'", Some(Window::Minute)),
        ("quotaId: GenerateRequestsPerMinutePerProjectPerModel-FreeTier", Some(Window::Minute)),
        ("TPM limit exceeded", Some(Window::Minute)),
        ("rate_limit_exceeded: requests-per-hour limit", Some(Window::Hour)),
        ("Hourly request quota exhausted", Some(Window::Hour)),
        ("Rate limit reached on requests per day (RPD): Limit 200, Used 200", Some(Window::Day)),
        ("You have exhausted your daily quota on this model.", Some(Window::Day)),
        ("quotaId: GenerateRequestsPerDayPerProjectPerModel-FreeTier", Some(Window::Day)),
        ("limits: 60 requests per minute and 1000 per day", Some(Window::Day)),
        ("Quota exceeded for quota metric 'Gemini 2.5 Pro Requests'", None),
        ("the RPMs of the motor", None),
        ("the paper day planner", None),
        ("upper hour hand", None),
        ("quota metric input_tokens_per_day exhausted", Some(Window::Day)),
        ("limit tokens_per_minute_limit reached", Some(Window::Minute)),
        ("429 Too Many Requests", None),
    ];

    #[test]
    fn wordings_name_their_window() {
        for (text, expected) in WORDINGS {
            assert_eq!(window_named(text), *expected, "{text}");
        }
    }

    #[rustfmt::skip]
    const BOUNDARIES: &[(Window, Profile, &str, &str)] = &[
        (Window::Minute, Profile::OpenAi, "2025-11-23T10:00:00Z", "2025-11-23T10:01:00Z"),
        (Window::Minute, Profile::OpenAi, "2025-11-23T10:00:59.9Z", "2025-11-23T10:01:00Z"),
        (Window::Minute, Profile::Gemini, "2025-11-23T23:59:30Z", "2025-11-24T00:00:00Z"),
        (Window::Hour, Profile::Http, "2025-11-23T10:00:00Z", "2025-11-23T11:00:00Z"),
        (Window::Hour, Profile::Http, "2025-11-23T10:59:59Z", "2025-11-23T11:00:00Z"),
        (Window::Day, Profile::OpenAi, "2025-11-23T10:00:00Z", "2025-11-24T00:00:00Z"),
        (Window::Day, Profile::Claude, "2025-11-23T23:59:59Z", "2025-11-24T00:00:00Z"),
        // Gemini: midnight Pacific, PST (UTC-8) in November, PDT (UTC-7) in July.
        (Window::Day, Profile::Gemini, "2025-11-23T10:00:00Z", "2025-11-24T08:00:00Z"),
        (Window::Day, Profile::Gemini, "2025-11-24T07:59:00Z", "2025-11-24T08:00:00Z"),
        (Window::Day, Profile::Gemini, "2025-07-01T12:00:00Z", "2025-07-02T07:00:00Z"),
        // The day clocks go back (2025-11-02 in Los Angeles) ends 25 hours after it began.
        (Window::Day, Profile::Gemini, "2025-11-02T12:00:00Z", "2025-11-03T08:00:00Z"),
    ];

    #[test]
    fn each_window_resets_at_its_next_boundary() {
        for &(window, profile, now, expected) in BOUNDARIES {
            assert_eq!(
                next_boundary(window, instant(now), profile),
                instant(expected),
                "{window:?} {profile} {now}"
            );
        }
    }

    #[test]
    fn the_hit_line_wins_over_the_lines_around_it() {
        let now = instant("2025-11-23T10:00:00Z");
        let reset = window_reset(&["requests per minute"], &["daily"], now, Profile::Http).unwrap();
        assert_eq!(
            reset,
            StatedReset {
                at: instant("2025-11-23T10:01:00Z"),
                form: ResetForm::WindowBoundary,
                just_passed: None
            }
        );
        assert_eq!(window_reset(&["429"], &[], now, Profile::Http), None);
    }
}
