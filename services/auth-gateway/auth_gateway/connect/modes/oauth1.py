"""OAUTH1: the OAuth 1.0a popup flow (spec §2.4, §5.9).

The starter fetches a request token (its callback carries the session id as ``state``) and sends
the browser to the provider; the finisher trades the request token and verifier for an access token.
The request-token secret waits, encrypted, in the session.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from keyway_shared.credentials import TokenRequestError
from keyway_shared.credentials.shapes import OAuth1Credentials
from keyway_shared.providers import ProviderTemplate
from keyway_shared.store import Environment

from ...operations.environment import callback_url
from ...operations.flow_errors import FlowError
from ...operations.flow_sessions import OAuthSession
from ...resources import HTTP, SETTINGS, STORES
from ..popup_common import PopupStart, finish_with_connection, flow_config, reload_integration
from ..protocol.flow_overrides import RESERVED_OAUTH1, authorization_params, client_override
from ..protocol.oauth1 import OAuth1Client, authorization_url, with_query
from ..protocol.oauth2 import resolve_url
from .spec import AuthModeSpec, PopupFlow

__all__ = ["SPEC", "finish_oauth1", "start_oauth1"]


def _client(request: web.Request, template: ProviderTemplate, consumer_key: str, consumer_secret: str) -> OAuth1Client:
    return OAuth1Client(
        session=request.app[HTTP],
        template=template,
        consumer_key=consumer_key,
        consumer_secret=consumer_secret,
        timeout_seconds=request.app[SETTINGS].provider_timeout_seconds,
    )


async def start_oauth1(start: PopupStart) -> web.StreamResponse:
    request, env, front, integration, template = (
        start.request,
        start.env,
        start.front,
        start.integration,
        start.template,
    )
    override = client_override(request, front)
    consumer_key = override.client_id or integration.oauth_client_id
    consumer_secret = override.client_secret or integration.oauth_client_secret
    if not consumer_key or not consumer_secret:
        raise FlowError("provider_config_err", "The integration has no OAuth consumer key or consumer secret.")
    config = flow_config(request, front)
    scopes = config.get("oauth_scopes_override") or [s for s in (integration.oauth_scopes or "").split(",") if s]
    request_url = resolve_url(template.request_url, config, what="request token URL", template=template)
    authorize_url = resolve_url(template.authorization_url, config, what="authorization URL", template=template)
    # Fail before the user consents.
    resolve_url(template.token_url_for("OAUTH1"), config, what="token URL", template=template)
    session = OAuthSession(
        environment=env.name,
        provider_config_key=front.provider_config_key,
        provider=integration.provider,
        auth_mode="OAUTH1",
        connection_id=front.connection_id,
        callback_url=callback_url(request.app, env),
        operation_id=front.operation_id,
        connection_config=config,
        ws_client_id=start.ws_client_id,
        return_url=start.return_url,
        browser_binding=start.browser_binding.digest,
    )
    client = _client(request, template, consumer_key, consumer_secret)
    try:
        token, token_secret = await client.request_token(
            request_url=request_url, callback=with_query(session.callback_url, {"state": session.id})
        )
    except TokenRequestError as exc:
        raise FlowError("token_err", f"The request token could not be obtained: {exc.description}") from None
    session.secrets = {
        "client_id": consumer_key,
        "client_secret": consumer_secret,
        "request_token": token,
        "request_token_secret": token_secret,
    }
    if override.given:
        session.secrets["overridden"] = "true"
    if front.connect_session_id:
        session.secrets["connect_session"] = front.connect_session_id
    await request.app[STORES].oauth_sessions.create(session)
    raise web.HTTPFound(
        authorization_url(
            url=authorize_url,
            request_token=token,
            template=template,
            scopes=scopes,
            request_params=authorization_params(request, front, reserved=RESERVED_OAUTH1),
        )
    )


async def finish_oauth1(request: web.Request, session: OAuthSession, env: Environment) -> web.StreamResponse:
    oauth_token = request.query.get("oauth_token", "")
    verifier = request.query.get("oauth_verifier", "")
    if not oauth_token or not verifier:
        raise FlowError("callback_err", "The provider's callback needs both oauth_token and oauth_verifier.")
    if not hmac.compare_digest(oauth_token.encode(), session.secrets.get("request_token", "").encode()):
        raise FlowError("callback_err", "The provider's callback names a request token this flow was not given.")
    integration, template = await reload_integration(request, env, session)
    token_url = resolve_url(
        template.token_url_for("OAUTH1"), session.connection_config, what="token URL", template=template
    )
    client = _client(request, template, session.secrets["client_id"], session.secrets["client_secret"])
    try:
        raw = await client.access_token(
            token_url=token_url,
            request_token=oauth_token,
            request_token_secret=session.secrets["request_token_secret"],
            verifier=verifier,
        )
    except TokenRequestError as exc:
        raise FlowError("token_err", exc.description) from None
    credentials = OAuth1Credentials(
        oauth_token=raw["oauth_token"], oauth_token_secret=raw["oauth_token_secret"], raw=raw
    )
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
        provider=integration.provider,
        auth_mode="OAUTH1",
        credentials=credentials,
        connection_config=session.connection_config,
    )


SPEC = AuthModeSpec(mode="OAUTH1", flow=PopupFlow(start=start_oauth1, finish=finish_oauth1))
