#!/usr/bin/env bash
# The main job on an embedded default, for a fresh Debian 12 machine, as root:
# installs what bakfs needs, builds and installs it, creates a default configuration, key and
# repository, backs up /etc, lists the snapshot and mounts every snapshot on /mnt/snapshots. Safe to run again: it keeps what exists.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "run as root (it installs to /usr/local/bin and writes /etc/bakfs)" >&2; exit 1; }
# shellcheck source=scripts/deps.sh
source scripts/deps.sh
cargo build --release --locked --bins
install -m 0755 target/release/bakfs target/release/bakfs-mediad /usr/local/bin/
# mount(8) helper: `mount -t fuse.bakfs` and fstab lines
ln -sfn /usr/local/bin/bakfs /sbin/mount.fuse.bakfs
install -d -m 0700 /etc/bakfs /var/lib/bakfs
if [[ ! -s /etc/bakfs/password ]]; then
    (umask 077; head -c 32 /dev/urandom | base64 > /etc/bakfs/password)
    echo "created /etc/bakfs/password: copy it somewhere safe (a password manager, paper in a safe); without it no backup can be read"
fi
if [[ ! -f /etc/bakfs/bakfs.toml ]]; then
    install -m 0600 config/bakfs.toml /etc/bakfs/bakfs.toml
    echo "created /etc/bakfs/bakfs.toml (edit it to add your own jobs)"
fi
if [[ ! -f /var/lib/bakfs/repo/config ]]; then
    bakfs init
fi
bakfs backup --all-jobs
bakfs snapshots
# Every snapshot as a read-only tree. A live mount shows new snapshots by itself: a re-run
# leaves it as it is. bakfs mount clears a mount whose process died, and refuses a directory
# that is not empty (mounting there would hide its files).
if findmnt -n -t fuse.bakfs /mnt/snapshots >/dev/null && ls /mnt/snapshots >/dev/null 2>&1; then
    echo "/mnt/snapshots: already mounted"
else
    # Not install -d (it would chmod a live mount), and not on a dead mount (mkdir fails there).
    findmnt -n /mnt/snapshots >/dev/null || mkdir -p /mnt/snapshots
    bakfs mount /mnt/snapshots
fi
echo "ls /mnt/snapshots/latest/etc:"
ls /mnt/snapshots/latest/etc | head -n 5
echo "(bakfs umount /mnt/snapshots to unmount)"
echo "offline copies: bakfs media enroll DEVICE --label NAME, then run bakfs-mediad (udev-rules/README.md)"
