#!/usr/bin/env bash
# Side-by-side proxy benchmark (shared/docs/perf-reliability.md §B2): a minimal upstream (nginx
# returning canned Graph answers), nginx and HAProxy as reverse-proxy peers, and wagate, all on
# loopback. The load generator is pinned to CPU 0; upstream, peers and wagate to CPU 1, so req/s
# reads as the per-core cost of proxy + upstream. Targets are interleaved over ROUNDS rounds and
# the median round is reported.
#
# `floor` is examples/bare_proxy.rs: a hyper server and hyper-util client doing only what every
# proxy must, i.e. the best this stack (tokio, hyper) can reach before wagate's own work, on a
# tokio multi-thread runtime with one worker (as wagate runs); `floor_ct` is the same on
# current-thread runtimes, one per core with SO_REUSEPORT listeners (thread-per-core).
#
# After the rounds (skip with EXTRA=0): wagate's RSS and passthrough throughput with IDLE (10,000)
# idle keep-alive client connections open against the same without, and its peak RSS while
# STREAM_MIB (1,024) MiB stream through the proxy, down (a Graph GET) and up (a media upload).
#
# Workloads (valid API key on every request; peers ignore it):
#   profile: GET  /{pnid}/whatsapp_business_profile   (pure passthrough)
#   send:    POST /{pnid}/messages with 1 KiB JSON     (buffered and, from issue 4 on, recorded)
#
# Usage: bench/proxy.sh            ROUNDS=3 DURATION=8s CONNS=32 by default
#        BASELINE_BIN=/path/to/older/wagate bench/proxy.sh
#                                   also measures an older build as `baseline` in the same run
#                                   (a refactor must not make the proxy slower)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
# BACKEND=postgres: wagate (and the baseline) record on a fresh PostgreSQL database each, made
# here on PG_URL's server (no statistics yet, as on a new deployment), dropped at the end.
BACKEND=${BACKEND:-sqlite}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-32}
UP=18080; NGINX=18081; HAPROXY=18082; WAGATE=18083; FLOOR=18084; BASELINE=18085; FLOOR_CT=18086
WAGATE_TPC=18087
IDLE=${IDLE:-10000}          # idle keep-alive connections held open for the connection measurement
STREAM_MIB=${STREAM_MIB:-1024}  # size of the file streamed through the proxy (download and upload)
# 10,000 idle client connections plus the load's: every process started below may hold that many.
ulimit -n "$(ulimit -Hn)"  # raises the soft limit as far as the hard one allows
PNID=100000000000001; WABA=200000000000001

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need haproxy || ! need wrk; then
  echo "==> installing nginx-light, haproxy, wrk from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light haproxy wrk >/dev/null
fi
# SKIP_BUILD=1: measure the binaries already built (e.g. an A/B of one build against itself).
if [ -z "${SKIP_BUILD:-}" ]; then
  echo "==> building wagate (release)"
  cargo build --release --quiet --bin wagate --example bare_proxy
fi
RELEASE="${CARGO_TARGET_DIR:-$PWD/target}/release"
BIN="$RELEASE/wagate"

WORK=$(mktemp -d /tmp/wagate-bench.XXXXXX)
PIDS=()
DATABASES=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${DATABASES[@]}"; do psql -q "$PG_URL" -c "drop database if exists $db" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Every send gets its own wamid, as from Meta (nginx's \$request_id), so each one is a new row.
SEND_RESPONSE='{"messaging_product":"whatsapp","contacts":[{"input":"15551234567","wa_id":"15551234567"}],"messages":[{"id":"wamid.HBgLMTU1NTEy$request_id","message_status":"accepted"}]}'
PROFILE_RESPONSE='{"data":[{"about":"Hello","address":"1 Main St","description":"Bench","email":"a@b.c","messaging_product":"whatsapp","vertical":"OTHER","websites":[]}]}'

cat > "$WORK/upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_buffer_size 16k;
  server {
    listen 127.0.0.1:$UP;
    client_max_body_size 0;
    location ~ /messages\$ { default_type application/json; return 200 '$SEND_RESPONSE'; }
    location ~ /big\$ { default_type application/octet-stream; alias $WORK/big.bin; }
    location ~ /media\$ { default_type application/json; return 200 '{"id":"9000000000001"}'; }
    location / { default_type application/json; return 200 '$PROFILE_RESPONSE'; }
  }
}
CONF

cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream graph { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX;
    location /meta/whatsapp/ {
      proxy_pass http://graph/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-API-Key "";
    }
  }
}
CONF

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HAPROXY
  http-request del-header X-API-Key
  http-request replace-path ^/meta/whatsapp(/.*) \1
  default_backend be
backend be
  server up 127.0.0.1:$UP
CONF

start() { # cpu, name, command...
  local cpu=$1 name=$2; shift 2
  taskset -c "$cpu" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
}
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1; see $WORK" >&2; exit 1
}

start 1 upstream nginx -c "$WORK/upstream.conf" -p "$WORK"
start 1 nginx nginx -c "$WORK/nginx.conf" -p "$WORK"
start 1 haproxy haproxy -f "$WORK/haproxy.cfg"
# The stack floor: hyper server + hyper-util client on the same runtime, nothing wagate adds.
TOKIO_WORKER_THREADS=1 start 1 floor "$RELEASE/examples/bare_proxy" "127.0.0.1:$FLOOR" "http://127.0.0.1:$UP"
FLOOR_RUNTIME=current_thread start 1 floor_ct "$RELEASE/examples/bare_proxy" "127.0.0.1:$FLOOR_CT" "http://127.0.0.1:$UP"
start_wagate() { # name, port, binary, [server.runtime]
  mkdir -p "$WORK/$1"
  if [ "$BACKEND" = postgres ]; then
    local db="wagate_bench_${1}_$$"
    psql -q "$PG_URL" -c "drop database if exists $db" -c "create database $db" >/dev/null
    DATABASES+=("$db")
    DB_URL[$1]="${PG_URL%/*}/$db"
  fi
  (
    if [ "$BACKEND" = postgres ]; then
      export WAGATE__DATABASE__URL="${DB_URL[$1]}"
      # Required on PostgreSQL (instances share it); a throwaway one per run.
      export WAGATE__SECURITY__MASTER_KEY=$(head -c 32 /dev/urandom | base64)
    fi
    cd "$WORK/$1"
    export WAGATE__SERVER__LISTEN=127.0.0.1:$2
    export WAGATE__GRAPH__BASE_URL=http://127.0.0.1:$UP
    export WAGATE__LOG__LEVEL=warn
    export WAGATE__GRAPH__VERIFY_NUMBERS=false  # the canned upstream is not Meta
    # Raw proxy speed: pacing would hold sends to Meta's 80/s (bench/pacing.sh measures it).
    export WAGATE__PACING__ENABLED=false
    # WAGATE_CPUS=0,1: wagate on both cores (sharing CPU 0 with the load generator), to choose
    # server.runtime's default on a 2-core machine; one worker or thread per CPU given.
    export TOKIO_WORKER_THREADS=$(tr ',' '\n' <<<"${WAGATE_CPUS:-1}" | wc -l)
    export WAGATE__SERVER__RUNTIME=${4:-multi_thread}  # threads: one per CPU it may use (taskset: 1)
    # The thread-per-core shape sizes its own main runtime (one worker: background work only).
    [ "${4:-}" != thread_per_core ] || unset TOKIO_WORKER_THREADS
    # Room for the idle-connection measurement (the default, 4,096, would answer 503s).
    export WAGATE__SERVER__MAX_CONNECTIONS=$((IDLE + 4096))
    # The upload measurement streams STREAM_MIB MiB, past Meta's 100 MiB (the default limit).
    export WAGATE__SERVER__MEDIA_BODY_LIMIT=$(((STREAM_MIB + 1) * 1048576))
    exec taskset -c "${WAGATE_CPUS:-1}" "$3" serve
  ) >"$WORK/$1.out" 2>"$WORK/$1.log" &
  PIDS+=($!)
}
declare -A DB_URL
WAGATES=(wagate)
start_wagate wagate "$WAGATE" "$BIN"
# The same build in the thread-per-core shape (server.runtime), both measured in one run.
if [ "${TPC:-1}" = 1 ]; then
  WAGATES+=(wagate_tpc)
  start_wagate wagate_tpc "$WAGATE_TPC" "$BIN" thread_per_core
  wait_port "$WAGATE_TPC"
fi
if [ -n "${BASELINE_BIN:-}" ]; then
  WAGATES+=(baseline)
  start_wagate baseline "$BASELINE" "$BASELINE_BIN"
  wait_port "$BASELINE"
fi
for port in $UP $NGINX $HAPROXY $FLOOR $FLOOR_CT $WAGATE; do wait_port "$port"; done

declare -A KEYS
connect_number() { # name, port: the instance's first-start key, and the bench number connected
  local key
  # The first start writes its key to a 0600 file when stdout is not a terminal (older builds print it).
  key=$( (find "$WORK/$1" -name initial-api-key -exec cat {} + 2>/dev/null; grep -o 'wag_[A-Za-z0-9_-]*' "$WORK/$1.out" || true) | head -1)
  [ -n "$key" ] || { echo "no API key printed by $1" >&2; cat "$WORK/$1.log" >&2; exit 1; }
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$2/platform/v1/whatsapp/phone_numbers" \
    -H "X-API-Key: $key" -H 'content-type: application/json' \
    -d "{\"whatsapp_phone_number\":{\"phone_number_id\":\"$PNID\",\"business_account_id\":\"$WABA\",\"access_token\":\"bench-token\"}}"
  KEYS[$1]=$key
}
connect_number wagate "$WAGATE"
if [ "$BACKEND" = postgres ]; then
  # As on a machine with autovacuum off (CI) or before it first runs: no statistics, all run long.
  for name in "${WAGATES[@]}"; do
    for table in messages conversations contacts webhook_events; do
      psql -q "${DB_URL[$name]}" -c "alter table $table set (autovacuum_enabled = false)" >/dev/null
    done
  done
fi
[ -z "${BASELINE_BIN:-}" ] || connect_number baseline "$BASELINE"
[ "${TPC:-1}" != 1 ] || connect_number wagate_tpc "$WAGATE_TPC"
KEY=${KEYS[wagate]}

write_scripts() { # suffix, key
  cat > "$WORK/profile$1.lua" <<LUA
wrk.method = "GET"
wrk.headers["X-API-Key"] = "$2"
LUA
  cat > "$WORK/send$1.lua" <<LUA
-- 1 KiB JSON body, built at run time (LuaJIT limits constants per script).
local text = string.rep("x", 1024 - 110)
wrk.method = "POST"
wrk.headers["X-API-Key"] = "$2"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"messaging_product":"whatsapp","to":"15551234567","type":"text","text":{"body":"' .. text .. '"}}'
LUA
}
write_scripts "" "$KEY"
for name in "${WAGATES[@]:1}"; do write_scripts "-$name" "${KEYS[$name]}"; done
script() { # target workload: each wagate instance but the first has its own key
  if [ "$1" != wagate ] && [ -n "${KEYS[$1]:-}" ]; then echo "$WORK/$2-$1.lua"; else echo "$WORK/$2.lua"; fi
}

declare -A URL
URL[direct]="http://127.0.0.1:$UP/v24.0/$PNID"
URL[nginx]="http://127.0.0.1:$NGINX/meta/whatsapp/v24.0/$PNID"
URL[haproxy]="http://127.0.0.1:$HAPROXY/meta/whatsapp/v24.0/$PNID"
URL[floor]="http://127.0.0.1:$FLOOR/meta/whatsapp/v24.0/$PNID"
URL[floor_ct]="http://127.0.0.1:$FLOOR_CT/meta/whatsapp/v24.0/$PNID"
URL[wagate]="http://127.0.0.1:$WAGATE/meta/whatsapp/v24.0/$PNID"
URL[baseline]="http://127.0.0.1:$BASELINE/meta/whatsapp/v24.0/$PNID"
URL[wagate_tpc]="http://127.0.0.1:$WAGATE_TPC/meta/whatsapp/v24.0/$PNID"
TARGETS=(direct nginx haproxy floor floor_ct "${WAGATES[@]}")
# ONLY="direct wagate baseline": measure just these (an A/B of two builds needs no peers).
[ -z "${ONLY:-}" ] || read -r -a TARGETS <<<"$ONLY"
declare -A PATHS=([profile]=whatsapp_business_profile [send]=messages)

# Sanity: every target answers 200 for both workloads before anything is measured.
for target in "${TARGETS[@]}"; do
  key=${KEYS[$target]:-$KEY}
  curl -fsS -o /dev/null -H "X-API-Key: $key" "${URL[$target]}/whatsapp_business_profile"
  curl -fsS -o /dev/null -X POST -H "X-API-Key: $key" -H 'content-type: application/json' \
    -d '{"messaging_product":"whatsapp","to":"1","type":"text","text":{"body":"x"}}' "${URL[$target]}/messages"
done

# HOLD=1: keep the topology up for manual experiments (prints the URLs and key).
if [ -n "${HOLD:-}" ]; then
  echo "KEY=$KEY WORK=$WORK"; for t in "${TARGETS[@]}"; do echo "$t ${URL[$t]}"; done
  sleep infinity
fi
# PROFILE=profile|send: record a CPU profile of wagate under the c=32 load instead of measuring.
if [ -n "${PROFILE:-}" ]; then
  WPID=$(pgrep -f "$BIN serve" | head -1)
  taskset -c 0 wrk -t1 -c"$CONNS" -d12s -s "$WORK/$PROFILE.lua" "${URL[wagate]}/${PATHS[$PROFILE]}" &
  WRK=$!
  sleep 2
  perf record -e cpu-clock -F 2000 -g -p "$WPID" -o "${PERF_OUT:-/tmp/wagate.perf}" -- sleep 8 2>/dev/null
  wait "$WRK"
  echo "profile in ${PERF_OUT:-/tmp/wagate.perf}: perf report -i ${PERF_OUT:-/tmp/wagate.perf} --no-children"
  exit 0
fi

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
SENDS=1  # wagate's answered sends (the sanity one, then every wrk run's), checked against its store
count_sends() { # target workload wrk-output
  if [ "$1/$2" = wagate/send ]; then
    SENDS=$((SENDS + $(grep -oE '^ +[0-9]+ requests in' <<<"$3" | grep -oE '[0-9]+')))
  fi
}
run_wrk() { # round target workload conns duration
  local out
  out=$(taskset -c 0 wrk -t1 -c"$4" -d"$5" --latency -s "$(script "$2" "$3")" "${URL[$2]}/${PATHS[$3]}")
  if grep -q "Non-2xx" <<<"$out"; then
    echo "$2/$3 returned errors:" >&2; echo "$out" >&2; exit 1
  fi
  count_sends "$2" "$3" "$out"
  python3 bench/wrk_parse.py "$1" "$2" "$3" "$4" <<<"$out" >>"$RESULTS"
}
echo "==> measuring: $ROUNDS rounds x ${#TARGETS[@]} targets x 2 workloads, c=$CONNS for $DURATION and c=1"
for round in $(seq 1 "$ROUNDS"); do
  # Every other round runs the targets in reverse, so no target always follows another's load.
  order=("${TARGETS[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=(); for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do order+=("${TARGETS[$i]}"); done
  fi
  for workload in profile send; do
    for target in "${order[@]}"; do
      count_sends "$target" "$workload" \
        "$(taskset -c 0 wrk -t1 -c"$CONNS" -d2s -s "$(script "$target" "$workload")" "${URL[$target]}/${PATHS[$workload]}")"
      run_wrk "$round" "$target" "$workload" "$CONNS" "$DURATION"
      run_wrk "$round" "$target" "$workload" 1 3s
    done
  done
  echo "    round $round done"
done
# Each answered send is a stored message (wrk does not count the ones in flight at its deadline,
# which wagate still records, hence "at least").
if [[ " ${TARGETS[*]} " != *" wagate "* ]]; then
  STORED=$SENDS  # `wagate` was not measured (ONLY): nothing of its to check
elif [ "$BACKEND" = postgres ]; then
  STORED=$(psql -qAt "${DB_URL[wagate]}" -c "select count(*) from messages where direction = 'outbound'")
  # Whether the table ever got statistics during the run (autovacuum's ANALYZE), for the report.
  echo "==> messages analyzed during the run: $(psql -qAt "${DB_URL[wagate]}" -c \
    "select coalesce(greatest(last_analyze, last_autoanalyze)::text, 'never') from pg_stat_user_tables where relname = 'messages'")"
else
  STORED=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(
      "select count(*) from messages where direction = ?", ("outbound",)).fetchone()[0])' \
    "$WORK/wagate/data/wagate.db")
fi
echo "==> wagate answered $SENDS sends and stored $STORED outbound messages"
[ "$STORED" -ge "$SENDS" ] || { echo "fewer stored messages than answered sends" >&2; exit 1; }
RSS_KB=$(ps -o rss= -p "$(pgrep -f "$BIN serve" | head -1)" 2>/dev/null || echo 0)
python3 bench/summarize.py "$RESULTS" "$RSS_KB"

[ "${EXTRA:-1}" = 1 ] || exit 0
WPID=$(pgrep -f "$BIN serve" | head -1)
rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$WPID/status"; }
hwm_mib() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$WPID/status"; }
passthrough_rps() { # one closed-loop passthrough run against wagate, req/s
  taskset -c 0 wrk -t1 -c"$CONNS" -d"$DURATION" -s "$WORK/profile.lua" "${URL[wagate]}/whatsapp_business_profile" |
    awk '/^Requests\/sec/ {print int($2)}'
}

echo "==> $IDLE idle keep-alive connections"
before_rps=$(passthrough_rps); before_rss=$(rss_mib)
coproc IDLECONNS { taskset -c 0 python3 bench/idle_conns.py --port "$WAGATE" --count "$IDLE" \
  --path "/meta/whatsapp/v24.0/$PNID/whatsapp_business_profile" -H "X-API-Key: $KEY"; }
read -r _ opened failed <&"${IDLECONNS[0]}"
[ "$failed" = 0 ] || { echo "$failed of $IDLE idle connections failed" >&2; exit 1; }
# Idle past server.park_after (1 s): measured as they sit, parked.
sleep 2
idle_rss=$(rss_mib); idle_rps=$(passthrough_rps); idle_rss_after=$(rss_mib)
echo >&"${IDLECONNS[1]}"; wait "$IDLECONNS_PID" 2>/dev/null || true
python3 - "$before_rps" "$idle_rps" "$before_rss" "$idle_rss" "$idle_rss_after" "$opened" <<'PY'
import sys
b, i, rb, ri, ra, n = float(sys.argv[1]), float(sys.argv[2]), *map(float, sys.argv[3:6]), int(sys.argv[6])
print(f"{n} idle connections: RSS {rb:.1f} -> {ri:.1f} MiB (after load with them open {ra:.1f}); "
      f"passthrough {b:.0f} -> {i:.0f} req/s = {i / b:.2f}x")
PY

echo "==> $STREAM_MIB MiB streamed through the proxy"
truncate -s "${STREAM_MIB}M" "$WORK/big.bin"
chmod 755 "$WORK"; chmod 644 "$WORK/big.bin"  # nginx workers run as www-data
echo 5 > "/proc/$WPID/clear_refs"  # resets VmHWM to the current RSS
start_rss=$(rss_mib)
got=$(taskset -c 0 curl -fsS -o /dev/null -w '%{size_download} %{speed_download}' -H "X-API-Key: $KEY" \
  "${URL[wagate]}/big")
down_hwm=$(hwm_mib)
echo 5 > "/proc/$WPID/clear_refs"
up_start=$(rss_mib)
sent=$(taskset -c 0 curl -fsS -o /dev/null -w '%{size_upload} %{speed_upload}' -H "X-API-Key: $KEY" \
  -F messaging_product=whatsapp -F type=application/octet-stream \
  -F "file=@$WORK/big.bin;type=application/octet-stream" "${URL[wagate]}/media")
up_hwm=$(hwm_mib)
python3 - "$got" "$sent" "$start_rss" "$down_hwm" "$up_start" "$up_hwm" "$STREAM_MIB" <<'PY'
import sys
(dl, dls), (ul, uls) = sys.argv[1].split(), sys.argv[2].split()
s, dh, us, uh, mib = map(float, sys.argv[3:8])
assert int(dl) == mib * 1048576, f"downloaded {dl} bytes"
print(f"download {int(dl) / 1048576:.0f} MiB at {float(dls) / 1048576:.0f} MiB/s: RSS {s:.1f} MiB, peak {dh:.1f} (+{dh - s:.1f})")
print(f"upload {int(ul) / 1048576:.0f} MiB at {float(uls) / 1048576:.0f} MiB/s: RSS {us:.1f} MiB, peak {uh:.1f} (+{uh - us:.1f})")
PY
