//! One rotation: an enrolled medium was plugged in. Mount it privately, copy what its policy
//! wants and it lacks, verify, record, apply its retention, write its ledger, unmount.
//!
//! The catalog only ever lists what was read back verified: files are recorded after the
//! filesystem was synced and each file read back (page cache dropped) and hashed, and before
//! anything is deleted from the medium its rows are removed first.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use std::sync::Arc;

use bakfs_core::catalog::{
    Catalog, CopyOutcome, MediumFile, MediumRecord, MediumRun, MediumSnapshot, MediumState,
    Verification,
};
use bakfs_core::format::id::{MediumId, PackId, RepoId, SnapshotId};
use bakfs_core::medium;
use bakfs_core::repo::backend::{Backend, FileKind, LocalBackend};
use bakfs_host::mounts;

use crate::copy::{self, CopyError};
use crate::plan;
use crate::reverify;

/// What every job needs to know.
#[derive(Debug, Clone)]
pub struct Setup {
    pub repo_root: PathBuf,
    pub repo_id: RepoId,
    pub catalog: PathBuf,
    /// Where media are mounted: `<media_root>/<fs uuid>`.
    pub media_root: PathBuf,
    /// Files on a medium last verified longer ago than this are read back again.
    pub reverify_after: std::time::Duration,
    /// The operator's time zone: media retention's calendar buckets follow it.
    pub tz: bakfs_core::timefmt::TimeZone,
}

/// The device to work on.
#[derive(Debug, Clone)]
pub struct Device {
    pub devnode: PathBuf,
    pub fs_type: String,
    pub fs_uuid: String,
}

#[derive(Debug, Default)]
struct Stats {
    /// Snapshots not copied because the primary's copy of a file is damaged.
    skipped: Vec<String>,
    added: i64,
    removed: i64,
    files_written: i64,
    bytes_written: i64,
    bytes_verified: i64,
}

fn now_ns() -> i64 {
    bakfs_core::timefmt::now_ns()
}

/// Runs the job to the end and records its outcome; returns the medium's new state.
pub fn run(setup: &Setup, m: &MediumRecord, dev: &Device, cancel: &AtomicBool) -> MediumState {
    let started = Instant::now();
    let t0 = now_ns();
    let mut cat = match Catalog::open(&setup.catalog) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(medium = %m.label, "catalog: {e}");
            return MediumState::Failed;
        }
    };
    let _ = cat.set_medium_state(&m.id, MediumState::Copying, None, t0);
    let run_id = cat.begin_medium_run(&m.id, t0).unwrap_or(0);
    tracing::info!(medium = %m.label, device = %dev.devnode.display(), "copying snapshots onto {}", m.label);
    let mp = setup.media_root.join(&dev.fs_uuid);
    let mut stats = Stats::default();
    let ended = |result: &Result<(), CopyError>, stats: &Stats| {
        let (state, outcome, msg) = outcome(result, stats);
        let run = MediumRun {
            id: run_id,
            medium_id: m.id,
            started_ns: t0,
            ended_ns: Some(now_ns()),
            outcome,
            snapshots_added: stats.added,
            snapshots_removed: stats.removed,
            files_written: stats.files_written,
            bytes_written: stats.bytes_written,
            bytes_verified: stats.bytes_verified,
            seconds: started.elapsed().as_secs_f64(),
            message: msg,
        };
        (state, run)
    };
    let (result, state, run) = match mount(dev, &mp) {
        Ok(()) => {
            let mounted = started.elapsed().as_secs_f64();
            let r = copy_onto(setup, &mut cat, m, &mp, cancel, &mut stats);
            let r = r.and_then(|()| copy::sync_fs(&mp));
            let copied = started.elapsed().as_secs_f64();
            let (state, run) = ended(&r, &stats);
            // The medium's own ledger, this run included, unless the medium is gone or failing.
            if matches!(&r, Ok(()) | Err(CopyError::Full(_))) {
                if let Err(e) = write_ledger(&cat, &mp.join(medium::DIR), m, &run) {
                    tracing::warn!(medium = %m.label, "writing the ledger onto the medium: {e}");
                }
            }
            if let Err(e) = mounts::unmount(&mp) {
                tracing::warn!(medium = %m.label, "unmounting {}: {e}", mp.display());
            }
            tracing::debug!(
                medium = %m.label,
                "mounted after {mounted:.3} s, copied and verified after {copied:.3} s, unmounted after {:.3} s",
                started.elapsed().as_secs_f64()
            );
            let _ = std::fs::remove_dir(&mp);
            (r, state, run)
        }
        Err(e) => {
            let r = Err(e);
            let (state, run) = ended(&r, &stats);
            (r, state, run)
        }
    };
    // State first, run second: a reader that sees the run ended sees the state too.
    let _ = cat.set_medium_state(&m.id, state, run.message.as_deref(), now_ns());
    let _ = cat.finish_medium_run(&run);
    let secs = run.seconds;
    let mib_s = stats.bytes_written as f64 / secs.max(1e-9) / (1 << 20) as f64;
    match &result {
        Ok(()) => tracing::info!(
            medium = %m.label,
            added = stats.added,
            removed = stats.removed,
            bytes_written = stats.bytes_written,
            "safe to remove {} ({} snapshots added, {} removed, {} bytes written at {mib_s:.1} MiB/s, {secs:.1} s)",
            m.label, stats.added, stats.removed, stats.bytes_written
        ),
        // Pulling a medium out, or stopping the daemon, is no error.
        Err(e @ CopyError::Cancelled) => tracing::warn!(medium = %m.label, "{}: {e}", m.label),
        Err(e) => tracing::error!(medium = %m.label, "{}: {e}", m.label),
    }
    state
}

/// The medium's state, the run's outcome and its message.
fn outcome(
    result: &Result<(), CopyError>,
    stats: &Stats,
) -> (MediumState, CopyOutcome, Option<String>) {
    match result {
        Ok(()) if !stats.skipped.is_empty() => (
            MediumState::SafeToRemove,
            CopyOutcome::Incomplete,
            Some(format!("not copied: {}", stats.skipped.join("; "))),
        ),
        Ok(()) => (MediumState::SafeToRemove, CopyOutcome::Ok, None),
        Err(CopyError::Full(m)) => (
            MediumState::MediumFull,
            CopyOutcome::MediumFull,
            Some(m.clone()),
        ),
        Err(e @ CopyError::Refused(_)) => (
            MediumState::Refused,
            CopyOutcome::Refused,
            Some(e.to_string()),
        ),
        Err(CopyError::Cancelled) => (
            MediumState::RemovedDuringCopy,
            CopyOutcome::Cancelled,
            Some("the medium went away or the daemon stopped".to_string()),
        ),
        Err(e) => (
            MediumState::Failed,
            CopyOutcome::Failed,
            Some(e.to_string()),
        ),
    }
}

fn mount(dev: &Device, mp: &Path) -> Result<(), CopyError> {
    // A mount left by a killed daemon.
    let _ = mounts::unmount(mp);
    mounts::mount_private(&dev.devnode, &dev.fs_type, mp).map_err(|e| {
        if still_there(&dev.devnode) {
            CopyError::Io(format!("mounting {}: {e}", dev.devnode.display()))
        } else {
            // Pulled out between its event and the mount (or udev's record was stale): not a
            // failure of the medium. Its removal event follows and the next insertion copies.
            tracing::warn!(
                "{} went away before it could be mounted ({e})",
                dev.devnode.display()
            );
            CopyError::Cancelled
        }
    })
}

/// Whether the device node still has a medium behind it (a detached loop device or an emptied
/// card reader reads as 0 bytes; a removed USB stick's node is gone).
pub(crate) fn still_there(devnode: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    std::fs::File::open(devnode)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .is_ok_and(|size| size > 0)
}

fn sql(e: impl std::fmt::Display) -> CopyError {
    CopyError::Io(format!("catalog: {e}"))
}

/// Checks the medium is this one, then brings it up to date.
fn copy_onto(
    setup: &Setup,
    cat: &mut Catalog,
    m: &MediumRecord,
    mp: &Path,
    cancel: &AtomicBool,
    stats: &mut Stats,
) -> Result<(), CopyError> {
    let root = mp.join(medium::DIR);
    let refuse = CopyError::Refused;
    let ident = medium::read_identity(&root).map_err(|e| {
        refuse(format!(
            "no valid bakfs identity ({e}): not enrolled here, or a filesystem with a cloned UUID"
        ))
    })?;
    if ident.medium_id != m.id.to_hex() {
        return Err(refuse(format!(
            "the filesystem has {}'s UUID but is medium {} ({}): a cloned filesystem?",
            m.label, ident.label, ident.medium_id
        )));
    }
    if ident.repo_id != setup.repo_id.to_hex() {
        return Err(refuse(format!(
            "{} belongs to repository {}, not {}",
            m.label, ident.repo_id, setup.repo_id
        )));
    }
    for d in ["keys", "index", "snapshots", "data", "locks"] {
        medium::ensure_dir(&root.join(d)).map_err(|e| refuse(e.to_string()))?;
    }
    let primary: Arc<dyn Backend> = Arc::new(LocalBackend::new(&setup.repo_root));
    let _lock =
        bakfs_core::repo::lock::shared(&primary, &format!("bakfs-mediad: copying to {}", m.label))
            .map_err(|e| CopyError::Io(format!("locking the repository: {e}")))?;

    // What the medium really holds: recorded files that are gone or changed are forgotten.
    let (mut present, skipped) = copy::inventory(&root);
    if skipped > 0 {
        tracing::warn!(medium = %m.label, "{skipped} entries on the medium are not bakfs files (symlinks or stray files); ignored");
    }
    // (kind, name) → (size, verified_ns) of what the catalog says the medium holds.
    let recorded: HashMap<(FileKind, String), (i64, i64)> = cat
        .medium_files(&m.id)
        .map_err(sql)?
        .into_iter()
        .map(|f| ((f.kind, f.name), (f.size, f.verified_ns)))
        .collect();
    let there = |k: &(FileKind, String), size: i64| present.get(k).map(|s| *s as i64) == Some(size);
    let stale: Vec<(FileKind, String)> = recorded
        .iter()
        .filter(|(k, (size, _))| !there(k, *size))
        .map(|(k, _)| k.clone())
        .collect();
    let mut verified: HashSet<(FileKind, String)> = recorded
        .iter()
        .filter(|(k, (size, _))| there(k, *size))
        .map(|(k, _)| k.clone())
        .collect();
    if !stale.is_empty() {
        tracing::warn!(medium = %m.label, "{} recorded files are missing or changed on the medium; they will be copied again", stale.len());
        cat.remove_medium_files(&m.id, &stale).map_err(sql)?;
    }
    // Files whose last check is older than `reverify_after` are read back again.
    let due_before = now_ns().saturating_sub(setup.reverify_after.as_nanos() as i64);
    // Not `config`, which is written and checked at every insertion anyway, nor a key wrapping
    // revoked in the primary, which is removed below.
    let mut due: Vec<reverify::Due> = recorded
        .iter()
        .filter(|(k, (_, at))| *at <= due_before && verified.contains(*k))
        .filter(|((k, n), _)| match k {
            FileKind::Config => false,
            FileKind::Key => setup.repo_root.join(k.rel_path(n)).exists(),
            _ => true,
        })
        .map(|((k, n), (size, _))| (*k, n.clone(), *size as u64))
        .collect();
    if !due.is_empty() {
        due.sort();
        let t = Instant::now();
        let r = reverify::run(cat, &m.id, &setup.repo_root, &root, &due, cancel)?;
        stats.bytes_verified += r.bytes as i64;
        tracing::info!(
            medium = %m.label,
            "re-verified {} files already on the medium ({} bytes, last checked more than {} ago) in {:.1} s: {} read back right, {} did not",
            due.len(),
            r.bytes,
            bakfs_core::timefmt::format_duration(setup.reverify_after),
            t.elapsed().as_secs_f64(),
            r.good,
            r.bad.len()
        );
        for k in r.bad {
            verified.remove(&k);
            present.remove(&k);
        }
    }
    // A snapshot whose manifest or any pack is no longer there (verified) loses its place, so
    // the plan copies it again if it still wants it.
    let packs_of = cat.medium_packs_by_snapshot(&m.id).map_err(sql)?;
    let broken: Vec<SnapshotId> = cat
        .medium_snapshots(&m.id)
        .map_err(sql)?
        .into_iter()
        .map(|s| s.snapshot_id)
        .filter(|id| {
            !verified.contains(&(FileKind::Snapshot, id.to_hex()))
                || packs_of.get(id).is_some_and(|packs| {
                    packs
                        .iter()
                        .any(|p| !verified.contains(&(FileKind::Pack, p.to_hex())))
                })
        })
        .collect();
    if !broken.is_empty() {
        cat.remove_medium_snapshots(&m.id, &broken).map_err(sql)?;
    }

    let mut w = Writer {
        setup,
        root: &root,
        medium_id: &m.id,
        cancel,
        present: &mut present,
        verified: &mut verified,
        stats,
    };
    // Repository-wide files first: config, key wrappings, index files.
    w.ensure(cat, FileKind::Config, "config", None)?;
    let keys = list(&primary, FileKind::Key)?;
    for k in &keys {
        w.ensure(cat, FileKind::Key, k, None)?;
    }
    // Snapshots that could not be copied (the primary's copy is damaged) are planned without:
    // they must not count for the medium's retention, or the older snapshots they were to
    // replace would be removed for nothing. Each pass that skips one plans again without it.
    let mut skipped: HashSet<SnapshotId> = HashSet::new();
    let mut retention_done = false;
    let mut index_done = false;
    let p = loop {
        let primary_snaps: Vec<_> = cat
            .snapshots(&setup.repo_id)
            .map_err(sql)?
            .into_iter()
            .filter(|s| !skipped.contains(&s.id))
            .collect();
        let held = cat.medium_snapshots(&m.id).map_err(sql)?;
        let p = plan::plan(&m.retention, &primary_snaps, &held, &setup.tz);
        let before = skipped.len();
        for s in &p.add {
            let packs = cat.snapshot_packs(&setup.repo_id, &s.id).map_err(sql)?;
            if packs.is_empty() {
                tracing::warn!(medium = %m.label, snapshot = %s.id, "the catalog lists no packs for this snapshot; run `bakfs catalog rebuild`");
                w.stats.skipped.push(format!(
                    "{} (the catalog lists no packs for it)",
                    s.id.short()
                ));
                skipped.insert(s.id);
                continue;
            }
            loop {
                let r = (|| {
                    if !index_done {
                        for n in list(&primary, FileKind::Index)? {
                            w.ensure(cat, FileKind::Index, &n, None)?;
                        }
                        index_done = true;
                    }
                    w.copy_snapshot(cat, s, &packs)
                })();
                match r {
                    Err(CopyError::Full(msg)) if !retention_done => {
                        // Make room only if that is enough: never empty a medium for nothing.
                        // Packs already on the medium with their size (written before the
                        // medium filled up, or by an earlier run) are read back, not written
                        // again.
                        let need: u64 = packs
                            .iter()
                            .filter(|pk| {
                                w.present.get(&(FileKind::Pack, pk.id.to_hex())) != Some(&pk.size)
                            })
                            .map(|pk| pk.size)
                            .sum();
                        let free = medium::free_bytes(&root).unwrap_or(0);
                        let freed = freeable(cat, m, &p, w.present)?;
                        if need > free + freed {
                            return Err(CopyError::Full(format!(
                                "{msg}; snapshot {} needs {need} bytes, {free} are free and retention could free {freed}",
                                s.id.short()
                            )));
                        }
                        tracing::info!(medium = %m.label, "{msg}: applying retention first to make room");
                        retention(cat, &root, m, &p, w.stats, w.present)?;
                        retention_done = true;
                    }
                    Err(CopyError::SourceDamaged(msg)) => {
                        tracing::error!(medium = %m.label, snapshot = %s.id, "snapshot {} not copied: primary repository damaged: {msg}; run `bakfs check --read-data`", s.id.short());
                        w.stats
                            .skipped
                            .push(format!("{} (primary repository damaged)", s.id.short()));
                        skipped.insert(s.id);
                        break;
                    }
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        if skipped.len() == before {
            break p;
        }
    };
    retention(cat, &root, m, &p, w.stats, w.present)?;
    // Key wrappings removed from the primary (a revoked passphrase) go from the medium too.
    let keep: HashSet<&String> = keys.iter().collect();
    let old_keys: Vec<String> = w
        .present
        .keys()
        .filter(|(k, n)| *k == FileKind::Key && !keep.contains(n))
        .map(|(_, n)| n.clone())
        .collect();
    if !keys.is_empty() {
        for k in old_keys {
            cat.remove_medium_files(&m.id, &[(FileKind::Key, k.clone())])
                .map_err(sql)?;
            copy::remove(&root, FileKind::Key, &k)?;
        }
    }
    Ok(())
}

/// Test hook: `BAKFS_MEDIAD_TEST_PACE_MS` sleeps after each file written, so that tests can
/// pull a medium or kill the daemon in the middle of a copy. Unset in production.
fn test_pace() -> Option<u64> {
    std::env::var("BAKFS_MEDIAD_TEST_PACE_MS")
        .ok()?
        .parse()
        .ok()
}

fn list(primary: &Arc<dyn Backend>, kind: FileKind) -> Result<Vec<String>, CopyError> {
    let mut v = primary
        .list(kind)
        .map_err(|e| CopyError::Io(format!("listing the repository: {e}")))?;
    v.sort();
    Ok(v)
}

/// Bytes written between two syncs during a snapshot's copy.
const BATCH_BYTES: u64 = 64 << 20;

/// Read-back results by file.
type ReadBacks = HashMap<(FileKind, String), Result<blake3::Hash, CopyError>>;

struct Writer<'a> {
    setup: &'a Setup,
    root: &'a Path,
    medium_id: &'a MediumId,
    cancel: &'a AtomicBool,
    present: &'a mut HashMap<(FileKind, String), u64>,
    verified: &'a mut HashSet<(FileKind, String)>,
    stats: &'a mut Stats,
}

impl Writer<'_> {
    /// Makes sure one file is on the medium and verified; `size` is the expected size if known.
    /// Returns the file's record when it had to be written or checked now.
    fn ensure(
        &mut self,
        cat: &mut Catalog,
        kind: FileKind,
        name: &str,
        size: Option<u64>,
    ) -> Result<(), CopyError> {
        let key = (kind, name.to_string());
        if self.verified.contains(&key) && (kind.content_addressed() || kind == FileKind::Key) {
            return Ok(());
        }
        let rec = self.put(kind, name, size)?;
        self.sync_and_verify(cat, &[rec], &[], ReadBacks::new())
    }

    /// Copies (if needed) one file; returns what must be read back: (kind, name, size, hash).
    fn put(
        &mut self,
        kind: FileKind,
        name: &str,
        size: Option<u64>,
    ) -> Result<(FileKind, String, u64, blake3::Hash), CopyError> {
        let src = self.setup.repo_root.join(kind.rel_path(name));
        let key = (kind, name.to_string());
        let src_size = match size {
            Some(s) if s > 0 => s,
            _ => std::fs::symlink_metadata(&src)
                .map_err(|e| CopyError::Io(format!("{}: {e}", src.display())))?
                .len(),
        };
        // Already there with the right size but never verified (an interrupted run): its
        // read-back decides. Non-content-addressed files are compared with the source's hash.
        if self.present.get(&key) == Some(&src_size) && kind.content_addressed() {
            let want = blake3::Hash::from_hex(name).map_err(|e| CopyError::Io(e.to_string()))?;
            return Ok((kind, name.to_string(), src_size, want));
        }
        let (hash, n) = copy::copy_in(&src, self.root, kind, name, self.cancel)?;
        if let Some(ms) = test_pace() {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        self.present.insert(key, n);
        self.stats.files_written += 1;
        self.stats.bytes_written += n as i64;
        Ok((kind, name.to_string(), n, hash))
    }

    /// Syncs the filesystem, reads back `files` and records them (and `snaps`) as verified.
    /// `early` holds read-backs already done (by the verifier thread of [`Self::copy_snapshot`]).
    fn sync_and_verify(
        &mut self,
        cat: &mut Catalog,
        files: &[(FileKind, String, u64, blake3::Hash)],
        snaps: &[(MediumSnapshot, Vec<PackId>)],
        mut early: ReadBacks,
    ) -> Result<(), CopyError> {
        copy::sync_fs(self.root)?;
        let now = now_ns();
        let mut rows = Vec::new();
        for (kind, name, size, want) in files {
            let got = match early.remove(&(*kind, name.clone())) {
                Some(r) => r?,
                None => copy::read_back(self.root, *kind, name, *size, false, self.cancel)?,
            };
            self.stats.bytes_verified += *size as i64;
            if got != *want {
                let src = self.setup.repo_root.join(kind.rel_path(name));
                if kind.content_addressed() && !copy::source_matches(&src, name)? {
                    copy::remove(self.root, *kind, name)?;
                    self.present.remove(&(*kind, name.clone()));
                    return Err(CopyError::SourceDamaged(format!(
                        "{} does not match its name",
                        src.display()
                    )));
                }
                // A bad copy (or a stale file of the same size): replace it once.
                tracing::warn!(
                    "{} {name} on the medium does not match; copying it again",
                    kind.as_str()
                );
                copy::remove(self.root, *kind, name)?;
                self.present.remove(&(*kind, name.clone()));
                let rec = self.put(*kind, name, Some(*size))?;
                copy::sync_fs(self.root)?;
                let again = copy::read_back(self.root, *kind, name, rec.2, false, self.cancel)?;
                if again != rec.3 {
                    return Err(CopyError::Io(format!(
                        "{} {name}: read back differs from what was written (failing medium?)",
                        kind.as_str()
                    )));
                }
            }
            rows.push(MediumFile {
                kind: *kind,
                name: name.clone(),
                size: *size as i64,
                verified_ns: now,
            });
        }
        cat.record_medium_verified(self.medium_id, &rows, snaps, Verification::Written, now)
            .map_err(sql)?;
        for (kind, name, _, _) in files {
            self.verified.insert((*kind, name.clone()));
        }
        Ok(())
    }

    /// Copies one snapshot: its packs, verified, then its manifest, verified; records.
    fn copy_snapshot(
        &mut self,
        cat: &mut Catalog,
        s: &bakfs_core::catalog::SnapshotRecord,
        packs: &[bakfs_core::catalog::PackRecord],
    ) -> Result<(), CopyError> {
        // Files are written in batches of about 64 MiB; after a batch the filesystem is synced
        // and a second thread reads it back while the next batch is written, so verification
        // costs little more than the copy and the device always has writes queued.
        let (tx, rx) = std::sync::mpsc::channel::<Vec<(FileKind, String, u64)>>();
        let root = self.root.to_path_buf();
        let cancel = self.cancel;
        let t_copy = Instant::now();
        let (todo, early) = std::thread::scope(|sc| {
            let verifier = sc.spawn(move || {
                let mut out = ReadBacks::new();
                for batch in rx {
                    // The batch is flushed here, not in the writer, so that writing the next
                    // batch goes on: one syncfs per batch, as each fsync of a new file costs
                    // a journal commit and a device cache flush.
                    // If syncfs fails, each file is flushed on its own before it is read.
                    let flush_each = copy::sync_fs(&root).is_err();
                    for (k, n, size) in batch {
                        let r = copy::read_back(&root, k, &n, size, flush_each, cancel);
                        out.insert((k, n), r);
                    }
                }
                out
            });
            let todo = (|| {
                let mut todo = Vec::new();
                let mut batch = Vec::new();
                let mut batch_bytes = 0u64;
                for p in packs {
                    if !self.verified.contains(&(FileKind::Pack, p.id.to_hex())) {
                        let rec = self.put(FileKind::Pack, &p.id.to_hex(), Some(p.size))?;
                        batch_bytes += rec.2;
                        batch.push((rec.0, rec.1.clone(), rec.2));
                        todo.push(rec);
                        if batch_bytes >= BATCH_BYTES {
                            let _ = tx.send(std::mem::take(&mut batch));
                            batch_bytes = 0;
                        }
                    }
                }
                let _ = tx.send(batch);
                Ok::<_, CopyError>(todo)
            })();
            drop(tx);
            let written = t_copy.elapsed();
            let early = verifier.join().unwrap_or_default();
            tracing::debug!(
                snapshot = %s.id,
                "written in {:.3} s, read back {:.3} s later",
                written.as_secs_f64(),
                (t_copy.elapsed() - written).as_secs_f64()
            );
            (todo, early)
        });
        let todo = todo?;
        self.sync_and_verify(cat, &todo, &[], early)?;
        // The manifest last, once every pack it needs reads back right: a medium never holds a
        // snapshot it cannot restore (a pack damaged in the primary stops here).
        let manifest = self.put(FileKind::Snapshot, &s.id.to_hex(), None)?;
        let snap = MediumSnapshot {
            snapshot_id: s.id,
            time_ns: s.time_ns,
            host: s.host.clone(),
            paths: s.paths.clone(),
            job: s.job.clone(),
            verified_ns: now_ns(),
        };
        let pack_ids = packs.iter().map(|p| p.id).collect();
        self.sync_and_verify(cat, &[manifest], &[(snap, pack_ids)], ReadBacks::new())?;
        self.stats.added += 1;
        tracing::info!(snapshot = %s.id, "snapshot {} ({}) verified on the medium", s.id.short(), s.time);
        Ok(())
    }
}

/// Removes the snapshots the policy no longer wants, then the packs no snapshot on the medium
/// (or about to be copied) needs. Catalog rows go first, files second.
fn retention(
    cat: &mut Catalog,
    root: &Path,
    m: &MediumRecord,
    p: &plan::Plan,
    stats: &mut Stats,
    present: &mut HashMap<(FileKind, String), u64>,
) -> Result<(), CopyError> {
    if !p.remove.is_empty() {
        cat.remove_medium_snapshots(&m.id, &p.remove).map_err(sql)?;
        for id in &p.remove {
            copy::remove(root, FileKind::Snapshot, &id.to_hex())?;
            // Counted once: retention may run twice in a job (to make room, then at the end).
            if present.remove(&(FileKind::Snapshot, id.to_hex())).is_some() {
                stats.removed += 1;
                tracing::info!(medium = %m.label, snapshot = %id, "removed by the medium's retention");
            }
        }
    }
    let unknown = unknown_manifests(cat, m, p, present)?;
    if unknown > 0 {
        tracing::warn!(medium = %m.label, "{unknown} snapshot manifests on the medium are not in the catalog; keeping all packs");
        return Ok(());
    }
    let unneeded = unneeded_packs(cat, m, p, present, &[])?;
    if unneeded.is_empty() {
        return Ok(());
    }
    let rows: Vec<(FileKind, String)> = unneeded
        .iter()
        .map(|n| (FileKind::Pack, n.clone()))
        .collect();
    cat.remove_medium_files(&m.id, &rows).map_err(sql)?;
    for n in &unneeded {
        copy::remove(root, FileKind::Pack, n)?;
        present.remove(&(FileKind::Pack, n.clone()));
    }
    tracing::info!(medium = %m.label, "removed {} packs no snapshot on the medium needs", unneeded.len());
    Ok(())
}

/// Packs on the medium that no snapshot kept on it (after removing `dropping`) or about to be
/// copied needs.
fn unneeded_packs(
    cat: &Catalog,
    m: &MediumRecord,
    p: &plan::Plan,
    present: &HashMap<(FileKind, String), u64>,
    dropping: &[SnapshotId],
) -> Result<Vec<String>, CopyError> {
    // By name, as the files on the medium are.
    let mut needed: HashSet<String> = cat
        .medium_packs_by_snapshot(&m.id)
        .map_err(sql)?
        .into_iter()
        .filter(|(snap, _)| !dropping.contains(snap))
        .flat_map(|(_, packs)| packs)
        .map(|pk| pk.to_hex())
        .collect();
    for s in &p.add {
        for pk in cat.snapshot_packs(&s.repo_id, &s.id).map_err(sql)? {
            needed.insert(pk.id.to_hex());
        }
    }
    Ok(present
        .keys()
        .filter(|(k, n)| *k == FileKind::Pack && !needed.contains(n))
        .map(|(_, n)| n.clone())
        .collect())
}

/// Manifests on the medium that neither the catalog's record of it nor the plan knows: their
/// packs are unknown, so while they are there no pack is removed.
fn unknown_manifests(
    cat: &Catalog,
    m: &MediumRecord,
    p: &plan::Plan,
    present: &HashMap<(FileKind, String), u64>,
) -> Result<usize, CopyError> {
    let held: HashSet<SnapshotId> = cat
        .medium_snapshots(&m.id)
        .map_err(sql)?
        .into_iter()
        .map(|s| s.snapshot_id)
        .collect();
    let known = |n: &str| {
        SnapshotId::from_hex(n).is_ok_and(|id| held.contains(&id) || p.wanted.contains(&id))
    };
    Ok(present
        .keys()
        .filter(|(k, n)| *k == FileKind::Snapshot && !known(n))
        .count())
}

/// Bytes retention would free on the medium now.
fn freeable(
    cat: &Catalog,
    m: &MediumRecord,
    p: &plan::Plan,
    present: &HashMap<(FileKind, String), u64>,
) -> Result<u64, CopyError> {
    if unknown_manifests(cat, m, p, present)? > 0 {
        return Ok(0);
    }
    Ok(unneeded_packs(cat, m, p, present, &p.remove)?
        .iter()
        .filter_map(|n| present.get(&(FileKind::Pack, n.clone())))
        .sum())
}

/// Mirrors the catalog's ledger of this medium onto it, with `this` run as it ends
/// (informational: bakfs never trusts it).
fn write_ledger(
    cat: &Catalog,
    root: &Path,
    m: &MediumRecord,
    this: &MediumRun,
) -> Result<(), CopyError> {
    let snaps = cat.medium_snapshots(&m.id).map_err(sql)?;
    let mut runs = cat.medium_runs(&m.id, 20).map_err(sql)?;
    match runs.iter_mut().find(|r| r.id == this.id) {
        Some(r) => *r = this.clone(),
        None => runs.insert(0, this.clone()),
    }
    let files = cat.medium_files(&m.id).map_err(sql)?;
    let bytes: i64 = files.iter().map(|f| f.size).sum();
    let ledger = serde_json::json!({
        "medium_id": m.id.to_hex(),
        "label": m.label,
        "repo_id": m.repo_id.to_hex(),
        "pool": m.pool,
        "kind": m.kind,
        "updated_ns": now_ns(),
        "files": files.len(),
        "bytes": bytes,
        "snapshots": snaps,
        "runs": runs,
    });
    let text = serde_json::to_vec_pretty(&ledger).map_err(|e| CopyError::Io(e.to_string()))?;
    medium::write_atomic(root, medium::LEDGER, &text).map_err(|e| CopyError::Io(e.to_string()))
}
