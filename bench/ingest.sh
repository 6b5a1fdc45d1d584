#!/usr/bin/env bash
# Webhook ingest benchmark (shared/docs/perf-reliability.md §B, workload W3) for PostgreSQL, then
# SQLite. The load generator runs on CPU 0; wagate (and PostgreSQL's postmaster, so its backends)
# on CPU 1, so figures read as "one core of gateway + database".
#
# Per backend: fresh database, wagate release build, one connected number, then
#   (a) closed loop: wrk -t1 -c16 for 10 s; every request carries a distinct pre-signed event
#       (unique wamid, 1-2 KiB) read from a file in the Lua script's init -> events/s, p50/p99 ack;
#   (b) open loop:   a fixed 2,000 events/s for 10 s (bench/ingest_load.py, asyncio, keep-alive,
#       latency measured from the scheduled send time) -> p50/p99 ack; when the instance cannot
#       sustain 2,000/s, first also at half its closed-loop throughput (latency when not overloaded);
# then checks that no request failed and that the stored messages match the 2xx answers.
# Targets (reported, not asserted): >= 5,000 events/s on PostgreSQL; p99 ack < 50 ms at 2,000/s.
#
# Usage: bench/ingest.sh
#   BACKENDS="postgres sqlite"  DURATION=10s  CONNS=16  RATE=2000  OPEN_DURATION=10
#   LOW_FRACTION=0.5 (also an open-loop run at half the closed-loop throughput when that is below RATE)
#   CHECKPOINT_FIRST=0 (1: PostgreSQL checkpoints before the open-loop runs, so none begins in them)
#   EVENTS=100000 (pre-signed bodies for the closed loop; must exceed events/s x duration)
#   PG_URL=postgres://postgres@127.0.0.1:5432   BIN=path/to/wagate (skips the build)
#   PG_PARAMS="?sslmode=disable" (appended to wagate's database URL. The default turns TLS off: the
#             database is on loopback, where TLS only costs CPU (about a third of ingest's, measured);
#             PG_PARAMS= measures with the TLS sqlx negotiates when the server offers it)
#   ANALYZE=1 (VACUUM ANALYZE PostgreSQL after the warm-up, as §B2 asks; 0 = fresh, unanalyzed tables)
#   PIN=1 (0 = §B2 step 6, "absolute capacity of one 2-vCPU instance": nothing pinned, so wagate,
#          PostgreSQL and the load generator share both cores; CPU figures are then whole-machine)
set -euo pipefail
cd "$(dirname "$0")/.."

BACKENDS=${BACKENDS:-postgres sqlite}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-16}
RATE=${RATE:-2000}
OPEN_DURATION=${OPEN_DURATION:-10}
EVENTS=${EVENTS:-100000}
WARM_EVENTS=${WARM_EVENTS:-30000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
ANALYZE=${ANALYZE:-1}
PIN=${PIN:-1}
if [ "$PIN" = 1 ]; then ON_SERVER_CPU="taskset -c 1"; ON_LOAD_CPU="taskset -c 0"; CPU_STAT=cpu1
else ON_SERVER_CPU=""; ON_LOAD_CPU=""; CPU_STAT=cpu; fi
CHECKPOINT_FIRST=${CHECKPOINT_FIRST:-0}  # 1: CHECKPOINT before the open-loop runs (PostgreSQL)
LOW_FRACTION=${LOW_FRACTION:-0.5}   # extra open-loop run at this fraction of the closed-loop rate (0 = off)
PG_PARAMS=${PG_PARAMS-?sslmode=disable}   # appended to wagate's database URL
APP_SECRET=bench-app-secret
MASTER_KEY=$(printf 'wagate-ingest-bench-master-key!!' | base64)   # 32 bytes
PNID=100000000000001; WABA=200000000000001
LOAD="python3 $PWD/bench/ingest_load.py"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need taskset || ! need curl; then
  echo "==> installing wrk, util-linux, curl from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq wrk util-linux curl >/dev/null
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

exec 9>/tmp/wagate-ingest-bench.lock
flock -n 9 || { echo "another bench/ingest.sh is running (lock /tmp/wagate-ingest-bench.lock)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/wagate-ingest.XXXXXX)
WAGATE_PID=""
CHILD=""    # the load generator running now (killed at once on Ctrl-C/TERM)
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
  unpin_postgres
  for db in "${PG_DBS[@]}"; do
    psql "$PG_URL/postgres" -Xqc "drop database if exists $db with (force)" >/dev/null 2>&1
  done
  rm -rf "$WORK"
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
cpu1_ticks() { # busy, all, irq+softirq of CPU 1 (of the whole machine when PIN=0)
  awk -v cpu="$CPU_STAT" '$1==cpu{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8, $7+$8}' /proc/stat
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
  # Back to every CPU (0-1 here): the processes we pinned and the backends forked meanwhile.
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

# FEATURES=1 (default; issue #24 target 3): every MEDIA_EVERY-th event is an image, so ingest
# queues a media vault job, and the number has a Meta-format destination and a Kapso-format
# webhook, so each event also queues deliveries, all in the event's transaction. The download and
# delivery workers are off: this measures the ingest and what it writes, not the work queued.
FEATURES=${FEATURES:-1}
MEDIA_EVERY=${MEDIA_EVERY:-4}
[ "$FEATURES" = 1 ] || MEDIA_EVERY=0
LOAD_SIGN_EXTRA="--media-every $MEDIA_EVERY"
echo "==> pre-signing events (closed loop $EVENTS, warm-up $WARM_EVENTS, open loop $((RATE * OPEN_DURATION)))"
$LOAD sign --secret "$APP_SECRET" --prefix warm --count "$WARM_EVENTS" --out "$WORK/warm.txt" --seed 1 $LOAD_SIGN_EXTRA &
$LOAD sign --secret "$APP_SECRET" --prefix closed --count "$EVENTS" --out "$WORK/closed.txt" --seed 2 $LOAD_SIGN_EXTRA &
$LOAD sign --secret "$APP_SECRET" --prefix open --count "$((RATE * OPEN_DURATION))" --out "$WORK/open.txt" --seed 3 $LOAD_SIGN_EXTRA &
SIGNERS=$(jobs -p)
wait

cat > "$WORK/webhook.lua" <<'LUA'
-- Each request carries the next pre-signed event ("<hex signature> <json body>" per line),
-- loaded at run time (LuaJIT caps the constants of a script). Each event is sent once; when the
-- file is exhausted the script sends a bad signature (counted, and the run is flagged).
local sigs, bodies, n = {}, {}, 0
local headers = { ["Content-Type"] = "application/json" }
issued, ok, non2xx, exhausted = 0, 0, 0, 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  for line in f:lines() do
    local sp = line:find(" ", 1, true)
    n = n + 1
    sigs[n] = "sha256=" .. line:sub(1, sp - 1)
    bodies[n] = line:sub(sp + 1)
  end
  f:close()
end

function request()
  if issued >= n then
    exhausted = 1
    headers["X-Hub-Signature-256"] = "sha256=00"
    return wrk.format("POST", nil, headers, "{}")
  end
  issued = issued + 1
  headers["X-Hub-Signature-256"] = sigs[issued]
  return wrk.format("POST", nil, headers, bodies[issued])
end

function response(status, _, _)
  if status >= 200 and status < 300 then ok = ok + 1 else non2xx = non2xx + 1 end
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end
function done()
  for _, t in ipairs(threads) do
    io.write(string.format("LUA issued=%d ok=%d non2xx=%d exhausted=%d\n",
      t:get("issued"), t:get("ok"), t:get("non2xx"), t:get("exhausted")))
  end
end
LUA

FAILED=0

run_backend() {
  local backend=$1 db_url wagate_url dir port base key
  dir="$WORK/$backend"; mkdir -p "$dir"
  echo "==> $backend"
  if [ "$backend" = postgres ]; then
    local db="wagate_ingest_bench_$$"
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
  port=$(free_port)
  base="http://127.0.0.1:$port"
  (
    cd "$dir"
    export WAGATE__SERVER__LISTEN=127.0.0.1:$port
    export WAGATE__DATABASE__URL=$wagate_url
    export WAGATE__SECURITY__MASTER_KEY=$MASTER_KEY
    export WAGATE__META__APP_SECRET=$APP_SECRET
    export WAGATE__LOG__LEVEL=warn
    export WAGATE__GRAPH__VERIFY_NUMBERS=false  # the canned upstream is not Meta
    # Raw proxy speed: pacing would hold sends to Meta's 80/s (bench/pacing.sh measures it).
    export WAGATE__PACING__ENABLED=false
    export WAGATE__LOG__FORMAT=json
    if [ "$FEATURES" = 1 ]; then
      export WAGATE__WORKERS__MEDIA_DOWNLOADS=false WAGATE__WORKERS__DELIVERY=false
      export WAGATE__DELIVERY__ALLOW_HTTP=true WAGATE__DELIVERY__ALLOW_PRIVATE_NETWORKS=true
    fi
    exec $ON_SERVER_CPU "$BIN" serve
  ) >"$dir/wagate.out" 2>"$dir/wagate.log" &
  WAGATE_PID=$!
  local up=0
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$base/healthz" 2>/dev/null; then up=1; break; fi
    kill -0 "$WAGATE_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ $up = 0 ]; then echo "wagate did not come up:" >&2; tail -n 30 "$dir/wagate.log" "$dir/wagate.out" >&2; exit 1; fi
  # The first start writes its key to a 0600 file when stdout is not a terminal (older builds print it).
  key=$( (find "$dir" -name initial-api-key -exec cat {} + 2>/dev/null; grep -o 'wag_[A-Za-z0-9_-]*' "$dir/wagate.out" || true) | head -1)
  [ -n "$key" ] || { echo "no API key printed by wagate" >&2; tail -n 30 "$dir/wagate.log" >&2; exit 1; }
  curl -fsS -o /dev/null -X POST "$base/platform/v1/whatsapp/phone_numbers" \
    -H "X-API-Key: $key" -H 'content-type: application/json' \
    -d "{\"whatsapp_phone_number\":{\"phone_number_id\":\"$PNID\",\"business_account_id\":\"$WABA\",\"access_token\":\"bench-token\"}}"
  if [ "$FEATURES" = 1 ]; then
    curl -fsS -o /dev/null -X PATCH "$base/platform/v1/whatsapp/phone_numbers/$PNID" \
      -H "X-API-Key: $key" -H 'content-type: application/json' \
      -d '{"whatsapp_phone_number":{"webhook_destination_url":"http://127.0.0.1:9/meta"}}'
    curl -fsS -o /dev/null -X POST "$base/platform/v1/whatsapp/phone_numbers/$PNID/webhooks" \
      -H "X-API-Key: $key" -H 'content-type: application/json' \
      -d '{"whatsapp_webhook":{"url":"http://127.0.0.1:9/kapso","events":["whatsapp.message.received","whatsapp.conversation.created"]}}'
  fi

  local url="$base/webhooks/whatsapp"
  echo "    warm-up: wrk -c$CONNS -d$WARMUP"
  run $ON_LOAD_CPU wrk -t1 -c"$CONNS" -d"$WARMUP" -s "$WORK/webhook.lua" "$url" -- "$WORK/warm.txt" >"$dir/warm.txt"
  if [ "$backend" = postgres ] && [ "$ANALYZE" = 1 ]; then
    # §B2: measure on analyzed tables. (Without statistics, e.g. autovacuum off and no ANALYZE
    # yet, PostgreSQL may plan lookups very differently; ANALYZE=0 measures that case.)
    echo "    vacuum analyze (autovacuum=$(psql "$db_url" -XAtc 'show autovacuum'))"
    psql "$db_url" -Xqc "vacuum analyze" >/dev/null
  fi

  echo "    (a) closed loop: wrk -t1 -c$CONNS -d$DURATION"
  local c1a c1b wa wb pa pb
  c1a=$(cpu1_ticks); wa=$(proc_ticks "$WAGATE_PID"); pa=$(pg_ticks)
  run $ON_LOAD_CPU wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/webhook.lua" "$url" -- "$WORK/closed.txt" >"$dir/wrk.txt"
  c1b=$(cpu1_ticks); wb=$(proc_ticks "$WAGATE_PID"); pb=$(pg_ticks)
  echo "$c1a $c1b $wa $wb $pa $pb $(getconf CLK_TCK)" >"$dir/cpu.txt"

  # (b) first at a rate the instance sustains (a fraction of (a)), then at the target RATE, so an
  # overload at RATE cannot spill into the other measurement. On PostgreSQL each run also records
  # how many checkpoints began during it: the start of one (every max_wal_size of WAL, about a
  # minute at 2,000/s here) floods the WAL with full-page images and stalls commits for up to
  # ~200 ms, which alone decides a 10 s run's p99.
  # CHECKPOINT_FIRST=1 checkpoints before them instead, so that (after the full-page surge, in the
  # first run) none begins within them: wagate's own latency without PostgreSQL's cycle.
  local begun_sql="select checkpoints_timed + checkpoints_req from pg_stat_bgwriter"
  if [ "$backend" = postgres ] && [ "$(psql "$db_url" -XAtc 'show server_version_num')" -ge 170000 ]; then
    begun_sql="select num_timed + num_requested from pg_stat_checkpointer"  # moved in 17
  fi
  checkpoints() {
    if [ "$backend" = postgres ]; then psql "$db_url" -XAtc "$begun_sql"; else echo 0; fi
  }
  if [ "$backend" = postgres ] && [ "$CHECKPOINT_FIRST" = 1 ]; then
    echo "    checkpoint (CHECKPOINT_FIRST=1)"
    psql "$db_url" -Xqc "checkpoint" >/dev/null
  fi
  local ck
  local low_rate
  low_rate=$(python3 -c "import re,sys; t=open(sys.argv[1]).read(); r=float(re.search(r'Requests/sec:\s+([\d.]+)',t).group(1)); print(max(10, int(r*$LOW_FRACTION/10)*10))" "$dir/wrk.txt")
  if [ "$LOW_FRACTION" != 0 ] && [ "$low_rate" -lt "$RATE" ]; then
    echo "    (b) open loop: $low_rate events/s (${LOW_FRACTION} x closed-loop throughput) for ${OPEN_DURATION}s"
    run $LOAD sign --secret "$APP_SECRET" --prefix low --count "$((low_rate * OPEN_DURATION))" --out "$dir/low.txt" --seed 4 $LOAD_SIGN_EXTRA
    ck=$(checkpoints)
    run $ON_LOAD_CPU $LOAD open --url "$url" --file "$dir/low.txt" --rate "$low_rate" --duration "$OPEN_DURATION" \
      --out "$dir/open_low.json" --acked-out "$dir/open_low.acked" >/dev/null
    echo $(($(checkpoints) - ck)) >"$dir/open_low.checkpoints"
    echo "$low_rate" >"$dir/low_rate.txt"
  fi
  echo "    (b) open loop: $RATE events/s for ${OPEN_DURATION}s"
  ck=$(checkpoints)
  run $ON_LOAD_CPU $LOAD open --url "$url" --file "$WORK/open.txt" --rate "$RATE" --duration "$OPEN_DURATION" \
    --out "$dir/open_target.json" --acked-out "$dir/open_target.acked" >/dev/null
  echo $(($(checkpoints) - ck)) >"$dir/open_target.checkpoints"
  echo "$(ps -o rss= -p "$WAGATE_PID" | tr -d ' ')" >"$dir/rss.txt"

  # Let in-flight work settle, then count what is stored.
  sleep 0.5
  local issued
  issued=$(sed -n 's/^LUA issued=\([0-9]*\).*/\1/p' "$dir/wrk.txt")
  $LOAD verify --backend "$backend" --db "$db_url" --prefix closed --issued "${issued:-0}" >"$dir/verify_closed.json"
  $LOAD verify --backend "$backend" --db "$db_url" --prefix open --issued "$((RATE * OPEN_DURATION))" \
    --acked "$dir/open_target.acked" >"$dir/verify_open_target.json"
  if [ -f "$dir/low_rate.txt" ]; then
    $LOAD verify --backend "$backend" --db "$db_url" --prefix low --issued "$(($(cat "$dir/low_rate.txt") * OPEN_DURATION))" \
      --acked "$dir/open_low.acked" >"$dir/verify_open_low.json"
  fi
  if [ "$FEATURES" = 1 ]; then
    local counts="select (select count(*) from messages), (select count(*) from media_files), (select count(*) from webhook_deliveries)"
    if [ "$backend" = postgres ]; then counts=$(psql "$db_url" -XAtF ' ' -c "$counts")
    else counts=$(python3 -c 'import sqlite3,sys; print(*sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone())' "$dir/wagate.db" "$counts"); fi
    read -r n_messages n_media n_deliveries <<<"$counts"
    echo "    written with the events: $n_messages messages, $n_media media vault jobs, $n_deliveries webhook deliveries"
    if [ "$n_media" -eq 0 ] || [ "$n_deliveries" -lt "$n_messages" ]; then
      echo "    FEATURES=1 but the vault jobs or deliveries were not written" >&2; FAILED=1
    fi
  fi
  kill "$WAGATE_PID"; wait "$WAGATE_PID" 2>/dev/null || true; WAGATE_PID=""
  if [ "$backend" = postgres ]; then unpin_postgres; fi
  grep -E '"level":"(WARN|ERROR)"' "$dir/wagate.log" >"$dir/warnings.txt" || true
  if [ -s "$dir/warnings.txt" ]; then
    echo "    wagate logged $(wc -l <"$dir/warnings.txt") warnings/errors; first 5:"
    head -5 "$dir/warnings.txt" | cut -c1-300 | sed 's/^/      /'
  fi
}

for backend in $BACKENDS; do run_backend "$backend"; done
$LOAD report --dir "$WORK" --backends "$BACKENDS" --conns "$CONNS" --duration "$DURATION" \
  --rate "$RATE" --open-duration "$OPEN_DURATION" --pinned "$PIN" || FAILED=1
exit $FAILED
