"""A connection written while RabbitMQ is unreachable still has its event published, exactly once."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlparse

import pytest

from ..support.polling import eventually
from ..support.procs import free_port
from ..support.tcpproxy import TcpProxy
from .gateway_app import Gateway, StartGateway

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


async def _watch(amqp: Any, namespace: str) -> Any:
    channel = await amqp.channel()
    exchange = await channel.declare_exchange(f"{namespace}.events", "topic", durable=True)
    queue = await channel.declare_queue(f"{namespace}.test.watch", durable=False, auto_delete=False)
    await queue.bind(exchange, routing_key="connection.*")
    return queue


async def _drain(queue: Any) -> list[dict[str, Any]]:
    events = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        events.append(json.loads(message.body))
    return events


async def _connect(gw: Gateway, connection_id: str) -> None:
    resp = await gw.client.post("/config", json={"provider": "posthog", "provider_config_key": "ph"}, headers=gw.auth)
    assert resp.status in (200, 409)
    resp = await gw.client.post(
        f"/api-auth/api-key/ph?connection_id={connection_id}&public_key={gw.public_key}", json={"apiKey": "k-1"}
    )
    assert resp.status == 200, await resp.text()


async def test_event_survives_a_broker_outage(
    start_gateway: StartGateway, db: Any, amqp_url: str, namespace: str, amqp: Any
) -> None:
    target = urlparse(amqp_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.start()
    proxied = amqp_url.replace(f"{target.hostname}:{target.port or 5672}", f"127.0.0.1:{proxy.port}")
    if proxied == amqp_url:
        proxied = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    watch = await _watch(amqp, namespace)
    async with start_gateway(amqp_url=proxied, outbox_sweep_seconds=0.3, outbox_stale_seconds=0.5) as gw:

        async def ready() -> bool:
            resp = await gw.client.get("/readyz")
            return resp.status == 200

        await eventually(ready, what="gateway connected to the broker")
        await proxy.cut()
        await _connect(gw, "during-outage")
        assert await db["connections"].count_documents({"connection_id": "during-outage"}) == 1
        assert await db["outbox"].count_documents({}) == 1  # written with the connection, not yet published
        assert await _drain(watch) == []

        await proxy.start()
        seen: list[dict[str, Any]] = []

        async def delivered() -> bool:
            seen.extend(await _drain(watch))
            return bool(seen) and await db["outbox"].count_documents({}) == 0

        await eventually(delivered, timeout=40, what="the outbox relay after the broker came back")
        await asyncio.sleep(1.5)  # several more sweeps, which must not publish it again
        seen.extend(await _drain(watch))
        assert [e["type"] for e in seen] == ["connection.created"]
        assert seen[0]["data"]["connection_id"] == "during-outage"
    await proxy.cut()


async def test_gateway_started_against_a_dead_broker_publishes_after_restart(
    start_gateway: StartGateway, db: Any, namespace: str, amqp: Any
) -> None:
    watch = await _watch(amqp, namespace)
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    async with start_gateway(amqp_url=dead) as gw:
        resp = await gw.client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["checks"] == {"broker": False, "mongo": True}
        await _connect(gw, "while-dead")
    assert await db["outbox"].count_documents({}) == 1
    async with start_gateway(outbox_sweep_seconds=0.3, outbox_stale_seconds=0.5):
        seen: list[dict[str, Any]] = []

        async def delivered() -> bool:
            seen.extend(await _drain(watch))
            return bool(seen) and await db["outbox"].count_documents({}) == 0

        await eventually(delivered, timeout=30, what="the event relayed after restart")
    seen.extend(await _drain(watch))
    assert [(e["type"], e["data"]["connection_id"]) for e in seen] == [("connection.created", "while-dead")]
