//! Packs a prune took out of the index, and their deletion once no process that could still
//! use them runs (design.md §4.3).
//!
//! Why it is safe while backups run: a backup takes its shared lock before it reads the index,
//! and dedups only against blobs the index it read lists. When the packs leave the index, the
//! prune lists the live locks and records them with the packs. A backup that read the index
//! before holds one of those locks, or has already ended and left a snapshot; one that reads it
//! after cannot see the packs' blobs and stores its own copies. So once every recorded lock is
//! gone (released, or stale and removed), the only references to the packs' blobs are in
//! snapshots made since the prune marked: those are walked, and a pack one of them needs is
//! indexed again instead of deleted. Packs no index listed (a backup's packs not yet indexed,
//! or a crash's leftovers) are recorded the same way and deleted only if still unindexed.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId};
use crate::format::{self, Condemned, IndexFile, IndexPack, Tree};
use crate::repo::backend::FileKind;
use crate::repo::lock::{self, PruneLock};
use crate::repo::walk::{Revisit, TreeWalk};
use crate::repo::{BlobLocation, Repository};

/// What [`finish`] did.
#[derive(Debug, Default)]
pub(super) struct Finished {
    /// Packs left for a later prune: a process that may use them still runs.
    pub deferred: usize,
    /// Packs indexed again because a newer snapshot needs them.
    pub restored: usize,
}

/// Records packs just taken out of the index (`packs`) and packs no index lists
/// (`unindexed`), with the other processes' live locks and the snapshots marked from.
///
/// # Errors
/// The lock lost; I/O errors.
pub(super) fn record(
    repo: &Repository,
    held: &PruneLock,
    snapshots: Vec<String>,
    packs: Vec<IndexPack>,
    unindexed: Vec<String>,
) -> Result<()> {
    if packs.is_empty() && unindexed.is_empty() {
        return Ok(());
    }
    held.check()?;
    let c = Condemned {
        time_ns: crate::timefmt::now_ns(),
        locks: lock::live_locks(repo.backend().as_ref(), held.name())?,
        snapshots,
        packs,
        unindexed,
    };
    let bytes = format::seal_condemned(repo.keys(), &c);
    let name = blake3::hash(&bytes).to_hex().to_string();
    repo.backend()
        .write(FileKind::Condemned, &name, &bytes)
        .map_err(|e| Error::io(format!("condemned {name}"), e))
}

/// Deletes the packs of every record whose processes have all ended; says how many wait.
///
/// # Errors
/// The lock lost; a snapshot made since that cannot be read (nothing of that record is
/// deleted); I/O errors.
pub(super) fn finish(repo: &Repository, held: &PruneLock) -> Result<Finished> {
    let backend = repo.backend();
    let names = backend
        .list(FileKind::Condemned)
        .map_err(|e| Error::io("condemned/", e))?;
    let mut out = Finished::default();
    if names.is_empty() {
        return Ok(out);
    }
    let live: HashSet<String> = lock::live_locks(backend.as_ref(), held.name())?
        .into_iter()
        .collect();
    for name in names {
        let raw = backend
            .read(FileKind::Condemned, &name)
            .map_err(|e| Error::io(format!("condemned {name}"), e))?;
        let c = match format::open_condemned(repo.keys(), &name, &raw) {
            Ok(c) => c,
            Err(e @ Error::Damaged { .. }) => {
                tracing::warn!("{e}: its packs are kept");
                continue;
            }
            Err(e) => return Err(e),
        };
        let waiting = c.locks.iter().filter(|l| live.contains(*l)).count();
        if waiting > 0 {
            let packs = c.packs.len() + c.unindexed.len();
            tracing::info!(
                "{packs} packs wait for {waiting} processes that were running when they left \
                 the index; a later prune deletes them"
            );
            out.deferred += packs;
            continue;
        }
        out.restored += finish_one(repo, held, &c)?;
        held.check()?;
        backend
            .remove(FileKind::Condemned, &name)
            .map_err(|e| Error::io(format!("condemned {name}"), e))?;
    }
    // The index files written for restored packs, in this process's index too.
    repo.load_index()?;
    Ok(out)
}

/// Deletes the packs of one record, but for those a snapshot made since needs, which are
/// indexed again. Returns how many were.
fn finish_one(repo: &Repository, held: &PruneLock, c: &Condemned) -> Result<usize> {
    // The snapshots first, then the index: a backup writes its index files before its
    // manifest, so every snapshot listed finds its blobs in the index read after (and what
    // backups indexed since keeps their packs).
    let snapshots = repo.snapshots()?;
    repo.load_index()?;
    let indexed = repo.indexed_packs();
    let mut by_blob: HashMap<BlobId, BlobLocation> = HashMap::new();
    for p in &c.packs {
        for e in &p.blobs {
            by_blob.insert(
                e.id,
                BlobLocation {
                    pack: p.id,
                    entry: *e,
                },
            );
        }
    }
    let needed = needed_packs(repo, c, &by_blob, snapshots)?;
    let restore: Vec<IndexPack> = c
        .packs
        .iter()
        .filter(|p| needed.contains(&p.id))
        .cloned()
        .collect();
    let restored = restore.len();
    if !restore.is_empty() {
        tracing::warn!(
            "{restored} packs a prune took out of the index are needed by a newer snapshot: indexed again"
        );
        let id = repo.write_index(&IndexFile { packs: restore })?;
        tracing::debug!("index {id} lists them");
    }
    let unindexed = c
        .unindexed
        .iter()
        .filter(|n| PackId::from_hex(n).is_ok_and(|p| !indexed.contains_key(&p)));
    let gone = c
        .packs
        .iter()
        .filter(|p| !needed.contains(&p.id) && !indexed.contains_key(&p.id))
        .map(|p| p.id.to_hex());
    for n in gone.chain(unindexed.cloned()) {
        held.check()?;
        repo.backend()
            .remove(FileKind::Pack, &n)
            .map_err(|e| Error::io(format!("pack {n}"), e))?;
    }
    Ok(restored)
}

/// The condemned packs that snapshots made since the record need: their blobs are found
/// nowhere in the index but in those packs.
fn needed_packs(
    repo: &Repository,
    c: &Condemned,
    by_blob: &HashMap<BlobId, BlobLocation>,
    snapshots: Vec<(crate::format::id::SnapshotId, crate::format::Snapshot)>,
) -> Result<HashSet<PackId>> {
    let marked: HashSet<&str> = c.snapshots.iter().map(String::as_str).collect();
    let mut walk = TreeWalk::new(Revisit::Once);
    for (id, s) in snapshots {
        if !marked.contains(id.to_hex().as_str()) {
            walk.push(s.tree, String::new());
        }
    }
    let mut needed = HashSet::new();
    let mut find = |id: &BlobId| -> Result<BlobLocation> {
        // The index proper: the pending packs are what is being decided.
        if let Some(loc) = repo.locate(id) {
            return Ok(loc);
        }
        let loc = by_blob.get(id).ok_or_else(|| {
            Error::damaged(
                format!("blob {id}"),
                "a snapshot made beside an earlier prune needs it, but neither the index nor that prune's record lists it; prune stopped",
            )
        })?;
        needed.insert(loc.pack);
        Ok(*loc)
    };
    while let Some(step) = walk.next() {
        let loc = find(&step.id)?;
        let tree = Tree::decode(&step.id, &repo.read_blob_at(&loc)?)?;
        for n in &tree.nodes {
            for b in &n.content {
                find(b)?;
            }
        }
        walk.descend(&tree, &step.path);
    }
    if let Some((what, why)) = repo.damaged().first() {
        return Err(Error::damaged(
            what.clone(),
            format!("{why}; prune stopped"),
        ));
    }
    Ok(needed)
}

#[cfg(test)]
mod tests;
