"""Every request's waits on MongoDB and RabbitMQ end by ``KEYWAY_REQUEST_DEADLINE_SECONDS`` (5 s).

The middleware runs the handler inside ``keyway_shared.deadline.request_deadline``: PyMongo's
client-side operation timeout bounds its database operations, and the broker waits it makes (the
outbox relay's ``drained``, the connection cache's barrier) stop at the same deadline. Past it the
driver raises a timeout, which the error middleware answers ``503`` with ``Retry-After``, instead of
a request hanging for the driver's own patience while a database link is cut or blackholed.

The deadline is counted again after each call to a third party ends (``restart_after_third_parties``
on the gateway's HTTP client to providers): a slow token endpoint does not leave the write of its
tokens no time. A refresh's lease-holding part runs outside it (``RefreshService``).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from keyway_shared.deadline import request_deadline

from .errors import Handler

__all__ = ["deadline_middleware"]


def deadline_middleware(seconds: float) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        with request_deadline(seconds):
            return await handler(request)

    return middleware
