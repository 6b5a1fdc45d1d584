#!/usr/bin/env python3
"""Helpers for bench/forward.sh (webhook forwarding lag benchmark). Standard library only; builds on
bench/ingest_load.py (sign the events with its `sign`, the open loop below wraps its `open`).

  receive --port P --secret S --out FILE [--host 127.0.0.1] [--path /hook]
          The customer's receiver: a raw asyncio HTTP/1.1 keep-alive server answering every request
          "200 OK" with an empty body. For each POST to --path it records the wall-clock time
          (time.time()) at which the request was complete, the wamids in the body (Meta's envelope:
          entry[].changes[].value.messages[].id), X-Idempotency-Key, X-Wagate-Event-Id and
          X-Hub-Signature-256, and checks the signature (sha256=<hex HMAC-SHA256(S, raw body)>)
          and the idempotency key (hex SHA-256 of the raw body). A GET with hub.challenge echoes
          it (Meta's verify handshake). Control endpoints (not recorded):
            GET  /_status   -> {"requests", "distinct", "expected", "missing", ...}
            POST /_expect   body: one wamid per line, the set "missing" counts down from (replaces
                            the previous one).
          On SIGTERM/SIGINT it writes FILE (JSON: counters and one record per POST) and exits 0.

  open    (ingest_load.py open's options) --acks-out FILE
          ingest_load.py's open loop, unchanged, plus FILE: one line "<index> <time.time()>" per
          event answered 2xx, the wall-clock time the answer was read (the receiver's clock).

  wait    --url http://127.0.0.1:P --acks FILE --prefix P [--timeout 60] [--grace 1]
          Tells the receiver which wamids were acknowledged ("wamid.<P>.<index>" per line of FILE),
          then polls it until all of them have arrived or --timeout seconds passed, and waits
          --grace seconds more (late duplicates). Prints JSON {"expected", "missing", "waited_s"}.

  report  --dir WORK --backends "postgres sqlite" --rate R --open-duration D
          Prints forward.sh's table per backend from WORK/<backend>/ and exits 1 when an
          acknowledged event was never delivered or a signature or idempotency key was wrong.
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import sys
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

sys.dont_write_bytecode = True  # no bench/__pycache__ left behind by the import below
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ingest_load  # noqa: E402

pct = ingest_load.pct

# ---------------------------------------------------------------------------------------- receive

MAX_HEAD = 64 * 1024
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def envelope_wamids(body):
    """entry[].changes[].value.messages[].id of a Meta envelope; None if the body is not one."""
    try:
        doc = json.loads(body)
        out = []
        for entry in doc.get("entry") or []:
            for change in entry.get("changes") or []:
                for m in (change.get("value") or {}).get("messages") or []:
                    if isinstance(m, dict) and "id" in m:
                        out.append(m["id"])
        return out
    except (ValueError, AttributeError, TypeError):
        return None


class Receiver:
    def __init__(self, secret, path):
        self.secret = secret.encode()
        self.path = path
        self.records = []
        self.received = set()  # distinct wamids
        self.expected = set()
        self.missing = set()  # expected, not received yet
        self.connections = 0
        self.requests = 0  # POSTs to the hook path
        self.other_requests = 0  # anything else that is not a control request
        self.wrong_path = 0  # POSTs elsewhere (recorded too, flagged)
        self.bad_body = 0  # not a Meta envelope
        self.sig_mismatch = 0
        self.idem_mismatch = 0
        self.no_event_id = 0
        self.first_t = None
        self.last_t = None

    def hook(self, path, headers, body, t):
        self.requests += 1
        if path != self.path:
            self.wrong_path += 1
        if self.first_t is None:
            self.first_t = t
        self.last_t = t
        sig = headers.get("x-hub-signature-256")
        idem = headers.get("x-idempotency-key")
        event_id = headers.get("x-wagate-event-id")
        body_sha = hashlib.sha256(body).hexdigest()
        want_sig = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        sig_ok = sig is not None and hmac.compare_digest(sig.encode("latin-1"), want_sig.encode())
        idem_ok = idem is not None and hmac.compare_digest(idem.encode("latin-1"), body_sha.encode())
        self.sig_mismatch += not sig_ok
        self.idem_mismatch += not idem_ok
        self.no_event_id += event_id is None
        wamids = envelope_wamids(body)
        if wamids is None:
            self.bad_body += 1
            wamids = []
        for w in wamids:
            self.received.add(w)
            self.missing.discard(w)
        self.records.append({"t": t, "path": path, "wamids": wamids, "idempotency_key": idem,
                             "event_id": event_id, "signature": sig, "sig_ok": sig_ok,
                             "idem_ok": idem_ok, "body_sha256": body_sha, "bytes": len(body),
                             "attempt": headers.get("x-wagate-attempt")})

    def status(self):
        return {"requests": self.requests, "distinct": len(self.received), "expected": len(self.expected),
                "missing": len(self.missing), "connections": self.connections,
                "sig_mismatch": self.sig_mismatch, "idem_mismatch": self.idem_mismatch,
                "first_t": self.first_t, "last_t": self.last_t}

    def control(self, method, path, body):
        if path == "/_expect" and method == "POST":
            self.expected = {w for w in body.decode().split() if w}
            self.missing = self.expected - self.received
        return json.dumps(self.status()).encode()

    def dump(self, out):
        doc = self.status()
        doc.update({"other_requests": self.other_requests, "wrong_path": self.wrong_path,
                    "bad_body": self.bad_body, "no_event_id": self.no_event_id, "records": self.records})
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, out)


def take_chunked(buf):
    """(body, bytes consumed) of a complete chunked body at the start of buf, or None."""
    pos, parts = 0, []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0].strip() or b"0", 16)
        pos = eol + 2
        if size == 0:
            if buf[pos:pos + 2] == b"\r\n":
                return b"".join(parts), pos + 2
            end = buf.find(b"\r\n\r\n", pos)  # trailers
            return None if end < 0 else (b"".join(parts), end + 4)
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos:pos + size]))
        pos += size + 2


class HookConn(asyncio.Protocol):
    def __init__(self, rx):
        self.rx = rx
        self.buf = bytearray()
        self.head = None  # (method, path, query, headers, keep_alive, chunked, length)
        self.transport = None
        self.hooked = False  # carried a delivery (control requests' connections are not counted)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        while True:
            if self.head is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        self.transport.close()
                    return
                lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                del self.buf[: end + 4]
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    self.transport.close()
                    return
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                conn = headers.get("connection", "").lower()
                keep = ("close" not in conn) if version == "HTTP/1.1" else ("keep-alive" in conn)
                chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                length = int(headers.get("content-length", "0") or 0)
                if headers.get("expect", "").lower() == "100-continue":
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                u = urlsplit(target)
                self.head = (method, u.path, u.query, headers, keep, chunked, length)
            method, path, query, headers, keep, chunked, length = self.head
            if chunked:
                got = take_chunked(self.buf)
                if got is None:
                    return
                body, used = got
            else:
                if len(self.buf) < length:
                    return
                body, used = bytes(self.buf[:length]), length
            t = time.time()  # the request is complete
            del self.buf[:used]
            self.head = None
            self.respond(method, path, query, headers, body, t, keep)
            if not keep:
                return

    def respond(self, method, path, query, headers, body, t, keep):
        rx = self.rx
        payload = b""
        if path.startswith("/_"):
            payload = rx.control(method, path, body)
        elif method == "POST":
            if not self.hooked:
                self.hooked = True
                rx.connections += 1
            rx.hook(path, headers, body, t)
        else:
            rx.other_requests += 1
            challenge = parse_qs(query).get("hub.challenge")
            if challenge:
                payload = challenge[0].encode()
        if payload:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % len(payload)
            self.transport.write(head + (b"" if keep else b"Connection: close\r\n") + b"\r\n" + payload)
        else:
            self.transport.write(OK if keep else OK_CLOSE)
        if not keep:
            self.transport.close()


async def serve(args):
    rx = Receiver(args.secret, args.path)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(lambda: HookConn(rx), args.host, args.port, backlog=1024, reuse_address=True)
    print(f"receiver on http://{args.host}:{args.port}{args.path}", file=sys.stderr, flush=True)
    await stop
    server.close()
    rx.dump(args.out)


def cmd_receive(args):
    asyncio.run(serve(args))
    return 0


# ------------------------------------------------------------------------------------------- open

class TimedOpenLoop(ingest_load.OpenLoop):
    """ingest_load's open loop, also noting the wall-clock time each 2xx answer was read."""

    last = None

    def __init__(self, args, events):
        super().__init__(args, events)
        self.ack_wall = [0.0] * self.total
        TimedOpenLoop.last = self

    def answered(self, conn, index, scheduled, status):
        if 200 <= status < 300:
            self.ack_wall[index] = time.time()
        super().answered(conn, index, scheduled, status)


def cmd_open(args):
    ingest_load.OpenLoop = TimedOpenLoop  # cmd_open builds its generator from this name
    ingest_load.cmd_open(args)
    gen = TimedOpenLoop.last
    with open(args.acks_out, "w") as f:
        f.write("".join(f"{i} {gen.ack_wall[i]:.6f}\n" for i, o in enumerate(gen.outcome) if o == 1))
    return 0


# ------------------------------------------------------------------------------------------- wait

def read_acks(path):
    acks = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                i, t = line.split()
                acks[int(i)] = float(t)
    return acks


def http(url, data=None):
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
        return json.loads(r.read() or b"{}")


def cmd_wait(args):
    acks = read_acks(args.acks)
    base = args.url.rstrip("/")
    body = "".join(f"wamid.{args.prefix}.{i}\n" for i in acks).encode()
    st = http(base + "/_expect", body)
    t0 = time.monotonic()
    while st["missing"] and time.monotonic() - t0 < args.timeout:
        time.sleep(0.05)
        st = http(base + "/_status")
    waited = time.monotonic() - t0
    missing = st["missing"]
    if args.grace > 0:
        time.sleep(args.grace)
    print(json.dumps({"prefix": args.prefix, "expected": len(acks), "missing": missing,
                      "waited_s": round(waited, 3), "timed_out": bool(missing)}))
    return 0


# ----------------------------------------------------------------------------------------- report

def load_json(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f)


def body_hashes(signed_file):
    """index -> SHA-256 of the body ingest_load sign wrote for event index (Meta's exact bytes)."""
    return [hashlib.sha256(body).hexdigest() for _, body in ingest_load.load_events(signed_file)]


def analyse(records, prefix, acks, sent, originals):
    """Deliveries of events "wamid.<prefix>.<i>" against their 2xx acks (index -> wall time)."""
    cut = f"wamid.{prefix}."
    first, count, event_ids, identical = {}, {}, {}, 0
    out_of_range = 0
    for r in records:
        for w in r["wamids"]:
            if not w.startswith(cut):
                continue
            try:
                i = int(w[len(cut):])
            except ValueError:
                out_of_range += 1
                continue
            if not 0 <= i < sent:
                out_of_range += 1
                continue
            n = count.get(i, 0)
            count[i] = n + 1
            event_ids.setdefault(i, set()).add(r["event_id"])
            if n == 0:
                first[i] = r["t"]
                if originals is not None and len(r["wamids"]) == 1 and r["body_sha256"] == originals[i]:
                    identical += 1
    lags = sorted(first[i] - t for i, t in acks.items() if i in first)
    dup_wamids = sum(1 for n in count.values() if n > 1)
    duplicates = sum(n - 1 for n in count.values() if n > 1)
    dup_new_event = sum(1 for i, n in count.items() if n > 1 and len(event_ids[i]) > 1)
    delivered_ts = sorted(first.values())
    span = (delivered_ts[-1] - delivered_ts[0]) if len(delivered_ts) > 1 else 0.0
    return {
        "acked": len(acks),
        "delivered": len(first),
        "acked_delivered": len(lags),
        "missing": sorted(i for i in acks if i not in first),
        "unacked_delivered": sum(1 for i in first if i not in acks),
        "out_of_range": out_of_range,
        "duplicates": duplicates,
        "dup_wamids": dup_wamids,
        "dup_new_event_id": dup_new_event,
        "identical": identical,
        "lags": lags,
        "delivery_rate": (len(first) - 1) / span if span > 0 else float("nan"),
        "tail_s": (max(first[i] for i in acks if i in first) - max(acks.values())) if lags else float("nan"),
    }


def cmd_report(args):
    failed = False
    for backend in args.backends.split():
        d = os.path.join(args.dir, backend)
        o = load_json(os.path.join(d, "open.json"))
        rx = load_json(os.path.join(d, "received.json"))
        if o is None or rx is None:
            print(f"\n## webhook forwarding, {backend}: incomplete run (no {'open.json' if o is None else 'received.json'})")
            failed = True
            continue
        records = rx["records"]
        acks = read_acks(os.path.join(d, "open.acks"))
        warm_acks = read_acks(os.path.join(d, "warm.acks"))
        warm_o = load_json(os.path.join(d, "warm.json"), {})
        signed = os.path.join(args.dir, "open.txt")
        originals = body_hashes(signed) if os.path.exists(signed) else None
        a = analyse(records, "open", acks, o["scheduled"], originals)
        wa = analyse(records, "warm", warm_acks, warm_o.get("scheduled", 0), None)
        waits = [load_json(os.path.join(d, f), {}) for f in ("wait_warm.json", "wait_open.json")]
        lags = [x * 1000 for x in a["lags"]]

        problems, notes = [], []
        if a["missing"]:
            ex = ", ".join(f"wamid.open.{i}" for i in a["missing"][:5])
            problems.append(f"{len(a['missing'])} of {a['acked']} acknowledged events never delivered (e.g. {ex})")
        if wa["missing"]:
            problems.append(f"warm-up: {len(wa['missing'])} of {wa['acked']} acknowledged events never delivered")
        if rx["sig_mismatch"]:
            problems.append(f"{rx['sig_mismatch']} of {rx['requests']} deliveries with a wrong or missing X-Hub-Signature-256")
        if rx["idem_mismatch"]:
            problems.append(f"{rx['idem_mismatch']} of {rx['requests']} deliveries with a wrong or missing X-Idempotency-Key")
        failed |= bool(problems)
        if o["non2xx"] or o["errors"] or o["unanswered"]:
            notes.append(f"ingest: {o['non2xx']} non-2xx {o['statuses']}, {o['errors']} errors, "
                         f"{o['unanswered']} unanswered (those events are not counted as acknowledged)")
        retried = sum(1 for r in records if r.get("attempt") not in (None, "1"))
        if retried:
            notes.append(f"{retried} deliveries carried X-Wagate-Attempt > 1 (retries)")
        if rx["no_event_id"]:
            notes.append(f"{rx['no_event_id']} deliveries without X-Wagate-Event-Id")
        if rx["wrong_path"] or rx["bad_body"]:
            notes.append(f"{rx['wrong_path']} deliveries to another path than the destination's, "
                         f"{rx['bad_body']} bodies that are not a Meta envelope")
        if a["out_of_range"]:
            notes.append(f"{a['out_of_range']} delivered wamids that were never sent")
        if originals is not None and a["delivered"] and a["identical"] < a["delivered"]:
            notes.append(f"only {a['identical']} of {a['delivered']} first deliveries are byte-identical to Meta's body")
        if o["generator_max_lag_ms"] > 20:
            notes.append(f"NOISY: the load generator fell {o['generator_max_lag_ms']:.0f} ms behind its clock (CPU 0 busy?)")
        cpu = None
        cpu_path = os.path.join(d, "cpu.txt")
        if os.path.exists(cpu_path):
            (c0a_b, c0a_a, c1a_b, c1a_a, c1a_i, c0b_b, c0b_a, c1b_b, c1b_a, c1b_i,
             wag_a, wag_b, pg_a, pg_b, rx_a, rx_b, hz) = (float(x) for x in open(cpu_path).read().split())
            span1 = (c1b_a - c1a_a) or 1
            span0 = (c0b_a - c0a_a) or 1
            cpu = {"cpu0": 100 * (c0b_b - c0a_b) / span0, "cpu1": 100 * (c1b_b - c1a_b) / span1,
                   "wagate": 100 * (wag_b - wag_a) / span1, "pg": 100 * (pg_b - pg_a) / span1,
                   "irq": 100 * (c1b_i - c1a_i) / span1, "receiver": 100 * (rx_b - rx_a) / span0,
                   "wagate_us": (wag_b - wag_a) / hz * 1e6 / max(1, o["ok"]),
                   "pg_us": (pg_b - pg_a) / hz * 1e6 / max(1, o["ok"])}
            cpu["other"] = max(0.0, cpu["cpu1"] - cpu["wagate"] - cpu["pg"] - cpu["irq"])
            if args.pinned and cpu["other"] > 10:
                notes.append(f"NOISY: other processes used {cpu['other']:.0f}% of CPU 1 during the send phase")
            if args.pinned and cpu["cpu0"] > 90:
                notes.append(f"NOISY: CPU 0 (load generator + receiver) was {cpu['cpu0']:.0f}% busy: "
                             "receive times, hence lags, may be inflated")
        for w in waits:
            if w.get("timed_out"):
                notes.append(f"gave up waiting for {w['missing']} of {w['expected']} '{w['prefix']}' deliveries "
                             f"after {w['waited_s']:.0f} s")

        db = " + PostgreSQL" if backend == "postgres" else " (SQLite in-process)"
        where = ("wagate" + db + " on CPU 1; load generator + receiver on CPU 0" if args.pinned
                 else "wagate" + db + ", load generator and receiver unpinned on both CPUs")
        print(f"\n## webhook forwarding, {backend}  ({where})")
        print(f"open loop {o['rate_target']:.0f} events/s for {args.open_duration:.0f} s; lag = the receiver's "
              "receive time - wagate's 200 ack, per wamid, first delivery")
        print(f"    sent / acked        {o['sent']:>9} / {o['ok']}   at {o['rate_sent']:.0f}/s "
              f"(non-2xx {o['non2xx']}, errors {o['errors']}, unanswered {o['unanswered']})")
        print(f"    ack p50 / p99       {o['p50_ms']:>9.2f} / {o['p99_ms']:.2f} ms  (max {o['max_ms']:.1f} ms)")
        print(f"    delivered           {a['delivered']:>9}   distinct wamids ({a['acked_delivered']} of the "
              f"{a['acked']} acked; {len(a['missing'])} acked never delivered; {a['unacked_delivered']} delivered unacked)")
        print(f"    duplicates          {a['duplicates']:>9}   extra deliveries ({a['dup_wamids']} wamids; "
              f"{a['dup_new_event_id']} of them under another X-Wagate-Event-Id)")
        print(f"    bad signature / key {rx['sig_mismatch']:>9} / {rx['idem_mismatch']}   of {rx['requests']} "
              f"requests on {rx['connections']} connections")
        if lags:
            tgt = ""
            if backend == "postgres":
                met = pct(lags, 50) <= 20 and pct(lags, 99) <= 200 and not a["missing"]
                tgt = "  target p50 <= 20, p99 <= 200 ms: " + ("met" if met else "NOT met")
            print(f"    lag p50 / p90 / p99 {pct(lags, 50):>9.2f} / {pct(lags, 90):.2f} / {pct(lags, 99):.2f} ms{tgt}")
            print(f"    lag p99.9 / max     {pct(lags, 99.9):>9.2f} / {lags[-1]:.1f} ms   (min {lags[0]:.2f} ms)")
            print(f"    delivery rate       {a['delivery_rate']:>9.0f}/s; last delivery {a['tail_s'] * 1000:.0f} ms "
                  "after the last ack")
        else:
            print("    lag                       -   (nothing delivered)")
        print(f"    warm-up             {wa['acked']:>9} acked, {wa['delivered']} delivered, {wa['duplicates']} duplicates")
        if cpu:
            pg_part = f"PostgreSQL {cpu['pg']:.0f}%, " if backend == "postgres" else ""
            print(f"    CPU 1 busy          {cpu['cpu1']:>8.0f}%   (wagate {cpu['wagate']:.0f}%, {pg_part}irq/softirq "
                  f"{cpu['irq']:.0f}%, other processes {cpu['other']:.0f}%) during the send phase")
            print(f"    CPU 0 busy          {cpu['cpu0']:>8.0f}%   (receiver {cpu['receiver']:.0f}%; the rest is the "
                  "load generator and any other process)")
            print(f"    CPU per event       {cpu['wagate_us']:>8.0f} µs wagate"
                  + (f" + {cpu['pg_us']:.0f} µs PostgreSQL" if backend == "postgres" else " (incl. SQLite)")
                  + " (ingest + forward)")
        rss = open(os.path.join(d, "rss.txt")).read().strip() if os.path.exists(os.path.join(d, "rss.txt")) else ""
        warn_path = os.path.join(d, "warnings.txt")
        warnings = sum(1 for _ in open(warn_path)) if os.path.exists(warn_path) else 0
        print(f"wagate: RSS {int(rss or 0) / 1024:.1f} MiB after the run; {warnings} warning/error log lines")
        for n in notes:
            print(f"NOTE: {n}")
        print("checks (every acked event delivered, signatures and idempotency keys right): "
              + ("ok" if not problems else "FAILED"))
        for p in problems:
            print(f"  FAILED: {p}")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("receive")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--path", default="/hook")
    r.add_argument("--secret", required=True)
    r.add_argument("--out", required=True)
    o = sub.add_parser("open")
    o.add_argument("--url", required=True)
    o.add_argument("--file", required=True)
    o.add_argument("--rate", type=float, default=2000)
    o.add_argument("--duration", type=float, default=10)
    o.add_argument("--conns", type=int, default=32)
    o.add_argument("--max-conns", type=int, default=256)
    o.add_argument("--drain", type=float, default=15, help="seconds to wait for answers after the last send")
    o.add_argument("--out")
    o.add_argument("--acked-out", help="file to write the indexes of 2xx-answered events to")
    o.add_argument("--acks-out", required=True, help='file of "<index> <wall-clock ack time>" per 2xx answer')
    w = sub.add_parser("wait")
    w.add_argument("--url", required=True)
    w.add_argument("--acks", required=True)
    w.add_argument("--prefix", required=True)
    w.add_argument("--timeout", type=float, default=60)
    w.add_argument("--grace", type=float, default=1)
    rp = sub.add_parser("report")
    rp.add_argument("--dir", required=True)
    rp.add_argument("--backends", required=True)
    rp.add_argument("--rate", type=float, required=True)
    rp.add_argument("--open-duration", type=float, required=True)
    rp.add_argument("--pinned", type=int, default=1, help="0: nothing was pinned")
    args = p.parse_args()
    sys.exit({"receive": cmd_receive, "open": cmd_open, "wait": cmd_wait, "report": cmd_report}[args.cmd](args))


if __name__ == "__main__":
    main()
