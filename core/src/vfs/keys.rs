//! What an inode number is derived from: a key, the blake3 of what an entry is (a snapshot id
//! and the names on the way down to it, or for hard-linked files the source device and inode),
//! and the number taken from it.

use super::MetaDir;
use crate::format::id::SnapshotId;
use crate::format::{Node, NodeKind};

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

/// The key of a snapshot's root directory.
pub(super) fn snap_key(snap: &SnapshotId) -> [u8; 32] {
    key(&[b"snap", &snap.0])
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

/// Bits of a key beyond those its inode number is taken from, kept in the inode table to tell
/// an entry that probed onto a number from the one already there (together with the number's
/// 63 bits, 95 bits of the key).
pub(super) fn check_of(k: &[u8; 32]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&k[8..12]);
    u32::from_le_bytes(b)
}
