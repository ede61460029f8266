"""The activity-log application: MongoDB, the broker, and one consumer of every event (``#``).

Each delivery's handler turns its event into an entry and waits in a shared :class:`Batcher`, so up
to ``prefetch`` events are stored in one round trip; the handler returns (and the runner acks)
only once its entry is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.batching import Batcher
from keyway_shared.bus import ACTIVITY_LOG, ConsumerRunner, ConsumerSpec, Handler, MessageContext, service_consumers
from keyway_shared.events import CloudEvent
from keyway_shared.service import BROKER, MONGO_DB, add_health_routes, broker_context, mongo_check, mongo_context
from keyway_shared.store import MongoIdempotencyGuard

from .entries import Entry, entry_for
from .settings import ActivityLogSettings
from .writer import ActivityWriter

__all__ = ["BATCHER", "CONSUMERS", "SERVICE", "Consumers", "create_app", "record_spec"]

SERVICE = ACTIVITY_LOG


@dataclass
class Consumers:
    """The runner, once the broker connected (it needs the connection to exist)."""

    runner: ConsumerRunner | None = None


CONSUMERS = web.AppKey("activity_consumers", Consumers)
BATCHER: web.AppKey[Batcher[Entry]] = web.AppKey("activity_batcher")


def record_spec(settings: ActivityLogSettings) -> ConsumerSpec:
    # The queue, bindings and retries come from the bus registry (the gateway declares the same
    # ones); the prefetch bounds the largest batch, so it follows the batch size.
    return replace(service_consumers(settings.bus_namespace)[ACTIVITY_LOG], prefetch=settings.batch_size)


def make_record_handler(batcher: Batcher[Entry], *, retention: timedelta) -> Handler:
    async def record(event: CloudEvent[Any], ctx: MessageContext) -> None:
        await batcher.submit(entry_for(event, retention=retention))

    return record


def consumer_context(settings: ActivityLogSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        link = app[BROKER]
        batcher: Batcher[Entry] = Batcher(
            ActivityWriter(db).write, max_size=settings.batch_size, max_delay=settings.batch_delay_ms / 1000
        )
        consumers = Consumers()
        app[BATCHER] = batcher
        app[CONSUMERS] = consumers
        handler = make_record_handler(batcher, retention=timedelta(days=settings.retention_days))

        async def start_runner(connection: AbstractRobustConnection) -> None:
            assert link.publisher is not None  # set by the link before its on_connect callbacks run
            runner = ConsumerRunner(
                connection=connection,
                publisher=link.publisher,
                queue_type=settings.queue_type,
                guard=MongoIdempotencyGuard(db),
                shutdown_grace=settings.shutdown_grace_seconds,
            )
            # Unguarded: the writes are idempotent by event id, and skipping the guard saves two
            # round trips per event.
            runner.add(record_spec(settings), handler, retry_on=(PyMongoError,), guarded=False)
            consumers.runner = runner
            await runner.start()

        link.on_connect(start_runner)
        yield
        # Stop taking messages and let in-flight handlers finish; they wait on the batcher, which
        # keeps flushing until closed, so their entries are stored and acknowledged.
        if consumers.runner is not None:
            await consumers.runner.stop()
        await batcher.close()

    return ctx


def create_app(settings: ActivityLogSettings) -> web.Application:
    app = web.Application()
    app.cleanup_ctx.extend(
        [
            mongo_context(settings, app_name=SERVICE, collections=["activity_operations", "activity_messages"]),
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
