"""Who is calling: the secret key (backends) and the public key (browsers), as spec §1.1.

Each kind of caller is counted against its own budget of its environment (``http/ratelimit``): what
browsers send with the public key never uses up what the backend may send with the secret key.

A view of a ``secret_key`` route is wrapped in ``@secret_key``, which authenticates the caller before
the view runs and hands it the environment: a view cannot forget the key, and the route table checks
that its line says ``secret_key`` too (``openapi_spec.declare_auth``). The browser's credential (the
public key or a connect session token) has its wrapper beside what else it reads, in
``connect/frontend_request.py``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from keyway_shared.store import Environment

from ..env_cache import ENV_CACHE
from ..http.errors import ApiError
from ..http.ratelimit import check_rate
from ..openapi_spec import Handler, declare_auth
from ..resources import STORES
from .connect_sessions import TOKEN_PREFIX, ConnectSession

__all__ = [
    "UUID_V4",
    "SecretKeyOrSessionView",
    "SecretKeyView",
    "environment_from_public_key",
    "environment_from_secret_key",
    "live_session",
    "secret_key",
    "secret_key_or_connect_session",
    "secret_key_owner",
    "session_token",
]

SecretKeyView = Callable[[web.Request, Environment], Awaitable[web.StreamResponse]]
# Called with the connect session that calls, or None when the backend's secret key does.
SecretKeyOrSessionView = Callable[[web.Request, Environment, ConnectSession | None], Awaitable[web.StreamResponse]]

UUID_V4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.IGNORECASE)


async def environment_from_secret_key(request: web.Request) -> Environment:
    header = request.headers.get("Authorization")
    if not header:
        raise ApiError("missing_auth_header", "Authentication failed. The request is missing the Authorization header.")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            "malformed_auth_header", "Authentication failed. The Authorization header must be 'Bearer <key>'."
        )
    key = key.strip()
    if not UUID_V4.match(key):
        raise ApiError("invalid_secret_key_format", "Authentication failed. The provided secret key is not a UUID v4.")
    environment = await request.app[ENV_CACHE].by_secret_key(key)
    if environment is None:
        raise ApiError("unknown_user_account", "Authentication failed. The provided secret key is unknown.")
    check_rate(request, environment.name, "secret")
    return environment


def secret_key(view: SecretKeyView) -> Handler:
    """The view of a ``secret_key`` route: called as ``view(request, environment)`` once the key is known.

    The key is checked first, before the body is read: a stranger's body is never read, and a caller
    without a key learns nothing of what the route would have said of its body.
    """

    @functools.wraps(view)
    async def handler(request: web.Request) -> web.StreamResponse:
        return await view(request, await environment_from_secret_key(request))

    return declare_auth("secret_key", handler)


def session_token(request: web.Request) -> str | None:
    """The connect session token of an ``Authorization: Bearer nango_connect_session_…`` header, or
    None when the header carries something else (a secret key, or nothing)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token.startswith(TOKEN_PREFIX) else None


def _unknown_session() -> ApiError:
    return ApiError("unknown_connect_session_token", "The connect session is unknown, spent or expired.", status=401)


async def live_session(request: web.Request, token: str) -> ConnectSession:
    """The live connect session ``token`` names; an unknown, spent or expired one is refused (401)."""
    session = await request.app[STORES].connect_sessions.find(token)
    if session is None:
        raise _unknown_session()
    return session


def secret_key_or_connect_session(view: SecretKeyOrSessionView) -> Handler:
    """The view of a ``secret_key_or_connect_session`` route: ``view(request, environment, session)``.

    A Bearer token with the connect session prefix is a session and nothing else (an unknown or spent
    one is refused, never tried as a key, as Nango decides); any other header is checked as the secret
    key, with the secret key's answers. A session counts against its environment's browser budget.
    """

    @functools.wraps(view)
    async def handler(request: web.Request) -> web.StreamResponse:
        bearer = session_token(request)
        if bearer is None:
            return await view(request, await environment_from_secret_key(request), None)
        session = await live_session(request, bearer)
        environment = await request.app[STORES].environments.get(session.environment)
        if environment is None:
            raise _unknown_session()
        check_rate(request, environment.name, "public")
        return await view(request, environment, session)

    return declare_auth("secret_key_or_connect_session", handler)


async def environment_from_public_key(request: web.Request) -> Environment:
    key = request.query.get("public_key", "").strip()
    if not key:
        raise ApiError("missing_public_key", "Authentication failed. The request is missing a valid public key.")
    if not UUID_V4.match(key):
        raise ApiError("invalid_public_key", "Authentication failed. The provided public key is not a UUID v4.")
    environment = await request.app[ENV_CACHE].by_public_key(key)
    if environment is None:
        raise ApiError("unknown_user_account", "Authentication failed. The provided public key is unknown.")
    check_rate(request, environment.name, "public")
    return environment


async def secret_key_owner(request: web.Request) -> str | None:
    """The name of the secret key's environment, or None: whose ``Idempotency-Key`` the request carries.

    Not ``environment_from_secret_key``: the view's ``@secret_key`` calls that one, and the call counts
    against the rate limit; a lookup here is the environment cache's, a dictionary read when the key is warm.
    """
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not UUID_V4.match(secret):
        return None
    environment = await request.app[ENV_CACHE].by_secret_key(secret)
    return None if environment is None else environment.name
