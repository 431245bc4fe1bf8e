//! Applying a quota hit to the account of its quota group that was in use: decide the
//! account's backoff (see [`crate::backoff`]), store it, and record every change as an
//! event carrying the matched line.

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::json;

use crate::backoff::{decide_backoff, BackoffDecision, BackoffPolicy, PreviousBackoff, ResetForm};
use crate::db::backoffs::{lock_backoff, write_backoff, BackoffRow};
use crate::db::events::{record_event, Event, Outbox};
use crate::error::Result;
use crate::model::EventKind;
use crate::quota::QuotaHit;

/// Where a hit came from, for the events.
#[derive(Debug, Clone, Copy)]
pub struct HitSource<'a> {
    pub drain: &'a str,
    pub quota_group: &'a str,
    /// The account the worker ran on (`""`: the group's only, implicit account).
    pub account: &'a str,
    pub run_id: Option<i64>,
    pub item_id: Option<i64>,
    /// Every drain of the quota group, whose successes tell a hit that follows another
    /// with none between them (docs/rate-limits.md, "Now").
    pub group_drains: &'a [String],
    /// The group's other accounts, to switch to: access refused on this one backs off this
    /// account alone instead of parking the group — until every account is refused
    /// (docs/accounts.md).
    pub other_accounts: &'a [String],
}

impl HitSource<'_> {
    fn can_switch_accounts(&self) -> bool {
        !self.other_accounts.is_empty()
    }
}

/// A recorded quota hit: the backoff decided, and whether the group is parked by it.
#[derive(Debug, Clone)]
pub struct RecordedHit {
    pub decision: BackoffDecision,
    pub parks_group: bool,
}

/// Record a quota hit on its account (with its `backoff_set` event) and return the
/// decision; a hit that needs attention parks the group, unless it is access refused on
/// one of several accounts, which backs off that account alone (confirmed at once, so the
/// next claim switches) — while another account of the group is not refused too: access
/// refused on every account parks the group. Call inside a transaction:
/// the group's row and then the account's row are locked, so that two drains of one group
/// that hit at once agree, and a claim of the group never sees half of it.
pub fn record_quota_hit(
    client: &mut impl GenericClient,
    outbox: &Outbox,
    source: HitSource,
    hit: &QuotaHit,
    now: DateTime<Utc>,
    policy: BackoffPolicy,
    zone: chrono_tz::Tz,
) -> Result<RecordedHit> {
    crate::db::quota_groups::lock_group(client, source.quota_group, now)?;
    let previous = lock_backoff(client, source.quota_group, source.account, now)?;
    let now_hits = crate::db::backoffs::now_hits_in_a_row(
        client,
        source.quota_group,
        source.account,
        source.group_drains,
    )?;
    let alone = hit.backs_off_account_alone(source.can_switch_accounts());
    let mut before = PreviousBackoff {
        reset_at: previous.reset_at,
        suspected_at: previous.suspected_at,
        // A reset of now seen again, with no success since, waits longer each time.
        now_hits,
        // Since the reset the group waited for: a pass's item that finished after the
        // hit, in the window before, says nothing of the window since. Only a window's
        // boundary asks (the rolling-window retry, `backoff::decide_backoff`).
        nothing_done_since: match previous.reset_at.filter(|reset| *reset <= now) {
            Some(reset)
                if hit.stated_reset().is_some_and(|stated| stated.form == ResetForm::WindowBoundary) =>
            {
                !crate::db::backoffs::done_since(client, source.group_drains, reset)?
            }
            _ => false,
        },
    };
    if previous.backoff_until.is_some_and(|until| until > now) {
        // No worker of this account starts while it backs off: this one was already
        // running when the backoff began — another pass of the group (`concurrency`, a
        // second drain) meeting the same limit at the same moment. It is that hit seen
        // again, not a retry that failed: it never confirms a suspicion (docs/rate-limits.md).
        before.suspected_at = None;
    }
    if alone {
        // Confirmed at once, so that the next claim switches (docs/accounts.md).
        before = before.confirming(now);
    }
    let mut decision = decide_backoff(hit.stated_reset(), now, before, policy);
    if decision.rule == crate::backoff::BackoffRule::ParsedReset {
        // Only a success clears a suspicion: a hit without a reset after this one, within
        // the window, still confirms it (docs/rate-limits.md, "Backoff").
        decision.suspected_at = previous.suspected_at;
    }
    // While a backoff is in force no worker of this account starts: a hit now comes from a
    // pass that was already running — another pass of the group (`concurrency`, a second
    // drain) meeting the same limit. It changes nothing and says nothing (one
    // `backoff_set`, one notification; docs/rate-limits.md, "Several passes") when it
    // brings no news: no trusted reset, a reset of now, or a reset the backoff in force
    // outlasts. A trusted reset where the backoff in force is a guess (no reset) is news:
    // it replaces the guess, shorter or not.
    let parsed = crate::backoff::BackoffRule::ParsedReset;
    let in_force = previous.backoff_until.filter(|until| *until > now);
    // A short retry of a rolling window, like a reset of now, is news only once: another
    // pass refused at the same boundary does not double it.
    let is_now = matches!(
        decision.basis,
        Some(crate::backoff::WaitBasis::NowAgain | crate::backoff::WaitBasis::RollingWindow)
    ) || (decision.rule == parsed && decision.reset_at.is_some_and(|reset| reset <= now));
    // (A guess that has ended is replaced by nothing: the backoff it set is over.)
    let replaces_a_guess = decision.rule == parsed
        && !is_now
        && in_force.is_some()
        && previous.rule.is_some_and(|rule| rule != parsed);
    // A refusal that needs attention met again while the one recorded stands (passes of
    // the group refused at the same moment) is that refusal seen again: nothing to add.
    let repeats_attention = hit.needs_attention && previous.needs_attention && in_force.is_some();
    let changes_nothing = repeats_attention
        || (!hit.needs_attention
            && !replaces_a_guess
            && in_force.is_some_and(|until| decision.rule != parsed || is_now || until >= decision.until));
    if changes_nothing {
        let kept = BackoffDecision {
            until: in_force.unwrap_or(decision.until),
            rule: previous.rule.unwrap_or(decision.rule),
            suspected_at: previous.suspected_at,
            basis: None,
            now_hits,
            ..decision
        };
        log::info!(
            "{} met the limit again ({}): the backoff in force until {} stands",
            subject(source),
            hit.matched_line,
            crate::output::local_time(kept.until, zone)
        );
        return Ok(RecordedHit { decision: kept, parks_group: false });
    }
    // A wait that only widens the one just announced — the same stated reset met again in
    // its minute, or a relative reset a moment later than another pass's (`try again in
    // 16.377s` beside `16.371s`) — is written and recorded, but not notified again.
    let is_same_stated_reset = decision.stated_reset.is_some()
        && decision.stated_reset == previous.reset_at
        && previous.backoff_until.is_some_and(|until| now - until <= chrono::Duration::seconds(60));
    let is_a_moment_later =
        in_force.is_some_and(|until| decision.until - until <= chrono::Duration::seconds(2));
    let widens_the_last = decision.rule == parsed && previous.rule == Some(parsed);
    let is_announced = !(widens_the_last && (is_same_stated_reset || is_a_moment_later));
    // Never shorten a backoff another pass of the group set a moment ago (unless a trusted
    // reset replaces a guess): the longer wait stands.
    if let Some(existing) =
        previous.backoff_until.filter(|existing| *existing > decision.until && !replaces_a_guess)
    {
        decision.until = existing;
        decision.rule = previous.rule.unwrap_or(decision.rule);
        decision.suspected_at = previous.suspected_at;
        // What this hit's reset was reckoned from says nothing of the backoff kept.
        decision.basis = None;
    }
    let (until, rule) = (decision.until, Some(decision.rule));
    let row = BackoffRow {
        quota_group: source.quota_group.to_string(),
        account: source.account.to_string(),
        backoff_until: Some(until),
        rule,
        reset_at: decision.remembered_reset,
        reason: Some(hit.matched_line.clone()),
        observed_at: Some(now),
        suspected_at: decision.suspected_at,
        needs_attention: hit.needs_attention,
    };
    write_backoff(client, &row, now)?;
    crate::db::backoffs::set_now_hits(client, source.quota_group, source.account, decision.now_hits)?;
    let event_for = |kind: EventKind, message: String| {
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
        let event =
            event_for(EventKind::BackoffDistrusted, format!("stated reset not trusted: {why}")).data(json!({
                "stated_reset": to_microseconds(decision.stated_reset),
                "why": why,
                "matched_line": hit.matched_line,
            }));
        record_event(client, outbox, &event, now)?;
    }
    let attention = match (hit.needs_attention, alone) {
        (true, true) => "; needs attention: access refused, the group's other accounts are used meanwhile",
        (true, false) => "; needs attention: time will not fix this",
        _ => "",
    };
    let message = format!(
        "{} backs off until {} ({}){attention}: {}",
        subject(source),
        crate::output::local_time(until, zone),
        rule_text(&decision),
        hit.matched_line
    );
    // A short wait until a trusted reset (one a pass waits out by itself) of an account
    // whose limit was announced within the hour is recorded, not notified: a vendor's short windows met
    // under a full backlog would notify every window (docs/rate-limits.md, "Several passes").
    let is_short_and_repeated = is_announced
        && !hit.needs_attention
        && decision.rule == parsed
        && !replaces_a_guess
        && until - now <= chrono::Duration::from_std(policy.short_wait).unwrap_or(chrono::Duration::MAX)
        && crate::db::backoffs::announced_since(
            client,
            source.quota_group,
            source.account,
            crate::clock::earlier(now, std::time::Duration::from_secs(3600)),
        )?;
    if !is_announced {
        log::info!("{message} (the same limit, widened: not notified again)");
    } else if is_short_and_repeated {
        log::info!("{message} (a short wait, this limit was notified within the hour: not notified again)");
    }
    let is_announced = is_announced && !is_short_and_repeated;
    let event = event_for(EventKind::BackoffSet, message).data(json!({
        "backoff_until": to_microseconds(Some(until)),
        "rule": decision.rule,
        "stated_reset": to_microseconds(decision.stated_reset),
        "trusted_reset": to_microseconds(decision.reset_at),
        "matched_line": hit.matched_line,
        "needs_attention": hit.needs_attention,
        "account": source.account,
        // False for a wait that only widens the one just announced, or a short one of a
        // limit announced within the hour: not notified.
        "announced": is_announced,
    }));
    if is_announced {
        record_event(client, outbox, &event, now)?;
    } else {
        crate::db::events::record_unannounced_event(client, &event, now)?;
    }
    let parks_group = if hit.parks_group(source.can_switch_accounts()) {
        park_group(client, outbox, source, hit, &hit.matched_line, now)?;
        true
    } else if alone
        && crate::db::backoffs::all_need_attention(client, source.quota_group, source.other_accounts, now)?
    {
        let reason = format!("every account of the group is refused access: {}", hit.matched_line);
        park_group(client, outbox, source, hit, &reason, now)?;
        true
    } else {
        false
    };
    Ok(RecordedHit { decision, parks_group })
}

/// A hit that waiting does not fix parks the whole quota group until an operator clears
/// it (docs/rate-limits.md, "Parked groups"), with a `group_parked` event the first time.
/// Call with the group's row locked.
fn park_group(
    client: &mut impl GenericClient,
    outbox: &Outbox,
    source: HitSource,
    hit: &QuotaHit,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    if !crate::db::quota_groups::park_group(client, source.quota_group, reason, now)? {
        return Ok(());
    }
    let group = source.quota_group;
    let mut event = Event::new(
        EventKind::GroupParked,
        format!(
            "quota group {group} parked: no drain of it calls a worker until `drainctl resume {}`; needs attention: {reason}",
            crate::commands::items::group_option(group)
        ),
    )
    .drain(source.drain)
    .quota_group(group)
    .data(json!({ "matched_line": hit.matched_line, "account": source.account }));
    if let Some(run_id) = source.run_id {
        event = event.run(run_id);
    }
    if let Some(item_id) = source.item_id {
        event = event.item(item_id);
    }
    record_event(client, outbox, &event, now)
}

/// "quota group G" for a group without accounts, else "account A of quota group G".
fn subject(source: HitSource) -> String {
    if source.account.is_empty() {
        format!("quota group {}", source.quota_group)
    } else {
        format!("account {} of quota group {}", source.account, source.quota_group)
    }
}

fn rule_text(decision: &BackoffDecision) -> &'static str {
    use crate::backoff::WaitBasis;
    match decision.rule {
        crate::backoff::BackoffRule::ParsedReset => match decision.basis {
            Some(WaitBasis::JustNow) => "the stated reset passed just now: one short retry",
            Some(WaitBasis::EndOfMinute) => "the stated minute is not over: its end + margin",
            Some(WaitBasis::NowAgain) => "a reset of now again, nothing done since: twice the previous wait",
            Some(WaitBasis::RollingWindow) => {
                "the window's boundary met again at once, nothing done since: the window may roll; a short retry, \
                 doubled each time"
            }
            Some(WaitBasis::PassedWhileSilent) => {
                "the stated reset passed while the worker was silent after printing it: one short retry"
            }
            _ => "stated reset + margin",
        },
        crate::backoff::BackoffRule::Suspected => "no trusted reset: suspected, short backoff",
        crate::backoff::BackoffRule::Confirmed => "no trusted reset, confirmed: default_backoff",
    }
}

/// A successful item clears its account's suspected mark (with an event when there was one).
pub fn record_success(
    client: &mut impl GenericClient,
    outbox: &Outbox,
    drain: &str,
    quota_group: &str,
    account: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    if crate::db::backoffs::clear_suspected(client, quota_group, account, now)? {
        let source = HitSource {
            drain,
            quota_group,
            account,
            run_id: None,
            item_id: None,
            group_drains: &[],
            other_accounts: &[],
        };
        let event = Event::new(
            EventKind::BackoffCleared,
            format!("an item succeeded: {} is no longer suspected", subject(source)),
        )
        .drain(drain)
        .quota_group(quota_group)
        .data(json!({ "account": account }));
        record_event(client, outbox, &event, now)?;
    }
    Ok(())
}

/// An instant of an event's data to the microsecond, as every instant the database keeps:
/// a reset stated relative to the clock ("try again in 60s") carries its nanoseconds.
fn to_microseconds(at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    use chrono::SubsecRound as _;
    at.map(|at| at.trunc_subsecs(6))
}
