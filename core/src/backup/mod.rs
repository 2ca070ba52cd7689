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
use crate::format::id::{BlobId, PackId, SnapshotId};
use crate::format::{BlobKind, Node, NodeKind, Snapshot, Summary, Tree};
use crate::glob::Patterns;
use crate::meta::{self, NameCache};
use crate::repo::Repository;

mod file;
mod source;

use file::*;
use source::*;

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
    /// Told each directory's tree as it is stored (see [`TreeSink`]).
    pub on_tree: Option<TreeSink>,
}

/// Told, from the backup's threads, each directory the snapshot holds as its tree is stored:
/// the directory's path (as backed up, `/` for the root) and its tree, whose regular files are
/// final: exactly those and as the snapshot records them (`bakfs backup` records them for
/// `bakfs locate` while it runs). Directories come in no particular order; a backup that fails
/// has told some.
#[derive(Clone)]
pub struct TreeSink(pub std::sync::Arc<TreeFn>);

/// What a [`TreeSink`] calls.
pub type TreeFn = dyn Fn(&Path, &Tree) + Send + Sync;

impl std::fmt::Debug for TreeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TreeSink")
    }
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
    /// Packs written, with sizes (for the catalog).
    pub packs_written: Vec<(crate::format::id::PackId, u64)>,
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
        // A blob a prune took out of the index but has not deleted is in its pack still.
        if let Some(l) = repo.locate_for_read(&b) {
            set.insert(l.pack);
        }
    }
    set.into_iter()
        .map(|p| (p, sizes.get(&p).copied().unwrap_or(0)))
        .collect()
}

/// `packs` with their sizes, in order.
fn sizes_of(repo: &Repository, packs: std::collections::HashSet<PackId>) -> Vec<(PackId, u64)> {
    let sizes = repo.indexed_packs();
    let mut v: Vec<(PackId, u64)> = packs
        .into_iter()
        .map(|p| (p, sizes.get(&p).copied().unwrap_or(0)))
        .collect();
    v.sort();
    v
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
    /// Packs holding blobs the snapshot uses that were in the repository already (the packs
    /// this backup writes hold the rest).
    packs: Mutex<std::collections::HashSet<PackId>>,
    files: AtomicU64,
    dirs: AtomicU64,
    bytes: AtomicU64,
    on_tree: Option<TreeSink>,
}

impl Ctx<'_> {
    /// Stores a blob; a failure is fatal for the whole backup.
    fn save(&self, kind: BlobKind, data: &[u8]) -> Result<(BlobId, u64)> {
        if self.aborted() {
            return Err(Error::Invalid("backup aborted".into()));
        }
        match self.repo.save_blob_in(kind, data) {
            Ok((id, n, had)) => {
                if let Some(p) = had {
                    self.uses(p);
                }
                Ok((id, n))
            }
            Err(e) => {
                let mut f = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
                if f.is_none() {
                    *f = Some(e);
                }
                Err(Error::Invalid("backup aborted".into()))
            }
        }
    }

    /// Tells the sink, if any, of a directory's tree just stored.
    fn stored_tree(&self, path: &Path, tree: &Tree) {
        if let Some(sink) = &self.on_tree {
            (sink.0)(path, tree);
        }
    }

    /// Notes a pack the snapshot needs.
    fn uses(&self, pack: PackId) {
        self.packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pack);
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
    match io_pool() {
        Some(pool) => pool.install(|| backup_in_pool(repo, opts, progress)),
        None => backup_in_pool(repo, opts, progress),
    }
}

/// The threads a backup walks and reads with: twice the cores, at least 4 and at most 16
/// (`RAYON_NUM_THREADS` overrides). Reading many small files from a cold cache waits on the
/// disk, not the CPU; compressing a warm tree does not (design.md §4.2). On 2 cores, 100,000
/// small files cold: 7.5 s with 2 threads, 5.0 with 4, 4.2 with 8; 1,000,000 unchanged files
/// cold: 11.9 s with 2, 10.1 with 4 or 8; 2 GiB warm: 4 threads as fast as 2, 8 threads 5–20%
/// slower. None: rayon's global pool (the override, or no pool could be made).
fn io_pool() -> Option<rayon::ThreadPool> {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads((2 * cores).clamp(4, 16))
        .thread_name(|i| format!("bakfs-backup-{i}"))
        .build()
        .ok()
}

fn backup_in_pool(
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
        packs: Mutex::new(std::collections::HashSet::new()),
        files: AtomicU64::new(0),
        dirs: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        on_tree: opts.on_tree.clone(),
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
    repo.flush()?;
    let packs = repo.take_written();
    let mut needed = ctx.packs.into_inner().unwrap_or_else(|p| p.into_inner());
    needed.extend(packs.iter().map(|(p, _)| *p));
    let packs_needed = sizes_of(repo, needed);
    let bytes_stored = packs.iter().map(|(_, s)| s).sum();
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

/// Stores a stream as a snapshot holding one file named `name`, chunk by chunk (memory stays
/// bounded whatever the stream's length).
///
/// The manifest, the commit point (design.md §4.2), is written only once `input` has returned
/// its end (`Ok(0)`). A reader that learns at the end that what it gave is not whole (a
/// command that exited non-zero, was killed or timed out) returns an error instead of the end:
/// no snapshot is made, and the packs written so far are left for `prune`, as for any failed
/// backup.
///
/// # Errors
/// Reading the stream (its error is wrapped in [`Error::Io`] about "standard input") or
/// repository I/O errors.
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
    repo.flush()?;
    let packs = repo.take_written();
    let packs_needed = packs_of(repo, blobs);
    let summary = Summary {
        files: 1,
        bytes: size,
        bytes_read: size,
        bytes_added: progress.bytes_added.load(Ordering::Relaxed),
        bytes_stored: packs.iter().map(|(_, s)| s).sum(),
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
    ctx.stored_tree(path, &tree);
    Ok(id)
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
mod tests;
