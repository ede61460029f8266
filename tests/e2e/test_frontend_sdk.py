"""The unmodified Nango frontend SDK (0.40.8 and 0.42.13, and 0.71.10 for NetSuite TBA, from npm) against
Keyway, in Chromium.

A real page on 127.0.0.1 imports the SDK's published module; the SDK opens its popup and WebSocket
against an in-process gateway, which talks to a real OAuth 2 server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page

from ..integration.gateway_app import Gateway, StartGateway, providers_yaml
from ..support.oauth_provider import OAuthProvider
from ..support.procs import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"
VERSIONS = {"0408": "nango-frontend-0408", "04213": "nango-frontend-04213"}
# Served too, for the modes only today's SDK connects (NetSuite TBA); the tests above stay on 2024's two.
CURRENT = {"07110": "nango-frontend-07110"}

if not (SDK_DIR / "node_modules" / VERSIONS["0408"]).exists():
    pytest.skip("run `npm ci` in tests/sdk first (.ci/run does)", allow_module_level=True)


@pytest.fixture
async def app_page_url() -> AsyncIterator[str]:
    """The customer's app: a static page and the SDK files, served from 127.0.0.1."""

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(SDK_DIR / "pages" / "index.html")

    app = web.Application()
    app.router.add_get("/", index)
    for short, package in (VERSIONS | CURRENT).items():
        app.router.add_static(f"/sdk/{short}/", SDK_DIR / "node_modules" / package / "dist")
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def gw(provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, {"test-oauth2": provider.template()}),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        public_key_connect="allowed",  # these SDKs (2024) connect with the public key
    ) as gateway:
        integrations = [
            {
                "provider": "test-oauth2",
                "provider_config_key": "oauth",
                "oauth_client_id": provider.client_id,
                "oauth_client_secret": provider.client_secret,
                "oauth_scopes": "read",
            },
            {"provider": "posthog", "provider_config_key": "posthog"},
            {"provider": "freshdesk", "provider_config_key": "freshdesk"},
            {
                "provider": "netsuite-tba",
                "provider_config_key": "netsuite",
                "oauth_client_id": "consumer-key",
                "oauth_client_secret": "consumer-secret",
            },
        ]
        for body in integrations:
            resp = await gateway.client.post("/config", json=body, headers=gateway.auth)
            assert resp.status == 200, await resp.text()
        yield gateway


async def open_app(browser: Browser, url: str, version: str) -> Page:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{url}/?sdk={version}")
    await page.wait_for_function("window.keywayReady === true")
    assert errors == []
    return page


async def call(page: Page, method: str, *args: Any) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(f"(args) => window.keyway.{method}(...args)", list(args))
    return result


@pytest.mark.parametrize("version", list(VERSIONS))
async def test_oauth2_popup_flow_resolves_and_rejects(
    version: str, gw: Gateway, provider: OAuthProvider, browser: Browser, app_page_url: str, output_dir: Path
) -> None:
    page = await open_app(browser, app_page_url, version)
    outcome = await call(page, "auth", gw.url, gw.public_key, "oauth", f"sdk-{version}", {"params": {}})
    assert outcome == {
        "ok": True,
        "result": {"providerConfigKey": "oauth", "connectionId": f"sdk-{version}", "isPending": False},
    }
    resp = await gw.client.get(f"/connection/sdk-{version}?provider_config_key=oauth", headers=gw.auth)
    assert (await resp.json())["credentials"]["type"] == "OAUTH2"

    provider.token_mode = "error_400"
    outcome = await call(page, "auth", gw.url, gw.public_key, "oauth", f"fail-{version}")
    assert outcome["ok"] is False
    assert outcome["type"] == "token_err"
    assert "invalid_request" in outcome["message"]

    outcome = await call(page, "auth", gw.url, gw.public_key, "no-such-integration", "c1")
    assert outcome["ok"] is False
    assert outcome["type"] == "provider_config_err"
    await page.screenshot(path=str(output_dir / f"sdk-{version}-after-oauth.png"))


@pytest.mark.parametrize("version", list(VERSIONS))
async def test_api_key_and_basic_credentials(version: str, gw: Gateway, browser: Browser, app_page_url: str) -> None:
    page = await open_app(browser, app_page_url, version)
    outcome = await call(
        page,
        "auth",
        gw.url,
        gw.public_key,
        "posthog",
        f"k-{version}",
        {"credentials": {"apiKey": "phx_sdk_key"}, "params": {"subdomain": "eu"}},
    )
    assert outcome == {"ok": True, "result": {"providerConfigKey": "posthog", "connectionId": f"k-{version}"}}
    outcome = await call(
        page,
        "auth",
        gw.url,
        gw.public_key,
        "freshdesk",
        f"b-{version}",
        {"credentials": {"username": "agent", "password": "pw"}},
    )
    assert outcome["ok"] is True
    resp = await gw.client.get(f"/connection/b-{version}?provider_config_key=freshdesk", headers=gw.auth)
    assert (await resp.json())["credentials"] == {"type": "BASIC", "username": "agent", "password": "pw"}

    # Failures carry the right error type for both SDK generations (top-level "type" and error.code).
    outcome = await call(page, "auth", gw.url, gw.public_key, "freshdesk", "x", {"credentials": {"apiKey": "k"}})
    assert outcome["ok"] is False
    assert outcome["type"] == "invalid_auth_mode"
    outcome = await call(
        page, "auth", gw.url, "0b0f3a9e-3c1e-4d6e-9a3f-1f2b3c4d5e6f", "posthog", "x", {"credentials": {"apiKey": "k"}}
    )
    assert outcome["type"] == "unknown_user_account"
    if version == "04213":  # the newer SDK reads the message from error.message
        assert "unknown" in outcome["message"]
    outcome = await call(page, "construct", gw.url, "")
    assert outcome["ok"] is False
    assert outcome["type"] == "missingPublicKey"


async def test_netsuite_tba_with_the_current_sdk(gw: Gateway, browser: Browser, app_page_url: str) -> None:
    page = await open_app(browser, app_page_url, "07110")
    credentials = {"type": "TBA", "token_id": "tok-id", "token_secret": "tok-secret"}
    options = {
        "credentials": {**credentials, "oauth_client_id_override": "other-key"},
        "params": {"accountId": "1234567-sb1"},
    }
    outcome = await call(page, "auth", gw.url, gw.public_key, "netsuite", "tba-1", options)
    assert outcome == {"ok": True, "result": {"providerConfigKey": "netsuite", "connectionId": "tba-1"}}
    resp = await gw.client.get("/connection/tba-1?provider_config_key=netsuite", headers=gw.auth)
    connection = await resp.json()
    assert connection["credentials"] == {
        "type": "TBA",
        "token_id": "tok-id",
        "token_secret": "tok-secret",
        "config_override": {"client_id": "other-key"},
    }
    assert connection["connection_config"] == {"accountId": "1234567-sb1"}

    # The SDK shows Nango's error code: a missing account, then a token without its secret.
    outcome = await call(page, "auth", gw.url, gw.public_key, "netsuite", "tba-2", {"credentials": credentials})
    assert (outcome["ok"], outcome["type"]) == (False, "missing_account_id")
    half = {"credentials": {"token_id": "tok-id", "token_secret": ""}, "params": {"accountId": "1"}}
    outcome = await call(page, "auth", gw.url, gw.public_key, "netsuite", "tba-3", half)
    assert (outcome["ok"], outcome["type"]) == (False, "invalid_body")
