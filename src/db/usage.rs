//! The usage columns of `attempts` (migrations/0008_usage.sql): what each attempt's
//! worker reported it used, recorded when the worker exits, and the sums `status`, `runs
//! show`, `export` and the budgets read (docs/results.md). A sum counts only attempts that
//! reported something; a sum of nothing is NULL, never 0.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde::Serialize;

use crate::error::Result;

/// What one attempt's worker reported it used. Every field is `None` when the output did
/// not report it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// US dollars, as the client states them (Claude only).
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    /// Agent turns (Claude's `num_turns`, codex's `turn.completed` lines).
    pub turns: Option<i32>,
    /// Time spent in the vendor's API, in milliseconds.
    pub api_ms: Option<i64>,
}

impl std::fmt::Display for Usage {
    /// The figures reported, as a log line says them: `cost $1e300, input 10 tokens`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(cost) = self.cost_usd {
            // A figure too large for a double reads as infinite.
            parts.push(if cost.is_finite() && cost.abs() >= 1e15 {
                // Not a 301-digit number for `1e300`.
                format!("cost ${cost:e}")
            } else if cost.is_finite() {
                format!("cost ${cost}")
            } else {
                "cost beyond any number".to_string()
            });
        }
        for (name, value) in [
            ("input", self.input_tokens),
            ("output", self.output_tokens),
            ("cache read", self.cache_read_tokens),
            ("cache write", self.cache_write_tokens),
        ] {
            if let Some(value) = value {
                parts.push(format!("{name} {value} {}", if value == 1 { "token" } else { "tokens" }));
            }
        }
        if let Some(turns) = self.turns {
            parts.push(crate::output::counted(turns, "turn"));
        }
        if let Some(ms) = self.api_ms {
            parts.push(format!("{ms} ms in the API"));
        }
        f.write_str(&parts.join(", "))
    }
}

impl Usage {
    /// Whether any figure was reported.
    pub fn is_reported(&self) -> bool {
        *self != Usage::default()
    }

    /// `cost_usd` as the text PostgreSQL's `numeric` reads exactly: the shortest decimal
    /// that is the same number (`0.03617865`, never `3.617865e-2` rounded).
    pub fn cost_text(&self) -> Option<String> {
        self.cost_usd.map(|cost| cost.to_string())
    }
}

/// Record what the worker of `item_id`'s latest attempt by `run_id` reported, whether that
/// attempt is still open or already closed (a failed, hit or released one costs too). The
/// counters `cost_microusd_total` and `tokens_total` follow by trigger.
pub fn record_usage(
    client: &mut impl GenericClient,
    item_id: i64,
    run_id: i64,
    usage: &Usage,
    now: DateTime<Utc>,
) -> Result<()> {
    let cost = usage.cost_text();
    client.execute(
        "UPDATE attempts SET cost_usd = $3::text::numeric, input_tokens = $4, output_tokens = $5,
                cache_read_tokens = $6, cache_write_tokens = $7, turns = $8, api_ms = $9,
                usage_at = $10
          WHERE id = (SELECT max(id) FROM attempts WHERE item_id = $1 AND run_id = $2)",
        &[
            &item_id,
            &run_id,
            &cost,
            &usage.input_tokens,
            &usage.output_tokens,
            &usage.cache_read_tokens,
            &usage.cache_write_tokens,
            &usage.turns,
            &usage.api_ms,
            &now,
        ],
    )?;
    Ok(())
}

/// Sums over attempts that reported usage. A field is null when none of them reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageSums {
    /// Attempts that reported any usage.
    pub attempts: i64,
    /// Of those, attempts that reported a cost: what `cost_usd` is spread over.
    #[serde(skip)]
    pub cost_attempts: i64,
    pub cost_usd: Option<f64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
}

impl UsageSums {
    /// Add `other` to these sums (null plus null stays null).
    pub fn add(&mut self, other: &UsageSums) {
        fn plus<T: std::ops::Add<Output = T> + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            }
        }
        self.attempts += other.attempts;
        self.cost_attempts += other.cost_attempts;
        // Each sum is exact to the pico-dollar (the database adds numerics): so is theirs,
        // not a float's 0.33199999999999996 for 0.3 and 0.032.
        self.cost_usd = plus(self.cost_usd, other.cost_usd).map(to_the_pico_dollar);
        self.input_tokens = plus(self.input_tokens, other.input_tokens);
        self.output_tokens = plus(self.output_tokens, other.output_tokens);
        self.cache_read_tokens = plus(self.cache_read_tokens, other.cache_read_tokens);
        self.cache_write_tokens = plus(self.cache_write_tokens, other.cache_write_tokens);
    }

    /// These sums as `--json` gives them: null when no attempt reported usage.
    pub fn to_json(&self) -> serde_json::Value {
        if self.attempts == 0 {
            return serde_json::Value::Null;
        }
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// `$0.1566 · 230,107 tokens (38 in, 2,849 out, 209,457 cache read, 13,833 cache
    /// write) over 2 attempts`, or none when nothing was reported.
    pub fn describe(&self) -> Option<String> {
        if self.attempts == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if let Some(cost) = self.cost_usd {
            parts.push(format_usd(cost));
        }
        let kinds: Vec<String> = [
            (self.input_tokens, "in"),
            (self.output_tokens, "out"),
            (self.cache_read_tokens, "cache read"),
            (self.cache_write_tokens, "cache write"),
        ]
        .iter()
        .filter_map(|(count, kind)| count.map(|count| format!("{} {kind}", group_digits(count))))
        .collect();
        if !kinds.is_empty() {
            let total: i64 =
                [self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens]
                    .iter()
                    .flatten()
                    .sum();
            let noun = if total == 1 { "token" } else { "tokens" };
            parts.push(format!("{} {noun} ({})", group_digits(total), kinds.join(", ")));
        }
        let mut attempts = if self.attempts == 1 { "attempt".to_string() } else { "attempts".to_string() };
        // The page counts the attempts behind a cost only: say how many those are.
        if self.cost_usd.is_some() && self.cost_attempts < self.attempts {
            attempts.push_str(&format!(" ({} with a cost)", group_digits(self.cost_attempts)));
        }
        Some(format!("{} over {} {attempts}", parts.join(" · "), self.attempts))
    }
}

/// `usd`, a sum of two exact figures, to the pico-dollar — or, from $1,000 on, to the
/// places a float's 15 digits hold (88461.837135, not 88461.83713500001).
fn to_the_pico_dollar(usd: f64) -> f64 {
    if usd == 0.0 || !usd.is_finite() {
        return usd;
    }
    let whole_digits = usd.abs().log10().floor() as i32 + 1;
    let places = (15 - whole_digits.max(1)).clamp(0, 12);
    let scale = 10f64.powi(places);
    (usd * scale).round() / scale
}

/// `$12.34`, with four decimals below a dollar (`$0.0362`); a cost those four places
/// round to a dollar is one (`$1.00` for 0.99996).
pub fn format_usd(cost: f64) -> String {
    dollars(cost, if rounded_half_up(cost.abs(), 4).starts_with("0.") { 4 } else { 2 })
}

/// `value` (zero or more) with `decimals` places, rounded half up on the decimal figure it
/// holds to the pico-dollar: 2.675 is `2.68`, where a float's own rounding of
/// 2.67499999… says `2.67` (docs/results.md: costs are added up exactly).
fn rounded_half_up(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return format!("{value:.decimals$}");
    }
    let sign = if value < 0.0 { "-" } else { "" };
    let value = value.abs();
    // The places the figure holds: the pico-dollar's 12, or fewer from $1,000 on, where a
    // float's 15 digits end first (as `to_the_pico_dollar` keeps them).
    let whole_digits = if value >= 1.0 { value.log10().floor() as usize + 1 } else { 1 };
    let places = 15usize.saturating_sub(whole_digits).min(12);
    if decimals >= places {
        return format!("{sign}{value:.decimals$}");
    }
    let exact = format!("{value:.places$}");
    let Some((whole, fraction)) = exact.split_once('.') else { return exact };
    let mut digits: Vec<u8> = whole.bytes().chain(fraction.bytes().take(decimals)).collect();
    if fraction.as_bytes().get(decimals).is_some_and(|next| *next >= b'5') {
        let mut place = digits.len();
        loop {
            if place == 0 {
                digits.insert(0, b'1');
                break;
            }
            place -= 1;
            if digits[place] == b'9' {
                digits[place] = b'0';
            } else {
                digits[place] += 1;
                break;
            }
        }
    }
    let point = digits.len() - decimals;
    let text = String::from_utf8_lossy(&digits).into_owned();
    match decimals {
        0 => format!("{sign}{text}"),
        _ => format!("{sign}{}.{}", &text[..point], &text[point..]),
    }
}

/// `$` and `cost` with `decimals` places, thousands grouped (`$1,534.20`). A cost above
/// zero that these places would show as zero reads `<$0.0001`: a cost was reported, and
/// a zero would say none was (docs/results.md).
pub fn dollars(cost: f64, decimals: usize) -> String {
    let text = rounded_half_up(cost.abs(), decimals);
    if cost > 0.0 && text.chars().all(|c| c == '0' || c == '.') {
        return format!("<${:.decimals$}", 10f64.powi(-i32::try_from(decimals).unwrap_or(i32::MAX)));
    }
    let (whole, fraction) = text.split_once('.').map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    let whole = whole.parse::<i64>().map_or_else(|_| whole.to_string(), group_digits);
    let sign = if cost < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') { "-" } else { "" };
    match fraction {
        Some(fraction) => format!("{sign}${whole}.{fraction}"),
        None => format!("{sign}${whole}"),
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn group_digits(count: i64) -> String {
    let digits = count.unsigned_abs().to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    if count < 0 {
        out.insert(0, '-');
    }
    out
}

/// The sum columns of a query over `attempts a`, in [`UsageSums`] order.
macro_rules! sum_columns {
    () => {
        "count(*), sum(a.cost_usd)::float8, sum(a.input_tokens)::int8, sum(a.output_tokens)::int8,
         sum(a.cache_read_tokens)::int8, sum(a.cache_write_tokens)::int8, count(a.cost_usd)"
    };
}

/// Only attempts that reported something (the predicate of index `attempts_usage_at`).
macro_rules! reported {
    () => {
        "a.usage_at IS NOT NULL"
    };
}

fn sums_from(row: &postgres::Row, first: usize) -> UsageSums {
    UsageSums {
        attempts: row.get(first),
        cost_usd: row.get(first + 1),
        input_tokens: row.get(first + 2),
        output_tokens: row.get(first + 3),
        cache_read_tokens: row.get(first + 4),
        cache_write_tokens: row.get(first + 5),
        cost_attempts: row.get(first + 6),
    }
}

/// Per drain of `drains`, the usage its attempts reported at or after `since` (when their
/// workers exited); a drain without any is absent.
pub fn usage_by_drain_since(
    client: &mut impl GenericClient,
    drains: &[String],
    since: DateTime<Utc>,
) -> Result<HashMap<String, UsageSums>> {
    let rows = client.query(
        concat!(
            "SELECT i.drain, ",
            sum_columns!(),
            " FROM attempts a JOIN items i ON i.id = a.item_id
              WHERE a.usage_at >= $2 AND ",
            reported!(),
            " AND i.drain = ANY($1)
              GROUP BY i.drain"
        ),
        &[&drains, &since],
    )?;
    Ok(rows.iter().map(|row| (row.get(0), sums_from(row, 1))).collect())
}

/// The usage of every attempt of run `run_id`.
pub fn usage_of_run(client: &mut impl GenericClient, run_id: i64) -> Result<UsageSums> {
    usage_of(
        client,
        concat!("SELECT ", sum_columns!(), " FROM attempts a WHERE a.run_id = $1 AND ", reported!()),
        run_id,
    )
}

/// The usage of every attempt of item `item_id` (index `attempts_item`).
pub fn usage_of_item(client: &mut impl GenericClient, item_id: i64) -> Result<UsageSums> {
    usage_of(
        client,
        concat!("SELECT ", sum_columns!(), " FROM attempts a WHERE a.item_id = $1 AND ", reported!()),
        item_id,
    )
}

/// The sums `statement` reads for the run or item `id`.
fn usage_of(client: &mut impl GenericClient, statement: &str, id: i64) -> Result<UsageSums> {
    Ok(sums_from(&client.query_one(statement, &[&id])?, 0))
}

/// What today's attempts of each drain with a `max_cost_per_day` cost, the day from
/// midnight in `[defaults] timezone` ([`crate::usage::budget_day`]): what its daily budget
/// is held to (docs/results.md).
pub fn costs_today(
    client: &mut impl GenericClient,
    config: &crate::config::Config,
    now: DateTime<Utc>,
) -> Result<HashMap<String, f64>> {
    let (day_start, _) = crate::usage::budget_day(now, config.defaults.timezone);
    let mut costs = HashMap::new();
    for drain in config.drains.iter().filter(|drain| drain.max_cost_per_day.is_some()) {
        costs.insert(drain.name.clone(), cost_since(client, &drain.name, day_start)?);
    }
    Ok(costs)
}

/// What the attempts of `drain` reported they cost since `since` (those whose item is
/// still open included), and what the attempts of items discarded since then had cost
/// since a budget day's start no earlier (kept in their `items_discarded` event): what a
/// daily budget counts. 0 when none reported a cost.
pub fn cost_since(client: &mut impl GenericClient, drain: &str, since: DateTime<Utc>) -> Result<f64> {
    // Planned for this `since` (today's attempts through `attempts_usage_at`), also in a
    // drain pass, whose session plans generically (docs/architecture.md).
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)
          WHERE current_setting('server_version_num')::int >= 120000",
        &[],
    )?;
    let row = tx.query_one(
        "SELECT coalesce(sum(a.cost_usd), 0)::float8
                + (SELECT coalesce(sum((data->>'spent_today_usd')::float8), 0)::float8 FROM events
                    WHERE drain = $1 AND at >= $2 AND kind = 'items_discarded'
                      AND (data->>'budget_day_start')::timestamptz >= $2)
           FROM attempts a JOIN items i ON i.id = a.item_id
          WHERE a.usage_at >= $2 AND a.cost_usd IS NOT NULL
            AND i.drain = $1",
        &[&drain, &since],
    )?;
    tx.commit()?;
    Ok(row.get(0))
}

/// Whether an event of `kind` about `drain` was recorded at or after `since`.
pub fn has_event_since(
    client: &mut impl GenericClient,
    kind: crate::model::EventKind,
    drain: &str,
    since: DateTime<Utc>,
) -> Result<bool> {
    let row = client.query_one(
        "SELECT EXISTS (SELECT 1 FROM events WHERE drain = $1 AND at >= $2 AND kind = $3)",
        &[&drain, &since, &kind.as_str()],
    )?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_describe_what_was_reported_and_nothing_else() {
        assert_eq!(UsageSums::default().describe(), None);
        let codex = UsageSums {
            attempts: 1,
            input_tokens: Some(5563),
            output_tokens: Some(1211),
            cache_read_tokens: Some(19200),
            ..UsageSums::default()
        };
        assert_eq!(
            codex.describe().as_deref(),
            Some("25,974 tokens (5,563 in, 1,211 out, 19,200 cache read) over 1 attempt")
        );
        // One token is one (before: "1 tokens").
        let one = UsageSums { attempts: 1, output_tokens: Some(1), ..UsageSums::default() };
        assert_eq!(one.describe().as_deref(), Some("1 token (1 out) over 1 attempt"));
        let mut both = codex.clone();
        both.add(&UsageSums { attempts: 2, cost_usd: Some(1.5), ..UsageSums::default() });
        let mut group = UsageSums { attempts: 1, cost_usd: Some(0.3), ..UsageSums::default() };
        group.add(&UsageSums { attempts: 1, cost_usd: Some(0.032), ..UsageSums::default() });
        assert_eq!(group.cost_usd, Some(0.332), "before: 0.33199999999999996");
        let mut large = UsageSums { attempts: 1, cost_usd: Some(49567.567981), ..UsageSums::default() };
        large.add(&UsageSums { attempts: 1, cost_usd: Some(38894.269154), ..UsageSums::default() });
        assert_eq!(large.cost_usd, Some(88461.837135), "before: 88461.83713500001");
        assert_eq!(both.cost_usd, Some(1.5));
        assert_eq!(
            both.describe().as_deref().map(|text| text.starts_with("$1.50 · 25,974 tokens")),
            Some(true)
        );
        assert_eq!(format_usd(0.03617865), "$0.0362");
        // Half up on the exact figure, not a float's 2.67499999…
        assert_eq!(format_usd(2.675), "$2.68");
        assert_eq!(format_usd(1.005), "$1.01");
        assert_eq!(format_usd(0.00015), "$0.0002");
        assert_eq!(format_usd(9.995), "$10.00");
        assert_eq!(format_usd(999.995), "$1,000.00");
        assert_eq!(format_usd(0.99995), "$1.00");
        assert_eq!(format_usd(-2.675), "-$2.68");
        assert_eq!(format_usd(10_000.005), "$10,000.01");
        assert_eq!(format_usd(123_456_789.125), "$123,456,789.13");
        assert_eq!(rounded_half_up(-0.125, 2), "-0.13");
        // Four places that round to a dollar show two (before: `$1.0000`).
        assert_eq!(format_usd(0.99996), "$1.00");
        assert_eq!(format_usd(0.999949), "$0.9999");
        assert_eq!(format_usd(-0.99996), "-$1.00");
        assert_eq!(group_digits(1234567), "1,234,567");
    }
}
