//! Key wrappings in `keys/`: several passphrases can open the same master key.

use super::Repository;
use crate::error::{Error, Result};
use crate::format::crypto::{KdfParams, MasterKey, WrappedKey};
use crate::format::id::KeyId;
use crate::repo::backend::{Backend, FileKind};

/// Tries every key wrapping in `keys/` (in name order) until one opens with `passphrase`.
///
/// # Errors
/// [`Error::WrongPassword`] if none does (or the damage of an unreadable key file, if one was
/// seen); I/O errors.
pub(super) fn unwrap_any(backend: &dyn Backend, passphrase: &[u8]) -> Result<(MasterKey, KeyId)> {
    let names = backend
        .list(FileKind::Key)
        .map_err(|e| Error::io(format!("{}/keys", backend.location()), e))?;
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
            return Ok((master, kid));
        }
    }
    Err(damaged.unwrap_or(Error::WrongPassword))
}

/// Writes a new wrapping of `master` under `passphrase` into `keys/` (for `key add`, and for a
/// key typed back from paper when no passphrase opens the repository any more).
///
/// # Errors
/// I/O errors.
pub fn add_wrapping(
    backend: &dyn Backend,
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
    backend
        .write(FileKind::Key, &id.to_hex(), &j)
        .map_err(|e| Error::io(format!("key {id}"), e))?;
    Ok(id)
}

/// Whether a master key is this repository's, as far as its files can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFit {
    /// A snapshot manifest or index file opened with it.
    Opens,
    /// The repository holds no manifest or index file to try it on.
    Unverifiable,
}

/// Tries `master` on the repository's snapshot manifests and index files (a few of each): the
/// AEAD authenticates, so one that opens proves the key.
///
/// # Errors
/// [`Error::WrongPassword`] if files exist and none opens; I/O errors listing.
pub fn master_fits(backend: &dyn Backend, master: &MasterKey) -> Result<KeyFit> {
    let keys = master.derive();
    let mut tried = 0;
    for kind in [FileKind::Snapshot, FileKind::Index] {
        let names = backend
            .list(kind)
            .map_err(|e| Error::io(format!("{}/", kind.dir()), e))?;
        for n in names.iter().take(3) {
            let Ok(raw) = backend.read(kind, n) else {
                continue;
            };
            tried += 1;
            let opens = match kind {
                FileKind::Snapshot => crate::format::open_snapshot(&keys, n, &raw).is_ok(),
                _ => crate::format::open_index(&keys, n, &raw).is_ok(),
            };
            if opens {
                return Ok(KeyFit::Opens);
            }
        }
    }
    if tried == 0 {
        Ok(KeyFit::Unverifiable)
    } else {
        Err(Error::WrongPassword)
    }
}

impl Repository {
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
        add_wrapping(self.backend.as_ref(), master, passphrase, kdf, comment)
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
