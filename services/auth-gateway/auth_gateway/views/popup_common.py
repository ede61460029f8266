"""What the popup flows registered in ``views.oauth`` (OAUTH1, APP, CUSTOM) share."""

from __future__ import annotations

from aiohttp import web

from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..oauth.flow_errors import FlowError
from ..oauth.sessions import OAuthSession
from ..resources import CATALOG, SETTINGS, STORES

__all__ = ["callback_url", "reload_integration", "report_success"]


def callback_url(request: web.Request, env: Environment) -> str:
    """The environment's own callback URL if it set one, else the gateway's ``/oauth/callback``."""
    return env.callback_url or request.app[SETTINGS].callback_url


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
