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

source "$ROOT/tests/lib/sandbox.sh"
wagate_bin

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

[[ "$SUITES" != js ]] && pinned_venv "$HERE"

# ---- wagate --------------------------------------------------------------------------------
start_wagate sdk
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
