//! Backoff arithmetic, pure: how long a quota group waits after a quota hit (SPEC §5),
//! and when a failed item is retried (exponential with jitter).
//!
//! A parsed reset is trusted only when it lies in the future and at most
//! [`MAX_TRUSTED_RESET_AHEAD`] away, and not when the same group hits again within
//! [`CONFIRM_WINDOW`] after a stated reset passed (the printed time was an estimate, and a
//! bare clock time would otherwise roll to tomorrow). An untrusted or missing reset backs
//! off briefly and marks the group *suspected*; a second such hit within
//! [`CONFIRM_WINDOW`] confirms it and backs off for `default_backoff`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::later;

/// Added to a parsed reset time (the default of `reset_margin`).
pub const DEFAULT_RESET_MARGIN: Duration = Duration::from_secs(60);
/// Backoff after a first hit without a (trusted) reset (the default of `suspected_backoff`).
pub const DEFAULT_SUSPECTED_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// A second hit within this long after a suspected one confirms the limit.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(30 * 60);
/// A parsed reset further ahead than this is not trusted.
pub const MAX_TRUSTED_RESET_AHEAD: Duration = Duration::from_secs(8 * 86_400);

/// What the group knew before this hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreviousBackoff {
    /// The reset time the previous hit stated, if any.
    pub reset_at: Option<DateTime<Utc>>,
    /// When the previous no-reset hit marked the group suspected.
    pub suspected_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffRule {
    /// Waiting until the stated reset (plus margin).
    ParsedReset,
    /// First hit without a trusted reset: short backoff, group suspected.
    Suspected,
    /// Second hit within the confirmation window: `default_backoff`.
    Confirmed,
}

impl BackoffRule {
    /// The name stored in `quota_backoffs.rule` and shown in events.
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffRule::ParsedReset => "parsed_reset",
            BackoffRule::Suspected => "suspected",
            BackoffRule::Confirmed => "confirmed",
        }
    }

    pub fn parse(text: &str) -> Option<BackoffRule> {
        [BackoffRule::ParsedReset, BackoffRule::Suspected, BackoffRule::Confirmed]
            .into_iter()
            .find(|rule| rule.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffDecision {
    pub until: DateTime<Utc>,
    pub rule: BackoffRule,
    /// The reset the message stated and that was trusted.
    pub reset_at: Option<DateTime<Utc>>,
    /// The suspected mark to store (None clears it).
    pub suspected_at: Option<DateTime<Utc>>,
    /// Why a stated reset was not trusted, for the event.
    pub distrusted: Option<String>,
}

fn chrono(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// How long to wait: the configured `reset_margin`, `suspected_backoff` and
/// `default_backoff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub reset_margin: Duration,
    pub suspected_backoff: Duration,
    pub default_backoff: Duration,
}

/// Decide the group's backoff after a quota hit observed at `now`.
pub fn decide_backoff(
    stated_reset: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    previous: PreviousBackoff,
    policy: BackoffPolicy,
) -> BackoffDecision {
    let mut distrusted = None;
    if let Some(reset) = stated_reset {
        let recently_reset = previous.reset_at.is_some_and(|previous_reset| {
            previous_reset <= now && now < later(previous_reset, CONFIRM_WINDOW)
        });
        if reset <= now {
            distrusted = Some(format!("stated reset {} is already in the past", reset.to_rfc3339()));
        } else if reset - now > chrono(MAX_TRUSTED_RESET_AHEAD) {
            distrusted = Some(format!("stated reset {} is more than 8 days ahead", reset.to_rfc3339()));
        } else if recently_reset {
            distrusted = Some(format!(
                "hit again within 30m after the previously stated reset {}; the stated time was an estimate",
                previous.reset_at.map(|at| at.to_rfc3339()).unwrap_or_default()
            ));
        } else {
            return BackoffDecision {
                until: later(reset, policy.reset_margin),
                rule: BackoffRule::ParsedReset,
                reset_at: Some(reset),
                suspected_at: None,
                distrusted: None,
            };
        }
    }
    let confirms = previous
        .suspected_at
        .is_some_and(|suspected| suspected <= now && now - suspected <= chrono(CONFIRM_WINDOW));
    if confirms {
        BackoffDecision {
            until: later(now, policy.default_backoff),
            rule: BackoffRule::Confirmed,
            reset_at: None,
            suspected_at: None,
            distrusted,
        }
    } else {
        BackoffDecision {
            until: later(now, policy.suspected_backoff),
            rule: BackoffRule::Suspected,
            reset_at: None,
            suspected_at: Some(now),
            distrusted,
        }
    }
}

/// Delay before retry number `attempt` (1 = after the first failure): `base * 2^(attempt-1)`
/// capped at `max`, then scaled by `jitter` in [0, 1] into its upper fifth (80–100 %), so
/// concurrent failures spread out and the cap is never exceeded.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(40);
    let nominal = base.saturating_mul(1u32 << exponent.min(31)).min(max);
    let nominal = if exponent > 31 { max } else { nominal };
    let factor = 0.8 + 0.2 * jitter.clamp(0.0, 1.0);
    nominal.mul_f64(factor)
}

/// A jitter value in [0, 1] from the clock and the process id (not for security).
pub fn jitter_seed() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 ^ d.as_secs())
        .unwrap_or(0);
    let mut x = nanos ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, hour, minute, 0).unwrap()
    }

    const HOUR: BackoffPolicy = BackoffPolicy {
        reset_margin: DEFAULT_RESET_MARGIN,
        suspected_backoff: DEFAULT_SUSPECTED_BACKOFF,
        default_backoff: Duration::from_secs(3600),
    };

    #[test]
    fn parsed_reset_gets_a_one_minute_margin() {
        let d = decide_backoff(Some(at(20, 0)), at(18, 0), PreviousBackoff::default(), HOUR);
        assert_eq!(d.until, at(20, 1));
        assert_eq!(d.rule, BackoffRule::ParsedReset);
        assert_eq!(d.suspected_at, None);
    }

    #[test]
    fn no_reset_suspects_then_confirms_within_thirty_minutes() {
        let first = decide_backoff(None, at(10, 0), PreviousBackoff::default(), HOUR);
        assert_eq!((first.until, first.rule), (at(10, 5), BackoffRule::Suspected));
        let previous = PreviousBackoff { reset_at: None, suspected_at: first.suspected_at };
        let second = decide_backoff(None, at(10, 20), previous, HOUR);
        assert_eq!((second.until, second.rule), (at(11, 20), BackoffRule::Confirmed));
        let late = decide_backoff(None, at(10, 31), previous, HOUR);
        assert_eq!(late.rule, BackoffRule::Suspected);
    }

    #[test]
    fn resets_in_the_past_or_too_far_ahead_are_distrusted() {
        let past = decide_backoff(Some(at(9, 0)), at(10, 0), PreviousBackoff::default(), HOUR);
        assert_eq!(past.rule, BackoffRule::Suspected);
        assert!(past.distrusted.unwrap().contains("in the past"));
        let far = at(10, 0) + chrono::Duration::days(9);
        let far = decide_backoff(Some(far), at(10, 0), PreviousBackoff::default(), HOUR);
        assert!(far.distrusted.unwrap().contains("8 days"));
        let eight = at(10, 0) + chrono::Duration::days(8);
        assert_eq!(
            decide_backoff(Some(eight), at(10, 0), PreviousBackoff::default(), HOUR).rule,
            BackoffRule::ParsedReset
        );
    }

    #[test]
    fn a_hit_soon_after_the_stated_reset_does_not_wait_for_tomorrow() {
        // "resets 8pm" hit at 20:02 would mean tomorrow 20:00: use the no-reset rule.
        let previous = PreviousBackoff { reset_at: Some(at(20, 0)), suspected_at: None };
        let tomorrow = at(20, 0) + chrono::Duration::days(1);
        let d = decide_backoff(Some(tomorrow), at(20, 2), previous, HOUR);
        assert_eq!((d.until, d.rule), (at(20, 7), BackoffRule::Suspected));
        assert!(d.distrusted.is_some());
    }

    #[test]
    fn backoffs_too_long_for_the_calendar_end_at_the_latest_instant_instead_of_panicking() {
        let endless = BackoffPolicy {
            reset_margin: Duration::MAX,
            suspected_backoff: Duration::MAX,
            default_backoff: Duration::MAX,
        };
        let latest = crate::clock::latest_instant();
        let first = decide_backoff(None, at(10, 0), PreviousBackoff::default(), endless);
        assert_eq!(first.until, latest);
        let previous = PreviousBackoff { reset_at: None, suspected_at: first.suspected_at };
        assert_eq!(decide_backoff(None, at(10, 20), previous, endless).until, latest);
        let stated = decide_backoff(Some(at(11, 0)), at(10, 0), PreviousBackoff::default(), endless);
        assert_eq!((stated.until, stated.rule), (latest, BackoffRule::ParsedReset));
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let base = Duration::from_secs(60);
        let max = Duration::from_secs(6 * 3600);
        assert_eq!(retry_delay(1, base, max, 1.0), Duration::from_secs(60));
        assert_eq!(retry_delay(2, base, max, 1.0), Duration::from_secs(120));
        assert_eq!(retry_delay(4, base, max, 1.0), Duration::from_secs(480));
        assert_eq!(retry_delay(20, base, max, 1.0), max);
        assert_eq!(retry_delay(100, base, max, 1.0), max);
        assert_eq!(retry_delay(1, base, max, 0.0), Duration::from_secs(48));
    }
}
