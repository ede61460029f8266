"""Each service's resident memory at idle, on the stack ``make up`` starts (issue 19: at most 80 MB each).

    uv run --frozen python bench/idle_rss.py [--replicas 1] [--settle 10]

Runs ``deploy/local/up.py`` as ``make up`` does (the embedded SecantusDB, the real RabbitMQ at
``AMQP_URL``, every service with its default settings) on a temporary data directory, free ports
and a bus namespace of its own; waits until the launcher says every service is ready, lets the stack
idle for ``--settle`` seconds, prints each process's ``VmRSS`` (and ``VmHWM``, its peak) from
``/proc/<pid>/status``, then stops the stack with SIGTERM as Ctrl-C would and deletes the namespace's
queues. Linux only (``/proc``). Exits 1 when a Keyway service is over ``--limit-mb`` (the database,
a development stand-in, is shown but not judged).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import UP_PORT_VARS, UP_READY_LINE, delete_namespace, free_port_run

ROOT = Path(__file__).resolve().parents[1]


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of idling before the reading")
    parser.add_argument("--limit-mb", type=float, default=80.0)
    args = parser.parse_args()
    figures = measure(replicas=args.replicas, settle=args.settle, limit_mb=args.limit_mb)
    if not figures["started"]:
        return 2
    return 1 if figures["over"] else 0


def measure(*, replicas: int = 1, settle: float = 10.0, limit_mb: float = 80.0) -> dict[str, Any]:
    """One reading, printed; ``rss_mb`` by process (a service's replicas: the largest), ``over`` when a
    Keyway service exceeds ``limit_mb``, ``started`` False when the stack did not come up."""
    rss_by_process: dict[str, float] = {}
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    namespace = f"kwbench{uuid.uuid4().hex[:10]}"
    data_dir = Path(tempfile.mkdtemp(prefix="keyway-idle-rss-"))
    env = {
        **os.environ,
        "KEYWAY_DEV_DATA_DIR": str(data_dir),
        "KEYWAY_DEV_MONGO_PORT": str(free_port_run(1)),
        "KEYWAY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KEYWAY_BUS_NAMESPACE": namespace,
        "AMQP_URL": amqp_url,
        **{var: str(free_port_run(replicas)) for var in UP_PORT_VARS.values()},
    }
    for name in ("MONGODB_URL", "KEYWAY_PUBLIC_URL", "REPLICAS"):
        env.pop(name, None)
    log_path = data_dir / "up.log"
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, str(ROOT / "deploy" / "local" / "up.py"), "--replicas", str(replicas)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    over = False
    try:
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything" not in log_path.read_text(errors="replace"):
            if launcher.poll() is not None or time.monotonic() > deadline:
                print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
                return {"started": False, "over": False, "rss_mb": {}, "limit_mb": limit_mb}
            time.sleep(0.2)
        text = log_path.read_text(errors="replace").split("all services ready", 1)[1]
        services = [(package, int(pid)) for package, _port, pid in UP_READY_LINE.findall(text)]
        known = {pid for _package, pid in services}
        database = [("secantusdb", pid) for pid in children(launcher.pid) if pid not in known]
        time.sleep(settle)
        print(f"idle RSS after {settle:g} s, {replicas} replica(s) of each service")
        print(f"  {'process':<20} {'pid':>8} {'VmRSS MB':>9} {'VmHWM MB':>9}")
        for package, pid in services + database:
            rss, hwm = status_kb(pid, "VmRSS") / 1024, status_kb(pid, "VmHWM") / 1024
            rss_by_process[package] = round(max(rss, rss_by_process.get(package, 0.0)), 1)
            mark = ""
            if package != "secantusdb" and rss > limit_mb:
                over, mark = True, f"  over {limit_mb:g} MB"
            print(f"  {package:<20} {pid:>8} {rss:>9.1f} {hwm:>9.1f}{mark}")
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launcher.kill()  # its children get SIGTERM from the kernel (parent-death signal)
                launcher.wait()
        asyncio.run(delete_namespace(amqp_url, namespace))
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"started": True, "over": over, "rss_mb": rss_by_process, "limit_mb": limit_mb}


if __name__ == "__main__":
    sys.exit(main())
