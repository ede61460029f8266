"""Connections by (environment, integration, id), decrypted, kept in each gateway replica's memory.

``GET /connection`` is the hottest path and a database read is most of its cost; this cache takes
that read away without ever serving credentials older than a write that has been acknowledged.

How it stays coherent across replicas:

- Every replica listens on a queue of its own, bound to the event stream for ``connection.*`` and
  ``token.*``: each event about a connection drops that connection's entry here. Writers publish
  those events through the outbox; a gateway that changes a connection answers its caller only
  once the broker has confirmed the event (``OutboxRelay.drained``), so by the time a write is
  acknowledged its event sits in every replica's queue.
- A read that finds an entry first waits for a **barrier**: a marker this replica sends to its own
  queue. Queues are first in, first out, so when the marker comes back every event enqueued
  before the read began has been handled. Reads arriving together share one marker, so the cost is
  one broker round trip per batch, not per read.
- A read that misses goes to the database, which is current, and keeps the answer only if no
  event was handled meanwhile (a generation counter), so a slow read cannot store what an event
  just dropped.
- Without a working queue (broker down, channel closed, reconnecting) events may be missed: the
  cache empties itself and every read goes to the database until a barrier succeeds again.
- Entries also expire after ``max_age`` seconds whatever happens, so a path nobody foresaw (a
  writer that bypasses the event stream, a database that answers a read with an older snapshot)
  costs seconds of staleness at most, never an indefinitely stale token.
- An entry read in the last quarter of its life is reloaded in the background while it goes on
  answering (refresh ahead): a connection in steady use never misses, so the expiry costs no
  request a database round trip, and entries filled together do not all miss together later.
- At most one barrier marker is in flight: reads that arrive while one is out share the next,
  sent the moment it returns. A read waits two broker round trips at worst, and the broker sees
  one marker per round trip however busy the replica is. It never waits past its request's
  deadline either (``KEYWAY_REQUEST_DEADLINE_SECONDS``): a barrier that has not come back by then
  has failed, and the read goes to the database.
- A hit takes none of the replica's database slots (``http/load_shedding``); a miss takes one for its read.
- A write whose event the broker did not confirm before its request's deadline is answered all the
  same (``operations.connections.written_and_announced``): then this promise is bounded instead of kept; see there.

Callers must not mutate the connection they get: it is shared with later reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aiohttp import web
from prometheus_client import Counter

from keyway_shared.bus import declare_events_exchange
from keyway_shared.deadline import remaining
from keyway_shared.logging import get_logger
from keyway_shared.service import BROKER
from keyway_shared.store import Connection

from .http.load_shedding import database_work
from .settings import GatewaySettings

__all__ = ["CONNECTION_CACHE", "ConnectionCache", "connection_cache_context"]

log = get_logger(__name__)
LOOKUPS = Counter("keyway_connection_cache_lookups_total", "Connection reads by cache outcome", ["outcome"])
BARRIER_MARKER = "keyway-cache-barrier"
ROUTING_KEYS = ("connection.*", "token.*")
# Share of an entry's life after which a read reloads it in the background. Later means fewer
# reloads (a hot entry costs one database read per 3/4 of max_age, against one per max_age when it
# simply expires); earlier leaves more time for the reload to land before the entry expires.
RELOAD_AFTER = 0.75

Slot = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class _Entry:
    expires_at: float  # time.monotonic(): not served after this
    reload_at: float  # read after this → reloaded in the background
    connection: Connection


class ConnectionCache:
    def __init__(self, *, max_entries: int, max_age: float = 5.0, barrier_timeout: float = 1.0) -> None:
        self._max = max_entries
        self._max_age = max_age
        self._barrier_timeout = barrier_timeout
        self._entries: OrderedDict[Slot, _Entry] = OrderedDict()
        self._reloading: set[Slot] = set()
        self._generation = 0
        self._live = False
        self._channel: AbstractChannel | None = None
        self._queue_name = ""
        self._markers = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._gathering: asyncio.Future[None] | None = None
        self._marker_out = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def live(self) -> bool:
        return self._live and self._max > 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(
        self, environment: str, key: str, connection_id: str, load: Callable[[], Awaitable[Connection | None]]
    ) -> Connection | None:
        slot = (environment, key, connection_id)
        if self.live and self._fresh(slot) and await self._barrier():
            hit = self._entries.get(slot)  # an event handled during the barrier may have dropped it
            if hit is not None:
                self._entries.move_to_end(slot)
                LOOKUPS.labels(outcome="hit").inc()
                if hit.reload_at <= time.monotonic() and slot not in self._reloading:
                    self._reload_soon(slot, load)
                return hit.connection
        async with database_work():
            connection = await self._load(slot, load)
        LOOKUPS.labels(outcome="miss").inc()
        return connection

    async def _load(self, slot: Slot, load: Callable[[], Awaitable[Connection | None]]) -> Connection | None:
        generation = self._generation
        connection = await load()
        # Kept only if no event was handled meanwhile: the answer may predate what the event announced.
        if connection is not None and self.live and self._generation == generation:
            now = time.monotonic()
            self._entries[slot] = _Entry(
                expires_at=now + self._max_age, reload_at=now + self._max_age * RELOAD_AFTER, connection=connection
            )
            self._entries.move_to_end(slot)
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return connection

    def _reload_soon(self, slot: Slot, load: Callable[[], Awaitable[Connection | None]]) -> None:
        self._reloading.add(slot)

        async def reload() -> None:
            try:
                await self._load(slot, load)
            except Exception as exc:  # the entry expires as usual; the next read after that loads it
                log.debug("connection cache reload failed", error=exc.__class__.__name__)
            finally:
                self._reloading.discard(slot)

        self._spawn(reload())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fresh(self, slot: Slot) -> bool:
        entry = self._entries.get(slot)
        if entry is None:
            return False
        if entry.expires_at <= time.monotonic():
            del self._entries[slot]
            return False
        return True

    def drop(self, environment: str, key: str, connection_id: str) -> None:
        self._generation += 1
        self._entries.pop((environment, key, connection_id), None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    # -- the queue -----------------------------------------------------------------------------

    async def attach(self, connection: AbstractRobustConnection, *, events_exchange: str, prefix: str) -> None:
        """Declare this replica's queue and start consuming; called once the broker is reachable.

        The broker link runs it again if it fails: a failed try closes its channel, so no
        half-declared one is left open (and restored by every reconnection).
        """
        channel = await connection.channel(publisher_confirms=False)
        try:
            queue_name = f"{prefix}.auth-gateway.connection-cache.{uuid.uuid4().hex[:12]}"
            exchange = await declare_events_exchange(channel, events_exchange)
            queue: AbstractQueue = await channel.declare_queue(
                queue_name, exclusive=True, auto_delete=True, arguments={"x-queue-type": "classic"}
            )
            for routing_key in ROUTING_KEYS:
                await queue.bind(exchange, routing_key=routing_key)
            await queue.consume(self._on_message, no_ack=True)
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        self._channel = channel
        self._queue_name = queue_name
        channel.close_callbacks.add(self._on_lost)
        connection.close_callbacks.add(self._on_lost)
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._go_live_soon()

    def _on_lost(self, *_args: Any) -> None:
        if self._live:
            log.warning("connection cache off until the broker is back")
        self._live = False
        self.clear()

    def _on_reconnect(self, *_args: Any) -> None:
        self.clear()  # events may have been missed while disconnected
        self._go_live_soon()

    def _go_live_soon(self) -> None:
        self._spawn(self._go_live())

    async def _go_live(self) -> None:
        # Live only once a marker made the round trip: the queue is bound and consumed.
        for _ in range(30):
            if await self._round_trip():
                self.clear()
                self._live = True
                return
            await asyncio.sleep(1)
        log.warning("connection cache stays off: its queue does not answer")

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # Nothing awaited on purpose: each message is handled whole, strictly in queue order.
        marker = (message.headers or {}).get(BARRIER_MARKER)
        if marker is not None:
            waiter = self._waiting.pop(str(marker), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        try:
            event = json.loads(message.body)
            key, _, connection_id = str(event["subject"]).partition("/")
            self.drop(str(event["environment"]), key, connection_id)
        except (ValueError, KeyError, TypeError):
            self.clear()  # an event about some connection that cannot be told which: drop them all

    async def _barrier(self) -> bool:
        """Every event enqueued before this call has been handled (True), or the cache is unusable."""
        if self._gathering is None:
            self._gathering = asyncio.get_running_loop().create_future()
            if not self._marker_out:
                # Reads arriving in this same turn of the loop share the marker sent at its end.
                asyncio.get_running_loop().call_soon(self._send_marker)
        gathering = self._gathering
        # The markers' own deadlines (see _publish_marker) bound this wait to two of them; shield
        # keeps one cancelled read from cancelling the future the others share.
        worst = 2 * self._barrier_timeout
        patience = remaining(worst)
        try:
            if patience < worst:  # the request's deadline comes first (no timer on the usual path)
                await asyncio.wait_for(asyncio.shield(gathering), timeout=patience)
            else:
                await asyncio.shield(gathering)
            return True
        except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
            LOOKUPS.labels(outcome="barrier_failed").inc()
            return False

    def _send_marker(self) -> None:
        gathering, self._gathering = self._gathering, None
        if gathering is None:
            return
        self._marker_out = True
        gathering.add_done_callback(self._marker_back)
        self._spawn(self._publish_marker(gathering))

    def _marker_back(self, _done: asyncio.Future[None]) -> None:
        self._marker_out = False
        if self._gathering is not None:  # reads waited for this one to come back: their turn
            self._send_marker()

    async def _publish_marker(self, done: asyncio.Future[None]) -> None:
        marker = str(next(self._markers))
        self._waiting[marker] = done

        def expire() -> None:  # a marker lost with its channel must not hold its readers forever
            self._waiting.pop(marker, None)
            if not done.done():
                done.set_exception(TimeoutError("barrier marker did not come back"))

        deadline = asyncio.get_running_loop().call_later(self._barrier_timeout, expire)
        done.add_done_callback(lambda _f: deadline.cancel())
        try:
            if self._channel is None:
                raise RuntimeError("no channel")
            message = aio_pika.Message(b"", headers={BARRIER_MARKER: marker})
            await self._channel.default_exchange.publish(message, routing_key=self._queue_name)
        except Exception as exc:
            self._waiting.pop(marker, None)
            if not done.done():
                done.set_exception(RuntimeError(f"barrier not sent: {exc.__class__.__name__}"))

    async def _round_trip(self) -> bool:
        done = asyncio.get_running_loop().create_future()
        await self._publish_marker(done)
        try:
            await asyncio.wait_for(done, timeout=self._barrier_timeout)
            return True
        except Exception:
            return False

    async def close(self) -> None:
        self._live = False
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            if self._channel is not None:
                await self._channel.close()


CONNECTION_CACHE = web.AppKey("connection_cache", ConnectionCache)


def connection_cache_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        cache = ConnectionCache(
            max_entries=settings.connection_cache_entries, max_age=settings.connection_cache_seconds
        )
        app[CONNECTION_CACHE] = cache
        if settings.connection_cache_entries > 0:

            async def attach(connection: AbstractRobustConnection) -> None:
                await cache.attach(connection, events_exchange=settings.events_exchange, prefix=settings.bus_namespace)

            app[BROKER].on_connect(attach)
        yield
        await cache.close()

    return ctx
