#!/usr/bin/env python3
"""Helpers for bench/pacing.sh (Meta-aware pacing benchmark). Standard library only.

  open      --urls http://127.0.0.1:P[,http://…] --key K --pnid ID --rate R --duration D
            [--max-conns M] --out FILE
            Open-loop sends: request i is scheduled at t0 + i/R and sent (POST
            /meta/whatsapp/v24.0/{ID}/messages, a text to a recipient of its own) through the
            URLs in turn, on an idle keep-alive connection or a new one (up to M). Its latency is
            measured from the scheduled time to the end of the answer (coordinated omission
            corrected). Writes JSON: counts by outcome (sent = 200, 130429 = answered locally or
            by Meta, other) and latency percentiles per outcome.

  broadcast --url http://127.0.0.1:P --key K --pnid ID --recipients N --out FILE
            Creates a broadcast of N text sends (a Graph body each, 1,000 per add call), sends
            it, and polls it until it ends; writes JSON: recipients, sent, failed, status and
            the seconds from send to completion.

  report    --a FILE --a-rate FILE --b FILE --b-rate FILE --c FILE --c-rate FILE
            --limit-a N --limit-b N --max-wait-ms W
            Prints the table and exits 1 when a check fails: every sliding 1 s window at the
            emulator within the limit + 5 %; every request of (a) and (c) answered within
            max_wait + 50 ms; (b) completed within 105 s with every recipient sent.
"""
import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


class Pool:
    """Keep-alive HTTP/1.1 connections to one host."""

    def __init__(self, url, limit):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.idle = []
        self.open = 0
        self.limit = limit
        self.waiters = []

    async def get(self):
        if self.idle:
            return self.idle.pop()
        if self.open < self.limit:
            self.open += 1
            return await asyncio.open_connection(self.host, self.port)
        future = asyncio.get_running_loop().create_future()
        self.waiters.append(future)
        return await future

    def put(self, conn):
        if self.waiters:
            self.waiters.pop(0).set_result(conn)
        else:
            self.idle.append(conn)

    def drop(self):
        self.open -= 1


async def request(pool, method, path, headers, body, written=None):
    reader, writer = conn = await pool.get()
    try:
        if written is not None:
            written.append(time.perf_counter())
        head = f"{method} {path} HTTP/1.1\r\nHost: {pool.host}:{pool.port}\r\n"
        for k, v in headers.items():
            head += f"{k}: {v}\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        status = int(status_line.split()[1])
        length, retry_after = 0, None
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "retry-after":
                retry_after = value.strip()
        payload = await reader.readexactly(length) if length else b""
        pool.put(conn)
        return status, payload, retry_after
    except Exception:
        pool.drop()
        writer.close()
        raise


async def cmd_open_async(args):
    urls = args.urls.split(",")
    pools = [Pool(u, args.max_conns) for u in urls]
    headers = {"X-API-Key": args.key, "Content-Type": "application/json"}
    path = f"/meta/whatsapp/v24.0/{args.pnid}/messages"
    total = int(args.rate * args.duration)
    results = []
    t0 = time.perf_counter() + 0.2

    async def one(i):
        scheduled = t0 + i / args.rate
        body = json.dumps({
            "messaging_product": "whatsapp",
            "to": f"4470{i:07d}",
            "type": "text",
            "text": {"body": f"pacing bench {i}"},
        }).encode()
        written = []
        try:
            status, payload, retry_after = await request(pools[i % len(pools)], "POST", path, headers, body, written)
            code = None
            if status != 200:
                try:
                    code = json.loads(payload)["error"]["code"]
                except Exception:
                    code = None
            outcome = "sent" if status == 200 else ("130429" if code == 130429 else f"other:{status}:{code}")
        except Exception as e:  # noqa: BLE001
            outcome, retry_after = f"error:{type(e).__name__}", None
        done = time.perf_counter()
        # From the scheduled time (the generator's own lateness included) and from the moment
        # the request was written (what wagate is answerable for).
        results.append((outcome, done - scheduled, retry_after, done - (written[0] if written else scheduled)))

    tasks = []
    for i in range(total):
        delay = t0 + i / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    by = {}
    served = {}
    for outcome, latency, _, from_write in results:
        by.setdefault(outcome, []).append(latency * 1000)
        served.setdefault(outcome, []).append(from_write * 1000)
    summary = {
        "offered": total,
        "rate": args.rate,
        "duration_s": args.duration,
        "instances": len(urls),
        "outcomes": {k: len(v) for k, v in by.items()},
        "latency_ms": {
            k: {"p50": pct(v, 50), "p99": pct(v, 99), "max": max(v)} for k, v in by.items()
        },
        "served_ms": {
            k: {"p50": pct(v, 50), "p99": pct(v, 99), "max": max(v)} for k, v in served.items()
        },
        "retry_after_seen": sorted({r for o, _, r, _ in results if o == "130429" and r}),
    }
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary["outcomes"]))


def api(base, key, method, path, body=None):
    import urllib.request
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"X-API-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def cmd_broadcast(args):
    created = api(args.url, args.key, "POST", "/platform/v1/whatsapp/broadcasts",
                  {"whatsapp_broadcast": {"name": "pacing bench", "phone_number_id": args.pnid}})
    bid = created["data"]["id"]
    added = 0
    for start in range(0, args.recipients, 1000):
        items = [{"to": f"4480{i:07d}", "type": "text", "text": {"body": f"broadcast {i}"}}
                 for i in range(start, min(start + 1000, args.recipients))]
        answer = api(args.url, args.key, "POST", f"/platform/v1/whatsapp/broadcasts/{bid}/recipients",
                     {"whatsapp_broadcast": {"recipients": items}})
        added += answer["data"]["added"]
    print(f"added {added} recipients", flush=True)
    started = time.time()
    api(args.url, args.key, "POST", f"/platform/v1/whatsapp/broadcasts/{bid}/send")
    last = 0
    while True:
        time.sleep(1)
        view = api(args.url, args.key, "GET", f"/platform/v1/whatsapp/broadcasts/{bid}")["data"]
        if time.time() - last >= 10:
            last = time.time()
            print(f"  {time.time() - started:5.0f}s sent {view['sent_count']} pending {view['pending_count']}", flush=True)
        if view["status"] in ("completed", "failed", "stopped"):
            break
        if time.time() - started > 600:
            break
    seconds = (time.time() - started)
    # completed_at is the worker's own time; the poll adds up to a second.
    try:
        from datetime import datetime
        t0 = datetime.fromisoformat(view["started_at"].replace("Z", "+00:00"))
        t1 = datetime.fromisoformat(view["completed_at"].replace("Z", "+00:00"))
        seconds = (t1 - t0).total_seconds()
    except Exception:  # noqa: BLE001
        pass
    out = {"recipients": added, "sent": view["sent_count"], "failed": view["failed_count"],
           "status": view["status"], "seconds": seconds}
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(json.dumps(out))


def cmd_report(args):
    ok = True

    def check(cond, what):
        nonlocal ok
        if not cond:
            ok = False
            print(f"FAILED: {what}")

    load = lambda p: json.load(open(p))  # noqa: E731
    rows = []
    for name, run, rate, limit in [("a", args.a, args.a_rate, args.limit_a), ("c", args.c, args.c_rate, args.limit_a)]:
        if not run:
            continue
        r, w = load(run), load(rate)
        worst = w["max_in_any_second"]
        slowest = max(v["max"] for v in r["served_ms"].values())
        rows.append((name, r, w, limit, worst, slowest))
        check(worst <= limit * 1.05, f"({name}) {worst} sends in one second at the emulator, limit {limit} (+5%)")
        check(slowest <= args.max_wait_ms + 50, f"({name}) slowest answer {slowest:.0f} ms > max_wait + 50 ms")
        bad = {k: n for k, n in r["outcomes"].items() if k not in ("sent", "130429")}
        check(not bad, f"({name}) answers other than 200 or 130429: {bad}")
    print("| run | instances | offered/s | sent | 130429 | emulator max in any 1 s | limit | p99 sent ms | p99 130429 ms | slowest answer ms (from write) | slowest from schedule |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r, w, limit, worst, slowest in rows:
        lat = r["latency_ms"]
        print(f"| ({name}) | {r['instances']} | {r['rate']:.0f} | {r['outcomes'].get('sent', 0)} | "
              f"{r['outcomes'].get('130429', 0)} | {worst} | {limit} | {lat.get('sent', {}).get('p99', 0):.0f} | "
              f"{lat.get('130429', {}).get('p99', 0):.0f} | {slowest:.0f} | "
              f"{max(v['max'] for v in lat.values()):.0f} |")
    if args.b:
        b, w = load(args.b), load(args.b_rate)
        worst = w["max_in_any_second"]
        print()
        print("| run | recipients | sent | failed | seconds to complete | recipients/s | emulator max in any 1 s | limit |")
        print("|---|---|---|---|---|---|---|---|")
        print(f"| (b) | {b['recipients']} | {b['sent']} | {b['failed']} | {b['seconds']:.1f} | "
              f"{b['recipients'] / b['seconds']:.0f} | {worst} | {args.limit_b} |")
        check(b["status"] == "completed", f"(b) ended {b['status']}")
        check(b["sent"] == b["recipients"], f"(b) {b['sent']} of {b['recipients']} sent")
        check(b["seconds"] <= 105, f"(b) took {b['seconds']:.1f} s > 105 s")
        check(worst <= args.limit_b * 1.05, f"(b) {worst} sends in one second, limit {args.limit_b}")
        check(w["accepted"] == b["recipients"], f"(b) the emulator accepted {w['accepted']} sends for {b['recipients']} recipients")
    sys.exit(0 if ok else 1)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    o = sub.add_parser("open")
    o.add_argument("--urls", required=True)
    o.add_argument("--key", required=True)
    o.add_argument("--pnid", required=True)
    o.add_argument("--rate", type=float, required=True)
    o.add_argument("--duration", type=float, required=True)
    o.add_argument("--max-conns", type=int, default=1200)
    o.add_argument("--out", required=True)
    b = sub.add_parser("broadcast")
    b.add_argument("--url", required=True)
    b.add_argument("--key", required=True)
    b.add_argument("--pnid", required=True)
    b.add_argument("--recipients", type=int, default=100000)
    b.add_argument("--out", required=True)
    r = sub.add_parser("report")
    for name in ["a", "a-rate", "b", "b-rate", "c", "c-rate"]:
        r.add_argument(f"--{name}")
    r.add_argument("--limit-a", type=int, default=80)
    r.add_argument("--limit-b", type=int, default=1000)
    r.add_argument("--max-wait-ms", type=float, default=1000)
    args = parser.parse_args()
    if args.cmd == "open":
        asyncio.run(cmd_open_async(args))
    elif args.cmd == "broadcast":
        cmd_broadcast(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
