"""Connect links (redirect mode): ``POST /connect/links`` mints one (secret key); the user's whole tab
opens ``GET /connect/link/{token}``, connects there, and is sent back to the app's ``return_url`` with
a signed outcome (``auth_gateway.connect.link_outcome``).

The token in the path is the capability (a connect session token); the form posts carry no cookie,
and are refused unless the browser says they come from the gateway's own page (Origin and
Sec-Fetch-Site), so another site cannot submit credentials into a link it learned.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiDict
from pydantic import BaseModel, ConfigDict, Field

from keyway_shared.auth_modes import AuthMode
from keyway_shared.events import utcnow
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.requests import bracket_params, json_object, validated_body
from ..http.serialize import js_iso
from ..openapi_spec import no_credential
from ..operations.callers import secret_key
from ..operations.connect_sessions import SESSION_LIFETIME, ConnectSession
from ..operations.connections import ConnectRefusedError, store_connection
from ..operations.return_urls import return_url_allowed, return_url_problem
from ..resources import CATALOG, HTTP, SETTINGS, STORES
from .credential_flow import CredentialAttempt, announce_failures, integration_in_mode
from .frontend_request import FrontendRequest
from .link_outcome import outcome_redirect
from .link_page import LinkChoice, gone_page, link_page
from .modes import LINK_FORMS, popup_flow
from .sessions import EndUser, Organization
from .verification import verify_credentials

__all__ = ["cancel_link", "create_connect_link", "show_link", "submit_link"]


class CreateLinkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    return_url: str = Field(min_length=1, max_length=2048)
    end_user: EndUser | None = None
    organization: Organization | None = None
    allowed_integrations: list[str] | None = Field(default=None, min_length=1)


@secret_key
async def create_connect_link(request: web.Request, env: Environment) -> web.Response:
    """``POST /connect/links`` (secret key) → ``{"data": {"token", "url", "expires_at"}}``."""
    body = validated_body(CreateLinkBody, await json_object(request))
    problem = return_url_problem(body.return_url)
    if problem is not None:
        raise ApiError("invalid_return_url", f"The return_url cannot be used: {problem}.")
    if not return_url_allowed(body.return_url, env.allowed_return_urls):
        raise ApiError(
            "return_url_not_allowed",
            f"The return_url is not under any of the allowed return URLs of '{env.name}' "
            '(set them with PATCH /environment {"allowed_return_urls": [...]}).',
            status=400,
        )
    stores = request.app[STORES]
    for key in body.allowed_integrations or []:
        if await stores.integrations.get(env.name, key) is None:
            raise ApiError("unknown_provider_config", f"There is no integration '{key}' in '{env.name}'.")
    session = ConnectSession(
        id="",
        environment=env.name,
        end_user=body.end_user.model_dump(exclude_none=True) if body.end_user else {},
        organization=body.organization.model_dump(exclude_none=True) if body.organization else None,
        allowed_integrations=body.allowed_integrations,
        return_url=body.return_url,
        expires_at=utcnow() + SESSION_LIFETIME,
    )
    token = await stores.connect_sessions.create(session)
    url = f"{request.app[SETTINGS].public_url.rstrip('/')}/connect/link/{token}"
    return web.json_response(
        {"data": {"token": token, "url": url, "expires_at": js_iso(session.expires_at)}}, status=201
    )


async def _link(request: web.Request) -> tuple[str, ConnectSession, Environment] | None:
    token = request.match_info["token"]
    session = await request.app[STORES].connect_sessions.find(token)
    if session is None or session.return_url is None:
        return None
    env = await request.app[STORES].environments.get(session.environment)
    return (token, session, env) if env is not None else None


async def _choices(request: web.Request, env: Environment, session: ConnectSession) -> list[LinkChoice]:
    integrations = await request.app[STORES].integrations.list(env.name)
    allowed = session.allowed_integrations
    choices = []
    for integration in integrations:
        if allowed is not None and integration.unique_key not in allowed:
            continue
        template = request.app[CATALOG].get(integration.provider)
        if template is None:
            continue
        mode = template.auth_mode
        form = LINK_FORMS.get(mode)
        kind = "form" if form else "redirect" if popup_flow(mode) else "unsupported"
        choices.append(
            LinkChoice(
                key=integration.unique_key,
                name=template.display_name or integration.provider,
                auth_mode=mode,
                kind=kind,
                params=dict(template.connection_config),
                fields=form.fields if form else (),
            )
        )
    return choices


@no_credential  # the token in the path is the capability
async def show_link(request: web.Request) -> web.StreamResponse:
    """``GET /connect/link/{token}``: the hosted page, or a clear page when the link is spent or expired."""
    found = await _link(request)
    if found is None:
        return gone_page()
    token, session, env = found
    return link_page(token, await _choices(request, env, session))


def _check_same_origin(request: web.Request) -> None:
    """Form posts must come from the hosted page itself (no cookie is involved: this stops cross-site posts)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in {"same-origin", "none"}:
        raise web.HTTPForbidden(text="Cross-site form submissions are refused.")
    origin = request.headers.get("Origin")
    if origin == "null" and site is None:
        raise web.HTTPForbidden(text="A form submission of unknown origin is refused.")
    if origin is not None and origin != "null":
        public = urlsplit(request.app[SETTINGS].public_url)
        own = {f"{public.scheme}://{public.netloc}", f"{request.scheme}://{request.host}"}
        if origin not in own:
            raise web.HTTPForbidden(text="Cross-origin form submissions are refused.")


@no_credential  # the token in the path, and a post from the gateway's own page
async def submit_link(request: web.Request) -> web.StreamResponse:
    """``POST /connect/link/{token}/connect/{providerConfigKey}`` (form): API key or Basic credentials."""
    _check_same_origin(request)
    found = await _link(request)
    if found is None:
        return gone_page()
    token, session, env = found
    assert session.return_url is not None
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    key = request.match_info["providerConfigKey"]
    front = FrontendRequest(
        provider_config_key=key,
        connection_id=session.connection_id or str(uuid.uuid4()),  # the server names connections made from a link
        connection_config=bracket_params(MultiDict(fields), "params"),
        hmac=None,
        connect_session=session,
    )
    template_mode = await _mode_of(request, env, key)
    attempt = CredentialAttempt(env=env, front=front, mode=template_mode)
    try:
        async with announce_failures(request, attempt):
            front.require_ids()
            integration, template = await integration_in_mode(request, attempt)
            credentials = LINK_FORMS[template_mode].credentials(fields)
            await verify_credentials(
                request.app[HTTP],
                template,
                credentials,
                front.connection_config,
                timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
            )
    except ApiError as err:
        # A mistyped key should be fixable without a new link: show the page again, the link still unspent.
        choices = await _choices(request, env, session)
        return link_page(token, choices, error=err.message or err.code, status=400)
    try:
        await store_connection(
            request.app,
            environment=env.name,
            provider_config_key=key,
            provider=integration.provider,
            auth_mode=template_mode,
            connection_id=front.connection_id,
            credentials=credentials,
            connection_config=front.connection_config,
            operation_id=front.operation_id,
            connect_session_id=session.id,
        )
    except ConnectRefusedError as refused:
        if refused.status == 401:  # spent meanwhile (by a parallel submission) or deleted by the app
            return gone_page()
        return link_page(token, await _choices(request, env, session), error=refused.message, status=refused.status)
    return outcome_redirect(env, session.return_url, provider_config_key=key, connection_id=front.connection_id)


@no_credential  # the token in the path, and a post from the gateway's own page
async def cancel_link(request: web.Request) -> web.StreamResponse:
    """``POST /connect/link/{token}/cancel``: back to the app with ``error_type=user_cancelled``."""
    _check_same_origin(request)
    found = await _link(request)
    if found is None:
        return gone_page()
    _token, session, env = found
    assert session.return_url is not None
    return outcome_redirect(
        env,
        session.return_url,
        provider_config_key=None,
        connection_id=None,
        error_type="user_cancelled",
        error_description="The user went back without connecting.",
    )


async def _mode_of(request: web.Request, env: Environment, key: str) -> AuthMode:
    """The integration's mode when the page has a form for it; else the page's first form mode, which
    ``integration_in_mode`` then refuses ("uses OAUTH2, not API_KEY"), as it should."""
    integration = await request.app[STORES].integrations.get(env.name, key)
    template = request.app[CATALOG].get(integration.provider) if integration else None
    return template.auth_mode if template and template.auth_mode in LINK_FORMS else next(iter(LINK_FORMS))
