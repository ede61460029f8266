"""Outgoing webhooks: signing-key rotation, replays and endpoints enabled again.

The gateway never sends a webhook itself. A replay is a ``webhook.replay_requested`` event written
to the outbox (so it survives the broker being down) that the dispatcher consumes. A signing-key
rotation or an endpoint enabled again is broadcast like any environment change, so the
dispatcher's caches drop the old state at once.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from keyway_shared.events import WebhookReplayRequested, make_event
from keyway_shared.service import CIPHER, MONGO_DB
from keyway_shared.store import Environment, WebhookKeyStore
from keyway_shared.store.webhook_deliveries import DeliveryLog
from keyway_shared.store.webhook_endpoints import EndpointStore
from keyway_shared.store.webhook_keys import DEFAULT_ROTATION_GRACE, SigningKey

from ..env_cache import ENV_CACHE
from ..http.errors import ApiError
from ..resources import STORES
from .connections import SOURCE
from .outbox_relay import RELAY

__all__ = [
    "enable_endpoint",
    "replay_delivery",
    "request_replay",
    "rotate_signing_key",
    "signing_keys",
    "unknown_delivery",
]


def signing_keys(app: web.Application) -> WebhookKeyStore:
    return WebhookKeyStore(app[MONGO_DB], app[CIPHER])


async def rotate_signing_key(
    app: web.Application, env: Environment, *, grace: timedelta = DEFAULT_ROTATION_GRACE
) -> SigningKey:
    """A new key that signs at once; the current keys keep signing beside it for ``grace``."""
    new = await signing_keys(app).rotate(env.name, grace=grace)
    await app[ENV_CACHE].changed(env.name)  # the dispatcher's caches drop the old keys
    return new


def unknown_delivery(delivery_id: str) -> ApiError:
    return ApiError("unknown_delivery", f"No webhook delivery '{delivery_id}' in this environment.", status=404)


async def request_replay(app: web.Application, env: Environment, data: WebhookReplayRequested) -> str:
    """The replay command through the outbox; its id (the event's) names the replay."""
    event = make_event(data, type="webhook.replay_requested", source=SOURCE, environment=env.name)
    row = await app[STORES].outbox.add(event)
    app[RELAY].publish_soon([row])
    return event.id


async def replay_delivery(app: web.Application, env: Environment, delivery_id: str) -> str:
    """Send one delivery again (to the URL now in its slot), with a fresh retry schedule."""
    if await DeliveryLog(app[MONGO_DB]).latest(env.name, delivery_id) is None:
        raise unknown_delivery(delivery_id)
    return await request_replay(app, env, WebhookReplayRequested(delivery_id=delivery_id))


async def enable_endpoint(app: web.Application, env: Environment, url: str) -> bool:
    """Deliver to a disabled URL again; True when it was disabled."""
    if url not in env.webhooks.urls():
        raise ApiError("unknown_endpoint", "That URL is not in the environment's webhook settings.", status=404)
    enabled = await EndpointStore(app[MONGO_DB]).enable(env.name, url)
    await app[ENV_CACHE].changed(env.name)
    return enabled
