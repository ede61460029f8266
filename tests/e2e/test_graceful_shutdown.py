"""SIGTERM mid-work loses nothing: every accepted write keeps its event, every event gets stored."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import aio_pika
import aiohttp
import pytest

from keyway_shared.bus import EventPublisher
from keyway_shared.events import ConnectionCreated, make_event

from ..support.polling import eventually
from ..support.stack import Stack
from .conftest import wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]


async def test_gateway_sigterm_under_load_keeps_every_event(
    cleanup_stack: Stack, http: aiohttp.ClientSession, mongo_client: Any, amqp_url: str
) -> None:
    stack = cleanup_stack
    watch_conn = await aio_pika.connect(amqp_url)
    channel = await watch_conn.channel()
    exchange = await channel.declare_exchange(f"{stack.namespace}.events", "topic", durable=True)
    watch = await channel.declare_queue(f"{stack.namespace}.test.watch")
    await watch.bind(exchange, routing_key="connection.created")

    gateway = stack.start("auth_gateway")
    assert gateway.port is not None
    await wait_ready(http, gateway.port)
    base = f"http://127.0.0.1:{gateway.port}"
    auth = {"Authorization": f"Bearer {stack.secret_key}"}
    async with http.post(
        f"{base}/config", json={"provider": "posthog", "provider_config_key": "ph"}, headers=auth
    ) as r:
        assert r.status == 200

    accepted: set[str] = set()

    async def connect(i: int) -> None:
        url = f"{base}/api-auth/api-key/ph?connection_id=c{i}&public_key={stack.public_key}"
        try:
            async with http.post(url, json={"apiKey": f"key-{i}"}) as resp:
                if resp.status == 200:
                    accepted.add(f"c{i}")
        except aiohttp.ClientError:
            pass  # the gateway stopped listening: this request was not accepted

    tasks = [asyncio.create_task(connect(i)) for i in range(300)]
    await eventually(lambda: _at_least(accepted, 30), timeout=30, what="some accepted connections")
    gateway.signal(signal.SIGTERM)
    await asyncio.gather(*tasks)
    assert gateway.proc is not None
    assert await asyncio.to_thread(gateway.proc.wait, 30) == 0  # exited by itself, gracefully
    assert accepted, "no request was accepted before SIGTERM"

    db = mongo_client[stack.database]
    stored = {doc["connection_id"] async for doc in db["connections"].find({}, {"connection_id": 1})}
    assert accepted <= stored  # every 200 answer was a durable write

    # A new replica relays whatever the stopped one had not published yet.
    stack.start("auth_gateway")
    published: list[str] = []

    async def all_published() -> bool:
        while (message := await watch.get(no_ack=True, fail=False)) is not None:
            published.append(json.loads(message.body)["data"]["connection_id"])
        return set(published) >= stored and await db["outbox"].count_documents({}) == 0

    await eventually(all_published, timeout=40, what="every stored connection's event")
    assert set(published) == stored  # nothing lost, nothing invented
    await watch_conn.close()


async def _at_least(items: set[str], count: int) -> bool:
    return len(items) >= count


async def test_activity_log_sigterm_mid_batch_stores_every_event_once(
    cleanup_stack: Stack, http: aiohttp.ClientSession, mongo_client: Any, amqp_url: str
) -> None:
    stack = cleanup_stack
    activity = stack.start("activity_log")
    assert activity.port is not None
    await wait_ready(http, activity.port)
    connection = await aio_pika.connect_robust(amqp_url)
    publisher = EventPublisher(connection, exchange_name=f"{stack.namespace}.events")
    events = [
        make_event(
            ConnectionCreated(connection_id=f"c{i}", provider_config_key="ph", provider="posthog", auth_mode="API_KEY"),
            type="connection.created",
            source="/test",
            environment="dev",
        )
        for i in range(2000)
    ]
    db = mongo_client[stack.database]
    publishing = asyncio.create_task(publisher.publish_many(events))
    await eventually(lambda: _count_at_least(db["activity_messages"], 100), timeout=30, what="the first stored entries")
    activity.signal(signal.SIGTERM)
    await publishing
    assert activity.proc is not None
    assert await asyncio.to_thread(activity.proc.wait, 30) == 0
    stack.start("activity_log")
    await eventually(lambda: _count_at_least(db["activity_messages"], 2000), timeout=60, what="all 2000 entries")
    ids = [doc["_id"] async for doc in db["activity_messages"].find({}, {"_id": 1})]
    assert sorted(ids) == sorted(e.id for e in events)  # each exactly once
    await connection.close()


async def _count_at_least(collection: Any, count: int) -> bool:
    return bool(await collection.count_documents({}) >= count)
