"""Fake authorization servers on 127.0.0.1 for providers whose token handling is not standard, each
answering as its provider documents, and the real catalog entry pointed at them.

- Salesforce: no ``expires_in``; ``POST {instance_url}/services/oauth2/introspect`` (RFC 7662) tells
  the session's expiry. The instance is an https origin on port 443 (the only kind of origin a
  stored ``instance_url`` may be), with a certificate of its own.
- Zendesk: an expiring token and a refresh token only when the request asks ``expires_in``.
- Shopify: an expiring offline token and a refresh token only with ``expiring=1``.
- Instagram and Threads: a short-lived token from the code, traded with ``GET /access_token`` for a
  60-day one, renewed with ``GET /refresh_access_token`` once at least a day old; no refresh token.
- TikTok Ads: a JSON exchange answered in TikTok's envelope, HTTP 200 even for errors.
- Slack: ``oauth.v2.access``, ``ok: false`` errors with HTTP 200, a user-token-only install (the
  token under ``authed_user``) and token rotation (bot and user tokens each with a refresh token).
"""

from __future__ import annotations

import re
import secrets
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from keyway_shared.providers import load_catalog

from .certificates import self_signed
from .procs import free_port

__all__ = [
    "FakeMeta",
    "FakeSalesforce",
    "FakeShopify",
    "FakeSlack",
    "FakeTikTokAds",
    "FakeZendesk",
    "local_entry",
]

_ORIGIN = re.compile(r"https://[^/\s|]+")
_URL_KEYS = ("authorization_url", "token_url", "refresh_url", "revocation_url")


def local_entry(provider: str, origin: str) -> dict[str, Any]:
    """The built-in catalog entry of ``provider`` with every origin it names replaced by ``origin``:
    its paths, parameters and hooks are the real ones."""
    entry = load_catalog().raw(provider)
    assert entry is not None, provider
    local = dict(entry)
    for key in _URL_KEYS:
        value = local.get(key)
        if isinstance(value, str):
            local[key] = _ORIGIN.sub(origin, value)
        elif isinstance(value, dict):
            local[key] = {mode: _ORIGIN.sub(origin, url) for mode, url in value.items()}
    proxy = dict(local.get("proxy") or {})
    if isinstance(proxy.get("base_url"), str):
        proxy["base_url"] = _ORIGIN.sub(origin, proxy["base_url"])
        local["proxy"] = proxy
    return local


def meta_error(message: str, status: int = 400) -> web.Response:
    """Meta's Graph API error body."""
    return web.json_response({"error": {"message": message, "type": "OAuthException", "code": 190}}, status=status)


@dataclass
class FakeProvider:
    """What every fake shares: a client, the authorize page, a record of every token request."""

    client_id: str = "quirk-client"
    client_secret: str = "quirk-client-secret"
    port: int = field(default_factory=free_port)
    codes: dict[str, str] = field(default_factory=dict)  # code -> redirect_uri
    requests: list[dict[str, Any]] = field(default_factory=list)
    _runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def integration_fields(self) -> dict[str, str]:
        return {"oauth_client_id": self.client_id, "oauth_client_secret": self.client_secret}

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> FakeProvider:
        app = web.Application()
        self.routes(app)
        await self._serve(app, "127.0.0.1", self.port)
        return self

    async def _serve(self, app: web.Application, host: str, port: int, context: ssl.SSLContext | None = None) -> None:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, host, port, ssl_context=context).start()

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    def callback_params(self, code: str) -> dict[str, str]:
        return {"code": code}

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.requests.append({"path": request.path, **query})
        code = secrets.token_urlsafe(12)
        self.codes[code] = query.get("redirect_uri", "")
        params = {**self.callback_params(code), "state": query.get("state", "")}
        raise web.HTTPFound(f"{query.get('redirect_uri', '')}?{urlencode(params)}")

    async def form(self, request: web.Request) -> dict[str, str]:
        if request.content_type == "application/json":
            body = {k: str(v) for k, v in (await request.json()).items()}
        else:
            body = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append({"path": request.path, "headers": dict(request.headers), **body})
        return body

    def client_ok(self, form: Mapping[str, str]) -> bool:
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    def code_ok(self, form: Mapping[str, str], code_key: str = "code") -> bool:
        redirect = self.codes.pop(form.get(code_key, ""), None)
        return redirect is not None

    def token_requests(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


@dataclass
class FakeSalesforce(FakeProvider):
    """The login host (token endpoint) on this port; the org's instance, where introspection is,
    at ``https://{instance_address}`` (port 443)."""

    instance_address: str = "127.0.0.61"
    session_seconds: int = 7200  # the org's session timeout
    introspection: str = "ok"  # ok | down | inactive
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> issued at
    refresh_tokens: set[str] = field(default_factory=set)
    certificate_pem: bytes = b""

    @property
    def instance_url(self) -> str:
        return f"https://{self.instance_address}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/services/oauth2/authorize", self.authorize)
        app.router.add_post("/services/oauth2/token", self._token)

    async def start_instance(self) -> None:
        context, self.certificate_pem = self_signed(addresses=[self.instance_address])
        app = web.Application()
        app.router.add_post("/services/oauth2/introspect", self._introspect)
        await self._serve(app, self.instance_address, 443, context)

    def _issue(self) -> dict[str, Any]:
        token = "00D" + secrets.token_urlsafe(16)
        now = time.time()
        self.tokens[token] = now
        return {
            "access_token": token,
            "instance_url": self.instance_url,
            "id": "https://login.salesforce.com/id/00Dxx/005xx",
            "token_type": "Bearer",
            "issued_at": str(int(now * 1000)),
            "signature": "c2lnbmF0dXJl",
            "scope": "refresh_token api",
        }

    async def _token(self, request: web.Request) -> web.Response:
        form = await self.form(request)
        if not self.client_ok(form):
            return web.json_response({"error": "invalid_client", "error_description": "invalid client"}, status=400)
        if form.get("grant_type") == "authorization_code" and self.code_ok(form):
            body = self._issue()
            refresh = "5Aep" + secrets.token_urlsafe(16)
            self.refresh_tokens.add(refresh)
            return web.json_response({**body, "refresh_token": refresh})
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            return web.json_response(self._issue())  # Salesforce keeps the refresh token
        return web.json_response({"error": "invalid_grant", "error_description": "expired"}, status=400)

    async def _introspect(self, request: web.Request) -> web.Response:
        form = await self.form(request)
        if self.introspection == "down":
            return web.Response(status=503, text="Service Unavailable")
        if not self.client_ok(form):
            return web.json_response({"error": "invalid_client"}, status=401)
        issued = self.tokens.get(form.get("token", ""))
        if issued is None or self.introspection == "inactive":
            return web.json_response({"active": False})
        return web.json_response(
            {
                "active": True,
                "scope": "refresh_token api",
                "client_id": self.client_id,
                "username": "admin@acme.example",
                "sub": "https://login.salesforce.com/id/00Dxx/005xx",
                "token_type": "access_token",
                "exp": int(issued) + self.session_seconds,
                "iat": int(issued),
                "nbf": int(issued),
            }
        )


@dataclass
class FakeZendesk(FakeProvider):
    refresh_tokens: set[str] = field(default_factory=set)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/oauth/authorizations/new", self.authorize)
        app.router.add_post("/oauth/tokens", self._token)

    def _issue(self, form: Mapping[str, str]) -> dict[str, Any]:
        body: dict[str, Any] = {"access_token": secrets.token_hex(16), "token_type": "bearer", "scope": "read"}
        if form.get("expires_in"):  # only then an expiring token, with a refresh token
            refresh = secrets.token_hex(16)
            self.refresh_tokens.add(refresh)
            body |= {"expires_in": int(form["expires_in"]), "refresh_token": refresh}
            body |= {"refresh_token_expires_in": 2592000}
        return body

    async def _token(self, request: web.Request) -> web.Response:
        form = await self.form(request)
        if not self.client_ok(form):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") == "authorization_code" and self.code_ok(form):
            return web.json_response(self._issue(form))
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            self.refresh_tokens.discard(form["refresh_token"])  # rotated
            return web.json_response(self._issue(form))
        return web.json_response({"error": "invalid_grant"}, status=400)


@dataclass
class FakeShopify(FakeProvider):
    refresh_tokens: set[str] = field(default_factory=set)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/admin/oauth/authorize", self.authorize)
        app.router.add_post("/admin/oauth/access_token", self._token)

    def _expiring(self) -> dict[str, Any]:
        refresh = "shprt_" + secrets.token_hex(16)
        self.refresh_tokens.add(refresh)
        return {
            "access_token": "shpat_" + secrets.token_hex(16),
            "scope": "read_orders",
            "expires_in": 3600,
            "refresh_token": refresh,
            "refresh_token_expires_in": 7776000,
        }

    async def _token(self, request: web.Request) -> web.Response:
        form = await self.form(request)
        if not self.client_ok(form):
            return web.json_response({"error": "invalid_request"}, status=400)
        if form.get("grant_type") == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return web.json_response({"error": "invalid_subject_token"}, status=400)
            self.refresh_tokens.discard(form["refresh_token"])
            return web.json_response(self._expiring())
        if not self.code_ok(form):
            return web.json_response({"error": "invalid_request"}, status=400)
        if form.get("expiring") == "1":
            return web.json_response(self._expiring())
        return web.json_response({"access_token": "shpat_" + secrets.token_hex(16), "scope": "read_orders"})


@dataclass
class FakeMeta(FakeProvider):
    """Instagram (``prefix="ig"``) or Threads (``"th"``)."""

    prefix: str = "ig"
    min_refresh_age: float = 86400.0  # a long-lived token refreshes once at least a day old
    refuse_exchange: bool = False
    long_lived: dict[str, float] = field(default_factory=dict)  # token -> issued at
    short_lived: set[str] = field(default_factory=set)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/oauth/authorize", self.authorize)
        app.router.add_post("/oauth/access_token", self._code)
        app.router.add_get("/access_token", self._exchange)
        app.router.add_get("/refresh_access_token", self._refresh)

    def age_tokens(self, seconds: float) -> None:
        self.long_lived = {token: issued - seconds for token, issued in self.long_lived.items()}

    async def _code(self, request: web.Request) -> web.Response:
        form = await self.form(request)
        if not self.client_ok(form) or form.get("grant_type") != "authorization_code" or not self.code_ok(form):
            return web.json_response(
                {"error_type": "OAuthException", "code": 400, "error_message": "bad code"}, status=400
            )
        token = f"{self.prefix.upper()}S" + secrets.token_hex(12)
        self.short_lived.add(token)
        body: dict[str, Any] = {"access_token": token, "user_id": 17841400000000001}
        if self.prefix == "ig":
            body["permissions"] = "instagram_business_basic,instagram_business_manage_messages"
        return web.json_response(body)

    def _issue_long(self) -> web.Response:
        token = f"{self.prefix.upper()}L" + secrets.token_hex(16)
        self.long_lived[token] = time.time()
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": 5183944})

    async def _exchange(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append({"path": request.path, **query})
        if (
            query.get("grant_type") != f"{self.prefix}_exchange_token"
            or query.get("client_secret") != self.client_secret
        ):
            return meta_error("Invalid exchange request")
        if query.get("access_token") not in self.short_lived or self.refuse_exchange:
            return meta_error("Invalid OAuth access token")
        self.short_lived.discard(query["access_token"])
        return self._issue_long()

    async def _refresh(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.requests.append({"path": request.path, **query})
        issued = self.long_lived.get(query.get("access_token", ""))
        if query.get("grant_type") != f"{self.prefix}_refresh_token" or issued is None:
            return meta_error("Invalid OAuth access token")
        if time.time() - issued < self.min_refresh_age:
            return meta_error("The access token is too new to be refreshed")
        return self._issue_long()


@dataclass
class FakeTikTokAds(FakeProvider):
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/portal/auth", self.authorize)
        app.router.add_post("/open_api/v1.3/oauth2/access_token/", self._token)

    def callback_params(self, code: str) -> dict[str, str]:
        return {"auth_code": code, "code": code}

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("app_id") != self.client_id:  # TikTok names the client app_id
            return web.Response(status=400, text="unknown app")
        return await super().authorize(request)

    async def _token(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.json_response({"code": 40002, "message": "Content-Type must be application/json", "data": {}})
        body = await self.form(request)
        request_id = secrets.token_hex(8)
        if body.get("app_id") != self.client_id or body.get("secret") != self.client_secret:
            return web.json_response({"code": 40001, "message": "Invalid secret", "request_id": request_id, "data": {}})
        if not self.code_ok(body, "auth_code"):
            return web.json_response(
                {"code": 40110, "message": "Auth code expired", "request_id": request_id, "data": {}}
            )
        data = {"access_token": secrets.token_hex(20), "advertiser_ids": ["7012345678901234567"], "scope": [4, 7]}
        return web.json_response({"code": 0, "message": "OK", "request_id": request_id, "data": data})


@dataclass
class FakeSlack(FakeProvider):
    install: str = "bot_and_user"  # bot_and_user | user_only
    rotation: bool = True
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> "bot" | "user"
    user_refresh: str = "ok"  # ok | fail

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/oauth/v2/authorize", self.authorize)
        app.router.add_post("/api/oauth.v2.access", self._token)

    def _token_of(self, kind: str) -> dict[str, Any]:
        token = ("xoxe.xoxb-" if kind == "bot" else "xoxe.xoxp-") + secrets.token_hex(10)
        body: dict[str, Any] = {"access_token": token, "token_type": kind}
        if self.rotation:
            refresh = "xoxe-1-" + secrets.token_hex(12)
            self.refresh_tokens[refresh] = kind
            body |= {"refresh_token": refresh, "expires_in": 43200 if kind == "bot" else 40000}
        return body

    async def _token(self, request: web.Request) -> web.Response:
        form = await self.form(request)
        if not self.client_ok(form):
            return web.json_response({"ok": False, "error": "invalid_client_id"})
        if form.get("grant_type") == "refresh_token":
            kind = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if kind is None or (kind == "user" and self.user_refresh == "fail" and self.install != "user_only"):
                return web.json_response({"ok": False, "error": "invalid_refresh_token"})
            return web.json_response({"ok": True, **self._token_of(kind), "team": {"id": "T1"}})
        if not self.code_ok(form):
            return web.json_response({"ok": False, "error": "invalid_code"})
        user = {"id": "U1", "scope": "search:read", **self._token_of("user")}
        body: dict[str, Any] = {"ok": True, "app_id": "A1", "team": {"id": "T1", "name": "Acme"}, "authed_user": user}
        if self.install == "bot_and_user":
            body |= {**self._token_of("bot"), "scope": "chat:write", "bot_user_id": "B1"}
        return web.json_response(body)
