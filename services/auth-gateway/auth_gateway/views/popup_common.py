"""What the popup flows registered in ``views.oauth`` (OAUTH1, APP, CUSTOM) share."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..frontend import FrontendRequest
from ..oauth.flow_errors import FlowError
from ..oauth.flow_overrides import session_scopes
from ..oauth.sessions import OAuthSession
from ..resources import CATALOG, SETTINGS, STORES

__all__ = ["callback_url", "flow_config", "reload_integration", "report_success"]


def callback_url(request: web.Request, env: Environment) -> str:
    """The environment's own callback URL if it set one, else the gateway's ``/oauth/callback``."""
    return env.callback_url or request.app[SETTINGS].callback_url


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
    # views.oauth imports the flows to register them, so its own names are imported when called.
    from .oauth import report_success as report

    return await report(request, session, pending=pending)
