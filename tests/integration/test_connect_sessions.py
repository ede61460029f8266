"""Connect sessions: a token minted with the secret key stands in for the public key, once."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import pytest

from .gateway_app import Gateway, StartGateway, create_integration
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def gw(start_gateway: StartGateway) -> AsyncIterator[Gateway]:
    async with start_gateway() as gateway:
        await create_integration(gateway, "posthog", "ph")
        await create_integration(gateway, "freshdesk", "fd")
        yield gateway


async def mint(gw: Gateway, **body: Any) -> str:
    resp = await gw.client.post(
        "/connect/sessions", json={"end_user": {"id": "user-7", "email": "u@x.test"}, **body}, headers=gw.auth
    )
    assert resp.status == 201, await resp.text()
    data = (await resp.json())["data"]
    assert data["expires_at"].endswith("Z")
    token: str = data["token"]
    assert token.startswith("nango_connect_session_")
    return token


async def test_session_token_replaces_the_public_key_once(gw: Gateway, db: Any) -> None:
    token = await mint(gw)
    resp = await gw.client.post(f"/api-auth/api-key/ph?connect_session_token={token}", json={"apiKey": "k1"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["providerConfigKey"] == "ph"
    assert len(body["connectionId"]) == 36  # the server named the connection (a UUID)
    assert await db["connections"].count_documents({"connection_id": body["connectionId"]}) == 1
    stored = await db["connect_sessions"].find_one({})
    assert token not in str(stored)  # only its hash is kept
    resp = await gw.client.post(f"/api-auth/api-key/ph?connect_session_token={token}", json={"apiKey": "k1"})
    assert resp.status == 401
    assert_envelope(await resp.json(), "unknown_connect_session_token")


async def test_failed_attempt_keeps_the_session_usable(gw: Gateway) -> None:
    token = await mint(gw)
    resp = await gw.client.post(f"/api-auth/api-key/ph?connect_session_token={token}", json={"apiKey": ""})
    assert_envelope(await resp.json(), "missing_api_key")
    resp = await gw.client.post(f"/api-auth/api-key/ph?connect_session_token={token}", json={"apiKey": "ok"})
    assert resp.status == 200


async def test_allowed_integrations_and_session_endpoints(gw: Gateway) -> None:
    token = await mint(gw, allowed_integrations=["fd"])
    resp = await gw.client.post(f"/api-auth/api-key/ph?connect_session_token={token}", json={"apiKey": "k"})
    assert resp.status == 403
    assert_envelope(await resp.json(), "integration_not_allowed")
    resp = await gw.client.get("/connect/session", headers={"Authorization": f"Bearer {token}"})
    data = (await resp.json())["data"]
    assert data["end_user"] == {"id": "user-7", "email": "u@x.test"}
    assert data["allowed_integrations"] == ["fd"]
    resp = await gw.client.delete("/connect/session", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 204
    resp = await gw.client.get("/connect/session", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    resp = await gw.client.post(
        f"/api-auth/basic/fd?connect_session_token={token}", json={"username": "u", "password": "p"}
    )
    assert_envelope(await resp.json(), "unknown_connect_session_token")


async def test_bad_session_requests(gw: Gateway) -> None:
    resp = await gw.client.post("/connect/sessions", json={}, headers=gw.auth)
    assert_envelope(await resp.json(), "invalid_body")
    resp = await gw.client.post(
        "/connect/sessions", json={"end_user": {"id": "u"}, "allowed_integrations": ["nope"]}, headers=gw.auth
    )
    body = await resp.json()  # Nango's current answer: an invalid body naming the unknown integration
    assert_envelope(body, "invalid_body")
    assert body["error"]["errors"] == [
        {"code": "custom", "message": "Integration does not exist", "path": ["allowed_integrations", 0]}
    ]
    resp = await gw.client.post("/connect/sessions", json={"end_user": {"id": "u"}})
    assert_envelope(await resp.json(), "missing_auth_header")
    resp = await gw.client.post(
        "/api-auth/api-key/ph?connect_session_token=nango_connect_session_00&connection_id=c", json={"apiKey": "k"}
    )
    assert_envelope(await resp.json(), "unknown_connect_session_token")


async def test_session_skips_hmac_that_public_key_needs(gw: Gateway) -> None:
    resp = await gw.client.patch("/environment", json={"hmac_enabled": True, "hmac_key": "k"}, headers=gw.auth)
    assert resp.status == 200
    resp = await gw.client.post(
        f"/api-auth/api-key/ph?public_key={gw.public_key}&connection_id=c1", json={"apiKey": "k"}
    )
    assert_envelope(await resp.json(), "missing_hmac")
    digest = hmac.new(b"k", b"ph:c1", hashlib.sha256).hexdigest()
    resp = await gw.client.post(
        f"/api-auth/api-key/ph?public_key={gw.public_key}&connection_id=c1&hmac={digest}", json={"apiKey": "k"}
    )
    assert resp.status == 200
    token = await mint(gw)
    resp = await gw.client.post(f"/api-auth/api-key/ph?connect_session_token={token}", json={"apiKey": "k"})
    assert resp.status == 200
