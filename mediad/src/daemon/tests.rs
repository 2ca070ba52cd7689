//! The daemon's rules against scripted event streams: no udev, no devices, no root. The catalog
//! is a real one in a temporary directory; jobs are fakes that say on a shared timeline when
//! they start, see their cancellation and end, and set the medium's state as a job does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bakfs_core::catalog::{
    Catalog, CopyOutcome, MediumKind, MediumLocation, MediumRecord, MediumState, Presence,
};
use bakfs_core::format::id::{MediumId, RepoId};

use super::{run, Devices, Job, Mode, Mounts, Runner, Shutdown};
use crate::job::Setup;
use crate::udev::{Action, Dev};

const REPO: &str = "repo-1";

/// The id of the repository named `name` in these tests.
fn repo(name: &str) -> RepoId {
    RepoId::hash_of(name.as_bytes())
}

/// The id of the medium labelled `label` in these tests.
fn medium_id(label: &str) -> MediumId {
    MediumId::hash_of(label.as_bytes())
}
/// How long a test waits for a job's thread before it fails.
const PATIENCE: Duration = Duration::from_secs(10);

// ---- the timeline --------------------------------------------------------------------------

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    released: HashSet<String>,
}

/// What happened, in order, as the script, the fake jobs and the stop request saw it.
#[derive(Default)]
struct Timeline {
    state: Mutex<Lines>,
    changed: Condvar,
}

impl Timeline {
    fn push(&self, line: String) {
        self.state.lock().unwrap().lines.push(line);
        self.changed.notify_all();
    }

    fn lines(&self) -> Vec<String> {
        self.state.lock().unwrap().lines.clone()
    }

    /// Blocks until `line` was pushed.
    fn wait_for(&self, line: &str) {
        let t = Instant::now();
        let mut s = self.state.lock().unwrap();
        while !s.lines.iter().any(|l| l == line) {
            assert!(
                t.elapsed() < PATIENCE,
                "waited in vain for {line:?}: {:#?}",
                s.lines
            );
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }

    fn release(&self, job: &str) {
        self.state.lock().unwrap().released.insert(job.to_string());
        self.push(format!("release {job}"));
    }

    fn is_released(&self, job: &str) -> bool {
        self.state.lock().unwrap().released.contains(job)
    }

    /// Position of `line`; fails if it is not there.
    fn at(&self, line: &str) -> usize {
        let lines = self.lines();
        lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("{line:?} not in {lines:#?}"))
    }

    /// The jobs started: `LABEL#n on NODE`.
    fn starts(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("start ").map(str::to_string))
            .collect()
    }
}

// ---- the fakes -----------------------------------------------------------------------------

/// When a fake job ends.
#[derive(Clone, Copy)]
enum Ends {
    /// After this long.
    After(Duration),
    /// Once cancelled.
    WhenCancelled,
    /// Once the script releases it (a cancellation is noted, but the job goes on, as one busy
    /// unmounting its medium does).
    WhenReleased,
}

/// A job that does nothing but say what happens to it, named `LABEL#n` (its medium's n-th job),
/// and set the medium's state as `job::run` does.
fn fake_runner(t: Arc<Timeline>, catalog: PathBuf, ends: Ends) -> impl Runner {
    let counts = Mutex::new(HashMap::<String, usize>::new());
    move |job: &Job| {
        let name = {
            let mut c = counts.lock().unwrap();
            let n = c.entry(job.medium.label.clone()).or_default();
            *n += 1;
            format!("{}#{n}", job.medium.label)
        };
        let mut cat = Catalog::open(&catalog).unwrap();
        cat.set_medium_state(&job.medium.id, MediumState::Copying, None, 1)
            .unwrap();
        t.push(format!(
            "start {name} on {}",
            job.device().unwrap().devnode.display()
        ));
        let started = Instant::now();
        let mut noted = false;
        loop {
            let cancelled = job.cancel.load(Ordering::Relaxed);
            if cancelled && !noted {
                t.push(format!("cancelled {name}"));
                noted = true;
            }
            let done = match ends {
                Ends::After(d) => started.elapsed() >= d,
                Ends::WhenCancelled => cancelled,
                Ends::WhenReleased => t.is_released(&name),
            };
            if done {
                break;
            }
            assert!(started.elapsed() < PATIENCE, "{name} never ended");
            std::thread::sleep(Duration::from_millis(1));
        }
        let state = if noted {
            MediumState::RemovedDuringCopy
        } else {
            MediumState::SafeToRemove
        };
        cat.set_medium_state(&job.medium.id, state, None, 2)
            .unwrap();
        t.push(format!("end {name}"));
        state
    }
}

/// One step of a script, taken when the daemon waits for events.
enum Step {
    /// Delivered as the only event of one wait.
    Event(Dev),
    /// The node no longer holds its filesystem (the medium was pulled out); its removal event
    /// comes later, or never.
    Pull(&'static str),
    /// The daemon waits until the timeline has this line.
    Await(String),
    /// Lets a [`Ends::WhenReleased`] job end.
    Release(&'static str),
    /// Sleeps: time for a job that should not start to start.
    Sleep(u64),
    /// Asserts the medium's state in the catalog now.
    State(&'static str, MediumState),
    /// Asserts whether the catalog says the medium is plugged in now.
    Presence(&'static str, Option<Presence>),
    /// An empty wait: the daemon reaps the jobs that ended.
    Tick,
    /// Asks the daemon to stop.
    Stop,
}

/// The daemon's devices: `present` at start, then `steps`.
struct Script {
    present: Vec<Dev>,
    steps: VecDeque<Step>,
    /// Nodes whose medium was pulled out.
    pulled: HashSet<PathBuf>,
    t: Arc<Timeline>,
    stop: Arc<AtomicBool>,
    catalog: PathBuf,
    started: Instant,
}

impl Devices for Script {
    fn present(&mut self) -> Result<Vec<Dev>> {
        Ok(std::mem::take(&mut self.present))
    }

    fn wait(&mut self, timeout: Duration) -> Result<Vec<Dev>> {
        while let Some(step) = self.steps.pop_front() {
            match step {
                Step::Event(d) => {
                    if !d.is_gone() {
                        self.pulled.remove(&d.devnode);
                    }
                    return Ok(vec![d]);
                }
                Step::Pull(node) => {
                    self.pulled.insert(node.into());
                }
                Step::Await(line) => self.t.wait_for(&line),
                Step::Release(job) => self.t.release(job),
                Step::Sleep(ms) => std::thread::sleep(Duration::from_millis(ms)),
                Step::State(label, want) => {
                    let cat = Catalog::open(&self.catalog).unwrap();
                    let m = cat.medium_by_label(label).unwrap().unwrap();
                    assert_eq!(m.state, want, "{label}: {:?}", m.message);
                }
                Step::Presence(label, want) => {
                    let cat = Catalog::open(&self.catalog).unwrap();
                    let m = cat.medium_by_label(label).unwrap().unwrap();
                    assert_eq!(m.presence, want, "{label}");
                }
                Step::Tick => return Ok(Vec::new()),
                Step::Stop => {
                    self.t.push("stop".into());
                    self.stop.store(true, Ordering::Relaxed);
                    return Ok(Vec::new());
                }
            }
        }
        // The script is over: only a daemon waiting for its jobs (`Mode::Once`) comes here.
        assert!(
            self.started.elapsed() < PATIENCE,
            "the script ended without a Stop and the daemon did not"
        );
        std::thread::sleep(timeout.min(Duration::from_millis(5)));
        Ok(Vec::new())
    }

    fn holds(&self, node: &Path, _uuid: &str) -> bool {
        !self.pulled.contains(node)
    }
}

impl Mounts for Script {
    fn changed_mounts(&mut self) -> Option<HashSet<PathBuf>> {
        None
    }
}

struct StopFlag(Arc<AtomicBool>);

impl Shutdown for StopFlag {
    fn requested(&mut self) -> Option<String> {
        self.0
            .load(Ordering::Relaxed)
            .then(|| "asked by the test".to_string())
    }
}

/// Collects the daemon's log lines as `LEVEL message` (only the calling thread's: the rules
/// run there; the fake jobs log nothing).
struct Capture(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0
            .lock()
            .unwrap()
            .push(format!("{} {}", event.metadata().level(), m.0));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

// ---- the world -----------------------------------------------------------------------------

/// A catalog, a media root and a timeline in a temporary directory.
struct World {
    _dir: tempfile::TempDir,
    setup: Setup,
    t: Arc<Timeline>,
}

/// What a run of the daemon logged.
struct Logged(Vec<String>);

impl Logged {
    fn count(&self, needle: &str) -> usize {
        self.0.iter().filter(|l| l.contains(needle)).count()
    }

    fn has(&self, needle: &str) -> bool {
        self.count(needle) > 0
    }

    fn errors(&self) -> Vec<&String> {
        self.0.iter().filter(|l| l.starts_with("ERROR")).collect()
    }
}

impl std::fmt::Debug for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let setup = Setup {
            repo: bakfs_core::repo::backend::Location::Dir(dir.path().join("repo")),
            repo_id: repo(REPO),
            catalog: dir.path().join("state/catalog.db"),
            media_root: dir.path().join("media"),
            reverify_after: Duration::from_secs(30 * 86400),
            pinned: Default::default(),
            tz: bakfs_core::timefmt::TimeZone::UTC,
            monitors: Default::default(),
            runbook: Default::default(),
            drill: None,
            share_timeout: Duration::from_secs(60),
            share_retry: Duration::from_secs(900),
            share_read_back: 100.0,
        };
        Self {
            _dir: dir,
            setup,
            t: Arc::default(),
        }
    }

    fn enroll(&self, label: &str, uuid: &str) {
        self.enroll_with(label, uuid, REPO, None);
    }

    fn enroll_with(&self, label: &str, uuid: &str, repo_name: &str, serial: Option<&str>) {
        let mut cat = Catalog::open(&self.setup.catalog).unwrap();
        cat.enroll_medium(&MediumRecord {
            fs_type: "ext4".into(),
            serial: serial.map(Into::into),
            pool: "offsite".into(),
            capacity: 1 << 30,
            ..MediumRecord::enrolled(
                medium_id(label),
                label,
                repo(repo_name),
                uuid,
                MediumKind::Usb,
                MediumLocation::Offsite,
                1,
            )
        })
        .unwrap();
    }

    /// The medium's state and message in the catalog.
    fn state(&self, label: &str) -> (MediumState, String) {
        let cat = Catalog::open(&self.setup.catalog).unwrap();
        let m = cat.medium_by_label(label).unwrap().unwrap();
        (m.state, m.message.unwrap_or_default())
    }

    /// Runs the daemon on `present`, then `steps`, to its end.
    fn run(&self, mode: Mode, ends: Ends, present: Vec<Dev>, steps: Vec<Step>) -> Logged {
        let stop = Arc::new(AtomicBool::new(false));
        let mut devices = Script {
            present,
            steps: steps.into(),
            pulled: HashSet::new(),
            t: self.t.clone(),
            stop: stop.clone(),
            catalog: self.setup.catalog.clone(),
            started: Instant::now(),
        };
        let logs = Arc::new(Mutex::new(Vec::new()));
        let runner = fake_runner(self.t.clone(), self.setup.catalog.clone(), ends);
        tracing::subscriber::with_default(Capture(logs.clone()), || {
            run(&self.setup, mode, &mut devices, &mut StopFlag(stop), runner)
        })
        .unwrap();
        let lines = logs.lock().unwrap().clone();
        Logged(lines)
    }

    /// Runs the daemon (listening) on `steps`, jobs ending once cancelled.
    fn listen(&self, steps: Vec<Step>) -> Logged {
        self.run(Mode::Listen, Ends::WhenCancelled, Vec::new(), steps)
    }
}

// ---- devices and events --------------------------------------------------------------------

fn dev(action: Action, node: &str, uuid: Option<&str>) -> Dev {
    Dev {
        action,
        devnode: node.into(),
        fs_uuid: uuid.map(Into::into),
        fs_label: None,
        fs_type: Some("ext4".into()),
        serial: None,
        bus: Some("usb".into()),
        ready: true,
        tagged: true,
    }
}

fn present(node: &str, uuid: &str) -> Dev {
    dev(Action::Present, node, Some(uuid))
}

fn add(node: &str, uuid: &str) -> Step {
    Step::Event(dev(Action::Add, node, Some(uuid)))
}

fn change(node: &str, uuid: &str) -> Step {
    Step::Event(dev(Action::Change, node, Some(uuid)))
}

/// udev's `remove` still carries the device's last properties.
fn remove(node: &str, uuid: &str) -> Step {
    Step::Event(dev(Action::Remove, node, Some(uuid)))
}

/// A `change` with `SYSTEMD_READY=0` (a loop device detached), the filesystem still named.
fn not_ready(node: &str, uuid: &str) -> Step {
    Step::Event(Dev {
        ready: false,
        ..dev(Action::Change, node, Some(uuid))
    })
}

/// A `change` without `ID_FS_*` (an emptied card reader).
fn lost_fs(node: &str) -> Step {
    Step::Event(Dev {
        fs_type: None,
        ..dev(Action::Change, node, None)
    })
}

fn with_label(step: Step, label: &str) -> Step {
    match step {
        Step::Event(d) => Step::Event(Dev {
            fs_label: Some(label.into()),
            ..d
        }),
        other => other,
    }
}

fn with_serial(step: Step, serial: &str) -> Step {
    match step {
        Step::Event(d) => Step::Event(Dev {
            serial: Some(serial.into()),
            ..d
        }),
        other => other,
    }
}

fn wait(line: &str) -> Step {
    Step::Await(line.to_string())
}

// ---- the rules -----------------------------------------------------------------------------

#[test]
fn one_job_per_insertion_and_repeated_events_are_ignored() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    let logs = w.run(
        Mode::Listen,
        Ends::WhenCancelled,
        vec![present("/dev/sdb", "u1")],
        vec![
            // The same insertion again: udev's record read at start raced the monitor, and the
            // `change` udev sends when a job unmounts.
            add("/dev/sdb", "u1"),
            change("/dev/sdb", "u1"),
            wait("start OFF1#1 on /dev/sdb"),
            change("/dev/sdb", "u1"),
            Step::Tick,
            remove("/dev/sdb", "u1"),
            wait("end OFF1#1"),
            // Plugged in again: a new insertion.
            add("/dev/sdb", "u1"),
            wait("start OFF1#2 on /dev/sdb"),
            change("/dev/sdb", "u1"),
            Step::Stop,
        ],
    );
    assert_eq!(
        w.t.starts(),
        ["OFF1#1 on /dev/sdb", "OFF1#2 on /dev/sdb"],
        "{logs:?}"
    );
    assert_eq!(
        logs.count("/dev/sdb is medium OFF1 (usb offsite)"),
        2,
        "{logs:?}"
    );
    assert!(
        logs.has("INFO listening for media (1 enrolled)"),
        "{logs:?}"
    );
    assert!(logs.errors().is_empty(), "{logs:?}");
}

#[test]
fn a_removal_in_each_form_cancels_the_running_job() {
    for (what, gone) in [
        ("remove", remove("/dev/sdb", "u1")),
        ("change with SYSTEMD_READY=0", not_ready("/dev/sdb", "u1")),
        ("change without ID_FS_*", lost_fs("/dev/sdb")),
    ] {
        let w = World::new();
        w.enroll("OFF1", "u1");
        let logs = w.listen(vec![
            add("/dev/sdb", "u1"),
            wait("start OFF1#1 on /dev/sdb"),
            gone,
            // Cancelled by the removal, before the daemon is asked to stop.
            wait("end OFF1#1"),
            Step::Tick,
            Step::Stop,
        ]);
        assert!(w.t.at("cancelled OFF1#1") < w.t.at("stop"), "{what}");
        assert!(
            logs.has("WARN OFF1 went away during its copy: stopping the job"),
            "{what}: {logs:?}"
        );
        assert_eq!(w.state("OFF1").0, MediumState::RemovedDuringCopy, "{what}");
        assert_eq!(w.t.starts().len(), 1, "{what}");
    }
}

#[test]
fn another_filesystem_on_the_same_node_cancels_the_old_job() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    w.enroll("OFF2", "u2");
    let logs = w.listen(vec![
        add("/dev/sdb", "u1"),
        wait("start OFF1#1 on /dev/sdb"),
        // A card reader: one card out, another in, and only a `change` to say so.
        change("/dev/sdb", "u2"),
        wait("start OFF2#1 on /dev/sdb"),
        wait("end OFF1#1"),
        Step::Stop,
    ]);
    assert!(w.t.at("cancelled OFF1#1") < w.t.at("stop"));
    assert!(w.t.at("stop") < w.t.at("cancelled OFF2#1"));
    assert!(logs.errors().is_empty(), "{logs:?}");
}

#[test]
fn a_device_not_enrolled_is_left_alone_and_a_namesake_is_warned_about() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    let logs = w.listen(vec![
        with_label(add("/dev/sdb", "u9"), "OFF1"),
        with_label(change("/dev/sdb", "u9"), "OFF1"),
        with_label(add("/dev/sdc", "u8"), "PHOTOS"),
        add("/dev/sdd", "u7"),
        Step::Tick,
        Step::Stop,
    ]);
    assert!(w.t.starts().is_empty());
    assert_eq!(
        logs.count("WARN /dev/sdb is labelled OFF1 like enrolled medium OFF1, but its filesystem UUID is u9, not u1: left alone"),
        1,
        "said once per insertion: {logs:?}"
    );
    assert_eq!(logs.count("is labelled"), 1, "{logs:?}");
    assert!(logs.has("DEBUG /dev/sdc (uuid u8) is not enrolled: left alone"));
    assert!(logs.errors().is_empty(), "{logs:?}");
    assert_eq!(w.state("OFF1").0, MediumState::Enrolled);
}

#[test]
fn a_live_twin_is_refused_without_touching_the_state_of_the_medium_being_written() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    let logs = w.listen(vec![
        add("/dev/sdb", "u1"),
        wait("start OFF1#1 on /dev/sdb"),
        // A byte clone plugged in beside it: /dev/sdb still holds the filesystem.
        add("/dev/sdc", "u1"),
        change("/dev/sdc", "u1"),
        Step::Sleep(20),
        Step::Tick,
        Step::State("OFF1", MediumState::Copying),
        Step::Stop,
    ]);
    let refusal = "ERROR /dev/sdb and /dev/sdc both claim medium OFF1 (filesystem UUID u1); refusing /dev/sdc: one of them is a clone";
    assert_eq!(logs.count(refusal), 1, "{logs:?}");
    assert_eq!(w.t.starts(), ["OFF1#1 on /dev/sdb"]);
    // The job on /dev/sdb was not disturbed: cancelled only by the stop, and the state is its.
    assert!(w.t.at("stop") < w.t.at("cancelled OFF1#1"));
    assert_eq!(
        w.state("OFF1"),
        (MediumState::RemovedDuringCopy, String::new())
    );
}

#[test]
fn a_twin_of_a_medium_whose_job_ended_is_refused_and_says_so_in_its_state() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    let logs = w.run(
        Mode::Listen,
        Ends::After(Duration::ZERO),
        Vec::new(),
        vec![
            add("/dev/sdb", "u1"),
            wait("end OFF1#1"),
            // Its thread returns just after.
            Step::Sleep(50),
            add("/dev/sdc", "u1"),
            Step::Tick,
            Step::Stop,
        ],
    );
    assert_eq!(w.t.starts(), ["OFF1#1 on /dev/sdb"]);
    let (state, message) = w.state("OFF1");
    assert_eq!(state, MediumState::Refused);
    assert!(message.contains("both claim medium OFF1"), "{message}");
    assert_eq!(logs.errors().len(), 1, "{logs:?}");
}

/// Regression (`fifty_quick_insert_remove_cycles` in CI): a medium pulled from loop0 and
/// plugged into loop1, and udev delivered loop1's event before loop0's removal. The stale loop0
/// slot was taken for a live twin and the insertion refused, with an ERROR.
#[test]
fn a_stale_slot_is_taken_as_removed_not_as_a_twin() {
    let w = World::new();
    w.enroll("FLAKY", "u1");
    let logs = w.run(
        Mode::Listen,
        Ends::WhenReleased,
        Vec::new(),
        vec![
            add("/dev/loop0", "u1"),
            wait("start FLAKY#1 on /dev/loop0"),
            Step::Pull("/dev/loop0"),
            change("/dev/loop1", "u1"),
            wait("cancelled FLAKY#1"),
            // The new job waits for the old one (it may still be unmounting the medium).
            Step::Sleep(30),
            Step::Release("FLAKY#1"),
            wait("start FLAKY#2 on /dev/loop1"),
            // loop0's removal, late: nothing of loop0's is left to cancel.
            not_ready("/dev/loop0", "u1"),
            remove("/dev/loop0", "u1"),
            Step::Tick,
            Step::Release("FLAKY#2"),
            wait("end FLAKY#2"),
            Step::Stop,
        ],
    );
    assert!(logs.errors().is_empty(), "{logs:?}");
    assert!(!logs.has("both claim"), "{logs:?}");
    assert!(
        logs.has("INFO /dev/loop0 no longer holds medium FLAKY (its removal is not reported yet): taking it as removed"),
        "{logs:?}"
    );
    assert_eq!(logs.count("is medium FLAKY"), 2, "{logs:?}");
    assert!(w.t.at("end FLAKY#1") < w.t.at("start FLAKY#2 on /dev/loop1"));
    assert!(
        !w.t.lines().contains(&"cancelled FLAKY#2".to_string()),
        "the late removal of loop0 cancelled loop1's job"
    );
    assert_eq!(w.state("FLAKY").0, MediumState::SafeToRemove);
}

#[test]
fn a_medium_of_another_repository_is_refused() {
    let w = World::new();
    w.enroll_with("OFF1", "u1", "repo-2", None);
    let logs = w.listen(vec![add("/dev/sdb", "u1"), Step::Tick, Step::Stop]);
    assert!(w.t.starts().is_empty());
    let msg = format!(
        "medium OFF1 belongs to repository {}, this daemon serves {}",
        repo("repo-2"),
        repo(REPO)
    );
    assert!(logs.has(&format!("ERROR {msg}")), "{logs:?}");
    assert_eq!(w.state("OFF1"), (MediumState::Refused, msg));
}

#[test]
fn a_serial_mismatch_is_refused_and_a_missing_serial_is_not() {
    let w = World::new();
    w.enroll_with("SER", "u1", REPO, Some("GOOD0001"));
    let logs = w.listen(vec![
        with_serial(add("/dev/sdb", "u1"), "EVIL0002"),
        Step::Tick,
        Step::State("SER", MediumState::Refused),
        remove("/dev/sdb", "u1"),
        with_serial(add("/dev/sdc", "u1"), "GOOD0001"),
        wait("start SER#1 on /dev/sdc"),
        remove("/dev/sdc", "u1"),
        wait("end SER#1"),
        // udev knows no serial for this device: nothing to compare.
        add("/dev/sdd", "u1"),
        wait("start SER#2 on /dev/sdd"),
        Step::Stop,
    ]);
    let msg = "/dev/sdb has medium SER's filesystem UUID but serial EVIL0002 (enrolled: GOOD0001): a cloned filesystem?";
    assert_eq!(logs.errors(), [&format!("ERROR {msg}")]);
    assert_eq!(w.t.starts(), ["SER#1 on /dev/sdc", "SER#2 on /dev/sdd"]);
}

#[test]
fn a_reinsertion_waits_for_the_cancelled_job_of_the_same_medium() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    w.enroll("OFF2", "u2");
    w.run(
        Mode::Listen,
        Ends::WhenReleased,
        Vec::new(),
        vec![
            add("/dev/sdb", "u1"),
            wait("start OFF1#1 on /dev/sdb"),
            remove("/dev/sdb", "u1"),
            wait("cancelled OFF1#1"),
            // Plugged in again at once, and another medium meanwhile, which does not wait.
            add("/dev/sdb", "u1"),
            add("/dev/sdc", "u2"),
            wait("start OFF2#1 on /dev/sdc"),
            Step::Sleep(30),
            Step::Release("OFF1#1"),
            wait("start OFF1#2 on /dev/sdb"),
            Step::Release("OFF1#2"),
            Step::Release("OFF2#1"),
            Step::Stop,
        ],
    );
    assert!(w.t.at("release OFF1#1") < w.t.at("end OFF1#1"));
    assert!(w.t.at("end OFF1#1") < w.t.at("start OFF1#2 on /dev/sdb"));
    assert!(w.t.at("start OFF2#1 on /dev/sdc") < w.t.at("release OFF1#1"));
}

#[test]
fn shutdown_cancels_running_jobs_and_waits_for_them() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    w.enroll("OFF2", "u2");
    let logs = w.run(
        Mode::Listen,
        Ends::WhenCancelled,
        vec![present("/dev/sdb", "u1")],
        vec![
            add("/dev/sdc", "u2"),
            wait("start OFF1#1 on /dev/sdb"),
            wait("start OFF2#1 on /dev/sdc"),
            Step::Stop,
        ],
    );
    // `run` returned: both jobs had ended, cancelled by the stop.
    for job in ["OFF1#1", "OFF2#1"] {
        assert!(w.t.at("stop") < w.t.at(&format!("cancelled {job}")));
        assert!(w.t.at(&format!("cancelled {job}")) < w.t.at(&format!("end {job}")));
    }
    assert_eq!(w.state("OFF1").0, MediumState::RemovedDuringCopy);
    assert_eq!(w.state("OFF2").0, MediumState::RemovedDuringCopy);
    assert!(logs.has("INFO asked by the test: stopping"), "{logs:?}");
}

#[test]
fn once_handles_the_present_devices_and_returns() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    w.enroll("OFF2", "u2");
    let logs = w.run(
        Mode::Once,
        Ends::After(Duration::from_millis(50)),
        vec![present("/dev/sdb", "u1"), present("/dev/sdc", "u9")],
        // No events are read in `Mode::Once`.
        vec![add("/dev/sdd", "u2")],
    );
    assert_eq!(w.t.starts(), ["OFF1#1 on /dev/sdb"]);
    assert!(
        w.t.lines().contains(&"end OFF1#1".to_string()),
        "returned before its job ended"
    );
    assert_eq!(w.state("OFF1").0, MediumState::SafeToRemove);
    assert!(!logs.has("listening for media"), "{logs:?}");
    // A stop asked for meanwhile cancels the job.
    let w = World::new();
    w.enroll("OFF1", "u1");
    w.run(
        Mode::Once,
        Ends::WhenCancelled,
        vec![present("/dev/sdb", "u1")],
        vec![wait("start OFF1#1 on /dev/sdb"), Step::Stop],
    );
    assert!(w.t.at("stop") < w.t.at("end OFF1#1"));
}

#[test]
fn runs_left_running_by_a_killed_daemon_are_closed_at_start() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    let mut cat = Catalog::open(&w.setup.catalog).unwrap();
    cat.begin_medium_run(&medium_id("OFF1"), 1).unwrap();
    drop(cat);
    let logs = w.listen(vec![Step::Stop]);
    assert!(logs.has("WARN 1 copy runs were interrupted"), "{logs:?}");
    let cat = Catalog::open(&w.setup.catalog).unwrap();
    assert_eq!(
        cat.medium_runs(&medium_id("OFF1"), 5).unwrap()[0].outcome,
        CopyOutcome::Interrupted
    );
}

#[test]
fn presence_is_recorded_as_media_come_and_go() {
    let w = World::new();
    w.enroll("OFF1", "u1");
    w.enroll("OFF2", "u2");
    w.enroll("GONE", "u3");
    // GONE was plugged in when a daemon last ran; it is not there now.
    let mut cat = Catalog::open(&w.setup.catalog).unwrap();
    cat.set_medium_presence(&medium_id("GONE"), Presence::PluggedIn, 5)
        .unwrap();
    drop(cat);
    let p = |label, v| Step::Presence(label, v);
    w.run(
        Mode::Listen,
        Ends::After(Duration::from_millis(1)),
        vec![present("/dev/sdb", "u1")],
        vec![
            p("OFF1", Some(Presence::PluggedIn)),
            p("GONE", Some(Presence::Removed)),
            p("OFF2", None),
            add("/dev/sdc", "u2"),
            Step::Tick,
            p("OFF2", Some(Presence::PluggedIn)),
            wait("end OFF2#1"),
            Step::Tick,
            // The job ended: still plugged in until it goes.
            p("OFF2", Some(Presence::PluggedIn)),
            not_ready("/dev/sdc", "u2"),
            Step::Tick,
            p("OFF2", Some(Presence::Removed)),
            // Moved to another node before its removal from the first is reported: the first
            // is taken as removed, the second plugs it in again, and the late removal of the
            // first changes nothing.
            Step::Pull("/dev/sdb"),
            add("/dev/sdd", "u1"),
            Step::Tick,
            p("OFF1", Some(Presence::PluggedIn)),
            remove("/dev/sdb", "u1"),
            Step::Tick,
            p("OFF1", Some(Presence::PluggedIn)),
            remove("/dev/sdd", "u1"),
            Step::Tick,
            p("OFF1", Some(Presence::Removed)),
            Step::Stop,
        ],
    );
    let cat = Catalog::open(&w.setup.catalog).unwrap();
    let gone = cat.medium_by_label("GONE").unwrap().unwrap();
    assert_eq!(gone.last_seen_ns, Some(5), "when it went is not known");
    // (The fake jobs record their states as seen at 1 and 2; OFF2's ended before it went.)
    let off2 = cat.medium_by_label("OFF2").unwrap().unwrap();
    assert!(off2.last_seen_ns.unwrap() > 5, "seen until it went");
}
