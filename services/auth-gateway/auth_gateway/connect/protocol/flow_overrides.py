"""What the browser may choose in a popup flow, and what stays with the app's backend.

Authorization parameters: ``authorization_params[...]`` may add, change or remove (``undefined``)
any parameter except those that carry the protocol itself: where the code goes (``redirect_uri``,
``response_mode``), what comes back (``response_type``), which client and which flow it is for
(``client_id``, ``state``), PKCE (``code_challenge``, ``code_challenge_method``), and request
objects (``request``, ``request_uri``) that restate all of them. A browser's value for one of those
is dropped and the gateway's kept. ``nonce`` and ``scope`` stay open: the gateway neither sets nor
checks an OpenID nonce (nothing here trusts an ID token), and scopes are the user's to consent to
(the SDK may already set them with ``params[oauth_scopes_override]``).

Client overrides (``credentials[oauth_client_id_override]`` and ``[oauth_client_secret_override]``)
run the flow, and every later refresh, with another OAuth client: only the app's backend may choose
that. As in Nango, a connect session says so in ``integrations_config_defaults[<integration>]
.connection_config``: a value there is used whatever the browser sends, an empty one lets the
browser give its own; with the public key alone, or without that entry, an override is refused.
A session's ``authorization_params`` replace the browser's, and its ``oauth_scopes_override`` and
``user_scopes`` win over the browser's too (Nango: "session token always wins").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from keyway_shared.logging import get_logger

from ...http.requests import bracket_params
from ...operations.flow_errors import FlowError
from ..frontend_request import FrontendRequest

__all__ = [
    "RESERVED_OAUTH1",
    "RESERVED_OAUTH2",
    "ClientOverride",
    "authorization_params",
    "client_override",
    "session_defaults",
    "session_scopes",
]

log = get_logger(__name__)

RESERVED_OAUTH2 = frozenset(
    {
        "client_id",
        "client_secret",
        "redirect_uri",
        "response_type",
        "response_mode",
        "state",
        "code_challenge",
        "code_challenge_method",
        "request",
        "request_uri",
    }
)
# OAuth 1: the request token names the flow; a callback given here would take the verifier elsewhere.
RESERVED_OAUTH1 = frozenset({"oauth_token", "oauth_callback"})

_CLIENT_ID, _CLIENT_SECRET = "oauth_client_id_override", "oauth_client_secret_override"


def session_defaults(front: FrontendRequest) -> dict[str, Any]:
    """The connect session's ``integrations_config_defaults`` for this flow's integration, if any."""
    session = front.connect_session
    defaults = session.integrations_config_defaults if session is not None else None
    found = (defaults or {}).get(front.provider_config_key)
    return found if isinstance(found, dict) else {}


def _session_connection_config(front: FrontendRequest) -> dict[str, Any]:
    config = session_defaults(front).get("connection_config")
    return config if isinstance(config, dict) else {}


def authorization_params(request: web.Request, front: FrontendRequest, *, reserved: frozenset[str]) -> dict[str, str]:
    """The extra authorization parameters: the session's if it sets them, else the browser's; never reserved ones."""
    from_session = session_defaults(front).get("authorization_params")
    if isinstance(from_session, dict):
        given = {str(k): str(v) for k, v in from_session.items()}
    else:
        given = bracket_params(request.query, "authorization_params")
    dropped = sorted(name for name in given if name in reserved)
    if dropped:
        log.warning("authorization_params_dropped", names=dropped, provider_config_key=front.provider_config_key)
    return {name: value for name, value in given.items() if name not in reserved}


def session_scopes(front: FrontendRequest) -> tuple[list[str] | None, str | None]:
    """(oauth_scopes_override, user_scopes) the session fixes, each None when it leaves them to the browser."""
    scopes = _session_connection_config(front).get("oauth_scopes_override")
    user_scopes = session_defaults(front).get("user_scopes")
    return (
        [s for s in str(scopes).split(",") if s] if scopes else None,
        str(user_scopes) if user_scopes else None,
    )


@dataclass(frozen=True, kw_only=True)
class ClientOverride:
    """The OAuth client a flow runs with instead of the integration's (each part None: the integration's)."""

    client_id: str | None = None
    client_secret: str | None = None

    @property
    def given(self) -> bool:
        return self.client_id is not None or self.client_secret is not None


def client_override(request: web.Request, front: FrontendRequest) -> ClientOverride:
    """The client override this flow may use; FlowError when the browser asks for one it may not."""
    asked = {
        k: v
        for k, v in bracket_params(request.query, "credentials").items()
        if k in (_CLIENT_ID, _CLIENT_SECRET) and v not in ("", "undefined")  # the SDK's unset
    }
    allowed = _session_connection_config(front)
    chosen: dict[str, str | None] = {}
    for name in (_CLIENT_ID, _CLIENT_SECRET):
        fixed = allowed.get(name)
        if fixed:  # the backend chose it
            chosen[name] = str(fixed)
        elif name in allowed:  # the backend lets the user give it
            chosen[name] = asked.get(name)
        elif name in asked:
            raise FlowError(
                "override_not_allowed",
                f"credentials[{name}] needs a connect session that allows it "
                f"(integrations_config_defaults.{front.provider_config_key}.connection_config.{name}); "
                "the public key cannot change the integration's OAuth client.",
            )
        else:
            chosen[name] = None
    return ClientOverride(client_id=chosen[_CLIENT_ID], client_secret=chosen[_CLIENT_SECRET])
