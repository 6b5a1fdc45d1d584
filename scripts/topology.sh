#!/usr/bin/env bash
# The multi-instance topology of deploy/compose.yaml, without containers, on this machine:
#
#   Graph emulator (wagate sandbox) --signed webhooks--> nginx --round robin--> wagate A, wagate B
#                                                                                  |  one PostgreSQL
#   receiver 1, receiver 2 (python3) <--forwarded webhooks (outbox, shared by A and B)--+
#
# A fresh PostgreSQL database on the local server, two `wagate serve` on loopback ports with one
# master key, nginx load-balancing both, the emulator as Graph (WAGATE__GRAPH__BASE_URL) and two
# local webhook receivers. The emulator's demo number is connected through instance A with
# receiver 1 as its webhook_destination_url. Then it proves, one PASS/FAIL line each:
#   (a) a send made on A gets status webhooks through nginx; B ingests some of them, and B serves
#       the stored message with the final status (read);
#   (b) INBOUND messages injected through the emulator reach receiver 1 exactly once each, and
#       both instances delivered some (wagate_deliveries_total{outcome="succeeded"}, summing to
#       INBOUND);
#   (c) a PATCH of webhook_destination_url on A is acted on by B (a delivery made by B reaches
#       the new URL) within MAX_PROPAGATION seconds (the change feed, not cache.ttl); the time is printed.
# Exits non-zero when any check fails. Everything started here is stopped, and the database
# dropped, on exit.
#
# Usage: scripts/topology.sh
#   BIN=target/release/wagate (or target/debug/wagate; default: cargo build --release)
#   PG_URL=postgres://postgres@127.0.0.1:5432   PG_PARAMS="?sslmode=disable" (appended to wagate's URL)
#   INBOUND=200   MAX_PROPAGATION=2   KEEP=1 (keep the work folder with every log)   VERBOSE=1 (each probe of (c))
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_PARAMS=${PG_PARAMS:-}
INBOUND=${INBOUND:-200}
MAX_PROPAGATION=${MAX_PROPAGATION:-2}
KEEP=${KEEP:-0}
APP_SECRET=topology-app-secret
WEBHOOK_SECRET=topology-webhook-secret
MASTER_KEY=$(head -c 32 /dev/urandom | base64)
# The emulator's demo number (src/sandbox/mod.rs, SandboxConfig::demo()).
PNID=100000000000001
WABA=200000000000001
PN_TOKEN=sandbox-token-100000000000001

need() { command -v "$1" >/dev/null 2>&1; }
for tool in curl python3 psql; do
  need "$tool" || { echo "$tool is needed (apt-get install curl python3 postgresql-client)" >&2; exit 1; }
done
# The interpreter itself, not a version manager's shim (pyenv's costs a fraction of a second per call).
PY=$(python3 -c 'import sys; print(sys.executable)')
NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || { [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx; }
if [ -z "$NGINX" ]; then
  echo "==> installing nginx-light from Debian's packages (no service is started)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >/dev/null
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
if ! psql "$PG_URL/postgres" -XAtqc 'select 1' >/dev/null 2>&1; then
  echo "PostgreSQL does not answer at $PG_URL (scripts/test.sh starts one)" >&2; exit 1
fi

if [ -n "${BIN:-}" ]; then
  echo "==> using BIN=$BIN (no build)"
else
  echo "==> building wagate (release)"
  cargo build --release --quiet || { echo "cargo build --release failed (BIN=target/debug/wagate reuses a binary)" >&2; exit 1; }
  BIN=target/release/wagate
fi
[ -x "$BIN" ] || { echo "no wagate binary at $BIN" >&2; exit 1; }
BIN=$(realpath "$BIN")

WORK=$(mktemp -d /tmp/wagate-topology.XXXXXX)
DB="wagate_topology_$$_$(date +%s)"
DB_CREATED=0
PIDS=()      # "name pid", stopped in reverse order
cleanup() {
  local rc=$?
  set +e
  local i entry pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    entry=${PIDS[$i]}; pid=${entry##* }
    kill "$pid" 2>/dev/null
  done
  for entry in "${PIDS[@]}"; do
    pid=${entry##* }
    # Bounded: wagate drains for at most server.shutdown_grace; nothing here should take long.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ "$DB_CREATED" = 1 ]; then
    psql "$PG_URL/postgres" -Xqc "drop database if exists $DB with (force)" >/dev/null 2>&1 \
      || echo "could not drop database $DB" >&2
  fi
  if [ "$rc" != 0 ] && [ -d "$WORK" ]; then
    for log in "$WORK"/a/wagate.log "$WORK"/b/wagate.log "$WORK"/sandbox/sandbox.log "$WORK"/nginx/error.log; do
      [ -s "$log" ] || continue
      lines=$(grep -E '"level":"(WARN|ERROR)"|error|panic' "$log" | tail -n 10 | cut -c1-400)
      [ -n "$lines" ] && printf -- '--- warnings and errors in %s\n%s\n' "$log" "$lines" >&2
    done
  fi
  if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then
    echo "logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # N distinct free loopback ports
  "$PY" -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}
wait_http() { # URL PID SECONDS: until URL answers 2xx, the process dies, or the time is up
  local url=$1 pid=$2 tries=$(($3 * 10))
  for _ in $(seq 1 "$tries"); do
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

read -r P_A P_B P_LB P_SB P_R1 P_R2 < <(free_ports 6)
A=http://127.0.0.1:$P_A; B=http://127.0.0.1:$P_B; LB=http://127.0.0.1:$P_LB; SB=http://127.0.0.1:$P_SB
R1=http://127.0.0.1:$P_R1/hook; R2=http://127.0.0.1:$P_R2/hook
mkdir -p "$WORK"/{a,b,sandbox,nginx/tmp,receivers}

echo "==> database $DB on $PG_URL"
DB_CREATED=1   # first: a signal during `create database` is handled after it, and must drop it
psql "$PG_URL/postgres" -Xqc "create database $DB" >/dev/null

# --- the webhook receivers: log every POST (ids it carries, signature check), answer 200 ------
cat >"$WORK/receiver.py" <<'PY'
import hashlib, hmac, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, secret, logfile = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
records, lock = [], threading.Lock()
out = open(logfile, "a", buffering=1)

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args): pass
    def reply(self, code, body=b""):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        rec = {"t": time.time(), "sig_ok": hmac.compare_digest(expected, self.headers.get("X-Hub-Signature-256", "")),
               "delivery_id": self.headers.get("X-Wagate-Delivery-Id"), "attempt": self.headers.get("X-Wagate-Attempt"),
               "idempotency_key": self.headers.get("X-Idempotency-Key"), "messages": [], "statuses": []}
        try:
            for entry in json.loads(body).get("entry", []):
                for change in entry.get("changes", []):
                    value = change.get("value", {})
                    rec["messages"] += [m.get("id") for m in value.get("messages", [])]
                    rec["statuses"] += [[s.get("id"), s.get("status")] for s in value.get("statuses", [])]
        except ValueError:
            rec["bad_json"] = True
        with lock:
            records.append(rec)
            out.write(json.dumps(rec) + "\n")
        self.reply(200, b'{"ok":true}')
    def do_GET(self):
        with lock:
            body = json.dumps(records).encode()
        self.reply(200, body)

ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
for n in 1 2; do
  port_var=P_R$n
  "$PY" "$WORK/receiver.py" "${!port_var}" "$WEBHOOK_SECRET" "$WORK/receivers/r$n.jsonl" \
    >"$WORK/receivers/r$n.log" 2>&1 &
  PIDS+=("receiver$n $!")
  wait_http "http://127.0.0.1:${!port_var}/" "$!" 10 || { echo "receiver $n did not start" >&2; exit 1; }
done

# --- the Graph emulator, delivering its webhooks to nginx --------------------------------------
(cd "$WORK/sandbox" && exec "$BIN" sandbox --listen "127.0.0.1:$P_SB" \
  --webhook-url "$LB/webhooks/whatsapp" --app-secret "$APP_SECRET") \
  >"$WORK/sandbox/sandbox.out" 2>"$WORK/sandbox/sandbox.log" &
SB_PID=$!
PIDS+=("sandbox $SB_PID")
# Any answer means it listens (the control API has no GET on /).
for _ in $(seq 1 100); do
  curl -s -o /dev/null --max-time 1 "$SB/_sandbox/numbers" && break
  kill -0 "$SB_PID" 2>/dev/null || break
  sleep 0.1
done
curl -s -o /dev/null --max-time 1 "$SB/_sandbox/numbers" || { echo "the emulator did not start" >&2; cat "$WORK/sandbox/sandbox.log" >&2; exit 1; }

# --- two wagate instances on one database ------------------------------------------------------
start_wagate() { # NAME PORT
  local name=$1 port=$2
  (
    cd "$WORK/$name"   # no config/wagate.toml here: embedded defaults + the environment below
    export WAGATE__SERVER__LISTEN=127.0.0.1:$port
    export WAGATE__SERVER__PUBLIC_URL=$LB
    export WAGATE__DATABASE__URL=$PG_URL/$DB$PG_PARAMS
    export WAGATE__SECURITY__MASTER_KEY=$MASTER_KEY
    export WAGATE__META__APP_SECRET=$APP_SECRET
    export WAGATE__META__VERIFY_TOKEN=topology-verify-token
    export WAGATE__GRAPH__BASE_URL=$SB
    export WAGATE__DELIVERY__ALLOW_HTTP=true
    export WAGATE__DELIVERY__ALLOW_PRIVATE_NETWORKS=true
    export WAGATE__LOG__FORMAT=json
    export WAGATE__LOG__LEVEL=${WAGATE_LOG_LEVEL:-info}
    export WAGATE__SERVER__SHUTDOWN_GRACE=3s   # the clean-up waits for it
    exec "$BIN" serve
  ) >"$WORK/$name/wagate.out" 2>"$WORK/$name/wagate.log" &
  local pid=$!
  PIDS+=("wagate-$name $pid")
  if ! wait_http "http://127.0.0.1:$port/readyz" "$pid" 60; then
    echo "wagate $name did not come up:" >&2; tail -n 20 "$WORK/$name/wagate.log" "$WORK/$name/wagate.out" >&2; exit 1
  fi
}
echo "==> wagate A on $A, then wagate B on $B ($(basename "$BIN"), $("$BIN" --version))"
start_wagate a "$P_A"
# stdout is not a terminal: the first start writes its key to a 0600 file and prints only the path.
KEY=$(cat "$WORK/a/initial-api-key" 2>/dev/null || true)
[ -n "$KEY" ] || { echo "instance A wrote no API key file on its first start" >&2; cat "$WORK/a/wagate.out" >&2; exit 1; }
start_wagate b "$P_B"
B_KEYS=$(( $(grep -c 'wag_' "$WORK/b/wagate.out" || true) + $([ -e "$WORK/b/initial-api-key" ] && echo 1 || echo 0) ))

# --- nginx in front of both: deploy/nginx.conf with loopback addresses (no system service) ----
# The upstream's two servers and the listen port are rewritten; the `resolver` line and the
# `resolve` flags go (Docker's DNS is not here, and Debian's nginx 1.22 predates `resolve`).
# Everything else (keepalive, timeouts, body limit, X-Request-Id) is the deployed config.
sed -e "s/^\([[:space:]]*\)server wagate-a:8080 resolve /\1server 127.0.0.1:$P_A /" \
    -e "s/^\([[:space:]]*\)server wagate-b:8080 resolve /\1server 127.0.0.1:$P_B /" \
    -e "s/^\([[:space:]]*\)listen 8080;/\1listen 127.0.0.1:$P_LB;/" \
    -e '/^[[:space:]]*resolver /d' \
    -e "s|^http {|http {\n    client_body_temp_path $WORK/nginx/tmp/body;\n    proxy_temp_path $WORK/nginx/tmp/proxy;\n    fastcgi_temp_path $WORK/nginx/tmp/fastcgi;\n    uwsgi_temp_path $WORK/nginx/tmp/uwsgi;\n    scgi_temp_path $WORK/nginx/tmp/scgi;|" \
    deploy/nginx.conf >"$WORK/nginx/nginx.conf"
for want in "server 127.0.0.1:$P_A " "server 127.0.0.1:$P_B " "listen 127.0.0.1:$P_LB;" "proxy_temp_path $WORK"; do
  grep -qF "$want" "$WORK/nginx/nginx.conf" \
    || { echo "deploy/nginx.conf no longer has the lines this script rewrites (looked for: $want)" >&2; exit 1; }
done
if grep -vE '^[[:space:]]*#' "$WORK/nginx/nginx.conf" | grep -qE 'wagate-[ab]:|[[:space:]]resolve[[:space:];]'; then
  echo "deploy/nginx.conf names hosts this script does not rewrite:" >&2
  grep -nE 'wagate-[ab]:|[[:space:]]resolve[[:space:];]' "$WORK/nginx/nginx.conf" | grep -vE '^[0-9]+:[[:space:]]*#' >&2; exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  # nginx's workers drop to an unprivileged user: let them reach their temp folders.
  chmod 711 "$WORK" "$WORK/nginx"; chmod 1777 "$WORK/nginx/tmp"
fi
NGINX_G="daemon off; pid $WORK/nginx/nginx.pid;"
"$NGINX" -t -q -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g "$NGINX_G" \
  2>>"$WORK/nginx/error.log" || { echo "nginx refused its configuration:" >&2; cat "$WORK/nginx/error.log" >&2; exit 1; }
"$NGINX" -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g "$NGINX_G" \
  >"$WORK/nginx/access.log" 2>>"$WORK/nginx/error.log" &
PIDS+=("nginx $!")
wait_http "$LB/healthz" "$!" 10 || { echo "nginx did not come up:" >&2; cat "$WORK/nginx/error.log" >&2; exit 1; }
echo "==> nginx on $LB -> A, B; emulator on $SB -> $LB/webhooks/whatsapp; receivers $R1, $R2"

# --- connect the demo number through A --------------------------------------------------------
status=$(curl -sS -o "$WORK/connect.json" -w '%{http_code}' --max-time 15 -X POST "$A/platform/v1/whatsapp/phone_numbers" \
  -H "X-API-Key: $KEY" -H 'content-type: application/json' \
  -d "{\"whatsapp_phone_number\":{\"phone_number_id\":\"$PNID\",\"business_account_id\":\"$WABA\",
       \"access_token\":\"$PN_TOKEN\",\"name\":\"topology\",\"webhook_destination_url\":\"$R1\",
       \"webhook_secret\":\"$WEBHOOK_SECRET\"}}")
[ "$status" = 201 ] || { echo "connecting $PNID on A answered $status: $(cat "$WORK/connect.json")" >&2; exit 1; }
echo "==> connected $PNID (WABA $WABA) on A; instance B printed $B_KEYS API key(s) at its start (expected 0)"

# --- the checks -------------------------------------------------------------------------------
cat >"$WORK/prove.py" <<'PY'
import json, os, re, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

E = os.environ
A, B, LB, SB, R1, R2 = E["A"], E["B"], E["LB"], E["SB"], E["R1"], E["R2"]
KEY, PNID, N, MAX_PROP = E["KEY"], E["PNID"], int(E["INBOUND"]), float(E["MAX_PROPAGATION"])
VERBOSE = E.get("VERBOSE") == "1"
failures = 0

def crashed(kind, value, tb):   # an unexpected error (a refused connection…) is a failure too
    import traceback
    traceback.print_exception(kind, value, tb)
    print(f"FAIL checks: stopped by {kind.__name__}: {value}", flush=True)
sys.excepthook = crashed

def http(method, url, body=None, headers=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def js(method, url, body=None, **kw):
    status, raw = http(method, url, body, **kw)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")

def metric(base, name, **labels):
    """Sum of the series `name` whose labels include `labels` (0 when absent)."""
    _, raw = http("GET", base + "/metrics")
    total = 0.0
    for line in raw.decode().splitlines():
        m = re.match(r'^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)', line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return int(total)

def ingested(base):
    return metric(base, "wagate_webhook_events_total", state="processed")

def delivered(base, outcome="succeeded"):
    return metric(base, "wagate_deliveries_total", outcome=outcome)

def received(url):
    return js("GET", url.rsplit("/", 1)[0] + "/")[1]

def wait_for(what, predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            print(f"    (gave up waiting {timeout:g}s for {what})")
            return value
        time.sleep(interval)

def check(ok, label, detail):
    global failures
    print(f"{'PASS' if ok else 'FAIL'} {label}: {detail}", flush=True)
    if not ok:
        failures += 1

def inject(i, tag):
    status, answer = js("POST", SB + "/_sandbox/inbound", {
        "phone_number_id": PNID, "from": f"1555{i % 7:07d}", "profile_name": f"user {i % 7}",
        "type": "text", "text": {"body": f"{tag} #{i}"}}, timeout=20)
    if status != 200:
        return None, f"inject answered {status}: {answer}"
    wamid = answer["envelope"]["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    return wamid, answer.get("webhook_status")

key = {"X-API-Key": KEY}
graph = f"/meta/whatsapp/v24.0/{PNID}"

# The balancer itself: request ids pass through (or nginx makes one), bodies over wagate's
# media limit are refused before reaching an instance.
print("--- nginx (deploy/nginx.conf)")
def request_id(headers):
    req = urllib.request.Request(LB + "/healthz", headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.headers.get("x-request-id")
given, made = request_id({"X-Request-Id": "topology-check-1"}), request_id({})
check(given == "topology-check-1" and bool(made and re.fullmatch(r"[0-9a-f]{32}", made)), "lb.request_id",
      f"X-Request-Id sent -> {given!r}; none sent -> {made!r} (nginx's $request_id)")
import socket
host, port = LB.split("//")[1].split(":")
with socket.create_connection((host, int(port)), timeout=5) as s:
    s.sendall(f"POST {graph}/media HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
              f"X-API-Key: {KEY}\r\nContent-Length: {101 * 1024 * 1024 + 1}\r\n\r\n".encode())
    first = s.recv(200).split(b"\r\n")[0].decode(errors="replace")
check(" 413 " in first + " ", "lb.body_limit", f"a {101 * 1024 * 1024 + 1}-byte upload announced -> {first!r}")

# (a) a send on A; its status webhooks go through nginx to both instances; B serves the result.
print("--- (a) send on A, statuses through nginx, stored message read on B")
a0, b0 = ingested(A), ingested(B)
status, answer = js("POST", A + graph + "/messages", {"messaging_product": "whatsapp",
    "to": "15551234567", "type": "text", "text": {"body": "hello from scripts/topology.sh"}}, headers=key)
wamid = answer.get("messages", [{}])[0].get("id") if isinstance(answer, dict) else None
check(status == 200 and bool(wamid), "a.send", f"POST {graph}/messages on A -> {status}, wamid {wamid}")
t_send = time.monotonic()

def stored_on_b():
    _, page = js("GET", B + graph + "/messages?direction=outbound&limit=20", headers=key)
    for m in (page.get("data", []) if isinstance(page, dict) else []):
        if m.get("id") == wamid:
            return m
    return None

def read_on_b():
    m = stored_on_b()
    return m if m and m.get("kapso", {}).get("status") == "read" else None

wait_for("3 status webhooks ingested", lambda: ingested(A) + ingested(B) - a0 - b0 >= 3, 15)
final = wait_for("status read on B", read_on_b, 15) or stored_on_b() or {}
da, db = ingested(A) - a0, ingested(B) - b0
check(db >= 1, "a.ingest_spread",
      f"status webhooks ingested: A {da}, B {db} (wagate_webhook_events_total{{state=\"processed\"}})")
check(final.get("kapso", {}).get("status") == "read", "a.final_status",
      f"GET {graph}/messages on B: {wamid} status {final.get('kapso', {}).get('status')!r} "
      f"{time.monotonic() - t_send:.2f}s after the send")
# The three statuses are forwarded too; let them land before (b) counts deliveries.
def statuses_forwarded():
    got = [s for r in received(R1) for s in r["statuses"] if s[0] == wamid]
    return got if len(got) >= 3 else None
got = wait_for("status deliveries", statuses_forwarded, 15) or []
check(sorted(s[1] for s in got) == ["delivered", "read", "sent"], "a.statuses_forwarded",
      f"receiver 1 got statuses {[s[1] for s in got]}")

# (b) INBOUND inbound messages through nginx; the deliveries are shared by both instances.
print(f"--- (b) {N} inbound messages through nginx, forwarded by both instances")
wait_for("deliveries of (a) to settle", lambda: delivered(A) + delivered(B) >= 3, 10)
time.sleep(0.3)
a0, b0 = delivered(A), delivered(B)
fa0, fb0 = delivered(A, "failed") + delivered(A, "dead"), delivered(B, "failed") + delivered(B, "dead")
ia0, ib0 = ingested(A), ingested(B)
before = len(received(R1))
t0 = time.monotonic()
with ThreadPoolExecutor(8) as pool:
    results = list(pool.map(lambda i: inject(i, "inbound"), range(N)))
t_injected = time.monotonic() - t0
wamids = [w for w, _ in results if w]
bad = [(w, s) for w, s in results if s != 200]
check(len(wamids) == N and not bad, "b.injected",
      f"{len(wamids)}/{N} injected in {t_injected:.2f}s, emulator got 200 from nginx for {N - len(bad)}"
      + (f"; problems: {bad[:3]}" if bad else ""))
want = set(wamids)
def all_arrived():
    got = {m for r in received(R1)[before:] for m in r["messages"]}
    return want <= got
wait_for(f"{N} deliveries", all_arrived, 30)
wait_for("delivery counters", lambda: delivered(A) + delivered(B) - a0 - b0 >= N, 5)
time.sleep(1.0)   # late duplicates would show up here
records = received(R1)[before:]
counts = {}
for r in records:
    for m in r["messages"]:
        counts[m] = counts.get(m, 0) + 1
missing = [w for w in wamids if w not in counts]
dupes = {w: c for w, c in counts.items() if c > 1}
extra = [w for w in counts if w not in want]
bad_sig = sum(1 for r in records if not r["sig_ok"])
t_all = time.monotonic() - t0
check(not missing and not dupes and not extra and bad_sig == 0, "b.exactly_once",
      f"receiver 1 got {len(counts)} distinct wamids in {len(records)} POSTs: missing {len(missing)}, "
      f"duplicated {len(dupes)}, unexpected {len(extra)}, bad signatures {bad_sig} "
      f"(all in within {t_all:.2f}s of the first injection)")
da, db = delivered(A) - a0, delivered(B) - b0
fa = delivered(A, "failed") + delivered(A, "dead") - fa0
fb = delivered(B, "failed") + delivered(B, "dead") - fb0
check(da > 0 and db > 0 and da + db == N and fa + fb == 0, "b.deliveries_shared",
      f"wagate_deliveries_total{{outcome=\"succeeded\"}}: A {da} + B {db} = {da + db} (want {N}); "
      f"failed/dead A {fa}, B {fb}")
print(f"    ingested through nginx: A {ingested(A) - ia0}, B {ingested(B) - ib0}")

# (c) PATCH on A; how long until B delivers to the new destination. Deliveries read the number
# (and so the URL) through each instance's cache, so this is what depends on B's cache.
print("--- (c) PATCH webhook_destination_url on A; B must follow within", MAX_PROP, "s")
probe_no = [0]
def probe(t_ref):
    """One injected message: (seconds since t_ref, instance that delivered it, "old"/"new")."""
    a1, b1 = delivered(A), delivered(B)
    tp = time.monotonic()
    w, _ = inject(100000 + probe_no[0], "probe")
    probe_no[0] += 1
    if not w:
        return None
    def where():
        for name, url in (("old", R1), ("new", R2)):
            if any(w in r["messages"] for r in received(url)):
                return name
        return None
    dest = wait_for(f"delivery of {w}", where, 10, 0.05)
    wait_for("its delivery counter", lambda: delivered(A) + delivered(B) - a1 - b1 >= 1, 3, 0.05)
    by = "A" if delivered(A) > a1 else "B" if delivered(B) > b1 else "?"
    t = time.monotonic() - t_ref
    if VERBOSE:
        print(f"    probe +{t:.2f}s: {by} -> {dest} ({time.monotonic() - tp:.2f}s)")
    return t, by, dest
# Worst case: let B's cached copy of the number expire (no traffic for longer than cache.ttl),
# then have B deliver once, which loads a fresh copy, and PATCH right after.
time.sleep(5.5)
warm = None
t_warm = time.monotonic()
while time.monotonic() - t_warm < 10:
    warm = probe(t_warm)
    if warm and warm[1] == "B":
        break
print(f"    B's cache warmed: B delivered a probe to the {warm[2] if warm else '?'} URL "
      f"{time.monotonic() - t_warm:.2f}s after 5.5s of quiet" if warm and warm[1] == "B"
      else "    (could not get B to deliver a warm-up probe; measuring anyway)")
status, answer = js("PATCH", A + f"/platform/v1/whatsapp/phone_numbers/{PNID}",
                    {"whatsapp_phone_number": {"webhook_destination_url": R2, "name": "topology (patched)"}},
                    headers=key)
t_patch = time.monotonic()
check(status == 200 and answer.get("data", {}).get("webhook_destination_url") == R2, "c.patch",
      f"PATCH on A -> {status}, webhook_destination_url now {answer.get('data', {}).get('webhook_destination_url') if isinstance(answer, dict) else answer}")
observations = []   # (seconds after the PATCH, instance, receiver)
first_b_new = None
deadline = t_patch + MAX_PROP + 5
while time.monotonic() < deadline and first_b_new is None:
    o = probe(t_patch)
    if o is None:
        continue
    observations.append(o)
    if o[1] == "B" and o[2] == "new":
        first_b_new = o[0]
a_old = [o for o in observations if o[1] == "A" and o[2] == "old"]
b_old = [o for o in observations if o[1] == "B" and o[2] == "old"]
a_new = [o for o in observations if o[1] == "A" and o[2] == "new"]
print(f"    {len(observations)} probes after the PATCH: A->old {len(a_old)}, A->new {len(a_new)}, B->old {len(b_old)}"
      + (f" (B's last delivery to the old URL at +{b_old[-1][0]:.2f}s)" if b_old else ""))
check(not a_old, "c.instance_a_at_once",
      "A (which made the change) never used the old URL after the PATCH" if not a_old
      else f"A delivered to the old URL {len(a_old)} time(s) after its own PATCH, last at +{a_old[-1][0]:.2f}s")
check(first_b_new is not None and first_b_new <= MAX_PROP, "c.instance_b_follows",
      f"B's first delivery to the new URL {first_b_new:.2f}s after the PATCH"
      + (f", its last to the old one at {b_old[-1][0]:.2f}s" if b_old else "")
      + f" (limit {MAX_PROP:g}s; cache.ttl 5s is only the backstop)"
      if first_b_new is not None else f"B never delivered to the new URL within {deadline - t_patch:.0f}s")
# Platform reads go to the database: B shows the new name at once.
_, answer = js("GET", B + f"/platform/v1/whatsapp/phone_numbers/{PNID}", headers=key)
check(isinstance(answer, dict) and answer.get("data", {}).get("name") == "topology (patched)", "c.platform_get_on_b",
      f"GET on B right after: name {answer.get('data', {}).get('name') if isinstance(answer, dict) else answer!r}")

print(f"=== {'all checks passed' if failures == 0 else f'{failures} check(s) FAILED'}")
sys.exit(1 if failures else 0)
PY
# In the background and waited for, so Ctrl-C / SIGTERM stop it (and clean up) at once.
A=$A B=$B LB=$LB SB=$SB R1=$R1 R2=$R2 KEY=$KEY PNID=$PNID INBOUND=$INBOUND MAX_PROPAGATION=$MAX_PROPAGATION VERBOSE=${VERBOSE:-0} \
  timeout 100 "$PY" "$WORK/prove.py" &
PIDS+=("checks $!")
rc=0
wait "$!" || rc=$?
[ "$rc" = 124 ] && echo "FAIL the checks did not finish within 100 s"
echo "==> requests nginx sent to each instance: $(awk '{print $(NF-3)}' "$WORK/nginx/access.log" | sort | uniq -c | awk '{printf "%s %s; ", ($2 == "-" ? "none (answered by nginx)" : $2), $1}')(A is $P_A, B is $P_B)"
warnings=$(cat "$WORK/a/wagate.log" "$WORK/b/wagate.log" | grep -cE '"level":"(WARN|ERROR)"' || true)
echo "==> wagate logged $warnings warning(s)/error(s)"
if [ "$warnings" != 0 ]; then
  cat "$WORK/a/wagate.log" "$WORK/b/wagate.log" | grep -E '"level":"(WARN|ERROR)"' | head -5 | cut -c1-300 | sed 's/^/    /'
fi
exit "$rc"
