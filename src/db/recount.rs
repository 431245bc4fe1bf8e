//! The per-state counts `item_counts` keeps (migrations/0009_item_counts.sql), checked
//! against the items they count and set right: `status`, `items`, `metrics` and the
//! forecasts read them, and a trigger disabled by hand for a while leaves them wrong for
//! good (docs/migrations.md, "A schema changed by hand").

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde::Serialize;

use crate::db::events::{record_migration_event, Event, Outbox};
use crate::error::{Error, Result};
use crate::model::EventKind;

/// A drain's count of one state as kept, beside the items in that state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub drain: String,
    pub state: String,
    pub counted: i64,
    pub actual: i64,
}

/// The counts that differ from the items, in one snapshot (the triggers change both in
/// the same transactions). Reads every item: seconds at ten million.
const DRIFTS: &str = "
    WITH actual AS (SELECT drain, state, count(*) AS n FROM items GROUP BY drain, state),
         counted AS (SELECT c.drain, s.state, sum(s.n)::int8 AS n
                       FROM item_counts c,
                            LATERAL (VALUES ('pending', c.pending), ('running', c.running), ('done', c.done),
                                            ('dead', c.dead), ('skipped_missing', c.skipped_missing)) AS s (state, n)
                      GROUP BY c.drain, s.state)
    SELECT coalesce(a.drain, k.drain), coalesce(a.state, k.state), coalesce(k.n, 0), coalesce(a.n, 0)
      FROM actual a FULL JOIN counted k ON k.drain = a.drain AND k.state = a.state
     WHERE coalesce(k.n, 0) <> coalesce(a.n, 0)
     ORDER BY 1, 2";

/// Every count that differs from the items.
pub fn drifts(client: &mut impl GenericClient) -> Result<Vec<Drift>> {
    let rows = client.query(DRIFTS, &[])?;
    Ok(rows
        .iter()
        .map(|row| Drift { drain: row.get(0), state: row.get(1), counted: row.get(2), actual: row.get(3) })
        .collect())
}

/// `drain docs: 2 pending counted, 1 there; …` for a message.
pub fn describe(drifts: &[Drift]) -> String {
    let each: Vec<String> = drifts
        .iter()
        .map(|drift| {
            format!(
                "drain {}: {} {} counted, {} there",
                drift.drain, drift.counted, drift.state, drift.actual
            )
        })
        .collect();
    each.join("; ")
}

/// Set every count that differs right, with no item changing meanwhile (writers wait for
/// the count; readers do not), and record it as a `counts_repaired` event; the counts
/// that were wrong. The totals of finished items and worker starts, which only grow, are
/// left as they are.
pub fn repair(
    client: &mut postgres::Client,
    outbox: &Outbox,
    lock_timeout: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Drift>> {
    // Counts set right while a counting trigger is off would go wrong again at the next
    // write: that is to be set right first.
    if let Some(why) = crate::migrate::changed_by_hand(client)? {
        return Err(Error::Config(format!("{why}; nothing was recounted")));
    }
    let mut transaction = client.transaction()?;
    // Every writer of items waits for the count: a transaction holding items keeps this
    // one waiting at most `--lock-timeout` (75), not every drain behind it for ever.
    crate::db::set_lock_timeout_for(&mut transaction, lock_timeout, true)?;
    // SHARE ROW EXCLUSIVE: writers wait, and so does a second repair, which then finds
    // nothing to set right (two at once in SHARE mode would both add the same difference).
    transaction.batch_execute("LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE").map_err(|error| {
        if error.code() != Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            return Error::from(error);
        }
        Error::from(error).noted(&format!(
            "a transaction holding items kept --repair-counts waiting {}; nothing was recounted: run it again, \
             or give a longer --lock-timeout",
            crate::duration::format_duration(lock_timeout)
        ))
    })?;
    let drifts = drifts(&mut transaction)?;
    if drifts.is_empty() {
        return Ok(drifts);
    }
    // The differences as counted: under the lock no item changed since (counting every
    // item again would take as long once more).
    let drains: Vec<&str> = drifts.iter().map(|drift| drift.drain.as_str()).collect();
    let states: Vec<&str> = drifts.iter().map(|drift| drift.state.as_str()).collect();
    let deltas: Vec<i64> = drifts.iter().map(|drift| drift.actual - drift.counted).collect();
    transaction.execute(
        "INSERT INTO item_counts AS c (drain, slot, pending, running, done, dead, skipped_missing)
         SELECT drain, 0, coalesce(sum(d) FILTER (WHERE state = 'pending'), 0),
                coalesce(sum(d) FILTER (WHERE state = 'running'), 0),
                coalesce(sum(d) FILTER (WHERE state = 'done'), 0),
                coalesce(sum(d) FILTER (WHERE state = 'dead'), 0),
                coalesce(sum(d) FILTER (WHERE state = 'skipped_missing'), 0)
           FROM unnest($1::text[], $2::text[], $3::int8[]) AS deltas (drain, state, d)
          GROUP BY drain
        ON CONFLICT (drain, slot) DO UPDATE
           SET pending = c.pending + EXCLUDED.pending, running = c.running + EXCLUDED.running,
               done = c.done + EXCLUDED.done, dead = c.dead + EXCLUDED.dead,
               skipped_missing = c.skipped_missing + EXCLUDED.skipped_missing",
        &[&drains, &states, &deltas],
    )?;
    let event =
        Event::new(EventKind::CountsRepaired, format!("set the item counts right: {}", describe(&drifts)))
            .data(serde_json::json!({ "counts": drifts }));
    record_migration_event(&mut transaction, outbox, &event, now)?;
    transaction.commit()?;
    Ok(drifts)
}
