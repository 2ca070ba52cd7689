//! `backup`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bakfs_core::backup::{self, BackupOptions, BackupReport, Progress};
use bakfs_core::catalog::{BackupOutcome, PackRecord, RunOutcome};
use bakfs_core::repo::Repository;
use bakfs_core::timefmt;

use crate::args::BackupArgs;
use crate::context::Ctx;
use crate::exit;
use crate::progress::{mib, Ticker};

struct Plan {
    job: Option<String>,
    opts: BackupOptions,
}

fn read_exclude_files(files: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut out = vec![];
    for f in files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading exclude file {}", f.display()))?;
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(out)
}

pub fn run(ctx: &Ctx, a: BackupArgs) -> Result<u8> {
    let host = a
        .host
        .clone()
        .unwrap_or_else(bakfs_core::repo::lock::hostname);
    let mut plans = vec![];
    let extra_excludes = read_exclude_files(&a.exclude_file)?;
    if a.all_jobs || a.job.is_some() {
        if !a.paths.is_empty() || a.stdin {
            bail!("give either paths or --job/--all-jobs, not both");
        }
        let names: Vec<String> = if a.all_jobs {
            ctx.config.jobs.keys().cloned().collect()
        } else {
            a.job.clone().into_iter().collect()
        };
        if names.is_empty() {
            bail!("the configuration has no jobs");
        }
        for n in names {
            let j = ctx
                .config
                .jobs
                .get(&n)
                .with_context(|| format!("no job {n:?} in the configuration"))?;
            let mut excludes = j.exclude.clone();
            excludes.extend(a.exclude.iter().cloned());
            excludes.extend(extra_excludes.iter().cloned());
            let mut tags = j.tags.clone();
            tags.extend(a.tag.iter().cloned());
            plans.push(Plan {
                job: Some(n.clone()),
                opts: BackupOptions {
                    paths: j.paths.clone(),
                    excludes,
                    one_file_system: j.one_file_system || a.one_file_system,
                    tags,
                    host: host.clone(),
                    job: Some(n),
                    ..Default::default()
                },
            });
        }
    } else {
        if a.paths.is_empty() && !a.stdin {
            bail!("nothing to back up: give paths, --stdin, --job NAME or --all-jobs");
        }
        let mut excludes = a.exclude.clone();
        excludes.extend(extra_excludes);
        plans.push(Plan {
            job: None,
            opts: BackupOptions {
                paths: a.paths.clone(),
                excludes,
                one_file_system: a.one_file_system,
                tags: a.tag.clone(),
                host: host.clone(),
                ..Default::default()
            },
        });
    }

    let repo = ctx.open_repo()?;
    // The index is read again under the lock (a prune may have finished between opening and
    // locking): dedup only against what is there now.
    let _lock = repo.lock_shared("backup")?;
    let mut catalog = match ctx.catalog() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("catalog unavailable, run not recorded: {e:#}");
            None
        }
    };
    let repo_id = repo.id();
    if let Some(c) = catalog.as_mut() {
        let loc = ctx.repo_path()?.display().to_string();
        let _ = c.touch_repository(&repo_id, &loc, timefmt::now_ns());
    }
    let mut code = exit::OK;
    let mut results = vec![];
    for mut plan in plans {
        plan.opts.time_ns = timefmt::now_ns();
        let run_id = catalog.as_mut().and_then(|c| {
            c.begin_run(&repo_id, plan.job.as_deref(), plan.opts.time_ns)
                .ok()
        });
        let outcome = run_one(ctx, &repo, &mut plan, a.stdin, &a.stdin_name);
        let ended = timefmt::now_ns();
        match outcome {
            Ok(rep) => {
                let s = &rep.snapshot;
                let incomplete = s.summary.incomplete;
                if let Some(c) = catalog.as_mut() {
                    let rec = crate::context::snapshot_record(repo_id, rep.id, s);
                    let packs: Vec<PackRecord> = rep
                        .packs_needed
                        .iter()
                        .map(|(p, sz)| PackRecord { id: *p, size: *sz })
                        .collect();
                    if let Err(e) = c.record_snapshot(&rec, &packs) {
                        tracing::warn!("catalog: {e}");
                    }
                    if let Some(r) = run_id {
                        let _ = c.finish_run(
                            r,
                            &RunOutcome {
                                ended_ns: ended,
                                outcome: if incomplete {
                                    BackupOutcome::Incomplete
                                } else {
                                    BackupOutcome::Ok
                                },
                                files: s.summary.files,
                                bytes_read: s.summary.bytes_read,
                                bytes_added: s.summary.bytes_added,
                                snapshot_id: Some(rep.id),
                                message: rep.warnings.first().cloned(),
                            },
                        );
                    }
                }
                if incomplete {
                    code = code.max(exit::INCOMPLETE);
                }
                // The core reports warnings without logging them: here they are shown, once
                // (on stderr also with --json, where they are in the output too).
                for w in &rep.warnings {
                    eprintln!("warning: {w}");
                }
                if !ctx.global.json {
                    let sm = &s.summary;
                    println!(
                        "snapshot {} saved{}: {} files, {} dirs, {} ({} read, {} new, {} stored) in {:.1}s{}",
                        rep.id.short(),
                        plan.job.as_ref().map(|j| format!(" for job {j}")).unwrap_or_default(),
                        sm.files,
                        sm.dirs,
                        mib(sm.bytes),
                        mib(sm.bytes_read),
                        mib(sm.bytes_added),
                        mib(sm.bytes_stored),
                        sm.duration_s,
                        if incomplete { format!(" — INCOMPLETE: {} files could not be read consistently", rep.warnings.len()) } else { String::new() }
                    );
                }
                results.push(serde_json::json!({"id": rep.id.to_hex(), "job": plan.job, "time": timefmt::format_rfc3339_nanos(s.time_ns), "paths": s.paths, "summary": s.summary, "warnings": rep.warnings}));
            }
            Err(e) => {
                if let (Some(c), Some(r)) = (catalog.as_mut(), run_id) {
                    let _ = c.finish_run(
                        r,
                        &RunOutcome {
                            ended_ns: ended,
                            outcome: BackupOutcome::Failed,
                            files: 0,
                            bytes_read: 0,
                            bytes_added: 0,
                            snapshot_id: None,
                            message: Some(format!("{e:#}")),
                        },
                    );
                }
                if plan.job.is_none() {
                    return Err(e);
                }
                eprintln!("bakfs: job {}: {e:#}", plan.job.as_deref().unwrap_or(""));
                code = code.max(exit::ERROR);
            }
        }
    }
    if ctx.global.json {
        ctx.print_json(&if results.len() == 1 {
            results.remove(0)
        } else {
            serde_json::Value::Array(results)
        })?;
    }
    Ok(code)
}

fn run_one(
    ctx: &Ctx,
    repo: &Repository,
    plan: &mut Plan,
    stdin: bool,
    stdin_name: &str,
) -> Result<BackupReport> {
    let progress = Arc::new(Progress::default());
    let p = progress.clone();
    let _ticker = Ticker::start(ctx.show_progress(), move |t| {
        format!(
            "{:>5.0}s  {} entries  {} seen  {} read  {} new  {} warnings",
            t.as_secs_f64(),
            p.entries.load(Ordering::Relaxed),
            mib(p.bytes_seen.load(Ordering::Relaxed)),
            mib(p.bytes_read.load(Ordering::Relaxed)),
            mib(p.bytes_added.load(Ordering::Relaxed)),
            p.errors.load(Ordering::Relaxed)
        )
    });
    if stdin {
        return Ok(backup::backup_stdin(
            repo,
            &mut std::io::stdin().lock(),
            stdin_name,
            &plan.opts,
            &progress,
        )?);
    }
    // Parent: the newest snapshot of the same host and paths.
    let want: Vec<String> = backup::source_paths(&plan.opts.paths)?
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    plan.opts.parent = repo.snapshots()?.into_iter().rev().find(|(_, s)| {
        let mut sp = s.paths.clone();
        sp.sort();
        s.host == plan.opts.host && sp == want
    });
    Ok(backup::backup(repo, &plan.opts, &progress)?)
}
