#!/usr/bin/env bash
# Benchmark bakfs against restic at fleet scale (issue 17): a tree of N small files (default
# 1,000,000 in 1,000 directories, 200-2,000 random bytes each), in one run:
# - first backup and unchanged re-backup, with the page cache dropped first (cold) and with the
#   tree in it (warm: a fresh repository), check (structure) and prune (with nothing to remove,
#   every pack still examined): wall time and peak RSS (GNU time);
# - a fresh mount of the snapshot: `find` over every entry, then `ls -lR` over every entry on a
#   fresh mount, each with the mount process's peak RSS (VmHWM); the same on the tree itself
#   ("native");
# - restore of the whole snapshot into a tmpfs: wall time and peak RSS.
#
# - then (bakfs) a synthetic index of M more blobs (default 10,000,000; core/examples/
#   synth_index.rs, in packs that do not exist) is added to bakfs's repository, which is then
#   opened (the index tables built), backed up into (unchanged, and with 1% of the files
#   changed) and mounted (`find` over every entry), each with its peak RSS.
#
#   bench/scale.sh [--files N] [--synth M] [--tools bakfs,restic] [--no-build] [--no-restic-mount]
#
# --no-restic-mount skips restic's mount rows (its `ls -lR` of 1,000,000 entries takes about
# 10 minutes; the targets compare the mount with the native tree, not with restic).
#
# As root (the tmpfs, FUSE mounts). restic comes from Debian (apt-get install restic). The
# files live in BENCH_DIR (default /var/tmp/bakfs-bench); the tree is kept for the next run
# (scale-tree-N). Prints a markdown table for docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FILES=1000000
TOOLS=bakfs,restic
SYNTH=10000000
BUILD=1
RESTIC_MOUNT=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --files) FILES=$2; shift 2 ;;
    --synth) SYNTH=$2; shift 2 ;;
    --tools) TOOLS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-restic-mount) RESTIC_MOUNT=0; shift ;;
    *) echo "usage: $0 [--files N] [--synth M] [--tools bakfs,restic] [--no-build] [--no-restic-mount]" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "run as root (tmpfs, FUSE mounts)" >&2; exit 1; }
if [[ ,$TOOLS, == *,restic,* ]]; then
    command -v restic >/dev/null || { echo "restic is needed (apt-get install restic)" >&2; exit 1; }
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if ((BUILD)); then (cd "$ROOT" && cargo build --release -q --bins && cargo build --release -q -p bakfs-core --example synth_index); fi
B=$TARGET/release/bakfs
BENCH_DIR=${BENCH_DIR:-/var/tmp/bakfs-bench}
TREE=$BENCH_DIR/scale-tree-$FILES
W=$BENCH_DIR/scale
MNT=$W/mnt
RESTORE=$W/restore
PASSWORD=bench
cleanup() {
    umount -l "$MNT" 2>/dev/null || true
    umount "$RESTORE" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
cleanup
mkdir -p "$W" "$MNT" "$RESTORE"
echo "$PASSWORD" >"$W/pw"

# The tree: DIRS directories of FILES/DIRS files of 200-2,000 random bytes.
DIRS=1000
if [[ ! -f $TREE/.complete ]]; then
    rm -rf "$TREE"
    echo "making $TREE ($FILES files)" >&2
    python3 - "$TREE" "$FILES" "$DIRS" <<'PY'
import os, random, sys
root, files, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(17)
per = max(1, files // dirs)
made = 0
for d in range(dirs):
    p = os.path.join(root, f"d{d:04}")
    os.makedirs(p, exist_ok=True)
    for f in range(per if d < dirs - 1 else files - made):
        with open(os.path.join(p, f"f{f:05}"), "wb") as out:
            out.write(os.urandom(rnd.randint(200, 2000)))
        made += 1
    if made >= files:
        break
open(os.path.join(root, ".complete"), "w").close()
PY
fi
BYTES=$(du -sb "$TREE" | cut -f1)

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# The tree in the page cache (its data and inodes), as on a machine that just wrote it.
warm() { tar cf - "$TREE" | cat >/dev/null; }
# timed NAME CMD...: wall seconds and peak RSS (KiB) of CMD, as "secs rss".
timed() {
    local name=$1
    shift
    /usr/bin/time -f '%e %M' -o "$W/$name.time" "$@" >"$W/$name.log" 2>&1 || {
        echo "$name failed:" >&2
        tail -n 5 "$W/$name.log" >&2
        return 1
    }
    cat "$W/$name.time"
}
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

declare -A R
run_tool() {
    local tool=$1 repo=$W/repo-$1 cache=$W/cache-$1 root pid restore_cmd
    case $tool in
    bakfs)
        export BAKFS_REPO=$repo BAKFS_PASSWORD=$PASSWORD BAKFS_STATE_DIR=$W/state-bakfs XDG_CONFIG_HOME=$W/none XDG_CACHE_HOME=$cache
        "$B" init >/dev/null
        drop; R[$tool,backup]=$(timed bakfs-backup "$B" backup -q "$TREE")
        drop; R[$tool,rebackup]=$(timed bakfs-rebackup "$B" backup -q "$TREE")
        warm
        # A fresh start, as restic's warm run below gets a fresh cache: its own catalog and cache.
        R[$tool,wbackup]=$(BAKFS_REPO=$repo-warm BAKFS_STATE_DIR=$W/state-bakfs-warm XDG_CACHE_HOME=$cache-warm timed bakfs-wbackup bash -c '"$0" init >/dev/null && "$0" backup -q "$1"' "$B" "$TREE")
        R[$tool,wrebackup]=$(BAKFS_REPO=$repo-warm BAKFS_STATE_DIR=$W/state-bakfs-warm XDG_CACHE_HOME=$cache-warm timed bakfs-wrebackup "$B" backup -q "$TREE")
        drop; R[$tool,check]=$(timed bakfs-check "$B" check -q)
        drop; R[$tool,prune]=$(timed bakfs-prune "$B" prune -q)
        mount_it() { pid=$("$B" --json mount "$MNT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'); root=$MNT/latest$TREE; }
        restore_cmd=("$B" restore -q latest --target "$RESTORE")
        ;;
    restic)
        export RESTIC_REPOSITORY=$repo RESTIC_PASSWORD=$PASSWORD RESTIC_CACHE_DIR=$cache
        restic init -q --repository-version 2 >/dev/null
        drop; R[$tool,backup]=$(timed restic-backup restic backup -q --compression auto "$TREE")
        drop; R[$tool,rebackup]=$(timed restic-rebackup restic backup -q --compression auto "$TREE")
        warm
        R[$tool,wbackup]=$(RESTIC_REPOSITORY=$repo-warm RESTIC_CACHE_DIR=$cache-warm timed restic-wbackup bash -c 'restic init -q --repository-version 2 >/dev/null && restic backup -q --compression auto "$0"' "$TREE")
        R[$tool,wrebackup]=$(RESTIC_REPOSITORY=$repo-warm RESTIC_CACHE_DIR=$cache-warm timed restic-wrebackup restic backup -q --compression auto "$TREE")
        drop; R[$tool,check]=$(timed restic-check restic check -q)
        drop; R[$tool,prune]=$(timed restic-prune restic prune -q)
        mount_it() { restic mount "$MNT" >"$W/restic-mount.log" 2>&1 & pid=$!; root=$MNT/snapshots/latest$TREE; }
        restore_cmd=(restic restore -q latest --target "$RESTORE")
        ;;
    esac
    for op in find ls; do
        [[ $tool == restic && $RESTIC_MOUNT == 0 ]] && continue
        drop
        mount_it
        for _ in $(seq 600); do [[ -d $root ]] && break; sleep 0.1; done
        local t0 t1
        t0=$(date +%s.%N)
        case $op in
        find) find "$root" | wc -l >/dev/null ;;
        ls) ls -lR "$root" >/dev/null ;;
        esac
        t1=$(date +%s.%N)
        R[$tool,$op]="$(python3 -c "print(f'{$t1 - $t0:.2f}')") $(hwm "$pid")"
        umount "$MNT" 2>/dev/null || umount -l "$MNT"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    mount -t tmpfs -o size=$((BYTES * 3 / 1024 + 1048576))k scale-restore "$RESTORE"
    drop
    R[$tool,restore]=$(timed "$tool-restore" "${restore_cmd[@]}")
    umount "$RESTORE"
}

for t in ${TOOLS//,/ }; do
    echo "-- $t" >&2
    run_tool "$t"
done
# A repository holding SYNTH more blobs: bakfs's, with a synthetic index added.
synth() {
    local repo=$W/repo-bakfs pid t0 t1 changed
    export BAKFS_REPO=$repo BAKFS_PASSWORD=$PASSWORD BAKFS_STATE_DIR=$W/state-bakfs XDG_CONFIG_HOME=$W/none XDG_CACHE_HOME=$W/cache-bakfs
    "$TARGET/release/examples/synth_index" "$repo" "$W/pw" "$SYNTH" 2>/dev/null
    drop; R[synth,open]=$(timed synth-open "$B" snapshots -q)
    drop; R[synth,rebackup]=$(timed synth-rebackup "$B" backup -q "$TREE")
    # 1% of the files changed: new blobs looked up among all the others, and stored.
    changed=$(find "$TREE" -name 'f*' | awk -v n="$((FILES / 100))" 'NR % 100 == 0 && NR / 100 <= n')
    while read -r f; do head -c 700 /dev/urandom >"$f"; done <<<"$changed"
    drop; R[synth,changed]=$(timed synth-changed "$B" backup -q "$TREE")
    drop
    pid=$("$B" --json mount "$MNT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
    for _ in $(seq 600); do [[ -d $MNT/latest$TREE ]] && break; sleep 0.1; done
    t0=$(date +%s.%N)
    find "$MNT/latest$TREE" | wc -l >/dev/null
    t1=$(date +%s.%N)
    R[synth,find]="$(python3 -c "print(f'{$t1 - $t0:.2f}')") $(hwm "$pid")"
    # Every snapshot of the tree (the same files, 4 times): what more snapshots cost the mount.
    # (ids/ and latest are links: the snapshots' own directories are named by their time.)
    t0=$(date +%s.%N)
    find "$MNT"/[0-9]* | wc -l >/dev/null
    t1=$(date +%s.%N)
    R[synth,findall]="$(python3 -c "print(f'{$t1 - $t0:.2f}')") $(hwm "$pid")"
    umount "$MNT" 2>/dev/null || umount -l "$MNT"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # The tree is the benchmark's again for the next run.
    rm -f "$TREE/.complete"
}
if [[ ,$TOOLS, == *,bakfs,* ]] && ((SYNTH > 0)); then
    echo "-- bakfs with $SYNTH synthetic blobs" >&2
    synth
fi

for op in find ls; do
    drop
    t0=$(date +%s.%N)
    case $op in
    find) find "$TREE" | wc -l >/dev/null ;;
    ls) ls -lR "$TREE" >/dev/null ;;
    esac
    t1=$(date +%s.%N)
    R[native,$op]="$(python3 -c "print(f'{$t1 - $t0:.2f}')") 0"
done

cell() { # cell TOOL OP: "12.3 s, 456 MB peak"
    local v=${R[$1,$2]:-} s m
    [[ -n $v ]] || { echo "—"; return; }
    read -r s m <<<"$v"
    if [[ $m == 0 ]]; then echo "$s s"; else echo "$s s, $((m / 1024)) MiB peak"; fi
}
echo "A tree of $FILES files in $DIRS directories ($((BYTES / 1048576)) MiB), caches dropped before each step."
echo
printf '| | %s | native |\n|---|%s---:|\n' "$(echo "${TOOLS//,/ | }")" "$(for _ in ${TOOLS//,/ }; do printf -- '---:|'; done)"
for row in "first backup, cold:backup" "unchanged re-backup, cold:rebackup" "first backup, warm (tree in the page cache):wbackup" "unchanged re-backup, warm:wrebackup" "check (structure, no data read):check" "prune (nothing to remove; every pack examined):prune" "mount, fresh: \`find\` over every entry:find" "mount, fresh: \`ls -lR\` over every entry:ls" "restore into a tmpfs:restore"; do
    name=${row%:*} op=${row##*:}
    printf '| %s |' "$name"
    for t in ${TOOLS//,/ }; do printf ' %s |' "$(cell "$t" "$op")"; done
    case $op in find | ls) printf ' %s |\n' "$(cell native "$op")" ;; *) printf ' |\n' ;; esac
done
if [[ -n ${R[synth,open]:-} ]]; then
    echo
    echo "The same repository with $SYNTH synthetic blobs added to its index (bakfs):"
    echo
    echo "| | bakfs |"
    echo "|---|---:|"
    for row in "open (index tables built):open" "unchanged re-backup:rebackup" "backup, 1% of files changed:changed" "mount, fresh: \`find\` over every entry:find" "then \`find\` over all 4 snapshots:findall"; do
        printf '| %s | %s |\n' "${row%:*}" "$(cell synth "${row##*:}")"
    done
fi
