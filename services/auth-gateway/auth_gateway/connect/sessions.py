"""``/connect/sessions`` and ``/connect/session``: minting, reading and ending connect sessions.

Minting answers as Nango's current API does: ``{"data": {"token", "connect_link", "expires_at"}}``,
``connect_link`` being Keyway's Connect UI (``/connect-ui/``) with the token in its query, where
Nango's is its own Connect UI. The bodies are checked as strictly as Nango checks them
(``session_input.py``); a session carries its end user, organization, tags and webhook URL override
to the connection it writes (``operations/connections.py``). A reconnect session
(``/connect/sessions/reconnect``) may only authorize its one connection again, under the same id.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.query_issues import invalid_params, unrecognized_keys
from ..http.requests import json_object, validated_body
from ..http.serialize import js_iso
from ..openapi_spec import Handler, declare_auth
from ..operations.callers import live_session, secret_key, session_token
from ..operations.connect_sessions import SESSION_LIFETIME, ConnectSession
from ..operations.connection_tags import TAG_MAX_COUNT, end_user_tags
from ..resources import SETTINGS, STORES
from .session_input import ReconnectSessionBody, SessionBody, hoist_deprecated_webhook_url

__all__ = [
    "connect_link",
    "connect_session",
    "create_connect_session",
    "create_reconnect_session",
    "delete_connect_session",
    "get_connect_session",
]


# The end user and organization of a connect link (connect/links.py), as Keyway first took them.
class EndUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    email: str | None = None
    display_name: str | None = None


class Organization(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=255)
    display_name: str | None = None


@secret_key
async def create_connect_session(request: web.Request, env: Environment) -> web.Response:
    """``POST /connect/sessions`` (secret key) → ``{"data": {"token", "connect_link", "expires_at"}}``."""
    _no_query(request)
    body = validated_body(SessionBody, hoist_deprecated_webhook_url(await json_object(request)))
    await _require_integrations(request, env, body.allowed_integrations, body)
    end_user = body.end_user.model_dump(exclude_none=True) if body.end_user else {}
    organization = body.organization.model_dump(exclude_none=True) if body.organization else None
    session = ConnectSession(
        id="",
        environment=env.name,
        end_user=end_user,
        organization=organization,
        allowed_integrations=body.allowed_integrations or None,  # Nango: an empty list restricts nothing
        integrations_config_defaults=body.defaults_dump(),
        tags=_session_tags(end_user or None, organization, body.tags),
        webhook_url_override=body.webhook_url_override,
        overrides=body.overrides_dump(),
        expires_at=utcnow() + SESSION_LIFETIME,
    )
    return await _minted(request, session)


@secret_key
async def create_reconnect_session(request: web.Request, env: Environment) -> web.Response:
    """``POST /connect/sessions/reconnect`` (secret key): a session that may only authorize the named
    connection again (same id, same integration) → the answer of ``POST /connect/sessions``."""
    _no_query(request)
    body = validated_body(ReconnectSessionBody, hoist_deprecated_webhook_url(await json_object(request)))
    connection = await request.app[STORES].connections.get(env.name, body.integration_id, body.connection_id)
    if connection is None:
        raise ApiError("invalid_body", "ConnectionID or IntegrationId does not exists")
    await _require_integrations(request, env, None, body)
    stored_owner = dict(connection.end_user or {})
    if body.end_user is not None:
        if stored_owner.get("id") not in (None, body.end_user.id):
            raise ApiError(
                "invalid_body",
                "The request body is invalid.",
                errors=[
                    {
                        "code": "custom",
                        "message": "The connection belongs to another end user",
                        "path": ["end_user", "id"],
                    }
                ],
            )
        end_user = body.end_user.model_dump(exclude_none=True)
        organization = body.organization.model_dump(exclude_none=True) if body.organization else None
    else:  # the connection's own end user goes on owning it
        organization = stored_owner.pop("organization", None)
        if body.organization is not None:
            organization = body.organization.model_dump(exclude_none=True)
        end_user = stored_owner
    named = body.end_user is not None or body.organization is not None or body.tags is not None
    session = ConnectSession(
        id="",
        environment=env.name,
        end_user=end_user,
        organization=organization,
        allowed_integrations=[body.integration_id],
        connection_id=body.connection_id,
        integrations_config_defaults=body.defaults_dump(),
        # Tags and the webhook URL given here replace the connection's; none given, it keeps its own.
        tags=_session_tags(
            body.end_user.model_dump(exclude_none=True) if body.end_user else None,
            body.organization.model_dump(exclude_none=True) if body.organization else None,
            body.tags,
        )
        if named
        else None,
        webhook_url_override=body.webhook_url_override,
        overrides=body.overrides_dump(),
        expires_at=utcnow() + SESSION_LIFETIME,
    )
    return await _minted(request, session)


def _no_query(request: web.Request) -> None:
    """Nango's ``requireEmptyQuery``: these routes take their whole input in the body."""
    if issues := unrecognized_keys(request.query, ()):
        raise invalid_params(issues)


async def _require_integrations(
    request: web.Request, env: Environment, allowed: list[str] | None, body: SessionBody | ReconnectSessionBody
) -> None:
    """Every integration the body names exists, or a 400 listing each one that does not (as Nango does)."""
    named: list[tuple[list[str | int], str]] = [
        (["allowed_integrations", i], key) for i, key in enumerate(allowed or [])
    ]
    for field in ("integrations_config_defaults", "overrides"):
        named += [([field, key], key) for key in getattr(body, field) or {}]
    if not named:
        return
    existing = {integration.unique_key for integration in await request.app[STORES].integrations.list(env.name)}
    issues = [
        {"code": "custom", "message": "Integration does not exist", "path": path}
        for path, key in named
        if key not in existing
    ]
    if issues:
        raise ApiError("invalid_body", "The request body is invalid.", errors=issues)


def _session_tags(
    end_user: dict[str, Any] | None, organization: dict[str, Any] | None, given: dict[str, str] | None
) -> dict[str, str]:
    """The connection's tags: its end user's, then the body's (which win), 10 at most in all."""
    tags = {**end_user_tags(end_user, organization), **(given or {})}
    if len(tags) > TAG_MAX_COUNT:
        raise ApiError(
            "invalid_body",
            "The request body is invalid.",
            errors=[
                {
                    "code": "custom",
                    "message": f"Tags cannot contain more than {TAG_MAX_COUNT} keys "
                    "(the end user's and organization's fields count as tags too)",
                    "path": ["tags"],
                }
            ],
        )
    return tags


async def _minted(request: web.Request, session: ConnectSession) -> web.Response:
    token = await request.app[STORES].connect_sessions.create(session)
    data = {"token": token, "connect_link": connect_link(request, token), "expires_at": js_iso(session.expires_at)}
    return web.json_response({"data": data}, status=201)


def connect_link(request: web.Request, token: str) -> str:
    """Where the end user connects with this session: Keyway's Connect UI, the token in its query (as
    Nango's ``buildConnectUiSessionLink`` points at its own Connect UI, a path ending in ``/``)."""
    base = request.app[SETTINGS].public_url.rstrip("/")
    return f"{base}/connect-ui/?{urlencode({'session_token': token})}"


async def _session_from_header(request: web.Request) -> tuple[str, ConnectSession]:
    token = session_token(request)
    if token is None:
        raise ApiError(
            "invalid_connect_session_token", "Send the connect session token as 'Bearer <token>'.", status=401
        )
    return token, await live_session(request, token)


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
    """``GET /connect/session`` (connect session token): what the session allows, in Nango's current
    shape (``endUser``, ``connectUISettings``, and what the session sets), beside Keyway's first
    fields (``end_user``, ``organization``, ``expires_at``), which its earlier clients read."""
    _no_query(request)
    data: dict[str, Any] = {
        "endUser": _api_end_user(session),
        "connectUISettings": CONNECT_UI_SETTINGS,
    }
    if session.allowed_integrations is not None:
        data["allowed_integrations"] = session.allowed_integrations
    if session.integrations_config_defaults:
        data["integrations_config_defaults"] = {
            key: {
                "connection_config": value.get("connection_config"),
                "authorization_params": value.get("authorization_params"),
            }
            for key, value in session.integrations_config_defaults.items()
        }
    if session.connection_id is not None:
        data["isReconnecting"] = True
    if session.overrides:
        data["overrides"] = session.overrides
    data["websocketsPath"] = "/"  # Nango sends it when self-hosted: where its SDK's WebSocket is
    data |= {
        "end_user": session.end_user,
        "organization": session.organization,
        "expires_at": js_iso(session.expires_at),
    }
    return web.json_response({"data": data})


# Nango's defaults (connect-ui-settings.service.ts) when an environment set none; Keyway has no such settings.
CONNECT_UI_SETTINGS: dict[str, Any] = {
    "showWatermark": False,
    "defaultTheme": "system",
    "theme": {"light": {"primary": "#00B2E3"}, "dark": {"primary": "#00B2E3"}},
}


def _api_end_user(session: ConnectSession) -> dict[str, Any] | None:
    """Nango's ``ApiEndUser``: every field present, null when not given."""
    end_user = session.end_user
    if not end_user.get("id"):
        return None
    organization = session.organization
    return {
        "id": end_user["id"],
        "display_name": end_user.get("display_name"),
        "email": end_user.get("email"),
        "tags": end_user.get("tags"),
        "organization": {"id": organization["id"], "display_name": organization.get("display_name")}
        if organization is not None
        else None,
    }


@connect_session
async def delete_connect_session(request: web.Request, token: str, _session: ConnectSession) -> web.Response:
    """``DELETE /connect/session``: end the session early."""
    await request.app[STORES].connect_sessions.delete(token)
    return web.Response(status=204)
