#!/usr/bin/env bash
# Compiles COUNT C plugins of one trivial migration each into DIR:
# NNNN_create_cNNNN creates collection c_NNNN; its down drops it.
#   bench/make-plugins.sh COUNT DIR
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=$1
DIR=$2
cc=$(command -v cc || command -v clang)
inc=$PWD/Sources/MigratorPluginABI/include
mkdir -p -m 700 "$DIR"
src=$(mktemp /tmp/migrator-plugin.XXXXXX.c)
trap 'rm -f "$src"' EXIT
cat >"$src" <<'C'
#include "migrator_plugin.h"
static migrator_status up(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u; return h->create_collection(t, "c_" ID);
}
static migrator_status down(const migrator_host_v1 *h, migrator_txn *t, void *u) {
    (void)u; return h->drop_collection(t, "c_" ID);
}
static const migrator_migration_v1 m = { ID, "Create c_" ID, "bench", "1.0.0", NULL, up, down, NULL };
static const migrator_plugin_v1 b = { MIGRATOR_ABI_MAJOR, MIGRATOR_ABI_MINOR, sizeof b, "bench", NULL, 1, &m };
__attribute__((visibility("default"))) const migrator_plugin_v1 *migrator_plugin_entry_v1(void) { return &b; }
C
echo "compiling $COUNT plugins into $DIR..." >&2
seq 1 "$COUNT" | xargs -P "$(nproc)" -I{} sh -c \
    'id=$(printf "%04d_create_c%04d" {} {}); '"$cc"' -shared -fPIC -O1 -fvisibility=hidden -I'"$inc"' -DID="\"$id\"" -o '"$DIR"'/$id.so '"$src"
chmod 644 "$DIR"/*.so
