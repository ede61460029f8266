"""Moves events from the outbox to RabbitMQ: at once after each write, and by sweeping stale rows.

The HTTP answer never waits for the broker: a request hands its freshly committed rows to
``publish_soon`` and returns. If the publish fails (broker down), the rows stay in MongoDB and the
sweep loop of any replica publishes them once the broker is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import aio_pika
from aiohttp import web
from prometheus_client import Counter
from pymongo.errors import PyMongoError

from keyway_shared.bus import PublishError
from keyway_shared.logging import get_logger
from keyway_shared.service import BROKER, BrokerLink
from keyway_shared.store import OutboxRow, OutboxStore

from .resources import STORES
from .settings import GatewaySettings

__all__ = ["RELAY", "OutboxRelay", "relay_context"]

log = get_logger(__name__)
EVENTS_PUBLISHED = Counter("keyway_outbox_published_total", "Outbox events confirmed by the broker", ["path"])
PUBLISH_FAILURES = Counter("keyway_outbox_publish_failures_total", "Outbox publishes that failed and wait for a sweep")


def _message(row: OutboxRow) -> aio_pika.Message:
    return aio_pika.Message(
        body=row.body,
        content_type="application/cloudevents+json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=row.event_id,
        type=row.routing_key,
        headers={"ce_id": row.event_id, "ce_type": row.routing_key},
    )


class OutboxRelay:
    def __init__(
        self, outbox: OutboxStore, broker: BrokerLink, *, sweep_every: float, stale_after: float, owner: str
    ) -> None:
        self._outbox = outbox
        self._broker = broker
        self._sweep_every = sweep_every
        self._stale_after = timedelta(seconds=stale_after)
        self._owner = owner
        self._tasks: set[asyncio.Task[int]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def publish_soon(self, rows: list[OutboxRow]) -> None:
        task = asyncio.create_task(self._publish(rows, path="direct"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, rows: list[OutboxRow], *, path: str) -> int:
        publisher = self._broker.publisher
        if publisher is None or not self._broker.is_ready:
            return 0
        done: list[str] = []
        for index, row in enumerate(rows):
            try:
                await publisher.publish_message(_message(row), routing_key=row.routing_key)
            except PublishError:
                PUBLISH_FAILURES.inc()
                log.warning("event left in the outbox for the sweep", event_id=row.event_id, type=row.routing_key)
                # Keep order (later rows wait too) and hand the rows back for the next sweep right away.
                with contextlib.suppress(PyMongoError):
                    await self._outbox.release([r.event_id for r in rows[index:]])
                break
            done.append(row.event_id)
        if done:
            try:
                await self._outbox.delete(done)
            except PyMongoError:
                # Published but not deleted: the sweep publishes them again and consumers skip the duplicate.
                log.warning("published outbox rows could not be deleted", count=len(done))
            EVENTS_PUBLISHED.labels(path=path).inc(len(done))
        return len(done)

    async def sweep_once(self, *, limit: int = 500) -> int:
        if not self._broker.is_ready:
            return 0
        rows = await self._outbox.claim_stale(
            older_than=self._stale_after, lease=timedelta(seconds=30), limit=limit, owner=self._owner
        )
        if not rows:
            return 0
        log.info("relaying events left in the outbox", count=len(rows))
        return await self._publish(rows, path="sweep")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_every)
            try:
                while await self.sweep_once() > 0:
                    pass
            except PyMongoError:
                log.warning("outbox sweep could not reach the database")
            except Exception:
                log.exception("outbox sweep failed")

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="outbox-sweep")

    async def stop(self, *, grace: float) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            # In-flight publishes finish or time out; unconfirmed rows stay for the next sweep.
            await asyncio.wait(list(self._tasks), timeout=grace)


RELAY = web.AppKey("outbox_relay", OutboxRelay)


def relay_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        relay = OutboxRelay(
            app[STORES].outbox,
            app[BROKER],
            sweep_every=settings.outbox_sweep_seconds,
            stale_after=settings.outbox_stale_seconds,
            owner=f"{socket.gethostname()}:{os.getpid()}",
        )
        app[RELAY] = relay
        relay.start()
        yield
        await relay.stop(grace=settings.shutdown_grace_seconds)

    return ctx
