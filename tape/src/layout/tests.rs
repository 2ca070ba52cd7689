//! The tape layout on the virtual drive: labels, jobs, scans without the catalog database,
//! entries read back by spacing, and the faults issue 14 names.

use std::path::Path;

use bakfs_core::repo::backend::FileKind;

use super::*;
use crate::{CartridgeName, DriveConfig, Faults, Status, TapeDrive, TapeError, VirtualDrive};

const REPO: &str = "r3p0";

fn label(text: &str, seq: u32) -> Label {
    Label {
        format: LABEL_FORMAT,
        medium_id: format!("id-{text}"),
        label: text.into(),
        pool: "OFFSITE".into(),
        repo_id: REPO.into(),
        media_set: "set-1".into(),
        set_seq: seq,
        labelled_ns: 1,
    }
}

fn drive_with(dir: &Path, tapes: &[(&str, u64, u64)]) -> VirtualDrive {
    let mut d = VirtualDrive::open(dir, DriveConfig::default()).unwrap();
    for (name, capacity, ew) in tapes {
        d.create_cartridge_with(&CartridgeName::new(*name).unwrap(), *capacity, *ew)
            .unwrap();
    }
    d.load(&CartridgeName::new(tapes[0].0).unwrap()).unwrap();
    d
}

/// A pack of `len` bytes named by its blake3.
fn pack(seed: u8, len: usize) -> (String, Vec<u8>) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    (blake3::hash(&bytes).to_hex().to_string(), bytes)
}

fn write(w: &mut TapeWriter<'_>, kind: FileKind, name: &str, bytes: &[u8]) -> Placement {
    w.write(kind, name, bytes.len() as u64, &mut &bytes[..])
        .unwrap()
}

fn read(d: &mut dyn TapeDrive, p: &Placed) -> Vec<u8> {
    let mut out = Vec::new();
    read_entry(d, p, &mut out).unwrap();
    out
}

#[test]
fn a_labelled_tape_takes_jobs_and_a_scan_finds_them_without_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = drive_with(dir.path(), &[("A00001L9", 1 << 30, 32 << 20)]);
    label_tape(&mut d, &label("A00001L9", 0)).unwrap();
    let packs: Vec<_> = (0..5)
        .map(|i| pack(i, 100_000 + usize::from(i) * 300_000))
        .collect();

    let mut w = TapeWriter::after_label(&mut d, JobId(1));
    assert!(matches!(
        write(&mut w, FileKind::Config, "config", b"{}"),
        Placement::Written(_)
    ));
    for (name, bytes) in &packs[..3] {
        write(&mut w, FileKind::Pack, name, bytes);
    }
    let c1 = w.close(false, 10).unwrap();
    assert_eq!(c1.entries.len(), 4);

    let (mut w, l) = TapeWriter::append(&mut d, JobId(2), REPO, "OFFSITE").unwrap();
    assert_eq!(l.label, "A00001L9");
    for (name, bytes) in &packs[3..] {
        write(&mut w, FileKind::Pack, name, bytes);
    }
    let c2 = w.close(false, 20).unwrap();
    // Job 1: data file 1, catalog file 2; job 2: data file 3, catalog 4.
    assert!(c2.entries.iter().all(|p| p.at.file == 3));

    let s = scan(&mut d).unwrap();
    assert_eq!(s.label, label("A00001L9", 0));
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert!(s.unclosed().is_empty());
    assert_eq!(s.files, 5);
    let trusted: Vec<Placed> = s.trusted().into_iter().cloned().collect();
    assert_eq!(trusted, [c1.entries.clone(), c2.entries.clone()].concat());
    for (p, (found, at)) in trusted.iter().zip(s.jobs.values().flat_map(|j| &j.found)) {
        assert_eq!((&p.entry, p.at), (found, *at));
    }
    // Back and forth over the tape, by spacing.
    for p in trusted.iter().rev().chain(&trusted) {
        let bytes = read(&mut d, p);
        if p.entry.kind == FileKind::Pack {
            assert_eq!(blake3::hash(&bytes).to_hex().as_str(), p.entry.name);
        } else {
            assert_eq!(bytes, b"{}");
        }
    }
}

/// Counts the records read and the tape files they were read in.
struct Counting<'a> {
    inner: &'a mut dyn TapeDrive,
    reads: u64,
    files: std::collections::BTreeSet<u64>,
}

impl TapeDrive for Counting<'_> {
    fn status(&mut self) -> Result<Status, TapeError> {
        self.inner.status()
    }
    fn write_record(&mut self, rec: &[u8]) -> Result<(), TapeError> {
        self.inner.write_record(rec)
    }
    fn read_record(&mut self, buf: &mut [u8]) -> Result<usize, TapeError> {
        if let Some(f) = self.inner.status()?.file {
            self.files.insert(f);
        }
        self.reads += 1;
        self.inner.read_record(buf)
    }
    fn write_filemarks(&mut self, n: u32) -> Result<(), TapeError> {
        self.inner.write_filemarks(n)
    }
    fn space_files(&mut self, n: i64) -> Result<(), TapeError> {
        self.inner.space_files(n)
    }
    fn space_records(&mut self, n: i64) -> Result<(), TapeError> {
        self.inner.space_records(n)
    }
    fn rewind(&mut self) -> Result<(), TapeError> {
        self.inner.rewind()
    }
    fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
        self.inner.seek_end_of_data()
    }
    fn unload(&mut self) -> Result<(), TapeError> {
        self.inner.unload()
    }
}

#[test]
fn reading_one_entry_reads_only_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = drive_with(dir.path(), &[("A1", 1 << 30, 32 << 20)]);
    label_tape(&mut d, &label("A1", 0)).unwrap();
    let mut placed = Vec::new();
    for job in 0..5 {
        let mut w = TapeWriter::after_label(&mut d, JobId(job));
        if job > 0 {
            w = TapeWriter::append(&mut d, JobId(job), REPO, "OFFSITE")
                .unwrap()
                .0;
        }
        for i in 0..4 {
            let (name, bytes) = pack(job as u8 * 10 + i, 600_000);
            if let Placement::Written(p) = write(&mut w, FileKind::Pack, &name, &bytes) {
                placed.push(p);
            }
        }
        w.close(false, 0).unwrap();
    }
    d.rewind().unwrap();
    let middle = &placed[placed.len() / 2];
    let mut c = Counting {
        inner: &mut d,
        reads: 0,
        files: Default::default(),
    };
    let mut out = Vec::new();
    read_entry(&mut c, middle, &mut out).unwrap();
    // The entry record and its three data records, in its own tape file only.
    assert_eq!(c.reads, 1 + middle.entry.records());
    assert_eq!(c.files.into_iter().collect::<Vec<_>>(), [middle.at.file]);
    assert_eq!(out.len(), 600_000);
}

#[test]
fn the_early_warning_mid_pack_closes_the_cartridge_with_its_catalog_and_the_set_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MB with the warning 1 MB before the end: about 3 MB of packs fit.
    let mut d = drive_with(
        dir.path(),
        &[("A1", 4 << 20, 1 << 20), ("A2", 4 << 20, 1 << 20)],
    );
    label_tape(&mut d, &label("A1", 0)).unwrap();
    let packs: Vec<_> = (0..8).map(|i| pack(i, 700_000)).collect();
    let mut w = TapeWriter::after_label(&mut d, JobId(7));
    let mut left = Vec::new();
    for (name, bytes) in &packs {
        if write(&mut w, FileKind::Pack, name, bytes) == Placement::Full {
            left.push((name, bytes));
        }
    }
    let first = w.close(true, 1).unwrap();
    assert!(first.continued);
    assert_eq!(first.entries.len() + left.len(), packs.len());
    assert!(
        (3..=5).contains(&first.entries.len()),
        "{}",
        first.entries.len()
    );

    d.unload().unwrap();
    d.load(&CartridgeName::new("A2").unwrap()).unwrap();
    label_tape(&mut d, &label("A2", 1)).unwrap();
    let mut w = TapeWriter::after_label(&mut d, JobId(7));
    for (name, bytes) in &left {
        assert!(matches!(
            write(&mut w, FileKind::Pack, name, bytes),
            Placement::Written(_)
        ));
    }
    let second = w.close(false, 2).unwrap();

    // Each cartridge alone says what it holds; the pack cut off by the warning is only on A2.
    let s2 = scan(&mut d).unwrap();
    assert_eq!(s2.label.set_seq, 1);
    assert_eq!(s2.trusted().len(), second.entries.len());
    d.unload().unwrap();
    d.load(&CartridgeName::new("A1").unwrap()).unwrap();
    let s1 = scan(&mut d).unwrap();
    assert!(s1.problems.is_empty(), "{:?}", s1.problems);
    let found = &s1.jobs[&JobId(7)].found;
    assert_eq!(
        found.len(),
        first.entries.len(),
        "the torn pack is not found whole"
    );
    assert_eq!(s1.trusted().len(), first.entries.len());
    for p in s1.trusted().into_iter().cloned().collect::<Vec<_>>() {
        read(&mut d, &p);
    }
}

#[test]
fn a_job_cut_off_is_never_trusted_and_the_next_appends_after_the_last_filemark() {
    for fault in [
        "offline",
        "write error",
        "filemark error",
        "killed",
        "power loss",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut d = drive_with(dir.path(), &[("A1", 1 << 30, 32 << 20)]);
        label_tape(&mut d, &label("A1", 0)).unwrap();
        let mut w = TapeWriter::after_label(&mut d, JobId(1));
        let (n0, b0) = pack(0, 300_000);
        write(&mut w, FileKind::Pack, &n0, &b0);
        w.close(false, 0).unwrap();

        let (n1, b1) = pack(1, 900_000);
        match fault {
            "offline" | "write error" => {
                let faults = if fault == "offline" {
                    Faults {
                        offline_after_writes: Some(3),
                        ..Faults::default()
                    }
                } else {
                    Faults {
                        write_error_after: Some(3),
                        ..Faults::default()
                    }
                };
                d.set_faults(faults);
                let (mut w, _) = TapeWriter::append(&mut d, JobId(2), REPO, "OFFSITE").unwrap();
                let e = w
                    .write(FileKind::Pack, &n1, b1.len() as u64, &mut &b1[..])
                    .unwrap_err();
                assert!(matches!(e, WriteError::Tape(_)), "{fault}: {e}");
                drop(w);
                if fault == "offline" {
                    d.load(&CartridgeName::new("A1").unwrap()).unwrap();
                }
            }
            "filemark error" => {
                // The pack is written whole; the filemark closing its file fails (st reporting
                // a buffered write that failed): the job's close fails, it has no catalog.
                d.set_faults(Faults {
                    filemark_error_after: Some(0),
                    ..Faults::default()
                });
                let (mut w, _) = TapeWriter::append(&mut d, JobId(2), REPO, "OFFSITE").unwrap();
                write(&mut w, FileKind::Pack, &n1, &b1);
                let e = w.close(false, 2).unwrap_err();
                assert!(matches!(e, WriteError::Tape(_)), "{fault}: {e}");
            }
            _ => {
                let (mut w, _) = TapeWriter::append(&mut d, JobId(2), REPO, "OFFSITE").unwrap();
                write(&mut w, FileKind::Pack, &n1, &b1);
                drop(w); // never closed
                if fault == "power loss" {
                    // The drive had streamed the records to the medium; no filemark follows.
                    d.write_filemarks(0).unwrap();
                    d.crash();
                } else {
                    drop(d); // st's close writes a filemark
                }
                d = VirtualDrive::open(dir.path(), DriveConfig::default()).unwrap();
            }
        }
        let (mut w, _) = TapeWriter::append(&mut d, JobId(3), REPO, "OFFSITE").unwrap();
        let (n2, b2) = pack(2, 500_000);
        write(&mut w, FileKind::Pack, &n2, &b2);
        let c3 = w.close(false, 3).unwrap();

        let s = scan(&mut d).unwrap();
        let names: Vec<&str> = s.trusted().iter().map(|p| p.entry.name.as_str()).collect();
        assert_eq!(names, [n0.as_str(), n2.as_str()], "{fault}");
        assert_eq!(s.unclosed(), [JobId(2)], "{fault}");
        assert!(s.problems.is_empty(), "{fault}: {:?}", s.problems);
        assert_eq!(read(&mut d, &c3.entries[0]), b2, "{fault}");
    }
}

#[test]
fn write_protected_foreign_and_unlabelled_tapes_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = drive_with(
        dir.path(),
        &[("A1", 1 << 30, 32 << 20), ("B1", 1 << 30, 32 << 20)],
    );
    assert!(matches!(
        TapeWriter::append(&mut d, JobId(1), REPO, "OFFSITE"),
        Err(WriteError::Label(ReadError::Blank))
    ));
    label_tape(&mut d, &label("A1", 0)).unwrap();
    let e = TapeWriter::append(&mut d, JobId(1), "other", "OFFSITE")
        .err()
        .unwrap();
    assert!(e.to_string().contains("belongs to repository r3p0"), "{e}");
    let e = TapeWriter::append(&mut d, JobId(1), REPO, "ONSITE")
        .err()
        .unwrap();
    assert!(e.to_string().contains("belongs to pool OFFSITE"), "{e}");
    d.unload().unwrap();
    d.set_write_protected(&CartridgeName::new("B1").unwrap(), true)
        .unwrap();
    d.load(&CartridgeName::new("B1").unwrap()).unwrap();
    assert!(matches!(
        label_tape(&mut d, &label("B1", 0)),
        Err(TapeError::WriteProtected)
    ));
}

#[test]
fn a_damaged_label_and_a_tape_of_something_else_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = drive_with(dir.path(), &[("A1", 1 << 30, 32 << 20)]);
    d.write_record(b"BAKFSTP1{\"file\":\"label\",\"format\":1,\"medi")
        .unwrap();
    d.write_filemarks(1).unwrap();
    assert!(matches!(
        read_label(&mut d),
        Err(ReadError::DamagedLabel(_))
    ));
    d.rewind().unwrap();
    d.write_record(b"VOL1A00001 tar archive").unwrap();
    d.write_filemarks(1).unwrap();
    assert!(matches!(read_label(&mut d), Err(ReadError::NotBakfs(_))));
    let mut newer = label("A1", 0);
    newer.format = LABEL_FORMAT + 1;
    label_tape(&mut d, &newer).unwrap();
    assert!(matches!(read_label(&mut d), Err(ReadError::NewerFormat(2))));
}

#[test]
fn a_damaged_record_names_the_entry_and_the_others_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = drive_with(dir.path(), &[("A1", 1 << 30, 32 << 20)]);
    label_tape(&mut d, &label("A1", 0)).unwrap();
    let mut w = TapeWriter::after_label(&mut d, JobId(1));
    let packs: Vec<_> = (0..3).map(|i| pack(i, 400_000)).collect();
    for (name, bytes) in &packs {
        write(&mut w, FileKind::Pack, name, bytes);
    }
    let c = w.close(false, 0).unwrap();
    d.set_faults(Faults {
        read_error_after: Some(1),
        ..Faults::default()
    });
    let e = read_entry(&mut d, &c.entries[1], &mut Vec::new()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!("pack {} (tape file 1, block 4)", packs[1].0)),
        "{msg}"
    );
    assert_eq!(read(&mut d, &c.entries[2]), packs[2].1);
    assert_eq!(read(&mut d, &c.entries[0]), packs[0].1);
}

#[test]
fn malicious_entry_names_on_a_tape_are_damage_never_paths() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = drive_with(dir.path(), &[("A1", 1 << 30, 32 << 20)]);
    label_tape(&mut d, &label("A1", 0)).unwrap();
    d.write_record(&Header::Data { job: JobId(1) }.encode())
        .unwrap();
    for name in ["../../etc/passwd", "/etc/shadow", "ab/../../x"] {
        let mut rec = b"BAKFSTE1".to_vec();
        rec.extend_from_slice(
            format!("{{\"kind\":\"pack\",\"name\":\"{name}\",\"size\":1}}").as_bytes(),
        );
        assert!(Entry::decode(&rec).is_err(), "{name}");
        d.write_record(&rec).unwrap();
        d.write_record(b"x").unwrap();
    }
    d.write_filemarks(1).unwrap();
    let s = scan(&mut d).unwrap();
    assert!(s.trusted().is_empty());
    assert!(s.jobs[&JobId(1)].found.is_empty());
    assert!(
        s.problems[0].contains("refusing file name"),
        "{:?}",
        s.problems
    );
    let lock = Entry {
        kind: FileKind::Lock,
        name: "ab".into(),
        size: 0,
    };
    assert!(Entry::decode(&lock.encode()).is_err());
}

/// The writer does not hash packs (readers check them against their names): a damaged source
/// reads back as damage, never as the file; a source shorter than it said is refused.
#[test]
fn a_file_that_does_not_match_its_name_reads_back_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = drive_with(dir.path(), &[("A1", 1 << 30, 32 << 20)]);
    label_tape(&mut d, &label("A1", 0)).unwrap();
    let mut w = TapeWriter::after_label(&mut d, JobId(1));
    let (name, mut bytes) = pack(0, 1000);
    bytes[10] ^= 1;
    let Placement::Written(bad) = write(&mut w, FileKind::Pack, &name, &bytes) else {
        panic!("not written");
    };
    assert_eq!(bad.blake3, name);
    let (n2, b2) = pack(1, 1000);
    assert!(matches!(
        w.write(FileKind::Pack, &n2, 2000, &mut &b2[..]),
        Err(WriteError::Source { .. })
    ));
    let (n3, b3) = pack(2, 1000);
    write(&mut w, FileKind::Pack, &n3, &b3);
    let c = w.close(false, 0).unwrap();
    assert_eq!(c.entries.len(), 2);
    let e = read_entry(&mut d, &c.entries[0], &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("its bytes do not match"), "{e}");
    assert_eq!(read(&mut d, &c.entries[1]), b3);
}

#[test]
fn checkpoint_catalogs_keep_what_a_job_wrote_before_it_died() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = drive_with(dir.path(), &[("A1", 1 << 30, 32 << 20)]);
    label_tape(&mut d, &label("A1", 0)).unwrap();
    let packs: Vec<_> = (0..5).map(|i| pack(i, 50_000)).collect();
    let mut w = TapeWriter::after_label(&mut d, JobId(1)).checkpoint_every(2);
    for (name, bytes) in &packs {
        write(&mut w, FileKind::Pack, name, bytes);
    }
    let c = w.close(false, 1).unwrap();
    assert_eq!(c.entries.len(), 5);
    let s = scan(&mut d).unwrap();
    let job = &s.jobs[&JobId(1)];
    // Two checkpoints (two entries each) and the closing catalog (the fifth).
    let sizes: Vec<(usize, bool)> = job
        .catalogs
        .iter()
        .map(|c| (c.entries.len(), c.closing))
        .collect();
    assert_eq!(sizes, [(2, false), (2, false), (1, true)]);
    let trusted: Vec<Placed> = s.trusted().into_iter().cloned().collect();
    assert_eq!(trusted, c.entries);
    for (p, (_, bytes)) in trusted.iter().zip(&packs) {
        assert_eq!(&read(&mut d, p), bytes);
    }

    // A job that dies after one checkpoint keeps the entries it listed, and only those.
    let (w, _) = TapeWriter::append(&mut d, JobId(2), REPO, "OFFSITE").unwrap();
    let mut w = w.checkpoint_every(2);
    let more: Vec<_> = (10..13).map(|i| pack(i, 50_000)).collect();
    for (name, bytes) in &more {
        write(&mut w, FileKind::Pack, name, bytes);
    }
    drop(w);
    d.write_filemarks(0).unwrap();
    d.crash();
    let mut d = VirtualDrive::open(dir.path(), DriveConfig::default()).unwrap();
    let (w, _) = TapeWriter::append(&mut d, JobId(3), REPO, "OFFSITE").unwrap();
    w.close(false, 3).unwrap();
    let s = scan(&mut d).unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.unclosed(), [JobId(2)]);
    let names: Vec<&str> = s.trusted().iter().map(|p| p.entry.name.as_str()).collect();
    let want: Vec<&str> = packs
        .iter()
        .chain(&more[..2])
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, want);
}
