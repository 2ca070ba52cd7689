//! [`TapeBackend`]: a cartridge, or a media set of them, as a read-only repository, for
//! restoring from tapes alone.
//!
//! It knows where each file is (on which cartridge, in which tape file and block: from the
//! catalog database or a [scan]) and reads a file the first time it is asked for, spacing
//! straight to it, into a staging directory that serves every later read. A file on another
//! cartridge of the set is read after loading that cartridge from a virtual library; a real
//! drive needs a hand, so the read fails naming the cartridge (what was staged stays, for the
//! next try). A restore of one file reads the small files (config, key
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

/// A file on a cartridge of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnTape {
    /// Where it is on the cartridge.
    pub placed: Placed,
    /// The cartridge's label text (in a virtual library, its name too).
    pub cartridge: String,
}

/// The drive and the cartridge in it.
struct Loaded {
    drive: Drive,
    cartridge: String,
}

/// Cartridges in a drive as a read-only repository. See the [module](self) documentation.
pub struct TapeBackend {
    drive: Mutex<Loaded>,
    what: String,
    entries: HashMap<(FileKind, String), OnTape>,
    staging: LocalBackend,
    /// Entries read from the tape so far (for figures and tests).
    reads: Mutex<Vec<Placed>>,
    /// Entries that could not be read back as written, with why.
    damaged: Mutex<Vec<(OnTape, String)>>,
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::ReadOnlyFilesystem,
        "a tape is read-only to restores",
    )
}

impl TapeBackend {
    /// A backend over `drive`, which holds cartridge `loaded`, for the files `entries` (trusted:
    /// from the catalog database or a scan's closed jobs; a file on several cartridges is read
    /// from the last given), staging what it reads in `staging` (made if missing). `what` names
    /// the drive in messages.
    ///
    /// # Errors
    /// Creating the staging directory's layout.
    pub fn new(
        drive: Drive,
        loaded: &str,
        what: &str,
        entries: Vec<OnTape>,
        staging: &Path,
    ) -> io::Result<Self> {
        let staging = LocalBackend::new(staging);
        if let Err(e) = staging.create() {
            // Staged by an earlier restore from this cartridge: what is there was checked.
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(e);
            }
        }
        let entries = entries
            .into_iter()
            .map(|t| ((t.placed.entry.kind, t.placed.entry.name.clone()), t))
            .collect();
        Ok(Self {
            drive: Mutex::new(Loaded {
                drive,
                cartridge: loaded.to_string(),
            }),
            what: what.to_string(),
            entries,
            staging,
            reads: Mutex::new(Vec::new()),
            damaged: Mutex::new(Vec::new()),
        })
    }

    /// The entries that could not be read back as written (a damaged record, bytes that do
    /// not match), with why: what a restore lost to the tape.
    #[must_use]
    pub fn damaged(&self) -> Vec<(OnTape, String)> {
        self.damaged.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// The entries read from the tape so far, in the order read.
    #[must_use]
    pub fn reads(&self) -> Vec<Placed> {
        self.reads.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn placed(&self, kind: FileKind, name: &str) -> io::Result<&OnTape> {
        check_name(kind, name)?;
        self.entries.get(&(kind, name.to_string())).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{kind} {name} is not on the tapes in {}", self.what),
            )
        })
    }

    /// Reads the file from its cartridge into the staging directory unless it is there.
    fn stage(&self, kind: FileKind, name: &str) -> io::Result<()> {
        let t = self.placed(kind, name)?;
        let p = &t.placed;
        if self
            .staging
            .size(kind, name)
            .is_ok_and(|s| s == p.entry.size)
        {
            return Ok(());
        }
        let mut l = self
            .drive
            .lock()
            .map_err(|_| io::Error::other("the tape drive's lock is poisoned"))?;
        if l.cartridge != t.cartridge {
            self.swap(&mut l, &t.cartridge, kind, name)?;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(p.entry.size).unwrap_or(0));
        if let Err(e) = read_entry(l.drive.tape(), p, &mut bytes) {
            if let (crate::layout::ReadError::Damaged { .. }, Ok(mut d)) = (&e, self.damaged.lock())
            {
                d.push((t.clone(), e.to_string()));
            }
            return Err(io::Error::other(format!(
                "{} ({}): {e}",
                self.what, l.cartridge
            )));
        }
        drop(l);
        self.staging.write(kind, name, &bytes)?;
        if let Ok(mut r) = self.reads.lock() {
            r.push(p.clone());
        }
        Ok(())
    }
}

impl TapeBackend {
    /// Puts `cartridge` in the drive: from a virtual library, by name; a real drive needs a hand.
    fn swap(&self, l: &mut Loaded, cartridge: &str, kind: FileKind, name: &str) -> io::Result<()> {
        let Drive::Virtual(_) = &l.drive else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{kind} {name} is on cartridge {cartridge} of the set: load it in {} and run the restore again (what was read is kept)",
                    self.what
                ),
            ));
        };
        tracing::info!("loading cartridge {cartridge} for {kind} {name}");
        l.drive
            .load(Some(cartridge))
            .map_err(|e| io::Error::other(format!("loading cartridge {cartridge}: {e}")))?;
        let label = crate::layout::read_label(l.drive.tape())
            .map_err(|e| io::Error::other(format!("cartridge {cartridge}: {e}")))?;
        if label.label != cartridge {
            return Err(io::Error::other(format!(
                "the library's cartridge {cartridge} is labelled {}",
                label.label
            )));
        }
        l.cartridge = cartridge.to_string();
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
        Ok(self.placed(kind, name)?.placed.entry.size)
    }

    fn remove(&self, _: FileKind, _: &str) -> io::Result<()> {
        Err(read_only())
    }

    fn local_file(&self, kind: FileKind, name: &str) -> io::Result<Option<File>> {
        self.stage(kind, name)?;
        self.staging.local_file(kind, name)
    }
}
