//! A medium that is a plain directory (unit tests only): nothing to mount, so a whole rotation
//! runs without root. An optional quota makes it fill up like a small filesystem: a write that
//! goes past it fails as ENOSPC does, leaving nothing under the file's name.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use bakfs_core::medium::Identity;
use bakfs_core::repo::backend::{FileKind, Location};

use super::fs::FsTree;
use super::{Files, Flush, Inventory, Medium, Note};
use crate::error::CopyError;
use crate::primary::Source;

/// `<dir>/bakfs` as a medium.
#[derive(Debug)]
pub struct DirMedium {
    dir: PathBuf,
    tree: FsTree,
    /// Bytes its files may take in all.
    quota: Option<u64>,
}

impl DirMedium {
    pub fn new(dir: &Path, quota: Option<u64>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            tree: FsTree::new(dir),
            quota,
        }
    }

    /// Bytes of the files under the directory.
    pub fn used(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                    _ => 0,
                })
                .sum()
        }
        walk(&self.dir)
    }
}

impl Medium for DirMedium {
    fn ready(&mut self) -> Result<Identity, CopyError> {
        self.tree.identity()
    }

    fn files(&self) -> &dyn Files {
        self
    }

    fn release(&mut self) -> Result<(), CopyError> {
        Ok(())
    }
}

impl Files for DirMedium {
    fn prepare(&self) -> Result<(), CopyError> {
        self.tree.prepare()
    }

    fn inventory(&self) -> Result<Inventory, CopyError> {
        self.tree.inventory()
    }

    fn write(
        &self,
        kind: FileKind,
        name: &str,
        from: &mut Source,
        cancel: &AtomicBool,
    ) -> Result<(blake3::Hash, u64), CopyError> {
        let r = self.tree.write(kind, name, from, cancel)?;
        match self.quota {
            Some(q) if self.used() > q => {
                self.tree.remove(kind, name)?;
                Err(CopyError::Full(format!(
                    "writing {} {name}: No space left on device (a quota of {q} bytes)",
                    kind.as_str()
                )))
            }
            _ => Ok(r),
        }
    }

    fn sync(&self) -> Result<(), CopyError> {
        self.tree.sync()
    }

    fn read_back(
        &self,
        kind: FileKind,
        name: &str,
        size: u64,
        flush: Flush,
        cancel: &AtomicBool,
    ) -> Result<blake3::Hash, CopyError> {
        self.tree.read_back(kind, name, size, flush, cancel)
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), CopyError> {
        self.tree.remove(kind, name)
    }

    fn repository(&self) -> Location {
        self.tree.repository()
    }

    fn free_bytes(&self) -> Result<u64, CopyError> {
        match self.quota {
            Some(q) => Ok(q.saturating_sub(self.used())),
            None => self.tree.free_bytes(),
        }
    }

    fn write_note(&self, name: Note, text: &[u8]) -> Result<(), CopyError> {
        self.tree.write_note(name, text)
    }
}
