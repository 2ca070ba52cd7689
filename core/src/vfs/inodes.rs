//! The inode table: what each inode number the kernel holds stands for, with lookup counts so
//! that forgotten entries are dropped. Numbers are derived from keys (see `keys.rs`), with
//! collisions resolved by probing.
//!
//! An entry inside a snapshot costs a few bytes: the directory it is in (an index into the
//! shared, reference-counted table of `dirs.rs`), its position in that directory's tree, its
//! lookup count and some bits of its key. Its [`Node`](crate::format::Node) is found again in
//! the tree (through the tree cache) when a request needs it. The few inodes above the
//! snapshots, and snapshots' roots, are kept whole.

use std::collections::HashMap;
use std::sync::Arc;

use super::dirs::{Dir, Dirs};
use super::keys::{check_of, ino_of, meta_key, node_key, snap_key};
use super::node::NodeRef;
use super::{lock, MetaDir, VResult, Vfs, VfsError, ROOT_INO};
use crate::format::id::{BlobId, SnapshotId};
use crate::format::NodeKind;

/// What an inode stands for, as requests are answered from it.
pub(super) enum What {
    Meta(MetaDir),
    TopLink {
        dir: MetaDir,
        name: Vec<u8>,
    },
    SnapRoot {
        snap: SnapshotId,
        tree: BlobId,
        time_ns: i64,
    },
    Node {
        snap: SnapshotId,
        /// The key of the directory it is in.
        dir_key: [u8; 32],
        node: NodeRef,
    },
}

impl What {
    /// The key of a directory (its entries' keys are derived from it); `None` for a link.
    pub(super) fn dir_key(&self) -> Option<[u8; 32]> {
        match self {
            What::Meta(d) => Some(meta_key(d)),
            What::SnapRoot { snap, .. } => Some(snap_key(snap)),
            What::Node {
                snap,
                dir_key,
                node,
            } if node.kind == NodeKind::Dir => Some(node_key(snap, dir_key, node)),
            _ => None,
        }
    }
}

/// An entry inside a snapshot that the kernel holds: entry `pos` of directory `dir`'s tree.
#[derive(Clone, Copy)]
pub(super) struct Slot {
    dir: u32,
    pos: u32,
    /// [`check_of`] its key.
    check: u32,
    /// The kernel's lookup count (saturating: 2^32 lookups of one entry are not expected).
    lookups: u32,
}

/// An inode above the snapshots, or a snapshot's root.
struct Other {
    what: Arc<What>,
    key: [u8; 32],
    parent: u64,
    name: Vec<u8>,
    lookups: u64,
}

/// The inodes the kernel holds.
#[derive(Default)]
pub(super) struct Inodes {
    nodes: HashMap<u64, Slot>,
    others: HashMap<u64, Other>,
    dirs: Dirs,
}

impl Inodes {
    /// A table holding the root.
    pub(super) fn new() -> Inodes {
        let mut t = Inodes::default();
        t.others.insert(
            ROOT_INO,
            Other {
                what: Arc::new(What::Meta(MetaDir::Root)),
                key: meta_key(&MetaDir::Root),
                parent: ROOT_INO,
                name: Vec::new(),
                lookups: u64::MAX / 2,
            },
        );
        t
    }

    /// Number of inodes held.
    pub(super) fn len(&self) -> usize {
        self.nodes.len() + self.others.len()
    }

    /// Number of directories their entries are in.
    #[cfg(test)]
    pub(super) fn dir_count(&self) -> usize {
        self.dirs.len()
    }

    /// The parent directory of `ino`, if held.
    fn parent(&self, ino: u64) -> Option<u64> {
        match self.nodes.get(&ino) {
            Some(s) => Some(self.dirs.get(s.dir).ino),
            None => self.others.get(&ino).map(|o| o.parent),
        }
    }

    /// The number for an entry of key `key`: the one it has if held (`true`), else a free one.
    /// Snapshot entries (`node`) are told apart by the bits of their keys kept, others by their
    /// whole keys.
    fn probe(&self, key: &[u8; 32], node: bool) -> (u64, bool) {
        let mut ino = ino_of(key);
        loop {
            let held = match (self.nodes.get(&ino), self.others.get(&ino)) {
                (Some(s), _) => node && s.check == check_of(key),
                (_, Some(o)) => o.key == *key,
                (None, None) => return (ino, false),
            };
            if held {
                return (ino, true);
            }
            tracing::debug!("inode number {ino} taken by another entry; probing");
            ino = ino.wrapping_add(1).max(16);
        }
    }

    /// Takes a kernel reference on the snapshot entry of key `key`, entry `pos` of `dir`'s
    /// tree; its inode number.
    fn remember_node(&mut self, key: &[u8; 32], dir: Dir, pos: u32) -> u64 {
        let (ino, held) = self.probe(key, true);
        if held {
            if let Some(s) = self.nodes.get_mut(&ino) {
                s.lookups = s.lookups.saturating_add(1);
            }
        } else {
            let slot = Slot {
                dir: self.dirs.acquire(dir),
                pos,
                check: check_of(key),
                lookups: 1,
            };
            self.nodes.insert(ino, slot);
        }
        ino
    }

    /// Takes a kernel reference on the inode of key `key` above the snapshots (or a
    /// snapshot's root), named `name` in `parent`; its inode number.
    fn remember_other(&mut self, key: &[u8; 32], parent: u64, name: &[u8], what: What) -> u64 {
        let (ino, held) = self.probe(key, false);
        if held {
            if let Some(o) = self.others.get_mut(&ino) {
                o.lookups += 1;
            }
        } else {
            let o = Other {
                what: Arc::new(what),
                key: *key,
                parent,
                name: name.to_vec(),
                lookups: 1,
            };
            self.others.insert(ino, o);
        }
        ino
    }

    /// Drops `n` kernel references to `ino`; whether that was the last.
    fn forget(&mut self, ino: u64, n: u64) -> bool {
        if let Some(s) = self.nodes.get_mut(&ino) {
            s.lookups = s
                .lookups
                .saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
            if s.lookups > 0 {
                return false;
            }
            let dir = s.dir;
            self.nodes.remove(&ino);
            self.dirs.release(dir);
            return true;
        }
        if let Some(o) = self.others.get_mut(&ino) {
            o.lookups = o.lookups.saturating_sub(n);
            if o.lookups == 0 {
                self.others.remove(&ino);
                return true;
            }
        }
        false
    }
}

/// Where a held inode's answers come from, copied out of the table so that it can be unlocked.
enum Held {
    Node(Dir, u32),
    Other(Arc<What>),
}

impl Vfs {
    fn held(&self, ino: u64) -> VResult<Held> {
        let t = lock(&self.inodes);
        if let Some(s) = t.nodes.get(&ino) {
            return Ok(Held::Node(*t.dirs.get(s.dir), s.pos));
        }
        let o = t.others.get(&ino).ok_or(VfsError::NotFound)?;
        Ok(Held::Other(o.what.clone()))
    }

    /// What `ino` stands for. A snapshot entry's node is found again in its directory's tree.
    ///
    /// # Errors
    /// [`VfsError::NotFound`] for an inode the kernel no longer holds; [`VfsError::Io`] if the
    /// tree cannot be read.
    pub(super) fn entry(&self, ino: u64) -> VResult<Arc<What>> {
        match self.held(ino)? {
            Held::Other(w) => Ok(w),
            Held::Node(dir, pos) => {
                let tree = self.tree(&dir.tree, dir.ino)?;
                let node = NodeRef::new(tree, pos as usize).ok_or(VfsError::Io)?;
                Ok(Arc::new(What::Node {
                    snap: dir.snap,
                    dir_key: dir.key,
                    node,
                }))
            }
        }
    }

    /// The parent directory of `ino` (the root for one no longer held).
    pub(super) fn parent_of(&self, ino: u64) -> u64 {
        lock(&self.inodes).parent(ino).unwrap_or(ROOT_INO)
    }

    /// The path of `ino` below the mount, for log messages.
    pub fn path_of(&self, ino: u64) -> String {
        // Names of snapshot entries are in trees: collected first, looked up unlocked.
        let mut parts: Vec<Result<String, (BlobId, u32)>> = Vec::new();
        {
            let t = lock(&self.inodes);
            let mut cur = ino;
            while cur != ROOT_INO && parts.len() < 4096 {
                if let Some(s) = t.nodes.get(&cur) {
                    let d = t.dirs.get(s.dir);
                    parts.push(Err((d.tree, s.pos)));
                    cur = d.ino;
                } else if let Some(o) = t.others.get(&cur) {
                    parts.push(Ok(String::from_utf8_lossy(&o.name).into_owned()));
                    cur = o.parent;
                } else {
                    parts.push(Ok("?".to_string()));
                    break;
                }
            }
        }
        let names: Vec<String> = parts
            .into_iter()
            .rev()
            .map(|p| p.unwrap_or_else(|(tree, pos)| self.name_in(&tree, pos)))
            .collect();
        format!("/{}", names.join("/"))
    }

    /// The name of entry `pos` of `tree`, for log messages (never logs itself).
    fn name_in(&self, tree: &BlobId, pos: u32) -> String {
        let t = lock(&self.trees).get(tree);
        let t = t.or_else(|| self.repo.read_tree(tree).ok().map(Arc::new));
        t.and_then(|t| NodeRef::new(t, pos as usize))
            .map_or("?".to_string(), |n| {
                String::from_utf8_lossy(&n.name).into_owned()
            })
    }

    /// Takes a kernel reference on entry `pos` of `dir`'s tree, of key `key`; its number.
    pub(super) fn remember_node(&self, key: &[u8; 32], dir: Dir, pos: u32) -> u64 {
        lock(&self.inodes).remember_node(key, dir, pos)
    }

    /// Takes a kernel reference on `what` (not a snapshot entry), named `name` in `parent`.
    pub(super) fn remember(&self, parent: u64, name: &[u8], key: &[u8; 32], what: What) -> u64 {
        lock(&self.inodes).remember_other(key, parent, name, what)
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if lock(&self.inodes).forget(ino, n) {
            lock(&self.files).remove(&ino);
        }
    }

    /// Number of inodes the kernel holds references to.
    pub fn inode_count(&self) -> usize {
        lock(&self.inodes).len()
    }
}
