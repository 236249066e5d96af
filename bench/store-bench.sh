#!/usr/bin/env bash
# Store benchmark: DocumentStore (release build) against a raw LMDB C
# baseline doing the same work, interleaved in one run. Prints the median of
# RUNS runs for each and the ratio store/baseline (lower is better).
#   bench/store-bench.sh [N=1000000] [LOOKUPS=100000] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
LOOKUPS=${2:-100000}
RUNS=${3:-3}
scripts/install-deps.sh
work=$(mktemp -d /tmp/migrator-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

swift build -c release --product store-bench >&2
cc -O2 -Wall -o "$work/lmdb-baseline" bench/lmdb_baseline.c -llmdb

# Each process starts with no dirty pages: otherwise the writeback of the
# previous run's ~1 GB throttles the next one's commits (seen: 3-5x slower
# writev), and whichever side runs second looks slower.
for i in $(seq "$RUNS"); do
    mkdir "$work/c$i"
    sync
    "$work/lmdb-baseline" "$work/c$i" "$N" "$LOOKUPS" | sed "s/^/c /" >>"$work/results"
    c_size=$(du -sm "$work/c$i" | cut -f1); rm -rf "$work/c$i"
    sync
    .build/release/store-bench "$work/s$i" "$N" "$LOOKUPS" | sed "s/^/s /" >>"$work/results"
    s_size=$(du -sm "$work/s$i" | cut -f1); rm -rf "$work/s$i" "$work/s$i-slow"
    echo "c file_mb $c_size" >>"$work/results"
    echo "s file_mb $s_size" >>"$work/results"
    echo "run $i of $RUNS done" >&2
done

echo "DocumentStore vs raw LMDB: $N documents, $LOOKUPS lookups, median of $RUNS runs"
printf '%-14s %12s %12s %8s\n' operation "raw LMDB" "store" ratio
for op in insert scan update_many index_build lookups peak_rss_mb file_mb; do
    c=$(awk -v op="$op" '$1=="c" && $2==op {print $3}' "$work/results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    s=$(awk -v op="$op" '$1=="s" && $2==op {print $3}' "$work/results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    awk -v op="$op" -v c="$c" -v s="$s" 'BEGIN { printf "%-14s %12s %12s %7.2fx\n", op, c, s, (c > 0 ? s / c : 0) }'
done
echo "(times in seconds; targets: insert and update_many <= 1.5x, peak_rss_mb <= 1.5x)"
echo "Slower store paths against the store's own fast paths, same runs:"
for pair in insert_indexed:insert update_nested:update_many; do
    IFS=: read -r op base <<<"$pair"
    v=$(awk -v op="$op" '$1=="s" && $2==op {print $3}' "$work/results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    b=$(awk -v op="$base" '$1=="s" && $2==op {print $3}' "$work/results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    awk -v op="$op" -v base="$base" -v v="$v" -v b="$b" 'BEGIN { printf "%-14s %12s %12s %7.2fx of %s\n", op, "-", v, v / b, base }'
done
