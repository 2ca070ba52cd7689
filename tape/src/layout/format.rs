//! The records bakfs writes on a tape: header records that start each tape file, entry
//! records before each repository file's bytes, and the catalog a job ends with.

use std::fmt;

use bakfs_core::catalog::TapeFile;
use bakfs_core::repo::backend::{check_name, FileKind};
use serde::{Deserialize, Serialize};

/// The length of the records holding a file's bytes (the last one of a file is shorter).
/// 256 KiB: what LTO drives stream well, well under `st`'s limits.
pub const RECORD_LEN: usize = 256 << 10;

/// A job writes a catalog of its entries after this many of them (a checkpoint), so that a
/// catalog is at most about half a megabyte: the room after the early warning takes it.
pub const CHECKPOINT_ENTRIES: usize = 2048;

/// The version of the label and of everything after it on the tape.
pub const LABEL_FORMAT: u32 = 1;

/// Starts the header record of every tape file.
const HEADER_MAGIC: &[u8; 8] = b"BAKFSTP1";
/// Starts every entry record.
const ENTRY_MAGIC: &[u8; 8] = b"BAKFSTE1";
/// Header and entry records are at most this long: a reader's buffer takes them whole.
const MAX_META_RECORD: usize = 64 << 10;

/// A job writing to tapes; chosen by the caller (a time in nanoseconds does), unique per tape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The label: file 0 of every bakfs tape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    /// [`LABEL_FORMAT`] when written; a reader refuses a newer one.
    pub format: u32,
    /// The medium's id in the catalog (32 random bytes in hex, as for a stick).
    pub medium_id: String,
    /// The text on the cartridge's sticker (`A00001L9`).
    pub label: String,
    /// The media pool it belongs to.
    pub pool: String,
    /// The repository whose copies it holds.
    pub repo_id: String,
    /// The media set it belongs to (32 random bytes in hex), and its place in the set from 0.
    pub media_set: String,
    /// Its sequence number in the set.
    pub set_seq: u32,
    /// When it was labelled (ns since the epoch).
    pub labelled_ns: i64,
}

/// The header record that starts a tape file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "file", rename_all = "snake_case", deny_unknown_fields)]
pub enum Header {
    /// File 0.
    Label(Label),
    /// Entries of `job`.
    Data {
        /// The job.
        job: JobId,
    },
    /// The catalog of `job`: `len` bytes of JSON ([`Catalog`]) with this blake3 follow in
    /// records of [`RECORD_LEN`].
    Catalog {
        /// The job.
        job: JobId,
        /// The catalog's length in bytes.
        len: u64,
        /// Its blake3, in hex.
        blake3: String,
    },
}

/// A repository file on the tape, as its entry record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Its kind (never a lock).
    #[serde(with = "kind_name")]
    pub kind: FileKind,
    /// Its name in the repository; checked as a repository name when read.
    pub name: String,
    /// Its length: the bytes follow in `ceil(size / RECORD_LEN)` records.
    pub size: u64,
}

impl Entry {
    /// How many data records follow the entry record.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.size.div_ceil(RECORD_LEN as u64)
    }

    /// The length of data record `i` of the entry.
    #[must_use]
    pub fn record_len(&self, i: u64) -> usize {
        let rest = self.size - i * RECORD_LEN as u64;
        usize::try_from(rest.min(RECORD_LEN as u64)).unwrap_or(RECORD_LEN)
    }

    /// Refuses names a repository does not hold (`..`, `/`, anything but ids and fixed names)
    /// and locks, so that nothing read from a tape addresses a path outside a repository.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.kind == FileKind::Lock {
            return Err(format!("a lock ({}) on a tape", self.name));
        }
        check_name(self.kind, &self.name).map_err(|e| e.to_string())
    }
}

/// A tape file number and the block (record) within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The tape file (0 is the label).
    pub file: u64,
    /// The entry record's block within it (0 is the file's header).
    pub block: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tape file {}, block {}", self.file, self.block)
    }
}

/// An entry where it is on the tape, with the blake3 of its bytes as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placed {
    /// The entry.
    pub entry: Entry,
    /// Where its entry record is.
    pub at: Position,
    /// The blake3 of its bytes, in hex.
    pub blake3: String,
}

impl Placed {
    /// As the catalog database records it (`tape_files`).
    #[must_use]
    pub fn to_catalog(&self) -> TapeFile {
        TapeFile {
            kind: self.entry.kind,
            name: self.entry.name.clone(),
            size: self.entry.size,
            file: self.at.file,
            block: self.at.block,
            blake3: self.blake3.clone(),
        }
    }
}

/// From the catalog database's record.
impl From<TapeFile> for Placed {
    fn from(f: TapeFile) -> Self {
        Placed {
            entry: Entry {
                kind: f.kind,
                name: f.name,
                size: f.size,
            },
            at: Position {
                file: f.file,
                block: f.block,
            },
            blake3: f.blake3,
        }
    }
}

/// What a job wrote to one cartridge, written at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The job.
    pub job: JobId,
    /// When the job closed the cartridge (ns since the epoch).
    pub closed_ns: i64,
    /// Whether the job went on on the next cartridge of the set (this one filled).
    pub continued: bool,
    /// The job's last catalog on this cartridge; `false` for a checkpoint written after every
    /// [`CHECKPOINT_ENTRIES`] entries, so that no catalog outgrows the room after the early
    /// warning and what a job wrote before a crash stays trusted.
    pub closing: bool,
    /// The entries it wrote whole, in tape order.
    pub entries: Vec<Placed>,
}

fn encode<T: Serialize>(magic: &[u8; 8], value: &T) -> Vec<u8> {
    let mut rec = magic.to_vec();
    // Serializing these plain structs cannot fail.
    serde_json::to_writer(&mut rec, value).unwrap_or_default();
    rec
}

fn decode<T: for<'de> Deserialize<'de>>(
    magic: &[u8; 8],
    rec: &[u8],
    what: &str,
) -> Result<T, String> {
    let body = rec
        .strip_prefix(&magic[..])
        .ok_or_else(|| format!("not a bakfs {what} record"))?;
    serde_json::from_slice(body).map_err(|e| format!("a damaged {what} record: {e}"))
}

impl Header {
    /// Its record.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode(HEADER_MAGIC, self)
    }

    /// Reads a header record.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(rec: &[u8]) -> Result<Self, String> {
        decode(HEADER_MAGIC, rec, "header")
    }
}

impl Entry {
    /// Its record.
    pub(crate) fn encode(&self) -> Vec<u8> {
        encode(ENTRY_MAGIC, self)
    }

    /// Reads an entry record and checks the name.
    pub(crate) fn decode(rec: &[u8]) -> Result<Self, String> {
        let e: Entry = decode(ENTRY_MAGIC, rec, "entry")?;
        e.check()?;
        Ok(e)
    }
}

/// The buffer a reader needs for any record bakfs writes.
pub(crate) fn record_buffer() -> Vec<u8> {
    vec![0; RECORD_LEN.max(MAX_META_RECORD)]
}

/// The longest header or entry record a writer may write.
pub(crate) const fn max_meta_record() -> usize {
    MAX_META_RECORD
}

mod kind_name {
    use bakfs_core::repo::backend::FileKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &FileKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(k.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FileKind, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
