#!/usr/bin/env bash
# Runs the whole test suite on SQLite and PostgreSQL. Makes sure a PostgreSQL server is reachable
# first (installing and starting one on Debian when none is), so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${WAGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export WAGATE_TEST_POSTGRES_URL="$PG_URL"
# Without this a PostgreSQL test that finds no server says SKIPPED and passes (so a bare
# `cargo test` runs the SQLite half anywhere); here, and so in CI, it fails instead.
export WAGATE_REQUIRE_POSTGRES=1

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_up; then return; fi
  echo "==> PostgreSQL is not running on 127.0.0.1:5432; starting it"
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "==> installing PostgreSQL from Debian's packages"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Test-only trust auth on loopback, as CI machines are set up.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main restart
  for _ in $(seq 1 30); do pg_up && return; sleep 1; done
  echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
  exit 1
}

ensure_postgres
# Drop databases left by earlier runs (each test creates its own).
psql "$PG_URL" -qAt -c "select datname from pg_database where datname like 'wagate_test_%'" 2>/dev/null |
  while read -r db; do psql "$PG_URL" -q -c "drop database if exists $db" >/dev/null 2>&1 || true; done

# The media vault's suite also runs against a real S3-compatible server process.
source tests/s3/start.sh

status=0
echo "==> Rust tests (unit, API end to end on SQLite and PostgreSQL, emulator)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --all-targets --no-fail-fast "$@" || status=1
else
  cargo test --workspace --all-targets --no-fail-fast "$@" || status=1
fi

cargo build --quiet
export WAGATE_BIN="$PWD/target/debug/wagate"

# Twice each: against `serve --sandbox` (the newcomer's setup), and against `wagate serve` with
# its production defaults (SSRF guard on, verification on) in front of a separate Graph double.
for mode in sandbox serve; do
  echo "==> official Kapso SDKs (JS and Python) against wagate ($mode)"
  WAGATE_MODE=$mode tests/sdk/run.sh || status=1

  echo "==> schemathesis against the OpenAPI document, with and without a key ($mode)"
  WAGATE_MODE=$mode tests/schema/run.sh || status=1
done

echo "==> hosted onboarding page in headless Chromium (simulated Meta sign-in)"
tests/browser/run.sh || status=1

echo "==> crash test: SIGKILL during sustained ingest, then no lost or duplicated event"
for backend in sqlite postgres; do
  python3 bench/crash_ingest.py --bin "$WAGATE_BIN" --backend "$backend" --duration 15 --kills 3 || status=1
done

echo "==> fault suite: database down and SIGKILL, PostgreSQL restarts, SQLite disk full, Graph slow,"
echo "    resetting and failing, a flapping receiver, nginx keep-alive and rolling restart, overload"
WAGATE_BIN="$WAGATE_BIN" tests/faults/run.sh || status=1

if [ "$status" -ne 0 ]; then
  echo "test suite FAILED (see above)" >&2
fi
exit "$status"
