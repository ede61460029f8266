"""The WebSocket at the host root that tells the frontend SDK how its popup flow ended (spec §2.4).

A socket gets ``connection_ack`` with its ``ws_client_id`` at once, then exactly one ``success`` or
``error`` frame. With several gateway replicas the callback often lands on a replica that does not
hold the socket, so results also travel through a fanout exchange every replica listens to; the
one holding the socket delivers the frame, the others drop it.

The socket needs no key (the SDK opens it before anything else), so each replica holds at most
``KEYWAY_WEBSOCKETS_PER_CLIENT`` of them per client address (429 past it), and when
``KEYWAY_WEBSOCKET_ALLOWED_ORIGINS`` names the frontend's origins a browser on any other page is
refused (403), but for the gateway's own (``KEYWAY_PUBLIC_URL``'s), whose Connect UI opens the socket
for its popups. Without that setting any origin may connect, as before: apps on the SDK serve their
pages from origins the gateway cannot know. A client that sends no ``Origin`` is not a browser
(browsers always send one on a WebSocket handshake) and is let through.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import WSMsgType, web
from prometheus_client import Gauge

from keyway_shared.bus.fanout import listen_to_fanout
from keyway_shared.deadline import remaining
from keyway_shared.logging import get_logger
from keyway_shared.service import BROKER

from ..http.client_address import client_address, client_key
from ..http.errors import ApiError
from ..openapi_spec import no_credential
from ..resources import SETTINGS
from ..settings import GatewaySettings

__all__ = ["WS_HUB", "WsHub", "websocket_or_index", "ws_context"]

log = get_logger(__name__)
OPEN_SOCKETS = Gauge("keyway_gateway_websockets", "Frontend SDK sockets open on this replica")
_ROUTE_PATIENCE = 5.0  # seconds a result routed to another replica may wait for the broker


class WsHub:
    def __init__(self, *, exchange_name: str, per_client: int = 0) -> None:
        self._exchange_name = exchange_name
        self._per_client = per_client  # 0: no cap
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._open_by_client: dict[str, int] = {}
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def attach(self, connection: AbstractRobustConnection) -> None:
        """Listen for results routed by other replicas (a server-named queue per replica).

        A failed try closes its channel: the broker link tries again, and a half-declared channel
        left open would be restored by every reconnection.
        """
        self._exchange = await listen_to_fanout(connection, self._exchange_name, self._on_routed)

    async def _on_routed(self, message: AbstractIncomingMessage) -> None:
        try:
            envelope = json.loads(message.body)
            await self._send_local(envelope["ws_client_id"], envelope["message"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed websocket result")

    async def _send_local(self, ws_client_id: str, message: dict[str, Any]) -> bool:
        socket = self._sockets.pop(ws_client_id, None)
        if socket is None or socket.closed:
            return False
        with contextlib.suppress(ConnectionError, RuntimeError):
            await socket.send_str(json.dumps(message))
        return True

    async def notify(self, ws_client_id: str | None, message: dict[str, Any]) -> None:
        """Deliver one result frame to the socket, wherever it is open."""
        if not ws_client_id:
            return
        if await self._send_local(ws_client_id, message):
            return
        if self._exchange is None:
            log.warning("no broker to route a websocket result through", ws_client_id=ws_client_id)
            return
        body = json.dumps({"ws_client_id": ws_client_id, "message": message}).encode()
        try:
            # Within the request's deadline: a blackholed broker would hold the confirmation for minutes.
            async with asyncio.timeout(remaining(_ROUTE_PATIENCE)):
                await self._exchange.publish(aio_pika.Message(body, expiration=600), routing_key="")
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError):
            log.warning("could not route a websocket result", ws_client_id=ws_client_id)

    async def serve(self, request: web.Request, *, client: str) -> web.WebSocketResponse:
        """Hold one SDK socket until it closes; ``client`` is the key its address is counted under."""
        open_now = self._open_by_client.get(client, 0)
        if self._per_client and open_now >= self._per_client:
            raise ApiError(
                "too_many_websockets",
                f"This address already holds {open_now} open WebSockets; close one first.",
                status=429,
            )
        self._open_by_client[client] = open_now + 1  # counted before the first await: no race past the cap
        try:
            socket = web.WebSocketResponse(heartbeat=30)
            await socket.prepare(request)
            await self._hold(socket)
        finally:
            left = self._open_by_client.pop(client, 1) - 1
            if left:
                self._open_by_client[client] = left
        return socket

    async def _hold(self, socket: web.WebSocketResponse) -> None:
        ws_client_id = str(uuid.uuid4())
        self._sockets[ws_client_id] = socket
        OPEN_SOCKETS.inc()
        try:
            await socket.send_str(json.dumps({"message_type": "connection_ack", "ws_client_id": ws_client_id}))
            async for msg in socket:  # the SDK sends nothing; we wait for it to close
                if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            OPEN_SOCKETS.dec()
            self._sockets.pop(ws_client_id, None)

    async def close_all(self) -> None:
        for socket in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await socket.close()
        self._sockets.clear()


WS_HUB = web.AppKey("ws_hub", WsHub)


def ws_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        prefix = "keyway" if settings.bus_namespace == "keyway" else settings.bus_namespace
        hub = WsHub(exchange_name=f"{prefix}.auth-gateway.ws-results", per_client=settings.websockets_per_client)
        app[WS_HUB] = hub
        app[BROKER].on_connect(hub.attach)
        yield
        await hub.close_all()

    return ctx


def _own_origin(public_url: str) -> str:
    """The gateway's own origin (``KEYWAY_PUBLIC_URL``'s), whose pages, the Connect UI's, open the socket too."""
    public = urlsplit(public_url)
    return f"{public.scheme}://{public.netloc}".lower()


def _check_origin(request: web.Request, allowed: list[str], public_url: str) -> None:
    origin = request.headers.get("Origin")
    if not allowed or origin is None:
        return
    origin = origin.rstrip("/").lower()
    if origin not in allowed and origin != _own_origin(public_url):
        raise ApiError("origin_not_allowed", "This page's origin may not open the gateway's WebSocket.", status=403)


@no_credential  # the SDK opens it before anything else: bounded per client address and origin instead
async def websocket_or_index(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        settings = request.app[SETTINGS]
        _check_origin(request, settings.websocket_allowed_origins, settings.public_url)
        client = client_key(client_address(request, settings.trusted_proxies))
        return await request.app[WS_HUB].serve(request, client=client)
    return web.json_response({"service": "keyway auth-gateway", "websocket": "connect here with the frontend SDK"})
