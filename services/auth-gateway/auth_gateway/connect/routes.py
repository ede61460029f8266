"""The connect lines of the route table (``auth_gateway.routes`` splices them in): what a browser or a
frontend SDK calls, and the backend's calls that mint connect sessions and links.
"""

from __future__ import annotations

from .. import openapi_schemas as schema
from ..openapi_spec import ERROR_REF, NO_CONTENT, AuthKind, Route, bracketed, form, json_answer, page, query, redirect
from . import app_auth, client_metadata, links, oauth, sessions
from .links import CreateLinkBody
from .modes import CONNECT_PARAMS, FORM_ROUTES
from .session_input import ReconnectSessionBody, SessionBody
from .ws import websocket_or_index

__all__ = ["CONNECT_ROUTES"]

PUBLIC: AuthKind = "public_key"  # or a connect session token in the query
SECRET: AuthKind = "secret_key"  # noqa: S105 - a credential kind, not a secret
SESSION: AuthKind = "connect_session"
NONE: AuthKind = "none"

# What the frontend SDK sends with a popup's first step: what it sends with every connect call, and more.
POPUP = (
    *CONNECT_PARAMS,
    query("ws_client_id", "The WebSocket that hears the outcome (none: the legacy postMessage page)"),
    query("user_scope", "Comma-separated user scopes (Slack)"),
    query("redirect", "1: a connect link's redirect flow (the outcome goes to its return URL)"),
    bracketed("authorization_params", "Extra query parameters for the provider's authorization URL"),
    bracketed("credentials", "oauth_client_id_override / oauth_client_secret_override"),
)
CALLBACK = (
    query("state", "The flow this callback finishes"),
    query("code", "The authorization code"),
    query("error", "The provider's refusal"),
    query("error_description"),
    query("installation_id", "A GitHub App installation"),
    query("setup_action", "GitHub's install, update or request"),
)
TO_PROVIDER = redirect(302, "To the provider")
TO_APP = redirect(303, "A connect link's flow: back to the app's return URL with the outcome")
# The popup's closing page reports a failure (pages=True): 4xx for the request's fault, 500 for the
# provider's or the gateway's (connect/oauth.py, _page_status).
POPUP_ERRORS = (400, 401, 403, 500)
LINK_FORBIDDEN = json_answer(403, ERROR_REF, "A form posted from another site")
LINK_GONE = page(410, "The link expired or was used")

CONNECT_ROUTES: list[Route] = [
    Route(
        "GET",
        "/",
        websocket_or_index,
        "WebSocket for the frontend SDK (connection_ack, then success or error); JSON without an Upgrade",
        "connect",
        NONE,
    ),
    # the browser side (public key or connect session token)
    Route(
        "GET",
        "/oauth/connect/{providerConfigKey}",
        oauth.oauth_connect,
        "Start a popup flow (302 to the provider)",
        "connect",
        PUBLIC,
        params=POPUP,
        ok=(TO_PROVIDER, TO_APP),
        errors=POPUP_ERRORS,
        pages=True,
    ),
    Route(
        "GET",
        "/oauth/callback",
        oauth.oauth_callback,
        "The provider's redirect back; closes the popup",
        "connect",
        NONE,
        params=CALLBACK,
        ok=(page(200), redirect(302, "An installation started on github.com: back where it came from"), TO_APP),
        errors=POPUP_ERRORS,
        pages=True,
    ),
    Route(
        "GET",
        "/app-auth/connect",
        app_auth.app_auth_connect,
        "GitHub App installation callback",
        "connect",
        NONE,
        params=CALLBACK,
        ok=(page(200), redirect(302, "An installation started on github.com: back where it came from"), TO_APP),
        errors=POPUP_ERRORS,
        pages=True,
    ),
    # the form modes' routes, where the frontend SDK posts typed credentials (connect/modes)
    Route(
        "GET",
        "/oauth/client-metadata/{environment}/{providerConfigKey}",
        client_metadata.client_metadata_document,
        "An MCP integration's OAuth client ID metadata document (its URL is the client id)",
        "connect",
        NONE,
        ok=json_answer(schema=schema.CLIENT_METADATA),
        errors=(404,),
    ),
    *FORM_ROUTES,
    Route(
        "GET",
        "/connect/session",
        sessions.get_connect_session,
        "Read a connect session",
        "connect-sessions",
        SESSION,
        ok=json_answer(schema=schema.CONNECT_SESSION),
    ),
    Route(
        "DELETE",
        "/connect/session",
        sessions.delete_connect_session,
        "End a connect session",
        "connect-sessions",
        SESSION,
        ok=NO_CONTENT,
    ),
    # connect links: the hosted page a whole tab visits (the token in the path is the capability)
    Route(
        "GET",
        "/connect/link/{token}",
        links.show_link,
        "A connect link's hosted page",
        "connect",
        NONE,
        ok=page(),
        errors=(LINK_GONE,),
    ),
    Route(
        "POST",
        "/connect/link/{token}/connect/{providerConfigKey}",
        links.submit_link,
        "Connect an API key or Basic integration from a connect link's page (form; 303 to the return URL)",
        "connect",
        NONE,
        body=form(schema.CONNECT_LINK_FORM),
        ok=TO_APP,
        errors=(page(400, "The page again, saying what was wrong"), LINK_FORBIDDEN, LINK_GONE),
    ),
    Route(
        "POST",
        "/connect/link/{token}/cancel",
        links.cancel_link,
        "Leave a connect link's page (303 to the return URL with error_type=user_cancelled)",
        "connect",
        NONE,
        ok=TO_APP,
        errors=(LINK_FORBIDDEN, LINK_GONE),
    ),
    # connect sessions and links: minted by the backend (secret key)
    Route(
        "POST",
        "/connect/links",
        links.create_connect_link,
        "Mint a connect link (redirect mode: a hosted page, then back to return_url)",
        "connect-sessions",
        SECRET,
        body=CreateLinkBody,
        ok=json_answer(201, schema.CONNECT_LINK),
    ),
    Route(
        "POST",
        "/connect/sessions",
        sessions.create_connect_session,
        "Mint a connect session token",
        "connect-sessions",
        SECRET,
        body=SessionBody,
        ok=json_answer(201, schema.SESSION_TOKEN),
    ),
    Route(
        "POST",
        "/connect/sessions/reconnect",
        sessions.create_reconnect_session,
        "Mint a connect session that may only authorize one existing connection again",
        "connect-sessions",
        SECRET,
        body=ReconnectSessionBody,
        ok=json_answer(201, schema.SESSION_TOKEN),
    ),
]
