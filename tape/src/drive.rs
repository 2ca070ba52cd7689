//! The tape drive as bakfs sees it: [`TapeDrive`], modelled on what the Linux `st` driver does
//! with an LTO drive on its non-rewinding device (`/dev/nst0`) in variable-block mode, so that
//! code tested against the [virtual drive](crate::VirtualDrive) behaves the same on hardware.
//!
//! Where `st` is awkward for a caller the trait says one thing and the `st` implementation owes
//! the translation; each method's documentation says where that is (early warning, end of
//! data, file and block numbers it does not know). An implementation over `st` puts the drive
//! in variable-block mode (`MTSETBLK 0`) when it opens it: one `write(2)`, one record.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::Serialize;

use crate::CartridgeName;

/// The largest record a drive takes: READ(6) and WRITE(6) carry a 24-bit transfer length, so
/// no variable-block record on an LTO tape is longer (and `st` refuses longer writes).
pub const MAX_RECORD_LEN: usize = 0xFF_FFFF;

/// A tape drive with a cartridge in it, or not.
///
/// The position is a file number (files are separated by filemarks, file 0 starts at the
/// beginning of tape) and a block number (the record within the file, from 0). The end of
/// data is the position after the last thing written: nothing can be read there, and writing
/// anywhere makes that place the new end of data.
///
/// Durability: [`write_filemarks`](TapeDrive::write_filemarks) is the sync point. When it
/// returns `Ok`, every record written before it is on the medium; records written since the
/// last filemark may still be in buffers (the driver's, the drive's) and a crash can lose
/// them, and an error in writing them may only be reported by a later call.
///
/// Like `st`, a drive writes one filemark of its own when the last operation was a
/// [`write_record`](TapeDrive::write_record) and the tape is then rewound, unloaded, spaced
/// backward over files, or the drive is closed (dropped), so that a file is never left without
/// its filemark. Writers should still end each file with `write_filemarks` themselves.
pub trait TapeDrive {
    /// The drive's status now (`MTIOCGET`). It does not fail because no cartridge is loaded
    /// or the drive is offline: it says so, so a caller can poll for a cartridge (loading one
    /// raises no uevent).
    ///
    /// # Errors
    /// Only when the drive cannot be asked at all ([`TapeError::Io`]).
    fn status(&mut self) -> Result<Status, TapeError>;

    /// Writes one record of `rec.len()` bytes (variable-block mode: one `write(2)`, one record)
    /// at the position, which then moves after it.
    ///
    /// Writing anywhere but at the end of data first erases everything after the position:
    /// the end of data moves there.
    ///
    /// Early warning: a write that starts before the early-warning point is written even if it
    /// crosses it. The first write attempted past the point returns
    /// [`TapeError::EarlyWarning`] and writes nothing; later writes succeed (room for a
    /// trailer) until the physical end, where a record that does not fit returns
    /// [`TapeError::EndOfMedium`] and writes nothing. The warning is given once per pass: it
    /// is given again only after the position has been moved back before the point.
    /// (`st` itself returns `ENOSPC` without writing on every second write past the point;
    /// its implementation reports the first as `EarlyWarning` and retries the others once.)
    ///
    /// # Errors
    /// [`TapeError::NoCartridge`], [`TapeError::Offline`], [`TapeError::WriteProtected`],
    /// [`TapeError::InvalidRecordLength`] (empty or over [`MAX_RECORD_LEN`]),
    /// [`TapeError::EarlyWarning`], [`TapeError::EndOfMedium`], [`TapeError::Io`].
    fn write_record(&mut self, rec: &[u8]) -> Result<(), TapeError>;

    /// Reads the next record into `buf` and returns its length; the position moves after it.
    ///
    /// - `Ok(0)`: a filemark; the position moves past it, to block 0 of the next file.
    /// - [`TapeError::EndOfData`]: nothing more is written; the position stays at the end of
    ///   data, and reading again says the same. (`st` returns 0 once at the end of data when
    ///   the last read crossed a filemark and `EIO` otherwise; its implementation tells the
    ///   two apart by `GMT_EOD`. A typed end also keeps an empty file, two filemarks in a row,
    ///   from reading as the end.)
    /// - [`TapeError::RecordTooLarge`]: the record is longer than `buf`; nothing is returned
    ///   and the position moves past the record (as `st`'s `ENOMEM`).
    ///
    /// # Errors
    /// The above, and [`TapeError::NoCartridge`], [`TapeError::Offline`],
    /// [`TapeError::Io`] (a medium error).
    fn read_record(&mut self, buf: &mut [u8]) -> Result<usize, TapeError>;

    /// Writes `n` filemarks at the position (erasing what follows, like a write) and waits
    /// until everything written before them is on the medium: an error in writing earlier
    /// records is reported here at the latest. `n == 0` writes nothing and only does that.
    /// Filemarks past the early-warning point are written while there is room.
    ///
    /// # Errors
    /// [`TapeError::NoCartridge`], [`TapeError::Offline`], [`TapeError::WriteProtected`]
    /// (`n > 0`), [`TapeError::EndOfMedium`], [`TapeError::Io`].
    fn write_filemarks(&mut self, n: u32) -> Result<(), TapeError>;

    /// Spaces over `n` filemarks (`MTFSF` for `n > 0`, `MTBSF` for `n < 0`; 0 does nothing).
    ///
    /// Forward, the position ends just after the n-th filemark: block 0 of a later file.
    /// Backward, it ends just BEFORE the n-th filemark crossed, that is at the end of the
    /// previous file (its last record is one `space_records(-1)` away), as `st`'s `MTBSF`;
    /// `st` then no longer knows the block number ([`Status::block`] is `None`).
    ///
    /// # Errors
    /// [`TapeError::EndOfData`] when fewer than `n` filemarks follow (the position is then the
    /// end of data); [`TapeError::BeginningOfTape`] when fewer than `-n` precede (the position
    /// is then the beginning of tape); [`TapeError::NoCartridge`], [`TapeError::Offline`],
    /// [`TapeError::Io`].
    fn space_files(&mut self, n: i64) -> Result<(), TapeError>;

    /// Spaces over `n` records within the current file (`MTFSR` for `n > 0`, `MTBSR` for
    /// `n < 0`; 0 does nothing).
    ///
    /// # Errors
    /// [`TapeError::Filemark`] when a filemark comes first: the drive crosses it and stops,
    /// so forward the position is just after it (block 0 of the next file) and backward just
    /// before it (the end of the previous file, block number unknown to `st`).
    /// [`TapeError::EndOfData`] forward at the end of data (the position is
    /// the end of data), [`TapeError::BeginningOfTape`] backward at the beginning of tape;
    /// [`TapeError::NoCartridge`], [`TapeError::Offline`], [`TapeError::Io`].
    fn space_records(&mut self, n: i64) -> Result<(), TapeError>;

    /// Rewinds to the beginning of tape (`MTREW`): file 0, block 0.
    ///
    /// # Errors
    /// [`TapeError::NoCartridge`], [`TapeError::Offline`], [`TapeError::Io`].
    fn rewind(&mut self) -> Result<(), TapeError>;

    /// Moves to the end of data (`MTEOM`), to append. The file number is then known (`st`
    /// spaces over the filemarks to get there) but not the block number.
    ///
    /// # Errors
    /// [`TapeError::NoCartridge`], [`TapeError::Offline`], [`TapeError::Io`].
    fn seek_end_of_data(&mut self) -> Result<(), TapeError>;

    /// Rewinds and unloads (ejects) the cartridge (`MTOFFL`). Afterwards the drive has no
    /// cartridge: operations return [`TapeError::NoCartridge`].
    ///
    /// # Errors
    /// [`TapeError::NoCartridge`], [`TapeError::Offline`], [`TapeError::Io`].
    fn unload(&mut self) -> Result<(), TapeError>;
}

/// What [`TapeDrive::status`] reports (the `GMT_*` bits and position of `MTIOCGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Status {
    /// A cartridge is in the drive (`!GMT_DR_OPEN`).
    pub loaded: bool,
    /// The drive is ready for operations (`GMT_ONLINE`): loaded and not failed.
    pub online: bool,
    /// The cartridge is write-protected (`GMT_WR_PROT`).
    pub write_protected: bool,
    /// The file number of the position (`mt_fileno`), `None` when the driver does not know it.
    pub file: Option<u64>,
    /// The block (record) number within the file (`mt_blkno`), `None` when the driver does not
    /// know it: `st` loses it on spacing backward over a filemark and at `MTEOM`, and finds it
    /// again at the next filemark crossed or written, or at a rewind.
    pub block: Option<u64>,
    /// At the beginning of tape (`GMT_BOT`).
    pub beginning_of_tape: bool,
    /// At the end of data (`GMT_EOD`). `st` only reports it once an operation ran into the end
    /// of data (`MTEOM`, a read or a space), not right after a write.
    pub end_of_data: bool,
    /// Past the early-warning point (`GMT_EOT`): the tape is nearly full.
    pub early_warning: bool,
}

/// What a drive operation was doing when the host failed it; named in [`TapeError::Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Opening the drive or its library.
    Open,
    /// Reading the drive's status.
    Status,
    /// Reading a record.
    ReadRecord,
    /// Writing a record.
    WriteRecord,
    /// Writing filemarks (and flushing what was written before them).
    WriteFilemarks,
    /// Spacing over files or records.
    Space,
    /// Rewinding.
    Rewind,
    /// Moving to the end of data.
    SeekEndOfData,
    /// Loading a cartridge.
    Load,
    /// Unloading a cartridge.
    Unload,
    /// Closing the drive.
    Close,
    /// Saving the drive's state (virtual drive).
    SaveState,
    /// Creating, listing, removing or write-protecting cartridges (virtual library).
    Library,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Open => "opening the drive",
            Operation::Status => "reading the drive status",
            Operation::ReadRecord => "reading a record",
            Operation::WriteRecord => "writing a record",
            Operation::WriteFilemarks => "writing filemarks",
            Operation::Space => "spacing",
            Operation::Rewind => "rewinding",
            Operation::SeekEndOfData => "moving to the end of data",
            Operation::Load => "loading a cartridge",
            Operation::Unload => "unloading the cartridge",
            Operation::Close => "closing the drive",
            Operation::SaveState => "saving the drive state",
            Operation::Library => "managing the cartridge library",
        })
    }
}

/// The error of a fault injected on purpose into a drive (virtual drive, tests). It travels as
/// the source of a [`TapeError::Io`], so that the caller's path for a real `EIO` is the one
/// exercised; [`TapeError::is_injected`] tells it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected fault (EIO)")]
pub struct InjectedFault;

/// Why a tape operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapeError {
    /// No cartridge is in the drive (`ENOMEDIUM`).
    #[error("no cartridge in the drive")]
    NoCartridge,
    /// The drive is not ready (`EIO`): it went offline; reload the cartridge.
    #[error("the drive is offline (not ready); reload the cartridge")]
    Offline,
    /// Writing to a write-protected cartridge (`EACCES`).
    #[error("the cartridge is write-protected")]
    WriteProtected,
    /// The first write past the early-warning point (`ENOSPC`); nothing was written. There is
    /// room left for a trailer: close the tape's contents and continue on the next cartridge.
    #[error("early warning: the tape is nearly full (the record was not written)")]
    EarlyWarning,
    /// No room left before the physical end of the tape (`ENOSPC`); nothing was written.
    #[error("end of medium: no room left on the tape (nothing was written)")]
    EndOfMedium,
    /// At the end of data: nothing more to read or space over (`EIO`, a blank check).
    #[error("end of data")]
    EndOfData,
    /// Spacing backward ran into the beginning of tape (`EIO`).
    #[error("beginning of tape")]
    BeginningOfTape,
    /// Spacing over records ran into a filemark (`EIO`).
    #[error("a filemark stopped the spacing over records")]
    Filemark,
    /// The next record is longer than the read buffer (`ENOMEM`); the position moved past it.
    #[error("record {} is longer than the {buffer}-byte buffer", size.map_or_else(|| "(size unknown)".to_string(), |s| format!("of {s} bytes")))]
    RecordTooLarge {
        /// The record's length, when the drive says (`st` does not).
        size: Option<u64>,
        /// The length of the buffer given.
        buffer: usize,
    },
    /// A record length the drive cannot write (`EINVAL`): empty or over [`MAX_RECORD_LEN`].
    #[error("cannot write a record of {len} bytes (1 to {MAX_RECORD_LEN} bytes)")]
    InvalidRecordLength {
        /// The length asked for.
        len: usize,
    },
    /// The drive is open elsewhere (`EBUSY`): a tape drive has one user at a time.
    #[error("the drive {} is in use by another process", path.display())]
    Busy {
        /// The device or library.
        path: PathBuf,
    },
    /// The host failed the operation (`EIO`), or a fault was injected ([`InjectedFault`]).
    #[error("{op} ({}): {source}", path.display())]
    Io {
        /// What was being done.
        op: Operation,
        /// The device or file it was done on.
        path: PathBuf,
        /// The host's error.
        #[source]
        source: io::Error,
    },
    /// A virtual cartridge that is not one, or is damaged other than a crash leaves it
    /// (`EIO`).
    #[error("{}: not a valid virtual cartridge at byte {offset}: {reason}", path.display())]
    Corrupt {
        /// The cartridge's file.
        path: PathBuf,
        /// Where in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A cartridge name that cannot be one (`EINVAL`).
    #[error("invalid cartridge name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'")]
    InvalidCartridgeName(String),
    /// No such cartridge in the virtual library (`ENOENT`).
    #[error("no cartridge {0} in the library")]
    NoSuchCartridge(CartridgeName),
    /// The cartridge exists already (`EEXIST`).
    #[error("cartridge {0} exists already")]
    CartridgeExists(CartridgeName),
    /// The drive holds a cartridge already (`EBUSY`): unload it first.
    #[error("the drive holds cartridge {0}: unload it first")]
    DriveOccupied(CartridgeName),
    /// A setting that cannot work (`EINVAL`).
    #[error("invalid setting: {0}")]
    InvalidArgument(String),
}

impl TapeError {
    /// The `errno` the Linux `st` driver returns for this condition, for messages and tests.
    #[must_use]
    pub fn errno(&self) -> Errno {
        match self {
            TapeError::NoCartridge => Errno::ENOMEDIUM,
            TapeError::WriteProtected => Errno::EACCES,
            TapeError::EarlyWarning | TapeError::EndOfMedium => Errno::ENOSPC,
            TapeError::RecordTooLarge { .. } => Errno::ENOMEM,
            TapeError::Busy { .. } | TapeError::DriveOccupied(_) => Errno::EBUSY,
            TapeError::InvalidRecordLength { .. }
            | TapeError::InvalidCartridgeName(_)
            | TapeError::InvalidArgument(_) => Errno::EINVAL,
            TapeError::NoSuchCartridge(_) => Errno::ENOENT,
            TapeError::CartridgeExists(_) => Errno::EEXIST,
            // The host's own errno (ENOSPC on the disk under a virtual cartridge, say) is not
            // the tape's: a failed transfer is EIO to st's callers.
            TapeError::Offline
            | TapeError::EndOfData
            | TapeError::BeginningOfTape
            | TapeError::Filemark
            | TapeError::Io { .. }
            | TapeError::Corrupt { .. } => Errno::EIO,
        }
    }

    /// Whether this is a fault injected on purpose ([`InjectedFault`]).
    #[must_use]
    pub fn is_injected(&self) -> bool {
        match self {
            TapeError::Io { source, .. } => source
                .get_ref()
                .is_some_and(|e| e.downcast_ref::<InjectedFault>().is_some()),
            _ => false,
        }
    }
}

/// The `errno` values of the `st` driver that [`TapeError::errno`] gives (Linux numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Errno {
    /// No such file (a virtual cartridge).
    ENOENT,
    /// I/O error: medium error, blank check, a filemark or the beginning of tape in a space.
    EIO,
    /// The read buffer is shorter than the record.
    ENOMEM,
    /// Writing to a write-protected tape.
    EACCES,
    /// The cartridge exists already.
    EEXIST,
    /// The device is in use.
    EBUSY,
    /// Invalid argument.
    EINVAL,
    /// Early warning or end of medium.
    ENOSPC,
    /// Opening a write-protected tape for writing.
    EROFS,
    /// No cartridge in the drive.
    ENOMEDIUM,
}

impl Errno {
    /// The number (Linux, all architectures bakfs builds for).
    #[must_use]
    pub fn code(self) -> i32 {
        match self {
            Errno::ENOENT => 2,
            Errno::EIO => 5,
            Errno::ENOMEM => 12,
            Errno::EACCES => 13,
            Errno::EBUSY => 16,
            Errno::EEXIST => 17,
            Errno::EINVAL => 22,
            Errno::ENOSPC => 28,
            Errno::EROFS => 30,
            Errno::ENOMEDIUM => 123,
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_codes_are_linux_ones() {
        for e in [
            Errno::ENOSPC,
            Errno::EIO,
            Errno::EACCES,
            Errno::ENOMEDIUM,
            Errno::ENOMEM,
        ] {
            let msg = io::Error::from_raw_os_error(e.code()).to_string();
            let expected = match e {
                Errno::ENOSPC => "No space left on device",
                Errno::EIO => "Input/output error",
                Errno::EACCES => "Permission denied",
                Errno::ENOMEDIUM => "No medium found",
                _ => "Cannot allocate memory",
            };
            assert!(msg.starts_with(expected), "{e}: {msg}");
        }
    }

    #[test]
    fn injected_faults_are_eio_and_recognised() {
        let e = TapeError::Io {
            op: Operation::ReadRecord,
            path: PathBuf::from("/lib/a.tape"),
            source: io::Error::other(InjectedFault),
        };
        assert!(e.is_injected());
        assert_eq!(e.errno(), Errno::EIO);
        assert_eq!(
            e.to_string(),
            "reading a record (/lib/a.tape): injected fault (EIO)"
        );
        let real = TapeError::Io {
            op: Operation::WriteRecord,
            path: PathBuf::from("/dev/nst0"),
            source: io::Error::from_raw_os_error(28),
        };
        assert!(!real.is_injected());
        assert_eq!(real.errno(), Errno::EIO);
    }

    #[test]
    fn record_too_large_says_the_size_when_known() {
        let e = TapeError::RecordTooLarge {
            size: Some(1000),
            buffer: 100,
        };
        assert_eq!(
            e.to_string(),
            "record of 1000 bytes is longer than the 100-byte buffer"
        );
        let e = TapeError::RecordTooLarge {
            size: None,
            buffer: 100,
        };
        assert_eq!(e.errno(), Errno::ENOMEM);
        assert!(e.to_string().contains("(size unknown)"));
    }
}
