//! `backup`: of paths, of standard input, or of configured jobs. A job is its paths or its
//! command's output, between its `before` and `after` commands (docs/design.md §4.2).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bakfs_core::backup::{self, BackupOptions, BackupReport, Progress};
use bakfs_core::catalog::{BackupOutcome, Catalog, FileCounts, PackRecord, RunOutcome};
use bakfs_core::locate::{self, RecordError};
use bakfs_core::repo::Repository;
use bakfs_core::settings::Job;
use bakfs_core::timefmt;
use bakfs_host::command::{self, CommandError, Spec};

use crate::args::BackupArgs;
use crate::context::Ctx;
use crate::exit;
use crate::monitor::Beats;
use crate::progress::{mib, Ticker};

struct Plan {
    job: Option<String>,
    opts: BackupOptions,
    source: Source,
    /// Run in order before the backup; the first that fails stops the job.
    before: Vec<Spec>,
    /// Run in order after the backup, whatever happened.
    after: Vec<Spec>,
}

/// Where a snapshot's data comes from.
enum Source {
    /// The files and directories of `opts.paths`.
    Paths,
    /// bakfs's standard input, stored as a file named `name`.
    Stdin { name: String },
    /// A command's standard output, stored as a file named `name`.
    Command { spec: Spec, name: String },
}

impl Plan {
    /// What job `name` runs, with the command line's extra tags (its excludes apply to paths).
    fn of_job(name: &str, j: &Job, opts: BackupOptions) -> Plan {
        let mut env: Vec<(String, String)> =
            j.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        env.push(("BAKFS_JOB".into(), name.into()));
        let spec = |role: &str, line: &bakfs_core::settings::CommandLine, timeout| Spec {
            role: role.into(),
            line: line.clone(),
            timeout,
            env: env.clone(),
            cwd: None,
        };
        let source = match &j.command {
            Some(c) => Source::Command {
                spec: spec("command", c, j.timeout()),
                name: j.stdin_name(name).to_string(),
            },
            None => Source::Paths,
        };
        Plan {
            job: Some(name.into()),
            source,
            before: j
                .before
                .iter()
                .map(|h| spec("before command", &h.command, Some(h.timeout())))
                .collect(),
            after: j
                .after
                .iter()
                .map(|h| spec("after command", &h.command, Some(h.timeout())))
                .collect(),
            opts,
        }
    }
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
            let opts = BackupOptions {
                paths: j.paths.clone(),
                excludes,
                one_file_system: j.one_file_system || a.one_file_system,
                tags,
                host: host.clone(),
                job: Some(n.clone()),
                ..Default::default()
            };
            plans.push(Plan::of_job(&n, j, opts));
        }
    } else {
        if a.paths.is_empty() && !a.stdin {
            bail!("nothing to back up: give paths, --stdin, --job NAME or --all-jobs");
        }
        let mut excludes = a.exclude.clone();
        excludes.extend(extra_excludes);
        plans.push(Plan {
            job: None,
            source: if a.stdin {
                Source::Stdin {
                    name: a.stdin_name.clone(),
                }
            } else {
                Source::Paths
            },
            before: vec![],
            after: vec![],
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

    let mut beats = Beats::start(ctx, plans.iter().filter_map(|p| p.job.as_deref()));
    let r = run_plans(ctx, plans, &mut beats);
    match &r {
        Ok(code) => beats.close(*code, "the job did not run"),
        // Opening or locking the repository failed: every job's monitors hear of it.
        Err(e) => beats.close(crate::exit_code_of(e), &format!("{e:#}")),
    }
    crate::monitor::refresh_metrics(ctx);
    r
}

/// Runs `plans` in order against the repository, each with its heartbeats.
fn run_plans(ctx: &Ctx, plans: Vec<Plan>, beats: &mut Beats) -> Result<u8> {
    // The index is read under the lock (a prune may finish between opening and locking):
    // dedup only against what is there now.
    let repo = ctx.open_repo_to_lock()?;
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
        // Every line logged while a job runs names it (JOB= in the journal), its commands' output
        // included.
        let _in_job = plan
            .job
            .clone()
            .map(|n| tracing::error_span!("backup", job = %n).entered());
        if let Some(j) = &plan.job {
            beats.begin(j);
        }
        plan.opts.time_ns = timefmt::now_ns();
        let run_id = catalog.as_mut().and_then(|c| {
            c.begin_run(&repo_id, plan.job.as_deref(), plan.opts.time_ns)
                .ok()
        });
        let (outcome, live) = match run_before(&plan.before) {
            Ok(()) => run_one(ctx, &repo, &mut plan, catalog.as_mut()),
            Err(e) => (Err(e.into()), None),
        };
        // The catalog learns of the snapshot at once, not after the after commands.
        if let (Ok(rep), Some(c)) = (&outcome, catalog.as_mut()) {
            let rec = crate::context::snapshot_record(repo_id, rep.id, &rep.snapshot);
            let packs: Vec<PackRecord> = rep
                .packs_needed
                .iter()
                .map(|(p, sz)| PackRecord { id: *p, size: *sz })
                .collect();
            if let Err(e) = c.record_snapshot(&rec, &packs) {
                tracing::warn!("catalog: {e}");
            }
            // Its files for `bakfs locate`, recorded while the backup ran or now: a failure
            // leaves them unrecorded (locate says so).
            let t = std::time::Instant::now();
            // `seconds`: the time this step took after the backup (while it ran, for a
            // recording made during it).
            let during_backup = live.is_some();
            let recorded = match live {
                Some(r) => r.and_then(|n| Ok(c.prune_files(&repo_id).map(|_| n)?)),
                None => bakfs_core::locate::record_files(c, &repo, &rep.id, &rep.snapshot),
            };
            match recorded {
                Ok(n) => tracing::info!(
                    files = n.files,
                    changed = n.added,
                    new_paths = n.new_paths,
                    new_versions = n.new_versions,
                    during_backup,
                    seconds = t.elapsed().as_secs_f64(),
                    "catalog: files recorded"
                ),
                Err(e) => tracing::warn!(
                    "catalog: files of snapshot {} not recorded: {e:#}",
                    rep.id.short()
                ),
            }
        }
        let after_failed = run_after(&plan.after, &outcome);
        let ended = timefmt::now_ns();
        match outcome {
            Ok(rep) => {
                let s = &rep.snapshot;
                let incomplete = s.summary.incomplete;
                // The snapshot stands, but the run failed if an after command did.
                let after_msg = (!after_failed.is_empty()).then(|| joined(&after_failed));
                if let Some(c) = catalog.as_mut() {
                    if let Some(r) = run_id {
                        let _ = c.finish_run(
                            r,
                            &RunOutcome {
                                ended_ns: ended,
                                outcome: if after_msg.is_some() {
                                    BackupOutcome::Failed
                                } else if incomplete {
                                    BackupOutcome::Incomplete
                                } else {
                                    BackupOutcome::Ok
                                },
                                files: s.summary.files,
                                bytes_read: s.summary.bytes_read,
                                bytes_added: s.summary.bytes_added,
                                snapshot_id: Some(rep.id),
                                message: after_msg
                                    .clone()
                                    .or_else(|| rep.warnings.first().cloned()),
                            },
                        );
                    }
                }
                // The core reports warnings without logging them: here they are shown, once
                // (on stderr also with --json, where they are in the output too).
                for w in &rep.warnings {
                    eprintln!("warning: {w}");
                }
                let sm = &s.summary;
                let line = format!(
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
                if !ctx.global.json {
                    println!("{line}");
                }
                let mut job_code = if incomplete {
                    exit::INCOMPLETE
                } else {
                    exit::OK
                };
                if let Some(m) = &after_msg {
                    eprintln!("bakfs: job {}: {m}", plan.job.as_deref().unwrap_or(""));
                    job_code = exit::ERROR;
                }
                code = code.max(job_code);
                if let Some(j) = &plan.job {
                    let mut text = line;
                    for w in after_msg.iter().chain(&rep.warnings) {
                        text = format!("{text}\n{w}");
                    }
                    beats.finish(j, job_code, &text);
                }
                results.push(serde_json::json!({"id": rep.id.to_hex(), "job": plan.job, "time": timefmt::format_rfc3339_nanos(s.time_ns), "paths": s.paths, "summary": s.summary, "warnings": rep.warnings}));
            }
            Err(e) => {
                let mut message = format!("{e:#}");
                if !after_failed.is_empty() {
                    message = format!("{message}; {}", joined(&after_failed));
                }
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
                            message: Some(message.clone()),
                        },
                    );
                }
                let Some(job) = &plan.job else {
                    return Err(e);
                };
                eprintln!("bakfs: job {job}: {message}");
                beats.finish(job, crate::exit_code_of(&e).max(exit::ERROR), &message);
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

/// Runs the `before` commands in order; the first that fails stops them (and the job).
fn run_before(hooks: &[Spec]) -> Result<(), CommandError> {
    for h in hooks {
        tracing::info!("running {} `{}`", h.role, h.line);
        command::run(h)?;
    }
    Ok(())
}

/// Runs every `after` command, whatever happened, with the outcome in its environment
/// (`BAKFS_OUTCOME`: ok, incomplete or failed; `BAKFS_SNAPSHOT`: the new snapshot's id);
/// returns the failures.
fn run_after(hooks: &[Spec], outcome: &Result<BackupReport>) -> Vec<CommandError> {
    let (what, snapshot) = match outcome {
        Ok(r) if r.snapshot.summary.incomplete => ("incomplete", Some(r.id)),
        Ok(r) => ("ok", Some(r.id)),
        Err(_) => ("failed", None),
    };
    let mut failed = vec![];
    for h in hooks {
        let mut h = h.clone();
        h.env.push(("BAKFS_OUTCOME".into(), what.into()));
        if let Some(id) = snapshot {
            h.env.push(("BAKFS_SNAPSHOT".into(), id.to_hex()));
        }
        tracing::info!("running {} `{}`", h.role, h.line);
        if let Err(e) = command::run(&h) {
            failed.push(e);
        }
    }
    failed
}

fn joined(errors: &[CommandError]) -> String {
    let v: Vec<String> = errors.iter().map(ToString::to_string).collect();
    v.join("; ")
}

/// What recording the files while the backup ran gave, if they were (see [`run_one`]).
type Live = Option<Result<FileCounts, RecordError>>;

/// Runs one plan's backup. A snapshot whose parent's files the catalog does not record (a
/// first backup) has its files recorded while the backup runs (`locate::record_during`); the
/// others have them recorded from the parent's record afterwards.
fn run_one(
    ctx: &Ctx,
    repo: &Repository,
    plan: &mut Plan,
    catalog: Option<&mut Catalog>,
) -> (Result<BackupReport>, Live) {
    match backup_source(ctx, repo, plan, catalog) {
        Ok(r) => r,
        Err(e) => (Err(e), None),
    }
}

fn backup_source(
    ctx: &Ctx,
    repo: &Repository,
    plan: &mut Plan,
    catalog: Option<&mut Catalog>,
) -> Result<(Result<BackupReport>, Live)> {
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
    match &plan.source {
        Source::Paths => {}
        Source::Stdin { name } => {
            let r = backup::backup_stdin(
                repo,
                &mut std::io::stdin().lock(),
                name,
                &plan.opts,
                &progress,
            );
            return Ok((r.map_err(Into::into), None));
        }
        Source::Command { spec, name } => {
            tracing::info!("running {} `{}`", spec.role, spec.line);
            let mut out = command::spawn_output(spec)?;
            // The manifest is written only once the output ended and the command exited 0: a
            // command that failed ends the stream in an error, and the error to report is
            // the command's (a repository error kills the command instead).
            let r = match backup::backup_stdin(repo, &mut out, name, &plan.opts, &progress) {
                Ok(r) => Ok(r),
                Err(e) => match out.failure() {
                    Some(f) => Err(f.clone().into()),
                    None => Err(e.into()),
                },
            };
            return Ok((r, None));
        }
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
    let repo_id = repo.id();
    let parent = plan.opts.parent.as_ref().map(|(p, _)| *p);
    match catalog {
        Some(c) if !locate::parent_recorded(c, &repo_id, parent.as_ref()) => {
            let time_ns = plan.opts.time_ns;
            let opts = &mut plan.opts;
            let (r, live) = locate::record_during(
                c,
                &repo_id,
                time_ns,
                |sink| {
                    opts.on_tree = Some(sink);
                    let r = backup::backup(repo, opts, &progress);
                    opts.on_tree = None;
                    r
                },
                |r| r.id,
            );
            Ok((r.map_err(Into::into), live))
        }
        _ => Ok((
            backup::backup(repo, &plan.opts, &progress).map_err(Into::into),
            None,
        )),
    }
}
