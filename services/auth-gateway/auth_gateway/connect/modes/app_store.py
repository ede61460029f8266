"""APP_STORE: App Store Connect from the frontend SDK (spec §2.5, §5.9): ``POST /app-store-auth/{key}`` with
``{privateKeyId, issuerId, privateKey, scope?}``; the ES256 JWT is minted and exchanged at once, so a
bad key fails here rather than at the first API call.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.credentials.app_store import app_store_token
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ... import openapi_schemas as schema
from ...http.errors import ApiError
from ...http.requests import json_object
from ...openapi_spec import Route
from ...resources import HTTP, SETTINGS
from ..credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode, token_url
from ..frontend_request import FrontendRequest, check_hmac, public_key
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow

__all__ = ["SPEC", "app_store_auth"]

_MISSING = {
    "privateKeyId": "missing_private_key_id",
    "issuerId": "missing_issuer_id",
    "privateKey": "missing_private_key",
}


def _fields(body: dict[str, Any]) -> tuple[str, str, str, str | None]:
    values: dict[str, str] = {}
    for name, code in _MISSING.items():
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ApiError(code, f"The request body must have a non-empty '{name}' string.")
        values[name] = value.strip()
    scope = body.get("scope")
    if scope is not None and not isinstance(scope, str):
        raise ApiError("invalid_body", "'scope' must be a string.")
    return values["privateKeyId"], values["issuerId"], values["privateKey"], scope or None


@public_key
async def app_store_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode="APP_STORE")
    async with announce_failures(request, attempt):
        front.require_ids()
        check_hmac(env, front)
        integration, template = await integration_in_mode(request, attempt)
        private_key_id, issuer_id, private_key, scope = _fields(await json_object(request))
        credentials, expires_at = await app_store_token(
            request.app[HTTP],
            token_url=token_url(template, "APP_STORE", front.connection_config),
            private_key=private_key,
            private_key_id=private_key_id,
            issuer_id=issuer_id,
            audience=template.authorization_params.get("audience"),
            scope=scope,
            now=utcnow(),
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    config: dict[str, Any] = {**front.connection_config, "privateKeyId": private_key_id, "issuerId": issuer_id}
    if scope is not None:
        config["scope"] = scope
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode="APP_STORE",
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
    )


SPEC = AuthModeSpec(
    mode="APP_STORE",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/app-store-auth/{providerConfigKey}",
                app_store_auth,
                "Connect App Store Connect (ES256 JWT)",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=schema.APP_STORE,
                ok=CONNECTED,
                errors=(502,),
            ),
        )
    ),
)
