#!/usr/bin/env bash
# Meta-aware pacing benchmark (issue #22), against the Graph emulator (`wagate sandbox`), which
# logs the arrival time of every send it accepts (GET /_sandbox/numbers/{pnid}/send_rate):
#   (a) 500 sends/s offered through the proxy to an 80/s number for DURATION seconds: every
#       sliding 1 s window at the emulator must hold at most 80 (+5%), and every request must be
#       answered (sent, or 130429 here) within pacing.max_wait + 50 ms;
#   (b) a 100,000-recipient broadcast on a 1,000/s number (HIGH after the emulator's throughput
#       upgrade and its webhook) must complete within 105 s, no window over the limit;
#   (c) (a) through two instances sharing one PostgreSQL database: the combined windows must
#       hold at most 80 (+5%).
# The emulator's own limits are off: it accepts everything, so what it logs is what wagate sent.
#
# Usage: bench/pacing.sh      DURATION=10 RATE=500 RECIPIENTS=100000 by default
#        ONLY="a c"           run some of the three
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
RATE=${RATE:-500}
RECIPIENTS=${RECIPIENTS:-100000}
ONLY=${ONLY:-"a b c"}
PG_URL=${WAGATE_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
EMU=18190; W1=18191; W2=18192
PNID=100000000000001; WABA=200000000000001; TOKEN=sandbox-token-$PNID
MAX_WAIT_MS=1000

if [ -z "${SKIP_BUILD:-}" ]; then
  echo "==> building wagate (release)"
  cargo build --release --quiet --bin wagate
fi
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/wagate"

WORK=$(mktemp -d /tmp/wagate-pacing.XXXXXX)
PIDS=()
DBS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for db in "${DBS[@]}"; do psql "$PG_URL/postgres" -qc "drop database if exists $db" >/dev/null 2>&1 || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1; see $WORK" >&2; exit 1
}

start_emulator() {
  "$BIN" sandbox --listen "127.0.0.1:$EMU" --webhook-url "http://127.0.0.1:$W1/webhooks/whatsapp" \
    >"$WORK/emulator.out" 2>"$WORK/emulator.log" &
  PIDS+=($!)
  wait_port $EMU
}

start_wagate() { # name, port, database url
  mkdir -p "$WORK/$1"
  (
    cd "$WORK/$1"
    export WAGATE__SERVER__LISTEN=127.0.0.1:$2
    export WAGATE__DATABASE__URL=$3
    export WAGATE__GRAPH__BASE_URL=http://127.0.0.1:$EMU
    export WAGATE__META__APP_SECRET=sandbox-app-secret
    export WAGATE__LOG__LEVEL=warn
    export WAGATE__SECURITY__BOOTSTRAP_KEY_FILE=$WORK/$1/api-key
    # One master key for every instance of a database (they share the sealed token).
    export WAGATE__SECURITY__MASTER_KEY=$MASTER_KEY
    exec "$BIN" serve
  ) >"$WORK/$1.out" 2>"$WORK/$1.log" &
  PIDS+=($!)
  wait_port "$2"
}

connect_number() { # port, key
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$1/platform/v1/whatsapp/phone_numbers" \
    -H "X-API-Key: $2" -H 'content-type: application/json' \
    -d "{\"whatsapp_phone_number\":{\"phone_number_id\":\"$PNID\",\"business_account_id\":\"$WABA\",\"access_token\":\"$TOKEN\"}}"
}

emulator_rate() { curl -fsS "http://127.0.0.1:$EMU/_sandbox/numbers/$PNID/send_rate" > "$1"; }
reset_rate() { curl -fsS -o /dev/null -X DELETE "http://127.0.0.1:$EMU/_sandbox/numbers/$PNID/send_rate"; }

MASTER_KEY=$(printf 'wagate-pacing-bench-master-key!!' | base64)   # 32 bytes
start_emulator
ARGS=()

run_single() { # runs: "a" or "b" (each on its own SQLite database)
  local runs=$1
  rm -rf "$WORK/one"
  start_wagate one $W1 "sqlite://$WORK/one/wagate.db"
  KEY=$(cat "$WORK/one/api-key")
  connect_number $W1 "$KEY"
  if [[ "$runs" == a ]]; then
    echo "==> (a) $RATE sends/s for ${DURATION}s through one instance to an 80/s number"
    reset_rate
    python3 bench/pacing_load.py open --urls "http://127.0.0.1:$W1" --key "$KEY" --pnid $PNID \
      --rate "$RATE" --duration "$DURATION" --out "$WORK/a.json"
    sleep 1; emulator_rate "$WORK/a-rate.json"
    ARGS+=(--a "$WORK/a.json" --a-rate "$WORK/a-rate.json")
  fi
  if [[ "$runs" == b ]]; then
    echo "==> (b) a $RECIPIENTS-recipient broadcast on a 1,000/s number"
    # Meta's upgrade, made quick: 131057 for 200 ms, then HIGH and THROUGHPUT_UPGRADE.
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$EMU/_sandbox/knobs" -H 'content-type: application/json' \
      -d "{\"limits\": {\"upgrade_ms\": 200}${EMULATOR_KNOBS:-}}"
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:$EMU/_sandbox/numbers/$PNID/throughput_upgrade"
    for _ in $(seq 1 100); do
      tier=$(curl -fsS "http://127.0.0.1:$W1/platform/v1/whatsapp/phone_numbers/$PNID/pacing" -H "X-API-Key: $KEY" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["rate"])')
      [ "$tier" = 1000 ] && break
      sleep 0.2
    done
    [ "$tier" = 1000 ] || { echo "the number never became HIGH (rate $tier)" >&2; exit 1; }
    reset_rate
    python3 bench/pacing_load.py broadcast --url "http://127.0.0.1:$W1" --key "$KEY" --pnid $PNID \
      --recipients "$RECIPIENTS" --out "$WORK/b.json"
    emulator_rate "$WORK/b-rate.json"
    ARGS+=(--b "$WORK/b.json" --b-rate "$WORK/b-rate.json")
  fi
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true; unset 'PIDS[-1]'
}

[[ " $ONLY " != *" a "* ]] || run_single a

if [[ " $ONLY " == *" c "* ]]; then
  echo "==> (c) $RATE sends/s for ${DURATION}s through two instances on one PostgreSQL database"
  DB="wagate_pacing_bench_$$"
  psql "$PG_URL/postgres" -qc "create database $DB" >/dev/null
  DBS+=("$DB")
  start_wagate first $W1 "$PG_URL/$DB"
  KEY=$(cat "$WORK/first/api-key")
  connect_number $W1 "$KEY"
  start_wagate second $W2 "$PG_URL/$DB"
  # Both count each other (heartbeat every second, live within 3 s).
  for _ in $(seq 1 50); do
    live=$(curl -fsS "http://127.0.0.1:$W2/platform/v1/whatsapp/phone_numbers/$PNID/pacing" -H "X-API-Key: $KEY" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["live_instances"])')
    [ "$live" = 2 ] && break
    sleep 0.2
  done
  echo "    live instances: $live"
  reset_rate
  python3 bench/pacing_load.py open --urls "http://127.0.0.1:$W1,http://127.0.0.1:$W2" --key "$KEY" \
    --pnid $PNID --rate "$RATE" --duration "$DURATION" --out "$WORK/c.json"
  sleep 1; emulator_rate "$WORK/c-rate.json"
  ARGS+=(--c "$WORK/c.json" --c-rate "$WORK/c-rate.json")
  kill "${PIDS[-1]}" "${PIDS[-2]}"; wait "${PIDS[-1]}" "${PIDS[-2]}" 2>/dev/null || true
  unset 'PIDS[-1]'; unset 'PIDS[-1]'
fi

# (b) last: the throughput upgrade leaves the emulator's number HIGH.
[[ " $ONLY " != *" b "* ]] || run_single b

echo
python3 bench/pacing_load.py report "${ARGS[@]}" --limit-a 80 --limit-b 1000 --max-wait-ms $MAX_WAIT_MS
