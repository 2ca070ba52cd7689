//! `mount.fuse.bakfs`: what mount(8) runs for `mount -t fuse.bakfs REPO DIR -o OPTIONS` and for
//! an fstab line such as
//!
//! ```text
//! /var/lib/bakfs/repo  /mnt/snapshots  fuse.bakfs  allow_other,password_file=/etc/bakfs/passphrase,nofail  0 0
//! ```
//!
//! Install it as a symlink to the bakfs binary: `ln -s /usr/local/bin/bakfs /sbin/mount.fuse.bakfs`.

use std::ffi::OsString;

/// Options mount(8) passes that mean nothing here: the mount is always read-only, nosuid, nodev.
const IGNORED: &[&str] = &[
    "ro",
    "rw",
    "defaults",
    "auto",
    "noauto",
    "nofail",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "_netdev",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "lazytime",
    "sync",
    "async",
    "default_permissions",
    "comment",
];

/// Turns `REPO DIR [-o OPTS] [-n] [-s] [-f] [-v] [-t TYPE]` into `bakfs` arguments.
pub fn translate(args: &[OsString]) -> Result<Vec<OsString>, String> {
    let mut positional: Vec<OsString> = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    let mut verbose = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        match s.as_ref() {
            "-o" => opts.extend(
                it.next()
                    .ok_or("-o needs options")?
                    .to_string_lossy()
                    .split(',')
                    .map(str::to_string),
            ),
            "-t" | "-N" => {
                it.next();
            }
            "-v" => verbose = true,
            "-n" | "-s" | "-f" | "-r" | "-w" => {}
            o if o.starts_with("-o") => opts.extend(o[2..].split(',').map(str::to_string)),
            o if o.starts_with('-') => return Err(format!("unknown option {o}")),
            _ => positional.push(a.clone()),
        }
    }
    let [repo, dir] = positional.as_slice() else {
        return Err("usage: mount.fuse.bakfs REPOSITORY MOUNTPOINT [-o OPTIONS]".into());
    };
    let mut out: Vec<OsString> = vec!["bakfs".into(), "--repo".into(), repo.clone()];
    let mut mount_flags: Vec<OsString> = Vec::new();
    for o in opts.iter().filter(|o| !o.is_empty()) {
        let (k, v) = o
            .split_once('=')
            .map_or((o.as_str(), None), |(k, v)| (k, Some(v)));
        match (k, v) {
            ("password_file", Some(v)) => out.extend(["--password-file".into(), v.into()]),
            ("config", Some(v)) => out.extend(["--config".into(), v.into()]),
            ("state_dir", Some(v)) => out.extend(["--state-dir".into(), v.into()]),
            ("allow_other", None) => mount_flags.push("--allow-other".into()),
            (k, _) if IGNORED.contains(&k) || k.starts_with("x-") => {}
            (k, _) => return Err(format!("unknown mount option {k:?}")),
        }
    }
    if verbose {
        out.push("-v".into());
    }
    out.extend(["mount".into(), dir.clone()]);
    out.extend(mount_flags);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(a: &[&str]) -> Result<Vec<String>, String> {
        translate(&a.iter().map(OsString::from).collect::<Vec<_>>())
            .map(|v| v.iter().map(|s| s.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn fstab_options_become_arguments() {
        let v = t(&[
            "/srv/repo",
            "/mnt/s",
            "-o",
            "rw,nofail,allow_other,password_file=/etc/bakfs/pw,x-systemd.automount",
        ])
        .expect("ok");
        assert_eq!(
            v,
            [
                "bakfs",
                "--repo",
                "/srv/repo",
                "--password-file",
                "/etc/bakfs/pw",
                "mount",
                "/mnt/s",
                "--allow-other"
            ]
        );
        assert!(t(&["/srv/repo"]).is_err());
        assert!(t(&["/srv/repo", "/mnt", "-o", "exotic"]).is_err());
    }
}
