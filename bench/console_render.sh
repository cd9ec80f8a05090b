#!/usr/bin/env bash
# Console render time on a large event table: loads EVENTS connection events (default 10
# million) spread over the last 7 days into a throwaway PostgreSQL schema, fills the roll-ups the
# way ingest keeps them, starts `palisade server` on it, signs a console user in (password and
# TOTP, the code computed here), then requests the dashboard and filtered connection-log pages
# RUNS times each and prints the median and p95 of curl's time_total per page (request to full
# response, on localhost) (docs/benchmarks.md).
#
#   bash bench/console_render.sh                    # 10,000,000 events, 30 requests per page
#   EVENTS=1000000 RUNS=10 bash bench/console_render.sh
#   KEEP=1 bash bench/console_render.sh             # leave the schema for EXPLAIN ANALYZE
#   PALISADE=/path/to/palisade bash bench/console_render.sh   # that binary, no build
#
# PostgreSQL: PALISADE_BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
# The events: 300 agents, 200 applications (a few busy, most quiet), 5,000 domains under 50
# registrable names, a tenth blocked; the agents are in the agents table so the dashboard lists
# them. Loading is plain SQL (generate_series) into the product's own schema, partitions made by
# the product's own function.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-10000000}
RUNS=${RUNS:-30}
PG=${PALISADE_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
TOKEN=bench-console-token-0123456789abcdef
PASSWORD='bench console password 1'

if [ -z "${PALISADE:-}" ]; then
    cargo build --release --locked --quiet
    PALISADE=${CARGO_TARGET_DIR:-$PWD/target}/release/palisade
fi
work=$(mktemp -d)
pid=
schema=bench_console_$$
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    if [ -z "${KEEP:-}" ]; then
        psql -q "$PG" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    else
        echo "schema $schema kept" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

psql -q "$PG" -c "CREATE SCHEMA $schema" >/dev/null
in_schema="$PG?options=-c%20search_path%3D$schema"
sql() { psql -qAt "$PG" -v ON_ERROR_STOP=1 -c "SET search_path = $schema" -c "$1"; }

start() {
    # A fresh file each start: reading the last start's address is a race with the truncation.
    rm -f "$work/out"
    PALISADE_DATABASE_URL=$in_schema PALISADE_BOOTSTRAP_TOKEN=$TOKEN "$PALISADE" server \
        --data "$work/node" --http 127.0.0.1:0 --grpc 127.0.0.1:0 >"$work/out" 2>"$work/err" &
    pid=$!
    until grep -qs '^http: ' "$work/out"; do
        kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
        sleep 0.1
    done
    http=$(sed -n 's/^http: //p' "$work/out")
}

# The server migrates the empty schema; the events go in while it is stopped.
start
kill "$pid"; wait "$pid" || true; pid=

now_ms=$(($(date +%s) * 1000))
span_ms=$((7 * 86400 * 1000))
echo "loading $EVENTS events into $schema" >&2
t0=$(date +%s)
sql "SELECT palisade_event_partition(d)
     FROM generate_series(($now_ms - $span_ms) / 86400000, $now_ms / 86400000) AS d" >/dev/null
sql "INSERT INTO enrollment_tokens (token_hash, group_id, max_uses, expires_at, created_at, created_by)
     VALUES ('bench', (SELECT id FROM agent_groups WHERE name = 'default'), 1000, '2099-01-01T00:00:00Z',
             '2026-01-01T00:00:00Z', 'bench');
     INSERT INTO agents (id, hostname, os, agent_version, group_id, cert_fingerprint, enrolled_at,
                         token_id, last_seen)
     SELECT 'agent-' || lpad(a::TEXT, 4, '0'), 'host-' || a, 'linux', '0.1.0',
            (SELECT id FROM agent_groups WHERE name = 'default'), 'fp-' || a, '2026-01-01T00:00:00Z',
            (SELECT id FROM enrollment_tokens WHERE token_hash = 'bench'),
            to_char(now() AT TIME ZONE 'UTC' - (a % 3) * interval '10 minutes', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
     FROM generate_series(0, 299) AS a"
# The event indexes are dropped while the rows go in and made again after (by sorting, much
# faster than row by row); the same definitions, so the table ends as the product made it.
indexes=$(sql "SELECT string_agg(replace(indexdef, ' ON ONLY ', ' ON '), '; ') FROM pg_indexes
               WHERE schemaname = '$schema' AND tablename = 'connection_events'")
sql "$(sql "SELECT string_agg(format('DROP INDEX %I', indexname), '; ') FROM pg_indexes
            WHERE schemaname = '$schema' AND tablename = 'connection_events'")"
# Ten slices, so no single statement holds all the rows' WAL at once.
slices=10
per=$(( (EVENTS + slices - 1) / slices ))
for s in $(seq 0 $((slices - 1))); do
    lo=$((s * per + 1)); hi=$(( (s + 1) * per < EVENTS ? (s + 1) * per : EVENTS ))
    sql "INSERT INTO connection_events (agent_id, seq, time_ms, received_ms, app_path, app_name,
             user_name, uid, domain, src_ip, src_ip_key, src_port, dst_ip, dst_ip_key, dst_port,
             protocol, direction, pid, sni, action, verdict, rule, policy_version, bytes_out,
             bytes_in, packets_out, packets_in, duration_ms)
         SELECT 'agent-' || lpad(agent::TEXT, 4, '0'), g, t, t + 500,
             '/usr/bin/app-' || app, 'app-' || app, 'user' || (agent % 7), 1000 + agent % 7,
             CASE WHEN dom >= 0 THEN 'd' || dom || '.site' || (dom % 50) || '.example' END,
             '10.1.' || (agent / 256) || '.' || (agent % 256),
             '00000000000000000000ffff0a01' || lpad(to_hex(agent), 4, '0'),
             30000 + g % 30000,
             '203.0.' || (ip / 256) || '.' || (ip % 256),
             '00000000000000000000ffffcb00' || lpad(to_hex(ip), 4, '0'),
             CASE WHEN g % 10 = 0 THEN 80 ELSE 443 END, 'tcp', 'outbound', 1000 + app,
             CASE WHEN dom >= 0 THEN 'd' || dom || '.site' || (dom % 50) || '.example' END,
             CASE WHEN blocked THEN 'block' ELSE 'allow' END,
             CASE WHEN blocked THEN 'block' ELSE 'allow' END,
             CASE WHEN blocked THEN 'deny-' || (dom % 20) WHEN g % 3 = 0 THEN 'allow-' || (app % 30) END,
             1, 1000 + g % 5000, 5000 + g % 20000, 10, 12, g % 60000
         FROM (SELECT g,
                      $now_ms - (g::BIGINT * $span_ms / $EVENTS) - 1 AS t,
                      (g * 7919) % 300 AS agent,
                      -- Skewed: app-0 busiest, most of the 200 quiet.
                      floor(200 * power(((g * 104729) % 100003) / 100003.0, 3))::INT AS app,
                      -- A twentieth without a domain (-1: by address only).
                      CASE WHEN g % 20 = 7 THEN -1
                           ELSE floor(5000 * power(((g * 15485863) % 999983) / 999983.0, 2))::INT END AS dom,
                      (g * 31) % 65536 AS ip,
                      (g * 2654435761) % 10 = 3 AS blocked
               FROM generate_series($lo::BIGINT, $hi::BIGINT) AS g) AS e"
    echo "  $hi" >&2
done
psql -qAt "$PG" -v ON_ERROR_STOP=1 -c "SET search_path = $schema" \
    -c "SET maintenance_work_mem = '512MB'" -c "$indexes"
# The roll-ups, as ingest keeps them (the same statements migration 0010 fills them with).
sed -n '/^-- The events stored before this migration/,$p' \
    crates/server/migrations/postgres/0010_event_rollups.sql >"$work/rollups.sql"
psql -qAt "$PG" -v ON_ERROR_STOP=1 -c "SET search_path = $schema" -f "$work/rollups.sql"
sql "ANALYZE"
echo "loaded in $(($(date +%s) - t0)) s: $(sql "SELECT COUNT(*) FROM connection_events") events," \
    "$(sql "SELECT pg_size_pretty(SUM(pg_total_relation_size(c.oid))) FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'connection_events'::regclass")" \
    "with indexes; roll-up rows: $(sql "SELECT (SELECT COUNT(*) FROM event_minutes) || ' minutes, '
        || (SELECT COUNT(*) FROM event_minute_apps) || ' minute-apps, '
        || (SELECT COUNT(*) FROM event_minute_blocked) || ' minute-destinations'")" >&2

start
curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\": \"bench\", \"role\": \"viewer\", \"password\": \"$PASSWORD\"}" \
    "$http/api/v1/users" >/dev/null
jar=$work/cookies
curl -fsS -c "$jar" -o /dev/null --data-urlencode name=bench --data-urlencode "password=$PASSWORD" "$http/login"
page=$(curl -fsS -b "$jar" -c "$jar" "$http/login/second-factor")
secret=$(sed -n 's/.*id="totp-secret">\([A-Z2-7]*\)<.*/\1/p' <<<"$page" | head -1)
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -1)
code=$(python3 - "$secret" <<'EOF'
import base64, hmac, struct, sys, time
secret = sys.argv[1]
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
digest = hmac.new(key, struct.pack(">q", int(time.time()) // 30), "sha1").digest()
offset = digest[-1] & 0x0F
value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
print(f"{value % 1000000:06d}")
EOF
)
location=$(curl -fsS -b "$jar" -c "$jar" -o /dev/null -w '%{redirect_url}' \
    --data-urlencode "code=$code" --data-urlencode "csrf=$csrf" "$http/login/second-factor")
case $location in */console) ;; *) echo "sign-in failed (went to $location)" >&2; exit 1 ;; esac

hour_ago=$(date -u -d '-3 days' +%Y-%m-%dT%H:00:00Z)
hour_end=$(date -u -d '-3 days +1 hour' +%Y-%m-%dT%H:00:00Z)
pages=(
    "/console"
    "/console/events"
    "/console/events?app=app-3"
    "/console/events?app=app-150"
    "/console/events?app=/usr/bin/app-150"
    "/console/events?domain=d4000.site0.example"
    "/console/events?domain=*.site7.example"
    "/console/events?agent=agent-0042"
    "/console/events?action=block"
    "/console/events?ip=203.0.7.0/24"
    "/console/events?ip=10.1.0.0/16"
    "/console/events?from=$hour_ago&to=$hour_end"
    "/console/events?app=!app-0"
    "/console/events?action=block&domain=!*.site7.example"
    "/console/events?app=no-such-app"
)
# Filters that match few or no events on columns without an index of their own: the page reads
# the time index newest first until it has a page or the table ends. RARE_RUNS requests each.
rare=(
    "/console/events?ip=198.51.100.0/24"
    "/console/events?user=nobody"
    "/console/events?domain=*.no-such.example"
    "/console/events?rule=no-such-rule"
)
measure() { # RUNS PAGE
    local runs=$1 p=$2 status
    status=$(curl -sS -b "$jar" -o "$work/page.html" -w '%{http_code}' "$http$p")
    [ "$status" = 200 ] || { echo "$p: HTTP $status" >&2; head -c 400 "$work/page.html" >&2; exit 1; }
    for _ in $(seq "$runs"); do
        curl -sS -b "$jar" -o /dev/null -w '%{time_total}\n' "$http$p"
    done | python3 -c '
import statistics, sys
t = sorted(float(x) * 1000 for x in sys.stdin)
p95 = t[min(len(t) - 1, round(0.95 * (len(t) - 1)))]
print(f"{sys.argv[1]:<60} {statistics.median(t):8.1f}ms {p95:8.1f}ms {t[-1]:8.1f}ms")' "$p"
}
printf '%-60s %10s %10s %10s\n' page median p95 max
for p in "${pages[@]}"; do measure "$RUNS" "$p"; done
for p in "${rare[@]}"; do measure "${RARE_RUNS:-3}" "$p"; done
