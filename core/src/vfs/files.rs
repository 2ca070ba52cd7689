//! Reading files: each file being read gets a chunk table (where each chunk is, from the index),
//! dropped when the file has been read through or the kernel forgets the inode; chunks come from
//! the chunk cache or are decoded (see `chunks.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{chunks, lock, VResult, Vfs, VfsError, What};
use crate::format::id::BlobId;
use crate::format::NodeKind;
use crate::repo::BlobLocation;

#[derive(Clone)]
pub(super) struct Chunk {
    pub(super) start: u64,
    pub(super) len: u64,
    pub(super) id: BlobId,
    pub(super) loc: BlobLocation,
}

pub(super) struct OpenFile {
    pub(super) ino: u64,
    pub(super) size: u64,
    pub(super) chunks: Vec<Chunk>,
    /// Where the chunk table stops being known (a chunk missing from the index).
    pub(super) known_end: u64,
    /// Where the last read ended (for spotting sequential reads).
    pub(super) last_end: AtomicU64,
    /// Bytes of each chunk reads have returned: a chunk read through is dropped from the chunk
    /// cache (the kernel has its bytes; a page read twice only makes that early).
    pub(super) served: Box<[AtomicU64]>,
    /// Bytes of the file reads have returned: a file read through drops its chunk table (made
    /// again if it is read again).
    pub(super) served_total: AtomicU64,
}

impl OpenFile {
    /// Counts `n` more bytes of chunk `i` returned; whether the chunk is now read through.
    pub(super) fn serve(&self, i: usize, n: u64) -> bool {
        self.served[i].fetch_add(n, Ordering::Relaxed) + n >= self.chunks[i].len
    }

    /// Whether reads have returned all of chunk `i`.
    pub(super) fn read_through(&self, i: usize) -> bool {
        self.served[i].load(Ordering::Relaxed) >= self.chunks[i].len
    }
}

impl Vfs {
    /// The chunk table of regular file `ino`, built on first use.
    pub(super) fn file(&self, ino: u64) -> VResult<Arc<OpenFile>> {
        if let Some(f) = lock(&self.files).get(&ino) {
            return Ok(f.clone());
        }
        let what = self.entry(ino)?;
        let What::Node { node, .. } = &*what else {
            return Err(VfsError::Io);
        };
        if node.kind != NodeKind::File {
            return Err(VfsError::Io);
        }
        let mut chunks = Vec::with_capacity(node.content.len());
        let mut pos = 0u64;
        let mut known_end = u64::MAX;
        for id in &node.content {
            let Some(loc) = self.repo.locate_for_read(id) else {
                tracing::error!(
                    "{}: chunk {} is not in the index; reads from byte {pos} on fail",
                    self.path_of(ino),
                    id.short()
                );
                known_end = pos;
                break;
            };
            let len = u64::from(loc.entry.raw_len);
            chunks.push(Chunk {
                start: pos,
                len,
                id: *id,
                loc,
            });
            pos += len;
        }
        if known_end == u64::MAX && pos != node.size {
            tracing::warn!(
                "{}: chunks hold {pos} bytes, the entry says {}",
                self.path_of(ino),
                node.size
            );
        }
        let f = Arc::new(OpenFile {
            ino,
            size: node.size,
            known_end: known_end.min(pos),
            last_end: AtomicU64::new(0),
            served: chunks.iter().map(|_| AtomicU64::new(0)).collect(),
            served_total: AtomicU64::new(0),
            chunks,
        });
        lock(&self.files).insert(ino, f.clone());
        Ok(f)
    }

    /// Reads up to `size` bytes at `offset` of regular file `ino`. Short only at the end of the
    /// file. (No open call is needed: the kernel is told that opening is free.)
    ///
    /// # Errors
    /// [`VfsError::NotFound`]; [`VfsError::Io`] if a chunk in the range is missing or damaged
    /// (never wrong bytes), or `ino` is not a regular file.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> VResult<Vec<u8>> {
        let f = self.file(ino)?;
        if offset >= f.size {
            return Ok(Vec::new());
        }
        let end = f.size.min(offset.saturating_add(u64::from(size)));
        if end > f.known_end {
            tracing::error!(
                "{}: bytes {}..{end} unreadable: a chunk is missing",
                self.path_of(f.ino),
                offset.max(f.known_end)
            );
            return Err(VfsError::Io);
        }
        // Not near where the previous read ended: chunks decoded now go to the page sink.
        let random = !chunks::sequential(f.last_end.load(Ordering::Relaxed), offset);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        let mut i = f.chunks.partition_point(|c| c.start + c.len <= pos);
        while pos < end {
            let Some(c) = f.chunks.get(i) else {
                tracing::error!(
                    "{}: the chunks end at byte {pos}, before the file's size {}",
                    self.path_of(f.ino),
                    f.size
                );
                return Err(VfsError::Io);
            };
            let data = self.chunk_data(&f, c, (offset, end), random)?;
            let from = (pos - c.start) as usize;
            let to = ((end - c.start).min(c.len)) as usize;
            out.extend_from_slice(&data[from..to]);
            if f.serve(i, (to - from) as u64) {
                // Read through: the kernel has its bytes.
                lock(&self.blobs).remove(&c.id);
            }
            pos = c.start + to as u64;
            i += 1;
        }
        let n = end - offset;
        if f.served_total.fetch_add(n, Ordering::Relaxed) + n >= f.size {
            let mut files = lock(&self.files);
            if files.get(&ino).is_some_and(|g| Arc::ptr_eq(g, &f)) {
                files.remove(&ino);
            }
        }
        Ok(out)
    }
}
