//! Files already on a medium are read back again once their last check is older than the
//! daemon's `reverify_after` (default 30 days). A medium spends its life in a drawer or a safe;
//! what was verified when it was written can rot since, and the catalog must not go on listing a
//! file that no longer reads back right. A file that fails is forgotten and deleted, so that the
//! snapshots needing it lose their place and the plan copies it again from the primary.

use std::sync::atomic::AtomicBool;

use bakfs_core::catalog::{Catalog, MediumFile, Verification};
use bakfs_core::format::id::MediumId;
use bakfs_core::repo::backend::FileKind;

use crate::error::CopyError;
use crate::medium::{FileRef, Files, Flush};
use crate::primary::Primary;

/// A file on the medium that is due: kind, name, size.
pub type Due = (FileKind, String, u64);

/// What re-verification found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Files that read back right (now recorded as verified again).
    pub good: usize,
    /// Bytes read back.
    pub bytes: u64,
    /// Files that did not (forgotten and deleted from the medium).
    pub bad: Vec<FileRef>,
}

/// Reads back every file of `due` from the medium, records the good ones as verified now, and
/// forgets and deletes the bad ones. Content-addressed files are checked against their names;
/// `config` and key wrappings against the primary's file of that name.
///
/// # Errors
/// [`CopyError::Cancelled`] (nothing recorded), catalog errors, errors deleting a bad file.
pub fn run(
    cat: &mut Catalog,
    medium_id: &MediumId,
    primary: &Primary,
    files: &dyn Files,
    due: &[Due],
    cancel: &AtomicBool,
) -> Result<Outcome, CopyError> {
    let mut out = Outcome::default();
    let now = bakfs_core::timefmt::now_ns();
    let mut rows = Vec::new();
    for (kind, name, size) in due {
        match check(primary, files, *kind, name, *size, cancel) {
            Ok(()) => {
                out.good += 1;
                rows.push(MediumFile {
                    kind: *kind,
                    name: name.clone(),
                    size: *size as i64,
                    verified_ns: now,
                });
            }
            Err(CopyError::Cancelled) => return Err(CopyError::Cancelled),
            Err(e) => {
                tracing::warn!(
                    "{} {name} on the medium no longer reads back right ({e}): it will be copied again",
                    kind.as_str()
                );
                out.bad.push((*kind, name.clone()));
            }
        }
        out.bytes += size;
    }
    cat.record_medium_verified(medium_id, &rows, &[], Verification::Reread, now)
        .map_err(CopyError::catalog)?;
    if !out.bad.is_empty() {
        // Rows first, files second: the catalog never lists what is not there.
        cat.remove_medium_files(medium_id, &out.bad)
            .map_err(CopyError::catalog)?;
        for (k, n) in &out.bad {
            files.remove(*k, n)?;
        }
    }
    Ok(out)
}

/// Reads one file back and compares it with what it must be.
fn check(
    primary: &Primary,
    files: &dyn Files,
    kind: FileKind,
    name: &str,
    size: u64,
    cancel: &AtomicBool,
) -> Result<(), CopyError> {
    let got = files.read_back(kind, name, size, Flush::Synced, cancel)?;
    let want = if kind.content_addressed() {
        blake3::Hash::from_hex(name).map_err(|e| CopyError::Io(e.to_string()))?
    } else {
        primary.hash(kind, name)?
    };
    if got == want {
        Ok(())
    } else {
        Err(CopyError::Io("its blake3 differs".into()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rotten_files_are_forgotten_and_deleted_and_good_ones_recorded() {
        let primary = tempfile::tempdir().unwrap();
        let medium = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut cat = Catalog::open(&state.path().join("catalog.db")).unwrap();
        let m1 = MediumId::random();
        cat.enroll_medium(&bakfs_core::catalog::MediumRecord {
            fs_type: "ext4".into(),
            pool: "offsite".into(),
            capacity: 1 << 30,
            ..bakfs_core::catalog::MediumRecord::enrolled(
                m1,
                "M1",
                bakfs_core::format::id::RepoId::random(),
                "u1",
                bakfs_core::catalog::MediumKind::Usb,
                bakfs_core::catalog::MediumLocation::Offsite,
                1,
            )
        })
        .unwrap();
        let no = AtomicBool::new(false);
        let backend: std::sync::Arc<dyn bakfs_core::repo::backend::Backend> =
            std::sync::Arc::new(bakfs_core::repo::backend::LocalBackend::new(primary.path()));
        backend.create().unwrap();
        let primary = Primary::new(backend.clone());
        std::fs::create_dir(medium.path().join(bakfs_core::medium::DIR)).unwrap();
        let tree = crate::medium::fs::FsTree::new(medium.path());
        tree.prepare().unwrap();
        let root = medium.path().join(bakfs_core::medium::DIR);
        let mut due = Vec::new();
        for bytes in [b"first pack".repeat(100), b"second pack".repeat(100)] {
            let name = blake3::hash(&bytes).to_hex().to_string();
            backend.write(FileKind::Pack, &name, &bytes).unwrap();
            let mut src = primary
                .open(FileKind::Pack, &name, bytes.len() as u64)
                .unwrap();
            tree.write(FileKind::Pack, &name, &mut src, &no).unwrap();
            due.push((FileKind::Pack, name, bytes.len() as u64));
        }
        backend
            .write(FileKind::Config, "config", b"config v1")
            .unwrap();
        std::fs::write(root.join("config"), b"config v2").unwrap();
        due.push((FileKind::Config, "config".into(), 9));
        // The second pack rots on the medium: same size, one byte flipped.
        let rotten = root.join(FileKind::Pack.rel_path(&due[1].1));
        let mut b = std::fs::read(&rotten).unwrap();
        b[7] ^= 1;
        std::fs::write(&rotten, b).unwrap();
        let out = run(&mut cat, &m1, &primary, &tree, &due, &no).unwrap();
        assert_eq!(out.good, 1);
        assert_eq!(
            out.bad,
            vec![
                (FileKind::Pack, due[1].1.clone()),
                (FileKind::Config, "config".into())
            ]
        );
        assert!(!rotten.exists(), "a rotten pack is deleted");
        assert!(!root.join("config").exists());
        assert!(root.join(FileKind::Pack.rel_path(&due[0].1)).exists());
        let files = cat.medium_files(&m1).unwrap();
        assert_eq!(files.len(), 1, "only the good pack is recorded: {files:?}");
        assert_eq!(files[0].name, due[0].1);
        // Cancelled: nothing recorded, nothing deleted.
        let yes = AtomicBool::new(true);
        assert!(matches!(
            run(&mut cat, &m1, &primary, &tree, &due[..1], &yes),
            Err(CopyError::Cancelled)
        ));
    }
}
