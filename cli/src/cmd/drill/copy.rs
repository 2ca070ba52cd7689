//! The copy a drill restores from, and opening it alone: the primary repository, or a medium's
//! own repository found by `--medium-path`, an existing mount of its filesystem, mounted
//! read-only in the sandbox, or a bucket's location.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use bakfs_core::catalog::{Catalog, MediumRecord, NewestSnapshot};
use bakfs_core::drill::Sandbox;
use bakfs_core::format::id::{MediumId, RepoId};
use bakfs_core::format::Snapshot;
use bakfs_core::repo::backend::{Location, S3Backend};
use bakfs_core::repo::Repository;
use bakfs_core::{medium, ErrorKind};
use bakfs_host::mounts;

use crate::args::DrillArgs;
use crate::context::Ctx;

/// The copy a drill restores from.
pub enum Source {
    Primary(RepoId),
    Medium(Box<MediumRecord>),
}

impl Source {
    pub fn repo_id(&self) -> RepoId {
        match self {
            Source::Primary(id) => *id,
            Source::Medium(m) => m.repo_id,
        }
    }

    /// `primary`, or the medium's label.
    pub fn label(&self) -> &str {
        match self {
            Source::Primary(_) => "primary",
            Source::Medium(m) => &m.label,
        }
    }

    /// As a sentence says it: `the primary`, or the medium's label.
    pub fn name(&self) -> String {
        match self {
            Source::Primary(_) => "the primary".into(),
            Source::Medium(_) => self.label().into(),
        }
    }

    /// The medium's id; `None` for the primary (as the catalog's drills record it).
    pub fn medium_id(&self) -> Option<MediumId> {
        match self {
            Source::Primary(_) => None,
            Source::Medium(m) => Some(m.id),
        }
    }

    /// The snapshots this copy holds, as the catalog knows them (a medium's: verified there).
    pub fn snapshots(&self, cat: &Catalog) -> Result<Vec<NewestSnapshot>> {
        Ok(match self {
            Source::Primary(id) => cat
                .snapshots(id)?
                .into_iter()
                .map(NewestSnapshot::from)
                .collect(),
            Source::Medium(m) => cat
                .medium_snapshots(&m.id)?
                .into_iter()
                .map(NewestSnapshot::from)
                .collect(),
        })
    }
}

/// A medium the drill mounted, unmounted when dropped.
pub struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = mounts::unmount(&self.0) {
            tracing::warn!("unmounting {}: {e}", self.0.display());
        }
    }
}

pub fn source_of(ctx: &Ctx, cat: &Catalog, a: &DrillArgs) -> Result<Source> {
    let by_path = match &a.medium_path {
        Some(p) => Some(medium::read_identity(&medium_dir(p))?),
        None => None,
    };
    let rec = match (&a.medium, &by_path) {
        (None, None) => {
            return match crate::cmd::status::repository(ctx, cat)? {
                Ok(id) => Ok(Source::Primary(id)),
                Err(why) => Err(anyhow!("{why}")),
            }
        }
        (Some(label), _) => cat
            .medium_by_label(label)?
            .ok_or_else(|| anyhow!("no medium is labelled {label:?} (`bakfs media list`)"))?,
        (None, Some(i)) => cat
            .media()?
            .into_iter()
            .find(|m| m.id.to_hex() == i.medium_id)
            .ok_or_else(|| {
                anyhow!(
                    "medium {} ({}) is not enrolled in this catalog",
                    i.label,
                    i.medium_id
                )
            })?,
    };
    if let Some(i) = by_path.filter(|i| i.medium_id != rec.id.to_hex()) {
        bail!(
            "the medium at --medium-path is {}, not {}",
            i.label,
            rec.label
        );
    }
    Ok(Source::Medium(Box::new(rec)))
}

/// The bakfs directory of a medium given by its filesystem's root or by the directory itself.
fn medium_dir(p: &Path) -> PathBuf {
    let inner = p.join(medium::DIR);
    if inner.join(medium::IDENTITY).exists() {
        inner
    } else {
        p.to_path_buf()
    }
}

/// Opens the copy alone, as a new machine would: for a medium, its own repository (found by
/// --medium-path, an existing mount or mounted read-only in the sandbox) with only the password.
pub fn open(
    ctx: &Ctx,
    source: &Source,
    a: &DrillArgs,
    sb: &Sandbox,
    mounted: &mut Option<Mounted>,
) -> Result<Repository> {
    let repo = match source {
        Source::Primary(_) => ctx.open_repo()?,
        // A tape is read in the drive (`--drive`, else the configuration's first), staged in
        // the sandbox: the cartridge in it must be this one.
        Source::Medium(m) if m.tape.is_some() => {
            let drive = crate::cmd::tape::args::DriveArg {
                drive: a.drive.clone(),
            };
            let (backend, label) = crate::cmd::tape::open_tapes(ctx, &drive, |_| sb.staging())?;
            if label.medium_id != m.id.to_hex() {
                bail!(
                    "load {}: the drive holds cartridge {}",
                    m.label,
                    label.label
                );
            }
            tracing::info!("restoring from tape {}", m.label);
            Repository::open(backend, &ctx.password()?)?
        }
        // A bucket is read where it is, with the access keys of the environment.
        Source::Medium(m) if m.bucket.is_some() && a.medium_path.is_none() => open_bucket(ctx, m)?,
        Source::Medium(m) => {
            let dir = match (&a.medium_path, &m.share) {
                (Some(p), _) => medium_dir(p),
                // A share is read where it is mounted; the drill never mounts one.
                (None, Some(share)) => {
                    if bakfs_host::mountinfo::mount_at(&share.path)?.is_none() {
                        bail!(
                            "mount {}: nothing is mounted on {}",
                            m.label,
                            share.path.display()
                        );
                    }
                    share.path.join(medium::DIR)
                }
                (None, None) => {
                    let dev = mounts::device_by_uuid(&m.fs_uuid).ok_or_else(|| {
                        anyhow!(
                            "insert {}: the medium (filesystem {}) is not plugged in",
                            m.label,
                            m.fs_uuid
                        )
                    })?;
                    match mounts::mounted_at(&dev) {
                        Some(mp) => mp.join(medium::DIR),
                        None => {
                            let mp = sb.mount_point();
                            mounts::mount_read_only(&dev, &m.fs_type, &mp).map_err(|e| {
                                let busy = matches!(&e, medium::MediumError::Io { err, .. }
                                    if err.raw_os_error() == Some(nix::libc::EBUSY));
                                anyhow!(
                                    "mounting {} ({}) read-only: {e}{}",
                                    m.label,
                                    dev.display(),
                                    if busy {
                                        " (it is mounted read-write elsewhere, bakfs-mediad's \
                                         own mount perhaps: wait for `safe to remove`, or give \
                                         --medium-path)"
                                    } else {
                                        ""
                                    }
                                )
                            })?;
                            *mounted = Some(Mounted(mp.clone()));
                            mp.join(medium::DIR)
                        }
                    }
                }
            };
            let id = medium::read_identity(&dir)?;
            if id.medium_id != m.id.to_hex() {
                bail!(
                    "{} holds medium {}, not {}",
                    dir.display(),
                    id.label,
                    m.label
                );
            }
            tracing::info!("restoring from {} at {}", m.label, dir.display());
            let loc = Location::parse(&dir).map_err(|e| anyhow!(e))?;
            Repository::open(loc.backend()?, &ctx.password()?)?
        }
    };
    if repo.id() != source.repo_id() {
        bail!(
            "{} is repository {}, not {}",
            source.name(),
            repo.id().short(),
            source.repo_id().short()
        );
    }
    Ok(repo)
}

/// A bucket enrolled as a medium, opened alone: its identity must be this medium's.
fn open_bucket(ctx: &Ctx, m: &MediumRecord) -> Result<Repository> {
    let Some(loc) = m.bucket.clone() else {
        bail!("{} is not a bucket", m.label);
    };
    let io = |e| bakfs_core::Error::io(&loc, e);
    let backend = S3Backend::connect(&loc)?;
    let raw = backend.read_note(medium::IDENTITY).map_err(io)?;
    let id = medium::parse_identity(&raw, medium::IDENTITY.as_ref())?;
    if id.medium_id != m.id.to_hex() {
        bail!("{loc} holds medium {}, not {}", id.label, m.label);
    }
    tracing::info!("restoring from {} at {loc}", m.label);
    Ok(Repository::open(Arc::new(backend), &ctx.password()?)?)
}

/// The snapshot in the opened copy. A medium that lacks one the catalog says it holds is
/// damaged; the primary lacking one means the catalog is behind.
pub fn find(repo: &Repository, source: &Source, want: &NewestSnapshot) -> Result<Snapshot> {
    let hex = want.snapshot_id.to_hex();
    match repo.find_snapshot(&hex) {
        Ok((_, s)) => Ok(s),
        Err(e) if e.kind() == ErrorKind::NotFound => match source {
            Source::Medium(m) => Err(bakfs_core::Error::damaged(
                format!("snapshot {}", want.snapshot_id.short()),
                format!(
                    "the catalog records it on {}, which does not hold it",
                    m.label
                ),
            )
            .into()),
            Source::Primary(_) => Err(anyhow!(
                "snapshot {} is not in the repository: run `bakfs catalog rebuild`",
                want.snapshot_id.short()
            )),
        },
        Err(e) => Err(e.into()),
    }
}
