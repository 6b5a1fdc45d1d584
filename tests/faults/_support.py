"""What the fault scripts share beyond bench/crash_ingest.py's helpers."""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from crash_ingest import TestFailure  # noqa: E402


def debian_binary(name, package=None, log=print):
    """The path of `name`, installed from Debian's packages first when missing."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    log(f"installing {package or name} from Debian's packages")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, capture_output=True)
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", package or name], check=True,
                   capture_output=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return shutil.which(name) or f"/usr/sbin/{name}"


def fault_arguments(doc):
    """The arguments every fault script takes (run.sh passes --bin and --backend)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the wagate binary")
    p.add_argument("--backend", choices=["sqlite", "postgres"], required=True)
    p.add_argument("--pg-url", default=os.environ.get("WAGATE_TEST_POSTGRES_URL",
                                                      "postgres://postgres@127.0.0.1:5432/postgres"))
    return p


def clean_up(args, work, pg_db, ok, psql):
    """Drops the run's database and folder, or keeps both (--keep, or FAULTS_KEEP_ON_FAILURE=1
    after a failure) and says where."""
    if args.keep or (not ok and os.environ.get("FAULTS_KEEP_ON_FAILURE")):
        print(f"kept {work}" + (f" and database {pg_db}" if pg_db else ""), file=sys.stderr)
        return
    if pg_db:
        try:
            psql(args.pg_url, f"drop database if exists {pg_db} with (force)")
        except Exception as e:  # noqa: BLE001
            print(f"warning: could not drop {pg_db}: {e}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


def connect_number(http_request, port, key, pnid, waba, token, destination=None):
    """Connects a number through the Platform API (201, else the script fails)."""
    number = {"phone_number_id": pnid, "business_account_id": waba, "access_token": token}
    if destination:
        number["webhook_destination_url"] = destination
    status, body = http_request(port, "POST", "/platform/v1/whatsapp/phone_numbers",
                                body=json.dumps({"whatsapp_phone_number": number}),
                                headers={"X-API-Key": key, "Content-Type": "application/json"},
                                timeout=10)
    if status != 201:
        raise TestFailure(f"connecting the number answered {status}: {body[:300]!r}")


def skipped_unless(args, backend, test, why):
    """True (after printing the figures line) when this run is not for `backend`."""
    if args.backend == backend:
        return False
    print(json.dumps({"test": test, "backend": args.backend, "skipped": why}))
    return True
