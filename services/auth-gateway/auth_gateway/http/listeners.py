"""Public and admin listeners: which port may serve which route, when ``KEYWAY_ADMIN_PORT`` is set.

One application listens on both ports (so every resource, cache and background task is shared and
opened once); a middleware compares the port the request arrived on (the socket's own address,
``request.transport``'s ``sockname``, which a client cannot forge with headers) with the side of
the route the router matched. A route of the other side answers 404 in the error envelope, exactly
as if it did not exist there. The side comes from the route table: a route whose auth is a public
key, a connect session or none is public, except the dashboard's pages; so is a route a connect
session may call as well as the secret key (the Connect UI lists providers and integrations from
the browser); secret-key routes, the dashboard and ``/openapi.json`` are admin. Routes outside the
table (``/healthz``, ``/readyz``, ``/metrics``) answer on both. Without an admin port the middleware
is not installed at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from .errors import Handler
from .route_line import RouteLine

__all__ = ["listener_middleware", "route_sides"]

PUBLIC_AUTHS = frozenset({"public_key", "connect_session", "secret_key_or_connect_session", "none"})
DASHBOARD_PREFIX = "/dashboard"
ADMIN_EXTRA = frozenset({("GET", "/openapi.json")})


def _canonical(path: str) -> str:
    """The router's canonical form of a path: ``{path:.*}`` becomes ``{path}``."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def _is_public(route: RouteLine) -> bool:
    in_dashboard = route.path == DASHBOARD_PREFIX or route.path.startswith(DASHBOARD_PREFIX + "/")
    return route.auth in PUBLIC_AUTHS and not in_dashboard


def route_sides(routes: Iterable[RouteLine]) -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]:
    """(public, admin) sets of (method, path) from the route table."""
    public = {(r.method, _canonical(r.path)) for r in routes if _is_public(r)}
    admin = {(r.method, _canonical(r.path)) for r in routes if not _is_public(r)} | ADMIN_EXTRA
    return frozenset(public), frozenset(admin)


def _local_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2 and isinstance(sockname[1], int):
        return sockname[1]
    return None


def listener_middleware(routes: Iterable[RouteLine], *, admin_port: int) -> Middleware:
    public, admin = route_sides(routes)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is not None:
            method = "GET" if request.method == "HEAD" else request.method
            key = (method, resource.canonical)
            on_admin = _local_port(request) == admin_port  # unknown port: the public side, the narrower one
            if (key in admin and not on_admin) or (key in public and on_admin):
                raise web.HTTPNotFound()
        return await handler(request)

    return middleware
