//! The virtual drive's own state file, `drive.json` in the library, and the lock that makes
//! the drive one process's at a time.
//!
//! A non-rewinding device keeps its position between opens, and the cartridge stays in the
//! drive: the state file carries both from one process to the next. It is saved when a
//! cartridge is loaded or unloaded, a write protection changes, and the drive is closed;
//! after a crash the next open finds the position of the last save (clamped to the end of
//! data), as a real drive's would be lost too.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{CartridgeName, Operation, TapeError};

const STATE_FILE: &str = "drive.json";
const LOCK_FILE: &str = "drive.lock";
pub(crate) const STATE_VERSION: u32 = 1;

/// What the drive remembers between opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DriveState {
    pub version: u32,
    /// The cartridge in the drive and where the tape is.
    pub loaded: Option<LoadedState>,
    /// Cartridges whose write-protect tab is set.
    pub write_protected: BTreeSet<CartridgeName>,
}

/// The loaded cartridge and its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoadedState {
    pub cartridge: CartridgeName,
    /// Entry number on the tape (records and filemarks counted from the beginning).
    pub position: u64,
    /// Whether `st` would know the block number here.
    pub block_known: bool,
    /// Whether the early warning was given since the position last was before it.
    pub early_warning_given: bool,
}

/// Takes the library's lock: one open drive at a time, as `st` answers `EBUSY`.
pub(crate) fn lock(dir: &Path) -> Result<File, TapeError> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(Operation::Open, &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => Err(TapeError::Busy {
            path: dir.to_owned(),
        }),
        Err(TryLockError::Error(e)) => Err(io_error(Operation::Open, &path, e)),
    }
}

/// Reads the state file; a library without one has an empty drive.
pub(crate) fn load(dir: &Path) -> Result<DriveState, TapeError> {
    let path = dir.join(STATE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(DriveState {
                version: STATE_VERSION,
                ..DriveState::default()
            })
        }
        Err(e) => return Err(io_error(Operation::Open, &path, e)),
    };
    let state: DriveState = serde_json::from_slice(&bytes).map_err(|e| {
        io_error(
            Operation::Open,
            &path,
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })?;
    if state.version != STATE_VERSION {
        return Err(io_error(
            Operation::Open,
            &path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "state version {}, this bakfs reads {STATE_VERSION}",
                    state.version
                ),
            ),
        ));
    }
    Ok(state)
}

/// Replaces the state file atomically (a temporary file, fsync, rename, directory fsync).
pub(crate) fn save(dir: &Path, state: &DriveState) -> Result<(), TapeError> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let err = |e| io_error(Operation::SaveState, &path, e);
    let json = serde_json::to_vec_pretty(state).map_err(|e| err(io::Error::other(e)))?;
    let mut f = File::create(&tmp).map_err(err)?;
    f.write_all(&json).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

fn io_error(op: Operation, path: &Path, source: io::Error) -> TapeError {
    TapeError::Io {
        op,
        path: PathBuf::from(path),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap().loaded, None);
        let mut s = load(dir.path()).unwrap();
        s.loaded = Some(LoadedState {
            cartridge: CartridgeName::new("A1").unwrap(),
            position: 7,
            block_known: false,
            early_warning_given: true,
        });
        s.write_protected.insert(CartridgeName::new("B2").unwrap());
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()).unwrap(), s);

        let held = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(TapeError::Busy { .. })));
        drop(held);
        lock(dir.path()).unwrap();
    }
}
