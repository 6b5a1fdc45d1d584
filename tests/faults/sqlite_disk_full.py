#!/usr/bin/env python3
"""SQLite's disk full: wagate's data folder on a small tmpfs, signed webhook ingest (senders that
retry the same bytes until a 2xx, as Meta does) until the disk fills, then space freed.

Checks: while full, every answer is a 2xx or a 503 (never a 500, never a 2xx for an event not
stored) and `/healthz` answers; after the ballast is deleted, ingest resumes within 15 s; every
acknowledged event is stored exactly once, the conversations' counters add up, and
`PRAGMA integrity_check` says ok. Needs root (mount). Prints one JSON line of figures; exits 1 on
any violation.

Usage: tests/faults/sqlite_disk_full.py --bin target/debug/wagate --backend sqlite
"""
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from crash_ingest import PNID, WABA, TestFailure, Wagate, envelope, http_request, read_store  # noqa: E402

SIZE_MIB = 24


from _support import connect_number, fault_arguments, skipped_unless  # noqa: E402

def log(msg):
    print(f"[sqlite_disk_full {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def webhook_503(answer):
    """True when a 503 body is the webhook route's envelope: `{"error": "<reason>"}`."""
    try:
        body = json.loads(answer)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"] != ""


def mount_small(data):
    """A SIZE_MIB filesystem on `data`: a tmpfs, else a loop-mounted ext4 image. Returns
    (description, image path or None) or raises TestFailure saying why neither worked."""
    tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MIB}m", "tmpfs", data],
                           capture_output=True, text=True)
    if tmpfs.returncode == 0:
        return f"tmpfs {SIZE_MIB} MiB", None
    image = data + ".img"
    steps = [["truncate", "-s", f"{SIZE_MIB}M", image],
             ["mkfs.ext4", "-q", "-F", "-m", "0", image],
             ["mount", "-o", "loop", image, data]]
    for step in steps:
        out = subprocess.run(step, capture_output=True, text=True)
        if out.returncode != 0:
            raise TestFailure(f"cannot mount a tmpfs ({tmpfs.stderr.strip()}) nor a loop ext4 image "
                              f"({' '.join(step[:2])}: {out.stderr.strip()})")
    return f"loop ext4 {SIZE_MIB} MiB", image


class Senders:
    def __init__(self, port):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked, self.unexpected = [], []
        self.answers = {}
        self.last_ack = 0.0

    def run(self, index):
        seq = 0
        while not self.stop.is_set():
            seq += 1
            wamid = f"wamid.full.{index}.{seq}"
            body, sig = envelope(wamid, f"1888{index:03d}{seq % 100:04d}", seq)
            while not self.stop.is_set():
                try:
                    status, answer = http_request(self.port, "POST", "/webhooks/whatsapp", body=body, timeout=15,
                                                  headers={"Content-Type": "application/json",
                                                           "X-Hub-Signature-256": sig})
                except (OSError, http.client.HTTPException) as e:
                    status, answer = None, repr(e).encode()
                with self.lock:
                    self.answers[status] = self.answers.get(status, 0) + 1
                    if status is not None and 200 <= status < 300:
                        self.acked.append(wamid)
                        self.last_ack = time.monotonic()
                    elif status != 503:
                        self.unexpected.append(f"{wamid}: {status} {answer[:200]!r}")
                    elif not webhook_503(answer):
                        self.unexpected.append(f"{wamid}: 503 outside the webhook route's envelope {answer[:200]!r}")
                if status is not None and 200 <= status < 300:
                    break
                time.sleep(0.1)


def main():
    p = fault_arguments(__doc__)
    args = p.parse_args()
    if skipped_unless(args, "sqlite", "sqlite_disk_full", "SQLite only"):
        return 0
    work = tempfile.mkdtemp(prefix="wagate-diskfull-")
    data = os.path.join(work, "data")
    os.makedirs(data)
    try:
        filesystem, _image = mount_small(data)
    except TestFailure as e:
        shutil.rmtree(work, ignore_errors=True)
        print(json.dumps({"test": "sqlite_disk_full", "backend": "sqlite", "errors": 1, "error": str(e)}))
        return 1
    figures = {"test": "sqlite_disk_full", "backend": "sqlite", "filesystem": filesystem}
    wagate, ok = None, False
    sqlite_path = os.path.join(data, "wagate.db")
    try:
        wagate = Wagate(args.bin, work, f"sqlite://{sqlite_path}")
        wagate.env.update(WAGATE__DATABASE__BUSY_TIMEOUT="1s", WAGATE__LOG__LEVEL="info")
        wagate.start(30)
        key = wagate.api_key()
        connect_number(http_request, wagate.port, key, PNID, WABA, "full-token")
        # Leave about 1.5 MiB: a few seconds of ingest fill it.
        ballast = os.path.join(data, "ballast")
        with open(ballast, "wb") as f:
            f.write(b"\0" * max(0, free_bytes(data) - 1_500_000))

        senders = Senders(wagate.port)
        threads = [threading.Thread(target=senders.run, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        began = time.monotonic()
        while senders.answers.get(503, 0) < 20 and time.monotonic() - began < 40:
            time.sleep(0.2)
        if senders.answers.get(503, 0) < 20:
            raise TestFailure(f"the disk never filled (answers {senders.answers})")
        figures["filled_after_s"] = round(time.monotonic() - began, 1)
        full_since = time.monotonic()
        time.sleep(3)  # a while full
        healthz = http_request(wagate.port, "GET", "/healthz", timeout=5)[0]
        os.remove(ballast)
        freed = time.monotonic()
        log(f"disk full for {freed - full_since:.1f} s (healthz {healthz}); ballast deleted")
        while senders.last_ack < freed and time.monotonic() - freed < 15:
            time.sleep(0.05)
        recovery = time.monotonic() - freed if senders.last_ack >= freed else None
        time.sleep(2)
        senders.stop.set()
        for t in threads:
            t.join(timeout=30)
        wagate.kill()

        wamids, conv, _ = read_store("sqlite", None, sqlite_path)
        acked = set(senders.acked)
        con = sqlite3.connect(sqlite_path)
        integrity = con.execute("pragma integrity_check").fetchone()[0]
        con.close()
        figures.update(
            requests=sum(senders.answers.values()), events=len(acked),
            answers={str(k): v for k, v in senders.answers.items()},
            lost=len(acked - set(wamids)), duplicates=len(wamids) - len(set(wamids)),
            unacknowledged_stored=len(set(wamids) - acked), counters_match=conv == len(wamids),
            integrity=integrity, healthz_while_full=healthz,
            recovery_s=None if recovery is None else round(recovery, 2),
            errors_unexpected=len(senders.unexpected),
        )
        for problem in senders.unexpected[:10]:
            log(f"FAIL: {problem}")
        # An event stored but answered 503 is fine (Meta sends it again; stored once).
        ok = (figures["lost"] == 0 and figures["duplicates"] == 0 and figures["counters_match"]
              and integrity == "ok" and healthz == 200 and recovery is not None
              and not senders.unexpected)
    except TestFailure as e:
        log(f"FAIL: {e}")
        if wagate:
            log(wagate.log_tail(30))
    finally:
        if wagate:
            wagate.kill()
        if wagate and not ok:
            shutil.copy(wagate.log_path, os.path.join(tempfile.gettempdir(), "sqlite_disk_full.log"))
            log(f"wagate's log: {tempfile.gettempdir()}/sqlite_disk_full.log")
        subprocess.run(["umount", "-l", data], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
