//! [`StDrive`]: a real tape drive through the Linux `st` driver, on its non-rewinding device
//! (`/dev/nst0`), in variable-block mode (one `write(2)`, one record).
//!
//! What `st` says is translated into the [`TapeDrive`] contract here (see each method there):
//! `ENOSPC` into the early warning once and the end of medium after it, a read of 0 bytes
//! into a filemark or the end of data by `GMT_EOD`, `EIO` into what the status then says
//! (no cartridge, offline, end of data, beginning of tape, a filemark met while spacing over
//! records) or a medium error. The translation runs over a [`Device`] so that it is tested
//! without hardware (no SCSI devices exist on the CI machines); the ioctl encodings are tested
//! against the kernel's header in [`ioctl`].

mod ioctl;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::drive::{Operation, Status, TapeDrive, TapeError, MAX_RECORD_LEN};
use ioctl::{MtGet, MtOp};

/// What [`StDrive`] needs of a device: the `st` character device, or a script in the tests.
pub(crate) trait Device {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno>;
    fn write(&mut self, rec: &[u8]) -> Result<usize, Errno>;
    fn op(&mut self, op: libc::c_short, count: libc::c_int) -> Result<(), Errno>;
    fn get(&mut self) -> Result<MtGet, Errno>;
}

/// The `st` character device.
#[derive(Debug)]
pub struct StDevice(File);

fn errno_of(e: &io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

impl Device for StDevice {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Errno> {
        self.0.read(buf).map_err(|e| errno_of(&e))
    }
    fn write(&mut self, rec: &[u8]) -> Result<usize, Errno> {
        self.0.write(rec).map_err(|e| errno_of(&e))
    }
    fn op(&mut self, op: libc::c_short, count: libc::c_int) -> Result<(), Errno> {
        ioctl::op(
            &self.0,
            MtOp {
                mt_op: op,
                mt_count: count,
            },
        )
    }
    fn get(&mut self) -> Result<MtGet, Errno> {
        ioctl::get(&self.0)
    }
}

/// A tape drive through the Linux `st` driver. Open the non-rewinding device (`/dev/nst0`):
/// closing the rewinding one (`/dev/st0`) rewinds the tape behind the caller's back.
#[derive(Debug)]
pub struct StDrive<D = StDevice> {
    dev: D,
    path: PathBuf,
    /// Opened read-only because the cartridge is write-protected (`EROFS` on a read-write open).
    read_only: bool,
    /// Variable-block mode set (`MTSETBLK 0`) for the cartridge in the drive.
    variable: bool,
    /// The early warning was reported in this pass.
    warned: bool,
}

impl StDrive<StDevice> {
    /// Opens the drive at `path` whether or not a cartridge is loaded (`O_NONBLOCK` on the
    /// open, cleared afterwards so that transfers wait for the drive as usual). A
    /// write-protected cartridge is opened read-only (`st` refuses a read-write open with
    /// `EROFS`); writing to it then returns [`TapeError::WriteProtected`].
    ///
    /// # Errors
    /// [`TapeError::Busy`] when another process has the drive open, [`TapeError::Io`] when the
    /// device cannot be opened.
    pub fn open(path: &Path) -> Result<Self, TapeError> {
        let open = |write: bool| {
            OpenOptions::new()
                .read(true)
                .write(write)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
        };
        let fail = |e: io::Error| match e.raw_os_error() {
            Some(libc::EBUSY) => TapeError::Busy {
                path: path.to_path_buf(),
            },
            _ => TapeError::Io {
                op: Operation::Open,
                path: path.to_path_buf(),
                source: e,
            },
        };
        let (file, read_only) = match open(true) {
            Ok(f) => (f, false),
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => (open(false).map_err(fail)?, true),
            Err(e) => return Err(fail(e)),
        };
        let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| fail(e.into()))?;
        let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
        fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(|e| fail(e.into()))?;
        Ok(Self::with_device(StDevice(file), path, read_only))
    }
}

// `Device` is the crate's own seam for the tests; users see `StDrive<StDevice>`.
#[allow(private_bounds)]
impl<D: Device> StDrive<D> {
    pub(crate) fn with_device(dev: D, path: &Path, read_only: bool) -> Self {
        Self {
            dev,
            path: path.to_path_buf(),
            read_only,
            variable: false,
            warned: false,
        }
    }

    /// The device's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, op: Operation, e: Errno) -> TapeError {
        TapeError::Io {
            op,
            path: self.path.clone(),
            source: io::Error::from_raw_os_error(e as i32),
        }
    }

    /// The status bits now, if the drive can say.
    fn gstat(&mut self) -> Option<libc::c_long> {
        self.dev.get().ok().map(|g| g.mt_gstat)
    }

    /// An `errno` from `op`, in the contract's terms. `EIO` is told apart by the status.
    fn fail(&mut self, op: Operation, e: Errno) -> TapeError {
        match e {
            Errno::ENOMEDIUM => {
                self.variable = false;
                TapeError::NoCartridge
            }
            Errno::EACCES | Errno::EROFS => TapeError::WriteProtected,
            Errno::EBUSY => TapeError::Busy {
                path: self.path.clone(),
            },
            Errno::EIO => match self.gstat() {
                Some(g) if g & ioctl::GMT_DR_OPEN != 0 => {
                    self.variable = false;
                    TapeError::NoCartridge
                }
                Some(g) if g & ioctl::GMT_ONLINE == 0 => TapeError::Offline,
                _ => self.io(op, e),
            },
            _ => self.io(op, e),
        }
    }

    /// Puts the drive in variable-block mode for the cartridge in it, once per load.
    fn variable_mode(&mut self, op: Operation) -> Result<(), TapeError> {
        if !self.variable {
            self.dev
                .op(ioctl::MTSETBLK, 0)
                .map_err(|e| self.fail(op, e))?;
            self.variable = true;
        }
        Ok(())
    }

    /// Erases from the position to the end of the tape with a short erase (`MTERASE 0`: the
    /// drive writes the end of data here), so that a tape rewound first reads as blank.
    ///
    /// # Errors
    /// As [`TapeDrive::write_filemarks`].
    pub fn erase_rest(&mut self) -> Result<(), TapeError> {
        if self.read_only {
            return Err(TapeError::WriteProtected);
        }
        self.dev
            .op(ioctl::MTERASE, 0)
            .map_err(|e| self.fail(Operation::WriteFilemarks, e))
    }

    /// Asks the drive to load the cartridge in its slot (`MTLOAD`), as after an unload that
    /// left it in the throat; a drive that ejected it fully needs a hand or a changer.
    ///
    /// # Errors
    /// [`TapeError::NoCartridge`] when there is none to load, [`TapeError::Io`].
    pub fn load(&mut self) -> Result<(), TapeError> {
        self.variable = false;
        self.warned = false;
        self.dev
            .op(ioctl::MTLOAD, 0)
            .map_err(|e| self.fail(Operation::Load, e))
    }

    fn count(n: u64) -> Result<libc::c_int, TapeError> {
        libc::c_int::try_from(n)
            .map_err(|_| TapeError::InvalidArgument(format!("count {n} is too large for st")))
    }

    /// Runs `op` after the early-warning flag is cleared when the position moves back.
    fn op(&mut self, op: libc::c_short, count: libc::c_int) -> Result<(), Errno> {
        if matches!(
            op,
            ioctl::MTREW | ioctl::MTOFFL | ioctl::MTBSF | ioctl::MTBSR
        ) {
            self.warned = false;
        }
        self.dev.op(op, count)
    }
}

/// The contract's [`Status`] from `MTIOCGET`.
pub(crate) fn status_of(g: &MtGet) -> Status {
    let bit = |b: libc::c_long| g.mt_gstat & b != 0;
    let known = |n: libc::c_int| u64::try_from(n).ok();
    let loaded = !bit(ioctl::GMT_DR_OPEN);
    Status {
        loaded,
        online: loaded && bit(ioctl::GMT_ONLINE),
        write_protected: bit(ioctl::GMT_WR_PROT),
        file: known(g.mt_fileno),
        block: known(g.mt_blkno),
        beginning_of_tape: bit(ioctl::GMT_BOT),
        end_of_data: bit(ioctl::GMT_EOD),
        early_warning: bit(ioctl::GMT_EOT),
    }
}

#[allow(private_bounds)]
impl<D: Device> TapeDrive for StDrive<D> {
    fn status(&mut self) -> Result<Status, TapeError> {
        let g = self.dev.get().map_err(|e| self.io(Operation::Status, e))?;
        let status = status_of(&g);
        if !status.loaded {
            self.variable = false;
        }
        Ok(status)
    }

    fn write_record(&mut self, rec: &[u8]) -> Result<(), TapeError> {
        if rec.is_empty() || rec.len() > MAX_RECORD_LEN {
            return Err(TapeError::InvalidRecordLength { len: rec.len() });
        }
        if self.read_only {
            return Err(TapeError::WriteProtected);
        }
        self.variable_mode(Operation::WriteRecord)?;
        let mut tries = 0;
        loop {
            match self.dev.write(rec) {
                Ok(n) if n == rec.len() => return Ok(()),
                Ok(n) => {
                    return Err(TapeError::Io {
                        op: Operation::WriteRecord,
                        path: self.path.clone(),
                        source: io::Error::other(format!(
                            "the drive took {n} of the record's {} bytes",
                            rec.len()
                        )),
                    })
                }
                Err(Errno::ENOSPC) if !self.warned => {
                    self.warned = true;
                    return Err(TapeError::EarlyWarning);
                }
                // Past the warning st refuses every other write; one retry tells that apart
                // from the physical end.
                Err(Errno::ENOSPC) if tries == 0 => tries += 1,
                Err(Errno::ENOSPC) => return Err(TapeError::EndOfMedium),
                Err(Errno::EBADF) if self.read_only => return Err(TapeError::WriteProtected),
                Err(e) => return Err(self.fail(Operation::WriteRecord, e)),
            }
        }
    }

    fn read_record(&mut self, buf: &mut [u8]) -> Result<usize, TapeError> {
        self.variable_mode(Operation::ReadRecord)?;
        match self.dev.read(buf) {
            Ok(0) => match self.gstat() {
                Some(g) if g & ioctl::GMT_EOD != 0 => Err(TapeError::EndOfData),
                _ => Ok(0),
            },
            Ok(n) => Ok(n),
            Err(Errno::ENOMEM) => Err(TapeError::RecordTooLarge {
                size: None,
                buffer: buf.len(),
            }),
            Err(Errno::EIO) if self.gstat().is_some_and(|g| g & ioctl::GMT_EOD != 0) => {
                Err(TapeError::EndOfData)
            }
            Err(e) => Err(self.fail(Operation::ReadRecord, e)),
        }
    }

    fn write_filemarks(&mut self, n: u32) -> Result<(), TapeError> {
        if n > 0 && self.read_only {
            return Err(TapeError::WriteProtected);
        }
        let count = Self::count(u64::from(n))?;
        match self.op(ioctl::MTWEOF, count) {
            Ok(()) => Ok(()),
            Err(Errno::ENOSPC) => Err(TapeError::EndOfMedium),
            Err(e) => Err(self.fail(Operation::WriteFilemarks, e)),
        }
    }

    fn space_files(&mut self, n: i64) -> Result<(), TapeError> {
        if n == 0 {
            return Ok(());
        }
        let (op, count) = if n > 0 {
            (ioctl::MTFSF, Self::count(n.unsigned_abs())?)
        } else {
            (ioctl::MTBSF, Self::count(n.unsigned_abs())?)
        };
        match self.op(op, count) {
            Ok(()) => Ok(()),
            Err(Errno::EIO) => match self.gstat() {
                Some(g) if n > 0 && g & ioctl::GMT_EOD != 0 => Err(TapeError::EndOfData),
                Some(g) if n < 0 && g & ioctl::GMT_BOT != 0 => Err(TapeError::BeginningOfTape),
                _ => Err(self.fail(Operation::Space, Errno::EIO)),
            },
            Err(e) => Err(self.fail(Operation::Space, e)),
        }
    }

    fn space_records(&mut self, n: i64) -> Result<(), TapeError> {
        if n == 0 {
            return Ok(());
        }
        let op = if n > 0 { ioctl::MTFSR } else { ioctl::MTBSR };
        let count = Self::count(n.unsigned_abs())?;
        match self.op(op, count) {
            Ok(()) => Ok(()),
            Err(Errno::EIO) => match self.gstat() {
                Some(g) if g & ioctl::GMT_EOF != 0 => Err(TapeError::Filemark),
                Some(g) if n > 0 && g & ioctl::GMT_EOD != 0 => Err(TapeError::EndOfData),
                Some(g) if n < 0 && g & ioctl::GMT_BOT != 0 => Err(TapeError::BeginningOfTape),
                _ => Err(self.fail(Operation::Space, Errno::EIO)),
            },
            Err(e) => Err(self.fail(Operation::Space, e)),
        }
    }

    fn rewind(&mut self) -> Result<(), TapeError> {
        self.op(ioctl::MTREW, 1)
            .map_err(|e| self.fail(Operation::Rewind, e))
    }

    fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
        self.op(ioctl::MTEOM, 1)
            .map_err(|e| self.fail(Operation::SeekEndOfData, e))
    }

    fn unload(&mut self) -> Result<(), TapeError> {
        self.op(ioctl::MTOFFL, 1)
            .map_err(|e| self.fail(Operation::Unload, e))?;
        self.variable = false;
        Ok(())
    }
}
