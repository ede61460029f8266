"""Running a service's aiohttp application: uvloop, graceful SIGTERM, bounded shutdown."""

from __future__ import annotations

import asyncio

import uvloop
from aiohttp import web

__all__ = ["serve"]


def serve(app: web.Application, *, host: str, port: int, shutdown_timeout: float, reuse_port: bool = False) -> None:
    """Serve until SIGTERM/SIGINT, then stop listening, drain, and run cleanup contexts in reverse."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=shutdown_timeout,
        access_log=None,
        print=None,
        handle_signals=True,
        reuse_port=reuse_port,
    )
