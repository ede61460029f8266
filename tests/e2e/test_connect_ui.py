"""Nango's Connect UI protocol against Keyway's own page, with the unmodified @nangohq/frontend 0.71.10.

The app's page (127.0.0.1, one port) calls ``nango.openConnectUI({ baseURL: "<gateway>/connect-ui",
apiURL: "<gateway>", sessionToken, onEvent })``; the SDK frames the gateway's page (another port: another
origin) and hands it the token by postMessage; the page lists the session's integrations and connects
one, and the SDK passes the page's ``connect``, ``error`` and ``close`` events to ``onEvent``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, FrameLocator, Page

from ..integration.gateway_app import Gateway, StartGateway, providers_yaml
from ..support.oauth_provider import OAuthProvider
from ..support.procs import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]

SDK_DIR = Path(__file__).resolve().parents[1] / "sdk"
SDK_PACKAGE = SDK_DIR / "node_modules" / "nango-frontend-07110"
END_USER = {"id": "user-42", "email": "ada@example.test", "display_name": "Ada"}

if not SDK_PACKAGE.exists():
    pytest.skip("run `npm ci` in tests/sdk first (.ci/run does)", allow_module_level=True)


@pytest.fixture
async def app_page_url() -> AsyncIterator[str]:
    """The customer's app: a page that loads the SDK's published module, on an origin of its own."""

    async def index(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(SDK_DIR / "pages" / "connect_ui.html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/sdk/07110/", SDK_PACKAGE / "dist")
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@asynccontextmanager
async def connect_gateway(
    provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway, **settings: Any
) -> AsyncIterator[Gateway]:
    api_key_template = {
        "display_name": "Test API",
        "auth_mode": "API_KEY",
        "proxy": {
            "base_url": provider.base,
            "headers": {"authorization": "Bearer ${apiKey}"},
            # The key is checked before it is stored: a token the test server issued passes, others fail.
            "verification": {"method": "GET", "endpoint": "/api/me"},
        },
        "connection_config": {"workspace": {"type": "string", "title": "Workspace", "example": "acme"}},
    }
    catalog = {"test-oauth2": provider.template(display_name="Test OAuth"), "test-apikey": api_key_template}
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        public_key_connect="refused",  # the 0.71 SDK's Connect UI runs on connect sessions only
        **settings,
    ) as gateway:
        integrations = [
            {"provider": "test-oauth2", "provider_config_key": "oauth", **provider.integration_fields},
            {"provider": "test-apikey", "provider_config_key": "apikey"},
            {"provider": "freshdesk", "provider_config_key": "freshdesk"},
        ]
        for body in integrations:
            resp = await gateway.client.post("/config", json=body, headers=gateway.auth)
            assert resp.status == 200, await resp.text()
        yield gateway


@pytest.fixture
async def gw(provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with connect_gateway(provider, tmp_path, start_gateway) as gateway:
        yield gateway


async def mint_session(gw: Gateway, allowed: list[str]) -> str:
    body = {"end_user": END_USER, "allowed_integrations": allowed}
    resp = await gw.client.post("/connect/sessions", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token: str = (await resp.json())["data"]["token"]
    return token


async def open_connect_ui(browser: Browser, app_url: str, gw: Gateway, token: str, **options: Any) -> Page:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(app_url)
    await page.wait_for_function("window.keywayReady === true")
    await page.evaluate(
        "([base, api, token, options]) => window.keyway.openConnectUI(base, api, token, options)",
        [f"{gw.url}/connect-ui", gw.url, token, options],
    )
    assert errors == []
    return page


async def events(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await page.evaluate("window.connectEvents")
    return found


async def wait_for_event(page: Page, kind: str) -> dict[str, Any]:
    await page.wait_for_function(f"window.connectEvents.some((e) => e.type === {kind!r})", timeout=15000)
    return next(e for e in await events(page) if e["type"] == kind)


def connect_ui(page: Page) -> FrameLocator:
    return page.frame_locator("iframe#connect-ui")


async def stored_connection(db: Any, connection_id: str) -> dict[str, Any]:
    doc: dict[str, Any] | None = await db["connections"].find_one({"connection_id": connection_id})
    assert doc is not None
    return doc


async def provider_token(provider: OAuthProvider) -> str:
    """An access token the test server accepts at /api/me: the right API key for ``apikey``."""
    form = {
        "grant_type": "client_credentials",
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
    }
    async with aiohttp.ClientSession() as http, http.post(f"{provider.base}/token", data=form) as resp:
        token: str = (await resp.json())["access_token"]
        return token


async def test_api_key_connection_through_the_connect_ui(
    gw: Gateway, provider: OAuthProvider, browser: Browser, app_page_url: str, db: Any, output_dir: Path
) -> None:
    token = await mint_session(gw, ["apikey", "oauth"])
    page = await open_connect_ui(browser, app_page_url, gw, token)
    ui = connect_ui(page)

    # The session's integrations, and only them (freshdesk exists but the session does not allow it).
    listed = ui.locator("ul.integrations button")
    await listed.first.wait_for()
    assert [await b.get_attribute("data-key") for b in await listed.all()] == ["apikey", "oauth"]
    assert await events(page) == [{"type": "ready"}]

    await ui.locator("button[data-key=apikey]").click()
    await ui.locator("input[name='credentials.apiKey']").fill("not-a-key")
    await ui.locator("input[name='params.workspace']").fill("acme")
    await ui.locator("button[type=submit]").click()
    error = await wait_for_event(page, "error")
    assert error["payload"]["errorType"] == "connection_test_failed"
    assert "refused" in error["payload"]["errorMessage"]
    await ui.locator("#notice").wait_for()

    # A failed attempt does not spend the session: the right key connects.
    await ui.locator("input[name='credentials.apiKey']").fill(await provider_token(provider))
    await ui.locator("button[type=submit]").click()
    connected = await wait_for_event(page, "connect")
    payload = connected["payload"]
    assert payload["providerConfigKey"] == "apikey"
    assert payload["connectionId"]
    await page.screenshot(path=str(output_dir / "connect-ui-api-key.png"))

    doc = await stored_connection(db, payload["connectionId"])
    assert doc["provider_config_key"] == "apikey"
    assert doc["end_user"] == END_USER
    resp = await gw.client.get(f"/connection/{payload['connectionId']}?provider_config_key=apikey", headers=gw.auth)
    body = await resp.json()
    assert body["credentials"]["type"] == "API_KEY"
    assert body["connection_config"] == {"workspace": "acme"}

    # "Done" closes: the SDK gets close and removes the iframe.
    await ui.get_by_role("button", name="Done").click()
    await wait_for_event(page, "close")
    await page.locator("iframe#connect-ui").wait_for(state="detached")


async def oauth2_through_the_connect_ui(gw: Gateway, browser: Browser, app_url: str, db: Any) -> Page:
    token = await mint_session(gw, ["oauth"])
    page = await open_connect_ui(browser, app_url, gw, token)
    ui = connect_ui(page)
    # One integration: straight to it.
    submit = ui.get_by_role("button", name="Connect Test OAuth")
    await submit.wait_for()
    await submit.click()
    connected = await wait_for_event(page, "connect")
    payload = connected["payload"]
    assert payload["providerConfigKey"] == "oauth"
    assert payload["isPending"] is False

    doc = await stored_connection(db, payload["connectionId"])
    assert doc["end_user"] == END_USER
    resp = await gw.client.get(f"/connection/{payload['connectionId']}?provider_config_key=oauth", headers=gw.auth)
    assert (await resp.json())["credentials"]["type"] == "OAUTH2"
    assert [e["type"] for e in await events(page)] == ["ready", "connect"]
    return page


async def test_oauth2_connection_through_the_connect_ui(
    gw: Gateway, browser: Browser, app_page_url: str, db: Any, output_dir: Path
) -> None:
    page = await oauth2_through_the_connect_ui(gw, browser, app_page_url, db)
    await page.screenshot(path=str(output_dir / "connect-ui-oauth2.png"))


async def test_with_the_apps_origins_listed_the_app_frames_it_and_its_popup_reports(
    provider: OAuthProvider, tmp_path: Path, start_gateway: StartGateway, browser: Browser, app_page_url: str, db: Any
) -> None:
    """KEYWAY_WEBSOCKET_ALLOWED_ORIGINS names the app: it may frame the page (frame-ancestors), and the
    page, on the gateway's own origin, still opens the WebSocket its popup reports on."""
    async with connect_gateway(provider, tmp_path, start_gateway, websocket_allowed_origins=app_page_url) as gw:
        await oauth2_through_the_connect_ui(gw, browser, app_page_url, db)


async def test_a_spent_or_unknown_session_is_an_error_event(gw: Gateway, browser: Browser, app_page_url: str) -> None:
    page = await open_connect_ui(browser, app_page_url, gw, "nango_connect_session_" + "0" * 64)
    error = await wait_for_event(page, "error")
    assert error["payload"]["errorType"] == "missing_connect_session_token"
    # The close button reports close.
    await connect_ui(page).locator("#close").click()
    await wait_for_event(page, "close")
