# Sourced by the bench scripts after `cd` to the package root. Sets:
#   m     the migrator binary: $MIGRATOR, else a release build (deps installed first)
#   work  a temporary directory, removed on exit
#   cc    a C compiler
if [ -z "${MIGRATOR:-}" ]; then
    scripts/install-deps.sh
    swift build -c release --product migrator >&2
    MIGRATOR=$PWD/.build/release/migrator
fi
m=$MIGRATOR
work=$(mktemp -d /tmp/migrator-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
cc=$(command -v cc || command -v clang)
