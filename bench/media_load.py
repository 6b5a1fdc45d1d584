#!/usr/bin/env python3
"""Helpers for bench/media.sh (media vault benchmark). Standard library only; the open-loop
load itself is bench/ingest_load.py's `open` (same "<signature> <body>" event files).

  files  --root DIR --base URL --prefix P --count N --size BYTES [--seed S]
         Writes N files of distinct random bytes as the local Graph double serves them:
         DIR/files/<media id> (the bytes) and DIR/v23.0/<media id> (the media node JSON that
         `GET /v23.0/{media_id}` answers: url under --base, mime_type, hex sha256, file_size),
         plus DIR/<P>.manifest ("<media id> <hex sha256> <size>" per line).

  sign   --manifest FILE --secret S --prefix P --out FILE [--checksum base64|hex]
         [--first I] [--count N] [--id-prefix X]
         One signed inbound image webhook per manifest line (wamid "wamid.<P>.<i>", `image` with
         id, mime_type and sha256 as Meta sends them). --id-prefix replaces the media ids by ids
         the double does not serve (the same checksums): only the vault's "already kept" path
         can store those.

  wait   --backend sqlite|postgres --db URL --prefix P --count N [--timeout T] [--pid PID]
         Polls media_files until the N rows of wamid "wamid.<P>.%" have left `pending`, sampling
         VmRSS and VmHWM of --pid meanwhile; prints JSON (states, seconds waited, peak RSS).

  lag    --backend sqlite|postgres --db URL --prefix P
         Per row: stored_at - created_at (created_at is written in the ingest commit, just
         before the 200), states and bytes; prints JSON with percentiles and, for copy runs,
         bytes / (last stored_at - first created_at).

  report --dir WORK --backends "sqlite" --rounds N --rate R --duration D --size-kib K
         Prints media.sh's summary from the JSON files it left in WORK; exit 1 when a check
         failed (a non-2xx, a row not stored, a lost webhook).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest_load import PNID, WABA, pct  # noqa: E402  (the same number and percentile rule)

VERSION = "v23.0"  # src/domain/media.rs: the Graph version of the media calls


def cmd_files(args):
    rng = random.Random(args.seed)
    os.makedirs(os.path.join(args.root, "files"), exist_ok=True)
    os.makedirs(os.path.join(args.root, VERSION), exist_ok=True)
    # Distinct contents per file (so the vault's dedupe by hash skips nothing), cheaply: one
    # random block, and per file a random 4 KiB head plus a rotation of the block.
    block = rng.randbytes(min(args.size, 8 << 20))
    lines = []
    for i in range(args.count):
        media_id = f"{args.prefix}{i:07d}"
        head = rng.randbytes(min(4096, args.size))
        shift = rng.randrange(len(block))
        rotated = block[shift:] + block[:shift]
        body = bytearray(head)
        while len(body) < args.size:
            body += rotated
        del body[args.size:]
        digest = hashlib.sha256(body).hexdigest()
        with open(os.path.join(args.root, "files", media_id), "wb") as f:
            f.write(body)
        node = {"url": f"{args.base}/files/{media_id}", "mime_type": "image/jpeg", "sha256": digest,
                "file_size": str(args.size), "id": media_id, "messaging_product": "whatsapp"}
        with open(os.path.join(args.root, VERSION, media_id), "w") as f:
            json.dump(node, f)
        lines.append(f"{media_id} {digest} {args.size}\n")
    with open(os.path.join(args.root, f"{args.prefix}.manifest"), "w") as f:
        f.writelines(lines)


def image_envelope(wamid, media_id, checksum, wa_id, ts):
    message = {"from": wa_id, "id": wamid, "timestamp": str(ts), "type": "image",
               "image": {"mime_type": "image/jpeg", "sha256": checksum, "id": media_id}}
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550000001", "phone_number_id": PNID},
             "contacts": [{"profile": {"name": "Bench User"}, "wa_id": wa_id}],
             "messages": [message]}
    body = {"object": "whatsapp_business_account",
            "entry": [{"id": WABA, "changes": [{"field": "messages", "value": value}]}]}
    return json.dumps(body, separators=(",", ":")).encode()


def cmd_sign(args):
    rows = [line.split() for line in open(args.manifest) if line.strip()]
    rows = rows[args.first:args.first + args.count if args.count else None]
    secret = args.secret.encode()
    with open(args.out, "wb") as out:
        for i, (media_id, digest, _size) in enumerate(rows):
            if args.checksum == "base64":  # what Meta's webhooks carry
                checksum = base64.b64encode(bytes.fromhex(digest)).decode()
            else:
                checksum = digest
            if args.id_prefix:
                media_id = args.id_prefix + media_id
            wa_id = "1555%07d" % (i % 1000)
            body = image_envelope(f"wamid.{args.prefix}.{i}", media_id, checksum, wa_id, 1750000000 + i)
            sig = hmac.new(secret, body, hashlib.sha256).hexdigest()
            out.write(sig.encode() + b" " + body + b"\n")


def media_rows(backend, db, prefix):
    """(state, created_at, stored_at, byte_size) of the rows of wamid "wamid.<prefix>.%";
    times as epoch seconds (None when not stored)."""
    like = f"wamid.{prefix}.%"
    if backend == "sqlite":
        import sqlite3

        path = db[len("sqlite://"):] if db.startswith("sqlite://") else db
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        raw = con.execute("select state, created_at, stored_at, byte_size from media_files "
                          "where wamid like ?", (like,)).fetchall()
        con.close()

        def epoch(text):
            return datetime.fromisoformat(text).timestamp() if text else None

        return [(s, epoch(c), epoch(st), b) for s, c, st, b in raw]
    query = ("select state, extract(epoch from created_at), coalesce(extract(epoch from stored_at)::text, ''), "
             f"coalesce(byte_size, 0) from media_files where wamid like '{like}'")
    out = subprocess.run(["psql", db, "-XAt", "-F", " ", "-c", query], check=True, capture_output=True, text=True)
    rows = []
    for line in out.stdout.splitlines():
        state, created, stored, size = line.split(" ")
        rows.append((state, float(created), float(stored) if stored else None, int(size)))
    return rows


def proc_status(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmd_wait(args):
    start = time.monotonic()
    peak_rss = proc_status(args.pid, "VmRSS") if args.pid else 0
    states = {}
    next_poll = 0.0
    while True:
        now = time.monotonic()
        if args.pid:
            peak_rss = max(peak_rss, proc_status(args.pid, "VmRSS"))
        if now >= next_poll:
            rows = media_rows(args.backend, args.db, args.prefix)
            states = {}
            for state, *_ in rows:
                states[state] = states.get(state, 0) + 1
            if len(rows) >= args.count and not states.get("pending"):
                break
            next_poll = now + 0.2
        if now - start > args.timeout:
            break
        time.sleep(0.02)
    out = {"states": states, "rows": sum(states.values()), "expected": args.count,
           "waited_s": time.monotonic() - start, "timed_out": time.monotonic() - start > args.timeout}
    if args.pid:
        out["sampled_peak_rss_kb"] = peak_rss
        out["vm_hwm_kb"] = proc_status(args.pid, "VmHWM")
        out["rss_after_kb"] = proc_status(args.pid, "VmRSS")
    print(json.dumps(out))


def cmd_lag(args):
    rows = media_rows(args.backend, args.db, args.prefix)
    states = {}
    for state, *_ in rows:
        states[state] = states.get(state, 0) + 1
    stored = [r for r in rows if r[0] == "stored" and r[2] is not None]
    lags = sorted(r[2] - r[1] for r in stored)
    out = {"rows": len(rows), "states": states, "stored": len(stored)}
    if lags:
        first, last = min(r[1] for r in stored), max(r[2] for r in stored)
        total = sum(r[3] or 0 for r in stored)
        out.update({
            "lag_p50_ms": pct(lags, 50) * 1000, "lag_p90_ms": pct(lags, 90) * 1000,
            "lag_p99_ms": pct(lags, 99) * 1000, "lag_max_ms": lags[-1] * 1000,
            "bytes": total, "span_s": last - first,
            "bytes_per_s": total / (last - first) if last > first else 0.0,
        })
    print(json.dumps(out))


def load(path):
    with open(path) as f:
        return json.load(f)


def mib(n):
    return n / (1 << 20)


def cmd_report(args):
    problems, notes = [], []
    d = args.dir

    def verdict(ok):
        return "met" if ok else "NOT met"

    for backend in args.backends.split():
        print(f"\n## {backend}: {args.rate:.0f} inbound image webhooks/s for {args.duration:.0f} s "
              f"({args.size_kib} KiB each), wagate on CPU 1, load generator and upstream on CPU 0")
        print(f"{'round':<6}{'vault':<6}{'sent/s':>8}{'2xx':>7}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}"
              f"{'wagate':>9}{'other':>8}   download lag p50 / p90 / p99 / max (CPU 1 shares)")
        p99 = {"off": [], "on": []}
        lag50, lag99 = [], []
        for r in range(1, args.rounds + 1):
            order = ("off", "on") if r % 2 else ("on", "off")
            for vault in order:
                o = load(f"{d}/{backend}/{vault}_{r}.open.json")
                p99[vault].append(o["p99_ms"])
                line = (f"{r:<6}{vault:<6}{o['rate_sent']:>8.0f}{o['ok']:>7}{o['p50_ms']:>9.2f}{o['p90_ms']:>9.2f}"
                        f"{o['p99_ms']:>9.2f}{o['max_ms']:>9.1f}")
                if o["ok"] != o["scheduled"]:
                    problems.append(f"{backend}, round {r}, vault {vault}: {o['ok']} of {o['scheduled']} webhooks "
                                    f"answered 2xx (statuses {o['statuses']}, dropped {o['dropped']}, "
                                    f"unanswered {o['unanswered']})")
                if o["generator_max_lag_ms"] > max(20.0, 0.2 * o["p99_ms"]):
                    notes.append(f"NOISY: the load generator fell {o['generator_max_lag_ms']:.0f} ms behind its clock "
                                 f"(round {r}, vault {vault}); that run's latencies are inflated")
                busy0, all0, busy1, all1, w0, w1 = (int(x) for x in open(f"{d}/{backend}/{vault}_{r}.cpu").read().split())
                span = (all1 - all0) or 1
                other = max(0.0, 100.0 * ((busy1 - busy0) - (w1 - w0)) / span)
                line += f"{100.0 * (w1 - w0) / span:>8.0f}%{other:>7.0f}%"
                if other > 10:
                    notes.append(f"NOISY: other processes used {other:.0f}% of CPU 1 (round {r}, vault {vault})")
                if vault == "on":
                    lag = load(f"{d}/{backend}/on_{r}.lag.json")
                    wait = load(f"{d}/{backend}/on_{r}.wait.json")
                    dedupe = load(f"{d}/{backend}/on_{r}.dedupe.json")
                    if lag.get("stored"):
                        lag50.append(lag["lag_p50_ms"])
                        lag99.append(lag["lag_p99_ms"])
                        line += (f"   {lag['lag_p50_ms']:.0f} / {lag['lag_p90_ms']:.0f} / {lag['lag_p99_ms']:.0f} / "
                                 f"{lag['lag_max_ms']:.0f} ms ({lag['stored']} files, {mib(lag['bytes']):.0f} MiB; "
                                 f"all kept {wait['waited_s']:.1f} s after the last answer)")
                    if lag["stored"] != o["ok"] or lag["rows"] != o["ok"]:
                        problems.append(f"{backend}, round {r}: {o['ok']} image webhooks acknowledged, {lag['rows']} "
                                        f"media rows, {lag['stored']} stored (states {lag['states']})")
                    if dedupe["stored"] != dedupe["rows"] or not dedupe["rows"]:
                        problems.append(f"{backend}, round {r}: dedupe: {dedupe['stored']} of {dedupe['rows']} "
                                        f"stored without a download (states {dedupe['states']})")
                    dedupe_line = (f"dedupe: {dedupe['rows']} more messages naming kept files, by media ids the "
                                   f"upstream does not serve: states {dedupe['states']}")
                print(line)
        ratio = statistics.median(p99["on"]) / statistics.median(p99["off"])
        print(f"ack p99 vault on / off (medians over rounds): {statistics.median(p99['on']):.2f} / "
              f"{statistics.median(p99['off']):.2f} ms = {ratio:.2f}x   target <= 1.2x: {verdict(ratio <= 1.2)}")
        if lag50:
            m50, m99 = statistics.median(lag50), statistics.median(lag99)
            print(f"download lag (ingest commit -> stored), medians over rounds: p50 {m50:.0f} ms, p99 {m99:.0f} ms   "
                  f"target p50 <= 200 ms: {verdict(m50 <= 200)}, p99 <= 2 s: {verdict(m99 <= 2000)}")
        print(dedupe_line)

    copy = load(f"{d}/copy.json")
    print(f"\n## copy throughput: {copy['files']} files of {copy['size_mib']} MiB, {copy['concurrency']} at once, "
          f"each on CPU 1 (upstream nginx on CPU 0), {len(copy['rounds'])} rounds, order alternating")
    for i, r in enumerate(copy["rounds"]):
        print(f"round {i + 1}: wagate {mib(r['wagate_bps']):7.1f} MiB/s ({r['wagate_s']:.2f} s)   "
              f"curl {mib(r['curl_bps']):7.1f} MiB/s ({r['curl_s']:.2f} s)   ratio {r['wagate_bps'] / r['curl_bps']:.2f}x"
              f"   wagate CPU {r['wagate_cpu_s']:.2f} s, curl CPU {r['curl_cpu_s']:.2f} s")
        if r["stored"] != copy["files"]:
            problems.append(f"copy round {i + 1}: {r['stored']} of {copy['files']} files stored ({r['states']})")
    w = statistics.median(r["wagate_bps"] for r in copy["rounds"])
    c = statistics.median(r["curl_bps"] for r in copy["rounds"])
    ratio = statistics.median(r["wagate_bps"] / r["curl_bps"] for r in copy["rounds"])
    print(f"medians: wagate {mib(w):.1f} MiB/s, curl {mib(c):.1f} MiB/s; ratio (median of the rounds' ratios) "
          f"{ratio:.2f}x   target >= 0.8x: {verdict(ratio >= 0.8)}")

    rss = load(f"{d}/rss.json")
    print(f"\n## memory: {rss['files']} downloads of {rss['size_mib']} MiB at once (media.max_in_flight = "
          f"{rss['max_in_flight']}), wagate on CPU 1")
    print(f"RSS before {rss['rss_before_kb'] / 1024:.1f} MiB; peak RSS (VmHWM) {rss['vm_hwm_kb'] / 1024:.1f} MiB "
          f"(sampled VmRSS peak {rss['sampled_peak_rss_kb'] / 1024:.1f} MiB); after {rss['rss_after_kb'] / 1024:.1f} MiB; "
          f"all kept in {rss['waited_s']:.1f} s   target peak <= 200 MiB: {verdict(rss['vm_hwm_kb'] <= 200 * 1024)}")
    if rss["states"].get("stored", 0) != rss["files"]:
        problems.append(f"memory phase: {rss['states']} of {rss['files']} files")

    for n in notes:
        print(f"NOTE: {n}")
    print("\nchecks (every webhook 2xx, every acknowledged image kept, dedupe without download): "
          + ("ok" if not problems else "FAILED"))
    for p in problems:
        print(f"  FAILED: {p}")
    return 1 if problems else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("files")
    f.add_argument("--root", required=True)
    f.add_argument("--base", required=True)
    f.add_argument("--prefix", required=True)
    f.add_argument("--count", type=int, required=True)
    f.add_argument("--size", type=int, required=True)
    f.add_argument("--seed", type=int, default=1)
    s = sub.add_parser("sign")
    s.add_argument("--manifest", required=True)
    s.add_argument("--secret", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--checksum", choices=["base64", "hex"], default="base64")
    s.add_argument("--first", type=int, default=0)
    s.add_argument("--count", type=int, default=0, help="0: every line from --first on")
    s.add_argument("--id-prefix", default="")
    w = sub.add_parser("wait")
    w.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    w.add_argument("--db", required=True)
    w.add_argument("--prefix", required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--timeout", type=float, default=120)
    w.add_argument("--pid", type=int)
    g = sub.add_parser("lag")
    g.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    g.add_argument("--db", required=True)
    g.add_argument("--prefix", required=True)
    r = sub.add_parser("report")
    r.add_argument("--dir", required=True)
    r.add_argument("--backends", required=True)
    r.add_argument("--rounds", type=int, default=1)
    r.add_argument("--rate", type=float, required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--size-kib", type=int, required=True)
    args = p.parse_args()
    sys.exit({"files": cmd_files, "sign": cmd_sign, "wait": cmd_wait, "lag": cmd_lag,
              "report": cmd_report}[args.cmd](args))


if __name__ == "__main__":
    main()
