"""The broker socket, with the frames written in one turn of the event loop sent in one write.

aiormq hands the socket each frame on its own (an ack, a publish, a heartbeat), and a transport
whose buffer is empty sends at once: one system call per frame. On loopback in a VM a send costs
about as much CPU as everything else a webhook's ack or notice does, so a busy consumer spends much
of its time in ``send``. Here a write is kept until the current turn of the loop ends (``call_soon``)
and whatever gathered by then leaves in one ``transport.write``.

Nothing is promised later than before: aiormq's writer treats a frame as done once the transport
has it (``drain`` is flow control, not a flush), and a transport buffers too when the socket is full.
A frame held here and lost with the process is one the transport could have lost the same way: an
ack never sent means a redelivery, which every consumer is built to take.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiormq.connection import SSLContextProvider, TransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

__all__ = ["CoalescingStreamWriter", "CoalescingTransportFactory"]

_FLUSH_AT = 256 * 1024  # bytes: past this a write leaves at once, whatever the turn
_READ_LIMIT = 2**16  # asyncio.open_connection's default


class CoalescingStreamWriter(asyncio.StreamWriter):
    """A stream writer whose writes wait for the end of the loop's turn, then go out together."""

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.StreamReaderProtocol,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._flush_handle: asyncio.Handle | None = None
        self._event_loop = loop

    @property
    def held_bytes(self) -> int:
        """Bytes written and not yet handed to the transport."""
        return self._held_bytes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= _FLUSH_AT:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = self._event_loop.call_soon(self.flush)

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def flush(self) -> None:
        """Hand what is held to the transport now."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._held:
            return
        payload = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        if not self.transport.is_closing():
            self.transport.write(payload)

    def write_eof(self) -> None:
        self.flush()
        super().write_eof()

    def close(self) -> None:
        self.flush()
        super().close()


class CoalescingTransportFactory(TransportFactory):
    """aiormq's plain and TLS connections, with a :class:`CoalescingStreamWriter`."""

    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        provider: SSLContextProvider | None = kwargs.pop("ssl_context_provider", None)
        ssl = await provider.get_context() if provider is not None and url.scheme == "amqps" else None
        if url.host is None or url.port is None:  # aiormq fills in the scheme's port
            raise AMQPConnectionError(f"no host and port in the broker URL ({url.scheme})")
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, _ = await loop.create_connection(
                lambda: protocol, host=url.host, port=url.port, ssl=ssl, **kwargs
            )
        except OSError as exc:
            raise AMQPConnectionError(*exc.args) from exc
        return reader, CoalescingStreamWriter(transport, protocol, reader, loop)
