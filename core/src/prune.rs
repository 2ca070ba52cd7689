//! `prune`: remove data no snapshot needs.
//!
//! Order (each step durable before the next): mark every blob reachable from every snapshot
//! (an unreadable tree aborts the prune: nothing is deleted when in doubt) → repack the used
//! blobs of packs that are mostly unused into new packs → write one new index covering every
//! kept pack → delete the old index files → delete packs no index lists. A crash at any point
//! leaves either the old or the new index complete, and at worst unreferenced packs.
//! The caller holds the exclusive lock.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId};
use crate::format::{IndexFile, IndexPack};
use crate::repo::backend::FileKind;
use crate::repo::lock::ExclusiveLock;
use crate::repo::Repository;

/// Share of unused bytes above which a pack is repacked.
const REPACK_UNUSED_FRACTION: f64 = 0.2;

/// Whether prune deletes or only says what it would delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneMode {
    /// Compute the report; change nothing.
    DryRun,
    /// Repack and delete.
    Apply,
}

/// What prune did (or would do, with [`PruneMode::DryRun`]).
#[derive(Debug, Default, Serialize)]
pub struct PruneReport {
    /// Packs before.
    pub packs_before: usize,
    /// Packs deleted whole.
    pub packs_deleted: usize,
    /// Packs repacked.
    pub packs_repacked: usize,
    /// Bytes freed (approximate for repacks).
    pub bytes_freed: u64,
    /// Unreferenced pack files removed.
    pub unreferenced_removed: usize,
}

/// Every blob reachable from the repository's snapshots.
///
/// # Errors
/// Any unreadable tree or manifest (prune must not run then).
pub fn used_blobs(repo: &Repository) -> Result<HashSet<BlobId>> {
    let roots = repo.snapshots()?.into_iter().map(|(_, s)| s.tree);
    crate::repo::walk::reachable_blobs(repo, roots)
}

/// Prunes. It deletes packs other processes could be reading, so it needs the repository's
/// exclusive lock (taken with [`Repository::lock_exclusive`], which also reads the index again).
///
/// # Errors
/// Another repository's lock; unreadable snapshots or trees (then nothing is deleted), I/O
/// errors.
pub fn prune(repo: &Repository, lock: &ExclusiveLock, mode: PruneMode) -> Result<PruneReport> {
    repo.check_exclusive(lock)?;
    // Damaged index files and manifests are named first: with a damaged index, reading the
    // trees fails with a bare "not in the index" that hides the cause and the remedy.
    let used = used_blobs(repo);
    let damaged = repo.damaged();
    if let Some((what, why)) = damaged.first() {
        return Err(Error::damaged(
            what.clone(),
            format!("{why}; prune could delete data only it refers to, so it stops: run `bakfs repair index` for a damaged index, `bakfs forget ID` for a damaged snapshot"),
        ));
    }
    let used = used?;
    let sizes = repo.indexed_packs();
    // Per pack: bytes used, bytes unused, the entries used, every entry.
    type PerPack = (
        u64,
        u64,
        Vec<crate::format::PackEntry>,
        Vec<crate::format::PackEntry>,
    );
    let mut per_pack: HashMap<PackId, PerPack> = HashMap::new();
    let mut found = 0usize;
    repo.each_blob(|loc| {
        let e = per_pack.entry(loc.pack).or_default();
        if used.contains(&loc.entry.id) {
            found += 1;
            e.0 += loc.entry.length as u64;
            e.2.push(loc.entry);
        } else {
            e.1 += loc.entry.length as u64;
        }
        e.3.push(loc.entry);
    })?;
    if found != used.len() {
        if let Some(b) = used.iter().find(|b| !repo.has_blob(b)) {
            return Err(Error::damaged(
                format!("blob {b}"),
                "a snapshot needs it but no index lists it; run `bakfs check`; prune stopped",
            ));
        }
    }
    let mut rep = PruneReport {
        packs_before: sizes.len(),
        ..Default::default()
    };
    let mut delete: Vec<PackId> = vec![];
    let mut repack: Vec<(PackId, Vec<crate::format::PackEntry>)> = vec![];
    let mut keep: Vec<IndexPack> = vec![];
    for (pid, size) in &sizes {
        let (u, unused, entries, all) = per_pack.remove(pid).unwrap_or_default();
        if u == 0 {
            delete.push(*pid);
            rep.bytes_freed += size;
        } else if unused as f64 > REPACK_UNUSED_FRACTION * (u + unused) as f64 {
            repack.push((*pid, entries));
            rep.bytes_freed += unused;
        } else {
            keep.push(IndexPack {
                id: *pid,
                size: *size,
                blobs: all,
            });
        }
    }
    rep.packs_deleted = delete.len();
    rep.packs_repacked = repack.len();
    let on_disk = repo
        .backend()
        .list(FileKind::Pack)
        .map_err(|e| Error::io("data/", e))?;
    let unreferenced: Vec<String> = on_disk
        .into_iter()
        .filter(|n| {
            PackId::from_hex(n)
                .map(|p| !sizes.contains_key(&p))
                .unwrap_or(false)
        })
        .collect();
    rep.unreferenced_removed = unreferenced.len();
    if mode == PruneMode::DryRun {
        return Ok(rep);
    }
    // Repack: copy used blobs out of mostly-unused packs.
    if !repack.is_empty() {
        let pids: HashSet<PackId> = repack.iter().map(|(p, _)| *p).collect();
        repo.drop_packs_from_index(&pids);
        repo.hold_index();
        for (pid, entries) in &repack {
            for e in entries {
                let data = repo.read_blob_at(&crate::repo::BlobLocation {
                    pack: *pid,
                    entry: *e,
                })?;
                repo.save_blob(e.kind, &data)?;
            }
        }
        let new_packs = repo.flush_packs_only()?;
        keep.extend(new_packs);
    }
    // One index for everything kept, then drop the old index files, then the packs.
    let old_indexes = repo
        .backend()
        .list(FileKind::Index)
        .map_err(|e| Error::io("index/", e))?;
    let new_id = repo.write_index(&IndexFile { packs: keep })?;
    for n in old_indexes {
        if n != new_id.to_hex() {
            repo.backend()
                .remove(FileKind::Index, &n)
                .map_err(|e| Error::io(format!("index {n}"), e))?;
        }
    }
    for pid in delete.iter().chain(repack.iter().map(|(p, _)| p)) {
        repo.backend()
            .remove(FileKind::Pack, &pid.to_hex())
            .map_err(|e| Error::io(format!("pack {pid}"), e))?;
    }
    for n in &unreferenced {
        repo.backend()
            .remove(FileKind::Pack, n)
            .map_err(|e| Error::io(format!("pack {n}"), e))?;
    }
    repo.load_index()?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::backend::Backend;
    use crate::testing::{backup_dir, file_in, mem_repo, noise, source};

    #[test]
    fn prune_frees_what_only_forgotten_snapshots_used_and_keeps_the_rest_readable() {
        let keep = noise(1 << 20, 5);
        let (_d, src) = source(&[("keep", &keep), ("gone", &noise(3 << 20, 6))]);
        let (mem, repo) = mem_repo();
        let first = backup_dir(&repo, &src, None);
        std::fs::remove_file(src.join("gone")).unwrap();
        let second = backup_dir(&repo, &src, Some((first.id, first.snapshot.clone())));
        let lock = repo.lock_exclusive("test").unwrap();
        let dry = prune(&repo, &lock, PruneMode::DryRun).unwrap();
        assert_eq!(
            dry.packs_deleted + dry.packs_repacked,
            0,
            "both snapshots need all"
        );
        repo.remove_snapshot(&first.id).unwrap();
        let packs_before = mem.list(FileKind::Pack).unwrap().len();
        let dry = prune(&repo, &lock, PruneMode::DryRun).unwrap();
        assert!(dry.bytes_freed >= 3 << 20, "{dry:?}");
        assert_eq!(
            mem.list(FileKind::Pack).unwrap().len(),
            packs_before,
            "dry run"
        );
        let rep = prune(&repo, &lock, PruneMode::Apply).unwrap();
        assert_eq!(rep.bytes_freed, dry.bytes_freed);
        assert!(mem.list(FileKind::Pack).unwrap().len() < packs_before);
        assert_eq!(
            mem.list(FileKind::Index).unwrap().len(),
            1,
            "one index after prune"
        );
        drop(lock);
        // What the kept snapshot needs is all there, and reads back right.
        repo.load_index().unwrap();
        let rep = crate::check::check(&repo, Some(1.0)).unwrap();
        assert!(rep.ok() && rep.notes.is_empty(), "{rep:?}");
        assert_eq!(file_in(&repo, &second.snapshot, &src.join("keep")), keep);
    }

    #[test]
    fn prune_refuses_another_repositorys_lock() {
        let (_, repo) = mem_repo();
        let (_, other) = mem_repo();
        let lock = other.lock_exclusive("test").unwrap();
        let e = prune(&repo, &lock, PruneMode::DryRun).unwrap_err();
        assert!(e.to_string().contains("another repository"), "{e}");
        // While the exclusive lock is held, nobody gets a shared one.
        let e = other.lock_shared("backup").err().unwrap();
        assert!(matches!(e, Error::Locked(_)), "{e}");
        drop(lock);
        assert!(other.lock_shared("backup").is_ok());
    }
}
