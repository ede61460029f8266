"""Resources every service opens and closes in aiohttp cleanup contexts, kept under typed AppKeys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web
from pymongo import AsyncMongoClient

from ..cipher import CredentialCipher
from ..settings import BaseServiceSettings
from ..store import Database, ensure_indexes, open_client
from .broker import BrokerLink

__all__ = [
    "BROKER",
    "CIPHER",
    "MONGO_CLIENT",
    "MONGO_DB",
    "broker_context",
    "build_cipher",
    "mongo_context",
]

MONGO_CLIENT: web.AppKey[AsyncMongoClient[dict[str, Any]]] = web.AppKey("mongo_client")
MONGO_DB: web.AppKey[Database] = web.AppKey("mongo_db")
BROKER = web.AppKey("broker", BrokerLink)
CIPHER = web.AppKey("cipher", CredentialCipher)


def build_cipher(settings: BaseServiceSettings) -> CredentialCipher:
    key = settings.encryption_key.get_secret_value()
    if not key:
        raise SystemExit("KEYWAY_ENCRYPTION_KEY is not set: give it base64 of 32 random bytes (make up does this)")
    return CredentialCipher(current_key=key, old_keys=[k.get_secret_value() for k in settings.encryption_keys_old])


def mongo_context(
    settings: BaseServiceSettings, *, app_name: str, collections: list[str] | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        client: AsyncMongoClient[dict[str, Any]] = open_client(settings.mongodb_url, app_name=app_name)
        db: Database = client[settings.mongodb_database]
        await ensure_indexes(db, collections)
        app[MONGO_CLIENT] = client
        app[MONGO_DB] = db
        yield
        await client.close()

    return ctx


def broker_context(
    settings: BaseServiceSettings, *, name: str, exchange: str = "keyway.events"
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        link = BrokerLink(
            settings.amqp_url,
            name=name,
            exchange=settings.events_exchange,
            outage_bound=settings.broker_outage_bound_seconds,
        )
        app[BROKER] = link
        link.start()
        yield
        await link.close()

    return ctx
