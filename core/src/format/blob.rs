//! Blobs: one chunk or one tree, compressed when it helps and sealed with its id and kind as
//! associated data (design.md §3.5).

use serde::{Deserialize, Serialize};

use super::pack::PackEntry;
use crate::error::{Error, Result};
use crate::format::crypto::{self, Keys};
use crate::format::id::BlobId;

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
