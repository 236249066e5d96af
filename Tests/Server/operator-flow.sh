#!/usr/bin/env bash
# The operator's flow on a server, run inside the toolchain-free root by server-test.sh:
#   operator-flow.sh MIGRATOR LABEL
# Each check prints "ok: LABEL: …" or "FAIL: LABEL: …" with the command's output; the exit
# status is the number of failures (capped at 1). Everything lives under /srv/LABEL.
set -uo pipefail
m=$1
label=$2
base=/srv/$label
failures=0
log=$(mktemp)
pass() { echo "ok: $label: $*"; }
fail() {
    echo "FAIL: $label: $*" >&2
    sed 's/^/    /' "$log" | tail -15 >&2
    failures=$((failures + 1))
}
# expect CODE PATTERN DESCRIPTION -- COMMAND...: COMMAND exits CODE and its output has PATTERN.
expect() {
    local code=$1 pattern=$2 what=$3
    shift 4
    "$@" >"$log" 2>&1
    local got=$?
    if [ "$got" -eq "$code" ] && grep -qE -- "$pattern" "$log"; then pass "$what"; else fail "$what (exit $got, wanted $code and /$pattern/)"; fi
}
# folder NAME: a root-owned 0755 copy of the example plugins, as an operator installs them.
folder() {
    install -d -m 0755 "$base/$1"
    install -m 0644 /srv/plugins/*.so "$base/$1/"
    echo "$base/$1"
}
install -d -m 0755 "$base"
dir=$(folder migrations)
db=$base/app.db

expect 0 "^migrator [0-9]" "--version" -- "$m" --version
if ldd "$m" | grep -q "not found"; then ldd "$m" >"$log"; fail "a library of $m is not found"; else pass "every library of $m resolves"; fi
expect 0 "5 migration\(s\) in 2 plugin\(s\)" "list shows the Swift and the C plugins" -- "$m" list --dir "$dir"
expect 0 "imported [0-9]+ documents into .users." "db import (users)" -- "$m" db import users /srv/dist/users.jsonl --db "$db"
expect 0 "imported" "db import (documents)" -- "$m" db import documents /srv/dist/documents.jsonl --db "$db"
expect 0 "4 reversible, 1 irreversible, 0 not reversible" "verify" -- "$m" verify --dir "$dir" --db "$db"
expect 0 "applied 5 migration\(s\)" "apply (Swift and C plugins)" -- "$m" apply --dir "$dir" --db "$db"
expect 0 "5 applied" "status --check" -- "$m" status --check --dir "$dir" --db "$db"
expect 0 "nothing to apply" "apply again does nothing" -- "$m" apply --dir "$dir" --db "$db"

# Backup, a change, restore: the digest comes back.
before=$("$m" db digest --db "$db" | tail -1)
expect 0 "backed up" "backup" -- "$m" backup --out "$base/backups/b1" --db "$db"
"$m" db import scratch /srv/dist/users.jsonl --db "$db" >/dev/null 2>&1
expect 0 "restored" "restore --yes" -- "$m" restore "$base/backups/b1" --yes --db "$db"
after=$("$m" db digest --db "$db" | tail -1)
if [ -n "$before" ] && [ "$before" = "$after" ]; then pass "restore brings the digest back ($after)"; else echo "$before / $after" >"$log"; fail "digest after restore"; fi
expect 0 "5 applied" "status --check after restore" -- "$m" status --check --dir "$dir" --db "$db"

# Signatures: a signed folder applies with --trusted-keys; an unsigned one is refused (exit 4).
install -d -m 0700 "$base/keys"
install -d -m 0755 "$base/trusted"
expect 0 "key written|wrote" "keygen" -- "$m" keygen --out "$base/keys/release"
cp "$base/keys/release.pub" "$base/trusted/"
signed=$(folder signed)
expect 0 "\.so\.sig" "sign" -- "$m" sign --key "$base/keys/release.key" "$signed"/*.so
expect 0 "applied 5 migration\(s\)" "apply --trusted-keys (signed)" -- \
    "$m" apply --dir "$signed" --db "$base/signed.db" --trusted-keys "$base/trusted"
expect 4 "signature" "apply --trusted-keys refuses an unsigned folder" -- \
    "$m" apply --dir "$dir" --db "$base/unsigned.db" --trusted-keys "$base/trusted"

# A signed bundle, made and taken on the server: one file instead of a folder.
expect 0 "wrote .*app #2, 2 plugin" "bundle create" -- "$m" bundle create --dir "$signed" \
    --key "$base/keys/release.key" --sequence 2 --name app --out "$base/app-2.bundle"
expect 0 "good: signed by the trusted key" "bundle inspect --trusted-keys" -- \
    "$m" bundle inspect "$base/app-2.bundle" --trusted-keys "$base/trusted"
expect 0 "applied 5 migration\(s\)" "apply --from a bundle" -- \
    "$m" apply --from "$base/app-2.bundle" --trusted-keys "$base/trusted" --db "$base/bundle.db"
"$m" bundle create --dir "$signed" --key "$base/keys/release.key" --sequence 1 --name app \
    --out "$base/app-1.bundle" >/dev/null 2>&1
expect 4 "older than #2" "an older bundle is refused" -- \
    "$m" apply --from "$base/app-1.bundle" --trusted-keys "$base/trusted" --db "$base/bundle.db"

# Pins: a pinned folder applies with --require-pin; a swapped file is refused (exit 4).
pinned=$(folder pinned)
expect 0 "pinned 2 plugin" "pin" -- "$m" pin --dir "$pinned"
expect 0 "applied 5 migration\(s\)" "apply --require-pin" -- "$m" apply --require-pin --dir "$pinned" --db "$base/pinned.db"
cp "$pinned/example_c_migrations.so" "$base/c.so" && printf 'x' >>"$base/c.so" && install -m 0644 "$base/c.so" "$pinned/example_c_migrations.so"
expect 4 "migrations.lock" "validate refuses a file that differs from its pin" -- \
    "$m" validate --require-pin --dir "$pinned" --db "$base/pinned.db"

# A service user that owns its database, never root.
id svc >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin svc
install -d -o svc -g svc -m 0750 "$base/svc"
as_svc() { setpriv --reuid=svc --regid=svc --init-groups -- "$@"; }
expect 0 "applied 5 migration\(s\)" "apply as the service user svc" -- as_svc "$m" apply --dir "$dir" --db "$base/svc/app.db"
expect 0 "5 applied" "status --check as svc" -- as_svc "$m" status --check --dir "$dir" --db "$base/svc/app.db"
owner=$(stat -c %U "$base/svc/app.db/data.mdb" 2>&1)
if [ "$owner" = svc ]; then pass "the database belongs to svc"; else echo "$owner" >"$log"; fail "the database's owner"; fi
expect 0 "backed up" "backup as svc" -- as_svc "$m" backup --out "$base/svc/backup" --db "$base/svc/app.db"
# Root on svc's database: migrator becomes svc before it opens it or loads a plugin.
expect 0 "running as 'svc'" "root runs as the database's owner, svc" -- \
    "$m" apply --verbose --dir "$dir" --db "$base/svc/app.db"
expect 0 "plugin code runs as root" "root on its own database says plugin code runs as root" -- \
    "$m" status --dir "$dir" --db "$base/root.db"

# JSON logs: every stderr line of a run is one object.
"$m" apply --dir "$dir" --db "$base/json.db" --log-format json 2>"$log" >/dev/null
got=$?
if [ "$got" -eq 0 ] && tail -1 "$log" | grep -q '"event":"run_end"' && ! grep -qv '^{"ts":".*"event":".*}$' "$log"; then
    pass "--log-format json: apply exits 0, only JSON lines, run_end last"
else
    fail "--log-format json (exit $got)"
fi

rm -f "$log"
echo "$label: $failures failure(s)"
[ "$failures" -eq 0 ]
