//! bakfs-tape: tapes as a kind of medium (issue 14).
//!
//! - [`drive`]: the [`TapeDrive`] trait every drive provides, modelled on the Linux `st`
//!   driver with an LTO drive on its non-rewinding device, its [`Status`] and [`TapeError`];
//! - [`backend`]: a cartridge as a read-only repository, for restoring from it alone;
//! - [`layout`]: what bakfs writes on a tape (label, data files, catalogs) and how it reads
//!   it back, with or without the catalog database;
//! - [`st`]: [`StDrive`], a real drive through the Linux `st` driver (`/dev/nst0`);
//! - [`virtual_drive`]: [`VirtualDrive`], a file-backed drive with LTO semantics, for trying
//!   bakfs without hardware and for the tests;
//! - [`conformance`]: checks any [`TapeDrive`] must pass, in the spirit of Bacula's
//!   `btape test`, run here against the virtual drive.
//!
//! ```
//! use bakfs_tape::{CartridgeName, DriveConfig, TapeDrive, TapeError, VirtualDrive};
//! # fn main() -> Result<(), TapeError> {
//! # let dir = tempfile::tempdir().map_err(|e| TapeError::InvalidArgument(e.to_string()))?;
//! let mut drive = VirtualDrive::open(dir.path(), DriveConfig::default())?;
//! let tape = CartridgeName::new("A00001L9")?;
//! drive.create_cartridge(&tape, 1 << 30)?;
//! drive.load(&tape)?;
//! for rec in [&b"one"[..], b"two"] {
//!     drive.write_record(rec)?;
//! }
//! drive.write_filemarks(1)?;
//! drive.rewind()?;
//! let mut buf = vec![0; 256 << 10];
//! assert_eq!(drive.read_record(&mut buf)?, 3);
//! drive.space_records(1)?;
//! assert_eq!(drive.read_record(&mut buf)?, 0); // the filemark
//! assert!(matches!(drive.read_record(&mut buf), Err(TapeError::EndOfData)));
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backend;
pub mod conformance;
pub mod drive;
pub mod layout;
mod name;
pub mod spec;
pub mod st;
pub mod virtual_drive;

pub use drive::{Errno, InjectedFault, Operation, Status, TapeDrive, TapeError, MAX_RECORD_LEN};
pub use name::CartridgeName;
pub use spec::{Drive, DriveSpec};
pub use st::StDrive;
pub use virtual_drive::{CartridgeInfo, DriveConfig, Faults, VirtualDrive};
