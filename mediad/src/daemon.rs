//! The daemon's rules: devices present at start, then device events, each insertion of an
//! enrolled medium handled by one job on its own thread. State machine per device node
//! (docs/mediad.md):
//!
//! ```text
//! (absent) --add/change with ID_FS_UUID--> seen --enrolled--> copying --> done
//!    ^                                      |                    |          |
//!    +------ remove / change SYSTEMD_READY=0 / no ID_FS_* -------+----------+
//! ```
//! Repeated add/change events for a device node already seen with the same UUID are ignored,
//! so one insertion gives one job; a removal cancels a running job. Whether each enrolled medium
//! is plugged in is recorded in the catalog (`media.presence`, for `bakfs status`): plugged in
//! when its filesystem appears, removed when it goes, and at start removed for every medium not
//! among the devices present. A second node claiming a
//! medium's filesystem is a twin, refused, only while the first still holds it
//! ([`Devices::holds`]); otherwise the first is taken as removed.
//!
//! [`run`] takes what it waits on as arguments, so that the rules are tested with a scripted
//! event stream (`daemon/tests.rs`): the devices ([`Devices`]: udev in production), the request
//! to stop ([`Shutdown`]: SIGTERM, SIGINT, SIGHUP in production) and what a job does
//! ([`Runner`]: [`crate::job::run_on_device`] in production).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use bakfs_core::catalog::{Catalog, MediumRecord, MediumState, Presence};
use bakfs_core::format::id::MediumId;

use crate::job::Setup;
use crate::medium::block::Device;
use crate::medium::share::OpClock;
use crate::udev::{self, Dev};
pub use shares::Mounts;

/// The block devices the daemon watches. Production: [`crate::udev::Udev`].
pub trait Devices {
    /// The block devices present now. Called once, after the source began listening, so that
    /// a device plugged in meanwhile is not missed (it may then be reported twice: a repeat is
    /// ignored).
    ///
    /// # Errors
    /// The devices cannot be listed.
    fn present(&mut self) -> Result<Vec<Dev>>;

    /// The events received since the last call, waiting up to `timeout` for the first. Returns
    /// early, maybe with none, when the daemon is asked to stop.
    ///
    /// # Errors
    /// The source cannot be read.
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Dev>>;

    /// Whether `node` still holds the filesystem `uuid`. Asked when another node claims the
    /// same filesystem: udev handles devices in parallel, so a medium moved from one node to
    /// another may be announced on the new node before its removal from the old one.
    fn holds(&self, node: &Path, uuid: &str) -> bool;
}

/// The request to stop. Production: SIGTERM, SIGINT or SIGHUP ([`crate::signals::Signals`]).
pub trait Shutdown {
    /// Why the daemon should stop, once it was asked to. Never blocks.
    fn requested(&mut self) -> Option<String>;
}

/// One job: copy onto `medium` through what it is attached by; stop early once `cancel` is set.
#[derive(Debug)]
pub struct Job {
    pub medium: MediumRecord,
    pub attach: Attach,
    pub cancel: Arc<AtomicBool>,
}

/// How a medium of a job is reached.
#[derive(Debug, Clone)]
pub enum Attach {
    /// A block device udev announced.
    Block(Device),
    /// A share (`medium.share`) mounted on its path, or one the job mounts itself; the job runs
    /// every operation on it under the clock, which the daemon watches.
    Share(Arc<OpClock>),
    /// A bucket (`medium.bucket`), reached over the network whenever a job runs.
    Bucket,
}

#[cfg(test)]
impl Job {
    /// The device node of a block device's job.
    pub fn device(&self) -> Option<&Device> {
        match &self.attach {
            Attach::Block(d) => Some(d),
            Attach::Share(_) | Attach::Bucket => None,
        }
    }
}

/// What a job does, on a thread of its own. Production: [`crate::job::run_on_device`].
pub trait Runner: Send + Sync + 'static {
    /// Runs `job` to its end (or until cancelled); returns the medium's new state.
    fn run(&self, job: &Job) -> MediumState;
}

impl<F: Fn(&Job) -> MediumState + Send + Sync + 'static> Runner for F {
    fn run(&self, job: &Job) -> MediumState {
        self(job)
    }
}

/// How long the daemon, asked to stop, waits for its cancelled jobs.
const STOP_PATIENCE: Duration = Duration::from_secs(20);

/// How long a wait for events lasts before finished jobs are reaped.
const TICK: Duration = Duration::from_secs(1);
/// The same in [`Mode::Once`], where the daemon returns as soon as the last job ended: short, as
/// the whole process waits on it (100 ms added 0.05 s to a small rotation in bench/media.sh).
const ONCE_TICK: Duration = Duration::from_millis(10);

/// Whether the daemon listens for events or only handles the devices present at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Handles the devices present, then every event, until asked to stop (the service).
    Listen,
    /// Handles the devices present at start and returns when their jobs have ended; reads no
    /// events (`--once`).
    Once,
}

/// Runs until `shutdown` asks it to stop (running jobs are cancelled and waited for), or, in
/// [`Mode::Once`], until the jobs for the devices present at start have ended.
/// Tells systemd `READY=1` once it listens and `STOPPING=1` when asked to stop.
///
/// # Errors
/// The catalog cannot be opened, the media root not created, `devices` not read.
pub fn run(
    setup: &Setup,
    mode: Mode,
    devices: &mut (impl Devices + Mounts),
    shutdown: &mut impl Shutdown,
    runner: impl Runner,
) -> Result<()> {
    let mut catalog = Catalog::open(&setup.catalog)?;
    let n = catalog.abandon_medium_runs(bakfs_core::timefmt::now_ns())?;
    if n > 0 {
        tracing::warn!("{n} copy runs were interrupted when the daemon last stopped; the next insertion finishes them");
    }
    let enrolled = catalog.media()?.len();
    std::fs::create_dir_all(&setup.media_root)
        .with_context(|| format!("creating {}", setup.media_root.display()))?;
    let mut d = Daemon {
        setup,
        catalog,
        runner: Arc::new(runner),
        slots: BTreeMap::new(),
        leaving: Vec::new(),
        shares: BTreeMap::new(),
        mount_points: Default::default(),
    };
    for dev in devices.present()? {
        d.handle(dev, devices);
    }
    d.shares_tick(devices, true);
    // Media recorded as plugged in that are not here went away while no daemon watched.
    let mut here: Vec<MediumId> = d.slots.values().filter_map(|s| s.medium).collect();
    here.extend(d.mounted_shares());
    match d
        .catalog
        .set_media_removed_except(&here, bakfs_core::timefmt::now_ns())
    {
        Ok(0) => {}
        Ok(n) => tracing::info!("{n} media recorded as plugged in are not: marked removed"),
        Err(e) => tracing::error!("catalog: recording which media are plugged in: {e}"),
    }
    if mode == Mode::Listen {
        tracing::info!(
            repository = %setup.repo,
            "listening for media ({enrolled} enrolled)"
        );
        sd_notify("READY=1");
    }
    loop {
        if let Some(why) = shutdown.requested() {
            tracing::info!("{why}: stopping");
            sd_notify("STOPPING=1");
            d.cancel_jobs();
            d.join_jobs();
            return Ok(());
        }
        if mode == Mode::Once && d.idle() {
            d.join_jobs();
            return Ok(());
        }
        let tick = match mode {
            Mode::Listen => TICK,
            Mode::Once => ONCE_TICK,
        };
        let events = devices.wait(tick)?;
        if mode == Mode::Listen {
            for dev in events {
                d.handle(dev, devices);
            }
        }
        d.shares_tick(devices, mode == Mode::Listen);
        d.reap();
    }
}

/// A job's thread and its cancel flag.
struct Running {
    cancel: Arc<AtomicBool>,
    thread: JoinHandle<MediumState>,
}

impl Running {
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the job; false if it panicked.
    fn join(self) -> bool {
        self.thread.join().is_ok()
    }
}

/// A device node seen with a filesystem.
struct Slot {
    uuid: String,
    /// The enrolled medium's label, if this device is one.
    label: Option<String>,
    /// And its id.
    medium: Option<MediumId>,
    job: Option<Running>,
}

struct Daemon<'a> {
    setup: &'a Setup,
    catalog: Catalog,
    runner: Arc<dyn Runner>,
    slots: BTreeMap<PathBuf, Slot>,
    /// Cancelled jobs still finishing, with their filesystem UUID.
    leaving: Vec<(String, Running)>,
    /// Enrolled shares (`daemon/shares.rs`).
    shares: BTreeMap<MediumId, shares::ShareSlot>,
    /// The mount points, as the mount table last said.
    mount_points: std::collections::HashSet<PathBuf>,
}

impl Daemon<'_> {
    fn handle(&mut self, dev: Dev, devices: &impl Devices) {
        tracing::debug!("udev: {}", udev::describe(&dev));
        if dev.is_gone() {
            self.gone(&dev.devnode);
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
            self.gone(&dev.devnode);
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
            medium: medium.as_ref().map(|m| m.id),
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
        let twin = self.live_twin(&dev.devnode, &m, devices);
        let now = bakfs_core::timefmt::now_ns();
        // Plugged in, whatever happens next (a refused clone counts too: online is the
        // cautious answer).
        self.record_presence(&m.id, &m.label, Presence::PluggedIn);
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
            if !self.being_written(&uuid, &dev.devnode) {
                let _ = self
                    .catalog
                    .set_medium_state(&m.id, MediumState::Refused, Some(&msg), now);
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
        let label = m.label.clone();
        let device = Device {
            devnode: dev.devnode.clone(),
            fs_type: dev.fs_type.clone().unwrap_or_else(|| m.fs_type.clone()),
            fs_uuid: uuid,
        };
        let fs_uuid = device.fs_uuid.clone();
        let job = Job {
            attach: Attach::Block(device),
            medium: m,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        let cancel = job.cancel.clone();
        // A cancelled job of the same medium (pulled out and plugged in again at once) may still
        // be unmounting `<media root>/<uuid>`: the new job waits for it to end first.
        let (earlier, others): (Vec<_>, Vec<_>) =
            self.leaving.drain(..).partition(|(u, _)| *u == fs_uuid);
        self.leaving = others;
        let runner = self.runner.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("copy {label}"))
            .spawn(move || {
                for (_, j) in earlier {
                    j.join();
                }
                runner.run(&job)
            });
        match spawned {
            Ok(thread) => slot.job = Some(Running { cancel, thread }),
            Err(e) => tracing::error!("starting a job: {e}"),
        }
        self.slots.insert(dev.devnode, slot);
    }

    /// The medium on `node` is gone: its slot is dropped and a running job cancelled (it
    /// finishes among `leaving`).
    fn gone(&mut self, node: &Path) {
        let Some(slot) = self.slots.remove(node) else {
            return;
        };
        // Removed, unless another node still holds its filesystem.
        if let (Some(id), Some(label)) = (slot.medium, slot.label.as_deref()) {
            if !self.slots.values().any(|s| s.uuid == slot.uuid) {
                self.record_presence(&id, label, Presence::Removed);
            }
        }
        if let Some(job) = slot.job {
            if !job.is_finished() {
                tracing::warn!(
                    "{} went away during its copy: stopping the job",
                    slot.label.as_deref().unwrap_or("medium")
                );
            }
            job.cancel();
            self.leaving.push((slot.uuid, job));
        }
    }

    /// Records whether medium `id` is plugged in (a failure is logged: it never stops a job).
    fn record_presence(&mut self, id: &MediumId, label: &str, p: Presence) {
        let now = bakfs_core::timefmt::now_ns();
        if let Err(e) = self.catalog.set_medium_presence(id, p, now) {
            tracing::error!("catalog: recording that {label} is {p}: {e}");
        }
    }

    /// Another node that holds `m`'s filesystem while `node` claims it too. A node that no
    /// longer holds it (its removal not reported yet) is taken as removed.
    fn live_twin(
        &mut self,
        node: &Path,
        m: &MediumRecord,
        devices: &impl Devices,
    ) -> Option<PathBuf> {
        let others: Vec<PathBuf> = self
            .slots
            .iter()
            .filter(|(n, s)| s.uuid == m.fs_uuid && n.as_path() != node)
            .map(|(n, _)| n.clone())
            .collect();
        let mut twin = None;
        for other in others {
            if devices.holds(&other, &m.fs_uuid) {
                twin.get_or_insert(other);
            } else {
                tracing::info!(
                    "{} no longer holds medium {} (its removal is not reported yet): taking it as removed",
                    other.display(),
                    m.label
                );
                self.gone(&other);
            }
        }
        twin
    }

    /// Whether another node than `node` has a job running for filesystem `uuid`.
    fn being_written(&self, uuid: &str, node: &Path) -> bool {
        self.slots.iter().any(|(n, s)| {
            s.uuid == uuid && n != node && s.job.as_ref().is_some_and(|j| !j.is_finished())
        })
    }

    /// Joins finished jobs (a panicking job is logged; the daemon goes on).
    fn reap(&mut self) {
        for slot in self.slots.values_mut() {
            if slot.job.as_ref().is_some_and(Running::is_finished) {
                if let Some(j) = slot.job.take() {
                    if !j.join() {
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
            j.join();
        }
    }

    /// Whether no job is running or leaving (after [`Self::reap`]).
    fn idle(&self) -> bool {
        self.leaving.is_empty()
            && self.slots.values().all(|s| s.job.is_none())
            && !self.share_jobs_running()
    }

    /// Asks every running job to stop.
    fn cancel_jobs(&mut self) {
        for j in self.slots.values().filter_map(|s| s.job.as_ref()) {
            j.cancel();
        }
        for (j, abandoned) in self.take_share_jobs() {
            j.cancel();
            if !abandoned {
                self.leaving.push((String::new(), j));
            }
        }
    }

    /// Waits for every job to end, but not for ever for one blocked on a hung share: after
    /// [`STOP_PATIENCE`] the daemon goes, and such a thread ends with the process.
    fn join_jobs(&mut self) {
        for slot in self.slots.values_mut() {
            if let Some(j) = slot.job.take() {
                j.join();
            }
        }
        for (j, abandoned) in self.take_share_jobs() {
            if abandoned {
                // Blocked on a hung share: it ends with the process.
                continue;
            }
            self.leaving.push((String::new(), j));
        }
        let deadline = std::time::Instant::now() + STOP_PATIENCE;
        for (_, j) in self.leaving.drain(..) {
            while !j.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if j.is_finished() {
                j.join();
            } else {
                tracing::warn!(
                    "a job is still blocked on its medium (a hung share?): not waiting for it"
                );
            }
        }
    }
}

/// Tells systemd (if it started us with `Type=notify`) about our state.
fn sd_notify(msg: &str) {
    bakfs_host::notify::notify(msg);
}

mod shares;
#[cfg(test)]
mod tests;
