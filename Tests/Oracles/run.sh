#!/usr/bin/env bash
# Answers random filters with two independent implementations of MongoDB's
# query language (mongomock and montydb, test-only, from PyPI, pinned), in a
# virtual environment made on first use. See mongo_oracles.py.
#   Tests/Oracles/run.sh OUT.json SEED DOCUMENTS FILTERS
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${MIGRATOR_ORACLE_VENV:-$here/../../.build/oracle-venv}
# Tests run in parallel: one of them makes the environment, the others wait.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ! "$venv/bin/python" -c "import mongomock, montydb" 2>/dev/null; then
    echo "setting up the query-language oracles in $venv" >&2
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check mongomock==4.3.0 montydb==2.5.6 >&2
fi
flock -u 9
exec "$venv/bin/python" "$here/mongo_oracles.py" "$@"
