//! Writing files onto the medium and reading them back before the catalog records them.
//!
//! A snapshot's packs are written in batches of about 64 MiB; a second thread takes each
//! finished batch, syncs the medium once for it and reads it back file by file while the next
//! batch is written, so verification costs little more than the copy and the device always has
//! writes queued. The manifest is written last, once every pack it needs read back right.

use std::collections::HashMap;
use std::time::Instant;

use bakfs_core::catalog::{
    MediumFile, MediumKind, MediumSnapshot, PackRecord, SnapshotRecord, Verification,
};
use bakfs_core::format::id::PackId;
use bakfs_core::repo::backend::FileKind;

use crate::error::CopyError;
use crate::medium::{FileRef, Flush};
use crate::rotate::Rotation;

/// Bytes written between two syncs during a snapshot's copy.
const BATCH_BYTES: u64 = 64 << 20;

/// A file on the medium waiting to be read back: its size and the blake3 it must have.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    kind: FileKind,
    name: String,
    size: u64,
    want: blake3::Hash,
    /// Whether it is read back before it is recorded: always, but for the packs a share's
    /// sample leaves out ([`Rotation::checks`]).
    check: bool,
}

impl Written {
    fn key(&self) -> FileRef {
        (self.kind, self.name.clone())
    }
}

/// Read-back results by file.
type ReadBacks = HashMap<FileRef, Result<blake3::Hash, CopyError>>;

/// Test hook: `BAKFS_MEDIAD_TEST_PACE_MS` sleeps after each file written, so that tests can
/// pull a medium or kill the daemon in the middle of a copy. Unset in production.
pub(crate) fn test_pace() -> Option<u64> {
    std::env::var("BAKFS_MEDIAD_TEST_PACE_MS")
        .ok()?
        .parse()
        .ok()
}

impl Rotation<'_> {
    /// Makes sure one file of the repository (not a pack) is on the medium and verified.
    /// A content-addressed file or key wrapping already verified is left alone; `config` is
    /// written and checked every time.
    pub(crate) fn ensure(&mut self, kind: FileKind, name: &str) -> Result<(), CopyError> {
        let key = (kind, name.to_string());
        if self.verified.contains(&key) && (kind.content_addressed() || kind == FileKind::Key) {
            return Ok(());
        }
        let w = self.put(kind, name, None)?;
        self.sync_and_verify(&[w], &[], ReadBacks::new())
    }

    /// Copies one file, unless it is there already with the right size but not verified (an
    /// interrupted run: its read-back decides). `size` is its size if known.
    fn put(&mut self, kind: FileKind, name: &str, size: Option<u64>) -> Result<Written, CopyError> {
        let src_size = match size {
            Some(s) if s > 0 => s,
            _ => self.primary.size(kind, name)?,
        };
        if self.present.get(&(kind, name.to_string())) == Some(&src_size)
            && kind.content_addressed()
        {
            let want = blake3::Hash::from_hex(name).map_err(|e| CopyError::Io(e.to_string()))?;
            return Ok(Written {
                kind,
                name: name.to_string(),
                size: src_size,
                want,
                // Found there from an interrupted run, never written by this one: its
                // read-back decides.
                check: true,
            });
        }
        let mut from = self.primary.open(kind, name, src_size)?;
        let (want, n) = self.files.write(kind, name, &mut from, self.cancel)?;
        if let Some(ms) = test_pace() {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        self.present.insert((kind, name.to_string()), n);
        self.stats.files_written += 1;
        self.stats.bytes_written += n as i64;
        Ok(Written {
            kind,
            name: name.to_string(),
            size: n,
            want,
            check: self.checks(kind, name),
        })
    }

    /// Whether a file just written is read back before it is recorded. Every file is, except
    /// on a share with `[mediad] share_read_back` below 100%: there a pack is read back when
    /// its name (a blake3 hash, so uniformly spread) falls in the sample; manifests, index
    /// files, keys and config always are. The packs left out are recorded as written and read
    /// back in full once `reverify_after` has passed (docs/mediad.md, NAS shares).
    fn checks(&self, kind: FileKind, name: &str) -> bool {
        let pct = self.setup.share_read_back;
        if self.m.kind != MediumKind::Share || kind != FileKind::Pack || pct >= 100.0 {
            return true;
        }
        let x = u32::from_str_radix(name.get(..8).unwrap_or("0"), 16).unwrap_or(0);
        f64::from(x) < pct / 100.0 * f64::from(u32::MAX)
    }

    /// Syncs the medium, reads back `files` and records them (and `snaps`) as verified, in one
    /// catalog transaction. `early` holds read-backs already done (by the verifier thread of
    /// [`Self::copy_snapshot`]). A file that does not match is rewritten once, unless the
    /// primary's copy does not match its name either ([`CopyError::SourceDamaged`]).
    fn sync_and_verify(
        &mut self,
        files: &[Written],
        snaps: &[(MediumSnapshot, Vec<PackId>)],
        mut early: ReadBacks,
    ) -> Result<(), CopyError> {
        self.files.sync()?;
        let now = bakfs_core::timefmt::now_ns();
        let mut rows = Vec::new();
        // A sampled file that did not read back right: the whole batch is read back.
        let mut all = false;
        for w in files
            .iter()
            .filter(|w| w.check)
            .chain(files.iter().filter(|w| !w.check))
        {
            if w.check || all {
                let got = match early.remove(&w.key()) {
                    Some(r) => r?,
                    None => self.read_back(w)?,
                };
                self.stats.bytes_verified += w.size as i64;
                if got != w.want {
                    all = true;
                    self.replace_bad_copy(w)?;
                }
            }
            rows.push(MediumFile {
                kind: w.kind,
                name: w.name.clone(),
                size: w.size as i64,
                verified_ns: now,
            });
        }
        self.cat
            .record_medium_verified(&self.m.id, &rows, snaps, Verification::Written, now)
            .map_err(CopyError::catalog)?;
        for w in files {
            self.verified.insert(w.key());
        }
        Ok(())
    }

    fn read_back(&self, w: &Written) -> Result<blake3::Hash, CopyError> {
        self.files
            .read_back(w.kind, &w.name, w.size, Flush::Synced, self.cancel)
    }

    /// After a read-back mismatch: a primary that does not match the name is damaged (the copy
    /// is deleted); otherwise the copy is bad, or a stale file of the same size, and is written
    /// again once. A second mismatch fails the job.
    fn replace_bad_copy(&mut self, w: &Written) -> Result<(), CopyError> {
        if w.kind.content_addressed() && !self.primary.matches_name(w.kind, &w.name)? {
            self.files.remove(w.kind, &w.name)?;
            self.present.remove(&w.key());
            return Err(CopyError::SourceDamaged(format!(
                "{} does not match its name",
                self.primary.describe(w.kind, &w.name)
            )));
        }
        tracing::warn!(
            "{} {} on the medium does not match; copying it again",
            w.kind.as_str(),
            w.name
        );
        self.files.remove(w.kind, &w.name)?;
        self.present.remove(&w.key());
        let again = self.put(w.kind, &w.name, Some(w.size))?;
        self.files.sync()?;
        if self.read_back(&again)? != again.want {
            return Err(CopyError::Io(format!(
                "{} {}: read back differs from what was written (failing medium?)",
                w.kind.as_str(),
                w.name
            )));
        }
        Ok(())
    }

    /// Copies one snapshot: its packs the medium lacks, read back; then its manifest, read
    /// back; then records the snapshot with its pack list.
    pub(crate) fn copy_snapshot(
        &mut self,
        s: &SnapshotRecord,
        packs: &[PackRecord],
    ) -> Result<(), CopyError> {
        let (written, early) = self.write_packs(s, packs);
        self.sync_and_verify(&written?, &[], early)?;
        // The manifest last, once every pack it needs reads back right: a medium never holds a
        // snapshot it cannot restore (a pack damaged in the primary stops here).
        let manifest = self.put(FileKind::Snapshot, &s.id.to_hex(), None)?;
        let snap = MediumSnapshot {
            snapshot_id: s.id,
            time_ns: s.time_ns,
            host: s.host.clone(),
            paths: s.paths.clone(),
            job: s.job.clone(),
            verified_ns: bakfs_core::timefmt::now_ns(),
        };
        let pack_ids = packs.iter().map(|p| p.id).collect();
        self.sync_and_verify(&[manifest], &[(snap, pack_ids)], ReadBacks::new())?;
        self.stats.added += 1;
        tracing::info!(snapshot = %s.id, "snapshot {} ({}) verified on the medium", s.id.short(), s.time);
        Ok(())
    }

    /// Writes the packs not verified on the medium in batches, each read back by a second
    /// thread as soon as it is complete. Returns what was written and what was read back.
    fn write_packs(
        &mut self,
        s: &SnapshotRecord,
        packs: &[PackRecord],
    ) -> (Result<Vec<Written>, CopyError>, ReadBacks) {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<Written>>();
        let (files, cancel) = (self.files, self.cancel);
        let t_copy = Instant::now();
        std::thread::scope(|sc| {
            let verifier = sc.spawn(move || {
                let mut out = ReadBacks::new();
                for batch in rx {
                    // One sync per batch here, not in the writer, so that writing the next batch
                    // goes on: each fsync of a new file costs a journal commit and a device
                    // cache flush. If the sync fails, each file is flushed on its own first.
                    let flush = match files.sync() {
                        Ok(()) => Flush::Synced,
                        Err(_) => Flush::FileFirst,
                    };
                    for w in batch.into_iter().filter(|w| w.check) {
                        let r = files.read_back(w.kind, &w.name, w.size, flush, cancel);
                        out.insert(w.key(), r);
                    }
                }
                out
            });
            let written = (|| {
                let mut written = Vec::new();
                let mut batch = Vec::new();
                let mut batch_bytes = 0u64;
                for p in packs {
                    let name = p.id.to_hex();
                    if self.verified.contains(&(FileKind::Pack, name.clone())) {
                        continue;
                    }
                    let w = self.put(FileKind::Pack, &name, Some(p.size))?;
                    batch_bytes += w.size;
                    batch.push(w.clone());
                    written.push(w);
                    if batch_bytes >= BATCH_BYTES {
                        let _ = tx.send(std::mem::take(&mut batch));
                        batch_bytes = 0;
                    }
                }
                let _ = tx.send(batch);
                Ok(written)
            })();
            drop(tx);
            let t_written = t_copy.elapsed();
            let early = verifier.join().unwrap_or_default();
            tracing::debug!(
                snapshot = %s.id,
                "written in {:.3} s, read back {:.3} s later",
                t_written.as_secs_f64(),
                (t_copy.elapsed() - t_written).as_secs_f64()
            );
            (written, early)
        })
    }
}
