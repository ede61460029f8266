"""The activity-log application: MongoDB, the broker, and one consumer of every event (``#``).

Each delivery's handler turns its event into an entry and waits in a shared :class:`Batcher`, so up
to ``prefetch`` events are stored in one round trip; the handler returns (and the runner acks)
only once its entry is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.batching import Batcher
from keyway_shared.bus import ACTIVITY_LOG, ConsumerSpec, Handler, MessageContext, service_consumers
from keyway_shared.events import CloudEvent
from keyway_shared.service import (
    CONSUMERS,
    MONGO_DB,
    Subscription,
    add_readiness_routes,
    broker_context,
    consumers_context,
    mongo_context,
)

from .entries import Entry, entry_for
from .settings import ActivityLogSettings
from .writer import ActivityWriter

__all__ = ["BATCHER", "CONSUMERS", "SERVICE", "create_app", "record_spec"]

SERVICE = ACTIVITY_LOG


BATCHER: web.AppKey[Batcher[Entry]] = web.AppKey("activity_batcher")


def record_spec(settings: ActivityLogSettings) -> ConsumerSpec:
    # The queue, bindings and retries come from the bus registry (the gateway declares the same
    # ones); the prefetch bounds the largest batch, so it follows the batch size.
    return replace(service_consumers(settings.bus_namespace)[ACTIVITY_LOG], prefetch=settings.batch_size)


def make_record_handler(batcher: Batcher[Entry], *, retention: timedelta) -> Handler:
    async def record(event: CloudEvent[Any], ctx: MessageContext) -> None:
        await batcher.submit(entry_for(event, retention=retention))

    return record


def batcher_context(settings: ActivityLogSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        batcher: Batcher[Entry] = Batcher(
            ActivityWriter(app[MONGO_DB]).write, max_size=settings.batch_size, max_delay=settings.batch_delay_ms / 1000
        )
        app[BATCHER] = batcher
        yield
        # The consumers stopped first (they are registered after this): in-flight handlers waited
        # on the batcher, which kept flushing until now, so their entries are stored and acknowledged.
        await batcher.close()

    return ctx


def subscriptions(settings: ActivityLogSettings) -> Callable[[web.Application], list[Subscription]]:
    def build(app: web.Application) -> list[Subscription]:
        handler = make_record_handler(app[BATCHER], retention=timedelta(days=settings.retention_days))
        # Unguarded: the writes are idempotent by event id, and skipping the guard saves two round
        # trips per event.
        return [Subscription(spec=record_spec(settings), handler=handler, retry_on=(PyMongoError,), guarded=False)]

    return build


def create_app(settings: ActivityLogSettings) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.extend(
        [
            mongo_context(settings, app_name=SERVICE, collections=["activity_operations", "activity_messages"]),
            broker_context(settings, name=SERVICE),
            batcher_context(settings),
            consumers_context(settings, subscriptions(settings)),
        ]
    )
    add_readiness_routes(app, service=SERVICE)
    return app
