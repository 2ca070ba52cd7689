#!/usr/bin/env bash
# Benchmark bakfs against restic and borg.
#
#   bench/run.sh [--size MB] [--out FILE] [--tools bakfs,restic,borg]
#                [--no-build] [--keep]
#
# Needs root (it mounts a tmpfs for the restores).  Environment:
#   BENCH_DIR    scratch directory for dataset, repositories, results
#                (default /var/tmp/bakfs-bench; must have ~4x SIZE free)
#   DATASET_DIR  dataset location (default $BENCH_DIR/dataset-<SIZE>MB)
#   BAKFS_BIN    use this bakfs binary instead of target/release/bakfs
#
# See bench/README.md for what is measured and the caveats.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

SIZE_MB=2048
OUT="$ROOT/docs/benchmarks.md"
TOOLS="bakfs,restic,borg"
BUILD=1
KEEP=0
BENCH_DIR=${BENCH_DIR:-/var/tmp/bakfs-bench}
PASSWORD="bakfs-bench-password"

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

warn() { echo "WARNING: $*" >&2; }
die() {
    echo "error: $*" >&2
    exit 1
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --size) SIZE_MB=${2:?}; shift 2 ;;
    --size=*) SIZE_MB=${1#*=}; shift ;;
    --out) OUT=${2:?}; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --tools) TOOLS=${2:?}; shift 2 ;;
    --tools=*) TOOLS=${1#*=}; shift ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h | --help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -ge 8 ]] || die "--size must be an integer >= 8"
[[ $(id -u) -eq 0 ]] || die "must run as root (mounts a tmpfs for restores)"

IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
for t in "${TOOL_LIST[@]}"; do
    case $t in bakfs | restic | borg) ;; *) die "unknown tool '$t' (bakfs, restic, borg)" ;; esac
done

# ---------------------------------------------------------------- packages
need_pkgs=()
command -v restic >/dev/null 2>&1 || need_pkgs+=(restic)
command -v borg >/dev/null 2>&1 || need_pkgs+=(borgbackup)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
command -v rsync >/dev/null 2>&1 || need_pkgs+=(rsync)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v diff >/dev/null 2>&1 || need_pkgs+=(diffutils)
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
    echo "installing: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# ---------------------------------------------------------------- layout
mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
DATA_DIR=${DATASET_DIR:-$BENCH_DIR/dataset-${SIZE_MB}MB}
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
RES_DIR="$BENCH_DIR/results/$RUN_ID"
LOGS="$RES_DIR/logs"
RESULTS="$RES_DIR/results.tsv"
META="$RES_DIR/meta.tsv"
SRC="$BENCH_DIR/data"         # the one path every tool backs up
RESTORE="$BENCH_DIR/restore"  # tmpfs mount point
MNT="$BENCH_DIR/mnt"          # where each tool's FUSE mount goes
PWFILE="$BENCH_DIR/password"
mkdir -p "$LOGS" "$RESTORE"
(umask 077 && printf '%s\n' "$PASSWORD" >"$PWFILE")
printf 'tool\top\tstatus\tseconds\tmax_rss_kib\tbytes\tnote\n' >"$RESULTS"
: >"$META"

cleanup() {
    if mountpoint -q "$RESTORE" 2>/dev/null; then umount "$RESTORE" || true; fi
    if mountpoint -q "$MNT" 2>/dev/null; then umount -l "$MNT" || true; fi
    # $SRC holds hard links into the dataset: removing it leaves base intact
    if [[ $KEEP -eq 0 ]]; then
        rm -rf "$SRC" "$BENCH_DIR"/repo-* "$BENCH_DIR"/cache-*
    fi
}
trap cleanup EXIT

meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

# ---------------------------------------------------------------- bakfs build
BAKFS=""
if [[ " ${TOOL_LIST[*]} " == *" bakfs "* ]]; then
    if [[ -n ${BAKFS_BIN:-} ]]; then
        BAKFS=$BAKFS_BIN
    else
        BAKFS="$ROOT/target/release/bakfs"
        if [[ $BUILD -eq 1 ]]; then
            echo "building bakfs (cargo build --release) ..."
            if ! command -v cargo >/dev/null 2>&1; then
                warn "cargo not found"
            elif ! (cd "$ROOT" && cargo build --release) >"$LOGS/cargo-build.log" 2>&1; then
                tail -n 20 "$LOGS/cargo-build.log" >&2
                warn "cargo build --release failed (log: $LOGS/cargo-build.log)"
            fi
        fi
    fi
    if [[ ! -x $BAKFS ]]; then
        warn "bakfs binary $BAKFS missing: skipping bakfs"
        meta note "bakfs skipped: binary missing or build failed"
        BAKFS=""
    fi
fi

# ---------------------------------------------------------------- dataset
"$HERE/make-dataset.sh" "$DATA_DIR" "$SIZE_MB"
BASE="$DATA_DIR/base"
CHANGED="$DATA_DIR/changed"

# ---------------------------------------------------------------- metadata
stat_of() { awk -F'\t' -v k="$2" '$1 == k { print $2 }' "$1"; }
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta run_id "$RUN_ID"
meta nproc "$(nproc)"
meta kernel "$(uname -r)"
meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
meta mem_kib "$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)"
meta os "$(. /etc/os-release && echo "${PRETTY_NAME:-unknown}")"
meta bench_fs "$(stat -f -c %T "$BENCH_DIR") ($(df -P "$BENCH_DIR" | awk 'NR == 2 { print $1 }'))"
meta size_mb "$SIZE_MB"
meta tools "$TOOLS"
for k in files dirs symlinks bytes; do
    meta "base_$k" "$(stat_of "$DATA_DIR/base.stats" "$k")"
    meta "changed_$k" "$(stat_of "$DATA_DIR/changed.stats" "$k")"
done
for k in append overwrite add remove; do
    meta "changes_$k" "$(awk -F'\t' -v k="$k" '$1 == k { n++ } END { print n + 0 }' "$DATA_DIR/changes.tsv")"
done
meta version_tar "$(tar --version | head -n1)"
meta version_restic "$(restic version | head -n1)"
meta version_borg "$(borg --version | head -n1)"
if [[ -n $BAKFS ]]; then
    v=$("$BAKFS" --version 2>/dev/null | head -n1 || true)
    meta version_bakfs "${v:-bakfs (version unknown)}"
fi

BASE_BYTES=$(stat_of "$DATA_DIR/base.stats" bytes)
CHANGED_BYTES=$(stat_of "$DATA_DIR/changed.stats" bytes)
CHANGED_FILES=$(stat_of "$DATA_DIR/changed.stats" files)

# ---------------------------------------------------------------- helpers
# measure TOOL OP BYTES CMD... : run CMD under /usr/bin/time, append a row.
measure() {
    local tool=$1 op=$2 bytes=$3
    shift 3
    local tf="$LOGS/$tool-$op.time" log="$LOGS/$tool-$op.log"
    local rc=0 secs="" rss="" status=ok
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    read -r secs rss < <(tail -n1 "$tf" 2>/dev/null) || true
    [[ $rc -eq 0 ]] || status=failed
    row "$tool" "$op" "$status" "${secs:-}" "${rss:-}" "$bytes" "exit $rc"
    printf '  %-7s %-17s %-6s %8ss  %8s KiB max RSS\n' "$tool" "$op" "$status" "${secs:-?}" "${rss:-?}"
    if [[ $rc -ne 0 ]]; then
        warn "$tool $op failed (exit $rc), last lines of $log:"
        tail -n 5 "$log" >&2 || true
    fi
    return "$rc"
}

warm() {
    # warm-cache runs: read the trees once so every tool starts from the same state
    local d
    for d in "$@"; do
        find "$d" -type f -print0 | xargs -0 -r cat >/dev/null
    done
}

mount_scratch() {
    if mountpoint -q "$RESTORE"; then umount "$RESTORE"; fi
    local kib=$(((CHANGED_BYTES + BASE_BYTES / 4 + CHANGED_FILES * 8192) / 1024 + 524288))
    mount -t tmpfs -o "size=${kib}k,mode=0755" bench-restore "$RESTORE"
}

umount_scratch() {
    if mountpoint -q "$RESTORE"; then umount "$RESTORE"; fi
}

du_bytes() { du -sb "$1" 2>/dev/null | awk '{ print $1 }'; }

# tool_cmd TOOL ACTION [ARG] : print nothing, run the tool's command
tool_cmd() {
    local tool=$1 action=$2 arg=${3:-}
    local repo="$BENCH_DIR/repo-$tool" cache="$BENCH_DIR/cache-$tool"
    case $tool in
    restic)
        export RESTIC_REPOSITORY=$repo RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR=$cache
        case $action in
        init) restic init --repository-version 2 ;;
        backup) restic backup --compression auto "$SRC" ;;
        restore) restic restore latest --target "$RESTORE" ;;
        esac
        ;;
    borg)
        export BORG_PASSPHRASE=$PASSWORD BORG_BASE_DIR=$cache
        case $action in
        init) borg init -e repokey-blake2 "$repo" ;;
        # --list --filter=AME logs only added/modified/errored files (a check
        # that the files cache works); --stats is printed once at the end
        backup) borg create --compression zstd,3 --stats --list --filter=AME "$repo::$arg" "$SRC" ;;
        restore) env -C "$RESTORE" borg extract "$repo::$arg" ;;
        esac
        ;;
    bakfs)
        export XDG_CACHE_HOME=$cache
        case $action in
        init) "$BAKFS" init --repo "$repo" --password-file "$PWFILE" ;;
        backup) "$BAKFS" backup --repo "$repo" --password-file "$PWFILE" "$SRC" ;;
        restore) "$BAKFS" restore latest --repo "$repo" --password-file "$PWFILE" --target "$RESTORE" ;;
        esac
        ;;
    esac
}
export -f tool_cmd
BAKFS_STATE_DIR="$BENCH_DIR/bakfs-state"
export BENCH_DIR SRC RESTORE PWFILE PASSWORD BAKFS BAKFS_STATE_DIR

# Where did the restore put the tree?  restic and borg recreate the absolute
# path under the target; other layouts are accepted too.
restored_root() {
    local c
    for c in "$RESTORE$SRC" "$RESTORE/$(basename "$SRC")" "$RESTORE"; do
        if [[ -d $c/big ]]; then
            echo "$c"
            return 0
        fi
    done
    echo "$RESTORE"
}

fail_rest() {
    local tool=$1 op
    shift
    for op in "$@"; do
        row "$tool" "$op" failed "" "" "" "not run after an earlier failure"
    done
}

run_tool() {
    local tool=$1
    local repo="$BENCH_DIR/repo-$tool" cache="$BENCH_DIR/cache-$tool"
    echo "== $tool"
    rm -rf "$repo" "$cache" "$SRC"
    mkdir -p "$cache"
    # $SRC starts as base; hard links keep inode numbers and ctimes stable
    # across the three backups, so every tool's change detection works as on
    # a live tree.  (Falls back to a real copy across file systems.)
    cp -al "$BASE" "$SRC" 2>/dev/null || { rm -rf "$SRC"; cp -a "$BASE" "$SRC"; }
    # borg (by design, against races) never keeps the file with the newest
    # ctime in its files cache, so that file is re-read by the next backup.
    # Make it a small file instead of whatever cp linked last (maybe the big one).
    local newest
    newest=$(find "$SRC" -type f -size -8k -print -quit)
    [[ -z $newest ]] || touch -c -r "$newest" "$newest"
    warm "$SRC" "$CHANGED"

    if ! measure "$tool" init 0 bash -c 'tool_cmd "$@"' _ "$tool" init; then
        fail_rest "$tool" backup_first backup_unchanged backup_changed restore
        return
    fi
    if ! measure "$tool" backup_first "$BASE_BYTES" bash -c 'tool_cmd "$@"' _ "$tool" backup bench-1; then
        fail_rest "$tool" backup_unchanged backup_changed restore
        return
    fi
    row "$tool" repo_after_first ok "" "" "$(du_bytes "$repo")" ""
    if ! measure "$tool" backup_unchanged "$BASE_BYTES" bash -c 'tool_cmd "$@"' _ "$tool" backup bench-2; then
        fail_rest "$tool" backup_changed restore
        return
    fi
    row "$tool" repo_after_unchanged ok "" "" "$(du_bytes "$repo")" ""

    # turn $SRC into the changed tree in place: rsync replaces only the files
    # that differ (new inode via rename, so base is never written), adds and
    # deletes; untouched files keep inode, ctime and mtime
    rsync -a --delete "$CHANGED/" "$SRC/"
    if ! measure "$tool" backup_changed "$CHANGED_BYTES" bash -c 'tool_cmd "$@"' _ "$tool" backup bench-3; then
        fail_rest "$tool" restore
        return
    fi
    row "$tool" repo_after_changed ok "" "" "$(du_bytes "$repo")" ""
    row "$tool" cache_size ok "" "" "$(du_bytes "$cache")" ""

    mount_scratch
    if measure "$tool" restore "$CHANGED_BYTES" bash -c 'tool_cmd "$@"' _ "$tool" restore bench-3; then
        local root
        root=$(restored_root)
        if diff -r -q --no-dereference "$SRC" "$root" >"$LOGS/$tool-verify.log" 2>&1; then
            row "$tool" restore_verify ok "" "" "" "identical to source (diff -r)"
        else
            row "$tool" restore_verify failed "" "" "" "differs from source, see $LOGS/$tool-verify.log"
            warn "$tool restore differs from the source ($(wc -l <"$LOGS/$tool-verify.log") diff lines)"
        fi
    fi
    umount_scratch
    echo "-- $tool mount"
    mount_phase "$tool"
}

# ---------------------------------------------------------------- mounts
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

MOUNT_PID=""
MOUNT_ROOT=""
MOUNT_HWM=0
# fuse_mount TOOL: mount TOOL's repository (its last snapshot) on $MNT, fresh; sets MOUNT_PID and
# MOUNT_ROOT (the backed-up tree inside the mount).
fuse_mount() {
    local tool=$1 repo="$BENCH_DIR/repo-$1" cache="$BENCH_DIR/cache-$1" i
    mkdir -p "$MNT"
    case $tool in
    bakfs)
        MOUNT_PID=$(XDG_CACHE_HOME=$cache "$BAKFS" --json mount --repo "$repo" --password-file "$PWFILE" "$MNT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
        MOUNT_ROOT="$MNT/latest$SRC"
        ;;
    restic)
        RESTIC_REPOSITORY=$repo RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR=$cache restic mount "$MNT" >>"$LOGS/restic-mount.log" 2>&1 &
        MOUNT_PID=$!
        MOUNT_ROOT="$MNT/snapshots/latest$SRC"
        ;;
    borg)
        BORG_PASSPHRASE=$PASSWORD BORG_BASE_DIR=$cache borg mount "$repo::bench-3" "$MNT" >>"$LOGS/borg-mount.log" 2>&1
        MOUNT_PID=$(pgrep -n -f "borg mount") || true
        MOUNT_ROOT="$MNT$SRC"
        ;;
    esac
    for i in $(seq 600); do
        [[ -d $MOUNT_ROOT ]] && return 0
        sleep 0.1
    done
    warn "$tool mount did not come up"
    return 1
}

fuse_umount() {
    local hwm
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$MOUNT_PID/status" 2>/dev/null || echo 0)
    ((hwm > MOUNT_HWM)) && MOUNT_HWM=$hwm
    echo "VmHWM ${hwm} KiB after: ${MOUNT_OPS:-?}" >>"$LOGS/${MOUNT_TOOL:-mount}-mount-hwm.log"
    umount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" || true
    for _ in $(seq 100); do
        kill -0 "$MOUNT_PID" 2>/dev/null || break
        sleep 0.1
    done
}

# mount_ops TOOL ROOT: the read workloads on ROOT (a mount, or the original tree for "native").
# Each cold measurement starts from dropped kernel caches (and, for a mount, a fresh mount).
mount_ops() {
    local tool=$1 fresh=$2
    local big
    big=$(find "$SRC" -type f -printf '%s %P\n' | sort -n | tail -n 1 | cut -d' ' -f2-)  # the >100 MB file
    local big_bytes
    big_bytes=$(stat -c %s "$SRC/$big")
    $fresh || return 0
    drop_caches
    measure "$tool" m_ls_cold 0 bash -c 'ls -lR "$1" >/dev/null' _ "$MOUNT_ROOT" || true
    measure "$tool" m_ls_warm 0 bash -c 'ls -lR "$1" >/dev/null' _ "$MOUNT_ROOT" || true
    measure "$tool" m_find 0 bash -o pipefail -c 'find "$1" | wc -l' _ "$MOUNT_ROOT" || true
    MOUNT_OPS="ls -lR cold and warm, find"
    $fresh || return 0
    drop_caches
    measure "$tool" m_read_all "$CHANGED_BYTES" bash -o pipefail -c 'tar -cf - -C "$1" . | wc -c' _ "$MOUNT_ROOT" || true
    measure "$tool" m_read_all_warm "$CHANGED_BYTES" bash -o pipefail -c 'tar -cf - -C "$1" . | wc -c' _ "$MOUNT_ROOT" || true
    MOUNT_OPS="read every file, cold and warm"
    $fresh || return 0
    drop_caches
    measure "$tool" m_read_big "$big_bytes" bash -c 'cat "$1" >/dev/null' _ "$MOUNT_ROOT/$big" || true
    MOUNT_OPS="the big file"
    $fresh || return 0
    drop_caches
    # The reads alone (timed by the script, from open to close), and the whole command.
    local reads=""
    measure "$tool" m_pread_wall 0 python3 "$HERE/pread.py" "$MOUNT_ROOT/$big" 1000 &&
        reads=$(tail -n 1 "$LOGS/$tool-m_pread_wall.log")
    if [[ $reads =~ ^[0-9]+\.[0-9]+$ ]]; then
        row "$tool" m_pread ok "$reads" "" "" "timed inside pread.py"
    else
        row "$tool" m_pread failed "" "" "" "see m_pread_wall"
    fi
    MOUNT_OPS="1000 random reads"
}

remount() { fuse_umount; fuse_mount "$1"; }
export -f remount fuse_mount fuse_umount

mount_phase() {
    local tool=$1
    MOUNT_HWM=0
    MOUNT_TOOL=$tool  # per-mount peaks go to logs/TOOL-mount-hwm.log
    if ! fuse_mount "$tool"; then
        for op in m_ls_cold m_ls_warm m_find m_read_all m_read_all_warm m_read_big m_pread m_pread_wall; do row "$tool" "$op" failed "" "" "" "mount failed"; done
        fuse_umount
        return
    fi
    # "fresh" hook: remount and report true, so every cold run starts from a new mount
    local first=1
    fresh_mount() {
        if ((first)); then first=0; else remount "$tool" || return 1; fi
        return 0
    }
    mount_ops "$tool" fresh_mount
    fuse_umount
    row "$tool" m_peak_rss ok "" "$MOUNT_HWM" "" "mount process VmHWM"
}

# ---------------------------------------------------------------- run
echo "results: $RES_DIR"
for tool in "${TOOL_LIST[@]}"; do
    if [[ $tool == bakfs && -z $BAKFS ]]; then
        for op in init backup_first backup_unchanged backup_changed restore; do
            row bakfs "$op" skipped "" "" "" "binary missing or build failed"
        done
        continue
    fi
    run_tool "$tool"
done

echo "== tar (native baseline)"
warm "$BASE"
mount_scratch
# shellcheck disable=SC2016  # $1/$2 are expanded by the inner bash
measure tar tar_copy "$BASE_BYTES" bash -o pipefail -c 'tar -cf - -C "$1" . | tar -xf - -C "$2"' _ "$BASE" "$RESTORE" || true
umount_scratch

echo "== the original tree (native baseline for the mounts)"
MOUNT_ROOT=$SRC
native_fresh() { return 0; }
mount_ops native native_fresh

echo
python3 "$HERE/report.py" --results "$RES_DIR" --out "$OUT"
echo
echo "report written to $OUT (raw results: $RES_DIR)"
