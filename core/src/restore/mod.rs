//! Restoring a snapshot (or part of it) into a directory.
//!
//! Safety rules: every name is checked to be a single safe component (no `..`, `/`, NUL);
//! duplicate names are refused; nothing is created through an existing symlink (an existing
//! non-directory in the way is removed first, files are opened with `O_NOFOLLOW|O_EXCL`);
//! hard links are recorded as inode numbers, so they can only join files of this restore.
//! Every chunk is authenticated and checked against its id before a byte of it is written; a file
//! whose data is damaged is removed and reported, the others are restored.
//!
//! Two steps, in batches bounded in memory ([`data`]): the walk ([`tree`]) makes directories,
//! links and special files and lists the files to write; a batch then writes its files' data
//! pack by pack, so each pack is read once per batch (one request per pack from a bucket), and
//! only then are its directories given their owner, mode and times.

mod data;
mod meta;
mod tree;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::id::BlobId;
use crate::format::{is_safe_name, Node, NodeKind};
use crate::glob::Patterns;
use crate::repo::Repository;

/// What to restore.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Only entries whose snapshot path (e.g. `/etc/ssh/sshd_config`) or an ancestor matches.
    pub include: Vec<String>,
    /// Skip entries whose path or name matches.
    pub exclude: Vec<String>,
    /// Only these exact snapshot paths (`/etc/hosts`; files, links and other leaves: the
    /// directories leading to them are made), besides what `include` selects. No pattern
    /// characters, so any name can be given (a drill's random sample).
    pub only: Option<HashSet<String>>,
    /// Read every restored file back and compare it with the snapshot.
    pub verify: bool,
}

/// Live counters.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// Entries restored.
    pub entries: AtomicU64,
    /// File bytes written.
    pub bytes: AtomicU64,
}

/// The outcome of a restore.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Entries restored.
    pub entries: u64,
    /// Bytes of file data.
    pub bytes: u64,
    /// Entries refused (unsafe names) or failed (I/O, damage), each naming its path once. They
    /// are not logged: showing them is the caller's job.
    pub errors: Vec<String>,
    /// Whether some failures were data damage (exit code 13).
    pub damaged: bool,
    /// The failures that were data damage: the path in the target and the message (which is
    /// in `errors` too).
    pub damaged_entries: Vec<(PathBuf, String)>,
}

struct Filters {
    include: Option<Patterns>,
    only: Option<HashSet<String>>,
    exclude: Patterns,
}

impl Filters {
    /// Whether everything is restored (no include pattern, no list of paths).
    fn all(&self) -> bool {
        self.include.is_none() && self.only.is_none()
    }

    /// Whether the entry at snapshot path `p` was asked for by name or pattern.
    fn selects(&self, p: &str) -> bool {
        self.only.as_ref().is_some_and(|o| o.contains(p))
            || self
                .include
                .as_ref()
                .is_some_and(|g| g.matches(Path::new(p)))
    }
}

struct Ctx<'a> {
    repo: &'a Repository,
    filters: Filters,
    progress: &'a RestoreProgress,
    errors: Mutex<Vec<String>>,
    damaged: Mutex<Vec<(PathBuf, String)>>,
    verify: bool,
    is_root: bool,
}

impl Ctx<'_> {
    /// Records a failed entry for the report (the caller shows it: it is not logged here too).
    fn fail(&self, path: &Path, e: &Error) {
        let msg = e.about(path);
        if e.kind() == crate::ErrorKind::Damaged {
            self.damaged
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((path.to_path_buf(), msg.clone()));
        }
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(msg);
    }
}

/// Finds the node at `subpath` (absolute, inside the snapshot) below `root`.
///
/// # Errors
/// [`Error::NotFound`] if a component is missing.
pub fn find_node(repo: &Repository, root: &BlobId, subpath: &str) -> Result<Option<Node>> {
    let mut tree = repo.read_tree(root)?;
    let comps: Vec<&str> = subpath
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut node = None;
    for (i, c) in comps.iter().enumerate() {
        let n = tree
            .get(c.as_bytes())
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{subpath}: no such path in the snapshot")))?;
        if i + 1 < comps.len() {
            let id = n
                .subtree
                .ok_or_else(|| Error::NotFound(format!("{subpath}: {c} is not a directory")))?;
            tree = repo.read_tree(&id)?;
        }
        node = Some(n);
    }
    Ok(node)
}

/// Restores the snapshot tree `root` (or the entry at `subpath` in it) into `target`.
///
/// # Errors
/// Only if the target cannot be created or the root tree cannot be read; failures of single
/// entries are listed in the report.
pub fn restore(
    repo: &Repository,
    root: &BlobId,
    subpath: Option<&str>,
    target: &Path,
    opts: &RestoreOptions,
    progress: &RestoreProgress,
) -> Result<RestoreReport> {
    fs::create_dir_all(target).map_err(|e| Error::io(target.display(), e))?;
    let ctx = Ctx {
        repo,
        filters: Filters {
            include: Some(Patterns::new(&opts.include, "include")?).filter(|p| !p.is_empty()),
            only: opts.only.clone(),
            exclude: Patterns::new(&opts.exclude, "exclude")?,
        },
        progress,
        errors: Mutex::new(Vec::new()),
        damaged: Default::default(),
        verify: opts.verify,
        is_root: nix::unistd::geteuid().is_root(),
    };
    let sub = subpath
        .map(|s| format!("/{}", s.trim_matches('/')))
        .filter(|s| s != "/");
    // One thread walks and lists; this one writes each batch as it comes, while the walk lists
    // the next (two batches at most: the walk waits for this thread to take the next).
    let scale = data::Scale::of(repo);
    let (tx, rx) = std::sync::mpsc::sync_channel(0);
    let walked = std::thread::scope(|scope| {
        let ctx = &ctx;
        let walker = scope.spawn(move || {
            let mut walk = tree::Walk::new(ctx, scale, tx);
            walk_from(&mut walk, root, sub.as_deref(), target)?;
            Ok::<_, Error>(walk.finish())
        });
        for batch in rx {
            data::Batch::write(batch, ctx);
        }
        walker
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    walked?.make(&ctx);
    let damaged_entries = ctx.damaged.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(RestoreReport {
        entries: progress.entries.load(Ordering::Relaxed),
        bytes: progress.bytes.load(Ordering::Relaxed),
        errors: ctx.errors.into_inner().unwrap_or_else(|p| p.into_inner()),
        damaged: !damaged_entries.is_empty(),
        damaged_entries,
    })
}

/// Walks what is asked for: the whole tree `root`, or the entry at `sub` in it.
fn walk_from(walk: &mut tree::Walk, root: &BlobId, sub: Option<&str>, target: &Path) -> Result<()> {
    let repo = walk.ctx().repo;
    let all = walk.ctx().filters.all();
    match sub {
        None => {
            let tree = repo.read_tree(root)?;
            walk.children(&tree, target, "", all);
        }
        Some(s) => match find_node(repo, root, s)? {
            Some(n) if n.kind == NodeKind::Dir => {
                let id = n
                    .subtree
                    .ok_or_else(|| Error::damaged(format!("directory {s}"), "no subtree"))?;
                let tree = repo.read_tree(&id)?;
                walk.children(&tree, target, s, all);
                walk.meta_later(target, &n);
            }
            Some(n) if !is_safe_name(&n.name) => {
                return Err(Error::Invalid(format!(
                    "refusing entry name {:?}",
                    String::from_utf8_lossy(&n.name)
                )));
            }
            Some(n) => {
                let dir = s.rsplit_once('/').map(|x| x.0).unwrap_or("");
                walk.node(&n, target, dir, all);
            }
            None => {}
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests;
