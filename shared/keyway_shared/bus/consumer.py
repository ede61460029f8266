"""The consumer runner: one ack policy for every handler, so handlers hold no ack code.

A handler is ``async def handle(event: CloudEvent[T], ctx: MessageContext) -> None``. The runner
decodes and validates the envelope, binds the event id into the log context, skips an event id the
consumer has already handled, and then settles the message by what the handler did:

    returned                → ack
    raised Retry            → re-published to a delay queue, then ack; dead-lettered after the last attempt
    raised a retry_on type  → the same as Retry (e.g. the database is briefly unreachable)
    raised DeadLetter       → dead-letter now, logged as a warning (the handler gave up on purpose)
    bad envelope or payload → dead-letter at once (it will never get better)
    raised anything else    → dead-letter and log the exception
    settling failed         → handed back to the broker (nack, requeue), logged; on a closed channel
                              the broker has it back already

``publish_later`` lets a handler start a message on another consumer's schedule: it parks it in that
consumer's delay queue as a given attempt, the way a retry is parked.

Shutdown is graceful: stop consuming, wait a bounded time for in-flight handlers, then close.
Whatever was not acknowledged by then is redelivered by the broker to another consumer.

Messages are taken from aiormq, not through aio-pika's consumer wrapper, which builds an
``IncomingMessage`` (a Python ``__setattr__`` per property) and starts a second task for every
message, on top of the one aiormq starts: a tenth of a busy dispatcher's CPU. aio-pika still owns the
consumer (``queue.consume``), so it restores it after a reconnection and cancels it on ``stop``; the
runner only swaps aiormq's callback for that consumer tag, and swaps it again when a restored
consumer's first message comes through aio-pika's wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from aiormq.abc import DeliveredMessage
from pydantic import ValidationError

from ..backoff import is_cancellation
from ..events import CloudEvent, EventDecodeError, decode_event
from ..logging import get_logger
from .frames import ack_frame
from .publisher import EventPublisher, PublishError
from .topology import ConsumerSpec, declare_consumer, declare_delay_queue

__all__ = [
    "ATTEMPT_HEADER",
    "RESUMED_HEADER",
    "Claim",
    "ConsumerRunner",
    "DeadLetter",
    "Delivery",
    "Handler",
    "IdempotencyGuard",
    "MessageContext",
    "Retry",
    "attempt_of",
    "retry_copy",
]

ATTEMPT_HEADER = "x-keyway-attempt"
RESUMED_HEADER = "x-keyway-resumed"  # set when a message comes back for the same attempt
_BROKER_CALL_TIMEOUT = 5.0  # seconds a cancel or close may take during shutdown
log = get_logger(__name__)


class Retry(Exception):  # noqa: N818 - it is an instruction to the runner, not an error name
    """Raised by a handler to have the message tried again later, through the broker.

    ``same_attempt=True`` is for a hiccup that is not the attempt's fault (the database was briefly
    unreachable): the message comes back as the same attempt, however often, with
    ``MessageContext.redelivered`` set, as a message the broker redelivers is.
    """

    def __init__(self, reason: str, *, delay: float | None = None, same_attempt: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.same_attempt = same_attempt


class DeadLetter(Exception):  # noqa: N818 - an instruction to the runner, like Retry
    """Raised by a handler that gave up on a message: dead-letter it now, without a traceback."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Claim(Enum):
    CLAIMED = "claimed"  # this consumer handles the event now
    DONE = "done"  # already handled: acknowledge and skip
    BUSY = "busy"  # another consumer is handling it right now: look again later


class IdempotencyGuard(Protocol):
    async def claim(self, consumer: str, event_id: str) -> Claim: ...
    async def complete(self, consumer: str, event_id: str) -> None: ...
    async def release(self, consumer: str, event_id: str) -> None: ...


class Delivery(Protocol):
    """A message as the runner reads and settles it: aio-pika's ``IncomingMessage`` is one."""

    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> Any: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def redelivered(self) -> bool | None: ...
    @property
    def delivery_tag(self) -> int | None: ...
    @property
    def channel(self) -> aiormq.abc.AbstractChannel: ...
    async def ack(self) -> None: ...
    async def reject(self, requeue: bool = False) -> None: ...
    async def nack(self, multiple: bool = False, requeue: bool = True) -> None: ...


class _Delivered:
    """A delivery straight from aiormq, read and settled as aio-pika's ``IncomingMessage`` would be
    (one settlement; another raises), without its per-property copying."""

    __slots__ = ("_channel", "_properties", "_settled", "body", "delivery_tag", "redelivered")

    def __init__(self, message: DeliveredMessage) -> None:
        self.body = message.body
        self._channel = message.channel
        self._properties = message.header.properties
        delivery = message.delivery
        self.delivery_tag: int | None = getattr(delivery, "delivery_tag", None)
        self.redelivered: bool | None = getattr(delivery, "redelivered", None)
        self._settled = False

    @property
    def headers(self) -> dict[str, Any]:
        return self._properties.headers or {}

    @property
    def content_type(self) -> str | None:
        return self._properties.content_type

    @property
    def message_id(self) -> str | None:
        return self._properties.message_id

    @property
    def type(self) -> str | None:
        return self._properties.message_type

    @property
    def timestamp(self) -> datetime | None:
        return self._properties.timestamp

    @property
    def channel(self) -> aiormq.abc.AbstractChannel:
        if self._channel.is_closed:
            raise aiormq.exceptions.ChannelInvalidStateError(f"{self._channel!r} closed")
        return self._channel

    def _settle(self) -> int:
        if self._settled:
            raise aio_pika.exceptions.MessageProcessError("Message already processed", self)
        assert self.delivery_tag is not None  # a consumed (not no-ack) delivery always has one
        return self.delivery_tag

    async def ack(self) -> None:
        await self.channel.basic_ack(delivery_tag=self._settle())
        self._settled = True

    async def reject(self, requeue: bool = False) -> None:
        await self.channel.basic_reject(delivery_tag=self._settle(), requeue=requeue)
        self._settled = True

    async def nack(self, multiple: bool = False, requeue: bool = True) -> None:
        await self.channel.basic_nack(delivery_tag=self._settle(), multiple=multiple, requeue=requeue)
        self._settled = True


@dataclass(frozen=True, kw_only=True)
class MessageContext:
    spec: ConsumerSpec
    attempt: int
    redelivered: bool  # the broker redelivered it, or a handler had it back for the same attempt

    @property
    def max_attempts(self) -> int:
        return self.spec.retry.max_attempts

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


Handler = Callable[[CloudEvent[Any], MessageContext], Awaitable[None]]
_Direct = Callable[[DeliveredMessage], Coroutine[Any, Any, None]]  # an aiormq consumer callback


@dataclass(frozen=True, kw_only=True)
class _Registration:
    spec: ConsumerSpec
    handler: Handler
    retry_on: tuple[type[BaseException], ...]
    guarded: bool


class ConsumerRunner:
    def __init__(
        self,
        *,
        connection: AbstractRobustConnection,
        publisher: EventPublisher,
        queue_type: str = "quorum",
        guard: IdempotencyGuard | None = None,
        shutdown_grace: float = 10.0,
        on_settled: Callable[[str, str], None] | None = None,
    ) -> None:
        self._connection = connection
        self._publisher = publisher
        self._queue_type = queue_type
        self._guard = guard
        self._grace = shutdown_grace
        self._on_settled = on_settled  # (queue, outcome) -> None, for metrics
        self._registrations: list[_Registration] = []
        self._consuming: list[tuple[AbstractChannel, AbstractQueue, str]] = []
        self._channels: list[AbstractChannel] = []
        self._inflight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._declared_delays: set[str] = set()

    def add(
        self,
        spec: ConsumerSpec,
        handler: Handler,
        *,
        retry_on: tuple[type[BaseException], ...] = (),
        guarded: bool = True,
    ) -> None:
        """Register a handler. ``guarded=False`` for handlers idempotent by themselves."""
        self._registrations.append(_Registration(spec=spec, handler=handler, retry_on=retry_on, guarded=guarded))

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def consuming(self) -> bool:
        """True once every registered handler is consuming, until ``stop``."""
        return bool(self._consuming) and len(self._consuming) == len(self._registrations) and not self._stopping

    async def start(self) -> None:
        """Consume every registered queue; on any failure, close what this call opened and raise,
        so that starting again (the broker link retries) does not consume a queue twice."""
        try:
            for reg in self._registrations:
                channel = await self._connection.channel()
                self._channels.append(channel)
                await channel.set_qos(prefetch_count=reg.spec.prefetch)
                queue = await declare_consumer(channel, reg.spec, queue_type=self._queue_type)
                self._declared_delays.update(reg.spec.retry_queue(d) for d in reg.spec.retry.delays)
                via_aio_pika, direct = self._callbacks_for(reg)
                tag = await queue.consume(via_aio_pika)
                _take_over(await channel.get_underlay_channel(), tag, direct)
                self._consuming.append((channel, queue, tag))
                log.info("consuming", queue=reg.spec.queue, bindings=list(reg.spec.bindings))
        except BaseException:
            self._consuming.clear()
            await self._close_channels()
            raise

    async def stop(self) -> None:
        """Stop taking messages, let in-flight ones finish (bounded), then close the channels."""
        self._stopping = True
        for channel, queue, tag in self._consuming:
            # A robust channel whose connection is gone waits for a reconnection that may never come:
            # skip it when closed, and bound the wait, so shutdown ends even while the broker is down.
            if channel.is_closed:
                continue
            try:
                await asyncio.wait_for(queue.cancel(tag), timeout=_BROKER_CALL_TIMEOUT)
            except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError):
                log.warning("consumer cancel failed", queue=queue.name)
        self._consuming.clear()
        if self._inflight:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=self._grace)
            except TimeoutError:
                log.warning(
                    "shutdown grace over; unacknowledged messages go back to the broker", inflight=len(self._inflight)
                )
        self._publisher.frames.flush()  # the last acks, before their channels close
        await self._close_channels()

    async def _close_channels(self) -> None:
        channels, self._channels = self._channels, []
        for channel in channels:
            if not channel.is_closed:
                try:
                    await asyncio.wait_for(channel.close(), timeout=_BROKER_CALL_TIMEOUT)
                except Exception:
                    log.warning("channel close failed; the broker drops it with the connection")

    def _callbacks_for(
        self, reg: _Registration
    ) -> tuple[Callable[[AbstractIncomingMessage], Awaitable[None]], _Direct]:
        """aio-pika's callback for ``reg``'s consumer, and aiormq's that replaces it (see the module
        docstring). Either runs in the task aiormq started for the message."""

        async def run(message: Delivery) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._inflight.add(task)
            self._idle.clear()
            try:
                await self._process(reg, message)
            finally:
                self._inflight.discard(task)
                if not self._inflight:
                    self._idle.set()

        async def direct(message: DeliveredMessage) -> None:
            await run(_Delivered(message))

        async def via_aio_pika(message: AbstractIncomingMessage) -> None:
            # The first message of a consumer aio-pika (re)started: take the consumer over from here on.
            if message.consumer_tag is not None:
                with contextlib.suppress(aiormq.exceptions.ChannelInvalidStateError):
                    _take_over(message.channel, message.consumer_tag, direct)
            await run(message)

        return via_aio_pika, direct

    async def _process(self, reg: _Registration, message: Delivery) -> None:
        queue = reg.spec.queue
        attempt = attempt_of(message)
        context = {"queue": queue, "message_id": message.message_id, "attempt": attempt}
        try:
            event = _decode(reg.spec, message.body, message.type)
        except EventDecodeError as exc:
            with structlog.contextvars.bound_contextvars(**context):
                log.error("dead-lettering an invalid event", reason=str(exc))
                try:
                    await message.reject(requeue=False)
                except BaseException as error:
                    if is_cancellation(error):
                        raise
                    await self._unsettled(queue, message, error)
                    return
                self._settled(queue, "invalid")
            return
        except BaseException as exc:
            if is_cancellation(exc):
                raise
            with structlog.contextvars.bound_contextvars(**context):
                await self._unsettled(queue, message, exc)
            return
        # One binding for the whole handling, undone with its tokens (bound_contextvars would copy
        # the whole context on entry to find what to restore).
        tokens = structlog.contextvars.bind_contextvars(**context, event_id=event.id, event_type=event.type)
        try:
            await self._handle(reg, message, event, attempt)
        except BaseException as exc:
            if is_cancellation(exc):
                raise
            await self._unsettled(queue, message, exc)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def _unsettled(self, queue: str, message: Delivery, exc: BaseException) -> None:
        """Settling failed (the channel closed under it, a retry could not be parked…): hand the
        message back if the channel still can, so it never sits unacknowledged on an open channel.
        On a closed channel the broker has it back already; either way it comes again, and the
        idempotency guard (or the handler itself) skips what was done."""
        log.warning("message not settled; the broker delivers it again", error=exc.__class__.__name__)
        with contextlib.suppress(Exception):
            await message.nack(requeue=True)
        self._settled(queue, "requeued")

    async def _handle(self, reg: _Registration, message: Delivery, event: CloudEvent[Any], attempt: int) -> None:
        queue = reg.spec.queue
        guard = self._guard if reg.guarded else None
        if guard is not None:
            try:
                claim = await guard.claim(queue, event.id)
            except reg.retry_on as exc:
                await self._retry(reg, message, attempt, Retry(f"idempotency store unavailable: {exc}"), count=False)
                return
            if claim is Claim.DONE:
                log.info("skipping an event already handled")
                await self._ack(message)
                self._settled(queue, "duplicate")
                return
            if claim is Claim.BUSY:
                await self._retry(reg, message, attempt, Retry("another consumer is handling this event"), count=False)
                return
        resumed = bool(message.redelivered) or bool((message.headers or {}).get(RESUMED_HEADER))
        ctx = MessageContext(spec=reg.spec, attempt=attempt, redelivered=resumed)
        try:
            await reg.handler(event, ctx)
        except Retry as exc:
            await self._release(guard, queue, event.id)
            await self._retry(reg, message, attempt, exc, count=not exc.same_attempt)
            return
        except reg.retry_on as exc:
            await self._release(guard, queue, event.id)
            await self._retry(reg, message, attempt, Retry(f"{exc.__class__.__name__}: {exc}"))
            return
        except DeadLetter as exc:
            await self._release(guard, queue, event.id)
            log.warning("handler gave up; dead-lettering the message", reason=exc.reason)
            await message.reject(requeue=False)
            self._settled(queue, "dead_lettered")
            return
        except asyncio.CancelledError:
            await self._release(guard, queue, event.id)
            raise
        except Exception:
            await self._release(guard, queue, event.id)
            log.exception("handler failed; dead-lettering the event")
            await message.reject(requeue=False)
            self._settled(queue, "dead_lettered")
            return
        if guard is not None:
            try:
                await guard.complete(queue, event.id)
            except Exception:
                # The work is done; a lost mark only means a later duplicate may be handled again.
                log.warning("could not record the event as handled", exc_info=True)
        await self._ack(message)
        self._settled(queue, "handled")

    async def _ack(self, message: Delivery) -> None:
        """Acknowledge ``message``: its ``basic.ack`` joins the frames written at the end of this loop
        turn (see :mod:`.frames`). The handler's work is done by now, so the ack still follows it;
        one lost with the process or the channel means a redelivery, as an unwritten ack always did."""
        channel = message.channel  # raises ChannelInvalidStateError once the channel is closed
        tag = message.delivery_tag
        if isinstance(channel, aiormq.Channel) and tag is not None:
            self._publisher.frames.add(channel, ack_frame(channel.number, tag))
        else:
            await message.ack()

    async def _release(self, guard: IdempotencyGuard | None, queue: str, event_id: str) -> None:
        if guard is None:
            return
        try:
            await guard.release(queue, event_id)
        except Exception:
            log.warning("could not release the idempotency claim; it expires by itself", exc_info=True)

    async def _retry(
        self, reg: _Registration, message: Delivery, attempt: int, retry: Retry, *, count: bool = True
    ) -> None:
        spec = reg.spec
        queue = spec.queue
        next_attempt = attempt + 1 if count else attempt
        if count and attempt >= spec.retry.max_attempts:
            log.error("retries exhausted; dead-lettering the event", reason=retry.reason)
            await message.reject(requeue=False)
            self._settled(queue, "exhausted")
            return
        delay = retry.delay if retry.delay is not None else spec.retry.delay_after(attempt)
        if retry.delay is None and spec.retry.jitter:
            # Jitter picks a neighbouring delay queue rather than a per-message TTL, keeping FIFO = expiry.
            delay = _jittered(delay, spec.retry.jitter)
        delay_queue = await self._delay_queue(spec, delay)
        copy = retry_copy(message, attempt=next_attempt, resumed=not count)
        try:
            await self._publisher.publish_to_queue(copy, queue=delay_queue)
        except PublishError:
            # Could not park it: hand it back to the broker rather than lose it.
            log.warning("could not schedule the retry; requeueing", reason=retry.reason)
            await message.nack(requeue=True)
            self._settled(queue, "requeued")
            return
        log.info("retry scheduled", reason=retry.reason, delay_seconds=round(delay, 3), next_attempt=next_attempt)
        await message.ack()
        self._settled(queue, "retried")

    async def publish_later(self, spec: ConsumerSpec, message: aio_pika.Message, *, delay: float, attempt: int) -> None:
        """Park ``message`` in ``spec``'s delay queue for ``delay`` s; it then reaches the work queue as ``attempt``.

        Raises :class:`PublishError` when the broker did not confirm.
        """
        headers = dict(message.headers or {})
        headers[ATTEMPT_HEADER] = attempt
        message.headers = headers
        await self._publisher.publish_to_queue(message, queue=await self._delay_queue(spec, delay))

    async def _delay_queue(self, spec: ConsumerSpec, delay: float) -> str:
        name = spec.retry_queue(delay)
        if name not in self._declared_delays:
            channel = await self._connection.channel()
            try:
                await declare_delay_queue(channel, spec, delay, queue_type=self._queue_type)
            finally:
                await channel.close()
        self._declared_delays.add(name)
        return name

    def _settled(self, queue: str, outcome: str) -> None:
        if self._on_settled is not None:
            self._on_settled(queue, outcome)


def _take_over(channel: aiormq.abc.AbstractChannel, tag: str, callback: _Direct) -> None:
    """Have aiormq call ``callback`` for the consumer ``tag`` on ``channel`` (if it has that consumer)."""
    if isinstance(channel, aiormq.Channel) and tag in channel.consumers:
        channel.consumers[tag] = callback


def _decode(spec: ConsumerSpec, body: bytes, type_hint: str | None = None) -> CloudEvent[Any]:
    """An event, or one of the commands the spec says its queue carries. ``type_hint``: the message's
    AMQP ``type``; see :func:`~keyway_shared.events.decode_event`."""
    if spec.message_types:
        hinted = dict(spec.message_types).get(type_hint) if isinstance(type_hint, str) else None
        if hinted is not None:  # straight from the bytes when the body agrees; else the general path
            try:
                command = CloudEvent[hinted].model_validate_json(body)  # type: ignore[valid-type]
            except ValidationError:
                pass
            else:
                if command.type == type_hint:
                    return command
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raw = None
        kind = raw.get("type") if isinstance(raw, dict) else None
        model = dict(spec.message_types).get(kind) if isinstance(kind, str) else None
        if model is not None:
            try:
                return CloudEvent[model].model_validate(raw)  # type: ignore[valid-type]
            except ValidationError as exc:
                raise EventDecodeError(f"invalid {kind} message: {exc.error_count()} error(s)") from exc
    return decode_event(body, type_hint=type_hint)


def attempt_of(message: Delivery) -> int:
    """Which attempt this delivery is (1 for a first delivery or an unreadable header)."""
    value = (message.headers or {}).get(ATTEMPT_HEADER, 1)
    if isinstance(value, int | str):
        try:
            return max(1, int(value))
        except ValueError:
            return 1
    return 1


def _jittered(delay: float, fraction: float) -> float:
    # Quantised to 10 % steps of the delay so jitter creates at most a handful of delay queues.
    steps = max(1, int(fraction * 10))
    return delay * (1 + random.randint(-steps, steps) / 10)


def retry_copy(message: Delivery, *, attempt: int, resumed: bool = False) -> aio_pika.Message:
    """The message to publish to a delay queue: the same body and identity, persistent, marked as
    ``attempt`` (and as the same attempt resumed after a hiccup when ``resumed``)."""
    headers = dict(message.headers or {})
    headers[ATTEMPT_HEADER] = attempt
    if resumed:
        headers[RESUMED_HEADER] = True
    else:
        headers.pop(RESUMED_HEADER, None)
    return aio_pika.Message(
        body=message.body,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        timestamp=message.timestamp,
        headers=headers,
    )
