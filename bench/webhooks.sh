#!/usr/bin/env bash
# Three webhooks on one number vs none (issue #19's benchmark; shared/docs/perf-reliability.md §B,
# workload W4 with webhook resources), PostgreSQL. A sibling of bench/forward.sh with the same
# topology: wagate (and PostgreSQL's postmaster, so its backends) pinned on CPU 1, the load
# generator and the receiver on CPU 0.
#
# ROUNDS rounds, each running the two modes one after the other (none, three, none, three, ...):
#   none   the number has no webhooks at all (no webhook_destination_url): ingest alone.
#   three  the number has three webhooks: `meta` (webhook_destination_url = /meta, signed with its
#          webhook_secret), `kapso` unbuffered (/kapso) and `kapso` buffered (/kapso-buffered,
#          buffer_window_seconds=BUFFER_WINDOW, max_buffer_size=MAX_BUFFER), both subscribed to
#          whatsapp.message.received and created through the Platform API; their secret_keys are
#          handed to the receiver (POST /_secrets).
# Each run: fresh database, wagate release build with the delivery worker on, one receiver process
# (bench/webhooks_load.py receive: three paths, each kind's signature and headers checked, wamids and
# arrival times recorded per path, a batch's every data[].message.id), then
#   warm-up:  RATE events/s for WARMUP s (pre-signed, unique wamids, 1,000 senders), until delivered;
#   measured: an open loop at RATE events/s for OPEN_DURATION s (bench/forward_load.py open: acks'
#             wall-clock times), then waits until every acked event reached every path of the mode.
# Reports ack p50/p99 per mode (median over rounds) and three/none; per path lag p50/p99/max (lag =
# receive time - 200 ack, first delivery; buffered lag is about the window by design), delivered /
# missing / duplicates (retries of the same X-Idempotency-Key apart) / bad signatures; CPU shares.
# Targets (reported, not asserted): ack p99 three/none <= 1.3; /kapso lag p50 <= 20 ms, p99 <= 200 ms.
# Exits 1 on a missing delivery, a duplicate beyond retries, a bad signature or wrong Kapso headers.
#
# Usage: bench/webhooks.sh
#   RATE=2000  OPEN_DURATION=10  WARMUP=2 (s, integers >= 1)  ROUNDS=2  MODES="none three" (order in a round;
#             also: meta, kapso, buffered = that webhook alone, to attribute the cost)
#   QUIET_MAX=10 QUIET_WAIT=180 (each run first waits, at most QUIET_WAIT s, until both CPUs are at most
#             QUIET_MAX% busy: other builds and tests on the machine skew pinned figures)
#   BUFFER_WINDOW=1 (s)  MAX_BUFFER=50   CONTACTS=1000 (senders, so conversations, of the events)
#   WAIT_TIMEOUT=60 (s to wait for the deliveries of acked events)  GRACE=1 (s more, for late duplicates)
#   SEND_CONNS=32   PG_URL=postgres://postgres@127.0.0.1:5432   PG_PARAMS="?sslmode=disable"
#   ANALYZE=1 (VACUUM ANALYZE after the warm-up)   PIN=1 (0: nothing pinned)   KEEP=1 (keep the work dir)
#   BIN=path/to/wagate (skips the build; else cargo build --release, honouring CARGO_TARGET_DIR)
#   PERF=1 (perf record -g on wagate during the first measured PERF_MODE (three) run: perf-report.txt in the
#             work dir, so with KEEP=1; that run is then perturbed: measure in a separate invocation)
#             PERF_ARGS="-g" (perf record's options)
#   Other WAGATE__* variables in the environment reach wagate (e.g. WAGATE__DELIVERY__BUFFER_POLL_INTERVAL).
#
# Runs on 2026-12-04 (wagate 6a4fce0, release; 2 vCPUs shared with other engineers' builds, each run
# waited for a quiet machine). Medians over rounds; ack in ms; lag = receive - ack, in ms.
#   bench/webhooks.sh (2,000/s, pinned, 2 rounds):  ack p50/p99 none 6.6/21.7, three 2,428/4,933
#     (p99 227x none: target 1.3x NOT met); /kapso lag p50/p99/max 72.9/711.5/1,158 (NOT met);
#     /meta 72.7/711.6/1,158; /kapso-buffered 7,677/18,364/20,166; CPU 172+298 vs 267+480 µs/event
#     wagate+PostgreSQL: three needs ~1.5 cores at 2,000/s, so CPU 1 saturates and the acks queue.
#   MODES="none meta kapso buffered" ROUNDS=1: ack p99 21.4 / 121 / 126 / 413; lag /meta 8.4/37.6,
#     /kapso 14.9/583, buffered 4,759/12,841: the none baseline already holds CPU 1 at ~95%.
#   PIN=0 (whole machine): ack p99 none 72.9, three 2,745 (37.7x); /kapso lag 61.9/1,434.
#   RATE=1000 (pinned): ack p99 none 9.4, three 104.4 (11.1x); /kapso lag 12.4/36.1 (met);
#     buffered 4,179/11,575 (~200 batches/s at most from the serial one-transaction-per-batch flush).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-2000}
PIN=${PIN:-1}
if [ "$PIN" = 1 ]; then ON_SERVER_CPU="taskset -c 1"; ON_LOAD_CPU="taskset -c 0"
else ON_SERVER_CPU=""; ON_LOAD_CPU=""; fi
OPEN_DURATION=${OPEN_DURATION:-10}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-none three}
BUFFER_WINDOW=${BUFFER_WINDOW:-1}
MAX_BUFFER=${MAX_BUFFER:-50}
CONTACTS=${CONTACTS:-1000}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-60}
GRACE=${GRACE:-1}
SEND_CONNS=${SEND_CONNS:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_PARAMS=${PG_PARAMS-?sslmode=disable}
ANALYZE=${ANALYZE:-1}
KEEP=${KEEP:-0}
PERF=${PERF:-0}
PERF_MODE=${PERF_MODE:-three}
PERF_ARGS=${PERF_ARGS:--g}   # e.g. "--call-graph dwarf,16384 -F 499" for call chains without frame pointers
QUIET_MAX=${QUIET_MAX:-10}   # % of both CPUs busy above which a run waits (at most QUIET_WAIT s) to start
QUIET_WAIT=${QUIET_WAIT:-180}
WEBHOOK_SECRET=${WEBHOOK_SECRET:-wagate-webhooks-bench-meta-secret-0001}
APP_SECRET=bench-app-secret
MASTER_KEY=$(printf 'wagate-ingest-bench-master-key!!' | base64)   # 32 bytes
PNID=100000000000001; WABA=200000000000001
INGEST="python3 $PWD/bench/ingest_load.py"
FWD="python3 $PWD/bench/forward_load.py"
HOOKS="python3 $PWD/bench/webhooks_load.py"

need() { command -v "$1" >/dev/null 2>&1; }
for t in taskset curl psql; do need "$t" || { echo "$t is needed (util-linux, curl, postgresql-client)" >&2; exit 1; }; done
if [ "$PERF" = 1 ] && ! need perf; then echo "PERF=1 needs perf (linux-perf)" >&2; exit 1; fi

if [ -n "${BIN:-}" ]; then
  echo "==> using BIN=$BIN (no build)"
else
  echo "==> building wagate (release)"
  cargo build --release --quiet || { echo "cargo build --release failed" >&2; exit 1; }
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/wagate"
fi
[ -x "$BIN" ] || { echo "no wagate binary at $BIN" >&2; exit 1; }
BIN=$(realpath "$BIN")

# The same lock as bench/forward.sh: both pin PostgreSQL and use the two CPUs.
exec 9>/tmp/wagate-forward-bench.lock
flock -n 9 || { echo "another bench/forward.sh or webhooks.sh is running (lock /tmp/wagate-forward-bench.lock)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/wagate-webhooks.XXXXXX)
WAGATE_PID=""
RECV_PID=""
CHILD=""
SIGNERS=""
PERF_PID=""
PG_DBS=()
PINNED=()
PG_PM=""
ALL_CPUS="0-$(($(nproc --all) - 1))"
cleanup() {
  local rc=$?
  set +e
  for pid in $CHILD $SIGNERS $PERF_PID; do kill "$pid" 2>/dev/null; done
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

run() { "$@" & CHILD=$!; wait "$CHILD"; CHILD=""; }
busy_pct() { # both CPUs' busy share over 1 s
  local a b
  a=$(awk '$1=="cpu"{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat); sleep 1
  b=$(awk '$1=="cpu"{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
  echo "$a $b" | awk '{d=$4-$2; print (d>0) ? int(100*($3-$1)/d) : 0}'
}
wait_quiet() { # other work on this machine (builds, tests) skews a pinned run: wait for a quiet one
  local t=0 b
  while b=$(busy_pct); [ "$b" -gt "$QUIET_MAX" ] && [ $t -lt "$QUIET_WAIT" ]; do sleep 2; t=$((t + 3)); done
  [ $t -eq 0 ] || echo "    waited ${t}s for a quiet machine (busy ${b}% of both CPUs; QUIET_MAX=$QUIET_MAX)"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { # cpu0 busy, all; cpu1 busy, all, irq+softirq
  awk '$1=="cpu0"{a=$2+$3+$4+$7+$8; b=$2+$3+$4+$5+$6+$7+$8}
       $1=="cpu1"{c=$2+$3+$4+$7+$8; d=$2+$3+$4+$5+$6+$7+$8; e=$7+$8}
       END{print a, b, c, d, e}' /proc/stat
}
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
pg_ticks() {
  local t=0 pid pm=$PG_PM
  [ -n "$pm" ] || { echo 0; return; }
  for pid in $pm $(pgrep -P "$pm"); do
    t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}
unpin_postgres() {
  [ ${#PINNED[@]} -gt 0 ] || return 0
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
}
stop_receiver() {
  [ -n "$RECV_PID" ] || return 0
  kill -TERM "$RECV_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$RECV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$RECV_PID" 2>/dev/null || true
  wait "$RECV_PID" 2>/dev/null || true
  RECV_PID=""
}
api() { # METHOD PATH BODY OUT -> HTTP code
  curl -sS -o "$4" -w '%{http_code}' -X "$1" "$BASE$2" -H "X-API-Key: $KEY" -H 'content-type: application/json' -d "$3"
}

echo "==> pre-signing events (warm-up $((RATE * WARMUP)), measured $((RATE * OPEN_DURATION)), $CONTACTS senders)"
$INGEST sign --secret "$APP_SECRET" --prefix warm --count "$((RATE * WARMUP))" --out "$WORK/warm.txt" --seed 1 --contacts "$CONTACTS" &
$INGEST sign --secret "$APP_SECRET" --prefix open --count "$((RATE * OPEN_DURATION))" --out "$WORK/open.txt" --seed 3 --contacts "$CONTACTS" &
SIGNERS=$(jobs -p)
wait
SIGNERS=""

PERF_DONE=0
run_one() {
  local name=$1 mode=$2 dir="$WORK/$1" db="wagate_webhooks_bench_$$_$1" db_url rport rbase port paths up code
  db=${db//-/_}
  mkdir -p "$dir"
  echo "==> $name ($mode)"
  psql "$PG_URL/postgres" -Xqc "drop database if exists $db" >/dev/null 2>&1
  psql "$PG_URL/postgres" -Xqc "create database $db" >/dev/null
  PG_DBS+=("$db")
  db_url="$PG_URL/$db"
  if [ "$PIN" = 1 ]; then pin_postgres; else PG_PM=$(head -1 "$(psql "$PG_URL/postgres" -XAtc "show data_directory")/postmaster.pid" 2>/dev/null || true); fi

  wait_quiet
  rport=$(free_port)
  rbase="http://127.0.0.1:$rport"
  $ON_LOAD_CPU $HOOKS receive --port "$rport" --meta-secret "$WEBHOOK_SECRET" --out "$dir/received.json" \
    2>"$dir/receiver.log" &
  RECV_PID=$!
  up=0
  for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "$rbase/_status" 2>/dev/null; then up=1; break; fi
    kill -0 "$RECV_PID" 2>/dev/null || break
    sleep 0.05
  done
  [ $up = 1 ] || { echo "the receiver did not come up:" >&2; cat "$dir/receiver.log" >&2; exit 1; }

  port=$(free_port)
  BASE="http://127.0.0.1:$port"
  (
    cd "$dir"
    export WAGATE__SERVER__LISTEN=127.0.0.1:$port
    export WAGATE__DATABASE__URL=$db_url$PG_PARAMS
    export WAGATE__SECURITY__MASTER_KEY=$MASTER_KEY
    export WAGATE__META__APP_SECRET=$APP_SECRET
    export WAGATE__LOG__LEVEL=warn
    export WAGATE__LOG__FORMAT=json
    export WAGATE__GRAPH__VERIFY_NUMBERS=false
    export WAGATE__WORKERS__DELIVERY=true
    export WAGATE__DELIVERY__ALLOW_HTTP=true
    export WAGATE__DELIVERY__ALLOW_PRIVATE_NETWORKS=true
    exec $ON_SERVER_CPU "$BIN" serve
  ) >"$dir/wagate.out" 2>"$dir/wagate.log" &
  WAGATE_PID=$!
  up=0
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null; then up=1; break; fi
    kill -0 "$WAGATE_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ $up = 1 ] || { echo "wagate did not come up:" >&2; tail -n 30 "$dir/wagate.log" "$dir/wagate.out" >&2; exit 1; }
  KEY=$( (find "$dir" -name initial-api-key -exec cat {} + 2>/dev/null; grep -o 'wag_[A-Za-z0-9_-]*' "$dir/wagate.out" || true) | head -1)
  [ -n "$KEY" ] || { echo "no API key printed by wagate" >&2; tail -n 30 "$dir/wagate.log" >&2; exit 1; }

  # The webhooks of the mode: meta (webhook_destination_url), kapso, kapso buffered.
  local want_meta=0 want_kapso=0 want_buf=0 hook_fields="" k buffered secret secrets=""
  case $mode in
    none) ;;
    three) want_meta=1; want_kapso=1; want_buf=1 ;;
    meta) want_meta=1 ;;
    kapso) want_kapso=1 ;;
    buffered) want_buf=1 ;;
    *) echo "unknown mode $mode (none, three, meta, kapso, buffered)" >&2; exit 1 ;;
  esac
  paths=""
  if [ $want_meta = 1 ]; then
    hook_fields=",\"webhook_destination_url\":\"$rbase/meta\",\"webhook_secret\":\"$WEBHOOK_SECRET\""
    paths="/meta"
  fi
  code=$(api POST /platform/v1/whatsapp/phone_numbers \
    "{\"whatsapp_phone_number\":{\"phone_number_id\":\"$PNID\",\"business_account_id\":\"$WABA\",\"access_token\":\"bench-token\"$hook_fields}}" \
    "$dir/connect.json")
  [ "${code:0:1}" = 2 ] || { echo "connecting the number failed (HTTP $code): $(cat "$dir/connect.json")" >&2; exit 1; }
  for k in kapso kapso-buffered; do
    if [ $k = kapso ]; then [ $want_kapso = 1 ] || continue; buffered=""
    else [ $want_buf = 1 ] || continue
      buffered=",\"buffer_enabled\":true,\"buffer_window_seconds\":$BUFFER_WINDOW,\"max_buffer_size\":$MAX_BUFFER"
    fi
    code=$(api POST "/platform/v1/whatsapp/phone_numbers/$PNID/webhooks" \
      "{\"whatsapp_webhook\":{\"url\":\"$rbase/$k\",\"events\":[\"whatsapp.message.received\"]$buffered}}" "$dir/create-$k.json")
    [ "$code" = 201 ] || { echo "creating the $k webhook failed (HTTP $code): $(cat "$dir/create-$k.json")" >&2; exit 1; }
    secret=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["data"]["secret_key"])' "$dir/create-$k.json")
    secrets="$secrets${secrets:+,}\"/$k\":\"$secret\""
    paths="$paths /$k"
  done
  paths=${paths# }
  echo "$paths" >"$dir/paths.txt"
  if [ -n "$secrets" ]; then curl -fsS -o /dev/null -X POST "$rbase/_secrets" -d "{$secrets}"; fi
  echo "    webhooks: ${paths:-none}${paths:+ (on $rbase)}"

  local url="$BASE/webhooks/whatsapp" w
  run $ON_LOAD_CPU $FWD open --url "$url" --file "$WORK/warm.txt" --rate "$RATE" --duration "$WARMUP" \
    --conns "$SEND_CONNS" --out "$dir/warm.json" --acks-out "$dir/warm.acks" >/dev/null
  if [ -n "$paths" ]; then
    run $HOOKS wait --url "$rbase" --acks "$dir/warm.acks" --prefix warm --paths "$paths" \
      --timeout "$WAIT_TIMEOUT" --grace 0 >"$dir/wait_warm.json"
    w=$(python3 -c 'import json,sys; w=json.load(open(sys.argv[1])); print(w["expected"], w["missing_by_path"], w["waited_s"])' "$dir/wait_warm.json")
    echo "    warm-up: expected, missing by path, waited s: $w"
  fi
  if [ "$ANALYZE" = 1 ]; then psql "$db_url" -Xqc "vacuum analyze" >/dev/null; fi

  echo "    measured: open loop $RATE events/s for ${OPEN_DURATION}s"
  if [ "$PERF" = 1 ] && [ "$mode" = "$PERF_MODE" ] && [ "$PERF_DONE" = 0 ]; then
    perf record $PERF_ARGS -o "$WORK/perf.data" -p "$WAGATE_PID" -- sleep "$OPEN_DURATION" >"$WORK/perf.log" 2>&1 &
    PERF_PID=$!
  fi
  local ca cb wa wb pa pb ra rb
  ca=$(cpu_ticks); wa=$(proc_ticks "$WAGATE_PID"); pa=$(pg_ticks); ra=$(proc_ticks "$RECV_PID")
  run $ON_LOAD_CPU $FWD open --url "$url" --file "$WORK/open.txt" --rate "$RATE" --duration "$OPEN_DURATION" \
    --conns "$SEND_CONNS" --out "$dir/open.json" --acks-out "$dir/open.acks" >/dev/null
  cb=$(cpu_ticks); wb=$(proc_ticks "$WAGATE_PID"); pb=$(pg_ticks); rb=$(proc_ticks "$RECV_PID")
  echo "$ca $cb $wa $wb $pa $pb $ra $rb $(getconf CLK_TCK)" >"$dir/cpu.txt"
  if [ -n "$PERF_PID" ]; then wait "$PERF_PID" || true; PERF_PID=""; PERF_DONE=1
    # Release builds have no frame pointers, so -g call chains are mostly unresolved: a flat
    # profile by symbol and by shared object says more.
    { perf report -i "$WORK/perf.data" --no-children -g none --sort dso 2>/dev/null | grep -v '^#' | grep . | head -8
      perf report -i "$WORK/perf.data" --no-children -g none --sort sym 2>/dev/null | grep -v '^#' | grep . | head -60
    } >"$WORK/perf-report.txt" || true
    echo "    perf: $WORK/perf-report.txt"
  fi
  if [ -n "$paths" ]; then
    run $HOOKS wait --url "$rbase" --acks "$dir/open.acks" --prefix open --paths "$paths" \
      --timeout "$WAIT_TIMEOUT" --grace "$GRACE" >"$dir/wait_open.json"
  else
    sleep "$GRACE"
  fi
  ps -o rss= -p "$WAGATE_PID" | tr -d ' ' >"$dir/rss.txt"
  kill "$WAGATE_PID"; wait "$WAGATE_PID" 2>/dev/null || true; WAGATE_PID=""
  stop_receiver
  unpin_postgres
  psql "$PG_URL/postgres" -Xqc "drop database if exists $db with (force)" >/dev/null 2>&1 || true
  grep -E '"level":"(WARN|ERROR)"' "$dir/wagate.log" >"$dir/warnings.txt" || true
  if [ -s "$dir/warnings.txt" ]; then
    echo "    wagate logged $(wc -l <"$dir/warnings.txt") warnings/errors; first 3:"
    head -3 "$dir/warnings.txt" | cut -c1-300 | sed 's/^/      /'
  fi
}

RUNS=""
for r in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    run_one "r$r-$mode" "$mode"
    RUNS="$RUNS r$r-$mode"
  done
done
FAILED=0
$HOOKS report --dir "$WORK" --runs "$RUNS" --rate "$RATE" --open-duration "$OPEN_DURATION" --pinned "$PIN" || FAILED=1
exit $FAILED
