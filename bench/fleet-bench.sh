#!/usr/bin/env bash
# Fleet benchmark: HOSTS hosts (HOSTS databases, HOSTS concurrent processes)
# apply one signed bundle of COUNT plugins fetched from one loopback HTTPS
# server (Tests/Fleet/https-server.py, with a CA made here), against one host
# applying the same plugins from a local folder, measured side by side.
# Prints medians of RUNS runs and the ratio.
#   bench/fleet-bench.sh [HOSTS=12] [COUNT=20] [RUNS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${1:-12}
COUNT=${2:-20}
RUNS=${3:-5}
source bench/common.sh
bench/make-plugins.sh "$COUNT" "$work/plugins" >&2
mkdir -m 700 "$work/trusted" "$work/served"
"$m" keygen --out "$work/release" >/dev/null 2>&1
mv "$work/release.pub" "$work/trusted/"
"$m" bundle create --dir "$work/plugins" --key "$work/release.key" --sequence 1 --name fleet \
    --out "$work/served/fleet.bundle" >/dev/null 2>&1
# A CA and a certificate for 127.0.0.1.
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" -days 1 -subj "/CN=bench CA" 2>/dev/null
openssl req "${ec[@]}" -keyout "$work/srv.key" -out "$work/srv.csr" -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$work/ext.cnf"
openssl x509 -req -in "$work/srv.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -out "$work/srv.pem" -days 1 -extfile "$work/ext.cnf" 2>/dev/null
python3 Tests/Fleet/https-server.py --dir "$work/served" --cert "$work/srv.pem" --key "$work/srv.key" \
    --port-file "$work/port" --lifetime 600 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
url="https://127.0.0.1:$(cat "$work/port")/files/fleet.bundle"

now() { date +%s.%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
: >"$work/local.times"
: >"$work/one.times"
: >"$work/fleet.times"
for i in $(seq "$RUNS"); do
    sync
    s=$(now)
    "$m" apply --dir "$work/plugins" --db "$work/local$i.db" --quiet
    e=$(now)
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }' >>"$work/local.times"
    sync
    s=$(now)
    "$m" apply --from "$url" --trusted-keys "$work/trusted" --ca-file "$work/ca.pem" --db "$work/one$i.db" --quiet
    e=$(now)
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }' >>"$work/one.times"
    sync
    s=$(now)
    pids=()
    for h in $(seq "$HOSTS"); do
        "$m" apply --from "$url" --trusted-keys "$work/trusted" --ca-file "$work/ca.pem" \
            --db "$work/r$i-host$h.db" --quiet &
        pids+=($!)
    done
    failed=0
    for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
    e=$(now)
    [ "$failed" -eq 0 ] || { echo "error: $failed host(s) failed in run $i" >&2; exit 1; }
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }' >>"$work/fleet.times"
    for h in $(seq "$HOSTS"); do
        n=$("$m" status --json --from "$url" --trusted-keys "$work/trusted" --ca-file "$work/ca.pem" \
            --db "$work/r$i-host$h.db" | python3 -c 'import json,sys; print(json.load(sys.stdin)["summary"]["applied"])')
        [ "$n" -eq "$COUNT" ] || { echo "error: host $h of run $i applied $n of $COUNT" >&2; exit 1; }
    done
    echo "run $i of $RUNS done" >&2
done
local_median=$(median <"$work/local.times")
one_median=$(median <"$work/one.times")
fleet_median=$(median <"$work/fleet.times")
cores=$(nproc)
echo "Fleet: $HOSTS hosts apply one bundle of $COUNT plugins over HTTPS, median of $RUNS runs (seconds, $cores cores)"
printf '%-58s %8s\n' "one host, the plugins from a local folder" "$local_median"
printf '%-58s %8s\n' "one host, the bundle from the HTTPS server" "$one_median"
printf '%-58s %8s\n' "$HOSTS hosts at once (on this machine), the bundle from one server" "$fleet_median"
awk -v a="$one_median" -v b="$local_median" 'BEGIN { printf "%-58s %7.2fx\n", "one host: bundle over HTTPS against local folder", a / b }'
awk -v a="$fleet_median" -v b="$local_median" -v h="$HOSTS" -v c="$cores" \
    'BEGIN { printf "%-58s %7.2fx\n", "the fleet against one local host, per host per core", a / b * c / h }'
echo "every host applied all $COUNT migrations, each once (checked with status --json)"
