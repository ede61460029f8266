"""Every action the dashboard takes, each the in-process twin of one public API route.

The dashboard never gets a power automation lacks: each function below calls the operation that
the route named in ``PUBLIC_EQUIVALENT`` calls (``operations/``), so the two cannot drift (a unit
test checks that every named route is in the route table; an integration test posts the same input
through both and compares what is stored). They raise ``ApiError`` like the routes do; the views
show its message beside the form.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from keyway_shared.events import ActivityMessage, make_event, utcnow
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..operations import environment_keys, integrations, outgoing_webhooks
from ..operations.connect_sessions import SESSION_LIFETIME, ConnectSession
from ..operations.connection_removal import Removal, remove_connection
from ..operations.connections import SOURCE
from ..operations.environment import apply_environment_patch
from ..operations.environment_keys import KeyType
from ..operations.integrations import IntegrationBody
from ..operations.outbox_relay import RELAY
from ..resources import STORES

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
    "rotate_webhook_signing_key",
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
    "rotate_webhook_signing_key": ("POST", "/environment/webhook-signing-key/rotate"),
    "replay_delivery": ("POST", "/webhooks/deliveries/{deliveryId}/replay"),
    "enable_endpoint": ("POST", "/webhooks/endpoints/enable"),
}

DASHBOARD_END_USER = {"id": "keyway-dashboard", "display_name": "Dashboard test connection"}


def _integration_body(fields: dict[str, Any]) -> IntegrationBody:
    """The form's fields as ``POST``/``PUT /config`` read their body (only the key can be malformed here)."""
    try:
        return IntegrationBody.model_validate(fields)
    except ValueError as exc:
        if isinstance(exc, ApiError):
            raise
        raise ApiError(
            "invalid_body", "The unique key may only hold letters, digits and ~ : . @ _ - (255 at most)."
        ) from None


async def create_integration(request: web.Request, env: Environment, fields: dict[str, Any]) -> str:
    created = await integrations.create_integration(request.app, env, _integration_body(fields))
    return created.unique_key


async def update_integration(request: web.Request, env: Environment, fields: dict[str, Any]) -> None:
    await integrations.update_integration(request.app, env, _integration_body(fields))


async def delete_integration(request: web.Request, env: Environment, key: str) -> bool:
    return await integrations.delete_integration(request.app, env, key)


async def delete_connection(request: web.Request, env: Environment, key: str, connection_id: str) -> Removal | None:
    """Delete (revoking at the provider first when the integration's ``revoke_on_delete`` is on), as
    ``DELETE /connection`` without ``?revoke`` does."""
    return await remove_connection(request.app, env.name, key, connection_id)


async def update_environment(request: web.Request, env: Environment, raw: dict[str, Any]) -> Environment:
    return await apply_environment_patch(request.app, env, raw)


def _key_type(kind: str) -> KeyType:
    if kind == "secret":
        return "secret"
    if kind == "public":
        return "public"
    raise ApiError("invalid_body", "A key is the 'secret' or the 'public' one.")


async def rotate_key(request: web.Request, env: Environment, kind: str) -> str:
    return await environment_keys.rotate_key(request.app, env, _key_type(kind))


async def activate_key(request: web.Request, env: Environment, kind: str) -> None:
    await environment_keys.activate_key(request.app, env, _key_type(kind))


async def revert_key(request: web.Request, env: Environment, kind: str) -> None:
    await environment_keys.revert_key(request.app, env, _key_type(kind))


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
    await outgoing_webhooks.rotate_signing_key(request.app, env)


async def rotate_webhook_signing_key(request: web.Request, env: Environment) -> str:
    """A new Nango webhook signing key (``X-Nango-Hmac-Sha256``), the only one signing from now on."""
    return await environment_keys.rotate_webhook_signing_key(request.app, env)


async def replay_delivery(request: web.Request, env: Environment, delivery_id: str) -> None:
    """Ask the webhook dispatcher to send one delivery again: a command through the outbox."""
    await outgoing_webhooks.replay_delivery(request.app, env, delivery_id)


async def enable_endpoint(request: web.Request, env: Environment, url: str) -> None:
    await outgoing_webhooks.enable_endpoint(request.app, env, url)
