//! The packs prunes took out of the index and have not deleted yet (the records in
//! `condemned/`, design.md §4.3), as tables of their own. A snapshot made by a backup that read
//! the index before those packs left it refers to their blobs until the next prune indexes them
//! again: restore, check and the mount read them from here. Backups never deduplicate against
//! them ([`Repository::locate`] does not look here), so no backup that started after the packs
//! left the index comes to need them.

use super::store::{FileNote, ReadFile, Store};
use super::IndexState;
use crate::error::{Error, Result};
use crate::format::id::BlobId;
use crate::format::{self, IndexFile};
use crate::repo::backend::FileKind;
use crate::repo::{BlobLocation, Repository};

impl Repository {
    /// Brings the pending tables in step with `condemned/`.
    pub(super) fn sync_pending(&self, st: &mut IndexState) -> Result<()> {
        let names = self
            .backend
            .list(FileKind::Condemned)
            .map_err(|e| Error::io("condemned/", e))?;
        if names.is_empty() {
            // No directory made, no table kept, where nothing waits (the usual case).
            st.pending = None;
            return Ok(());
        }
        if st.pending.is_none() {
            let dir = self
                .cache_dir()
                .filter(|_| self.backend.persistent())
                .map(|d| d.join("condemned-v1"));
            let store = match dir.map(|d| Store::open(d, false)) {
                Some(Ok(s)) => s,
                _ => Store::temporary().map_err(|e| Error::io("a temporary index cache", e))?,
            };
            st.pending = Some(store);
        }
        let read = |group: &[String]| -> Result<Vec<ReadFile>> {
            group
                .iter()
                .map(|n| {
                    let raw = self
                        .backend
                        .read(FileKind::Condemned, n)
                        .map_err(|e| Error::io(format!("condemned {n}"), e))?;
                    let file = format::open_condemned(&self.keys, n, &raw)
                        .map(|c| IndexFile { packs: c.packs })
                        .map_err(|e| e.to_string());
                    Ok((n.clone(), file, FileNote::default()))
                })
                .collect()
        };
        match st.pending.as_mut() {
            Some(store) => store.sync(&names, &read),
            None => Ok(()),
        }
    }

    /// Where a blob is in a pack a prune took out of the index and has not deleted yet.
    pub fn locate_pending(&self, id: &BlobId) -> Option<BlobLocation> {
        let st = self.index_state();
        let store = st.pending.as_ref()?;
        store.tables.iter().find_map(|(t, _)| {
            let packs = t.packs();
            let (r, _) = t.find(id, |_| true).ok()??;
            Some(BlobLocation {
                pack: packs[r.pack as usize].0,
                entry: r.entry,
            })
        })
    }

    /// The packs prunes took out of the index and have not deleted yet.
    pub fn pending_packs(&self) -> std::collections::HashSet<crate::format::id::PackId> {
        let st = self.index_state();
        st.pending.as_ref().map_or_else(Default::default, |store| {
            store
                .tables
                .iter()
                .flat_map(|(t, _)| t.packs().iter().map(|(p, _)| *p))
                .collect()
        })
    }

    /// Where to read a blob: the index, else a pack a prune has not deleted yet.
    pub fn locate_for_read(&self, id: &BlobId) -> Option<BlobLocation> {
        self.locate(id).or_else(|| self.locate_pending(id))
    }
}
