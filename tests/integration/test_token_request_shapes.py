"""Nango catalog entries whose token requests and proxy headers are not the plain OAuth shape, end to
end through the gateway against providers on 127.0.0.1 that check what their documentation says:

- Kno Commerce (``body_format: query``): the grant in the token URL's query, the client in a Basic
  header, no body;
- Zoom Server-to-Server OAuth: ``grant_type=account_credentials`` with the ``account_id`` the
  connection was configured with (``${connectionConfig.accountId}`` in ``token_params``);
- Cisco Duo Admin API: every call signed with HMAC-SHA1 over the Date header, method, host, path
  and sorted parameters (``${hmacSha1Hex(...)}`` inside ``${base64(...)}`` in ``proxy.headers``);
- ConnectSecure: the connect-time verification call carries ``client-auth-token``, base64 of
  ``tenant+client_id:client_secret`` (``${base64(${connectionConfig.tenant}+${credentials.username}:...)}``).

The templates are the pinned Nango catalog's, with only their URLs pointed at the fakes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from .flow_helpers import get_connection
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

PINNED = Path(__file__).parents[1] / "sdk/node_modules/nango-providers-07110/providers.yaml"
CLIENT_ID, CLIENT_SECRET = "kno-client", "kno-secret"
ZOOM_ACCOUNT = "zoom-acct-42"
DUO_IKEY, DUO_SKEY = "DIWJ8X6AEYOR5OMC6TQ1", "Zh5eGmUq9zpfQnyUIu5OL9iWoMMv5ZNmk3zLJ4Ep"


def _basic_ok(request: web.Request) -> bool:
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return request.headers.get("Authorization") == expected


def _duo_canonical(params: list[tuple[str, str]]) -> str:
    """Duo's documented parameter canonicalization: sorted by key, RFC 3986 percent-encoding."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(params))


@dataclass
class Fakes:
    """Token endpoints and a Duo-like API, each answering as its provider documents."""

    base: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def kno_token(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append({"query": dict(request.query), "body": body.decode()})
        if not _basic_ok(request):
            return web.json_response({"error": "invalid_client"}, status=401)
        if request.query.get("grant_type") != "client_credentials" or body:
            return web.json_response({"error": "invalid_request"}, status=400)
        return web.json_response({"access_token": "kno-token", "token_type": "Bearer", "expires_in": 3600})

    async def zoom_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.seen.append({"form": dict(form)})
        if not _basic_ok(request):
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "account_credentials" or form.get("account_id") != ZOOM_ACCOUNT:
            return web.json_response({"error": "invalid_request", "reason": "Invalid account_id"}, status=400)
        return web.json_response({"access_token": "zoom-token", "token_type": "bearer", "expires_in": 3599})

    async def connectsecure_authorize(self, request: web.Request) -> web.Response:
        expected = base64.b64encode(b"acme+cs-client:cs-secret").decode()
        if request.headers.get("client-auth-token") != expected:
            return web.json_response({"status": False, "message": "Invalid credentials"}, status=401)
        return web.json_response({"status": True, "access_token": "cs-session"})

    async def duo(self, request: web.Request) -> web.Response:
        date = request.headers.get("Date", "")
        try:
            parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return web.json_response({"stat": "FAIL", "code": 40101, "message": "Missing or bad Date"}, status=401)
        if request.method == "POST":
            params = parse_qsl((await request.read()).decode(), keep_blank_values=True)
        else:
            params = list(request.query.items())
        canonical = "\n".join([date, request.method, request.host, request.path, _duo_canonical(params)])
        signature = hmac.new(DUO_SKEY.encode(), canonical.encode(), hashlib.sha1).hexdigest()
        expected = "Basic " + base64.b64encode(f"{DUO_IKEY}:{signature}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"stat": "FAIL", "code": 40103, "message": "Invalid signature"}, status=401)
        return web.json_response({"stat": "OK", "response": [{"username": "root"}]})


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    fakes = Fakes()
    app = web.Application()
    app.router.add_post("/kno/api/oauth2/token", fakes.kno_token)
    app.router.add_post("/zoom/oauth/token", fakes.zoom_token)
    app.router.add_route("*", "/duo/admin/v1/users", fakes.duo)
    app.router.add_post("/cs/w/authorize", fakes.connectsecure_authorize)
    async with TestServer(app, host="127.0.0.1") as server:
        fakes.base = str(server.make_url("")).rstrip("/")
        yield fakes


def _catalog(fakes: Fakes) -> dict[str, Any]:
    pinned = yaml.safe_load(PINNED.read_text(encoding="utf-8"))
    kno = {**pinned["kno-commerce"], "token_url": f"{fakes.base}/kno/api/oauth2/token"}
    zoom = {**pinned["zoom-cc"], "token_url": f"{fakes.base}/zoom/oauth/token"}
    duo = dict(pinned["cisco-duo-admin"])
    duo["proxy"] = {**duo["proxy"], "base_url": f"{fakes.base}/duo"}
    connectsecure = dict(pinned["connectsecure"])
    connectsecure["proxy"] = {**connectsecure["proxy"], "base_url": f"{fakes.base}/cs"}
    return {"kno-commerce": kno, "zoom-cc": zoom, "cisco-duo-admin": duo, "connectsecure": connectsecure}


@pytest.fixture
async def gw(fakes: Fakes, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, _catalog(fakes)),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gateway:
        unused = {"oauth_client_id": "unused", "oauth_client_secret": "unused"}  # OAUTH2_CC clients come per connection
        await create_integration(gateway, "kno-commerce", "kno", **unused)
        await create_integration(gateway, "zoom-cc", "zoom", **unused)
        await create_integration(gateway, "cisco-duo-admin", "duo")
        await create_integration(gateway, "connectsecure", "cs")
        yield gateway


async def _connect(gw: Gateway, key: str, connection_id: str, params: str = "") -> tuple[int, Any]:
    client = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    url = f"/oauth2/auth/{key}?connection_id={connection_id}&public_key={gw.public_key}{params}"
    resp = await gw.client.post(url, json=client)
    return resp.status, await resp.json()


async def test_body_format_query_reaches_a_provider_that_reads_the_query(gw: Gateway, fakes: Fakes) -> None:
    status, answer = await _connect(gw, "kno", "kno-1")
    assert status == 200, answer
    assert fakes.seen[-1] == {"query": {"grant_type": "client_credentials"}, "body": ""}
    credentials = (await get_connection(gw, "kno-1", "kno"))["credentials"]
    assert credentials["type"] == "OAUTH2_CC"
    assert credentials["token"] == "kno-token"


async def test_token_params_carry_the_connection_configuration(gw: Gateway, fakes: Fakes) -> None:
    status, answer = await _connect(gw, "zoom", "zoom-1", f"&params[accountId]={ZOOM_ACCOUNT}")
    assert status == 200, answer
    assert fakes.seen[-1]["form"] == {"grant_type": "account_credentials", "account_id": ZOOM_ACCOUNT}
    connection = await get_connection(gw, "zoom-1", "zoom")
    assert connection["credentials"]["token"] == "zoom-token"
    assert connection["connection_config"] == {"accountId": ZOOM_ACCOUNT}

    # Without the account the request is not sent with a placeholder in it: the flow says what is missing.
    sent = len(fakes.seen)
    status, answer = await _connect(gw, "zoom", "zoom-2")
    assert status == 400, answer
    assert answer["error"]["code"] == "missing_connection_config"
    assert "connectionConfig.accountId" in answer["error"]["message"]
    assert len(fakes.seen) == sent


async def test_duo_signed_proxy_calls(gw: Gateway) -> None:
    body = {
        "connection_id": "duo-1",
        "provider_config_key": "duo",
        "username": DUO_IKEY,
        "password": DUO_SKEY,
        "connection_config": {"hostname": "api-abc123.duosecurity.com"},
    }
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    ids = {"Connection-Id": "duo-1", "Provider-Config-Key": "duo", **gw.auth}
    resp = await gw.client.get("/proxy/admin/v1/users?username=root&realname=First%20Last", headers=ids)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["stat"] == "OK"
    form = {"Content-Type": "application/x-www-form-urlencoded", **ids}
    resp = await gw.client.post("/proxy/admin/v1/users", data="username=root&realname=First+Last", headers=form)
    assert resp.status == 200, await resp.text()
    # A wrong secret is refused by the provider, and the secret shows nowhere in the answer.
    wrong = {**body, "connection_id": "duo-2", "password": "x" * 40}
    assert (await gw.client.post("/connection", json=wrong, headers=gw.auth)).status == 201
    resp = await gw.client.get("/proxy/admin/v1/users", headers={**ids, "Connection-Id": "duo-2"})
    assert resp.status == 401
    assert "x" * 40 not in await resp.text()


async def test_verification_computes_its_headers_from_the_new_credentials(gw: Gateway) -> None:
    params = "&params[tenant]=acme&params[base_url]=pod1.myconnectsecure.com"
    url = f"/api-auth/basic/cs?connection_id=cs-1&public_key={gw.public_key}{params}"
    resp = await gw.client.post(url, json={"username": "cs-client", "password": "cs-secret"})
    assert resp.status == 200, await resp.text()
    assert (await get_connection(gw, "cs-1", "cs"))["connection_config"]["tenant"] == "acme"
    url = f"/api-auth/basic/cs?connection_id=cs-2&public_key={gw.public_key}{params}"
    resp = await gw.client.post(url, json={"username": "cs-client", "password": "wrong-secret"})
    assert resp.status == 400, await resp.text()
    answer = await resp.text()
    assert "connection_test_failed" in answer
    assert "wrong-secret" not in answer
