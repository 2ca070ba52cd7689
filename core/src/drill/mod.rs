//! Restore drills (design.md §13): restore a snapshot, or a random sample of its files, from one
//! copy into a sandbox, read every restored file back against the snapshot, and optionally
//! compare some of them with the live files they were backed up from.
//!
//! This module does the restoring and checking; the caller picks the copy (the primary or a
//! medium, opened alone), records the drill in the catalog ([`crate::catalog::Catalog::begin_drill`])
//! and shows the result.
//!
//! ```no_run
//! # use bakfs_core::{drill, repo::Repository, restore::RestoreProgress};
//! # fn f(repo: &Repository, snap: &bakfs_core::format::Snapshot) -> bakfs_core::Result<()> {
//! let sandbox = drill::Sandbox::create("/var/tmp".as_ref())?;
//! let opts = drill::DrillOptions { scope: drill::Scope::Sample(5.0), against_source: None };
//! let report = drill::run(repo, &snap.tree, &sandbox.target(), &opts, &RestoreProgress::default())?;
//! println!("{:?}: {} files, {} bytes", report.outcome(), report.files, report.bytes);
//! sandbox.remove()?;
//! # Ok(()) }
//! ```

mod sandbox;
mod source;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::Path;
use std::time::Instant;

use rand::seq::SliceRandom;
use serde::Serialize;

use crate::catalog::{DrillMode, DrillOutcome, NewestSnapshot};
use crate::error::{Error, Result};
use crate::format::id::BlobId;
use crate::format::NodeKind;
use crate::repo::walk::{Revisit, TreeWalk};
use crate::repo::Repository;
use crate::restore::{self, RestoreOptions, RestoreProgress};

pub use sandbox::Sandbox;
pub use source::{compare_with_source, SourceComparison};

/// Where sandboxes are made unless told otherwise: a disk, not a tmpfs, with room.
pub const DEFAULT_SANDBOX: &str = "/var/tmp";
/// The share of files a drill restores unless told otherwise, in percent.
pub const DEFAULT_SAMPLE_PERCENT: f64 = 5.0;
/// The share of compared files that may differ from the live source, in percent.
pub const DEFAULT_MAX_CHANGED_PERCENT: f64 = 20.0;

/// What a drill restores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    /// This percentage (in (0, 100]) of the snapshot's regular files, picked at random, at least
    /// one.
    Sample(f64),
    /// The whole snapshot.
    Full,
}

impl Scope {
    /// How the catalog records it.
    pub fn mode(self) -> DrillMode {
        match self {
            Scope::Sample(_) => DrillMode::Sample,
            Scope::Full => DrillMode::Full,
        }
    }
}

/// How to drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub scope: Scope,
    /// Compare restored files with the live ones at their paths; the value is the percentage
    /// of compared files that may differ or be gone before the drill fails.
    pub against_source: Option<f64>,
}

/// A regular file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Its path in the snapshot, which is its source path (`/etc/hosts`).
    pub path: String,
    pub size: u64,
}

/// What a drill found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrillReport {
    /// Regular files in the snapshot.
    pub files_in_snapshot: u64,
    /// Regular files restored and read back right.
    pub files: u64,
    /// Bytes of file data restored.
    pub bytes: u64,
    /// Seconds the restore and the reading back took.
    pub seconds: f64,
    /// Snapshot paths whose data did not restore right (a blob that fails to authenticate, a
    /// missing pack, bytes read back that differ), with why.
    pub damaged: Vec<String>,
    /// Other failures (the sandbox's filesystem full, permissions), each with its path.
    pub errors: Vec<String>,
    /// With [`DrillOptions::against_source`]: how the restored files compare with the live ones.
    pub source: Option<SourceComparison>,
}

impl DrillReport {
    /// `Damaged` if any file's data was damaged, `Failed` if the drill could not do all it
    /// was asked (other failures, or more live files changed than allowed), else `Ok`.
    pub fn outcome(&self) -> DrillOutcome {
        if !self.damaged.is_empty() {
            DrillOutcome::Damaged
        } else if !self.errors.is_empty() || self.source.as_ref().is_some_and(|s| !s.within) {
            DrillOutcome::Failed
        } else {
            DrillOutcome::Ok
        }
    }
}

/// Every regular file of the snapshot tree `root`, in walk order.
///
/// # Errors
/// [`Error::Damaged`] for a tree that cannot be read or decoded; I/O errors.
pub fn snapshot_files(repo: &Repository, root: &BlobId) -> Result<Vec<SnapshotFile>> {
    let mut out = Vec::new();
    let mut walk = TreeWalk::new(Revisit::EveryPath);
    walk.push(*root, String::new());
    while let Some(step) = walk.next() {
        let tree = repo.read_tree(&step.id)?;
        walk.descend(&tree, &step.path);
        for n in tree.nodes.iter().filter(|n| n.kind == NodeKind::File) {
            out.push(SnapshotFile {
                path: format!("{}/{}", step.path, String::from_utf8_lossy(&n.name)),
                size: n.size,
            });
        }
    }
    Ok(out)
}

/// The files `scope` picks from `files`: all, or a random sample of the share asked (at least
/// one, if there is any).
pub fn choose(mut files: Vec<SnapshotFile>, scope: Scope) -> Vec<SnapshotFile> {
    let Scope::Sample(pct) = scope else {
        return files;
    };
    let want = ((files.len() as f64 * pct / 100.0).ceil() as usize).clamp(1, files.len().max(1));
    files.shuffle(&mut rand::thread_rng());
    files.truncate(want);
    files
}

/// The snapshot `spec` names among `candidates` (what one copy holds), of `job` if given:
/// `latest` or none for the newest, else a unique id prefix of at least 4 hex digits.
///
/// # Errors
/// [`Error::NotFound`] when none or several match.
pub fn pick_snapshot(
    candidates: &[NewestSnapshot],
    job: Option<&str>,
    spec: Option<&str>,
) -> Result<NewestSnapshot> {
    let of_job = candidates
        .iter()
        .filter(|c| job.is_none() || c.job.as_deref() == job);
    let what = job.map(|j| format!(" of job {j}")).unwrap_or_default();
    match spec.filter(|s| *s != "latest") {
        None => of_job
            .max_by_key(|c| (c.time_ns, c.snapshot_id.to_hex()))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no snapshot{what} there"))),
        Some(s) => {
            let s = s.to_ascii_lowercase();
            if s.len() < 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::NotFound(format!(
                    "snapshot {s:?}: give `latest` or at least 4 hex digits of an id"
                )));
            }
            let m: Vec<_> = of_job
                .filter(|c| c.snapshot_id.to_hex().starts_with(&s))
                .collect();
            match m.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(Error::NotFound(format!(
                    "no snapshot{what} matches {s:?} there"
                ))),
                more => Err(Error::NotFound(format!(
                    "{} snapshots match {s:?}; give more digits",
                    more.len()
                ))),
            }
        }
    }
}

/// A restore's failures split into data damage and the rest, each message naming the snapshot's
/// path instead of the sandbox's.
fn failures(rep: &restore::RestoreReport, target: &Path) -> (Vec<String>, Vec<String>) {
    let t = target.display().to_string();
    let strip = |s: &str| s.replace(&t, "");
    let damaged: Vec<String> = rep.damaged_entries.iter().map(|(_, m)| strip(m)).collect();
    let errors = rep
        .errors
        .iter()
        .filter(|e| !rep.damaged_entries.iter().any(|(_, m)| m == *e))
        .map(|e| strip(e))
        .collect();
    (damaged, errors)
}

/// Drills the snapshot tree `root` of `repo` into `target` (an empty directory of a
/// [`Sandbox`]): restores what `opts.scope` picks with every file read back against the
/// snapshot, then compares with the live source if asked. Nothing is written outside `target`.
///
/// # Errors
/// [`Error::Damaged`] when the snapshot's trees cannot be read; [`Error::Invalid`] when the
/// sandbox's filesystem has no room for what would be restored; I/O errors. Failures of single
/// files are in the report.
pub fn run(
    repo: &Repository,
    root: &BlobId,
    target: &Path,
    opts: &DrillOptions,
    progress: &RestoreProgress,
) -> Result<DrillReport> {
    let all = snapshot_files(repo, root)?;
    let files_in_snapshot = all.len() as u64;
    let chosen = choose(all, opts.scope);
    let need: u64 = chosen.iter().map(|f| f.size).sum();
    let free = crate::medium::free_bytes(target)
        .map_err(|e| Error::Invalid(format!("sandbox {}: {e}", target.display())))?;
    if need > free {
        return Err(Error::Invalid(format!(
            "sandbox {}: its filesystem has {free} bytes free, the drill restores {need}; \
             choose a sandbox with room",
            target.display()
        )));
    }
    let only = match opts.scope {
        Scope::Full => None,
        Scope::Sample(_) => Some(
            chosen
                .iter()
                .map(|f| f.path.clone())
                .collect::<HashSet<_>>(),
        ),
    };
    let ropts = RestoreOptions {
        verify: true,
        only,
        ..RestoreOptions::default()
    };
    tracing::info!(
        "drilling {} of {files_in_snapshot} files ({need} bytes) into {}",
        chosen.len(),
        target.display()
    );
    let t = Instant::now();
    let rep = restore::restore(repo, root, None, target, &ropts, progress)?;
    let seconds = t.elapsed().as_secs_f64();
    let (mut damaged, errors) = failures(&rep, target);
    // Every chosen file must be there now, whole: restore removes what failed.
    let mut files = 0;
    for f in &chosen {
        match std::fs::symlink_metadata(target.join(f.path.trim_start_matches('/'))) {
            Ok(m) if m.is_file() && m.len() == f.size => files += 1,
            _ if damaged
                .iter()
                .chain(&errors)
                .any(|e| e.contains(&format!("{}:", f.path))) => {}
            _ => damaged.push(format!("{}: not restored", f.path)),
        }
    }
    // The sample itself, or with --full a sample of it: reading every live file is not wanted.
    let source = opts.against_source.map(|max| match opts.scope {
        Scope::Sample(_) => compare_with_source(target, &chosen, max),
        Scope::Full => {
            let some = choose(chosen.clone(), Scope::Sample(DEFAULT_SAMPLE_PERCENT));
            compare_with_source(target, &some, max)
        }
    });
    Ok(DrillReport {
        files_in_snapshot,
        files,
        bytes: rep.bytes,
        seconds,
        damaged,
        errors,
        source,
    })
}
