#!/usr/bin/env bash
# Smoke test: a real `apm serve` on a throw-away embedded PostgreSQL, exercised by the Postman
# collection (newman). Exits non-zero when the server does not start or any assertion fails.
# The server is always stopped by its PID, also on failure or Ctrl-C.
#
#   scripts/smoke.sh                 # what `make smoke` runs
#   APM=/path/to/apm scripts/smoke.sh
#   SMOKE_DATABASE_URL=postgresql://... APM_BACKEND=timescale scripts/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
APM=${APM:-.venv/bin/apm}
START_TIMEOUT=${SMOKE_START_TIMEOUT:-120}
# Must match max_body_bytes in postman/apm.postman_environment.json (the 413 case).
MAX_BODY_BYTES=131072

workdir=$(mktemp -d -t apm-smoke-XXXXXX)
pid=""

stop_server() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "smoke: server $pid did not stop; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    fi
    pid=""
}

finish() {
    status=$?
    trap - EXIT INT TERM
    stop_server
    if [ "$status" -ne 0 ] && [ -f "$workdir/server.log" ]; then
        echo "smoke: last lines of the server log:" >&2
        tail -n 40 "$workdir/server.log" >&2 || true
    fi
    rm -rf "$workdir"
    exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# newman, pinned by postman/package-lock.json; reinstalled only when the lock file changes.
lock_hash=$(sha256sum postman/package-lock.json | cut -d' ' -f1)
stamp=postman/node_modules/.smoke-installed
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_hash" ]; then
    (cd postman && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_hash" >"$stamp"
fi

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base_url="http://127.0.0.1:$port"

# A fresh embedded database, whatever the caller's environment points at; or the database
# SMOKE_DATABASE_URL names (e.g. a TimescaleDB server), migrated by `apm serve`.
env -u APM_DATABASE_URL -u POSTGRES_HOST -u APM_INGEST_KEYS -u APM_INGEST_KEYS_FILE \
    -u APM_READ_KEYS -u APM_READ_KEYS_FILE \
    ${SMOKE_DATABASE_URL:+APM_DATABASE_URL="$SMOKE_DATABASE_URL"} \
    APM_DATA_DIR="$workdir/data" APM_MAX_BODY_BYTES="$MAX_BODY_BYTES" APM_LOG_FORMAT=json \
    "$APM" serve --host 127.0.0.1 --port "$port" >"$workdir/server.log" 2>&1 &
pid=$!
echo "smoke: apm serve (pid $pid) on $base_url"

"$PYTHON" - "$base_url" "$START_TIMEOUT" "$pid" <<'EOF'
import os, sys, time, urllib.request

url, timeout, pid = sys.argv[1] + "/api/health/?db=1", float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + timeout
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("smoke: the server exited before answering")
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"smoke: no healthy answer from {url} within {timeout:g} s")
    time.sleep(0.3)
EOF

postman/node_modules/.bin/newman run postman/apm.postman_collection.json \
    --environment postman/apm.postman_environment.json \
    --env-var "base_url=$base_url" \
    --working-dir postman \
    --reporters cli \
    --reporter-cli-no-banner \
    --color off

stop_server
echo "smoke: passed"
