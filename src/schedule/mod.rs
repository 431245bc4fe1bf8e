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

/// Whether the drain's own schedule lets a pass start at `now`: a burst is on, or its
/// window is open (or it has none) and its `every` cadence is due — pause, backoff,
/// budget and slots aside, as `supervise` decides them (docs/configuration.md); `metrics`
/// shows it in `drainctl_can_work`, which the stalled-drain alert reads.
pub fn schedule_allows_start(
    drain: &crate::config::DrainConfig,
    is_bursting: bool,
    last_started_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> bool {
    if is_bursting {
        return true;
    }
    let window_open = drain.window.as_ref().is_none_or(|window| window.contains(now, zone));
    window_open && cadence::next_start(drain.every, last_started_at).is_none_or(|next| next <= now)
}
