"""Post-connection enrichment through the gateway: a connect flow for a built-in provider (its catalog
entry, origins pointed at servers on 127.0.0.1) ends with the provider's fields in the stored
connection before ``connection.created`` announces it; a failing enrichment call leaves the
connection stored, without the fields, and a warning in the activity log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from activity_log.app import create_app as create_activity_log
from activity_log.settings import ActivityLogSettings
from keyway_shared.providers import load_catalog

from ..support.inproc import running
from ..support.oauth_provider import OAuthProvider
from ..support.polling import eventually
from ..support.provider_apis import ProviderApis, with_origins
from .flow_helpers import EventWatch, get_connection, run_popup, watched_events
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

API_KEY = "workable-api-key-secret"


@pytest.fixture
async def apis(provider: OAuthProvider) -> AsyncIterator[ProviderApis]:
    # The provider's API takes the tokens its authorization server issued, and Workable's key.
    server = await ProviderApis(accepts=lambda token: token in provider.access_tokens or token == API_KEY).start()
    yield server
    await server.stop()


@pytest.fixture
async def events(amqp: Any, namespace: str) -> AsyncIterator[EventWatch]:
    async with watched_events(amqp, namespace, "enrichment") as watch:
        yield watch


def pointed_at(name: str, provider: OAuthProvider, apis: ProviderApis) -> dict[str, Any]:
    """The built-in entry: its API origins at ``apis``, its authorization server ``provider``."""
    raw = load_catalog().raw(name)
    assert raw is not None
    entry: dict[str, Any] = with_origins(raw, apis.base)
    if entry["auth_mode"] == "OAUTH2":
        entry |= {"authorization_url": f"{provider.base}/authorize", "token_url": f"{provider.base}/token"}
        entry.pop("revocation_url", None)
    return entry


@pytest.fixture
async def gw(
    provider: OAuthProvider,
    apis: ProviderApis,
    events: EventWatch,
    tmp_path: Path,
    start_gateway: StartGateway,
    service_settings: dict[str, Any],
) -> AsyncIterator[Gateway]:
    catalog = {name: pointed_at(name, provider, apis) for name in ("hubspot", "jira", "workable")}
    activity = ActivityLogSettings(**service_settings, batch_delay_ms=20)
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gateway:
        for name in ("hubspot", "jira"):
            await create_integration(gateway, name, name, **provider.integration_fields, oauth_scopes="read")
        await create_integration(gateway, "workable", "workable")
        async with running(create_activity_log(activity)):
            yield gateway


async def attempt_of(gw: Gateway, connection_id: str, message_start: str, state: str | None = None) -> dict[str, Any]:
    """The connect attempt's activity entry, once it holds a message starting with ``message_start``
    (and is in ``state``, when given: the steps and the final state are ingested separately)."""

    async def probe() -> dict[str, Any] | None:
        resp = await gw.client.get(f"/logs/operations?connection={connection_id}", headers=gw.auth)
        listed = (await resp.json())["data"]
        if not listed:
            return None
        resp = await gw.client.get(f"/logs/operations/{listed[0]['id']}", headers=gw.auth)
        one: dict[str, Any] = (await resp.json())["data"]
        if state is not None and one.get("state") != state:
            return None
        return one if any(m["message"].startswith(message_start) for m in one["messages"]) else None

    return await eventually(probe, timeout=30, what=f"the attempt for {connection_id} to say {message_start!r}")


async def test_an_oauth_connection_is_stored_with_the_providers_fields(
    gw: Gateway, apis: ProviderApis, events: EventWatch, db: Any
) -> None:
    result = await run_popup(gw, "hubspot", "connection_id=hs-1")
    assert result.frame["message_type"] == "success", result.frame
    created = await events.wait_for("connection.created", "hs-1")
    assert created["provider"] == "hubspot"
    # the write the event announces is the enriched one: there is no other version of it
    stored = await db["connections"].find_one({"connection_id": "hs-1"})
    assert stored["connection_config"]["portalId"] == 62515
    connection = await get_connection(gw, "hs-1", "hubspot")
    assert connection["connection_config"]["portalId"] == 62515
    (asked,) = apis.asked("/account-info/v3/details")
    assert asked["headers"]["Authorization"] == f"Bearer {connection['credentials']['access_token']}"

    attempt = await attempt_of(gw, "hs-1", "Post-connection enrichment filled")
    told = next(m for m in attempt["messages"] if m["message"].startswith("Post-connection enrichment"))
    assert told["message"] == "Post-connection enrichment filled portalId"
    assert told["level"] == "info"
    call = next(m for m in attempt["messages"] if m["message"].startswith("Post-connection call"))
    assert call["request"]["url"] == f"{apis.base}/account-info/v3/details"
    assert call["request"]["status"] == 200

    # a re-authorization is enriched again (Nango runs its script on every override too)
    result = await run_popup(gw, "hubspot", "connection_id=hs-1")
    assert result.frame["message_type"] == "success"
    await events.wait_for("connection.updated", "hs-1")
    assert len(apis.asked("/account-info/v3/details")) == 2
    assert (await get_connection(gw, "hs-1", "hubspot"))["connection_config"]["portalId"] == 62515


async def test_jira_finds_the_site_the_user_named(gw: Gateway, apis: ProviderApis, events: EventWatch) -> None:
    apis.sites = [
        {"id": "aaaa1111-0000", "name": "First", "url": "https://first.atlassian.net", "scopes": ["read:jira-work"]},
        {"id": "bbbb2222-0000", "name": "Acme", "url": "https://acme.atlassian.net", "scopes": ["read:jira-work"]},
    ]
    result = await run_popup(gw, "jira", "connection_id=j-1&params[subdomain]=acme")
    assert result.frame["message_type"] == "success", result.frame
    await events.wait_for("connection.created", "j-1")
    config = (await get_connection(gw, "j-1", "jira"))["connection_config"]
    assert config == config | {
        "subdomain": "acme",
        "cloudId": "bbbb2222-0000",
        "baseUrl": "https://acme.atlassian.net",
        "accountId": "jira-account-of-bbbb2222",
    }


async def test_a_failing_enrichment_stores_the_connection_with_a_warning(
    gw: Gateway, apis: ProviderApis, events: EventWatch, db: Any
) -> None:
    apis.failures["/account-info/v3/details"] = "503"
    result = await run_popup(gw, "hubspot", "connection_id=hs-2")
    assert result.frame["message_type"] == "success", result.frame
    await events.wait_for("connection.created", "hs-2")
    connection = await get_connection(gw, "hs-2", "hubspot")
    assert "portalId" not in connection["connection_config"]

    # the connection was made all the same: the attempt ends in success
    attempt = await attempt_of(gw, "hs-2", "Post-connection enrichment incomplete", state="success")
    warning = next(m for m in attempt["messages"] if m["message"].startswith("Post-connection enrichment"))
    assert warning["level"] == "warn"
    assert warning["message"] == (
        f"Post-connection enrichment incomplete: GET {apis.base}/account-info/v3/details answered HTTP 503"
    )
    assert attempt["state"] == "success"  # the connection was made all the same
    stored = json.dumps(
        [d for name in ("activity_operations", "activity_messages") for d in await db[name].find({}).to_list()],
        default=str,
    )
    assert connection["credentials"]["access_token"] not in stored


async def test_an_api_key_connection_is_enriched_too(gw: Gateway, apis: ProviderApis, events: EventWatch) -> None:
    resp = await gw.client.post(
        f"/api-auth/api-key/workable?connection_id=w-1&public_key={gw.public_key}", json={"apiKey": API_KEY}
    )
    assert resp.status == 200, await resp.text()
    await events.wait_for("connection.created", "w-1")
    config = (await get_connection(gw, "w-1", "workable"))["connection_config"]
    assert config["subdomain"] == "acme"
    (asked,) = apis.asked("/spi/v3/accounts")
    assert asked["headers"]["Authorization"] == f"Bearer {API_KEY}"  # the template's header, as the proxy sends it

    # a subdomain the user typed is kept, and nothing is asked
    resp = await gw.client.post(
        f"/api-auth/api-key/workable?connection_id=w-2&public_key={gw.public_key}&params[subdomain]=mine",
        json={"apiKey": API_KEY},
    )
    assert resp.status == 200, await resp.text()
    assert (await get_connection(gw, "w-2", "workable"))["connection_config"]["subdomain"] == "mine"
    assert len(apis.asked("/spi/v3/accounts")) == 1


async def test_a_connect_links_form_is_enriched_too(gw: Gateway, apis: ProviderApis, events: EventWatch) -> None:
    return_url = "http://127.0.0.1:9/integrations/done"
    resp = await gw.client.patch("/environment", json={"allowed_return_urls": [return_url]}, headers=gw.auth)
    assert resp.status == 200, await resp.text()
    resp = await gw.client.post("/connect/links", json={"return_url": return_url}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    token = (await resp.json())["data"]["token"]
    resp = await gw.client.post(
        f"/connect/link/{token}/connect/workable",
        data={"apiKey": API_KEY},
        headers={"Origin": gw.url},
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    created = await events.wait_for("connection.created")
    config = (await get_connection(gw, created["connection_id"], "workable"))["connection_config"]
    assert config["subdomain"] == "acme"
    assert len(apis.asked("/spi/v3/accounts")) == 1


async def test_an_imported_connection_is_enriched_too(gw: Gateway, apis: ProviderApis, events: EventWatch) -> None:
    """``POST /connection`` runs the provider's enrichment as a browser flow does (Nango runs its
    script on import too); a field the importer gives wins over what would be looked up."""
    body = {"provider_config_key": "workable", "connection_id": "w-import", "api_key": API_KEY}
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    await events.wait_for("connection.created", "w-import")
    assert (await get_connection(gw, "w-import", "workable"))["connection_config"]["subdomain"] == "acme"
    assert len(apis.asked("/spi/v3/accounts")) == 1

    given = body | {"connection_id": "w-import-2", "connection_config": {"subdomain": "theirs"}}
    resp = await gw.client.post("/connection", json=given, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    assert (await get_connection(gw, "w-import-2", "workable"))["connection_config"]["subdomain"] == "theirs"


async def test_the_current_apis_import_is_enriched_too(gw: Gateway, apis: ProviderApis, events: EventWatch) -> None:
    body = {
        "provider_config_key": "workable",
        "connection_id": "w-upsert",
        "credentials": {"type": "API_KEY", "apiKey": API_KEY},
    }
    resp = await gw.client.post("/connections", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["connection_config"]["subdomain"] == "acme"
    assert len(apis.asked("/spi/v3/accounts")) == 1
