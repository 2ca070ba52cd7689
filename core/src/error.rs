//! The error type of bakfs-core.

/// Everything that can go wrong in the core. Each variant names what failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No repository at this location.
    #[error("{0}: not a bakfs repository (no config file)")]
    NotARepository(String),
    /// The repository was made by a newer bakfs.
    #[error(
        "repository format version {found} is not supported (this bakfs reads version {supported})"
    )]
    UnsupportedVersion {
        /// Version in the config file.
        found: u32,
        /// Version this code knows.
        supported: u32,
    },
    /// No key wrapping opens with this passphrase.
    #[error("wrong password: no key of the repository opens with it")]
    WrongPassword,
    /// Another process holds a conflicting lock.
    #[error("repository is locked: {0}")]
    Locked(String),
    /// An I/O error, with the path or object concerned.
    #[error("{path}: {err}")]
    Io {
        /// What was accessed.
        path: String,
        /// The OS error (named `err`, not `source`, so that an error chain shows it once).
        err: std::io::Error,
    },
    /// Data failed authentication or its hash, or is malformed.
    #[error("damaged {what}: {detail}")]
    Damaged {
        /// The object (pack, index, snapshot, key, config, blob) and its id.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A snapshot, path or key asked for does not exist or is ambiguous.
    #[error("{0}")]
    NotFound(String),
    /// A request that makes no sense (bad argument, refused input).
    #[error("{0}")]
    Invalid(String),
}

/// What kind of failure an [`Error`] is, for callers that map it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not a repository.
    NotFound,
    /// Locked.
    Locked,
    /// Wrong password.
    WrongPassword,
    /// Damaged data.
    Damaged,
    /// The storage refused access: wrong S3 credentials, a bucket policy, a file's permissions.
    AccessDenied,
    /// Anything else.
    Other,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotARepository(_) => ErrorKind::NotFound,
            Error::Locked(_) => ErrorKind::Locked,
            Error::WrongPassword => ErrorKind::WrongPassword,
            Error::Damaged { .. } => ErrorKind::Damaged,
            Error::Io { err, .. } if err.kind() == std::io::ErrorKind::PermissionDenied => {
                ErrorKind::AccessDenied
            }
            _ => ErrorKind::Other,
        }
    }

    /// An I/O error about `path`.
    pub fn io(path: impl std::fmt::Display, err: std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            err,
        }
    }

    /// This error as a message about `path`, naming the path once: `path: error`, or the error
    /// alone when it already names the path (an [`Error::Io`] about it, a damaged file).
    ///
    /// ```
    /// use bakfs_core::Error;
    /// use std::path::Path;
    ///
    /// let full = Error::io("/r/f", std::io::Error::from_raw_os_error(28));
    /// assert!(full.about(Path::new("/r/f")).starts_with("/r/f: No space left"));
    /// let bad = Error::damaged("pack 1a2b", "authentication failed");
    /// assert_eq!(bad.about(Path::new("/r/f")), "/r/f: damaged pack 1a2b: authentication failed");
    /// ```
    pub fn about(&self, path: &std::path::Path) -> String {
        let msg = self.to_string();
        let p = path.display().to_string();
        let named = msg
            .match_indices(&p)
            .any(|(i, _)| matches!(msg[i + p.len()..].chars().next(), None | Some(':' | ' ')));
        if named {
            msg
        } else {
            format!("{p}: {msg}")
        }
    }

    /// Damage to `what`.
    pub fn damaged(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Damaged {
            what: what.into(),
            detail: detail.into(),
        }
    }
}

/// Result with the core's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
