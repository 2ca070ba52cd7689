//! `check`: verify structure, and with `read_data` every byte.

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::error::Result;
use crate::format::id::{BlobId, PackId};
use crate::format::{self, NodeKind};
use crate::repo::backend::FileKind;
use crate::repo::walk::{Revisit, TreeWalk};
use crate::repo::Repository;

/// What `check` found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Packs whose bytes were read.
    pub packs_read: usize,
    /// Problems that mean data is damaged or missing.
    pub errors: Vec<String>,
    /// Harmless findings (unreferenced packs, left-over temporary files).
    pub notes: Vec<String>,
    /// Damaged packs with what is wrong.
    pub damaged_packs: BTreeMap<String, String>,
    /// Files affected by damaged or missing data: "snapshot-id:path".
    pub affected: Vec<String>,
}

impl CheckReport {
    /// Whether nothing is damaged.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.damaged_packs.is_empty()
    }
}

/// Checks the repository. `read_fraction` in (0, 1] reads that share of packs (chosen at random).
///
/// # Errors
/// Only I/O errors that stop the check itself (listing directories).
pub fn check(repo: &Repository, read_fraction: Option<f64>) -> Result<CheckReport> {
    let mut rep = CheckReport::default();
    for p in repo.verify_index()? {
        rep.errors.push(format!(
            "{p} (built again from the index files; run check again)"
        ));
    }
    let backend = repo.backend();
    let indexed = repo.indexed_packs();
    rep.packs = indexed.len();
    let on_disk: HashSet<String> = backend
        .list(FileKind::Pack)
        .map_err(|e| crate::Error::io("data/", e))?
        .into_iter()
        .collect();
    // Packs whose every blob is suspect (missing, truncated, unreadable), and blobs that failed
    // to open in a pack that was read.
    let mut bad_packs: HashMap<PackId, String> = HashMap::new();
    let mut bad_blobs: HashMap<BlobId, (PackId, String)> = HashMap::new();
    // A medium's copy holds only the packs its snapshots need, under the primary's index:
    // an absent pack is damage only if a snapshot here needs it.
    let partial = repo.is_medium();
    let mut absent: HashSet<PackId> = HashSet::new();
    for (id, size) in &indexed {
        let name = id.to_hex();
        if !on_disk.contains(&name) {
            if partial {
                absent.insert(*id);
            } else {
                bad_packs.insert(*id, "missing".into());
            }
        } else if let Ok(s) = backend.size(FileKind::Pack, &name) {
            if s != *size {
                bad_packs.insert(
                    *id,
                    format!("size {s}, index says {size} (truncated or extended)"),
                );
            }
        }
    }
    let pending = repo.pending_packs();
    for name in &on_disk {
        let id = PackId::from_hex(name).ok();
        if id.is_some_and(|id| indexed.contains_key(&id)) {
            continue;
        }
        rep.notes
            .push(if id.is_some_and(|id| pending.contains(&id)) {
                format!(
                "pack {name} waits: a prune took it out of the index while other processes ran; \
                 a later prune deletes it, or indexes it again if a newer snapshot needs it"
            )
            } else {
                format!(
                "pack {name} is not in the index (left by an interrupted backup; prune removes it)"
            )
            });
    }
    if let Some(frac) = read_fraction {
        let mut ids: Vec<PackId> = indexed
            .keys()
            .copied()
            .filter(|id| !bad_packs.contains_key(id) && !absent.contains(id))
            .collect();
        ids.sort();
        if frac < 1.0 {
            use rand::seq::SliceRandom;
            ids.shuffle(&mut rand::thread_rng());
            let n = ((ids.len() as f64 * frac).ceil() as usize).min(ids.len());
            ids.truncate(n);
        }
        rep.packs_read = ids.len();
        let results: Vec<(PackId, PackRead)> = ids
            .par_iter()
            .map(|id| (*id, read_pack(repo, id)))
            .collect();
        // A pack whose bytes changed is damaged, but only the blobs that no longer open are
        // lost: its other blobs still restore, so only files that need a bad blob are named.
        let mut by_pack: Option<HashMap<PackId, Vec<format::PackEntry>>> = None;
        for (id, r) in results {
            match r {
                PackRead::Good => {}
                PackRead::Unreadable(msg) => {
                    bad_packs.insert(id, msg);
                }
                PackRead::Changed(msg, mut bytes) => {
                    if by_pack.is_none() {
                        by_pack = Some(entries_by_pack(repo)?);
                    }
                    let entries = by_pack
                        .as_ref()
                        .and_then(|m| m.get(&id))
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let lost = open_blobs(repo, entries, &mut bytes);
                    rep.damaged_packs.insert(
                        id.to_hex(),
                        format!("{msg}; {} of its {} blobs lost", lost.len(), entries.len()),
                    );
                    bad_blobs.extend(lost.into_iter().map(|(b, m)| (b, (id, m))));
                }
            }
        }
    }
    // Walk every snapshot's trees.
    let snaps = repo.snapshots()?;
    check_names(repo, &mut rep);
    for (what, why) in repo.damaged() {
        rep.errors.push(format!("{what}: {why}"));
    }
    rep.snapshots = snaps.len();
    // Absent packs some snapshot needs (the walk below is sequential).
    let needed_absent: std::cell::RefCell<HashSet<PackId>> = Default::default();
    let bad_blob = |id: &BlobId| -> Option<String> {
        match repo.locate_for_read(id) {
            None => Some("not in the index".into()),
            Some(l) if absent.contains(&l.pack) => {
                needed_absent.borrow_mut().insert(l.pack);
                Some(format!("in pack {}, which is not on this medium", l.pack))
            }
            Some(l) => bad_packs
                .get(&l.pack)
                .map(|m| format!("in damaged pack {}: {m}", l.pack))
                .or_else(|| {
                    bad_blobs
                        .get(id)
                        .map(|(p, m)| format!("in damaged pack {p}: {m}"))
                }),
        }
    };
    for (sid, s) in &snaps {
        // Every path of every snapshot is visited (a damaged blob is reported where it is
        // used); a file's blobs are reported once per tree unless packs are damaged.
        let mut walk = TreeWalk::new(Revisit::EveryPath);
        walk.push(s.tree, String::new());
        while let Some(step) = walk.next() {
            let path = &step.path;
            if let Some(m) = bad_blob(&step.id) {
                rep.errors.push(format!(
                    "snapshot {}: tree {} of {path}/: {m}",
                    sid.short(),
                    step.id.short()
                ));
                rep.affected.push(format!("{}:{}/", sid.short(), path));
                continue;
            }
            let tree = match repo.read_tree(&step.id) {
                Ok(t) => t,
                Err(e) => {
                    rep.errors
                        .push(format!("snapshot {}: {path}/: {e}", sid.short()));
                    rep.affected.push(format!("{}:{}/", sid.short(), path));
                    continue;
                }
            };
            walk.descend(&tree, path);
            for n in &tree.nodes {
                if n.kind == NodeKind::Dir {
                    continue;
                }
                let p = format!("{path}/{}", String::from_utf8_lossy(&n.name));
                if let Some(m) = n.content.iter().find_map(bad_blob) {
                    if step.first || !bad_packs.is_empty() || !bad_blobs.is_empty() {
                        rep.errors
                            .push(format!("snapshot {}: {p}: {m}", sid.short()));
                    }
                    rep.affected.push(format!("{}:{p}", sid.short()));
                }
            }
        }
    }
    let needed_absent = needed_absent.into_inner();
    for id in &needed_absent {
        bad_packs.insert(*id, "missing".into());
    }
    if absent.len() > needed_absent.len() {
        rep.notes.push(format!(
            "{} packs listed in the index are not on this medium (no snapshot on it needs them)",
            absent.len() - needed_absent.len()
        ));
    }
    for (id, m) in bad_packs {
        rep.damaged_packs.insert(id.to_hex(), m);
    }
    rep.errors.sort();
    rep.errors.dedup();
    Ok(rep)
}

/// Index files and manifests MUST be named by the blake3 of their bytes (docs/design.md §2).
/// Opening them compares, but does not refuse (their content is authenticated anyway), so a
/// file copied or renamed under another name, which readers take for one more index file or
/// snapshot, is reported here.
fn check_names(repo: &Repository, rep: &mut CheckReport) {
    for (what, hash) in repo.misnamed() {
        rep.errors.push(format!(
            "{what}: not named by the blake3 of its bytes ({hash}): a copy or a renamed file, \
             or its bytes changed"
        ));
    }
}

/// What reading a whole pack found.
enum PackRead {
    /// Its bytes match its name.
    Good,
    /// It cannot be read at all (I/O error).
    Unreadable(String),
    /// Its bytes do not match its name (why, and the bytes): some of its blobs may be intact.
    Changed(String, Vec<u8>),
}

/// Reads a pack and compares its blake3 with its name; a pack that matches is also opened blob
/// by blob from its header (which must agree with its name too).
fn read_pack(repo: &Repository, id: &PackId) -> PackRead {
    let mut bytes = match repo.backend().read(FileKind::Pack, &id.to_hex()) {
        Ok(b) => b,
        Err(e) => return PackRead::Unreadable(e.to_string()),
    };
    if PackId::hash_of(&bytes) != *id {
        return PackRead::Changed(
            "content does not match its name (bytes changed)".into(),
            bytes,
        );
    }
    let entries = match format::read_pack_header(repo.keys(), id, &bytes) {
        Ok(e) => e,
        Err(e) => return PackRead::Unreadable(e.to_string()),
    };
    match open_blobs(repo, &entries, &mut bytes).into_iter().next() {
        None => PackRead::Good,
        Some((_, m)) => PackRead::Unreadable(m),
    }
}

/// Opens each of `entries` in the pack's `bytes` (decrypted in place: the bytes are not needed
/// afterwards); returns the blobs that fail, with why.
fn open_blobs(
    repo: &Repository,
    entries: &[format::PackEntry],
    bytes: &mut [u8],
) -> Vec<(BlobId, String)> {
    let mut lost = Vec::new();
    for e in entries {
        let range = e.offset as usize..(e.offset as usize).saturating_add(e.length as usize);
        let r = match bytes.get_mut(range) {
            Some(sealed) => format::open_blob_into(repo.keys(), e, sealed, |n| Ok(vec![0; n]))
                .map(drop)
                .map_err(|err| err.to_string()),
            None => Err(format!("blob {} lies outside the pack", e.id)),
        };
        if let Err(m) = r {
            lost.push((e.id, m));
        }
    }
    lost
}

/// The index's entries grouped by pack (what restore would read).
fn entries_by_pack(repo: &Repository) -> crate::Result<HashMap<PackId, Vec<format::PackEntry>>> {
    let mut m: HashMap<PackId, Vec<format::PackEntry>> = HashMap::new();
    repo.each_blob(|loc| m.entry(loc.pack).or_default().push(loc.entry))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::backend::Backend;
    use crate::testing::{backup_dir, mem_repo, noise, source};

    #[test]
    fn check_finds_missing_and_damaged_packs_and_names_the_files() {
        let (_d, src) = source(&[("a/x", &noise(2 << 20, 4)), ("b/y", b"y")]);
        let (mem, repo) = mem_repo();
        let r = backup_dir(&repo, &src, None);
        let rep = check(&repo, Some(1.0)).unwrap();
        assert!(rep.ok(), "{:?}", rep.errors);
        assert_eq!((rep.snapshots, rep.packs_read), (1, rep.packs));

        // The data pack holding a/x: one flipped byte is found only by reading data.
        let x =
            crate::restore::find_node(&repo, &r.snapshot.tree, &src.join("a/x").to_string_lossy())
                .unwrap()
                .unwrap();
        let loc = repo.locate(&x.content[0]).unwrap();
        let pack = loc.pack.to_hex();
        let y =
            crate::restore::find_node(&repo, &r.snapshot.tree, &src.join("b/y").to_string_lossy())
                .unwrap()
                .unwrap();
        assert_eq!(
            repo.locate(&y.content[0]).unwrap().pack,
            loc.pack,
            "y shares x's pack"
        );
        let at = loc.entry.offset as usize + 100;
        mem.tamper(FileKind::Pack, &pack, |b| b[at] ^= 1).unwrap();
        assert!(
            check(&repo, None).unwrap().ok(),
            "structure alone cannot see it"
        );
        let rep = check(&repo, Some(1.0)).unwrap();
        assert!(!rep.ok());
        assert!(
            rep.damaged_packs.contains_key(&pack),
            "{:?}",
            rep.damaged_packs
        );
        let affected = format!("{}:{}", r.id.short(), src.join("a/x").display());
        assert!(rep.affected.contains(&affected), "{:?}", rep.affected);
        // Only the file whose blob no longer opens: y, in the same pack, restores.
        assert_eq!(
            rep.affected,
            std::slice::from_ref(&affected),
            "{:?}",
            rep.errors
        );
        assert!(
            rep.damaged_packs[&pack].contains("1 of its"),
            "{:?}",
            rep.damaged_packs
        );

        // A pack gone is found without reading data.
        mem.remove(FileKind::Pack, &pack).unwrap();
        let rep = check(&repo, None).unwrap();
        assert_eq!(
            rep.damaged_packs.get(&pack).map(String::as_str),
            Some("missing")
        );
        assert!(rep.affected.contains(&affected));
    }

    #[test]
    fn a_manifest_or_index_file_under_another_name_is_named() {
        let (_d, src) = source(&[("x", b"x")]);
        let (mem, repo) = mem_repo();
        let r = backup_dir(&repo, &src, None);
        let manifest = mem.read(FileKind::Snapshot, &r.id.to_hex()).unwrap();
        let other = "ab".repeat(32);
        mem.write(FileKind::Snapshot, &other, &manifest).unwrap();
        let index = mem.list(FileKind::Index).unwrap().remove(0);
        let bytes = mem.read(FileKind::Index, &index).unwrap();
        mem.write(FileKind::Index, &"cd".repeat(32), &bytes)
            .unwrap();
        repo.load_index().unwrap();
        let rep = check(&repo, None).unwrap();
        assert!(!rep.ok());
        for name in [
            format!("snapshot {other}"),
            format!("index {}", "cd".repeat(32)),
        ] {
            assert!(
                rep.errors
                    .iter()
                    .any(|e| e.starts_with(&name) && e.contains("not named by the blake3")),
                "{name}: {:?}",
                rep.errors
            );
        }
        assert_eq!(rep.errors.len(), 2, "{:?}", rep.errors);
    }
}
