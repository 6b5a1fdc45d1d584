#!/usr/bin/env python3
"""Overload: five times the connections wagate serves at once (`server.max_connections`), each
sending as fast as it can, for --duration seconds.

Checks, with a probe opening a fresh connection every 200 ms meanwhile:
  * every probe is answered within 2 s, 200 or a 503 in the route's envelope (never queued);
  * wagate's resident memory stays bounded (peak under baseline + 256 MiB);
  * after the load stops, full service (a 200 within 200 ms) returns within 5 s.

wrk generates the load (installed from Debian's packages when missing). Prints one JSON line of
figures; exits 1 on a violation.
Usage: tests/faults/overload.py --bin target/debug/wagate --backend sqlite|postgres [--duration 30]
"""
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from crash_ingest import PNID, WABA, TestFailure, Wagate, http_request, psql  # noqa: E402

from _support import connect_number, debian_binary, fault_arguments  # noqa: E402

MAX_CONNECTIONS = 50
PATH = "/platform/v1/whatsapp/phone_numbers"


def log(msg):
    print(f"[overload {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wrk(port, key, connections, seconds):
    out = subprocess.run(
        [debian_binary("wrk", log=log), "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-H", f"X-API-Key: {key}", f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True, text=True, timeout=seconds + 60).stdout
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": total,
        "rate": rate,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "timeouts": int(errors.group(4)) if errors else 0,
    }


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def probe(port, key):
    """One request on a fresh connection: (status, seconds, body)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", PATH, headers={"X-API-Key": key})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, time.monotonic() - started, body
    except (OSError, http.client.HTTPException) as e:
        return None, time.monotonic() - started, repr(e).encode()
    finally:
        conn.close()


def main():
    p = fault_arguments(__doc__)
    p.add_argument("--duration", type=int, default=30)
    args = p.parse_args()
    run_id = uuid.uuid4().hex[:8]
    work = tempfile.mkdtemp(prefix=f"wagate-overload-{args.backend}-")
    db = None
    if args.backend == "postgres":
        db = f"wagate_test_overload_{run_id}"
        db_url = f"{args.pg_url.rsplit('/', 1)[0]}/{db}"
    else:
        db_url = f"sqlite://{work}/wagate.db"
    inst = None
    try:
        if db:
            psql(args.pg_url, f"create database {db}")
        inst = Wagate(args.bin, work, db_url)
        inst.env.update(WAGATE__SERVER__MAX_CONNECTIONS=str(MAX_CONNECTIONS))
        inst.start(30)
        key = inst.api_key()
        connect_number(http_request, inst.port, key, PNID, WABA, "overload-token")

        sustainable = wrk(inst.port, key, MAX_CONNECTIONS, 3)
        baseline = rss_mib(inst.proc.pid)
        log(f"sustainable: {sustainable['rate']:.0f} req/s at {MAX_CONNECTIONS} connections; RSS {baseline:.0f} MiB")

        probes, peak = [], [baseline]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                probes.append(probe(inst.port, key))
                peak.append(rss_mib(inst.proc.pid))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        overload = wrk(inst.port, key, MAX_CONNECTIONS * 5, args.duration)
        stop.set()
        watcher.join()
        load_ended = time.monotonic()
        recovery = None
        while time.monotonic() - load_ended < 10:
            status, took, _ = probe(inst.port, key)
            if status == 200 and took < 0.2:
                recovery = time.monotonic() - load_ended
                break
            time.sleep(0.05)

        problems = []
        served = sum(1 for s, _, _ in probes if s == 200)
        refused = 0
        for status, took, body in probes:
            if took > 2:
                problems.append(f"a probe took {took:.2f} s (status {status})")
            if status == 503:
                refused += 1
                try:
                    error = json.loads(body)["error"]
                except (ValueError, KeyError):
                    error = None
                if not isinstance(error, str) or "max_connections" not in error:
                    problems.append(f"a 503 not in the Platform API envelope: {body[:200]!r}")
            elif status != 200:
                problems.append(f"a probe got {status}: {body[:200]!r}")
        slowest = max((t for _, t, _ in probes), default=0.0)
        peak_rss = max(peak)
        if peak_rss > baseline + 256:
            problems.append(f"memory grew from {baseline:.0f} to {peak_rss:.0f} MiB")
        if recovery is None or recovery > 5:
            problems.append(f"full service took {recovery} s after the load stopped")
        figures = {
            "test": "overload", "backend": args.backend, "max_connections": MAX_CONNECTIONS,
            "sustainable_rps": round(sustainable["rate"]), "offered_connections": MAX_CONNECTIONS * 5,
            "requests": overload["requests"], "answered_503": overload["non_2xx"],
            "socket_errors": overload["socket_errors"], "probes": len(probes), "probes_200": served,
            "probes_503": refused, "probe_slowest_s": round(slowest, 3),
            "rss_baseline_mib": round(baseline), "rss_peak_mib": round(peak_rss),
            "recovery_s": None if recovery is None else round(recovery, 2), "errors": len(problems),
        }
        print(json.dumps(figures), flush=True)
        for problem in problems[:10]:
            log(f"FAIL: {problem}")
        return 1 if problems else 0
    except TestFailure as e:
        log(f"FAIL: {e}")
        if inst:
            log(inst.log_tail(20))
        return 1
    finally:
        if inst:
            inst.kill()
        if db:
            try:
                psql(args.pg_url, f"drop database if exists {db} with (force)")
            except TestFailure:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
