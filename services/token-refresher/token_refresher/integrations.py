"""Integrations read through a short-lived cache: thousands of refreshes share a handful of integrations.

Without it every refresh reads and decrypts its integration again, one more round trip on a
database that is the refresher's bottleneck. Five seconds is short enough that a changed client
secret reaches the refresher before a provider stops honouring the old one.
"""

from __future__ import annotations

import time

from keyway_shared.cipher import CredentialCipher
from keyway_shared.store import Database, Integration, IntegrationStore

__all__ = ["CachedIntegrations"]


class CachedIntegrations(IntegrationStore):
    def __init__(self, db: Database, cipher: CredentialCipher, *, ttl_seconds: float = 5.0) -> None:
        super().__init__(db, cipher)
        self._ttl = ttl_seconds
        self._cache: dict[tuple[str, str], tuple[float, Integration | None]] = {}

    async def get(self, environment: str, unique_key: str) -> Integration | None:
        key = (environment, unique_key)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await super().get(environment, unique_key)
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded: one entry per integration, and there are few
        self._cache[key] = (now + self._ttl, found)
        return found
