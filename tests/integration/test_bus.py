"""The bus against the real RabbitMQ: publish with confirms, consume, redeliver, dead-letter, retry, stop.

Every test runs in its own namespace (``<ns>.events``, ``<ns>.bus-test.*`` queues), removed afterwards
by the ``amqp`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
import pytest
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from keyway_shared.bus import (
    ATTEMPT_HEADER,
    ConsumerRunner,
    ConsumerSpec,
    EventPublisher,
    MessageContext,
    Retry,
    RetrySchedule,
)
from keyway_shared.events import CloudEvent, ConnectionCreated, ConnectionDeleted, EventData, make_event
from keyway_shared.store import Database, MongoIdempotencyGuard

from ..support.polling import eventually

pytestmark = pytest.mark.broker

FAST_RETRY = RetrySchedule(delays=(0.2, 0.2))


def _event(connection_id: str = "user-1", *, id: str | None = None) -> CloudEvent[EventData]:
    data = ConnectionCreated(
        connection_id=connection_id, provider_config_key="github-dev", provider="github", auth_mode="OAUTH2"
    )
    return make_event(data, type="connection.created", source="/keyway/test", environment="dev", id=id)


def _spec(namespace: str, *, handler: str = "record", retry: RetrySchedule = FAST_RETRY) -> ConsumerSpec:
    return ConsumerSpec(
        service="bus-test", handler=handler, bindings=("connection.*",), retry=retry, namespace=namespace, prefetch=8
    )


@dataclass
class Seen:
    """What a handler saw, in order, with when it saw it."""

    events: list[CloudEvent[Any]] = field(default_factory=list)
    contexts: list[MessageContext] = field(default_factory=list)
    at: list[float] = field(default_factory=list)
    log_context: list[dict[str, Any]] = field(default_factory=list)

    def add(self, event: CloudEvent[Any], ctx: MessageContext) -> None:
        self.events.append(event)
        self.contexts.append(ctx)
        self.at.append(time.monotonic())
        self.log_context.append(structlog.contextvars.get_contextvars())


@dataclass
class Bus:
    namespace: str
    connection: AbstractRobustConnection
    publisher: EventPublisher
    settled: list[tuple[str, str]]
    runners: list[ConsumerRunner]

    def runner(
        self,
        *,
        queue_type: str = "classic",
        connection: AbstractRobustConnection | None = None,
        guard: MongoIdempotencyGuard | None = None,
        grace: float = 10.0,
    ) -> ConsumerRunner:
        runner = ConsumerRunner(
            connection=connection or self.connection,
            publisher=self.publisher,
            queue_type=queue_type,
            guard=guard,
            shutdown_grace=grace,
            on_settled=lambda queue, outcome: self.settled.append((queue, outcome)),
        )
        self.runners.append(runner)
        return runner

    def outcomes(self) -> list[str]:
        return [outcome for _queue, outcome in self.settled]

    async def publish_raw(self, body: bytes, *, routing_key: str = "connection.created") -> None:
        channel = await self.connection.channel(publisher_confirms=True)
        try:
            exchange = await channel.get_exchange(f"{self.namespace}.events")
            await exchange.publish(
                aio_pika.Message(body=body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=routing_key
            )
        finally:
            await channel.close()

    async def queue_depth(self, name: str) -> int:
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
            result = queue.declaration_result.message_count
            return int(result or 0)
        finally:
            await channel.close()

    async def take(self, name: str) -> list[AbstractIncomingMessage]:
        """Every message waiting in a queue, removed from it."""
        channel = await self.connection.channel()
        messages: list[AbstractIncomingMessage] = []
        try:
            queue = await channel.get_queue(name, ensure=True)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                messages.append(message)
        finally:
            await channel.close()
        return messages


@pytest.fixture
async def bus(amqp: AbstractRobustConnection, namespace: str) -> AsyncIterator[Bus]:
    publisher = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    state = Bus(namespace=namespace, connection=amqp, publisher=publisher, settled=[], runners=[])
    yield state
    for runner in state.runners:
        await runner.stop()
    await publisher.close()


def _settled(bus: Bus, count: int) -> Callable[[], Awaitable[list[str] | None]]:
    async def probe() -> list[str] | None:
        return bus.outcomes() if len(bus.settled) >= count else None

    return probe


async def _first(items: list[Any]) -> Any:
    return items[0] if items else None


async def _at_least(bus: Bus, queue: str, count: int) -> list[AbstractIncomingMessage] | None:
    """Once ``queue`` holds ``count`` messages, take them all."""
    if await bus.queue_depth(queue) < count:
        return None
    return await bus.take(queue)


async def _depth_is(bus: Bus, queue: str, depth: int) -> bool:
    return await bus.queue_depth(queue) == depth


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_publish_confirmed_and_consumed_as_a_typed_event(bus: Bus, namespace: str, queue_type: str) -> None:
    seen = Seen()

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        seen.add(event, ctx)

    spec = _spec(namespace)
    runner = bus.runner(queue_type=queue_type)
    runner.add(spec, handle)
    await runner.start()

    sent = _event("user-typed")
    await bus.publisher.publish(sent)  # returns once the broker confirmed
    # A deletion is bound too (connection.*); an auth.failed is not, and never reaches this queue.
    deleted = make_event(
        ConnectionDeleted(connection_id="user-2", provider_config_key="gh", provider="github", auth_mode="OAUTH2"),
        type="connection.deleted",
        source="/keyway/test",
        environment="prod",
    )
    await bus.publisher.publish_many([deleted])

    await eventually(_settled(bus, 2), timeout=10, what="both events handled")
    assert bus.outcomes() == ["handled", "handled"]
    first, second = sorted(seen.events, key=lambda e: e.type)
    assert first.type == "connection.created"
    assert first.id == sent.id
    assert isinstance(first.data, ConnectionCreated)
    assert first.data == sent.data
    assert isinstance(second.data, ConnectionDeleted)
    assert second.environment == "prod"
    assert all(ctx.attempt == 1 and not ctx.redelivered for ctx in seen.contexts)
    # The event id is in the log context while the handler runs.
    assert {ctx["event_id"] for ctx in seen.log_context} == {sent.id, deleted.id}
    assert all(ctx["queue"] == spec.queue for ctx in seen.log_context)
    assert await bus.queue_depth(spec.queue) == 0


async def test_message_of_a_dead_consumer_is_redelivered(bus: Bus, namespace: str, amqp_url: str) -> None:
    spec = _spec(namespace)
    started = asyncio.Event()
    release = asyncio.Event()
    first_seen = Seen()
    second_seen = Seen()

    async def stuck(event: CloudEvent[Any], ctx: MessageContext) -> None:
        first_seen.add(event, ctx)
        started.set()
        await release.wait()  # dies before it returns

    async def works(event: CloudEvent[Any], ctx: MessageContext) -> None:
        second_seen.add(event, ctx)

    doomed = await aio_pika.connect_robust(amqp_url)
    try:
        first = bus.runner(connection=doomed)
        first.add(spec, stuck)
        await first.start()
        sent = _event("user-redelivered")
        await bus.publisher.publish(sent)
        await asyncio.wait_for(started.wait(), timeout=10)

        second = bus.runner()
        second.add(spec, works)
        await second.start()
        assert second_seen.events == []  # the message is still held, unacknowledged, by the first consumer

        await doomed.close()  # the consumer dies mid-handler
        await eventually(lambda: _first(second_seen.events), timeout=10, what="redelivery to the second consumer")
    finally:
        release.set()
        if not doomed.is_closed:
            await doomed.close()

    assert [e.id for e in first_seen.events] == [sent.id]
    assert [e.id for e in second_seen.events] == [sent.id]
    assert second_seen.contexts[0].redelivered is True
    await eventually(_settled(bus, 1), timeout=10, what="the redelivered message settled")
    assert "handled" in bus.outcomes()
    assert await bus.queue_depth(spec.queue) == 0
    assert await bus.queue_depth(spec.dead_letter_queue) == 0


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_poison_messages_are_dead_lettered_without_calling_the_handler(
    bus: Bus, namespace: str, queue_type: str
) -> None:
    calls: list[CloudEvent[Any]] = []

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        calls.append(event)

    spec = _spec(namespace)
    runner = bus.runner(queue_type=queue_type)
    runner.add(spec, handle)
    await runner.start()

    valid = json.loads(_event().to_json_bytes())
    poison = [
        b"{this is not json",
        json.dumps({**valid, "type": "connection.exploded"}).encode(),
        json.dumps({**valid, "data": {"connection_id": "only this"}}).encode(),
        json.dumps({**valid, "specversion": "0.3"}).encode(),
    ]
    for body in poison:
        await bus.publish_raw(body)

    await eventually(_settled(bus, len(poison)), timeout=10, what="every poison message settled")
    assert bus.outcomes() == ["invalid"] * len(poison)
    dead = await eventually(lambda: _at_least(bus, spec.dead_letter_queue, len(poison)), what="dead letters")
    assert sorted(m.body for m in dead) == sorted(poison)
    assert calls == []
    assert await bus.queue_depth(spec.queue) == 0


async def test_unexpected_handler_error_dead_letters(bus: Bus, namespace: str) -> None:
    calls: list[int] = []

    async def broken(event: CloudEvent[Any], ctx: MessageContext) -> None:
        calls.append(ctx.attempt)
        raise KeyError("a bug in the handler")

    spec = _spec(namespace)
    runner = bus.runner()
    runner.add(spec, broken)
    await runner.start()
    sent = _event("user-bug")
    await bus.publisher.publish(sent)

    dead = await eventually(lambda: _at_least(bus, spec.dead_letter_queue, 1), timeout=10, what="a dead letter")
    assert [json.loads(m.body)["id"] for m in dead] == [sent.id]
    assert calls == [1]  # not retried: a bug does not get better by trying again
    assert bus.outcomes() == ["dead_lettered"]


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_retry_goes_through_the_delay_queue(bus: Bus, namespace: str, queue_type: str) -> None:
    seen = Seen()

    async def flaky(event: CloudEvent[Any], ctx: MessageContext) -> None:
        seen.add(event, ctx)
        if ctx.attempt == 1:
            raise Retry("the provider is briefly down")

    spec = _spec(namespace)
    runner = bus.runner(queue_type=queue_type)
    runner.add(spec, flaky)
    await runner.start()
    sent = _event("user-retry")
    await bus.publisher.publish(sent)

    await eventually(_settled(bus, 2), timeout=10, what="the retried event handled")
    assert bus.outcomes() == ["retried", "handled"]
    assert [ctx.attempt for ctx in seen.contexts] == [1, 2]
    assert [e.id for e in seen.events] == [sent.id, sent.id]
    assert seen.contexts[1].max_attempts == 3
    assert not seen.contexts[1].is_last_attempt
    assert seen.at[1] - seen.at[0] >= 0.18  # the delay queue's TTL, 200 ms, held it
    assert await bus.queue_depth(spec.retry_queue(0.2)) == 0
    assert await bus.queue_depth(spec.dead_letter_queue) == 0


async def test_retries_exhausted_dead_letters(bus: Bus, namespace: str) -> None:
    attempts: list[int] = []
    last: list[bool] = []

    async def always_down(event: CloudEvent[Any], ctx: MessageContext) -> None:
        attempts.append(ctx.attempt)
        last.append(ctx.is_last_attempt)
        raise Retry("still down")

    spec = _spec(namespace)
    runner = bus.runner()
    runner.add(spec, always_down)
    await runner.start()
    sent = _event("user-exhausted")
    await bus.publisher.publish(sent)

    dead = await eventually(lambda: _at_least(bus, spec.dead_letter_queue, 1), timeout=10, what="a dead letter")
    assert attempts == [1, 2, 3]
    assert last == [False, False, True]
    assert bus.outcomes() == ["retried", "retried", "exhausted"]
    assert json.loads(dead[0].body)["id"] == sent.id
    assert (dead[0].headers or {}).get(ATTEMPT_HEADER) == 3


async def test_retry_on_exception_types_is_a_retry(bus: Bus, namespace: str) -> None:
    attempts: list[int] = []

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionResetError("database briefly unreachable")

    runner = bus.runner()
    runner.add(_spec(namespace), handle, retry_on=(ConnectionError,))
    await runner.start()
    await bus.publisher.publish(_event())
    await eventually(_settled(bus, 2), timeout=10, what="the retried event handled")
    assert attempts == [1, 2]
    assert bus.outcomes() == ["retried", "handled"]


async def test_retry_with_an_explicit_delay_is_honoured(bus: Bus, namespace: str) -> None:
    seen = Seen()

    async def later(event: CloudEvent[Any], ctx: MessageContext) -> None:
        seen.add(event, ctx)
        if ctx.attempt == 1:
            raise Retry("rate limited; the provider said to come back in 0.7 s", delay=0.7)

    spec = _spec(namespace)
    runner = bus.runner()
    runner.add(spec, later)
    await runner.start()
    await bus.publisher.publish(_event("user-later"))

    await eventually(_settled(bus, 2), timeout=10, what="the delayed retry handled")
    assert [ctx.attempt for ctx in seen.contexts] == [1, 2]
    assert seen.at[1] - seen.at[0] >= 0.65  # not the schedule's 0.2 s
    # It went through a delay queue made for that wait, not through the schedule's.
    assert await bus.queue_depth(spec.retry_queue(0.7)) == 0


@pytest.mark.mongo
async def test_the_same_event_id_is_handled_once(bus: Bus, namespace: str, db: Database) -> None:
    seen = Seen()

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        seen.add(event, ctx)

    runner = bus.runner(guard=MongoIdempotencyGuard(db))
    runner.add(_spec(namespace), handle)
    await runner.start()

    sent = _event("user-once")
    await bus.publisher.publish(sent)
    await bus.publisher.publish(sent)  # the outbox relay and the fast path both published it
    other = _event("user-other")
    await bus.publisher.publish(other)

    await eventually(_settled(bus, 3), timeout=15, what="all three messages settled")
    assert sorted(bus.outcomes()) == ["duplicate", "handled", "handled"]
    assert sorted(e.id for e in seen.events) == sorted([sent.id, other.id])
    record = await db["processed_events"].find_one({"_id": f"{_spec(namespace).queue}|{sent.id}"})
    assert record is not None
    assert record["state"] == "done"


async def test_stop_waits_for_the_handler_in_flight_and_acks(bus: Bus, namespace: str) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(event: CloudEvent[Any], ctx: MessageContext) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(event.id)

    spec = _spec(namespace)
    runner = bus.runner(grace=10)
    runner.add(spec, slow)
    await runner.start()
    sent = _event("user-graceful")
    await bus.publisher.publish(sent)
    await asyncio.wait_for(started.wait(), timeout=10)
    assert runner.inflight == 1

    await runner.stop()

    assert finished == [sent.id]  # stop returned only after the handler did
    assert runner.inflight == 0
    assert bus.outcomes() == ["handled"]
    # Acknowledged before the channel closed: nothing went back to the queue.
    assert await bus.queue_depth(spec.queue) == 0
    # And a stopped runner takes no more work.
    await bus.publisher.publish(_event("user-after-stop"))
    await eventually(lambda: _depth_is(bus, spec.queue, 1), timeout=5, what="the new event waiting in the queue")
    assert finished == [sent.id]


async def test_stop_after_the_grace_period_leaves_the_message_to_the_broker(bus: Bus, namespace: str) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def stuck(event: CloudEvent[Any], ctx: MessageContext) -> None:
        started.set()
        await release.wait()

    spec = _spec(namespace)
    runner = bus.runner(grace=0.3)
    runner.add(spec, stuck)
    await runner.start()
    await bus.publisher.publish(_event("user-stuck"))
    await asyncio.wait_for(started.wait(), timeout=10)
    began = time.monotonic()
    await runner.stop()
    assert 0.25 <= time.monotonic() - began < 5
    release.set()
    # The unacknowledged message went back to the queue for another consumer.
    await eventually(lambda: _depth_is(bus, spec.queue, 1), timeout=5, what="the message back in the queue")
    assert "handled" not in bus.outcomes()


def _consumer_callback(channel: Any, tag: str) -> str:
    return str(getattr(channel.consumers.get(tag), "__qualname__", ""))


async def test_a_consumer_restored_after_its_channel_failed_is_taken_from_aiormq_again(
    bus: Bus, namespace: str
) -> None:
    seen = Seen()

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        seen.add(event, ctx)

    runner = bus.runner()
    runner.add(_spec(namespace), handle)
    await runner.start()
    channel, _queue, tag = runner._consuming[0]  # the one consumer's channel, as aio-pika restores it
    first = await channel.get_underlay_channel()
    # aiormq calls the runner straight away, not aio-pika's wrapper (an IncomingMessage and a second task)
    assert _consumer_callback(first, tag).endswith(".direct")
    await bus.publisher.publish(_event("before"))
    await eventually(_settled(bus, 1), timeout=10, what="the first event handled")

    # A channel error: the broker closes the channel, and aio-pika reopens it and consumes again.
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await first.exchange_declare(f"{namespace}.no-such-exchange", passive=True)

    async def restored() -> Any:
        underlay: Any = await channel.get_underlay_channel()
        return underlay if underlay is not first and not underlay.is_closed and tag in underlay.consumers else None

    second = await eventually(restored, timeout=10, what="the consumer restored on a new channel")
    await bus.publisher.publish(_event("after"))
    await eventually(_settled(bus, 2), timeout=10, what="the second event handled")
    assert bus.outcomes() == ["handled", "handled"]
    assert [e.data.connection_id for e in seen.events] == ["before", "after"]
    assert _consumer_callback(second, tag).endswith(".direct")  # taken over again by its first message
