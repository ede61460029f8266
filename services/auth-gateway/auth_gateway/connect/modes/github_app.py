"""GitHub App popup flows (spec §2.4, §5.9), the flows of two modes (``app``, ``custom``): ``APP``
(installation, then an installation token) and ``CUSTOM`` (github-app-oauth: installation with user
authorization, so the callback also brings an OAuth code).

APP integrations keep the app id in ``oauth_client_id`` and the private key in ``oauth_client_secret``;
CUSTOM ones keep the OAuth client there and the app in ``custom.app_id`` / ``custom.private_key``.

The ``installation_id`` a browser brings back is a claim, not a proof: ids are small integers, and
the app's key mints a token for any installation of the app. So no token is minted before GitHub
confirms the installation is this flow's: with a user's authorization (CUSTOM), it must be among the
installations GitHub lists for that user; without one (APP), it must be an installation of this app
that GitHub shows as created or changed since this flow (the ``state`` of a live flow of ours) began.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from keyway_shared.credentials import TokenRequestError
from keyway_shared.credentials.github_app import (
    GitHubApiUrls,
    app_installation,
    app_jwt,
    find_user_installation,
    github_api_urls,
    installation_token,
)
from keyway_shared.credentials.jwt_signing import InvalidPrivateKeyError
from keyway_shared.credentials.shapes import AppCredentials, Credentials
from keyway_shared.events import utcnow
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ...operations.environment import callback_url
from ...operations.flow_errors import FlowError
from ...operations.flow_sessions import OAuthSession
from ...resources import HTTP, SETTINGS, STORES
from ..popup_common import PopupStart, finish_with_connection, reload_integration
from ..protocol.oauth2 import exchange_code, resolve_url

__all__ = ["finish_app", "finish_custom", "start_app"]

# GitHub's timestamps are whole seconds from another clock: a change this long before the flow began
# still counts as the flow's. Kept short, as it is the window in which someone else's change would too.
_CLOCK_SKEW = timedelta(seconds=60)


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
    raise web.HTTPFound(f"{integration.app_link.rstrip('/')}/installations/new?state={session.id}")


def _as_installation_id(value: object) -> str | None:
    """The id in canonical form (GitHub lists ids as numbers), None when there is none."""
    if value is None or value == "":
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit() and len(text) <= 20):  # it becomes part of the token URL's path
        raise FlowError("callback_err", "GitHub's callback has an installation_id that is not a number.")
    return str(int(text))


def _api_urls(token_url: str, installation_id: str) -> GitHubApiUrls:
    try:
        return github_api_urls(token_url, installation_id)
    except ValueError as exc:
        raise FlowError("provider_config_err", f"Keyway cannot check the installation with GitHub: {exc}.") from None


async def _prove_installed_by_flow(
    request: web.Request, session: OAuthSession, token_url: str, installation_id: str, app_id: str, private_key: str
) -> None:
    """APP: the installation is this app's, and GitHub shows it created or changed since the flow began."""
    try:
        installation = await app_installation(
            request.app[HTTP],
            installation_url=_api_urls(token_url, installation_id).installation,
            app_id=app_id,
            private_key=private_key,
            now=utcnow(),
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    except TokenRequestError as exc:
        if exc.status == 404:
            raise FlowError("callback_err", f"GitHub knows no installation {installation_id} of this app.") from None
        raise FlowError("token_err", f"GitHub could not confirm the installation: {exc.description}") from None
    if str(installation.get("app_id")) != app_id:
        raise FlowError("callback_err", f"The installation {installation_id} is not an installation of this app.")
    changed = _latest_change(installation)
    if changed is None or changed < session.created_at - _CLOCK_SKEW:
        raise FlowError(
            "callback_err",
            f"The installation {installation_id} was not created or changed during this connection flow, so "
            "nothing shows it is yours: install the app, or change its installation, from the connect window.",
        )


def _latest_change(installation: dict[str, Any]) -> datetime | None:
    stamps = []
    for key in ("created_at", "updated_at"):
        value = installation.get(key)
        try:
            stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            stamp = None
        if stamp is not None and stamp.tzinfo is not None:
            stamps.append(stamp)
    return max(stamps, default=None)


async def _prove_user_installation(
    request: web.Request, token_url: str, installation_id: str, app_id: str, user_token: str
) -> None:
    """CUSTOM: the user who just authorized can access the installation (GitHub's advice for setup URLs)."""
    try:
        installation = await find_user_installation(
            request.app[HTTP],
            user_installations_url=_api_urls(token_url, installation_id).user_installations,
            user_token=user_token,
            installation_id=installation_id,
            timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
        )
    except TokenRequestError as exc:
        raise FlowError("token_err", f"GitHub could not list the user's installations: {exc.description}") from None
    if installation is None:
        raise FlowError(
            "callback_err",
            f"The installation {installation_id} is not among the installations of this app that the "
            "authorizing GitHub user can access.",
        )
    if str(installation.get("app_id", app_id)) != app_id:
        raise FlowError("callback_err", f"The installation {installation_id} is not an installation of this app.")


def _installation_token_url(template: ProviderTemplate, config: dict[str, Any]) -> str:
    return resolve_url(template.token_url_for("APP"), config, what="installation token URL")


async def _installation_credentials(
    request: web.Request, token_url: str, app_id: str, private_key: str
) -> tuple[AppCredentials, datetime | None]:
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
    # Only GitHub's redirect may name the installation here, never the connect request's params[...].
    installation_id = _as_installation_id(request.query.get("installation_id"))
    if installation_id is None:
        raise FlowError("callback_err", "GitHub's callback has no installation_id.")
    integration, template = await reload_integration(request, env, session)
    app_id, private_key = _app_key(integration, "APP")
    config = {**session.connection_config, "installation_id": installation_id, "app_id": app_id}
    token_url = _installation_token_url(template, config)
    await _prove_installed_by_flow(request, session, token_url, installation_id, app_id, private_key)
    credentials, expires_at = await _installation_credentials(request, token_url, app_id, private_key)
    return await finish_with_connection(
        request,
        session,
        provider=integration.provider,
        auth_mode="APP",
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
    )


async def finish_custom(request: web.Request, session: OAuthSession, env: Environment) -> web.StreamResponse:
    """The code is exchanged first (it proves the user); then, with an installation, the app token.

    Without an installation id (an organization owner must still approve), the connection is stored
    pending with the user's OAuth token, and the SDK is told ``is_pending``.
    """
    code = request.query.get("code")
    if not code:
        raise FlowError("callback_err", "The provider's callback has no authorization code.")
    installation_id = _as_installation_id(
        request.query.get("installation_id") or session.connection_config.get("installation_id")
    )
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
        credentials: Credentials = user_credentials
        expires_at = user_expires_at
    else:
        config = {**session.connection_config, "installation_id": installation_id, "app_id": app_id}
        token_url = _installation_token_url(template, config)
        await _prove_user_installation(request, token_url, installation_id, app_id, user_credentials.access_token)
        credentials, expires_at = await _installation_credentials(request, token_url, app_id, private_key)
    return await finish_with_connection(
        request,
        session,
        provider=integration.provider,
        auth_mode="CUSTOM",
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
        pending=installation_id is None,
    )
