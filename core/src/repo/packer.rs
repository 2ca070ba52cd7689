//! Writing blobs: packers fill packs that a writer thread makes durable, then `flush` writes
//! the index file that makes them findable (design.md §3.6, §4.2).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::Repository;
use crate::error::{Error, Result};
use crate::format::id::{BlobId, PackId};
use crate::format::{self, BlobKind, IndexFile, IndexPack, PackEntry};
use crate::repo::backend::FileKind;

/// Target size of a data pack.
const DATA_PACK_SIZE: usize = 8 * 1024 * 1024;
/// Target size of a tree pack.
const TREE_PACK_SIZE: usize = 4 * 1024 * 1024;
/// Blobs in packs written before an index file lists them: a long backup writes an index file
/// whenever this many are waiting, so the blobs it keeps in memory to avoid storing twice stay
/// this few (design.md §4.2).
const INDEX_EVERY_BLOBS: usize = 65_536;

enum WriterMsg {
    Pack(PackId, Vec<u8>, Vec<PackEntry>),
    /// Every writer thread takes one and waits on it: once all have, every pack sent before is
    /// durable (a thread takes its next message only after its last write).
    Barrier(Arc<std::sync::Barrier>),
}

/// A pack-writer thread: writes the packs it takes until the channel closes.
fn pack_writer(
    rx: &Mutex<std::sync::mpsc::Receiver<WriterMsg>>,
    backend: &dyn crate::repo::backend::Backend,
    written: &Written,
) {
    loop {
        let msg = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(msg) = msg else { return };
        let (id, bytes, entries) = match msg {
            WriterMsg::Barrier(b) => {
                b.wait();
                continue;
            }
            WriterMsg::Pack(id, bytes, entries) => (id, bytes, entries),
        };
        if written
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            continue;
        }
        let size = bytes.len() as u64;
        match backend.write_buf(FileKind::Pack, &id.to_hex(), bytes) {
            Ok(bytes) => {
                written
                    .packs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(IndexPack {
                        id,
                        size,
                        blobs: entries,
                    });
                let mut spare = written.spare.lock().unwrap_or_else(|p| p.into_inner());
                if spare.len() < SPARE_PACK_BUFFERS && bytes.capacity() > 0 {
                    spare.push(bytes);
                }
            }
            Err(e) => {
                *written.error.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Error::io(format!("writing pack {id}"), e))
            }
        }
    }
}

/// Shared between the repository and its pack-writer thread.
#[derive(Default)]
struct Written {
    packs: Mutex<Vec<IndexPack>>,
    error: Mutex<Option<Error>>,
    /// Pack buffers the writer is done with, for the next packs: a backup then allocates a
    /// handful of pack buffers in all rather than one per pack (each freed 16 MiB buffer
    /// raised glibc's mmap threshold and the heap kept growing).
    spare: Mutex<Vec<Vec<u8>>>,
}

/// Pack buffers kept for reuse.
const SPARE_PACK_BUFFERS: usize = 2;

/// What a repository needs to store blobs: one packer per blob kind, the writer thread's
/// channel and results, and the blobs handed to a packer but not yet in the index.
#[derive(Default)]
pub(super) struct Packing {
    in_flight: Mutex<HashSet<BlobId>>,
    data_packer: Mutex<Packer>,
    tree_packer: Mutex<Packer>,
    written: Arc<Written>,
    writer: Mutex<Option<std::sync::mpsc::SyncSender<WriterMsg>>>,
    /// Writer threads started ([`crate::repo::backend::Backend::write_concurrency`]).
    writers: std::sync::atomic::AtomicUsize,
    /// Their handles, joined when the repository is dropped (so that the backend they hold is
    /// dropped before the process exits).
    handles: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Packs indexed since [`Repository::take_written`], with sizes.
    indexed: Mutex<Vec<(PackId, u64)>>,
    /// No index file until [`Repository::flush_packs_only`] (prune writes one for all).
    hold_index: std::sync::atomic::AtomicBool,
}

impl Drop for Packing {
    /// Closes the writers' channel and waits for them (they write nothing more: a pack still
    /// queued was never flushed, so no index lists it).
    fn drop(&mut self) {
        drop(
            self.writer
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        for h in self
            .handles
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = h.join();
        }
    }
}

#[derive(Default)]
struct Packer {
    body: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Repository {
    /// Stores a blob unless the repository already has it. Returns its id and the number of
    /// plaintext bytes added (0 if it was a duplicate). Thread-safe; packs are written as they
    /// fill, and [`Repository::flush`] writes the rest and the index.
    ///
    /// # Errors
    /// I/O errors writing a pack.
    pub fn save_blob(&self, kind: BlobKind, plain: &[u8]) -> Result<(BlobId, u64)> {
        self.save_blob_in(kind, plain).map(|(id, n, _)| (id, n))
    }

    /// As [`Repository::save_blob`], also naming the pack that already held the blob, if the
    /// index knew it (a new blob's pack is among those [`Repository::take_written`] returns).
    ///
    /// # Errors
    /// As [`Repository::save_blob`].
    pub fn save_blob_in(
        &self,
        kind: BlobKind,
        plain: &[u8],
    ) -> Result<(BlobId, u64, Option<PackId>)> {
        let id = self.keys.blob_id(plain);
        if let Some(loc) = self.locate(&id) {
            return Ok((id, 0, Some(loc.pack)));
        }
        if !self
            .packing
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
        {
            return Ok((id, 0, None));
        }
        let (sealed, compressed) =
            format::seal_blob(&self.keys, &id, kind, plain, self.config.zstd_level);
        let (packer, target) = match kind {
            BlobKind::Data => (&self.packing.data_packer, DATA_PACK_SIZE),
            BlobKind::Tree => (&self.packing.tree_packer, TREE_PACK_SIZE),
        };
        // Twice as large in a bucket: half the requests, each worth its round trip.
        let target = if self.backend.remote() {
            2 * target
        } else {
            target
        };
        let full = {
            let mut p = packer.lock().unwrap_or_else(|p| p.into_inner());
            if p.body.capacity() == 0 {
                // A full pack plus the largest blob, in one buffer, reused when one is spare.
                let want =
                    target + self.config.chunker.max + crate::format::crypto::OVERHEAD + 1024;
                let spare = self
                    .packing
                    .written
                    .spare
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop();
                p.body = spare.unwrap_or_default();
                p.body.clear();
                p.body.reserve_exact(want);
            }
            let offset = p.body.len() as u32;
            p.entries.push(PackEntry {
                id,
                kind,
                offset,
                length: sealed.len() as u32,
                raw_len: plain.len() as u32,
                compressed,
            });
            p.body.extend_from_slice(&sealed);
            if p.body.len() >= target {
                Some(std::mem::take(&mut *p))
            } else {
                None
            }
        };
        if let Some(p) = full {
            self.write_pack(p)?;
            if !self.packing.hold_index.load(Ordering::Relaxed) {
                self.index_written(INDEX_EVERY_BLOBS)?;
            }
        }
        Ok((id, plain.len() as u64, None))
    }

    /// Writes an index file for the packs the writer has made durable, if they hold at least
    /// `min_blobs` blobs, and adds it to the index; their blobs are then found by lookups and
    /// no longer kept as in flight.
    fn index_written(&self, min_blobs: usize) -> Result<()> {
        let packs = {
            let mut w = self
                .packing
                .written
                .packs
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let blobs: usize = w.iter().map(|p| p.blobs.len()).sum();
            if w.is_empty() || blobs < min_blobs {
                return Ok(());
            }
            std::mem::take(&mut *w)
        };
        let file = IndexFile { packs };
        let id = self.write_index(&file)?;
        let sizes: Vec<(PackId, u64)> = file.packs.iter().map(|p| (p.id, p.size)).collect();
        let ids: Vec<BlobId> = file
            .packs
            .iter()
            .flat_map(|p| p.blobs.iter().map(|e| e.id))
            .collect();
        self.index_added(id.to_hex(), file)?;
        {
            let mut f = self
                .packing
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            for b in &ids {
                f.remove(b);
            }
            if f.is_empty() {
                f.shrink_to_fit();
            }
        }
        self.packing
            .indexed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(sizes);
        Ok(())
    }

    /// The packs indexed since the last call, with sizes (a backup's, for its report).
    pub fn take_written(&self) -> Vec<(PackId, u64)> {
        std::mem::take(
            &mut *self
                .packing
                .indexed
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Hands a full pack to the writer thread (started on first use), so that the threads that
    /// chunk and compress never wait for the disk. At most one pack waits in the queue, and
    /// [`crate::repo::backend::Backend::write_concurrency`] are being written.
    fn write_pack(&self, p: Packer) -> Result<()> {
        self.check_writer()?;
        self.check_lock()?;
        if p.entries.is_empty() {
            return Ok(());
        }
        let bytes = format::finish_pack(&self.keys, p.body, &p.entries);
        let id = PackId::hash_of(&bytes);
        if p.entries.first().is_some_and(|e| e.kind == BlobKind::Tree) {
            // The next backup, `ls` and the mount read these trees from this host's copy.
            self.keep_remote_copy(FileKind::Pack, &id.to_hex(), &bytes);
        }
        self.send(WriterMsg::Pack(id, bytes, p.entries))
    }

    fn send(&self, msg: WriterMsg) -> Result<()> {
        let tx = {
            let mut w = self
                .packing
                .writer
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if w.is_none() {
                let (tx, rx) = std::sync::mpsc::sync_channel::<WriterMsg>(1);
                let rx = Arc::new(Mutex::new(rx));
                let threads = self.backend.write_concurrency().max(1);
                for _ in 0..threads {
                    let (rx, backend) = (rx.clone(), self.backend.clone());
                    let written = self.packing.written.clone();
                    let h = std::thread::Builder::new()
                        .name("bakfs-pack-writer".into())
                        .spawn(move || pack_writer(&rx, backend.as_ref(), &written))
                        .map_err(|e| Error::io("starting the pack writer", e))?;
                    self.packing
                        .handles
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(h);
                }
                self.packing
                    .writers
                    .store(threads, std::sync::atomic::Ordering::Relaxed);
                *w = Some(tx);
            }
            w.clone()
        };
        match tx {
            Some(tx) => tx
                .send(msg)
                .map_err(|_| Error::Invalid("pack writer stopped".into())),
            None => Err(Error::Invalid("pack writer stopped".into())),
        }
    }

    /// Fails if the writer thread failed (a full disk, say): the first caller gets the error,
    /// every later one a reminder of it, so no later write or flush can look successful.
    fn check_writer(&self) -> Result<()> {
        let mut err = self
            .packing
            .written
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match err.take() {
            Some(e) => {
                *err = Some(Error::Invalid(format!("an earlier pack write failed: {e}")));
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Waits until every pack handed to the writer is durable; returns them.
    fn drain_writer(&self) -> Result<Vec<IndexPack>> {
        // Starts the writers if none ran yet, so that their number is known.
        let first = Arc::new(std::sync::Barrier::new(1));
        self.send(WriterMsg::Barrier(first))?;
        let n = self.packing.writers.load(Ordering::Relaxed);
        let all = Arc::new(std::sync::Barrier::new(n + 1));
        for _ in 0..n {
            self.send(WriterMsg::Barrier(all.clone()))?;
        }
        all.wait();
        self.check_writer()?;
        Ok(std::mem::take(
            &mut *self
                .packing
                .written
                .packs
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        ))
    }

    /// Writes the partly filled packs and an index file for every pack written and not yet
    /// indexed, and adds it to the index. After it returns, everything saved is durable and
    /// findable.
    ///
    /// # Errors
    /// I/O errors.
    pub fn flush(&self) -> Result<()> {
        for packer in [&self.packing.data_packer, &self.packing.tree_packer] {
            let p = std::mem::take(&mut *packer.lock().unwrap_or_else(|p| p.into_inner()));
            self.write_pack(p)?;
        }
        let packs = self.drain_writer()?;
        self.packing
            .written
            .packs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(packs);
        self.index_written(1)?;
        let mut f = self
            .packing
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f.clear();
        f.shrink_to_fit();
        Ok(())
    }

    /// From now until [`Repository::flush_packs_only`], blobs saved are written to packs
    /// without index files (prune writes the index for everything at its end).
    pub fn hold_index(&self) {
        self.packing.hold_index.store(true, Ordering::Relaxed);
    }

    /// Writes the partly filled packs and returns every pack written since the last flush,
    /// without writing an index (prune writes the index for everything at its end).
    ///
    /// # Errors
    /// I/O errors.
    pub fn flush_packs_only(&self) -> Result<Vec<IndexPack>> {
        self.packing.hold_index.store(false, Ordering::Relaxed);
        for packer in [&self.packing.data_packer, &self.packing.tree_packer] {
            let p = std::mem::take(&mut *packer.lock().unwrap_or_else(|p| p.into_inner()));
            self.write_pack(p)?;
        }
        self.packing
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.drain_writer()
    }
}
