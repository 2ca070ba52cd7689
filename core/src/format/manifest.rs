//! Index files and snapshot manifests (design.md §3.7, §3.8): the files named by the hash of
//! their sealed bytes that make packs findable and snapshots exist.

use serde::{Deserialize, Serialize};

use super::pack::PackEntry;
use super::{CONDEMNED_AD, INDEX_AD, SNAPSHOT_AD};
use crate::error::{Error, Result};
use crate::format::crypto::Keys;
use crate::format::id::{BlobId, PackId, SnapshotId};

/// One pack as listed in an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack id.
    pub id: PackId,
    /// Pack file size.
    pub size: u64,
    /// Blobs in the pack.
    pub blobs: Vec<PackEntry>,
}

/// Content of an `index/` file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    /// Packs described.
    pub packs: Vec<IndexPack>,
}

/// Content of a `snapshots/` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Time the backup started, Unix nanoseconds (UTC).
    pub time_ns: i64,
    /// Host name.
    pub host: String,
    /// User that ran the backup.
    pub user: String,
    /// Absolute paths backed up (or the stdin name).
    pub paths: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree.
    pub tree: BlobId,
    /// Snapshot used as parent for change detection.
    pub parent: Option<SnapshotId>,
    /// Job name from the configuration.
    pub job: Option<String>,
    /// Exclude patterns in effect.
    pub excludes: Vec<String>,
    /// Summary of the run.
    pub summary: Summary,
}

/// Figures of a backup run, stored in its snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Files and other non-directories in the snapshot.
    pub files: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Sum of file sizes in the snapshot.
    pub bytes: u64,
    /// Bytes read from files (the rest were unchanged).
    pub bytes_read: u64,
    /// Plaintext bytes of new blobs.
    pub bytes_added: u64,
    /// Bytes of packs written.
    pub bytes_stored: u64,
    /// Files that could not be read or changed while read.
    pub errors: u64,
    /// Whether some files are missing or inconsistent.
    pub incomplete: bool,
    /// Seconds the run took.
    pub duration_s: f64,
}

/// What a prune took out of the index and will delete once no process that could still use it
/// runs: a file in `condemned/` (design.md §4.3). Sealed like an index file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Condemned {
    /// When written (the prune's clock; for people).
    pub time_ns: i64,
    /// The locks other processes held when the packs left the index: those processes may have
    /// read the index before, and may still refer to the packs' blobs.
    pub locks: Vec<String>,
    /// The snapshots the prune marked from (hex ids); later ones are walked again.
    pub snapshots: Vec<String>,
    /// Packs taken out of the index, with their blobs (to index again if a snapshot made
    /// meanwhile needs one).
    pub packs: Vec<IndexPack>,
    /// Packs no index listed (hex ids): deleted unless their writer has indexed them since.
    pub unindexed: Vec<String>,
}

/// Seals a condemnation record.
pub fn seal_condemned(keys: &Keys, c: &Condemned) -> Vec<u8> {
    let plain = postcard::to_stdvec(c).unwrap_or_default();
    let z = zstd::bulk::compress(&plain, 3).unwrap_or(plain);
    keys.seal(&z, CONDEMNED_AD)
}

/// Opens a condemnation record.
///
/// # Errors
/// [`Error::Damaged`] on authentication or decoding failure.
pub fn open_condemned(keys: &Keys, name: &str, b: &[u8]) -> Result<Condemned> {
    let what = || format!("condemned {name}");
    let c = keys
        .open(b, CONDEMNED_AD)
        .map_err(|e| Error::damaged(what(), e.to_string()))?;
    let plain =
        zstd::stream::decode_all(&c[..]).map_err(|e| Error::damaged(what(), e.to_string()))?;
    postcard::from_bytes(&plain).map_err(|e| Error::damaged(what(), e.to_string()))
}

/// Seals an index file.
pub fn seal_index(keys: &Keys, idx: &IndexFile) -> Vec<u8> {
    let plain = postcard::to_stdvec(idx).unwrap_or_default();
    let c = zstd::bulk::compress(&plain, 3).unwrap_or(plain);
    keys.seal(&c, INDEX_AD)
}

/// Opens an index file.
///
/// # Errors
/// [`Error::Damaged`] on authentication or decoding failure.
pub fn open_index(keys: &Keys, name: &str, b: &[u8]) -> Result<IndexFile> {
    let what = || format!("index {name}");
    let c = keys
        .open(b, INDEX_AD)
        .map_err(|e| Error::damaged(what(), e.to_string()))?;
    let plain =
        zstd::stream::decode_all(&c[..]).map_err(|e| Error::damaged(what(), e.to_string()))?;
    postcard::from_bytes(&plain).map_err(|e| Error::damaged(what(), e.to_string()))
}

/// Seals a snapshot manifest.
pub fn seal_snapshot(keys: &Keys, s: &Snapshot) -> Vec<u8> {
    keys.seal(&serde_json::to_vec(s).unwrap_or_default(), SNAPSHOT_AD)
}

/// Opens a snapshot manifest.
///
/// # Errors
/// [`Error::Damaged`] on authentication or decoding failure.
pub fn open_snapshot(keys: &Keys, name: &str, b: &[u8]) -> Result<Snapshot> {
    let what = || format!("snapshot {name}");
    let plain = keys
        .open(b, SNAPSHOT_AD)
        .map_err(|e| Error::damaged(what(), e.to_string()))?;
    serde_json::from_slice(&plain).map_err(|e| Error::damaged(what(), e.to_string()))
}
