#!/usr/bin/env bash
# Start a throw-away PostgreSQL server for the runner's tests and print its SQLAlchemy URL.
#
# Use (from .ci/run or by hand):
#     export STELLARNN_TEST_POSTGRES_URL="$(bash scripts/ci_postgres.sh)"
#
# Installs the Debian packages (postgresql) with apt-get when no server binaries are found,
# creates a fresh cluster under $PGROOT (default /tmp/stellarnn-ci-postgres) owned by the
# 'postgres' system user, starts it on 127.0.0.1:$PGPORT (default 55432) with trust
# authentication (local test server only), creates the database 'stellarnn_test' and prints
#     postgresql+psycopg://postgres@127.0.0.1:$PGPORT/stellarnn_test
# on stdout (everything else goes to stderr).  Running it again reuses a server that is up.
# Stop it with:  su postgres -c "pg_ctl -D $PGROOT/data stop"
set -euo pipefail

PGROOT="${PGROOT:-/tmp/stellarnn-ci-postgres}"
PGPORT="${PGPORT:-55432}"
DBNAME="stellarnn_test"
log() { echo "ci_postgres: $*" >&2; }

find_bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    return 1
}

as_postgres() {
    if [ "$(id -u)" = "0" ]; then
        su postgres -s /bin/bash -c "$1"
    else
        bash -c "$1"
    fi
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
    if [ "$(id -u)" != "0" ]; then
        log "no PostgreSQL server binaries and not root: cannot apt-get install postgresql"; exit 1
    fi
    log "installing postgresql (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    BINDIR="$(find_bindir)"
fi
log "server binaries: $BINDIR"

if [ "$(id -u)" = "0" ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir "$PGROOT" --shell /bin/bash postgres
fi

mkdir -p "$PGROOT"
if [ "$(id -u)" = "0" ]; then chown postgres "$PGROOT"; fi

if as_postgres "'$BINDIR/pg_isready' -q -h 127.0.0.1 -p $PGPORT"; then
    log "a server already answers on 127.0.0.1:$PGPORT"
else
    if [ ! -f "$PGROOT/data/PG_VERSION" ]; then
        log "initdb $PGROOT/data"
        as_postgres "'$BINDIR/initdb' -D '$PGROOT/data' -U postgres --auth=trust -E UTF8 --no-locale >'$PGROOT/initdb.log' 2>&1"
    fi
    log "starting on 127.0.0.1:$PGPORT (log $PGROOT/server.log)"
    as_postgres "'$BINDIR/pg_ctl' -D '$PGROOT/data' -l '$PGROOT/server.log' -w -t 60 \
        -o \"-p $PGPORT -c listen_addresses=127.0.0.1 -k '$PGROOT' -c fsync=off -c max_connections=50\" start" >&2
fi

if ! as_postgres "psql -h 127.0.0.1 -p $PGPORT -U postgres -Atc \"SELECT 1 FROM pg_database WHERE datname='$DBNAME'\"" | grep -q 1; then
    as_postgres "psql -h 127.0.0.1 -p $PGPORT -U postgres -qc 'CREATE DATABASE $DBNAME'" >&2
fi
echo "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/$DBNAME"
