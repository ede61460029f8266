"""The webhook dispatcher application: MongoDB, the broker, an HTTP client, and the ``deliver`` consumer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.bus import WEBHOOK_DISPATCHER, ConsumerRunner, ConsumerSpec, service_consumers
from keyway_shared.egress import guarded_session
from keyway_shared.events import CloudEvent
from keyway_shared.service import (
    BROKER,
    CIPHER,
    MONGO_DB,
    add_health_routes,
    broker_context,
    build_cipher,
    mongo_check,
    mongo_context,
)
from keyway_shared.store import EnvironmentStore, MongoIdempotencyGuard, WebhookKeyStore

from .deliveries import DeliveryLog
from .dispatcher import Dispatcher
from .sender import WebhookSender
from .settings import DispatcherSettings

__all__ = ["CONSUMERS", "HTTP_SESSION", "SERVICE", "Consumers", "create_app", "deliver_spec"]

SERVICE = WEBHOOK_DISPATCHER


@dataclass
class Consumers:
    """The runner, once the broker connected (it needs the connection to exist)."""

    runner: ConsumerRunner | None = None


CONSUMERS = web.AppKey("dispatcher_consumers", Consumers)
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


def consumer_context(settings: DispatcherSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        link = app[BROKER]
        consumers = Consumers()
        app[CONSUMERS] = consumers

        async def publish(event: CloudEvent[Any]) -> None:
            await link.publish(event)

        dispatcher = Dispatcher(
            environments=EnvironmentStore(db, app[CIPHER]),
            keys=WebhookKeyStore(db, app[CIPHER]),
            sender=WebhookSender(app[HTTP_SESSION], timeout=settings.webhook_timeout_seconds),
            deliveries=DeliveryLog(db, retention=timedelta(days=settings.delivery_retention_days)),
            publish=publish,
        )

        async def start_runner(connection: AbstractRobustConnection) -> None:
            assert link.publisher is not None  # set by the link before its on_connect callbacks run
            runner = ConsumerRunner(
                connection=connection,
                publisher=link.publisher,
                queue_type=settings.queue_type,
                guard=MongoIdempotencyGuard(db),
                shutdown_grace=settings.shutdown_grace_seconds,
            )
            # Guarded: a webhook is not idempotent, so the same event delivered twice by the bus
            # must be handled once.
            runner.add(deliver_spec(settings), dispatcher.handle, retry_on=(PyMongoError,))
            consumers.runner = runner
            await runner.start()

        link.on_connect(start_runner)
        yield
        if consumers.runner is not None:
            await consumers.runner.stop()

    return ctx


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
            consumer_context(settings),
        ]
    )

    async def broker_ready() -> bool:
        link = app.get(BROKER)
        return link is not None and link.is_ready

    async def mongo_ready() -> bool:
        db = app.get(MONGO_DB)
        return db is not None and await mongo_check(db)()

    add_health_routes(app, {"broker": broker_ready, "mongo": mongo_ready}, service=SERVICE)
    return app
