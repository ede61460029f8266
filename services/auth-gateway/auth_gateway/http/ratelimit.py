"""Rate limiting with Nango's headers (spec §1.3): ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``
(epoch seconds) on every authenticated answer, 429 + ``Retry-After`` past it.

Three budgets, so that no caller can spend another's:

- ``secret``: secret-key calls, per environment (the app's backend);
- ``public``: public-key and connect-session calls, per environment (browsers), apart from the
  backend's, so a flood of ``/oauth/connect`` never answers the backend 429;
- ``client``: every request to a browser route (connect flows, callbacks, connect sessions and
  links, the WebSocket), per client address (``http/client_address``), checked by a middleware before
  the route does any database work, so one address cannot use up its environment's public budget.

Counting is a fixed one-minute window in each replica's memory: no database write on the hot path.
With N replicas behind a load balancer a budget is up to N times its limit; set the limits per
replica accordingly (the README says so).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware

from .client_address import CURRENT_CLIENT, Networks, client_address, client_key
from .errors import ApiError, Handler
from .listeners import route_sides
from .metrics import RATE_LIMITED
from .route_line import RouteLine

__all__ = [
    "RATE_DECISION",
    "RATE_LIMITS",
    "CallerKind",
    "RateDecision",
    "RateLimiter",
    "RateLimits",
    "check_rate",
    "client_rate_middleware",
    "rate_headers_middleware",
]

CallerKind = Literal["secret", "public"]
Clock = Callable[[], float]

# Keys seen in one window, past which the oldest are forgotten: a client that spreads a flood over
# more addresses than this gets a fresh count for some of them, but never grows the replica's memory.
MAX_KEYS = 100_000


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
    def __init__(
        self, *, limit: int, window_seconds: float = 60.0, clock: Clock = time.time, max_keys: int = MAX_KEYS
    ) -> None:
        self._limit = limit
        self._window = window_seconds
        self._max_keys = max_keys
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window index, count)
        self.clock = clock  # epoch seconds; tests replace it

    @property
    def enabled(self) -> bool:
        return self._limit > 0

    def hit(self, key: str, *, now: float | None = None) -> RateDecision:
        now = self.clock() if now is None else now
        window = int(now // self._window)
        index, count = self._counts.get(key, (window, 0))
        if index != window:
            count = 0
        if key not in self._counts and len(self._counts) >= self._max_keys:
            self._forget(window)
        count += 1
        self._counts[key] = (window, count)
        reset_at = math.ceil((window + 1) * self._window)
        return RateDecision(
            limit=self._limit, remaining=max(self._limit - count, 0), reset_at=reset_at, allowed=count <= self._limit
        )

    def _forget(self, window: int) -> None:
        """Keys from finished windows first; still full, the oldest tenth of this window's."""
        self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        if len(self._counts) >= self._max_keys:
            keep = list(self._counts.items())[self._max_keys // 10 :]
            self._counts = dict(keep)


@dataclass(frozen=True, kw_only=True)
class RateLimits:
    secret: RateLimiter
    public: RateLimiter
    client: RateLimiter

    @classmethod
    def per_minute(cls, *, secret: int, public: int, client: int) -> RateLimits:
        """The three budgets from their per-minute limits (0 disables one): the gateway's settings."""
        return cls(
            secret=RateLimiter(limit=secret),
            public=RateLimiter(limit=public),
            client=RateLimiter(limit=client),
        )


RATE_LIMITS = web.AppKey("rate_limits", RateLimits)
RATE_DECISION = web.RequestKey("rate_decision", RateDecision)


def _apply(request: web.Request, limiter: RateLimiter, key: str, *, bucket: str, what: str) -> None:
    decision = limiter.hit(key)
    previous = request.get(RATE_DECISION)
    # One set of headers per answer: the budget closest to running out is the one the caller must heed.
    if previous is None or decision.remaining <= previous.remaining:
        request[RATE_DECISION] = decision
    if not decision.allowed:
        RATE_LIMITED.labels(bucket).inc()
        retry_after = max(decision.reset_at - int(limiter.clock()), 1)
        raise ApiError(
            "too_many_request",
            f"Too many requests {what}; retry after the reset time.",
            status=429,
            headers={**decision.headers(), "Retry-After": str(retry_after)},
        )


def check_rate(request: web.Request, environment: str, kind: CallerKind) -> None:
    """Count an authenticated call against its environment's budget for its kind of caller."""
    limits = request.app.get(RATE_LIMITS)
    limiter = None if limits is None else limits.secret if kind == "secret" else limits.public
    if limiter is None or not limiter.enabled:
        return
    what = "for this environment" if kind == "secret" else "from browsers for this environment"
    _apply(request, limiter, f"{kind}:{environment}", bucket=kind, what=what)


def client_rate_middleware(routes: Iterable[RouteLine], *, trusted_proxies: Networks) -> Middleware:
    """The per-client budget of the browser routes (the public side of the route table, but ``/health``).

    ``trusted_proxies`` (``KEYWAY_TRUSTED_PROXIES``) say whose ``X-Forwarded-For`` names the client.
    """
    public, _ = route_sides(routes)
    browser_routes = public - {("GET", "/health")}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        method = "GET" if request.method == "HEAD" else request.method
        if resource is None or (method, resource.canonical) not in browser_routes:
            return await handler(request)
        address = client_key(client_address(request, trusted_proxies))
        limits = request.app.get(RATE_LIMITS)
        if limits is not None and limits.client.enabled:
            _apply(request, limits.client, address, bucket="client", what="from this address")
        token = CURRENT_CLIENT.set(address)
        try:
            return await handler(request)
        finally:
            CURRENT_CLIENT.reset(token)

    return middleware


@web.middleware
async def rate_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    decision = request.get(RATE_DECISION)
    if isinstance(decision, RateDecision) and not response.prepared:
        response.headers.update(decision.headers())
    return response
