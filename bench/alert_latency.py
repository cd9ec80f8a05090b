#!/usr/bin/env python3
"""Alert latency of a running `palisade up` (SQLite): for each detection alert, the time from
the server receiving the event that completed the first finding to the alert being stored.

The triggering event is the newest-received of the events the first finding cites (the first
finding's evidence is the alert's first min(20, n) references). Usage:

    python3 bench/alert_latency.py DATA_DIR
"""
import datetime
import json
import sqlite3
import sys


def millis(rfc3339):
    # Python 3.11 reads at most microseconds: drop the digits beyond them.
    date, _, frac = rfc3339.rstrip("Z").partition(".")
    stamp = datetime.datetime.fromisoformat(date + "." + (frac + "000000")[:6] + "+00:00")
    return stamp.timestamp() * 1000


db = sqlite3.connect(f"file:{sys.argv[1]}/palisade.db?mode=ro", uri=True)
latencies = []
for kind, first_seen, evidence in db.execute(
    "SELECT kind, first_seen, evidence FROM alerts WHERE kind <> 'agent_offline' ORDER BY id"
):
    received = []
    for ref in json.loads(evidence)[:20]:
        agent, _, seq = ref.rpartition("/")
        row = db.execute(
            "SELECT received_ms FROM connection_events WHERE agent_id = ? AND seq = ?",
            (agent, int(seq)),
        ).fetchone()
        if row and row[0] <= millis(first_seen):
            received.append(row[0])
    if received:
        latency = (millis(first_seen) - max(received)) / 1000
        latencies.append(latency)
        print(f"{kind:18} {latency:7.3f} s")
if latencies:
    latencies.sort()
    print(f"alerts {len(latencies)}, median {latencies[len(latencies) // 2]:.3f} s, max {latencies[-1]:.3f} s")
