//! `drainctl metrics`: the state of every drain in the Prometheus text exposition format.
//!
//! [`render_metrics`] reads one snapshot — items per state, quota-group backoffs, bursts,
//! pauses, the last run and the last successful run of each drain, its throughput and
//! forecast (see `forecast`), the last supervisor pass — with index-backed queries, one
//! small set per configured drain. The text goes to
//! stdout, or [`write_textfile`] replaces a node_exporter textfile atomically (a temporary
//! file in the same folder, fsynced, renamed over the old one), so the collector never
//! reads half a file. `supervise` calls both after each pass when `metrics_textfile` is
//! set. Timestamps are Unix seconds; 0 means "never" or "none".

use std::fmt::Write as _;
use std::fs::{OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde_json::json;

use crate::cli::MetricsArgs;
use crate::config::Config;
use crate::context::Context;
use crate::db::{backoffs, drains, items, passes, runs};
use crate::error::{Error, Result};
use crate::output::Report;

/// The textfile is world-readable, unlike drainctl's other files (0600): node_exporter
/// runs as its own user and must read it, and it holds only counts and timestamps.
pub const TEXTFILE_MODE: u32 = 0o644;

pub fn run(ctx: &mut Context, args: &MetricsArgs) -> Result<Report> {
    let text = render_metrics(&mut ctx.client, &ctx.config, ctx.clock.now())?;
    let path: PathBuf = match &args.textfile {
        None => return Ok(Report::new(text, serde_json::Value::Null)),
        Some(None) => ctx.config.defaults.metrics_textfile.clone().ok_or_else(|| {
            Error::Usage(
                "--textfile without PATH writes to [defaults] metrics_textfile, which is not set; \
                     give a PATH or set it in the configuration"
                    .to_string(),
            )
        })?,
        Some(Some(path)) => path.clone(),
    };
    write_textfile(&path, &text)?;
    let samples = text.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).count();
    Ok(Report::new(
        format!("wrote {samples} samples to {}", path.display()),
        json!({ "textfile": path, "samples": samples }),
    ))
}

/// One metric family: its name, help text and samples (labels, value).
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Family {
        Family { name, help, samples: Vec::new() }
    }

    fn sample(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        for (labels, value) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
                    .collect();
                let _ = write!(out, "{{{}}}", pairs.join(","));
            }
            let _ = writeln!(out, " {value}");
        }
    }
}

/// Unix seconds (millisecond precision) of an instant; 0 for none.
fn timestamp(at: Option<DateTime<Utc>>) -> f64 {
    at.map(|at| at.timestamp_millis() as f64 / 1000.0).unwrap_or(0.0)
}

/// A label value as the exposition format wants it: `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Render every metric of every configured drain at `now`.
pub fn render_metrics(
    client: &mut impl GenericClient,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<String> {
    let names: Vec<String> = config.drains.iter().map(|drain| drain.name.clone()).collect();
    let controls = drains::read_controls(client, &names)?;

    let mut items_family = Family::new("drainctl_items", "Items of a drain per state.");
    let mut burst = Family::new(
        "drainctl_burst_until_timestamp_seconds",
        "Deadline of the drain's burst (Unix seconds); 0 when none is set.",
    );
    let mut paused = Family::new("drainctl_paused", "1 when the drain is paused, else 0.");
    let mut last_run = Family::new(
        "drainctl_last_run_finished_timestamp_seconds",
        "When the drain's latest finished run (not lock_skipped) ended, labelled with how it ended.",
    );
    let mut last_success = Family::new(
        "drainctl_last_success_timestamp_seconds",
        "When the drain's latest run that completed at least one item ended; 0 when none did.",
    );
    let mut throughput = Family::new(
        "drainctl_throughput_items_per_second",
        "Items completed per second of running time by the drain's recent finished passes (last 24h, at most 20).",
    );
    let mut time_to_empty = Family::new(
        "drainctl_time_to_empty_seconds",
        "Running time the drain needs to empty its backlog (pending and running items) at that throughput.",
    );
    let mut burst_will_finish = Family::new(
        "drainctl_burst_will_finish",
        "During a burst: 1 when the backlog empties before the deadline at that throughput, else 0.",
    );
    let all_counts = items::count_by_state_of(client, &names)?;
    let all_latest = runs::latest_runs(client, &names)?;
    let histories = crate::forecast::recent_histories(client, &names, now)?;
    for drain in &config.drains {
        let name = &drain.name;
        let counts = all_counts.get(name).copied().unwrap_or_default();
        for (state, count) in [
            ("pending", counts.pending),
            ("running", counts.running),
            ("done", counts.done),
            ("dead", counts.dead),
            ("skipped_missing", counts.skipped_missing),
        ] {
            items_family.sample(vec![("drain", name.clone()), ("state", state.to_string())], count as f64);
        }
        let control = controls.iter().find(|control| &control.name == name);
        burst.sample(vec![("drain", name.clone())], timestamp(control.and_then(|c| c.burst_until)));
        let is_paused = control.is_some_and(|c| c.is_paused());
        paused.sample(vec![("drain", name.clone())], if is_paused { 1.0 } else { 0.0 });
        let latest = all_latest.get(name).cloned().unwrap_or_default();
        if let Some((status, finished_at)) = latest.finished {
            last_run.sample(vec![("drain", name.clone()), ("status", status)], timestamp(Some(finished_at)));
        }
        last_success.sample(vec![("drain", name.clone())], timestamp(latest.last_success_at));
        let burst_until = control.and_then(|c| c.burst_until);
        let forecast = crate::forecast::forecast(
            histories.get(name).copied().unwrap_or_default(),
            counts.pending + counts.running,
            drain.concurrency,
            burst_until,
            now,
        );
        if let Some(rate) = forecast.items_per_hour {
            throughput.sample(vec![("drain", name.clone())], rate / 3600.0);
        }
        if let Some(seconds) = forecast.seconds_to_empty {
            time_to_empty.sample(vec![("drain", name.clone())], seconds);
        }
        if let Some(finishes) = forecast.finishes_before_burst_deadline {
            burst_will_finish.sample(vec![("drain", name.clone())], if finishes { 1.0 } else { 0.0 });
        }
    }

    let groups: Vec<String> = config.quota_groups.iter().map(|group| group.name.clone()).collect();
    let rows = backoffs::read_group_backoffs(client, &groups)?;
    let mut backoff = Family::new(
        "drainctl_backoff_until_timestamp_seconds",
        "Until when the account of the quota group backs off (Unix seconds; may be past); 0 when it never did.",
    );
    for group in &config.quota_groups {
        let accounts = group.accounts.iter().map(|account| account.name.as_str());
        for row in backoffs::rows_for_accounts(&rows, &group.name, accounts) {
            backoff.sample(
                vec![("quota_group", row.quota_group.clone()), ("account", row.account.clone())],
                timestamp(row.backoff_until),
            );
        }
    }

    let last_pass = passes::last_pass(client)?;
    let mut pass_at = Family::new(
        "drainctl_supervisor_last_pass_timestamp_seconds",
        "When the last supervise pass that acted fired (Unix seconds); 0 when none has.",
    );
    pass_at.sample(Vec::new(), timestamp(last_pass.map(|(at, _)| at)));
    let mut pass_duration = Family::new(
        "drainctl_supervisor_last_pass_duration_seconds",
        "How long the last supervise pass that acted took.",
    );
    pass_duration.sample(Vec::new(), last_pass.map(|(_, ms)| f64::from(ms) / 1000.0).unwrap_or(0.0));
    let mut generated = Family::new(
        "drainctl_metrics_generated_timestamp_seconds",
        "When drainctl rendered these metrics (Unix seconds).",
    );
    generated.sample(Vec::new(), timestamp(Some(now)));

    let mut out = String::new();
    for family in [
        items_family,
        backoff,
        burst,
        paused,
        last_run,
        last_success,
        throughput,
        time_to_empty,
        burst_will_finish,
        pass_at,
        pass_duration,
        generated,
    ] {
        family.render(&mut out);
    }
    Ok(out)
}

/// Replace `path` atomically with `text`: write a temporary file in the same folder (mode
/// [`TEXTFILE_MODE`]), fsync it, rename it over `path`, fsync the folder. The temporary
/// name does not end in `.prom`, so node_exporter never reads it.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    let fail = |what: &str, error: std::io::Error| {
        let message = format!("cannot {what} metrics textfile {}: {error}", path.display());
        match error.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => Error::Config(format!(
                "{message}; check that its folder exists and is writable, or change metrics_textfile"
            )),
            _ => Error::Temporary(message),
        }
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("metrics textfile {} does not name a file", path.display())))?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temporary = folder.join(format!(".{}.tmp{}", file_name.to_string_lossy(), std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(TEXTFILE_MODE)
            .open(&temporary)?;
        // The umask may have narrowed the mode given at creation.
        file.set_permissions(Permissions::from_mode(TEXTFILE_MODE))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(fail("write", error));
    }
    if let Err(error) = std::fs::rename(&temporary, path) {
        let _ = std::fs::remove_file(&temporary);
        return Err(fail("replace", error));
    }
    // Make the rename itself durable; a failure here loses nothing already visible.
    if let Err(error) = std::fs::File::open(&folder).and_then(|dir| dir.sync_all()) {
        log::debug!("could not fsync folder {}: {error}", folder.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_family_renders_help_type_and_samples() {
        let mut family = Family::new("drainctl_paused", "1 when paused.");
        family.sample(vec![("drain", "a\"b".to_string())], 1.0);
        family.sample(Vec::new(), 1_764_237_600.5);
        let mut out = String::new();
        family.render(&mut out);
        assert_eq!(
            out,
            "# HELP drainctl_paused 1 when paused.\n# TYPE drainctl_paused gauge\n\
             drainctl_paused{drain=\"a\\\"b\"} 1\ndrainctl_paused 1764237600.5\n"
        );
    }

    #[test]
    fn the_textfile_is_replaced_whole_and_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drainctl.prom");
        std::fs::write(&path, "old").unwrap();
        write_textfile(&path, "drainctl_paused 0\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "drainctl_paused 0\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["drainctl.prom"], "no temporary file is left");
        let error = write_textfile(&dir.path().join("missing/drainctl.prom"), "x").unwrap_err();
        assert_eq!(error.exit_code(), 78);
    }
}
