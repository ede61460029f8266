"""The proxy's own egress-guarded client session, apart from the one token requests use.

Apart so that proxied traffic (long downloads, many callers) cannot take the connections a token
refresh needs; without a cookie jar, so a cookie one connection's upstream sets is never sent on
another connection's call; without automatic decompression, so bodies pass through as they came.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from keyway_shared.egress import guarded_session

from ..settings import GatewaySettings

__all__ = ["PROXY_HTTP", "proxy_http_context"]

PROXY_HTTP = web.AppKey("proxy_http_client", aiohttp.ClientSession)


def proxy_http_context(settings: GatewaySettings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # Per-call timeouts are set by the caller; these only apply if it forgets.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=settings.proxy_read_timeout_seconds)
        session = guarded_session(
            settings.egress_allowlist,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        app[PROXY_HTTP] = session
        yield
        await session.close()

    return ctx
