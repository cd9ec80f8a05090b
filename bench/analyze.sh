#!/usr/bin/env bash
# `palisade analyze` beside nDPI's ndpiReader and tshark on the same mixed capture: whole-process
# wall time, throughput and peak memory of each, printed as one table (docs/benchmarks.md).
#
#   bash bench/analyze.sh            # builds the capture under target/bench/, runs each tool 3 times
#   RUNS=5 COPIES=12 bash bench/analyze.sh
#
# The capture is the Ethernet captures of ../shared/corpus/pcap, re-timed to start a minute apart
# (each copy a day later, so that its flows are new ones) and merged in time order into one
# classic pcap of at least 50 MB. The peers
# come from Debian's packages (tshark, libndpi-bin) and are installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
COPIES=${COPIES:-10}
CORPUS=${CORPUS:-../shared/corpus/pcap}
WORK=target/bench
MIXED=$WORK/mixed.pcap

need() { command -v "$1" >/dev/null 2>&1; }
if ! need tshark || ! need ndpiReader || ! need mergecap || ! [ -x /usr/bin/time ]; then
    echo "installing tshark, libndpi-bin and time" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq tshark libndpi-bin time >/dev/null
fi
[ -d "$CORPUS" ] || { echo "no corpus at $CORPUS" >&2; exit 1; }

cargo build --release --locked --quiet
PALISADE=target/release/palisade

mkdir -p "$WORK"
if ! [ -s "$MIXED" ]; then
    parts=()
    for copy in $(seq 0 $((COPIES - 1))); do
        n=0
        for file in "$CORPUS"/foxio-ja4/*.pcap* "$CORPUS"/foxio-ja4/*.cap "$CORPUS"/misc/*.pcap; do
            [ "$(capinfos -E -T -r "$file" 2>/dev/null | cut -f2)" = "ether" ] || continue
            part=$WORK/part-$copy-$n.pcap
            # Each file starts a minute after the previous one, each copy a day after the last,
            # from 2026-01-01; mergecap then interleaves them by time.
            start=$(capinfos -a -S -T -r "$file" 2>/dev/null | cut -f2 | cut -d. -f1) || continue
            shift=$((1767225600 + copy * 86400 + n * 60 - start))
            editcap -F pcap -t "$shift" "$file" "$part" 2>/dev/null || continue
            parts+=("$part")
            n=$((n + 1))
        done
    done
    mergecap -F pcap -w "$MIXED" "${parts[@]}"
    rm -f "$WORK"/part-*.pcap
fi
BYTES=$(stat -c %s "$MIXED")
PACKETS=$(capinfos -c -M -T -r "$MIXED" | cut -f2)

# Runs a command RUNS times; prints the median wall seconds and the largest peak RSS in KiB.
measure() {
    local walls=() rss=0 start end kib
    for _ in $(seq "$RUNS"); do
        start=$EPOCHREALTIME
        /usr/bin/time -o "$WORK/time" -f '%M' "$@" >/dev/null 2>&1 || true
        end=$EPOCHREALTIME
        walls+=("$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.4f", e - s }')")
        kib=$(tail -1 "$WORK/time")
        [ "$kib" -gt "$rss" ] && rss=$kib
    done
    printf '%s %s\n' "$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(((RUNS + 1) / 2))p")" "$rss"
}

row() {
    local name=$1 wall rss
    shift
    read -r wall rss < <(measure "$@")
    awk -v n="$name" -v w="$wall" -v r="$rss" -v b="$BYTES" 'BEGIN {
        t = (w > 0) ? b / w : 0
        printf "| %-40s | %8.3f | %9.1f | %8.2f | %8.1f |\n", n, w, t / 1e6, t * 8 / 1e9, r / 1024 }'
}

echo "capture: $MIXED, $((BYTES / 1000000)) MB, $PACKETS packets; median of $RUNS runs"
echo
echo "| tool                                     |   wall s |      MB/s |   Gbit/s |  peak MB |"
echo "|------------------------------------------|----------|-----------|----------|----------|"
row "palisade analyze (JSON lines)" "$PALISADE" analyze "$MIXED"
row "ndpiReader $(ndpiReader -h 2>&1 | sed -n 's/.*nDPI \([0-9.]*\).*/\1/p' | head -1) (-q, 1 thread)" ndpiReader -q -i "$MIXED"
row "ndpiReader, flows to CSV (-C)" ndpiReader -q -i "$MIXED" -C "$WORK/ndpi-flows.csv"
row "tshark (dns, sni, http host fields)" tshark -r "$MIXED" -T fields \
    -e dns.qry.name -e tls.handshake.extensions_server_name -e http.host
