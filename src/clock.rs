//! The injectable source of "now".
//!
//! Nothing in drainctl reads the wall clock except through [`Clock`]. In production it is
//! the system clock. For tests and demos, `DRAINCTL_NOW` replaces it:
//! `DRAINCTL_NOW=2026-11-27T10:00:00Z` freezes time at that instant, and
//! `DRAINCTL_NOW=@/path/to/file` reads the instant from that file every time "now" is asked,
//! so a test can move time forward while a process runs. Durations of real work (timeouts,
//! throttles) use `std::time::Instant` and are not affected.
//!
//! [`later`] and [`earlier`] are the one place where a duration meets an instant: they
//! never overflow, and never leave the calendar PostgreSQL and RFC 3339 can hold.
//!
//! Every instant they and [`Clock::now`] give is whole microseconds, what PostgreSQL
//! stores: an instant a command prints (`burst on --json`) is the one a later command
//! reads back (`burst status --json`), digit for digit.

use std::cell::Cell;
use std::path::PathBuf;

use chrono::{DateTime, SubsecRound, Utc};

use crate::error::{Error, Result};

/// The environment variable that injects a clock.
pub const NOW_ENV: &str = "DRAINCTL_NOW";

/// How far ahead of the clock a time stamped by this host may be before it is taken for
/// one stamped while the clock ran ahead, since set back (an NTP step, a virtual
/// machine's clock): a wait or a silence counted from it would last until the clock
/// caught up (docs/operations.md, docs/rate-limits.md).
pub const WENT_BACK_TOLERANCE: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Debug)]
pub struct Clock {
    source: Source,
    last_from_file: Cell<Option<DateTime<Utc>>>,
}

#[derive(Debug)]
enum Source {
    System,
    Fixed(DateTime<Utc>),
    File(PathBuf),
}

impl Clock {
    pub fn system() -> Clock {
        Clock { source: Source::System, last_from_file: Cell::new(None) }
    }

    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock { source: Source::Fixed(at), last_from_file: Cell::new(None) }
    }

    /// The clock `DRAINCTL_NOW` asks for, or the system clock when it is unset.
    pub fn from_env() -> Result<Clock> {
        match std::env::var(NOW_ENV) {
            Err(_) => Ok(Clock::system()),
            Ok(value) if value.trim().is_empty() => Ok(Clock::system()),
            Ok(value) => Clock::parse(value.trim()),
        }
    }

    fn parse(value: &str) -> Result<Clock> {
        if let Some(path) = value.strip_prefix('@') {
            let clock = Clock { source: Source::File(PathBuf::from(path)), last_from_file: Cell::new(None) };
            let first = read_instant_file(path.as_ref())?;
            clock.last_from_file.set(Some(first));
            return Ok(clock);
        }
        parse_instant(value).map(Clock::fixed)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.read().trunc_subsecs(6)
    }

    fn read(&self) -> DateTime<Utc> {
        match &self.source {
            Source::System => Utc::now(),
            Source::Fixed(at) => *at,
            Source::File(path) => match read_instant_file(path) {
                Ok(at) => {
                    self.last_from_file.set(Some(at));
                    at
                }
                Err(error) => {
                    log::warn!("{error}; keeping the last time read");
                    self.last_from_file.get().unwrap_or_else(Utc::now)
                }
            },
        }
    }

    /// True when time is injected (tests, demos).
    pub fn is_injected(&self) -> bool {
        !matches!(self.source, Source::System)
    }
}

/// The latest instant drainctl computes: the end of year 9999 (RFC 3339 prints it,
/// PostgreSQL stores it).
pub fn latest_instant() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The earliest instant drainctl computes: the start of year 1.
pub fn earliest_instant() -> DateTime<Utc> {
    DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `at` plus `duration`, saturating at [`latest_instant`] instead of overflowing.
pub fn later(at: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .map_or_else(latest_instant, |later| later.min(latest_instant()))
        .trunc_subsecs(6)
}

/// `at` minus `duration`, saturating at [`earliest_instant`] instead of overflowing.
pub fn earlier(at: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|delta| at.checked_sub_signed(delta))
        .map_or_else(earliest_instant, |earlier| earlier.max(earliest_instant()))
        .trunc_subsecs(6)
}

/// An RFC 3339 instant, in UTC. A leap second (`…:59:60Z`, which chrono keeps as second
/// 59 and a second's worth of nanoseconds, shown again as `:60`) is the next second's
/// start: an instant drainctl shows or stores is one every reader can parse.
pub fn parse_rfc3339(text: &str) -> std::result::Result<DateTime<Utc>, chrono::ParseError> {
    use chrono::Timelike;
    let at = DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc);
    Ok(match at.nanosecond().checked_sub(1_000_000_000) {
        Some(within) => at.with_nanosecond(within).unwrap_or(at) + chrono::Duration::seconds(1),
        None => at,
    })
}

fn parse_instant(value: &str) -> Result<DateTime<Utc>> {
    parse_rfc3339(value).map_err(|_| {
        Error::Config(format!(
            "{NOW_ENV}={value:?} is not an RFC 3339 instant (e.g. 2026-11-27T10:00:00Z) or @FILE"
        ))
    })
}

fn read_instant_file(path: &std::path::Path) -> Result<DateTime<Utc>> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        Error::Config(format!("{NOW_ENV}: cannot read clock file {}: {error}", path.display()))
    })?;
    parse_rfc3339(text.trim()).map_err(|_| {
        Error::Config(format!(
            "{NOW_ENV}=@{}: the file holds {:?}, not an RFC 3339 instant (e.g. 2026-11-27T10:00:00Z)",
            path.display(),
            crate::output::truncate(text.trim(), 60)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_instant_is_parsed() {
        let clock = Clock::parse("2026-11-27T10:00:00Z").unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-11-27T10:00:00+00:00");
        assert!(clock.is_injected());
    }

    #[test]
    fn instants_are_whole_microseconds_as_postgresql_stores_them() {
        let clock = Clock::parse("2026-11-27T10:00:00.123456789Z").unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-11-27T10:00:00.123456+00:00");
        let at = clock.now();
        assert_eq!(later(at, std::time::Duration::from_nanos(999)), at);
        assert_eq!(
            earlier(at, std::time::Duration::from_nanos(1_500)).to_rfc3339(),
            "2026-11-27T10:00:00.123454+00:00"
        );
        assert_eq!(Clock::system().now().timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn clock_file_is_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("now");
        std::fs::write(&path, "2026-11-27T10:00:00Z\n").unwrap();
        let clock = Clock::parse(&format!("@{}", path.display())).unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-11-27T10:00:00+00:00");
        std::fs::write(&path, "2026-11-27T11:30:00Z").unwrap();
        assert_eq!(clock.now().to_rfc3339(), "2026-11-27T11:30:00+00:00");
    }

    #[test]
    fn durations_meet_instants_without_overflow() {
        use std::time::Duration;
        let at = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z").unwrap().with_timezone(&Utc);
        let hour = Duration::from_secs(3600);
        assert_eq!(later(at, hour).to_rfc3339(), "2026-11-27T11:00:00+00:00");
        assert_eq!(earlier(at, hour).to_rfc3339(), "2026-11-27T09:00:00+00:00");
        let century = crate::duration::MAX_DURATION;
        assert_eq!(later(at, century).to_rfc3339(), "2126-11-03T10:00:00+00:00");
        assert_eq!(earlier(at, century).to_rfc3339(), "1926-12-22T10:00:00+00:00");
        for huge in [Duration::from_secs(100_000_000 * 7 * 86_400), Duration::MAX] {
            assert_eq!(later(at, huge).to_rfc3339(), "9999-12-31T23:59:59+00:00");
            assert_eq!(earlier(at, huge).to_rfc3339(), "0001-01-01T00:00:00+00:00");
            assert_eq!(later(DateTime::<Utc>::MAX_UTC, huge), latest_instant());
            assert_eq!(earlier(DateTime::<Utc>::MIN_UTC, huge), earliest_instant());
        }
    }

    #[test]
    fn garbage_is_a_config_error_naming_the_value() {
        let error = Clock::parse("tomorrow").unwrap_err();
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("\"tomorrow\""));
    }

    #[test]
    fn a_leap_second_is_the_next_second() {
        let at = parse_rfc3339("2026-03-22T18:00:60Z").unwrap();
        assert_eq!(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), "2026-03-22T18:01:00Z");
        let at = parse_rfc3339("2026-03-22T18:00:60.5+01:00").unwrap();
        assert_eq!(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), "2026-03-22T17:01:00.500Z");
    }
}
