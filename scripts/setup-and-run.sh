#!/usr/bin/env bash
# One command from a fresh Debian machine: installs what is missing, builds
# migrator and the example plugins, and runs the main job on the embedded
# default database (./migrator.db, or $MIGRATOR_DB): apply the example
# migrations, then show their status. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product migrator
m=.build/release/migrator
export MIGRATOR_DB=${MIGRATOR_DB:-./migrator.db}
export MIGRATOR_DIR=${MIGRATOR_DIR:-./migrations}
scripts/build-examples.sh "$MIGRATOR_DIR" release
echo "== plugins in $MIGRATOR_DIR"
$m list
if [ ! -e "$MIGRATOR_DB" ] || [ "$($m db count users)" = "0" ]; then
    echo "== importing the sample data"
    $m db import users Plugins-Examples/sample-data/users.jsonl
    $m db import documents Plugins-Examples/sample-data/documents.jsonl
fi
echo "== migrator apply --dir $MIGRATOR_DIR"
$m apply --dir "$MIGRATOR_DIR"
echo "== migrator status"
$m status
