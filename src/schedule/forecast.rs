//! Forecasts: how fast a drain works through its backlog, and whether a burst will empty
//! it before its deadline.
//!
//! The throughput is items completed per hour of *running* time — the summed duration of
//! the drain's recent finished passes, so the hours a drain sits out of its window or
//! waits for a quota reset do not count against it. "Recent" is the latest
//! [`RECENT_RUNS`] passes that ended within [`RECENT_WINDOW`]; passes that crashed or hung
//! are left out (their end is when drainctl noticed, not when work stopped). The time to
//! empty the backlog (pending and running items) is running time at that rate, with
//! `concurrency` passes at once; during a burst the drain runs continuously, so it is
//! compared with the time left before the deadline — from when the drain can work: not
//! before its quota group's backoff ends, nor, when its daily cost budget is spent, before
//! the budget's day ends (docs/operations.md, "Status"). Pure arithmetic: `status` and
//! `metrics` read the history and show the result.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::db::runs::RunHistory;

/// At most this many recent finished passes make up the throughput.
pub const RECENT_RUNS: i64 = 20;
/// Only passes that ended this long ago or less count.
pub const RECENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Finished passes the throughput is based on.
    pub runs: i64,
    /// Items they completed.
    pub items_done: i64,
    /// Their summed duration.
    pub running_seconds: f64,
    /// Items completed per hour of running time; None without running time to divide by.
    pub items_per_hour: Option<f64>,
    /// Pending and running items.
    pub backlog: i64,
    /// Running time needed to empty the backlog at that rate (0 when it is empty); None
    /// when there is no rate, or it is 0 with work waiting.
    pub seconds_to_empty: Option<f64>,
    /// Time left before the burst deadline, during a burst.
    pub burst_seconds_left: Option<f64>,
    /// During a burst with a forecast: will the backlog be empty before the deadline?
    pub finishes_before_burst_deadline: Option<bool>,
    /// During a burst whose drain cannot work now: until when it cannot (None for a pause or
    /// a parked quota group, which last until `resume`).
    pub burst_held_until: Option<DateTime<Utc>>,
    /// Why: it is paused, its quota group is parked or backs off, or its daily cost budget
    /// is spent.
    pub burst_held_by: Option<HoldReason>,
    /// The hold lasts to the deadline or past it: no item runs in this burst.
    #[serde(skip)]
    pub held_past_burst_deadline: bool,
    /// During a burst of a drain with `max_cost_per_day` whose workers reported costs: the
    /// budget days (the first one holding the burst's start) its backlog needs at their
    /// recent cost per attempt; None beyond a year.
    pub burst_budget_days: Option<u32>,
    /// Paid from a daily budget: when the backlog empties, before the deadline.
    #[serde(skip)]
    pub burst_finishes_at: Option<DateTime<Utc>>,
    /// Paid from a daily budget: the items left at the deadline, when it does not finish.
    #[serde(skip)]
    pub burst_left_at_deadline: Option<f64>,
    /// During a burst whose quota group hit its limits lately at a pace slower than the
    /// drain's own rate: that pace, which the burst cannot beat (see [`QuotaPace`]).
    pub burst_quota_pace: Option<QuotaPace>,
    /// The time the backlog needs at that pace.
    #[serde(skip)]
    pub burst_quota_seconds: Option<f64>,
    /// During a burst: the time it may work before the deadline (after its hold).
    #[serde(skip)]
    pub working_seconds: Option<f64>,
}

/// What a quota group's vendor let its drains do lately: the items they completed from one
/// limit hit of the group to the next in the last 24 hours, per hour, taken at the median
/// of those spans — a span the group spent idle (its backlog empty, its window closed)
/// is one of few, and does not pull the pace down — and the backlog of the group's
/// drains in burst, which share it. A drain's own rate counts only its running time, not
/// the waits for the resets between; in a burst that keeps hitting its limits, this pace
/// is what all of them together can keep (docs/operations.md, "Status").
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuotaPace {
    /// Limit hits of the group in the last 24 hours (those a minute or less after the one
    /// before count once).
    pub hits: i64,
    pub items_per_hour: f64,
    /// Pending and running items of the group's drains in burst.
    #[serde(skip)]
    pub burst_backlog: i64,
}

/// The [`QuotaPace`] of the quota group of each drain of `config` in a burst at `now` (by
/// `controls`), by group: for those whose limits were hit at least twice a minute or more
/// apart in the last 24 hours. Read only for drains in a burst, whose verdict it changes.
pub fn quota_paces(
    client: &mut impl postgres::GenericClient,
    config: &crate::config::Config,
    controls: &[crate::db::drains::DrainControls],
    now: DateTime<Utc>,
) -> crate::error::Result<std::collections::HashMap<String, QuotaPace>> {
    let since = now - chrono::Duration::from_std(RECENT_WINDOW).unwrap_or_default();
    let bursting: Vec<&crate::config::DrainConfig> = config
        .drains
        .iter()
        .filter(|drain| controls.iter().any(|c| c.name == drain.name && c.active_burst(now).is_some()))
        .collect();
    let mut groups: Vec<&str> = bursting.iter().map(|drain| drain.quota_group.as_str()).collect();
    groups.sort_unstable();
    groups.dedup();
    let mut paces = std::collections::HashMap::new();
    for group in groups {
        let drains = config.group_drains(group);
        // From each hit (a minute or more after the one before) to the next: how long, and
        // the items the group's drains finished meanwhile.
        let spans = client.query(
            "WITH hits AS (SELECT at, lag(at) OVER (ORDER BY at) AS before FROM events
                            WHERE kind = 'backoff_set' AND quota_group = $1 AND at >= $2 AND at <= $3),
                  kept AS (SELECT at FROM hits WHERE before IS NULL OR at - before >= interval '1 minute'),
                  spans AS (SELECT at AS from_at, lead(at) OVER (ORDER BY at) AS to_at FROM kept)
             SELECT extract(epoch FROM s.to_at - s.from_at)::float8,
                    (SELECT count(*) FROM items i
                      WHERE i.state = 'done' AND i.finished_at >= s.from_at AND i.finished_at < s.to_at
                        AND i.drain = ANY($4))
               FROM spans s WHERE s.to_at IS NOT NULL",
            &[&group, &since, &now, &drains],
        )?;
        let mut rates: Vec<f64> = spans
            .iter()
            .map(|row| (row.get::<_, f64>(0), row.get::<_, i64>(1)))
            .filter(|(seconds, _)| *seconds > 0.0)
            .map(|(seconds, done)| done as f64 * 3600.0 / seconds)
            .collect();
        if rates.is_empty() {
            continue;
        }
        rates.sort_by(f64::total_cmp);
        let middle = rates.len() / 2;
        let median = match rates.len() % 2 {
            0 => (rates[middle - 1] + rates[middle]) / 2.0,
            _ => rates[middle],
        };
        let in_burst: Vec<String> = bursting
            .iter()
            .filter(|drain| drain.quota_group == group)
            .map(|drain| drain.name.clone())
            .collect();
        let counts = crate::db::items::count_by_state_of(client, &in_burst)?;
        let burst_backlog = counts.values().map(|counts| counts.pending + counts.running).sum();
        let hits = i64::try_from(rates.len()).unwrap_or(i64::MAX).saturating_add(1);
        paces.insert(group.to_string(), QuotaPace { hits, items_per_hour: median, burst_backlog });
    }
    Ok(paces)
}

/// A daily cost budget a burst's items are paid from (docs/operations.md, "Status").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DailyBudget {
    /// `max_cost_per_day`.
    pub max_usd: f64,
    /// What the attempts of the budget day holding `now` cost so far.
    pub spent_today_usd: f64,
    /// What an attempt cost lately, on average: reported cost over the attempts that
    /// reported one.
    pub usd_per_item: f64,
    /// The zone whose midnights end budget days.
    pub zone: chrono_tz::Tz,
}

impl DailyBudget {
    /// The budget of a drain with `max_cost_per_day` (`max_usd`), having spent
    /// `spent_today_usd` today, whose attempts lately reported `recent` (None without a
    /// reported cost: nothing to count items' costs by).
    pub fn of_drain(
        max_usd: Option<f64>,
        spent_today_usd: Option<f64>,
        recent: Option<&crate::db::usage::UsageSums>,
        zone: chrono_tz::Tz,
    ) -> Option<DailyBudget> {
        let recent = recent.filter(|sums| sums.cost_attempts > 0)?;
        let usd_per_item = recent.cost_usd? / recent.cost_attempts as f64;
        let budget = DailyBudget {
            max_usd: max_usd?,
            spent_today_usd: spent_today_usd.unwrap_or(0.0),
            usd_per_item,
            zone,
        };
        Some(budget).filter(|budget| budget.usd_per_item > 0.0 && budget.max_usd > 0.0)
    }

    /// Work `backlog` items of `seconds_per_item` running time each from `start` until
    /// they are done or `until` comes. Time runs on across midnight; the budget limits only
    /// which items start: in a budget day, items start while the day's spending is under
    /// the budget, and once it is spent the next item waits for the next budget day. The
    /// items left (done ones are those finished by `until`), when work stopped, the
    /// budget days items started in (at most a year's), and whether a spent budget ever
    /// held work back.
    fn work(
        &self,
        backlog: i64,
        seconds_per_item: f64,
        start: DateTime<Utc>,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Worked {
        let seconds = |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_milliseconds() as f64 / 1000.0;
        let later =
            |at: DateTime<Utc>, seconds: f64| at + chrono::Duration::milliseconds((seconds * 1000.0) as i64);
        let today = crate::usage::budget_day(now, self.zone).0;
        let mut worked = Worked { left: backlog as f64, at: start, days: 0, held_back: false };
        while worked.left > 0.0 && worked.at < until && worked.days < 366 {
            worked.days += 1;
            let (day_start, day_end) = crate::usage::budget_day(worked.at, self.zone);
            let spent = if day_start == today { self.spent_today_usd } else { 0.0 };
            let affordable =
                if spent >= self.max_usd { 0.0 } else { ((self.max_usd - spent) / self.usd_per_item).ceil() };
            // Items starting before the day ends: at `at`, `at + one item`, …
            let startable = if seconds_per_item > 0.0 {
                (seconds(worked.at, day_end) / seconds_per_item).ceil()
            } else {
                f64::INFINITY
            };
            let items = worked.left.min(affordable).min(startable);
            let end = later(worked.at, items * seconds_per_item);
            if end > until {
                let finished = if seconds_per_item > 0.0 {
                    (seconds(worked.at, until) / seconds_per_item).floor().clamp(0.0, items)
                } else {
                    items
                };
                worked.left -= finished;
                worked.at = until;
                break;
            }
            worked.left -= items;
            worked.at = end;
            if worked.left <= 0.0 {
                break;
            }
            if affordable < startable {
                // The budget is spent before the day is over: the next day's.
                worked.held_back = true;
                worked.at = worked.at.max(day_end);
            }
        }
        worked.left = worked.left.max(0.0);
        worked
    }
}

/// How far [`DailyBudget::work`] got.
#[derive(Debug, Clone, Copy)]
struct Worked {
    left: f64,
    at: DateTime<Utc>,
    days: u32,
    held_back: bool,
}

/// Why a drain cannot work before some instant, whatever its burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// It is paused: no pass starts it until `resume` (docs/operations.md, "Pause and
    /// resume").
    Paused,
    /// Its quota group is parked: no pass starts it until `resume --group`
    /// (docs/rate-limits.md).
    Parked,
    /// Its quota group backs off (docs/rate-limits.md).
    Backoff,
    /// Its `max_cost_per_day` is spent until the budget's day ends (docs/results.md).
    DailyBudget,
}

impl HoldReason {
    /// What holds the drain, in words: `its quota group backs off`.
    pub fn what(self) -> &'static str {
        match self {
            HoldReason::Paused => "it is paused",
            HoldReason::Parked => "its quota group is parked",
            HoldReason::Backoff => "its quota group backs off",
            HoldReason::DailyBudget => "its daily budget is spent",
        }
    }

    /// What holds a drain until someone runs `resume`: its pause, else its parked quota
    /// group.
    pub fn until_resumed(is_paused: bool, is_parked: bool) -> Option<HoldReason> {
        if is_paused {
            Some(HoldReason::Paused)
        } else if is_parked {
            Some(HoldReason::Parked)
        } else {
            None
        }
    }
}

/// The drain cannot start an item before `until`, for `reason`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hold {
    pub until: DateTime<Utc>,
    pub reason: HoldReason,
}

impl Hold {
    /// The hold that ends last of the quota group's backoff (until `backoff_until`) and
    /// the spent daily budget (until `budget_spent_until`); None when neither lasts past `now`.
    pub fn latest(
        backoff_until: Option<DateTime<Utc>>,
        budget_spent_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<Hold> {
        let backoff = backoff_until.map(|until| Hold { until, reason: HoldReason::Backoff });
        let budget = budget_spent_until.map(|until| Hold { until, reason: HoldReason::DailyBudget });
        [backoff, budget].into_iter().flatten().filter(|hold| hold.until > now).reduce(|latest, hold| {
            if hold.until > latest.until {
                hold
            } else {
                latest
            }
        })
    }

    /// What keeps a drain from working now, as `status`, `metrics` and `burst on` count it
    /// (docs/operations.md, "Status"): its quota group's backoff (until `backoff_until`),
    /// and its `max_cost_per_day` when today's cost (`cost_today`) reached it, until the
    /// budget day ends in `zone`.
    pub fn of_drain(
        backoff_until: Option<DateTime<Utc>>,
        max_cost_per_day: Option<f64>,
        cost_today: Option<f64>,
        now: DateTime<Utc>,
        zone: chrono_tz::Tz,
    ) -> Option<Hold> {
        let budget_spent_until = crate::usage::spent_budget(max_cost_per_day, cost_today)
            .map(|_| crate::usage::budget_day(now, zone).1);
        Hold::latest(backoff_until, budget_spent_until, now)
    }

    fn describe(&self, zone: chrono_tz::Tz) -> String {
        format!("{} until {}", self.reason.what(), crate::output::local_time(self.until, zone))
    }
}

/// The recent history of each of `drains` that [`forecast`] works from (status and
/// metrics), in one statement.
pub fn recent_histories(
    client: &mut impl postgres::GenericClient,
    drains: &[String],
    now: DateTime<Utc>,
) -> crate::error::Result<std::collections::HashMap<String, RunHistory>> {
    let since = now - chrono::Duration::from_std(RECENT_WINDOW).unwrap_or_default();
    crate::db::runs::recent_histories(client, drains, since, RECENT_RUNS)
}

/// The forecast for a backlog of `backlog` items worked on by `concurrency` passes; during
/// a burst, from the end of `hold` (when the drain cannot work before then) to the deadline,
/// and not at all while it is held `until_resumed` (paused, or its quota group parked).
pub fn forecast(
    history: RunHistory,
    backlog: i64,
    concurrency: u32,
    burst_until: Option<DateTime<Utc>>,
    hold: Option<Hold>,
    until_resumed: Option<HoldReason>,
    now: DateTime<Utc>,
) -> Forecast {
    let items_per_hour =
        (history.running_seconds > 0.0).then(|| history.items_done as f64 * 3600.0 / history.running_seconds);
    let seconds_to_empty = if backlog <= 0 {
        Some(0.0)
    } else {
        items_per_hour
            .filter(|rate| *rate > 0.0)
            .map(|rate| backlog as f64 * 3600.0 / (rate * f64::from(concurrency.max(1))))
    };
    let burst_seconds_left = burst_until
        .filter(|until| *until > now)
        .map(|until| (until - now).num_milliseconds() as f64 / 1000.0);
    let hold = hold.filter(|hold| hold.until > now && burst_seconds_left.is_some());
    let until_resumed = until_resumed.filter(|_| burst_seconds_left.is_some());
    // The drain works toward the deadline only once the hold is over; one held until a
    // `resume` not at all, as no one knows when that comes.
    let working_seconds = burst_seconds_left.map(|left| {
        let held = hold.map_or(0.0, |hold| (hold.until - now).num_milliseconds() as f64 / 1000.0);
        if until_resumed.is_some() {
            0.0
        } else {
            left - held
        }
    });
    let finishes_before_burst_deadline = match (working_seconds, seconds_to_empty) {
        (Some(_), Some(needed)) if needed <= 0.0 => Some(true),
        // Held past the deadline: no item runs in this burst, estimate or not.
        (Some(working), _) if working <= 0.0 => Some(false),
        (Some(working), Some(needed)) => Some(needed <= working),
        _ => None,
    };
    Forecast {
        runs: history.runs,
        items_done: history.items_done,
        running_seconds: crate::duration::to_milliseconds(history.running_seconds),
        items_per_hour,
        backlog: backlog.max(0),
        seconds_to_empty,
        burst_seconds_left,
        finishes_before_burst_deadline,
        burst_held_until: if until_resumed.is_some() { None } else { hold.map(|hold| hold.until) },
        burst_held_by: until_resumed.or(hold.map(|hold| hold.reason)),
        held_past_burst_deadline: (until_resumed.is_some() || hold.is_some())
            && working_seconds.is_some_and(|working| working <= 0.0),
        burst_budget_days: None,
        burst_finishes_at: None,
        burst_left_at_deadline: None,
        burst_quota_pace: None,
        burst_quota_seconds: None,
        working_seconds,
    }
}

impl Forecast {
    /// During a burst of a drain paid from `budget`: the backlog may need several budget
    /// days, each stopping once its budget is spent, and finishes only if the last of
    /// them ends its work before the deadline (docs/operations.md, "Status").
    pub fn paid_from(mut self, budget: Option<DailyBudget>, now: DateTime<Utc>) -> Forecast {
        let (Some(budget), Some(left)) = (budget, self.burst_seconds_left) else {
            return self;
        };
        let until_resumed = self.burst_held_by.is_some() && self.burst_held_until.is_none();
        if self.backlog <= 0 || until_resumed {
            return self;
        }
        let start = self.burst_held_until.filter(|until| *until > now).unwrap_or(now);
        let deadline = now + chrono::Duration::milliseconds((left * 1000.0) as i64);
        // Without a rate the items are counted as taking no time: the budget days alone
        // can still tell that the backlog will not be paid for before the deadline.
        let per_item = self.seconds_to_empty.map_or(0.0, |needed| needed / self.backlog as f64);
        // A year on from the start at most: a backlog that needs more has no day count.
        let all = budget.work(self.backlog, per_item, start, start + chrono::Duration::days(366), now);
        if !all.held_back && all.left <= 0.0 {
            // The budget pays for every item as it comes: the forecast stands as it is.
            return self;
        }
        self.burst_budget_days = (all.left <= 0.0).then_some(all.days);
        if all.left > 0.0 || all.at > deadline {
            self.finishes_before_burst_deadline = Some(false);
            if self.seconds_to_empty.is_some() {
                self.burst_left_at_deadline =
                    Some(budget.work(self.backlog, per_item, start, deadline, now).left);
            }
        } else if self.seconds_to_empty.is_some() {
            self.burst_finishes_at = Some(all.at);
        }
        self
    }

    /// During a burst of a drain whose quota group kept `pace` lately: the backlog cannot
    /// empty faster than that pace, and the verdict says so when it is the slower
    /// (docs/operations.md, "Status").
    pub fn held_to(mut self, pace: Option<QuotaPace>) -> Forecast {
        let (Some(pace), Some(working)) = (pace, self.working_seconds) else {
            return self;
        };
        if self.backlog <= 0 {
            return self;
        }
        if pace.items_per_hour <= 0.0 {
            // Its drains finished nothing between its limits: the vendor lets none through.
            self.burst_quota_pace = Some(pace);
            self.finishes_before_burst_deadline = Some(false);
            return self;
        }
        // The group's drains in burst share its pace: this one's backlog waits behind
        // theirs as much as theirs behind its.
        let needed = self.backlog.max(pace.burst_backlog) as f64 * 3600.0 / pace.items_per_hour;
        if self.seconds_to_empty.is_some_and(|own| own >= needed) {
            return self;
        }
        self.burst_quota_pace = Some(pace);
        self.burst_quota_seconds = Some(needed);
        let in_time = needed <= working;
        self.finishes_before_burst_deadline =
            Some(self.finishes_before_burst_deadline.unwrap_or(true) && in_time);
        self
    }

    /// For humans: `~120 items/h over 3 runs; 42 left: ~21m of running`.
    pub fn describe(&self) -> String {
        let rate = match self.items_per_hour {
            Some(rate) => {
                format!("{} items/h over {}", round_rate(rate), crate::output::counted(self.runs, "run"))
            }
            None if self.runs == 0 => "no finished run in the last 24h".to_string(),
            // Runs that only waited (for a reset, for a higher-ranking drain): no rate.
            None => format!(
                "{} in the last 24h, none of their time running items",
                crate::output::counted(self.runs, "run")
            ),
        };
        match (self.backlog, self.seconds_to_empty) {
            (0, _) => format!("{rate}; backlog empty"),
            (backlog, Some(seconds)) => {
                format!("{rate}; {backlog} left: {} of running", approximately(seconds))
            }
            (backlog, None) => format!("{rate}; {backlog} left: no estimate"),
        }
    }

    /// During a burst with a verdict: `burst needs ~14h, 9h left: will not finish
    /// before the deadline`.
    pub fn describe_burst(&self) -> Option<String> {
        let (left, finishes) = (self.burst_seconds_left?, self.finishes_before_burst_deadline?);
        let needs = match (self.seconds_to_empty, self.burst_budget_days) {
            // At its quota group's pace: the line below says so.
            _ if self.burst_quota_seconds.is_some() => {
                format!("burst needs {}, ", approximately(self.burst_quota_seconds?))
            }
            _ if self.burst_quota_pace.is_some() => "burst: ".to_string(),
            (Some(needed), Some(days)) if days > 1 => {
                format!("burst needs {} over {days} budget days, ", approximately(needed))
            }
            (Some(needed), _) => format!("burst needs {}, ", approximately(needed)),
            (None, Some(days)) if days > 1 => format!("burst needs {days} budget days, "),
            (None, _) => "burst: ".to_string(),
        };
        // Held until an instant before the deadline (a backoff, a spent budget): the time
        // after it is what the verdict counts, and what is said; the line below names the
        // hold.
        let (left, to_work) = match self.working_seconds {
            Some(working) if self.burst_held_until.is_some() && working > 0.0 && working < left => {
                (working, " to work")
            }
            _ => (left, ""),
        };
        let left = crate::duration::format_duration(std::time::Duration::from_secs_f64(left.max(0.0)));
        Some(format!(
            "{needs}{left} left{to_work}: {}",
            if finishes { "finishes before the deadline" } else { "will not finish before the deadline" }
        ))
    }

    /// During a burst held to its quota group's pace ([`Forecast::held_to`]), that pace:
    /// `at the ~2.0 items/h its quota group kept between its 4 limit hits of the last 24h`
    /// (or that it finished none).
    pub fn describe_burst_pace(&self) -> Option<String> {
        let pace = self.burst_quota_pace?;
        if self.burst_quota_seconds.is_none() {
            return Some(format!(
                "its quota group finished no item between its {} limit hits of the last 24h",
                pace.hits
            ));
        }
        Some(format!(
            "at the {} items/h its quota group kept between its {} limit hits of the last 24h",
            round_rate(pace.items_per_hour),
            pace.hits
        ))
    }

    /// During a burst whose drain cannot work now, what holds it, with its end in `zone`:
    /// `its quota group backs off until Mon 2027-01-11 12:01 UTC, after the deadline`.
    pub fn describe_burst_hold(&self, zone: chrono_tz::Tz) -> Option<String> {
        let reason = self.burst_held_by?;
        // Held until a `resume`: no instant to name.
        let resume = match reason {
            HoldReason::Paused => Some("`drainctl resume`"),
            HoldReason::Parked => Some("`drainctl resume --group`"),
            HoldReason::Backoff | HoldReason::DailyBudget => None,
        };
        if let Some(resume) = resume {
            return Some(format!("{}: no pass starts it in this burst until {resume}", reason.what()));
        }
        let hold = Hold { until: self.burst_held_until?, reason }.describe(zone);
        Some(if self.held_past_burst_deadline {
            format!("{hold}, after the deadline")
        } else {
            format!("{hold}: the burst works from then")
        })
    }
}

/// A rate as people read it: `~0.4`, `~12`, `~120`. No item is `0`, and a rate that
/// would round to `0.0` is `<0.1`, not `~0.0`.
fn round_rate(rate: f64) -> String {
    if rate <= 0.0 {
        "0".to_string()
    } else if rate < 0.05 {
        "<0.1".to_string()
    } else if rate < 10.0 {
        format!("~{:.1}", rate)
    } else {
        format!("~{:.0}", rate)
    }
}

/// A rough length of time: `~50m`, `~1h 25m` (to 5 minutes), `~14h`, `~2d 5h`; under a
/// minute is `<1m`.
pub fn approximately(seconds: f64) -> String {
    if seconds < 60.0 {
        return "<1m".to_string();
    }
    let minutes = (seconds / 60.0).round() as u64;
    if minutes < 60 {
        return format!("~{minutes}m");
    }
    if minutes < 10 * 60 {
        let five = (seconds / 300.0).round() as u64 * 5;
        return match five % 60 {
            0 => format!("~{}h", five / 60),
            rest => format!("~{}h {rest}m", five / 60),
        };
    }
    let hours = (seconds / 3600.0).round() as u64;
    if hours < 48 {
        return format!("~{hours}h");
    }
    format!("~{}d {}h", hours / 24, hours % 24)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap()
    }

    #[test]
    fn throughput_is_per_hour_of_running_time() {
        // 30 items in 3 passes of 10 minutes: 60 items/h; 84 left: 1h24m of running.
        let history = RunHistory { runs: 3, items_done: 30, running_seconds: 1800.0 };
        let forecast = forecast(history, 84, 1, None, None, None, now());
        assert_eq!(forecast.items_per_hour, Some(60.0));
        assert_eq!(forecast.seconds_to_empty, Some(84.0 * 60.0));
        assert_eq!(forecast.finishes_before_burst_deadline, None);
        assert_eq!(forecast.describe(), "~60 items/h over 3 runs; 84 left: ~1h 25m of running");
        // Two passes at once halve it.
        assert_eq!(
            super::forecast(history, 84, 2, None, None, None, now()).seconds_to_empty,
            Some(42.0 * 60.0)
        );
    }

    #[test]
    fn a_rate_too_small_to_show_is_below_a_tenth_not_zero() {
        let slow = RunHistory { runs: 1, items_done: 1, running_seconds: 30.0 * 3600.0 };
        assert!(forecast(slow, 5, 1, None, None, None, now())
            .describe()
            .starts_with("<0.1 items/h over 1 run; 5 left: "));
        let none = RunHistory { runs: 1, items_done: 0, running_seconds: 3600.0 };
        assert!(forecast(none, 5, 1, None, None, None, now())
            .describe()
            .starts_with("0 items/h over 1 run; 5 left"));
        let some = RunHistory { runs: 2, items_done: 1, running_seconds: 7200.0 };
        assert!(forecast(some, 5, 1, None, None, None, now())
            .describe()
            .starts_with("~0.5 items/h over 2 runs"));
    }

    #[test]
    fn a_burst_is_compared_with_its_deadline() {
        let history = RunHistory { runs: 2, items_done: 10, running_seconds: 3600.0 };
        let deadline = now() + chrono::Duration::hours(9);
        let late = forecast(history, 140, 1, Some(deadline), None, None, now());
        assert_eq!(late.seconds_to_empty, Some(14.0 * 3600.0));
        assert_eq!(late.burst_seconds_left, Some(9.0 * 3600.0));
        assert_eq!(late.finishes_before_burst_deadline, Some(false));
        assert_eq!(
            late.describe_burst().as_deref(),
            Some("burst needs ~14h, 9h left: will not finish before the deadline")
        );
        let in_time = forecast(history, 50, 1, Some(deadline), None, None, now());
        assert_eq!(in_time.finishes_before_burst_deadline, Some(true));
        assert!(in_time.describe_burst().unwrap().ends_with("finishes before the deadline"));
        // A burst already over is no burst.
        let over = forecast(history, 50, 1, Some(now() - chrono::Duration::minutes(1)), None, None, now());
        assert_eq!((over.burst_seconds_left, over.finishes_before_burst_deadline), (None, None));
    }

    #[test]
    fn a_burst_counts_only_the_time_after_a_backoff_or_a_spent_daily_budget() {
        // 5 hours of work, 10 hours left before the deadline.
        let history = RunHistory { runs: 2, items_done: 10, running_seconds: 3600.0 };
        let deadline = now() + chrono::Duration::hours(10);
        let hold = |hours: i64, reason| Some(Hold { until: now() + chrono::Duration::hours(hours), reason });
        // A backoff past the deadline: nothing runs in this burst.
        let late = forecast(history, 50, 1, Some(deadline), hold(27, HoldReason::Backoff), None, now());
        assert_eq!(late.finishes_before_burst_deadline, Some(false));
        assert_eq!(
            (late.burst_held_until, late.burst_held_by),
            (Some(now() + chrono::Duration::hours(27)), Some(HoldReason::Backoff))
        );
        assert_eq!(
            late.describe_burst().as_deref(),
            Some("burst needs ~5h, 10h left: will not finish before the deadline")
        );
        assert_eq!(
            late.describe_burst_hold(chrono_tz::UTC).as_deref(),
            Some("its quota group backs off until Sat 2026-11-28 12:00 UTC, after the deadline")
        );
        // A spent budget until 3 hours before the deadline: 5 hours do not fit in 3.
        let budget = forecast(history, 50, 1, Some(deadline), hold(7, HoldReason::DailyBudget), None, now());
        assert_eq!(budget.finishes_before_burst_deadline, Some(false));
        assert_eq!(
            budget.describe_burst_hold(chrono_tz::UTC).as_deref(),
            Some("its daily budget is spent until Fri 2026-11-27 16:00 UTC: the burst works from then")
        );
        // A short backoff leaves time enough.
        let short = forecast(history, 50, 1, Some(deadline), hold(2, HoldReason::Backoff), None, now());
        assert_eq!(short.finishes_before_burst_deadline, Some(true));
        // Without an estimate, a hold past the deadline still says it will not finish.
        let unknown = forecast(
            RunHistory::default(),
            50,
            1,
            Some(deadline),
            hold(11, HoldReason::Backoff),
            None,
            now(),
        );
        assert_eq!(unknown.finishes_before_burst_deadline, Some(false));
        assert_eq!(
            unknown.describe_burst().as_deref(),
            Some("burst: 10h left: will not finish before the deadline")
        );
        assert_eq!(
            short.describe_burst_hold(chrono_tz::UTC).map(|text| text.ends_with("works from then")),
            Some(true)
        );
        // The later of the two holds counts; one already over does not.
        let backoff = now() + chrono::Duration::hours(3);
        let day_end = now() + chrono::Duration::hours(15);
        assert_eq!(
            Hold::latest(Some(backoff), Some(day_end), now()).map(|h| h.reason),
            Some(HoldReason::DailyBudget)
        );
        assert_eq!(Hold::latest(Some(now()), None, now()), None);
    }

    #[test]
    fn a_paused_drain_or_parked_group_in_burst_will_not_finish_however_fast_it_was() {
        // Minutes of work, 10 hours left: time enough, but nothing runs until `resume`.
        let history = RunHistory { runs: 2, items_done: 100, running_seconds: 60.0 };
        let deadline = now() + chrono::Duration::hours(10);
        let paused = forecast(history, 5, 1, Some(deadline), None, Some(HoldReason::Paused), now());
        assert_eq!(paused.finishes_before_burst_deadline, Some(false));
        assert_eq!((paused.burst_held_until, paused.burst_held_by), (None, Some(HoldReason::Paused)));
        assert_eq!(
            paused.describe_burst_hold(chrono_tz::UTC).as_deref(),
            Some("it is paused: no pass starts it in this burst until `drainctl resume`")
        );
        let parked =
            forecast(history, 5, 1, Some(deadline), None, HoldReason::until_resumed(false, true), now());
        assert_eq!(
            (parked.finishes_before_burst_deadline, parked.burst_held_by),
            (Some(false), Some(HoldReason::Parked))
        );
        assert_eq!(HoldReason::until_resumed(true, true), Some(HoldReason::Paused));
        assert_eq!(HoldReason::until_resumed(false, false), None);
        // An empty backlog is done, paused or not; out of a burst a pause holds no forecast.
        assert_eq!(
            forecast(history, 0, 1, Some(deadline), None, Some(HoldReason::Paused), now())
                .finishes_before_burst_deadline,
            Some(true)
        );
        let idle = forecast(history, 5, 1, None, None, Some(HoldReason::Paused), now());
        assert_eq!((idle.finishes_before_burst_deadline, idle.burst_held_by), (None, None));
        assert!(
            forecast(history, 5, 1, Some(deadline), None, None, now()).finishes_before_burst_deadline
                == Some(true)
        );
    }

    #[test]
    fn a_burst_is_held_to_its_quota_groups_pace_only_when_that_is_the_slower() {
        // 100 items/h of running; 20 left: 12 minutes; 5 hours left.
        let history = RunHistory { runs: 1, items_done: 10, running_seconds: 360.0 };
        let deadline = now() + chrono::Duration::hours(5);
        let own = forecast(history, 20, 1, Some(deadline), None, None, now());
        assert_eq!(own.finishes_before_burst_deadline, Some(true));
        // Two items an hour between its limits: 10 hours.
        let slow = own.clone().held_to(Some(QuotaPace { hits: 4, items_per_hour: 2.0, burst_backlog: 20 }));
        assert_eq!(
            (slow.finishes_before_burst_deadline, slow.burst_quota_seconds),
            (Some(false), Some(36000.0))
        );
        assert_eq!(
            slow.describe_burst().as_deref(),
            Some("burst needs ~10h, 5h left: will not finish before the deadline")
        );
        // Faster than its own rate: its own rate stands.
        let fast = own.clone().held_to(Some(QuotaPace { hits: 4, items_per_hour: 500.0, burst_backlog: 20 }));
        assert_eq!((fast.burst_quota_pace, fast.describe_burst_pace()), (None, None));
        // Nothing finished between its limits: it will not finish, and says why.
        // Another drain of the group in burst with 30 more: 50 items at 10 an hour, 5 h.
        let shared =
            own.clone().held_to(Some(QuotaPace { hits: 4, items_per_hour: 10.0, burst_backlog: 50 }));
        assert_eq!(
            (shared.finishes_before_burst_deadline, shared.burst_quota_seconds),
            (Some(true), Some(18000.0))
        );
        let none = own.held_to(Some(QuotaPace { hits: 3, items_per_hour: 0.0, burst_backlog: 20 }));
        assert_eq!(none.finishes_before_burst_deadline, Some(false));
        assert_eq!(
            none.describe_burst().as_deref(),
            Some("burst: 5h left: will not finish before the deadline")
        );
        assert_eq!(
            none.describe_burst_pace().as_deref(),
            Some("its quota group finished no item between its 3 limit hits of the last 24h")
        );
    }

    #[test]
    fn a_burst_paid_from_a_daily_budget_needs_the_budget_days_its_backlog_costs() {
        // One item a minute; 100 left: 1h 40m of running, two days before the deadline.
        let history = RunHistory { runs: 2, items_done: 120, running_seconds: 7200.0 };
        let deadline = now() + chrono::Duration::days(2);
        let budget = |max_usd: f64, spent_today_usd: f64| DailyBudget {
            max_usd,
            spent_today_usd,
            usd_per_item: 0.10,
            zone: chrono_tz::UTC,
        };
        let burst = || forecast(history, 100, 1, Some(deadline), None, None, now());
        assert_eq!(burst().finishes_before_burst_deadline, Some(true), "time alone is enough");
        // $1 a day pays 10 items; half of today's is spent: 5 today, then 10 a day.
        let poor = burst().paid_from(Some(budget(1.0, 0.5)), now());
        assert_eq!(poor.finishes_before_burst_deadline, Some(false));
        assert_eq!(poor.burst_budget_days, Some(11));
        // At the deadline (Sunday 09:00): 5 on Friday, 10 on Saturday, 10 on Sunday morning.
        assert_eq!(poor.burst_left_at_deadline, Some(75.0));
        assert_eq!(
            poor.describe_burst().as_deref(),
            Some("burst needs ~1h 40m over 11 budget days, 2d left: will not finish before the deadline")
        );
        // A budget that pays for every item as it comes changes nothing.
        assert_eq!(burst().paid_from(Some(budget(100.0, 0.0)), now()), burst());
        // Nor does one over days whose items run past midnight: time runs on, the budget
        // only limits starts. 400 items of 1000 s, 400,000 s before a deadline 400,800 s
        // away; and 2 items of 30 hours in a 5-day burst.
        let slow = |items: i64, seconds: f64, left: i64| {
            let history = RunHistory { runs: 1, items_done: 1, running_seconds: seconds };
            let deadline = now() + chrono::Duration::seconds(left);
            let plain = forecast(history, items, 1, Some(deadline), None, None, now());
            (plain.clone(), plain.paid_from(Some(budget(1_000_000.0, 0.0)), now()))
        };
        for (plain, paid) in [slow(400, 1000.0, 400_800), slow(2, 30.0 * 3600.0, 5 * 86_400)] {
            assert_eq!(plain.finishes_before_burst_deadline, Some(true));
            assert_eq!(paid, plain);
        }
        // Started an hour before midnight with 50 items' budget a day: 50 by 23:50, then
        // the rest from midnight, done at 00:50.
        let late = now() + chrono::Duration::hours(14);
        let night = forecast(history, 100, 1, Some(late + chrono::Duration::days(1)), None, None, late)
            .paid_from(Some(budget(5.0, 0.0)), late);
        assert_eq!((night.finishes_before_burst_deadline, night.burst_budget_days), (Some(true), Some(2)));
        assert_eq!(night.burst_finishes_at, Some(late + chrono::Duration::minutes(110)));
        // Without a rate, the budget days alone: 100 items at 10 a day cannot be paid in 2 days.
        let unknown = forecast(RunHistory::default(), 100, 1, Some(deadline), None, None, now())
            .paid_from(Some(budget(1.0, 0.5)), now());
        assert_eq!(
            (unknown.finishes_before_burst_deadline, unknown.burst_budget_days),
            (Some(false), Some(11))
        );
        assert_eq!(
            unknown.describe_burst().as_deref(),
            Some("burst needs 11 budget days, 2d left: will not finish before the deadline")
        );
        let few = forecast(RunHistory::default(), 3, 1, Some(deadline), None, None, now())
            .paid_from(Some(budget(1.0, 0.5)), now());
        // Three items today's budget pays for: nothing to say.
        assert_eq!((few.finishes_before_burst_deadline, few.burst_budget_days), (None, None));
        // Nothing to count by, or no burst: no change.
        assert_eq!(burst().paid_from(None, now()), burst());
        let idle = forecast(history, 100, 1, None, None, None, now());
        assert_eq!(idle.clone().paid_from(Some(budget(1.0, 0.5)), now()), idle);
        let sums = crate::db::usage::UsageSums {
            attempts: 6,
            cost_attempts: 4,
            cost_usd: Some(0.4),
            ..Default::default()
        };
        let of_drain = DailyBudget::of_drain(Some(1.0), Some(0.5), Some(&sums), chrono_tz::UTC);
        assert_eq!(of_drain, Some(budget(1.0, 0.5)));
        let no_cost = crate::db::usage::UsageSums { attempts: 4, ..Default::default() };
        assert_eq!(DailyBudget::of_drain(Some(1.0), Some(0.5), Some(&no_cost), chrono_tz::UTC), None);
        assert_eq!(DailyBudget::of_drain(None, Some(0.5), Some(&sums), chrono_tz::UTC), None);
    }

    #[test]
    fn without_history_or_progress_there_is_no_estimate_but_an_empty_backlog_is_done() {
        let none = forecast(RunHistory::default(), 5, 1, None, None, None, now());
        assert_eq!((none.items_per_hour, none.seconds_to_empty), (None, None));
        assert_eq!(none.describe(), "no finished run in the last 24h; 5 left: no estimate");
        let stuck = forecast(
            RunHistory { runs: 1, items_done: 0, running_seconds: 60.0 },
            5,
            1,
            None,
            None,
            None,
            now(),
        );
        assert_eq!((stuck.items_per_hour, stuck.seconds_to_empty), (Some(0.0), None));
        // Finished runs that only waited are not "no finished run". Before: they were.
        let waited = forecast(
            RunHistory { runs: 4, items_done: 10, running_seconds: 0.0 },
            4,
            1,
            None,
            None,
            None,
            now(),
        );
        assert_eq!(
            waited.describe(),
            "4 runs in the last 24h, none of their time running items; 4 left: no estimate"
        );
        let empty = forecast(RunHistory::default(), 0, 1, None, None, None, now());
        assert_eq!(empty.seconds_to_empty, Some(0.0));
    }

    #[test]
    fn lengths_are_rounded_for_reading() {
        assert_eq!(approximately(20.0), "<1m");
        assert_eq!(approximately(50.0 * 60.0), "~50m");
        assert_eq!(approximately(2.0 * 3600.0 + 100.0), "~2h");
        assert_eq!(approximately(13.6 * 3600.0), "~14h");
        assert_eq!(approximately(53.0 * 3600.0), "~2d 5h");
    }
}
