"""``/healthz`` (alive), ``/readyz`` (broker and database reachable) and ``/metrics`` for every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pymongo.errors import PyMongoError

from ..store import Database

__all__ = ["ReadinessCheck", "add_health_routes", "mongo_check"]

ReadinessCheck = Callable[[], Awaitable[bool]]


def mongo_check(db: Database, *, timeout: float = 2.0) -> ReadinessCheck:
    async def check() -> bool:
        try:
            await asyncio.wait_for(db.command("ping"), timeout=timeout)
        except (PyMongoError, TimeoutError, OSError):
            return False
        return True

    return check


def add_health_routes(
    app: web.Application,
    checks: dict[str, ReadinessCheck],
    *,
    service: str,
    registry: CollectorRegistry = REGISTRY,
) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": service})

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
