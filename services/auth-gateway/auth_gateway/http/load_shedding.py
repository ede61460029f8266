"""A cap on the backend API's requests working on MongoDB at once, per replica: past it, 503 at once.

When the database slows down, requests that queue behind it only make it slower, and each one
waits its whole deadline before failing. With ``KEYWAY_DATABASE_CONCURRENCY`` slots, a request
that finds them all taken waits a moment (``QUEUE_WAIT``: a burst just past the cap is served,
slots free up in milliseconds when the database keeps up) and then answers ``503``
``service_unavailable`` with ``Retry-After``, having done nothing.

Which requests take a slot: the secret key's routes (the backend API), for their whole run, but
the proxy, whose time is the upstream's. ``GET /connection/{id}`` (the hot path) takes one only
when it goes to the database: a read the connection cache answers needs none, and keeps being
served while the database is saturated or away; ``database_work`` marks the part that does. The
browser's connect routes (mostly waiting on providers, and capped per client address by the rate
limit) and the health routes take none. The default (64) stays under PyMongo's pool of 100
connections, so background work (the outbox sweep, ``last_fetched_at``) is never starved of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import re
from collections.abc import AsyncIterator, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter

from .errors import ApiError, Handler, service_unavailable
from .route_line import RouteLine

__all__ = ["QUEUE_WAIT", "DatabaseSlots", "database_work", "load_shedding_middleware"]

QUEUE_WAIT = 0.05  # seconds a request waits for a slot before it is refused
LAZY_ROUTES = frozenset({("GET", "/connection/{connectionId}")})  # a slot only for a cache miss
_PROXY_PREFIX = "/proxy/"

SHED = Counter("keyway_gateway_shed_total", "Requests refused (503) because every database slot was taken")


class DatabaseSlots:
    """``capacity`` slots (0: unlimited); ``take`` waits up to ``wait`` seconds for one."""

    def __init__(self, capacity: int, *, retry_after: int, wait: float = QUEUE_WAIT) -> None:
        self.capacity = capacity
        self._retry_after = retry_after
        self._wait = wait
        self._free = asyncio.Semaphore(capacity) if capacity > 0 else None
        self.in_use = 0

    async def take(self) -> None:
        """A slot, or the 503 that says none came free in time."""
        free = self._free
        if free is None:
            return
        if not free.locked():
            await free.acquire()  # returns at once: no suspension, no timer
        else:
            try:
                async with asyncio.timeout(self._wait):
                    await free.acquire()
            except TimeoutError:
                SHED.inc()
                raise self.refusal() from None
        self.in_use += 1

    def give_back(self) -> None:
        if self._free is not None:
            self.in_use -= 1
            self._free.release()

    def refusal(self) -> ApiError:
        return service_unavailable(self._retry_after, nothing_done=True)


# The slots a GET /connection/{id} takes from when it goes to the database (None: nothing to take).
_ON_DATABASE_WORK: contextvars.ContextVar[DatabaseSlots | None] = contextvars.ContextVar(
    "keyway_database_slots", default=None
)


@contextlib.asynccontextmanager
async def database_work() -> AsyncIterator[None]:
    """The part of a lazily counted request that works on the database takes a slot for its time."""
    slots = _ON_DATABASE_WORK.get()
    if slots is None:
        yield
        return
    await slots.take()
    token = _ON_DATABASE_WORK.set(None)  # nested database work: the same slot
    try:
        yield
    finally:
        _ON_DATABASE_WORK.reset(token)
        slots.give_back()


def _router_path(path: str) -> str:
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)  # "/proxy/{path:.*}" is the router's "/proxy/{path}"


def counted_routes(routes: Iterable[RouteLine]) -> frozenset[tuple[str, str]]:
    """(method, router path) of the routes that take a slot for their whole run."""
    return (
        frozenset(
            (r.method, _router_path(r.path))
            for r in routes
            if r.auth == "secret_key" and not r.path.startswith(_PROXY_PREFIX)
        )
        - LAZY_ROUTES
    )


def load_shedding_middleware(routes: Iterable[RouteLine], slots: DatabaseSlots) -> Middleware:
    counted = counted_routes(routes)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = (request.method, resource.canonical if resource is not None else "")
        if route in counted:
            await slots.take()
            try:
                return await handler(request)
            finally:
                slots.give_back()
        if route in LAZY_ROUTES:
            token = _ON_DATABASE_WORK.set(slots)
            try:
                return await handler(request)
            finally:
                _ON_DATABASE_WORK.reset(token)
        return await handler(request)

    return middleware
