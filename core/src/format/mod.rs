//! On-disk formats: ids, keys and sealing, the chunker, and the byte layouts of the config,
//! blobs, packs, index files, trees and snapshot manifests.
//!
//! Encoding and decoding only; no I/O. See `docs/design.md` for the byte layouts.

pub mod blob;
pub mod chunker;
pub mod crypto;
#[cfg(test)]
mod fixture_v1;
pub mod id;
pub mod manifest;
pub mod pack;
pub mod paper;
pub mod tree;

pub use blob::{open_blob_into, seal_blob, BlobKind};
pub use manifest::{open_condemned, open_index, open_snapshot, seal_index, seal_snapshot};
pub use manifest::{seal_condemned, Condemned, IndexFile, IndexPack, Snapshot, Summary};
pub use pack::{finish_pack, read_pack_header, PackEntry};
pub use tree::{is_safe_name, Node, NodeKind, Tree};

use serde::{Deserialize, Serialize};

use chunker::ChunkerParams;
use id::RepoId;

/// Repository format version written by this code and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The plaintext `config` file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Format version.
    pub version: u32,
    /// Random repository id.
    pub id: RepoId,
    /// Chunk size limits.
    pub chunker: ChunkerParams,
    /// zstd level for blobs.
    pub zstd_level: i32,
}

pub(crate) const PACK_HEADER_AD: &[u8] = b"bakfs pack header v1";
pub(crate) const INDEX_AD: &[u8] = b"bakfs index v1";
pub(crate) const SNAPSHOT_AD: &[u8] = b"bakfs snapshot v1";
pub(crate) const CONDEMNED_AD: &[u8] = b"bakfs condemned v1";
