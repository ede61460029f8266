"""Connections over Nango's current API (``/connections…``), what ``@nangohq/node`` 0.71 calls.

Beside the 2024 routes (``/connection…``: ``connection.py``, ``metadata.py``), which keep their
shapes, and over the same operations: the connection cache and refresh on read for ``GET``, the one
removal for ``DELETE``, the metadata writes of the 2024 routes. The curated shapes are
``connection_shape.py``'s, the query strings ``connection_queries.py``'s, the bodies
``connection_bodies.py``'s. Errors are Nango's current ones:

- ``GET /connections/{id}``: ``unknown_provider_config`` (400) when the integration does not exist,
  ``not_found`` (404) when the connection does not, ``invalid_credentials`` (400) when its refresh
  fails;
- ``PATCH``: the same two first, then ``invalid_body`` when the tags it would leave are not tags;
- ``DELETE``: ``unknown_connection`` (400, no message: Nango's);
- metadata: ``unknown_connection`` (404) naming the first connection missing, nothing written.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pymongo.errors import OperationFailure

from keyway_shared.auth_modes import modes_where
from keyway_shared.service import MONGO_DB
from keyway_shared.store import Environment
from keyway_shared.store.connection_labels import list_connection_documents

from ..connection_cache import CONNECTION_CACHE
from ..http.errors import ApiError
from ..http.query_issues import invalid_params, unrecognized_keys
from ..http.requests import check_document_keys, json_object, validated_body
from ..operations.callers import secret_key
from ..operations.connection_events import metadata_event
from ..operations.connection_labels import LabelsRefusedError, label_changes, relabel_connection
from ..operations.connection_removal import remove_connection
from ..operations.deep_documents import connection_list_response
from ..operations.fetch_recorder import FETCH_RECORDER
from ..operations.outbox_relay import RELAY
from ..operations.refresh_on_read import fresh_connection
from ..resources import STORES
from .connection_answer import answer_current
from .connection_bodies import ConnectionPatch, MetadataBody
from .connection_queries import GET_FLAGS, connection_id_of, key_and_flags, list_query
from .connection_shape import listed_connection_json

__all__ = [
    "delete_connection",
    "get_connection",
    "list_connections",
    "patch_connection",
    "set_metadata",
    "update_metadata",
]

# A GitHub App's connections: their token is minted from the app's key, what the JWT flag refreshes.
_APP_MODES = modes_where(lambda facts: facts.github_app)


def _unknown_integration() -> ApiError:
    return ApiError("unknown_provider_config", "Provider does not exists", status=400)


async def _missing(request: web.Request, env: Environment, key: str) -> ApiError:
    """Why a connection was not found: its integration does not exist, or it does not."""
    if await request.app[STORES].integrations.get(env.name, key) is None:
        return _unknown_integration()
    return ApiError("not_found", "Failed to find connection", status=404)


@secret_key
async def list_connections(request: web.Request, env: Environment) -> web.Response:
    query = list_query(request)
    if query is None:
        return web.json_response({"connections": []})
    db = request.app[MONGO_DB]
    try:
        docs = await list_connection_documents(db, env.name, query)
    except OperationFailure:  # one document the server cannot project (see deep_documents)
        docs = await list_connection_documents(db, env.name, query, whole=True)
    items = [listed_connection_json(doc) for doc in docs]
    return connection_list_response(items)


@secret_key
async def get_connection(request: web.Request, env: Environment) -> web.Response:
    key, flags = key_and_flags(request, GET_FLAGS)
    connection_id = connection_id_of(request)
    connection = await request.app[CONNECTION_CACHE].get(
        env.name, key, connection_id, lambda: request.app[STORES].connections.get(env.name, key, connection_id)
    )
    if connection is None:
        raise await _missing(request, env, key)
    force = flags["force_refresh"] or (flags["refresh_github_app_jwt_token"] and connection.auth_mode in _APP_MODES)
    try:
        connection = await fresh_connection(request.app, env, connection, force=force)
    except ApiError as failed:
        if failed.code != "refresh_token_external_error":
            raise
        raise ApiError("invalid_credentials", failed.message, status=400, payload=failed.payload) from None
    fetched_at = request.app[FETCH_RECORDER].note(env.name, key, connection_id)
    return answer_current(connection, fetched_at, include_refresh_token=flags["refresh_token"])


@secret_key
async def patch_connection(request: web.Request, env: Environment) -> web.Response:
    key, _ = key_and_flags(request)
    patch = validated_body(ConnectionPatch, await json_object(request))
    connection_id = connection_id_of(request)
    try:
        changes = label_changes(
            end_user=patch.end_user.model_dump() if patch.end_user else None,
            tags=patch.tags,
            webhook_url_override=patch.webhook_url_override,
        )
    except LabelsRefusedError as refused:
        raise ApiError("invalid_body", str(refused), status=400) from None
    if changes:
        found = await relabel_connection(request.app, env.name, key, connection_id, changes)
    else:  # nothing to change: only whether there is such a connection
        found = await request.app[STORES].connections.get(env.name, key, connection_id) is not None
    if not found:
        raise await _missing(request, env, key)
    return web.json_response({"success": True})


@secret_key
async def delete_connection(request: web.Request, env: Environment) -> web.Response:
    connection_id = connection_id_of(request)
    key, flags = key_and_flags(request, ("revoke",))
    # Deleting deletes; revoking at the provider is asked for, or the integration's revoke_on_delete.
    revoke = flags["revoke"] if "revoke" in request.query else None
    removal = await remove_connection(request.app, env.name, key, connection_id, revoke=revoke)
    if removal is None:
        raise ApiError("unknown_connection", status=400)
    body: dict[str, Any] = {"success": True}
    if removal.revocation is not None:  # Keyway's: what the provider answered (a failure still deletes)
        body["revocation"] = removal.revocation.as_json()
    return web.json_response(body)


async def _metadata(request: web.Request, env: Environment, *, merge: bool, status: int) -> web.Response:
    if issues := unrecognized_keys(request.query, ()):
        raise invalid_params(issues)
    raw = await json_object(request)
    body = validated_body(MetadataBody, raw)
    check_document_keys(body.metadata, "metadata")
    ids = body.connection_ids()
    if ids:
        missing, rows = await request.app[STORES].connections.set_metadata_with_events(
            env.name, body.provider_config_key, ids, body.metadata, merge=merge, make_event=metadata_event
        )
        if missing:
            message = (
                f"Connection with connection id {missing[0]} and provider config key {body.provider_config_key} "
                "not found. Please make sure the connection exists in the Nango dashboard"
            )
            if len(ids) > 1:
                message += ". No actions were taken on any of the connections as a result of this failure."
            raise ApiError("unknown_connection", message, status=404)
        request.app[RELAY].publish_soon(rows)
        await request.app[RELAY].drained()  # every replica's connection cache hears of it before the answer
    return web.json_response(raw, status=status)


@secret_key
async def set_metadata(request: web.Request, env: Environment) -> web.Response:
    """``POST /connections/metadata``: replace (201, the body echoed)."""
    return await _metadata(request, env, merge=False, status=201)


@secret_key
async def update_metadata(request: web.Request, env: Environment) -> web.Response:
    """``PATCH /connections/metadata``: shallow-merge (200, the body echoed)."""
    return await _metadata(request, env, merge=True, status=200)
