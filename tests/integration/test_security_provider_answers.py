"""Issue 14 #10 and #15: what a provider answers, or fails to, cannot hurt the gateway nor tell a browser
anything about the network.

#10: a token endpoint answering 64 MiB (at connect or at refresh) is cut off at 1 MiB and the flow fails
with a clear message, instead of the whole answer being read into memory.
#15: whether the egress guard refused an address, the name did not resolve or nobody answered, the
browser gets one and the same answer; only the log line tells which.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from ..support.oauth_provider import OAuthProvider
from ..support.procs import free_port
from .flow_helpers import run_popup
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

MIB = 1024 * 1024


@dataclass
class HugeTokenEndpoint:
    """A token endpoint that answers ``size`` bytes of valid JSON with an access token, streamed; it
    notes how much it could send before the client hung up."""

    size: int = 64 * MIB
    declare_length: bool = False
    port: int = 0
    sent: int = 0
    finished: bool = False
    _runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _token(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        head, tail = b'{"access_token": "at-huge", "token_type": "bearer", "padding": "', b'"}'
        chunk = b"a" * (256 * 1024)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.declare_length:
            response.content_length = self.size
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(head)
            self.sent = len(head)
            while self.sent + len(chunk) + len(tail) <= self.size:
                await response.write(chunk)
                self.sent += len(chunk)
            await response.write(b"a" * (self.size - self.sent - len(tail)) + tail)
            self.sent = self.size
            await response.write_eof()
            self.finished = True
        except (ConnectionResetError, OSError):
            pass  # the client stopped reading: what it took is in ``sent``
        return response

    async def start(self) -> HugeTokenEndpoint:
        self.port = free_port()
        app = web.Application()
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def huge() -> AsyncIterator[HugeTokenEndpoint]:
    server = await HugeTokenEndpoint().start()
    yield server
    await server.stop()


@pytest.fixture
async def huge_declared() -> AsyncIterator[HugeTokenEndpoint]:
    server = await HugeTokenEndpoint(declare_length=True).start()
    yield server
    await server.stop()


@pytest.fixture
async def gw(
    provider: OAuthProvider,
    huge: HugeTokenEndpoint,
    huge_declared: HugeTokenEndpoint,
    tmp_path: Path,
    start_gateway: StartGateway,
) -> AsyncIterator[Gateway]:
    catalog = {
        "huge-token": provider.template(token_url=f"{huge.base}/token"),
        "huge-declared": provider.template(token_url=f"{huge_declared.base}/token"),
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog),
        egress_allowlist="127.0.0.0/8",
        public_key_connect="allowed",
        provider_timeout_seconds=10.0,
    ) as gateway:
        await create_integration(gateway, "huge-token", "huge", **provider.integration_fields)
        await create_integration(gateway, "huge-declared", "huge-declared", **provider.integration_fields)
        yield gateway


async def test_a_huge_token_answer_is_cut_off_at_connect(gw: Gateway, huge: HugeTokenEndpoint) -> None:
    result = await run_popup(gw, "huge", "connection_id=huge-1")
    assert result.frame["message_type"] == "error", result.frame
    assert result.frame["error_type"] == "token_err"
    assert "larger than 1024 KiB" in result.frame["error_desc"]
    assert not huge.finished
    assert huge.sent < 16 * MIB  # what the socket buffers took before the gateway hung up, not 64 MiB
    resp = await gw.client.get("/connection/huge-1?provider_config_key=huge", headers=gw.auth)
    assert resp.status == 404


async def test_a_huge_refresh_answer_fails_the_refresh(
    gw: Gateway, huge: HugeTokenEndpoint, huge_declared: HugeTokenEndpoint
) -> None:
    for key, server in [("huge", huge), ("huge-declared", huge_declared)]:
        body = {"connection_id": f"r-{key}", "provider_config_key": key, "access_token": "at-old"}
        body |= {"refresh_token": "rt-old", "expires_at": "2000-01-01T00:00:00Z"}
        resp = await gw.client.post("/connection", json=body, headers=gw.auth)
        assert resp.status == 201, await resp.text()
        resp = await gw.client.get(f"/connection/r-{key}?provider_config_key={key}", headers=gw.auth)
        assert 400 <= resp.status < 500, await resp.text()
        assert "larger than 1024 KiB" in (await resp.json())["error"]["message"]
        assert not server.finished, key
        assert server.sent < 16 * MIB, key  # what socket buffers took before the gateway hung up


@pytest.fixture
async def guarded(tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    """A gateway with the default egress policy: nothing private may be called."""
    host = "${connectionConfig.host}"
    catalog: dict[str, Any] = {
        "self-hosted-cc": {
            "auth_mode": "OAUTH2_CC",
            "token_url": f"http://{host}/oauth/token",
            "connection_config": {"host": {"type": "string"}},
        },
        "self-hosted-key": {
            "auth_mode": "API_KEY",
            "proxy": {
                "base_url": f"http://{host}",
                "headers": {"authorization": "Bearer ${apiKey}"},
                "verification": {"method": "GET", "endpoint": "/me"},
            },
            "connection_config": {"host": {"type": "string"}},
        },
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog), egress_allowlist="", public_key_connect="allowed"
    ) as gateway:
        await create_integration(gateway, "self-hosted-cc", "cc", oauth_client_id="id", oauth_client_secret="secret")
        await create_integration(gateway, "self-hosted-key", "key")
        yield gateway


# localhost resolves to a private address (the guard refuses it), the .invalid name resolves to nothing,
# and 10.255.255.1 is refused by the guard without a lookup.
_HOSTS = ("localhost", "no-such-host.invalid", "10.255.255.1")


async def test_egress_refusal_and_unknown_names_answer_alike(guarded: Gateway) -> None:
    gw = guarded
    answers: dict[str, dict[str, tuple[int, str]]] = {"cc": {}, "key": {}}
    with capture_logs() as logs:
        for index, host in enumerate(_HOSTS):
            query = f"public_key={gw.public_key}&connection_id=probe-{index}&params[host]={quote(host)}"
            resp = await gw.client.post(f"/oauth2/auth/cc?{query}", json={"client_id": "i", "client_secret": "s"})
            answers["cc"][host] = (resp.status, json.dumps(await resp.json()))
            resp = await gw.client.post(f"/api-auth/api-key/key?{query}", json={"apiKey": "k"})
            answers["key"][host] = (resp.status, json.dumps(await resp.json()))
    for kind, by_host in answers.items():
        assert len(set(by_host.values())) == 1, (kind, by_host)  # one answer, whatever the reason
        status, body = next(iter(by_host.values()))
        assert 400 <= status < 600, body
        assert "could not be reached" in body
        assert "not public" not in body
    reasons = " ".join(str(entry.get("reason", "")) for entry in logs)
    assert "not public" in reasons  # the operator still learns why
