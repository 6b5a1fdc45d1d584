# Shared by the suites that drive a real `wagate serve --sandbox` from outside (tests/sdk,
# tests/browser, tests/schema). Source it after setting ROOT (the repository root).

# wagate_bin: sets BIN from WAGATE_BIN (default target/debug/wagate), relative to the current
# folder or ROOT; exits 2 when there is no binary.
wagate_bin() {
  BIN=${WAGATE_BIN:-target/debug/wagate}
  if [[ "$BIN" != /* ]]; then
    if [[ -e "$PWD/$BIN" ]]; then BIN="$PWD/$BIN"; else BIN="$ROOT/$BIN"; fi
  fi
  if [[ ! -x "$BIN" ]]; then
    echo "run.sh: no wagate binary at $BIN (run 'cargo build' in $ROOT, or set WAGATE_BIN)" >&2
    exit 2
  fi
}

# pinned_venv DIR: a virtualenv in DIR/.venv with DIR/requirements.txt installed, rebuilt when
# that file changes. Sets VENV.
pinned_venv() {
  local dir=$1 sum
  VENV="$dir/.venv"
  sum=$(sha256sum "$dir/requirements.txt" | cut -d' ' -f1)
  [[ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" == "$sum" ]] && return 0
  echo "run.sh: installing $dir/requirements.txt (pip, pinned)"
  rm -rf "$VENV"
  python3 -m venv "$VENV" \
    && "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt" \
    && echo "$sum" > "$VENV/.requirements.sha256" \
    || { echo "run.sh: pip install failed" >&2; exit 2; }
}

# start_sandbox NAME: starts `$BIN serve --sandbox` on a free loopback port in a fresh folder,
# stops it on exit (printing its stderr when the suite failed), and waits until it is up. Sets
# WORK, PORT, WAGATE_PID, WAGATE_API_KEY (read from the 0600 file the first start writes) and
# WAGATE_EMULATOR_URL.
start_sandbox() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/wagate-$1.XXXXXX")
  PORT=$(free_port)
  (
    cd "$WORK" && WAGATE__SERVER__LISTEN="127.0.0.1:$PORT" WAGATE__LOG__LEVEL=warn \
      WAGATE__SECURITY__BOOTSTRAP_KEY_FILE="$WORK/api-key" \
      exec "$BIN" serve --sandbox >"$WORK/stdout.log" 2>"$WORK/stderr.log"
  ) &
  WAGATE_PID=$!
  trap stop_sandbox EXIT
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
  # stdout is not a terminal here, so the key is in the file, never in the output.
  WAGATE_API_KEY=$(cat "$WORK/api-key" 2>/dev/null)
  if grep -q 'wag_' "$WORK/stdout.log"; then
    echo "run.sh: wagate printed an API key to a non-terminal stdout" >&2
    exit 2
  fi
  WAGATE_EMULATOR_URL=$(grep -o 'Graph emulator on http://[^ ]*' "$WORK/stdout.log" | head -n1 | awk '{print $NF}')
  if [[ -z "$WAGATE_API_KEY" || -z "$WAGATE_EMULATOR_URL" ]] || ! grep -q 'Connected the demo number 100000000000001' "$WORK/stdout.log"; then
    echo "run.sh: could not read the API key / emulator URL / demo number from wagate's output:" >&2
    cat "$WORK/stdout.log" >&2
    exit 2
  fi
}

# start_gateway NAME: the production shape instead of `serve --sandbox`: `wagate serve` with its
# defaults (SSRF guard on: no http:// or private destinations; number verification on; a real
# app secret) in front of a separate `wagate sandbox` process as the Graph double, which signs
# its webhooks with that secret and sends them to the gateway. The demo number is connected
# through the Platform API, verified against the double. Sets the same variables as
# start_sandbox, plus EMULATOR_PID.
start_gateway() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/wagate-$1.XXXXXX")
  PORT=$(free_port)
  local eport secret=gateway-test-app-secret
  eport=$(free_port)
  WAGATE_EMULATOR_URL="http://127.0.0.1:$eport"
  "$BIN" sandbox --listen "127.0.0.1:$eport" --app-secret "$secret" \
    --webhook-url "http://127.0.0.1:$PORT/webhooks/whatsapp" >"$WORK/emulator.log" 2>&1 &
  EMULATOR_PID=$!
  (
    cd "$WORK" && WAGATE__SERVER__LISTEN="127.0.0.1:$PORT" WAGATE__LOG__LEVEL=warn \
      WAGATE__SERVER__PUBLIC_URL="http://127.0.0.1:$PORT" \
      WAGATE__GRAPH__BASE_URL="$WAGATE_EMULATOR_URL" \
      WAGATE__PROVISIONING__TWILIO_API_BASE="$WAGATE_EMULATOR_URL/twilio" \
      WAGATE__META__APP_SECRET="$secret" WAGATE__META__VERIFY_TOKEN=gateway-test-verify-token \
      WAGATE__SECURITY__BOOTSTRAP_KEY_FILE="$WORK/api-key" \
      exec "$BIN" serve >"$WORK/stdout.log" 2>"$WORK/stderr.log"
  ) &
  WAGATE_PID=$!
  trap stop_sandbox EXIT
  trap 'exit 130' INT TERM
  for _ in $(seq 300); do
    [[ -s "$WORK/api-key" ]] && curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null \
      && curl -fs -o /dev/null "$WAGATE_EMULATOR_URL/_sandbox/numbers" && break
    if ! kill -0 "$WAGATE_PID" 2>/dev/null || ! kill -0 "$EMULATOR_PID" 2>/dev/null; then
      echo "run.sh: wagate or its Graph double exited during start-up" >&2
      cat "$WORK/stdout.log" "$WORK/stderr.log" "$WORK/emulator.log" >&2
      exit 2
    fi
    sleep 0.1
  done
  WAGATE_API_KEY=$(cat "$WORK/api-key" 2>/dev/null)
  local status
  status=$(curl -sS -o "$WORK/connect.json" -w '%{http_code}' -X POST \
    "http://127.0.0.1:$PORT/platform/v1/whatsapp/phone_numbers" \
    -H "X-API-Key: $WAGATE_API_KEY" -H 'content-type: application/json' \
    -d '{"whatsapp_phone_number":{"phone_number_id":"100000000000001","business_account_id":"200000000000001","access_token":"sandbox-token-100000000000001","name":"Gateway demo"}}')
  if [[ "$status" != 201 ]]; then
    echo "run.sh: connecting the demo number through the Platform API gave $status:" >&2
    cat "$WORK/connect.json" "$WORK/stderr.log" >&2
    exit 2
  fi
}

# start_wagate NAME: start_sandbox, or start_gateway when WAGATE_MODE=serve.
start_wagate() {
  case "${WAGATE_MODE:-sandbox}" in
    sandbox) start_sandbox "$1" ;;
    serve) start_gateway "$1" ;;
    *) echo "run.sh: WAGATE_MODE must be sandbox or serve" >&2; exit 2 ;;
  esac
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_sandbox() {
  local rc=$?
  if [[ -n "${EMULATOR_PID:-}" ]]; then kill "$EMULATOR_PID" 2>/dev/null; fi
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
