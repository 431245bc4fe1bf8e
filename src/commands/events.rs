//! `drainctl events`: the append-only audit log, newest first.
//!
//! Every state change drainctl makes or survives is an event (runs started and finished,
//! items dead-lettered, backoffs set, bursts, pauses, migrations, notifier failures). This
//! command filters them by drain, age and kind and shows each with its age and its instant
//! in the configured time zone; `--json` gives the rows as stored.

use serde_json::json;

use crate::cli::EventsArgs;
use crate::context::Context;
use crate::db::events::{list_events, EventFilter};
use crate::error::Result;
use crate::output::{local_minute, relative, table, Report};

pub fn run(ctx: &mut Context, args: &EventsArgs) -> Result<Report> {
    let now = ctx.clock.now();
    let since = args.since.map(|length| crate::clock::earlier(now, length));
    let drain = match &args.drain {
        Some(name) => Some(ctx.known_drain(name)?),
        None => None,
    };
    let kind = args.kind.as_deref().map(str::trim).filter(|kind| !kind.is_empty());
    if let Some(group) = &args.group {
        known_group(ctx, group)?;
    }
    let group_drains = args.group.as_deref().map(|group| ctx.config.group_drains(group)).unwrap_or_default();
    let filter =
        EventFilter { drain: drain.as_deref(), group: args.group.as_deref(), group_drains, since, kind };
    let events = list_events(&mut ctx.client, &filter, args.limit)?;

    let zone = ctx.config.defaults.timezone;
    let human = if events.is_empty() {
        "no events match".to_string()
    } else {
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|event| {
                vec![
                    relative(event.at, now),
                    local_minute(event.at, zone),
                    event.kind.clone(),
                    event.drain.clone().unwrap_or_else(|| "-".into()),
                    event.message.clone(),
                ]
            })
            .collect();
        table(&["AGE", "AT", "KIND", "DRAIN", "MESSAGE"], &rows)
    };
    Ok(Report::new(human, json!({ "events": events })))
}

/// A quota group of the configuration, or one events name (a group since removed from it);
/// else the configuration's usage error listing the configured ones.
fn known_group(ctx: &mut Context, group: &str) -> Result<()> {
    let Err(unknown) = ctx.config.quota_group(group) else { return Ok(()) };
    let recorded =
        ctx.client.query_one("SELECT EXISTS (SELECT 1 FROM events WHERE quota_group = $1)", &[&group])?;
    match recorded.get::<_, bool>(0) {
        true => Ok(()),
        false => Err(unknown),
    }
}
