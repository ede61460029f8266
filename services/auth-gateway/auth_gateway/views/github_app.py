"""GitHub App popup flows (spec §2.4, §5.9), registered in ``views.oauth``: ``APP`` (installation,
then an installation token) and ``CUSTOM`` (github-app-oauth: installation with user authorization,
so the callback also brings an OAuth code).

APP integrations keep the app id in ``oauth_client_id`` and the private key in ``oauth_client_secret``;
CUSTOM ones keep the OAuth client there and the app in ``custom.app_id`` / ``custom.private_key``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from keyway_shared.credentials import TokenRequestError
from keyway_shared.credentials.github_app import app_jwt, installation_token
from keyway_shared.credentials.jwt_signing import InvalidPrivateKeyError
from keyway_shared.events import utcnow
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..connect import store_connection
from ..oauth.flow_errors import FlowError
from ..oauth.oauth2 import exchange_code, resolve_url
from ..oauth.sessions import OAuthSession
from ..resources import HTTP, SETTINGS, STORES
from .popup_common import callback_url, reload_integration, report_success

if TYPE_CHECKING:
    from .oauth import PopupStart

__all__ = ["finish_app", "finish_custom", "start_app"]


def _app_key(integration: Integration, mode: str) -> tuple[str, str]:
    """(app id, private key) of the GitHub App behind the integration."""
    if mode == "APP":
        app_id, private_key = integration.oauth_client_id, integration.oauth_client_secret
        where = "oauth_client_id and oauth_client_secret"
    else:
        app_id, private_key = integration.custom.get("app_id"), integration.custom.get("private_key")
        where = "custom.app_id and custom.private_key"
    if not app_id or not private_key:
        raise FlowError("provider_config_err", f"The integration needs the GitHub App's id and private key ({where}).")
    return app_id, private_key


async def start_app(start: PopupStart) -> web.StreamResponse:
    """Send the browser to the app's installation page; GitHub comes back with the session id as ``state``."""
    request, env, front = start.request, start.env, start.front
    integration, template = start.integration, start.template
    if not integration.app_link:
        raise FlowError("provider_config_err", "The integration has no app link (https://github.com/apps/<app>).")
    if template.auth_mode == "CUSTOM" and (not integration.oauth_client_id or not integration.oauth_client_secret):
        raise FlowError("provider_config_err", "The integration has no OAuth client id or client secret.")
    app_id, private_key = _app_key(integration, template.auth_mode)
    try:
        app_jwt(app_id=app_id, private_key=private_key, now=utcnow())  # a bad key fails now, not after installing
    except InvalidPrivateKeyError as exc:
        raise FlowError("provider_config_err", f"The GitHub App's private key is unusable: {exc.description}") from None
    session = OAuthSession(
        environment=env.name,
        provider_config_key=front.provider_config_key,
        provider=integration.provider,
        auth_mode=template.auth_mode,
        connection_id=front.connection_id,
        callback_url=callback_url(request, env),
        operation_id=front.operation_id,
        connection_config=dict(front.connection_config),
        ws_client_id=start.ws_client_id,
        return_url=start.return_url,
    )
    if front.connect_session_id:
        session.secrets["connect_session"] = front.connect_session_id
    await request.app[STORES].oauth_sessions.create(session)
    raise web.HTTPFound(f"{integration.app_link.rstrip('/')}/installations/new?state={session.id}")


def _installation_id(request: web.Request, session: OAuthSession) -> str | None:
    value = request.query.get("installation_id") or session.connection_config.get("installation_id")
    if value is None or value == "":
        return None
    value = str(value)
    if not value.isdigit():  # it becomes part of the token URL's path
        raise FlowError("callback_err", "GitHub's callback has an installation_id that is not a number.")
    return value


async def _installation_credentials(
    request: web.Request, template: ProviderTemplate, config: dict[str, Any], app_id: str, private_key: str
) -> tuple[dict[str, Any], Any]:
    token_url = resolve_url(template.token_url_for("APP"), config, what="installation token URL")
    try:
        return await installation_token(
            request.app[HTTP],
            token_url=token_url,
            app_id=app_id,
            private_key=private_key,
            now=utcnow(),
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    except TokenRequestError as exc:
        raise FlowError("token_err", exc.description) from None


async def finish_app(request: web.Request, session: OAuthSession, env: Environment) -> web.StreamResponse:
    """GitHub's return to ``/app-auth/connect`` after the installation."""
    if request.query.get("setup_action") == "request":
        raise FlowError(
            "wrong_auth_mode",
            "The installation waits for an organization owner's approval (setup_action=request); "
            "connect again once it is approved.",
        )
    installation_id = _installation_id(request, session)
    if installation_id is None:
        raise FlowError("callback_err", "GitHub's callback has no installation_id.")
    integration, template = await reload_integration(request, env, session)
    app_id, private_key = _app_key(integration, "APP")
    config = {**session.connection_config, "installation_id": installation_id, "app_id": app_id}
    credentials, expires_at = await _installation_credentials(request, template, config, app_id, private_key)
    await store_connection(
        request.app,
        environment=env.name,
        provider_config_key=session.provider_config_key,
        provider=integration.provider,
        auth_mode="APP",
        connection_id=session.connection_id,
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
        operation_id=session.operation_id,
        connect_session_id=session.secrets.get("connect_session"),
    )
    return await report_success(request, session)


async def finish_custom(request: web.Request, session: OAuthSession, env: Environment) -> web.StreamResponse:
    """The code is exchanged first (it proves the user); then, with an installation, the app token.

    Without an installation id (an organization owner must still approve), the connection is stored
    pending with the user's OAuth token, and the SDK is told ``is_pending``.
    """
    code = request.query.get("code")
    if not code:
        raise FlowError("callback_err", "The provider's callback has no authorization code.")
    installation_id = _installation_id(request, session)
    integration, template = await reload_integration(request, env, session)
    if not integration.oauth_client_id or not integration.oauth_client_secret:
        raise FlowError("provider_config_err", "The integration has no OAuth client id or client secret.")
    app_id, private_key = _app_key(integration, "CUSTOM")
    token_url = resolve_url(template.token_url_for("OAUTH2"), session.connection_config, what="token URL")
    try:
        user_credentials, user_expires_at, _raw = await exchange_code(
            request.app[HTTP],
            template=template,
            token_url=token_url,
            code=code,
            redirect_uri=session.callback_url,
            code_verifier=None,
            client_id=integration.oauth_client_id,
            client_secret=integration.oauth_client_secret,
            now=utcnow(),
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    except TokenRequestError as exc:
        raise FlowError("token_err", exc.description) from None
    if installation_id is None:
        config: dict[str, Any] = {**session.connection_config, "app_id": app_id, "pending": True}
        credentials, expires_at = user_credentials, user_expires_at
    else:
        config = {**session.connection_config, "installation_id": installation_id, "app_id": app_id}
        credentials, expires_at = await _installation_credentials(request, template, config, app_id, private_key)
    await store_connection(
        request.app,
        environment=env.name,
        provider_config_key=session.provider_config_key,
        provider=integration.provider,
        auth_mode="CUSTOM",
        connection_id=session.connection_id,
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
        operation_id=session.operation_id,
        connect_session_id=session.secrets.get("connect_session"),
    )
    return await report_success(request, session, pending=installation_id is None)
