"""The popup flows: ``GET /oauth/connect/{key}`` sends the browser to the provider, ``GET
/oauth/callback`` finishes (spec §2.4, §5.1 to §5.5). Every outcome reaches the SDK (WebSocket frame, or
the legacy postMessage page), the auth webhook and the activity log (connection.* or auth.failed).

Only the browser that started a flow can finish it (``protocol/browser_binding``), and a browser changes
only what ``protocol/flow_overrides`` lets it. A callback whose state was already used is answered but
not announced: its flow has ended, and was announced, once.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from keyway_shared.activity import http_excerpt
from keyway_shared.credentials import TokenRequestError
from keyway_shared.events import utcnow
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..http.errors import ApiError
from ..openapi_spec import no_credential
from ..operations.connections import record_auth_failure, record_step, require_unspent_session
from ..operations.environment import callback_url
from ..operations.flow_errors import FlowError
from ..operations.flow_sessions import OAuthSession
from ..resources import CATALOG, HTTP, SETTINGS, STORES
from .flow_pages import error_page, plain_error_page
from .frontend_request import FrontendRequest, check_hmac, public_key_refusing_with
from .github_app import finish_app, finish_custom, start_app
from .link_outcome import outcome_redirect
from .oauth1_flow import finish_oauth1, start_oauth1
from .popup_common import Finisher, PopupStart, Starter, finish_with_connection, flow_config
from .protocol.browser_binding import forget_browser, is_same_browser
from .protocol.flow_overrides import RESERVED_OAUTH2, authorization_params, client_override
from .protocol.oauth2 import authorization_url, config_to_store, exchange_code, new_code_verifier, resolve_url
from .ws import WS_HUB

__all__ = ["FINISHERS", "STARTERS", "oauth_callback", "oauth_connect"]

_WS_TYPE_OF_API_CODE = {
    "missing_connection": "missing_connection_id",
    "missing_provider_config": "no_provider_config_key",
}
# The popup's page status: a flow that failed at the provider or inside the gateway is a 500; the rest
# are the request's own faults (or the integration's configuration), 4xx. The page is the same either
# way: the SDK reads the WebSocket frame (or, legacy, the postMessage), not the status.
_SERVER_SIDE = frozenset({"token_err", "unknown_err"})
_STATUS_OF_WS_TYPE = {"state_cookie_err": 403, "override_not_allowed": 403}


class _RequestError(FlowError):
    """An ApiError of the request's authentication or parameters, on its way to the popup's page."""

    def __init__(self, err: ApiError) -> None:
        super().__init__(_WS_TYPE_OF_API_CODE.get(err.code, err.code), err.message or err.code)
        self.status = err.status if 400 <= err.status < 500 else 400


def _page_status(err: FlowError) -> int:
    if isinstance(err, (_RequestError, ApiError)):  # an ApiError may be a FlowError too (a refused connect)
        return err.status
    return 500 if err.ws_type in _SERVER_SIDE else _STATUS_OF_WS_TYPE.get(err.ws_type, 400)


async def _fail(
    request: web.Request,
    err: FlowError,
    *,
    ws_client_id: str | None,
    env: Environment | None,
    provider_config_key: str | None = None,
    connection_id: str | None = None,
    provider: str | None = None,
    auth_mode: str | None = None,
    operation_id: str | None = None,
    return_url: str | None = None,
) -> web.Response:
    if env is not None:
        await record_auth_failure(
            request.app,
            environment=env.name,
            error_type=err.ws_type,
            description=err.message,
            provider_config_key=provider_config_key,
            connection_id=connection_id,
            provider=provider,
            auth_mode=auth_mode,  # type: ignore[arg-type]
            operation_id=operation_id,
        )
    await request.app[WS_HUB].notify(
        ws_client_id,
        {
            "message_type": "error",
            "provider_config_key": provider_config_key,
            "connection_id": connection_id,
            "error_type": err.ws_type,
            "error_desc": err.message,
        },
    )
    if return_url is not None and env is not None:
        return outcome_redirect(
            env,
            return_url,
            provider_config_key=provider_config_key,
            connection_id=connection_id,
            error_type=err.ws_type,
            error_description=err.message,
        )
    return error_page(
        legacy=ws_client_id is None, error_type=err.ws_type, message=err.message, status=_page_status(err)
    )


async def _integration(request: web.Request, env: Environment, key: str) -> tuple[Integration, ProviderTemplate]:
    integration = await request.app[STORES].integrations.get(env.name, key)
    if integration is None:
        raise FlowError("provider_config_err", f"There is no integration '{key}' in the environment '{env.name}'.")
    template = request.app[CATALOG].get(integration.provider)
    if template is None:
        raise FlowError("unknown_config_key", f"The provider '{integration.provider}' is not in the catalog.")
    return integration, template


async def _refused(request: web.Request, err: ApiError) -> web.StreamResponse:
    """A refused public key or connect session token: the popup's page and the SDK hear of it; no
    environment is known to log it in."""
    return await _fail(
        request,
        _RequestError(err),
        ws_client_id=request.query.get("ws_client_id") or None,
        env=None,
        provider_config_key=request.match_info.get("providerConfigKey"),
        connection_id=request.query.get("connection_id"),
    )


@public_key_refusing_with(_refused)
async def oauth_connect(request: web.Request, env: Environment, front: FrontendRequest) -> web.StreamResponse:
    ws_client_id = request.query.get("ws_client_id") or None
    template: ProviderTemplate | None = None
    integration: Integration | None = None
    return_url: str | None = None
    try:
        try:
            if request.query.get("redirect") == "1":
                return_url = front.connect_session.return_url if front.connect_session else None
                if return_url is None:
                    raise FlowError("invalid_connect_link", "A redirect flow needs a connect link's session token.")
            front.require_ids()
            check_hmac(env, front)
        except ApiError as err:
            raise _RequestError(err) from None
        integration, template = await _integration(request, env, front.provider_config_key)
        starter = STARTERS.get(template.auth_mode)
        if starter is None:
            raise FlowError("auth_mode_err", f"The auth mode {template.auth_mode} has no popup flow.")
        start = PopupStart(
            request=request,
            env=env,
            front=front,
            integration=integration,
            template=template,
            ws_client_id=ws_client_id,
            return_url=return_url,
        )
        try:
            return await starter(start)
        except web.HTTPFound as redirect:
            start.browser_binding.give_to(request, redirect)
            await record_step(
                request.app,
                environment=env.name,
                operation_id=front.operation_id,
                message=f"Authorization URL built; sending the user to {integration.provider}",
                state="waiting",
                provider_config_key=front.provider_config_key,
                provider=integration.provider,
                connection_id=front.connection_id,
                request=http_excerpt("GET", str(redirect.location)),
                meta={"auth_mode": template.auth_mode},
            )
            raise
    except FlowError as err:
        return await _fail(
            request,
            err,
            ws_client_id=ws_client_id,
            env=env,
            provider_config_key=front.provider_config_key,
            connection_id=front.connection_id,
            provider=integration.provider if integration else None,
            auth_mode=template.auth_mode if template else None,
            operation_id=front.operation_id,
            return_url=return_url,
        )


async def start_oauth2(start: PopupStart) -> web.StreamResponse:
    request, env, front, integration, template = (
        start.request,
        start.env,
        start.front,
        start.integration,
        start.template,
    )
    ws_client_id = start.ws_client_id
    grant_type = template.token_params.get("grant_type", "authorization_code")
    if grant_type != "authorization_code":
        raise FlowError("grant_type_err", f"The provider's grant type {grant_type} has no authorization step.")
    override = client_override(request, front)
    client_id = override.client_id or integration.oauth_client_id
    client_secret = override.client_secret or integration.oauth_client_secret
    if not client_id or not client_secret:
        raise FlowError("provider_config_err", "The integration has no OAuth client id or client secret.")
    config = flow_config(request, front)
    scopes = config.get("oauth_scopes_override") or [s for s in (integration.oauth_scopes or "").split(",") if s]
    verifier = None if template.disable_pkce else new_code_verifier()
    secrets = {"client_id": client_id, "client_secret": client_secret}
    if verifier is not None:
        secrets["code_verifier"] = verifier
    if override.given:
        secrets["overridden"] = "true"
    if front.connect_session_id:
        secrets["connect_session"] = front.connect_session_id
    session = OAuthSession(
        environment=env.name,
        provider_config_key=front.provider_config_key,
        provider=integration.provider,
        auth_mode=template.auth_mode,
        connection_id=front.connection_id,
        callback_url=callback_url(request.app, env),
        operation_id=front.operation_id,
        connection_config=config,
        ws_client_id=ws_client_id,
        return_url=start.return_url,
        secrets=secrets,
        browser_binding=start.browser_binding.digest,
    )
    url = authorization_url(
        template=template,
        provider=integration.provider,
        client_id=client_id,
        redirect_uri=session.callback_url,
        scopes=scopes,
        state=session.id,
        code_verifier=verifier,
        connection_config=config,
        request_params=authorization_params(request, front, reserved=RESERVED_OAUTH2),
        user_scope=",".join(config["user_scope"]) if config.get("user_scope") else None,
    )
    # The token URL must interpolate too; failing now beats failing after the user consented.
    resolve_url(template.token_url_for("OAUTH2"), config, what="token URL", template=template)
    await request.app[STORES].oauth_sessions.create(session)
    raise web.HTTPFound(url)


def back_from_github_install(request: web.Request) -> None:
    """An installation started on github.com (no state of ours): send the browser back where it came from."""
    query = request.query
    if not query.get("state") and query.get("installation_id") and query.get("setup_action"):
        referer = request.headers.get("Referer", "")
        raise web.HTTPFound(referer if urlsplit(referer).scheme in {"http", "https"} else "https://github.com")


@no_credential  # the flow's state, and the browser that started the flow (protocol/browser_binding)
async def oauth_callback(request: web.Request) -> web.StreamResponse:
    back_from_github_install(request)
    state = request.query.get("state", "")
    if not state:
        return plain_error_page("This authorization callback has no state: it does not belong to any flow.")
    session, status = await request.app[STORES].oauth_sessions.take(state)
    if session is None:
        return plain_error_page("This authorization has expired or is unknown. Please start again.")
    if status == "used":
        # A replay (a reload, or anyone holding the URL): the flow has ended and was announced once;
        # announcing a failure now would contradict it, so the answer is all there is.
        return plain_error_page("This authorization was already completed. You can close this window.")
    try:
        response = await _finish_callback(request, session, status)
    except web.HTTPException as answer:
        forget_browser(request, answer, session.browser_binding)
        raise
    forget_browser(request, response, session.browser_binding)
    return response


async def _finish_callback(request: web.Request, session: OAuthSession, status: str) -> web.StreamResponse:
    env = await request.app[STORES].environments.get(session.environment)
    await record_step(
        request.app,
        environment=session.environment,
        operation_id=session.operation_id,
        message=f"Received the callback from {session.provider}",
        state="running",
        provider_config_key=session.provider_config_key,
        provider=session.provider,
        connection_id=session.connection_id,
        request=http_excerpt("GET", str(request.url)),
    )
    context: dict[str, Any] = {
        "ws_client_id": session.ws_client_id,
        "env": env,
        "provider_config_key": session.provider_config_key,
        "connection_id": session.connection_id,
        "provider": session.provider,
        "auth_mode": session.auth_mode,
        "operation_id": session.operation_id,
        "return_url": session.return_url,
    }
    try:
        if status == "expired":
            raise FlowError("state_err", "This authorization took longer than 10 minutes. Please start again.")
        if env is None:
            raise FlowError("account_or_environment_retrieval_err", "The environment of this flow no longer exists.")
        if not is_same_browser(request, session.browser_binding):
            raise FlowError(
                "state_cookie_err",
                "This authorization can only be completed in the browser that started it, and this one does "
                "not hold its cookie (another browser, cookies blocked, or a callback forwarded by a server). "
                "Please start again.",
            )
        # A connect session's flow: refused once that session is deleted or spent (by another flow).
        await require_unspent_session(request.app, session.secrets.get("connect_session"))
        error = request.query.get("error")
        if error:
            description = request.query.get("error_description") or error
            raise FlowError("callback_err", f"The provider refused the authorization: {error} ({description})"[:500])
        finisher = FINISHERS.get(session.auth_mode)
        if finisher is None:
            raise FlowError("auth_mode_err", f"The auth mode {session.auth_mode} has no callback step.")
        return await finisher(request, session, env)
    except FlowError as err:
        return await _fail(request, err, **context)


async def finish_oauth2(request: web.Request, session: OAuthSession, env: Environment) -> web.StreamResponse:
    code = request.query.get("code")
    if not code:
        raise FlowError("callback_err", "The provider's callback has no authorization code.")
    integration = await request.app[STORES].integrations.get(env.name, session.provider_config_key)
    template = request.app[CATALOG].get(session.provider)
    if integration is None or template is None:
        raise FlowError("provider_config_err", "The integration was deleted during the authorization.")
    # From the configuration given at connect time: a callback's query never steers a URL.
    config = session.connection_config
    token_url = resolve_url(template.token_url_for("OAUTH2"), config, what="token URL", template=template)
    settings = request.app[SETTINGS]
    step: dict[str, Any] = {
        "environment": env.name,
        "operation_id": session.operation_id,
        "provider_config_key": session.provider_config_key,
        "provider": session.provider,
        "connection_id": session.connection_id,
        "meta": {"grant_type": "authorization_code", "pkce": "code_verifier" in session.secrets},
    }
    started = time.monotonic()
    try:
        credentials, expires_at, raw = await exchange_code(
            request.app[HTTP],
            template=template,
            token_url=token_url,
            code=code,
            redirect_uri=session.callback_url,
            code_verifier=session.secrets.get("code_verifier"),
            client_id=session.secrets["client_id"],
            client_secret=session.secrets["client_secret"],
            now=utcnow(),
            timeout_seconds=settings.provider_timeout_seconds,
        )
    except TokenRequestError as exc:
        took = (time.monotonic() - started) * 1000
        await record_step(
            request.app,
            message=f"Token request failed: {exc.description}",
            level="error",
            request=http_excerpt("POST", token_url, status=exc.status, duration_ms=took),
            **step,
        )
        raise FlowError("token_err", exc.description) from None
    took = (time.monotonic() - started) * 1000
    await record_step(
        request.app,
        message=f"Token request answered in {took:.0f} ms",
        request=http_excerpt("POST", token_url, duration_ms=took, body=raw),
        **step,
    )
    config = config_to_store(template, config, callback_query=dict(request.query), token_response=raw)
    if session.secrets.get("overridden"):
        credentials = credentials.with_fields(
            config_override={
                "client_id": session.secrets["client_id"],
                "client_secret": session.secrets["client_secret"],
            }
        )
    return await finish_with_connection(
        request,
        session,
        provider=session.provider,
        auth_mode=session.auth_mode,  # type: ignore[arg-type]
        credentials=credentials,
        connection_config=config,
        expires_at=expires_at,
    )


STARTERS: dict[str, Starter] = {
    "OAUTH2": start_oauth2,
    "OAUTH1": start_oauth1,
    "APP": start_app,
    "CUSTOM": start_app,
}
FINISHERS: dict[str, Finisher] = {
    "OAUTH2": finish_oauth2,
    "OAUTH1": finish_oauth1,
    "APP": finish_app,
    "CUSTOM": finish_custom,
}
