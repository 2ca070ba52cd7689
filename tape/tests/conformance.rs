//! The conformance checks (`bakfs_tape::conformance`) against the virtual drive, one test per
//! check on a library of its own, then all in a row on one library as a real drive would run
//! them; and the virtual drive's own promises that the checks cannot see through the trait
//! (the state another process finds, the early warning's place, the library).
//!
//! With `BAKFS_TEST_TAPE=/dev/nstX` the same checks run against a real `st`
//! device: see [`real_st_device`].

#![allow(clippy::unwrap_used)]

use bakfs_tape::conformance::{self, run_all, Harness, Outcome, VirtualHarness};
use bakfs_tape::virtual_drive::FILEMARK_COST;
use bakfs_tape::{CartridgeName, DriveConfig, Faults, TapeDrive, TapeError, VirtualDrive};

fn run_check(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = VirtualHarness::new(dir.path()).unwrap();
    let check = conformance::check(name).unwrap();
    if let Err(e) = check.run(&mut h) {
        panic!("{name}: {e}");
    }
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run_check(stringify!($name)); })*

        #[test]
        fn every_check_has_its_test() {
            let tested = [$(stringify!($name)),*];
            for c in conformance::CHECKS {
                assert!(tested.contains(&c.name), "no test for check {}", c.name);
            }
        }
    };
}

conformance_tests!(
    write_and_reread_across_filemarks,
    reposition_to_file_and_block,
    append_after_reopen,
    backspace_file_and_reread_last_record,
    space_forward_over_files_and_records,
    writing_in_the_middle_truncates,
    filemark_written_after_a_write,
    record_too_large_for_the_buffer,
    unload_and_reload,
    early_warning_trailer_end_of_medium_next_cartridge,
    write_protection,
    drive_going_offline,
    injected_read_error,
    injected_write_error,
    torn_last_record_dropped_on_reopen,
);

#[test]
fn all_checks_in_a_row_on_one_drive() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = VirtualHarness::new(dir.path()).unwrap();
    let reports = run_all(&mut h);
    assert_eq!(reports.len(), conformance::CHECKS.len());
    for r in reports {
        assert_eq!(r.outcome, Outcome::Passed, "{}", r.name);
    }
}

/// A harness that arranges nothing optional: those checks are skipped, not failed.
#[test]
fn checks_a_harness_cannot_arrange_are_skipped() {
    struct Plain(VirtualHarness);
    impl Harness for Plain {
        fn drive(&mut self) -> &mut dyn TapeDrive {
            self.0.drive()
        }
        fn load_scratch(
            &mut self,
            w: conformance::Scratch,
        ) -> Result<(), conformance::HarnessError> {
            self.0.load_scratch(w)
        }
        fn reload(&mut self, w: conformance::Scratch) -> Result<(), conformance::HarnessError> {
            self.0.reload(w)
        }
        fn reopen(&mut self) -> Result<(), conformance::HarnessError> {
            self.0.reopen()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut h = Plain(VirtualHarness::new(dir.path()).unwrap());
    let reports = run_all(&mut h);
    let skipped: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Skipped(_)))
        .map(|r| r.name)
        .collect();
    assert_eq!(
        skipped,
        [
            "early_warning_trailer_end_of_medium_next_cartridge",
            "write_protection",
            "drive_going_offline",
            "injected_read_error",
            "injected_write_error",
            "torn_last_record_dropped_on_reopen"
        ]
    );
    assert!(reports
        .iter()
        .all(|r| r.outcome != Outcome::Failed(String::new())));
    assert!(!reports
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Failed(_))));
}

/// Every check against the `st` device named by `BAKFS_TEST_TAPE` (a non-rewinding device,
/// `/dev/nstX`, with a scratch cartridge loaded: its contents are destroyed). The harness has
/// one cartridge and arranges no faults, so the checks needing more are skipped and listed;
/// none may fail. Without the variable there is no drive to test (no CI machine has one).
#[test]
fn real_st_device() {
    let Ok(dev) = std::env::var("BAKFS_TEST_TAPE") else {
        eprintln!("skipped: BAKFS_TEST_TAPE names no st device");
        return;
    };
    let mut h = conformance::StHarness::new(std::path::Path::new(&dev)).unwrap();
    let reports = run_all(&mut h);
    for r in &reports {
        eprintln!("{dev}: {}: {:?}", r.name, r.outcome);
    }
    assert!(!reports
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Failed(_))));
    assert!(reports.iter().any(|r| r.outcome == Outcome::Passed));
}

fn name(s: &str) -> CartridgeName {
    CartridgeName::new(s).unwrap()
}

/// The non-rewinding device keeps the cartridge and position between opens, and a second
/// open while the first holds the drive is EBUSY.
#[test]
fn another_open_finds_the_cartridge_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = VirtualDrive::open(dir.path(), DriveConfig::default()).unwrap();
    d.create_cartridge(&name("A1"), 1 << 30).unwrap();
    d.load(&name("A1")).unwrap();
    for rec in [&b"a"[..], b"b", b"c"] {
        d.write_record(rec).unwrap();
    }
    d.write_filemarks(1).unwrap();
    d.write_record(b"d").unwrap();
    d.rewind().unwrap();
    d.space_files(1).unwrap();
    assert!(matches!(
        VirtualDrive::open(dir.path(), DriveConfig::default()),
        Err(TapeError::Busy { .. })
    ));
    d.close().unwrap();
    let mut d = VirtualDrive::open(dir.path(), DriveConfig::default()).unwrap();
    assert_eq!(d.loaded_cartridge(), Some(&name("A1")));
    assert_eq!(d.position(), Some((1, 0)));
    let mut buf = [0u8; 8];
    assert_eq!(d.read_record(&mut buf).unwrap(), 1);
    assert_eq!(&buf[..1], b"d");
    // The rewind wrote st's filemark after "d".
    assert_eq!(d.read_record(&mut buf).unwrap(), 0);
    assert!(matches!(d.read_record(&mut buf), Err(TapeError::EndOfData)));
}

/// Dropping the drive right after a write ends the file with a filemark, as st's close.
#[test]
fn closing_after_a_write_writes_a_filemark() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = VirtualDrive::open(dir.path(), DriveConfig::default()).unwrap();
    d.create_cartridge(&name("A1"), 1 << 30).unwrap();
    d.load(&name("A1")).unwrap();
    d.write_record(b"x").unwrap();
    drop(d);
    let mut d = VirtualDrive::open(dir.path(), DriveConfig::default()).unwrap();
    assert_eq!(d.position(), Some((1, 0)));
    d.rewind().unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(d.read_record(&mut buf).unwrap(), 1);
    assert_eq!(d.read_record(&mut buf).unwrap(), 0);
    assert!(matches!(d.read_record(&mut buf), Err(TapeError::EndOfData)));
}

/// The early warning comes at the first write starting at or past capacity minus the
/// distance, counted in record bytes and FILEMARK_COST per filemark; it is given once per
/// pass and again after moving back before the point.
#[test]
fn early_warning_place_and_rearming() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = VirtualDrive::open(dir.path(), DriveConfig::default()).unwrap();
    d.create_cartridge_with(&name("S"), 100_000, 10_000)
        .unwrap();
    d.load(&name("S")).unwrap();
    d.write_filemarks(1).unwrap(); // 1,024 used
    let rec = vec![7u8; 21_994];
    for _ in 0..4 {
        d.write_record(&rec).unwrap(); // 89,000 used: just before the point at 90,000
    }
    assert!(!d.status().unwrap().early_warning);
    d.write_record(&[1; 2_000]).unwrap(); // crosses the point: written
    assert!(d.status().unwrap().early_warning);
    assert!(matches!(d.write_record(b"x"), Err(TapeError::EarlyWarning)));
    d.write_record(&[2; 8_000]).unwrap(); // 99,000: the trailer fits
    assert!(matches!(
        d.write_record(&[3; 1_001]),
        Err(TapeError::EndOfMedium)
    ));
    d.write_record(&[3; 1_000]).unwrap(); // exactly full
    assert!(matches!(d.write_filemarks(1), Err(TapeError::EndOfMedium)));
    // Back before the point, then forward over it: warned again.
    d.rewind().unwrap();
    d.space_files(1).unwrap();
    d.space_records(5).unwrap(); // 91,000: past the point, arrived at by spacing
    assert!(d.status().unwrap().early_warning);
    assert!(matches!(d.write_record(b"y"), Err(TapeError::EarlyWarning)));
    d.write_record(b"y").unwrap();
    assert_eq!(FILEMARK_COST, 1024);
}

/// Faults set in the configuration count from the open; the offline drive comes back with a
/// load and a new open; the library lists its cartridges and their protection.
#[test]
fn configured_faults_and_library_listing() {
    let dir = tempfile::tempdir().unwrap();
    let config = DriveConfig {
        faults: Faults {
            write_error_after: Some(0),
            ..Faults::default()
        },
        ..DriveConfig::default()
    };
    let mut d = VirtualDrive::open(dir.path(), config).unwrap();
    for n in ["B", "A"] {
        d.create_cartridge(&name(n), 1 << 30).unwrap();
    }
    assert!(matches!(
        d.create_cartridge(&name("A"), 1 << 30),
        Err(TapeError::CartridgeExists(_))
    ));
    assert!(matches!(
        d.create_cartridge(&name("C"), 1 << 20),
        Err(TapeError::InvalidArgument(_))
    ));
    d.set_write_protected(&name("B"), true).unwrap();
    let list = d.cartridges().unwrap();
    assert_eq!(
        list.iter()
            .map(|c| (c.name.as_str(), c.write_protected))
            .collect::<Vec<_>>(),
        [("A", false), ("B", true)]
    );
    d.load(&name("A")).unwrap();
    assert!(matches!(
        d.load(&name("B")),
        Err(TapeError::DriveOccupied(_))
    ));
    assert!(d.write_record(b"x").unwrap_err().is_injected());
    d.write_record(b"x").unwrap();
    assert!(matches!(
        d.remove_cartridge(&name("A")),
        Err(TapeError::DriveOccupied(_))
    ));
    d.unload().unwrap();
    d.remove_cartridge(&name("A")).unwrap();
    assert!(matches!(
        d.load(&name("A")),
        Err(TapeError::NoSuchCartridge(_))
    ));
}
