"""Integrations (``/config``, spec §3.1): what makes an integration valid, and creating, editing and
deleting one."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from keyway_shared.auth_modes import MODE_FACTS
from keyway_shared.store import DuplicateIntegrationError, Environment, Integration

from ..http.errors import ApiError
from ..resources import CATALOG, STORES

__all__ = [
    "IntegrationBody",
    "check_integration_fields",
    "create_integration",
    "delete_integration",
    "normalise_scopes",
    "update_integration",
]


class IntegrationBody(BaseModel):
    """The integration as ``POST``/``PUT /config`` send it (the dashboard's forms build the same)."""

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


def normalise_scopes(scopes: str | None) -> str | None:
    if scopes is None:
        return None
    parts = [part for chunk in scopes.split(",") for part in chunk.split()]
    return ",".join(p for p in parts if p)


def check_integration_fields(app: web.Application, body: IntegrationBody) -> tuple[str, str]:
    """(provider, unique key) once both are given, the provider is known and an OAuth client is complete."""
    if not body.provider:
        raise ApiError("missing_provider_template", "Missing param 'provider'.")
    if not body.provider_config_key:
        raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")
    template = app[CATALOG].get(body.provider)
    if template is None:
        raise ApiError("unknown_provider_template", f"The provider '{body.provider}' is not in the catalog.")
    if MODE_FACTS[template.auth_mode].client:
        if not body.oauth_client_id:
            raise ApiError("missing_client_id", "Missing param 'oauth_client_id'.")
        if not body.oauth_client_secret:
            raise ApiError("missing_client_secret", "Missing param 'oauth_client_secret'.")
    return body.provider, body.provider_config_key


def _apply(integration: Integration, provider: str, body: IntegrationBody) -> None:
    """Every field the body sets, on a new integration or an existing one alike."""
    integration.provider = provider
    integration.oauth_client_id = body.oauth_client_id
    integration.oauth_client_secret = body.oauth_client_secret
    integration.oauth_scopes = normalise_scopes(body.oauth_scopes)
    integration.app_link = body.app_link
    integration.custom = body.custom or {}


async def create_integration(app: web.Application, env: Environment, body: IntegrationBody) -> Integration:
    provider, key = check_integration_fields(app, body)
    integration = Integration(environment=env.name, unique_key=key, provider=provider)
    _apply(integration, provider, body)
    try:
        await app[STORES].integrations.create(integration)
    except DuplicateIntegrationError:
        raise ApiError(
            "duplicate_provider_config", f"An integration '{key}' already exists in '{env.name}'.", status=409
        ) from None
    return integration


async def update_integration(app: web.Application, env: Environment, body: IntegrationBody) -> Integration:
    """Replace the integration's client, scopes and settings (and its provider) with the body's."""
    provider, key = check_integration_fields(app, body)
    template = app[CATALOG].get(provider)
    if template is not None and not MODE_FACTS[template.auth_mode].editable:  # credentials come with each connection
        raise ApiError("provider_config_edit_not_allowed", "API key and Basic integrations have nothing to edit.")
    existing = await app[STORES].integrations.get(env.name, key)
    if existing is None:
        raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    _apply(existing, provider, body)
    await app[STORES].integrations.replace(existing)
    return existing


async def delete_integration(app: web.Application, env: Environment, key: str) -> bool:
    """True when there was such an integration (its connections stay, unusable)."""
    return await app[STORES].integrations.delete(env.name, key)
