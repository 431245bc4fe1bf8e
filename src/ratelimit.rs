//! Applying a quota hit to its quota group: decide the backoff (see [`crate::backoff`]),
//! store it, and record every change as an event carrying the matched line.

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::json;

use crate::backoff::{decide_backoff, BackoffDecision, BackoffPolicy, PreviousBackoff};
use crate::db::backoffs::{read_backoff, write_backoff, BackoffRow};
use crate::db::events::{record_event, Event};
use crate::error::Result;
use crate::quota::QuotaHit;

/// Where a hit came from, for the events.
#[derive(Debug, Clone, Copy)]
pub struct HitSource<'a> {
    pub drain: &'a str,
    pub quota_group: &'a str,
    pub run_id: Option<i64>,
    pub item_id: Option<i64>,
}

/// Record a quota hit on its group and return the decision. Call inside a transaction:
/// the group row is locked so two drains of one group that hit at once agree.
pub fn record_quota_hit(
    client: &mut impl GenericClient,
    source: HitSource,
    hit: &QuotaHit,
    now: DateTime<Utc>,
    policy: BackoffPolicy,
) -> Result<BackoffDecision> {
    client.execute(
        "INSERT INTO quota_backoffs (quota_group, account, updated_at) VALUES ($1, '', $2)
         ON CONFLICT (quota_group, account) DO NOTHING",
        &[&source.quota_group, &now],
    )?;
    client.execute(
        "SELECT 1 FROM quota_backoffs WHERE quota_group = $1 AND account = '' FOR UPDATE",
        &[&source.quota_group],
    )?;
    let previous = read_backoff(client, source.quota_group)?;
    let decision = decide_backoff(
        hit.reset,
        now,
        PreviousBackoff { reset_at: previous.reset_at, suspected_at: previous.suspected_at },
        policy,
    );
    // Never shorten a backoff another pass of the group set a moment ago.
    let until = match previous.backoff_until {
        Some(existing) if existing > decision.until => existing,
        _ => decision.until,
    };
    let row = BackoffRow {
        quota_group: source.quota_group.to_string(),
        backoff_until: Some(until),
        reset_at: decision.reset_at,
        reason: Some(hit.matched_line.clone()),
        observed_at: Some(now),
        suspected_at: decision.suspected_at,
        needs_attention: hit.needs_attention,
    };
    write_backoff(client, &row, now)?;
    let event_for = |kind: &'static str, message: String| {
        let mut event = Event::new(kind, message).drain(source.drain).quota_group(source.quota_group);
        if let Some(run_id) = source.run_id {
            event = event.run(run_id);
        }
        if let Some(item_id) = source.item_id {
            event = event.item(item_id);
        }
        event
    };
    if let Some(why) = &decision.distrusted {
        let event = event_for("backoff_distrusted", format!("stated reset not trusted: {why}")).data(json!({
            "stated_reset": hit.reset,
            "why": why,
            "matched_line": hit.matched_line,
        }));
        record_event(client, &event, now)?;
    }
    let message = format!(
        "quota group {} backs off until {} ({}){}: {}",
        source.quota_group,
        until.to_rfc3339(),
        rule_text(&decision),
        if hit.needs_attention { "; needs attention: time will not fix this" } else { "" },
        hit.matched_line
    );
    let event = event_for("backoff_set", message).data(json!({
        "backoff_until": until,
        "rule": decision.rule,
        "stated_reset": hit.reset,
        "trusted_reset": decision.reset_at,
        "matched_line": hit.matched_line,
        "needs_attention": hit.needs_attention,
    }));
    record_event(client, &event, now)?;
    Ok(BackoffDecision { until, ..decision })
}

fn rule_text(decision: &BackoffDecision) -> &'static str {
    match decision.rule {
        crate::backoff::BackoffRule::ParsedReset => "stated reset + 1m",
        crate::backoff::BackoffRule::Suspected => "no trusted reset: suspected, short backoff",
        crate::backoff::BackoffRule::Confirmed => "no trusted reset, confirmed: default_backoff",
    }
}

/// A successful item clears the group's suspected mark (with an event when there was one).
pub fn record_success(
    client: &mut impl GenericClient,
    drain: &str,
    quota_group: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    if crate::db::backoffs::clear_suspected(client, quota_group, now)? {
        let event = Event::new(
            "backoff_cleared",
            format!("an item succeeded: quota group {quota_group} is no longer suspected"),
        )
        .drain(drain)
        .quota_group(quota_group);
        record_event(client, &event, now)?;
    }
    Ok(())
}
