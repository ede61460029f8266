"""A TCP proxy a test can cut and restore: a broker outage without stopping the shared broker.

``delay`` holds back what the target sends to the client by that many seconds (order kept): a
slow link, so a test can show that a client does not rely on messages arriving quickly.
"""

from __future__ import annotations

import asyncio
import contextlib

from .procs import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.delay = 0.0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening and drop every live connection, as a dead broker would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers |= {client_writer, upstream_writer}

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()

        async def delayed_pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            loop = asyncio.get_running_loop()
            chunks: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

            async def feed() -> None:
                with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                    while data := await reader.read(65536):
                        chunks.put_nowait((loop.time() + self.delay, data))
                chunks.put_nowait(None)

            feeder = asyncio.create_task(feed())
            with contextlib.suppress(OSError):
                while (item := await chunks.get()) is not None:
                    due, data = item
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    writer.write(data)
                    await writer.drain()
            writer.transport.abort()
            feeder.cancel()

        await asyncio.gather(pipe(client_reader, upstream_writer), delayed_pipe(upstream_reader, client_writer))
        self._writers -= {client_writer, upstream_writer}
