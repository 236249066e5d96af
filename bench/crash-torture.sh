#!/usr/bin/env bash
# Crash torture: applies two data migrations over N users (a fan-out that
# inserts one user_settings per user, and a per-document add-field loop),
# kills `migrator apply` with SIGKILL at a random moment, KILLS times, and
# after every kill checks that
#   - the database opens and `status` works;
#   - `status` agrees with `_migrations`;
#   - each migration is applied entirely or not at all (counts, and samples
#     of individual documents);
#   - the next `apply` completes, and then everything is applied.
# Prints the seed and "K kills, I inconsistencies"; exits 1 on any.
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
# How long an uninterrupted run takes: kills land anywhere inside it.
fresh
s=$(date +%s%N); "$m" apply --quiet --dir "$work/plugins" --db "$work/db"; e=$(date +%s%N)
span_ms=$(( (e - s) / 1000000 ))
echo "an uninterrupted apply takes ${span_ms} ms"

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

for k in $(seq "$KILLS"); do
    fresh
    delay=$(( RANDOM % (span_ms + 1) ))
    "$m" apply --quiet --dir "$work/plugins" --db "$work/db" 2>/dev/null &
    pid=$!
    sleep "$(awk -v d="$delay" 'BEGIN { printf "%.3f", d / 1000 }')"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    check after-kill
    before=$(state 010_fanout_user_settings)/$(state 030_add_plan_loop)
    "$m" apply --quiet --dir "$work/plugins" --db "$work/db" --lock-timeout 5 || problem "the apply after the kill failed"
    check final
    echo "kill $k at ${delay} ms: state after kill $before; recovered"
done
echo "$KILLS kills, $bad inconsistencies (seed $SEED)"
[ "$bad" = 0 ]
