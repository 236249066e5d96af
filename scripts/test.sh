#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing, builds
# everything (the CLI tests run the built binary), and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
SWIFT_BACKTRACE=enable=no swift test --skip-build
