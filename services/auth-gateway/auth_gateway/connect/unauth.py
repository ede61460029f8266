"""Connections without credentials (spec §2.5, NONE): ``POST /unauth/{key}`` (frontend ≤ 0.42.10,
connection id required) and ``POST /auth/unauthenticated/{key}`` (0.42.11+, whose ``create()`` may
omit the id: one is generated and returned).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from .credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode
from .frontend_request import check_hmac, frontend_request

__all__ = ["unauth", "unauthenticated"]


async def _connect(request: web.Request, *, generate_id: bool) -> web.Response:
    env, front = await frontend_request(request)
    attempt = CredentialAttempt(env=env, front=front, mode="NONE")
    async with announce_failures(request, attempt):
        if not generate_id:
            front.require_ids()
        # The HMAC covers the id the caller sent (an empty one when it lets us pick).
        check_hmac(env, front)
        if not front.connection_id:
            front.connection_id = str(uuid.uuid4())
        front.require_ids()
        integration, _template = await integration_in_mode(request, attempt)
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode="NONE",
        credentials={},
        connection_config=front.connection_config,
    )


async def unauth(request: web.Request) -> web.Response:
    return await _connect(request, generate_id=False)


async def unauthenticated(request: web.Request) -> web.Response:
    return await _connect(request, generate_id=True)
