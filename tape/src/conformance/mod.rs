//! Checks any [`TapeDrive`] must pass, in the spirit of Bacula's `btape test`: write and read
//! back across filemarks, reposition to a file and block, append after reopening, backspace
//! and re-read, space forward, truncation by a write in the middle, the filemark `st` writes
//! itself, records too large for the buffer, unload and reload; and, where the [`Harness`]
//! can arrange them, the early warning and end of medium with the data continuing on the next
//! cartridge, write protection, a drive going offline, injected read and write errors, and a
//! record torn by a crash.
//!
//! The checks only use the trait and a [`Harness`] that loads scratch cartridges, so the same
//! checks run against the [virtual drive](VirtualHarness) here and against a real `st` device
//! ([`StHarness`], when `BAKFS_TEST_TAPE` names one: see `tests/conformance.rs`). A check the harness cannot
//! arrange is skipped, not failed.
//!
//! ```
//! use bakfs_tape::conformance::{run_all, Outcome, VirtualHarness};
//! # fn main() -> Result<(), bakfs_tape::TapeError> {
//! # let dir = tempfile::tempdir().map_err(|e| bakfs_tape::TapeError::InvalidArgument(e.to_string()))?;
//! let mut harness = VirtualHarness::new(dir.path())?;
//! for report in run_all(&mut harness) {
//!     assert_eq!(report.outcome, Outcome::Passed, "{}", report.name);
//! }
//! # Ok(()) }
//! ```

mod checks;
mod run;
mod st_harness;
mod virtual_harness;

use std::fmt;

use crate::{Faults, TapeDrive, TapeError};
pub use st_harness::StHarness;
pub use virtual_harness::VirtualHarness;

/// One of the two scratch cartridges a harness provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scratch {
    /// The first (most checks use only this one).
    A,
    /// The second, for data continued from a full first one.
    B,
}

/// What the checks need besides the drive: scratch cartridges (whose contents they destroy),
/// and, optionally, ways to arrange the conditions a real drive only meets by accident.
pub trait Harness {
    /// The drive under test.
    fn drive(&mut self) -> &mut dyn TapeDrive;

    /// Loads scratch cartridge `which` blank (nothing written on it) and at the beginning of
    /// tape, unloading whatever is in the drive first.
    ///
    /// # Errors
    /// Whatever keeps the cartridge from being loaded.
    fn load_scratch(&mut self, which: Scratch) -> Result<(), HarnessError>;

    /// Loads scratch cartridge `which` again, with what the checks wrote on it, unloading
    /// whatever is in the drive first (or taking its place when the drive is offline).
    ///
    /// # Errors
    /// Whatever keeps the cartridge from being loaded.
    fn reload(&mut self, which: Scratch) -> Result<(), HarnessError>;

    /// Closes the drive and opens it again, as the next process would; the cartridge stays
    /// in and the non-rewinding device keeps its position.
    ///
    /// # Errors
    /// Whatever keeps the drive from opening.
    fn reopen(&mut self) -> Result<(), HarnessError>;

    /// As [`load_scratch`](Self::load_scratch), with a cartridge of `capacity` bytes whose
    /// early warning comes `early_warning` bytes before the end, so a check can fill it.
    ///
    /// # Errors
    /// [`HarnessError::Unsupported`] by default.
    fn load_small_scratch(
        &mut self,
        which: Scratch,
        capacity: u64,
        early_warning: u64,
    ) -> Result<(), HarnessError> {
        let _ = (which, capacity, early_warning);
        Err(HarnessError::Unsupported("load a small scratch cartridge"))
    }

    /// Sets or clears the write protection of scratch cartridge `which` (not loaded).
    ///
    /// # Errors
    /// [`HarnessError::Unsupported`] by default.
    fn set_write_protected(&mut self, which: Scratch, protected: bool) -> Result<(), HarnessError> {
        let _ = (which, protected);
        Err(HarnessError::Unsupported("write-protect a cartridge"))
    }

    /// Makes the drive fail as `faults` says, counting operations from now.
    ///
    /// # Errors
    /// [`HarnessError::Unsupported`] by default.
    fn inject(&mut self, faults: Faults) -> Result<(), HarnessError> {
        let _ = faults;
        Err(HarnessError::Unsupported("inject faults"))
    }

    /// Writes `rec` as a crash in the middle of its write leaves it (part of it on the tape),
    /// ends the drive as a crash does, and opens it again (the position is then unspecified).
    /// Records written before it are flushed first.
    ///
    /// # Errors
    /// [`HarnessError::Unsupported`] by default.
    fn crash_mid_record(&mut self, rec: &[u8]) -> Result<(), HarnessError> {
        let _ = rec;
        Err(HarnessError::Unsupported("crash in the middle of a record"))
    }
}

/// Why a [`Harness`] could not do what a check asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The harness cannot arrange this: the check is skipped.
    #[error("this harness cannot {0}")]
    Unsupported(&'static str),
    /// The drive failed.
    #[error(transparent)]
    Tape(#[from] TapeError),
}

/// Why a check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The harness cannot arrange what the check needs.
    #[error("skipped: the harness cannot {0}")]
    Skipped(&'static str),
    /// An operation failed that should have worked.
    #[error("{step}: {source}")]
    Tape {
        /// What the check was doing.
        step: String,
        /// The drive's error.
        #[source]
        source: TapeError,
    },
    /// The drive did something else than it should have.
    #[error("{step}: expected {expected}, got {got}")]
    Mismatch {
        /// What the check was doing.
        step: String,
        /// What should have happened.
        expected: String,
        /// What did.
        got: String,
    },
}

impl From<HarnessError> for CheckError {
    fn from(e: HarnessError) -> Self {
        match e {
            HarnessError::Unsupported(what) => CheckError::Skipped(what),
            HarnessError::Tape(source) => CheckError::Tape {
                step: "harness".into(),
                source,
            },
        }
    }
}

/// A named check.
#[derive(Clone, Copy)]
pub struct Check {
    /// Its name, as in the tests.
    pub name: &'static str,
    run: fn(&mut dyn Harness) -> Result<(), CheckError>,
}

impl Check {
    /// Runs the check.
    ///
    /// # Errors
    /// [`CheckError::Skipped`] when the harness cannot arrange it; otherwise what failed.
    pub fn run(&self, harness: &mut dyn Harness) -> Result<(), CheckError> {
        (self.run)(harness)
    }
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish()
    }
}

/// The result of one check in [`run_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// The harness cannot arrange it.
    Skipped(String),
    /// It failed: what went wrong.
    Failed(String),
}

/// A check's name and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The check's name.
    pub name: &'static str,
    /// What came of it.
    pub outcome: Outcome,
}

macro_rules! check {
    ($name:ident) => {
        Check {
            name: stringify!($name),
            run: checks::$name,
        }
    };
}

/// Every check, in the order [`run_all`] runs them.
pub const CHECKS: &[Check] = &[
    check!(write_and_reread_across_filemarks),
    check!(reposition_to_file_and_block),
    check!(append_after_reopen),
    check!(backspace_file_and_reread_last_record),
    check!(space_forward_over_files_and_records),
    check!(writing_in_the_middle_truncates),
    check!(filemark_written_after_a_write),
    check!(record_too_large_for_the_buffer),
    check!(unload_and_reload),
    check!(early_warning_trailer_end_of_medium_next_cartridge),
    check!(write_protection),
    check!(drive_going_offline),
    check!(injected_read_error),
    check!(injected_write_error),
    check!(torn_last_record_dropped_on_reopen),
];

/// The check named `name`.
#[must_use]
pub fn check(name: &str) -> Option<Check> {
    CHECKS.iter().find(|c| c.name == name).copied()
}

/// Runs every check in turn on `harness`, each from a fresh scratch cartridge.
pub fn run_all(harness: &mut dyn Harness) -> Vec<CheckReport> {
    CHECKS
        .iter()
        .map(|c| {
            let outcome = match c.run(harness) {
                Ok(()) => Outcome::Passed,
                Err(CheckError::Skipped(what)) => Outcome::Skipped(what.to_string()),
                Err(e) => Outcome::Failed(e.to_string()),
            };
            match &outcome {
                Outcome::Failed(why) => tracing::warn!(check = c.name, %why, "tape check failed"),
                _ => tracing::info!(check = c.name, ?outcome, "tape check"),
            }
            CheckReport {
                name: c.name,
                outcome,
            }
        })
        .collect()
}
