//! What a worker's own output says its attempt cost (docs/results.md): the usage report of
//! `claude -p --output-format json` (or `stream-json`'s final `result` line), of `codex
//! exec --json` (its last `turn.completed`) and of `gemini --output-format json` (`stats`)
//! or `stream-json` (its `result` line's `stats`).
//!
//! [`read_usage`] is pure: it reads the bytes the worker printed on stdout and returns
//! what they state, or `None` when they state nothing. A field the client does not report
//! stays `None` — drainctl never estimates a price or a token count. The token kinds never
//! overlap: `input` is input not read from a cache (codex and gemini count cached input
//! inside their input figure, so the cached part is subtracted), `cache_read` is input read
//! from a cache, `cache_write` input written to one (Claude only), `output` everything
//! generated (gemini's thoughts included).

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

pub use crate::db::usage::Usage;

/// The most one attempt is taken to have cost, in US dollars: a larger reported figure is
/// counted as this much (docs/results.md), so that it stops every budget without
/// overflowing the totals.
pub const MAX_REPORTED_COST_USD: f64 = 1_000_000.0;
/// The most tokens of one kind (and API milliseconds) one attempt is taken to have used.
pub const MAX_REPORTED_COUNT: i64 = 1_000_000_000_000;
/// Pico-dollars in a dollar: the unit a pass adds its costs up in.
pub const PICOUSD_PER_USD: i128 = 1_000_000_000_000;

/// `usd` in whole pico-dollars.
pub fn usd_to_picousd(usd: f64) -> i128 {
    (usd * PICOUSD_PER_USD as f64).round() as i128
}

/// The usage the worker's stdout reports, if it reports any, each figure at most its
/// ceiling; a figure set aside is warned of, `whose` naming the attempt (`drain d: item k`).
pub fn read_usage(stdout: &[u8], whose: &str) -> Option<Usage> {
    let mut usage = reported_usage(stdout)?;
    if let Some(cost) = usage.cost_usd.filter(|cost| *cost < 0.0) {
        log::warn!(
            "{whose}: the worker reported a negative cost (${cost}); the attempt's cost is left out (recorded as none)"
        );
        usage.cost_usd = None;
    }
    let capped = usage.clone().within_ceilings();
    if capped != usage {
        log::warn!("{whose}: the worker reported usage beyond what one attempt can use ({usage}); counted as {capped}");
    }
    // A report of a negative cost alone reports nothing.
    Some(capped).filter(Usage::is_reported)
}

impl Usage {
    /// Each figure at most its ceiling ([`MAX_REPORTED_COST_USD`], [`MAX_REPORTED_COUNT`]).
    fn within_ceilings(self) -> Usage {
        let count = |value: Option<i64>| value.map(|value| value.min(MAX_REPORTED_COUNT));
        Usage {
            cost_usd: self.cost_usd.map(|cost| cost.min(MAX_REPORTED_COST_USD)),
            input_tokens: count(self.input_tokens),
            output_tokens: count(self.output_tokens),
            cache_read_tokens: count(self.cache_read_tokens),
            cache_write_tokens: count(self.cache_write_tokens),
            turns: self.turns,
            api_ms: count(self.api_ms),
        }
    }

    /// `cost_usd` in whole pico-dollars (10⁻¹² $): every price a client states, to the
    /// digit, so that costs add up exactly (ten times $0.10 is $1.00).
    pub fn cost_picousd(&self) -> i128 {
        self.cost_usd.map_or(0, usd_to_picousd)
    }
}

fn reported_usage(stdout: &[u8]) -> Option<Usage> {
    let text = String::from_utf8_lossy(stdout);
    let trimmed = text.trim();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        // One JSON document: claude's `json` (an object, or an array of every message
        // with `--verbose`), gemini's `json` (pretty-printed over many lines).
        if let Ok(document) = serde_json::from_str::<Value>(trimmed) {
            if let Some(usage) = from_document(&document) {
                return Some(usage);
            }
        }
    }
    if let Some(usage) = from_lines(trimmed) {
        return Some(usage);
    }
    // One document with whatever a wrapper printed after it.
    if let Some(document) = crate::quota::first_json_value(trimmed) {
        if let Some(usage) = from_document(&document) {
            return Some(usage);
        }
    }
    // A JSON document after lines of text: gemini prints `Loaded cached credentials.` on
    // stdout before its pretty-printed answer. Only gemini's answer, as it opens: a text
    // answer quoting a client's one-line result is no report of this attempt's usage.
    let document_start = trimmed
        .match_indices('\n')
        .map(|(at, _)| at + 1)
        .find(|&at| trimmed[at..].trim_start_matches([' ', '\t', '\r']).starts_with('{'))?;
    let document = trimmed[document_start..].trim();
    if !crate::quota::is_json_output(document) {
        return None;
    }
    from_document(&crate::quota::first_json_value(document)?)
}

/// Whether `line` is the first line a client's JSON-lines stream prints: claude's
/// `system` `init`, gemini's `init`, codex's `thread.started`.
fn opens_a_stream(line: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|value| {
        matches!(value.get("type").and_then(Value::as_str), Some("system" | "init" | "thread.started"))
    })
}

/// A whole-output JSON document of claude or gemini.
fn from_document(document: &Value) -> Option<Usage> {
    match document {
        Value::Array(messages) => {
            messages.iter().rev().find(|message| is_claude_result(message)).and_then(claude)
        }
        Value::Object(_) if is_claude_result(document) => claude(document),
        Value::Object(object) => object.get("stats").and_then(gemini),
        _ => None,
    }
}

/// JSON lines: claude's `stream-json` (the last `result` line) or codex's `exec --json`
/// (the last `turn.completed`, whose usage is the thread's total so far).
fn from_lines(text: &str) -> Option<Usage> {
    // A stream is all a client prints on stdout, but for a notice before it (gemini's
    // `Loaded cached credentials.`): text before a result line that opens no stream is a
    // text answer quoting a client's line (a transcript it summarised), no report.
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    if lines.next().is_some_and(|first| !first.starts_with('{')) {
        let first_json = lines.find(|line| line.starts_with('{'))?;
        if !opens_a_stream(first_json) {
            return None;
        }
    }
    let mut last_codex: Option<Value> = None;
    let mut codex_turns: i32 = 0;
    let mut last_claude: Option<Value> = None;
    let mut last_gemini: Option<Value> = None;
    for line in text.lines().map(str::trim).filter(|line| line.starts_with('{')) {
        // Only lines that name a type worth reading are parsed whole.
        if !line.contains("\"result\"") && !line.contains("\"turn.completed\"") {
            continue;
        }
        let Ok(value) = serde_json::from_str::<Value>(line) else { continue };
        match value.get("type").and_then(Value::as_str) {
            Some("turn.completed") => {
                codex_turns = codex_turns.saturating_add(1);
                last_codex = Some(value);
            }
            Some("result") if is_claude_result(&value) => last_claude = Some(value),
            Some("result") if value.get("stats").is_some() => last_gemini = Some(value),
            _ => {}
        }
    }
    if let Some(result) = last_claude {
        return claude(&result);
    }
    if let Some(result) = last_gemini {
        return gemini_stream(result.get("stats")?);
    }
    let completed = last_codex?;
    codex(completed.get("usage")?, codex_turns)
}

/// A claude `result` message that carries usage figures.
fn is_claude_result(value: &Value) -> bool {
    value.get("type").and_then(Value::as_str) == Some("result")
        && (value.get("usage").is_some() || value.get("total_cost_usd").is_some())
}

fn claude(result: &Value) -> Option<Usage> {
    let usage = result.get("usage");
    let tokens = |name: &str| usage.and_then(|usage| count(usage.get(name)));
    let reported = Usage {
        cost_usd: result.get("total_cost_usd").and_then(|cost| match cost {
            // A figure too large for a double (`1e400`), which serde_json does not
            // give as one, reads as infinite: counted at the ceiling, as any other
            // too large. A negative one is left out by `read_usage`, with a warning.
            Value::Number(number) => number.as_f64().or_else(|| number.to_string().parse::<f64>().ok()),
            _ => None,
        }),
        input_tokens: tokens("input_tokens"),
        output_tokens: tokens("output_tokens"),
        cache_read_tokens: tokens("cache_read_input_tokens"),
        cache_write_tokens: tokens("cache_creation_input_tokens"),
        turns: count(result.get("num_turns")).and_then(|turns| i32::try_from(turns).ok()),
        api_ms: count(result.get("duration_api_ms")),
    };
    reported.is_reported().then_some(reported)
}

fn codex(usage: &Value, turns: i32) -> Option<Usage> {
    let input = count(usage.get("input_tokens"));
    let cached = count(usage.get("cached_input_tokens"));
    let reported = Usage {
        // codex counts cached input inside `input_tokens`.
        input_tokens: input.map(|input| input.saturating_sub(cached.unwrap_or(0)).max(0)),
        output_tokens: count(usage.get("output_tokens")),
        cache_read_tokens: cached,
        turns: Some(turns),
        ..Usage::default()
    };
    (reported.input_tokens.is_some() || reported.output_tokens.is_some()).then_some(reported)
}

/// gemini's `stats`: per model, `tokens` (`prompt` includes `cached`; `tool` is the
/// tool-use prompt, `thoughts` generated reasoning) and `api.totalLatencyMs`, summed.
fn gemini(stats: &Value) -> Option<Usage> {
    let models = stats.get("models")?.as_object()?;
    if models.is_empty() {
        return None;
    }
    let mut usage = Usage::default();
    let add = |total: &mut Option<i64>, value: Option<i64>| {
        if let Some(value) = value {
            *total = Some(total.unwrap_or(0).saturating_add(value));
        }
    };
    for model in models.values() {
        let tokens = model.get("tokens");
        let token = |name: &str| tokens.and_then(|tokens| count(tokens.get(name)));
        let (prompt, cached, tool) = (token("prompt"), token("cached"), token("tool"));
        let input = prompt.map(|prompt| {
            prompt.saturating_sub(cached.unwrap_or(0)).max(0).saturating_add(tool.unwrap_or(0))
        });
        add(&mut usage.input_tokens, input);
        add(&mut usage.cache_read_tokens, cached);
        let output = match (token("candidates"), token("thoughts")) {
            (None, None) => None,
            (candidates, thoughts) => Some(candidates.unwrap_or(0).saturating_add(thoughts.unwrap_or(0))),
        };
        add(&mut usage.output_tokens, output);
        add(&mut usage.api_ms, model.get("api").and_then(|api| count(api.get("totalLatencyMs"))));
    }
    usage.is_reported().then_some(usage)
}

/// gemini's `stream-json` `result` line: `stats` totals over the models —
/// `input_tokens` (the prompt, cached input included), `cached`, `input` (the prompt not
/// read from a cache), `output_tokens` (the answer alone) and `total_tokens` (also its
/// thoughts and tool-use prompt, which the line does not tell apart). So `output` is
/// everything the total holds beyond the prompt, and the kinds still add up to the total.
fn gemini_stream(stats: &Value) -> Option<Usage> {
    let (prompt, cached) = (count(stats.get("input_tokens")), count(stats.get("cached")));
    let input = count(stats.get("input"))
        .or_else(|| prompt.map(|prompt| prompt.saturating_sub(cached.unwrap_or(0)).max(0)));
    let output = match (count(stats.get("total_tokens")), prompt) {
        (Some(total), Some(prompt)) => Some(total.saturating_sub(prompt).max(0)),
        _ => count(stats.get("output_tokens")),
    };
    let usage =
        Usage { input_tokens: input, output_tokens: output, cache_read_tokens: cached, ..Usage::default() };
    usage.is_reported().then_some(usage)
}

/// A non-negative whole number, else nothing.
fn count(value: Option<&Value>) -> Option<i64> {
    let value = value?;
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && f.is_finite()).map(|f| f as i64))
        .filter(|n| *n >= 0)
}

/// The day a daily budget counts (`max_cost_per_day`): from midnight to midnight in
/// `zone` (`[defaults] timezone`). Returns the day's start and the next day's start.
pub fn budget_day(now: DateTime<Utc>, zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let date = now.with_timezone(&zone).date_naive();
    let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
    (start_of(date, zone, now), start_of(next, zone, now + chrono::Duration::days(1)))
}

/// A daily budget spent: `max_cost_per_day` and what today's attempts cost, when they
/// reached it (none without a budget or a cost).
pub fn spent_budget(max_cost_per_day: Option<f64>, cost_today: Option<f64>) -> Option<(f64, f64)> {
    max_cost_per_day.zip(cost_today).filter(|(max, spent)| spent >= max)
}

/// The first instant of `date` in `zone`: its midnight, or (in a zone whose clocks skip
/// midnight for summer time) the first hour after it that exists.
fn start_of(date: NaiveDate, zone: Tz, fallback: DateTime<Utc>) -> DateTime<Utc> {
    (0..=3)
        .filter_map(|hour| NaiveTime::from_hms_opt(hour, 0, 0))
        .find_map(|time| zone.from_local_datetime(&date.and_time(time)).earliest())
        .map(|at| at.with_timezone(&Utc))
        .unwrap_or(fallback)
}

/// The `budget_reached` event of a cost budget: which one, its limit, what was spent and,
/// for a daily one, the day it counts.
pub fn budget_event(
    drain: &crate::config::DrainConfig,
    budget: &str,
    max_usd: f64,
    spent_usd: f64,
    note: &str,
    day: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> crate::db::events::Event {
    crate::db::events::Event::new(
        crate::model::EventKind::BudgetReached,
        format!("drain {}: {note}", drain.name),
    )
    .drain(&drain.name)
    .data(serde_json::json!({
        "budget": budget,
        "max_usd": max_usd,
        "spent_usd": spent_usd,
        "day_start": day.map(|(start, _)| start),
        "day_end": day.map(|(_, end)| end),
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde::Deserialize;

    use super::*;

    /// `meta.toml` of a folder in tests/fixtures/usage/: the client, how it was run, and
    /// what drainctl must read from its `stdout` (absent: nothing).
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Meta {
        client: String,
        version: String,
        mode: String,
        exit_code: i32,
        cost_usd: Option<f64>,
        input_tokens: Option<i64>,
        output_tokens: Option<i64>,
        cache_read_tokens: Option<i64>,
        cache_write_tokens: Option<i64>,
        turns: Option<i32>,
        api_ms: Option<i64>,
        /// The client's own total of tokens, when it states one: the kinds add up to it.
        total_tokens: Option<i64>,
    }

    #[test]
    fn a_figure_beyond_what_one_attempt_can_use_is_counted_at_its_ceiling() {
        // Beyond these, the totals (bigint micro-dollars and tokens) would overflow and
        // fail the record of the attempt, so the item would run again on every pass.
        let stdout = br#"{"type":"result","total_cost_usd":1e300,"num_turns":2,
            "usage":{"input_tokens":9223372036854775807,"output_tokens":1e30,"cache_read_input_tokens":7}}"#;
        let usage = read_usage(stdout, "test").unwrap();
        assert_eq!(usage.cost_usd, Some(MAX_REPORTED_COST_USD));
        assert_eq!(usage.input_tokens, Some(MAX_REPORTED_COUNT));
        assert_eq!(usage.output_tokens, Some(MAX_REPORTED_COUNT));
        assert_eq!((usage.cache_read_tokens, usage.turns), (Some(7), Some(2)));
        assert_eq!(usage.cost_picousd(), 1_000_000 * PICOUSD_PER_USD);
        // Beyond a double's range it is counted at the ceiling too, not left out.
        let usage =
            read_usage(br#"{"type":"result","total_cost_usd":1e400,"usage":{"input_tokens":10}}"#, "test")
                .unwrap();
        assert_eq!((usage.cost_usd, usage.input_tokens), (Some(MAX_REPORTED_COST_USD), Some(10)));
        // The warning says what was reported in words, not `cost $inf`.
        let reported = Usage { cost_usd: Some(f64::INFINITY), ..Usage::default() };
        assert_eq!(reported.to_string(), "cost beyond any number");
        let reported = Usage { cost_usd: Some(1e300), turns: Some(1), ..Usage::default() };
        assert_eq!(reported.to_string(), "cost $1e300, 1 turn");
        // A negative cost alone is no report at all.
        assert_eq!(read_usage(br#"{"type":"result","total_cost_usd":-2}"#, "test"), None);
    }

    #[test]
    fn a_json_answer_with_a_wrappers_line_after_it_keeps_its_usage() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-clients");
        let whole = std::fs::read(dir.join("gemini-json-success/stdout")).unwrap();
        let alone = read_usage(&whole, "test");
        assert!(alone.is_some());
        let mut wrapped = whole.clone();
        wrapped.extend_from_slice(b"\nwrapper: done\n");
        // Before: none, the document no longer being the whole output.
        assert_eq!(read_usage(&wrapped, "test"), alone);
        // Result lines: the last one's, as before.
        let two = br#"{"type":"result","is_error":false,"result":"first try","total_cost_usd":0.5,"usage":{"input_tokens":100,"output_tokens":10}}
{"type":"result","is_error":false,"result":"second try","total_cost_usd":0.25,"usage":{"input_tokens":50,"output_tokens":5}}"#;
        assert_eq!(read_usage(two, "test").and_then(|usage| usage.cost_usd), Some(0.25));
    }

    #[test]
    fn costs_add_up_in_pico_dollars_without_a_rounding_shortfall() {
        let tenth = Usage { cost_usd: Some(0.1), ..Usage::default() };
        let total: i128 = (0..10).map(|_| tenth.cost_picousd()).sum();
        assert_eq!(total, usd_to_picousd(1.0), "ten times $0.10 is $1.00, not $0.9999999999999999");
        let claude = Usage { cost_usd: Some(0.03617865), ..Usage::default() };
        assert_eq!(claude.cost_picousd() * 2, 72_357_300_000);
        assert_eq!(Usage::default().cost_picousd(), 0);
    }

    #[test]
    fn every_usage_fixture_reads_as_its_client_reported() {
        let all = crate::fixtures::folders("usage");
        assert!(all.len() >= 7, "only {} fixtures", all.len());
        for dir in all {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let meta: Meta = toml::from_str(&std::fs::read_to_string(dir.join("meta.toml")).unwrap())
                .unwrap_or_else(|error| panic!("{name}/meta.toml: {error}"));
            assert!(!meta.client.is_empty() && !meta.version.is_empty() && !meta.mode.is_empty(), "{name}");
            let expected = Usage {
                cost_usd: meta.cost_usd,
                input_tokens: meta.input_tokens,
                output_tokens: meta.output_tokens,
                cache_read_tokens: meta.cache_read_tokens,
                cache_write_tokens: meta.cache_write_tokens,
                turns: meta.turns,
                api_ms: meta.api_ms,
            };
            let read = read_usage(&std::fs::read(dir.join("stdout")).unwrap(), "test");
            let expected = expected.is_reported().then_some(expected);
            assert_eq!(read, expected, "{name} ({} {}, exit {})", meta.client, meta.mode, meta.exit_code);
            if let (Some(total), Some(read)) = (meta.total_tokens, &read) {
                let kinds =
                    [read.input_tokens, read.output_tokens, read.cache_read_tokens, read.cache_write_tokens];
                assert_eq!(
                    kinds.iter().flatten().sum::<i64>(),
                    total,
                    "{name}: the kinds add up to the total"
                );
            }
        }
    }

    #[test]
    fn the_real_clients_limit_and_text_captures_report_no_usage() {
        // The real clients' successes are usage fixtures (`real-*`); their limit answers and
        // text mode, captured beside them (tests/fixtures/real-clients/), report nothing.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real-clients");
        let read = |name: &str| match std::fs::read(root.join(name).join("stdout")) {
            Ok(stdout) => read_usage(&stdout, "test"),
            Err(error) => panic!("fixture {name}: {error}"),
        };
        for name in ["codex-json-server-503", "claude-text-subscription-limit", "claude-text-success"] {
            assert_eq!(read(name), None, "{name}");
        }
    }

    #[test]
    fn output_without_usage_reports_nothing() {
        for text in [
            "",
            "plain text result\n",
            "{\"summary\": \"a JSON result of the item itself\"}",
            "[1, 2, 3]",
            "{\"type\":\"result\",\"result\":\"no usage figures\"}",
            "{\"stats\": {\"models\": {}}}",
            "{\"type\":\"turn.completed\"}\n",
        ] {
            assert_eq!(read_usage(text.as_bytes(), "test"), None, "{text:?}");
        }
        // Bytes that are not UTF-8 are no usage either, and do not fail.
        assert_eq!(read_usage(&[0xff, 0xfe, 0x00, 0x80], "test"), None);
    }

    #[test]
    fn a_text_answer_quoting_a_clients_line_reports_no_usage() {
        // A summary of a session transcript quotes its last event: no report of this
        // attempt's usage, in the middle of the answer or at its end.
        let claude = r#"{"type":"result","subtype":"success","is_error":false,"total_cost_usd":12.5,"usage":{"input_tokens":4000,"output_tokens":900}}"#;
        let codex = r#"{"type":"turn.completed","usage":{"input_tokens":900000,"cached_input_tokens":0,"output_tokens":10}}"#;
        let gemini = r#"{"type":"result","status":"success","stats":{"total_tokens":50,"input_tokens":40,"output_tokens":10,"cached":0,"input":40}}"#;
        for line in [claude, codex, gemini] {
            for text in [
                format!("Summary of session 17: all good.\nLast event in the transcript:\n{line}\nNo further action needed.\n"),
                format!("Last event in the transcript:\n{line}\n"),
            ] {
                assert_eq!(read_usage(text.as_bytes(), "test"), None, "{text}");
            }
            // The line as a client's own output, or with a wrapper's line after it, is.
            assert!(read_usage(line.as_bytes(), "test").is_some(), "{line}");
            assert!(read_usage(format!("{line}\nwrapper: done\n").as_bytes(), "test").is_some(), "{line}");
        }
        // A notice before a stream that opens as a client's does keeps the stream's usage.
        let stream = format!("{{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"s\"}}\n{claude}\n");
        assert!(read_usage(format!("Loaded cached credentials.\n{stream}").as_bytes(), "test").is_some());
    }

    #[test]
    fn nonsense_figures_are_left_out_not_guessed() {
        let usage = read_usage(
            br#"{"type":"result","total_cost_usd":-1,"num_turns":"3","usage":{"input_tokens":-5,"output_tokens":7}}"#,
            "test",
        )
        .unwrap();
        assert_eq!(usage, Usage { output_tokens: Some(7), ..Usage::default() });
    }

    #[test]
    fn the_budget_day_runs_from_midnight_to_midnight_in_the_zone() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
        let warsaw = chrono_tz::Europe::Warsaw;
        // 23:30 UTC on 27 November is already 28 November in Warsaw (UTC+1).
        assert_eq!(
            budget_day(at("2026-11-27T23:30:00Z"), warsaw),
            (at("2026-11-27T23:00:00Z"), at("2026-11-28T23:00:00Z"))
        );
        // The day summer time starts has 23 hours.
        assert_eq!(
            budget_day(at("2026-03-29T12:00:00Z"), warsaw),
            (at("2026-03-28T23:00:00Z"), at("2026-03-29T22:00:00Z"))
        );
        // Where clocks skip midnight itself, the day starts at the first hour that exists.
        let santiago = chrono_tz::America::Santiago;
        let (start, _) = budget_day(at("2026-09-06T12:00:00Z"), santiago);
        assert_eq!(start, at("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn the_cost_is_written_as_the_exact_decimal() {
        let usage = Usage { cost_usd: Some(0.03617865), ..Usage::default() };
        assert_eq!(usage.cost_text().as_deref(), Some("0.03617865"));
        let tiny = Usage { cost_usd: Some(1e-9), ..Usage::default() };
        assert_eq!(tiny.cost_text().as_deref(), Some("0.000000001"));
    }
}
