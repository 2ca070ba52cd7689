//! Snapshot manifests: written last by a backup, read and selected by every other command.

use rayon::prelude::*;

use super::Repository;
use crate::error::{Error, Result};
use crate::format::id::SnapshotId;
use crate::format::{self, Snapshot};
use crate::repo::backend::FileKind;

/// A manifest read: its name, what it holds, and the hash of its bytes if that is not its name.
type ReadManifest = (String, Result<(SnapshotId, Snapshot)>, Option<String>);

impl Repository {
    /// Writes a snapshot manifest (call after [`Repository::flush`]).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_snapshot(&self, s: &Snapshot) -> Result<SnapshotId> {
        self.check_lock()?;
        let bytes = format::seal_snapshot(&self.keys, s);
        let id = SnapshotId::hash_of(&bytes);
        self.backend
            .write(FileKind::Snapshot, &id.to_hex(), &bytes)
            .map_err(|e| Error::io(format!("writing snapshot {id}"), e))?;
        self.keep_remote_copy(FileKind::Snapshot, &id.to_hex(), &bytes);
        Ok(id)
    }

    /// All readable snapshots, oldest first. A damaged manifest is skipped with a warning and
    /// listed by [`Repository::damaged`].
    ///
    /// # Errors
    /// I/O errors.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let names = self
            .backend
            .list(FileKind::Snapshot)
            .map_err(|e| Error::io("snapshots/", e))?;
        // (name, the manifest, the hash of its bytes if that is not its name)
        let results: Vec<ReadManifest> = names
            .par_iter()
            .filter_map(|n| SnapshotId::from_hex(n).ok().map(|id| (id, n)))
            .filter_map(|(id, n)| {
                let raw = match self.read_manifest(n) {
                    Ok(raw) => raw,
                    // Forgotten between the listing and the read (`forget` runs beside
                    // backups): no longer a snapshot.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                    Err(e) => {
                        return Some((n.clone(), Err(Error::io(format!("snapshot {n}"), e)), None))
                    }
                };
                let hash = SnapshotId::hash_of(&raw).to_hex();
                let misnamed = (hash != *n).then_some(hash);
                let r = format::open_snapshot(&self.keys, n, &raw).map(|s| (id, s));
                Some((n.clone(), r, misnamed))
            })
            .collect();
        self.sweep_remote_cache(Some(&names));
        // Names that are no snapshot id at all (shorter hex, dashes) are not read, but said.
        let misnamed = names
            .iter()
            .filter(|n| SnapshotId::from_hex(n).is_err())
            .map(|n| (format!("snapshot {n}"), "not a snapshot id".to_string()))
            .chain(
                results
                    .iter()
                    .filter_map(|(n, _, m)| Some((format!("snapshot {n}"), m.clone()?))),
            )
            .collect();
        self.set_misnamed("snapshot ", misnamed);
        let mut v = Vec::new();
        let mut damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
        damaged.retain(|(n, _)| !n.starts_with("snapshot "));
        for (n, r, _) in results {
            match r {
                Ok(x) => v.push(x),
                Err(e @ Error::Damaged { .. }) => {
                    tracing::warn!("{e}: skipped (remove it with `bakfs forget {}`)", &n[..8]);
                    damaged.push((format!("snapshot {n}"), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        drop(damaged);
        v.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok(v)
    }

    /// Finds a snapshot by `latest` or a unique id prefix (at least 4 hex digits).
    ///
    /// # Errors
    /// [`Error::NotFound`] if none or several match.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        let all = self.snapshots()?;
        if spec == "latest" {
            return all
                .into_iter()
                .last()
                .ok_or_else(|| Error::NotFound("the repository has no snapshots".into()));
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.len() < 4 || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(format!(
                "snapshot {spec:?}: give `latest` or at least 4 hex digits of an id"
            )));
        }
        let mut m: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
            .collect();
        match m.len() {
            0 => Err(Error::NotFound(format!("no snapshot matches {spec:?}"))),
            1 => Ok(m.remove(0)),
            n => Err(Error::NotFound(format!(
                "{n} snapshots match {spec:?}; give more digits"
            ))),
        }
    }

    /// Removes a snapshot manifest.
    ///
    /// # Errors
    /// I/O errors.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.check_lock()?;
        self.backend
            .remove(FileKind::Snapshot, &id.to_hex())
            .map_err(|e| Error::io(format!("snapshot {id}"), e))
    }
}
