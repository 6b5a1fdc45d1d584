#!/usr/bin/env bash
# Runs the fault suite: every tests/faults/*.py (faultproxy.py, a library, and modules starting
# with _ excepted; each takes --bin and --backend), on SQLite and on PostgreSQL, one at a time.
#
#   WAGATE_BIN=target/debug/wagate tests/faults/run.sh
#
# WAGATE_BIN                the wagate binary (default: target/debug/wagate; built if missing)
# WAGATE_TEST_POSTGRES_URL  an administrative database URL; each script creates and drops its own
#                           database next to it (default postgres://postgres@127.0.0.1:5432/postgres)
# BACKENDS                  "sqlite postgres" by default
# ONLY / SKIP               space-separated script names (e.g. ONLY="graph_faults receiver_flap")
# Each script prints one JSON line of figures; a summary follows. Exits 1 if any script failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

BIN=${WAGATE_BIN:-target/debug/wagate}
if [ ! -x "$BIN" ]; then
  echo "==> building wagate (no binary at $BIN)"
  cargo build --quiet --bin wagate || exit 1
  BIN=target/debug/wagate
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
export WAGATE_TEST_POSTGRES_URL=${WAGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BACKENDS=${BACKENDS:-sqlite postgres}
ONLY=${ONLY:-}
SKIP=${SKIP:-}
export PYTHONDONTWRITEBYTECODE=1

scripts=()
for f in tests/faults/*.py; do
  name=$(basename "$f" .py)
  case "$name" in _*|faultproxy) continue ;; esac
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  if [[ " $SKIP " == *" $name "* ]]; then continue; fi
  scripts+=("$f")
done
if [ ${#scripts[@]} -eq 0 ]; then
  echo "no fault scripts selected" >&2
  exit 1
fi

status=0
summary=()
started=$(date +%s)
for f in "${scripts[@]}"; do
  for backend in $BACKENDS; do
    name=$(basename "$f" .py)
    echo "==> $name ($backend)"
    t0=$(date +%s)
    python3 "$f" --bin "$BIN" --backend "$backend"
    rc=$?
    took=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then
      summary+=("pass  $name ($backend) ${took}s")
    else
      summary+=("FAIL  $name ($backend) ${took}s (exit $rc)")
      status=1
    fi
  done
done

echo
echo "fault suite: $(( $(date +%s) - started )) s"
printf '  %s\n' "${summary[@]}"
exit $status
