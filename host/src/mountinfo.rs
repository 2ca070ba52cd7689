//! The mount table of this process's mount namespace (`/proc/self/mountinfo`), and a watch on
//! it: the kernel marks the file `POLLPRI` when a mount appears or goes, so a NAS share being
//! mounted or unmounted is noticed without touching the share itself (which may hang).

use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Its filesystem type (`nfs4`, `cifs`, `fuse.sshfs`, `ext4`).
    pub fs_type: String,
    /// What is mounted (`nas:/export`, `//nas/share`, `user@host:/dir`, `/dev/sdb1`).
    pub source: String,
}

/// The mounts of this process's namespace, in mount order (a later mount on the same point
/// hides an earlier one).
///
/// # Errors
/// `/proc/self/mountinfo` cannot be read.
pub fn mounts() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string(MOUNTINFO)?))
}

/// The mount that `path` is the mount point of, if it is one (the topmost).
///
/// # Errors
/// As [`mounts`].
pub fn mount_at(path: &Path) -> std::io::Result<Option<Mount>> {
    Ok(mounts()?.into_iter().rev().find(|m| m.mount_point == path))
}

/// Parses mountinfo(5): `id parent major:minor root mount-point options [optional...] -
/// fstype source super-options`; the mount point and source escape space, tab, newline and
/// backslash in octal (`\040`).
fn parse(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some(Mount {
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                fs_type: (*f.get(dash + 1)?).to_string(),
                source: unescape(f.get(dash + 2)?),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A watch on the mount table: [`Self::changed`] says whether mounts changed since the last
/// call (the first call says yes).
#[derive(Debug)]
pub struct Watch {
    file: File,
    first: bool,
}

impl Watch {
    /// Opens the watch.
    ///
    /// # Errors
    /// `/proc/self/mountinfo` cannot be opened.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            file: File::open(MOUNTINFO)?,
            first: true,
        })
    }

    /// Whether a mount appeared or went since the last call; never blocks. The kernel's
    /// `POLLPRI`/`POLLERR` mark is reset by reading the file through.
    pub fn changed(&mut self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let first = std::mem::take(&mut self.first);
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLPRI)];
        let marked = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.intersects(PollFlags::POLLPRI | PollFlags::POLLERR));
        if marked || first {
            // Read it through from the start: this clears the mark.
            use std::io::{Seek, SeekFrom};
            let mut sink = Vec::new();
            let _ = self
                .file
                .seek(SeekFrom::Start(0))
                .and_then(|_| self.file.read_to_end(&mut sink));
        }
        marked || first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let text = "22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n\
            91 29 0:52 / /mnt/my\\040nas rw,nosuid,nodev,relatime shared:1 master:2 - fuse.sshfs root@127.0.0.1:/srv/share rw,user_id=0\n\
            garbage\n";
        let m = parse(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].mount_point, Path::new("/mnt/my nas"));
        assert_eq!(m[1].fs_type, "fuse.sshfs");
        assert_eq!(m[1].source, "root@127.0.0.1:/srv/share");
        assert_eq!(unescape(r"/a\\b"), r"/a\\b");
    }

    #[test]
    fn the_watch_says_changed_first_and_the_root_is_mounted() {
        let mut w = Watch::new().unwrap();
        assert!(w.changed());
        assert!(mount_at(Path::new("/")).unwrap().is_some());
    }
}
