//! A block device with a filesystem (a USB stick, a disk): mounted privately by UUID under the
//! media root while its job runs.

use std::path::{Path, PathBuf};

use bakfs_core::medium::Identity;
use bakfs_host::mounts;

use super::fs::FsTree;
use super::{Files, Medium};
use crate::error::CopyError;

/// The device to work on, as udev announced it.
#[derive(Debug, Clone)]
pub struct Device {
    pub devnode: PathBuf,
    pub fs_type: String,
    pub fs_uuid: String,
}

/// A block device's filesystem, mounted at `<media root>/<uuid>` with
/// `nosuid,nodev,noexec,noatime` (under the systemd unit, in the service's own mount namespace).
#[derive(Debug)]
pub struct BlockDevice {
    dev: Device,
    mount_point: PathBuf,
    tree: FsTree,
    mounted: bool,
}

impl BlockDevice {
    pub fn new(dev: &Device, media_root: &Path) -> Self {
        let mount_point = media_root.join(&dev.fs_uuid);
        Self {
            tree: FsTree::new(&mount_point),
            dev: dev.clone(),
            mount_point,
            mounted: false,
        }
    }
}

impl Medium for BlockDevice {
    /// Mounts the filesystem (a stale mount there, from a killed daemon, is taken down first)
    /// and reads its identity. A device that went away before it could be mounted is
    /// [`CopyError::Cancelled`]: not a failure of the medium.
    fn ready(&mut self) -> Result<Identity, CopyError> {
        let (node, mp) = (&self.dev.devnode, &self.mount_point);
        let _ = mounts::unmount(mp);
        mounts::mount_private(node, &self.dev.fs_type, mp).map_err(|e| {
            if still_there(node) {
                CopyError::Io(format!("mounting {}: {e}", node.display()))
            } else {
                // Pulled out between its event and the mount (or udev's record was stale). Its
                // removal event follows and the next insertion copies.
                tracing::warn!(
                    "{} went away before it could be mounted ({e})",
                    node.display()
                );
                CopyError::Cancelled
            }
        })?;
        self.mounted = true;
        self.tree.identity()
    }

    fn files(&self) -> &dyn Files {
        &self.tree
    }

    /// Unmounts (lazily if the device is busy or gone) and removes the mount point.
    fn release(&mut self) -> Result<(), CopyError> {
        if !std::mem::take(&mut self.mounted) {
            return Ok(());
        }
        let r = mounts::unmount(&self.mount_point)
            .map_err(|e| CopyError::Io(format!("unmounting {}: {e}", self.mount_point.display())));
        let _ = std::fs::remove_dir(&self.mount_point);
        r
    }
}

/// Whether the device node still has a medium behind it (a detached loop device or an emptied
/// card reader reads as 0 bytes; a removed USB stick's node is gone).
pub fn still_there(devnode: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    std::fs::File::open(devnode)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .is_ok_and(|size| size > 0)
}
