//! Block devices as udev sees them: the devices present at start, then the monitor's events.
//! The only module that touches libudev. [`Udev`] is the daemon's [`Devices`] in production.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::daemon::{Devices, Mode};

/// The udev tag `udev-rules/70-bakfs.rules` puts on candidate devices.
pub const TAG: &str = "bakfs";

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Present at start (enumerated).
    Present,
    Add,
    Change,
    Remove,
    Other,
}

/// A block device and the udev properties mediad uses.
#[derive(Debug, Clone)]
pub struct Dev {
    pub action: Action,
    pub devnode: PathBuf,
    pub fs_uuid: Option<String>,
    pub fs_label: Option<String>,
    pub fs_type: Option<String>,
    pub serial: Option<String>,
    pub bus: Option<String>,
    /// False when udev says `SYSTEMD_READY=0` (a loop device detached, a medium going away).
    pub ready: bool,
    /// Whether the bakfs rule tagged it.
    pub tagged: bool,
}

impl Dev {
    /// Whether this event means the medium is gone (or going).
    pub fn is_gone(&self) -> bool {
        self.action == Action::Remove || !self.ready || self.fs_uuid.is_none()
    }
}

fn prop(d: &udev::Device, key: &str) -> Option<String> {
    d.property_value(key)
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
}

fn to_dev(d: &udev::Device, action: Action) -> Option<Dev> {
    let devnode = d.devnode()?.to_path_buf();
    let tagged = prop(d, "TAGS").is_some_and(|t| t.split(':').any(|x| x == TAG))
        || prop(d, "CURRENT_TAGS").is_some_and(|t| t.split(':').any(|x| x == TAG));
    Some(Dev {
        action,
        devnode,
        fs_uuid: prop(d, "ID_FS_UUID"),
        fs_label: prop(d, "ID_FS_LABEL"),
        fs_type: prop(d, "ID_FS_TYPE"),
        serial: prop(d, "ID_SERIAL_SHORT").or_else(|| prop(d, "ID_SERIAL")),
        bus: prop(d, "ID_BUS"),
        ready: prop(d, "SYSTEMD_READY").as_deref() != Some("0"),
        tagged,
    })
}

/// The block devices present now.
///
/// # Errors
/// libudev errors.
pub fn present() -> Result<Vec<Dev>> {
    let mut e = udev::Enumerator::new().context("udev enumerator")?;
    e.match_subsystem("block")?;
    Ok(e.scan_devices()?
        .filter_map(|d| to_dev(&d, Action::Present))
        .collect())
}

/// A udev monitor of block devices. Not `Send`: it stays on the daemon's main thread.
pub struct Monitor {
    socket: udev::MonitorSocket,
}

impl Monitor {
    /// Listens for events of the `block` subsystem (after rule processing).
    ///
    /// # Errors
    /// libudev errors.
    pub fn new() -> Result<Self> {
        let socket = udev::MonitorBuilder::new()
            .context("udev monitor")?
            .match_subsystem("block")?
            .listen()
            .context("udev monitor: listen")?;
        Ok(Self { socket })
    }

    /// The socket to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Events received so far (never blocks).
    pub fn drain(&self) -> Vec<Dev> {
        self.socket
            .iter()
            .filter_map(|ev| {
                let action = match ev.event_type() {
                    udev::EventType::Add => Action::Add,
                    udev::EventType::Change => Action::Change,
                    udev::EventType::Remove => Action::Remove,
                    _ => Action::Other,
                };
                to_dev(&ev.device(), action)
            })
            .filter(|d| d.action != Action::Other)
            .collect()
    }
}

/// The daemon's devices: udev's enumeration and monitor, and the device nodes themselves.
pub struct Udev {
    /// None in [`Mode::Once`] (`--once`): only the devices present at start are handled.
    monitor: Option<Monitor>,
    /// Readable when the daemon is asked to stop (the signalfd): ends a wait early.
    wake: OwnedFd,
}

impl Udev {
    /// Starts listening for events now (in [`Mode::Listen`]), so that a device plugged in before
    /// [`Devices::present`] enumerates is not missed. `wake` ends a [`Devices::wait`] early
    /// when it reads ready.
    ///
    /// # Errors
    /// libudev errors.
    pub fn new(mode: Mode, wake: OwnedFd) -> Result<Self> {
        let monitor = match mode {
            Mode::Listen => Some(Monitor::new()?),
            Mode::Once => None,
        };
        Ok(Self { monitor, wake })
    }
}

impl Devices for Udev {
    fn present(&mut self) -> Result<Vec<Dev>> {
        present()
    }

    fn wait(&mut self, timeout: Duration) -> Result<Vec<Dev>> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = vec![PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &self.monitor {
            fds.push(PollFd::new(m.fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        Ok(self
            .monitor
            .as_ref()
            .map(Monitor::drain)
            .unwrap_or_default())
    }

    fn holds(&self, node: &Path, uuid: &str) -> bool {
        holds(node, uuid)
    }
}

/// Whether the device node `node` still holds the filesystem `uuid`: it still has a medium
/// behind it ([`crate::medium::block::still_there`]), it is not a loop device on its way out, and
/// `blkid -p` reads that UUID on it now.
pub fn holds(node: &Path, uuid: &str) -> bool {
    crate::medium::block::still_there(node)
        && !loop_detaching(node)
        && bakfs_host::mounts::probe(node).is_ok_and(|fs| fs.uuid == uuid)
}

/// Whether `node` is a loop device with its autoclear flag set. `losetup -d` of a loop device
/// whose filesystem is mounted sets it, and the kernel keeps the device until the filesystem
/// is unmounted: the node is on its way out, and the image attached to another loop device
/// meanwhile is the same medium moved, not a clone. (`mount -o loop` and udisks set the flag
/// too: on such loop devices a clone is not told from the medium.)
fn loop_detaching(node: &Path) -> bool {
    let Some(name) = node.file_name() else {
        return false;
    };
    let flag = Path::new("/sys/class/block")
        .join(name)
        .join("loop/autoclear");
    std::fs::read_to_string(flag).is_ok_and(|s| s.trim() == "1")
}

/// For log lines.
pub fn describe(d: &Dev) -> String {
    let s = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    format!(
        "{} {:?} uuid={} label={} type={} bus={} ready={} tagged={}",
        d.devnode.display(),
        d.action,
        s(&d.fs_uuid),
        s(&d.fs_label),
        s(&d.fs_type),
        s(&d.bus),
        d.ready,
        d.tagged
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::holds;

    /// `holds` on files: a node that is gone or empty holds nothing; one with a filesystem
    /// holds its UUID only (blkid reads files as it reads devices).
    #[test]
    fn holds_reads_what_is_behind_the_node_now() {
        let d = tempfile::tempdir().unwrap();
        let uuid = "5f0c2d3e-1c7b-4a51-9a57-0d5c1e0b7a11";
        assert!(!holds(&d.path().join("gone"), uuid));
        let img = d.path().join("img");
        std::fs::File::create(&img).unwrap();
        assert!(!holds(&img, uuid), "an empty node (a detached loop device)");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        assert!(!holds(&img, uuid), "no filesystem");
        let made = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-U", uuid])
            .arg(&img)
            .status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("mkfs.ext4 is not installed: the rest is not tested");
            return;
        }
        assert!(holds(&img, uuid));
        assert!(!holds(&img, "another-uuid"), "another filesystem now");
    }
}
