"""Connect without a popup: a connect link sends the whole tab through the gateway (and the provider)
and back to the app's return URL with a signed outcome. Browser tests drive headless Chromium; the
rest talk HTTP to an in-process gateway on the real broker and database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web
from playwright.async_api import Browser

from auth_gateway.connect.link_outcome import OutcomeError, verify_outcome
from keyway_shared.events import utcnow

from ..integration.gateway_app import Gateway, StartGateway, providers_yaml
from ..support.oauth_provider import OAuthProvider
from ..support.procs import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo]
browser_test = pytest.mark.browser


class App:
    """The customer's app: only its return URL, which records the query string it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.queries: list[str] = []
        self.pages = {}
        self._runner: web.AppRunner | None = None

    @property
    def return_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/integrations/done?tab=settings"

    pages: dict[str, str]

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(text=self.pages[request.match_info["name"]], content_type="text/html")

    async def _back(self, request: web.Request) -> web.Response:
        self.queries.append(request.query_string)
        return web.Response(text="back in the app", content_type="text/html")

    async def start(self) -> App:
        app = web.Application()
        app.router.add_get("/integrations/done", self._back)
        app.router.add_get("/app/{name}", self._page)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    server = await App().start()
    yield server
    await server.stop()


@pytest.fixture
async def gw(
    provider: OAuthProvider,
    app: App,
    tmp_path: Path,
    start_gateway: StartGateway,
) -> AsyncIterator[Gateway]:
    templates = {
        "test-oauth2": provider.template(display_name="Test OAuth"),
        "test-apikey": {"display_name": "Test Key Service", "auth_mode": "API_KEY"},
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, templates),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gateway:
        integrations = [
            {
                "provider": "test-oauth2",
                "provider_config_key": "oauth",
                "oauth_client_id": provider.client_id,
                "oauth_client_secret": provider.client_secret,
                "oauth_scopes": "read",
            },
            {"provider": "test-apikey", "provider_config_key": "keyed"},
        ]
        for body in integrations:
            resp = await gateway.client.post("/config", json=body, headers=gateway.auth)
            assert resp.status == 200, await resp.text()
        allowed = {"allowed_return_urls": [f"http://127.0.0.1:{app.port}/integrations"]}
        resp = await gateway.client.patch("/environment", json=allowed, headers=gateway.auth)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["environment"]["allowed_return_urls"] == allowed["allowed_return_urls"]
        yield gateway


async def new_link(gw: Gateway, return_url: str, **extra: Any) -> dict[str, Any]:
    resp = await gw.client.post("/connect/links", json={"return_url": return_url, **extra}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = (await resp.json())["data"]
    assert data["url"] == f"{gw.url}/connect/link/{data['token']}"
    return data


async def connection_exists(gw: Gateway, key: str, connection_id: str) -> bool:
    resp = await gw.client.get(f"/connection/{connection_id}", params={"provider_config_key": key}, headers=gw.auth)
    return resp.status == 200


@browser_test
async def test_oauth_link_redirects_back_signed(gw: Gateway, app: App, browser: Browser) -> None:
    link = await new_link(gw, app.return_url, allowed_integrations=["oauth"])
    page = await browser.new_page()
    await page.goto(link["url"])
    assert await page.locator("h2").all_inner_texts() == ["Test OAuth"]
    async with page.expect_navigation(url=f"http://127.0.0.1:{app.port}/**"):
        await page.get_by_role("button", name="Connect Test OAuth").click()
    outcome = verify_outcome(app.queries[-1], gw.secret_key)
    assert outcome["status"] == "success"
    assert outcome["provider_config_key"] == "oauth"
    assert outcome["tab"] == "settings"  # the app's own parameters survive, and are signed too
    assert await connection_exists(gw, "oauth", outcome["connection_id"])
    # The link is spent: opening it again says so plainly.
    await page.goto(link["url"])
    assert "expired or was already used" in await page.content()


@browser_test
async def test_api_key_through_the_hosted_form(gw: Gateway, app: App, browser: Browser) -> None:
    link = await new_link(gw, app.return_url, end_user={"id": "u-1"})
    page = await browser.new_page()
    await page.goto(link["url"])
    assert sorted(await page.locator("h2").all_inner_texts()) == ["Test Key Service", "Test OAuth"]
    await page.get_by_label("API key").fill("sk_live_123")
    async with page.expect_navigation(url=f"http://127.0.0.1:{app.port}/**"):
        await page.get_by_role("button", name="Connect Test Key Service").click()
    outcome = verify_outcome(app.queries[-1], gw.secret_key)
    assert outcome["status"] == "success"
    assert outcome["provider_config_key"] == "keyed"
    resp = await gw.client.get(
        f"/connection/{outcome['connection_id']}", params={"provider_config_key": "keyed"}, headers=gw.auth
    )
    assert (await resp.json())["credentials"]["apiKey"] == "sk_live_123"


@browser_test
@pytest.mark.parametrize("form", ["token", "url"])
async def test_the_browser_script_redirects_the_tab(gw: Gateway, app: App, browser: Browser, form: str) -> None:
    """The app's own page loads the gateway's script and hands it the link: no popup, a whole-tab trip."""
    link = await new_link(gw, app.return_url, allowed_integrations=["keyed"])
    call = (
        f"new KeywayConnect({{host: {gw.url!r}, connectSessionToken: {link['token']!r}}}).redirect()"
        if form == "token"
        else f"KeywayConnect.redirect({link['url']!r})"
    )
    app.pages["start"] = f"""<!doctype html><script src="{gw.url}/sdk/keyway-connect.js"></script>
        <button id="go" onclick="{call}">Connect</button>
        <button id="bad" onclick="try {{ KeywayConnect.redirect('') }} catch (e) {{ document.title = e.type }}">x</button>"""
    page = await browser.new_page()
    popups: list[Any] = []
    page.on("popup", lambda popup: popups.append(popup))
    await page.goto(f"http://127.0.0.1:{app.port}/app/start")
    await page.click("#bad")  # no link: a typed error, and the tab stays
    assert await page.title() == "missingConnectLink"
    async with page.expect_navigation(url=f"{gw.url}/connect/link/**"):
        await page.click("#go")
    assert await page.locator("h2").all_inner_texts() == ["Test Key Service"]
    await page.get_by_label("API key").fill("sk_live_redirect")
    async with page.expect_navigation(url=f"http://127.0.0.1:{app.port}/integrations/done**"):
        await page.get_by_role("button", name="Connect Test Key Service").click()
    outcome = verify_outcome(app.queries[-1], gw.secret_key)
    assert (outcome["status"], outcome["provider_config_key"]) == ("success", "keyed")
    assert await connection_exists(gw, "keyed", outcome["connection_id"])
    assert popups == []


@browser_test
async def test_provider_error_reaches_the_app_typed(
    gw: Gateway, app: App, browser: Browser, provider: OAuthProvider
) -> None:
    provider.authorize_mode = "deny"
    link = await new_link(gw, app.return_url, allowed_integrations=["oauth"])
    page = await browser.new_page()
    await page.goto(link["url"])
    async with page.expect_navigation(url=f"http://127.0.0.1:{app.port}/**"):
        await page.get_by_role("button", name="Connect Test OAuth").click()
    outcome = verify_outcome(app.queries[-1], gw.secret_key)
    assert outcome["status"] == "error"
    assert outcome["error_type"] == "callback_err"
    assert "access_denied" in outcome["error_description"]
    assert outcome["provider_config_key"] == "oauth"


async def test_return_url_outside_the_allowed_list_is_refused(gw: Gateway, app: App) -> None:
    for url in (
        "https://evil.example/integrations/done",
        f"http://127.0.0.1:{app.port}/integrations-evil",
        f"http://127.0.0.1:{app.port}/other",
        f"http://127.0.0.1:{free_port()}/integrations/done",
    ):
        resp = await gw.client.post("/connect/links", json={"return_url": url}, headers=gw.auth)
        assert resp.status == 400, url
        assert (await resp.json())["error"]["code"] == "return_url_not_allowed"
    resp = await gw.client.post("/connect/links", json={"return_url": "javascript:alert(1)"}, headers=gw.auth)
    assert (await resp.json())["error"]["code"] == "invalid_return_url"
    resp = await gw.client.post("/connect/links", json={"return_url": app.return_url})  # no secret key
    assert resp.status == 401


async def test_form_post_signs_outcome_and_tampering_fails(gw: Gateway, app: App) -> None:
    link = await new_link(gw, app.return_url)
    origin = {"Origin": gw.url}
    # A cross-site post is refused, whatever it carries.
    resp = await gw.client.post(
        f"/connect/link/{link['token']}/connect/keyed",
        data={"apiKey": "k"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        allow_redirects=False,
    )
    assert resp.status == 403
    # A missing key shows the form again, and the link stays usable.
    resp = await gw.client.post(
        f"/connect/link/{link['token']}/connect/keyed", data={"apiKey": ""}, headers=origin, allow_redirects=False
    )
    assert resp.status == 400
    assert "Enter the API key" in await resp.text()
    resp = await gw.client.post(
        f"/connect/link/{link['token']}/connect/keyed", data={"apiKey": "k-1"}, headers=origin, allow_redirects=False
    )
    assert resp.status == 303
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == app.return_url.split("?")[0]
    outcome = verify_outcome(location.query, gw.secret_key)
    assert outcome["status"] == "success"
    pairs = parse_qsl(location.query)
    for name, forged in (("connection_id", "someone-else"), ("status", "error"), ("tab", "x")):
        tampered = "&".join(f"{k}={forged if k == name else v}" for k, v in pairs)
        with pytest.raises(OutcomeError):
            verify_outcome(tampered, gw.secret_key)
    with pytest.raises(OutcomeError):
        verify_outcome(location.query, "another-secret-key")
    with pytest.raises(OutcomeError):  # replayed an hour later
        verify_outcome(location.query, gw.secret_key, now=int(outcome["timestamp"]) + 3600)


async def test_expired_or_spent_link_shows_a_clear_page(gw: Gateway, app: App, db: Any) -> None:
    link = await new_link(gw, app.return_url)
    resp = await gw.client.get(f"/connect/link/{link['token']}")
    assert resp.status == 200
    assert resp.headers["Referrer-Policy"] == "same-origin"
    await db["connect_sessions"].update_many({}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}})
    resp = await gw.client.get(f"/connect/link/{link['token']}")
    assert resp.status == 410
    assert "expired or was already used" in await resp.text()
    resp = await gw.client.post(
        f"/connect/link/{link['token']}/connect/keyed", data={"apiKey": "k"}, allow_redirects=False
    )
    assert resp.status == 410
    resp = await gw.client.get("/connect/link/nango_connect_session_unknown")
    assert resp.status == 410


async def test_cancel_goes_back_with_a_typed_error(gw: Gateway, app: App) -> None:
    link = await new_link(gw, app.return_url)
    resp = await gw.client.post(f"/connect/link/{link['token']}/cancel", allow_redirects=False)
    assert resp.status == 303
    outcome = verify_outcome(urlsplit(resp.headers["Location"]).query, gw.secret_key)
    assert outcome["status"] == "error"
    assert outcome["error_type"] == "user_cancelled"


async def test_popup_flow_unchanged_by_redirect_support(gw: Gateway, app: App) -> None:
    """Without ``redirect=1`` a link's token still drives the popup flow; ``redirect=1`` needs a link."""
    resp = await gw.client.post("/connect/sessions", json={"end_user": {"id": "u"}}, headers=gw.auth)
    token = (await resp.json())["data"]["token"]
    resp = await gw.client.get(
        "/oauth/connect/oauth", params={"connect_session_token": token, "redirect": "1"}, allow_redirects=False
    )
    assert resp.status == 400  # the request's fault: a 4xx page, with the SDK's frame as before
    assert "connect link" in await resp.text()
    resp = await gw.client.get(
        "/oauth/connect/oauth", params={"connect_session_token": token, "ws_client_id": "w"}, allow_redirects=False
    )
    assert resp.status == 302
    assert resp.headers["Location"].startswith("http://127.0.0.1:")
