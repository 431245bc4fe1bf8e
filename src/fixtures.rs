//! The captured worker outputs under `tests/fixtures/` that unit tests read: one folder per
//! capture, with its `meta.toml`.

use std::path::{Path, PathBuf};

/// Every folder of `tests/fixtures/<set>/` that holds a `meta.toml`, in name order.
pub fn folders(set: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(set);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|error| panic!("{}: {error}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("meta.toml").is_file())
        .collect();
    found.sort();
    found
}
