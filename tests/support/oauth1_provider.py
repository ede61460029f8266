"""A small OAuth 1.0a provider on 127.0.0.1, for tests: request token, authorize, access token.

Signatures are checked by recomputing HMAC-SHA1 here from RFC 5849 (§3.4.1 base string, §3.6
encoding), independently of the authlib code that signs them in the gateway. Timestamps must be
fresh and nonces unused. Switchable failures: the user denies, the callback loses its verifier,
the access-token endpoint answers 503.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from aiohttp import web

from .procs import free_port


def _enc(value: str) -> str:
    return quote(value, safe="-._~")


def header_params(header: str) -> dict[str, str]:
    if not header.startswith("OAuth "):
        return {}
    params: dict[str, str] = {}
    for item in header[len("OAuth ") :].split(","):
        key, _, value = item.strip().partition("=")
        params[unquote(key)] = unquote(value.strip('"'))
    return params


def signature_base_string(method: str, url: str, params: list[tuple[str, str]]) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = (parts.scheme == "http" and parts.port == 80) or (parts.scheme == "https" and parts.port == 443)
    netloc = host if parts.port is None or default else f"{host}:{parts.port}"
    base_uri = f"{parts.scheme.lower()}://{netloc.lower()}{parts.path or '/'}"
    normalized = "&".join(f"{k}={v}" for k, v in sorted((_enc(k), _enc(v)) for k, v in params))
    return "&".join([method.upper(), _enc(base_uri), _enc(normalized)])


def hmac_sha1(base_string: str, consumer_secret: str, token_secret: str) -> str:
    key = f"{_enc(consumer_secret)}&{_enc(token_secret)}"
    return base64.b64encode(hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()).decode()


@dataclass
class RequestToken:
    secret: str
    callback: str
    verifier: str | None = None


@dataclass
class OAuth1Provider:
    consumer_key: str = "oauth1-consumer"
    consumer_secret: str = "oauth1-consumer-secret"
    authorize_mode: str = "approve"  # approve | deny | no_verifier
    access_mode: str = "ok"  # ok | error_500
    port: int = field(default_factory=free_port)
    request_tokens: dict[str, RequestToken] = field(default_factory=dict)
    access_tokens: dict[str, str] = field(default_factory=dict)  # token -> secret
    issued_secrets: list[str] = field(default_factory=list)  # every request-token secret handed out
    seen_nonces: set[str] = field(default_factory=set)
    requests: list[dict[str, Any]] = field(default_factory=list)  # every signed request, its params
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def template(self, **extra: Any) -> dict[str, Any]:
        return {
            "auth_mode": "OAUTH1",
            "request_url": f"{self.base}/oauth/request_token",
            "authorization_url": f"{self.base}/oauth/authorize",
            "token_url": f"{self.base}/oauth/access_token",
            "signature_method": "HMAC-SHA1",
            "proxy": {"base_url": self.base},
            **extra,
        }

    async def start(self) -> OAuth1Provider:
        app = web.Application()
        app.router.add_post("/oauth/request_token", self._request_token)
        app.router.add_get("/oauth/authorize", self._authorize)
        app.router.add_post("/oauth/access_token", self._access_token)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _verified(self, request: web.Request, token_secret: str) -> dict[str, str] | None:
        """The request's oauth and extra parameters if its HMAC-SHA1 signature holds, else None."""
        oauth = header_params(request.headers.get("Authorization", ""))
        form = dict(await request.post()) if request.content_type == "application/x-www-form-urlencoded" else {}
        params = [(k, v) for k, v in oauth.items() if k not in {"oauth_signature", "realm"}]
        params += list(request.query.items()) + [(k, str(v)) for k, v in form.items()]
        url = f"{request.scheme}://{request.host}{request.path}"
        expected = hmac_sha1(signature_base_string(request.method, url, params), self.consumer_secret, token_secret)
        problems = []
        if oauth.get("oauth_consumer_key") != self.consumer_key:
            problems.append("unknown consumer")
        if oauth.get("oauth_signature_method") != "HMAC-SHA1":
            problems.append("not HMAC-SHA1")
        if not hmac.compare_digest(expected, oauth.get("oauth_signature", "")):
            problems.append("bad signature")
        if abs(time.time() - int(oauth.get("oauth_timestamp", "0"))) > 300:
            problems.append("stale timestamp")
        nonce = oauth.get("oauth_nonce", "")
        if not nonce or nonce in self.seen_nonces:
            problems.append("nonce reused")
        self.seen_nonces.add(nonce)
        if problems:
            self.rejected.append(", ".join(problems))
            return None
        everything = dict(params)
        self.requests.append({"path": request.path, **everything})
        return everything

    @staticmethod
    def _form(values: dict[str, str], status: int = 200) -> web.Response:
        return web.Response(status=status, text=urlencode(values), content_type="application/x-www-form-urlencoded")

    async def _request_token(self, request: web.Request) -> web.Response:
        params = await self._verified(request, "")
        if params is None or not params.get("oauth_callback"):
            return self._form({"oauth_problem": "signature_invalid"}, status=401)
        token, secret = "rt_" + secrets.token_urlsafe(12), secrets.token_urlsafe(16)
        self.request_tokens[token] = RequestToken(secret=secret, callback=params["oauth_callback"])
        self.issued_secrets.append(secret)
        return self._form({"oauth_token": token, "oauth_token_secret": secret, "oauth_callback_confirmed": "true"})

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.authorize_requests.append(query)
        entry = self.request_tokens.get(query.get("oauth_token", ""))
        if entry is None:
            return web.Response(status=400, text="unknown request token")
        separator = "&" if "?" in entry.callback else "?"
        if self.authorize_mode == "deny":
            raise web.HTTPFound(f"{entry.callback}{separator}{urlencode({'denied': query['oauth_token']})}")
        entry.verifier = secrets.token_urlsafe(8)
        back = {"oauth_token": query["oauth_token"], "oauth_verifier": entry.verifier}
        if self.authorize_mode == "no_verifier":
            del back["oauth_verifier"]
        raise web.HTTPFound(f"{entry.callback}{separator}{urlencode(back)}")

    async def _access_token(self, request: web.Request) -> web.Response:
        if self.access_mode == "error_500":
            return web.Response(status=503, text="over capacity")
        oauth = header_params(request.headers.get("Authorization", ""))
        entry = self.request_tokens.get(oauth.get("oauth_token", ""))
        if entry is None:
            return self._form({"oauth_problem": "token_rejected"}, status=401)
        params = await self._verified(request, entry.secret)
        if params is None or entry.verifier is None or params.get("oauth_verifier") != entry.verifier:
            return self._form({"oauth_problem": "verifier_invalid"}, status=401)
        del self.request_tokens[oauth["oauth_token"]]  # a request token is good for one exchange
        token, secret = "at_" + secrets.token_urlsafe(12), secrets.token_urlsafe(16)
        self.access_tokens[token] = secret
        return self._form({"oauth_token": token, "oauth_token_secret": secret, "user_id": "42", "screen_name": "ada"})
