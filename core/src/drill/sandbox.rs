//! The sandbox of one drill: a fresh directory `bakfs-drill-<random>` (mode 0700) under a given
//! directory, holding `restore/` (the restore's target), for a tape `staging/` (the tape's files
//! copied off it to be read) and, for a medium the drill mounts itself, `medium/` (the mount
//! point). Removing it never recurses into `medium/`: a medium
//! still mounted there stops the removal instead of losing its files.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A drill's directory; see the module's documentation.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    /// Makes a new sandbox under `parent`, which must be an existing directory.
    ///
    /// # Errors
    /// `parent` missing or not a directory; I/O errors.
    pub fn create(parent: &Path) -> Result<Sandbox> {
        let io_err = |e| Error::io(parent.display(), e);
        let m = std::fs::metadata(parent).map_err(io_err)?;
        if !m.is_dir() {
            return Err(Error::Invalid(format!(
                "sandbox {}: not a directory",
                parent.display()
            )));
        }
        let mk = |p: &Path| {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(p)
                .map_err(|e| Error::io(p.display(), e))
        };
        let dir = parent.join(format!("bakfs-drill-{:016x}", rand::random::<u64>()));
        mk(&dir)?;
        let s = Sandbox { dir };
        mk(&s.target())?;
        Ok(s)
    }

    /// The sandbox's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the drill restores to.
    pub fn target(&self) -> PathBuf {
        self.dir.join("restore")
    }

    /// Where a tape's files are staged to be read (made by the tape reader).
    pub fn staging(&self) -> PathBuf {
        self.dir.join("staging")
    }

    /// Where a medium is mounted for the drill (made by the mount).
    pub fn mount_point(&self) -> PathBuf {
        self.dir.join("medium")
    }

    /// Removes the sandbox: the restored files, the staged tape files, the (empty, unmounted)
    /// mount point, the directory itself.
    ///
    /// # Errors
    /// I/O errors (a medium still mounted: EBUSY); what could not be removed stays.
    pub fn remove(self) -> Result<()> {
        for d in [self.target(), self.staging()] {
            make_removable(&d).map_err(|e| Error::io(d.display(), e))?;
            match std::fs::remove_dir_all(&d) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(Error::io(d.display(), e))
                }
                _ => {}
            }
        }
        let mp = self.mount_point();
        match std::fs::remove_dir(&mp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io(mp.display(), e))
            }
            _ => {}
        }
        std::fs::remove_dir(&self.dir).map_err(|e| Error::io(self.dir.display(), e))
    }
}

/// Gives the owner full rights on every directory under `dir` (restored directories keep the
/// snapshot's modes, 0555 for one, which a non-root user could not empty). Never follows a
/// symlink.
fn make_removable(dir: &Path) -> io::Result<()> {
    let m = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !m.is_dir() {
        return Ok(());
    }
    if m.permissions().mode() & 0o700 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            make_removable(&e.path())?;
        }
    }
    Ok(())
}
