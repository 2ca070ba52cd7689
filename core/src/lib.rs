//! bakfs-core: the repository format, chunking, crypto, backup, restore, check and prune, and the
//! SQLite catalog. It does no printing and reads no environment; the binaries do.
//!
//! ```no_run
//! use bakfs_core::{format::crypto::KdfParams, repo::Repository};
//! use bakfs_core::repo::backend::Location;
//! let backend = Location::parse("/tmp/repo".as_ref()).map_err(bakfs_core::Error::Invalid)?.backend()?;
//! let repo = Repository::init(backend, b"pw", KdfParams::recommended(), "me".into())?;
//! println!("{}", repo.id());
//! # Ok::<(), bakfs_core::Error>(())
//! ```

// Unit tests may unwrap: a panic is how they fail.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backup;
pub mod catalog;
pub mod check;
pub mod drill;
pub mod error;
pub mod forget;
pub mod format;
pub mod fsio;
pub mod glob;
pub mod locate;
pub mod medium;
pub mod meta;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod runbook;
pub mod settings;
pub mod status;
pub mod tape_pool;
pub mod timefmt;
pub mod vfs;

#[cfg(test)]
mod testing;

pub use error::{Error, ErrorKind, Result};
