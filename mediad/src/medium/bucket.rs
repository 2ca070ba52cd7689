//! A bucket as a medium: a repository in S3-compatible object storage (`s3:` location, the
//! backend of design.md §4.4) that holds copies of the primary's snapshots, as a stick does.
//!
//! Its identity, ledger and runbook are objects beside the repository (`<prefix>/medium.json`,
//! `ledger.json`, `RUNBOOK.md`). The files are copied as they are, encrypted: mediad needs the
//! bucket's access keys (the usual `AWS_*` variables or a credentials file, in its environment),
//! never the repository's key. Every object written is read back (a GET) and checked against its
//! name before the catalog records it. An object exists only once its PUT succeeded, so there
//! is nothing to sync; a job cut off leaves only whole objects (and at worst an incomplete
//! multipart upload, which the server does not show as an object).
//!
//! A bucket is always there: mediad copies onto it whenever the primary has new snapshots
//! (`daemon/shares.rs` schedules it like a share that is always mounted). The client's own
//! timeouts and retries (design.md §4.4) bound a request to a server that stops answering.

use std::sync::atomic::{AtomicBool, Ordering};

use bakfs_core::medium::{self, Identity};
use bakfs_core::repo::backend::{Backend, FileKind, Location, S3Backend, S3Location};

use super::{Files, Flush, Inventory, Medium, Note};
use crate::error::CopyError;
use crate::primary::Source;

/// Largest file copied (packs are at most 64 MiB; index files are smaller).
const MAX_OBJECT: u64 = 1 << 30;

/// The kinds listed by [`BucketFiles::inventory`], besides `config`.
const LISTED: [FileKind; 5] = [
    FileKind::Key,
    FileKind::Index,
    FileKind::Snapshot,
    FileKind::Condemned,
    FileKind::Pack,
];

/// An enrolled bucket during a job.
pub struct BucketMedium {
    files: BucketFiles,
}

impl BucketMedium {
    /// The bucket at `loc`; nothing is asked of the server before [`Medium::ready`].
    pub fn new(loc: &S3Location) -> Self {
        Self {
            files: BucketFiles {
                loc: loc.clone(),
                backend: None,
            },
        }
    }
}

impl Medium for BucketMedium {
    /// Connects with the access keys of mediad's environment and reads `medium.json`.
    fn ready(&mut self) -> Result<Identity, CopyError> {
        let loc = &self.files.loc;
        // Without keys the error says where they are looked for; a client error names `loc`.
        let backend = S3Backend::connect(loc).map_err(|e| CopyError::Io(e.to_string()))?;
        let raw = match backend.read_note(medium::IDENTITY) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CopyError::Refused(format!(
                    "{loc}: no bakfs identity ({}): not enrolled there",
                    medium::IDENTITY
                )))
            }
            Err(e) => return Err(CopyError::Io(format!("{loc}: {e}"))),
        };
        let ident = medium::parse_identity(&raw, std::path::Path::new(medium::IDENTITY))
            .map_err(|e| CopyError::Refused(format!("{loc}: {e}")))?;
        self.files.backend = Some(backend);
        Ok(ident)
    }

    fn files(&self) -> &dyn Files {
        &self.files
    }

    /// Drops the client (which logs the requests it made at `-v`).
    fn release(&mut self) -> Result<(), CopyError> {
        self.files.backend = None;
        Ok(())
    }
}

/// The repository in the bucket, object by object.
pub struct BucketFiles {
    loc: S3Location,
    /// Once ready.
    backend: Option<S3Backend>,
}

impl BucketFiles {
    fn backend(&self) -> Result<&S3Backend, CopyError> {
        self.backend
            .as_ref()
            .ok_or_else(|| CopyError::Io(format!("{}: not connected", self.loc)))
    }

    /// A failed request as a copy error: a quota the bucket ran into is a full medium.
    fn err(&self, e: &std::io::Error) -> CopyError {
        let m = format!("{}: {e}", self.loc);
        if m.contains("QuotaExceeded") || m.contains("EntityTooLarge") {
            CopyError::Full(m)
        } else {
            CopyError::Io(m)
        }
    }
}

impl Files for BucketFiles {
    /// Nothing to make: prefixes are not directories.
    fn prepare(&self) -> Result<(), CopyError> {
        Ok(())
    }

    /// One listing per kind (with sizes): only objects with bakfs names where bakfs puts them.
    fn inventory(&self) -> Result<Inventory, CopyError> {
        let b = self.backend()?;
        let mut inv = Inventory::default();
        for kind in LISTED {
            for (name, size) in b.list_sized(kind).map_err(|e| self.err(&e))? {
                inv.files.insert((kind, name), size);
            }
        }
        let root = b.list_sized(FileKind::Config).map_err(|e| self.err(&e))?;
        if let Some((_, size)) = root.into_iter().find(|(n, _)| n == "config") {
            inv.files.insert((FileKind::Config, "config".into()), size);
        }
        Ok(inv)
    }

    /// Read whole from the primary, then one PUT (in parts above 32 MiB).
    fn write(
        &self,
        kind: FileKind,
        name: &str,
        from: &mut Source,
        cancel: &AtomicBool,
    ) -> Result<(blake3::Hash, u64), CopyError> {
        let b = self.backend()?;
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let raw = from.read_small(MAX_OBJECT)?;
        let want = if kind.content_addressed() {
            blake3::Hash::from_hex(name)
                .map_err(|_| CopyError::Io(format!("{name}: not a blake3 name")))?
        } else {
            blake3::hash(&raw)
        };
        let n = raw.len() as u64;
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        b.write_buf(kind, name, raw).map_err(|e| self.err(&e))?;
        Ok((want, n))
    }

    /// Nothing: an object is durable once its PUT returned.
    fn sync(&self) -> Result<(), CopyError> {
        Ok(())
    }

    /// A GET of the whole object from the server, hashed.
    fn read_back(
        &self,
        kind: FileKind,
        name: &str,
        size: u64,
        _flush: Flush,
        cancel: &AtomicBool,
    ) -> Result<blake3::Hash, CopyError> {
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        // The size is checked first and only `size` bytes are asked for: an object the server
        // says is larger (a bucket is untrusted) is never read whole into memory.
        let b = self.backend()?;
        let actual = b.size(kind, name).map_err(|e| self.err(&e))?;
        if actual != size {
            return Err(CopyError::Io(format!(
                "{}: {kind} {name}: {actual} bytes, expected {size}",
                self.loc
            )));
        }
        let len = usize::try_from(size)
            .map_err(|_| CopyError::Io(format!("{kind} {name}: {size} bytes")))?;
        let raw = b.read_range(kind, name, 0, len).map_err(|e| self.err(&e))?;
        Ok(blake3::hash(&raw))
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), CopyError> {
        self.backend()?.remove(kind, name).map_err(|e| self.err(&e))
    }

    /// No limit is known (a quota shows as a failed write: [`CopyError::Full`]).
    fn free_bytes(&self) -> Result<u64, CopyError> {
        Ok(u64::MAX)
    }

    fn repository(&self) -> Location {
        Location::S3(self.loc.clone())
    }

    fn write_note(&self, name: Note, text: &[u8]) -> Result<(), CopyError> {
        self.backend()?
            .write_note(name.file_name(), text)
            .map_err(|e| self.err(&e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_the_bucket_ran_into_is_a_full_medium() {
        let files = BucketFiles {
            loc: "s3:http://127.0.0.1:9000/offsite".parse().unwrap(),
            backend: None,
        };
        let quota = std::io::Error::other("writing data/ab/x: 403 QuotaExceeded: bucket quota");
        assert!(matches!(files.err(&quota), CopyError::Full(_)));
        let refused = std::io::Error::other("writing data/ab/x: 403 AccessDenied");
        assert!(matches!(files.err(&refused), CopyError::Io(_)));
        // Not connected: an error, never an empty medium.
        assert!(files.inventory().is_err());
    }
}
