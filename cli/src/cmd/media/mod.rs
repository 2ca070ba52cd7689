//! `bakfs media`: enroll media for bakfs-mediad and read their ledger from the catalog.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use bakfs_core::catalog::{Catalog, MediumKind, MediumRecord, Share, ShareMount};
use bakfs_core::forget::KeepPolicy;
use bakfs_core::format::id::{MediumId, RepoId};
use bakfs_core::medium::{self, Identity};
use bakfs_core::timefmt;
use bakfs_host::mounts;
use serde_json::json;

use crate::args::{EnrollArgs, EnrollShareArgs, MediaCmd};

mod bucket;
use crate::context::Ctx;
use crate::progress::mib;

pub fn run(ctx: &Ctx, cmd: MediaCmd) -> Result<u8> {
    match cmd {
        MediaCmd::Enroll(a) => enroll(ctx, a),
        MediaCmd::EnrollShare(a) => enroll_share(ctx, a),
        MediaCmd::EnrollBucket(a) => bucket::enroll(ctx, a),
        MediaCmd::List => list(ctx),
        MediaCmd::Show { label } => show(ctx, &label),
        MediaCmd::SetLocation { label, location } => {
            if !ctx.catalog()?.set_medium_location(&label, location)? {
                bail!("no medium labelled {label:?} (see `bakfs media list`)");
            }
            done(ctx, &label, &format!("{label} is {location}"))
        }
        MediaCmd::SetRotateEvery { label, every } => {
            let d = match every.as_str() {
                "pool" => None,
                e => Some(timefmt::parse_duration(e)?),
            };
            if !ctx.catalog()?.set_medium_rotate_every(&label, d)? {
                bail!("no medium labelled {label:?} (see `bakfs media list`)");
            }
            let msg = match d {
                Some(d) => format!(
                    "{label} is due for rotation {} after its last",
                    timefmt::format_duration(d)
                ),
                None => format!("{label} rotates as its pool says"),
            };
            done(ctx, &label, &msg)
        }
        MediaCmd::Forget { label } => {
            let mut cat = ctx.catalog()?;
            let repo = cat.medium_by_label(&label)?.map(|m| m.repo_id);
            if !cat.forget_medium(&label)? {
                bail!("no medium labelled {label:?} (see `bakfs media list`)");
            }
            // The file rows of snapshots only this medium held go with it.
            if let Some(Err(e)) = repo.map(|r| cat.prune_files(&r)) {
                tracing::warn!("catalog: file rows not pruned: {e}");
            }
            done(
                ctx,
                &label,
                &format!("{label} forgotten (the files on it are left alone)"),
            )
        }
    }
}

pub(crate) fn done(ctx: &Ctx, label: &str, msg: &str) -> Result<u8> {
    if ctx.global.json {
        ctx.print_json(&json!({ "label": label, "ok": true }))?;
    } else {
        println!("{msg}");
    }
    Ok(crate::exit::OK)
}

/// udev's properties of a device, if udev knows it (`udevadm info`).
fn udev_props(dev: &Path) -> Vec<(String, String)> {
    let Ok(out) = std::process::Command::new("udevadm")
        .args(["info", "--query=property", "--name"])
        .arg(dev)
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What every enrolment needs: the repository's id, the medium's own rotation period and its
/// retention (`--keep-last 3` when none is given).
pub(super) fn enrolment(
    ctx: &Ctx,
    rotate_every: Option<&str>,
    keep: &crate::args::KeepArgs,
) -> Result<(RepoId, Option<std::time::Duration>, KeepPolicy)> {
    let repo_id = bakfs_core::repo::read_config(ctx.location()?.backend()?.as_ref())?.id;
    let rotate_every = rotate_every.map(timefmt::parse_duration).transpose()?;
    let mut policy = keep.policy()?;
    if policy.is_empty() {
        policy.last = Some(3);
    }
    Ok((repo_id, rotate_every, policy))
}

/// The catalog, once it is known that `label` is free and that no enrolled medium is the new
/// one's place (`taken` says why one is).
pub(super) fn catalog_for_new(
    ctx: &Ctx,
    label: &str,
    taken: impl Fn(&MediumRecord) -> Option<String>,
) -> Result<Catalog> {
    let cat = ctx.catalog()?;
    if let Some(m) = cat.medium_by_label(label)? {
        bail!("label {label} is taken by medium {}", m.id.to_hex());
    }
    if let Some(why) = cat.media()?.iter().find_map(taken) {
        bail!("{why}");
    }
    Ok(cat)
}

/// The identity written onto a new medium.
pub(super) fn identity(id: MediumId, label: &str, repo_id: RepoId, now: i64) -> Identity {
    Identity {
        format: medium::IDENTITY_FORMAT,
        medium_id: id.to_hex(),
        label: label.to_string(),
        repo_id: repo_id.to_hex(),
        enrolled_ns: now,
    }
}

fn enroll(ctx: &Ctx, a: EnrollArgs) -> Result<u8> {
    let meta = std::fs::metadata(&a.device).with_context(|| a.device.display().to_string())?;
    if !meta.file_type().is_block_device() {
        bail!("{} is not a block device", a.device.display());
    }
    let (repo_id, rotate_every, policy) = enrolment(ctx, a.rotate_every.as_deref(), &a.keep)?;
    let fs = mounts::probe(&a.device)?;
    if !mounts::FS_TYPES.contains(&fs.fs_type.as_str()) {
        bail!(
            "{}: filesystem {} is not supported for media (use one of {})",
            a.device.display(),
            fs.fs_type,
            mounts::FS_TYPES.join(", ")
        );
    }
    let mut cat = ctx.catalog()?;
    if let Some(m) = cat.medium_by_label(&a.label)? {
        bail!(
            "label {} is taken by the medium with filesystem UUID {}",
            a.label,
            m.fs_uuid
        );
    }
    if let Some(m) = cat.medium_by_uuid(&fs.uuid)? {
        bail!(
            "{} (filesystem UUID {}) is already enrolled as {}",
            a.device.display(),
            fs.uuid,
            m.label
        );
    }
    let props = udev_props(&a.device);
    let prop = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
    if let Some(k @ (MediumKind::Share | MediumKind::Tape | MediumKind::ObjectStorage)) = a.kind {
        bail!("a block device is not a medium of kind {k}: `bakfs media enroll-share` enrolls a share, `enroll-bucket` a bucket, `bakfs tape label` a tape");
    }
    let kind = a.kind.unwrap_or_else(|| {
        if prop("ID_BUS").as_deref() == Some("usb") {
            MediumKind::Usb
        } else {
            MediumKind::Disk
        }
    });
    let now = timefmt::now_ns();
    let medium_id = MediumId::random();
    let ident = identity(medium_id, &a.label, repo_id, now);
    let mp = std::env::temp_dir().join(format!("bakfs-enroll-{}", std::process::id()));
    mounts::mount_private(&a.device, &fs.fs_type, &mp)?;
    let r = (|| -> Result<MediumRecord> {
        let root = medium::create(&mp, &ident)?;
        let rec = MediumRecord {
            fs_type: fs.fs_type.clone(),
            serial: prop("ID_SERIAL_SHORT").or_else(|| prop("ID_SERIAL")),
            pool: a.pool.clone(),
            capacity: i64::try_from(medium::capacity(&mp)?).unwrap_or(i64::MAX),
            retention: policy.clone(),
            last_seen_ns: Some(now),
            rotate_every,
            ..MediumRecord::enrolled(
                medium_id, &a.label, repo_id, &fs.uuid, kind, a.location, now,
            )
        };
        if let Err(e) = cat.enroll_medium(&rec) {
            let _ = std::fs::remove_file(root.join(medium::IDENTITY));
            let _ = std::fs::remove_dir(&root);
            return Err(e.into());
        }
        Ok(rec)
    })();
    nix::unistd::sync();
    let um = mounts::unmount(&mp);
    let _ = std::fs::remove_dir(&mp);
    let rec = r?;
    um?;
    if ctx.global.json {
        ctx.print_json(&medium_json(&cat, &rec)?)?;
    } else {
        println!(
            "enrolled {} ({} {}, filesystem {} {}, {}): bakfs-mediad fills it when it is plugged in",
            rec.label,
            rec.kind,
            rec.location,
            rec.fs_type,
            rec.fs_uuid,
            mib(rec.capacity as u64)
        );
    }
    Ok(crate::exit::OK)
}

/// Enrolls the share mounted at `a.path`: its identity goes into `bakfs/` there, as on a stick.
fn enroll_share(ctx: &Ctx, a: EnrollShareArgs) -> Result<u8> {
    // The real path: mediad compares it with the mount table, which has no symlinks.
    let path = std::fs::canonicalize(&a.path).with_context(|| a.path.display().to_string())?;
    if !std::fs::metadata(&path)?.is_dir() {
        bail!("{} is not a directory", path.display());
    }
    let Some(mount) = bakfs_host::mountinfo::mount_at(&path)? else {
        bail!(
            "nothing is mounted on {}: mount the share there first (bakfs never writes to a bare mount point, which is the local disk underneath)",
            path.display()
        );
    };
    let (repo_id, rotate_every, policy) = enrolment(ctx, a.rotate_every.as_deref(), &a.keep)?;
    let mut cat = catalog_for_new(ctx, &a.label, |m| {
        m.share
            .as_ref()
            .is_some_and(|s| s.path == path)
            .then(|| format!("{} is already enrolled as {}", path.display(), m.label))
    })?;
    let now = timefmt::now_ns();
    let medium_id = MediumId::random();
    let ident = identity(medium_id, &a.label, repo_id, now);
    let root = medium::create(&path, &ident)?;
    let rec = MediumRecord {
        fs_type: mount.fs_type.clone(),
        pool: a.pool.clone(),
        capacity: i64::try_from(medium::capacity(&path)?).unwrap_or(i64::MAX),
        retention: policy,
        last_seen_ns: Some(now),
        rotate_every,
        share: Some(Share {
            path: path.clone(),
            mount: a.source.map(|source| ShareMount {
                source,
                options: a.mount_options.unwrap_or_default(),
            }),
        }),
        ..MediumRecord::enrolled(
            medium_id,
            &a.label,
            repo_id,
            &Share::fs_uuid(&medium_id),
            MediumKind::Share,
            a.location,
            now,
        )
    };
    if let Err(e) = cat.enroll_medium(&rec) {
        let _ = std::fs::remove_file(root.join(medium::IDENTITY));
        let _ = std::fs::remove_dir(&root);
        return Err(e.into());
    }
    if ctx.global.json {
        ctx.print_json(&medium_json(&cat, &rec)?)?;
    } else {
        println!(
            "enrolled {} (share {} on {}, {} {}, {}): bakfs-mediad fills it whenever it is mounted",
            rec.label,
            mount.fs_type,
            path.display(),
            mount.source,
            rec.location,
            mib(rec.capacity as u64)
        );
    }
    Ok(crate::exit::OK)
}

pub(crate) fn when(ns: Option<i64>) -> String {
    ns.map(timefmt::format_rfc3339)
        .unwrap_or_else(|| "never".into())
}

pub(crate) fn medium_json(cat: &Catalog, m: &MediumRecord) -> Result<serde_json::Value> {
    let snaps = cat.medium_snapshots(&m.id)?;
    Ok(json!({
        "label": m.label, "id": m.id.to_hex(), "repo_id": m.repo_id.to_hex(), "kind": m.kind,
        "pool": m.pool, "location": m.location, "fs_uuid": m.fs_uuid, "fs_type": m.fs_type,
        "serial": m.serial, "capacity": m.capacity, "bytes": m.bytes, "retention": m.retention,
        "state": m.state, "message": m.message, "enrolled": timefmt::format_rfc3339(m.enrolled_ns),
        "last_seen": m.last_seen_ns.map(timefmt::format_rfc3339),
        "last_written": m.last_written_ns.map(timefmt::format_rfc3339),
        "last_verified": m.last_verified_ns.map(timefmt::format_rfc3339),
        "presence": m.presence, "presence_since": m.presence_ns.map(timefmt::format_rfc3339),
        "free_bytes": m.free_bytes, "free_measured": m.free_ns.map(timefmt::format_rfc3339),
        "rotate_every": m.rotate_every.map(timefmt::format_duration),
        "share": m.share, "tape": m.tape, "bucket": m.bucket,
        "snapshots": snaps.iter().map(|s| json!({
            "id": s.snapshot_id.to_hex(), "time": timefmt::format_rfc3339(s.time_ns),
            "host": s.host, "paths": s.paths, "job": s.job,
            "verified": timefmt::format_rfc3339(s.verified_ns),
        })).collect::<Vec<_>>(),
    }))
}

fn list(ctx: &Ctx) -> Result<u8> {
    let cat = ctx.catalog()?;
    let media = cat.media()?;
    if ctx.global.json {
        let v = media
            .iter()
            .map(|m| medium_json(&cat, m))
            .collect::<Result<Vec<_>>>()?;
        ctx.print_json(&v)?;
        return Ok(crate::exit::OK);
    }
    if media.is_empty() {
        println!("no media enrolled (see `bakfs media enroll --help`)");
        return Ok(crate::exit::OK);
    }
    println!(
        "{:<14} {:<14} {:<10} {:<8} {:>5} {:>12} {:<21} STATE",
        "LABEL", "KIND", "POOL", "WHERE", "SNAPS", "SIZE", "LAST WRITTEN"
    );
    for m in &media {
        let n = cat.medium_snapshots(&m.id)?.len();
        println!(
            "{:<14} {:<14} {:<10} {:<8} {:>5} {:>12} {:<21} {}",
            m.label,
            m.kind,
            m.pool,
            m.location,
            n,
            mib(m.bytes as u64),
            when(m.last_written_ns),
            m.state
        );
    }
    Ok(crate::exit::OK)
}

pub(crate) fn show(ctx: &Ctx, label: &str) -> Result<u8> {
    let cat = ctx.catalog()?;
    let Some(m) = cat.medium_by_label(label)? else {
        bail!("no medium labelled {label:?} (see `bakfs media list`)");
    };
    let (runs, total) = cat.medium_runs_and_count(&m.id, 5)?;
    if ctx.global.json {
        let mut v = medium_json(&cat, &m)?;
        v["runs"] = serde_json::to_value(&runs)?;
        v["runs_total"] = json!(total);
        ctx.print_json(&v)?;
        return Ok(crate::exit::OK);
    }
    println!("{} ({} {}, pool {})", m.label, m.kind, m.location, m.pool);
    println!(
        "  state:         {}{}",
        m.state,
        m.message
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default()
    );
    match (&m.share, &m.tape, &m.bucket) {
        (Some(s), _, _) => {
            println!(
                "  share:         {} on {}, {}",
                m.fs_type,
                s.path.display(),
                mib(m.capacity as u64)
            );
            if let Some(mnt) = &s.mount {
                println!("  mounted from:  {} (by bakfs-mediad)", mnt.source);
            }
        }
        (_, Some(t), _) => println!(
            "  tape:          {}, {} of media set {} (cartridge {} of it)",
            t.status,
            t.place,
            &t.set[..t.set.len().min(12)],
            t.seq + 1
        ),
        (_, _, Some(b)) => println!("  bucket:        {b}"),
        _ => println!(
            "  filesystem:    {} {}, {}",
            m.fs_type,
            m.fs_uuid,
            mib(m.capacity as u64)
        ),
    }
    println!("  retention:     {}", serde_json::to_string(&m.retention)?);
    println!("  holds:         {} of bakfs files", mib(m.bytes as u64));
    println!(
        "  plugged in:    {}",
        match m.presence {
            Some(p) => format!("{p} ({})", when(m.presence_ns)),
            None => "not known".into(),
        }
    );
    if let Some(free) = m.free_bytes {
        println!(
            "  free:          {} ({})",
            mib(free.max(0) as u64),
            when(m.free_ns)
        );
    }
    if let Some(d) = m.rotate_every {
        println!("  rotate every:  {}", timefmt::format_duration(d));
    }
    println!("  last seen:     {}", when(m.last_seen_ns));
    println!("  last written:  {}", when(m.last_written_ns));
    println!("  last verified: {}", when(m.last_verified_ns));
    let snaps = cat.medium_snapshots(&m.id)?;
    println!("  snapshots ({}):", snaps.len());
    for s in snaps {
        println!(
            "    {}  {}  {} {}",
            s.snapshot_id.short(),
            timefmt::format_rfc3339(s.time_ns),
            s.host,
            s.paths.join(" ")
        );
    }
    for r in runs {
        println!(
            "  run {}: {} ({} added, {} removed, {} written in {:.1} s, {:.1} MiB/s){}",
            timefmt::format_rfc3339(r.started_ns),
            r.outcome,
            r.snapshots_added,
            r.snapshots_removed,
            mib(r.bytes_written as u64),
            r.seconds,
            r.bytes_written as f64 / r.seconds.max(1e-9) / 1048576.0,
            r.message.map(|m| format!(": {m}")).unwrap_or_default()
        );
    }
    Ok(crate::exit::OK)
}
