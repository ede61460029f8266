"""What the popup flows share: the starter's input, the starter and finisher signatures, and the
success report. ``connect.oauth`` imports the flows to register them and each flow imports this module,
which imports no flow, so neither side has to import the other back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from keyway_shared.credentials import Credentials
from keyway_shared.events import AuthMode
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..operations.connections import store_connection
from ..operations.flow_errors import FlowError
from ..operations.flow_sessions import OAuthSession
from ..resources import CATALOG, STORES
from .flow_pages import success_page
from .frontend_request import FrontendRequest
from .link_outcome import outcome_redirect
from .protocol.browser_binding import BrowserBinding
from .protocol.flow_overrides import session_scopes
from .ws import WS_HUB

__all__ = [
    "Finisher",
    "PopupStart",
    "Starter",
    "finish_with_connection",
    "flow_config",
    "reload_integration",
    "report_success",
]


@dataclass(frozen=True, kw_only=True)
class PopupStart:
    """What a popup flow's first step gets: the authenticated request and what it names."""

    request: web.Request
    env: Environment
    front: FrontendRequest
    integration: Integration
    template: ProviderTemplate
    ws_client_id: str | None
    return_url: str | None = None  # a connect link's redirect flow (``redirect=1``)
    # The starting browser's nonce: the starter keeps its digest in the flow's session.
    browser_binding: BrowserBinding = field(default_factory=BrowserBinding.new)


# Popup flows by auth mode: a starter answers /oauth/connect (a redirect), a finisher the callback.
Starter = Callable[[PopupStart], Awaitable[web.StreamResponse]]
Finisher = Callable[[web.Request, OAuthSession, Environment], Awaitable[web.StreamResponse]]


def _scope_list(value: object) -> list[str]:
    return [s for s in str(value).split(",") if s]


def flow_config(request: web.Request, front: FrontendRequest) -> dict[str, Any]:
    """A flow's first connection config: ``params[...]``, scopes as lists, the connect session's scopes first."""
    config: dict[str, Any] = dict(front.connection_config)
    scopes, user_scopes = session_scopes(front)
    if scopes is not None:
        config["oauth_scopes_override"] = scopes
    elif "oauth_scopes_override" in config:
        config["oauth_scopes_override"] = _scope_list(config["oauth_scopes_override"])
    user_scope = user_scopes or request.query.get("user_scope")
    if user_scope:
        config["user_scope"] = _scope_list(user_scope)
    return config


async def reload_integration(
    request: web.Request, env: Environment, session: OAuthSession
) -> tuple[Integration, ProviderTemplate]:
    """The integration as it is now: it may have changed while the user was at the provider."""
    integration = await request.app[STORES].integrations.get(env.name, session.provider_config_key)
    template = request.app[CATALOG].get(session.provider)
    if integration is None or template is None:
        raise FlowError("provider_config_err", "The integration was deleted during the authorization.")
    return integration, template


async def report_success(request: web.Request, session: OAuthSession, *, pending: bool = False) -> web.StreamResponse:
    """Tell the SDK the flow succeeded: a WebSocket frame, and the page the popup closes itself with
    (or, for a connect link, the redirect back to the app)."""
    env = await request.app[STORES].environments.get(session.environment) if session.return_url else None
    if env is not None and session.return_url is not None:
        return outcome_redirect(
            env,
            session.return_url,
            provider_config_key=session.provider_config_key,
            connection_id=session.connection_id,
        )
    await request.app[WS_HUB].notify(
        session.ws_client_id,
        {
            "message_type": "success",
            "provider_config_key": session.provider_config_key,
            "connection_id": session.connection_id,
            "is_pending": pending,
        },
    )
    return success_page(
        legacy=session.ws_client_id is None,
        provider_config_key=session.provider_config_key,
        connection_id=session.connection_id,
    )


async def finish_with_connection(
    request: web.Request,
    session: OAuthSession,
    *,
    provider: str,
    auth_mode: AuthMode,
    credentials: Credentials,
    connection_config: dict[str, Any],
    expires_at: datetime | None = None,
    pending: bool = False,
) -> web.StreamResponse:
    """A popup flow's last step: fill what the template's post-connection program asks of the
    provider, store the connection the flow's session names (spending its connect session), then
    tell the SDK."""
    await store_connection(
        request.app,
        environment=session.environment,
        provider_config_key=session.provider_config_key,
        provider=provider,
        auth_mode=auth_mode,
        connection_id=session.connection_id,
        credentials=credentials,
        connection_config=connection_config,
        expires_at=expires_at,
        operation_id=session.operation_id,
        connect_session_id=session.secrets.get("connect_session"),
    )
    return await report_success(request, session, pending=pending)
