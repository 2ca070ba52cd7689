//! `bakfs locate`: every stored version of a file, the snapshots holding each, and every copy
//! of those snapshots (the primary, media with a verified copy, offline ones included), from
//! the catalog's file table alone (no key, no repository read); and [`record_files`], which
//! fills that table when a snapshot is recorded.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::catalog::{
    Catalog, CatalogError, CatalogResult, FileCounts, FileHit, MediumKind, MediumLocation,
    MediumRecord, PathSummary, Presence, Unrecorded,
};
use crate::format::id::{ContentId, MediumId, RepoId, SnapshotId};
use crate::format::Snapshot;
use crate::repo::walk::{for_each_change, Change};
use crate::repo::Repository;

/// How many paths a directory listing shows at most.
pub const LISTING_LIMIT: usize = 1000;

/// A snapshot, by id and time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapRef {
    #[serde(serialize_with = "crate::catalog::hex_id")]
    pub id: SnapshotId,
    pub time_ns: i64,
}

/// Where copies of a version are: the primary, or one medium.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    /// `primary`, or the medium's label.
    pub place: String,
    #[serde(serialize_with = "crate::catalog::hex_id_opt")]
    pub medium_id: Option<MediumId>,
    /// `None` for the primary.
    pub kind: Option<MediumKind>,
    pub location: Option<MediumLocation>,
    /// Whether the medium is plugged in, as bakfs-mediad last saw it (`None`: not known, or the
    /// primary).
    pub presence: Option<Presence>,
    /// How many of the version's snapshots this copy holds, and the newest of them.
    pub snapshots: usize,
    pub newest: SnapRef,
    /// When the newest was verified there (media only).
    pub verified_ns: Option<i64>,
    /// What to do to read it: `insert LABEL` for a medium recorded as removed.
    pub action: Option<String>,
}

/// One version of the file: one content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Version {
    #[serde(serialize_with = "crate::catalog::hex_id")]
    pub content: ContentId,
    pub size: u64,
    /// Its modification time in the newest snapshot holding it.
    pub mtime_ns: i64,
    pub first: SnapRef,
    pub last: SnapRef,
    /// Snapshots holding it.
    pub snapshots: usize,
    pub copies: Vec<Copy>,
}

/// The answer of `bakfs locate`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Located {
    pub path: String,
    /// `--at`: the time asked for, and the snapshot whose version is shown.
    pub at_ns: Option<i64>,
    pub current: Option<SnapRef>,
    /// Oldest first (by first snapshot).
    pub versions: Vec<Version>,
    /// When `path` is not a recorded file: the recorded files below it (a directory).
    pub below: Vec<PathSummary>,
    /// Snapshots whose files the catalog does not record.
    pub unrecorded: Unrecorded,
}

impl Located {
    /// Whether anything was found (a version, or files below the path).
    pub fn found(&self) -> bool {
        !self.versions.is_empty() || !self.below.is_empty()
    }
}

/// Finds `path` (absolute, as backed up) in the catalog's file table of `repo_id`; with
/// `at_ns`, only the version held by the newest snapshot at or before it.
///
/// # Errors
/// Those of the catalog.
pub fn locate(
    cat: &Catalog,
    repo_id: &RepoId,
    path: &str,
    at_ns: Option<i64>,
) -> CatalogResult<Located> {
    cat.consistent(|cat| {
        let mut hits = cat.file_hits(repo_id, path)?;
        let current = match at_ns {
            Some(at) => {
                let cur = hits.iter().rev().find(|h| h.time_ns <= at).cloned();
                hits.retain(|h| cur.as_ref().is_some_and(|c| c.content == h.content));
                cur.map(|c| SnapRef {
                    id: c.snapshot_id,
                    time_ns: c.time_ns,
                })
            }
            None => None,
        };
        let below = if hits.is_empty() && at_ns.is_none() {
            cat.paths_under(repo_id, path, LISTING_LIMIT)?
        } else {
            vec![]
        };
        let media: BTreeMap<MediumId, MediumRecord> = cat
            .media()?
            .into_iter()
            .filter(|m| m.repo_id == *repo_id)
            .map(|m| (m.id, m))
            .collect();
        Ok(Located {
            path: path.to_string(),
            at_ns,
            current,
            versions: versions(cat, repo_id, &hits, &media)?,
            below,
            unrecorded: cat.unrecorded_snapshots(repo_id)?,
        })
    })
}

/// Groups `hits` (oldest first) by content and finds the copies of each group's snapshots.
fn versions(
    cat: &Catalog,
    repo_id: &RepoId,
    hits: &[FileHit],
    media: &BTreeMap<MediumId, MediumRecord>,
) -> CatalogResult<Vec<Version>> {
    let mut order: Vec<ContentId> = vec![];
    let mut groups: BTreeMap<ContentId, Vec<&FileHit>> = BTreeMap::new();
    for h in hits {
        groups
            .entry(h.content)
            .or_insert_with(|| {
                order.push(h.content);
                vec![]
            })
            .push(h);
    }
    let mut out = vec![];
    for content in order {
        let g = &groups[&content];
        let (first, last) = (g[0], g[g.len() - 1]);
        // place -> (copy, snapshots held); the primary first, then media by label.
        let mut primary: Option<Copy> = None;
        let mut on_media: BTreeMap<String, Copy> = BTreeMap::new();
        for h in g {
            let r = SnapRef {
                id: h.snapshot_id,
                time_ns: h.time_ns,
            };
            if cat.snapshot(repo_id, &h.snapshot_id)?.is_some() {
                let c = primary.get_or_insert_with(|| Copy {
                    place: "primary".into(),
                    medium_id: None,
                    kind: None,
                    location: None,
                    presence: None,
                    snapshots: 0,
                    newest: r.clone(),
                    verified_ns: None,
                    action: None,
                });
                c.snapshots += 1;
                c.newest = r.clone();
            }
            for holder in cat.snapshot_holders(&h.snapshot_id)? {
                let Some(m) = media.get(&holder.medium_id) else {
                    continue;
                };
                let c = on_media.entry(m.label.clone()).or_insert_with(|| Copy {
                    place: m.label.clone(),
                    medium_id: Some(m.id),
                    kind: Some(m.kind),
                    location: Some(m.location),
                    presence: m.presence,
                    snapshots: 0,
                    newest: r.clone(),
                    verified_ns: None,
                    action: (m.presence == Some(Presence::Removed))
                        .then(|| format!("insert {}", m.label)),
                });
                c.snapshots += 1;
                c.newest = r.clone();
                c.verified_ns = Some(holder.verified_ns);
            }
        }
        out.push(Version {
            content,
            size: last.size,
            mtime_ns: last.mtime_ns,
            first: SnapRef {
                id: first.snapshot_id,
                time_ns: first.time_ns,
            },
            last: SnapRef {
                id: last.snapshot_id,
                time_ns: last.time_ns,
            },
            snapshots: g.len(),
            copies: primary.into_iter().chain(on_media.into_values()).collect(),
        });
    }
    Ok(out)
}

/// Recording a snapshot's files failed: a tree could not be read, or the catalog not written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Repo(#[from] crate::error::Error),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Whether [`record_files`] would start a snapshot with parent `parent` from the parent's
/// record (the catalog knows the parent and records its files completely); otherwise its files
/// are best recorded while the backup runs ([`record_during`]).
pub fn parent_recorded(cat: &Catalog, repo_id: &RepoId, parent: Option<&SnapshotId>) -> bool {
    parent.is_some_and(|p| {
        matches!(cat.snapshot(repo_id, p), Ok(Some(_)))
            && cat.files_recorded(repo_id, p).unwrap_or(false)
    })
}

/// Records the files of snapshot `id` (`s`) of `repo` in the catalog's file table: from its
/// parent's recorded files and what changed since (directories the parent shares are not
/// read), else walking all its trees; then drops the file rows of snapshots no copy holds any
/// more. Everything the snapshot's record needs is written, or nothing.
///
/// # Errors
/// A tree that cannot be read, a catalog write that fails.
pub fn record_files(
    cat: &mut Catalog,
    repo: &Repository,
    id: &SnapshotId,
    s: &Snapshot,
) -> Result<FileCounts, RecordError> {
    let repo_id = repo.id();
    // The parent's tree, if the catalog knows the parent (its files' record is checked below).
    let parent = match s.parent {
        Some(p) => cat.snapshot(&repo_id, &p)?.map(|r| (p, r.tree)),
        None => None,
    };
    let mut rec = cat.begin_files(&repo_id, id, s.time_ns)?;
    let old = match parent {
        Some((p, tree)) if rec.copy_from(&repo_id, &p)? => Some(tree),
        _ => None,
    };
    for_each_change::<RecordError>(repo, s.tree, old, |c| {
        match c {
            Change::File(path, n) => {
                rec.add(path, &ContentId::of(&n.content), n.size, n.mtime_ns)?
            }
            Change::Gone(path, below) => rec.remove(path, below)?,
        }
        Ok(())
    })?;
    let counts = rec.commit()?;
    cat.prune_files(&repo_id)?;
    Ok(counts)
}

mod live;
pub use live::record_during;

#[cfg(test)]
mod tests;
