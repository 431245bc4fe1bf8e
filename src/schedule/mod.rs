//! Schedule: when a drain may run, and how long its backlog will take.
//!
//! Everything here is a pure function of an injected "now" and the configured time zone,
//! never the machine's clock or zone. [`when`] reads the `burst on --until` grammar (an
//! operator's deadline); [`window`] says whether a weekly window (`sun-thu 22:00-06:00`)
//! is open and when it next opens; [`cadence`] spaces a drain's starts by its `every`;
//! [`forecast`] turns recent throughput into the time to empty a backlog and whether a
//! burst will finish before its deadline. `supervise` decides with them; `status`,
//! `metrics` and `burst` show them.

pub mod cadence;
pub mod forecast;
pub mod when;
pub mod window;

use chrono::{DateTime, Utc};

/// How soon a cadence's next start counts as work the drain is about to do.
const CADENCE_SOON: chrono::Duration = chrono::Duration::hours(1);

/// Whether the drain's own schedule lets it work now or within the hour: a burst is on,
/// or its window is open (or it has none) and its `every` cadence is due within the hour
/// and before the window closes — pause, backoff, budget and slots aside, as `supervise`
/// decides them (docs/configuration.md). `metrics` shows it in `drainctl_can_work`,
/// which the stalled-drain alert reads: a drain whose next start is hours away, or falls
/// after its window closes, is waiting, not stuck; one whose cadence is due within the
/// hour is counted whether or not `supervise` started it already (its textfile is
/// written after the starts).
pub fn schedule_allows_work(
    drain: &crate::config::DrainConfig,
    is_bursting: bool,
    last_started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> bool {
    if is_bursting {
        return true;
    }
    if drain.window.as_ref().is_some_and(|window| !window.contains(now, zone)) {
        return false;
    }
    let Some(next) = cadence::next_start(drain.every, last_started_at) else { return true };
    let closes = drain.window.as_ref().and_then(|window| window.closes_at(now, zone));
    next <= now + CADENCE_SOON && closes.is_none_or(|closes| next < closes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        crate::clock::parse_rfc3339(text).unwrap()
    }

    #[test]
    fn a_drain_can_work_inside_its_window_when_its_next_start_is_within_the_hour_and_before_the_close() {
        let config = crate::config::Config::from_text(
            "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"night\"\ncommand = [\"w\"]\nevery = \"4h\"\n\
             window = { days = \"daily\", from = \"22:00\", to = \"06:00\" }\n",
            None,
        )
        .unwrap();
        let (drain, zone) = (&config.drains[0], chrono_tz::UTC);
        let works = |last: &str, now: &str| schedule_allows_work(drain, false, Some(at(last)), at(now), zone);
        // Started at 22:00: the next start, 02:00, is hours away at 23:00, within the hour at 01:30.
        assert!(!works("2026-12-06T22:00:00Z", "2026-12-06T23:00:00Z"));
        assert!(works("2026-12-06T22:00:00Z", "2026-12-07T01:30:00Z"));
        // Started at 02:00: the next start, 06:00, is the window's close: waiting for the night.
        assert!(!works("2026-12-07T02:00:00Z", "2026-12-07T05:30:00Z"));
        // Outside the window, nothing; a burst overrides window and cadence.
        assert!(!works("2026-12-06T02:00:00Z", "2026-12-06T12:00:00Z"));
        assert!(schedule_allows_work(
            drain,
            true,
            Some(at("2026-12-07T02:00:00Z")),
            at("2026-12-07T05:30:00Z"),
            zone
        ));
        // Never started: due.
        assert!(schedule_allows_work(drain, false, None, at("2026-12-06T23:00:00Z"), zone));
    }
}
