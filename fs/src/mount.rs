//! Mounting and unmounting: `fuse.bakfs`, read-only, nosuid, nodev, default_permissions.
//!
//! As root the filesystem is mounted with mount(2) directly, so that its type is `fuse.bakfs`;
//! other users go through the setuid `fusermount3` helper (package fuse3), which gives the same.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread::JoinHandle;

use bakfs_core::vfs::{Decoded, Vfs};
use fuser::{Config, INodeNo, MountOption, Notifier, Session, SessionACL};
use nix::mount::{MntFlags, MsFlags};

use crate::BakFs;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Let other users in (the kernel still checks each file's permissions).
    pub allow_other: bool,
    /// The source shown in the mount table, `bakfs:<repository id>`.
    pub fsname: String,
    /// Threads answering requests.
    pub threads: usize,
}

/// A mounted filesystem being served by background threads.
pub struct Mounted {
    mountpoint: PathBuf,
    thread: JoinHandle<io::Result<()>>,
}

impl Mounted {
    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Waits until the filesystem is unmounted (by [`unmount`], `umount` or `fusermount3 -u`).
    ///
    /// # Errors
    /// If the session ended with an error.
    pub fn wait(self) -> io::Result<()> {
        self.thread
            .join()
            .map_err(|_| io::Error::other("the FUSE session thread panicked"))?
    }
}

fn config(o: &MountOptions) -> Config {
    let mut c = Config::default();
    c.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(o.fsname.clone()),
        MountOption::Subtype("bakfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoSuid,
        MountOption::NoDev,
    ];
    c.acl = if o.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    c.n_threads = Some(o.threads.max(1));
    c
}

/// mount(2) as root, with the type `fuse.bakfs`. `Ok(None)` if not permitted.
fn mount_sys(mountpoint: &Path, o: &MountOptions) -> io::Result<Option<OwnedFd>> {
    let dev = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("/dev/fuse: {e} (is the fuse module loaded?)"),
            )
        })?;
    let rootmode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    let fd: OwnedFd = dev.into();
    use std::os::fd::AsRawFd;
    let mut data = format!(
        "fd={},rootmode={rootmode:o},user_id={},group_id={},default_permissions",
        fd.as_raw_fd(),
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    if o.allow_other {
        data.push_str(",allow_other");
    }
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    match nix::mount::mount(
        Some(o.fsname.as_str()),
        mountpoint,
        Some("fuse.bakfs"),
        flags,
        Some(data.as_str()),
    ) {
        Ok(()) => Ok(Some(fd)),
        Err(nix::errno::Errno::EPERM) => Ok(None),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("mount {}: {e}", mountpoint.display()),
        )),
    }
}

/// Mounts `vfs` at `mountpoint` and serves it on background threads. Returns once the kernel
/// has completed the FUSE handshake, so the mount answers.
///
/// # Errors
/// If /dev/fuse cannot be opened, the mount is refused, or the handshake fails.
pub fn mount(vfs: Arc<Vfs>, mountpoint: &Path, o: &MountOptions) -> io::Result<Mounted> {
    let mountpoint = mountpoint
        .canonicalize()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", mountpoint.display())))?;
    let fs = BakFs::new(vfs.clone());
    let cfg = config(o);
    let session = if nix::unistd::geteuid().is_root() {
        match mount_sys(&mountpoint, o)? {
            Some(fd) => match Session::from_fd(fs, fd, cfg.acl, cfg.clone()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = unmount(&mountpoint);
                    return Err(e);
                }
            },
            None => Session::new(fs, &mountpoint, &cfg)?,
        }
    } else {
        Session::new(fs, &mountpoint, &cfg)?
    };
    start_page_store(&vfs, session.notifier())?;
    let thread = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || session.run())?;
    Ok(Mounted { mountpoint, thread })
}

/// Stores the chunks the view decodes in the kernel's page cache (`FUSE_NOTIFY_STORE`), so
/// that later reads anywhere in a chunk cost no request: a chunk is about 1 MiB, a read often
/// 4 KiB. From a thread of its own, never a request thread: a store waits for the locks of pages
/// that reads in flight hold, and only the request threads answer those reads.
fn start_page_store(vfs: &Vfs, notifier: Notifier) -> io::Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Decoded>(8);
    vfs.set_page_sink(tx);
    std::thread::Builder::new()
        .name("fuse-store".into())
        .spawn(move || {
            for d in rx {
                for (offset, bytes) in d.pieces() {
                    if let Err(e) = notifier.store(INodeNo(d.ino), offset, bytes) {
                        tracing::debug!("page cache store of inode {} at {offset}: {e}", d.ino);
                    }
                }
            }
        })?;
    Ok(())
}

/// Readahead the kernel is asked for on a bakfs mount, in KiB. FUSE mounts start at 128 KiB
/// (and the INIT reply cannot raise it); whole chunks are about 1 MiB, and with 1 MiB reads a
/// cold sequential read is about a third faster (docs/mount.md).
pub const READ_AHEAD_KB: u32 = 1024;

/// Raises the readahead of the mount at `mountpoint` to [`READ_AHEAD_KB`] through
/// `/sys/class/bdi/MAJ:MIN/read_ahead_kb` (root only; after the mount has answered, since the
/// kernel's INIT handling resets it). Best effort: returns whether it was set.
pub fn tune_readahead(mountpoint: &Path) -> bool {
    let Some(m) = mount_entry(mountpoint) else {
        return false;
    };
    let path = format!("/sys/class/bdi/{}/read_ahead_kb", m.dev);
    match std::fs::write(&path, READ_AHEAD_KB.to_string()) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!("{path}: {e} (readahead left as it is)");
            false
        }
    }
}

/// The filesystem type mounted at `mountpoint`, if something is mounted there.
pub fn is_mounted(mountpoint: &Path) -> Option<String> {
    mount_entry(mountpoint).map(|m| m.fstype)
}

/// What /proc/self/mountinfo says of the mount visible at a path.
struct MountEntry {
    /// `MAJ:MIN` of the mounted device.
    dev: String,
    fstype: String,
}

/// The last mount on `mountpoint` in /proc/self/mountinfo (the one visible there).
fn mount_entry(mountpoint: &Path) -> Option<MountEntry> {
    let want = mountpoint
        .canonicalize()
        .unwrap_or_else(|_| mountpoint.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in info.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let (Some(dev), Some(mp)) = (f.get(2), f.get(4)) else {
            continue;
        };
        if Path::new(&unescape(mp)) == want {
            found = Some(MountEntry {
                dev: (*dev).to_string(),
                fstype: right.split(' ').next().unwrap_or_default().to_string(),
            });
        }
    }
    found
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn fusermount(args: &[&str], mountpoint: &Path) -> io::Result<()> {
    let out = Command::new("fusermount3")
        .args(args)
        .arg(mountpoint)
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("fusermount3: {e} (install the fuse3 package)"),
            )
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Unmounts `mountpoint`; if it is busy, detaches it (it goes once the last user leaves).
///
/// # Errors
/// If nothing is mounted there or unmounting is refused.
pub fn unmount(mountpoint: &Path) -> io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        match nix::mount::umount2(mountpoint, MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                tracing::warn!("{} is busy: detaching it", mountpoint.display());
                nix::mount::umount2(mountpoint, MntFlags::MNT_DETACH).map_err(io::Error::from)
            }
            Err(nix::errno::Errno::EINVAL) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a mount point", mountpoint.display()),
            )),
            Err(e) => Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("unmount {}: {e}", mountpoint.display()),
            )),
        }
    } else {
        fusermount(&["-u"], mountpoint).or_else(|_| fusermount(&["-u", "-z"], mountpoint))
    }
}

/// Makes `mountpoint` usable again if a killed bakfs left it behind ("Transport endpoint is
/// not connected"). Returns whether it did.
///
/// # Errors
/// If the stale mount cannot be removed, or a live filesystem is mounted there.
pub fn recover_stale(mountpoint: &Path) -> io::Result<bool> {
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            if nix::unistd::geteuid().is_root() {
                nix::mount::umount2(mountpoint, MntFlags::MNT_DETACH).map_err(io::Error::from)?;
            } else {
                fusermount(&["-u", "-z"], mountpoint)?;
            }
            tracing::warn!(
                "{}: removed a mount left behind by a process that died",
                mountpoint.display()
            );
            Ok(true)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("{}: {e}", mountpoint.display()),
        )),
        Ok(m) if !m.is_dir() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a directory", mountpoint.display()),
        )),
        Ok(_) => match is_mounted(mountpoint) {
            Some(t) if t.starts_with("fuse.bakfs") => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{}: a bakfs filesystem is already mounted here",
                    mountpoint.display()
                ),
            )),
            _ => Ok(false),
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(super::unescape(r"/mnt/a\040b\134c"), "/mnt/a b\\c");
        assert_eq!(super::unescape(r"/x\04"), r"/x\04");
    }
}
