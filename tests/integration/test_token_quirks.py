"""Salesforce, Zendesk and Shopify through the gateway, against fakes that answer as each documents:
the catalog's real entries (only their origins moved to 127.0.0.1) connect with the right
credentials and expiry, and the shared refresh renews them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp.connector
import pytest

from ..support.quirky_providers import FakeProvider, FakeSalesforce, FakeShopify, FakeZendesk, local_entry
from .flow_helpers import run_popup
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@asynccontextmanager
async def gateway_for(
    start_gateway: StartGateway, tmp_path: Path, providers: Mapping[str, FakeProvider]
) -> AsyncIterator[Gateway]:
    """A gateway whose catalog has the real entry of each provider, pointed at its fake, and an
    integration of the same name for each."""
    catalog = {name: local_entry(name, fake.base) for name, fake in providers.items()}
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=5.0,
        connection_cache_entries=0,
    ) as gw:
        for name, fake in providers.items():
            await create_integration(gw, name, name, **fake.integration_fields)
        yield gw


async def connect(gw: Gateway, key: str, connection_id: str, params: str = "") -> dict[str, Any]:
    result = await run_popup(gw, key, f"connection_id={connection_id}{params}")
    assert result.frame["message_type"] == "success", result.frame
    resp = await gw.client.get(
        f"/connection/{connection_id}?provider_config_key={key}&refresh_token=true", headers=gw.auth
    )
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def refresh(gw: Gateway, key: str, connection_id: str) -> tuple[int, dict[str, Any]]:
    resp = await gw.client.get(
        f"/connection/{connection_id}?provider_config_key={key}&refresh_token=true&force_refresh=true", headers=gw.auth
    )
    return resp.status, await resp.json()


def expires_in(credentials: Mapping[str, Any]) -> float:
    """Seconds from now to the credentials' ``expires_at``."""
    expires_at = datetime.fromisoformat(str(credentials["expires_at"]).replace("Z", "+00:00"))
    return (expires_at - datetime.now(UTC)).total_seconds()


# -- Salesforce ---------------------------------------------------------------------------------


@pytest.fixture
async def salesforce() -> AsyncIterator[FakeSalesforce]:
    fake = FakeSalesforce()
    await fake.start()
    try:
        # A stored instance_url is only ever an https origin on 443: the fake instance is one.
        await fake.start_instance()
    except PermissionError:
        await fake.stop()
        pytest.skip("binding port 443 for the fake Salesforce instance needs root")
    # Trusted as a real instance's certificate is.
    aiohttp.connector._SSL_CONTEXT_VERIFIED.load_verify_locations(cadata=fake.certificate_pem.decode())
    yield fake
    await fake.stop()


async def test_salesforce_expiry_comes_from_introspection(
    start_gateway: StartGateway, tmp_path: Path, salesforce: FakeSalesforce, db: Any
) -> None:
    async with gateway_for(start_gateway, tmp_path, {"salesforce": salesforce}) as gw:
        connection = await connect(gw, "salesforce", "sf-1")
        credentials = connection["credentials"]
        assert "expires_in" not in credentials["raw"]  # Salesforce does not say
        assert 7190 < expires_in(credentials) <= 7200  # the session's expiry, introspected
        assert connection["connection_config"]["instance_url"] == salesforce.instance_url
        asked = salesforce.token_requests("/services/oauth2/introspect")[-1]
        assert asked["token"] == credentials["access_token"]
        assert asked["token_type_hint"] == "access_token"
        assert asked["client_secret"] == salesforce.client_secret
        doc = await db["connections"].find_one({"connection_id": "sf-1"})
        due = doc["refresh_due_at"].replace(tzinfo=UTC)
        assert abs((due - datetime.now(UTC)).total_seconds() - (7200 - 900)) < 15  # 15 minutes ahead

        # After a refresh the new token is introspected: the org's timeout changed meanwhile.
        salesforce.session_seconds = 1800
        status, body = await refresh(gw, "salesforce", "sf-1")
        assert status == 200, body
        renewed = body["credentials"]
        assert renewed["access_token"] != credentials["access_token"]
        assert renewed["refresh_token"] == credentials["refresh_token"]  # kept: Salesforce sends none
        assert 1790 < expires_in(renewed) <= 1800
        assert salesforce.token_requests("/services/oauth2/introspect")[-1]["token"] == renewed["access_token"]

        # Introspection down: the refresh still stores the new token, with the template's hour.
        salesforce.introspection = "down"
        status, body = await refresh(gw, "salesforce", "sf-1")
        assert status == 200, body
        assert body["credentials"]["access_token"] != renewed["access_token"]
        assert 3590 < expires_in(body["credentials"]) <= 3600


async def test_salesforce_connects_when_introspection_fails(
    start_gateway: StartGateway, tmp_path: Path, salesforce: FakeSalesforce
) -> None:
    salesforce.introspection = "inactive"
    async with gateway_for(start_gateway, tmp_path, {"salesforce": salesforce}) as gw:
        connection = await connect(gw, "salesforce", "sf-2")
        assert 3590 < expires_in(connection["credentials"]) <= 3600  # token_expires_in_ms stands in
        salesforce.introspection = "ok"
        status, body = await refresh(gw, "salesforce", "sf-2")
        assert status == 200, body
        assert 7190 < expires_in(body["credentials"]) <= 7200


# -- Zendesk and Shopify: declarative ------------------------------------------------------------


async def test_zendesk_asks_for_expiring_tokens_and_refreshes_them(start_gateway: StartGateway, tmp_path: Path) -> None:
    zendesk = FakeZendesk()
    await zendesk.start()
    try:
        async with gateway_for(start_gateway, tmp_path, {"zendesk": zendesk}) as gw:
            connection = await connect(gw, "zendesk", "zd-1", "&params[subdomain]=acme")
            exchange = zendesk.token_requests("/oauth/tokens")[-1]
            assert (exchange["grant_type"], exchange["expires_in"]) == ("authorization_code", "1800")
            credentials = connection["credentials"]
            assert credentials["refresh_token"]
            assert 1790 < expires_in(credentials) <= 1800
            status, body = await refresh(gw, "zendesk", "zd-1")
            assert status == 200, body
            renewal = zendesk.token_requests("/oauth/tokens")[-1]
            assert (renewal["grant_type"], renewal["expires_in"]) == ("refresh_token", "1800")
            assert renewal["refresh_token"] == credentials["refresh_token"]
            assert body["credentials"]["refresh_token"] != credentials["refresh_token"]  # rotated
            assert 1790 < expires_in(body["credentials"]) <= 1800
    finally:
        await zendesk.stop()


async def test_shopify_gets_expiring_offline_tokens_and_refreshes_them(
    start_gateway: StartGateway, tmp_path: Path, db: Any
) -> None:
    shopify = FakeShopify()
    await shopify.start()
    try:
        async with gateway_for(start_gateway, tmp_path, {"shopify": shopify}) as gw:
            connection = await connect(gw, "shopify", "shop-1", "&params[subdomain]=acme")
            assert shopify.token_requests("/admin/oauth/access_token")[-1]["expiring"] == "1"
            credentials = connection["credentials"]
            assert credentials["refresh_token"].startswith("shprt_")
            assert 3590 < expires_in(credentials) <= 3600
            status, body = await refresh(gw, "shopify", "shop-1")
            assert status == 200, body
            renewal = shopify.token_requests("/admin/oauth/access_token")[-1]
            assert renewal["grant_type"] == "refresh_token"
            assert renewal["refresh_token"] == credentials["refresh_token"]
            renewed = body["credentials"]
            assert renewed["access_token"] != credentials["access_token"]
            assert renewed["refresh_token"] != credentials["refresh_token"]
            doc = await db["connections"].find_one({"connection_id": "shop-1"})
            assert doc["refresh_due_at"].replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(minutes=40)
            stored = json.dumps(doc, default=str)
            assert renewed["refresh_token"] not in stored  # encrypted at rest
    finally:
        await shopify.stop()
