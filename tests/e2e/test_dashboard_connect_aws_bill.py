"""The dashboard's Connect form for AWS_SIGV4 (the role ARN, the region as the template's field) and
BILL (the four login fields), in Chromium, against the fake AWS and Bill on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser

from ..integration.gateway_app import Gateway, StartGateway, providers_yaml
from ..support.fake_aws import FakeAws
from ..support.fake_bill import FakeBill
from .dashboard_fixtures import ADMIN, PASSWORD_HASH, new_context, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.broker, pytest.mark.mongo, pytest.mark.browser]

ROLE = "arn:aws:iam::123456789012:role/KeywayAccess"


@pytest.fixture
async def world(start_gateway: StartGateway, tmp_path: Path) -> AsyncIterator[tuple[Gateway, FakeAws, FakeBill]]:
    async with FakeAws(role_arn=ROLE) as aws, FakeBill() as bill:
        catalog = {"aws-fake": aws.template(), "bill-fake": bill.template()}
        async with start_gateway(
            providers_file=providers_yaml(tmp_path, catalog),
            egress_allowlist="127.0.0.0/8",
            admin_user=ADMIN,
            admin_password_hash=PASSWORD_HASH,
        ) as gateway:
            body = {"provider": "bill-fake", "unique_key": "bill"}
            resp = await gateway.client.post("/integrations", json=body, headers=gateway.auth)
            assert resp.status == 200, await resp.text()
            yield gateway, aws, bill


async def test_the_connect_form_connects_aws_and_bill(
    world: tuple[Gateway, FakeAws, FakeBill], browser: Browser
) -> None:
    gw, aws, bill = world
    context = await new_context(browser)
    page = await context.new_page()
    await sign_in(page, gw)

    # The AWS integration's settings (Nango's integration_config) on the new-integration form.
    await page.goto(f"{gw.url}/dashboard/dev/catalog/aws-fake")
    await page.fill("#unique_key", "aws")
    await page.get_by_label("AWS Service").fill(aws.service)
    await page.get_by_label("AWS Access Key ID").fill(aws.owner_key_id)
    await page.get_by_label("AWS Secret Access Key").fill(aws.owner_secret)
    await page.get_by_role("button", name="Create integration").click()
    await page.wait_for_url(f"{gw.url}/dashboard/dev/integrations/aws*")
    stored = await gw.client.get("/config/aws?include_creds=true", headers=gw.auth)
    custom = (await stored.json())["config"]["custom"]
    assert custom == {
        "service": aws.service,
        "awsAccessKeyId": aws.owner_key_id,
        "awsSecretAccessKey": aws.owner_secret,
    }
    # The edit form shows the settings but never the secret one; saving with it blank keeps it.
    assert await page.input_value("#setting-service") == aws.service
    assert await page.input_value("#setting-awsSecretAccessKey") == ""
    await page.fill("#setting-defaultRegion", "ca-central-1")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(f"{gw.url}/dashboard/dev/integrations/aws*")
    stored = await gw.client.get("/config/aws?include_creds=true", headers=gw.auth)
    custom = (await stored.json())["config"]["custom"]
    assert (custom["defaultRegion"], custom["awsSecretAccessKey"]) == ("ca-central-1", aws.owner_secret)

    await page.goto(f"{gw.url}/dashboard/dev/integrations/aws")
    await page.fill("#connection_id", "aws-dash")
    await page.fill("#cred-role_arn", ROLE)
    await page.get_by_label("AWS Region (optional)").fill("sa-east-1")
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="aws-dash"]')
    resp = await gw.client.get("/connection/aws-dash?provider_config_key=aws", headers=gw.auth)
    credentials = (await resp.json())["credentials"]
    assert (credentials["type"], credentials["region"], credentials["role_arn"]) == ("AWS_SIGV4", "sa-east-1", ROLE)
    assert [call["RoleArn"] for call in aws.assume_calls] == [ROLE]

    await page.goto(f"{gw.url}/dashboard/dev/integrations/bill")
    await page.fill("#connection_id", "bill-dash")
    for name, value in bill.login.items():
        await page.fill(f"#cred-{name}", value)
    await page.click("#connect-button")
    await page.wait_for_selector('#connections-region tr[data-connection-id="bill-dash"]')
    resp = await gw.client.get("/connection/bill-dash?provider_config_key=bill", headers=gw.auth)
    assert (await resp.json())["credentials"]["session_id"] in bill.sessions
    await context.close()
