//! Repository locks: files in `locks/`.
//!
//! A backup takes a shared lock; prune takes an exclusive lock. To lock, a process writes its lock
//! file first and then lists the others; on a conflict it removes its own and fails, so two
//! processes racing both back off rather than both proceeding. A lock whose process is gone (same
//! host, pid not alive) is stale: it is ignored with a warning and removed by `bakfs unlock`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::backend::{Backend, FileKind};
use crate::repo::Repository;

/// Content of a lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    /// Exclusive (prune, repair) or shared (everything else); `true`/`false` in the file.
    pub exclusive: bool,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When taken, Unix ns.
    pub time_ns: i64,
    /// What holds it.
    pub purpose: String,
}

impl LockInfo {
    /// Whether the holder is known to be dead (same host, no such process).
    pub fn is_stale(&self, this_host: &str) -> bool {
        self.host == this_host
            && nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), None)
                == Err(nix::errno::Errno::ESRCH)
    }
}

/// What a lock lets other processes do meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Others may hold shared locks too (backup, forget, restore, check, mediad's copy).
    Shared,
    /// Nobody else may hold any lock (prune, repair).
    Exclusive,
}

/// A held lock; released on drop.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    name: String,
    mode: LockMode,
}

impl LockGuard {
    /// How the lock is held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.backend.remove(FileKind::Lock, &self.name);
    }
}

/// Proof that this process holds the exclusive lock of a repository: operations that delete or
/// rewrite what others may be using (prune, repair) take one, so none can run without it.
/// Made only by [`exclusive`]; released on drop.
pub struct ExclusiveLock(LockGuard);

impl ExclusiveLock {
    /// Whether this lock is the one of `backend` (the same backend value the repository uses).
    pub fn covers(&self, backend: &Arc<dyn Backend>) -> bool {
        Arc::ptr_eq(&self.0.backend, backend)
    }
}

/// Takes the exclusive lock.
///
/// # Errors
/// As [`acquire`].
pub fn exclusive(backend: &Arc<dyn Backend>, purpose: &str) -> Result<ExclusiveLock> {
    acquire(backend, LockMode::Exclusive, purpose).map(ExclusiveLock)
}

/// Takes a shared lock.
///
/// # Errors
/// As [`acquire`].
pub fn shared(backend: &Arc<dyn Backend>, purpose: &str) -> Result<LockGuard> {
    acquire(backend, LockMode::Shared, purpose)
}

/// The local host name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// All lock files with their content (unreadable ones are skipped).
///
/// # Errors
/// I/O errors listing.
pub fn list(backend: &dyn Backend) -> Result<Vec<(String, LockInfo)>> {
    let names = backend
        .list(FileKind::Lock)
        .map_err(|e| Error::io("locks/", e))?;
    Ok(names
        .into_iter()
        .filter_map(|n| {
            let raw = backend.read(FileKind::Lock, &n).ok()?;
            let info: LockInfo = serde_json::from_slice(&raw).ok()?;
            Some((n, info))
        })
        .collect())
}

/// Takes a lock.
///
/// # Errors
/// [`Error::Locked`] if a live conflicting lock exists; I/O errors.
fn acquire(backend: &Arc<dyn Backend>, mode: LockMode, purpose: &str) -> Result<LockGuard> {
    let host = hostname();
    let exclusive = mode == LockMode::Exclusive;
    let info = LockInfo {
        exclusive,
        host: host.clone(),
        pid: std::process::id(),
        time_ns: crate::timefmt::now_ns(),
        purpose: purpose.to_string(),
    };
    let name = hex::encode(rand::random::<[u8; 16]>());
    let bytes = serde_json::to_vec(&info).map_err(|e| Error::Invalid(e.to_string()))?;
    backend
        .write(FileKind::Lock, &name, &bytes)
        .map_err(|e| Error::io("locks/", e))?;
    let guard = LockGuard {
        backend: backend.clone(),
        name: name.clone(),
        mode,
    };
    for (n, other) in list(backend.as_ref())? {
        if n == name || !(exclusive || other.exclusive) {
            continue;
        }
        if other.is_stale(&host) {
            tracing::warn!(
                "ignoring stale lock {n} of dead process {} on {} ({}); `bakfs unlock` removes it",
                other.pid,
                other.host,
                other.purpose
            );
            continue;
        }
        drop(guard);
        return Err(Error::Locked(format!(
            "{} lock held by pid {} on {} for {} since {}",
            if other.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            other.pid,
            other.host,
            other.purpose,
            crate::timefmt::format_rfc3339(other.time_ns)
        )));
    }
    Ok(guard)
}

/// Which locks [`unlock`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlock {
    /// Locks of dead processes of this host.
    Stale,
    /// Every lock file, live or not, readable or not.
    All,
}

/// Removes the locks `which` names. Returns the names removed.
///
/// # Errors
/// I/O errors.
pub fn unlock(backend: &dyn Backend, which: Unlock) -> Result<Vec<String>> {
    let host = hostname();
    let mut removed = vec![];
    if which == Unlock::All {
        for n in backend
            .list(FileKind::Lock)
            .map_err(|e| Error::io("locks/", e))?
        {
            backend
                .remove(FileKind::Lock, &n)
                .map_err(|e| Error::io(format!("lock {n}"), e))?;
            removed.push(n);
        }
        return Ok(removed);
    }
    for (n, info) in list(backend)? {
        if info.is_stale(&host) {
            backend
                .remove(FileKind::Lock, &n)
                .map_err(|e| Error::io(format!("lock {n}"), e))?;
            removed.push(n);
        }
    }
    Ok(removed)
}

impl Repository {
    /// Takes a shared lock on this repository, then reads the index again: a prune that
    /// finished between opening and locking must not leave this process with an index naming
    /// deleted packs (design.md §5).
    ///
    /// # Errors
    /// As [`shared`]; reading the index.
    pub fn lock_shared(&self, purpose: &str) -> Result<LockGuard> {
        let g = shared(self.backend(), purpose)?;
        self.load_index()?;
        Ok(g)
    }

    /// Takes the exclusive lock on this repository, then reads the index again (see
    /// [`Repository::lock_shared`]).
    ///
    /// # Errors
    /// As [`exclusive`]; reading the index.
    pub fn lock_exclusive(&self, purpose: &str) -> Result<ExclusiveLock> {
        let g = exclusive(self.backend(), purpose)?;
        self.reload_index_from_files()?;
        Ok(g)
    }

    /// Fails unless `lock` is this repository's exclusive lock.
    ///
    /// # Errors
    /// [`Error::Invalid`] for another repository's lock.
    pub(crate) fn check_exclusive(&self, lock: &ExclusiveLock) -> Result<()> {
        if lock.covers(self.backend()) {
            Ok(())
        } else {
            Err(Error::Invalid(
                "the exclusive lock held is another repository's".into(),
            ))
        }
    }
}
