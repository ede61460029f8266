"""Every action the dashboard takes, each the in-process twin of one public API route.

The dashboard never gets a power automation lacks: each function below does what the route named
in ``PUBLIC_EQUIVALENT`` does, through the same validation models, stores and events (a unit test
checks that every named route is in the route table). They raise ``ApiError`` like the routes do;
the views show its message beside the form.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from keyway_shared.events import ActivityMessage, WebhookReplayRequested, make_event, utcnow
from keyway_shared.service import CIPHER, MONGO_DB
from keyway_shared.store import DuplicateIntegrationError, Environment, Integration, WebhookKeyStore
from keyway_shared.store.webhook_deliveries import DeliveryLog
from keyway_shared.store.webhook_endpoints import EndpointStore

from ..connect import SOURCE
from ..connect_sessions import SESSION_LIFETIME, ConnectSession
from ..connection_removal import Removal, remove_connection
from ..env_cache import ENV_CACHE
from ..errors import ApiError
from ..outbox_relay import RELAY
from ..resources import CATALOG, SETTINGS, STORES
from ..views.config import IntegrationBody, check_integration_fields, normalise_scopes
from ..views.environment import apply_environment_patch

__all__ = [
    "PUBLIC_EQUIVALENT",
    "activate_key",
    "create_integration",
    "delete_connection",
    "delete_integration",
    "enable_endpoint",
    "log_activity",
    "mint_connect_session",
    "replay_delivery",
    "revert_key",
    "rotate_key",
    "rotate_webhook_key",
    "update_environment",
    "update_integration",
]

PUBLIC_EQUIVALENT: dict[str, tuple[str, str]] = {
    "create_integration": ("POST", "/config"),
    "update_integration": ("PUT", "/config"),
    "delete_integration": ("DELETE", "/config/{providerConfigKey}"),
    "delete_connection": ("DELETE", "/connection/{connectionId}"),
    "reveal_credentials": ("GET", "/connection/{connectionId}"),
    "update_environment": ("PATCH", "/environment"),
    "rotate_key": ("POST", "/environment/rotate-key"),
    "activate_key": ("POST", "/environment/activate-key"),
    "revert_key": ("POST", "/environment/revert-key"),
    "mint_connect_session": ("POST", "/connect/sessions"),
    "rotate_webhook_key": ("POST", "/webhooks/signing-keys/rotate"),
    "replay_delivery": ("POST", "/webhooks/deliveries/{deliveryId}/replay"),
    "enable_endpoint": ("POST", "/webhooks/endpoints/enable"),
}

DASHBOARD_END_USER = {"id": "keyway-dashboard", "display_name": "Dashboard test connection"}


def _integration_body(fields: dict[str, Any]) -> IntegrationBody:
    try:
        return IntegrationBody.model_validate(fields)
    except ValueError as exc:
        if isinstance(exc, ApiError):
            raise
        raise ApiError(
            "invalid_body", "The unique key may only hold letters, digits and ~ : . @ _ - (255 at most)."
        ) from None


async def create_integration(request: web.Request, env: Environment, fields: dict[str, Any]) -> str:
    body = _integration_body(fields)
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
    return key


async def update_integration(request: web.Request, env: Environment, fields: dict[str, Any]) -> None:
    body = _integration_body(fields)
    provider, key = check_integration_fields(request, body)
    template = request.app[CATALOG].get(provider)
    if template is not None and template.auth_mode in {"API_KEY", "BASIC"}:
        raise ApiError("provider_config_edit_not_allowed", "API key and Basic integrations have nothing to edit.")
    existing = await request.app[STORES].integrations.get(env.name, key)
    if existing is None:
        raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    existing.oauth_client_id = body.oauth_client_id
    existing.oauth_client_secret = body.oauth_client_secret
    existing.oauth_scopes = normalise_scopes(body.oauth_scopes)
    existing.app_link = body.app_link
    existing.custom = body.custom or {}
    await request.app[STORES].integrations.replace(existing)


async def delete_integration(request: web.Request, env: Environment, key: str) -> bool:
    return await request.app[STORES].integrations.delete(env.name, key)


async def delete_connection(request: web.Request, env: Environment, key: str, connection_id: str) -> Removal | None:
    """Revoke at the provider and delete, as ``DELETE /connection`` does."""
    return await remove_connection(request.app, env.name, key, connection_id)


async def update_environment(request: web.Request, env: Environment, raw: dict[str, Any]) -> Environment:
    return await apply_environment_patch(request, env, raw)


def key_pinned(request: web.Request, env: Environment, kind: str) -> bool:
    public_pin, secret_pin = request.app[SETTINGS].pinned_keys(env.name)
    return bool(secret_pin if kind == "secret" else public_pin)


async def rotate_key(request: web.Request, env: Environment, kind: str) -> str:
    if key_pinned(request, env, kind):
        raise ApiError(
            "key_pinned",
            f"The {kind} key of '{env.name}' is pinned by settings; rotate it by changing the setting.",
            status=409,
        )
    key = await request.app[STORES].environments.start_rotation(env.name, kind)
    await request.app[ENV_CACHE].changed(env.name)
    return key


async def activate_key(request: web.Request, env: Environment, kind: str) -> None:
    if not await request.app[STORES].environments.activate_rotation(env.name, kind):
        raise ApiError("no_pending_key", f"There is no pending {kind} key to activate.", status=409)
    await request.app[ENV_CACHE].changed(env.name)


async def revert_key(request: web.Request, env: Environment, kind: str) -> None:
    if not await request.app[STORES].environments.revert_rotation(env.name, kind):
        raise ApiError("no_pending_key", f"There is no pending {kind} key to revert.", status=409)
    await request.app[ENV_CACHE].changed(env.name)


async def mint_connect_session(
    request: web.Request, env: Environment, integration: str, connection_id: str | None = None
) -> str:
    """A connect session for one integration: the Connect button needs neither the public key nor HMAC.

    The browser names no connection with a session: the admin's connection id is fixed in the session
    here, as a reconnect session (``POST /connect/sessions/reconnect``, issue 17) fixes one.
    """
    stores = request.app[STORES]
    if await stores.integrations.get(env.name, integration) is None:
        raise ApiError("unknown_provider_config", f"There is no integration '{integration}' in '{env.name}'.")
    session = ConnectSession(
        id="",
        environment=env.name,
        end_user=dict(DASHBOARD_END_USER),
        allowed_integrations=[integration],
        connection_id=connection_id,
        expires_at=utcnow() + SESSION_LIFETIME,
    )
    return await stores.connect_sessions.create(session)


async def log_activity(
    request: web.Request,
    env: Environment,
    *,
    operation_type: str,
    message: str,
    provider_config_key: str | None = None,
    provider: str | None = None,
    connection_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """An admin step as an activity entry, through the outbox like every other event."""
    data = ActivityMessage(
        operation_id=uuid.uuid4().hex,
        operation_type=operation_type,
        level="info",
        message=message,
        state="success",
        provider_config_key=provider_config_key,
        provider=provider,
        connection_id=connection_id,
        meta=meta,
    )
    subject = f"{provider_config_key}/{connection_id}" if provider_config_key and connection_id else None
    event = make_event(data, type="activity.message", source=SOURCE, environment=env.name, subject=subject)
    row = await request.app[STORES].outbox.add(event)
    request.app[RELAY].publish_soon([row])


async def rotate_webhook_key(request: web.Request, env: Environment) -> None:
    """A new signing key at once; the current ones keep signing for the default grace period."""
    await WebhookKeyStore(request.app[MONGO_DB], request.app[CIPHER]).rotate(env.name)
    await request.app[ENV_CACHE].changed(env.name)  # the dispatcher's caches drop the old keys


async def replay_delivery(request: web.Request, env: Environment, delivery_id: str) -> None:
    """Ask the webhook dispatcher to send one delivery again: a command through the outbox."""
    if await DeliveryLog(request.app[MONGO_DB]).latest(env.name, delivery_id) is None:
        raise ApiError("unknown_delivery", f"No webhook delivery '{delivery_id}' in this environment.", status=404)
    data = WebhookReplayRequested(delivery_id=delivery_id)
    event = make_event(data, type="webhook.replay_requested", source=SOURCE, environment=env.name)
    row = await request.app[STORES].outbox.add(event)
    request.app[RELAY].publish_soon([row])


async def enable_endpoint(request: web.Request, env: Environment, url: str) -> None:
    if url not in env.webhooks.urls():
        raise ApiError("unknown_endpoint", "That URL is not in the environment's webhook settings.", status=404)
    await EndpointStore(request.app[MONGO_DB]).enable(env.name, url)
    await request.app[ENV_CACHE].changed(env.name)
