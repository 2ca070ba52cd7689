//! This host's copies of what commands on a remote repository (a bucket) read again and again:
//! snapshot manifests and the packs that hold trees (design.md §4.4). `snapshots`, `mount` and
//! an unchanged re-backup then read them from the local disk, not with a request each.
//!
//! Both are named by the blake3 of their bytes, so a copy is checked against its name: a
//! manifest on every read (it is small), a pack once per process before its first use. A copy
//! that fails is removed and read from the repository again. Copies are written to a temporary
//! name and renamed, so a crash leaves none half-written.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::fsio::{self, Durability, Writers};
use crate::repo::backend::{Backend, FileKind};

/// The cache of one repository at one location.
pub(super) struct RemoteCache {
    dir: PathBuf,
    /// Packs whose copy was checked in this process.
    checked: Mutex<HashSet<String>>,
}

impl RemoteCache {
    /// A cache in `dir` (made on first use).
    pub(super) fn new(dir: PathBuf) -> RemoteCache {
        RemoteCache {
            dir,
            checked: Mutex::new(HashSet::new()),
        }
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        self.dir.join(kind.rel_path(name))
    }

    /// Keeps a copy; a failure to keep one is only logged (the read itself succeeded).
    fn keep(&self, kind: FileKind, name: &str, bytes: &[u8]) {
        let path = self.path(kind, name);
        let dir = path.parent().unwrap_or(&self.dir);
        let kept = fs::create_dir_all(dir).and_then(|()| {
            fsio::write_atomic(dir, name, Durability::Deferred, Writers::Many, |f| {
                f.write_all(bytes)
            })
        });
        if let Err(e) = kept {
            tracing::debug!("not cached: {}: {e}", path.display());
        }
    }

    /// A whole content-addressed file: the copy if it is sound, else read from `backend` and
    /// kept.
    ///
    /// # Errors
    /// As [`Backend::read`].
    pub(super) fn read(
        &self,
        backend: &dyn Backend,
        kind: FileKind,
        name: &str,
    ) -> io::Result<Vec<u8>> {
        crate::repo::backend::check_name(kind, name)?;
        let path = self.path(kind, name);
        if let Ok(bytes) = fs::read(&path) {
            if blake3::hash(&bytes).to_hex().as_str() == name {
                return Ok(bytes);
            }
            tracing::warn!(
                "cached copy {} does not match its name: read again",
                path.display()
            );
            let _ = fs::remove_file(&path);
        }
        let bytes = backend.read(kind, name)?;
        if blake3::hash(&bytes).to_hex().as_str() == name {
            self.keep(kind, name, &bytes);
        }
        Ok(bytes)
    }

    /// `len` bytes at `offset` of pack `name`, from its copy (the whole pack is fetched and
    /// checked on first use).
    ///
    /// # Errors
    /// As [`Backend::read`]; `UnexpectedEof` past the pack's end.
    pub(super) fn read_pack_range(
        &self,
        backend: &dyn Backend,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        let path = self.path(FileKind::Pack, name);
        let checked = self
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name);
        if !checked {
            self.read(backend, FileKind::Pack, name)?;
            self.checked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string());
        }
        let mut buf = vec![0; len];
        match fsio::open_nofollow(&path).and_then(|f| f.read_exact_at(&mut buf, offset)) {
            Ok(()) => Ok(buf),
            // Not kept (a full cache disk, a misnamed pack): read the range itself.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                backend.read_range(FileKind::Pack, name, offset, len)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes copies of files of `kind` not in `keep` (forgotten snapshots, pruned packs).
    pub(super) fn retain(&self, kind: FileKind, keep: &HashSet<String>) {
        let dirs: Vec<PathBuf> = if kind == FileKind::Pack {
            fs::read_dir(self.dir.join(kind.dir()))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect()
        } else {
            vec![self.dir.join(kind.dir())]
        };
        for d in dirs {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}
