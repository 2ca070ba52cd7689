//! On-disk formats: config, pack layout, index, trees and snapshot manifests.
//!
//! Encoding and decoding only; no I/O. See `docs/design.md` for the byte layouts.

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::crypto::{self, Keys};
use crate::error::{Error, Result};
use crate::id::{BlobId, PackId, RepoId, SnapshotId};

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

/// Kind of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BlobKind {
    /// A chunk of file content.
    Data,
    /// A serialized [`Tree`].
    Tree,
}

impl BlobKind {
    /// The byte bound into the blob's associated data.
    pub fn ad_byte(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }
}

/// Where a blob sits in its pack, as recorded in the pack header and the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackEntry {
    /// Blob id.
    pub id: BlobId,
    /// Data or tree.
    pub kind: BlobKind,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_len: u32,
    /// Whether the sealed payload is zstd-compressed.
    pub compressed: bool,
}

const PACK_HEADER_AD: &[u8] = b"bakfs pack header v1";
const INDEX_AD: &[u8] = b"bakfs index v1";
const SNAPSHOT_AD: &[u8] = b"bakfs snapshot v1";

thread_local! {
    /// One compression context per level in use (the sample test uses level 1).
    static COMPRESSORS: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(Vec::new()) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// zstd-compresses with a context reused by this thread.
fn compress(plain: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSORS.with(|c| {
        let mut c = c.borrow_mut();
        if !c.iter().any(|(l, _)| *l == level) {
            c.push((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        c.iter_mut()
            .find(|(l, _)| *l == level)?
            .1
            .compress(plain)
            .ok()
    })
}

/// zstd-decompresses into `out` (its length is the most accepted) with a context reused by this
/// thread; returns the length decompressed.
fn decompress_into(data: &[u8], out: &mut [u8]) -> std::io::Result<usize> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress_to_buffer(data, out),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
}

/// Whether a large blob is not worth compressing (already compressed data, media): decided by
/// compressing a 32 KiB sample from its middle at level 1, which costs ~3% of compressing it all.
fn looks_incompressible(plain: &[u8]) -> bool {
    const SAMPLE: usize = 32 * 1024;
    if plain.len() < 4 * SAMPLE {
        return false;
    }
    let mid = plain.len() / 2 - SAMPLE / 2;
    let sample = &plain[mid..mid + SAMPLE];
    compress(sample, 1).is_some_and(|c| c.len() * 100 > sample.len() * 97)
}

/// Seals one blob: compress if it helps, encrypt binding id and kind.
/// Returns the sealed bytes and whether they are compressed.
pub fn seal_blob(
    keys: &Keys,
    id: &BlobId,
    kind: BlobKind,
    plain: &[u8],
    level: i32,
) -> (Vec<u8>, bool) {
    let ad = crypto::blob_ad(id, kind.ad_byte());
    if plain.len() >= 64 && !looks_incompressible(plain) {
        if let Some(c) = compress(plain, level) {
            if c.len() + 16 < plain.len() {
                return (keys.seal(&c, &ad), true);
            }
        }
    }
    (keys.seal(plain, &ad), false)
}

/// Opens one blob and checks that its plaintext hashes to its id. `sealed` is decrypted in
/// place (its contents are then unspecified) and the plaintext lands in a buffer of the right
/// length that `out` makes (decompressed straight into it).
///
/// # Errors
/// [`Error::Damaged`] if authentication, decompression or the id check fails; an error from
/// `out` is returned as I/O.
pub fn open_blob_into<B: std::ops::DerefMut<Target = [u8]>>(
    keys: &Keys,
    e: &PackEntry,
    sealed: &mut [u8],
    out: impl FnOnce(usize) -> std::io::Result<B>,
) -> Result<B> {
    let what = || format!("blob {}", e.id);
    let ad = crypto::blob_ad(&e.id, e.kind.ad_byte());
    let inner = keys
        .open_in_place(sealed, &ad)
        .map_err(|err| Error::damaged(what(), err.to_string()))?;
    let raw_len = e.raw_len as usize;
    let mut buf = if e.compressed {
        let mut buf = out(raw_len).map_err(|err| Error::io(what(), err))?;
        let n = decompress_into(inner, &mut buf)
            .map_err(|err| Error::damaged(what(), format!("zstd: {err}")))?;
        if n != raw_len {
            return Err(Error::damaged(what(), "content does not match its id"));
        }
        buf
    } else {
        if inner.len() != raw_len {
            return Err(Error::damaged(what(), "content does not match its id"));
        }
        let mut buf = out(raw_len).map_err(|err| Error::io(what(), err))?;
        buf.copy_from_slice(inner);
        buf
    };
    if keys.blob_id(&buf) != e.id {
        // Not handed out: the caller gets an error, never these bytes.
        buf.fill(0);
        return Err(Error::damaged(what(), "content does not match its id"));
    }
    Ok(buf)
}

/// Appends the sealed header and its length to a pack's blob bytes.
pub fn finish_pack(keys: &Keys, mut body: Vec<u8>, entries: &[PackEntry]) -> Vec<u8> {
    let header = postcard::to_stdvec(entries).unwrap_or_default();
    let sealed = keys.seal(&header, PACK_HEADER_AD);
    body.reserve_exact(sealed.len() + 4);
    body.extend_from_slice(&sealed);
    body.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
    body
}

/// Reads the header of a complete pack file.
///
/// # Errors
/// [`Error::Damaged`] if the pack is truncated or its header does not authenticate.
pub fn read_pack_header(keys: &Keys, id: &PackId, pack: &[u8]) -> Result<Vec<PackEntry>> {
    let what = || format!("pack {id}");
    if pack.len() < 4 {
        return Err(Error::damaged(what(), "truncated"));
    }
    let n = u32::from_le_bytes([
        pack[pack.len() - 4],
        pack[pack.len() - 3],
        pack[pack.len() - 2],
        pack[pack.len() - 1],
    ]) as usize;
    if n + 4 > pack.len() {
        return Err(Error::damaged(what(), "truncated header"));
    }
    let sealed = &pack[pack.len() - 4 - n..pack.len() - 4];
    let plain = keys
        .open(sealed, PACK_HEADER_AD)
        .map_err(|e| Error::damaged(what(), format!("header: {e}")))?;
    let entries: Vec<PackEntry> =
        postcard::from_bytes(&plain).map_err(|e| Error::damaged(what(), format!("header: {e}")))?;
    let body_len = pack.len() - 4 - n;
    for e in &entries {
        if e.offset as usize + e.length as usize > body_len {
            return Err(Error::damaged(what(), "header points past the end"));
        }
    }
    Ok(entries)
}

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

/// The kind of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Unix socket.
    Socket,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Name: one path component, any bytes but `/` and NUL, not `.` or `..`.
    pub name: Vec<u8>,
    /// Kind.
    pub kind: NodeKind,
    /// Permission bits, including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Owner's name, if known.
    pub user: Option<String>,
    /// Group's name, if known.
    pub group: Option<String>,
    /// Size in bytes (files) or target length (symlinks).
    pub size: u64,
    /// Modification time, Unix ns. (Access times are not recorded: they change on every read
    /// and would make every tree new; a restore sets atime to mtime.)
    pub mtime_ns: i64,
    /// Status change time, Unix ns (for change detection; not restored).
    pub ctime_ns: i64,
    /// Inode number in the source (for change detection and hard links).
    pub inode: u64,
    /// Device of the source filesystem.
    pub dev: u64,
    /// Link count in the source.
    pub nlink: u64,
    /// Device number of device nodes.
    pub rdev: u64,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Extended attributes, including `system.posix_acl_*` ACLs, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// File content chunks, in order.
    pub content: Vec<BlobId>,
    /// Directory content.
    pub subtree: Option<BlobId>,
}

/// A directory: its entries sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Entries, sorted by name bytes, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Encodes for storage.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Decodes a tree blob's plaintext.
    ///
    /// # Errors
    /// [`Error::Damaged`] if malformed.
    pub fn decode(id: &BlobId, b: &[u8]) -> Result<Self> {
        postcard::from_bytes(b).map_err(|e| Error::damaged(format!("tree {id}"), e.to_string()))
    }

    /// The entry named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

/// Whether `name` is acceptable as a single path component (refuses `..`, `/`, NUL, empty).
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn open_blob(keys: &Keys, e: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
        open_blob_into(keys, e, &mut sealed.to_vec(), |n| Ok(vec![0; n]))
    }

    #[test]
    fn pack_round_trip_and_damage() {
        let keys = MasterKey::generate().derive();
        let mut body = vec![];
        let mut entries = vec![];
        for i in 0..3u8 {
            let plain = vec![i; 1000 * (i as usize + 1)];
            let id = keys.blob_id(&plain);
            let (sealed, compressed) = seal_blob(&keys, &id, BlobKind::Data, &plain, 3);
            entries.push(PackEntry {
                id,
                kind: BlobKind::Data,
                offset: body.len() as u32,
                length: sealed.len() as u32,
                raw_len: plain.len() as u32,
                compressed,
            });
            body.extend_from_slice(&sealed);
        }
        let pack = finish_pack(&keys, body, &entries);
        let pid = PackId::hash_of(&pack);
        let h = read_pack_header(&keys, &pid, &pack).unwrap();
        assert_eq!(h, entries);
        for e in &h {
            let b = open_blob(
                &keys,
                e,
                &pack[e.offset as usize..(e.offset + e.length) as usize],
            )
            .unwrap();
            assert_eq!(b.len(), e.raw_len as usize);
        }
        // a flipped byte in a blob is caught
        let mut bad = pack.clone();
        bad[10] ^= 0x40;
        let e = &h[0];
        assert!(open_blob(
            &keys,
            e,
            &bad[e.offset as usize..(e.offset + e.length) as usize]
        )
        .is_err());
        // truncation is caught
        assert!(read_pack_header(&keys, &pid, &pack[..pack.len() - 10]).is_err());
        // the kind is bound: a data blob is not accepted as a tree
        let mut as_tree = *e;
        as_tree.kind = BlobKind::Tree;
        assert!(open_blob(
            &keys,
            &as_tree,
            &pack[e.offset as usize..(e.offset + e.length) as usize]
        )
        .is_err());
    }

    #[test]
    fn safe_names() {
        assert!(is_safe_name(b"a"));
        assert!(is_safe_name(&[0xff, 0xfe]));
        assert!(!is_safe_name(b".."));
        assert!(!is_safe_name(b"."));
        assert!(!is_safe_name(b"a/b"));
        assert!(!is_safe_name(b""));
    }
}
