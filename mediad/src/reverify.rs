//! Files already on a medium are read back again once their last check is older than the
//! daemon's `reverify_after` (default 30 days). A medium spends its life in a drawer or a safe;
//! what was verified when it was written can rot since, and the catalog must not go on listing a
//! file that no longer reads back right. A file that fails is forgotten and deleted, so that the
//! snapshots needing it lose their place and the plan copies it again from the primary.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use bakfs_core::catalog::{Catalog, MediumFile, Verification};
use bakfs_core::format::id::MediumId;
use bakfs_core::repo::backend::FileKind;

use crate::copy::{self, CopyError};

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
    pub bad: Vec<(FileKind, String)>,
}

/// Reads back every file of `due` from the medium's repository directory `root`, records the
/// good ones as verified now, and forgets and deletes the bad ones. Content-addressed files are
/// checked against their names; `config` and key wrappings against the primary's file of that
/// name under `primary_root`.
///
/// # Errors
/// [`CopyError::Cancelled`] (nothing recorded), catalog errors, errors deleting a bad file.
pub fn run(
    cat: &mut Catalog,
    medium_id: &MediumId,
    primary_root: &Path,
    root: &Path,
    due: &[Due],
    cancel: &AtomicBool,
) -> Result<Outcome, CopyError> {
    let mut out = Outcome::default();
    let now = bakfs_core::timefmt::now_ns();
    let mut rows = Vec::new();
    for (kind, name, size) in due {
        match check(primary_root, root, *kind, name, *size, cancel) {
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
        .map_err(|e| CopyError::Io(format!("catalog: {e}")))?;
    if !out.bad.is_empty() {
        // Rows first, files second: the catalog never lists what is not there.
        cat.remove_medium_files(medium_id, &out.bad)
            .map_err(|e| CopyError::Io(format!("catalog: {e}")))?;
        for (k, n) in &out.bad {
            copy::remove(root, *k, n)?;
        }
    }
    Ok(out)
}

/// Reads one file back and compares it with what it must be.
fn check(
    primary_root: &Path,
    root: &Path,
    kind: FileKind,
    name: &str,
    size: u64,
    cancel: &AtomicBool,
) -> Result<(), CopyError> {
    let got = copy::read_back(root, kind, name, size, false, cancel)?;
    let want = if kind.content_addressed() {
        blake3::Hash::from_hex(name).map_err(|e| CopyError::Io(e.to_string()))?
    } else {
        copy::hash_file(&primary_root.join(kind.rel_path(name)))?
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
            id: m1,
            label: "M1".into(),
            repo_id: bakfs_core::format::id::RepoId::random(),
            fs_uuid: "u1".into(),
            fs_type: "ext4".into(),
            serial: None,
            kind: bakfs_core::catalog::MediumKind::Usb,
            pool: "offsite".into(),
            location: bakfs_core::catalog::MediumLocation::Offsite,
            capacity: 1 << 30,
            retention: Default::default(),
            enrolled_ns: 1,
            last_seen_ns: None,
            last_written_ns: None,
            last_verified_ns: None,
            state: bakfs_core::catalog::MediumState::Enrolled,
            message: None,
            bytes: 0,
        })
        .unwrap();
        let no = AtomicBool::new(false);
        let mut due = Vec::new();
        for (i, bytes) in [b"first pack".repeat(100), b"second pack".repeat(100)]
            .iter()
            .enumerate()
        {
            let name = blake3::hash(bytes).to_hex().to_string();
            let src = primary.path().join(format!("p{i}"));
            std::fs::write(&src, bytes).unwrap();
            copy::copy_in(&src, medium.path(), FileKind::Pack, &name, &no).unwrap();
            due.push((FileKind::Pack, name, bytes.len() as u64));
        }
        std::fs::write(primary.path().join("config"), b"config v1").unwrap();
        std::fs::write(medium.path().join("config"), b"config v2").unwrap();
        due.push((FileKind::Config, "config".into(), 9));
        // The second pack rots on the medium: same size, one byte flipped.
        let rotten = medium.path().join(FileKind::Pack.rel_path(&due[1].1));
        let mut b = std::fs::read(&rotten).unwrap();
        b[7] ^= 1;
        std::fs::write(&rotten, b).unwrap();
        let out = run(&mut cat, &m1, primary.path(), medium.path(), &due, &no).unwrap();
        assert_eq!(out.good, 1);
        assert_eq!(
            out.bad,
            vec![
                (FileKind::Pack, due[1].1.clone()),
                (FileKind::Config, "config".into())
            ]
        );
        assert!(!rotten.exists(), "a rotten pack is deleted");
        assert!(!medium.path().join("config").exists());
        assert!(medium
            .path()
            .join(FileKind::Pack.rel_path(&due[0].1))
            .exists());
        let files = cat.medium_files(&m1).unwrap();
        assert_eq!(files.len(), 1, "only the good pack is recorded: {files:?}");
        assert_eq!(files[0].name, due[0].1);
        // Cancelled: nothing recorded, nothing deleted.
        let yes = AtomicBool::new(true);
        assert!(matches!(
            run(
                &mut cat,
                &m1,
                primary.path(),
                medium.path(),
                &due[..1],
                &yes
            ),
            Err(CopyError::Cancelled)
        ));
    }
}
