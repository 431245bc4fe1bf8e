//! The configuration file as written: serde structs that mirror the TOML.
//!
//! Values stay as the file states them (strings for durations, zones and patterns),
//! wrapped in [`Spanned`] where an error must point at them, and every struct refuses
//! unknown keys (`deny_unknown_fields`), so a typo in a setting fails instead of being
//! ignored. A setting that is a table is read from a table only ([`TableOnly`]).
//! [`super::resolve`] turns them into the typed [`super::Config`].

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// The tables that take a setting called `key`, as messages name them (`[defaults]`,
/// `[[drain]]`): asked of each table's own reader, so the list never drifts from the
/// structs. Empty for a key no table takes or that is not a bare key.
pub(super) fn tables_taking(key: &str) -> Vec<&'static str> {
    fn takes<T: serde::de::DeserializeOwned>(key: &str) -> bool {
        match toml::from_str::<T>(&format!("{key} = 0")) {
            Ok(_) => true,
            Err(error) => !error.message().starts_with(&format!("unknown field `{key}`")),
        }
    }
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Vec::new();
    }
    type Takes = fn(&str) -> bool;
    let tables: [(&'static str, Takes); 4] = [
        ("[database]", takes::<RawDatabase>),
        ("[defaults]", takes::<RawDefaults>),
        ("[[quota_group]]", takes::<RawQuotaGroup>),
        ("[[drain]]", takes::<RawDrain>),
    ];
    tables.into_iter().filter(|(_, takes)| takes(key)).map(|(table, _)| table).collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default, deserialize_with = "table")]
    pub database: RawDatabase,
    #[serde(default, deserialize_with = "table")]
    pub defaults: RawDefaults,
    #[serde(default, rename = "quota_group", deserialize_with = "tables")]
    pub quota_groups: Vec<RawQuotaGroup>,
    #[serde(default, rename = "drain", deserialize_with = "tables")]
    pub drains: Vec<RawDrain>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuotaGroup {
    pub name: Spanned<String>,
    pub switch_cooldown: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "tables")]
    pub accounts: Vec<RawAccount>,
}

impl Table for RawQuotaGroup {
    const EXPECTING: &'static str = "a [[quota_group]] table with a name";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: Spanned<String>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
}

impl Table for RawAccount {
    const EXPECTING: &'static str = "an account table such as { name = \"work\", env = { KEY = \"value\" } }";
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub url: Option<String>,
}

impl Table for RawDatabase {
    const EXPECTING: &'static str = "a [database] table with a url";
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub timezone: Option<Spanned<String>>,
    pub burst_default_until: Option<Spanned<String>>,
    pub burst_max: Option<Spanned<String>>,
    pub log_dir: Option<Spanned<String>>,
    pub metrics_textfile: Option<Spanned<String>>,
    pub report_html: Option<Spanned<String>>,
    pub notify_command: Option<Spanned<Vec<String>>>,
    pub default_backoff: Option<Spanned<String>>,
    pub reset_margin: Option<Spanned<String>>,
    pub suspected_backoff: Option<Spanned<String>>,
    pub kill_grace: Option<Spanned<String>>,
    pub supervise_interval: Option<Spanned<String>>,
    pub notify_on: Option<Spanned<Vec<String>>>,
    pub notify_timeout: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "spanned_table")]
    pub retention: Option<Spanned<RawRetention>>,
}

impl Table for RawDefaults {
    const EXPECTING: &'static str = "a [defaults] table";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub runs: Option<String>,
    pub events: Option<String>,
    pub logs: Option<String>,
    pub done_items: Option<String>,
}

impl Table for RawRetention {
    const EXPECTING: &'static str = "a table such as { runs = \"30d\", events = \"90d\" }";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrain {
    pub name: Spanned<String>,
    pub command: Spanned<Vec<String>>,
    pub workdir: Option<Spanned<String>>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
    pub quota_group: Option<Spanned<String>>,
    pub quota_profile: Option<Spanned<String>>,
    pub quota_patterns: Option<Spanned<Vec<String>>>,
    pub veto_patterns: Option<Spanned<Vec<String>>>,
    #[serde(default, deserialize_with = "spanned_table")]
    pub window: Option<Spanned<RawWindow>>,
    pub max_items_per_pass: Option<Spanned<i64>>,
    pub max_seconds_per_pass: Option<Spanned<String>>,
    pub item_timeout: Option<Spanned<String>>,
    pub liveness_timeout: Option<Spanned<String>>,
    pub max_wait: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub poison_after: Option<Spanned<i64>>,
    pub priority: Option<Spanned<i64>>,
    #[serde(default, deserialize_with = "spanned_table")]
    pub retry_backoff: Option<Spanned<RawRetryBackoff>>,
    pub checkpoint_pattern: Option<Spanned<String>>,
    pub resume_pattern: Option<Spanned<String>>,
    pub resume_token_format: Option<Spanned<String>>,
    pub resume_args: Option<Spanned<Vec<String>>>,
    pub concurrency: Option<Spanned<i64>>,
    pub max_result_bytes: Option<Spanned<i64>>,
    pub stderr_tail_bytes: Option<Spanned<i64>>,
    #[serde(default, deserialize_with = "spanned_table")]
    pub source: Option<Spanned<RawSource>>,
    pub every: Option<Spanned<String>>,
    pub max_cost_per_pass: Option<Spanned<f64>>,
    pub max_cost_per_day: Option<Spanned<f64>>,
}

impl Table for RawDrain {
    const EXPECTING: &'static str = "a [[drain]] table with a name and a command";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub dir: Spanned<String>,
    pub glob: Option<Spanned<String>>,
    pub max_files_per_scan: Option<Spanned<i64>>,
    pub max_hash_bytes_per_scan: Option<Spanned<i64>>,
    pub max_hash_seconds_per_scan: Option<Spanned<String>>,
}

impl Table for RawSource {
    const EXPECTING: &'static str = "a table such as { dir = \"/data/inbox\", glob = \"*/*.jsonl\" }";
}

/// A drain's `window`: one table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub days: Spanned<String>,
    pub from: Spanned<String>,
    pub to: Spanned<String>,
}

impl Table for RawWindow {
    const EXPECTING: &'static str =
        "one table such as { days = \"mon-fri\", from = \"09:00\", to = \"17:00\" } (a drain has one window)";
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBackoff {
    pub base: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
}

impl Table for RawRetryBackoff {
    const EXPECTING: &'static str = "a table such as { base = \"1m\", max = \"1h\" }";
}

/// A setting whose value is a table, and how an error names what was expected.
trait Table {
    const EXPECTING: &'static str;
}

/// `T` read from a TOML table only. serde's derived struct also takes an array, as the
/// fields in order (`retention = ["1d", "2d", "3d", "4d"]` would set four retentions
/// by position, `window = [{…}, {…}]` fail with "the first table is not a string"):
/// a setting that is a table refuses any other value, naming the table it expects.
struct TableOnly<T>(T);

impl<'de, T: Deserialize<'de> + Table> Deserialize<'de> for TableOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Table> serde::de::Visitor<'de> for Visitor<T> {
            type Value = T;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str(T::EXPECTING)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(Visitor(PhantomData)).map(TableOnly)
    }
}

fn table<'de, D: Deserializer<'de>, T: Deserialize<'de> + Table>(deserializer: D) -> Result<T, D::Error> {
    TableOnly::deserialize(deserializer).map(|table| table.0)
}

fn tables<'de, D: Deserializer<'de>, T: Deserialize<'de> + Table>(
    deserializer: D,
) -> Result<Vec<T>, D::Error> {
    let tables = Vec::<TableOnly<T>>::deserialize(deserializer)?;
    Ok(tables.into_iter().map(|table| table.0).collect())
}

fn spanned_table<'de, D: Deserializer<'de>, T: Deserialize<'de> + Table>(
    deserializer: D,
) -> Result<Option<Spanned<T>>, D::Error> {
    let spanned = Option::<Spanned<TableOnly<T>>>::deserialize(deserializer)?;
    Ok(spanned.map(|spanned| {
        let span = spanned.span();
        Spanned::new(span, spanned.into_inner().0)
    }))
}
