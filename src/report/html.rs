//! The operations page as one HTML document: a style sheet in the page, the charts of
//! `svg` inline, no script, and a Content-Security-Policy that lets the page load
//! nothing at all — a browser opens it from disk, offline, as it is. Every string from
//! the configuration or the database goes through [`escape`].

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{svg, DrainPage, GroupPage, Page, HISTORY_DAYS};
use crate::duration::format_relative;
use crate::output::{escape_controls, local_time};

/// `text` as HTML text or attribute value: control and bidirectional characters shown as
/// escapes (as on a terminal), then `& < > " '` as character references.
pub(super) fn escape(text: &str) -> String {
    let shown = escape_controls(text);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// No script, no style sheet, font or image from anywhere: only the page's own style.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

const STYLE: &str = "
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6676; --line: #d8dee8; --card: #ffffff;
  --bg: #f3f5f8; --accent: #2f6fde; --warn: #c7621a; --bad: #c42b3b; --good: #24844a; }
* { box-sizing: border-box; }
body { margin: 0; padding: 20px 28px 40px; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 18px; margin-bottom: 14px; }
h1 { font-size: 20px; margin: 0; }
h2 { font-size: 17px; margin: 0; display: flex; align-items: center; gap: 10px; }
h3 { font-size: 13px; margin: 16px 0 4px; color: var(--muted); font-weight: 600;
  text-transform: uppercase; letter-spacing: .04em; }
.muted { color: var(--muted); }
.heartbeat { padding: 3px 10px; border-radius: 12px; background: #e3f3e8; color: var(--good); }
.heartbeat.late { background: #fbe4e6; color: var(--bad); font-weight: 600; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px;
  margin: 0 0 16px; max-width: 780px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 10px 0 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.state { font-size: 12px; font-weight: 600; padding: 2px 8px; border-radius: 10px; background: #e8ecf2; }
.state-running, .state-burst { background: #e1ecfd; color: var(--accent); }
.state-backing-off, .state-out-of-window { background: #fdf0e2; color: var(--warn); }
.state-hung, .state-parked, .state-paused, .state-unconfigured { background: #fbe4e6; color: var(--bad); }
.late-forecast { color: var(--bad); font-weight: 600; }
.on-time { color: var(--good); font-weight: 600; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font-size: 11px; fill: var(--muted); }
svg .value { text-anchor: end; }
svg .grid { stroke: #e6eaf0; stroke-width: 1; }
svg .area { fill: #2f6fde; fill-opacity: .10; stroke: none; }
svg .backlog { fill: none; stroke: var(--accent); stroke-width: 2; }
svg .point { fill: var(--accent); }
svg .now { stroke: var(--muted); stroke-dasharray: 2 3; }
svg .deadline { stroke: var(--bad); stroke-width: 1.5; stroke-dasharray: 5 3; }
svg text.deadline { fill: var(--bad); stroke: none; }
svg text.now { fill: var(--muted); stroke: none; }
svg .forecast { fill: none; stroke: var(--warn); stroke-width: 2; stroke-dasharray: 6 4; }
svg .lane { stroke: var(--line); stroke-width: 1; }
svg .backoff { fill: var(--warn); fill-opacity: .25; }
svg .hit { fill: var(--warn); stroke: #fff; stroke-width: 1; }
svg .hit.group_parked { fill: var(--bad); }
svg .hit.quota_hit_charged { fill: #7a4bc4; }
svg .hit.quota_hit_refunded { fill: #fff; stroke: #7a4bc4; stroke-width: 2; }
svg .cost { fill: var(--good); fill-opacity: .8; }
svg .bar-label { fill: var(--ink); }
footer { margin-top: 24px; font-size: 12px; color: var(--muted); }
";

/// The whole document.
pub(super) fn render(page: &Page) -> String {
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ =
        writeln!(out, "<meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"generator\" content=\"drainctl\">\n");
    let _ = writeln!(out, "<title>drainctl: {}</title>", crate::output::counted(page.drains.len(), "drain"));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    header(&mut out, page);
    summary(&mut out, page);
    for drain in &page.drains {
        drain_section(&mut out, page, drain);
    }
    groups(&mut out, page);
    let _ = writeln!(
        out,
        "<footer>Written by drainctl {} at {}. Times are in {}. The page loads nothing and \
         runs no script; it is rewritten by every supervise pass when report_html is set.</footer>",
        env!("CARGO_PKG_VERSION"),
        escape(&local_time(page.now, page.zone)),
        escape(page.zone.name()),
    );
    out.push_str("</body>\n</html>\n");
    out
}

/// An instant with how far it is from now: `Sat 2026-11-28 18:00 CET (in 8h)`.
fn when(at: DateTime<Utc>, page: &Page) -> String {
    format!("{} ({})", local_time(at, page.zone), format_relative(at - page.now))
}

fn header(out: &mut String, page: &Page) {
    let heartbeat = &page.supervisor;
    let _ = writeln!(
        out,
        "<header><h1>drainctl operations</h1><span class=\"muted\" data-now=\"{}\">{}</span>\
         <span class=\"heartbeat{}\" data-heartbeat data-late=\"{}\">{}</span></header>",
        page.now.to_rfc3339(),
        escape(&local_time(page.now, page.zone)),
        if heartbeat.is_late { " late" } else { "" },
        heartbeat.is_late,
        escape(&heartbeat.describe(page.now, page.zone)),
    );
}

/// One row per drain: state and backlog at a glance.
fn summary(out: &mut String, page: &Page) {
    out.push_str(
        "<section class=\"card\" data-summary><table><thead><tr><th>drain</th><th>state</th>\
         <th>pending</th><th>running</th><th>done</th><th>dead</th><th>quota group</th></tr></thead><tbody>\n",
    );
    for drain in &page.drains {
        let status = &drain.status;
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#drain-{name}\">{name}</a></td><td><span class=\"state state-{state}\">{state}</span></td>\
             <td class=\"number\">{}</td><td class=\"number\">{}</td><td class=\"number\">{}</td>\
             <td class=\"number\">{}</td><td>{}</td></tr>",
            status.counts.pending,
            status.counts.running,
            status.counts.done,
            status.counts.dead,
            escape(&status.quota_group),
            name = escape(&status.drain),
            state = escape(status.state),
        );
    }
    out.push_str("</tbody></table></section>\n");
    unconfigured(out, page);
}

/// The drains with work in the database and no `[[drain]]` table, as `status` names them:
/// nothing runs their items.
fn unconfigured(out: &mut String, page: &Page) {
    if page.unconfigured.is_empty() {
        return;
    }
    out.push_str("<section class=\"card\" data-unconfigured><h2>Not configured</h2><ul>\n");
    for drain in &page.unconfigured {
        let _ = writeln!(
            out,
            "<li data-drain=\"{}\"><span class=\"state state-unconfigured\">unconfigured</span> {}</li>",
            escape(&drain.drain),
            escape(&drain.describe()),
        );
    }
    out.push_str("</ul></section>\n");
}

fn drain_section(out: &mut String, page: &Page, drain: &DrainPage) {
    let status = &drain.status;
    let name = escape(&status.drain);
    let _ = writeln!(
        out,
        "<section class=\"card drain\" id=\"drain-{name}\" data-drain=\"{name}\">\
         <h2>{name} <span class=\"state state-{state}\" data-state=\"{state}\">{state}</span></h2>",
        state = escape(status.state),
    );
    out.push_str("<dl>");
    for (term, definition) in facts(page, drain) {
        let _ = write!(out, "<dt>{}</dt><dd>{definition}</dd>", escape(term));
    }
    out.push_str("</dl>\n");
    let _ = writeln!(out, "<h3>Backlog, last {HISTORY_DAYS} days</h3>");
    out.push_str(&svg::burndown(&drain.burndown, page.now, page.zone));
    let _ = writeln!(out, "\n<h3>Quota hits and backoffs of group {}</h3>", escape(&status.quota_group));
    if drain.quota_events.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"muted\" data-no-chart=\"timeline\">No quota hit in the last {HISTORY_DAYS} days.</p>"
        );
    } else {
        out.push_str(&svg::timeline(&drain.quota_events, drain.burndown.start, page.now, page.zone));
    }
    out.push_str("\n<h3>Cost per day</h3>\n");
    // The chart's days are local calendar days, today the seventh: not the 168 hours of
    // `status`'s "last 7d", so the page says which (docs/results.md).
    let since = drain
        .cost_days
        .first()
        .map(|(day, _)| format!("in the {HISTORY_DAYS} days since {}", day.format("%a %-d %b")))
        .unwrap_or_else(|| format!("in the last {HISTORY_DAYS} days"));
    match svg::cost_per_day(&drain.cost_days) {
        Some(chart) => {
            // Added up in pico-dollars, as the database adds each day: exact.
            let total = drain
                .cost_days
                .iter()
                .filter_map(|(_, cost)| cost.map(|cost| cost.picousd))
                .fold(0i128, i128::saturating_add);
            let _ = writeln!(
                out,
                "<p class=\"muted\" data-cost-total=\"{}\">{} {since}, as the workers reported it.</p>",
                exact_usd(total),
                escape(&svg::usd(total as f64 / crate::usage::PICOUSD_PER_USD as f64)),
            );
            out.push_str(&chart);
        }
        // Workers that report tokens and no price (codex, gemini): the page never guesses
        // a cost, but says they reported usage (docs/results.md).
        None if drain.tokens > 0 => {
            let _ = writeln!(
                out,
                "<p class=\"muted\" data-no-chart=\"cost\" data-tokens=\"{tokens}\">No cost reported by the workers \
                 (tokens only: {} tokens {since}).</p>",
                crate::db::usage::group_digits(drain.tokens),
                tokens = drain.tokens,
            );
        }
        None => {
            let _ = writeln!(
                out,
                "<p class=\"muted\" data-no-chart=\"cost\">No usage reported by the workers {since}.</p>"
            );
        }
    }
    out.push_str("</section>\n");
}

/// The facts of a drain, each already HTML: backlog, burst and deadline, backoff and
/// reset, waiting, pause, park, window, last run and forecast.
fn facts(page: &Page, drain: &DrainPage) -> Vec<(&'static str, String)> {
    let status = &drain.status;
    let counts = &status.counts;
    let mut facts = vec![(
        "backlog",
        format!(
            "{} pending, {} running <span class=\"muted\">({} done, {} dead{})</span>",
            counts.pending,
            counts.running,
            counts.done,
            counts.dead,
            if counts.skipped_missing > 0 {
                format!(", {} skipped", counts.skipped_missing)
            } else {
                String::new()
            },
        ),
    )];
    if let Some(until) = status.burst_until.filter(|until| *until > page.now) {
        let note = status.burst_note.as_deref().map(|note| format!(": {}", escape(note))).unwrap_or_default();
        let verdict = match status.forecast.finishes_before_burst_deadline {
            Some(true) => " <span class=\"on-time\">finishes before the deadline</span>".to_string(),
            Some(false) => {
                " <span class=\"late-forecast\">will not finish before the deadline</span>".to_string()
            }
            None => String::new(),
        };
        facts.push(("burst", format!("until {}{note}{verdict}", escape(&when(until, page)))));
    }
    if let Some(until) = status.backoff_until {
        let reason = status
            .backoff_reason
            .as_deref()
            .map(|reason| format!(": {}", escape(reason)))
            .unwrap_or_default();
        facts.push(("backoff", format!("until {}{reason}", escape(&when(until, page)))));
    }
    let group = page.groups.iter().find(|group| group.name == status.quota_group);
    let resets: Vec<String> = group
        .into_iter()
        .flat_map(|group| &group.accounts)
        .filter_map(|account| account.reset_at.map(|reset| (account, reset)))
        .map(|(account, reset)| {
            let whose = if account.name.is_empty() { String::new() } else { format!(" ({})", account.name) };
            escape(&format!("{}{whose}", when(reset, page)))
        })
        .collect();
    if !resets.is_empty() {
        facts.push(("reset", resets.join("; ")));
    }
    if let Some(until) = status.waiting_until {
        let what = if status.is_waiting_for_servers { "the vendor's servers" } else { "the reset" };
        facts.push(("waiting", format!("a pass waits for {what} until {}", escape(&when(until, page)))));
    }
    if let Some(at) = status.parked_at {
        let reason = status.parked_reason.as_deref().unwrap_or_default();
        facts.push((
            "parked",
            format!(
                "since {}: {}; <code>drainctl resume {}</code>",
                escape(&when(at, page)),
                escape(reason),
                escape(&crate::commands::items::group_option(&status.quota_group))
            ),
        ));
    }
    if status.state == "paused" {
        facts.push(("paused", escape(status.pause_note.as_deref().unwrap_or("(no note)"))));
    }
    if let Some(spent) = status.daily_budget_spent(page.zone) {
        // No pass starts it before the budget's day ends (docs/results.md).
        facts.push(("budget", escape(&format!("{spent}: no pass starts it before then"))));
    }
    if let Some(window) = &status.window {
        let opens = status
            .next_window_opening
            .map(|at| format!(", opens {}", escape(&when(at, page))))
            .unwrap_or_default();
        facts.push(("window", format!("{}{opens}", escape(window))));
    }
    if let Some(run) = &status.last_run {
        let at = run.finished_at.unwrap_or(run.started_at);
        facts.push((
            "last run",
            escape(&format!(
                "#{} {} {}: {}",
                run.id,
                run.status,
                format_relative(at - page.now),
                crate::output::run_outcome(run.items_done, run.items_failed)
            )),
        ));
    }
    let mut forecast = escape(&status.forecast.describe());
    if let Some(burst) = status.forecast.describe_burst() {
        let _ = write!(forecast, "; {}", escape(&burst));
    }
    if let Some(pace) = status.forecast.describe_burst_pace() {
        let _ = write!(forecast, " {}", escape(&pace));
    }
    if let Some(hold) = status.forecast.describe_burst_hold(page.zone) {
        let _ = write!(forecast, "; {}", escape(&hold));
    }
    facts.push(("forecast", forecast));
    facts
}

/// Pico-dollars as an exact decimal number of dollars: `3.6`, `0.000000000001`, `12`.
fn exact_usd(picousd: i128) -> String {
    let unit = crate::usage::PICOUSD_PER_USD;
    let sign = if picousd < 0 { "-" } else { "" };
    let (whole, fraction) = (picousd.unsigned_abs() / unit as u128, picousd.unsigned_abs() % unit as u128);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let fraction = format!("{fraction:012}");
    format!("{sign}{whole}.{}", fraction.trim_end_matches('0'))
}

/// Every quota group with its drains and accounts.
fn groups(out: &mut String, page: &Page) {
    out.push_str(
        "<section class=\"card\" data-groups><h2>Quota groups</h2><table><thead><tr><th>group</th>\
         <th>drains</th><th>account</th><th>state</th><th>backoff until</th><th>reset</th><th>reason</th></tr></thead><tbody>\n",
    );
    for group in &page.groups {
        group_rows(out, page, group);
    }
    out.push_str("</tbody></table></section>\n");
}

fn group_rows(out: &mut String, page: &Page, group: &GroupPage) {
    let drains = escape(&group.drains.join(", "));
    for account in &group.accounts {
        let name = if account.name.is_empty() { "(one account)".to_string() } else { escape(&account.name) };
        let state = match &group.parked {
            Some(_) => "parked",
            None => account.state,
        };
        let attention = if account.needs_attention { " (needs attention)" } else { "" };
        let reason = match &group.parked {
            Some((at, reason)) => format!("parked since {}: {reason}", when(*at, page)),
            None => account.reason.clone().unwrap_or_default(),
        };
        let _ = writeln!(
            out,
            "<tr data-group=\"{}\" data-account=\"{}\"><td>{}</td><td>{drains}</td><td>{name}</td>\
             <td><span class=\"state state-{state}\">{state}</span>{attention}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&group.name),
            escape(&account.name),
            escape(&group.name),
            account.backoff_until.map(|at| escape(&when(at, page))).unwrap_or_else(|| "-".to_string()),
            account.reset_at.map(|at| escape(&when(at, page))).unwrap_or_else(|| "-".to_string()),
            escape(&reason),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_quotes_and_controls_are_escaped() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("a\r\nb\u{202e}c"), "a\\r\\nb\\u{202e}c");
    }

    #[test]
    fn costs_are_written_exactly() {
        assert_eq!(exact_usd(9 * 400_000_000_000), "3.6");
        assert_eq!(exact_usd(1), "0.000000000001");
        assert_eq!(exact_usd(12_000_000_000_000), "12");
        assert_eq!(exact_usd(0), "0");
    }
}
