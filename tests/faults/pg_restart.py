#!/usr/bin/env python3
"""PostgreSQL restarted under load: signed webhook ingest (senders that retry the same bytes until
a 2xx, as Meta does), proxied sends to the Graph emulator, and deliveries to a receiver, while the
database is stopped twice (`pg_ctl stop -m immediate`, then `-m fast`) and started again.

The database is a private cluster this script runs (db_down_kill.PrivatePostgres), never the
shared server. Checks: every answer was a 2xx or 502/503/504 while the database was away;
every acknowledged event stored once; every send Meta accepted recorded once; every acknowledged
event delivered to the receiver at least once; service back (an event acknowledged) within 10 s
of each start. Prints one JSON line of figures; exits 1 on any violation.

Usage: tests/faults/pg_restart.py --bin target/debug/wagate --backend postgres
"""
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from db_down_kill import REPO, PrivatePostgres, send, start_emulator  # noqa: E402

sys.path.insert(0, os.path.join(REPO, "bench"))
from crash_ingest import APP_SECRET, TestFailure, Wagate, http_request, psql, read_store  # noqa: E402

TRANSIENT = {502, 503, 504}  # a 500 is a bug, even while the database is away


from _support import connect_number, fault_arguments, skipped_unless  # noqa: E402

def log(msg):
    print(f"[pg_restart {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def envelope(pnid, waba, wamid, seq):
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": waba, "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000001", "phone_number_id": pnid},
            "contacts": [{"profile": {"name": "Restart"}, "wa_id": f"1777{seq % 50:07d}"}],
            "messages": [{"from": f"1777{seq % 50:07d}", "id": wamid, "timestamp": str(1750000000 + seq),
                          "type": "text", "text": {"body": f"restart test {seq}"}}]}}]}]}).encode()
    return body, "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()


class DurablePostgres(PrivatePostgres):
    """The private cluster with fsync on: an immediate stop is then a real crash recovery."""

    fsync = "on"


class Receiver:
    """Answers 200 to every delivery and remembers the inbound wamids it got."""

    def __init__(self):
        self.seen = {}
        lock = threading.Lock()
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    for entry in json.loads(body).get("entry", []):
                        for change in entry.get("changes", []):
                            for m in change.get("value", {}).get("messages", []):
                                with lock:
                                    seen[m["id"]] = seen.get(m["id"], 0) + 1
                except (ValueError, AttributeError):
                    pass
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Load:
    def __init__(self, port, key, pnid, waba):
        self.port, self.key, self.pnid, self.waba = port, key, pnid, waba
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked, self.sent, self.unexpected = [], [], []
        self.requests = 0
        self.answers = {}
        self.last_ack = 0.0

    def ingest(self, index):
        seq = 0
        while not self.stop.is_set():
            seq += 1
            wamid = f"wamid.restart.{index}.{seq}"
            body, sig = envelope(self.pnid, self.waba, wamid, seq)
            while True:  # the same bytes until acknowledged, like Meta
                try:
                    status, answer = http_request(self.port, "POST", "/webhooks/whatsapp", body=body, timeout=15,
                                                  headers={"Content-Type": "application/json",
                                                           "X-Hub-Signature-256": sig})
                except (OSError, http.client.HTTPException):
                    status, answer = None, b""
                with self.lock:
                    self.requests += 1
                    self.answers[str(status)] = self.answers.get(str(status), 0) + 1
                    if status is not None and 200 <= status < 300:
                        self.acked.append(wamid)
                        self.last_ack = time.monotonic()
                    elif status not in TRANSIENT:  # no answer at all is a failure too
                        self.unexpected.append(f"webhook {wamid}: {status} {answer[:200]!r}")
                if status is not None and 200 <= status < 300:
                    break
                time.sleep(0.2)
            time.sleep(0.05)

    def sends(self):
        i = 0
        while not self.stop.is_set():
            i += 1
            try:
                wamid = send(self.port, self.key, self.pnid, 10_000 + i)
                with self.lock:
                    self.requests += 1
                    self.sent.append(wamid)
            except TestFailure as e:
                with self.lock:
                    self.requests += 1
                    self.unexpected.append(str(e))
            time.sleep(0.1)


def main():
    p = fault_arguments(__doc__)
    args = p.parse_args()
    if skipped_unless(args, "postgres", "pg_restart", "PostgreSQL only"):
        return 0
    workdir = tempfile.mkdtemp(prefix="wagate-pgrestart-")
    figures = {"test": "pg_restart", "backend": "postgres", "restarts": 0}
    db = emulator = wagate = None
    ok = False
    try:
        db = DurablePostgres(workdir)
        db.init()
        db.start()
        psql(db.url, "create database wagate")
        db_url = db.url.rsplit("/", 1)[0] + "/wagate"
        emulator, graph_port, (pnid, waba, token) = start_emulator(os.path.abspath(args.bin), workdir)
        receiver = Receiver()
        wagate = Wagate(args.bin, workdir, db_url)
        wagate.env.update(
            WAGATE__GRAPH__BASE_URL=f"http://127.0.0.1:{graph_port}",
            WAGATE__DATABASE__ACQUIRE_TIMEOUT="1s",
            WAGATE__CACHE__TTL="300s",
            WAGATE__WRITER__RETRY_INTERVAL="200ms",
            WAGATE__WRITER__SPILL_PATH=os.path.join(workdir, "spill", "wagate.spill"),
            WAGATE__DELIVERY__POLL_INTERVAL="100ms",
            WAGATE__DELIVERY__BACKOFF_INITIAL="100ms",
            WAGATE__DELIVERY__BACKOFF_MAX="1s",
            # A claim whose commit PostgreSQL made just before an immediate stop, but whose answer
            # never reached wagate, is redelivered when its lease runs out (the mechanism for a
            # claim that lost its owner). At the default 60 s that is past the settle window below.
            WAGATE__DELIVERY__REQUEST_TIMEOUT="3s",
            WAGATE__DELIVERY__LEASE="5s",
            WAGATE__DELIVERY__ALLOW_HTTP="true",
            WAGATE__DELIVERY__ALLOW_PRIVATE_NETWORKS="true",
            WAGATE__LOG__LEVEL="info",
        )
        wagate.start(30)
        key = wagate.api_key()
        connect_number(http_request, wagate.port, key, pnid, waba, token, receiver.url)

        load = Load(wagate.port, key, pnid, waba)
        threads = [threading.Thread(target=load.ingest, args=(i,), daemon=True) for i in range(4)]
        threads.append(threading.Thread(target=load.sends, daemon=True))
        for t in threads:
            t.start()
        recoveries = []
        for mode, down in (("immediate", 5), ("fast", 3)):
            time.sleep(4)
            db.stop(mode)
            log(f"PostgreSQL stopped (-m {mode}) for {down} s")
            time.sleep(down)
            db.start()
            figures["restarts"] += 1
            back = time.monotonic()
            while load.last_ack < back and time.monotonic() - back < 10:
                time.sleep(0.05)
            recoveries.append(round(time.monotonic() - back, 2) if load.last_ack >= back else None)
        time.sleep(3)
        load.stop.set()
        for t in threads:
            t.join(timeout=60)

        acked, sent = set(load.acked), set(load.sent)
        settle = time.monotonic()
        while time.monotonic() - settle < 30:
            wamids, _, _ = read_store("postgres", db_url, None)
            if acked | sent <= set(wamids) and acked <= set(receiver.seen):
                break
            time.sleep(0.3)
        wamids, conv, _ = read_store("postgres", db_url, None)
        stored = set(wamids)
        figures.update(
            requests=load.requests, events=len(acked), sends=len(sent),
            lost=len((acked | sent) - stored), duplicates=len(wamids) - len(stored),
            undelivered=len(acked - set(receiver.seen)),
            delivered_twice=sum(1 for w in acked if receiver.seen.get(w, 0) > 1),
            counters_match=conv == len(wamids), errors_unexpected=len(load.unexpected), webhook_answers=load.answers,
            recovery_s=recoveries,
        )
        for problem in load.unexpected[:10]:
            log(f"FAIL: {problem}")
        for wamid in sorted((acked | sent) - stored)[:10]:
            log(f"FAIL: lost {wamid} ({'acknowledged webhook' if wamid in acked else 'send Meta accepted'})")
        for wamid in sorted(acked - set(receiver.seen))[:10]:
            rows = psql(db_url, "select status, attempts, next_attempt_at, last_error from webhook_deliveries "
                                f"where message_wamids like '%{wamid}%'")
            log(f"FAIL: undelivered {wamid}: deliveries {rows.strip() or 'none'}")
        ok = (figures["lost"] == 0 and figures["duplicates"] == 0 and figures["undelivered"] == 0
              and figures["counters_match"] and not load.unexpected
              and all(r is not None for r in recoveries))
    except TestFailure as e:
        log(f"FAIL: {e}")
        if wagate:
            log(wagate.log_tail(30))
    finally:
        if wagate:
            wagate.kill()
        if emulator:
            emulator.kill()
            emulator.wait()
        if db:
            try:
                db.stop("immediate")
            except TestFailure:
                pass
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"kept {workdir}")
    print(json.dumps(figures), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
