//! The directories whose entries the kernel holds. An entry of the inode table names the
//! directory it is in by an index here, so what all entries of one directory share (the tree
//! they are listed in, the snapshot, the directory's key and inode number) is kept once, not
//! once per entry. Reference counted: a directory goes when the last of its entries does.

use std::collections::HashMap;

use crate::format::id::{BlobId, SnapshotId};

/// A directory inside a snapshot (or a snapshot's root).
#[derive(Clone, Copy)]
pub(super) struct Dir {
    /// The directory's key: its entries' keys are derived from it.
    pub(super) key: [u8; 32],
    /// The tree listing its entries.
    pub(super) tree: BlobId,
    /// The snapshot it is in.
    pub(super) snap: SnapshotId,
    /// Its inode number (the `..` of its entries).
    pub(super) ino: u64,
}

/// The table of [`Dir`]s, each with the number of inode-table entries naming it.
#[derive(Default)]
pub(super) struct Dirs {
    slots: Vec<Option<(Dir, u32)>>,
    free: Vec<u32>,
    by_key: HashMap<[u8; 32], u32>,
}

impl Dirs {
    /// Directory `i`, which an entry of the inode table names.
    pub(super) fn get(&self, i: u32) -> &Dir {
        match &self.slots[i as usize] {
            Some((d, _)) => d,
            None => unreachable!("directory {i} named by an entry but released"),
        }
    }

    /// Takes a reference on `d` (found by its key, or added); its index.
    pub(super) fn acquire(&mut self, d: Dir) -> u32 {
        if let Some(&i) = self.by_key.get(&d.key) {
            if let Some((_, refs)) = &mut self.slots[i as usize] {
                *refs += 1;
            }
            return i;
        }
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some((d, 1));
                i
            }
            None => {
                let i = u32::try_from(self.slots.len())
                    .unwrap_or_else(|_| unreachable!("more than 2^32 directories held at once"));
                self.slots.push(Some((d, 1)));
                i
            }
        };
        self.by_key.insert(d.key, i);
        i
    }

    /// Drops a reference on directory `i`, and the directory with the last one.
    pub(super) fn release(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        if let Some((d, refs)) = slot {
            *refs -= 1;
            if *refs == 0 {
                self.by_key.remove(&d.key);
                *slot = None;
                self.free.push(i);
            }
        }
    }

    /// Number of directories held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }
}
