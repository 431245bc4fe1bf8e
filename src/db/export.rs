//! The read behind `drainctl export` (docs/results.md#export): every item of a drain in id
//! order, streamed from one consistent snapshot through a server-side portal in bounded
//! fetches, so memory does not grow with the number of items.

use chrono::{DateTime, Utc};
use postgres::{Client, IsolationLevel};
use serde_json::Value;

use crate::db::usage::UsageSums;
use crate::error::{Error, Result};
use crate::model::ItemState;

/// Rows fetched from the portal at a time.
const FETCH_ROWS: i32 = 128;
/// A payload or result up to this size comes with its row; a larger one is read alone,
/// right before its row is written, so one fetch holds at most `FETCH_ROWS` of these.
/// A payload counts at its uncompressed stored (jsonb) size (docs/results.md, "Export").
const INLINE_BYTES: i32 = 64 * 1024;
/// What `pg_column_size` adds to its element's size for a one-element array without nulls
/// (`ARR_OVERHEAD_NONULLS(1)`; jsonb is int-aligned, and `INLINE_BYTES` a multiple of 4, so
/// the element's padding never moves it across the limit).
const ONE_ELEMENT_ARRAY_HEADER: i32 = 24;

/// Which items of a drain are exported.
#[derive(Debug, Clone)]
pub struct ExportFilter<'a> {
    pub drain: &'a str,
    pub state: Option<ItemState>,
    /// Only items that finished at or after this instant.
    pub finished_since: Option<DateTime<Utc>>,
    /// Only items with a larger id.
    pub after_id: i64,
}

/// One exported item.
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub id: i64,
    pub key: String,
    pub state: ItemState,
    pub attempts: i32,
    pub enqueued_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub payload: Value,
    pub result: Option<Vec<u8>>,
    /// The usage its attempts reported, summed over all of them.
    pub usage: UsageSums,
}

/// Call `write` with every item `filter` selects, in id order, from one snapshot (a
/// read-only repeatable-read transaction). Stops at the first error `write` returns.
pub fn for_each_item(
    client: &mut Client,
    filter: &ExportFilter,
    mut write: impl FnMut(ExportRow) -> Result<()>,
) -> Result<()> {
    let mut transaction =
        client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    // The export goes at its reader's pace: a reader that stops reading for a while (a
    // pager, a slow upload) leaves this session idle in its transaction, which the
    // session's usual limit would end (docs/operations.md, "Exporting results").
    transaction.batch_execute("SET LOCAL idle_in_transaction_session_timeout = 0")?;
    // A payload's size as stored (`pg_column_size(i.payload)`) is its compressed size: a
    // compressible payload of 1 MiB takes 12 KB there, and 128 of them would come in one
    // fetch. An array built of the payload holds it decompressed (`construct_md_array`
    // detoasts its elements, on every supported PostgreSQL), so its size is the payload's
    // uncompressed stored size plus the array's header, at the cost of a copy on the
    // server, without turning it into text (docs/results.md, "Export").
    // The usage sums count every attempt that reported usage (`usage_at`), cache tokens
    // alone included, as `status` and `items show` count them (docs/results.md, "Where it
    // shows").
    let statement = transaction.prepare(
        "SELECT i.id, i.key, i.state, i.attempts, i.enqueued_at, i.finished_at, i.last_error,
                CASE WHEN pg_column_size(ARRAY[i.payload]) <= $6 THEN i.payload END,
                CASE WHEN octet_length(i.result) <= $5 THEN i.result END,
                octet_length(i.result) > $5,
                u.reported, u.cost_usd, u.input_tokens, u.output_tokens, u.cache_read_tokens,
                u.cache_write_tokens
           FROM items i
           LEFT JOIN LATERAL (
                SELECT count(*) AS reported, sum(a.cost_usd)::float8 AS cost_usd,
                       sum(a.input_tokens)::int8 AS input_tokens, sum(a.output_tokens)::int8 AS output_tokens,
                       sum(a.cache_read_tokens)::int8 AS cache_read_tokens,
                       sum(a.cache_write_tokens)::int8 AS cache_write_tokens
                  FROM attempts a
                 WHERE a.item_id = i.id
                   AND a.usage_at IS NOT NULL
                ) u ON true
          WHERE i.drain = $1 AND i.id > $2
            AND ($3::text IS NULL OR i.state = $3)
            AND ($4::timestamptz IS NULL OR i.finished_at >= $4)
          ORDER BY i.id",
    )?;
    let large = transaction.prepare("SELECT payload, result FROM items WHERE id = $1")?;
    let portal = transaction.bind(
        &statement,
        &[
            &filter.drain,
            &filter.after_id,
            &filter.state,
            &filter.finished_since,
            &INLINE_BYTES,
            &(INLINE_BYTES + ONE_ELEMENT_ARRAY_HEADER),
        ],
    )?;
    loop {
        let rows = transaction.query_portal(&portal, FETCH_ROWS)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let id: i64 = row.get(0);
            let inline_payload: Option<Value> = row.get(7);
            let inline_result: Option<Vec<u8>> = row.get(8);
            let is_result_large: Option<bool> = row.get(9);
            let is_payload_large = inline_payload.is_none();
            let is_result_large = is_result_large == Some(true);
            let (payload, result) = if is_payload_large || is_result_large {
                let what = match (is_payload_large, is_result_large) {
                    (true, true) => "payload and result",
                    (true, false) => "payload",
                    _ => "result",
                };
                log::debug!("export: item {id}: {what} over 64 KiB, read on its own");
                let whole = transaction.query_one(&large, &[&id])?;
                (whole.get::<_, Value>(0), whole.get::<_, Option<Vec<u8>>>(1))
            } else {
                (inline_payload.unwrap_or(Value::Null), inline_result)
            };
            write(ExportRow {
                id,
                key: row.get(1),
                state: row.try_get(2)?,
                attempts: row.get(3),
                enqueued_at: row.get(4),
                finished_at: row.get(5),
                last_error: row.get(6),
                payload,
                result,
                usage: UsageSums {
                    attempts: row.get(10),
                    cost_usd: row.get(11),
                    input_tokens: row.get(12),
                    output_tokens: row.get(13),
                    cache_read_tokens: row.get(14),
                    cache_write_tokens: row.get(15),
                    // Not exported: what the budget forecast divides by.
                    cost_attempts: 0,
                },
            })?;
        }
    }
    transaction.commit().map_err(|error| Error::from(error).context("export: closing the snapshot"))
}
