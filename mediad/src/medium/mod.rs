//! Media as kinds: what a rotation needs from a medium, whatever it is.
//!
//! A job ([`crate::job::run`]) is given a [`Medium`]. It makes it ready (which reads the identity
//! it carries and writes nothing), works on its [`Files`] (what the medium's repository holds,
//! writing files from the primary, flushing, reading back, removing, free space, the ledger) and
//! releases it. The rotation's steps (`crate::rotate`) are the same for every kind.
//!
//! Kinds:
//! - [`block::BlockDevice`]: a USB stick or disk with a filesystem, mounted privately by UUID
//!   under the media root. Its files are an [`fs::FsTree`], the `bakfs/` directory on it.
//! - [`share::ShareMedium`]: a NAS share, a network filesystem mounted on a directory; also an
//!   [`fs::FsTree`].
//! - [`bucket::BucketMedium`]: a bucket (or a prefix in one) in S3-compatible object storage;
//!   its files are objects ([`bucket::BucketFiles`]).
//! - `dir::DirMedium` (unit tests only): a directory, no mount, with an optional quota.
//!
//! docs/mediad.md says how a NAS share and a tape would plug in.

pub mod block;
pub mod bucket;
#[cfg(test)]
pub mod dir;
pub mod fs;
pub mod share;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use bakfs_core::medium::Identity;
use bakfs_core::repo::backend::{FileKind, Location};

use crate::error::CopyError;
use crate::primary::Source;

/// A file of a repository: its kind and name.
pub type FileRef = (FileKind, String);

/// What a medium holds.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Its bakfs files and their sizes.
    pub files: HashMap<FileRef, u64>,
    /// Entries that are not bakfs files (symlinks, devices, stray names): ignored.
    pub ignored: usize,
}

/// What [`Files::read_back`] does before reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Nothing: the medium was synced ([`Files::sync`]) since the file was written.
    Synced,
    /// Flushes this file to the device first (after a failed sync: the file that fails is
    /// named).
    FileFirst,
}

/// A medium during a job: made ready, then its files, then released.
pub trait Medium {
    /// Makes the medium ready to be read (a block device: mounted) and reads the identity it
    /// carries. Nothing is written.
    ///
    /// # Errors
    /// [`CopyError::Refused`] without a valid identity; [`CopyError::Cancelled`] when the
    /// medium went away first; others.
    fn ready(&mut self) -> Result<Identity, CopyError>;

    /// Its repository's files, once ready.
    fn files(&self) -> &dyn Files;

    /// Releases it (a block device: unmounted): afterwards it is safe to remove. Called after
    /// every [`Self::ready`], even one that failed; releasing what is not ready does nothing.
    ///
    /// # Errors
    /// What could not be undone (the medium is detached as far as it can be).
    fn release(&mut self) -> Result<(), CopyError>;

    /// Why the daemon gave this job up while it was blocked on the medium (a hung share), if
    /// it did: the job then records that, not what it found when it came back.
    fn abandoned(&self) -> Option<String> {
        None
    }
}

/// The repository on a medium, file by file. Files are untrusted: what a medium says it holds is
/// checked against names and sizes before it is believed.
///
/// Durability: what [`Self::write`] and [`Self::remove`] do reaches the device by the next
/// [`Self::sync`]; [`Self::write_note`] is durable when it returns. A written file is under its
/// final name whole or not at all; it is trusted only once [`Self::read_back`] agreed.
pub trait Files: Sync {
    /// Readies the repository for writing, once the medium's identity was accepted.
    ///
    /// # Errors
    /// [`CopyError::Refused`] for a layout bakfs does not write (a symlink where one of its
    /// directories belongs); I/O errors.
    fn prepare(&self) -> Result<(), CopyError>;

    /// The bakfs files the medium holds now.
    ///
    /// # Errors
    /// A medium that cannot be listed (a share that hangs, a bucket that does not answer): the
    /// job stops rather than take the medium for empty.
    fn inventory(&self) -> Result<Inventory, CopyError>;

    /// Writes `kind`/`name` from the primary and returns the blake3 its copy must have (its
    /// name for content-addressed kinds, the hash of the bytes for `config` and keys) and its
    /// size.
    ///
    /// # Errors
    /// [`CopyError::Full`], [`CopyError::Cancelled`] (nothing is left under the name), others.
    fn write(
        &self,
        kind: FileKind,
        name: &str,
        from: &mut Source,
        cancel: &AtomicBool,
    ) -> Result<(blake3::Hash, u64), CopyError>;

    /// Flushes everything written or removed so far to the device.
    ///
    /// # Errors
    /// I/O errors (EIO when the device failed).
    fn sync(&self) -> Result<(), CopyError>;

    /// Reads a file back from the device, not from a cache, and returns its blake3; anything
    /// but a regular file of `size` bytes is an error.
    ///
    /// # Errors
    /// [`CopyError::Cancelled`]; others (a size mismatch is [`CopyError::Io`]).
    fn read_back(
        &self,
        kind: FileKind,
        name: &str,
        size: u64,
        flush: Flush,
        cancel: &AtomicBool,
    ) -> Result<blake3::Hash, CopyError>;

    /// Removes a file; one that is not there is no error.
    ///
    /// # Errors
    /// I/O errors.
    fn remove(&self, kind: FileKind, name: &str) -> Result<(), CopyError>;

    /// Bytes that can still be written.
    ///
    /// # Errors
    /// I/O errors.
    fn free_bytes(&self) -> Result<u64, CopyError>;

    /// Where the medium's repository is (`<fs>/bakfs`, or the bucket's location), for reading
    /// it as one: mediad's own drill, when the operator gave it a password.
    fn repository(&self) -> Location;

    /// Replaces one of the notes bakfs keeps on the medium for people (`ledger.json`,
    /// `RUNBOOK.md`; informational, never read back), atomically.
    ///
    /// # Errors
    /// I/O errors.
    fn write_note(&self, name: Note, text: &[u8]) -> Result<(), CopyError>;
}

/// The notes bakfs keeps on a medium for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// The mirror of the catalog's ledger ([`bakfs_core::medium::LEDGER`]).
    Ledger,
    /// The recovery runbook ([`bakfs_core::medium::RUNBOOK`]).
    Runbook,
}

impl Note {
    /// Its file name in the medium's directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Note::Ledger => bakfs_core::medium::LEDGER,
            Note::Runbook => bakfs_core::medium::RUNBOOK,
        }
    }
}
