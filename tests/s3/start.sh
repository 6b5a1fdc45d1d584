# Sourced by scripts/test.sh: starts moto's S3-compatible server (pinned in requirements.txt,
# installed into tests/s3/.venv on first use) on a free loopback port, creates the bucket the
# media vault tests use, and exports what they read. Stopped when the sourcing shell exits.
S3_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$S3_ROOT/tests/lib/sandbox.sh"
pinned_venv "$S3_ROOT/tests/s3"
S3_PORT=$(free_port)
S3_LOG=$(mktemp "${TMPDIR:-/tmp}/wagate-s3.XXXXXX")
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$S3_LOG" 2>&1 &
S3_PID=$!
trap 'kill "$S3_PID" 2>/dev/null' EXIT
for _ in $(seq 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$S3_PORT/" && break
  sleep 0.1
done
if ! curl -fs -o /dev/null -X PUT "http://127.0.0.1:$S3_PORT/wagate-test"; then
  echo "the S3-compatible test server did not start:" >&2
  cat "$S3_LOG" >&2
  exit 1
fi
export WAGATE_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" WAGATE_REQUIRE_S3=1
export AWS_ACCESS_KEY_ID=wagate-test AWS_SECRET_ACCESS_KEY=wagate-test AWS_REGION=us-east-1
echo "==> S3-compatible server (moto) on $WAGATE_TEST_S3_ENDPOINT, bucket wagate-test"
