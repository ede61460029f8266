"""Integrations (``/config``, spec §3.1): what makes an integration valid, and creating, editing and
deleting one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from keyway_shared.auth_modes import MODE_FACTS
from keyway_shared.credentials.mcp_auth import REGISTERED_PREFIX
from keyway_shared.store import DuplicateIntegrationError, Environment, Integration

from ..http.errors import ApiError
from ..resources import CATALOG, STORES

__all__ = [
    "IntegrationBody",
    "IntegrationChange",
    "change_integration",
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
    # The MCP clients Keyway registered stay (their connections refresh as them) unless the body names them.
    registered = {name: value for name, value in integration.custom.items() if name.startswith(REGISTERED_PREFIX)}
    integration.custom = {**registered, **(body.custom or {})}


async def create_integration(
    app: web.Application,
    env: Environment,
    body: IntegrationBody,
    *,
    display_name: str | None = None,
    forward_webhooks: bool = True,
) -> Integration:
    """A new integration; ``display_name`` and ``forward_webhooks`` come only from the current API."""
    provider, key = check_integration_fields(app, body)
    integration = Integration(
        environment=env.name,
        unique_key=key,
        provider=provider,
        display_name=display_name,
        forward_webhooks=forward_webhooks,
    )
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


@dataclass(frozen=True, kw_only=True)
class IntegrationChange:
    """A partial edit (``PATCH /integrations/{key}``): a field left None stays as it is.

    Unlike ``PUT /config``, which replaces the client, scopes and settings whole, only what is named
    changes; ``custom`` is merged key by key, a None value removing its key.
    """

    unique_key: str | None = None  # a new key: a rename
    display_name: str | None = None
    forward_webhooks: bool | None = None
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = None
    oauth_scopes: str | None = None
    app_link: str | None = None
    custom: Mapping[str, str | None] = field(default_factory=dict)


_TAKEN_AS_GIVEN = (
    "unique_key",
    "display_name",
    "forward_webhooks",
    "oauth_client_id",
    "oauth_client_secret",
    "app_link",
)


async def change_integration(
    app: web.Application, env: Environment, key: str, change: IntegrationChange
) -> Integration:
    """Apply ``change`` to the integration ``key`` and give it back as stored.

    A rename is refused while the integration has connections (they name it by its key), as Nango
    refuses it.
    """
    stores = app[STORES]
    integration = await stores.integrations.get(env.name, key)
    if integration is None:
        raise ApiError("not_found", f'Integration "{key}" does not exist', status=404)
    if change.unique_key is not None and change.unique_key != key:
        if await stores.integrations.get(env.name, change.unique_key) is not None:
            raise ApiError("invalid_body", "uniqueKey is already used by another integration")
        if await stores.connections.summaries(env.name, provider_config_key=key, limit=1):
            raise ApiError("invalid_body", "Can't rename an integration with active connections")
    for name in _TAKEN_AS_GIVEN:
        if (value := getattr(change, name)) is not None:
            setattr(integration, name, value)
    if change.oauth_scopes is not None:
        integration.oauth_scopes = normalise_scopes(change.oauth_scopes)
    custom = {**integration.custom, **change.custom}
    integration.custom = {name: value for name, value in custom.items() if value is not None}
    try:
        found = await stores.integrations.replace(integration, stored_as=key)
    except DuplicateIntegrationError:
        raise ApiError("invalid_body", "uniqueKey is already used by another integration") from None
    stored = await stores.integrations.get(env.name, integration.unique_key) if found else None
    if stored is None:  # deleted meanwhile
        raise ApiError("not_found", f'Integration "{key}" does not exist', status=404)
    return stored


async def delete_integration(app: web.Application, env: Environment, key: str) -> bool:
    """True when there was such an integration (its connections stay, unusable)."""
    return await app[STORES].integrations.delete(env.name, key)
