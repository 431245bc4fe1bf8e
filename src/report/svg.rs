//! The charts of the operations page, drawn as inline SVG: the burn-down of a drain's
//! backlog with the forecast line to its burst deadline, the timeline of its quota group's
//! hits and backoffs, and its cost per day. Each chart is an `<svg data-chart="KIND">`
//! whose every data point is one element with a `data-point` attribute (with its instant
//! or day and value), so a test — or a browser's DOM — can count them; hovering a point
//! shows its `<title>`. Every string is escaped; nothing is loaded.

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::html::escape;
use super::{Burndown, DayCost};
use crate::db::report::QuotaEvent;
use crate::output::local_time;

const WIDTH: f64 = 720.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 22.0;

/// A chart's plot area: instants map to x, values to y.
struct Frame {
    height: f64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    max: f64,
}

impl Frame {
    fn x(&self, at: DateTime<Utc>) -> f64 {
        let span = (self.end - self.start).num_milliseconds().max(1) as f64;
        let offset = (at - self.start).num_milliseconds() as f64;
        LEFT + (offset / span).clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        let bottom = self.height - BOTTOM;
        bottom - (value / self.max.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) * (bottom - TOP)
    }

    fn open(&self, out: &mut String, kind: &str, label: &str, points: usize) {
        let _ = write!(
            out,
            "<svg data-chart=\"{kind}\" data-points=\"{points}\" viewBox=\"0 0 {WIDTH} {h}\" \
             width=\"{WIDTH}\" height=\"{h}\" role=\"img\" aria-label=\"{label}\" \
             xmlns=\"http://www.w3.org/2000/svg\">",
            h = self.height,
            label = escape(label),
        );
    }

    /// A vertical line and label at every local midnight between start and end.
    fn day_ticks(&self, out: &mut String, zone: Tz) {
        let first = self.start.with_timezone(&zone).date_naive();
        let last = self.end.with_timezone(&zone).date_naive();
        let mut day = first;
        while day <= last {
            let midnight = super::local_midnight(day, zone);
            if midnight >= self.start && midnight <= self.end {
                let x = self.x(midnight);
                let _ = write!(
                    out,
                    "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{b}\"/>\
                     <text class=\"tick\" x=\"{tx:.1}\" y=\"{ty}\">{label}</text>",
                    b = self.height - BOTTOM,
                    tx = x + 3.0,
                    ty = self.height - 6.0,
                    label = escape(&day.format("%a %d").to_string()),
                );
            }
            let Some(next) = day.succ_opt() else { break };
            day = next;
        }
    }

    /// Horizontal lines with their values at 0, half and the top.
    fn value_ticks(&self, out: &mut String, format: impl Fn(f64) -> String) {
        for value in [0.0, self.max / 2.0, self.max] {
            let y = self.y(value);
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{x2}\" y2=\"{y:.1}\"/>\
                 <text class=\"tick value\" x=\"{tx}\" y=\"{ty:.1}\">{label}</text>",
                x2 = WIDTH - RIGHT,
                tx = LEFT - 6.0,
                ty = y + 4.0,
                label = escape(&format(value)),
            );
        }
    }

    /// A dashed vertical marker with a label in text row `row` from the top (now, a deadline).
    fn marker(
        &self,
        out: &mut String,
        class: &str,
        attribute: &str,
        at: DateTime<Utc>,
        label: &str,
        row: f64,
    ) {
        let x = self.x(at);
        let anchor = if x > WIDTH - 120.0 { "end" } else { "start" };
        let tx = if anchor == "end" { x - 4.0 } else { x + 4.0 };
        let _ = write!(
            out,
            "<line class=\"{class}\" {attribute} x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{b}\"/>\
             <text class=\"marker-label {class}\" x=\"{tx:.1}\" y=\"{ly}\" text-anchor=\"{anchor}\">{label}</text>",
            b = self.height - BOTTOM,
            ly = TOP + 10.0 + 13.0 * row,
            label = escape(label),
        );
    }
}

/// A round upper bound for a chart's values: 1, 2 or 5 times a power of ten.
fn nice_max(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|nice| *nice >= value)
        .unwrap_or(value)
}

/// A count as read on an axis: `0`, `12`, `2.5`.
fn count_label(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// Dollars as `status` writes them: four places below a dollar (`$0.0042`, `$0.3234`),
/// two above (`$12.30`).
pub(super) fn usd(value: f64) -> String {
    crate::db::usage::format_usd(value)
}

/// An axis's dollars, short enough for the margin left of the chart: `$1.5k`, `$2.0M`.
fn axis_usd(value: f64) -> String {
    match value.abs() {
        magnitude if magnitude >= 1e6 => format!("${:.1}M", value / 1e6),
        magnitude if magnitude >= 1e3 => format!("${:.1}k", value / 1e3),
        // A tick is a round value, or half of one ($0.025): as many places as it has, at
        // least two (before: $0.03 for $0.025, `<$0.0001` for $0.00005).
        _ => crate::db::usage::dollars(value, tick_places(value)),
    }
}

/// The places after the point a tick `value` below a thousand dollars needs to be shown
/// exactly: 2 to 8.
fn tick_places(value: f64) -> usize {
    (2..=8)
        .find(|&places| {
            let scaled = value.abs() * 10f64.powi(places);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(8) as usize
}

/// The backlog at every point of `burndown` as a line with one `data-point` circle per
/// point, "now", and during a burst the deadline and the forecast line from now to where
/// the backlog empties (or to the deadline, with what is left then).
pub(super) fn burndown(burndown: &Burndown, now: DateTime<Utc>, zone: Tz) -> String {
    let end = burndown.burst.as_ref().map_or(now, |burst| burst.deadline.max(now));
    let current = burndown.backlog.last().copied().unwrap_or(0) as f64;
    let highest = burndown.backlog.iter().copied().max().unwrap_or(0) as f64;
    let frame = Frame { height: 190.0, start: burndown.start, end, max: nice_max(highest.max(current)) };
    let mut out = String::new();
    frame.open(&mut out, "burndown", "backlog over the last days", burndown.backlog.len());
    frame.day_ticks(&mut out, zone);
    frame.value_ticks(&mut out, count_label);
    let points: Vec<(DateTime<Utc>, i64)> = burndown
        .backlog
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let at = burndown.start + chrono::Duration::seconds(burndown.step_seconds * index as i64);
            (at.min(now), *value)
        })
        .collect();
    let coordinates: Vec<String> = points
        .iter()
        .map(|(at, value)| format!("{:.1},{:.1}", frame.x(*at), frame.y(*value as f64)))
        .collect();
    if let (Some((first, _)), Some((last, _))) = (points.first(), points.last()) {
        let base = frame.y(0.0);
        let _ = write!(
            out,
            "<polygon class=\"area\" points=\"{:.1},{base:.1} {} {:.1},{base:.1}\"/>",
            frame.x(*first),
            coordinates.join(" "),
            frame.x(*last),
        );
    }
    let _ = write!(out, "<polyline class=\"backlog\" points=\"{}\"/>", coordinates.join(" "));
    frame.marker(&mut out, "now", "data-now", now, "now", 0.0);
    if let Some(burst) = &burndown.burst {
        let label = format!("deadline {}", local_time(burst.deadline, zone));
        frame.marker(&mut out, "deadline", "data-deadline", burst.deadline, &label, 1.0);
        if let Some(line) = burst.line {
            // Level while nothing can run (a backoff), then down.
            let (until, left) = (line.ends, line.left);
            let _ = write!(
                out,
                "<polyline class=\"forecast\" data-forecast data-starts=\"{}\" data-until=\"{}\" \
                 data-left=\"{left:.0}\" points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\"><title>{}</title></polyline>",
                line.starts.to_rfc3339(),
                until.to_rfc3339(),
                frame.x(now),
                frame.y(current),
                frame.x(line.starts.max(now)),
                frame.y(current),
                frame.x(until),
                frame.y(left),
                escape(&format!("forecast: {left:.0} left at {}", local_time(until, zone))),
            );
        }
    }
    for (at, value) in &points {
        let _ = write!(
            out,
            "<circle class=\"point\" data-point data-at=\"{}\" data-value=\"{value}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.2\">\
             <title>{}</title></circle>",
            at.to_rfc3339(),
            frame.x(*at),
            frame.y(*value as f64),
            escape(&format!("{value} waiting at {}", local_time(*at, zone))),
        );
    }
    out.push_str("</svg>");
    out
}

/// The quota hits of the last days on one lane from `start` to `now`: every hit one
/// `data-point` circle (`data-kind` says which), and each backoff it set a bar up to its
/// end (cut at now).
pub(super) fn timeline(events: &[QuotaEvent], start: DateTime<Utc>, now: DateTime<Utc>, zone: Tz) -> String {
    let backoff_until = |event: &QuotaEvent| {
        event
            .data
            .get("backoff_until")
            .and_then(|until| until.as_str())
            .and_then(|until| DateTime::parse_from_rfc3339(until).ok())
            .map(|until| until.with_timezone(&Utc))
            .filter(|until| *until > event.at)
    };
    // A backoff still under way is drawn up to its end: the chart runs on past now (to at
    // most 8 days, the longest reset trusted), with a "now" marker.
    let latest_end = events.iter().filter_map(backoff_until).max().unwrap_or(now);
    let end = latest_end.clamp(now, now + chrono::Duration::days(8));
    let frame = Frame { height: 74.0, start, end, max: 1.0 };
    let mut out = String::new();
    frame.open(&mut out, "timeline", "quota hits and backoffs over the last days", events.len());
    frame.day_ticks(&mut out, zone);
    let lane = TOP + (frame.height - BOTTOM - TOP) / 2.0;
    let _ = write!(
        out,
        "<line class=\"lane\" x1=\"{LEFT}\" y1=\"{lane:.1}\" x2=\"{x2}\" y2=\"{lane:.1}\"/>",
        x2 = WIDTH - RIGHT
    );
    if end > now {
        frame.marker(&mut out, "now", "data-now", now, "now", 0.0);
    }
    for event in events {
        if let Some(until) = backoff_until(event) {
            let (x1, x2) = (frame.x(event.at), frame.x(until.min(end)));
            let _ = write!(
                out,
                "<rect class=\"backoff\" data-backoff data-until=\"{}\" x=\"{x1:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\">\
                 <title>{}</title></rect>",
                until.to_rfc3339(),
                lane - 6.0,
                (x2 - x1).max(1.5),
                escape(&format!("backoff until {}", local_time(until, zone))),
            );
        }
    }
    for event in events {
        let drain = event.drain.as_deref().map(|drain| format!(" ({drain})")).unwrap_or_default();
        let _ = write!(
            out,
            "<circle class=\"hit {kind}\" data-point data-kind=\"{kind}\" data-at=\"{at}\" cx=\"{x:.1}\" cy=\"{lane:.1}\" r=\"4\">\
             <title>{title}</title></circle>",
            kind = escape(&event.kind),
            at = event.at.to_rfc3339(),
            x = frame.x(event.at),
            title = escape(&format!("{}{drain}: {}", local_time(event.at, zone), event.message)),
        );
    }
    out.push_str("</svg>");
    out
}

/// One bar per day on which the drain's workers reported a cost, each a `data-point`
/// with its day and sum; a day without a report has no bar (never a zero that was not
/// reported). None when no day has one.
pub(super) fn cost_per_day(days: &[(NaiveDate, Option<DayCost>)]) -> Option<String> {
    let reported: Vec<f64> = days.iter().filter_map(|(_, cost)| cost.map(|cost| cost.usd)).collect();
    if reported.is_empty() {
        return None;
    }
    let highest = reported.iter().copied().fold(0.0, f64::max);
    // Columns, not instants: the frame's time axis is unused.
    let frame = Frame {
        height: 150.0,
        start: DateTime::UNIX_EPOCH,
        end: DateTime::UNIX_EPOCH,
        max: nice_max(highest),
    };
    let mut out = String::new();
    frame.open(&mut out, "cost", "cost per day as the workers reported it", reported.len());
    frame.value_ticks(&mut out, axis_usd);
    let column = (WIDTH - LEFT - RIGHT) / days.len().max(1) as f64;
    for (index, (day, cost)) in days.iter().enumerate() {
        let x = LEFT + column * index as f64;
        let _ = write!(
            out,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x + column / 2.0,
            frame.height - 6.0,
            escape(&day.format("%a %d").to_string()),
        );
        let Some(cost) = cost else { continue };
        let top = frame.y(cost.usd);
        let _ = write!(
            out,
            "<rect class=\"cost\" data-point data-day=\"{day}\" data-usd=\"{usd}\" x=\"{:.1}\" y=\"{top:.1}\" \
             width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>\
             <text class=\"bar-label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x + column * 0.2,
            column * 0.6,
            (frame.y(0.0) - top).max(1.0),
            escape(&format!(
                "{day}: {} over {} attempt{} that reported a cost",
                usd(cost.usd),
                cost.attempts,
                if cost.attempts == 1 { "" } else { "s" }
            )),
            x + column / 2.0,
            top - 4.0,
            escape(&usd(cost.usd)),
            usd = cost.usd,
        );
    }
    out.push_str("</svg>");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn axes_end_on_round_values() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(0.42), 0.5);
        assert_eq!(usd(0.0042), "$0.0042");
        // As `status` says it (before: `$0.32`, where status said `$0.3234`).
        assert_eq!(usd(0.3234), "$0.3234");
        // A cost too small for four places is no zero; large ones are grouped, and the
        // axis keeps them short enough for its margin (before: `$2000.00`, its `$` cut off).
        assert_eq!(usd(1e-7), "<$0.0001");
        assert_eq!(usd(1534.2), "$1,534.20");
        assert_eq!(axis_usd(2000.0), "$2.0k");
        assert_eq!(axis_usd(1_000_002.44), "$1.0M");
        assert_eq!(axis_usd(0.5), "$0.50");
        // A half step is shown as it is (before: `$0.03` for $0.025, `<$0.0001` for
        // $0.00005).
        assert_eq!(axis_usd(0.025), "$0.025");
        assert_eq!(axis_usd(0.05), "$0.05");
        assert_eq!(axis_usd(0.00005), "$0.00005");
        assert_eq!(axis_usd(0.0), "$0.00");
        assert_eq!(axis_usd(250.0), "$250.00");
        assert_eq!(crate::db::usage::format_usd(1e-7), "<$0.0001");
        assert_eq!(crate::db::usage::format_usd(1_000_002.443), "$1,000,002.44");
        assert_eq!(crate::db::usage::format_usd(-0.5), "-$0.5000");
        assert_eq!(crate::db::usage::format_usd(0.0), "$0.0000");
        assert_eq!(usd(12.3), "$12.30");
    }

    #[test]
    fn the_burndown_has_a_point_per_step_and_the_forecast_line_to_the_deadline() {
        let now = at("2026-11-27T09:00:00Z");
        let chart = burndown(
            &Burndown {
                start: now - chrono::Duration::hours(4),
                step_seconds: 7200,
                backlog: vec![10, 8, 6],
                burst: Some(super::super::BurstForecast {
                    deadline: at("2026-11-27T18:00:00Z"),
                    line: Some(super::super::ForecastLine {
                        starts: at("2026-11-27T10:30:00Z"),
                        ends: at("2026-11-27T12:00:00Z"),
                        left: 0.0,
                    }),
                }),
            },
            now,
            chrono_tz::UTC,
        );
        assert!(chart.starts_with("<svg data-chart=\"burndown\" data-points=\"3\""), "{chart}");
        assert_eq!(chart.matches("data-point ").count(), 3);
        assert_eq!(chart.matches("data-forecast").count(), 1);
        // Level from now until the work can start, then down to where the backlog empties.
        assert!(chart.contains("data-starts=\"2026-11-27T10:30:00+00:00\""), "{chart}");
        assert!(chart.contains("data-until=\"2026-11-27T12:00:00+00:00\""), "{chart}");
        assert!(chart.contains("data-at=\"2026-11-27T09:00:00+00:00\" data-value=\"6\""), "{chart}");
        assert!(chart.contains("deadline Fri 2026-11-27 18:00 UTC"), "{chart}");
    }

    #[test]
    fn a_hostile_event_message_is_escaped_in_the_timeline() {
        let now = at("2026-11-27T09:00:00Z");
        let event = QuotaEvent {
            at: now - chrono::Duration::hours(1),
            kind: "backoff_set".to_string(),
            drain: Some("docs".to_string()),
            message: "limit </title><script>alert(\"x\")</script>".to_string(),
            data: serde_json::json!({ "backoff_until": "2026-11-27T10:00:00Z" }),
        };
        let chart = timeline(&[event], now - chrono::Duration::days(7), now, chrono_tz::UTC);
        assert!(!chart.contains("<script"), "{chart}");
        assert!(chart.contains("&lt;/title&gt;&lt;script&gt;alert(&quot;x&quot;)"), "{chart}");
        assert_eq!(chart.matches("data-point ").count(), 1);
        assert_eq!(chart.matches("data-backoff ").count(), 1);
    }

    #[test]
    fn a_backoff_under_way_is_drawn_to_its_end_past_now() {
        let now = at("2026-11-27T09:00:00Z");
        let event = |until: &str| QuotaEvent {
            at: now - chrono::Duration::hours(1),
            kind: "backoff_set".to_string(),
            drain: Some("docs".to_string()),
            message: "usage limit reached".to_string(),
            data: serde_json::json!({ "backoff_until": until }),
        };
        let width = |chart: &str| -> f64 {
            let rect = &chart[chart.find("data-backoff").unwrap_or(0)..];
            let value = rect.split("width=\"").nth(1).and_then(|rest| rest.split('"').next());
            value.and_then(|value| value.parse().ok()).unwrap_or(0.0)
        };
        // Until tomorrow: before, cut at now to a 1.5-pixel sliver.
        let chart =
            timeline(&[event("2026-11-28T09:00:00Z")], now - chrono::Duration::days(7), now, chrono_tz::UTC);
        assert!(width(&chart) > 50.0, "{chart}");
        assert_eq!(chart.matches(" data-now").count(), 1, "{chart}");
        // A backoff that ended: no marker, the chart ends now.
        let chart =
            timeline(&[event("2026-11-27T08:30:00Z")], now - chrono::Duration::days(7), now, chrono_tz::UTC);
        assert!(!chart.contains("data-now"), "{chart}");
    }

    #[test]
    fn cost_bars_only_for_days_that_reported_a_cost() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let days = [
            (day(25), None),
            (day(26), Some(DayCost { day: 1, usd: 0.25, picousd: 250_000_000_000, attempts: 2 })),
            (day(27), Some(DayCost { day: 2, usd: 1.5, picousd: 1_500_000_000_000, attempts: 1 })),
        ];
        let chart = cost_per_day(&days).unwrap();
        assert_eq!(chart.matches("data-point ").count(), 2);
        assert!(chart.contains("data-day=\"2026-11-26\" data-usd=\"0.25\""), "{chart}");
        assert!(chart.contains(">$1.50</text>"), "{chart}");
        assert_eq!(cost_per_day(&[(day(25), None)]), None, "no report, no chart");
    }
}
