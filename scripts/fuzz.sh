#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (default 60), starting from
# the committed corpus in Tests/Fuzz/corpus/<target>. New inputs that add
# coverage are merged back into that corpus (commit them); a crash is
# copied there too, so the regression test replays it until it is fixed.
#   scripts/fuzz.sh [SECONDS=60] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json query plugin arguments)
scripts/install-deps.sh
# A separate build folder: everything in it is instrumented for libFuzzer.
swift build --scratch-path .build-fuzz --sanitize=fuzzer -Xswiftc -DFUZZING --product Fuzzer >&2
bin=$(swift build --scratch-path .build-fuzz --sanitize=fuzzer --show-bin-path)/Fuzzer
export SWIFT_BACKTRACE=enable=no
status=0
for t in "${targets[@]}"; do
    corpus=Tests/Fuzz/corpus/$t
    scratch=$(mktemp -d /tmp/migrator-fuzz-$t.XXXXXX)
    before=$(ls "$corpus" | wc -l)
    echo "== $t: ${SECONDS_EACH} s from $before corpus inputs" >&2
    if FUZZ_TARGET=$t "$bin" "$scratch" "$corpus" -max_total_time="$SECONDS_EACH" -max_len=4096 \
            -artifact_prefix="$scratch/" -print_final_stats=1 2>"$scratch/log"; then
        result="no crash"
    else
        result="CRASH"
        status=1
        for a in "$scratch"/crash-* "$scratch"/timeout-* "$scratch"/oom-*; do
            [ -e "$a" ] && cp "$a" "$corpus/found-$(basename "$a")" && echo "   saved $corpus/found-$(basename "$a")" >&2
        done
    fi
    FUZZ_TARGET=$t "$bin" -merge=1 "$corpus" "$scratch" 2>/dev/null || true
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$scratch/log" | tail -1 | grep -o '[0-9]*' || echo "?")
    echo "$t: $result, $runs executions in ${SECONDS_EACH} s, coverage $cov edges, corpus $before -> $(ls "$corpus" | wc -l)"
    [ "$result" = CRASH ] && tail -30 "$scratch/log" >&2
    rm -rf "$scratch"
done
exit $status
