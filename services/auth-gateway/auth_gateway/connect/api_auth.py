"""API key and Basic connections from the frontend SDK (spec §2.5): ``POST /api-auth/{api-key,basic}/{key}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.credentials.shapes import ApiKeyCredentials, BasicCredentials
from keyway_shared.events import AuthMode
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.requests import json_object
from ..resources import HTTP, SETTINGS
from .credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode
from .frontend_request import FrontendRequest, check_hmac, public_key
from .verification import verify_credentials

__all__ = ["api_key_auth", "basic_auth"]


def _api_key(body: dict[str, Any]) -> ApiKeyCredentials:
    api_key = body.get("apiKey")
    if not isinstance(api_key, str) or not api_key:
        raise ApiError("missing_api_key", "The request body must have a non-empty 'apiKey' string.")
    return ApiKeyCredentials(api_key=api_key)


def _basic(body: dict[str, Any]) -> BasicCredentials:
    username, password = body.get("username", ""), body.get("password", "")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError("invalid_body", "'username' and 'password' must be strings.")
    return BasicCredentials(username=username, password=password)


async def _connect(request: web.Request, env: Environment, front: FrontendRequest, mode: AuthMode) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode=mode)
    async with announce_failures(request, attempt):
        front.require_ids()
        check_hmac(env, front)
        integration, template = await integration_in_mode(request, attempt)
        body = await json_object(request)
        credentials: ApiKeyCredentials | BasicCredentials = _api_key(body) if mode == "API_KEY" else _basic(body)
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


@public_key
async def api_key_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    return await _connect(request, env, front, "API_KEY")


@public_key
async def basic_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    return await _connect(request, env, front, "BASIC")
