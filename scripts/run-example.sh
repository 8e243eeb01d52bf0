#!/usr/bin/env bash
# make run: start a worker on its embedded default (embedded NATS, local PostgreSQL), submit the
# example migrations, follow them to the end, show the target's final state, stop the worker.
# Safe to run again: the second time the worker finds every migration applied and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
# The example is self-contained: its own embedded NATS and database, whatever NATS server or
# configuration file the environment names for other workers.
unset CONFITURE_NATS_URL CONFITURE_CONFIG

ADMIN_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
EXAMPLE_DB="${CONFITURE_EXAMPLE_DB:-confiture_example}"
EXAMPLE_URL="${ADMIN_URL%/*}/${EXAMPLE_DB}"
RUN_DIR=".run"
mkdir -p "$RUN_DIR"

if ! command -v psql >/dev/null; then
  echo "make run needs psql (Debian: apt-get install postgresql-client)" >&2
  exit 2
fi
if ! psql "$ADMIN_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then
  echo "PostgreSQL is not reachable at ${ADMIN_URL%%@*}@...; start it or set DATABASE_URL" >&2
  exit 2
fi
if [ "$(psql "$ADMIN_URL" -qtAc "SELECT 1 FROM pg_database WHERE datname = '${EXAMPLE_DB}'")" != "1" ]; then
  psql "$ADMIN_URL" -qc "CREATE DATABASE ${EXAMPLE_DB}"
  echo "created database ${EXAMPLE_DB} for the example"
fi

rm -f "$RUN_DIR/ready"
echo "starting the worker (embedded NATS, queue and target: ${EXAMPLE_DB}); log: $RUN_DIR/worker.log"
bin/worker --database-url "$EXAMPLE_URL" --data-dir "$RUN_DIR/data" --ready-file "$RUN_DIR/ready" \
  --log-format text >"$RUN_DIR/worker.log" 2>&1 &
WORKER_PID=$!
stop_worker() {
  if kill -0 "$WORKER_PID" 2>/dev/null; then
    kill -TERM "$WORKER_PID"
    wait "$WORKER_PID" || true
  fi
}
trap stop_worker EXIT

for _ in $(seq 1 600); do
  [ -s "$RUN_DIR/ready" ] && break
  if ! kill -0 "$WORKER_PID" 2>/dev/null; then
    echo "the worker exited during start-up:" >&2
    tail -n 20 "$RUN_DIR/worker.log" >&2
    exit 1
  fi
  sleep 0.1
done
[ -s "$RUN_DIR/ready" ] || { echo "the worker did not become ready in 60s" >&2; exit 1; }
NATS_URL="$(cat "$RUN_DIR/ready")"
echo "worker ready; NATS at $NATS_URL"
echo

status=0
bin/submit examples/migrations --nats-url "$NATS_URL" --wait --timeout 5m || status=$?

echo
echo "final state of the target (${EXAMPLE_DB}):"
psql "$EXAMPLE_URL" -P pager=off -c \
  "SELECT version, name, complete, phase AS last_phase, left(checksum, 12) AS checksum, applied_at,
          execution_time_ms AS ms, applied_by
   FROM confiture.schema_migrations ORDER BY version"
psql "$EXAMPLE_URL" -P pager=off -c \
  "SELECT (SELECT count(*) FROM customers) AS customers,
          (SELECT count(*) FROM customers WHERE email_domain IS NOT NULL) AS with_domain,
          (SELECT count(*) FROM orders) AS orders,
          (SELECT count(*) FROM page_views WHERE viewed_on IS NOT NULL) AS page_views_filled" 2>/dev/null || true
stop_worker
trap - EXIT
exit "$status"
