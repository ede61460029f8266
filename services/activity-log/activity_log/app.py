"""The activity-log application: MongoDB, the broker, one consumer of every event (``#``), the timeout sweep.

Each delivery's handler turns its event into an entry and waits in a shared :class:`Batcher`, so up
to ``batch_size`` events are stored in one round trip; the handler returns (and the runner acks)
only once its entry is stored. The consumer may hold ``batches_in_flight`` batches, so one fills
while the previous one is written. The query side (``/logs``) is the gateway's, over
``keyway_shared.activity``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from aiohttp import web
from pymongo.errors import OperationFailure, PyMongoError

from keyway_shared.batching import Batcher
from keyway_shared.bus import ACTIVITY_LOG, ConsumerSpec, Handler, MessageContext, service_consumers
from keyway_shared.events import CloudEvent
from keyway_shared.logging import get_logger
from keyway_shared.service import (
    CONSUMERS,
    MONGO_DB,
    Subscription,
    add_readiness_routes,
    broker_context,
    consumers_context,
    mongo_context,
)
from keyway_shared.store import Database

from .entries import DEFAULT_DEADLINES, Entry, entry_for
from .settings import ActivityLogSettings
from .timeouts import TimeoutSweeper
from .writer import ActivityWriter

__all__ = ["BATCHER", "CONSUMERS", "SERVICE", "SWEEPER", "create_app", "deadlines", "record_spec"]

SERVICE = ACTIVITY_LOG
# Indexes earlier versions declared; the query no longer uses them (see keyway_shared.store.indexes).
RETIRED_INDEXES = {"activity_operations": ("env_time", "env_connection")}

BATCHER: web.AppKey[Batcher[Entry]] = web.AppKey("activity_batcher")
SWEEPER = web.AppKey("activity_timeout_sweeper", TimeoutSweeper)
log = get_logger(__name__)


def record_spec(settings: ActivityLogSettings) -> ConsumerSpec:
    # The queue, bindings and retries come from the bus registry (the gateway declares the same
    # ones); the prefetch bounds what is in hand: a batch being written and one filling.
    prefetch = settings.batch_size * settings.batches_in_flight
    return replace(service_consumers(settings.bus_namespace)[ACTIVITY_LOG], prefetch=prefetch)


def deadlines(settings: ActivityLogSettings) -> Mapping[str, timedelta]:
    connect = timedelta(seconds=settings.connect_timeout_seconds)
    return {kind: connect for kind in DEFAULT_DEADLINES}


def make_record_handler(
    batcher: Batcher[Entry], *, retention: timedelta, deadlines: Mapping[str, timedelta] = DEFAULT_DEADLINES
) -> Handler:
    async def record(event: CloudEvent[Any], ctx: MessageContext) -> None:
        await batcher.submit(entry_for(event, retention=retention, deadlines=deadlines))

    return record


async def retire_indexes(db: Database) -> None:
    for collection, names in RETIRED_INDEXES.items():
        for name in names:
            try:
                await db[collection].drop_index(name)
                log.info("dropped a retired index", collection=collection, index=name)
            except OperationFailure:
                pass  # not there: a new database, or already dropped
            except PyMongoError:
                log.warning("could not drop a retired index; next start tries again", index=name)


def writer_context(settings: ActivityLogSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        # In the background: start-up must not wait on it (the consumers start when the broker is up).
        retiring = asyncio.create_task(retire_indexes(db), name="activity-retire-indexes")
        batcher: Batcher[Entry] = Batcher(
            ActivityWriter(db).write, max_size=settings.batch_size, max_delay=settings.batch_delay_ms / 1000
        )
        app[BATCHER] = batcher
        sweeper = TimeoutSweeper(
            db, every=settings.timeout_sweep_seconds, retention=timedelta(days=settings.retention_days)
        )
        app[SWEEPER] = sweeper
        sweeper.start()
        yield
        await sweeper.stop()
        retiring.cancel()
        with contextlib.suppress(asyncio.CancelledError, PyMongoError):
            await retiring
        # The consumers stopped first (they are registered after this): in-flight handlers waited
        # on the batcher, which kept flushing until now, so their entries are stored and acknowledged.
        await batcher.close()

    return ctx


def subscriptions(settings: ActivityLogSettings) -> Callable[[web.Application], list[Subscription]]:
    def build(app: web.Application) -> list[Subscription]:
        handler = make_record_handler(
            app[BATCHER], retention=timedelta(days=settings.retention_days), deadlines=deadlines(settings)
        )
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
            writer_context(settings),
            consumers_context(settings, subscriptions(settings)),
        ]
    )
    add_readiness_routes(app, service=SERVICE)
    return app
