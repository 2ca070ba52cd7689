//! Following the repository while mounted: new snapshots appear and forgotten ones go (the
//! snapshot list is read again at most once per refresh interval), and the index is read again
//! when its files change (a backup added one, a prune replaced them).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::{lock, Top, Vfs};
use crate::format::id::SnapshotId;
use crate::format::{self, Snapshot};
use crate::repo::backend::FileKind;
use crate::repo::Repository;

/// The repository's index file names, sorted (empty if they cannot be listed).
pub(super) fn index_names(repo: &Repository) -> Vec<String> {
    let mut v = repo.backend().list(FileKind::Index).unwrap_or_default();
    v.sort();
    v
}

impl Vfs {
    /// Reads the index again if its files changed since it was read (a backup added one, a
    /// prune replaced them). Returns whether it did.
    pub(crate) fn reload_index_if_changed(&self) -> bool {
        let mut known = lock(&self.index_files);
        let now = index_names(&self.repo);
        if now == *known {
            return false;
        }
        match self.repo.load_index() {
            Ok(()) => {
                tracing::info!("index files changed: index read again");
                *known = now;
                // Chunk tables hold pack locations: they are made again on the next read.
                lock(&self.files).clear();
                true
            }
            Err(e) => {
                tracing::warn!("cannot reload the index: {e}");
                false
            }
        }
    }

    pub(super) fn top(&self) -> Arc<Top> {
        self.top.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Looks at the repository's snapshot list again if it was last read more than the refresh
    /// interval ago, so that new snapshots appear and forgotten ones go.
    pub fn refresh(&self) {
        {
            let mut last = lock(&self.last_refresh);
            if last.elapsed() < self.opts.refresh_interval {
                return;
            }
            *last = Instant::now();
        }
        let names = match self.repo.backend().list(FileKind::Snapshot) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("cannot list snapshots: {e}");
                return;
            }
        };
        let mut m = lock(&self.manifests);
        let present: HashSet<&String> = names.iter().collect();
        let before = m.len();
        m.retain(|k, _| present.contains(k));
        let mut changed = before != m.len();
        let mut added = false;
        for n in &names {
            if m.contains_key(n) || SnapshotId::from_hex(n).is_err() {
                continue;
            }
            let s = match self.repo.backend().read(FileKind::Snapshot, n) {
                Ok(raw) => match format::open_snapshot(self.repo.keys(), n, &raw) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!("{e}: not shown");
                        None
                    }
                },
                // Removed between listing and reading, or not yet readable: try again later.
                Err(e) => {
                    tracing::debug!("snapshot {n}: {e}");
                    continue;
                }
            };
            added |= s.is_some();
            changed = true;
            m.insert(n.clone(), s);
        }
        if !changed {
            return;
        }
        if added {
            // A new snapshot's blobs are in index files written before its manifest.
            self.reload_index_if_changed();
        }
        let snaps: Vec<(SnapshotId, Snapshot)> = m
            .iter()
            .filter_map(|(n, s)| Some((SnapshotId::from_hex(n).ok()?, s.clone()?)))
            .collect();
        drop(m);
        let n = snaps.len();
        let mut top = Top::new(&snaps);
        top.changed_ns = crate::timefmt::now_ns();
        *self.top.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(top);
        tracing::info!("snapshot list changed: {n} snapshots");
    }
}
