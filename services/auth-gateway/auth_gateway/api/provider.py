"""``GET /provider`` and ``GET /provider/{name}``: the provider catalog, as templates (spec §3.1)."""

from __future__ import annotations

from aiohttp import web

from ..http.errors import ApiError
from ..operations.callers import environment_from_secret_key
from ..resources import CATALOG

__all__ = ["get_provider", "list_providers"]


async def list_providers(request: web.Request) -> web.Response:
    await environment_from_secret_key(request)
    catalog = request.app[CATALOG]
    return web.json_response({"providers": {name: catalog.raw(name) for name in catalog.names()}})


async def get_provider(request: web.Request) -> web.Response:
    await environment_from_secret_key(request)
    name = request.match_info["provider"]
    raw = request.app[CATALOG].raw(name)
    if raw is None:
        raise ApiError("unknown_provider_template", f"The provider '{name}' is not in the catalog.", status=404)
    return web.json_response({"provider": raw})
