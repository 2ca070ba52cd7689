//! What the view answers about an entry besides its contents and listing: attributes, link
//! targets and extended attributes.

use super::{Attr, TopChild, VResult, Vfs, VfsError, What};
use crate::format::NodeKind;

/// Security labels that `ls -l` asks of every entry. The kernel never caches the answer, so each
/// costs a request; where an entry has no stored label, the view answers "not supported", which
/// `ls` remembers for the whole filesystem and stops asking. (A host whose LSM provides the label
/// answers these itself and never asks the view.)
const LABEL_XATTRS: [&[u8]; 2] = [b"security.selinux", b"security.SMACK64"];

/// Linux `new_encode_dev` of a glibc `dev_t`, as FUSE carries it.
fn encode_dev(dev: u64) -> u32 {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    ((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) as u32
}

impl Vfs {
    /// The attributes of `ino`, which stands for `what`.
    pub(super) fn attr_of(&self, ino: u64, what: &What) -> Attr {
        let o = &self.opts;
        let synthetic = |kind, size, time_ns| Attr {
            ino,
            kind,
            perm: if kind == NodeKind::Dir { 0o555 } else { 0o777 },
            uid: o.uid,
            gid: o.gid,
            size,
            nlink: if kind == NodeKind::Dir { 2 } else { 1 },
            mtime_ns: time_ns,
            ctime_ns: time_ns,
            rdev: 0,
            stable: false,
        };
        match what {
            What::Meta(_) => synthetic(NodeKind::Dir, 0, self.top().mtime_ns()),
            What::TopLink { dir, name } => {
                let len = match self.top().child(dir, name) {
                    Some(TopChild::Link(t)) => t.len() as u64,
                    _ => 0,
                };
                synthetic(NodeKind::Symlink, len, self.top().mtime_ns())
            }
            What::SnapRoot { time_ns, .. } => Attr {
                stable: true,
                ..synthetic(NodeKind::Dir, 0, *time_ns)
            },
            What::Node { node: n, .. } => Attr {
                ino,
                kind: n.kind,
                perm: n.mode & 0o7777,
                uid: n.uid,
                gid: n.gid,
                size: match n.kind {
                    NodeKind::Symlink => n.target.as_ref().map_or(0, |t| t.len() as u64),
                    _ => n.size,
                },
                nlink: u32::try_from(n.nlink.max(1)).unwrap_or(u32::MAX),
                mtime_ns: n.mtime_ns,
                ctime_ns: n.ctime_ns,
                rdev: encode_dev(n.rdev),
                stable: true,
            },
        }
    }

    /// Attributes of `ino`.
    ///
    /// # Errors
    /// [`VfsError::NotFound`] for an inode the kernel no longer holds; [`VfsError::Io`] if the
    /// directory it is in cannot be read again.
    pub fn getattr(&self, ino: u64) -> VResult<Attr> {
        let what = self.entry(ino)?;
        if matches!(*what, What::Meta(_)) {
            self.refresh();
        }
        Ok(self.attr_of(ino, &what))
    }

    /// The target of symlink `ino`.
    ///
    /// # Errors
    /// [`VfsError::NotLink`] if it is not one; [`VfsError::NotFound`] if it has gone.
    pub fn readlink(&self, ino: u64) -> VResult<Vec<u8>> {
        let what = self.entry(ino)?;
        match &*what {
            What::TopLink { dir, name } => match self.top().child(dir, name) {
                Some(TopChild::Link(t)) => Ok(t),
                _ => Err(VfsError::NotFound),
            },
            What::Node { node, .. } if node.kind == NodeKind::Symlink => {
                Ok(node.target.as_deref().unwrap_or_default().to_vec())
            }
            _ => Err(VfsError::NotLink),
        }
    }

    /// The value of extended attribute `name` of `ino`.
    ///
    /// # Errors
    /// [`VfsError::NoData`] if it has none of that name; [`VfsError::NotSupported`] if that name
    /// is a security label (see [`LABEL_XATTRS`]).
    pub fn getxattr(&self, ino: u64, name: &[u8]) -> VResult<Vec<u8>> {
        let found = match &*self.entry(ino)? {
            What::Node { node, .. } => node
                .xattrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
            _ => None,
        };
        found.ok_or(if LABEL_XATTRS.contains(&name) {
            VfsError::NotSupported
        } else {
            VfsError::NoData
        })
    }

    /// The names of `ino`'s extended attributes, each followed by a NUL byte.
    ///
    /// # Errors
    /// [`VfsError::NotFound`] for an unknown inode.
    pub fn listxattr(&self, ino: u64) -> VResult<Vec<u8>> {
        let mut out = Vec::new();
        if let What::Node { node, .. } = &*self.entry(ino)? {
            for (k, _) in &node.xattrs {
                out.extend_from_slice(k);
                out.push(0);
            }
        }
        Ok(out)
    }
}
