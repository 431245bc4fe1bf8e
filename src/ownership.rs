//! Who besides the user running drainctl may change a file or a folder drainctl trusts:
//! the configuration, which names the programs it runs, and a drain's log folder
//! (docs/configuration.md; docs/operations.md, "Finding a run's log").

use std::os::unix::fs::MetadataExt;

/// The user drainctl runs as (its effective uid).
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Someone other than this user and root who may change an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherWriter {
    /// Every user may write it (`mode`, the permission bits).
    EveryUser { mode: u32 },
    /// It belongs to another user, who may.
    Owner { uid: u32 },
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
