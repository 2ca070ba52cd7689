//! The walk of a restore: directories, links and special files are made as the trees are read;
//! files are listed in a [`Batch`] that writes them when it is full (and at the end).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;

use nix::sys::stat::{Mode, SFlag};

use crate::error::{Error, Result};
use crate::format::{is_safe_name, Node, NodeKind, Tree};

use super::data::{self, Batch};
use super::meta::{apply_meta, set_times};
use super::Ctx;

/// The walk's state. One thread walks and sends each full batch to `to_write`.
pub(super) struct Walk<'c, 'a> {
    ctx: &'c Ctx<'a>,
    batch: Batch,
    to_write: SyncSender<Batch>,
    links: Links,
}

/// Hard links to make once every batch is written.
#[derive(Default)]
pub(super) struct Links {
    /// The first path restored of each hard-linked inode: (dev, inode) → path.
    first: HashMap<(u64, u64), PathBuf>,
    /// Hard links to make at the end, once their first path was written: (path, (dev, inode)).
    deferred: Vec<(PathBuf, (u64, u64))>,
    /// The times of each directory restored, set again after a hard link is made in it.
    dir_times: HashMap<PathBuf, (i64, i64)>,
}

impl<'c, 'a> Walk<'c, 'a> {
    pub(super) fn new(ctx: &'c Ctx<'a>, scale: data::Scale, to_write: SyncSender<Batch>) -> Self {
        Walk {
            ctx,
            batch: Batch::new(scale),
            to_write,
            links: Links::default(),
        }
    }

    pub(super) fn ctx(&self) -> &'c Ctx<'a> {
        self.ctx
    }

    /// Restores the entries of `tree` into the existing directory `dir`. Returns whether anything
    /// was restored (for include filters).
    pub(super) fn children(
        &mut self,
        tree: &Tree,
        dir: &Path,
        snap_dir: &str,
        included: bool,
    ) -> bool {
        let mut prev: Option<&[u8]> = None;
        let mut any = false;
        for n in &tree.nodes {
            // Refuse trees with unsafe or duplicate names.
            let dup = prev.is_some_and(|p| p >= n.name.as_slice());
            if !is_safe_name(&n.name) || dup {
                self.ctx.fail(
                    &dir.join(std::ffi::OsStr::from_bytes(&n.name)),
                    &Error::Invalid(format!(
                        "refusing entry name {:?}",
                        String::from_utf8_lossy(&n.name)
                    )),
                );
                continue;
            }
            prev = Some(&n.name);
            any |= self.node(n, dir, snap_dir, included);
        }
        any
    }

    /// Restores one entry of `dir`. Returns whether it (or something in it) was restored.
    pub(super) fn node(
        &mut self,
        n: &Node,
        dir: &Path,
        snap_dir: &str,
        parent_included: bool,
    ) -> bool {
        let path = dir.join(std::ffi::OsStr::from_bytes(&n.name));
        let snap_path = format!("{snap_dir}/{}", String::from_utf8_lossy(&n.name));
        let filters = &self.ctx.filters;
        if filters.exclude.matches(Path::new(&snap_path)) {
            return false;
        }
        let included = parent_included || filters.selects(&snap_path);
        if n.kind != NodeKind::Dir && !included {
            return false;
        }
        let r = match n.kind {
            NodeKind::Dir => self.dir(n, &path, &snap_path, included),
            _ => self.leaf(n, &path).map(|()| true),
        };
        r.unwrap_or_else(|e| {
            self.ctx.fail(&path, &e);
            false
        })
    }

    /// Gives `path` the metadata of `n` once the files listed so far are written.
    pub(super) fn meta_later(&mut self, path: &Path, n: &Node) {
        if self.batch.add_dir(path.to_path_buf(), n.clone()) {
            self.flush();
        }
    }

    fn dir(&mut self, n: &Node, path: &Path, snap_path: &str, included: bool) -> Result<bool> {
        let io = |e| Error::io(path.display(), e);
        let created = match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => false,
            Ok(_) => {
                fs::remove_file(path).map_err(io)?;
                fs::create_dir(path).map_err(io)?;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(path).map_err(io)?;
                true
            }
            Err(e) => return Err(io(e)),
        };
        // A new directory is owner-only while its children are written.
        if created {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        }
        let id = n
            .subtree
            .ok_or_else(|| Error::damaged(format!("directory {snap_path}"), "no subtree"))?;
        let tree = self.ctx.repo.read_tree(&id)?;
        let any = self.children(&tree, path, snap_path, included);
        if !included && !any {
            if created {
                let _ = fs::remove_dir(path);
            }
            return Ok(false);
        }
        self.links
            .dir_times
            .insert(path.to_path_buf(), (n.mtime_ns, n.mtime_ns));
        self.ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
        self.meta_later(path, n);
        Ok(true)
    }

    fn leaf(&mut self, n: &Node, path: &Path) -> Result<()> {
        let io = |e| Error::io(path.display(), e);
        let linked = n.nlink > 1 && n.inode != 0;
        // A plain file is created with O_EXCL|O_NOFOLLOW, which fails on anything in the way,
        // and only then is the way cleared (one lookup less per file in the common case).
        if n.kind != NodeKind::File || linked {
            data::clear_path(path).map_err(io)?;
        }
        match n.kind {
            NodeKind::File => {
                if linked {
                    let key = (n.dev, n.inode);
                    if self.links.first.contains_key(&key) {
                        self.links.deferred.push((path.to_path_buf(), key));
                        return Ok(());
                    }
                    self.links.first.insert(key, path.to_path_buf());
                }
                if self.batch.add_file(path.to_path_buf(), n.clone()) {
                    self.flush();
                }
                return Ok(());
            }
            NodeKind::Symlink => {
                let t = n
                    .target
                    .as_deref()
                    .ok_or_else(|| Error::damaged("symlink", "no target"))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), path).map_err(io)?;
            }
            NodeKind::Fifo => nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
                .map_err(|e| io(e.into()))?,
            NodeKind::CharDev | NodeKind::BlockDev | NodeKind::Socket => {
                let kind = match n.kind {
                    NodeKind::CharDev => SFlag::S_IFCHR,
                    NodeKind::BlockDev => SFlag::S_IFBLK,
                    _ => SFlag::S_IFSOCK,
                };
                nix::sys::stat::mknod(
                    path,
                    kind,
                    Mode::from_bits_truncate(0o600),
                    n.rdev as nix::libc::dev_t,
                )
                .map_err(|e| io(e.into()))?;
            }
            NodeKind::Dir => {}
        }
        apply_meta(self.ctx, path, n);
        self.ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends the files listed so far to be written (then their directories given their
    /// metadata).
    fn flush(&mut self) {
        let next = Batch::new(self.batch.scale());
        let full = std::mem::replace(&mut self.batch, next);
        // The receiver stops only when this thread is done.
        let _ = self.to_write.send(full);
    }

    /// Sends what is left; returns the hard links to make.
    pub(super) fn finish(mut self) -> Links {
        self.flush();
        self.links
    }
}

impl Links {
    /// Makes the hard links whose first path was restored elsewhere.
    pub(super) fn make(self, ctx: &Ctx) {
        for (path, key) in self.deferred {
            let r = match self.first.get(&key) {
                Some(f) => fs::hard_link(f, &path).map_err(|e| Error::io(path.display(), e)),
                None => Err(Error::Invalid("hard link target was not restored".into())),
            };
            match r {
                Ok(()) => {
                    ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => ctx.fail(&path, &e),
            }
            // Linking changed the parent's times: set them again.
            if let Some((dir, times)) = path
                .parent()
                .and_then(|d| Some(d).zip(self.dir_times.get(d)))
            {
                set_times(dir, times.0, times.1);
            }
        }
    }
}
