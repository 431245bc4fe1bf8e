//! What every database-backed command runs with: the resolved configuration, the clock,
//! and the one connection of this invocation (schema already brought up to date).

use std::path::Path;
use std::time::Duration;

use postgres::Client;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::events::Outbox;
use crate::error::Result;

pub struct Context {
    pub config: Config,
    pub clock: Clock,
    pub client: Client,
    /// The recorded events that wait for the notifier: every `record_event` gets it.
    pub outbox: Outbox,
    /// This command created drainctl's schema in a database that had none (its first
    /// command, a dry run too): a dry run says so rather than "nothing was changed".
    pub schema_created: bool,
}

impl Context {
    /// Resolve the configuration and clock (no connection yet), then connect and apply
    /// any missing migration under the migration lock. From here on the events the
    /// notifier wants — the migrations' among them — are kept in the outbox as they are
    /// recorded (see `crate::notify`).
    /// A command that `changes_nothing` (a dry run) applies no migration to a database an
    /// older drainctl migrated: with any due, it is refused, saying so. A database with no
    /// drainctl schema yet gets it, as from any first command: no older binary uses it.
    pub fn open(
        config_path: Option<&Path>,
        lock_timeout: Duration,
        changes_nothing: bool,
    ) -> Result<Context> {
        let config = Config::discover(config_path, false)?;
        let outbox = crate::notify::outbox(&config);
        let clock = Clock::from_env()?;
        let database = config.require_database_url()?;
        let mut client = crate::db::connect(database)?;
        let lock_wait = crate::migrate::LockWait { timeout: lock_timeout, zone: config.defaults.timezone };
        if changes_nothing {
            let due = crate::migrate::pending(&mut client)?;
            if !due.is_empty() && due.len() < crate::migrate::MIGRATIONS.len() {
                let due: Vec<String> = due.iter().map(|version| format!("{version:04}")).collect();
                return Err(crate::error::Error::Config(format!(
                    "migration(s) {} of this drainctl are not applied to the database yet, and a dry run \
                     changes nothing, the schema included: run `drainctl migrate` first (`drainctl migrate \
                     --dry-run` lists them; an older drainctl refuses the schema once they are applied)",
                    due.join(", ")
                )));
            }
        }
        let migrated = crate::migrate::ensure_current(&mut client, &outbox, lock_wait, clock.now())?;
        let schema_created = migrated.applied.len() == crate::migrate::MIGRATIONS.len();
        if !schema_created && !migrated.applied.is_empty() {
            // An upgrade made by whatever command ran first after the new binary was
            // installed (a `status`, cron's `supervise`): one-way, so said on stderr even
            // without -v (docs/migrations.md, "Every invocation migrates first").
            crate::output::say_on_stderr(&format!(
                "{}drainctl: {}",
                crate::output::line_date(),
                crate::migrate::upgrade_notice(&migrated.applied)
            ));
        }
        crate::output::errors_are_recordable();
        Ok(Context { config, clock, client, outbox, schema_created })
    }
}

/// What a dry run on a database without drainctl's schema changed all the same: it gets
/// the schema from its first command, a dry run too (docs/migrations.md).
pub const BUT_THE_SCHEMA: &str = "but drainctl's schema, created in this database that had none";

/// How a drain the database knows but the configuration does not is refused.
pub const NOT_IN_THE_CONFIGURATION: &str = "is in the database but not in the configuration";

impl Context {
    /// The configured drain called `name`, for a command that needs its settings. A drain
    /// the database still knows (its `[[drain]]` table removed or renamed) is refused with
    /// a line that says so and how to bring it back; any other name with the usual
    /// "unknown drain" error.
    pub fn configured_drain(&mut self, name: &str) -> Result<&crate::config::DrainConfig> {
        if self.config.drain(name).is_err() && crate::db::drains::drain_row_exists(&mut self.client, name)? {
            let file = match &self.config.path {
                Some(path) => format!(" ({})", path.display()),
                None => String::new(),
            };
            return Err(crate::error::Error::Usage(format!(
                "drain {name:?} {NOT_IN_THE_CONFIGURATION}{file}: its [[drain]] \
                 table was removed or renamed; add a [[drain]] table named {name:?} back to run, \
                 enqueue or retry its items (`{}` deletes every item of it, results too)",
                crate::commands::discard::discard_all_command(name)
            )));
        }
        self.config.drain(name)
    }

    /// A drain the database or the configuration knows: a configured one, or one that has
    /// left the configuration but still has rows — for a history command's `--drain NAME`,
    /// and for a switch (`pause`, `resume`, `burst off`): a pass it started before may
    /// still run, and a pause stops it (docs/operations.md, "Status"). Otherwise the usual
    /// "unknown drain" error.
    pub fn known_drain(&mut self, name: &str) -> Result<String> {
        match self.config.drain(name) {
            Ok(drain) => Ok(drain.name.clone()),
            Err(error) => {
                if crate::db::drains::drain_row_exists(&mut self.client, name)? {
                    Ok(name.to_string())
                } else {
                    Err(error)
                }
            }
        }
    }
}
