#!/usr/bin/env bash
# Benchmark `bakfs status` on a large synthetic catalog: 100 media, 10,000 snapshots of 10 jobs
# and 1,000,000 recorded media files (with 100,000 snapshot-pack links, 10,000 backup runs,
# 10,000 copy runs, 4,000 media snapshots and 200 drills), built with sqlite3 into a catalog of
# the current schema. The repository it names does not exist: status reads only the catalog and
# the configuration.
#
#   bench/status.sh [--runs N] [--no-build]
#
# Prints the catalog's size and the wall time of `bakfs status` (table and --json), warm (the
# median, fastest and slowest of N runs) and, as root, once after dropping the page cache;
# the figures go to docs/benchmarks.md. Needs sqlite3 (scripts/deps.sh installs it).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=20
BUILD=1
while [[ $# -gt 0 ]]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "usage: $0 [--runs N] [--no-build]" >&2; exit 2 ;;
    esac
done
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed (apt-get install sqlite3)" >&2; exit 1; }
BENCH_DIR=${BENCH_DIR:-/var/tmp/bakfs-bench}
W=$BENCH_DIR/status
if ((BUILD)); then (cd "$ROOT" && cargo build --release --bins -q); fi
B=${BAKFS_BIN:-$ROOT/target/release/bakfs}
rm -rf "$W"
mkdir -p "$W/state"
export BAKFS_STATE_DIR=$W/state XDG_CONFIG_HOME=$W/no-config
unset BAKFS_REPO BAKFS_PASSWORD BAKFS_PASSWORD_FILE BAKFS_CONFIG

# The config: 10 jobs, the default policy, two pools with a rotation period.
{
    echo "repository = \"$W/repo\""
    for j in $(seq 0 9); do
        printf '\n[jobs.job%d]\npaths = ["/srv/%d"]\nrpo = "1d"\n' "$j" "$j"
    done
    printf '\n[pools.offsite]\nrotate_every = "7d"\n\n[pools.onsite]\nrotate_every = "30d"\n'
} >"$W/bakfs.toml"
CFG=(--config "$W/bakfs.toml")

# An empty catalog of the current schema (no repository needed), then the rows.
"$B" "${CFG[@]}" media list >/dev/null
DB=$W/state/catalog.db
NOW=$(date +%s%N)
t0=$(date +%s.%N)
sqlite3 "$DB" <<SQL
PRAGMA foreign_keys = OFF;
PRAGMA synchronous = OFF;
BEGIN;
CREATE TEMP TABLE n AS WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < 999999) SELECT i FROM c;
-- ids: 64 lowercase hex digits; a prefix digit keeps the kinds apart
CREATE TEMP VIEW ids AS SELECT i, printf('1%07x%056x', i, i) AS snap, printf('2%07x%056x', i, i) AS pack,
    printf('3%07x%056x', i, i) AS med FROM n;
INSERT INTO repositories VALUES ('$(printf 'f%.0s' {1..64})', '$W/repo', $NOW);
-- 10,000 snapshots, one an hour, of 10 jobs in turn; the newest an hour old
INSERT INTO snapshots SELECT '$(printf 'f%.0s' {1..64})', snap,
    strftime('%Y-%m-%dT%H:%M:%SZ', ($NOW / 1000000000) - (i + 1) * 3600, 'unixepoch'),
    $NOW - (i + 1) * 3600000000000, 'host', '["/srv"]', '[]', pack, NULL, 'job' || (i % 10),
    1000 + i, 1000000000 + i * 1000 FROM ids WHERE i < 10000;
INSERT INTO packs SELECT '$(printf 'f%.0s' {1..64})', pack, 16000000 FROM ids WHERE i < 20000;
INSERT INTO snapshot_packs SELECT '$(printf 'f%.0s' {1..64})', printf('1%07x%056x', i / 10, i / 10),
    printf('2%07x%056x', (i / 10) * 2 + i % 10, (i / 10) * 2 + i % 10) FROM n WHERE i < 100000;
INSERT INTO runs (repo_id, job, started_ns, ended_ns, outcome, files, bytes_read, bytes_added,
    snapshot_id) SELECT '$(printf 'f%.0s' {1..64})', 'job' || (i % 10),
    $NOW - (i + 1) * 3600000000000, $NOW - (i + 1) * 3600000000000 + 60000000000, 'ok', 1000,
    1000000, 10000, snap FROM ids WHERE i < 10000 ORDER BY i DESC;
-- 100 media: usb offsite and disk onsite in turn, a third plugged in
INSERT INTO media (id, label, repo_id, fs_uuid, fs_type, serial, kind, pool, location, capacity,
    retention, enrolled_ns, last_seen_ns, last_written_ns, last_verified_ns, state, message,
    bytes, presence, presence_ns, free_bytes, free_ns, rotate_every_s)
  SELECT med, printf('MEDIUM-%03d', i), '$(printf 'f%.0s' {1..64})', printf('uuid-%d', i), 'ext4',
    NULL, CASE i % 2 WHEN 0 THEN 'usb' ELSE 'disk' END,
    CASE i % 2 WHEN 0 THEN 'offsite' ELSE 'onsite' END,
    CASE i % 2 WHEN 0 THEN 'offsite' ELSE 'onsite' END, 256000000000, '{"keep_last":4}',
    $NOW - 400 * 86400000000000, $NOW - i * 86400000000000, $NOW - i * 86400000000000,
    $NOW - i * 86400000000000 - 1, 'safe to remove', NULL, 64000000000,
    CASE i % 3 WHEN 0 THEN 'plugged in' ELSE 'removed' END, $NOW - i * 86400000000000,
    192000000000, $NOW - i * 86400000000000, NULL FROM ids WHERE i < 100;
-- each medium holds the 4 newest snapshots of each job as of its last writing (40 each)
INSERT INTO media_snapshots SELECT m.med, s.snap, $NOW - (s.i + 1) * 3600000000000, 'host',
    '["/srv"]', 'job' || (s.i % 10), $NOW - m.i * 86400000000000
  FROM ids m JOIN ids s ON s.i >= m.i * 24 AND s.i < m.i * 24 + 40 WHERE m.i < 100;
INSERT INTO media_snapshot_packs SELECT ms.medium_id, ms.snapshot_id, sp.pack_id
  FROM media_snapshots ms JOIN snapshot_packs sp ON sp.snapshot_id = ms.snapshot_id;
-- 1,000,000 recorded files: 10,000 per medium
INSERT INTO media_files SELECT printf('3%07x%056x', i / 10000, i / 10000), 'pack', printf('2%07x%056x', i, i),
    16000000, $NOW - (i / 10000) * 86400000000000 FROM n;
-- 100 copy runs per medium, one a week
INSERT INTO media_runs (medium_id, started_ns, ended_ns, outcome, snapshots_added,
    snapshots_removed, files_written, bytes_written, bytes_verified, seconds)
  SELECT printf('3%07x%056x', i / 100, i / 100), $NOW - ((i / 100) + (i % 100) * 7) * 86400000000000 - 60000000000,
    $NOW - ((i / 100) + (i % 100) * 7) * 86400000000000, 'ok', 1, 1, 10, 160000000,
    160000000, 60.0 FROM n WHERE i < 10000;
-- 2 drills per medium, the newest ok
INSERT INTO drills (repo_id, medium_id, snapshot_id, job, started_ns, ended_ns, outcome, mode,
    files, bytes, seconds, ready_seconds)
  SELECT '$(printf 'f%.0s' {1..64})', printf('3%07x%056x', i / 2, i / 2), printf('1%07x%056x', (i / 2) * 24, (i / 2) * 24),
    'job' || ((i / 2) * 24 % 10), $NOW - (i + 1) * 86400000000000,
    $NOW - (i + 1) * 86400000000000 + 600000000000,
    CASE i % 2 WHEN 0 THEN 'ok' ELSE 'damaged' END, 'full', 1000, 1000000000, 20.0, 3.0
  FROM n WHERE i < 200;
COMMIT;
ANALYZE;
SQL
t1=$(date +%s.%N)
counts=$(sqlite3 "$DB" "SELECT (SELECT COUNT(*) FROM media), (SELECT COUNT(*) FROM snapshots),
    (SELECT COUNT(*) FROM media_files), (SELECT COUNT(*) FROM media_snapshots),
    (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM drills)")
size=$(du -m "$DB" | cut -f1)
echo "catalog: media|snapshots|media_files|media_snapshots|runs|drills = $counts, ${size} MiB, built in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s" >&2

# One run of `bakfs status ARGS`, its wall time in ms on stdout (exit codes 20-24 are levels).
one() {
    local a b rc=0
    a=$(date +%s%N)
    "$B" "${CFG[@]}" status "$@" >/dev/null || rc=$?
    b=$(date +%s%N)
    ((rc == 0 || (rc >= 20 && rc <= 24))) || { echo "bakfs status failed ($rc)" >&2; exit 1; }
    echo $(((b - a) / 1000000))
}

# Median, fastest and slowest of RUNS runs.
measure() {
    local xs=()
    for _ in $(seq "$RUNS"); do xs+=("$(one "$@")"); done
    printf '%s\n' "${xs[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%d ms (%d-%d)", a[int((NR+1)/2)], a[1], a[NR]}'
}

"$B" "${CFG[@]}" status >/dev/null || true # warm up
cold="-"
if [[ $(id -u) -eq 0 ]]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
    cold="$(one) ms"
fi
table=$(measure)
json=$(measure --json)
rc=0
# Peak RSS of one run (GNU time, Debian package time).
/usr/bin/time -f %M -o "$W/rss" "$B" "${CFG[@]}" status >/dev/null || rc=$?
# (GNU time writes "Command exited with non-zero status N" first for a status level.)
rss=$(tail -n 1 "$W/rss" | awk '{printf "%.0f MiB", $1 / 1024}')
echo
echo "| catalog | \`bakfs status\` | \`bakfs status --json\` | cold cache | peak RSS | exit |"
echo "|---|---|---|---|---|---|"
echo "| 100 media, 10,000 snapshots, 1,000,000 media files (${size} MiB) | $table | $json | $cold | $rss | $rc |"
