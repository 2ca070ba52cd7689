//! Walking snapshot trees: the one walker behind backup's list of packs a snapshot needs,
//! `check` and `prune`. It owns the stack, the set of trees seen and the paths; the caller reads
//! each tree (or decides not to) and hands it back to descend into.
//!
//! ```no_run
//! # use bakfs_core::repo::{Repository, walk::{Revisit, TreeWalk}};
//! # fn f(repo: &Repository, root: bakfs_core::format::id::BlobId) -> bakfs_core::Result<()> {
//! let mut walk = TreeWalk::new(Revisit::Once);
//! walk.push(root, String::new());
//! while let Some(step) = walk.next() {
//!     let tree = repo.read_tree(&step.id)?;
//!     walk.descend(&tree, &step.path);
//!     println!("{}/: {} entries", step.path, tree.nodes.len());
//! }
//! # Ok(()) }
//! ```

use std::collections::HashSet;

use crate::error::Result;
use crate::format::id::BlobId;
use crate::format::{Node, NodeKind, Tree};
use crate::repo::Repository;

/// Whether a tree met again (the same directory in another snapshot, or twice in one) is
/// visited again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revisit {
    /// Each tree once: for sets of blobs.
    Once,
    /// At every path where it occurs: for reports that name paths.
    EveryPath,
}

/// One tree to visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The tree's blob id.
    pub id: BlobId,
    /// Its path from the root it was reached from: `""` for a root, else `/a/b`.
    pub path: String,
    /// Whether this is the first visit of this tree in the walk.
    pub first: bool,
}

/// A depth-first walk over trees.
#[derive(Debug)]
pub struct TreeWalk {
    revisit: Revisit,
    stack: Vec<(BlobId, String)>,
    seen: HashSet<BlobId>,
}

impl TreeWalk {
    /// An empty walk; add roots with [`TreeWalk::push`].
    pub fn new(revisit: Revisit) -> Self {
        Self {
            revisit,
            stack: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Adds a tree to visit at `path`.
    pub fn push(&mut self, id: BlobId, path: String) {
        self.stack.push((id, path));
    }

    /// The next tree to visit, or `None` when the walk is done.
    #[allow(clippy::should_implement_trait)] // `descend` borrows the walk between steps
    pub fn next(&mut self) -> Option<Step> {
        while let Some((id, path)) = self.stack.pop() {
            let first = self.seen.insert(id);
            if first || self.revisit == Revisit::EveryPath {
                return Some(Step { id, path, first });
            }
        }
        None
    }

    /// Queues the subdirectories of `tree`, read at `path`.
    pub fn descend(&mut self, tree: &Tree, path: &str) {
        for n in &tree.nodes {
            if n.kind != NodeKind::Dir {
                continue;
            }
            if let Some(s) = n.subtree {
                if self.revisit == Revisit::Once && self.seen.contains(&s) {
                    continue;
                }
                self.stack
                    .push((s, format!("{path}/{}", String::from_utf8_lossy(&n.name))));
            }
        }
    }
}

/// Every blob (trees and data) reachable from `roots`.
///
/// # Errors
/// The first tree that cannot be read.
pub fn reachable_blobs(
    repo: &Repository,
    roots: impl IntoIterator<Item = BlobId>,
) -> Result<HashSet<BlobId>> {
    let mut blobs = HashSet::new();
    for_each_reachable(repo, roots, |id| {
        blobs.insert(*id);
    })?;
    Ok(blobs)
}

/// Calls `f` with every blob (trees and data) reachable from `roots`: each tree once, a data
/// blob once per file that holds it. Memory holds the trees seen and those still to visit.
///
/// # Errors
/// The first tree that cannot be read.
pub fn for_each_reachable(
    repo: &Repository,
    roots: impl IntoIterator<Item = BlobId>,
    mut f: impl FnMut(&BlobId),
) -> Result<()> {
    let mut walk = TreeWalk::new(Revisit::Once);
    for r in roots {
        walk.push(r, String::new());
    }
    while let Some(step) = walk.next() {
        let tree = repo.read_tree(&step.id)?;
        walk.descend(&tree, &step.path);
        f(&step.id);
        for n in &tree.nodes {
            n.content.iter().for_each(&mut f);
        }
    }
    Ok(())
}

/// What changed in a snapshot's tree against an older one, as [`for_each_change`] reports it.
#[derive(Debug)]
pub enum Change<'a> {
    /// A regular file that is new or differs (content, size or mtime) from the older tree's.
    File(&'a str, &'a Node),
    /// A path of the older tree that is no longer a regular file or directory of that kind: a
    /// file (`dir` false) or a directory with everything below it (`dir` true).
    Gone(&'a str, bool),
}

/// Reports every regular file of the snapshot tree `root` (at every path it occurs, `/a/b`
/// from the root) that is not the same in the tree `old` (the parent snapshot's root, or
/// `None`: every file is new), and every path of `old` that is gone. Directories whose tree is
/// the same in both are skipped without being read, so an unchanged tree costs the reading of
/// its changed directories only. Memory holds the directories still to visit, never the list
/// of files. Stops at the first error of `f` or of reading a tree.
///
/// # Errors
/// The first tree that cannot be read (converted into `E`), or the first error of `f`.
pub fn for_each_change<E: From<crate::error::Error>>(
    repo: &Repository,
    root: BlobId,
    old: Option<BlobId>,
    mut f: impl FnMut(Change<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    if old == Some(root) {
        return Ok(());
    }
    let mut stack: Vec<(BlobId, Option<BlobId>, String)> = vec![(root, old, String::new())];
    let mut path = String::new();
    while let Some((new_id, old_id, dir)) = stack.pop() {
        let new = repo.read_tree(&new_id)?;
        let old = match old_id {
            Some(o) => repo.read_tree(&o)?,
            None => Tree { nodes: vec![] },
        };
        let (mut i, mut j) = (0, 0);
        while i < new.nodes.len() || j < old.nodes.len() {
            let n = new.nodes.get(i);
            let o = old.nodes.get(j);
            let order = match (n, o) {
                (Some(n), Some(o)) => n.name.cmp(&o.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (n, o) = match order {
                std::cmp::Ordering::Less => (n, None),
                std::cmp::Ordering::Greater => (None, o),
                std::cmp::Ordering::Equal => (n, o),
            };
            i += usize::from(n.is_some());
            j += usize::from(o.is_some());
            let name = n.or(o).map(|x| x.name.as_slice()).unwrap_or_default();
            path.clear();
            path.push_str(&dir);
            path.push('/');
            path.push_str(&String::from_utf8_lossy(name));
            let kind = |x: Option<&Node>| x.map(|x| x.kind);
            // What the older tree had here, if it is not kept as it is.
            match (kind(o), kind(n)) {
                (Some(NodeKind::File), Some(NodeKind::File))
                | (Some(NodeKind::Dir), Some(NodeKind::Dir)) => {}
                (Some(NodeKind::File), _) => f(Change::Gone(&path, false))?,
                (Some(NodeKind::Dir), _) => f(Change::Gone(&path, true))?,
                _ => {}
            }
            let Some(n) = n else { continue };
            match n.kind {
                NodeKind::File => {
                    let same = o.is_some_and(|o| {
                        o.kind == NodeKind::File
                            && o.content == n.content
                            && o.size == n.size
                            && o.mtime_ns == n.mtime_ns
                    });
                    if !same {
                        f(Change::File(&path, n))?;
                    }
                }
                NodeKind::Dir => {
                    let before = o
                        .filter(|o| o.kind == NodeKind::Dir)
                        .and_then(|o| o.subtree);
                    if let Some(sub) = n.subtree.filter(|s| before != Some(*s)) {
                        stack.push((sub, before, path.clone()));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}
