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
}

impl Context {
    /// Resolve the configuration and clock (no connection yet), then connect and apply
    /// any missing migration under the migration lock. From here on the events the
    /// notifier wants — the migrations' among them — are kept in the outbox as they are
    /// recorded (see `crate::notify`).
    pub fn open(config_path: Option<&Path>, lock_timeout: Duration) -> Result<Context> {
        let config = Config::discover(config_path, false)?;
        let outbox = crate::notify::outbox(&config);
        let clock = Clock::from_env()?;
        let database = config.require_database_url()?;
        let mut client = crate::db::connect(database)?;
        crate::migrate::ensure_current(&mut client, &outbox, lock_timeout, clock.now())?;
        Ok(Context { config, clock, client, outbox })
    }
}

impl Context {
    /// A `--drain NAME` filter of a history command: a configured drain, or one that has
    /// left the configuration but still has rows; otherwise the usual "unknown drain" error.
    pub fn history_drain(&mut self, name: &str) -> Result<String> {
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
