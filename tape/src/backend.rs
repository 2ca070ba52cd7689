//! [`TapeBackend`]: a cartridge as a read-only repository, for restoring from the tape alone.
//!
//! It knows where each file is on the tape (from the catalog database or a [scan]) and reads
//! a file the first time it is asked for, spacing straight to it, into a staging directory
//! that serves every later read. A restore of one file reads the small files (config, key
//! wrappings, index files, the snapshot's manifest), the packs holding its trees, and the
//! packs holding its data: nothing else on the tape is read.
//!
//! [scan]: crate::layout::scan

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use bakfs_core::repo::backend::{check_name, Backend, FileKind, LocalBackend};

use crate::layout::{read_entry, Placed};
use crate::Drive;

/// A cartridge in a drive as a read-only repository. See the [module](self) documentation.
pub struct TapeBackend {
    drive: Mutex<Drive>,
    what: String,
    entries: HashMap<(FileKind, String), Placed>,
    staging: LocalBackend,
    /// Entries read from the tape so far (for figures and tests).
    reads: Mutex<Vec<Placed>>,
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::ReadOnlyFilesystem,
        "a tape is read-only to restores",
    )
}

impl TapeBackend {
    /// A backend over the cartridge in `drive` holding `entries` (trusted: from the catalog
    /// database or a scan's closed jobs), staging what it reads in `staging` (an empty
    /// directory, made if missing). `what` names the cartridge in messages.
    ///
    /// # Errors
    /// Creating the staging directory's layout.
    pub fn new(drive: Drive, what: &str, entries: Vec<Placed>, staging: &Path) -> io::Result<Self> {
        let staging = LocalBackend::new(staging);
        if let Err(e) = staging.create() {
            // Staged by an earlier restore from this cartridge: what is there was checked.
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        let entries = entries
            .into_iter()
            .map(|p| ((p.entry.kind, p.entry.name.clone()), p))
            .collect();
        Ok(Self {
            drive: Mutex::new(drive),
            what: what.to_string(),
            entries,
            staging,
            reads: Mutex::new(Vec::new()),
        })
    }

    /// The entries read from the tape so far, in the order read.
    #[must_use]
    pub fn reads(&self) -> Vec<Placed> {
        self.reads.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Gives back the drive.
    ///
    /// # Panics
    /// Never: a poisoned lock still holds the drive.
    #[must_use]
    pub fn into_drive(self) -> Drive {
        self.drive
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn placed(&self, kind: FileKind, name: &str) -> io::Result<&Placed> {
        check_name(kind, name)?;
        self.entries.get(&(kind, name.to_string())).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{kind} {name} is not on {}", self.what),
            )
        })
    }

    /// Reads the file from the tape into the staging directory unless it is there.
    fn stage(&self, kind: FileKind, name: &str) -> io::Result<()> {
        let p = self.placed(kind, name)?;
        if self
            .staging
            .size(kind, name)
            .is_ok_and(|s| s == p.entry.size)
        {
            return Ok(());
        }
        let mut drive = self
            .drive
            .lock()
            .map_err(|_| io::Error::other("the tape drive's lock is poisoned"))?;
        let mut bytes = Vec::with_capacity(usize::try_from(p.entry.size).unwrap_or(0));
        read_entry(drive.tape(), p, &mut bytes)
            .map_err(|e| io::Error::other(format!("{}: {e}", self.what)))?;
        drop(drive);
        self.staging.write(kind, name, &bytes)?;
        if let Ok(mut r) = self.reads.lock() {
            r.push(p.clone());
        }
        Ok(())
    }
}

impl Backend for TapeBackend {
    fn location(&self) -> String {
        self.what.clone()
    }

    fn create(&self) -> io::Result<()> {
        Err(read_only())
    }

    fn read(&self, kind: FileKind, name: &str) -> io::Result<Vec<u8>> {
        self.stage(kind, name)?;
        self.staging.read(kind, name)
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        self.stage(kind, name)?;
        self.staging.read_range(kind, name, offset, len)
    }

    fn write(&self, _: FileKind, _: &str, _: &[u8]) -> io::Result<()> {
        Err(read_only())
    }

    fn list(&self, kind: FileKind) -> io::Result<Vec<String>> {
        let mut v: Vec<String> = self
            .entries
            .keys()
            .filter(|(k, _)| *k == kind)
            .map(|(_, n)| n.clone())
            .collect();
        v.sort();
        Ok(v)
    }

    fn size(&self, kind: FileKind, name: &str) -> io::Result<u64> {
        Ok(self.placed(kind, name)?.entry.size)
    }

    fn remove(&self, _: FileKind, _: &str) -> io::Result<()> {
        Err(read_only())
    }

    fn local_file(&self, kind: FileKind, name: &str) -> io::Result<Option<File>> {
        self.stage(kind, name)?;
        self.staging.local_file(kind, name)
    }
}
