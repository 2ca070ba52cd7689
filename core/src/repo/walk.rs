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
use crate::format::{NodeKind, Tree};
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
    let mut walk = TreeWalk::new(Revisit::Once);
    for r in roots {
        walk.push(r, String::new());
    }
    let mut blobs = HashSet::new();
    while let Some(step) = walk.next() {
        let tree = repo.read_tree(&step.id)?;
        walk.descend(&tree, &step.path);
        blobs.insert(step.id);
        for n in &tree.nodes {
            blobs.extend(n.content.iter().copied());
        }
    }
    Ok(blobs)
}

/// Calls `f(path, node)` for every regular file of the snapshot tree `root`, at every path it
/// occurs (`/a/b` from the root), directory by directory: memory holds the directories still to
/// visit, never the list of files. Stops at the first error of `f` or of reading a tree.
///
/// # Errors
/// The first tree that cannot be read (converted into `E`), or the first error of `f`.
pub fn for_each_file<E: From<crate::error::Error>>(
    repo: &Repository,
    root: BlobId,
    mut f: impl FnMut(&str, &crate::format::Node) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut walk = TreeWalk::new(Revisit::EveryPath);
    walk.push(root, String::new());
    let mut path = String::new();
    while let Some(step) = walk.next() {
        let tree = repo.read_tree(&step.id)?;
        walk.descend(&tree, &step.path);
        for n in tree.nodes.iter().filter(|n| n.kind == NodeKind::File) {
            path.clear();
            path.push_str(&step.path);
            path.push('/');
            path.push_str(&String::from_utf8_lossy(&n.name));
            f(&path, n)?;
        }
    }
    Ok(())
}
