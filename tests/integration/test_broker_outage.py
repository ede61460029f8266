"""A consumer service and the real broker through a TCP proxy: started while the broker's port
closes every connection, it connects and consumes once the proxy lets it through, with no restart;
``/readyz`` answers 503 while the link is cut and 200 again once it is back.

The service (the activity log: one consumer, nothing else between it and the broker) runs as its
entry point runs it, under uvloop, on a thread of its own with a busy loop; see
``tests/support/faults.py`` for why that is what makes aio-pika raise ``StopAsyncIteration``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

import aio_pika
import aiohttp
import pytest

from activity_log.app import create_app
from activity_log.settings import ActivityLogSettings
from keyway_shared.bus import EventPublisher, declare_topology
from keyway_shared.events import ActivityMessage
from keyway_shared.service import broker as broker_module

from ..support.faults import ClosingPort, UvloopService
from ..support.inproc import event
from ..support.polling import eventually
from ..support.procs import free_port
from ..support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

HEAL_WITHIN = 30.0  # seconds from the broker's return to a service consuming again (issue 15)


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    target = urlparse(amqp_url)
    link = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    yield link
    await link.cut()


@pytest.fixture
async def publisher(amqp: aio_pika.abc.AbstractRobustConnection, namespace: str) -> AsyncIterator[EventPublisher]:
    channel = await amqp.channel()
    await declare_topology(channel, namespace=namespace, queue_type="classic")
    await channel.close()
    events = EventPublisher(amqp, exchange_name=f"{namespace}.events")
    yield events
    await events.close()


def through(proxy: TcpProxy, amqp_url: str) -> str:
    target = urlparse(amqp_url)
    return amqp_url.replace(f"{target.hostname}:{target.port or 5672}", f"127.0.0.1:{proxy.port}", 1)


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, await resp.json()


async def consumes(publisher: EventPublisher, db: Any, tag: str) -> None:
    """An event published now is stored by the service."""
    sent = event("activity.message", ActivityMessage(operation_id=tag, operation_type="webhook:outgoing", message=tag))
    await publisher.publish(sent)

    async def stored() -> bool:
        return await db["activity_messages"].find_one({"_id": sent.id}) is not None

    await eventually(stored, timeout=HEAL_WITHIN, what=f"the event published {tag} to be stored")


def activity_log(service_settings: dict[str, Any], amqp_url: str, port: int) -> UvloopService:
    settings = ActivityLogSettings(
        **(service_settings | {"amqp_url": amqp_url}),
        batch_size=10,
        batch_delay_ms=20,
        broker_outage_bound_seconds=0,
        shutdown_grace_seconds=2,
    )
    return UvloopService(lambda: create_app(settings), port=port)


async def test_a_service_started_while_the_broker_refuses_connects_once_it_accepts(
    proxy: TcpProxy,
    publisher: EventPublisher,
    service_settings: dict[str, Any],
    amqp_url: str,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raised: list[type[BaseException]] = []
    real_connect = broker_module.connect

    async def connect(url: str, *, name: str) -> Any:
        try:
            return await real_connect(url, name=name)
        except BaseException as exc:
            raised.append(type(exc))
            raise

    monkeypatch.setattr(broker_module, "connect", connect)
    refusing = ClosingPort(proxy.port)  # the proxy's port, before the proxy: closes every connection
    service = activity_log(service_settings, through(proxy, amqp_url), free_port())
    await service.start()
    try:

        async def met() -> bool:
            return StopAsyncIteration in raised

        await eventually(met, timeout=30, what="aio-pika to raise StopAsyncIteration under uvloop")
        status, body = await readyz(service.port)
        assert (status, body["checks"]["broker"]) == (503, False)

        refusing.close()
        await proxy.start()

        async def ready() -> bool:
            return (await readyz(service.port))[0] == 200

        await eventually(ready, timeout=HEAL_WITHIN, what="the service to connect once the proxy accepts")
        await consumes(publisher, db, "after-the-refusal")
    finally:
        refusing.close()
        await service.stop()


async def test_readiness_is_503_while_the_link_is_cut_and_200_once_it_is_back(
    proxy: TcpProxy, publisher: EventPublisher, service_settings: dict[str, Any], amqp_url: str, db: Any
) -> None:
    await proxy.start()
    service = activity_log(service_settings, through(proxy, amqp_url), free_port())
    await service.start()
    try:

        async def status_is(expected: int) -> bool:
            return (await readyz(service.port))[0] == expected

        await eventually(lambda: status_is(200), timeout=HEAL_WITHIN, what="the service to connect")
        await consumes(publisher, db, "before-the-cut")

        await proxy.cut()
        await eventually(lambda: status_is(503), timeout=10, what="/readyz to say 503 while the link is cut")
        status, body = await readyz(service.port)
        assert (status, body["checks"]) == (503, {"broker": False, "mongo": True})

        await proxy.start()
        await eventually(lambda: status_is(200), timeout=HEAL_WITHIN, what="/readyz 200 once the link is back")
        await consumes(publisher, db, "after-the-cut")
    finally:
        await service.stop()
