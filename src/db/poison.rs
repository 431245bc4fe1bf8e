//! Poison items (docs/rate-limits.md, "Poison items"): an item's quota hits in a row while
//! the rest of its group works, the charge of such a hit as a failure attempt, and taking
//! a charge back when the group's next hit shows the window was spent, not the item.

use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::GenericClient;

use crate::error::Result;

/// Whether the item `i` still counts the attempt of its open charge `c`: no `retry`,
/// `enqueue --replace` or changed source file reset its attempts since. A reset made by
/// this release nulls the charge's count (`uncount_charges`); one made before it (by a
/// release before migration 0019, which left the count) shows as a later attempt of the
/// item numbered no higher than the count — without a reset every later attempt is
/// numbered above it, a take-back lowering both together.
macro_rules! counts_charge {
    () => {
        "(coalesce(i.attempts >= c.attempts_at_charge, false)
          AND NOT EXISTS (SELECT 1 FROM attempts l
                           WHERE l.item_id = i.id AND l.id > c.attempt_id
                             AND l.attempt <= c.attempts_at_charge))"
    };
}

/// Whether taking a charge back makes its item (`i`, with its charge `c`) pending again:
/// it is dead, its attempts still count the charge (`counts_charge`), and the attempt
/// given back leaves it one to spare by its drain's `max_attempts` (the statement's
/// parameter `$max`).
macro_rules! revives {
    ($max:literal) => {
        concat!("i.state = 'dead' AND ", counts_charge!(), " AND i.attempts - 1 < ", $max)
    };
}

/// Count a quota hit of `item_id` by `run_id` towards its streak (docs/rate-limits.md,
/// "Poison items") and return the streak: one more than before when the item's previous
/// attempt was its previous hit, and since that hit finished an item of `group_drains`
/// finished done and none finished with a hit; else 1. Call in the transaction that
/// settles the hit.
pub fn count_quota_hit(
    client: &mut impl GenericClient,
    quota_group: &str,
    item_id: i64,
    run_id: i64,
    group_drains: &[String],
) -> Result<i32> {
    // Two passes of the group meeting the limit together count their hits one after the
    // other (until the counting transaction ends), so the second sees the first: in a
    // statement of its own, as a statement sees what committed before it began.
    client.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&crate::db::QUOTA_HIT_LOCK_CLASS, &quota_group],
    )?;
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
                    -- nor is hitting one now: counted, its outcome not yet recorded —
                    -- after the item's previous hit, which is recorded, whenever the
                    -- attempt started (read from the group's running items, a few)
                    AND NOT EXISTS (
                        SELECT 1 FROM items o JOIN attempts a ON a.id = o.last_quota_hit_attempt
                         WHERE o.drain = ANY($3) AND o.state = 'running' AND o.id <> $1
                           AND a.finished_at IS NULL)
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

/// Open a poison charge: `run_id`'s attempt of `item_id`, just charged as a failure on
/// `account`, with the reset its limit line stated (`None`: none, or not one to go by),
/// until a later limit of the group, or the end of its window, settles it
/// ([`settle_charges`]). Call in the transaction that records the charged failure, once
/// it is recorded.
pub fn open_charge(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
    item_id: i64,
    run_id: i64,
    stated_reset: Option<DateTime<Utc>>,
) -> Result<()> {
    client.execute(
        "INSERT INTO open_charges (attempt_id, item_id, quota_group, account, stated_reset, attempts_at_charge)
         SELECT a.id, a.item_id, $1, $2, $5, i.attempts FROM attempts a JOIN items i ON i.id = a.item_id
          WHERE a.id = (SELECT max(id) FROM attempts WHERE item_id = $3 AND run_id = $4)
         ON CONFLICT (attempt_id) DO NOTHING",
        &[&group, &account, &item_id, &run_id, &stated_reset],
    )?;
    Ok(())
}

/// A charge taken back by [`settle_charges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenBack {
    pub item_id: i64,
    pub key: String,
    pub drain: String,
    pub quota_group: String,
    /// The run that charged it.
    pub run_id: i64,
    /// The charged attempt's number.
    pub attempt: i32,
    /// The item was dead (by the charge, or by a later failure with the charge's attempt
    /// now to spare): it is pending again.
    pub revived: bool,
    /// The item got the attempt back: its attempts were not reset (a retry, a replace)
    /// since the charge.
    pub given_back: bool,
    /// Why, in words: what showed the window was spent.
    pub why: String,
}

/// The quota hit that settles charges: its item, the run it ran in, and its drain.
#[derive(Debug, Clone, Copy)]
pub struct SettlingHit<'a> {
    pub item_id: i64,
    pub run_id: i64,
    pub key: &'a str,
    pub drain: &'a str,
}

/// What settles a charge: a later limit of the group on its account, or the end of the
/// window it met (a `supervise` pass after its stated reset).
#[derive(Debug, Clone, Copy)]
pub enum Settler<'a> {
    Hit(SettlingHit<'a>),
    WindowEnded,
}

/// An open charge to settle: its attempt, and the quota group and account it ran on.
#[derive(Debug, Clone)]
pub struct OpenCharge {
    pub attempt_id: i64,
    pub quota_group: String,
    pub account: String,
}

fn open_charges(
    client: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<OpenCharge>> {
    Ok(client
        .query(sql, params)?
        .iter()
        .map(|row| OpenCharge { attempt_id: row.get(0), quota_group: row.get(1), account: row.get(2) })
        .collect())
}

/// The open charges of `account` of `group`, oldest first: what its limit settles.
pub fn open_charges_of(
    client: &mut impl GenericClient,
    group: &str,
    account: &str,
) -> Result<Vec<OpenCharge>> {
    open_charges(
        client,
        "SELECT attempt_id, quota_group, account FROM open_charges
          WHERE quota_group = $1 AND account = $2 ORDER BY attempt_id",
        &[&group, &account],
    )
}

/// The open charges whose stated reset has passed, oldest first: the window each met is
/// over, so what the group did in it decides, even when no later limit comes — a dead
/// item meets none (docs/rate-limits.md, "Poison items").
pub fn ended_charges(client: &mut impl GenericClient, now: DateTime<Utc>) -> Result<Vec<OpenCharge>> {
    open_charges(
        client,
        "SELECT attempt_id, quota_group, account FROM open_charges WHERE stated_reset <= $1 ORDER BY attempt_id",
        &[&now],
    )
}

/// Settle `charges` (each on its own, see [`settle_charge`]) in the caller's transaction,
/// and return those taken back.
pub fn settle_charges(
    client: &mut impl GenericClient,
    charges: &[OpenCharge],
    settler: Settler,
    group_drains_of: &dyn Fn(&str) -> Vec<String>,
    max_attempts_of: &dyn Fn(&str) -> i32,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<Vec<TakenBack>> {
    let mut taken = Vec::new();
    for charge in charges {
        let drains = group_drains_of(&charge.quota_group);
        let settled = settle_charge(client, charge, settler, &drains, max_attempts_of, zone, now)?;
        taken.extend(settled);
    }
    Ok(taken)
}

/// One open charge as [`settle_charge`] reads it.
struct Charge {
    item_id: i64,
    drain: String,
    /// Running under another run's claim: its own outcome comes first.
    is_running_elsewhere: bool,
    finished_at: Option<DateTime<Utc>>,
    is_failure: bool,
    stated_reset: Option<DateTime<Utc>>,
}

fn read_charge(client: &mut impl GenericClient, attempt_id: i64, hit_run: i64) -> Result<Option<Charge>> {
    let row = client.query_opt(
        "SELECT c.item_id, i.drain, i.state = 'running' AND i.claimed_by IS DISTINCT FROM $2,
                a.finished_at, a.outcome IS NOT DISTINCT FROM 'failure', c.stated_reset
           FROM open_charges c JOIN attempts a ON a.id = c.attempt_id JOIN items i ON i.id = c.item_id
          WHERE c.attempt_id = $1",
        &[&attempt_id, &hit_run],
    )?;
    Ok(row.map(|row| Charge {
        item_id: row.get(0),
        drain: row.get(1),
        is_running_elsewhere: row.get(2),
        finished_at: row.get(3),
        is_failure: row.get(4),
        stated_reset: row.get(5),
    }))
}

/// Settle one open charge at a limit of its account, or at the end of its window. An
/// attempt of `group_drains` on the account, of another item, that started after the
/// charged attempt finished — and before the reset its line stated, when it stated one —
/// and succeeded (a result staged and not yet committed counts) confirms the charge.
/// Without one, and with none such still running (its outcome decides, later), the window
/// was spent, not the charged item, when the limit is another item's, or once the stated
/// reset has passed: its attempt becomes a quota hit again, the item gets the attempt
/// back (unless its attempts were reset since: a retry, a replace), and a dead item with
/// an attempt to spare by its drain's `max_attempts` is pending again. Left open: the
/// charged item's own hit before its stated reset (or with none), a charged item running
/// under another claim, or held by another transaction right now (never waited for).
fn settle_charge(
    client: &mut impl GenericClient,
    open: &OpenCharge,
    settler: Settler,
    group_drains: &[String],
    max_attempts_of: &dyn Fn(&str) -> i32,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<Option<TakenBack>> {
    let Some(charge) = due_charge(client, open, settler, now)? else {
        return Ok(None);
    };
    let held =
        client.query_opt("SELECT 1 FROM items WHERE id = $1 FOR UPDATE SKIP LOCKED", &[&charge.item_id])?;
    if held.is_none() {
        return Ok(None);
    }
    // Read again under the item's lock: a settling that held it first has settled it.
    let Some(charge) = read_charge(client, open.attempt_id, settler.run_id())? else {
        return Ok(None);
    };
    let taken = match judge(client, open, &charge, settler, group_drains, now)? {
        Verdict::Open => return Ok(None),
        Verdict::Stands => None,
        Verdict::TakeBack(why) => {
            let why = why.describe(zone);
            refund(client, open.attempt_id, charge.item_id, why, max_attempts_of(&charge.drain), now)?
        }
    };
    client.execute("DELETE FROM open_charges WHERE attempt_id = $1", &[&open.attempt_id])?;
    Ok(taken)
}

/// The drain of each item that settling the charges whose window has ended would make
/// pending again, read without changing or locking anything: what `supervise --dry-run`
/// shows the real pass would start (docs/operations.md).
pub fn revivals_at_window_end(
    client: &mut impl GenericClient,
    group_drains_of: &dyn Fn(&str) -> Vec<String>,
    max_attempts_of: &dyn Fn(&str) -> i32,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    // An item charged twice in one window is revived once (the first take-back makes it
    // pending; the second finds it so).
    let mut revived: Vec<(i64, String)> = Vec::new();
    for open in ended_charges(client, now)? {
        let Some(charge) = due_charge(client, &open, Settler::WindowEnded, now)? else { continue };
        let group_drains = group_drains_of(&open.quota_group);
        let verdict = judge(client, &open, &charge, Settler::WindowEnded, &group_drains, now)?;
        if !matches!(verdict, Verdict::TakeBack(_)) || revived.iter().any(|(item, _)| *item == charge.item_id)
        {
            continue;
        }
        let revives = client.query_opt(
            concat!(
                "SELECT ",
                revives!("$2"),
                " FROM items i JOIN open_charges c ON c.item_id = i.id WHERE c.attempt_id = $1"
            ),
            &[&open.attempt_id, &max_attempts_of(&charge.drain)],
        )?;
        if revives.is_some_and(|row| row.get::<_, Option<bool>>(0) == Some(true)) {
            revived.push((charge.item_id, charge.drain));
        }
    }
    Ok(revived.into_iter().map(|(_, drain)| drain).collect())
}

impl Settler<'_> {
    /// The item of the hit that settles; 0 for the end of a window.
    fn item_id(self) -> i64 {
        match self {
            Settler::Hit(hit) => hit.item_id,
            Settler::WindowEnded => 0,
        }
    }

    /// The run of the hit that settles; 0 for the end of a window.
    fn run_id(self) -> i64 {
        match self {
            Settler::Hit(hit) => hit.run_id,
            Settler::WindowEnded => 0,
        }
    }
}

impl Charge {
    /// Its stated reset has passed: the window it met is over.
    fn is_window_over(&self, now: DateTime<Utc>) -> bool {
        self.stated_reset.is_some_and(|reset| now >= reset)
    }
}

/// The charge, read, when `settler` may settle it now: another item's limit speaks of the
/// window at once; the item's own, or none, only once the window is over. A charged item
/// running under another claim waits for its own outcome.
fn due_charge(
    client: &mut impl GenericClient,
    open: &OpenCharge,
    settler: Settler,
    now: DateTime<Utc>,
) -> Result<Option<Charge>> {
    let Some(charge) = read_charge(client, open.attempt_id, settler.run_id())? else {
        return Ok(None);
    };
    let is_another_items_hit = matches!(settler, Settler::Hit(hit) if hit.item_id != charge.item_id);
    let is_due = (is_another_items_hit || charge.is_window_over(now)) && !charge.is_running_elsewhere;
    Ok(is_due.then_some(charge))
}

/// What settling a due charge decides.
enum Verdict {
    /// Not yet: an attempt of the window is still running (or the charged one is).
    Open,
    /// Confirmed (or it was never recorded as a failure): closed as it is.
    Stands,
    /// The window was spent, not the item: why.
    TakeBack(WhyTakenBack),
}

/// Why a charge is taken back: another item met the limit next, or the window ended, in
/// either case with no item that started after the charge succeeding (`reset`: the one
/// the charged limit stated).
enum WhyTakenBack {
    NextHit { key: String, drain: String, reset: Option<DateTime<Utc>> },
    WindowEnded { reset: Option<DateTime<Utc>> },
}

impl WhyTakenBack {
    /// In words, its instants in `zone` (`[defaults] timezone`), as every message shows them.
    fn describe(&self, zone: chrono_tz::Tz) -> String {
        let shown = |at: DateTime<Utc>| crate::output::local_time(at, zone);
        match self {
            WhyTakenBack::NextHit { key, drain, reset } => format!(
                "item {key} of drain {drain} met the limit next, before any other item that started after the charge{} succeeded",
                reset.map_or(String::new(), |reset| format!(" (and before the window's reset at {})", shown(reset)))
            ),
            WhyTakenBack::WindowEnded { reset } => format!(
                "the window it met ended at {} with no other item that started after the charge succeeding in it",
                reset.map_or_else(|| "its reset".to_string(), shown)
            ),
        }
    }
}

/// Judge a due charge by what the group did on its account after it, inside its window.
fn judge(
    client: &mut impl GenericClient,
    open: &OpenCharge,
    charge: &Charge,
    settler: Settler,
    group_drains: &[String],
    now: DateTime<Utc>,
) -> Result<Verdict> {
    let Some(finished_at) = charge.finished_at else {
        return Ok(Verdict::Open);
    };
    if !charge.is_failure {
        return Ok(Verdict::Stands);
    }
    let hit_item = settler.item_id();
    let row = client.query_one(
        "WITH since AS (
             SELECT a.outcome, a.finished_at, r.status AS run_status,
                    EXISTS (SELECT 1 FROM staged_results s
                             WHERE s.item_id = a.item_id AND s.run_id = a.run_id) AS is_staged
               FROM attempts a JOIN items o ON o.id = a.item_id LEFT JOIN runs r ON r.id = a.run_id
              WHERE a.id > $1 AND a.account = $2 AND o.drain = ANY($3) AND a.item_id NOT IN ($6, $7)
                AND a.started_at > $4 AND a.started_at < coalesce($5, 'infinity'::timestamptz))
         SELECT EXISTS (SELECT 1 FROM since WHERE outcome = 'done' OR (outcome IS NULL AND is_staged)),
                EXISTS (SELECT 1 FROM since WHERE finished_at IS NULL AND NOT is_staged AND run_status = 'running')",
        &[&open.attempt_id, &open.account, &group_drains, &finished_at, &charge.stated_reset, &charge.item_id, &hit_item],
    )?;
    let (worked, still_running): (bool, bool) = (row.get(0), row.get(1));
    if worked {
        return Ok(Verdict::Stands);
    }
    if still_running {
        return Ok(Verdict::Open);
    }
    let why = match (settler, charge.stated_reset) {
        (Settler::Hit(hit), reset) if !charge.is_window_over(now) => {
            WhyTakenBack::NextHit { key: hit.key.to_string(), drain: hit.drain.to_string(), reset }
        }
        (_, reset) => WhyTakenBack::WindowEnded { reset },
    };
    Ok(Verdict::TakeBack(why))
}

/// The attempts of `item_ids` were just reset (`retry`, `enqueue --replace`, a changed
/// source file): their open charges no longer count an attempt, so a take-back gives the
/// item nothing back — neither an attempt nor, if it is dead again, its life (it died on
/// its own since). Call in the transaction that resets them.
pub fn uncount_charges(client: &mut impl GenericClient, item_ids: &[i64]) -> Result<()> {
    client
        .execute("UPDATE open_charges SET attempts_at_charge = NULL WHERE item_id = ANY($1)", &[&item_ids])?;
    Ok(())
}

/// Give a charged attempt back (see [`settle_charge`]); call with the item locked.
fn refund(
    client: &mut impl GenericClient,
    attempt_id: i64,
    item_id: i64,
    why: String,
    max_attempts: i32,
    now: DateTime<Utc>,
) -> Result<Option<TakenBack>> {
    let note = format!("charge taken back ({why}): ");
    // `counted`: the item's attempts still count the charge (no retry or replace reset
    // them since: `uncount_charges`); the item's later open charges then count one
    // attempt fewer too.
    let row = client.query_opt(
        concat!(
            "WITH target AS (
             SELECT i.id, ",
            counts_charge!(),
            " AS counted, c.quota_group,
                    (SELECT error FROM attempts WHERE id = $1) AS charged_error,
                    ",
            revives!("$5"),
            " AS revives,
                    NOT EXISTS (SELECT 1 FROM attempts l WHERE l.item_id = i.id AND l.id > $1) AS was_last
               FROM items i JOIN open_charges c ON c.attempt_id = $1 WHERE i.id = $2),
         attempt AS (
             UPDATE attempts SET outcome = 'quota_hit', error = $3 || coalesce(error, '')
              WHERE id = $1 RETURNING attempt, run_id),
         later AS (
             UPDATE open_charges SET attempts_at_charge = attempts_at_charge - 1
              WHERE item_id = $2 AND attempt_id > $1 AND (SELECT counted FROM target)),
         item AS (
             UPDATE items i SET
                    attempts = CASE WHEN t.counted THEN greatest(i.attempts - 1, 0) ELSE i.attempts END,
                    quota_hit_streak = 0, last_quota_hit_attempt = NULL,
                    state = CASE WHEN t.revives THEN 'pending' ELSE i.state END,
                    available_at = CASE WHEN t.revives OR (i.state = 'pending' AND t.was_last)
                                        THEN $4 ELSE i.available_at END,
                    finished_at = CASE WHEN t.revives THEN NULL ELSE i.finished_at END,
                    claimed_by = CASE WHEN t.revives THEN NULL ELSE i.claimed_by END,
                    last_error = CASE WHEN t.was_last OR i.last_error IS NOT DISTINCT FROM t.charged_error
                                      THEN $3 || coalesce(i.last_error, '') ELSE i.last_error END,
                    updated_at = $4
               FROM target t WHERE i.id = t.id
             RETURNING i.key, i.drain, coalesce(t.revives, false) AS revives, t.quota_group, t.counted)
         SELECT item.key, item.drain, item.revives, attempt.attempt, attempt.run_id, item.quota_group,
                item.counted
           FROM item, attempt"
        ),
        &[&attempt_id, &item_id, &note, &now, &max_attempts],
    )?;
    Ok(row.map(|row| TakenBack {
        item_id,
        key: row.get(0),
        drain: row.get(1),
        revived: row.get(2),
        attempt: row.get(3),
        run_id: row.get(4),
        quota_group: row.get(5),
        given_back: row.get(6),
        why,
    }))
}
