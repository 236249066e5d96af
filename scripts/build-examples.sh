#!/usr/bin/env bash
# Builds every example plugin into a migrations directory (default
# ./migrations): the Swift plugin package product and the C plugin.
#   scripts/build-examples.sh [OUT_DIR] [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-./migrations}
config=${2:-release}
swift build -c "$config" --product ExampleMigrations
mkdir -p "$out"
chmod go-w "$out"
bin=$(swift build -c "$config" --show-bin-path)
install -m 0644 "$bin/libExampleMigrations.so" "$out/example_swift_migrations.so"
cc=$(command -v cc || command -v clang || echo /opt/swift/usr/bin/clang)
make --no-print-directory -s -C Plugins-Examples/c-plugin CC="$cc" OUT="$(cd "$out" && pwd)" \
    MIGRATOR_CFLAGS="-I$PWD/Sources/MigratorPluginABI/include"
chmod 0644 "$out/example_c_migrations.so"
echo "built example plugins into $out"
