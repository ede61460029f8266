"""Revoke at the provider (RFC 7009) on delete when asked, and in bulk, against a real OAuth 2 server on 127.0.0.1.

Deleting a connection deletes it; revoking its grant first is asked for (``?revoke=true``) or is the
integration's ``revoke_on_delete``, never the default (issue 17: a Google or Microsoft grant revoked
ends every token of that user and client).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from auth_gateway.dashboard.passwords import hash_password
from auth_gateway.resources import STORES
from keyway_shared.events import CloudEvent

from ..support.polling import eventually
from ..support.revoking_provider import RevokingProvider
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml

pytestmark = [pytest.mark.broker, pytest.mark.mongo]

DASHBOARD_PASSWORD = "a long dashboard password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def provider() -> AsyncIterator[RevokingProvider]:
    server = await RevokingProvider().start()
    yield server
    await server.stop()


@dataclass
class World:
    gw: Gateway
    provider: RevokingProvider
    events: list[CloudEvent[Any]]


@pytest.fixture
async def world(provider: RevokingProvider, tmp_path: Path, start_gateway: StartGateway) -> AsyncIterator[World]:
    catalog = {
        "revocable": provider.template(revocation_url=f"{provider.base}/revoke", authorization_method="header"),
        "plain": provider.template(),
    }
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, catalog),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        admin_user="admin",
        admin_password_hash=hash_password(DASHBOARD_PASSWORD),
    ) as gw:
        for name in catalog:
            await create_integration(gw, name, name, **provider.integration_fields)
        events: list[CloudEvent[Any]] = []
        outbox = gw.client.server.app[STORES].outbox
        add = outbox.add

        async def spy(event: CloudEvent[Any], **kw: Any) -> Any:
            events.append(event)
            return await add(event, **kw)

        outbox.add = spy  # type: ignore[method-assign]
        yield World(gw=gw, provider=provider, events=events)


async def make_connection(gw: Gateway, key: str, connection_id: str) -> dict[str, str]:
    tokens = {"access_token": f"at-{connection_id}-secret", "refresh_token": f"rt-{connection_id}-secret"}
    body = {"connection_id": connection_id, "provider_config_key": key, "expires_in": 3600, **tokens}
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    return tokens


def activity(world: World, connection_id: str) -> list[dict[str, Any]]:
    return [
        e.data.model_dump(mode="json")
        for e in world.events
        if e.type == "activity.message" and getattr(e.data, "connection_id", None) == connection_id
    ]


async def exists(gw: Gateway, key: str, connection_id: str) -> bool:
    resp = await gw.client.get(f"/connection/{connection_id}?provider_config_key={key}", headers=gw.auth)
    return resp.status == 200


async def test_delete_revokes_refresh_then_access_token_when_asked(world: World) -> None:
    gw, provider = world.gw, world.provider
    tokens = await make_connection(gw, "revocable", "c-1")
    resp = await gw.client.delete("/connection/c-1?provider_config_key=revocable&revoke=true", headers=gw.auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True
    assert body["revocation"]["status"] == "revoked"
    assert body["revocation"]["tokens"] == {"refresh_token": "revoked", "access_token": "revoked"}
    assert provider.revocations == [
        {"token": tokens["refresh_token"], "hint": "refresh_token"},
        {"token": tokens["access_token"], "hint": "access_token"},
    ]
    assert not await exists(gw, "revocable", "c-1")
    entries = activity(world, "c-1")
    assert [e["state"] for e in entries] == ["success", "success"]
    assert {e["operation_type"] for e in entries} == {"auth:revoke_connection"}
    assert len({e["operation_id"] for e in entries}) == 1
    dumped = json.dumps([body, entries])
    assert all(t not in dumped for t in tokens.values())


async def test_provider_failure_still_deletes_with_a_warning(world: World) -> None:
    gw, provider = world.gw, world.provider
    provider.revoke_mode = "error_500"
    tokens = await make_connection(gw, "revocable", "c-2")
    resp = await gw.client.delete("/connection/c-2?provider_config_key=revocable&revoke=true", headers=gw.auth)
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is True
    assert body["revocation"]["status"] == "failed"
    assert "503" in body["revocation"]["detail"]
    assert not await exists(gw, "revocable", "c-2")
    entries = activity(world, "c-2")
    assert [(e["state"], e["level"]) for e in entries] == [("failed", "warn"), ("failed", "warn")]
    dumped = json.dumps([body, entries])
    assert all(t not in dumped for t in tokens.values())  # the provider echoed the token: not kept


async def dashboard_sign_in(gw: Gateway) -> None:
    form = await (await gw.client.get("/dashboard/signin")).text()
    signin = {"username": "admin", "password": DASHBOARD_PASSWORD, "csrf_token": CSRF.findall(form)[0]}
    resp = await gw.client.post("/dashboard/signin", data=signin, allow_redirects=False)
    assert resp.status == 303, await resp.text()


async def dashboard_delete(gw: Gateway, key: str, connection_id: str) -> str:
    """Open the confirmation page and confirm; the notice the dashboard redirects to."""
    page = f"/dashboard/dev/connections/{key}/{connection_id}/delete"
    confirm = await (await gw.client.get(page)).text()
    assert "revoke_on_delete" in confirm
    resp = await gw.client.post(page, data={"csrf_token": CSRF.findall(confirm)[0]}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return resp.headers["Location"].split("notice=", 1)[1]


async def set_revoke_on_delete(gw: Gateway, key: str, provider: RevokingProvider, on: bool) -> None:
    """The integration's setting, through ``PUT /config`` (its other fields as they are)."""
    body = {"provider": key, "provider_config_key": key, "revoke_on_delete": on, **provider.integration_fields}
    resp = await gw.client.put("/config", json=body, headers=gw.auth)
    assert resp.status == 200, await resp.text()


async def test_the_dashboard_revokes_as_the_api_does(world: World) -> None:
    gw, provider = world.gw, world.provider
    await dashboard_sign_in(gw)
    # By default the dashboard only deletes, as the API does without ?revoke.
    await make_connection(gw, "revocable", "d-0")
    assert await dashboard_delete(gw, "revocable", "d-0") == "connection_deleted"
    assert provider.revocations == []
    assert not await exists(gw, "revocable", "d-0")
    # The integration's revoke_on_delete on: revoked first.
    await set_revoke_on_delete(gw, "revocable", provider, True)
    tokens = await make_connection(gw, "revocable", "d-1")
    assert await dashboard_delete(gw, "revocable", "d-1") == "connection_revoked"
    assert provider.revocations == [
        {"token": tokens["refresh_token"], "hint": "refresh_token"},
        {"token": tokens["access_token"], "hint": "access_token"},
    ]
    assert not await exists(gw, "revocable", "d-1")
    assert {e["operation_type"] for e in activity(world, "d-1")} == {"auth:revoke_connection"}
    # The provider failing: deleted here all the same, and the page says the grant may be live.
    provider.revoke_mode = "error_500"
    await make_connection(gw, "revocable", "d-2")
    assert await dashboard_delete(gw, "revocable", "d-2") == "connection_revoke_failed"
    assert not await exists(gw, "revocable", "d-2")
    listing = await (await gw.client.get("/dashboard/dev/connections?notice=connection_revoke_failed")).text()
    assert "grant may still be live" in listing
    # Nothing to revoke: a plain delete.
    await make_connection(gw, "plain", "d-3")
    assert await dashboard_delete(gw, "plain", "d-3") == "connection_deleted"


async def test_a_delete_not_asked_to_revoke_does_not(world: World) -> None:
    gw, provider = world.gw, world.provider
    await make_connection(gw, "plain", "c-3")
    resp = await gw.client.delete("/connection/c-3?provider_config_key=plain&revoke=true", headers=gw.auth)
    assert (resp.status, await resp.json()) == (200, {"success": True})  # nothing to revoke there
    await make_connection(gw, "revocable", "c-4")
    resp = await gw.client.delete("/connection/c-4?provider_config_key=revocable&revoke=false", headers=gw.auth)
    assert (resp.status, await resp.json()) == (200, {"success": True})
    await make_connection(gw, "revocable", "c-5")
    resp = await gw.client.delete("/connection/c-5?provider_config_key=revocable", headers=gw.auth)
    assert (resp.status, await resp.json()) == (200, {"success": True})
    assert provider.revocations == []
    assert activity(world, "c-3") == activity(world, "c-4") == activity(world, "c-5") == []
    assert not await exists(gw, "revocable", "c-5")
    resp = await gw.client.delete("/connection/nope?provider_config_key=revocable", headers=gw.auth)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "unknown_connection"


async def test_bulk_revoke_with_progress(world: World, db: Any) -> None:
    gw, provider = world.gw, world.provider
    ids = [f"bulk-{i}" for i in range(12)]
    for connection_id in ids:
        await make_connection(gw, "revocable", connection_id)
    await make_connection(gw, "plain", "other")
    resp = await gw.client.post("/config/revocable/revoke", json={"delete": True, "concurrency": 4}, headers=gw.auth)
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    assert job["total"] == 12
    assert job["status"] in {"running", "done"}

    async def finished() -> dict[str, Any] | None:
        resp = await gw.client.get(f"/config/revocable/revoke?job_id={job['job_id']}", headers=gw.auth)
        body: dict[str, Any] = await resp.json()
        return body if body["status"] == "done" else None

    done = await eventually(finished, what="the bulk revocation job to finish")
    assert (done["total"], done["done"], done["failed"], done["deleted"]) == (12, 12, 0, 12)
    assert len(provider.revocations) == 24
    stored = await db["revocation_jobs"].find_one({"_id": job["job_id"]})
    assert stored["done"] == 12  # any replica reads the same progress
    for connection_id in ids:
        assert not await exists(gw, "revocable", connection_id)
    assert await exists(gw, "plain", "other")
    latest = await gw.client.get("/config/revocable/revoke", headers=gw.auth)
    assert (await latest.json())["job_id"] == job["job_id"]

    # a failing provider: counted as failed, connections kept when delete is false
    provider.revoke_mode = "error_500"
    await make_connection(gw, "revocable", "bulk-x")
    resp = await gw.client.post("/config/revocable/revoke", headers=gw.auth)
    job = await resp.json()
    done = await eventually(finished, what="the second job to finish")
    assert (done["total"], done["done"], done["failed"], done["deleted"]) == (1, 0, 1, 0)
    assert await exists(gw, "revocable", "bulk-x")


async def test_bulk_revoke_errors(world: World) -> None:
    gw = world.gw
    resp = await gw.client.post("/config/missing/revoke", headers=gw.auth)
    assert resp.status == 400
    resp = await gw.client.post("/config/revocable/revoke", json={"concurrency": 1000}, headers=gw.auth)
    assert resp.status == 400
    resp = await gw.client.get("/config/plain/revoke", headers=gw.auth)
    assert resp.status == 404
    resp = await gw.client.post("/config/revocable/revoke", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401


async def test_revoke_on_delete_is_the_integrations_default_which_the_query_overrides(world: World) -> None:
    gw, provider = world.gw, world.provider
    await set_revoke_on_delete(gw, "revocable", provider, True)
    tokens = await make_connection(gw, "revocable", "r-1")
    resp = await gw.client.delete("/connection/r-1?provider_config_key=revocable", headers=gw.auth)
    assert (await resp.json())["revocation"]["status"] == "revoked"
    assert [r["token"] for r in provider.revocations] == [tokens["refresh_token"], tokens["access_token"]]
    await make_connection(gw, "revocable", "r-2")
    resp = await gw.client.delete("/connection/r-2?provider_config_key=revocable&revoke=false", headers=gw.auth)
    assert (resp.status, await resp.json()) == (200, {"success": True})
    assert len(provider.revocations) == 2
    # A PUT without the field leaves the setting as it is.
    body = {"provider": "revocable", "provider_config_key": "revocable", **provider.integration_fields}
    assert (await gw.client.put("/config", json=body, headers=gw.auth)).status == 200
    await make_connection(gw, "revocable", "r-3")
    resp = await gw.client.delete("/connection/r-3?provider_config_key=revocable", headers=gw.auth)
    assert "revocation" in await resp.json()
    await set_revoke_on_delete(gw, "revocable", provider, False)
    await make_connection(gw, "revocable", "r-4")
    resp = await gw.client.delete("/connection/r-4?provider_config_key=revocable", headers=gw.auth)
    assert (resp.status, await resp.json()) == (200, {"success": True})
    assert len(provider.revocations) == 4
    resp = await gw.client.put("/config", json={**body, "revoke_on_delete": "yes"}, headers=gw.auth)
    assert (resp.status, (await resp.json())["error"]["code"]) == (400, "invalid_body")
