//! This host's copies of what commands on a remote repository (a bucket) read again and again:
//! snapshot manifests and the packs that hold trees (design.md §4.4). `snapshots`, `mount` and
//! an unchanged re-backup then read them from the local disk, not with a request each. Data
//! packs are fetched whole too, and the last [`RECENT_PACKS`] kept: a restore reads a pack's
//! blobs one after another, so it makes one request per pack, not one per blob.
//!
//! Both are named by the blake3 of their bytes, so a copy is checked against its name: a
//! manifest on every read (it is small), a pack once per process before its first use. A copy
//! that fails is removed and read from the repository again. Copies are written to a temporary
//! name and renamed, so a crash leaves none half-written.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::fsio::{self, Durability, Writers};
use crate::repo::backend::{Backend, FileKind};

/// Data packs kept whole at most (16 MiB each in a bucket: up to 512 MiB of disk while a process
/// runs).
const RECENT_PACKS: usize = 32;

/// The cache of one repository at one location.
pub(super) struct RemoteCache {
    dir: PathBuf,
    /// Packs whose copy was checked in this process.
    checked: Mutex<HashSet<String>>,
    /// Data packs kept whole in `recent/`, oldest first.
    recent: Mutex<VecDeque<String>>,
    /// One lock per data pack being fetched, so that threads wanting it fetch it once.
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl RemoteCache {
    /// A cache in `dir` (made on first use).
    pub(super) fn new(dir: PathBuf) -> RemoteCache {
        RemoteCache {
            dir,
            checked: Mutex::new(HashSet::new()),
            recent: Mutex::new(VecDeque::new()),
            fetching: Mutex::new(HashMap::new()),
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

    /// Keeps a copy of a file this process just wrote (its name is its hash): a pack counts as
    /// checked.
    pub(super) fn keep_written(&self, kind: FileKind, name: &str, bytes: &[u8]) {
        self.keep(kind, name, bytes);
        if kind == FileKind::Pack {
            self.checked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_string());
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
        // Not kept (a full cache disk, a misnamed pack): the range itself.
        from_copy(backend, &path, name, offset, len)
    }

    /// `len` bytes at `offset` of data pack `name`: the pack is fetched whole into `recent/`
    /// (checked against its name) and the last [`RECENT_PACKS`] are kept.
    ///
    /// # Errors
    /// As [`Backend::read`]; `UnexpectedEof` past the pack's end.
    pub(super) fn read_data_range(
        &self,
        backend: &dyn Backend,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        crate::repo::backend::check_name(FileKind::Pack, name)?;
        let dir = self.recent_dir();
        let path = dir.join(name);
        let gate = self
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        {
            let _one = gate.lock().unwrap_or_else(|p| p.into_inner());
            // Least recently used last out: a pack read again moves to the back.
            let known = {
                let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
                match recent.iter().position(|n| n == name) {
                    Some(i) => {
                        if let Some(n) = recent.remove(i) {
                            recent.push_back(n);
                        }
                        true
                    }
                    None => false,
                }
            };
            if !known {
                let bytes = backend.read(FileKind::Pack, name)?;
                if blake3::hash(&bytes).to_hex().as_str() != name {
                    // Not what its name says: no copy; the blob's own check decides.
                    return slice(&bytes, offset, len);
                }
                let kept = fs::create_dir_all(&dir).and_then(|()| {
                    fsio::write_atomic(&dir, name, Durability::Deferred, Writers::Many, |f| {
                        f.write_all(&bytes)
                    })
                });
                if kept.is_err() {
                    return slice(&bytes, offset, len);
                }
                let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
                recent.push_back(name.to_string());
                while recent.len() > RECENT_PACKS {
                    if let Some(old) = recent.pop_front() {
                        let _ = fs::remove_file(dir.join(&old));
                    }
                }
                drop(recent);
                return slice(&bytes, offset, len);
            }
        }
        // Evicted meanwhile by another thread: the range itself.
        from_copy(backend, &path, name, offset, len)
    }

    /// This process's directory of recent data packs, `recent-<pid>`: removed when the cache is
    /// dropped; those of processes that died are removed the first time it is made.
    fn recent_dir(&self) -> PathBuf {
        let dir = self.dir.join(format!("recent-{}", std::process::id()));
        if !dir.exists() {
            for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let dead = name
                    .strip_prefix("recent-")
                    .and_then(|p| p.parse::<i32>().ok())
                    .is_some_and(|pid| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                            == Err(nix::errno::Errno::ESRCH)
                    });
                if dead {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        dir
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

impl Drop for RemoteCache {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.dir.join(format!("recent-{}", std::process::id())));
    }
}

/// `len` bytes at `offset` of the copy of pack `name` at `path`, or from the repository when
/// there is no copy.
fn from_copy(
    backend: &dyn Backend,
    path: &std::path::Path,
    name: &str,
    offset: u64,
    len: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    match fsio::open_nofollow(path).and_then(|f| f.read_exact_at(&mut buf, offset)) {
        Ok(()) => Ok(buf),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            backend.read_range(FileKind::Pack, name, offset, len)
        }
        Err(e) => Err(e),
    }
}

/// `len` bytes at `offset` of `bytes`.
fn slice(bytes: &[u8], offset: u64, len: usize) -> io::Result<Vec<u8>> {
    usize::try_from(offset)
        .ok()
        .and_then(|o| bytes.get(o..o.checked_add(len)?))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}
