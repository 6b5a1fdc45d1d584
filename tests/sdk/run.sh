#!/usr/bin/env bash
# Runs the official Kapso SDKs (JS @kapso/whatsapp-cloud-api and Python kapso-whatsapp-cloud-api,
# versions pinned beside this script) against a freshly started `wagate serve --sandbox`.
#
#   tests/sdk/run.sh                 # uses target/debug/wagate (build it first: cargo build)
#   WAGATE_BIN=/path/to/wagate tests/sdk/run.sh
#   tests/sdk/run.sh js|python       # one suite only
#
# Installs the pinned packages on first use (npm ci into tests/sdk/node_modules, pip into
# tests/sdk/.venv); builds nothing. Exits non-zero when either suite fails.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SUITES=${1:-all}
case "$SUITES" in all|js|python) ;; *) echo "usage: $0 [all|js|python]" >&2; exit 2 ;; esac

BIN=${WAGATE_BIN:-target/debug/wagate}
if [[ "$BIN" != /* ]]; then
  if [[ -e "$PWD/$BIN" ]]; then BIN="$PWD/$BIN"; else BIN="$ROOT/$BIN"; fi
fi
if [[ ! -x "$BIN" ]]; then
  echo "run.sh: no wagate binary at $BIN (run 'cargo build' in $ROOT, or set WAGATE_BIN)" >&2
  exit 2
fi

# ---- pinned SDKs ---------------------------------------------------------------------------
JS_PIN=$(node -p 'require(process.argv[1]).dependencies["@kapso/whatsapp-cloud-api"]' "$HERE/package.json")
installed_js() {
  node -p 'require(process.argv[1]).version' \
    "$HERE/node_modules/@kapso/whatsapp-cloud-api/package.json" 2>/dev/null
}
if [[ "$SUITES" != python && "$(installed_js)" != "$JS_PIN" ]]; then
  echo "run.sh: installing the pinned JS SDK (npm ci)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || { echo "run.sh: npm ci failed" >&2; exit 2; }
fi

VENV="$HERE/.venv"
REQ_SUM=$(sha256sum "$HERE/requirements.txt" | cut -d' ' -f1)
if [[ "$SUITES" != js && "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$REQ_SUM" ]]; then
  echo "run.sh: installing the pinned Python SDK (pip install -r requirements.txt)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" \
    && "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" \
    && echo "$REQ_SUM" > "$VENV/.requirements.sha256" \
    || { echo "run.sh: pip install failed" >&2; exit 2; }
fi

# ---- wagate --------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wagate-sdk.XXXXXX")
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(
  cd "$WORK" && WAGATE__SERVER__LISTEN="127.0.0.1:$PORT" WAGATE__LOG__LEVEL=warn \
    exec "$BIN" serve --sandbox >"$WORK/stdout.log" 2>"$WORK/stderr.log"
) &
WAGATE_PID=$!

cleanup() {
  local rc=$?
  if kill -0 "$WAGATE_PID" 2>/dev/null; then
    kill "$WAGATE_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$WAGATE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$WAGATE_PID" 2>/dev/null
  fi
  wait "$WAGATE_PID" 2>/dev/null
  if [[ $rc -ne 0 && -s "$WORK/stderr.log" ]]; then
    echo "---- wagate stderr (last 40 lines) ----"
    tail -n 40 "$WORK/stderr.log"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for _ in $(seq 300); do
  grep -q 'Graph emulator on' "$WORK/stdout.log" 2>/dev/null && break
  if ! kill -0 "$WAGATE_PID" 2>/dev/null; then
    echo "run.sh: wagate exited during start-up" >&2
    cat "$WORK/stdout.log" "$WORK/stderr.log" >&2
    exit 2
  fi
  sleep 0.1
done
WAGATE_API_KEY=$(grep -o 'shown only this once: wag_[A-Za-z0-9_-]*' "$WORK/stdout.log" | head -n1 | awk '{print $NF}')
WAGATE_EMULATOR_URL=$(grep -o 'Graph emulator on http://[^ ]*' "$WORK/stdout.log" | head -n1 | awk '{print $NF}')
if [[ -z "$WAGATE_API_KEY" || -z "$WAGATE_EMULATOR_URL" ]] || ! grep -q 'Connected the demo number 100000000000001' "$WORK/stdout.log"; then
  echo "run.sh: could not read the API key / emulator URL / demo number from wagate's output:" >&2
  cat "$WORK/stdout.log" >&2
  exit 2
fi
export WAGATE_API_KEY WAGATE_EMULATOR_URL
export WAGATE_BASE_URL="http://127.0.0.1:$PORT/meta/whatsapp"
export WAGATE_PNID=100000000000001 WAGATE_WABA=200000000000001
echo "run.sh: wagate $BIN on 127.0.0.1:$PORT, emulator $WAGATE_EMULATOR_URL"

# ---- suites --------------------------------------------------------------------------------
JS_RC=skipped PY_RC=skipped
if [[ "$SUITES" != python ]]; then
  echo "==== JS SDK @kapso/whatsapp-cloud-api@$JS_PIN (node --test) ===="
  (cd "$HERE" && node --test --test-timeout=60000 js/sdk.test.mjs)
  JS_RC=$?
fi
if [[ "$SUITES" != js ]]; then
  echo "==== Python SDK $(grep -i '^kapso-whatsapp-cloud-api' "$HERE/requirements.txt") (pytest) ===="
  (cd "$HERE" && PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -ra -p no:cacheprovider python/test_sdk.py)
  PY_RC=$?
fi

verdict() { case "$1" in 0) echo pass ;; skipped) echo skipped ;; *) echo "FAIL (exit $1)" ;; esac; }
echo "run.sh: JS SDK suite: $(verdict "$JS_RC"); Python SDK suite: $(verdict "$PY_RC")"
[[ "$JS_RC" == 0 || "$JS_RC" == skipped ]] && [[ "$PY_RC" == 0 || "$PY_RC" == skipped ]]
