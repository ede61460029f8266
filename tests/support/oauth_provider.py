"""A small but strict OAuth 2 authorization server on 127.0.0.1, for tests.

Authorization code with PKCE (S256 verified), refresh tokens that rotate and revoke the whole grant
when an old one is reused (the strictest real-world behaviour), client credentials, and switchable
failures: the token endpoint can answer 4xx, 5xx, HTML, or nothing at all.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from .procs import free_port


@dataclass
class Grant:
    client_id: str
    scope: str
    refresh_tokens: list[str] = field(default_factory=list)  # every refresh token issued, newest last
    revoked: bool = False


@dataclass
class OAuthProvider:
    client_id: str = "test-client"
    client_secret: str = "test-client-secret"
    token_lifetime: int = 3600
    rotate_refresh_tokens: bool = True
    token_mode: str = "ok"  # ok | error_400 | error_500 | html | hang | invalid_grant
    authorize_mode: str = "approve"  # approve | deny
    port: int = field(default_factory=free_port)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)
    refresh_index: dict[str, str] = field(default_factory=dict)  # refresh token -> grant id
    used_refresh_tokens: set[str] = field(default_factory=set)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (grant id, expiry)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    reuse_detected: int = 0
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def integration_fields(self) -> dict[str, str]:
        """What an integration needs to be this server's client: ``oauth_client_id`` and ``oauth_client_secret``."""
        return {"oauth_client_id": self.client_id, "oauth_client_secret": self.client_secret}

    def template(self, **extra: Any) -> dict[str, Any]:
        """A provider-catalog entry pointing at this server."""
        return {
            "auth_mode": "OAUTH2",
            "authorization_url": f"{self.base}/authorize",
            "token_url": f"{self.base}/token",
            "proxy": {"base_url": self.base},
            **extra,
        }

    async def start(self) -> OAuthProvider:
        app = web.Application()
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/t/{tenant}/authorize", self._authorize)  # for ${connectionConfig.x} templates
        app.router.add_post("/t/{tenant}/token", self._token)
        app.router.add_get("/api/me", self._me)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.authorize_requests.append(query)
        redirect_uri, state = query.get("redirect_uri", ""), query.get("state", "")
        if query.get("client_id") != self.client_id and not query.get("client_id", "").startswith("override-"):
            return web.Response(status=400, text="unknown client")
        if self.authorize_mode == "deny":
            params = {"error": "access_denied", "error_description": "The user said no", "state": state}
            raise web.HTTPFound(f"{redirect_uri}?{urlencode(params)}")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "client_id": query.get("client_id"),
            "redirect_uri": redirect_uri,
            "challenge": query.get("code_challenge"),
            "scope": query.get("scope", ""),
        }
        raise web.HTTPFound(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")

    def _client(self, request: web.Request, form: dict[str, str]) -> tuple[str, str]:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, client_secret
        return form.get("client_id", ""), form.get("client_secret", "")

    def _issue(self, grant_id: str) -> dict[str, Any]:
        access = "at_" + secrets.token_urlsafe(16)
        self.access_tokens[access] = (grant_id, time.time() + self.token_lifetime)
        body: dict[str, Any] = {"access_token": access, "token_type": "bearer", "expires_in": self.token_lifetime}
        grant = self.grants[grant_id]
        if self.rotate_refresh_tokens or not grant.refresh_tokens:
            refresh = "rt_" + secrets.token_urlsafe(16)
            grant.refresh_tokens.append(refresh)
            self.refresh_index[refresh] = grant_id
            body["refresh_token"] = refresh
        body["scope"] = grant.scope
        return body

    async def _token(self, request: web.Request) -> web.StreamResponse:
        if request.content_type == "application/json":
            form = {k: str(v) for k, v in (await request.json()).items()}
        else:
            form = dict(await request.post())  # type: ignore[arg-type]
        client_id, client_secret = self._client(request, form)
        self.token_requests.append({**form, "_client_id": client_id, "_auth": request.headers.get("Authorization")})
        if self.token_mode == "hang":
            await asyncio.sleep(3600)
        if self.token_mode == "error_500":
            return web.Response(status=503, text="down for maintenance")
        if self.token_mode == "html":
            return web.Response(status=200, text="<html><body>Login</body></html>", content_type="text/html")
        if self.token_mode == "error_400":
            return web.json_response({"error": "invalid_request", "error_description": "bad request"}, status=400)
        valid_client = client_id == self.client_id and client_secret == self.client_secret
        if not valid_client and not (client_id.startswith("override-") and client_secret.startswith("override-")):
            return web.json_response({"error": "invalid_client"}, status=401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form, client_id)
        if grant_type == "refresh_token":
            return self._refresh(form)
        if grant_type == "client_credentials":
            grant_id = secrets.token_hex(8)
            self.grants[grant_id] = Grant(client_id=client_id, scope=form.get("scope", ""))
            body = self._issue(grant_id)
            body.pop("refresh_token", None)
            return web.json_response(body)
        return web.json_response({"error": "unsupported_grant_type"}, status=400)

    def _exchange_code(self, form: dict[str, str], client_id: str) -> web.Response:
        entry = self.codes.pop(form.get("code", ""), None)
        if entry is None or entry["redirect_uri"] != form.get("redirect_uri"):
            return web.json_response({"error": "invalid_grant", "error_description": "bad code"}, status=400)
        if entry["challenge"]:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != entry["challenge"]:
                return web.json_response({"error": "invalid_grant", "error_description": "PKCE failed"}, status=400)
        grant_id = secrets.token_hex(8)
        self.grants[grant_id] = Grant(client_id=client_id, scope=entry["scope"])
        body = self._issue(grant_id)
        body["team"] = {"id": "T123", "name": "Acme"}
        return web.json_response(body)

    def _refresh(self, form: dict[str, str]) -> web.Response:
        if self.token_mode == "invalid_grant":
            return web.json_response({"error": "invalid_grant", "error_description": "revoked"}, status=400)
        token = form.get("refresh_token", "")
        grant_id = self.refresh_index.get(token)
        grant = self.grants.get(grant_id or "")
        if grant is None or grant.revoked:
            return web.json_response({"error": "invalid_grant", "error_description": "unknown or revoked"}, status=400)
        if self.rotate_refresh_tokens and (token in self.used_refresh_tokens or token != grant.refresh_tokens[-1]):
            grant.revoked = True  # reuse of a rotated token: revoke the whole grant
            self.reuse_detected += 1
            return web.json_response({"error": "invalid_grant", "error_description": "token reused"}, status=400)
        self.used_refresh_tokens.add(token)
        return web.json_response(self._issue(grant_id or ""))

    async def _me(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        entry = self.access_tokens.get(token)
        if entry is None or entry[1] < time.time() or self.grants[entry[0]].revoked:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"id": "user-1", "grant": entry[0]})
