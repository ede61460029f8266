"""Ingest survives a MongoDB restart mid-stream: every published event is stored exactly once.

The test runs its own MongoDB-wire server (the suite's shared one must not restart under other
tests), publishes a steady stream, stops the server in the middle (SIGTERM, or SIGKILL with
WiredTiger recovery on restart), starts it again on the same port and data, and then compares
what is stored with what was published: no message missing, none twice, no operation lost or
split, nothing dead-lettered.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from activity_log.app import create_app, record_spec
from activity_log.settings import ActivityLogSettings
from keyway_shared.bus import EventPublisher, declare_topology
from keyway_shared.events import ActivityMessage, CloudEvent, EventData

from ..support.inproc import event, running
from ..support.polling import eventually
from ..support.procs import free_port, start_mongo

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

OPERATIONS = 1500  # two events each: a step, then the outcome


@pytest.fixture
async def own_mongo(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    proc, url = start_mongo(data, port=port)
    server = {"proc": proc, "url": url, "port": port, "data": data}
    yield server
    server["proc"].terminate()
    server["proc"].wait(timeout=30)


def events_for(index: int) -> list[CloudEvent[EventData]]:
    op = f"op-{index:05d}"
    kind = "auth:create_connection" if index % 2 else "webhook:outgoing"
    return [
        event(
            "activity.message",
            ActivityMessage(operation_id=op, operation_type=kind, message="started", state="running"),
        ),
        event(
            "activity.message", ActivityMessage(operation_id=op, operation_type=kind, message="done", state="success")
        ),
    ]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_no_entry_is_lost_or_doubled_across_a_database_restart(
    own_mongo: dict[str, Any],
    amqp: aio_pika.abc.AbstractRobustConnection,
    amqp_url: str,
    namespace: str,
    stop: signal.Signals,
) -> None:
    settings = ActivityLogSettings(
        mongodb_url=own_mongo["url"],
        mongodb_database="restart",
        amqp_url=amqp_url,
        bus_namespace=namespace,
        queue_type="classic",
        batch_size=100,
        batch_delay_ms=20,
    )
    channel = await amqp.channel()
    await declare_topology(channel, namespace=namespace, queue_type="classic")
    publisher = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(own_mongo["url"], serverSelectionTimeoutMS=20_000)
    messages = client["restart"]["activity_messages"]
    published: list[str] = []

    async def publish_stream() -> None:
        for index in range(OPERATIONS):
            batch = events_for(index)
            await publisher.publish_many(batch)
            published.extend(e.id for e in batch)
            if index % 50 == 0:
                await asyncio.sleep(0.05)  # a steady stream, not one burst

    try:
        async with running(create_app(settings)):
            stream = asyncio.create_task(publish_stream())

            async def some_stored() -> bool:
                return await messages.estimated_document_count() >= 600

            await eventually(some_stored, timeout=60, what="ingest to be under way")
            proc = own_mongo["proc"]
            proc.send_signal(stop)
            await asyncio.to_thread(proc.wait, 30)
            await asyncio.sleep(1.0)  # the service meets a database that is gone
            own_mongo["proc"], _ = start_mongo(own_mongo["data"], port=own_mongo["port"])
            await stream

            async def all_stored() -> bool:
                return await messages.estimated_document_count() >= len(published)

            await eventually(all_stored, timeout=180, interval=0.5, what="every published event to be stored")
            await asyncio.sleep(1.0)  # anything stored twice would show up now
        stored = [doc["_id"] async for doc in messages.find({}, {"_id": 1})]
        assert len(stored) == len(published) == 2 * OPERATIONS
        assert set(stored) == set(published)
        operations = await client["restart"]["activity_operations"].find({}, {"state": 1}).to_list()
        assert len(operations) == OPERATIONS
        assert {doc["state"] for doc in operations} == {"success"}
        dead = await channel.declare_queue(record_spec(settings).dead_letter_queue, passive=True)
        assert dead.declaration_result.message_count == 0
    finally:
        await client.close()
        await channel.close()
