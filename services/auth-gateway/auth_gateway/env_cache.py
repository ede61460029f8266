"""Environments by key, cached: every authenticated request needs one, and they rarely change.

A hit saves a database round trip on the hottest path (``GET /connection``). A change made through
any replica (settings, key rotation) drops the entry everywhere at once: the replica that made it
announces it on the environment-changed broadcast (``keyway_shared.bus.environment_changes``), which
this process hears through its one listener. Entries also expire after a few seconds, which bounds
staleness should a broadcast be lost; a key in steady use is reloaded in the background before
that, and concurrent reads of a missing key share one load (``keyway_shared.ttl_cache``).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from keyway_shared.bus import environment_changes_exchange
from keyway_shared.bus.environment_changes import EnvironmentChanges
from keyway_shared.clock import SYSTEM_CLOCK, Clock
from keyway_shared.service import BROKER
from keyway_shared.store import Environment, EnvironmentStore
from keyway_shared.ttl_cache import TtlCache

from .resources import STORES
from .settings import GatewaySettings

__all__ = ["ENV_CACHE", "EnvironmentCache", "env_cache_context"]

# A read in the last quarter of an entry's life reloads it in the background, so a key in steady
# use never expires under its readers.
_RELOAD_AFTER = 0.75
_MAX_ENTRIES = 1000


def _found(env: Environment | None) -> bool:
    return env is not None  # an unknown key is asked again: it may have just been created


def _slot(kind: str, key: str) -> str:
    # Cache slots are hashes: the process's memory never holds a secret key as a dict key.
    return kind + ":" + hashlib.sha256(key.strip().lower().encode()).hexdigest()


class EnvironmentCache:
    def __init__(
        self,
        store: EnvironmentStore,
        *,
        ttl_seconds: float,
        changes: EnvironmentChanges | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``changes``: the process's listener on the environment-changed broadcast (None: this
        replica alone, as in unit tests)."""
        self._store = store
        self._entries: TtlCache[str, Environment | None] = TtlCache(
            ttl=ttl_seconds, max_entries=_MAX_ENTRIES, refresh_ahead=_RELOAD_AFTER, keep=_found, clock=clock
        )
        self._changes = changes
        if changes is not None:
            changes.subscribe(self.drop)

    async def by_secret_key(self, key: str) -> Environment | None:
        return await self._entries.get(_slot("secret", key), lambda: self._store.by_secret_key(key))

    async def by_public_key(self, key: str) -> Environment | None:
        return await self._entries.get(_slot("public", key), lambda: self._store.by_public_key(key))

    def drop(self, name: str) -> None:
        self._entries.drop_where(lambda _slot, env: env is not None and env.name == name)

    async def changed(self, name: str) -> None:
        """Call after changing an environment: this replica forgets it now, the others on the broadcast."""
        if self._changes is None:
            self.drop(name)
        else:
            await self._changes.announce(name)


ENV_CACHE = web.AppKey("environment_cache", EnvironmentCache)


def env_cache_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        changes = EnvironmentChanges(environment_changes_exchange(settings.bus_namespace))
        app[ENV_CACHE] = EnvironmentCache(
            app[STORES].environments, ttl_seconds=settings.environment_cache_seconds, changes=changes
        )
        app[BROKER].on_connect(changes.attach)
        yield

    return ctx
