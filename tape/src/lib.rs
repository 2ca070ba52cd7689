//! bakfs-tape: tapes as a kind of medium (issue 14).
//!
//! - [`drive`]: the [`TapeDrive`] trait every drive provides, modelled on the Linux `st`
//!   driver with an LTO drive on its non-rewinding device, its [`Status`] and [`TapeError`].

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod drive;
mod name;

pub use drive::{Errno, InjectedFault, Operation, Status, TapeDrive, TapeError, MAX_RECORD_LEN};
pub use name::CartridgeName;
