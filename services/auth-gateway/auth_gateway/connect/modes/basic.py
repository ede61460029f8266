"""BASIC: a user name and password the person types (spec §2.5), ``POST /api-auth/basic/{key}`` from
the frontend SDK, or a connect link's form; sent upstream as ``Authorization: Basic``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.credentials.shapes import BasicCredentials
from keyway_shared.store import Environment

from ... import openapi_schemas as schema
from ...http.errors import ApiError
from ...openapi_spec import Route
from ..api_auth import connect_checked
from ..frontend_request import FrontendRequest, public_key
from ..link_page import LinkField
from .spec import CONNECT_PARAMS, CONNECTED, AuthModeSpec, FormFlow, LinkForm

__all__ = ["SPEC", "basic_auth"]


def _from_body(body: dict[str, Any]) -> BasicCredentials:
    username, password = body.get("username", ""), body.get("password", "")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ApiError("invalid_body", "'username' and 'password' must be strings.")
    return BasicCredentials(username=username, password=password)


def _from_link_form(fields: dict[str, str]) -> BasicCredentials:
    return BasicCredentials(username=fields.get("username", ""), password=fields.get("password", ""))


@public_key
async def basic_auth(request: web.Request, env: Environment, front: FrontendRequest) -> web.Response:
    return await connect_checked(request, env, front, "BASIC", _from_body)


SPEC = AuthModeSpec(
    mode="BASIC",
    flow=FormFlow(
        routes=(
            Route(
                "POST",
                "/api-auth/basic/{providerConfigKey}",
                basic_auth,
                "Connect with Basic credentials",
                "connect",
                "public_key",
                params=CONNECT_PARAMS,
                body=schema.BASIC,
                ok=CONNECTED,
            ),
        ),
        link_form=LinkForm(
            fields=(
                LinkField(label="Username", name="username"),
                LinkField(label="Password", name="password", kind="password"),
            ),
            credentials=_from_link_form,
        ),
    ),
)
