//! Backoff arithmetic, pure: how long a quota group waits after a quota hit (docs/rate-limits.md, "Backoff"),
//! and when a failed item is retried (exponential with jitter).
//!
//! A stated reset is trusted when it lies in the future, at most
//! [`MAX_TRUSTED_RESET_AHEAD`] away, and its form leaves nothing to guess (one at most
//! [`CLOCK_SKEW_TOLERANCE`] in the past means now); a clock time is doubted when the
//! group hits again soon after a reset passed, and one just passed gets a single short
//! retry (see [`decide_backoff`]). A trusted reset gets a margin in proportion to the wait
//! ([`reset_margin_for`]). An untrusted or missing reset backs off briefly and marks the
//! group *suspected*; a second such hit within [`CONFIRM_WINDOW`] confirms it and backs
//! off for `default_backoff`.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use crate::clock::later;

/// Added to a parsed reset time (the default of `reset_margin`).
pub const DEFAULT_RESET_MARGIN: Duration = Duration::from_secs(60);
/// Backoff after a first hit without a (trusted) reset (the default of `suspected_backoff`).
pub const DEFAULT_SUSPECTED_BACKOFF: Duration = Duration::from_secs(5 * 60);
/// A second hit within this long after a suspected one confirms the limit.
pub const CONFIRM_WINDOW: Duration = Duration::from_secs(30 * 60);
/// A trusted wait no longer than this (or than `supervise_interval`, when longer) is a
/// short window's, notified at most once an hour per account (docs/rate-limits.md).
pub const ROUTINE_WAIT: Duration = Duration::from_secs(5 * 60);
/// A parsed reset further ahead than this is not trusted.
pub const MAX_TRUSTED_RESET_AHEAD: Duration = Duration::from_secs(8 * 86_400);

/// What the group knew before this hit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreviousBackoff {
    /// The reset time the previous hit stated, if any.
    pub reset_at: Option<DateTime<Utc>>,
    /// When the previous no-reset hit marked the group suspected.
    pub suspected_at: Option<DateTime<Utc>>,
    /// How many hits in a row, with no item of the group done between them, said the
    /// reset is now or were a window's boundary met again at once (0 when the previous
    /// hit said otherwise).
    pub now_hits: u32,
    /// Whether no item of the group was done since the previous reset (`reset_at`) passed.
    pub nothing_done_since: bool,
}

impl PreviousBackoff {
    /// For a hit that is certain, not a blip (access refused): as if the previous hit had
    /// marked the account suspected at `now`, so that the no-reset rule confirms at once.
    pub fn confirming(self, now: DateTime<Utc>) -> PreviousBackoff {
        PreviousBackoff { suspected_at: Some(now), ..self }
    }
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
    /// The reset to store for the next hit: the trusted one, else a previous reset that
    /// passed within [`CONFIRM_WINDOW`] (so that the doubt and the "just now" rules still
    /// see it after a hit without a trusted reset).
    pub remembered_reset: Option<DateTime<Utc>>,
    /// The suspected mark to store (None clears it).
    pub suspected_at: Option<DateTime<Utc>>,
    /// Why a stated reset was not trusted, for the event.
    pub distrusted: Option<String>,
    /// The moment the message named: for a clock time that passed just now, that moment,
    /// not its next occurrence a day or a week later.
    pub stated_reset: Option<DateTime<Utc>>,
    /// What a trusted reset's wait was reckoned from (None when none was trusted).
    pub basis: Option<WaitBasis>,
    /// The hits in a row that said now, this one included (0 when it did not): to store.
    pub now_hits: u32,
}

/// What the wait after a trusted reset was reckoned from, for the event's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitBasis {
    /// The stated reset (now, for one at most [`CLOCK_SKEW_TOLERANCE`] ago), + margin.
    StatedReset,
    /// A clock time that passed just now: one short retry.
    JustNow,
    /// A clock time without seconds whose minute is not over: its end, + margin.
    EndOfMinute,
    /// A reset of now again, with nothing of the group done since the previous one: 2 s,
    /// doubled for each such hit in a row, at most `suspected_backoff`.
    NowAgain,
    /// The stated reset passed while the worker was silent after printing it: the quota
    /// is back, one short retry (see [`as_read_now`]).
    PassedWhileSilent,
    /// A window's boundary waited for and met again at once, nothing done since: a
    /// rolling window frees its calls as they age out, after the boundary. 2 s, doubled
    /// for each such hit in a row, at most the next boundary.
    RollingWindow,
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
    /// A wait no longer than this (`supervise_interval`: one a pass waits out by itself)
    /// is notified at most once an hour per account (docs/rate-limits.md, "Several
    /// passes").
    pub short_wait: Duration,
    /// The zone the reasons a reset is not trusted show their instants in (`[defaults]
    /// timezone`), as every message does.
    pub zone: chrono_tz::Tz,
}

/// How a limit message stated its reset, which decides how far it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetForm {
    /// An instant with nothing left to guess: an epoch, a relative duration ("in 2.5s",
    /// "after 8h44m7s"), a full date and time, a `resetsAt` field.
    #[default]
    Exact,
    /// A bare clock time ("resets 3pm"): resolved to its next occurrence, so a time just
    /// passed reads as tomorrow.
    ClockTime,
    /// A weekday and a clock time ("resets Wed 5am"): resolved to its next occurrence, so
    /// a time just passed reads as next week.
    WeekdayTime,
    /// A date without a year and a clock time ("resets Nov 25, 5am"): resolved to its
    /// next occurrence, so a time just passed reads as next year.
    DateTime,
    /// No reset stated, but the wording names its window ("requests per minute", "per
    /// day"): the window's next boundary (docs/rate-limits.md, "Per-window limits").
    WindowBoundary,
}

impl ResetForm {
    /// How far ahead a time just passed is pushed by "next occurrence": a day for a bare
    /// clock time, a week for a weekday; None for the forms that state their instant.
    pub(crate) fn period(self) -> Option<chrono::Duration> {
        match self {
            ResetForm::ClockTime => Some(chrono::Duration::days(1)),
            ResetForm::WeekdayTime => Some(chrono::Duration::days(7)),
            ResetForm::DateTime => Some(chrono::Duration::days(365)),
            ResetForm::Exact | ResetForm::WindowBoundary => None,
        }
    }
}

/// A reset a limit message stated, and in what form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatedReset {
    pub at: DateTime<Utc>,
    pub form: ResetForm,
    /// For a clock time (bare or with a weekday): the occurrence of it at most
    /// [`JUST_PASSED`] before the message was read, found in the message's own zone
    /// (so across a DST change too), when there is one. `at` is then the next
    /// occurrence, a day or a week later. For an [`ResetForm::Exact`] reset of now: the
    /// moment the message named, which passed while the worker was silent after printing
    /// it ([`as_read_now`]).
    pub just_passed: Option<DateTime<Utc>>,
}

/// The margin added to a trusted reset never falls below this (or `reset_margin`, when
/// that is shorter).
pub const MIN_RESET_MARGIN: Duration = Duration::from_secs(2);
/// A clock time resolved further ahead than its period less this (20 hours for a bare
/// clock time, 6 days 20 hours for a weekday) may have rolled over to the next day or
/// week: only such a one is doubted after a recent reset. One due sooner cannot mean the
/// next period.
pub const ROLLED_OVER_SLACK: Duration = Duration::from_secs(4 * 3600);
/// A clock time that passed at most this long ago means "just now".
pub const JUST_PASSED: Duration = Duration::from_secs(10 * 60);
/// A stated reset at most this long before the hit means "now": the vendor's clock and
/// ours differ by a few seconds, and `Retry-After: 0` is now.
pub const CLOCK_SKEW_TOLERANCE: Duration = Duration::from_secs(30);

/// The margin added to a reset `wait` away: a tenth of the wait, at least
/// [`MIN_RESET_MARGIN`] and at most `reset_margin` (docs/rate-limits.md). A 2.5 s wait
/// gets 2 s, a 30 s wait 3 s, an hour's wait the whole `reset_margin`. A `reset_margin`
/// below 2 s counts as 2 s: with none, a reset of now was called again at once.
pub fn reset_margin_for(wait: Duration, reset_margin: Duration) -> Duration {
    (wait / 10).max(MIN_RESET_MARGIN).min(reset_margin.max(MIN_RESET_MARGIN))
}

/// Decide the group's backoff after a quota hit observed at `now`.
///
/// A stated reset in the future (at most [`MAX_TRUSTED_RESET_AHEAD`]), or at most
/// [`CLOCK_SKEW_TOLERANCE`] in the past (then: now), is trusted when its form leaves
/// nothing to guess (an epoch, a relative duration, a full date, a window boundary). A
/// clock time (bare or with a weekday) resolved about a period ahead is doubted when the
/// group hits again within [`CONFIRM_WINDOW`] after a previously stated reset passed (it
/// may have rolled over); one without seconds hit while its minute lasts waits for the
/// end of that minute (a client may have truncated the reset); one that passed at most
/// [`JUST_PASSED`] ago means "just now": a short retry, once — a group that already
/// retried after that moment falls to the no-reset rule. Anything else falls to the no-reset rule, which remembers a recent
/// reset so that the doubt holds for the whole window.
pub fn decide_backoff(
    stated_reset: Option<StatedReset>,
    now: DateTime<Utc>,
    previous: PreviousBackoff,
    policy: BackoffPolicy,
) -> BackoffDecision {
    let recent_reset = previous.reset_at.filter(|&reset| reset <= now && now < later(reset, CONFIRM_WINDOW));
    let named = stated_reset
        .map(|stated| passed_while_silent(stated).or_else(|| just_passed(stated, now)).unwrap_or(stated.at));
    if let Some(decision) = stated_reset.and_then(|stated| rolling_window(stated, now, previous, policy)) {
        return decision;
    }
    let mut distrusted = None;
    if let Some(stated) = stated_reset {
        match judge_reset(stated, now, recent_reset, policy.zone) {
            Ok((reset, basis)) => {
                // A reset that passed while the worker was silent is a reset of now too:
                // met again with nothing done since, the wait doubles (docs/rate-limits.md).
                let is_now =
                    matches!(basis, WaitBasis::StatedReset | WaitBasis::PassedWhileSilent) && reset <= now;
                if is_now && previous.now_hits > 0 {
                    return now_again(now, named, previous.now_hits, policy);
                }
                let wait = (reset - now).to_std().unwrap_or_default();
                return BackoffDecision {
                    until: later(reset, reset_margin_for(wait, policy.reset_margin)),
                    rule: BackoffRule::ParsedReset,
                    reset_at: Some(reset),
                    remembered_reset: Some(reset),
                    suspected_at: None,
                    distrusted: None,
                    stated_reset: named,
                    basis: Some(basis),
                    now_hits: u32::from(is_now),
                };
            }
            Err(why) => distrusted = Some(why),
        }
    }
    let confirms = previous
        .suspected_at
        .is_some_and(|suspected| suspected <= now && now - suspected <= chrono(CONFIRM_WINDOW));
    let (until, rule, suspected_at) = if confirms {
        (later(now, policy.default_backoff), BackoffRule::Confirmed, None)
    } else {
        (later(now, policy.suspected_backoff), BackoffRule::Suspected, Some(now))
    };
    BackoffDecision {
        until,
        rule,
        reset_at: None,
        remembered_reset: recent_reset,
        suspected_at,
        distrusted,
        stated_reset: named,
        basis: None,
        now_hits: 0,
    }
}

/// The instant to wait for when `stated` is trusted (now, for a reset just passed), and
/// what it was reckoned from; else why not. `recent_reset`: the group's previous reset,
/// when it passed within [`CONFIRM_WINDOW`].
fn judge_reset(
    stated: StatedReset,
    now: DateTime<Utc>,
    recent_reset: Option<DateTime<Utc>>,
    zone: chrono_tz::Tz,
) -> Result<(DateTime<Utc>, WaitBasis), String> {
    let shown = |at: DateTime<Utc>| crate::output::local_time(at, zone);
    let StatedReset { at: reset, form, .. } = stated;
    if passed_while_silent(stated).is_some() {
        return Ok((now, WaitBasis::PassedWhileSilent));
    }
    if let Some(period) = form.period() {
        if let Some(passed) = just_passed(stated, now) {
            // A time without seconds ("try again at 6:06 AM" for 6:06:28) names a whole
            // minute: while it lasts, the reset may still be ahead. Wait for its end
            // (docs/rate-limits.md, "Clock times").
            if let Some(minute_over) = minute_not_over(passed, now) {
                return Ok((minute_over, WaitBasis::EndOfMinute));
            }
            return match recent_reset {
                // The group already retried after that moment and hit again.
                Some(retried) if retried > passed => Err(format!(
                    "the stated reset {} passed just now, and the group already retried at {} and hit again",
                    shown(passed),
                    shown(retried)
                )),
                _ => Ok((now, WaitBasis::JustNow)),
            };
        }
        let rolled_over = period - chrono(ROLLED_OVER_SLACK);
        if let Some(previous) = recent_reset.filter(|_| reset - now > rolled_over && reset > now) {
            return Err(format!(
                "hit again within 30m after the previously stated reset {}; a clock time may mean the next {}",
                shown(previous),
                match form {
                    ResetForm::WeekdayTime => "week",
                    ResetForm::DateTime => "year",
                    _ => "day",
                }
            ));
        }
    }
    // A clock time read at the very instant its minute begins (20:00:00.000 for "8pm")
    // resolves to now, not to a moment just passed: its minute lasts all the same.
    if let Some(minute_over) = form.period().and(minute_not_over(reset, now)) {
        return Ok((minute_over, WaitBasis::EndOfMinute));
    }
    if reset <= now {
        if now - reset <= chrono(CLOCK_SKEW_TOLERANCE) {
            return Ok((now, WaitBasis::StatedReset));
        }
        return Err(format!("stated reset {} is already in the past", shown(reset)));
    }
    if reset - now > chrono(MAX_TRUSTED_RESET_AHEAD) {
        return Err(format!("stated reset {} is more than 8 days ahead", shown(reset)));
    }
    Ok((reset, WaitBasis::StatedReset))
}

/// A reset of now (zero, or a few seconds ago) seen again by the retry after one, with no
/// item of the group done between: the vendor is still limited, or its clock is behind
/// ours. Retrying after the margin every time called it every two seconds for as long as
/// it stayed limited; the `now_hits`-th such hit in a row waits 2 s doubled `now_hits`
/// times — 4 s, 8 s, 16 s … — at most `suspected_backoff` (docs/rate-limits.md, "Now").
/// A now after a wait for a reset in the future is a first one: 2 s.
fn now_again(
    now: DateTime<Utc>,
    stated_reset: Option<DateTime<Utc>>,
    now_hits: u32,
    policy: BackoffPolicy,
) -> BackoffDecision {
    let wait = doubled(now_hits).min(policy.suspected_backoff);
    BackoffDecision {
        until: later(now, wait),
        rule: BackoffRule::ParsedReset,
        reset_at: Some(now),
        remembered_reset: Some(now),
        suspected_at: None,
        distrusted: None,
        stated_reset,
        basis: Some(WaitBasis::NowAgain),
        now_hits: now_hits.saturating_add(1),
    }
}

/// A window's boundary (`requests per minute`) met again in the first half of the window
/// after the boundary the group waited for, with no item of the group done since: the
/// vendor's window rolls (it frees a call a window after that call was made, not at the
/// whole minute), and the calls made just before the boundary free a moment after it.
/// Waiting for the next boundary lost every second window (docs/rate-limits.md,
/// "Per-window limits"): a short retry instead, 2 s doubled for each such hit in a row,
/// at most the next boundary + margin.
fn rolling_window(
    stated: StatedReset,
    now: DateTime<Utc>,
    previous: PreviousBackoff,
    policy: BackoffPolicy,
) -> Option<BackoffDecision> {
    if stated.form != ResetForm::WindowBoundary || !previous.nothing_done_since {
        return None;
    }
    let boundary = previous.reset_at.filter(|&boundary| boundary <= now && stated.at > boundary)?;
    if now - boundary >= (stated.at - boundary) / 2 {
        return None;
    }
    let next_boundary =
        later(stated.at, reset_margin_for((stated.at - now).to_std().ok()?, policy.reset_margin));
    let until = later(now, doubled(previous.now_hits)).min(next_boundary);
    Some(BackoffDecision {
        until,
        rule: BackoffRule::ParsedReset,
        reset_at: Some(until),
        remembered_reset: Some(boundary),
        suspected_at: None,
        distrusted: None,
        stated_reset: Some(stated.at),
        basis: Some(WaitBasis::RollingWindow),
        now_hits: previous.now_hits.saturating_add(1),
    })
}

/// The short retry after `hits` such hits in a row: 2 s doubled `hits` times.
fn doubled(hits: u32) -> Duration {
    MIN_RESET_MARGIN.saturating_mul(1u32 << hits.min(20))
}

/// What a clock time without seconds names: any moment of that minute.
const WHOLE_MINUTE: Duration = Duration::from_secs(60);

/// Whether a clock time names a whole minute (`6:06 AM`, no seconds), which a client
/// may have truncated (docs/rate-limits.md, "Clock times").
fn names_a_whole_minute(instant: DateTime<Utc>) -> bool {
    instant.second() == 0 && instant.nanosecond() == 0
}

/// The end of the minute a clock time without seconds names (`moment`), while `now` is
/// still in it: a client may have truncated the reset (docs/rate-limits.md, "Clock
/// times"). None when `moment` is not a whole minute, is ahead, or its minute is over.
fn minute_not_over(moment: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let minute_over = later(moment, WHOLE_MINUTE);
    (names_a_whole_minute(moment) && moment <= now && now < minute_over).then_some(minute_over)
}

/// A clock time resolved to its next occurrence that really named a moment at most
/// [`JUST_PASSED`] before `now`: that moment, else None.
fn just_passed(stated: StatedReset, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    stated.just_passed.filter(|&passed| passed <= now && now - passed <= chrono(JUST_PASSED))
}

/// The moment a message named that passed while its worker was silent after printing it
/// (see [`as_read_now`]).
fn passed_while_silent(stated: StatedReset) -> Option<DateTime<Utc>> {
    stated.just_passed.filter(|_| stated.form == ResetForm::Exact)
}

/// A reset stated by a message printed at `printed` and read at `now`, the worker silent
/// in between (it lingered, or hung until `item_timeout`): its clock times and durations
/// were reckoned from the printing (docs/rate-limits.md, "Reset times"). A reset that
/// passed while the worker was silent is read as [`decide_backoff`] would have read it
/// at once: a clock time as "just now" (the rest of a whole minute, or the doubt of a
/// group that already retried after it, still hold) while that lasts, an exact one as now
/// within the clock skew; once longer ago, the quota has returned: now, and a clock time
/// never rolls over to the next day for the wait. One that had passed when it was printed
/// is left to the usual doubt.
pub fn as_read_now(stated: StatedReset, printed: DateTime<Utc>, now: DateTime<Utc>) -> StatedReset {
    let at_print =
        stated.just_passed.filter(|&passed| passed <= printed && printed - passed <= chrono(JUST_PASSED));
    let passed_while_silent =
        || Some(stated.at).filter(|&at| at <= now && at > printed - chrono(CLOCK_SKEW_TOLERANCE));
    let Some(moment) = at_print.or_else(passed_while_silent) else { return stated };
    match stated.form.period() {
        Some(_) if now - moment <= chrono(JUST_PASSED) && at_print.is_some() => stated,
        Some(period) if now - moment <= chrono(JUST_PASSED) => {
            StatedReset { at: moment + period, form: stated.form, just_passed: Some(moment) }
        }
        None if now - moment <= chrono(CLOCK_SKEW_TOLERANCE) => stated,
        _ => StatedReset { at: now, form: ResetForm::Exact, just_passed: Some(moment) },
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
        short_wait: Duration::from_secs(900),
        zone: chrono_tz::Tz::UTC,
    };

    #[test]
    fn a_reset_margin_below_two_seconds_counts_as_two() {
        // Before: `reset_margin = "0s"` called a reset of now again at once.
        assert_eq!(reset_margin_for(Duration::ZERO, Duration::ZERO), MIN_RESET_MARGIN);
        assert_eq!(reset_margin_for(Duration::from_secs(3600), Duration::from_secs(1)), MIN_RESET_MARGIN);
        assert_eq!(
            reset_margin_for(Duration::from_secs(3600), Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn parsed_reset_gets_a_one_minute_margin() {
        let d = decide_backoff(exact(at(20, 0)), at(18, 0), PreviousBackoff::default(), HOUR);
        assert_eq!(d.until, at(20, 1));
        assert_eq!(d.rule, BackoffRule::ParsedReset);
        assert_eq!(d.suspected_at, None);
    }

    #[test]
    fn no_reset_suspects_then_confirms_within_thirty_minutes() {
        let first = decide_backoff(None, at(10, 0), PreviousBackoff::default(), HOUR);
        assert_eq!((first.until, first.rule), (at(10, 5), BackoffRule::Suspected));
        let previous = PreviousBackoff {
            reset_at: None,
            suspected_at: first.suspected_at,
            now_hits: 0,
            nothing_done_since: false,
        };
        let second = decide_backoff(None, at(10, 20), previous, HOUR);
        assert_eq!((second.until, second.rule), (at(11, 20), BackoffRule::Confirmed));
        let late = decide_backoff(None, at(10, 31), previous, HOUR);
        assert_eq!(late.rule, BackoffRule::Suspected);
    }

    #[test]
    fn a_reset_that_passed_while_the_worker_was_silent_is_now() {
        let policy = PreviousBackoff::default();
        // "resets 8pm" printed at 19:59, read at 20:15 when the worker ended: before, the
        // next 8pm after 20:15 — tomorrow, a day of quota lost.
        let printed = at(19, 59);
        let read = as_read_now(stated(at(20, 0), ResetForm::ClockTime).unwrap(), printed, at(20, 15));
        let decision = decide_backoff(Some(read), at(20, 15), policy, HOUR);
        assert_eq!(decision.until, at(20, 15) + chrono::Duration::seconds(2));
        // Its events name the moment the message named, and why it is now.
        assert_eq!(
            (decision.stated_reset, decision.basis),
            (Some(at(20, 0)), Some(WaitBasis::PassedWhileSilent))
        );
        // Met again so, with nothing done since: a reset of now again, the wait doubled.
        let again = PreviousBackoff { now_hits: decision.now_hits, ..policy };
        let read = as_read_now(stated(at(20, 0), ResetForm::ClockTime).unwrap(), printed, at(20, 16));
        let doubled = decide_backoff(Some(read), at(20, 16), again, HOUR);
        assert_eq!(
            (doubled.until, doubled.basis),
            (at(20, 16) + chrono::Duration::seconds(4), Some(WaitBasis::NowAgain))
        );
        // Printed at 20:05 ("just now", 8pm tomorrow its next occurrence), read at 20:12.
        let tomorrow = at(20, 0) + chrono::Duration::days(1);
        let read = as_read_now(stated(tomorrow, ResetForm::ClockTime).unwrap(), at(20, 5), at(20, 12));
        assert_eq!((read.at, read.just_passed), (at(20, 12), Some(at(20, 0))));
        // Read while still "just now": left to decide_backoff, which reads it so.
        let kept = stated(tomorrow, ResetForm::ClockTime).unwrap();
        assert_eq!(as_read_now(kept, at(20, 5), at(20, 8)), kept);
        // Passed during a short silence: the rest of the whole minute it names still holds.
        let eight = Utc.with_ymd_and_hms(2026, 11, 27, 20, 0, 40).unwrap();
        let printed = Utc.with_ymd_and_hms(2026, 11, 27, 19, 59, 50).unwrap();
        let read = as_read_now(stated(at(20, 0), ResetForm::ClockTime).unwrap(), printed, eight);
        let decision = decide_backoff(Some(read), eight, policy, HOUR);
        assert_eq!(decision.until, at(20, 1) + chrono::Duration::seconds(2));
        // And a group that retried after it and hit again is doubted, as at once.
        let retried = PreviousBackoff {
            reset_at: Some(Utc.with_ymd_and_hms(2026, 11, 27, 20, 0, 30).unwrap()),
            ..policy
        };
        let read = as_read_now(stated(at(20, 0), ResetForm::ClockTime).unwrap(), at(19, 59), at(20, 2));
        assert!(decide_backoff(Some(read), at(20, 2), retried, HOUR).distrusted.is_some());
        // "in 45 minutes" printed at 10:00, read at 10:30: still 10:45.
        let ahead = exact(at(10, 45)).unwrap();
        assert_eq!(as_read_now(ahead, at(10, 0), at(10, 30)), ahead);
        // Already past when printed: the usual doubt.
        let stale = exact(at(9, 0)).unwrap();
        assert_eq!(as_read_now(stale, at(10, 0), at(10, 30)), stale);
        assert_eq!(decide_backoff(Some(stale), at(10, 30), policy, HOUR).rule, BackoffRule::Suspected);
    }

    #[test]
    fn resets_in_the_past_or_too_far_ahead_are_distrusted() {
        let past = decide_backoff(exact(at(9, 0)), at(10, 0), PreviousBackoff::default(), HOUR);
        assert_eq!(past.rule, BackoffRule::Suspected);
        assert!(past.distrusted.unwrap().contains("in the past"));
        // Its instant in the configured zone, as every message shows one (before: UTC).
        let berlin = BackoffPolicy { zone: chrono_tz::Europe::Berlin, ..HOUR };
        let past = decide_backoff(exact(at(9, 0)), at(10, 0), PreviousBackoff::default(), berlin);
        assert_eq!(
            past.distrusted.as_deref(),
            Some("stated reset Fri 2026-11-27 10:00 CET is already in the past")
        );
        let far = at(10, 0) + chrono::Duration::days(9);
        let far = decide_backoff(exact(far), at(10, 0), PreviousBackoff::default(), HOUR);
        assert!(far.distrusted.unwrap().contains("8 days"));
        let eight = at(10, 0) + chrono::Duration::days(8);
        assert_eq!(
            decide_backoff(exact(eight), at(10, 0), PreviousBackoff::default(), HOUR).rule,
            BackoffRule::ParsedReset
        );
    }

    fn exact(at: DateTime<Utc>) -> Option<StatedReset> {
        Some(StatedReset { at, form: ResetForm::Exact, just_passed: None })
    }

    /// A clock time as the parser reads it in a zone without DST: its occurrence a
    /// period before `at` (which `decide_backoff` takes only when it passed just now).
    fn stated(at: DateTime<Utc>, form: ResetForm) -> Option<StatedReset> {
        Some(StatedReset { at, form, just_passed: form.period().map(|period| at - period) })
    }

    #[test]
    fn a_windows_boundary_met_again_at_once_is_retried_shortly_not_a_window_later() {
        let seconds = |minute: u32, second: i64| at(10, minute) + chrono::Duration::seconds(second);
        let boundary = |minute: u32| stated(at(10, minute), ResetForm::WindowBoundary);
        // "3 requests per minute", met at 10:00:12: the next whole minute + margin.
        let first = decide_backoff(boundary(1), seconds(0, 12), PreviousBackoff::default(), HOUR);
        assert_eq!(first.remembered_reset, Some(at(10, 1)));
        assert!(first.until > at(10, 1) && first.until < seconds(1, 10), "{first:?}");
        // Met again by the retry at 10:01:05, nothing done since: a rolling window frees
        // its calls as they age out. Before: 10:02 + margin, a window lost.
        let waited = PreviousBackoff {
            reset_at: first.remembered_reset,
            suspected_at: None,
            now_hits: first.now_hits,
            nothing_done_since: true,
        };
        let again = decide_backoff(boundary(2), seconds(1, 5), waited, HOUR);
        assert_eq!((again.until, again.basis), (seconds(1, 7), Some(WaitBasis::RollingWindow)));
        assert_eq!(again.remembered_reset, Some(at(10, 1)));
        // And again at 10:01:07: twice as long.
        let twice = PreviousBackoff { now_hits: again.now_hits, ..waited };
        assert_eq!(decide_backoff(boundary(2), seconds(1, 7), twice, HOUR).until, seconds(1, 11));
        // At most the next boundary + margin.
        let many = PreviousBackoff { now_hits: 10, ..waited };
        assert_eq!(decide_backoff(boundary(2), seconds(1, 20), many, HOUR).until, first_after(at(10, 2)));
        // An item done since (the window's calls used), or a hit late in the window: the
        // next boundary, as before.
        let busy = PreviousBackoff { nothing_done_since: false, ..waited };
        assert_eq!(
            decide_backoff(boundary(2), seconds(1, 5), busy, HOUR).basis,
            Some(WaitBasis::StatedReset)
        );
        assert_eq!(
            decide_backoff(boundary(2), seconds(1, 40), waited, HOUR).basis,
            Some(WaitBasis::StatedReset)
        );
    }

    /// `at` + the margin a wait of about 40 s gets (the floor of 2 s, to the second).
    fn first_after(at: DateTime<Utc>) -> DateTime<Utc> {
        later(at, reset_margin_for(Duration::from_secs(40), DEFAULT_RESET_MARGIN))
    }

    #[test]
    fn a_bare_clock_time_just_passed_means_just_now_not_tomorrow() {
        // "resets 8pm" seen at 20:02 resolves to tomorrow 20:00: it means "just now".
        let previous = PreviousBackoff {
            reset_at: Some(at(20, 0)),
            suspected_at: None,
            now_hits: 0,
            nothing_done_since: false,
        };
        let tomorrow = at(20, 0) + chrono::Duration::days(1);
        for previous in [previous, PreviousBackoff::default()] {
            let d = decide_backoff(stated(tomorrow, ResetForm::ClockTime), at(20, 2), previous, HOUR);
            assert_eq!(
                (d.until, d.rule),
                (at(20, 2) + chrono::Duration::seconds(2), BackoffRule::ParsedReset)
            );
        }
        // Eleven minutes past is not "just now": a bare clock time after a recent reset is
        // doubted; without one, tomorrow is believed.
        let d = decide_backoff(stated(tomorrow, ResetForm::ClockTime), at(20, 11), previous, HOUR);
        assert_eq!(d.rule, BackoffRule::Suspected);
        let d = decide_backoff(
            stated(tomorrow, ResetForm::ClockTime),
            at(20, 11),
            PreviousBackoff::default(),
            HOUR,
        );
        assert_eq!((d.until, d.rule), (tomorrow + chrono::Duration::minutes(1), BackoffRule::ParsedReset));
    }

    #[test]
    fn the_trust_rule_by_reset_form_and_recent_reset() {
        let now = at(10, 0);
        let recent = PreviousBackoff {
            reset_at: Some(at(9, 55)),
            suspected_at: None,
            now_hits: 0,
            nothing_done_since: false,
        };
        let long_ago = PreviousBackoff {
            reset_at: Some(at(8, 0)),
            suspected_at: None,
            now_hits: 0,
            nothing_done_since: false,
        };
        let in_seconds = now + chrono::Duration::milliseconds(2_500);
        let in_hours = at(15, 0);
        // (form, reset, previous, trusted?)
        let table = [
            (ResetForm::Exact, in_seconds, recent, true),
            (ResetForm::Exact, in_seconds, long_ago, true),
            (ResetForm::Exact, in_hours, recent, true),
            (ResetForm::WindowBoundary, at(10, 1), recent, true),
            (ResetForm::WindowBoundary, at(10, 1), PreviousBackoff::default(), true),
            (ResetForm::ClockTime, in_hours, recent, true),
            (ResetForm::ClockTime, now + chrono::Duration::minutes(23 * 60 + 40), recent, false),
            (ResetForm::ClockTime, now + chrono::Duration::minutes(23 * 60 + 40), long_ago, true),
            (ResetForm::ClockTime, in_hours, long_ago, true),
            (ResetForm::ClockTime, in_hours, PreviousBackoff::default(), true),
        ];
        for (form, reset, previous, trusted) in table {
            let d = decide_backoff(stated(reset, form), now, previous, HOUR);
            assert_eq!(d.rule == BackoffRule::ParsedReset, trusted, "{form:?} {reset} {previous:?}: {d:?}");
            if trusted {
                assert_eq!(d.reset_at, Some(reset));
            }
        }
        // An exact reset 2.5 s away waits 2.5 s plus 2 s, not a minute.
        let d = decide_backoff(exact(in_seconds), now, recent, HOUR);
        assert_eq!(d.until, in_seconds + chrono::Duration::seconds(2));
    }

    #[test]
    fn a_bare_clock_time_just_passed_around_midnight() {
        use chrono_tz::Europe::Warsaw;
        // "resets 12am" seen at 00:03 local: tomorrow's midnight is 24 h ahead.
        let midnight = Warsaw.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap().with_timezone(&Utc);
        let now = midnight + chrono::Duration::minutes(3);
        let next = Warsaw.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap().with_timezone(&Utc);
        let d = decide_backoff(stated(next, ResetForm::ClockTime), now, PreviousBackoff::default(), HOUR);
        assert_eq!((d.until, d.rule), (now + chrono::Duration::seconds(2), BackoffRule::ParsedReset));
        // Across a DST change the occurrence just passed is found by the parser, in the
        // message's zone (quota::reset's tests).
    }

    /// Each hit decided with what the previous one stored, as `record_quota_hit` does.
    fn hits_in_a_row(hits: &[(Option<StatedReset>, DateTime<Utc>)]) -> Vec<BackoffDecision> {
        let mut previous = PreviousBackoff::default();
        hits.iter()
            .map(|&(stated, now)| {
                let decision = decide_backoff(stated, now, previous, HOUR);
                previous = PreviousBackoff {
                    reset_at: decision.remembered_reset,
                    suspected_at: decision.suspected_at,
                    now_hits: decision.now_hits,
                    nothing_done_since: true,
                };
                decision
            })
            .collect()
    }

    #[test]
    fn a_doubted_clock_time_after_a_suspected_hit_confirms_instead_of_waiting_a_day() {
        // "resets 8pm" (18:00Z) seen at 12:00, 18:20 and 18:26.
        let eight = at(18, 0);
        let tomorrow = eight + chrono::Duration::days(1);
        let decisions = hits_in_a_row(&[
            (stated(eight, ResetForm::ClockTime), at(12, 0)),
            (stated(tomorrow, ResetForm::ClockTime), at(18, 20)),
            (stated(tomorrow, ResetForm::ClockTime), at(18, 26)),
        ]);
        let got: Vec<_> = decisions.iter().map(|d| (d.until, d.rule)).collect();
        assert_eq!(
            got,
            [
                (at(18, 1), BackoffRule::ParsedReset),
                (at(18, 25), BackoffRule::Suspected),
                (at(19, 26), BackoffRule::Confirmed),
            ]
        );
    }

    #[test]
    fn a_reset_of_now_or_a_few_seconds_ago_is_now() {
        let now = at(10, 0);
        for reset in [now, now - chrono::Duration::seconds(10), now - chrono::Duration::seconds(30)] {
            let d = decide_backoff(exact(reset), now, PreviousBackoff::default(), HOUR);
            assert_eq!(
                (d.until, d.rule),
                (now + chrono::Duration::seconds(2), BackoffRule::ParsedReset),
                "{reset}"
            );
            assert_eq!(d.distrusted, None);
        }
        // Again after items succeeded: a vendor that says "now" is believed.
        let first = decide_backoff(exact(now), now, PreviousBackoff::default(), HOUR);
        let succeeded_since = PreviousBackoff {
            reset_at: first.remembered_reset,
            suspected_at: None,
            now_hits: 0,
            nothing_done_since: false,
        };
        let again = decide_backoff(exact(at(10, 1)), at(10, 1), succeeded_since, HOUR);
        assert_eq!(again.until, at(10, 1) + chrono::Duration::seconds(2));
        // With none between, the second waits twice as long as the first.
        let twice = hits_in_a_row(&[(exact(now), now), (exact(at(10, 1)), at(10, 1))]);
        assert_eq!(twice[1].until, at(10, 1) + chrono::Duration::seconds(4));
        let stale =
            decide_backoff(exact(now - chrono::Duration::seconds(31)), now, PreviousBackoff::default(), HOUR);
        assert_eq!(stale.rule, BackoffRule::Suspected);
        assert!(stale.distrusted.unwrap().contains("in the past"));
    }

    #[test]
    fn a_reset_of_now_seen_again_waits_twice_as_long_each_time_up_to_the_suspected_backoff() {
        // `Retry-After: 0` (or an epoch a few seconds ago) from a vendor that stays limited.
        let now_reset = |at: DateTime<Utc>| exact(at);
        let mut hits = Vec::new();
        let mut at_ = at(10, 0);
        let mut gaps = Vec::new();
        for _ in 0..12 {
            let decision = hits_in_a_row(&{
                hits.push((now_reset(at_), at_));
                hits.clone()
            })
            .pop()
            .unwrap();
            assert_eq!(decision.rule, BackoffRule::ParsedReset);
            let wait = decision.until - at_;
            gaps.push(wait.num_seconds());
            at_ = decision.until;
        }
        // 2 s, then twice the previous wait, up to suspected_backoff (5 minutes).
        assert_eq!(gaps, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]);
        // A now after a wait for a reset in the future is a first one: 2 s, not twice that
        // wait (the vendor's clock a few seconds behind ours).
        let after_a_wait = hits_in_a_row(&[
            (exact(at(10, 1)), at(10, 0)),
            (exact(at(10, 1) - chrono::Duration::seconds(3)), at(10, 1) + chrono::Duration::seconds(5)),
        ]);
        assert_eq!(after_a_wait[1].until, at(10, 1) + chrono::Duration::seconds(7));
    }

    #[test]
    fn repeated_just_now_hits_follow_the_no_reset_rule_after_the_first() {
        // "resets 8pm" (20:00Z here) seen again and again from 20:05.
        let tomorrow = at(20, 0) + chrono::Duration::days(1);
        let second = |minute: u32, seconds: i64| at(20, minute) + chrono::Duration::seconds(seconds);
        let decisions = hits_in_a_row(&[
            (stated(tomorrow, ResetForm::ClockTime), second(5, 0)),
            (stated(tomorrow, ResetForm::ClockTime), second(5, 2)),
            (stated(tomorrow, ResetForm::ClockTime), second(10, 2)),
        ]);
        let got: Vec<_> = decisions.iter().map(|d| (d.until, d.rule)).collect();
        assert_eq!(
            got,
            [
                (second(5, 2), BackoffRule::ParsedReset),
                (second(10, 2), BackoffRule::Suspected),
                (second(10, 2) + chrono::Duration::hours(1), BackoffRule::Confirmed),
            ]
        );
        assert!(decisions[1].distrusted.as_deref().unwrap_or_default().contains("already retried"));
        // What the message stated is 20:00 today, not tomorrow's next occurrence.
        assert_eq!(
            (decisions[0].stated_reset, decisions[0].basis),
            (Some(at(20, 0)), Some(WaitBasis::JustNow))
        );
        assert_eq!((decisions[1].stated_reset, decisions[1].basis), (Some(at(20, 0)), None));
        // After waiting for the reset itself, one short retry is still made.
        let waited = hits_in_a_row(&[
            (stated(at(20, 0), ResetForm::ClockTime), at(18, 0)),
            (stated(tomorrow, ResetForm::ClockTime), second(1, 0)),
            (stated(tomorrow, ResetForm::ClockTime), second(1, 2)),
        ]);
        let got: Vec<_> = waited.iter().map(|d| d.rule).collect();
        assert_eq!(got, [BackoffRule::ParsedReset, BackoffRule::ParsedReset, BackoffRule::Suspected]);
    }

    #[test]
    fn a_clock_time_without_seconds_hit_within_its_minute_waits_for_the_minute_to_end() {
        // codex says "try again at 12:24 AM" for a reset at 00:24:28: it truncates.
        let stated_at = |minute: u32, seconds: i64| at(0, minute) + chrono::Duration::seconds(seconds);
        let tomorrow = at(0, 24) + chrono::Duration::days(1);
        let decisions = hits_in_a_row(&[
            (stated(at(0, 24), ResetForm::ClockTime), stated_at(23, 20)),
            (stated(tomorrow, ResetForm::ClockTime), stated_at(24, 4)),
            (stated(tomorrow, ResetForm::ClockTime), stated_at(25, 6)),
        ]);
        let got: Vec<_> = decisions.iter().map(|d| (d.until, d.rule)).collect();
        assert_eq!(
            got,
            [
                // The first retry stays at the stated time + margin (a rounded-up time
                // has reset by then).
                (stated_at(24, 4), BackoffRule::ParsedReset),
                // Still within 00:24: the end of the minute + a tenth of the 56 s wait.
                (stated_at(25, 0) + chrono::Duration::milliseconds(5_600), BackoffRule::ParsedReset),
                // After the minute is over: the group already retried, no-reset rule.
                (stated_at(30, 6), BackoffRule::Suspected),
            ]
        );
        assert_eq!(decisions[1].distrusted, None);
        assert_eq!(decisions[1].reset_at, Some(at(0, 25)));
        assert_eq!(
            (decisions[1].stated_reset, decisions[1].basis),
            (Some(at(0, 24)), Some(WaitBasis::EndOfMinute))
        );
        assert_eq!(decisions[0].basis, Some(WaitBasis::StatedReset));
        // The first hit seen within the minute waits for its end too.
        let d = decide_backoff(
            stated(tomorrow, ResetForm::ClockTime),
            stated_at(24, 50),
            PreviousBackoff::default(),
            HOUR,
        );
        assert_eq!((d.until, d.rule), (stated_at(25, 2), BackoffRule::ParsedReset));
        // So does one seen at the very instant the minute begins, the clock time resolved
        // to now. Before: the 2 s retry of a reset of now, inside the minute.
        let d = decide_backoff(
            stated(at(0, 24), ResetForm::ClockTime),
            at(0, 24),
            PreviousBackoff::default(),
            HOUR,
        );
        assert_eq!(
            (d.until, d.basis),
            (stated_at(25, 0) + chrono::Duration::seconds(6), Some(WaitBasis::EndOfMinute))
        );
        // A time stated to the second is not a whole minute: the short "just now" retry.
        let seconds = tomorrow + chrono::Duration::seconds(30);
        let d = decide_backoff(
            stated(seconds, ResetForm::ClockTime),
            stated_at(24, 40),
            PreviousBackoff::default(),
            HOUR,
        );
        assert_eq!((d.until, d.rule), (stated_at(24, 42), BackoffRule::ParsedReset));
    }

    #[test]
    fn a_weekday_time_just_passed_means_just_now_not_next_week() {
        // "resets Wed 5am" seen at Wed 05:05: its next occurrence is a week ahead.
        let now = at(5, 5);
        let next_week = at(5, 0) + chrono::Duration::days(7);
        let d =
            decide_backoff(stated(next_week, ResetForm::WeekdayTime), now, PreviousBackoff::default(), HOUR);
        assert_eq!((d.until, d.rule), (now + chrono::Duration::seconds(2), BackoffRule::ParsedReset));
        // Hit again within 30 minutes after a reset, a week ahead is doubted; a few days is not.
        let recent = PreviousBackoff {
            reset_at: Some(at(5, 10)),
            suspected_at: None,
            now_hits: 0,
            nothing_done_since: false,
        };
        let later = at(5, 30);
        let doubted = decide_backoff(stated(next_week, ResetForm::WeekdayTime), later, recent, HOUR);
        assert_eq!(doubted.rule, BackoffRule::Suspected);
        let in_days = at(5, 0) + chrono::Duration::days(3);
        assert_eq!(
            decide_backoff(stated(in_days, ResetForm::WeekdayTime), later, recent, HOUR).rule,
            BackoffRule::ParsedReset
        );
    }

    #[test]
    fn the_margin_is_a_tenth_of_the_wait_between_two_seconds_and_reset_margin() {
        let minute = Duration::from_secs(60);
        for (wait, margin) in [
            (Duration::from_millis(500), Duration::from_secs(2)),
            (Duration::from_millis(2_500), Duration::from_secs(2)),
            (Duration::from_secs(30), Duration::from_secs(3)),
            (Duration::from_secs(300), Duration::from_secs(30)),
            (Duration::from_secs(3_600), minute),
        ] {
            assert_eq!(reset_margin_for(wait, minute), margin, "{wait:?}");
        }
        assert_eq!(reset_margin_for(Duration::from_secs(30), Duration::from_secs(1)), Duration::from_secs(2));
    }

    #[test]
    fn backoffs_too_long_for_the_calendar_end_at_the_latest_instant_instead_of_panicking() {
        let endless = BackoffPolicy {
            reset_margin: Duration::MAX,
            suspected_backoff: Duration::MAX,
            default_backoff: Duration::MAX,
            short_wait: Duration::MAX,
            zone: chrono_tz::Tz::UTC,
        };
        let latest = crate::clock::latest_instant();
        let first = decide_backoff(None, at(10, 0), PreviousBackoff::default(), endless);
        assert_eq!(first.until, latest);
        let previous = PreviousBackoff {
            reset_at: None,
            suspected_at: first.suspected_at,
            now_hits: 0,
            nothing_done_since: false,
        };
        assert_eq!(decide_backoff(None, at(10, 20), previous, endless).until, latest);
        // The margin is a tenth of the wait, however long reset_margin is.
        let trusted = decide_backoff(exact(at(11, 0)), at(10, 0), PreviousBackoff::default(), endless);
        assert_eq!((trusted.until, trusted.rule), (at(11, 6), BackoffRule::ParsedReset));
        let far = latest - chrono::Duration::hours(1);
        let trusted =
            decide_backoff(exact(far), far - chrono::Duration::days(2), PreviousBackoff::default(), endless);
        assert_eq!((trusted.until, trusted.rule), (latest, BackoffRule::ParsedReset));
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
