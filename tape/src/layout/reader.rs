//! Reading a tape: its label, a scan of everything on it without the catalog database, and
//! one entry's bytes, reached by spacing over files and records rather than reading them.

use std::collections::BTreeMap;
use std::io::Write;

use super::format::{
    record_buffer, Catalog, Entry, Header, JobId, Label, Placed, Position, LABEL_FORMAT,
};
use crate::{TapeDrive, TapeError};

/// Why reading a tape failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The drive failed.
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// Nothing is written on the tape.
    #[error("the tape is blank: label it first (bakfs tape label)")]
    Blank,
    /// The tape holds something else than a bakfs label.
    #[error("not a bakfs tape: {0}")]
    NotBakfs(String),
    /// The label record is there but cannot be read.
    #[error("the tape's label is damaged: {0}")]
    DamagedLabel(String),
    /// A label of a later format than this bakfs reads.
    #[error("the tape was labelled by a newer bakfs (format {0}): upgrade bakfs to read it")]
    NewerFormat(u32),
    /// An entry could not be read back as written.
    #[error("{kind} {name} ({at}): {why}")]
    Damaged {
        /// Its kind.
        kind: bakfs_core::repo::backend::FileKind,
        /// Its name.
        name: String,
        /// Where it is.
        at: Position,
        /// What is wrong.
        why: String,
    },
}

/// Reads the label (rewinding first).
///
/// # Errors
/// [`ReadError::Blank`], [`ReadError::NotBakfs`], [`ReadError::DamagedLabel`],
/// [`ReadError::NewerFormat`], the drive's errors.
pub fn read_label(drive: &mut dyn TapeDrive) -> Result<Label, ReadError> {
    drive.rewind()?;
    let mut buf = record_buffer();
    let n = match drive.read_record(&mut buf) {
        Ok(0) => return Err(ReadError::NotBakfs("an empty first file".into())),
        Ok(n) => n,
        Err(TapeError::EndOfData) => return Err(ReadError::Blank),
        Err(TapeError::RecordTooLarge { .. }) => {
            return Err(ReadError::NotBakfs(
                "a first record longer than a label".into(),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let rec = &buf[..n];
    if !rec.starts_with(b"BAKFSTP1") {
        return Err(ReadError::NotBakfs(
            "no bakfs label at the beginning of tape".into(),
        ));
    }
    match Header::decode(rec) {
        Ok(Header::Label(l)) if l.format > LABEL_FORMAT => Err(ReadError::NewerFormat(l.format)),
        Ok(Header::Label(l)) => Ok(l),
        Ok(_) => Err(ReadError::DamagedLabel("file 0 is not a label".into())),
        Err(e) => Err(ReadError::DamagedLabel(e)),
    }
}

/// A job as a scan found it.
#[derive(Debug, Default, Clone)]
pub struct ScannedJob {
    /// Entries found in its data files (whole or not: only the catalog says).
    pub found: Vec<(Entry, Position)>,
    /// Its catalogs: checkpoints, then the closing one when the job closed the cartridge. Only
    /// the entries they list are trusted.
    pub catalogs: Vec<Catalog>,
}

/// What a tape holds, read from the tape alone.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Its label.
    pub label: Label,
    /// The jobs that wrote to it.
    pub jobs: BTreeMap<JobId, ScannedJob>,
    /// What could not be read, and was skipped.
    pub problems: Vec<String>,
    /// Tape files, label included.
    pub files: u64,
}

impl Scan {
    /// The entries a catalog on the tape lists, of every job, in tape order.
    #[must_use]
    pub fn trusted(&self) -> Vec<&Placed> {
        let mut v: Vec<&Placed> = self
            .jobs
            .values()
            .flat_map(|j| &j.catalogs)
            .flat_map(|c| &c.entries)
            .collect();
        v.sort_by_key(|p| p.at);
        v
    }

    /// Jobs without their closing catalog (killed mid-write, or cut off by a failure): nothing
    /// they wrote after their last checkpoint is trusted.
    #[must_use]
    pub fn unclosed(&self) -> Vec<JobId> {
        self.jobs
            .iter()
            .filter(|(_, j)| !j.catalogs.iter().any(|c| c.closing))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Reads the whole tape from its label to the end of data, without the catalog database:
/// every data file's entry records (their bytes are spaced over, not read) and every
/// catalog. A damaged record is reported in [`Scan::problems`] and the scan goes on at the
/// next tape file; an entry record naming a path outside a repository is damage too.
///
/// # Errors
/// The label's errors ([`read_label`]); a drive that fails outright.
pub fn scan(drive: &mut dyn TapeDrive) -> Result<Scan, ReadError> {
    let label = read_label(drive)?;
    drive.space_files(1)?;
    let mut scan = Scan {
        label,
        jobs: BTreeMap::new(),
        problems: Vec::new(),
        files: 1,
    };
    let mut buf = record_buffer();
    for file in 1.. {
        let n = match drive.read_record(&mut buf) {
            Err(TapeError::EndOfData) => break,
            Ok(0) => {
                scan.files += 1;
                continue;
            }
            Ok(n) => n,
            Err(e @ (TapeError::Io { .. } | TapeError::RecordTooLarge { .. })) => {
                scan.problems
                    .push(format!("tape file {file}: its header: {e}"));
                next_file(drive, &mut scan)?;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        scan.files += 1;
        let ended = match Header::decode(&buf[..n]) {
            Ok(Header::Data { job }) => {
                let found = &mut scan.jobs.entry(job).or_default().found;
                walk_entries(drive, file, found, &mut buf, &mut scan.problems)?
            }
            Ok(Header::Catalog { job, len, blake3 }) => {
                match read_catalog(drive, len, &blake3, &mut buf) {
                    Ok(c) if c.job == job => scan.jobs.entry(job).or_default().catalogs.push(c),
                    Ok(c) => scan.problems.push(format!(
                        "tape file {file}: the catalog of job {job} names job {}",
                        c.job
                    )),
                    Err(e) => scan
                        .problems
                        .push(format!("tape file {file}: the catalog of job {job}: {e}")),
                }
                false
            }
            Ok(Header::Label(_)) => {
                scan.problems
                    .push(format!("tape file {file}: a second label"));
                false
            }
            Err(e) => {
                scan.problems.push(format!("tape file {file}: {e}"));
                false
            }
        };
        if !ended {
            next_file(drive, &mut scan)?;
        }
    }
    Ok(scan)
}

/// Spaces to the next tape file; the end of data ends the scan there.
fn next_file(drive: &mut dyn TapeDrive, scan: &mut Scan) -> Result<(), ReadError> {
    match drive.space_files(1) {
        Ok(()) | Err(TapeError::EndOfData) => Ok(()),
        Err(e) => {
            scan.problems
                .push(format!("spacing to the next tape file: {e}"));
            Err(e.into())
        }
    }
}

/// Walks a data file's entries after its header. `Ok(true)` when its filemark (or the end of
/// data) was crossed, `Ok(false)` when the walk stopped inside the file.
fn walk_entries(
    drive: &mut dyn TapeDrive,
    file: u64,
    found: &mut Vec<(Entry, Position)>,
    buf: &mut [u8],
    problems: &mut Vec<String>,
) -> Result<bool, ReadError> {
    let mut block = 1;
    loop {
        let at = Position { file, block };
        let n = match drive.read_record(buf) {
            Ok(0) | Err(TapeError::EndOfData) => return Ok(true),
            Ok(n) => n,
            Err(e @ (TapeError::Io { .. } | TapeError::RecordTooLarge { .. })) => {
                problems.push(format!("{at}: {e}; the rest of the file is skipped"));
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        let entry = match Entry::decode(&buf[..n]) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{at}: {e}; the rest of the file is skipped"));
                return Ok(false);
            }
        };
        let records = entry.records();
        match drive.space_records(i64::try_from(records).unwrap_or(i64::MAX)) {
            Ok(()) => found.push((entry, at)),
            // Cut short by the early warning, a failure or a crash: not whole.
            Err(TapeError::Filemark | TapeError::EndOfData) => return Ok(true),
            Err(e) => return Err(e.into()),
        }
        block += 1 + records;
    }
}

fn read_catalog(
    drive: &mut dyn TapeDrive,
    len: u64,
    blake3: &str,
    buf: &mut [u8],
) -> Result<Catalog, String> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 30));
    while (bytes.len() as u64) < len {
        match drive.read_record(buf) {
            Ok(0) | Err(TapeError::EndOfData) => return Err("cut short".into()),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    if bytes.len() as u64 != len || blake3::hash(&bytes).to_hex().as_str() != blake3 {
        return Err("its bytes do not match its header".into());
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Moves to the entry record at `at`, from wherever the tape is: forward over files when it
/// is ahead, back over them when it is behind, never over the records of files in between.
fn seek(drive: &mut dyn TapeDrive, at: Position) -> Result<(), TapeError> {
    let s = drive.status()?;
    match (s.file, s.block) {
        (Some(f), Some(b)) if f == at.file && b <= at.block => {
            return drive.space_records(i64::try_from(at.block - b).unwrap_or(i64::MAX));
        }
        (Some(f), _) if f < at.file => {
            drive.space_files(i64::try_from(at.file - f).unwrap_or(i64::MAX))?
        }
        (Some(f), _) if at.file > 0 => {
            // Back before this file's (or an earlier file's) start, then over that filemark.
            let back = i64::try_from(f - at.file + 1).unwrap_or(i64::MAX);
            drive.space_files(-back)?;
            drive.space_files(1)?;
        }
        _ => {
            drive.rewind()?;
            drive.space_files(i64::try_from(at.file).unwrap_or(i64::MAX))?;
        }
    }
    drive.space_records(i64::try_from(at.block).unwrap_or(i64::MAX))
}

/// Reads the entry `placed` into `out`, reaching it by spacing, and checks its bytes against
/// the blake3 written (and, for packs, index files and manifests, against its name).
///
/// # Errors
/// [`ReadError::Damaged`] naming the entry: a read error, a record of the wrong length, an
/// entry record other than the catalog says, bytes that do not match; the drive's errors when
/// it fails outright.
pub fn read_entry(
    drive: &mut dyn TapeDrive,
    placed: &Placed,
    out: &mut dyn Write,
) -> Result<(), ReadError> {
    let entry = &placed.entry;
    let damaged = |why: String| ReadError::Damaged {
        kind: entry.kind,
        name: entry.name.clone(),
        at: placed.at,
        why,
    };
    let fatal = |e: TapeError| match e {
        TapeError::NoCartridge | TapeError::Offline => ReadError::Tape(e),
        e => damaged(e.to_string()),
    };
    seek(drive, placed.at).map_err(fatal)?;
    let mut buf = record_buffer();
    let n = drive.read_record(&mut buf).map_err(fatal)?;
    match Entry::decode(&buf[..n]) {
        Ok(e) if e == *entry => {}
        Ok(e) => {
            return Err(damaged(format!(
                "the tape holds {} {} there",
                e.kind, e.name
            )))
        }
        Err(e) => return Err(damaged(e)),
    }
    let mut hasher = blake3::Hasher::new();
    for i in 0..entry.records() {
        let n = drive.read_record(&mut buf).map_err(fatal)?;
        if n != entry.record_len(i) {
            return Err(damaged(format!(
                "record {i} holds {n} bytes, not {}",
                entry.record_len(i)
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| damaged(format!("writing it out: {e}")))?;
    }
    let hash = hasher.finalize();
    let hex = hash.to_hex();
    if hex.as_str() != placed.blake3
        || (entry.kind.content_addressed() && hex.as_str() != entry.name)
    {
        return Err(damaged(format!("its bytes do not match (blake3 {hex})")));
    }
    Ok(())
}
