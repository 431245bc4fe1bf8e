//! The configuration file as written: serde structs that mirror the TOML.
//!
//! Values stay as the file states them (strings for durations, zones and patterns),
//! wrapped in [`Spanned`] where an error must point at them, and every struct refuses
//! unknown keys (`deny_unknown_fields`), so a typo in a setting fails instead of being
//! ignored. [`super::resolve`] turns them into the typed [`super::Config`].

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default, rename = "quota_group")]
    pub quota_groups: Vec<RawQuotaGroup>,
    #[serde(default, rename = "drain")]
    pub drains: Vec<RawDrain>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[quota_group]] table with a name")]
pub struct RawQuotaGroup {
    pub name: Spanned<String>,
    pub switch_cooldown: Option<Spanned<String>>,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an account table such as { name = \"work\", env = { KEY = \"value\" } }"
)]
pub struct RawAccount {
    pub name: Spanned<String>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [database] table with a url")]
pub struct RawDatabase {
    pub url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [defaults] table")]
pub struct RawDefaults {
    pub timezone: Option<Spanned<String>>,
    pub burst_default_until: Option<Spanned<String>>,
    pub burst_max: Option<Spanned<String>>,
    pub log_dir: Option<Spanned<String>>,
    pub metrics_textfile: Option<String>,
    pub report_html: Option<Spanned<String>>,
    pub notify_command: Option<Spanned<Vec<String>>>,
    pub default_backoff: Option<Spanned<String>>,
    pub reset_margin: Option<Spanned<String>>,
    pub suspected_backoff: Option<Spanned<String>>,
    pub kill_grace: Option<Spanned<String>>,
    pub supervise_interval: Option<Spanned<String>>,
    pub notify_on: Option<Spanned<Vec<String>>>,
    pub notify_timeout: Option<Spanned<String>>,
    pub retention: Option<Spanned<RawRetention>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as { runs = \"30d\", events = \"90d\" }")]
pub struct RawRetention {
    pub runs: Option<String>,
    pub events: Option<String>,
    pub logs: Option<String>,
    pub done_items: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[drain]] table with a name and a command")]
pub struct RawDrain {
    pub name: Spanned<String>,
    pub command: Spanned<Vec<String>>,
    pub workdir: Option<Spanned<String>>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    pub quota_group: Option<Spanned<String>>,
    pub quota_profile: Option<Spanned<String>>,
    pub quota_patterns: Option<Spanned<Vec<String>>>,
    pub veto_patterns: Option<Spanned<Vec<String>>>,
    pub window: Option<Spanned<RawWindow>>,
    pub max_items_per_pass: Option<Spanned<i64>>,
    pub max_seconds_per_pass: Option<Spanned<String>>,
    pub item_timeout: Option<Spanned<String>>,
    pub liveness_timeout: Option<Spanned<String>>,
    pub max_wait: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub poison_after: Option<Spanned<i64>>,
    pub priority: Option<Spanned<i64>>,
    pub retry_backoff: Option<Spanned<RawRetryBackoff>>,
    pub checkpoint_pattern: Option<Spanned<String>>,
    pub resume_pattern: Option<Spanned<String>>,
    pub resume_token_format: Option<Spanned<String>>,
    pub resume_args: Option<Spanned<Vec<String>>>,
    pub concurrency: Option<Spanned<i64>>,
    pub max_result_bytes: Option<Spanned<i64>>,
    pub stderr_tail_bytes: Option<Spanned<i64>>,
    pub source: Option<Spanned<RawSource>>,
    pub every: Option<Spanned<String>>,
    pub max_cost_per_pass: Option<Spanned<f64>>,
    pub max_cost_per_day: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as { dir = \"/data/inbox\", glob = \"*/*.jsonl\" }")]
pub struct RawSource {
    pub dir: String,
    pub glob: Option<String>,
    pub max_files_per_scan: Option<i64>,
    pub max_hash_bytes_per_scan: Option<i64>,
    pub max_hash_seconds_per_scan: Option<String>,
}

/// A drain's `window`: one table. Read as a map only — serde would otherwise take a
/// list (`window = [{…}, {…}]`) as the fields in order and say the first table is not
/// a string.
#[derive(Debug)]
pub struct RawWindow {
    pub days: String,
    pub from: String,
    pub to: String,
}

impl<'de> Deserialize<'de> for RawWindow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            days: String,
            from: String,
            to: String,
        }
        struct WindowVisitor;
        impl<'de> serde::de::Visitor<'de> for WindowVisitor {
            type Value = RawWindow;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(
                    "one table such as { days = \"mon-fri\", from = \"09:00\", to = \"17:00\" } \
                     (a drain has one window)",
                )
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawWindow, A::Error> {
                let fields = Fields::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawWindow { days: fields.days, from: fields.from, to: fields.to })
            }
        }
        deserializer.deserialize_map(WindowVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as { base = \"1m\", max = \"1h\" }")]
pub struct RawRetryBackoff {
    pub base: Option<String>,
    pub max: Option<String>,
}
