//! Reading a filesystem entry's metadata into a [`Node`], and owner-name lookups.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Mutex;

use crate::format::{Node, NodeKind};

/// Caches uid/gid → name lookups.
#[derive(Default)]
pub struct NameCache {
    users: Mutex<HashMap<u32, Option<String>>>,
    groups: Mutex<HashMap<u32, Option<String>>>,
}

impl NameCache {
    /// The name of user `uid`, if it has one.
    pub fn user(&self, uid: u32) -> Option<String> {
        let mut m = self.users.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .clone()
    }
    /// The name of group `gid`, if it has one.
    pub fn group(&self, gid: u32) -> Option<String> {
        let mut m = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .clone()
    }
}

/// The kind of entry `m` describes.
pub fn kind_of(m: &Metadata) -> NodeKind {
    let t = m.file_type();
    if t.is_dir() {
        NodeKind::Dir
    } else if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_fifo() {
        NodeKind::Fifo
    } else if t.is_char_device() {
        NodeKind::CharDev
    } else if t.is_block_device() {
        NodeKind::BlockDev
    } else if t.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// Reads the extended attributes (not following symlinks), sorted by name.
/// Errors are returned so that the caller can warn.
///
/// # Errors
/// I/O errors other than "not supported".
pub fn read_xattrs(path: &Path) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for n in names {
        if let Some(v) = xattr::get(path, &n)? {
            out.push((n.as_bytes().to_vec(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// A node for `path` with metadata `m` (content, subtree and target are left empty).
pub fn node_from_metadata(name: &OsStr, m: &Metadata, names: &NameCache) -> Node {
    let kind = kind_of(m);
    Node {
        name: name.as_bytes().to_vec(),
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        user: names.user(m.uid()),
        group: names.group(m.gid()),
        size: if matches!(kind, NodeKind::File | NodeKind::Symlink) {
            m.size()
        } else {
            0
        },
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        inode: m.ino(),
        dev: m.dev(),
        nlink: m.nlink(),
        rdev: if matches!(kind, NodeKind::CharDev | NodeKind::BlockDev) {
            m.rdev()
        } else {
            0
        },
        target: None,
        xattrs: vec![],
        content: vec![],
        subtree: None,
    }
}
