"""OAUTH2: the authorization-code popup flow (spec §2.4, §5.1 to §5.5): the starter sends the browser
to the provider's authorization URL (PKCE unless the template disables it), the finisher exchanges the
code the callback brings.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from keyway_shared.activity import http_excerpt
from keyway_shared.credentials import TokenRequestError
from keyway_shared.events import utcnow
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment

from ...operations.attempt_steps import record_step
from ...operations.environment import callback_url
from ...operations.flow_errors import FlowError
from ...operations.flow_sessions import OAuthSession
from ...resources import CATALOG, HTTP, SETTINGS, STORES
from ..popup_common import PopupStart, finish_with_connection, flow_config
from ..protocol.flow_overrides import RESERVED_OAUTH2, authorization_params, client_override
from ..protocol.oauth2 import authorization_url, config_to_store, exchange_code, new_code_verifier, resolve_url
from .spec import AuthModeSpec, PopupFlow

__all__ = ["SPEC", "exchange_and_connect", "finish_oauth2", "redirect_to_authorize", "start_oauth2"]


async def start_oauth2(start: PopupStart) -> web.StreamResponse:
    request, front, integration, template = start.request, start.front, start.integration, start.template
    grant_type = template.token_params.get("grant_type", "authorization_code")
    if grant_type != "authorization_code":
        raise FlowError("grant_type_err", f"The provider's grant type {grant_type} has no authorization step.")
    override = client_override(request, front)
    client_id = override.client_id or integration.oauth_client_id
    client_secret = override.client_secret or integration.oauth_client_secret
    if not client_id or not client_secret:
        raise FlowError("provider_config_err", "The integration has no OAuth client id or client secret.")
    return await redirect_to_authorize(
        start,
        template=template,
        client_id=client_id,
        client_secret=client_secret,
        config=flow_config(request, front),
        overridden=override.given,
    )


async def redirect_to_authorize(
    start: PopupStart,
    *,
    template: ProviderTemplate,
    client_id: str,
    client_secret: str,
    config: dict[str, Any],
    overridden: bool = False,
    scopes: list[str] | None = None,
) -> web.StreamResponse:
    """Keep the flow's session and send the browser to ``template``'s authorization URL as
    ``client_id`` (an empty ``client_secret``: a public client); ``scopes`` when not the integration's."""
    request, env, front, integration = start.request, start.env, start.front, start.integration
    if scopes is None:
        scopes = config.get("oauth_scopes_override") or [s for s in (integration.oauth_scopes or "").split(",") if s]
    verifier = None if template.disable_pkce else new_code_verifier()
    secrets = {"client_id": client_id, "client_secret": client_secret}
    if verifier is not None:
        secrets["code_verifier"] = verifier
    if overridden:
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
        ws_client_id=start.ws_client_id,
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


async def finish_oauth2(request: web.Request, session: OAuthSession, env: Environment) -> web.StreamResponse:
    integration = await request.app[STORES].integrations.get(env.name, session.provider_config_key)
    template = request.app[CATALOG].get(session.provider)
    if integration is None or template is None:
        raise FlowError("provider_config_err", "The integration was deleted during the authorization.")
    return await exchange_and_connect(request, session, template=template)


async def exchange_and_connect(
    request: web.Request, session: OAuthSession, *, template: ProviderTemplate
) -> web.StreamResponse:
    """The callback's code for tokens at ``template``'s token URL, as the client the flow began as;
    then the connection."""
    code = request.query.get("code")
    if not code:
        raise FlowError("callback_err", "The provider's callback has no authorization code.")
    # From the configuration given at connect time: a callback's query never steers a URL.
    config = session.connection_config
    token_url = resolve_url(template.token_url_for("OAUTH2"), config, what="token URL", template=template)
    settings = request.app[SETTINGS]
    step: dict[str, Any] = {
        "environment": session.environment,
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
            connection_config=config,
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


SPEC = AuthModeSpec(mode="OAUTH2", flow=PopupFlow(start=start_oauth2, finish=finish_oauth2))
