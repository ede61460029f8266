"""OAUTH2_CC: OAuth 2 client credentials from the frontend SDK (spec §2.5, §5.8): ``POST /oauth2/auth/{key}``
with ``{client_id, client_secret}``; the token is minted now, and the connection keeps what it needs
to mint the next one.
"""

from __future__ import annotations

from aiohttp import web

from keyway_shared.credentials.client_credentials import client_credentials_token
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

__all__ = ["SPEC", "client_credentials_auth"]


def _required(body: dict[str, object], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError(f"missing_{name}", f"The request body must have a non-empty '{name}' string.")
    return value


@public_key
async def client_credentials_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode="OAUTH2_CC")
    async with announce_failures(request, attempt):
        front.require_ids()
        check_hmac(env, front)
        integration, template = await integration_in_mode(request, attempt)
        body = await json_object(request)
        client_id = _required(body, "client_id")
        # As Nango: a client secret, or for private_key_jwt templates (okta-cc) a private JWK instead.
        key = body.get("client_private_key")
        client_private_key = key if isinstance(key, str) and key else None
        client_secret = str(body.get("client_secret") or "") if client_private_key else _required(body, "client_secret")
        config = front.connection_config
        scopes = config.get("oauth_scopes") or integration.oauth_scopes or ""
        credentials, expires_at = await client_credentials_token(
            request.app[HTTP],
            template=template,
            token_url=token_url(template, "OAUTH2_CC", config),
            client_id=client_id,
            client_secret=client_secret,
            scopes=[s for s in scopes.split(",") if s],
            now=utcnow(),
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
            connection_config=config,
            client_private_key=client_private_key,
        )
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode="OAUTH2_CC",
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
    )


SPEC = AuthModeSpec(
    mode="OAUTH2_CC",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/oauth2/auth/{providerConfigKey}",
                client_credentials_auth,
                "Connect with OAuth 2 client credentials",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=schema.CLIENT_CREDENTIALS,
                ok=CONNECTED,
                errors=(502,),
            ),
        )
    ),
)
