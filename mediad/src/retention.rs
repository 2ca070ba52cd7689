//! The medium's retention: snapshots its policy no longer wants are removed, then the packs
//! that no snapshot kept on it (or about to be copied) needs. Catalog rows go first, files
//! second, so the catalog never lists what is not there. While the medium holds a manifest the
//! catalog does not know, no pack is removed: its packs are unknown.

use std::collections::HashSet;

use bakfs_core::format::id::SnapshotId;
use bakfs_core::repo::backend::FileKind;

use crate::error::CopyError;
use crate::plan::Plan;
use crate::rotate::Rotation;

impl Rotation<'_> {
    /// Removes the snapshots `plan` no longer wants, then the packs nothing needs. Runs at the
    /// end of a job, and maybe once before, to make room.
    pub(crate) fn apply_retention(&mut self, plan: &Plan) -> Result<(), CopyError> {
        if !plan.remove.is_empty() {
            self.cat
                .remove_medium_snapshots(&self.m.id, &plan.remove)
                .map_err(CopyError::catalog)?;
            for id in &plan.remove {
                self.files.remove(FileKind::Snapshot, &id.to_hex())?;
                // Counted once: retention may run twice in a job.
                if self
                    .present
                    .remove(&(FileKind::Snapshot, id.to_hex()))
                    .is_some()
                {
                    self.stats.removed += 1;
                    tracing::info!(medium = %self.m.label, snapshot = %id, "removed by the medium's retention");
                }
            }
        }
        let unknown = self.unknown_manifests(plan)?;
        if unknown > 0 {
            tracing::warn!(medium = %self.m.label, "{unknown} snapshot manifests on the medium are not in the catalog; keeping all packs");
            return Ok(());
        }
        let unneeded = self.unneeded_packs(plan, &[])?;
        if unneeded.is_empty() {
            return Ok(());
        }
        let rows: Vec<(FileKind, String)> = unneeded
            .iter()
            .map(|n| (FileKind::Pack, n.clone()))
            .collect();
        self.cat
            .remove_medium_files(&self.m.id, &rows)
            .map_err(CopyError::catalog)?;
        for n in &unneeded {
            self.files.remove(FileKind::Pack, n)?;
            self.present.remove(&(FileKind::Pack, n.clone()));
        }
        tracing::info!(medium = %self.m.label, "removed {} packs no snapshot on the medium needs", unneeded.len());
        Ok(())
    }

    /// Bytes retention would free on the medium now.
    pub(crate) fn freeable(&self, plan: &Plan) -> Result<u64, CopyError> {
        if self.unknown_manifests(plan)? > 0 {
            return Ok(0);
        }
        Ok(self
            .unneeded_packs(plan, &plan.remove)?
            .iter()
            .filter_map(|n| self.present.get(&(FileKind::Pack, n.clone())))
            .sum())
    }

    /// Packs on the medium that no snapshot kept on it (once `dropping` is removed) or about to
    /// be copied needs, by name.
    fn unneeded_packs(
        &self,
        plan: &Plan,
        dropping: &[SnapshotId],
    ) -> Result<Vec<String>, CopyError> {
        let mut needed: HashSet<String> = self
            .cat
            .medium_packs_by_snapshot(&self.m.id)
            .map_err(CopyError::catalog)?
            .into_iter()
            .filter(|(snap, _)| !dropping.contains(snap))
            .flat_map(|(_, packs)| packs)
            .map(|pk| pk.to_hex())
            .collect();
        for s in &plan.add {
            for pk in self
                .cat
                .snapshot_packs(&s.repo_id, &s.id)
                .map_err(CopyError::catalog)?
            {
                needed.insert(pk.id.to_hex());
            }
        }
        Ok(self
            .present
            .keys()
            .filter(|(k, n)| *k == FileKind::Pack && !needed.contains(n))
            .map(|(_, n)| n.clone())
            .collect())
    }

    /// How many manifests on the medium neither the catalog's record of it nor the plan knows.
    fn unknown_manifests(&self, plan: &Plan) -> Result<usize, CopyError> {
        let held: HashSet<SnapshotId> = self
            .cat
            .medium_snapshots(&self.m.id)
            .map_err(CopyError::catalog)?
            .into_iter()
            .map(|s| s.snapshot_id)
            .collect();
        let known = |n: &str| {
            SnapshotId::from_hex(n).is_ok_and(|id| held.contains(&id) || plan.wanted.contains(&id))
        };
        Ok(self
            .present
            .keys()
            .filter(|(k, n)| *k == FileKind::Snapshot && !known(n))
            .count())
    }
}
