//! The index: which pack holds which blob (design.md §3.7), searched in local tables rather than
//! loaded (§3.7.1). `table.rs` is one table, `store.rs` the set of them kept in step with
//! `index/`; here the repository's lookups, which skip packs it must not use (a medium's absent
//! packs, the packs a prune is repacking).

mod filter;
mod pending;
mod store;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use rayon::prelude::*;

use super::{BlobLocation, Repository};
use crate::error::{Error, Result};
use crate::format::id::{BlobId, IndexId, PackId};
use crate::format::{self, IndexFile, IndexPack};
use crate::repo::backend::FileKind;
use crate::repo::lock::ExclusiveLock;
use store::{FileNote, ReadFile, Store};

/// Marks on the records of the index tables (see [`Repository::index_marks`]).
pub struct Marks {
    bits: Vec<Vec<u64>>,
}

/// The repository's view of its index tables.
#[derive(Default)]
pub(super) struct IndexState {
    store: Option<Store>,
    /// Tables of the packs prunes took out of the index and have not deleted yet
    /// (`pending.rs`): read from, never deduplicated against.
    pending: Option<Store>,
    /// Packs whose records are passed over.
    excluded: HashSet<PackId>,
    /// Every pack the tables list, with its size.
    packs: HashMap<PackId, u64>,
}

/// Where index tables are kept: `$BAKFS_CACHE_DIR`, else `$XDG_CACHE_HOME/bakfs`, else
/// `~/.cache/bakfs` (design.md §3.7.1).
pub fn cache_root() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("BAKFS_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("bakfs")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/bakfs")))
}

impl Repository {
    /// This host's cache directory for this repository at this location, under [`cache_root`]:
    /// `<root>/<repository id>/<16 hex digits of the location's hash>`.
    pub(crate) fn cache_dir(&self) -> Option<PathBuf> {
        // The same directory however it was named (relative, through a link).
        let at = self.backend.location();
        let at = std::fs::canonicalize(&at).map_or(at, |p| p.display().to_string());
        let place = blake3::hash(at.as_bytes());
        Some(
            cache_root()?
                .join(self.config.id.to_hex())
                .join(&place.to_hex()[..16]),
        )
    }
}

impl IndexState {
    /// The first usable record of `id`, newest table first.
    fn find(&self, id: &BlobId) -> Option<BlobLocation> {
        self.find_slot(id).map(|(l, _)| l)
    }

    /// As [`IndexState::find`], with the table's index and the record's position in it.
    fn find_slot(&self, id: &BlobId) -> Option<(BlobLocation, (usize, u64))> {
        let store = self.store.as_ref()?;
        for (i, (t, meta)) in store.tables.iter().enumerate() {
            let packs = t.packs();
            match t.find(id, |r| !self.excluded.contains(&packs[r.pack as usize].0)) {
                Ok(Some((r, at))) => {
                    let loc = BlobLocation {
                        pack: packs[r.pack as usize].0,
                        entry: r.entry,
                    };
                    return Some((loc, (i, at)));
                }
                Ok(None) => {}
                // Said once per table, not once per lookup (a backup looks up every blob).
                Err(d) if t.first_damage() => tracing::error!(
                    "index table {}/{} is damaged ({}): run `bakfs check`, which builds it again",
                    store.dir().display(),
                    meta.file,
                    d.0
                ),
                Err(_) => {}
            }
        }
        None
    }
}

impl Repository {
    fn index_state(&self) -> std::sync::RwLockReadGuard<'_, IndexState> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn index_state_mut(&self) -> std::sync::RwLockWriteGuard<'_, IndexState> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the store of index tables: under [`cache_root`] for a repository on disk, keyed
    /// by the repository id and its location; a temporary one for a repository in memory or
    /// where the cache cannot be made.
    fn open_store(&self) -> Result<Store> {
        if self.backend.persistent() {
            if let Some(dir) = self.cache_dir() {
                let dir = dir.join("index-v1");
                match Store::open(dir.clone(), false) {
                    Ok(s) => return Ok(s),
                    Err(e) => tracing::warn!(
                        "{}: {e}; the index tables go to a temporary directory",
                        dir.display()
                    ),
                }
            }
        }
        Store::temporary().map_err(|e| Error::io("a temporary index cache", e))
    }

    /// Reads index files `names` (in parallel), noting damaged and misnamed ones.
    fn read_index_files(&self, names: &[String]) -> Result<Vec<ReadFile>> {
        names
            .par_iter()
            .map(|n| {
                // A file gone since the listing (NotFound) makes the caller list again.
                let raw = self
                    .backend
                    .read(FileKind::Index, n)
                    .map_err(|e| Error::io(format!("index {n}"), e))?;
                let hash = IndexId::hash_of(&raw).to_hex();
                let note = FileNote {
                    damaged: None,
                    misnamed: (hash != *n).then_some(hash),
                };
                match format::open_index(&self.keys, n, &raw) {
                    Ok(f) => Ok((n.clone(), Ok(f), note)),
                    Err(e @ Error::Damaged { .. }) => {
                        tracing::warn!("{e}: skipped");
                        Ok((n.clone(), Err(e.to_string()), note))
                    }
                    Err(e) => Err(e),
                }
            })
            .collect()
    }

    /// Brings the index tables in step with `index/` and notes what the index files read were
    /// found to be (damaged, misnamed). A damaged index file is skipped with a warning and
    /// listed by [`Repository::damaged`] (the blobs only it lists become unreachable until
    /// `repair index`; prune refuses to run meanwhile).
    ///
    /// # Errors
    /// I/O errors listing or reading.
    pub fn load_index(&self) -> Result<()> {
        self.sync_index(false)
    }

    /// As [`Repository::load_index`], but every index file is read again and every table built
    /// again (prune and `repair index` start from the files themselves, not from the cache).
    ///
    /// # Errors
    /// As [`Repository::load_index`].
    pub fn reload_index_from_files(&self) -> Result<()> {
        self.sync_index(true)
    }

    fn sync_index(&self, afresh: bool) -> Result<()> {
        let mut st = self.index_state_mut();
        if st.store.is_none() {
            st.store = Some(self.open_store()?);
        }
        let Some(store) = st.store.as_mut() else {
            return Ok(());
        };
        if afresh {
            store.clear()?;
        }
        // Without a lock a prune may replace index files between the listing and the reads: it
        // writes the new file before removing the old ones, so listing again finds a full set.
        let mut attempt = 1;
        loop {
            let names = self
                .backend
                .list(FileKind::Index)
                .map_err(|e| Error::io("index/", e))?;
            match store.sync(&names, &|group| self.read_index_files(group)) {
                Err(Error::Io { err: source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempt < 5 =>
                {
                    attempt += 1;
                    tracing::debug!("index files changed while being read; listing again");
                }
                r => break r?,
            }
        }
        self.index_noted(&mut st)?;
        self.sync_pending(&mut st)
    }

    /// After the tables changed: the packs they list, the packs to pass over, and the index
    /// files noted damaged or misnamed.
    fn index_noted(&self, st: &mut IndexState) -> Result<()> {
        let Some(store) = st.store.as_ref() else {
            return Ok(());
        };
        let mut packs = HashMap::new();
        let mut damaged = Vec::new();
        let mut misnamed = Vec::new();
        for (t, meta) in &store.tables {
            packs.extend(t.packs().iter().copied());
            for (n, note) in &meta.covers {
                if let Some(d) = &note.damaged {
                    damaged.push((format!("index {n}"), d.clone()));
                }
                if let Some(h) = &note.misnamed {
                    misnamed.push((format!("index {n}"), h.clone()));
                }
            }
        }
        // A medium's copy lists packs it does not hold: use another copy of their blobs.
        let mut excluded = HashSet::new();
        if self.medium {
            let present: HashSet<String> = self
                .backend
                .list(FileKind::Pack)
                .map_err(|e| Error::io("data/", e))?
                .into_iter()
                .collect();
            excluded.extend(packs.keys().filter(|p| !present.contains(&p.to_hex())));
        }
        st.packs = packs;
        st.excluded = excluded;
        self.set_misnamed("index ", misnamed);
        let mut d = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
        d.retain(|(n, _)| !n.starts_with("index "));
        d.extend(damaged);
        Ok(())
    }

    /// Records an index file this process just wrote, so its blobs are found from now on.
    pub(super) fn index_added(&self, name: String, file: IndexFile) -> Result<()> {
        let mut st = self.index_state_mut();
        if st.store.is_none() {
            st.store = Some(self.open_store()?);
        }
        if let Some(store) = st.store.as_mut() {
            store.add(name, file)?;
        }
        // Packs passed over stay so until the index is loaded again.
        let dropped = std::mem::take(&mut st.excluded);
        self.index_noted(&mut st)?;
        st.excluded.extend(dropped);
        Ok(())
    }

    /// Rebuilds the index from the headers of the packs present: writes one new index file,
    /// then removes the others. Returns the number of packs indexed and the packs whose header
    /// is unreadable (left alone; `check --read-data` names them).
    ///
    /// # Errors
    /// I/O errors.
    pub fn rebuild_index(&self, lock: &ExclusiveLock) -> Result<(usize, Vec<(PackId, String)>)> {
        self.check_exclusive(lock)?;
        let names = self
            .backend
            .list(FileKind::Pack)
            .map_err(|e| Error::io("data/", e))?;
        let results: Vec<(PackId, Result<IndexPack>)> = names
            .par_iter()
            .filter_map(|n| PackId::from_hex(n).ok())
            .map(|id| {
                let r = self
                    .backend
                    .read(FileKind::Pack, &id.to_hex())
                    .map_err(|e| Error::io(format!("pack {id}"), e))
                    .and_then(|bytes| {
                        let blobs = format::read_pack_header(&self.keys, &id, &bytes)?;
                        Ok(IndexPack {
                            id,
                            size: bytes.len() as u64,
                            blobs,
                        })
                    });
                (id, r)
            })
            .collect();
        let mut packs = vec![];
        let mut bad = vec![];
        for (id, r) in results {
            match r {
                Ok(p) => packs.push(p),
                Err(e) => bad.push((id, e.to_string())),
            }
        }
        let old = self
            .backend
            .list(FileKind::Index)
            .map_err(|e| Error::io("index/", e))?;
        let n = packs.len();
        let new_id = self.write_index(&IndexFile { packs })?;
        for o in old {
            if o != new_id.to_hex() {
                self.backend
                    .remove(FileKind::Index, &o)
                    .map_err(|e| Error::io(format!("index {o}"), e))?;
            }
        }
        self.load_index()?;
        Ok((n, bad))
    }

    /// Checks the index tables (design.md §3.7.1): each table's bytes against its checksum, then
    /// every record of every index file they cover against them. Tables found wrong are built
    /// again from the index files. Returns what was wrong.
    ///
    /// # Errors
    /// I/O errors reading index files; building the tables again.
    pub fn verify_index(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut misnamed = Vec::new();
        let mut damaged = Vec::new();
        {
            let st = self.index_state();
            let Some(store) = st.store.as_ref() else {
                return Ok(problems);
            };
            let at = |file: &str| format!("index table {}/{file}", store.dir().display());
            for (t, meta) in &store.tables {
                match t.verify() {
                    Ok(Ok(())) => {}
                    Ok(Err(d)) => problems.push(format!("{}: {}", at(&meta.file), d.0)),
                    Err(e) => problems.push(format!("{}: {e}", at(&meta.file))),
                }
            }
            let covered: Vec<String> = store
                .tables
                .iter()
                .flat_map(|(_, m)| m.covers.iter().map(|(n, _)| n.clone()))
                .collect();
            for group in covered.chunks(16) {
                if !problems.is_empty() {
                    break;
                }
                let read = group.iter().filter_map(|n| {
                    // A file a prune removed since is no longer the tables' business.
                    let one = std::slice::from_ref(n);
                    match self.read_index_files(one) {
                        Ok(mut v) => v.pop().map(Ok),
                        Err(Error::Io { err: source, .. })
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            None
                        }
                        Err(e) => Some(Err(e)),
                    }
                });
                for f in read {
                    let (name, file, note) = f?;
                    if let Some(h) = note.misnamed {
                        misnamed.push((format!("index {name}"), h));
                    }
                    let file = match file {
                        Ok(file) => file,
                        Err(why) => {
                            damaged.push((format!("index {name}"), why));
                            continue;
                        }
                    };
                    let missing = file.packs.iter().find_map(|p| {
                        let e = p.blobs.iter().find(|e| !store.holds(&p.id, e))?;
                        Some((p.id, e.id))
                    });
                    if let Some((pack, blob)) = missing {
                        problems.push(format!(
                            "index tables in {}: blob {blob} in pack {pack}, listed by index \
                             {name}, is not in them",
                            store.dir().display()
                        ));
                        break;
                    }
                }
            }
        }
        if !problems.is_empty() {
            self.reload_index_from_files()?;
        } else {
            // What the files are now, read just now, rather than what was noted when the
            // tables were built.
            self.set_misnamed("index ", misnamed);
            let mut d = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
            d.retain(|(n, _)| !n.starts_with("index "));
            d.extend(damaged);
        }
        Ok(problems)
    }

    /// The index files the tables were built from (what the index now loaded covers).
    pub fn index_files_loaded(&self) -> HashSet<String> {
        let st = self.index_state();
        st.store.as_ref().map_or_else(HashSet::new, |s| {
            s.tables
                .iter()
                .flat_map(|(_, m)| m.covers.iter().map(|(n, _)| n.clone()))
                .collect()
        })
    }

    /// Where a blob is, if the index knows it.
    pub fn locate(&self, id: &BlobId) -> Option<BlobLocation> {
        self.index_state().find(id)
    }

    /// Whether the index holds a blob.
    pub fn has_blob(&self, id: &BlobId) -> bool {
        self.locate(id).is_some()
    }

    /// Calls `f` with every blob the index knows, once each, at the location
    /// [`Repository::locate`] gives, in blob id order. Memory stays that of one run per table.
    ///
    /// # Errors
    /// A damaged index table.
    pub fn each_blob(&self, mut f: impl FnMut(BlobLocation)) -> Result<()> {
        self.each_usable(|loc, _| f(loc))
    }

    /// The first usable record of each blob, newest table first (the one `locate` gives), with
    /// its table and position.
    fn each_usable(&self, mut f: impl FnMut(BlobLocation, (usize, u64))) -> Result<()> {
        let st = self.index_state();
        let Some(store) = st.store.as_ref() else {
            return Ok(());
        };
        let mut last: Option<BlobId> = None;
        store.each_record(|pack, entry, slot| {
            if last != Some(entry.id) && !st.excluded.contains(&pack) {
                last = Some(entry.id);
                f(BlobLocation { pack, entry }, slot);
            }
        })
    }

    /// One bit per record of the index tables, none set: what [`Repository::mark_used`] marks
    /// (prune's memory for "in use": a bit per blob, design.md §4.3). Valid until the index is
    /// loaded again.
    pub fn index_marks(&self) -> Marks {
        let st = self.index_state();
        Marks {
            bits: st.store.as_ref().map_or(Vec::new(), |s| {
                s.tables
                    .iter()
                    .map(|(t, _)| vec![0u64; t.len().div_ceil(64) as usize])
                    .collect()
            }),
        }
    }

    /// Marks the record [`Repository::locate`] gives for `id`; false if the index has none.
    pub fn mark_used(&self, marks: &mut Marks, id: &BlobId) -> bool {
        match self.index_state().find_slot(id) {
            Some((_, (t, at))) => {
                if let Some(w) = marks
                    .bits
                    .get_mut(t)
                    .and_then(|b| b.get_mut((at / 64) as usize))
                {
                    *w |= 1 << (at % 64);
                }
                true
            }
            None => false,
        }
    }

    /// As [`Repository::each_blob`], with whether the blob's record is marked in `marks`.
    ///
    /// # Errors
    /// A damaged index table.
    pub fn each_blob_marked(
        &self,
        marks: &Marks,
        mut f: impl FnMut(BlobLocation, bool),
    ) -> Result<()> {
        self.each_usable(|loc, (t, at)| {
            let marked = marks
                .bits
                .get(t)
                .and_then(|b| b.get((at / 64) as usize))
                .is_some_and(|w| w & (1 << (at % 64)) != 0);
            f(loc, marked);
        })
    }

    /// Packs the index knows, with sizes.
    pub fn indexed_packs(&self) -> HashMap<PackId, u64> {
        self.index_state().packs.clone()
    }

    /// Passes over the blobs of `packs` from now on, until the index is loaded again (prune
    /// repacks them: their blobs must be stored again, not found there).
    pub fn drop_packs_from_index(&self, packs: &HashSet<PackId>) {
        self.index_state_mut()
            .excluded
            .extend(packs.iter().copied());
    }

    /// Writes one index file. Returns its id.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_index(&self, idx: &IndexFile) -> Result<IndexId> {
        self.check_lock()?;
        let bytes = format::seal_index(&self.keys, idx);
        let id = IndexId::hash_of(&bytes);
        self.backend
            .write(FileKind::Index, &id.to_hex(), &bytes)
            .map_err(|e| Error::io(format!("writing index {id}"), e))?;
        Ok(id)
    }
}
