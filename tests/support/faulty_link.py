"""A TCP link a test can cut (connections reset, the port refuses) or blackhole (connections stay
open and accepted, but nothing goes through) and then heal, in front of a real server.

A blackhole is the fault a reset never shows: a client learns nothing, so whatever it waits on
waits until a timeout of its own. Here the bytes sent meanwhile are held, not dropped, and go
through once the link heals, as TCP retransmits them after a partition; a client that gave up on
a connection has closed it by then.
"""

from __future__ import annotations

import asyncio
import contextlib

from .procs import free_port

__all__ = ["FaultyLink"]


class FaultyLink:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again) and let bytes through."""
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def heal(self) -> None:
        await self.start()

    def blackhole(self) -> None:
        """Hold every byte, both ways, on open connections and on new ones (which are still accepted)."""
        self._flowing.clear()

    async def cut(self) -> None:
        """Stop listening and reset every live connection, as a dead server would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._flowing.set()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        await self._flowing.wait()  # a blackholed link accepts, then says nothing
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            self._writers.discard(client_writer)
            return
        self._writers.add(upstream_writer)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while True:
                    await self._flowing.wait()
                    data = await reader.read(65536)
                    if not data:
                        break
                    await self._flowing.wait()  # read before the blackhole: held until it heals
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        self._writers -= {client_writer, upstream_writer}
