//! The in-memory index: which pack holds which blob, loaded from `index/` (design.md §3.7).

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::{BlobLocation, Repository};
use crate::error::{Error, Result};
use crate::format::id::{BlobId, IndexId, PackId};
use crate::format::{self, IndexFile, IndexPack};
use crate::repo::backend::FileKind;
use crate::repo::lock::ExclusiveLock;

impl Repository {
    /// Reads all index files into memory. A damaged index file is skipped with a warning and
    /// listed by [`Repository::damaged`] (the blobs only it lists become unreachable until
    /// `repair index`; prune refuses to run meanwhile).
    ///
    /// # Errors
    /// I/O errors listing or reading.
    pub fn load_index(&self) -> Result<()> {
        // Without a lock a prune may replace index files between the listing and the reads: it
        // writes the new file before removing the old ones, so listing again finds a full set.
        let mut attempt = 1;
        let (names, results) = loop {
            let names = self
                .backend
                .list(FileKind::Index)
                .map_err(|e| Error::io("index/", e))?;
            let results: Vec<std::io::Result<Vec<u8>>> = names
                .par_iter()
                .map(|n| self.backend.read(FileKind::Index, n))
                .collect();
            let vanished = results.iter().any(|r| {
                r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            });
            if !vanished || attempt == 5 {
                break (names, results);
            }
            attempt += 1;
            tracing::debug!("index files changed while being read; listing again");
        };
        let results: Vec<(Result<IndexFile>, Option<String>)> = names
            .par_iter()
            .zip(results)
            .map(|(n, r)| {
                let raw = match r {
                    Ok(raw) => raw,
                    Err(e) => return (Err(Error::io(format!("index {n}"), e)), None),
                };
                let hash = IndexId::hash_of(&raw).to_hex();
                let misnamed = (hash != *n).then_some(hash);
                (format::open_index(&self.keys, n, &raw), misnamed)
            })
            .collect();
        let misnamed = names
            .iter()
            .zip(&results)
            .filter_map(|(n, (_, m))| Some((format!("index {n}"), m.clone()?)))
            .collect();
        self.set_misnamed("index ", misnamed);
        let results = results.into_iter().map(|(r, _)| r);
        let mut files = Vec::new();
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, _)| !n.starts_with("index "));
        for (n, r) in names.iter().zip(results) {
            match r {
                Ok(f) => files.push(f),
                Err(e @ Error::Damaged { .. }) => {
                    tracing::warn!("{e}: skipped");
                    self.damaged
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((format!("index {n}"), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        let mut idx = HashMap::new();
        let mut sizes = HashMap::new();
        // Blobs listed more than once: the later entry wins, the others are kept in case its
        // pack is absent (a medium holds only some packs).
        let mut others: HashMap<BlobId, Vec<BlobLocation>> = HashMap::new();
        for f in files {
            for p in f.packs {
                sizes.insert(p.id, p.size);
                for e in p.blobs {
                    let loc = BlobLocation {
                        pack: p.id,
                        entry: e,
                    };
                    if let Some(old) = idx.insert(e.id, loc) {
                        if self.medium && old.pack != p.id {
                            others.entry(e.id).or_default().push(old);
                        }
                    }
                }
            }
        }
        if !others.is_empty() {
            let present: HashSet<String> = self
                .backend
                .list(FileKind::Pack)
                .map_err(|e| Error::io("data/", e))?
                .into_iter()
                .collect();
            for (id, alts) in others {
                let Some(cur) = idx.get_mut(&id) else {
                    continue;
                };
                if present.contains(&cur.pack.to_hex()) {
                    continue;
                }
                if let Some(alt) = alts
                    .into_iter()
                    .find(|a| present.contains(&a.pack.to_hex()))
                {
                    *cur = alt;
                }
            }
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = idx;
        *self.pack_sizes.write().unwrap_or_else(|p| p.into_inner()) = sizes;
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

    /// Where a blob is, if the index knows it.
    pub fn locate(&self, id: &BlobId) -> Option<BlobLocation> {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// Whether the index holds a blob.
    pub fn has_blob(&self, id: &BlobId) -> bool {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// A copy of the whole index (blob → location).
    pub fn index_snapshot(&self) -> HashMap<BlobId, BlobLocation> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Packs the index knows, with sizes.
    pub fn indexed_packs(&self) -> HashMap<PackId, u64> {
        self.pack_sizes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Removes the blobs of `packs` from the in-memory index (prune repacks them).
    pub fn drop_packs_from_index(&self, packs: &HashSet<PackId>) {
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, l| !packs.contains(&l.pack));
    }

    /// Writes one index file. Returns its id.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_index(&self, idx: &IndexFile) -> Result<IndexId> {
        let bytes = format::seal_index(&self.keys, idx);
        let id = IndexId::hash_of(&bytes);
        self.backend
            .write(FileKind::Index, &id.to_hex(), &bytes)
            .map_err(|e| Error::io(format!("writing index {id}"), e))?;
        Ok(id)
    }
}
