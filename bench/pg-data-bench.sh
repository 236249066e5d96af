#!/usr/bin/env bash
# The data and engine benchmarks on PostgreSQL (run as
# `bench/data-bench.sh --backend postgres`): a throwaway server on a Unix
# socket; N users (~120 bytes each) loaded once into a template database
# (not timed); then, on a fresh copy for each run, the same migrations as
# bench/data-bench.sh through `migrator apply --db postgres://…` with the C
# plugin, against plain SQL doing the same work in psql on the same tables,
# and against the LMDB backend, all in the same run. Then `apply` of COUNT
# one-migration plugins against COUNT `BEGIN; CREATE TABLE; INSERT; COMMIT`
# round trips in psql. Prints medians of RUNS runs and ratios.
#   bench/pg-data-bench.sh [N=100000] [RUNS=3] [COUNT=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
RUNS=${2:-3}
COUNT=${3:-1000}
source bench/common.sh
server=/tmp/migrator-pg-bench-$$
trap 'Tests/Postgres/server.sh stop "$server"; rm -rf "$work"' EXIT
uri=$(Tests/Postgres/server.sh start "$server")
base="postgresql://migrator@/DB?host=$server&port=5432"
db_uri() { echo "${base/DB/$1}"; }
psql_q() { psql -X -q -v ON_ERROR_STOP=1 "$(db_uri "$1")" "${@:2}"; }
inc=Sources/MigratorPluginABI/include

# The loader (not timed): N users through the store, so the layout is the store's own.
cat >"$work/load.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "migrator_plugin.h"
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u;
    static const char *cities[] = { "Oslo", "Lisbon", "Porto", "Kyoto", "Bergen", "Lima" };
    long n = atol(getenv("MIGRATION_BENCH_USERS")); char doc[256];
    for (long i = 1; i <= n; i++) {
        int len = snprintf(doc, sizeof doc, "{\"_id\":%ld,\"email\":\"user%ld@example.com\",\"name\":\"User %ld\",\"age\":%ld,\"city\":\"%s\",\"created_at\":\"2026-11-%02ldT09:00:00.000Z\"}",
                           i, i, i, 18 + i % 60, cities[i % 6], 1 + i % 28);
        migrator_status st = h->insert_n(t, "users", doc, (size_t)len, NULL, NULL);
        if (st) return st;
    }
    return MIGRATOR_OK;
}
static const migrator_migration_v1 m = { "000_load_users", "Load users", "bench", "1.0.0", NULL, up, NULL, NULL };
static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, "load", NULL, 1, &m };
__attribute__((visibility("default"))) const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
C
mkdir -m 700 "$work/load"
$cc -shared -fPIC -O2 -fvisibility=hidden -I$inc -o "$work/load/load.so" "$work/load.c"
for v in 1 2 4; do
    mkdir -m 700 "$work/c$v"
    $cc -shared -fPIC -O2 -fvisibility=hidden -I$inc -DVARIANT=$v -o "$work/c$v/plugin.so" bench/migrations/data_migrations.c
done
echo "loading $N users into the template database..." >&2
psql_q migrator_test -c "CREATE DATABASE seed"
MIGRATION_BENCH_USERS=$N "$m" apply --quiet --dir "$work/load" --db "$(db_uri seed)" >&2
# The same users for the LMDB backend, and the migration's record removed
# on both, so that each timed apply runs exactly one migration.
awk -v n="$N" 'BEGIN { split("Oslo Lisbon Porto Kyoto Bergen Lima", c, " ");
    for (i = 1; i <= n; i++) printf "{\"_id\":%d,\"email\":\"user%d@example.com\",\"name\":\"User %d\",\"age\":%d,\"city\":\"%s\",\"created_at\":\"2026-11-%02dT09:00:00.000Z\"}\n", i, i, i, 18 + i % 60, c[i % 6 + 1], 1 + i % 28 }' >"$work/users.jsonl"
"$m" db import users "$work/users.jsonl" --db "$work/lmdb-seed" >&2
psql_q seed -c "DELETE FROM migrator.c_$(psql_q seed -tAc "SELECT id FROM migrator.collections WHERE name = '_migrations'")" \
    -c "DELETE FROM migrator.c_$(psql_q seed -tAc "SELECT id FROM migrator.collections WHERE name = '_migrations_history'")"
users=migrator.c_$(psql_q seed -tAc "SELECT id FROM migrator.collections WHERE name = 'users'")
# The plain-SQL fan-out target: a table like the store's.
psql_q seed -c "CREATE TABLE public.user_settings (_id text COLLATE \"C\" PRIMARY KEY, body text NOT NULL,
    doc jsonb GENERATED ALWAYS AS (body::jsonb) STORED)"

fresh() { psql_q migrator_test -c "DROP DATABASE IF EXISTS run" -c "CREATE DATABASE run TEMPLATE seed"; }
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }'; }
count() { psql_q run -tAc "$1"; }
check() { [ "$1" = "$N" ] || { echo "error: $2 did the work for $1 of $N users" >&2; exit 1; }; }
settings_table() { echo "migrator.c_$(count "SELECT id FROM migrator.collections WHERE name = 'user_settings'")"; }

for i in $(seq "$RUNS"); do
    fresh
    echo "pg_fanout $(secs "$m" apply --quiet --dir "$work/c1" --db "$(db_uri run)")" >>"$work/results"
    check "$(count "SELECT count(*) FROM $(settings_table)")" "fan-out on PostgreSQL"
    fresh
    echo "sql_fanout $(secs psql_q run -c "BEGIN" -c "INSERT INTO public.user_settings (_id, body)
        SELECT 's' || md5(_id), json_build_object('_id', 's' || md5(_id), 'user_id', (doc->>'_id')::bigint,
            'theme', 'light', 'notifications', true)::text FROM $users" -c "COMMIT")" >>"$work/results"
    check "$(count "SELECT count(*) FROM public.user_settings")" "fan-out in SQL"
    rm -rf "$work/db" && cp -r "$work/lmdb-seed" "$work/db"
    echo "lmdb_fanout $(secs "$m" apply --quiet --dir "$work/c1" --db "$work/db")" >>"$work/results"
    for job in 2:bulk 4:replace; do
        v=${job%%:*}
        name=${job#*:}
        fresh
        echo "pg_$name $(secs "$m" apply --quiet --dir "$work/c$v" --db "$(db_uri run)")" >>"$work/results"
        check "$(count "SELECT count(*) FROM $users WHERE doc->>'plan' = 'free'")" "add-field ($name) on PostgreSQL"
        rm -rf "$work/db" && cp -r "$work/lmdb-seed" "$work/db"
        echo "lmdb_$name $(secs "$m" apply --quiet --dir "$work/c$v" --db "$work/db")" >>"$work/results"
    done
    fresh
    echo "sql_addfield $(secs psql_q run -c "BEGIN" -c "UPDATE $users SET body = left(body, -1) || ',\"plan\":\"free\"}'" -c "COMMIT")" >>"$work/results"
    check "$(count "SELECT count(*) FROM $users WHERE doc->>'plan' = 'free'")" "add-field in SQL"
    echo "run $i of $RUNS done" >&2
done

# The engine: COUNT trivial plugins, against COUNT round-trip transactions in psql.
bench/make-plugins.sh "$COUNT" "$work/plugins"
for i in $(seq "$RUNS"); do
    psql_q migrator_test -c "DROP DATABASE IF EXISTS eng" -c "CREATE DATABASE eng"
    echo "pg_apply $(secs "$m" apply --quiet --dir "$work/plugins" --db "$(db_uri eng)")" >>"$work/results"
    psql_q migrator_test -c "DROP DATABASE IF EXISTS eng" -c "CREATE DATABASE eng"
    psql_q eng -c "CREATE TABLE log (n int)"
    for n in $(seq "$COUNT"); do printf 'BEGIN;\nCREATE TABLE t%d (x int);\nINSERT INTO log VALUES (%d);\nCOMMIT;\n' "$n" "$n"; done >"$work/rt.sql"
    echo "sql_apply $(secs psql_q eng -f "$work/rt.sql")" >>"$work/results"
done

med() { awk -v k="$1" '$1==k {print $2}' "$work/results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
row() { awk -v l="$1" -v t="$(med "$2")" -v b="$(med "$3")" -v x="$(med "$4")" \
    'BEGIN { printf "%-44s %8.3f %9.2fx %9.2fx\n", l, t, t / b, t / x }'; }
echo "PostgreSQL: $N users, median of $RUNS runs (seconds; ratios against plain SQL and the LMDB backend)"
printf '%-44s %8s %10s %10s\n' path seconds "vs SQL" "vs LMDB"
row "fan-out: plain SQL (psql)" sql_fanout sql_fanout lmdb_fanout
row "fan-out: migrator, C plugin, PostgreSQL" pg_fanout sql_fanout lmdb_fanout
row "fan-out: migrator, C plugin, LMDB" lmdb_fanout sql_fanout lmdb_fanout
row "add-field: plain SQL (psql)" sql_addfield sql_addfield lmdb_bulk
row "add-field: one host update, PostgreSQL" pg_bulk sql_addfield lmdb_bulk
row "add-field: one host update, LMDB" lmdb_bulk sql_addfield lmdb_bulk
row "add-field: cursor_replace loop, PostgreSQL" pg_replace sql_addfield lmdb_replace
row "add-field: cursor_replace loop, LMDB" lmdb_replace sql_addfield lmdb_replace
echo
echo "Engine: $COUNT one-migration plugins (seconds)"
awk -v p="$(med pg_apply)" -v s="$(med sql_apply)" 'BEGIN {
    printf "%-44s %8.3f\n%-44s %8.3f %9.2fx   (target <= 1.5x)\n", "psql: BEGIN; CREATE TABLE; INSERT; COMMIT", s, "migrator apply, PostgreSQL", p, p / s }'
echo "(targets: the C plugin within 2x of plain SQL for both migrations)"
