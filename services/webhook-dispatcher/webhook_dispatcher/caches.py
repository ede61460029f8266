"""What every attempt reads, cached for a few seconds: the environment with its signing keys, and the
state of each endpoint. Without it each webhook would cost three database reads before its POST.

A change made through the API reaches every replica at once: the gateway broadcasts the
environment's name on a fanout exchange after changing its settings, keys or endpoints, and this
cache drops what it holds for that environment. The short expiry bounds staleness should a
broadcast be lost. Concurrent misses for one key share a single read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from keyway_shared.bus.fanout import listen_to_fanout
from keyway_shared.logging import get_logger
from keyway_shared.store import Environment, EnvironmentStore, WebhookKeyStore
from keyway_shared.store.webhook_endpoints import EndpointState, EndpointStore

__all__ = ["EndpointCache", "EnvironmentCache", "Snapshot", "TtlCache", "listen_for_changes"]

log = get_logger(__name__)
K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, load: Callable[[K], Awaitable[V]], *, ttl: float, max_entries: int = 10_000) -> None:
        self._load = load
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        if self._ttl <= 0:
            return await self._load(key)
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await self._load(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters (if any) get it, no "never retrieved" warning
            raise
        finally:
            self._loading.pop(key, None)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self._ttl, value)
        future.set_result(value)
        return value

    def put(self, key: K, value: V) -> None:
        if self._ttl > 0:
            self._entries[key] = (time.monotonic() + self._ttl, value)

    def drop_where(self, match: Callable[[K], bool]) -> None:
        self._entries = {k: v for k, v in self._entries.items() if not match(k)}


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    environment: Environment
    signing_keys: tuple[str, ...]


class EnvironmentCache:
    def __init__(self, environments: EnvironmentStore, keys: WebhookKeyStore, *, ttl: float) -> None:
        self._environments = environments
        self._keys = keys
        self._cache: TtlCache[str, Snapshot | None] = TtlCache(self._read, ttl=ttl)

    async def _read(self, name: str) -> Snapshot | None:
        env = await self._environments.get(name)
        if env is None:
            return None
        return Snapshot(environment=env, signing_keys=tuple(await self._keys.signing_keys(name)))

    async def get(self, name: str) -> Snapshot | None:
        return await self._cache.get(name)

    def drop(self, name: str) -> None:
        self._cache.drop_where(lambda key: key == name)


class EndpointCache:
    def __init__(self, store: EndpointStore, *, ttl: float) -> None:
        self.store = store
        self._cache: TtlCache[tuple[str, str], EndpointState] = TtlCache(self._read, ttl=ttl)

    async def _read(self, key: tuple[str, str]) -> EndpointState:
        return await self.store.get(*key)

    async def get(self, environment: str, url: str) -> EndpointState:
        return await self._cache.get((environment, url))

    def put(self, state: EndpointState) -> None:
        self._cache.put((state.environment, state.url), state)

    def drop(self, environment: str) -> None:
        self._cache.drop_where(lambda key: key[0] == environment)


def listen_for_changes(
    exchange_name: str, *forget: Callable[[str], None]
) -> Callable[[AbstractRobustConnection], Awaitable[None]]:
    """An on-connect callback: bind a private queue to the broadcast and forget each named environment."""

    async def on_message(message: AbstractIncomingMessage) -> None:
        try:
            name = json.loads(message.body)["environment"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed environment change broadcast")
            return
        for drop in forget:
            drop(name)

    async def attach(connection: AbstractRobustConnection) -> None:
        await listen_to_fanout(connection, exchange_name, on_message)

    return attach
