//! A drain's log file, `log_dir/NAME/YYYYmmddTHHMMSSZ-PID.log`, named after the drain
//! process's own pid (docs/operations.md#finding-a-runs-log).
//!
//! `supervise` opens the file before it starts the drain, and the drain is started twice
//! detached, so its pid is known only once it runs. The file is therefore created under
//! the supervising process's pid and renamed to the drain's: by `supervise` as soon as the
//! detached start reports the pid, and by the drain itself when it starts (whichever comes
//! first; the other finds the file already renamed). The run row and the pass's decision
//! both record the renamed path.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// `20261127T100000Z-4711.log`: when the drain was started, and its pid.
pub fn file_name(started: DateTime<Utc>, pid: u32) -> String {
    format!("{}-{pid}.log", started.format("%Y%m%dT%H%M%SZ"))
}

/// The start stamp and pid of a drain log's file name, or `None` for any other name.
pub fn parse_file_name(name: &str) -> Option<(&str, u32)> {
    let stem = name.strip_suffix(".log")?;
    let (stamp, pid) = stem.split_once('-')?;
    let bytes = stamp.as_bytes();
    let is_stamp = bytes.len() == 16
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes.iter().enumerate().all(|(i, b)| i == 8 || i == 15 || b.is_ascii_digit());
    let is_pid = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    if !is_stamp || !is_pid {
        return None;
    }
    Some((stamp, pid.parse().ok()?))
}

/// The same file named after `pid`: `path` itself when its name already carries `pid`
/// or is not a drain log's name.
pub fn named_after(path: &Path, pid: u32) -> PathBuf {
    let Some((stamp, named_pid)) = path.file_name().and_then(|name| name.to_str()).and_then(parse_file_name)
    else {
        return path.to_path_buf();
    };
    if named_pid == pid {
        return path.to_path_buf();
    }
    path.with_file_name(format!("{stamp}-{pid}.log"))
}

/// Rename the log file at `path` after `pid` (see [`named_after`]); returns the path it
/// now has. When it is gone but its renamed self exists, the other side renamed it first.
/// Only a regular file is renamed, and never over an existing one: a link planted at
/// `path` stays where it is, to be refused by name when the log is opened.
pub fn rename_after(path: &Path, pid: u32) -> io::Result<PathBuf> {
    use crate::pinned_folder::{PinnedFolder, Refusal};
    let renamed = named_after(path, pid);
    let (Some(from), Some(to)) = (path.file_name(), renamed.file_name()) else { return Ok(renamed) };
    if renamed == path {
        return Ok(renamed);
    }
    // Renamed in the folder held open, checked as the one the path leads to through no
    // other user's link: a folder swapped meanwhile renames nothing elsewhere. Refused
    // here, the path is refused by name when the log is opened.
    let folder = PinnedFolder::open(&crate::atomic_file::folder_of(path)).map_err(Refusal::into_io_error)?;
    match folder.entry_metadata(from) {
        Ok(metadata) if !metadata.is_file() => {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "it is not a regular file"))
        }
        _ => {}
    }
    match folder.rename_without_replacing(from, to) {
        Ok(()) => Ok(renamed),
        Err(error)
            if error.kind() == io::ErrorKind::NotFound
                && folder.entry_metadata(to).is_ok_and(|metadata| metadata.is_file()) =>
        {
            Ok(renamed)
        }
        Err(error) => Err(error),
    }
}

/// Is the regular file at `path` (not followed if a link) the one this process's stdout
/// writes to?
pub fn is_stdout(path: &Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(file) = std::fs::symlink_metadata(path) else { return false };
    let stdout = std::io::stdout().as_fd().try_clone_to_owned().map(std::fs::File::from);
    let Ok(stdout) = stdout.and_then(|stdout| stdout.metadata()) else { return false };
    file.is_file() && file.dev() == stdout.dev() && file.ino() == stdout.ino()
}

/// A drain's log folder must be a folder no one but the user running drainctl (and root)
/// may change, not a link: in a `log_dir` others may write, a link or a folder planted at
/// a drain's name would have its logs written where the planter chose, or be swapped under
/// it (docs/operations.md, "Finding a run's log").
pub fn refuse_foreign_folder(dir: &Path) -> crate::error::Result<()> {
    let refused = |why: String| log_folder_refused(dir, &why);
    let metadata =
        std::fs::symlink_metadata(dir).map_err(|error| refused(format!("cannot be inspected: {error}")))?;
    if metadata.file_type().is_symlink() {
        return Err(refused("is a symbolic link".to_string()));
    }
    if !metadata.is_dir() {
        return Err(refused("is not a folder".to_string()));
    }
    refuse_others_folder(dir, &metadata)
}

/// Refuse the log folder `dir` that `metadata` describes (the folder held open, say) when
/// another user may write it (see [`refuse_foreign_folder`]).
pub fn refuse_others_folder(dir: &Path, metadata: &std::fs::Metadata) -> crate::error::Result<()> {
    use crate::ownership::{foreign_owner, other_writer, OtherWriter};
    let refused = |why: String| log_folder_refused(dir, &why);
    match other_writer(metadata) {
        None => Ok(()),
        Some(OtherWriter::EveryUser { mode }) => {
            Err(refused(format!("is writable by every user (mode {mode:04o})")))
        }
        Some(OtherWriter::Owner { uid }) => Err(refused(foreign_owner(uid))),
    }
}

/// How [`log_folder_refused`] says why.
pub const ONLY_INTO_ITS_OWN_FOLDER: &str = "drainctl writes a drain's logs only into a folder of its own";

fn log_folder_refused(dir: &Path, why: &str) -> crate::error::Error {
    crate::error::Error::Config(format!(
        "log folder {} {why}; {ONLY_INTO_ITS_OWN_FOLDER}: remove it, or set log_dir to a folder only this user \
         may write",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_log_name_carries_the_start_and_the_pid() {
        let at = "2026-11-27T10:00:00Z".parse().unwrap();
        assert_eq!(file_name(at, 4711), "20261127T100000Z-4711.log");
        assert_eq!(parse_file_name("20261127T100000Z-4711.log"), Some(("20261127T100000Z", 4711)));
        for other in
            ["supervise.log", "20261127T100000Z.log", "20261127T100000Z-47a.log", "notes.txt", "x-1.log"]
        {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_link_or_a_taken_name_is_never_renamed_over() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "kept").unwrap();
        // A link planted where the log was named stays where it is.
        let link = dir.path().join("20260101T000000Z-2.log");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(rename_after(&link, 7).is_err());
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(!dir.path().join("20260101T000000Z-7.log").exists());
        // A log whose new name is taken is not renamed over it.
        let log = dir.path().join("20260101T000000Z-3.log");
        std::fs::write(&log, "mine").unwrap();
        let taken = dir.path().join("20260101T000000Z-8.log");
        std::fs::write(&taken, "theirs").unwrap();
        assert!(rename_after(&log, 8).is_err());
        assert_eq!(std::fs::read_to_string(&taken).unwrap(), "theirs");
        assert_eq!(rename_after(&log, 9).unwrap(), dir.path().join("20260101T000000Z-9.log"));
    }

    #[test]
    fn only_a_drain_log_of_another_pid_is_renamed() {
        let dir = Path::new("/logs/docs");
        assert_eq!(
            named_after(&dir.join("20261127T100000Z-10.log"), 42),
            dir.join("20261127T100000Z-42.log")
        );
        assert_eq!(
            named_after(&dir.join("20261127T100000Z-42.log"), 42),
            dir.join("20261127T100000Z-42.log")
        );
        assert_eq!(named_after(&dir.join("my.log"), 42), dir.join("my.log"));
    }

    #[test]
    fn whichever_side_renames_second_finds_the_renamed_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("20261127T100000Z-10.log");
        std::fs::write(&first, "started\n").unwrap();
        let renamed = rename_after(&first, 42).unwrap();
        assert_eq!(renamed, dir.path().join("20261127T100000Z-42.log"));
        assert_eq!(rename_after(&first, 42).unwrap(), renamed, "the second rename finds it done");
        assert_eq!(std::fs::read_to_string(&renamed).unwrap(), "started\n");
        assert!(rename_after(&dir.path().join("20261127T100000Z-11.log"), 43).is_err(), "neither exists");
    }
}
