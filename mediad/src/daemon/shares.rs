//! NAS shares and buckets in the daemon. No udev event tells of a network filesystem: the mount
//! table does ([`Mounts`]: `/proc/self/mountinfo`, which the kernel marks when a mount appears
//! or goes). A bucket is always there: it is followed as a share that is always mounted (its
//! jobs reach it over the network; the client's timeouts bound a request, so no clock is
//! watched). Once a tick, for each enrolled share or bucket of this repository:
//!
//! ```text
//! unmounted --mounted on its path--> mounted: a job when due
//!    ^   |
//!    |   +--has a source, due, share_retry since the last try--> a job that mounts it, copies,
//!    |                                                           unmounts
//!    +------------ unmounted: a running job is cancelled --------------------------+
//! ```
//! A job is due when the catalog's snapshots changed since the last job started (a backup, a
//! forget; at start, always), or when the last job failed `share_retry` ago.
//! The daemon never touches a share itself (the mount table is the kernel's): a hung network
//! filesystem can block a job's thread, never the daemon. A job whose oldest operation on the
//! share has taken longer than `share_timeout` is abandoned: reported, its run closed as
//! interrupted and its medium `failed`, its thread left to end when the filesystem gives up
//! (no new job starts on that share before it does).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use bakfs_core::catalog::{MediumKind, MediumRecord, MediumState, Presence};
use bakfs_core::format::id::MediumId;

use super::{Attach, Daemon, Job, Running};
use crate::medium::share::OpClock;

/// The mount table. Production: [`bakfs_host::mountinfo::Watch`].
pub trait Mounts {
    /// The mount points now, if mounts changed since the last call (the first call: always).
    fn changed_mounts(&mut self) -> Option<HashSet<PathBuf>>;
}

impl Mounts for bakfs_host::mountinfo::Watch {
    fn changed_mounts(&mut self) -> Option<HashSet<PathBuf>> {
        if !self.changed() {
            return None;
        }
        match bakfs_host::mountinfo::mounts() {
            Ok(m) => Some(m.into_iter().map(|m| m.mount_point).collect()),
            Err(e) => {
                tracing::error!("reading the mount table: {e}");
                None
            }
        }
    }
}

/// An enrolled share as the daemon follows it.
#[derive(Default)]
pub(super) struct ShareSlot {
    /// Whether it was mounted at the last look.
    mounted: bool,
    job: Option<(Running, Arc<OpClock>)>,
    /// The catalog's snapshot generation when the last job started.
    copied: Option<(i64, Option<i64>)>,
    /// When the last job ended, and whether it went well.
    last_end: Option<(Instant, bool)>,
    /// When the daemon last had a job mount it.
    last_mount_try: Option<Instant>,
    /// Whether its running job was abandoned.
    abandoned: bool,
}

impl Daemon<'_> {
    /// Looks at the mount table and the enrolled shares: records presence, cancels the jobs of
    /// shares that went, abandons hung jobs, and starts jobs where due (only if `start`).
    pub(super) fn shares_tick(&mut self, mounts: &mut impl Mounts, start: bool) {
        if let Some(points) = mounts.changed_mounts() {
            self.mount_points = points;
        }
        let enrolled: Vec<MediumRecord> = match self.catalog.media() {
            Ok(m) => m
                .into_iter()
                .filter(|m| {
                    m.kind == MediumKind::Share && m.share.is_some()
                        || m.kind == MediumKind::ObjectStorage && m.bucket.is_some()
                })
                .filter(|m| m.repo_id == self.setup.repo_id)
                .collect(),
            Err(e) => {
                tracing::error!("catalog: {e}");
                return;
            }
        };
        // Shares forgotten meanwhile: their jobs stop.
        let ids: HashSet<MediumId> = enrolled.iter().map(|m| m.id).collect();
        let gone: Vec<MediumId> = self
            .shares
            .keys()
            .filter(|id| !ids.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some((job, _)) = self.shares.remove(&id).and_then(|s| s.job) {
                job.cancel();
                self.leaving.push((String::new(), job));
            }
        }
        let generation = self
            .catalog
            .snapshot_generation(&self.setup.repo_id)
            .map_err(|e| tracing::error!("catalog: {e}"))
            .ok();
        for m in enrolled {
            self.share_tick(m, generation, start);
        }
    }

    fn share_tick(&mut self, m: MediumRecord, generation: Option<(i64, Option<i64>)>, start: bool) {
        // A share is there while something is mounted on its path; a bucket always is.
        let (mounted, mounts_itself) = match (&m.share, &m.bucket) {
            (Some(share), _) => (
                self.mount_points.contains(&share.path),
                share.mount.is_some(),
            ),
            (None, Some(_)) => (true, false),
            (None, None) => return,
        };
        let (mut slot, first_look) = match self.shares.remove(&m.id) {
            Some(s) => (s, false),
            None => (ShareSlot::default(), true),
        };
        if mounted != slot.mounted || first_look {
            slot.mounted = mounted;
            let p = if mounted {
                if let Some(share) = &m.share {
                    tracing::info!("share {} is mounted on {}", m.label, share.path.display());
                }
                Presence::PluggedIn
            } else {
                if let Some(share) = m.share.as_ref().filter(|_| !first_look) {
                    tracing::info!(
                        "share {} is no longer mounted on {}",
                        m.label,
                        share.path.display()
                    );
                }
                if let Some((job, clock)) = &slot.job {
                    if !job.is_finished() && !clock.releasing() {
                        tracing::warn!("{} went away during its copy: stopping the job", m.label);
                        job.cancel();
                    }
                }
                Presence::Removed
            };
            self.record_presence(&m.id, &m.label, p);
        }
        self.watch_share_job(&m, &mut slot);
        if start && slot.job.is_none() {
            let retry = self.setup.share_retry;
            let failed_long_ago = slot
                .last_end
                .is_some_and(|(t, ok)| !ok && t.elapsed() >= retry);
            // New snapshots since the last job (or none yet), or a failed job to try again; a
            // share that is not mounted only if mediad mounts it itself, and not more often
            // than `share_retry` (a NAS switched off is not hammered).
            let due = (slot.copied != generation || failed_long_ago)
                && (mounted
                    || mounts_itself && slot.last_mount_try.is_none_or(|t| t.elapsed() >= retry));
            if due {
                if !mounted {
                    slot.last_mount_try = Some(Instant::now());
                }
                slot.copied = generation;
                slot.job = self.start_share_job(m.clone());
            }
        }
        self.shares.insert(m.id, slot);
    }

    /// Reaps the slot's job if it ended; abandons it if an operation on the share hangs.
    fn watch_share_job(&mut self, m: &MediumRecord, slot: &mut ShareSlot) {
        let Some((job, clock)) = slot.job.take() else {
            return;
        };
        if job.is_finished() {
            let state = job.thread.join().ok();
            slot.last_end = Some((
                Instant::now(),
                !slot.abandoned && state == Some(MediumState::SafeToRemove),
            ));
            slot.abandoned = false;
            return;
        }
        if !slot.abandoned {
            if let Some((took, what)) = clock.oldest() {
                if took > self.setup.share_timeout {
                    let why = format!(
                        "the share stopped answering: {what} took more than {} s; the job is abandoned (its thread ends when the network filesystem gives up)",
                        self.setup.share_timeout.as_secs()
                    );
                    tracing::error!(medium = %m.label, "{}: {why}", m.label);
                    let now = bakfs_core::timefmt::now_ns();
                    if let Err(e) = self.catalog.abandon_medium_run(&m.id, &why, now) {
                        tracing::error!("catalog: {e}");
                    }
                    clock.abandon(&why);
                    job.cancel();
                    slot.abandoned = true;
                    if clock.mounted_here() {
                        if let Some(share) = &m.share {
                            force_off(&m.label, &share.path);
                        }
                    }
                }
            }
        }
        slot.job = Some((job, clock));
    }

    fn start_share_job(&mut self, m: MediumRecord) -> Option<(Running, Arc<OpClock>)> {
        let clock = Arc::new(OpClock::default());
        let label = m.label.clone();
        let attach = match m.kind {
            MediumKind::ObjectStorage => Attach::Bucket,
            _ => Attach::Share(clock.clone()),
        };
        let job = Job {
            medium: m,
            attach,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let cancel = job.cancel.clone();
        let runner = self.runner.clone();
        match std::thread::Builder::new()
            .name(format!("copy {label}"))
            .spawn(move || runner.run(&job))
        {
            Ok(thread) => Some((Running { cancel, thread }, clock)),
            Err(e) => {
                tracing::error!("starting a job: {e}");
                None
            }
        }
    }

    /// The shares mounted now (for the presence recorded at start).
    pub(super) fn mounted_shares(&self) -> Vec<MediumId> {
        self.shares
            .iter()
            .filter(|(_, s)| s.mounted)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether a share job is running.
    pub(super) fn share_jobs_running(&self) -> bool {
        self.shares.values().any(|s| s.job.is_some())
    }

    /// Share jobs, to cancel or wait for when the daemon stops: abandoned ones are not waited
    /// for (their thread may stay blocked in the kernel).
    pub(super) fn take_share_jobs(&mut self) -> Vec<(Running, bool)> {
        self.shares
            .values_mut()
            .filter_map(|s| s.job.take().map(|(j, _)| (j, s.abandoned)))
            .collect()
    }
}

/// Forces off the mount of a hung share that a job of this daemon mounted: `MNT_FORCE` makes
/// FUSE (sshfs), NFS and SMB fail the requests that hang, so the job's thread comes back; the
/// mount is detached. On a thread of its own: the daemon never waits on a share. A share the
/// system mounted is not touched (its options decide when it gives up: docs/mediad.md).
fn force_off(label: &str, path: &std::path::Path) {
    let (label, path) = (label.to_string(), path.to_path_buf());
    let _ = std::thread::Builder::new()
        .name(format!("unmount {label}"))
        .spawn(move || {
            use nix::mount::{umount2, MntFlags};
            match umount2(&path, MntFlags::MNT_FORCE | MntFlags::MNT_DETACH) {
                Ok(()) => tracing::warn!(medium = %label, "forced the hung share off {}", path.display()),
                Err(e) => tracing::error!(medium = %label, "forcing the hung share off {}: {e}", path.display()),
            }
        });
}
