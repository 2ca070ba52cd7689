//! The inode table: what each inode number the kernel holds stands for, with lookup counts so
//! that forgotten entries are dropped. Numbers are derived from what an entry is (see the module
//! docs of `vfs`), with collisions resolved by probing.

use std::sync::Arc;

use super::{lock, node, MetaDir, VResult, Vfs, VfsError, ROOT_INO};
use crate::format::id::{BlobId, SnapshotId};
use crate::format::{Node, NodeKind};

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
        node: Box<node::EntryNode>,
    },
}

pub(super) struct Inode {
    pub(super) what: Arc<What>,
    pub(super) key: [u8; 32],
    pub(super) parent: u64,
    pub(super) name: Vec<u8>,
    pub(super) lookups: u64,
}

pub(super) fn key(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"bakfs vfs inode v1");
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    *h.finalize().as_bytes()
}

pub(super) fn meta_key(d: &MetaDir) -> [u8; 32] {
    match d {
        MetaDir::Root => key(&[b"root"]),
        MetaDir::Ids => key(&[b"ids"]),
        MetaDir::Hosts => key(&[b"hosts"]),
        MetaDir::Tags => key(&[b"tags"]),
        MetaDir::Host(h) => key(&[b"host", h.as_bytes()]),
        MetaDir::Tag(t) => key(&[b"tag", t.as_bytes()]),
    }
}

pub(super) fn node_key(snap: &SnapshotId, parent_key: &[u8; 32], n: &Node) -> [u8; 32] {
    if n.kind == NodeKind::File && n.nlink > 1 && n.inode != 0 {
        // Hard links: one inode per source (device, inode) in a snapshot.
        key(&[
            b"hardlink",
            &snap.0,
            &n.dev.to_le_bytes(),
            &n.inode.to_le_bytes(),
        ])
    } else {
        key(&[b"node", parent_key, &n.name])
    }
}

/// The inode number a key maps to (collisions are resolved when an entry is remembered).
pub(super) fn ino_of(k: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[..8]);
    let v = u64::from_le_bytes(b) >> 1; // below 2^63: some tools treat inode numbers as signed
    v.max(16)
}

impl Vfs {
    pub(super) fn entry(&self, ino: u64) -> VResult<(Arc<What>, [u8; 32])> {
        let t = lock(&self.inodes);
        let e = t.get(&ino).ok_or(VfsError::NotFound)?;
        Ok((e.what.clone(), e.key))
    }

    /// The path of `ino` below the mount, for log messages.
    pub fn path_of(&self, ino: u64) -> String {
        let t = lock(&self.inodes);
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO && parts.len() < 4096 {
            let Some(e) = t.get(&cur) else {
                parts.push("?".to_string());
                break;
            };
            parts.push(String::from_utf8_lossy(&e.name).into_owned());
            cur = e.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    pub(super) fn remember(&self, parent: u64, name: &[u8], key: [u8; 32], what: What) -> u64 {
        let mut t = lock(&self.inodes);
        let mut ino = ino_of(&key);
        loop {
            match t.get_mut(&ino) {
                Some(e) if e.key == key => {
                    e.lookups += 1;
                    return ino;
                }
                Some(_) => {
                    tracing::debug!("inode number {ino} taken by another entry; probing");
                    ino = ino.wrapping_add(1).max(16);
                }
                None => {
                    t.insert(
                        ino,
                        Inode {
                            what: Arc::new(what),
                            key,
                            parent,
                            name: name.to_vec(),
                            lookups: 1,
                        },
                    );
                    return ino;
                }
            }
        }
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut t = lock(&self.inodes);
        if let Some(e) = t.get_mut(&ino) {
            e.lookups = e.lookups.saturating_sub(n);
            if e.lookups == 0 {
                t.remove(&ino);
                drop(t);
                lock(&self.files).remove(&ino);
            }
        }
    }

    /// Number of inodes the kernel holds references to.
    pub fn inode_count(&self) -> usize {
        lock(&self.inodes).len()
    }
}
