#!/usr/bin/env bash
# Benchmark bakfs-mediad onto a NAS share: a real network filesystem, sshfs from an OpenSSH
# server of our own on 127.0.0.1, against `cp -r` and `rsync -a` of the same repository files
# onto the same share, in one run.
#
#   bench/share.sh [--size MB] [--no-build]
#
# Needs root (sshd, FUSE mounts) and the Debian packages openssh-server and sshfs
# (scripts/deps.sh installs them). The share's server side is a directory on BENCH_DIR (default
# /var/tmp/bakfs-bench), the same disk as the primary repository. Every copy is followed by a
# read of what was copied from the server's disk with the caches dropped for cp and rsync, as
# bakfs-mediad reads every file back through the share before the catalog records it.
# Prints a markdown table for docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIZE_MB=2048
BUILD=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --size) SIZE_MB=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "usage: $0 [--size MB] [--no-build]" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "run as root" >&2; exit 1; }
command -v sshfs >/dev/null && [[ -x /usr/sbin/sshd ]] || { echo "needs sshfs and openssh-server (scripts/deps.sh)" >&2; exit 1; }
BENCH_DIR=${BENCH_DIR:-/var/tmp/bakfs-bench}
DATA=${DATASET_DIR:-$BENCH_DIR/dataset-${SIZE_MB}MB}
W=$BENCH_DIR/share
if ((BUILD)); then (cd "$ROOT" && cargo build --release --bins -q); fi
B=$ROOT/target/release/bakfs
M=$ROOT/target/release/bakfs-mediad
bash "$HERE/make-dataset.sh" "$DATA" "$SIZE_MB" >&2

SSHD_PID=
MNTS=()
cleanup() {
    for m in "${MNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
    if [[ -n $SSHD_PID ]]; then kill "$SSHD_PID" 2>/dev/null || true; wait "$SSHD_PID" 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT
rm -rf "$W" && mkdir -p "$W"/{ssh,nas,mnt}
chmod 700 "$W/ssh"

# The server: root by key only, SFTP in-process, a port nobody uses.
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host"
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/client"
cp "$W/ssh/client.pub" "$W/ssh/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/ssh/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $W/ssh/host
AuthorizedKeysFile $W/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
PidFile none
EOF
/usr/sbin/sshd -D -e -f "$W/ssh/sshd_config" 2>"$W/ssh/log" &
SSHD_PID=$!
for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
OPTS="port=$PORT,IdentityFile=$W/ssh/client,IdentitiesOnly=yes,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,BatchMode=yes,ServerAliveInterval=15"
share() { # share NAME: mounts the server's $W/nas/NAME on $W/mnt/NAME, prints the mount point
    mkdir -p "$W/nas/$1" "$W/mnt/$1"
    sshfs "root@127.0.0.1:$W/nas/$1" "$W/mnt/$1" -o "$OPTS"
    MNTS+=("$W/mnt/$1")
}
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }

export BAKFS_REPO=$W/repo BAKFS_STATE_DIR=$W/state BAKFS_PASSWORD=bench XDG_CONFIG_HOME=$W/none
"$B" init -q >/dev/null 2>&1 || "$B" init >/dev/null
"$B" backup "$DATA/base" -q >/dev/null
REPO_BYTES=$(du -sb "$W/repo" | awk '{print $1}')
FILES=(data index snapshots keys config)

# cp -r, then reading the copies back through the share with the caches dropped.
share cp; MNTS_CP=$W/mnt/cp
drop
t0=$(now)
(cd "$W/repo" && cp -r "${FILES[@]}" "$MNTS_CP/")
t1=$(now)
CP_S=$(echo "$t1 - $t0" | bc -l)
drop
t0=$(now)
find "$MNTS_CP" -type f -exec cat {} + >/dev/null
t1=$(now)
CP_READ_S=$(echo "$t1 - $t0" | bc -l)
umount "$MNTS_CP"

# rsync -a (whole files: the share is a local path to rsync).
share rsync
drop
t0=$(now)
(cd "$W/repo" && rsync -a "${FILES[@]}" "$W/mnt/rsync/")
t1=$(now)
RSYNC_S=$(echo "$t1 - $t0" | bc -l)
umount "$W/mnt/rsync"

# bakfs-mediad --once onto a fresh share (copy, read back every file through the share,
# record, ledger).
share med
"$B" media enroll-share "$W/mnt/med" --label NAS-BENCH --keep-last 2 >/dev/null
drop
t0=$(now)
BAKFS_LOG=bakfs_mediad=debug,info /usr/bin/time -f '%M %U %S %e' -o "$W/rss" "$M" --once --media-root "$W/media" 2>"$W/mediad.log"
t1=$(now)
MED_S=$(echo "$t1 - $t0" | bc -l)
RUN=$("$B" media show NAS-BENCH --json)
read -r WRITTEN JOB_S OUTCOME < <(echo "$RUN" | python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"][0]; print(r["bytes_written"], r["seconds"], r["outcome"])')
[[ $OUTCOME == ok ]] || { cat "$W/mediad.log" >&2; exit 1; }
read -r RSS MED_USER MED_SYS _ <"$W/rss"
read -r WRITE_S TAIL_S < <(sed -n 's/.*written in \([0-9.]*\) s, read back \([0-9.]*\) s later.*/\1 \2/p' "$W/mediad.log" | head -n1)

# The same onto another fresh share, reading back a 10% sample of the packs
# ([mediad] share_read_back; manifests, index files, keys and config are always read back).
share sampled
"$B" media enroll-share "$W/mnt/sampled" --label NAS-SAMPLED --keep-last 2 >/dev/null
printf '[mediad]\nshare_read_back = "10%%"\n' >"$W/sampled.toml"
# Only NAS-SAMPLED is due: NAS-BENCH holds the snapshot already.
drop
BAKFS_LOG=bakfs_mediad=debug,info /usr/bin/time -f '%M %U %S %e' -o "$W/rss-sampled" "$M" --once --config "$W/sampled.toml" --media-root "$W/media" 2>"$W/mediad-sampled.log"
read -r S_WRITTEN S_VERIFIED S_JOB_S S_OUTCOME < <("$B" media show NAS-SAMPLED --json | python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"][0]; print(r["bytes_written"], r["bytes_verified"], r["seconds"], r["outcome"])')
[[ $S_OUTCOME == ok ]] || { cat "$W/mediad-sampled.log" >&2; exit 1; }
read -r S_RSS _ <"$W/rss-sampled"
umount "$W/mnt/sampled"

# A small change, then the next copy onto the same share.
"$B" backup "$DATA/changed" -q >/dev/null
drop
t0=$(now)
"$M" --once --media-root "$W/media" 2>>"$W/mediad.log"
t1=$(now)
ROT_S=$(echo "$t1 - $t0" | bc -l)
ROT=$("$B" media show NAS-BENCH --json | python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"][0]; print(r["bytes_written"], r["outcome"])')

mib() { echo "scale=1; $1 / 1048576" | bc -l; }
rate() { echo "scale=1; $1 / 1048576 / $2" | bc -l; }
echo
echo "Share benchmark, $(date -u +%Y-%m-%dT%H:%MZ), dataset ${SIZE_MB} MB, sshfs $(sshfs --version 2>&1 | sed -n 's/^SSHFS version //p' | head -1) over 127.0.0.1 to a directory on $(df --output=source "$BENCH_DIR" | tail -1):"
echo
echo "| measure | value |"
echo "|---|---|"
echo "| repository files copied | $(mib "$REPO_BYTES") MiB |"
echo "| \`cp -r\` onto the share | $(printf %.2f "$CP_S") s ($(rate "$REPO_BYTES" "$CP_S") MiB/s) |"
echo "| \`cp -r\`, then reading the copies back through the share (\`cat\`, caches dropped) | $(printf %.2f "$(echo "$CP_S + $CP_READ_S" | bc -l)") s ($(printf %.2f "$CP_READ_S") s of it reading) |"
echo "| \`rsync -a\` onto the share | $(printf %.2f "$RSYNC_S") s ($(rate "$REPO_BYTES" "$RSYNC_S") MiB/s) |"
echo "| bakfs-mediad job (copy, read back every file, record) | $(printf %.2f "$JOB_S") s ($(rate "$WRITTEN" "$JOB_S") MiB/s): $(echo "scale=2; $CP_S / $JOB_S" | bc -l)x of cp's rate, $(echo "scale=2; $RSYNC_S / $JOB_S" | bc -l)x of rsync's |"
echo "| of which writing every file | $(printf %.2f "${WRITE_S:-0}") s; the read-back's tail after it $(printf %.2f "${TAIL_S:-0}") s |"
echo "| bakfs-mediad job with \`share_read_back = \"10%\"\` | $(printf %.2f "$S_JOB_S") s ($(rate "$S_WRITTEN" "$S_JOB_S") MiB/s, $(mib "$S_VERIFIED") MiB read back): $(echo "scale=2; $CP_S / $S_JOB_S" | bc -l)x of cp's rate, $(echo "scale=2; $RSYNC_S / $S_JOB_S" | bc -l)x of rsync's; peak RSS $((S_RSS / 1024)) MiB |"
echo "| bakfs-mediad --once, whole process | $(printf %.2f "$MED_S") s, cpu user $MED_USER s sys $MED_SYS s |"
echo "| bakfs-mediad peak RSS | $((RSS / 1024)) MiB |"
echo "| next copy after the 'changed' backup | $(mib "${ROT% *}") MiB in $(printf %.2f "$ROT_S") s (${ROT#* }) |"
cp "$W/mediad.log" "$BENCH_DIR/share-mediad.log" 2>/dev/null || true
