#!/usr/bin/env bash
# Plugin loading benchmark: `migrator list` (release build) over COUNT C
# plugins of one migration each, against a C program that only dlopens
# them and calls their entries (the floor), in the same run.
#   bench/plugin-load.sh [COUNT=1000] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-1000}
RUNS=${2:-5}
source bench/common.sh
$cc -O2 -Wall -ISources/MigratorPluginABI/include -o "$work/dlopen-baseline" bench/dlopen_baseline.c -ldl

bench/make-plugins.sh "$COUNT" "$work/plugins"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for i in $(seq "$RUNS"); do
    "$work/dlopen-baseline" "$work/plugins" 2>/dev/null | awk '{print $2}' >>"$work/c"
    s=$(date +%s.%N)
    "$m" list --dir "$work/plugins" >/dev/null
    e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }' >>"$work/m"
done
n=$("$m" list --dir "$work/plugins" --json | grep -o '"id"' | wc -l)
c=$(median <"$work/c"); m=$(median <"$work/m")
echo "Loading and listing $COUNT C plugins ($n migrations found), median of $RUNS runs"
printf '%-34s %8.3f s\n' "dlopen+dlsym+entry only (C floor)" "$c"
printf '%-34s %8.3f s\n' "migrator list (whole process)" "$m"
awk -v c="$c" -v m="$m" 'BEGIN { printf "%-34s %8.2fx\n", "ratio", m / c }'
