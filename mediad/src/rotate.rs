//! One rotation, step by step: what a job does with a medium once it is ready ([`copy_onto`]).
//! Each step is a method of [`Rotation`] with a name; they are grouped by job: taking stock in
//! `reconcile.rs`, copying and reading back in `writer.rs`, removing in `retention.rs`, and the
//! steps that tie them together here.
//!
//! The catalog only ever lists what was read back verified: files are recorded after the medium
//! was synced and each file read back and hashed, a snapshot's manifest is written only once all
//! its packs read back right, and before anything is deleted from the medium its rows are
//! removed from the catalog.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;

use bakfs_core::catalog::{Catalog, MediumRecord, PackRecord, SnapshotRecord};
use bakfs_core::format::id::SnapshotId;
use bakfs_core::medium::Identity;
use bakfs_core::repo::backend::FileKind;

use crate::error::CopyError;
use crate::job::Setup;
use crate::medium::{FileRef, Files};
use crate::plan::{self, Plan};
use crate::primary::Primary;

/// What a rotation did, for its run record and its last log line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Snapshots not copied (the primary's copy of a file is damaged), with why.
    pub skipped: Vec<String>,
    pub added: i64,
    pub removed: i64,
    pub files_written: i64,
    pub bytes_written: i64,
    pub bytes_verified: i64,
}

/// What became of a snapshot the plan wanted copied.
enum Copied {
    Yes,
    /// Not copied, and left out of the plans from now on.
    LeftOut,
}

/// Whether retention already ran to make room: it does so once per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    NotMade,
    Made,
}

/// A rotation under way: what it works with and what it knows of the medium.
pub struct Rotation<'a> {
    pub setup: &'a Setup,
    pub cat: &'a mut Catalog,
    pub m: &'a MediumRecord,
    pub files: &'a dyn Files,
    pub primary: Primary,
    pub cancel: &'a AtomicBool,
    pub stats: &'a mut Stats,
    /// What the medium holds, with sizes: its inventory, kept up to date as files are written
    /// and removed.
    pub present: HashMap<FileRef, u64>,
    /// Of those, the files the catalog records as read back right.
    pub verified: HashSet<FileRef>,
    /// Snapshots that could not be copied: planned without, so that they do not count for the
    /// medium's retention.
    not_copied: HashSet<SnapshotId>,
    room: Room,
}

/// Checks that the medium is the enrolled one, then brings it up to date.
///
/// # Errors
/// [`CopyError`]: a refused medium, a full one that retention cannot help, a cancelled job, I/O.
pub fn copy_onto(
    setup: &Setup,
    cat: &mut Catalog,
    m: &MediumRecord,
    files: &dyn Files,
    ident: &Identity,
    cancel: &AtomicBool,
    stats: &mut Stats,
) -> Result<(), CopyError> {
    check_identity(setup, m, ident)?;
    files.prepare()?;
    let primary = Primary::new(
        setup
            .repo
            .backend()
            .map_err(|e| CopyError::Io(e.to_string()))?,
    );
    let _lock = primary.lock_shared(&format!("bakfs-mediad: copying to {}", m.label))?;
    let keys = primary.list(FileKind::Key)?;
    let mut r = Rotation {
        setup,
        cat,
        m,
        files,
        primary,
        cancel,
        stats,
        present: HashMap::new(),
        verified: HashSet::new(),
        not_copied: HashSet::new(),
        room: Room::NotMade,
    };
    let recorded = r.take_stock()?;
    r.reverify_due(&recorded, &keys)?;
    r.forget_broken_snapshots()?;
    r.copy_repository_files(&keys)?;
    let plan = r.copy_planned_snapshots()?;
    r.apply_retention(&plan)?;
    r.drop_revoked_keys(&keys)
}

/// The identity on the medium must name this medium and this repository.
fn check_identity(setup: &Setup, m: &MediumRecord, ident: &Identity) -> Result<(), CopyError> {
    if ident.medium_id != m.id.to_hex() {
        return Err(CopyError::Refused(format!(
            "the filesystem has {}'s UUID but is medium {} ({}): a cloned filesystem?",
            m.label, ident.label, ident.medium_id
        )));
    }
    if ident.repo_id != setup.repo_id.to_hex() {
        return Err(CopyError::Refused(format!(
            "{} belongs to repository {}, not {}",
            m.label, ident.repo_id, setup.repo_id
        )));
    }
    Ok(())
}

impl Rotation<'_> {
    /// `config` and the key wrappings (index files go with each snapshot copied).
    fn copy_repository_files(&mut self, keys: &[String]) -> Result<(), CopyError> {
        self.ensure(FileKind::Config, "config")?;
        for k in keys {
            self.ensure(FileKind::Key, k)?;
        }
        Ok(())
    }

    /// The primary's index files the medium lacks. Listed just before a snapshot is copied, so
    /// that they cover every snapshot the plan (read from the catalog before) holds. With them
    /// the records of packs a prune took out of the index and has not deleted yet
    /// (design.md §4.3): a snapshot made beside that prune finds some of its blobs only there.
    fn copy_index_files(&mut self) -> Result<(), CopyError> {
        for kind in [FileKind::Index, FileKind::Condemned] {
            for n in self.primary.list(kind)? {
                self.ensure(kind, &n)?;
            }
        }
        Ok(())
    }

    /// What the medium's retention wants now, without the snapshots that could not be copied.
    fn plan(&self) -> Result<Plan, CopyError> {
        let primary: Vec<SnapshotRecord> = self
            .cat
            .snapshots(&self.setup.repo_id)
            .map_err(CopyError::catalog)?
            .into_iter()
            .filter(|s| !self.not_copied.contains(&s.id))
            .collect();
        let held = self
            .cat
            .medium_snapshots(&self.m.id)
            .map_err(CopyError::catalog)?;
        Ok(plan::plan(
            &self.m.retention,
            &primary,
            &held,
            &self.setup.pinned,
            bakfs_core::timefmt::now_ns(),
            &self.setup.tz,
        ))
    }

    /// Copies the snapshots the plan wants and the medium lacks, newest first. A snapshot that
    /// cannot be copied is left out and the plan made again without it before anything else is
    /// copied or removed, so that the older snapshots it was to replace stay and any the policy
    /// now wants are copied instead. Returns the plan once it was carried out.
    fn copy_planned_snapshots(&mut self) -> Result<Plan, CopyError> {
        'plan: loop {
            let plan = self.plan()?;
            for s in &plan.add {
                if let Copied::LeftOut = self.copy_or_leave_out(s, &plan)? {
                    continue 'plan;
                }
            }
            return Ok(plan);
        }
    }

    /// Copies one snapshot of `plan`, or leaves it out when the catalog lists no packs for it
    /// or the primary's copy of one of its files is damaged.
    fn copy_or_leave_out(&mut self, s: &SnapshotRecord, plan: &Plan) -> Result<Copied, CopyError> {
        let packs = self
            .cat
            .snapshot_packs(&self.setup.repo_id, &s.id)
            .map_err(CopyError::catalog)?;
        if packs.is_empty() {
            tracing::warn!(medium = %self.m.label, snapshot = %s.id, "the catalog lists no packs for this snapshot; run `bakfs catalog rebuild`");
            self.leave_out(s, "the catalog lists no packs for it");
            return Ok(Copied::LeftOut);
        }
        match self.copy_making_room(s, &packs, plan) {
            Ok(()) => Ok(Copied::Yes),
            // The pinned set goes first: a medium that cannot take it is said loudly (the job
            // logs it as an error and the medium's state and run say it).
            Err(CopyError::Full(msg)) if plan.pinned_job(&s.id).is_some() => {
                let job = plan.pinned_job(&s.id).unwrap_or_default();
                tracing::error!(medium = %self.m.label, snapshot = %s.id, job, "the newest snapshot of pinned job {job} does not fit on {}", self.m.label);
                Err(CopyError::Full(format!(
                    "the newest snapshot {} of pinned job {job} does not fit: {msg}",
                    s.id.short()
                )))
            }
            Err(CopyError::SourceDamaged(msg)) => {
                tracing::error!(medium = %self.m.label, snapshot = %s.id, "snapshot {} not copied: primary repository damaged: {msg}; run `bakfs check --read-data`", s.id.short());
                self.leave_out(s, "primary repository damaged");
                Ok(Copied::LeftOut)
            }
            Err(e) => Err(e),
        }
    }

    /// Leaves `s` out of the plans from now on, and says why in the run's message.
    fn leave_out(&mut self, s: &SnapshotRecord, why: &str) {
        self.stats.skipped.push(format!("{} ({why})", s.id.short()));
        self.not_copied.insert(s.id);
    }

    /// Copies one snapshot (with the index files first). If the medium fills up, retention
    /// makes room (once per job, and only if that frees enough) and the copy is tried again.
    fn copy_making_room(
        &mut self,
        s: &SnapshotRecord,
        packs: &[PackRecord],
        plan: &Plan,
    ) -> Result<(), CopyError> {
        let copy = |r: &mut Self| {
            r.copy_index_files()?;
            r.copy_snapshot(s, packs)
        };
        match copy(self) {
            Err(CopyError::Full(msg)) if self.room == Room::NotMade => {
                self.make_room(s, packs, plan, &msg)?;
                copy(self)
            }
            other => other,
        }
    }

    /// Applies retention before the copy is done, if what it frees and the free space are
    /// enough for what is left of the snapshot: never empty a medium for nothing.
    ///
    /// # Errors
    /// [`CopyError::Full`] when they are not: nothing was removed.
    fn make_room(
        &mut self,
        s: &SnapshotRecord,
        packs: &[PackRecord],
        plan: &Plan,
        msg: &str,
    ) -> Result<(), CopyError> {
        // Packs already there with their size (written before the medium filled up, or by an
        // earlier run) are read back, not written again.
        let need: u64 = packs
            .iter()
            .filter(|pk| self.present.get(&(FileKind::Pack, pk.id.to_hex())) != Some(&pk.size))
            .map(|pk| pk.size)
            .sum();
        let free = self.files.free_bytes().unwrap_or(0);
        let freed = self.freeable(plan)?;
        if need > free + freed {
            return Err(CopyError::Full(format!(
                "{msg}; snapshot {} needs {need} bytes, {free} are free and retention could free {freed}",
                s.id.short()
            )));
        }
        tracing::info!(medium = %self.m.label, "{msg}: applying retention first to make room");
        self.apply_retention(plan)?;
        self.room = Room::Made;
        Ok(())
    }

    /// Key wrappings removed from the primary (a revoked passphrase) go from the medium too.
    /// A primary that lists none is taken as unreadable: nothing is removed then.
    fn drop_revoked_keys(&mut self, keys: &[String]) -> Result<(), CopyError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keep: HashSet<&String> = keys.iter().collect();
        let revoked: Vec<String> = self
            .present
            .keys()
            .filter(|(k, n)| *k == FileKind::Key && !keep.contains(n))
            .map(|(_, n)| n.clone())
            .collect();
        for k in revoked {
            self.cat
                .remove_medium_files(&self.m.id, &[(FileKind::Key, k.clone())])
                .map_err(CopyError::catalog)?;
            self.files.remove(FileKind::Key, &k)?;
        }
        Ok(())
    }
}
