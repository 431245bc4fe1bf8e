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
pub fn rename_after(path: &Path, pid: u32) -> io::Result<PathBuf> {
    let renamed = named_after(path, pid);
    if renamed == path {
        return Ok(renamed);
    }
    match std::fs::rename(path, &renamed) {
        Ok(()) => Ok(renamed),
        Err(error) if error.kind() == io::ErrorKind::NotFound && renamed.is_file() => Ok(renamed),
        Err(error) => Err(error),
    }
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
