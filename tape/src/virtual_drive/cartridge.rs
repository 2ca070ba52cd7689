//! A virtual cartridge: the file `<name>.tape` and the table of its entries.
//!
//! The file is a 32-byte header, then the tape's contents in order, each an entry:
//!
//! ```text
//! header   magic "BKFSTAPE" | version u32 = 1 | reserved u32 = 0
//!          | capacity u64 | early-warning distance u64          (little-endian)
//! record   b'R' | length u32 (1 ..= MAX_RECORD_LEN) | the record's bytes
//! filemark b'F'
//! ```
//!
//! The end of the file is the end of data. Opening scans the entries' headers (seeking over
//! record bodies) into a table of offsets, so spacing and reading go straight to an entry. A
//! last entry cut short (a crash while it was written) is cut off the file; anything else that
//! does not parse is [`TapeError::Corrupt`].
//!
//! Writes go through a buffered writer: a record at least as long as the buffer goes to the
//! file in one `writev` (header and body, no copy), shorter ones are gathered. The buffer is
//! flushed at filemarks, before reads and when the end of data moves, so another process sees
//! everything up to the last filemark; nothing is fsynced unless asked (`sync`).

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::drive::MAX_RECORD_LEN;
use crate::{Operation, TapeError};

const MAGIC: [u8; 8] = *b"BKFSTAPE";
const VERSION: u32 = 1;
/// Length of the file header; the first entry starts there.
pub(crate) const HEADER_LEN: u64 = 32;
const TAG_RECORD: u8 = b'R';
const TAG_FILEMARK: u8 = b'F';
/// Tag and length in front of a record's bytes.
const RECORD_HEADER_LEN: u64 = 5;
/// What a filemark takes of a cartridge's capacity: a small fixed cost, as a real drive
/// spends some tape on one.
pub const FILEMARK_COST: u64 = 1024;
/// Records of this length or more skip the write buffer (one `writev` each).
const WRITE_BUFFER: usize = 128 * 1024;

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

/// An open cartridge file with its table of entries.
#[derive(Debug)]
pub(crate) struct Cartridge {
    path: PathBuf,
    header: Header,
    out: BufWriter<File>,
    /// File offset of each entry; an entry's number is its position on the tape.
    offsets: Vec<u64>,
    /// Numbers of the entries that are filemarks, ascending.
    filemarks: Vec<usize>,
    /// Offset just after the last entry: the end of data (the file's length once flushed).
    end: u64,
}

/// The entries found by [`scan`].
struct Scan {
    offsets: Vec<u64>,
    filemarks: Vec<usize>,
    end: u64,
    /// The file's length when a torn last entry follows `end`.
    torn: Option<u64>,
}

impl Cartridge {
    /// Creates the file of an empty cartridge (refusing one that exists) and syncs it.
    pub fn create(path: &Path, header: Header) -> io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
        f.write_all(&header.encode())?;
        f.sync_all()
    }

    /// Reads a cartridge's header alone.
    pub fn read_header(path: &Path) -> Result<Header, TapeError> {
        let f = File::open(path).map_err(|e| io_error(Operation::Library, path, e))?;
        read_header(&f, path)
    }

    /// Opens a cartridge file and builds its table, cutting off a torn last entry.
    pub fn open(path: &Path) -> Result<Self, TapeError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error(Operation::Load, path, e))?;
        let header = read_header(&file, path)?;
        let mut cart = Cartridge {
            path: path.to_owned(),
            header,
            out: BufWriter::with_capacity(WRITE_BUFFER, file),
            offsets: Vec::new(),
            filemarks: Vec::new(),
            end: HEADER_LEN,
        };
        cart.rescan()?;
        Ok(cart)
    }

    /// Rebuilds the table from the file as it is, dropping anything still buffered, and cuts
    /// off a torn last entry. Used at open and after a failed write, when what reached the
    /// file is only known by reading it.
    pub fn rescan(&mut self) -> Result<(), TapeError> {
        let file = self
            .out
            .get_ref()
            .try_clone()
            .map_err(|e| io_error(Operation::Load, &self.path, e))?;
        // into_parts, not drop: dropping a BufWriter writes its buffer out.
        let old = std::mem::replace(&mut self.out, BufWriter::with_capacity(WRITE_BUFFER, file));
        let (_, _discarded) = old.into_parts();
        let scan = scan(self.out.get_ref(), &self.path)?;
        if let Some(len) = scan.torn {
            tracing::warn!(
                cartridge = %self.path.display(),
                kept = scan.end,
                file_length = len,
                "cutting off a torn last entry (a write interrupted by a crash)"
            );
            self.out
                .get_ref()
                .set_len(scan.end)
                .map_err(|e| io_error(Operation::Load, &self.path, e))?;
        }
        self.out
            .seek(SeekFrom::Start(scan.end))
            .map_err(|e| io_error(Operation::Load, &self.path, e))?;
        self.offsets = scan.offsets;
        self.filemarks = scan.filemarks;
        self.end = scan.end;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> Header {
        self.header
    }

    /// Number of entries: the position of the end of data.
    pub fn len(&self) -> usize {
        self.offsets.len()
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
        let k = self.filemarks_before(pos);
        match k {
            0 => pos,
            _ => pos - (self.filemarks[k - 1] + 1),
        }
    }

    fn offset_of(&self, pos: usize) -> u64 {
        self.offsets.get(pos).copied().unwrap_or(self.end)
    }

    /// Length of the record at `entry` (not a filemark, before the end of data).
    pub fn record_len(&self, entry: usize) -> u64 {
        self.offset_of(entry + 1) - self.offsets[entry] - RECORD_HEADER_LEN
    }

    /// Capacity used by everything before `pos`: record bytes and filemark costs.
    pub fn used_at(&self, pos: usize) -> u64 {
        let filemarks = self.filemarks_before(pos) as u64;
        let records = pos as u64 - filemarks;
        self.offset_of(pos) - HEADER_LEN - records * RECORD_HEADER_LEN - filemarks
            + filemarks * FILEMARK_COST
    }

    /// Erases everything from `pos` on: the end of data moves there.
    pub fn truncate(&mut self, pos: usize) -> io::Result<()> {
        if pos >= self.offsets.len() {
            return Ok(());
        }
        self.out.flush()?;
        let off = self.offsets[pos];
        self.out.get_ref().set_len(off)?;
        self.out.seek(SeekFrom::Start(off))?;
        self.offsets.truncate(pos);
        let keep = self.filemarks_before(pos);
        self.filemarks.truncate(keep);
        self.end = off;
        Ok(())
    }

    /// Appends a record at the end of data (buffered). The caller checks its length.
    pub fn append_record(&mut self, rec: &[u8]) -> io::Result<()> {
        let len = u32::try_from(rec.len()).map_err(io::Error::other)?;
        let mut head = [TAG_RECORD, 0, 0, 0, 0];
        head[1..].copy_from_slice(&len.to_le_bytes());
        write_all_vectored(&mut self.out, &mut [IoSlice::new(&head), IoSlice::new(rec)])?;
        self.offsets.push(self.end);
        self.end += RECORD_HEADER_LEN + rec.len() as u64;
        Ok(())
    }

    /// Appends `n` filemarks at the end of data and flushes.
    pub fn append_filemarks(&mut self, n: u32, sync: bool) -> io::Result<()> {
        for _ in 0..n {
            self.out.write_all(&[TAG_FILEMARK])?;
            self.filemarks.push(self.offsets.len());
            self.offsets.push(self.end);
            self.end += 1;
        }
        self.flush(sync)
    }

    /// Writes out the buffer so other readers of the file see it; `sync` also fsyncs.
    pub fn flush(&mut self, sync: bool) -> io::Result<()> {
        self.out.flush()?;
        if sync {
            self.out.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// Reads the record at `entry` into `buf`, which is exactly its length.
    pub fn read_record(&mut self, entry: usize, buf: &mut [u8]) -> io::Result<()> {
        if !self.out.buffer().is_empty() {
            self.out.flush()?;
        }
        self.out
            .get_ref()
            .read_exact_at(buf, self.offsets[entry] + RECORD_HEADER_LEN)
    }

    /// Ends without writing out what is buffered, as a crash would.
    pub fn abandon(self) {
        let (_, _lost) = self.out.into_parts();
    }
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
    let n = read_at_most(file, &mut b, 0).map_err(|e| io_error(Operation::Load, path, e))?;
    if n < b.len() {
        return Err(TapeError::Corrupt {
            path: path.to_owned(),
            offset: n as u64,
            reason: "shorter than the header".into(),
        });
    }
    Header::decode(&b, path)
}

/// Walks the entries of an open cartridge file from the header on.
fn scan(file: &File, path: &Path) -> Result<Scan, TapeError> {
    let file_len = file
        .metadata()
        .map_err(|e| io_error(Operation::Load, path, e))?
        .len();
    let mut s = Scan {
        offsets: Vec::new(),
        filemarks: Vec::new(),
        end: HEADER_LEN,
        torn: None,
    };
    let mut off = HEADER_LEN;
    while off < file_len {
        let mut head = [0u8; RECORD_HEADER_LEN as usize];
        let n =
            read_at_most(file, &mut head, off).map_err(|e| io_error(Operation::Load, path, e))?;
        match head[0] {
            TAG_FILEMARK => {
                s.filemarks.push(s.offsets.len());
                s.offsets.push(off);
                off += 1;
            }
            TAG_RECORD => {
                if n < head.len() {
                    s.torn = Some(file_len);
                    break;
                }
                let len = u64::from(u32::from_le_bytes([head[1], head[2], head[3], head[4]]));
                let next = off + RECORD_HEADER_LEN + len;
                if next > file_len {
                    s.torn = Some(file_len);
                    break;
                }
                if len == 0 || len > MAX_RECORD_LEN as u64 {
                    return Err(TapeError::Corrupt {
                        path: path.to_owned(),
                        offset: off,
                        reason: format!("record length {len}"),
                    });
                }
                s.offsets.push(off);
                off = next;
            }
            tag => {
                return Err(TapeError::Corrupt {
                    path: path.to_owned(),
                    offset: off,
                    reason: format!("unknown entry tag 0x{tag:02x}"),
                })
            }
        }
        s.end = off;
    }
    Ok(s)
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the count.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// `Write::write_all_vectored`, which is not stable yet.
fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Header = Header {
        capacity: 1 << 20,
        early_warning: 1 << 16,
    };

    fn new_cart(dir: &Path) -> Cartridge {
        let p = dir.join("a.tape");
        Cartridge::create(&p, H).unwrap();
        Cartridge::open(&p).unwrap()
    }

    #[test]
    fn file_bytes_are_the_documented_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        c.append_record(b"abc").unwrap();
        c.append_filemarks(1, false).unwrap();
        c.append_record(&[7; 2]).unwrap();
        c.flush(false).unwrap();
        let bytes = std::fs::read(c.path()).unwrap();
        let mut want = Vec::new();
        want.extend_from_slice(b"BKFSTAPE");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&(1u64 << 20).to_le_bytes());
        want.extend_from_slice(&(1u64 << 16).to_le_bytes());
        want.extend_from_slice(&[
            b'R', 3, 0, 0, 0, b'a', b'b', b'c', b'F', b'R', 2, 0, 0, 0, 7, 7,
        ]);
        assert_eq!(bytes, want);
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
    fn torn_last_record_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        c.append_record(&[1; 100]).unwrap();
        c.append_filemarks(1, false).unwrap();
        let good = std::fs::metadata(c.path()).unwrap().len();
        // A crash 10 bytes into a 4096-byte record.
        let mut torn = vec![b'R'];
        torn.extend_from_slice(&4096u32.to_le_bytes());
        torn.extend_from_slice(&[9; 10]);
        let mut f = OpenOptions::new().append(true).open(c.path()).unwrap();
        f.write_all(&torn).unwrap();
        let c2 = Cartridge::open(c.path()).unwrap();
        assert_eq!(c2.len(), 2);
        assert_eq!(std::fs::metadata(c.path()).unwrap().len(), good);
        // Only the tag made it.
        f.write_all(b"R").unwrap();
        assert_eq!(Cartridge::open(c.path()).unwrap().len(), 2);
    }

    #[test]
    fn damage_other_than_a_torn_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = new_cart(dir.path());
        c.append_record(&[1; 10]).unwrap();
        c.flush(false).unwrap();
        let p = c.path().to_owned();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[HEADER_LEN as usize] = b'X';
        std::fs::write(&p, &bytes).unwrap();
        match Cartridge::open(&p) {
            Err(TapeError::Corrupt { offset, .. }) => assert_eq!(offset, HEADER_LEN),
            other => panic!("{other:?}"),
        }
        std::fs::write(&p, b"not a tape").unwrap();
        assert!(matches!(
            Cartridge::open(&p),
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
        let c2 = Cartridge::open(c.path()).unwrap();
        assert_eq!(c2.len(), 2);
        assert!(!c2.is_filemark(1));
        let mut buf = [0; 5];
        let mut c2 = c2;
        c2.read_record(1, &mut buf).unwrap();
        assert_eq!(buf, [3; 5]);
    }
}
