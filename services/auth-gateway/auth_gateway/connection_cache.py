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
  before the read began has been handled. Reads arriving in one turn of the event loop share one
  marker, written at the turn's end, so the cost is one broker round trip per batch, not per read.
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
- Markers are pipelined: a turn with new reads sends its own marker even while earlier ones are
  out, so a read waits one broker round trip, not the rest of the one in flight and then its own.
  A read never waits past its request's deadline (``KEYWAY_REQUEST_DEADLINE_SECONDS``) nor past
  its marker's timeout: a barrier that has not come back by then has failed, and the read goes to
  the database.
- The queue is consumed through aiormq, not aio-pika: a delivery is handled in the task aiormq
  makes for it, with no second one of aio-pika's in between, and a marker wakes each of its reads
  directly. aio-pika's robust channel declares and binds the queue again after a reconnection, but
  knows nothing of such a consumer: every time the channel opens again the cache consumes anew
  (declaring and binding once more, in case the queue went while the channel stayed), and goes
  live only once a marker has made the round trip on that consumer.
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
from aio_pika.abc import AbstractExchange, AbstractQueue, AbstractRobustChannel, AbstractRobustConnection
from aiohttp import web
from aiormq.abc import DeliveredMessage
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
# What a hit pays for coherence: one broker round trip (see _barrier). The buckets reach
# down to what an idle broker on the same host answers in, where a database read would start.
BARRIER_WAIT = Histogram(
    "keyway_connection_cache_barrier_seconds",
    "How long a cached read waited for its barrier marker",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0),
)
# Reads per marker (the barrier histogram's count over this) is what pipelining the markers costs.
BARRIER_MARKERS = Counter("keyway_connection_cache_barrier_markers_total", "Barrier markers sent by cached reads")
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
Reads = list[asyncio.Future[None]]  # reads waiting for one marker, each on a future of its own


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
        self._lost = 0  # bumped whenever the queue may have stopped being consumed
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._exchange: AbstractExchange | None = None
        self._queue_name = ""
        self._consumer_tag = ""
        self._consumers = itertools.count(1)
        self._going_live = asyncio.Lock()
        self._markers = itertools.count(1)
        self._waiting: dict[str, tuple[Reads, asyncio.TimerHandle]] = {}  # markers out: their reads
        self._batch: Reads | None = None  # reads of this turn, for the marker sent at its end
        self._underlay: aiormq.Channel | None = None  # the channel consumed on, while live
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
            # Declared through aio-pika's robust channel: it declares and binds it again on reopening.
            queue: AbstractQueue = await channel.declare_queue(
                queue_name, exclusive=True, auto_delete=True, arguments={"x-queue-type": "classic"}
            )
            for routing_key in ROUTING_KEYS:
                await queue.bind(exchange, routing_key=routing_key)
            self._channel, self._queue, self._exchange = channel, queue, exchange
            self._queue_name = queue_name
            await self._consume()
        except BaseException:
            self._channel = self._queue = self._exchange = None
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        channel.close_callbacks.add(self._on_lost)
        channel.reopen_callbacks.add(self._on_reconnect)  # a channel closed alone reopens without reconnecting
        connection.close_callbacks.add(self._on_lost)
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._go_live_soon()

    async def _consume(self) -> aiormq.Channel:
        """The channel's current aiormq channel, consuming this replica's queue (at once if it is)."""
        channel, queue, exchange = self._channel, self._queue, self._exchange
        if channel is None or queue is None or exchange is None:
            raise RuntimeError("not attached")
        underlay = await channel.get_underlay_channel()
        if not isinstance(underlay, aiormq.Channel):
            raise RuntimeError("no aiormq channel")
        if self._consumer_tag in underlay.consumers:
            return underlay
        # aio-pika's reopening declared it again; the broker may also have deleted it (and cancelled
        # the consumer) while the channel stayed open. Both are no-ops when it is there.
        await queue.declare()
        for routing_key in ROUTING_KEYS:
            await queue.bind(exchange, routing_key=routing_key)
        underlay.on_consumer_cancel_callbacks.add(self._on_cancel)
        # A tag of its own each time: a broker may hold a cancelled consumer's tag for a while.
        self._consumer_tag = f"{queue.name}.{next(self._consumers)}"
        await underlay.basic_consume(queue.name, self._on_delivery, no_ack=True, consumer_tag=self._consumer_tag)
        return underlay

    def _on_cancel(self, frame: aiormq.spec.Basic.Cancel) -> None:
        if frame.consumer_tag == self._consumer_tag:  # the queue went: events are lost until it is back
            self._on_lost()
            self._go_live_soon()

    def _on_lost(self, *_args: Any) -> None:
        self._lost += 1
        self._underlay = None
        if self._live:
            log.warning("connection cache off until the broker is back")
        self._live = False
        self.clear()

    def _on_reconnect(self, *_args: Any) -> None:
        # The loss itself was seen (_on_lost, by the close callbacks): the cache is empty and off.
        self._go_live_soon()

    def _go_live_soon(self) -> None:
        self._spawn(self._go_live())

    async def _go_live(self) -> None:
        # A reopened channel and a reconnection both call for it: one at a time, and the second
        # finds the first's work done.
        async with self._going_live:
            for _ in range(30):
                if self._consuming():
                    return
                if self._live:  # live on a channel that no longer consumes: off until it does again
                    self._on_lost()
                lost = self._lost
                try:
                    underlay = await self._consume()
                except Exception as exc:  # the channel closed or reopens meanwhile: try again
                    log.debug("connection cache could not consume its queue", error=exc.__class__.__name__)
                else:
                    # Live only once a marker made the round trip through this consumer, and only if
                    # nothing was lost since it began (else that loss's own call goes on from here).
                    if await self._round_trip() and lost == self._lost and not underlay.is_closed:
                        self._underlay = underlay
                        self.clear()
                        # Nothing held was checked: the checks' range starts now (less the overlap).
                        self._check_from = SYSTEM_CLOCK.now() - CHECK_OVERLAP
                        self._checked_at = -math.inf
                        self._live = True
                        return
                await asyncio.sleep(1)
            log.warning("connection cache stays off: its queue does not answer")

    def _consuming(self) -> bool:
        underlay = self._underlay
        return (
            self._live and underlay is not None and not underlay.is_closed and self._consumer_tag in underlay.consumers
        )

    async def _on_delivery(self, message: DeliveredMessage) -> None:
        # Nothing awaited on purpose: each message is handled whole, strictly in queue order (aiormq
        # starts one task per delivery, in order of arrival).
        marker = (message.header.properties.headers or {}).get(BARRIER_MARKER)
        if marker is not None:
            self._marker_back(str(marker))
            return
        try:
            event = json.loads(message.body)
            key, _, connection_id = str(event["subject"]).partition("/")
            self.drop(str(event["environment"]), key, connection_id)
        except (ValueError, KeyError, TypeError):
            self.clear()  # an event about some connection that cannot be told which: drop them all

    async def _barrier(self) -> bool:
        """Every event enqueued before this call has been handled (True), or the cache is unusable."""
        loop = asyncio.get_running_loop()
        # A future per read: one cancelled read cancels nobody else's wait, and the marker's return
        # wakes each read itself (no shield, no shared future's callbacks in between).
        mine: asyncio.Future[None] = loop.create_future()
        if self._batch is None:
            self._batch = []
            # Reads arriving in this same turn of the loop share the marker sent at its end.
            loop.call_soon(self._send_marker)
        self._batch.append(mine)
        # The marker's own timeout (see _await_marker) bounds this wait.
        patience = remaining(self._barrier_timeout)
        began = loop.time()
        try:
            if patience < self._barrier_timeout:  # the request's deadline comes first (no timer on the usual path)
                await asyncio.wait_for(mine, timeout=patience)
            else:
                await mine
            BARRIER_WAIT.observe(loop.time() - began)
            return True
        except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
            LOOKUPS.labels(outcome="barrier_failed").inc()
            return False

    def _send_marker(self) -> None:
        reads, self._batch = self._batch, None
        if not reads:
            return
        # Sent even while earlier markers are out: waiting for them to come back first would make
        # these reads wait for the rest of that round trip and then their own.
        marker = self._await_marker(reads)
        BARRIER_MARKERS.inc()
        if self._write_marker(marker):
            self._frames.flush()  # now: waiting for the next turn would add one to the round trip
        else:
            self._spawn(self._publish_marker(marker))

    def _marker_back(self, marker: str) -> None:
        self._settle_marker(marker, None)

    def _await_marker(self, reads: Reads) -> str:
        """A new marker whose return wakes ``reads``, or whose loss fails them after the timeout."""
        marker = str(next(self._markers))

        def expire() -> None:  # a marker lost with its channel must not hold its readers forever
            self._fail(marker, TimeoutError("barrier marker did not come back"))

        deadline = asyncio.get_running_loop().call_later(self._barrier_timeout, expire)
        self._waiting[marker] = (reads, deadline)
        return marker

    def _fail(self, marker: str, exc: BaseException) -> None:
        self._settle_marker(marker, exc)

    def _settle_marker(self, marker: str, failure: BaseException | None) -> None:
        """Wake the reads of ``marker`` (once): every event before it was handled, or ``failure``."""
        out = self._waiting.pop(marker, None)
        if out is None:
            return
        reads, deadline = out
        deadline.cancel()
        for read in reads:
            if read.done():
                continue
            if failure is None:
                read.set_result(None)
            else:
                read.set_exception(failure)

    def _write_marker(self, marker: str) -> bool:
        """The marker as AMQP frames (``keyway_shared.bus.frames``): no task, no channel lock and no
        encoder between the reads and the broker, which take about a third of a barrier's loop turns.
        False when the channel's connection is not at hand (not live yet, or reconnecting): then
        aio-pika publishes it."""
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

    async def _publish_marker(self, marker: str) -> None:
        try:
            if self._channel is None:
                raise RuntimeError("no channel")
            message = aio_pika.Message(b"", headers={BARRIER_MARKER: marker})
            await self._channel.default_exchange.publish(message, routing_key=self._queue_name)
        except Exception as exc:
            self._fail(marker, RuntimeError(f"barrier not sent: {exc.__class__.__name__}"))

    async def _round_trip(self) -> bool:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._publish_marker(self._await_marker([done]))
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
