"""How many failed connect attempts may be announced: a bound on what a flood of them can cause.

Every failed attempt from a browser would otherwise write an ``auth.failed`` event, and with it an
auth webhook to the app and an activity entry: anyone holding the public key could make the
gateway send the app's webhook endpoint as many requests as they send us. Announcements are
therefore drawn from token buckets, one per environment and client address and one per
environment. Past them the attempt still gets its 4xx answer; only the event is held back,
counted in ``keyway_auth_failed_suppressed_total``, with one log line when a bucket first runs dry.

The buckets live in each replica's memory, like the rate limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from keyway_shared.logging import get_logger

from ..http.client_address import CURRENT_CLIENT
from ..http.metrics import AUTH_FAILED_SUPPRESSED
from ..settings import GatewaySettings

__all__ = ["FAILURE_ANNOUNCEMENTS", "FailureAnnouncements", "TokenBuckets"]

log = get_logger(__name__)
Clock = Callable[[], float]
MAX_KEYS = 100_000  # buckets kept; past it, full ones (and then the oldest) are forgotten


@dataclass
class _Bucket:
    tokens: float
    updated: float
    dry: bool = False  # ran out, and has not been refilled enough to announce since


class TokenBuckets:
    """``per_minute`` announcements per key: a burst of that many, then refilled at that rate."""

    def __init__(self, *, per_minute: int, max_keys: int = MAX_KEYS) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self._capacity > 0

    def take(self, key: str, *, now: float) -> tuple[bool, bool]:
        """(allowed, first refusal since the bucket last allowed one); ``now`` in seconds."""
        if not self.enabled:
            return True, False
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget(now)
            bucket = self._buckets[key] = _Bucket(tokens=self._capacity, updated=now)
        bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            bucket.dry = False
            return True, False
        first = not bucket.dry
        bucket.dry = True
        return False, first

    def _forget(self, now: float) -> None:
        def full(bucket: _Bucket) -> bool:
            return bucket.tokens + (now - bucket.updated) * self._rate >= self._capacity

        self._buckets = {k: b for k, b in self._buckets.items() if not full(b)}
        if len(self._buckets) >= self._max_keys:
            self._buckets = dict(list(self._buckets.items())[self._max_keys // 10 :])


@dataclass
class FailureAnnouncements:
    per_client: TokenBuckets
    per_environment: TokenBuckets
    clock: Clock = field(default=time.monotonic)  # seconds from any origin; tests drive it by hand

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> FailureAnnouncements:
        return cls(
            per_client=TokenBuckets(per_minute=settings.auth_failed_events_per_client_per_minute),
            per_environment=TokenBuckets(per_minute=settings.auth_failed_events_per_minute),
        )

    def admit(self, environment: str) -> bool:
        """Whether a failed attempt in ``environment`` may be announced, for the browser being served."""
        now = self.clock()
        client = CURRENT_CLIENT.get() or "unknown"
        allowed, first = self.per_client.take(f"{environment} {client}", now=now)
        if not allowed:
            self._suppressed("client", first, environment=environment, client=client)
            return False
        allowed, first = self.per_environment.take(environment, now=now)
        if not allowed:
            self._suppressed("environment", first, environment=environment, client=client)
            return False
        return True

    def _suppressed(self, scope: str, first: bool, *, environment: str, client: str) -> None:
        AUTH_FAILED_SUPPRESSED.labels(scope).inc()
        if first:
            log.warning(
                "failed connect attempts are no longer announced (auth.failed) until the budget refills; "
                "keyway_auth_failed_suppressed_total counts them",
                environment=environment,
                client=client if scope == "client" else None,
                scope=scope,
            )


FAILURE_ANNOUNCEMENTS = web.AppKey("failure_announcements", FailureAnnouncements)
