#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tune tests (tests/test_tune.py), on loopback only.
#
#   eval "$(bash scripts/ci_postgres.sh start)"   # exports NEUNEU_TEST_POSTGRES_URL
#   python -m pytest tests/test_tune.py
#   bash scripts/ci_postgres.sh stop              # stops the server and deletes its files
#
# `start` installs Debian's postgresql package when no server binaries are present (CI machines
# are fresh; it needs root), creates a cluster in $NEUNEU_PG_DIR (default /tmp/neuneu-pg) owned by
# the `postgres` user when run as root (the server refuses to run as root), listening on
# 127.0.0.1 and a free port only, with trust authentication (nothing else can reach it), creates
# the database `neuneu_test`, writes its SQLAlchemy URL to $NEUNEU_PG_DIR/url and prints an
# `export NEUNEU_TEST_POSTGRES_URL=...` line on stdout (everything else goes to stderr).
# The Python driver comes from the project's extras (`pip install -e ".[dev]"`): psycopg.
set -euo pipefail

DIR="${NEUNEU_PG_DIR:-/tmp/neuneu-pg}"
DB=neuneu_test
log() { echo "ci_postgres: $*" >&2; }

find_bin() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$bin" ] && [ -x "$bin/initdb" ] && echo "$bin"
}

as_owner() {  # run a server command as the cluster owner
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_server() {
    [ "$(id -u)" -eq 0 ] || { log "PostgreSQL is not installed and this is not root: apt-get install postgresql"; exit 1; }
    log "installing PostgreSQL (Debian package)"
    # Keep the package from starting its own default cluster: we run a private one below.
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
    fi
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    [ "$added" -eq 1 ] && rm -f "$policy"
    return 0
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local bin port url
    bin=$(find_bin) || { install_server; bin=$(find_bin); }
    if [ -f "$DIR/url" ] && as_owner "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        url=$(cat "$DIR/url")
        log "already running: $url"
        echo "export NEUNEU_TEST_POSTGRES_URL='$url'"
        return 0
    fi
    rm -rf "$DIR"
    mkdir -p "$DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$DIR"
    port=$(free_port)
    as_owner "$bin/initdb" -D "$DIR/data" -U postgres --auth=trust --no-sync -E UTF8 >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
    # Loopback only; the Unix socket in our own folder (the Debian default may not exist);
    # durability off: the data is thrown away.
    as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$DIR -c fsync=off -c max_connections=50" \
        start >&2 || { cat "$DIR/server.log" >&2; exit 1; }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$DB"
    url="postgresql+psycopg://postgres@127.0.0.1:$port/$DB"
    echo "$url" >"$DIR/url"
    python3 -c 'import psycopg' 2>/dev/null || log "warning: the Python driver psycopg is missing (pip install 'psycopg[binary]')"
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, database $DB"
    echo "export NEUNEU_TEST_POSTGRES_URL='$url'"
}

stop() {
    local bin
    bin=$(find_bin || true)
    if [ -n "$bin" ] && [ -d "$DIR/data" ]; then
        as_owner "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$DIR"
    log "stopped; removed $DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
