"""The gateway's application factory: resources in cleanup contexts, middlewares, routes, health."""

from __future__ import annotations

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from keyway_shared.bus import declare_topology
from keyway_shared.service import (
    BROKER,
    CIPHER,
    add_readiness_routes,
    broker_context,
    build_cipher,
    mongo_context,
)

from .cors import cors_middleware
from .errors import error_middleware
from .fetch_recorder import fetch_recorder_context
from .metrics import metrics_middleware
from .outbox_relay import relay_context
from .resources import SETTINGS, http_client_context, refresh_context, stores_context
from .routes import add_routes
from .settings import GatewaySettings
from .ws import ws_context

__all__ = ["create_app"]

SERVICE = "auth-gateway"


def create_app(settings: GatewaySettings) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, cors_middleware, error_middleware], client_max_size=75 * 1024 * 1024
    )
    app[SETTINGS] = settings
    app[CIPHER] = build_cipher(settings)
    # Opened in this order, closed in reverse: the relay and recorder flush before the database closes.
    app.cleanup_ctx.extend(
        [
            mongo_context(settings, app_name=SERVICE),
            broker_context(settings, name=SERVICE),
            stores_context(settings),
            http_client_context(settings),
            ws_context(settings),
            relay_context(settings),
            refresh_context(settings),
            fetch_recorder_context(),
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
    return app
