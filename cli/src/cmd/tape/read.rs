//! `bakfs tape scan` and `bakfs tape restore`: reading a cartridge, with or without the catalog.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};
use bakfs_core::repo::Repository;
use bakfs_tape::backend::{OnTape, TapeBackend};
use bakfs_tape::layout;

use super::args::{DriveArg, TapeRestoreArgs};
use super::{loaded, open};
use crate::context::Ctx;
use crate::progress::mib;

/// Where every file of the cartridge's media set is, as the catalog knows it: the other
/// cartridges first, so that a file on several is read from the one in the drive.
fn set_files(ctx: &Ctx, medium_id: &str) -> Result<Vec<OnTape>> {
    let cat = ctx.catalog()?;
    let media = cat.media()?;
    let Some(m) = media.iter().find(|m| m.id.to_hex() == medium_id) else {
        return Ok(Vec::new());
    };
    let members = match &m.tape {
        Some(t) => cat.tape_set(&t.set)?,
        None => vec![m.clone()],
    };
    let mut v = Vec::new();
    for c in members
        .iter()
        .filter(|c| c.id != m.id)
        .chain(std::iter::once(m))
    {
        for f in cat.tape_files(&c.id)? {
            v.push(OnTape {
                placed: f.into(),
                cartridge: c.label.clone(),
            });
        }
    }
    Ok(v)
}

/// The tapes in the drive as a repository: the catalog's positions for the cartridge's whole
/// media set when it knows the cartridge, else the cartridge alone after a scan. Files read
/// are staged in the directory `staging` names for the label.
pub(crate) fn open_tapes(
    ctx: &Ctx,
    d: &DriveArg,
    staging: impl FnOnce(&layout::Label) -> PathBuf,
) -> Result<(Arc<TapeBackend>, layout::Label)> {
    let (spec, mut drive) = open(ctx, d)?;
    loaded(&spec, &mut drive)?;
    let label = layout::read_label(drive.tape())?;
    let staging = staging(&label);
    let mut entries = set_files(ctx, &label.medium_id)?;
    if entries.is_empty() {
        tracing::info!(
            "reading {} to find its files (the catalog has none of them)",
            label.label
        );
        entries = layout::scan(drive.tape())?
            .trusted()
            .into_iter()
            .map(|p| OnTape {
                placed: p.clone(),
                cartridge: label.label.clone(),
            })
            .collect();
    }
    if entries.is_empty() {
        bail!("{} holds no closed job: nothing to restore", label.label);
    }
    let backend = TapeBackend::new(drive, &label.label, &spec.to_string(), entries, &staging)?;
    Ok((Arc::new(backend), label))
}

/// What the restore lost to the tapes: each damaged entry, where it is, and the snapshots on
/// the set that need it (as the catalog knows them).
fn damage_report(ctx: &Ctx, backend: &TapeBackend) -> Vec<String> {
    let damaged = backend.damaged();
    if damaged.is_empty() {
        return Vec::new();
    }
    let Ok(cat) = ctx.catalog() else {
        return Vec::new();
    };
    let media = cat.media().unwrap_or_default();
    damaged
        .iter()
        .map(|(t, why)| {
            let p = &t.placed;
            let mut costs: Vec<String> = Vec::new();
            if p.entry.kind == bakfs_core::repo::backend::FileKind::Pack {
                let Ok(pack) = bakfs_core::format::id::PackId::from_hex(&p.entry.name) else {
                    return format!("damaged on tape {}: {why}", t.cartridge);
                };
                for m in media.iter().filter(|m| m.tape.is_some()) {
                    for (snap, packs) in cat.medium_packs_by_snapshot(&m.id).unwrap_or_default() {
                        if packs.contains(&pack) {
                            costs.push(snap.short());
                        }
                    }
                }
            }
            costs.sort();
            costs.dedup();
            let cost = if costs.is_empty() {
                "the catalog knows no snapshot that needs it".to_string()
            } else {
                format!("it costs snapshot(s) {}", costs.join(", "))
            };
            format!("damaged on tape {}: {why}; {cost}", t.cartridge)
        })
        .collect()
}

pub fn restore(ctx: &Ctx, a: TapeRestoreArgs) -> Result<u8> {
    // The given directory, or one per media set in the state directory, removed afterwards.
    let remove = a.staging.is_none();
    let staging_for = |l: &layout::Label| match &a.staging {
        Some(d) => d.clone(),
        None => ctx.state_dir().join("tape-staging").join(&l.media_set),
    };
    let (backend, label) = open_tapes(ctx, &a.drive, staging_for)?;
    let staging = staging_for(&label);
    let repo = Repository::open(backend.clone(), &ctx.password()?)?;
    let r = crate::cmd::restore::restore_from(ctx, &repo, a.restore);
    drop(repo);
    let reads = backend.reads();
    let files: std::collections::BTreeSet<u64> = reads.iter().map(|p| p.at.file).collect();
    let bytes: u64 = reads.iter().map(|p| p.entry.size).sum();
    tracing::info!(
        "read {} repository files ({}) from {} of {}'s tape files: {:?}",
        reads.len(),
        mib(bytes),
        files.len(),
        label.label,
        files
    );
    for line in damage_report(ctx, &backend) {
        eprintln!("{line}");
    }
    // A restore cut short keeps what it read, for the next try (another cartridge loaded).
    if remove && r.is_ok() {
        let _ = std::fs::remove_dir_all(&staging);
    } else if r.is_err() {
        eprintln!("what was read from tape is kept in {}", staging.display());
    }
    r
}
