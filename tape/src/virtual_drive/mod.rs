//! [`VirtualDrive`]: a file-backed drive that behaves like an LTO drive under Linux `st`.
//!
//! It is a product feature (a set-up to try bakfs's tape support without hardware) and the
//! tests' stand-in for a drive. A *library* is a directory holding cartridges, one
//! directory `<name>.tape` each (an index of the tape's records and filemarks, and the
//! records' bytes laid out as `dd` would write them; `cartridge.rs` has the format), the
//! drive's state file `drive.json`
//! (which cartridge is loaded, the position, write protection; `state.rs`) and a lock
//! file. Opening the drive again, in this process or another, finds the cartridge and the
//! position where the last close left them, as with the non-rewinding device.
//!
//! What it copies from `st` and an LTO drive: variable-length records up to
//! [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN), filemarks, the end of data (writing anywhere erases what follows),
//! the early warning a set distance before the capacity and then the physical end, write
//! protection, unload, the filemark `st` writes itself after a write (see [`TapeDrive`](crate::TapeDrive)),
//! the block numbers `st` does not know, and one user at a time (`EBUSY`). Faults can be
//! injected ([`Faults`]): a read or write error, the drive going offline.

mod cartridge;
mod library;
mod loaded;
mod ops;
mod state;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::drive::{InjectedFault, Operation, TapeError};
use crate::CartridgeName;
pub(crate) use cartridge::tear;
use cartridge::Cartridge;
pub use cartridge::FILEMARK_COST;
use loaded::Loaded;
use state::{DriveState, LoadedState};

const CARTRIDGE_EXT: &str = "tape";

/// How a [`VirtualDrive`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriveConfig {
    /// How far before its capacity a new cartridge gives the early warning, in bytes. Kept in
    /// the cartridge's header (the warning is the medium's, as on a real tape).
    pub early_warning_bytes: u64,
    /// fsync the cartridge's files at every filemark, so that what a filemark closed survives a
    /// power loss and not only a crash of the process. Off by default: a virtual drive is a
    /// test set-up, and `dd` to a file does not fsync either.
    pub sync_filemarks: bool,
    /// Faults to inject from the open on.
    pub faults: Faults,
}

impl Default for DriveConfig {
    fn default() -> Self {
        Self {
            early_warning_bytes: 32 << 20,
            sync_filemarks: false,
            faults: Faults::default(),
        }
    }
}

/// Faults a [`VirtualDrive`] injects, counted from when they are set. Each is given once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// After this many `read_record` calls, the next fails with `EIO`
    /// ([`InjectedFault`] in a [`TapeError::Io`]); the position does not move.
    pub read_error_after: Option<u64>,
    /// After this many written records, the next `write_record` fails with `EIO` and
    /// writes nothing.
    pub write_error_after: Option<u64>,
    /// After this many written records, the drive goes offline instead of writing the next:
    /// every operation then returns [`TapeError::Offline`] until a cartridge is loaded again
    /// ([`VirtualDrive::load`]). What was written before stays on the tape.
    pub offline_after_writes: Option<u64>,
    /// After this many `write_filemarks` calls writing filemarks, the next fails with `EIO`
    /// and writes none, as `st` reports a buffered write that failed: the records since the
    /// last filemark stay on the tape without one.
    pub filemark_error_after: Option<u64>,
}

/// A cartridge in a library, as [`VirtualDrive::cartridges`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartridgeInfo {
    /// Its name.
    pub name: CartridgeName,
    /// Room for records, in bytes.
    pub capacity_bytes: u64,
    /// How far before the capacity the early warning comes.
    pub early_warning_bytes: u64,
    /// Whether its write-protect tab is set.
    pub write_protected: bool,
}

/// A virtual tape drive over a library directory. See the [module](self) documentation.
///
/// ```
/// use bakfs_tape::{CartridgeName, DriveConfig, TapeDrive, VirtualDrive};
/// # fn main() -> Result<(), bakfs_tape::TapeError> {
/// # let dir = tempfile::tempdir().map_err(|e| bakfs_tape::TapeError::InvalidArgument(e.to_string()))?;
/// let mut drive = VirtualDrive::open(dir.path(), DriveConfig::default())?;
/// let name = CartridgeName::new("A00001L9")?;
/// drive.create_cartridge(&name, 1 << 30)?;
/// drive.load(&name)?;
/// drive.write_record(b"label")?;
/// drive.write_filemarks(1)?;
/// drive.rewind()?;
/// let mut buf = vec![0; 1 << 20];
/// assert_eq!(drive.read_record(&mut buf)?, 5);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct VirtualDrive {
    dir: PathBuf,
    config: DriveConfig,
    /// Holds the library's lock while the drive is open.
    _lock: File,
    write_protected: std::collections::BTreeSet<CartridgeName>,
    loaded: Option<Loaded>,
    offline: bool,
    faults: Faults,
    reads: u64,
    writes: u64,
    filemarks: u64,
    /// Closed or crashed: nothing left for `Drop` to do.
    done: bool,
}

impl VirtualDrive {
    /// Opens the drive of the library `dir` (created if missing), with the cartridge and
    /// position the last close left.
    ///
    /// # Errors
    /// [`TapeError::Busy`] while another process has it open; [`TapeError::Io`] or
    /// [`TapeError::Corrupt`] for a library or cartridge that cannot be read.
    pub fn open(dir: &Path, config: DriveConfig) -> Result<Self, TapeError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(Operation::Open, dir, e))?;
        let lock = state::lock(dir)?;
        let saved = state::load(dir)?;
        let mut drive = VirtualDrive {
            dir: dir.to_owned(),
            faults: config.faults,
            config,
            _lock: lock,
            write_protected: saved.write_protected,
            loaded: None,
            offline: false,
            reads: 0,
            writes: 0,
            filemarks: 0,
            done: false,
        };
        if let Some(l) = saved.loaded {
            let path = drive.cartridge_path(&l.cartridge);
            if path.exists() {
                let cart = Cartridge::open(&path)?;
                let pos = usize::try_from(l.position).unwrap_or(usize::MAX);
                let clamped = pos.min(cart.len());
                if clamped != pos {
                    tracing::warn!(cartridge = %l.cartridge, saved = pos, now = clamped, "saved position beyond the end of data (a crash?): at the end of data");
                }
                let mut loaded = Loaded::new(l.cartridge, cart);
                loaded.pos = clamped;
                loaded.block_known = l.block_known && clamped == pos;
                loaded.early_warning_given = l.early_warning_given;
                drive.loaded = Some(loaded);
            } else {
                tracing::warn!(cartridge = %l.cartridge, "the loaded cartridge is gone from the library: the drive is empty");
            }
        }
        Ok(drive)
    }

    /// The library directory.
    #[must_use]
    pub fn library(&self) -> &Path {
        &self.dir
    }

    /// Loads cartridge `name` into the drive, at the beginning of tape. On an offline drive it
    /// takes the place of the cartridge in it, which brings the drive back online.
    ///
    /// # Errors
    /// [`TapeError::DriveOccupied`] when a cartridge is loaded (unload it first);
    /// [`TapeError::NoSuchCartridge`]; [`TapeError::Corrupt`], [`TapeError::Io`].
    pub fn load(&mut self, name: &CartridgeName) -> Result<(), TapeError> {
        if let Some(l) = &self.loaded {
            if !self.offline {
                return Err(TapeError::DriveOccupied(l.name.clone()));
            }
        }
        let path = self.cartridge_path(name);
        if !path.exists() {
            return Err(TapeError::NoSuchCartridge(name.clone()));
        }
        let cart = Cartridge::open(&path)?;
        self.loaded = Some(Loaded::new(name.clone(), cart));
        self.offline = false;
        tracing::info!(cartridge = %name, "loaded");
        self.save_state()
    }

    /// The cartridge in the drive.
    #[must_use]
    pub fn loaded_cartridge(&self) -> Option<&CartridgeName> {
        self.loaded.as_ref().map(|l| &l.name)
    }

    /// The exact file and block numbers of the position, which the drive always knows (unlike
    /// [`Status`](crate::Status), which says what `st` would).
    #[must_use]
    pub fn position(&self) -> Option<(u64, u64)> {
        self.loaded.as_ref().map(|l| (l.file(), l.block()))
    }

    /// Injects `faults`, counting operations from now; replaces those set before.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
        self.reads = 0;
        self.writes = 0;
        self.filemarks = 0;
    }

    /// Closes the drive as `st` does at `close(2)`: a filemark after a write, everything
    /// flushed, the state saved for the next open. Dropping the drive does the same and logs
    /// errors instead of returning them.
    ///
    /// # Errors
    /// [`TapeError::Io`] from the filemark, the flush or saving the state.
    pub fn close(mut self) -> Result<(), TapeError> {
        self.done = true;
        self.finish()
    }

    /// Ends the drive as a killed process or a power loss would: records still buffered are
    /// lost, no filemark is written and the state is not saved. For tests of recovery.
    pub fn crash(mut self) {
        self.done = true;
        if let Some(l) = self.loaded.take() {
            l.cart.abandon();
        }
    }

    fn finish(&mut self) -> Result<(), TapeError> {
        if !self.offline {
            if let Some(l) = self.loaded.as_mut() {
                l.implicit_filemark(self.config.sync_filemarks)?;
                l.cart
                    .flush(self.config.sync_filemarks)
                    .map_err(|e| io_error(Operation::Close, l.cart.path(), e))?;
            }
        }
        self.save_state()
    }

    fn save_state(&self) -> Result<(), TapeError> {
        let state = DriveState {
            version: state::STATE_VERSION,
            loaded: self.loaded.as_ref().map(|l| LoadedState {
                cartridge: l.name.clone(),
                position: l.pos as u64,
                block_known: l.block_known,
                early_warning_given: l.early_warning_given,
            }),
            write_protected: self.write_protected.clone(),
        };
        state::save(&self.dir, &state)
    }

    /// The loaded cartridge, if the drive is ready.
    fn ready(&mut self) -> Result<&mut Loaded, TapeError> {
        match (&mut self.loaded, self.offline) {
            (None, _) => Err(TapeError::NoCartridge),
            (Some(_), true) => Err(TapeError::Offline),
            (Some(l), false) => Ok(l),
        }
    }

    fn is_write_protected(&self) -> bool {
        self.loaded
            .as_ref()
            .is_some_and(|l| self.write_protected.contains(&l.name))
    }
}

impl Drop for VirtualDrive {
    fn drop(&mut self) {
        if !self.done {
            if let Err(e) = self.finish() {
                tracing::warn!(library = %self.dir.display(), error = %e, "closing the virtual drive");
            }
        }
    }
}

fn io_error(op: Operation, path: &Path, source: io::Error) -> TapeError {
    TapeError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn injected(op: Operation, path: &Path) -> TapeError {
    io_error(op, path, io::Error::other(InjectedFault))
}
