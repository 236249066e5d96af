#!/usr/bin/env bash
# One command from a fresh Debian machine: installs what is missing, builds
# migrator, and runs the main job on the embedded default database
# (./migrator.db, or $MIGRATOR_DB): import the sample users and query them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product migrator
m=.build/release/migrator
db=${MIGRATOR_DB:-./migrator.db}
if [ "$($m db count users --db "$db")" = "0" ]; then
    $m db import users Plugins-Examples/sample-data/users.jsonl --db "$db"
fi
$m db create-index users email --unique --db "$db"
echo "== collections"
$m db collections --db "$db"
echo "== users in Oslo or Kyoto, oldest first"
$m db find users --filter '{"address.city":{"$in":["Oslo","Kyoto"]}}' --sort -age --projection '{"name":1,"age":1,"address.city":1}' --db "$db"
echo "== lookup by email ($($m db explain users --filter '{"email":"user07@example.com"}' --db "$db"))"
$m db find users --filter '{"email":"user07@example.com"}' --db "$db"
echo "== beta testers on the free plan: $($m db count users --filter '{"tags":"beta","plan":"free"}' --db "$db")"
