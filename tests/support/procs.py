"""Starting real processes for tests (the embedded MongoDB, Keyway's services) and stopping them."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _launcher_services() -> list[tuple[str, str, int]]:
    """deploy/local/up.py's SERVICES: (package, the variable setting its first port, default port)."""
    spec = importlib.util.spec_from_file_location("keyway_local_up", ROOT / "deploy" / "local" / "up.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # definitions only: it starts the stack under __main__ alone
    return list(module.SERVICES)


# deploy/local/up.py's contract with whatever starts it: the variable setting each service's first
# port, and the line it prints for each ready process (package, port, pid) before "Ctrl-C stops
# everything".
UP_PORT_VARS = {package: port_var for package, port_var, _default in _launcher_services()}
UP_READY_LINE = re.compile(r"^\s+(\w+)\s+http://127\.0\.0\.1:(\d+)\s.*\bpid (\d+)[ \t]*$", re.MULTILINE)


# Ports handed to processes come from below the kernel's ephemeral range. A port from inside it
# (what binding port 0 gives), free when probed, may be taken a moment later as the source port of
# any outgoing connection (a starting service opens dozens: database pools, the broker link) before
# the process it was meant for binds it: seen as a gateway's "address already in use" while its
# stack started. Below the range only a listener can take it, and every listener of this suite
# gets its port from here, where handed-out ports are not handed out again for a while.
_LOWEST_PORT = 20000
_handed_out: dict[int, float] = {}  # port -> when it was handed out (monotonic)
_HANDED_OUT_FOR = 600.0  # seconds a handed-out port stays reserved for the process it went to


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _bindable(port: int) -> bool:
    """Nobody listens on ``port`` on any address: services bind 0.0.0.0 or 127.0.0.1."""
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port_run(count: int = 1) -> int:
    """A first port p with p .. p+count-1 all free, outside the ephemeral range, and none of them
    handed out by this process in the last ten minutes (a service's replicas take consecutive ports)."""
    low, high = _ephemeral_ports()
    # Below the range when it leaves room (Linux's default does), else above it.
    start, stop = (_LOWEST_PORT, low) if low - _LOWEST_PORT > 1000 else (high + 1, 65536)
    now = time.monotonic()
    for port, when in list(_handed_out.items()):
        if now - when > _HANDED_OUT_FOR:
            del _handed_out[port]
    for _ in range(500):
        first = random.randrange(start, stop - count + 1)
        run = range(first, first + count)
        if any(port in _handed_out for port in run) or not all(_bindable(port) for port in run):
            continue
        _handed_out.update(dict.fromkeys(run, now))
        return first
    raise RuntimeError(f"no {count} consecutive free ports between {start} and {stop}")


def free_port() -> int:
    return free_port_run(1)


def wait_for_port(port: int, *, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def start_mongo(
    data_dir: Path, *, port: int | None = None, ttl_sweep_seconds: float = 60, standalone: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """The embedded server on ``port`` (a free one by default); its process and URL.

    The TTL sweep runs every minute, as MongoDB's TTL monitor does. No test waits for it, and the
    embedded server's sweep reads every document of every collection with a TTL index while holding
    its storage lock: a one-second sweep over the suite's databases costs everything else time.
    """
    port = port or free_port()
    log = open(data_dir.parent / f"mongo-{port}.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "deploy" / "local" / "run_mongo.py"),
            str(port),
            str(data_dir),
            str(ttl_sweep_seconds),
            *(["standalone"] if standalone else []),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, proc=proc)
    return proc, f"mongodb://127.0.0.1:{port}/?retryWrites=false"


class ServiceProcess:
    """One Keyway service started with ``python -m <package>``, its output kept in a log file."""

    def __init__(self, package: str, env: Mapping[str, str], *, log_dir: Path, port: int | None = None) -> None:
        self.package = package
        self.port = port
        self.log_path = log_dir / f"{package}-{port or 'x'}-{time.monotonic_ns()}.log"
        self._env = {**os.environ, **env, "KEYWAY_LOG_JSON": "true", "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([sys.executable, "-m", self.package], env=self._env, stdout=log, stderr=log)
        if self.port:
            wait_for_port(self.port, proc=self.proc)
        return self

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, *, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
