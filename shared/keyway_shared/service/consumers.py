"""What every consuming service does with the broker: subscribe its handlers once connected,
stop them first on shutdown, and report liveness and readiness of the broker and the database.

A service lists its :class:`Subscription` objects; this module owns the runner's life cycle, so the
three consumer services differ only in what they handle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from ..bus import ConsumerRunner, ConsumerSpec, Handler
from ..settings import BaseServiceSettings
from ..store import MongoIdempotencyGuard
from .broker import BrokerLink
from .health import BrokerReadiness, add_health_routes, mongo_check
from .resources import BROKER, MONGO_DB

__all__ = ["CONSUMERS", "Consumers", "Subscription", "add_readiness_routes", "consumers_context"]


@dataclass(frozen=True, kw_only=True)
class Subscription:
    spec: ConsumerSpec
    handler: Handler
    retry_on: tuple[type[BaseException], ...] = ()
    guarded: bool = True  # False for handlers that are idempotent by themselves (saves two round trips)


@dataclass
class Consumers:
    """The runner, once the broker connected (it needs the connection to exist)."""

    runner: ConsumerRunner | None = None
    subscriptions: list[Subscription] = field(default_factory=list)


CONSUMERS = web.AppKey("consumers", Consumers)


def consumers_context(
    settings: BaseServiceSettings, subscriptions: Callable[[web.Application], list[Subscription]]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Register it after the resources the handlers use: it stops before they close."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        link = app[BROKER]
        consumers = Consumers(subscriptions=subscriptions(app))
        app[CONSUMERS] = consumers

        async def start_runner(connection: AbstractRobustConnection) -> None:
            assert link.publisher is not None  # set by the link before its on_connect callbacks run
            runner = ConsumerRunner(
                connection=connection,
                publisher=link.publisher,
                queue_type=settings.queue_type,
                guard=MongoIdempotencyGuard(db),
                shutdown_grace=settings.shutdown_grace_seconds,
            )
            for sub in consumers.subscriptions:
                runner.add(sub.spec, sub.handler, retry_on=sub.retry_on, guarded=sub.guarded)
            consumers.runner = runner
            await runner.start()

        link.on_connect(start_runner)
        yield
        if consumers.runner is not None:
            await consumers.runner.stop()

    return ctx


def add_readiness_routes(app: web.Application, *, service: str) -> None:
    """``/healthz`` (the broker link can still recover), ``/readyz`` (broker and database, looked up
    when asked) and ``/metrics``."""

    def broker_link() -> BrokerLink | None:
        return app.get(BROKER)

    def broker_alive() -> bool:
        link = broker_link()
        return link is None or link.can_recover

    async def mongo_ready() -> bool:
        db = app.get(MONGO_DB)
        return db is not None and await mongo_check(db)()

    add_health_routes(
        app,
        {"broker": BrokerReadiness(broker_link), "mongo": mongo_ready},
        service=service,
        liveness={"broker": broker_alive},
    )
