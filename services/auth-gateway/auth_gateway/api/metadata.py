"""Connection metadata: ``POST``/``PATCH /connection/metadata`` (node SDK) and the per-connection
legacy form ``/connection/{id}/metadata``. POST replaces, PATCH shallow-merges; both echo the body."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.requests import check_document_keys, json_object
from ..operations.callers import secret_key
from ..operations.connection_events import metadata_event
from ..operations.connections import unknown_connection
from ..operations.outbox_relay import RELAY
from ..resources import STORES

__all__ = ["legacy_set_metadata", "legacy_update_metadata", "set_metadata", "update_metadata"]


async def _apply(
    request: web.Request, env: Environment, *, key: str, ids: list[str], metadata: Any, merge: bool
) -> None:
    if not isinstance(metadata, dict):
        raise ApiError("invalid_body", "'metadata' must be a JSON object.")
    check_document_keys(metadata, "metadata")
    if not ids or not all(isinstance(i, str) and i for i in ids):
        raise ApiError("missing_connection", "Missing param 'connection_id'.")
    missing, rows = await request.app[STORES].connections.set_metadata_with_events(
        env.name, key, ids, metadata, merge=merge, make_event=metadata_event
    )
    if missing:
        raise unknown_connection(env, missing[0], key)
    request.app[RELAY].publish_soon(rows)
    await request.app[RELAY].drained()  # every replica's connection cache hears of it before the answer


async def _node_form(request: web.Request, env: Environment, *, merge: bool, status: int) -> web.Response:
    body = await json_object(request)
    key = body.get("provider_config_key")
    if not isinstance(key, str) or not key:
        raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")
    raw_ids = body.get("connection_id")
    ids = raw_ids if isinstance(raw_ids, list) else [raw_ids] if raw_ids else []
    await _apply(request, env, key=key, ids=ids, metadata=body.get("metadata"), merge=merge)
    return web.json_response(body, status=status)


@secret_key
async def set_metadata(request: web.Request, env: Environment) -> web.Response:
    return await _node_form(request, env, merge=False, status=201)


@secret_key
async def update_metadata(request: web.Request, env: Environment) -> web.Response:
    return await _node_form(request, env, merge=True, status=200)


async def _legacy_form(request: web.Request, env: Environment, *, merge: bool, status: int) -> web.Response:
    body = await json_object(request)
    key = request.query.get("provider_config_key") or request.headers.get("Provider-Config-Key") or ""
    connection_id = request.match_info.get("connectionId") or request.headers.get("Connection-Id") or ""
    if not key:
        raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")
    await _apply(request, env, key=key, ids=[connection_id], metadata=body, merge=merge)
    return web.json_response(body, status=status)


@secret_key
async def legacy_set_metadata(request: web.Request, env: Environment) -> web.Response:
    return await _legacy_form(request, env, merge=False, status=201)


@secret_key
async def legacy_update_metadata(request: web.Request, env: Environment) -> web.Response:
    return await _legacy_form(request, env, merge=True, status=200)
