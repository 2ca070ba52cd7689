//! Tapes: the drives in `[mediad] tape_drives` are polled (loading a cartridge raises no
//! uevent): when a cartridge enrolled with `bakfs tape label` appears in one, its job runs
//! ([`copy::copy_onto_tape`]) and, done, the cartridge is ejected: safe to take to the vault.
//! A cartridge that filled up says which pool wants another one.

pub mod copy;
pub mod discover;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bakfs_core::catalog::{
    Catalog, CopyOutcome, MediumRecord, MediumRun, MediumState, Presence, TapePlace,
};
use bakfs_core::format::id::MediumId;
use bakfs_core::tape_pool::PoolPolicy;
use bakfs_tape::{layout, Drive, DriveSpec, TapeError};

use crate::error::CopyError;
use crate::job::Setup;
use crate::rotate::Stats;
use copy::Filled;

/// How the drives are watched.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The drives.
    pub drives: Vec<DriveSpec>,
    /// How often each is asked whether a cartridge is in it.
    pub poll: Duration,
    /// Eject a cartridge once its job is done (`[mediad] tape_eject`, default true).
    pub eject: bool,
    /// Also watch the drives udev knows (`tape_drives = ["auto"]`), looked up at every poll.
    pub auto: bool,
    /// The pools' allocation and set retention (`[pools.NAME]`), by pool; the defaults for the
    /// others.
    pub pools: BTreeMap<String, PoolPolicy>,
}

/// Starts a thread per drive (and one looking drives up in udev with `auto`); they end soon
/// after `stop` is set.
pub fn start(setup: &Setup, watch: &Watch, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    if watch.auto {
        let (setup, watch, stop) = (setup.clone(), watch.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            discover::supervise(&setup, &watch, &stop);
        }));
    }
    threads.extend(watch.drives.iter().map(|spec| {
        let (setup, spec, stop, watch) = (setup.clone(), spec.clone(), stop.clone(), watch.clone());
        std::thread::spawn(move || poll_drive(&setup, &spec, &watch, &stop))
    }));
    threads
}

/// Where a cartridge taken out of this drive is.
fn place_out(spec: &DriveSpec) -> TapePlace {
    match spec {
        DriveSpec::Virtual(_) => TapePlace::InLibrary,
        DriveSpec::St(_) => TapePlace::Offline,
    }
}

/// Polls each drive once (`bakfs-mediad --once`).
pub fn once(setup: &Setup, watch: &Watch) {
    let never = AtomicBool::new(false);
    let found: Vec<DriveSpec> = if watch.auto {
        discover::non_rewinding(discover::udev_nodes())
            .into_iter()
            .map(DriveSpec::St)
            .filter(|d| !watch.drives.contains(d))
            .collect()
    } else {
        Vec::new()
    };
    for spec in watch.drives.iter().chain(&found) {
        if let Err(e) = poll_once(setup, spec, watch, &never, &mut None) {
            tracing::warn!(drive = %spec, "{e}");
        }
    }
}

/// What a drive held at the last poll, so that a job runs once per load (and again when a
/// backup adds snapshots while a cartridge stays in).
type Seen = Option<(MediumId, (i64, Option<i64>))>;

pub(crate) fn poll_drive(setup: &Setup, spec: &DriveSpec, watch: &Watch, stop: &AtomicBool) {
    let poll = watch.poll;
    tracing::info!(drive = %spec, "watching tape drive {spec}");
    let mut seen: Seen = None;
    let mut complained: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        match poll_once(setup, spec, watch, stop, &mut seen) {
            Ok(()) => complained.clear(),
            // Said once until it changes, not at every poll.
            Err(e) => {
                if complained.insert(e.clone()) {
                    tracing::warn!(drive = %spec, "{e}");
                }
            }
        }
        let until = Instant::now() + poll;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100).min(poll));
        }
    }
}

fn poll_once(
    setup: &Setup,
    spec: &DriveSpec,
    watch: &Watch,
    cancel: &AtomicBool,
    seen: &mut Seen,
) -> Result<(), String> {
    let mut drive = match spec.open() {
        Ok(d) => d,
        // `bakfs tape` has it: ask again at the next poll.
        Err(TapeError::Busy { .. }) => return Ok(()),
        Err(e) => return Err(format!("opening the drive: {e}")),
    };
    let status = drive.tape().status().map_err(|e| e.to_string())?;
    if !(status.loaded && status.online) {
        // Taken out by hand since the last poll: offline now, as `bakfs status` counts it.
        if let Some((id, _)) = seen.take() {
            if let Ok(mut cat) = Catalog::open(&setup.catalog) {
                let now = bakfs_core::timefmt::now_ns();
                let _ = cat.set_medium_presence(&id, Presence::Removed, now);
                let _ = cat.set_tape_state(&id, None, Some(place_out(spec)));
            }
        }
        return Ok(());
    }
    let cat = Catalog::open(&setup.catalog).map_err(|e| e.to_string())?;
    let generation = cat
        .snapshot_generation(&setup.repo_id)
        .map_err(|e| e.to_string())?;
    // The cartridge that was here at the last poll, with nothing new to copy: its label is not
    // read again (reading it rewinds the tape). A cartridge just loaded is at the beginning of
    // tape, where reading a label never leaves one: that is read.
    if !status.beginning_of_tape && seen.is_some_and(|(_, g)| g == generation) {
        return Ok(());
    }
    let label = match layout::read_label(drive.tape()) {
        Ok(l) => l,
        Err(e) => {
            // Not one of ours (yet): whatever is read next is new.
            *seen = None;
            return Err(format!("the cartridge in the drive: {e}"));
        }
    };
    let m = cat
        .media()
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|m| m.id.to_hex() == label.medium_id);
    let Some(m) = m else {
        *seen = None;
        return Err(format!(
            "cartridge {} is not enrolled here: `bakfs tape label` it, or `bakfs tape scan` to read it",
            label.label
        ));
    };
    drop(cat);
    *seen = Some((m.id, generation));
    let policy = watch.pools.get(&m.pool).copied().unwrap_or_default();
    if run(setup, &m, &mut drive, &policy, cancel, watch.eject).1 {
        // Ejected: whatever is loaded next is new.
        *seen = None;
    }
    Ok(())
}

/// Runs the job on cartridge `m` in `drive` to its end, records it, and ejects the
/// cartridge when it went well; returns the medium's new state and whether it was ejected.
pub fn run(
    setup: &Setup,
    m: &MediumRecord,
    drive: &mut Drive,
    policy: &PoolPolicy,
    cancel: &AtomicBool,
    eject: bool,
) -> (MediumState, bool) {
    let started = Instant::now();
    let t0 = bakfs_core::timefmt::now_ns();
    let mut cat = match Catalog::open(&setup.catalog) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(medium = %m.label, "catalog: {e}");
            return (MediumState::Failed, false);
        }
    };
    let beat = setup.monitors.start(&m.label);
    let _ = cat.set_medium_state(&m.id, MediumState::Copying, None, t0);
    let _ = cat.set_tape_state(&m.id, None, Some(TapePlace::InDrive));
    let _ = cat.set_medium_presence(&m.id, Presence::PluggedIn, t0);
    let run_id = cat.begin_medium_run(&m.id, t0).unwrap_or(0);
    tracing::info!(medium = %m.label, "copying snapshots onto tape {}", m.label);
    let mut stats = Stats::default();
    let result = copy::copy_onto_tape(setup, &mut cat, m, drive.tape(), policy, cancel, &mut stats);
    let full_msg = format!(
        "{} is full: load another tape of pool {} to go on",
        m.label, m.pool
    );
    let as_copy = match &result {
        Ok(Filled::No | Filled::UpToDate | Filled::Left(_)) => Ok(()),
        Ok(Filled::Yes) => Err(CopyError::Full(full_msg.clone())),
        Err(e) => Err(e.clone()),
    };
    let (state, outcome, message) = crate::job::outcome(&as_copy, &stats);
    let secs = started.elapsed().as_secs_f64();
    // A cartridge that was up to date stays in: it may have been loaded to restore from.
    let ejected = eject
        && matches!(result, Ok(Filled::No | Filled::Yes))
        && match drive.tape().unload() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(medium = %m.label, "ejecting the cartridge: {e}");
                false
            }
        };
    if ejected {
        let place = match drive {
            Drive::Virtual(_) => TapePlace::InLibrary,
            Drive::St(_) => TapePlace::Offline,
        };
        let _ = cat.set_tape_state(&m.id, None, Some(place));
        let _ = cat.set_medium_presence(&m.id, Presence::Removed, bakfs_core::timefmt::now_ns());
    }
    let now = bakfs_core::timefmt::now_ns();
    let _ = cat.set_medium_state(&m.id, state, message.as_deref(), now);
    let run = MediumRun {
        id: run_id,
        medium_id: m.id,
        started_ns: t0,
        ended_ns: Some(now),
        outcome,
        snapshots_added: stats.added,
        snapshots_removed: 0,
        files_written: stats.files_written,
        bytes_written: stats.bytes_written,
        bytes_verified: stats.bytes_verified,
        seconds: secs,
        message,
    };
    let _ = cat.finish_medium_run(&run);
    let mib_s = stats.bytes_written as f64 / secs.max(1e-9) / f64::from(1 << 20);
    let done = if ejected {
        format!("safe to take {} to the vault (ejected)", m.label)
    } else if matches!(result, Ok(Filled::UpToDate)) {
        format!("{} is up to date (left in the drive)", m.label)
    } else if let Ok(Filled::Left(why)) = &result {
        format!("nothing written to {}: {why} (left in the drive)", m.label)
    } else {
        format!("{} has its copy", m.label)
    };
    let figures = format!(
        "{} snapshots added, {} bytes written and read back at {mib_s:.1} MiB/s, {secs:.1} s",
        stats.added, stats.bytes_written
    );
    match &result {
        Ok(Filled::No | Filled::UpToDate) => {
            tracing::info!(medium = %m.label, added = stats.added, "{done} ({figures})");
        }
        Ok(Filled::Left(_)) => tracing::warn!(medium = %m.label, "{done}"),
        Ok(Filled::Yes) => {
            tracing::warn!(medium = %m.label, added = stats.added, "{full_msg} ({figures})")
        }
        Err(CopyError::Cancelled) => {
            tracing::warn!(medium = %m.label, "{}: the drive went offline or the cartridge out", m.label)
        }
        Err(e) => tracing::error!(medium = %m.label, "{}: {e}", m.label),
    }
    setup.monitors.refresh_metrics(&cat, &setup.repo_id);
    let ok = matches!(
        outcome,
        CopyOutcome::Ok | CopyOutcome::Incomplete | CopyOutcome::MediumFull
    );
    setup
        .monitors
        .finish(beat, ok, &format!("{}: {figures}", m.label));
    (state, ejected)
}
