//! What bakfs writes on a tape, and how it is read back with or without the catalog
//! (docs/tape.md has the byte format).
//!
//! A tape is a sequence of tape files, each ended by a filemark:
//!
//! - file 0, the **label**: one header record naming the medium, its label text, pool,
//!   repository, media set and the cartridge's place in it ([`Label`]);
//! - per job, one or more **data files**: a header record naming the job, then entries, each
//!   an entry record ([`Entry`]: kind, name, size) followed by the file's bytes in records of
//!   [`RECORD_LEN`] (the last one shorter);
//! - per job, last, its **catalog file**: which file and block holds each entry the job
//!   wrote whole, with each entry's blake3 ([`Catalog`]); and after every
//!   [`CHECKPOINT_ENTRIES`] entries a checkpoint catalog of those, in a tape file of its own
//!   between data files, so that no catalog outgrows the room after the early warning.
//!
//! Every tape file starts with a self-describing header record, so [`scan`](reader::scan)
//! reads a tape without the catalog database. A job's entries are trusted only when a catalog
//! file of the job lists them: a job killed mid-write leaves data files without one, which a
//! scan reports and ignores, and the next job appends after the last filemark
//! ([`TapeWriter::append`]). Repository files are copied as they are, so packs, index files
//! and manifests stay encrypted; the key wrappings and `config` travel too, so that a tape
//! restores alone with the passphrase.

mod format;
pub mod reader;
pub mod writer;

pub use format::{
    Catalog, Entry, Header, JobId, Label, Placed, Position, CHECKPOINT_ENTRIES, LABEL_FORMAT,
    RECORD_LEN,
};
pub use reader::{read_entry, read_label, scan, ReadError, Scan, ScannedJob};
pub use writer::{label_tape, Placement, TapeWriter, WriteError};

#[cfg(test)]
mod tests;
