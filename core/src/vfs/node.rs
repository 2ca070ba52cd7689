//! A snapshot entry as the view answers from it: its place in a decoded tree.
//!
//! The inode table keeps no copy of an entry (it holds one per inode the kernel remembers,
//! hundreds of thousands after an `ls -lR`), only the directory it is in and its position there
//! (see `inodes.rs`); each request finds the [`Node`] again in the tree, through the tree cache.

use std::sync::Arc;

use crate::format::{Node, Tree};

/// Entry `pos` of a decoded tree.
pub(super) struct NodeRef {
    tree: Arc<Tree>,
    pos: usize,
}

impl NodeRef {
    /// Entry `pos` of `tree`, if it has one.
    pub(super) fn new(tree: Arc<Tree>, pos: usize) -> Option<NodeRef> {
        (pos < tree.nodes.len()).then_some(NodeRef { tree, pos })
    }
}

impl std::ops::Deref for NodeRef {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.tree.nodes[self.pos]
    }
}
