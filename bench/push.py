#!/usr/bin/env python3
"""Policy push: API call -> every simulated agent has the new version, on one node.

Starts `palisade server` (SQLite) and `palisade simulate --print-policies` with N endpoints on
this machine, waits until all are online, then (1) assigns a policy to their group and (2)
creates a new version of it, each time timing from just before the API call until each endpoint
printed that it received the version. Also reports the server's memory per connected agent
(resident set before and after the fleet connected). docs/benchmarks.md has the results.

    python3 bench/push.py 1000 10000       # after: cargo build --release --locked
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

PALISADE = os.path.join(os.path.dirname(__file__), "..", "target", "release", "palisade")
TOKEN = "bench-push-token-0123456789abcdef"
POLICY = "version: 1\nname: push\ndefault_action: allow\nrules:\n  - id: r{n}\n    action: block\n    match:\n      dst_port: {n}\n"


def api(base, method, path, body=None):
    request = urllib.request.Request(base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + TOKEN,
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS:"))


def read_addresses(process):
    found = {}
    while len(found) < 3:
        line = process.stdout.readline()
        if not line:
            sys.exit("the server exited")
        key, _, value = line.strip().partition(": ")
        if key in ("http", "grpc", "ca"):
            found[key] = value
    return found


def wait_receipts(lines, n, version, started):
    """Latencies (s) of the first n receipts of `version`."""
    latencies = []
    while len(latencies) < n:
        line = lines.readline()
        if not line:
            sys.exit("the fleet exited")
        parts = line.split()
        if parts[:1] == ["policy"] and parts[2] == str(version):
            at = datetime.fromisoformat(parts[4].replace("Z", "+00:00")).timestamp()
            latencies.append(at - started)
    return sorted(latencies)


def summary(latencies):
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * (len(latencies) - 1)))]
    return f"p50 {pick(0.5) * 1000:7.1f} ms  p99 {pick(0.99) * 1000:7.1f} ms  max {latencies[-1] * 1000:7.1f} ms"


def run(n):
    with tempfile.TemporaryDirectory() as work:
        env = dict(os.environ, PALISADE_BOOTSTRAP_TOKEN=TOKEN)
        env.pop("PALISADE_DATABASE_URL", None)
        server = subprocess.Popen([PALISADE, "server", "--data", work + "/data", "--http", "127.0.0.1:0",
                                   "--grpc", "127.0.0.1:0"], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=open(work + "/server.log", "w"))
        fleet = None
        try:
            where = read_addresses(server)
            base = where["http"]
            time.sleep(1)
            before = rss_kib(server.pid)
            enroll = api(base, "POST", "/api/v1/enrollment-tokens", {"max_uses": n, "expires_in_seconds": 3600})
            fleet = subprocess.Popen([PALISADE, "simulate", "--server", where["grpc"], "--ca", where["ca"],
                                      "--token", enroll["token"], "--endpoints", str(n), "--print-policies"],
                                     text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            connect_start = time.time()
            while sum(a["status"] == "online" for a in api(base, "GET", "/api/v1/agents")) < n:
                time.sleep(0.5)
            connected = time.time() - connect_start
            time.sleep(2)
            after = rss_kib(server.pid)
            policy = api(base, "POST", "/api/v1/policies", {"name": "push", "format": "yaml", "source": POLICY.format(n=1)})
            started = time.time()
            api(base, "PUT", "/api/v1/groups/default/policy", {"policy_id": policy["policy_id"]})
            assign = wait_receipts(fleet.stdout, n, 1, started)
            started = time.time()
            api(base, "POST", "/api/v1/policies", {"name": "push", "format": "yaml", "source": POLICY.format(n=2)})
            update = wait_receipts(fleet.stdout, n, 2, started)
            print(f"{n:>6} agents  connected in {connected:5.1f} s  server memory {(after - before) / n:6.1f} KiB/agent")
            print(f"        assign  -> all agents: {summary(assign)}")
            print(f"        new version -> all agents: {summary(update)}")
        except Exception:
            os.system(f"grep -m5 -E 'WARN|ERROR' {work}/server.log >&2")
            raise
        finally:
            for p in (fleet, server):
                if p:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    for count in [int(a) for a in sys.argv[1:]] or [1000]:
        run(count)
