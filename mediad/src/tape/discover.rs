//! `tape_drives = ["auto"]`: the tape drives udev knows (`scsi_tape`), by their non-rewinding
//! devices, looked up again at every poll, so that a drive plugged in (a USB or SAS drive, a
//! library's drive brought online) is watched and one that went away is dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bakfs_tape::DriveSpec;

use super::{poll_drive, Watch};
use crate::job::Setup;

/// What `tape_drives` says to look up instead of naming drives.
pub const AUTO: &str = "auto";

/// The non-rewinding devices among device node names (`nst0`, not `st0` nor a mode's `nst0a`).
pub fn non_rewinding(nodes: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = nodes
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("nst"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The `scsi_tape` device nodes udev knows now.
pub fn udev_nodes() -> Vec<PathBuf> {
    let Ok(mut e) = udev::Enumerator::new() else {
        return Vec::new();
    };
    if e.match_subsystem("scsi_tape").is_err() {
        return Vec::new();
    }
    e.scan_devices()
        .map(|it| it.filter_map(|d| d.devnode().map(PathBuf::from)).collect())
        .unwrap_or_default()
}

/// Watches the drives udev knows, each on a thread of its own, until `stop` is set.
pub fn supervise(setup: &Setup, watch: &Watch, stop: &AtomicBool) {
    let mut running: HashMap<PathBuf, (Arc<AtomicBool>, JoinHandle<()>)> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut now = non_rewinding(udev_nodes());
        // A drive also named in the configuration has its own thread already.
        now.retain(|d| !watch.drives.contains(&DriveSpec::St(d.clone())));
        for dev in &now {
            if !running.contains_key(dev) {
                tracing::info!(drive = %dev.display(), "tape drive {} appeared", dev.display());
                let own = Arc::new(AtomicBool::new(false));
                let (s, w, o, spec) = (
                    setup.clone(),
                    watch.clone(),
                    own.clone(),
                    DriveSpec::St(dev.clone()),
                );
                let h = std::thread::spawn(move || poll_drive(&s, &spec, &w, &o));
                running.insert(dev.clone(), (own, h));
            }
        }
        let gone: Vec<PathBuf> = running
            .keys()
            .filter(|d| !now.contains(d))
            .cloned()
            .collect();
        for dev in gone {
            tracing::info!(drive = %dev.display(), "tape drive {} went away", dev.display());
            if let Some((own, h)) = running.remove(&dev) {
                own.store(true, Ordering::Relaxed);
                let _ = h.join();
            }
        }
        let until = Instant::now() + watch.poll;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for (_, (own, h)) in running {
        own.store(true, Ordering::Relaxed);
        let _ = h.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_rewinding_devices_are_watched() {
        let nodes = [
            "/dev/st0",
            "/dev/nst0",
            "/dev/nst0a",
            "/dev/nst0l",
            "/dev/nst12",
            "/dev/nst",
            "/dev/nst1",
        ]
        .map(PathBuf::from);
        assert_eq!(
            non_rewinding(nodes),
            ["/dev/nst0", "/dev/nst1", "/dev/nst12"].map(PathBuf::from)
        );
    }
}
