//! The translation of what `st` says into the [`TapeDrive`] contract, over a scripted device
//! that answers as `st` does with an LTO drive.

use std::collections::VecDeque;
use std::path::Path;

use nix::errno::Errno;

use super::ioctl::{self, MtGet};
use super::{status_of, Device, StDrive};
use crate::drive::{TapeDrive, TapeError};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Read,
    Write(usize),
    Op(libc::c_short, libc::c_int),
    Get,
}

/// Answers each call with the next scripted reply of its kind; `get` answers `status` (a
/// loaded, online drive unless a test says otherwise).
#[derive(Default)]
struct Script {
    transfers: VecDeque<Result<usize, Errno>>,
    ops: VecDeque<Result<(), Errno>>,
    status: libc::c_long,
    calls: Vec<Call>,
}

impl Device for Script {
    fn read(&mut self, _buf: &mut [u8]) -> Result<usize, Errno> {
        self.calls.push(Call::Read);
        self.transfers.pop_front().expect("a scripted read")
    }
    fn write(&mut self, rec: &[u8]) -> Result<usize, Errno> {
        self.calls.push(Call::Write(rec.len()));
        self.transfers.pop_front().expect("a scripted write")
    }
    fn op(&mut self, op: libc::c_short, count: libc::c_int) -> Result<(), Errno> {
        self.calls.push(Call::Op(op, count));
        self.ops.pop_front().unwrap_or(Ok(()))
    }
    fn get(&mut self) -> Result<MtGet, Errno> {
        self.calls.push(Call::Get);
        Ok(MtGet {
            mt_gstat: self.status,
            mt_fileno: 3,
            mt_blkno: -1,
            ..MtGet::default()
        })
    }
}

const ONLINE: libc::c_long = ioctl::GMT_ONLINE;

fn drive(transfers: &[Result<usize, Errno>], status: libc::c_long) -> StDrive<Script> {
    let dev = Script {
        transfers: transfers.iter().copied().collect(),
        status,
        ..Script::default()
    };
    StDrive::with_device(dev, Path::new("/dev/nst0"), false)
}

#[test]
fn variable_block_mode_is_set_once_before_the_first_transfer() {
    let mut d = drive(&[Ok(4), Ok(4), Ok(4)], ONLINE);
    d.write_record(b"abcd").unwrap();
    d.write_record(b"efgh").unwrap();
    let mut buf = [0; 16];
    assert_eq!(d.read_record(&mut buf).unwrap(), 4);
    assert_eq!(
        d.dev.calls,
        [
            Call::Op(ioctl::MTSETBLK, 0),
            Call::Write(4),
            Call::Write(4),
            Call::Read
        ]
    );
}

#[test]
fn a_new_cartridge_gets_variable_block_mode_again() {
    let mut d = drive(&[Ok(1), Ok(1)], ONLINE);
    d.write_record(b"a").unwrap();
    d.unload().unwrap();
    d.write_record(b"b").unwrap();
    let setblk = d
        .dev
        .calls
        .iter()
        .filter(|c| **c == Call::Op(ioctl::MTSETBLK, 0))
        .count();
    assert_eq!(setblk, 2);
}

#[test]
fn the_first_enospc_is_the_early_warning_then_writes_go_on_until_the_end() {
    let mut d = drive(
        &[
            Err(Errno::ENOSPC),
            // st refuses the next write past the warning, and takes the retry.
            Err(Errno::ENOSPC),
            Ok(3),
            Ok(3),
            // The physical end: refused twice.
            Err(Errno::ENOSPC),
            Err(Errno::ENOSPC),
        ],
        ONLINE | ioctl::GMT_EOT,
    );
    assert!(matches!(
        d.write_record(b"abc"),
        Err(TapeError::EarlyWarning)
    ));
    d.write_record(b"abc").unwrap();
    d.write_record(b"abc").unwrap();
    assert!(matches!(
        d.write_record(b"abc"),
        Err(TapeError::EndOfMedium)
    ));
}

#[test]
fn the_warning_is_given_again_after_a_rewind() {
    let mut d = drive(&[Err(Errno::ENOSPC), Err(Errno::ENOSPC)], ONLINE);
    assert!(matches!(d.write_record(b"x"), Err(TapeError::EarlyWarning)));
    d.rewind().unwrap();
    assert!(matches!(d.write_record(b"x"), Err(TapeError::EarlyWarning)));
}

#[test]
fn a_read_of_nothing_is_a_filemark_unless_the_status_says_end_of_data() {
    let mut buf = [0; 8];
    let mut d = drive(&[Ok(0)], ONLINE);
    assert_eq!(d.read_record(&mut buf).unwrap(), 0);
    let mut d = drive(&[Ok(0)], ONLINE | ioctl::GMT_EOD);
    assert!(matches!(d.read_record(&mut buf), Err(TapeError::EndOfData)));
    let mut d = drive(&[Err(Errno::EIO)], ONLINE | ioctl::GMT_EOD);
    assert!(matches!(d.read_record(&mut buf), Err(TapeError::EndOfData)));
}

#[test]
fn eio_is_told_apart_by_the_status() {
    let mut buf = [0; 8];
    let mut d = drive(&[Err(Errno::EIO)], 0);
    assert!(matches!(d.read_record(&mut buf), Err(TapeError::Offline)));
    let mut d = drive(&[Err(Errno::EIO)], ioctl::GMT_DR_OPEN);
    assert!(matches!(
        d.read_record(&mut buf),
        Err(TapeError::NoCartridge)
    ));
    let mut d = drive(&[Err(Errno::EIO)], ONLINE);
    let e = d.read_record(&mut buf).unwrap_err();
    assert!(matches!(e, TapeError::Io { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "reading a record (/dev/nst0): Input/output error (os error 5)"
    );
}

#[test]
fn a_record_longer_than_the_buffer_is_enomem() {
    let mut d = drive(&[Err(Errno::ENOMEM)], ONLINE);
    let mut buf = [0; 8];
    assert!(matches!(
        d.read_record(&mut buf),
        Err(TapeError::RecordTooLarge {
            size: None,
            buffer: 8
        })
    ));
}

#[test]
fn records_the_drive_cannot_take_are_refused_before_the_device_sees_them() {
    let mut d = drive(&[], ONLINE);
    assert!(matches!(
        d.write_record(b""),
        Err(TapeError::InvalidRecordLength { len: 0 })
    ));
    let big = vec![0; crate::MAX_RECORD_LEN + 1];
    assert!(matches!(
        d.write_record(&big),
        Err(TapeError::InvalidRecordLength { .. })
    ));
    assert!(d.dev.calls.is_empty());
}

#[test]
fn a_write_protected_cartridge_opened_read_only_refuses_writes() {
    let mut d = StDrive::with_device(Script::default(), Path::new("/dev/nst0"), true);
    assert!(matches!(
        d.write_record(b"x"),
        Err(TapeError::WriteProtected)
    ));
    assert!(matches!(
        d.write_filemarks(1),
        Err(TapeError::WriteProtected)
    ));
    d.write_filemarks(0).unwrap();
    let mut d = drive(&[Err(Errno::EACCES)], ONLINE);
    assert!(matches!(
        d.write_record(b"x"),
        Err(TapeError::WriteProtected)
    ));
}

#[test]
fn spacing_maps_to_the_mt_operations_and_their_ends() {
    let mut d = drive(&[], ONLINE);
    d.space_files(2).unwrap();
    d.space_files(-1).unwrap();
    d.space_records(5).unwrap();
    d.space_records(-3).unwrap();
    d.space_files(0).unwrap();
    d.write_filemarks(2).unwrap();
    d.seek_end_of_data().unwrap();
    assert_eq!(
        d.dev.calls,
        [
            Call::Op(ioctl::MTFSF, 2),
            Call::Op(ioctl::MTBSF, 1),
            Call::Op(ioctl::MTFSR, 5),
            Call::Op(ioctl::MTBSR, 3),
            Call::Op(ioctl::MTWEOF, 2),
            Call::Op(ioctl::MTEOM, 1),
        ]
    );

    let mut d = drive(&[], ONLINE | ioctl::GMT_EOD);
    d.dev.ops.push_back(Err(Errno::EIO));
    assert!(matches!(d.space_files(3), Err(TapeError::EndOfData)));
    let mut d = drive(&[], ONLINE | ioctl::GMT_BOT);
    d.dev.ops.push_back(Err(Errno::EIO));
    assert!(matches!(d.space_files(-3), Err(TapeError::BeginningOfTape)));
    let mut d = drive(&[], ONLINE | ioctl::GMT_EOF);
    d.dev.ops.push_back(Err(Errno::EIO));
    assert!(matches!(d.space_records(9), Err(TapeError::Filemark)));
    let mut d = drive(&[], ONLINE);
    d.dev.ops.push_back(Err(Errno::ENOSPC));
    assert!(matches!(d.write_filemarks(1), Err(TapeError::EndOfMedium)));
}

#[test]
fn status_reads_the_generic_bits_and_unknown_positions() {
    let g = MtGet {
        mt_gstat: ONLINE | ioctl::GMT_WR_PROT | ioctl::GMT_BOT,
        mt_fileno: 0,
        mt_blkno: 0,
        ..MtGet::default()
    };
    let s = status_of(&g);
    assert!(s.loaded && s.online && s.write_protected && s.beginning_of_tape);
    assert!(!s.end_of_data && !s.early_warning);
    assert_eq!((s.file, s.block), (Some(0), Some(0)));

    let g = MtGet {
        mt_gstat: ioctl::GMT_DR_OPEN | ONLINE,
        mt_fileno: -1,
        mt_blkno: -1,
        ..MtGet::default()
    };
    let s = status_of(&g);
    assert!(!s.loaded && !s.online);
    assert_eq!((s.file, s.block), (None, None));

    let mut d = drive(&[], ONLINE | ioctl::GMT_EOD | ioctl::GMT_EOT);
    let s = d.status().unwrap();
    assert!(s.end_of_data && s.early_warning);
    assert_eq!((s.file, s.block), (Some(3), None));
}

#[test]
fn opening_a_device_that_is_not_there_names_it() {
    let e = StDrive::open(Path::new("/nonexistent/nst0")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("opening the drive (/nonexistent/nst0)"),
        "{e}"
    );
}
