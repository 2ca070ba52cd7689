//! Writing a tape: its label, and a job's entries and catalog after what is on it.

use std::io::Read;

use bakfs_core::repo::backend::FileKind;

use super::format::{
    max_meta_record, Catalog, Entry, Header, JobId, Label, Placed, Position, CHECKPOINT_ENTRIES,
};
use super::reader::{read_label, ReadError};
use crate::{TapeDrive, TapeError};

/// Why writing to a tape failed. Nothing the job wrote is trusted until its catalog is on the
/// tape ([`TapeWriter::close`]).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The drive failed (offline, write-protected, a write error, end of medium).
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// The tape's label could not be read, or it is not a bakfs tape.
    #[error(transparent)]
    Label(#[from] ReadError),
    /// The tape belongs elsewhere: nothing was written.
    #[error("cartridge {label} belongs to {what} {found}, not {expected}: nothing was written")]
    Foreign {
        /// Its label text.
        label: String,
        /// "repository" or "pool".
        what: &'static str,
        /// What the label says.
        found: String,
        /// What the job writes.
        expected: String,
    },
    /// Reading the file to copy failed; it is not on the tape (the tape file was closed).
    #[error("reading {kind} {name} to write it to tape: {source}")]
    Source {
        /// Its kind.
        kind: FileKind,
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tape filled up before the job's catalog was written: the job's entries on it are
    /// not trusted.
    #[error("no room left on the tape for the job's catalog")]
    NoRoomForCatalog,
}

/// Where [`TapeWriter::write`] put a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On the tape, whole.
    Written(Placed),
    /// The tape is nearly full (the early warning): this file is not on it. Close the
    /// cartridge ([`TapeWriter::close`]) and go on with the next one of the set.
    Full,
}

/// Writes `label` as file 0 of the cartridge in `drive`, erasing everything on it.
///
/// # Errors
/// [`TapeError::WriteProtected`] and the drive's other errors.
pub fn label_tape(drive: &mut dyn TapeDrive, label: &Label) -> Result<(), TapeError> {
    drive.rewind()?;
    drive.write_record(&Header::Label(label.clone()).encode())?;
    drive.write_filemarks(1)
}

/// A job writing to one cartridge: entries in data files, then its catalog.
pub struct TapeWriter<'d> {
    drive: &'d mut dyn TapeDrive,
    job: JobId,
    /// The tape file being written, or the next one.
    file: u64,
    /// The next block in it.
    block: u64,
    /// A data file of this job is open (its header is written).
    in_data: bool,
    /// The early warning came: nothing more goes on this cartridge but the catalog.
    full: bool,
    placed: Vec<Placed>,
    /// How many of `placed` a checkpoint catalog lists already.
    checkpointed: usize,
    /// A checkpoint catalog after this many entries.
    checkpoint_every: usize,
    buf: Vec<u8>,
}

impl<'d> TapeWriter<'d> {
    /// Opens the cartridge in `drive` for `job`: reads its label, checks it holds copies of
    /// `repo_id` in `pool`, and moves to the end of data. A tape file left open by a job that
    /// was killed or lost power (records after the last filemark) is closed with a filemark
    /// first: it is never continued, and its job, having no catalog, is never trusted.
    ///
    /// # Errors
    /// [`WriteError::Label`], [`WriteError::Foreign`], the drive's errors.
    pub fn append(
        drive: &'d mut dyn TapeDrive,
        job: JobId,
        repo_id: &str,
        pool: &str,
    ) -> Result<(Self, Label), WriteError> {
        let label = read_label(drive)?;
        for (what, found, expected) in [
            ("repository", &label.repo_id, repo_id),
            ("pool", &label.pool, pool),
        ] {
            if found != expected {
                return Err(WriteError::Foreign {
                    label: label.label.clone(),
                    what,
                    found: found.clone(),
                    expected: expected.to_string(),
                });
            }
        }
        drive.seek_end_of_data()?;
        let torn = match drive.space_records(-1) {
            Ok(()) => true,
            Err(TapeError::Filemark) => false,
            Err(e) => return Err(e.into()),
        };
        drive.seek_end_of_data()?;
        if torn {
            tracing::warn!(
                tape = %label.label,
                "the last tape file was never closed (a job killed mid-write): closing it"
            );
            drive.write_filemarks(1)?;
        }
        let file = drive.status()?.file.ok_or_else(|| TapeError::Io {
            op: crate::Operation::SeekEndOfData,
            path: label.label.clone().into(),
            source: std::io::Error::other(
                "the drive does not know the file number at the end of data",
            ),
        })?;
        Ok((Self::at(drive, job, file), label))
    }

    /// A writer for a cartridge just labelled ([`label_tape`]): the job's files start at file 1.
    #[must_use]
    pub fn after_label(drive: &'d mut dyn TapeDrive, job: JobId) -> Self {
        Self::at(drive, job, 1)
    }

    fn at(drive: &'d mut dyn TapeDrive, job: JobId, file: u64) -> Self {
        Self {
            drive,
            job,
            file,
            block: 0,
            in_data: false,
            full: false,
            placed: Vec::new(),
            checkpointed: 0,
            checkpoint_every: CHECKPOINT_ENTRIES,
            buf: Vec::new(),
        }
    }

    /// Writes a checkpoint catalog after every `n` entries instead of [`CHECKPOINT_ENTRIES`].
    #[must_use]
    pub fn checkpoint_every(mut self, n: usize) -> Self {
        self.checkpoint_every = n.max(1);
        self
    }

    /// What the job wrote whole so far.
    #[must_use]
    pub fn placed(&self) -> &[Placed] {
        &self.placed
    }

    /// Writes a record; `Ok(false)` at the early warning (nothing written).
    fn record(&mut self, rec: &[u8]) -> Result<bool, TapeError> {
        match self.drive.write_record(rec) {
            Ok(()) => {
                self.block += 1;
                Ok(true)
            }
            Err(TapeError::EarlyWarning | TapeError::EndOfMedium) => {
                self.full = true;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Ends the open data file, if any.
    fn end_file(&mut self) -> Result<(), TapeError> {
        if self.in_data {
            self.drive.write_filemarks(1)?;
            self.in_data = false;
            self.file += 1;
            self.block = 0;
        }
        Ok(())
    }

    /// Ends the data file being written, so that what follows starts a tape file of its own
    /// (a job puts its small files, which every restore reads, apart from its packs).
    ///
    /// # Errors
    /// The drive's.
    pub fn next_file(&mut self) -> Result<(), TapeError> {
        self.end_file()
    }

    /// Whether the early warning came: only the catalog goes on this cartridge now.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Copies `size` bytes of `kind`/`name` from `src` onto the tape. A content-addressed
    /// file is recorded with its name as its blake3, unchecked: readers check it (a damaged
    /// source reads back as damage, never as the file).
    ///
    /// # Errors
    /// [`WriteError::Source`] (the file is not on the tape; the job can go on), the drive's
    /// errors (the job cannot).
    pub fn write(
        &mut self,
        kind: FileKind,
        name: &str,
        size: u64,
        src: &mut dyn Read,
    ) -> Result<Placement, WriteError> {
        let entry = Entry {
            kind,
            name: name.to_string(),
            size,
        };
        entry.check().map_err(|e| WriteError::Source {
            kind,
            name: name.to_string(),
            source: std::io::Error::other(e),
        })?;
        if self.full {
            return Ok(Placement::Full);
        }
        if !self.in_data {
            if !self.record(&Header::Data { job: self.job }.encode())? {
                return Ok(Placement::Full);
            }
            self.in_data = true;
        }
        let rec = entry.encode();
        debug_assert!(rec.len() <= max_meta_record());
        let at = Position {
            file: self.file,
            block: self.block,
        };
        if !self.record(&rec)? {
            return Ok(Placement::Full);
        }
        // A pack, index file or manifest is named by its blake3: the name is what the catalog
        // records, and every reader checks the bytes against it (bakfs-mediad reads back every
        // file it wrote), so the write path does not hash them, and keeps dd's pace. The
        // config and key wrappings are hashed here.
        let mut hasher = (!kind.content_addressed()).then(blake3::Hasher::new);
        for i in 0..entry.records() {
            let len = entry.record_len(i);
            self.buf.resize(len, 0);
            if let Err(source) = src.read_exact(&mut self.buf) {
                // The entry is short on the tape: end its file, so that a scan never walks
                // into what follows as if it were the entry's.
                self.end_file()?;
                return Err(WriteError::Source {
                    kind,
                    name: name.to_string(),
                    source,
                });
            }
            if let Some(h) = &mut hasher {
                h.update(&self.buf);
            }
            let buf = std::mem::take(&mut self.buf);
            let written = self.record(&buf);
            self.buf = buf;
            if !written? {
                return Ok(Placement::Full);
            }
        }
        let blake3 = hasher.map_or_else(|| name.to_string(), |h| h.finalize().to_hex().to_string());
        let placed = Placed { entry, at, blake3 };
        self.placed.push(placed.clone());
        if self.placed.len() - self.checkpointed >= self.checkpoint_every {
            self.end_file().map_err(no_room)?;
            self.write_catalog(false, false, 0)?;
        }
        Ok(Placement::Written(placed))
    }

    /// Ends the job on this cartridge: closes its data file and writes its catalog, in the
    /// room the drive keeps after the early warning. When this returns, everything the
    /// catalog lists is on the medium (the filemark flushed it). `continued` says the job goes
    /// on on the next cartridge of the set.
    ///
    /// # Errors
    /// [`WriteError::NoRoomForCatalog`], the drive's errors.
    pub fn close(mut self, continued: bool, closed_ns: i64) -> Result<Catalog, WriteError> {
        self.end_file().map_err(no_room)?;
        self.write_catalog(true, continued, closed_ns)?;
        Ok(Catalog {
            job: self.job,
            closed_ns,
            continued,
            closing: true,
            entries: std::mem::take(&mut self.placed),
        })
    }

    /// Writes a catalog file of the entries since the last one (a data file must not be open),
    /// past the early warning if need be.
    fn write_catalog(
        &mut self,
        closing: bool,
        continued: bool,
        closed_ns: i64,
    ) -> Result<(), WriteError> {
        let catalog = Catalog {
            job: self.job,
            closed_ns,
            continued,
            closing,
            entries: self.placed[self.checkpointed..].to_vec(),
        };
        let bytes = serde_json::to_vec(&catalog)
            .map_err(|e| WriteError::Tape(TapeError::InvalidArgument(e.to_string())))?;
        let header = Header::Catalog {
            job: self.job,
            len: bytes.len() as u64,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        };
        let records = std::iter::once(header.encode())
            .chain(bytes.chunks(super::RECORD_LEN).map(<[u8]>::to_vec));
        for rec in records {
            // Past the early warning a refused write is tried again: there is room for this.
            match self.drive.write_record(&rec) {
                Err(TapeError::EarlyWarning) => {
                    self.full = true;
                    self.drive.write_record(&rec)
                }
                r => r,
            }
            .map_err(no_room)?;
        }
        self.drive.write_filemarks(1).map_err(no_room)?;
        self.checkpointed = self.placed.len();
        self.file += 1;
        self.block = 0;
        Ok(())
    }
}

/// The end of medium while a catalog is written: the job's entries since the last catalog are
/// not trusted.
fn no_room(e: TapeError) -> WriteError {
    match e {
        TapeError::EndOfMedium => WriteError::NoRoomForCatalog,
        e => e.into(),
    }
}
