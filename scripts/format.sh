#!/usr/bin/env bash
# Formats every Swift file with the toolchain's swift-format and .swift-format
# (120 columns), or with --check, fails if any file is not formatted or has
# a line over 120 columns. The generated header text is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.swift' | grep -v -e '^Package.swift$' -e 'PluginHeaderText.swift$')
if [ "${1:-}" = "--check" ]; then
    swift format lint --strict --parallel "${files[@]}"
    long=$(awk 'length > 120 { print FILENAME ":" FNR ": " length " columns" }' "${files[@]}")
    [ -z "$long" ] || { echo "lines over 120 columns:" >&2; echo "$long" >&2; exit 1; }
else
    swift format format --in-place --parallel "${files[@]}"
fi
