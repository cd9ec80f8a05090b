#!/usr/bin/env bash
# TCP connect latency and new connections per second through the endpoint agent, against no
# firewall and against OpenSnitch, in the same run (docs/benchmarks.md, "Endpoint agent").
#
#   sudo bash bench/agent.sh                     # 20,000 sequential connects, then 4 clients for 10 s
#   COUNT=50000 RUNS=3 THREADS=2 PARALLEL_SECONDS=20 sudo bash bench/agent.sh
#   ONLY="none opensnitch" sudo bash bench/agent.sh    # a subset of: none palisade opensnitch
#
# Set-up, made afresh for every configuration and removed after it: a client network namespace
# joined by a veth pair to a server namespace, where `connect_latency serve` accepts and closes
# on 10.201.0.2:7000 and :7001 and on 10.201.0.3 to .5:7000. The firewall runs inside the client
# namespace. The client (crates/agent/examples/connect_latency.rs) makes COUNT sequential
# connects to 10.201.0.2:7000 (connect, then close), then THREADS clients connect for
# PARALLEL_SECONDS, to the four server addresses in turn. Both firewalls have the same two
# rules: the client's executable is allowed, and blocked on port 7001; a refused connect to
# :7001 before the timed runs shows that the firewall holds and identifies the client's
# connections.
#
# For the firewall process: CPU (utime + stime from /proc/PID/stat over the client's run, as a
# share of one core, and per connection), peak resident memory (VmHWM), and per-thread CPU.
# Needs root, iproute2, iptables and, for that configuration, opensnitchd (1.5.x, iptables
# firewall mode). PROFILE=1 records `perf record -g` of the agent during each timed run and
# writes the data and a report to PROFILE_DIR (TMPDIR or /tmp); it slows the agent down.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-20000}
RUNS=${RUNS:-2}
THREADS=${THREADS:-4}
PARALLEL_SECONDS=${PARALLEL_SECONDS:-10}
ONLY=${ONLY:-none palisade opensnitch}
QUEUES=${QUEUES:-2}
PROFILE_DIR=${PROFILE_DIR:-${TMPDIR:-/tmp}}

[ "$(id -u)" = 0 ] || { echo "bench/agent.sh needs root (network namespaces, iptables)" >&2; exit 1; }

TARGET=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked --quiet -p palisade-agent --example connect_latency
CLIENT=$TARGET/release/examples/connect_latency
if [ -z "${PALISADE:-}" ]; then # PALISADE=FILE measures that binary instead
    case " $ONLY " in *" palisade "*) cargo build --release --locked --quiet -p palisade ;; esac
    PALISADE=$TARGET/release/palisade
fi

work=$(mktemp -d)
chmod 755 "$work"
tag=pb$$
C=${tag}c S=${tag}s
CLIENT_IP=10.201.0.1 SERVER_IP=10.201.0.2
# The parallel clients connect to four server addresses in turn: the kernel spreads connections
# over the agent's queues by address pair, so one pair would leave all but one queue idle.
PARALLEL_TARGETS="10.201.0.2:7000 10.201.0.3:7000 10.201.0.4:7000 10.201.0.5:7000"
server_pid= fw_pid=
teardown() {
    if [ -n "$fw_pid" ]; then
        kill -TERM "$fw_pid" 2>/dev/null || true
        wait "$fw_pid" 2>/dev/null || true
        fw_pid=
    fi
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
    ip netns del "$C" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
}
cleanup() {
    teardown
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setup() {
    ip netns add "$C"
    ip netns add "$S"
    ip link add "${tag}v0" type veth peer name "${tag}v1"
    ip link set "${tag}v0" netns "$C"
    ip link set "${tag}v1" netns "$S"
    ip -n "$C" addr add "$CLIENT_IP/24" dev "${tag}v0"
    for ip in 2 3 4 5; do
        ip -n "$S" addr add "10.201.0.$ip/24" dev "${tag}v1"
    done
    for ns in "$C" "$S"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$C" link set "${tag}v0" up
    ip -n "$S" link set "${tag}v1" up
    # The client closes first, so its side keeps TIME_WAIT: give it every port and let connect()
    # reuse a port whose TIME_WAIT is older than a second (the kernel's own rule).
    ip netns exec "$C" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1
    # The server accepts at a real-time priority: the clients connect faster than a starved
    # accepting thread would drain the listen queue (128 deep), and SYNs beyond it are dropped
    # and sent again a second later, which would be counted against the firewall.
    ip netns exec "$S" chrt -f 1 "$CLIENT" serve $PARALLEL_TARGETS "$SERVER_IP:7001" \
        >"$work/server.out" 2>"$work/server.err" &
    server_pid=$!
    for _ in $(seq 100); do grep -q serving "$work/server.out" && return; sleep 0.05; done
    echo "the server did not start: $(cat "$work/server.err")" >&2
    exit 1
}

# The two rules, for each firewall.
cat >"$work/policy.yaml" <<EOF
version: 1
name: bench-agent
default_action: allow
rules:
  - id: client-blocked-port
    action: block
    match: {app_name: connect_latency, dst_port: 7001}
  - id: client
    action: allow
    match: {app_name: connect_latency}
EOF
mkdir -p "$work/osn-etc" "$work/osn-rules"
cat >"$work/osn-etc/default-config.json" <<EOF
{
    "Server": {"Address": "unix://$work/osui.sock", "LogFile": "$work/opensnitch.log"},
    "DefaultAction": "allow",
    "DefaultDuration": "once",
    "InterceptUnknown": false,
    "ProcMonitorMethod": "proc",
    "LogLevel": 2,
    "Firewall": "iptables",
    "Stats": {"MaxEvents": 150, "MaxStats": 25}
}
EOF
echo '{"SystemRules": []}' >"$work/osn-etc/system-fw.json"
cat >"$work/osn-rules/client.json" <<EOF
{
    "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
    "name": "client", "enabled": true, "precedence": false,
    "action": "allow", "duration": "always",
    "operator": {"type": "simple", "operand": "process.path", "sensitive": false,
                 "data": "$CLIENT", "list": []}
}
EOF
cat >"$work/osn-rules/client-blocked-port.json" <<EOF
{
    "created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z",
    "name": "client-blocked-port", "enabled": true, "precedence": true,
    "action": "reject", "duration": "always",
    "operator": {"type": "list", "operand": "list", "sensitive": false, "data": "",
                 "list": [
                     {"type": "simple", "operand": "process.path", "sensitive": false, "data": "$CLIENT"},
                     {"type": "simple", "operand": "dest.port", "sensitive": false, "data": "7001"}
                 ]}
}
EOF

# Starts the firewall in the client namespace and waits until it holds new connections.
start_firewall() { # none|palisade|opensnitch
    case $1 in
    none) ;;
    palisade)
        rm -rf "$work/agent-data"
        ip netns exec "$C" "$PALISADE" agent --policy "$work/policy.yaml" --data "$work/agent-data" \
            --queues "$QUEUES" >"$work/agent.out" 2>"$work/agent.err" &
        fw_pid=$!
        for _ in $(seq 200); do
            grep -q enforcing "$work/agent.out" && ip netns exec "$C" iptables -S PALISADE-OUT >/dev/null 2>&1 && break
            kill -0 "$fw_pid" 2>/dev/null || { echo "the agent stopped: $(cat "$work/agent.err")" >&2; exit 1; }
            sleep 0.05
        done
        ;;
    opensnitch)
        # opensnitchd 1.5 reads /etc/opensnitchd only: this configuration is bound over it in a
        # mount namespace of its own (the host's /etc is not changed).
        ip netns exec "$C" unshare -m --propagation private sh -c \
            "mount --bind '$work/osn-etc' /etc/opensnitchd && exec opensnitchd -rules-path '$work/osn-rules' -process-monitor-method proc -log-file '$work/opensnitch.log'" \
            >"$work/opensnitch.out" 2>&1 &
        fw_pid=$!
        for _ in $(seq 200); do
            ip netns exec "$C" iptables -t mangle -S OUTPUT 2>/dev/null | grep -q NFQUEUE && break
            kill -0 "$fw_pid" 2>/dev/null || { echo "opensnitchd stopped: $(cat "$work/opensnitch.out")" >&2; exit 1; }
            sleep 0.05
        done
        sleep 1 # its rules are loaded after the queue is bound
        ;;
    esac
    if [ "$1" != none ] && ! ip netns exec "$C" iptables-save | grep -q NFQUEUE; then
        echo "$1 installed no NFQUEUE rule" >&2
        exit 1
    fi
}

ticks() { # PID: "utime stime" of the whole process, in clock ticks
    awk '{ print $14, $15 }' "/proc/$1/stat" 2>/dev/null || echo 0 0
}
thread_ticks() { # PID: "name ticks" per thread
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(cat "$t/comm")" "$(awk '{ print $14 + $15 }' "$t/stat")"
    done 2>/dev/null | awk '{ s[$1] += $2 } END { for (n in s) print n, s[n] }' | sort
}
now() { date +%s.%N; }
HZ=$(getconf CLK_TCK)

# Runs the client inside the client namespace; prints its figures and the firewall's CPU.
measure() { # CONFIG MODE ARGS...
    local config=$1 mode=$2
    shift 2
    local t0 t1 c0="0 0" c1="0 0" out
    [ -n "$fw_pid" ] && { c0=$(ticks "$fw_pid"); thread_ticks "$fw_pid" >"$work/threads0"; }
    local perf_pid= profile=$PROFILE_DIR/agent-perf-run$run-$mode
    if [ "${PROFILE:-0}" = 1 ] && [ "$config" = palisade ]; then
        perf record -q -g -o "$profile.data" -p "$fw_pid" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 0.5
    fi
    t0=$(now)
    out=$(ip netns exec "$C" "$CLIENT" connect "$@" 2>"$work/client.err") || {
        echo "the client failed: $(cat "$work/client.err")" >&2
        exit 1
    }
    t1=$(now)
    if [ -n "$perf_pid" ]; then
        kill -INT "$perf_pid"
        wait "$perf_pid" || true
        perf report -i "$profile.data" --children --sort comm,sym -g none --percent-limit 0.3 \
            --stdio 2>/dev/null | grep -v -e '^$' -e '^#' >"$profile.txt" || true
        echo "  perf: $profile.data; report (with children) in $profile.txt" >>"$work/threads.log"
    fi
    local fw="cpu_pct=- cpu_us_per_connect=- user_us=- sys_us=- rss_peak_mb=-"
    if [ -n "$fw_pid" ]; then
        c1=$(ticks "$fw_pid")
        thread_ticks "$fw_pid" >"$work/threads1"
        local hwm
        hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$fw_pid/status")
        fw=$(awk -v c0="$c0" -v c1="$c1" -v hz="$HZ" -v t0="$t0" -v t1="$t1" -v kb="$hwm" -v line="$out" '
            BEGIN {
                n = 0
                if (match(line, /connects=[0-9]+/)) n += substr(line, RSTART + 9, RLENGTH - 9)
                if (match(line, /failures=[0-9]+/)) n += substr(line, RSTART + 9, RLENGTH - 9)
                split(c0, a); split(c1, b)
                user = (b[1] - a[1]) / hz; sys = (b[2] - a[2]) / hz; cpu = user + sys
                printf "cpu_pct=%.0f cpu_us_per_connect=%.1f user_us=%.1f sys_us=%.1f rss_peak_mb=%.1f",
                    100 * cpu / (t1 - t0), 1e6 * cpu / n, 1e6 * user / n, 1e6 * sys / n, kb / 1024
            }')
        echo "  $config $mode threads (CPU ticks of 1/$HZ s): $(join "$work/threads0" "$work/threads1" | awk '$3 > $2 { printf "%s=%d ", $1, $3 - $2 }')" >>"$work/threads.log"
    fi
    # Sockets the client's namespace holds (listed in /proc/net/tcp, which OpenSnitch reads).
    local tw
    tw=$(ip netns exec "$C" ss -tanH state time-wait | wc -l)
    printf 'run=%s %-10s %-10s %s %s time_wait=%s\n' "$run" "$config" "$mode" "$out" "$fw" "$tw" | tee -a "$work/results"
    [ -s "$work/client.err" ] && sed 's/^/    /' "$work/client.err" >&2
    return 0
}

# A connect to the blocked port must fail (refused, or dropped and timed out), and succeed
# without a firewall.
check_intercepting() { # CONFIG
    local out status=0
    out=$(timeout 5 ip netns exec "$C" "$CLIENT" connect "$SERVER_IP:7001" --count 1 --warmup 0 2>/dev/null) || status=$?
    case $1:$status:$out in
    none:0:*"failures=0"*) ;;
    none:*) echo "without a firewall, the client should reach :7001: $out" >&2; exit 1 ;;
    *:0:*"failures=1"* | *:124:*) ;;
    *) echo "$1 did not block the client on :7001, so it does not hold its connections: $out" >&2; exit 1 ;;
    esac
}

queued_packets() { # packets that went to an NFQUEUE rule in the client namespace
    ip netns exec "$C" iptables-save -c 2>/dev/null | awk '/NFQUEUE/ { gsub(/[\[\]]/, "", $1); split($1, a, ":"); n += a[1] } END { print n + 0 }'
}

echo "machine: $(nproc) CPUs, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "opensnitchd: $(opensnitchd -version 2>/dev/null || echo absent); connects: $COUNT sequential, then $THREADS clients for ${PARALLEL_SECONDS}s"
: >"$work/results"
for run in $(seq "$RUNS"); do
    for config in $ONLY; do
        setup
        start_firewall "$config"
        check_intercepting "$config"
        q0=$(queued_packets)
        measure "$config" sequential "$SERVER_IP:7000" --count "$COUNT"
        measure "$config" parallel-$THREADS $PARALLEL_TARGETS --seconds "$PARALLEL_SECONDS" --threads "$THREADS"
        if [ "$config" != none ]; then
            echo "  $config: $(( $(queued_packets) - q0 )) packets queued to it during the timed runs" | tee -a "$work/threads.log"
        fi
        if [ "$config" = palisade ]; then
            kill -TERM "$fw_pid"; wait "$fw_pid" || true; fw_pid=
            echo "  palisade: $(du -sk "$work/agent-data/spool" | cut -f1) KiB spooled" | tee -a "$work/threads.log"
        fi
        teardown
    done
done
echo
echo "| run | firewall | clients | connects | connects/s | p50 µs | p99 µs | p99.9 µs | added p50 / p99 µs | CPU % of a core | CPU µs per connect (user + sys) | peak RSS MB |"
echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk '
    { delete f; for (i = 2; i <= NF; i++) if (split($i, kv, "=") == 2) f[kv[1]] = kv[2]
      run = substr($1, 5); key = run " " $3
      if ($2 == "none") { b50[key] = f["p50_us"]; b99[key] = f["p99_us"] }
      added = (key in b50 && $2 != "none") ? sprintf("%+.0f / %+.0f", f["p50_us"] - b50[key], f["p99_us"] - b99[key]) : "–"
      printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", run, $2, $3, f["connects"], f["per_second"],
          f["p50_us"], f["p99_us"], f["p999_us"], added, f["cpu_pct"],
          f["cpu_us_per_connect"] (f["user_us"] == "-" ? "" : " (" f["user_us"] " + " f["sys_us"] ")"), f["rss_peak_mb"] }
' "$work/results"
echo
echo "per-thread CPU of the firewall processes:"
cat "$work/threads.log"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
