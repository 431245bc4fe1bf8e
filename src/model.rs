//! The vocabularies drainctl stores and prints, as enums: how a run ended ([`RunStatus`]),
//! where an item is ([`ItemState`]), how an attempt ended ([`AttemptOutcome`]), what an
//! event records ([`EventKind`]), who started a pass ([`Trigger`]) and how a supervisor
//! pass ended ([`PassStatus`]).
//!
//! Each value has one spelling, its snake_case name: the one the migrations' CHECK lists
//! allow, the one `--json` prints (docs/json.md) and the one written to the database (as
//! `text`, through `ToSql`/`FromSql`). Code compares and writes the enums, never the
//! strings; the tests below check that the migrations and the docs name exactly these
//! values, so the three cannot drift apart unnoticed.

use std::error::Error as StdError;
use std::fmt;

use postgres::types::{FromSql, IsNull, ToSql, Type};

/// A name that is not a value of a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What the vocabulary names, e.g. "event kind".
    pub vocabulary: &'static str,
    pub value: String,
    /// Every value of the vocabulary, in order.
    pub known: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut known = self.known.to_vec();
        known.sort_unstable();
        write!(f, "unknown {} {:?}; known: {}", self.vocabulary, self.value, known.join(", "))
    }
}

impl StdError for UnknownValue {}

/// Define a vocabulary: the enum, its names, parsing, serde and postgres text conversion.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every value, in the order the docs list them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every name, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The stored and printed name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;

            fn from_str(text: &str) -> Result<$name, UnknownValue> {
                $name::ALL.iter().copied().find(|value| value.as_str() == text).ok_or_else(|| UnknownValue {
                    vocabulary: $what,
                    value: text.to_string(),
                    known: $name::NAMES,
                })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl ToSql for $name {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut postgres::types::private::BytesMut,
            ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as ToSql>::accepts(ty)
            }

            postgres::types::to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<$name, Box<dyn StdError + Sync + Send>> {
                let text = <&str as FromSql>::from_sql(ty, raw)?;
                Ok(text.parse::<$name>()?)
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    };
}

vocabulary! {
    /// How a run ended (`runs.status`), or `running` while it has not.
    pub enum RunStatus ("run status") {
        Running = "running",
        /// No item was available.
        Drained = "drained",
        /// `max_items_per_pass` or `max_seconds_per_pass` reached.
        Budget = "budget",
        RateLimited = "rate_limited",
        /// Outside the window, or the drain is paused.
        WindowClosed = "window_closed",
        BurstEnded = "burst_ended",
        Failed = "failed",
        /// Ended by `supervise`: no checkpoint within the liveness timeout.
        Hung = "hung",
        /// Its process is gone.
        Crashed = "crashed",
        /// Every concurrency slot was taken: the run never started work.
        LockSkipped = "lock_skipped",
    }
}

vocabulary! {
    /// Where an item is (`items.state`).
    #[derive(clap::ValueEnum)]
    pub enum ItemState ("item state") {
        Pending = "pending",
        Running = "running",
        Done = "done",
        Dead = "dead",
        /// Its source file vanished (or stopped being a regular file inside the source folder)
        /// while it was pending.
        #[value(name = "skipped_missing")]
        SkippedMissing = "skipped_missing",
    }
}

vocabulary! {
    /// How an attempt ended (`attempts.outcome`; NULL while it runs).
    pub enum AttemptOutcome ("attempt outcome") {
        /// Succeeded: its result is committed.
        Done = "done",
        /// The worker failed by itself (non-zero exit, output over the cap).
        Failure = "failure",
        /// A failure worth retrying: timeout, signal, server error.
        Transient = "transient",
        /// A quota hit: the attempt is given back.
        QuotaHit = "quota_hit",
        /// Given back by whoever ended its run, or taken by `retry`.
        Released = "released",
        /// The pass was interrupted by a signal while the worker ran.
        Interrupted = "interrupted",
        /// The worker could not be started.
        NotStarted = "not_started",
        /// Its source file vanished (or stopped being a regular file inside the source folder)
        /// while it was pending.
        SkippedMissing = "skipped_missing",
        /// Its staged result did not verify.
        StagingFailed = "staging_failed",
    }
}

vocabulary! {
    /// What an event records (`events.kind`): every kind drainctl records, the kinds
    /// `notify_on` may list.
    pub enum EventKind ("event kind") {
        AccountSwitched = "account_switched",
        BackoffCleared = "backoff_cleared",
        BackoffDistrusted = "backoff_distrusted",
        BackoffSet = "backoff_set",
        /// A cost budget (`max_cost_per_pass`, `max_cost_per_day`) stopped a pass or kept
        /// `supervise` from starting a drain (docs/results.md).
        BudgetReached = "budget_reached",
        BurstExpired = "burst_expired",
        BurstMoved = "burst_moved",
        BurstOff = "burst_off",
        BurstOn = "burst_on",
        /// A burst a pass ended while this host's clock ran ahead, set again once the clock
        /// went back (docs/operations.md, "A clock that went back").
        BurstRestored = "burst_restored",
        ClaimLost = "claim_lost",
        /// `migrate --repair-counts` set the kept per-state item counts right.
        CountsRepaired = "counts_repaired",
        /// A pass opened a new database session after the server ended its own
        /// (docs/operations.md, "When the database goes away").
        DatabaseReconnected = "database_reconnected",
        DrainPaused = "drain_paused",
        DrainResumed = "drain_resumed",
        /// A `needs_attention` hit parked the quota group until `resume --group`.
        GroupParked = "group_parked",
        /// An operator cleared a parked quota group.
        GroupResumed = "group_resumed",
        ItemDeadLettered = "item_dead_lettered",
        ItemReleased = "item_released",
        ItemSkippedMissing = "item_skipped_missing",
        /// An operator deleted items with `discard`.
        ItemsDiscarded = "items_discarded",
        ItemsEnqueued = "items_enqueued",
        ItemsRetried = "items_retried",
        KillFailed = "kill_failed",
        /// Log lines of a pass or `supervise` could not be written (a full disk).
        LogWriteFailed = "log_write_failed",
        MetricsWriteFailed = "metrics_write_failed",
        MigrationApplied = "migration_applied",
        MigrationChecksumRepaired = "migration_checksum_repaired",
        /// A poison item's quota hit was charged as a failure attempt.
        QuotaHitCharged = "quota_hit_charged",
        /// A charged quota hit was taken back: the group's next hit showed the window was
        /// spent, not the item (docs/rate-limits.md, "Poison items").
        QuotaHitRefunded = "quota_hit_refunded",
        ResumeTokenRejected = "resume_token_rejected",
        /// A notifier failed: never itself notified.
        NotifyFailed = "notify_failed",
        RetentionPruned = "retention_pruned",
        RunCrashed = "run_crashed",
        RunFinished = "run_finished",
        RunHung = "run_hung",
        /// A later `supervise` killed what a hung or crashed run left alive: its drain
        /// process, worker group or session (docs/operations.md).
        RunProcessesKilled = "run_processes_killed",
        RunStarted = "run_started",
        SourceScanned = "source_scanned",
        StagedResultCompleted = "staged_result_completed",
        StagedResultDiscarded = "staged_result_discarded",
        SuperviseError = "supervise_error",
        WorkerNotStarted = "worker_not_started",
    }
}

vocabulary! {
    /// Who started a pass (`runs.trigger`, `drain --trigger`).
    #[derive(clap::ValueEnum)]
    pub enum Trigger ("trigger") {
        Manual = "manual",
        Supervisor = "supervisor",
        Burst = "burst",
    }
}

vocabulary! {
    /// How a supervisor pass ended (`supervisor_passes.status`).
    pub enum PassStatus ("supervisor pass status") {
        Done = "done",
        /// Another pass held the supervise lock.
        LockSkipped = "lock_skipped",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use regex::Regex;

    use super::*;

    fn names(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn every_value_parses_back_and_serializes_as_its_name() {
        fn check<T>(all: &[T])
        where
            T: Copy + PartialEq + fmt::Debug + fmt::Display + serde::Serialize + std::str::FromStr,
            T: for<'de> serde::Deserialize<'de>,
            <T as std::str::FromStr>::Err: fmt::Debug,
        {
            for value in all {
                let name = value.to_string();
                assert_eq!(name.parse::<T>().unwrap(), *value);
                assert_eq!(serde_json::to_string(value).unwrap(), format!("\"{name}\""));
                assert_eq!(serde_json::from_str::<T>(&format!("\"{name}\"")).unwrap(), *value);
            }
        }
        check(RunStatus::ALL);
        check(ItemState::ALL);
        check(AttemptOutcome::ALL);
        check(EventKind::ALL);
        check(Trigger::ALL);
        check(PassStatus::ALL);
        assert_eq!(EventKind::ALL.len(), 43);
        let error = "run_hang".parse::<EventKind>().unwrap_err().to_string();
        assert!(error.starts_with("unknown event kind \"run_hang\"; known: account_switched, "), "{error}");
        // In order, as people look a name up.
        assert!(error.contains("log_write_failed, metrics_write_failed, migration_applied"), "{error}");
        assert!(error.contains("kill_failed, log_write_failed"), "{error}");
        assert!(
            error.contains("notify_failed, quota_hit_charged, quota_hit_refunded, resume_token_rejected"),
            "{error}"
        );
        assert!(serde_json::from_str::<RunStatus>("\"Hung\"").is_err());
    }

    #[test]
    fn clap_spells_the_values_as_stored() {
        use clap::ValueEnum;
        for state in ItemState::ALL {
            assert_eq!(state.to_possible_value().unwrap().get_name(), state.as_str());
        }
        for trigger in Trigger::ALL {
            assert_eq!(trigger.to_possible_value().unwrap().get_name(), trigger.as_str());
        }
    }

    /// Every `CHECK (column IN (...))` of the migrations, applied in order (a later
    /// definition replaces an earlier one), by table and column.
    fn migration_checks() -> BTreeMap<(String, String), BTreeSet<String>> {
        let table = Regex::new(r"(?i)\b(?:CREATE|ALTER)\s+TABLE\s+(\w+)").unwrap();
        let check = Regex::new(r"(?i)\bCHECK\s*\(\s*(\w+)\s+IN\s*\(([^)]*)\)").unwrap();
        let quoted = Regex::new(r"'([^']*)'").unwrap();
        let mut checks = BTreeMap::new();
        for migration in crate::migrate::MIGRATIONS {
            // Comments may name tables and values: they do not count.
            let sql: String = migration
                .sql
                .lines()
                .map(|line| line.split("--").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            let tables: Vec<(usize, String)> =
                table.captures_iter(&sql).map(|c| (c.get(0).unwrap().start(), c[1].to_string())).collect();
            for found in check.captures_iter(&sql) {
                let at = found.get(0).unwrap().start();
                let (_, table) = tables.iter().rev().find(|(start, _)| *start < at).unwrap();
                let values = quoted.captures_iter(&found[2]).map(|c| c[1].to_string()).collect();
                checks.insert((table.clone(), found[1].to_string()), values);
            }
        }
        checks
    }

    #[test]
    fn the_migrations_check_lists_name_exactly_the_enum_values() {
        let mut checks = migration_checks();
        let mut expect = |table: &str, column: &str, values: &[&str]| {
            let found = checks.remove(&(table.to_string(), column.to_string()));
            assert_eq!(found, Some(names(values)), "CHECK of {table}.{column}");
        };
        expect("runs", "status", RunStatus::NAMES);
        expect("runs", "trigger", Trigger::NAMES);
        expect("items", "state", ItemState::NAMES);
        expect("supervisor_passes", "status", PassStatus::NAMES);
        let rules = [
            crate::backoff::BackoffRule::ParsedReset,
            crate::backoff::BackoffRule::Suspected,
            crate::backoff::BackoffRule::Confirmed,
        ];
        expect("quota_backoffs", "rule", &rules.map(|rule| rule.as_str()));
        assert!(checks.is_empty(), "CHECK lists without a vocabulary: {checks:?}");
    }

    /// The backquoted names in the description of a docs/json.md table row: the first
    /// row of the section `section` whose field is `field`.
    fn json_doc_row(section: &str, field: &str) -> BTreeSet<String> {
        let doc = include_str!("../docs/json.md");
        let start = doc.find(&format!("## `{section}")).unwrap_or_else(|| panic!("no section {section}"));
        let row = doc[start..]
            .lines()
            .find(|line| line.starts_with(&format!("| `{field}` |")))
            .unwrap_or_else(|| panic!("no row {field} in {section}"));
        let description = row.split('|').nth(3).unwrap();
        let quoted = Regex::new(r"`([a-z_]+)`").unwrap();
        quoted.captures_iter(description).map(|c| c[1].to_string()).collect()
    }

    #[test]
    fn docs_json_lists_exactly_the_enum_values() {
        assert_eq!(json_doc_row("drainctl runs", "runs[].status"), names(RunStatus::NAMES));
        assert_eq!(json_doc_row("drainctl runs", "runs[].trigger"), names(Trigger::NAMES));
        assert_eq!(json_doc_row("drainctl items", "items[].state"), names(ItemState::NAMES));
        assert_eq!(json_doc_row("drainctl items show", "state"), names(ItemState::NAMES));
        assert_eq!(
            json_doc_row("drainctl items show", "attempt_history[].outcome"),
            names(AttemptOutcome::NAMES)
        );
        // A pass that ran ends in one of these (`hung` and `crashed` when supervise ended
        // its run first); `running` is no end.
        let pass_ends = json_doc_row("drainctl drain", "status");
        let ended = [RunStatus::Running];
        let expected: Vec<&str> =
            RunStatus::ALL.iter().filter(|status| !ended.contains(status)).map(|s| s.as_str()).collect();
        assert_eq!(pass_ends, names(&expected));
    }

    #[test]
    fn docs_list_exactly_the_event_kinds() {
        let doc = include_str!("../docs/configuration.md");
        let start = doc.find("- Known event kinds:").unwrap();
        let end = doc[start..].find(".\n").unwrap() + start;
        let quoted = Regex::new(r"`([a-z_]+)`").unwrap();
        let listed: BTreeSet<String> =
            quoted.captures_iter(&doc[start..end]).map(|c| c[1].to_string()).collect();
        assert_eq!(listed, names(EventKind::NAMES));
    }

    #[test]
    fn literal_states_in_sql_are_values_of_the_vocabularies() {
        let sources = [
            include_str!("db/items.rs"),
            include_str!("db/runs.rs"),
            include_str!("db/passes.rs"),
            include_str!("db/retention.rs"),
            include_str!("db/drains.rs"),
            include_str!("db/events.rs"),
        ];
        let compared = Regex::new(r"\b(state|status|outcome)\s*(?:=|<>)\s*'(\w+)'").unwrap();
        let listed = Regex::new(r"\b(state|status)\s+(?:NOT\s+)?IN\s*\(([^)]*)\)").unwrap();
        let case = Regex::new(r"\bstate\s*=\s*CASE\s+WHEN[^']*'(\w+)'\s+ELSE\s+'(\w+)'").unwrap();
        let quoted = Regex::new(r"'(\w+)'").unwrap();
        let known = |column: &str, value: &str| match column {
            "state" => ItemState::NAMES.contains(&value),
            "status" => RunStatus::NAMES.contains(&value) || PassStatus::NAMES.contains(&value),
            _ => AttemptOutcome::NAMES.contains(&value),
        };
        let mut seen = 0;
        for source in sources {
            for found in compared.captures_iter(source) {
                assert!(known(&found[1], &found[2]), "{} = '{}'", &found[1], &found[2]);
                seen += 1;
            }
            for found in listed.captures_iter(source) {
                for value in quoted.captures_iter(&found[2]) {
                    assert!(known(&found[1], &value[1]), "{} IN (... '{}' ...)", &found[1], &value[1]);
                    seen += 1;
                }
            }
            for found in case.captures_iter(source) {
                assert!(known("state", &found[1]) && known("state", &found[2]), "{}", &found[0]);
                seen += 1;
            }
        }
        assert!(seen > 20, "the patterns no longer find the SQL literals ({seen})");
    }
}
