"""What a fault test runs around the stack: a webhook receiver that counts, a database it may kill and
start again, a backend that keeps writing, and the record of one fault's recovery."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from .idempotent_writes import Attempt, IdempotentWriter, Write
from .polling import eventually
from .procs import free_port, start_mongo
from .receiver import WebhookReceiver

__all__ = ["CountingReceiver", "Receipt", "Recovery", "RestartableDatabase", "Workload", "summary"]


@dataclass(frozen=True)
class Receipt:
    at: float  # time.monotonic()
    webhook_id: str
    connection_id: str
    operation: str
    status: int  # what the receiver answered


class CountingReceiver(WebhookReceiver):
    """Keeps every POST with its ``webhook-id``; answers ``status`` (a 503 with ``Retry-After: 1``)."""

    def __init__(self) -> None:
        super().__init__()
        self.receipts: list[Receipt] = []

    async def _handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        status = self.status
        self.receipts.append(
            Receipt(
                time.monotonic(),
                request.headers.get("webhook-id", ""),
                str(body.get("connectionId")),
                str(body.get("operation")),
                status,
            )
        )
        headers = {"Retry-After": "1"} if status == 503 else {}
        return web.Response(status=status, text=f"answered {status}", headers=headers)

    def delivered(self, connection_id: str) -> Receipt | None:
        """The creation webhook of ``connection_id`` that the receiver took (answered 200)."""
        return next(
            (
                r
                for r in self.receipts
                if r.connection_id == connection_id and r.operation == "creation" and r.status == 200
            ),
            None,
        )

    def creation_ids(self) -> dict[str, set[str]]:
        """Connection id -> every ``webhook-id`` its creation webhooks carried."""
        ids: dict[str, set[str]] = {}
        for receipt in self.receipts:
            if receipt.operation == "creation":
                ids.setdefault(receipt.connection_id, set()).add(receipt.webhook_id)
        return ids


class RestartableDatabase:
    """The embedded MongoDB-wire server on a data directory and port of its own, so a test may SIGKILL
    it and start it again where it was."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Returns once it listens (in a thread: the caller's loop may be carrying links meanwhile)."""
        self.proc, _ = await asyncio.to_thread(start_mongo, self.data_dir, port=self.port)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(self.proc.wait)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 30)


class Workload:
    """``workers`` backends in a loop, each write through ``writer``: create a connection, replace the
    metadata of every second one (``{"n": round}``), delete every third."""

    def __init__(self, writer: IdempotentWriter, integration: str, *, workers: int = 2, pause: float = 0.25) -> None:
        self.writer = writer
        self.integration = integration
        self._workers = workers
        self._pause = pause
        self._go = asyncio.Event()
        self._go.set()
        self._stopping = False
        self._busy = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(i), name=f"workload-{i}") for i in range(self._workers)]

    async def _run(self, worker: int) -> None:
        number = 0
        while True:
            await self._go.wait()
            if self._stopping:
                return
            self._busy += 1
            try:
                await self.round(f"w{worker}-{number}", number)
            finally:
                self._busy -= 1
            number += 1
            await asyncio.sleep(self._pause)

    async def round(self, connection_id: str, number: int) -> None:
        created = await self.create(connection_id)
        if created.succeeded and number % 2 == 0:
            body = {"connection_id": connection_id, "provider_config_key": self.integration, "metadata": {"n": number}}
            await self.writer.write("update", "POST", "/connection/metadata", connection_id=connection_id, body=body)
        if created.succeeded and number % 3 == 0:
            path = f"/connection/{connection_id}?provider_config_key={self.integration}"
            await self.writer.write("delete", "DELETE", path, connection_id=connection_id)

    async def create(self, connection_id: str) -> Write:
        body = {
            "connection_id": connection_id,
            "provider_config_key": self.integration,
            "api_key": f"k-{connection_id}",
        }
        return await self.writer.write("create", "POST", "/connection", connection_id=connection_id, body=body)

    async def pause(self) -> None:
        """Returns when no write is in flight; none starts until ``resume``."""
        self._go.clear()

        async def idle() -> bool:
            return self._busy == 0

        await eventually(idle, timeout=150, interval=0.05, what="the writes in flight to end")

    def resume(self) -> None:
        self._go.set()

    async def stop(self) -> None:
        """Lets the rounds in flight end, and starts no other."""
        self._stopping = True
        self._go.set()
        await asyncio.gather(*self._tasks)


@dataclass
class Recovery:
    """What one fault looked like from outside, and how long it took to get over it (seconds)."""

    fault: str
    broke: float  # time.monotonic()
    healed: float = 0.0
    recovered: float = 0.0
    unready_from_start: bool = False  # the fault was there before the services started
    unready_after: dict[str, float] = field(default_factory=dict)  # break -> first /readyz not 200, per replica
    ready_after: dict[str, float] = field(default_factory=dict)  # heal -> first /readyz 200, per replica
    backlog_after: float | None = None  # heal -> the webhooks that met the fault all delivered
    webhook_after: float = 0.0  # heal -> the creation webhook of a connection created after it
    activity_after: float = 0.0  # heal -> that connection's activity entry
    consumers_after: float = 0.0  # heal -> every work queue has a consumer per live replica
    counters: dict[tuple[str, str], float] = field(default_factory=dict)  # what moved, per service

    def report(self, attempts: list[Attempt]) -> str:
        mine = [a for a in attempts if self.broke <= a.sent < self.recovered]
        failed = [a for a in mine if a.later]
        answered = [a for a in mine if not a.later]
        unready = _spread(self.unready_after) if self.unready_after else "stayed 200"
        if self.unready_from_start:
            unready = "503 from the start"
        lines = [
            f"== {self.fault}" + (f": outage {self.healed - self.broke:.1f} s" if self.healed > self.broke else ""),
            f"   /readyz not 200 after the break: {unready}; 200 again after the heal: {_spread(self.ready_after)}",
            f"   after the heal: a new connection's webhook {self.webhook_after:.1f} s, its activity entry "
            f"{self.activity_after:.1f} s, every queue consumed {self.consumers_after:.1f} s"
            + (f", the backlog delivered {self.backlog_after:.1f} s" if self.backlog_after is not None else ""),
            f"   writes meanwhile: {len(mine)} attempts, {len(failed)} failed ({_statuses(failed)}; "
            f"slowest failure answered in {max((a.elapsed for a in failed), default=0.0):.2f} s, "
            f"slowest other answer {max((a.elapsed for a in answered), default=0.0):.2f} s)",
        ]
        lines.extend(
            f"   {service}: {name} +{value:g}"
            for (service, name), value in self.counters.items()
            if not (name.startswith("keyway_http_requests_total") and 'status="2' in name)
        )
        return "\n".join(lines)


def _spread(seconds: dict[str, float]) -> str:
    if not seconds:
        return "-"
    return f"{min(seconds.values()):.1f}-{max(seconds.values()):.1f} s"


def summary(attempts: list[Attempt]) -> str:
    """Every attempt's answer, counted: what the backend saw over the whole run."""
    return f"{len(attempts)} attempts: {_statuses(attempts)}"


def _statuses(attempts: list[Attempt]) -> str:
    counts: dict[str, int] = {}
    for attempt in attempts:
        label = str(attempt.status) if attempt.status is not None else attempt.failure or "no answer"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n}x {label}" for label, n in sorted(counts.items())) or "none"
