#!/usr/bin/env bash
# Object storage (issue 16): bakfs against restic's S3 backend on the same S3 server (s3s-fs on
# 127.0.0.1, its data on this disk), the same dataset, in one run: first backup, unchanged
# re-backup, changed backup, restore. Seconds, peak RSS, and requests by S3 operation, counted
# from the server's own log of the routes it resolved, so both tools are counted alike.
#
#   bench/s3.sh [--size MB] [--no-build] [--runs N]
#
# Prints a markdown table, also written to $BENCH_DIR/s3/<UTC timestamp>/report.md with the
# logs. Needs restic, s3s-fs (scripts/test.sh installs it) and GNU time; run as root (a tmpfs
# for the restores).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SIZE_MB=1024
BUILD=1
RUNS=1
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) SIZE_MB=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --runs) RUNS=$2; shift 2 ;;
        *) echo "usage: $0 [--size MB] [--no-build] [--runs N]" >&2; exit 2 ;;
    esac
done
BENCH_DIR=${BENCH_DIR:-/var/tmp/bakfs-bench}
S3S=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
[[ -x $S3S ]] || { echo "s3s-fs not found (cargo install s3s-fs --version 0.14.1 --features binary --locked)" >&2; exit 1; }
command -v restic >/dev/null || { echo "restic not found (apt-get install restic)" >&2; exit 1; }
if [[ $BUILD -eq 1 ]]; then
    (cd "$ROOT" && cargo build --release --locked --bin bakfs)
fi
BAKFS=${BAKFS_BIN:-$ROOT/target/release/bakfs}

DATA="$BENCH_DIR/dataset-${SIZE_MB}MB"
"$HERE/make-dataset.sh" "$DATA" "$SIZE_MB"
OUT="$BENCH_DIR/s3/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT/logs"
SRC="$BENCH_DIR/s3-src"
RESTORE="$BENCH_DIR/s3-restore"
S3ROOT="$BENCH_DIR/s3-root"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SERVER_PID=""
export PORT BAKFS BENCH_DIR

cleanup() {
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    mountpoint -q "$RESTORE" && umount "$RESTORE" || true
    rm -rf "$SRC" "$S3ROOT" "$BENCH_DIR/s3-cache-"* "$BENCH_DIR/s3-state"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export BAKFS_PASSWORD=bench RESTIC_PASSWORD=bench
export BAKFS_INSECURE_TEST_KDF=1 BAKFS_STATE_DIR="$BENCH_DIR/s3-state"

start_server() {
    rm -rf "$S3ROOT"
    mkdir -p "$S3ROOT/bench"
    RUST_LOG=s3s=debug "$S3S" --host 127.0.0.1 --port "$PORT" \
        --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$S3ROOT" \
        >"$OUT/logs/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return
        sleep 0.1
    done
    echo "s3s-fs did not start" >&2
    exit 1
}

# requests since the mark, by operation: "GetObject=12 PutObject=3 ..."
requests_since() {
    tail -n +"$(($1 + 1))" "$OUT/logs/server.log" | grep -o 'resolved route, op: [A-Za-z0-9]*' |
        awk '{print $4}' | sort | uniq -c | awk '{printf "%s=%s ", $2, $1}'
}
mark() { wc -l <"$OUT/logs/server.log"; }

tool() {
    local t=$1
    shift
    case $t in
        bakfs) BAKFS_CACHE_DIR="$BENCH_DIR/s3-cache-bakfs" "$BAKFS" --repo "s3:http://127.0.0.1:$PORT/bench/bakfs" "$@" ;;
        restic) restic --repo "s3:http://127.0.0.1:$PORT/bench/restic" --cache-dir "$BENCH_DIR/s3-cache-restic" "$@" ;;
    esac
}

RESULTS="$OUT/results.tsv"
printf 'tool\top\trun\tseconds\tpeak_kib\trequests\n' >"$RESULTS"
measure() {
    local t=$1 op=$2 run=$3
    shift 3
    local m
    m=$(mark)
    /usr/bin/time -f '%e %M' -o "$OUT/logs/$t-$op-$run.time" "$@" >"$OUT/logs/$t-$op-$run.log" 2>&1 ||
        { echo "$t $op failed: $(tail -3 "$OUT/logs/$t-$op-$run.log")" >&2; exit 1; }
    sleep 0.3
    read -r secs kib <"$OUT/logs/$t-$op-$run.time"
    local req
    req=$(requests_since "$m")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$op" "$run" "$secs" "$kib" "$req" >>"$RESULTS"
    printf '  %-6s %-17s %7ss %8s KiB  %s\n' "$t" "$op" "$secs" "$kib" "$req"
}

mkdir -p "$RESTORE"
for run in $(seq "$RUNS"); do
    start_server
    for t in bakfs restic; do
        rm -rf "$SRC" "$BENCH_DIR/s3-cache-$t" "$BENCH_DIR/s3-state"
        cp -a "$DATA/base" "$SRC"
        find "$SRC" -type f -print0 | xargs -0 -r cat >/dev/null
        case $t in
            bakfs) tool bakfs init >/dev/null ;;
            restic) tool restic init >/dev/null ;;
        esac
        measure "$t" backup_first "$run" bash -c "$(declare -f tool); tool $t backup '$SRC'"
        measure "$t" backup_unchanged "$run" bash -c "$(declare -f tool); tool $t backup '$SRC'"
        rsync -a --delete "$DATA/changed/" "$SRC/"
        find "$SRC" -type f -print0 | xargs -0 -r cat >/dev/null
        measure "$t" backup_changed "$run" bash -c "$(declare -f tool); tool $t backup '$SRC'"
        mountpoint -q "$RESTORE" && umount "$RESTORE"
        mount -t tmpfs -o size=$((SIZE_MB * 2 + 512))m bench-s3-restore "$RESTORE"
        case $t in
            bakfs) measure "$t" restore "$run" bash -c "$(declare -f tool); tool bakfs restore latest --target '$RESTORE'" ;;
            restic) measure "$t" restore "$run" bash -c "$(declare -f tool); tool restic restore latest --target '$RESTORE'" ;;
        esac
        diff -r --no-dereference "$SRC" "$RESTORE$SRC" >/dev/null || { echo "$t: restored tree differs" >&2; exit 1; }
        umount "$RESTORE"
    done
    kill "$SERVER_PID"
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
done

python3 - "$RESULTS" "$SIZE_MB" <<'EOF' | tee "$OUT/report.md"
import sys, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
size = sys.argv[2]
by = collections.defaultdict(list)
for tool, op, run, secs, kib, req in rows:
    by[(tool, op)].append((float(secs), int(kib), req))
def total(req):
    return sum(int(x.split("=")[1]) for x in req.split())
print(f"Dataset: {size} MiB budget (bench/make-dataset.sh), s3s-fs 0.14.1 on 127.0.0.1, warm page cache.")
print()
print("| operation | bakfs | restic | restic / bakfs | requests bakfs | requests restic |")
print("|---|---|---|---|---|---|")
for op in ["backup_first", "backup_unchanged", "backup_changed", "restore"]:
    b = by.get(("bakfs", op)); r = by.get(("restic", op))
    if not b or not r:
        continue
    bs = min(x[0] for x in b); rs = min(x[0] for x in r)
    bk = max(x[1] for x in b) // 1024; rk = max(x[1] for x in r) // 1024
    breq = b[0][2]; rreq = r[0][2]
    print(f"| {op.replace('_', ' ')} | {bs:.2f} s, {bk} MiB | {rs:.2f} s, {rk} MiB | {rs / bs:.2f}x | {total(breq)} ({breq.strip()}) | {total(rreq)} ({rreq.strip()}) |")
EOF
echo "results: $OUT"
