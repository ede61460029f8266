"""Request metrics for ``/metrics``: counts and latency per route template (not per raw path), and what
the gateway's limits refused or held back."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter, Histogram

__all__ = ["AUTH_FAILED_SUPPRESSED", "RATE_LIMITED", "metrics_middleware"]

REQUESTS = Counter("keyway_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "keyway_http_request_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
RATE_LIMITED = Counter(
    "keyway_rate_limited_requests_total",
    "Requests answered 429 by a rate limit",
    ["bucket"],  # secret (per environment), public (per environment), client (per address)
)
AUTH_FAILED_SUPPRESSED = Counter(
    "keyway_auth_failed_suppressed_total",
    "Failed connect attempts answered but not announced (no auth.failed event): over the announcement budget",
    ["scope"],  # client (per environment and address) or environment
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        method = request.method if request.method in _METHODS else "OTHER"  # clients choose the method
        _counter(method, route, status).inc()
        _latency(route).observe(time.perf_counter() - started)


# ``labels()`` builds and locks on every call; the set of routes, methods and statuses is small and
# fixed, so each child is looked up once and kept.
@functools.cache
def _counter(method: str, route: str, status: int) -> Counter:
    return REQUESTS.labels(method, route, str(status))


@functools.cache
def _latency(route: str) -> Histogram:
    return LATENCY.labels(route)
