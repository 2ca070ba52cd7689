//! One table of the searched index (design.md §3.7.1): the entries of some index files as
//! fixed-size records sorted by blob id, in a local file that is searched with one positioned
//! read per lookup rather than loaded.
//!
//! Layout: records (48 bytes each, sorted by blob id, a blob listed in several packs once per
//! pack), then one fence per run of [`RUN`] records (the run's first id and the first 8 bytes of
//! the blake3 of its bytes), then the packs (id, size), then a Bloom filter of the blob ids
//! (`filter.rs`), then a footer (magic and counts) and the blake3 of everything before it.
//! Opening reads the fences, packs and filter only; a lookup the filter lets through reads the
//! one run its id can be in and checks it against its fence, so a damaged table is found the
//! first time it is used, never read as a wrong location.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::filter::Filter;
use crate::format::id::{BlobId, PackId};
use crate::format::{BlobKind, PackEntry};

/// Records per run: one lookup reads one run (3 KiB).
pub(super) const RUN: usize = 64;
/// Bytes per record.
const REC: usize = 48;
/// Bytes per fence.
const FENCE: usize = 40;
/// Bytes per pack.
const PACK: usize = 40;
const MAGIC: &[u8; 16] = b"bakfs idxtbl v1\0";
/// Footer: magic, records, runs, packs, filter words; then the blake3 trailer.
const FOOTER: usize = 16 + 8 * 4;
const TRAILER: usize = 32;
const COMPRESSED: u32 = 1 << 31;
const TREE: u32 = 1 << 30;

/// A table found damaged: what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage(pub String);

/// One record: a blob in a pack (`pack` numbers the table's packs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    pub pack: u32,
    pub entry: PackEntry,
}

fn encode(pack: u32, e: &PackEntry) -> io::Result<[u8; REC]> {
    if e.length >= TREE {
        return Err(io::Error::other(format!(
            "blob {} is {} bytes, more than an index table records",
            e.id, e.length
        )));
    }
    let mut flags = e.length;
    if e.compressed {
        flags |= COMPRESSED;
    }
    if e.kind == BlobKind::Tree {
        flags |= TREE;
    }
    let mut r = [0u8; REC];
    r[..32].copy_from_slice(&e.id.0);
    r[32..36].copy_from_slice(&pack.to_le_bytes());
    r[36..40].copy_from_slice(&e.offset.to_le_bytes());
    r[40..44].copy_from_slice(&flags.to_le_bytes());
    r[44..48].copy_from_slice(&e.raw_len.to_le_bytes());
    Ok(r)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn id_at(b: &[u8]) -> [u8; 32] {
    let mut id = [0u8; 32];
    id.copy_from_slice(&b[..32]);
    id
}

fn decode(r: &[u8]) -> Record {
    let flags = u32_at(r, 40);
    Record {
        pack: u32_at(r, 32),
        entry: PackEntry {
            id: BlobId(id_at(r)),
            kind: if flags & TREE != 0 {
                BlobKind::Tree
            } else {
                BlobKind::Data
            },
            offset: u32_at(r, 36),
            length: flags & !(COMPRESSED | TREE),
            raw_len: u32_at(r, 44),
            compressed: flags & COMPRESSED != 0,
        },
    }
}

fn run_check(run: &[u8]) -> u64 {
    u64_at(blake3::hash(run).as_bytes(), 0)
}

/// Writes a table from records given in blob id order.
pub(super) struct TableWriter {
    out: BufWriter<File>,
    hasher: blake3::Hasher,
    run: Vec<u8>,
    fences: Vec<([u8; 32], u64)>,
    records: u64,
    last: Option<[u8; 32]>,
    filter: Filter,
}

impl TableWriter {
    /// Starts a table of about `records` records (its filter's size) in `file` (empty, opened
    /// for writing).
    pub fn new(file: File, records: u64) -> TableWriter {
        TableWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            hasher: blake3::Hasher::new(),
            run: Vec::with_capacity(RUN * REC),
            fences: Vec::new(),
            records: 0,
            last: None,
            filter: Filter::with_capacity(records),
        }
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.hasher.update(b);
        self.out.write_all(b)
    }

    /// Appends one record; ids must come in ascending order.
    pub fn push(&mut self, pack: u32, e: &PackEntry) -> io::Result<()> {
        if self.last.is_some_and(|l| l > e.id.0) {
            return Err(io::Error::other("index table records out of order"));
        }
        self.last = Some(e.id.0);
        self.filter.insert(&e.id);
        self.run.extend_from_slice(&encode(pack, e)?);
        self.records += 1;
        if self.run.len() == RUN * REC {
            self.end_run()?;
        }
        Ok(())
    }

    fn end_run(&mut self) -> io::Result<()> {
        if self.run.is_empty() {
            return Ok(());
        }
        self.fences.push((id_at(&self.run), run_check(&self.run)));
        let run = std::mem::take(&mut self.run);
        self.put(&run)?;
        self.run = run;
        self.run.clear();
        Ok(())
    }

    /// Writes the fences, the packs (numbered as the records refer to them) and the footer, and
    /// syncs the file.
    pub fn finish(mut self, packs: &[(PackId, u64)]) -> io::Result<File> {
        self.end_run()?;
        for (id, check) in std::mem::take(&mut self.fences).iter() {
            self.put(id)?;
            self.put(&check.to_le_bytes())?;
        }
        for (id, size) in packs {
            self.put(&id.0)?;
            self.put(&size.to_le_bytes())?;
        }
        let filter = std::mem::replace(&mut self.filter, Filter::from_words(Vec::new()));
        for w in filter.words() {
            self.put(&w.to_le_bytes())?;
        }
        let runs = self.records.div_ceil(RUN as u64);
        let mut footer = Vec::with_capacity(FOOTER);
        footer.extend_from_slice(MAGIC);
        footer.extend_from_slice(&self.records.to_le_bytes());
        footer.extend_from_slice(&runs.to_le_bytes());
        footer.extend_from_slice(&(packs.len() as u64).to_le_bytes());
        footer.extend_from_slice(&(filter.words().len() as u64).to_le_bytes());
        self.put(&footer)?;
        let trailer = *self.hasher.finalize().as_bytes();
        self.out.write_all(&trailer)?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file)
    }
}

/// What a table's footer counts.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counts {
    pub records: u64,
    runs: u64,
    packs: u64,
    words: u64,
}

/// An open table: its fences, packs and filter in memory, its records on disk.
pub(super) struct Table {
    file: File,
    records: u64,
    fences: Vec<([u8; 32], u64)>,
    packs: Vec<(PackId, u64)>,
    filter: Filter,
    /// Whether damage found in use has been said already.
    damage_said: AtomicBool,
    /// One bit per run whose bytes matched their fence's check once: the file is never
    /// changed in place, so a run is hashed once per open table, not on every lookup (an
    /// unchanged backup looks up every blob, about 64 times per run).
    checked: Vec<AtomicU64>,
}

impl Table {
    /// Opens a table, reading its footer, fences and packs.
    ///
    /// # Errors
    /// I/O errors; [`io::ErrorKind::InvalidData`] for a file that is not a whole table.
    pub fn open(file: File) -> io::Result<Table> {
        let Counts {
            records,
            runs,
            packs: npacks,
            words: nwords,
        } = Table::counts(&file)?;
        let mut tail =
            vec![0u8; (runs as usize) * FENCE + (npacks as usize) * PACK + nwords as usize * 8];
        file.read_exact_at(&mut tail, records * REC as u64)?;
        let (f, rest) = tail.split_at(runs as usize * FENCE);
        let (p, w) = rest.split_at(npacks as usize * PACK);
        let filter = Filter::from_words(w.chunks_exact(8).map(|c| u64_at(c, 0)).collect());
        let fences = f
            .chunks_exact(FENCE)
            .map(|c| (id_at(c), u64_at(c, 32)))
            .collect();
        let packs = p
            .chunks_exact(PACK)
            .map(|c| (PackId(id_at(c)), u64_at(c, 32)))
            .collect();
        Ok(Table {
            file,
            records,
            fences,
            packs,
            filter,
            damage_said: Default::default(),
            checked: (0..runs.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// A table file's counts, from its footer, checked against its size (no more is read):
    /// whether a file is a whole table, cheaply.
    ///
    /// # Errors
    /// I/O errors; [`io::ErrorKind::InvalidData`] for a file that is not a whole table.
    pub fn counts(mut file: &File) -> io::Result<Counts> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_string());
        let len = file.seek(SeekFrom::End(0))?;
        if len < (FOOTER + TRAILER) as u64 {
            return Err(bad("shorter than a table"));
        }
        let mut footer = [0u8; FOOTER];
        file.read_exact_at(&mut footer, len - (FOOTER + TRAILER) as u64)?;
        if &footer[..16] != MAGIC {
            return Err(bad("not an index table"));
        }
        let c = Counts {
            records: u64_at(&footer, 16),
            runs: u64_at(&footer, 24),
            packs: u64_at(&footer, 32),
            words: u64_at(&footer, 40),
        };
        let want = c
            .records
            .checked_mul(REC as u64)
            .and_then(|r| r.checked_add(c.runs.checked_mul(FENCE as u64)?))
            .and_then(|r| r.checked_add(c.packs.checked_mul(PACK as u64)?))
            .and_then(|r| r.checked_add(c.words.checked_mul(8)?))
            .and_then(|r| r.checked_add((FOOTER + TRAILER) as u64));
        if want != Some(len) || c.runs != c.records.div_ceil(RUN as u64) {
            return Err(bad("its size does not match its counts"));
        }
        Ok(c)
    }

    /// True the first time it is called: damage found in use is said once.
    pub fn first_damage(&self) -> bool {
        !self.damage_said.swap(true, Ordering::Relaxed)
    }

    /// Number of records.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// The packs, numbered as records refer to them.
    pub fn packs(&self) -> &[(PackId, u64)] {
        &self.packs
    }

    /// Reads run `i` and checks it against its fence.
    fn run(&self, i: usize, buf: &mut Vec<u8>) -> Result<(), Damage> {
        let first = i as u64 * RUN as u64;
        let n = (self.records - first).min(RUN as u64) as usize;
        buf.resize(n * REC, 0);
        self.file
            .read_exact_at(buf, first * REC as u64)
            .map_err(|e| Damage(format!("reading run {i}: {e}")))?;
        let (id, check) = self.fences[i];
        let (word, bit) = (&self.checked[i / 64], 1u64 << (i % 64));
        if id_at(buf) != id || (word.load(Ordering::Relaxed) & bit == 0 && run_check(buf) != check)
        {
            return Err(Damage(format!("run {i} does not match its fence")));
        }
        word.fetch_or(bit, Ordering::Relaxed);
        Ok(())
    }

    /// The records of blob `id`, in table order, until `want` accepts one: that one and its
    /// position in the table.
    pub fn find(
        &self,
        id: &BlobId,
        mut want: impl FnMut(&Record) -> bool,
    ) -> Result<Option<(Record, u64)>, Damage> {
        if !self.filter.may_hold(id) {
            return Ok(None);
        }
        // The first run whose fence is not below id may already hold later ids: start one before.
        let mut i = self
            .fences
            .partition_point(|(f, _)| f < &id.0)
            .saturating_sub(1);
        let mut buf = Vec::with_capacity(RUN * REC);
        while i < self.fences.len() && self.fences[i].0 <= id.0 {
            self.run(i, &mut buf)?;
            let (recs, _) = buf.as_chunks::<REC>();
            let start = recs.partition_point(|r| r[..32] < id.0[..]);
            for (k, r) in recs.iter().enumerate().skip(start) {
                if r[..32] != id.0[..] {
                    return Ok(None);
                }
                let rec = decode(r);
                if rec.pack as usize >= self.packs.len() {
                    return Err(Damage(format!("run {i} names pack {}", rec.pack)));
                }
                if want(&rec) {
                    return Ok(Some((rec, (i * RUN + k) as u64)));
                }
            }
            i += 1;
        }
        Ok(None)
    }

    /// Every record in order, read a run at a time.
    pub fn records(&self) -> Records<'_> {
        Records {
            table: self,
            run: 0,
            buf: Vec::with_capacity(RUN * REC),
            at: 0,
        }
    }

    /// Whether the file's bytes match its trailer (reads the whole table).
    ///
    /// # Errors
    /// I/O errors reading.
    pub fn verify(&self) -> io::Result<Result<(), Damage>> {
        let len = self.file.metadata()?.len();
        let body = len - TRAILER as u64;
        let mut h = blake3::Hasher::new();
        let mut at = 0;
        let mut buf = vec![0u8; 1 << 16];
        while at < body {
            let n = ((body - at) as usize).min(buf.len());
            self.file.read_exact_at(&mut buf[..n], at)?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        let mut trailer = [0u8; TRAILER];
        self.file.read_exact_at(&mut trailer, body)?;
        Ok(if h.finalize().as_bytes() == &trailer {
            Ok(())
        } else {
            Err(Damage("its bytes do not match its checksum".into()))
        })
    }
}

/// Iterator over a table's records (see [`Table::records`]).
pub(super) struct Records<'a> {
    table: &'a Table,
    run: usize,
    buf: Vec<u8>,
    at: usize,
}

impl Iterator for Records<'_> {
    type Item = Result<Record, Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.buf.len() {
            if self.run >= self.table.fences.len() {
                return None;
            }
            if let Err(d) = self.table.run(self.run, &mut self.buf) {
                self.run = self.table.fences.len();
                return Some(Err(d));
            }
            self.run += 1;
            self.at = 0;
        }
        let r = decode(&self.buf[self.at..self.at + REC]);
        self.at += REC;
        if r.pack as usize >= self.table.packs.len() {
            self.run = self.table.fences.len();
            self.buf.clear();
            return Some(Err(Damage(format!("a record names pack {}", r.pack))));
        }
        Some(Ok(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u32) -> PackEntry {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&i.to_be_bytes());
        PackEntry {
            id: BlobId(id),
            kind: if i.is_multiple_of(3) {
                BlobKind::Tree
            } else {
                BlobKind::Data
            },
            offset: i * 7,
            length: i + 100,
            raw_len: i * 2,
            compressed: i.is_multiple_of(2),
        }
    }

    fn table(n: u32, dir: &std::path::Path) -> Table {
        let path = dir.join("t");
        let mut w = TableWriter::new(File::create(&path).unwrap(), 100);
        for i in 0..n {
            w.push(i % 2, &entry(i * 2)).unwrap();
        }
        w.finish(&[(PackId([1; 32]), 10), (PackId([2; 32]), 20)])
            .unwrap();
        Table::open(File::open(&path).unwrap()).unwrap()
    }

    #[test]
    fn every_record_is_found_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        for n in [0, 1, 63, 64, 65, 1000] {
            let t = table(n, d.path());
            assert_eq!(t.len(), n as u64);
            for i in 0..n {
                let (r, at) = t.find(&entry(i * 2).id, |_| true).unwrap().unwrap();
                assert_eq!(at, i as u64);
                assert_eq!(r.entry, entry(i * 2));
                assert_eq!(r.pack, i % 2);
                assert_eq!(t.find(&entry(i * 2 + 1).id, |_| true).unwrap(), None);
            }
            let all: Vec<Record> = t.records().map(|r| r.unwrap()).collect();
            assert_eq!(all.len(), n as usize);
            assert!(t.verify().unwrap().is_ok());
        }
    }

    #[test]
    fn a_blob_in_several_packs_is_found_in_each_across_runs() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("t");
        let mut w = TableWriter::new(File::create(&path).unwrap(), 100);
        for i in 0..60 {
            w.push(0, &entry(i)).unwrap();
        }
        // 10 records of one blob straddle the first run's end.
        for p in 0..10 {
            w.push(p, &entry(60)).unwrap();
        }
        w.finish(&(0..10).map(|i| (PackId([i; 32]), 1)).collect::<Vec<_>>())
            .unwrap();
        let t = Table::open(File::open(&path).unwrap()).unwrap();
        for p in 0..10 {
            let (r, at) = t.find(&entry(60).id, |r| r.pack == p).unwrap().unwrap();
            assert_eq!((r.pack, at), (p, 60 + p as u64));
        }
        assert_eq!(t.find(&entry(60).id, |_| false).unwrap(), None);
    }

    #[test]
    fn a_flipped_byte_is_found_on_use_and_by_verify() {
        let d = tempfile::tempdir().unwrap();
        let _ = table(500, d.path());
        let path = d.path().join("t");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[REC * 70 + 33] ^= 1; // run 1, a pack number
        std::fs::write(&path, &bytes).unwrap();
        let t = Table::open(File::open(&path).unwrap()).unwrap();
        assert!(t.find(&entry(140).id, |_| true).is_err());
        assert!(
            t.find(&entry(140).id, |_| true).is_err(),
            "a bad run stays bad"
        );
        assert!(t.find(&entry(0).id, |_| true).unwrap().is_some());
        assert!(t.verify().unwrap().is_err());
        assert!(t.records().any(|r| r.is_err()));
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Table::open(File::open(&path).unwrap()).is_err());
    }

    #[test]
    fn out_of_order_records_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut w = TableWriter::new(File::create(d.path().join("t")).unwrap(), 2);
        w.push(0, &entry(5)).unwrap();
        assert!(w.push(0, &entry(4)).is_err());
    }
}
