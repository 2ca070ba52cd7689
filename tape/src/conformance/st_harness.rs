//! [`StHarness`]: the conformance checks' harness over a real drive through `st`, with one
//! scratch cartridge (the one in the drive, whose contents the checks destroy). It arranges
//! none of the optional conditions, so those checks are skipped, as are those that need a
//! second cartridge.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::virtual_harness::ClosedDrive;
use super::{Harness, HarnessError, Scratch};
use crate::{StDrive, TapeDrive, TapeError};

/// How long a reload waits for the drive to come online.
const LOAD_PATIENCE: Duration = Duration::from_secs(180);

/// A real drive on its non-rewinding device, with a scratch cartridge in it.
#[derive(Debug)]
pub struct StHarness {
    path: PathBuf,
    drive: Option<StDrive>,
    closed: ClosedDrive,
}

impl StHarness {
    /// Opens the drive at `path` (`/dev/nstX`). Everything on the cartridge in it is lost.
    ///
    /// # Errors
    /// As [`StDrive::open`].
    pub fn new(path: &Path) -> Result<Self, TapeError> {
        Ok(Self {
            path: path.to_owned(),
            drive: Some(StDrive::open(path)?),
            closed: ClosedDrive,
        })
    }

    fn st(&mut self) -> Result<&mut StDrive, TapeError> {
        self.drive.as_mut().ok_or(TapeError::Offline)
    }

    fn only_a(which: Scratch) -> Result<(), HarnessError> {
        match which {
            Scratch::A => Ok(()),
            Scratch::B => Err(HarnessError::Unsupported("load a second scratch cartridge")),
        }
    }

    /// Loads the cartridge again if it was unloaded, and waits until the drive is online.
    fn ensure_loaded(&mut self) -> Result<(), TapeError> {
        let d = self.st()?;
        if d.status()?.online {
            return Ok(());
        }
        d.load()?;
        let start = Instant::now();
        while !d.status()?.online {
            if start.elapsed() > LOAD_PATIENCE {
                return Err(TapeError::NoCartridge);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        Ok(())
    }
}

impl Harness for StHarness {
    fn drive(&mut self) -> &mut dyn TapeDrive {
        match self.drive.as_mut() {
            Some(d) => d,
            None => &mut self.closed,
        }
    }

    fn load_scratch(&mut self, which: Scratch) -> Result<(), HarnessError> {
        Self::only_a(which)?;
        self.ensure_loaded()?;
        let d = self.st()?;
        d.rewind()?;
        d.erase_rest()?;
        Ok(d.rewind()?)
    }

    fn reload(&mut self, which: Scratch) -> Result<(), HarnessError> {
        Self::only_a(which)?;
        self.ensure_loaded()?;
        Ok(self.st()?.rewind()?)
    }

    fn reopen(&mut self) -> Result<(), HarnessError> {
        self.drive = None;
        self.drive = Some(StDrive::open(&self.path)?);
        Ok(())
    }
}
