//! Restoring a snapshot (or part of it) into a directory.
//!
//! Safety rules: every name is checked to be a single safe component (no `..`, `/`, NUL);
//! duplicate names are refused; nothing is created through an existing symlink (an existing
//! non-directory in the way is removed first, files are opened with `O_NOFOLLOW|O_EXCL`);
//! hard links are recorded as inode numbers, so they can only join files of this restore.
//! Every chunk is authenticated and checked against its id before a byte of it is written; a file
//! whose data is damaged is removed and reported, the others are restored.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use nix::sys::stat::{Mode, SFlag};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::id::BlobId;
use crate::format::{is_safe_name, Node, NodeKind, Tree};
use crate::glob::Patterns;
use crate::repo::Repository;

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Only entries whose snapshot path (e.g. `/etc/ssh/sshd_config`) or an ancestor matches.
    pub include: Vec<String>,
    /// Skip entries whose path or name matches.
    pub exclude: Vec<String>,
    /// Only these exact snapshot paths (`/etc/hosts`; files, links and other leaves: the
    /// directories leading to them are made), besides what `include` selects. No pattern
    /// characters, so any name can be given (a drill's random sample).
    pub only: Option<HashSet<String>>,
    /// Read every restored file back and compare it with the snapshot.
    pub verify: bool,
}

/// Live counters.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// Entries restored.
    pub entries: AtomicU64,
    /// File bytes written.
    pub bytes: AtomicU64,
}

/// The outcome of a restore.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Entries restored.
    pub entries: u64,
    /// Bytes of file data.
    pub bytes: u64,
    /// Entries refused (unsafe names) or failed (I/O, damage), each naming its path once. They
    /// are not logged: showing them is the caller's job.
    pub errors: Vec<String>,
    /// Whether some failures were data damage (exit code 13).
    pub damaged: bool,
    /// The failures that were data damage: the path in the target and the message (which is
    /// in `errors` too).
    pub damaged_entries: Vec<(PathBuf, String)>,
}

struct Filters {
    include: Option<Patterns>,
    only: Option<HashSet<String>>,
    exclude: Patterns,
}

impl Filters {
    /// Whether everything is restored (no include pattern, no list of paths).
    fn all(&self) -> bool {
        self.include.is_none() && self.only.is_none()
    }

    /// Whether the entry at snapshot path `p` was asked for by name or pattern.
    fn selects(&self, p: &str) -> bool {
        self.only.as_ref().is_some_and(|o| o.contains(p))
            || self
                .include
                .as_ref()
                .is_some_and(|g| g.matches(Path::new(p)))
    }
}

/// A hard link to make once its target exists: (path, (dev, inode) of the target, times).
type DeferredLink = (PathBuf, (u64, u64), Option<(i64, i64)>);

struct Ctx<'a> {
    repo: &'a Repository,
    filters: Filters,
    progress: &'a RestoreProgress,
    errors: Mutex<Vec<String>>,
    damaged: Mutex<Vec<(PathBuf, String)>>,
    hardlinks: Mutex<HashMap<(u64, u64), PathBuf>>,
    deferred_links: Mutex<Vec<DeferredLink>>,
    dir_times: Mutex<HashMap<PathBuf, (i64, i64)>>,
    verify: bool,
    is_root: bool,
}

impl Ctx<'_> {
    /// Records a failed entry for the report (the caller shows it: it is not logged here too).
    fn fail(&self, path: &Path, e: &Error) {
        let msg = e.about(path);
        if e.kind() == crate::ErrorKind::Damaged {
            self.damaged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((path.to_path_buf(), msg.clone()));
        }
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
    }
}

/// Finds the node at `subpath` (absolute, inside the snapshot) below `root`.
///
/// # Errors
/// [`Error::NotFound`] if a component is missing.
pub fn find_node(repo: &Repository, root: &BlobId, subpath: &str) -> Result<Option<Node>> {
    let mut tree = repo.read_tree(root)?;
    let comps: Vec<&str> = subpath
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut node = None;
    for (i, c) in comps.iter().enumerate() {
        let n = tree
            .get(c.as_bytes())
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{subpath}: no such path in the snapshot")))?;
        if i + 1 < comps.len() {
            let id = n
                .subtree
                .ok_or_else(|| Error::NotFound(format!("{subpath}: {c} is not a directory")))?;
            tree = repo.read_tree(&id)?;
        }
        node = Some(n);
    }
    Ok(node)
}

/// Restores the snapshot tree `root` (or the entry at `subpath` in it) into `target`.
///
/// # Errors
/// Only if the target cannot be created or the root tree cannot be read; failures of single
/// entries are listed in the report.
pub fn restore(
    repo: &Repository,
    root: &BlobId,
    subpath: Option<&str>,
    target: &Path,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreReport> {
    fs::create_dir_all(target).map_err(|e| Error::io(target.display(), e))?;
    let ctx = Ctx {
        repo,
        filters: Filters {
            include: Some(Patterns::new(&opts.include, "include")?).filter(|p| !p.is_empty()),
            only: opts.only.clone(),
            exclude: Patterns::new(&opts.exclude, "exclude")?,
        },
        progress,
        errors: Mutex::new(Vec::new()),
        damaged: Default::default(),
        hardlinks: Mutex::new(HashMap::new()),
        deferred_links: Mutex::new(Vec::new()),
        dir_times: Mutex::new(HashMap::new()),
        verify: opts.verify,
        is_root: nix::unistd::geteuid().is_root(),
    };
    let sub = subpath
        .map(|s| format!("/{}", s.trim_matches('/')))
        .filter(|s| s != "/");
    match &sub {
        None => {
            let tree = repo.read_tree(root)?;
            restore_children(&ctx, &tree, target, "", ctx.filters.all());
        }
        Some(s) => match find_node(repo, root, s)? {
            Some(n) if n.kind == NodeKind::Dir => {
                let id = n
                    .subtree
                    .ok_or_else(|| Error::damaged(format!("directory {s}"), "no subtree"))?;
                let tree = repo.read_tree(&id)?;
                restore_children(&ctx, &tree, target, s, ctx.filters.all());
                apply_meta(&ctx, target, &n);
            }
            Some(n) if !is_safe_name(&n.name) => {
                return Err(Error::Invalid(format!(
                    "refusing entry name {:?}",
                    String::from_utf8_lossy(&n.name)
                )));
            }
            Some(n) => {
                restore_node(
                    &ctx,
                    &n,
                    target,
                    s.rsplit_once('/').map(|x| x.0).unwrap_or(""),
                    ctx.filters.all(),
                );
            }
            None => {}
        },
    }
    // Hard links whose first file was restored elsewhere.
    let deferred =
        std::mem::take(&mut *ctx.deferred_links.lock().unwrap_or_else(|p| p.into_inner()));
    let dir_times = std::mem::take(&mut *ctx.dir_times.lock().unwrap_or_else(|p| p.into_inner()));
    for (path, key, _) in deferred {
        let node = path.parent().and_then(|d| dir_times.get(d).copied());
        let first = ctx
            .hardlinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let r = match first {
            Some(f) => fs::hard_link(&f, &path).map_err(|e| Error::io(path.display(), e)),
            None => Err(Error::Invalid("hard link target was not restored".into())),
        };
        match r {
            Ok(()) => {
                ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => ctx.fail(&path, &e),
        }
        // Linking changed the parent's times: set them again.
        if let Some((dir, times)) = path.parent().zip(node) {
            set_times(dir, times.0, times.1);
        }
    }
    let damaged_entries = ctx.damaged.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(RestoreReport {
        entries: progress.entries.load(Ordering::Relaxed),
        bytes: progress.bytes.load(Ordering::Relaxed),
        errors: ctx.errors.into_inner().unwrap_or_else(|p| p.into_inner()),
        damaged: !damaged_entries.is_empty(),
        damaged_entries,
    })
}

/// Restores the entries of `tree` into the existing directory `dir`. Returns whether anything was
/// restored (for include filters).
fn restore_children(ctx: &Ctx, tree: &Tree, dir: &Path, snap_dir: &str, included: bool) -> bool {
    // Refuse trees with unsafe or duplicate names.
    let mut prev: Option<&[u8]> = None;
    let mut ok_nodes = Vec::new();
    for n in &tree.nodes {
        let dup = prev.is_some_and(|p| p >= n.name.as_slice());
        if !is_safe_name(&n.name) || dup {
            ctx.fail(
                &dir.join(std::ffi::OsStr::from_bytes(&n.name)),
                &Error::Invalid(format!(
                    "refusing entry name {:?}",
                    String::from_utf8_lossy(&n.name)
                )),
            );
            continue;
        }
        prev = Some(&n.name);
        ok_nodes.push(n);
    }
    let any: Vec<bool> = ok_nodes
        .par_iter()
        .map(|n| restore_node(ctx, n, dir, snap_dir, included))
        .collect();
    any.into_iter().any(|b| b)
}

fn restore_node(ctx: &Ctx, n: &Node, dir: &Path, snap_dir: &str, parent_included: bool) -> bool {
    let name = std::ffi::OsStr::from_bytes(&n.name);
    let path = dir.join(name);
    let snap_path = format!("{snap_dir}/{}", String::from_utf8_lossy(&n.name));
    if ctx.filters.exclude.matches(Path::new(&snap_path)) {
        return false;
    }
    let included = parent_included || ctx.filters.selects(&snap_path);
    if n.kind != NodeKind::Dir && !included {
        return false;
    }
    let r = match n.kind {
        NodeKind::Dir => restore_dir(ctx, n, &path, &snap_path, included),
        _ => restore_leaf(ctx, n, &path).map(|()| true),
    };
    match r {
        Ok(b) => b,
        Err(e) => {
            ctx.fail(&path, &e);
            false
        }
    }
}

/// Removes whatever non-directory is at `path`, so that nothing is written through it.
fn clear_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn restore_dir(ctx: &Ctx, n: &Node, path: &Path, snap_path: &str, included: bool) -> Result<bool> {
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
    let tree = ctx.repo.read_tree(&id)?;
    let any = restore_children(ctx, &tree, path, snap_path, included);
    if !included && !any {
        if created {
            let _ = fs::remove_dir(path);
        }
        return Ok(false);
    }
    apply_meta(ctx, path, n);
    ctx.dir_times
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(path.to_path_buf(), (n.mtime_ns, n.mtime_ns));
    ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
    Ok(true)
}

fn restore_leaf(ctx: &Ctx, n: &Node, path: &Path) -> Result<()> {
    let io = |e| Error::io(path.display(), e);
    // A plain file is created with O_EXCL|O_NOFOLLOW, which fails on anything in the way, and
    // only then is the way cleared (one lookup less per file in the common case).
    if n.kind != NodeKind::File || (n.nlink > 1 && n.inode != 0) {
        clear_path(path).map_err(io)?;
    }
    match n.kind {
        NodeKind::File => {
            if n.nlink > 1 && n.inode != 0 {
                let key = (n.dev, n.inode);
                let mut hl = ctx.hardlinks.lock().unwrap_or_else(|p| p.into_inner());
                if hl.contains_key(&key) {
                    drop(hl);
                    ctx.deferred_links
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((path.to_path_buf(), key, None));
                    return Ok(());
                }
                hl.insert(key, path.to_path_buf());
            }
            match write_file(ctx, n, path) {
                Ok(f) => {
                    // Through the open file: no path lookups for owner, mode, xattrs, times.
                    apply_meta_file(ctx, &f, path, n);
                    ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => {
                    let _ = fs::remove_file(path);
                    return Err(e);
                }
            }
        }
        NodeKind::Symlink => {
            let t = n
                .target
                .as_deref()
                .ok_or_else(|| Error::damaged("symlink", "no target"))?;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), path).map_err(io)?;
        }
        NodeKind::Fifo => {
            nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600)).map_err(|e| io(e.into()))?
        }
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
    apply_meta(ctx, path, n);
    ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn write_file(ctx: &Ctx, n: &Node, path: &Path) -> Result<fs::File> {
    let io = |e| Error::io(path.display(), e);
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    let f = match open() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            clear_path(path).map_err(io)?;
            open().map_err(io)?
        }
        r => r.map_err(io)?,
    };
    let mut off = 0u64;
    let mut written_end = 0u64;
    for id in &n.content {
        let data = ctx.repo.read_blob(id)?;
        if let Some(end) = write_sparse(&f, &data, off).map_err(io)? {
            written_end = end;
        }
        off += data.len() as u64;
        ctx.progress
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
    }
    // Only a file that ends in a hole needs its size set.
    if written_end < off {
        f.set_len(off).map_err(io)?;
    }
    if off != n.size {
        return Err(Error::damaged(
            format!("file {}", path.display()),
            format!("content is {off} bytes, metadata says {}", n.size),
        ));
    }
    if ctx.verify {
        verify_file(ctx, n, path)?;
    }
    Ok(f)
}

/// Writes `data` at `off`, leaving 4 KiB blocks of zeros as holes. Returns the file offset just
/// after the last byte written, if any was.
fn write_sparse(f: &fs::File, data: &[u8], off: u64) -> io::Result<Option<u64>> {
    const BLOCK: usize = 4096;
    let mut last = None;
    let mut i = 0;
    while i < data.len() {
        // Skip zero blocks.
        while i < data.len() && data[i..(i + BLOCK).min(data.len())].iter().all(|&b| b == 0) {
            i += BLOCK;
        }
        let start = i.min(data.len());
        while i < data.len() && !data[i..(i + BLOCK).min(data.len())].iter().all(|&b| b == 0) {
            i += BLOCK;
        }
        let end = i.min(data.len());
        if end > start {
            f.write_all_at(&data[start..end], off + start as u64)?;
            last = Some(off + end as u64);
        }
    }
    Ok(last)
}

fn set_times(path: &Path, atime_ns: i64, mtime_ns: i64) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let ts = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let _ = utimensat(
        None,
        path,
        &ts(atime_ns),
        &ts(mtime_ns),
        UtimensatFlags::NoFollowSymlink,
    );
}

fn verify_file(ctx: &Ctx, n: &Node, path: &Path) -> Result<()> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(path.display(), e))?;
    let mut off = 0u64;
    for id in &n.content {
        let len = ctx
            .repo
            .locate_for_read(id)
            .map(|l| l.entry.raw_len as usize)
            .unwrap_or(0);
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off)
            .map_err(|e| Error::io(path.display(), e))?;
        if ctx.repo.keys().blob_id(&buf) != *id {
            return Err(Error::damaged(
                format!("restored file {}", path.display()),
                format!("bytes at offset {off} differ from the snapshot"),
            ));
        }
        off += len as u64;
    }
    Ok(())
}

/// [`apply_meta`] for a regular file just written, through its open descriptor.
fn apply_meta_file(ctx: &Ctx, f: &fs::File, path: &Path, n: &Node) {
    use nix::sys::stat::{fchmod, futimens, Mode};
    use nix::sys::time::TimeSpec;
    use nix::unistd::{fchown, Gid, Uid};
    use std::os::fd::AsRawFd;
    use xattr::FileExt;
    let fd = f.as_raw_fd();
    if let Err(e) = fchown(fd, Some(Uid::from_raw(n.uid)), Some(Gid::from_raw(n.gid))) {
        if ctx.is_root {
            ctx.fail(path, &Error::io(path.display(), e.into()));
        }
    }
    if let Err(e) = fchmod(fd, Mode::from_bits_truncate(n.mode & 0o7777)) {
        ctx.fail(path, &Error::io(path.display(), e.into()));
    }
    for (k, v) in &n.xattrs {
        if let Err(e) = f.set_xattr(std::ffi::OsStr::from_bytes(k), v) {
            if ctx.is_root {
                ctx.fail(
                    path,
                    &Error::io(
                        format!("{}: xattr {}", path.display(), String::from_utf8_lossy(k)),
                        e,
                    ),
                );
            }
        }
    }
    let ts = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    if let Err(e) = futimens(fd, &ts(n.mtime_ns), &ts(n.mtime_ns)) {
        ctx.fail(path, &Error::io(path.display(), e.into()));
    }
}

/// Applies owner, mode, extended attributes and times (in that order: chown clears setuid bits).
fn apply_meta(ctx: &Ctx, path: &Path, n: &Node) {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    use nix::unistd::{fchownat, Gid, Uid};
    let r = fchownat(
        None,
        path,
        Some(Uid::from_raw(n.uid)),
        Some(Gid::from_raw(n.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    );
    if let Err(e) = r {
        if ctx.is_root {
            ctx.fail(path, &Error::io(path.display(), e.into()));
        }
    }
    if n.kind != NodeKind::Symlink {
        if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(n.mode & 0o7777)) {
            ctx.fail(path, &Error::io(path.display(), e));
        }
    }
    for (k, v) in &n.xattrs {
        if let Err(e) = xattr::set(path, std::ffi::OsStr::from_bytes(k), v) {
            // user.* xattrs cannot be set on symlinks; security.* needs privileges.
            if n.kind != NodeKind::Symlink && ctx.is_root {
                ctx.fail(
                    path,
                    &Error::io(
                        format!("{}: xattr {}", path.display(), String::from_utf8_lossy(k)),
                        e,
                    ),
                );
            }
        }
    }
    let ts = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    if let Err(e) = utimensat(
        None,
        path,
        &ts(n.mtime_ns),
        &ts(n.mtime_ns),
        UtimensatFlags::NoFollowSymlink,
    ) {
        ctx.fail(path, &Error::io(path.display(), e.into()));
    }
}
