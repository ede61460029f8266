"""BILL: ``POST /auth/bill/{key}`` from the frontend SDK (0.71.10's ``auth(key, id, {credentials:
{username, password, organization_id, dev_key}})``) or the Connect UI, as Nango's ``postBill.ts``:
the strict body of those four non-empty strings.

Keyway signs in to Bill now (``keyway_shared.credentials.bill``) and stores the session with the
login, which the token-refresher uses to sign in again before the session ends; the proxy sends the
session and the developer key as Bill's ``sessionId`` and ``devKey`` headers. A refused login is
``invalid_bill_credentials`` (400) and stores nothing; where Nango's route then leaves the request
unanswered, Keyway answers it.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from keyway_shared.credentials.bill import bill_login
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ...http.body_issues import MISSING, check_string, min_length, unknown_fields
from ...http.query_issues import invalid_params
from ...http.requests import json_object
from ...openapi_spec import Route
from ...resources import HTTP, SETTINGS
from ..credential_flow import CredentialAttempt, announce_failures, connected, integration_in_mode, token_url
from ..frontend_request import FrontendRequest, check_hmac, public_key
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow

__all__ = ["BILL_BODY", "SPEC", "bill_auth"]

_FIELDS = ("username", "password", "organization_id", "dev_key")

BILL_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": list(_FIELDS),
    "properties": {name: {"type": "string", "minLength": 1} for name in _FIELDS},
}


def _login(body: dict[str, Any]) -> dict[str, str]:
    issues = [issue for name in _FIELDS for issue in check_string(body.get(name, MISSING), [name], min_length(1))]
    issues += unknown_fields(body, _FIELDS)
    if issues:
        raise invalid_params(issues, code="invalid_body")
    return {name: body[name] for name in _FIELDS}


@public_key
async def bill_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode="BILL")
    async with announce_failures(request, attempt):
        login = _login(await json_object(request))
        check_hmac(env, front)  # over the id the caller sent, before the server names one
        if not front.connection_id:
            front.connection_id = str(uuid.uuid4())
        front.require_ids()
        integration, template = await integration_in_mode(request, attempt)
        credentials, expires_at = await bill_login(
            request.app[HTTP],
            token_url=token_url(template, "BILL", front.connection_config),
            username=login["username"],
            password=login["password"],
            organization_id=login["organization_id"],
            dev_key=login["dev_key"],
            now=utcnow(),
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode="BILL",
        credentials=credentials,
        connection_config=front.connection_config,
        expires_at=expires_at,
    )


SPEC = AuthModeSpec(
    mode="BILL",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/auth/bill/{providerConfigKey}",
                bill_auth,
                "Connect Bill with a login for a session",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=BILL_BODY,
                ok=CONNECTED,
                errors=(502,),
            ),
        )
    ),
)
