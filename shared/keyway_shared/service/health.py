"""``/healthz`` (alive, and able to recover by itself), ``/readyz`` (broker and database reachable now)
and ``/metrics`` for every service.

The broker's readiness is read from the link as it is now, never from a flag set once: the
connection open and not closing, every on-connect callback done, and a channel opened and closed
on it within ``probe_timeout`` (a blackholed link still looks open until heartbeats give up, and
that takes minutes). An outage shorter than the link's ``outage_bound`` does not flip ``/readyz``:
a gateway serves, and writes its events to the outbox, without the broker, and every replica
dropping out of its Service at each broker blip would turn a blip into an outage
(``KEYWAY_BROKER_OUTAGE_BOUND_SECONDS``; 0 reports an outage at once). A service that has not yet
been connected and set up (its consumers started) since it started is not ready.

``/healthz`` turns 503 only when waiting cannot help: the link's task ended or its connection was
closed for good (:attr:`BrokerLink.can_recover`), so that Kubernetes restarts the process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pymongo
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pymongo.errors import PyMongoError

from ..backoff import is_cancellation
from ..logging import get_logger
from ..store import Database
from .broker import BrokerLink

__all__ = [
    "BrokerReadiness",
    "LivenessCheck",
    "ReadinessCheck",
    "add_health_routes",
    "broker_round_trip",
    "mongo_check",
]

ReadinessCheck = Callable[[], Awaitable[bool]]
LivenessCheck = Callable[[], bool]  # cheap and local: a liveness probe must not wait on the network

log = get_logger(__name__)


def mongo_check(db: Database, *, timeout: float = 2.0) -> ReadinessCheck:
    """A ping answered within ``timeout`` seconds, whatever the link: cut (refused at once), blackholed
    (the driver's own deadline, CSOT, ends the wait and closes the connection it waited on) or back
    (the ping's server selection asks the driver's monitor to check the server again at once, so
    readiness returns within a second of the database).

    Only the driver's deadline ends the wait, never a cancellation: on Python 3.11 cancelling an
    operation while it waits in server selection can leave the client's topology lock in the wrong
    hands, and the client then never selects a server again."""

    async def check() -> bool:
        try:
            with pymongo.timeout(timeout):
                await db.command("ping")
        except (PyMongoError, OSError):
            return False
        return True

    return check


async def broker_round_trip(link: BrokerLink, *, within: float) -> bool:
    """The link is connected now and a channel opens and closes on it within ``within`` seconds."""
    connection = link.connection
    if not link.is_connected or connection is None or connection.transport is None:
        return False
    underlay = connection.transport.connection  # aiormq's: a probe channel aio-pika would not restore
    try:
        async with asyncio.timeout(within):
            channel = await underlay.channel(publisher_confirms=False)
            await channel.close()
    except BaseException as exc:
        if is_cancellation(exc):
            raise
        log.info("broker readiness probe failed", error=exc.__class__.__name__)
        return False
    return True


class BrokerReadiness:
    """``/readyz``'s broker check for the link ``link()`` returns (None: not opened yet)."""

    def __init__(
        self,
        link: Callable[[], BrokerLink | None],
        *,
        probe_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._link = link
        self._timeout = probe_timeout
        self._clock = clock
        self._probe_failing_since: float | None = None  # the link looked open, yet the probe failed

    async def __call__(self) -> bool:
        link = self._link()
        if link is None or not link.ever_connected or not link.setup_done:
            return False  # starting: not ready before it has been connected and set up once
        unreachable = link.unreachable_for
        if link.is_connected:
            if await broker_round_trip(link, within=self._timeout):
                self._probe_failing_since = None
                return True
            # Open by its own account, but no round trip: count from the first failed probe.
            now = self._clock()
            if self._probe_failing_since is None:
                self._probe_failing_since = now
            unreachable = max(unreachable, now - self._probe_failing_since)
        return unreachable < link.outage_bound


def add_health_routes(
    app: web.Application,
    checks: dict[str, ReadinessCheck],
    *,
    service: str,
    liveness: dict[str, LivenessCheck] | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> None:
    alive_checks = liveness or {}

    async def healthz(_request: web.Request) -> web.Response:
        results = {name: check() for name, check in alive_checks.items()}
        alive = all(results.values())
        body: dict[str, object] = {"status": "ok" if alive else "unhealthy", "service": service}
        if results:
            body["checks"] = results
        return web.json_response(body, status=200 if alive else 503)

    async def readyz(_request: web.Request) -> web.Response:
        results = dict(zip(checks, await asyncio.gather(*(check() for check in checks.values())), strict=True))
        ready = all(results.values())
        return web.json_response(
            {"status": "ready" if ready else "not_ready", "service": service, "checks": results},
            status=200 if ready else 503,
        )

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
