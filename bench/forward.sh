#!/usr/bin/env bash
# Webhook forwarding lag benchmark (shared/docs/perf-reliability.md §B, workload W4) for PostgreSQL
# (and SQLite when asked). The load generator and a dummy customer receiver run on CPU 0; wagate
# (and PostgreSQL's postmaster, so its backends) on CPU 1, so figures read as "one core of gateway
# + database, ingesting and forwarding".
#
# Per backend: fresh database, wagate release build with the delivery worker on, a local receiver
# (bench/forward_load.py receive: asyncio HTTP/1.1 keep-alive, answers 200 with an empty body,
# checks X-Hub-Signature-256 and X-Idempotency-Key), one number connected with
# webhook_destination_url = the receiver and a fixed webhook_secret, then
#   warm-up:  RATE events/s for WARMUP s (pre-signed, unique wamids; discarded), until delivered;
#   measured: an open loop at RATE events/s for OPEN_DURATION s (bench/ingest_load.py's generator,
#             which also notes the wall-clock time of each 200 ack), then waits until every acked
#             event reached the receiver (at most WAIT_TIMEOUT s).
# Lag = receiver's receive time - wagate's 200 ack, per wamid, first delivery (both time.time(), one
# host; a delivery can reach the receiver before the generator reads the ack, so the minimum may be < 0).
# Reports sent/acked/delivered, duplicates, bad signatures/keys, ack p50/p99, lag p50/p90/p99/max,
# CPU shares. Targets (reported, not asserted): lag p50 <= 20 ms, p99 <= 200 ms on PostgreSQL at
# 2,000 events/s. Exits 1 if an acked event was never delivered or a signature or idempotency key
# was wrong.
#
# Usage: bench/forward.sh
#   BACKENDS="postgres" (or "postgres sqlite")  RATE=2000  OPEN_DURATION=10  WARMUP=2 (seconds, integers >= 1)
#   WAIT_TIMEOUT=60 (s to wait for the deliveries of acked events)  GRACE=1 (s more, for late duplicates)
#   SEND_CONNS=32 (initial sender connections; more are opened when all are busy)
#   PG_URL=postgres://postgres@127.0.0.1:5432   BIN=path/to/wagate (skips the build)
#   PG_PARAMS="?sslmode=disable" (appended to wagate's database URL. The default turns TLS off: the
#             database is on loopback, where TLS only costs CPU (about a third of ingest's, measured);
#             PG_PARAMS= measures with the TLS sqlx negotiates when the server offers it)
#   ANALYZE=1 (VACUUM ANALYZE PostgreSQL after the warm-up; 0 = fresh, unanalyzed tables)
#   WEBHOOK_SECRET=... (the number's webhook secret)   KEEP=1 (keep the work directory and print it)
#   Other WAGATE__* variables in the environment reach wagate (e.g. WAGATE__DELIVERY__PER_DESTINATION).
set -euo pipefail
cd "$(dirname "$0")/.."

BACKENDS=${BACKENDS:-postgres}
RATE=${RATE:-2000}
# PIN=0: nothing pinned (§B2 step 6, the whole 2-core machine; the per-core CPU lines then mix
# processes, the µs-per-event figures still hold).
PIN=${PIN:-1}
if [ "$PIN" = 1 ]; then ON_SERVER_CPU="taskset -c 1"; ON_LOAD_CPU="taskset -c 0"
else ON_SERVER_CPU=""; ON_LOAD_CPU=""; fi
OPEN_DURATION=${OPEN_DURATION:-10}
WARMUP=${WARMUP:-2}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-60}
GRACE=${GRACE:-1}
SEND_CONNS=${SEND_CONNS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_PARAMS=${PG_PARAMS-?sslmode=disable}   # appended to wagate's database URL
ANALYZE=${ANALYZE:-1}
KEEP=${KEEP:-0}
WEBHOOK_SECRET=${WEBHOOK_SECRET:-wagate-forward-bench-webhook-secret-0001}
APP_SECRET=bench-app-secret
MASTER_KEY=$(printf 'wagate-ingest-bench-master-key!!' | base64)   # 32 bytes
PNID=100000000000001; WABA=200000000000001
INGEST="python3 $PWD/bench/ingest_load.py"
FWD="python3 $PWD/bench/forward_load.py"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need taskset || ! need curl; then
  echo "==> installing util-linux, curl from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq util-linux curl >/dev/null
fi
if [[ " $BACKENDS " == *" postgres "* ]] && ! need psql; then
  echo "psql is needed for the PostgreSQL run (apt-get install postgresql-client)" >&2; exit 1
fi

if [ -n "${BIN:-}" ]; then
  echo "==> using BIN=$BIN (no build)"
else
  echo "==> building wagate (release)"
  if ! cargo build --release --quiet; then
    echo "cargo build --release failed (BIN=target/release/wagate reuses an existing binary)" >&2; exit 1
  fi
  BIN="$PWD/target/release/wagate"
fi
[ -x "$BIN" ] || { echo "no wagate binary at $BIN" >&2; exit 1; }
BIN=$(realpath "$BIN")

exec 9>/tmp/wagate-forward-bench.lock
flock -n 9 || { echo "another bench/forward.sh is running (lock /tmp/wagate-forward-bench.lock)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/wagate-forward.XXXXXX)
WAGATE_PID=""
RECV_PID=""
CHILD=""    # the load generator (or waiter) running now (killed at once on Ctrl-C/TERM)
SIGNERS=""
PG_DBS=()
PINNED=()   # "pid original-cpu-list" of the PostgreSQL processes pinned to CPU 1
PG_PM=""    # the postmaster, once found
ALL_CPUS="0-$(($(nproc --all) - 1))"
cleanup() {
  local rc=$?
  set +e
  for pid in $CHILD $SIGNERS; do kill "$pid" 2>/dev/null; done
  if [ -n "$WAGATE_PID" ]; then kill "$WAGATE_PID" 2>/dev/null; wait "$WAGATE_PID" 2>/dev/null; fi
  if [ -n "$RECV_PID" ]; then kill "$RECV_PID" 2>/dev/null; wait "$RECV_PID" 2>/dev/null; fi
  unpin_postgres
  for db in "${PG_DBS[@]}"; do
    psql "$PG_URL/postgres" -Xqc "drop database if exists $db with (force)" >/dev/null 2>&1
  done
  if [ "$KEEP" = 1 ]; then echo "work directory kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run() { # run a command in the background and wait for it, so a signal is handled at once
  "$@" &
  CHILD=$!
  wait "$CHILD"
  CHILD=""
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { # cpu0 busy, all; cpu1 busy, all, irq+softirq
  awk '$1=="cpu0"{a=$2+$3+$4+$7+$8; b=$2+$3+$4+$5+$6+$7+$8}
       $1=="cpu1"{c=$2+$3+$4+$7+$8; d=$2+$3+$4+$5+$6+$7+$8; e=$7+$8}
       END{print a, b, c, d, e}' /proc/stat
}
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
pg_ticks() { # CPU ticks of the PostgreSQL server processes (0 when not known)
  local t=0 pid pm=$PG_PM
  [ -n "$pm" ] || { echo 0; return; }
  for pid in $pm $(pgrep -P "$pm"); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}

unpin_postgres() {
  [ ${#PINNED[@]} -gt 0 ] || return 0
  # Back to every CPU: the processes we pinned and the backends forked meanwhile.
  local pm=${PINNED[0]%% *} pid
  for pid in $pm $(pgrep -P "$pm"); do
    if [ "$(taskset -c -p "$pid" 2>/dev/null | awk '{print $NF}')" = 1 ]; then
      taskset -a -p -c "$ALL_CPUS" "$pid" >/dev/null 2>&1 || true
    fi
  done
  PG_PM=$pm
  PINNED=()
}
pin_postgres() {
  local dir pm pid
  dir=$(psql "$PG_URL/postgres" -XAtc "show data_directory" 2>/dev/null) || return 0
  pm=$(head -1 "$dir/postmaster.pid" 2>/dev/null || pgrep -o -x postgres || true)
  [ -n "$pm" ] || { echo "    (postmaster not found; PostgreSQL left unpinned)"; return 0; }
  PG_PM=$pm
  for pid in "$pm" $(pgrep -P "$pm"); do
    local orig
    orig=$(taskset -c -p "$pid" 2>/dev/null | awk '{print $NF}') || continue
    if taskset -a -p -c 1 "$pid" >/dev/null 2>&1; then PINNED+=("$pid $orig"); fi
  done
  echo "    PostgreSQL postmaster $pm and its children pinned to CPU 1 (restored on exit)"
}

stop_receiver() { # SIGTERM makes it write received.json; bounded wait
  [ -n "$RECV_PID" ] || return 0
  kill -TERM "$RECV_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$RECV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$RECV_PID" 2>/dev/null || true
  wait "$RECV_PID" 2>/dev/null || true
  RECV_PID=""
}

echo "==> pre-signing events (warm-up $((RATE * WARMUP)), measured $((RATE * OPEN_DURATION)))"
$INGEST sign --secret "$APP_SECRET" --prefix warm --count "$((RATE * WARMUP))" --out "$WORK/warm.txt" --seed 1 &
$INGEST sign --secret "$APP_SECRET" --prefix open --count "$((RATE * OPEN_DURATION))" --out "$WORK/open.txt" --seed 3 &
SIGNERS=$(jobs -p)
wait
SIGNERS=""

run_backend() {
  local backend=$1 db_url wagate_url dir port base key rport hook
  dir="$WORK/$backend"; mkdir -p "$dir"
  echo "==> $backend"
  if [ "$backend" = postgres ]; then
    local db="wagate_forward_bench_$$"
    psql "$PG_URL/postgres" -Xqc "drop database if exists $db" >/dev/null 2>&1
    psql "$PG_URL/postgres" -Xqc "create database $db" >/dev/null
    PG_DBS+=("$db")
    db_url="$PG_URL/$db"
    echo "    PostgreSQL: $(psql "$db_url" -XAtc "select 'shared_buffers=' || current_setting('shared_buffers') || ' synchronous_commit=' || current_setting('synchronous_commit') || ' fsync=' || current_setting('fsync') || ' ssl=' || current_setting('ssl')")${PG_PARAMS:+, wagate URL params $PG_PARAMS}"
    if [ "$PIN" = 1 ]; then pin_postgres; else PG_PM=$(head -1 "$(psql "$PG_URL/postgres" -XAtc "show data_directory")/postmaster.pid" 2>/dev/null || true); fi
    wagate_url="$db_url$PG_PARAMS"
  else
    db_url="sqlite://$dir/wagate.db"
    wagate_url=$db_url
  fi

  # The customer's receiver, on CPU 0 with the load generator.
  rport=$(free_port)
  hook="http://127.0.0.1:$rport/hook"
  $ON_LOAD_CPU $FWD receive --port "$rport" --secret "$WEBHOOK_SECRET" --out "$dir/received.json" \
    2>"$dir/receiver.log" &
  RECV_PID=$!
  local up=0
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$rport/_status" 2>/dev/null; then up=1; break; fi
    kill -0 "$RECV_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [ $up = 0 ]; then echo "the receiver did not come up:" >&2; cat "$dir/receiver.log" >&2; exit 1; fi
  echo "    receiver on $hook (CPU 0)"

  port=$(free_port)
  base="http://127.0.0.1:$port"
  (
    cd "$dir"
    export WAGATE__SERVER__LISTEN=127.0.0.1:$port
    export WAGATE__DATABASE__URL=$wagate_url
    export WAGATE__SECURITY__MASTER_KEY=$MASTER_KEY
    export WAGATE__META__APP_SECRET=$APP_SECRET
    export WAGATE__LOG__LEVEL=warn
    export WAGATE__LOG__FORMAT=json
    export WAGATE__GRAPH__VERIFY_NUMBERS=false      # no Graph here
    export WAGATE__WORKERS__DELIVERY=true
    export WAGATE__DELIVERY__ALLOW_HTTP=true        # the receiver is plain http ...
    export WAGATE__DELIVERY__ALLOW_PRIVATE_NETWORKS=true   # ... on loopback
    exec $ON_SERVER_CPU "$BIN" serve
  ) >"$dir/wagate.out" 2>"$dir/wagate.log" &
  WAGATE_PID=$!
  up=0
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$base/healthz" 2>/dev/null; then up=1; break; fi
    kill -0 "$WAGATE_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ $up = 0 ]; then echo "wagate did not come up:" >&2; tail -n 30 "$dir/wagate.log" "$dir/wagate.out" >&2; exit 1; fi
  # The first start writes its key to a 0600 file when stdout is not a terminal (older builds print it).
  key=$( (find "$dir" -name initial-api-key -exec cat {} + 2>/dev/null; grep -o 'wag_[A-Za-z0-9_-]*' "$dir/wagate.out" || true) | head -1)
  [ -n "$key" ] || { echo "no API key printed by wagate" >&2; tail -n 30 "$dir/wagate.log" >&2; exit 1; }
  local code
  code=$(curl -sS -o "$dir/connect.json" -w '%{http_code}' -X POST "$base/platform/v1/whatsapp/phone_numbers" \
    -H "X-API-Key: $key" -H 'content-type: application/json' \
    -d "{\"whatsapp_phone_number\":{\"phone_number_id\":\"$PNID\",\"business_account_id\":\"$WABA\",\"access_token\":\"bench-token\",\"webhook_destination_url\":\"$hook\",\"webhook_secret\":\"$WEBHOOK_SECRET\"}}")
  if [ "${code:0:1}" != 2 ]; then
    echo "connecting the number failed (HTTP $code):" >&2; cat "$dir/connect.json" >&2; echo >&2; exit 1
  fi

  local url="$base/webhooks/whatsapp" w w_expected w_missing w_waited
  echo "    warm-up: $RATE events/s for ${WARMUP}s, then until delivered (at most ${WAIT_TIMEOUT}s)"
  run $ON_LOAD_CPU $FWD open --url "$url" --file "$WORK/warm.txt" --rate "$RATE" --duration "$WARMUP" \
    --conns "$SEND_CONNS" --out "$dir/warm.json" --acks-out "$dir/warm.acks" >/dev/null
  run $FWD wait --url "http://127.0.0.1:$rport" --acks "$dir/warm.acks" --prefix warm \
    --timeout "$WAIT_TIMEOUT" --grace 0 >"$dir/wait_warm.json"
  w=$(python3 -c 'import json,sys; w=json.load(open(sys.argv[1])); print(w["expected"], w["missing"], w["waited_s"])' "$dir/wait_warm.json")
  read -r w_expected w_missing w_waited <<<"$w"
  echo "    warm-up: $((w_expected - w_missing)) of $w_expected acked events delivered after ${w_waited}s"
  if [ "$w_expected" -gt 0 ] && [ "$w_missing" = "$w_expected" ]; then
    echo "no warm-up event reached the receiver in ${WAIT_TIMEOUT}s: is webhook forwarding on?" >&2
    echo "receiver: $(curl -fsS "http://127.0.0.1:$rport/_status" 2>/dev/null)" >&2
    tail -n 20 "$dir/wagate.log" >&2
    exit 1
  fi
  if [ "$backend" = postgres ] && [ "$ANALYZE" = 1 ]; then
    echo "    vacuum analyze (autovacuum=$(psql "$db_url" -XAtc 'show autovacuum'))"
    psql "$db_url" -Xqc "vacuum analyze" >/dev/null
  fi

  echo "    measured: open loop $RATE events/s for ${OPEN_DURATION}s"
  local ca cb wa wb pa pb ra rb
  ca=$(cpu_ticks); wa=$(proc_ticks "$WAGATE_PID"); pa=$(pg_ticks); ra=$(proc_ticks "$RECV_PID")
  run $ON_LOAD_CPU $FWD open --url "$url" --file "$WORK/open.txt" --rate "$RATE" --duration "$OPEN_DURATION" \
    --conns "$SEND_CONNS" --out "$dir/open.json" --acks-out "$dir/open.acks" >/dev/null
  cb=$(cpu_ticks); wb=$(proc_ticks "$WAGATE_PID"); pb=$(pg_ticks); rb=$(proc_ticks "$RECV_PID")
  echo "$ca $cb $wa $wb $pa $pb $ra $rb $(getconf CLK_TCK)" >"$dir/cpu.txt"
  echo "    waiting for the deliveries (at most ${WAIT_TIMEOUT}s, then ${GRACE}s more)"
  run $FWD wait --url "http://127.0.0.1:$rport" --acks "$dir/open.acks" --prefix open \
    --timeout "$WAIT_TIMEOUT" --grace "$GRACE" >"$dir/wait_open.json"
  ps -o rss= -p "$WAGATE_PID" | tr -d ' ' >"$dir/rss.txt"

  kill "$WAGATE_PID"; wait "$WAGATE_PID" 2>/dev/null || true; WAGATE_PID=""
  stop_receiver
  if [ "$backend" = postgres ]; then unpin_postgres; fi
  [ -s "$dir/received.json" ] || { echo "the receiver wrote no records:" >&2; cat "$dir/receiver.log" >&2; }
  grep -E '"level":"(WARN|ERROR)"' "$dir/wagate.log" >"$dir/warnings.txt" || true
  if [ -s "$dir/warnings.txt" ]; then
    echo "    wagate logged $(wc -l <"$dir/warnings.txt") warnings/errors; first 5:"
    head -5 "$dir/warnings.txt" | cut -c1-300 | sed 's/^/      /'
  fi
}

FAILED=0
for backend in $BACKENDS; do run_backend "$backend"; done
$FWD report --dir "$WORK" --backends "$BACKENDS" --rate "$RATE" --open-duration "$OPEN_DURATION" --pinned "$PIN" || FAILED=1
exit $FAILED
