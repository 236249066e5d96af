#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing (with
# the test-only tools), checks formatting (.swift-format, 120 columns),
# builds everything in debug (with tests) and in release with zero compiler
# warnings allowed (the CLI tests run the built binary), starts a throwaway
# PostgreSQL server, and runs every test; then the release artifacts, on
# this machine and in a Debian root without the toolchain (Tests/Server).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
scripts/format.sh --check
# Docs that cannot drift: every public symbol of the SDK and the engine has a
# doc comment, and ARCHITECTURE.md names only files and types that exist.
scripts/check-architecture.py
scripts/docs.sh >/dev/null
log=$(mktemp)
pg=/tmp/migrator-pg-ci-$$
trap 'rm -f "$log"; Tests/Postgres/server.sh stop "$pg"' EXIT
for config in "--build-tests" "-c release"; do
    # shellcheck disable=SC2086
    if ! swift build $config -Xswiftc -warnings-as-errors 2>&1 | tee "$log"; then
        echo "error: swift build $config failed" >&2
        exit 1
    fi
    if grep -q "warning:" "$log"; then
        echo "error: swift build $config printed warnings (the project allows none):" >&2
        grep "warning:" "$log" >&2
        exit 1
    fi
done
# One throwaway PostgreSQL server for the whole run (the PostgreSQL
# backend's tests), stopped on exit whatever happens.
MIGRATOR_TEST_POSTGRES=$(Tests/Postgres/server.sh start "$pg")
export MIGRATOR_TEST_POSTGRES
SWIFT_BACKTRACE=enable=no swift test --skip-build
# The release artifacts: bundle and .deb, run from a scrubbed environment.
Tests/Packaging/package-test.sh
# Where they are used: installed into a Debian 12 root without the Swift toolchain.
Tests/Server/server-test.sh
