//! The primary repository as mediad reads it: through the backend its location gives
//! (`Location::backend`), as `bakfs` does, so that a primary in object storage is a new backend
//! and not a new mediad. mediad lists, sizes, copies and hashes files; it never decrypts.

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;

use bakfs_core::repo::backend::{Backend, FileKind};
use bakfs_core::repo::lock::LockGuard;

use crate::error::CopyError;

/// Bytes read at a time from a backend without local files.
const RANGE: usize = 4 << 20;

/// The primary repository.
pub struct Primary {
    backend: Arc<dyn Backend>,
}

impl Primary {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// A shared lock on the repository, so that prune cannot remove packs being copied.
    ///
    /// # Errors
    /// [`CopyError::Io`] if it cannot be taken.
    pub fn lock_shared(&self, purpose: &str) -> Result<LockGuard, CopyError> {
        bakfs_core::repo::lock::shared(&self.backend, purpose)
            .map_err(|e| CopyError::Io(format!("locking the repository: {e}")))
    }

    /// The names of its files of `kind`, sorted.
    ///
    /// # Errors
    /// [`CopyError::Io`].
    pub fn list(&self, kind: FileKind) -> Result<Vec<String>, CopyError> {
        let mut v = self
            .backend
            .list(kind)
            .map_err(|e| CopyError::Io(format!("listing the repository: {e}")))?;
        v.sort();
        Ok(v)
    }

    /// The size of one file.
    ///
    /// # Errors
    /// [`CopyError::Io`], naming the file.
    pub fn size(&self, kind: FileKind, name: &str) -> Result<u64, CopyError> {
        self.backend
            .size(kind, name)
            .map_err(|e| CopyError::Io(format!("{}: {e}", self.describe(kind, name))))
    }

    /// Opens one file for copying. `size` is its size (from the catalog or [`Self::size`]): a
    /// backend without local files is read in ranges up to it.
    ///
    /// # Errors
    /// [`CopyError::Io`], naming the file.
    pub fn open(&self, kind: FileKind, name: &str, size: u64) -> Result<Source, CopyError> {
        let what = self.describe(kind, name);
        let via = match self.backend.local_file(kind, name) {
            Ok(Some(f)) => Via::Local(f),
            Ok(None) => Via::Ranges {
                backend: self.backend.clone(),
                kind,
                name: name.to_string(),
                offset: 0,
                size,
            },
            Err(e) => return Err(CopyError::Io(format!("{what}: {e}"))),
        };
        Ok(Source { what, via })
    }

    /// The blake3 of one file, read whole.
    ///
    /// # Errors
    /// [`CopyError::Io`], naming the file.
    pub fn hash(&self, kind: FileKind, name: &str) -> Result<blake3::Hash, CopyError> {
        let size = self.size(kind, name)?;
        let mut src = self.open(kind, name, size)?;
        let mut h = blake3::Hasher::new();
        h.update_reader(&mut src)
            .map_err(|e| CopyError::Io(format!("{}: {e}", src.what)))?;
        Ok(h.finalize())
    }

    /// Whether a content-addressed file still hashes to its name: after a read-back mismatch,
    /// tells a damaged primary from a bad copy.
    ///
    /// # Errors
    /// [`CopyError::Io`] reading it.
    pub fn matches_name(&self, kind: FileKind, name: &str) -> Result<bool, CopyError> {
        Ok(self.hash(kind, name)?.to_hex().as_str() == name)
    }

    /// Where one file is, for messages.
    pub fn describe(&self, kind: FileKind, name: &str) -> String {
        format!(
            "{}/{}",
            self.backend.location(),
            kind.rel_path(name).display()
        )
    }
}

/// One file of the primary, open for copying.
pub struct Source {
    /// Where it is, for messages.
    what: String,
    via: Via,
}

enum Via {
    /// A local file: copied in the kernel.
    Local(File),
    /// Any other backend: read in ranges of [`RANGE`] bytes.
    Ranges {
        backend: Arc<dyn Backend>,
        kind: FileKind,
        name: String,
        offset: u64,
        size: u64,
    },
}

impl Source {
    /// Copies the rest of the file into `out` and returns the bytes copied. Between two local
    /// files this is `copy_file_range(2)`: the bytes never enter this process.
    ///
    /// # Errors
    /// I/O errors of either side.
    pub fn copy_to(&mut self, out: &mut File) -> io::Result<u64> {
        if let Via::Local(f) = &mut self.via {
            return io::copy(f, out);
        }
        io::copy(self, out)
    }

    /// The whole file, if it has at most `max` bytes (`config`, key wrappings).
    ///
    /// # Errors
    /// [`CopyError::SourceDamaged`] if it is larger; [`CopyError::Io`] reading it.
    pub fn read_small(&mut self, max: u64) -> Result<Vec<u8>, CopyError> {
        let mut raw = Vec::new();
        self.take(max + 1)
            .read_to_end(&mut raw)
            .map_err(|e| CopyError::Io(format!("{}: {e}", self.what)))?;
        if raw.len() as u64 > max {
            return Err(CopyError::SourceDamaged(format!(
                "{} is larger than {max} bytes",
                self.what
            )));
        }
        Ok(raw)
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.via {
            Via::Local(f) => f.read(buf),
            Via::Ranges {
                backend,
                kind,
                name,
                offset,
                size,
            } => {
                let want = (*size - *offset).min(buf.len().min(RANGE) as u64) as usize;
                if want == 0 {
                    return Ok(0);
                }
                let bytes = backend.read_range(*kind, name, *offset, want)?;
                buf[..want].copy_from_slice(&bytes);
                *offset += want as u64;
                Ok(want)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bakfs_core::repo::backend::{LocalBackend, MemBackend};

    /// The same bytes come out of a local backend (copied in the kernel) and of one without
    /// local files (read in ranges), and both tell a damaged file from a sound one.
    #[test]
    fn copies_and_hashes_from_local_and_other_backends() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..(RANGE * 2 + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let name = blake3::hash(&bytes).to_hex().to_string();
        let local: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
        let mem: Arc<dyn Backend> = Arc::new(MemBackend::default());
        for b in [local, mem] {
            b.create().unwrap();
            b.write(FileKind::Pack, &name, &bytes).unwrap();
            b.write(FileKind::Config, "config", b"small").unwrap();
            let p = Primary::new(b.clone());
            let size = p.size(FileKind::Pack, &name).unwrap();
            let mut src = p.open(FileKind::Pack, &name, size).unwrap();
            let out_path = dir.path().join("out");
            let mut out = File::create(&out_path).unwrap();
            assert_eq!(src.copy_to(&mut out).unwrap(), bytes.len() as u64);
            assert_eq!(std::fs::read(&out_path).unwrap(), bytes, "{}", b.location());
            assert!(p.matches_name(FileKind::Pack, &name).unwrap());
            assert!(!p
                .matches_name(FileKind::Pack, &"0".repeat(64))
                .unwrap_or(false));
            let mut cfg = p.open(FileKind::Config, "config", 5).unwrap();
            assert!(matches!(
                cfg.read_small(4),
                Err(CopyError::SourceDamaged(_))
            ));
            let mut cfg = p.open(FileKind::Config, "config", 5).unwrap();
            assert_eq!(cfg.read_small(5).unwrap(), b"small");
            assert_eq!(
                p.list(FileKind::Pack).unwrap(),
                vec![name.clone()],
                "{}",
                b.location()
            );
        }
    }
}
