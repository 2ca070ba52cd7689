//! Mounting a medium's filesystem privately and probing block devices with `blkid`.

use std::path::Path;

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
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME,
        None::<&str>,
    )
    .map_err(|e| io(target)(e.into()))
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
