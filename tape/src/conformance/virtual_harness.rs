//! [`VirtualHarness`]: the conformance checks' harness over a [`VirtualDrive`], which can
//! arrange everything they ask for (small cartridges, write protection, faults, crashes).

use std::path::{Path, PathBuf};

use super::{Harness, HarnessError, Scratch};
use crate::{CartridgeName, DriveConfig, Faults, Status, TapeDrive, TapeError, VirtualDrive};

/// The capacity of a normal scratch cartridge: far more than a check writes.
const SCRATCH_CAPACITY: u64 = 64 << 30;

/// A library in a directory with two scratch cartridges, `scratch-a` and `scratch-b`.
#[derive(Debug)]
pub struct VirtualHarness {
    dir: PathBuf,
    config: DriveConfig,
    /// `None` only between closing the drive and opening it again, or when that failed.
    drive: Option<VirtualDrive>,
    /// Answers every operation while `drive` is `None`.
    closed: ClosedDrive,
}

impl VirtualHarness {
    /// A harness over the library in `dir` (made if missing), with default settings.
    ///
    /// # Errors
    /// As [`VirtualDrive::open`].
    pub fn new(dir: &Path) -> Result<Self, TapeError> {
        Self::with_config(dir, DriveConfig::default())
    }

    /// A harness whose drive has `config`.
    ///
    /// # Errors
    /// As [`VirtualDrive::open`].
    pub fn with_config(dir: &Path, config: DriveConfig) -> Result<Self, TapeError> {
        let drive = VirtualDrive::open(dir, config.clone())?;
        Ok(Self {
            dir: dir.to_owned(),
            config,
            drive: Some(drive),
            closed: ClosedDrive,
        })
    }

    /// The virtual drive, for what the trait does not reach.
    pub fn virtual_drive(&mut self) -> Result<&mut VirtualDrive, TapeError> {
        self.drive.as_mut().ok_or(TapeError::Offline)
    }

    fn name(which: Scratch) -> Result<CartridgeName, TapeError> {
        CartridgeName::new(match which {
            Scratch::A => "scratch-a",
            Scratch::B => "scratch-b",
        })
    }

    /// Empties the drive: unloads a cartridge, or just forgets it if the drive is offline
    /// (loading another takes its place).
    fn empty_drive(&mut self) -> Result<(), TapeError> {
        let d = self.virtual_drive()?;
        let s = d.status()?;
        if s.loaded && s.online {
            d.unload()?;
        }
        Ok(())
    }

    fn load_new(
        &mut self,
        which: Scratch,
        capacity: u64,
        early_warning: u64,
    ) -> Result<(), TapeError> {
        self.empty_drive()?;
        let name = Self::name(which)?;
        let d = self.virtual_drive()?;
        if d.loaded_cartridge() == Some(&name) {
            // Offline with this very cartridge in: take its place with itself first.
            d.load(&name)?;
            d.unload()?;
        }
        match d.remove_cartridge(&name) {
            Ok(()) | Err(TapeError::NoSuchCartridge(_)) => {}
            Err(e) => return Err(e),
        }
        d.create_cartridge_with(&name, capacity, early_warning)?;
        d.load(&name)
    }
}

impl Harness for VirtualHarness {
    fn drive(&mut self) -> &mut dyn TapeDrive {
        match self.drive.as_mut() {
            Some(d) => d,
            None => &mut self.closed,
        }
    }

    fn load_scratch(&mut self, which: Scratch) -> Result<(), HarnessError> {
        let early_warning = self.config.early_warning_bytes;
        Ok(self.load_new(which, SCRATCH_CAPACITY, early_warning)?)
    }

    fn reload(&mut self, which: Scratch) -> Result<(), HarnessError> {
        self.empty_drive()?;
        let name = Self::name(which)?;
        Ok(self.virtual_drive()?.load(&name)?)
    }

    fn reopen(&mut self) -> Result<(), HarnessError> {
        if let Some(d) = self.drive.take() {
            d.close()?;
        }
        self.drive = Some(VirtualDrive::open(&self.dir, self.config.clone())?);
        Ok(())
    }

    fn load_small_scratch(
        &mut self,
        which: Scratch,
        capacity: u64,
        early_warning: u64,
    ) -> Result<(), HarnessError> {
        Ok(self.load_new(which, capacity, early_warning)?)
    }

    fn set_write_protected(&mut self, which: Scratch, protected: bool) -> Result<(), HarnessError> {
        let name = Self::name(which)?;
        Ok(self
            .virtual_drive()?
            .set_write_protected(&name, protected)?)
    }

    fn inject(&mut self, faults: Faults) -> Result<(), HarnessError> {
        self.virtual_drive()?.set_faults(faults);
        Ok(())
    }

    fn crash_mid_record(&mut self, rec: &[u8]) -> Result<(), HarnessError> {
        let d = self.virtual_drive()?;
        d.write_filemarks(0)?;
        let name = d
            .loaded_cartridge()
            .cloned()
            .ok_or(TapeError::NoCartridge)?;
        let path = d.cartridge_path(&name);
        if let Some(d) = self.drive.take() {
            d.crash();
        }
        crate::virtual_drive::tear(&path, rec).map_err(|source| TapeError::Io {
            op: crate::Operation::WriteRecord,
            path: path.clone(),
            source,
        })?;
        self.drive = Some(VirtualDrive::open(&self.dir, self.config.clone())?);
        Ok(())
    }
}

/// The drive while the harness has none open: every operation fails offline.
#[derive(Debug, Clone, Copy)]
pub(super) struct ClosedDrive;

impl TapeDrive for ClosedDrive {
    fn status(&mut self) -> Result<Status, TapeError> {
        Ok(Status::default())
    }
    fn write_record(&mut self, _: &[u8]) -> Result<(), TapeError> {
        Err(TapeError::Offline)
    }
    fn read_record(&mut self, _: &mut [u8]) -> Result<usize, TapeError> {
        Err(TapeError::Offline)
    }
    fn write_filemarks(&mut self, _: u32) -> Result<(), TapeError> {
        Err(TapeError::Offline)
    }
    fn space_files(&mut self, _: i64) -> Result<(), TapeError> {
        Err(TapeError::Offline)
    }
    fn space_records(&mut self, _: i64) -> Result<(), TapeError> {
        Err(TapeError::Offline)
    }
    fn rewind(&mut self) -> Result<(), TapeError> {
        Err(TapeError::Offline)
    }
    fn seek_end_of_data(&mut self) -> Result<(), TapeError> {
        Err(TapeError::Offline)
    }
    fn unload(&mut self) -> Result<(), TapeError> {
        Err(TapeError::Offline)
    }
}
