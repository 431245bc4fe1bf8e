//! The history the operations page draws (docs/results.md#the-operations-page): how the
//! backlog changed over the last days, the quota hits and backoffs of a quota group, and
//! what the workers reported their attempts cost per day. Every query reads a bounded
//! slice: the drain's open items (its backlog) and what finished, hit or was paid for
//! since `since`, grouped in the database into at most a few hundred rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::Value;

use crate::error::Result;

/// Items of one drain, grouped by when they joined and left the backlog, counted in steps
/// of the chart: `entered` is the first step at or after the item's `enqueued_at` (0 for
/// an item enqueued before `since`), `left` the first step at or after its `finished_at`
/// (None while it is pending or running).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogSpan {
    pub entered: i64,
    pub left: Option<i64>,
    pub items: i64,
}

/// The [`BacklogSpan`]s of each of `drains`, in steps of `step_seconds` from `since`: the
/// open items (pending and running, index `items_drain_state`), and the items that
/// finished after `since` — done and skipped ones through `items_finished`, dead ones
/// through `items_drain_state`.
pub fn backlog_spans(
    client: &mut impl GenericClient,
    drains: &[String],
    since: DateTime<Utc>,
    step_seconds: i64,
) -> Result<HashMap<String, Vec<BacklogSpan>>> {
    let rows = client.query(
        "WITH changes AS (
             SELECT drain, enqueued_at, NULL::timestamptz AS finished_at
               FROM items WHERE drain = ANY($1) AND state IN ('pending', 'running')
             UNION ALL
             SELECT drain, enqueued_at, finished_at
               FROM items WHERE drain = ANY($1) AND state IN ('done', 'skipped_missing') AND finished_at > $2
             UNION ALL
             SELECT drain, enqueued_at, finished_at
               FROM items WHERE drain = ANY($1) AND state = 'dead' AND finished_at > $2)
         SELECT drain,
                GREATEST(0, ceil(extract(epoch FROM enqueued_at - $2)::float8 / $3::float8))::bigint,
                ceil(extract(epoch FROM finished_at - $2)::float8 / $3::float8)::bigint,
                count(*)
           FROM changes
          GROUP BY 1, 2, 3",
        &[&drains, &since, &(step_seconds as f64)],
    )?;
    let mut spans: HashMap<String, Vec<BacklogSpan>> = HashMap::new();
    for row in rows {
        let span = BacklogSpan { entered: row.get(1), left: row.get(2), items: row.get(3) };
        spans.entry(row.get(0)).or_default().push(span);
    }
    Ok(spans)
}

/// A quota hit or backoff of a quota group, for the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub drain: Option<String>,
    pub message: String,
    pub data: Value,
}

/// The newest `limit` events of `kinds` recorded for quota group `group` in `(since, until]`,
/// oldest first (index `events_at`).
pub fn quota_events(
    client: &mut impl GenericClient,
    group: &str,
    kinds: &[&str],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<QuotaEvent>> {
    let rows = client.query(
        "SELECT at, kind, drain, message, data FROM events
          WHERE at > $3 AND at <= $4 AND quota_group = $1 AND kind = ANY($2)
          ORDER BY at DESC, id DESC
          LIMIT $5",
        &[&group, &kinds, &since, &until, &limit],
    )?;
    let mut events: Vec<QuotaEvent> = rows
        .iter()
        .map(|row| QuotaEvent {
            at: row.get(0),
            kind: row.get(1),
            drain: row.get(2),
            message: row.get(3),
            data: row.get(4),
        })
        .collect();
    events.reverse();
    Ok(events)
}

/// What the workers of one drain reported their attempts cost on one day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayCost {
    /// 0-based: the day that starts at `day_starts[day]`.
    pub day: usize,
    pub usd: f64,
    /// The same sum in whole pico-dollars, as the database adds it up (exactly), so that
    /// days add up exactly too (docs/results.md).
    pub picousd: i128,
    /// Attempts that reported a cost.
    pub attempts: i64,
}

/// The tokens of every kind (input, output, cache read and cache write) the attempts of
/// each of `drains` reported between `start` and `end`, whether or not they reported a
/// cost (codex and gemini report tokens only; docs/results.md). A drain whose attempts
/// reported none has no entry (index `attempts_usage_at`).
pub fn tokens_between(
    client: &mut impl GenericClient,
    drains: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<HashMap<String, i64>> {
    let rows = client.query(
        "SELECT i.drain,
                sum(coalesce(a.input_tokens, 0) + coalesce(a.output_tokens, 0)
                    + coalesce(a.cache_read_tokens, 0) + coalesce(a.cache_write_tokens, 0))::int8
           FROM attempts a JOIN items i ON i.id = a.item_id
          WHERE a.usage_at >= $2 AND a.usage_at < $3 AND i.drain = ANY($1)
            AND num_nonnulls(a.input_tokens, a.output_tokens, a.cache_read_tokens, a.cache_write_tokens) > 0
          GROUP BY 1",
        &[&drains, &start, &end],
    )?;
    Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The sum of `attempts.cost_usd` per drain of `drains` and day, the days being
/// `[day_starts[i], day_starts[i + 1])`; attempts that reported no cost are left out, and
/// a day without any has no entry (index `attempts_usage_at`).
pub fn cost_per_day(
    client: &mut impl GenericClient,
    drains: &[String],
    day_starts: &[DateTime<Utc>],
) -> Result<HashMap<String, Vec<DayCost>>> {
    let (Some(first), Some(end)) = (day_starts.first(), day_starts.last()) else {
        return Ok(HashMap::new());
    };
    let rows = client.query(
        "SELECT i.drain, width_bucket(a.usage_at, $2::timestamptz[]), sum(a.cost_usd)::float8, count(*),
                round(sum(a.cost_usd) * 1000000000000)::text
           FROM attempts a JOIN items i ON i.id = a.item_id
          WHERE a.cost_usd IS NOT NULL AND a.usage_at >= $3 AND a.usage_at < $4
            AND i.drain = ANY($1)
          GROUP BY 1, 2",
        &[&drains, &day_starts, first, end],
    )?;
    let mut costs: HashMap<String, Vec<DayCost>> = HashMap::new();
    for row in rows {
        // width_bucket counts the boundaries at or before the instant: 1 is the first day.
        let bucket: i32 = row.get(1);
        let Some(day) = usize::try_from(bucket).ok().and_then(|bucket| bucket.checked_sub(1)) else {
            continue;
        };
        let picousd: String = row.get(4);
        let picousd = picousd.parse::<i128>().map_err(|error| {
            crate::error::Error::Internal(format!("a day's cost of {picousd} pico-dollars: {error}"))
        })?;
        let cost = DayCost { day, usd: row.get(2), picousd, attempts: row.get(3) };
        costs.entry(row.get(0)).or_default().push(cost);
    }
    for days in costs.values_mut() {
        days.sort_by_key(|cost| cost.day);
    }
    Ok(costs)
}
