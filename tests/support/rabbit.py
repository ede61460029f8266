"""Looking at the real RabbitMQ from tests: which queues and exchanges a test's namespace left behind.

The management HTTP API answers in milliseconds; ``rabbitmqctl`` (the fallback, when the plugin is
off) takes most of a second per call, which adds up over a suite.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import urllib.request

MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")


def _management_names(kind: str, prefix: str) -> list[str] | None:
    url = f"{MANAGEMENT_URL}/api/{kind}?columns=name"
    credentials = base64.b64encode(b"guest:guest").decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {credentials}"})  # noqa: S310 - local broker
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - the local broker
            return [item["name"] for item in json.load(response) if item["name"].startswith(prefix + ".")]
    except (OSError, ValueError):
        return None


def _ctl_names(kind: str) -> list[str]:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        return []
    out = subprocess.run(
        [tool, "-q", kind, "name", "--no-table-headers"], capture_output=True, text=True, timeout=60, check=False
    )
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def list_queues_and_exchanges(prefix: str) -> tuple[list[str], list[str]]:
    """Names under ``prefix.`` (a test's namespace)."""
    queues = _management_names("queues", prefix)
    exchanges = _management_names("exchanges", prefix)
    if queues is None or exchanges is None:
        queues = [q for q in _ctl_names("list_queues") if q.startswith(prefix + ".")]
        exchanges = [e for e in _ctl_names("list_exchanges") if e.startswith(prefix + ".")]
    return queues, exchanges
