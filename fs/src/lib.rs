//! bakfs-fs: the FUSE filesystem over bakfs-core's snapshot view ([`bakfs_core::vfs`]).
//!
//! [`BakFs`] answers kernel requests from a [`Vfs`]; [`mount`] mounts it read-only as
//! `fuse.bakfs` and [`unmount`] takes it down. Every request gets an answer: view errors become
//! errno values (a damaged chunk is EIO, never wrong bytes), and nothing on a request path
//! panics.

mod mount;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bakfs_core::format::NodeKind;
use bakfs_core::vfs::{Attr, Vfs, VfsError};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr, Request,
};

pub use mount::{is_mounted, mount, recover_stale, tune_readahead, unmount, MountOptions, Mounted};

/// How long the kernel may keep what never changes (entries inside snapshots).
const STABLE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long it may keep the top level, which changes when snapshots come and go.
const TOP_TTL: Duration = Duration::from_secs(1);

/// The FUSE filesystem.
pub struct BakFs {
    vfs: Arc<Vfs>,
    /// The kernel needs no open/release for files (FUSE_NO_OPEN_SUPPORT).
    no_open: bool,
    /// The kernel needs no opendir/releasedir (FUSE_NO_OPENDIR_SUPPORT).
    no_opendir: bool,
}

impl BakFs {
    /// A filesystem answering from `vfs`.
    pub fn new(vfs: Arc<Vfs>) -> Self {
        BakFs {
            vfs,
            no_open: false,
            no_opendir: false,
        }
    }
}

fn errno(e: VfsError) -> Errno {
    match e {
        VfsError::NotFound => Errno::ENOENT,
        VfsError::Io => Errno::EIO,
        VfsError::NotDir => Errno::ENOTDIR,
        VfsError::NotLink => Errno::EINVAL,
        VfsError::NoData => Errno::ENODATA,
        VfsError::NotSupported => Errno::EOPNOTSUPP,
    }
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDev => FileType::CharDevice,
        NodeKind::BlockDev => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_nanos(ns.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.mtime_ns);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: time(a.ctime_ns),
        crtime: t,
        kind: file_type(a.kind),
        perm: (a.perm & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: 4096,
        flags: 0,
    }
}

fn ttl(a: &Attr) -> Duration {
    if a.stable {
        STABLE_TTL
    } else {
        TOP_TTL
    }
}

impl Filesystem for BakFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Readdirplus saves a lookup per entry on `ls -l`; parallel lookups in one directory;
        // POSIX ACLs stored in snapshots are enforced by the kernel (with default_permissions);
        // symlink targets are kept in the kernel's page cache (a top-level link whose target
        // changes gets a new inode number).
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_CACHE_SYMLINKS
            // Before a cached directory listing is used the kernel refreshes the directory's
            // attributes when they have expired (the top level's after a second) and drops the
            // listing if the mtime moved: new and forgotten snapshots show up.
            | InitFlags::FUSE_AUTO_INVAL_DATA;
        let have = config.capabilities();
        let _ = config.add_capabilities(wanted & have);
        self.no_open = have.contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        // Without opendir the kernel caches every listing (FOPEN_CACHE_DIR); that is only right
        // when it also revalidates them by mtime.
        self.no_opendir = have.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            && have.contains(InitFlags::FUSE_AUTO_INVAL_DATA);
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.vfs.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&ttl(&a), &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.vfs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.vfs.getattr(ino.0) {
            Ok(a) => reply.attr(&ttl(&a), &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.vfs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        // ENOSYS tells the kernel (FUSE_NO_OPEN_SUPPORT) that opening is free: it stops sending
        // open and release and keeps the page cache of files across opens (FOPEN_KEEP_CACHE),
        // which suits snapshots that never change. Reads come by inode number.
        if self.no_open {
            reply.error(Errno::ENOSYS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.vfs.read(ino.0, offset, size) {
            Ok(d) => {
                let end = offset + d.len() as u64;
                reply.data(&d);
                self.vfs.read_ahead(ino.0, offset, end);
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_opendir {
            // The kernel stops asking (FUSE_NO_OPENDIR_SUPPORT): one round trip less per
            // directory, and every listing is cached and revalidated by the directory's mtime.
            reply.error(Errno::ENOSYS);
            return;
        }
        match self.vfs.getattr(ino.0) {
            Ok(a) if a.kind == NodeKind::Dir => reply.opened(
                FileHandle(0),
                if a.stable {
                    FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR
                } else {
                    FopenFlags::empty()
                },
            ),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.vfs.readdir(ino.0, offset, 512) {
            Ok(items) => {
                for it in items {
                    if reply.add(
                        INodeNo(it.ino),
                        it.next,
                        file_type(it.kind),
                        OsStr::from_bytes(&it.name),
                    ) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let items = match self.vfs.readdir(ino.0, offset, 256) {
            Ok(items) => items,
            Err(e) => {
                reply.error(errno(e));
                return;
            }
        };
        for it in items {
            if it.name == b"." || it.name == b".." {
                // The kernel takes no reference for these; attributes only.
                let Ok(a) = self.vfs.getattr(it.ino) else {
                    continue;
                };
                if reply.add(
                    INodeNo(it.ino),
                    it.next,
                    OsStr::from_bytes(&it.name),
                    &ttl(&a),
                    &file_attr(&a),
                    Generation(0),
                ) {
                    break;
                }
                continue;
            }
            // Each entry returned counts as a lookup; one that does not fit is forgotten again.
            let Ok(a) = self.vfs.lookup(ino.0, &it.name) else {
                continue;
            };
            if reply.add(
                INodeNo(a.ino),
                it.next,
                OsStr::from_bytes(&it.name),
                &ttl(&a),
                &file_attr(&a),
                Generation(0),
            ) {
                self.vfs.forget(a.ino, 1);
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (bytes, snapshots) = self.vfs.usage();
        reply.statfs(bytes.div_ceil(4096), 0, 0, snapshots, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.vfs.getxattr(ino.0, name.as_bytes()) {
            Ok(v) => xattr_reply(&v, size, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.vfs.listxattr(ino.0) {
            Ok(v) => xattr_reply(&v, size, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Permissions are the kernel's (default_permissions); only writing is refused here.
        if mask.contains(fuser::AccessFlags::W_OK) {
            reply.error(Errno::EROFS);
        } else {
            reply.ok();
        }
    }
}

fn xattr_reply(v: &[u8], size: u32, reply: ReplyXattr) {
    let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if len <= size {
        reply.data(v);
    } else {
        reply.error(Errno::ERANGE);
    }
}
