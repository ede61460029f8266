"""Looking at the real RabbitMQ from tests: which queues and exchanges exist, how deep a queue is."""

from __future__ import annotations

import shutil
import subprocess


def _list(kind: str) -> list[str]:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        return []
    out = subprocess.run(
        [tool, "-q", kind, "name", "--no-table-headers"], capture_output=True, text=True, timeout=60, check=False
    )
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def list_queues_and_exchanges(prefix: str) -> tuple[list[str], list[str]]:
    """Names under ``prefix.`` (a test's namespace)."""
    queues = [q for q in _list("list_queues") if q.startswith(prefix + ".")]
    exchanges = [e for e in _list("list_exchanges") if e.startswith(prefix + ".")]
    return queues, exchanges
