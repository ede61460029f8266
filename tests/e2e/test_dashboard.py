"""The dashboard in real headless Chromium, against an in-process gateway, the activity-log
service, the real broker and database, and a small OAuth 2 provider on 127.0.0.1.

Every page visited is checked for console errors and unlabelled inputs, and screenshotted under
``test-output/dashboard/`` for people to look at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from activity_log.app import create_app as create_activity_log
from activity_log.settings import ActivityLogSettings
from auth_gateway.dashboard.passwords import hash_password

from ..integration.gateway_app import Gateway, running_gateway
from ..support.inproc import running
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN, PASSWORD = "admin", "a long dashboard password"
PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def provider() -> AsyncIterator[OAuthProvider]:
    server = await OAuthProvider().start()
    yield server
    await server.stop()


@pytest.fixture
async def gw(
    provider: OAuthProvider,
    tmp_path: Path,
    mongo_url: str,
    db_name: str,
    db: Any,
    amqp_url: str,
    namespace: str,
    amqp: Any,
    encryption_key: str,
) -> AsyncIterator[Gateway]:
    providers_file = tmp_path / "providers.yaml"
    template = provider.template(display_name="Local Test OAuth", docs=f"{provider.base}/docs")
    api_key_template = {
        "display_name": "Local API key service",
        "auth_mode": "API_KEY",
        "proxy": {"base_url": provider.base, "headers": {"authorization": "Bearer ${apiKey}"}},
        "connection_config": {"region": {"type": "string", "title": "Region", "example": "eu"}},
    }
    providers_file.write_text(yaml.safe_dump({"local-test-oauth": template, "local-api-key": api_key_template}))
    activity_settings = ActivityLogSettings(
        mongodb_url=mongo_url,
        mongodb_database=db_name,
        amqp_url=amqp_url,
        bus_namespace=namespace,
        encryption_key=encryption_key,
        queue_type="classic",
        batch_delay_ms=20,
    )
    async with (
        running(create_activity_log(activity_settings)),
        running_gateway(
            mongo_url=mongo_url,
            db_name=db_name,
            amqp_url=amqp_url,
            namespace=namespace,
            encryption_key=encryption_key,
            providers_file=str(providers_file),
            egress_allowlist="127.0.0.0/8",
            provider_timeout_seconds=2.0,
            admin_user=ADMIN,
            admin_password_hash=PASSWORD_HASH,
        ) as gateway,
    ):
        yield gateway


async def _true(value: bool) -> bool:
    return value


class Visits:
    """Every page a test opens: console errors and page errors collected, a screenshot each, labels checked."""

    def __init__(self, page: Page, output: Path, prefix: str) -> None:
        self.page = page
        self.output = output
        self.prefix = prefix
        self.errors: list[str] = []
        self.count = 0
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def expect_failed_loads(self, *statuses: str) -> None:
        """Refusals the test provoked: the browser logs each non-2xx answer as a failed load."""
        found = [re.search(r"Failed to load resource: .* status of (\d+)", e) for e in self.errors]
        assert [m.group(1) if m else None for m in found] == list(statuses), self.errors
        self.errors.clear()

    async def check(self, name: str) -> None:
        await self.page.wait_for_load_state("load")
        self.count += 1
        await self.page.screenshot(path=str(self.output / f"{self.prefix}-{self.count:02d}-{name}.png"), full_page=True)
        unlabelled = await self.page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter((el) => el.type !== 'hidden')
                .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                                && !el.getAttribute('aria-labelledby'))
                .map((el) => el.outerHTML)"""
        )
        assert unlabelled == [], f"inputs without a label on {name}: {unlabelled}"
        assert self.errors == [], f"errors on {name}: {self.errors}"


@pytest.fixture
def shots(output_dir: Path) -> Path:
    path = output_dir / "dashboard"
    path.mkdir(exist_ok=True)
    return path


async def sign_in(page: Page, gw: Gateway, *, password: str = PASSWORD) -> None:
    await page.goto(f"{gw.url}/dashboard/signin")
    await page.fill("#username", ADMIN)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state("load")


async def tab_to(page: Page, element_id: str, *, presses: int = 60) -> None:
    """Press Tab until the element has the focus, as a keyboard user would."""
    for _ in range(presses):
        if await page.evaluate("document.activeElement ? document.activeElement.id : ''") == element_id:
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached #{element_id}")


async def new_context(browser: Browser) -> BrowserContext:
    return await browser.new_context(viewport={"width": 1280, "height": 900})


async def test_sign_in_csrf_lockout_and_sign_out(gw: Gateway, browser: Browser, shots: Path) -> None:
    context = await new_context(browser)
    page = await context.new_page()
    visits = Visits(page, shots, "signin")

    # Not signed in: every page leads to the sign-in form, which comes back to the page asked for.
    await page.goto(f"{gw.url}/dashboard/dev/connections")
    assert "/dashboard/signin" in page.url
    await visits.check("form")

    # A form posted without the CSRF token is refused, sign-in included.
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gw.url}/dashboard/signin", data={"username": ADMIN, "password": PASSWORD}, allow_redirects=False
        ) as resp,
    ):
        assert resp.status == 403
        assert "set-cookie" not in {k.lower() for k in resp.headers}
        assert "Access-Control-Allow-Origin" not in resp.headers  # no CORS on the dashboard

    await page.fill("#username", ADMIN)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r".*/dashboard/dev/connections$"))
    await visits.check("signed-in")
    cookie = next(c for c in await context.cookies() if c["name"] == "keyway_dashboard")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # KEYWAY_PUBLIC_URL is http:// here; https:// makes it Secure
    assert cookie["path"] == "/dashboard"

    # Signed in, a form without the session's CSRF token still changes nothing.
    resp = await page.request.post(
        f"{gw.url}/dashboard/dev/settings",
        form={"section": "callback", "callback_url": "https://evil.example/cb"},
        max_redirects=0,
    )
    assert resp.status == 403
    resp = await page.request.post(
        f"{gw.url}/dashboard/dev/settings",
        form={"section": "callback", "callback_url": "https://evil.example/cb", "csrf_token": "forged"},
        max_redirects=0,
    )
    assert resp.status == 403
    api = await gw.client.get("/environment", headers=gw.auth)
    assert (await api.json())["environment"]["callback_url"] is None

    # Sign out ends the session on the server: the old cookie no longer opens a page.
    with_cookie = {"Cookie": f"keyway_dashboard={cookie['value']}"}
    resp = await gw.client.get("/dashboard/dev/integrations", headers=with_cookie, allow_redirects=False)
    assert resp.status == 200
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src 'self'")
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"
    await page.click("text=Sign out")
    await page.wait_for_url(re.compile(r".*/dashboard/signin.*"))
    resp = await gw.client.get("/dashboard/dev/integrations", headers=with_cookie, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/dashboard/signin")

    # Five wrong passwords lock the account (and this address) for 15 minutes, right password or not.
    for attempt in range(1, 6):
        await sign_in(page, gw, password=f"wrong {attempt}")
        text = await page.inner_text("#signin-error")
        assert ("Too many failed sign-ins" in text) == (attempt == 5), text
    await sign_in(page, gw)
    assert "Too many failed sign-ins" in await page.inner_text("#signin-error")
    assert "/dashboard/signin" in page.url
    # The refusals are answered 401 and 429 (for monitoring and fail2ban-style tools).
    visits.expect_failed_loads(*["401"] * 4, "429", "429")
    await visits.check("locked")
    await context.close()


async def test_integration_connect_activity_and_key_rotation(
    gw: Gateway, provider: OAuthProvider, browser: Browser, shots: Path, db: Any
) -> None:
    context = await new_context(browser)
    page = await context.new_page()
    visits = Visits(page, shots, "flow")
    await sign_in(page, gw)
    await visits.check("integrations-empty")

    # Create an integration from the catalog, found by searching its name.
    await page.click("text=New integration")
    await page.fill("#catalog-q", "local test")
    await page.click("form[role=search] button[type=submit]")
    await page.wait_for_load_state("load")
    await visits.check("catalog-search")
    assert await page.locator("#catalog-list li").count() == 1
    await page.click("#catalog-list >> text=Local Test OAuth")
    await page.wait_for_load_state("load")
    assert await page.input_value("#callback-url") == f"{gw.url}/oauth/callback"
    await visits.check("new-integration")
    await page.fill("#unique_key", "local-oauth")
    await page.fill("#client_id", provider.client_id)
    await page.fill("#client_secret", provider.client_secret)
    await page.fill("#scopes", "read, write")
    await page.click("text=Create integration")
    await page.wait_for_url(re.compile(r".*/dashboard/dev/integrations/local-oauth\?notice=integration_created$"))
    await visits.check("integration")
    resp = await gw.client.get("/config/local-oauth?include_creds=true", headers=gw.auth)
    config = (await resp.json())["config"]
    assert (config["client_id"], config["scopes"]) == (provider.client_id, "read,write")

    # Connect: the provider's window opens, the connection appears without a reload.
    await page.evaluate("window.notReloaded = true")
    await page.fill("#connection_id", "dash-1")
    async with page.expect_popup() as popup_info:
        await page.click("#connect-button")
    popup = await popup_info.value
    await page.wait_for_selector('#connections-region tr[data-connection-id="dash-1"]')
    assert await page.evaluate("window.notReloaded") is True
    assert "Connected: dash-1" in await page.inner_text("[data-connect-status]")
    await eventually(lambda: _true(popup.is_closed()), what="the popup to close itself")
    assert provider.authorize_requests[-1]["scope"] == "read write"
    await visits.check("connected")
    resp = await gw.client.get("/connection/dash-1?provider_config_key=local-oauth", headers=gw.auth)
    access_token = (await resp.json())["credentials"]["access_token"]

    # The connection's page hides the secrets until revealed; the reveal is an activity entry.
    await page.click('#connections-region a:text("dash-1")')
    await page.wait_for_load_state("load")
    assert access_token not in await page.content()
    assert "OAUTH2" in await page.inner_text("dl.facts")
    await visits.check("connection")
    await page.click("text=Reveal credentials")
    await page.wait_for_load_state("load")
    assert access_token in await page.inner_text("#revealed-credentials")
    await visits.check("connection-revealed")

    # Break the provider: the failure shows in the Connect form, then in Activity with its messages.
    provider.token_mode = "error_400"
    await page.goto(f"{gw.url}/dashboard/dev/integrations/local-oauth")
    await page.fill("#connection_id", "dash-broken")
    async with page.expect_popup():
        await page.click("#connect-button")
    status = page.locator("[data-connect-status]")
    await status.filter(has_text="Failed (token_err)").wait_for()
    await visits.check("connect-failed")

    async def failed_operation() -> dict[str, Any] | None:
        return await db["activity_operations"].find_one({"connection_id": "dash-broken", "state": "failed"})

    await eventually(failed_operation, what="the failed attempt in the activity log")
    await eventually(
        lambda: db["activity_operations"].find_one({"type": "admin:reveal_credentials", "connection_id": "dash-1"}),
        what="the reveal in the activity log",
    )
    await page.click("nav[aria-label=Sections] >> text=Activity")
    await page.wait_for_load_state("load")
    await visits.check("activity")
    assert await page.locator("svg.chart").count() >= 1
    chart_label = await page.locator("svg.chart").first.get_attribute("aria-label")
    assert chart_label is not None
    assert "local-oauth" in chart_label
    assert "1 failed" in chart_label
    await page.select_option("#a-state", "failed")
    await page.fill("#a-q", "invalid_request")
    await page.click("text=Filter")
    await page.wait_for_load_state("load")
    await visits.check("activity-filtered")
    rows = page.locator("section[aria-labelledby=ops-title] tbody tr")
    assert await rows.count() == 1
    assert "dash-broken" in await rows.first.inner_text()
    await rows.first.locator("a").click()
    await page.wait_for_load_state("load")
    timeline = await page.inner_text("ol.timeline")
    assert "Authorization failed" in timeline
    assert "invalid_request" in timeline
    await visits.check("operation")

    # Connections: list, filters, and the reveal logged.
    await page.goto(f"{gw.url}/dashboard/dev/connections?auth_mode=OAUTH2&health=ok&q=dash")
    await visits.check("connections")
    assert await page.locator("tbody tr").count() == 1
    await page.goto(f"{gw.url}/dashboard/dev/activity?type=admin:reveal_credentials")
    assert "dash-1" in await page.inner_text("section[aria-labelledby=ops-title]")

    # Environment Settings in prod: reveal the secret key, rotate it, activate the new one.
    await page.goto(f"{gw.url}/dashboard/dev/settings")
    await page.click("nav[aria-label=Environment] >> text=prod")
    await page.wait_for_url(re.compile(r".*/dashboard/prod/settings$"))
    await visits.check("settings-prod")
    await page.click("button:has-text('Reveal secret key')")
    await page.wait_for_load_state("load")
    old_key = (await page.inner_text("#secret-key")).strip()
    await visits.check("settings-revealed")
    await page.click("text=Rotate secret key")
    await page.wait_for_load_state("load")
    await page.click("button:has-text('Reveal new secret key')")
    await page.wait_for_load_state("load")
    new_key = (await page.inner_text("#pending-secret-key")).strip()
    assert new_key != old_key
    for key in (old_key, new_key):  # both work during the rotation
        resp = await gw.client.get("/environment", headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 200
    await page.click("text=Activate new secret key")
    await page.wait_for_load_state("load")
    await visits.check("settings-rotated")
    resp = await gw.client.get("/environment", headers={"Authorization": f"Bearer {old_key}"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unknown_user_account"
    resp = await gw.client.get("/environment", headers={"Authorization": f"Bearer {new_key}"})
    assert resp.status == 200
    assert (await resp.json())["environment"]["name"] == "prod"

    # Webhook settings and HMAC through the forms, read back through the API.
    await page.fill("#primary_url", "https://hooks.example.com/keyway")
    await page.uncheck("#on_auth_refresh_error")
    await page.click("text=Save webhooks")
    await page.wait_for_load_state("load")
    await page.fill("#hmac_key", "hmac-secret-1")
    await page.check("#hmac_enabled")
    await page.click("text=Save HMAC")
    await page.wait_for_load_state("load")
    await visits.check("settings-saved")
    resp = await gw.client.get("/environment", headers={"Authorization": f"Bearer {new_key}"})
    environment = (await resp.json())["environment"]
    assert environment["webhook_settings"]["primary_url"] == "https://hooks.example.com/keyway"
    assert environment["webhook_settings"]["on_auth_refresh_error"] is False
    assert environment["hmac_enabled"] is True
    assert environment["hmac_key"] == "hmac-secret-1"

    # Delete the connection, then the integration, each after a confirmation page.
    await page.goto(f"{gw.url}/dashboard/dev/connections/local-oauth/dash-1")
    await page.click("text=Delete…")
    await page.wait_for_load_state("load")
    await visits.check("confirm-delete-connection")
    await page.click("button:has-text('Delete connection')")
    await page.wait_for_url(re.compile(r".*/dashboard/dev/connections\?notice=connection_deleted$"))
    resp = await gw.client.get("/connection/dash-1?provider_config_key=local-oauth", headers=gw.auth)
    assert resp.status == 404
    await page.goto(f"{gw.url}/dashboard/dev/integrations/local-oauth/delete")
    await page.click("button:has-text('Delete integration')")
    await page.wait_for_url(re.compile(r".*/dashboard/dev/integrations\?notice=integration_deleted$"))
    await visits.check("integration-deleted")
    assert (await gw.client.get("/config/local-oauth", headers=gw.auth)).status == 400
    await context.close()


async def test_keyboard_only_connect_and_credential_forms(
    gw: Gateway, provider: OAuthProvider, browser: Browser, shots: Path
) -> None:
    for body in (
        {
            "provider": "local-test-oauth",
            "provider_config_key": "kb-oauth",
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
        },
        {"provider": "local-api-key", "provider_config_key": "apikey"},
        {"provider": "freshdesk", "provider_config_key": "freshdesk"},
        {"provider": "unauthenticated", "provider_config_key": "open"},
    ):
        resp = await gw.client.post("/config", json=body, headers=gw.auth)
        assert resp.status == 200, await resp.text()
    context = await new_context(browser)
    page = await context.new_page()
    visits = Visits(page, shots, "keyboard")

    # Sign in with the keyboard alone.
    await page.goto(f"{gw.url}/dashboard/signin")
    await tab_to(page, "username")
    await page.keyboard.type(ADMIN)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r".*/dashboard/dev/integrations$"))
    await visits.check("integrations")

    # Tab to the integration's Connect button and press Enter: the popup flow runs to the end.
    await page.goto(f"{gw.url}/dashboard/dev/integrations/kb-oauth")
    connection_id = await page.input_value("#connection_id")
    await tab_to(page, "connect-button")
    async with page.expect_popup():
        await page.keyboard.press("Enter")
    await page.wait_for_selector(f'#connections-region tr[data-connection-id="{connection_id}"]')
    await visits.check("keyboard-connected")

    # API key and Basic through the small form; an unauthenticated one with no form at all.
    await page.goto(f"{gw.url}/dashboard/dev/integrations/apikey")
    await page.fill("#connection_id", "ak-1")
    await page.get_by_label("Region").fill("eu")
    await page.fill("#cred-apiKey", "key_from_the_dashboard")
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="ak-1"]')
    await visits.check("api-key-connected")
    resp = await gw.client.get("/connection/ak-1?provider_config_key=apikey", headers=gw.auth)
    conn = await resp.json()
    assert conn["credentials"] == {"type": "API_KEY", "apiKey": "key_from_the_dashboard"}
    assert conn["connection_config"] == {"region": "eu"}

    await page.goto(f"{gw.url}/dashboard/dev/integrations/freshdesk")
    await page.fill("#connection_id", "fd-1")
    await page.get_by_label("Freshdesk subdomain").fill("acme")
    await page.fill("#cred-username", "agent")
    await page.fill("#cred-password", "pw")
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="fd-1"]')
    resp = await gw.client.get("/connection/fd-1?provider_config_key=freshdesk", headers=gw.auth)
    assert (await resp.json())["credentials"] == {"type": "BASIC", "username": "agent", "password": "pw"}

    await page.goto(f"{gw.url}/dashboard/dev/integrations/open")
    await page.fill("#connection_id", "open-1")
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="open-1"]')

    # An error reaches the form with its type, as the SDK's AuthError carries it: here the
    # integration was deleted (through the API) while the page was open.
    await page.goto(f"{gw.url}/dashboard/dev/integrations/freshdesk")
    await page.fill("#connection_id", "fd-2")
    await page.get_by_label("Freshdesk subdomain").fill("acme")
    await page.fill("#cred-username", "agent")
    assert (await gw.client.delete("/config/freshdesk", headers=gw.auth)).status == 200
    await page.click("#connect-button")
    await page.locator("[data-connect-status]").filter(has_text="Failed (unknown_provider_config)").wait_for()
    visits.expect_failed_loads("400")
    await visits.check("basic-failed")

    # Closing the provider's window before the end rejects with windowClosed (the window's way to
    # the provider is held, so it is closed mid-flow whatever the machine's speed).
    held: list[Any] = []

    async def hold(route: Any) -> None:
        held.append(route)  # never answered: the window waits

    await context.route(re.compile(r".*/oauth/connect/.*"), hold)
    await page.goto(f"{gw.url}/dashboard/dev/integrations/kb-oauth")
    async with page.expect_popup() as popup_info:
        await page.click("#connect-button")
    popup = await popup_info.value
    await eventually(lambda: _true(bool(held)), what="the popup to head for /oauth/connect")
    await popup.close()
    await page.locator("[data-connect-status]").filter(has_text="Failed (windowClosed)").wait_for()
    await context.unroute(re.compile(r".*/oauth/connect/.*"))

    # Every other page once more, for its labels, console and screenshot.
    for path in ("connections", "activity", "settings", "catalog?q=git", "connections/apikey/ak-1"):
        await page.goto(f"{gw.url}/dashboard/dev/{path}")
        await visits.check(path.replace("/", "-").replace("?q=", "-"))
    await context.close()
