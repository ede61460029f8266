"""What the benchmarks share: the embedded MongoDB, the RabbitMQ check, unique names, percentiles, tables.

Benchmarks run from ``bench/`` as scripts, so this module puts the repository root on ``sys.path``
to reuse the test suite's process helpers (``tests/support/procs.py``) instead of copying them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.cpu_limit import cpu_limit_unavailable, cpu_limited  # noqa: E402 - needs ROOT above
from tests.support.procs import (  # noqa: E402 - needs ROOT above
    UP_PORT_VARS,
    UP_READY_LINE,
    ServiceProcess,
    free_port,
    free_port_run,
    start_mongo,
    wait_for_port,
)
from tests.support.rabbit import list_queues_and_exchanges  # noqa: E402 - needs ROOT above

__all__ = [
    "BENCH",
    "ROOT",
    "UP_PORT_VARS",
    "UP_READY_LINE",
    "MongoServer",
    "ServiceProcess",
    "amqp_url",
    "check_rabbitmq",
    "children_cpu_seconds",
    "cpu_limit_unavailable",
    "cpu_limited",
    "cpu_seconds",
    "delete_namespace",
    "ensure_wrk",
    "find_pid",
    "free_port",
    "free_port_run",
    "latency_ms",
    "list_queues_and_exchanges",
    "listening_pids",
    "machine_info",
    "mongo_server",
    "percentile",
    "print_table",
    "ratio",
    "unique",
    "wait_for_port",
]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def amqp_url() -> str:
    return os.environ.get("AMQP_URL", DEFAULT_AMQP_URL)


async def delete_namespace(amqp: str, namespace: str) -> None:
    """Delete a bench's queues and exchanges, everything named ``namespace.…``: quorum queues outlive
    their consumers, and idle ones left by earlier runs cost RabbitMQ CPU in the next run's figures."""
    import aio_pika  # here: the benches that never touch the broker do not pay for the import

    queues, exchanges = list_queues_and_exchanges(namespace)
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel()
        for name in queues:
            await channel.queue_delete(name)
        for name in exchanges:
            await channel.exchange_delete(name)
    finally:
        await connection.close()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class MongoServer:
    url: str
    pid: int | None  # None when MONGODB_URL points at a server we did not start
    embedded: bool


@contextlib.contextmanager
def mongo_server(*, ttl_sweep_seconds: float = 60, standalone: bool = False) -> Iterator[MongoServer]:
    """``MONGODB_URL`` when set, else the embedded SecantusDB on a free port and a temporary data dir.

    The embedded server's TTL sweep reads every document of every collection with a TTL index
    (MongoDB's reads the index): a benchmark that writes tens of thousands of such documents asks
    for a rare sweep, or it measures the sweep instead of Keyway.
    """
    configured = os.environ.get("MONGODB_URL")
    if configured:
        yield MongoServer(url=configured, pid=None, embedded=False)
        return
    with tempfile.TemporaryDirectory(prefix="kwbench-mongo-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        proc, url = start_mongo(data_dir, ttl_sweep_seconds=ttl_sweep_seconds, standalone=standalone)
        try:
            yield MongoServer(url=url, pid=proc.pid, embedded=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)  # it checkpoints WiredTiger on SIGTERM: 2-4 s
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def check_rabbitmq(url: str) -> None:
    """Exit with a clear message when RabbitMQ does not answer: every benchmark needs it."""
    import aio_pika

    try:
        connection = await aio_pika.connect(url, timeout=5)
    except Exception as exc:
        raise SystemExit(
            f"RabbitMQ does not answer at {url} ({exc.__class__.__name__}: {exc}); start it first"
        ) from exc
    await connection.close()


def ensure_wrk(*, install: bool = True) -> str | None:
    """The path of ``wrk``, installing the Debian package first when we are root and it is missing."""
    found = shutil.which("wrk")
    if found or not install or not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"]):
        print(f"  wrk is missing; running {' '.join(command)}", flush=True)
        try:
            subprocess.run(command, env=env, check=False, timeout=300, capture_output=True)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if shutil.which("wrk"):
            return shutil.which("wrk")
    # The index was stale on a fresh machine: install once more after the update.
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, timeout=300, capture_output=True
        )
    return shutil.which("wrk")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time a live process has used so far (Linux ``/proc``), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_pid(command_name: str) -> int | None:
    """The pid of a process by its command name (``/proc/<pid>/comm``), e.g. RabbitMQ's ``beam.smp``."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == command_name:
                return int(comm.parent.name)
    return None


def listening_pids(port: int) -> set[int]:
    """The processes holding a TCP socket that listens on ``port`` (Linux ``/proc``; several with
    SO_REUSEPORT, as ``make up REPLICAS=n`` runs the gateway), empty when none is visible."""
    inodes: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        with contextlib.suppress(OSError):
            for line in table.read_text().splitlines()[1:]:
                fields = line.split()
                # local address "ADDR:PORT" in hex, state 0A = LISTEN, inode in the tenth column
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    found: set[int] = set()
    if not inodes:
        return found
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        found.add(int(fd_dir.parent.name))
                        break
    return found


def children_cpu_seconds() -> float:
    """CPU time of the child processes this process has waited for (e.g. a finished load generator)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from ``/proc/stat``, in clock ticks."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def machine_busy(before: tuple[int, int]) -> float:
    """Cores the whole machine kept busy since ``before`` (every process, not only ours)."""
    busy, total = machine_jiffies()
    if total == before[1]:
        return float("nan")
    return round((busy - before[0]) / (total - before[1]) * (os.cpu_count() or 1), 2)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; ``values`` need not be sorted."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "p90_ms": round(percentile(ordered, 90) * 1000, 3),
        "p99_ms": round(percentile(ordered, 99) * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3) if ordered else float("nan"),
    }


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print(
            "  "
            + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
        if index == 0:
            print("  " + "  ".join("-" * w for w in widths))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
