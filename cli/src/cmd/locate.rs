//! `bakfs locate`: every stored version of a file and where its copies are, from the catalog
//! alone (no password, no repository read).

use std::fmt::Write as _;
use std::io::Write as _;

use anyhow::{bail, Result};
use bakfs_core::catalog::{Catalog, Presence, Unrecorded};
use bakfs_core::locate::{self, Copy, Located, SnapRef, LISTING_LIMIT};
use bakfs_core::timefmt;

use crate::args::LocateArgs;
use crate::context::Ctx;
use crate::exit;

pub fn run(ctx: &Ctx, a: LocateArgs) -> Result<u8> {
    let path = bakfs_core::backup::normalize(&std::path::absolute(&a.path)?);
    let path = path.to_string_lossy().into_owned();
    let db = ctx.state_dir().join("catalog.db");
    if !db.exists() {
        bail!(
            "no catalog at {}: nothing was recorded with this state directory",
            db.display()
        );
    }
    let cat = Catalog::open(&db)?;
    let repo = match super::status::repository(ctx, &cat)? {
        Ok(r) => r,
        Err(why) => bail!("{why}"),
    };
    let l = locate::locate(&cat, &repo, &path, a.at)?;
    if ctx.global.json {
        ctx.print_json(&l)?;
    } else {
        let mut text = String::new();
        print(&mut text, &l);
        let mut o = String::with_capacity(text.len());
        for line in text.lines() {
            o.push_str(line.trim_end());
            o.push('\n');
        }
        match std::io::stdout().lock().write_all(o.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
            _ => {}
        }
    }
    if !l.found() {
        eprintln!("bakfs: {}", not_found(&l));
    }
    Ok(if l.found() { exit::OK } else { exit::ERROR })
}

/// Why nothing was found, in words.
fn not_found(l: &Located) -> String {
    let what = match l.at_ns {
        Some(at) => format!(
            "{}: no recorded snapshot at or before {} holds it",
            l.path,
            timefmt::format_rfc3339(at)
        ),
        None => format!("{}: not found in any recorded snapshot", l.path),
    };
    match unrecorded(&l.unrecorded) {
        Some(why) => format!("{what}; {why}"),
        None => what,
    }
}

/// The note on snapshots whose files are not recorded, if any.
fn unrecorded(u: &Unrecorded) -> Option<String> {
    let mut parts = vec![];
    if u.in_primary > 0 {
        parts.push(format!(
            "the files of {} snapshot(s) in the repository are not recorded: run bakfs catalog rebuild",
            u.in_primary
        ));
    }
    if u.only_on_media > 0 {
        parts.push(format!(
            "the files of {} snapshot(s) held only on media are not recorded (the repository no longer has them)",
            u.only_on_media
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn snap(r: &SnapRef) -> String {
    format!("{} of {}", r.id.short(), timefmt::format_rfc3339(r.time_ns))
}

/// `512 B`, `11.4 MiB`.
fn size(b: u64) -> String {
    let mut v = b as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 {
            return if unit == "B" {
                format!("{b} B")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1024.0;
    }
    format!("{v:.1} TiB")
}

fn copy_line(o: &mut String, c: &Copy) {
    let dash = || "-".to_string();
    let present = match (c.medium_id, c.presence) {
        (None, _) => "online".to_string(),
        (Some(_), Some(Presence::PluggedIn)) => "plugged in".into(),
        (Some(_), Some(Presence::Removed)) => "removed".into(),
        (Some(_), None) => "not known".into(),
    };
    let _ = writeln!(
        o,
        "  {:<14} {:<5} {:<8} {:<11} {:>5}  {:<33} {:<20} {}",
        c.place,
        c.kind.map_or_else(dash, |k| k.to_string()),
        c.location.map_or_else(dash, |l| l.to_string()),
        present,
        c.snapshots,
        snap(&c.newest),
        c.verified_ns.map_or_else(dash, timefmt::format_rfc3339),
        c.action.clone().unwrap_or_default()
    );
}

/// The text report.
fn print(o: &mut String, l: &Located) {
    if !l.below.is_empty() {
        let _ = writeln!(
            o,
            "{}: a directory, {} recorded files below it",
            l.path,
            l.below.len()
        );
        let _ = writeln!(
            o,
            "{:>8} {:>9}  {:<20}  PATH",
            "VERSIONS", "SNAPSHOTS", "NEWEST"
        );
        for p in &l.below {
            let _ = writeln!(
                o,
                "{:>8} {:>9}  {:<20}  {}",
                p.versions,
                p.snapshots,
                timefmt::format_rfc3339(p.newest_ns),
                p.path
            );
        }
        if l.below.len() >= LISTING_LIMIT {
            let _ = writeln!(o, "(the first {LISTING_LIMIT} only)");
        }
    }
    if !l.versions.is_empty() {
        let n: usize = l.versions.iter().map(|v| v.snapshots).sum();
        match (&l.current, l.at_ns) {
            (Some(cur), Some(at)) => {
                let _ = writeln!(
                    o,
                    "{}: the version current at {}, held by snapshot {}",
                    l.path,
                    timefmt::format_rfc3339(at),
                    snap(cur)
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "{}: {} version(s) in {n} snapshot(s)",
                    l.path,
                    l.versions.len()
                );
            }
        }
    }
    for (i, v) in l.versions.iter().enumerate() {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "version {}  content {}  {}  mtime {}",
            i + 1,
            v.content.short(),
            size(v.size),
            timefmt::format_rfc3339(v.mtime_ns)
        );
        let _ = writeln!(
            o,
            "  {} snapshot(s): first {}, last {}",
            v.snapshots,
            snap(&v.first),
            snap(&v.last)
        );
        if v.copies.is_empty() {
            let _ = writeln!(o, "  no copy holds these snapshots any more");
            continue;
        }
        let _ = writeln!(
            o,
            "  {:<14} {:<5} {:<8} {:<11} {:>5}  {:<33} {:<20}",
            "COPY", "KIND", "WHERE", "PRESENT", "SNAPS", "NEWEST", "VERIFIED"
        );
        for c in &v.copies {
            copy_line(o, c);
        }
    }
    if l.found() {
        if let Some(note) = unrecorded(&l.unrecorded) {
            let _ = writeln!(o, "\nnote: {note}");
        }
    }
}
