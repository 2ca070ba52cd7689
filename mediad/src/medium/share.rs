//! A NAS share (an NFS, SMB or sshfs mount): a directory that a network filesystem is mounted
//! on now and then. Its files are an [`FsTree`], the same `bakfs/` directory as on a stick.
//!
//! Two rules make it safe:
//! - **Never a bare mount point.** `ready` finds the share's path in the mount table and checks
//!   that its filesystem is not its parent's; without a mount there, or without the identity
//!   of this medium and repository, nothing is written. (Backup tools have filled root
//!   filesystems by writing into the empty directory an unmounted share leaves.)
//! - **A hung share never hangs the daemon.** Every operation that touches the share runs
//!   under an [`OpClock`] the daemon reads: one that takes longer than `[mediad]
//!   share_timeout` gets its job abandoned and reported, while the thread stays blocked in the
//!   kernel until the network filesystem gives up.
//!
//! When the share is enrolled with a source, `ready` mounts it itself if nothing is mounted
//! there (`mount -t <type> -o <options> <source> <path>`, under the timeout) and `release`
//! unmounts what it mounted; a share mounted by the system is left mounted.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakfs_core::catalog::Share;
use bakfs_core::medium::Identity;
use bakfs_core::repo::backend::{FileKind, Location};
use bakfs_core::settings::CommandLine;
use bakfs_host::{command, mountinfo, mounts};

use super::fs::FsTree;
use super::{Files, Flush, Inventory, Medium, Note};
use crate::error::CopyError;
use crate::primary::Source;

/// A share with less room than this after a failed write is taken as full (a pack is at most
/// 64 MiB; the write that failed was cut short by the lack of room).
const FULL_BELOW: u64 = 64 << 20;

/// The last operation number given, and the operations under way by number.
type Ops = (u64, BTreeMap<u64, (Instant, String)>);

/// The operations a job has under way on a share, and since when. The job runs every operation
/// on the share through it (the copy and the read-back run on two threads, so there may be two);
/// the daemon reads the oldest once a tick.
#[derive(Debug, Default)]
pub struct OpClock {
    ops: Mutex<Ops>,
    /// Set when the job unmounts the share it mounted: that unmount is no share going away.
    releasing: AtomicBool,
    /// Set once the job mounted the share itself.
    mounted_here: AtomicBool,
    /// Why the daemon abandoned the job, once it did: what the job records when it comes back.
    abandoned: Mutex<Option<String>>,
}

impl OpClock {
    /// Whether the job is unmounting the share it mounted itself.
    pub fn releasing(&self) -> bool {
        self.releasing.load(Ordering::Relaxed)
    }

    /// Whether the job mounted the share itself (so the daemon may force it off).
    pub fn mounted_here(&self) -> bool {
        self.mounted_here.load(Ordering::Relaxed)
    }

    /// The daemon gave the job up, for `why`.
    pub fn abandon(&self, why: &str) {
        *self.abandoned.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
    }

    /// Why the daemon gave the job up, if it did.
    pub fn abandoned(&self) -> Option<String> {
        self.abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` as operation `what`.
    pub fn run<T>(&self, what: impl Into<String>, f: impl FnOnce() -> T) -> T {
        let id = {
            let mut g = self.lock();
            g.0 += 1;
            let id = g.0;
            g.1.insert(id, (Instant::now(), what.into()));
            id
        };
        let r = f();
        self.lock().1.remove(&id);
        r
    }

    /// The oldest operation under way, and for how long, if there is one.
    pub fn oldest(&self) -> Option<(Duration, String)> {
        self.lock()
            .1
            .values()
            .min_by_key(|(t, _)| *t)
            .map(|(t, what)| (t.elapsed(), what.clone()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ops> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A share during its job.
#[derive(Debug)]
pub struct ShareMedium {
    share: Share,
    /// The filesystem type the share had when enrolled: what it is mounted as.
    fs_type: String,
    label: String,
    files: ShareFiles,
    timeout: Duration,
    /// Whether this job mounted it (and so unmounts it).
    mounted_here: bool,
}

impl ShareMedium {
    /// The share `share` of medium `label`; `clock` is the job's, read by the daemon.
    pub fn new(
        share: &Share,
        fs_type: &str,
        label: &str,
        clock: Arc<OpClock>,
        timeout: Duration,
    ) -> Self {
        Self {
            fs_type: fs_type.to_string(),
            files: ShareFiles {
                tree: FsTree::new(&share.path),
                clock,
                path: share.path.clone(),
                dev: std::sync::OnceLock::new(),
            },
            share: share.clone(),
            label: label.to_string(),
            timeout,
            mounted_here: false,
        }
    }

    fn path(&self) -> &Path {
        &self.share.path
    }

    /// Mounts the share with its configured source (the command is killed at the timeout).
    fn mount(&mut self) -> Result<(), CopyError> {
        let Some(m) = &self.share.mount else {
            return Err(CopyError::Refused(format!(
                "nothing is mounted on {}: not writing to a bare mount point",
                self.path().display()
            )));
        };
        let mut argv = vec!["mount".to_string(), "-t".into(), self.fs_type.clone()];
        if !m.options.is_empty() {
            argv.extend(["-o".to_string(), m.options.clone()]);
        }
        argv.extend([m.source.clone(), self.path().display().to_string()]);
        let spec = command::Spec {
            timeout: Some(self.timeout),
            ..command::Spec::new("mount", CommandLine::Argv(argv))
        };
        tracing::info!(medium = %self.label, "mounting {} on {}", m.source, self.path().display());
        self.files
            .clock
            .run(format!("mounting {}", m.source), || command::run(&spec))
            .map_err(|e| CopyError::Io(e.to_string()))?;
        self.mounted_here = true;
        self.files.clock.mounted_here.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl Medium for ShareMedium {
    /// Finds the share mounted on its path (mounting it first if this daemon mounts it), checks
    /// that the mount is not the parent's filesystem, and reads the identity.
    fn ready(&mut self) -> Result<Identity, CopyError> {
        let mounted = |p: &Path| mountinfo::mount_at(p).map_err(|e| CopyError::io(p, &e));
        if mounted(self.path())?.is_none() {
            self.mount()?;
        }
        let Some(m) = mounted(self.path())? else {
            return Err(CopyError::Refused(format!(
                "nothing is mounted on {}: not writing to a bare mount point",
                self.path().display()
            )));
        };
        let path = self.path().to_path_buf();
        let clock = self.files.clock.clone();
        let dev = clock.run(format!("looking at {}", path.display()), || {
            same_fs_as_parent(&path).and_then(|(same, dev)| {
                if same {
                    Err(CopyError::Refused(format!(
                        "{} ({} {}) is on the same filesystem as its parent directory: not writing to what may be the local disk",
                        path.display(),
                        m.fs_type,
                        m.source
                    )))
                } else {
                    Ok(dev)
                }
            })
        })?;
        let _ = self.files.dev.set(dev);
        clock.run("reading the identity", || self.files.tree.identity())
    }

    fn files(&self) -> &dyn Files {
        &self.files
    }

    fn abandoned(&self) -> Option<String> {
        self.files.clock.abandoned()
    }

    /// Unmounts the share if this job mounted it (lazily if it is busy or hung).
    fn release(&mut self) -> Result<(), CopyError> {
        if !std::mem::take(&mut self.mounted_here) {
            return Ok(());
        }
        let path = self.path().to_path_buf();
        self.files.clock.releasing.store(true, Ordering::Relaxed);
        self.files
            .clock
            .run("unmounting", || mounts::unmount(&path))
            .map_err(|e| CopyError::Io(format!("unmounting {}: {e}", path.display())))
    }
}

/// Whether `path` and its parent directory are on one filesystem, and `path`'s `st_dev`.
fn same_fs_as_parent(path: &Path) -> Result<(bool, u64), CopyError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dev = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.dev())
            .map_err(|e| CopyError::io(p, &e))
    };
    let d = dev(path)?;
    Ok((d == dev(parent)?, d))
}

/// The share's files: an [`FsTree`] whose every operation runs under the job's clock, and only
/// while the filesystem found mounted by `ready` is still the one on the share's path (an
/// unmounted share must not turn into writes to the directory underneath).
#[derive(Debug)]
pub struct ShareFiles {
    tree: FsTree,
    clock: Arc<OpClock>,
    path: std::path::PathBuf,
    /// The share's `st_dev`, once ready.
    dev: std::sync::OnceLock<u64>,
}

impl ShareFiles {
    /// Runs `f` as operation `what`, if the share is still mounted.
    fn op<T>(
        &self,
        what: impl Into<String>,
        f: impl FnOnce() -> Result<T, CopyError>,
    ) -> Result<T, CopyError> {
        self.clock.run(what, || {
            self.still_mounted()?;
            f()
        })
    }

    /// A write error on a share whose server says it has no room left is [`CopyError::Full`]:
    /// SFTP has no "no space" status (sshfs reports EIO), and NFS may report ENOSPC only at the
    /// close.
    fn full_or(&self, e: CopyError) -> CopyError {
        match e {
            CopyError::Io(m) => match self.tree.free_bytes() {
                Ok(free) if free < FULL_BELOW => {
                    CopyError::Full(format!("{m} (the share has {free} bytes free)"))
                }
                _ => CopyError::Io(m),
            },
            e => e,
        }
    }

    fn still_mounted(&self) -> Result<(), CopyError> {
        let now = std::fs::symlink_metadata(&self.path).map(|m| m.dev());
        match (now, self.dev.get()) {
            (Ok(d), Some(want)) if d == *want => Ok(()),
            (Ok(_), _) => {
                tracing::warn!(
                    "the share is no longer mounted on {}: stopping",
                    self.path.display()
                );
                Err(CopyError::Cancelled)
            }
            (Err(e), _) => Err(CopyError::io(&self.path, &e)),
        }
    }
}

impl Files for ShareFiles {
    fn prepare(&self) -> Result<(), CopyError> {
        self.op("preparing the repository", || self.tree.prepare())
    }

    fn inventory(&self) -> Result<Inventory, CopyError> {
        self.op("listing the files", || self.tree.inventory())
    }

    fn write(
        &self,
        kind: FileKind,
        name: &str,
        from: &mut Source,
        cancel: &AtomicBool,
    ) -> Result<(blake3::Hash, u64), CopyError> {
        self.op(format!("writing {kind} {name}"), || {
            self.tree
                .write(kind, name, from, cancel)
                .map_err(|e| self.full_or(e))
        })
    }

    fn sync(&self) -> Result<(), CopyError> {
        self.op("syncing", || self.tree.sync())
    }

    fn read_back(
        &self,
        kind: FileKind,
        name: &str,
        size: u64,
        flush: Flush,
        cancel: &AtomicBool,
    ) -> Result<blake3::Hash, CopyError> {
        self.op(format!("reading back {kind} {name}"), || {
            self.tree.read_back(kind, name, size, flush, cancel)
        })
    }

    fn remove(&self, kind: FileKind, name: &str) -> Result<(), CopyError> {
        self.op(format!("removing {kind} {name}"), || {
            self.tree.remove(kind, name)
        })
    }

    fn free_bytes(&self) -> Result<u64, CopyError> {
        self.op("measuring free space", || self.tree.free_bytes())
    }

    fn repository(&self) -> Location {
        self.tree.repository()
    }

    fn write_note(&self, name: Note, text: &[u8]) -> Result<(), CopyError> {
        self.op(format!("writing {}", name.file_name()), || {
            self.tree.write_note(name, text)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_shows_the_oldest_operation_under_way() {
        let clock = Arc::new(OpClock::default());
        assert!(clock.oldest().is_none());
        let (tx, rx) = std::sync::mpsc::channel();
        let c = clock.clone();
        let t = std::thread::spawn(move || {
            c.run("writing pack 1", || {
                let c2 = c.clone();
                // A second operation (the read-back thread) starts and ends meanwhile.
                c2.run("reading back pack 0", || {
                    std::thread::sleep(Duration::from_millis(5))
                });
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            })
        });
        rx.recv().unwrap();
        let (took, what) = clock.oldest().unwrap();
        assert_eq!(what, "writing pack 1");
        assert!(took >= Duration::from_millis(5));
        t.join().unwrap();
        assert!(clock.oldest().is_none());
        assert!(clock.abandoned().is_none());
        clock.abandon("stopped answering");
        assert_eq!(clock.abandoned().as_deref(), Some("stopped answering"));
    }

    #[test]
    fn a_bare_mount_point_is_refused_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let share = Share {
            path: dir.path().join("nas"),
            mount: None,
        };
        std::fs::create_dir_all(&share.path).unwrap();
        let mut m = ShareMedium::new(
            &share,
            "nfs4",
            "NAS",
            Arc::default(),
            Duration::from_secs(5),
        );
        match m.ready() {
            Err(CopyError::Refused(why)) => assert!(why.contains("bare mount point"), "{why}"),
            other => panic!("{other:?}"),
        }
        m.release().unwrap();
        assert!(std::fs::read_dir(&share.path).unwrap().next().is_none());
    }
}
