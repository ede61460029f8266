"""Driving connect flows the way the frontend SDK does, and watching what they announce on the bus.

A flow needs a browser: the callback must bring back the cookie ``/oauth/connect`` set. ``gw.client``
is one (its jar keeps cookies of 127.0.0.1, and the provider is visited through the same session);
:func:`browser` opens another, with a jar of its own, for a second person.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aio_pika.abc import AbstractQueue

from ..support.polling import eventually
from .gateway_app import Gateway

ANNOUNCED = ("auth.failed", "connection.created", "connection.updated")


@dataclass
class EventWatch:
    """Every auth.failed / connection.* event the gateway publishes during one test."""

    queue: AbstractQueue
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def _drain(self) -> None:
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            self.seen.append(json.loads(message.body))

    async def wait_for(self, kind: str, connection_id: str | None = None, timeout: float = 15) -> dict[str, Any]:
        """The data of the first ``kind`` event (for ``connection_id`` when given)."""

        async def probe() -> dict[str, Any] | None:
            await self._drain()
            for event in self.seen:
                if event["type"] == kind and (
                    connection_id is None or event["data"].get("connection_id") == connection_id
                ):
                    return dict(event["data"])
            return None

        return await eventually(probe, timeout=timeout, what=f"a {kind} event for {connection_id}")

    async def failure_types(self, count: int, timeout: float = 15) -> list[str]:
        """The error types of the auth.failed events, once there are at least ``count``."""

        async def probe() -> list[str] | None:
            await self._drain()
            types = [event["data"]["error"]["type"] for event in self.seen if event["type"] == "auth.failed"]
            return types if len(types) >= count else None

        return await eventually(probe, timeout=timeout, what=f"{count} auth.failed events")

    def announced_connection(self, connection_id: str) -> bool:
        """Whether a connection.* event for ``connection_id`` has been seen so far."""
        return any(
            event["type"].startswith("connection.") and event["data"].get("connection_id") == connection_id
            for event in self.seen
        )


@asynccontextmanager
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A browser of its own: its cookies, kept as a browser keeps them (also for 127.0.0.1, which
    aiohttp's default jar refuses), and sent back to the host that set them."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def open_socket(gw: Gateway) -> tuple[Any, str]:
    socket = await gw.client.ws_connect("/")
    ack = json.loads((await socket.receive()).data)
    assert ack["message_type"] == "connection_ack"
    return socket, ack["ws_client_id"]


@dataclass
class PopupResult:
    status: int
    html: str
    frame: dict[str, Any]
    provider_redirect: str | None  # where the gateway sent the browser first, if anywhere
    callback: str | None = None  # the gateway URL the provider sent the browser back to (path and query)


async def run_popup(gw: Gateway, key: str, query: str) -> PopupResult:
    """connect → the provider's page → back to the gateway, with the WebSocket the SDK would hold open.

    The browser is ``gw.client``: the provider's page is visited through its session, so the callback
    carries the cookie the connect request set.
    """
    socket, ws_client_id = await open_socket(gw)
    try:
        resp = await gw.client.get(
            f"/oauth/connect/{key}?{query}&public_key={gw.public_key}&ws_client_id={ws_client_id}",
            allow_redirects=False,
        )
        if resp.status != 302:
            frame = json.loads((await socket.receive(timeout=10)).data)
            return PopupResult(resp.status, await resp.text(), frame, None)
        location = resp.headers["Location"]
        resp.release()
        async with gw.client.session.get(location, allow_redirects=False) as provider_page:
            assert provider_page.status == 302, await provider_page.text()
            back = urlsplit(provider_page.headers["Location"])
        callback = f"{back.path}?{back.query}"
        resp = await gw.client.get(callback, allow_redirects=False)
        frame = json.loads((await socket.receive(timeout=10)).data)
        return PopupResult(resp.status, await resp.text(), frame, location, callback)
    finally:
        await socket.close()


async def get_connection(gw: Gateway, connection_id: str, key: str) -> dict[str, Any]:
    resp = await gw.client.get(f"/connection/{connection_id}?provider_config_key={key}", headers=gw.auth)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


@asynccontextmanager
async def watched_events(amqp: Any, namespace: str, name: str) -> AsyncIterator[EventWatch]:
    """An EventWatch on a queue of the test's own (``<namespace>.test.<name>``), bound to ANNOUNCED."""
    channel = await amqp.channel()
    try:
        exchange = await channel.declare_exchange(f"{namespace}.events", "topic", durable=True)
        queue = await channel.declare_queue(f"{namespace}.test.{name}", auto_delete=True)
        for kind in ANNOUNCED:
            await queue.bind(exchange, routing_key=kind)
        yield EventWatch(queue)
    finally:
        await channel.close()
