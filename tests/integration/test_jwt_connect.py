"""The JWT mode end to end: ``POST /auth/jwt/{key}`` as @nangohq/frontend 0.71.10 posts it (the
credentials object as the body, ``params[…]`` in the query), a JWT signed as the template declares,
tried with the template's verification call, stored encrypted, re-signed before it expires, and sent
by the proxy, against a provider on 127.0.0.1 that checks each token with the customer's public key
(RS256, Snowflake's key pair) or shared secret (HS256, Ghost's Admin API key).

Nango's route is ``packages/server/lib/controllers/auth/postJwt.ts``; the credentials it stores are
``{type: "JWT", …the body's fields, token, expires_at}`` (Ghost's ``id:secret`` key split in two).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ..support.signed_token_provider import SignedTokenProvider, decode_jwt
from .flow_helpers import EventWatch, get_connection, watched_events
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


@pytest.fixture
async def provider() -> AsyncIterator[SignedTokenProvider]:
    fake = await SignedTokenProvider().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def events(amqp: Any, namespace: str) -> AsyncIterator[EventWatch]:
    async with watched_events(amqp, namespace, "jwt-connect") as watch:
        yield watch


@pytest.fixture
async def gw(
    provider: SignedTokenProvider, tmp_path: Path, start_gateway: StartGateway, events: EventWatch
) -> AsyncIterator[Gateway]:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, provider.templates()),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
        connection_cache_entries=0,  # the test moves due times behind the gateway's back
    ) as gateway:
        await create_integration(gateway, "test-snowflake-jwt", "snow")
        await create_integration(gateway, "test-ghost-admin", "ghost")
        yield gateway


def snowflake_body(provider: SignedTokenProvider, **changes: Any) -> dict[str, Any]:
    body = {
        "type": "JWT",
        "accountIdentifier": provider.account,
        "userName": provider.user,
        "privateKey": provider.rsa_pem,
    }
    return {**body, **changes}


async def proxy(gw: Gateway, key: str, connection_id: str, path: str, method: str = "GET") -> tuple[int, Any]:
    headers = {**gw.auth, "Connection-Id": connection_id, "Provider-Config-Key": key}
    resp = await gw.client.request(method, f"/proxy/{path}", headers=headers)
    return resp.status, await resp.json()


async def test_an_rs256_key_pair_connects_and_the_proxy_sends_its_jwt(
    gw: Gateway, provider: SignedTokenProvider, events: EventWatch, db: Any
) -> None:
    resp = await gw.client.post(
        f"/auth/jwt/snow?connection_id=s-1&public_key={gw.public_key}", json=snowflake_body(provider)
    )
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"providerConfigKey": "snow", "connectionId": "s-1"}
    assert len(provider.accepted["snowflake"]) == 1, provider.rejected  # the verification call

    connection = await get_connection(gw, "s-1", "snow")
    credentials = connection["credentials"]
    assert list(credentials) == ["type", "accountIdentifier", "userName", "privateKey", "token", "expires_at"]
    assert credentials["privateKey"] == provider.rsa_pem
    header, claims, _, _ = decode_jwt(credentials["token"])
    assert header == {"alg": "RS256", "typ": "JWT"}
    assert claims["exp"] - claims["iat"] == 3600
    expires_at = datetime.fromisoformat(credentials["expires_at"].replace("Z", "+00:00"))
    assert abs(expires_at - datetime.fromtimestamp(claims["exp"], UTC)) < timedelta(seconds=1)
    stored = await db["connections"].find_one({"connection_id": "s-1"})
    assert stored["auth_mode"] == "JWT"
    assert "BEGIN PRIVATE KEY" not in json.dumps(stored, default=str)  # sealed
    created = await events.wait_for("connection.created", "s-1")
    assert (created["auth_mode"], created["provider"]) == ("JWT", "test-snowflake-jwt")

    status, body = await proxy(gw, "snow", "s-1", "api/v2/statements", "POST")
    assert status == 200, (body, provider.rejected)
    assert body["path"] == "/snowflake/api/v2/statements"
    assert provider.accepted["snowflake"][-1] == credentials["token"]


async def test_ghosts_id_and_hex_secret_sign_an_hs256_token_sent_as_ghost(
    gw: Gateway, provider: SignedTokenProvider
) -> None:
    query = f"connection_id=g-1&public_key={gw.public_key}&params[version]=v5.0"
    resp = await gw.client.post(f"/auth/jwt/ghost?{query}", json={"privateKey": provider.ghost_api_key})
    assert resp.status == 200, (await resp.text(), provider.rejected)
    credentials = (await get_connection(gw, "g-1", "ghost"))["credentials"]
    # As Nango stores it: the key split into its id and secret.
    assert credentials["privateKey"] == {"id": provider.ghost_key_id, "secret": provider.ghost_secret}
    header, claims, _, _ = decode_jwt(credentials["token"])
    assert (header["kid"], claims["aud"], claims["exp"] - claims["iat"]) == (provider.ghost_key_id, "/admin/", 300)

    status, body = await proxy(gw, "ghost", "g-1", "posts/")
    assert status == 200, (body, provider.rejected)
    assert body["path"] == "/ghost/ghost/api/admin/posts/"


async def test_the_token_is_signed_again_before_it_expires(gw: Gateway, provider: SignedTokenProvider, db: Any) -> None:
    query = f"connection_id=g-2&public_key={gw.public_key}&params[version]=v5.0"
    resp = await gw.client.post(f"/auth/jwt/ghost?{query}", json={"privateKey": provider.ghost_api_key})
    assert resp.status == 200, await resp.text()
    stored = await db["connections"].find_one({"connection_id": "g-2"})
    # Five minutes' life: due halfway, well before the provider would refuse it.
    assert (
        timedelta(minutes=2) < stored["refresh_due_at"].replace(tzinfo=UTC) - datetime.now(UTC) < timedelta(minutes=3)
    )
    first = (await get_connection(gw, "g-2", "ghost"))["credentials"]

    # Past its due time (a second of iat later, so the new token differs), a read signs a new one.
    await db["connections"].update_one(
        {"connection_id": "g-2"}, {"$set": {"refresh_due_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    old_iat = decode_jwt(first["token"])[1]["iat"]
    await asyncio.sleep(max(0.0, old_iat + 1 - datetime.now(UTC).timestamp()))  # a later second, a later iat
    resp = await gw.client.get("/connection/g-2?provider_config_key=ghost&refresh_token=true", headers=gw.auth)
    renewed = (await resp.json())["credentials"]
    assert renewed["token"] != first["token"]
    assert renewed["expires_at"] > first["expires_at"]
    assert renewed["privateKey"] == first["privateKey"]
    assert decode_jwt(renewed["token"])[1]["iat"] > old_iat
    status, body = await proxy(gw, "ghost", "g-2", "users/")
    assert status == 200, (body, provider.rejected)
    assert provider.accepted["ghost"][-1] == renewed["token"]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"privateKey": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"}, "invalid_private_key"),
        ({"privateKey": "not a key at all"}, "invalid_private_key"),
        ({"userName": ""}, "missing_credentials"),
    ],
)
async def test_a_key_that_cannot_sign_is_refused_and_nothing_stored(
    gw: Gateway, provider: SignedTokenProvider, events: EventWatch, db: Any, changes: dict[str, Any], code: str
) -> None:
    body = snowflake_body(provider, **changes)
    resp = await gw.client.post(f"/auth/jwt/snow?connection_id=bad-1&public_key={gw.public_key}", json=body)
    assert resp.status == 400
    answer = await resp.json()
    assert_envelope(answer, code)
    assert "MII" not in json.dumps(answer)
    assert provider.rsa_pem[40:80] not in json.dumps(answer)
    assert await db["connections"].find_one({"connection_id": "bad-1"}) is None
    assert provider.accepted["snowflake"] == []  # nothing was sent
    failed = await events.wait_for("auth.failed", "bad-1")
    assert (failed["error"]["type"], failed["auth_mode"]) == (code, "JWT")


async def test_a_wrong_key_the_provider_refuses_and_a_malformed_ghost_key(
    gw: Gateway, provider: SignedTokenProvider, db: Any
) -> None:
    other = SignedTokenProvider()
    other_pem = (await other.start()).rsa_pem
    await other.stop()
    resp = await gw.client.post(
        f"/auth/jwt/snow?connection_id=w-1&public_key={gw.public_key}",
        json=snowflake_body(provider, privateKey=other_pem),
    )
    assert resp.status == 400
    assert_envelope(await resp.json(), "connection_test_failed")
    assert provider.rejected[-1] == "bad RS256 signature"  # signed with a key that is not the registered one
    assert await db["connections"].find_one({"connection_id": "w-1"}) is None

    query = f"connection_id=g-3&public_key={gw.public_key}&params[version]=v5.0"
    resp = await gw.client.post(f"/auth/jwt/ghost?{query}", json={"privateKey": "abc:def"})
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_credentials")
    resp = await gw.client.post(f"/auth/jwt/ghost?{query}", json={"privateKey": provider.ghost_api_key, "x": 1})
    assert resp.status == 200, await resp.text()
    assert "x" not in (await get_connection(gw, "g-3", "ghost"))["credentials"]  # only the template's fields


async def test_another_modes_integration_is_refused(gw: Gateway) -> None:
    await create_integration(gw, "posthog", "ph")
    resp = await gw.client.post(f"/auth/jwt/ph?connection_id=p-1&public_key={gw.public_key}", json={"privateKey": "k"})
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_auth_mode")


async def test_an_import_signs_the_token_from_the_fields_as_a_nango_export_holds_them(
    gw: Gateway, provider: SignedTokenProvider, db: Any
) -> None:
    exported = {"type": "JWT", "privateKey": provider.ghost_api_key, "token": "stale", "expires_at": "2020-01-01"}
    body = {"connection_id": "imp-1", "provider_config_key": "ghost", "connection_config": {"version": "v5.0"}}
    resp = await gw.client.post("/connection", json={**body, **exported}, headers=gw.auth)
    assert resp.status == 201, await resp.text()
    credentials = (await get_connection(gw, "imp-1", "ghost"))["credentials"]
    assert credentials["token"] != "stale"  # signed now, from the fields
    assert credentials["privateKey"] == {"id": provider.ghost_key_id, "secret": provider.ghost_secret}
    status, answer = await proxy(gw, "ghost", "imp-1", "users/")
    assert status == 200, (answer, provider.rejected)

    bad = {**body, "connection_id": "imp-2", "provider_config_key": "snow"}
    resp = await gw.client.post(
        "/connection", json={**bad, **snowflake_body(provider, privateKey="junk")}, headers=gw.auth
    )
    assert resp.status == 400
    assert_envelope(await resp.json(), "invalid_private_key")
    assert await db["connections"].find_one({"connection_id": "imp-2"}) is None
