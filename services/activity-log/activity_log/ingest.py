"""The activity queue's consumer: deliveries gathered into batches, each written in one go and
acknowledged with one frame.

The shared :class:`~keyway_shared.bus.ConsumerRunner` settles each message by itself (a task, a
log context and an ack frame per message); at thousands of events a second that cost as much CPU
as building the entries, on a machine whose CPU the database needs. This consumer keeps the
runner's policy for this queue, per batch:

    stored                      → ack (one ``multiple=True`` ack per batch and channel)
    the database failed         → each message re-published to its delay queue as the next
                                  attempt, then acked; dead-lettered after the last attempt
    anything else failed        → dead-lettered, logged
    not an event the models take → dead-lettered when its batch settles (it will never get better)

A ``multiple=True`` ack covers every unsettled delivery up to its tag, so batches are settled in
delivery order (a batch waits for the one before it), a dead-letter or requeue is sent before the
ack that would otherwise cover it, and a channel where a batch was left unsettled (shutdown)
gets single acks from then on. A batch whose channel closed under it (a broker reset) settles what
it can and skips the rest: the broker has those deliveries back and redelivers them on the
reopened channel, where later batches go on as before. Only what is stored is acknowledged: a
message still in hand when the process dies comes back from the broker, and its write is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from prometheus_client import Counter
from pymongo.errors import PyMongoError

from keyway_shared.bus import (
    ConsumerSpec,
    EventPublisher,
    PublishError,
    attempt_of,
    declare_consumer,
    retry_copy,
)
from keyway_shared.events import EventDecodeError
from keyway_shared.logging import get_logger

from .entries import Entry

__all__ = ["IngestConsumer"]

_BROKER_CALL_TIMEOUT = 5.0  # seconds a cancel or close may take during shutdown
ENTRIES = Counter(
    "keyway_activity_entries_total",
    "Activity entries by how their message was settled",
    ["outcome"],  # stored, retried (back through a delay queue), dead_lettered
)
log = get_logger(__name__)


@dataclass(slots=True)
class _Delivery:
    message: AbstractIncomingMessage
    entry: Entry | None  # None: not an event; dead-lettered when its batch is settled


class IngestConsumer:
    def __init__(
        self,
        spec: ConsumerSpec,
        *,
        make_entry: Callable[[bytes], Entry],
        write: Callable[[list[Entry]], Awaitable[None]],
        batch_size: int,
        batch_delay: float,
        writes_at_once: int = 1,
        queue_type: str,
        shutdown_grace: float = 10.0,
    ) -> None:
        self._spec = spec
        self._make_entry = make_entry
        self._write = write
        self._size = batch_size
        self._delay = batch_delay
        self._max_writes = writes_at_once
        self._writing = 0  # batches whose write has started and not ended
        self._queue_type = queue_type
        self._grace = shutdown_grace
        self._publisher: EventPublisher | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._pending: list[_Delivery] = []
        self._timer: asyncio.TimerHandle | None = None
        self._last_settled: asyncio.Future[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        # Channels where some delivery may be left unsettled: a multiple ack there could cover it.
        self._single_acks: set[Any] = set()
        self.stored = 0  # entries stored and acknowledged
        self.batches = 0  # batches settled

    @property
    def consuming(self) -> bool:
        return self._tag is not None

    @property
    def inflight(self) -> int:
        return len(self._pending) + len(self._batches)

    async def start(self, connection: AbstractRobustConnection, publisher: EventPublisher) -> None:
        """Consume the queue; on a failure, close the channel this call opened and raise, so that
        the broker link's next try does not consume twice."""
        self._publisher = publisher
        channel = await connection.channel()
        try:
            await channel.set_qos(prefetch_count=self._spec.prefetch)
            queue = await declare_consumer(channel, self._spec, queue_type=self._queue_type)
            self._tag = await queue.consume(self._on_message)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), timeout=_BROKER_CALL_TIMEOUT)
            raise
        self._channel, self._queue = channel, queue
        log.info("consuming", queue=self._spec.queue, bindings=list(self._spec.bindings), prefetch=self._spec.prefetch)

    async def stop(self) -> None:
        """Stop taking messages, store and settle what is in hand (bounded), then close the channel."""
        channel, queue, tag = self._channel, self._queue, self._tag
        self._tag = None
        if channel is not None and queue is not None and tag is not None and not channel.is_closed:
            try:
                await asyncio.wait_for(queue.cancel(tag), timeout=_BROKER_CALL_TIMEOUT)
            except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError):
                log.warning("consumer cancel failed", queue=self._spec.queue)
        while self._pending:
            self._start_batch()  # whatever the room: they are stored before the channel closes
        if self._batches:
            _, late = await asyncio.wait(set(self._batches), timeout=self._grace)
            if late:
                log.warning("shutdown grace over; unacknowledged messages go back to the broker", batches=len(late))
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        if channel is not None and not channel.is_closed:
            try:
                await asyncio.wait_for(channel.close(), timeout=_BROKER_CALL_TIMEOUT)
            except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError):
                log.warning("channel close failed; the broker drops it with the connection")
        self._channel = self._queue = None
        log.info("activity ingest stopped", stored=self.stored, batches=self.batches)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            entry: Entry | None = self._make_entry(message.body)
        except EventDecodeError as exc:
            log.error("dead-lettering an invalid event", reason=str(exc), message_id=message.message_id)
            entry = None
        except Exception:
            log.exception("could not make an entry of an event; dead-lettering it", message_id=message.message_id)
            entry = None
        self._pending.append(_Delivery(message, entry))
        self._pump(ripe=False)

    def _pump(self, *, ripe: bool) -> None:
        """Start writes while there is room: a full batch at once, a partial one once ``ripe``.

        Group commit: a partial batch is ripe when the write before it ended (what arrived during
        a write goes at once, however much) or, when nothing is being written, ``batch_delay``
        after its first entry. So under load batches grow to ``batch_size`` by themselves and the
        database always has the next one ready; when quiet, an entry waits at most the delay.
        """
        while self._pending and self._writing < self._max_writes and (ripe or len(self._pending) >= self._size):
            self._start_batch()
        if self._pending and self._timer is None and self._writing == 0:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump(ripe=True)

    def _start_batch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending[: self._size], self._pending[self._size :]
        self._writing += 1
        previous = self._last_settled
        settled = self._last_settled = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._store_and_settle(batch, previous), name="activity-batch")
        self._batches.add(task)
        task.add_done_callback(lambda t: self._batch_done(t, batch, settled))

    def _batch_done(self, task: asyncio.Task[None], batch: list[_Delivery], settled: asyncio.Future[None]) -> None:
        self._batches.discard(task)
        try:
            if task.cancelled() or task.exception() is not None:
                # Some of its deliveries may be unsettled: no later multiple ack on their channels
                # (a closed one takes no more acks: the broker has its deliveries back already).
                self._single_acks.update(c for d in batch if (c := _open_channel(d.message)) is not None)
                if not task.cancelled():
                    log.error("an activity batch was not settled", error=repr(task.exception()))
        finally:
            # Whatever happened above: the next batch waits for this future, and must never wait forever.
            settled.set_result(None)  # after the marks above, so the next batch sees them

    async def _store_and_settle(self, batch: list[_Delivery], previous: asyncio.Future[None] | None) -> None:
        entries = [d.entry for d in batch if d.entry is not None]
        failure: BaseException | None = None
        try:
            if entries:
                await self._write(entries)
        except PyMongoError as exc:
            failure = exc
            log.warning("activity batch not stored; retrying it through the broker", error=exc.__class__.__name__)
        except Exception as exc:
            failure = exc
            log.exception("activity batch failed; dead-lettering its messages", size=len(batch))
        finally:
            self._writing -= 1
        self._pump(ripe=True)  # the next batch goes while this one is acknowledged
        if previous is not None:
            await previous  # settle in delivery order: an ack of this batch covers lower tags
        await self._settle(batch, failure)

    async def _settle(self, batch: list[_Delivery], failure: BaseException | None) -> None:
        acks: list[AbstractIncomingMessage] = []
        retries: list[AbstractIncomingMessage] = []
        dead = 0
        for delivery in batch:
            message = delivery.message
            if delivery.entry is None or (failure is not None and not isinstance(failure, PyMongoError)):
                await _quietly(message.reject(requeue=False))
                dead += 1
            elif failure is not None:
                retries.append(message)
            else:
                acks.append(message)
        stored = len(acks)
        if retries:
            parked = await asyncio.gather(*(self._park(m) for m in retries))
            acks.extend(m for m, ok in zip(retries, parked, strict=True) if ok)
            ENTRIES.labels("retried").inc(sum(parked))
        await self._ack(acks)
        ENTRIES.labels("stored").inc(stored)
        ENTRIES.labels("dead_lettered").inc(dead)
        self.stored += stored
        self.batches += 1

    async def _park(self, message: AbstractIncomingMessage) -> bool:
        """Hand the message to its delay queue as the next attempt; False if it was settled otherwise."""
        spec = self._spec
        attempt = attempt_of(message)
        if attempt >= spec.retry.max_attempts:
            log.error("retries exhausted; dead-lettering the event", message_id=message.message_id)
            await _quietly(message.reject(requeue=False))
            ENTRIES.labels("dead_lettered").inc()
            return False
        copy = retry_copy(message, attempt=attempt + 1)
        delay = spec.retry.delay_after(attempt)
        try:
            assert self._publisher is not None
            await self._publisher.publish_to_queue(copy, queue=spec.retry_queue(delay))
        except PublishError:
            log.warning("could not schedule the retry; requeueing", message_id=message.message_id)
            await _quietly(message.nack(requeue=True))
            return False
        return True

    async def _ack(self, messages: list[AbstractIncomingMessage]) -> None:
        # Deliveries come in tag order per channel; after a reconnection a batch may span two.
        last: dict[Any, AbstractIncomingMessage] = {}
        for message in messages:
            channel = _open_channel(message)
            if channel is None:
                continue  # the broker has it back already; its redelivery is written idempotently
            if channel in self._single_acks:
                await _quietly(message.ack())
            else:
                last[channel] = message
        for message in last.values():
            # The channel may close between the check above and here: same as closed before.
            await _quietly(message.ack(multiple=True))


def _open_channel(message: AbstractIncomingMessage) -> Any | None:
    """The channel the message came on, or None once it closed (aio-pika raises on reading a closed
    one; a batch that read it unguarded was never settled, and every later batch waited for it)."""
    try:
        channel = message.channel
    except RuntimeError:  # aio-pika's ChannelInvalidStateError
        return None
    return None if channel.is_closed else channel


async def _quietly(settling: Awaitable[None]) -> None:
    """Settle one message; on a closed channel the broker has taken it back, which is fine."""
    with contextlib.suppress(aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
        await settling
