#!/usr/bin/env python3
"""Crash test for webhook ingest: no acknowledged event is lost, none is stored twice.

Starts wagate on a free port with a fresh database, connects a number, and runs sender threads
that behave like Meta: each sends a sequence of unique signed events and retries the same event
(same bytes) on any non-2xx answer or connection error, with a small backoff, until it gets a 2xx;
a few acknowledged events (--redeliver) are delivered once more, as Meta sometimes does.
Meanwhile wagate is killed with SIGKILL --kills times at random moments and restarted each time
(same database, same configuration). After --duration seconds the senders finish the event they
are on (retrying until it is acknowledged) and stop; wagate is killed once more, and the database
is checked:

  * every acknowledged wamid is stored (lost = 0),
  * messages hold each wamid once (duplicates = 0), and nothing that was never sent,
  * webhook_events holds at least one raw event per 2xx answer,
  * the conversations' message counters add up to the stored messages (an effect applied twice
    or without its message would show here),
  * no request got an answer other than 2xx, 500, 502, 503, 504 or a dropped connection (a 4xx for a
    correctly signed event is a bug).

Exits 0 when everything holds, 1 otherwise (printing the tail of wagate's log).

Usage: python3 bench/crash_ingest.py --bin target/debug/wagate --backend sqlite|postgres
                                     [--duration 20] [--kills 4] [--senders 6] [--seed N]
PostgreSQL: a database is created on --pg-url (default $WAGATE_TEST_POSTGRES_URL or
postgres://postgres@127.0.0.1:5432/postgres) and dropped afterwards. Standard library only; psql
is used for PostgreSQL.
"""
import argparse
import base64
import collections
import hashlib
import hmac
import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

APP_SECRET = "crash-test-app-secret"
MASTER_KEY = base64.b64encode(b"wagate-crash-test-master-key-32b").decode()
PNID = "100000000000001"
WABA = "200000000000001"
WEBHOOK = "/webhooks/whatsapp"
# Answers a sender may legitimately get while wagate is killed or restarting.
EXPECTED_FAILURES = {503, 500, 502, 504}


class TestFailure(Exception):
    pass


def log(msg):
    print(f"[crash_ingest {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    """A free port *below* the ephemeral range. wagate is restarted on the same port, and while it
    is down an ephemeral port could otherwise be handed to an outgoing connection (even a sender's
    connection to that very port, which then connects to itself) and block the restart."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low = 10000 if ephemeral_low > 12000 else 1024
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(low, ephemeral_low)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    with socket.socket() as s:  # fall back to any free port
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(port, method, path, body=None, headers=None, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Wagate:
    """One wagate process at a time over a fixed database and configuration."""

    def __init__(self, binary, workdir, db_url):
        self.binary = os.path.abspath(binary)
        self.workdir = workdir
        self.port = free_port()
        self.log_path = os.path.join(workdir, "wagate.log")
        self.proc = None
        self.starts = 0
        self.env = dict(
            os.environ,
            WAGATE__SERVER__LISTEN=f"127.0.0.1:{self.port}",
            WAGATE__DATABASE__URL=db_url,
            WAGATE__SECURITY__MASTER_KEY=MASTER_KEY,
            WAGATE__META__APP_SECRET=APP_SECRET,
            WAGATE__LOG__LEVEL="warn",
            # No Graph here: the number cannot be verified against Meta.
            WAGATE__GRAPH__VERIFY_NUMBERS="false",
            WAGATE__LOG__FORMAT="human",
            NO_COLOR="1",
        )

    def start(self, timeout):
        self.starts += 1
        with open(self.log_path, "ab") as f:
            f.write(f"===== start #{self.starts} =====\n".encode())
            f.flush()
            self.proc = subprocess.Popen(
                [self.binary, "serve"], cwd=self.workdir, env=self.env,
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
            )
        began = time.monotonic()
        while True:
            code = self.proc.poll()
            if code is not None:
                raise TestFailure(f"wagate exited with code {code} during start #{self.starts}")
            try:
                status, _ = http_request(self.port, "GET", "/healthz", timeout=1.0)
                if status == 200:
                    return time.monotonic() - began
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() - began > timeout:
                raise TestFailure(f"wagate did not answer /healthz within {timeout:.0f} s (start #{self.starts})")
            time.sleep(0.05)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(data[-lines:])
        except OSError:
            return "(no log)"

    def api_key(self):
        # stdout is not a terminal: the first start writes its key to a 0600 file (the SQLite
        # data folder, else the working folder) and prints only the path.
        for folder, _, files in os.walk(self.workdir):
            if "initial-api-key" in files:
                with open(os.path.join(folder, "initial-api-key")) as f:
                    return f.read().strip() or None
        return None


def envelope(wamid, wa_id, seq):
    text = f"crash test event {wamid} " + "x" * (200 + seq % 300)
    body = (
        '{"object":"whatsapp_business_account","entry":[{"id":"%s","changes":[{"field":"messages",'
        '"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000001",'
        '"phone_number_id":"%s"},"contacts":[{"profile":{"name":"Crash Sender"},"wa_id":"%s"}],'
        '"messages":[{"from":"%s","id":"%s","timestamp":"%d","type":"text","text":{"body":"%s"}}]}}]}]}'
    ) % (WABA, PNID, wa_id, wa_id, wamid, 1750000000 + seq, text)
    body = body.encode()
    sig = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, sig


class Shared:
    def __init__(self, port, run_id, event_timeout, redeliver):
        self.port = port
        self.redeliver = redeliver
        self.run_id = run_id
        self.event_timeout = event_timeout
        self.stop = threading.Event()
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.failures = []

    def fail(self, message):
        with self.lock:
            self.failures.append(message)
        self.abort.set()


class Sender(threading.Thread):
    def __init__(self, index, shared):
        super().__init__(name=f"sender-{index}", daemon=True)
        self.index = index
        self.shared = shared
        self.sent = []  # wamids in order, each sent until acknowledged
        self.acked = []
        self.redelivered = 0  # acknowledged events sent again on purpose (Meta redelivers too)
        self.attempts = 0
        self.retries = 0
        self.outcomes = collections.Counter()  # non-2xx statuses and connection errors
        self.max_event_seconds = 0.0
        self.conn = None

    def post(self, body, sig):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.shared.port, timeout=10)
        try:
            self.conn.request("POST", WEBHOOK, body=body, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": sig})
            resp = self.conn.getresponse()
            resp.read()
            if resp.will_close:
                self.conn.close()
                self.conn = None
            return resp.status
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = None
            return type(e).__name__

    def deliver(self, wamid, body, sig, rng):
        """Sends one event until it is acknowledged; False when the test is aborting."""
        first = time.monotonic()
        backoff = 0.01
        while True:
            self.attempts += 1
            outcome = self.post(body, sig)
            if isinstance(outcome, int) and 200 <= outcome < 300:
                self.max_event_seconds = max(self.max_event_seconds, time.monotonic() - first)
                return True
            self.retries += 1
            self.outcomes[outcome] += 1
            if isinstance(outcome, int) and 400 <= outcome < 500:
                # A 4xx for a correctly signed event is a bug; retrying would only hide it.
                self.shared.fail(f"{wamid} answered {outcome} (a correctly signed event)")
                return False
            if self.shared.abort.is_set():
                return False
            if time.monotonic() - first > self.shared.event_timeout:
                self.shared.fail(f"{wamid} not acknowledged after {self.shared.event_timeout:.0f} s "
                                 f"of retries (last answer: {outcome})")
                return False
            time.sleep(backoff * (0.5 + rng.random()))
            backoff = min(backoff * 2, 0.2)

    def run(self):
        wa_id = "1555000%04d" % self.index
        rng = random.Random(self.index)
        seq = 0
        try:
            while not self.shared.stop.is_set() and not self.shared.abort.is_set():
                wamid = f"wamid.crash.{self.shared.run_id}.{self.index}.{seq}"
                body, sig = envelope(wamid, wa_id, seq)
                self.sent.append(wamid)
                if not self.deliver(wamid, body, sig, rng):
                    return
                self.acked.append(wamid)
                # Like Meta, sometimes deliver an acknowledged event again: it must not be stored twice.
                if rng.random() < self.shared.redeliver:
                    self.redelivered += 1
                    if not self.deliver(wamid, body, sig, rng):
                        return
                seq += 1
        except Exception as e:  # a bug in the test itself must not pass silently
            self.shared.fail(f"sender {self.index} crashed: {e!r}")
        finally:
            if self.conn is not None:
                self.conn.close()


def psql(url, sql):
    out = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise TestFailure(f"psql failed: {out.stderr.strip()}")
    return out.stdout


def read_store(backend, db_url, sqlite_path):
    """Returns (list of message wamids, sum of conversations.messages_count, webhook_events rows)."""
    q_wamids = "select wamid from messages"
    q_conv = "select coalesce(sum(messages_count), 0) from conversations"
    q_events = "select count(*) from webhook_events"
    if backend == "sqlite":
        import sqlite3

        con = sqlite3.connect(sqlite_path, timeout=30)
        try:
            wamids = [r[0] for r in con.execute(q_wamids)]
            conv = con.execute(q_conv).fetchone()[0]
            events = con.execute(q_events).fetchone()[0]
        finally:
            con.close()
    else:
        wamids = [line for line in psql(db_url, q_wamids).splitlines() if line]
        conv = int(psql(db_url, q_conv).strip())
        events = int(psql(db_url, q_events).strip())
    return wamids, int(conv), int(events)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="wagate binary (e.g. target/debug/wagate)")
    p.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    p.add_argument("--duration", type=float, default=20, help="seconds of traffic (default 20)")
    p.add_argument("--kills", type=int, default=4, help="SIGKILLs during the traffic (default 4)")
    p.add_argument("--senders", type=int, default=6, help="concurrent sender threads (default 6)")
    p.add_argument("--seed", type=int, default=None, help="seed for the kill moments")
    p.add_argument("--pg-url", default=os.environ.get("WAGATE_TEST_POSTGRES_URL",
                                                      "postgres://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--start-timeout", type=float, default=30, help="seconds for wagate to answer /healthz")
    p.add_argument("--event-timeout", type=float, default=30, help="seconds one event may take to be acknowledged")
    p.add_argument("--redeliver", type=float, default=0.03,
                   help="share of acknowledged events delivered once more (default 0.03)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir and database")
    args = p.parse_args()

    if not os.access(args.bin, os.X_OK):
        print(f"crash_ingest: no executable at {args.bin} (cargo build first)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 30)
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex[:8]
    workdir = tempfile.mkdtemp(prefix=f"wagate-crash-{args.backend}-")
    pg_db = None
    if args.backend == "postgres":
        pg_db = f"wagate_test_crash_{run_id}"
        base = args.pg_url.rsplit("/", 1)[0]
        db_url = f"{base}/{pg_db}"
        sqlite_path = None
    else:
        sqlite_path = os.path.join(workdir, "wagate.db")
        db_url = f"sqlite://{sqlite_path}"

    # SIGTERM/SIGINT (CI cancelling) still cleans up.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)

    wagate = Wagate(args.bin, workdir, db_url)
    shared = Shared(wagate.port, run_id, args.event_timeout, args.redeliver)
    senders = []
    kills = []  # (seconds into the traffic, seconds until /healthz answered again)
    ok = False
    started = time.monotonic()
    log(f"backend={args.backend} bin={args.bin} duration={args.duration:.0f}s kills={args.kills} "
        f"senders={args.senders} seed={seed} workdir={workdir}")
    try:
        if pg_db:
            psql(args.pg_url, f"create database {pg_db}")
        up = wagate.start(args.start_timeout)
        key = wagate.api_key()
        if not key:
            raise TestFailure("wagate printed no API key on an empty database")
        status, body = http_request(wagate.port, "POST", "/platform/v1/whatsapp/phone_numbers", body=(
            '{"whatsapp_phone_number":{"phone_number_id":"%s","business_account_id":"%s",'
            '"access_token":"crash-token"}}' % (PNID, WABA)), headers={
            "X-API-Key": key, "Content-Type": "application/json"}, timeout=10)
        if status != 201:
            raise TestFailure(f"connecting the number answered {status}: {body[:300]!r}")
        log(f"wagate up in {up:.2f} s on port {wagate.port}; number connected")

        senders = [Sender(i, shared) for i in range(args.senders)]
        t0 = time.monotonic()
        for s in senders:
            s.start()
        # One kill at a random moment in each of --kills equal slots (at least 0.3 s of traffic
        # after each restart, so every kill lands on requests in flight).
        slot = args.duration / max(1, args.kills)
        moments = [slot * k + rng.uniform(0.15, 0.85) * slot for k in range(args.kills)]
        for k, at in enumerate(moments):
            since_restart = time.monotonic()
            while not shared.abort.is_set():
                now = time.monotonic()
                if now - t0 >= at and now - since_restart >= 0.3:
                    break
                time.sleep(min(0.02, max(0.0, at - (now - t0))))
            if shared.abort.is_set():
                break
            killed_at = time.monotonic() - t0
            wagate.kill()
            back = wagate.start(args.start_timeout)
            kills.append((killed_at, back))
            log(f"kill {k + 1}/{args.kills} at {killed_at:.2f} s; /healthz again after {back:.2f} s")
        while not shared.abort.is_set() and time.monotonic() - t0 < args.duration:
            time.sleep(0.05)
        shared.stop.set()
        for s in senders:
            s.join(timeout=args.event_timeout + 15)
        if any(s.is_alive() for s in senders):
            raise TestFailure("a sender is still retrying its last event after the traffic stopped")
        traffic = time.monotonic() - t0
        if shared.failures:
            raise TestFailure("; ".join(shared.failures))
        if not wagate.alive():
            raise TestFailure(f"wagate exited on its own (code {wagate.proc.returncode})")
        wagate.kill()  # acknowledged means committed: check with the process gone

        sent = [w for s in senders for w in s.sent]
        acked = [w for s in senders for w in s.acked]
        stored, conv_total, events = read_store(args.backend, db_url, sqlite_path)
        stored_set = set(stored)
        lost = sorted(set(acked) - stored_set)
        duplicates = len(stored) - len(stored_set)
        never_sent = sorted(stored_set - set(sent))
        outcomes = collections.Counter()
        for s in senders:
            outcomes.update(s.outcomes)
        unexpected = {k: v for k, v in outcomes.items() if isinstance(k, int) and k not in EXPECTED_FAILURES}
        attempts = sum(s.attempts for s in senders)
        redelivered = sum(s.redelivered for s in senders)
        # Every 2xx stored one raw event; rows beyond that are attempts that were committed but
        # whose answer was lost to a kill (then retried and deduplicated).
        committed_unacked = events - len(acked) - redelivered
        retries = sum(s.retries for s in senders)
        slowest = max((s.max_event_seconds for s in senders), default=0.0)

        print()
        print(f"crash test summary ({args.backend}, {traffic:.1f} s of traffic, {args.senders} senders, seed {seed})")
        print(f"  events sent (unique)    {len(sent)}")
        print(f"  acknowledged (2xx)      {len(acked)}")
        print(f"  requests / retries      {attempts} / {retries}")
        print(f"  redelivered on purpose  {redelivered}  (acknowledged events sent again)")
        print(f"  retry causes            " + (", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items(), key=str)) or "none"))
        print(f"  kills                   {len(kills)}  (back after " +
              ", ".join(f"{b:.2f}" for _, b in kills) + " s)")
        print(f"  slowest event to ack    {slowest:.2f} s")
        print(f"  stored messages         {len(stored)}")
        print(f"  webhook_events rows     {events}  ({committed_unacked} committed attempts whose answer a kill cut off)")
        print(f"  lost                    {len(lost)}")
        print(f"  duplicates              {duplicates}")
        print(f"  stored but never sent   {len(never_sent)}")
        print(f"  conversations' count    {conv_total}  (must equal stored messages)")

        problems = []
        if len(kills) != args.kills:
            problems.append(f"only {len(kills)} of {args.kills} kills happened")
        if len(acked) != len(sent):
            problems.append(f"{len(sent) - len(acked)} events never acknowledged")
        if lost:
            problems.append(f"{len(lost)} acknowledged events lost, e.g. {lost[:5]}")
        if duplicates:
            problems.append(f"{duplicates} duplicate message rows")
        if never_sent:
            problems.append(f"{len(never_sent)} stored messages were never sent, e.g. {never_sent[:5]}")
        if conv_total != len(stored):
            problems.append(f"conversations count {conv_total} messages but {len(stored)} are stored")
        if committed_unacked < 0:
            problems.append(f"{events} raw webhook_events rows for {len(acked) + redelivered} acknowledged deliveries")
        if unexpected:
            problems.append(f"unexpected answers to correctly signed events: {unexpected}")
        if len(acked) < args.senders:
            problems.append("almost no traffic got through")
        if problems:
            raise TestFailure("; ".join(problems))
        print(f"PASS: lost=0 duplicates=0 ({len(acked)} acknowledged events, {len(kills)} kills, "
              f"{time.monotonic() - started:.1f} s)")
        ok = True
        return 0
    except TestFailure as e:
        shared.abort.set()
        print(f"\nFAIL ({args.backend}): {e}", file=sys.stderr)
        print(f"--- tail of wagate's log ({wagate.log_path}) ---", file=sys.stderr)
        print(wagate.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        shared.abort.set()
        print(f"\ninterrupted ({e})", file=sys.stderr)
        return 130
    finally:
        shared.abort.set()
        shared.stop.set()
        try:
            wagate.kill()
        except Exception:
            pass
        deadline = time.monotonic() + 5
        for s in senders:
            s.join(timeout=max(0.0, deadline - time.monotonic()))
        if args.keep or (not ok and os.environ.get("CRASH_KEEP_ON_FAILURE")):
            print(f"kept {workdir}" + (f" and database {pg_db}" if pg_db else ""), file=sys.stderr)
        else:
            if pg_db:
                try:
                    psql(args.pg_url, f"drop database if exists {pg_db} with (force)")
                except Exception as e:
                    print(f"warning: could not drop database {pg_db}: {e}", file=sys.stderr)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
