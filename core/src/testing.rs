//! Helpers for unit tests: a repository in memory and a source tree on disk.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backup::{backup, BackupOptions, BackupReport, Progress};
use crate::format::crypto::KdfParams;
use crate::format::id::SnapshotId;
use crate::format::Snapshot;
use crate::repo::backend::{Backend, FileKind, MemBackend};
use crate::repo::Repository;

/// A new repository in memory, with its backend (to inspect or damage files).
pub fn mem_repo() -> (Arc<MemBackend>, Repository) {
    let mem = Arc::new(MemBackend::default());
    let backend: Arc<dyn Backend> = mem.clone();
    let repo =
        Repository::init(backend, b"pw", KdfParams::weak_for_tests(), "test".into()).unwrap();
    (mem, repo)
}

/// Deterministic noise: `n` bytes from `seed`.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `files` (relative path, bytes) under `dir`, making directories.
pub fn write_tree(dir: &Path, files: &[(&str, &[u8])]) {
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// Backs up `src` with `parent` for change detection.
pub fn backup_dir(
    repo: &Repository,
    src: &Path,
    parent: Option<(SnapshotId, Snapshot)>,
) -> BackupReport {
    let opts = BackupOptions {
        paths: vec![src.to_path_buf()],
        host: "test".into(),
        parent,
        time_ns: crate::timefmt::now_ns(),
        ..BackupOptions::default()
    };
    backup(repo, &opts, &Progress::default()).unwrap()
}

/// The bytes of the file at the absolute source path `path` in a snapshot.
pub fn file_in(repo: &Repository, snap: &Snapshot, path: &Path) -> Vec<u8> {
    let node = crate::restore::find_node(repo, &snap.tree, &path.to_string_lossy())
        .unwrap()
        .unwrap();
    node.content
        .iter()
        .flat_map(|b| repo.read_blob(b).unwrap())
        .collect()
}

/// A scratch directory with a source tree `src/` in it.
pub fn source(files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_tree(&src, files);
    (dir, src)
}

/// A backend over another whose pack reads start failing with `errno` after `reads_left` of
/// them: a medium pulled out (EIO) or a network share gone (ENOTCONN) in the middle of a read.
pub struct Failing {
    pub inner: Arc<MemBackend>,
    pub reads_left: std::sync::atomic::AtomicI64,
    pub errno: i32,
}

impl Backend for Failing {
    fn location(&self) -> String {
        "failing".into()
    }
    fn create(&self) -> std::io::Result<()> {
        self.inner.create()
    }
    fn read(&self, k: FileKind, n: &str) -> std::io::Result<Vec<u8>> {
        self.inner.read(k, n)
    }
    fn read_range(&self, k: FileKind, n: &str, o: u64, l: usize) -> std::io::Result<Vec<u8>> {
        use std::sync::atomic::Ordering;
        if k == FileKind::Pack && self.reads_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(std::io::Error::from_raw_os_error(self.errno));
        }
        self.inner.read_range(k, n, o, l)
    }
    fn write(&self, k: FileKind, n: &str, d: &[u8]) -> std::io::Result<()> {
        self.inner.write(k, n, d)
    }
    fn list(&self, k: FileKind) -> std::io::Result<Vec<String>> {
        self.inner.list(k)
    }
    fn size(&self, k: FileKind, n: &str) -> std::io::Result<u64> {
        self.inner.size(k, n)
    }
    fn modified(&self, k: FileKind, n: &str) -> std::io::Result<std::time::SystemTime> {
        self.inner.modified(k, n)
    }
    fn remove(&self, k: FileKind, n: &str) -> std::io::Result<()> {
        self.inner.remove(k, n)
    }
}

/// A backend over another whose `config` is written by someone else between the emptiness
/// check and the create-only write: the loser's side of two inits racing.
pub struct RacedInit {
    pub inner: Arc<MemBackend>,
}

impl Backend for RacedInit {
    fn location(&self) -> String {
        "raced".into()
    }
    fn create(&self) -> std::io::Result<()> {
        self.inner.create()
    }
    fn read(&self, k: FileKind, n: &str) -> std::io::Result<Vec<u8>> {
        self.inner.read(k, n)
    }
    fn write(&self, k: FileKind, n: &str, d: &[u8]) -> std::io::Result<()> {
        self.inner.write(k, n, d)
    }
    fn read_range(&self, k: FileKind, n: &str, o: u64, l: usize) -> std::io::Result<Vec<u8>> {
        self.inner.read_range(k, n, o, l)
    }
    fn write_new(&self, k: FileKind, n: &str, d: &[u8]) -> std::io::Result<()> {
        // The other init's config lands first.
        self.inner.write(k, n, b"the other init's config")?;
        self.inner.write_new(k, n, d)
    }
    fn list(&self, k: FileKind) -> std::io::Result<Vec<String>> {
        self.inner.list(k)
    }
    fn size(&self, k: FileKind, n: &str) -> std::io::Result<u64> {
        self.inner.size(k, n)
    }
    fn remove(&self, k: FileKind, n: &str) -> std::io::Result<()> {
        self.inner.remove(k, n)
    }
}
