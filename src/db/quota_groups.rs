//! The `quota_groups` table: which account each quota group uses and when it last
//! switched. Claims and quota hits of a group with accounts lock its row first.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::error::Result;

/// A group's choice of account as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupState {
    /// The account in use; `None` means the group's first account.
    pub account: Option<String>,
    /// When the group last switched accounts.
    pub switched_at: Option<DateTime<Utc>>,
}

/// Create the row of `group` if missing, lock it until the transaction ends and return it.
pub fn lock_group(client: &mut impl GenericClient, group: &str, now: DateTime<Utc>) -> Result<GroupState> {
    client.execute(
        "INSERT INTO quota_groups (quota_group, updated_at) VALUES ($1, $2)
         ON CONFLICT (quota_group) DO NOTHING",
        &[&group, &now],
    )?;
    let row = client.query_one(
        "SELECT account, switched_at FROM quota_groups WHERE quota_group = $1 FOR UPDATE",
        &[&group],
    )?;
    Ok(GroupState { account: row.get(0), switched_at: row.get(1) })
}

/// Record that `group` now uses `account`.
pub fn record_switch(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "UPDATE quota_groups SET account = $2, switched_at = $3, updated_at = $3 WHERE quota_group = $1",
        &[&group, &account, &now],
    )?;
    Ok(())
}

/// Forget when `group` last switched accounts, so that no `switch_cooldown` holds it on the
/// account it uses: the next claim goes back to the first usable account at once.
pub fn forget_switch_time(client: &mut impl GenericClient, group: &str, now: DateTime<Utc>) -> Result<()> {
    client.execute(
        "UPDATE quota_groups SET switched_at = NULL, updated_at = $2 WHERE quota_group = $1",
        &[&group, &now],
    )?;
    Ok(())
}

/// The stored state of these groups (groups without a row get the default).
pub fn read_groups(client: &mut impl GenericClient, groups: &[String]) -> Result<Vec<(String, GroupState)>> {
    let rows = client.query(
        "SELECT quota_group, account, switched_at FROM quota_groups WHERE quota_group = ANY($1)",
        &[&groups],
    )?;
    Ok(groups
        .iter()
        .map(|group| {
            let state = rows
                .iter()
                .find(|row| row.get::<_, &str>(0) == group)
                .map(|row| GroupState { account: row.get(1), switched_at: row.get(2) })
                .unwrap_or_default();
            (group.clone(), state)
        })
        .collect())
}

/// A parked quota group: since when and the line that parked it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Parked {
    pub quota_group: String,
    pub parked_at: DateTime<Utc>,
    pub reason: String,
}

/// Park `group` (docs/rate-limits.md, "Parked groups"); true when it was not parked yet.
/// Call with the group's row locked ([`lock_group`]).
pub fn park_group(
    client: &mut impl GenericClient,
    group: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let parked = client.execute(
        "UPDATE quota_groups SET parked_at = $2, parked_reason = $3, updated_at = $2
          WHERE quota_group = $1 AND parked_at IS NULL",
        &[&group, &now, &reason],
    )?;
    Ok(parked == 1)
}

/// Clear the park of `group`; what it was, or None when it was not parked.
pub fn clear_park(
    client: &mut impl GenericClient,
    group: &str,
    now: DateTime<Utc>,
) -> Result<Option<Parked>> {
    let row = client.query_opt(
        "UPDATE quota_groups g SET parked_at = NULL, parked_reason = NULL, updated_at = $2
           FROM (SELECT quota_group, parked_at, parked_reason FROM quota_groups
                  WHERE quota_group = $1 AND parked_at IS NOT NULL FOR UPDATE) old
          WHERE g.quota_group = old.quota_group
         RETURNING old.parked_at, old.parked_reason",
        &[&group, &now],
    )?;
    Ok(row.map(|row| Parked {
        quota_group: group.to_string(),
        parked_at: row.get(0),
        reason: row.get::<_, Option<String>>(1).unwrap_or_default(),
    }))
}

/// The parked groups among `groups`.
pub fn read_parked(client: &mut impl GenericClient, groups: &[String]) -> Result<Vec<Parked>> {
    let rows = client.query(
        "SELECT quota_group, parked_at, parked_reason FROM quota_groups
          WHERE quota_group = ANY($1) AND parked_at IS NOT NULL ORDER BY quota_group",
        &[&groups],
    )?;
    Ok(rows
        .iter()
        .map(|row| Parked {
            quota_group: row.get(0),
            parked_at: row.get(1),
            reason: row.get::<_, Option<String>>(2).unwrap_or_default(),
        })
        .collect())
}
