"""API key and Basic connections from the frontend SDK (spec §2.5): ``POST /api-auth/{api-key,basic}/{key}``."""

from __future__ import annotations

from aiohttp import web

from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..connect import record_auth_failure, store_connection
from ..errors import ApiError
from ..frontend import FrontendRequest, check_hmac, frontend_request
from ..requests import json_object
from ..resources import CATALOG, STORES

__all__ = ["api_key_auth", "basic_auth"]


async def _integration_and_template(
    request: web.Request, env: Environment, front: FrontendRequest, expected_mode: str
) -> tuple[Integration, ProviderTemplate]:
    integration = await request.app[STORES].integrations.get(env.name, front.provider_config_key)
    if integration is None:
        raise ApiError(
            "unknown_provider_config",
            f"There is no integration '{front.provider_config_key}' in the environment '{env.name}'.",
        )
    template = request.app[CATALOG].get(integration.provider)
    if template is None:
        raise ApiError("unknown_provider_template", f"The provider '{integration.provider}' is not in the catalog.")
    if template.auth_mode != expected_mode:
        raise ApiError(
            "invalid_auth_mode",
            f"The integration '{front.provider_config_key}' uses {template.auth_mode}, not {expected_mode}.",
        )
    return integration, template


async def _fail(request: web.Request, env: Environment, front: FrontendRequest, err: ApiError, mode: str) -> None:
    await record_auth_failure(
        request.app,
        environment=env.name,
        error_type=err.code,
        description=err.message or err.code,
        provider_config_key=front.provider_config_key,
        connection_id=front.connection_id,
        auth_mode=mode,  # type: ignore[arg-type]
        operation_id=front.operation_id,
    )


async def api_key_auth(request: web.Request) -> web.Response:
    env, front = await frontend_request(request)
    try:
        front.require_ids()
        check_hmac(env, front)
        integration, template = await _integration_and_template(request, env, front, "API_KEY")
        body = await json_object(request)
        api_key = body.get("apiKey")
        if not isinstance(api_key, str) or not api_key:
            raise ApiError("missing_api_key", "The request body must have a non-empty 'apiKey' string.")
    except ApiError as err:
        await _fail(request, env, front, err, "API_KEY")
        raise
    await store_connection(
        request.app,
        environment=env.name,
        provider_config_key=front.provider_config_key,
        provider=integration.provider,
        auth_mode="API_KEY",
        connection_id=front.connection_id,
        credentials={"type": "API_KEY", "apiKey": api_key},
        connection_config=front.connection_config,
        operation_id=front.operation_id,
        connect_session_id=front.connect_session_id,
    )
    del template  # verification calls (template.proxy.verification) arrive with the egress guard
    return web.json_response({"providerConfigKey": front.provider_config_key, "connectionId": front.connection_id})


async def basic_auth(request: web.Request) -> web.Response:
    env, front = await frontend_request(request)
    try:
        front.require_ids()
        check_hmac(env, front)
        integration, _template = await _integration_and_template(request, env, front, "BASIC")
        body = await json_object(request)
        username = body.get("username", "")
        password = body.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError("invalid_body", "'username' and 'password' must be strings.")
    except ApiError as err:
        await _fail(request, env, front, err, "BASIC")
        raise
    await store_connection(
        request.app,
        environment=env.name,
        provider_config_key=front.provider_config_key,
        provider=integration.provider,
        auth_mode="BASIC",
        connection_id=front.connection_id,
        credentials={"type": "BASIC", "username": username, "password": password},
        connection_config=front.connection_config,
        operation_id=front.operation_id,
        connect_session_id=front.connect_session_id,
    )
    return web.json_response({"providerConfigKey": front.provider_config_key, "connectionId": front.connection_id})
