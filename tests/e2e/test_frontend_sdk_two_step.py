"""TWO_STEP through the unmodified @nangohq/frontend 0.71.10 in Chromium: ``auth(key, id, {credentials:
{type: 'TWO_STEP', ...fields}, params})`` posts to ``/auth/two-step/{key}``; the gateway exchanges the
fields at a fake provider on 127.0.0.1, and the proxy's call is accepted only with the minted token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from ..support.two_step_provider import TwoStepProvider, two_step_provider
from .test_frontend_sdk import app_page_url, call, open_app

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]

__all__ = ["app_page_url"]  # the page serving the SDKs, a fixture of the SDK tests


@pytest.fixture
async def provider() -> AsyncIterator[TwoStepProvider]:
    async with two_step_provider() as fake:
        yield fake


@pytest.fixture
async def gw(provider: TwoStepProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    template = {
        "auth_mode": "TWO_STEP",
        "token_url": f"{provider.base}/login",
        "token_params": {"username": "${credentials.username}", "password": "${credentials.password}"},
        "token_response": {
            "token": "data.accessToken",
            "token_expiration": "data.expiresIn",
            "token_expiration_strategy": "expireIn",
        },
        "proxy": {"base_url": provider.base, "headers": {"x-api-token": "${accessToken}"}},
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, {"test-two-step": template}),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        public_key_connect="allowed",
    ) as gateway:
        await create_integration(gateway, "test-two-step", "two-step")
        yield gateway


async def test_two_step_with_the_current_sdk(
    gw: Gateway, provider: TwoStepProvider, browser: Browser, app_page_url: str
) -> None:
    page = await open_app(browser, app_page_url, "07110")
    credentials = {"type": "TWO_STEP", "username": provider.username, "password": provider.password}
    outcome = await call(page, "auth", gw.url, gw.public_key, "two-step", "ts-1", {"credentials": credentials})
    assert outcome == {"ok": True, "result": {"providerConfigKey": "two-step", "connectionId": "ts-1"}}
    assert provider.requests[-1]["body"] == {"username": provider.username, "password": provider.password}

    headers = {**gw.auth, "Connection-Id": "ts-1", "Provider-Config-Key": "two-step"}
    resp = await gw.client.get("/proxy/api/me", headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["token"] == "tok-1"

    # The provider's refusal reaches the SDK as the mode's error code.
    wrong = {**credentials, "password": "not-it"}
    outcome = await call(page, "auth", gw.url, gw.public_key, "two-step", "ts-2", {"credentials": wrong})
    assert (outcome["ok"], outcome["type"]) == (False, "invalid_two_step_credentials")
