"""``GET /health``: Nango's liveness answer, kept for tools that probe it."""

from __future__ import annotations

from aiohttp import web

from ..openapi_spec import no_credential

__all__ = ["health"]


@no_credential
async def health(_request: web.Request) -> web.Response:
    return web.json_response({"result": "ok"})
