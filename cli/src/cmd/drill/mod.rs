//! `bakfs drill`: restore a snapshot from one copy alone (the primary, or a medium with only the
//! password) into a sandbox, check every restored byte, record the drill in the catalog.

mod check;
mod copy;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use bakfs_core::catalog::{DrillEnd, DrillOutcome, DrillRecord, DrillStart};
use bakfs_core::drill::{self, DrillOptions, DrillReport, Sandbox, Scope, SourceComparison};
use bakfs_core::restore::RestoreProgress;
use bakfs_core::timefmt;

use copy::Source;

use crate::args::DrillArgs;
use crate::context::Ctx;
use crate::exit;
use crate::progress::{mib, Ticker};

/// A percentage such as `5%` (or `5`), in (0, 100].
fn percent(flag: &str, s: &str) -> Result<f64> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .with_context(|| format!("{flag} {s:?}: expected a percentage like 5%"))?;
    if !(v > 0.0 && v <= 100.0) {
        bail!("{flag} must be in (0, 100]%");
    }
    Ok(v)
}

pub fn run(ctx: &Ctx, a: DrillArgs) -> Result<u8> {
    let sample = a
        .sample
        .as_deref()
        .map(|s| percent("--sample", s))
        .transpose()?;
    let against_source = a
        .against_source
        .then(|| percent("--max-changed", &a.max_changed))
        .transpose()?;
    let mut cat = ctx.catalog()?;
    let source = copy::source_of(ctx, &cat, &a)?;
    let want = drill::pick_snapshot(
        &source.snapshots(&cat)?,
        a.job.as_deref(),
        a.snapshot.as_deref(),
    )
    .with_context(|| format!("choosing a snapshot on {}", source.name()))?;
    // A job's drill_check needs its files: its drills are full unless a sample is asked for.
    let check = want
        .job
        .as_ref()
        .and_then(|j| Some((j.clone(), ctx.config.jobs.get(j)?.drill_check.clone()?)));
    let scope = match sample {
        _ if a.full => Scope::Full,
        Some(p) => Scope::Sample(p),
        None if check.is_some() => Scope::Full,
        None => Scope::Sample(drill::DEFAULT_SAMPLE_PERCENT),
    };
    if check.is_some() && scope != Scope::Full {
        eprintln!("warning: the job's drill_check runs on full drills only: not run");
    }
    let opts = DrillOptions {
        scope,
        against_source,
    };
    let start = DrillStart {
        repo_id: source.repo_id(),
        medium_id: source.medium_id(),
        snapshot_id: want.snapshot_id,
        job: want.job.clone(),
        started_ns: timefmt::now_ns(),
        mode: scope.mode(),
    };
    let id = cat.begin_drill(&start)?;
    tracing::info!(
        "drill {id}: snapshot {} from {}",
        want.snapshot_id.short(),
        source.name()
    );

    let progress = Arc::new(RestoreProgress::default());
    let p = progress.clone();
    let ticker = Ticker::start(ctx.show_progress(), move |t| {
        format!(
            "{:>5.0}s  {} entries  {} restored and checked",
            t.as_secs_f64(),
            p.entries.load(Ordering::Relaxed),
            mib(p.bytes.load(Ordering::Relaxed))
        )
    });
    let t0 = Instant::now();
    let mut ready_seconds = 0.0;
    let mut mounted = None;
    let sandbox = Sandbox::create(&a.sandbox);
    let result = match &sandbox {
        Err(e) => Err(anyhow!("making the sandbox: {e}")),
        Ok(sb) => copy::open(ctx, &source, &a, sb, &mut mounted).and_then(|repo| {
            // Only the primary is locked: a medium is never written.
            let _lock = match source {
                Source::Primary(_) => ctx.reader_lock(&repo, "drill")?,
                Source::Medium(_) => None,
            };
            let snap = copy::find(&repo, &source, &want)?;
            ready_seconds = t0.elapsed().as_secs_f64();
            let mut report = drill::run(&repo, &snap.tree, &sb.target(), &opts, &progress)?;
            if let (Some((job, line)), Scope::Full, DrillOutcome::Ok) =
                (&check, scope, report.outcome())
            {
                match check::run(line, job, &sb.target()) {
                    Ok(out) => eprintln!("drill check `{line}`: the same on the restored tree and the live source: {out}"),
                    Err(e) => report.errors.push(e),
                }
            }
            Ok(report)
        }),
    };
    drop(ticker);
    drop(mounted);
    let outcome = match &result {
        Ok(r) => r.outcome(),
        Err(e) if crate::exit_code_of(e) == exit::DAMAGED => DrillOutcome::Damaged,
        Err(_) => DrillOutcome::Failed,
    };
    let empty = DrillReport::default();
    let report = result.as_ref().unwrap_or(&empty);
    let end = DrillEnd {
        ended_ns: timefmt::now_ns(),
        outcome,
        files: report.files,
        bytes: report.bytes,
        seconds: report.seconds,
        ready_seconds,
        message: message(&result),
    };
    cat.finish_drill(id, &end)?;
    crate::monitor::refresh_metrics(ctx);

    let kept = match sandbox {
        Ok(sb) if a.keep && outcome != DrillOutcome::Ok => Some(sb.dir().to_path_buf()),
        Ok(sb) => {
            let dir = sb.dir().to_path_buf();
            match sb.remove() {
                Ok(()) => None,
                Err(e) => {
                    eprintln!("warning: the sandbox could not be removed: {e}");
                    Some(dir)
                }
            }
        }
        Err(_) => None,
    };
    let record = record(id, &start, &end);
    show(ctx, &source, &record, &result, kept.as_deref())?;
    Ok(match (&result, outcome) {
        (_, DrillOutcome::Ok) => exit::OK,
        (_, DrillOutcome::Damaged) => exit::DAMAGED,
        (Err(e), _) => crate::exit_code_of(e),
        (Ok(_), _) => exit::ERROR,
    })
}

/// The catalog's message for a drill: what went wrong, or what the live source comparison found.
fn message(result: &Result<DrillReport>) -> Option<String> {
    let r = match result {
        Err(e) => return Some(format!("{e:#}")),
        Ok(r) => r,
    };
    let list = |v: &[String]| {
        let mut s = v.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
        if v.len() > 3 {
            s.push_str(&format!("; {} more", v.len() - 3));
        }
        s
    };
    if !r.damaged.is_empty() {
        return Some(format!("{} damaged: {}", r.damaged.len(), list(&r.damaged)));
    }
    if !r.errors.is_empty() {
        return Some(format!("{} failed: {}", r.errors.len(), list(&r.errors)));
    }
    r.source.as_ref().map(compared)
}

fn compared(s: &SourceComparison) -> String {
    format!(
        "against the source: {} compared, {} same, {} changed, {} gone{}",
        s.compared,
        s.same,
        s.changed.len(),
        s.gone.len(),
        if s.within {
            String::new()
        } else {
            format!(" (more than {}% differ)", s.max_changed_percent)
        }
    )
}

fn record(id: i64, s: &DrillStart, e: &DrillEnd) -> DrillRecord {
    DrillRecord {
        id,
        repo_id: s.repo_id,
        medium_id: s.medium_id,
        snapshot_id: s.snapshot_id,
        job: s.job.clone(),
        started_ns: s.started_ns,
        ended_ns: Some(e.ended_ns),
        outcome: e.outcome,
        mode: s.mode,
        files: e.files,
        bytes: e.bytes,
        seconds: e.seconds,
        ready_seconds: e.ready_seconds,
        message: e.message.clone(),
    }
}

fn show(
    ctx: &Ctx,
    source: &Source,
    d: &DrillRecord,
    result: &Result<DrillReport>,
    kept: Option<&Path>,
) -> Result<()> {
    // The core returns failed files without logging them: here they are shown, once.
    if let Ok(r) = result {
        for e in r.damaged.iter().chain(&r.errors) {
            eprintln!("error: {e}");
        }
    }
    if let Err(e) = result {
        eprintln!("bakfs: drill: {e:#}");
    }
    if let Some(k) = kept {
        eprintln!("the sandbox is kept at {}", k.display());
    }
    if ctx.global.json {
        return ctx.print_json(&serde_json::json!({
            "drill": d, "from": source.label(), "report": result.as_ref().ok(),
            "error": result.as_ref().err().map(|e| format!("{e:#}")), "sandbox_kept": kept,
        }));
    }
    let job = d
        .job
        .as_ref()
        .map(|j| format!(" (job {j})"))
        .unwrap_or_default();
    let what = match d.outcome {
        DrillOutcome::Ok => "ok".to_string(),
        DrillOutcome::Damaged => format!(
            "DAMAGED: `bakfs status` no longer counts {}'s copy of this snapshot",
            source.name()
        ),
        _ => "FAILED".to_string(),
    };
    println!(
        "drill {} of snapshot {}{job} from {}: {what}",
        d.id,
        d.snapshot_id.short(),
        source.name()
    );
    if let Ok(r) = result {
        let rate = (r.seconds > 0.0).then(|| r.bytes as f64 / r.seconds);
        println!(
            "  {} of {} files restored and read back right, {} in {:.1}s{}; ready in {:.1}s",
            r.files,
            r.files_in_snapshot,
            mib(r.bytes),
            r.seconds,
            rate.map(|b| format!(" ({}/s)", mib(b as u64)))
                .unwrap_or_default(),
            d.ready_seconds
        );
        if let Some(s) = &r.source {
            println!("  {}", compared(s));
        }
    }
    Ok(())
}
