#!/usr/bin/env bash
# Benchmark bakfs-mediad: copying a snapshot onto a medium against `cp` of the same repository
# files onto the same kind of filesystem, and the bytes a rotation writes after a small change.
#
#   bench/media.sh [--size MB] [--device loop|zram] [--no-build]
#
# Needs root (loop or zram devices, mounts; udevd is started if it is not running: mediad runs
# with --once, on the devices udev knows). Media are ext4 filesystems on
# - loop (default): images on BENCH_DIR (default /var/tmp/bakfs-bench), attached to loop devices
#   with direct I/O so that writes reach the image file rather than only the loop's page cache;
#   the images share a disk with the primary repository, so reading the primary, writing the
#   medium and reading it back all compete for that disk;
# - zram: compressed RAM disks, whose writes (each page is compressed, or tried) are slower than
#   their reads, as on USB flash; udev-rules/70-bakfs.rules is put in /run/udev/rules.d for the
#   run, since Debian's rules do not probe zram.
# Prints a markdown table for docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIZE_MB=1024
BUILD=1
DEVICE=loop
while [[ $# -gt 0 ]]; do
    case $1 in
    --size) SIZE_MB=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "usage: $0 [--size MB] [--device loop|zram] [--no-build]" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "run as root" >&2; exit 1; }
[[ $DEVICE == loop || $DEVICE == zram ]] || { echo "--device is loop or zram" >&2; exit 2; }
BENCH_DIR=${BENCH_DIR:-/var/tmp/bakfs-bench}
DATA=${DATASET_DIR:-$BENCH_DIR/dataset-${SIZE_MB}MB}
W=$BENCH_DIR/media
if ((BUILD)); then (cd "$ROOT" && cargo build --release --bins -q); fi
B=$ROOT/target/release/bakfs
M=$ROOT/target/release/bakfs-mediad
bash "$HERE/make-dataset.sh" "$DATA" "$SIZE_MB" >&2

# mediad learns filesystem UUIDs from udev's database: udevd must run.
UDEVD_PID=
if ! udevadm control --ping --timeout=2 >/dev/null 2>&1; then
    /lib/systemd/systemd-udevd >/dev/null 2>&1 &
    UDEVD_PID=$!
    for _ in $(seq 50); do udevadm control --ping --timeout=1 >/dev/null 2>&1 && break; sleep 0.1; done
fi

MNTS=()
cleanup() {
    for m in "${MNTS[@]}"; do umount "$m" 2>/dev/null || true; done
    # Loops are found by image: mkimg runs in a subshell and cannot record them.
    for img in "$W"/*.img; do
        [[ -e $img ]] || continue
        losetup -j "$img" -O NAME -n | xargs -r -n1 losetup -d 2>/dev/null || true
    done
    # zram devices are listed by mkimg in $W/zram (one number a line).
    if [[ -e $W/zram ]]; then
        while read -r n; do
            for _ in $(seq 50); do echo "$n" >/sys/class/zram-control/hot_remove 2>/dev/null && break; sleep 0.1; done
        done <"$W/zram"
    fi
    if [[ -e /run/udev/rules.d/70-bakfs-bench.rules ]]; then
        rm -f /run/udev/rules.d/70-bakfs-bench.rules
        udevadm control --reload || true
    fi
    rm -rf "$W"
    if [[ -n $UDEVD_PID ]]; then udevadm control --exit || true; wait "$UDEVD_PID" || true; fi
}
trap cleanup EXIT
rm -rf "$W" && mkdir -p "$W"
export BAKFS_REPO=$W/repo BAKFS_STATE_DIR=$W/state BAKFS_PASSWORD=bench XDG_CONFIG_HOME=$W/none
"$B" init -q >/dev/null 2>&1 || "$B" init >/dev/null
"$B" backup "$DATA/base" -q >/dev/null
REPO_BYTES=$(du -sb "$W/repo" | awk '{print $1}')
IMG_MB=$((REPO_BYTES / 1048576 * 2 + 512))

if [[ $DEVICE == zram ]]; then
    modprobe zram num_devices=0 2>/dev/null || true
    [[ -e /sys/class/zram-control/hot_add ]] || { echo "no zram in this kernel" >&2; exit 1; }
    mkdir -p /run/udev/rules.d
    cp "$ROOT/udev-rules/70-bakfs.rules" /run/udev/rules.d/70-bakfs-bench.rules
    udevadm control --reload
fi
mkimg() { # mkimg NAME -> prints the device
    local l n
    if [[ $DEVICE == zram ]]; then
        n=$(cat /sys/class/zram-control/hot_add)
        echo "$n" >>"$W/zram"
        echo "${IMG_MB}M" >"/sys/block/zram$n/disksize"
        l=/dev/zram$n
        mkfs.ext4 -q -L "$1" "$l"
        udevadm trigger --action=add --settle "/sys/block/zram$n"
    else
        truncate -s "${IMG_MB}M" "$W/$1.img"
        mkfs.ext4 -q -L "$1" "$W/$1.img"
        l=$(losetup -f --show --direct-io=on "$W/$1.img")
    fi
    udevadm settle -t 10
    echo "$l"
}
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }

# cp of the repository's files (what a medium holds) onto a fresh ext4, synced.
L1=$(mkimg CP)
mkdir -p "$W/cp"
mount "$L1" "$W/cp"
MNTS+=("$W/cp")
drop
t0=$(now)
cp -r "$W/repo/data" "$W/repo/index" "$W/repo/snapshots" "$W/repo/keys" "$W/repo/config" "$W/cp/"
sync -f "$W/cp"
t1=$(now)
CP_S=$(echo "$t1 - $t0" | bc -l)
# The same check with standard tools: drop the cache, read every copied file back.
echo 3 >/proc/sys/vm/drop_caches
t0=$(now)
find "$W/cp" -type f -exec cat {} + >/dev/null
t1=$(now)
CAT_S=$(echo "$t1 - $t0" | bc -l)
umount "$W/cp"

# mediad onto another fresh ext4 (copy, syncfs, read back every file, catalog, ledger).
L2=$(mkimg MED)
"$B" media enroll "$L2" --label MED --keep-last 2 >/dev/null
drop
t0=$(now)
BAKFS_LOG=bakfs_mediad=debug,info /usr/bin/time -f '%M %U %S %e' -o "$W/rss" "$M" --once --media-root "$W/mnt" 2>"$W/mediad.log"
t1=$(now)
MED_S=$(echo "$t1 - $t0" | bc -l)
RUN=$("$B" media show MED --json)
WRITTEN=$(echo "$RUN" | python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"][0]; print(r["bytes_written"])')
JOB_S=$(echo "$RUN" | python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"][0]; print(r["seconds"])')
OUTCOME=$(echo "$RUN" | python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["outcome"])')
[[ $OUTCOME == ok ]] || { cat "$W/mediad.log" >&2; exit 1; }
read -r RSS MED_USER MED_SYS _ < "$W/rss"; echo "mediad cpu: user $MED_USER s, sys $MED_SYS s" >&2
# The job's phases, from its debug log: writing every file, then the read-back's tail.
read -r WRITE_S TAIL_S < <(sed -n 's/.*written in \([0-9.]*\) s, read back \([0-9.]*\) s later.*/\1 \2/p' "$W/mediad.log" | head -n1)

# The device's own sequential rates: direct I/O on the mediad medium's device, unmounted.
# Random bytes, as packs are (zeros would flatter zram, which compresses them to nothing).
dd_rate() { dd "$@" bs=4M count=64 2>&1 | sed -n 's/.*, \([0-9.]* [GM]B\/s\)$/\1/p'; }
head -c 256M /dev/urandom >"$W/random"
DEV_W=$(dd_rate if="$W/random" of="$L2" oflag=direct seek=$((IMG_MB / 4 - 64)))
drop
DEV_R=$(dd_rate if="$L2" of=/dev/null iflag=direct)

# A small change, then a rotation onto the same medium.
"$B" backup "$DATA/changed" -q >/dev/null
ADDED=$("$B" catalog runs --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["bytes_added"])')
drop
t0=$(now)
"$M" --once --media-root "$W/mnt" 2>>"$W/mediad.log"
t1=$(now)
ROT_S=$(echo "$t1 - $t0" | bc -l)
ROT=$("$B" media show MED --json | python3 -c 'import json,sys; r=json.load(sys.stdin)["runs"][0]; print(r["bytes_written"], r["outcome"])')
ROT_W=${ROT% *}

mib() { echo "scale=1; $1 / 1048576" | bc -l; }
rate() { echo "scale=1; $1 / 1048576 / $2" | bc -l; }
echo
if [[ $DEVICE == zram ]]; then
    ON="a zram device (RAM, each page compressed on write)"
else
    ON="a loop device (direct I/O) on $(df --output=source "$BENCH_DIR" | tail -1)"
fi
echo "Media benchmark, $(date -u +%Y-%m-%dT%H:%MZ), dataset ${SIZE_MB} MB, ext4 on $ON:"
echo
echo "| measure | value |"
echo "|---|---|"
echo "| repository files copied | $(mib "$REPO_BYTES") MiB |"
echo "| \`cp -r\` + \`sync -f\` | $(printf %.2f "$CP_S") s ($(rate "$REPO_BYTES" "$CP_S") MiB/s) |"
echo "| \`cp -r\` + \`sync -f\`, then reading the copies back (\`cat\`, caches dropped) | $(printf %.2f "$(echo "$CP_S + $CAT_S" | bc -l)") s ($(printf %.2f "$CAT_S") s of it reading) |"
echo "| bakfs-mediad job (mount, copy, syncfs, read back, record, unmount) | $(printf %.2f "$JOB_S") s ($(rate "$WRITTEN" "$JOB_S") MiB/s), $(echo "scale=2; $CP_S / $JOB_S" | bc -l)x of cp's rate |"
echo "| of which writing every file (copy_file_range) | $(printf %.2f "$WRITE_S") s, $(echo "scale=2; $CP_S / $WRITE_S" | bc -l)x of cp's rate |"
echo "| of which the read-back still running after the last write | $(printf %.2f "$TAIL_S") s |"
echo "| the device alone, 256 MiB of random bytes with direct I/O (dd bs=4M) | write $DEV_W, read $DEV_R |"
echo "| bakfs-mediad --once, whole process from cold caches | $(printf %.2f "$MED_S") s ($(echo "scale=2; $CP_S / $MED_S" | bc -l)x of cp's rate) |"
echo "| bakfs-mediad peak RSS | $((RSS / 1024)) MiB |"
echo "| rotation after the 'changed' backup: new data (bytes_added) | $(mib "$ADDED") MiB |"
echo "| rotation: bytes written | $(mib "$ROT_W") MiB in $(printf %.2f "$ROT_S") s (${ROT#* }) |"
cp "$W/mediad.log" "$BENCH_DIR/media-mediad.log" 2>/dev/null || true
