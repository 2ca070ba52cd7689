//! Owner, mode, extended attributes and times of restored entries.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::Error;
use crate::format::{Node, NodeKind};

use super::Ctx;

pub(super) fn set_times(path: &Path, atime_ns: i64, mtime_ns: i64) {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let ts = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    let _ = utimensat(
        None,
        path,
        &ts(atime_ns),
        &ts(mtime_ns),
        UtimensatFlags::NoFollowSymlink,
    );
}

/// [`apply_meta`] for a regular file just written, through its open descriptor.
pub(super) fn apply_meta_file(ctx: &Ctx, f: &fs::File, path: &Path, n: &Node) {
    use nix::sys::stat::{fchmod, futimens, Mode};
    use nix::sys::time::TimeSpec;
    use nix::unistd::{fchown, Gid, Uid};
    use std::os::fd::AsRawFd;
    use xattr::FileExt;
    let fd = f.as_raw_fd();
    if let Err(e) = fchown(fd, Some(Uid::from_raw(n.uid)), Some(Gid::from_raw(n.gid))) {
        if ctx.is_root {
            ctx.fail(path, &Error::io(path.display(), e.into()));
        }
    }
    if let Err(e) = fchmod(fd, Mode::from_bits_truncate(n.mode & 0o7777)) {
        ctx.fail(path, &Error::io(path.display(), e.into()));
    }
    for (k, v) in &n.xattrs {
        if let Err(e) = f.set_xattr(std::ffi::OsStr::from_bytes(k), v) {
            if ctx.is_root {
                ctx.fail(
                    path,
                    &Error::io(
                        format!("{}: xattr {}", path.display(), String::from_utf8_lossy(k)),
                        e,
                    ),
                );
            }
        }
    }
    let ts = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    if let Err(e) = futimens(fd, &ts(n.mtime_ns), &ts(n.mtime_ns)) {
        ctx.fail(path, &Error::io(path.display(), e.into()));
    }
}

/// Applies owner, mode, extended attributes and times (in that order: chown clears setuid bits).
pub(super) fn apply_meta(ctx: &Ctx, path: &Path, n: &Node) {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    use nix::unistd::{fchownat, Gid, Uid};
    let r = fchownat(
        None,
        path,
        Some(Uid::from_raw(n.uid)),
        Some(Gid::from_raw(n.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    );
    if let Err(e) = r {
        if ctx.is_root {
            ctx.fail(path, &Error::io(path.display(), e.into()));
        }
    }
    if n.kind != NodeKind::Symlink {
        if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(n.mode & 0o7777)) {
            ctx.fail(path, &Error::io(path.display(), e));
        }
    }
    for (k, v) in &n.xattrs {
        if let Err(e) = xattr::set(path, std::ffi::OsStr::from_bytes(k), v) {
            // user.* xattrs cannot be set on symlinks; security.* needs privileges.
            if n.kind != NodeKind::Symlink && ctx.is_root {
                ctx.fail(
                    path,
                    &Error::io(
                        format!("{}: xattr {}", path.display(), String::from_utf8_lossy(k)),
                        e,
                    ),
                );
            }
        }
    }
    let ts = |ns: i64| TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    if let Err(e) = utimensat(
        None,
        path,
        &ts(n.mtime_ns),
        &ts(n.mtime_ns),
        UtimensatFlags::NoFollowSymlink,
    ) {
        ctx.fail(path, &Error::io(path.display(), e.into()));
    }
}
