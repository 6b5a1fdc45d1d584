#!/usr/bin/env bash
# schemathesis (pinned in requirements.txt) against wagate's own OpenAPI document, served by a
# freshly started `wagate serve --sandbox`: generated requests to every documented Platform,
# webhook and stored-data operation must get no 5xx, only documented status codes, the documented
# content type and bodies matching the documented schemas.
#
#   tests/schema/run.sh                  # uses target/debug/wagate (build it first: cargo build)
#   WAGATE_BIN=/path/to/wagate MAX_EXAMPLES=200 tests/schema/run.sh   # a longer run
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MAX_EXAMPLES=${MAX_EXAMPLES:-15}
BIN=${WAGATE_BIN:-target/debug/wagate}
if [[ "$BIN" != /* ]]; then
  if [[ -e "$PWD/$BIN" ]]; then BIN="$PWD/$BIN"; else BIN="$ROOT/$BIN"; fi
fi
[[ -x "$BIN" ]] || { echo "run.sh: no wagate binary at $BIN (cargo build, or set WAGATE_BIN)" >&2; exit 2; }

VENV="$HERE/.venv"
REQ_SUM=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$REQ_SUM" ]]; then
  echo "run.sh: installing schemathesis (pip, pinned)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" \
    && "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" \
    && echo "$REQ_SUM" > "$VENV/.requirements.sha256" \
    || { echo "run.sh: pip install failed" >&2; exit 2; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wagate-schema.XXXXXX")
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(
  cd "$WORK" && WAGATE__SERVER__LISTEN="127.0.0.1:$PORT" WAGATE__LOG__LEVEL=warn \
    exec "$BIN" serve --sandbox >"$WORK/stdout.log" 2>"$WORK/stderr.log"
) &
WAGATE_PID=$!
cleanup() {
  local rc=$?
  kill "$WAGATE_PID" 2>/dev/null; wait "$WAGATE_PID" 2>/dev/null
  if [[ $rc -ne 0 && -s "$WORK/stderr.log" ]]; then tail -n 30 "$WORK/stderr.log"; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

KEY=""
for _ in $(seq 300); do
  KEY=$(grep -o 'wag_[A-Za-z0-9_-]*' "$WORK/stdout.log" 2>/dev/null | head -1)
  [[ -n "$KEY" ]] && curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
[[ -n "$KEY" ]] || { echo "run.sh: wagate did not start" >&2; exit 2; }

# The passthrough (forwarded to the emulator) and the setup page (HTML, token-addressed) are
# left out; every other documented operation is exercised.
"$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
  --header "X-API-Key: $KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-path-regex '\{graph_path\}|^/setup/' \
  --max-examples "$MAX_EXAMPLES" \
  --workers 1 \
  --seed 1 \
  --no-color "$@"
