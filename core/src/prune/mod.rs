//! `prune`: remove data no snapshot needs, while backups go on (design.md §4.3).
//!
//! Order (each step durable before the next): mark every blob reachable from every snapshot
//! (an unreadable tree aborts the prune: nothing is deleted when in doubt) → repack the used
//! blobs of packs that are mostly unused into new packs → write new index files covering every
//! kept pack → delete the old index files → record the packs taken out of the index, with the
//! locks other processes hold, in `condemned/` → delete them once none of those processes runs
//! (at once when there were none; else a later prune does), indexing again any a snapshot made
//! meanwhile needs (`condemned.rs`). "In use" is a bit per index record, and the new index files
//! are streamed from the index tables, so memory does not grow with the number of blobs. A crash
//! at any point leaves either the old or the new index complete, and at worst packs no index
//! lists. The caller holds the prune lock, which shared locks (backups) do not conflict with.

mod condemned;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId};
use crate::format::{IndexFile, IndexPack};
use crate::repo::backend::FileKind;
use crate::repo::lock::PruneLock;
use crate::repo::Repository;

/// Share of unused bytes above which a pack is repacked.
const REPACK_UNUSED_FRACTION: f64 = 0.2;
/// Blobs per index file prune writes.
const INDEX_FILE_BLOBS: usize = 65_536;

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
    /// Packs whose deletion waits until processes that may still use them have ended (a later
    /// prune deletes them).
    pub packs_deferred: usize,
    /// Packs taken out of the index by an earlier prune and indexed again, because a snapshot
    /// made since needs them.
    pub packs_restored: usize,
}

/// Every blob reachable from the repository's snapshots.
///
/// # Errors
/// Any unreadable tree or manifest (prune must not run then).
pub fn used_blobs(repo: &Repository) -> Result<HashSet<BlobId>> {
    let roots = repo.snapshots()?.into_iter().map(|(_, s)| s.tree);
    crate::repo::walk::reachable_blobs(repo, roots)
}

/// Prunes under the repository's prune lock (taken with [`Repository::lock_prune`], which also
/// reads the index again). Backups may run meanwhile: what they could still use is deleted only
/// once they have ended.
///
/// # Errors
/// Another repository's lock; unreadable snapshots or trees (then nothing is deleted), I/O
/// errors.
pub fn prune(repo: &Repository, lock: &PruneLock, mode: PruneMode) -> Result<PruneReport> {
    prune_in(repo, lock, mode, INDEX_FILE_BLOBS)
}

/// [`prune`], writing index files of `file_blobs` blobs.
fn prune_in(
    repo: &Repository,
    lock: &PruneLock,
    mode: PruneMode,
    file_blobs: usize,
) -> Result<PruneReport> {
    if !lock.covers(repo.backend()) {
        return Err(Error::Invalid(
            "the prune lock held is another repository's".into(),
        ));
    }
    // Earlier prunes' condemned packs first: a snapshot made since may need some of them, and
    // marking needs them indexed again.
    let earlier = if mode == PruneMode::Apply {
        condemned::finish(repo, lock)?
    } else {
        condemned::Finished::default()
    };
    // The snapshots first, then the index: a backup writes its index files before its
    // manifest, so every snapshot listed finds its blobs in the index read after.
    let snapshots = repo.snapshots()?;
    repo.load_index()?;
    // The index files this prune replaces: those it read. A backup's written since stay.
    let read_indexes = repo.index_files_loaded();
    // Mark every blob in use: one bit per index record (design.md §4.3), not a set of ids.
    let mut marks = repo.index_marks();
    let mut unindexed: Option<BlobId> = None;
    let marked_from: Vec<String> = snapshots.iter().map(|(id, _)| id.to_hex()).collect();
    let roots: Vec<BlobId> = snapshots.into_iter().map(|(_, s)| s.tree).collect();
    let walked = crate::repo::walk::for_each_reachable(repo, roots, |id| {
        // A blob only in a pack an earlier prune took out (a snapshot made beside it) is
        // that record's business (condemned.rs), not damage.
        if !repo.mark_used(&mut marks, id)
            && unindexed.is_none()
            && repo.locate_pending(id).is_none()
        {
            unindexed = Some(*id);
        }
    });
    // Damaged index files and manifests are named first: with a damaged index, reading the
    // trees fails with a bare "not in the index" that hides the cause and the remedy.
    let damaged = repo.damaged();
    if let Some((what, why)) = damaged.first() {
        return Err(Error::damaged(
            what.clone(),
            format!("{why}; prune could delete data only it refers to, so it stops: run `bakfs repair index` for a damaged index, `bakfs forget ID` for a damaged snapshot"),
        ));
    }
    walked?;
    if let Some(b) = unindexed {
        return Err(Error::damaged(
            format!("blob {b}"),
            "a snapshot needs it but no index lists it; run `bakfs check`; prune stopped",
        ));
    }
    let sizes = repo.indexed_packs();
    // Per pack: bytes used, bytes unused.
    let mut per_pack: HashMap<PackId, (u64, u64)> = HashMap::new();
    repo.each_blob_marked(&marks, |loc, used| {
        let e = per_pack.entry(loc.pack).or_default();
        if used {
            e.0 += loc.entry.length as u64;
        } else {
            e.1 += loc.entry.length as u64;
        }
    })?;
    let mut rep = PruneReport {
        packs_before: sizes.len(),
        ..Default::default()
    };
    let mut delete: Vec<PackId> = vec![];
    let mut repack: HashSet<PackId> = HashSet::new();
    let mut keep: HashSet<PackId> = HashSet::new();
    for (pid, size) in &sizes {
        let (u, unused) = per_pack.remove(pid).unwrap_or_default();
        if u == 0 {
            delete.push(*pid);
            rep.bytes_freed += size;
        } else if unused as f64 > REPACK_UNUSED_FRACTION * (u + unused) as f64 {
            repack.insert(*pid);
            rep.bytes_freed += unused;
        } else {
            keep.insert(*pid);
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
    // The blobs of the packs leaving the index, for the record of them.
    let leaving: HashSet<PackId> = delete.iter().chain(repack.iter()).copied().collect();
    let mut condemned: HashMap<PackId, Vec<crate::format::PackEntry>> = HashMap::new();
    repo.each_blob_marked(&marks, |loc, _| {
        if leaving.contains(&loc.pack) {
            condemned.entry(loc.pack).or_default().push(loc.entry);
        }
    })?;
    // Repack: copy used blobs out of mostly-unused packs.
    let mut new_packs = Vec::new();
    if !repack.is_empty() {
        let mut entries: Vec<crate::repo::BlobLocation> = Vec::new();
        repo.each_blob_marked(&marks, |loc, used| {
            if used && repack.contains(&loc.pack) {
                entries.push(loc);
            }
        })?;
        repo.drop_packs_from_index(&repack);
        repo.hold_index();
        for loc in &entries {
            let data = repo.read_blob_at(loc)?;
            repo.save_blob(loc.entry.kind, &data)?;
        }
        new_packs = repo.flush_packs_only()?;
    }
    // New index files for everything kept (65,536 blobs each, streamed from the tables), then
    // drop the old index files, then the packs.
    let old_indexes = read_indexes;
    let mut written: HashSet<String> = HashSet::new();
    let mut batch: HashMap<PackId, Vec<crate::format::PackEntry>> = HashMap::new();
    let mut in_batch = 0usize;
    let new_sizes: HashMap<PackId, u64> = new_packs.iter().map(|p| (p.id, p.size)).collect();
    let mut write = |batch: &mut HashMap<PackId, Vec<crate::format::PackEntry>>| -> Result<()> {
        let packs = batch
            .drain()
            .map(|(id, blobs)| IndexPack {
                id,
                size: sizes.get(&id).or(new_sizes.get(&id)).copied().unwrap_or(0),
                blobs,
            })
            .collect();
        written.insert(repo.write_index(&IndexFile { packs })?.to_hex());
        Ok(())
    };
    let mut failed = None;
    repo.each_blob_marked(&marks, |loc, _| {
        if failed.is_some() || !keep.contains(&loc.pack) {
            return;
        }
        batch.entry(loc.pack).or_default().push(loc.entry);
        in_batch += 1;
        if in_batch == file_blobs {
            in_batch = 0;
            failed = write(&mut batch).err();
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    for p in new_packs {
        for e in p.blobs {
            batch.entry(p.id).or_default().push(e);
            in_batch += 1;
            if in_batch == file_blobs {
                in_batch = 0;
                write(&mut batch)?;
            }
        }
    }
    if !batch.is_empty() {
        write(&mut batch)?;
    }
    for n in old_indexes {
        if !written.contains(&n) {
            lock.check()?;
            repo.backend()
                .remove(FileKind::Index, &n)
                .map_err(|e| Error::io(format!("index {n}"), e))?;
        }
    }
    // The packs leave the index here. They are deleted once no process that may have read the
    // index before runs (condemned.rs).
    let packs = condemned
        .into_iter()
        .map(|(id, blobs)| IndexPack {
            id,
            size: sizes.get(&id).copied().unwrap_or(0),
            blobs,
        })
        .collect();
    condemned::record(repo, lock, marked_from, packs, unreferenced)?;
    let done = condemned::finish(repo, lock)?;
    rep.packs_deferred = done.deferred;
    rep.packs_restored = earlier.restored + done.restored;
    repo.load_index()?;
    repo.sweep_remote_cache(None);
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
        let lock = repo.lock_prune("test").unwrap();
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
    fn prune_writes_its_index_in_files_of_a_bounded_size_and_loses_nothing() {
        let files: Vec<(String, Vec<u8>)> = (0..40)
            .map(|i| (format!("f{i}"), noise(2_000 + i * 10, i as u64)))
            .collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let (_d, src) = source(&refs);
        let (mem, repo) = mem_repo();
        let first = backup_dir(&repo, &src, None);
        for (n, _) in files.iter().take(10) {
            std::fs::remove_file(src.join(n)).unwrap();
        }
        let second = backup_dir(&repo, &src, Some((first.id, first.snapshot.clone())));
        repo.remove_snapshot(&first.id).unwrap();
        let lock = repo.lock_prune("test").unwrap();
        let rep = prune_in(&repo, &lock, PruneMode::Apply, 7).unwrap();
        assert!(rep.bytes_freed > 0, "{rep:?}");
        // 30 files and a few trees, 7 blobs per index file.
        assert!(mem.list(FileKind::Index).unwrap().len() >= 5);
        drop(lock);
        repo.load_index().unwrap();
        let check = crate::check::check(&repo, Some(1.0)).unwrap();
        assert!(check.ok() && check.notes.is_empty(), "{check:?}");
        for (n, d) in files.iter().skip(10) {
            assert_eq!(&file_in(&repo, &second.snapshot, &src.join(n)), d);
        }
    }

    #[test]
    fn prune_refuses_another_repositorys_lock() {
        let (_, repo) = mem_repo();
        let (_, other) = mem_repo();
        let lock = other.lock_prune("test").unwrap();
        let e = prune(&repo, &lock, PruneMode::DryRun).unwrap_err();
        assert!(e.to_string().contains("another repository"), "{e}");
        // While a prune lock is held, backups go on; another prune does not.
        assert!(other.lock_shared("backup").is_ok());
        let e = other.lock_prune("prune").err().unwrap();
        assert!(matches!(e, Error::Locked(_)), "{e}");
        drop(lock);
        assert!(other.lock_prune("prune").is_ok());
    }
}
