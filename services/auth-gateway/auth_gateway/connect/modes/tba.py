"""TBA: NetSuite token-based auth. ``POST /auth/tba/{key}`` from the frontend SDK (0.71.10's
``auth(key, id, {credentials: {token_id, token_secret, …}, params: {accountId}})``) or the Connect UI:
the body ``{token_id, token_secret}`` and, optionally, the OAuth client to sign with instead of the
integration's; the NetSuite account in ``params[accountId]``.

The token and the integration's client sign each request (OAuth 1, HMAC-SHA256), so there is no
token to fetch now: the credentials are stored as Nango stores them (Nango's ``postTba.ts``), but
not the integration's client copied into the connection config, as Nango also does. Nango may test
them with one call of the template's ``proxy.verification``; Keyway's verification call
(``connect/verification.py``) authenticates with a header and cannot sign, and the NetSuite template
declares none, so TBA credentials are stored unverified.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from keyway_shared.credentials.shapes import TbaCredentials
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment

from ...http.body_issues import MISSING, check_string, min_length, unknown_fields
from ...http.errors import ApiError
from ...http.query_issues import invalid_params
from ...http.requests import json_object
from ...openapi_spec import Route
from ..credential_flow import (
    CredentialAttempt,
    announce_failures,
    check_connection_config,
    connected,
    integration_in_mode,
)
from ..frontend_request import FrontendRequest, check_hmac, public_key
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow

__all__ = ["SPEC", "TBA_BODY", "tba_auth"]

# The body, as Nango's strict zod schema declares it: the token, then the client overrides.
_TOKEN = ("token_id", "token_secret")
_OVERRIDES = {"oauth_client_id_override": "client_id", "oauth_client_secret_override": "client_secret"}

TBA_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": list(_TOKEN),
    "properties": {
        **{name: {"type": "string", "minLength": 1} for name in _TOKEN},
        **{name: {"type": "string"} for name in _OVERRIDES},
    },
}


def _credentials(body: dict[str, Any]) -> TbaCredentials:
    """The body's credentials; ``invalid_body`` with zod's issues for anything Nango's schema refuses."""
    issues = [issue for name in _TOKEN for issue in check_string(body.get(name, MISSING), [name], min_length(1))]
    for name in _OVERRIDES:
        issues += check_string(body.get(name, MISSING), [name], optional=True)
    issues += unknown_fields(body, (*_TOKEN, *_OVERRIDES))
    if issues:
        raise invalid_params(issues, code="invalid_body")
    # Nango keeps an (empty) config_override on every TBA connection; an empty override is no override.
    override = {key: body[name] for name, key in _OVERRIDES.items() if body.get(name)}
    return TbaCredentials(token_id=body["token_id"], token_secret=body["token_secret"], config_override=override)


def _check_account(template: ProviderTemplate, connection_config: dict[str, Any]) -> None:
    # Every NetSuite URL is the account's (https://<accountId>.suitetalk.api.netsuite.com): refused
    # now, as an import without it is, rather than at the first proxy call; and, as every form mode
    # does, a value no URL or header of the template could take (the browser chose it).
    if not connection_config.get("accountId"):
        raise ApiError("missing_account_id", "TBA connections need params[accountId], the NetSuite account id.")
    check_connection_config(template, connection_config)


@public_key
async def tba_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode="TBA")
    async with announce_failures(request, attempt):
        credentials = _credentials(await json_object(request))
        # Nango's current route may name the connection itself; the HMAC covers the id the caller sent.
        check_hmac(env, front)
        if not front.connection_id:
            front.connection_id = str(uuid.uuid4())
        integration, template = await integration_in_mode(request, attempt)
        _check_account(template, front.connection_config)
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode="TBA",
        credentials=credentials,
        connection_config=front.connection_config,
    )


SPEC = AuthModeSpec(
    mode="TBA",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/auth/tba/{providerConfigKey}",
                tba_auth,
                "Connect with NetSuite token-based auth",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=TBA_BODY,
                ok=CONNECTED,
            ),
        )
    ),
)
