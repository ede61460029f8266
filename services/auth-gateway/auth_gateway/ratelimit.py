"""Per-environment rate limiting with Nango's headers (spec §1.3): ``X-RateLimit-Limit``,
``-Remaining``, ``-Reset`` (epoch seconds) on every authenticated answer, 429 + ``Retry-After`` past it.

Counting is a fixed one-minute window in each replica's memory: no database write on the hot path.
With N replicas behind a load balancer an environment gets up to N times the limit; set the limit
per replica accordingly (the README says so).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .errors import ApiError

__all__ = ["RATE_DECISION", "RATE_LIMITER", "RateDecision", "RateLimiter", "check_rate", "rate_headers_middleware"]


@dataclass(frozen=True, kw_only=True)
class RateDecision:
    limit: int
    remaining: int
    reset_at: int  # epoch seconds
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter:
    def __init__(self, *, limit: int, window_seconds: float = 60.0) -> None:
        self._limit = limit
        self._window = window_seconds
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window index, count)

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    def hit(self, key: str, *, now: float | None = None) -> RateDecision:
        now = time.time() if now is None else now
        window = int(now // self._window)
        index, count = self._counts.get(key, (window, 0))
        if index != window:
            count = 0
            if len(self._counts) > 10_000:  # forget keys from finished windows
                self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        count += 1
        self._counts[key] = (window, count)
        reset_at = math.ceil((window + 1) * self._window)
        return RateDecision(
            limit=self._limit, remaining=max(self._limit - count, 0), reset_at=reset_at, allowed=count <= self._limit
        )


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
RATE_DECISION = web.RequestKey("rate_decision", RateDecision)


def check_rate(request: web.Request, environment: str) -> None:
    limiter = request.app.get(RATE_LIMITER)
    if limiter is None or not limiter.enabled:
        return
    decision = limiter.hit(f"env:{environment}")
    request[RATE_DECISION] = decision
    if not decision.allowed:
        retry_after = max(decision.reset_at - int(time.time()), 1)
        raise ApiError(
            "too_many_request",
            "Too many requests for this environment; retry after the reset time.",
            status=429,
            headers={**decision.headers(), "Retry-After": str(retry_after)},
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def rate_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    decision = request.get(RATE_DECISION)
    if isinstance(decision, RateDecision) and not response.prepared:
        response.headers.update(decision.headers())
    return response
