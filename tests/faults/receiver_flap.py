#!/usr/bin/env python3
"""A flapping webhook receiver: Meta-signed webhooks are ingested continuously while the number's
`webhook_destination_url` (a receiver this script runs, behind faultproxy.py) cycles through
up / down (connect refused) / 500 / slow (held past delivery.request_timeout), with one long
outage, for "an hour" of scaled time.

The retry schedule is the shipped one scaled 1:100 (backoff_initial 5 s -> 50 ms, backoff_max
6 h -> 216 s, jitter 0.2), so 36 s of flapping stand for an hour; give_up_after is cut to 8 s
(13 scaled minutes, not 48 h) so the long outage (10 s) dead-letters what it holds long enough.
delivery.request_timeout 1 s, poll_interval 50 ms, pause_after_failures 0 (the run would otherwise
pause the webhook, by design).

At the end (receiver up, every delivery settled) it checks, from wagate's delivery log and what
the receiver answered: every acknowledged event has exactly one delivery; each is `succeeded`
(and the receiver answered that attempt 200) or `dead`; nothing is left pending; a dead one died
when the schedule says (its last failure + the longest jittered delay passes give_up_after) and a
retried one was retried before it (no early give-up, no late one); every gap between attempts is
the schedule's delay (base x (1 +- jitter)), never shorter, at most --late-tolerance longer; the
signature and X-Idempotency-Key are right on every request. Duplicates (events the receiver
answered 200 more than once: a slow answer wagate had given up on) are counted and reported,
allowed (at least once). Prints one JSON line; exits 1 on a loss or a violation.
Usage: tests/faults/receiver_flap.py --bin target/debug/wagate --backend sqlite|postgres
       [--rate 12] [--late-tolerance 0.5] [--wagate-env KEY=VALUE] [--keep]
(--wagate-env WAGATE__DELIVERY__GIVE_UP_AFTER=6s or ...BACKOFF_INITIAL=35ms must make it fail.)
"""
import collections
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
import uuid
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
sys.path.insert(0, HERE)
from crash_ingest import PNID, WABA, WEBHOOK, TestFailure, Wagate, envelope, http_request, psql  # noqa: E402

import faultproxy  # noqa: E402

SECRET = "wagate-receiver-flap-webhook-secret-01"
SCALE = 100
INITIAL, MAX, JITTER = 5.0 / SCALE, 6 * 3600.0 / SCALE, 0.2
GIVE_UP = 8.0
REQUEST_TIMEOUT = 1.0
POLL = 0.05
# (mode, seconds): one cycle, and the run: two cycles, the long outage, two cycles (36 s).
CYCLE = [("up", 1.5), ("down", 1.5), ("500", 1.0), ("slow", 1.5), ("up", 1.0)]
RUN = CYCLE * 2 + [("down", 10.0)] + CYCLE * 2


from _support import clean_up, fault_arguments  # noqa: E402

def log(msg):
    print(f"[receiver_flap {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ts(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def base_delay(failures):
    return min(INITIAL * 2 ** (failures - 1), MAX)


class Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "up"
        self.lock = threading.Lock()
        self.requests = []  # dicts, one per POST

    def handle_error(self, request, client_address):
        pass  # connections the proxy cuts (down) end in resets; nothing to report


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = 500 if self.server.mode == "500" else 200
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        try:
            wamids = [m["id"] for e in json.loads(body)["entry"] for c in e["changes"]
                      for m in c["value"].get("messages", [])]
        except (ValueError, KeyError, TypeError):
            wamids = []
        record = {"delivery": self.headers.get("X-Wagate-Delivery-Id"),
                  "attempt": int(self.headers.get("X-Wagate-Attempt") or 0), "status": status,
                  "sig_ok": hmac.compare_digest(self.headers.get("X-Hub-Signature-256", ""), want),
                  "idem": self.headers.get("X-Idempotency-Key"),
                  "idem_ok": self.headers.get("X-Idempotency-Key") == hashlib.sha256(body).hexdigest(),
                  "wamids": wamids}
        with self.server.lock:
            self.server.requests.append(record)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def ingest(port, stop, rate, acked, failures):
    """Meta's side: unique signed events at `rate`/s, each retried until acknowledged."""
    run = uuid.uuid4().hex[:6]
    conn, seq = None, 0
    while not stop.is_set():
        began = time.monotonic()
        wamid = f"wamid.flap.{run}.{seq}"
        body, sig = envelope(wamid, "15550009999", seq)
        for _ in range(50):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", WEBHOOK, body=body, headers={"Content-Type": "application/json",
                                                                  "X-Hub-Signature-256": sig})
                resp = conn.getresponse()
                resp.read()
                if 200 <= resp.status < 300:
                    acked.append(wamid)
                    break
                failures[resp.status] += 1
            except (OSError, http.client.HTTPException) as e:
                failures[type(e).__name__] += 1
                conn = None
            time.sleep(0.05)
        else:
            failures["never acknowledged"] += 1
        seq += 1
        time.sleep(max(0.0, 1.0 / rate - (time.monotonic() - began)))


def api(port, key, path):
    status, body = http_request(port, "GET", path, headers={"X-API-Key": key}, timeout=15)
    if status != 200:
        raise TestFailure(f"GET {path} answered {status}: {body[:200]!r}")
    return json.loads(body)


def all_deliveries(port, key):
    out, path = [], "/platform/v1/webhook_deliveries?limit=100"
    while path:
        page = api(port, key, path)
        out.extend(page["data"])
        after = ((page.get("paging") or {}).get("cursors") or {}).get("after")
        path = f"/platform/v1/webhook_deliveries?limit=100&after={after}" if after and page["data"] else None
    return out


def check_delivery(d, answered_200, late_tol):
    """Violations of the schedule for one delivery (with its attempts), as strings."""
    out = []
    attempts = sorted(d["attempts"], key=lambda a: a["attempt"])
    if [a["attempt"] for a in attempts] != list(range(1, len(attempts) + 1)) or len(attempts) != d["attempt_count"]:
        out.append(f"attempts not 1..{d['attempt_count']}: {[a['attempt'] for a in attempts]}")
        return out, []
    deadline = ts(d["created_at"]) + GIVE_UP
    gaps = []
    for a, b in zip(attempts, attempts[1:]):
        if a["status_code"] is not None and 200 <= a["status_code"] < 300:
            out.append(f"attempt {b['attempt']} after a 2xx")
        failed_at = ts(a["started_at"]) + a["duration_ms"] / 1000
        base = base_delay(a["attempt"])
        gap = ts(b["started_at"]) - failed_at
        gaps.append((gap - base * (1 - JITTER), gap - base * (1 + JITTER)))
        if gap < base * (1 - JITTER) - 0.003:
            out.append(f"attempt {b['attempt']} early: {gap:.3f} s after a failure, schedule {base:.3f} s")
        if gap > base * (1 + JITTER) + late_tol:
            out.append(f"attempt {b['attempt']} late: {gap:.3f} s after a failure, schedule {base:.3f} s")
        if ts(b["started_at"]) > deadline + late_tol:
            out.append(f"attempt {b['attempt']} {ts(b['started_at']) - deadline:.3f} s past give_up_after")
    last = attempts[-1] if attempts else None
    ok_last = last is not None and last["status_code"] is not None and 200 <= last["status_code"] < 300
    if d["status"] == "succeeded":
        if not ok_last:
            out.append("succeeded without a 2xx attempt")
        elif (d["id"], last["attempt"]) not in answered_200:
            out.append(f"succeeded on attempt {last['attempt']} the receiver never answered 200")
    elif d["status"] == "dead":
        if ok_last or last is None:
            out.append("dead after a 2xx attempt (or none)")
        else:
            failed_at = ts(last["started_at"]) + last["duration_ms"] / 1000
            longest = failed_at + base_delay(last["attempt"]) * (1 + JITTER)
            if longest <= deadline - 0.003:
                out.append(f"dead-lettered early: a retry at the latest {deadline - longest:.3f} s "
                           f"before give_up_after was due (attempt {last['attempt']})")
    else:
        out.append(f"left {d['status']}")
    return out, gaps


def main():
    p = fault_arguments(__doc__)
    p.add_argument("--rate", type=float, default=12, help="webhooks/s ingested (default 12)")
    p.add_argument("--late-tolerance", type=float, default=0.5,
                   help="seconds an attempt may start after its scheduled time (poll, commit; default 0.5)")
    p.add_argument("--wagate-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for wagate, e.g. to check that a wrong setting fails the test")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"receiver_flap: no executable at {args.bin}", file=sys.stderr)
        return 2
    run_id = uuid.uuid4().hex[:8]
    work = tempfile.mkdtemp(prefix=f"wagate-receiver-flap-{args.backend}-")
    pg_db = None
    if args.backend == "postgres":
        pg_db = f"wagate_test_receiver_flap_{run_id}"
        db_url = f"{args.pg_url.rsplit('/', 1)[0]}/{pg_db}"
    else:
        db_url = f"sqlite://{work}/wagate.db"
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    proxy = faultproxy.FaultProxy(("127.0.0.1", receiver.server_address[1]))
    proxy_port = proxy.start()
    wagate, stop, ok = None, threading.Event(), False
    try:
        if pg_db:
            psql(args.pg_url, f"create database {pg_db}")
        wagate = Wagate(args.bin, work, db_url)
        wagate.env.update({f"WAGATE__DELIVERY__{k}": v for k, v in dict(
            ALLOW_HTTP="true", ALLOW_PRIVATE_NETWORKS="true", REQUEST_TIMEOUT=f"{int(REQUEST_TIMEOUT * 1000)}ms",
            CONNECT_TIMEOUT="500ms", LEASE="5s", POLL_INTERVAL=f"{int(POLL * 1000)}ms",
            BACKOFF_INITIAL=f"{int(INITIAL * 1000)}ms", BACKOFF_MAX=f"{int(MAX)}s", GIVE_UP_AFTER=f"{int(GIVE_UP)}s",
            JITTER=str(JITTER), PAUSE_AFTER_FAILURES="0", PER_DESTINATION="256").items()})
        wagate.env["WAGATE__DATABASE__MAX_CONNECTIONS"] = "8"
        wagate.env.update(kv.split("=", 1) for kv in args.wagate_env)
        wagate.start(60)
        key = wagate.api_key()
        status, body = http_request(wagate.port, "POST", "/platform/v1/whatsapp/phone_numbers", body=json.dumps(
            {"whatsapp_phone_number": {"phone_number_id": PNID, "business_account_id": WABA,
                                       "access_token": "flap-token", "webhook_secret": SECRET,
                                       "webhook_destination_url": f"http://127.0.0.1:{proxy_port}/hook"}}),
            headers={"X-API-Key": key, "Content-Type": "application/json"}, timeout=10)
        if status != 201:
            raise TestFailure(f"connecting the number answered {status}: {body[:300]!r}")
        log(f"backend={args.backend} wagate :{wagate.port} -> proxy :{proxy_port} -> receiver "
            f":{receiver.server_address[1]}; {sum(s for _, s in RUN):.0f} s of flapping")

        acked, ingest_failures = [], collections.Counter()
        sender = threading.Thread(target=ingest, args=(wagate.port, stop, args.rate, acked, ingest_failures),
                                  daemon=True)
        t0 = time.monotonic()
        sender.start()
        modes = collections.Counter()
        for mode, seconds in RUN:
            receiver.mode = "500" if mode == "500" else "up"
            proxy.set(down=mode == "down", latency_ms=REQUEST_TIMEOUT * 1500 if mode == "slow" else 0)
            modes[mode] += seconds
            time.sleep(seconds)
        stop.set()
        sender.join(timeout=30)
        proxy.set()
        receiver.mode = "up"
        flapped = time.monotonic() - t0
        settle_deadline = time.monotonic() + GIVE_UP + 15
        while time.monotonic() < settle_deadline:
            open_ = sum(len(api(wagate.port, key, f"/platform/v1/webhook_deliveries?status={s}&limit=1")["data"])
                        for s in ("pending", "failed", "paused"))
            if not open_:
                break
            time.sleep(0.5)
        settled = time.monotonic() - t0 - flapped

        answered_200 = set()
        by_wamid_200 = collections.Counter()
        bad_requests = []
        idem_by_delivery = collections.defaultdict(set)
        with receiver.lock:
            requests = list(receiver.requests)
        for r in requests:
            if not (r["sig_ok"] and r["idem_ok"]):
                bad_requests.append(r)
            idem_by_delivery[r["delivery"]].add(r["idem"])
            if r["status"] == 200:
                answered_200.add((r["delivery"], r["attempt"]))
                for w in r["wamids"]:
                    by_wamid_200[w] += 1
        deliveries = all_deliveries(wagate.port, key)
        for d in deliveries:
            d["attempts"] = api(wagate.port, key, f"/platform/v1/webhook_deliveries/{d['id']}")["data"]["attempts"]
        violations, gaps = [], []
        by_wamid = collections.defaultdict(list)
        for d in deliveries:
            for w in d["message_ids"]:
                by_wamid[w].append(d)
            found, g = check_delivery(d, answered_200, args.late_tolerance)
            gaps.extend(g)
            violations.extend(f"{d['id']}: {v}" for v in found)
        lost = [w for w in acked if not any(d["status"] in ("succeeded", "dead") for d in by_wamid.get(w, []))]
        multi = [w for w in acked if len(by_wamid.get(w, [])) > 1]
        statuses = collections.Counter(d["status"] for d in deliveries)
        duplicates = sum(n - 1 for n in by_wamid_200.values() if n > 1)
        attempts = sum(d["attempt_count"] for d in deliveries)
        figures = {
            "test": "receiver_flap", "backend": args.backend, "events": len(acked),
            "deliveries": dict(sorted(statuses.items())), "attempts": attempts,
            "receiver_requests": len(requests), "receiver_answered_200": len(answered_200),
            "lost": len(lost), "duplicates": duplicates, "dead": statuses.get("dead", 0),
            "violations": len(violations),
            # retry gaps against the schedule: least slack above base*(1-jitter) (never < 0), and
            # most time past base*(1+jitter) (poll interval, outcome commit)
            "gap_min_slack_s": round(min((lo for lo, _ in gaps), default=0), 3),
            "gap_max_late_s": round(max((hi for _, hi in gaps), default=0), 3),
            "scale": f"1:{SCALE}", "give_up_after_s": GIVE_UP, "flap_s": round(flapped, 1),
            "settle_s": round(settled, 1), "modes_s": dict(modes),
            "ingest_retries": dict(ingest_failures), "proxy": proxy.stats,
        }
        print(json.dumps(figures), flush=True)
        problems = []
        if lost:
            problems.append(f"{len(lost)} acknowledged events neither delivered nor dead-lettered, e.g. {lost[:3]}")
        if ingest_failures.get("never acknowledged"):
            problems.append(f"{ingest_failures['never acknowledged']} webhooks never acknowledged by wagate")
        if multi:
            problems.append(f"{len(multi)} events queued more than once, e.g. {multi[:3]}")
        if violations:
            problems.append(f"{len(violations)} schedule violations, e.g. {violations[:5]}")
        if bad_requests:
            problems.append(f"{len(bad_requests)} requests with a wrong signature or idempotency key")
        if any(len(v) > 1 for v in idem_by_delivery.values()):
            problems.append("a delivery's attempts carried different idempotency keys")
        if len(acked) < args.rate * 20 or not statuses.get("dead") or statuses.get("succeeded", 0) < len(acked) / 2:
            problems.append(f"the run did not exercise the schedule: {len(acked)} events, {dict(statuses)}")
        if not wagate.alive():
            problems.append(f"wagate exited ({wagate.proc.returncode})")
        if problems:
            raise TestFailure("; ".join(problems))
        ok = True
        return 0
    except TestFailure as e:
        print(f"FAIL receiver_flap ({args.backend}): {e}", file=sys.stderr)
        if wagate:
            print(f"--- tail of wagate's log ---\n{wagate.log_tail(30)}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        if wagate:
            wagate.kill()
        proxy.stop()
        receiver.shutdown()
        clean_up(args, work, pg_db, ok, psql)


if __name__ == "__main__":
    sys.exit(main())
