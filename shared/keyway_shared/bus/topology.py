"""Every exchange, queue and binding Keyway uses, declared in one place.

Names are derived, nameko-style, from the consuming service and handler, so a queue seen in the
RabbitMQ console leads straight to its code::

    keyway.events                               topic exchange all events are published to
    keyway.<service>.<handler>                  a consumer's durable work queue
    keyway.<service>.<handler>.retry.<ms>ms     a delay queue: its TTL dead-letters back to the work queue
    keyway.dead-letter                          direct exchange for messages a consumer gave up on
    keyway.<service>.<handler>.dead             where those messages wait for a person or a replay

Retries ride on the broker: a message to retry is published to the delay queue of its wait time,
which holds it for exactly that long (every message in it has the same TTL, so FIFO order is
expiry order) and then dead-letters it to the default exchange with the work queue's name.

A consumer that wants only some of its bindings' events says which by a header (``header_filter``):
its queue is then bound, per accepted value, to a headers exchange of its own, which is bound to the
events exchange with the routing keys. An event the consumer would only skip then never costs the
broker a copy in its queue, nor the consumer a delivery::

    keyway.<service>.<handler>.filter           headers exchange between the events and the queue

A queue may also carry commands sent straight to it (``message_types``: e.g. one webhook delivery),
which never pass through the events exchange. With ``at_least_once`` a quorum queue dead-letters
with the ``at-least-once`` strategy, so a retry waiting in a delay queue survives a broker failure
during its move back to the work queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from ..events import EventData

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "EVENTS_EXCHANGE",
    "ConsumerSpec",
    "HeaderFilter",
    "RetrySchedule",
    "declare_consumer",
    "declare_delay_queue",
    "declare_events_exchange",
]

EVENTS_EXCHANGE = "keyway.events"
DEAD_LETTER_EXCHANGE = "keyway.dead-letter"


@dataclass(frozen=True, kw_only=True)
class RetrySchedule:
    """Waits between attempts, in seconds; ``len(delays) + 1`` attempts in all."""

    delays: tuple[float, ...] = (1.0, 5.0, 30.0)
    jitter: float = 0.0  # fraction, e.g. 0.2 for ±20 %; jittered waits still land in a fixed delay queue

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay_after(self, attempt: int) -> float:
        """The wait before the attempt after ``attempt`` (the last wait once past the schedule)."""
        return self.delays[min(attempt, len(self.delays)) - 1]

    def scaled(self, factor: float) -> RetrySchedule:
        """The same shape, compressed (tests) or stretched."""
        return RetrySchedule(delays=tuple(d * factor for d in self.delays), jitter=self.jitter)


@dataclass(frozen=True, kw_only=True)
class HeaderFilter:
    """Only the events whose AMQP header ``header`` holds one of ``values`` reach the queue. A
    message without the header matches none: only bind on a header every publisher sets."""

    header: str
    values: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ConsumerSpec:
    """What one consumer listens to and how it retries. The queue name follows from it."""

    service: str
    handler: str
    bindings: tuple[str, ...]
    retry: RetrySchedule = field(default_factory=RetrySchedule)
    prefetch: int = 64
    namespace: str = "keyway"  # tests give each run its own namespace, so queues never collide
    # Commands published straight to this queue (type -> payload model), beside the public events.
    message_types: tuple[tuple[str, type[EventData]], ...] = ()
    at_least_once: bool = False  # quorum queues only: dead-letter (retries, give-ups) at least once
    dead_letter_ttl: float | None = None  # seconds a given-up message is kept for a person; None: forever
    header_filter: HeaderFilter | None = None  # of the bindings' events, only these reach the queue

    @property
    def exchange(self) -> str:
        return EVENTS_EXCHANGE if self.namespace == "keyway" else f"{self.namespace}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return DEAD_LETTER_EXCHANGE if self.namespace == "keyway" else f"{self.namespace}.dead-letter"

    @property
    def queue(self) -> str:
        return f"{self.namespace}.{self.service}.{self.handler}"

    @property
    def filter_exchange(self) -> str:
        return f"{self.queue}.filter"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"

    def retry_queue(self, delay_seconds: float) -> str:
        return f"{self.queue}.retry.{round_delay_ms(delay_seconds)}ms"


def round_delay_ms(delay_seconds: float) -> int:
    """Delay queues are keyed by whole milliseconds, at least 1."""
    return max(1, round(delay_seconds * 1000))


def _queue_arguments(queue_type: str) -> dict[str, Any]:
    return {"x-queue-type": queue_type}


def _dead_letter_arguments(spec: ConsumerSpec, queue_type: str) -> dict[str, Any]:
    # At-least-once dead-lettering needs reject-publish overflow (RabbitMQ's rule); classic queues
    # have no such strategy.
    if spec.at_least_once and queue_type == "quorum":
        return {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
    return {}


async def declare_events_exchange(channel: AbstractChannel, name: str = EVENTS_EXCHANGE) -> AbstractExchange:
    return await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True)


async def declare_consumer(channel: AbstractChannel, spec: ConsumerSpec, *, queue_type: str) -> AbstractQueue:
    """Declare the work queue, its bindings, its dead-letter route and its delay queues."""
    events = await declare_events_exchange(channel, spec.exchange)
    dlx = await channel.declare_exchange(spec.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    dead_args = _queue_arguments(queue_type)
    if spec.dead_letter_ttl is not None:
        dead_args["x-message-ttl"] = round_delay_ms(spec.dead_letter_ttl)
    dead = await channel.declare_queue(spec.dead_letter_queue, durable=True, arguments=dead_args)
    await dead.bind(dlx, routing_key=spec.queue)
    work_args = (
        _queue_arguments(queue_type)
        | {"x-dead-letter-exchange": spec.dead_letter_exchange, "x-dead-letter-routing-key": spec.queue}
        | _dead_letter_arguments(spec, queue_type)
    )
    queue = await channel.declare_queue(spec.queue, durable=True, arguments=work_args)
    if spec.header_filter is None:
        for key in spec.bindings:
            await queue.bind(events, routing_key=key)
    else:
        await _bind_filtered(channel, queue, events, spec, spec.header_filter)
    for delay in sorted(set(spec.retry.delays)):
        await declare_delay_queue(channel, spec, delay, queue_type=queue_type)
    return queue


async def _bind_filtered(
    channel: AbstractChannel, queue: AbstractQueue, events: AbstractExchange, spec: ConsumerSpec, only: HeaderFilter
) -> None:
    filtered = await channel.declare_exchange(spec.filter_exchange, aio_pika.ExchangeType.HEADERS, durable=True)
    for key in spec.bindings:
        await filtered.bind(events, routing_key=key)
        # A queue declared before it had a filter was bound to the events directly: each event
        # would then arrive twice. Unbinding what is not there is no error.
        await queue.unbind(events, routing_key=key)
    for value in only.values:
        await queue.bind(filtered, routing_key="", arguments={"x-match": "all", only.header: value})


async def declare_delay_queue(
    channel: AbstractChannel, spec: ConsumerSpec, delay_seconds: float, *, queue_type: str
) -> str:
    name = spec.retry_queue(delay_seconds)
    args = (
        _queue_arguments(queue_type)
        | {
            "x-message-ttl": round_delay_ms(delay_seconds),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": spec.queue,
        }
        | _dead_letter_arguments(spec, queue_type)
    )
    await channel.declare_queue(name, durable=True, arguments=args)
    return name


async def delete_consumer_queues(channel: AbstractChannel, spec: ConsumerSpec) -> None:
    """Remove a consumer's queues (tests clean up after themselves with this)."""
    names = [spec.queue, spec.dead_letter_queue, *(spec.retry_queue(d) for d in set(spec.retry.delays))]
    for name in names:
        await channel.queue_delete(name)
    if spec.header_filter is not None:
        await channel.exchange_delete(spec.filter_exchange)
