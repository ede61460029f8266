"""A provider that hands out short-lived tokens for credentials (Nango's TWO_STEP), on 127.0.0.1.

It checks what such providers check, and nothing lighter:

- ``POST /login`` (JSON ``{username, password}``, as AgencyZoom or Valley): the pair must be the
  account's; the answer nests the token (``data.accessToken``), its lifetime in seconds and a
  refresh token;
- ``POST /refresh`` (JSON ``{refresh_token}``): a refresh token it issued and has not spent;
- ``POST /oauth/token`` (form ``grant_type=client_credentials`` with ``Authorization: Basic`` of the
  app id and key, as Heap or Altrata): an ISO ``expires`` date in the answer;
- ``GET /discovery`` then ``POST /session`` (Docuware's and Sellercloud's chained steps): the
  first tells where the second is, the second wants the first's ``ticket``;
- ``POST /assertion/token`` (form, RFC 7523 ``client_assertion``, as NetSuite or Apple Business
  Manager): a JWT signed with the key whose public half is ``assertion_key``, for this endpoint;
- ``GET /api/me``: only with a live token, in ``x-api-token`` or as ``Authorization: Bearer``.
"""

from __future__ import annotations

import base64
import itertools
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from authlib.deprecate import AuthlibDeprecationWarning

from .procs import free_port

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
    from authlib.jose import JsonWebToken
    from authlib.jose.errors import JoseError

__all__ = ["TwoStepProvider", "two_step_provider"]


@dataclass
class TwoStepProvider:
    base: str = ""
    username: str = "api-user"
    password: str = "s3cret pass&word"
    app_id: str = "app-1"
    app_key: str = "app-key-1"
    lifetime_seconds: int = 3600
    assertion_key: Any = None  # the public key client assertions must verify with
    live: set[str] = field(default_factory=set)  # tokens /api/me accepts
    refresh_tokens: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)  # what each token call carried
    _serial: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _mint(self) -> tuple[str, str]:
        number = next(self._serial)
        token, refresh = f"tok-{number}", f"rt-{number}"
        self.live.add(token)
        self.refresh_tokens.add(refresh)
        return token, refresh

    def _seen(self, request: web.Request, body: Any) -> None:
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body})

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._seen(request, body)
        if body.get("username") != self.username or body.get("password") != self.password:
            return web.json_response({"message": "bad credentials"}, status=401)
        token, refresh = self._mint()
        data = {"accessToken": token, "expiresIn": self.lifetime_seconds}
        return web.json_response({"data": data, "refreshToken": refresh})

    async def refresh(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._seen(request, body)
        given = body.get("refresh_token")
        if given not in self.refresh_tokens:
            return web.json_response({"message": "unknown refresh token"}, status=401)
        self.refresh_tokens.discard(given)
        token, refresh = self._mint()
        data = {"accessToken": token, "expiresIn": self.lifetime_seconds}
        return web.json_response({"data": data, "refreshToken": refresh})

    async def client_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self._seen(request, form)
        expected = "Basic " + base64.b64encode(f"{self.app_id}:{self.app_key}".encode()).decode()
        if request.headers.get("Authorization") != expected or form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "invalid_client"}, status=401)
        token, _ = self._mint()
        expires = (datetime.now(UTC) + timedelta(seconds=self.lifetime_seconds)).isoformat()
        return web.json_response({"access_token": token, "expires": expires})

    async def discovery(self, request: web.Request) -> web.Response:
        self._seen(request, None)
        if request.query.get("user") != self.username:
            return web.json_response({"message": "unknown user"}, status=404)
        return web.json_response({"sessionUrl": f"{self.base}/session", "ticket": "ticket-9"})

    async def session(self, request: web.Request) -> web.Response:
        body = await request.json()
        self._seen(request, body)
        if body.get("ticket") != "ticket-9" or body.get("password") != self.password:
            return web.json_response({"message": "bad ticket"}, status=403)
        token, _ = self._mint()
        return web.json_response({"sessionId": token, "instance": f"{self.base}"})

    async def assertion_token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self._seen(request, form)
        jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        if form.get("client_assertion_type") != jwt_bearer or self.assertion_key is None:
            return web.json_response({"error": "invalid_request"}, status=400)
        try:
            claims = JsonWebToken(["RS256"]).decode(str(form.get("client_assertion")), self.assertion_key)
            claims.validate()
        except (JoseError, ValueError):
            return web.json_response({"error": "invalid_client"}, status=401)
        if claims.get("aud") != f"{self.base}/assertion/token":
            return web.json_response({"error": "invalid_client", "error_description": "audience"}, status=401)
        token, _ = self._mint()
        return web.json_response({"access_token": token, "expires_in": self.lifetime_seconds})

    async def me(self, request: web.Request) -> web.Response:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = request.headers.get("x-api-token") or bearer
        if token not in self.live:
            return web.json_response({"message": "not authenticated"}, status=401)
        return web.json_response({"user": self.username, "token": token})


@asynccontextmanager
async def two_step_provider() -> AsyncIterator[TwoStepProvider]:
    provider = TwoStepProvider()
    app = web.Application()
    app.router.add_post("/login", provider.login)
    app.router.add_post("/refresh", provider.refresh)
    app.router.add_post("/oauth/token", provider.client_token)
    app.router.add_get("/discovery", provider.discovery)
    app.router.add_post("/session", provider.session)
    app.router.add_post("/assertion/token", provider.assertion_token)
    app.router.add_get("/api/me", provider.me)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    provider.base = f"http://127.0.0.1:{port}"
    try:
        yield provider
    finally:
        await runner.cleanup()
