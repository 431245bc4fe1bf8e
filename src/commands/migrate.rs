//! `drainctl migrate [--status | --dry-run | --repair-checksum VERSION | --repair-counts]`.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::cli::MigrateArgs;
use crate::clock::Clock;
use crate::config::Config;
use crate::error::Result;
use crate::migrate;
use crate::output::{local_second, table, Report};

pub fn run(config_path: Option<&Path>, lock_timeout: Duration, args: &MigrateArgs) -> Result<Report> {
    let config = Config::discover(config_path, true)?;
    let outbox = crate::notify::outbox(&config);
    let clock = Clock::from_env()?;
    let mut client = crate::db::connect(config.require_database_url()?)?;
    let lock_wait = migrate::LockWait { timeout: lock_timeout, zone: config.defaults.timezone };
    if args.status {
        let rows = migrate::status(&mut client)?;
        // In the zone of every other human output (docs/configuration.md, `timezone`).
        let zone = config.defaults.timezone;
        let human_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                vec![
                    format!("{:04}", row.version),
                    row.name.clone(),
                    row.state.to_string(),
                    row.applied_at.map(|at| local_second(at, zone)).unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        let human = table(&["VERSION", "NAME", "STATE", "APPLIED"], &human_rows);
        return Ok(Report::new(
            human,
            json!({ "migrations": rows, "binary_version": migrate::latest_version() }),
        ));
    }
    if args.dry_run {
        let pending = migrate::pending(&mut client)?;
        let human = if pending.is_empty() {
            "schema is current; nothing to apply".to_string()
        } else {
            let names: Vec<String> = pending.iter().map(|v| format!("{v:04}")).collect();
            format!("would apply: {}", names.join(", "))
        };
        return Ok(Report::new(human, json!({ "would_apply": pending })));
    }
    // The repairs write, whether or not anything is to repair.
    if args.repair_checksum.is_some() || args.repair_counts {
        crate::db::refuse_when_read_only(&mut client)?;
    }
    if let Some(version) = args.repair_checksum {
        let (message, changed) =
            migrate::repair_checksum(&mut client, &outbox, lock_wait, version, clock.now())?;
        crate::notify::notify_recorded(&config, &mut client, &outbox, &clock);
        return Ok(Report::new(message, json!({ "repaired": version, "changed": changed })));
    }
    let report = migrate::ensure_current(&mut client, &outbox, lock_wait, clock.now())?;
    if args.repair_counts {
        let repaired = crate::db::recount::repair(&mut client, &outbox, lock_timeout, clock.now())?;
        crate::notify::notify_recorded(&config, &mut client, &outbox, &clock);
        let human = match repaired.is_empty() {
            true => "every item count matches the items; nothing changed".to_string(),
            false => format!("set the item counts right: {}", crate::db::recount::describe(&repaired)),
        };
        return Ok(Report::new(human, json!({ "repaired_counts": repaired })));
    }
    crate::notify::notify_recorded(&config, &mut client, &outbox, &clock);
    let human = if report.applied.is_empty() {
        format!("schema is current (version {})", report.current_version)
    } else {
        let names: Vec<String> = report.applied.iter().map(|v| format!("{v:04}")).collect();
        format!("applied {}; schema is at version {}", names.join(", "), report.current_version)
    };
    Ok(Report::new(human, json!(report)))
}
