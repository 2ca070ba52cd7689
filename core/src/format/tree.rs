//! Trees: one directory's entries, sorted by name (design.md §3.9).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::id::BlobId;

/// The kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Unix socket.
    Socket,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Name: one path component, any bytes but `/` and NUL, not `.` or `..`.
    pub name: Vec<u8>,
    /// Kind.
    pub kind: NodeKind,
    /// Permission bits, including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Owner's name, if known.
    pub user: Option<String>,
    /// Group's name, if known.
    pub group: Option<String>,
    /// Size in bytes (files) or target length (symlinks).
    pub size: u64,
    /// Modification time, Unix ns. (Access times are not recorded: they change on every read
    /// and would make every tree new; a restore sets atime to mtime.)
    pub mtime_ns: i64,
    /// Status change time, Unix ns (for change detection; not restored).
    pub ctime_ns: i64,
    /// Inode number in the source (for change detection and hard links).
    pub inode: u64,
    /// Device of the source filesystem.
    pub dev: u64,
    /// Link count in the source.
    pub nlink: u64,
    /// Device number of device nodes.
    pub rdev: u64,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Extended attributes, including `system.posix_acl_*` ACLs, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// File content chunks, in order.
    pub content: Vec<BlobId>,
    /// Directory content.
    pub subtree: Option<BlobId>,
}

/// A directory: its entries sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries, sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Encodes for storage.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a tree blob's plaintext.
    ///
    /// # Errors
    /// [`Error::Damaged`] if malformed.
    pub fn decode(id: &BlobId, b: &[u8]) -> Result<Self> {
        postcard::from_bytes(b).map_err(|e| Error::damaged(format!("tree {id}"), e.to_string()))
    }

    /// The entry named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// Whether `name` is acceptable as a single path component (refuses `..`, `/`, NUL, empty).
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names() {
        assert!(is_safe_name(b"a"));
        assert!(is_safe_name(&[0xff, 0xfe]));
        assert!(!is_safe_name(b".."));
        assert!(!is_safe_name(b"."));
        assert!(!is_safe_name(b"a/b"));
        assert!(!is_safe_name(b""));
    }
}
