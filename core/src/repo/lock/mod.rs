//! Repository locks: files in `locks/` (design.md §5).
//!
//! A backup takes a shared lock; prune takes an exclusive lock. To lock, a process writes its lock
//! file first and then lists the others; on a conflict it removes its own and fails, so two
//! processes racing both back off rather than both proceeding.
//!
//! A held lock is written again every [`refresh_every`]; one not written for [`stale_after`],
//! judged by the storage's clock (the file's mtime, the object's `Last-Modified`) and never by the
//! hosts' clocks, is stale, as is one whose process is gone (same host, pid not alive). Stale
//! locks are ignored with a warning and removed by `bakfs unlock`. A holder that finds its lock
//! gone, or could not write it again for [`stale_after`], has lost it: what it does next under the
//! lock fails ([`LockGuard::check`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::repo::backend::{Backend, FileKind};
use crate::repo::Repository;

/// Content of a lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockInfo {
    /// Exclusive (`repair index`) or not; `true`/`false` in the file.
    pub exclusive: bool,
    /// A prune's lock: it excludes other prunes and exclusive locks, not shared ones (absent,
    /// so `false`, in locks of older versions, whose prunes lock exclusively).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
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

/// Why a lock is stale, if it is: its process is dead, or it was last written more than
/// [`stale_after`] before `now`, both times by the storage's clock.
fn staleness(
    info: &LockInfo,
    written: Option<SystemTime>,
    now: Option<SystemTime>,
    this_host: &str,
    stale: Duration,
) -> Option<String> {
    if info.is_stale(this_host) {
        return Some(format!("process {} on {} is gone", info.pid, info.host));
    }
    let age = now?.duration_since(written?).ok()?;
    (age > stale).then(|| {
        format!(
            "not renewed for {} s by the storage's clock (stale after {} s)",
            age.as_secs(),
            stale.as_secs()
        )
    })
}

/// What a lock lets other processes do meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Others may hold shared locks too (backup, forget, restore, check, mediad's copy).
    Shared,
    /// Nobody else may hold any lock (`repair index`).
    Exclusive,
    /// No other prune and no exclusive lock; shared locks, so backups, go on (prune, which
    /// defers deleting what they could still use: design.md §4.3).
    Prune,
}

impl LockMode {
    /// Whether a lock taken this way and one described by `other` cannot both be held.
    fn conflicts(self, other: &LockInfo) -> bool {
        match self {
            LockMode::Exclusive => true,
            LockMode::Prune => other.exclusive || other.prune,
            LockMode::Shared => other.exclusive,
        }
    }
}

/// A lock not written again for this long, by the storage's clock, is stale (default 30 minutes;
/// `BAKFS_LOCK_STALE_SECS` sets it, for tests and for storage with coarse clocks).
pub fn stale_after() -> Duration {
    let secs = std::env::var("BAKFS_LOCK_STALE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(30 * 60);
    Duration::from_secs(secs)
}

/// How often a held lock is written again: a sixth of [`stale_after`], so that a few failed
/// writes in a row (a storage briefly unreachable) do not make it stale.
pub fn refresh_every() -> Duration {
    stale_after() / 6
}

/// A held lock; released on drop. A thread writes it again every [`refresh_every`].
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    name: String,
    mode: LockMode,
    lost: Arc<AtomicBool>,
    /// Dropped to stop the refresher.
    stop: Option<SyncSender<()>>,
    refresher: Option<JoinHandle<()>>,
}

impl LockGuard {
    /// How the lock is held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// Fails if the lock was lost: removed by another process that judged it stale, or not
    /// written again for [`stale_after`]. Work done under the lock calls it before each step
    /// that others must not see without the lock (an index file, a manifest, a deletion).
    ///
    /// # Errors
    /// [`Error::Locked`] once the lock is lost.
    pub fn check(&self) -> Result<()> {
        check_flag(&self.lost, &self.name)
    }

    /// The flag [`LockGuard::check`] reads, for a repository to check at its commit points.
    pub(crate) fn lost_flag(&self) -> Arc<AtomicBool> {
        self.lost.clone()
    }
}

/// [`LockGuard::check`] on a flag.
pub(crate) fn check_flag(lost: &AtomicBool, name: &str) -> Result<()> {
    if lost.load(Ordering::Relaxed) {
        Err(Error::Locked(format!(
            "this process's lock {name} was lost (removed as stale by another process, or not \
             renewed for {} s); it stopped so as not to write without a lock",
            stale_after().as_secs()
        )))
    } else {
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        if !self.lost.load(Ordering::Relaxed) {
            let _ = self.backend.remove(FileKind::Lock, &self.name);
        }
    }
}

/// How long a lock lives without renewal, and how often it is renewed.
#[derive(Debug, Clone, Copy)]
struct Timing {
    stale: Duration,
    refresh: Duration,
}

impl Timing {
    fn current() -> Timing {
        Timing {
            stale: stale_after(),
            refresh: refresh_every(),
        }
    }
}

/// Writes the lock again every `t.refresh` until `stop` closes; sets `lost` when the lock is
/// gone or could not be written for `t.stale`.
fn refresh(
    backend: &dyn Backend,
    name: &str,
    bytes: &[u8],
    stop: &Receiver<()>,
    lost: &AtomicBool,
    t: Timing,
) {
    let mut written = Instant::now();
    loop {
        match stop.recv_timeout(t.refresh) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        match backend.size(FileKind::Lock, name) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!("lock {name} was removed by another process: stopping");
                lost.store(true, Ordering::Relaxed);
                return;
            }
            _ => {}
        }
        match backend.write(FileKind::Lock, name, bytes) {
            Ok(()) => written = Instant::now(),
            Err(e) => tracing::warn!("could not renew lock {name}: {e}"),
        }
        if written.elapsed() >= t.stale {
            tracing::error!(
                "lock {name} not renewed for {} s: others may take it as stale; stopping",
                t.stale.as_secs()
            );
            lost.store(true, Ordering::Relaxed);
            return;
        }
    }
}

/// Proof that this process holds the exclusive lock of a repository: operations that delete or
/// rewrite what others may be using (prune, repair) take one, so none can run without it.
/// Made only by [`exclusive`]; released on drop.
pub struct ExclusiveLock(LockGuard);

impl ExclusiveLock {
    /// As [`LockGuard::check`].
    ///
    /// # Errors
    /// [`Error::Locked`] once the lock is lost.
    pub fn check(&self) -> Result<()> {
        self.0.check()
    }

    /// Whether this lock is the one of `backend` (the same backend value the repository uses).
    pub fn covers(&self, backend: &Arc<dyn Backend>) -> bool {
        Arc::ptr_eq(&self.0.backend, backend)
    }
}

/// Proof that this process holds a repository's prune lock ([`LockMode::Prune`]): only
/// [`prune_lock`] makes one; released on drop.
pub struct PruneLock(LockGuard);

impl PruneLock {
    /// As [`LockGuard::check`].
    ///
    /// # Errors
    /// [`Error::Locked`] once the lock is lost.
    pub fn check(&self) -> Result<()> {
        self.0.check()
    }

    /// Whether this lock is the one of `backend` (the same backend value the repository uses).
    pub fn covers(&self, backend: &Arc<dyn Backend>) -> bool {
        Arc::ptr_eq(&self.0.backend, backend)
    }

    /// The lock file's name (its holder's own lock, not another process's).
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

/// Takes a prune lock.
///
/// # Errors
/// As [`acquire`].
pub fn prune_lock(backend: &Arc<dyn Backend>, purpose: &str) -> Result<PruneLock> {
    acquire(backend, LockMode::Prune, purpose).map(PruneLock)
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
    others(backend, "")
}

/// As [`list`], without the lock named `own` (not read: a request less in a bucket).
fn others(backend: &dyn Backend, own: &str) -> Result<Vec<(String, LockInfo)>> {
    let names = backend
        .list(FileKind::Lock)
        .map_err(|e| Error::io("locks/", e))?;
    Ok(names
        .into_iter()
        .filter(|n| n != own)
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
    acquire_timed(backend, mode, purpose, Timing::current())
}

/// [`acquire`] with the given timing.
fn acquire_timed(
    backend: &Arc<dyn Backend>,
    mode: LockMode,
    purpose: &str,
    t: Timing,
) -> Result<LockGuard> {
    let host = hostname();
    let info = LockInfo {
        exclusive: mode == LockMode::Exclusive,
        prune: mode == LockMode::Prune,
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
    let (stop, stopped) = std::sync::mpsc::sync_channel(0);
    let lost = Arc::new(AtomicBool::new(false));
    let mut guard = LockGuard {
        backend: backend.clone(),
        name: name.clone(),
        mode,
        lost: lost.clone(),
        stop: Some(stop),
        refresher: None,
    };
    // The storage's "now": when it wrote this lock (asked only if another lock conflicts).
    let mut now = None;
    for (n, other) in others(backend.as_ref(), &name)? {
        if !mode.conflicts(&other) {
            continue;
        }
        let now = *now.get_or_insert_with(|| backend.modified(FileKind::Lock, &name).ok());
        let written = backend.modified(FileKind::Lock, &n).ok();
        if let Some(why) = staleness(&other, written, now, &host, t.stale) {
            tracing::warn!(
                "ignoring stale lock {n} of process {} on {} ({}): {why}; `bakfs unlock` removes it",
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
            } else if other.prune {
                "a prune"
            } else {
                "a shared"
            },
            other.pid,
            other.host,
            other.purpose,
            crate::timefmt::format_rfc3339(other.time_ns)
        )));
    }
    let b = backend.clone();
    guard.refresher = Some(
        std::thread::Builder::new()
            .name("bakfs-lock".into())
            .spawn(move || refresh(b.as_ref(), &name, &bytes, &stopped, &lost, t))
            .map_err(|e| Error::io("starting the lock refresher", e))?,
    );
    Ok(guard)
}

/// The storage's clock now: the time it gives a probe lock file written and removed at once.
fn storage_now(backend: &dyn Backend) -> Option<SystemTime> {
    let name = hex::encode(rand::random::<[u8; 16]>());
    backend.write(FileKind::Lock, &name, b"{}").ok()?;
    let t = backend.modified(FileKind::Lock, &name).ok();
    let _ = backend.remove(FileKind::Lock, &name);
    t
}

/// The locks other than `own` that are not stale (by the storage's clock against the time it
/// gave `own`): the processes that use the repository now.
///
/// # Errors
/// I/O errors listing.
pub fn live_locks(backend: &dyn Backend, own: &str) -> Result<Vec<String>> {
    let host = hostname();
    let now = backend.modified(FileKind::Lock, own).ok();
    Ok(others(backend, own)?
        .into_iter()
        .filter(|(n, info)| {
            staleness(
                info,
                backend.modified(FileKind::Lock, n).ok(),
                now,
                &host,
                stale_after(),
            )
            .is_none()
        })
        .map(|(n, _)| n)
        .collect())
}

/// Which locks [`unlock`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlock {
    /// Locks of dead processes of this host, and locks of any host not renewed for
    /// [`stale_after`] by the storage's clock.
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
    let now = storage_now(backend);
    for (n, info) in list(backend)? {
        let written = backend.modified(FileKind::Lock, &n).ok();
        if let Some(why) = staleness(&info, written, now, &host, stale_after()) {
            tracing::info!("removing stale lock {n}: {why}");
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
        self.hold(&g);
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
        self.hold(&g.0);
        self.reload_index_from_files()?;
        Ok(g)
    }

    /// Remembers `g` as the lock this repository is used under: its writes then stop once it is
    /// lost ([`Repository::check_lock`]).
    fn hold(&self, g: &LockGuard) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((g.name.clone(), g.lost_flag()));
    }

    /// Fails if the lock taken with [`Repository::lock_shared`] or
    /// [`Repository::lock_exclusive`] was lost. Called before each write others must not see
    /// without a lock: a pack, an index file, a manifest.
    ///
    /// # Errors
    /// [`Error::Locked`] once the lock is lost.
    pub fn check_lock(&self) -> Result<()> {
        match &*self.held.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((name, lost)) => check_flag(lost, name),
            None => Ok(()),
        }
    }

    /// Takes a prune lock on this repository, then reads every index file again (see
    /// [`Repository::lock_shared`]).
    ///
    /// # Errors
    /// As [`prune_lock`]; reading the index.
    pub fn lock_prune(&self, purpose: &str) -> Result<PruneLock> {
        let g = prune_lock(self.backend(), purpose)?;
        self.hold(&g.0);
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

#[cfg(test)]
mod tests;
