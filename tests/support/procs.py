"""Starting real processes for tests (the embedded MongoDB, Keyway's services) and stopping them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
