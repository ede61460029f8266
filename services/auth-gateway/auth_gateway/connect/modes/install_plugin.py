"""INSTALL_PLUGIN: a plugin installed from its marketplace (Crisp's), as Nango's ``oauth.controller.ts``
(``installPluginRequest``, ``installPluginCallback``) runs it, through the popup (``/oauth/connect``).

The integration holds the plugin: its install page (``app_link``) and the plugin's own token, which
authenticates every call for every connection (Crisp: an identifier and key sent as Basic, with the
template's ``X-Crisp-Tier: plugin`` header). The popup goes to ``<app_link>?payload=<state>``; once the
plugin is installed, the marketplace sends the browser to the callback with that ``payload`` and the
install's ids (the template's ``redirect_uri_metadata``, Crisp's ``website_id``), which become the
connection's configuration. The credentials stored are the template's ``auth_type`` (BASIC) with the
plugin's token, checked first with the template's verification call, as Nango checks them.

Unlike Nango, whose dashboard keeps the plugin key base64-encoded in ``custom.password`` and then sends
that encoding as the Basic password, Keyway keeps and sends the key as the integration gave it.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from aiohttp import web

from keyway_shared.credentials.shapes import BasicCredentials
from keyway_shared.store import Environment, Integration

from ...http.errors import ApiError
from ...operations.environment import callback_url
from ...operations.flow_errors import FlowError
from ...operations.flow_sessions import OAuthSession
from ...resources import HTTP, SETTINGS, STORES
from ..popup_common import PopupStart, finish_with_connection, reload_integration
from ..protocol.oauth2 import pick_metadata
from ..verification import verify_credentials
from .spec import AuthModeSpec, PopupFlow

__all__ = ["SPEC", "finish_install", "start_install"]


def _plugin_token(integration: Integration) -> BasicCredentials:
    username, password = integration.custom.get("username"), integration.custom.get("password")
    if not username or not password:
        raise FlowError(
            "provider_config_err",
            "The integration has no plugin token: set custom.username and custom.password (Crisp: the "
            "plugin's identifier and key).",
        )
    return BasicCredentials(username=username, password=password)


def _install_url(app_link: str, state: str) -> str:
    parts = urlsplit(app_link)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise FlowError("provider_config_err", "The integration's app link is not an http(s) URL.")
    query = "&".join(part for part in (parts.query, urlencode({"payload": state})) if part)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


async def start_install(start: PopupStart) -> web.StreamResponse:
    """Send the browser to the plugin's install page, with this flow's state as ``payload``."""
    request, env, front, integration = start.request, start.env, start.front, start.integration
    if not integration.app_link:
        raise FlowError("provider_config_err", "The integration has no app link (the plugin's install page).")
    _plugin_token(integration)  # a missing token fails now, not after the install
    session = OAuthSession(
        environment=env.name,
        provider_config_key=front.provider_config_key,
        provider=integration.provider,
        auth_mode=start.template.auth_mode,
        connection_id=front.connection_id,
        callback_url=callback_url(request.app, env),
        operation_id=front.operation_id,
        connection_config=dict(front.connection_config),
        ws_client_id=start.ws_client_id,
        return_url=start.return_url,
        browser_binding=start.browser_binding.digest,
    )
    if front.connect_session_id:
        session.secrets["connect_session"] = front.connect_session_id
    await request.app[STORES].oauth_sessions.create(session)
    raise web.HTTPFound(_install_url(integration.app_link, session.id))


async def finish_install(request: web.Request, session: OAuthSession, env: Environment) -> web.StreamResponse:
    """The install's ids from the callback, the plugin's token checked, the connection stored."""
    integration, template = await reload_integration(request, env, session)
    credentials = _plugin_token(integration)
    # The callback's query is the browser's to write: its ids never fill a URL or header of the template.
    steering = template.connection_config_variables()
    from_callback = pick_metadata(dict(request.query), template.redirect_uri_metadata)
    config = {name: value for name, value in from_callback.items() if name not in steering}
    config |= session.connection_config
    try:
        await verify_credentials(
            request.app[HTTP],
            template,
            credentials,
            config,
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    except ApiError as err:
        raise FlowError(err.code, err.message or err.code) from None
    return await finish_with_connection(
        request,
        session,
        provider=integration.provider,
        auth_mode="INSTALL_PLUGIN",
        credentials=credentials,
        connection_config=config,
    )


SPEC = AuthModeSpec(mode="INSTALL_PLUGIN", flow=PopupFlow(start=start_install, finish=finish_install))
