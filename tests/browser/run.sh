#!/usr/bin/env bash
# The hosted setup page (/setup/{token}) in headless Chromium against a freshly started
# `wagate serve --sandbox` (simulated Meta sign-in): theme, connection types, a completed signup
# landing on the success URL, a used, a revoked and a mismatched reconnect link landing on the
# failure URL. playwright-core is pinned beside this script; the browser is Debian's chromium.
#
#   tests/browser/run.sh                 # uses target/debug/wagate (build it first: cargo build)
#   WAGATE_BIN=/path/to/wagate tests/browser/run.sh
#
# Installs what is missing on first use (apt-get install chromium when /usr/bin/chromium is
# absent; npm ci into tests/browser/node_modules); builds nothing. Screenshots go to
# tests/browser/out/. Exits non-zero when the suite fails.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

source "$ROOT/tests/lib/sandbox.sh"
wagate_bin

# ---- chromium and the pinned playwright-core -----------------------------------------------
CHROMIUM_BIN=${CHROMIUM_BIN:-/usr/bin/chromium}
if [[ ! -x "$CHROMIUM_BIN" ]]; then
  echo "run.sh: installing chromium (apt-get)"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null; } \
    || { echo "run.sh: apt-get install chromium failed" >&2; exit 2; }
fi
PW_PIN=$(node -p 'require(process.argv[1]).dependencies["playwright-core"]' "$HERE/package.json")
installed_pw() {
  node -p 'require(process.argv[1]).version' "$HERE/node_modules/playwright-core/package.json" 2>/dev/null
}
if [[ "$(installed_pw)" != "$PW_PIN" ]]; then
  echo "run.sh: installing the pinned playwright-core (npm ci)"
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || { echo "run.sh: npm ci failed" >&2; exit 2; }
fi
export CHROMIUM_BIN

# ---- wagate --------------------------------------------------------------------------------
start_sandbox browser
export WAGATE_API_KEY WAGATE_EMULATOR_URL
export WAGATE_URL="http://127.0.0.1:$PORT"
echo "run.sh: wagate $BIN on 127.0.0.1:$PORT, emulator $WAGATE_EMULATOR_URL, $("$CHROMIUM_BIN" --version 2>/dev/null)"

# ---- suite ---------------------------------------------------------------------------------
echo "==== setup page in headless Chromium (playwright-core@$PW_PIN, node --test) ===="
(cd "$HERE" && node --test --test-timeout=60000 --test-concurrency=1 setup.test.mjs)
RC=$?
echo "run.sh: browser suite: $([[ $RC == 0 ]] && echo pass || echo "FAIL (exit $RC)"); screenshots in $HERE/out/"
exit "$RC"
