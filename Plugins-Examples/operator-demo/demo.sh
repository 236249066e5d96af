#!/usr/bin/env bash
# The operator's path for a bundle of migrations that arrives from another
# pipeline, on the sample data, one step at a time:
#   sign the bundle -> pin it -> dry run -> verify -> apply with a backup -> restore
# On a terminal it stops after each step (press Enter); otherwise it runs
# straight through. Everything happens in a fresh temporary folder.
#   Plugins-Examples/operator-demo/demo.sh [MIGRATOR [BUNDLE_DIR]]
# (BUNDLE_DIR: already-built example plugins to copy instead of building them.)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${1:-}" ]; then
    m=$1
else
    swift build -c release --product migrator >&2
    m=$PWD/.build/release/migrator
fi
work=$(mktemp -d /tmp/migrator-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
if [ -n "${2:-}" ]; then
    mkdir -m 755 "$work/bundle"
    cp "$2"/*.so "$work/bundle/"
else
    scripts/build-examples.sh "$work/bundle" release >/dev/null
fi
samples=$PWD/Plugins-Examples/sample-data
export MIGRATOR_DB=$work/app.db
cd "$work"

step() {
    echo
    echo "== $1"
    if [ -t 0 ] && [ -t 1 ]; then read -r -p "(Enter to run it) " _; fi
}
run() {
    echo "\$ migrator $*"
    "$m" "$@" || echo "(exit $?)"
}

step "The database the app runs on today: the sample users and documents"
run db import users "$samples/users.jsonl"
run db import documents "$samples/documents.jsonl"
run db digest

step "Release side: make a signing key, sign the bundle (each .so gets a .so.sig)"
mkdir -m 700 keys trusted
run keygen --out keys/release
cp keys/release.pub trusted/
run sign --key keys/release.key bundle/example_c_migrations.so bundle/example_swift_migrations.so

step "Server side: pin exactly these files; anything else in the folder is now refused before it loads"
run pin --dir bundle
cat bundle/migrations.lock

step "What the bundle holds, and who signed it"
run list --dir bundle --trusted-keys trusted --require-pin

step "Dry run: every step runs in one transaction that is rolled back; the digest does not move"
run apply --dry-run --dir bundle --trusted-keys trusted --require-pin
run db digest

step "Proof of reversibility: up, down, compare, up again (005 has no down: irreversible)"
run verify --dir bundle --trusted-keys trusted --require-pin

step "Apply, with a backup taken before the first step"
run apply --dir bundle --trusted-keys trusted --require-pin --backup-dir backups
run status --dir bundle --trusted-keys trusted
backup=$(ls -d backups/backup-* | tail -1)

step "A plugin nobody signed is dropped into the folder: it is refused, and never loaded"
cp bundle/example_c_migrations.so bundle/zz_intruder.so
run status --dir bundle --trusted-keys trusted --require-pin
rm bundle/zz_intruder.so

step "Something went wrong after all: restore the backup taken before apply (checked first)"
run restore "$backup" --yes
run status --dir bundle --trusted-keys trusted
run db digest
echo
echo "done: the database is back to the state before apply"
