#!/usr/bin/env python3
"""Helpers for bench/webhooks.sh (three webhooks on one number vs none). Standard library only;
builds on bench/forward_load.py (its HTTP/1.1 receiver connection, its timed open loop, which
webhooks.sh calls directly as `forward_load.py open`).

  receive --port P --meta-secret S --out FILE [--host 127.0.0.1]
          One receiver process serving three paths, answering every request "200 OK" (empty body):
            /meta            Meta's payload: X-Hub-Signature-256 = sha256=<hex HMAC(S, raw body)>,
                             X-Idempotency-Key = hex SHA-256 of the raw body; wamids in
                             entry[].changes[].value.messages[].id.
            /kapso           Kapso v2 events: X-Webhook-Signature = lowercase hex HMAC-SHA256 with
            /kapso-buffered  the path's secret_key (POST /_secrets), X-Webhook-Event =
                             whatsapp.message.received, X-Webhook-Payload-Version = v2,
                             X-Idempotency-Key present; the wamid in message.id, or, for a batch
                             (body "batch": true), in every data[].message.id, with X-Webhook-Batch:
                             true and X-Batch-Size = len(data).
          Per path it records the wall-clock time (time.time()) each request was complete, its
          wamids, idempotency key, attempt and the checks. Control endpoints (not recorded):
            GET  /_status   -> {"requests", "missing", per path {...}}
            POST /_secrets  JSON {"/kapso": "<secret_key>", "/kapso-buffered": "<secret_key>"}
            POST /_expect   JSON {"paths": [...], "wamids": [...]}: the set each listed path's
                            "missing" counts down from (replaces the previous one).
          On SIGTERM/SIGINT it writes FILE (JSON, per path: counters and records) and exits 0.

  wait    --url http://127.0.0.1:P --acks FILE --prefix P --paths "/meta /kapso" [--timeout 60] [--grace 1]
          Tells the receiver which wamids were acknowledged and on which paths they are due, polls
          until every path has all of them or --timeout passed, then waits --grace s more (late
          duplicates). Prints JSON {"expected", "missing", "missing_by_path", "waited_s"}.

  report  --dir WORK --runs "r1-none r1-three ..." --rate R --open-duration D [--pinned 1]
          Prints webhooks.sh's table: ack p50/p99 per mode (median over rounds), the ratio
          three/none, per path lag and delivery checks, CPU shares. Exits 1 on a missing delivery,
          a duplicate that is not a retry of the same delivery (same X-Idempotency-Key), a bad
          signature or wrong Kapso headers, or an incomplete run.
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import statistics
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import forward_load  # noqa: E402

pct = forward_load.pct
read_acks = forward_load.read_acks
load_json = forward_load.load_json

PATHS = ("/meta", "/kapso", "/kapso-buffered")
EVENT = "whatsapp.message.received"


# ---------------------------------------------------------------------------------------- receive

class PathStat:
    def __init__(self, path):
        self.path = path
        self.records = []
        self.received = set()
        self.missing = set()
        self.requests = 0
        self.batches = 0  # requests carrying a batch body
        self.sig_bad = 0
        self.idem_bad = 0
        self.header_bad = 0  # Kapso: wrong X-Webhook-Event / payload version / batch headers
        self.bad_body = 0
        self.first_t = None
        self.last_t = None

    def status(self):
        return {"requests": self.requests, "distinct": len(self.received), "missing": len(self.missing),
                "batches": self.batches, "sig_bad": self.sig_bad, "idem_bad": self.idem_bad,
                "header_bad": self.header_bad, "bad_body": self.bad_body,
                "first_t": self.first_t, "last_t": self.last_t}


def kapso_wamids(doc):
    """(wamids, is_batch) of a Kapso v2 body; None if it is not one."""
    if not isinstance(doc, dict):
        return None
    if doc.get("batch") is True:
        items = doc.get("data")
        if not isinstance(items, list):
            return None
        batch = True
    else:
        items, batch = [doc], False
    out = []
    for it in items:
        m = it.get("message") if isinstance(it, dict) else None
        if not isinstance(m, dict) or "id" not in m:
            return None
        out.append(m["id"])
    return out, batch


class MultiReceiver:
    """forward_load.HookConn's receiver interface (hook, control, connections, other_requests)."""

    def __init__(self, meta_secret):
        self.secrets = {"/meta": meta_secret.encode()}
        self.stats = {p: PathStat(p) for p in PATHS}
        self.connections = 0
        self.other_requests = 0
        self.wrong_path = 0

    def hook(self, path, headers, body, t):
        st = self.stats.get(path)
        if st is None:
            self.wrong_path += 1
            return
        st.requests += 1
        if st.first_t is None:
            st.first_t = t
        st.last_t = t
        idem = headers.get("x-idempotency-key")
        attempt = headers.get("x-wagate-attempt")
        secret = self.secrets.get(path)
        if path == "/meta":
            sig = headers.get("x-hub-signature-256")
            want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
            sig_ok = sig is not None and hmac.compare_digest(sig.encode("latin-1"), want.encode())
            idem_ok = idem is not None and idem == hashlib.sha256(body).hexdigest()
            header_ok = True
            wamids = forward_load.envelope_wamids(body)
            batch = False
        else:
            sig = headers.get("x-webhook-signature")
            sig_ok = (secret is not None and sig is not None and hmac.compare_digest(
                sig.encode("latin-1"), hmac.new(secret, body, hashlib.sha256).hexdigest().encode()))
            idem_ok = bool(idem)
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            got = kapso_wamids(doc)
            wamids, batch = got if got is not None else (None, False)
            header_ok = (headers.get("x-webhook-event") == EVENT
                         and headers.get("x-webhook-payload-version") == "v2")
            if batch:
                header_ok = (header_ok and doc.get("type") == EVENT
                             and headers.get("x-webhook-batch") == "true"
                             and headers.get("x-batch-size") == str(len(wamids)))
            else:
                header_ok = header_ok and headers.get("x-webhook-batch") is None
        st.batches += batch
        st.sig_bad += not sig_ok
        st.idem_bad += not idem_ok
        st.header_bad += not header_ok
        if wamids is None:
            st.bad_body += 1
            wamids = []
        for w in wamids:
            st.received.add(w)
            st.missing.discard(w)
        st.records.append({"t": t, "wamids": wamids, "idem": idem, "attempt": attempt,
                           "sig_ok": sig_ok, "idem_ok": idem_ok, "header_ok": header_ok,
                           "batch": batch, "bytes": len(body)})

    def status(self):
        per = {p: s.status() for p, s in self.stats.items()}
        return {"requests": sum(s.requests for s in self.stats.values()),
                "missing": sum(s["missing"] for s in per.values()),
                "connections": self.connections, "wrong_path": self.wrong_path, "paths": per}

    def control(self, method, path, body):
        if method == "POST" and path == "/_secrets":
            for p, s in json.loads(body).items():
                self.secrets[p] = s.encode()
        elif method == "POST" and path == "/_expect":
            doc = json.loads(body)
            expected = set(doc["wamids"])
            for p, st in self.stats.items():
                st.missing = (expected - st.received) if p in doc["paths"] else set()
        return json.dumps(self.status()).encode()

    def dump(self, out):
        doc = self.status()
        doc["other_requests"] = self.other_requests
        doc["records"] = {p: s.records for p, s in self.stats.items()}
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, out)


async def serve(args):
    rx = MultiReceiver(args.meta_secret)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(lambda: forward_load.HookConn(rx), args.host, args.port,
                                      backlog=1024, reuse_address=True)
    print(f"receiver on http://{args.host}:{args.port} {' '.join(PATHS)}", file=sys.stderr, flush=True)
    await stop
    server.close()
    rx.dump(args.out)


def cmd_receive(args):
    asyncio.run(serve(args))
    return 0


# ------------------------------------------------------------------------------------------- wait

def http(url, data=None):
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
        return json.loads(r.read() or b"{}")


def cmd_wait(args):
    acks = read_acks(args.acks)
    base = args.url.rstrip("/")
    paths = args.paths.split()
    body = json.dumps({"paths": paths, "wamids": [f"wamid.{args.prefix}.{i}" for i in acks]}).encode()
    st = http(base + "/_expect", body)
    t0 = time.monotonic()
    while st["missing"] and time.monotonic() - t0 < args.timeout:
        time.sleep(0.05)
        st = http(base + "/_status")
    waited = time.monotonic() - t0
    if args.grace > 0:
        time.sleep(args.grace)
    print(json.dumps({"prefix": args.prefix, "expected": len(acks), "missing": st["missing"],
                      "missing_by_path": {p: st["paths"][p]["missing"] for p in paths},
                      "waited_s": round(waited, 3), "timed_out": bool(st["missing"])}))
    return 0


# ----------------------------------------------------------------------------------------- report

def analyse(records, prefix, acks, sent):
    """One path's deliveries of "wamid.<prefix>.<i>" against the 2xx acks (index -> wall time)."""
    cut = f"wamid.{prefix}."
    first, seen = {}, {}
    retries = others = out_of_range = 0
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
            if i not in first:
                first[i] = r["t"]
                seen[i] = r["idem"]
            elif r["idem"] == seen[i]:
                retries += 1  # the same delivery again (a retry after a lost answer)
            else:
                others += 1  # the event delivered again as another delivery
    lags = sorted((first[i] - t) * 1000 for i, t in acks.items() if i in first)
    return {"delivered": len(first), "missing": sorted(i for i in acks if i not in first),
            "unacked_delivered": sum(1 for i in first if i not in acks), "out_of_range": out_of_range,
            "dup_retry": retries, "dup_other": others, "lags": lags}


def cpu_shares(path, ok):
    if not os.path.exists(path):
        return None
    (c0a_b, c0a_a, c1a_b, c1a_a, c1a_i, c0b_b, c0b_a, c1b_b, c1b_a, c1b_i,
     wag_a, wag_b, pg_a, pg_b, rx_a, rx_b, hz) = (float(x) for x in open(path).read().split())
    span1 = (c1b_a - c1a_a) or 1
    span0 = (c0b_a - c0a_a) or 1
    cpu = {"cpu0": 100 * (c0b_b - c0a_b) / span0, "cpu1": 100 * (c1b_b - c1a_b) / span1,
           "wagate": 100 * (wag_b - wag_a) / span1, "pg": 100 * (pg_b - pg_a) / span1,
           "irq": 100 * (c1b_i - c1a_i) / span1, "receiver": 100 * (rx_b - rx_a) / span0,
           "wagate_us": (wag_b - wag_a) / hz * 1e6 / max(1, ok), "pg_us": (pg_b - pg_a) / hz * 1e6 / max(1, ok)}
    cpu["other"] = max(0.0, cpu["cpu1"] - cpu["wagate"] - cpu["pg"] - cpu["irq"])
    return cpu


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def cmd_report(args):
    failed = False
    problems, notes = [], []
    runs = []
    for name in args.runs.split():
        d = os.path.join(args.dir, name)
        mode = name.split("-", 1)[1]
        o = load_json(os.path.join(d, "open.json"))
        rx = load_json(os.path.join(d, "received.json"))
        if o is None or rx is None:
            problems.append(f"{name}: incomplete run (no {'open.json' if o is None else 'received.json'})")
            continue
        run = {"name": name, "mode": mode, "o": o, "rx": rx, "cpu": cpu_shares(os.path.join(d, "cpu.txt"), o["ok"]),
               "paths": {}}
        acks = read_acks(os.path.join(d, "open.acks"))
        warm_acks = read_acks(os.path.join(d, "warm.acks"))
        warm_sent = load_json(os.path.join(d, "warm.json"), {}).get("scheduled", 0)
        pf = os.path.join(d, "paths.txt")
        due = open(pf).read().split() if os.path.exists(pf) else (PATHS if mode == "three" else ())
        run["due"] = due
        for p in PATHS:
            st, recs = rx["paths"][p], rx["records"][p]
            if p not in due:
                if st["requests"]:
                    problems.append(f"{name}: {st['requests']} deliveries to {p}, which has no webhook in this mode")
                continue
            a = analyse(recs, "open", acks, o["scheduled"])
            wa = analyse(recs, "warm", warm_acks, warm_sent)
            a["st"] = st
            run["paths"][p] = a
            if a["missing"]:
                ex = ", ".join(f"wamid.open.{i}" for i in a["missing"][:3])
                problems.append(f"{name} {p}: {len(a['missing'])} of {len(acks)} acked events never delivered (e.g. {ex})")
            if wa["missing"]:
                problems.append(f"{name} {p}: warm-up, {len(wa['missing'])} of {len(warm_acks)} acked events never delivered")
            if a["dup_other"] or wa["dup_other"]:
                problems.append(f"{name} {p}: {a['dup_other'] + wa['dup_other']} duplicate deliveries under another "
                                "X-Idempotency-Key (not retries)")
            for k, what in (("sig_bad", "bad signatures"), ("idem_bad", "bad/missing X-Idempotency-Key"),
                            ("header_bad", "wrong Kapso headers"), ("bad_body", "unparsable bodies")):
                if st[k]:
                    problems.append(f"{name} {p}: {st[k]} of {st['requests']} requests with {what}")
            if a["out_of_range"]:
                notes.append(f"{name} {p}: {a['out_of_range']} delivered wamids that were never sent")
        if rx.get("wrong_path"):
            problems.append(f"{name}: {rx['wrong_path']} deliveries to an unknown path")
        if o["non2xx"] or o["errors"] or o["unanswered"]:
            notes.append(f"{name}: ingest {o['non2xx']} non-2xx {o['statuses']}, {o['errors']} errors, "
                         f"{o['unanswered']} unanswered (not counted as acknowledged)")
        if o["generator_max_lag_ms"] > 20:
            notes.append(f"{name}: NOISY, the load generator fell {o['generator_max_lag_ms']:.0f} ms behind its clock")
        cpu = run["cpu"]
        if cpu and args.pinned and cpu["other"] > 10:
            notes.append(f"{name}: NOISY, other processes used {cpu['other']:.0f}% of CPU 1 during the send phase")
        if cpu and args.pinned and cpu["cpu0"] > 90:
            notes.append(f"{name}: NOISY, CPU 0 (generator + receiver) {cpu['cpu0']:.0f}% busy: acks and "
                         "receive times may be late")
        for f in ("wait_warm.json", "wait_open.json"):
            w = load_json(os.path.join(d, f), {})
            if w.get("timed_out"):
                notes.append(f"{name}: gave up waiting for {w['missing_by_path']} '{w['prefix']}' deliveries "
                             f"after {w['waited_s']:.0f} s")
        wp = os.path.join(d, "warnings.txt")
        run["warnings"] = sum(1 for _ in open(wp)) if os.path.exists(wp) else 0
        rp = os.path.join(d, "rss.txt")
        run["rss"] = int(open(rp).read().strip() or 0) / 1024 if os.path.exists(rp) else 0
        runs.append(run)

    where = ("wagate + PostgreSQL on CPU 1; load generator + receiver on CPU 0" if args.pinned
             else "wagate, PostgreSQL, load generator and receiver unpinned")
    print(f"\n## three webhooks vs none, PostgreSQL  ({where})")
    print(f"open loop {args.rate:.0f} events/s for {args.open_duration:.0f} s per run; modes alternate; "
          "ack = scheduled send -> 200 read; lag = receive time - 200 ack, per wamid, first delivery")
    print(f"  {'run':<10} {'sent/acked':>13} {'ack p50':>8} {'p99':>8} {'max':>8}  {'CPU1':>5} {'wagate':>6} "
          f"{'PG':>4} {'CPU0':>5} {'recv':>5}  {'µs/ev wagate+PG':>16}  RSS")
    for r in runs:
        o, c = r["o"], r["cpu"] or {}
        print(f"  {r['name']:<10} {o['sent']:>6}/{o['ok']:<6} {o['p50_ms']:>8.2f} {o['p99_ms']:>8.2f} {o['max_ms']:>8.1f}"
              f"  {c.get('cpu1', 0):>4.0f}% {c.get('wagate', 0):>5.0f}% {c.get('pg', 0):>3.0f}% {c.get('cpu0', 0):>4.0f}%"
              f" {c.get('receiver', 0):>4.0f}%  {c.get('wagate_us', 0):>7.0f} + {c.get('pg_us', 0):<6.0f}"
              f"  {r['rss']:.0f} MiB, {r['warnings']} warn")
    modes = []
    for r in runs:
        if r["mode"] not in modes:
            modes.append(r["mode"])
    by = {m: [r for r in runs if r["mode"] == m] for m in modes}
    summary = {}
    for m, rs in by.items():
        summary[m] = {k: med([r["o"][k] for r in rs]) for k in ("p50_ms", "p99_ms", "max_ms")}
        summary[m]["n"] = len(rs)
        summary[m]["wagate_us"] = med([r["cpu"]["wagate_us"] for r in rs if r["cpu"]])
        summary[m]["pg_us"] = med([r["cpu"]["pg_us"] for r in rs if r["cpu"]])
    base = summary.get("none")
    print("\n  ack, median over rounds (ms)   p50      p99      max   p99/none   µs/event wagate+PG   rounds")
    for m in modes:
        x = summary[m]
        ratio = x["p99_ms"] / base["p99_ms"] if base and base["p99_ms"] else float("nan")
        tgt = ""
        if m == "three" and base:
            tgt = "   target p99 <= 1.30x none: " + ("met" if ratio <= 1.3 else f"NOT met ({ratio / 1.3:.1f}x the limit)")
        print(f"    {m:<26} {x['p50_ms']:>7.2f}  {x['p99_ms']:>7.2f}  {x['max_ms']:>7.1f}   {ratio:>6.2f}x"
              f"    {x['wagate_us']:>5.0f} + {x['pg_us']:<5.0f}        {x['n']}{tgt}")
    if base and "three" in summary:
        r50 = summary["three"]["p50_ms"] / base["p50_ms"] if base["p50_ms"] else float("nan")
        print(f"    three/none: ack p50 {r50:.2f}x, p99 {summary['three']['p99_ms'] / base['p99_ms']:.2f}x")

    hooked = [r for r in runs if r["paths"]]
    if hooked:
        print("\n  per path and run (lag in ms)")
        print(f"    {'path':<16} {'run':<12} {'delivered':>9} {'missing':>7} {'dup retry/other':>15} {'bad sig/idem/hdr':>16}"
              f" {'requests':>8} {'batches':>7}   lag p50 / p90 / p99 / max")
        for p in PATHS:
            for r in hooked:
                a = r["paths"].get(p)
                if not a:
                    continue
                st, lg = a["st"], a["lags"]
                lag = (f"{pct(lg, 50):8.1f} / {pct(lg, 90):.1f} / {pct(lg, 99):.1f} / {lg[-1]:.1f}" if lg else "-")
                print(f"    {p:<16} {r['name']:<12} {a['delivered']:>9} {len(a['missing']):>7} "
                      f"{a['dup_retry']:>7}/{a['dup_other']:<7} {st['sig_bad']:>6}/{st['idem_bad']}/{st['header_bad']:<6}"
                      f" {st['requests']:>8} {st['batches']:>7}   {lag}")
        print("\n  lag, median over rounds (ms)             p50      p99      max")
        for m in modes:
            for p in PATHS:
                lgs = [r["paths"][p]["lags"] for r in by[m] if p in r["paths"] and r["paths"][p]["lags"]]
                if not lgs:
                    continue
                p50, p99 = med([pct(x, 50) for x in lgs]), med([pct(x, 99) for x in lgs])
                mx = med([x[-1] for x in lgs])
                tgt = ""
                if m == "three" and p == "/kapso":
                    met = p50 <= 20 and p99 <= 200
                    tgt = "   target p50 <= 20, p99 <= 200: " + ("met" if met else "NOT met")
                elif p == "/kapso-buffered":
                    tgt = "   (buffered: about the window by design)"
                print(f"    {m + ' ' + p:<36} {p50:>7.1f}  {p99:>7.1f}  {mx:>7.1f}{tgt}")
    for x in notes:
        print(f"NOTE: {x}")
    failed = bool(problems)
    print("checks (every acked event delivered on every path, no duplicate beyond retries, signatures and "
          "headers right): " + ("ok" if not failed else "FAILED"))
    for x in problems:
        print(f"  FAILED: {x}")
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------- main

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("receive")
    r.add_argument("--host", default="127.0.0.1")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--meta-secret", required=True)
    r.add_argument("--out", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--url", required=True)
    w.add_argument("--acks", required=True)
    w.add_argument("--prefix", required=True)
    w.add_argument("--paths", required=True)
    w.add_argument("--timeout", type=float, default=60)
    w.add_argument("--grace", type=float, default=1)
    rp = sub.add_parser("report")
    rp.add_argument("--dir", required=True)
    rp.add_argument("--runs", required=True)
    rp.add_argument("--rate", type=float, required=True)
    rp.add_argument("--open-duration", type=float, required=True)
    rp.add_argument("--pinned", type=int, default=1)
    args = p.parse_args()
    sys.exit({"receive": cmd_receive, "wait": cmd_wait, "report": cmd_report}[args.cmd](args))


if __name__ == "__main__":
    main()
