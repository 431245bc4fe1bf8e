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
/// later outcome has settled yet (replacing an earlier one), with the reset its limit line
/// stated (`None`: none, or not one to go by). Call in the transaction that records the
/// charged failure, once it is recorded: it takes the account's row after the item, as a
/// hit's transaction does.
#[allow(clippy::too_many_arguments)]
pub fn remember_charge(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    item_id: i64,
    run_id: i64,
    stated_reset: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "INSERT INTO quota_backoffs (quota_group, account, updated_at, charged_attempt, charged_reset)
         SELECT $1, $2, $3, max(id), $6 FROM attempts WHERE item_id = $4 AND run_id = $5
         ON CONFLICT (quota_group, account) DO UPDATE
            SET charged_attempt = EXCLUDED.charged_attempt, charged_reset = EXCLUDED.charged_reset",
        &[&group, &account, &now, &item_id, &run_id, &stated_reset],
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
    /// The item was dead (by the charge, or by a later failure with the charge's attempt
    /// now to spare): it is pending again.
    pub revived: bool,
    /// Why, in words: what showed the window was spent.
    pub why: String,
}

/// The account's open charge: its attempt, the item and its drain, when it finished,
/// whether it is still the recorded failure, and the reset its line stated.
struct OpenCharge {
    attempt_id: i64,
    item_id: i64,
    drain: String,
    finished_at: Option<DateTime<Utc>>,
    is_failure: bool,
    stated_reset: Option<DateTime<Utc>>,
}

fn open_charge(client: &mut impl GenericClient, group: &str, account: &str) -> Result<Option<OpenCharge>> {
    let row = client.query_opt(
        "SELECT b.charged_attempt, a.item_id, i.drain, a.finished_at, a.outcome IS NOT DISTINCT FROM 'failure',
                b.charged_reset
           FROM quota_backoffs b
           JOIN attempts a ON a.id = b.charged_attempt
           JOIN items i ON i.id = a.item_id
          WHERE b.quota_group = $1 AND b.account = $2",
        &[&group, &account],
    )?;
    Ok(row.map(|row| OpenCharge {
        attempt_id: row.get(0),
        item_id: row.get(1),
        drain: row.get(2),
        finished_at: row.get(3),
        is_failure: row.get(4),
        stated_reset: row.get(5),
    }))
}

/// The quota hit that settles a charge: the item that met the limit, and its drain.
#[derive(Debug, Clone, Copy)]
pub struct SettlingHit<'a> {
    pub item_id: i64,
    pub key: &'a str,
    pub drain: &'a str,
}

/// Settle the account's open charge now that `hit` of the group met a limit on it
/// (docs/rate-limits.md, "Poison items"). A success of `group_drains` on the account
/// that started after the charged attempt finished — and before the reset its line
/// stated, when it stated one — confirms the charge (a result staged and not yet
/// committed counts). Without one, the window was spent, not the charged item, when the
/// hit is another item's, or the charged item's own once the stated reset has passed:
/// its attempt becomes a quota hit again, the item gets the attempt back and is
/// available now, its row starts again, and a dead item with an attempt to spare by
/// `max_attempts` (of its drain; `None`: not configured, left dead) is pending again.
/// Either way the charge is settled. The charged item's own hit before its stated reset
/// (or with none) leaves it open, and so does a charged item another transaction holds
/// right now (its own pass settling it): a later hit decides. Never waits for the item's
/// lock, and takes the account's row last, so it never deadlocks with a hit's
/// transaction.
#[allow(clippy::too_many_arguments)]
pub fn take_back_charge(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    hit: SettlingHit,
    group_drains: &[String],
    max_attempts_of: &dyn Fn(&str) -> Option<i32>,
    now: DateTime<Utc>,
) -> Result<Option<TakenBack>> {
    let Some(open) = open_charge(client, group, account)? else {
        return Ok(None);
    };
    let is_own_hit = open.item_id == hit.item_id;
    if is_own_hit && open.stated_reset.is_none_or(|reset| now < reset) {
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
                          WHERE a.id > $1 AND a.account = $2 AND o.drain = ANY($3)
                            AND a.started_at > $4 AND a.started_at < coalesce($5, 'infinity'::timestamptz)
                            AND (a.outcome = 'done'
                                 OR (a.outcome IS NULL
                                     AND EXISTS (SELECT 1 FROM staged_results s
                                                  WHERE s.item_id = a.item_id AND s.run_id = a.run_id))))",
                    &[&open.attempt_id, &account, &group_drains, &finished_at, &open.stated_reset],
                )?
                .get(0);
            if worked {
                None
            } else {
                let why = match open.stated_reset {
                    Some(reset) if is_own_hit => format!(
                        "the window it met ended at {} with no item succeeding in it",
                        reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    ),
                    _ => format!(
                        "item {} of drain {} met the limit next, before any item started since succeeded",
                        hit.key, hit.drain
                    ),
                };
                let max_attempts = max_attempts_of(&open.drain);
                refund(client, open.attempt_id, open.item_id, why, max_attempts, now)?
            }
        }
        // Not finished yet: a later hit decides.
        None => return Ok(None),
        // No longer the charged failure (never recorded as one): nothing to take back.
        Some(_) => None,
    };
    client.execute(
        "UPDATE quota_backoffs SET charged_attempt = NULL, charged_reset = NULL
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
    why: String,
    max_attempts: Option<i32>,
    now: DateTime<Utc>,
) -> Result<Option<TakenBack>> {
    let note = format!("charge taken back ({why}): ");
    let row = client.query_opt(
        "WITH target AS (
             SELECT i.id, i.state = 'dead' AND i.attempts - 1 < $5 AS revives,
                    NOT EXISTS (SELECT 1 FROM attempts l WHERE l.item_id = i.id AND l.id > $1) AS was_last
               FROM items i WHERE i.id = $2),
         attempt AS (
             UPDATE attempts SET outcome = 'quota_hit', error = $3 || coalesce(error, '')
              WHERE id = $1 RETURNING attempt),
         item AS (
             UPDATE items i SET
                    attempts = greatest(i.attempts - 1, 0), quota_hit_streak = 0, last_quota_hit_attempt = NULL,
                    state = CASE WHEN t.revives THEN 'pending' ELSE i.state END,
                    available_at = CASE WHEN t.revives OR i.state = 'pending' THEN $4 ELSE i.available_at END,
                    finished_at = CASE WHEN t.revives THEN NULL ELSE i.finished_at END,
                    claimed_by = CASE WHEN t.revives THEN NULL ELSE i.claimed_by END,
                    last_error = CASE WHEN t.was_last THEN $3 || coalesce(i.last_error, '') ELSE i.last_error END,
                    updated_at = $4
               FROM target t WHERE i.id = t.id
             RETURNING i.key, i.drain, coalesce(t.revives, false) AS revives)
         SELECT item.key, item.drain, item.revives, attempt.attempt FROM item, attempt",
        &[&attempt_id, &item_id, &note, &now, &max_attempts],
    )?;
    Ok(row.map(|row| TakenBack {
        item_id,
        key: row.get(0),
        drain: row.get(1),
        revived: row.get(2),
        attempt: row.get(3),
        why,
    }))
}
