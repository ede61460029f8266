"""``/proxy``: credentials injected per auth mode, what is and is not forwarded either way, bodies
streamed, retries and their waits, the egress guard, and refresh before the call."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientPayloadError
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from ..support.oauth_provider import OAuthProvider
from ..support.procs import free_port
from ..support.scripted_upstream import ScriptedUpstream, big_body
from .gateway_app import Gateway, StartGateway, providers_yaml
from .proxy_setup import call, seed, templates
from .test_gateway_api import assert_envelope
from .test_oauth2_flow import run_flow

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    server = await ScriptedUpstream().start()
    yield server
    await server.stop()


@pytest.fixture
async def oauth() -> AsyncIterator[OAuthProvider]:
    server = await OAuthProvider().start()
    yield server
    await server.stop()


@pytest.fixture
def gateway_args(upstream: ScriptedUpstream, oauth: OAuthProvider, tmp_path: Path) -> dict[str, Any]:
    return {
        "providers_file": providers_yaml(tmp_path, templates(upstream, oauth)),
        "provider_timeout_seconds": 2.0,
        "proxy_read_timeout_seconds": 2.0,
        "proxy_deadline_seconds": 6.0,
    }


@pytest.fixture
async def gw(start_gateway: StartGateway, gateway_args: dict[str, Any], oauth: OAuthProvider) -> AsyncIterator[Gateway]:
    async with start_gateway(**gateway_args, egress_allowlist="127.0.0.0/8") as gateway:
        await seed(gateway, oauth)
        yield gateway


async def test_oauth2_bearer_and_what_is_forwarded_each_way(gw: Gateway, upstream: ScriptedUpstream) -> None:
    resp = await call(
        gw,
        "GET",
        "/echo/a%2Fb/c?x=1&x=2&y=%20z",
        "c-oauth",
        "oauth2",
        headers={
            "Accept": "application/json",
            "Cookie": "gateway_session=secret",
            "X-Not-Forwarded": "1",
            "Nango-Proxy-X-Custom": "custom",
            "Nango-Proxy-Host": "evil.example",
        },
    )
    assert resp.status == 200, await resp.text()
    seen = upstream.calls[-1]
    assert seen.raw_path == "/echo/a%2Fb/c"  # the endpoint goes as the client encoded it
    assert seen.query == {"x": ["1", "2"], "y": [" z"]}
    assert seen.headers["Authorization"] == "Bearer tok-oauth"
    assert gw.secret_key not in json.dumps(dict(seen.headers))
    assert seen.headers["X-Custom"] == "custom"
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["Host"] == f"127.0.0.1:{upstream.port}"
    for name in ("Cookie", "X-Not-Forwarded", "Connection-Id", "Provider-Config-Key", "Nango-Proxy-X-Custom"):
        assert name not in seen.headers
    # back: the upstream's status, headers and body; not its cookie nor its CORS policy
    assert resp.headers["X-Upstream"] == "echo"
    assert resp.headers["X-RateLimit-Remaining"] == "42"
    assert resp.headers.getall("X-Multi") == ["one", "two"]
    assert "Set-Cookie" not in resp.headers
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert (await resp.json())["path"] == "/echo/a/b/c"


async def test_api_key_through_template_headers_and_query(gw: Gateway, upstream: ScriptedUpstream) -> None:
    resp = await call(gw, "GET", "/echo/h", "c-keyh", "keyh")
    assert resp.status == 200
    assert upstream.calls[-1].headers["X-Api-Key"] == "key-headers"
    assert "Authorization" not in upstream.calls[-1].headers  # an API key goes only where the template says

    resp = await call(gw, "GET", "/echo/q?page=2", "c-keyq", "keyq")
    assert resp.status == 200
    assert upstream.calls[-1].path == "/echo/q"
    assert upstream.calls[-1].query == {"page": ["2"], "api_key": ["sk-query-9f3a"]}
    assert "Authorization" not in upstream.calls[-1].headers


async def test_basic_credentials(gw: Gateway, upstream: ScriptedUpstream) -> None:
    resp = await call(gw, "GET", "/echo/basic", "c-basic", "basic")
    assert resp.status == 200
    assert upstream.calls[-1].headers["Authorization"] == "Basic " + base64.b64encode(b"user:pa:ss").decode()


async def test_connection_config_in_base_url_and_headers(gw: Gateway, upstream: ScriptedUpstream) -> None:
    resp = await call(gw, "GET", "/echo/x", "c-tenant", "tenant")
    assert resp.status == 200
    seen = upstream.calls[-1]
    assert seen.path == "/t/acme/echo/x"
    assert seen.headers["X-Tenant"] == "acme"
    assert seen.headers["Authorization"] == "Bearer key-tenant"
    resp = await call(gw, "GET", "/echo/x", "c-no-tenant", "tenant")
    assert resp.status == 400
    body = await resp.json()
    assert_envelope(body, "missing_connection_config")
    assert "connectionConfig.tenant" in body["error"]["message"]


async def test_base_url_override_and_missing_base_url(gw: Gateway, upstream: ScriptedUpstream) -> None:
    resp = await call(gw, "GET", "/echo/z", "c-nobase", "nobase")
    assert resp.status == 400
    assert_envelope(await resp.json(), "missing_base_api_url")
    resp = await call(gw, "GET", "/echo/z", "c-nobase", "nobase", headers={"Base-Url-Override": ""})
    assert resp.status == 400  # the node SDK sends an empty override when none is given
    resp = await call(gw, "GET", "/echo/z", "c-nobase", "nobase", headers={"Base-Url-Override": upstream.base + "/v2/"})
    assert resp.status == 200
    assert upstream.calls[-1].path == "/v2/echo/z"
    resp = await call(gw, "GET", "/echo/z", "c-tenant", "tenant", headers={"Base-Url-Override": "ftp://example.com"})
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_base_url")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_query_and_body_forwarded(gw: Gateway, upstream: ScriptedUpstream, method: str) -> None:
    payload = {"name": "x", "n": [1, 2]}
    resp = await call(gw, method, "/echo/items?dry=1", "c-oauth", "oauth2", json=payload)
    assert resp.status == 200, await resp.text()
    seen = upstream.calls[-1]
    assert (seen.method, seen.query) == (method, {"dry": ["1"]})
    assert json.loads(seen.body) == payload
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Content-Length"] == str(len(seen.body))
    # with retries the body is kept to be sent again; a raw, non-JSON body goes as it came
    resp = await call(
        gw,
        method,
        "/echo/raw",
        "c-oauth",
        "oauth2",
        data=b"\x00\x01 raw",
        headers={"Retries": "2", "Content-Type": "application/octet-stream"},
    )
    assert resp.status == 200
    assert upstream.calls[-1].body == b"\x00\x01 raw"
    assert upstream.calls[-1].headers["Content-Type"] == "application/octet-stream"


async def test_large_bodies_stream_both_ways(gw: Gateway, upstream: ScriptedUpstream) -> None:
    size = 8 * 1024 * 1024 + 17
    resp = await call(gw, "GET", f"/big?size={size}", "c-oauth", "oauth2")
    assert resp.status == 200
    digest = hashlib.sha256()
    received = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        digest.update(chunk)
        received += len(chunk)
    assert received == size
    assert digest.hexdigest() == hashlib.sha256(big_body(size)).hexdigest()

    async def upload() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"u" * 65536

    resp = await call(gw, "POST", "/echo/upload", "c-oauth", "oauth2", data=upload())  # chunked, no length
    assert resp.status == 200
    assert upstream.calls[-1].body == b"u" * 65536 * 64


async def test_upstream_errors_and_special_statuses_pass_through(gw: Gateway, upstream: ScriptedUpstream) -> None:
    resp = await call(gw, "GET", "/status/404", "c-oauth", "oauth2")
    assert resp.status == 404
    assert await resp.json() == {"upstream": 404}
    assert resp.headers["X-Upstream"] == "status"
    resp = await call(gw, "DELETE", "/status/204", "c-oauth", "oauth2")
    assert resp.status == 204
    assert await resp.read() == b""
    resp = await call(gw, "HEAD", "/status/200", "c-oauth", "oauth2")
    assert resp.status == 200
    assert upstream.calls[-1].method == "HEAD"
    resp = await call(gw, "GET", "/redirect", "c-oauth", "oauth2", allow_redirects=False)
    assert resp.status == 302  # not followed: the caller decides, and the credentials stay here
    assert resp.headers["Location"] == f"{upstream.base}/echo/after"
    resp = await call(gw, "OPTIONS", "/echo/opt", "c-oauth", "oauth2")
    assert resp.status == 200
    assert upstream.calls[-1].method == "OPTIONS"
    # a CORS preflight is answered here, without credentials, and never reaches the upstream
    before = len(upstream.calls)
    resp = await gw.client.options(
        "/proxy/echo/opt", headers={"Origin": "https://app", "Access-Control-Request-Method": "GET"}
    )
    assert resp.status == 204
    assert len(upstream.calls) == before


async def test_compressed_bodies(gw: Gateway, upstream: ScriptedUpstream) -> None:
    resp = await call(gw, "GET", "/gzip", "c-oauth", "oauth2", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200
    assert resp.headers["Content-Encoding"] == "gzip"  # passed through as the upstream encoded it
    assert await resp.json() == {"compressed": True}
    assert upstream.calls[-1].headers["Accept-Encoding"] == "gzip"
    resp = await call(gw, "GET", "/gzip", "c-gz", "gz")
    assert "Content-Encoding" not in resp.headers  # the template asks to decompress
    assert await resp.json() == {"compressed": True}


async def test_a_body_cut_upstream_is_cut_for_the_caller(gw: Gateway) -> None:
    resp = await call(gw, "GET", "/cut", "c-oauth", "oauth2")
    assert resp.status == 200
    with pytest.raises(ClientPayloadError):
        await resp.read()


async def test_retries_on_server_errors(gw: Gateway, upstream: ScriptedUpstream) -> None:
    upstream.then("/echo/r1", (500, {}), (503, {}))
    resp = await call(gw, "POST", "/echo/r1", "c-oauth", "oauth2", json={"a": 1}, headers={"Retries": "2"})
    assert resp.status == 200
    calls = upstream.calls_to("/echo/r1")
    assert len(calls) == 3
    assert all(json.loads(c.body) == {"a": 1} for c in calls)  # the same body each time

    upstream.then("/echo/r2", (500, {}), (500, {}), (500, {}))
    resp = await call(gw, "GET", "/echo/r2", "c-oauth", "oauth2", headers={"Retries": "1"})
    assert resp.status == 500  # out of retries: the last answer is the answer
    assert len(upstream.calls_to("/echo/r2")) == 2

    upstream.then("/echo/r3", (502, {}))
    resp = await call(gw, "GET", "/echo/r3", "c-oauth", "oauth2")
    assert resp.status == 502  # no Retries header: one attempt
    assert len(upstream.calls_to("/echo/r3")) == 1
    sample = REGISTRY.get_sample_value(
        "keyway_proxy_calls_total", {"provider": "px-oauth2", "status_class": "5xx", "outcome": "upstream"}
    )
    assert sample is not None
    assert sample >= 2


async def test_retry_after_and_retry_on(gw: Gateway, upstream: ScriptedUpstream) -> None:
    upstream.then("/echo/limited", (429, {"Retry-After": "1"}))
    resp = await call(gw, "GET", "/echo/limited", "c-oauth", "oauth2", headers={"Retries": "3"})
    assert resp.status == 200
    first, second = upstream.calls_to("/echo/limited")
    assert second.at - first.at >= 0.95

    upstream.then("/echo/too-long", (429, {"Retry-After": "3600"}))
    resp = await call(gw, "GET", "/echo/too-long", "c-oauth", "oauth2", headers={"Retries": "3"})
    assert resp.status == 429  # a wait longer than allowed is not taken: the caller sees when to come back
    assert resp.headers["Retry-After"] == "3600"
    assert len(upstream.calls_to("/echo/too-long")) == 1

    upstream.then("/echo/conflict", (409, {}), (409, {}))
    resp = await call(gw, "GET", "/echo/conflict", "c-oauth", "oauth2", headers={"Retries": "2"})
    assert resp.status == 409  # 409 is not retried unless asked
    resp = await call(gw, "GET", "/echo/conflict", "c-oauth", "oauth2", headers={"Retries": "2", "Retry-On": "409, x"})
    assert resp.status == 200
    assert len(upstream.calls_to("/echo/conflict")) == 3


async def test_template_retry_headers(gw: Gateway, upstream: ScriptedUpstream) -> None:
    upstream.then("/echo/after", (503, {"X-Wait-Seconds": "1"}))
    resp = await call(gw, "GET", "/echo/after", "c-after", "after", headers={"Retries": "1"})
    assert resp.status == 200
    first, second = upstream.calls_to("/echo/after")
    assert second.at - first.at >= 0.95

    upstream.then("/echo/at", (429, {"X-Reset-At": str(int(time.time()) + 2)}))
    resp = await call(gw, "GET", "/echo/at", "c-at", "at", headers={"Retries": "1"})
    assert resp.status == 200
    first, second = upstream.calls_to("/echo/at")
    assert second.at - first.at >= 0.9


async def test_connection_errors_timeouts_and_retries(gw: Gateway, upstream: ScriptedUpstream) -> None:
    # POST: aiohttp itself sends an idempotent request again once on a dropped pooled connection
    upstream.then("/echo/drop", "drop")
    resp = await call(gw, "POST", "/echo/drop", "c-oauth", "oauth2", json={}, headers={"Retries": "1"})
    assert resp.status == 200
    assert len(upstream.calls_to("/echo/drop")) == 2

    upstream.then("/echo/drop-once", "drop")
    resp = await call(gw, "POST", "/echo/drop-once", "c-oauth", "oauth2", json={})
    assert resp.status == 502
    assert_envelope(await resp.json(), "upstream_unreachable")

    dead = f"http://127.0.0.1:{free_port()}"
    resp = await call(gw, "GET", "/x", "c-oauth", "oauth2", headers={"Retries": "2", "Base-Url-Override": dead})
    assert resp.status == 502
    body = await resp.json()
    assert_envelope(body, "upstream_unreachable")
    assert body["error"]["payload"] == {"attempts": 3}

    resp = await call(gw, "GET", "/slow?seconds=5", "c-oauth", "oauth2")
    assert resp.status == 504
    assert_envelope(await resp.json(), "upstream_timeout")


async def test_egress_guard(
    start_gateway: StartGateway, gateway_args: dict[str, Any], oauth: OAuthProvider, upstream: ScriptedUpstream
) -> None:
    async with start_gateway(**gateway_args, egress_allowlist="") as gw:
        await seed(gw, oauth)
        for override in ("", upstream.base, f"http://localhost:{upstream.port}", f"http://[::1]:{upstream.port}"):
            with capture_logs() as logs:
                resp = await call(gw, "GET", "/echo/in", "c-keyq", "keyq", headers={"Base-Url-Override": override})
            assert resp.status == 403, override
            body = await resp.json()
            assert_envelope(body, "egress_refused")
            assert "sk-query-9f3a" not in json.dumps(body)
            assert "sk-query-9f3a" not in json.dumps(logs, default=str)
        assert upstream.calls == []  # refused before any byte left


async def test_metadata_service_address_refused(gw: Gateway) -> None:
    resp = await call(
        gw, "GET", "/latest", "c-oauth", "oauth2", headers={"Base-Url-Override": "http://169.254.169.254"}
    )
    assert resp.status == 403
    assert_envelope(await resp.json(), "egress_refused")


async def test_missing_headers_and_unknown_connection(gw: Gateway) -> None:
    resp = await gw.client.get("/proxy/echo", headers={"Connection-Id": "c-oauth", "Provider-Config-Key": "oauth2"})
    assert resp.status == 401
    resp = await gw.client.get("/proxy/echo", headers={**gw.auth, "Provider-Config-Key": "oauth2"})
    assert resp.status == 400
    assert_envelope(await resp.json(), "missing_connection")
    resp = await gw.client.get("/proxy/echo", headers={**gw.auth, "Connection-Id": "c-oauth"})
    assert resp.status == 400
    assert_envelope(await resp.json(), "missing_provider_config")
    resp = await call(gw, "GET", "/echo", "nobody", "oauth2")
    assert resp.status == 404
    assert_envelope(await resp.json(), "unknown_connection")


async def test_expired_token_is_refreshed_before_the_call(gw: Gateway, oauth: OAuthProvider, db: Any) -> None:
    _resp, _html, frame = await run_flow(gw, oauth, "oauth", "connection_id=px-refresh")
    assert frame["message_type"] == "success"
    old = next(iter(oauth.access_tokens))
    await db["connections"].update_one(
        {"connection_id": "px-refresh"},
        {"$set": {"refresh_due_at": datetime.now(UTC) - timedelta(seconds=1)}},
    )
    oauth.access_tokens.pop(old)  # the old token no longer works upstream
    with capture_logs() as logs:
        resp = await call(gw, "GET", "/api/me", "px-refresh", "oauth")
    assert resp.status == 200, await resp.text()
    assert oauth.token_requests[-1]["grant_type"] == "refresh_token"
    new = next(iter(oauth.access_tokens))
    proxied = [entry for entry in logs if entry["event"] == "proxied"]
    assert [(entry["status"], entry["provider"]) for entry in proxied] == [(200, "test-oauth2")]
    assert new not in json.dumps(logs, default=str)
