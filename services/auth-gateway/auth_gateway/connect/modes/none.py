"""NONE: connections without credentials (spec §2.5): ``POST /unauth/{key}`` (frontend ≤ 0.42.10,
connection id required) and ``POST /auth/unauthenticated/{key}`` (0.42.11+, whose ``create()`` may
omit the id: one is generated and returned).
"""

from __future__ import annotations

import uuid

from aiohttp import web

from keyway_shared.credentials.shapes import NoCredentials
from keyway_shared.store import Environment

from ...openapi_spec import Route
from ..credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode
from ..frontend_request import FrontendRequest, check_hmac, public_key
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow

__all__ = ["SPEC", "unauth", "unauthenticated"]


async def _connect(
    request: web.Request, env: Environment, front: FrontendRequest, *, generate_id: bool
) -> web.Response:
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
        credentials=NoCredentials(),
        connection_config=front.connection_config,
    )


@public_key
async def unauth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    return await _connect(request, env, front, generate_id=False)


@public_key
async def unauthenticated(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    return await _connect(request, env, front, generate_id=True)


SPEC = AuthModeSpec(
    mode="NONE",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/unauth/{providerConfigKey}",
                unauth,
                "Create an unauthenticated connection",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                ok=CONNECTED,
            ),
            Route(
                "POST",
                "/auth/unauthenticated/{providerConfigKey}",
                unauthenticated,
                "Create an unauthenticated connection (id optional)",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                ok=CONNECTED,
            ),
        )
    ),
)
