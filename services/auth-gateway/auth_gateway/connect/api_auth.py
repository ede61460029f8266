"""What the API key and Basic form flows share (spec §2.5, ``POST /api-auth/{api-key,basic}/{key}``):
the credentials read from the body, checked at the provider when its template says how, then stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from keyway_shared.auth_modes import AuthMode
from keyway_shared.credentials import Credentials
from keyway_shared.store import Environment

from ..http.requests import json_object
from ..resources import HTTP, SETTINGS
from .credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode
from .frontend_request import FrontendRequest, check_hmac
from .verification import verify_credentials

__all__ = ["connect_checked"]


async def connect_checked(
    request: web.Request,
    env: Environment,
    front: FrontendRequest,
    mode: AuthMode,
    read: Callable[[dict[str, Any]], Credentials],
) -> web.Response:
    """``read`` makes the mode's credentials of the JSON body (an ApiError for a wrong one)."""
    attempt = CredentialAttempt(env=env, front=front, mode=mode)
    async with announce_failures(request, attempt):
        front.require_ids()
        check_hmac(env, front)
        integration, template = await integration_in_mode(request, attempt)
        credentials = read(await json_object(request))
        await verify_credentials(
            request.app[HTTP],
            template,
            credentials,
            front.connection_config,
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode=mode,
        credentials=credentials,
        connection_config=front.connection_config,
    )
