#!/usr/bin/env bash
# Stored-data list benchmark (issue 5): seeds messages across 10 numbers (a fifth of them on the
# measured number), then measures
# `GET {pnid}/messages?limit=20` on the first page and on a page DEPTH rows deep (reached by a keyset
# cursor), closed loop (wrk, req/s and p99) and open loop at a fixed RATE (p50/p99), and prints the
# deep/first ratios. Keyset pagination should make them ~1.0; an OFFSET list would not be.
# The two pages alternate over ROUNDS rounds and each figure is the median round: measured one
# after the other, whichever ran second also met the database's background work after the seed
# (a checkpoint, autovacuum of the other tables), which read as a slower deep page.
#
# Usage: bench/list.sh     BACKENDS="postgres sqlite"  PG_ROWS=1000000  SQLITE_ROWS=200000
#                          PG_DEPTH=100000  SQLITE_DEPTH=20000  DURATION=10s  CONNS=8  RATE=1000
#                          ROUNDS=3  BIN=path/to/wagate (skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."

BACKENDS=${BACKENDS:-postgres sqlite}
PG_ROWS=${PG_ROWS:-1000000}
SQLITE_ROWS=${SQLITE_ROWS:-200000}
PG_DEPTH=${PG_DEPTH:-100000}
SQLITE_DEPTH=${SQLITE_DEPTH:-20000}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-8}
RATE=${RATE:-1000}
OPEN_SECONDS=${OPEN_SECONDS:-10}
ROUNDS=${ROUNDS:-3}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
MASTER_KEY=$(printf 'wagate-list-bench-master-key-32!' | base64)

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
if [ -z "${BIN:-}" ]; then
  echo "==> building wagate (release)"
  cargo build --release --quiet
  BIN="$PWD/target/release/wagate"
fi
BIN=$(realpath "$BIN")   # wagate runs from its own work directory

WORK=$(mktemp -d /tmp/wagate-list.XXXXXX)
PID=""
PG_DB=""   # the database made for this run, dropped on exit
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"
  [ -z "$PG_DB" ] || psql "$PG_URL/postgres" -qc "drop database if exists $PG_DB" >/dev/null 2>&1 || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_backend() {
  local backend=$1 rows depth db port key
  if [ "$backend" = postgres ]; then
    rows=$PG_ROWS; depth=$PG_DEPTH
    local name="wagate_list_$$"
    psql "$PG_URL/postgres" -qc "drop database if exists $name" -c "create database $name" >/dev/null
    PG_DB=$name
    db="$PG_URL/$name"
  else
    rows=$SQLITE_ROWS; depth=$SQLITE_DEPTH
    mkdir -p "$WORK/sqlite"
    db="sqlite://$WORK/sqlite/wagate.db"
  fi
  port=$(free_port)
  mkdir -p "$WORK/$backend"
  ( cd "$WORK/$backend"
    WAGATE__SERVER__LISTEN=127.0.0.1:$port WAGATE__DATABASE__URL=$db WAGATE__SECURITY__MASTER_KEY=$MASTER_KEY \
    WAGATE__LOG__LEVEL=warn WAGATE__GRAPH__VERIFY_NUMBERS=false WAGATE__PACING__ENABLED=false exec taskset -c 1 "$BIN" serve ) >"$WORK/$backend.out" 2>"$WORK/$backend.log" &
  PID=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  # The first start writes its key to a 0600 file when stdout is not a terminal (older builds print it).
  key=$( (find "$WORK/$backend" -name initial-api-key -exec cat {} + 2>/dev/null; grep -o 'wag_[A-Za-z0-9_-]*' "$WORK/$backend.out" || true) | head -1)
  for i in $(seq 0 9); do
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$port/platform/v1/whatsapp/phone_numbers" -H "X-API-Key: $key" \
      -H 'content-type: application/json' \
      -d "{\"whatsapp_phone_number\":{\"phone_number_id\":\"10000000000000$i\",\"business_account_id\":\"200000000000001\",\"access_token\":\"tok$i\"}}"
  done
  echo "==> $backend: seeding $rows messages across 10 numbers"
  python3 bench/list_seed.py seed --backend "$backend" --db "$db" --rows "$rows"
  local deep
  deep=$(python3 bench/list_seed.py cursor --backend "$backend" --db "$db" --pnid 100000000000000 --depth "$depth")
  local base="http://127.0.0.1:$port/meta/whatsapp/v24.0/100000000000000/messages?limit=20"
  printf 'wrk.headers["X-API-Key"] = "%s"\n' "$key" >"$WORK/get.lua"
  # Both pages must be full pages: an empty deep page would measure nothing.
  for url in "$base" "$base&after=$deep"; do
    local count
    count=$(curl -fsS -H "X-API-Key: $key" "$url" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))') ||
      { echo "list request failed: $url" >&2; exit 1; }
    [ "$count" = 20 ] || { echo "expected a full page of 20 at $url, got $count" >&2; exit 1; }
  done
  echo "==> $backend: measuring the first page and one $depth rows deep, alternating, $ROUNDS rounds"
  for round in $(seq 1 "$ROUNDS"); do for page in first deep; do
    local url=$base; [ "$page" = deep ] && url="$base&after=$deep"
    taskset -c 0 wrk -t1 -c"$CONNS" -d2s -s "$WORK/get.lua" "$url" >/dev/null
    local out; out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/get.lua" "$url")
    grep -q "Non-2xx" <<<"$out" && { echo "$out" >&2; exit 1; }
    python3 bench/wrk_parse.py 1 "$backend" "$page" "$CONNS" <<<"$out" >>"$WORK/closed.tsv"
    taskset -c 0 python3 bench/list_seed.py open --url "$url" --key "$key" --rate "$RATE" --seconds "$OPEN_SECONDS" \
      --label "$backend	$page" >>"$WORK/open.tsv"
  done; done
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

for backend in $BACKENDS; do run_backend "$backend"; done
python3 bench/list_seed.py report --closed "$WORK/closed.tsv" --open "$WORK/open.tsv" --rate "$RATE"
