"""The gateway's resources, each opened and closed in one cleanup context and kept under an AppKey."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web
from keyway_shared.providers import ProviderCatalog, load_catalog
from keyway_shared.service import CIPHER, MONGO_CLIENT, MONGO_DB
from keyway_shared.store import (
    DEFAULT_ENVIRONMENTS,
    ConnectionStore,
    EnvironmentStore,
    IntegrationStore,
    OutboxStore,
)

from .settings import GatewaySettings

__all__ = ["CATALOG", "SETTINGS", "STORES", "Stores", "stores_context"]


@dataclass(frozen=True, kw_only=True)
class Stores:
    environments: EnvironmentStore
    integrations: IntegrationStore
    connections: ConnectionStore
    outbox: OutboxStore


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
        )
        for name in DEFAULT_ENVIRONMENTS:
            public_key, secret_key = settings.pinned_keys(name)
            await stores.environments.ensure(name, public_key=public_key, secret_key=secret_key)
        app[STORES] = stores
        app[CATALOG] = load_catalog(settings.providers_file)
        yield

    return ctx
