#!/usr/bin/env bash
# Idle-connection memory of a fresh wagate (issue #24, target 4), without the load that
# bench/proxy.sh runs first (whose freed memory the allocator keeps): RSS of a new instance
# (SQLite, defaults), then with IDLE (10,000) keep-alive connections that each made one request
# (GET /healthz) and went quiet, once they have been idle past server.park_after, then after
# they close. Extra arguments are environment for wagate (e.g. WAGATE__SERVER__PARK_AFTER=0s).
#
# Usage: bench/idle_fresh.sh [VAR=value ...]     BIN=target/release/wagate IDLE=10000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-target/release/wagate}")
IDLE=${IDLE:-10000}
PORT=${PORT:-18190}
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d)
PID=""
cleanup() {
  [ -z "$PID" ] || { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT
(
  cd "$WORK"
  exec env WAGATE__SERVER__LISTEN=127.0.0.1:$PORT WAGATE__SERVER__MAX_CONNECTIONS=$((IDLE + 4096)) \
    WAGATE__LOG__LEVEL=warn "$@" taskset -c 1 "$BIN" serve
) >"$WORK/wagate.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$PID/status"; }
fresh=$(rss)
coproc IDLECONNS { taskset -c 0 python3 bench/idle_conns.py --port "$PORT" --count "$IDLE" --path /healthz; }
read -r _ opened failed <&"${IDLECONNS[0]}"
[ "$failed" = 0 ] || { echo "$failed of $IDLE idle connections failed" >&2; exit 1; }
sleep 3
idle=$(rss)
parked=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^wagate_http_connections_parked / {print $2}')
echo >&"${IDLECONNS[1]}"; wait "$IDLECONNS_PID" 2>/dev/null || true
sleep 2
echo "fresh wagate: RSS $fresh MiB; with $opened idle connections (parked: ${parked:-0}) $idle MiB; after they closed $(rss) MiB"
