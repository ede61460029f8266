"""API_KEY: a key the person types (spec §2.5), ``POST /api-auth/api-key/{key}`` from the frontend
SDK, or a connect link's form; the template's headers or query carry it to the provider."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.credentials.shapes import ApiKeyCredentials
from keyway_shared.store import Environment

from ... import openapi_schemas as schema
from ...http.errors import ApiError
from ...openapi_spec import Route
from ..api_auth import connect_checked
from ..frontend_request import FrontendRequest, public_key
from ..link_page import LinkField
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow, LinkForm

__all__ = ["SPEC", "api_key_auth"]


def _from_body(body: dict[str, Any]) -> ApiKeyCredentials:
    api_key = body.get("apiKey")
    if not isinstance(api_key, str) or not api_key:
        raise ApiError("missing_api_key", "The request body must have a non-empty 'apiKey' string.")
    return ApiKeyCredentials(api_key=api_key)


def _from_link_form(fields: dict[str, str]) -> ApiKeyCredentials:
    api_key = fields.get("apiKey", "").strip()
    if not api_key:
        raise ApiError("missing_api_key", "Enter the API key.")
    return ApiKeyCredentials(api_key=api_key)


@public_key
async def api_key_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    return await connect_checked(request, env, front, "API_KEY", _from_body)


SPEC = AuthModeSpec(
    mode="API_KEY",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/api-auth/api-key/{providerConfigKey}",
                api_key_auth,
                "Connect with an API key",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=schema.API_KEY,
                ok=CONNECTED,
            ),
        ),
        link_form=LinkForm(
            fields=(LinkField(label="API key", name="apiKey", kind="password"),), credentials=_from_link_form
        ),
    ),
)
