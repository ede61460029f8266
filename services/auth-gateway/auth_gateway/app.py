"""The gateway's application factory: resources in cleanup contexts, middlewares, routes, health."""

from __future__ import annotations

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from aiohttp.typedefs import Middleware

from keyway_shared.bus import declare_topology
from keyway_shared.service import (
    BROKER,
    CIPHER,
    add_readiness_routes,
    broker_context,
    build_cipher,
    mongo_context,
)

from .connect.ws import ws_context
from .connection_cache import connection_cache_context
from .dashboard.state import dashboard_context
from .env_cache import env_cache_context
from .http.cors import cors_middleware
from .http.deadlines import deadline_middleware
from .http.errors import RETRY_AFTER_SECONDS, error_middleware
from .http.idempotency.middleware import idempotency_middleware
from .http.listeners import listener_middleware
from .http.load_shedding import DatabaseSlots, load_shedding_middleware
from .http.metrics import metrics_middleware
from .http.ratelimit import RATE_LIMITS, RateLimits, client_rate_middleware, rate_headers_middleware
from .http.requests import BODY_TIMEOUT_SECONDS
from .openapi import openapi_json
from .operations.callers import secret_key_owner
from .operations.failure_announcements import FAILURE_ANNOUNCEMENTS, FailureAnnouncements
from .operations.fetch_recorder import fetch_recorder_context
from .operations.outbox_relay import relay_context
from .operations.revocation_jobs import revocation_jobs_context
from .proxy.session import proxy_http_context
from .resources import SETTINGS, http_client_context, refresh_context, stores_context
from .routes import ROUTES, add_routes
from .settings import GatewaySettings

__all__ = ["create_app"]

SERVICE = "auth-gateway"


def create_app(settings: GatewaySettings) -> web.Application:
    # Outermost first: metrics see every answer; CORS and rate-limit headers go on errors too.
    middlewares: list[Middleware] = [metrics_middleware, cors_middleware, rate_headers_middleware, error_middleware]
    if settings.admin_port is not None:  # inside the error middleware: a wrong-side route is a plain 404
        middlewares.append(listener_middleware(ROUTES, admin_port=settings.admin_port))
    # A browser over its budget: 429 before any database work.
    middlewares.append(client_rate_middleware(ROUTES, trusted_proxies=settings.trusted_proxies))
    # Database and broker waits end by the deadline (503 then), and past the cap on concurrent
    # database work a request is refused before it queues: both before anything touches the database.
    middlewares.append(deadline_middleware(settings.request_deadline_seconds))
    slots = DatabaseSlots(settings.database_concurrency, retry_after=settings.retry_after_seconds)
    middlewares.append(load_shedding_middleware(ROUTES, slots))
    # Innermost: it stores what the view answered.
    middlewares.append(idempotency_middleware(ROUTES, key_owner=secret_key_owner))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=75 * 1024 * 1024,  # Nango's body limit
        # aiohttp (3.14, its PR #13681) arms this timer when a connection opens and again after each
        # answer, and closes the connection if no complete request head has arrived when it fires: it
        # is the header-read timeout (slowloris) as well as the idle one; test_http_limits checks it.
        # Set here, it holds under any runner, tests' too.
        handler_args={"keepalive_timeout": settings.http_idle_timeout_seconds},
    )
    app[SETTINGS] = settings
    app[RETRY_AFTER_SECONDS] = settings.retry_after_seconds
    app[BODY_TIMEOUT_SECONDS] = settings.http_body_timeout_seconds
    app[RATE_LIMITS] = RateLimits.per_minute(
        secret=settings.rate_limit_per_minute,
        public=settings.public_rate_limit_per_minute,
        client=settings.client_rate_limit_per_minute,
    )
    app[FAILURE_ANNOUNCEMENTS] = FailureAnnouncements.from_settings(settings)
    app[CIPHER] = build_cipher(settings)
    # Opened in this order, closed in reverse: the relay and recorder flush before the database closes.
    app.cleanup_ctx.extend(
        [
            mongo_context(settings, app_name=SERVICE),
            broker_context(settings, name=SERVICE),
            stores_context(settings),
            dashboard_context(settings),
            env_cache_context(settings),
            connection_cache_context(settings),
            http_client_context(settings),
            proxy_http_context(settings),
            ws_context(settings),
            relay_context(settings),
            refresh_context(settings),
            fetch_recorder_context(),
            revocation_jobs_context(),
        ]
    )

    async def declare(connection: AbstractRobustConnection) -> None:
        channel = await connection.channel()
        try:
            await declare_topology(channel, namespace=settings.bus_namespace, queue_type=settings.queue_type)
        finally:
            await channel.close()

    async def on_startup(app: web.Application) -> None:
        app[BROKER].on_connect(declare)

    app.on_startup.append(on_startup)
    add_readiness_routes(app, service=SERVICE)
    add_routes(app)
    app.router.add_get("/openapi.json", openapi_json)
    return app
