#!/usr/bin/env python3
"""Helpers for bench/list.sh. Standard library only (psql for PostgreSQL).

  seed   --backend postgres|sqlite --db URL --rows N   N messages spread over every connected number
  cursor --backend ... --db URL --pnid ID --depth D   the `after` cursor that starts D rows deep
  open   --url URL --key K --rate R --seconds S --label L   fixed-rate GETs; prints "L<TAB>p50<TAB>p99<TAB>errors"
  report --closed FILE --open FILE --rate R           the table, with deep/first ratios
"""
import argparse
import asyncio
import base64
import datetime as dt
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

BODY = '{"from":"15551234567","id":"wamid.seed","timestamp":"1750000000","type":"text","text":{"body":"seed message"}}'


def psql(url, sql):
    out = subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def sqlite_path(url):
    return url.split("sqlite://", 1)[1]


def share(rows, numbers, index):
    """Rows for the number at `index`: the measured first number holds a fifth of all rows, so a
    page 10% of the total deep is well inside it; the others share the rest."""
    first = rows // 5
    return first if index == 0 else (rows - first) // (numbers - 1)


def seed(args):
    if args.backend == "postgres":
        numbers = [line.split("|") for line in psql(args.db, "select internal_id, project_id from phone_numbers order by phone_number_id").splitlines()]
        for index, (number, project) in enumerate(numbers):
            per = share(args.rows, len(numbers), index)
            psql(args.db, f"""
                insert into messages (id, project_id, phone_number_internal_id, wamid, direction, message_type, status,
                  processing_status, origin, meta_timestamp, has_media, body, statuses, created_at, updated_at)
                select gen_random_uuid(), '{project}', '{number}', 'wamid.seed.{index}.' || g, 'inbound', 'text', 'delivered',
                  'completed', 'cloud_api', 1750000000 + g, false, '{BODY}', '[]',
                  now() - make_interval(secs => g * 0.7), now()
                from generate_series(1, {per}) g""")
        psql(args.db, "vacuum analyze messages")
        # The seed's dirty pages are written now, not during the measurement.
        psql(args.db, "checkpoint")
    else:
        db = sqlite3.connect(sqlite_path(args.db))
        numbers = db.execute("select internal_id, project_id from phone_numbers order by phone_number_id").fetchall()
        now = dt.datetime.now(dt.timezone.utc)
        for index, (number, project) in enumerate(numbers):
            per = share(args.rows, len(numbers), index)
            rows = []
            for g in range(1, per + 1):
                # Microseconds never a multiple of 1000, so every value has six digits, as sqlx writes them.
                micro = (g * 7919) % 1_000_000
                t = (now - dt.timedelta(seconds=g)).replace(microsecond=micro + (1 if micro % 1000 == 0 else 0))
                stamp = t.isoformat()
                rows.append((uuid.uuid4().bytes, project, number, f"wamid.seed.{index}.{g}", "inbound", "text", "delivered",
                             "completed", "cloud_api", 1750000000 + g, 0, BODY, "[]", stamp, stamp))
            db.executemany("""insert into messages (id, project_id, phone_number_internal_id, wamid, direction, message_type,
                status, processing_status, origin, meta_timestamp, has_media, body, statuses, created_at, updated_at)
                values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""", rows)
            db.commit()
        db.execute("analyze")
        db.close()


def cursor(args):
    if args.backend == "postgres":
        number = psql(args.db, f"select internal_id from phone_numbers where phone_number_id = '{args.pnid}'")
        row = psql(args.db, f"""select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), id from messages
            where phone_number_internal_id = '{number}' order by created_at desc, id desc offset {args.depth - 1} limit 1""")
        t, i = row.split("|")
    else:
        db = sqlite3.connect(sqlite_path(args.db))
        (number,) = db.execute("select internal_id from phone_numbers where phone_number_id = ?", (args.pnid,)).fetchone()
        t, i = db.execute("""select created_at, id from messages where phone_number_internal_id = ?
            order by created_at desc, id desc limit 1 offset ?""", (number, args.depth - 1)).fetchone()
        number = str(uuid.UUID(bytes=number))
        i = str(uuid.UUID(bytes=i))
        t = dt.datetime.fromisoformat(t).astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    body = json.dumps({"k": "m", "n": number, "t": t, "i": i}, separators=(",", ":")).encode()
    print(base64.urlsafe_b64encode(body).decode().rstrip("="))


async def read_body(reader, head):
    """Reads a response body: by its Content-Length, or chunk by chunk (a body the server
    streams, as wagate's lists are, comes chunked)."""
    lines = [l.lower() for l in head.split(b"\r\n")]
    length = [l for l in lines if l.startswith(b"content-length")]
    if length:
        await reader.readexactly(int(length[0].split(b":")[1]))
        return
    if not any(l.startswith(b"transfer-encoding") and b"chunked" in l for l in lines):
        raise ValueError(f"response with neither Content-Length nor chunked: {head!r}")
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)   # the chunk and its CRLF
        if size == 0:
            return


async def open_loop(args):
    parts = urlsplit(args.url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    request = (f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-API-Key: {args.key}\r\n\r\n").encode()
    idle = asyncio.Queue()
    for _ in range(32):
        idle.put_nowait(await asyncio.open_connection(parts.hostname, parts.port))
    latencies, errors = [], 0

    async def one(scheduled):
        nonlocal errors
        reader, writer = await idle.get()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await read_body(reader, head)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            latencies.append(time.perf_counter() - scheduled)
        except Exception:
            errors += 1
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        idle.put_nowait((reader, writer))

    start = time.perf_counter()
    tasks = []
    total = int(args.rate * args.seconds)
    for n in range(total):
        scheduled = start + n / args.rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
    print(f"{args.label}\t{p(0.5):.2f}\t{p(0.99):.2f}\t{errors}")


def report(args):
    """The median round of each page (closed loop by req/s, open loop by p99)."""
    closed, opened = {}, {}
    for line in open(args.closed):
        _, backend, page, _, rps, p50, p99 = line.rstrip("\n").split("\t")
        closed.setdefault((backend, page), []).append((float(rps), float(p50) / 1000, float(p99) / 1000))
    for line in open(args.open):
        backend, page, p50, p99, errors = line.rstrip("\n").split("\t")
        opened.setdefault((backend, page), []).append((float(p50), float(p99), int(errors)))

    def median(rounds, key):
        return sorted(rounds, key=key)[len(rounds) // 2]

    for backend in sorted({b for b, _ in closed}):
        rounds = len(closed[(backend, "first")])
        print(f"\n## {backend}: GET {{pnid}}/messages?limit=20 (median of {rounds} rounds)")
        print(f"{'page':<7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}   {'@' + str(args.rate) + '/s p50':>12}{'p99 ms':>9}{'errors':>8}")
        picked = {}
        for page in ["first", "deep"]:
            rps, p50, p99 = picked[page] = median(closed[(backend, page)], key=lambda r: r[0])
            o50, o99, _ = median(opened[(backend, page)], key=lambda r: r[1])
            err = sum(r[2] for r in opened[(backend, page)])
            print(f"{page:<7}{rps:>9.0f}{p50:>9.2f}{p99:>9.2f}   {o50:>12.2f}{o99:>9.2f}{err:>8}")
        for page in ["first", "deep"]:
            each = ", ".join(f"{r[0]:.0f}/{r[2]:.2f}" for r in closed[(backend, page)])
            print(f"  {page} rounds (req/s / p99 ms): {each}")
        f, d = picked["first"], picked["deep"]
        print(f"deep/first: throughput {d[0] / f[0]:.2f}x, p99 {d[2] / f[2]:.2f}x (target: p99 ratio <= 1.1)")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed"); s.add_argument("--backend"); s.add_argument("--db"); s.add_argument("--rows", type=int)
    c = sub.add_parser("cursor"); c.add_argument("--backend"); c.add_argument("--db"); c.add_argument("--pnid"); c.add_argument("--depth", type=int)
    o = sub.add_parser("open"); o.add_argument("--url"); o.add_argument("--key"); o.add_argument("--rate", type=float); o.add_argument("--seconds", type=float); o.add_argument("--label")
    r = sub.add_parser("report"); r.add_argument("--closed"); r.add_argument("--open"); r.add_argument("--rate")
    args = parser.parse_args()
    if args.cmd == "seed":
        seed(args)
    elif args.cmd == "cursor":
        cursor(args)
    elif args.cmd == "open":
        asyncio.run(open_loop(args))
    else:
        report(args)


if __name__ == "__main__":
    sys.exit(main())
