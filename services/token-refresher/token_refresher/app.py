"""The token refresher application: MongoDB, the broker, and the ``schedule`` consumer of ``connection.*``.

Issue 5 adds the refresh loop itself (leases, bounded concurrency, provider calls) beside this
consumer, as one more cleanup context.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.bus import TOKEN_REFRESHER, ConsumerRunner, ConsumerSpec, service_consumers
from keyway_shared.service import BROKER, MONGO_DB, add_health_routes, broker_context, mongo_check, mongo_context
from keyway_shared.store import MongoIdempotencyGuard

from .schedule import RefreshScheduler
from .settings import RefresherSettings

__all__ = ["CONSUMERS", "SERVICE", "Consumers", "create_app", "schedule_spec"]

SERVICE = TOKEN_REFRESHER


@dataclass
class Consumers:
    """The runner, once the broker connected (it needs the connection to exist)."""

    runner: ConsumerRunner | None = None


CONSUMERS = web.AppKey("refresher_consumers", Consumers)


def schedule_spec(settings: RefresherSettings) -> ConsumerSpec:
    # Queue, bindings and retries come from the bus registry, which the gateway declares too.
    return service_consumers(settings.bus_namespace)[TOKEN_REFRESHER]


def consumer_context(settings: RefresherSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        link = app[BROKER]
        consumers = Consumers()
        app[CONSUMERS] = consumers
        scheduler = RefreshScheduler(db, margin=timedelta(seconds=settings.refresh_margin_seconds))

        async def start_runner(connection: AbstractRobustConnection) -> None:
            assert link.publisher is not None  # set by the link before its on_connect callbacks run
            runner = ConsumerRunner(
                connection=connection,
                publisher=link.publisher,
                queue_type=settings.queue_type,
                guard=MongoIdempotencyGuard(db),
                shutdown_grace=settings.shutdown_grace_seconds,
            )
            # Unguarded: scheduling re-reads the connection, so handling an event twice is harmless.
            runner.add(schedule_spec(settings), scheduler.handle, retry_on=(PyMongoError,), guarded=False)
            consumers.runner = runner
            await runner.start()

        link.on_connect(start_runner)
        yield
        if consumers.runner is not None:
            await consumers.runner.stop()

    return ctx


def create_app(settings: RefresherSettings) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.extend(
        [
            mongo_context(settings, app_name=SERVICE, collections=["connections"]),
            broker_context(settings, name=SERVICE),
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
