//! `drainctl pause NAME --note TEXT` and `drainctl resume NAME`: the operator's switch.
//! A paused drain is not started by `supervise`, and a running pass stops before its
//! next item. With `--all` instead of a name, every configured drain, in one transaction:
//! the maintenance switch. `drainctl resume --group NAME` clears a quota group parked by a
//! hit that needs attention.

use serde_json::json;

use crate::cli::{PauseArgs, ResumeArgs};
use crate::context::Context;
use crate::db::drains::{clear_pause, ensure_drain, given_note, set_pause};
use crate::db::events::{record_event, Event};
use crate::db::in_transaction;
use crate::error::{Error, Result};
use crate::model::EventKind;
use crate::output::Report;

/// The drains a command acts on: the one named, or with `--all` every configured one.
fn chosen_drains(ctx: &mut Context, name: Option<&str>, is_all: bool) -> Result<Vec<String>> {
    match name {
        Some(name) if !is_all => Ok(vec![ctx.known_drain(name)?]),
        // An emptied file (a deploy that failed half-way) must not look like a switch
        // that worked.
        _ if ctx.config.drains.is_empty() => Err(Error::Config(
            "--all names no drain: the configuration has no [[drain]] table; nothing was changed (check the \
             file: was it emptied?)"
                .to_string(),
        )),
        _ => Ok(ctx.config.drains.iter().map(|drain| drain.name.clone()).collect()),
    }
}

/// One report, or with `--all` a line per drain and `{"drains": [...]}`.
fn combined(is_all: bool, reports: Vec<(String, serde_json::Value)>) -> Report {
    if !is_all {
        if let Some((human, json)) = reports.into_iter().next() {
            return Report::new(human, json);
        }
        return Report::new(String::new(), json!({}));
    }
    let human = reports.iter().map(|(line, _)| format!("{line}\n")).collect::<String>();
    let drains: Vec<serde_json::Value> = reports.into_iter().map(|(_, json)| json).collect();
    Report::new(human.trim_end().to_string(), json!({ "drains": drains }))
}

pub fn pause(ctx: &mut Context, args: &PauseArgs) -> Result<Report> {
    let names = chosen_drains(ctx, args.name.as_deref(), args.all)?;
    let now = ctx.clock.now();
    // An empty or blank note is none (it clears the note).
    let given = given_note(&args.note);
    let note = given.flatten();
    let pauses = in_transaction(&mut ctx.client, |tx| {
        let mut pauses = Vec::new();
        for name in &names {
            ensure_drain(tx, name, now)?;
            let pause = set_pause(tx, name, given, now)?;
            // Pausing a paused drain again changes nothing worth an event unless it
            // changes the note (docs/operations.md).
            let message = match (pause.was_paused_since, note) {
                (None, Some(note)) => Some(format!("drain {name} paused: {note}")),
                (None, None) => Some(format!("drain {name} paused")),
                _ if pause.note == pause.previous_note => None,
                (Some(_), Some(note)) => Some(format!("drain {name} stays paused, its note now: {note}")),
                (Some(_), None) => Some(format!("drain {name} stays paused, its note cleared")),
            };
            if let Some(message) = message {
                record_event(
                    tx,
                    &ctx.outbox,
                    &Event::new(EventKind::DrainPaused, message).drain(name).data(json!({ "note": note })),
                    now,
                )?;
            }
            pauses.push(pause);
        }
        Ok(pauses)
    })?;
    let zone = ctx.config.defaults.timezone;
    let reports = names
        .into_iter()
        .zip(pauses)
        .map(|(name, pause)| {
            let undo = if args.all { "--all".to_string() } else { super::items::drain_argument(&name) };
            let human = match pause.was_paused_since {
                None => format!("{name}: paused; `drainctl resume {undo}` undoes it"),
                Some(since) => format!(
                    "{name}: already paused since {}; note{}: {}; `drainctl resume {undo}` undoes it",
                    crate::output::local_minute(since, zone),
                    if pause.note == pause.previous_note { "" } else { " now" },
                    crate::output::escape_controls(pause.note.as_deref().unwrap_or("none"))
                ),
            };
            let json = json!({
                "drain": name,
                "paused": true,
                "was_paused": pause.was_paused_since.is_some(),
                "paused_since": pause.was_paused_since.unwrap_or(now),
                "note": pause.note,
            });
            (human, json)
        })
        .collect();
    Ok(combined(args.all, reports))
}

pub fn resume(ctx: &mut Context, args: &ResumeArgs) -> Result<Report> {
    if let Some(group) = &args.group {
        return resume_group(ctx, group, args.clear_backoff);
    }
    let names = chosen_drains(ctx, args.name.as_deref(), args.all)?;
    let now = ctx.clock.now();
    let were_paused = in_transaction(&mut ctx.client, |tx| {
        let mut were_paused = Vec::new();
        for name in &names {
            ensure_drain(tx, name, now)?;
            let was_paused = clear_pause(tx, name)?;
            if was_paused {
                record_event(
                    tx,
                    &ctx.outbox,
                    &Event::new(EventKind::DrainResumed, format!("drain {name} resumed")).drain(name),
                    now,
                )?;
            }
            were_paused.push(was_paused);
        }
        Ok(were_paused)
    })?;
    let reports = names
        .into_iter()
        .zip(were_paused)
        .map(|(name, was_paused)| {
            let human =
                if was_paused { format!("{name}: resumed") } else { format!("{name}: was not paused") };
            (human, json!({ "drain": name, "paused": false, "was_paused": was_paused }))
        })
        .collect();
    Ok(combined(args.all, reports))
}

/// Why and until when no item of `group` may start now, as a pass would wait for it:
/// `it backs off until …` (every account out, or its one account), or which accounts back
/// off while another works; None when none does.
fn group_wait(ctx: &mut Context, group: &str, now: chrono::DateTime<chrono::Utc>) -> Result<Option<String>> {
    let config = ctx.config.quota_group(group)?;
    let groups = [group.to_string()];
    let rows = crate::db::backoffs::read_group_backoffs(&mut ctx.client, &groups)?;
    let state =
        crate::db::quota_groups::read_groups(&mut ctx.client, &groups)?.into_iter().next().map(|(_, s)| s);
    let view = crate::accounts::GroupView::new(config, &rows, state.unwrap_or_default());
    let zone = ctx.config.defaults.timezone;
    if let Some((until, why)) = view.wait(now) {
        return Ok(Some(format!("it backs off until {}: {why}", crate::output::local_time(until, zone))));
    }
    // The configured accounts only: a removed one's backoff is forgotten (docs/accounts.md).
    let configured = configured_accounts(config);
    let out: Vec<String> = rows
        .iter()
        .filter(|row| row.quota_group == group && row.backoff_until.is_some_and(|until| until > now))
        .filter(|row| configured.contains(&row.account.as_str()))
        .map(|row| row.account.clone())
        .collect();
    let verb = if out.len() == 1 { "backs" } else { "back" };
    Ok((!out.is_empty()).then(|| format!("{} {verb} off, another account works", accounts_text(&out))))
}

/// The accounts of `group` as its backoffs name them: its declared ones, or its one
/// implicit account `""`.
fn configured_accounts(group: &crate::config::QuotaGroupConfig) -> Vec<&str> {
    match group.accounts.is_empty() {
        true => vec![""],
        false => group.accounts.iter().map(|account| account.name.as_str()).collect(),
    }
}

/// "the group's account" for the implicit account, else "account a, b".
fn accounts_text(accounts: &[String]) -> String {
    match accounts {
        [only] if only.is_empty() => "the group's account".to_string(),
        [only] => format!("account {only}"),
        many => format!("accounts {}", many.join(", ")),
    }
}

/// `drainctl resume --group NAME`: clear a parked quota group (docs/rate-limits.md,
/// "Parked groups"), so that its drains call workers again.
fn resume_group(ctx: &mut Context, group: &str, clear_backoff: bool) -> Result<Report> {
    let group = ctx.config.quota_group(group)?;
    let configured = configured_accounts(group);
    let group = group.name.clone();
    // A backoff is every host's: judged by the server's clock when this one runs ahead.
    let now = crate::supervise::clock_went_back::read_shared_now(
        &mut ctx.client,
        ctx.clock.now(),
        ctx.clock.is_injected(),
    )?;
    let (was_parked, cleared_backoffs) = in_transaction(&mut ctx.client, |tx| {
        crate::db::quota_groups::lock_group(tx, &group, now)?;
        let cleared = crate::db::quota_groups::clear_park(tx, &group, now)?;
        // The operator says the cause is fixed: the backoffs of the hits that needed
        // attention would otherwise hold the accounts out for up to `default_backoff` more;
        // with --clear-backoff, that the limit is over: every backoff of the group.
        let cleared_backoffs = crate::db::backoffs::clear_backoffs(tx, &group, now, clear_backoff)?;
        // Only the accounts configured are named: a removed one's backoff was forgotten
        // already (docs/accounts.md).
        let cleared_backoffs: Vec<String> =
            cleared_backoffs.into_iter().filter(|account| configured.contains(&account.as_str())).collect();
        if !cleared_backoffs.is_empty() {
            // A fixed account is used at once, not after switch_cooldown (docs/accounts.md).
            crate::db::quota_groups::forget_switch_time(tx, &group, now)?;
        }
        if let Some(parked) = &cleared {
            let event = Event::new(
                EventKind::GroupResumed,
                format!(
                    "quota group {group} resumed (parked since {}: {})",
                    crate::output::local_time(parked.parked_at, ctx.config.defaults.timezone),
                    parked.reason
                ),
            )
            .quota_group(&group)
            .data(json!({
                "parked_at": parked.parked_at,
                "reason": parked.reason,
                "cleared_backoffs": cleared_backoffs,
            }));
            record_event(tx, &ctx.outbox, &event, now)?;
        } else if !cleared_backoffs.is_empty() {
            let event = Event::new(
                EventKind::BackoffCleared,
                format!(
                    "quota group {group}: the backoff of {} cleared by resume --group",
                    accounts_text(&cleared_backoffs)
                ),
            )
            .quota_group(&group)
            .data(json!({ "cleared_backoffs": cleared_backoffs }));
            record_event(tx, &ctx.outbox, &event, now)?;
        }
        Ok((cleared, cleared_backoffs))
    })?;
    let mut human = match &was_parked {
        Some(_) => format!("quota group {group}: resumed; its drains call workers again"),
        None => format!("quota group {group}: was not parked"),
    };
    if !cleared_backoffs.is_empty() {
        human.push_str(&format!("; cleared the backoff of {}", accounts_text(&cleared_backoffs)));
    }
    if !clear_backoff {
        // A wait of the group that stands is named, with the way to end it.
        if let Some(wait) = group_wait(ctx, &group, now)? {
            human.push_str(&format!(
                "; {wait}; `drainctl resume {} --clear-backoff` ends that now if you know its limit is over",
                super::items::group_option(&group)
            ));
        }
    }
    Ok(Report::new(
        human,
        json!({
            "quota_group": group,
            "parked": false,
            "was_parked": was_parked.is_some(),
            "cleared_backoffs": cleared_backoffs,
        }),
    ))
}
