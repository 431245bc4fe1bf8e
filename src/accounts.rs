//! Accounts of a quota group, and which one the next item runs on — pure.
//!
//! A quota group may declare several accounts (two logins of one LLM CLI, say). Each
//! account backs off on its own by the rules of [`crate::backoff`]; the next item of any
//! drain of the group runs on the first account, in configuration order, that is not
//! backing off, and the group as a whole waits only when no account is usable. Switching
//! is damped so that a group never ping-pongs between accounts:
//!
//! - an account *suspected* of a limit (a first hit without a trusted reset: a short
//!   backoff) holds the group: it waits for that account instead of switching, and only a
//!   confirming second hit makes the account unusable;
//! - a switch away from an account whose limit was confirmed without a stated reset
//!   happens at most once per `switch_cooldown`; until then the group waits;
//! - a switch forced by a stated (trusted) reset, or by access refused, happens at once;
//! - going back to an earlier account whose backoff ended is a switch too: within the
//!   cooldown the group stays on the account it uses while that one is usable.
//!
//! A group without declared accounts has one implicit account `""` and behaves exactly as
//! a group did before accounts existed.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backoff::BackoffRule;
use crate::config::QuotaGroupConfig;
use crate::db::backoffs::BackoffRow;
use crate::db::quota_groups::GroupState;
use crate::duration::format_duration;

/// Where one account stands at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    /// Not backing off.
    Usable,
    /// A first hit without a trusted reset: a short backoff the group waits out.
    Suspected { until: DateTime<Utc> },
    /// Backing off after a stated reset or a confirmed limit: the group may switch away.
    /// `refused`: access was refused (`needs_attention`), which no wait mends.
    Out { until: DateTime<Utc>, rule: BackoffRule, refused: bool },
}

impl AccountState {
    pub fn of(row: &BackoffRow, now: DateTime<Utc>) -> AccountState {
        let Some(until) = row.backoff_until.filter(|until| now < *until) else {
            return AccountState::Usable;
        };
        // Rows written before the rule was stored: a suspected mark means suspected.
        let rule = row.rule.unwrap_or(if row.suspected_at.is_some() {
            BackoffRule::Suspected
        } else {
            BackoffRule::Confirmed
        });
        match rule {
            BackoffRule::Suspected => AccountState::Suspected { until },
            rule => AccountState::Out { until, rule, refused: row.needs_attention },
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            AccountState::Usable => "available",
            AccountState::Suspected { .. } => "suspected",
            AccountState::Out { .. } => "backing-off",
        }
    }

    fn out_until(&self) -> Option<DateTime<Utc>> {
        match self {
            AccountState::Out { until, .. } => Some(*until),
            _ => None,
        }
    }
}

/// Why the group changes account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchCause {
    /// The account in use stated when its limit resets: switch at once.
    StatedReset,
    /// The account in use hit a limit twice without a (trusted) reset.
    ConfirmedLimit,
    /// The account in use was refused access: switch at once, as waiting mends nothing.
    AccessRefused,
    /// An earlier account's backoff ended: back to the preferred account.
    BackoffEnded,
    /// The account in use is out, and the one switched to stated a reset that has passed
    /// since the last switch: its quota is back, no `switch_cooldown` to wait.
    QuotaReturned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    /// Index of the account the group used until now.
    pub from: usize,
    pub cause: SwitchCause,
}

/// Why the whole group waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCause {
    /// Every account backs off.
    AllBackingOff,
    /// This account is suspected of a limit; a switch waits for confirmation.
    Suspected { account: usize },
    /// Switching from `from` to `to` waits for the end of the switch cooldown.
    SwitchCooldown { from: usize, to: usize },
}

/// What the next item of the group does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Run on this account (index in configuration order), switching to it if `switch`.
    Use { account: usize, switch: Option<Switch> },
    /// No item of the group may start before `until`.
    Wait { until: DateTime<Utc>, cause: WaitCause },
}

/// Choose the account of the next item. `states` are the accounts in configuration order
/// (never empty), `returned` whether each one's stated reset passed since the last switch,
/// `active` the index of the account in use — out of range when the account in use left
/// the configuration —, `switched_at` the last switch.
pub fn select(
    states: &[AccountState],
    returned: &[bool],
    active: usize,
    switched_at: Option<DateTime<Utc>>,
    switch_cooldown: Duration,
    now: DateTime<Utc>,
) -> Selection {
    let Some(candidate) = states.iter().position(|state| !matches!(state, AccountState::Out { .. })) else {
        let until = states.iter().filter_map(AccountState::out_until).min().unwrap_or(now);
        return Selection::Wait { until, cause: WaitCause::AllBackingOff };
    };
    // Leaving the account in use, which is out: a suspected account holds the group only
    // when it is the one in use, or when no account is usable — otherwise the first
    // usable one is taken (docs/accounts.md, rule 3).
    let is_leaving = states.get(active).is_some_and(|state| matches!(state, AccountState::Out { .. }));
    let candidate = match states[candidate] {
        AccountState::Suspected { .. } if is_leaving => {
            states.iter().position(|state| *state == AccountState::Usable).unwrap_or(candidate)
        }
        _ => candidate,
    };
    let cooldown_ends = switched_at.map(|at| crate::clock::later(at, switch_cooldown));
    let is_cooling_down = cooldown_ends.is_some_and(|end| now < end);
    let use_candidate = |switch: Option<Switch>| match states[candidate] {
        AccountState::Suspected { until } => {
            Selection::Wait { until, cause: WaitCause::Suspected { account: candidate } }
        }
        _ => Selection::Use { account: candidate, switch },
    };
    // The account in use left the configuration: forgotten, the group starts again from
    // the first account that is not backing off (docs/accounts.md), no cooldown to wait.
    if candidate == active || active >= states.len() {
        return use_candidate(None);
    }
    if candidate < active {
        // An earlier account is back. Stay on a usable account within the cooldown, or
        // rather than wait for a suspected earlier one.
        let is_candidate_suspected = matches!(states[candidate], AccountState::Suspected { .. });
        if states[active] == AccountState::Usable && (is_cooling_down || is_candidate_suspected) {
            return Selection::Use { account: active, switch: None };
        }
        return use_candidate(Some(Switch { from: active, cause: SwitchCause::BackoffEnded }));
    }
    // candidate > active: every account before the candidate, the active one too, is out.
    let cause = match states[active] {
        AccountState::Out { rule: BackoffRule::ParsedReset, .. } => SwitchCause::StatedReset,
        AccountState::Out { refused: true, .. } => SwitchCause::AccessRefused,
        _ => SwitchCause::ConfirmedLimit,
    };
    // Its quota is back by its own stated reset, since the switch that started the
    // cooldown (forced by that account's limit): a stated reset forces this one too.
    if cause == SwitchCause::ConfirmedLimit
        && states[candidate] == AccountState::Usable
        && returned.get(candidate) == Some(&true)
    {
        return Selection::Use {
            account: candidate,
            switch: Some(Switch { from: active, cause: SwitchCause::QuotaReturned }),
        };
    }
    if let (SwitchCause::ConfirmedLimit, true, Some(cooldown_ends)) = (cause, is_cooling_down, cooldown_ends)
    {
        let first_back = states[..candidate].iter().filter_map(AccountState::out_until).min();
        let until = first_back.map_or(cooldown_ends, |back| back.min(cooldown_ends));
        return Selection::Wait { until, cause: WaitCause::SwitchCooldown { from: active, to: candidate } };
    }
    use_candidate(Some(Switch { from: active, cause }))
}

/// A quota group with its accounts' backoffs and its stored choice: what the claim,
/// `supervise` and `status` look at.
#[derive(Debug, Clone)]
pub struct GroupView<'a> {
    pub group: &'a QuotaGroupConfig,
    /// One row per configured account, in configuration order.
    pub backoffs: Vec<BackoffRow>,
    pub state: GroupState,
}

impl<'a> GroupView<'a> {
    /// `rows` may hold rows of other groups and of accounts no longer configured.
    pub fn new(group: &'a QuotaGroupConfig, rows: &[BackoffRow], state: GroupState) -> GroupView<'a> {
        let backoffs = crate::db::backoffs::rows_for_accounts(
            rows,
            &group.name,
            group.accounts.iter().map(|account| account.name.as_str()),
        );
        GroupView { group, backoffs, state }
    }

    pub fn states(&self, now: DateTime<Utc>) -> Vec<AccountState> {
        self.backoffs.iter().map(|row| AccountState::of(row, now)).collect()
    }

    /// Index of the account in use (the first one when none is stored or it is gone).
    pub fn active(&self) -> usize {
        self.stored_active().unwrap_or(0)
    }

    /// Index of the account in use: the first when none is stored, None when the stored
    /// one left the configuration.
    fn stored_active(&self) -> Option<usize> {
        self.state.account.as_deref().map_or(Some(0), |name| self.group.account_index(name))
    }

    pub fn select(&self, now: DateTime<Utc>) -> Selection {
        // A stored account no longer configured is out of range: forgotten (see `select`).
        let active = self.stored_active().unwrap_or(usize::MAX);
        let switched_at = self.state.switched_at;
        let returned: Vec<bool> = self
            .backoffs
            .iter()
            .map(|row| {
                row.rule == Some(BackoffRule::ParsedReset)
                    && row
                        .backoff_until
                        .is_some_and(|until| until <= now && switched_at.is_none_or(|at| until > at))
            })
            .collect();
        select(&self.states(now), &returned, active, switched_at, self.group.switch_cooldown, now)
    }

    /// Until when and why no item of the group may start, if so.
    pub fn wait(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, String)> {
        match self.select(now) {
            Selection::Use { .. } => None,
            Selection::Wait { until, cause } => Some((until, self.describe_wait(cause))),
        }
    }

    fn name(&self, index: usize) -> &str {
        self.group.accounts.get(index).map(|account| account.name.as_str()).unwrap_or("")
    }

    fn reason(&self, index: usize) -> &str {
        self.backoffs.get(index).and_then(|row| row.reason.as_deref()).unwrap_or("no reason recorded")
    }

    /// One line on why the group waits; for a group without accounts, the matched line
    /// of its backoff, as before accounts existed.
    pub fn describe_wait(&self, cause: WaitCause) -> String {
        if !self.group.has_accounts_to_switch() {
            return self.reason(0).to_string();
        }
        match cause {
            WaitCause::AllBackingOff => {
                let first_back = self
                    .backoffs
                    .iter()
                    .enumerate()
                    .filter_map(|(index, row)| row.backoff_until.map(|until| (until, index)))
                    .min()
                    .map(|(_, index)| index)
                    .unwrap_or(0);
                format!(
                    "every account backs off; {} is back first ({})",
                    self.name(first_back),
                    self.reason(first_back)
                )
            }
            WaitCause::Suspected { account } => format!(
                "account {} is suspected of a limit without a stated reset; a second hit confirms it before switching ({})",
                self.name(account),
                self.reason(account)
            ),
            WaitCause::SwitchCooldown { from, to } => format!(
                "account {} hit a limit ({}); the switch to {} waits for switch_cooldown {}",
                self.name(from),
                self.reason(from),
                self.name(to),
                format_duration(self.group.switch_cooldown)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 10, minute, 0).unwrap()
    }

    const USABLE: AccountState = AccountState::Usable;
    const COOLDOWN: Duration = Duration::from_secs(15 * 60);

    fn out(minute: u32, rule: BackoffRule) -> AccountState {
        AccountState::Out { until: at(minute), rule, refused: false }
    }

    fn refused(minute: u32) -> AccountState {
        AccountState::Out { until: at(minute), rule: BackoffRule::Confirmed, refused: true }
    }

    fn suspected(minute: u32) -> AccountState {
        AccountState::Suspected { until: at(minute) }
    }

    fn switch(account: usize, from: usize, cause: SwitchCause) -> Selection {
        Selection::Use { account, switch: Some(Switch { from, cause }) }
    }

    fn stay(account: usize) -> Selection {
        Selection::Use { account, switch: None }
    }

    fn wait(minute: u32, cause: WaitCause) -> Selection {
        Selection::Wait { until: at(minute), cause }
    }

    #[test]
    fn the_first_account_that_is_not_backing_off_is_used() {
        use BackoffRule::*;
        use SwitchCause::*;
        // (accounts, active, switched_at, expected) at 10:10
        let cases: Vec<(Vec<AccountState>, usize, Option<u32>, Selection)> = vec![
            (vec![USABLE, USABLE], 0, None, stay(0)),
            (vec![USABLE], 0, None, stay(0)),
            // A stated reset switches at once, even within the cooldown.
            (vec![out(30, ParsedReset), USABLE], 0, None, switch(1, 0, StatedReset)),
            (vec![out(30, ParsedReset), USABLE], 0, Some(5), switch(1, 0, StatedReset)),
            // A confirmed limit switches, but only once per cooldown.
            (vec![out(50, Confirmed), USABLE], 0, None, switch(1, 0, ConfirmedLimit)),
            (
                vec![out(50, Confirmed), USABLE],
                0,
                Some(0),
                wait(15, WaitCause::SwitchCooldown { from: 0, to: 1 }),
            ),
            (
                vec![out(12, Confirmed), USABLE],
                0,
                Some(0),
                wait(12, WaitCause::SwitchCooldown { from: 0, to: 1 }),
            ),
            // A suspected account holds the group: no switch on a first hit.
            (vec![suspected(15), USABLE], 0, None, wait(15, WaitCause::Suspected { account: 0 })),
            (
                vec![out(50, Confirmed), suspected(15)],
                1,
                Some(0),
                wait(15, WaitCause::Suspected { account: 1 }),
            ),
            // Every account out: wait for the earliest.
            (vec![out(50, ParsedReset), out(40, Confirmed)], 1, None, wait(40, WaitCause::AllBackingOff)),
            (vec![out(20, ParsedReset)], 0, None, wait(20, WaitCause::AllBackingOff)),
            // Back to the preferred account once its backoff ended, after the cooldown...
            (vec![USABLE, USABLE], 1, None, switch(0, 1, BackoffEnded)),
            // ...but not within it while the account in use works...
            (vec![USABLE, USABLE], 1, Some(5), stay(1)),
            // ...nor to wait for a suspected one.
            (vec![suspected(14), USABLE], 1, None, stay(1)),
            // Within the cooldown, an account in use that is out does not keep the group.
            (vec![USABLE, out(40, ParsedReset)], 1, Some(5), switch(0, 1, BackoffEnded)),
            // Three accounts: skip every account that is out.
            (vec![out(30, ParsedReset), out(40, ParsedReset), USABLE], 0, None, switch(2, 0, StatedReset)),
            (vec![out(30, ParsedReset), out(40, ParsedReset), USABLE], 1, None, switch(2, 1, StatedReset)),
            // A stored account that is no longer configured is forgotten: the first account
            // not backing off, at once, whatever the cooldown.
            (vec![USABLE, USABLE], 7, None, stay(0)),
            (vec![out(50, Confirmed), USABLE], 7, Some(5), stay(1)),
            // Access refused switches at once, even within the cooldown.
            (vec![refused(50), USABLE], 0, Some(5), switch(1, 0, AccessRefused)),
            // Leaving an account that is out, a suspected one on the way does not hold the
            // group while another is usable (before: it waited for the suspected one)...
            (vec![refused(50), suspected(15), USABLE], 0, Some(5), switch(2, 0, AccessRefused)),
            (vec![out(30, ParsedReset), suspected(15), USABLE], 0, None, switch(2, 0, StatedReset)),
            (vec![suspected(15), USABLE, out(40, ParsedReset)], 2, None, switch(1, 2, BackoffEnded)),
            // ...but does when none is.
            (vec![refused(50), suspected(15)], 0, None, wait(15, WaitCause::Suspected { account: 1 })),
        ];
        for (index, (states, active, switched, expected)) in cases.into_iter().enumerate() {
            let selection = select(&states, &[], active, switched.map(at), COOLDOWN, at(10));
            assert_eq!(selection, expected, "case {index}: {states:?} active {active}");
        }
    }

    #[test]
    fn a_confirmed_limit_switches_within_the_cooldown_to_an_account_whose_stated_reset_passed() {
        // a1 went back at 10:06 while a2 was out until its stated reset; a1's limit is now
        // confirmed. Before: the group waited for the cooldown (10:21) with a2's quota back.
        let states = [out(50, BackoffRule::Confirmed), USABLE];
        let waits = select(&states, &[false, false], 0, Some(at(6)), COOLDOWN, at(12));
        assert_eq!(waits, wait(21, WaitCause::SwitchCooldown { from: 0, to: 1 }));
        let switches = select(&states, &[false, true], 0, Some(at(6)), COOLDOWN, at(12));
        assert_eq!(switches, switch(1, 0, SwitchCause::QuotaReturned));
    }

    #[test]
    fn account_state_reads_the_rule_of_the_backoff_in_force() {
        let row = |until: Option<u32>, rule: Option<BackoffRule>, suspected: bool| BackoffRow {
            backoff_until: until.map(at),
            rule,
            suspected_at: suspected.then(|| at(0)),
            ..BackoffRow::default()
        };
        assert_eq!(AccountState::of(&row(None, None, false), at(10)), USABLE);
        assert_eq!(AccountState::of(&row(Some(10), Some(BackoffRule::Confirmed), false), at(10)), USABLE);
        assert_eq!(
            AccountState::of(&row(Some(20), Some(BackoffRule::ParsedReset), false), at(10)),
            out(20, BackoffRule::ParsedReset)
        );
        assert_eq!(
            AccountState::of(&row(Some(15), Some(BackoffRule::Suspected), true), at(10)),
            suspected(15)
        );
        // Rows from before the rule column: the suspected mark decides.
        assert_eq!(AccountState::of(&row(Some(15), None, true), at(10)), suspected(15));
        assert_eq!(AccountState::of(&row(Some(15), None, false), at(10)), out(15, BackoffRule::Confirmed));
    }
}
