#!/usr/bin/env bash
# Build the benchmark dataset from this machine's own files.
#
#   bench/make-dataset.sh OUT_DIR [SIZE_MB]
#
# Writes OUT_DIR/base (about SIZE_MB MiB, default 2048) and OUT_DIR/changed
# (a copy of base with ~2% of the files modified in place, a few hundred files
# added and a few hundred removed).  Sources, in this order and each with a
# share of the budget: /usr/include, /usr/share, the Rust toolchains' lib/
# directories, /usr/lib; plus one big file (120 MiB for SIZE_MB >= 1024, else
# SIZE_MB/8) made of concatenated shared objects / rlibs.
#
# Deterministic (sorted walks, fixed PRNG seed) for a given machine, and
# idempotent: nothing is done if OUT_DIR already holds a complete dataset of
# the same size.
set -euo pipefail

DATASET_VERSION=1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    echo "usage: $0 OUT_DIR [SIZE_MB]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
OUT=$1
SIZE_MB=${2:-2048}
[[ $SIZE_MB =~ ^[0-9]+$ && $SIZE_MB -ge 8 ]] || { echo "SIZE_MB must be an integer >= 8" >&2; exit 2; }

if ! command -v python3 >/dev/null 2>&1; then
    echo "installing python3..." >&2
    apt-get update -qq && apt-get install -y -qq python3 >/dev/null
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAMP="$OUT/.dataset-complete"
WANT="version=$DATASET_VERSION size_mb=$SIZE_MB"

if [[ -f $STAMP && -d $OUT/base && -d $OUT/changed ]] && [[ $(head -n1 "$STAMP") == "$WANT" ]]; then
    echo "dataset already built in $OUT ($WANT), skipping"
    exit 0
fi

echo "building dataset in $OUT ($WANT)"
rm -f "$STAMP"
rm -rf "$OUT/base" "$OUT/changed" "$OUT/base.tmp" "$OUT/changed.tmp" "$OUT/base.stats" "$OUT/changed.stats" "$OUT/changes.tsv"

sources=()
for d in /usr/include /usr/share; do
    [[ -d $d ]] && sources+=("$(basename "$d")=$d")
done
RUSTUP_DIR=${RUSTUP_HOME:-$HOME/.rustup}
shopt -s nullglob
for d in "$RUSTUP_DIR"/toolchains/*/lib; do
    sources+=("rust=$d")
done
shopt -u nullglob
[[ -d /usr/lib ]] && sources+=("lib=/usr/lib")

python3 "$HERE/dataset.py" base "$OUT/base.tmp" "$SIZE_MB" "${sources[@]}"
mv "$OUT/base.tmp" "$OUT/base"

echo "copying base -> changed and applying changes"
cp -a "$OUT/base" "$OUT/changed.tmp"
python3 "$HERE/dataset.py" mutate "$OUT/changed.tmp" "$OUT/changes.tsv"
mv "$OUT/changed.tmp" "$OUT/changed"

python3 "$HERE/dataset.py" stats "$OUT/base" >"$OUT/base.stats"
python3 "$HERE/dataset.py" stats "$OUT/changed" >"$OUT/changed.stats"
sync

{
    echo "$WANT"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
} >"$STAMP"

echo "base:    $(tr '\n' ' ' <"$OUT/base.stats")"
echo "changed: $(tr '\n' ' ' <"$OUT/changed.stats")"
