"""The webhook dispatcher application: MongoDB, the broker, an HTTP client, and three consumers.

deliver   auth events → the first attempt to each configured URL
send      one delivery per message: its retries (from the delay queues) and replays
replay    replay requests from the API → deliveries on ``send``
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.bus import (
    WEBHOOK_DISPATCHER,
    WEBHOOK_REPLAY,
    WEBHOOK_SEND,
    ConsumerRunner,
    ConsumerSpec,
    PublishError,
    RetrySchedule,
    environment_changes_exchange,
    service_consumers,
)
from keyway_shared.bus.environment_changes import EnvironmentChanges
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
from keyway_shared.store.webhook_deliveries import DeliveryLog
from keyway_shared.store.webhook_endpoints import EndpointStore

from .announce import Announcer
from .attempts import Attempter, Limits
from .breaker import CircuitBreaker
from .caches import EndpointCache, SnapshotCache
from .dispatcher import Dispatcher, Sender
from .http1 import WebhookHttpClient
from .messages import DELIVERY_TYPE, WebhookDelivery
from .policy import RetryPolicy
from .queue import DeliveryQueue
from .replay import Replayer
from .sender import WebhookSender, webhook_client
from .settings import DispatcherSettings

__all__ = ["CONSUMERS", "DISPATCHER", "HTTP_CLIENT", "SERVICE", "Parts", "create_app", "deliver_spec", "specs"]

SERVICE = WEBHOOK_DISPATCHER

HTTP_CLIENT = web.AppKey("http_client", WebhookHttpClient)


@dataclass(frozen=True, kw_only=True)
class Specs:
    deliver: ConsumerSpec
    send: ConsumerSpec
    replay: ConsumerSpec


@dataclass(frozen=True, kw_only=True)
class Parts:
    """What the handlers share, opened once per process."""

    specs: Specs
    policy: RetryPolicy
    log: DeliveryLog
    environments: SnapshotCache
    endpoints: EndpointCache
    breaker: CircuitBreaker
    dispatcher: Dispatcher
    sender: Sender
    replayer: Replayer


DISPATCHER = web.AppKey("webhook_dispatcher", Parts)


def retry_policy(settings: DispatcherSettings) -> RetryPolicy:
    scale = settings.retry_scale
    return RetryPolicy(
        schedule=tuple(delay * scale for delay in settings.retry_schedule),
        jitter=settings.retry_jitter,
        overload_minimum=settings.overload_min_delay_seconds * scale,
    )


def specs(settings: DispatcherSettings) -> Specs:
    # Queues, bindings and the default schedule come from the bus registry, which the gateway declares too.
    registry = service_consumers(settings.bus_namespace)
    policy = retry_policy(settings)
    return Specs(
        deliver=replace(registry[WEBHOOK_DISPATCHER], prefetch=settings.concurrency),
        send=replace(
            registry[WEBHOOK_SEND],
            prefetch=settings.concurrency,
            # The runner's attempt count and the policy's must agree: one more attempt than waits.
            retry=RetrySchedule(delays=policy.schedule, jitter=policy.jitter),
            message_types=((DELIVERY_TYPE, WebhookDelivery),),
        ),
        replay=registry[WEBHOOK_REPLAY],
    )


def deliver_spec(settings: DispatcherSettings) -> ConsumerSpec:
    return specs(settings).deliver


def http_client_context(settings: DispatcherSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # No cookies are kept at all: one receiver's must never ride along to another.
        client = webhook_client(
            settings.egress_allowlist,
            timeout=settings.webhook_timeout_seconds,
            limit=max(100, settings.concurrency * 4),
        )
        app[HTTP_CLIENT] = client
        yield
        await client.close()

    return ctx


def parts_context(settings: DispatcherSettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        link = app[BROKER]
        policy = retry_policy(settings)
        the_specs = specs(settings)

        async def publish(event: CloudEvent[Any], *, confirm: bool = True) -> None:
            if link.publisher is None:
                raise PublishError("broker not connected yet")
            await link.publisher.publish(event, confirm=confirm)

        def runner() -> ConsumerRunner | None:
            consumers = app.get(CONSUMERS)
            return consumers.runner if consumers is not None else None

        environments = SnapshotCache(
            EnvironmentStore(db, app[CIPHER]), WebhookKeyStore(db, app[CIPHER]), ttl=settings.cache_seconds
        )
        endpoints = EndpointCache(EndpointStore(db), ttl=settings.cache_seconds)
        log = DeliveryLog(db, retention=timedelta(days=settings.delivery_retention_days))
        breaker = CircuitBreaker(
            failures=settings.breaker_failures,
            window=settings.breaker_window_seconds,
            cooldown=settings.breaker_cooldown_seconds,
        )
        disable_after = timedelta(seconds=settings.disable_after_seconds)
        attempter = Attempter(
            environments=environments,
            endpoints=endpoints,
            log=log,
            sender=WebhookSender(app[HTTP_CLIENT]),
            breaker=breaker,
            policy=policy,
            announcer=Announcer(publish),
            limits=Limits(
                lease=timedelta(seconds=settings.webhook_timeout_seconds + 30),
                disable_after=disable_after,
                forget_after=disable_after * 2,
            ),
        )
        queue = DeliveryQueue(the_specs.send, publisher=lambda: link.publisher, runner=runner)
        # How soon work held up by a database or broker hiccup comes back: soon, never in a hot loop.
        hiccup = max(0.2, min(5.0, policy.schedule[0])) if policy.schedule else 5.0
        app[DISPATCHER] = Parts(
            specs=the_specs,
            policy=policy,
            log=log,
            environments=environments,
            endpoints=endpoints,
            breaker=breaker,
            dispatcher=Dispatcher(environments=environments, attempter=attempter, queue=queue, hiccup_delay=hiccup),
            sender=Sender(attempter=attempter, hiccup_delay=hiccup),
            replayer=Replayer(environments=EnvironmentStore(db, app[CIPHER]), log=log, queue=queue),
        )
        changes = EnvironmentChanges(environment_changes_exchange(settings.bus_namespace))
        changes.subscribe(environments.drop)
        changes.subscribe(endpoints.drop)
        link.on_connect(changes.attach)
        yield
        await log.close()

    return ctx


def subscriptions(app: web.Application) -> list[Subscription]:
    parts = app[DISPATCHER]
    return [
        # Unguarded: the attempt claims make both idempotent, at no extra database round trip.
        Subscription(spec=parts.specs.deliver, handler=parts.dispatcher.handle, guarded=False),
        Subscription(spec=parts.specs.send, handler=parts.sender.handle, guarded=False),
        Subscription(spec=parts.specs.replay, handler=parts.replayer.handle, retry_on=(PyMongoError, PublishError)),
    ]


def create_app(settings: DispatcherSettings) -> web.Application:
    app = web.Application()
    app[CIPHER] = build_cipher(settings)
    app.cleanup_ctx.extend(
        [
            mongo_context(
                settings,
                app_name=SERVICE,
                collections=[
                    "environments",
                    "webhook_deliveries",
                    "webhook_attempt_claims",
                    "webhook_endpoints",
                    "processed_events",
                ],
            ),
            broker_context(settings, name=SERVICE),
            http_client_context(settings),
            parts_context(settings),
            consumers_context(settings, subscriptions),
        ]
    )
    add_readiness_routes(app, service=SERVICE)
    return app
