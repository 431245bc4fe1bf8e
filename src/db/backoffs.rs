//! The `quota_backoffs` table: per quota group, until when no item may start, why, and
//! the "suspected" mark of a hit without a reset time.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::error::Result;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackoffRow {
    pub quota_group: String,
    pub backoff_until: Option<DateTime<Utc>>,
    pub reset_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub observed_at: Option<DateTime<Utc>>,
    pub suspected_at: Option<DateTime<Utc>>,
    pub needs_attention: bool,
}

impl BackoffRow {
    pub fn is_backing_off(&self, now: DateTime<Utc>) -> bool {
        self.backoff_until.is_some_and(|until| now < until)
    }
}

/// The backoff row of `group` (a default, empty row when there is none).
pub fn read_backoff(client: &mut impl GenericClient, group: &str) -> Result<BackoffRow> {
    let row = client.query_opt(
        "SELECT backoff_until, reset_at, reason, observed_at, suspected_at, needs_attention
           FROM quota_backoffs WHERE quota_group = $1 AND account = ''",
        &[&group],
    )?;
    Ok(match row {
        Some(row) => BackoffRow {
            quota_group: group.to_string(),
            backoff_until: row.get(0),
            reset_at: row.get(1),
            reason: row.get(2),
            observed_at: row.get(3),
            suspected_at: row.get(4),
            needs_attention: row.get(5),
        },
        None => BackoffRow { quota_group: group.to_string(), ..BackoffRow::default() },
    })
}

/// Write the group's backoff after a quota hit.
pub fn write_backoff(client: &mut impl GenericClient, row: &BackoffRow, now: DateTime<Utc>) -> Result<()> {
    client.execute(
        "INSERT INTO quota_backoffs (quota_group, account, backoff_until, reset_at, reason,
                                     observed_at, suspected_at, needs_attention, updated_at)
         VALUES ($1, '', $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (quota_group, account) DO UPDATE SET
             backoff_until = EXCLUDED.backoff_until, reset_at = EXCLUDED.reset_at,
             reason = EXCLUDED.reason, observed_at = EXCLUDED.observed_at,
             suspected_at = EXCLUDED.suspected_at, needs_attention = EXCLUDED.needs_attention,
             updated_at = EXCLUDED.updated_at",
        &[
            &row.quota_group,
            &row.backoff_until,
            &row.reset_at,
            &row.reason,
            &row.observed_at,
            &row.suspected_at,
            &row.needs_attention,
            &now,
        ],
    )?;
    Ok(())
}

/// A successful item clears the suspected mark; true when there was one.
pub fn clear_suspected(client: &mut impl GenericClient, group: &str, now: DateTime<Utc>) -> Result<bool> {
    let updated = client.execute(
        "UPDATE quota_backoffs SET suspected_at = NULL, needs_attention = false, updated_at = $2
          WHERE quota_group = $1 AND account = '' AND (suspected_at IS NOT NULL OR needs_attention)",
        &[&group, &now],
    )?;
    Ok(updated > 0)
}

/// Backoff rows of these groups (one query; groups without a row get an empty one).
pub fn read_backoffs(client: &mut impl GenericClient, groups: &[String]) -> Result<Vec<BackoffRow>> {
    let rows = client.query(
        "SELECT quota_group, backoff_until, reset_at, reason, observed_at, suspected_at, needs_attention
           FROM quota_backoffs WHERE quota_group = ANY($1) AND account = ''",
        &[&groups],
    )?;
    Ok(groups
        .iter()
        .map(|group| {
            rows.iter()
                .find(|row| row.get::<_, &str>(0) == group)
                .map(|row| BackoffRow {
                    quota_group: group.clone(),
                    backoff_until: row.get(1),
                    reset_at: row.get(2),
                    reason: row.get(3),
                    observed_at: row.get(4),
                    suspected_at: row.get(5),
                    needs_attention: row.get(6),
                })
                .unwrap_or_else(|| BackoffRow { quota_group: group.clone(), ..BackoffRow::default() })
        })
        .collect())
}
