#!/usr/bin/env bash
# Data-migration throughput through the real plugin path: `migrator apply`
# running a compiled C or Swift plugin over N users (~120 bytes each),
# against raw LMDB in C and the sqlite3 CLI doing the same work, all in the
# same run. Preloading is not timed. Every timed run is checked to have done
# its work (counts), and C and Swift alternate which goes first. Prints
# medians of RUNS runs: seconds, documents per second, peak RSS, and ratios.
#   bench/data-bench.sh [N=1000000] [RUNS=3]
#   bench/data-bench.sh --backend postgres [N=100000] [RUNS=3] [COUNT=1000]   (bench/pg-data-bench.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --backend ]; then
    case "${2:-}" in
    postgres) exec bench/pg-data-bench.sh "${@:3}" ;;
    lmdb) shift 2 ;;
    *) echo "usage: $0 [--backend lmdb|postgres] [N] [RUNS]" >&2; exit 2 ;;
    esac
fi
N=${1:-1000000}
RUNS=${2:-3}
source bench/common.sh
# Benchmark-only tools: the sqlite3 CLI and GNU time (peak RSS).
for pkg in sqlite3 time; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || \
        { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq "$pkg" >&2; }
done
swift build -c release --product BenchMigrations >&2
inc=Sources/MigratorPluginABI/include
$cc -O2 -Wall -o "$work/baseline" bench/data_baseline.c -llmdb
for v in 1 2 3 4; do
    mkdir -m 700 "$work/c$v" "$work/swift$v"
    $cc -shared -fPIC -O2 -fvisibility=hidden -I$inc -DVARIANT=$v -o "$work/c$v/plugin.so" bench/migrations/data_migrations.c
    install -m 0644 "$(swift build -c release --show-bin-path)/libBenchMigrations.so" "$work/swift$v/plugin.so"
done
chmod 700 "$work"/c* "$work"/swift*

echo "preloading $N users..." >&2
awk -v n="$N" 'BEGIN { split("Oslo Lisbon Porto Kyoto Bergen Lima", c, " ");
    for (i = 1; i <= n; i++) printf "{\"_id\":%d,\"email\":\"user%d@example.com\",\"name\":\"User %d\",\"age\":%d,\"city\":\"%s\",\"created_at\":\"2026-11-%02dT09:00:00.000Z\"}\n", i, i, i, 18 + i % 60, c[i % 6 + 1], 1 + i % 28 }' >"$work/users.jsonl"
"$m" db import users "$work/users.jsonl" --db "$work/seed" >&2
sqlite3 "$work/seed.sqlite" <<SQL
CREATE TABLE users (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE user_settings (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $N)
INSERT INTO users SELECT i, json_object('_id', i, 'email', 'user' || i || '@example.com', 'name', 'User ' || i,
    'age', 18 + i % 60, 'city', 'city', 'created_at', '2026-11-01T09:00:00.000Z') FROM s;
SQL

# Runs a command under GNU time; appends "<label> <seconds> <peak RSS MB>".
measure() {
    local label=$1; shift
    sync
    /usr/bin/time -f "%e %M" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    echo "$label $(awk '{ printf "%s %.1f", $1, $2 / 1024 }' "$work/time")" >>"$work/results"
}
fresh() { rm -rf "$work/db"; cp -r "$work/seed" "$work/db"; }
# A timed run counts only if it did the work: every user got its document
# or its field.
verify() { # label job
    local got
    if [ "$2" = fanout ]; then got=$("$m" db count user_settings --db "$work/db")
    else got=$("$m" db count users --filter '{"plan":"free"}' --db "$work/db"); fi
    [ "$got" = "$N" ] || { echo "error: $1 did the work for $got of $N users" >&2; exit 1; }
}
# Alternate which language goes first, so neither always inherits the
# other's writeback.
run_plugin() { # lang name variant swift-name
    fresh
    if [ "$1" = c ]; then measure "c_$2" "$m" apply --quiet --dir "$work/c$3" --db "$work/db"
    else MIGRATION_BENCH_MIGRATION=$4 measure "swift_$2" "$m" apply --quiet --dir "$work/swift$3" --db "$work/db"; fi
    verify "$1 $2" "${2%%_*}"
}

for i in $(seq "$RUNS"); do
    order="c swift"; [ $((i % 2)) = 0 ] && order="swift c"
    for job in fanout:1:fanout addfield_bulk:2:bulk addfield_loop:3:loop addfield_replace:4:replace; do
        IFS=: read -r name v sw <<<"$job"
        for lang in $order; do
            run_plugin "$lang" "$name" "$v" "$sw"
            [ "$lang" = c ] && [ "$name" = fanout ] && [ "$i" = 1 ] && echo "db_size_after_fanout_mb $(du -sm "$work/db" | cut -f1)" >>"$work/sizes"
        done
    done
    # Raw C: its own timer around the migration; peak RSS of the whole process.
    for job in fanout addfield; do
        rm -rf "$work/raw"; mkdir "$work/raw"
        sync
        /usr/bin/time -f "%M" -o "$work/time" "$work/baseline" "$work/raw" "$N" $job >"$work/raw.out"
        echo "raw_$job $(awk '{print $2}' "$work/raw.out") $(awk '{ printf "%.1f", $1 / 1024 }' "$work/time")" >>"$work/results"
    done
    for job in fanout addfield; do
        cp "$work/seed.sqlite" "$work/run.sqlite"
        if [ $job = fanout ]; then
            sql="BEGIN; INSERT INTO user_settings(doc) SELECT json_object('user_id', id, 'theme', 'light', 'notifications', json('true')) FROM users; COMMIT;"
        else
            sql="BEGIN; UPDATE users SET doc = json_set(doc, '\$.plan', 'free'); COMMIT;"
        fi
        measure "sqlite_$job" sqlite3 "$work/run.sqlite" "$sql"
        if [ $job = fanout ]; then q="SELECT count(*) FROM user_settings;"
        else q="SELECT count(*) FROM users WHERE json_extract(doc, '\$.plan') = 'free';"; fi
        got=$(sqlite3 "$work/run.sqlite" "$q")
        [ "$got" = "$N" ] || { echo "error: sqlite3 $job did the work for $got of $N users" >&2; exit 1; }
    done
    echo "run $i of $RUNS done" >&2
done

med() { awk -v k="$1" -v f="$2" '$1==k {print $f}' "$work/results" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "Data migrations over $N users: median of $RUNS runs"
printf '%-34s %9s %12s %9s %10s %10s\n' path seconds docs/s "RSS MB" "vs raw C" "vs SQLite"
row() { # label key rawkey sqlitekey
    local s r; s=$(med "$2" 2); r=$(med "$2" 3)
    awk -v l="$1" -v s="$s" -v r="$r" -v n="$N" -v raw="$(med "$3" 2)" -v sq="$(med "$4" 2)" \
        'BEGIN { printf "%-34s %9.3f %12.0f %9s %9.2fx %9.2fx\n", l, s, n / s, (r > 0 ? r : "-"), s / raw, s / sq }'
}
echo "fan-out (insert one user_settings per user)"
row "  raw LMDB, C" raw_fanout raw_fanout sqlite_fanout
row "  sqlite3 CLI" sqlite_fanout raw_fanout sqlite_fanout
row "  migrator apply, C plugin" c_fanout raw_fanout sqlite_fanout
row "  migrator apply, Swift plugin" swift_fanout raw_fanout sqlite_fanout
echo "add-field (plan: free on every user)"
row "  raw LMDB, C" raw_addfield raw_addfield sqlite_addfield
row "  sqlite3 CLI" sqlite_addfield raw_addfield sqlite_addfield
row "  migrator, C plugin, one update" c_addfield_bulk raw_addfield sqlite_addfield
row "  migrator, Swift plugin, one update" swift_addfield_bulk raw_addfield sqlite_addfield
row "  migrator, C plugin, per-doc loop" c_addfield_loop raw_addfield sqlite_addfield
row "  migrator, Swift plugin, per-doc loop" swift_addfield_loop raw_addfield sqlite_addfield
row "  migrator, C, cursor_replace loop (1.1)" c_addfield_replace raw_addfield sqlite_addfield
row "  migrator, Swift, replaceCurrent (1.1)" swift_addfield_replace raw_addfield sqlite_addfield
cat "$work/sizes"
echo "(raw C times cover the migration only, its RSS the whole process including the untimed preload;"
echo " migrator and sqlite3 figures are whole processes: start-up, loading and the durable commit included)"
