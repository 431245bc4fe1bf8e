//! Defaults: the value of every setting the file leaves out.
//!
//! Each is what [`super::Config::resolve`] fills in when its key is absent; the reference
//! of the file (docs/configuration.md) states the same values.

use crate::model::EventKind;
use std::path::PathBuf;
use std::time::Duration;

use super::RetryBackoff;
use crate::quota::Profile;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

// [defaults]
/// A `--until` WHEN, read when `burst on` runs (relative to that moment), so it stays text.
pub const DEFAULT_BURST_UNTIL: &str = "sat 18:00";
pub const DEFAULT_BURST_MAX: Duration = DAY.saturating_mul(14);
pub const DEFAULT_BACKOFF: Duration = HOUR;
pub const DEFAULT_RESET_MARGIN: Duration = crate::backoff::DEFAULT_RESET_MARGIN;
pub const DEFAULT_SUSPECTED_BACKOFF: Duration = crate::backoff::DEFAULT_SUSPECTED_BACKOFF;
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_SUPERVISE_INTERVAL: Duration = MINUTE.saturating_mul(15);
/// Also the errors a pass survives and reports to nobody else: a supervise step that
/// failed, and a worker that could not be started (under cron, often a PATH problem).
/// A charge taken back that makes a dead letter pending again corrects an
/// `item_dead_lettered` the operator was told of (only those are notified); a burst
/// restored, a `burst_expired` recorded while the clock ran ahead.
pub const DEFAULT_NOTIFY_ON: [EventKind; 10] = [
    EventKind::RunHung,
    EventKind::RunCrashed,
    EventKind::ItemDeadLettered,
    EventKind::QuotaHitRefunded,
    EventKind::BurstExpired,
    EventKind::BurstRestored,
    EventKind::BackoffSet,
    EventKind::SuperviseError,
    EventKind::WorkerNotStarted,
    EventKind::GroupParked,
];
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_RETENTION_RUNS: Duration = DAY.saturating_mul(30);
pub const DEFAULT_RETENTION_EVENTS: Duration = DAY.saturating_mul(90);
pub const DEFAULT_RETENTION_LOGS: Duration = DAY.saturating_mul(14);

// [[quota_group]]
pub const DEFAULT_SWITCH_COOLDOWN: Duration = MINUTE.saturating_mul(15);

// [[drain]]
pub const DEFAULT_QUOTA_PROFILE: Profile = Profile::Claude;
pub const DEFAULT_MAX_ITEMS_PER_PASS: u32 = 50;
pub const DEFAULT_MAX_SECONDS_PER_PASS: Duration = MINUTE.saturating_mul(55);
pub const DEFAULT_ITEM_TIMEOUT: Duration = MINUTE.saturating_mul(20);
pub const DEFAULT_LIVENESS_TIMEOUT: Duration = MINUTE.saturating_mul(15);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Quota hits in a row, while the rest of the group succeeds, after which an item's hits
/// are charged as failures (docs/rate-limits.md, "Poison items").
pub const DEFAULT_POISON_AFTER: u32 = 3;
/// Every drain has the same rank unless its file says otherwise.
pub const DEFAULT_PRIORITY: i32 = 0;
/// The range of `priority` (docs/configuration.md).
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i64> = -1000..=1000;
pub const DEFAULT_RETRY_BACKOFF: RetryBackoff = RetryBackoff { base: MINUTE, max: HOUR.saturating_mul(6) };
pub const DEFAULT_CONCURRENCY: u32 = 1;
/// The most passes of one drain at once: `concurrency` is 1 to this.
pub const MAX_CONCURRENCY: u32 = 64;
pub const DEFAULT_MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_STDERR_TAIL_BYTES: usize = 1024 * 1024;
pub const DEFAULT_SOURCE_GLOB: &str = "**/*";
pub const DEFAULT_MAX_FILES_PER_SCAN: u32 = 10_000;
/// What a scan may read to hash files (docs/configuration.md, "File-backed sources").
pub const DEFAULT_MAX_HASH_BYTES_PER_SCAN: u64 = 256 << 20;
pub const DEFAULT_MAX_HASH_SECONDS_PER_SCAN: Duration = Duration::from_secs(5);
// Patterns are compiled once, when the configuration is resolved; a `Regex` cannot be a
// constant, so these stay text (the unit tests below compile each).
pub const DEFAULT_CHECKPOINT_PATTERN: &str = "^::checkpoint::";
pub const DEFAULT_RESUME_PATTERN: &str = r"^::resume::\s*(\S+)";
/// A UUID: 36 characters of hex digits and dashes in 8-4-4-4-12 form.
pub const DEFAULT_RESUME_TOKEN_FORMAT: &str =
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";

/// `$XDG_STATE_HOME/drainctl/logs`, else `~/.local/state/drainctl/logs`. A relative
/// `$XDG_STATE_HOME` is ignored, as the XDG Base Directory specification says: it would
/// put the logs wherever the command was started.
pub(super) fn default_log_dir() -> PathBuf {
    log_dir_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

/// [`default_log_dir`] with `$XDG_STATE_HOME` and `$HOME` as given.
fn log_dir_from(state: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> PathBuf {
    if let Some(state) = state.map(PathBuf::from).filter(|state| state.is_absolute()) {
        return state.join("drainctl/logs");
    }
    match home.filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/drainctl/logs"),
        None => PathBuf::from("/var/log/drainctl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::testing::{resolve, MINIMAL};

    #[test]
    fn a_relative_xdg_state_home_is_ignored() {
        let given = |state: &str, home: Option<&str>| log_dir_from(Some(state.into()), home.map(Into::into));
        // Before: `state/drainctl/logs`, under whatever folder the command started in.
        assert_eq!(given("state", Some("/root")), PathBuf::from("/root/.local/state/drainctl/logs"));
        assert_eq!(given("state", None), PathBuf::from("/var/log/drainctl"));
        assert_eq!(given("", Some("/root")), PathBuf::from("/root/.local/state/drainctl/logs"));
        assert_eq!(given("/srv/state", Some("/root")), PathBuf::from("/srv/state/drainctl/logs"));
    }

    #[test]
    fn the_default_liveness_timeout_outlasts_the_item_timeout_and_is_at_least_15_minutes() {
        let with =
            |settings: &str| resolve(&format!("{MINIMAL}{settings}")).unwrap().drains[0].liveness_timeout;
        assert_eq!(with("item_timeout = \"2h\"\n"), Duration::from_secs(2 * 3600 + 70));
        assert_eq!(with("item_timeout = \"5m\"\n"), Duration::from_secs(15 * 60));
        assert_eq!(with("item_timeout = \"2h\"\nliveness_timeout = \"10m\"\n"), Duration::from_secs(600));
    }

    #[test]
    fn every_drain_setting_has_its_default() {
        let config = resolve(MINIMAL).unwrap();
        let drain = &config.drains[0];
        assert_eq!(drain.quota_group, "halacha");
        assert_eq!(drain.quota_profile, Profile::Claude);
        assert_eq!(drain.max_items_per_pass, 50);
        assert_eq!(drain.max_seconds_per_pass, Duration::from_secs(55 * 60));
        assert_eq!(drain.item_timeout, Duration::from_secs(20 * 60));
        // item_timeout, kill_grace and a minute: a worker printing no checkpoint is ended
        // by its item_timeout before it could be judged hung (before: 15m, 5 minutes short).
        assert_eq!(drain.liveness_timeout, Duration::from_secs(21 * 60 + 10));
        assert_eq!(drain.max_attempts, 5);
        assert_eq!(drain.poison_after, 3);
        assert_eq!(drain.priority, 0);
        assert_eq!(drain.retry_backoff.base, Duration::from_secs(60));
        assert_eq!(drain.retry_backoff.max, Duration::from_secs(6 * 3600));
        assert_eq!(drain.concurrency, 1);
        assert_eq!(drain.max_result_bytes, 16 << 20);
        assert_eq!(drain.stderr_tail_bytes, 1 << 20);
        assert!(drain.checkpoint_pattern.is_match("::checkpoint:: 3"));
        assert!(drain.window.is_none());
        assert_eq!(config.defaults.burst_max, Duration::from_secs(14 * 86400));
        assert_eq!(config.defaults.default_backoff, Duration::from_secs(3600));
        assert_eq!(config.defaults.notify_on, DEFAULT_NOTIFY_ON.to_vec());
        // The errors a pass survives reach the operator by default.
        assert!(config.defaults.notify_on.contains(&EventKind::SuperviseError));
        assert!(config.defaults.notify_on.contains(&EventKind::WorkerNotStarted));
        assert_eq!(config.defaults.notify_timeout, Duration::from_secs(10));
    }

    #[test]
    fn the_default_patterns_compile_and_the_resume_pattern_captures_the_token() {
        assert!(regex::Regex::new(DEFAULT_CHECKPOINT_PATTERN).is_ok());
        assert!(regex::Regex::new(DEFAULT_RESUME_TOKEN_FORMAT).is_ok());
        let resume = regex::Regex::new(DEFAULT_RESUME_PATTERN).unwrap();
        assert_eq!(&resume.captures("::resume:: abc").unwrap()[1], "abc");
    }
}
