//! Finding a worker's program as `exec` would — a path (from the worker's folder) or a
//! bare name on a PATH — and the interpreter a script's `#!` line names: what `doctor`
//! checks before a pass, and what a pass says when a start failed.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Find `program`: a name with a slash is a path, from `workdir` when given; a bare name is
/// looked up on `path_variable` (the worker's own PATH), else drainctl's PATH. The error
/// says what is wrong with it.
pub fn locate(
    program: &str,
    path_variable: Option<&OsStr>,
    workdir: Option<&Path>,
) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("command is empty".to_string());
    }
    if program.contains('/') {
        let path = workdir.map_or_else(|| PathBuf::from(program), |folder| folder.join(program));
        return match executable(&path) {
            Some(true) => Ok(path),
            Some(false) => Err(format!("{program:?} is not an executable file")),
            None => Err(format!("{program:?} does not exist")),
        };
    }
    let search = search_path(path_variable);
    let mut not_executable = None;
    for folder in std::env::split_paths(&search) {
        let candidate = folder.join(program);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => not_executable = not_executable.or(Some(candidate)),
            None => {}
        }
    }
    match not_executable {
        Some(path) => Err(format!("{program:?} found as {} but it is not executable", path.display())),
        None => Err(format!("{program:?} not found on PATH")),
    }
}

/// The PATH a bare program name is looked up on: `path_variable` (the worker's own PATH)
/// when given, else drainctl's.
pub fn search_path(path_variable: Option<&OsStr>) -> std::ffi::OsString {
    path_variable.map(OsStr::to_os_string).or_else(|| std::env::var_os("PATH")).unwrap_or_default()
}

/// Some(true) for an executable regular file, Some(false) for another existing entry,
/// None when nothing is there.
pub fn executable(path: &Path) -> Option<bool> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Whether the kernel can run the file at `path`: it starts with `#!` or is an ELF
/// program. None when it cannot be read (then only a start can tell).
pub fn runnable_format(path: &Path) -> Option<bool> {
    use std::io::Read as _;
    let mut head = [0u8; 4];
    let read = std::fs::File::open(path).and_then(|mut file| file.read(&mut head)).ok()?;
    Some(head[..read].starts_with(b"#!") || head[..read] == *b"\x7fELF")
}

/// The interpreter a script's `#!` line names, if the file starts with one.
pub fn interpreter_of(path: &Path) -> Option<String> {
    shebang_words(path)?.into_iter().next()
}

/// The words of a script's `#!` line — its interpreter, then its arguments — if the file
/// starts with one.
pub fn shebang_words(path: &Path) -> Option<Vec<String>> {
    use std::io::Read as _;
    let mut head = [0u8; 256];
    let read = std::fs::File::open(path).and_then(|mut file| file.read(&mut head)).ok()?;
    let line = head[..read].strip_prefix(b"#!")?;
    let line = line.split(|byte| *byte == b'\n').next()?;
    // Split as the kernel does: on spaces and tabs only, so a Windows line end stays.
    let words: Vec<String> = std::str::from_utf8(line)
        .ok()?
        .split([' ', '\t'])
        .filter(|word| !word.is_empty())
        .map(String::from)
        .collect();
    (!words.is_empty()).then_some(words)
}

/// Whether this process may enter the folder `path` (search permission, as `chdir` needs).
pub fn may_enter(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::X_OK) == 0 }
}
