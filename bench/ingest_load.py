#!/usr/bin/env python3
"""Helpers for bench/ingest.sh (webhook ingest benchmark). Standard library only.

  sign   --secret S --prefix P --count N --out FILE
         Pre-signs N Meta webhook envelopes (one inbound text message each, unique wamid
         "wamid.<P>.<i>", 1-2 KiB, from one of --contacts senders, default 1,000) into FILE, one
         event per line: "<hex sha256 HMAC> <json body>".
         wrk's Lua script and the open-loop generator both read this format.

  open   --url URL --file FILE --rate R --duration D [--conns C] [--max-conns M] [--out JSON]
         Open-loop load at a fixed rate: request i is *scheduled* at t0 + i/R, sent on an idle
         keep-alive connection (queued if none is idle; more connections are opened up to M), and
         its latency is measured from the scheduled time to the end of the response, so a stall
         in the server shows up in the percentiles (coordinated-omission correction). Waits up to
         --drain seconds for the answers still due after the last send. Writes a JSON summary,
         and with --acked-out the indexes of the events answered 2xx.

  report --dir WORK --backends "postgres sqlite" ...
         Prints ingest.sh's table per backend from the files it left in WORK/<backend>/ and
         checks them (exit 1 on a failed check).

  verify --backend sqlite|postgres --db URL --prefix P --issued N [--acked FILE]
         Reads the stored messages whose wamid starts with "wamid.<P>." and prints JSON: stored
         rows, distinct wamids, duplicates, acknowledged indexes (from FILE) that are not stored
         ("lost"), stored indexes >= N ("out_of_range"), and the webhook_events row count.
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
from collections import deque
from urllib.parse import urlsplit

PNID = "100000000000001"
WABA = "200000000000001"


def envelope(wamid: str, size: int, rng: random.Random, contacts: int, media: bool = False) -> bytes:
    # media: an image with a caption (the text below), so ingest also queues a media vault job.
    content = (
        '"type":"image","image":{"mime_type":"image/jpeg","id":"media.%s","caption":"' % wamid
        if media
        else '"type":"text","text":{"body":"'
    )
    head = (
        '{"object":"whatsapp_business_account","entry":[{"id":"%s","changes":[{"field":"messages",'
        '"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550000001",'
        '"phone_number_id":"%s"},"contacts":[{"profile":{"name":"Bench User"},"wa_id":"%s"}],'
        '"messages":[{"from":"%s","id":"%s","timestamp":"%d",'
    ) + content
    wa_id = "1555%07d" % rng.randrange(contacts)
    prefix = head % (WABA, PNID, wa_id, wa_id, wamid, 1750000000 + rng.randrange(100000))
    tail = '"}}]}}]}]}'
    pad = max(0, size - len(prefix) - len(tail))
    alphabet = "abcdefghijklmnopqrstuvwxyz "
    text = "".join(rng.choice(alphabet) for _ in range(min(pad, 64)))
    text = (text * (pad // max(1, len(text)) + 1))[:pad]
    return (prefix + text + tail).encode()


def cmd_sign(args):
    rng = random.Random(args.seed)
    secret = args.secret.encode()
    with open(args.out, "wb") as out:
        for i in range(args.count):
            media = args.media_every > 0 and i % args.media_every == 0
            body = envelope(f"wamid.{args.prefix}.{i}", rng.randrange(1024, 2048), rng, args.contacts, media)
            sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
            out.write(sig.encode() + b" " + body + b"\n")


def load_events(path):
    events = []
    with open(path, "rb") as f:
        for line in f:
            sig, _, body = line.rstrip(b"\n").partition(b" ")
            events.append((sig, body))
    return events


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, gen):
        self.gen = gen
        self.transport = None
        self.buf = bytearray()
        self.current = None  # (index, scheduled time)
        self.need = None  # total bytes of the current response once headers are parsed
        self.status = 0
        self.close_after = False

    def connection_made(self, transport):
        self.transport = transport
        self.gen.connected(self)

    def send(self, index, scheduled):
        self.current = (index, scheduled)
        self.transport.write(self.gen.requests[index])

    def data_received(self, data):
        self.buf += data
        while self.current is not None:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                self.status = int(head[0].split(" ", 2)[1])
                length = 0
                self.close_after = False
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value.strip())
                    elif name == "connection" and value.strip().lower() == "close":
                        self.close_after = True
                self.need = end + 4 + length
            if len(self.buf) < self.need:
                return
            del self.buf[: self.need]
            self.need = None
            index, scheduled = self.current
            self.current = None
            self.gen.answered(self, index, scheduled, self.status)
            if self.close_after:
                self.transport.close()
                return

    def connection_lost(self, exc):
        self.gen.lost(self)


class OpenLoop:
    def __init__(self, args, events):
        u = urlsplit(args.url)
        self.host, self.port = u.hostname, u.port or 80
        path = u.path or "/"
        self.requests = [
            (
                f"POST {path} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
                f"X-Hub-Signature-256: sha256={sig.decode()}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            for sig, body in events
        ]
        self.rate = args.rate
        self.total = min(len(self.requests), int(args.rate * args.duration))
        self.max_conns = args.max_conns
        self.idle = deque()
        self.backlog = deque()
        self.conns = set()
        self.connecting = 0
        self.latencies = []
        self.statuses = {}
        self.connect_errors = 0
        self.dropped = 0  # connection closed with a request in flight (request not resent)
        self.outcome = bytearray(self.total)  # per event: 0 unanswered, 1 2xx, 2 other status, 3 dropped
        self.drain = args.drain
        self.sent = 0
        self.done_count = 0
        self.max_backlog = 0
        self.max_lag = 0.0  # how late the generator itself woke up to send (its own stalls)
        self.max_conns_seen = 0
        self.closing = False
        self.finished = None
        self.loop = None

    def spawn_conn(self):
        if len(self.conns) + self.connecting < self.max_conns:
            self.connecting += 1  # counted now, so a burst of dispatches cannot overshoot max_conns
            self.loop.create_task(self.open_conn())

    async def open_conn(self):
        try:
            await self.loop.create_connection(lambda: Conn(self), self.host, self.port)
        except OSError as e:
            self.connect_errors += 1
            self.last_connect_error = repr(e)
        finally:
            self.connecting -= 1

    def connected(self, conn):
        self.conns.add(conn)
        self.max_conns_seen = max(self.max_conns_seen, len(self.conns))
        self.release(conn)

    def release(self, conn):
        if self.backlog:
            index, scheduled = self.backlog.popleft()
            conn.send(index, scheduled)
        else:
            self.idle.append(conn)

    def dispatch(self, index, scheduled):
        self.sent += 1
        while self.idle:
            conn = self.idle.popleft()
            if conn in self.conns:
                conn.send(index, scheduled)
                return
        self.backlog.append((index, scheduled))
        self.max_backlog = max(self.max_backlog, len(self.backlog))
        self.spawn_conn()

    def answered(self, conn, index, scheduled, status):
        now = self.loop.time()
        self.latencies.append(now - scheduled)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.outcome[index] = 1 if 200 <= status < 300 else 2
        self.done_count += 1
        if not conn.close_after:
            self.release(conn)
        self.check_done()

    def lost(self, conn):
        self.conns.discard(conn)
        if conn.current is not None and not self.closing:
            # The request on this connection got no answer: count it as an error, don't resend
            # (a benchmark, not a delivery client; ingest.sh reports any error).
            self.dropped += 1
            self.outcome[conn.current[0]] = 3
            self.done_count += 1
            conn.current = None
        if self.backlog and not self.closing:
            self.spawn_conn()
        self.check_done()

    def check_done(self):
        if self.sent == self.total and self.done_count == self.total and not self.finished.done():
            self.finished.set_result(None)

    async def run(self, conns):
        self.loop = asyncio.get_running_loop()
        self.finished = self.loop.create_future()
        self.connecting += conns
        await asyncio.gather(*(self.open_conn() for _ in range(conns)))
        if not self.conns:
            raise SystemExit("open loop: cannot connect to %s:%d" % (self.host, self.port))
        t0 = self.loop.time() + 0.05
        interval = 1.0 / self.rate
        i = 0
        while i < self.total:
            now = self.loop.time()
            due = min(self.total, int((now - t0) / interval) + 1)
            if i < due:
                self.max_lag = max(self.max_lag, now - (t0 + i * interval))
            while i < due:
                self.dispatch(i, t0 + i * interval)
                i += 1
            if i < self.total:
                await asyncio.sleep(max(0.0, t0 + i * interval - self.loop.time()))
        send_end = self.loop.time()
        try:
            await asyncio.wait_for(self.finished, timeout=self.drain)
        except asyncio.TimeoutError:
            pass
        self.closing = True  # what is still in flight now counts as unanswered
        for conn in list(self.conns):
            conn.transport.close()
        return send_end - t0


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def cmd_open(args):
    events = load_events(args.file)
    gen = OpenLoop(args, events)
    if gen.total < int(args.rate * args.duration):
        print(f"open loop: only {len(events)} events in {args.file}; sending {gen.total}", file=sys.stderr)
    elapsed = asyncio.run(gen.run(args.conns))
    lat = sorted(gen.latencies)
    ok = sum(n for s, n in gen.statuses.items() if 200 <= s < 300)
    summary = {
        "scheduled": gen.total,
        "sent": gen.sent,
        "answered": len(lat),
        "ok": ok,
        "non2xx": len(lat) - ok,
        "errors": gen.connect_errors + gen.dropped,
        "connect_errors": gen.connect_errors,
        "dropped": gen.dropped,
        "unanswered": gen.total - gen.done_count,
        "statuses": {str(k): v for k, v in sorted(gen.statuses.items())},
        "rate_target": args.rate,
        "rate_sent": gen.sent / elapsed if elapsed > 0 else 0,
        "p50_ms": pct(lat, 50) * 1000,
        "p90_ms": pct(lat, 90) * 1000,
        "p99_ms": pct(lat, 99) * 1000,
        "p999_ms": pct(lat, 99.9) * 1000,
        "max_ms": (lat[-1] if lat else float("nan")) * 1000,
        "connections": gen.max_conns_seen,
        "max_backlog": gen.max_backlog,
        "generator_max_lag_ms": gen.max_lag * 1000,
    }
    if args.acked_out:
        with open(args.acked_out, "w") as f:
            f.write("".join(f"{i}\n" for i, o in enumerate(gen.outcome) if o == 1))
    text = json.dumps(summary)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


def stored_wamids(backend, db, prefix):
    like = f"wamid.{prefix}.%"
    query = f"select wamid from messages where wamid like '{like}'"
    if backend == "sqlite":
        import sqlite3

        path = db[len("sqlite://"):] if db.startswith("sqlite://") else db
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        wamids = [r[0] for r in con.execute(query)]
        events = con.execute("select count(*) from webhook_events").fetchone()[0]
        con.close()
    else:
        out = subprocess.run(["psql", db, "-XAtc", query], check=True, capture_output=True, text=True)
        wamids = out.stdout.split()
        out = subprocess.run(["psql", db, "-XAtc", "select count(*) from webhook_events"],
                             check=True, capture_output=True, text=True)
        events = int(out.stdout.strip())
    return wamids, events


def cmd_verify(args):
    wamids, events = stored_wamids(args.backend, args.db, args.prefix)
    cut = len(f"wamid.{args.prefix}.")
    indexes = [int(w[cut:]) for w in wamids]
    stored = set(indexes)
    duplicates = len(indexes) - len(stored)
    out_of_range = sum(1 for i in stored if i >= args.issued)
    lost = 0
    if args.acked:
        with open(args.acked) as f:
            acked = {int(line) for line in f if line.strip()}
        lost = len(acked - stored)
    print(json.dumps({"stored": len(indexes), "distinct": len(stored), "duplicates": duplicates,
                      "lost": lost, "out_of_range": out_of_range, "webhook_events": events}))


def parse_wrk(path):
    import re

    text = open(path).read()
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def ms(value):
        m = re.match(r"([\d.]+)(us|ms|s)$", value)
        return float(m.group(1)) * units[m.group(2)]

    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for p in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % p, text, re.M)
        out[f"p{p}_ms"] = ms(m.group(1)) if m else float("nan")
    lua = re.search(r"^LUA issued=(\d+) ok=(\d+) non2xx=(\d+) exhausted=(\d+)", text, re.M)
    out.update(zip(("issued", "ok", "non2xx", "exhausted"), map(int, lua.groups())))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(map(int, m.groups())) if m else 0
    return out


def open_runs(d):
    """The open-loop runs ingest.sh left in d: (label, rate, summary, verification)."""
    runs = []
    for label in ("low", "target"):
        path = os.path.join(d, f"open_{label}.json")
        if os.path.exists(path):
            o = json.load(open(path))
            v = json.load(open(os.path.join(d, f"verify_open_{label}.json")))
            checkpoints = os.path.join(d, f"open_{label}.checkpoints")
            o["checkpoints"] = int(open(checkpoints).read()) if os.path.exists(checkpoints) else 0
            runs.append((label, o["rate_target"], o, v))
    return runs


def cmd_report(args):
    failed = False
    for backend in args.backends.split():
        d = os.path.join(args.dir, backend)
        w = parse_wrk(os.path.join(d, "wrk.txt"))
        warm = parse_wrk(os.path.join(d, "warm.txt"))
        vc = json.load(open(os.path.join(d, "verify_closed.json")))
        c1a_busy, c1a_all, c1a_irq, c1b_busy, c1b_all, c1b_irq, wa, wb, pa, pb, hz = (
            float(x) for x in open(os.path.join(d, "cpu.txt")).read().split())
        rss_kb = int(open(os.path.join(d, "rss.txt")).read().strip() or 0)
        warnings = sum(1 for _ in open(os.path.join(d, "warnings.txt")))
        span = (c1b_all - c1a_all) or 1
        cpu1 = 100 * (c1b_busy - c1a_busy) / span
        wagate_pct = 100 * (wb - wa) / span
        pg_pct = 100 * (pb - pa) / span
        irq_pct = 100 * (c1b_irq - c1a_irq) / span  # loopback TCP processing, mostly
        other_pct = max(0.0, cpu1 - wagate_pct - pg_pct - irq_pct)
        events = max(1, w["ok"])
        wagate_us = (wb - wa) / hz * 1e6 / events
        pg_us = (pb - pa) / hz * 1e6 / events
        all_us = (c1b_busy - c1a_busy) / hz * 1e6 / events

        problems, notes = [], []
        if w["non2xx"] or w["socket_errors"] or warm["non2xx"]:
            problems.append(f"closed loop: {w['non2xx']} non-2xx, {w['socket_errors']} socket errors "
                            f"(warm-up: {warm['non2xx']} non-2xx)")
        if w["exhausted"]:
            problems.append("closed loop ran out of pre-signed events (raise EVENTS)")
        # wrk drops the requests in flight when it stops (at most c); wagate may have committed
        # them, so the stored count lies between the 2xx answers and the events issued.
        if not (w["ok"] <= vc["stored"] <= w["issued"]):
            problems.append(f"closed loop: {vc['stored']} stored, outside [2xx {w['ok']}, issued {w['issued']}]")
        if vc["duplicates"] or vc["out_of_range"]:
            problems.append(f"closed loop: {vc['duplicates']} duplicate wamids, {vc['out_of_range']} never sent")
        runs = open_runs(d)
        for label, rate, o, v in runs:
            what = f"open loop {rate:.0f}/s"
            if o["non2xx"]:
                problems.append(f"{what}: {o['non2xx']} non-2xx answers {o['statuses']}")
            if o["dropped"] or o["connect_errors"]:
                problems.append(f"{what}: {o['dropped']} requests dropped with their connection, "
                                f"{o['connect_errors']} failed connects")
            if v["lost"]:
                problems.append(f"{what}: {v['lost']} acknowledged events not stored")
            if v["duplicates"] or v["out_of_range"]:
                problems.append(f"{what}: {v['duplicates']} duplicate wamids, {v['out_of_range']} never sent")
            late = v["stored"] - o["ok"]
            if o["unanswered"]:
                notes.append(f"OVERLOADED at {rate:.0f}/s: {o['unanswered']} of {o['scheduled']} events still "
                             f"unanswered {args.drain:.0f} s after the last send ({late} of them already stored)")
            elif late:
                problems.append(f"{what}: {v['stored']} stored but {o['ok']} answered 2xx")
        for label, rate, o, v in runs:
            if o["generator_max_lag_ms"] > max(20.0, 0.2 * o["p99_ms"]):
                notes.append(f"NOISY: the load generator itself fell {o['generator_max_lag_ms']:.0f} ms behind its "
                             f"clock at {rate:.0f}/s (CPU 0 busy?): that run's latencies are inflated")
        if other_pct > 10 and args.pinned:
            notes.append(f"NOISY: other processes used {other_pct:.0f}% of CPU 1 during the closed loop")
        failed |= bool(problems)

        db = " + PostgreSQL" if backend == "postgres" else " (SQLite in-process)"
        cpu = "CPU 1" if args.pinned else "CPU"
        where = (f"wagate{db} on CPU 1, load generator on CPU 0" if args.pinned
                 else f"wagate{db} and the load generator unpinned on all CPUs")
        print(f"\n## webhook ingest, {backend}  ({where})")
        print(f"(a) closed loop  wrk -t1 -c{args.conns} -d{args.duration}, unique 1-2 KiB events")
        tgt = ("  target >= 5,000/s: " + ("met" if w["rps"] >= 5000 else "NOT met")) if backend == "postgres" else ""
        print(f"    events/s            {w['rps']:>9.0f}{tgt}")
        print(f"    ack p50 / p90 / p99 {w['p50_ms']:>9.2f} / {w['p90_ms']:.2f} / {w['p99_ms']:.2f} ms")
        print(f"    2xx / non-2xx       {w['ok']:>9} / {w['non2xx']}   (issued {w['issued']}, stored {vc['stored']})")
        pg_part = f"PostgreSQL {pg_pct:.0f}%, " if backend == "postgres" else ""
        print(f"    {cpu + ' busy':<20}{cpu1:>8.0f}%   (wagate {wagate_pct:.0f}%, {pg_part}"
              f"irq/softirq {irq_pct:.0f}%, other processes {other_pct:.0f}%)")
        print(f"    CPU per event       {wagate_us:>8.0f} µs wagate" + (f" + {pg_us:.0f} µs PostgreSQL" if backend == "postgres" else " (incl. SQLite)")
              + f"; {all_us:.0f} µs of {cpu} in all")
        for label, rate, o, v in runs:
            print(f"(b) open loop    {rate:.0f} events/s for {args.open_duration:.0f} s, latency from the scheduled send"
                  + ("  [half the closed-loop rate]" if label == "low" else ""))
            print(f"    sent                {o['sent']:>9} at {o['rate_sent']:.0f}/s on up to {o['connections']} connections "
                  f"(max queue {o['max_backlog']}; generator's own worst lag {o['generator_max_lag_ms']:.1f} ms)")
            verdict = "met" if o["p99_ms"] < 50 and not o["unanswered"] else "NOT met"
            print(f"    ack p50 / p90 / p99 {o['p50_ms']:>9.2f} / {o['p90_ms']:.2f} / {o['p99_ms']:.2f} ms"
                  + (f"  target p99 < 50 ms: {verdict}" if label == "target" else ""))
            print(f"    ack p99.9 / max     {o['p999_ms']:>9.2f} / {o['max_ms']:.1f} ms")
            if o["checkpoints"]:
                print(f"    checkpoints         {o['checkpoints']:>9} began during this run (PostgreSQL's "
                      "full-page writes after one stall commits; see ingest.sh)")
            print(f"    2xx / non-2xx       {o['ok']:>9} / {o['non2xx']}   (dropped {o['dropped']}, unanswered "
                  f"{o['unanswered']}, stored {v['stored']}, acknowledged but not stored {v['lost']})")
        last = runs[-1][3] if runs else vc
        print(f"wagate: RSS {rss_kb / 1024:.1f} MiB after the run; {warnings} warning/error log lines; "
              f"webhook_events rows {last['webhook_events']}")
        for n in notes:
            print(f"NOTE: {n}")
        print("checks (no errors, every 2xx stored, each wamid once): " + ("ok" if not problems else "FAILED"))
        for p in problems:
            print(f"  FAILED: {p}")
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--secret", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--contacts", type=int, default=1000, help="senders (wa_id) the events are drawn from")
    s.add_argument("--media-every", type=int, default=0, help="every Nth event is an image (0: none)")
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
    v = sub.add_parser("verify")
    v.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    v.add_argument("--db", required=True)
    v.add_argument("--prefix", required=True)
    v.add_argument("--issued", type=int, required=True, help="events 0..issued-1 were sent")
    v.add_argument("--acked", help="file of 2xx-answered indexes (all must be stored)")
    r = sub.add_parser("report")
    r.add_argument("--dir", required=True)
    r.add_argument("--backends", required=True)
    r.add_argument("--conns", required=True)
    r.add_argument("--duration", required=True)
    r.add_argument("--rate", type=float, required=True)
    r.add_argument("--open-duration", type=float, required=True)
    r.add_argument("--pinned", type=int, default=1, help="0: nothing was pinned (CPU figures are whole-machine)")
    r.add_argument("--drain", type=float, default=15)
    args = p.parse_args()
    sys.exit({"sign": cmd_sign, "open": cmd_open, "verify": cmd_verify, "report": cmd_report}[args.cmd](args))


if __name__ == "__main__":
    main()
