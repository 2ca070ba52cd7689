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

/// Content of a lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    /// Exclusive (prune) or shared (backup).
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

/// A held lock; released on drop.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    name: String,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.backend.remove(FileKind::Lock, &self.name);
    }
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
pub fn acquire(backend: &Arc<dyn Backend>, exclusive: bool, purpose: &str) -> Result<LockGuard> {
    let host = hostname();
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

/// Removes stale locks (or all locks with `all`, also lock files that cannot be read or
/// parsed). Returns the names removed.
///
/// # Errors
/// I/O errors.
pub fn unlock(backend: &dyn Backend, all: bool) -> Result<Vec<String>> {
    let host = hostname();
    let mut removed = vec![];
    if all {
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
