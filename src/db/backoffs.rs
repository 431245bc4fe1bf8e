//! The `quota_backoffs` table: per quota group and account, until when no item may start
//! on that account, why, the rule that set it, and the "suspected" mark of a hit without a
//! reset time. The account `''` is the one account of a group that declares none.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::backoff::BackoffRule;
use crate::error::Result;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackoffRow {
    pub quota_group: String,
    pub account: String,
    pub backoff_until: Option<DateTime<Utc>>,
    /// The rule that set `backoff_until` (None on rows written before accounts existed).
    pub rule: Option<BackoffRule>,
    pub reset_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub observed_at: Option<DateTime<Utc>>,
    pub suspected_at: Option<DateTime<Utc>>,
    pub needs_attention: bool,
}

impl BackoffRow {
    fn empty(group: &str, account: &str) -> BackoffRow {
        BackoffRow { quota_group: group.to_string(), account: account.to_string(), ..BackoffRow::default() }
    }
}

/// Reads a row selected as `quota_group, account, backoff_until, rule, reset_at, reason,
/// observed_at, suspected_at, needs_attention`.
fn from_row(row: &postgres::Row) -> BackoffRow {
    BackoffRow {
        quota_group: row.get(0),
        account: row.get(1),
        backoff_until: row.get(2),
        rule: row.get::<_, Option<&str>>(3).and_then(BackoffRule::parse),
        reset_at: row.get(4),
        reason: row.get(5),
        observed_at: row.get(6),
        suspected_at: row.get(7),
        needs_attention: row.get(8),
    }
}

/// Create the row of one account if missing, lock it until the transaction ends (so that
/// two passes hitting the same account at once agree) and return it.
pub fn lock_backoff(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    now: DateTime<Utc>,
) -> Result<BackoffRow> {
    client.execute(
        "INSERT INTO quota_backoffs (quota_group, account, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (quota_group, account) DO NOTHING",
        &[&group, &account, &now],
    )?;
    let row = client.query_one(
        "SELECT quota_group, account, backoff_until, rule, reset_at, reason, observed_at, suspected_at,
                needs_attention
           FROM quota_backoffs WHERE quota_group = $1 AND account = $2 FOR UPDATE",
        &[&group, &account],
    )?;
    Ok(from_row(&row))
}

/// Record how many items of `group_drains` are done now on the account's (locked) row,
/// and return how many hits in a row before this one said the reset is now — 0 when an
/// item of the group was done since the previous hit (the number differs from the one it
/// recorded), as the row then follows no run of such hits.
pub fn now_hits_in_a_row(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    group_drains: &[String],
) -> Result<u32> {
    let row = client.query_opt(
        "UPDATE quota_backoffs b SET done_at_hit = d.n
           FROM (SELECT coalesce(sum(finished_done), 0)::bigint AS n FROM item_counts
                  WHERE drain = ANY($3)) d,
                (SELECT done_at_hit AS old, now_hits FROM quota_backoffs
                  WHERE quota_group = $1 AND account = $2) o
          WHERE b.quota_group = $1 AND b.account = $2
         RETURNING CASE WHEN o.old IS NOT DISTINCT FROM d.n THEN o.now_hits ELSE 0 END",
        &[&group, &account, &group_drains],
    )?;
    Ok(row.map_or(0, |row| u32::try_from(row.get::<_, i32>(0)).unwrap_or(0)))
}

/// Whether an item of `group_drains` was done after `since` (by its `finished_at`, on the
/// index of finished items: only those since are read).
pub fn done_since(
    client: &mut impl GenericClient,
    group_drains: &[String],
    since: DateTime<Utc>,
) -> Result<bool> {
    let row = client.query_one(
        "SELECT EXISTS (SELECT 1 FROM items WHERE state = 'done' AND finished_at > $2 AND drain = ANY($1))",
        &[&group_drains, &since],
    )?;
    Ok(row.get(0))
}

/// Whether a `backoff_set` of the account was announced (notified) after `since`.
pub fn announced_since(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    since: DateTime<Utc>,
) -> Result<bool> {
    let row = client.query_one(
        "SELECT EXISTS (SELECT 1 FROM events
                         WHERE kind = 'backoff_set' AND quota_group = $1 AND at > $3
                           AND coalesce(data->>'account', '') = $2
                           AND coalesce((data->>'announced')::boolean, true))",
        &[&group, &account, &since],
    )?;
    Ok(row.get(0))
}

/// Store how many hits in a row have said the reset is now, this one included.
pub fn set_now_hits(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    now_hits: u32,
) -> Result<()> {
    let now_hits = i32::try_from(now_hits).unwrap_or(i32::MAX);
    client.execute(
        "UPDATE quota_backoffs SET now_hits = $3 WHERE quota_group = $1 AND account = $2",
        &[&group, &account, &now_hits],
    )?;
    Ok(())
}

/// Write an account's backoff after a quota hit.
pub fn write_backoff(client: &mut impl GenericClient, row: &BackoffRow, now: DateTime<Utc>) -> Result<()> {
    client.execute(
        "INSERT INTO quota_backoffs (quota_group, account, backoff_until, rule, reset_at, reason,
                                     observed_at, suspected_at, needs_attention, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (quota_group, account) DO UPDATE SET
             backoff_until = EXCLUDED.backoff_until, rule = EXCLUDED.rule,
             reset_at = EXCLUDED.reset_at, reason = EXCLUDED.reason,
             observed_at = EXCLUDED.observed_at, suspected_at = EXCLUDED.suspected_at,
             needs_attention = EXCLUDED.needs_attention, updated_at = EXCLUDED.updated_at",
        &[
            &row.quota_group,
            &row.account,
            &row.backoff_until,
            &row.rule.map(BackoffRule::as_str),
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

/// A successful item clears its account's suspected mark; true when there was one.
pub fn clear_suspected(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let updated = client.execute(
        "UPDATE quota_backoffs SET suspected_at = NULL, needs_attention = false, updated_at = $3
          WHERE quota_group = $1 AND account = $2 AND (suspected_at IS NOT NULL OR needs_attention)",
        &[&group, &account, &now],
    )?;
    Ok(updated > 0)
}

/// Do all these accounts of `group` back off, at `now`, with a hit that needs attention
/// (none given: true)?
pub fn all_need_attention(
    client: &mut impl GenericClient,
    group: &str,
    accounts: &[String],
    now: DateTime<Utc>,
) -> Result<bool> {
    let row = client.query_one(
        "SELECT count(*) FROM quota_backoffs
          WHERE quota_group = $1 AND account = ANY($2) AND needs_attention AND backoff_until > $3",
        &[&group, &accounts, &now],
    )?;
    Ok(row.get::<_, i64>(0) == accounts.len() as i64)
}

/// Clear every backoff of `group` that a hit needing attention set (an operator fixed the
/// cause: `resume --group`), or with `every_backoff` every backoff of the group
/// (`resume --group --clear-backoff`): the accounts it still held out at `now`, in order.
pub fn clear_backoffs(
    client: &mut impl GenericClient,
    group: &str,
    now: DateTime<Utc>,
    every_backoff: bool,
) -> Result<Vec<String>> {
    let rows = client.query(
        "WITH held AS (
             SELECT account, backoff_until > $2 AS in_force FROM quota_backoffs
              WHERE quota_group = $1 AND (needs_attention OR $3) FOR UPDATE),
         cleared AS (
             UPDATE quota_backoffs b SET backoff_until = NULL, suspected_at = NULL, needs_attention = false,
                    updated_at = $2
               FROM held h
              WHERE b.quota_group = $1 AND b.account = h.account)
         SELECT account FROM held WHERE in_force ORDER BY account",
        &[&group, &now, &every_backoff],
    )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Write `row`'s instants over those of `before`, the same group and account as read —
/// unless the row changed since (a new hit) or another transaction holds it (see
/// `supervise::clock_went_back`).
pub fn pull_back(client: &mut impl GenericClient, before: &BackoffRow, row: &BackoffRow) -> Result<()> {
    client.execute(
        "UPDATE quota_backoffs SET backoff_until = $3, reset_at = $4, suspected_at = $5, observed_at = $6,
                updated_at = $6
          WHERE (quota_group, account) IN (
                SELECT quota_group, account FROM quota_backoffs
                 WHERE quota_group = $1 AND account = $2 AND observed_at = $7
                   AND backoff_until IS NOT DISTINCT FROM $8
                   FOR UPDATE SKIP LOCKED)",
        &[
            &row.quota_group,
            &row.account,
            &row.backoff_until,
            &row.reset_at,
            &row.suspected_at,
            &row.observed_at,
            &before.observed_at,
            &before.backoff_until,
        ],
    )?;
    Ok(())
}

/// Every backoff row of these groups, all accounts (one query).
pub fn read_group_backoffs(client: &mut impl GenericClient, groups: &[String]) -> Result<Vec<BackoffRow>> {
    let rows = client.query(
        "SELECT quota_group, account, backoff_until, rule, reset_at, reason, observed_at, suspected_at,
                needs_attention
           FROM quota_backoffs WHERE quota_group = ANY($1) ORDER BY quota_group, account",
        &[&groups],
    )?;
    Ok(rows.iter().map(from_row).collect())
}

/// The rows of `group`'s configured `accounts`, in that order (empty rows where missing).
pub fn rows_for_accounts<'a>(
    rows: &[BackoffRow],
    group: &str,
    accounts: impl IntoIterator<Item = &'a str>,
) -> Vec<BackoffRow> {
    accounts
        .into_iter()
        .map(|account| {
            rows.iter()
                .find(|row| row.quota_group == group && row.account == account)
                .cloned()
                .unwrap_or_else(|| BackoffRow::empty(group, account))
        })
        .collect()
}
