#!/usr/bin/env bash
# Installs the Debian packages migrator needs, if missing (LMDB, libcrypto, libpq,
# libcurl for bundles over HTTPS). Idempotent.
# With --test, also the test-only tools: python3-venv (the query-language
# oracles of Tests/Oracles run in a virtual environment) and the PostgreSQL
# server (the tests start a throwaway one; see Tests/Postgres/server.sh), and
# openssl (the HTTPS tests make their own CA).
set -euo pipefail
packages=(liblmdb-dev libssl-dev libpq-dev libcurl4-openssl-dev pkg-config make)
[ "${1:-}" = --test ] && packages+=(python3-venv postgresql openssl)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
