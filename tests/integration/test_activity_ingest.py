"""The activity-log consumer's settle policy against the real RabbitMQ and MongoDB-wire server:
batches acknowledged with one ack each, a batch the database refused retried through the broker,
an event the models reject dead-lettered, and every other event stored exactly once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aio_pika
import pytest
from pymongo.errors import OperationFailure

from activity_log.app import entry_reader, record_spec
from activity_log.entries import Entry
from activity_log.ingest import ENTRIES, IngestConsumer
from activity_log.settings import ActivityLogSettings
from activity_log.writer import ActivityWriter
from keyway_shared.bus import EventPublisher, declare_topology
from keyway_shared.events import ActivityMessage, CloudEvent, EventData

from ..support.inproc import event
from ..support.polling import eventually

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


def steps(count: int, prefix: str) -> list[CloudEvent[EventData]]:
    return [
        event(
            "activity.message",
            ActivityMessage(operation_id=f"{prefix}-{i // 2}", operation_type="webhook:outgoing", message=f"step {i}"),
        )
        for i in range(count)
    ]


@pytest.fixture
async def bus(
    amqp: aio_pika.abc.AbstractRobustConnection, namespace: str
) -> AsyncIterator[tuple[ActivityLogSettings, EventPublisher, aio_pika.abc.AbstractChannel]]:
    settings = ActivityLogSettings(bus_namespace=namespace, queue_type="classic", batch_size=50, batch_delay_ms=20)
    channel = await amqp.channel()
    await declare_topology(channel, namespace=namespace, queue_type="classic")
    publisher = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield settings, publisher, channel
    await publisher.close()
    await channel.close()


def consumer(settings: ActivityLogSettings, write: Any) -> IngestConsumer:
    return IngestConsumer(
        record_spec(settings),
        make_entry=entry_reader(retention=timedelta(days=1)),
        write=write,
        batch_size=settings.batch_size,
        batch_delay=settings.batch_delay_ms / 1000,
        queue_type="classic",
    )


async def depth(amqp: aio_pika.abc.AbstractRobustConnection, queue: str) -> int:
    # A channel of its own: a passive declare on a robust channel may answer from its cache.
    channel = await amqp.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()


async def test_batches_are_stored_once_and_the_queue_is_left_empty(
    bus: tuple[ActivityLogSettings, EventPublisher, Any], amqp: aio_pika.abc.AbstractRobustConnection, db: Any
) -> None:
    settings, publisher, _ = bus
    events = steps(420, "op")
    writes: list[int] = []
    writer = ActivityWriter(db)

    async def write(entries: list[Entry]) -> None:
        writes.append(len(entries))
        await writer.write(entries)

    ingest = consumer(settings, write)
    await ingest.start(amqp, publisher)
    try:
        await publisher.publish_many(events)

        async def all_stored() -> bool:
            return ingest.stored >= len(events)

        await eventually(all_stored, what="every event to be stored")
    finally:
        await ingest.stop()
    assert ingest.stored == len(events) == sum(writes)
    assert max(writes) <= settings.batch_size
    stored = [doc["_id"] async for doc in db["activity_messages"].find({}, {"_id": 1})]
    assert sorted(stored) == sorted(e.id for e in events)
    assert await depth(amqp, record_spec(settings).queue) == 0  # nothing left unacknowledged and requeued


async def test_a_refused_batch_comes_back_through_the_delay_queue_and_an_invalid_event_is_dead_lettered(
    bus: tuple[ActivityLogSettings, EventPublisher, Any], amqp: aio_pika.abc.AbstractRobustConnection, db: Any
) -> None:
    settings, publisher, channel = bus
    spec = record_spec(settings)
    events = steps(30, "again")
    writer = ActivityWriter(db)
    refusals = 0

    async def refuse_first(entries: list[Entry]) -> None:
        nonlocal refusals
        if refusals == 0:
            refusals += 1
            raise OperationFailure("not primary", code=10107)
        await writer.write(entries)

    retried_before = ENTRIES.labels("retried")._value.get()
    ingest = consumer(settings, refuse_first)
    await ingest.start(amqp, publisher)
    try:
        invalid = json.loads(events[0].to_json_bytes())
        invalid["id"] = "not-an-event"
        invalid["data"]["level"] = "loud"  # a level the models do not know
        exchange = await channel.get_exchange(spec.exchange)
        await exchange.publish(aio_pika.Message(json.dumps(invalid).encode()), routing_key="activity.message")
        await publisher.publish_many(events)

        async def all_stored() -> bool:
            return await db["activity_messages"].count_documents({}) >= len(events)

        await eventually(all_stored, timeout=30, what="the refused events to come back and be stored")
    finally:
        await ingest.stop()
    assert refusals == 1
    assert ENTRIES.labels("retried")._value.get() > retried_before
    stored = [doc["_id"] async for doc in db["activity_messages"].find({}, {"_id": 1})]
    assert sorted(stored) == sorted(e.id for e in events)  # each once, the invalid one not at all
    assert await depth(amqp, spec.queue) == 0

    async def dead_lettered() -> bool:
        return await depth(amqp, spec.dead_letter_queue) == 1

    await eventually(dead_lettered, what="the invalid event in the dead-letter queue")
    reader = await amqp.channel()
    try:
        message = await (await reader.declare_queue(spec.dead_letter_queue, passive=True)).get(no_ack=True)
    finally:
        await reader.close()
    assert message is not None
    assert json.loads(message.body)["id"] == "not-an-event"
