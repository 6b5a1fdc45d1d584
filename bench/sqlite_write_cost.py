"""CPU per recorded message of SQLite alone, outside wagate: the cost floor of bench/proxy.sh's send.

Builds wagate's SQLite schema from migrations/sqlite in a fresh database (WAL, synchronous=NORMAL,
as wagate opens it), then inserts N messages shaped like the proxy benchmark's sends (1 KiB text:
the JSON body plus its text, time-ordered ids, random wamids) in batches of BATCH, one
`BEGIN IMMEDIATE` transaction per batch, as wagate's writer commits them. It is a lower bound:
one multi-row insert per batch where wagate on SQLite inserts row by row, and foreign keys off (no
parent rows) where wagate checks four per row.

Usage: [WAL_AUTOCHECKPOINT=1000] taskset -c 1 python3 bench/sqlite_write_cost.py [DB_PATH] [BATCH] [N]
"""
import glob
import json
import os
import resource
import secrets
import sqlite3
import sys
import time

path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/wagate-sqlite-cost.db"
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 13
total = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
for f in (path, path + "-wal", path + "-shm"):
    if os.path.exists(f):
        os.remove(f)
db = sqlite3.connect(path, isolation_level=None)
db.execute("pragma journal_mode=wal")
db.execute("pragma synchronous=normal")
# wagate's database.sqlite_wal_autocheckpoint (SQLite's own default is 1000).
db.execute("pragma wal_autocheckpoint=" + str(int(os.environ.get("WAL_AUTOCHECKPOINT", "1000"))))
here = os.path.dirname(os.path.abspath(__file__))
for migration in sorted(glob.glob(os.path.join(here, "..", "migrations", "sqlite", "*.sql"))):
    db.executescript(open(migration).read())

project, number, contact, conversation = (os.urandom(16) for _ in range(4))
now = "2026-12-02T12:00:00.000000Z"
db.execute(
    "insert into conversations (id, project_id, phone_number_internal_id, contact_id, status, "
    "last_active_at, messages_count, metadata, created_at, updated_at) "
    "values (?, ?, ?, ?, 'active', ?, 0, '{}', ?, ?)",
    (conversation, project, number, contact, now, now, now),
)
text = "x" * (1024 - 110)
columns = (
    "id, project_id, phone_number_internal_id, wamid, direction, message_type, status, "
    "processing_status, origin, meta_timestamp, contact_id, conversation_id, has_media, body, "
    "statuses, created_at, updated_at"
)
row_sql = "(" + ", ".join("?" * 17) + ")"
insert = f"insert into messages ({columns}) values " + ", ".join([row_sql] * batch)


def message():
    wamid = "wamid.HBgLMTU1NTEy" + secrets.token_hex(16)
    body = json.dumps({"id": wamid, "timestamp": "1764676800", "type": "text",
                       "to": "15551234567", "text": {"body": text}})
    ordered_id = time.time_ns().to_bytes(8, "big") + os.urandom(8)  # like UUIDv7
    return [ordered_id, project, number, wamid, "outbound", "text", "pending", "completed",
            "cloud_api", 1764676800, contact, conversation, 0, body, "[]", now, now]


started = time.perf_counter()
before = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(total // batch):
    db.execute("begin immediate")
    db.execute(insert, [value for _ in range(batch) for value in message()])
    db.execute(
        "update conversations set messages_count = messages_count + ?, last_active_at = ?, "
        "updated_at = ? where id = ?",
        (batch, now, now, conversation),
    )
    db.execute("commit")
wall = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF)
done = total // batch * batch
user = (after.ru_utime - before.ru_utime) / done * 1e6
system = (after.ru_stime - before.ru_stime) / done * 1e6
print(f"batch {batch}: {done / wall:,.0f} messages/s, {user + system:.1f} µs CPU per message "
      f"({user:.1f} user, {system:.1f} kernel; includes Python's own work)")
