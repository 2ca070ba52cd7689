//! What the mount keeps of a snapshot entry while the kernel holds its inode.
//!
//! A [`Node`] of a tree carries what backup and restore need (name, owner names, source inode
//! and device); the mount keeps only what it answers with, in boxed slices, since it holds one
//! per inode the kernel remembers (hundreds of thousands after an `ls -lR`).

use crate::format::id::BlobId;
use crate::format::{Node, NodeKind};

/// One extended attribute: name and value.
pub(super) type Xattr = (Box<[u8]>, Box<[u8]>);

/// The attributes, link target, xattrs and content of one entry.
pub(super) struct EntryNode {
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub rdev: u64,
    pub target: Option<Box<[u8]>>,
    pub xattrs: Box<[Xattr]>,
    pub content: Box<[BlobId]>,
    pub subtree: Option<BlobId>,
}

impl From<&Node> for EntryNode {
    fn from(n: &Node) -> Self {
        EntryNode {
            kind: n.kind,
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            nlink: u32::try_from(n.nlink.max(1)).unwrap_or(u32::MAX),
            size: n.size,
            mtime_ns: n.mtime_ns,
            ctime_ns: n.ctime_ns,
            rdev: n.rdev,
            target: n.target.as_deref().map(Box::from),
            xattrs: n
                .xattrs
                .iter()
                .map(|(k, v)| (Box::from(k.as_slice()), Box::from(v.as_slice())))
                .collect(),
            content: n.content.as_slice().into(),
            subtree: n.subtree,
        }
    }
}
