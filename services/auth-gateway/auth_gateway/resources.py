"""The gateway's resources, each opened and closed in one cleanup context and kept under an AppKey."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from keyway_shared.deadline import restart_after_third_parties
from keyway_shared.egress import guarded_session
from keyway_shared.outbox_relay import OutboxRelay
from keyway_shared.providers import ProviderCatalog, load_catalog
from keyway_shared.refresh.service import RefreshService
from keyway_shared.service import CIPHER, MONGO_CLIENT, MONGO_DB
from keyway_shared.store import (
    DEFAULT_ENVIRONMENTS,
    ConnectionStore,
    EnvironmentStore,
    IntegrationStore,
    OutboxStore,
    RefreshStateStore,
)

from .operations.connect_sessions import ConnectSessionStore
from .operations.flow_sessions import OAuthSessionStore
from .settings import GatewaySettings

__all__ = [
    "CATALOG",
    "HTTP",
    "REFRESH",
    "RELAY",
    "SETTINGS",
    "STORES",
    "Stores",
    "http_client_context",
    "refresh_context",
    "stores_context",
]


@dataclass(frozen=True, kw_only=True)
class Stores:
    environments: EnvironmentStore
    integrations: IntegrationStore
    connections: ConnectionStore
    outbox: OutboxStore
    oauth_sessions: OAuthSessionStore
    connect_sessions: ConnectSessionStore


SETTINGS = web.AppKey("settings", GatewaySettings)
STORES = web.AppKey("stores", Stores)
CATALOG = web.AppKey("catalog", ProviderCatalog)


def stores_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        cipher = app[CIPHER]
        db = app[MONGO_DB]
        stores = Stores(
            environments=EnvironmentStore(db, cipher),
            integrations=IntegrationStore(db, cipher),
            connections=ConnectionStore(app[MONGO_CLIENT], db, cipher),
            outbox=OutboxStore(db),
            oauth_sessions=OAuthSessionStore(db, cipher),
            connect_sessions=ConnectSessionStore(db, cipher),
        )
        await stores.oauth_sessions.ensure_indexes()
        await stores.connect_sessions.ensure_indexes()
        await stores.environments.bind_legacy_secrets()
        for name in DEFAULT_ENVIRONMENTS:
            public_key, secret_key = settings.pinned_keys(name)
            await stores.environments.ensure(
                name, public_key=public_key, secret_key=secret_key, public_key_connect=settings.public_key_connect
            )
        app[STORES] = stores
        app[CATALOG] = load_catalog(settings.providers_file)
        yield

    return ctx


HTTP = web.AppKey("http_client", aiohttp.ClientSession)


def http_client_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """One egress-guarded client session for every call to a provider."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=settings.provider_timeout_seconds, connect=5)
        # A provider's answer restarts the request's database deadline (keyway_shared.deadline).
        session = guarded_session(
            settings.egress_allowlist, timeout=timeout, trace_configs=[restart_after_third_parties()]
        )
        app[HTTP] = session
        yield
        await session.close()

    return ctx


# Opened by ``operations.outbox_relay.relay_context``; the key lives here so refresh-on-read can reach it.
RELAY = web.AppKey("outbox_relay", OutboxRelay)
REFRESH = web.AppKey("refresh_service", RefreshService)


def refresh_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Refresh-on-read, sharing the token-refresher's single-flight lease (the outbox relay publishes,
    so its context opens before this one)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[REFRESH] = RefreshService(
            state=RefreshStateStore(app[MONGO_CLIENT], app[MONGO_DB], app[CIPHER]),
            integrations=app[STORES].integrations,
            catalog=app[CATALOG],
            http=app[HTTP],
            publish_soon=app[RELAY].publish_soon,
            owner=f"auth-gateway:{socket.gethostname()}:{os.getpid()}",
            source="/keyway/auth-gateway",
            timeout_seconds=settings.provider_timeout_seconds,
        )
        yield

    return ctx
