//! A table's Bloom filter: 10 bits per record, 7 probes (about 1% false positives), so that a
//! lookup of a blob a table does not hold (every new blob of a backup, and every table but one
//! for the others) costs no read. Blob ids are keyed hashes, uniformly random: the probes are
//! taken from their bytes (double hashing over bytes 8..24; the fences use the first bytes).

use crate::format::id::BlobId;

/// Bits per record.
const BITS_PER_RECORD: u64 = 10;
/// Probes per blob.
const PROBES: u64 = 7;

/// A Bloom filter over blob ids, as stored in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Filter {
    words: Vec<u64>,
}

fn probes(id: &BlobId, bits: u64) -> impl Iterator<Item = u64> {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&id.0[8..16]);
    b.copy_from_slice(&id.0[16..24]);
    let (h1, h2) = (u64::from_le_bytes(a), u64::from_le_bytes(b) | 1);
    (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bits)
}

impl Filter {
    /// An empty filter for about `records` blobs.
    pub fn with_capacity(records: u64) -> Filter {
        let words = (records.max(1) * BITS_PER_RECORD).div_ceil(64);
        Filter {
            words: vec![0; words as usize],
        }
    }

    /// A filter from its stored words.
    pub fn from_words(words: Vec<u64>) -> Filter {
        Filter { words }
    }

    /// The words, to store.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    /// Adds a blob.
    pub fn insert(&mut self, id: &BlobId) {
        let bits = self.bits();
        for p in probes(id, bits) {
            self.words[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    /// Whether the blob may be in the table (false: it surely is not).
    pub fn may_hold(&self, id: &BlobId) -> bool {
        let bits = self.bits();
        bits == 0 || probes(id, bits).all(|p| self.words[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_added_and_passes_over_about_99_percent_of_the_rest() {
        let mut f = Filter::with_capacity(10_000);
        let ids: Vec<BlobId> = (0..10_000).map(|_| BlobId::random()).collect();
        for id in &ids {
            f.insert(id);
        }
        assert!(ids.iter().all(|id| f.may_hold(id)));
        let false_pos = (0..100_000)
            .filter(|_| f.may_hold(&BlobId::random()))
            .count();
        assert!(false_pos < 2_500, "{false_pos} false positives in 100,000");
    }
}
