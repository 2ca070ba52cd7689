//! `bakfs tape scan`: a cartridge read without the catalog, and what the catalog knows of it
//! rebuilt from it: the cartridge itself (`--enroll`), where its files are, and with `--verify`
//! what it holds, read back.

use std::collections::HashSet;

use anyhow::{bail, Result};
use bakfs_core::catalog::{
    Catalog, MediumFile, MediumKind, MediumLocation, MediumRecord, MediumSnapshot, Presence, Tape,
    TapePlace, TapeStatus, Verification,
};
use bakfs_core::format::id::{MediumId, RepoId};
use bakfs_core::repo::backend::FileKind;
use bakfs_core::timefmt;
use bakfs_tape::layout::{self, Label, Placed, Scan};
use bakfs_tape::TapeDrive;
use serde_json::json;

use super::args::ScanArgs;
use super::{loaded, open};
use crate::context::Ctx;
use crate::progress::mib;

/// The medium record a label describes, enrolled as it would have been.
fn from_label(l: &Label, s: &Scan, now: i64) -> Result<MediumRecord> {
    let id = MediumId::from_hex(&l.medium_id)
        .map_err(|e| anyhow::anyhow!("the label's medium id: {e}"))?;
    let repo = RepoId::from_hex(&l.repo_id)
        .map_err(|e| anyhow::anyhow!("the label's repository id: {e}"))?;
    // The set went on on another cartridge after this one's last closed job: it is full.
    let full = s
        .jobs
        .values()
        .flat_map(|j| &j.catalogs)
        .filter(|c| c.closing)
        .max_by_key(|c| c.closed_ns)
        .is_some_and(|c| c.continued);
    Ok(MediumRecord {
        fs_type: "tape".into(),
        pool: l.pool.clone(),
        retention: bakfs_core::forget::KeepPolicy {
            last: Some(3),
            ..Default::default()
        },
        tape: Some(Tape {
            set: l.media_set.clone(),
            seq: l.set_seq,
            status: if full {
                TapeStatus::Full
            } else {
                TapeStatus::Writable
            },
            place: TapePlace::InDrive,
        }),
        ..MediumRecord::enrolled(
            id,
            &l.label,
            repo,
            &format!("tape-{}", l.medium_id),
            MediumKind::Tape,
            MediumLocation::Offsite,
            now,
        )
    })
}

/// Reads every file back and records what matched: files, and the snapshots the catalog knows
/// whose manifest matched and whose packs the set holds. Returns (files, snapshots) recorded.
fn verify(
    cat: &mut Catalog,
    m: &MediumRecord,
    drive: &mut dyn TapeDrive,
    trusted: &[Placed],
) -> Result<(usize, usize)> {
    let mut good: Vec<&Placed> = Vec::new();
    for p in trusted {
        match layout::read_entry(drive, p, &mut std::io::sink()) {
            Ok(()) => good.push(p),
            Err(layout::ReadError::Tape(e)) => return Err(e.into()),
            Err(e) => eprintln!("read back: {e}"),
        }
    }
    let now = timefmt::now_ns();
    let files: Vec<MediumFile> = good
        .iter()
        .map(|p| MediumFile {
            kind: p.entry.kind,
            name: p.entry.name.clone(),
            size: i64::try_from(p.entry.size).unwrap_or(i64::MAX),
            verified_ns: now,
        })
        .collect();
    // The packs the set holds: on this cartridge, read back now, and on the others.
    let mut packs: HashSet<String> = good
        .iter()
        .filter(|p| p.entry.kind == FileKind::Pack)
        .map(|p| p.entry.name.clone())
        .collect();
    if let Some(t) = &m.tape {
        for c in cat.tape_set(&t.set)?.iter().filter(|c| c.id != m.id) {
            packs.extend(
                cat.tape_files(&c.id)?
                    .into_iter()
                    .filter(|f| f.kind == FileKind::Pack)
                    .map(|f| f.name),
            );
        }
    }
    let mut snapshots = Vec::new();
    for p in good.iter().filter(|p| p.entry.kind == FileKind::Snapshot) {
        let Ok(id) = bakfs_core::format::id::SnapshotId::from_hex(&p.entry.name) else {
            continue;
        };
        let Some(s) = cat.snapshot(&m.repo_id, &id)? else {
            eprintln!(
                "snapshot {} is on the tape but not in the catalog (`bakfs catalog rebuild`)",
                id.short()
            );
            continue;
        };
        let needs: Vec<_> = cat
            .snapshot_packs(&m.repo_id, &id)?
            .into_iter()
            .map(|r| r.id)
            .collect();
        if needs.is_empty() || !needs.iter().all(|n| packs.contains(&n.to_hex())) {
            eprintln!(
                "snapshot {}: not every pack it needs is on the set",
                id.short()
            );
            continue;
        }
        let ms = MediumSnapshot {
            snapshot_id: id,
            time_ns: s.time_ns,
            host: s.host.clone(),
            paths: s.paths.clone(),
            job: s.job.clone(),
            verified_ns: now,
        };
        snapshots.push((ms, needs));
    }
    cat.record_medium_verified(&m.id, &files, &snapshots, Verification::Reread, now)?;
    Ok((files.len(), snapshots.len()))
}

pub fn scan(ctx: &Ctx, a: &ScanArgs) -> Result<u8> {
    let (spec, mut drive) = open(ctx, &a.drive)?;
    loaded(&spec, &mut drive)?;
    let s = layout::scan(drive.tape())?;
    let trusted: Vec<Placed> = s.trusted().into_iter().cloned().collect();
    let bytes: u64 = trusted.iter().map(|p| p.entry.size).sum();
    let mut cat = ctx.catalog()?;
    let mut enrolled = cat
        .media()?
        .into_iter()
        .find(|m| m.id.to_hex() == s.label.medium_id);
    let mut newly = false;
    if enrolled.is_none() && a.enroll {
        let repo = bakfs_core::repo::read_config(ctx.location()?.backend()?.as_ref())?.id;
        if s.label.repo_id != repo.to_hex() {
            bail!(
                "{} belongs to repository {}, not this one ({})",
                s.label.label,
                s.label.repo_id,
                repo.to_hex()
            );
        }
        if let Some(other) = cat.medium_by_label(&s.label.label)? {
            bail!(
                "label {} is taken by a {} medium here (`bakfs media forget {}` first)",
                s.label.label,
                other.kind,
                other.label
            );
        }
        let rec = from_label(&s.label, &s, timefmt::now_ns())?;
        cat.enroll_medium(&rec)?;
        cat.set_medium_presence(&rec.id, Presence::PluggedIn, timefmt::now_ns())?;
        enrolled = Some(rec);
        newly = true;
    }
    // Where its files are, and with --verify what it holds, for a cartridge this catalog knows.
    let mut held = None;
    if let Some(m) = &enrolled {
        cat.record_tape_files(
            &m.id,
            &trusted.iter().map(Placed::to_catalog).collect::<Vec<_>>(),
        )?;
        if a.verify {
            held = Some(verify(&mut cat, m, drive.tape(), &trusted)?);
        }
    }
    let unclosed = s.unclosed();
    if ctx.global.json {
        ctx.print_json(&json!({
            "label": s.label, "tape_files": s.files, "jobs": s.jobs.len(),
            "unclosed_jobs": unclosed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "files": trusted.iter().map(Placed::to_catalog).collect::<Vec<_>>(), "bytes": bytes,
            "problems": s.problems, "enrolled": enrolled.is_some(), "newly_enrolled": newly,
            "verified": held.map(|(f, n)| json!({"files": f, "snapshots": n})),
        }))?;
    } else {
        let l = &s.label;
        println!(
            "{}: bakfs tape of repository {}, pool {}, cartridge {} of media set {}",
            l.label,
            &l.repo_id[..l.repo_id.len().min(12)],
            l.pool,
            l.set_seq + 1,
            &l.media_set[..l.media_set.len().min(12)]
        );
        println!(
            "  {} tape files, {} jobs ({} never closed: not trusted), {} repository files, {}",
            s.files,
            s.jobs.len(),
            unclosed.len(),
            trusted.len(),
            mib(bytes)
        );
        for p in &s.problems {
            println!("  problem: {p}");
        }
        match (&enrolled, held) {
            (Some(m), Some((f, n))) => println!("  {}: recorded where its files are; read back {f} files, {n} snapshots held", m.label),
            (Some(m), None) => println!("  {}{}: recorded where its files are (--verify reads them back and records what it holds)", m.label, if newly { " enrolled" } else { "" }),
            (None, _) => println!("  not enrolled in this catalog: --enroll adds it; restore from it with `bakfs tape restore`"),
        }
    }
    Ok(if s.problems.is_empty() {
        crate::exit::OK
    } else {
        crate::exit::DAMAGED
    })
}
