"""``GET /connection/{connectionId}``: a connection with its credentials (spec §3.2)."""

from __future__ import annotations

from aiohttp import web

from ..errors import ApiError
from ..fetch_recorder import FETCH_RECORDER
from ..keys import environment_from_secret_key
from ..resources import STORES
from ..serialize import connection_json

__all__ = ["get_connection"]


async def get_connection(request: web.Request) -> web.Response:
    env = await environment_from_secret_key(request)
    connection_id = request.match_info["connectionId"]
    provider_config_key = request.query.get("provider_config_key") or request.headers.get("Provider-Config-Key")
    if not provider_config_key:
        raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")
    connection = await request.app[STORES].connections.get(env.name, provider_config_key, connection_id)
    if connection is None:
        raise ApiError(
            "unknown_connection",
            "No connection matching the provided params of 'connection_id' and 'provider_config_key'.",
            payload={
                "connectionId": connection_id,
                "providerConfigKey": provider_config_key,
                "environmentName": env.name,
            },
        )
    fetched_at = request.app[FETCH_RECORDER].note(env.name, provider_config_key, connection_id)
    include_refresh = request.query.get("refresh_token") == "true"
    return web.json_response(connection_json(connection, include_refresh_token=include_refresh, fetched_at=fetched_at))
