#!/usr/bin/env bash
# Concurrency torture: RUNNERS `migrator apply` processes started together
# on one database with MIGRATIONS migrations, repeated REPEATS times. Each
# migration n checks that exactly n-1 earlier ones wrote before it, so an
# out-of-order or double application fails it. Every process must exit 0
# ("applied …" or "nothing to apply"), and each migration must be applied
# exactly once. Then readers poll `status` and `db count` during a long
# migration: each read must return promptly and see all of it or none.
#   bench/concurrency.sh [RUNNERS=8] [MIGRATIONS=50] [REPEATS=20]
# MIGRATOR=path uses that binary instead of building a release one.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNNERS=${1:-8}
MIGRATIONS=${2:-50}
REPEATS=${3:-20}
source bench/common.sh
export SWIFT_BACKTRACE=enable=no
mkdir -m 700 "$work/plugins" "$work/slow"
cat >"$work/ordered.c" <<'C'
#include <stdio.h>
#include "migrator_plugin.h"
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u; uint64_t have = 0; char d[32];
    migrator_status st = h->count(t, "log", NULL, &have);
    if (st) return st;
    if (have != N - 1) { h->set_error(t, "out of order or applied twice"); return MIGRATOR_ERROR; }
    snprintf(d, sizeof d, "{\"n\":%d}", N);
    return h->insert(t, "log", d);
}
static const migrator_migration_v1 m = { ID, ID, "ordered", "1.0.0", NULL, up, NULL, NULL };
static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, ID, NULL, 1, &m };
__attribute__((visibility("default"))) const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
C
seq 1 "$MIGRATIONS" | xargs -P "$(nproc)" -I{} sh -c \
    'id=$(printf "%03d_step" {}); '"$cc"' -shared -fPIC -O1 -fvisibility=hidden -ISources/MigratorPluginABI/include -DN={} -DID="\"$id\"" -o '"$work"'/plugins/$id.so '"$work"'/ordered.c'
chmod 644 "$work"/plugins/*.so

bad=0
for r in $(seq "$REPEATS"); do
    rm -rf "$work/db"
    pids=()
    for i in $(seq "$RUNNERS"); do
        "$m" apply --dir "$work/plugins" --db "$work/db" --lock-timeout 120 >"$work/out.$i" 2>&1 &
        pids+=($!)
    done
    for i in $(seq "$RUNNERS"); do
        if ! wait "${pids[$((i - 1))]}"; then echo "repeat $r: runner $i failed: $(tail -2 "$work/out.$i")"; bad=$((bad + 1)); fi
    done
    applied=$("$m" db count _migrations --db "$work/db")
    attempts=$("$m" db count _migrations_history --db "$work/db")
    logged=$("$m" db count log --db "$work/db")
    ran=$(grep -h '^applied [0-9]*_' "$work"/out.* | wc -l)
    if [ "$applied" != "$MIGRATIONS" ] || [ "$attempts" != "$MIGRATIONS" ] || [ "$logged" != "$MIGRATIONS" ] || [ "$ran" != "$MIGRATIONS" ]; then
        echo "repeat $r: applied $applied, attempts $attempts, logged $logged, runs reported $ran (want $MIGRATIONS each)"; bad=$((bad + 1))
    fi
done
echo "$REPEATS repeats x $RUNNERS runners x $MIGRATIONS migrations: $bad problems"

# Readers during a long migration.
cat >"$work/slow.c" <<'C'
#include "migrator_plugin.h"
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u;
    for (int i = 0; i < 300000; i++) { migrator_status st = h->insert(t, "bulk", "{\"x\":1}"); if (st) return st; }
    return MIGRATOR_OK;
}
static const migrator_migration_v1 m = { "900_bulk", "bulk", "slow", "1.0.0", NULL, up, NULL, NULL };
static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, "slow", NULL, 1, &m };
__attribute__((visibility("default"))) const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
C
$cc -shared -fPIC -O1 -fvisibility=hidden -ISources/MigratorPluginABI/include -o "$work/slow/slow.so" "$work/slow.c"
chmod 644 "$work/slow/slow.so"
rm -rf "$work/db"
"$m" apply --dir "$work/slow" --db "$work/db" --quiet &
writer=$!
reads=0; slowest=0; torn=0
while kill -0 "$writer" 2>/dev/null; do
    s=$(date +%s%N)
    # Before the writer created it there is no database, and reads never create one: 0 documents.
    n=$("$m" db count bulk --db "$work/db" 2>"$work/reader.err" || { grep -q "no database at" "$work/reader.err" && echo 0 || echo err; })
    "$m" status --dir "$work/slow" --db "$work/db" >/dev/null 2>&1 || n=err
    e=$(date +%s%N)
    ms=$(( (e - s) / 1000000 )); [ $ms -gt $slowest ] && slowest=$ms
    case "$n" in 0|300000) ;; *) torn=$((torn + 1)); echo "reader saw $n documents" ;; esac
    reads=$((reads + 1))
done
wait "$writer"
echo "readers during a 300,000-insert migration: $reads reads, slowest $slowest ms (status + db count), $torn saw a partial migration"
# A reader that waited for the writer would take as long as the migration:
# READ_BOUND_MS (default 2000) is far below that and far above a process start.
bound=${READ_BOUND_MS:-2000}
slow_reads=0
[ "$slowest" -le "$bound" ] || { echo "the slowest read took $slowest ms, over the $bound ms bound"; slow_reads=1; }
[ "$reads" -gt 0 ] || echo "no read ran during the migration: nothing was checked"
[ "$bad" = 0 ] && [ "$torn" = 0 ] && [ "$slow_reads" = 0 ] && [ "$reads" -gt 0 ]
