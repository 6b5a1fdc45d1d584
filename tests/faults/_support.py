"""What the fault scripts share beyond bench/crash_ingest.py's helpers."""
import os
import shutil
import subprocess


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
