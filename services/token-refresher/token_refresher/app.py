"""The token refresher application: MongoDB, the broker, and the ``schedule`` consumer of ``connection.*``.

Issue 5 adds the refresh loop itself (leases, bounded concurrency, provider calls) beside this
consumer, as one more cleanup context.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.bus import TOKEN_REFRESHER, ConsumerSpec, service_consumers
from keyway_shared.service import (
    CONSUMERS,
    MONGO_DB,
    Subscription,
    add_readiness_routes,
    broker_context,
    consumers_context,
    mongo_context,
)

from .schedule import RefreshScheduler
from .settings import RefresherSettings

__all__ = ["CONSUMERS", "SERVICE", "create_app", "schedule_spec"]

SERVICE = TOKEN_REFRESHER


def schedule_spec(settings: RefresherSettings) -> ConsumerSpec:
    # Queue, bindings and retries come from the bus registry, which the gateway declares too.
    return service_consumers(settings.bus_namespace)[TOKEN_REFRESHER]


def subscriptions(settings: RefresherSettings) -> Callable[[web.Application], list[Subscription]]:
    def build(app: web.Application) -> list[Subscription]:
        scheduler = RefreshScheduler(app[MONGO_DB], margin=timedelta(seconds=settings.refresh_margin_seconds))
        # Unguarded: scheduling re-reads the connection, so handling an event twice is harmless.
        return [
            Subscription(
                spec=schedule_spec(settings), handler=scheduler.handle, retry_on=(PyMongoError,), guarded=False
            )
        ]

    return build


def create_app(settings: RefresherSettings) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.extend(
        [
            mongo_context(settings, app_name=SERVICE, collections=["connections"]),
            broker_context(settings, name=SERVICE),
            consumers_context(settings, subscriptions(settings)),
        ]
    )
    add_readiness_routes(app, service=SERVICE)
    return app
