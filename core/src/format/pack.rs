//! Pack files: sealed blobs back to back, then a sealed header listing them (design.md §3.6).

use serde::{Deserialize, Serialize};

use super::blob::BlobKind;
use super::PACK_HEADER_AD;
use crate::error::{Error, Result};
use crate::format::crypto::Keys;
use crate::format::id::{BlobId, PackId};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::{open_blob_into, seal_blob};
    use crate::format::crypto::MasterKey;

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
}
