//! `restore` and `dump`.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bakfs_core::format::id::BlobId;
use bakfs_core::format::{Node, NodeKind};
use bakfs_core::repo::Repository;
use bakfs_core::restore::{self, find_node, RestoreOptions, RestoreProgress};

use crate::args::RestoreArgs;
use crate::context::Ctx;
use crate::exit;
use crate::progress::{mib, Ticker};

pub fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<u8> {
    let repo = ctx.open_repo()?;
    let _lock = ctx.reader_lock(&repo, "restore")?;
    restore_from(ctx, &repo, a)
}

/// Restores from an open repository (the primary, or a tape: `bakfs tape restore`).
pub fn restore_from(ctx: &Ctx, repo: &Repository, a: RestoreArgs) -> Result<u8> {
    let (spec, sub) = match a.snapshot.split_once(':') {
        Some((s, p)) => (s.to_string(), Some(p.to_string())),
        None => (a.snapshot.clone(), None),
    };
    let (id, snap) = repo.find_snapshot(&spec)?;
    let progress = Arc::new(RestoreProgress::default());
    let p = progress.clone();
    let total = snap.summary.bytes;
    let ticker = Ticker::start(ctx.show_progress(), move |t| {
        let b = p.bytes.load(Ordering::Relaxed);
        format!(
            "{:>5.0}s  {} entries  {} of {} ({:.0}%)",
            t.as_secs_f64(),
            p.entries.load(Ordering::Relaxed),
            mib(b),
            mib(total),
            100.0 * b as f64 / total.max(1) as f64
        )
    });
    let opts = RestoreOptions {
        include: a.include,
        exclude: a.exclude,
        verify: a.verify,
        only: None,
    };
    let rep = restore::restore(
        repo,
        &snap.tree,
        sub.as_deref(),
        &a.target,
        &opts,
        &progress,
    )?;
    drop(ticker);
    // The core reports failed entries without logging them: here they are shown, once.
    for e in &rep.errors {
        eprintln!("error: {e}");
    }
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"snapshot": id.to_hex(), "target": a.target, "entries": rep.entries, "bytes": rep.bytes, "errors": rep.errors}))?;
    } else {
        println!(
            "restored {} entries, {} from snapshot {} to {}{}",
            rep.entries,
            mib(rep.bytes),
            id.short(),
            a.target.display(),
            if rep.errors.is_empty() {
                String::new()
            } else {
                format!(" — {} FAILED", rep.errors.len())
            }
        );
    }
    Ok(if rep.damaged {
        exit::DAMAGED
    } else if rep.errors.is_empty() {
        exit::OK
    } else {
        exit::ERROR
    })
}

/// Reads a file's content chunk by chunk, each authenticated.
struct ChunkReader<'a> {
    repo: &'a Repository,
    ids: &'a [BlobId],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.get(self.next) else {
                return Ok(0);
            };
            self.buf = self
                .repo
                .read_blob(id)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub fn dump(ctx: &Ctx, spec: &str, path: &str) -> Result<u8> {
    let repo = ctx.open_repo()?;
    let _lock = ctx.reader_lock(&repo, "dump")?;
    let (_, snap) = repo.find_snapshot(spec)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let node = find_node(&repo, &snap.tree, path)?;
    match node {
        Some(n) if n.kind == NodeKind::File => {
            let mut r = ChunkReader {
                repo: &repo,
                ids: &n.content,
                next: 0,
                buf: vec![],
                pos: 0,
            };
            std::io::copy(&mut r, &mut out).context("writing to stdout")?;
        }
        Some(n) if n.kind == NodeKind::Dir => {
            let mut tb = tar::Builder::new(out);
            let name = String::from_utf8_lossy(&n.name).into_owned();
            tar_node(&repo, &mut tb, &n, &name, &mut Default::default())?;
            tb.into_inner()?.flush()?;
        }
        None => {
            // The whole snapshot.
            let mut tb = tar::Builder::new(out);
            let mut links = Default::default();
            for c in repo.read_tree(&snap.tree)?.nodes {
                let name = String::from_utf8_lossy(&c.name).into_owned();
                tar_node(&repo, &mut tb, &c, &name, &mut links)?;
            }
            tb.into_inner()?.flush()?;
        }
        Some(_) => bail!("{path}: dump writes files and directories only"),
    }
    Ok(0)
}

fn tar_node<W: Write>(
    repo: &Repository,
    tb: &mut tar::Builder<W>,
    n: &Node,
    path: &str,
    links: &mut std::collections::HashMap<(u64, u64), String>,
) -> Result<()> {
    if !bakfs_core::format::is_safe_name(&n.name) {
        bail!(
            "refusing entry name {:?} in the snapshot",
            String::from_utf8_lossy(&n.name)
        );
    }
    let mut h = tar::Header::new_gnu();
    h.set_mode(n.mode);
    h.set_uid(n.uid as u64);
    h.set_gid(n.gid as u64);
    h.set_mtime(n.mtime_ns.div_euclid(1_000_000_000).max(0) as u64);
    if let Some(u) = &n.user {
        let _ = h.set_username(u);
    }
    if let Some(g) = &n.group {
        let _ = h.set_groupname(g);
    }
    if !n.xattrs.is_empty() {
        let pax: Vec<(String, &[u8])> = n
            .xattrs
            .iter()
            .map(|(k, v)| {
                (
                    format!("SCHILY.xattr.{}", String::from_utf8_lossy(k)),
                    v.as_slice(),
                )
            })
            .collect();
        tb.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    match n.kind {
        NodeKind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tb.append_data(&mut h, format!("{path}/"), std::io::empty())?;
            if let Some(t) = n.subtree {
                for c in repo.read_tree(&t)?.nodes {
                    let p = format!("{path}/{}", String::from_utf8_lossy(&c.name));
                    tar_node(repo, tb, &c, &p, links)?;
                }
            }
        }
        NodeKind::File => {
            if n.nlink > 1 && n.inode != 0 {
                if let Some(first) = links.get(&(n.dev, n.inode)) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    tb.append_link(&mut h, path, first)?;
                    return Ok(());
                }
                links.insert((n.dev, n.inode), path.to_string());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(n.size);
            let r = ChunkReader {
                repo,
                ids: &n.content,
                next: 0,
                buf: vec![],
                pos: 0,
            };
            tb.append_data(&mut h, path, r)?;
        }
        NodeKind::Symlink => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let t = String::from_utf8_lossy(n.target.as_deref().unwrap_or_default()).into_owned();
            tb.append_link(&mut h, path, t)?;
        }
        NodeKind::Fifo | NodeKind::CharDev | NodeKind::BlockDev => {
            h.set_entry_type(match n.kind {
                NodeKind::Fifo => tar::EntryType::Fifo,
                NodeKind::CharDev => tar::EntryType::Char,
                _ => tar::EntryType::Block,
            });
            h.set_size(0);
            let _ = h.set_device_major(nix::sys::stat::major(n.rdev) as u32);
            let _ = h.set_device_minor(nix::sys::stat::minor(n.rdev) as u32);
            tb.append_data(&mut h, path, std::io::empty())?;
        }
        NodeKind::Socket => {}
    }
    Ok(())
}
