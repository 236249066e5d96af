#!/usr/bin/env bash
# Crash torture: applies two data migrations over N users (a fan-out that
# inserts one user_settings per user, and a per-document add-field loop),
# and kills `migrator apply` with SIGKILL inside one of them, KILLS times.
# Each kill provably lands inside an open write transaction: the plugin
# creates a marker file after its first write (see data_migrations.c), the
# kill follows the marker after a random 0-10 ms, the process must have died
# by SIGKILL, and the marked migration must not be applied afterwards.
# After every kill it checks that
#   - the database opens and `status` works;
#   - `status` agrees with `_migrations`;
#   - each migration is applied entirely or not at all (counts, and samples
#     of individual documents);
#   - the next `apply` completes, and then everything is applied.
# Prints the seed and "K kills, L landed in a transaction, I inconsistencies";
# exits 1 on any inconsistency, or if fewer than KILLS kills landed.
#   bench/crash-torture.sh [KILLS=20] [N=1000000] [SEED=random]
# MIGRATOR=path uses that binary instead of building a release one.
set -euo pipefail
cd "$(dirname "$0")/.."
KILLS=${1:-20}
N=${2:-1000000}
SEED=${3:-$(( $(date +%s) % 32768 ))}
RANDOM=$SEED
echo "crash torture: $KILLS kills, $N users, seed $SEED"
source bench/common.sh
export SWIFT_BACKTRACE=enable=no
mkdir -m 700 "$work/plugins"
for v in 1 3; do
    $cc -shared -fPIC -O2 -fvisibility=hidden -ISources/MigratorPluginABI/include -DVARIANT=$v \
        -o "$work/plugins/v$v.so" bench/migrations/data_migrations.c
done
chmod 644 "$work"/plugins/*.so
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"_id\":%d,\"email\":\"user%d@example.com\",\"name\":\"User %d\",\"age\":%d}\n", i, i, i, 18 + i % 60 }' \
    >"$work/users.jsonl"
"$m" db import users "$work/users.jsonl" --db "$work/seed" >/dev/null

fresh() { rm -rf "$work/db"; cp -r "$work/seed" "$work/db"; }
# How long an uninterrupted run takes, for the record.
fresh
s=$(date +%s%N); "$m" apply --quiet --dir "$work/plugins" --db "$work/db"; e=$(date +%s%N)
echo "an uninterrupted apply takes $(( (e - s) / 1000000 )) ms"

bad=0
problem() { echo "INCONSISTENT (kill $k): $*"; bad=$((bad + 1)); }
count() { "$m" db count "$@" --db "$work/db"; }
state() { # id -> applied|pending, from status --json
    "$m" status --json --dir "$work/plugins" --db "$work/db" | tr '{' '\n' | grep "\"id\":\"$1\"" | grep -o '"state":"[a-z]*"' | cut -d'"' -f4
}
check() { # verifies the invariants; $1 = "after-kill" or "final"
    "$m" status --dir "$work/plugins" --db "$work/db" >/dev/null || { problem "status failed"; return; }
    local tracked fan loop
    tracked=$(count _migrations)
    fan=$(state 010_fanout_user_settings); loop=$(state 030_add_plan_loop)
    local n_applied=0
    [ "$fan" = applied ] && n_applied=$((n_applied + 1))
    [ "$loop" = applied ] && n_applied=$((n_applied + 1))
    [ "$tracked" = "$n_applied" ] || problem "_migrations has $tracked records, status shows $n_applied applied"
    local settings plans
    settings=$(count user_settings); plans=$(count users --filter '{"plan":"free"}')
    if [ "$fan" = applied ]; then [ "$settings" = "$N" ] || problem "fan-out applied but $settings of $N user_settings"
    else [ "$settings" = 0 ] || problem "fan-out not applied but $settings user_settings exist"; fi
    if [ "$loop" = applied ]; then [ "$plans" = "$N" ] || problem "add-field applied but $plans of $N users have the plan"
    else [ "$plans" = 0 ] || problem "add-field not applied but $plans users have the plan"; fi
    for _ in 1 2 3; do
        local id=$(( (RANDOM * 32768 + RANDOM) % N + 1 ))
        local want_s=0 want_p=0
        [ "$fan" = applied ] && want_s=1
        [ "$loop" = applied ] && want_p=1
        [ "$(count user_settings --filter "{\"user_id\":$id}")" = $want_s ] || problem "user $id: user_settings count is not $want_s"
        [ "$(count users --filter "{\"_id\":$id,\"plan\":\"free\"}")" = $want_p ] || problem "user $id: plan is not as $loop says"
    done
    if [ "$1" = final ] && { [ "$fan" != applied ] || [ "$loop" != applied ]; }; then problem "after a full apply: $fan / $loop"; fi
}

landed=0
for k in $(seq "$KILLS"); do
    fresh
    target=010_fanout_user_settings
    [ $((RANDOM % 2)) = 0 ] && target=030_add_plan_loop
    rm -f "$work/marker"
    MIGRATION_TORTURE_MARK=$target MIGRATION_TORTURE_MARKER="$work/marker" \
        "$m" apply --quiet --dir "$work/plugins" --db "$work/db" 2>/dev/null &
    pid=$!
    # Wait for the marker: the run is inside $target's transaction.
    for _ in $(seq 20000); do
        [ -e "$work/marker" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.001
    done
    if [ ! -e "$work/marker" ]; then
        problem "the run never reached the first write of $target"
        wait "$pid" 2>/dev/null || true
        continue
    fi
    delay=$((RANDOM % 11))
    sleep "0.$(printf %03d "$delay")"
    kill -9 "$pid"
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    [ "$rc" = 137 ] || problem "apply exited with $rc, not by SIGKILL (137)"
    check after-kill
    before=$(state 010_fanout_user_settings)/$(state 030_add_plan_loop)
    if [ "$(state "$target")" = applied ]; then
        echo "kill $k: $target had committed before the kill landed; not counted"
    else
        landed=$((landed + 1))
    fi
    "$m" apply --quiet --dir "$work/plugins" --db "$work/db" --lock-timeout 5 || problem "the apply after the kill failed"
    check final
    echo "kill $k inside $target, ${delay} ms after its first write: state after kill $before; recovered"
done
echo "$KILLS kills, $landed landed in a transaction, $bad inconsistencies (seed $SEED)"
[ "$bad" = 0 ] && [ "$landed" = "$KILLS" ]
