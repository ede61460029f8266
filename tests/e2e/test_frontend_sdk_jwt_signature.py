"""The unmodified @nangohq/frontend 0.71.10, in Chromium, connecting the JWT and SIGNATURE modes:
``auth(key, id, {credentials: {type: 'JWT', …}})`` posts to ``/auth/jwt/{key}``,
``{type: 'SIGNATURE', username, password}`` to ``/auth/signature/{key}``; the provider on 127.0.0.1
checks each JWT with the customer's public key or secret and each WSSE digest, and the SDK shows
the gateway's error code when a key cannot sign."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from ..support.signed_token_provider import SignedTokenProvider
from .test_frontend_sdk import app_page_url, call, open_app

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]

__all__ = ["app_page_url"]  # the fixture, shared with the other SDK tests


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
    ) as gateway:
        for provider_name, key in (
            ("test-snowflake-jwt", "snow"),
            ("test-ghost-admin", "ghost"),
            ("test-emarsys", "ems"),
        ):
            await create_integration(gateway, provider_name, key)
        yield gateway


async def test_jwt_and_signature_with_the_current_sdk(
    gw: Gateway, provider: SignedTokenProvider, browser: Browser, app_page_url: str
) -> None:
    page = await open_app(browser, app_page_url, "07110")
    jwt = {
        "type": "JWT",
        "accountIdentifier": provider.account,
        "userName": provider.user,
        "privateKey": provider.rsa_pem,
    }
    outcome = await call(page, "auth", gw.url, gw.public_key, "snow", "sdk-snow", {"credentials": jwt})
    assert outcome == {"ok": True, "result": {"providerConfigKey": "snow", "connectionId": "sdk-snow"}}, (
        provider.rejected
    )

    # Ghost's older shape: a bare privateKey "id:secret", and the API version as a parameter.
    options = {"credentials": {"privateKey": provider.ghost_api_key}, "params": {"version": "v5.0"}}
    outcome = await call(page, "auth", gw.url, gw.public_key, "ghost", "sdk-ghost", options)
    assert outcome["ok"] is True, (outcome, provider.rejected)

    wsse = {"type": "SIGNATURE", "username": provider.wsse_user, "password": provider.wsse_password}
    outcome = await call(page, "auth", gw.url, gw.public_key, "ems", "sdk-ems", {"credentials": wsse})
    assert outcome == {"ok": True, "result": {"providerConfigKey": "ems", "connectionId": "sdk-ems"}}

    for connection_id, key, path in (
        ("sdk-snow", "snow", "api/v2/statements"),
        ("sdk-ghost", "ghost", "users/"),
        ("sdk-ems", "ems", "api/v2/settings"),
    ):
        headers = {**gw.auth, "Connection-Id": connection_id, "Provider-Config-Key": key}
        resp = await gw.client.post(f"/proxy/{path}", headers=headers)
        assert resp.status == 200, (await resp.text(), provider.rejected)

    # The SDK shows the gateway's code: a key that cannot sign, a password the provider refuses.
    bad = {**jwt, "privateKey": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}
    outcome = await call(page, "auth", gw.url, gw.public_key, "snow", "sdk-bad", {"credentials": bad})
    assert (outcome["ok"], outcome["type"]) == (False, "invalid_private_key")
    outcome = await call(
        page, "auth", gw.url, gw.public_key, "ems", "sdk-bad", {"credentials": {**wsse, "password": "x"}}
    )
    assert (outcome["ok"], outcome["type"]) == (False, "connection_test_failed")
    resp = await gw.client.get("/connection/sdk-bad?provider_config_key=snow", headers=gw.auth)
    assert resp.status == 404
