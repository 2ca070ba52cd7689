//! A medium's directory: the `bakfs/` directory on an enrolled USB stick, disk or share. (A
//! bucket enrolled as a medium holds the same files as objects under its prefix.)
//!
//! ```text
//! <fs>/bakfs/medium.json   identity: medium id, label, repository id (plaintext JSON)
//! <fs>/bakfs/ledger.json   mirror of the catalog's ledger for this medium (informational)
//! <fs>/bakfs/RUNBOOK.md    the recovery runbook (informational, no secret)
//! <fs>/bakfs/config, keys/, index/, snapshots/, data/xx/   a repository (see design.md §2)
//! ```
//!
//! The directory is a repository of its own that holds a subset of the primary's snapshots:
//! `bakfs snapshots --repo <fs>/bakfs` and `bakfs restore` work with only the medium and the key.
//! Its index files are the primary's, so they may list packs that are not on the medium
//! ([`is_medium`] tells a reader to expect that).
//!
//! Media are untrusted input: everything here opens with `O_NOFOLLOW`, checks file types and
//! bounds sizes before reading.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsio::{self, Durability, Writers};

/// The directory on a medium's filesystem that holds bakfs's files.
pub const DIR: &str = "bakfs";
/// The identity file inside [`DIR`].
pub const IDENTITY: &str = "medium.json";
/// The ledger mirror inside [`DIR`].
pub const LEDGER: &str = "ledger.json";
/// The recovery runbook inside [`DIR`] (`bakfs runbook`'s page, as of the medium's last job).
pub const RUNBOOK: &str = "RUNBOOK.md";
/// The identity format this code writes and reads.
pub const IDENTITY_FORMAT: u32 = 1;
/// Largest identity file read; anything bigger is not ours.
const IDENTITY_MAX: u64 = 64 * 1024;

/// Errors handling a medium.
#[derive(Debug, thiserror::Error)]
pub enum MediumError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// The medium's layout or identity is not what bakfs writes.
    #[error("{path}: {msg}")]
    Unsafe { path: PathBuf, msg: String },
    /// A helper program failed.
    #[error("{0}")]
    Tool(String),
}

type Result<T> = std::result::Result<T, MediumError>;

/// A function that turns an I/O error on `path` into a [`MediumError::Io`].
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MediumError + '_ {
    move |err| MediumError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// A [`MediumError::Unsafe`] about `path`.
pub fn unsafe_(path: &Path, msg: impl Into<String>) -> MediumError {
    MediumError::Unsafe {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// What `medium.json` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub format: u32,
    /// 32 random bytes in hex; the catalog's `media.id`.
    pub medium_id: String,
    pub label: String,
    /// The repository whose copies this medium holds.
    pub repo_id: String,
    pub enrolled_ns: i64,
}

/// Whether `root` (a repository directory) is a medium's copy: it has a `medium.json`.
pub fn is_medium(root: &Path) -> bool {
    std::fs::symlink_metadata(root.join(IDENTITY)).is_ok_and(|m| m.is_file())
}

/// Checks that `path` is a real directory (not a symlink), creating it (mode 0700) if absent.
///
/// # Errors
/// [`MediumError::Unsafe`] if it is anything but a directory; I/O errors.
pub fn ensure_dir(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(()),
        Ok(m) => Err(unsafe_(
            path,
            format!(
                "expected a directory, found {}",
                if m.file_type().is_symlink() {
                    "a symlink"
                } else {
                    "another kind of file"
                }
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .map_err(io(path))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Opens a regular file without following a symlink in its last component.
///
/// # Errors
/// I/O errors (ELOOP for a symlink); [`MediumError::Unsafe`] if it is not a regular file.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io(path))?;
    let m = f.metadata().map_err(io(path))?;
    if !m.file_type().is_file() {
        return Err(unsafe_(path, "not a regular file"));
    }
    Ok((f, m.size()))
}

/// Reads and checks the identity of the medium directory `root` (`<fs>/bakfs`).
///
/// # Errors
/// [`MediumError::Unsafe`] for a symlink, an oversized or malformed file, an unknown format.
pub fn read_identity(root: &Path) -> Result<Identity> {
    // `<fs>/bakfs` itself must be a directory of the medium, not a link out of it.
    match std::fs::symlink_metadata(root) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => {
            return Err(unsafe_(
                root,
                "expected a directory, found a symlink or a file",
            ))
        }
        Err(e) => return Err(io(root)(e)),
    }
    let path = root.join(IDENTITY);
    let (f, size) = open_regular(&path)?;
    if size > IDENTITY_MAX {
        return Err(unsafe_(
            &path,
            format!("{size} bytes: not a bakfs identity"),
        ));
    }
    let mut raw = Vec::new();
    f.take(IDENTITY_MAX)
        .read_to_end(&mut raw)
        .map_err(io(&path))?;
    parse_identity(&raw, &path)
}

/// Checks the identity `raw` read from `path` (a file, or an object named so): at most 64 KiB
/// of strict JSON in a format this code knows.
///
/// # Errors
/// [`MediumError::Unsafe`] for anything else.
pub fn parse_identity(raw: &[u8], path: &Path) -> Result<Identity> {
    if raw.len() as u64 > IDENTITY_MAX {
        return Err(unsafe_(
            path,
            format!("{} bytes: not a bakfs identity", raw.len()),
        ));
    }
    let id: Identity = serde_json::from_slice(raw)
        .map_err(|e| unsafe_(path, format!("not a bakfs identity: {e}")))?;
    if id.format != IDENTITY_FORMAT {
        return Err(unsafe_(
            path,
            format!("identity format {} is not supported", id.format),
        ));
    }
    if id.medium_id.len() != 64 || !id.medium_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unsafe_(path, "malformed medium id"));
    }
    Ok(id)
}

/// Writes `bytes` to `dir/name` atomically and durably (the identity, the ledger).
///
/// # Errors
/// I/O errors; the temporary file is removed.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fsio::write_atomic(dir, name, Durability::Synced, Writers::One, |f| {
        f.write_all(bytes)
    })
    .map_err(io(&dir.join(name)))
}

/// Creates the medium directory `<fs>/bakfs` with its identity.
///
/// # Errors
/// [`MediumError::Unsafe`] if the filesystem already holds a bakfs directory, or a symlink there.
pub fn create(fs_root: &Path, id: &Identity) -> Result<PathBuf> {
    let root = fs_root.join(DIR);
    if std::fs::symlink_metadata(&root).is_ok() {
        let what = match read_identity(&root) {
            Ok(other) => format!(
                "already enrolled as {} (medium {}, repository {}); `bakfs media forget` and wipe it first",
                other.label, other.medium_id, other.repo_id
            ),
            Err(e) => format!("a {DIR} entry is already there ({e})"),
        };
        return Err(unsafe_(&root, what));
    }
    ensure_dir(&root)?;
    let json = serde_json::to_vec_pretty(id).map_err(|e| MediumError::Tool(e.to_string()))?;
    write_atomic(&root, IDENTITY, &json)?;
    Ok(root)
}

/// Free bytes on the filesystem holding `path` (for an unprivileged writer).
///
/// # Errors
/// statvfs(2) errors.
pub fn free_bytes(path: &Path) -> Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| io(path)(e.into()))?;
    Ok(s.blocks_available() as u64 * s.fragment_size() as u64)
}

/// Size of the filesystem holding `path`.
///
/// # Errors
/// statvfs(2) errors.
pub fn capacity(path: &Path) -> Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| io(path)(e.into()))?;
    Ok(s.blocks() as u64 * s.fragment_size() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ident() -> Identity {
        Identity {
            format: IDENTITY_FORMAT,
            medium_id: "ab".repeat(32),
            label: "L".into(),
            repo_id: "cd".repeat(32),
            enrolled_ns: 1,
        }
    }

    #[test]
    fn identity_round_trip_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let root = create(d.path(), &ident()).unwrap();
        assert!(is_medium(&root));
        assert_eq!(read_identity(&root).unwrap(), ident());
        assert!(create(d.path(), &ident()).is_err(), "enrolled twice");
        // A symlinked identity is refused.
        let d2 = tempfile::tempdir().unwrap();
        let r2 = d2.path().join(DIR);
        std::fs::create_dir(&r2).unwrap();
        std::os::unix::fs::symlink(root.join(IDENTITY), r2.join(IDENTITY)).unwrap();
        assert!(read_identity(&r2).is_err());
        // A huge one is not read.
        std::fs::remove_file(r2.join(IDENTITY)).unwrap();
        std::fs::write(r2.join(IDENTITY), vec![b' '; 100_000]).unwrap();
        assert!(read_identity(&r2)
            .unwrap_err()
            .to_string()
            .contains("100000 bytes"));
        // A symlinked directory is refused by ensure_dir.
        std::os::unix::fs::symlink("/etc", r2.join("data")).unwrap();
        assert!(ensure_dir(&r2.join("data")).is_err());
    }
}
