"""The popup flows: ``GET /oauth/connect/{key}`` sends the browser to the provider, ``GET
/oauth/callback`` finishes (spec §2.4, §5.1 to §5.5), each through the starter and finisher of the
integration's mode (``connect.modes``). Every outcome reaches the SDK (WebSocket frame, or
the legacy postMessage page), the auth webhook and the activity log (connection.* or auth.failed).

Only the browser that started a flow can finish it (``protocol/browser_binding``), and a browser changes
only what ``protocol/flow_overrides`` lets it. A callback whose state was already used is answered but
not announced: its flow has ended, and was announced, once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from keyway_shared.activity import http_excerpt
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment, Integration

from ..http.errors import ApiError
from ..openapi_spec import no_credential
from ..operations.attempt_steps import record_step
from ..operations.connections import record_auth_failure, require_unspent_session
from ..operations.flow_errors import FlowError
from ..operations.flow_sessions import OAuthSession
from ..resources import CATALOG, STORES
from .flow_pages import error_page, plain_error_page
from .frontend_request import FrontendRequest, check_hmac, public_key_refusing_with
from .link_outcome import outcome_redirect
from .modes import popup_flow
from .popup_common import PopupStart
from .protocol.browser_binding import forget_browser, is_same_browser
from .ws import WS_HUB

__all__ = ["oauth_callback", "oauth_connect"]

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
        flow = popup_flow(template.auth_mode)
        if flow is None:
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
            return await flow.start(start)
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


def back_from_github_install(request: web.Request) -> None:
    """An installation started on github.com (no state of ours): send the browser back where it came from."""
    query = request.query
    if not query.get("state") and query.get("installation_id") and query.get("setup_action"):
        referer = request.headers.get("Referer", "")
        raise web.HTTPFound(referer if urlsplit(referer).scheme in {"http", "https"} else "https://github.com")


@no_credential  # the flow's state, and the browser that started the flow (protocol/browser_binding)
async def oauth_callback(request: web.Request) -> web.StreamResponse:
    back_from_github_install(request)
    # A marketplace plugin's install page sends the state back as ``payload`` (Crisp's), as Nango reads it.
    state = request.query.get("state") or request.query.get("payload", "")
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
        flow = popup_flow(session.auth_mode)
        if flow is None:
            raise FlowError("auth_mode_err", f"The auth mode {session.auth_mode} has no callback step.")
        return await flow.finish(request, session, env)
    except FlowError as err:
        return await _fail(request, err, **context)
