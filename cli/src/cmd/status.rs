//! `bakfs status`: whether each job's backups hold, from the configuration and the catalog
//! alone (no password, no repository read), with an exit code per level for monitors.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bakfs_core::catalog::{Catalog, DrillOutcome, Presence};
use bakfs_core::format::id::RepoId;
use bakfs_core::status::{
    self, CopyStatus, DigitState, Filter, JobStatus, Level, MediumStatus, Report, Settings,
};
use bakfs_core::timefmt;

use crate::args::StatusArgs;
use crate::context::Ctx;
use crate::exit;

/// Appends a line to the text being built (writing to a `String` does not fail).
macro_rules! out {
    ($o:expr) => {{
        let _ = writeln!($o);
    }};
    ($o:expr, $($t:tt)*) => {{
        let _ = writeln!($o, $($t)*);
    }};
}

/// The exit code of a report's level (README, "Exit codes").
pub fn exit_code(level: Level) -> u8 {
    match level {
        Level::Ok => exit::OK,
        Level::Attention => exit::STATUS_ATTENTION,
        Level::Late => exit::STATUS_LATE,
        Level::Short => exit::STATUS_SHORT,
        Level::Unknown => exit::STATUS_UNKNOWN,
        Level::Breached => exit::STATUS_BREACHED,
    }
}

/// The configuration's settings; a primary repository in a bucket counts as a copy of kind
/// `object storage` unless `[policy] primary_kind` says otherwise.
pub fn settings(ctx: &Ctx) -> Result<Settings> {
    let mut s = Settings::from_config(&ctx.config)?;
    if ctx.config.policy.primary_kind.is_none()
        && matches!(
            ctx.location(),
            Ok(bakfs_core::repo::backend::Location::S3(_))
        )
    {
        s.policy.primary_kind = bakfs_core::catalog::MediumKind::ObjectStorage;
    }
    Ok(s)
}

pub fn run(ctx: &Ctx, a: StatusArgs) -> Result<u8> {
    let now = timefmt::now_ns();
    let settings = settings(ctx)?;
    let filter = Filter {
        job: a.job,
        medium: a.medium,
    };
    if let Some(j) = &filter.job {
        if !settings.jobs.iter().any(|s| s.name == *j) {
            anyhow::bail!("no job {j:?} in the configuration");
        }
    }
    let report = report(ctx, &settings, &filter, now)?;
    if ctx.global.json {
        ctx.print_json(&report)?;
    } else {
        let mut o = String::new();
        print(&mut o, &report);
        // A reader that stops early (`| head`) is no error.
        match std::io::stdout().lock().write_all(o.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    Ok(exit_code(report.level))
}

/// `bakfs metrics`: the report's figures on standard output or into a textfile.
pub fn metrics(ctx: &Ctx, textfile: Option<&Path>) -> Result<u8> {
    let settings = settings(ctx)?;
    let report = report(ctx, &settings, &Filter::default(), timefmt::now_ns())?;
    match textfile {
        Some(p) => status::metrics::write_textfile(p, &report)
            .with_context(|| format!("writing {}", p.display()))?,
        None => std::io::stdout().write_all(status::metrics::render(&report).as_bytes())?,
    }
    Ok(exit::OK)
}

/// The report of `bakfs status` (and of `bakfs metrics`) from the configuration and the catalog.
pub fn report(ctx: &Ctx, settings: &Settings, filter: &Filter, now: i64) -> Result<Report> {
    let path = ctx.state_dir().join("catalog.db");
    Ok(if !path.exists() {
        Report::unknown(
            now,
            settings.policy.clone(),
            format!(
                "no catalog at {}: nothing was recorded with this state directory",
                path.display()
            ),
        )
    } else {
        let cat = Catalog::open(&path)?;
        match repository(ctx, &cat)? {
            Ok(repo) => status::report(&cat, &repo, settings, filter, now)?,
            Err(why) => Report::unknown(now, settings.policy.clone(), why),
        }
    })
}

/// The repository to judge, from the catalog alone: the one recorded at the configured
/// location, else (none configured) the only one the catalog knows. `Err` says why none.
pub(crate) fn repository(ctx: &Ctx, cat: &Catalog) -> Result<Result<RepoId, String>> {
    let given = ctx
        .global
        .repo
        .clone()
        .or_else(|| ctx.config.repository.clone());
    let Some(given) = given else {
        let ids = cat.known_repository_ids()?;
        return Ok(match ids.as_slice() {
            [one] => Ok(*one),
            [] => Err("the catalog records no repository".into()),
            many => Err(format!(
                "the catalog knows {} repositories: say which with --repo or `repository` in the config file",
                many.len()
            )),
        });
    };
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let want = abs(&given);
    let found: Vec<RepoId> = cat
        .repositories()?
        .into_iter()
        .filter(|r| abs(&PathBuf::from(&r.location)) == want)
        .map(|r| r.id)
        .collect();
    Ok(match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "the catalog has no record of the repository at {} (back up to it, or run `bakfs catalog rebuild`)",
            given.display()
        )),
        _ => Err(format!(
            "the catalog records more than one repository at {}",
            given.display()
        )),
    })
}

/// `512 B`, `11.4 MiB`, `46.6 GiB`.
fn size(b: u64) -> String {
    let mut v = b as f64;
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 || unit == "TiB" {
            return if unit == "B" {
                format!("{b} B")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{b} B")
}

/// `3 hours ago`, `never`.
fn ago(ns: Option<i64>, now: i64) -> String {
    match ns {
        None => "never".into(),
        Some(t) if t > now => "in the future".into(),
        Some(t) => format!(
            "{} ago",
            timefmt::format_age(std::time::Duration::from_nanos((now - t) as u64))
        ),
    }
}

/// `2 min`, `unknown`.
fn duration_of(seconds: Option<f64>) -> String {
    match seconds {
        None => "unknown".into(),
        Some(s) if s < 90.0 => format!("{s:.0} s"),
        Some(s) if s < 5400.0 => format!("{:.0} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

fn presence(p: Option<Presence>) -> &'static str {
    match p {
        Some(p) => p.as_str(),
        None => "not known",
    }
}

fn print(o: &mut String, r: &Report) {
    let now = r.now;
    let tz = timefmt::TimeZone::system();
    let repo = r
        .repository
        .map(|id| format!("repository {}", id.short()))
        .unwrap_or_else(|| "no repository".into());
    out!(
        o,
        "status: {} ({repo}, {})",
        r.level,
        timefmt::format_local(now, &tz)
    );
    let p = &r.policy;
    out!(
        o,
        "policy: {} copies, {} kinds, {} offsite, {} offline, {}",
        p.copies,
        p.kinds,
        p.offsite,
        p.offline,
        match p.drill_within {
            Some(d) => format!("a drill within {}", timefmt::format_duration(d)),
            None => "no drill required".into(),
        }
    );
    for n in &r.notes {
        out!(o, "note: {n}");
    }
    for j in &r.jobs {
        out!(o);
        print_job(o, j, now);
    }
    if !r.media.is_empty() {
        out!(o);
        print_media(o, &r.media, now);
    }
}

fn print_job(o: &mut String, j: &JobStatus, now: i64) {
    out!(o, "job {}: {}", j.name, j.level);
    let rpo = match j.rpo {
        Some(rpo) => format!(
            "rpo {}: {}",
            timefmt::format_duration(rpo),
            j.rpo_state.as_str()
        ),
        None => "no rpo".into(),
    };
    match &j.newest {
        Some(s) => out!(
            o,
            "  newest    {} of {}, {} old ({rpo}){}",
            s.id.short(),
            timefmt::format_rfc3339(s.time),
            timefmt::format_age(s.age),
            s.bytes
                .map(|b| format!(", {}", size(b)))
                .unwrap_or_default()
        ),
        None => out!(o, "  newest    none ({rpo})"),
    }
    match &j.last_run {
        Some(run) => out!(
            o,
            "  last run  {}, began {}{}",
            run.outcome,
            ago(Some(run.started), now),
            run.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
        None => out!(o, "  last run  none"),
    }
    for d in &j.digits {
        let mark = match d.state {
            DigitState::Ok => "ok",
            DigitState::Short => "SHORT",
            DigitState::Unknown => "UNKNOWN",
        };
        let figure = if d.name == "drill" && d.want == 0 {
            "off".to_string()
        } else {
            format!("{}/{}", d.have, d.want)
        };
        out!(
            o,
            "  {:<9} {figure:<5} {mark}{}",
            d.name,
            d.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        );
    }
    if j.pinned {
        print_pinned(o, j);
    }
    if !j.copies.is_empty() {
        out!(
            o,
            "  {:<14} {:<5} {:<8} {:<11} {:<17} {:<17} RESTORE",
            "COPY",
            "KIND",
            "WHERE",
            "PRESENT",
            "VERIFIED",
            "DRILLED"
        );
        for c in &j.copies {
            print_copy(o, c, now);
        }
    }
    for n in &j.notes {
        out!(o, "  note: {n}");
    }
}

/// A pinned job's line: its newest snapshot is on every enrolled medium, or which lack it.
fn print_pinned(o: &mut String, j: &JobStatus) {
    if j.newest.is_none() {
        out!(o, "  {:<9} no snapshot of this job yet", "pinned");
    } else if j.pinned_missing.is_empty() {
        out!(o, "  {:<9} ok: on every enrolled medium", "pinned");
    }
    for g in &j.pinned_missing {
        out!(o, "  {:<9} MISSING: {}", "pinned", g.reason);
    }
}

fn drilled(d: Option<&status::DrillSummary>, now: i64) -> String {
    match d {
        None => "never".into(),
        Some(d) if d.outcome == DrillOutcome::Ok => ago(Some(d.time), now),
        Some(d) => format!("{} ({})", ago(Some(d.time), now), d.outcome),
    }
}

fn print_copy(o: &mut String, c: &CopyStatus, now: i64) {
    let present = if c.medium_id.is_none() {
        "online"
    } else {
        presence(c.presence)
    };
    let verified = if c.medium_id.is_none() {
        "-".to_string()
    } else {
        ago(c.verified, now)
    };
    out!(
        o,
        "  {:<14} {:<5} {:<8} {:<11} {:<17} {:<17} {}{}",
        c.place,
        c.kind,
        c.location,
        present,
        verified,
        drilled(c.last_drill.as_ref(), now),
        duration_of(c.rto_seconds),
        c.note
            .as_deref()
            .map(|n| format!("  ({n})"))
            .unwrap_or_default()
    );
}

fn print_media(o: &mut String, media: &[MediumStatus], now: i64) {
    out!(
        o,
        "{:<14} {:<5} {:<10} {:<8} {:<11} {:<17} {:<17} {:<17} {:<17} {:>5} {:>10} {:>10} {:<8} STATUS",
        "MEDIUM",
        "KIND",
        "POOL",
        "WHERE",
        "PRESENT",
        "LAST SEEN",
        "LAST WRITTEN",
        "LAST VERIFIED",
        "LAST DRILLED",
        "SNAPS",
        "SIZE",
        "FREE",
        "RESTORE"
    );
    for m in media {
        let mut flags = Vec::new();
        if m.rotation_due {
            flags.push("due for rotation");
        }
        if m.stale {
            flags.push("stale");
        }
        if m.ledger_lost {
            flags.push("ledger lost");
        }
        if m.wants_tape {
            flags.push("full: load a tape");
        }
        if !m.pinned_missing.is_empty() {
            flags.push("lacks pinned");
        }
        if flags.is_empty() {
            flags.push("ok");
        }
        out!(
        o,
            "{:<14} {:<5} {:<10} {:<8} {:<11} {:<17} {:<17} {:<17} {:<17} {:>5} {:>10} {:>10} {:<8} {}",
            m.label,
            m.kind,
            m.pool,
            m.location,
            presence(m.presence),
            ago(m.last_seen, now),
            ago(m.last_written, now),
            ago(m.last_verified, now),
            drilled(m.last_drill.as_ref(), now),
            m.snapshots,
            size(m.bytes.max(0) as u64),
            m.free_bytes
                .map(|f| size(f.max(0) as u64))
                .unwrap_or_else(|| "unknown".into()),
            duration_of(m.rto_seconds),
            flags.join(", ")
        );
    }
    for m in media {
        for n in &m.notes {
            out!(o, "  {}: {n}", m.label);
        }
    }
}
