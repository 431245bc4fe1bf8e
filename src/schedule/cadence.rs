//! Cadence: a drain with `every` starts at most once per that interval.
//!
//! The interval is counted from the start of the drain's latest pass, whatever became of
//! that pass (finished, failed, crashed), so a pass that fails fast does not bring the
//! next one forward. `supervise` skips the drain until then, except in a burst; `status`
//! shows when the next start is due. See docs/configuration.md#cadence.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::later;

/// The earliest instant `every` allows the drain's next start, counted from the start of
/// its latest pass; None when it has no cadence or no pass.
pub fn next_start(every: Option<Duration>, last_started_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let (every, last) = (every?, last_started_at?);
    Some(later(last, every))
}

/// The first instant both the cadence (`cadence_next`, from [`next_start`]) and `window`
/// allow a start: the cadence's own when the window is open then (or there is none), else
/// the window's next opening after it. None without a cadence.
pub fn first_allowed_start(
    cadence_next: Option<DateTime<Utc>>,
    window: Option<&crate::schedule::window::Window>,
    zone: chrono_tz::Tz,
) -> Option<DateTime<Utc>> {
    let next = cadence_next?;
    match window {
        Some(window) if !window.contains(next, zone) => window.next_opening(next, zone),
        _ => Some(next),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_next_start_is_one_interval_after_the_last_start() {
        let last = Utc.with_ymd_and_hms(2026, 11, 26, 23, 0, 0).unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(next_start(Some(hour), Some(last)), Some(last + chrono::Duration::hours(1)));
        assert_eq!(next_start(None, Some(last)), None, "no cadence");
        assert_eq!(next_start(Some(hour), None), None, "never started");
        // The largest interval saturates instead of overflowing.
        assert_eq!(
            next_start(Some(crate::duration::MAX_DURATION), Some(crate::clock::latest_instant())),
            Some(crate::clock::latest_instant())
        );
    }
}
