"""What the webhook dispatcher added to the bus, against the real RabbitMQ: a handler giving up on
purpose (``DeadLetter``), a hiccup retried as the same attempt, parking a message on another
consumer's schedule (``publish_later``), commands sent straight to a queue (``message_types``),
publishing without a confirm, and the queue arguments of at-least-once dead-lettering."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from keyway_shared.bus import (
    ConsumerRunner,
    ConsumerSpec,
    DeadLetter,
    EventPublisher,
    MessageContext,
    Retry,
    RetrySchedule,
    build_message,
)
from keyway_shared.events import CloudEvent, ConnectionCreated, EventData, make_event

from ..support.polling import eventually
from ..support.rabbit import MANAGEMENT_URL

pytestmark = pytest.mark.broker


class Ping(EventData):
    """A command only this test's queue carries."""

    n: int


def _event() -> CloudEvent[EventData]:
    data = ConnectionCreated(connection_id="c", provider_config_key="p", provider="github", auth_mode="OAUTH2")
    return make_event(data, type="connection.created", source="/keyway/test", environment="dev")


def _spec(namespace: str, **extra: Any) -> ConsumerSpec:
    values: dict[str, Any] = {
        "service": "bus-ext",
        "handler": "h",
        "bindings": ("connection.*",),
        "retry": RetrySchedule(delays=(0.2, 0.2)),
        "namespace": namespace,
        "prefetch": 8,
    }
    return ConsumerSpec(**(values | extra))


@pytest.fixture
async def publisher(amqp: AbstractRobustConnection, namespace: str) -> AsyncIterator[EventPublisher]:
    pub = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield pub
    await pub.close()


@pytest.fixture
async def runner(amqp: AbstractRobustConnection, publisher: EventPublisher) -> AsyncIterator[ConsumerRunner]:
    the_runner = ConsumerRunner(connection=amqp, publisher=publisher, queue_type="classic", shutdown_grace=2)
    yield the_runner
    await the_runner.stop()


async def _depth(connection: AbstractRobustConnection, queue: str) -> int:
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def test_dead_letter_gives_up_at_once(
    runner: ConsumerRunner, publisher: EventPublisher, amqp: AbstractRobustConnection, namespace: str
) -> None:
    calls: list[int] = []

    async def give_up(event: CloudEvent[Any], ctx: MessageContext) -> None:
        calls.append(ctx.attempt)
        raise DeadLetter("the receiver is gone")

    spec = _spec(namespace)
    runner.add(spec, give_up)
    await runner.start()
    assert runner.consuming
    await publisher.publish(_event())

    async def dead() -> bool:
        return await _depth(amqp, spec.dead_letter_queue) == 1

    await eventually(dead, timeout=10, what="the message dead-lettered")
    assert calls == [1]  # no retry, although the schedule has two


async def test_a_hiccup_comes_back_as_the_same_attempt_marked_resumed(
    runner: ConsumerRunner, publisher: EventPublisher, namespace: str
) -> None:
    seen: list[tuple[int, bool]] = []

    async def hiccup(event: CloudEvent[Any], ctx: MessageContext) -> None:
        seen.append((ctx.attempt, ctx.redelivered))
        if len(seen) < 3:
            raise Retry("the database blinked", delay=0.1, same_attempt=True)
        if len(seen) == 3:
            raise Retry("a real failure")  # counts: attempt 2, no longer marked resumed

    runner.add(_spec(namespace), hiccup)
    await runner.start()
    await publisher.publish(_event())

    async def four() -> bool:
        return len(seen) >= 4

    await eventually(four, timeout=10, what="four calls")
    assert seen == [(1, False), (1, True), (1, True), (2, False)]


async def test_publish_later_parks_a_message_as_a_given_attempt(
    runner: ConsumerRunner, namespace: str, publisher: EventPublisher
) -> None:
    seen: list[tuple[int, float]] = []

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        seen.append((ctx.attempt, time.monotonic()))

    spec = _spec(namespace, bindings=())
    runner.add(spec, handle)
    await runner.start()
    started = time.monotonic()
    await runner.publish_later(spec, build_message(_event()), delay=0.5, attempt=3)

    async def arrived() -> bool:
        return bool(seen)

    await eventually(arrived, timeout=10, what="the parked message")
    [(attempt, at)] = seen
    assert attempt == 3
    assert at - started >= 0.45  # a delay queue made for that wait held it


async def test_commands_sent_to_a_queue_are_decoded_with_their_own_model(
    runner: ConsumerRunner, publisher: EventPublisher, amqp: AbstractRobustConnection, namespace: str
) -> None:
    seen: list[Any] = []

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        seen.append(event.data)

    spec = _spec(namespace, bindings=(), message_types=(("test.ping", Ping),))
    runner.add(spec, handle)
    await runner.start()
    ping = CloudEvent[Ping](type="test.ping", source="/keyway/test", environment="dev", data=Ping(n=7))
    await publisher.publish_to_queue(build_message(ping), queue=spec.queue)
    bad = CloudEvent[EventData](type="test.ping", source="/keyway/test", environment="dev", data=EventData())
    await publisher.publish_to_queue(build_message(bad), queue=spec.queue)  # no n: invalid

    async def done() -> bool:
        return bool(seen) and await _depth(amqp, spec.dead_letter_queue) == 1

    await eventually(done, timeout=10, what="the ping handled and the bad one dead-lettered")
    assert seen == [Ping(n=7)]


async def test_an_unconfirmed_publish_still_arrives(
    publisher: EventPublisher, amqp: AbstractRobustConnection, namespace: str
) -> None:
    channel = await amqp.channel()
    exchange = await channel.declare_exchange(f"{namespace}.events", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(f"{namespace}.test.unconfirmed")
    await queue.bind(exchange, routing_key="#")
    sent = _event()
    await publisher.publish(sent, confirm=False)
    await publisher.publish(_event().model_copy(update={"type": "nobody.listens"}), confirm=True)  # not mandatory

    async def got() -> aio_pika.abc.AbstractIncomingMessage | None:
        return await queue.get(no_ack=True, fail=False)

    message = await eventually(got, timeout=10, what="the unconfirmed event")
    assert json.loads(message.body)["id"] == sent.id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    await channel.close()


def _arguments(queue: str) -> dict[str, Any]:
    url = f"{MANAGEMENT_URL}/api/queues/%2F/{urllib.parse.quote(queue, safe='')}"
    auth = {"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()}
    request = urllib.request.Request(url, headers=auth)  # noqa: S310 - the local broker
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - the local broker
        return json.load(response)["arguments"]  # type: ignore[no-any-return]


async def test_quorum_retries_dead_letter_at_least_once_and_give_ups_expire(
    amqp: AbstractRobustConnection, publisher: EventPublisher, namespace: str
) -> None:
    quorum = ConsumerRunner(connection=amqp, publisher=publisher, queue_type="quorum", shutdown_grace=2)

    async def handle(event: CloudEvent[Any], ctx: MessageContext) -> None:
        raise Retry("later", delay=0.7)

    spec = _spec(namespace, at_least_once=True, dead_letter_ttl=3600)
    quorum.add(spec, handle)
    await quorum.start()
    try:
        await publisher.publish(_event())

        async def parked() -> bool:
            try:
                return await _depth(amqp, spec.retry_queue(0.7)) >= 0  # the queue made for that wait exists
            except aio_pika.exceptions.ChannelNotFoundEntity:
                return False

        await eventually(parked, timeout=10, what="the retry parked")
        try:
            for name in (spec.queue, spec.retry_queue(0.2), spec.retry_queue(0.7)):
                arguments = _arguments(name)
                assert arguments["x-dead-letter-strategy"] == "at-least-once"
                assert arguments["x-overflow"] == "reject-publish"
            assert _arguments(spec.dead_letter_queue)["x-message-ttl"] == 3_600_000
        except OSError:
            pytest.skip("the RabbitMQ management API is not reachable")
    finally:
        await quorum.stop()
