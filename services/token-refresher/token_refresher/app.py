"""The token refresher application: MongoDB, the broker, the refresh loop, and the ``schedule`` consumer.

Cleanup contexts open in this order and close in reverse, so on SIGTERM the consumer stops first,
then the loop stops claiming and drains its refreshes, then the relay publishes what they wrote,
and only then do the HTTP client, the broker and MongoDB close.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
from aiohttp import web
from pymongo.errors import PyMongoError

from keyway_shared.bus import TOKEN_REFRESHER, ConsumerSpec, service_consumers
from keyway_shared.clock import SYSTEM_CLOCK, Clock
from keyway_shared.egress import guarded_session
from keyway_shared.outbox_relay import OutboxRelay
from keyway_shared.providers import load_catalog
from keyway_shared.refresh.service import RefreshService
from keyway_shared.service import (
    BROKER,
    CIPHER,
    CONSUMERS,
    MONGO_CLIENT,
    MONGO_DB,
    Subscription,
    add_readiness_routes,
    broker_context,
    build_cipher,
    consumers_context,
    mongo_context,
)
from keyway_shared.store import OutboxStore, RefreshStateStore

from .integrations import CachedIntegrations
from .loop import RefreshLoop
from .schedule import RefreshScheduler
from .settings import RefresherSettings

__all__ = ["CONSUMERS", "REFRESHER", "SERVICE", "Refresher", "create_app", "schedule_spec"]

SERVICE = TOKEN_REFRESHER


@dataclass(frozen=True, kw_only=True)
class Refresher:
    service: RefreshService
    state: RefreshStateStore
    loop: RefreshLoop
    relay: OutboxRelay
    clock: Clock


REFRESHER = web.AppKey("refresher", Refresher)


def schedule_spec(settings: RefresherSettings) -> ConsumerSpec:
    # Queue, bindings and retries come from the bus registry, which the gateway declares too.
    return service_consumers(settings.bus_namespace)[TOKEN_REFRESHER]


def refresher_context(settings: RefresherSettings, clock: Clock) -> Callable[[web.Application], AsyncIterator[None]]:
    """The provider client, the outbox relay, the refresh service and the loop that drives it."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        db = app[MONGO_DB]
        owner = f"{SERVICE}:{socket.gethostname()}:{os.getpid()}"
        timeout = settings.provider_timeout_seconds
        http = guarded_session(settings.egress_allowlist, timeout=aiohttp.ClientTimeout(total=timeout, connect=5))
        relay = OutboxRelay(
            OutboxStore(db),
            app[BROKER],
            sweep_every=settings.outbox_sweep_seconds,
            stale_after=settings.outbox_stale_seconds,
            owner=owner,
        )
        state = RefreshStateStore(app[MONGO_CLIENT], db, app[CIPHER], clock=clock)
        service = RefreshService(
            state=state,
            integrations=CachedIntegrations(db, app[CIPHER], clock=clock),
            catalog=load_catalog(settings.providers_file),
            http=http,
            publish_soon=relay.publish_soon,
            owner=owner,
            source=f"/keyway/{SERVICE}",
            lease=timedelta(seconds=settings.refresh_lease_seconds),
            timeout_seconds=settings.provider_timeout_seconds,
            clock=clock,
        )
        loop = RefreshLoop(
            state=state,
            refresh=service.refresh_due,
            concurrency=settings.refresh_concurrency,
            batch=settings.refresh_batch,
            max_sleep=settings.refresh_max_sleep_seconds,
            clock=clock,
        )
        app[REFRESHER] = Refresher(service=service, state=state, loop=loop, relay=relay, clock=clock)
        relay.start()
        if settings.refresh_loop:
            loop.start()
        try:
            yield
        finally:
            await loop.stop(grace=settings.shutdown_grace_seconds)
            await relay.stop(grace=settings.shutdown_grace_seconds)
            await http.close()

    return ctx


def subscriptions(settings: RefresherSettings) -> Callable[[web.Application], list[Subscription]]:
    def build(app: web.Application) -> list[Subscription]:
        refresher = app[REFRESHER]
        scheduler = RefreshScheduler(
            app[MONGO_DB],
            margin_for=refresher.service.margin_for,
            keep_alive_for=refresher.service.keep_alive_for,
            decode=lambda doc: refresher.state.decode(doc)[0],
            wake=refresher.loop.wake,
            clock=refresher.clock,
        )
        # Unguarded: scheduling re-reads the connection, so handling an event twice is harmless.
        return [
            Subscription(
                spec=schedule_spec(settings), handler=scheduler.handle, retry_on=(PyMongoError,), guarded=False
            )
        ]

    return build


def create_app(settings: RefresherSettings, *, clock: Clock = SYSTEM_CLOCK) -> web.Application:
    """``clock``: the time the refresher goes by (due times, claims, leases, sleeps); tests step one."""
    app = web.Application()
    app[CIPHER] = build_cipher(settings)
    app.cleanup_ctx.extend(
        [
            mongo_context(settings, app_name=SERVICE, collections=["connections", "outbox"]),
            broker_context(settings, name=SERVICE),
            refresher_context(settings, clock),
            consumers_context(settings, subscriptions(settings)),
        ]
    )
    add_readiness_routes(app, service=SERVICE)
    return app
