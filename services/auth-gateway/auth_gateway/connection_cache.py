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
  event about that connection was handled meanwhile (``keyway_shared.ttl_cache``'s generation
  check), so a slow read cannot store what an event just dropped. Misses are never shared: each
  reads the database after it arrived.
- Without a working queue (broker down, channel closed, reconnecting) events may be missed: the
  cache empties itself and every read goes to the database until a barrier succeeds again.
- A write that bypasses the event stream yet goes through Keyway's store (the refresher's, a
  second gateway's whose event is late, the dashboard's) sets the connection's ``updated_at``.
  Every ``max_age / 2`` seconds the replica asks the database which connections were stamped
  since its last check (one range read on an index: its cost follows the writes, not the entries
  held, so more entries on more replicas cost no more) and drops the entries whose stamp differs.
  An entry is served only while it was loaded, or a check began, less than ``max_age`` seconds
  ago: checks failing (database away) turn hits into reads. Such a write is seen within ``max_age``.
- A write that leaves no stamp (a raw database edit, a delete behind Keyway's back, a
  ``keyway`` import keeping its source's dates) is bounded by the entry's whole life,
  ``UNTRACED_LIFE * max_age`` (a minute by default): costs a minute of staleness at most, never an
  indefinitely stale token. An entry read in the last quarter of that life is reloaded in the
  background while it goes on answering (refresh ahead): a connection in steady use never misses.
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
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aiohttp import web
from prometheus_client import Counter, Histogram

from keyway_shared.bus import declare_events_exchange
from keyway_shared.bus.frames import FrameBatch, publish_frames
from keyway_shared.clock import SYSTEM_CLOCK, Clock
from keyway_shared.deadline import remaining
from keyway_shared.logging import get_logger
from keyway_shared.service import BROKER
from keyway_shared.store import Connection
from keyway_shared.store.connections import ConnectionStamp
from keyway_shared.ttl_cache import TtlCache

from .http.load_shedding import database_work
from .resources import STORES
from .settings import GatewaySettings

__all__ = ["CONNECTION_CACHE", "ConnectionCache", "connection_cache_context"]

log = get_logger(__name__)
LOOKUPS = Counter("keyway_connection_cache_lookups_total", "Connection reads by cache outcome", ["outcome"])
# What a hit pays for coherence: one or two broker round trips (see _barrier). The buckets reach
# down to what an idle broker on the same host answers in, where a database read would start.
BARRIER_WAIT = Histogram(
    "keyway_connection_cache_barrier_seconds",
    "How long a cached read waited for its barrier marker",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
)
BARRIER_MARKER = "keyway-cache-barrier"
ROUTING_KEYS = ("connection.*", "token.*")
# Share of an entry's life after which a read reloads it in the background. Later means fewer
# reloads (a hot entry costs one database read per 3/4 of its life, against one per life when it
# simply expires); earlier leaves more time for the reload to land before the entry expires.
RELOAD_AFTER = 0.75
# An entry's whole life, in max_age: what bounds a write that leaves no ``updated_at`` stamp. Each
# hot entry costs one database read per 3/4 of it: with max_age 5 s, 1,000 hot connections cost a
# replica 22 reads/s, against 267 when every entry lived max_age (measured: two gateways over 1,000
# connections served 630 req/s, a third of one gateway, since that alone kept the embedded
# database busy).
UNTRACED_LIFE = 12
# How far back each check looks before the previous one began: a stamp is taken before its write
# commits (a write may retry until its request's deadline, 5 s by default), and the writers' clocks
# may differ a little. Each change is read this many seconds' worth of checks, by every replica.
CHECK_OVERLAP = timedelta(seconds=10)
# More changes than this in one check (a mass refresh, a restore) and the replica drops every entry
# instead of reading them all.
CHANGES_PER_CHECK = 1000

Slot = tuple[str, str, str]
ChangedSince = Callable[[datetime, int], Awaitable[list[ConnectionStamp]]]


class ConnectionCache:
    def __init__(
        self,
        *,
        max_entries: int,
        max_age: float = 5.0,
        barrier_timeout: float = 1.0,
        clock: Clock = SYSTEM_CLOCK,
        changed_since: ChangedSince | None = None,
    ) -> None:
        """``changed_since(since, limit)``: the connections stamped since then (None: no checks, so an
        entry answers ``max_age`` seconds after its load at most)."""
        self._max = max_entries
        self._max_age = max_age
        self._barrier_timeout = barrier_timeout
        # Misses are not shared: a miss waits for no barrier, so the event of a write acknowledged
        # just before it arrived may not have been handled yet, and a load that started earlier
        # (which that event would overtake) could answer with what preceded the write.
        self._entries: TtlCache[Slot, Connection | None] = TtlCache(
            ttl=max_age * UNTRACED_LIFE,
            max_entries=max_entries,
            refresh_ahead=RELOAD_AFTER,
            share_loads=False,
            keep=lambda connection: connection is not None and self.live,
            clock=clock,
        )
        self._changed_since = changed_since
        self.checking = True  # False pauses the background checks (tests run check_for_changes themselves)
        self._checked_at = -math.inf  # by the clock: when the last check that succeeded began
        self._check_from: datetime | None = None  # wall clock: where the next check's range starts
        self._era = 0  # bumped when the clock is replaced: a check begun before counts by no clock
        self._live = False
        self._channel: AbstractChannel | None = None
        self._queue_name = ""
        self._markers = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._gathering: asyncio.Future[None] | None = None
        self._marker_out = False
        self._underlay: aiormq.Channel | None = None  # the channel's connection, while live
        self._frames = FrameBatch()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def live(self) -> bool:
        return self._live and self._max > 0

    @property
    def clock(self) -> Clock:
        """What entries' ages are read from (the barrier's timers are the event loop's own)."""
        return self._entries.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._entries.clock = clock
        self._era += 1
        self._checked_at = -math.inf

    def __len__(self) -> int:
        return len(self._entries)

    async def get(
        self, environment: str, key: str, connection_id: str, load: Callable[[], Awaitable[Connection | None]]
    ) -> Connection | None:
        slot = (environment, key, connection_id)
        if self.live and slot in self._entries and await self._barrier():
            # Looked up again: an event handled during the barrier may have dropped it. A hit late in
            # its life is reloaded in the background (no database slot taken: nobody waits for it).
            hit = self._entries.lookup(slot, reload=load)
            if hit is not None and self._checked(hit.expires_at):
                LOOKUPS.labels(outcome="hit").inc()
                return hit.value
        async with database_work():
            # Kept only if no event about it was handled meanwhile: the answer may predate what the
            # event announced.
            connection = await self._entries.load(slot, load)
        LOOKUPS.labels(outcome="miss").inc()
        return connection

    def _checked(self, expires_at: float) -> bool:
        """Loaded, or checked for stamped changes, less than ``max_age`` seconds ago."""
        loaded_at = expires_at - self._max_age * UNTRACED_LIFE
        return max(loaded_at, self._checked_at) + self._max_age > self.clock.monotonic()

    # -- the change checks -----------------------------------------------------------------------

    async def check_for_changes(self) -> bool:
        """Drop the entries whose connection was stamped since the last check; False if the read failed."""
        if self._changed_since is None or self._check_from is None:
            return False
        began, era = self.clock.monotonic(), self._era
        # Real wall time, whatever clock ages the entries: stamps come from the writers' real clocks.
        next_from = SYSTEM_CLOCK.now() - CHECK_OVERLAP
        try:
            stamps = await self._changed_since(self._check_from, CHANGES_PER_CHECK)
        except Exception as exc:  # the database is away: entries stop answering once unchecked for max_age
            log.debug("connection change check failed", error=exc.__class__.__name__)
            return False
        if len(stamps) >= CHANGES_PER_CHECK:
            self.clear()
        for stamp in stamps:
            # An entry whose stamp matches holds that very write; any other is dropped, and a load
            # in flight for it keeps nothing (it may have read the database before the write).
            held = self._entries.lookup(stamp.key)
            if held is None or held.value is None or held.value.updated_at != stamp.updated_at:
                self._entries.drop(stamp.key)
        # Checks may overlap (a test's and the background one's): each covered since..its start.
        if self._check_from is not None:
            self._check_from = max(self._check_from, next_from)
        if era == self._era:  # else its start was read from a clock since replaced
            self._checked_at = max(self._checked_at, began)
        return True

    def start_checking(self) -> None:
        """Check for stamped changes every ``max_age / 2`` seconds, while live, until closed."""
        self._spawn(self._keep_checking())

    async def _keep_checking(self) -> None:
        while True:
            await asyncio.sleep(self._max_age / 2)
            if self.live and self.checking:
                await self.check_for_changes()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def drop(self, environment: str, key: str, connection_id: str) -> None:
        self._entries.drop((environment, key, connection_id))

    def clear(self) -> None:
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
        self._underlay = None
        if self._live:
            log.warning("connection cache off until the broker is back")
        self._live = False
        self.clear()

    def _on_reconnect(self, *_args: Any) -> None:
        self._underlay = None  # a new one comes with the round trip that makes the cache live again
        self.clear()  # events may have been missed while disconnected
        self._go_live_soon()

    def _go_live_soon(self) -> None:
        self._spawn(self._go_live())

    async def _go_live(self) -> None:
        # Live only once a marker made the round trip: the queue is bound and consumed.
        for _ in range(30):
            if await self._round_trip():
                self._underlay = await self._underlay_of(self._channel)
                self.clear()
                # Nothing held was checked: the checks' range starts now (less the overlap).
                self._check_from = SYSTEM_CLOCK.now() - CHECK_OVERLAP
                self._checked_at = -math.inf
                self._live = True
                return
            await asyncio.sleep(1)
        log.warning("connection cache stays off: its queue does not answer")

    @staticmethod
    async def _underlay_of(channel: AbstractChannel | None) -> aiormq.Channel | None:
        try:
            underlay = await channel.get_underlay_channel() if channel is not None else None
        except aiormq.exceptions.AMQPError:
            return None  # closed meanwhile: markers go through aio-pika until the next round trip
        return underlay if isinstance(underlay, aiormq.Channel) else None

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
        began = asyncio.get_running_loop().time()
        try:
            if patience < worst:  # the request's deadline comes first (no timer on the usual path)
                await asyncio.wait_for(asyncio.shield(gathering), timeout=patience)
            else:
                await asyncio.shield(gathering)
            BARRIER_WAIT.observe(asyncio.get_running_loop().time() - began)
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
        marker = self._await_marker(gathering)
        if not self._write_marker(marker):
            self._spawn(self._publish_marker(marker, gathering))

    def _marker_back(self, _done: asyncio.Future[None]) -> None:
        self._marker_out = False
        if self._gathering is not None:  # reads waited for this one to come back: their turn
            self._send_marker()

    def _await_marker(self, done: asyncio.Future[None]) -> str:
        """A new marker whose return completes ``done``, or whose loss fails it after the timeout."""
        marker = str(next(self._markers))
        self._waiting[marker] = done

        def expire() -> None:  # a marker lost with its channel must not hold its readers forever
            self._waiting.pop(marker, None)
            if not done.done():
                done.set_exception(TimeoutError("barrier marker did not come back"))

        deadline = asyncio.get_running_loop().call_later(self._barrier_timeout, expire)
        done.add_done_callback(lambda _f: deadline.cancel())
        return marker

    def _write_marker(self, marker: str) -> bool:
        """The marker as AMQP frames, written with this loop turn's (``keyway_shared.bus.frames``):
        no task, no channel lock and no encoder between the reads and the broker, which take about
        a third of a barrier's loop turns. False when the channel's connection is not at hand (not
        live yet, or reconnecting): then aio-pika publishes it."""
        underlay = self._underlay
        if underlay is None or underlay.is_closed:
            return False
        frames = publish_frames(
            underlay.number,
            exchange="",
            routing_key=self._queue_name,
            body=b"",
            content_type="application/octet-stream",
            headers={BARRIER_MARKER: marker},
            delivery_mode=1,  # transient: it lives for one round trip
            message_id=marker,
            timestamp=SYSTEM_CLOCK.now(),
            message_type=BARRIER_MARKER,
        )
        try:
            self._frames.add(underlay, frames)
        except aiormq.exceptions.ChannelInvalidStateError:
            return False
        return True

    async def _publish_marker(self, marker: str, done: asyncio.Future[None]) -> None:
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
        await self._publish_marker(self._await_marker(done), done)
        try:
            await asyncio.wait_for(done, timeout=self._barrier_timeout)
            return True
        except Exception:
            return False

    async def close(self) -> None:
        self._live = False
        self._entries.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            if self._channel is not None:
                await self._channel.close()


CONNECTION_CACHE = web.AppKey("connection_cache", ConnectionCache)


def connection_cache_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        cache = ConnectionCache(
            max_entries=settings.connection_cache_entries,
            max_age=settings.connection_cache_seconds,
            changed_since=lambda since, limit: app[STORES].connections.changed_since(since, limit=limit),
        )
        app[CONNECTION_CACHE] = cache
        if settings.connection_cache_entries > 0:
            cache.start_checking()

            async def attach(connection: AbstractRobustConnection) -> None:
                await cache.attach(connection, events_exchange=settings.events_exchange, prefix=settings.bus_namespace)

            app[BROKER].on_connect(attach)
        yield
        await cache.close()

    return ctx
