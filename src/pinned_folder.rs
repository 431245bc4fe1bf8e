//! A folder drainctl writes files into, opened once and checked, then named only through
//! its descriptor (docs/operations.md, "No link is ever followed").
//!
//! Checking a path and then writing by that path leaves a moment between the two: another
//! user who may write a folder on the way can swap it for a link to a folder of their
//! choosing after the check, and drainctl (often root) would write there. So the folder
//! is opened first; the path is then resolved as the kernel does, refusing another
//! user's links, and the folder opened must be the one that resolution leads to. Every
//! file is then created, appended to, renamed and removed relative to the open folder, a
//! single name at a time and never through a link.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::ownership::Walked;

/// A folder held open: what its files are named relative to.
pub struct PinnedFolder {
    dir: File,
    path: PathBuf,
}

/// Why a folder was not pinned.
#[derive(Debug)]
pub enum Refusal {
    /// It could not be opened (missing, not a folder, not enterable).
    Io(io::Error),
    /// Its path resolves through `link`, a symbolic link of `owner`, neither this user
    /// nor root: its owner chooses where the path leads.
    ForeignLink { link: PathBuf, owner: u32 },
    /// The folder opened is not the one the path resolves to: a folder on the way was
    /// replaced between the two (by another user who may write there, or a rename).
    Replaced { reached: PathBuf, resolved: PathBuf },
}

impl Refusal {
    /// The refusal as the crate's error: a configuration error (78) naming `path` and
    /// `named_by`, the option or setting to change; `io` words an error of opening it.
    pub fn into_error(
        self,
        what: &str,
        path: &Path,
        named_by: &str,
        io: impl FnOnce(io::Error) -> crate::error::Error,
    ) -> crate::error::Error {
        match self {
            Refusal::Io(error) => io(error),
            Refusal::ForeignLink { link, owner } => foreign_link(what, path, named_by, &link, owner),
            Refusal::Replaced { reached, resolved } => crate::error::Error::Config(format!(
                "{what} {}: the folder opened was {} while its path leads to {}: a folder on the way was \
                 replaced meanwhile, and drainctl writes only where the path leads; give {named_by} a path \
                 through folders only this user (or root) may write",
                path.display(),
                reached.display(),
                resolved.display()
            )),
        }
    }
}

impl Refusal {
    /// The refusal as an I/O error, for a step that is told by its error kind: an opening
    /// error as it was, the others `InvalidInput`, with what the folder is.
    pub fn into_io_error(self) -> io::Error {
        let why = match self {
            Refusal::Io(error) => return error,
            Refusal::ForeignLink { link, owner } => format!(
                "it resolves through {}, a symbolic link that {}",
                link.display(),
                crate::ownership::foreign_owner(owner)
            ),
            Refusal::Replaced { reached, resolved } => {
                format!(
                    "the folder opened was {} while its path leads to {}",
                    reached.display(),
                    resolved.display()
                )
            }
        };
        io::Error::new(io::ErrorKind::InvalidInput, why)
    }
}

/// How [`foreign_link`] says why.
pub const NEVER_THROUGH_FOREIGN_LINKS: &str = "drainctl never writes through another user's links";

/// The refusal of a `path` that resolves through `link`, another user's symbolic link.
pub fn foreign_link(what: &str, path: &Path, named_by: &str, link: &Path, owner: u32) -> crate::error::Error {
    crate::error::Error::Config(format!(
        "{what} {} resolves through {}, a symbolic link that {}, and {NEVER_THROUGH_FOREIGN_LINKS}; give \
         {named_by} a path through folders of yours",
        path.display(),
        link.display(),
        crate::ownership::foreign_owner(owner)
    ))
}

impl PinnedFolder {
    /// Open the folder `path` and check that it is the one the path resolves to through
    /// no other user's link.
    pub fn open(path: &Path) -> Result<PinnedFolder, Refusal> {
        // O_PATH: writing in a folder takes write and search permission, not read.
        match open_at(libc::AT_FDCWD, path.as_os_str(), libc::O_PATH | libc::O_DIRECTORY, 0) {
            Ok(dir) => Self::pin(dir, path),
            // Another user's link on the way (one leading nowhere, say) is the reason given.
            Err(error) => Err(match crate::ownership::walk_to_a_foreign_link(path) {
                Walked::Stopped((link, owner)) => Refusal::ForeignLink { link, owner },
                _ => Refusal::Io(error),
            }),
        }
    }

    /// `dir`, opened by `path`, if it is the folder the path leads to now.
    fn pin(dir: File, path: &Path) -> Result<PinnedFolder, Refusal> {
        let resolved = match crate::ownership::walk_to_a_foreign_link(path) {
            Walked::Stopped((link, owner)) => return Err(Refusal::ForeignLink { link, owner }),
            Walked::Resolved(resolved) => resolved,
            // A name gone since the open, or one this user may no longer search: the path
            // was changed meanwhile.
            Walked::Unfinished { missing } => {
                return Err(Refusal::Io(io::Error::from_raw_os_error(if missing {
                    libc::ENOENT
                } else {
                    libc::EACCES
                })))
            }
        };
        if let Some(reached) = reached_path(&dir) {
            if reached != resolved {
                return Err(Refusal::Replaced { reached, resolved });
            }
        }
        Ok(PinnedFolder { dir, path: path.to_path_buf() })
    }

    /// The folder's path as it was given, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the folder held is, as the kernel names it now (None without `/proc`).
    pub fn reached(&self) -> Option<PathBuf> {
        reached_path(&self.dir)
    }

    /// A path that names the folder held, whatever its own path names now
    /// (`/proc/self/fd/N`): a child's working folder, set before it runs.
    pub fn held_path(&self) -> PathBuf {
        descriptor_path(&self.dir)
    }

    /// The folder itself (fstat: the one held, whatever its path names now).
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        self.dir.metadata()
    }

    /// Another handle on the same folder.
    pub fn try_clone(&self) -> io::Result<PinnedFolder> {
        Ok(PinnedFolder { dir: self.dir.try_clone()?, path: self.path.clone() })
    }

    /// Create the file `name` with `mode`, failing when anything is there already.
    pub fn create_new(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        self.open_entry(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, mode)
    }

    /// Open the file `name` for appending, created with `mode` when missing. Opening does
    /// not block on a fifo (the caller refuses what is not a regular file).
    pub fn open_append(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        self.open_entry(name, libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_NONBLOCK, mode)
    }

    /// Open the file `name` for reading, without blocking on a fifo.
    pub fn open_read(&self, name: &OsStr) -> io::Result<File> {
        self.open_entry(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)
    }

    /// The entry `name` itself, a link not followed.
    pub fn entry_metadata(&self, name: &OsStr) -> io::Result<std::fs::Metadata> {
        self.open_entry(name, libc::O_PATH, 0)?.metadata()
    }

    /// The folder `name` in this one, never through a link.
    pub fn subfolder(&self, name: &OsStr) -> io::Result<PinnedFolder> {
        let dir = self.open_entry(name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        Ok(PinnedFolder { dir, path: self.path.join(name) })
    }

    /// The folder `name` in this one, created with `mode` when missing; never through a
    /// link.
    pub fn create_subfolder(&self, name: &OsStr, mode: u32) -> io::Result<PinnedFolder> {
        let c_name = c_name(name)?;
        // SAFETY: a descriptor this value owns and a NUL-terminated name that outlives the call.
        let made =
            succeeded(unsafe { libc::mkdirat(self.dir.as_raw_fd(), c_name.as_ptr(), mode as libc::mode_t) });
        match made {
            Err(error) if error.kind() != io::ErrorKind::AlreadyExists => Err(error),
            _ => self.subfolder(name),
        }
    }

    /// The folder `path`, its missing folders created with `mode` one at a time below the
    /// deepest one that exists, which is pinned first ([`PinnedFolder::open`]): none is made
    /// where another user's link or swap would lead.
    pub fn create_all(path: &Path, mode: u32) -> Result<PinnedFolder, Refusal> {
        let mut missing = Vec::new();
        let mut existing = path;
        while std::fs::symlink_metadata(existing).is_err() {
            let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else { break };
            missing.push(name);
            existing = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        }
        let mut folder = PinnedFolder::open(existing)?;
        for name in missing.into_iter().rev() {
            folder = folder.create_subfolder(name, mode).map_err(Refusal::Io)?;
        }
        Ok(folder)
    }

    /// Rename the entry `from` to `to`, both in this folder; `to` is replaced.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        self.rename_with(from, to, 0)
    }

    /// Rename the entry `from` to `to`, both in this folder, failing (`AlreadyExists`)
    /// rather than replacing what is at `to` — on a file system without
    /// `RENAME_NOREPLACE`, by looking first.
    pub fn rename_without_replacing(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        match self.rename_with(from, to, libc::RENAME_NOREPLACE) {
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                if self.entry_metadata(to).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists", to.to_string_lossy()),
                    ));
                }
                self.rename(from, to)
            }
            renamed => renamed,
        }
    }

    fn rename_with(&self, from: &OsStr, to: &OsStr, flags: libc::c_uint) -> io::Result<()> {
        let (from, to) = (c_name(from)?, c_name(to)?);
        let fd = self.dir.as_raw_fd();
        // SAFETY: a descriptor this value owns and NUL-terminated names that outlive the call.
        succeeded(unsafe { libc::renameat2(fd, from.as_ptr(), fd, to.as_ptr(), flags) })
    }

    /// Remove the file `name`.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: a descriptor this value owns and a NUL-terminated name that outlives the call.
        succeeded(unsafe { libc::unlinkat(self.dir.as_raw_fd(), name.as_ptr(), 0) })
    }

    /// The names in the folder.
    pub fn names(&self) -> io::Result<Vec<std::ffi::OsString>> {
        let entries =
            std::fs::read_dir(descriptor_path(&self.dir)).or_else(|_| std::fs::read_dir(&self.path))?;
        Ok(entries.flatten().map(|entry| entry.file_name()).collect())
    }

    /// Make a rename in the folder durable; a failure (a folder this user may not read
    /// cannot be opened to fsync) loses nothing already visible.
    pub fn sync(&self) {
        let synced = std::fs::File::open(descriptor_path(&self.dir)).and_then(|dir| dir.sync_all());
        if let Err(error) = synced {
            log::debug!("could not fsync folder {}: {error}", self.path.display());
        }
    }

    fn open_entry(&self, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<File> {
        if name.is_empty() || name.as_bytes().contains(&b'/') || name == ".." {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a single file name"));
        }
        open_at(self.dir.as_raw_fd(), name, flags | libc::O_NOFOLLOW, mode)
    }
}

/// `openat(2)`, close-on-exec.
fn open_at(dir: libc::c_int, name: &OsStr, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let name = c_name(name)?;
    // SAFETY: a NUL-terminated name that outlives the call; `dir` is AT_FDCWD or a
    // descriptor the caller holds open.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The result of a system call that returns -1 on failure.
fn succeeded(result: libc::c_int) -> io::Result<()> {
    match result {
        -1 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the name contains a NUL byte"))
}

/// `/proc/self/fd/N` of an open descriptor.
fn descriptor_path(file: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Where the open folder is, as the kernel names it; None without `/proc`, where only
/// the path's check stands.
fn reached_path(dir: &File) -> Option<PathBuf> {
    match std::fs::read_link(descriptor_path(dir)) {
        Ok(reached) => Some(reached),
        Err(error) => {
            log::debug!("cannot read where an open folder is (no /proc?): {error}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_pinned_through_own_links_and_files_are_named_relative_to_it() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, root.path().join("link")).unwrap();
        let folder = PinnedFolder::open(&root.path().join("link")).unwrap();
        let mut file = folder.create_new(OsStr::new("a.tmp"), 0o600).unwrap();
        std::io::Write::write_all(&mut file, b"x").unwrap();
        assert_eq!(
            folder.create_new(OsStr::new("a.tmp"), 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        folder.rename(OsStr::new("a.tmp"), OsStr::new("a")).unwrap();
        assert_eq!(std::fs::read(real.join("a")).unwrap(), b"x");
        assert_eq!(folder.names().unwrap(), vec![std::ffi::OsString::from("a")]);
        // A name is one name: never a path out of the folder.
        assert!(folder.create_new(OsStr::new("../b"), 0o600).is_err());
        // A link inside is never followed.
        std::os::unix::fs::symlink(root.path().join("elsewhere"), real.join("l")).unwrap();
        assert!(folder.open_append(OsStr::new("l"), 0o600).is_err());
        assert!(!root.path().join("elsewhere").exists());
        folder.sync();
        assert!(folder.metadata().unwrap().is_dir());
        // Folders made below the pinned one, never through a link.
        let made = PinnedFolder::create_all(&root.path().join("link/x/y"), 0o700).unwrap();
        assert!(made.metadata().unwrap().is_dir() && real.join("x/y").is_dir());
        assert!(folder.subfolder(OsStr::new("l")).is_err(), "a link is not a folder");
    }

    #[test]
    fn a_folder_replaced_after_it_was_opened_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let (named, other) = (root.path().join("named"), root.path().join("other"));
        std::fs::create_dir(&named).unwrap();
        std::fs::create_dir(&other).unwrap();
        let dir = open_at(libc::AT_FDCWD, named.as_os_str(), libc::O_PATH | libc::O_DIRECTORY, 0).unwrap();
        // Swapped after the open: the path now leads to another folder than the one held.
        std::fs::rename(&named, root.path().join("aside")).unwrap();
        std::fs::rename(&other, &named).unwrap();
        match PinnedFolder::pin(dir, &named) {
            Err(Refusal::Replaced { reached, resolved }) => {
                assert_eq!(reached, root.path().join("aside").canonicalize().unwrap());
                assert_eq!(resolved, named.canonicalize().unwrap());
            }
            other => panic!("{:?}", other.map(|folder| folder.path)),
        }
        assert!(PinnedFolder::open(&named).is_ok(), "opened anew, it is the one the path leads to");
    }
}
