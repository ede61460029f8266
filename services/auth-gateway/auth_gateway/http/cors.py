"""CORS for the API: any origin, as Nango's public API allows (auth is by key, never by cookie).

The dashboard (``/dashboard/...``) is the one place a cookie signs a request in: it gets no CORS
headers at all, so no other origin can read its pages or call its JSON endpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["add_cors_headers", "cors_middleware"]

_ALLOW_HEADERS = (
    "Authorization, Content-Type, Accept, Origin, X-Requested-With, Nango-Activity-Log-Id, Nango-Is-Dry-Run, "
    "Nango-Is-Sync, Provider-Config-Key, Connection-Id"
)
_EXPOSE_HEADERS = (
    "Authorization, Etag, Content-Type, Content-Length, X-Nango-Signature, X-RateLimit-Limit, X-RateLimit-Remaining, "
    "X-RateLimit-Reset"
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_NO_CORS_PREFIX = "/dashboard"


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == _NO_CORS_PREFIX or request.path.startswith(_NO_CORS_PREFIX + "/"):
        return await handler(request)
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, PUT, PATCH, POST, DELETE"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", _ALLOW_HEADERS
        )
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = await handler(request)
        response.headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Vary"] = "Origin"
    return response


def add_cors_headers(response: web.StreamResponse) -> None:
    """What the middleware adds, for a streamed response to set before ``prepare`` (later is too late)."""
    response.headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Vary"] = "Origin"
