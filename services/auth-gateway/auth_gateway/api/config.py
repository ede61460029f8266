"""Integrations over ``/config`` (spec §3.1): what the node SDK's *Integration methods call."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.requests import json_object
from ..http.serialize import js_iso
from ..operations import integrations as operation
from ..operations.callers import secret_key
from ..operations.connection_removal import set_revoke_on_delete
from ..operations.integrations import IntegrationBody
from ..resources import CATALOG, STORES

__all__ = [
    "create_integration",
    "delete_integration",
    "get_integration",
    "list_integrations",
    "update_integration",
]


async def _read_body(request: web.Request) -> IntegrationBody:
    body = await json_object(request)
    if "oauth_scopes" in body and body["oauth_scopes"] is not None and not isinstance(body["oauth_scopes"], str):
        raise ApiError("invalid_oauth_scopes", "'oauth_scopes' must be a comma-separated string, not an array.")
    try:
        return IntegrationBody.model_validate(body)
    except ValueError as exc:
        raise ApiError("invalid_body", f"The request body is invalid: {exc.__class__.__name__}") from None


async def _revoke_on_delete(request: web.Request) -> bool | None:
    """Keyway's ``revoke_on_delete`` (revoke a connection's grant when it is deleted), when the body sets it."""
    value = (await json_object(request)).get("revoke_on_delete")
    if value is not None and not isinstance(value, bool):
        raise ApiError("invalid_body", "'revoke_on_delete' must be true or false.")
    return value


@secret_key
async def create_integration(request: web.Request, env: Environment) -> web.Response:
    revoke_on_delete = await _revoke_on_delete(request)
    created = await operation.create_integration(request.app, env, await _read_body(request))
    if revoke_on_delete is not None:
        await set_revoke_on_delete(request.app, env.name, created.unique_key, revoke_on_delete)
    return web.json_response({"config": {"unique_key": created.unique_key, "provider": created.provider}})


@secret_key
async def update_integration(request: web.Request, env: Environment) -> web.Response:
    revoke_on_delete = await _revoke_on_delete(request)
    updated = await operation.update_integration(request.app, env, await _read_body(request))
    if revoke_on_delete is not None:
        await set_revoke_on_delete(request.app, env.name, updated.unique_key, revoke_on_delete)
    return web.json_response({"config": {"unique_key": updated.unique_key, "provider": updated.provider}})


@secret_key
async def list_integrations(request: web.Request, env: Environment) -> web.Response:
    integrations = await request.app[STORES].integrations.list(env.name)
    return web.json_response({"configs": [{"unique_key": i.unique_key, "provider": i.provider} for i in integrations]})


@secret_key
async def get_integration(request: web.Request, env: Environment) -> web.Response:
    key = request.match_info["providerConfigKey"]
    integration = await request.app[STORES].integrations.get(env.name, key)
    if integration is None:
        raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    config: dict[str, Any] = {
        "unique_key": integration.unique_key,
        "provider": integration.provider,
        "syncs": [],
        "actions": [],
    }
    if request.query.get("include_creds") == "true":
        template = request.app[CATALOG].get(integration.provider)
        config |= {
            "client_id": integration.oauth_client_id,
            "client_secret": integration.oauth_client_secret,
            "scopes": integration.oauth_scopes,
            "app_link": integration.app_link,
            "custom": integration.custom or None,
            "auth_mode": template.auth_mode if template else None,
            "created_at": js_iso(integration.created_at),
            "docs": template.docs if template else None,
            "has_webhook": False,
            "webhook_secret": None,
            "has_webhook_user_defined_secret": False,
            "webhook_url": None,
        }
        summaries = await request.app[STORES].connections.summaries(env.name, provider_config_key=key)
        config["connections"] = [
            {"id": doc.get("id"), "connection_id": doc["connection_id"], "created_at": js_iso(doc.get("created_at"))}
            for doc in summaries
        ]
        config["connection_count"] = len(summaries)
    return web.json_response({"config": config})


@secret_key
async def delete_integration(request: web.Request, env: Environment) -> web.Response:
    key = request.match_info["providerConfigKey"]
    if not await operation.delete_integration(request.app, env, key):
        raise ApiError("not_found", f"There is no integration '{key}' in '{env.name}'.", status=404)
    return web.json_response({"success": True})
