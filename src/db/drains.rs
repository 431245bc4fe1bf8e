//! The `drains` table: one control row per drain — pause and burst live here and nowhere
//! else, so the shell, supervise and any UI agree.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::error::Result;

#[derive(Debug, Clone)]
pub struct DrainControls {
    pub id: i32,
    pub name: String,
    pub paused_at: Option<DateTime<Utc>>,
    pub pause_note: Option<String>,
    pub burst_until: Option<DateTime<Utc>>,
    pub burst_note: Option<String>,
    pub burst_started_at: Option<DateTime<Utc>>,
}

impl DrainControls {
    pub fn is_paused(&self) -> bool {
        self.paused_at.is_some()
    }

    /// The deadline of the burst in force at `now`.
    pub fn active_burst(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.burst_until.filter(|until| now < *until)
    }

    /// The deadline of a burst that has passed at `now` but is not cleared yet.
    pub fn expired_burst(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.burst_until.filter(|until| *until <= now)
    }
}

fn from_row(row: &postgres::Row) -> DrainControls {
    DrainControls {
        id: row.get(0),
        name: row.get(1),
        paused_at: row.get(2),
        pause_note: row.get(3),
        burst_until: row.get(4),
        burst_note: row.get(5),
        burst_started_at: row.get(6),
    }
}

/// The control row of `name`, created on first sight.
pub fn ensure_drain(
    client: &mut impl GenericClient,
    name: &str,
    now: DateTime<Utc>,
) -> Result<DrainControls> {
    client.execute(
        "INSERT INTO drains (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&name, &now],
    )?;
    let row = client.query_one(
        "SELECT id, name, paused_at, pause_note, burst_until, burst_note, burst_started_at
           FROM drains WHERE name = $1",
        &[&name],
    )?;
    Ok(from_row(&row))
}

/// What a running pass re-reads before every item (with its claim, see
/// `items::claim_next_item`): its drain's pause and burst and its quota group's backoff.
#[derive(Debug, Clone, Default)]
pub struct PassControls {
    pub paused_at: Option<DateTime<Utc>>,
    pub pause_note: Option<String>,
    pub burst_until: Option<DateTime<Utc>>,
    pub backoff_until: Option<DateTime<Utc>>,
    pub backoff_reason: Option<String>,
    /// The group carries a suspected mark (or needs attention) that a success clears.
    pub is_suspected: bool,
    /// The pass's run is still `running`: false once `supervise` ended it (hung, crashed),
    /// and then the claim took nothing.
    pub is_run_live: bool,
    /// The quota group is parked until an operator clears it (docs/rate-limits.md).
    pub parked_at: Option<DateTime<Utc>>,
    pub parked_reason: Option<String>,
    /// A higher-ranking drain of the quota group works and has items: the claim took
    /// nothing and the pass yields to it (docs/rate-limits.md, "Priority within a group").
    pub yields_to: Option<Ahead>,
}

/// The drain of the quota group a claim yielded to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ahead {
    pub name: String,
    pub priority: i32,
    pub is_bursting: bool,
}

/// Create the control rows of these drains that do not exist yet (one statement).
pub fn ensure_drains(client: &mut impl GenericClient, names: &[String], now: DateTime<Utc>) -> Result<()> {
    client.execute(
        "INSERT INTO drains (name, created_at) SELECT unnest($1::text[]), $2 ON CONFLICT (name) DO NOTHING",
        &[&names, &now],
    )?;
    Ok(())
}

/// Control rows of these drains (missing ones are absent).
pub fn read_controls(client: &mut impl GenericClient, names: &[String]) -> Result<Vec<DrainControls>> {
    let rows = client.query(
        "SELECT id, name, paused_at, pause_note, burst_until, burst_note, burst_started_at
           FROM drains WHERE name = ANY($1) ORDER BY name",
        &[&names],
    )?;
    Ok(rows.iter().map(from_row).collect())
}

/// The control rows of `names`, and of every other drain whose burst deadline passed by
/// `now`: a drain the configuration no longer names still has its burst expired by a
/// supervise pass, or its `burst_expired` would never be recorded (docs/operations.md,
/// "Running the supervisor").
pub fn read_controls_and_expired_bursts(
    client: &mut impl GenericClient,
    names: &[String],
    now: DateTime<Utc>,
) -> Result<Vec<DrainControls>> {
    let rows = client.query(
        "SELECT id, name, paused_at, pause_note, burst_until, burst_note, burst_started_at
           FROM drains WHERE name = ANY($1) OR burst_until <= $2 ORDER BY name",
        &[&names, &now],
    )?;
    Ok(rows.iter().map(from_row).collect())
}

/// The drains not among `names` (the configured ones) that have a burst set, running or
/// expired and not yet cleared: `burst status` lists them too.
pub fn other_drains_with_a_burst(client: &mut impl GenericClient, names: &[String]) -> Result<Vec<String>> {
    let rows = client.query(
        "SELECT name FROM drains WHERE burst_until IS NOT NULL AND NOT (name = ANY($1)) ORDER BY name",
        &[&names],
    )?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// A `--note` (of `pause`, `burst on`) as given: `None` when left out (a note already
/// there is kept), `Some(None)` when given empty or blank (it clears it), else the note.
pub fn given_note(note: &Option<String>) -> Option<Option<&str>> {
    note.as_deref().map(|note| Some(note).filter(|note| !note.trim().is_empty()))
}

/// A pause as `set_pause` left it.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    /// When the drain was paused, if it already was before this pause.
    pub was_paused_since: Option<DateTime<Utc>>,
    /// The note in force before this pause.
    pub previous_note: Option<String>,
    /// The note in force now.
    pub note: Option<String>,
}

/// Pause the drain. A drain already paused stays paused since its first pause, and keeps
/// its note unless `note` is given (an empty one clears it) (docs/operations.md).
pub fn set_pause(
    client: &mut impl GenericClient,
    name: &str,
    note: Option<Option<&str>>,
    now: DateTime<Utc>,
) -> Result<Pause> {
    let is_note_given = note.is_some();
    let note = note.flatten();
    let row = client.query_one(
        "WITH before AS (SELECT name, paused_at, pause_note FROM drains WHERE name = $1 FOR UPDATE)
         UPDATE drains SET paused_at = coalesce(drains.paused_at, $2),
                pause_note = CASE WHEN $4 OR drains.paused_at IS NULL THEN $3 ELSE drains.pause_note END
           FROM before
          WHERE drains.name = before.name
         RETURNING before.paused_at, before.pause_note, drains.pause_note",
        &[&name, &now, &note, &is_note_given],
    )?;
    Ok(Pause { was_paused_since: row.get(0), previous_note: row.get(1), note: row.get(2) })
}

/// Clear the pause; true when it was paused.
pub fn clear_pause(client: &mut impl GenericClient, name: &str) -> Result<bool> {
    let updated = client.execute(
        "UPDATE drains SET paused_at = NULL, pause_note = NULL WHERE name = $1 AND paused_at IS NOT NULL",
        &[&name],
    )?;
    Ok(updated > 0)
}

pub fn set_burst(
    client: &mut impl GenericClient,
    name: &str,
    until: DateTime<Utc>,
    note: Option<&str>,
    started_at: DateTime<Utc>,
) -> Result<()> {
    client.execute(
        "UPDATE drains SET burst_until = $2, burst_note = $3, burst_started_at = $4 WHERE name = $1",
        &[&name, &until, &note, &started_at],
    )?;
    Ok(())
}

/// Clear the burst of `name`. With `only_if_until`, clear only if the deadline is still
/// that value (so an expiry never clears a burst that was just moved). True if cleared.
pub fn clear_burst(
    client: &mut impl GenericClient,
    name: &str,
    only_if_until: Option<DateTime<Utc>>,
) -> Result<bool> {
    let updated = match only_if_until {
        Some(until) => client.execute(
            "UPDATE drains SET burst_until = NULL, burst_note = NULL, burst_started_at = NULL
              WHERE name = $1 AND burst_until = $2",
            &[&name, &until],
        )?,
        None => client.execute(
            "UPDATE drains SET burst_until = NULL, burst_note = NULL, burst_started_at = NULL
              WHERE name = $1 AND burst_until IS NOT NULL",
            &[&name],
        )?,
    };
    Ok(updated > 0)
}

/// SQL: event `e` is a `burst_expired` stating its deadline, and the drain's latest burst
/// event — nothing was done to the burst since (`burst on`, `off`, a move, an expiry, a
/// restoration).
macro_rules! last_burst_event_is_expiry {
    () => {
        "e.kind = 'burst_expired' AND jsonb_typeof(e.data->'burst_until') = 'string'
         AND NOT EXISTS (SELECT 1 FROM events later
                          WHERE later.drain = e.drain AND later.id > e.id
                            AND later.kind IN ('burst_on', 'burst_off', 'burst_moved', 'burst_expired',
                                               'burst_restored'))"
    };
}

/// A burst a supervise pass of this host ended while its clock ran ahead, its deadline
/// still to come ([`bursts_ended_ahead`]).
#[derive(Debug, Clone, PartialEq)]
pub struct BurstEndedAhead {
    pub drain: String,
    /// Its `burst_expired` event, and when that is stamped.
    pub event_id: i64,
    pub ended_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub note: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
}

/// The bursts of `names` that a supervise pass of `host` stamped more than a minute ahead
/// of `now` (after `ahead_of`) recorded as expired while their deadline is still to come
/// at `now`, with nothing done to the burst since (no `burst on`, `off`, expiry or
/// restoration recorded after it, none set now).
pub fn bursts_ended_ahead(
    client: &mut impl GenericClient,
    names: &[String],
    host: &str,
    now: DateTime<Utc>,
    ahead_of: DateTime<Utc>,
) -> Result<Vec<BurstEndedAhead>> {
    let rows = client.query(
        concat!(
            "SELECT e.drain, e.id, e.at, (e.data->>'burst_until')::timestamptz, e.data->>'note',
                    (e.data->>'started_at')::timestamptz
               FROM events e JOIN drains d ON d.name = e.drain
              WHERE e.at > $4 AND e.drain = ANY($1)
                AND d.burst_until IS NULL
                AND (e.data->>'burst_until')::timestamptz > $3
                AND EXISTS (SELECT 1 FROM supervisor_passes p
                             WHERE p.host = $2 AND p.fired_at > $4 AND p.fired_at <= e.at
                               AND e.at <= p.fired_at + (p.duration_ms + 1000) * interval '1 millisecond')
                AND ",
            last_burst_event_is_expiry!(),
            " ORDER BY e.drain"
        ),
        &[&names, &host, &now, &ahead_of],
    )?;
    Ok(rows
        .iter()
        .map(|row| BurstEndedAhead {
            drain: row.get(0),
            event_id: row.get(1),
            ended_at: row.get(2),
            until: row.get(3),
            note: row.get(4),
            started_at: row.get(5),
        })
        .collect())
}

/// The deadline of the burst of `name` whose `burst_expired` is its latest burst event:
/// one a supervise pass whose clock ran ahead may have ended, which the next pass of that
/// host sets again ([`bursts_ended_ahead`]) unless `burst off` says not to.
pub fn last_burst_expiry(client: &mut impl GenericClient, name: &str) -> Result<Option<DateTime<Utc>>> {
    let row = client.query_opt(
        concat!(
            "SELECT (e.data->>'burst_until')::timestamptz FROM events e WHERE e.drain = $1 AND ",
            last_burst_event_is_expiry!(),
            " ORDER BY e.id DESC LIMIT 1"
        ),
        &[&name],
    )?;
    Ok(row.map(|row| row.get(0)))
}

/// Set the burst of `name` again as it was, unless one is set: true if it was.
pub fn restore_burst(client: &mut impl GenericClient, ended: &BurstEndedAhead) -> Result<bool> {
    let updated = client.execute(
        "UPDATE drains SET burst_until = $2, burst_note = $3, burst_started_at = $4
          WHERE name = $1 AND burst_until IS NULL",
        &[&ended.drain, &ended.until, &ended.note, &ended.started_at],
    )?;
    Ok(updated > 0)
}

/// Has drainctl ever seen a drain called `name` (it may have left the configuration)?
pub fn drain_row_exists(client: &mut impl GenericClient, name: &str) -> Result<bool> {
    let row = client.query_one("SELECT EXISTS (SELECT 1 FROM drains WHERE name = $1)", &[&name])?;
    Ok(row.get(0))
}
