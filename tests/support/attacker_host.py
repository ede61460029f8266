"""A host an attacker controls, on another loopback address (127.0.0.2), for tests of where Keyway sends things.

It counts every TCP connection before anything else (a refused TLS handshake still counts: the
gateway was steered there) and keeps what it was sent. With ``tls=True`` it speaks HTTPS with its
own self-signed certificate, as a real attacker's host would (with a certificate the gateway does
not know, so a handshake may fail; the connection already proves the leak). It answers every
request with a token, so a flow steered here goes on as far as it can.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from .certificates import self_signed
from .raw_http import read_request

__all__ = ["ATTACKER_ADDRESS", "AttackerHost", "attacker_host"]

ATTACKER_ADDRESS = "127.0.0.2"
_TOKEN = json.dumps({"access_token": "at-issued-by-the-attacker", "token_type": "bearer", "expires_in": 3600})


@dataclass
class AttackerHost:
    tls: bool = False
    connections: int = 0
    received: list[bytes] = field(default_factory=list)  # what each connection sent, up to its body
    port: int = 0
    _server: asyncio.Server | None = None
    _context: ssl.SSLContext | None = None

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://{ATTACKER_ADDRESS}:{self.port}"

    @property
    def everything_received(self) -> bytes:
        return b"\n".join(self.received)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self._context is not None:
                await writer.start_tls(self._context)
            async with asyncio.timeout(5):
                self.received.append(await read_request(reader))
            answer = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(_TOKEN)}\r\n"
            writer.write((answer + "Connection: close\r\n\r\n" + _TOKEN).encode())
            await writer.drain()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass  # a refused handshake or a torn request: the connection is what counts
        finally:
            writer.close()
            with suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def start(self) -> AttackerHost:
        if self.tls:
            self._context, _ = self_signed(names=["attacker.example"], addresses=[ATTACKER_ADDRESS])
        self._server = await asyncio.start_server(self._serve, ATTACKER_ADDRESS, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@asynccontextmanager
async def attacker_host(*, tls: bool = False) -> AsyncIterator[AttackerHost]:
    host = await AttackerHost(tls=tls).start()
    try:
        yield host
    finally:
        await host.stop()
