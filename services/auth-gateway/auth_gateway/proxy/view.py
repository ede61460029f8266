"""``ANY /proxy/{path}``: call a connection's API with its credentials, answer what it answered (spec §3.4).

The secret-key holder names the connection in ``Connection-Id`` and ``Provider-Config-Key``; the
credentials are read (refreshed first when due, as ``GET /connection`` does), put on the upstream
request, and never shown to the caller. The upstream's status, headers and body stream back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from keyway_shared.logging import get_logger
from keyway_shared.store import Environment

from ..http.cors import add_cors_headers
from ..http.errors import ApiError
from ..operations.callers import secret_key
from ..operations.connections import unknown_connection
from ..operations.fetch_recorder import FETCH_RECORDER
from ..operations.refresh_on_read import fresh_connection
from ..resources import CATALOG, SETTINGS, STORES
from .metrics import PROXY_CALLS, PROXY_RETRIES, PROXY_UPSTREAM_SECONDS, status_class
from .retry import RetryPolicy, parse_retries, parse_retry_on
from .session import PROXY_HTTP
from .signing import HeaderRenewal, RequestSigner, request_signer, signs_body
from .target import HOP_BY_HOP, Target, build_target, headers_need_body, headers_need_client
from .upstream import Body, UpstreamError, call_upstream

__all__ = ["proxy"]

log = get_logger(__name__)

_ROUTE_PREFIX = "/proxy"
_CHUNK = 64 * 1024
_NOT_PASSED_BACK = HOP_BY_HOP | {"set-cookie", "set-cookie2"}  # a cookie for the upstream's site, not ours


async def _stream(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    async for chunk in content.iter_chunked(_CHUNK):
        yield chunk


async def _request_body(
    request: web.Request, target: Target, policy: RetryPolicy, signer: RequestSigner | None
) -> Body:
    """Streamed through when its length is known, it is sent once and no signature covers it (an
    OAuth 1 signature covers a form's parameters, SigV4 any body's hash); else read (within the size limit)."""
    if not request.body_exists:
        return None
    signed = signs_body(signer, target.headers.get("Content-Type", ""))
    if policy.retries == 0 and request.content_length is not None and not signed:
        target.headers["Content-Length"] = str(request.content_length)
        return _stream(request.content)
    return await request.read()


def _response_headers(upstream: CIMultiDictProxy[str], target: Target) -> list[tuple[str, str]]:
    skip = set(_NOT_PASSED_BACK)
    skip.update(token.strip().lower() for token in upstream.get("Connection", "").split(",") if token.strip())
    if target.decompress:
        skip.update({"content-encoding", "content-length"})
    headers: list[tuple[str, str]] = []
    for name, value in upstream.items():
        lower = name.lower()
        if lower in skip or lower.startswith("access-control-"):
            continue  # the upstream's CORS policy is not ours: the CORS middleware's headers are set instead
        if lower == "location":
            # Redirects are not followed (the credentials must not go where the upstream points), so
            # the caller gets them; relative to the upstream, not to this gateway.
            with contextlib.suppress(ValueError):
                value = str(target.url.join(URL(value)))
        headers.append((name, value))
    return headers


@secret_key
async def proxy(request: web.Request, env: Environment) -> web.StreamResponse:
    connection_id = request.headers.get("Connection-Id", "").strip()
    provider_config_key = request.headers.get("Provider-Config-Key", "").strip()
    if not connection_id:
        raise ApiError("missing_connection", "Missing param 'connection_id': send it in the Connection-Id header.")
    if not provider_config_key:
        raise ApiError(
            "missing_provider_config", "Missing param 'provider_config_key': send it in the Provider-Config-Key header."
        )
    connection = await request.app[STORES].connections.get(env.name, provider_config_key, connection_id)
    if connection is None:
        raise unknown_connection(env, connection_id, provider_config_key)
    connection = await fresh_connection(request.app, env, connection, force=False)
    request.app[FETCH_RECORDER].note(env.name, provider_config_key, connection_id)
    template = request.app[CATALOG].get(connection.provider)
    signer = await request_signer(connection, template, request.app[STORES].integrations)  # OAuth 1, SigV4
    # A header signed over the body (Duo, AWS, Streamline) needs the body read before it is built.
    signed_body = await request.read() if headers_need_body(template) and request.body_exists else None
    oauth_client: tuple[str | None, str | None] = (None, None)
    if headers_need_client(template):
        integration = await request.app[STORES].integrations.get(env.name, provider_config_key)
        if integration is not None:
            oauth_client = (integration.oauth_client_id, integration.oauth_client_secret)
    rendering = functools.partial(
        build_target,
        connection=connection,
        template=template,
        client_headers=request.headers,
        raw_endpoint=request.rel_url.raw_path[len(_ROUTE_PREFIX) :],
        raw_query=request.rel_url.raw_query_string,
        method=request.method,
        body=signed_body,
        oauth_client=oauth_client,
    )
    target = rendering()
    if signer is None and connection.credentials.fresh_per_request:
        signer = HeaderRenewal(lambda: rendering().headers)  # a new WSSE token for each attempt
    policy = RetryPolicy(
        retries=parse_retries(request.headers.get("Retries")),
        retry_on=parse_retry_on(request.headers.get("Retry-On")),
    )
    body = signed_body if signed_body is not None else await _request_body(request, target, policy, signer)
    provider = connection.provider
    context = {
        "provider": provider,
        "provider_config_key": provider_config_key,
        "connection_id": connection_id,
        "method": request.method,
        "endpoint": request.rel_url.path[len(_ROUTE_PREFIX) :],  # never the query: it may carry a key
        "upstream_host": target.host,
    }
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with call_upstream(
            request.app[PROXY_HTTP],
            method=request.method,
            target=target,
            body=body,
            policy=policy,
            hint=template.proxy.retry if template is not None and template.proxy is not None else None,
            deadline_seconds=request.app[SETTINGS].proxy_deadline_seconds,
            on_retry=lambda reason: PROXY_RETRIES.labels(provider, reason).inc(),
            signer=signer,
        ) as answer:
            upstream = answer.response
            PROXY_UPSTREAM_SECONDS.labels(provider).observe(loop.time() - started)
            PROXY_CALLS.labels(provider, status_class(upstream.status), "upstream").inc()
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in _response_headers(upstream.headers, target):
                response.headers.add(name, value)
            add_cors_headers(response)
            await response.prepare(request)
            try:
                if request.method != "HEAD":
                    async for chunk in upstream.content.iter_chunked(_CHUNK):
                        await response.write(chunk)
                await response.write_eof()
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                # Headers are gone: a cut connection is the only honest way left to say the body is not whole.
                log.warning("proxy body interrupted", **context, status=upstream.status, reason=type(exc).__name__)
                if request.transport is not None:
                    request.transport.close()
                return response
    except UpstreamError as exc:
        PROXY_CALLS.labels(provider, status_class(exc.status), exc.code).inc()
        log.info("proxy call failed", **context, code=exc.code, attempts=exc.attempts)
        raise ApiError(exc.code, exc.message, status=exc.status, payload={"attempts": exc.attempts}) from None
    log.info(
        "proxied",
        **context,
        status=upstream.status,
        attempts=answer.attempts,
        seconds=round(loop.time() - started, 3),
    )
    return response
