"""Asking every service's ``/readyz`` and ``/healthz`` over and over, as Kubernetes' probes would, and
keeping each answer with when it was asked, so a test can say when readiness flipped and came back.

Each service is asked by a loop of its own: a probe that takes two seconds (a blackholed link)
delays that service's next one only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import aiohttp

__all__ = ["HealthWatch", "Probe"]


@dataclass(frozen=True)
class Probe:
    service: str
    path: str  # /readyz or /healthz
    sent: float  # time.monotonic()
    answered: float
    status: int | None  # None: no answer within the probe's timeout


class HealthWatch:
    """``targets``: a name per service replica and its port. ``start()``, then ``stop()``."""

    def __init__(
        self, http: aiohttp.ClientSession, targets: dict[str, int], *, interval: float = 0.25, timeout: float = 5.0
    ) -> None:
        self._http = http
        self.targets = dict(targets)
        self._interval = interval
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.probes: list[Probe] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        for name in self.targets:
            self._tasks[name] = asyncio.create_task(self._watch(name), name=f"health-watch-{name}")

    async def forget(self, name: str) -> None:
        """Stop asking ``name`` (a replica the test killed); what it answered so far is kept."""
        task = self._tasks.pop(name, None)
        self.targets.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        for name in list(self._tasks):
            await self.forget(name)

    async def _watch(self, name: str) -> None:
        port = self.targets[name]
        while True:
            for path in ("/readyz", "/healthz"):
                self.probes.append(await self._ask(name, port, path))
            await asyncio.sleep(self._interval)

    async def _ask(self, name: str, port: int, path: str) -> Probe:
        sent = time.monotonic()
        status: int | None
        try:
            async with self._http.get(f"http://127.0.0.1:{port}{path}", timeout=self._timeout) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = None
        return Probe(name, path, sent, time.monotonic(), status)

    # -- what the answers say ---------------------------------------------------------------------

    def answers(
        self, name: str, path: str = "/readyz", *, since: float = 0.0, until: float = float("inf")
    ) -> list[Probe]:
        """The answers to probes sent in [since, until)."""
        return [p for p in self.probes if p.service == name and p.path == path and since <= p.sent < until]

    def first_unready(self, name: str, *, since: float, until: float = float("inf")) -> Probe | None:
        """The first ``/readyz`` sent in [since, until) that was not a 200 (a 503, or no answer)."""
        return next((p for p in self.answers(name, since=since, until=until) if p.status != 200), None)

    def first_ready(self, name: str, *, since: float) -> Probe | None:
        """The first ``/readyz`` sent at or after ``since`` that answered 200."""
        return next((p for p in self.answers(name, since=since) if p.status == 200), None)

    def all_unready_since(self, since: float) -> bool:
        return all(self.first_unready(name, since=since) is not None for name in self.targets)

    def all_ready_since(self, since: float) -> bool:
        return all(self.first_ready(name, since=since) is not None for name in self.targets)

    def unhealthy(self) -> list[Probe]:
        """Every ``/healthz`` that was not a 200."""
        return [p for p in self.probes if p.path == "/healthz" and p.status != 200]
