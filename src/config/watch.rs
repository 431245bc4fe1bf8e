//! A running pass and the configuration file it read: it notices when the file is
//! changed in something the pass goes by, and the run goes on with the file as it is now
//! (docs/configuration.md, "Changing the configuration while drains run").
//!
//! The file is looked at (`stat`) before every item and every second of a wait; only when
//! it differs from the file as last read, and was last written [`SETTLED_FOR`] ago or more
//! (an editor or a tool writing it in place passes through a cut file, which may parse:
//! empty, or cut between two tables), is it read again. Only a change to the drain's own
//! settings, its quota group's, the defaults, or the drains sharing its group counts: a
//! file rewritten with the same text (a configuration tool's run, `touch`), or a change
//! to another drain, goes unnoticed. A file that cannot be read or is invalid (an
//! editor's half-saved file, a mode refused) leaves the pass on the settings it read, with
//! a warning, until it changes again (a `chmod` too).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Config, DrainConfig};

/// How long ago the file must have been written last before it is read again.
pub const SETTLED_FOR: Duration = Duration::from_secs(1);

/// What tells that a file was changed: its modification and change times (a `chmod` or
/// `chown` moves the latter), size and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: std::time::SystemTime,
    changed: (i64, i64),
    len: u64,
    inode: u64,
}

impl FileStamp {
    pub fn of(metadata: &std::fs::Metadata) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        // A named pipe is read once: read again, it would hold the pass until a writer came.
        if !metadata.is_file() {
            return None;
        }
        Some(FileStamp {
            modified: metadata.modified().ok()?,
            changed: (metadata.ctime(), metadata.ctime_nsec()),
            len: metadata.len(),
            inode: metadata.ino(),
        })
    }

    /// The file at `path` now (following links); None when it cannot be looked at.
    fn at(path: &Path) -> Option<FileStamp> {
        FileStamp::of(&std::fs::metadata(path).ok()?)
    }

    /// Whether the file was last written [`SETTLED_FOR`] ago or more by the wall clock
    /// (or at an instant ahead of it, which cannot be judged).
    fn is_settled(&self) -> bool {
        std::time::SystemTime::now().duration_since(self.modified).map_or(true, |age| age >= SETTLED_FOR)
    }
}

/// The configuration a pass read, and what it last found at its path.
#[derive(Debug)]
pub struct ConfigWatch {
    /// None for a configuration read from a descriptor or text: nothing to look at again.
    path: Option<PathBuf>,
    seen: Option<FileStamp>,
    drain: String,
    settings: Vec<(&'static str, String)>,
}

/// The configuration file read again, changed in something the pass goes by.
#[derive(Debug)]
pub struct Reloaded {
    pub config: Config,
    /// What changed, in words: `the configuration file changed: the drain's settings`.
    pub what: String,
}

impl Reloaded {
    /// Whether the run of drain `name` holding concurrency slot `own` (none: it lost it),
    /// among the slots `held` by its passes now, may go on with the file as it is now; why
    /// not when it may not. With `concurrency` lowered below the passes running, those
    /// holding the highest slots end, as many as run beyond it.
    pub fn may_go_on(&self, name: &str, own: Option<u32>, held: &[u32]) -> Result<(), String> {
        let Some(drain) = self.config.drains.iter().find(|drain| drain.name == name) else {
            return Err("the pass ends".to_string());
        };
        let Some(slot) = own.filter(|slot| held.contains(slot)) else {
            return Err("this pass holds no concurrency slot of it: the pass ends".to_string());
        };
        let running = u32::try_from(held.len()).unwrap_or(u32::MAX).max(1);
        let above = held.iter().filter(|other| **other > slot).count();
        let beyond = running.saturating_sub(drain.concurrency) as usize;
        if above < beyond {
            return Err(format!(
                "its concurrency is {} now, with {running} passes running: this one ends",
                drain.concurrency
            ));
        }
        Ok(())
    }
}

impl ConfigWatch {
    pub fn of(config: &Config, drain: &DrainConfig) -> ConfigWatch {
        ConfigWatch {
            path: config.path.clone().filter(|_| config.read_stamp.is_some()),
            seen: config.read_stamp,
            drain: drain.name.clone(),
            settings: settings_of(config, drain),
        }
    }

    /// The file read again when it changed since it was read in something the pass goes
    /// by; None while nothing did.
    pub fn change(&mut self) -> Option<Reloaded> {
        let path = self.path.as_deref()?;
        let Some(stamp) = FileStamp::at(path) else {
            // Gone, or no regular file now (a named pipe swapped in): never read as such.
            if self.seen.take().is_some() {
                log::warn!(
                    "drain {}: the configuration file changed and cannot be used (it is gone, or no longer a \
                     regular file): this pass goes on with the settings it read",
                    self.drain
                );
            }
            return None;
        };
        let now = Some(stamp);
        // Being written: looked at again next time.
        if now == self.seen || !stamp.is_settled() {
            return None;
        }
        let config = match Config::load_regular(path) {
            // Written again between the look and the read: looked at again next time.
            Ok(config) if config.read_stamp != now => return None,
            Ok(config) => {
                self.seen = now;
                config
            }
            Err(error) => {
                self.seen = now;
                // Read again once it changes (a `chmod` moves its change time).
                log::warn!(
                    "drain {}: the configuration file changed and cannot be used ({}): this pass goes on with \
                     the settings it read",
                    self.drain,
                    error.display_scrubbed()
                );
                return None;
            }
        };
        let what = match config.drains.iter().find(|drain| drain.name == self.drain) {
            None => format!("drain {} is no longer in it", self.drain),
            Some(drain) => {
                let settings = settings_of(&config, drain);
                let changed = settings.iter().zip(&self.settings).find(|(new, old)| new != old)?;
                changed.0 .0.to_string()
            }
        };
        Some(Reloaded { config, what: format!("the configuration file changed: {what}") })
    }
}

/// What a pass of `drain` goes by, each part named for the message.
fn settings_of(config: &Config, drain: &DrainConfig) -> Vec<(&'static str, String)> {
    let group = config.quota_group(&drain.quota_group).ok();
    vec![
        ("the drain's settings", format!("{drain:?}")),
        ("its quota group's settings", format!("{group:?}")),
        (
            "the drains sharing its quota group",
            format!("{:?}", crate::db::items::GroupRivals::of(config, drain)),
        ),
        ("[defaults]", format!("{:?}", config.defaults)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "[defaults]\ntimezone = \"UTC\"\n[[drain]]\nname = \"a\"\ncommand = [\"w\"]\n\
                        [[drain]]\nname = \"b\"\ncommand = [\"w\"]\nquota_group = \"other\"\n";

    fn watch_of(text: &str) -> (tempfile::TempDir, PathBuf, ConfigWatch) {
        let folder = tempfile::tempdir().expect("temporary folder");
        let path = folder.path().join("drainctl.toml");
        std::fs::write(&path, text).expect("write");
        let config = Config::load(&path).expect("load");
        let watch = ConfigWatch::of(&config, config.drain("a").expect("drain a"));
        (folder, path, watch)
    }

    fn what(reloaded: Option<Reloaded>) -> Option<String> {
        reloaded.map(|reloaded| reloaded.what.replace("the configuration file changed: ", ""))
    }

    /// Written again by replacing it, so that its stamp differs however coarse the clock,
    /// and dated as written [`SETTLED_FOR`] ago.
    fn replace(path: &Path, text: &str) {
        let next = path.with_extension("new");
        std::fs::write(&next, text).expect("write");
        let written = std::time::SystemTime::now() - SETTLED_FOR * 2;
        std::fs::File::options()
            .write(true)
            .open(&next)
            .and_then(|file| file.set_modified(written))
            .expect("date");
        std::fs::rename(&next, path).expect("rename");
    }

    #[test]
    fn a_file_written_a_moment_ago_is_read_only_once_it_has_settled() {
        let (_folder, path, mut watch) = watch_of(FILE);
        std::fs::write(&path, "").expect("write");
        assert!(watch.change().is_none(), "an empty file just written is not read");
        replace(&path, "");
        assert_eq!(what(watch.change()).as_deref(), Some("drain a is no longer in it"));
    }

    #[test]
    fn a_lowered_concurrency_ends_the_passes_of_the_highest_slots_beyond_it() {
        let (_folder, path, _) = watch_of(FILE);
        replace(&path, &FILE.replacen("command = [\"w\"]", "command = [\"w\"]\nconcurrency = 1", 1));
        let reloaded = Reloaded { config: Config::load(&path).expect("load"), what: String::new() };
        // Slots 1 and 2 of 3 held (slot 0 ended): slot 1 goes on, slot 2 ends.
        assert!(reloaded.may_go_on("a", Some(1), &[1, 2]).is_ok());
        assert!(reloaded.may_go_on("a", Some(2), &[1, 2]).is_err());
        assert!(reloaded.may_go_on("a", Some(2), &[2]).is_ok(), "the one pass left goes on");
        assert!(reloaded.may_go_on("b", Some(0), &[0]).is_ok());
        assert!(reloaded.may_go_on("gone", Some(0), &[0]).is_err());
        // One that lost its slot with its session ends.
        assert!(reloaded.may_go_on("b", None, &[0]).is_err());
    }

    #[test]
    fn the_same_text_written_again_or_another_drain_changed_is_no_change() {
        let (_folder, path, mut watch) = watch_of(FILE);
        assert!(watch.change().is_none());
        replace(&path, FILE);
        assert!(watch.change().is_none());
        replace(&path, &FILE.replace("quota_group = \"other\"", "quota_group = \"third\""));
        assert!(watch.change().is_none());
    }

    #[test]
    fn a_change_of_the_drain_its_defaults_or_its_removal_is_named() {
        let (_folder, path, mut watch) = watch_of(FILE);
        replace(&path, &FILE.replacen("command = [\"w\"]", "command = [\"v\"]", 1));
        assert_eq!(what(watch.change()).as_deref(), Some("the drain's settings"));
        let (_folder, path, mut watch) = watch_of(FILE);
        replace(&path, &FILE.replace("\"UTC\"", "\"Europe/Paris\""));
        assert_eq!(what(watch.change()).as_deref(), Some("[defaults]"));
        let (_folder, path, mut watch) = watch_of(FILE);
        replace(&path, &FILE.replace("name = \"a\"", "name = \"c\""));
        assert_eq!(what(watch.change()).as_deref(), Some("drain a is no longer in it"));
    }

    #[test]
    fn a_half_saved_file_leaves_the_pass_as_it_was_until_it_is_fixed() {
        let (_folder, path, mut watch) = watch_of(FILE);
        replace(&path, "[[drain]\nname = ");
        assert!(watch.change().is_none());
        replace(&path, &FILE.replacen("command = [\"w\"]", "command = [\"v\"]", 1));
        assert_eq!(what(watch.change()).as_deref(), Some("the drain's settings"));
    }
}
