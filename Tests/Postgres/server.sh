#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests: initdb into DIR, listening
# only on a Unix socket in DIR (no TCP port to collide with), trust
# authentication for the socket. PostgreSQL refuses to run as root, so as
# root the server runs as the user `postgres` (Debian's package creates it).
#   Tests/Postgres/server.sh start DIR   prints the connection URI
#   Tests/Postgres/server.sh restart DIR   (a fast shutdown: sessions are cut; starts a halted one)
#   Tests/Postgres/server.sh halt DIR      (an immediate shutdown, as a crash; DIR stays)
#   Tests/Postgres/server.sh stop DIR
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || { echo "error: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# Whatever descriptors the caller left open (a test process spawning us while
# another thread had a pipe open) would live on in the daemon and keep that
# pipe's reader waiting for an end of file forever: close them all.
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && [ "$fd" != 255 ] && eval "exec $fd>&-" 2>/dev/null || true
done
case $cmd in
start)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U migrator -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    # A role that must give a password, ahead of the trust rule, for the
    # tests of wrong passwords; and one with no rights on a schema.
    sed -i '1i local all password_user scram-sha-256' "$dir/data/pg_hba.conf"
    # The socket port number is only part of the socket's file name.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-k $dir -c listen_addresses='' -p 5432 -c fsync=on" start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h "$dir" -p 5432 -U migrator migrator_test
    as_owner "$bin/psql" -q -h "$dir" -p 5432 -U migrator -d migrator_test -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE ROLE password_user LOGIN PASSWORD 'right-password';
GRANT CREATE ON DATABASE migrator_test TO password_user;
CREATE ROLE limited_user LOGIN;
CREATE SCHEMA locked;
REVOKE ALL ON SCHEMA locked FROM PUBLIC;
SQL
    echo "postgresql://migrator@/migrator_test?host=$dir&port=5432"
    ;;
restart)
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 restart >/dev/null
    ;;
halt)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    ;;
stop)
    [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*) echo "usage: $0 start|restart|halt|stop DIR" >&2; exit 2 ;;
esac
