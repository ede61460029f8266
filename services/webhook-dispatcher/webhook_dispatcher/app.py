"""The webhook dispatcher application: MongoDB, the broker, an HTTP client, and the ``deliver`` consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.bus import WEBHOOK_DISPATCHER, ConsumerSpec, service_consumers
from keyway_shared.egress import guarded_session
from keyway_shared.events import CloudEvent
from keyway_shared.service import (
    BROKER,
    CIPHER,
    CONSUMERS,
    MONGO_DB,
    Subscription,
    add_readiness_routes,
    broker_context,
    build_cipher,
    consumers_context,
    mongo_context,
)
from keyway_shared.store import EnvironmentStore, WebhookKeyStore

from .deliveries import DeliveryLog
from .dispatcher import Dispatcher
from .sender import WebhookSender
from .settings import DispatcherSettings

__all__ = ["CONSUMERS", "HTTP_SESSION", "SERVICE", "create_app", "deliver_spec"]

SERVICE = WEBHOOK_DISPATCHER


HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)


def deliver_spec(settings: DispatcherSettings) -> ConsumerSpec:
    # Queue, bindings and retries come from the bus registry, which the gateway declares too.
    return service_consumers(settings.bus_namespace)[WEBHOOK_DISPATCHER]


def http_session_context(settings: DispatcherSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        session = guarded_session(
            settings.egress_allowlist,
            timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds),
            # No cookie jar: one receiver's cookies must never ride along to another.
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": "Keyway-Webhooks"},
        )
        app[HTTP_SESSION] = session
        yield
        await session.close()

    return ctx


def subscriptions(settings: DispatcherSettings) -> Callable[[web.Application], list[Subscription]]:
    def build(app: web.Application) -> list[Subscription]:
        db = app[MONGO_DB]
        link = app[BROKER]

        async def publish(event: CloudEvent[Any]) -> None:
            await link.publish(event)

        dispatcher = Dispatcher(
            environments=EnvironmentStore(db, app[CIPHER]),
            keys=WebhookKeyStore(db, app[CIPHER]),
            sender=WebhookSender(app[HTTP_SESSION], timeout=settings.webhook_timeout_seconds),
            deliveries=DeliveryLog(db, retention=timedelta(days=settings.delivery_retention_days)),
            publish=publish,
        )
        # Guarded: a webhook is not idempotent, so the same event delivered twice by the bus
        # must be handled once.
        return [Subscription(spec=deliver_spec(settings), handler=dispatcher.handle, retry_on=(PyMongoError,))]

    return build


def create_app(settings: DispatcherSettings) -> web.Application:
    app = web.Application()
    app[CIPHER] = build_cipher(settings)
    app.cleanup_ctx.extend(
        [
            mongo_context(
                settings, app_name=SERVICE, collections=["environments", "webhook_deliveries", "processed_events"]
            ),
            broker_context(settings, name=SERVICE),
            http_session_context(settings),
            consumers_context(settings, subscriptions(settings)),
        ]
    )
    add_readiness_routes(app, service=SERVICE)
    return app
