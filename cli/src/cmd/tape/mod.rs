//! `bakfs tape`: label cartridges for a pool, list and show them, load and unload them, and
//! read them without the catalog (`scan`, `restore`: `read.rs`). bakfs-mediad does the
//! copying when an enrolled cartridge is loaded (docs/tape.md).

pub mod args;
mod read;
mod scan;

pub(crate) use read::open_tapes;

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bakfs_core::catalog::{MediumKind, MediumRecord, Presence, Tape, TapePlace, TapeStatus};
use bakfs_core::format::id::MediumId;
use bakfs_core::tape_pool::{self, PoolPolicy};
use bakfs_core::timefmt;
use bakfs_tape::layout::{self, ReadError, LABEL_FORMAT};
use bakfs_tape::{Drive, DriveSpec, TapeError};
use serde_json::json;

use crate::context::Ctx;
use crate::progress::mib;
use args::{DriveArg, LabelArgs, TapeCmd};

pub fn run(ctx: &Ctx, cmd: TapeCmd) -> Result<u8> {
    match cmd {
        TapeCmd::Label(a) => label(ctx, a),
        TapeCmd::List => list(ctx),
        TapeCmd::Show { label } => show(ctx, &label),
        TapeCmd::Mark {
            label,
            status,
            place,
        } => mark(ctx, &label, status, place),
        TapeCmd::Load { name, drive } => load(ctx, &drive, name.as_deref()),
        TapeCmd::Unload { drive } => unload(ctx, &drive),
        TapeCmd::Create {
            name,
            capacity,
            early_warning,
            drive,
        } => create(ctx, &drive, &name, &capacity, early_warning.as_deref()),
        TapeCmd::Scan(a) => scan::scan(ctx, &a),
        TapeCmd::Restore(a) => read::restore(ctx, a),
    }
}

/// The drive named by `--drive`, else the configuration's first.
fn spec(ctx: &Ctx, d: &DriveArg) -> Result<DriveSpec> {
    let name = match &d.drive {
        Some(n) => n.clone(),
        None => ctx.config.mediad.tape_drives.first().cloned().ok_or_else(|| {
            anyhow!("no tape drive given: use --drive (/dev/nst0 or virtual:DIR) or `[mediad] tape_drives` in the config")
        })?,
    };
    DriveSpec::parse(&name).map_err(|e| anyhow!(e))
}

/// Opens the drive, waiting a little while bakfs-mediad polls it.
fn open(ctx: &Ctx, d: &DriveArg) -> Result<(DriveSpec, Drive)> {
    let spec = spec(ctx, d)?;
    let start = Instant::now();
    loop {
        match spec.open() {
            Ok(drive) => return Ok((spec, drive)),
            Err(TapeError::Busy { .. }) if start.elapsed() < Duration::from_secs(15) => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e @ TapeError::Busy { .. }) => {
                bail!("{e} (bakfs-mediad writing to it?)")
            }
            Err(e) => bail!("{spec}: {e}"),
        }
    }
}

/// Fails unless a cartridge is in the drive and ready.
fn loaded(spec: &DriveSpec, drive: &mut Drive) -> Result<()> {
    let s = drive.tape().status()?;
    if !(s.loaded && s.online) {
        bail!("no cartridge is loaded in {spec} (`bakfs tape load`)");
    }
    Ok(())
}

fn label(ctx: &Ctx, a: LabelArgs) -> Result<u8> {
    let repo_id = bakfs_core::repo::read_config(ctx.location()?.backend()?.as_ref())?.id;
    let mut policy = a.keep.policy()?;
    if policy.is_empty() {
        policy.last = Some(3);
    }
    let mut cat = ctx.catalog()?;
    if let Some(m) = cat.medium_by_label(&a.label)? {
        bail!(
            "label {} is taken by a {} medium (`bakfs media forget {}` first)",
            a.label,
            m.kind,
            a.label
        );
    }
    let (spec, mut drive) = open(ctx, &a.drive)?;
    loaded(&spec, &mut drive)?;
    // What is on the cartridge now: only a blank one is labelled without --overwrite.
    let known = match layout::read_label(drive.tape()) {
        Err(ReadError::Blank) => None,
        Ok(l) => {
            let m = cat
                .media()?
                .into_iter()
                .find(|m| m.id.to_hex() == l.medium_id);
            if !a.overwrite {
                bail!(
                    "the cartridge holds bakfs tape {} (pool {}{}): --overwrite erases it",
                    l.label,
                    l.pool,
                    if m.is_some() { ", enrolled here" } else { "" }
                );
            }
            m
        }
        Err(ReadError::Tape(e)) => return Err(e.into()),
        Err(e) if a.overwrite => {
            tracing::info!("overwriting: {e}");
            None
        }
        Err(e) => bail!("{e}: --overwrite erases it"),
    };
    // The pool's newest set goes on, unless a new one is asked for.
    let pool_tapes: Vec<MediumRecord> = cat
        .media()?
        .into_iter()
        .filter(|m| {
            m.pool == a.pool && m.tape.is_some() && Some(m.id) != known.as_ref().map(|k| k.id)
        })
        .collect();
    let newest = pool_tapes
        .iter()
        .max_by_key(|m| m.enrolled_ns)
        .and_then(|m| m.tape.clone());
    let (set, seq) = match newest {
        Some(t) if !a.new_set => {
            let seq = cat
                .tape_set(&t.set)?
                .iter()
                .filter_map(|m| m.tape.as_ref())
                .map(|t| t.seq + 1)
                .max()
                .unwrap_or(0);
            (t.set, seq)
        }
        _ => (MediumId::random().to_hex(), 0),
    };
    let id = MediumId::random();
    let now = timefmt::now_ns();
    let tape_label = layout::Label {
        format: LABEL_FORMAT,
        medium_id: id.to_hex(),
        label: a.label.clone(),
        pool: a.pool.clone(),
        repo_id: repo_id.to_hex(),
        media_set: set.clone(),
        set_seq: seq,
        labelled_ns: now,
    };
    layout::label_tape(drive.tape(), &tape_label)?;
    // At the beginning of tape, as a cartridge just loaded: bakfs-mediad reads its label.
    drive.tape().rewind()?;
    if let Some(old) = &known {
        cat.forget_medium(&old.label)?;
    }
    let rec = MediumRecord {
        fs_type: "tape".into(),
        pool: a.pool.clone(),
        retention: policy,
        tape: Some(Tape {
            set: set.clone(),
            seq,
            status: TapeStatus::Writable,
            place: TapePlace::InDrive,
        }),
        ..MediumRecord::enrolled(
            id,
            &a.label,
            repo_id,
            &format!("tape-{}", id.to_hex()),
            MediumKind::Tape,
            a.location,
            now,
        )
    };
    cat.enroll_medium(&rec)?;
    cat.set_medium_presence(&id, Presence::PluggedIn, now)?;
    if ctx.global.json {
        ctx.print_json(&json!({"label": a.label, "id": id.to_hex(), "pool": a.pool, "media_set": set, "set_seq": seq}))?;
    } else {
        println!(
            "labelled {} in {spec}: pool {}, cartridge {} of media set {}{}",
            a.label,
            a.pool,
            seq + 1,
            &set[..12],
            known
                .map(|k| format!(" (was {}; forgotten)", k.label))
                .unwrap_or_default()
        );
    }
    Ok(crate::exit::OK)
}

fn tapes(ctx: &Ctx) -> Result<Vec<MediumRecord>> {
    Ok(ctx
        .catalog()?
        .media()?
        .into_iter()
        .filter(|m| m.tape.is_some())
        .collect())
}

fn list(ctx: &Ctx) -> Result<u8> {
    let cat = ctx.catalog()?;
    let tapes = tapes(ctx)?;
    if ctx.global.json {
        let v = tapes
            .iter()
            .map(|m| crate::cmd::media::medium_json(&cat, m))
            .collect::<Result<Vec<_>>>()?;
        ctx.print_json(&v)?;
        return Ok(crate::exit::OK);
    }
    if tapes.is_empty() {
        println!("no cartridges enrolled (see `bakfs tape label --help`)");
        return Ok(crate::exit::OK);
    }
    println!(
        "{:<10} {:<10} {:<14} {:<9} {:<10} {:>5} {:>12} {:<21} STATE",
        "LABEL", "POOL", "SET", "STATUS", "WHERE", "SNAPS", "SIZE", "LAST WRITTEN"
    );
    let now = timefmt::now_ns();
    for m in &tapes {
        let Some(t) = &m.tape else { continue };
        let status = if set_expired(ctx, &tapes, m, now) {
            TapeStatus::Expired
        } else {
            t.status
        };
        println!(
            "{:<10} {:<10} {:<14} {:<9} {:<10} {:>5} {:>12} {:<21} {}",
            m.label,
            m.pool,
            format!("{}#{}", &t.set[..t.set.len().min(8)], t.seq + 1),
            status,
            t.place,
            cat.medium_snapshots(&m.id)?.len(),
            mib(m.bytes.max(0) as u64),
            crate::cmd::media::when(m.last_written_ns),
            m.state
        );
    }
    Ok(crate::exit::OK)
}

/// Whether `m`'s whole media set may be written over now, as its pool's `set_retention` says
/// (bakfs-mediad labels it again when it is loaded and its pool wants a cartridge).
fn set_expired(ctx: &Ctx, tapes: &[MediumRecord], m: &MediumRecord, now: i64) -> bool {
    let Some(t) = &m.tape else { return false };
    if matches!(t.status, TapeStatus::Retired | TapeStatus::Damaged) {
        return false;
    }
    let Ok(policy) = PoolPolicy::of(ctx.config.pools.get(&m.pool)) else {
        return false;
    };
    let pool: Vec<MediumRecord> = tapes
        .iter()
        .filter(|x| x.pool == m.pool && x.repo_id == m.repo_id)
        .cloned()
        .collect();
    let sets = tape_pool::sets(&pool);
    let Some(cur) = sets.last() else { return false };
    sets.iter()
        .find(|s| s.id == t.set)
        .is_some_and(|s| tape_pool::expired(&policy, s, &cur.id, now))
}

fn show(ctx: &Ctx, label: &str) -> Result<u8> {
    let cat = ctx.catalog()?;
    let Some(m) = cat.medium_by_label(label)?.filter(|m| m.tape.is_some()) else {
        bail!("no cartridge labelled {label:?} (see `bakfs tape list`)");
    };
    let files = cat.tape_files(&m.id)?;
    if ctx.global.json {
        let mut v = crate::cmd::media::medium_json(&cat, &m)?;
        v["tape_files"] = serde_json::to_value(&files)?;
        ctx.print_json(&v)?;
        return Ok(crate::exit::OK);
    }
    crate::cmd::media::show(ctx, label)?;
    let mut by_file = std::collections::BTreeMap::<u64, (usize, u64)>::new();
    for f in &files {
        let e = by_file.entry(f.file).or_default();
        e.0 += 1;
        e.1 += f.size;
    }
    println!("  tape files ({}):", by_file.len());
    for (file, (n, bytes)) in by_file {
        println!("    file {file}: {n} repository files, {}", mib(bytes));
    }
    Ok(crate::exit::OK)
}

fn mark(
    ctx: &Ctx,
    label: &str,
    status: Option<TapeStatus>,
    place: Option<TapePlace>,
) -> Result<u8> {
    if status.is_none() && place.is_none() {
        bail!("say what to record: --status or --place");
    }
    let mut cat = ctx.catalog()?;
    let Some(m) = cat.medium_by_label(label)?.filter(|m| m.tape.is_some()) else {
        bail!("no cartridge labelled {label:?} (see `bakfs tape list`)");
    };
    cat.set_tape_state(&m.id, status, None)?;
    if let Some(p) = place {
        record_place(ctx, &m.id, p)?;
    }
    let t = cat
        .medium_by_label(label)?
        .and_then(|m| m.tape)
        .ok_or_else(|| anyhow!("{label} vanished from the catalog"))?;
    crate::cmd::media::done(ctx, label, &format!("{label} is {}, {}", t.status, t.place))
}

/// Records where a cartridge is now, and whether it is in a drive (offline when it is not).
fn record_place(ctx: &Ctx, id: &MediumId, place: TapePlace) -> Result<()> {
    let mut cat = ctx.catalog()?;
    cat.set_tape_state(id, None, Some(place))?;
    let presence = match place {
        TapePlace::InDrive => Presence::PluggedIn,
        _ => Presence::Removed,
    };
    cat.set_medium_presence(id, presence, timefmt::now_ns())?;
    Ok(())
}

/// The enrolled cartridge in the drive, if it is one.
fn enrolled_in(ctx: &Ctx, drive: &mut Drive) -> Result<Option<MediumRecord>> {
    let Ok(l) = layout::read_label(drive.tape()) else {
        return Ok(None);
    };
    Ok(ctx
        .catalog()?
        .media()?
        .into_iter()
        .find(|m| m.id.to_hex() == l.medium_id))
}

fn load(ctx: &Ctx, d: &DriveArg, name: Option<&str>) -> Result<u8> {
    let (spec, mut drive) = open(ctx, d)?;
    drive.load(name)?;
    let m = enrolled_in(ctx, &mut drive)?;
    if let Some(m) = &m {
        record_place(ctx, &m.id, TapePlace::InDrive)?;
    }
    let what = m
        .map(|m| m.label)
        .or(name.map(String::from))
        .unwrap_or_else(|| "the cartridge".into());
    crate::cmd::media::done(ctx, &what, &format!("{what} is loaded in {spec}"))
}

fn unload(ctx: &Ctx, d: &DriveArg) -> Result<u8> {
    let (spec, mut drive) = open(ctx, d)?;
    loaded(&spec, &mut drive)?;
    let place = match drive {
        Drive::Virtual(_) => TapePlace::InLibrary,
        Drive::St(_) => TapePlace::Offline,
    };
    let m = enrolled_in(ctx, &mut drive)?;
    drive.tape().unload()?;
    if let Some(m) = &m {
        record_place(ctx, &m.id, place)?;
    }
    let what = m.map_or_else(|| "the cartridge".into(), |m| m.label);
    crate::cmd::media::done(ctx, &what, &format!("{what} is ejected from {spec}"))
}

/// `800M`, `12T`, `4096`: bytes, with K, M, G, T as powers of 1024.
fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => bail!("{s:?}: use a number with K, M, G or T"),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{s:?} is not a size (800M, 12T)"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| anyhow!("{s:?} is too large"))
}

fn create(ctx: &Ctx, d: &DriveArg, name: &str, capacity: &str, ew: Option<&str>) -> Result<u8> {
    let (spec, drive) = open(ctx, d)?;
    let Drive::Virtual(v) = drive else {
        bail!("{spec} is a real drive: cartridges are made in virtual libraries only (--drive virtual:DIR)");
    };
    let capacity = parse_size(capacity)?;
    let ew = match ew {
        Some(e) => parse_size(e)?,
        None => (32 << 20).min(capacity / 8),
    };
    let cart = bakfs_tape::CartridgeName::new(name)?;
    v.create_cartridge_with(&cart, capacity, ew)?;
    crate::cmd::media::done(
        ctx,
        name,
        &format!(
            "cartridge {name} ({}) is in the library of {spec}",
            mib(capacity)
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("4096").unwrap(), 4096);
        assert_eq!(super::parse_size("800M").unwrap(), 800 << 20);
        assert_eq!(super::parse_size("12t").unwrap(), 12 << 40);
        assert!(super::parse_size("12X").is_err());
        assert!(super::parse_size("M").is_err());
        assert!(super::parse_size("99999999999T").is_err());
    }
}
