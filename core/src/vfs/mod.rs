//! The snapshot view behind `bakfs mount`: every snapshot of a repository as one read-only tree,
//! with stable inode numbers, answered from tree objects and chunks on demand. It knows nothing
//! of FUSE; `bakfs-fs` maps its calls and errors onto the kernel protocol.
//!
//! Inode numbers are derived from what an entry is (a snapshot id and the names on the way down,
//! or for hard-linked files the source device and inode), so they are the same on every mount
//! and hard links share one. The kernel's lookup counts are kept, so forgotten entries are
//! dropped and memory follows what the kernel caches; an entry inside a snapshot costs a few
//! bytes while the kernel holds it (its directory and its position there), its attributes are
//! read again from the decoded directory, through the tree cache.

mod attr;
mod cache;
mod chunks;
mod dirs;
mod files;
mod inodes;
mod keys;
mod node;
mod refresh;
#[cfg(test)]
mod tests;
pub mod top;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::format::id::{BlobId, SnapshotId};
use crate::format::{is_safe_name, NodeKind, Snapshot, Tree};
use crate::repo::Repository;
use cache::LruCache;
pub use chunks::Decoded;
use files::{Chunk, OpenFile};
use inodes::{Inodes, What};
use keys::{ino_of, key, meta_key, node_key, snap_key};
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
    /// Bytes of decoded directories kept (as they take in memory).
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
    inodes: Mutex<Inodes>,
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

/// Memory a decoded tree takes: its nodes and what they point to, each allocation as glibc's
/// allocator rounds it (8 bytes of header, 16-byte steps, 32 at least). Counting only the
/// bytes of names and chunk ids, a cache given 32 MiB held twice that.
fn tree_bytes(t: &Tree) -> usize {
    fn heap(len: usize) -> usize {
        match len {
            0 => 0,
            n => ((n + 8).next_multiple_of(16)).max(32),
        }
    }
    let node = |n: &crate::format::Node| {
        std::mem::size_of::<crate::format::Node>()
            + heap(n.name.len())
            + heap(n.user.as_ref().map_or(0, String::len))
            + heap(n.group.as_ref().map_or(0, String::len))
            + heap(n.target.as_ref().map_or(0, Vec::len))
            + heap(std::mem::size_of_val(n.content.as_slice()))
            + heap(std::mem::size_of_val(n.xattrs.as_slice()))
            + n.xattrs
                .iter()
                .map(|(k, v)| heap(k.len()) + heap(v.len()))
                .sum::<usize>()
    };
    std::mem::size_of::<Tree>() + 16 + t.nodes.iter().map(node).sum::<usize>()
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
        Ok(Vfs {
            trees: Mutex::new(LruCache::new(opts.tree_cache_bytes)),
            blobs: Mutex::new(LruCache::new(opts.blob_cache_bytes)),
            last_refresh: Mutex::new(Instant::now()),
            repo,
            opts,
            top: RwLock::new(Arc::new(top)),
            manifests: Mutex::new(manifests),
            inodes: Mutex::new(Inodes::new()),
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

    /// The snapshot and tree of directory `what` inside a snapshot (no tree: empty).
    fn snap_dir(what: &What) -> VResult<(SnapshotId, Option<BlobId>)> {
        match what {
            What::SnapRoot { snap, tree, .. } => Ok((*snap, Some(*tree))),
            What::Node { snap, node, .. } if node.kind == NodeKind::Dir => {
                Ok((*snap, node.subtree))
            }
            _ => Err(VfsError::NotDir),
        }
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
        let pwhat = self.entry(parent)?;
        let ino = match &*pwhat {
            What::Meta(d) => {
                self.refresh();
                let (key, what) = match self.top().child(d, name) {
                    Some(TopChild::Dir(md)) => (meta_key(&md), What::Meta(md)),
                    Some(TopChild::Snap(snap, tree, time_ns)) => (
                        snap_key(&snap),
                        What::SnapRoot {
                            snap,
                            tree,
                            time_ns,
                        },
                    ),
                    // The target is part of the key: when `latest` moves it becomes another
                    // inode, so the kernel's cached symlink (FUSE_CACHE_SYMLINKS) is never stale.
                    Some(TopChild::Link(t)) => (
                        key(&[b"link", &meta_key(d), name, &t]),
                        What::TopLink {
                            dir: d.clone(),
                            name: name.to_vec(),
                        },
                    ),
                    None => return Err(VfsError::NotFound),
                };
                self.remember(parent, name, &key, what)
            }
            other => {
                let (snap, tree_id) = Self::snap_dir(other)?;
                let tree_id = tree_id.ok_or(VfsError::NotFound)?;
                let tree = self.tree(&tree_id, parent)?;
                let pos = tree
                    .nodes
                    .binary_search_by(|n| n.name.as_slice().cmp(name))
                    .map_err(|_| VfsError::NotFound)?;
                let dir = dirs::Dir {
                    key: other.dir_key().ok_or(VfsError::NotDir)?,
                    tree: tree_id,
                    snap,
                    ino: parent,
                };
                let key = node_key(&snap, &dir.key, &tree.nodes[pos]);
                let pos = u32::try_from(pos).map_err(|_| VfsError::Io)?;
                self.remember_node(&key, dir, pos)
            }
        };
        let what = self.entry(ino)?;
        Ok(self.attr_of(ino, &what))
    }

    /// The entries of directory `ino` from `offset` on (0 is the start; `.` and `..` first),
    /// at most `max` of them.
    ///
    /// # Errors
    /// [`VfsError::NotDir`], [`VfsError::NotFound`], [`VfsError::Io`].
    pub fn readdir(&self, ino: u64, offset: u64, max: usize) -> VResult<Vec<DirItem>> {
        let what = self.entry(ino)?;
        let parent = self.parent_of(ino);
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
                        TopChild::Snap(snap, ..) => (snap_key(snap), NodeKind::Dir),
                        TopChild::Link(t) => (
                            self::key(&[b"link", &meta_key(d), &name, t]),
                            NodeKind::Symlink,
                        ),
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
                let (snap, tree_id) = Self::snap_dir(other)?;
                let key = other.dir_key().ok_or(VfsError::NotDir)?;
                let tree = match tree_id {
                    Some(id) => self.tree(&id, ino)?,
                    None => Arc::new(Tree::default()),
                };
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

    /// (Bytes of packs in the repository, number of snapshots), for `statfs`.
    pub fn usage(&self) -> (u64, u64) {
        (
            self.repo.indexed_packs().values().sum(),
            self.top().len() as u64,
        )
    }
}
