"""The dashboard's Connect button for every kind of flow, with the keyboard alone where it matters:
sign in and reach Connect by Tab and Enter (OAuth popup), the small forms for API key, Basic and
client credentials, an unauthenticated connection, an error's type, and a popup closed midway.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from . import dashboard_fixtures
from .dashboard_fixtures import ADMIN, PASSWORD, Visits, is_true, new_context, tab_to

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]
# The dashboard fixtures, bound here so pytest finds them by name (browser, provider: conftest).
gw, shots = dashboard_fixtures.gw, dashboard_fixtures.shots


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
        {
            "provider": "local-cc",
            "provider_config_key": "m2m",
            "oauth_client_id": provider.client_id,
            "oauth_client_secret": provider.client_secret,
        },
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

    await page.goto(f"{gw.url}/dashboard/dev/integrations/m2m")
    await page.fill("#connection_id", "m2m-1")
    await page.fill("#cred-client_id", provider.client_id)
    await page.fill("#cred-client_secret", provider.client_secret)
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="m2m-1"]')
    resp = await gw.client.get("/connection/m2m-1?provider_config_key=m2m", headers=gw.auth)
    assert (await resp.json())["credentials"]["token"].startswith("at_")

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
    await eventually(lambda: is_true(bool(held)), what="the popup to head for /oauth/connect")
    await popup.close()
    await page.locator("[data-connect-status]").filter(has_text="Failed (windowClosed)").wait_for()
    await context.unroute(re.compile(r".*/oauth/connect/.*"))

    # Every other page once more, for its labels, console and screenshot.
    for path in ("connections", "activity", "activity?q=a", "settings", "catalog?q=git", "connections/apikey/ak-1"):
        await page.goto(f"{gw.url}/dashboard/dev/{path}")
        await visits.check(re.sub(r"[/?=]+", "-", path))
    await context.close()
