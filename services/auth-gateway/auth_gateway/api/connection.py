"""Connections over the backend API (spec §3.1 to §3.3): read, list, delete, import, metadata."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pymongo.errors import OperationFailure

from keyway_shared.service import MONGO_DB
from keyway_shared.store import Environment

from ..connection_cache import CONNECTION_CACHE
from ..http.errors import ApiError
from ..http.serialize import js_iso
from ..operations.callers import secret_key
from ..operations.connection_removal import remove_connection, revoke_asked
from ..operations.connections import unknown_connection
from ..operations.deep_documents import (
    connection_list_response,
    summaries_from_whole_documents,
)
from ..operations.fetch_recorder import FETCH_RECORDER
from ..operations.refresh_on_read import fresh_connection
from ..resources import STORES
from .connection_answer import answer_2024

__all__ = [
    "delete_connection",
    "get_connection",
    "list_connections",
]


def provider_config_key_of(request: web.Request) -> str:
    key = request.query.get("provider_config_key") or request.headers.get("Provider-Config-Key")
    if not key:
        raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")
    return key


@secret_key
async def get_connection(request: web.Request, env: Environment) -> web.Response:
    connection_id = request.match_info["connectionId"]
    provider_config_key = provider_config_key_of(request)
    connection = await request.app[CONNECTION_CACHE].get(
        env.name,
        provider_config_key,
        connection_id,
        lambda: request.app[STORES].connections.get(env.name, provider_config_key, connection_id),
    )
    if connection is None:
        raise unknown_connection(env, connection_id, provider_config_key)
    connection = await fresh_connection(
        request.app, env, connection, force=request.query.get("force_refresh") == "true"
    )
    fetched_at = request.app[FETCH_RECORDER].note(env.name, provider_config_key, connection_id)
    return answer_2024(connection, fetched_at, include_refresh_token=request.query.get("refresh_token") == "true")


@secret_key
async def list_connections(request: web.Request, env: Environment) -> web.Response:
    """``GET /connection[?connectionId=]``: summaries, newest first (the node SDK's camelCase parameter)."""
    connection_id = request.query.get("connectionId") or request.query.get("connection_id")
    try:
        docs = await request.app[STORES].connections.summaries(env.name, connection_id=connection_id)
    except OperationFailure:  # one document the server cannot project fails it all (see deep_documents)
        docs = await summaries_from_whole_documents(request.app[MONGO_DB], env.name, connection_id=connection_id)
    items = [
        {
            "id": doc.get("id"),
            "connection_id": doc["connection_id"],
            "provider_config_key": doc["provider_config_key"],
            "provider": doc["provider"],
            "created": js_iso(doc.get("created_at")),
            "metadata": doc.get("metadata"),
        }
        for doc in docs
    ]
    return connection_list_response(items)


@secret_key
async def delete_connection(request: web.Request, env: Environment) -> web.Response:
    connection_id = request.match_info["connectionId"]
    provider_config_key = provider_config_key_of(request)
    # Revoked at the provider first only when asked (or the integration's revoke_on_delete is on).
    removal = await remove_connection(
        request.app, env.name, provider_config_key, connection_id, revoke=revoke_asked(request)
    )
    if removal is None:
        raise unknown_connection(env, connection_id, provider_config_key)
    body: dict[str, Any] = {"success": True}
    if removal.revocation is not None:  # a failure is a warning: the connection is gone here all the same
        body["revocation"] = removal.revocation.as_json()
    return web.json_response(body)
