//! The snapshot view behind `bakfs mount`: every snapshot of a repository as one read-only tree,
//! with stable inode numbers, answered from tree objects and chunks on demand. It knows nothing
//! of FUSE; `bakfs-fs` maps its calls and errors onto the kernel protocol.
//!
//! Inode numbers are derived from what an entry is (a snapshot id and the names on the way down,
//! or for hard-linked files the source device and inode), so they are the same on every mount
//! and hard links share one. The kernel's lookup counts are kept, so forgotten entries are
//! dropped and memory follows what the kernel caches.

mod cache;
mod chunks;
mod files;
mod inodes;
mod node;
mod refresh;
#[cfg(test)]
mod tests;
pub mod top;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::format::id::BlobId;
use crate::format::{is_safe_name, NodeKind, Snapshot, Tree};
use crate::repo::Repository;
use cache::LruCache;
pub use chunks::Decoded;
use files::{Chunk, OpenFile};
use inodes::{ino_of, key, meta_key, node_key, Inode, What};
use refresh::index_names;
pub use top::{MetaDir, Top, TopChild};

/// The root's inode number.
pub const ROOT_INO: u64 = 1;

/// Why a request failed; `bakfs-fs` turns these into errno values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfsError {
    /// No such entry (ENOENT).
    NotFound,
    /// Data could not be read or failed authentication (EIO); already logged.
    Io,
    /// Not a directory (ENOTDIR).
    NotDir,
    /// Not a symlink (EINVAL).
    NotLink,
    /// No such extended attribute (ENODATA).
    NoData,
    /// Extended attributes of this name are not supported here (EOPNOTSUPP).
    NotSupported,
}

/// Security labels that `ls -l` asks of every entry. The kernel never caches the answer, so each
/// costs a request; where an entry has no stored label, the view answers "not supported", which
/// `ls` remembers for the whole filesystem and stops asking. (A host whose LSM provides the label
/// answers these itself and never asks the view.)
const LABEL_XATTRS: [&[u8]; 2] = [b"security.selinux", b"security.SMACK64"];

/// Result of a view request.
pub type VResult<T> = std::result::Result<T, VfsError>;

/// Attributes of one entry.
#[derive(Debug, Clone)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: NodeKind,
    /// Permission bits, with setuid, setgid and sticky.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Link count.
    pub nlink: u32,
    /// Modification time, Unix ns.
    pub mtime_ns: i64,
    /// Status change time, Unix ns.
    pub ctime_ns: i64,
    /// Device number (Linux `new_encode_dev` form) of device nodes.
    pub rdev: u32,
    /// Inside a snapshot: never changes, so the kernel may cache it for long.
    pub stable: bool,
}

/// One directory entry as `readdir` lists it.
#[derive(Debug, Clone)]
pub struct DirItem {
    /// Inode number.
    pub ino: u64,
    /// Kind.
    pub kind: NodeKind,
    /// Name.
    pub name: Vec<u8>,
    /// The offset to pass to continue after this entry.
    pub next: u64,
}

/// Tuning of a [`Vfs`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes of decrypted chunks kept.
    pub blob_cache_bytes: usize,
    /// Bytes (estimated) of decoded directories kept.
    pub tree_cache_bytes: usize,
    /// How often the snapshot list is looked at again, at most.
    pub refresh_interval: Duration,
    /// Owner of the synthetic directories (the mounting user).
    pub uid: u32,
    /// Group of the synthetic directories.
    pub gid: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            blob_cache_bytes: 64 << 20,
            tree_cache_bytes: 32 << 20,
            refresh_interval: Duration::from_secs(1),
            uid: 0,
            gid: 0,
        }
    }
}

/// The mounted view of one repository.
pub struct Vfs {
    repo: Repository,
    opts: Options,
    top: RwLock<Arc<Top>>,
    manifests: Mutex<HashMap<String, Option<Snapshot>>>,
    last_refresh: Mutex<Instant>,
    inodes: Mutex<HashMap<u64, Inode>>,
    trees: Mutex<LruCache<BlobId, Tree>>,
    blobs: Mutex<LruCache<BlobId, chunks::ChunkBuf>>,
    /// Chunk tables of files being read, by inode; dropped when the kernel forgets the inode.
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    /// Chunks being decoded now, so that concurrent readers wait instead of decoding twice.
    loading: chunks::InFlight,
    /// Where decoded chunks are offered for the kernel's page cache.
    page_sink: std::sync::OnceLock<std::sync::mpsc::SyncSender<chunks::Decoded>>,
    /// The index files the loaded index was read from (sorted).
    index_files: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Linux `new_encode_dev` of a glibc `dev_t`, as FUSE carries it.
fn encode_dev(dev: u64) -> u32 {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    ((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) as u32
}

fn tree_bytes(t: &Tree) -> usize {
    t.nodes
        .iter()
        .map(|n| {
            160 + n.name.len()
                + 32 * n.content.len()
                + n.xattrs
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
        })
        .sum::<usize>()
        + 64
}

impl Vfs {
    /// A view of `repo`, reading its snapshot list now.
    ///
    /// # Errors
    /// If the snapshot list cannot be read.
    pub fn new(repo: Repository, opts: Options) -> crate::Result<Vfs> {
        let snaps = repo.snapshots()?;
        let manifests: HashMap<String, Option<Snapshot>> = snaps
            .iter()
            .map(|(id, s)| (id.to_hex(), Some(s.clone())))
            .collect();
        let top = Top::new(&snaps);
        let index_files = index_names(&repo);
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT_INO,
            Inode {
                what: Arc::new(What::Meta(MetaDir::Root)),
                key: meta_key(&MetaDir::Root),
                parent: ROOT_INO,
                name: Vec::new(),
                lookups: u64::MAX / 2,
            },
        );
        Ok(Vfs {
            trees: Mutex::new(LruCache::new(opts.tree_cache_bytes)),
            blobs: Mutex::new(LruCache::new(opts.blob_cache_bytes)),
            last_refresh: Mutex::new(Instant::now()),
            repo,
            opts,
            top: RwLock::new(Arc::new(top)),
            manifests: Mutex::new(manifests),
            inodes: Mutex::new(inodes),
            files: Mutex::new(HashMap::new()),
            loading: Mutex::new(HashMap::new()),
            page_sink: std::sync::OnceLock::new(),
            index_files: Mutex::new(index_files),
        })
    }

    /// The repository behind the view.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Number of snapshots shown.
    pub fn snapshot_count(&self) -> usize {
        self.top().len()
    }

    fn tree(&self, id: &BlobId, ino: u64) -> VResult<Arc<Tree>> {
        if let Some(t) = lock(&self.trees).get(id) {
            return Ok(t);
        }
        let mut r = self.repo.read_tree(id);
        if r.is_err() {
            // A prune may have moved it since the index was read (here or by another thread):
            // read the index again if it changed, and the tree from where it is now.
            self.reload_index_if_changed();
            r = self.repo.read_tree(id);
        }
        match r {
            Ok(t) => {
                let size = tree_bytes(&t);
                let t = Arc::new(t);
                lock(&self.trees).put(*id, t.clone(), size);
                Ok(t)
            }
            Err(e) => {
                tracing::error!("{}: cannot read directory: {e}", self.path_of(ino));
                Err(VfsError::Io)
            }
        }
    }

    fn dir_tree(&self, what: &What, ino: u64) -> VResult<Option<Arc<Tree>>> {
        match what {
            What::SnapRoot { tree, .. } => Ok(Some(self.tree(tree, ino)?)),
            What::Node { node, .. } if node.kind == NodeKind::Dir => match &node.subtree {
                Some(id) => Ok(Some(self.tree(id, ino)?)),
                None => Ok(Some(Arc::new(Tree::default()))),
            },
            What::Meta(_) => Ok(None),
            _ => Err(VfsError::NotDir),
        }
    }

    fn attr_of(&self, ino: u64, what: &What) -> Attr {
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
                nlink: n.nlink,
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
    /// [`VfsError::NotFound`] for an inode the kernel no longer holds.
    pub fn getattr(&self, ino: u64) -> VResult<Attr> {
        let (what, _) = self.entry(ino)?;
        if matches!(*what, What::Meta(_)) {
            self.refresh();
        }
        Ok(self.attr_of(ino, &what))
    }

    /// Looks up `name` in directory `parent`, taking one kernel reference on the result.
    ///
    /// # Errors
    /// [`VfsError::NotFound`], [`VfsError::NotDir`], or [`VfsError::Io`] if the directory
    /// cannot be read.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> VResult<Attr> {
        if !is_safe_name(name) {
            return Err(VfsError::NotFound);
        }
        let (pwhat, pkey) = self.entry(parent)?;
        let (key, what) = match &*pwhat {
            What::Meta(d) => {
                self.refresh();
                match self.top().child(d, name) {
                    Some(TopChild::Dir(md)) => (meta_key(&md), What::Meta(md)),
                    Some(TopChild::Snap(snap, tree, time_ns)) => (
                        key(&[b"snap", &snap.0]),
                        What::SnapRoot {
                            snap,
                            tree,
                            time_ns,
                        },
                    ),
                    // The target is part of the key: when `latest` moves it becomes another
                    // inode, so the kernel's cached symlink (FUSE_CACHE_SYMLINKS) is never stale.
                    Some(TopChild::Link(t)) => (
                        key(&[b"link", &pkey, name, &t]),
                        What::TopLink {
                            dir: d.clone(),
                            name: name.to_vec(),
                        },
                    ),
                    None => return Err(VfsError::NotFound),
                }
            }
            other => {
                let snap = match other {
                    What::SnapRoot { snap, .. } | What::Node { snap, .. } => *snap,
                    _ => return Err(VfsError::NotDir),
                };
                let tree = self.dir_tree(other, parent)?.ok_or(VfsError::NotDir)?;
                let node = tree.get(name).ok_or(VfsError::NotFound)?;
                (
                    node_key(&snap, &pkey, node),
                    What::Node {
                        snap,
                        node: Box::new(node::EntryNode::from(node)),
                    },
                )
            }
        };
        let ino = self.remember(parent, name, key, what);
        let (what, _) = self.entry(ino)?;
        Ok(self.attr_of(ino, &what))
    }

    /// The entries of directory `ino` from `offset` on (0 is the start; `.` and `..` first),
    /// at most `max` of them.
    ///
    /// # Errors
    /// [`VfsError::NotDir`], [`VfsError::NotFound`], [`VfsError::Io`].
    pub fn readdir(&self, ino: u64, offset: u64, max: usize) -> VResult<Vec<DirItem>> {
        let (what, key) = self.entry(ino)?;
        let parent = lock(&self.inodes).get(&ino).map_or(ROOT_INO, |e| e.parent);
        let mut out = Vec::new();
        if offset == 0 {
            out.push(DirItem {
                ino,
                kind: NodeKind::Dir,
                name: b".".to_vec(),
                next: 1,
            });
        }
        if offset <= 1 {
            out.push(DirItem {
                ino: parent,
                kind: NodeKind::Dir,
                name: b"..".to_vec(),
                next: 2,
            });
        }
        let skip = offset.saturating_sub(2) as usize;
        match &*what {
            What::Meta(d) => {
                self.refresh();
                let children = self.top().children(d).ok_or(VfsError::NotFound)?;
                for (i, (name, c)) in children.into_iter().enumerate().skip(skip).take(max) {
                    let (ckey, kind) = match &c {
                        TopChild::Dir(md) => (meta_key(md), NodeKind::Dir),
                        TopChild::Snap(snap, ..) => (self::key(&[b"snap", &snap.0]), NodeKind::Dir),
                        TopChild::Link(t) => {
                            (self::key(&[b"link", &key, &name, t]), NodeKind::Symlink)
                        }
                    };
                    out.push(DirItem {
                        ino: ino_of(&ckey),
                        kind,
                        name,
                        next: i as u64 + 3,
                    });
                }
            }
            other => {
                let snap = match other {
                    What::SnapRoot { snap, .. } | What::Node { snap, .. } => *snap,
                    _ => return Err(VfsError::NotDir),
                };
                let tree = self.dir_tree(other, ino)?.ok_or(VfsError::NotDir)?;
                for (i, n) in tree.nodes.iter().enumerate().skip(skip).take(max) {
                    if !is_safe_name(&n.name) {
                        tracing::warn!(
                            "{}: entry with an unsafe name {:?} not shown",
                            self.path_of(ino),
                            String::from_utf8_lossy(&n.name)
                        );
                        continue;
                    }
                    out.push(DirItem {
                        ino: ino_of(&node_key(&snap, &key, n)),
                        kind: n.kind,
                        name: n.name.clone(),
                        next: i as u64 + 3,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The target of symlink `ino`.
    ///
    /// # Errors
    /// [`VfsError::NotLink`] if it is not one; [`VfsError::NotFound`] if it has gone.
    pub fn readlink(&self, ino: u64) -> VResult<Vec<u8>> {
        let (what, _) = self.entry(ino)?;
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
        let found = match &*self.entry(ino)?.0 {
            What::Node { node, .. } => node
                .xattrs
                .iter()
                .find(|(k, _)| &**k == name)
                .map(|(_, v)| v.to_vec()),
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
        if let What::Node { node, .. } = &*self.entry(ino)?.0 {
            for (k, _) in &node.xattrs {
                out.extend_from_slice(k);
                out.push(0);
            }
        }
        Ok(out)
    }

    /// (Bytes of packs in the repository, number of snapshots), for `statfs`.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.repo.indexed_packs().values().sum(),
            self.top().len() as u64,
        )
    }
}
