"""Integrations read through a short-lived cache: thousands of refreshes share a handful of integrations.

Without it every refresh reads and decrypts its integration again, one more round trip on a
database that is the refresher's bottleneck; refreshes that miss together share one read. Five
seconds is short enough that a changed client secret reaches the refresher before a provider stops
honouring the old one.
"""

from __future__ import annotations

from keyway_shared.cipher import CredentialCipher
from keyway_shared.clock import SYSTEM_CLOCK, Clock
from keyway_shared.store import Database, Integration, IntegrationStore
from keyway_shared.ttl_cache import TtlCache

__all__ = ["CachedIntegrations"]

_MAX_ENTRIES = 10_000  # one entry per integration, and there are few


class CachedIntegrations(IntegrationStore):
    def __init__(
        self, db: Database, cipher: CredentialCipher, *, ttl_seconds: float = 5.0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(db, cipher)
        self._cache: TtlCache[tuple[str, str], Integration | None] = TtlCache(
            ttl=ttl_seconds, max_entries=_MAX_ENTRIES, clock=clock
        )

    async def get(self, environment: str, unique_key: str) -> Integration | None:
        async def read() -> Integration | None:
            return await IntegrationStore.get(self, environment, unique_key)

        return await self._cache.get((environment, unique_key), read)
