//! Local files written and opened safely: the one atomic-write helper (a repository's files, a
//! medium's identity and ledger, mediad's copies all go through it), directory syncs and opens
//! that never follow a symlink.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How durable a write is when [`write_atomic`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The file and the rename are in stable storage (file fsync, then directory fsync).
    Synced,
    /// Nothing is synced: the caller syncs the whole filesystem later (mediad's `syncfs` per
    /// batch) and reads the file back before trusting it.
    Deferred,
}

/// Who may write the same name at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// Several processes (a repository): each write uses a temporary file of its own,
    /// `.tmp-<pid>-<random>`.
    Many,
    /// One writer (a medium during its job): the temporary file is `.tmp-<name>`, so one left by
    /// an interrupted write is replaced rather than left behind.
    One,
}

/// Writes `dir/name` atomically: a temporary file in `dir` (created with `O_EXCL|O_NOFOLLOW`,
/// mode 0600) is filled by `fill`, then renamed onto `name`; with [`Durability::Synced`] the file
/// is fsynced before and the directory after the rename. A crash leaves no file or the whole
/// file under `name`, never a partial one. On error the temporary file is removed and `name` is
/// untouched.
///
/// # Errors
/// What `fill` returns, or the I/O error of creating, syncing or renaming.
pub fn write_atomic<T, E: From<io::Error>>(
    dir: &Path,
    name: &str,
    durability: Durability,
    writers: Writers,
    fill: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    let tmp = match writers {
        Writers::Many => dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        )),
        Writers::One => {
            let tmp = dir.join(format!(".tmp-{name}"));
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            tmp
        }
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let r = (|| {
        let v = fill(&mut f)?;
        if durability == Durability::Synced {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(name))?;
        if durability == Durability::Synced {
            sync_dir(dir)?;
        }
        Ok(v)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// fsyncs a directory so that renames and unlinks in it are durable.
///
/// # Errors
/// I/O errors.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens a file for reading without following a symlink in its last component (`ELOOP`).
///
/// # Errors
/// I/O errors.
pub fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn writes_whole_files_and_leaves_nothing_on_error() {
        let d = tempfile::tempdir().unwrap();
        for w in [Writers::Many, Writers::One] {
            write_atomic(d.path(), "a", Durability::Synced, w, |f| {
                f.write_all(b"one")
            })
            .unwrap();
            assert_eq!(std::fs::read(d.path().join("a")).unwrap(), b"one");
            let r: io::Result<()> = write_atomic(d.path(), "a", Durability::Deferred, w, |f| {
                f.write_all(b"partial")?;
                Err(io::Error::other("disk full"))
            });
            assert!(r.is_err());
            assert_eq!(std::fs::read(d.path().join("a")).unwrap(), b"one");
            let names: Vec<_> = std::fs::read_dir(d.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["a"], "no temporary file is left");
        }
    }

    #[test]
    fn one_writer_replaces_a_temporary_file_left_behind() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".tmp-b"), b"left by a pulled medium").unwrap();
        write_atomic(d.path(), "b", Durability::Deferred, Writers::One, |f| {
            f.write_all(b"new")
        })
        .unwrap();
        assert_eq!(std::fs::read(d.path().join("b")).unwrap(), b"new");
        assert!(!d.path().join(".tmp-b").exists());
    }

    #[test]
    fn never_writes_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), d.path().join(".tmp-c")).unwrap();
        // The link in the temporary file's place is removed, not followed.
        write_atomic(d.path(), "c", Durability::Synced, Writers::One, |f| {
            f.write_all(b"c")
        })
        .unwrap();
        assert!(!outside.path().join("x").exists());
        assert!(open_nofollow(&d.path().join("c")).is_ok());
        std::os::unix::fs::symlink(d.path().join("c"), d.path().join("l")).unwrap();
        assert!(open_nofollow(&d.path().join("l")).is_err());
    }
}
