//! A running pass and the configuration file it read: it notices when the file is
//! changed in something the pass goes by (docs/configuration.md, "Changing the
//! configuration while drains run").
//!
//! The file is looked at (`stat`) before every item and every second of a wait; only when
//! it differs from the file as read is it read again, and only a change to the drain's own
//! settings, its quota group's, the defaults, or the drains sharing its group counts: a
//! file rewritten with the same text (a configuration tool's run, `touch`), or a change
//! to another drain, does not stop the pass. A file that cannot be read or is invalid
//! (an editor's half-saved file) leaves the pass on the settings it read, with a warning.

use std::path::{Path, PathBuf};

use super::{Config, DrainConfig};

/// What tells that a file was changed: its modification time, size and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: std::time::SystemTime,
    len: u64,
    inode: u64,
}

impl FileStamp {
    pub fn of(metadata: &std::fs::Metadata) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        Some(FileStamp { modified: metadata.modified().ok()?, len: metadata.len(), inode: metadata.ino() })
    }

    /// The file at `path` now (following links); None when it cannot be looked at.
    fn at(path: &Path) -> Option<FileStamp> {
        FileStamp::of(&std::fs::metadata(path).ok()?)
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

impl ConfigWatch {
    pub fn of(config: &Config, drain: &DrainConfig) -> ConfigWatch {
        ConfigWatch {
            path: config.path.clone().filter(|_| config.read_stamp.is_some()),
            seen: config.read_stamp,
            drain: drain.name.clone(),
            settings: settings_of(config, drain),
        }
    }

    /// What changed in the file since it was read that the pass goes by, in words ("the
    /// drain's settings changed", "drain x is no longer in it"); None while nothing did.
    pub fn change(&mut self) -> Option<String> {
        let path = self.path.as_deref()?;
        let now = FileStamp::at(path);
        if now == self.seen {
            return None;
        }
        self.seen = now;
        let config = match Config::load(path) {
            Ok(config) => config,
            Err(error) => {
                log::warn!(
                    "drain {}: the configuration file changed and cannot be used ({}): this pass goes on with the \
                     settings it read",
                    self.drain,
                    error.display_scrubbed()
                );
                return None;
            }
        };
        let Some(drain) = config.drains.iter().find(|drain| drain.name == self.drain) else {
            return Some(format!("drain {} is no longer in it", self.drain));
        };
        settings_of(&config, drain)
            .iter()
            .zip(&self.settings)
            .find(|(new, old)| new != old)
            .map(|((what, _), _)| format!("{what} changed"))
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

    /// Written again by replacing it, so that its stamp differs however coarse the clock.
    fn replace(path: &Path, text: &str) {
        let next = path.with_extension("new");
        std::fs::write(&next, text).expect("write");
        std::fs::rename(&next, path).expect("rename");
    }

    #[test]
    fn the_same_text_written_again_or_another_drain_changed_is_no_change() {
        let (_folder, path, mut watch) = watch_of(FILE);
        assert_eq!(watch.change(), None);
        replace(&path, FILE);
        assert_eq!(watch.change(), None);
        replace(&path, &FILE.replace("quota_group = \"other\"", "quota_group = \"third\""));
        assert_eq!(watch.change(), None);
    }

    #[test]
    fn a_change_of_the_drain_its_defaults_or_its_removal_is_named() {
        let (_folder, path, mut watch) = watch_of(FILE);
        replace(&path, &FILE.replacen("command = [\"w\"]", "command = [\"v\"]", 1));
        assert_eq!(watch.change().as_deref(), Some("the drain's settings changed"));
        let (_folder, path, mut watch) = watch_of(FILE);
        replace(&path, &FILE.replace("\"UTC\"", "\"Europe/Paris\""));
        assert_eq!(watch.change().as_deref(), Some("[defaults] changed"));
        let (_folder, path, mut watch) = watch_of(FILE);
        replace(&path, &FILE.replace("name = \"a\"", "name = \"c\""));
        assert_eq!(watch.change().as_deref(), Some("drain a is no longer in it"));
    }

    #[test]
    fn a_half_saved_file_leaves_the_pass_as_it_was_until_it_is_fixed() {
        let (_folder, path, mut watch) = watch_of(FILE);
        replace(&path, "[[drain]\nname = ");
        assert_eq!(watch.change(), None);
        replace(&path, &FILE.replacen("command = [\"w\"]", "command = [\"v\"]", 1));
        assert_eq!(watch.change().as_deref(), Some("the drain's settings changed"));
    }
}
