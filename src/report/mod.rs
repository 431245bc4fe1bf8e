//! The operations page (docs/results.md#the-operations-page): one self-contained HTML file
//! that shows the state of every drain to someone who does not run `drainctl status` — its
//! backlog, burst and deadline, backoff and reset, a burn-down chart of the backlog over
//! the last [`HISTORY_DAYS`] days with the forecast line to the burst deadline, a timeline
//! of its quota group's hits and backoffs, what its workers reported their attempts cost
//! per day, the supervisor's heartbeat, and the quota groups with their accounts.
//!
//! [`render_page`] reads a [`Page`] — each drain as `status --json` shows it, so the page
//! and `status` never disagree, plus the bounded history queries of `db::report` — and
//! `html` renders it, with the charts drawn as inline SVG by `svg`. Nothing on the page
//! loads anything: no script, stylesheet, font or image from anywhere, and every string
//! from the configuration or the database is escaped. [`write_page`] replaces the file
//! atomically, owner-only. `drainctl report --html FILE` writes it on demand, and
//! `supervise`'s command rewrites `[defaults] report_html` after every pass that acted.
//! The page is drawn from `status`'s view, so this module sits with the commands
//! (docs/architecture.md).

mod html;
mod svg;

use std::path::Path;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use postgres::Client;

use crate::accounts::AccountState;
use crate::commands::status::DrainView;
use crate::config::Config;
use crate::db::report::{BacklogSpan, DayCost, QuotaEvent};
use crate::error::Result;
use crate::schedule::forecast::Forecast;
use crate::supervise::Heartbeat;

/// The page is the operator's: owner-only, like every other file drainctl writes.
pub const PAGE_MODE: u32 = 0o600;
/// How many days of history the charts show, ending now.
pub const HISTORY_DAYS: i64 = 7;
/// The burn-down chart has a point every this many seconds, and one now.
pub const BURNDOWN_STEP_SECONDS: i64 = 2 * 3600;
/// The timeline shows at most this many events per quota group (the newest).
pub const TIMELINE_LIMIT: i64 = 200;
/// The events the timeline shows: a hit that set a backoff, a hit charged as a failure,
/// a hit that parked the group.
pub const TIMELINE_KINDS: [&str; 4] =
    ["backoff_set", "quota_hit_charged", "quota_hit_refunded", "group_parked"];

/// Everything the page shows.
#[derive(Debug)]
pub(crate) struct Page {
    now: DateTime<Utc>,
    zone: Tz,
    supervisor: Heartbeat,
    drains: Vec<DrainPage>,
    /// Drains with work in the database and no `[[drain]]` table: nothing runs it.
    unconfigured: Vec<crate::commands::status::UnconfiguredDrain>,
    groups: Vec<GroupPage>,
}

/// One drain: its status, and the history its charts draw.
#[derive(Debug)]
struct DrainPage {
    status: DrainView,
    burndown: Burndown,
    /// The hits and backoffs of the drain's quota group, oldest first.
    quota_events: Vec<QuotaEvent>,
    /// The days of the cost chart, oldest first, each with what was reported that day.
    cost_days: Vec<(NaiveDate, Option<DayCost>)>,
    /// The tokens the workers reported over those days (0 when none), cost or not.
    tokens: i64,
}

/// The backlog at every step of the last days, and the forecast from now.
#[derive(Debug, Clone, PartialEq)]
struct Burndown {
    start: DateTime<Utc>,
    step_seconds: i64,
    /// Pending and running items at `start + k * step`; the last is now.
    backlog: Vec<i64>,
    /// During a burst: its deadline, and where the backlog stands on the forecast line.
    burst: Option<BurstForecast>,
}

#[derive(Debug, Clone, PartialEq)]
struct BurstForecast {
    deadline: DateTime<Utc>,
    /// The forecast line; None without an estimate.
    line: Option<ForecastLine>,
}

/// The forecast of a burst on the page: level from now until the work can start (the end
/// of a backoff), then down to when the backlog empties — or to the deadline, with what
/// is left then.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ForecastLine {
    starts: DateTime<Utc>,
    ends: DateTime<Utc>,
    left: f64,
}

/// A quota group with its accounts.
#[derive(Debug)]
struct GroupPage {
    name: String,
    drains: Vec<String>,
    parked: Option<(DateTime<Utc>, String)>,
    accounts: Vec<AccountPage>,
}

#[derive(Debug)]
struct AccountPage {
    /// Empty for the one implicit account of a group that declares none.
    name: String,
    /// `in-use`, `available`, `suspected` or `backing-off` (as `status` says).
    state: &'static str,
    backoff_until: Option<DateTime<Utc>>,
    reset_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    needs_attention: bool,
}

/// The whole page at `now`, as HTML.
pub(crate) fn render_page(client: &mut Client, config: &Config, now: DateTime<Utc>) -> Result<String> {
    let page = read_page(client, config, now)?;
    Ok(html::render(&page))
}

fn read_page(client: &mut Client, config: &Config, now: DateTime<Utc>) -> Result<Page> {
    let zone = config.defaults.timezone;
    let mut status = crate::commands::status::status_view(client, config, now)?;
    let unconfigured = std::mem::take(&mut status.unconfigured_drains);
    let names: Vec<String> = status.drains.iter().map(|drain| drain.drain.clone()).collect();
    let start = now - chrono::Duration::days(HISTORY_DAYS);
    let steps = (HISTORY_DAYS * 24 * 3600 / BURNDOWN_STEP_SECONDS) as usize;
    let mut spans = crate::db::report::backlog_spans(client, &names, start, BURNDOWN_STEP_SECONDS)?;
    let days = history_days(now, zone);
    let day_starts: Vec<DateTime<Utc>> = days
        .iter()
        .copied()
        .chain(days.last().and_then(|day| day.succ_opt()))
        .map(|day| local_midnight(day, zone))
        .collect();
    let mut costs = crate::db::report::cost_per_day(client, &names, &day_starts)?;
    let mut tokens = match (day_starts.first(), day_starts.last()) {
        (Some(first), Some(end)) => crate::db::report::tokens_between(client, &names, *first, *end)?,
        _ => std::collections::HashMap::new(),
    };
    let mut group_events = std::collections::HashMap::new();
    for group in &config.quota_groups {
        let events = crate::db::report::quota_events(
            client,
            &group.name,
            &TIMELINE_KINDS,
            start,
            now,
            TIMELINE_LIMIT,
        )?;
        group_events.insert(group.name.clone(), events);
    }
    let groups = read_groups(client, config, &status.drains, now)?;
    let drains = status
        .drains
        .into_iter()
        .map(|status| {
            let spans = spans.remove(&status.drain).unwrap_or_default();
            let backlog = backlog_points(&spans, steps);
            let burst = status.burst_until.filter(|until| *until > now).map(|deadline| BurstForecast {
                deadline,
                line: forecast_line(&status.forecast, now, deadline),
            });
            let costs = costs.remove(&status.drain).unwrap_or_default();
            let cost_days = days
                .iter()
                .enumerate()
                .map(|(index, day)| (*day, costs.iter().find(|cost| cost.day == index).copied()))
                .collect();
            DrainPage {
                tokens: tokens.remove(&status.drain).unwrap_or(0),
                quota_events: group_events.get(&status.quota_group).cloned().unwrap_or_default(),
                burndown: Burndown { start, step_seconds: BURNDOWN_STEP_SECONDS, backlog, burst },
                cost_days,
                status,
            }
        })
        .collect();
    Ok(Page { now, zone, supervisor: status.supervisor, drains, unconfigured, groups })
}

/// Every configured quota group with the drains in it and its accounts' backoffs.
fn read_groups(
    client: &mut Client,
    config: &Config,
    drains: &[DrainView],
    now: DateTime<Utc>,
) -> Result<Vec<GroupPage>> {
    let names: Vec<String> = config.quota_groups.iter().map(|group| group.name.clone()).collect();
    let rows = crate::db::backoffs::read_group_backoffs(client, &names)?;
    let parked = crate::db::quota_groups::read_parked(client, &names)?;
    Ok(config
        .quota_groups
        .iter()
        .map(|group| {
            let members: Vec<&DrainView> =
                drains.iter().filter(|drain| drain.quota_group == group.name).collect();
            let in_use = members.iter().find_map(|drain| drain.account.clone());
            let accounts = group.accounts.iter().map(|account| account.name.as_str());
            let accounts = crate::db::backoffs::rows_for_accounts(&rows, &group.name, accounts)
                .into_iter()
                .map(|row| {
                    let state = AccountState::of(&row, now);
                    let is_backing_off = state != AccountState::Usable;
                    let is_in_use =
                        !row.account.is_empty() && in_use.as_deref() == Some(row.account.as_str());
                    AccountPage {
                        state: if is_in_use { "in-use" } else { state.as_str() },
                        backoff_until: row.backoff_until.filter(|_| is_backing_off),
                        // A reset kept only for the doubt rule is not what the account waits for.
                        reset_at: row.reset_at.filter(|_| {
                            is_backing_off && row.rule == Some(crate::backoff::BackoffRule::ParsedReset)
                        }),
                        reason: row.reason.clone().filter(|_| is_backing_off),
                        needs_attention: row.needs_attention,
                        name: row.account,
                    }
                })
                .collect();
            GroupPage {
                name: group.name.clone(),
                drains: members.iter().map(|drain| drain.drain.clone()).collect(),
                parked: parked
                    .iter()
                    .find(|parked| parked.quota_group == group.name)
                    .map(|parked| (parked.parked_at, parked.reason.clone())),
                accounts,
            }
        })
        .collect())
}

/// The backlog at each of `steps + 1` points: an item counts from the point it entered
/// up to (not including) the point it left.
fn backlog_points(spans: &[BacklogSpan], steps: usize) -> Vec<i64> {
    (0..=steps as i64)
        .map(|point| {
            spans
                .iter()
                .filter(|span| span.entered <= point && span.left.is_none_or(|left| point < left))
                .map(|span| span.items)
                .sum()
        })
        .collect()
}

/// Where the forecast line from now ends during a burst: when the backlog empties at the
/// forecast's rate, if that is before `deadline`, else at the deadline with what is left
/// then. The drain works only from the end of the forecast's hold (a backoff, a spent
/// daily budget; docs/operations.md, "Status"): held past the deadline — or until a
/// `resume` (paused, its quota group parked) — the whole backlog is left, with an estimate
/// or without. Otherwise None without an estimate (no recent pass, or none that finished
/// an item).
fn forecast_line(forecast: &Forecast, now: DateTime<Utc>, deadline: DateTime<Utc>) -> Option<ForecastLine> {
    let backlog = forecast.backlog as f64;
    let starts = forecast.burst_held_until.filter(|until| *until > now).unwrap_or(now);
    let left = (deadline - starts).num_milliseconds() as f64 / 1000.0;
    if forecast.backlog > 0 && (left <= 0.0 || forecast.held_past_burst_deadline) {
        return Some(ForecastLine { starts: deadline, ends: deadline, left: backlog });
    }
    // Held to its quota group's pace, when that is the slower (see `Forecast::held_to`):
    // the budget's figures, reckoned at the drain's own rate, do not hold then. A group
    // that finished nothing between its limits finishes nothing in the burst.
    let held_to_pace = forecast.burst_quota_pace.is_some();
    if held_to_pace && forecast.burst_quota_seconds.is_none() && forecast.backlog > 0 {
        return Some(ForecastLine { starts: deadline, ends: deadline, left: backlog });
    }
    let needed = forecast.burst_quota_seconds.or(forecast.seconds_to_empty)?;
    Some(if needed <= 0.0 {
        ForecastLine { starts: now, ends: now, left: 0.0 }
    } else if let Some(ends) = forecast.burst_finishes_at.filter(|_| !held_to_pace) {
        // Paid from a daily budget: over the budget days it needs.
        ForecastLine { starts, ends, left: 0.0 }
    } else if let Some(left) = forecast.burst_left_at_deadline.filter(|_| !held_to_pace) {
        ForecastLine { starts, ends: deadline, left }
    } else if needed <= left {
        let empty_at = starts + chrono::Duration::milliseconds((needed * 1000.0) as i64);
        ForecastLine { starts, ends: empty_at, left: 0.0 }
    } else {
        ForecastLine { starts, ends: deadline, left: backlog * (1.0 - left / needed) }
    })
}

/// The [`HISTORY_DAYS`] days of the cost chart in `zone`, ending today.
fn history_days(now: DateTime<Utc>, zone: Tz) -> Vec<NaiveDate> {
    let today = now.with_timezone(&zone).date_naive();
    (0..HISTORY_DAYS)
        .rev()
        .filter_map(|back| today.checked_sub_days(chrono::Days::new(back as u64)))
        .collect()
}

/// When `day` starts in `zone`: its midnight, or the first instant of the day when
/// midnight falls into a daylight-saving gap.
fn local_midnight(day: NaiveDate, zone: Tz) -> DateTime<Utc> {
    (0..24)
        .find_map(|hour| day.and_hms_opt(hour, 0, 0).and_then(|at| zone.from_local_datetime(&at).earliest()))
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or_else(|| day.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// How the page is replaced (crate::atomic_file): owner-only.
const PAGE: crate::atomic_file::Target<'static> = crate::atomic_file::Target {
    what: "report page",
    named_by: "report --html or report_html",
    example: "drainctl.html",
    mode: PAGE_MODE,
};

/// Replace `path` with `html` atomically, owner-only, never through a link; a `path` that
/// exists and is not a regular file, or whose folder is missing, is refused with a
/// configuration error (exit 78) naming it.
pub(crate) fn write_page(path: &Path, html: &str) -> Result<()> {
    crate::atomic_file::replace(path, html.as_bytes(), &PAGE)
}

/// What [`write_page`] would refuse about `path`, without writing (for `doctor`).
pub fn check_page(path: &Path) -> Result<()> {
    crate::atomic_file::check(path, &PAGE).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn an_item_counts_from_the_point_it_entered_to_the_point_it_left() {
        let spans = [
            // Waiting since before the chart, still open.
            BacklogSpan { entered: 0, left: None, items: 3 },
            // Enqueued at point 1, finished at point 3.
            BacklogSpan { entered: 1, left: Some(3), items: 2 },
            // Waiting since before the chart, finished at point 2.
            BacklogSpan { entered: 0, left: Some(2), items: 1 },
            // Enqueued at point 4 (now), open.
            BacklogSpan { entered: 4, left: None, items: 5 },
        ];
        assert_eq!(backlog_points(&spans, 4), [4, 6, 5, 3, 8]);
        assert_eq!(backlog_points(&[], 2), [0, 0, 0]);
    }

    fn forecast(backlog: i64, seconds_to_empty: Option<f64>) -> Forecast {
        Forecast {
            runs: 1,
            items_done: 1,
            running_seconds: 60.0,
            items_per_hour: Some(60.0),
            backlog,
            seconds_to_empty,
            burst_seconds_left: None,
            finishes_before_burst_deadline: None,
            burst_held_until: None,
            burst_held_by: None,
            held_past_burst_deadline: false,
            burst_budget_days: None,
            burst_finishes_at: None,
            burst_left_at_deadline: None,
            burst_quota_pace: None,
            burst_quota_seconds: None,
            working_seconds: None,
        }
    }

    #[test]
    fn the_forecast_line_waits_out_a_backoff_and_ends_where_the_backlog_empties_or_at_the_deadline() {
        let now = at("2026-11-27T09:00:00Z");
        let deadline = at("2026-11-27T18:00:00Z");
        // 5 hours of work, 9 left: empty at 14:00.
        let line = |starts, ends, left| Some(ForecastLine { starts, ends, left });
        assert_eq!(
            forecast_line(&forecast(100, Some(5.0 * 3600.0)), now, deadline),
            line(now, at("2026-11-27T14:00:00Z"), 0.0)
        );
        // 18 hours of work, 9 left: half the backlog is left at the deadline.
        assert_eq!(
            forecast_line(&forecast(100, Some(18.0 * 3600.0)), now, deadline),
            line(now, deadline, 50.0)
        );
        assert_eq!(forecast_line(&forecast(100, None), now, deadline), None);
        // Backing off until 11:00: 5 hours of work from then, empty at 16:00.
        let held = Forecast {
            burst_held_until: Some(at("2026-11-27T11:00:00Z")),
            ..forecast(100, Some(5.0 * 3600.0))
        };
        // The line is level until 11:00: nothing runs during the backoff.
        assert_eq!(
            forecast_line(&held, now, deadline),
            line(at("2026-11-27T11:00:00Z"), at("2026-11-27T16:00:00Z"), 0.0)
        );
        // Backing off past the deadline: all of it is left then.
        let held = Forecast {
            burst_held_until: Some(at("2026-11-28T11:00:00Z")),
            ..forecast(100, Some(5.0 * 3600.0))
        };
        assert_eq!(forecast_line(&held, now, deadline), line(deadline, deadline, 100.0));
        // Paused (or its group parked): level to the deadline, all of it left, whatever
        // the rate says.
        let paused = Forecast {
            burst_held_by: Some(crate::schedule::forecast::HoldReason::Paused),
            held_past_burst_deadline: true,
            ..forecast(100, Some(5.0 * 3600.0))
        };
        assert_eq!(forecast_line(&paused, now, deadline), line(deadline, deadline, 100.0));
        // Paused before it ever ran: no rate, and still nothing runs in this burst.
        let never_ran = Forecast { seconds_to_empty: None, ..paused };
        assert_eq!(forecast_line(&never_ran, now, deadline), line(deadline, deadline, 100.0));
        // Paid from a daily budget: where its budget days leave it, not the straight rate.
        let poor = Forecast { burst_left_at_deadline: Some(70.0), ..forecast(100, Some(5.0 * 3600.0)) };
        assert_eq!(forecast_line(&poor, now, deadline), line(now, deadline, 70.0));
        let paid = Forecast {
            burst_finishes_at: Some(at("2026-11-27T17:00:00Z")),
            ..forecast(100, Some(5.0 * 3600.0))
        };
        assert_eq!(forecast_line(&paid, now, deadline), line(now, at("2026-11-27T17:00:00Z"), 0.0));
    }

    #[test]
    fn the_cost_days_are_the_last_seven_local_days_from_their_midnight() {
        let zone: Tz = "America/New_York".parse().unwrap();
        // 03:00 UTC on the 27th is still the 26th in New York.
        let days = history_days(at("2026-11-27T03:00:00Z"), zone);
        assert_eq!(days.len(), 7);
        assert_eq!(days.first().unwrap().to_string(), "2026-11-20");
        assert_eq!(days.last().unwrap().to_string(), "2026-11-26");
        assert_eq!(local_midnight(*days.last().unwrap(), zone), at("2026-11-26T05:00:00Z"));
        // Midnight that does not exist (Santiago springs forward at 00:00) is the day's first hour.
        let santiago: Tz = "America/Santiago".parse().unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        assert_eq!(local_midnight(day, santiago), at("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn the_page_is_replaced_whole_and_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drainctl.html");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_page(&path, "<!doctype html>").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "<!doctype html>");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["drainctl.html"], "no temporary file is left");
        let link = dir.path().join("link.html");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let error = write_page(&link, "x").unwrap_err();
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("is a symbolic link"), "{error}");
        let error = write_page(&dir.path().join("missing/drainctl.html"), "x").unwrap_err();
        assert_eq!(error.exit_code(), 78);
        assert!(error.to_string().contains("does not exist"), "{error}");
    }
}
