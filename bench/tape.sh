#!/usr/bin/env bash
# Benchmark tapes on the virtual drive, in one run:
# - writing a repository of SIZE MiB (a backup of random, incompressible files) to a cartridge
#   through the tape layout (tape/examples/write_repo.rs: a label, one job, its catalog)
#   against `dd bs=256K` writing the same bytes (the repository's files concatenated into one
#   file beforehand) to a file on the same filesystem, alternately, RUNS times, both from the
#   page cache;
# - bakfs-mediad's whole job onto a fresh cartridge (write, read back, record) against dd
#   followed by reading its output back (both read back from the page cache: a virtual
#   cartridge is files; a real drive reads its tape);
# - restoring one file from the middle of the tape alone (no catalog): how many tape files and
#   bytes it reads, against the tape's.
#
#   bench/tape.sh [--size MB] [--runs N] [--no-build]
#
# Nothing is fsynced by either writer (a virtual cartridge is files in a directory, as dd's
# output is); `sync` runs before each write so neither pays for the other's writeback. The
# files live in BENCH_DIR (default /var/tmp/bakfs-bench). Prints markdown for
# docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIZE_MB=2048
RUNS=5
BUILD=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --size) SIZE_MB=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "usage: $0 [--size MB] [--runs N] [--no-build]" >&2; exit 2 ;;
    esac
done
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
if ((BUILD)); then
    (cd "$ROOT" && cargo build --release -q --bins && cargo build --release -q -p bakfs-tape --example write_repo)
fi
B=$TARGET/release/bakfs
M=$TARGET/release/bakfs-mediad
EX=$TARGET/release/examples/write_repo
BENCH_DIR=${BENCH_DIR:-/var/tmp/bakfs-bench}
W=$BENCH_DIR/tape
DATA=$W/data
trap 'rm -rf "$W"' EXIT
rm -rf "$W" && mkdir -p "$DATA"
now() { date +%s.%N; }
# Random files of 64 MiB and a few small ones: the repository is as big as the data.
for ((i = 0; i < SIZE_MB / 64; i++)); do head -c 64M /dev/urandom >"$DATA/big-$i"; done
for ((i = 0; i < 200; i++)); do head -c $((i * 997)) /dev/urandom >"$DATA/small-$i"; done

export BAKFS_REPO=$W/repo BAKFS_STATE_DIR=$W/state BAKFS_PASSWORD=bench XDG_CONFIG_HOME=$W/none
"$B" init >/dev/null
"$B" backup "$DATA" -q >/dev/null
BYTES=$(find "$W/repo" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
MB=$(python3 -c "print(round($BYTES / 2**20))")
echo "repository: $MB MiB" >&2
all_files() { find "$W/repo" -type f -print0 | sort -z; }
all_files | xargs -0 cat >"$W/concat" # dd's source: the same bytes, one file

# Each run starts from the same memory: the last output gone, the caches dropped, the source
# read back in.
fresh() { rm -rf "$W/dd.out" "$W/lib"; sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
dd_s=() tape_s=()
for ((i = 0; i < RUNS; i++)); do
    fresh; cat "$W/concat" >/dev/null
    t0=$(now); dd if="$W/concat" of="$W/dd.out" bs=256K status=none; t1=$(now)
    dd_s+=("$(python3 -c "print($t1 - $t0)")")
    fresh; all_files | xargs -0 cat >/dev/null
    tape_s+=("$(/usr/bin/time -f "%M" -o "$W/ex.rss" "$EX" "$W/repo" "$W/lib" | awk '{print $(NF-3)}')")
done
rm -rf "$W/lib"

# bakfs-mediad's whole job: a fresh cartridge, labelled, loaded; mediad --once writes, reads
# back and records. Against it: dd, then its output read back with the cache dropped.
DRIVE="virtual:$W/lib"
cat >"$W/mediad.toml" <<EOF
[mediad]
tape_drives = ["$DRIVE"]
tape_eject = false
EOF
"$B" tape create BENCH1 --capacity $((MB * 2 + 1024))M --drive "$DRIVE" >/dev/null
"$B" tape load BENCH1 --drive "$DRIVE" >/dev/null
"$B" tape label BENCH1 --pool BENCH --keep-last 1 --drive "$DRIVE" >/dev/null
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now); /usr/bin/time -f "%M" -o "$W/mediad.rss" "$M" --once --config "$W/mediad.toml" 2>"$W/mediad.log"; t1=$(now)
job_s=$(python3 -c "print($t1 - $t0)")
grep -q "up to date\|has its copy" "$W/mediad.log" || { cat "$W/mediad.log" >&2; exit 1; }
rm -f "$W/dd.out"; sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now)
all_files | xargs -0 cat | dd of="$W/dd.out" bs=256K iflag=fullblock status=none
cat "$W/dd.out" >/dev/null
t1=$(now)
ddread_s=$(python3 -c "print($t1 - $t0)")
rm -f "$W/dd.out"

# One file from the middle of the tape, from the tape alone (no catalog: it scans first).
FILE=small-100
RESTORE_LOG=$(BAKFS_STATE_DIR=$W/fresh BAKFS_LOG=info /usr/bin/time -f "%M" -o "$W/restore.rss" \
    "$B" tape restore "latest:$DATA/$FILE" --target "$W/one" --drive "$DRIVE" 2>&1 >/dev/null |
    grep "repository files (")
TAPE_FILES=$(BAKFS_STATE_DIR=$W/fresh "$B" --json tape scan --drive "$DRIVE" | python3 -c 'import json, sys; print(json.load(sys.stdin)["tape_files"])')
cmp "$W/one/$FILE" "$DATA/$FILE"

python3 - "$MB" "${dd_s[*]}" "${tape_s[*]}" "$job_s" "$ddread_s" "$RESTORE_LOG" "$TAPE_FILES" \
    "$(cat "$W/mediad.rss")" "$(cat "$W/restore.rss")" "$(cat "$W/ex.rss")" <<'PY'
import statistics, sys
mb = int(sys.argv[1])
dd = sorted(map(float, sys.argv[2].split()))
tape = sorted(map(float, sys.argv[3].split()))
job, ddread = float(sys.argv[4]), float(sys.argv[5])
print(f"A repository of {mb} MiB, {len(dd)} runs each.\n")
print("| writer | best | median |\n|---|---|---|")
def row(name, t):
    best, med = t[0], statistics.median(t)
    return f"| {name} | {best:.2f} s ({mb / best:.0f} MiB/s) | {med:.2f} s ({mb / med:.0f} MiB/s) |"
print(row("`dd bs=256K` of the repository's files", dd))
print(row("the tape layout on the virtual drive", tape))
print(f"\nThe tape layout against dd (dd's time over the writer's): best {100 * dd[0] / tape[0]:.0f}%, "
      f"median {100 * statistics.median(dd) / statistics.median(tape):.0f}%. The writer's peak RSS: "
      f"{int(sys.argv[10]) / 1024:.0f} MiB.\n")
print("| whole job, caches dropped | time |\n|---|---|")
print(f"| bakfs-mediad --once: write, read back, record | {job:.2f} s ({mb / job:.0f} MiB/s), peak RSS {int(sys.argv[8]) / 1024:.0f} MiB |")
print(f"| dd, then its output read back | {ddread:.2f} s ({mb / ddread:.0f} MiB/s) |")
print(f"\nbakfs-mediad's job against dd and a read-back: {100 * ddread / job:.0f}%.\n")
print(f"Restoring one small file from the middle of the tape alone (no catalog: it scans the tape's "
      f"entry records first): `{sys.argv[6].split('INFO ')[-1].strip()}`, of the tape's {sys.argv[7]} "
      f"tape files and {mb} MiB; peak RSS {int(sys.argv[9]) / 1024:.0f} MiB.")
PY
