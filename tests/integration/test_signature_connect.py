"""The SIGNATURE mode end to end (Emarsys's WSSE): ``POST /auth/signature/{key}`` as @nangohq/frontend
0.71.10 posts it (``{type: 'SIGNATURE', username, password}``), a UsernameToken tried with the
template's verification call, stored with the user name and password, and a new token for every
proxied request, against a provider on 127.0.0.1 that recomputes each digest and refuses a nonce twice.

Nango's route is ``packages/server/lib/controllers/auth/postSignature.ts`` (a strict body, ``invalid_body``
with zod's issues); its credentials ``{type: "SIGNATURE", username, password, token, expires_at}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from keyway_client import AsyncClient, JwtCredentials, SignatureCredentials

from ..support.signed_token_provider import SignedTokenProvider
from .gateway_app import Gateway, StartGateway, create_integration, providers_yaml
from .test_gateway_api import assert_envelope

pytestmark = [pytest.mark.broker, pytest.mark.mongo]


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
        connection_cache_entries=0,
    ) as gateway:
        await create_integration(gateway, "test-emarsys", "emarsys")
        yield gateway


def body(provider: SignedTokenProvider, **changes: Any) -> dict[str, Any]:
    return {"type": "SIGNATURE", "username": provider.wsse_user, "password": provider.wsse_password, **changes}


async def test_connects_and_every_proxied_request_carries_a_new_token(
    gw: Gateway, provider: SignedTokenProvider, db: Any
) -> None:
    resp = await gw.client.post(
        f"/auth/signature/emarsys?connection_id=e-1&public_key={gw.public_key}", json=body(provider)
    )
    assert resp.status == 200, (await resp.text(), provider.rejected)
    assert await resp.json() == {"providerConfigKey": "emarsys", "connectionId": "e-1"}
    assert len(provider.accepted["emarsys"]) == 1  # the verification call

    resp = await gw.client.get("/connection/e-1?provider_config_key=emarsys", headers=gw.auth)
    credentials = (await resp.json())["credentials"]
    assert list(credentials) == ["type", "username", "password", "token", "expires_at"]
    assert credentials["token"].startswith(f'UsernameToken Username="{provider.wsse_user}", PasswordDigest="')
    expires_at = datetime.fromisoformat(credentials["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=4) < expires_at - datetime.now(UTC) <= timedelta(minutes=5)
    stored = await db["connections"].find_one({"connection_id": "e-1"})
    assert stored["auth_mode"] == "SIGNATURE"
    assert provider.wsse_password not in json.dumps(stored, default=str)

    headers = {**gw.auth, "Connection-Id": "e-1", "Provider-Config-Key": "emarsys"}
    for _ in range(2):  # the provider refuses a nonce it has seen: each request has its own
        resp = await gw.client.get("/proxy/api/v2/settings", headers=headers)
        assert resp.status == 200, (await resp.text(), provider.rejected)
    assert len(set(provider.accepted["emarsys"])) == 3


async def test_a_retried_request_carries_a_new_token(gw: Gateway, provider: SignedTokenProvider) -> None:
    # The nonce of a refused attempt is spent at the provider: a retry with the same token is refused.
    resp = await gw.client.post(
        f"/auth/signature/emarsys?connection_id=e-r&public_key={gw.public_key}", json=body(provider)
    )
    assert resp.status == 200, (await resp.text(), provider.rejected)
    provider.busy_once.add("/emarsys/api/v2/settings")
    headers = {**gw.auth, "Connection-Id": "e-r", "Provider-Config-Key": "emarsys", "Retries": "1"}
    resp = await gw.client.get("/proxy/api/v2/settings", headers=headers)
    assert resp.status == 200, (await resp.text(), provider.rejected)
    assert provider.rejected == []
    assert "/emarsys/api/v2/settings" not in provider.busy_once  # the first attempt was answered 503


async def test_the_stored_token_is_renewed_when_due(gw: Gateway, provider: SignedTokenProvider, db: Any) -> None:
    resp = await gw.client.post(
        f"/auth/signature/emarsys?connection_id=e-2&public_key={gw.public_key}", json=body(provider)
    )
    assert resp.status == 200, await resp.text()
    read = "/connection/e-2?provider_config_key=emarsys&refresh_token=true"
    first = (await (await gw.client.get(read, headers=gw.auth)).json())["credentials"]
    await db["connections"].update_one(
        {"connection_id": "e-2"}, {"$set": {"refresh_due_at": datetime.now(UTC) - timedelta(seconds=1)}}
    )
    renewed = (await (await gw.client.get(read, headers=gw.auth)).json())["credentials"]
    assert renewed["token"] != first["token"]
    assert (renewed["username"], renewed["password"]) == (first["username"], first["password"])


@pytest.mark.parametrize(
    ("changes", "code", "status"),
    [
        ({"password": "wrong"}, "connection_test_failed", 400),
        ({"password": ""}, "invalid_body", 400),
        ({"extra": "x"}, "invalid_body", 400),
    ],
)
async def test_bad_credentials_are_refused_and_nothing_stored(
    gw: Gateway, provider: SignedTokenProvider, db: Any, changes: dict[str, Any], code: str, status: int
) -> None:
    resp = await gw.client.post(
        f"/auth/signature/emarsys?connection_id=e-bad&public_key={gw.public_key}", json=body(provider, **changes)
    )
    assert resp.status == status
    answer = await resp.json()
    assert_envelope(answer, code)
    assert provider.wsse_password not in json.dumps(answer)
    assert await db["connections"].find_one({"connection_id": "e-bad"}) is None
    if code == "connection_test_failed":
        assert provider.rejected == ["bad WSSE digest"]


async def test_the_python_sdk_reads_typed_jwt_and_signature_credentials(
    start_gateway: StartGateway, provider: SignedTokenProvider, tmp_path: Path
) -> None:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, provider.templates()),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gw:
        await create_integration(gw, "test-emarsys", "emarsys")
        await create_integration(gw, "test-ghost-admin", "ghost")
        resp = await gw.client.post(
            f"/auth/signature/emarsys?connection_id=py-e&public_key={gw.public_key}", json=body(provider)
        )
        assert resp.status == 200, await resp.text()
        query = f"connection_id=py-g&public_key={gw.public_key}&params[version]=v5.0"
        resp = await gw.client.post(f"/auth/jwt/ghost?{query}", json={"privateKey": provider.ghost_api_key})
        assert resp.status == 200, await resp.text()

        async with AsyncClient(host=gw.url, secret_key=gw.secret_key) as keyway:
            wsse = (await keyway.get_connection("emarsys", "py-e")).credentials
            assert isinstance(wsse, SignatureCredentials)
            assert (wsse.username, wsse.password) == (provider.wsse_user, provider.wsse_password)
            assert wsse.token is not None
            assert wsse.expires_at is not None
            jwt = (await keyway.get_connection("ghost", "py-g")).credentials
            assert isinstance(jwt, JwtCredentials)
            assert jwt.fields == {"privateKey": {"id": provider.ghost_key_id, "secret": provider.ghost_secret}}
            assert jwt.token is not None
            assert jwt.token.count(".") == 2
            assert jwt.expires_at is not None
            assert jwt.expires_at > datetime.now(UTC)
            assert provider.ghost_secret not in repr(jwt)
            assert provider.wsse_password not in repr(wsse)


async def test_an_import_makes_a_token_from_the_user_name_and_password(
    gw: Gateway, provider: SignedTokenProvider, db: Any
) -> None:
    fields = {"username": provider.wsse_user, "password": provider.wsse_password}
    resp = await gw.client.post(
        "/connection", json={"connection_id": "imp-e", "provider_config_key": "emarsys", **fields}, headers=gw.auth
    )
    assert resp.status == 201, await resp.text()
    resp = await gw.client.get(
        "/proxy/api/v2/settings", headers={**gw.auth, "Connection-Id": "imp-e", "Provider-Config-Key": "emarsys"}
    )
    assert resp.status == 200, (await resp.text(), provider.rejected)
    resp = await gw.client.post(
        "/connection",
        json={"connection_id": "imp-x", "provider_config_key": "emarsys", "username": "u"},
        headers=gw.auth,
    )
    assert resp.status == 400
    assert_envelope(await resp.json(), "missing_password")
    assert await db["connections"].find_one({"connection_id": "imp-x"}) is None


async def test_the_connect_ui_lists_each_modes_fields_and_its_posts_connect(
    start_gateway: StartGateway, provider: SignedTokenProvider, tmp_path: Path
) -> None:
    async with start_gateway(
        providers_file=providers_yaml(tmp_path, provider.templates()),
        egress_allowlist="127.0.0.0/8",
        provider_timeout_seconds=2.0,
    ) as gw:
        await create_integration(gw, "test-emarsys", "emarsys")
        await create_integration(gw, "test-snowflake-jwt", "snow")
        resp = await gw.client.post(
            "/connect/sessions",
            json={"end_user": {"id": "u-1"}, "allowed_integrations": ["emarsys", "snow"]},
            headers=gw.auth,
        )
        token = (await resp.json())["data"]["token"]
        resp = await gw.client.get("/connect/session/integrations", headers={"Authorization": f"Bearer {token}"})
        listed = {entry["unique_key"]: entry for entry in (await resp.json())["data"]}
        assert [f["name"] for f in listed["emarsys"]["fields"]] == ["username", "password"]
        assert listed["emarsys"]["form_path"] == "auth/signature/{providerConfigKey}"
        # A JWT integration's fields are its template's; the PEM key is typed in a text area.
        fields = {f["name"]: f["kind"] for f in listed["snow"]["fields"]}
        assert fields == {"accountIdentifier": "text", "userName": "text", "privateKey": "textarea"}
        assert listed["snow"]["form_path"] == "auth/jwt/{providerConfigKey}"

        # The page posts the typed fields alone (no "type"), as the Connect UI does.
        wsse = {"username": provider.wsse_user, "password": provider.wsse_password}
        resp = await gw.client.post(f"/auth/signature/emarsys?connect_session_token={token}", json=wsse)
        assert resp.status == 200, await resp.text()
        resp = await gw.client.post("/connect/sessions", json={"end_user": {"id": "u-1"}}, headers=gw.auth)
        token = (await resp.json())["data"]["token"]  # a session is spent by the connection it makes
        jwt = {"accountIdentifier": provider.account, "userName": provider.user, "privateKey": provider.rsa_pem}
        resp = await gw.client.post(f"/auth/jwt/snow?connect_session_token={token}", json=jwt)
        assert resp.status == 200, (await resp.text(), provider.rejected)
