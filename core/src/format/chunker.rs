//! Content-defined chunking with keyed boundaries (FastCDC with normalised chunking).
//!
//! The gear table is derived from a secret seed, so chunk boundaries (and thus chunk sizes)
//! reveal nothing about content to someone without the key. The chunker does no I/O: the caller
//! passes the bytes of the current chunk-in-progress and learns where it ends.

/// Chunk size limits, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkerParams {
    /// No cut before this many bytes.
    pub min: usize,
    /// Target average; a power of two.
    pub avg: usize,
    /// A cut is forced here.
    pub max: usize,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        Self {
            min: 256 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

/// A chunker for one repository (its table depends on the repository key).
pub struct Chunker {
    gear: Box<[u64; 256]>,
    params: ChunkerParams,
    mask_small: u64,
    mask_large: u64,
}

impl Chunker {
    /// Makes the gear table from `seed`.
    pub fn new(seed: &[u8; 32], params: ChunkerParams) -> Self {
        let mut gear = Box::new([0u64; 256]);
        let mut xof = blake3::Hasher::new_keyed(seed);
        xof.update(b"bakfs gear table v1");
        let mut reader = xof.finalize_xof();
        let mut buf = [0u8; 8];
        for g in gear.iter_mut() {
            reader.fill(&mut buf);
            *g = u64::from_le_bytes(buf);
        }
        let bits = params.avg.max(2).trailing_zeros();
        // Normalised chunking: harder to cut before the average, easier after.
        let mask_small = !0u64 << (64 - (bits + 2).min(63));
        let mask_large = !0u64 << (64 - bits.saturating_sub(2).max(1));
        Self {
            gear,
            params,
            mask_small,
            mask_large,
        }
    }

    /// The limits in use.
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Where the chunk that starts at `data[0]` ends.
    ///
    /// Returns `Some(n)`: the chunk is `data[..n]`. Returns `None` if no boundary is found in
    /// `data` and more bytes could change that (`data.len() < max` and not `eof`); at `eof` the
    /// rest is one chunk.
    pub fn cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        let p = self.params;
        if data.len() <= p.min {
            return if eof || data.len() >= p.max {
                Some(data.len())
            } else {
                None
            };
        }
        let end = data.len().min(p.max);
        let normal = p.avg.min(end);
        let mut h: u64 = 0;
        // The hash only depends on the last 64 bytes, so start 64 bytes before `min`.
        let start = p.min.saturating_sub(64);
        for (i, &b) in data.iter().enumerate().take(p.min).skip(start) {
            let _ = i;
            h = (h << 1).wrapping_add(self.gear[b as usize]);
        }
        let mut i = p.min;
        while i < normal {
            h = (h << 1).wrapping_add(self.gear[data[i] as usize]);
            if h & self.mask_small == 0 {
                return Some(i + 1);
            }
            i += 1;
        }
        while i < end {
            h = (h << 1).wrapping_add(self.gear[data[i] as usize]);
            if h & self.mask_large == 0 {
                return Some(i + 1);
            }
            i += 1;
        }
        if end == p.max || eof {
            Some(end)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e3779b97f4a7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn chunk_all(c: &Chunker, d: &[u8]) -> Vec<usize> {
        let mut out = vec![];
        let mut pos = 0;
        while pos < d.len() {
            let n = c.cut(&d[pos..], true).unwrap();
            out.push(n);
            pos += n;
        }
        out
    }

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 2048,
            avg: 8192,
            max: 32768,
        }
    }

    #[test]
    fn streamed_equals_whole_buffer() {
        let c = Chunker::new(&[7; 32], small());
        let d = data(1 << 20);
        let whole = chunk_all(&c, &d);
        // Feed in small increments, as a reader would.
        for step in [1000usize, 4096, 33000] {
            let mut out = vec![];
            let mut buf: Vec<u8> = vec![];
            let mut fed = 0;
            loop {
                let eof = fed == d.len();
                match c.cut(&buf, eof) {
                    Some(n) if n > 0 => {
                        out.push(n);
                        buf.drain(..n);
                    }
                    _ if eof => break,
                    _ => {
                        let take = step.min(d.len() - fed);
                        buf.extend_from_slice(&d[fed..fed + take]);
                        fed += take;
                    }
                }
            }
            assert_eq!(out, whole, "step {step}");
        }
        assert_eq!(whole.iter().sum::<usize>(), d.len());
        assert!(whole
            .iter()
            .rev()
            .skip(1)
            .all(|&n| (2048..=32768).contains(&n)));
        let avg = d.len() / whole.len();
        assert!((4096..=24576).contains(&avg), "avg {avg}");
    }

    #[test]
    fn boundaries_are_keyed_and_shift_resistant() {
        let d = data(1 << 20);
        let a = chunk_all(&Chunker::new(&[1; 32], small()), &d);
        let b = chunk_all(&Chunker::new(&[2; 32], small()), &d);
        assert_ne!(a, b);
        // Inserting bytes at the front only changes the first chunks.
        let c = Chunker::new(&[1; 32], small());
        let mut d2 = b"inserted!".to_vec();
        d2.extend_from_slice(&d);
        let x = chunk_all(&c, &d2);
        let common = a
            .iter()
            .rev()
            .zip(x.iter().rev())
            .take_while(|(p, q)| p == q)
            .count();
        assert!(common + 3 >= a.len(), "{common} of {}", a.len());
    }

    #[test]
    fn small_and_empty() {
        let c = Chunker::new(&[1; 32], small());
        assert_eq!(c.cut(&[], true), Some(0));
        assert_eq!(c.cut(&[1, 2, 3], true), Some(3));
        assert_eq!(c.cut(&[1, 2, 3], false), None);
        assert_eq!(c.cut(&vec![0; 40000], false), Some(32768));
    }
}
