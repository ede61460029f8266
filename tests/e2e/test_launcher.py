"""``make up``'s launcher (``deploy/local/up.py``): its gateway replicas share one port, and nothing it
started outlives it, even when it is killed with SIGKILL and has no chance to stop anything itself,
or when the process that started it (``make``) is.

The launcher runs as ``make up`` runs it, on a small configuration: the real broker on 127.0.0.1,
the embedded database on a temporary directory, free ports, a bus namespace of its own.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ..support.procs import ROOT, UP_PORT_VARS, UP_READY_LINE, free_port, free_port_run

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.timeout(300)]


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        children = children_of(todo.pop()) - found
        todo += list(children)
        found |= children
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper has let go of everything and counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def port_free(port: int) -> bool:
    """Whether a new stack could listen there (as servers do, with SO_REUSEADDR: the probes'
    connections in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# What `make up` is to the launcher: a parent that only waits for it.
MAKE_LIKE = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("killed", ["the launcher", "its parent"])
def test_replicas_share_the_gateway_port_and_die_with_a_killed_launcher(
    amqp_url: str, namespace: str, amqp: Any, tmp_path: Path, killed: str
) -> None:
    replicas = 2
    first_ports = {package: free_port_run(replicas) for package in UP_PORT_VARS}
    mongo_port = free_port()
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "KEYWAY_BUS_NAMESPACE": namespace,
        "KEYWAY_DEV_DATA_DIR": str(tmp_path / "data"),
        "KEYWAY_DEV_MONGO_PORT": str(mongo_port),
        "KEYWAY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        **{UP_PORT_VARS[package]: str(port) for package, port in first_ports.items()},
    }
    for name in ("MONGODB_URL", "KEYWAY_PUBLIC_URL", "REPLICAS"):
        env.pop(name, None)
    log_path = tmp_path / "up.log"
    up = [sys.executable, str(ROOT / "deploy" / "local" / "up.py"), "--replicas", str(replicas)]
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(  # the process killed below: the launcher, or its parent
            up if killed == "the launcher" else [sys.executable, "-c", MAKE_LIKE, *up],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 150
        while "Ctrl-C stops everything" not in log_path.read_text(errors="replace"):
            assert launcher.poll() is None, log_path.read_text(errors="replace")[-5000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-5000:]
            time.sleep(0.2)
        text = log_path.read_text(errors="replace").split("all services ready", 1)[1]
        started: dict[str, list[tuple[int, int]]] = {}
        for package, port, pid in UP_READY_LINE.findall(text):
            started.setdefault(package, []).append((int(port), int(pid)))

        # Both gateway replicas on the one gateway port, each consumer replica on a port of its own.
        gateway_port = first_ports["auth_gateway"]
        assert [port for port, _pid in started["auth_gateway"]] == [gateway_port] * replicas
        assert f"http://127.0.0.1:{gateway_port}   <- point your app and SDKs here" in text
        for package in ("activity_log", "webhook_dispatcher", "token_refresher"):
            assert [port for port, _pid in started[package]] == [first_ports[package] + i for i in range(replicas)]
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway_port}/readyz", timeout=5) as resp:
            assert resp.status == 200

        children = descendants(launcher.pid)
        if killed == "its parent":  # the launcher is the one child of the make-like parent
            [up_pid] = children_of(launcher.pid)
            children = descendants(up_pid) | {up_pid}
        service_pids = {pid for replicas_of in started.values() for _port, pid in replicas_of}
        assert service_pids < children  # and the embedded database (and the launcher, killing its parent)
        assert len(children) == len(service_pids) + (1 if killed == "the launcher" else 2), (children, service_pids)
        ports = [mongo_port, gateway_port] + [
            first_ports[package] + i for package in UP_PORT_VARS if package != "auth_gateway" for i in range(replicas)
        ]
        assert not any(port_free(port) for port in ports)

        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        killed_at = time.monotonic()
        while any(alive(pid) for pid in children) and time.monotonic() < killed_at + 20:
            time.sleep(0.1)
        took = time.monotonic() - killed_at
        assert not [pid for pid in children if alive(pid)], f"still running {took:.1f} s after {killed} died"
        assert took < 15, f"the children took {took:.1f} s to stop"
        assert all(port_free(port) for port in ports), [port for port in ports if not port_free(port)]
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for pid in children:  # whatever outlived it: this test fails, but leaves nothing behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
