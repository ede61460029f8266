"""A webhook receiver on 127.0.0.1 that answers from a script: statuses, ``Retry-After``, redirects, silence.

``replies`` is consumed one per request; when it runs out, ``status`` answers. A reply of ``HANG``
never answers (the sender's timeout ends it). Each request is kept with the time it arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from .procs import free_port
from .receiver import Received

HANG = -1


@dataclass(frozen=True)
class Reply:
    status: int
    retry_after: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class Arrival:
    request: Received
    at: float  # time.monotonic()

    @property
    def headers(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.request.headers.items()}


@dataclass
class ScriptedReceiver:
    status: int = 200
    replies: list[Reply | int] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    arrivals: list[Arrival] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def received(self) -> list[Received]:
        return [a.request for a in self.arrivals]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(
            Arrival(Received(request.path, dict(request.headers), await request.read()), time.monotonic())
        )
        reply = self.replies.pop(0) if self.replies else self.status
        if isinstance(reply, int):
            reply = Reply(reply)
        if reply.status == HANG:
            await asyncio.sleep(3600)
        headers = {"Retry-After": reply.retry_after} if reply.retry_after is not None else {}
        if reply.location is not None:
            headers["Location"] = reply.location
        return web.Response(status=reply.status, text=f"answered {reply.status}", headers=headers)

    async def start(self) -> ScriptedReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def scripted_receiver(*replies: Reply | int, status: int = 200) -> AsyncIterator[ScriptedReceiver]:
    receiver = await ScriptedReceiver(status=status, replies=list(replies)).start()
    try:
        yield receiver
    finally:
        await receiver.stop()
