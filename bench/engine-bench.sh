#!/usr/bin/env bash
# Engine benchmark: COUNT plugins of one trivial migration each (create a
# collection). Times `migrator apply` from empty, `status` with all applied,
# and `rollback --all`, against the floor measured in the same run: a C
# program that dlopens the same plugins and makes one durable LMDB commit
# per migration (a put to apply, a delete to roll back), in its own process.
# Also runs the same build's library (bench/EngineBench) with the plugins
# loaded in-process and in a worker process, to show what the worker
# boundary costs. Prints medians of RUNS runs and ratios.
#   bench/engine-bench.sh [COUNT=1000] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-1000}
RUNS=${2:-5}
source bench/common.sh
$cc -O2 -Wall -ISources/MigratorPluginABI/include -o "$work/floor" bench/apply_floor.c -llmdb -ldl
bench/make-plugins.sh "$COUNT" "$work/plugins"
swift build -c release --product engine-bench >&2
lib=$PWD/.build/release/engine-bench

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$work/last.err" || { cat "$work/last.err" >&2; exit 1; }; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }'; }
for i in $(seq "$RUNS"); do
    mkdir -m 700 "$work/f$i"
    sync
    "$work/floor" apply "$work/plugins" "$work/f$i" >>"$work/floor.out"
    sync
    "$work/floor" rollback "$work/plugins" "$work/f$i" >>"$work/floor.out"
    rm -rf "$work/f$i"
    db="$work/db$i"
    sync
    echo "apply $(secs "$m" apply --dir "$work/plugins" --db "$db" --quiet)" >>"$work/m.out"
    echo "status_first $(secs "$m" status --dir "$work/plugins" --db "$db")" >>"$work/m.out"
    echo "status $(secs "$m" status --dir "$work/plugins" --db "$db")" >>"$work/m.out"
    sync
    echo "rollback $(secs "$m" rollback --all --yes --dir "$work/plugins" --db "$db" --quiet)" >>"$work/m.out"
    applied=$("$m" status --json --dir "$work/plugins" --db "$db" | awk -F"\"state\":\"applied\"" "{ n += NF - 1 } END { print n + 0 }")
    [ "$applied" = 0 ] || { echo "rollback left $applied applied" >&2; exit 1; }
    rm -rf "$db"
    # Alternate which goes first, so neither always meets a warmer cache.
    modes="in-process worker"; [ $((i % 2)) = 0 ] && modes="worker in-process"
    for mode in $modes; do
        sync
        "$lib" "$mode" "$work/plugins" "$work/lib-$mode" | sed "s/^/$mode-/" >>"$work/lib.out"
        rm -rf "$work/lib-$mode"
    done
    echo "run $i of $RUNS done" >&2
done
med() { awk -v k="$1" '$1==k {print $2}' "$2" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fa=$(med apply "$work/floor.out"); fr=$(med rollback "$work/floor.out")
ma=$(med apply "$work/m.out"); ms=$(med status "$work/m.out"); msf=$(med status_first "$work/m.out"); mr=$(med rollback "$work/m.out")
echo "Engine: $COUNT one-migration C plugins, median of $RUNS runs (seconds)"
printf '%-40s %8s %8s %8s\n' operation floor migrator ratio
awk -v f="$fa" -v m="$ma" 'BEGIN { printf "%-40s %8.3f %8.3f %7.2fx\n", "apply from empty", f, m, m / f }'
awk -v f="$fr" -v m="$mr" 'BEGIN { printf "%-40s %8.3f %8.3f %7.2fx\n", "rollback --all", f, m, m / f }'
awk -v m="$msf" 'BEGIN { printf "%-40s %8s %8.3f\n", "status, all applied (first, loads plugins)", "-", m }'
awk -v m="$ms" 'BEGIN { printf "%-40s %8s %8.3f   (target < 0.100)\n", "status, all applied (descriptor cache)", "-", m }'
echo
echo "The worker boundary: the library (same build) with plugins in-process vs in a worker"
printf '%-40s %8s %8s %8s\n' operation in-proc worker ratio
for op in apply rollback; do
    ip=$(med "in-process-$op" "$work/lib.out"); wk=$(med "worker-$op" "$work/lib.out")
    awk -v o="$op" -v f="$ip" -v m="$wk" 'BEGIN { printf "%-40s %8.3f %8.3f %7.2fx   (target <= 1.10x)\n", o, f, m, m / f }'
done
