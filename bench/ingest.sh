#!/usr/bin/env bash
# Event ingestion: simulated agents on this machine send batches as fast as the server
# acknowledges them (each batch stored and committed before its acknowledgement), into SQLite and
# into PostgreSQL. Prints events per second and acknowledgement latencies (docs/benchmarks.md).
#
#   bash bench/ingest.sh                       # 8 endpoints, batches of 1000, 20 s per back end
#   ENDPOINTS=16 BATCH=2000 SECONDS_EACH=30 bash bench/ingest.sh
#
# PostgreSQL: PALISADE_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test); a
# throwaway schema is created and dropped. The third run is PostgreSQL with the batches going
# through RabbitMQ (as on several nodes): a throwaway virtual host on the local broker, made and
# deleted with rabbitmqctl. ONLY=sqlite|postgres|rabbitmq runs one of the three.
set -euo pipefail
cd "$(dirname "$0")/.."

ENDPOINTS=${ENDPOINTS:-8}
BATCH=${BATCH:-1000}
SECONDS_EACH=${SECONDS_EACH:-20}
PG=${PALISADE_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
TOKEN=bench-ingest-token-0123456789abcdef

cargo build --release --locked --quiet
PALISADE=${CARGO_TARGET_DIR:-$PWD/target}/release/palisade
work=$(mktemp -d)
pid=
schema=bench_ingest_$$
vhost=palisade-bench-$$
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    psql -q "$PG" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

run() { # NAME DATABASE_URL [AMQP_URL]
    local backend=$1 url=$2 amqp=${3:-} out=$work/$1.out
    PALISADE_DATABASE_URL=$url PALISADE_AMQP_URL=$amqp PALISADE_BOOTSTRAP_TOKEN=$TOKEN "$PALISADE" server \
        --data "$work/$backend" --http 127.0.0.1:0 --grpc 127.0.0.1:0 >"$out" 2>"$work/$backend.err" &
    pid=$!
    until grep -q '^ca: ' "$out"; do sleep 0.1; done
    local http grpc ca enroll
    http=$(sed -n 's/^http: //p' "$out")
    grpc=$(sed -n 's/^grpc: //p' "$out")
    ca=$(sed -n 's/^ca: //p' "$out")
    enroll=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"max_uses\": $ENDPOINTS, \"expires_in_seconds\": 3600}" \
        "$http/api/v1/enrollment-tokens" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    local result
    if ! result=$("$PALISADE" simulate --server "$grpc" --ca "$ca" --token "$enroll" \
        --endpoints "$ENDPOINTS" --batch "$BATCH" --load "$SECONDS_EACH" 2>"$work/sim.err"); then
        echo "$backend: batches failed: $result" >&2
        grep -m3 WARN "$work/sim.err" >&2 || true
        grep -m3 -E 'WARN|ERROR' "$work/$backend.err" >&2 || true
    fi
    local stored
    stored=$(curl -fsS "$http/metrics" | sed -n 's/^palisade_events_total{outcome="stored"} //p')
    kill "$pid"; wait "$pid" || true; pid=
    printf '%-10s %s stored %s\n' "$backend" "$result" "$stored"
}

psql -q "$PG" -c "CREATE SCHEMA $schema" >/dev/null
in_schema="$PG?options=-c%20search_path%3D$schema"
case ${ONLY:-all} in all|sqlite) run sqlite "" ;; esac
case ${ONLY:-all} in all|postgres) run postgres "$in_schema" ;; esac
case ${ONLY:-all} in all|rabbitmq)
    rabbitmqctl -q add_vhost "$vhost" >/dev/null
    rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
    run postgres+rabbitmq "$in_schema" "amqp://guest:guest@127.0.0.1:5672/$vhost" ;;
esac
