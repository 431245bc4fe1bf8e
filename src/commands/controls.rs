//! `drainctl pause NAME --note TEXT` and `drainctl resume NAME`: the operator's switch.
//! A paused drain is not started by `supervise`, and a running pass stops before its
//! next item.

use serde_json::json;

use crate::cli::{NameArg, PauseArgs};
use crate::context::Context;
use crate::db::drains::{clear_pause, ensure_drain, set_pause};
use crate::db::events::{record_event, Event};
use crate::db::in_transaction;
use crate::error::Result;
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

pub fn resume(ctx: &mut Context, args: &NameArg) -> Result<Report> {
    let name = ctx.config.drain(&args.name)?.name.clone();
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
