//! Making a snapshot: walk the sources, chunk and store changed files, write trees and the
//! manifest. Directories are processed in parallel (rayon work stealing); a file whose size,
//! mtime, ctime and inode match the parent snapshot is not read again.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::id::{BlobId, SnapshotId};
use crate::format::{BlobKind, Node, NodeKind, Snapshot, Summary, Tree};
use crate::glob::Patterns;
use crate::meta::{self, NameCache};
use crate::repo::Repository;

/// What to back up and how.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Paths to back up (made absolute).
    pub paths: Vec<PathBuf>,
    /// Exclude globs: without `/` they match a name anywhere; with `/` they match a full path
    /// (`**` crosses directories).
    pub excludes: Vec<String>,
    /// Do not descend into other filesystems (their mount points are kept, empty).
    pub one_file_system: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Host name recorded.
    pub host: String,
    /// Job name recorded.
    pub job: Option<String>,
    /// Parent snapshot for change detection.
    pub parent: Option<(SnapshotId, Snapshot)>,
    /// Time recorded in the snapshot (Unix ns).
    pub time_ns: i64,
}

/// Live counters for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries processed.
    pub entries: AtomicU64,
    /// Bytes read from files.
    pub bytes_read: AtomicU64,
    /// Bytes in files seen (read or unchanged).
    pub bytes_seen: AtomicU64,
    /// Plaintext bytes of new blobs.
    pub bytes_added: AtomicU64,
    /// Warnings so far.
    pub errors: AtomicU64,
}

/// The outcome of a backup.
#[derive(Debug)]
pub struct BackupReport {
    /// The new snapshot's id.
    pub id: SnapshotId,
    /// The snapshot manifest.
    pub snapshot: Snapshot,
    /// Problems with single files (unreadable, changed while read, vanished), each naming its
    /// path once. They are not logged: showing them is the caller's job.
    pub warnings: Vec<String>,
    /// Packs written (for the catalog).
    pub packs_written: Vec<crate::format::IndexPack>,
    /// Every pack the snapshot needs, with sizes (for the catalog and media copies).
    pub packs_needed: Vec<(crate::format::id::PackId, u64)>,
}

/// The packs that hold `blobs`, with their sizes.
pub fn packs_of(
    repo: &Repository,
    blobs: impl IntoIterator<Item = BlobId>,
) -> Vec<(crate::format::id::PackId, u64)> {
    let sizes = repo.indexed_packs();
    let mut set = std::collections::BTreeSet::new();
    for b in blobs {
        if let Some(l) = repo.locate(&b) {
            set.insert(l.pack);
        }
    }
    set.into_iter()
        .map(|p| (p, sizes.get(&p).copied().unwrap_or(0)))
        .collect()
}

struct Ctx<'a> {
    repo: &'a Repository,
    excludes: Patterns,
    one_fs: bool,
    names: NameCache,
    progress: &'a Progress,
    warnings: Mutex<Vec<String>>,
    /// The first repository error: it aborts the backup (a source error is only a warning).
    fatal: Mutex<Option<Error>>,
    blobs: Mutex<std::collections::HashSet<BlobId>>,
    files: AtomicU64,
    dirs: AtomicU64,
    bytes: AtomicU64,
}

impl Ctx<'_> {
    /// Stores a blob; a failure is fatal for the whole backup.
    fn save(&self, kind: BlobKind, data: &[u8]) -> Result<(BlobId, u64)> {
        if self.aborted() {
            return Err(Error::Invalid("backup aborted".into()));
        }
        self.repo.save_blob(kind, data).map_err(|e| {
            let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            if f.is_none() {
                *f = Some(e);
            }
            Error::Invalid("backup aborted".into())
        })
    }

    fn aborted(&self) -> bool {
        self.fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Records a warning for the report (the caller shows it: it is not logged here too).
    fn warn(&self, msg: String) {
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
    }
}

/// Makes a snapshot of `opts.paths`.
///
/// # Errors
/// Repository I/O errors (a full disk, say). Problems with single source files are warnings in
/// the report, not errors; a backup path that does not exist is an error.
pub fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupReport> {
    let started = std::time::Instant::now();
    if opts.paths.is_empty() {
        return Err(Error::Invalid(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let tops = source_paths(&opts.paths)?;

    let ctx = Ctx {
        repo,
        excludes: Patterns::new(&opts.excludes, "exclude")?,
        one_fs: opts.one_file_system,
        names: NameCache::default(),
        progress,
        warnings: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
        blobs: Mutex::new(std::collections::HashSet::new()),
        files: AtomicU64::new(0),
        dirs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    let parent_root = match &opts.parent {
        Some((_, s)) => match repo.read_tree(&s.tree) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("parent snapshot unreadable, reading every file: {e}");
                None
            }
        },
        None => None,
    };

    // A trie of the paths: each top path hangs below its real parent directories.
    let mut trie = Trie::default();
    for p in &tops {
        let comps: Vec<OsString> = p
            .components()
            .filter_map(|c| {
                if let Component::Normal(n) = c {
                    Some(n.to_os_string())
                } else {
                    None
                }
            })
            .collect();
        trie.insert(&comps);
    }
    let root_tree = if tops.iter().any(|p| p == Path::new("/")) {
        // Backing up "/" itself: the root's entries form the root tree.
        let m = fs::symlink_metadata("/").map_err(|e| Error::io("/", e))?;
        let node = dir_node(
            &ctx,
            Path::new("/"),
            OsStr::new("/"),
            &m,
            parent_root.as_ref(),
            m.dev(),
            None,
        )
        .map_err(|e| {
            ctx.fatal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or(e)
        })?;
        node.subtree
            .ok_or_else(|| Error::Invalid("root is not a directory".into()))?
    } else {
        match save_trie(&ctx, &trie, Path::new("/"), parent_root.as_ref()) {
            Ok(id) => id,
            Err(e) => {
                return Err(ctx
                    .fatal
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or(e))
            }
        }
    };

    if let Some(e) = ctx.fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    let packs = repo.flush()?;
    let mut blobs = ctx.blobs.into_inner().unwrap_or_else(|p| p.into_inner());
    blobs.insert(root_tree);
    let packs_needed = packs_of(repo, blobs);
    let bytes_stored = packs.iter().map(|p| p.size).sum();
    let warnings = ctx.warnings.into_inner().unwrap_or_else(|p| p.into_inner());
    let summary = Summary {
        files: ctx.files.load(Ordering::Relaxed),
        dirs: ctx.dirs.load(Ordering::Relaxed),
        bytes: ctx.bytes.load(Ordering::Relaxed),
        bytes_read: progress.bytes_read.load(Ordering::Relaxed),
        bytes_added: progress.bytes_added.load(Ordering::Relaxed),
        bytes_stored,
        errors: warnings.len() as u64,
        incomplete: !warnings.is_empty(),
        duration_s: started.elapsed().as_secs_f64(),
    };
    let snapshot = Snapshot {
        time_ns: opts.time_ns,
        host: opts.host.clone(),
        user: nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_default(),
        paths: tops.iter().map(|p| p.display().to_string()).collect(),
        tags: opts.tags.clone(),
        tree: root_tree,
        parent: opts.parent.as_ref().map(|(id, _)| *id),
        job: opts.job.clone(),
        excludes: opts.excludes.clone(),
        summary,
    };
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupReport {
        id,
        snapshot,
        warnings,
        packs_written: packs,
        packs_needed,
    })
}

/// The absolute, normalised paths a backup of `paths` records: sorted, duplicates and paths
/// inside another given path dropped. Each must exist.
///
/// # Errors
/// A path that cannot be made absolute or does not exist.
pub fn source_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut abs = Vec::new();
    for p in paths {
        let a = normalize(&std::path::absolute(p).map_err(|e| Error::io(p.display(), e))?);
        fs::symlink_metadata(&a).map_err(|e| Error::io(a.display(), e))?;
        abs.push(a);
    }
    abs.sort();
    abs.dedup();
    Ok(abs
        .iter()
        .filter(|p| !abs.iter().any(|q| q != *p && p.starts_with(q)))
        .cloned()
        .collect())
}

/// Stores a stream as a snapshot holding one file named `name`.
///
/// # Errors
/// Reading the stream or repository I/O errors.
pub fn backup_stdin(
    repo: &Repository,
    input: &mut dyn Read,
    name: &str,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupReport> {
    let started = std::time::Instant::now();
    if !crate::format::is_safe_name(name.as_bytes()) {
        return Err(Error::Invalid(format!(
            "--stdin-name {name:?} must be a plain file name"
        )));
    }
    let content = match chunk_stream(repo.chunker(), input, progress, &|d| {
        repo.save_blob(BlobKind::Data, d)
    }) {
        Ok(x) => x,
        Err(StreamError::Source(e)) => return Err(Error::io("standard input", e)),
        Err(StreamError::Repo(e)) => return Err(e),
    };
    let (blobs, size) = content;
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let names = NameCache::default();
    let node = Node {
        name: name.as_bytes().to_vec(),
        kind: NodeKind::File,
        mode: 0o600,
        uid,
        gid,
        user: names.user(uid),
        group: names.group(gid),
        size,
        mtime_ns: opts.time_ns,
        ctime_ns: opts.time_ns,
        inode: 0,
        dev: 0,
        nlink: 1,
        rdev: 0,
        target: None,
        xattrs: vec![],
        content: blobs,
        subtree: None,
    };
    let mut blobs: Vec<BlobId> = node.content.clone();
    let (tree, _) = repo.save_blob(BlobKind::Tree, &Tree { nodes: vec![node] }.encode())?;
    blobs.push(tree);
    let packs = repo.flush()?;
    let packs_needed = packs_of(repo, blobs);
    let summary = Summary {
        files: 1,
        bytes: size,
        bytes_read: size,
        bytes_added: progress.bytes_added.load(Ordering::Relaxed),
        bytes_stored: packs.iter().map(|p| p.size).sum(),
        duration_s: started.elapsed().as_secs_f64(),
        ..Summary::default()
    };
    let snapshot = Snapshot {
        time_ns: opts.time_ns,
        host: opts.host.clone(),
        user: names.user(uid).unwrap_or_default(),
        paths: vec![format!("/{name}")],
        tags: opts.tags.clone(),
        tree,
        parent: None,
        job: opts.job.clone(),
        excludes: vec![],
        summary,
    };
    let id = repo.save_snapshot(&snapshot)?;
    Ok(BackupReport {
        id,
        snapshot,
        warnings: vec![],
        packs_written: packs,
        packs_needed,
    })
}

#[derive(Default)]
struct Trie {
    leaf: bool,
    children: BTreeMap<OsString, Trie>,
}

impl Trie {
    fn insert(&mut self, comps: &[OsString]) {
        match comps.split_first() {
            None => self.leaf = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }
}

fn save_trie(ctx: &Ctx, trie: &Trie, path: &Path, parent: Option<&Tree>) -> Result<BlobId> {
    let nodes: Vec<Option<Node>> = trie
        .children
        .par_iter()
        .map(|(name, child)| -> Result<Option<Node>> {
            let p = path.join(name);
            let pnode = parent.and_then(|t| t.get(name.as_bytes()));
            if child.leaf {
                return Ok(entry_node(ctx, &p, name, pnode, None));
            }
            let m = fs::symlink_metadata(&p).map_err(|e| Error::io(p.display(), e))?;
            let ptree = pnode
                .and_then(|n| n.subtree)
                .and_then(|id| ctx.repo.read_tree(&id).ok());
            let mut node = meta::node_from_metadata(name, &m, &ctx.names);
            node.kind = NodeKind::Dir;
            node.xattrs = meta::read_xattrs(&p).unwrap_or_default();
            node.subtree = Some(save_trie(ctx, child, &p, ptree.as_ref())?);
            Ok(Some(node))
        })
        .collect::<Result<_>>()?;
    let tree = Tree {
        nodes: nodes.into_iter().flatten().collect(),
    };
    let id = ctx.save(BlobKind::Tree, &tree.encode())?.0;
    ctx.blobs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id);
    Ok(id)
}

/// The node for one entry, or None (with a warning) if it cannot be read.
fn entry_node(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    parent: Option<&Node>,
    root_dev: Option<u64>,
) -> Option<Node> {
    entry_node_with(ctx, path, name, parent, root_dev, None)
}

fn entry_node_with(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    parent: Option<&Node>,
    root_dev: Option<u64>,
    meta: Option<Metadata>,
) -> Option<Node> {
    if ctx.aborted() {
        return None;
    }
    let m = match meta.map(Ok).unwrap_or_else(|| fs::symlink_metadata(path)) {
        Ok(m) => m,
        Err(e) => {
            ctx.warn(format!("{}: {e}", path.display()));
            return None;
        }
    };
    ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
    let result = match meta::kind_of(&m) {
        NodeKind::Dir => {
            let dev = root_dev.unwrap_or(m.dev());
            let ptree = parent
                .and_then(|n| n.subtree)
                .and_then(|id| ctx.repo.read_tree(&id).ok());
            dir_node(ctx, path, name, &m, ptree.as_ref(), dev, parent)
        }
        NodeKind::File => file_node(ctx, path, name, &m, parent),
        kind => other_node(ctx, path, name, &m, kind, parent),
    };
    match result {
        Ok(n) => Some(n),
        Err(_) if ctx.aborted() => None,
        Err(e) => {
            ctx.warn(e.about(path));
            None
        }
    }
}

/// Sets the node's xattrs: reused from the parent snapshot's node when inode and ctime are the
/// same (setting an xattr changes ctime), else read.
fn with_xattrs_reuse(ctx: &Ctx, path: &Path, mut node: Node, parent: Option<&Node>) -> Node {
    if let Some(p) = parent {
        if p.inode == node.inode && p.ctime_ns == node.ctime_ns && p.kind == node.kind {
            node.xattrs = p.xattrs.clone();
            return node;
        }
    }
    with_xattrs(ctx, path, node)
}

fn with_xattrs(ctx: &Ctx, path: &Path, mut node: Node) -> Node {
    match meta::read_xattrs(path) {
        Ok(x) => node.xattrs = x,
        Err(e) => ctx.warn(format!(
            "{}: reading extended attributes: {e}",
            path.display()
        )),
    }
    node
}

fn dir_node(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    m: &Metadata,
    parent: Option<&Tree>,
    root_dev: u64,
    pnode: Option<&Node>,
) -> Result<Node> {
    ctx.dirs.fetch_add(1, Ordering::Relaxed);
    let node = with_xattrs_reuse(
        ctx,
        path,
        meta::node_from_metadata(name, m, &ctx.names),
        pnode,
    );
    let mut entries: Vec<(OsString, Option<Metadata>)> = Vec::new();
    let descend = !(ctx.one_fs && m.dev() != root_dev);
    if descend {
        let rd = fs::read_dir(path).map_err(|e| Error::io(path.display(), e))?;
        for e in rd {
            match e {
                // DirEntry::metadata is fstatat on the directory: no path walk, no symlink follow.
                Ok(e) => entries.push((e.file_name(), e.metadata().ok())),
                Err(e) => ctx.warn(format!("{}: {e}", path.display())),
            }
        }
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let nodes: Vec<Option<Node>> = entries
        .into_par_iter()
        .map(|(n, meta)| {
            let p = path.join(&n);
            if ctx.excludes.matches(&p) {
                return None;
            }
            entry_node_with(
                ctx,
                &p,
                &n,
                parent.and_then(|t| t.get(n.as_bytes())),
                Some(root_dev),
                meta,
            )
        })
        .collect();
    let tree = Tree {
        nodes: nodes.into_iter().flatten().collect(),
    };
    let (id, _) = ctx.save(BlobKind::Tree, &tree.encode())?;
    ctx.blobs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id);
    let mut node = node;
    node.subtree = Some(id);
    Ok(node)
}

fn other_node(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    m: &Metadata,
    kind: NodeKind,
    parent: Option<&Node>,
) -> Result<Node> {
    ctx.files.fetch_add(1, Ordering::Relaxed);
    let mut node = with_xattrs_reuse(
        ctx,
        path,
        meta::node_from_metadata(name, m, &ctx.names),
        parent,
    );
    if kind == NodeKind::Symlink {
        if let Some(p) = parent.filter(|p| {
            p.kind == NodeKind::Symlink
                && p.inode == node.inode
                && p.ctime_ns == node.ctime_ns
                && p.target.is_some()
        }) {
            node.target = p.target.clone();
            return Ok(node);
        }
        node.target = Some(
            fs::read_link(path)
                .map_err(|e| Error::io(path.display(), e))?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        );
    }
    Ok(node)
}

fn unchanged(parent: &Node, m: &Metadata) -> bool {
    parent.kind == NodeKind::File
        && parent.size == m.size()
        && parent.mtime_ns == m.mtime() * 1_000_000_000 + m.mtime_nsec()
        && parent.ctime_ns == m.ctime() * 1_000_000_000 + m.ctime_nsec()
        && parent.inode == m.ino()
}

fn file_node(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    m: &Metadata,
    parent: Option<&Node>,
) -> Result<Node> {
    ctx.files.fetch_add(1, Ordering::Relaxed);
    ctx.bytes.fetch_add(m.size(), Ordering::Relaxed);
    ctx.progress
        .bytes_seen
        .fetch_add(m.size(), Ordering::Relaxed);
    let mut node = with_xattrs_reuse(
        ctx,
        path,
        meta::node_from_metadata(name, m, &ctx.names),
        parent,
    );
    if let Some(p) = parent {
        if unchanged(p, m) && p.content.iter().all(|id| ctx.repo.has_blob(id)) {
            node.content = p.content.clone();
            ctx.blobs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(node.content.iter().copied());
            return Ok(node);
        }
    }
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOATIME)
        .open(path)
        .or_else(|_| {
            fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
        })
        .map_err(|e| Error::io(path.display(), e))?;
    let (content, size) = match chunk_stream(ctx.repo.chunker(), &mut f, ctx.progress, &|d| {
        ctx.save(BlobKind::Data, d)
    }) {
        Ok(x) => x,
        Err(StreamError::Source(e)) => return Err(Error::io(path.display(), e)),
        Err(StreamError::Repo(e)) => return Err(e),
    };
    let after = f.metadata().map_err(|e| Error::io(path.display(), e))?;
    if after.size() != m.size()
        || after.mtime() != m.mtime()
        || after.mtime_nsec() != m.mtime_nsec()
        || size != m.size()
    {
        ctx.warn(format!(
            "{}: file changed while it was read",
            path.display()
        ));
        // Record what was read, with the metadata seen after the read.
        node = with_xattrs(
            ctx,
            path,
            meta::node_from_metadata(name, &after, &ctx.names),
        );
        node.size = size;
    }
    ctx.blobs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(content.iter().copied());
    node.content = content;
    Ok(node)
}

enum StreamError {
    /// Reading the source failed: a warning for that file.
    Source(std::io::Error),
    /// Storing failed: the backup stops.
    Repo(Error),
}

type SaveFn<'a> = dyn Fn(&[u8]) -> Result<(BlobId, u64)> + 'a;

/// Chunks a stream and stores its chunks with `save`. Returns the chunk ids and the byte count.
fn chunk_stream(
    chunker: &crate::format::chunker::Chunker,
    r: &mut dyn Read,
    progress: &Progress,
    save: &SaveFn,
) -> std::result::Result<(Vec<BlobId>, u64), StreamError> {
    let max = chunker.params().max;
    let mut buf = vec![0u8; 16 * 1024];
    let (mut start, mut end, mut eof) = (0usize, 0usize, false);
    let mut ids = Vec::new();
    let mut total = 0u64;
    loop {
        if !eof && end - start < max {
            if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            }
            while end < max && !eof {
                if end == buf.len() {
                    buf.resize((buf.len() * 2).min(max.max(64 * 1024)), 0);
                }
                match r.read(&mut buf[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        end += n;
                        total += n as u64;
                        progress.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StreamError::Source(e)),
                }
            }
        }
        if start == end && eof {
            break;
        }
        let n = chunker.cut(&buf[start..end], eof).unwrap_or(end - start);
        let (id, added) = save(&buf[start..start + n]).map_err(StreamError::Repo)?;
        progress.bytes_added.fetch_add(added, Ordering::Relaxed);
        ids.push(id);
        start += n;
    }
    Ok((ids, total))
}

/// Removes `.` and `..` lexically.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::id::{IndexId, PackId};
    use crate::repo::backend::{Backend, FileKind};
    use crate::testing::{backup_dir, file_in, mem_repo, noise, source};

    #[test]
    fn a_backup_in_memory_stores_every_byte_once_under_names_that_are_their_hashes() {
        let big = noise(3 << 20, 1);
        let (_d, src) = source(&[
            ("a/big", &big),
            ("a/copy-of-big", &big),
            ("b/small", b"small"),
            ("empty", b""),
        ]);
        let (mem, repo) = mem_repo();
        let r = backup_dir(&repo, &src, None);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let s = &r.snapshot;
        assert_eq!((s.summary.files, s.summary.dirs), (4, 3), "{:?}", s.summary);
        assert_eq!(s.summary.bytes, 2 * big.len() as u64 + 5);
        // Deduplicated: the second copy adds nothing.
        assert_eq!(s.summary.bytes_added, big.len() as u64 + 5);
        assert_eq!(file_in(&repo, s, &src.join("a/copy-of-big")), big);
        assert_eq!(file_in(&repo, s, &src.join("b/small")), b"small");
        assert_eq!(file_in(&repo, s, &src.join("empty")), b"");
        // One index file for the run; every pack it lists is there, named by its hash, and the
        // snapshot needs exactly the packs written.
        let backend: &dyn Backend = mem.as_ref();
        let index = backend.list(FileKind::Index).unwrap();
        assert_eq!(index.len(), 1);
        let raw = backend.read(FileKind::Index, &index[0]).unwrap();
        assert_eq!(IndexId::hash_of(&raw).to_hex(), index[0]);
        let packs = backend.list(FileKind::Pack).unwrap();
        for p in &packs {
            let bytes = backend.read(FileKind::Pack, p).unwrap();
            assert_eq!(&PackId::hash_of(&bytes).to_hex(), p);
        }
        let written: Vec<String> = r.packs_written.iter().map(|p| p.id.to_hex()).collect();
        let mut needed: Vec<String> = r.packs_needed.iter().map(|(p, _)| p.to_hex()).collect();
        needed.sort();
        let mut written_sorted = written.clone();
        written_sorted.sort();
        assert_eq!(needed, written_sorted);
        assert_eq!(packs, written_sorted);
        // The manifest is named by its hash too, and reads back as the report says.
        let snaps = repo.snapshots().unwrap();
        assert_eq!(snaps.len(), 1);
        assert_eq!(snaps[0].0, r.id);
    }

    #[test]
    fn an_unchanged_tree_is_not_read_again_and_adds_nothing() {
        let (_d, src) = source(&[("x", &noise(1 << 20, 2)), ("d/y", b"y")]);
        let (mem, repo) = mem_repo();
        let first = backup_dir(&repo, &src, None);
        let packs_before = mem.list(FileKind::Pack).unwrap();
        let second = backup_dir(&repo, &src, Some((first.id, first.snapshot.clone())));
        assert_eq!(second.snapshot.summary.bytes_read, 0);
        assert_eq!(second.snapshot.summary.bytes_added, 0);
        // The source's own tree is the same blob (the root tree is not: it holds the source's
        // parent directories, whose times other processes change).
        let src_tree = |s: &Snapshot| {
            crate::restore::find_node(&repo, &s.tree, &src.to_string_lossy())
                .unwrap()
                .unwrap()
                .subtree
        };
        assert_eq!(src_tree(&second.snapshot), src_tree(&first.snapshot));
        assert_eq!(second.snapshot.parent, Some(first.id));
        // Only trees are new (the root's, which holds the source's parent directories).
        assert!(second
            .packs_written
            .iter()
            .flat_map(|p| &p.blobs)
            .all(|b| b.kind == crate::format::BlobKind::Tree));
        assert!(packs_before
            .iter()
            .all(|p| mem.list(FileKind::Pack).unwrap().contains(p)));
        // A changed file is read again; the other is not.
        std::fs::write(src.join("d/y"), b"changed").unwrap();
        let third = backup_dir(&repo, &src, Some((second.id, second.snapshot.clone())));
        assert_eq!(third.snapshot.summary.bytes_read, 7);
        assert_eq!(
            file_in(&repo, &third.snapshot, &src.join("d/y")),
            b"changed"
        );
    }

    #[test]
    fn a_failing_pack_write_writes_no_snapshot() {
        // A backend that refuses packs: the backup fails and no manifest exists.
        struct NoPacks(crate::repo::backend::MemBackend);
        impl Backend for NoPacks {
            fn location(&self) -> String {
                "no packs".into()
            }
            fn create(&self) -> std::io::Result<()> {
                self.0.create()
            }
            fn read(&self, k: FileKind, n: &str) -> std::io::Result<Vec<u8>> {
                self.0.read(k, n)
            }
            fn read_range(
                &self,
                k: FileKind,
                n: &str,
                o: u64,
                l: usize,
            ) -> std::io::Result<Vec<u8>> {
                self.0.read_range(k, n, o, l)
            }
            fn write(&self, k: FileKind, n: &str, d: &[u8]) -> std::io::Result<()> {
                if k == FileKind::Pack {
                    return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
                }
                self.0.write(k, n, d)
            }
            fn list(&self, k: FileKind) -> std::io::Result<Vec<String>> {
                self.0.list(k)
            }
            fn size(&self, k: FileKind, n: &str) -> std::io::Result<u64> {
                self.0.size(k, n)
            }
            fn remove(&self, k: FileKind, n: &str) -> std::io::Result<()> {
                self.0.remove(k, n)
            }
        }
        let (_d, src) = source(&[("x", &noise(100_000, 3))]);
        let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(NoPacks(Default::default()));
        let repo = Repository::init(
            backend.clone(),
            b"pw",
            crate::format::crypto::KdfParams::weak_for_tests(),
            "t".into(),
        )
        .unwrap();
        let opts = BackupOptions {
            paths: vec![src],
            host: "t".into(),
            ..Default::default()
        };
        let e = backup(&repo, &opts, &Progress::default()).unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
        assert!(backend.list(FileKind::Snapshot).unwrap().is_empty());
        assert!(backend.list(FileKind::Index).unwrap().is_empty());
    }
}
