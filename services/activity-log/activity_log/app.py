"""The activity-log application: MongoDB, the broker, one consumer of every event (``#``), the timeout sweep.

The consumer (:mod:`.ingest`) turns each delivery into an entry and gathers them into batches of
up to ``batch_size``, each stored in one round trip per collection and only then acknowledged,
with one ack frame. The prefetch holds ``batches_in_flight`` batches, so one fills while the
previous one is written. The query side (``/logs``) is the gateway's, over ``keyway_shared.activity``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import timedelta

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pymongo.errors import OperationFailure, PyMongoError

from keyway_shared.bus import ACTIVITY_LOG, ConsumerSpec, service_consumers
from keyway_shared.logging import get_logger
from keyway_shared.service import BROKER, MONGO_DB, add_readiness_routes, broker_context, mongo_context
from keyway_shared.store import Database

from .entries import DEFAULT_DEADLINES, Entry, entry_for
from .ingest import IngestConsumer
from .settings import ActivityLogSettings
from .timeouts import TimeoutSweeper
from .wire import read_event
from .writer import ActivityWriter

__all__ = ["INGEST", "SERVICE", "SWEEPER", "create_app", "deadlines", "entry_reader", "record_spec"]

SERVICE = ACTIVITY_LOG
# Indexes earlier versions declared; the query no longer uses them (see keyway_shared.store.indexes).
RETIRED_INDEXES = {"activity_operations": ("env_time", "env_connection")}

INGEST = web.AppKey("activity_ingest", IngestConsumer)
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


def entry_reader(
    *, retention: timedelta, deadlines: Mapping[str, timedelta] = DEFAULT_DEADLINES
) -> Callable[[bytes], Entry]:
    """A message body to its entry; raises EventDecodeError for what the event models reject."""

    def read(body: bytes) -> Entry:
        return entry_for(read_event(body), retention=retention, deadlines=deadlines)

    return read


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


def ingest_context(settings: ActivityLogSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Register it after the database and the broker: it stops (storing what it holds) before they close."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db, link = app[MONGO_DB], app[BROKER]
        # In the background: start-up must not wait on it (the consumer starts when the broker is up).
        retiring = asyncio.create_task(retire_indexes(db), name="activity-retire-indexes")
        retention = timedelta(days=settings.retention_days)
        ingest = IngestConsumer(
            record_spec(settings),
            make_entry=entry_reader(retention=retention, deadlines=deadlines(settings)),
            write=ActivityWriter(db).write,
            batch_size=settings.batch_size,
            batch_delay=settings.batch_delay_ms / 1000,
            # The prefetch holds batches_in_flight batches: one fills while the others are written.
            writes_at_once=max(1, settings.batches_in_flight - 1),
            queue_type=settings.queue_type,
            shutdown_grace=settings.shutdown_grace_seconds,
        )
        app[INGEST] = ingest
        sweeper = TimeoutSweeper(db, every=settings.timeout_sweep_seconds, retention=retention)
        app[SWEEPER] = sweeper
        sweeper.start()

        async def start_ingest(connection: AbstractRobustConnection) -> None:
            assert link.publisher is not None  # set by the link before its on_connect callbacks run
            await ingest.start(connection, link.publisher)

        link.on_connect(start_ingest)
        yield
        await ingest.stop()
        await sweeper.stop()
        retiring.cancel()
        with contextlib.suppress(asyncio.CancelledError, PyMongoError):
            await retiring

    return ctx


def create_app(settings: ActivityLogSettings) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.extend(
        [
            mongo_context(settings, app_name=SERVICE, collections=["activity_operations", "activity_messages"]),
            broker_context(settings, name=SERVICE),
            ingest_context(settings),
        ]
    )
    add_readiness_routes(app, service=SERVICE)
    return app
