//! Who besides the user running drainctl may change a file or a folder drainctl trusts:
//! the configuration, which names the programs it runs, and a drain's log folder
//! (docs/configuration.md; docs/operations.md, "Finding a run's log").

use std::os::unix::fs::MetadataExt;

/// The user drainctl runs as (its effective uid).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The group drainctl runs as (its effective gid).
pub fn effective_gid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// Whether drainctl runs in the group `gid` (its effective group, or a supplementary one).
pub fn is_in_group(gid: u32) -> bool {
    if effective_gid() == gid {
        return true;
    }
    // SAFETY: a count of 0 asks only how many groups there are; the second call writes at
    // most `count` entries into a buffer of that many.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(length) = usize::try_from(count) else { return false };
    let mut groups: Vec<libc::gid_t> = vec![0; length];
    let written = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
    usize::try_from(written).is_ok_and(|written| groups[..written.min(length)].contains(&gid))
}

/// The user `uid` as a refusal names it: `drainsvc (uid 1001)`, or `uid 1001` when the
/// system's user database has no name for it.
pub fn user_named(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// Why an entry owned by `owner` is not trusted: `belongs to nobody (uid 65534), not to
/// root or to drainsvc (uid 1001), who runs drainctl`.
pub fn foreign_owner(owner: u32) -> String {
    let euid = effective_uid();
    let trusted = if euid == 0 {
        "root, who runs drainctl".to_string()
    } else {
        format!("root or to {}, who runs drainctl", user_named(euid))
    };
    format!("belongs to {}, not to {trusted}", user_named(owner))
}

/// What to give `chown` for `uid`: its name, else the number.
pub fn chown_owner(uid: u32) -> String {
    user_name(uid).unwrap_or_else(|| uid.to_string())
}

/// The login name of `uid` from the user database (`getpwuid_r`), if it has one.
fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero `passwd` is a valid value of a plain C struct of pointers and
    // integers; getpwuid_r only writes it and the buffer, whose length it is given.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer points at memory this frame owns, of the length passed.
    let status = unsafe { libc::getpwuid_r(uid, &mut entry, buffer.as_mut_ptr(), buffer.len(), &mut found) };
    if status != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points at a NUL-terminated string inside `buffer`.
    let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned()).filter(|name| !name.is_empty())
}

/// Someone other than this user and root who may change an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherWriter {
    /// Every user may write it (`mode`, the permission bits).
    EveryUser { mode: u32 },
    /// It belongs to another user, who may.
    Owner { uid: u32 },
}

/// How a refusal of an entry in a folder every user may write says so.
pub const EVERY_USER_MAY_REPLACE: &str = "where every user may replace it";
/// How a refusal of an entry in a folder of another user's says so.
pub const ITS_OWNER_MAY_REPLACE: &str = "whose owner may replace it";
/// How a refusal of an entry in a folder whose ACL lets another user write says so.
pub const ITS_ACL_LETS_REPLACE: &str = "whose ACL lets";
/// How the refusal of a path through another user's link says so ([`reached_through`]).
pub const REACHED_THROUGH_A_LINK: &str = "is reached through the symbolic link";

impl OtherWriter {
    /// Who may replace an entry of the folder this one writes, in words: `where every
    /// user may replace it (mode 0777)`, `whose owner may replace it (that folder belongs
    /// to …)`.
    pub fn may_replace(&self) -> String {
        match self {
            OtherWriter::EveryUser { mode } => format!("{EVERY_USER_MAY_REPLACE} (mode {mode:04o})"),
            OtherWriter::Owner { uid } => {
                format!("{ITS_OWNER_MAY_REPLACE} (that folder {})", foreign_owner(*uid))
            }
        }
    }
}

/// Who other than this user and root may rename an entry of the folder `metadata`
/// describes: as [`other_writer`], but a sticky folder (`/tmp`) lets only an entry's
/// owner and its own owner do so — it counts when another user owns it.
pub fn folder_replacer(metadata: &std::fs::Metadata) -> Option<OtherWriter> {
    let is_sticky = metadata.mode() & 0o1000 != 0;
    match is_sticky {
        true if metadata.uid() == 0 || metadata.uid() == effective_uid() => None,
        true => Some(OtherWriter::Owner { uid: metadata.uid() }),
        false => other_writer(metadata),
    }
}

/// Who other than this user and root may write the entry `metadata` describes: every
/// user, or its owner when that is someone else. None when nobody else may (its group
/// aside, which `doctor` warns about where it matters).
pub fn other_writer(metadata: &std::fs::Metadata) -> Option<OtherWriter> {
    let euid = effective_uid();
    if metadata.mode() & 0o002 != 0 {
        Some(OtherWriter::EveryUser { mode: metadata.mode() & 0o7777 })
    } else if metadata.uid() != euid && metadata.uid() != 0 {
        Some(OtherWriter::Owner { uid: metadata.uid() })
    } else {
        None
    }
}

/// Who a POSIX access ACL on `path` lets write it besides its owner and root: each named
/// user (`user:NAME:rw-`) and named group (`group:NAME:rw-`) entry with write permission
/// that the ACL's mask lets through, as `user drainsvc (uid 1001)` / `group 1002`. Empty
/// when the file has no such ACL, or it cannot be read (a file system without ACLs).
pub fn acl_writers(path: &std::path::Path) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    const USER: u16 = 0x02;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const WRITE: u16 = 0x02;
    let Ok(file) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return Vec::new() };
    let mut buffer = vec![0u8; 8192];
    // SAFETY: both names are NUL-terminated; getxattr writes at most `buffer.len()` bytes
    // into the buffer and returns how many, or -1.
    let read = unsafe {
        libc::getxattr(
            file.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    let Ok(read) = usize::try_from(read) else { return Vec::new() };
    // A version word, then entries of tag, permissions (16 bits each) and id (32 bits),
    // little-endian (the kernel's `posix_acl_xattr` layout).
    let entries: Vec<(u16, u16, u32)> = buffer
        .get(4..read)
        .unwrap_or_default()
        .chunks_exact(8)
        .map(|entry| {
            let half = |at: usize| u16::from_le_bytes([entry[at], entry[at + 1]]);
            (half(0), half(2), u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]))
        })
        .collect();
    let mask_lets_write =
        entries.iter().find(|(tag, _, _)| *tag == MASK).is_none_or(|(_, perm, _)| perm & WRITE != 0);
    if !mask_lets_write {
        return Vec::new();
    }
    let euid = effective_uid();
    entries
        .iter()
        .filter(|(_, perm, _)| perm & WRITE != 0)
        .filter_map(|&(tag, _, id)| match tag {
            USER if id != euid && id != 0 => Some(format!("user {}", user_named(id))),
            GROUP if !is_trusted_group(id) => Some(format!("group {id}")),
            _ => None,
        })
        .collect()
}

/// The links one lookup follows at most, as the kernel's.
const MAX_LINKS: usize = 40;

/// One name of a path as [`walk_resolving`] meets it.
pub struct Step<'a> {
    /// The name, its folders' links followed.
    pub path: &'a std::path::Path,
    /// The same, as it may be looked up (relative to the working folder while the path
    /// is relative).
    pub probe: &'a std::path::Path,
    /// Whether names of the path are left after it (a link's target's included).
    pub names_left: bool,
    pub is_link: bool,
}

/// How a walk of [`walk_resolving`] ended.
pub enum Walked<T> {
    /// `visit` stopped it.
    Stopped(T),
    /// Every name was resolved: where the path led, with no link left in it.
    Resolved(std::path::PathBuf),
    /// A name does not exist (yet) — `missing` —, or the path could not be followed by
    /// its names (a folder this user may not search, a path too long, too many links).
    Unfinished { missing: bool },
}

impl<T> Walked<T> {
    /// What `visit` stopped the walk with, if it did.
    pub fn stopped(self) -> Option<T> {
        match self {
            Walked::Stopped(found) => Some(found),
            _ => None,
        }
    }
}

/// Walk `path` as the kernel resolves it: one name at a time, following the symbolic
/// links of its folders, its own, and those inside the links' targets (at most 40, as
/// the kernel follows). `visit` sees each name before it is followed, and stops the walk
/// with `Break`; the walk also stops at the first name that does not exist yet.
pub fn walk_resolving<T>(
    path: &std::path::Path,
    mut visit: impl FnMut(Step) -> std::ops::ControlFlow<T>,
) -> Walked<T> {
    use std::collections::VecDeque;
    use std::ops::ControlFlow;
    use std::path::{Component, PathBuf};
    let mut links = 0;
    let mut resolved = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
    };
    let owned = |path: &std::path::Path| -> VecDeque<std::ffi::OsString> {
        path.components()
            .filter_map(|part| match part {
                Component::Normal(name) => Some(name.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    // What each name is looked up by: relative to the working folder while the path is,
    // so that a folder above it this user may not search, or an absolute form longer than
    // PATH_MAX, does not stop a walk the kernel's own lookup makes.
    let mut probe = if path.is_absolute() { PathBuf::from("/") } else { PathBuf::from(".") };
    let mut pending = owned(path);
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            probe = if probe.is_absolute() { resolved.clone() } else { probe.join("..") };
            continue;
        }
        let next = resolved.join(&name);
        let next_probe = probe.join(&name);
        let metadata = std::fs::symlink_metadata(&next_probe);
        let is_link = metadata.as_ref().is_ok_and(|metadata| metadata.file_type().is_symlink());
        if let ControlFlow::Break(found) =
            visit(Step { path: &next, probe: &next_probe, names_left: !pending.is_empty(), is_link })
        {
            return Walked::Stopped(found);
        }
        if let Err(error) = &metadata {
            let missing =
                matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory);
            return Walked::Unfinished { missing };
        }
        if !is_link {
            resolved = next;
            probe = next_probe;
            continue;
        }
        links += 1;
        let Ok(target) = std::fs::read_link(&next_probe) else { return Walked::Unfinished { missing: true } };
        if links > MAX_LINKS {
            return Walked::Unfinished { missing: false };
        }
        if target.is_absolute() {
            resolved = PathBuf::from("/");
            probe = PathBuf::from("/");
        }
        let mut ahead = owned(&target);
        ahead.extend(pending);
        pending = ahead;
    }
    Walked::Resolved(resolved)
}

/// The symbolic links resolving `path` goes through, as the kernel meets them (see
/// [`walk_resolving`]), each by its own path. Stops at the first name that does not
/// exist yet.
pub fn links_on_the_way(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut links = Vec::new();
    let _ = walk_resolving::<()>(path, |step| {
        if step.is_link && links.len() < MAX_LINKS {
            links.push(step.path.to_path_buf());
        }
        std::ops::ControlFlow::Continue(())
    });
    links
}

/// The first symbolic link resolving `path` goes through that neither this user nor root
/// owns, with its owner: whoever owns it chooses where the path leads.
pub fn foreign_link_on_the_way(path: &std::path::Path) -> Option<(std::path::PathBuf, u32)> {
    walk_to_a_foreign_link(path).stopped()
}

/// Resolve `path` as [`walk_resolving`] does, stopping at the first symbolic link that
/// neither this user nor root owns (with its owner), else where the path leads.
pub fn walk_to_a_foreign_link(path: &std::path::Path) -> Walked<(std::path::PathBuf, u32)> {
    let euid = effective_uid();
    let mut links = 0;
    walk_resolving(path, |step| {
        if !step.is_link {
            return std::ops::ControlFlow::Continue(());
        }
        links += 1;
        match std::fs::symlink_metadata(step.probe).map(|metadata| metadata.uid()) {
            Ok(owner) if owner != euid && owner != 0 && links <= MAX_LINKS => {
                std::ops::ControlFlow::Break((step.path.to_path_buf(), owner))
            }
            _ => std::ops::ControlFlow::Continue(()),
        }
    })
}

/// `WHAT PATH is reached through the symbolic link LINK, which belongs to …`: how the
/// refusal of a path through another user's link (`owner`'s) begins.
pub fn reached_through(what: &str, path: &std::path::Path, link: &std::path::Path, owner: u32) -> String {
    format!(
        "{what} {} {REACHED_THROUGH_A_LINK} {}, which {}",
        path.display(),
        link.display(),
        foreign_owner(owner)
    )
}

/// Who besides this user and root may replace `path` (a file or a folder) by renaming
/// an entry above it, in words with the fix: every folder above it as named, above the
/// links on the way to it, and above where it resolves — who may rename an entry in any
/// of them chooses what is there (a folder of theirs on the way is one they may swap for
/// another). A sticky folder (`/tmp`) lets only an entry's owner and its own owner do so:
/// it counts when another user owns it. A folder its group may write counts when
/// `counts_group` (the group neither root's nor this user's). None when nobody may.
pub fn others_may_replace(path: &std::path::Path, counts_group: bool) -> Option<String> {
    // Named as the operator reads it in a log: `./drainctl.toml` from its folder.
    let named = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let shown = named.display();
    let links = links_on_the_way(path);
    let resolved = std::fs::canonicalize(path).ok();
    let mut folders: Vec<std::path::PathBuf> = Vec::new();
    let everywhere = std::iter::once(named.as_path()).chain(links.iter().map(std::path::PathBuf::as_path));
    for leading in everywhere.chain(resolved.as_deref()) {
        for folder in leading.ancestors().skip(1).filter(|folder| !folder.as_os_str().is_empty()) {
            if !folders.iter().any(|seen| seen == folder) {
                folders.push(folder.to_path_buf());
            }
        }
    }
    folders.iter().find_map(|folder| {
        let metadata = std::fs::metadata(folder).ok()?;
        let is_sticky = metadata.mode() & 0o1000 != 0;
        let writer = folder_replacer(&metadata);
        let folder_shown = folder.display();
        let holds = if named.parent() == Some(folder.as_path()) {
            "is in".to_string()
        } else if named.starts_with(folder) {
            "is below".to_string()
        } else {
            match links.first() {
                Some(link) => format!("leads, through the symbolic link {}, below", link.display()),
                None => "leads below".to_string(),
            }
        };
        match writer {
            Some(writer @ OtherWriter::EveryUser { .. }) => Some(format!(
                "{shown} {holds} {folder_shown}, {}: move it, or chmod o-w the folder",
                writer.may_replace()
            )),
            Some(writer @ OtherWriter::Owner { .. }) => Some(format!(
                "{shown} {holds} {folder_shown}, {}: move it, or chown the folder",
                writer.may_replace()
            )),
            None if is_sticky => None,
            // A POSIX ACL may let another user, or a group, write the folder whatever its
            // mode says (`setfacl -m u:NAME:rwx`).
            None if let Some(writers) = Some(acl_writers(folder)).filter(|writers| !writers.is_empty()) => {
                Some(format!(
                    "{shown} {holds} {folder_shown}, {ITS_ACL_LETS_REPLACE} {} replace it: move it, or setfacl -b \
                     the folder",
                    writers.join(" and ")
                ))
            }
            None if counts_group && metadata.mode() & 0o020 != 0 && !is_trusted_group(metadata.gid()) => Some(format!(
                "{shown} {holds} {folder_shown}, where its group (gid {}) may replace it: move it, or chmod g-w \
                 the folder",
                metadata.gid()
            )),
            None => None,
        }
    })
}

/// Root's group, and the group drainctl runs as (a user's own private group, as a
/// `umask 002` system gives its folders): members of another may change what it runs.
pub fn is_trusted_group(gid: u32) -> bool {
    gid == 0 || gid == effective_gid()
}

/// The whole of the regular file at `path`: a named pipe (which would hold the command in
/// its `open` until some writer came), a device or a folder is refused without waiting.
pub fn read_regular_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::File::options().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("it is not a regular file (a named pipe, a device or a folder)"));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_found_in_folders_and_inside_links_targets() {
        let root = std::env::temp_dir().join(format!("drainctl-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("inner")).unwrap();
        std::os::unix::fs::symlink("inner", root.join("outer")).unwrap();
        let links = links_on_the_way(&root.join("outer/sub/new/file.log"));
        assert_eq!(links, [root.join("outer"), root.join("inner")]);
        assert!(links_on_the_way(&root.join("real/sub/file.log")).is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_user_is_named_by_login_and_uid_and_an_unknown_one_by_uid() {
        assert_eq!(user_named(0), "root (uid 0)");
        assert_eq!(chown_owner(0), "root");
        // No user database names the largest uid (it is -1, "no user", to the kernel).
        assert_eq!(user_named(u32::MAX - 1), format!("uid {}", u32::MAX - 1));
        assert_eq!(chown_owner(u32::MAX - 1), (u32::MAX - 1).to_string());
    }

    /// Give `path` the access ACL `user::rw- user:UID:rw- group::r-- mask::MASK other::r--`.
    fn grant_write_by_acl(path: &std::path::Path, uid: u32, mask: u16) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let mut acl = 2u32.to_le_bytes().to_vec();
        let entries = [
            (0x01u16, 6u16, u32::MAX),
            (0x02, 6, uid),
            (0x04, 4, u32::MAX),
            (0x10, mask, u32::MAX),
            (0x20, 4, u32::MAX),
        ];
        for (tag, perm, id) in entries {
            acl.extend(tag.to_le_bytes());
            acl.extend(perm.to_le_bytes());
            acl.extend(id.to_le_bytes());
        }
        let file = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated names; the value is read for `acl.len()` bytes.
        unsafe {
            libc::setxattr(
                file.as_ptr(),
                c"system.posix_acl_access".as_ptr(),
                acl.as_ptr().cast(),
                acl.len(),
                0,
            ) == 0
        }
    }

    #[test]
    fn an_acl_that_lets_another_user_write_is_found_unless_its_mask_forbids() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("drainctl.toml");
        std::fs::write(&file, "").unwrap();
        assert!(acl_writers(&file).is_empty());
        if !grant_write_by_acl(&file, 65534, 6) {
            eprintln!("this file system takes no ACL: nothing to check");
            return;
        }
        assert_eq!(acl_writers(&file), vec![format!("user {}", user_named(65534))]);
        // Before: loaded, the other user's commands run as this one.
        let refused = crate::config::Config::load(&file).unwrap_err().to_string();
        assert!(refused.contains("has an ACL that lets user "), "{refused}");
        assert!(grant_write_by_acl(&file, 65534, 4));
        assert!(acl_writers(&file).is_empty(), "the mask takes write away");
    }

    #[test]
    fn a_configuration_in_a_folder_whose_acl_lets_another_user_write_is_refused() {
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("drainctl.toml");
        std::fs::write(&file, "").unwrap();
        assert!(crate::config::Config::load(&file).is_ok());
        if !grant_write_by_acl(folder.path(), 65534, 7) {
            eprintln!("this file system takes no ACL: nothing to check");
            return;
        }
        // Before: loaded, and the other user could rename another file over it.
        let refused = crate::config::Config::load(&file).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("{ITS_ACL_LETS_REPLACE} user {} replace it", user_named(65534)))
                && refused.contains("setfacl -b the folder"),
            "{refused}"
        );
    }
}
