#!/usr/bin/env bash
# `make cluster`: the scale-out setup on one machine — Redis + PostgreSQL under var/cluster/,
# migrated, and two Daphne workers on 127.0.0.1:8001 and :8002 sharing them. Ctrl-C stops all.
#
# Ports and paths can be changed: CLUSTER_DIR, CLUSTER_PG_PORT, CLUSTER_REDIS_PORT,
# CLUSTER_PORTS ("8001 8002"). Data persists in CLUSTER_DIR between runs.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${CLUSTER_DIR:-$ROOT/var/cluster}
PG_PORT=${CLUSTER_PG_PORT:-5433}
REDIS_PORT=${CLUSTER_REDIS_PORT:-6380}
PORTS=${CLUSTER_PORTS:-"8001 8002"}
BIN=$ROOT/.venv/bin
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

mkdir -p "$DIR/redis" "$DIR/pg" "$DIR/logs"
PIDS=()

# initdb refuses to run as root: as root the cluster belongs to the postgres user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
    trap - INT TERM EXIT
    echo "stopping the cluster…"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # runuser does not pass signals on to postgres: pg_ctl's fast mode stops it.
    if [ -f "$DIR/pg/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$DIR/pg/data" stop -m fast >/dev/null 2>&1 || true
    fi
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

wait_for() {  # wait_for <what> <command…>: poll for up to 30 s
    local what=$1; shift
    for _ in $(seq 300); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "$what did not come up; logs in $DIR/logs" >&2
    exit 1
}

# ---------------------------------------------------------------- Redis
/usr/bin/redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$DIR/redis" >"$DIR/logs/redis.log" 2>&1 &
PIDS+=($!)
wait_for redis /usr/bin/redis-cli -p "$REDIS_PORT" ping

# ---------------------------------------------------------------- PostgreSQL
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$DIR/pg"
if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres -A trust -E UTF8 --no-instructions \
        >"$DIR/logs/initdb.log"
fi
as_pg "$PG_BIN/postgres" -D "$DIR/pg/data" -h 127.0.0.1 -p "$PG_PORT" -k "$DIR/pg" \
    -c max_connections=200 >"$DIR/logs/postgres.log" 2>&1 &
PIDS+=($!)
wait_for postgres "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
if ! as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'dispatch'" | grep -q 1; then
    as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres dispatch
fi

export DATABASE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/dispatch"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
"$BIN/python" manage.py migrate --noinput >"$DIR/logs/migrate.log"

# ---------------------------------------------------------------- the workers
for port in $PORTS; do
    "$BIN/python" -m dispatch_site.serve -b 127.0.0.1 -p "$port" dispatch_site.asgi:application \
        >"$DIR/logs/daphne-$port.log" 2>&1 &
    PIDS+=($!)
done
for port in $PORTS; do
    wait_for "daphne on :$port" curl -sf "http://127.0.0.1:$port/health"
done

echo "Dispatch cluster is up (Ctrl-C stops it):"
echo "  DATABASE_URL=$DATABASE_URL"
echo "  REDIS_URL=$REDIS_URL"
for port in $PORTS; do echo "  worker: http://127.0.0.1:$port/"; done
echo "  logs: $DIR/logs/"
wait
