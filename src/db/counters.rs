//! The monotonic counts kept by triggers in the transactions that change items, attempts
//! and events, so pruning history never lowers them: the `counters` table
//! (migrations/0007_counters.sql) and the finished items and worker starts that
//! `item_counts` counts since migrations/0011_counted_with_states.sql. Read here for the
//! metrics.

use std::collections::BTreeMap;

use postgres::GenericClient;

use crate::error::{Error, Result};

/// One counter: its metric, its labels (name → value) and its count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterRow {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
    pub value: i64,
}

/// Every counter, ordered by metric and labels: a `counters` row plus, for finished items
/// and worker starts, what the drain's `item_counts` rows counted (at most 16 per drain).
pub fn read_counters(client: &mut impl GenericClient) -> Result<Vec<CounterRow>> {
    let rows = client.query(
        "SELECT metric, labels::text, sum(value)::int8
           FROM (SELECT metric, labels, value FROM counters
                 UNION ALL
                 SELECT 'items_finished_total', jsonb_build_object('drain', c.drain, 'outcome', f.outcome), f.n
                   FROM item_counts c,
                        LATERAL (VALUES ('done', c.finished_done), ('dead', c.finished_dead),
                                        ('skipped_missing', c.finished_skipped_missing)) AS f (outcome, n)
                  WHERE f.n <> 0
                 UNION ALL
                 SELECT 'worker_starts_total', jsonb_build_object('drain', drain), worker_starts
                   FROM item_counts WHERE worker_starts <> 0) AS every
          GROUP BY metric, labels
          ORDER BY metric, labels",
        &[],
    )?;
    rows.iter()
        .map(|row| {
            let metric: String = row.try_get(0)?;
            let text: String = row.try_get(1)?;
            let labels = serde_json::from_str(&text).map_err(|error| {
                Error::Internal(format!(
                    "counter {metric} has labels {text} that are not an object of text: {error}"
                ))
            })?;
            Ok(CounterRow { metric, labels, value: row.try_get(2)? })
        })
        .collect()
}
