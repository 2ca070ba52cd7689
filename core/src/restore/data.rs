//! Writing files' data, pack by pack.
//!
//! The walk lists files in a [`Batch`]. A full batch (or the last) looks every chunk up in the
//! index, groups the chunks by pack, and reads each pack's blobs in the order they lie in it,
//! writing each at every offset where a listed file holds it. A pack is thus read once per batch
//! (one request per pack from a bucket, sequentially from a disk) whatever order the backup
//! stored the files' chunks in. Packs are read in parallel; a file is made on its first chunk
//! written and finished (size, read-back, owner, mode, times) by the thread that writes its last.
//!
//! A batch holds at most [`Scale::files`] files and [`Scale::chunks`] chunk references, so memory
//! does not grow with the size of the snapshot.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::id::PackId;
use crate::format::pack::PackEntry;
use crate::format::Node;
use crate::repo::BlobLocation;

use super::meta::{apply_meta, apply_meta_file};
use super::Ctx;

/// How large a batch grows, and how its packs are shared among the threads.
#[derive(Clone, Copy)]
pub(super) struct Scale {
    /// Files at most.
    files: usize,
    /// Chunk references of the files at most (about 100 bytes of memory each while planned).
    chunks: usize,
    /// Directories waiting for their metadata at most.
    dirs: usize,
    /// Whether the threads take runs in order from one counter (else rayon splits them).
    in_order: bool,
}

impl Scale {
    /// The scale for `repo`. From a bucket, where reading a pack again is a request and 16 MiB
    /// of transfer, four times larger (about 40 MiB of memory for a full batch of small files:
    /// a 100,000-file restore reads each pack once), and the threads work on the same few packs.
    /// From a disk, where a pack read again is a few range reads, batches stay small: smaller
    /// batches of small files restore faster (their directories stay in the CPU's caches), and
    /// threads in different parts of the batch do not create files in one directory at once.
    pub(super) fn of(repo: &crate::repo::Repository) -> Scale {
        let remote = repo.backend().remote();
        // Unit tests use tiny batches unless they ask otherwise: every restore they make
        // crosses batch boundaries.
        #[cfg(test)]
        return TEST_SCALE.with(std::cell::Cell::get).unwrap_or(Scale {
            files: 3,
            chunks: 16,
            dirs: 2,
            in_order: remote,
        });
        #[cfg(not(test))]
        Scale::real(remote)
    }

    /// The scale from a bucket (`remote`) or a disk.
    pub(super) fn real(remote: bool) -> Scale {
        if remote {
            Scale {
                files: 131_072,
                chunks: 524_288,
                dirs: 32_768,
                in_order: true,
            }
        } else {
            Scale {
                files: 32_768,
                chunks: 262_144,
                dirs: 32_768,
                in_order: false,
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    /// The scale of the restores this thread starts (tests).
    pub(super) static TEST_SCALE: std::cell::Cell<Option<Scale>> = const { std::cell::Cell::new(None) };
}

/// Blobs one task writes at most: a pack's blobs are shared among threads in runs this long.
const RUN: usize = 256;

/// Files to write and directories to finish after them.
pub(super) struct Batch {
    scale: Scale,
    files: Vec<(PathBuf, Node)>,
    chunks: usize,
    /// Directories whose files are all listed, in the order they were finished (children first).
    dirs: Vec<(PathBuf, Node)>,
}

impl Batch {
    pub(super) fn new(scale: Scale) -> Batch {
        Batch {
            scale,
            files: Vec::new(),
            chunks: 0,
            dirs: Vec::new(),
        }
    }

    pub(super) fn scale(&self) -> Scale {
        self.scale
    }

    /// Lists a file to write at `path`. Returns whether the batch is full.
    pub(super) fn add_file(&mut self, path: PathBuf, n: Node) -> bool {
        self.chunks += n.content.len();
        self.files.push((path, n));
        self.files.len() >= self.scale.files || self.chunks >= self.scale.chunks
    }

    /// Lists a directory to give its metadata once the files are written. Returns whether the
    /// batch is full.
    pub(super) fn add_dir(&mut self, path: PathBuf, n: Node) -> bool {
        self.dirs.push((path, n));
        self.dirs.len() >= self.scale.dirs
    }

    /// Writes the files, then gives the directories their metadata.
    pub(super) fn write(self, ctx: &Ctx) {
        let files: Vec<File> = self
            .files
            .into_iter()
            .map(|(path, node)| File::new(path, node))
            .collect();
        let runs = plan(ctx, &files, self.scale.in_order);
        // Files without data are made here; those whose chunks could not be found failed.
        files.par_iter().for_each(|f| {
            if f.remaining.load(Ordering::Relaxed) == 0 && f.state() == State::New {
                f.write_empty(ctx);
            }
        });
        let write_run = |(pack, blobs): &(PackId, Vec<BlobJob>), open: &mut _| {
            for b in blobs {
                write_blob(ctx, &files, *pack, b, open);
            }
        };
        if self.scale.in_order {
            // The threads take runs in order from one counter, so they work on the same few
            // packs (split in halves, two threads would each start a pack the other ends, and
            // a bucket's recent packs might no longer hold it by then).
            let next = AtomicUsize::new(0);
            (0..rayon::current_num_threads())
                .into_par_iter()
                .for_each(|_| {
                    let mut open = None;
                    while let Some(run) = runs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        write_run(run, &mut open);
                    }
                });
        } else {
            runs.par_iter().for_each(|run| write_run(run, &mut None));
        }
        for (path, n) in &self.dirs {
            apply_meta(ctx, path, n);
        }
    }
}

/// One blob of a pack and where it goes: (file, offset in it).
struct BlobJob {
    entry: PackEntry,
    targets: Vec<(usize, u64)>,
}

/// Looks every chunk of `files` up and groups them by pack, each pack's blobs in their order in
/// it, in runs of at most [`RUN`]. A file with a chunk the index does not list, or whose chunks do
/// not add up to its size, fails here and is not made.
fn plan(ctx: &Ctx, files: &[File], in_order: bool) -> Vec<(PackId, Vec<BlobJob>)> {
    let mut packs: HashMap<PackId, HashMap<crate::format::id::BlobId, BlobJob>> = HashMap::new();
    // Each pack's place in the order the batch's files first need it.
    let mut first_use: HashMap<PackId, usize> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        let mut locs = Vec::with_capacity(f.node.content.len());
        let mut size = 0u64;
        for id in &f.node.content {
            match ctx.repo.locate_for_read(id) {
                Some(l) => {
                    size += u64::from(l.entry.raw_len);
                    locs.push(l);
                }
                None => {
                    f.fail(
                        ctx,
                        &Error::damaged(format!("blob {id}"), "not in the index"),
                    );
                    break;
                }
            }
        }
        if f.state() == State::Failed {
            continue;
        }
        if size != f.node.size {
            f.fail(
                ctx,
                &Error::damaged(
                    format!("file {}", f.path.display()),
                    format!("content is {size} bytes, metadata says {}", f.node.size),
                ),
            );
            continue;
        }
        f.remaining.store(locs.len(), Ordering::Relaxed);
        let mut off = 0u64;
        for l in locs {
            let len = u64::from(l.entry.raw_len);
            let next = first_use.len();
            first_use.entry(l.pack).or_insert(next);
            packs
                .entry(l.pack)
                .or_default()
                .entry(l.entry.id)
                .or_insert_with(|| BlobJob {
                    entry: l.entry,
                    targets: Vec::new(),
                })
                .targets
                .push((i, off));
            off += len;
        }
    }
    let mut runs = Vec::new();
    for (pack, blobs) in packs {
        let mut blobs: Vec<BlobJob> = blobs.into_values().collect();
        blobs.sort_by_key(|b| b.entry.offset);
        let mut blobs = blobs.into_iter().peekable();
        while blobs.peek().is_some() {
            runs.push((pack, blobs.by_ref().take(RUN).collect()));
        }
    }
    // Runs of one pack side by side, so the threads read few packs at a time; packs in the
    // order the files need them, so those the last files need are the ones a bucket's recent
    // packs (repo/remote_cache.rs) still hold when the next batch, which starts with the next
    // files, needs them too.
    if in_order {
        runs.sort_by_key(|(p, b): &(PackId, Vec<BlobJob>)| {
            (first_use[p], b.first().map(|b| b.entry.offset))
        });
    } else {
        runs.sort_by_key(|(p, b): &(PackId, Vec<BlobJob>)| (*p, b.first().map(|b| b.entry.offset)));
    }
    runs
}

/// Reads one blob and writes it wherever it goes. `open` keeps the last file written, which the
/// next blob of the pack is usually for.
fn write_blob(
    ctx: &Ctx,
    files: &[File],
    pack: PackId,
    b: &BlobJob,
    open: &mut Option<(usize, fs::File)>,
) {
    let live = |&&(i, _): &&(usize, u64)| files[i].state() != State::Failed;
    let data = if b.targets.iter().any(|t| live(&t)) {
        let loc = BlobLocation {
            pack,
            entry: b.entry,
        };
        Some(ctx.repo.read_blob_at(&loc))
    } else {
        None
    };
    for &(i, off) in &b.targets {
        let f = &files[i];
        match &data {
            Some(Ok(data)) if f.state() != State::Failed => {
                if let Err(e) = f.write_at(ctx, i, data, off, open) {
                    f.fail(ctx, &e);
                }
            }
            Some(Err(e)) => f.fail(ctx, e),
            _ => {}
        }
        // The last chunk written finishes the file.
        if f.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && f.state() == State::Made {
            let fd = match open.take() {
                Some((j, fd)) if j == i => Ok(fd),
                other => {
                    *open = other;
                    f.reopen()
                }
            };
            f.complete(ctx, fd);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not made yet.
    New,
    /// Made by this restore.
    Made,
    /// Failed and reported (and removed if it was made).
    Failed,
}

/// A file of a batch.
struct File {
    path: PathBuf,
    node: Node,
    state: Mutex<State>,
    /// Chunk references not written yet.
    remaining: AtomicUsize,
    /// The file offset just after the last byte written.
    end: AtomicU64,
}

impl File {
    fn new(path: PathBuf, node: Node) -> File {
        File {
            path,
            node,
            state: Mutex::new(State::New),
            remaining: AtomicUsize::new(0),
            end: AtomicU64::new(0),
        }
    }

    fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports the file failed (once) and removes it if it was made.
    fn fail(&self, ctx: &Ctx, e: &Error) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Failed => return,
            State::Made => {
                let _ = fs::remove_file(&self.path);
            }
            // What an earlier restore left there is not this snapshot's file either.
            State::New => {
                let _ = clear_path(&self.path);
            }
        }
        *s = State::Failed;
        drop(s);
        ctx.fail(&self.path, e);
    }

    /// Writes a file without data: made and finished at once.
    fn write_empty(&self, ctx: &Ctx) {
        self.complete(ctx, self.open_for_write());
    }

    /// Finishes the file through `fd` (size, read-back, owner, mode, times) and counts it, or
    /// reports it failed.
    fn complete(&self, ctx: &Ctx, fd: Result<fs::File>) {
        match fd.and_then(|fd| self.finish(ctx, &fd).map(|()| fd)) {
            Ok(fd) => {
                apply_meta_file(ctx, &fd, &self.path, &self.node);
                ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(ctx, &e),
        }
    }

    /// Writes `data` at `off`, through `open` if it holds this file (`i`).
    fn write_at(
        &self,
        ctx: &Ctx,
        i: usize,
        data: &[u8],
        off: u64,
        open: &mut Option<(usize, fs::File)>,
    ) -> Result<()> {
        if open.as_ref().is_none_or(|(j, _)| *j != i) {
            *open = Some((i, self.open_for_write()?));
        }
        let Some((_, fd)) = open else { unreachable!() };
        let written = write_sparse(fd, data, off).map_err(|e| Error::io(self.path.display(), e))?;
        if let Some(end) = written {
            self.end.fetch_max(end, Ordering::Relaxed);
        }
        ctx.progress
            .bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Opens the file for writing: made (`O_EXCL|O_NOFOLLOW`, clearing what is in the way) on
    /// the first call, opened again (`O_NOFOLLOW`) on the next.
    fn open_for_write(&self) -> Result<fs::File> {
        let io = |e| Error::io(self.path.display(), e);
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Made => return self.reopen(),
            State::Failed => return Err(Error::Invalid("failed".into())),
            State::New => {}
        }
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)
        };
        let f = match open() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                clear_path(&self.path).map_err(io)?;
                open().map_err(io)?
            }
            r => r.map_err(io)?,
        };
        *s = State::Made;
        Ok(f)
    }

    /// Opens the file this restore made again.
    fn reopen(&self) -> Result<fs::File> {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|e| Error::io(self.path.display(), e))
    }

    /// Sets the size of a file that ends in a hole, and reads it back if asked.
    fn finish(&self, ctx: &Ctx, fd: &fs::File) -> Result<()> {
        let size = self.node.size;
        if self.end.load(Ordering::Relaxed) < size {
            fd.set_len(size)
                .map_err(|e| Error::io(self.path.display(), e))?;
        }
        if ctx.verify {
            verify_file(ctx, &self.node, &self.path)?;
        }
        Ok(())
    }
}

/// Removes whatever non-directory is at `path`, so that nothing is written through it.
pub(super) fn clear_path(path: &Path) -> io::Result<()> {
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

/// Reads a restored file back and checks each chunk against its id.
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
