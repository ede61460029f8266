"""MCP_OAUTH2 and MCP_OAUTH2_GENERIC through the unmodified frontend SDK 0.71.10, in Chromium.

``nango.auth(key, id)`` opens its popup at ``/oauth/connect`` as for any OAuth 2 integration; the
gateway registers its client at the MCP authorization server on 127.0.0.1 (or discovers it first,
for the generic mode), the server checks PKCE and the resource indicator, and the SDK's promise
resolves from the WebSocket. Then a refresh and a proxied MCP call with the new Bearer token.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from ..support.mcp_auth_server import McpAuthServer
from .test_frontend_sdk import app_page_url, call, open_app

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]
__all__ = ["app_page_url"]  # the page's fixture, shared with the SDK's other tests


@pytest.fixture
async def server() -> AsyncIterator[McpAuthServer]:
    mcp = await McpAuthServer().start()
    yield mcp
    await mcp.stop()


@pytest.fixture
async def gw(server: McpAuthServer, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    catalog = {
        "test-mcp": server.template("dynamic"),
        "test-mcp-generic": {
            "auth_mode": "MCP_OAUTH2_GENERIC",
            "connection_config": {"mcp_server_url": {"type": "string"}},
            "proxy": {"base_url": server.base},
        },
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        public_key_connect="allowed",
    ) as gateway:
        await create_integration(gateway, "test-mcp", "mcp")
        await create_integration(gateway, "test-mcp-generic", "mcp-any")
        yield gateway


async def test_mcp_oauth2_connects_refreshes_and_proxies(
    gw: Gateway, server: McpAuthServer, browser: Browser, app_page_url: str
) -> None:
    page = await open_app(browser, app_page_url, "07110")
    outcome = await call(page, "auth", gw.url, gw.public_key, "mcp", "mcp-1")
    assert outcome == {
        "ok": True,
        "result": {"providerConfigKey": "mcp", "connectionId": "mcp-1", "isPending": False},
    }
    assert len(server.registrations) == 1
    assert server.authorize_requests[-1]["resource"] == server.mcp_url

    resp = await gw.client.get(
        "/connection/mcp-1?provider_config_key=mcp&refresh_token=true&force_refresh=true", headers=gw.auth
    )
    assert resp.status == 200
    assert server.token_requests[-1]["grant_type"] == "refresh_token"
    headers = {**gw.auth, "Connection-Id": "mcp-1", "Provider-Config-Key": "mcp"}
    resp = await gw.client.post("/proxy/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["result"] == {"tools": []}


async def test_mcp_generic_discovers_from_the_sdks_params(
    gw: Gateway, server: McpAuthServer, browser: Browser, app_page_url: str
) -> None:
    page = await open_app(browser, app_page_url, "07110")
    options = {"params": {"mcp_server_url": server.mcp_url}}
    outcome = await call(page, "auth", gw.url, gw.public_key, "mcp-any", "any-1", options)
    assert outcome["ok"] is True, outcome
    resp = await gw.client.get("/connection/any-1?provider_config_key=mcp-any", headers=gw.auth)
    config = (await resp.json())["connection_config"]
    assert json.loads(config["oauth_metadata"])["issuer"] == f"{server.base}/as"

    outcome = await call(page, "auth", gw.url, gw.public_key, "mcp-any", "any-2")
    assert (outcome["ok"], outcome["type"]) == (False, "missing_connection_config")
