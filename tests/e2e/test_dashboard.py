"""The dashboard in real headless Chromium: sign-in (CSRF, lockout, sign-out), then the whole path
of the guide: an integration created against a local OAuth 2 provider, Connect through the popup,
the connection, a failure in Activity with its messages, settings, and a secret key rotated.

The gateway runs in-process with the activity-log service beside it, on the real broker and database.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from . import dashboard_fixtures
from .dashboard_fixtures import ADMIN, PASSWORD, Visits, is_true, new_context, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]
# The dashboard fixtures, bound here so pytest finds them by name (browser, provider: conftest).
gw, shots = dashboard_fixtures.gw, dashboard_fixtures.shots


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
    await eventually(lambda: is_true(popup.is_closed()), what="the popup to close itself")
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
    await page.select_option("#public_key_connect", "hmac")
    await page.click("text=Save public key settings")
    await page.wait_for_load_state("load")
    await visits.check("settings-saved")
    resp = await gw.client.get("/environment", headers={"Authorization": f"Bearer {new_key}"})
    environment = (await resp.json())["environment"]
    assert environment["webhook_settings"]["primary_url"] == "https://hooks.example.com/keyway"
    assert environment["webhook_settings"]["on_auth_refresh_error"] is False
    assert (environment["public_key_connect"], environment["hmac_enabled"]) == ("hmac", True)
    assert environment["hmac_key"] == "hmac-secret-1"

    # Webhook signing keys: rotation keeps the old key signing for its grace period; reveal shows both.
    await page.click("text=Rotate signing key")
    await page.wait_for_load_state("load")
    await page.click("button:has-text('Reveal signing keys')")
    await page.wait_for_load_state("load")
    shown = {(await page.inner_text(f"#signing-key-{i}")).strip() for i in (1, 2)}
    resp = await gw.client.get("/webhooks/signing-keys", headers={"Authorization": f"Bearer {new_key}"})
    assert shown == {k["key"] for k in (await resp.json())["keys"]}
    assert "stops signing" in await page.inner_text("section[aria-labelledby=webhooks-title]")
    await visits.check("settings-signing-keys")

    # The Nango webhook signing key (X-Nango-Hmac-Sha256): rotated at once, revealed as the API shows it.
    resp = await gw.client.get("/environment", headers={"Authorization": f"Bearer {new_key}"})
    before = (await resp.json())["environment"]["webhook_signing_key"]
    await page.click("text=Rotate webhook signing key")
    await page.wait_for_load_state("load")
    await page.click("button:has-text('Reveal webhook signing key')")
    await page.wait_for_load_state("load")
    shown_key = (await page.inner_text("#webhook-signing-key")).strip()
    resp = await gw.client.get("/environment", headers={"Authorization": f"Bearer {new_key}"})
    assert shown_key == (await resp.json())["environment"]["webhook_signing_key"] != before
    await visits.check("settings-webhook-signing-key")

    # A delivery attempt the dispatcher recorded, replayed from the table: a command on the bus.
    now = datetime.now(UTC)
    await db["webhook_deliveries"].insert_one(
        {
            "_id": "dlv-1:0:1",
            "delivery_id": "dlv-1",
            "run": "0",
            "webhook_id": "msg_dlv-1",
            "environment": "prod",
            "event_id": "ev-1",
            "event_type": "connection.created",
            "url": "https://hooks.example.com/keyway",
            "attempt": 1,
            "state": "failed",
            "success": False,
            "final": True,
            "status": 500,
            "error": {"type": "http_error", "description": "the receiver answered 500"},
            "created_at": now,
            "finished_at": now,
            "expires_at": now + timedelta(days=1),
        }
    )
    await page.goto(f"{gw.url}/dashboard/prod/settings")
    deliveries = page.locator("section[aria-labelledby=deliveries-title]")
    assert "the receiver answered 500" in await deliveries.inner_text()
    await deliveries.locator("button:has-text('Replay')").click()
    await page.wait_for_url(re.compile(r".*notice=replay_requested$"))
    await visits.check("settings-replayed")
    await eventually(
        lambda: db["activity_messages"].find_one({"event_type": "webhook.replay_requested", "environment": "prod"}),
        what="the replay command on the bus",
    )

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
