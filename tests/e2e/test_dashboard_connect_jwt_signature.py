"""The dashboard's Connect form for the JWT and SIGNATURE modes: a JWT integration asks for the fields
its template declares (a PEM key in a text area), a SIGNATURE one for the user name and password;
both connect through the gateway's routes against the provider on 127.0.0.1 that checks the token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from ..support.signed_token_provider import SignedTokenProvider
from .dashboard_fixtures import ADMIN, PASSWORD, PASSWORD_HASH, new_context

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]


@pytest.fixture
async def provider() -> AsyncIterator[SignedTokenProvider]:
    fake = await SignedTokenProvider().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def gw(provider: SignedTokenProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, provider.templates()),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        admin_user=ADMIN,
        admin_password_hash=PASSWORD_HASH,
    ) as gateway:
        await create_integration(gateway, "test-snowflake-jwt", "snow")
        await create_integration(gateway, "test-emarsys", "ems")
        yield gateway


async def test_the_connect_form_of_a_jwt_and_a_signature_integration(
    gw: Gateway, provider: SignedTokenProvider, browser: Browser
) -> None:
    context = await new_context(browser)
    page = await context.new_page()
    await page.goto(f"{gw.url}/dashboard/signin")
    await page.fill("#username", ADMIN)
    await page.fill("#password", PASSWORD)
    await page.press("#password", "Enter")
    await page.wait_for_url(re.compile(r".*/dashboard/dev/integrations$"))

    await page.goto(f"{gw.url}/dashboard/dev/integrations/snow")
    assert await page.eval_on_selector("#cred-privateKey", "e => e.tagName") == "TEXTAREA"
    await page.fill("#connection_id", "dash-snow")
    await page.get_by_label("Account Identifier").fill(provider.account)
    await page.get_by_label("User Name").fill(provider.user)
    await page.fill("#cred-privateKey", provider.rsa_pem)
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="dash-snow"]')
    resp = await gw.client.get("/connection/dash-snow?provider_config_key=snow", headers=gw.auth)
    assert (await resp.json())["credentials"]["type"] == "JWT"

    await page.goto(f"{gw.url}/dashboard/dev/integrations/ems")
    await page.fill("#connection_id", "dash-ems")
    await page.fill("#cred-username", provider.wsse_user)
    await page.fill("#cred-password", "not the secret")
    await page.click("#connect-button")
    await page.wait_for_selector("[data-connect-status]:has-text('connection_test_failed')")
    await page.fill("#cred-password", provider.wsse_password)
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="dash-ems"]')
    assert provider.accepted["emarsys"], provider.rejected
    await context.close()
