#!/usr/bin/env bash
# bakfs drill --full against bakfs restore (with and without --verify) on the same snapshot, each
# into a fresh tmpfs, warm page cache; prints the median, fastest and slowest of --runs runs and
# the rate and ready time the drill recorded, and the largest peak RSS of the runs. As root (a tmpfs is mounted).
#
#   bench/drill.sh [--runs N] [--no-build]
#
# Dataset: /usr/lib/x86_64-linux-gnu and /usr/share/doc (many files of every size) plus eight
# 32 MiB files of random bytes, in $BENCH_DIR (default /var/tmp/bakfs-bench-drill).
set -euo pipefail
runs=5
build=1
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
top=$(cd "$(dirname "$0")/.." && pwd)
((build)) && (cd "$top" && cargo build --release --bin bakfs -q)
bin=${BAKFS_BIN:-$top/target/release/bakfs}
dir=${BENCH_DIR:-/var/tmp/bakfs-bench-drill}
rm -rf "$dir" && mkdir -p "$dir/data" "$dir/tmpfs"
mount -t tmpfs -o size=4g tmpfs "$dir/tmpfs"
trap 'umount "$dir/tmpfs" 2>/dev/null; rm -rf "$dir"' EXIT
cp -a /usr/lib/x86_64-linux-gnu /usr/share/doc "$dir/data/"
for i in 1 2 3 4 5 6 7 8; do head -c $((32 << 20)) /dev/urandom >"$dir/data/random$i"; done
export BAKFS_REPO=$dir/repo BAKFS_PASSWORD=bench BAKFS_STATE_DIR=$dir/state XDG_CONFIG_HOME=$dir/no-config
"$bin" init >/dev/null
"$bin" -q backup "$dir/data" >/dev/null
files=$(find "$dir/data" -type f | wc -l)
bytes=$(du -sb --apparent-size "$dir/data" | cut -f1)
cat "$dir/repo"/data/*/* "$dir/repo"/index/* >/dev/null   # warm cache

# Seconds and peak RSS (KiB) of one command, the tmpfs emptied before.
timed() {
    rm -rf "${dir:?}/tmpfs/"*
    /usr/bin/time -f "%e %M" -o "$dir/time.out" "$@" >/dev/null
    cat "$dir/time.out"
}
stats() {
    sort -n | awk '{a[NR]=$1; m = $2 > m ? $2 : m}
        END {printf "%.2f s (%.2f–%.2f) | %d MiB", a[int((NR+1)/2)], a[1], a[NR], m / 1024}'
}

declare -A res
for what in restore verify drill; do
    for ((i = 0; i < runs; i++)); do
        case $what in
            restore) timed "$bin" -q restore latest --target "$dir/tmpfs/r" ;;
            verify) timed "$bin" -q restore latest --target "$dir/tmpfs/r" --verify ;;
            drill) timed "$bin" -q drill --full --sandbox "$dir/tmpfs" ;;
        esac
    done >"$dir/$what.times"
    res[$what]=$(stats <"$dir/$what.times")
done
last=$("$bin" --json drill --full --sandbox "$dir/tmpfs")
field() { python3 -c "import json, sys; d = json.load(sys.stdin)['drill']; print($1)" <<<"$last"; }
rate=$(field "d['bytes'] / d['seconds'] / 1048576")
ready=$(field "d['ready_seconds']")
printf 'dataset: %s files, %s MiB; %s runs each, median (fastest–slowest)\n' \
    "$files" "$((bytes >> 20))" "$runs"
printf '| command | time | peak RSS |\n|---|---|---|\n'
printf '| restore | %s |\n| restore --verify | %s |\n| drill --full | %s |\n' \
    "${res[restore]}" "${res[verify]}" "${res[drill]}"
printf 'the drill recorded: %.0f MiB/s, ready in %.3f s\n' "$rate" "$ready"
