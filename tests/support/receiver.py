"""A real webhook receiver on 127.0.0.1 that keeps every request it got and answers a chosen status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from .procs import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # as sent (header names keep the sender's case)
    body: bytes


class WebhookReceiver:
    """``await WebhookReceiver().start()``; ``status`` may be changed at any time; ``await stop()``."""

    def __init__(self, *, status: int = 200, port: int | None = None) -> None:
        self.status = status
        self.port = port or free_port()
        self.received: list[Received] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return self.url_for("/hook")

    def url_for(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), await request.read()))
        return web.Response(status=self.status, text=f"answered {self.status}")

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def webhook_receiver(status: int = 200) -> AsyncIterator[WebhookReceiver]:
    receiver = await WebhookReceiver(status=status).start()
    try:
        yield receiver
    finally:
        await receiver.stop()
