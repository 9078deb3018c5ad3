//! Names no other test process, or earlier run, uses: for data directories and key
//! prefixes.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// `{process id}-{nanoseconds since the epoch}`.
pub fn stamp() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// A fresh path in the temporary directory, `leadership-{what}-{stamp}` (not created).
pub fn scratch_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leadership-{what}-{}", stamp()))
}
