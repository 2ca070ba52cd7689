//! `--against-source`: restored files compared with the live files at their paths, by content.
//! A file changed or gone since the snapshot is an expected difference (the source moved on),
//! counted; only more of them than a tolerance fails the drill.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;

use super::SnapshotFile;

/// How restored files compare with the live source.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SourceComparison {
    /// Restored files compared.
    pub compared: u64,
    /// Live files with the same content.
    pub same: u64,
    /// Live files whose content differs now (or that are no longer regular files, or cannot be
    /// read), by path.
    pub changed: Vec<String>,
    /// Paths with no live file any more.
    pub gone: Vec<String>,
    /// The tolerance: the percentage of compared files that may differ or be gone.
    pub max_changed_percent: f64,
    /// Whether the differences are within the tolerance.
    pub within: bool,
}

/// The blake3 of a regular file's bytes; a symlink or any other kind of file is an error (and is
/// not followed or opened for reading: a FIFO would block).
fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// Compares each of `files` restored under `target` with the live file at its path. Files that
/// were not restored are not compared.
pub fn compare_with_source(
    target: &Path,
    files: &[SnapshotFile],
    max_changed_percent: f64,
) -> SourceComparison {
    let mut c = SourceComparison {
        max_changed_percent,
        ..SourceComparison::default()
    };
    for f in files {
        let Ok(restored) = hash_file(&target.join(f.path.trim_start_matches('/'))) else {
            continue;
        };
        c.compared += 1;
        match hash_file(Path::new(&f.path)) {
            Ok(live) if live == restored => c.same += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => c.gone.push(f.path.clone()),
            _ => c.changed.push(f.path.clone()),
        }
    }
    let differ = (c.changed.len() + c.gone.len()) as f64;
    c.within = differ * 100.0 <= max_changed_percent * c.compared as f64;
    tracing::info!(
        "against the source: {} compared, {} same, {} changed, {} gone",
        c.compared,
        c.same,
        c.changed.len(),
        c.gone.len()
    );
    c
}
