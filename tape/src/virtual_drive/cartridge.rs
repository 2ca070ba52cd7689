//! A virtual cartridge: the directory `<name>.tape` and the table of its entries.
//!
//! The directory holds two files. `index` is the tape's structure, a header and then the
//! tape's contents in order, each an entry; `data` holds the records' bytes:
//!
//! ```text
//! index    header   magic "BKFSTAPE" | version u32 = 1 | reserved u32 = 0
//!                   | capacity u64 | early-warning distance u64           (little-endian)
//!          record   b'R' | length u32 (1 ..= MAX_RECORD_LEN)
//!          filemark b'F'
//! data     each record's bytes, in tape order; a record of 64 KiB or more starts at a
//!          multiple of the largest power of two not above its length (at most 1 MiB),
//!          after a hole where the previous record ended short of it
//! ```
//!
//! The bytes are apart from the entries, and aligned, so that a stream of records lands in
//! `data` as `dd` would write it: the page cache handles a write at an offset that is not a
//! multiple of its size markedly slower (on ext4 with large folios, 256 KiB writes at
//! 4 KiB-aligned offsets run about 15% slower than at 256 KiB-aligned ones). Holes cost no
//! room on disk, and are not capacity.
//!
//! The end of the index is the end of data. Opening reads the index into a table of entries,
//! so spacing and reading go straight to an entry. What a crash can leave is cut off: a last
//! entry cut short, entries whose bytes are not all in `data` (and everything after them),
//! and bytes in `data` past the last entry. Anything else that does not parse is
//! [`TapeError::Corrupt`].
//!
//! Records of 64 KiB or more are written with one `pwrite` each, straight from the caller's
//! buffer; shorter ones and the entries are gathered in buffers, written out (bytes before
//! entries) at filemarks, before reads, before a large record and when the end of data moves,
//! so another process sees everything up to the last filemark. Nothing is fsynced unless
//! asked (`sync`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::drive::MAX_RECORD_LEN;
use crate::{Operation, TapeError};

const MAGIC: [u8; 8] = *b"BKFSTAPE";
const VERSION: u32 = 1;
/// Length of the index header; the first entry starts there.
const HEADER_LEN: u64 = 32;
const TAG_RECORD: u8 = b'R';
const TAG_FILEMARK: u8 = b'F';
/// An index entry of a record: tag and length.
const RECORD_ENTRY_LEN: u64 = 5;
/// The index file in a cartridge's directory.
const INDEX: &str = "index";
/// The data file in a cartridge's directory.
const DATA: &str = "data";
/// What a filemark takes of a cartridge's capacity: a small fixed cost, as a real drive
/// spends some tape on one.
pub const FILEMARK_COST: u64 = 1024;
/// Records this long or longer are aligned in `data` and written straight from the caller.
const LARGE_RECORD: usize = 64 << 10;
/// The largest alignment of a record's bytes.
const MAX_ALIGN: u64 = 1 << 20;
/// How many bytes of short records, or of entries, are gathered before they are written.
const BUFFER: usize = 256 << 10;

/// The fixed facts of a cartridge, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Room for records (and [`FILEMARK_COST`] per filemark), in bytes.
    pub capacity: u64,
    /// How far before `capacity` the early warning comes.
    pub early_warning: u64,
}

impl Header {
    fn encode(self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.capacity.to_le_bytes());
        b[24..32].copy_from_slice(&self.early_warning.to_le_bytes());
        b
    }

    fn decode(b: &[u8; HEADER_LEN as usize], path: &Path) -> Result<Self, TapeError> {
        let corrupt = |offset: u64, reason: String| TapeError::Corrupt {
            path: path.to_owned(),
            offset,
            reason,
        };
        if b[..8] != MAGIC {
            return Err(corrupt(0, "no BKFSTAPE magic".into()));
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version != VERSION {
            return Err(corrupt(
                8,
                format!("version {version}, this bakfs reads {VERSION}"),
            ));
        }
        let u64_at = |i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let h = Header {
            capacity: u64_at(16),
            early_warning: u64_at(24),
        };
        if h.early_warning >= h.capacity {
            return Err(corrupt(
                24,
                "early warning at or before the beginning of tape".into(),
            ));
        }
        Ok(h)
    }

    /// Where the early warning comes, in used bytes.
    pub fn early_warning_point(self) -> u64 {
        self.capacity - self.early_warning
    }
}

/// What comes before an entry: the end of the bytes in `data`, and the capacity used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    data: u64,
    used: u64,
}

const FIRST: Entry = Entry { data: 0, used: 0 };

/// An open cartridge with its table of entries.
#[derive(Debug)]
pub(crate) struct Cartridge {
    dir: PathBuf,
    header: Header,
    index: Appender,
    data: Appender,
    /// The entries; an entry's number is its position on the tape.
    entries: Vec<Entry>,
    /// Numbers of the entries that are filemarks, ascending.
    filemarks: Vec<usize>,
    /// What comes before the end of data.
    end: Entry,
    /// Crashed on purpose: nothing buffered is written.
    abandoned: bool,
}

/// A file written at known offsets, with short writes gathered in a buffer. Nothing is
/// written behind the owner's back (no flush on drop), so a crash can be played.
#[derive(Debug)]
struct Appender {
    file: File,
    pending: Vec<u8>,
    /// Where `pending` goes in the file.
    pending_at: u64,
    /// Writes this long or longer go to the file at once, from the caller's buffer.
    direct_from: usize,
}

impl Appender {
    fn new(file: File, direct_from: usize) -> Self {
        Appender {
            file,
            pending: Vec::with_capacity(BUFFER),
            pending_at: 0,
            direct_from,
        }
    }

    /// Writes `bytes` at `offset`, at or after the end of what was written before.
    fn write_at(&mut self, bytes: &[u8], offset: u64) -> io::Result<()> {
        if bytes.len() >= self.direct_from {
            // In order: a hole in data must never read as records not yet written.
            self.flush()?;
            return self.file.write_all_at(bytes, offset);
        }
        let contiguous = self.pending_at + self.pending.len() as u64 == offset;
        if !contiguous || self.pending.len() + bytes.len() > BUFFER {
            self.flush()?;
        }
        if self.pending.is_empty() {
            self.pending_at = offset;
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.file.write_all_at(&self.pending, self.pending_at)?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// Where a record of `len` bytes starts in `data` when the bytes before end at `end`.
fn record_start(end: u64, len: u64) -> u64 {
    if len < LARGE_RECORD as u64 {
        return end;
    }
    let align = (1u64 << len.ilog2()).min(MAX_ALIGN);
    end.next_multiple_of(align)
}

impl Cartridge {
    /// Creates an empty cartridge at `dir` (refusing one that exists): made under a
    /// temporary name, synced and renamed, so a cartridge is whole or absent.
    pub fn create(dir: &Path, header: Header) -> io::Result<()> {
        if dir.exists() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let parent = dir.parent().unwrap_or(Path::new("."));
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let tmp = parent.join(format!(".{name}.new"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp)?;
        let mut index = File::create(tmp.join(INDEX))?;
        index.write_all(&header.encode())?;
        index.sync_all()?;
        File::create(tmp.join(DATA))?.sync_all()?;
        std::fs::rename(&tmp, dir)?;
        File::open(parent)?.sync_all()
    }

    /// Reads a cartridge's header alone.
    pub fn read_header(dir: &Path) -> Result<Header, TapeError> {
        let path = dir.join(INDEX);
        let f = File::open(&path).map_err(|e| io_error(Operation::Library, &path, e))?;
        read_header(&f, &path)
    }

    /// Opens a cartridge and builds its table, cutting off what a crash left.
    pub fn open(dir: &Path) -> Result<Self, TapeError> {
        let open = |name| {
            let path = dir.join(name);
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_error(Operation::Load, &path, e))
        };
        let index = open(INDEX)?;
        let data = open(DATA)?;
        let header = read_header(&index, &dir.join(INDEX))?;
        let mut cart = Cartridge {
            dir: dir.to_owned(),
            header,
            index: Appender::new(index, usize::MAX),
            data: Appender::new(data, LARGE_RECORD),
            entries: Vec::new(),
            filemarks: Vec::new(),
            end: FIRST,
            abandoned: false,
        };
        cart.rescan()?;
        Ok(cart)
    }

    /// Rebuilds the table from the files as they are, dropping anything still buffered, and
    /// cuts off what a crash left. Used at open and after a failed write, when what reached
    /// the files is only known by reading them.
    pub fn rescan(&mut self) -> Result<(), TapeError> {
        let index_path = self.dir.join(INDEX);
        let data_path = self.dir.join(DATA);
        let load_err = |path: &Path| {
            let path = path.to_owned();
            move |e| io_error(Operation::Load, &path, e)
        };
        self.index.pending.clear();
        self.data.pending.clear();

        let data_len = self
            .data
            .file
            .metadata()
            .map_err(load_err(&data_path))?
            .len();
        let scan = scan(&self.index.file, &index_path, data_len)?;
        let index_end = HEADER_LEN
            + (scan.entries.len() - scan.filemarks.len()) as u64 * RECORD_ENTRY_LEN
            + scan.filemarks.len() as u64;
        if scan.index_len != index_end || data_len != scan.end.data {
            tracing::warn!(
                cartridge = %self.dir.display(),
                entries = scan.entries.len(),
                index_cut = scan.index_len - index_end,
                data_cut = data_len.saturating_sub(scan.end.data),
                "cutting off what a crash left after the last whole entry"
            );
            self.index
                .file
                .set_len(index_end)
                .map_err(load_err(&index_path))?;
            self.data
                .file
                .set_len(scan.end.data)
                .map_err(load_err(&data_path))?;
        }
        self.entries = scan.entries;
        self.filemarks = scan.filemarks;
        self.end = scan.end;
        Ok(())
    }

    /// The cartridge's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn header(&self) -> Header {
        self.header
    }

    /// Number of entries: the position of the end of data.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_filemark(&self, entry: usize) -> bool {
        self.filemarks.binary_search(&entry).is_ok()
    }

    /// How many filemarks come before `pos`: the file number there.
    pub fn filemarks_before(&self, pos: usize) -> usize {
        self.filemarks.partition_point(|&f| f < pos)
    }

    /// The entry number of the `i`-th filemark (from 0), if there is one.
    pub fn filemark(&self, i: usize) -> Option<usize> {
        self.filemarks.get(i).copied()
    }

    /// The block number of `pos` within its file.
    pub fn block_at(&self, pos: usize) -> usize {
        match self.filemarks_before(pos) {
            0 => pos,
            k => pos - (self.filemarks[k - 1] + 1),
        }
    }

    fn entry(&self, pos: usize) -> Entry {
        self.entries.get(pos).copied().unwrap_or(self.end)
    }

    /// Length of the record at `entry` (not a filemark, before the end of data).
    pub fn record_len(&self, entry: usize) -> u64 {
        self.used_at(entry + 1) - self.used_at(entry)
    }

    /// Capacity used by everything before `pos`: record bytes and filemark costs.
    pub fn used_at(&self, pos: usize) -> u64 {
        self.entry(pos).used
    }

    /// Where the entry at `pos` starts in the index.
    fn index_offset(&self, pos: usize) -> u64 {
        let filemarks = self.filemarks_before(pos) as u64;
        HEADER_LEN + (pos as u64 - filemarks) * RECORD_ENTRY_LEN + filemarks
    }

    /// Erases everything from `pos` on: the end of data moves there.
    pub fn truncate(&mut self, pos: usize) -> io::Result<()> {
        if pos >= self.entries.len() {
            return Ok(());
        }
        self.data.flush()?;
        self.index.flush()?;
        let at = self.entries[pos];
        self.data.file.set_len(at.data)?;
        self.index.file.set_len(self.index_offset(pos))?;
        self.entries.truncate(pos);
        let keep = self.filemarks_before(pos);
        self.filemarks.truncate(keep);
        self.end = at;
        Ok(())
    }

    /// Appends a record at the end of data. The caller checks its length.
    pub fn append_record(&mut self, rec: &[u8]) -> io::Result<()> {
        let len = u32::try_from(rec.len()).map_err(io::Error::other)?;
        let start = record_start(self.end.data, rec.len() as u64);
        self.data.write_at(rec, start)?;
        let mut entry = [TAG_RECORD, 0, 0, 0, 0];
        entry[1..].copy_from_slice(&len.to_le_bytes());
        let at = self.index_offset(self.entries.len());
        self.index.write_at(&entry, at)?;
        self.entries.push(self.end);
        self.end = Entry {
            data: start + rec.len() as u64,
            used: self.end.used + rec.len() as u64,
        };
        Ok(())
    }

    /// Appends `n` filemarks at the end of data and flushes.
    pub fn append_filemarks(&mut self, n: u32, sync: bool) -> io::Result<()> {
        for _ in 0..n {
            let at = self.index_offset(self.entries.len());
            self.index.write_at(&[TAG_FILEMARK], at)?;
            self.filemarks.push(self.entries.len());
            self.entries.push(self.end);
            self.end.used += FILEMARK_COST;
        }
        self.flush(sync)
    }

    /// Writes out the buffers, the bytes before the entries that name them, so other
    /// readers of the files see them; `sync` also fsyncs both in that order.
    pub fn flush(&mut self, sync: bool) -> io::Result<()> {
        self.data.flush()?;
        if sync {
            self.data.file.sync_data()?;
        }
        self.index.flush()?;
        if sync {
            self.index.file.sync_data()?;
        }
        Ok(())
    }

    /// Reads the record at `entry` into `buf`, which is exactly its length.
    pub fn read_record(&mut self, entry: usize, buf: &mut [u8]) -> io::Result<()> {
        self.data.flush()?;
        let start = record_start(self.entries[entry].data, buf.len() as u64);
        self.data.file.read_exact_at(buf, start)
    }

    /// Ends without writing out what is buffered, as a crash would.
    pub fn abandon(mut self) {
        self.abandoned = true;
    }
}

impl Drop for Cartridge {
    fn drop(&mut self) {
        if self.abandoned {
            return;
        }
        if let Err(e) = self.flush(false) {
            tracing::warn!(cartridge = %self.dir.display(), error = %e, "writing out a cartridge's buffers");
        }
    }
}

/// Leaves `rec` at the end of the cartridge at `dir` as a crash in the middle of its write
/// would: its entry whole in the index, half its bytes in data. The cartridge must be closed
/// and written out. For the conformance harness.
pub(crate) fn tear(dir: &Path, rec: &[u8]) -> io::Result<()> {
    let len = u32::try_from(rec.len()).map_err(io::Error::other)?;
    let data = OpenOptions::new().write(true).open(dir.join(DATA))?;
    let start = record_start(data.metadata()?.len(), rec.len() as u64);
    data.write_all_at(&rec[..rec.len() / 2], start)?;
    let mut entry = vec![TAG_RECORD];
    entry.extend_from_slice(&len.to_le_bytes());
    OpenOptions::new()
        .append(true)
        .open(dir.join(INDEX))?
        .write_all(&entry)
}

fn io_error(op: Operation, path: &Path, source: io::Error) -> TapeError {
    TapeError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn read_header(file: &File, path: &Path) -> Result<Header, TapeError> {
    let mut b = [0u8; HEADER_LEN as usize];
    let mut done = 0;
    while done < b.len() {
        match file.read_at(&mut b[done..], done as u64) {
            Ok(0) => {
                return Err(TapeError::Corrupt {
                    path: path.to_owned(),
                    offset: done as u64,
                    reason: "shorter than the header".into(),
                })
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(Operation::Load, path, e)),
        }
    }
    Header::decode(&b, path)
}

/// The entries found by [`scan`].
struct Scan {
    entries: Vec<Entry>,
    filemarks: Vec<usize>,
    end: Entry,
    /// The index file's length as found.
    index_len: u64,
}

/// Reads the entries of an index whose records' bytes must lie within `data_len`; stops
/// at the first entry a crash cut short or whose bytes are not all there.
fn scan(index: &File, path: &Path, data_len: u64) -> Result<Scan, TapeError> {
    let err = |e| io_error(Operation::Load, path, e);
    let index_len = index.metadata().map_err(err)?.len();
    let mut r = BufReader::with_capacity(1 << 20, index.try_clone().map_err(err)?);
    r.seek(SeekFrom::Start(HEADER_LEN)).map_err(err)?;
    let mut s = Scan {
        entries: Vec::new(),
        filemarks: Vec::new(),
        end: FIRST,
        index_len,
    };
    let mut offset = HEADER_LEN;
    while let Some(&tag) = r.fill_buf().map_err(err)?.first() {
        let at = s.end;
        match tag {
            TAG_FILEMARK => {
                r.consume(1);
                offset += 1;
                s.filemarks.push(s.entries.len());
                s.end.used += FILEMARK_COST;
            }
            TAG_RECORD => {
                let mut entry = [0u8; RECORD_ENTRY_LEN as usize];
                match io::Read::read_exact(&mut r, &mut entry) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(err(e)),
                }
                let len = u64::from(u32::from_le_bytes([entry[1], entry[2], entry[3], entry[4]]));
                if len == 0 || len > MAX_RECORD_LEN as u64 {
                    return Err(TapeError::Corrupt {
                        path: path.to_owned(),
                        offset,
                        reason: format!("record length {len}"),
                    });
                }
                let start = record_start(at.data, len);
                if start + len > data_len {
                    break;
                }
                offset += RECORD_ENTRY_LEN;
                s.end = Entry {
                    data: start + len,
                    used: at.used + len,
                };
            }
            tag => {
                return Err(TapeError::Corrupt {
                    path: path.to_owned(),
                    offset,
                    reason: format!("unknown entry tag 0x{tag:02x}"),
                })
            }
        }
        s.entries.push(at);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Header = Header {
        capacity: 1 << 30,
        early_warning: 1 << 16,
    };

    fn new_cart(dir: &Path) -> Cartridge {
        let p = dir.join("a.tape");
        Cartridge::create(&p, H).unwrap();
        Cartridge::open(&p).unwrap()
    }

    fn files(c: &Cartridge) -> (Vec<u8>, Vec<u8>) {
        (
            std::fs::read(c.path().join(INDEX)).unwrap(),
            std::fs::read(c.path().join(DATA)).unwrap(),
        )
    }

    #[test]
    fn files_are_the_documented_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        c.append_record(b"abc").unwrap();
        c.append_filemarks(1, false).unwrap();
        c.append_record(&[7; 2]).unwrap();
        c.flush(false).unwrap();
        let (index, data) = files(&c);
        let mut want = Vec::new();
        want.extend_from_slice(b"BKFSTAPE");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&(1u64 << 30).to_le_bytes());
        want.extend_from_slice(&(1u64 << 16).to_le_bytes());
        want.extend_from_slice(&[b'R', 3, 0, 0, 0, b'F', b'R', 2, 0, 0, 0]);
        assert_eq!(index, want);
        assert_eq!(data, b"abc\x07\x07");
    }

    #[test]
    fn large_records_are_aligned_after_a_hole_that_is_not_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        c.append_record(b"label").unwrap();
        let big: Vec<u8> = (0..256 << 10).map(|i: u32| i as u8).collect();
        c.append_record(&big).unwrap();
        c.append_record(&big[..100 << 10]).unwrap();
        c.append_record(&[1; 3 << 20]).unwrap();
        c.flush(false).unwrap();
        let (_, data) = files(&c);
        // 256 KiB at 256 KiB, 100 KiB at the next 64 KiB, 3 MiB at the next MiB.
        assert_eq!(&data[..5], b"label");
        assert!(data[5..256 << 10].iter().all(|&b| b == 0));
        assert_eq!(&data[256 << 10..512 << 10], &big[..]);
        assert_eq!(&data[512 << 10..612 << 10], &big[..100 << 10]);
        assert_eq!(data.len(), (1 << 20) + (3 << 20));
        let mut c2 = Cartridge::open(c.path()).unwrap();
        assert_eq!(c2.len(), 4);
        assert_eq!(c2.used_at(4), 5 + (256 << 10) + (100 << 10) + (3 << 20));
        let mut buf = vec![0; 100 << 10];
        c2.read_record(2, &mut buf).unwrap();
        assert_eq!(buf, &big[..100 << 10]);
    }

    #[test]
    fn table_and_accounting_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        for len in [10, 20, 30] {
            c.append_record(&vec![1; len]).unwrap();
        }
        c.append_filemarks(2, false).unwrap();
        c.append_record(&[2; 40]).unwrap();
        c.flush(false).unwrap();
        let used = c.used_at(c.len());
        assert_eq!(used, 100 + 2 * FILEMARK_COST);
        let c2 = Cartridge::open(c.path()).unwrap();
        assert_eq!(c2.len(), 6);
        assert_eq!(c2.used_at(6), used);
        assert!(c2.is_filemark(3) && c2.is_filemark(4) && !c2.is_filemark(5));
        assert_eq!(c2.record_len(1), 20);
        assert_eq!(c2.record_len(5), 40);
        assert_eq!((c2.filemarks_before(5), c2.block_at(5)), (2, 0));
        assert_eq!((c2.filemarks_before(2), c2.block_at(2)), (0, 2));
    }

    #[test]
    fn what_a_crash_leaves_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        c.append_record(&[1; 100]).unwrap();
        c.append_filemarks(1, false).unwrap();
        let (good_index, good_data) = files(&c);
        let append = |name, bytes: &[u8]| {
            let mut f = OpenOptions::new()
                .append(true)
                .open(c.path().join(name))
                .unwrap();
            f.write_all(bytes).unwrap();
        };
        // An entry whose record got 10 of its 4096 bytes into data.
        append(INDEX, &[b'R', 0, 0x10, 0, 0]);
        append(DATA, &[9; 10]);
        let c2 = Cartridge::open(c.path()).unwrap();
        assert_eq!(c2.len(), 2);
        assert_eq!(files(&c2), (good_index.clone(), good_data.clone()));
        // An entry cut short, and bytes whose entry never made it.
        append(INDEX, b"R\x01");
        append(DATA, &[9; 50]);
        let c3 = Cartridge::open(c.path()).unwrap();
        assert_eq!(c3.len(), 2);
        assert_eq!(files(&c3), (good_index, good_data));
    }

    #[test]
    fn damage_other_than_a_crash_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        c.append_record(&[1; 10]).unwrap();
        c.flush(false).unwrap();
        let p = c.path().join(INDEX);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[HEADER_LEN as usize] = b'X';
        std::fs::write(&p, &bytes).unwrap();
        match Cartridge::open(c.path()) {
            Err(TapeError::Corrupt { offset, .. }) => assert_eq!(offset, HEADER_LEN),
            other => panic!("{other:?}"),
        }
        std::fs::write(&p, b"not a tape").unwrap();
        assert!(matches!(
            Cartridge::open(c.path()),
            Err(TapeError::Corrupt { .. })
        ));
    }

    #[test]
    fn truncate_moves_the_end_of_data() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        c.append_record(&[1; 10]).unwrap();
        c.append_filemarks(1, false).unwrap();
        c.append_record(&[2; 10]).unwrap();
        c.truncate(1).unwrap();
        c.append_record(&[3; 5]).unwrap();
        c.flush(false).unwrap();
        let mut c2 = Cartridge::open(c.path()).unwrap();
        assert_eq!(c2.len(), 2);
        assert!(!c2.is_filemark(1));
        let mut buf = [0; 5];
        c2.read_record(1, &mut buf).unwrap();
        assert_eq!(buf, [3; 5]);
        assert_eq!(files(&c2).1, [[1; 10].as_slice(), &[3; 5]].concat());
    }

    #[test]
    fn creating_refuses_an_existing_cartridge() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tape");
        Cartridge::create(&p, H).unwrap();
        let e = Cartridge::create(&p, H).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(Cartridge::read_header(&p).unwrap(), H);
    }
}
