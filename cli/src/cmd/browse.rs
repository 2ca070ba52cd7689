//! `snapshots`, `ls`, `diff`.

use std::collections::BTreeMap;

use anyhow::Result;
use bakfs_core::format::id::BlobId;
use bakfs_core::format::{Node, NodeKind, Tree};
use bakfs_core::repo::Repository;
use bakfs_core::restore::find_node;
use bakfs_core::timefmt;

use crate::context::Ctx;

pub fn snapshots(ctx: &Ctx, host: Option<String>, tag: Option<String>) -> Result<u8> {
    let repo = ctx.open_repo()?;
    let snaps: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| {
            host.as_ref().is_none_or(|h| &s.host == h)
                && tag.as_ref().is_none_or(|t| s.tags.contains(t))
        })
        .collect();
    if ctx.global.json {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id.to_hex(), "short_id": id.short(), "time": timefmt::format_rfc3339_nanos(s.time_ns),
                    "host": s.host, "user": s.user, "paths": s.paths, "tags": s.tags, "job": s.job,
                    "tree": s.tree.to_hex(), "parent": s.parent.map(|p| p.to_hex()), "summary": s.summary,
                })
            })
            .collect();
        return ctx.print_json(&v).map(|()| 0);
    }
    println!(
        "{:<10} {:<21} {:<16} {:<12} {:>10}  paths",
        "id", "time (UTC)", "host", "tags", "size"
    );
    for (id, s) in &snaps {
        println!(
            "{:<10} {:<21} {:<16} {:<12} {:>10}  {}",
            id.short(),
            timefmt::format_rfc3339(s.time_ns),
            s.host,
            s.tags.join(","),
            crate::progress::mib(s.summary.bytes),
            s.paths.join(" ")
        );
    }
    println!("{} snapshots", snaps.len());
    Ok(0)
}

fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDev => 'c',
        NodeKind::BlockDev => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let m = n.mode;
    let mut s = String::from(t);
    for (shift, special, ch) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (m >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        let x = bits & 1 != 0;
        s.push(match (m & special != 0, x) {
            (true, true) => ch,
            (true, false) => ch.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

fn node_json(path: &str, n: &Node) -> serde_json::Value {
    serde_json::json!({
        "path": path, "type": format!("{:?}", n.kind).to_lowercase(), "mode": format!("{:o}", n.mode), "uid": n.uid, "gid": n.gid,
        "user": n.user, "group": n.group, "size": n.size, "mtime": timefmt::format_rfc3339_nanos(n.mtime_ns),
        "target": n.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
    })
}

pub fn ls(ctx: &Ctx, spec: &str, path: Option<&str>, long: bool, recursive: bool) -> Result<u8> {
    let repo = ctx.open_repo()?;
    let (_, snap) = repo.find_snapshot(spec)?;
    let base = path.unwrap_or("/").trim_end_matches('/').to_string();
    let mut out = vec![];
    let start_tree = if base.is_empty() {
        Some(snap.tree)
    } else {
        match find_node(&repo, &snap.tree, &base)? {
            Some(n) if n.kind == NodeKind::Dir => n.subtree,
            Some(n) => {
                out.push((base.clone(), n));
                None
            }
            None => Some(snap.tree),
        }
    };
    if let Some(t) = start_tree {
        list_tree(&repo, &t, &base, recursive, &mut out)?;
    }
    if ctx.global.json {
        let v: Vec<_> = out.iter().map(|(p, n)| node_json(p, n)).collect();
        return ctx.print_json(&v).map(|()| 0);
    }
    for (p, n) in &out {
        if long {
            let link = n
                .target
                .as_ref()
                .map(|t| format!(" -> {}", String::from_utf8_lossy(t)))
                .unwrap_or_default();
            println!(
                "{} {:>8} {:>8} {:>12} {} {p}{link}",
                mode_string(n),
                n.user.clone().unwrap_or_else(|| n.uid.to_string()),
                n.group.clone().unwrap_or_else(|| n.gid.to_string()),
                n.size,
                timefmt::format_rfc3339(n.mtime_ns)
            );
        } else {
            println!("{p}");
        }
    }
    Ok(0)
}

fn list_tree(
    repo: &Repository,
    id: &BlobId,
    base: &str,
    recursive: bool,
    out: &mut Vec<(String, Node)>,
) -> Result<()> {
    let tree = repo.read_tree(id)?;
    for n in tree.nodes {
        let p = format!("{base}/{}", String::from_utf8_lossy(&n.name));
        let sub = n.subtree;
        out.push((p.clone(), n));
        if recursive {
            if let Some(s) = sub {
                list_tree(repo, &s, &p, true, out)?;
            }
        }
    }
    Ok(())
}

fn flatten(
    repo: &Repository,
    id: &BlobId,
    base: &str,
    out: &mut BTreeMap<String, Node>,
) -> Result<()> {
    let tree: Tree = repo.read_tree(id)?;
    for n in tree.nodes {
        let p = format!("{base}/{}", String::from_utf8_lossy(&n.name));
        if let Some(s) = n.subtree {
            flatten(repo, &s, &p, out)?;
        }
        out.insert(p, n);
    }
    Ok(())
}

fn differs(a: &Node, b: &Node) -> bool {
    a.kind != b.kind
        || a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.size != b.size
        || a.mtime_ns != b.mtime_ns
        || a.content != b.content
        || a.target != b.target
        || a.xattrs != b.xattrs
}

pub fn diff(ctx: &Ctx, a: &str, b: &str) -> Result<u8> {
    let repo = ctx.open_repo()?;
    let (ia, sa) = repo.find_snapshot(a)?;
    let (ib, sb) = repo.find_snapshot(b)?;
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten(&repo, &sa.tree, "", &mut fa)?;
    flatten(&repo, &sb.tree, "", &mut fb)?;
    let mut changes = vec![];
    for (p, n) in &fa {
        match fb.get(p) {
            None => changes.push(("-", p.clone())),
            Some(m) if n.kind != NodeKind::Dir && differs(n, m) => changes.push(("M", p.clone())),
            Some(m)
                if n.kind == NodeKind::Dir
                    && (n.mode != m.mode || n.uid != m.uid || n.gid != m.gid) =>
            {
                changes.push(("M", p.clone()))
            }
            _ => {}
        }
    }
    for p in fb.keys() {
        if !fa.contains_key(p) {
            changes.push(("+", p.clone()));
        }
    }
    changes.sort_by(|x, y| x.1.cmp(&y.1));
    if ctx.global.json {
        let f = |c: &str| {
            changes
                .iter()
                .filter(|x| x.0 == c)
                .map(|x| x.1.clone())
                .collect::<Vec<_>>()
        };
        return ctx.print_json(&serde_json::json!({"a": ia.to_hex(), "b": ib.to_hex(), "added": f("+"), "removed": f("-"), "changed": f("M")})).map(|()| 0);
    }
    for (c, p) in &changes {
        println!("{c} {p}");
    }
    let count = |c: &str| changes.iter().filter(|x| x.0 == c).count();
    println!(
        "{} added, {} removed, {} changed",
        count("+"),
        count("-"),
        count("M")
    );
    Ok(0)
}
