#!/usr/bin/env bash
# Builds the reference documentation of the Swift SDK (MigrationKit) and of the
# embedding API (MigrationEngine) with the toolchain's docc, into dist/docs/ as a
# static site. Fails if a public symbol of either module has no doc comment.
# (`swift package generate-documentation` needs a package plugin dependency,
# which this project does not take; this calls `docc convert` directly.)
#   scripts/docs.sh         then: python3 -m http.server -d dist/docs 8000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v python3 >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq python3 >&2; }
graphs=$(mktemp -d /tmp/migrator-symbols.XXXXXX)
trap 'rm -rf "$graphs"' EXIT
# A separate build directory: the symbol-graph flags would rebuild the main one.
swift build --scratch-path .build-docs --target MigrationEngine \
    -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$graphs" >&2
scripts/doc-coverage.py "$graphs" MigrationKit MigrationEngine
rm -rf dist/docs
mkdir -p dist/docs
for module in MigrationKit MigrationEngine; do
    only=$(mktemp -d "$graphs/$module.XXXX")
    cp "$graphs/$module.symbols.json" "$only/"
    docc convert --additional-symbol-graph-dir "$only" --fallback-display-name "$module" \
        --fallback-bundle-identifier "org.migrator.$module" --output-dir "dist/docs/$module" \
        --transform-for-static-hosting --hosting-base-path "$module" --warnings-as-errors >&2
done
cat >dist/docs/index.html <<'HTML'
<!doctype html>
<meta charset="utf-8">
<title>migrator reference</title>
<h1>migrator reference</h1>
<ul>
  <li><a href="MigrationKit/documentation/migrationkit/">MigrationKit</a>: the Swift SDK for writing migrations</li>
  <li><a href="MigrationEngine/documentation/migrationengine/">MigrationEngine</a>: embedding the engine in an app</li>
</ul>
<p>Serve this folder over HTTP (for example <code>python3 -m http.server -d dist/docs</code>); DocC pages do not open from file:// URLs.</p>
HTML
echo "dist/docs/index.html"
