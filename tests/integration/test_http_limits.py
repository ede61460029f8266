"""Limits on what a client may hold open, and what a 405 tells it, over real sockets to a real gateway.

A request head sent byte by byte (slowloris) is cut off after ``KEYWAY_HTTP_IDLE_TIMEOUT_SECONDS``,
and a JSON body trickled in after ``KEYWAY_HTTP_BODY_TIMEOUT_SECONDS`` (408), while an open
WebSocket outlives both. One address holds at most ``KEYWAY_WEBSOCKETS_PER_CLIENT`` sockets, and
with ``KEYWAY_WEBSOCKET_ALLOWED_ORIGINS`` a page of another origin cannot open one. Timeouts in these
tests are short settings; the only thing timed is a bound after which the test gives up.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .gateway_app import Gateway, StartGateway
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

TRICKLE = 0.05  # seconds between two bytes
GIVE_UP_AFTER = 200  # bytes: ten seconds of trickling, far past the timeouts the tests set


async def trickle(gw: Gateway, head: bytes, *, then: bytes = b"x") -> bytes:
    """Send ``head`` at once, then ``then`` a byte at a time; what the server sent when it stopped
    listening (``b""`` if it just closed), or the test fails after :data:`GIVE_UP_AFTER` bytes."""
    reader, writer = await asyncio.open_connection(gw.client.server.host, gw.client.server.port)
    try:
        writer.write(head)
        for _ in range(GIVE_UP_AFTER):
            try:
                return await asyncio.wait_for(reader.read(4096), TRICKLE)
            except TimeoutError:
                pass
            try:
                writer.write(then)
                await writer.drain()
            except ConnectionError:
                return b""
        pytest.fail(f"the server still listened after {GIVE_UP_AFTER} bytes sent {TRICKLE} s apart")
    finally:
        writer.close()


async def test_405_lists_the_allowed_methods(start_gateway: StartGateway) -> None:
    async with start_gateway() as gw:
        resp = await gw.client.put("/health")
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET,HEAD"
        assert_envelope(await resp.json(), "method_not_allowed")
        resp = await gw.client.delete("/config", headers=gw.auth)
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST", "PUT"}


async def test_a_request_head_sent_byte_by_byte_is_cut_off(start_gateway: StartGateway) -> None:
    async with start_gateway(http_idle_timeout_seconds=0.5) as gw:
        answer = await trickle(gw, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert answer == b""  # closed, without an answer: the head never completed
        resp = await gw.client.get("/health")  # a client that sends its head at once is served
        assert resp.status == 200


async def test_a_json_body_trickled_in_is_a_408(start_gateway: StartGateway) -> None:
    async with start_gateway(http_body_timeout_seconds=0.5) as gw:
        head = (
            b"POST /connection/metadata HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + gw.secret_key.encode() + b"\r\nContent-Length: 100000\r\n\r\n"
            b'{"metadata": "'
        )
        answer = await trickle(gw, head)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b'"request_timeout"' in answer


async def test_a_websocket_outlives_the_timeouts(start_gateway: StartGateway) -> None:
    async with start_gateway(http_idle_timeout_seconds=0.3, http_body_timeout_seconds=0.3) as gw:
        ws = await gw.client.ws_connect("/")
        assert (await ws.receive_json())["message_type"] == "connection_ack"
        await asyncio.sleep(1.0)  # past both timeouts
        with pytest.raises(TimeoutError):
            await ws.receive(timeout=0.3)  # nothing: not a close frame
        assert not ws.closed
        await ws.close()


async def test_one_address_holds_a_bounded_number_of_websockets(start_gateway: StartGateway) -> None:
    async with start_gateway(websockets_per_client=2) as gw:
        first, second = await gw.client.ws_connect("/"), await gw.client.ws_connect("/")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await gw.client.ws_connect("/")
        assert refused.value.status == 429
        # Another address is counted apart (127.0.0.2 is loopback too).
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as other:
            elsewhere = await other.ws_connect(gw.url + "/")
            assert (await elsewhere.receive_json())["message_type"] == "connection_ack"
            await elsewhere.close()
        await first.close()
        third = await _connect_when_freed(gw)
        for ws in (second, third):
            await ws.close()


async def _connect_when_freed(gw: Gateway) -> aiohttp.ClientWebSocketResponse:
    """The server counts a socket out once its handler ends, a moment after the client's close."""
    for _ in range(100):
        try:
            return await gw.client.ws_connect("/")
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.05)
    pytest.fail("a closed socket never freed its place")


async def test_allowed_origins_keep_other_pages_off_the_websocket(start_gateway: StartGateway) -> None:
    async with start_gateway(websocket_allowed_origins="https://app.example.com, https://admin.example.com/") as gw:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await gw.client.ws_connect("/", origin="https://evil.example")
        assert refused.value.status == 403
        for origin in ("https://app.example.com", "https://Admin.Example.com", None):  # None: not a browser
            ws = await gw.client.ws_connect("/", origin=origin)
            assert (await ws.receive_json())["message_type"] == "connection_ack"
            await ws.close()
    async with start_gateway() as gw:  # no setting: any origin, as the SDK's pages live anywhere
        ws = await gw.client.ws_connect("/", origin="https://evil.example")
        assert (await ws.receive_json())["message_type"] == "connection_ack"
        await ws.close()
