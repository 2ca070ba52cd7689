//! A job on a tape cartridge: append what its media set lacks, read it back, record it.
//!
//! On the tape, after what earlier jobs wrote (`bakfs_tape::layout`): a data file with the
//! config, the key wrappings and the index files (every restore reads them; they are on every
//! cartridge so that one restores alone), then a data file with each planned snapshot's packs
//! the set lacks followed by its manifest, then the job's catalog. At the early warning the
//! cartridge is closed with its catalog and the job says which pool wants another cartridge;
//! a snapshot whose manifest did not fit is copied on by the next cartridge of the set.
//!
//! The SQLite catalog records a file only once it was read back from the tape and matched
//! (packs, index files and manifests their names, the others the blake3 written), with where
//! it is on the tape; a snapshot, only once its manifest is recorded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use bakfs_core::catalog::{
    Catalog, MediumFile, MediumRecord, MediumSnapshot, SnapshotRecord, TapeFile, TapeStatus,
    Verification,
};
use bakfs_core::format::id::{MediumId, PackId};
use bakfs_core::repo::backend::FileKind;
use bakfs_core::tape_pool::{self, Decision, PoolPolicy};
use bakfs_tape::layout::{self, JobId, Placed, Placement, TapeWriter, WriteError};
use bakfs_tape::{TapeDrive, TapeError};

use crate::error::CopyError;
use crate::job::Setup;
use crate::plan;
use crate::primary::Primary;
use crate::rotate::Stats;

/// How a tape job ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filled {
    /// Everything planned is on the set now.
    No,
    /// The cartridge filled up: the set goes on on another one.
    Yes,
    /// The set held everything planned already: nothing was written (a cartridge loaded to
    /// restore from stays in the drive).
    UpToDate,
    /// The pool's policy leaves this cartridge alone now, for this reason (it stays in the
    /// drive).
    Left(String),
}

/// What the job wrote, in tape order, with the snapshots whose manifest it wrote.
#[derive(Default)]
struct Written {
    placed: Vec<Placed>,
    snapshots: Vec<(SnapshotRecord, Vec<PackId>)>,
}

fn tape_err(e: TapeError) -> CopyError {
    match e {
        TapeError::NoCartridge | TapeError::Offline => CopyError::Cancelled,
        TapeError::WriteProtected => CopyError::Refused("the cartridge is write-protected".into()),
        e => CopyError::Io(e.to_string()),
    }
}

fn write_err(e: WriteError) -> CopyError {
    match e {
        WriteError::Tape(e) => tape_err(e),
        e @ (WriteError::Label(_) | WriteError::Foreign { .. }) => {
            CopyError::Refused(e.to_string())
        }
        e @ WriteError::Source { .. } => CopyError::SourceDamaged(e.to_string()),
        WriteError::NoRoomForCatalog => {
            CopyError::Full("no room left for the job's catalog on the tape".into())
        }
    }
}

/// Copies onto the cartridge in `drive`, enrolled as `m`, what its set lacks.
///
/// # Errors
/// [`CopyError::Refused`] for a cartridge that is not `m` (another repository, pool or
/// medium) or write-protected; [`CopyError::Cancelled`] when the drive went offline or the
/// cartridge out; others.
pub fn copy_onto_tape(
    setup: &Setup,
    cat: &mut Catalog,
    m: &MediumRecord,
    drive: &mut dyn TapeDrive,
    policy: &PoolPolicy,
    cancel: &AtomicBool,
    stats: &mut Stats,
) -> Result<Filled, CopyError> {
    let now = bakfs_core::timefmt::now_ns();
    let job = JobId(u64::try_from(now).unwrap_or(0));
    let label = layout::read_label(drive).map_err(|e| write_err(e.into()))?;
    if label.medium_id != m.id.to_hex() {
        return Err(CopyError::Refused(format!(
            "the cartridge in the drive is labelled {} ({}), not {}",
            label.label, label.medium_id, m.label
        )));
    }
    let m = &match allocate(cat, m, drive, policy, now, &setup.tz)? {
        Ok(m) => m,
        Err(why) => return Ok(Filled::Left(why)),
    };
    let Some(tape) = &m.tape else {
        return Err(CopyError::Refused(format!(
            "{} is not enrolled as a tape",
            m.label
        )));
    };
    let primary = Primary::new(
        setup
            .repo
            .backend()
            .map_err(|e| CopyError::Io(e.to_string()))?,
    );
    let _lock = primary.lock_shared(&format!("bakfs-mediad: copying to tape {}", m.label))?;

    // What the set holds already, on any of its cartridges.
    let members = cat.tape_set(&tape.set).map_err(CopyError::catalog)?;
    let mut on_set: Vec<MediumSnapshot> = Vec::new();
    let mut packs_on_set: HashSet<String> = HashSet::new();
    for c in &members {
        on_set.extend(cat.medium_snapshots(&c.id).map_err(CopyError::catalog)?);
        packs_on_set.extend(
            cat.tape_files(&c.id)
                .map_err(CopyError::catalog)?
                .into_iter()
                .filter(|f| f.kind == FileKind::Pack)
                .map(|f| f.name),
        );
    }
    let here: HashSet<(FileKind, String)> = cat
        .tape_files(&m.id)
        .map_err(CopyError::catalog)?
        .into_iter()
        .map(|f| (f.kind, f.name))
        .collect();
    let snapshots = cat.snapshots(&setup.repo_id).map_err(CopyError::catalog)?;
    let plan = plan::plan(
        &m.retention,
        &snapshots,
        &on_set,
        &setup.pinned,
        now,
        &setup.tz,
    );

    // The small files every restore reads, on every cartridge.
    let mut small = vec![(FileKind::Config, "config".to_string())];
    for kind in [FileKind::Key, FileKind::Index] {
        small.extend(primary.list(kind)?.into_iter().map(|n| (kind, n)));
    }
    small.retain(|f| !here.contains(f));
    if small.is_empty() && plan.add.is_empty() {
        return Ok(Filled::UpToDate);
    }
    let (mut w, _) =
        TapeWriter::append(drive, job, &setup.repo_id.to_hex(), &m.pool).map_err(write_err)?;
    let mut written = Written::default();
    let mut out = Out {
        primary: &primary,
        cancel,
        stats,
        written: &mut written,
    };
    let mut full = false;
    for (kind, name) in &small {
        if !out.copy(&mut w, *kind, name)? {
            full = true;
            break;
        }
    }
    w.next_file().map_err(tape_err)?;
    for s in &plan.add {
        if full {
            break;
        }
        let packs = cat
            .snapshot_packs(&setup.repo_id, &s.id)
            .map_err(CopyError::catalog)?;
        if packs.is_empty() {
            out.stats.skipped.push(format!(
                "{} (the catalog lists no packs for it)",
                s.id.short()
            ));
            continue;
        }
        for p in &packs {
            let name = p.id.to_hex();
            if packs_on_set.contains(&name) {
                continue;
            }
            match out.copy(&mut w, FileKind::Pack, &name) {
                Ok(true) => packs_on_set.insert(name),
                Ok(false) => {
                    full = true;
                    break;
                }
                Err(CopyError::SourceDamaged(msg)) => {
                    tracing::error!(medium = %m.label, snapshot = %s.id, "{msg}");
                    out.stats
                        .skipped
                        .push(format!("{} (primary repository damaged)", s.id.short()));
                    break;
                }
                Err(e) => return Err(e),
            };
        }
        let whole = packs.iter().all(|p| packs_on_set.contains(&p.id.to_hex()));
        if full || !whole {
            continue;
        }
        if out.copy(&mut w, FileKind::Snapshot, &s.id.to_hex())? {
            out.written
                .snapshots
                .push((s.clone(), packs.iter().map(|p| p.id).collect()));
        } else {
            full = true;
        }
    }
    let filled = if full || w.is_full() {
        Filled::Yes
    } else {
        Filled::No
    };
    w.close(filled == Filled::Yes, bakfs_core::timefmt::now_ns())
        .map_err(write_err)?;
    if let Some(bad) = record(cat, m, drive, &primary, &written, stats)? {
        // The primary's copy is sound, so the tape is not: it takes no more writes.
        cat.set_tape_state(&m.id, Some(TapeStatus::Damaged), None)
            .map_err(CopyError::catalog)?;
        return Err(CopyError::Io(format!(
            "{} is damaged: {bad}; it takes no more writes (what read back right is recorded)",
            m.label
        )));
    }
    if filled == Filled::Yes {
        cat.set_tape_state(&m.id, Some(TapeStatus::Full), None)
            .map_err(CopyError::catalog)?;
    }
    Ok(filled)
}

/// Applies the pool's policy to the cartridge: appended to as it is, labelled again into the
/// current or a new media set (what it held is given up: its set expired, or it held nothing),
/// or left alone (`Err` with why).
fn allocate(
    cat: &mut Catalog,
    m: &MediumRecord,
    drive: &mut dyn TapeDrive,
    policy: &PoolPolicy,
    now: i64,
    tz: &bakfs_core::timefmt::TimeZone,
) -> Result<Result<MediumRecord, String>, CopyError> {
    let pool: Vec<MediumRecord> = cat
        .media()
        .map_err(CopyError::catalog)?
        .into_iter()
        .filter(|x| x.pool == m.pool && x.repo_id == m.repo_id && x.tape.is_some())
        .collect();
    let holds = m.last_written_ns.is_some() || m.bytes > 0;
    let (set, seq) = match tape_pool::decide(policy, m, holds, &pool, now, tz) {
        Decision::Append => return Ok(Ok(m.clone())),
        Decision::Leave(why) => return Ok(Err(why)),
        Decision::Relabel { set, seq } => (set.unwrap_or_else(|| MediumId::random().to_hex()), seq),
    };
    let label = layout::Label {
        format: layout::LABEL_FORMAT,
        medium_id: m.id.to_hex(),
        label: m.label.clone(),
        pool: m.pool.clone(),
        repo_id: m.repo_id.to_hex(),
        media_set: set.clone(),
        set_seq: seq,
        labelled_ns: now,
    };
    // The catalog first: a crash between the two leaves a cartridge the catalog holds nothing
    // of, whose old label the next job labels again.
    cat.relabel_tape(&m.id, &set, seq, now)
        .map_err(CopyError::catalog)?;
    layout::label_tape(drive, &label).map_err(tape_err)?;
    tracing::info!(
        medium = %m.label,
        "{} labelled again as cartridge {} of media set {} (pool {}): what it held is given up",
        m.label,
        seq + 1,
        &set[..set.len().min(12)],
        m.pool
    );
    match cat.medium_by_label(&m.label).map_err(CopyError::catalog)? {
        Some(m) => Ok(Ok(m)),
        None => Err(CopyError::Io(format!(
            "{} vanished from the catalog",
            m.label
        ))),
    }
}

/// Where the job's files come from and what it keeps of them.
struct Out<'a> {
    primary: &'a Primary,
    cancel: &'a AtomicBool,
    stats: &'a mut Stats,
    written: &'a mut Written,
}

impl Out<'_> {
    /// Copies one file of the primary; `Ok(false)` when the cartridge is full.
    fn copy(
        &mut self,
        w: &mut TapeWriter<'_>,
        kind: FileKind,
        name: &str,
    ) -> Result<bool, CopyError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let size = self.primary.size(kind, name)?;
        let mut src = self.primary.open(kind, name, size)?;
        match w.write(kind, name, size, &mut src).map_err(write_err)? {
            Placement::Written(p) => {
                if let Some(ms) = crate::writer::test_pace() {
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                }
                self.stats.files_written += 1;
                self.stats.bytes_written += i64::try_from(size).unwrap_or(i64::MAX);
                self.written.placed.push(p);
                Ok(true)
            }
            Placement::Full => Ok(false),
        }
    }
}

/// Reads back what the job wrote and records what matched.
/// `Ok(Some(why))` when a file read back wrong whose primary copy is sound: the cartridge is
/// damaged.
fn record(
    cat: &mut Catalog,
    m: &MediumRecord,
    drive: &mut dyn TapeDrive,
    primary: &Primary,
    written: &Written,
    stats: &mut Stats,
) -> Result<Option<String>, CopyError> {
    let mut good: HashSet<(FileKind, &str)> = HashSet::new();
    let mut tape_bad = None;
    for p in &written.placed {
        match layout::read_entry(drive, p, &mut std::io::sink()) {
            Ok(()) => {
                stats.bytes_verified += i64::try_from(p.entry.size).unwrap_or(i64::MAX);
                good.insert((p.entry.kind, p.entry.name.as_str()));
            }
            Err(layout::ReadError::Tape(e)) => return Err(tape_err(e)),
            // A damaged primary (its bytes not those its name says) or a bad write: not
            // recorded, and copied again by the next job.
            Err(e) => {
                tracing::error!(medium = %m.label, "read back: {e}");
                stats.skipped.push(format!(
                    "{} {} (read back wrong)",
                    p.entry.kind, p.entry.name
                ));
                // The config and key wrappings were hashed as written: a mismatch is the tape's.
                let primary_sound = !p.entry.kind.content_addressed()
                    || primary
                        .matches_name(p.entry.kind, &p.entry.name)
                        .unwrap_or(false);
                if primary_sound && tape_bad.is_none() {
                    tape_bad = Some(e.to_string());
                }
            }
        }
    }
    // What this job wrote must have read back right; what it did not write, the set held.
    let wrote: HashSet<(FileKind, &str)> = written
        .placed
        .iter()
        .map(|p| (p.entry.kind, p.entry.name.as_str()))
        .collect();
    let sound =
        |kind: FileKind, name: &str| !wrote.contains(&(kind, name)) || good.contains(&(kind, name));
    // A snapshot restores from the cartridge only with the config, keys and index it wrote.
    let small_sound = written
        .placed
        .iter()
        .filter(|p| !matches!(p.entry.kind, FileKind::Pack | FileKind::Snapshot))
        .all(|p| good.contains(&(p.entry.kind, p.entry.name.as_str())));
    let now = bakfs_core::timefmt::now_ns();
    let ok = |p: &&Placed| good.contains(&(p.entry.kind, p.entry.name.as_str()));
    let files: Vec<MediumFile> = written
        .placed
        .iter()
        .filter(ok)
        .map(|p| MediumFile {
            kind: p.entry.kind,
            name: p.entry.name.clone(),
            size: i64::try_from(p.entry.size).unwrap_or(i64::MAX),
            verified_ns: now,
        })
        .collect();
    let snapshots: Vec<(MediumSnapshot, Vec<PackId>)> = written
        .snapshots
        .iter()
        .filter(|(s, packs)| {
            small_sound
                && good.contains(&(FileKind::Snapshot, s.id.to_hex().as_str()))
                && packs.iter().all(|p| sound(FileKind::Pack, &p.to_hex()))
        })
        .map(|(s, packs)| {
            let ms = MediumSnapshot {
                snapshot_id: s.id,
                time_ns: s.time_ns,
                host: s.host.clone(),
                paths: s.paths.clone(),
                job: s.job.clone(),
                verified_ns: now,
            };
            (ms, packs.clone())
        })
        .collect();
    stats.added += i64::try_from(snapshots.len()).unwrap_or(0);
    cat.record_medium_verified(&m.id, &files, &snapshots, Verification::Written, now)
        .map_err(CopyError::catalog)?;
    let at: Vec<TapeFile> = written
        .placed
        .iter()
        .filter(ok)
        .map(Placed::to_catalog)
        .collect();
    cat.record_tape_files(&m.id, &at)
        .map_err(CopyError::catalog)?;
    Ok(tape_bad)
}
