//! Walking the sources: one node per directory entry, its metadata and xattrs, directories
//! recursed into (in parallel), excludes and filesystem boundaries applied.

use super::*;

/// The node for one entry, or None (with a warning) if it cannot be read.
pub(super) fn entry_node(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    parent: Option<&Node>,
    root_dev: Option<u64>,
) -> Option<Node> {
    entry_node_with(ctx, path, name, parent, root_dev, None)
}

pub(super) fn entry_node_with(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    parent: Option<&Node>,
    root_dev: Option<u64>,
    meta: Option<Metadata>,
) -> Option<Node> {
    if ctx.aborted() {
        return None;
    }
    let m = match meta.map(Ok).unwrap_or_else(|| fs::symlink_metadata(path)) {
        Ok(m) => m,
        Err(e) => {
            ctx.warn(format!("{}: {e}", path.display()));
            return None;
        }
    };
    ctx.progress.entries.fetch_add(1, Ordering::Relaxed);
    let result = match meta::kind_of(&m) {
        NodeKind::Dir => {
            let dev = root_dev.unwrap_or(m.dev());
            let ptree = parent
                .and_then(|n| n.subtree)
                .and_then(|id| ctx.repo.read_tree(&id).ok());
            dir_node(ctx, path, name, &m, ptree.as_ref(), dev, parent)
        }
        NodeKind::File => file_node(ctx, path, name, &m, parent),
        kind => other_node(ctx, path, name, &m, kind, parent),
    };
    match result {
        Ok(n) => Some(n),
        Err(_) if ctx.aborted() => None,
        Err(e) => {
            ctx.warn(e.about(path));
            None
        }
    }
}

/// Sets the node's xattrs: reused from the parent snapshot's node when inode and ctime are the
/// same (setting an xattr changes ctime), else read.
pub(super) fn with_xattrs_reuse(
    ctx: &Ctx,
    path: &Path,
    mut node: Node,
    parent: Option<&Node>,
) -> Node {
    if let Some(p) = parent {
        if p.inode == node.inode && p.ctime_ns == node.ctime_ns && p.kind == node.kind {
            node.xattrs = p.xattrs.clone();
            return node;
        }
    }
    with_xattrs(ctx, path, node)
}

pub(super) fn with_xattrs(ctx: &Ctx, path: &Path, mut node: Node) -> Node {
    match meta::read_xattrs(path) {
        Ok(x) => node.xattrs = x,
        Err(e) => ctx.warn(format!(
            "{}: reading extended attributes: {e}",
            path.display()
        )),
    }
    node
}

pub(super) fn dir_node(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    m: &Metadata,
    parent: Option<&Tree>,
    root_dev: u64,
    pnode: Option<&Node>,
) -> Result<Node> {
    ctx.dirs.fetch_add(1, Ordering::Relaxed);
    let node = with_xattrs_reuse(
        ctx,
        path,
        meta::node_from_metadata(name, m, &ctx.names),
        pnode,
    );
    let mut entries: Vec<(OsString, Option<Metadata>)> = Vec::new();
    let descend = !(ctx.one_fs && m.dev() != root_dev);
    if descend {
        let rd = fs::read_dir(path).map_err(|e| Error::io(path.display(), e))?;
        for e in rd {
            match e {
                // DirEntry::metadata is fstatat on the directory: no path walk, no symlink follow.
                Ok(e) => entries.push((e.file_name(), e.metadata().ok())),
                Err(e) => ctx.warn(format!("{}: {e}", path.display())),
            }
        }
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let nodes: Vec<Option<Node>> = entries
        .into_par_iter()
        .map(|(n, meta)| {
            let p = path.join(&n);
            if ctx.excludes.matches(&p) {
                return None;
            }
            entry_node_with(
                ctx,
                &p,
                &n,
                parent.and_then(|t| t.get(n.as_bytes())),
                Some(root_dev),
                meta,
            )
        })
        .collect();
    let tree = Tree {
        nodes: nodes.into_iter().flatten().collect(),
    };
    let (id, _) = ctx.save(BlobKind::Tree, &tree.encode())?;
    ctx.stored_tree(path, &tree);
    let mut node = node;
    node.subtree = Some(id);
    Ok(node)
}

pub(super) fn other_node(
    ctx: &Ctx,
    path: &Path,
    name: &OsStr,
    m: &Metadata,
    kind: NodeKind,
    parent: Option<&Node>,
) -> Result<Node> {
    ctx.files.fetch_add(1, Ordering::Relaxed);
    let mut node = with_xattrs_reuse(
        ctx,
        path,
        meta::node_from_metadata(name, m, &ctx.names),
        parent,
    );
    if kind == NodeKind::Symlink {
        if let Some(p) = parent.filter(|p| {
            p.kind == NodeKind::Symlink
                && p.inode == node.inode
                && p.ctime_ns == node.ctime_ns
                && p.target.is_some()
        }) {
            node.target = p.target.clone();
            return Ok(node);
        }
        node.target = Some(
            fs::read_link(path)
                .map_err(|e| Error::io(path.display(), e))?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        );
    }
    Ok(node)
}
