"""SIGNATURE: a WSSE signature made from a user name and password (Emarsys). ``POST /auth/signature/{key}``
from the frontend SDK (0.71.10's ``auth(key, id, {credentials: {type: 'SIGNATURE', username, password}})``)
or the dashboard's Connect form.

As Nango's ``postSignature.ts``: a strict body, a token made now and tried with the template's
verification call, then stored with the user name and password, which make every later one (the
proxy signs each request anew; the refresher renews the stored token before it expires).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from aiohttp import web

from keyway_shared.credentials.shapes import SignatureCredentials
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ...http.body_issues import MISSING, check_string, min_length, unknown_fields
from ...http.errors import ApiError
from ...http.query_issues import invalid_params
from ...http.requests import json_object
from ...openapi_spec import Route
from ...resources import HTTP, SETTINGS
from ..credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode
from ..frontend_request import FrontendRequest, check_hmac, public_key
from ..verification import verify_credentials
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow

__all__ = ["SIGNATURE_BODY", "SPEC", "signature_auth"]

_FIELDS = ("username", "password")
# Nango's strict schema also requires ``type`` (the SDK sends "SIGNATURE"); Keyway's Connect UI posts
# the typed fields alone, so a missing one is taken, an empty or non-text one refused.

SIGNATURE_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": list(_FIELDS),
    "properties": {name: {"type": "string", "minLength": 1} for name in (*_FIELDS, "type")},
}


def _pair(body: dict[str, Any]) -> tuple[str, str]:
    """The user name and password; ``invalid_body`` with zod's issues for what Nango's schema refuses."""
    issues = [issue for name in _FIELDS for issue in check_string(body.get(name, MISSING), [name], min_length(1))]
    issues += check_string(body.get("type", MISSING), ["type"], min_length(1), optional=True)
    issues += unknown_fields(body, (*_FIELDS, "type"))
    if issues:
        raise invalid_params(issues, code="invalid_body")
    return body["username"], body["password"]


@public_key
async def signature_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode="SIGNATURE")
    async with announce_failures(request, attempt):
        username, password = _pair(await json_object(request))
        check_hmac(env, front)
        if not front.connection_id:
            front.connection_id = str(uuid.uuid4())
        integration, template = await integration_in_mode(request, attempt)
        if template.token is None:  # the template schema requires it of this mode
            raise ApiError("invalid_provider_template", "The provider template declares no token lifetime.")
        lifetime = timedelta(milliseconds=template.token.expires_in_ms)
        credentials, expires_at = SignatureCredentials.made(username, password, now=utcnow(), lifetime=lifetime)
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
        auth_mode="SIGNATURE",
        credentials=credentials,
        connection_config=front.connection_config,
        expires_at=expires_at,
    )


SPEC = AuthModeSpec(
    mode="SIGNATURE",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/auth/signature/{providerConfigKey}",
                signature_auth,
                "Connect with a WSSE signature (user name and password)",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=SIGNATURE_BODY,
                ok=CONNECTED,
            ),
        ),
    ),
)
