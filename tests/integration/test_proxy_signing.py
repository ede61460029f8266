"""``/proxy`` on OAUTH1 and TBA connections: each request reaches the provider signed (RFC 5849).

The provider here is on 127.0.0.1 and trusts nothing it did not check: it recomputes every
signature from the request it received (method, URL and query, a form body's parameters) and the
secrets it issued, with tests/support/oauth1_provider.py's base string, not the gateway's code;
it refuses with 401 a wrong signature, an unknown consumer or token, a stale timestamp, a reused
nonce, and for NetSuite any method but HMAC-SHA256 or a realm other than the account's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from ..support.oauth1_provider import header_params, signature_base_string
from ..support.procs import free_port
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .proxy_setup import call

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

CONSUMER = ("consumer-key-5e1", "consumer-secret-77f0")
OAUTH1_TOKEN = ("o1-token-a9", "o1-token-secret-3c2")
TBA_TOKEN = ("tba-token-id-41", "tba-token-secret-d8")
ACCOUNT = "1234567-sb1"  # a sandbox account, as NetSuite's URLs write it
REALM = "1234567_SB1"  # as NetSuite's TBA header writes it
NETSUITE_PREFIX = "/services/rest/record/v1"
SECRETS = (CONSUMER[1], OAUTH1_TOKEN[1], TBA_TOKEN[1])


def _enc(value: str) -> str:
    return quote(value, safe="-._~")  # RFC 5849 §3.6


@dataclass
class SigningProvider:
    """An OAuth 1 API under ``/api`` (HMAC-SHA1) and NetSuite's record service (TBA) on one port."""

    port: int = field(default_factory=free_port)
    tokens: dict[str, str] = field(default_factory=lambda: dict([OAUTH1_TOKEN, TBA_TOKEN]))
    failures_left: int = 0  # answers 503 (after checking the signature) this many times first
    seen_nonces: set[str] = field(default_factory=set)
    verified: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> SigningProvider:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _problems(self, request: web.Request, oauth: dict[str, str], body: bytes) -> list[str]:
        netsuite = request.path.startswith(NETSUITE_PREFIX)
        method = oauth.get("oauth_signature_method", "")
        problems = []
        if netsuite and (method != "HMAC-SHA256" or oauth.get("realm") != REALM):
            problems.append(f"NetSuite wants HMAC-SHA256 and realm {REALM}")
        if not netsuite and method != "HMAC-SHA1":
            problems.append("this API signs with HMAC-SHA1")
        if oauth.get("oauth_consumer_key") != CONSUMER[0]:
            problems.append("unknown consumer")
        token_secret = self.tokens.get(oauth.get("oauth_token", ""))
        if token_secret is None:
            problems.append("unknown token")
        if abs(time.time() - int(oauth.get("oauth_timestamp") or 0)) > 300:
            problems.append("stale timestamp")
        nonce = oauth.get("oauth_nonce", "")
        if not nonce or nonce in self.seen_nonces:
            problems.append("nonce reused")
        self.seen_nonces.add(nonce)
        # RFC 5849 §3.4.1: the header's parameters but the signature and realm, the query's, a form body's.
        params = [(k, v) for k, v in oauth.items() if k not in {"oauth_signature", "realm"}]
        params += parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)
        if request.content_type == "application/x-www-form-urlencoded":
            params += parse_qsl(body.decode(), keep_blank_values=True)
        url = f"{request.scheme}://{request.host}{request.rel_url.raw_path}"
        digest = hashlib.sha256 if method == "HMAC-SHA256" else hashlib.sha1
        key = f"{_enc(CONSUMER[1])}&{_enc(token_secret or '')}".encode()
        base_string = signature_base_string(request.method, url, params)
        expected = base64.b64encode(hmac.new(key, base_string.encode(), digest).digest()).decode()
        if not hmac.compare_digest(expected, oauth.get("oauth_signature", "")):
            problems.append("bad signature")
        return problems

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        header = request.headers.get("Authorization", "")
        oauth = header_params(header)
        problems = await self._problems(request, oauth, body) if oauth else ["not signed"]
        if problems:
            self.refused.append(", ".join(problems))
            return web.json_response({"error": "signature_invalid", "problems": problems}, status=401)
        self.verified.append({"path": request.path, "nonce": oauth["oauth_nonce"], "header": header})
        if self.failures_left > 0:
            self.failures_left -= 1
            return web.json_response({"error": "try again"}, status=503)
        query = dict(parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True))
        return web.json_response({"path": request.path, "query": query, "body": body.decode()})


@pytest.fixture
async def provider() -> AsyncIterator[SigningProvider]:
    server = await SigningProvider().start()
    yield server
    await server.stop()


@pytest.fixture
async def gw(start_gateway: StartGateway, provider: SigningProvider, tmp_path: Path) -> AsyncIterator[Gateway]:
    oauth1 = {
        "auth_mode": "OAUTH1",
        "request_url": f"{provider.base}/oauth/request_token",
        "authorization_url": f"{provider.base}/oauth/authorize",
        "token_url": f"{provider.base}/oauth/access_token",
        "signature_method": "HMAC-SHA1",
        "proxy": {"base_url": f"{provider.base}/api"},
    }
    md5 = {**oauth1, "signature_method": "HMAC-MD5"}  # a method the proxy cannot compute
    catalog = providers_yaml(tmp_path, {"px-oauth1": oauth1, "px-oauth1-md5": md5})
    settings: dict[str, Any] = {"providers_file": catalog, "proxy_deadline_seconds": 6.0}
    async with start_gateway(**settings, egress_allowlist="127.0.0.0/8") as gateway:
        client = {"oauth_client_id": CONSUMER[0], "oauth_client_secret": CONSUMER[1]}
        await create_integration(gateway, "px-oauth1", "o1", **client)
        await create_integration(gateway, "netsuite-tba", "ns", **client)
        await create_integration(gateway, "px-oauth1-md5", "o1-md5", **client)
        for key, connection_id, secret in (
            ("o1", "o1-conn", OAUTH1_TOKEN[1]),
            ("o1", "o1-wrong", "not-the-secret"),
            ("o1-md5", "o1-md5-conn", OAUTH1_TOKEN[1]),
        ):
            body = {"oauth_token": OAUTH1_TOKEN[0], "oauth_token_secret": secret}
            resp = await gateway.client.post(
                "/connection",
                json={"connection_id": connection_id, "provider_config_key": key, **body},
                headers=gateway.auth,
            )
            assert resp.status == 201, await resp.text()
        # The TBA connection as the frontend SDK makes it: POST /auth/tba with the account in params.
        resp = await gateway.client.post(
            f"/auth/tba/ns?connection_id=ns-conn&public_key={gateway.public_key}&params[accountId]={ACCOUNT}",
            json={"token_id": TBA_TOKEN[0], "token_secret": TBA_TOKEN[1]},
        )
        assert resp.status == 200, await resp.text()
        yield gateway


async def test_oauth1_requests_reach_the_provider_signed(gw: Gateway, provider: SigningProvider) -> None:
    resp = await call(gw, "GET", "/items/a%2Fb?b=2&a=1%202&a=0&empty=", "o1-conn", "o1")
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["path"] == "/api/items/a/b"
    assert answer["query"]["b"] == "2"

    # A form body's parameters are signed; the provider recomputes the signature with them.
    form = "status=Hello%20Ladies%20%2B%20Gentlemen&x=1"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await call(gw, "POST", "/statuses?include=1", "o1-conn", "o1", headers=headers, data=form)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["body"] == form
    # Any other body is sent as it is and not signed.
    resp = await call(gw, "POST", "/items", "o1-conn", "o1", json={"name": "a=b&c"})
    assert resp.status == 200, await resp.text()
    assert json.loads((await resp.json())["body"]) == {"name": "a=b&c"}

    assert provider.refused == []
    assert len(provider.verified) == 3
    for seen in provider.verified:
        oauth = header_params(seen["header"])
        assert (oauth["oauth_consumer_key"], oauth["oauth_token"]) == (CONSUMER[0], OAUTH1_TOKEN[0])
        assert "realm" not in oauth


async def test_tba_requests_reach_netsuite_signed_with_the_account_as_realm(
    gw: Gateway, provider: SigningProvider
) -> None:
    base = {"Base-Url-Override": provider.base + NETSUITE_PREFIX}
    resp = await call(gw, "GET", "/customer?limit=5&q=name%20IS%20%22A%22", "ns-conn", "ns", headers=base)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["query"] == {"limit": "5", "q": 'name IS "A"'}
    resp = await call(gw, "POST", "/customer", "ns-conn", "ns", headers=base, json={"companyName": "Acme"})
    assert resp.status == 200, await resp.text()

    assert provider.refused == []
    assert [seen["path"] for seen in provider.verified] == [f"{NETSUITE_PREFIX}/customer"] * 2
    for seen in provider.verified:
        assert seen["header"].startswith(f'OAuth realm="{REALM}", ')
        oauth = header_params(seen["header"])
        assert oauth["oauth_signature_method"] == "HMAC-SHA256"
        assert (oauth["oauth_consumer_key"], oauth["oauth_token"]) == (CONSUMER[0], TBA_TOKEN[0])


async def test_every_retry_is_signed_anew(gw: Gateway, provider: SigningProvider) -> None:
    # The provider answers 503 twice, then 200, and refuses a nonce it has seen: a signature made
    # once and sent again would fail on the second attempt.
    for connection_id, key, path, headers in (
        ("o1-conn", "o1", "/flaky?page=2", {}),
        ("ns-conn", "ns", "/customer?page=2", {"Base-Url-Override": provider.base + NETSUITE_PREFIX}),
    ):
        provider.failures_left = 2
        before = len(provider.verified)
        resp = await call(gw, "GET", path, connection_id, key, headers={"Retries": "3", **headers})
        assert resp.status == 200, await resp.text()
        attempts = provider.verified[before:]
        assert len(attempts) == 3
        assert len({seen["nonce"] for seen in attempts}) == 3
    assert provider.refused == []


async def test_a_signature_the_provider_cannot_verify_is_refused_there(gw: Gateway, provider: SigningProvider) -> None:
    resp = await call(gw, "GET", "/items", "o1-wrong", "o1")  # stored with a token secret the provider never issued
    assert resp.status == 401
    assert (await resp.json())["problems"] == ["bad signature"]
    assert provider.refused == ["bad signature"]


async def test_no_secret_in_a_log_line_or_an_error(gw: Gateway, provider: SigningProvider) -> None:
    with capture_logs() as logs:
        ok = await call(gw, "GET", "/items?x=1", "o1-conn", "o1")
        assert ok.status == 200, await ok.text()
        base = {"Base-Url-Override": provider.base + NETSUITE_PREFIX}
        ns = await call(gw, "GET", "/customer", "ns-conn", "ns", headers=base)
        assert ns.status == 200, await ns.text()
        refused = await call(gw, "GET", "/items", "o1-md5-conn", "o1-md5")
        text = await refused.text()
    assert refused.status == 400, text
    assert json.loads(text)["error"]["code"] == "unsupported_auth"
    logged = json.dumps(logs, default=str)
    assert "proxied" in logged
    for secret in SECRETS:
        assert secret not in text
        assert secret not in logged
    assert len(provider.verified) == 2  # the refused call was not sent
