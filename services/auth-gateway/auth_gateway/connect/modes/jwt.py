"""JWT: a token Keyway signs from what the person typed. ``POST /auth/jwt/{key}`` from the frontend SDK
(0.71.10's ``auth(key, id, {credentials: {type: 'JWT', …fields}})``; a bare ``{privateKey}`` too, as
Ghost's older callers send it), with the fields the template's ``credentials`` names (a private key
or secret, its key id, an issuer, …).

As Nango's ``postJwt.ts``: the body's fields sign the JWT the template's ``token`` declares, the
template's verification call (when it declares one) tries it, and the fields are stored with the
token so the refresher signs the next one before this one expires. A key that cannot sign is refused
here (400 ``invalid_private_key``), nothing stored.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from keyway_shared.credentials.declared_jwt import jwt_fields
from keyway_shared.credentials.shapes import JwtCredentials
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ...http.requests import json_object
from ...openapi_spec import Route
from ...resources import HTTP, SETTINGS
from ..credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode
from ..frontend_request import FrontendRequest, check_hmac, public_key
from ..verification import verify_credentials
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow

__all__ = ["JWT_BODY", "SPEC", "jwt_auth"]

# The fields differ by provider (the template's ``credentials``): any object, as Nango's loose schema.
JWT_BODY: dict[str, Any] = {
    "type": "object",
    "description": "The fields the provider's template names under 'credentials', e.g. privateKey, issuerId",
    "properties": {"type": {"type": "string", "enum": ["JWT"]}},
    "additionalProperties": True,
}


@public_key
async def jwt_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode="JWT")
    async with announce_failures(request, attempt):
        body = await json_object(request)
        check_hmac(env, front)  # over the id the caller sent; Nango's route names the connection when absent
        if not front.connection_id:
            front.connection_id = str(uuid.uuid4())
        integration, template = await integration_in_mode(request, attempt)
        config = front.connection_config
        credentials, expires_at = JwtCredentials.signed(template, jwt_fields(template, body), config, now=utcnow())
        await verify_credentials(
            request.app[HTTP],
            template,
            credentials,
            config,
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode="JWT",
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
    )


SPEC = AuthModeSpec(
    mode="JWT",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/auth/jwt/{providerConfigKey}",
                jwt_auth,
                "Connect with a JWT signed from the person's key",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=JWT_BODY,
                ok=CONNECTED,
            ),
        )
    ),
)
