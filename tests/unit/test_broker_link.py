"""The broker link under faults, with no broker: it never stops trying, and its health endpoints tell
the link as it is now.

The services run under uvloop (``keyway_shared.service.runner.serve`` sets uvloop's event loop
policy), and there aio-pika raises ``StopAsyncIteration`` out of a connect when the peer closes the
socket before its first frame arrives in the same turn of a busy loop: what a TCP proxy with no
broker behind it, or a broker still starting, does. A link that only caught connection errors died
of it silently. The readiness tests give the link a stand-in for aio-pika's robust connection, cut
and restored the way aio-pika reports it (``connected`` cleared, close callbacks, a closed
transport; then reconnect callbacks); the real broker's version is in
``tests/integration/test_broker_outage.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from keyway_shared.service import BROKER, BrokerLink, add_readiness_routes
from keyway_shared.service import broker as broker_module

from ..support.faults import ClosingPort, busy_loop
from ..support.polling import eventually

# --- a refused connection under uvloop -------------------------------------------------------------


def _under_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    # A thread of its own: uvloop.run must not replace the test session's event loop.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(uvloop.run, scenario()).result(timeout=60)


def test_the_link_keeps_connecting_after_aio_pika_raises_stop_async_iteration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = ClosingPort()
    raised: list[type[BaseException]] = []
    real_connect = broker_module.connect

    async def connect(url: str, *, name: str) -> Any:
        try:
            return await real_connect(url, name=name)
        except BaseException as exc:
            raised.append(type(exc))
            raise

    monkeypatch.setattr(broker_module, "connect", connect)

    async def scenario() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        busy = asyncio.create_task(busy_loop())
        link = BrokerLink(f"amqp://guest:guest@127.0.0.1:{port.port}/", name="test", max_backoff=0.05)
        link.start()
        try:

            async def met() -> bool:
                return StopAsyncIteration in raised

            await eventually(met, timeout=20, what="aio-pika to raise StopAsyncIteration under uvloop")
            after = len(raised)

            async def still_trying() -> bool:
                return len(raised) >= after + 5

            await eventually(still_trying, timeout=10, what="more connection attempts after StopAsyncIteration")
            assert link.can_recover
            assert not link.is_ready
        finally:
            busy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await busy
            await link.close()

    try:
        _under_uvloop(scenario)
    finally:
        port.close()


# --- readiness and liveness after a cut ------------------------------------------------------------


class _ProbeChannel:
    async def close(self) -> None:
        return None


class _Underlay:
    """aiormq's connection, as the readiness probe uses it."""

    def __init__(self) -> None:
        self.is_closed = False
        self.answers = True  # False: a blackholed link, where a channel never opens

    async def channel(self, **_: Any) -> _ProbeChannel:
        if self.is_closed:
            raise RuntimeError("connection closed")
        if not self.answers:
            await asyncio.Event().wait()
        return _ProbeChannel()


class _Transport:
    def __init__(self) -> None:
        self.connection = _Underlay()


class _Callbacks:
    def __init__(self, sender: Any) -> None:
        self._sender = sender
        self._callbacks: list[Callable[..., Any]] = []

    def add(self, callback: Callable[..., Any], weak: bool = False) -> None:
        self._callbacks.append(callback)

    def __call__(self, *args: Any) -> None:
        for callback in self._callbacks:
            callback(self._sender, *args)


class FakeRobustConnection:
    """What the link and the probe read of aio-pika's RobustConnection, with the events of a cut."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.transport: _Transport | None = _Transport()
        self.close_callbacks = _Callbacks(self)
        self.reconnect_callbacks = _Callbacks(self)
        self._closed = asyncio.get_running_loop().create_future()
        self.close_called = False

    @property
    def is_closed(self) -> bool:
        return self._closed.done()

    def closed(self) -> Awaitable[bool]:
        return asyncio.shield(self._closed)

    async def ready(self) -> None:
        await self.connected.wait()

    def cut(self) -> None:
        """The broker went away: aio-pika clears ``connected`` and runs the close callbacks."""
        assert self.transport is not None
        self.transport.connection.is_closed = True
        self.connected.clear()
        self.close_callbacks(ConnectionResetError("reset by peer"))

    def restore(self) -> None:
        self.transport = _Transport()
        self.connected.set()
        self.reconnect_callbacks()

    def give_up(self) -> None:
        """Closed for good underneath the link (its reconnecting ended)."""
        self.close_called = True
        self._closed.set_result(True)

    async def close(self) -> None:
        if not self._closed.done():
            self._closed.set_result(True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def served_link(
    monkeypatch: pytest.MonkeyPatch, *, outage_bound: float = 30.0, clock: Clock | None = None
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], FakeRobustConnection, BrokerLink]]:
    connection = FakeRobustConnection()

    async def connect(url: str, *, name: str) -> FakeRobustConnection:
        return connection

    monkeypatch.setattr(broker_module, "connect", connect)
    app = web.Application()
    link_ = BrokerLink("amqp://unused/", name="test", **({"clock": clock} if clock else {}))
    link_.outage_bound = outage_bound
    app[BROKER] = link_
    add_readiness_routes(app, service="test")
    link_.start()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        try:
            yield client, connection, link_
        finally:
            await link_.close()


async def broker_check(client: TestClient[web.Request, web.Application]) -> bool:
    resp = await client.get("/readyz")
    checks: dict[str, bool] = (await resp.json())["checks"]
    return checks["broker"]


async def test_readiness_follows_the_link_through_a_cut_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async with served_link(monkeypatch, outage_bound=0.0) as (client, connection, link):
        await eventually(lambda: broker_check(client), what="the broker ready once connected")
        connection.cut()
        assert await broker_check(client) is False
        assert not link.is_connected
        connection.restore()
        assert await broker_check(client) is True


async def test_a_short_outage_does_not_flip_readiness_until_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    async with served_link(monkeypatch, outage_bound=30.0, clock=clock) as (client, connection, _link):
        await eventually(lambda: broker_check(client), what="the broker ready once connected")
        connection.cut()
        clock.now += 29
        assert await broker_check(client) is True  # a blip: the gateway keeps serving with its outbox
        clock.now += 2
        assert await broker_check(client) is False
        connection.restore()
        assert await broker_check(client) is True


async def test_a_link_that_stops_answering_is_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blackholed: the connection still looks open (no heartbeat missed yet), but nothing comes back.
    async with served_link(monkeypatch, outage_bound=0.0) as (client, connection, _link):
        await eventually(lambda: broker_check(client), what="the broker ready once connected")
        assert connection.transport is not None
        connection.transport.connection.answers = False
        assert await broker_check(client) is False


async def test_liveness_fails_once_the_link_cannot_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async with served_link(monkeypatch) as (client, connection, _link):
        await eventually(lambda: broker_check(client), what="the broker ready once connected")
        assert (await client.get("/healthz")).status == 200
        connection.cut()
        assert (await client.get("/healthz")).status == 200  # reconnecting: waiting helps
        connection.give_up()

        async def dead() -> bool:
            return (await client.get("/healthz")).status == 503

        await eventually(dead, what="/healthz to report a link that cannot recover")
        body = await (await client.get("/healthz")).json()
        assert body["checks"] == {"broker": False}
