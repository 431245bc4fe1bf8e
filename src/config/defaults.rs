//! Defaults: the value of every setting the file leaves out.
//!
//! Each is what [`super::Config::resolve`] fills in when its key is absent; the reference
//! of the file (docs/configuration.md) states the same values.

use std::path::PathBuf;

pub const DEFAULT_BURST_UNTIL: &str = "sat 18:00";
pub const DEFAULT_BURST_MAX: &str = "14d";
pub const DEFAULT_BACKOFF: &str = "1h";
pub const DEFAULT_RESET_MARGIN: &str = "1m";
pub const DEFAULT_SUSPECTED_BACKOFF: &str = "5m";
pub const DEFAULT_KILL_GRACE: &str = "10s";
pub const DEFAULT_SUPERVISE_INTERVAL: &str = "15m";
pub const DEFAULT_MAX_ITEMS_PER_PASS: u32 = 50;
pub const DEFAULT_MAX_SECONDS_PER_PASS: &str = "55m";
pub const DEFAULT_ITEM_TIMEOUT: &str = "20m";
pub const DEFAULT_LIVENESS_TIMEOUT: &str = "15m";
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_RETRY_BASE: &str = "1m";
pub const DEFAULT_RETRY_MAX: &str = "6h";
pub const DEFAULT_CHECKPOINT_PATTERN: &str = "^::checkpoint::";
pub const DEFAULT_CONCURRENCY: u32 = 1;
pub const DEFAULT_MAX_RESULT_BYTES: usize = 16 * 1024 * 1024;
pub const DEFAULT_STDERR_TAIL_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PROFILE: &str = "claude";
pub const DEFAULT_NOTIFY_ON: [&str; 5] =
    ["run_hung", "run_crashed", "item_dead_lettered", "burst_expired", "backoff_set"];
pub const DEFAULT_NOTIFY_TIMEOUT: &str = "10s";
pub const DEFAULT_SWITCH_COOLDOWN: &str = "15m";
pub const DEFAULT_RESUME_PATTERN: &str = r"^::resume::\s*(\S+)";
/// A UUID: 36 characters of hex digits and dashes in 8-4-4-4-12 form.
pub const DEFAULT_RESUME_TOKEN_FORMAT: &str =
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";
pub const DEFAULT_SOURCE_GLOB: &str = "**/*";
pub const DEFAULT_MAX_FILES_PER_SCAN: u32 = 10_000;
pub const DEFAULT_RETENTION_RUNS: &str = "30d";
pub const DEFAULT_RETENTION_EVENTS: &str = "90d";
pub const DEFAULT_RETENTION_LOGS: &str = "14d";

/// `$XDG_STATE_HOME/drainctl/logs`, else `~/.local/state/drainctl/logs`.
pub(super) fn default_log_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(state).join("drainctl/logs");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/state/drainctl/logs"),
        None => PathBuf::from("/var/log/drainctl"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::error::Result;
    use crate::quota::Profile;

    fn resolve(text: &str) -> Result<Config> {
        Config::from_text(text, Some(Path::new("/etc/drainctl/drainctl.toml")))
    }

    const MINIMAL: &str = "[[drain]]\nname = \"halacha\"\ncommand = [\"claude\", \"-p\"]\n";

    #[test]
    fn every_drain_setting_has_its_default() {
        let config = resolve(MINIMAL).unwrap();
        let drain = &config.drains[0];
        assert_eq!(drain.quota_group, "halacha");
        assert_eq!(drain.quota_profile, Profile::Claude);
        assert_eq!(drain.max_items_per_pass, 50);
        assert_eq!(drain.max_seconds_per_pass, Duration::from_secs(55 * 60));
        assert_eq!(drain.item_timeout, Duration::from_secs(20 * 60));
        assert_eq!(drain.liveness_timeout, Duration::from_secs(15 * 60));
        assert_eq!(drain.max_attempts, 5);
        assert_eq!(drain.retry_backoff.base, Duration::from_secs(60));
        assert_eq!(drain.retry_backoff.max, Duration::from_secs(6 * 3600));
        assert_eq!(drain.concurrency, 1);
        assert_eq!(drain.max_result_bytes, 16 << 20);
        assert_eq!(drain.stderr_tail_bytes, 1 << 20);
        assert!(drain.checkpoint_pattern.is_match("::checkpoint:: 3"));
        assert!(drain.window.is_none());
        assert_eq!(config.defaults.burst_max, Duration::from_secs(14 * 86400));
        assert_eq!(config.defaults.default_backoff, Duration::from_secs(3600));
        assert_eq!(config.defaults.notify_on, DEFAULT_NOTIFY_ON.map(String::from).to_vec());
        assert_eq!(config.defaults.notify_timeout, Duration::from_secs(10));
    }
}
