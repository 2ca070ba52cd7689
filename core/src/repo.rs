//! An open repository: keys, index, reading and writing blobs, snapshots.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use rayon::prelude::*;

use crate::backend::{Backend, FileKind, LocalBackend};
use crate::chunker::{Chunker, ChunkerParams};
use crate::crypto::{KdfParams, Keys, MasterKey, WrappedKey};
use crate::error::{Error, Result};
use crate::format::{self, BlobKind, Config, IndexFile, IndexPack, PackEntry, Snapshot, Tree};
use crate::id::{BlobId, IndexId, KeyId, PackId, RepoId, SnapshotId};

/// Target size of a data pack.
const DATA_PACK_SIZE: usize = 8 * 1024 * 1024;
/// Target size of a tree pack.
const TREE_PACK_SIZE: usize = 4 * 1024 * 1024;

/// Where a blob is.
#[derive(Debug, Clone, Copy)]
pub struct BlobLocation {
    /// Its pack.
    pub pack: PackId,
    /// Its entry in that pack.
    pub entry: PackEntry,
}

enum WriterMsg {
    Pack(PackId, Vec<u8>, Vec<PackEntry>),
    Barrier(std::sync::mpsc::SyncSender<()>),
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

#[derive(Default)]
struct Packer {
    body: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// An open, unlocked repository. Locking is the caller's business (see [`crate::lock`]).
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    keys: Keys,
    key_id: KeyId,
    chunker: Chunker,
    index: RwLock<HashMap<BlobId, BlobLocation>>,
    pack_sizes: RwLock<HashMap<PackId, u64>>,
    in_flight: Mutex<HashSet<BlobId>>,
    data_packer: Mutex<Packer>,
    tree_packer: Mutex<Packer>,
    written: Arc<Written>,
    /// Index files and snapshot manifests that failed to open: (name, reason).
    damaged: Mutex<Vec<(String, String)>>,
    writer: Mutex<Option<std::sync::mpsc::SyncSender<WriterMsg>>>,
    /// A medium's copy (see [`crate::medium`]): its index may list packs it does not hold.
    medium: bool,
}

fn read_config(backend: &dyn Backend, root: &std::path::Path) -> Result<Config> {
    let raw = match backend.read(FileKind::Config, "config") {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotARepository(root.to_path_buf()))
        }
        Err(e) => return Err(Error::io(format!("{}/config", backend.location()), e)),
    };
    #[derive(serde::Deserialize)]
    struct V {
        version: u32,
    }
    let v: V = serde_json::from_slice(&raw).map_err(|e| Error::damaged("config", e.to_string()))?;
    if v.version != format::FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            found: v.version,
            supported: format::FORMAT_VERSION,
        });
    }
    let c: Config =
        serde_json::from_slice(&raw).map_err(|e| Error::damaged("config", e.to_string()))?;
    let p = c.chunker;
    let sane = p.min >= 64
        && p.avg.is_power_of_two()
        && p.min < p.avg
        && p.avg < p.max
        && p.max <= 64 << 20
        && (-7..=22).contains(&c.zstd_level);
    if !sane {
        return Err(Error::damaged(
            "config",
            format!(
                "implausible parameters (chunker {}/{}/{}, zstd level {})",
                p.min, p.avg, p.max, c.zstd_level
            ),
        ));
    }
    Ok(c)
}

/// Names the pack in a blob's damage report.
fn in_pack(err: Error, loc: &BlobLocation) -> Error {
    match err {
        Error::Damaged { what, detail } => {
            Error::damaged(format!("{what} in pack {}", loc.pack), detail)
        }
        other => other,
    }
}

impl Repository {
    /// Creates a new repository in the directory `root` with a first key wrapped by `passphrase`.
    ///
    /// # Errors
    /// If `root` already holds a repository or other files, or on I/O errors.
    pub fn init(
        root: &std::path::Path,
        passphrase: &[u8],
        kdf: KdfParams,
        comment: String,
    ) -> Result<Repository> {
        if root.join("config").exists() {
            return Err(Error::Invalid(format!(
                "{}: a repository already exists here",
                root.display()
            )));
        }
        if let Ok(mut rd) = std::fs::read_dir(root) {
            if rd.next().is_some() {
                return Err(Error::Invalid(format!(
                    "{}: directory is not empty",
                    root.display()
                )));
            }
        }
        let backend = LocalBackend::new(root);
        backend
            .create_layout()
            .map_err(|e| Error::io(root.display(), e))?;
        let master = MasterKey::generate();
        let wrapped = WrappedKey::wrap(
            &master,
            passphrase,
            kdf,
            crate::timefmt::format_rfc3339(crate::timefmt::now_ns()),
            comment,
        )
        .map_err(|e| Error::Invalid(e.to_string()))?;
        let key_id = KeyId::random();
        let kjson =
            serde_json::to_vec_pretty(&wrapped).map_err(|e| Error::Invalid(e.to_string()))?;
        backend
            .write(FileKind::Key, &key_id.to_hex(), &kjson)
            .map_err(|e| Error::io(root.display(), e))?;
        let config = Config {
            version: format::FORMAT_VERSION,
            id: RepoId::random(),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
        };
        let cjson =
            serde_json::to_vec_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))?;
        // The config is written last: a directory without it is not a repository.
        backend
            .write(FileKind::Config, "config", &cjson)
            .map_err(|e| Error::io(root.display(), e))?;
        Self::with_key(Arc::new(backend), config, master, key_id)
    }

    /// Reads the plaintext `config` of the repository in `root`, without the key (for mediad
    /// and `bakfs media`, which copy encrypted files and need only the repository id).
    ///
    /// # Errors
    /// [`Error::NotARepository`], [`Error::UnsupportedVersion`], a damaged config.
    pub fn read_config(root: &std::path::Path) -> Result<Config> {
        read_config(&LocalBackend::new(root), root)
    }

    /// Opens the repository in directory `root` with `passphrase`.
    ///
    /// # Errors
    /// [`Error::NotARepository`], [`Error::UnsupportedVersion`], [`Error::WrongPassword`],
    /// [`Error::Damaged`] for a damaged index, I/O errors.
    pub fn open(root: &std::path::Path, passphrase: &[u8]) -> Result<Repository> {
        let medium = crate::medium::is_medium(root);
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(root));
        let config = read_config(backend.as_ref(), root)?;
        let names = backend
            .list(FileKind::Key)
            .map_err(|e| Error::io(format!("{}/keys", root.display()), e))?;
        let mut damaged = None;
        for name in names {
            let Ok(kid) = KeyId::from_hex(&name) else {
                continue;
            };
            let raw = backend
                .read(FileKind::Key, &name)
                .map_err(|e| Error::io(format!("key {name}"), e))?;
            let w: WrappedKey = match serde_json::from_slice(&raw) {
                Ok(w) => w,
                Err(e) => {
                    damaged = Some(Error::damaged(format!("key {name}"), e.to_string()));
                    continue;
                }
            };
            if let Ok(master) = w.unwrap_key(passphrase) {
                let mut repo = Self::with_key_lazy(backend, config, master, kid);
                repo.medium = medium;
                repo.load_index()?;
                return Ok(repo);
            }
        }
        Err(damaged.unwrap_or(Error::WrongPassword))
    }

    fn with_key(
        backend: Arc<dyn Backend>,
        config: Config,
        master: MasterKey,
        key_id: KeyId,
    ) -> Result<Repository> {
        let repo = Self::with_key_lazy(backend, config, master, key_id);
        repo.load_index()?;
        Ok(repo)
    }

    fn with_key_lazy(
        backend: Arc<dyn Backend>,
        config: Config,
        master: MasterKey,
        key_id: KeyId,
    ) -> Repository {
        let keys = master.derive();
        let chunker = Chunker::new(keys.chunker_seed(), config.chunker);
        Repository {
            backend,
            config,
            keys,
            key_id,
            chunker,
            index: RwLock::new(HashMap::new()),
            pack_sizes: RwLock::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            data_packer: Mutex::new(Packer::default()),
            tree_packer: Mutex::new(Packer::default()),
            written: Arc::new(Written::default()),
            damaged: Mutex::new(Vec::new()),
            writer: Mutex::new(None),
            medium: false,
        }
    }

    /// Whether this is a medium's copy, which holds only some of the packs its index lists.
    pub fn is_medium(&self) -> bool {
        self.medium
    }

    /// Reads all index files into memory. A damaged index file is skipped with a warning and
    /// listed by [`Repository::damaged`] (the blobs only it lists become unreachable until
    /// `repair index`; prune refuses to run meanwhile).
    ///
    /// # Errors
    /// I/O errors listing or reading.
    pub fn load_index(&self) -> Result<()> {
        // Without a lock a prune may replace index files between the listing and the reads: it
        // writes the new file before removing the old ones, so listing again finds a full set.
        let mut attempt = 1;
        let (names, results) = loop {
            let names = self
                .backend
                .list(FileKind::Index)
                .map_err(|e| Error::io("index/", e))?;
            let results: Vec<std::io::Result<Vec<u8>>> = names
                .par_iter()
                .map(|n| self.backend.read(FileKind::Index, n))
                .collect();
            let vanished = results.iter().any(|r| {
                r.as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
            });
            if !vanished || attempt == 5 {
                break (names, results);
            }
            attempt += 1;
            tracing::debug!("index files changed while being read; listing again");
        };
        let results: Vec<Result<IndexFile>> = names
            .par_iter()
            .zip(results)
            .map(|(n, r)| {
                let raw = r.map_err(|e| Error::io(format!("index {n}"), e))?;
                format::open_index(&self.keys, n, &raw)
            })
            .collect();
        let mut files = Vec::new();
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(n, _)| !n.starts_with("index "));
        for (n, r) in names.iter().zip(results) {
            match r {
                Ok(f) => files.push(f),
                Err(e @ Error::Damaged { .. }) => {
                    tracing::warn!("{e}: skipped");
                    self.damaged
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((format!("index {n}"), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        let mut idx = HashMap::new();
        let mut sizes = HashMap::new();
        // Blobs listed more than once: the later entry wins, the others are kept in case its
        // pack is absent (a medium holds only some packs).
        let mut others: HashMap<BlobId, Vec<BlobLocation>> = HashMap::new();
        for f in files {
            for p in f.packs {
                sizes.insert(p.id, p.size);
                for e in p.blobs {
                    let loc = BlobLocation {
                        pack: p.id,
                        entry: e,
                    };
                    if let Some(old) = idx.insert(e.id, loc) {
                        if self.medium && old.pack != p.id {
                            others.entry(e.id).or_default().push(old);
                        }
                    }
                }
            }
        }
        if !others.is_empty() {
            let present: HashSet<String> = self
                .backend
                .list(FileKind::Pack)
                .map_err(|e| Error::io("data/", e))?
                .into_iter()
                .collect();
            for (id, alts) in others {
                let Some(cur) = idx.get_mut(&id) else {
                    continue;
                };
                if present.contains(&cur.pack.to_hex()) {
                    continue;
                }
                if let Some(alt) = alts
                    .into_iter()
                    .find(|a| present.contains(&a.pack.to_hex()))
                {
                    *cur = alt;
                }
            }
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = idx;
        *self.pack_sizes.write().unwrap_or_else(|p| p.into_inner()) = sizes;
        Ok(())
    }

    /// Index files and snapshot manifests found damaged so far: ("index <id>" or
    /// "snapshot <id>", reason).
    pub fn damaged(&self) -> Vec<(String, String)> {
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds the index from the headers of the packs present: writes one new index file,
    /// then removes the others. Returns the number of packs indexed and the packs whose header
    /// is unreadable (left alone; `check --read-data` names them).
    ///
    /// # Errors
    /// I/O errors.
    pub fn rebuild_index(&self) -> Result<(usize, Vec<(PackId, String)>)> {
        let names = self
            .backend
            .list(FileKind::Pack)
            .map_err(|e| Error::io("data/", e))?;
        let results: Vec<(PackId, Result<IndexPack>)> = names
            .par_iter()
            .filter_map(|n| PackId::from_hex(n).ok())
            .map(|id| {
                let r = self
                    .backend
                    .read(FileKind::Pack, &id.to_hex())
                    .map_err(|e| Error::io(format!("pack {id}"), e))
                    .and_then(|bytes| {
                        let blobs = format::read_pack_header(&self.keys, &id, &bytes)?;
                        Ok(IndexPack {
                            id,
                            size: bytes.len() as u64,
                            blobs,
                        })
                    });
                (id, r)
            })
            .collect();
        let mut packs = vec![];
        let mut bad = vec![];
        for (id, r) in results {
            match r {
                Ok(p) => packs.push(p),
                Err(e) => bad.push((id, e.to_string())),
            }
        }
        let old = self
            .backend
            .list(FileKind::Index)
            .map_err(|e| Error::io("index/", e))?;
        let n = packs.len();
        let new_id = self.write_index(&IndexFile { packs })?;
        for o in old {
            if o != new_id.to_hex() {
                self.backend
                    .remove(FileKind::Index, &o)
                    .map_err(|e| Error::io(format!("index {o}"), e))?;
            }
        }
        self.load_index()?;
        Ok((n, bad))
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The repository id.
    pub fn id(&self) -> RepoId {
        self.config.id
    }
    /// The derived keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    /// The chunker.
    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }
    /// The id of the key wrapping that opened the repository.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Where a blob is, if the index knows it.
    pub fn locate(&self, id: &BlobId) -> Option<BlobLocation> {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// Whether the index holds a blob.
    pub fn has_blob(&self, id: &BlobId) -> bool {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(id)
    }

    /// A copy of the whole index (blob → location).
    pub fn index_snapshot(&self) -> HashMap<BlobId, BlobLocation> {
        self.index.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Packs the index knows, with sizes.
    pub fn indexed_packs(&self) -> HashMap<PackId, u64> {
        self.pack_sizes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads, authenticates and decompresses one blob.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no index entry; [`Error::Damaged`] if the pack is damaged or
    /// missing; I/O errors.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self
            .locate(id)
            .ok_or_else(|| Error::damaged(format!("blob {id}"), "not in the index"))?;
        self.read_blob_at(&loc)
    }

    /// Reads a blob at a known location.
    ///
    /// # Errors
    /// As [`Repository::read_blob`].
    pub fn read_blob_at(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        self.read_blob_into(loc, |n| Ok(vec![0; n]))
    }

    /// As [`Repository::read_blob_at`], into a buffer of the blob's length that `out` makes
    /// (decrypted in place, decompressed straight into it: no intermediate copies).
    ///
    /// # Errors
    /// As [`Repository::read_blob`].
    pub fn read_blob_into<B: std::ops::DerefMut<Target = [u8]>>(
        &self,
        loc: &BlobLocation,
        out: impl FnOnce(usize) -> std::io::Result<B>,
    ) -> Result<B> {
        let mut sealed = self.read_sealed(loc)?;
        format::open_blob_into(&self.keys, &loc.entry, &mut sealed, out)
            .map_err(|err| in_pack(err, loc))
    }

    fn read_sealed(&self, loc: &BlobLocation) -> Result<Vec<u8>> {
        let e = &loc.entry;
        self.backend
            .read_range(
                FileKind::Pack,
                &loc.pack.to_hex(),
                e.offset as u64,
                e.length as usize,
            )
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::damaged(format!("pack {}", loc.pack), "missing")
                }
                std::io::ErrorKind::UnexpectedEof => {
                    Error::damaged(format!("pack {}", loc.pack), "truncated")
                }
                _ => Error::io(format!("pack {}", loc.pack), err),
            })
    }

    /// Reads a tree.
    ///
    /// # Errors
    /// As [`Repository::read_blob`], or a malformed tree.
    pub fn read_tree(&self, id: &BlobId) -> Result<Tree> {
        Tree::decode(id, &self.read_blob(id)?)
    }

    /// Stores a blob unless the repository already has it. Returns its id and the number of
    /// plaintext bytes added (0 if it was a duplicate). Thread-safe; packs are written as they
    /// fill, and [`Repository::flush`] writes the rest and the index.
    ///
    /// # Errors
    /// I/O errors writing a pack.
    pub fn save_blob(&self, kind: BlobKind, plain: &[u8]) -> Result<(BlobId, u64)> {
        let id = self.keys.blob_id(plain);
        if self.has_blob(&id) {
            return Ok((id, 0));
        }
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id)
        {
            return Ok((id, 0));
        }
        let (sealed, compressed) =
            format::seal_blob(&self.keys, &id, kind, plain, self.config.zstd_level);
        let (packer, target) = match kind {
            BlobKind::Data => (&self.data_packer, DATA_PACK_SIZE),
            BlobKind::Tree => (&self.tree_packer, TREE_PACK_SIZE),
        };
        let full = {
            let mut p = packer.lock().unwrap_or_else(|p| p.into_inner());
            if p.body.capacity() == 0 {
                // A full pack plus the largest blob, in one buffer, reused when one is spare.
                let want = target + self.config.chunker.max + crate::crypto::OVERHEAD + 1024;
                let spare = self
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
        }
        Ok((id, plain.len() as u64))
    }

    /// Hands a full pack to the writer thread (started on first use), so that the threads that
    /// chunk and compress never wait for the disk. At most one pack waits in the queue.
    fn write_pack(&self, p: Packer) -> Result<()> {
        self.check_writer()?;
        if p.entries.is_empty() {
            return Ok(());
        }
        let bytes = format::finish_pack(&self.keys, p.body, &p.entries);
        let id = PackId::hash_of(&bytes);
        self.send(WriterMsg::Pack(id, bytes, p.entries))
    }

    fn send(&self, msg: WriterMsg) -> Result<()> {
        let tx = {
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if w.is_none() {
                let (tx, rx) = std::sync::mpsc::sync_channel::<WriterMsg>(1);
                let backend = self.backend.clone();
                let written = self.written.clone();
                std::thread::Builder::new()
                    .name("bakfs-pack-writer".into())
                    .spawn(move || {
                        for msg in rx {
                            match msg {
                                WriterMsg::Pack(id, bytes, entries) => {
                                    if written
                                        .error
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .is_some()
                                    {
                                        continue;
                                    }
                                    match backend.write(FileKind::Pack, &id.to_hex(), &bytes) {
                                        Ok(()) => {
                                            written
                                                .packs
                                                .lock()
                                                .unwrap_or_else(|p| p.into_inner())
                                                .push(IndexPack {
                                                    id,
                                                    size: bytes.len() as u64,
                                                    blobs: entries,
                                                });
                                            let mut spare = written
                                                .spare
                                                .lock()
                                                .unwrap_or_else(|p| p.into_inner());
                                            if spare.len() < SPARE_PACK_BUFFERS {
                                                spare.push(bytes);
                                            }
                                        }
                                        Err(e) => {
                                            *written
                                                .error
                                                .lock()
                                                .unwrap_or_else(|p| p.into_inner()) =
                                                Some(Error::io(format!("writing pack {id}"), e))
                                        }
                                    }
                                }
                                WriterMsg::Barrier(done) => {
                                    let _ = done.send(());
                                }
                            }
                        }
                    })
                    .map_err(|e| Error::io("starting the pack writer", e))?;
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
        let mut err = self.written.error.lock().unwrap_or_else(|p| p.into_inner());
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
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(WriterMsg::Barrier(tx))?;
        rx.recv()
            .map_err(|_| Error::Invalid("pack writer stopped".into()))?;
        self.check_writer()?;
        Ok(std::mem::take(
            &mut *self.written.packs.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    }

    /// Writes the partly filled packs and an index file for every pack written since the last
    /// flush, then adds them to the in-memory index. After it returns, everything saved is
    /// durable and findable. Returns the packs written.
    ///
    /// # Errors
    /// I/O errors.
    pub fn flush(&self) -> Result<Vec<IndexPack>> {
        for packer in [&self.data_packer, &self.tree_packer] {
            let p = std::mem::take(&mut *packer.lock().unwrap_or_else(|p| p.into_inner()));
            self.write_pack(p)?;
        }
        let packs = self.drain_writer()?;
        if packs.is_empty() {
            return Ok(packs);
        }
        self.write_index(&IndexFile {
            packs: packs.clone(),
        })?;
        {
            let mut idx = self.index.write().unwrap_or_else(|p| p.into_inner());
            let mut sizes = self.pack_sizes.write().unwrap_or_else(|p| p.into_inner());
            for p in &packs {
                sizes.insert(p.id, p.size);
                for e in &p.blobs {
                    idx.insert(
                        e.id,
                        BlobLocation {
                            pack: p.id,
                            entry: *e,
                        },
                    );
                }
            }
        }
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(packs)
    }

    /// Removes the blobs of `packs` from the in-memory index (prune repacks them).
    pub fn drop_packs_from_index(&self, packs: &HashSet<PackId>) {
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, l| !packs.contains(&l.pack));
    }

    /// Writes the partly filled packs and returns every pack written since the last flush,
    /// without writing an index (prune writes one index for everything).
    ///
    /// # Errors
    /// I/O errors.
    pub fn flush_packs_only(&self) -> Result<Vec<IndexPack>> {
        for packer in [&self.data_packer, &self.tree_packer] {
            let p = std::mem::take(&mut *packer.lock().unwrap_or_else(|p| p.into_inner()));
            self.write_pack(p)?;
        }
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.drain_writer()
    }

    /// Writes one index file. Returns its id.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_index(&self, idx: &IndexFile) -> Result<IndexId> {
        let bytes = format::seal_index(&self.keys, idx);
        let id = IndexId::hash_of(&bytes);
        self.backend
            .write(FileKind::Index, &id.to_hex(), &bytes)
            .map_err(|e| Error::io(format!("writing index {id}"), e))?;
        Ok(id)
    }

    /// Writes a snapshot manifest (call after [`Repository::flush`]).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save_snapshot(&self, s: &Snapshot) -> Result<SnapshotId> {
        let bytes = format::seal_snapshot(&self.keys, s);
        let id = SnapshotId::hash_of(&bytes);
        self.backend
            .write(FileKind::Snapshot, &id.to_hex(), &bytes)
            .map_err(|e| Error::io(format!("writing snapshot {id}"), e))?;
        Ok(id)
    }

    /// All readable snapshots, oldest first. A damaged manifest is skipped with a warning and
    /// listed by [`Repository::damaged`].
    ///
    /// # Errors
    /// I/O errors.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let names = self
            .backend
            .list(FileKind::Snapshot)
            .map_err(|e| Error::io("snapshots/", e))?;
        let results: Vec<(String, Result<(SnapshotId, Snapshot)>)> = names
            .par_iter()
            .filter_map(|n| SnapshotId::from_hex(n).ok().map(|id| (id, n)))
            .map(|(id, n)| {
                let r = self
                    .backend
                    .read(FileKind::Snapshot, n)
                    .map_err(|e| Error::io(format!("snapshot {n}"), e))
                    .and_then(|raw| Ok((id, format::open_snapshot(&self.keys, n, &raw)?)));
                (n.clone(), r)
            })
            .collect();
        let mut v = Vec::new();
        let mut damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
        damaged.retain(|(n, _)| !n.starts_with("snapshot "));
        for (n, r) in results {
            match r {
                Ok(x) => v.push(x),
                Err(e @ Error::Damaged { .. }) => {
                    tracing::warn!("{e}: skipped (remove it with `bakfs forget {}`)", &n[..8]);
                    damaged.push((format!("snapshot {n}"), e.to_string()));
                }
                Err(e) => return Err(e),
            }
        }
        drop(damaged);
        v.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok(v)
    }

    /// Finds a snapshot by `latest` or a unique id prefix (at least 4 hex digits).
    ///
    /// # Errors
    /// [`Error::NotFound`] if none or several match.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        let all = self.snapshots()?;
        if spec == "latest" {
            return all
                .into_iter()
                .last()
                .ok_or_else(|| Error::NotFound("the repository has no snapshots".into()));
        }
        let spec_l = spec.to_ascii_lowercase();
        if spec_l.len() < 4 || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(format!(
                "snapshot {spec:?}: give `latest` or at least 4 hex digits of an id"
            )));
        }
        let mut m: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
            .collect();
        match m.len() {
            0 => Err(Error::NotFound(format!("no snapshot matches {spec:?}"))),
            1 => Ok(m.remove(0)),
            n => Err(Error::NotFound(format!(
                "{n} snapshots match {spec:?}; give more digits"
            ))),
        }
    }

    /// Removes a snapshot manifest.
    ///
    /// # Errors
    /// I/O errors.
    pub fn remove_snapshot(&self, id: &SnapshotId) -> Result<()> {
        self.backend
            .remove(FileKind::Snapshot, &id.to_hex())
            .map_err(|e| Error::io(format!("snapshot {id}"), e))
    }

    /// The key wrappings, with ids.
    ///
    /// # Errors
    /// I/O errors or a damaged key file.
    pub fn keys_list(&self) -> Result<Vec<(KeyId, WrappedKey)>> {
        let names = self
            .backend
            .list(FileKind::Key)
            .map_err(|e| Error::io("keys/", e))?;
        names
            .iter()
            .filter_map(|n| KeyId::from_hex(n).ok().map(|k| (k, n)))
            .map(|(k, n)| {
                let raw = self
                    .backend
                    .read(FileKind::Key, n)
                    .map_err(|e| Error::io(format!("key {n}"), e))?;
                let w = serde_json::from_slice(&raw)
                    .map_err(|e| Error::damaged(format!("key {n}"), e.to_string()))?;
                Ok((k, w))
            })
            .collect()
    }

    /// Adds a wrapping of the master key under another passphrase.
    ///
    /// # Errors
    /// I/O errors.
    pub fn add_key(
        &self,
        master: &MasterKey,
        passphrase: &[u8],
        kdf: KdfParams,
        comment: String,
    ) -> Result<KeyId> {
        let w = WrappedKey::wrap(
            master,
            passphrase,
            kdf,
            crate::timefmt::format_rfc3339(crate::timefmt::now_ns()),
            comment,
        )
        .map_err(|e| Error::Invalid(e.to_string()))?;
        let id = KeyId::random();
        let j = serde_json::to_vec_pretty(&w).map_err(|e| Error::Invalid(e.to_string()))?;
        self.backend
            .write(FileKind::Key, &id.to_hex(), &j)
            .map_err(|e| Error::io(format!("key {id}"), e))?;
        Ok(id)
    }

    /// Removes a key wrapping. Refuses to remove the last one.
    ///
    /// # Errors
    /// [`Error::Invalid`] for the last key; [`Error::NotFound`]; I/O errors.
    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        let keys = self.keys_list()?;
        if !keys.iter().any(|(k, _)| k == id) {
            return Err(Error::NotFound(format!("no key {id}")));
        }
        if keys.len() == 1 {
            return Err(Error::Invalid(
                "refusing to remove the last key: the repository would be unreadable".into(),
            ));
        }
        self.backend
            .remove(FileKind::Key, &id.to_hex())
            .map_err(|e| Error::io(format!("key {id}"), e))
    }
}

/// Opens a key wrapping to get the master key again (for `key add`).
///
/// # Errors
/// [`Error::WrongPassword`] or damaged key.
pub fn unwrap_master(repo: &Repository, passphrase: &[u8]) -> Result<MasterKey> {
    let (_, w) = repo
        .keys_list()?
        .into_iter()
        .find(|(k, _)| *k == repo.key_id())
        .ok_or_else(|| Error::NotFound("the key in use was removed".into()))?;
    w.unwrap_key(passphrase).map_err(|_| Error::WrongPassword)
}
