#!/usr/bin/env python3
"""Graph upstream faults: wagate in front of the Graph emulator (`wagate sandbox`) through
faultproxy.py, `graph.timeout` 2 s, a steady stream of sends (`POST /meta/whatsapp/v24.0/{pnid}/
messages` with X-API-Key, one sequential sender per recipient), and in phases, each followed by a
clear phase:
  latency   every chunk held 3 s (beyond graph.timeout)   -> 504, wagate's Graph envelope
  reset     RST on accept and on a connection's next data -> 502, wagate's Graph envelope
  blackhole accepted, read, never forwarded               -> 504, wagate's Graph envelope
  down      connect refused, open connections closed      -> 502, wagate's Graph envelope
  meta_500  the emulator's fail_sends_with 131000         -> Meta's 500, passed through unchanged
  meta_503  the emulator's fail_sends_with 2              -> Meta's 503, passed through unchanged

Checks: every request answered within graph.timeout + 1 s (none hangs); every answer is what its
phase allows (a request that overlaps two phases may get either's answer): 200 with a wamid, or
wagate's envelope (code 2, its exact message, fbtrace_id = our X-Request-Id) with exactly 502/504,
or Meta's own error (its status, code and wording, Meta's fbtrace_id, not ours); each fault phase
produced its fault answer at least 3 times; after each fault clears, every send started after the
clear succeeds (the pool recovers) and the first succeeds within 3 s. Prints one JSON line of
figures; exits 1 on a violation.
Usage: tests/faults/graph_faults.py --bin target/debug/wagate --backend sqlite|postgres
       [--only reset,down] [--phase 3] [--wagate-env KEY=VALUE] [--keep]
Debugging: GRAPH_FAULTS_WATCH=1 shows wagate's sockets to the proxy when a send is out > 1.2 s;
GRAPH_FAULTS_DEBUG=1 records the proxy's events and prints them around an unexpected answer;
GRAPH_FAULTS_WAGATE_LOG sets wagate's log filter (e.g. "warn,hyper_util=trace").
"""
import collections
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
sys.path.insert(0, HERE)
from crash_ingest import PNID, WABA, TestFailure, Wagate, free_port, http_request, psql  # noqa: E402

import faultproxy  # noqa: E402

GRAPH_TIMEOUT = 2.0
HANG_MARGIN = 1.0
RECOVERY_LIMIT = 3.0
TOKEN = f"sandbox-token-{PNID}"
SEND_PATH = f"/meta/whatsapp/v24.0/{PNID}/messages"
W502 = "(#2) Service temporarily unavailable: the upstream Graph API could not be reached"
W504 = "(#2) Service temporarily unavailable: the upstream Graph API timed out"
META = {  # what the emulator answers for the codes injected (src/sandbox/graph_errors.rs)
    "meta_500": (500, 131000, "(#131000) Something went wrong", "Message failed to send due to an unknown error."),
    "meta_503": (503, 2, "(#2) API Service", "Temporary due to downtime or due to being overloaded."),
}


from _support import clean_up, fault_arguments  # noqa: E402

def log(msg):
    print(f"[graph_faults {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def classify(status, body, request_id):
    """The answer's label, or 'bad: …' when it is none of the shapes wagate promises."""
    if isinstance(status, str):
        return f"bad: transport {status}"
    try:
        doc = json.loads(body)
    except ValueError:
        return f"bad: {status} not JSON: {body[:120]!r}"
    if status == 200:
        ids = [m.get("id", "") for m in doc.get("messages") or []]
        return "ok" if ids and ids[0].startswith("wamid.") else f"bad: 200 without a wamid: {body[:200]!r}"
    err = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(err, dict):
        return f"bad: {status} not a Graph envelope: {body[:200]!r}"
    details = (err.get("error_data") or {}).get("details")
    ours = err.get("fbtrace_id") == request_id
    if status in (502, 504) and ours:
        want = W502 if status == 502 else W504
        if err.get("code") == 2 and err.get("type") == "OAuthException" and err.get("message") == want and details:
            return f"wagate_{status}"
        return f"bad: wagate {status} envelope wrong: {body[:300]!r}"
    for label, (st, code, message, want_details) in META.items():
        if status == st and err.get("code") == code:
            if (err.get("message") == message and details == want_details and not ours
                    and len(str(err.get("fbtrace_id", ""))) == 23):
                return label
            return f"bad: Meta's {status} altered: {body[:300]!r}"
    return f"bad: unexpected {status}: {body[:300]!r}"


class Sender(threading.Thread):
    def __init__(self, index, port, key, stop, pace):
        super().__init__(name=f"sender-{index}", daemon=True)
        self.index, self.port, self.key, self.stop, self.pace = index, port, key, stop, pace
        self.results = []  # (t0, t1, label, status, request_id)
        self.conn = None
        self.inflight = None  # (t0, request id) while a request is out

    def send(self, seq):
        rid = f"gf-{self.index}-{seq}"
        body = json.dumps({"messaging_product": "whatsapp", "to": f"1555777{self.index:04d}",
                           "type": "text", "text": {"body": f"fault test {seq}"}})
        t0 = time.monotonic()
        self.inflight = (t0, rid)
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=GRAPH_TIMEOUT + 8)
            self.conn.request("POST", SEND_PATH, body=body, headers={
                "X-API-Key": self.key, "Content-Type": "application/json", "X-Request-Id": rid})
            resp = self.conn.getresponse()
            status, data = resp.status, resp.read()
            if resp.will_close:
                self.conn.close()
                self.conn = None
        except (OSError, http.client.HTTPException) as e:
            status, data = type(e).__name__, b""
            if self.conn is not None:
                self.conn.close()
            self.conn = None
        t1 = time.monotonic()
        self.inflight = None
        self.results.append((t0, t1, classify(status, data, rid), status, rid))

    def run(self):
        seq = 0
        while not self.stop.is_set():
            started = time.monotonic()
            self.send(seq)
            seq += 1
            time.sleep(max(0.0, self.pace - (time.monotonic() - started)))
        if self.conn is not None:
            self.conn.close()


def watchdog(senders, stop, pid, proxy_port, t_start):
    """Debugging: when a send is out longer than 1.2 s, show wagate's sockets to the proxy."""
    shown = set()
    while not stop.is_set():
        for s in senders:
            out = s.inflight
            if out and time.monotonic() - out[0] > 1.2 and out[1] not in shown:
                shown.add(out[1])
                ss = subprocess.run(["ss", "-tanpi", f"( dport = :{proxy_port} or sport = :{proxy_port} )"],
                                    capture_output=True, text=True).stdout
                lines = [ln for ln in ss.splitlines() if f"pid={pid}," in ln or "State" in ln]
                log(f"{out[1]} out since {out[0] - t_start:.2f} s; wagate's sockets to the proxy:\n" + "\n".join(lines))
        time.sleep(0.1)


def start_emulator(binary, workdir):
    port = free_port()
    logf = open(os.path.join(workdir, "emulator.log"), "ab")
    proc = subprocess.Popen([binary, "sandbox", "--listen", f"127.0.0.1:{port}"], cwd=workdir,
                            env=dict(os.environ, NO_COLOR="1"), stdin=subprocess.DEVNULL,
                            stdout=logf, stderr=subprocess.STDOUT)
    logf.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TestFailure(f"the emulator exited with {proc.returncode}")
        try:
            if http_request(port, "GET", "/_sandbox/knobs", timeout=1)[0] == 200:
                return proc, port
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise TestFailure("the emulator did not come up")


def knob(emu_port, code):
    status, body = http_request(emu_port, "POST", "/_sandbox/knobs", body=json.dumps({"fail_sends_with": code}),
                                headers={"Content-Type": "application/json"}, timeout=5)
    if status != 200:
        raise TestFailure(f"setting fail_sends_with={code} answered {status}: {body[:200]!r}")


def main():
    p = fault_arguments(__doc__)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--rate", type=float, default=10, help="sends/s per sender at most (default 10)")
    p.add_argument("--phase", type=float, default=3.0, help="seconds of each fault phase (default 3)")
    p.add_argument("--only", default="", help="comma-separated fault phases to run (default: all)")
    p.add_argument("--wagate-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for wagate, e.g. to check that a wrong setting fails the test")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"graph_faults: no executable at {args.bin}", file=sys.stderr)
        return 2

    selftest = faultproxy.selftest()
    run_id = uuid.uuid4().hex[:8]
    work = tempfile.mkdtemp(prefix=f"wagate-graph-faults-{args.backend}-")
    pg_db = None
    if args.backend == "postgres":
        pg_db = f"wagate_test_graph_faults_{run_id}"
        db_url = f"{args.pg_url.rsplit('/', 1)[0]}/{pg_db}"
    else:
        db_url = f"sqlite://{work}/wagate.db"
    emulator = proxy = wagate = None
    stop = threading.Event()
    senders = []
    ok = False
    try:
        if pg_db:
            psql(args.pg_url, f"create database {pg_db}")
        emulator, emu_port = start_emulator(args.bin, work)
        proxy = faultproxy.FaultProxy(("127.0.0.1", emu_port))
        proxy_port = proxy.start()
        if os.environ.get("GRAPH_FAULTS_DEBUG"):
            proxy.events = []
        wagate = Wagate(args.bin, work, db_url)
        wagate.env.update(WAGATE__GRAPH__BASE_URL=f"http://127.0.0.1:{proxy_port}",
                          WAGATE__GRAPH__TIMEOUT=f"{int(GRAPH_TIMEOUT * 1000)}ms",
                          WAGATE__GRAPH__CONNECT_TIMEOUT="1s")
        wagate.env.update(kv.split("=", 1) for kv in args.wagate_env)
        if os.environ.get("GRAPH_FAULTS_WAGATE_LOG"):  # e.g. "warn,hyper_util=trace" to debug
            wagate.env["WAGATE__LOG__LEVEL"] = os.environ["GRAPH_FAULTS_WAGATE_LOG"]
        wagate.start(60)
        key = wagate.api_key()
        status, body = http_request(wagate.port, "POST", "/platform/v1/whatsapp/phone_numbers", body=json.dumps(
            {"whatsapp_phone_number": {"phone_number_id": PNID, "business_account_id": WABA, "access_token": TOKEN}}),
            headers={"X-API-Key": key, "Content-Type": "application/json"}, timeout=10)
        if status != 201:
            raise TestFailure(f"connecting the number answered {status}: {body[:300]!r}")
        log(f"backend={args.backend} wagate :{wagate.port} -> proxy :{proxy_port} -> emulator :{emu_port}")

        faults = {
            "latency": (lambda: proxy.set(latency_ms=3000), proxy.set, {"wagate_504"}),
            "reset": (lambda: proxy.set(reset=True), proxy.set, {"wagate_502"}),
            "blackhole": (lambda: proxy.set(blackhole=True), proxy.set, {"wagate_504"}),
            "down": (lambda: proxy.set(down=True), proxy.set, {"wagate_502"}),
            "meta_500": (lambda: knob(emu_port, 131000), lambda: knob(emu_port, None), {"meta_500"}),
            "meta_503": (lambda: knob(emu_port, 2), lambda: knob(emu_port, None), {"meta_503"}),
        }
        if args.only:
            faults = {n: f for n, f in faults.items() if n in args.only.split(",")}
        senders = [Sender(i, wagate.port, key, stop, 1.0 / args.rate) for i in range(args.senders)]
        # (name, start, end, allowed labels): a phase runs from just before its switch to just
        # after the next one, so a request in flight at a switch may get either phase's answer.
        timeline = []
        t_start = ok_start = time.monotonic()
        for s in senders:
            s.start()
        if os.environ.get("GRAPH_FAULTS_WATCH"):
            threading.Thread(target=watchdog, args=(senders, stop, wagate.proc.pid, proxy_port, t_start),
                             daemon=True).start()
        time.sleep(2.0)
        cleared_at, recovery, probes = {}, {}, []
        for name, (apply, clear, allowed) in faults.items():
            before = time.monotonic()
            apply()
            timeline.append(("ok", ok_start, time.monotonic(), {"ok"}))
            time.sleep(args.phase + (2.0 if "wagate_504" in allowed else 0.0))
            ok_start = time.monotonic()
            clear()
            cleared_at[name] = time.monotonic()
            timeline.append((name, before, cleared_at[name], allowed))
            # A probe on a fresh connection right after the clear: how soon does a send succeed?
            probe = Sender(100 + len(probes), wagate.port, key, stop, 0)
            while time.monotonic() - cleared_at[name] < RECOVERY_LIMIT + GRAPH_TIMEOUT:
                probe.send(len(probe.results))
                if probe.results[-1][2] == "ok":
                    recovery[name] = round(probe.results[-1][1] - cleared_at[name], 3)
                    break
            probes.append(probe)
            log(f"{name} from {before - t_start:.2f} s, cleared at {cleared_at[name] - t_start:.2f} s, "
                f"a probe's send succeeded {recovery.get(name)} s later")
            time.sleep(max(0.0, cleared_at[name] + 2.0 - time.monotonic()))
        stop.set()
        for s in senders:
            s.join(timeout=GRAPH_TIMEOUT + 10)
        end = time.monotonic()
        timeline.append(("ok", ok_start, end, {"ok"}))

        results = sorted(r for s in senders + probes for r in s.results)
        by_label = collections.Counter(r[2] if not r[2].startswith("bad") else "bad" for r in results)
        by_phase = {}
        unexpected, hung = [], []
        slowest = collections.defaultdict(float)
        for t0, t1, label, status, rid in results:
            phases = [(n, al) for n, a, b, al in timeline if a <= t1 and t0 <= b]
            allowed = set().union(*(al for _, al in phases)) if phases else {"ok"}
            for n, _ in phases:
                by_phase.setdefault(n, collections.Counter())[label if not label.startswith("bad") else "bad"] += 1
            if t1 - t0 > GRAPH_TIMEOUT + HANG_MARGIN:
                hung.append(f"{rid} took {t1 - t0:.2f} s ({label})")
            if label not in allowed and proxy.events is not None:
                for at, conn, what in proxy.events:
                    if t0 - 0.01 <= at <= t1 + 0.01 and (at <= t0 + 0.1 or at >= t1 - 0.05):
                        log(f"  proxy around {rid}: {at - t_start:.3f} s conn {conn}: {what}")
            if label not in allowed:
                unexpected.append(f"{rid} in {'+'.join(n for n, _ in phases)} at {t0 - t_start:.2f}-"
                                  f"{t1 - t_start:.2f} s: {label}")
            slowest[label] = max(slowest[label], t1 - t0)
            if os.environ.get("GRAPH_FAULTS_DEBUG") and label == "ok" and t1 - t0 > 0.5:
                log(f"slow ok {rid}: {t0 - t_start:.3f}-{t1 - t_start:.3f} s in {[n for n, a, b, _ in timeline if a <= t1 and t0 <= b]}")
        problems = []
        for name, (_, _, allowed) in faults.items():
            got = sum(by_phase.get(name, {}).get(lbl, 0) for lbl in allowed)
            if got < 3:
                problems.append(f"phase {name} produced only {got} of its fault answers {sorted(allowed)}")
            if recovery.get(name) is None or recovery[name] > RECOVERY_LIMIT:
                problems.append(f"no successful send within {RECOVERY_LIMIT} s after {name} cleared")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected answers, e.g. {unexpected[:5]}")
        if hung:
            problems.append(f"{len(hung)} requests past graph.timeout + {HANG_MARGIN} s, e.g. {hung[:5]}")
        if not wagate.alive():
            problems.append(f"wagate exited ({wagate.proc.returncode})")
        figures = {
            "test": "graph_faults", "backend": args.backend, "requests": len(results),
            "answers": dict(sorted(by_label.items())),
            "by_phase": {n: dict(sorted(c.items())) for n, c in by_phase.items() if n != "ok"},
            "errors_unexpected": len(unexpected), "hung": len(hung),
            "recovery_s": max((v for v in recovery.values() if v is not None), default=None),
            "recovery_by_fault_s": {n: recovery.get(n) for n in faults},
            "slowest_s": {k: round(v, 3) for k, v in sorted(slowest.items())},
            "graph_timeout_s": GRAPH_TIMEOUT, "proxy": proxy.stats, "proxy_selftest": selftest,
            "duration_s": round(end - t_start, 1),
        }
        print(json.dumps(figures), flush=True)
        if problems:
            raise TestFailure("; ".join(problems))
        ok = True
        return 0
    except TestFailure as e:
        print(f"FAIL graph_faults ({args.backend}): {e}", file=sys.stderr)
        if wagate:
            print(f"--- tail of wagate's log ---\n{wagate.log_tail(40)}", file=sys.stderr)
        return 1
    finally:
        stop.set()
        for s in senders:
            s.join(timeout=5)
        if wagate:
            wagate.kill()
        if proxy:
            proxy.stop()
        if emulator and emulator.poll() is None:
            emulator.kill()
            emulator.wait()
        clean_up(args, work, pg_db, ok, psql)


if __name__ == "__main__":
    sys.exit(main())
