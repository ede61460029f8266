"""``GET /health``: Nango's liveness answer, kept for tools that probe it."""

from __future__ import annotations

from aiohttp import web

__all__ = ["health"]


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"result": "ok"})
