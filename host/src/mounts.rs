//! Mounting a medium's filesystem privately and probing block devices with `blkid`.

use std::path::{Path, PathBuf};

use bakfs_core::medium::{io, unsafe_, MediumError};

type Result<T> = std::result::Result<T, MediumError>;

/// What `blkid` says of a block device's filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsInfo {
    pub uuid: String,
    pub label: Option<String>,
    pub fs_type: String,
}

/// Filesystems mediad mounts. Others are refused rather than guessed at.
pub const FS_TYPES: &[&str] = &["ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat"];

/// Probes a block device with `blkid -p` (util-linux).
///
/// # Errors
/// [`MediumError::Tool`] if blkid fails or finds no filesystem UUID.
pub fn probe(device: &Path) -> Result<FsInfo> {
    let out = std::process::Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(device)
        .output()
        .map_err(|e| MediumError::Tool(format!("running blkid: {e}")))?;
    if !out.status.success() {
        return Err(MediumError::Tool(format!(
            "{}: no filesystem found (blkid exit {}); make one first, e.g. mkfs.ext4 -L LABEL {}",
            device.display(),
            out.status.code().unwrap_or(-1),
            device.display()
        )));
    }
    let mut info = FsInfo::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line.split_once('=') {
            Some(("UUID", v)) => info.uuid = v.to_string(),
            Some(("LABEL", v)) => info.label = Some(v.to_string()),
            Some(("TYPE", v)) => info.fs_type = v.to_string(),
            _ => {}
        }
    }
    if info.uuid.is_empty() || info.fs_type.is_empty() {
        return Err(MediumError::Tool(format!(
            "{}: blkid reports no filesystem UUID",
            device.display()
        )));
    }
    Ok(info)
}

/// Mounts `device` (a filesystem of `fs_type`) at `target` with nosuid, nodev, noexec.
///
/// # Errors
/// An unsupported filesystem type; the mount(2) error.
pub fn mount_private(device: &Path, fs_type: &str, target: &Path) -> Result<()> {
    mount_with(device, fs_type, target, nix::mount::MsFlags::empty())
}

/// As [`mount_private`], read-only (a drill reads a medium and never writes it).
///
/// # Errors
/// As [`mount_private`]; EBUSY when the filesystem is mounted read-write elsewhere.
pub fn mount_read_only(device: &Path, fs_type: &str, target: &Path) -> Result<()> {
    mount_with(device, fs_type, target, nix::mount::MsFlags::MS_RDONLY)
}

fn mount_with(
    device: &Path,
    fs_type: &str,
    target: &Path,
    extra: nix::mount::MsFlags,
) -> Result<()> {
    use nix::mount::MsFlags;
    if !FS_TYPES.contains(&fs_type) {
        return Err(unsafe_(
            device,
            format!("filesystem type {fs_type:?} is not one bakfs mounts"),
        ));
    }
    std::fs::create_dir_all(target).map_err(io(target))?;
    nix::mount::mount(
        Some(device),
        target,
        Some(fs_type),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME | extra,
        None::<&str>,
    )
    .map_err(|e| io(target)(e.into()))
}

/// The block device holding the filesystem with UUID `uuid`, if one is attached now: `blkid -U`
/// finds it, and probing the device itself confirms it (a cached answer may be stale).
pub fn device_by_uuid(uuid: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("blkid")
        .args(["-U", uuid])
        .output()
        .ok()?;
    let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && probe(&dev).is_ok_and(|i| i.uuid == uuid)).then_some(dev)
}

/// Where the whole filesystem on block device `device` is mounted already, if it is (the first
/// such mount in this process's mount namespace, from `/proc/self/mountinfo`).
pub fn mounted_at(device: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(device).ok()?.rdev();
    let want = format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // id parent major:minor root mount-point ...; the mount point escapes space as \040.
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && f[2] == want && f[3] == "/")
            .then(|| PathBuf::from(crate::mountinfo::unescape(f[4])))
    })
}

/// Unmounts `target`; if it is busy or its device is gone, detaches it lazily.
///
/// # Errors
/// The umount2(2) error.
pub fn unmount(target: &Path) -> Result<()> {
    use nix::mount::MntFlags;
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => Ok(()), // not mounted
        Err(_) => {
            nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(|e| io(target)(e.into()))
        }
    }
}
