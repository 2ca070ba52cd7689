//! The event loop: devices present at start, then udev events, each insertion of an enrolled
//! medium handled by one job on its own thread. State machine per device node (docs/mediad.md):
//!
//! ```text
//! (absent) --add/change with ID_FS_UUID--> seen --enrolled--> copying --> done
//!    ^                                      |                    |          |
//!    +------ remove / change SYSTEMD_READY=0 / no ID_FS_* -------+----------+
//! ```
//! Repeated add/change events for a device node already seen with the same UUID are ignored,
//! so one insertion gives one job; a removal cancels a running job.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use bakfs_core::catalog::Catalog;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use crate::rotate::{self, Setup};
use crate::udev::{self, Dev};

struct Slot {
    uuid: String,
    /// The enrolled medium's label, if this device is one.
    label: Option<String>,
    cancel: Arc<AtomicBool>,
    job: Option<JoinHandle<String>>,
}

struct Daemon<'a> {
    setup: &'a Setup,
    catalog: Catalog,
    slots: HashMap<PathBuf, Slot>,
    /// Cancelled jobs still finishing, with their filesystem UUID.
    leaving: Vec<(String, JoinHandle<String>)>,
}

/// Runs until SIGTERM/SIGINT (or, with `once`, until the media present now are done).
///
/// # Errors
/// The catalog or udev cannot be opened.
pub fn run(setup: &Setup, once: bool) -> Result<()> {
    let mut catalog = Catalog::open(&setup.catalog)?;
    let n = catalog.abandon_medium_runs(bakfs_core::timefmt::now_ns())?;
    if n > 0 {
        tracing::warn!("{n} copy runs were interrupted when the daemon last stopped; the next insertion finishes them");
    }
    let enrolled = catalog.media()?.len();
    std::fs::create_dir_all(&setup.media_root)
        .with_context(|| format!("creating {}", setup.media_root.display()))?;
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block().context("blocking signals")?;
    let sigfd = SignalFd::new(&mask).context("signalfd")?;
    // Listen before enumerating, so a device plugged in meanwhile is not missed.
    let monitor = if once {
        None
    } else {
        Some(udev::Monitor::new()?)
    };
    let mut d = Daemon {
        setup,
        catalog,
        slots: HashMap::new(),
        leaving: Vec::new(),
    };
    for dev in udev::present()? {
        d.handle(dev);
    }
    let Some(monitor) = monitor else {
        d.stop(false);
        return Ok(());
    };
    tracing::info!(
        repository = %setup.repo_root.display(),
        "listening for media ({enrolled} enrolled)"
    );
    sd_notify("READY=1");
    loop {
        let mut fds = [
            PollFd::new(monitor.fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let sig_ready = fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        if sig_ready {
            if let Ok(Some(si)) = sigfd.read_signal() {
                tracing::info!("signal {}: stopping", si.ssi_signo);
            }
            sd_notify("STOPPING=1");
            d.stop(true);
            return Ok(());
        }
        for dev in monitor.drain() {
            d.handle(dev);
        }
        d.reap();
    }
}

impl Daemon<'_> {
    fn handle(&mut self, dev: Dev) {
        tracing::debug!("udev: {}", udev::describe(&dev));
        if dev.is_gone() {
            if let Some(slot) = self.slots.remove(&dev.devnode) {
                if let Some(job) = slot.job {
                    if !job.is_finished() {
                        tracing::warn!(
                            "{} went away during its copy: stopping the job",
                            slot.label.as_deref().unwrap_or("medium")
                        );
                    }
                    slot.cancel.store(true, Ordering::Relaxed);
                    self.leaving.push((slot.uuid, job));
                }
            }
            return;
        }
        let Some(uuid) = dev.fs_uuid.clone() else {
            return;
        };
        if let Some(slot) = self.slots.get(&dev.devnode) {
            if slot.uuid == uuid {
                return; // a repeated event of the same insertion
            }
            // Another filesystem on the same node: the old one is gone.
            if let Some(old) = self.slots.remove(&dev.devnode) {
                old.cancel.store(true, Ordering::Relaxed);
                if let Some(j) = old.job {
                    self.leaving.push((old.uuid, j));
                }
            }
        }
        let medium = match self.catalog.medium_by_uuid(&uuid) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("catalog: {e}");
                return;
            }
        };
        let mut slot = Slot {
            uuid: uuid.clone(),
            label: medium.as_ref().map(|m| m.label.clone()),
            cancel: Arc::new(AtomicBool::new(false)),
            job: None,
        };
        let Some(m) = medium else {
            // A filesystem labelled like an enrolled medium but with another UUID: a copy made
            // with another tool, or a stick relabelled by hand. Not touched, but said.
            let namesake = dev
                .fs_label
                .as_deref()
                .and_then(|l| self.catalog.medium_by_label(l).ok().flatten());
            if let Some(n) = namesake {
                tracing::warn!(
                    "{} is labelled {} like enrolled medium {}, but its filesystem UUID is {uuid}, not {}: left alone (enroll it under another label to use it)",
                    dev.devnode.display(),
                    n.label,
                    n.label,
                    n.fs_uuid
                );
            } else {
                tracing::debug!(
                    "{} (uuid {uuid}) is not enrolled: left alone",
                    dev.devnode.display()
                );
            }
            self.slots.insert(dev.devnode, slot);
            return;
        };
        let now = bakfs_core::timefmt::now_ns();
        let twin = self
            .slots
            .iter()
            .find(|(node, s)| s.uuid == uuid && **node != dev.devnode)
            .map(|(node, _)| node.clone());
        let refusal = if let Some(other) = twin {
            Some(format!(
                "{} and {} both claim medium {} (filesystem UUID {uuid}); refusing {}: one of them is a clone",
                other.display(),
                dev.devnode.display(),
                m.label,
                dev.devnode.display()
            ))
        } else if m.repo_id != self.setup.repo_id {
            Some(format!(
                "medium {} belongs to repository {}, this daemon serves {}",
                m.label, m.repo_id, self.setup.repo_id
            ))
        } else if m.serial.is_some() && dev.serial.is_some() && m.serial != dev.serial {
            Some(format!(
                "{} has medium {}'s filesystem UUID but serial {} (enrolled: {}): a cloned filesystem?",
                dev.devnode.display(),
                m.label,
                dev.serial.as_deref().unwrap_or("-"),
                m.serial.as_deref().unwrap_or("-")
            ))
        } else {
            None
        };
        if let Some(msg) = refusal {
            tracing::error!("{msg}");
            // A twin must not overwrite the state of the medium that is being written.
            if twin_free(&self.slots, &uuid, &dev.devnode) {
                let _ = self
                    .catalog
                    .set_medium_state(&m.id, "refused", Some(&msg), now);
            }
            self.slots.insert(dev.devnode, slot);
            return;
        }
        tracing::info!(
            "{} is medium {} ({} {})",
            dev.devnode.display(),
            m.label,
            m.kind,
            m.location
        );
        let device = rotate::Device {
            devnode: dev.devnode.clone(),
            fs_type: dev.fs_type.clone().unwrap_or_else(|| m.fs_type.clone()),
            fs_uuid: uuid,
        };
        let setup = self.setup.clone();
        let cancel = slot.cancel.clone();
        // A cancelled job of the same medium (pulled out and plugged in again at once) may still
        // be unmounting `<media root>/<uuid>`: the new job waits for it to end first.
        let (earlier, others): (Vec<_>, Vec<_>) = self
            .leaving
            .drain(..)
            .partition(|(u, _)| *u == device.fs_uuid);
        self.leaving = others;
        let spawned = std::thread::Builder::new()
            .name(format!("copy {}", m.label))
            .spawn(move || {
                for (_, j) in earlier {
                    let _ = j.join();
                }
                rotate::run(&setup, &m, &device, &cancel)
            });
        match spawned {
            Ok(h) => slot.job = Some(h),
            Err(e) => tracing::error!("starting a job: {e}"),
        }
        self.slots.insert(dev.devnode, slot);
    }

    /// Joins finished jobs (a panicking job is logged; the daemon goes on).
    fn reap(&mut self) {
        for slot in self.slots.values_mut() {
            if slot.job.as_ref().is_some_and(|j| j.is_finished()) {
                if let Some(j) = slot.job.take() {
                    if j.join().is_err() {
                        tracing::error!(
                            "the job for {} failed unexpectedly",
                            slot.label.as_deref().unwrap_or("?")
                        );
                    }
                }
            }
        }
        let (done, running): (Vec<_>, Vec<_>) =
            self.leaving.drain(..).partition(|(_, j)| j.is_finished());
        self.leaving = running;
        for (_, j) in done {
            let _ = j.join();
        }
    }

    /// Waits for every job; with `cancel`, asks them to stop first.
    fn stop(&mut self, cancel: bool) {
        for slot in self.slots.values_mut() {
            if cancel {
                slot.cancel.store(true, Ordering::Relaxed);
            }
            if let Some(j) = slot.job.take() {
                let _ = j.join();
            }
        }
        for (_, j) in self.leaving.drain(..) {
            let _ = j.join();
        }
    }
}

fn twin_free(slots: &HashMap<PathBuf, Slot>, uuid: &str, node: &Path) -> bool {
    !slots
        .iter()
        .any(|(n, s)| s.uuid == uuid && n != node && s.job.is_some())
}

/// Tells systemd (if it started us with `Type=notify`) about our state.
fn sd_notify(msg: &str) {
    bakfs_host::notify::notify(msg);
}
