"""The WebSocket at the host root that tells the frontend SDK how its popup flow ended (spec §2.4).

A socket gets ``connection_ack`` with its ``ws_client_id`` at once, then exactly one ``success`` or
``error`` frame. With several gateway replicas the callback often lands on a replica that does not
hold the socket, so results also travel through a fanout exchange every replica listens to; the
one holding the socket delivers the frame, the others drop it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import WSMsgType, web
from prometheus_client import Gauge

from keyway_shared.logging import get_logger
from keyway_shared.service import BROKER

from .settings import GatewaySettings

__all__ = ["WS_HUB", "WsHub", "websocket_or_index", "ws_context"]

log = get_logger(__name__)
OPEN_SOCKETS = Gauge("keyway_gateway_websockets", "Frontend SDK sockets open on this replica")


class WsHub:
    def __init__(self, *, exchange_name: str) -> None:
        self._exchange_name = exchange_name
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def attach(self, connection: AbstractRobustConnection) -> None:
        """Listen for results routed by other replicas (a server-named queue per replica)."""
        channel = await connection.channel()
        self._exchange = await channel.declare_exchange(self._exchange_name, aio_pika.ExchangeType.FANOUT, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self._exchange)
        await queue.consume(self._on_routed, no_ack=True)

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
            await self._exchange.publish(aio_pika.Message(body, expiration=600), routing_key="")
        except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError):
            log.warning("could not route a websocket result", ws_client_id=ws_client_id)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=30)
        await socket.prepare(request)
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
        return socket

    async def close_all(self) -> None:
        for socket in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await socket.close()
        self._sockets.clear()


WS_HUB = web.AppKey("ws_hub", WsHub)


def ws_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        prefix = "keyway" if settings.bus_namespace == "keyway" else settings.bus_namespace
        hub = WsHub(exchange_name=f"{prefix}.auth-gateway.ws-results")
        app[WS_HUB] = hub
        app[BROKER].on_connect(hub.attach)
        yield
        await hub.close_all()

    return ctx


async def websocket_or_index(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await request.app[WS_HUB].serve(request)
    return web.json_response({"service": "keyway auth-gateway", "websocket": "connect here with the frontend SDK"})
