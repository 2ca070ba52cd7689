//! An open repository: keys, index, reading and writing blobs, snapshots.

pub mod backend;
mod index;
pub use index::{cache_root, Marks};
mod keys;
pub mod lock;
mod packer;
mod remote_cache;
mod snapshots;
pub mod walk;

pub use keys::{add_wrapping, master_fits, unwrap_master, KeyFit};

use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::chunker::{Chunker, ChunkerParams};
use crate::format::crypto::{KdfParams, Keys, MasterKey, WrappedKey};
use crate::format::id::{BlobId, KeyId, PackId, RepoId};
use crate::format::{self, Config, PackEntry, Tree};
use crate::repo::backend::{Backend, FileKind};

/// Where a blob is.
#[derive(Debug, Clone, Copy)]
pub struct BlobLocation {
    /// Its pack.
    pub pack: PackId,
    /// Its entry in that pack.
    pub entry: PackEntry,
}

/// An open, unlocked repository. Locking is the caller's business (see [`crate::repo::lock`]).
pub struct Repository {
    backend: Arc<dyn Backend>,
    config: Config,
    keys: Keys,
    key_id: KeyId,
    chunker: Chunker,
    /// The index tables and the packs to pass over (see `index/`).
    index: RwLock<index::IndexState>,
    /// Packers, the pack-writer thread and blobs being stored (see `packer.rs`).
    packing: packer::Packing,
    /// Index files and snapshot manifests that failed to open: (name, reason).
    damaged: Mutex<Vec<(String, String)>>,
    /// Index files and manifests not named by the blake3 of their bytes (a copy under another
    /// name, a renamed file): ("index <name>" or "snapshot <name>", their hash).
    misnamed: Mutex<Vec<(String, String)>>,
    /// A medium's copy (see [`crate::medium`]): its index may list packs it does not hold.
    medium: bool,
    /// The lock this repository is used under (its name and lost flag), once taken with
    /// [`Repository::lock_shared`] or [`Repository::lock_exclusive`].
    held: Mutex<Option<(String, Arc<std::sync::atomic::AtomicBool>)>>,
    /// Copies of manifests and tree packs of a remote repository (see `remote_cache.rs`).
    remote_cache: Option<remote_cache::RemoteCache>,
}

/// Reads and bounds the plaintext `config` (design.md §3.1).
///
/// # Errors
/// [`Error::NotARepository`], [`Error::UnsupportedVersion`], a damaged or implausible config.
pub fn read_config(backend: &dyn Backend) -> Result<Config> {
    let raw = match backend.read(FileKind::Config, "config") {
        Ok(r) => r,
        // A backend's own word on it (a bucket that does not exist) is kept.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && e.get_ref().is_some() => {
            return Err(Error::NotARepository(format!(
                "{} ({e})",
                backend.location()
            )))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotARepository(backend.location()))
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
    /// Creates a new repository at `backend` (a missing or empty place) with a first key
    /// wrapped by `passphrase`.
    ///
    /// # Errors
    /// If the place already holds a repository or other files, or on I/O errors.
    pub fn init(
        backend: Arc<dyn Backend>,
        passphrase: &[u8],
        kdf: KdfParams,
        comment: String,
    ) -> Result<Repository> {
        let at = backend.location();
        backend.create().map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Invalid(e.to_string()),
            _ => Error::io(&at, e),
        })?;
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
            .map_err(|e| Error::io(&at, e))?;
        let config = Config {
            version: format::FORMAT_VERSION,
            id: RepoId::random(),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
        };
        let cjson =
            serde_json::to_vec_pretty(&config).map_err(|e| Error::Invalid(e.to_string()))?;
        // The config is written last: a place without it is not a repository. Create-only, so
        // that of two inits racing into one place only one makes a repository (the other's key
        // would wrap another master key than the data's).
        match backend.write_new(FileKind::Config, "config", &cjson) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = backend.remove(FileKind::Key, &key_id.to_hex());
                return Err(Error::Invalid(format!(
                    "{e}: another init made a repository there first; this one withdrew its key"
                )));
            }
            Err(e) => return Err(Error::io(&at, e)),
        }
        Self::with_key(backend, config, master, key_id)
    }

    /// Opens the repository at `backend` with `passphrase`. A medium's copy (it has a
    /// `medium.json`, see [`crate::medium`]) is opened as one: its index may list packs it
    /// does not hold.
    ///
    /// # Errors
    /// [`Error::NotARepository`], [`Error::UnsupportedVersion`], [`Error::WrongPassword`],
    /// [`Error::Damaged`] for a damaged index, I/O errors.
    pub fn open(backend: Arc<dyn Backend>, passphrase: &[u8]) -> Result<Repository> {
        let repo = Self::open_unindexed(backend, passphrase)?;
        repo.load_index()?;
        Ok(repo)
    }

    /// As [`Repository::open`], without reading the index: for a command that takes its lock
    /// next, which reads it ([`Repository::lock_shared`]), so that `index/` and `condemned/`
    /// are listed once (two requests fewer in a bucket). Nothing may look a blob up before.
    ///
    /// # Errors
    /// As [`Repository::open`].
    pub fn open_unindexed(backend: Arc<dyn Backend>, passphrase: &[u8]) -> Result<Repository> {
        let config = read_config(backend.as_ref())?;
        let medium = backend
            .size(FileKind::Config, crate::medium::IDENTITY)
            .is_ok();
        let (master, kid) = keys::unwrap_any(backend.as_ref(), passphrase)?;
        let mut repo = Self::with_key_lazy(backend, config, master, kid);
        repo.medium = medium;
        Ok(repo)
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
        let mut repo = Repository {
            backend,
            config,
            keys,
            key_id,
            chunker,
            index: RwLock::new(index::IndexState::default()),
            packing: packer::Packing::default(),
            damaged: Mutex::new(Vec::new()),
            misnamed: Mutex::new(Vec::new()),
            medium: false,
            held: Mutex::new(None),
            remote_cache: None,
        };
        if repo.backend.remote() {
            repo.remote_cache = repo
                .cache_dir()
                .map(|d| remote_cache::RemoteCache::new(d.join("remote-v1")));
        }
        repo
    }

    /// Reads a snapshot manifest, from this host's copy for a remote repository.
    fn read_manifest(&self, name: &str) -> std::io::Result<Vec<u8>> {
        match &self.remote_cache {
            Some(c) => c.read(self.backend.as_ref(), FileKind::Snapshot, name),
            None => self.backend.read(FileKind::Snapshot, name),
        }
    }

    /// Keeps this host's copy of a manifest or tree pack just written to a remote repository.
    fn keep_remote_copy(&self, kind: FileKind, name: &str, bytes: &[u8]) {
        if let Some(c) = &self.remote_cache {
            c.keep_written(kind, name, bytes);
        }
    }

    /// Removes this host's copies of manifests and packs the repository no longer has.
    pub(crate) fn sweep_remote_cache(&self, snapshots: Option<&[String]>) {
        let Some(c) = &self.remote_cache else { return };
        if let Some(names) = snapshots {
            c.retain(FileKind::Snapshot, &names.iter().cloned().collect());
        } else {
            let packs = self
                .indexed_packs()
                .into_keys()
                .map(|p| p.to_hex())
                .collect();
            c.retain(FileKind::Pack, &packs);
        }
    }

    /// Whether this is a medium's copy, which holds only some of the packs its index lists.
    pub fn is_medium(&self) -> bool {
        self.medium
    }

    /// Index files and manifests read so far whose names are not the blake3 of their bytes
    /// (design.md §2): ("index <name>" or "snapshot <name>", the hash of the bytes). They are
    /// still read (their content is authenticated); `check` reports them.
    pub fn misnamed(&self) -> Vec<(String, String)> {
        self.misnamed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records what a read of `kind` files found misnamed, replacing what an earlier read of
    /// that kind found.
    fn set_misnamed(&self, prefix: &str, found: Vec<(String, String)>) {
        let mut m = self.misnamed.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|(n, _)| !n.starts_with(prefix));
        m.extend(found);
    }

    /// Index files and snapshot manifests found damaged so far: ("index <id>" or
    /// "snapshot <id>", reason).
    pub fn damaged(&self) -> Vec<(String, String)> {
        self.damaged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

    /// Reads, authenticates and decompresses one blob.
    ///
    /// # Errors
    /// [`Error::NotFound`] if no index entry; [`Error::Damaged`] if the pack is damaged or
    /// missing; I/O errors.
    pub fn read_blob(&self, id: &BlobId) -> Result<Vec<u8>> {
        let loc = self
            .locate_for_read(id)
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
        let (pack, offset, len) = (loc.pack.to_hex(), e.offset as u64, e.length as usize);
        let read = match &self.remote_cache {
            // Trees are read again by every re-backup, listing and mount: kept on this host.
            Some(c) if e.kind == format::BlobKind::Tree => {
                c.read_pack_range(self.backend.as_ref(), &pack, offset, len)
            }
            // Data: the pack whole, once, for the blobs read after it (a restore's).
            Some(c) => c.read_data_range(self.backend.as_ref(), &pack, offset, len),
            _ => self.backend.read_range(FileKind::Pack, &pack, offset, len),
        };
        read.map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => Error::damaged(format!("pack {}", loc.pack), "missing"),
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
}
