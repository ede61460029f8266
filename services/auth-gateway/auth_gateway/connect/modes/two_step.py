"""TWO_STEP: ``POST /auth/two-step/{key}`` from the frontend SDK (0.71.10's ``auth(key, id, {credentials:
{type: 'TWO_STEP', ...fields}, params})``) or the Connect UI: the person's fields (those the template's
``credentials`` declare: an API key, a client id and secret, a user name and password, ...) are
exchanged now at the template's token request (``keyway_shared.credentials.two_step``), and the
connection stores the token with the fields that mint the next one.

The body is an object of text fields, as Nango's loose schema takes it (``type`` and the SDK's
``assertionOption`` aside); a hidden field the template gives a ``default_value`` is filled when
absent, a field with a ``pattern`` must match it, and a field the integration holds itself
(``integration_config``) is the integration's, not the person's. ``assertionOption`` (the key a
client assertion is signed with, when the person gives it) is used now and never stored. The token response's
``token_response_metadata`` fields join the connection configuration, as in Nango's ``postTwoStep.ts``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from keyway_shared.credentials.two_step import mint_two_step_token, preconfigured_fields
from keyway_shared.events import utcnow
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment

from ...http.errors import ApiError
from ...http.requests import json_object
from ...openapi_spec import Route
from ...resources import HTTP, SETTINGS
from ..credential_flow import (
    CredentialAttempt,
    announce_failures,
    check_connection_config,
    connected,
    integration_in_mode,
)
from ..frontend_request import FrontendRequest, check_hmac, public_key
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow

__all__ = ["SPEC", "TWO_STEP_BODY", "two_step_auth"]

TWO_STEP_BODY: dict[str, Any] = {
    "type": "object",
    "description": "The person's credentials, named as the provider template's `credentials` fields",
    "properties": {
        "type": {"type": "string", "enum": ["TWO_STEP"]},
        "assertionOption": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": {"type": "string"},
}
_NOT_FIELDS = ("type", "assertionOption")
_OPTION = "assertionOption."  # a form's flat spelling of assertionOption's keys (the Connect UI, the dashboard)


def _assertion_option(body: dict[str, Any]) -> dict[str, str]:
    """``assertionOption`` as the SDK sends it (an object), or flat as a form posts it."""
    given = body.get("assertionOption")
    options = given if given is not None else {}
    if not isinstance(options, dict) or not all(isinstance(value, str) for value in options.values()):
        raise ApiError("invalid_body", "'assertionOption' must be an object of strings.")
    flat = {name.removeprefix(_OPTION): value for name, value in body.items() if name.startswith(_OPTION)}
    if not all(isinstance(value, str) for value in flat.values()):
        raise ApiError("invalid_body", "Each assertionOption field must be a string.")
    return {**options, **{name: value for name, value in flat.items() if value}}


def _fields(template: ProviderTemplate, body: dict[str, Any]) -> dict[str, str]:
    """The body's fields, defaults filled and patterns checked; never a value in an error."""
    fields: dict[str, str] = {}
    for name, value in body.items():
        if name in _NOT_FIELDS or name.startswith(_OPTION):
            continue
        if not isinstance(value, str):
            raise ApiError("invalid_body", f"The credential '{name}' must be a string.")
        if value:
            fields[name] = value
    for name, spec in template.credentials.items():
        if not isinstance(spec, dict):
            continue
        default = spec.get("default_value")
        if name not in fields and isinstance(default, str) and default:
            fields[name] = default
        pattern = spec.get("pattern")
        if name in fields and isinstance(pattern, str) and pattern:
            try:
                matched = re.search(pattern, fields[name]) is not None
            except re.error:
                matched = False  # a pattern Python cannot read guards nothing: refuse rather than pass
            if not matched:
                raise ApiError(
                    "invalid_two_step_credentials",
                    f"The credential '{name}' does not match the pattern the provider declares ({pattern}).",
                )
    return fields


@public_key
async def two_step_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    attempt = CredentialAttempt(env=env, front=front, mode="TWO_STEP")
    async with announce_failures(request, attempt):
        body = await json_object(request)
        # Nango's route names the connection itself when the caller does not; the HMAC covers the id sent.
        check_hmac(env, front)
        if not front.connection_id:
            front.connection_id = str(uuid.uuid4())
        integration, template = await integration_in_mode(request, attempt)
        fields = _fields(template, body)
        options = _assertion_option(body)
        check_connection_config(template, front.connection_config)
        minted = await mint_two_step_token(
            request.app[HTTP],
            template=template,
            fields=fields,
            connection_config=front.connection_config,
            now=utcnow(),
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
            preconfigured=preconfigured_fields(template, integration.custom),
            assertion_option=options,
        )
    return await connected(
        request,
        env,
        front,
        provider=integration.provider,
        auth_mode="TWO_STEP",
        credentials=minted.credentials,
        connection_config={**front.connection_config, **minted.metadata},
        expires_at=minted.expires_at,
    )


SPEC = AuthModeSpec(
    mode="TWO_STEP",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/auth/two-step/{providerConfigKey}",
                two_step_auth,
                "Connect with credentials exchanged for a short-lived token",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=TWO_STEP_BODY,
                ok=CONNECTED,
                errors=(502,),
            ),
        )
    ),
)
