"""The backend API over connections: list, import, metadata, delete — and the events they emit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ..support.polling import eventually
from .gateway_app import Gateway, StartGateway, create_integration
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        await create_integration(gateway, "posthog", "ph")
        await create_integration(gateway, "freshdesk", "fd")
        await create_integration(gateway, "github", "gh", oauth_client_id="id", oauth_client_secret="secret")
        await create_integration(gateway, "unauthenticated", "none")
        yield gateway


@pytest.fixture
async def events(amqp: Any, namespace: str) -> Any:
    channel = await amqp.channel()
    exchange = await channel.declare_exchange(f"{namespace}.events", "topic", durable=True)
    queue = await channel.declare_queue(f"{namespace}.test.connection-events", auto_delete=True)
    await queue.bind(exchange, routing_key="connection.*")
    return queue


async def drain(queue: Any, count: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    async def enough() -> bool:
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            seen.append(json.loads(message.body))
        return len(seen) >= count

    await eventually(enough, timeout=15, what=f"{count} connection events")
    return seen


async def test_import_every_auth_mode_and_read_back(gw: Gateway, events: Any) -> None:
    oauth = {
        "connection_id": "imp-1",
        "provider_config_key": "gh",
        "access_token": "gho_abc",
        "refresh_token": "ghr_def",
        "expires_in": 3600,
        "metadata": {"plan": "pro"},
        "connection_config": {"oauth_scopes_override": "repo,user"},
    }
    resp = await gw.client.post("/connection", json=oauth, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    assert await resp.json() == oauth  # echoed
    resp = await gw.client.get("/connection/imp-1?provider_config_key=gh&refresh_token=true", headers=gw.auth)
    conn = await resp.json()
    assert conn["credentials"]["access_token"] == "gho_abc"
    assert conn["credentials"]["refresh_token"] == "ghr_def"
    assert conn["credentials"]["expires_at"].endswith("Z")
    assert conn["metadata"] == {"plan": "pro"}
    assert conn["connection_config"]["oauth_scopes_override"] == ["repo", "user"]

    for body in (
        {"connection_id": "imp-2", "provider_config_key": "ph", "api_key": "phx_1"},
        {"connection_id": "imp-3", "provider_config_key": "fd", "username": "u", "password": "p"},
        {"connection_id": "imp-4", "provider_config_key": "none"},
    ):
        resp = await gw.client.post("/connection", json=body, headers=gw.auth)
        assert resp.status == 201, await resp.text()
    resp = await gw.client.get("/connection/imp-2?provider_config_key=ph", headers=gw.auth)
    assert (await resp.json())["credentials"] == {"type": "API_KEY", "apiKey": "phx_1"}
    resp = await gw.client.get("/connection/imp-4?provider_config_key=none", headers=gw.auth)
    assert (await resp.json())["credentials"] == {}
    seen = await drain(events, 4)
    assert sorted(e["data"]["connection_id"] for e in seen) == ["imp-1", "imp-2", "imp-3", "imp-4"]
    assert {e["type"] for e in seen} == {"connection.created"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"provider_config_key": "gh", "access_token": "a", "expires_in": 1}, "missing_connection"),
        ({"connection_id": "c", "access_token": "a"}, "missing_provider_config"),
        ({"connection_id": "c", "provider_config_key": "nope"}, "unknown_provider_config"),
        ({"connection_id": "c", "provider_config_key": "gh", "access_token": "a"}, "missing_expires_at"),
        (
            {"connection_id": "c", "provider_config_key": "gh", "access_token": "a", "expires_at": "soon"},
            "invalid_expires_at",
        ),
        ({"connection_id": "c", "provider_config_key": "gh", "expires_in": 5}, "missing_access_token"),
        ({"connection_id": "c", "provider_config_key": "ph"}, "missing_api_key"),
        ({"connection_id": "c", "provider_config_key": "fd", "password": "p"}, "missing_username"),
    ],
)
async def test_import_errors(gw: Gateway, body: dict[str, Any], code: str) -> None:
    resp = await gw.client.post("/connection", json=body, headers=gw.auth)
    assert resp.status == 400
    assert_envelope(await resp.json(), code)


async def test_list_metadata_and_delete(gw: Gateway, events: Any, db: Any) -> None:
    for i in range(3):
        resp = await gw.client.post(
            "/connection",
            json={"connection_id": f"m-{i}", "provider_config_key": "ph", "api_key": "k"},
            headers=gw.auth,
        )
        assert resp.status == 201
    resp = await gw.client.get("/connection", headers=gw.auth)
    listed = (await resp.json())["connections"]
    assert [c["connection_id"] for c in listed] == ["m-2", "m-1", "m-0"]  # newest first
    assert set(listed[0]) == {"id", "connection_id", "provider_config_key", "provider", "created", "metadata"}
    resp = await gw.client.get("/connection?connectionId=m-1", headers=gw.auth)
    assert [c["connection_id"] for c in (await resp.json())["connections"]] == ["m-1"]

    body = {"connection_id": ["m-0", "m-1"], "provider_config_key": "ph", "metadata": {"a": 1, "b": 2}}
    resp = await gw.client.post("/connection/metadata", json=body, headers=gw.auth)
    assert resp.status == 201
    assert await resp.json() == body
    resp = await gw.client.patch(
        "/connection/metadata",
        json={"connection_id": "m-0", "provider_config_key": "ph", "metadata": {"b": 3}},
        headers=gw.auth,
    )
    assert resp.status == 200
    resp = await gw.client.get("/connection/m-0?provider_config_key=ph", headers=gw.auth)
    assert (await resp.json())["metadata"] == {"a": 1, "b": 3}  # shallow merge
    resp = await gw.client.post("/connection/m-1/metadata?provider_config_key=ph", json={"z": True}, headers=gw.auth)
    assert resp.status == 201
    resp = await gw.client.patch(
        "/connection/m-1/metadata", json={"y": 1}, headers={**gw.auth, "Provider-Config-Key": "ph"}
    )
    assert resp.status == 200
    resp = await gw.client.get("/connection/m-1?provider_config_key=ph", headers=gw.auth)
    assert (await resp.json())["metadata"] == {"z": True, "y": 1}
    resp = await gw.client.post(
        "/connection/metadata",
        json={"connection_id": ["m-0", "ghost"], "provider_config_key": "ph", "metadata": {}},
        headers=gw.auth,
    )
    assert resp.status == 404
    assert_envelope(await resp.json(), "unknown_connection")
    resp = await gw.client.post("/connection/metadata", json={"connection_id": "m-0", "metadata": {}}, headers=gw.auth)
    assert_envelope(await resp.json(), "missing_provider_config")
    resp = await gw.client.post(
        "/connection/metadata",
        json={"connection_id": "m-0", "provider_config_key": "ph", "metadata": [1]},
        headers=gw.auth,
    )
    assert_envelope(await resp.json(), "invalid_body")

    resp = await gw.client.delete("/connection/m-2?provider_config_key=ph", headers=gw.auth)
    assert await resp.json() == {"success": True}
    resp = await gw.client.delete("/connection/m-2?provider_config_key=ph", headers=gw.auth)
    assert resp.status == 404
    assert_envelope(await resp.json(), "unknown_connection")
    assert await db["connections"].count_documents({"connection_id": "m-2"}) == 0
    seen = await drain(events, 3 + 5 + 1)
    kinds = [(e["type"], e["data"].get("operation")) for e in seen]
    assert kinds.count(("connection.created", "creation")) == 3
    assert kinds.count(("connection.updated", "metadata")) == 5  # two for the pair, then one per change
    assert ("connection.deleted", None) in kinds
