//! Why a job, or one of its steps, stopped.

use std::fmt;
use std::path::Path;

/// Why a copy stopped.
#[derive(Debug, Clone)]
pub enum CopyError {
    /// The medium ran out of space.
    Full(String),
    /// The job was cancelled (medium removed, daemon stopping).
    Cancelled,
    /// The primary's file does not match its name: it is not copied.
    SourceDamaged(String),
    /// The medium is not the enrolled one, or unsafe to write (a symlink where a directory of
    /// the repository belongs): nothing is written.
    Refused(String),
    Io(String),
}

impl CopyError {
    /// An I/O error on `what`; ENOSPC and EDQUOT are [`CopyError::Full`].
    pub fn io(what: &Path, e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                CopyError::Full(format!("{}: {e}", what.display()))
            }
            _ => CopyError::Io(format!("{}: {e}", what.display())),
        }
    }

    /// A catalog error.
    pub fn catalog(e: impl fmt::Display) -> Self {
        CopyError::Io(format!("catalog: {e}"))
    }
}

impl fmt::Display for CopyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CopyError::Full(m) => write!(f, "medium full: {m}"),
            CopyError::Cancelled => write!(f, "cancelled"),
            CopyError::SourceDamaged(m) => write!(f, "primary repository damaged: {m}"),
            CopyError::Refused(m) => write!(f, "refused: {m}"),
            CopyError::Io(m) => write!(f, "{m}"),
        }
    }
}

/// Errors of creating, renaming or syncing a file on the medium.
impl From<std::io::Error> for CopyError {
    fn from(e: std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => CopyError::Full(format!("writing: {e}")),
            _ => CopyError::Io(format!("writing to the medium: {e}")),
        }
    }
}
