#!/usr/bin/env python3
"""nginx in front of two wagate instances on one PostgreSQL (deploy/nginx.conf, rewritten for
loopback as scripts/topology.sh does).

(a) Kept-alive connections left idle just past 10 s and just past 60 s, straight to an instance
    and through nginx: every next request is answered on them (wagate's idle keep-alive timeout,
    75 s, outlives nginx's 60 s and is not the 10 s header timeout).
(b) A rolling restart (SIGTERM A, start A, SIGTERM B, start B) under ~500 requests/s through nginx:
    Platform API reads and Meta-signed webhooks. Every request answered 2xx (0 failed), every
    acknowledged webhook stored exactly once.

Prints one JSON line of figures; exits 1 on any failed request, loss or duplicate.
Usage: tests/faults/nginx_lb.py --bin target/debug/wagate --backend postgres
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from crash_ingest import (PNID, WABA, TestFailure, Wagate, envelope, free_port,  # noqa: E402
                          http_request, psql)

from _support import connect_number, debian_binary, fault_arguments, skipped_unless  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def log(msg):
    print(f"[nginx_lb {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def nginx_config(work, port_a, port_b, port_lb):
    with open(os.path.join(REPO, "deploy", "nginx.conf")) as f:
        text = f.read()
    tmp = os.path.join(work, "tmp")
    os.makedirs(tmp, exist_ok=True)
    temps = "".join(f"\n    {k}_temp_path {tmp}/{k};" for k in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("resolver "):
            continue
        if stripped.startswith("server wagate-a:8080 resolve "):
            line = line.replace("server wagate-a:8080 resolve ", f"server 127.0.0.1:{port_a} ")
        elif stripped.startswith("server wagate-b:8080 resolve "):
            line = line.replace("server wagate-b:8080 resolve ", f"server 127.0.0.1:{port_b} ")
        elif stripped == "listen 8080;":
            line = line.replace("listen 8080;", f"listen 127.0.0.1:{port_lb};")
        elif stripped == "http {":
            line = line + temps
        out.append(line)
    conf = "\n".join(out) + "\n"
    for want in (f"127.0.0.1:{port_a} ", f"127.0.0.1:{port_b} ", f"listen 127.0.0.1:{port_lb};"):
        if want not in conf:
            raise TestFailure(f"deploy/nginx.conf no longer has the lines this test rewrites ({want})")
    path = os.path.join(work, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    if os.geteuid() == 0:
        os.chmod(work, 0o711)
        os.chmod(tmp, 0o1777)
    return path


def start_instance(binary, work, db_url, name):
    folder = os.path.join(work, name)
    os.makedirs(folder, exist_ok=True)
    inst = Wagate(binary, folder, db_url)
    inst.env.update(WAGATE__SERVER__DRAIN_DELAY="2s", WAGATE__SERVER__SHUTDOWN_GRACE="10s",
                    WAGATE__LOG__LEVEL="info")
    inst.start(30)
    return inst


def terminate(inst, limit=20):
    inst.proc.send_signal(signal.SIGTERM)
    try:
        inst.proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"instance on port {inst.port} did not exit within {limit} s of SIGTERM")


class Idle(threading.Thread):
    """One kept-alive connection: a request, then idle `gaps` seconds each before the next."""

    def __init__(self, port, gaps, key, label):
        super().__init__(daemon=True)
        self.port, self.gaps, self.key, self.label = port, gaps, key, label
        self.errors = []
        self.requests = 0

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for gap in [0] + list(self.gaps):
                time.sleep(gap)
                try:
                    conn.request("GET", "/platform/v1/whatsapp/phone_numbers", headers={"X-API-Key": self.key})
                    resp = conn.getresponse()
                    resp.read()
                    self.requests += 1
                    if resp.status != 200:
                        self.errors.append(f"{self.label}: after {gap} s idle: HTTP {resp.status}")
                except (OSError, http.client.HTTPException) as e:
                    self.errors.append(f"{self.label}: after {gap} s idle: {e!r}")
                    conn.close()
        finally:
            conn.close()


class Load(threading.Thread):
    """Paced requests through nginx on one kept-alive connection (reopened only when nginx
    closes it, which is never a failure by itself)."""

    def __init__(self, index, port, rate, key, stop, run_id):
        super().__init__(daemon=True)
        self.index, self.port, self.rate, self.key, self.stop, self.run_id = index, port, rate, key, stop, run_id
        self.requests = 0
        self.failures = []
        self.acknowledged = []

    def one(self, conn, seq):
        if seq % 10 == 0:
            wamid = f"wamid.lb.{self.run_id}.{self.index}.{seq}"
            body, sig = envelope(wamid, f"1555{self.index:03d}{seq % 1000:04d}", seq)
            conn.request("POST", "/webhooks/whatsapp", body=body,
                         headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig})
        else:
            wamid = None
            conn.request("GET", "/platform/v1/whatsapp/phone_numbers", headers={"X-API-Key": self.key})
        resp = conn.getresponse()
        resp.read()
        return resp.status, wamid

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        period = 1.0 / self.rate
        next_at = time.monotonic()
        seq = 0
        while not self.stop.is_set():
            seq += 1
            try:
                status, wamid = self.one(conn, seq)
                self.requests += 1
                if 200 <= status < 300:
                    if wamid:
                        self.acknowledged.append(wamid)
                else:
                    self.failures.append(f"HTTP {status}")
            except (OSError, http.client.HTTPException) as e:
                self.requests += 1
                self.failures.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()


def main():
    p = fault_arguments(__doc__)
    p.add_argument("--rate", type=float, default=500, help="requests/s through nginx during (b)")
    p.add_argument("--gaps", default="10.5,61", help="idle gaps (s) for (a)")
    args = p.parse_args()
    if skipped_unless(args, "postgres", "nginx_lb", "two instances share PostgreSQL only"):
        return 0

    run_id = uuid.uuid4().hex[:8]
    work = tempfile.mkdtemp(prefix="wagate-nginx-lb-")
    db = f"wagate_test_lb_{run_id}"
    db_url = f"{args.pg_url.rsplit('/', 1)[0]}/{db}"
    instances, nginx, keep = [], None, False
    figures = {"test": "nginx_lb", "backend": "postgres"}
    try:
        psql(args.pg_url, f"create database {db}")
        a = start_instance(args.bin, work, db_url, "a")
        key = a.api_key()
        b = start_instance(args.bin, work, db_url, "b")
        instances = [a, b]
        connect_number(http_request, a.port, key, PNID, WABA, "lb-token")
        port_lb = free_port()
        conf = nginx_config(os.path.join(work, "nginx"), a.port, b.port, port_lb)
        nginx = subprocess.Popen(
            [debian_binary("nginx", log=log), "-p", os.path.dirname(conf), "-e", os.path.join(os.path.dirname(conf), "error.log"),
             "-c", conf, "-g", f"daemon off; pid {os.path.dirname(conf)}/nginx.pid;"],
            stdout=open(os.path.join(os.path.dirname(conf), "access.log"), "wb"),
            stderr=open(os.path.join(os.path.dirname(conf), "stderr.log"), "wb"))
        for _ in range(100):
            try:
                if http_request(port_lb, "GET", "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise TestFailure("nginx did not come up")
        time.sleep(1.5)  # B learns of the number (change feed)

        # (a) idle kept-alive connections.
        gaps = [float(g) for g in args.gaps.split(",")]
        log(f"(a) kept-alive connections idle {gaps} s, direct and through nginx")
        idle = [Idle(a.port, gaps, key, "direct to A"), Idle(b.port, gaps, key, "direct to B"),
                Idle(port_lb, gaps, key, "through nginx")]
        # Light traffic meanwhile, so nginx keeps upstream connections warm and then idle.
        for t in idle:
            t.start()
        for t in idle:
            t.join()
        keep_errors = [e for t in idle for e in t.errors]
        figures["keepalive_requests"] = sum(t.requests for t in idle)
        figures["keepalive_errors"] = len(keep_errors)

        # (b) rolling restart under load.
        log(f"(b) rolling restart under {args.rate:.0f} req/s through nginx")
        stop = threading.Event()
        threads = 10
        load = [Load(i, port_lb, args.rate / threads, key, stop, run_id) for i in range(threads)]
        load_started = time.monotonic()
        for t in load:
            t.start()
        time.sleep(3)
        restarts = 0
        for inst in instances:
            terminate(inst)
            inst.start(30)
            restarts += 1
            # nginx took the stopped instance out for fail_timeout (10 s, deploy/nginx.conf)
            # after its refused connections: stopping the other one sooner leaves none live.
            time.sleep(11)
        time.sleep(2)
        stop.set()
        for t in load:
            t.join(timeout=60)
        load_seconds = time.monotonic() - load_started
        requests = sum(t.requests for t in load)
        failures = [f for t in load for f in t.failures]
        acknowledged = [w for t in load for w in t.acknowledged]
        rows = psql(db_url, "select wamid, count(*) from messages where wamid like 'wamid.lb.%' group by wamid")
        stored = {}
        for line in rows.splitlines():
            wamid, count = line.split("|")
            stored[wamid] = int(count)
        lost = [w for w in acknowledged if w not in stored]
        duplicates = sum(c - 1 for c in stored.values() if c > 1)
        figures.update(requests=requests, events=len(acknowledged), restarts=restarts,
                       failed=len(failures), lost=len(lost), duplicates=duplicates,
                       achieved_rate=round(requests / load_seconds, 1))
        print(json.dumps(figures), flush=True)
        problems = keep_errors + failures[:10] + [f"lost {w}" for w in lost[:10]]
        if duplicates:
            problems.append(f"{duplicates} duplicates")
        if problems:
            for problem in problems:
                log(f"FAIL: {problem}")
            keep = True
            log(f"kept {work} (nginx error.log, instance logs)")
            return 1
        log("ok")
        return 0
    except TestFailure as e:
        log(f"FAIL: {e}")
        for inst in instances:
            log(inst.log_tail(20))
        return 1
    finally:
        if nginx:
            nginx.terminate()
            nginx.wait()
        for inst in instances:
            inst.kill()
        try:
            psql(args.pg_url, f"drop database if exists {db} with (force)")
        except TestFailure:
            pass
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
