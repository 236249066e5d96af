#!/usr/bin/env bash
# A checkpointed migration over N users (bench/migrations/checkpoint_migration.c:
# $inc n on every user, a checkpoint every EVERY users), killed KILLS times:
# each time the worker gets SIGKILL at a random point after a random number of
# checkpoints, and `apply` is run again, resuming from the last checkpoint.
# At the end every user must have n == 1: transformed exactly once. Then the
# same work is timed in one transaction and with checkpoints (medians of RUNS),
# and the ratio is printed (target: within 1.2x).
#   bench/checkpoint-torture.sh [N=3000000] [EVERY=100000] [KILLS=3] [RUNS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000000}
EVERY=${2:-100000}
KILLS=${3:-3}
RUNS=${4:-3}
source bench/common.sh
mkdir -m 700 "$work/plugins"
$cc -shared -fPIC -O2 -fvisibility=hidden -ISources/MigratorPluginABI/include -o "$work/plugins/c.so" \
    bench/migrations/checkpoint_migration.c
chmod 644 "$work/plugins/c.so"
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"_id\":%d,\"name\":\"User %d\"}\n", i, i }' >"$work/users.jsonl"
"$m" db import users "$work/users.jsonl" --db "$work/seed" >&2
rm -f "$work/users.jsonl"
checkpoints=$((N / EVERY))

cp -r "$work/seed" "$work/db"
kills=0
while [ "$kills" -lt "$KILLS" ]; do
    # Kill after a random checkpoint of those left, plus a random 0-50 ms.
    target=$((RANDOM % (checkpoints / (KILLS + 1) + 1) + 1))
    MIGRATION_CHECKPOINT_EVERY=$EVERY "$m" apply --dir "$work/plugins" --db "$work/db" 2>"$work/err" &
    runner=$!
    seen=0
    while [ "$seen" -lt "$target" ] && kill -0 "$runner" 2>/dev/null; do
        sleep 0.05
        seen=$(grep -c "checkpoint " "$work/err" || true)
    done
    worker=$(pgrep -P "$runner" -f __worker || true)
    sleep "0.0$((RANDOM % 5))"
    if [ -n "$worker" ] && kill -KILL "$worker" 2>/dev/null; then
        kills=$((kills + 1))
        wait "$runner" && { echo "error: the run exited 0 after its worker was killed" >&2; exit 1; }
        echo "kill $kills: worker killed after $seen checkpoint(s); $("$m" status --dir "$work/plugins" --db "$work/db" | grep 050_)" >&2
    else
        wait "$runner" || true
        echo "the run ended before the kill; starting over" >&2
        rm -rf "$work/db"; cp -r "$work/seed" "$work/db"
    fi
done
MIGRATION_CHECKPOINT_EVERY=$EVERY "$m" apply --dir "$work/plugins" --db "$work/db" --quiet
once=$("$m" db count users --filter '{"n":1}' --db "$work/db")
other=$("$m" db count users --filter '{"n":{"$ne":1}}' --db "$work/db")
echo "after $kills kills: $once users transformed once, $other not exactly once (of $N)"
[ "$once" = "$N" ] && [ "$other" = 0 ] || { echo "error: not every user was transformed exactly once" >&2; exit 1; }

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", e - s }'; }
for i in $(seq "$RUNS"); do
    for every in $((N + 1)) "$EVERY"; do
        rm -rf "$work/db"; cp -r "$work/seed" "$work/db"; sync
        echo "$every $(MIGRATION_CHECKPOINT_EVERY=$every secs "$m" apply --quiet --dir "$work/plugins" --db "$work/db")" >>"$work/times"
    done
done
med() { awk -v k="$1" '$1==k {print $2}' "$work/times" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
one=$(med $((N + 1))); many=$(med "$EVERY")
echo "$N users, median of $RUNS: one transaction ${one}s, a checkpoint every $EVERY ${many}s:" \
    "$(awk -v a="$one" -v b="$many" 'BEGIN { printf "%.2fx", b / a }') (target <= 1.20x)"
