"""Integrations over ``/config`` (spec §3.1): what the node SDK's *Integration methods call."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from keyway_shared.store import DuplicateIntegrationError, Integration

from ..errors import ApiError
from ..keys import environment_from_secret_key
from ..requests import json_object
from ..resources import CATALOG, STORES
from ..serialize import js_iso

__all__ = [
    "IntegrationBody",
    "check_integration_fields",
    "create_integration",
    "delete_integration",
    "get_integration",
    "list_integrations",
    "normalise_scopes",
    "update_integration",
]

_OAUTH_MODES = {"OAUTH1", "OAUTH2", "OAUTH2_CC", "CUSTOM", "TBA"}


class IntegrationBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    provider: str | None = None
    provider_config_key: str | None = Field(default=None, max_length=255, pattern=r"^[a-zA-Z0-9~:.@ _-]+$")
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = None
    oauth_scopes: str | None = None
    app_link: str | None = None
    custom: dict[str, str] | None = None

    @field_validator("oauth_scopes", mode="before")
    @classmethod
    def _scopes_string(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ApiError("invalid_oauth_scopes", "'oauth_scopes' must be a comma-separated string.")
        return value


async def _read_body(request: web.Request) -> IntegrationBody:
    body = await json_object(request)
    if "oauth_scopes" in body and body["oauth_scopes"] is not None and not isinstance(body["oauth_scopes"], str):
        raise ApiError("invalid_oauth_scopes", "'oauth_scopes' must be a comma-separated string, not an array.")
    try:
        return IntegrationBody.model_validate(body)
    except ValueError as exc:
        raise ApiError("invalid_body", f"The request body is invalid: {exc.__class__.__name__}") from None


def normalise_scopes(scopes: str | None) -> str | None:
    if scopes is None:
        return None
    parts = [part for chunk in scopes.split(",") for part in chunk.split()]
    return ",".join(p for p in parts if p)


def check_integration_fields(request: web.Request, body: IntegrationBody) -> tuple[str, str]:
    if not body.provider:
        raise ApiError("missing_provider_template", "Missing param 'provider'.")
    if not body.provider_config_key:
        raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")
    template = request.app[CATALOG].get(body.provider)
    if template is None:
        raise ApiError("unknown_provider_template", f"The provider '{body.provider}' is not in the catalog.")
    if template.auth_mode in _OAUTH_MODES:
        if not body.oauth_client_id:
            raise ApiError("missing_client_id", "Missing param 'oauth_client_id'.")
        if not body.oauth_client_secret:
            raise ApiError("missing_client_secret", "Missing param 'oauth_client_secret'.")
    return body.provider, body.provider_config_key


async def create_integration(request: web.Request) -> web.Response:
    env = await environment_from_secret_key(request)
    body = await _read_body(request)
    provider, key = check_integration_fields(request, body)
    integration = Integration(
        environment=env.name,
        unique_key=key,
        provider=provider,
        oauth_client_id=body.oauth_client_id,
        oauth_client_secret=body.oauth_client_secret,
        oauth_scopes=normalise_scopes(body.oauth_scopes),
        app_link=body.app_link,
        custom=body.custom or {},
    )
    try:
        await request.app[STORES].integrations.create(integration)
    except DuplicateIntegrationError:
        raise ApiError(
            "duplicate_provider_config", f"An integration '{key}' already exists in '{env.name}'.", status=409
        ) from None
    return web.json_response({"config": {"unique_key": key, "provider": provider}})


async def update_integration(request: web.Request) -> web.Response:
    env = await environment_from_secret_key(request)
    body = await _read_body(request)
    provider, key = check_integration_fields(request, body)
    template = request.app[CATALOG].get(provider)
    if template is not None and template.auth_mode in {"API_KEY", "BASIC"}:
        raise ApiError("provider_config_edit_not_allowed", "API key and Basic integrations have nothing to edit.")
    existing = await request.app[STORES].integrations.get(env.name, key)
    if existing is None:
        raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    existing.provider = provider
    existing.oauth_client_id = body.oauth_client_id
    existing.oauth_client_secret = body.oauth_client_secret
    existing.oauth_scopes = normalise_scopes(body.oauth_scopes)
    existing.app_link = body.app_link
    existing.custom = body.custom or {}
    await request.app[STORES].integrations.replace(existing)
    return web.json_response({"config": {"unique_key": key, "provider": provider}})


async def list_integrations(request: web.Request) -> web.Response:
    env = await environment_from_secret_key(request)
    integrations = await request.app[STORES].integrations.list(env.name)
    return web.json_response({"configs": [{"unique_key": i.unique_key, "provider": i.provider} for i in integrations]})


async def get_integration(request: web.Request) -> web.Response:
    env = await environment_from_secret_key(request)
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


async def delete_integration(request: web.Request) -> web.Response:
    env = await environment_from_secret_key(request)
    key = request.match_info["providerConfigKey"]
    if not await request.app[STORES].integrations.delete(env.name, key):
        raise ApiError("not_found", f"There is no integration '{key}' in '{env.name}'.", status=404)
    return web.json_response({"success": True})
