"""``/connect/sessions`` and ``/connect/session``: minting, reading and ending connect sessions."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.requests import json_object, validated_body
from ..http.serialize import js_iso
from ..openapi_spec import Handler, declare_auth
from ..operations.callers import secret_key
from ..operations.connect_sessions import SESSION_LIFETIME, TOKEN_PREFIX, ConnectSession
from ..resources import STORES

__all__ = ["connect_session", "create_connect_session", "delete_connect_session", "get_connect_session"]


class EndUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    email: str | None = None
    display_name: str | None = None


class Organization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    display_name: str | None = None


class IntegrationDefaults(BaseModel):
    """Nango's per-integration defaults: what the OAuth flow uses whatever the browser sends."""

    model_config = ConfigDict(extra="forbid")
    user_scopes: str | None = None
    authorization_params: dict[str, str] | None = None
    connection_config: dict[str, str] | None = None  # oauth_client_*_override: "" lets the browser give it


class CreateSessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    end_user: EndUser
    organization: Organization | None = None
    allowed_integrations: list[str] | None = Field(default=None, min_length=1)
    integrations_config_defaults: dict[str, IntegrationDefaults] | None = None


@secret_key
async def create_connect_session(request: web.Request, env: Environment) -> web.Response:
    """``POST /connect/sessions`` (secret key) → ``{"data": {"token", "expires_at"}}``."""
    body = validated_body(CreateSessionBody, await json_object(request))
    stores = request.app[STORES]
    for key in body.allowed_integrations or []:
        if await stores.integrations.get(env.name, key) is None:
            raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    session = ConnectSession(
        id="",
        environment=env.name,
        end_user=body.end_user.model_dump(exclude_none=True),
        organization=body.organization.model_dump(exclude_none=True) if body.organization else None,
        allowed_integrations=body.allowed_integrations,
        integrations_config_defaults={k: v.model_dump(exclude_none=True) for k, v in defaults.items()}
        if (defaults := body.integrations_config_defaults)
        else None,
        expires_at=utcnow() + SESSION_LIFETIME,
    )
    token = await stores.connect_sessions.create(session)
    return web.json_response({"data": {"token": token, "expires_at": js_iso(session.expires_at)}}, status=201)


async def _session_from_header(request: web.Request) -> tuple[str, ConnectSession]:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        raise ApiError(
            "invalid_connect_session_token", "Send the connect session token as 'Bearer <token>'.", status=401
        )
    session = await request.app[STORES].connect_sessions.find(token)
    if session is None:
        raise ApiError("unknown_connect_session_token", "The connect session is unknown, spent or expired.", status=401)
    return token, session


ConnectSessionView = Callable[[web.Request, str, ConnectSession], Awaitable[web.StreamResponse]]


def connect_session(view: ConnectSessionView) -> Handler:
    """The view of a ``connect_session`` route: called as ``view(request, token, session)`` once the
    ``Authorization: Bearer <token>`` header names a live connect session."""

    @functools.wraps(view)
    async def handler(request: web.Request) -> web.StreamResponse:
        return await view(request, *await _session_from_header(request))

    return declare_auth("connect_session", handler)


@connect_session
async def get_connect_session(request: web.Request, _token: str, session: ConnectSession) -> web.Response:
    """``GET /connect/session`` (connect session token): what the session allows."""
    return web.json_response(
        {
            "data": {
                "end_user": session.end_user,
                "organization": session.organization,
                "allowed_integrations": session.allowed_integrations,
                "expires_at": js_iso(session.expires_at),
            }
        }
    )


@connect_session
async def delete_connect_session(request: web.Request, token: str, _session: ConnectSession) -> web.Response:
    """``DELETE /connect/session``: end the session early."""
    await request.app[STORES].connect_sessions.delete(token)
    return web.Response(status=204)
