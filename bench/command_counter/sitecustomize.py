"""Counts every MongoDB command a process sends, for ``bench_imports.py`` (loaded only through its PYTHONPATH).

Python imports ``sitecustomize`` at start-up from ``sys.path``: the benchmark puts this directory
first on a service's ``PYTHONPATH``, and the listener registered here (PyMongo's global command
monitoring) sees every client the service opens. Counts by command name and collection, and the
microseconds those commands took from the client's send to its answer, are written to
``$KEYWAY_BENCH_COMMAND_DIR/<pid>.json`` twice a second; the benchmark reads deltas.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

from pymongo import monitoring

_OUT = os.environ.get("KEYWAY_BENCH_COMMAND_DIR")
_SKIP = {"hello", "ismaster", "isMaster", "endSessions", "ping"}  # the driver's own, not the code's


class _Counting(monitoring.CommandListener):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.micros: Counter[str] = Counter()
        self.keys: dict[int, str] = {}  # request id -> its key, until its answer
        self.lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in _SKIP:
            return
        target = event.command.get(name)
        where = target if isinstance(target, str) else ""
        if name in ("commitTransaction", "abortTransaction"):
            where = ""
        key = f"{name} {where}".strip()
        with self.lock:
            self.counts[key] += 1
            self.keys[event.request_id] = key

    def _answered(self, event: monitoring.CommandSucceededEvent | monitoring.CommandFailedEvent) -> None:
        with self.lock:
            key = self.keys.pop(event.request_id, None)
            if key is not None:
                self.micros[key] += event.duration_micros

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._answered(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._answered(event)


if _OUT:
    _listener = _Counting()
    monitoring.register(_listener)
    _path = Path(_OUT) / f"{os.getpid()}.json"

    def _dump() -> None:
        while True:
            time.sleep(0.5)
            with _listener.lock:
                snapshot = {"count": dict(_listener.counts), "micros": dict(_listener.micros)}
            tmp = _path.with_suffix(".tmp")
            tmp.write_text(json.dumps(snapshot))
            tmp.replace(_path)

    threading.Thread(target=_dump, name="bench-command-counter", daemon=True).start()
