#!/usr/bin/env bash
# One command from a fresh Debian machine: installs what is missing, builds
# migrator and the example plugins, and runs the main job on the embedded
# default database (./migrator.db, or $MIGRATOR_DB).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product migrator
m=.build/release/migrator
db=${MIGRATOR_DB:-./migrator.db}
dir=${MIGRATOR_DIR:-./migrations}
scripts/build-examples.sh "$dir" release
echo "== plugins in $dir"
$m list --dir "$dir"
if [ "$($m db count users --db "$db")" = "0" ]; then
    $m db import users Plugins-Examples/sample-data/users.jsonl --db "$db"
    $m db import documents Plugins-Examples/sample-data/documents.jsonl --db "$db"
fi
echo "== collections"
$m db collections --db "$db"
echo "== users in Oslo or Kyoto, oldest first"
$m db find users --filter '{"address.city":{"$in":["Oslo","Kyoto"]}}' --sort -age --projection '{"name":1,"age":1,"address.city":1}' --db "$db"
