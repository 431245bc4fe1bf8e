//! `drainctl burst on|off|status`: run a drain flat out until a deadline.
//!
//! A burst is one row in the database (`drains.burst_until`): the single source of truth
//! for the shell, `supervise` and any UI. While it lasts, `supervise` starts the drain
//! whenever it is idle regardless of its window, and a pass keeps taking items past its
//! item and time budgets until the deadline, an empty backlog, a quota hit or `burst off`;
//! then it goes on as a supervise pass would (docs/operations.md).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;

use crate::cli::{BurstCommand, BurstOnArgs, BurstStatusArgs, NameArg};
use crate::context::Context;
use crate::db::drains::{clear_burst, ensure_drain, given_note, read_controls, set_burst};
use crate::db::events::{record_event, Event};
use crate::db::in_transaction;
use crate::duration::format_relative;
use crate::error::{Error, Result};
use crate::model::EventKind;
use crate::output::{local_time as local, table_cutting_last, Report};
use crate::schedule::forecast::HoldReason;
use crate::schedule::when::{check_deadline, parse_when, WhenError};
use crate::supervise::clock_went_back::read_shared_now;

pub fn run(ctx: &mut Context, command: &BurstCommand) -> Result<Report> {
    match command {
        BurstCommand::On(args) => on(ctx, args),
        BurstCommand::Off(args) => off(ctx, args),
        BurstCommand::Status(args) => status(ctx, args),
    }
}

/// The deadline for `--until WHEN` (or the configured default), checked against
/// `burst_max`. Errors are usage errors naming the value.
pub fn resolve_deadline(
    until: Option<&str>,
    default_until: &str,
    now: DateTime<Utc>,
    zone: Tz,
    max_ahead: std::time::Duration,
) -> Result<DateTime<Utc>> {
    let (text, source) = match until {
        Some(text) => (text, "--until"),
        None => (default_until, "burst_default_until"),
    };
    // The configured default is the configuration's to fix (78), --until the command line's (64).
    let refused = |message: String| match until {
        Some(_) => Error::Usage(message),
        None => Error::Config(message),
    };
    let deadline = parse_when(text, now, zone).map_err(|error| refused(format!("{source}: {error}")))?;
    check_deadline(deadline, now, zone, max_ahead).map_err(|error| {
        let fix = match (&error, until.is_some()) {
            (WhenError::TooFar { .. }, true) => "pick an earlier --until or raise burst_max",
            (WhenError::TooFar { .. }, false) => {
                "give --until WHEN, or change burst_default_until or burst_max"
            }
            (_, true) => "pick a later --until",
            (_, false) => "give --until WHEN, or change burst_default_until",
        };
        refused(format!("{source}: {error}; {fix}"))
    })?;
    Ok(deadline)
}

/// Clear the burst of `drain` (whose controls are `controls`) when its deadline passed
/// before `now`, recording its `burst_expired` event — by `supervise`, or first by a
/// `burst on` or `burst off` that comes before it. The deadline it had, when it cleared one.
pub(crate) fn clear_expired_burst(
    tx: &mut impl postgres::GenericClient,
    outbox: &crate::db::events::Outbox,
    controls: &crate::db::drains::DrainControls,
    zone: Tz,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let drain = &controls.name;
    let Some(until) = controls.expired_burst(now) else { return Ok(None) };
    if !clear_burst(tx, drain, Some(until))? {
        return Ok(None);
    }
    let event = Event::new(
        EventKind::BurstExpired,
        format!("burst of {drain} expired at {}", local(until, zone)),
    )
    .drain(drain)
    .data(
        json!({ "burst_until": until, "note": controls.burst_note, "started_at": controls.burst_started_at }),
    );
    record_event(tx, outbox, &event, now)?;
    Ok(Some(until))
}

fn on(ctx: &mut Context, args: &BurstOnArgs) -> Result<Report> {
    let name = ctx.configured_drain(&args.name)?.name.clone();
    let defaults = &ctx.config.defaults;
    let now = ctx.clock.now();
    let zone = defaults.timezone;
    let deadline = resolve_deadline(
        args.until.as_deref(),
        &defaults.burst_default_until,
        now,
        zone,
        defaults.burst_max,
    )?;
    // Ended by the database server's clock when this one runs ahead (see `read_shared_now`).
    let judged_at = read_shared_now(&mut ctx.client, now, ctx.clock.is_injected())?;
    let (previous, is_paused, note_now) = in_transaction(&mut ctx.client, |tx| {
        let controls = ensure_drain(tx, &name, now)?;
        // One that expired and no supervise pass cleared yet ends as expired first.
        clear_expired_burst(tx, &ctx.outbox, &controls, zone, judged_at)?;
        let previous = controls.active_burst(judged_at);
        // Moving a burst keeps its note unless a new one is given, and when it started
        // (docs/operations.md, "Burst").
        // An empty `--note ""` clears it.
        let given = given_note(&args.note).map(|note| note.map(str::to_string));
        let (note, started_at) = match previous {
            Some(_) => (
                given.unwrap_or_else(|| controls.burst_note.clone()),
                controls.burst_started_at.unwrap_or(now),
            ),
            None => (given.flatten(), now),
        };
        set_burst(tx, &name, deadline, note.as_deref(), started_at)?;
        let (kind, message) = match previous {
            Some(old) => {
                let (from, to) = (local(old, zone), local(deadline, zone));
                // Renewed with the same deadline, or moved by less than the clock shows.
                let message = if from == to {
                    format!("burst of {name} renewed until {to}")
                } else {
                    format!("burst of {name} moved from {from} to {to}")
                };
                (EventKind::BurstMoved, message)
            }
            None => (EventKind::BurstOn, format!("burst of {name} on until {}", local(deadline, zone))),
        };
        let event = Event::new(kind, message)
            .drain(&name)
            .data(json!({ "burst_until": deadline, "previous_until": previous, "note": note }));
        record_event(tx, &ctx.outbox, &event, now)?;
        Ok((previous, controls.is_paused(), note))
    })?;
    // A paused drain is not started, burst or not (docs/operations.md, "Pause and resume").
    // Nor is one whose quota group backs off, or whose daily cost budget is spent: the
    // burst waits for the reset or the budget's next day (docs/operations.md, "Burst").
    let drain = crate::commands::status::status_view(&mut ctx.client, &ctx.config, now)?
        .drains
        .into_iter()
        .find(|drain| drain.drain == name);
    let backoff_until = drain.as_ref().and_then(|drain| drain.backoff_until).filter(|until| *until > now);
    // The hold that ends last, as the burst's forecast counts it.
    let hold =
        drain.as_ref().and_then(|drain| drain.forecast.burst_held_until.zip(drain.forecast.burst_held_by));
    let budget_spent_until =
        drain.as_ref().and_then(|drain| drain.budget_spent_until()).filter(|until| *until > now);
    // A pass already waiting inside itself for the group's reset goes on then.
    let is_waiting = drain.as_ref().and_then(|drain| drain.waiting_until).is_some_and(|until| until > now);
    let parked_group =
        drain.as_ref().filter(|drain| drain.parked_at.is_some()).map(|drain| drain.quota_group.clone());
    // Pending items all held by their retry delay: no pass has one to take before then.
    let items_held_until =
        crate::db::items::first_available_at(&mut ctx.client, &name)?.filter(|at| *at > now);
    // With `max_wait = "0s"` no pass waits for a reset: the first after it starts.
    let may_wait = ctx.config.drain(&name).map_or(true, |drain| !drain.max_wait.is_zero());
    let start = match (&parked_group, hold) {
        _ if is_paused => format!(
            "the drain is paused: `drainctl resume {}` lets supervise start it",
            super::items::drain_argument(&name)
        ),
        // A parked group calls no worker, burst or not (docs/rate-limits.md, "Parked groups").
        (Some(group), _) => {
            format!(
                "its quota group {group} is parked: no pass starts it until `drainctl resume {}`",
                super::items::group_option(group)
            )
        }
        (None, Some((until, reason))) => {
            let what = match reason {
                HoldReason::DailyBudget => "its daily cost budget (max_cost_per_day) is spent",
                other => other.what(),
            };
            let then = if until >= deadline {
                "after the burst's end: no pass starts during this burst"
            } else if reason == HoldReason::Backoff && is_waiting {
                "a running pass waits for the reset and goes on then"
            } else if reason == HoldReason::Backoff && may_wait {
                // Supervise wakes a drain at the reset (docs/rate-limits.md).
                "the last supervise pass before that starts it to wait for the reset (or the first after it)"
            } else {
                "the first supervise pass after that starts it"
            };
            let joint = if until >= deadline { ", " } else { ": " };
            format!("{what} until {} ({}){joint}{then}", local(until, zone), format_relative(until - now))
        }
        // A pass of it already running takes the burst on before its next item.
        (None, None) if drain.as_ref().is_some_and(|drain| !drain.running_runs.is_empty()) => {
            "its running pass works on in burst from its next item".to_string()
        }
        (None, None) if drain.as_ref().is_some_and(|drain| drain.counts.pending == 0) => {
            "it has no pending items: a supervise pass starts it once some are enqueued".to_string()
        }
        (None, None) => match items_held_until {
            Some(until) => {
                let then = match until >= deadline {
                    true => ", after the burst's end: no pass starts during this burst",
                    false => ": the first supervise pass after that starts it",
                };
                format!(
                    "its pending items wait out their retry delay until {} ({}){then}",
                    local(until, zone),
                    format_relative(until - now)
                )
            }
            None => "the next supervise pass starts it".to_string(),
        },
    };
    let human = format!(
        "{name}: burst on until {} ({}){}; {start}",
        local(deadline, zone),
        format_relative(deadline - now),
        previous
            .map(|old| match local(old, zone) {
                // The same deadline as the clock shows it: renewed, as its event says.
                from if from == local(deadline, zone) => ", renewed".to_string(),
                from => format!(", moved from {from}"),
            })
            .unwrap_or_default()
    );
    Ok(Report::new(
        human,
        json!({
            "drain": name,
            "burst_until": deadline,
            "previous_until": previous,
            "note": note_now,
            "paused": is_paused,
            "parked": parked_group.is_some(),
            "backoff_until": backoff_until,
            "daily_budget_spent_until": budget_spent_until,
            "items_available_at": items_held_until,
        }),
    ))
}

fn off(ctx: &mut Context, args: &NameArg) -> Result<Report> {
    let name = ctx.known_drain(&args.name)?;
    let now = ctx.clock.now();
    let zone = ctx.config.defaults.timezone;
    let judged_at = read_shared_now(&mut ctx.client, now, ctx.clock.is_injected())?;
    let (was, expired, kept_off) = in_transaction(&mut ctx.client, |tx| {
        let controls = ensure_drain(tx, &name, now)?;
        // A burst past its deadline that no supervise pass cleared yet had ended already.
        if let Some(until) = clear_expired_burst(tx, &ctx.outbox, &controls, zone, judged_at)? {
            return Ok((None, Some(until), None));
        }
        let was = controls.burst_until;
        if clear_burst(tx, &name, None)? {
            let until = was.map(|at| local(at, zone)).unwrap_or_default();
            let event =
                Event::new(EventKind::BurstOff, format!("burst of {name} turned off (was until {until})"))
                    .drain(&name)
                    .data(json!({ "burst_until": was }));
            record_event(tx, &ctx.outbox, &event, now)?;
            Ok((was, None, None))
        } else {
            // Its last burst expired and nothing was done to it since: a pass whose clock
            // ran ahead may have ended it early, and the next one would set it again
            // (docs/operations.md, "A clock that went back"); an event says it stays off.
            match crate::db::drains::last_burst_expiry(tx, &name)? {
                Some(until) => {
                    let message = format!(
                        "burst of {name} stays off (its burst until {} had expired)",
                        local(until, zone)
                    );
                    let event = Event::new(EventKind::BurstOff, message)
                        .drain(&name)
                        .data(json!({ "burst_until": until }));
                    record_event(tx, &ctx.outbox, &event, now)?;
                    Ok((None, None, Some(until)))
                }
                None => Ok((None, None, None)),
            }
        }
    })?;
    let human = match (was, expired) {
        (Some(until), _) => format!(
            "{name}: burst off (was until {}); a running burst pass goes on only inside the window and budgets",
            local(until, zone)
        ),
        (None, Some(until)) => format!(
            "{name}: no burst was on: the burst until {} had expired{}; recorded as expired",
            local(until, zone),
            match format_relative(until - now) {
                ago if ago == "now" => String::new(),
                ago => format!(" {ago}"),
            }
        ),
        (None, None) => match kept_off {
            // The event records why (a pass whose clock ran ahead may have ended it early);
            // the line says what the operator asked for.
            Some(until) => format!(
                "{name}: no burst was on: the burst until {} had expired; it stays off",
                local(until, zone)
            ),
            None => format!("{name}: no burst was on"),
        },
    };
    let json =
        json!({ "drain": name, "was_until": was, "expired_until": expired, "kept_off_until": kept_off });
    Ok(Report::new(human, json))
}

fn status(ctx: &mut Context, args: &BurstStatusArgs) -> Result<Report> {
    let names: Vec<String> = match &args.name {
        // A drain that left the configuration with a burst on: its burst is still shown
        // (`burst off` ends it), as for the other switches.
        Some(name) => vec![ctx.known_drain(name)?],
        // With the bursts of drains that left the configuration, which `burst off` ends.
        None => {
            let mut names: Vec<String> = ctx.config.drains.iter().map(|d| d.name.clone()).collect();
            let others = crate::db::drains::other_drains_with_a_burst(&mut ctx.client, &names)?;
            names.extend(others);
            names
        }
    };
    // Shown as the database server's clock reads it when this one runs ahead.
    let now = read_shared_now(&mut ctx.client, ctx.clock.now(), ctx.clock.is_injected())?;
    let zone = ctx.config.defaults.timezone;
    let controls = read_controls(&mut ctx.client, &names)?;
    // Each drain's quota group, and those of them parked.
    let groups: Vec<String> = names
        .iter()
        .map(|name| ctx.config.drain(name).map(|drain| drain.quota_group.clone()).unwrap_or_default())
        .collect();
    let parked = crate::db::quota_groups::read_parked(&mut ctx.client, &groups)?;
    let mut rows = Vec::new();
    let mut json_rows = Vec::new();
    for (name, group) in names.iter().zip(&groups) {
        let control = controls.iter().find(|c| &c.name == name);
        let until = control.and_then(|c| c.burst_until);
        let active = until.is_some_and(|until| until > now);
        let note = control.and_then(|c| c.burst_note.clone());
        let is_paused = control.is_some_and(|c| c.is_paused());
        let is_parked = parked.iter().any(|parked| &parked.quota_group == group);
        let is_configured = ctx.config.drain(name).is_ok();
        rows.push(vec![
            name.clone(),
            match until {
                // Nothing runs a drain without a [[drain]] table, paused or not
                // (docs/operations.md, "A drain missing from the configuration").
                Some(until) if active && !is_configured => format!(
                    "until {} ({}); not in the configuration: nothing runs it",
                    local(until, zone),
                    format_relative(until - now)
                ),
                Some(until) if active && is_paused => format!(
                    "until {} ({}); drain paused: resume to start",
                    local(until, zone),
                    format_relative(until - now)
                ),
                Some(until) if active && is_parked => format!(
                    "until {} ({}); group parked: resume --group to start",
                    local(until, zone),
                    format_relative(until - now)
                ),
                Some(until) if active => {
                    format!("until {} ({})", local(until, zone), format_relative(until - now))
                }
                Some(until) => {
                    format!("expired {} (cleared by the next supervise)", format_relative(until - now))
                }
                None => "off".to_string(),
            },
            note.clone().unwrap_or_default(),
        ]);
        json_rows.push(json!({
            "drain": name,
            "active": active,
            "burst_until": until,
            "started_at": control.and_then(|c| c.burst_started_at),
            "note": note,
            "paused": is_paused,
            "parked": is_parked,
        }));
    }
    Ok(Report::new(table_cutting_last(&["DRAIN", "BURST", "NOTE"], &rows), json!({ "bursts": json_rows })))
}
