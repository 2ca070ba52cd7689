//! Taking stock: what the medium really holds against what the catalog says it holds. Recorded
//! files that are gone or changed are forgotten, files whose last check is old are read back
//! again (`reverify.rs`), and so are the files of the pinned set whatever their last check, and
//! snapshots that lost a file lose their place, so that the plan copies them again if it still
//! wants them.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use bakfs_core::format::id::SnapshotId;
use bakfs_core::repo::backend::FileKind;

use crate::error::CopyError;
use crate::medium::FileRef;
use crate::reverify;
use crate::rotate::Rotation;

/// What the catalog records of a medium's files: size and time of the last check.
pub type Recorded = HashMap<FileRef, (i64, i64)>;

impl Rotation<'_> {
    /// Lists the medium's files and compares them with the catalog's record: recorded files
    /// that are gone or have another size are forgotten. Returns the record as it was.
    pub(crate) fn take_stock(&mut self) -> Result<Recorded, CopyError> {
        let inv = self.files.inventory()?;
        if inv.ignored > 0 {
            tracing::warn!(medium = %self.m.label, "{} entries on the medium are not bakfs files (symlinks or stray files); ignored", inv.ignored);
        }
        let recorded: Recorded = self
            .cat
            .medium_files(&self.m.id)
            .map_err(CopyError::catalog)?
            .into_iter()
            .map(|f| ((f.kind, f.name), (f.size, f.verified_ns)))
            .collect();
        let holds = |k: &FileRef, size: i64| inv.files.get(k).map(|s| *s as i64) == Some(size);
        self.verified = recorded
            .iter()
            .filter(|(k, (size, _))| holds(k, *size))
            .map(|(k, _)| k.clone())
            .collect();
        let stale: Vec<FileRef> = recorded
            .iter()
            .filter(|(k, (size, _))| !holds(k, *size))
            .map(|(k, _)| k.clone())
            .collect();
        if !stale.is_empty() {
            tracing::warn!(medium = %self.m.label, "{} recorded files are missing or changed on the medium; they will be copied again", stale.len());
            self.cat
                .remove_medium_files(&self.m.id, &stale)
                .map_err(CopyError::catalog)?;
        }
        self.present = inv.files;
        Ok(recorded)
    }

    /// Reads back the files whose last check is older than `reverify_after`, and those of the
    /// pinned set ([`Self::pinned_files`]) whatever their last check; one that fails is
    /// forgotten and deleted. Not `config`, which is written and checked at every insertion
    /// anyway, nor a key wrapping revoked in the primary (not in `keys`), which is removed.
    pub(crate) fn reverify_due(
        &mut self,
        recorded: &Recorded,
        keys: &[String],
    ) -> Result<(), CopyError> {
        let due_before = bakfs_core::timefmt::now_ns()
            .saturating_sub(self.setup.reverify_after.as_nanos() as i64);
        let pinned = self.pinned_files()?;
        let mut due: Vec<reverify::Due> = recorded
            .iter()
            .filter(|(k, (_, at))| *at <= due_before || pinned.contains(*k))
            .filter(|(k, _)| self.verified.contains(*k))
            .filter(|((k, n), _)| match k {
                FileKind::Config => false,
                FileKind::Key => keys.contains(n),
                _ => true,
            })
            .map(|((k, n), (size, _))| (*k, n.clone(), *size as u64))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        due.sort();
        let t = Instant::now();
        let r = reverify::run(
            self.cat,
            &self.m.id,
            &self.primary,
            self.files,
            &due,
            self.cancel,
        )?;
        self.stats.bytes_verified += r.bytes as i64;
        let of_pinned = due
            .iter()
            .filter(|(k, n, _)| pinned.contains(&(*k, n.clone())))
            .count();
        tracing::info!(
            medium = %self.m.label,
            "re-verified {} files already on the medium ({} bytes; last checked more than {} ago, or {} of the pinned set) in {:.1} s: {} read back right, {} did not",
            due.len(),
            r.bytes,
            bakfs_core::timefmt::format_duration(self.setup.reverify_after),
            of_pinned,
            t.elapsed().as_secs_f64(),
            r.good,
            r.bad.len()
        );
        for (k, n) in r.bad.iter().filter(|f| pinned.contains(*f)) {
            tracing::error!(medium = %self.m.label, "{} {n} of the pinned set no longer reads back right on {}: it is copied again", k.as_str(), self.m.label);
        }
        for k in r.bad {
            self.verified.remove(&k);
            self.present.remove(&k);
        }
        Ok(())
    }

    /// The files on the medium that the newest snapshot of each pinned job needs, read back at
    /// every insertion: its manifest and packs (those the catalog lists for it in the primary,
    /// and those recorded with it on the medium), every index file and key wrapping (mediad holds
    /// no key: it cannot tell which index files list its packs, and they are small). Empty when
    /// no job is pinned. Files the medium lacks are not listed (the plan copies them).
    pub(crate) fn pinned_files(&self) -> Result<HashSet<FileRef>, CopyError> {
        let mut out = HashSet::new();
        if self.setup.pinned.is_empty() {
            return Ok(out);
        }
        let cat = &*self.cat;
        let primary = cat
            .snapshots(&self.setup.repo_id)
            .map_err(CopyError::catalog)?;
        let held = cat
            .medium_snapshots(&self.m.id)
            .map_err(CopyError::catalog)?;
        let pinned = crate::plan::newest_pinned(
            &self.setup.pinned,
            &primary,
            &held,
            bakfs_core::timefmt::now_ns(),
        );
        if pinned.is_empty() {
            return Ok(out);
        }
        let on_medium = cat
            .medium_packs_by_snapshot(&self.m.id)
            .map_err(CopyError::catalog)?;
        for p in &pinned {
            out.insert((FileKind::Snapshot, p.id.to_hex()));
            for pk in cat
                .snapshot_packs(&self.setup.repo_id, &p.id)
                .map_err(CopyError::catalog)?
            {
                out.insert((FileKind::Pack, pk.id.to_hex()));
            }
            for pk in on_medium.get(&p.id).into_iter().flatten() {
                out.insert((FileKind::Pack, pk.to_hex()));
            }
        }
        out.extend(
            self.present
                .keys()
                .filter(|(k, _)| matches!(k, FileKind::Index | FileKind::Key | FileKind::Condemned))
                .cloned(),
        );
        Ok(out
            .into_iter()
            .filter(|f| self.present.contains_key(f))
            .collect())
    }

    /// Forgets every snapshot whose manifest or any of whose packs is no longer there
    /// (verified): the plan copies it again if it still wants it.
    pub(crate) fn forget_broken_snapshots(&mut self) -> Result<(), CopyError> {
        let packs_of = self
            .cat
            .medium_packs_by_snapshot(&self.m.id)
            .map_err(CopyError::catalog)?;
        let lacks = |k: FileKind, n: String| !self.verified.contains(&(k, n));
        let broken: Vec<SnapshotId> = self
            .cat
            .medium_snapshots(&self.m.id)
            .map_err(CopyError::catalog)?
            .into_iter()
            .map(|s| s.snapshot_id)
            .filter(|id| {
                lacks(FileKind::Snapshot, id.to_hex())
                    || packs_of.get(id).is_some_and(|packs| {
                        packs.iter().any(|p| lacks(FileKind::Pack, p.to_hex()))
                    })
            })
            .collect();
        if !broken.is_empty() {
            self.cat
                .remove_medium_snapshots(&self.m.id, &broken)
                .map_err(CopyError::catalog)?;
        }
        Ok(())
    }
}
