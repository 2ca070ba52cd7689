//! File contents: each chunk is decoded once (concurrent readers of one chunk wait for the
//! first instead of decrypting it again), kept in the chunk LRU until reads have returned all
//! of it, and on sequential reads the chunks ahead are decoded in the background while the
//! kernel still copies the current one. A chunk decoded for a random read is also offered to a
//! page sink (the mount stores it in the kernel's page cache), so later reads anywhere in it
//! cost no request.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};

use super::{lock, Chunk, OpenFile, VResult, Vfs, VfsError};
use crate::format::id::BlobId;

/// Chunks decoded ahead of a sequential reader.
const AHEAD: usize = 4;

/// How far a read may start from where the previous read of the file ended and still count as
/// sequential: the kernel's readahead sends up to two 1 MiB reads at once, and they may be
/// answered out of order.
const SEQUENTIAL_SLACK: u64 = 2 << 20;

/// Whether a read at `offset` continues a reader whose previous read ended at `prev`.
pub(super) fn sequential(prev: u64, offset: u64) -> bool {
    offset.abs_diff(prev) <= SEQUENTIAL_SLACK
}

/// Decoded chunk bytes. Chunks of 64 KiB or more get an anonymous mapping of their own, so an
/// evicted chunk's memory returns to the OS at once: in glibc's heap, freed chunk buffers
/// stayed resident (a mount that read 2 GiB with a 128 MiB cache peaked at 441 MiB).
pub(super) enum ChunkBuf {
    Heap(Vec<u8>),
    Map(memmap2::MmapMut),
}

impl ChunkBuf {
    /// A zeroed buffer of `len` bytes, for a chunk to be decoded into.
    fn zeroed(len: usize) -> std::io::Result<ChunkBuf> {
        if len >= 64 << 10 {
            // Fresh anonymous pages are zero.
            return memmap2::MmapMut::map_anon(len).map(ChunkBuf::Map);
        }
        Ok(ChunkBuf::Heap(vec![0; len]))
    }
}

impl std::ops::Deref for ChunkBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ChunkBuf::Heap(v) => v,
            ChunkBuf::Map(m) => m,
        }
    }
}

impl std::ops::DerefMut for ChunkBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            ChunkBuf::Heap(v) => v,
            ChunkBuf::Map(m) => m,
        }
    }
}

/// One chunk being decoded: `None` until done, then the bytes or `None` for an error.
#[derive(Default)]
pub(super) struct Loading {
    done: Mutex<Option<Option<Arc<ChunkBuf>>>>,
    cv: Condvar,
}

pub(super) type InFlight = Mutex<HashMap<BlobId, Arc<Loading>>>;

/// Page size the pieces of a [`Decoded`] are aligned to. Where the system's is larger, a
/// stored piece only partly fills its first and last pages, which the kernel then reads again.
const PAGE: u64 = 4096;

/// A chunk of a file just decoded, offered to the page sink (see [`Vfs::set_page_sink`]).
pub struct Decoded {
    /// The file's inode.
    pub ino: u64,
    start: u64,
    file_size: u64,
    bytes: Arc<ChunkBuf>,
    /// File bytes the read that decoded it returns anyway.
    skip: (u64, u64),
}

impl Decoded {
    /// The (file offset, bytes) pieces of the chunk worth storing: whole pages, outside the
    /// range the decoding read returns itself.
    pub fn pieces(&self) -> Vec<(u64, &[u8])> {
        // Never past the file's end: the kernel would take a store there as the file growing.
        let end = (self.start + self.bytes.len() as u64).min(self.file_size);
        if self.start >= end {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(2);
        for (lo, hi) in [
            (self.start, self.skip.0.clamp(self.start, end)),
            (self.skip.1.clamp(self.start, end), end),
        ] {
            let lo = lo.next_multiple_of(PAGE);
            let hi = if hi == self.file_size {
                hi
            } else {
                hi - hi % PAGE
            };
            if lo < hi {
                let at = (lo - self.start) as usize;
                out.push((lo, &self.bytes[at..at + (hi - lo) as usize]));
            }
        }
        out
    }
}

impl Vfs {
    /// Where decoded chunks are offered, without waiting: an offer the sink has no room for is
    /// dropped. Set once; later calls are ignored.
    pub fn set_page_sink(&self, sink: SyncSender<Decoded>) {
        let _ = self.page_sink.set(sink);
    }

    /// The bytes of chunk `c` of file `f`, from the cache or decoded now, for a read of the
    /// file's bytes `read` (an empty range for a decode ahead of the reader).
    ///
    /// A chunk decoded now is kept in the chunk cache unless `read` returns all of it: the kernel
    /// then has its bytes, and a small file's only chunk would just fill the cache. With `store`
    /// (a random read), the rest of the chunk is offered to the page sink; a sequential reader
    /// gets its bytes through the kernel's own readahead, and storing them too would only copy
    /// them twice.
    pub(super) fn chunk_data(
        &self,
        f: &OpenFile,
        c: &Chunk,
        read: (u64, u64),
        store: bool,
    ) -> VResult<Arc<ChunkBuf>> {
        if let Some(d) = lock(&self.blobs).get(&c.id) {
            return Ok(d);
        }
        let (slot, mine) = {
            let mut m = lock(&self.loading);
            match m.get(&c.id) {
                Some(s) => (s.clone(), false),
                None => {
                    // It may have been cached between the two locks.
                    if let Some(d) = lock(&self.blobs).get(&c.id) {
                        return Ok(d);
                    }
                    let s = Arc::new(Loading::default());
                    m.insert(c.id, s.clone());
                    (s, true)
                }
            }
        };
        if !mine {
            let mut g = lock(&slot.done);
            while g.is_none() {
                g = slot.cv.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            return g.clone().flatten().ok_or(VfsError::Io);
        }
        // Whatever happens in the decode, the slot is completed: a reader waiting on it must
        // get an answer (EIO at worst), never hang.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.decode_chunk(f, c)))
            .unwrap_or_else(|_| {
                tracing::error!(
                    "{}: decoding bytes {}..{} failed unexpectedly",
                    self.path_of(f.ino),
                    c.start,
                    c.start + c.len
                );
                Err(VfsError::Io)
            });
        let all_read = read.0 <= c.start && c.start + c.len <= read.1;
        if let (Ok(d), false) = (&r, all_read) {
            lock(&self.blobs).put(c.id, d.clone(), c.len as usize);
        }
        *lock(&slot.done) = Some(r.as_ref().ok().cloned());
        slot.cv.notify_all();
        lock(&self.loading).remove(&c.id);
        if let (Ok(d), true, Some(sink)) = (&r, store && !all_read, self.page_sink.get()) {
            let _ = sink.try_send(Decoded {
                ino: f.ino,
                start: c.start,
                file_size: f.size,
                bytes: d.clone(),
                skip: read,
            });
        }
        r
    }

    fn decode_chunk(&self, f: &OpenFile, c: &Chunk) -> VResult<Arc<ChunkBuf>> {
        let mut r = self.repo.read_blob_into(&c.loc, ChunkBuf::zeroed);
        if r.is_err() {
            // A prune may have moved the chunk since the file's chunk table was made: read
            // the index again if it changed, and the chunk from where it is now.
            self.reload_index_if_changed();
            if let Some(loc) = self.repo.locate_for_read(&c.id) {
                if loc.pack != c.loc.pack || loc.entry.offset != c.loc.entry.offset {
                    r = self.repo.read_blob_into(&loc, ChunkBuf::zeroed);
                }
            }
        }
        match r {
            Ok(d) if d.len() as u64 == c.len => Ok(Arc::new(d)),
            Ok(d) => {
                tracing::error!(
                    "{}: chunk {} in pack {} has {} bytes, the index says {}",
                    self.path_of(f.ino),
                    c.id.short(),
                    c.loc.pack.short(),
                    d.len(),
                    c.len
                );
                Err(VfsError::Io)
            }
            Err(e) => {
                tracing::error!(
                    "{}: bytes {}..{} unreadable: {e}",
                    self.path_of(f.ino),
                    c.start,
                    c.start + c.len
                );
                Err(VfsError::Io)
            }
        }
    }

    /// Called after a read of `ino` at `offset` that ended at `end`. If it continued the
    /// previous read (a sequential reader, see [`sequential`]), the next chunks that are
    /// neither cached nor being decoded are decoded in the background (rayon's pool). After a
    /// random read, the chunk that follows is (read-around: random readers of a large file
    /// often stay near where they are, and a chunk is about 1 MiB), and offered to the page
    /// sink.
    pub fn read_ahead(self: &Arc<Self>, ino: u64, offset: u64, end: u64) {
        let Some(f) = lock(&self.files).get(&ino).cloned() else {
            return;
        };
        let prev = f.last_end.swap(end, Ordering::Relaxed);
        if end >= f.known_end {
            return;
        }
        // The chunks after the one this read ended in (that one this read has decoded).
        let first = f.chunks.partition_point(|c| c.start < end);
        let (n, store) = if sequential(prev, offset) {
            (AHEAD, false)
        } else {
            (1, true)
        };
        for i in (first..f.chunks.len()).take(n) {
            if self.busy(&f.chunks[i].id) {
                continue;
            }
            let (v, f) = (self.clone(), f.clone());
            rayon::spawn(move || {
                // By the time the pool gets to it, a sequential reader may have read through
                // the chunk (decoding it itself), or another decode may have started; and once
                // decoded, it is not kept if the reader has read through it meanwhile.
                let c = &f.chunks[i];
                if f.read_through(i) || v.busy(&c.id) {
                    return;
                }
                let _ = v.chunk_data(&f, c, (0, 0), store);
                if f.read_through(i) {
                    lock(&v.blobs).remove(&c.id);
                }
            });
        }
    }

    /// Whether chunk `id` is cached or being decoded.
    fn busy(&self, id: &BlobId) -> bool {
        lock(&self.blobs).contains(id) || lock(&self.loading).contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(start: u64, len: usize, file_size: u64, skip: (u64, u64)) -> Decoded {
        let bytes: Vec<u8> = (0..len).map(|i| (start as usize + i) as u8).collect();
        Decoded {
            ino: 7,
            start,
            file_size,
            bytes: Arc::new(ChunkBuf::Heap(bytes)),
            skip,
        }
    }

    fn spans(d: &Decoded) -> Vec<(u64, u64)> {
        d.pieces()
            .iter()
            .map(|(o, b)| {
                // Each piece holds the file's bytes at its offset.
                assert!(b
                    .iter()
                    .enumerate()
                    .all(|(i, &x)| x == (*o as usize + i) as u8));
                (*o, *o + b.len() as u64)
            })
            .collect()
    }

    #[test]
    fn pieces_are_whole_pages_outside_the_read() {
        // A chunk from 1000 to 1000 + 3 pages, in a larger file; no read to skip.
        let d = decoded(1000, 3 * 4096, 1 << 20, (0, 0));
        assert_eq!(spans(&d), vec![(4096, 12288)]);
        // A read of the page 8192..12288 splits it in two.
        let d = decoded(0, 5 * 4096, 1 << 20, (8192, 12288));
        assert_eq!(spans(&d), vec![(0, 8192), (12288, 20480)]);
        // The read covers it all: nothing.
        let d = decoded(4096, 4096, 1 << 20, (0, 1 << 20));
        assert!(spans(&d).is_empty());
        // The file's last chunk ends mid-page: its tail is stored up to the end.
        let d = decoded(8192, 5000, 13192, (0, 0));
        assert_eq!(spans(&d), vec![(8192, 13192)]);
        // A chunk longer than the file (a damaged index) is cut at the file's end.
        let d = decoded(0, 3 * 4096, 5000, (0, 0));
        assert_eq!(spans(&d), vec![(0, 5000)]);
        let d = decoded(8192, 4096, 5000, (0, 0));
        assert!(spans(&d).is_empty());
    }
}
