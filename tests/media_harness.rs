//! Helpers for the media tests: systemd-udevd, the bakfs udev rule, loop-backed media and a
//! running bakfs-mediad, each undone when the test ends, pass or fail.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bakfs_e2e::{bin, sh, Env};

/// Media tests share udevd and see each other's devices: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the media-test lock (a failed test does not poison it for the others).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const RULE: &str = "/run/udev/rules.d/70-bakfs.rules";

/// systemd-udevd running with the bakfs rule; the rule is removed and udevd stopped again if
/// this started them. udevd runs as our child (not `--daemon`), so it is reaped when it stops.
pub struct Udev {
    child: Option<Child>,
}

/// Whether a udevd answers on its control socket (a zombie or a dead one does not).
fn udevd_answers() -> bool {
    Command::new("udevadm")
        .args(["control", "--ping", "--timeout=2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Udev {
    pub fn start() -> Self {
        std::fs::create_dir_all("/run/udev/rules.d").unwrap();
        let rule = Path::new(env!("CARGO_MANIFEST_DIR")).join("../udev-rules/70-bakfs.rules");
        std::fs::copy(rule, RULE).unwrap();
        let mut child = None;
        if !udevd_answers() {
            child = Some(
                Command::new("/lib/systemd/systemd-udevd")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("systemd-udevd (Debian package udev) must be installed"),
            );
            wait_until(
                "systemd-udevd to answer",
                Duration::from_secs(20),
                udevd_answers,
            );
        }
        sh("udevadm control --reload && udevadm settle -t 10");
        Self { child }
    }
}

impl Drop for Udev {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(RULE);
        let _ = Command::new("udevadm")
            .args(["control", "--reload"])
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("udevadm").args(["control", "--exit"]).status();
            let t = Instant::now();
            while c.try_wait().ok().flatten().is_none() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A systemd-journald for the test: the one running, or one started here (Debian package
/// `systemd`; it runs without systemd as PID 1) and stopped when the guard is dropped.
pub struct Journald {
    child: Option<Child>,
}

fn journald_answers() -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect("/run/systemd/journal/socket"))
        .is_ok()
}

impl Journald {
    pub fn start() -> Self {
        let mut child = None;
        if !journald_answers() {
            std::fs::create_dir_all("/run/systemd/journal").unwrap();
            child = Some(
                Command::new("/lib/systemd/systemd-journald")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("systemd-journald (Debian package systemd) must be installed"),
            );
            wait_until(
                "systemd-journald to listen",
                Duration::from_secs(20),
                journald_answers,
            );
        }
        Self { child }
    }

    /// The journal's entries of process `pid`, as JSON objects (after asking journald to
    /// write out what it holds).
    pub fn entries_of(&self, pid: u32) -> Vec<serde_json::Value> {
        let _ = Command::new("journalctl").arg("--sync").status();
        let out = Command::new("journalctl")
            .args(["-o", "json", "--no-pager"])
            .arg(format!("_PID={pid}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A filesystem image attached to a loop device (the stand-in for a USB stick).
pub struct Medium {
    pub image: PathBuf,
    pub dev: Option<String>,
}

impl Medium {
    /// A new image of `mib` MiB with a `fs` filesystem labelled `label`.
    pub fn create(e: &Env, name: &str, mib: u64, fs: &str) -> Self {
        let image = e.path(&format!("{name}.img"));
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(mib << 20).unwrap();
        let mkfs = match fs {
            "xfs" => format!("mkfs.xfs -q -L {name} {}", image.display()),
            _ => format!("mkfs.ext4 -q -L {name} {}", image.display()),
        };
        sh(&mkfs);
        Self { image, dev: None }
    }

    /// Plugs it in: attaches the loop device (udev sends `change` with ID_FS_UUID).
    pub fn plug(&mut self) -> String {
        assert!(self.dev.is_none(), "already plugged in");
        let dev = sh(&format!("losetup -f --show {}", self.image.display()))
            .trim()
            .to_string();
        self.dev = Some(dev.clone());
        dev
    }

    /// Pulls it out: detaches the loop device (udev sends `change` with SYSTEMD_READY=0).
    pub fn unplug(&mut self) {
        if let Some(d) = self.dev.take() {
            // A loop whose filesystem is still mounted is detached when it is unmounted.
            let _ = Command::new("losetup").args(["-d", &d]).status();
            settle();
        }
    }

    /// The filesystem UUID.
    pub fn uuid(&self) -> String {
        sh(&format!(
            "blkid -p -s UUID -o value {}",
            self.image.display()
        ))
        .trim()
        .to_string()
    }

    /// Mounts the image read-only at `mp` (for looking at it as a restore host would).
    pub fn inspect(&self, mp: &Path) -> Inspect {
        self.mount_at(mp, "ro,loop")
    }

    /// Mounts the image read-write at `mp` (to plant things on it).
    pub fn tamper(&self, mp: &Path) -> Inspect {
        self.mount_at(mp, "loop")
    }

    fn mount_at(&self, mp: &Path, options: &str) -> Inspect {
        std::fs::create_dir_all(mp).unwrap();
        sh(&format!(
            "mount -o {options} {} {}",
            self.image.display(),
            mp.display()
        ));
        Inspect {
            mp: mp.to_path_buf(),
            image: self.image.clone(),
        }
    }
}

/// The kernel name of a device node (`/dev/loop3` → `loop3`).
pub fn devname(dev: &str) -> String {
    Path::new(dev)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A udev rule that gives one block device (by kernel name) a property, as udev's own rules
/// would: `SYSTEMD_READY=0` for a medium going away, `ID_SERIAL_SHORT` for a stick's serial
/// (loop devices have none). Removed on drop; events after `set` carry the property.
pub struct UdevEnv(PathBuf);

impl UdevEnv {
    pub fn set(devname: &str, key: &str, value: &str) -> Self {
        let rule = PathBuf::from(format!(
            "/run/udev/rules.d/99-zz-bakfs-test-{devname}-{key}.rules"
        ));
        std::fs::write(
            &rule,
            format!("SUBSYSTEM==\"block\", KERNEL==\"{devname}\", ENV{{{key}}}=\"{value}\"\n"),
        )
        .unwrap();
        sh("udevadm control --reload");
        UdevEnv(rule)
    }
}

impl Drop for UdevEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = Command::new("udevadm")
            .args(["control", "--reload"])
            .status();
    }
}

/// Waits until udevd has handled every event so far, so that what a daemon started next
/// reads from udev's database is the devices' state now, not a moment ago.
pub fn settle() {
    let _ = Command::new("udevadm")
        .args(["settle", "-t", "10"])
        .status();
}

impl Drop for Medium {
    fn drop(&mut self) {
        self.unplug();
        // Loops attached to this image by anyone (a test that failed half-way).
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "losetup -j {} -O NAME -n | xargs -r -n1 losetup -d",
                self.image.display()
            ))
            .status();
    }
}

/// A mount of a medium's image, unmounted on drop.
pub struct Inspect {
    mp: PathBuf,
    image: PathBuf,
}

impl Inspect {
    pub fn repo(&self) -> PathBuf {
        self.mp.join("bakfs")
    }
}

impl Drop for Inspect {
    /// Unmounts, then waits for the loop device to be detached and udev to have seen it: a
    /// daemon started right after must not find the image's UUID on a loop that is going away.
    fn drop(&mut self) {
        // A probe (udev's blkid) may hold it a moment: try again, then detach it lazily rather
        // than leave it mounted after the test (a mount of a deleted image was once left so).
        let t = Instant::now();
        while !Command::new("umount")
            .arg(&self.mp)
            .status()
            .is_ok_and(|s| s.success())
        {
            if t.elapsed() > Duration::from_secs(5) {
                let _ = Command::new("umount").arg("-l").arg(&self.mp).status();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let attached = || {
            Command::new("losetup")
                .args(["-j", &self.image.to_string_lossy(), "-O", "NAME", "-n"])
                .output()
                .is_ok_and(|o| !o.stdout.is_empty())
        };
        let t = Instant::now();
        while attached() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        settle();
    }
}

/// A running bakfs-mediad for an environment's repository and catalog.
/// A `bakfs-mediad` command for `e`'s repository and catalog, media mounted under
/// `media_root`, without a password (mediad needs none), with `e`'s variables.
pub fn mediad_cmd(e: &Env, media_root: &Path) -> Command {
    let mut c = Command::new(bin("bakfs-mediad"));
    c.arg("--media-root")
        .arg(media_root)
        .env("BAKFS_REPO", &e.repo)
        .env("BAKFS_STATE_DIR", &e.state)
        .env("XDG_CONFIG_HOME", e.path("no-config"))
        .env("NO_COLOR", "1")
        .envs(e.vars.iter().map(|(k, v)| (k, v)))
        .env_remove("BAKFS_PASSWORD")
        .stdin(Stdio::null());
    c
}

pub struct Mediad {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub media_root: PathBuf,
    pace_ms: Option<u64>,
    args: Vec<String>,
}

impl Mediad {
    pub fn start(e: &Env) -> Self {
        Self::start_paced(e, None)
    }

    /// With a pause after each file written, so a test can act in the middle of a copy.
    pub fn start_paced(e: &Env, pace_ms: Option<u64>) -> Self {
        Self::start_with(e, pace_ms, &[])
    }

    /// With more command-line arguments.
    pub fn start_with(e: &Env, pace_ms: Option<u64>, args: &[&str]) -> Self {
        let mut m = Self {
            child: None,
            log: e.path("mediad.log"),
            media_root: e.path("media"),
            pace_ms,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        m.spawn(e);
        m
    }

    fn spawn(&mut self, e: &Env) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = mediad_cmd(e, &self.media_root);
        c.args(&self.args).stdout(Stdio::null()).stderr(log);
        if let Some(ms) = self.pace_ms {
            c.env("BAKFS_MEDIAD_TEST_PACE_MS", ms.to_string());
        }
        let start_len = self.log_text().matches("listening for media").count();
        self.child = Some(c.spawn().unwrap());
        wait_until("bakfs-mediad to listen", Duration::from_secs(20), || {
            self.log_text().matches("listening for media").count() > start_len
        });
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then start again.
    pub fn kill_and_restart(&mut self, e: &Env) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        self.spawn(e);
    }

    /// Whether the daemon is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Mounts left under the media root.
    pub fn leftover_mounts(&self) -> Vec<String> {
        let root = self.media_root.to_string_lossy().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|mp| mp.starts_with(&root))
            .collect()
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Mediad {
    fn drop(&mut self) {
        self.stop();
        for mp in self.leftover_mounts() {
            let _ = Command::new("umount").args(["-l", &mp]).status();
        }
    }
}

/// Polls `cond` every 100 ms until it holds; panics after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `bakfs media show LABEL --json`.
pub fn show(e: &Env, label: &str) -> serde_json::Value {
    e.json(&["media", "show", label])
}

/// The copy runs of a medium, newest first.
pub fn runs(e: &Env, label: &str) -> Vec<serde_json::Value> {
    show(e, label)["runs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until a medium has more than `before` runs and the newest has ended; returns it.
pub fn wait_run(e: &Env, label: &str, before: usize) -> serde_json::Value {
    wait_until(
        &format!("a copy run on {label} to end"),
        Duration::from_secs(120),
        || {
            let s = show(e, label);
            s["runs_total"].as_u64().unwrap() as usize > before
                && s["runs"][0]["outcome"] != "running"
        },
    );
    runs(e, label)[0].clone()
}

/// Total number of copy runs of a medium (the ledger keeps them all; `show` lists 5).
pub fn run_count(e: &Env, label: &str) -> usize {
    show(e, label)["runs_total"].as_u64().unwrap() as usize
}

/// Snapshot ids the catalog says a medium holds.
pub fn held(e: &Env, label: &str) -> Vec<String> {
    let mut v: Vec<String> = show(e, label)["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// A bakfs command that knows only a medium's directory and the key: no catalog of the
/// primary (its own empty state dir), no primary repository.
pub fn on_medium(e: &Env, repo: &Path, args: &[&str]) -> std::process::Output {
    let mut c = e.cmd();
    c.env("BAKFS_REPO", repo)
        .env("BAKFS_STATE_DIR", e.path("restore-host-state"));
    c.args(args).output().unwrap()
}

/// A zram block device (real kernel add/remove events), removed on drop.
pub struct Zram {
    pub n: Option<u32>,
}

impl Zram {
    /// Creates /dev/zramN of `mib` MiB with an ext4 filesystem (`uuid` if given) and replays its
    /// add event so that udev (with the bakfs rule) records ID_FS_UUID.
    pub fn create(mib: u64, label: &str, uuid: Option<&str>) -> Self {
        let n: u32 = std::fs::read_to_string("/sys/class/zram-control/hot_add")
            .expect("zram (CONFIG_ZRAM) is needed for real add/remove events")
            .trim()
            .parse()
            .unwrap();
        let z = Self { n: Some(n) };
        std::fs::write(
            format!("/sys/block/zram{n}/disksize"),
            format!("{}", mib << 20),
        )
        .unwrap();
        let u = uuid.map(|u| format!("-U {u}")).unwrap_or_default();
        sh(&format!("mkfs.ext4 -q -L {label} {u} /dev/zram{n}"));
        sh(&format!(
            "udevadm trigger --action=add --settle /sys/block/zram{n}"
        ));
        z
    }

    pub fn dev(&self) -> String {
        format!("/dev/zram{}", self.n.unwrap())
    }

    /// Removes the device: the kernel sends a real `remove` event.
    pub fn remove(&mut self) {
        if let Some(n) = self.n.take() {
            let t = Instant::now();
            // EBUSY while something still has it mounted or open.
            while std::fs::write("/sys/class/zram-control/hot_remove", n.to_string()).is_err()
                && t.elapsed() < Duration::from_secs(10)
            {
                let _ = Command::new("umount")
                    .args(["-l", &format!("/dev/zram{n}")])
                    .status();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

impl Drop for Zram {
    fn drop(&mut self) {
        self.remove();
    }
}
