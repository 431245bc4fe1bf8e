//! `drainctl pause NAME --note TEXT` and `drainctl resume NAME`: the operator's switch.
//! A paused drain is not started by `supervise`, and a running pass stops before its
//! next item. `drainctl resume --group NAME` clears a quota group parked by a hit that
//! needs attention.

use serde_json::json;

use crate::cli::{PauseArgs, ResumeArgs};
use crate::context::Context;
use crate::db::drains::{clear_pause, ensure_drain, set_pause};
use crate::db::events::{record_event, Event};
use crate::db::in_transaction;
use crate::error::{Error, Result};
use crate::model::EventKind;
use crate::output::Report;

pub fn pause(ctx: &mut Context, args: &PauseArgs) -> Result<Report> {
    let name = ctx.config.drain(&args.name)?.name.clone();
    let now = ctx.clock.now();
    in_transaction(&mut ctx.client, |tx| {
        ensure_drain(tx, &name, now)?;
        set_pause(tx, &name, args.note.as_deref(), now)?;
        let message = match &args.note {
            Some(note) => format!("drain {name} paused: {note}"),
            None => format!("drain {name} paused"),
        };
        record_event(
            tx,
            &ctx.outbox,
            &Event::new(EventKind::DrainPaused, message).drain(&name).data(json!({ "note": args.note })),
            now,
        )
    })?;
    Ok(Report::new(
        format!("{name}: paused; `drainctl resume {name}` undoes it"),
        json!({ "drain": name, "paused": true, "note": args.note }),
    ))
}

pub fn resume(ctx: &mut Context, args: &ResumeArgs) -> Result<Report> {
    if let Some(group) = &args.group {
        return resume_group(ctx, group);
    }
    // clap requires a drain name or `--group`; an empty name is an unknown drain.
    let name = ctx.config.drain(args.name.as_deref().unwrap_or_default())?.name.clone();
    let now = ctx.clock.now();
    let was_paused = in_transaction(&mut ctx.client, |tx| {
        ensure_drain(tx, &name, now)?;
        let was_paused = clear_pause(tx, &name)?;
        if was_paused {
            record_event(
                tx,
                &ctx.outbox,
                &Event::new(EventKind::DrainResumed, format!("drain {name} resumed")).drain(&name),
                now,
            )?;
        }
        Ok(was_paused)
    })?;
    let human = if was_paused { format!("{name}: resumed") } else { format!("{name}: was not paused") };
    Ok(Report::new(human, json!({ "drain": name, "paused": false, "was_paused": was_paused })))
}

/// `drainctl resume --group NAME`: clear a parked quota group (docs/rate-limits.md,
/// "Parked groups"), so that its drains call workers again.
fn resume_group(ctx: &mut Context, group: &str) -> Result<Report> {
    let Some(group) = ctx.config.quota_groups.iter().find(|known| known.name == group) else {
        let known: Vec<&str> = ctx.config.quota_groups.iter().map(|known| known.name.as_str()).collect();
        return Err(Error::Usage(format!("unknown quota group {group:?}; known: {}", known.join(", "))));
    };
    let group = group.name.clone();
    let now = ctx.clock.now();
    let was_parked = in_transaction(&mut ctx.client, |tx| {
        crate::db::quota_groups::lock_group(tx, &group, now)?;
        let cleared = crate::db::quota_groups::clear_park(tx, &group, now)?;
        if let Some(parked) = &cleared {
            let event = Event::new(
                EventKind::GroupResumed,
                format!(
                    "quota group {group} resumed (parked since {}: {})",
                    parked.parked_at.to_rfc3339(),
                    parked.reason
                ),
            )
            .quota_group(&group)
            .data(json!({ "parked_at": parked.parked_at, "reason": parked.reason }));
            record_event(tx, &ctx.outbox, &event, now)?;
        }
        Ok(cleared)
    })?;
    let human = match &was_parked {
        Some(_) => format!("quota group {group}: resumed; its drains call workers again"),
        None => format!("quota group {group}: was not parked"),
    };
    Ok(Report::new(
        human,
        json!({ "quota_group": group, "parked": false, "was_parked": was_parked.is_some() }),
    ))
}
