#!/usr/bin/env python3
"""Fault test for the writer's spill file (issue #23): what the proxy answered with Meta's 200
while the database was down survives a SIGKILL and is stored exactly once.

Starts the Graph emulator (`wagate sandbox`, its own process, so it outlives the kill) and wagate
on a fresh database, connects the emulator's demo number, then:

  1. sends --before messages through the proxy (`POST {pnid}/messages`), all stored;
  2. takes the database away (PostgreSQL: `pg_ctl stop -m immediate` of a private instance this
     script runs itself, never the shared server; SQLite: another connection holds an exclusive
     lock, so every write fails after busy_timeout), and sends --during more: each must still get
     Meta's 200 with a wamid (the record waits in the spill file);
  3. SIGKILLs wagate, brings the database back, starts wagate again (same spill file), and waits
     until the stored messages stop changing;
  4. checks that every sent wamid is stored once (lost = 0, duplicates = 0) and that the
     conversations' message counters add up to the stored messages.

Prints one JSON line of figures and exits 1 on any loss, duplicate or error.

Usage: python3 tests/faults/db_down_kill.py [--bin target/debug/wagate] [--backend postgres|sqlite]
Standard library only; reuses bench/crash_ingest.py's helpers. PostgreSQL needs initdb/pg_ctl
(found under /usr/lib/postgresql/*/bin or on PATH) and psql; as root the private instance runs as
the `postgres` OS user.
"""
import argparse
import glob
import json
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))
from crash_ingest import (  # noqa: E402  (the helpers live in the benchmark)
    Wagate, TestFailure, free_port, http_request, psql, read_store,
)

V = "v24.0"


def log(msg):
    print(f"[db_down_kill {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pg_tool(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name) or name


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temp folder on a free port (as `postgres` when root)."""

    fsync = "off"

    def __init__(self, workdir):
        self.data = os.path.join(workdir, "pgdata")
        self.port = free_port()
        self.logfile = os.path.join(workdir, "postgres.log")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chmod(workdir, 0o755)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, args, timeout=60):
        kwargs = {}
        if self.user:
            uid, gid = self.user.pw_uid, self.user.pw_gid

            def demote():
                os.setgid(gid)
                os.setuid(uid)
            kwargs["preexec_fn"] = demote
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
        if out.returncode != 0:
            raise TestFailure(f"{os.path.basename(args[0])} failed: {out.stderr.strip()[-500:]}")
        return out.stdout

    def init(self):
        os.makedirs(self.data)
        if self.user:
            os.chown(self.data, self.user.pw_uid, self.user.pw_gid)
            with open(self.logfile, "w"):
                pass
            os.chown(self.logfile, self.user.pw_uid, self.user.pw_gid)
        self.run([pg_tool("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8"])

    def start(self):
        self.run([pg_tool("pg_ctl"), "-D", self.data, "-l", self.logfile, "-w", "-t", "30",
                  "-o", f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync={self.fsync}",
                  "start"])

    def stop(self, mode="immediate"):
        self.run([pg_tool("pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop"])


class SqliteLock:
    """Makes the SQLite database unavailable for writes: an exclusive transaction held open."""

    def __init__(self, path):
        self.path = path
        self.conn = None

    def stop(self):
        self.conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        self.conn.execute("begin exclusive")

    def start(self):
        self.conn.execute("rollback")
        self.conn.close()
        self.conn = None


def start_emulator(binary, workdir):
    port = free_port()
    out = open(os.path.join(workdir, "sandbox.log"), "wb")
    proc = subprocess.Popen([binary, "sandbox", "--listen", f"127.0.0.1:{port}"], cwd=workdir,
                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    began = time.monotonic()
    while time.monotonic() - began < 20:
        with open(os.path.join(workdir, "sandbox.log")) as f:
            text = f.read()
        found = re.search(r"phone_number_id (\d+) \(WABA (\d+)\), access token (\S+)", text)
        if found:
            return proc, port, found.groups()
        if proc.poll() is not None:
            raise TestFailure(f"the emulator exited: {text[-500:]}")
        time.sleep(0.05)
    raise TestFailure("the emulator did not start")


def send(port, key, pnid, i):
    body = json.dumps({"messaging_product": "whatsapp", "to": f"1666{i % 7:07d}", "type": "text",
                       "text": {"body": f"db_down_kill message {i}"}})
    for _ in range(20):
        status, answer = http_request(port, "POST", f"/meta/whatsapp/{V}/{pnid}/messages",
                                      body=body, timeout=30, headers={
                                          "X-API-Key": key, "Content-Type": "application/json"})
        # wagate's pacer answered for Meta (the number's rate): Meta never saw it, so a client
        # sends it again after Retry-After, as this one does.
        if status == 400 and b'"code":130429' in answer and b"wagate paced" in answer:
            time.sleep(1)
            continue
        break
    if status != 200:
        raise TestFailure(f"send {i} answered {status}: {answer[:300]!r}")
    return json.loads(answer)["messages"][0]["id"]


def file_size(path):
    return os.path.getsize(path) if os.path.exists(path) else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=os.path.join(REPO, "target", "debug", "wagate"))
    p.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    p.add_argument("--before", type=int, default=20, help="sends with the database up")
    p.add_argument("--during", type=int, default=30, help="sends with the database down")
    p.add_argument("--concurrency", type=int, default=8,
                   help="concurrent sends during the outage (they share spill fsyncs)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = p.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"db_down_kill: no executable at {args.bin} (cargo build first)", file=sys.stderr)
        return 2

    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix=f"wagate-dbdown-{args.backend}-")
    figures = {"test": "db_down_kill", "backend": args.backend, "requests": 0, "kills": 0,
               "lost": None, "duplicates": None, "errors": 0}
    emulator = wagate = db = None
    ok = False
    try:
        if args.backend == "postgres":
            db = PrivatePostgres(workdir)
            db.init()
            db.start()
            psql(db.url, "create database wagate")
            db_url = db.url.rsplit("/", 1)[0] + "/wagate"
            sqlite_path = None
        else:
            sqlite_path = os.path.join(workdir, "wagate.db")
            db_url = f"sqlite://{sqlite_path}"
            db = SqliteLock(sqlite_path)
        emulator, graph_port, (pnid, waba, token) = start_emulator(os.path.abspath(args.bin), workdir)
        wagate = Wagate(args.bin, workdir, db_url)
        wagate.env.update(
            WAGATE__GRAPH__BASE_URL=f"http://127.0.0.1:{graph_port}",
            WAGATE__DATABASE__ACQUIRE_TIMEOUT="1s",
            WAGATE__DATABASE__BUSY_TIMEOUT="300ms",
            # The proxy's auth and number caches outlive the outage.
            WAGATE__CACHE__TTL="300s",
            WAGATE__WRITER__RETRY_INTERVAL="200ms",
            WAGATE__WRITER__SPILL_PATH=os.path.join(workdir, "spill", "wagate.spill"),
            WAGATE__LOG__LEVEL="info",
        )
        wagate.start(30)
        key = wagate.api_key()
        status, body = http_request(wagate.port, "POST", "/platform/v1/whatsapp/phone_numbers", body=(
            json.dumps({"whatsapp_phone_number": {"phone_number_id": pnid,
                                                  "business_account_id": waba,
                                                  "access_token": token}})),
            headers={"X-API-Key": key, "Content-Type": "application/json"}, timeout=10)
        if status != 201:
            raise TestFailure(f"connecting the number answered {status}: {body[:300]!r}")

        sent = []
        for i in range(args.before):
            sent.append(send(wagate.port, key, pnid, i))
        figures["requests"] += args.before
        db.stop()
        log(f"{args.before} sent; database down")
        down_at = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            during = pool.map(lambda i: send(wagate.port, key, pnid, i),
                              range(args.before, args.before + args.during))
            for wamid in during:
                sent.append(wamid)
                figures["requests"] += 1
        figures["during_seconds"] = round(time.monotonic() - down_at, 2)
        metrics = http_request(wagate.port, "GET", "/metrics", timeout=10)[1].decode()
        for name in ("wagate_recordings_spilled_total", "wagate_spill_fsyncs_total"):
            found = re.search(rf"^{name} (\S+)$", metrics, re.M)
            figures[name.removeprefix("wagate_")] = int(float(found.group(1))) if found else 0
        spill = os.path.join(workdir, "spill", "wagate.spill")
        figures["spill_bytes_at_kill"] = file_size(spill)
        wagate.kill()
        figures["kills"] += 1
        log(f"{args.during} sent during the outage ({figures['spill_bytes_at_kill']} spill bytes); "
            "wagate killed")
        db.start()
        wagate.start(30)
        back = time.monotonic()
        wanted = set(sent)
        while True:
            wamids, _, _ = read_store(args.backend, db_url, sqlite_path)
            if wanted <= set(wamids) and file_size(spill) == 0:
                break
            if time.monotonic() - back > 30:
                break
            time.sleep(0.2)
        figures["drain_seconds"] = round(time.monotonic() - back, 2)
        wagate.kill()
        # Every message here is a send (the emulator sends no webhooks without --webhook-url).
        wamids, conv, _ = read_store(args.backend, db_url, sqlite_path)
        total = len(wamids)
        figures["lost"] = len(wanted - set(wamids))
        figures["duplicates"] = len(wamids) - len(set(wamids))
        figures["unexpected"] = len(set(wamids) - wanted)
        figures["counters_match"] = conv == total
        if figures["unexpected"] or not figures["counters_match"]:
            figures["errors"] += 1
        ok = figures["lost"] == 0 and figures["duplicates"] == 0 and figures["errors"] == 0
    except TestFailure as failure:
        figures["errors"] += 1
        log(f"FAILED: {failure}")
        if wagate:
            log(wagate.log_tail(40))
    finally:
        figures["seconds"] = round(time.monotonic() - started, 1)
        for proc in (wagate, ):
            if proc:
                proc.kill()
        if emulator:
            emulator.kill()
            emulator.wait()
        if isinstance(db, PrivatePostgres):
            try:
                db.stop("immediate")
            except TestFailure:
                pass
        elif isinstance(db, SqliteLock) and db.conn:
            db.conn.close()
        if args.keep or not ok:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
