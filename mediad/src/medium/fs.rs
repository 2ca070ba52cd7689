//! The repository on a medium that is a directory of a mounted filesystem: `<filesystem>/bakfs`.
//!
//! Files on a medium are untrusted: they are opened with `O_NOFOLLOW`, only regular files with
//! names bakfs writes are looked at, and sizes are compared before anything is read. Writes go
//! to `.tmp-<name>` and are renamed into place, unsynced: the job syncs the filesystem once per
//! batch (`syncfs`) and reads every file back with its page cache dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bakfs_core::fsio::{self, Durability, Writers};
use bakfs_core::medium::{self, Identity};
use bakfs_core::repo::backend::{FileKind, Location};

use super::{Files, Flush, Inventory, Note};
use crate::error::CopyError;
use crate::primary::Source;

const BUF: usize = 1 << 20;
/// Largest config or key file copied.
const MAX_SMALL: u64 = 1 << 20;
/// The repository's directories, made (and checked to be real directories) by `prepare`.
const DIRS: [&str; 6] = ["keys", "index", "snapshots", "data", "locks", "condemned"];

fn hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn medium_err(e: medium::MediumError) -> CopyError {
    CopyError::Io(e.to_string())
}

/// The `bakfs/` directory on a mounted filesystem.
#[derive(Debug)]
pub struct FsTree {
    root: PathBuf,
}

impl FsTree {
    /// The tree of the filesystem mounted at `fs_root`.
    pub fn new(fs_root: &Path) -> Self {
        Self {
            root: fs_root.join(medium::DIR),
        }
    }

    /// Reads the identity (`medium.json`, `O_NOFOLLOW`, at most 64 KiB, strict JSON).
    ///
    /// # Errors
    /// [`CopyError::Refused`] when there is none or it is not valid.
    pub fn identity(&self) -> Result<Identity, CopyError> {
        medium::read_identity(&self.root).map_err(|e| {
            CopyError::Refused(format!(
            "no valid bakfs identity ({e}): not enrolled here, or a filesystem with a cloned UUID"
        ))
        })
    }

    fn path(&self, kind: FileKind, name: &str) -> PathBuf {
        self.root.join(kind.rel_path(name))
    }
}

impl Files for FsTree {
    fn prepare(&self) -> Result<(), CopyError> {
        for d in DIRS {
            medium::ensure_dir(&self.root.join(d))
                .map_err(|e| CopyError::Refused(e.to_string()))?;
        }
        Ok(())
    }

    /// Lists with `lstat`: only regular files with bakfs names count; `.tmp-` files are not
    /// counted at all.
    fn inventory(&self) -> Result<Inventory, CopyError> {
        let mut inv = Inventory::default();
        let scan = |dir: &Path, kind: FileKind, inv: &mut Inventory| {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(m) = e.metadata() else { continue }; // lstat: does not follow
                if name.starts_with(".tmp-") {
                    continue;
                }
                if !m.file_type().is_file() || !hex64(&name) {
                    inv.ignored += 1;
                    continue;
                }
                inv.files.insert((kind, name), m.size());
            }
        };
        for kind in [
            FileKind::Key,
            FileKind::Index,
            FileKind::Snapshot,
            FileKind::Condemned,
        ] {
            scan(&self.root.join(kind.dir()), kind, &mut inv);
        }
        if let Ok(rd) = std::fs::read_dir(self.root.join("data")) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    scan(&e.path(), FileKind::Pack, &mut inv);
                }
            }
        }
        if let Ok(m) = std::fs::symlink_metadata(self.root.join("config")) {
            if m.is_file() {
                inv.files
                    .insert((FileKind::Config, "config".into()), m.size());
            }
        }
        Ok(inv)
    }

    /// Content-addressed files are copied with `copy_file_range` where the primary has local
    /// files; the read-back checks the bytes against the name.
    fn write(
        &self,
        kind: FileKind,
        name: &str,
        from: &mut Source,
        cancel: &AtomicBool,
    ) -> Result<(blake3::Hash, u64), CopyError> {
        let dst = self.path(kind, name);
        let dir = dst.parent().unwrap_or(&self.root).to_path_buf();
        if kind == FileKind::Pack {
            medium::ensure_dir(&self.root.join("data")).map_err(medium_err)?;
        }
        medium::ensure_dir(&dir).map_err(medium_err)?;
        // Through `.tmp-<name>` (one left by a medium pulled mid-copy is replaced), not synced.
        fsio::write_atomic(&dir, name, Durability::Deferred, Writers::One, |out| {
            if cancel.load(Ordering::Relaxed) {
                return Err(CopyError::Cancelled);
            }
            if kind.content_addressed() {
                let n = from.copy_to(out).map_err(|e| CopyError::io(&dst, &e))?;
                let want = blake3::Hash::from_hex(name)
                    .map_err(|_| CopyError::Io(format!("{name}: not a blake3 name")))?;
                return Ok((want, n));
            }
            // Small files named otherwise (config, keys): hash what is copied.
            let raw = from.read_small(MAX_SMALL)?;
            out.write_all(&raw).map_err(|e| CopyError::io(&dst, &e))?;
            Ok((blake3::hash(&raw), raw.len() as u64))
        })
    }

    /// One `syncfs(2)`: a journal commit and a device cache flush for everything written.
    fn sync(&self) -> Result<(), CopyError> {
        let f = File::open(&self.root).map_err(|e| CopyError::io(&self.root, &e))?;
        nix::unistd::syncfs(f.as_raw_fd()).map_err(|e| CopyError::io(&self.root, &e.into()))
    }

    /// Drops the file's page cache (`POSIX_FADV_DONTNEED`) so that the bytes come from the
    /// device.
    fn read_back(
        &self,
        kind: FileKind,
        name: &str,
        size: u64,
        flush: Flush,
        cancel: &AtomicBool,
    ) -> Result<blake3::Hash, CopyError> {
        let path = self.path(kind, name);
        let (f, actual) = medium::open_regular(&path).map_err(medium_err)?;
        if actual != size {
            return Err(CopyError::Io(format!(
                "{}: {actual} bytes, expected {size}",
                path.display()
            )));
        }
        if flush == Flush::FileFirst {
            f.sync_data().map_err(|e| CopyError::io(&path, &e))?;
        }
        drop_cache(&f);
        let mut h = blake3::Hasher::new();
        let mut buf = vec![0u8; BUF];
        let mut f = f.take(size);
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(CopyError::Cancelled);
            }
            let k = f.read(&mut buf).map_err(|e| CopyError::io(&path, &e))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
        }
        Ok(h.finalize())
    }

    /// Never follows a link: unlink removes the link itself.
    fn remove(&self, kind: FileKind, name: &str) -> Result<(), CopyError> {
        let p = self.path(kind, name);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CopyError::io(&p, &e)),
        }
    }

    fn free_bytes(&self) -> Result<u64, CopyError> {
        medium::free_bytes(&self.root).map_err(medium_err)
    }

    fn repository(&self) -> Location {
        Location::Dir(self.root.clone())
    }

    fn write_note(&self, name: Note, text: &[u8]) -> Result<(), CopyError> {
        medium::write_atomic(&self.root, name.file_name(), text).map_err(medium_err)
    }
}

/// Asks the kernel to forget the file's cached pages, so the next read comes from the device.
fn drop_cache(f: &File) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let _ = posix_fadvise(f.as_raw_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::primary::Primary;
    use bakfs_core::repo::backend::{Backend, LocalBackend};
    use std::sync::Arc;

    #[test]
    fn copy_verify_and_refuse_what_is_not_ours() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(src.path()));
        backend.create().unwrap();
        let primary = Primary::new(backend.clone());
        let tree = FsTree::new(dst.path());
        std::fs::create_dir(dst.path().join(medium::DIR)).unwrap();
        tree.prepare().unwrap();
        let bytes = b"pack bytes".repeat(1000);
        let name = blake3::hash(&bytes).to_hex().to_string();
        backend.write(FileKind::Pack, &name, &bytes).unwrap();
        let no = AtomicBool::new(false);
        let open = |name: &str| primary.open(FileKind::Pack, name, bytes.len() as u64);
        let (h, n) = tree
            .write(FileKind::Pack, &name, &mut open(&name).unwrap(), &no)
            .unwrap();
        assert_eq!(
            (h.to_hex().to_string(), n),
            (name.clone(), bytes.len() as u64)
        );
        tree.sync().unwrap();
        assert_eq!(
            tree.read_back(FileKind::Pack, &name, n, Flush::Synced, &no)
                .unwrap(),
            h
        );
        assert!(tree
            .read_back(FileKind::Pack, &name, n + 1, Flush::Synced, &no)
            .is_err());
        let inv = tree.inventory().unwrap();
        assert_eq!(inv.files.get(&(FileKind::Pack, name.clone())), Some(&n));
        assert_eq!(inv.ignored, 0);
        // A copy of a source that does not match its name: the read-back shows it.
        let wrong = "0".repeat(64);
        let (want, n) = tree
            .write(FileKind::Pack, &wrong, &mut open(&name).unwrap(), &no)
            .unwrap();
        assert_ne!(
            tree.read_back(FileKind::Pack, &wrong, n, Flush::FileFirst, &no)
                .unwrap(),
            want
        );
        // A symlink planted where a pack belongs is neither read nor listed.
        let link = "1".repeat(64);
        std::fs::create_dir_all(tree.root.join("data/11")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tree.path(FileKind::Pack, &link)).unwrap();
        assert!(tree
            .read_back(FileKind::Pack, &link, 0, Flush::Synced, &no)
            .is_err());
        assert_eq!(tree.inventory().unwrap().ignored, 1);
        tree.remove(FileKind::Pack, &link).unwrap();
        assert!(std::fs::symlink_metadata(tree.path(FileKind::Pack, &link)).is_err());
        // Cancelled copies leave nothing behind.
        let yes = AtomicBool::new(true);
        assert!(matches!(
            tree.write(FileKind::Index, &name, &mut open(&name).unwrap(), &yes),
            Err(CopyError::Cancelled)
        ));
        assert!(std::fs::read_dir(tree.root.join("index"))
            .unwrap()
            .next()
            .is_none());
        // A symlink where a directory of the repository belongs is refused.
        std::fs::remove_dir(tree.root.join("locks")).unwrap();
        std::os::unix::fs::symlink("/tmp", tree.root.join("locks")).unwrap();
        assert!(matches!(tree.prepare(), Err(CopyError::Refused(_))));
    }
}
