//! Poison items (docs/rate-limits.md, "Poison items"): an item's quota hits in a row while
//! the rest of its group works, the charge of such a hit as a failure attempt, and taking
//! a charge back when the group's next hit shows the window was spent, not the item.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::error::Result;

/// Count a quota hit of `item_id` by `run_id` towards its streak (docs/rate-limits.md,
/// "Poison items") and return the streak: one more than before when the item's previous
/// attempt was its previous hit, and since that hit finished an item of `group_drains`
/// finished done and none finished with a hit; else 1. Call in the transaction that
/// settles the hit.
pub fn count_quota_hit(
    client: &mut impl GenericClient,
    item_id: i64,
    run_id: i64,
    group_drains: &[String],
) -> Result<i32> {
    let row = client.query_one(
        "WITH current AS (
             SELECT max(id) AS id FROM attempts WHERE item_id = $1 AND run_id = $2),
         previous AS (
             SELECT i.quota_hit_streak, i.last_quota_hit_attempt, h.finished_at AS hit_at
               FROM items i LEFT JOIN attempts h ON h.id = i.last_quota_hit_attempt
              WHERE i.id = $1),
         -- what the rest of the group finished after that hit: attempts are numbered by
         -- their start, so one that started a little before it (claimed with it when a
         -- backoff ended) is looked for among the last ones before it too
         since AS (
             SELECT a.outcome FROM attempts a JOIN items o ON o.id = a.item_id, previous p
              WHERE o.drain = ANY($3) AND o.id <> $1
                AND a.id > p.last_quota_hit_attempt - 1000 AND a.finished_at > p.hit_at),
         continues AS (
             SELECT p.last_quota_hit_attempt IS NOT NULL
                    -- in a row: no other attempt of the item since its previous hit (one
                    -- claimed ahead and handed back unstarted is none)
                    AND NOT EXISTS (
                        SELECT 1 FROM attempts a, current c
                         WHERE a.item_id = $1 AND a.id > p.last_quota_hit_attempt AND a.id < c.id
                           AND a.outcome IS DISTINCT FROM 'not_started')
                    -- and no other item of the group hit a limit after it: then the
                    -- whole group was limited, not the item
                    AND NOT EXISTS (SELECT 1 FROM since WHERE outcome = 'quota_hit')
                    -- and the rest of the group worked after it
                    AND EXISTS (SELECT 1 FROM since WHERE outcome = 'done') AS yes
               FROM previous p)
         UPDATE items SET
                quota_hit_streak = CASE WHEN (SELECT yes FROM continues) THEN quota_hit_streak + 1 ELSE 1 END,
                last_quota_hit_attempt = (SELECT id FROM current)
          WHERE id = $1
         RETURNING quota_hit_streak",
        &[&item_id, &run_id, &group_drains],
    )?;
    Ok(row.get(0))
}

/// Remember `run_id`'s attempt of `item_id`, just charged, as the account's charge that no
/// later outcome has settled yet (replacing an earlier one). Call in the transaction that
/// records the charged failure, once it is recorded: it takes the account's row after the
/// item, as a hit's transaction does.
pub fn remember_charge(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    item_id: i64,
    run_id: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "INSERT INTO quota_backoffs (quota_group, account, updated_at, charged_attempt)
         SELECT $1, $2, $3, max(id) FROM attempts WHERE item_id = $4 AND run_id = $5
         ON CONFLICT (quota_group, account) DO UPDATE SET charged_attempt = EXCLUDED.charged_attempt",
        &[&group, &account, &now, &item_id, &run_id],
    )?;
    Ok(())
}

/// A charge taken back by [`take_back_charge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenBack {
    pub item_id: i64,
    pub key: String,
    pub drain: String,
    /// The charged attempt's number.
    pub attempt: i32,
    /// The charge had dead-lettered the item: it is pending again.
    pub revived: bool,
}

/// The account's open charge: its attempt, the item, when it finished and whether it is
/// still the recorded failure.
struct OpenCharge {
    attempt_id: i64,
    item_id: i64,
    finished_at: Option<DateTime<Utc>>,
    is_failure: bool,
}

fn open_charge(client: &mut impl GenericClient, group: &str, account: &str) -> Result<Option<OpenCharge>> {
    let row = client.query_opt(
        "SELECT b.charged_attempt, a.item_id, a.finished_at, a.outcome IS NOT DISTINCT FROM 'failure'
           FROM quota_backoffs b JOIN attempts a ON a.id = b.charged_attempt
          WHERE b.quota_group = $1 AND b.account = $2",
        &[&group, &account],
    )?;
    Ok(row.map(|row| OpenCharge {
        attempt_id: row.get(0),
        item_id: row.get(1),
        finished_at: row.get(2),
        is_failure: row.get(3),
    }))
}

/// Settle the account's open charge now that `hit_item` of the group met a limit on it:
/// when no attempt of `group_drains` on the account that started after the charged one
/// finished has succeeded (a result staged and not yet committed counts), the window was
/// spent, not the charged item — its attempt becomes a quota hit again, the item gets
/// the attempt back and is available now, its row starts again, and an item the charge
/// dead-lettered is pending again. A success started after the charge confirms it.
/// Either way the charge is settled. A hit of the charged item itself leaves it open, and
/// so does a charged item another transaction holds right now (its own pass settling
/// it): the group's next hit decides. Never waits for the item's lock, and takes the
/// account's row last, so it never deadlocks with a hit's transaction.
pub fn take_back_charge(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    hit_item: i64,
    hit_key: &str,
    group_drains: &[String],
    now: DateTime<Utc>,
) -> Result<Option<TakenBack>> {
    let Some(open) = open_charge(client, group, account)? else {
        return Ok(None);
    };
    if open.item_id == hit_item {
        return Ok(None);
    }
    let held =
        client.query_opt("SELECT 1 FROM items WHERE id = $1 FOR UPDATE SKIP LOCKED", &[&open.item_id])?;
    if held.is_none() {
        return Ok(None);
    }
    // Read again under the item's lock: a take-back that held it first settled the charge.
    let Some(open) = open_charge(client, group, account)?.filter(|again| again.attempt_id == open.attempt_id)
    else {
        return Ok(None);
    };
    let taken = match open.finished_at {
        Some(finished_at) if open.is_failure => {
            let worked: bool = client
                .query_one(
                    "SELECT EXISTS (
                         SELECT 1 FROM attempts a JOIN items o ON o.id = a.item_id
                          WHERE a.id > $1 AND a.account = $2 AND o.drain = ANY($3) AND a.started_at > $4
                            AND (a.outcome = 'done'
                                 OR (a.outcome IS NULL
                                     AND EXISTS (SELECT 1 FROM staged_results s
                                                  WHERE s.item_id = a.item_id AND s.run_id = a.run_id))))",
                    &[&open.attempt_id, &account, &group_drains, &finished_at],
                )?
                .get(0);
            if worked {
                None
            } else {
                refund(client, open.attempt_id, open.item_id, hit_key, now)?
            }
        }
        // Not finished yet: the group's next hit decides.
        None => return Ok(None),
        // No longer the charged failure (never recorded as one): nothing to take back.
        Some(_) => None,
    };
    client.execute(
        "UPDATE quota_backoffs SET charged_attempt = NULL
          WHERE quota_group = $1 AND account = $2 AND charged_attempt = $3",
        &[&group, &account, &open.attempt_id],
    )?;
    Ok(taken)
}

/// Give a charged attempt back (see [`take_back_charge`]); call with the item locked.
fn refund(
    client: &mut impl GenericClient,
    attempt_id: i64,
    item_id: i64,
    hit_key: &str,
    now: DateTime<Utc>,
) -> Result<Option<TakenBack>> {
    let note = format!(
        "charge taken back (item {hit_key} met the limit next, before any item started since succeeded): "
    );
    // An item that died of a later failure stays dead, its attempts as they are.
    let row = client.query_opt(
        "WITH target AS (
             SELECT i.id, i.state = 'dead' AS is_dead,
                    NOT EXISTS (SELECT 1 FROM attempts l WHERE l.item_id = i.id AND l.id > $1) AS was_last
               FROM items i WHERE i.id = $2),
         attempt AS (
             UPDATE attempts SET outcome = 'quota_hit', error = $3 || coalesce(error, '')
              WHERE id = $1 RETURNING attempt),
         item AS (
             UPDATE items i SET
                    attempts = CASE WHEN t.is_dead AND NOT t.was_last THEN i.attempts
                                    ELSE greatest(i.attempts - 1, 0) END,
                    quota_hit_streak = 0, last_quota_hit_attempt = NULL,
                    state = CASE WHEN t.is_dead AND t.was_last THEN 'pending' ELSE i.state END,
                    available_at = CASE WHEN (t.is_dead AND t.was_last) OR i.state = 'pending'
                                        THEN $4 ELSE i.available_at END,
                    finished_at = CASE WHEN t.is_dead AND t.was_last THEN NULL ELSE i.finished_at END,
                    claimed_by = CASE WHEN t.is_dead AND t.was_last THEN NULL ELSE i.claimed_by END,
                    last_error = CASE WHEN t.was_last THEN $3 || coalesce(i.last_error, '') ELSE i.last_error END,
                    updated_at = $4
               FROM target t WHERE i.id = t.id
             RETURNING i.key, i.drain, t.is_dead AND t.was_last AS revives)
         SELECT item.key, item.drain, item.revives, attempt.attempt FROM item, attempt",
        &[&attempt_id, &item_id, &note, &now],
    )?;
    Ok(row.map(|row| TakenBack {
        item_id,
        key: row.get(0),
        drain: row.get(1),
        revived: row.get(2),
        attempt: row.get(3),
    }))
}
