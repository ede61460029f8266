"""Environments by key, cached: every authenticated request needs one, and they rarely change.

A hit saves a database round trip on the hottest path (``GET /connection``). A change made through
any replica (settings, key rotation) drops the entry everywhere at once: the replica that made it
broadcasts the environment's name on a fanout exchange every replica listens to. Entries also
expire after a few seconds, which bounds staleness should a broadcast be lost; a key in steady use
is reloaded in the background before that, and concurrent reads of a missing key share one load.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aiohttp import web

from keyway_shared.bus import environment_changes_exchange
from keyway_shared.bus.fanout import listen_to_fanout
from keyway_shared.deadline import remaining
from keyway_shared.logging import get_logger
from keyway_shared.service import BROKER
from keyway_shared.store import Environment, EnvironmentStore

from .resources import STORES
from .settings import GatewaySettings

__all__ = ["ENV_CACHE", "EnvironmentCache", "env_cache_context"]

log = get_logger(__name__)
# A read in the last quarter of an entry's life reloads it in the background, so a key in steady
# use never expires under its readers.
_RELOAD_WITHIN = 0.25
_BROADCAST_PATIENCE = 2.0  # seconds a change's broadcast may wait for the broker


def _retrieve_exception(task: asyncio.Task[Environment | None]) -> None:
    # A background reload's failure is not an error: the entry expires as usual and a read loads it.
    if not task.cancelled():
        task.exception()


class EnvironmentCache:
    def __init__(self, store: EnvironmentStore, *, ttl_seconds: float, exchange_name: str) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Environment]] = {}
        self._loading: dict[str, asyncio.Task[Environment | None]] = {}
        self._generation = 0  # bumped by every drop: a load that straddles one does not store
        self._exchange_name = exchange_name
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    @staticmethod
    def _slot(kind: str, key: str) -> str:
        # Cache slots are hashes: the process's memory never holds a secret key as a dict key.
        return kind + ":" + hashlib.sha256(key.strip().lower().encode()).hexdigest()

    async def _get(self, kind: str, key: str) -> Environment | None:
        slot = self._slot(kind, key)
        hit = self._entries.get(slot)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            if hit[0] - now < self._ttl * _RELOAD_WITHIN and slot not in self._loading:
                self._load(kind, key, slot)  # in the background: this read keeps the entry it found
            return hit[1]
        loading = self._loading.get(slot) or self._load(kind, key, slot)
        # Shared by every read of the key meanwhile: an expiry under load costs one database read,
        # not one per request waiting. Shielded so one cancelled read does not cancel the others'.
        return await asyncio.shield(loading)

    def _load(self, kind: str, key: str, slot: str) -> asyncio.Task[Environment | None]:
        generation = self._generation

        async def load() -> Environment | None:
            try:
                env = await (self._store.by_secret_key(key) if kind == "secret" else self._store.by_public_key(key))
                if env is not None and self._generation == generation:  # no change was announced meanwhile
                    if len(self._entries) > 1000:
                        self._entries.clear()
                    self._entries[slot] = (time.monotonic() + self._ttl, env)
                return env
            finally:
                self._loading.pop(slot, None)

        task = asyncio.create_task(load())
        self._loading[slot] = task
        task.add_done_callback(_retrieve_exception)
        return task

    async def by_secret_key(self, key: str) -> Environment | None:
        return await self._get("secret", key)

    async def by_public_key(self, key: str) -> Environment | None:
        return await self._get("public", key)

    def drop(self, name: str) -> None:
        self._generation += 1
        self._entries = {slot: entry for slot, entry in self._entries.items() if entry[1].name != name}

    async def changed(self, name: str) -> None:
        """Call after changing an environment: this replica forgets it now, the others on the broadcast."""
        self.drop(name)
        if self._exchange is None:
            return
        # Within the request's deadline: a blackholed broker would hold the confirmation for minutes,
        # and the entries expire by themselves in seconds anyway.
        with contextlib.suppress(aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError):
            body = json.dumps({"environment": name}).encode()
            async with asyncio.timeout(remaining(_BROADCAST_PATIENCE)):
                await self._exchange.publish(aio_pika.Message(body, expiration=60), routing_key="")

    async def attach(self, connection: AbstractRobustConnection) -> None:
        """Listen for other replicas' changes; a failed try closes its channel (the broker link tries again)."""
        self._exchange = await listen_to_fanout(connection, self._exchange_name, self._on_broadcast)

    async def _on_broadcast(self, message: AbstractIncomingMessage) -> None:
        try:
            self.drop(json.loads(message.body)["environment"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed cache invalidation")


ENV_CACHE = web.AppKey("environment_cache", EnvironmentCache)


def env_cache_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        cache = EnvironmentCache(
            app[STORES].environments,
            ttl_seconds=settings.environment_cache_seconds,
            exchange_name=environment_changes_exchange(settings.bus_namespace),
        )
        app[ENV_CACHE] = cache
        app[BROKER].on_connect(cache.attach)
        yield

    return ctx
