//! Discarding items: `drainctl discard` deletes items an operator wants gone — a dead
//! letter no retry will fix, an item enqueued by mistake, the backlog of a drain being
//! retired — with their attempts and any result (docs/operations.md, "Discarding items").
//! An item a live run holds is never touched.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::error::Result;
use crate::model::ItemState;

/// Which of a drain's items to discard.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// The item with this key.
    Key(&'a str),
    /// Every dead item.
    Dead,
    /// Every item.
    All,
}

/// An item discarded (or, in a dry run, that would be), or left alone because a live run
/// holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SelectedItem {
    pub id: i64,
    pub key: String,
    pub state: ItemState,
    /// For an item left alone: the run recorded as running that holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<i64>,
}

/// What [`discard_items`] found and did.
#[derive(Debug, Default)]
pub struct Discarded {
    /// Deleted (in a dry run: would be), in id order.
    pub items: Vec<SelectedItem>,
    /// Running under a run that is still running: left alone.
    pub held: Vec<SelectedItem>,
    /// What the attempts of the discarded items reported they cost since the start of the
    /// budget day: a daily budget still counts it (kept in the `items_discarded` event).
    pub spent_today_usd: f64,
}

/// Delete `drain`'s items that `selection` names, except those a run still running holds;
/// nothing is deleted when `dry_run`. Call in a transaction: the selected items are locked
/// first and their runs read after, in a statement of its own — a locking statement that
/// waited for a claim sees the item as claimed but the runs as they were before, the new
/// run missing, so a live run's item would look held by nobody. A running item whose run
/// has ended (hung, crashed) is nobody's and is discarded. Attempts, a staged result and
/// open poison charges go with their item (foreign keys); a source file's record stays, so
/// that a scan enqueues the file again only when its content changes, as after `prune`.
pub fn discard_items(
    client: &mut impl GenericClient,
    drain: &str,
    selection: Selection<'_>,
    dry_run: bool,
    budget_day_start: DateTime<Utc>,
) -> Result<Discarded> {
    let (key, all) = match selection {
        Selection::Key(key) => (Some(key), false),
        Selection::Dead => (None, false),
        Selection::All => (None, true),
    };
    // A dry run locks nothing: it only reads (and so runs on a read-only standby too).
    macro_rules! selected {
        () => {
            "SELECT id, key, state, claimed_by FROM items
              WHERE drain = $1
                AND CASE WHEN $2::text IS NOT NULL THEN key = $2 WHEN $3 THEN true ELSE state = 'dead' END
              ORDER BY id"
        };
    }
    let sql = if dry_run { selected!() } else { concat!(selected!(), " FOR UPDATE") };
    let rows = client.query(sql, &[&drain, &key, &all])?;
    let claims: Vec<i64> = rows
        .iter()
        .filter(|row| row.try_get::<_, ItemState>(2).is_ok_and(|state| state == ItemState::Running))
        .filter_map(|row| row.get::<_, Option<i64>>(3))
        .collect();
    let live: Vec<i64> = if claims.is_empty() {
        Vec::new()
    } else {
        client
            .query("SELECT id FROM runs WHERE id = ANY($1) AND status = 'running'", &[&claims])?
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    let mut found = Discarded::default();
    for row in &rows {
        let mut item = SelectedItem { id: row.get(0), key: row.get(1), state: row.try_get(2)?, run_id: None };
        let claimed_by: Option<i64> = row.get(3);
        let is_held = item.state == ItemState::Running && claimed_by.is_some_and(|run| live.contains(&run));
        if is_held {
            item.run_id = claimed_by;
            found.held.push(item);
        } else {
            found.items.push(item);
        }
    }
    if !found.items.is_empty() {
        let ids: Vec<i64> = found.items.iter().map(|item| item.id).collect();
        let spent = client.query_one(
            "SELECT coalesce(sum(cost_usd), 0)::float8 FROM attempts
              WHERE item_id = ANY($1) AND usage_at >= $2 AND cost_usd IS NOT NULL",
            &[&ids, &budget_day_start],
        )?;
        found.spent_today_usd = spent.get(0);
        if !dry_run {
            client.execute("DELETE FROM items WHERE id = ANY($1)", &[&ids])?;
        }
    }
    Ok(found)
}
