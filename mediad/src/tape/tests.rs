//! The tape job on a virtual drive, without root or a daemon: a real repository and catalog,
//! faults injected into the drive.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bakfs_core::backup::{backup, BackupOptions, Progress};
use bakfs_core::catalog::{
    Catalog, MediumKind, MediumLocation, MediumRecord, PackRecord, SnapshotRecord, Tape, TapePlace,
    TapeStatus,
};
use bakfs_core::format::crypto::KdfParams;
use bakfs_core::format::id::MediumId;
use bakfs_core::repo::backend::Location;
use bakfs_core::repo::Repository;
use bakfs_core::tape_pool::PoolPolicy;
use bakfs_tape::layout::{label_tape, Label, LABEL_FORMAT};
use bakfs_tape::{CartridgeName, DriveConfig, Faults, TapeDrive, VirtualDrive};

use super::copy::{copy_onto_tape, Filled};
use crate::error::CopyError;
use crate::job::Setup;
use crate::rotate::Stats;

struct World {
    dir: tempfile::TempDir,
    setup: Setup,
    tape: MediumRecord,
    drive: VirtualDrive,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::Dir(dir.path().join("repo"));
    let repo = Repository::init(
        location.backend().unwrap(),
        b"pw",
        KdfParams::weak_for_tests(),
        "t".into(),
    )
    .unwrap();
    let setup = Setup {
        repo: location,
        repo_id: repo.id(),
        catalog: dir.path().join("catalog.db"),
        media_root: dir.path().join("media"),
        reverify_after: Duration::from_secs(86400),
        pinned: Default::default(),
        tz: bakfs_core::timefmt::TimeZone::UTC,
        monitors: Default::default(),
        runbook: Default::default(),
        drill: None,
        share_timeout: Duration::from_secs(60),
        share_retry: Duration::from_secs(900),
        share_read_back: 100.0,
    };
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("f"), bytes).unwrap();
    let opts = BackupOptions {
        paths: vec![src],
        host: "h".into(),
        time_ns: 1,
        ..BackupOptions::default()
    };
    let rep = backup(&repo, &opts, &Progress::default()).unwrap();
    let s = &rep.snapshot;
    let mut cat = Catalog::open(&setup.catalog).unwrap();
    cat.record_snapshot(
        &SnapshotRecord {
            repo_id: repo.id(),
            id: rep.id,
            time: String::new(),
            time_ns: s.time_ns,
            host: s.host.clone(),
            paths: s.paths.clone(),
            tags: vec![],
            tree: s.tree,
            parent: None,
            job: None,
            files: s.summary.files,
            bytes: s.summary.bytes,
        },
        &rep.packs_needed
            .iter()
            .map(|(id, size)| PackRecord {
                id: *id,
                size: *size,
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let id = MediumId::random();
    let tape = MediumRecord {
        pool: "P".into(),
        tape: Some(Tape {
            set: "5e7".into(),
            seq: 0,
            status: TapeStatus::Writable,
            place: TapePlace::InDrive,
        }),
        ..MediumRecord::enrolled(
            id,
            "T1",
            repo.id(),
            "tape-t1",
            MediumKind::Tape,
            MediumLocation::Offsite,
            1,
        )
    };
    cat.enroll_medium(&tape).unwrap();
    let mut drive = VirtualDrive::open(&dir.path().join("lib"), DriveConfig::default()).unwrap();
    let name = CartridgeName::new("T1").unwrap();
    drive.create_cartridge(&name, 1 << 30).unwrap();
    drive.load(&name).unwrap();
    label_tape(&mut drive, &label(&tape, repo.id().to_hex())).unwrap();
    World {
        dir,
        setup,
        tape,
        drive,
    }
}

fn label(m: &MediumRecord, repo: String) -> Label {
    Label {
        format: LABEL_FORMAT,
        medium_id: m.id.to_hex(),
        label: m.label.clone(),
        pool: m.pool.clone(),
        repo_id: repo,
        media_set: "5e7".into(),
        set_seq: 0,
        labelled_ns: 1,
    }
}

impl World {
    fn run(&mut self) -> Result<Filled, CopyError> {
        let mut cat = Catalog::open(&self.setup.catalog).unwrap();
        copy_onto_tape(
            &self.setup,
            &mut cat,
            &self.tape,
            &mut self.drive,
            &PoolPolicy::default(),
            &AtomicBool::new(false),
            &mut Stats::default(),
        )
    }

    fn record(&self) -> MediumRecord {
        Catalog::open(&self.setup.catalog)
            .unwrap()
            .medium_by_label("T1")
            .unwrap()
            .unwrap()
    }

    fn held(&self) -> usize {
        Catalog::open(&self.setup.catalog)
            .unwrap()
            .medium_snapshots(&self.tape.id)
            .unwrap()
            .len()
    }
}

#[test]
fn a_job_copies_reads_back_and_records() {
    let mut w = world();
    assert_eq!(w.run().unwrap(), Filled::No);
    assert_eq!(w.held(), 1);
    assert_eq!(w.run().unwrap(), Filled::UpToDate);
    let _ = &w.dir;
}

#[test]
fn a_cartridge_that_reads_back_wrong_is_damaged_and_left_alone() {
    let mut w = world();
    // Reads: two labels, then the read-back; the fourth read fails.
    w.drive.set_faults(Faults {
        read_error_after: Some(3),
        ..Faults::default()
    });
    let e = w.run().unwrap_err();
    assert!(e.to_string().contains("T1 is damaged"), "{e}");
    let m = w.record();
    assert_eq!(m.tape.as_ref().unwrap().status, TapeStatus::Damaged);
    assert_eq!(
        w.held(),
        0,
        "the snapshot whose file read back wrong is not recorded"
    );
    // The pool leaves a damaged cartridge alone.
    w.tape = m;
    assert!(matches!(w.run().unwrap(), Filled::Left(why) if why.contains("damaged")));
}

#[test]
fn the_drive_going_offline_mid_write_records_nothing() {
    let mut w = world();
    w.drive.set_faults(Faults {
        offline_after_writes: Some(3),
        ..Faults::default()
    });
    assert!(matches!(w.run(), Err(CopyError::Cancelled)));
    assert_eq!(w.held(), 0);
    assert!(Catalog::open(&w.setup.catalog)
        .unwrap()
        .tape_files(&w.tape.id)
        .unwrap()
        .is_empty());
}

#[test]
fn write_protected_foreign_and_other_repository_cartridges_are_refused() {
    let mut w = world();
    w.drive.unload().unwrap();
    let name = CartridgeName::new("T1").unwrap();
    w.drive.set_write_protected(&name, true).unwrap();
    w.drive.load(&name).unwrap();
    assert!(matches!(w.run(), Err(CopyError::Refused(m)) if m.contains("write-protected")));
    w.drive.unload().unwrap();
    w.drive.set_write_protected(&name, false).unwrap();
    w.drive.load(&name).unwrap();
    // Labelled for another medium of this catalog's pool.
    let mut other = w.tape.clone();
    other.id = MediumId::random();
    label_tape(&mut w.drive, &label(&other, w.setup.repo_id.to_hex())).unwrap();
    assert!(matches!(w.run(), Err(CopyError::Refused(m)) if m.contains("not T1")));
    // Labelled by another repository.
    label_tape(&mut w.drive, &label(&w.tape, "another".into())).unwrap();
    assert!(matches!(w.run(), Err(CopyError::Refused(m)) if m.contains("repository")));
    assert_eq!(w.held(), 0);
}
