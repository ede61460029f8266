"""The unmodified @nangohq/frontend 0.71.10 (from npm, in Chromium) connecting AWS_SIGV4 and BILL
integrations: ``auth(key, id, {credentials: {type: 'AWS_SIGV4', role_arn, region}})`` posts to
``/auth/aws-sigv4/{key}``, ``auth(key, id, {credentials: {username, password, organization_id,
dev_key}})`` to ``/auth/bill/{key}``. The providers are the fakes on 127.0.0.1 (tests/support), which
refuse any call not authenticated as the real ones require; each connection is then used through
the proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway, StartGateway, providers_yaml
from ..support.fake_aws import FakeAws
from ..support.fake_bill import FakeBill
from .test_frontend_sdk import app_page_url, call, open_app

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]
__all__ = ["app_page_url"]  # the page fixture, shared with the other frontend SDK tests

ROLE = "arn:aws:iam::123456789012:role/KeywayAccess"


@pytest.fixture
async def gw(start_gateway: StartGateway, tmp_path: Path) -> AsyncIterator[tuple[Gateway, FakeAws, FakeBill]]:
    async with FakeAws(role_arn=ROLE) as aws, FakeBill() as bill:
        catalog = {"aws-fake": aws.template(), "bill-fake": bill.template()}
        async with start_gateway(
            providers_file=providers_yaml(tmp_path, catalog),
            egress_allowlist="127.0.0.0/8",
            public_key_connect="allowed",
        ) as gateway:
            settings = {"service": aws.service, "awsAccessKeyId": aws.owner_key_id}
            settings |= {"awsSecretAccessKey": aws.owner_secret}
            for body in (
                {"provider": "aws-fake", "unique_key": "aws", "integration_config": settings},
                {"provider": "bill-fake", "unique_key": "bill"},
            ):
                resp = await gateway.client.post("/integrations", json=body, headers=gateway.auth)
                assert resp.status == 200, await resp.text()
            yield gateway, aws, bill


async def proxied(gw: Gateway, connection: str, key: str, path: str) -> int:
    headers = {**gw.auth, "Connection-Id": connection, "Provider-Config-Key": key}
    resp = await gw.client.get("/proxy" + path, headers=headers)
    return resp.status


async def test_aws_sigv4_with_the_current_sdk(
    gw: tuple[Gateway, FakeAws, FakeBill], browser: Browser, app_page_url: str
) -> None:
    gateway, aws, _bill = gw
    page = await open_app(browser, app_page_url, "07110")
    options = {"credentials": {"type": "AWS_SIGV4", "role_arn": ROLE, "region": "eu-central-1"}}
    outcome = await call(page, "auth", gateway.url, gateway.public_key, "aws", "aws-1", options)
    assert outcome == {"ok": True, "result": {"providerConfigKey": "aws", "connectionId": "aws-1"}}
    assert [call["RoleArn"] for call in aws.assume_calls] == [ROLE]
    assert await proxied(gateway, "aws-1", "aws", "/widgets") == 200
    assert aws.service_calls[-1]["path"] == "/svc/execute-api/eu-central-1/widgets"
    assert aws.rejected == []

    # No region anywhere: the SDK shows the mode's code, and nothing was asked of STS.
    options = {"credentials": {"type": "AWS_SIGV4", "role_arn": ROLE}}
    outcome = await call(page, "auth", gateway.url, gateway.public_key, "aws", "aws-2", options)
    assert (outcome["ok"], outcome["type"]) == (False, "missing_aws_sigv4_region")
    assert len(aws.assume_calls) == 1


async def test_bill_with_the_current_sdk(
    gw: tuple[Gateway, FakeAws, FakeBill], browser: Browser, app_page_url: str
) -> None:
    gateway, _aws, bill = gw
    page = await open_app(browser, app_page_url, "07110")
    outcome = await call(page, "auth", gateway.url, gateway.public_key, "bill", "bill-1", {"credentials": bill.login})
    assert outcome == {"ok": True, "result": {"providerConfigKey": "bill", "connectionId": "bill-1"}}
    assert await proxied(gateway, "bill-1", "bill", "/v3/vendors") == 200
    assert bill.api_calls[-1]["path"] == "/connect/v3/vendors"

    wrong = {"credentials": bill.login | {"password": "nope"}}
    outcome = await call(page, "auth", gateway.url, gateway.public_key, "bill", "bill-2", wrong)
    assert (outcome["ok"], outcome["type"]) == (False, "invalid_bill_credentials")
