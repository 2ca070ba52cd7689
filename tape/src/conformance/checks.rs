//! The checks. Each starts from a fresh scratch cartridge, says what it does step by step in
//! the messages of its expectations, and leaves the drive with a cartridge loaded.

use super::run::{expect, fails, ok, record, record_of_len, Run};
use super::{CheckError, Harness, Scratch};
use crate::{Errno, Faults, TapeError};

/// Files of several records, an empty file, read back with the filemarks between them, and
/// the end of data, which stays where it is.
pub(super) fn write_and_reread_across_filemarks(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    let s = ok("status of a fresh cartridge", r.h.drive().status())?;
    expect(
        "status of a fresh cartridge",
        s.loaded && s.online && !s.write_protected,
        "loaded, online, writable",
    )?;
    expect(
        "status of a fresh cartridge",
        s.beginning_of_tape,
        "at the beginning of tape",
    )?;
    r.expect_at("status of a fresh cartridge", 0, 0)?;
    let files = [20, 7, 0, 3];
    for (file, &n) in (0u64..).zip(&files) {
        r.write_file(file, n)?;
        r.expect_at(format_args!("status after file {file}"), file + 1, 0)?;
    }
    let rewound = r.h.drive().rewind();
    ok("rewinding", rewound)?;
    let s = ok("status after rewinding", r.h.drive().status())?;
    expect(
        "status after rewinding",
        s.beginning_of_tape && !s.end_of_data,
        "at the beginning of tape",
    )?;
    for (file, &n) in (0u64..).zip(&files) {
        r.expect_file(file, n)?;
    }
    r.expect_end_of_data("reading past the last filemark")?;
    r.expect_end_of_data("reading again at the end of data")?;
    let s = ok("status at the end of data", r.h.drive().status())?;
    expect(
        "status at the end of data",
        s.end_of_data,
        "at the end of data",
    )?;
    r.expect_in_file("status at the end of data", files.len() as u64, 0)
}

/// Rewind, space over files, space over records: each file:block lands on its record.
pub(super) fn reposition_to_file_and_block(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    for file in 0..3 {
        r.write_file(file, 12)?;
    }
    for (file, block) in [(0, 0), (2, 11), (1, 5), (0, 7), (2, 0), (1, 11)] {
        let step = format!("moving to file {file} block {block}");
        let d = r.h.drive();
        let moved = d.rewind().and_then(|()| d.space_files(file as i64));
        ok(&step, moved)?;
        let spaced = r.h.drive().space_records(block as i64);
        ok(&step, spaced)?;
        r.expect_at(&step, file, block)?;
        r.expect_record(file, block)?;
        r.expect_at(
            format_args!("after reading record ({file}, {block})"),
            file,
            block + 1,
        )?;
    }
    Ok(())
}

/// Close, open again (another process), move to the end of data and append a file: the tape
/// reads back whole.
pub(super) fn append_after_reopen(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    r.write_file(0, 5)?;
    r.write_file(1, 3)?;
    r.h.reopen()?;
    let s = ok("status after reopening", r.h.drive().status())?;
    expect(
        "status after reopening",
        s.loaded && s.online,
        "the cartridge still loaded",
    )?;
    r.expect_in_file("status after reopening (the position is kept)", 2, 0)?;
    let moved = r.h.drive().seek_end_of_data();
    ok("moving to the end of data", moved)?;
    let s = ok("status at the end of data", r.h.drive().status())?;
    expect(
        "status at the end of data",
        s.end_of_data && s.file == Some(2),
        "file 2, at the end of data",
    )?;
    r.write_file(2, 4)?;
    let rewound = r.h.drive().rewind();
    ok("rewinding", rewound)?;
    r.expect_file(0, 5)?;
    r.expect_file(1, 3)?;
    r.expect_file(2, 4)?;
    r.expect_end_of_data("reading past the appended file")
}

/// `MTBSF` leaves the tape just before the filemark, at the end of the previous file: one
/// record back is that file's last record. Spacing back past the first file stops at the
/// beginning of tape.
pub(super) fn backspace_file_and_reread_last_record(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    r.write_file(0, 10)?;
    r.write_file(1, 10)?;
    let back = r.h.drive().space_files(-1);
    ok("spacing back one file from the end of data", back)?;
    r.expect_in_file("after spacing back one file from the end of data", 1, 10)?;
    let back = r.h.drive().space_records(-1);
    ok("spacing back one record", back)?;
    r.expect_record(1, 9)?;
    r.expect_filemark("reading the filemark after the last record again")?;
    r.expect_at("after the filemark", 2, 0)?;

    let d = r.h.drive();
    let moved = d.rewind().and_then(|()| d.space_files(1));
    ok("moving to file 1", moved)?;
    r.expect_records(1, 0..3)?;
    let back = r.h.drive().space_files(-1);
    ok("spacing back one file from within file 1", back)?;
    r.expect_in_file("after spacing back from within file 1", 0, 10)?;
    let back = r.h.drive().space_records(-1);
    ok("spacing back one record into file 0", back)?;
    r.expect_record(0, 9)?;
    r.expect_filemark("reading the filemark after file 0")?;
    r.expect_record(1, 0)?;

    let back = r.h.drive().space_files(-2);
    fails(
        "spacing back two files from file 1",
        back,
        "beginning of tape",
        |e| matches!(e, TapeError::BeginningOfTape),
    )?;
    let s = ok(
        "status after running into the beginning",
        r.h.drive().status(),
    )?;
    expect(
        "status after running into the beginning",
        s.beginning_of_tape,
        "at the beginning of tape",
    )?;
    r.expect_record(0, 0)
}

/// `MTFSF` lands after the filemark; `MTFSR` over a filemark stops after it forward and
/// before it backward; both stop at the end of data and the beginning of tape.
pub(super) fn space_forward_over_files_and_records(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    for file in 0..4 {
        r.write_file(file, 5)?;
    }
    let d = r.h.drive();
    let moved = d.rewind().and_then(|()| d.space_files(2));
    ok("spacing forward two files", moved)?;
    r.expect_at("after spacing forward two files", 2, 0)?;
    r.expect_record(2, 0)?;
    let moved = r.h.drive().space_files(1);
    ok("spacing forward one file from within file 2", moved)?;
    r.expect_at("after spacing forward from within file 2", 3, 0)?;
    r.expect_record(3, 0)?;
    let d = r.h.drive();
    let moved = d.rewind().and_then(|()| d.space_files(0));
    ok("spacing over no files", moved)?;
    r.expect_at("after spacing over no files", 0, 0)?;
    let past = r.h.drive().space_files(10);
    fails(
        "spacing forward past the last file",
        past,
        "end of data",
        |e| matches!(e, TapeError::EndOfData),
    )?;
    let s = ok(
        "status after running into the end of data",
        r.h.drive().status(),
    )?;
    expect(
        "status after running into the end of data",
        s.end_of_data,
        "at the end of data",
    )?;
    r.expect_end_of_data("reading after running into the end of data")?;

    let d = r.h.drive();
    let moved = d.rewind().and_then(|()| d.space_records(3));
    ok("spacing forward three records", moved)?;
    r.expect_at("after spacing forward three records", 0, 3)?;
    r.expect_record(0, 3)?;
    let over = r.h.drive().space_records(5);
    fails(
        "spacing forward over the filemark",
        over,
        "a filemark",
        |e| matches!(e, TapeError::Filemark),
    )?;
    r.expect_at("after spacing forward into a filemark", 1, 0)?;
    r.expect_record(1, 0)?;
    let over = r.h.drive().space_records(-3);
    fails("spacing back over the filemark", over, "a filemark", |e| {
        matches!(e, TapeError::Filemark)
    })?;
    r.expect_in_file("after spacing back into a filemark", 0, 5)?;
    r.expect_filemark("reading the filemark spacing back stopped before")?;
    r.expect_record(1, 0)?;

    let d = r.h.drive();
    let back = d.rewind().and_then(|()| d.space_records(-1));
    fails(
        "spacing back at the beginning of tape",
        back,
        "beginning of tape",
        |e| matches!(e, TapeError::BeginningOfTape),
    )?;
    let d = r.h.drive();
    let past = d.seek_end_of_data().and_then(|()| d.space_records(1));
    fails(
        "spacing forward at the end of data",
        past,
        "end of data",
        |e| matches!(e, TapeError::EndOfData),
    )
    .map(drop)
}

/// A write in the middle of the tape is the new end of data: what followed is gone.
pub(super) fn writing_in_the_middle_truncates(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    for file in 0..3 {
        r.write_file(file, 3)?;
    }
    let d = r.h.drive();
    let moved = d
        .rewind()
        .and_then(|()| d.space_files(1))
        .and_then(|()| d.space_records(2));
    ok("moving to file 1 block 2", moved)?;
    let new = record_of_len(9, 9, 1000);
    let wrote = r.h.drive().write_record(&new);
    ok("writing over file 1 block 2", wrote)?;
    let wrote = r.h.drive().write_filemarks(1);
    ok("writing a filemark after it", wrote)?;
    let rewound = r.h.drive().rewind();
    ok("rewinding", rewound)?;
    r.expect_file(0, 3)?;
    r.expect_records(1, 0..2)?;
    r.expect_bytes("reading the record written in the middle", &new)?;
    r.expect_filemark("reading the filemark after it")?;
    r.expect_end_of_data("reading where file 2 was")
}

/// As `st`: a rewind after a write first ends the file with a filemark, and so does a
/// backward file space, whose count still means the filemarks that were there before.
pub(super) fn filemark_written_after_a_write(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    r.write_records(0, 0..2)?;
    let rewound = r.h.drive().rewind();
    ok("rewinding right after writing", rewound)?;
    r.expect_file(0, 2)?;
    r.expect_end_of_data("reading after the filemark the rewind wrote")?;
    r.write_records(1, 0..2)?;
    let back = r.h.drive().space_files(-1);
    ok("spacing back one file right after writing", back)?;
    let back = r.h.drive().space_records(-1);
    ok("spacing back one record", back)?;
    r.expect_record(0, 1)?;
    r.expect_filemark("reading the filemark after file 0")?;
    r.expect_file(1, 2)?;
    r.expect_end_of_data("reading after the filemark the space wrote")
}

/// A read buffer shorter than the record: `ENOMEM`, and the record is skipped. Records
/// cannot be empty.
pub(super) fn record_too_large_for_the_buffer(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    let big = record_of_len(0, 0, 1000);
    let small = record_of_len(0, 1, 10);
    let d = r.h.drive();
    let wrote = d
        .write_record(&big)
        .and_then(|()| d.write_record(&small))
        .and_then(|()| d.write_filemarks(1));
    ok("writing a 1000-byte and a 10-byte record", wrote)?;
    let empty = r.h.drive().write_record(&[]);
    let e = fails("writing an empty record", empty, "an invalid length", |e| {
        matches!(e, TapeError::InvalidRecordLength { len: 0 })
    })?;
    expect(
        "writing an empty record",
        e.errno() == Errno::EINVAL,
        "EINVAL",
    )?;
    let rewound = r.h.drive().rewind();
    ok("rewinding", rewound)?;
    let mut short = [0u8; 100];
    let read = r.h.drive().read_record(&mut short);
    let e = fails(
        "reading 1000 bytes into 100",
        read,
        "record too large",
        |e| {
            matches!(
                e,
                TapeError::RecordTooLarge {
                    size: None | Some(1000),
                    buffer: 100
                }
            )
        },
    )?;
    expect(
        "reading 1000 bytes into 100",
        e.errno() == Errno::ENOMEM,
        "ENOMEM",
    )?;
    r.expect_bytes("reading the record after the one too large", &small)?;
    r.expect_filemark("reading the filemark")
}

/// Unloaded, the drive has no cartridge (`ENOMEDIUM`); loaded again, it is at the beginning.
pub(super) fn unload_and_reload(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    r.write_file(0, 4)?;
    let unloaded = r.h.drive().unload();
    ok("unloading", unloaded)?;
    let s = ok("status of an empty drive", r.h.drive().status())?;
    expect(
        "status of an empty drive",
        !s.loaded && !s.online,
        "no cartridge, not online",
    )?;
    let wrote = r.h.drive().write_record(b"x");
    let e = fails("writing to an empty drive", wrote, "no cartridge", |e| {
        matches!(e, TapeError::NoCartridge)
    })?;
    expect(
        "writing to an empty drive",
        e.errno() == Errno::ENOMEDIUM,
        "ENOMEDIUM",
    )?;
    let rewound = r.h.drive().rewind();
    fails("rewinding an empty drive", rewound, "no cartridge", |e| {
        matches!(e, TapeError::NoCartridge)
    })?;
    r.h.reload(Scratch::A)?;
    let s = ok("status after loading again", r.h.drive().status())?;
    expect(
        "status after loading again",
        s.loaded && s.online && s.beginning_of_tape,
        "loaded at the beginning of tape",
    )?;
    r.expect_at("status after loading again", 0, 0)?;
    r.expect_file(0, 4)
}

/// Fill a small cartridge: the first write past the early warning is refused with `ENOSPC`,
/// a trailer still fits, then the physical end refuses records; the data goes on on the next
/// cartridge and both read back.
pub(super) fn early_warning_trailer_end_of_medium_next_cartridge(
    h: &mut dyn Harness,
) -> Result<(), CheckError> {
    const CAPACITY: u64 = 4 << 20;
    const EARLY_WARNING: u64 = 512 << 10;
    const REC: usize = 64 << 10;
    h.load_small_scratch(Scratch::A, CAPACITY, EARLY_WARNING)?;
    let mut r = Run::new(h);
    let limit = (CAPACITY / REC as u64) * 2;
    let mut written = 0u64;
    loop {
        match r.h.drive().write_record(&record_of_len(0, written, REC)) {
            Ok(()) => written += 1,
            Err(TapeError::EarlyWarning) => break,
            Err(e) => {
                return Err(CheckError::Tape {
                    step: format!("writing record (0, {written}) to fill the tape"),
                    source: e,
                })
            }
        }
        expect(
            "filling the tape",
            written < limit,
            "an early warning before twice the capacity",
        )?;
    }
    let e = TapeError::EarlyWarning;
    expect("the early warning", e.errno() == Errno::ENOSPC, "ENOSPC")?;
    expect(
        "the early warning",
        written > 0,
        "records written before it",
    )?;
    let s = ok("status after the early warning", r.h.drive().status())?;
    expect(
        "status after the early warning",
        s.early_warning,
        "past the early warning",
    )?;
    let trailer = format!("TRAILER: continued at record {written} on the next cartridge");
    let wrote = r.h.drive().write_record(trailer.as_bytes());
    ok("writing the trailer after the early warning", wrote)?;
    let wrote = r.h.drive().write_filemarks(1);
    ok("writing a filemark after the trailer", wrote)?;
    let mut filler = 0u64;
    loop {
        match r.h.drive().write_record(&record_of_len(1, filler, REC)) {
            Ok(()) => filler += 1,
            Err(TapeError::EndOfMedium) => break,
            Err(e) => {
                return Err(CheckError::Tape {
                    step: format!("writing filler record {filler} up to the physical end"),
                    source: e,
                })
            }
        }
        expect(
            "filling up to the physical end",
            filler < limit,
            "the end of medium",
        )?;
    }
    let again = r.h.drive().write_record(&record_of_len(1, filler, REC));
    fails(
        "writing again at the end of medium",
        again,
        "end of medium",
        |e| matches!(e, TapeError::EndOfMedium),
    )?;
    let unloaded = r.h.drive().unload();
    ok("unloading the full cartridge", unloaded)?;

    r.h.load_scratch(Scratch::B)?;
    for i in written..written + 5 {
        let wrote = r.h.drive().write_record(&record_of_len(0, i, REC));
        ok(
            format_args!("writing record (0, {i}) on the next cartridge"),
            wrote,
        )?;
    }
    let wrote = r.h.drive().write_filemarks(1);
    ok("writing the filemark on the next cartridge", wrote)?;
    let unloaded = r.h.drive().unload();
    ok("unloading the next cartridge", unloaded)?;

    r.h.reload(Scratch::A)?;
    for i in 0..written {
        r.expect_bytes(
            format_args!("reading record (0, {i}) on the first cartridge"),
            &record_of_len(0, i, REC),
        )?;
    }
    r.expect_bytes("reading the trailer", trailer.as_bytes())?;
    r.expect_filemark("reading the filemark after the trailer")?;
    for i in 0..filler {
        r.expect_bytes(
            format_args!("reading filler record {i}"),
            &record_of_len(1, i, REC),
        )?;
    }
    r.h.reload(Scratch::B)?;
    for i in written..written + 5 {
        r.expect_bytes(
            format_args!("reading record (0, {i}) on the next cartridge"),
            &record_of_len(0, i, REC),
        )?;
    }
    r.expect_filemark("reading the filemark on the next cartridge")
}

/// A write-protected cartridge reads but refuses writes and filemarks (`EACCES`).
pub(super) fn write_protection(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    r.write_file(0, 3)?;
    let unloaded = r.h.drive().unload();
    ok("unloading", unloaded)?;
    r.h.set_write_protected(Scratch::A, true)?;
    r.h.reload(Scratch::A)?;
    let s = ok("status of a protected cartridge", r.h.drive().status())?;
    expect(
        "status of a protected cartridge",
        s.write_protected,
        "write-protected",
    )?;
    let wrote = r.h.drive().write_record(b"x");
    let e = fails(
        "writing to a protected cartridge",
        wrote,
        "write-protected",
        |e| matches!(e, TapeError::WriteProtected),
    )?;
    expect(
        "writing to a protected cartridge",
        e.errno() == Errno::EACCES,
        "EACCES",
    )?;
    let wrote = r.h.drive().write_filemarks(1);
    fails(
        "writing a filemark to a protected cartridge",
        wrote,
        "write-protected",
        |e| matches!(e, TapeError::WriteProtected),
    )?;
    r.expect_file(0, 3)?;
    let unloaded = r.h.drive().unload();
    ok("unloading", unloaded)?;
    r.h.set_write_protected(Scratch::A, false)?;
    r.h.reload(Scratch::A)?;
    let moved = r.h.drive().seek_end_of_data();
    ok("moving to the end of data", moved)?;
    r.write_file(1, 2)?;
    let rewound = r.h.drive().rewind();
    ok("rewinding", rewound)?;
    r.expect_file(0, 3)?;
    r.expect_file(1, 2)
}

/// A drive that goes offline fails everything (`EIO`) until the cartridge is loaded again;
/// what it accepted before stays.
pub(super) fn drive_going_offline(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    h.inject(Faults {
        offline_after_writes: Some(2),
        ..Faults::default()
    })?;
    let mut r = Run::new(h);
    r.write_records(0, 0..2)?;
    let wrote = r.h.drive().write_record(&record(0, 2));
    let e = fails("writing as the drive goes offline", wrote, "offline", |e| {
        matches!(e, TapeError::Offline)
    })?;
    expect(
        "writing as the drive goes offline",
        e.errno() == Errno::EIO,
        "EIO",
    )?;
    let s = ok("status of an offline drive", r.h.drive().status())?;
    expect(
        "status of an offline drive",
        s.loaded && !s.online,
        "loaded but not online",
    )?;
    let rewound = r.h.drive().rewind();
    fails("rewinding an offline drive", rewound, "offline", |e| {
        matches!(e, TapeError::Offline)
    })?;
    let mut buf = [0u8; 16];
    let read = r.h.drive().read_record(&mut buf);
    fails("reading on an offline drive", read, "offline", |e| {
        matches!(e, TapeError::Offline)
    })?;
    r.h.reload(Scratch::A)?;
    let s = ok("status after loading again", r.h.drive().status())?;
    expect(
        "status after loading again",
        s.online && s.beginning_of_tape,
        "online at the beginning of tape",
    )?;
    r.expect_records(0, 0..2)?;
    r.expect_end_of_data("reading where the refused record would be")
}

/// A read error (`EIO`) leaves the position: reading again gets the record.
pub(super) fn injected_read_error(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    r.write_file(0, 4)?;
    let rewound = r.h.drive().rewind();
    ok("rewinding", rewound)?;
    r.h.inject(Faults {
        read_error_after: Some(2),
        ..Faults::default()
    })?;
    r.expect_records(0, 0..2)?;
    let mut buf = vec![0u8; super::run::BUF_LEN];
    let read = r.h.drive().read_record(&mut buf);
    let e = fails(
        "reading record (0, 2) with a read error",
        read,
        "an I/O error",
        |e| matches!(e, TapeError::Io { .. }),
    )?;
    expect(
        "the read error",
        e.errno() == Errno::EIO && e.is_injected(),
        "an injected EIO",
    )?;
    r.expect_records(0, 2..4)?;
    r.expect_filemark("reading the filemark")
}

/// A write error (`EIO`) writes nothing: writing the record again puts it in its place.
pub(super) fn injected_write_error(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    h.inject(Faults {
        write_error_after: Some(1),
        ..Faults::default()
    })?;
    let mut r = Run::new(h);
    r.write_records(0, 0..1)?;
    let wrote = r.h.drive().write_record(&record(0, 1));
    let e = fails(
        "writing record (0, 1) with a write error",
        wrote,
        "an I/O error",
        |e| matches!(e, TapeError::Io { .. }),
    )?;
    expect(
        "the write error",
        e.errno() == Errno::EIO && e.is_injected(),
        "an injected EIO",
    )?;
    r.write_records(0, 1..2)?;
    let wrote = r.h.drive().write_filemarks(1);
    ok("writing the filemark", wrote)?;
    let rewound = r.h.drive().rewind();
    ok("rewinding", rewound)?;
    r.expect_file(0, 2)?;
    r.expect_end_of_data("reading after the filemark")
}

/// A record torn by a crash is gone when the drive opens again; what came before stays and
/// appending goes on from there.
pub(super) fn torn_last_record_dropped_on_reopen(h: &mut dyn Harness) -> Result<(), CheckError> {
    h.load_scratch(Scratch::A)?;
    let mut r = Run::new(h);
    r.write_file(0, 3)?;
    r.write_records(1, 0..1)?;
    r.h.crash_mid_record(&record_of_len(1, 1, 4096))?;
    let rewound = r.h.drive().rewind();
    ok("rewinding after the crash", rewound)?;
    r.expect_file(0, 3)?;
    r.expect_records(1, 0..1)?;
    r.expect_end_of_data("reading where the torn record was")?;
    let moved = r.h.drive().seek_end_of_data();
    ok("moving to the end of data", moved)?;
    r.write_records(1, 1..2)?;
    let wrote = r.h.drive().write_filemarks(1);
    ok("writing the filemark", wrote)?;
    let rewound = r.h.drive().rewind();
    ok("rewinding", rewound)?;
    r.expect_file(0, 3)?;
    r.expect_file(1, 2)?;
    r.expect_end_of_data("reading after the appended record")
}
