#!/usr/bin/env bash
# Media vault benchmark (issue #18). A local Graph double (nginx, static files) answers the media
# node (`GET /v23.0/{media_id}`) and serves the bytes; wagate's graph.base_url points at it, so
# its media host check accepts the URLs. wagate runs on CPU 1; the load generator, nginx and the
# polling helper on CPU 0. Three measurements, each against a peer measured in the same run:
#
#   (1) ingest: RATE (500) signed inbound image webhooks/s for DURATION (10) s, SIZE_KIB (100) KiB
#       files of distinct random bytes, open loop (bench/ingest_load.py, latency from the
#       scheduled send): ack p50/p99 with the vault off (WAGATE__MEDIA__VAULT=false) and on, each
#       on a fresh instance after a WARMUP (2 s) at the same rate, ROUNDS (2) times in alternating
#       order (off/on, then on/off; `sync` before each); with the vault on, the download
#       lag (media_files.stored_at - created_at; created_at is written in the ingest commit, just
#       before the 200) once every row has left `pending`. Then DEDUPE (100) more messages naming
#       files already kept, by media ids the double does not serve: only the "already kept" path
#       (no download) can store them.
#   (2) copy: COPY_FILES (20) files of BIG_MIB (50) MiB, COPY_CONCURRENCY (8, wagate's default
#       media.max_in_flight) at once: wagate (webhooks, then node + download + sha256 + local store)
#       against `curl --parallel` writing the same URLs to disk, both on CPU 1; COPY_ROUNDS (3),
#       alternating which goes first, a fresh instance and store per round; bytes/s and the ratio.
#   (3) memory: RSS_FILES (50) webhooks at once naming distinct BIG_MIB files, with
#       media.max_in_flight = RSS_IN_FLIGHT (50), on a fresh instance: RSS before, VmHWM after.
#
# Targets (reported, not asserted): ack p99 vault on <= 1.2x off; lag p50 <= 200 ms, p99 <= 2 s;
# copy >= 0.8x curl; peak RSS <= 200 MiB. Checks (exit 1): every webhook answered 2xx, every
# acknowledged image stored, the dedupe rows stored.
#
# Usage: bench/media.sh
#   BACKENDS=sqlite ("sqlite postgres" also runs (1) on PostgreSQL; (2) and (3) always use SQLite)
#   RATE=500 DURATION=10 WARMUP=2 SIZE_KIB=100 DEDUPE=100 ROUNDS=2
#   COPY_FILES=20 COPY_CONCURRENCY=8 COPY_ROUNDS=3 BIG_MIB=50 RSS_FILES=50 RSS_IN_FLIGHT=50
#   WAIT_TIMEOUT=120 (seconds to wait for the downloads of a phase)
#   PG_URL=postgres://postgres@127.0.0.1:5432 (PostgreSQL is not pinned here)
#   BIN=path/to/wagate (skips the build; else `cargo build --release`, CARGO_TARGET_DIR honoured)
#   KEEP=dir (copies the run's JSON summaries and wagate's logs there; the temp dir always goes)
set -euo pipefail
cd "$(dirname "$0")/.."

BACKENDS=${BACKENDS:-sqlite}
RATE=${RATE:-500}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SIZE_KIB=${SIZE_KIB:-100}
DEDUPE=${DEDUPE:-100}
ROUNDS=${ROUNDS:-2}
COPY_FILES=${COPY_FILES:-20}
COPY_CONCURRENCY=${COPY_CONCURRENCY:-8}
COPY_ROUNDS=${COPY_ROUNDS:-3}
BIG_MIB=${BIG_MIB:-50}
RSS_FILES=${RSS_FILES:-50}
RSS_IN_FLIGHT=${RSS_IN_FLIGHT:-50}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-120}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
APP_SECRET=bench-app-secret
MASTER_KEY=$(printf 'wagate-media-bench-master-key!!!' | base64)   # 32 bytes
PNID=100000000000001; WABA=200000000000001
LOAD="python3 $PWD/bench/ingest_load.py"
MEDIA="python3 $PWD/bench/media_load.py"
SMALL=$((RATE * DURATION)); WARM=$((RATE * WARMUP))
BIG=$((COPY_FILES > RSS_FILES ? COPY_FILES : RSS_FILES))
[ "$DEDUPE" -le "$SMALL" ] || DEDUPE=$SMALL

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need taskset || ! need curl; then
  echo "==> installing nginx-light, util-linux, curl from Debian's packages"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light util-linux curl >/dev/null
fi
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
if [[ " $BACKENDS " == *" postgres "* ]] && ! need psql; then
  echo "psql is needed for the PostgreSQL run (apt-get install postgresql-client)" >&2; exit 1
fi

if [ -n "${BIN:-}" ]; then
  echo "==> using BIN=$BIN (no build)"
else
  echo "==> building wagate (release)"
  if ! cargo build --release --quiet --bin wagate; then
    echo "cargo build --release failed (BIN=path/to/wagate reuses an existing binary)" >&2; exit 1
  fi
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/wagate"
fi
[ -x "$BIN" ] || { echo "no wagate binary at $BIN" >&2; exit 1; }
BIN=$(realpath "$BIN")

exec 9>/tmp/wagate-media-bench.lock
flock -n 9 || { echo "another bench/media.sh is running (lock /tmp/wagate-media-bench.lock)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/wagate-media.XXXXXX)
WAGATE_PID=""
NGINX_PID=""
CHILD=""    # the load generator or curl running now (killed at once on Ctrl-C/TERM)
PG_DBS=()
GEN=()      # the file generators (waited for by pid: a bare `wait` would wait for nginx too)
cleanup() {
  local rc=$?
  set +e
  for pid in $CHILD "${GEN[@]}"; do kill "$pid" 2>/dev/null; done
  if [ -n "$WAGATE_PID" ]; then kill "$WAGATE_PID" 2>/dev/null; wait "$WAGATE_PID" 2>/dev/null; fi
  if [ -n "$NGINX_PID" ]; then kill "$NGINX_PID" 2>/dev/null; wait "$NGINX_PID" 2>/dev/null; fi
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
cpu1_ticks() { awk '$1=="cpu1"{print $2+$3+$4, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; } # user+system, all (irq apart)
proc_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
vm_kb() { awk -v f="$2:" '$1==f{print $2}' "/proc/$1/status"; }
burst() { # url, events file, count: every event at once (rate x 1/8 s is exact in floating point)
  run taskset -c 0 $LOAD open --url "$1" --file "$2" --rate "$(($3 * 8))" --duration 0.125 \
    --conns "$3" --max-conns "$3" --drain 30 --out "$2.json" >/dev/null
}

# ---- the Graph double: nginx serving the media nodes and the bytes, on CPU 0 ----
UP_PORT=$(free_port)
UP="http://127.0.0.1:$UP_PORT"
mkdir -p "$WORK/up"
chmod 711 "$WORK"   # nginx's worker (nobody) reads up/, nothing else
cat >"$WORK/upstream.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  sendfile on;
  tcp_nopush on;
  server {
    listen 127.0.0.1:$UP_PORT;
    root $WORK/up;
    location /v23.0/ { default_type application/json; }
    location /files/ { default_type image/jpeg; }
  }
}
CONF
taskset -c 0 "$NGINX_BIN" -c "$WORK/upstream.conf" -p "$WORK" >"$WORK/upstream.out" 2>&1 &
NGINX_PID=$!

echo "==> generating files: $((SMALL + WARM)) x $SIZE_KIB KiB, $BIG x $BIG_MIB MiB (distinct random bytes)"
$MEDIA files --root "$WORK/up" --base "$UP" --prefix s --count "$SMALL" --size $((SIZE_KIB * 1024)) --seed 1 &
GEN+=($!)
$MEDIA files --root "$WORK/up" --base "$UP" --prefix w --count "$WARM" --size $((SIZE_KIB * 1024)) --seed 2 &
GEN+=($!)
$MEDIA files --root "$WORK/up" --base "$UP" --prefix b --count "$BIG" --size $((BIG_MIB << 20)) --seed 3 &
GEN+=($!)
for pid in "${GEN[@]}"; do wait "$pid"; done
$MEDIA sign --manifest "$WORK/up/s.manifest" --secret "$APP_SECRET" --prefix open --out "$WORK/open.txt"
$MEDIA sign --manifest "$WORK/up/w.manifest" --secret "$APP_SECRET" --prefix warm --out "$WORK/warm.txt"
$MEDIA sign --manifest "$WORK/up/s.manifest" --secret "$APP_SECRET" --prefix dedupe --count "$DEDUPE" \
  --id-prefix 9 --out "$WORK/dedupe.txt"
curl -fsS -o /dev/null "$UP/files/s0000000" || { echo "the Graph double does not serve its files" >&2; cat "$WORK/upstream.err" >&2; exit 1; }

# ---- wagate instances: one fresh data folder (and database) each ----
BASE=""; DB_URL=""
start_wagate() { # backend, name, then VAR=value overrides
  local backend=$1 name=$2 dir port key wagate_url up=0
  shift 2
  dir="$WORK/$name"; mkdir -p "$dir"
  if [ "$backend" = postgres ]; then
    local db="wagate_media_bench_$$_${name//-/_}"
    psql "$PG_URL/postgres" -Xqc "drop database if exists $db" >/dev/null 2>&1
    psql "$PG_URL/postgres" -Xqc "create database $db" >/dev/null
    PG_DBS+=("$db")
    DB_URL="$PG_URL/$db"; wagate_url="$DB_URL?sslmode=disable"
  else
    DB_URL="sqlite://$dir/wagate.db"; wagate_url=$DB_URL
  fi
  port=$(free_port)
  BASE="http://127.0.0.1:$port"
  (
    cd "$dir"
    export WAGATE__SERVER__LISTEN=127.0.0.1:$port
    export WAGATE__DATABASE__URL=$wagate_url
    export WAGATE__SECURITY__MASTER_KEY=$MASTER_KEY
    export WAGATE__META__APP_SECRET=$APP_SECRET
    export WAGATE__GRAPH__BASE_URL=$UP
    export WAGATE__GRAPH__VERIFY_NUMBERS=false  # the double answers media calls only
    # Raw proxy speed: pacing would hold sends to Meta's 80/s (bench/pacing.sh measures it).
    export WAGATE__PACING__ENABLED=false
    export WAGATE__LOG__LEVEL=warn
    export WAGATE__LOG__FORMAT=json
    exec env "$@" taskset -c 1 "$BIN" serve
  ) >"$dir/wagate.out" 2>"$dir/wagate.log" &
  WAGATE_PID=$!
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$BASE/healthz" 2>/dev/null; then up=1; break; fi
    kill -0 "$WAGATE_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ $up = 0 ]; then echo "wagate did not come up:" >&2; tail -n 30 "$dir/wagate.log" "$dir/wagate.out" >&2; exit 1; fi
  # The first start writes its key to a 0600 file when stdout is not a terminal.
  key=$( (find "$dir" -name initial-api-key -exec cat {} + 2>/dev/null; grep -o 'wag_[A-Za-z0-9_-]*' "$dir/wagate.out" || true) | head -1)
  [ -n "$key" ] || { echo "no API key from wagate" >&2; tail -n 30 "$dir/wagate.log" >&2; exit 1; }
  curl -fsS -o /dev/null -X POST "$BASE/platform/v1/whatsapp/phone_numbers" \
    -H "X-API-Key: $key" -H 'content-type: application/json' \
    -d "{\"whatsapp_phone_number\":{\"phone_number_id\":\"$PNID\",\"business_account_id\":\"$WABA\",\"access_token\":\"bench-token\"}}"
}
stop_wagate() { # name: stops the instance, reports its warnings
  # Its media folder stays until the run ends: deleting thousands of files just before the next
  # instance creates thousands more makes ext4 scan past every inode freed in the last seconds
  # (recently_deleted) on each create, which measured as 18% of the core and seconds of lag in
  # whichever round came second.
  local dir="$WORK/$1"
  kill "$WAGATE_PID"; wait "$WAGATE_PID" 2>/dev/null || true; WAGATE_PID=""
  # (the warning that numbers are connected unverified is expected here)
  grep -E '"level":"(WARN|ERROR)"' "$dir/wagate.log" | grep -v 'verify_numbers = false' >"$dir/warnings.txt" || true
  if [ -s "$dir/warnings.txt" ]; then
    echo "    wagate ($1) logged $(wc -l <"$dir/warnings.txt") warnings/errors; first 3:"
    head -3 "$dir/warnings.txt" | cut -c1-300 | sed 's/^/      /'
  fi
}
wait_media() { # backend, prefix, count, out [pid]
  taskset -c 0 $MEDIA wait --backend "$1" --db "$DB_URL" --prefix "$2" --count "$3" \
    --timeout "$WAIT_TIMEOUT" ${5:+--pid "$5"} >"$4"
}

# ---- (1) ingest at RATE with the vault off, then on ----
for backend in $BACKENDS; do
  mkdir -p "$WORK/$backend"
  for round in $(seq 1 "$ROUNDS"); do
    order="off on"; [ $((round % 2)) = 1 ] || order="on off"
    for vault in $order; do
      name="$backend-$vault-$round"; out="$WORK/$backend/${vault}_$round"
      # Dirty pages of the previous phase (generated files, a vault's copies) written back now,
      # not as fsync stalls inside the next measurement.
      sync
      echo "==> (1) $backend, round $round, vault $vault: warm-up ${WARMUP}s, then $RATE image webhooks/s for ${DURATION}s"
      start_wagate "$backend" "$name" WAGATE__MEDIA__VAULT=$([ "$vault" = on ] && echo true || echo false)
      url="$BASE/webhooks/whatsapp"
      run taskset -c 0 $LOAD open --url "$url" --file "$WORK/warm.txt" --rate "$RATE" --duration "$WARMUP" \
        --out "$WORK/$name/warm.json" >/dev/null
      [ "$vault" = off ] || wait_media "$backend" warm "$WARM" "$WORK/$name/wait_warm.json"
      c0=$(cpu1_ticks); w0=$(proc_ticks "$WAGATE_PID")
      run taskset -c 0 $LOAD open --url "$url" --file "$WORK/open.txt" --rate "$RATE" --duration "$DURATION" \
        --out "$out.open.json" >/dev/null
      [ "$vault" = off ] || wait_media "$backend" open "$SMALL" "$out.wait.json"
      echo "$c0 $(cpu1_ticks) $w0 $(proc_ticks "$WAGATE_PID")" >"$out.cpu"
      if [ "$vault" = on ]; then
        $MEDIA lag --backend "$backend" --db "$DB_URL" --prefix open >"$out.lag.json"
        echo "    dedupe: $DEDUPE messages naming kept files by media ids the double does not serve"
        burst "$url" "$WORK/dedupe.txt" "$DEDUPE"
        wait_media "$backend" dedupe "$DEDUPE" "$out.dedupe_wait.json"
        $MEDIA lag --backend "$backend" --db "$DB_URL" --prefix dedupe >"$out.dedupe.json"
      fi
      stop_wagate "$name"
    done
  done
done
sync

# ---- (2) copy throughput: wagate against curl, both on CPU 1 ----
$MEDIA sign --manifest "$WORK/up/b.manifest" --secret "$APP_SECRET" --prefix copy --count "$COPY_FILES" \
  --checksum hex --out "$WORK/copy.txt"
head -n "$COPY_FILES" "$WORK/up/b.manifest" | while read -r id _; do
  printf 'url = "%s/files/%s"\noutput = "%s/curl/%s"\n' "$UP" "$id" "$WORK" "$id"
done >"$WORK/curl.cfg"
copy_curl() { # -> "wall user sys" seconds
  rm -rf "$WORK/curl"; mkdir -p "$WORK/curl"
  local TIMEFORMAT='%R %U %S'
  # (curl's stderr apart: --parallel draws a progress meter even with -s)
  { time run taskset -c 1 curl -fsS --parallel --parallel-max "$COPY_CONCURRENCY" --config "$WORK/curl.cfg" \
      2>"$WORK/curl.err"; } 2>"$WORK/curl.time" || { cat "$WORK/curl.err" >&2; exit 1; }
  local bytes
  bytes=$(find "$WORK/curl" -type f -printf '%s\n' | awk '{n += $1} END {print n + 0}')
  [ "$bytes" -eq $((COPY_FILES * (BIG_MIB << 20))) ] || { echo "curl wrote $bytes bytes" >&2; exit 1; }
  rm -rf "$WORK/curl"
}
copy_wagate() { # round -> $WORK/copy-<round>.json
  local name="copy-$1" t0 t1
  start_wagate sqlite "$name" WAGATE__MEDIA__MAX_IN_FLIGHT="$COPY_CONCURRENCY"
  t0=$(proc_ticks "$WAGATE_PID")
  burst "$BASE/webhooks/whatsapp" "$WORK/copy.txt" "$COPY_FILES"
  wait_media sqlite copy "$COPY_FILES" "$WORK/$name/wait.json"
  t1=$(proc_ticks "$WAGATE_PID")
  $MEDIA lag --backend sqlite --db "$DB_URL" --prefix copy >"$WORK/$name/lag.json"
  echo "$(( t1 - t0 ))" >"$WORK/$name/ticks"
  stop_wagate "$name"
}
echo "==> (2) copy: $COPY_FILES x $BIG_MIB MiB, $COPY_CONCURRENCY at once, wagate vs curl on CPU 1, $COPY_ROUNDS rounds"
for round in $(seq 1 "$COPY_ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then copy_curl; copy_wagate "$round"
  else copy_wagate "$round"; copy_curl; fi
  cp "$WORK/curl.time" "$WORK/copy-$round/curl.time"
done
python3 - "$WORK" "$COPY_ROUNDS" "$COPY_FILES" "$BIG_MIB" "$COPY_CONCURRENCY" "$(getconf CLK_TCK)" >"$WORK/copy.json" <<'PY'
import json, sys
work, rounds, files, size_mib, conc, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
out = {"files": files, "size_mib": size_mib, "concurrency": conc, "rounds": []}
total = files * (size_mib << 20)
for r in range(1, rounds + 1):
    lag = json.load(open(f"{work}/copy-{r}/lag.json"))
    wall, user, sys_ = (float(x) for x in open(f"{work}/copy-{r}/curl.time").read().split())
    ticks = int(open(f"{work}/copy-{r}/ticks").read())
    out["rounds"].append({
        "wagate_bps": lag.get("bytes_per_s", 0.0) or 1e-9, "wagate_s": lag.get("span_s", 0.0),
        "wagate_cpu_s": ticks / hz, "stored": lag["stored"], "states": lag["states"],
        "curl_bps": total / wall, "curl_s": wall, "curl_cpu_s": user + sys_})
print(json.dumps(out))
PY

# ---- (3) memory: RSS_FILES downloads of BIG_MIB at once ----
echo "==> (3) memory: $RSS_FILES x $BIG_MIB MiB at once, media.max_in_flight=$RSS_IN_FLIGHT"
$MEDIA sign --manifest "$WORK/up/b.manifest" --secret "$APP_SECRET" --prefix rss --count "$RSS_FILES" \
  --out "$WORK/rss.txt"
start_wagate sqlite rss WAGATE__MEDIA__MAX_IN_FLIGHT="$RSS_IN_FLIGHT"
sleep 1
RSS_BEFORE=$(vm_kb "$WAGATE_PID" VmRSS)
burst "$BASE/webhooks/whatsapp" "$WORK/rss.txt" "$RSS_FILES"
wait_media sqlite rss "$RSS_FILES" "$WORK/rss/wait.json" "$WAGATE_PID"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.update(files=int(sys.argv[2]), size_mib=int(sys.argv[3]), max_in_flight=int(sys.argv[4]), rss_before_kb=int(sys.argv[5])); print(json.dumps(d))' \
  "$WORK/rss/wait.json" "$RSS_FILES" "$BIG_MIB" "$RSS_IN_FLIGHT" "$RSS_BEFORE" >"$WORK/rss.json"
stop_wagate rss

FAILED=0
$MEDIA report --dir "$WORK" --backends "$BACKENDS" --rounds "$ROUNDS" --rate "$RATE" --duration "$DURATION" --size-kib "$SIZE_KIB" || FAILED=1
if [ -n "${KEEP:-}" ]; then # the run's JSON and logs (not the files) for a closer look
  mkdir -p "$KEEP"
  (cd "$WORK" && find . \( -name '*.json' -o -name '*.log' -o -name '*.time' -o -name '*.cpu' \) -exec cp --parents {} "$KEEP/" \;)
  echo "(results and logs copied to $KEEP)"
fi
exit $FAILED
