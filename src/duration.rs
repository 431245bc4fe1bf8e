//! Durations as people write them and read them.
//!
//! Configuration values and command-line flags spell a length of time as a whole number
//! with a unit — `"90s"`, `"20m"`, `"6h"`, `"2d"`, `"1w"`, `"500ms"` — or as a compound
//! of such parts from the largest unit to the smallest (`"1h30m"`, `"2d 3h"`).
//! [`parse_duration`] turns that text into a [`std::time::Duration`]. Output goes the
//! other way: [`format_duration`] prints a compact length (`"2d 3h"`, `"4m 10s"`) and
//! [`format_relative`] a signed distance from now (`"in 2d 3h"`, `"4m ago"`, `"now"`),
//! both with at most two adjacent units, truncating the rest.
//!
//! Every duration drainctl accepts has a ceiling ([`MAX_DURATION`], and a lower one for
//! `--lock-timeout`): a duration is added to or subtracted from an instant (a backoff, a
//! retention horizon, a deadline), and the ceiling keeps the result inside the calendar
//! PostgreSQL stores. [`check_at_most`] refuses a longer one with a message that names
//! the largest allowed value; see docs/configuration.md#durations.

use std::time::Duration;

/// The longest duration a setting or a flag may have: 36500 days (100 years).
pub const MAX_DURATION: Duration = Duration::from_secs(36_500 * 24 * 60 * 60);
/// [`MAX_DURATION`] as the configuration and the messages spell it.
pub const MAX_DURATION_TEXT: &str = "36500d (100 years)";

/// The accepted forms, quoted at the end of every parse error.
const ACCEPTED_FORMS: &str = "use a number with a unit: ms, s, m, h, d, w (e.g. \"90s\", \"20m\", \"1h30m\")";

/// The units a duration may use, largest first, with their length in milliseconds.
const UNITS_MILLISECONDS: [(&str, u64); 6] = [
    ("w", 7 * 24 * 60 * 60 * 1000),
    ("d", 24 * 60 * 60 * 1000),
    ("h", 60 * 60 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// The units used for output, largest first, with their length in seconds.
const DISPLAY_UNITS_SECONDS: [(&str, u64); 4] = [("d", 24 * 60 * 60), ("h", 60 * 60), ("m", 60), ("s", 1)];

/// Parses `"90s"`, `"20m"`, `"6h"`, `"2d"`, `"1w"`, `"500ms"` and compounds such as
/// `"1h30m"` or `"2d 3h"` (units from largest to smallest, each at most once).
/// Whitespace around the value and between parts is tolerated; `"0s"` is allowed.
/// Units are lower-case. The error is a one-line message naming the bad value and the
/// accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = |detail: &str| -> String {
        if detail.is_empty() {
            format!("invalid duration {text:?}: {ACCEPTED_FORMS}")
        } else {
            format!("invalid duration {text:?} ({detail}): {ACCEPTED_FORMS}")
        }
    };

    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid("it is empty"));
    }
    if let Some(unsigned) =
        rest.strip_prefix(['-', '+']).filter(|unsigned| unsigned.starts_with(|c: char| c.is_ascii_digit()))
    {
        // The value without its sign, when that is one (not `-1.5h`).
        let write = parse_duration(unsigned).map(|_| format!(": write {unsigned:?}")).unwrap_or_default();
        return Err(invalid(&format!("a length of time has no sign{write}")));
    }
    let mut total_milliseconds: u64 = 0;
    // Index into UNITS_MILLISECONDS of the last unit seen; the next must be smaller.
    let mut previous_unit_index: Option<usize> = None;
    while !rest.is_empty() {
        let digits_length = rest.find(|character: char| !character.is_ascii_digit()).unwrap_or(rest.len());
        if digits_length == 0 {
            return Err(invalid(""));
        }
        let (digits, after_digits) = rest.split_at(digits_length);
        let after_digits = after_digits.trim_start();
        let unit_length = after_digits
            .find(|character: char| !character.is_ascii_alphabetic())
            .unwrap_or(after_digits.len());
        let (unit, after_unit) = after_digits.split_at(unit_length);
        if unit.is_empty() && after_digits.starts_with(['.', ',']) {
            return Err(invalid(&format!(
                "use whole numbers of a smaller unit, e.g. {}",
                fraction_example(digits, after_digits)
            )));
        }
        if unit.is_empty() {
            return Err(invalid("a unit is missing"));
        }
        let Some(unit_index) = UNITS_MILLISECONDS.iter().position(|(name, _)| *name == unit) else {
            // A long "unit" is most of the value quoted again (a pasted secret's letters):
            // the value is quoted already.
            let lowered = unit.to_lowercase();
            let detail = if unit == "M" {
                "unknown unit \"M\": units are lower-case, m is minutes (for a month write 30d)".to_string()
            } else if UNITS_MILLISECONDS.iter().any(|(name, _)| *name == lowered) {
                // The whole value in lower case, when that is one (`1H30m`: `1h30m`).
                let whole = text.trim().to_lowercase();
                match parse_duration(&whole) {
                    Ok(_) => format!("unknown unit {unit:?}: units are lower-case, write {whole}"),
                    Err(_) => format!("unknown unit {unit:?}: units are lower-case"),
                }
            } else if unit.chars().count() <= 8 {
                format!("unknown unit {unit:?}")
            } else {
                "unknown unit".to_string()
            };
            return Err(invalid(&detail));
        };
        if previous_unit_index.is_some_and(|previous| unit_index <= previous) {
            return Err(invalid("give each unit once, from largest to smallest"));
        }
        previous_unit_index = Some(unit_index);
        let unit_milliseconds = UNITS_MILLISECONDS[unit_index].1;
        let part_milliseconds =
            digits.parse::<u64>().ok().and_then(|count| count.checked_mul(unit_milliseconds));
        total_milliseconds = part_milliseconds
            .and_then(|part| total_milliseconds.checked_add(part))
            .ok_or_else(|| invalid("it is too large"))?;
        rest = after_unit.trim_start();
    }
    Ok(Duration::from_millis(total_milliseconds))
}

/// A whole-number example for `digits` followed by a fraction and a unit (`1` and `.5h`):
/// `90m for 1.5h`, `1500ms for 1.5s`.
fn fraction_example(digits: &str, after_digits: &str) -> String {
    let fraction: String = after_digits[1..].chars().take_while(char::is_ascii_digit).collect();
    let unit: String = after_digits[1 + fraction.len()..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect();
    let written = format!("{digits}.{fraction}{unit}");
    // Exactly, in integers: 1.1h is 66m, never 66.00000000000001m.
    let smaller = UNITS_MILLISECONDS.iter().position(|(name, _)| *name == unit).and_then(|at| {
        let (_, whole) = UNITS_MILLISECONDS[at];
        let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        let scaled: u128 = format!("{digits}{fraction}").parse().ok()?;
        let milliseconds_scaled = scaled.checked_mul(u128::from(whole))?;
        // The largest smaller unit the value is a whole number of.
        UNITS_MILLISECONDS[at + 1..].iter().find_map(|(name, part)| {
            let divisor = scale.checked_mul(u128::from(*part))?;
            (milliseconds_scaled % divisor == 0)
                .then(|| format!("{}{name} for {written}", milliseconds_scaled / divisor))
        })
    });
    smaller.unwrap_or_else(|| "90m for 1.5h".to_string())
}

/// Refuses a duration longer than `max` (spelled `max_text` in the message):
/// `"100000000w" is too long; the largest allowed is 36500d (100 years)`.
pub fn check_at_most(
    text: &str,
    duration: Duration,
    max: Duration,
    max_text: &str,
) -> Result<Duration, String> {
    if duration > max {
        return Err(format!("{:?} is too long; the largest allowed is {max_text}", text.trim()));
    }
    Ok(duration)
}

/// [`parse_duration`], then [`check_at_most`] with [`MAX_DURATION`].
pub fn parse_bounded_duration(text: &str) -> Result<Duration, String> {
    check_at_most(text, parse_duration(text)?, MAX_DURATION, MAX_DURATION_TEXT)
}

/// Human relative time: a positive delta reads `"in 2d 3h"`, a negative one `"4m ago"`,
/// with at most two adjacent units (d h, h m, m s); anything under one second is `"now"`.
pub fn format_relative(delta: chrono::Duration) -> String {
    let magnitude = delta.abs();
    let whole_seconds = magnitude.num_seconds();
    if whole_seconds < 1 {
        return "now".to_string();
    }
    // `whole_seconds` is at least 1 here, so the conversion cannot fail.
    let text = format_duration(Duration::from_secs(u64::try_from(whole_seconds).unwrap_or(u64::MAX)));
    if delta > chrono::Duration::zero() {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Compact duration: `"2d 3h"`, `"4m 10s"`, `"20m"`, `"0s"`; at most two adjacent units
/// (d h, h m, m s), the rest truncated. A non-zero length under one second prints in
/// milliseconds (`"500ms"`).
pub fn format_duration(duration: Duration) -> String {
    let total_seconds = duration.as_secs();
    if total_seconds == 0 {
        let milliseconds = duration.subsec_millis();
        return if milliseconds == 0 { "0s".to_string() } else { format!("{milliseconds}ms") };
    }
    let Some(largest_index) =
        DISPLAY_UNITS_SECONDS.iter().position(|(_, unit_seconds)| total_seconds >= *unit_seconds)
    else {
        return "0s".to_string();
    };
    let (largest_name, largest_seconds) = DISPLAY_UNITS_SECONDS[largest_index];
    let mut text = format!("{}{largest_name}", total_seconds / largest_seconds);
    if let Some((next_name, next_seconds)) = DISPLAY_UNITS_SECONDS.get(largest_index + 1) {
        let next_count = (total_seconds % largest_seconds) / next_seconds;
        if next_count > 0 {
            text = format!("{text} {next_count}{next_name}");
        }
    }
    text
}

/// `seconds` to the millisecond, as every length of time in `--json` is given
/// (docs/json.md): `0.184` for 0.184002, `0` for 3e-6.
pub fn to_milliseconds(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_of_time_are_given_to_the_millisecond() {
        assert_eq!(to_milliseconds(0.184002), 0.184);
        assert_eq!(to_milliseconds(3e-6), 0.0);
        assert_eq!(to_milliseconds(2.5), 2.5);
    }

    #[test]
    fn parses_single_and_compound_durations() {
        let cases: &[(&str, u64)] = &[
            ("90s", 90_000),
            ("20m", 20 * 60_000),
            ("6h", 6 * 3_600_000),
            ("2d", 2 * 86_400_000),
            ("1w", 7 * 86_400_000),
            ("14d", 14 * 86_400_000),
            ("500ms", 500),
            ("0s", 0),
            ("0ms", 0),
            ("1h30m", 90 * 60_000),
            ("2d3h", (2 * 24 + 3) * 3_600_000),
            ("2d 3h", (2 * 24 + 3) * 3_600_000),
            ("1m 30s", 90_000),
            ("1s500ms", 1_500),
            ("  20m  ", 20 * 60_000),
            ("\t6h\n", 6 * 3_600_000),
            ("90 s", 90_000),
            ("1w2d3h4m5s6ms", 788_645_006),
        ];
        for (text, expected_milliseconds) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(*expected_milliseconds)),
                "parsing {text:?}"
            );
        }
    }

    #[test]
    fn rejects_bad_durations_with_a_message_naming_the_value() {
        let cases: &[(&str, &str)] = &[
            ("20x", "invalid duration \"20x\" (unknown unit \"x\")"),
            ("", "invalid duration \"\" (it is empty)"),
            ("   ", "invalid duration \"   \" (it is empty)"),
            ("90", "invalid duration \"90\" (a unit is missing)"),
            ("h", "invalid duration \"h\":"),
            ("-5m", "invalid duration \"-5m\" (a length of time has no sign: write \"5m\")"),
            ("1.5h", "invalid duration \"1.5h\" (use whole numbers of a smaller unit, e.g. 90m for 1.5h)"),
            ("1.5s", "(use whole numbers of a smaller unit, e.g. 1500ms for 1.5s)"),
            ("1.1h", "(use whole numbers of a smaller unit, e.g. 66m for 1.1h)"),
            ("2.01s", "(use whole numbers of a smaller unit, e.g. 2010ms for 2.01s)"),
            ("0.55h", "(use whole numbers of a smaller unit, e.g. 33m for 0.55h)"),
            ("1.001m", "(use whole numbers of a smaller unit, e.g. 60060ms for 1.001m)"),
            ("-1.5h", "invalid duration \"-1.5h\" (a length of time has no sign):"),
            ("1H30m", "(unknown unit \"H\": units are lower-case, write 1h30m)"),
            ("-5M", "invalid duration \"-5M\" (a length of time has no sign):"),
            ("20M", "invalid duration \"20M\" (unknown unit \"M\": units are lower-case, m is minutes"),
            ("1H", "invalid duration \"1H\" (unknown unit \"H\": units are lower-case, write 1h)"),
            ("1SecondSecret8", "invalid duration \"1SecondSecret8\" (unknown unit): "),
            ("20 minutes", "invalid duration \"20 minutes\" (unknown unit"),
            ("30m1h", "(give each unit once, from largest to smallest)"),
            ("1m1m", "(give each unit once, from largest to smallest)"),
            ("1h 30m x", "invalid duration \"1h 30m x\":"),
            ("99999999999999999999s", "invalid duration \"99999999999999999999s\" (it is too large)"),
            ("9999999999999999w", "(it is too large)"),
        ];
        for (text, expected_fragment) in cases {
            let message = parse_duration(text).expect_err(text);
            assert!(
                message.contains(expected_fragment),
                "parsing {text:?}: {message:?} lacks {expected_fragment:?}"
            );
            assert!(
                message.ends_with(ACCEPTED_FORMS),
                "parsing {text:?}: {message:?} does not list the accepted forms"
            );
            assert!(!message.contains('\n'), "one line: {message:?}");
        }
    }

    #[test]
    fn durations_longer_than_the_ceiling_are_refused_naming_the_largest_allowed() {
        assert_eq!(parse_bounded_duration("36500d"), Ok(MAX_DURATION));
        assert_eq!(parse_bounded_duration("20m"), Ok(Duration::from_secs(20 * 60)));
        for text in ["36500d 1ms", "5215w", "100000000w"] {
            assert_eq!(
                parse_bounded_duration(text),
                Err(format!("{text:?} is too long; the largest allowed is 36500d (100 years)")),
            );
        }
        assert!(parse_bounded_duration("20x").unwrap_err().starts_with("invalid duration \"20x\""));
        assert_eq!(
            check_at_most("25d", Duration::from_secs(25 * 86_400), Duration::from_secs(24 * 86_400), "24d"),
            Err("\"25d\" is too long; the largest allowed is 24d".to_string())
        );
    }

    #[test]
    fn error_message_matches_the_documented_example() {
        assert_eq!(
            parse_duration("20x"),
            Err("invalid duration \"20x\" (unknown unit \"x\"): use a number with a unit: \
                 ms, s, m, h, d, w (e.g. \"90s\", \"20m\", \"1h30m\")"
                .to_string())
        );
    }

    #[test]
    fn formats_compact_durations_with_two_units_at_most() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1_999), "1s"),
            (Duration::from_secs(59), "59s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "1m 30s"),
            (Duration::from_secs(4 * 60 + 10), "4m 10s"),
            (Duration::from_secs(20 * 60), "20m"),
            (Duration::from_secs(3600 + 30), "1h"),
            (Duration::from_secs(3600 + 60 + 30), "1h 1m"),
            (Duration::from_secs(6 * 3600), "6h"),
            (Duration::from_secs(2 * 86_400 + 3 * 3600 + 59 * 60), "2d 3h"),
            (Duration::from_secs(2 * 86_400 + 5 * 60), "2d"),
            (Duration::from_secs(14 * 86_400), "14d"),
            (Duration::from_secs(20 * 86_400 + 3600), "20d 1h"),
        ];
        for (duration, expected) in cases {
            assert_eq!(format_duration(*duration), *expected, "{duration:?}");
        }
    }

    #[test]
    fn formatted_durations_parse_back_when_exact() {
        for text in ["2d 3h", "4m 10s", "0s", "500ms", "1h 1m", "14d"] {
            let duration = parse_duration(text).expect(text);
            assert_eq!(format_duration(duration), text);
        }
    }

    #[test]
    fn formats_relative_times() {
        let cases: &[(chrono::Duration, &str)] = &[
            (chrono::Duration::zero(), "now"),
            (chrono::Duration::milliseconds(999), "now"),
            (chrono::Duration::milliseconds(-999), "now"),
            (chrono::Duration::milliseconds(1_500), "in 1s"),
            (chrono::Duration::seconds(-4 * 60), "4m ago"),
            (chrono::Duration::seconds(-(4 * 60 + 10)), "4m 10s ago"),
            (chrono::Duration::seconds(2 * 86_400 + 3 * 3600 + 20), "in 2d 3h"),
            (chrono::Duration::seconds(-(3 * 3600 + 15 * 60)), "3h 15m ago"),
            (chrono::Duration::days(20), "in 20d"),
            (chrono::Duration::MAX, "in 106751991167d 7h"),
            (chrono::Duration::MIN, "106751991167d 7h ago"),
        ];
        for (delta, expected) in cases {
            assert_eq!(format_relative(*delta), *expected, "{delta:?}");
        }
    }
}
