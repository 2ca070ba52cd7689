//! `check`, `forget`, `prune`, `unlock`, `catalog`.

use anyhow::{bail, Context, Result};
use bakfs_core::backup::packs_of;
use bakfs_core::catalog::PackRecord;
use bakfs_core::forget::{self, Candidate};
use bakfs_core::repo::lock;
use bakfs_core::repo::walk::reachable_blobs;
use bakfs_core::{check as chk, prune as prn, timefmt};

use crate::args::{CatalogCmd, ForgetArgs};
use crate::context::Ctx;
use crate::exit;

pub fn check(ctx: &Ctx, read_data: bool, subset: Option<String>) -> Result<u8> {
    let frac = match (read_data, subset) {
        (_, Some(s)) => Some(
            bakfs_core::settings::parse_percent(&s)
                .map_err(|e| anyhow::anyhow!("--read-data-subset {e}"))?
                / 100.0,
        ),
        (true, None) => Some(1.0),
        (false, None) => None,
    };
    let repo = ctx.open_repo()?;
    let _lock = ctx.reader_lock(&repo, "check")?;
    let rep = chk::check(&repo, frac)?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"ok": rep.ok(), "report": rep}))?;
    } else {
        for n in &rep.notes {
            println!("note: {n}");
        }
        for (p, m) in &rep.damaged_packs {
            println!("damaged pack {p}: {m}");
        }
        for e in &rep.errors {
            println!("error: {e}");
        }
        if !rep.affected.is_empty() {
            println!("affected files ({}):", rep.affected.len());
            for a in rep.affected.iter().take(1000) {
                println!("  {a}");
            }
        }
        println!(
            "{}: {} snapshots, {} packs{}",
            if rep.ok() {
                "no errors found"
            } else {
                "REPOSITORY DAMAGED"
            },
            rep.snapshots,
            rep.packs,
            if frac.is_some() {
                format!(", {} packs read", rep.packs_read)
            } else {
                String::new()
            }
        );
    }
    Ok(if rep.ok() { exit::OK } else { exit::DAMAGED })
}

/// Removes the snapshots named by id prefix, without decrypting them (so damaged ones too).
fn forget_ids(ctx: &Ctx, a: &ForgetArgs) -> Result<u8> {
    let path = ctx.repo_path()?;
    let repo = ctx.open_repo()?;
    let _lock = lock::shared(repo.backend(), "forget")?;
    let names = repo
        .backend()
        .list(bakfs_core::repo::backend::FileKind::Snapshot)?;
    let mut removed = vec![];
    for want in &a.ids {
        let w = want.to_ascii_lowercase();
        let m: Vec<&String> = names.iter().filter(|n| n.starts_with(&w)).collect();
        if w.len() < 4 || m.len() != 1 {
            bail!(
                "{want:?} matches {} snapshots in {} (give at least 4 hex digits of one id)",
                m.len(),
                path.display()
            );
        }
        removed.push(m[0].clone());
    }
    if !a.dry_run {
        let mut cat = ctx.catalog().ok();
        for id in &removed {
            let sid = bakfs_core::format::id::SnapshotId::from_hex(id)?;
            repo.remove_snapshot(&sid)?;
            if let Some(c) = cat.as_mut() {
                let _ = c.remove_snapshot(&repo.id(), &sid);
            }
        }
        if let Some(Err(e)) = cat.as_mut().map(|c| c.prune_files(&repo.id())) {
            tracing::warn!("catalog: file rows of forgotten snapshots not pruned: {e}");
        }
    }
    report_removed(
        ctx,
        a.dry_run,
        removed.len(),
        serde_json::json!({"dry_run": a.dry_run, "removed": removed}),
    )?;
    drop(_lock);
    if a.prune && !a.dry_run {
        return prune_repo(ctx, &repo, false);
    }
    Ok(0)
}

pub fn repair_index(ctx: &Ctx) -> Result<u8> {
    let repo = ctx.open_repo()?;
    let lock = repo.lock_exclusive("repair index")?;
    let (n, bad) = repo.rebuild_index(&lock)?;
    for (p, why) in &bad {
        eprintln!("pack {p} left out: {why}");
    }
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"packs": n, "unreadable": bad.iter().map(|(p, w)| serde_json::json!({"pack": p.to_hex(), "error": w})).collect::<Vec<_>>()}))?;
    } else {
        println!(
            "index rebuilt from {n} packs{}",
            if bad.is_empty() {
                String::new()
            } else {
                format!(", {} unreadable packs left out", bad.len())
            }
        );
    }
    Ok(if bad.is_empty() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}

pub fn forget(ctx: &Ctx, a: ForgetArgs) -> Result<u8> {
    if !a.ids.is_empty() {
        return forget_ids(ctx, &a);
    }
    let mut policy = a.keep.policy()?;
    if let Some(j) = &a.job {
        let job = ctx
            .config
            .jobs
            .get(j)
            .with_context(|| format!("no job {j:?} in the configuration"))?;
        if policy.is_empty() {
            policy = job.retention.clone();
        }
    }
    let repo = ctx.open_repo()?;
    let _lock = repo.lock_shared("forget")?;
    let snaps = repo.snapshots()?;
    // The policy applies within each group (host, paths, job), on the local calendar.
    let candidates: Vec<(forget::Group, String, i64)> = snaps
        .iter()
        .filter(|(_, s)| {
            a.host.as_ref().is_none_or(|h| &s.host == h)
                && a.job.as_ref().is_none_or(|j| s.job.as_ref() == Some(j))
        })
        .map(|(id, s)| {
            let group = forget::Group {
                host: s.host.clone(),
                paths: s.paths.clone(),
                job: s.job.clone(),
            };
            (group, id.to_hex(), s.time_ns)
        })
        .collect();
    let groups = forget::apply_by_group(
        &policy,
        candidates.iter().map(|(g, id, t)| {
            let c = Candidate {
                id: id.as_str(),
                time_ns: *t,
            };
            (g.clone(), c)
        }),
        &timefmt::TimeZone::system(),
    )?;
    let mut removed = vec![];
    let mut report = vec![];
    for (g, decisions) in &groups {
        if !ctx.global.json {
            println!(
                "host {}, paths {}{}:",
                g.host,
                g.paths.join(" "),
                g.job
                    .as_ref()
                    .map(|j| format!(", job {j}"))
                    .unwrap_or_default()
            );
        }
        for d in decisions {
            if !ctx.global.json {
                println!(
                    "  {} {} {} {}",
                    if d.keep { "keep  " } else { "remove" },
                    &d.id[..8],
                    timefmt::format_rfc3339(d.time_ns),
                    d.reasons.join(",")
                );
            }
            if !d.keep {
                removed.push(d.id.clone());
            }
        }
        report.push(serde_json::json!({
            "host": g.host, "paths": g.paths, "job": g.job, "decisions": decisions
        }));
    }
    if !a.dry_run {
        let mut cat = ctx.catalog().ok();
        for id in &removed {
            let sid = bakfs_core::format::id::SnapshotId::from_hex(id)?;
            repo.remove_snapshot(&sid)?;
            if let Some(c) = cat.as_mut() {
                let _ = c.remove_snapshot(&repo.id(), &sid);
            }
        }
        if let Some(Err(e)) = cat.as_mut().map(|c| c.prune_files(&repo.id())) {
            tracing::warn!("catalog: file rows of forgotten snapshots not pruned: {e}");
        }
    }
    report_removed(
        ctx,
        a.dry_run,
        removed.len(),
        serde_json::json!({"dry_run": a.dry_run, "removed": removed, "groups": report}),
    )?;
    drop(_lock);
    if a.prune && !a.dry_run {
        return prune_repo(ctx, &repo, false);
    }
    Ok(0)
}

pub fn prune(ctx: &Ctx, dry_run: bool) -> Result<u8> {
    let repo = ctx.open_repo()?;
    prune_repo(ctx, &repo, dry_run)
}

fn prune_repo(ctx: &Ctx, repo: &bakfs_core::repo::Repository, dry_run: bool) -> Result<u8> {
    // The index is read again under the lock: a backup may have finished since the open.
    // Backups go on beside it (design.md §4.3).
    let lock = repo.lock_prune("prune")?;
    let mode = if dry_run {
        prn::PruneMode::DryRun
    } else {
        prn::PruneMode::Apply
    };
    let rep = prn::prune(repo, &lock, mode)?;
    if !dry_run {
        // Packs were deleted or rewritten: the catalog's pack lists must follow.
        match ctx.catalog() {
            Ok(mut cat) => {
                if let Err(e) = rebuild_catalog(ctx, repo, &mut cat) {
                    tracing::warn!(
                        "catalog not updated after prune: {e:#}; run `bakfs catalog rebuild`"
                    );
                }
            }
            Err(e) => tracing::warn!("catalog unavailable: {e:#}"),
        }
    }
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"dry_run": dry_run, "report": rep}))?;
    } else {
        println!(
            "{}{} packs deleted, {} repacked, {} unreferenced removed, {} freed (of {} packs)",
            if dry_run { "would be: " } else { "" },
            rep.packs_deleted,
            rep.packs_repacked,
            rep.unreferenced_removed,
            crate::progress::mib(rep.bytes_freed),
            rep.packs_before
        );
        if rep.packs_deferred > 0 {
            println!(
                "{} packs are deleted by a later prune: processes that may still use them were running",
                rep.packs_deferred
            );
        }
        if rep.packs_restored > 0 {
            println!(
                "{} packs an earlier prune took out of the index were indexed again: newer snapshots need them",
                rep.packs_restored
            );
        }
    }
    Ok(0)
}

pub fn unlock(ctx: &Ctx, all: bool) -> Result<u8> {
    let backend = ctx.location()?.backend()?;
    // Needs no password: only that it is a repository.
    bakfs_core::repo::read_config(backend.as_ref())?;
    let which = if all {
        lock::Unlock::All
    } else {
        lock::Unlock::Stale
    };
    let removed = lock::unlock(backend.as_ref(), which)?;
    if ctx.global.json {
        ctx.print_json(&removed)?;
    } else {
        println!("removed {} locks", removed.len());
    }
    Ok(0)
}

/// Replaces the catalog's record of this repository by what the repository holds.
fn rebuild_catalog(
    ctx: &Ctx,
    repo: &bakfs_core::repo::Repository,
    cat: &mut bakfs_core::catalog::Catalog,
) -> Result<usize> {
    let repo_id = repo.id();
    let mut items = vec![];
    let snaps = repo.snapshots()?;
    for (id, s) in &snaps {
        let blobs = reachable_blobs(repo, [s.tree])?;
        let packs: Vec<PackRecord> = packs_of(repo, blobs)
            .into_iter()
            .map(|(p, sz)| PackRecord { id: p, size: sz })
            .collect();
        items.push((crate::context::snapshot_record(repo_id, *id, s), packs));
    }
    cat.touch_repository(&repo_id, &ctx.location()?.to_string(), timefmt::now_ns())?;
    cat.replace_repository_contents(&repo_id, &items)?;
    // The file table: snapshots whose files are not (completely) recorded.
    for (id, s) in &snaps {
        if !cat.files_recorded(&repo_id, id)? {
            bakfs_core::locate::record_files(cat, repo, id, s)?;
        }
    }
    cat.prune_files(&repo_id)?;
    Ok(items.len())
}

pub fn catalog(ctx: &Ctx, c: CatalogCmd) -> Result<u8> {
    let repo = ctx.open_repo()?;
    let repo_id = repo.id();
    let mut cat = ctx.catalog()?;
    match c {
        CatalogCmd::Rebuild => {
            let n = rebuild_catalog(ctx, &repo, &mut cat)?;
            if ctx.global.json {
                ctx.print_json(
                    &serde_json::json!({"repository": repo_id.to_hex(), "snapshots": n}),
                )?;
            } else {
                println!(
                    "catalog rebuilt: {n} snapshots of repository {}",
                    repo.id().short()
                );
            }
        }
        CatalogCmd::Runs { limit } => {
            let runs = cat.runs(&repo_id, limit)?;
            if ctx.global.json {
                ctx.print_json(&runs)?;
            } else {
                for r in runs {
                    println!(
                        "{:<21} {:<10} {:<12} {:>8} files {:>12} read {:>12} new  {}",
                        timefmt::format_rfc3339(r.started_ns),
                        r.outcome,
                        r.job.unwrap_or_default(),
                        r.files,
                        r.bytes_read,
                        r.bytes_added,
                        r.message.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(0)
}

/// What `forget` did: `json` with `--json`, else one line.
fn report_removed(ctx: &Ctx, dry_run: bool, n: usize, json: serde_json::Value) -> Result<()> {
    if ctx.global.json {
        ctx.print_json(&json)
    } else {
        let what = if dry_run {
            "would be removed"
        } else {
            "removed"
        };
        println!("{n} snapshots {what}");
        Ok(())
    }
}
