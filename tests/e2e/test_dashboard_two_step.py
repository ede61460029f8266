"""The dashboard's Connect for TWO_STEP: the form asks for the template's own credentials (hidden ones
filled by the flow), runs the same call as the frontend SDK (``/auth/two-step/{key}``), and the
connection holds the token the fake provider minted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from ..support.two_step_provider import TwoStepProvider, two_step_provider
from . import dashboard_fixtures
from .dashboard_fixtures import ADMIN, PASSWORD_HASH, Visits, new_context, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]
shots = dashboard_fixtures.shots


@pytest.fixture
async def fake() -> AsyncIterator[TwoStepProvider]:
    async with two_step_provider() as provider:
        yield provider


@pytest.fixture
async def gw(fake: TwoStepProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    template: dict[str, Any] = {
        "display_name": "Local two-step service",
        "auth_mode": "TWO_STEP",
        "token_url": f"{fake.base}/login",
        "token_params": {"username": "${credentials.username}", "password": "${credentials.password}"},
        "token_response": {"token": "data.accessToken"},
        "proxy": {"base_url": fake.base},
        "credentials": {
            "username": {"type": "string", "title": "API user", "example": "api-user"},
            "password": {"type": "string", "title": "API password", "secret": True},
            "client": {"type": "string", "title": "", "hidden": True, "default_value": "keyway"},
        },
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, {"local-two-step": template}),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        admin_user=ADMIN,
        admin_password_hash=PASSWORD_HASH,
    ) as gateway:
        await create_integration(gateway, "local-two-step", "two-step")
        yield gateway


async def test_the_connect_form_asks_for_the_templates_credentials(
    gw: Gateway, fake: TwoStepProvider, browser: Browser, shots: Path
) -> None:
    context = await new_context(browser)
    page = await context.new_page()
    visits = Visits(page, shots, "two-step")
    await sign_in(page, gw)
    await page.goto(f"{gw.url}/dashboard/dev/integrations/two-step")
    await visits.check("two-step-integration")
    assert await page.locator("#cred-client").count() == 0  # hidden: the flow fills it
    assert await page.get_attribute("#cred-password", "type") == "password"

    await page.fill("#connection_id", "dash-ts-1")
    await page.get_by_label("API user").fill(fake.username)
    await page.get_by_label("API password").fill(fake.password)
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="dash-ts-1"]')
    await visits.check("two-step-connected")
    resp = await gw.client.get("/connection/dash-ts-1?provider_config_key=two-step", headers=gw.auth)
    credentials = (await resp.json())["credentials"]
    assert (credentials["type"], credentials["token"]) == ("TWO_STEP", "tok-1")
    assert fake.requests[-1]["body"] == {"username": fake.username, "password": fake.password}
    assert credentials["client"] == "keyway"  # the hidden field's default, kept with the others
    await context.close()
