"""What every attempt reads, cached for a few seconds: the environment (with its secret key and its
Nango webhook signing key) with its Standard Webhooks signing keys, and the state of each endpoint.
Without it each webhook would cost three database reads before its POST.

A change made through the API reaches every replica at once: the gateway announces it on the
environment-changed broadcast after changing an environment's settings, keys or endpoints, and this
process's one listener (``keyway_shared.bus.environment_changes``) has both caches drop what they
hold for that environment. The short expiry bounds staleness should a broadcast be lost. Concurrent
misses for one key share a single read (``keyway_shared.ttl_cache``).
"""

from __future__ import annotations

from dataclasses import dataclass

from keyway_shared.clock import SYSTEM_CLOCK, Clock
from keyway_shared.store import Environment, EnvironmentStore, WebhookKeyStore
from keyway_shared.store.webhook_endpoints import EndpointState, EndpointStore
from keyway_shared.ttl_cache import TtlCache

__all__ = ["EndpointCache", "Snapshot", "SnapshotCache"]

_MAX_ENTRIES = 10_000


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    environment: Environment
    signing_keys: tuple[str, ...]


class SnapshotCache:
    """Environments with their signing keys, by name (a name without an environment is cached as None)."""

    def __init__(
        self, environments: EnvironmentStore, keys: WebhookKeyStore, *, ttl: float, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._environments = environments
        self._keys = keys
        self._cache: TtlCache[str, Snapshot | None] = TtlCache(ttl=ttl, max_entries=_MAX_ENTRIES, clock=clock)

    async def _read(self, name: str) -> Snapshot | None:
        env = await self._environments.get(name)
        if env is None:
            return None
        return Snapshot(environment=env, signing_keys=tuple(await self._keys.signing_keys(name)))

    async def get(self, name: str) -> Snapshot | None:
        return await self._cache.get(name, lambda: self._read(name))

    def drop(self, name: str) -> None:
        self._cache.drop(name)


class EndpointCache:
    def __init__(self, store: EndpointStore, *, ttl: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.store = store
        self._cache: TtlCache[tuple[str, str], EndpointState] = TtlCache(ttl=ttl, max_entries=_MAX_ENTRIES, clock=clock)

    async def get(self, environment: str, url: str) -> EndpointState:
        return await self._cache.get((environment, url), lambda: self.store.get(environment, url))

    def put(self, state: EndpointState) -> None:
        self._cache.put((state.environment, state.url), state)

    def drop(self, environment: str) -> None:
        self._cache.drop_where(lambda key, _state: key[0] == environment)
