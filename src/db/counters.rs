//! The `counters` table (migrations/0007_counters.sql): monotonic counts kept by triggers
//! in the transactions that change items, attempts and events, so pruning history never
//! lowers them. Read here for the metrics.

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

/// Every counter, ordered by metric and labels.
pub fn read_counters(client: &mut impl GenericClient) -> Result<Vec<CounterRow>> {
    let rows =
        client.query("SELECT metric, labels::text, value FROM counters ORDER BY metric, labels", &[])?;
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
