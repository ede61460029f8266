"""``GET /provider`` and ``GET /provider/{name}``: the provider catalog, as templates (spec §3.1)."""

from __future__ import annotations

from aiohttp import web

from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..operations.callers import secret_key
from ..resources import CATALOG

__all__ = ["get_provider", "list_providers"]


@secret_key
async def list_providers(request: web.Request, _env: Environment) -> web.Response:
    catalog = request.app[CATALOG]
    return web.json_response({"providers": {name: catalog.raw(name) for name in catalog.names()}})


@secret_key
async def get_provider(request: web.Request, _env: Environment) -> web.Response:
    name = request.match_info["provider"]
    raw = request.app[CATALOG].raw(name)
    if raw is None:
        raise ApiError("unknown_provider_template", f"The provider '{name}' is not in the catalog.", status=404)
    return web.json_response({"provider": raw})
