//! Copying repository files onto a medium and reading them back.
//!
//! Files on a medium are untrusted: they are opened with `O_NOFOLLOW`, only regular files with
//! names bakfs writes are looked at, and sizes are compared before anything is read. Writes go
//! to `.tmp-<name>` and are renamed into place; nothing is recorded until it was synced and read
//! back with its page cache dropped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use bakfs_core::fsio::{self, Durability, Writers};
use bakfs_core::medium;
use bakfs_core::repo::backend::FileKind;

const BUF: usize = 1 << 20;
/// Largest config or key file copied.
const MAX_SMALL: u64 = 1 << 20;

fn hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Why a copy stopped.
#[derive(Debug)]
pub enum CopyError {
    /// The medium ran out of space.
    Full(String),
    /// The job was cancelled (medium removed, daemon stopping).
    Cancelled,
    /// The primary's file does not match its name: it is not copied.
    SourceDamaged(String),
    /// The medium is not the enrolled one, or unsafe to write (a symlink where a directory of
    /// the repository belongs): nothing is written.
    Refused(String),
    Io(String),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Full(m) => write!(f, "medium full: {m}"),
            CopyError::Cancelled => write!(f, "cancelled"),
            CopyError::SourceDamaged(m) => write!(f, "primary repository damaged: {m}"),
            CopyError::Refused(m) => write!(f, "refused: {m}"),
            CopyError::Io(m) => write!(f, "{m}"),
        }
    }
}

/// Errors of creating, renaming or syncing a file on the medium.
impl From<std::io::Error> for CopyError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => CopyError::Full(format!("writing: {e}")),
            _ => CopyError::Io(format!("writing to the medium: {e}")),
        }
    }
}

fn io_err(what: &Path, e: &std::io::Error) -> CopyError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            CopyError::Full(format!("{}: {e}", what.display()))
        }
        _ => CopyError::Io(format!("{}: {e}", what.display())),
    }
}

/// The bakfs files on a medium's repository directory: (kind, name) → size. Entries that are
/// not regular files with bakfs names (symlinks, devices, stray files) are skipped and counted.
pub fn inventory(root: &Path) -> (HashMap<(FileKind, String), u64>, usize) {
    let mut out = HashMap::new();
    let mut skipped = 0;
    let mut scan = |dir: &Path, kind: FileKind, out: &mut HashMap<(FileKind, String), u64>| {
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
                skipped += 1;
                continue;
            }
            out.insert((kind, name), m.size());
        }
    };
    scan(&root.join("keys"), FileKind::Key, &mut out);
    scan(&root.join("index"), FileKind::Index, &mut out);
    scan(&root.join("snapshots"), FileKind::Snapshot, &mut out);
    if let Ok(rd) = std::fs::read_dir(root.join("data")) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                scan(&e.path(), FileKind::Pack, &mut out);
            }
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(root.join("config")) {
        if m.is_file() {
            out.insert((FileKind::Config, "config".into()), m.size());
        }
    }
    (out, skipped)
}

/// Copies `src` to `dst_root/<kind.rel_path(name)>` through a temporary file and returns the blake3
/// the copy must have (its name, for content-addressed kinds) and its size.
///
/// # Errors
/// [`CopyError`].
pub fn copy_in(
    src: &Path,
    dst_root: &Path,
    kind: FileKind,
    name: &str,
    cancel: &AtomicBool,
) -> Result<(blake3::Hash, u64), CopyError> {
    let dst = dst_root.join(kind.rel_path(name));
    let dir = dst.parent().unwrap_or(dst_root).to_path_buf();
    if kind == FileKind::Pack {
        medium::ensure_dir(&dst_root.join("data")).map_err(|e| CopyError::Io(e.to_string()))?;
    }
    medium::ensure_dir(&dir).map_err(|e| CopyError::Io(e.to_string()))?;
    let mut input = bakfs_core::fsio::open_nofollow(src)
        .map_err(|e| CopyError::Io(format!("{}: {e}", src.display())))?;
    // Written through `.tmp-<name>` (one left by a medium pulled mid-copy is replaced) and not
    // synced here: the job syncs the filesystem once per batch and reads every file back.
    fsio::write_atomic(&dir, name, Durability::Deferred, Writers::One, |out| {
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        if kind.content_addressed() {
            // In-kernel copy (copy_file_range); the read-back checks the bytes against the
            // name, and [`source_matches`] tells a damaged source from a bad copy.
            let n = std::io::copy(&mut input, out).map_err(|e| io_err(&dst, &e))?;
            let want = blake3::Hash::from_hex(name)
                .map_err(|_| CopyError::Io(format!("{name}: not a blake3 name")))?;
            return Ok((want, n));
        }
        // Small files named otherwise (config, keys): hash what is copied.
        let mut raw = Vec::new();
        (&mut input)
            .take(MAX_SMALL + 1)
            .read_to_end(&mut raw)
            .map_err(|e| CopyError::Io(format!("{}: {e}", src.display())))?;
        if raw.len() as u64 > MAX_SMALL {
            return Err(CopyError::SourceDamaged(format!(
                "{} is larger than {MAX_SMALL} bytes",
                src.display()
            )));
        }
        out.write_all(&raw).map_err(|e| io_err(&dst, &e))?;
        Ok((blake3::hash(&raw), raw.len() as u64))
    })
}

/// Whether the primary's file `src` still hashes to `name` (after a read-back mismatch: a damaged
/// source is not the medium's fault).
///
/// # Errors
/// I/O errors reading it.
pub fn source_matches(src: &Path, name: &str) -> Result<bool, CopyError> {
    Ok(hash_file(src)?.to_hex().as_str() == name)
}

/// The blake3 of a regular file of the primary (a symlink is not followed).
///
/// # Errors
/// I/O errors reading it.
pub fn hash_file(path: &Path) -> Result<blake3::Hash, CopyError> {
    let (f, _) = medium::open_regular(path).map_err(|e| CopyError::Io(e.to_string()))?;
    let mut h = blake3::Hasher::new();
    h.update_reader(f)
        .map_err(|e| CopyError::Io(format!("{}: {e}", path.display())))?;
    Ok(h.finalize())
}

/// Reads `root/<kind.rel_path(name)>` back from the device (its page cache dropped first; with
/// `flush_first` its data is written to the device before that) and returns its blake3, refusing
/// anything that is not a regular file of `size` bytes.
///
/// # Errors
/// [`CopyError`]; a size mismatch is an `Io` error.
pub fn read_back(
    root: &Path,
    kind: FileKind,
    name: &str,
    size: u64,
    flush_first: bool,
    cancel: &AtomicBool,
) -> Result<blake3::Hash, CopyError> {
    let path = root.join(kind.rel_path(name));
    let (f, actual) = medium::open_regular(&path).map_err(|e| CopyError::Io(e.to_string()))?;
    if actual != size {
        return Err(CopyError::Io(format!(
            "{}: {actual} bytes, expected {size}",
            path.display()
        )));
    }
    if flush_first {
        f.sync_data().map_err(|e| io_err(&path, &e))?;
    }
    drop_cache(&f);
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; BUF];
    let mut f = f.take(size);
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let k = f.read(&mut buf).map_err(|e| io_err(&path, &e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
    }
    Ok(h.finalize())
}

/// Asks the kernel to forget the file's cached pages, so the next read comes from the device.
fn drop_cache(f: &File) {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let _ = posix_fadvise(f.as_raw_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
}

/// Flushes the filesystem holding `path` to its device.
///
/// # Errors
/// syncfs(2) errors (EIO when the device failed).
pub fn sync_fs(path: &Path) -> Result<(), CopyError> {
    let f = File::open(path).map_err(|e| io_err(path, &e))?;
    nix::unistd::syncfs(f.as_raw_fd()).map_err(|e| io_err(path, &e.into()))
}

/// Removes a file from the medium (never follows a link: unlink removes the link itself).
///
/// # Errors
/// I/O errors other than not-found.
pub fn remove(root: &Path, kind: FileKind, name: &str) -> Result<(), CopyError> {
    let p = root.join(kind.rel_path(name));
    match std::fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&p, &e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn copy_verify_and_refuse_damaged_source() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let bytes = b"pack bytes".repeat(1000);
        let name = blake3::hash(&bytes).to_hex().to_string();
        std::fs::write(src.path().join("p"), &bytes).unwrap();
        let no = AtomicBool::new(false);
        let (h, n) = copy_in(
            &src.path().join("p"),
            dst.path(),
            FileKind::Pack,
            &name,
            &no,
        )
        .unwrap();
        assert_eq!(
            (h.to_hex().to_string(), n),
            (name.clone(), bytes.len() as u64)
        );
        assert_eq!(
            read_back(dst.path(), FileKind::Pack, &name, n, false, &no).unwrap(),
            h
        );
        assert!(read_back(dst.path(), FileKind::Pack, &name, n + 1, false, &no).is_err());
        let (inv, skipped) = inventory(dst.path());
        assert_eq!(inv.get(&(FileKind::Pack, name.clone())), Some(&n));
        assert_eq!(skipped, 0);
        // A source that does not match its name: the read-back shows it, the source check says
        // whose fault it is.
        let wrong = "0".repeat(64);
        let (want, n) = copy_in(
            &src.path().join("p"),
            dst.path(),
            FileKind::Pack,
            &wrong,
            &no,
        )
        .unwrap();
        assert_ne!(
            read_back(dst.path(), FileKind::Pack, &wrong, n, true, &no).unwrap(),
            want
        );
        assert!(!source_matches(&src.path().join("p"), &wrong).unwrap());
        assert!(source_matches(&src.path().join("p"), &name).unwrap());
        // A symlink planted where a pack belongs is neither read nor listed.
        let link = "1".repeat(64);
        std::fs::create_dir_all(dst.path().join("data/11")).unwrap();
        std::os::unix::fs::symlink(
            "/etc/passwd",
            dst.path().join(FileKind::Pack.rel_path(&link)),
        )
        .unwrap();
        assert!(read_back(dst.path(), FileKind::Pack, &link, 0, false, &no).is_err());
        assert_eq!(inventory(dst.path()).1, 1);
        // Cancelled copies leave nothing behind.
        let yes = AtomicBool::new(true);
        assert!(matches!(
            copy_in(
                &src.path().join("p"),
                dst.path(),
                FileKind::Index,
                &name,
                &yes
            ),
            Err(CopyError::Cancelled)
        ));
        assert!(std::fs::read_dir(dst.path().join("index"))
            .unwrap()
            .next()
            .is_none());
    }
}
