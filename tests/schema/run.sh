#!/usr/bin/env bash
# schemathesis (pinned in requirements.txt) against wagate's own OpenAPI document, served by a
# freshly started `wagate serve --sandbox` (WAGATE_MODE=serve: `wagate serve` with its SSRF guard
# on, in front of a separate Graph double): generated requests to every documented Platform,
# webhook and stored-data operation must get no 5xx, only documented status codes, the documented
# content type and bodies matching the documented schemas.
#
#   tests/schema/run.sh                  # uses target/debug/wagate (build it first: cargo build)
#   WAGATE_BIN=/path/to/wagate MAX_EXAMPLES=200 tests/schema/run.sh   # a longer run
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MAX_EXAMPLES=${MAX_EXAMPLES:-15}
source "$ROOT/tests/lib/sandbox.sh"
wagate_bin

pinned_venv "$HERE"

start_wagate schema

# The passthrough (forwarded to the emulator) and the setup page (HTML, token-addressed) are
# left out; every other documented operation is exercised, first with the project's key, then
# with no credentials at all (every operation must answer its documented 401, never a 5xx or data).
run_schemathesis() {
  "$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --exclude-path-regex '\{graph_path\}|^/setup/' \
    --max-examples "$MAX_EXAMPLES" \
    --workers 1 \
    --seed 1 \
    --no-color "$@"
}
echo "==== schemathesis with the project's API key ===="
run_schemathesis --header "X-API-Key: $WAGATE_API_KEY" "$@"
AUTHED=$?
echo "==== schemathesis without credentials ===="
run_schemathesis "$@"
UNAUTHED=$?
[[ $AUTHED == 0 && $UNAUTHED == 0 ]]
