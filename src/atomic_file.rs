//! Files drainctl replaces whole: the metrics textfile, the operations page, an export's
//! `--output`. A reader sees the old file or the new one, never half of either, and no
//! link is ever followed (docs/operations.md#metrics, docs/results.md).
//!
//! The new content goes to a temporary file created exclusively in the same folder
//! (`O_CREAT|O_EXCL|O_NOFOLLOW`, an unpredictable name), is fsynced through its descriptor
//! and renamed over the target; the folder is fsynced after. The temporary file is
//! removed on every error.

use std::fs::Permissions;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pinned_folder::PinnedFolder;

/// Which file is replaced, for its checks and messages.
pub struct Target<'a> {
    /// What the file is, as messages name it: "metrics textfile", "report page".
    pub what: &'a str,
    /// The option or setting that names it: "--textfile or metrics_textfile".
    pub named_by: &'a str,
    /// A file name to suggest when a directory was named: "drainctl.prom".
    pub example: &'a str,
    /// The file's mode; the umask cannot narrow it.
    pub mode: u32,
}

/// Replace `path` atomically with `bytes`. A `path` that exists and is not a regular file
/// (a symbolic link, a directory, a device, a fifo), whose folder is missing, or that
/// resolves through another user's link is refused with a configuration error (exit 78)
/// naming it, before anything is created.
pub fn replace(path: &Path, bytes: &[u8], target: &Target) -> Result<()> {
    let file_name = check(path, target)?;
    let fail = |action: &str, error: std::io::Error| io_error(path, action, error, target);
    let folder = PinnedFolder::open(&folder_of(path)).map_err(|refusal| {
        refusal.into_error(target.what, path, target.named_by, |error| fail("open the folder of", error))
    })?;
    let (mut file, temporary) = create_temporary(&folder, file_name, target.mode)
        .map_err(|error| fail("create a temporary file for", error))?;
    let written = (|| -> std::io::Result<()> {
        // The umask may have narrowed the mode given at creation; fchmod, never by path.
        file.set_permissions(Permissions::from_mode(target.mode))?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    drop(file);
    written.map_err(|error| fail("write", error))?;
    temporary.rename_to(file_name).map_err(|error| fail("replace", error))?;
    folder.sync();
    Ok(())
}

/// The refusals of [`replace`], without writing anything (`doctor` runs them): a `path`
/// that names no file, exists and is not a regular file, or whose folder is missing is a
/// configuration error (exit 78) naming it. Returns the file name.
pub fn check<'a>(path: &'a Path, target: &Target) -> Result<&'a std::ffi::OsStr> {
    let file_name = file_name_of(path).ok_or_else(|| {
        Error::Config(format!(
            "{} {} does not name a file; set {} to a file such as {}",
            target.what,
            path.display(),
            target.named_by,
            target.example
        ))
    })?;
    check_target(path, &folder_of(path), target)?;
    Ok(file_name)
}

/// The name of the file `path` names, or None when it can only name a folder: empty, or
/// ending in `/`, `.` or `..` (`Path::file_name` reads `notes/` as `notes`, which would
/// write a file where a folder was meant, or replace the file of that name).
pub fn file_name_of(path: &Path) -> Option<&std::ffi::OsStr> {
    use std::os::unix::ffi::OsStrExt as _;
    let last = path.as_os_str().as_bytes().rsplit(|byte| *byte == b'/').next().unwrap_or_default();
    match last {
        b"" | b"." | b".." => None,
        _ => path.file_name(),
    }
}

/// The folder a file of `path` is created in.
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuse a target that exists and is not a regular file, whose folder is missing, or
/// that resolves through another user's link (its owner would choose the file replaced).
fn check_target(path: &Path, folder: &Path, target: &Target) -> Result<()> {
    let shown = path.display();
    let (what, named_by) = (target.what, target.named_by);
    crate::output::refuse_foreign_links(path, what, named_by)?;
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error)
            if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) =>
        {
            return check_folder(path, folder, target)
        }
        Err(error) => return Err(io_error(path, "inspect", error, target)),
    };
    let file_type = metadata.file_type();
    if file_type.is_file() {
        return check_replaceable(path, folder, &metadata, target);
    }
    let why = if file_type.is_symlink() {
        format!(
            "is a symbolic link, and drainctl never writes through links; remove it, or set {named_by} to the real file"
        )
    } else if file_type.is_dir() {
        format!(
            "is a directory; set {named_by} to a file in it, e.g. {}",
            path.join(target.example).display()
        )
    } else {
        format!(
            "exists and is not a regular file (a device, fifo or socket), and drainctl replaces only regular \
             files; set {named_by} to another path"
        )
    };
    Err(Error::Config(format!("{what} {shown} {why}")))
}

/// Refuse a file of another user in a sticky folder (`/tmp`, a `chmod 1777` one) that this
/// user does not own: the kernel lets only the file's or the folder's owner replace it,
/// so every write would fail with "Operation not permitted" (left there by root before
/// drainctl moved to a service user, say).
fn check_replaceable(
    path: &Path,
    folder: &Path,
    metadata: &std::fs::Metadata,
    target: &Target,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let me = crate::ownership::effective_uid();
    if me == 0 || metadata.uid() == me {
        return Ok(());
    }
    let Ok(folder_metadata) = std::fs::metadata(folder) else { return Ok(()) };
    let is_sticky = folder_metadata.mode() & 0o1000 != 0;
    if !is_sticky || folder_metadata.uid() == me {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{} {} belongs to {}, in a sticky folder ({}) where only its owner may replace it: remove it as \
         its owner (or chown it to the user that runs drainctl), or set {} to another path",
        target.what,
        path.display(),
        crate::ownership::user_named(metadata.uid()),
        folder.display(),
        target.named_by
    )))
}

fn check_folder(path: &Path, folder: &Path, target: &Target) -> Result<()> {
    let (what, named_by) = (target.what, target.named_by);
    match std::fs::metadata(folder) {
        Ok(metadata) if metadata.is_dir() => Ok(()),
        Ok(_) => Err(Error::Config(format!(
            "{what} {}: {} is not a directory; set {named_by} to a file in a folder",
            path.display(),
            folder.display()
        ))),
        Err(error) if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            Err(Error::Config(format!(
                "{what} {}: its folder {} does not exist; create it or set {named_by} to a file in another folder",
                path.display(),
                folder.display()
            )))
        }
        Err(error) => Err(io_error(path, "inspect the folder of", error, target)),
    }
}

/// Can a file operation that failed with `kind` not succeed by trying again later: the
/// path or its folder is wrong (missing, not writable, read-only, a name too long, a loop
/// of links, a file system that cannot do it)? Such an error is never "try again later"
/// (75, docs/exit-codes.md); a full disk or an interrupted write is.
pub fn is_permanent(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    // A loop of symbolic links has no stable ErrorKind yet.
    error.raw_os_error() == Some(libc::ELOOP)
        || matches!(
            error.kind(),
            ErrorKind::NotFound
                | ErrorKind::PermissionDenied
                | ErrorKind::ReadOnlyFilesystem
                | ErrorKind::NotADirectory
                | ErrorKind::IsADirectory
                | ErrorKind::InvalidFilename
                | ErrorKind::InvalidInput
                | ErrorKind::Unsupported
                | ErrorKind::CrossesDevices
                | ErrorKind::TooManyLinks
                | ErrorKind::NotSeekable
        )
}

/// A failed file operation: the deployment's fault (exit 78) when the path or its folder
/// is wrong ([`is_permanent`]), else worth another try (75).
fn io_error(path: &Path, action: &str, error: std::io::Error, target: &Target) -> Error {
    let message = format!("cannot {action} {} {}: {error}", target.what, path.display());
    if is_permanent(&error) {
        Error::Config(format!(
            "{message}; check that its folder exists and is writable, or change {}",
            target.named_by
        ))
    } else {
        Error::Temporary(message)
    }
}

/// How many unpredictable temporary names are tried before giving up: another process
/// would have to guess 64 random bits this many times in a row.
const TEMPORARY_NAME_ATTEMPTS: u32 = 16;

/// A temporary file that is removed when dropped, unless it was renamed into place.
pub(crate) struct Temporary {
    folder: PinnedFolder,
    name: std::ffi::OsString,
    is_renamed: bool,
}

impl Temporary {
    /// Its path, for messages.
    pub(crate) fn path(&self) -> PathBuf {
        self.folder.path().join(&self.name)
    }

    /// Rename it over `file_name` in its folder.
    pub(crate) fn rename_to(mut self, file_name: &std::ffi::OsStr) -> std::io::Result<()> {
        self.folder.rename(&self.name, file_name)?;
        self.is_renamed = true;
        Ok(())
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if self.is_renamed {
            return;
        }
        if let Err(error) = self.folder.remove(&self.name) {
            log::warn!("could not remove temporary file {}: {error}", self.path().display());
        }
    }
}

/// The longest file name the usual file systems take (NAME_MAX), in bytes.
const MAX_NAME_BYTES: usize = 255;
/// What a temporary name adds to the part of NAME it keeps: `.`, `.tmp-` and 16 digits.
const TEMPORARY_NAME_EXTRA: usize = 1 + 5 + 16;

/// `.NAME.tmp-RANDOM`, with NAME cut short (at a character boundary) so that the whole
/// name fits in [`MAX_NAME_BYTES`] however long a valid NAME is.
fn temporary_name(file_name: &std::ffi::OsStr, random: u64) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let name = file_name.as_bytes();
    let mut keep = name.len().min(MAX_NAME_BYTES - TEMPORARY_NAME_EXTRA);
    // Never split a UTF-8 character: back off over its continuation bytes.
    while keep < name.len() && keep > 0 && name[keep] & 0xC0 == 0x80 {
        keep -= 1;
    }
    let mut temporary = Vec::with_capacity(keep + TEMPORARY_NAME_EXTRA);
    temporary.push(b'.');
    temporary.extend_from_slice(&name[..keep]);
    temporary.extend_from_slice(format!(".tmp-{random:016x}").as_bytes());
    std::ffi::OsString::from_vec(temporary)
}

/// Create `.NAME.tmp-RANDOM` in `folder` exclusively with `mode`, never through a link;
/// another name is tried when one exists. The name does not end in NAME's extension, so
/// a collector reading `*.prom` never reads it, and a long NAME is cut short so that it
/// fits ([`temporary_name`]).
pub(crate) fn create_temporary(
    folder: &PinnedFolder,
    file_name: &std::ffi::OsStr,
    mode: u32,
) -> std::io::Result<(std::fs::File, Temporary)> {
    remove_stale_temporaries(folder, file_name);
    let mut collision = None;
    for _ in 0..TEMPORARY_NAME_ATTEMPTS {
        let name = temporary_name(file_name, unpredictable_u64());
        match folder.create_new(&name, mode) {
            Ok(file) => {
                // Held while the file is written: a writer that is stopped, not dead, keeps
                // its temporary file from `remove_stale_temporaries`.
                lock_exclusively(&file);
                return Ok((file, Temporary { folder: folder.try_clone()?, name, is_renamed: false }));
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => collision = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(collision.unwrap_or_else(|| std::io::Error::other("no temporary name was free")))
}

/// A temporary file of NAME this old or older was left by a process killed outright
/// (`kill -9`, the OOM killer): no writer leaves one untouched this long.
const STALE_TEMPORARY_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Remove the temporary files of NAME in `folder` that a killed process left: regular files
/// of this user named `.NAME.tmp-` and 16 hex digits, untouched for
/// [`STALE_TEMPORARY_AGE`]. What cannot be looked at or removed is left, with a log line.
fn remove_stale_temporaries(folder: &PinnedFolder, file_name: &std::ffi::OsStr) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let sample = temporary_name(file_name, 0);
    let prefix = &sample.as_bytes()[..sample.len() - 16];
    let Ok(names) = folder.names() else { return };
    for name in names {
        let Some(random) = name.as_bytes().strip_prefix(prefix) else { continue };
        if random.len() != 16 || !random.iter().all(u8::is_ascii_hexdigit) {
            continue;
        }
        let shown = folder.path().join(&name);
        let Ok(metadata) = folder.entry_metadata(&name) else { continue };
        let age = metadata.modified().ok().and_then(|at| at.elapsed().ok()).unwrap_or_default();
        if !metadata.is_file()
            || metadata.uid() != crate::ownership::effective_uid()
            || age < STALE_TEMPORARY_AGE
        {
            continue;
        }
        // A writer still holds the lock on its file, however long it has been stopped.
        let Ok(file) = folder.open_read(&name) else { continue };
        if !try_lock_exclusively(&file) {
            continue;
        }
        match folder.remove(&name) {
            Ok(()) => log::info!("removed {}, left by a process killed while it wrote", shown.display()),
            // Another writer of NAME cleaning up at the same moment.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                log::warn!("could not remove the stale temporary file {}: {error}", shown.display())
            }
        }
    }
}

/// Take the exclusive `flock` of a temporary file just created; a failure (a file system
/// without locks) only loses the protection it gives, and is logged.
fn lock_exclusively(file: &std::fs::File) {
    if !try_lock_exclusively(file) {
        log::debug!("could not lock a temporary file: {}", std::io::Error::last_os_error());
    }
}

/// Whether the exclusive `flock` of `file` was taken without waiting.
fn try_lock_exclusively(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this File owns; it neither reads nor writes memory.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// 64 bits another process cannot predict: the standard library seeds every
/// `RandomState` from the operating system's random source.
fn unpredictable_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_unpredictable_and_not_prom_files() {
        let dir = tempfile::tempdir().unwrap();
        let (_, first) = create_temporary(
            &PinnedFolder::open(dir.path()).unwrap(),
            std::ffi::OsStr::new("drainctl.prom"),
            0o644,
        )
        .unwrap();
        let (_, second) = create_temporary(
            &PinnedFolder::open(dir.path()).unwrap(),
            std::ffi::OsStr::new("drainctl.prom"),
            0o644,
        )
        .unwrap();
        assert_ne!(first.path(), second.path());
        for temporary in [&first, &second] {
            let name = temporary.path().file_name().unwrap().to_str().unwrap().to_string();
            assert!(name.starts_with(".drainctl.prom.tmp-") && !name.ends_with(".prom"), "{name}");
            let suffix = name.trim_start_matches(".drainctl.prom.tmp-");
            assert!(suffix.len() == 16 && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
        }
        drop((first, second));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "dropped temporaries are removed");
    }

    #[test]
    fn temporaries_a_killed_writer_left_are_removed_once_an_hour_old() {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, age: u64| {
            let file = std::fs::File::create(dir.path().join(name)).unwrap();
            let at = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            file.set_modified(at).unwrap();
        };
        make(".out.jsonl.tmp-00000000000000aa", 2 * 3600); // left by kill -9: removed
        make(".out.jsonl.tmp-00000000000000bb", 60); // another export writing now: kept
        make(".other.jsonl.tmp-00000000000000cc", 2 * 3600); // another file's: kept
        make(".out.jsonl.tmp-notsixteenhex", 2 * 3600); // not a name drainctl makes: kept

        // A writer stopped for two hours still holds its lock: kept.
        make(".out.jsonl.tmp-00000000000000dd", 2 * 3600);
        let stopped = std::fs::File::open(dir.path().join(".out.jsonl.tmp-00000000000000dd")).unwrap();
        assert!(try_lock_exclusively(&stopped));
        let (_, temporary) = create_temporary(
            &PinnedFolder::open(dir.path()).unwrap(),
            std::ffi::OsStr::new("out.jsonl"),
            0o600,
        )
        .unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| std::path::Path::new(name) != temporary.path().file_name().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".other.jsonl.tmp-00000000000000cc",
                ".out.jsonl.tmp-00000000000000bb",
                ".out.jsonl.tmp-00000000000000dd",
                ".out.jsonl.tmp-notsixteenhex"
            ]
        );
        drop(stopped);
    }

    #[test]
    fn the_temporary_name_of_the_longest_valid_name_fits() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a".repeat(245), "b".repeat(255), format!("{}.prom", "é".repeat(124))] {
            assert!(name.len() <= 255);
            let (_, temporary) = create_temporary(
                &PinnedFolder::open(dir.path()).unwrap(),
                std::ffi::OsStr::new(&name),
                0o600,
            )
            .unwrap();
            let made = temporary.path().file_name().unwrap().to_str().unwrap().to_string();
            assert!(made.len() <= 255, "{} bytes", made.len());
            assert!(made.starts_with('.') && made.contains(".tmp-"), "{made}");
        }
        // A short name is kept whole.
        let name = temporary_name(std::ffi::OsStr::new("drainctl.prom"), 0xab);
        assert_eq!(name, ".drainctl.prom.tmp-00000000000000ab");
    }

    #[test]
    fn errors_retrying_cannot_fix_are_never_temporary() {
        let target =
            Target { what: "metrics textfile", named_by: "metrics_textfile", example: "x", mode: 0o600 };
        let path = Path::new("/x/y");
        for errno in [libc::ENAMETOOLONG, libc::ELOOP, libc::EACCES, libc::EROFS, libc::ENOENT, libc::EINVAL]
        {
            let error = io_error(path, "create", std::io::Error::from_raw_os_error(errno), &target);
            assert_eq!(error.exit_code(), 78, "errno {errno}: {error}");
        }
        for errno in [libc::ENOSPC, libc::EINTR] {
            let error = io_error(path, "write", std::io::Error::from_raw_os_error(errno), &target);
            assert_eq!(error.exit_code(), 75, "errno {errno}: {error}");
        }
    }
}
