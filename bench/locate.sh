#!/usr/bin/env bash
# Benchmark `bakfs locate`: on a synthetic catalog of 1,000,000 recorded files, and the cost of
# recording a snapshot's files during `bakfs backup` of 100,000 files.
#
#   bench/locate.sh [--runs N] [--no-build] [--files N]
#
# 1. A catalog of the current schema filled with sqlite3: 50,000 paths (500 directories of 100
#    files) in 20 snapshots (1,000,000 snapshot x path rows), each file changed every 5
#    snapshots (200,000 versions); the 5 oldest snapshots forgotten by the primary and kept by 4
#    media (two removed, two plugged in). The repository it names does not exist: locate reads
#    only the catalog. Wall time of `bakfs locate FILE` (table, --json), `--at`, a directory
#    listing of 100 files and a path never recorded: warm (median, fastest, slowest of N runs)
#    and, as root, once after dropping the page cache.
# 2. A tree of N files (default 100,000: 1,000 directories of 100 small files), backed up
#    three times into a fresh repository: the first backup, an unchanged re-backup and one after
#    touching 1% of the files; for each the backup's wall time and the time spent recording its
#    files in the catalog (bakfs -v logs it). With BASELINE_BIN=PATH (a bakfs without the file
#    table), the same three backups by it, for comparison.
#
# Needs sqlite3 (scripts/deps.sh installs it). The figures go to docs/benchmarks.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=20
BUILD=1
FILES=100000
while [[ $# -gt 0 ]]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --files) FILES=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--no-build] [--files N]" >&2; exit 2 ;;
    esac
done
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed (apt-get install sqlite3)" >&2; exit 1; }
BENCH_DIR=${BENCH_DIR:-/var/tmp/bakfs-bench}
W=$BENCH_DIR/locate
if ((BUILD)); then (cd "$ROOT" && cargo build --release --bins -q); fi
B=${BAKFS_BIN:-$ROOT/target/release/bakfs}
rm -rf "$W"
mkdir -p "$W/state"
export BAKFS_STATE_DIR=$W/state XDG_CONFIG_HOME=$W/no-config
unset BAKFS_PASSWORD BAKFS_PASSWORD_FILE BAKFS_CONFIG
export BAKFS_REPO=$W/repo

"$B" media list >/dev/null # an empty catalog of the current schema
DB=$W/state/catalog.db
REPO=$(printf 'f%.0s' {1..64})
NOW=$(date +%s%N)
H=3600000000000
t0=$(date +%s.%N)
sqlite3 "$DB" <<SQL
PRAGMA foreign_keys = OFF;
PRAGMA synchronous = OFF;
BEGIN;
CREATE TEMP TABLE n AS WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 999999) SELECT i FROM c;
INSERT INTO repositories VALUES ('$REPO', '$W/repo', $NOW);
-- 20 snapshots a day apart (i = 0 the oldest); the primary keeps the 15 newest
INSERT INTO snapshots SELECT '$REPO', printf('1%063x', i),
    strftime('%Y-%m-%dT%H:%M:%SZ', ($NOW / 1000000000) - (20 - i) * 86400, 'unixepoch'),
    $NOW - (20 - i) * 24 * $H, 'host', '["/srv"]', '[]', printf('2%063x', i), NULL, 'srv',
    50000, 5000000000 FROM n WHERE i >= 5 AND i < 20;
INSERT INTO file_snapshots (id, repo_id, snapshot_id, time_ns, files)
    SELECT i + 1, '$REPO', printf('1%063x', i), $NOW - (20 - i) * 24 * $H, 50000 FROM n WHERE i < 20;
INSERT INTO file_paths (id, path) SELECT i + 1, printf('/srv/data/d%03d/f%05d', i / 100, i)
    FROM n WHERE i < 50000;
-- version k (0-3) of path p is id p * 4 + k + 1
INSERT INTO file_versions (id, content, size, mtime_ns)
    SELECT i + 1, randomblob(32), 4096 + i % 4, $NOW - (20 - (i % 4) * 5) * 24 * $H FROM n WHERE i < 200000;
INSERT INTO snapshot_files (snapshot, path_id, version_id)
    SELECT i / 50000 + 1, i % 50000 + 1, (i % 50000) * 4 + (i / 50000) / 5 + 1 FROM n;
-- 4 media: OFFSITE-1/2 (usb, offsite, removed), SHELF-1/2 (disk, onsite, plugged in); each
-- holds 5 snapshots, OFFSITE-1 the 5 the primary forgot
INSERT INTO media (id, label, repo_id, fs_uuid, fs_type, kind, pool, location, capacity,
    retention, enrolled_ns, last_seen_ns, last_written_ns, last_verified_ns, state, bytes, presence,
    presence_ns) SELECT printf('3%063x', i),
    CASE WHEN i < 2 THEN 'OFFSITE-' || (i + 1) ELSE 'SHELF-' || (i - 1) END, '$REPO',
    'uuid-' || i, 'ext4', CASE WHEN i < 2 THEN 'usb' ELSE 'disk' END, 'p',
    CASE WHEN i < 2 THEN 'offsite' ELSE 'onsite' END, 256000000000, '{}', 0, $NOW, $NOW, $NOW,
    'safe to remove', 0, CASE WHEN i < 2 THEN 'removed' ELSE 'plugged in' END, $NOW FROM n WHERE i < 4;
INSERT INTO media_snapshots SELECT printf('3%063x', i / 5), printf('1%063x', i),
    $NOW - (20 - i) * 24 * $H, 'host', '["/srv"]', 'srv', $NOW FROM n WHERE i < 20;
COMMIT;
ANALYZE;
SQL
t1=$(date +%s.%N)
counts=$(sqlite3 "$DB" "SELECT (SELECT COUNT(*) FROM snapshot_files), (SELECT COUNT(*) FROM file_paths),
    (SELECT COUNT(*) FROM file_versions), (SELECT COUNT(*) FROM file_snapshots)")
size=$(du -m "$DB" | cut -f1)
echo "catalog: snapshot_files|paths|versions|snapshots = $counts, ${size} MiB, built in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s" >&2

FILE=/srv/data/d250/f25042
# One run of `bakfs ARGS`, its wall time in ms on stdout (exit 1 allowed: not found).
one() {
    local a b rc=0
    a=$(date +%s%N)
    "$B" "$@" >/dev/null 2>&1 || rc=$?
    b=$(date +%s%N)
    ((rc <= 1)) || { echo "bakfs $* failed ($rc)" >&2; exit 1; }
    echo $(((b - a) / 1000000))
}
measure() {
    local xs=()
    for _ in $(seq "$RUNS"); do xs+=("$(one "$@")"); done
    printf '%s\n' "${xs[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%d ms (%d-%d)", a[int((NR+1)/2)], a[1], a[NR]}'
}
"$B" locate "$FILE" >/dev/null # warm up
cold="-"
if [[ $(id -u) -eq 0 ]]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
    cold="$(one locate "$FILE") ms"
fi
# Peak RSS of one lookup (GNU time, Debian package time).
/usr/bin/time -f %M -o "$W/rss" "$B" locate "$FILE" >/dev/null
rss=$(awk '{printf "%.0f MiB", $1 / 1024}' "$W/rss")
echo
echo "| catalog | locate FILE | --json | cold cache | --at | a directory (100 files) | never recorded | \`media list\` (opening the catalog) | peak RSS of a lookup |"
echo "|---|---|---|---|---|---|---|---|---|"
echo "| 1,000,000 files recorded (${size} MiB) | $(measure locate "$FILE") | $(measure --json locate "$FILE") | $cold | $(measure locate --at "$(date -u -d @$(((NOW / 1000000000) - 12 * 86400)) +%Y-%m-%dT%H:%M:%SZ)" "$FILE") | $(measure locate /srv/data/d250) | $(measure locate /srv/nothing) | $(measure media list) | $rss |"

# 2. The cost of recording files during backup.
SRC=$W/src
mkdir -p "$SRC"
python3 - "$SRC" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 100))
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d" % i), "w") as f:
        f.write("file %d\n" % i)
PY
export BAKFS_PASSWORD=bench BAKFS_INSECURE_TEST_KDF=1
rm -rf "$W/state" "$W/repo"
"$B" -q init >/dev/null 2>&1
# One backup: "wall s | recording s | new paths | new versions | peak RSS".
backup() {
    local a b log
    a=$(date +%s%N)
    log=$(/usr/bin/time -f %M -o "$W/rss" "$B" -q -v backup "$SRC" 2>&1 >/dev/null)
    b=$(date +%s%N)
    # The recording's own line: "catalog: files recorded files=… changed=… new_paths=… new_versions=… seconds=…"
    local rec
    rec=$(grep -o 'files recorded.*' <<<"$log" | head -1)
    local secs paths versions
    # (A first backup records its files while it runs: then this is only what came after.)
    secs=$(grep -o 'seconds=[0-9.e+-]*' <<<"$rec" | cut -d= -f2)
    paths=$(grep -o 'new_paths=[0-9]*' <<<"$rec" | cut -d= -f2)
    versions=$(grep -o 'new_versions=[0-9]*' <<<"$rec" | cut -d= -f2)
    printf '%.2f s | %.2f s | %s | %s | %.0f MiB' "$(awk "BEGIN {print ($b - $a) / 1e9}")" "${secs:-0}" "$paths" "$versions" "$(awk '{print $1 / 1024}' "$W/rss")"
}
first=$(backup)
again=$(backup)
find "$SRC" -name 'f*' | awk 'NR % 100 == 0' | xargs touch
touched=$(backup)
# The same three backups by a bakfs that records no files (BASELINE_BIN, e.g. main's build before
# the file table), into a repository and catalog of their own.
base=("-" "-" "-")
if [[ -n ${BASELINE_BIN:-} ]]; then
    wall() {
        local a b
        a=$(date +%s%N)
        /usr/bin/time -f %M -o "$W/rss-base" "$BASELINE_BIN" -q backup "$SRC" >/dev/null 2>&1
        b=$(date +%s%N)
        awk "BEGIN {printf \"%.2f s, \", ($b - $a) / 1e9}"
        awk '{printf "%.0f MiB", $1 / 1024}' "$W/rss-base"
    }
    (
        export BAKFS_STATE_DIR=$W/state-base BAKFS_REPO=$W/repo-base
        "$BASELINE_BIN" -q init >/dev/null 2>&1
        b1=$(wall)
        b2=$(wall)
        find "$SRC" -name 'f*' | awk 'NR % 100 == 1' | xargs touch
        b3=$(wall)
        echo "$b1|$b2|$b3"
    ) >"$W/base"
    IFS='|' read -r -a base <"$W/base"
fi
echo
echo "| backup of $FILES files | wall | recording the files after the backup (a first backup records them while it runs) | new paths | new versions | peak RSS | wall, peak RSS without recording (BASELINE_BIN) |"
echo "|---|---|---|---|---|---|---|"
echo "| first | $first | ${base[0]} |"
echo "| unchanged | $again | ${base[1]} |"
echo "| 1% touched | $touched | ${base[2]} |"
echo "catalog after 3 backups: $(du -m "$W/state/catalog.db" | cut -f1) MiB" >&2
