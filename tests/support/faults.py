"""Faults a test stages around a service: a port that closes every connection before a byte, a
busy event loop, and a service run as its entry point runs it (uvloop), on a thread of its own.

Under uvloop, aio-pika raises ``StopAsyncIteration`` out of a connect when the peer closed the
socket (a FIN) before the connecting coroutine read its first frame, which a loop busy with other
work makes certain: the connect's completion and the FIN are then handled in the same turn.
A TCP proxy with no broker behind it, or a broker still starting, closes connections that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable

import uvloop
from aiohttp import web

__all__ = ["ClosingPort", "UvloopService", "busy_loop"]


class ClosingPort:
    """A listening port (``port``, or a free one) that closes every connection before sending a byte:
    a FIN, not a reset (closing with the client's first bytes unread would reset it instead)."""

    def __init__(self, port: int = 0) -> None:
        self._sock = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.port: int = self._sock.getsockname()[1]
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True, name="closing-port")
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            conn.shutdown(socket.SHUT_WR)
            self._accepted.append(conn)

    def close(self) -> None:
        # shutdown() wakes the accepting thread on Linux; close() alone may leave it blocked.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)
        for conn in self._accepted:
            conn.close()


async def busy_loop(turn_seconds: float = 0.003) -> None:
    """A service at work: every turn of its event loop takes a few milliseconds."""
    while True:
        time.sleep(turn_seconds)  # noqa: ASYNC251 - blocking the loop is the point
        await asyncio.sleep(0)


class UvloopService:
    """``make_app()`` served on 127.0.0.1:``port`` under uvloop, on its own thread, its loop kept busy.

    ``await start()`` returns once it listens; ``await stop()`` runs its cleanup contexts (SIGTERM's
    path) and joins the thread. Both are awaited from the test's own loop.
    """

    def __init__(self, make_app: Callable[[], web.Application], *, port: int, busy: bool = True) -> None:
        self._make_app = make_app
        self.port = port
        self._busy = busy
        self._listening = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True, name="uvloop-service")

    def _main(self) -> None:
        try:
            uvloop.run(self._serve())
        except BaseException as exc:
            self._failure = exc
            self._listening.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        runner = web.AppRunner(self._make_app())
        await runner.setup()
        busy = asyncio.create_task(busy_loop()) if self._busy else None
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            self._listening.set()
            await self._stopped.wait()
        finally:
            if busy is not None:
                busy.cancel()
            await runner.cleanup()

    async def start(self) -> None:
        self._thread.start()
        await asyncio.to_thread(self._listening.wait, 60)
        if self._failure is not None:
            raise self._failure

    async def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        await asyncio.to_thread(self._thread.join, 60)
