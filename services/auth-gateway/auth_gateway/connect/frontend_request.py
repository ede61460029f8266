"""What every frontend-SDK request carries: public key, connection id, params, HMAC (spec §2.2, §7).

The environment's ``public_key_connect`` decides what the public key may do (refused, only with a
valid HMAC, or allowed); a connect session token always works, and then the browser names no
connection.

The view of a ``public_key`` route is wrapped in ``@public_key`` (or, when a browser tab rather than
an SDK reads the answer, ``@public_key_refusing_with``): the caller is authenticated before the view
runs, which is handed the environment and the request's common parameters.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from keyway_shared.compare import secrets_equal
from keyway_shared.store import Environment

from ..http.errors import ApiError
from ..http.ratelimit import check_rate
from ..http.requests import bracket_params
from ..openapi_spec import Handler, declare_auth
from ..operations.attempt_steps import new_operation_id
from ..operations.callers import environment_from_public_key
from ..operations.connect_sessions import ConnectSession
from ..resources import STORES

__all__ = [
    "FrontendRequest",
    "PublicKeyView",
    "Refusal",
    "check_hmac",
    "expected_hmac",
    "frontend_request",
    "public_key",
    "public_key_refusing_with",
]


@dataclass(kw_only=True)
class FrontendRequest:
    provider_config_key: str
    connection_id: str
    connection_config: dict[str, str]
    hmac: str | None
    operation_id: str = field(default_factory=new_operation_id)
    connect_session: ConnectSession | None = None

    @property
    def connect_session_id(self) -> str | None:
        return self.connect_session.id if self.connect_session else None

    def require_ids(self) -> None:
        if not self.connection_id:
            raise ApiError("missing_connection", "Missing param 'connection_id'.")
        if not self.provider_config_key:
            raise ApiError("missing_provider_config", "Missing param 'provider_config_key'.")
        allowed = self.connect_session.allowed_integrations if self.connect_session else None
        if allowed is not None and self.provider_config_key not in allowed:
            raise ApiError(
                "integration_not_allowed",
                f"This connect session does not allow the integration '{self.provider_config_key}'.",
                status=403,
            )


async def frontend_request(request: web.Request) -> tuple[Environment, FrontendRequest]:
    """Authenticate (public key or connect session token) and read the common parameters.

    ``require_ids`` checks them, inside the caller's error handling, so a failure after the
    environment is known can be announced in it.
    """
    provider_config_key = request.match_info.get("providerConfigKey", "").strip()
    connection_id = request.query.get("connection_id", "").strip()
    session: ConnectSession | None = None
    token = request.query.get("connect_session_token", "").strip()
    if token:
        stores = request.app[STORES]
        session = await stores.connect_sessions.find(token)
        found = await stores.environments.get(session.environment) if session else None
        if session is None or found is None:
            raise ApiError(
                "unknown_connect_session_token", "The connect session is unknown, spent or expired.", status=401
            )
        env = found
        check_rate(request, env.name, "public")  # a session is a browser's credential: the public budget
        connection_id = _session_connection_id(session, connection_id)
    else:
        env = await environment_from_public_key(request)
        _check_public_key_allowed(env)
    params = {k: v for k, v in bracket_params(request.query, "params").items() if v != "undefined"}
    return env, FrontendRequest(
        provider_config_key=provider_config_key,
        connection_id=connection_id,
        connection_config=params,
        hmac=request.query.get("hmac"),
        connect_session=session,
    )


PublicKeyView = Callable[[web.Request, Environment, FrontendRequest], Awaitable[web.StreamResponse]]
Refusal = Callable[[web.Request, ApiError], Awaitable[web.StreamResponse]]


def public_key(view: PublicKeyView) -> Handler:
    """The view of a ``public_key`` route: called as ``view(request, environment, front)`` once
    ``frontend_request`` has authenticated the caller; a refusal is the protocol's error envelope."""
    return _public_key_handler(view, refused=None)


def public_key_refusing_with(refused: Refusal) -> Callable[[PublicKeyView], Handler]:
    """``@public_key`` for a route a browser tab opens: ``refused(request, error)`` answers a refused
    credential (the popup's page, which also tells the SDK), instead of the JSON envelope."""
    return functools.partial(_public_key_handler, refused=refused)


def _public_key_handler(view: PublicKeyView, *, refused: Refusal | None) -> Handler:
    @functools.wraps(view)
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            env, front = await frontend_request(request)
        except ApiError as err:
            if refused is None:
                raise
            return await refused(request, err)
        return await view(request, env, front)

    return declare_auth("public_key", handler)


def _session_connection_id(session: ConnectSession, from_browser: str) -> str:
    """With a session the gateway names the connection (or the backend did, minting a reconnect
    session): a browser naming one could write over another end user's connection. Refused, as Nango does."""
    if from_browser:
        raise ApiError(
            "invalid_query_params",
            "connection_id is forbidden when using a connect session token: the gateway names the connection.",
            errors=[
                {
                    "code": "custom",
                    "message": "connection_id is forbidden when using session token",
                    "path": ["connection_id"],
                }
            ],
        )
    return session.connection_id or str(uuid.uuid4())


def _check_public_key_allowed(env: Environment) -> None:
    """``refused``: only connect sessions may connect, answered as Nango answers accounts created
    since it deprecated public-key authentication."""
    if env.public_key_connect == "refused":
        raise ApiError(
            "deprecated_authentication",
            "Public key authentication is deprecated. Please use connect session authentication instead.",
            status=401,
        )


def expected_hmac(key: str, provider_config_key: str, connection_id: str) -> str:
    return hmac.new(key.encode(), f"{provider_config_key}:{connection_id}".encode(), hashlib.sha256).hexdigest()


def check_hmac(env: Environment, front: FrontendRequest) -> None:
    if env.public_key_connect != "hmac" or front.connect_session is not None:
        return  # a connect session was minted with the secret key: it already proves the backend agreed
    if not env.hmac_key:  # anyone could compute an HMAC under an empty key
        raise ApiError("invalid_hmac", "The environment requires HMAC but has no HMAC key; its admin must set one.")
    if not front.hmac:
        raise ApiError("missing_hmac", "The environment requires an 'hmac' parameter.")
    expected = expected_hmac(env.hmac_key, front.provider_config_key, front.connection_id)
    if not secrets_equal(expected, front.hmac.strip().lower()):
        raise ApiError("invalid_hmac", "The 'hmac' parameter does not match.")
