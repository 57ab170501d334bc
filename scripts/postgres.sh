#!/usr/bin/env bash
# A PostgreSQL server on loopback for scinas' shared studies (`scinas worker`, --storage).
#
# Installs Debian's postgresql package when no server binaries are found (needs root and
# apt-get), keeps its own data directory (not the distribution's cluster), starts the server on
# 127.0.0.1 only, creates the role and database `scinas`, and prints the storage URL on stdout
# (everything else goes to stderr). A second call reuses the running server.
#
#   SCINAS_PG_PORT   port (default 55432)
#   SCINAS_PG_DIR    data directory (default /var/tmp/scinas-postgres)
#
#   export SCINAS_TEST_POSTGRES=$(bash scripts/postgres.sh)   # what .ci/run does
set -euo pipefail
PORT=${SCINAS_PG_PORT:-55432}
DIR=${SCINAS_PG_DIR:-/var/tmp/scinas-postgres}
URL="postgresql://scinas:scinas@127.0.0.1:${PORT}/scinas"
say() { echo "postgres.sh: $*" >&2; }

find_bin() {
    if command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return
    fi
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$d" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

BIN=$(find_bin || true)
if [ -z "$BIN" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        say "PostgreSQL is not installed; install it (Debian: apt-get install postgresql) and rerun."
        exit 1
    fi
    say "installing PostgreSQL from Debian's packages (log: /tmp/scinas-postgres-apt.log)"
    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql) \
        >/tmp/scinas-postgres-apt.log 2>&1 || { say "apt-get failed, see /tmp/scinas-postgres-apt.log"; exit 1; }
    BIN=$(find_bin)
fi

# The server refuses to run as root: as root, everything runs as the `postgres` user.
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    OWNER=postgres
    as_owner() { runuser -u postgres -- "$@"; }
else
    OWNER=$(id -un)
    as_owner() { "$@"; }
fi

if [ ! -s "$DIR/PG_VERSION" ]; then
    say "creating a cluster in $DIR"
    mkdir -p "$DIR"
    chown "$OWNER" "$DIR"
    chmod 700 "$DIR"
    as_owner "$BIN/initdb" -D "$DIR" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        >"$DIR.initdb.log" 2>&1 || { say "initdb failed, see $DIR.initdb.log"; exit 1; }
fi

if as_owner "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
    say "reusing the server running in $DIR"
else
    say "starting the server on 127.0.0.1:$PORT"
    as_owner "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DIR -c max_connections=200" \
        start >&2 || { say "the server did not start, see $DIR/server.log"; exit 1; }
fi

psql_su() { as_owner "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -d postgres -tAq "$@"; }
if [ "$(psql_su -c "SELECT 1 FROM pg_roles WHERE rolname = 'scinas'")" != 1 ]; then
    psql_su -c "CREATE ROLE scinas LOGIN PASSWORD 'scinas'"
fi
if [ "$(psql_su -c "SELECT 1 FROM pg_database WHERE datname = 'scinas'")" != 1 ]; then
    psql_su -c "CREATE DATABASE scinas OWNER scinas"
fi
echo "$URL"
