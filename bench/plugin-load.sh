#!/usr/bin/env bash
# Plugin loading benchmark: `migrator list` (release build) over COUNT C
# plugins of one migration each, against a C program that only dlopens
# them and calls their entries (the floor), in the same run.
#   bench/plugin-load.sh [COUNT=1000] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-1000}
RUNS=${2:-5}
scripts/install-deps.sh
work=$(mktemp -d /tmp/migrator-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
swift build -c release --product migrator >&2
cc=$(command -v cc || command -v clang)
inc=Sources/MigratorPluginABI/include
$cc -O2 -Wall -I$inc -o "$work/dlopen-baseline" bench/dlopen_baseline.c -ldl

# COUNT distinct plugins: one object compiled per id, linked in parallel.
mkdir -m 700 "$work/plugins"
cat >"$work/one.c" <<'C'
#include "migrator_plugin.h"
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u; return h->create_collection(t, "c_" ID);
}
static const migrator_migration_v1 m = { ID, "Create c_" ID, "bench", "1.0.0", NULL, up, NULL, NULL };
static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, "bench", NULL, 1, &m };
__attribute__((visibility("default"))) const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
C
echo "compiling $COUNT plugins..." >&2
seq 1 "$COUNT" | xargs -P "$(nproc)" -I{} sh -c \
    'id=$(printf "%04d_create_c%04d" {} {}); '"$cc"' -shared -fPIC -O1 -fvisibility=hidden -I'"$inc"' -DID="\"$id\"" -o '"$work"'/plugins/$id.so '"$work"'/one.c'
chmod 644 "$work"/plugins/*.so

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for i in $(seq "$RUNS"); do
    "$work/dlopen-baseline" "$work/plugins" 2>/dev/null | awk '{print $2}' >>"$work/c"
    s=$(date +%s.%N)
    .build/release/migrator list --dir "$work/plugins" >/dev/null
    e=$(date +%s.%N)
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }' >>"$work/m"
done
n=$(.build/release/migrator list --dir "$work/plugins" --json | grep -o '"id"' | wc -l)
c=$(median <"$work/c"); m=$(median <"$work/m")
echo "Loading and listing $COUNT C plugins ($n migrations found), median of $RUNS runs"
printf '%-34s %8.3f s\n' "dlopen+dlsym+entry only (C floor)" "$c"
printf '%-34s %8.3f s\n' "migrator list (whole process)" "$m"
awk -v c="$c" -v m="$m" 'BEGIN { printf "%-34s %8.2fx\n", "ratio", m / c }'
